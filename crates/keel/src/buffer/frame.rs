//! Frames and the bookkeeping the pool keeps about them under its one mutex.
//!
//! A [`Frame`] is only the page bytes behind their latch. Everything else —
//! which page a frame holds, its state, dirtiness — is a [`FrameMeta`]
//! inside [`Meta`], changed only with the pool's mutex held (and that mutex
//! is never held during I/O or while taking a latch that anyone may hold;
//! see the module essay's protocol).
//!
//! Pin counts are atomics ([`Meta::pins`]), with one rule: a pin is
//! *taken* only with the mutex held (a hit, or a claim), and may be
//! *dropped* without it. Whoever decides under the mutex that a frame is
//! unpinned (the replacer, `unregister_file`, the background writer) is
//! therefore never contradicted before it releases the mutex: nobody can
//! pin the frame meanwhile, and a concurrent unpin only lowers a count it
//! already found at zero or above. So dropping a guard costs no mutex.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rustc_hash::FxHashMap as HashMap;

use keel_io::{FileHandle, IoBuf};
use parking_lot::RwLock;

use super::BufferError;
use super::FileId;
use super::replacer::Clock;
use crate::page::PAGE_SIZE;
use crate::types::{Lsn, PageId};

/// A page's address in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PageKey {
    pub(crate) file: FileId,
    pub(crate) page: PageId,
}

/// The lifecycle of a frame (diagram in the module essay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameState {
    /// Holds no page; not in the page table.
    Free,
    /// Mapped to a page whose bytes are being read (or zeroed by
    /// `new_page`). Nobody but the loading thread touches its bytes; fetches
    /// of the page wait on the pool's condition variable.
    Loading,
    /// Holds a verified page (or one being formatted by `new_page`'s caller).
    Ready,
}

/// The bytes of one frame behind the page latch: empty until the frame
/// first holds a page (so opening a large pool does not touch, and fault
/// in, all its memory at once), then an aligned `PAGE_SIZE` [`IoBuf`]
/// outside `Loading` (aligned so files opened with O_DIRECT work too).
pub(crate) struct Frame {
    pub(crate) data: RwLock<IoBuf>,
}

impl Frame {
    pub(crate) fn new() -> Frame {
        Frame {
            data: RwLock::new(IoBuf::zeroed(0)),
        }
    }

    /// The frame's buffer, taken out to read a page into (allocated on the
    /// frame's first use).
    pub(crate) fn take_buffer(&self) -> IoBuf {
        let buf = std::mem::replace(&mut *self.data.write(), IoBuf::zeroed(0));
        if buf.len() == PAGE_SIZE {
            buf
        } else {
            IoBuf::aligned(PAGE_SIZE)
        }
    }
}

/// What the pool knows about one frame.
#[derive(Clone, Debug)]
pub(crate) struct FrameMeta {
    /// The page held (`None` when Free).
    pub(crate) key: Option<PageKey>,
    pub(crate) state: FrameState,
    /// Changed since it was last written (or read).
    pub(crate) dirty: bool,
    /// LSN of the first change since the frame was last clean.
    pub(crate) rec_lsn: Lsn,
    /// Bumped by every `mark_dirty`; never reset, so a write-back can tell
    /// whether the page changed after its copy was taken.
    pub(crate) mod_count: u64,
    /// One write-back owns the frame (at most one at a time).
    pub(crate) writing: bool,
    /// The owning write-back has taken its copy of the page.
    pub(crate) copied: bool,
    /// LSN of the first change after that copy (`Lsn::ZERO`: none yet):
    /// the frame's `rec_lsn` if it is still dirty when the write ends, so
    /// the dirty page table a checkpoint logs names the oldest change that
    /// is really not on disk.
    pub(crate) rec_lsn_after_copy: Lsn,
}

impl FrameMeta {
    fn free() -> FrameMeta {
        FrameMeta {
            key: None,
            state: FrameState::Free,
            dirty: false,
            rec_lsn: Lsn::ZERO,
            mod_count: 0,
            writing: false,
            copied: false,
            rec_lsn_after_copy: Lsn::ZERO,
        }
    }

    /// Whether the replacer may take the frame now, `pins` being its pin
    /// count.
    pub(crate) fn evictable(&self, pins: u32) -> bool {
        pins == 0 && !self.writing && self.state != FrameState::Loading
    }
}

