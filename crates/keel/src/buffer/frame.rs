//! Frames and the bookkeeping the pool keeps about them.
//!
//! A [`Frame`] is what a hit touches, on one cache line: the page bytes
//! behind their latch, the pin count, whether the page is Ready, the
//! clock's reference bit, and whether the bytes passed a tree node's
//! header checks since they last changed (cleared by every exclusive
//! latch, so a descent that finds it set skips re-checking a node nobody
//! changed), all atomics. Everything else about a frame —
//! which page it holds, its state, dirtiness, write-back — is a
//! [`FrameMeta`] inside [`Meta`], changed only with the pool's `Meta`
//! mutex held (and that mutex is never held during I/O or while taking a
//! latch that anyone may hold; see the module essay's protocol).
//!
//! The page table is sharded (table.rs); its module docs give the pin
//! rule: a pin is *raised* only under the shard lock of the frame's key or
//! the `Meta` mutex, and *dropped* without any lock, while a frame is
//! unmapped only with both held, its pin count checked there. So a guard's
//! pin and unpin take no pool-wide lock, and whoever unmaps a frame it
//! found unpinned (a claim for another page, `release`) is never
//! contradicted before the mapping is gone. `ready` mirrors
//! `FrameMeta::state == Ready` for the hit path: it rises in
//! [`Meta::finish_load`] and falls only in [`Meta::claim`] and
//! [`Meta::release`], under the shard's write lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use rustc_hash::FxHashMap as HashMap;

use keel_io::{FileHandle, IoBuf};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::BufferError;
use super::FileId;
use super::replacer::Clock;
use super::table::{AllShards, PageTable};
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

/// One frame, on its own cache line: the bytes behind the page latch
/// (empty until the frame first holds a page, so opening a large pool does
/// not touch, and fault in, all its memory at once; then an aligned
/// `PAGE_SIZE` [`IoBuf`] outside `Loading`, aligned so files opened with
/// O_DIRECT work too, taken from the pool's arena, `Shared::page_buf`),
/// and the atomics a hit reads and writes.
#[repr(align(64))]
pub(crate) struct Frame {
    /// The page latch and the bytes behind it; latched exclusively only
    /// through [`latch_write`](Self::latch_write) and
    /// [`try_latch_write`](Self::try_latch_write), which forget
    /// `node_checked`.
    data: RwLock<IoBuf>,
    /// Guards (and a loading fetch) holding the frame (the pin rule in the
    /// module docs).
    pub(crate) pins: AtomicU32,
    /// The frame holds a Ready page: the hit path may pin it.
    pub(crate) ready: AtomicBool,
    /// The clock's reference bit (replacer.rs), set by every pin.
    pub(crate) referenced: AtomicBool,
    /// The bytes passed a tree node's header checks (`TreePage::open`)
    /// since they last changed. Set by a reader holding the latch shared
    /// once its open succeeded, cleared by every exclusive latch before its
    /// holder can change a byte (a change, a load, a new page); so a reader
    /// that finds it set under the shared latch holds bytes some open
    /// accepted and nobody changed since: the latch orders every set
    /// before the next exclusive holder's clear, and that clear before the
    /// next shared holder's load.
    node_checked: AtomicBool,
}

// The essay's "one cache line": the latch, the buffer's pointer and the
// hit's atomics share it.
const _: () = assert!(std::mem::size_of::<Frame>() == 64);

impl Frame {
    pub(crate) fn new() -> Frame {
        Frame {
            data: RwLock::new(IoBuf::zeroed(0)),
            pins: AtomicU32::new(0),
            ready: AtomicBool::new(false),
            referenced: AtomicBool::new(false),
            node_checked: AtomicBool::new(false),
        }
    }