/// A registered data file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileEntry {
    pub(crate) handle: FileHandle,
    /// Page writes completed on the file so far (a generation counter).
    pub(crate) written: u64,
    /// The highest `written` value an fdatasync that succeeded covers: it
    /// started after that many writes had completed.
    pub(crate) synced: u64,
    /// The `written` value covered by the fdatasync in flight, if any. At
    /// most one runs per file, so syncs end in the order they started and
    /// a success covers every write completed before it began.
    pub(crate) syncing: Option<u64>,
}

impl FileEntry {
    pub(crate) fn new(handle: FileHandle) -> FileEntry {
        FileEntry {
            handle,
            written: 0,
            synced: 0,
            syncing: None,
        }
    }
}

/// Everything under the pool's mutex.
pub(crate) struct Meta {
    pub(crate) table: HashMap<PageKey, usize>,
    pub(crate) frames: Vec<FrameMeta>,
    pub(crate) files: HashMap<FileId, FileEntry>,
    /// Free frames, used before the clock is asked for a victim.
    pub(crate) free: Vec<usize>,
    pub(crate) clock: Clock,
    /// Guards (and a loading fetch) holding each frame: raised only with
    /// the mutex held, lowered by [`unpin`](super::pool::Shared::unpin)
    /// without it (module docs).
    pub(crate) pins: Arc<[AtomicU32]>,
}

impl Meta {
    pub(crate) fn new(n: usize) -> Meta {
        Meta {
            pins: (0..n).map(|_| AtomicU32::new(0)).collect(),
            table: HashMap::with_capacity_and_hasher(n, Default::default()),
            frames: vec![FrameMeta::free(); n],
            files: HashMap::default(),
            free: (0..n).rev().collect(),
            clock: Clock::new(n),
        }
    }

    /// Frame `frame`'s pin count now (exact while the mutex is held and
    /// the count is zero: see the module docs).
    pub(crate) fn pins(&self, frame: usize) -> u32 {
        self.pins[frame].load(Ordering::Acquire)
    }

    /// Whether the replacer may take `frame` now.
    pub(crate) fn evictable(&self, frame: usize) -> bool {
        self.frames[frame].evictable(self.pins(frame))
    }

    /// Takes a pin on `frame` (the mutex is held: `&mut self`).
    pub(crate) fn pin(&mut self, frame: usize) {
        self.pins[frame].fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn handle(&self, file: FileId) -> Result<FileHandle, BufferError> {
        self.files
            .get(&file)
            .map(|f| f.handle)
            .ok_or(BufferError::UnknownFile { file })
    }

    /// Free → Loading, or Ready (clean, unpinned) → Loading for another
    /// page: maps `frame` to `key`, pinned once for the caller.
    pub(crate) fn claim(&mut self, frame: usize, key: PageKey) -> Option<PageKey> {
        debug_assert!(
            self.evictable(frame) && !self.frames[frame].dirty,
            "claim of a busy or dirty frame (invariant 4)"
        );
        self.pins[frame].store(1, Ordering::Release);
        let meta = &mut self.frames[frame];
        let old = meta.key.replace(key);
        meta.state = FrameState::Loading;
        meta.dirty = false;
        meta.rec_lsn = Lsn::ZERO;
        if let Some(old) = old {
            self.table.remove(&old);
        }
        self.table.insert(key, frame);
        self.clock.touch(frame);
        old
    }

    /// Loading → Ready.
    pub(crate) fn finish_load(&mut self, frame: usize) {
        self.frames[frame].state = FrameState::Ready;
    }

    /// Loading → Free (the read or verification failed), or Ready → Free
    /// (`unregister_file`): unmaps the frame.
    pub(crate) fn release(&mut self, frame: usize) {
        let meta = &mut self.frames[frame];
        if let Some(key) = meta.key.take() {
            self.table.remove(&key);
        }
        let mod_count = meta.mod_count;
        *meta = FrameMeta {
            mod_count,
            ..FrameMeta::free()
        };
        self.pins[frame].store(0, Ordering::Release);
        self.free.push(frame);
    }

    /// Number of dirty frames.
    pub(crate) fn dirty_count(&self) -> usize {
        self.frames.iter().filter(|m| m.dirty).count()
    }
}