    /// Takes the latch shared.
    pub(crate) fn latch_read(&self) -> RwLockReadGuard<'_, IoBuf> {
        self.data.read()
    }

    /// [`latch_read`](Self::latch_read) if nobody holds the latch
    /// exclusive.
    pub(crate) fn try_latch_read(&self) -> Option<RwLockReadGuard<'_, IoBuf>> {
        self.data.try_read()
    }

    /// Takes the latch exclusive, and forgets that the bytes were checked
    /// (`node_checked`): the holder may change them.
    pub(crate) fn latch_write(&self) -> RwLockWriteGuard<'_, IoBuf> {
        let latch = self.data.write();
        self.node_checked.store(false, Ordering::Relaxed);
        latch
    }

    /// [`latch_write`](Self::latch_write) if nobody holds the latch.
    pub(crate) fn try_latch_write(&self) -> Option<RwLockWriteGuard<'_, IoBuf>> {
        let latch = self.data.try_write()?;
        self.node_checked.store(false, Ordering::Relaxed);
        Some(latch)
    }

    /// Whether the bytes passed a node's header checks since they last
    /// changed (`node_checked`); call with the latch held shared.
    pub(crate) fn node_checked(&self) -> bool {
        self.node_checked.load(Ordering::Relaxed)
    }

    /// Records that the bytes passed a node's header checks; call with the
    /// latch held shared, after the checks.
    pub(crate) fn set_node_checked(&self) {
        self.node_checked.store(true, Ordering::Relaxed);
    }

    /// Marks the frame recently used (written only when clear, so frames
    /// every reader passes through, a tree's root, keep their line shared).
    pub(crate) fn touch(&self) {
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }

    /// The clock's second chance: clears the reference bit, returning
    /// whether it was set.
    pub(crate) fn take_reference(&self) -> bool {
        self.referenced.load(Ordering::Relaxed) && self.referenced.swap(false, Ordering::Relaxed)
    }

    /// The frame's buffer, taken out to read a page into (made by `fresh`
    /// on the frame's first use).
    pub(crate) fn take_buffer(&self, fresh: impl FnOnce() -> IoBuf) -> IoBuf {
        let buf = std::mem::replace(&mut *self.latch_write(), IoBuf::zeroed(0));
        if buf.len() == PAGE_SIZE { buf } else { fresh() }
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

/// Contradicted: the frame was pinned by a hit after the replacer chose
/// it, found when its shard's write lock was taken; choose another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PinnedMeanwhile;

/// Everything under the pool's `Meta` mutex, and the shared page table and
/// frames whose mappings it changes.
pub(crate) struct Meta {
    /// Changed only here, with the mutex and the key's shard lock held.
    pub(crate) table: Arc<PageTable>,
    /// The frames themselves (their pins, `ready` flags, reference bits).
    pub(crate) live: Arc<[Frame]>,
    pub(crate) frames: Vec<FrameMeta>,
    pub(crate) files: HashMap<FileId, FileEntry>,
    /// Free frames, used before the clock is asked for a victim.
    pub(crate) free: Vec<usize>,
    pub(crate) clock: Clock,
}

impl Meta {
    pub(crate) fn new(table: Arc<PageTable>, live: Arc<[Frame]>) -> Meta {
        let n = live.len();
        Meta {
            table,
            live,
            frames: vec![FrameMeta::free(); n],
            files: HashMap::default(),
            free: (0..n).rev().collect(),
            clock: Clock::new(n),
        }
    }

    /// Frame `frame`'s pin count now: it may rise by a hit unless the
    /// frame's shard lock is held exclusive (the pin rule, table.rs).
    pub(crate) fn pins(&self, frame: usize) -> u32 {
        self.live[frame].pins.load(Ordering::Acquire)
    }

    /// Whether the replacer may take `frame` now (a hint for a mapped frame
    /// until [`claim`](Self::claim) checks again under its shard lock).
    pub(crate) fn evictable(&self, frame: usize) -> bool {
        self.frames[frame].evictable(self.pins(frame))
    }

    pub(crate) fn handle(&self, file: FileId) -> Result<FileHandle, BufferError> {
        self.files
            .get(&file)
            .map(|f| f.handle)
            .ok_or(BufferError::UnknownFile { file })
    }

    /// Free → Loading, or Ready (clean, unpinned) → Loading for another
    /// page: maps `frame` to `key` (which the caller found unmapped, under
    /// this mutex), pinned once for the caller. Returns the page the frame
    /// held, or `PinnedMeanwhile` (nothing changed) if a hit pinned the
    /// frame after the replacer chose it: its pin count is checked again
    /// under the old page's shard write lock, where it cannot rise (the
    /// pin rule, table.rs: a frame in use is never evicted).
    pub(crate) fn claim(
        &mut self,
        frame: usize,
        key: PageKey,
    ) -> Result<Option<PageKey>, PinnedMeanwhile> {
        debug_assert!(
            self.frames[frame].state != FrameState::Loading
                && !self.frames[frame].writing
                && !self.frames[frame].dirty,
            "claim of a busy or dirty frame (invariant 4)"
        );
        let live = &self.live[frame];
        let old = self.frames[frame].key;
        if let Some(old) = old {
            let mut map = self.table.write(&old);
            if live.pins.load(Ordering::Acquire) != 0 {
                return Err(PinnedMeanwhile);
            }
            live.ready.store(false, Ordering::Release);
            map.remove(&old);
        } else {
            debug_assert_eq!(
                live.pins.load(Ordering::Acquire),
                0,
                "a free frame is unmapped"
            );
        }
        // Unmapped and not Ready: nobody else can pin it now.
        live.pins.store(1, Ordering::Release);
        let meta = &mut self.frames[frame];
        meta.key = Some(key);
        meta.state = FrameState::Loading;
        meta.dirty = false;
        meta.rec_lsn = Lsn::ZERO;
        let previous = self.table.write(&key).insert(key, frame);
        debug_assert!(previous.is_none(), "a claim maps a page already mapped");
        live.touch();
        Ok(old)
    }

    /// Loading → Ready: the page's bytes are in the frame.
    pub(crate) fn finish_load(&mut self, frame: usize) {
        self.frames[frame].state = FrameState::Ready;
        self.live[frame].ready.store(true, Ordering::Release);
    }

    /// Loading → Free (the read or verification failed; the loader's pin is
    /// the only one, hits never pin a frame that is not Ready), or Ready →
    /// Free (`unregister_file`, which checked under every shard lock that
    /// nobody pins it): unmaps the frame.
    pub(crate) fn release(&mut self, frame: usize) {
        let key = self.frames[frame].key;
        match key {
            Some(key) => {
                let table = Arc::clone(&self.table);
                let mut map = table.write(&key);
                self.unmap(frame, |k| map.remove(k));
            }
            None => self.unmap(frame, |_| None),
        }
    }

    /// Unmaps a frame `new_page` mapped whose guard is being dropped with
    /// no change marked (`PageWriteGuard::drop`): still clean, and pinned
    /// only by that guard, checked under the key's shard lock, without
    /// which no hit can pin it. The guard's pin is left for the guard to
    /// drop; the frame is Free and reused once it has (a free-list entry
    /// taken while it is still pinned is skipped, and the clock finds it).
    /// Returns whether it was unmapped.
    pub(crate) fn discard_new(&mut self, frame: usize) -> bool {
        let m = &self.frames[frame];
        let Some(key) = m.key else {
            return false;
        };
        if m.dirty || m.writing || m.state != FrameState::Ready {
            return false;
        }
        let table = Arc::clone(&self.table);
        let mut map = table.write(&key);
        let live = &self.live[frame];
        if live.pins.load(Ordering::Acquire) != 1 {
            return false;
        }
        live.ready.store(false, Ordering::Release);
        map.remove(&key);
        let mod_count = self.frames[frame].mod_count;
        self.frames[frame] = FrameMeta {
            mod_count,
            ..FrameMeta::free()
        };
        self.free.push(frame);
        true
    }

    /// `release` for a caller holding every shard lock.
    pub(crate) fn release_locked(&mut self, frame: usize, shards: &mut AllShards<'_>) {
        self.unmap(frame, |k| shards.remove(k));
    }

    fn unmap(&mut self, frame: usize, remove: impl FnOnce(&PageKey) -> Option<usize>) {
        let live = &self.live[frame];
        debug_assert!(
            live.pins.load(Ordering::Acquire) <= 1,
            "release of a frame in use (the pin rule, table.rs)"
        );
        live.ready.store(false, Ordering::Release);
        let meta = &mut self.frames[frame];
        if let Some(key) = meta.key.take() {
            remove(&key);
        }
        let mod_count = meta.mod_count;
        *meta = FrameMeta {
            mod_count,
            ..FrameMeta::free()
        };
        live.pins.store(0, Ordering::Release);
        self.free.push(frame);
    }

    /// Number of dirty frames.
    pub(crate) fn dirty_count(&self) -> usize {
        self.frames.iter().filter(|m| m.dirty).count()
    }
}
