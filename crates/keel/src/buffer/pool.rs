//! [`BufferPool`]: the public face, and the pin paths (hit, miss, load).
//!
//! Write-back (eviction writes, `flush_*`, the background writer's batches)
//! is in `writeback.rs`; the guards in `guard.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use keel_io::{AsyncIo, BufArena, FileHandle, IoBuf, IoError};
use parking_lot::{Condvar, Mutex, MutexGuard};

use super::BufferError;
use super::flusher::WalFlusher;
use super::frame::{Frame, FrameState, Meta, PageKey};
use super::guard::{PageReadGuard, PageWriteGuard, PinnedPage};
use super::replacer::{Candidate, Pick};
use super::stats::{BufferStats, Counters, bump};
use super::table::{Lookup, PageTable};
use super::writeback::LatchMode;
use super::writer::{BackgroundWriter, WriterSignal};
use super::{BufferConfig, FileId};
use crate::page::{self, PAGE_SIZE};
use crate::types::{Lsn, PageId};

/// State shared by the pool, its guards and its background writer.
pub(crate) struct Shared {
    pub(crate) io: Arc<dyn AsyncIo>,
    pub(crate) wal: Arc<dyn WalFlusher>,
    pub(crate) frames: Arc<[Frame]>,
    /// The sharded page table (table.rs): a hit takes one shard's read
    /// lock and no other lock.
    pub(crate) table: Arc<PageTable>,
    /// Free list, clock, per-frame bookkeeping, files; mapping changes.
    pub(crate) meta: Mutex<Meta>,
    /// Notified when a frame leaves `Loading` or a write-back ends.
    pub(crate) changed: Condvar,
    pub(crate) stats: Counters,
    /// Highest LSN a `flush_through` returned Ok for: later pages at or
    /// below it are written without asking the WAL again.
    pub(crate) wal_durable: AtomicU64,
    /// The failed fdatasync that poisoned the pool (invariant 7); set once.
    pub(crate) poison: OnceLock<Arc<BufferError>>,
    /// Wakes and stops the background writer.
    pub(crate) writer_signal: WriterSignal,
    /// Where frames' buffers come from on their first use: one slot per
    /// frame, faulted in as used (in huge pages when
    /// `BufferConfig::huge_pages` asks and the system gives them; keel-io's
    /// `BufArena`); `None` when the mapping could not be made, and then
    /// frames take heap buffers.
    pub(crate) arena: Option<BufArena>,
}

/// Whether a pin wants a page from disk or a brand-new page.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Existing,
    New,
}

/// What `claim_frame` found.
enum Claimed {
    /// The page is in memory and now pinned.
    Hit(usize),
    /// The frame is mapped to the page, `Loading`, pinned for the caller.
    Miss(usize, FileHandle),
}

/// A frame the replacer offered.
pub(crate) enum Victim {
    Clean(usize),
    Dirty(usize),
    /// Nothing evictable now, but frames are only busy with I/O.
    Wait,
}

/// Byte offset of a page in its file.
pub(crate) fn page_offset(page: PageId) -> u64 {
    u64::from(page.0) * PAGE_SIZE as u64
}

impl Shared {
    /// A zeroed, aligned page buffer for a frame: an arena slot while
    /// there is one (a frame holds one buffer, so there is while buffers
    /// stay with their frames), else heap memory.
    pub(crate) fn page_buf(&self) -> IoBuf {
        match self.arena.as_ref().and_then(BufArena::zeroed) {
            Some(buf) => IoBuf::from(buf),
            None => IoBuf::aligned(PAGE_SIZE),
        }
    }

    /// Pins `key`, reading it on a miss. A hit takes only the shard lock
    /// of `key` (table.rs); anything else goes to `claim_frame`.
    pub(crate) fn pin(&self, key: PageKey) -> Result<usize, BufferError> {
        if let Lookup::Pinned(frame) = self.table.pin_ready(&key, &self.frames) {
            return Ok(frame);
        }
        match self.claim_frame(key, Want::Existing)? {
            Claimed::Hit(frame) => Ok(frame),
            Claimed::Miss(frame, handle) => {
                self.load(frame, key, handle)?;
                Ok(frame)
            }
        }
    }

    /// Finds `key` in the table (pinning it) or claims a frame for it,
    /// under the `Meta` mutex: mappings change only under it, so what the
    /// table says here stays true until the mutex is released.
    fn claim_frame(&self, key: PageKey, want: Want) -> Result<Claimed, BufferError> {
        let mut meta = self.meta.lock();
        loop {
            if want == Want::New && self.table.contains(&key) {
                return Err(BufferError::AlreadyCached {
                    file: key.file,
                    page: key.page,
                });
            }
            match self.table.pin_ready(&key, &self.frames) {
                Lookup::Pinned(frame) => return Ok(Claimed::Hit(frame)),
                Lookup::Loading => {
                    // Wait, then look again (a failed load unmaps it).
                    self.changed.wait(&mut meta);
                    continue;
                }
                Lookup::Missing => {}
            }
            meta.handle(key.file)?;
            let frame = match self.find_victim(&mut meta)? {
                Victim::Clean(frame) => frame,
                Victim::Wait => {
                    self.changed.wait(&mut meta);
                    continue;
                }
                Victim::Dirty(frame) => match self.evict_dirty(&mut meta, frame, key)? {
                    Some(frame) => frame,
                    None => continue,
                },
            };
            // Looked up again: evict_dirty released the mutex, and the file
            // may have been unregistered meanwhile.
            let handle = meta.handle(key.file)?;
            match meta.claim(frame, key) {
                Ok(Some(_)) => bump(&self.stats.evictions, 1),
                Ok(None) => {}
                // A hit pinned the victim after the sweep chose it (its
                // reference bit is set again): sweep on.
                Err(_) => continue,
            }
            bump(&self.stats.misses, 1);
            return Ok(Claimed::Miss(frame, handle));
        }
    }

    /// Asks the free list, then the clock, for a frame.
    pub(crate) fn find_victim(&self, meta: &mut Meta) -> Result<Victim, BufferError> {
        while let Some(frame) = meta.free.pop() {
            // Entries go stale when the clock reuses a free frame first.
            if meta.frames[frame].state == FrameState::Free && meta.evictable(frame) {
                return Ok(Victim::Clean(frame));
            }
        }
        let Meta {
            frames,
            clock,
            live,
            ..
        } = meta;
        let pick = clock.pick(
            |f| {
                let m = &frames[f];
                let pins = live[f].pins.load(Ordering::Acquire);
                if pins > 0 {
                    Candidate::Pinned
                } else if m.evictable(pins) {
                    Candidate::Evictable
                } else {
                    Candidate::Busy
                }
            },
            |f| live[f].take_reference(),
        );
        match pick {
            Pick::Victim(frame) if frames[frame].dirty => Ok(Victim::Dirty(frame)),
            Pick::Victim(frame) => Ok(Victim::Clean(frame)),
            Pick::Busy => Ok(Victim::Wait),
            Pick::AllPinned => Err(BufferError::AllFramesPinned {
                frames: frames.len(),
            }),
        }
    }

    /// Writes a dirty victim with the mutex released, then takes it for
    /// `key` if it is still unpinned and clean and `key` is still missing.
    /// `None`: start over (someone loaded `key`, or pinned or re-dirtied the
    /// victim, or its latch was busy).
    fn evict_dirty(
        &self,
        meta: &mut MutexGuard<'_, Meta>,
        frame: usize,
        key: PageKey,
    ) -> Result<Option<usize>, BufferError> {
        meta.frames[frame].writing = true;
        let outcome =
            MutexGuard::unlocked(meta, || self.write_frames(vec![frame], LatchMode::Try))?;
        bump(&self.stats.dirty_evictions, outcome.written as u64);
        self.writer_signal.kick();
        let m = &meta.frames[frame];
        let reusable = meta.evictable(frame) && !m.dirty && m.state == FrameState::Ready;
        Ok((reusable && !self.table.contains(&key)).then_some(frame))
    }

    /// Reads and verifies the page into a `Loading` frame; Ready on success,
    /// unmapped and Free on failure. Neither latch nor mutex is held during
    /// the read: nobody else touches a Loading frame's bytes.
    fn load(&self, frame: usize, key: PageKey, handle: FileHandle) -> Result<(), BufferError> {
        let buf = self.frames[frame].take_buffer(|| self.page_buf());
        // On this thread: the caller waits for the page anyway (a hand-off
        // to an I/O thread costs more than a page-cache hit).
        let read = self
            .io
            .read_exact_at_blocking(handle, page_offset(key.page), buf);
        let (file, page) = (key.file, key.page);
        let (buf, outcome) = match read {
            Ok(buf) => {
                bump(&self.stats.reads, 1);
                let verified = page::verify_relation_page(&buf, page)
                    .map(|_| ())
                    .map_err(|source| BufferError::PageCorrupt { file, page, source });
                (buf, verified)
            }
            Err(IoError::ShortRead { .. }) => (
                self.page_buf(),
                Err(BufferError::PageBeyondEof { file, page }),
            ),
            Err(source) => (
                self.page_buf(),
                Err(BufferError::Io {
                    op: "read",
                    file,
                    page,
                    source,
                }),
            ),
        };
        *self.frames[frame].latch_write() = buf;
        let mut meta = self.meta.lock();
        match outcome {
            Ok(()) => meta.finish_load(frame),
            Err(_) => meta.release(frame),
        }
        drop(meta);
        self.changed.notify_all();
        outcome
    }

    /// Drops one pin (guards call this after releasing the latch), without
    /// any lock (the pin rule, table.rs).
    pub(crate) fn unpin(&self, frame: usize) {
        let before = self.frames[frame].pins.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(
            before > 0,
            "unpin of an unpinned frame (the pin rule: a frame in use is never evicted)"
        );
    }

    /// Records a change (called with the frame's exclusive latch held).
    pub(crate) fn mark_dirty(&self, frame: usize, lsn: Lsn) {
        let mut meta = self.meta.lock();
        let m = &mut meta.frames[frame];
        if !m.dirty {
            m.dirty = true;
            m.rec_lsn = lsn;
        }
        if m.copied && m.rec_lsn_after_copy == Lsn::ZERO {
            m.rec_lsn_after_copy = lsn;
        }
        m.mod_count += 1;
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poison.get().is_some()
    }

    /// Poisons the pool with `cause` unless an earlier failure did; returns
    /// the error every caller gets from now on, naming the first cause.
    pub(crate) fn poison(&self, cause: BufferError) -> BufferError {
        let _ = self.poison.set(Arc::new(cause));
        self.poison_error()
    }

    /// The refusal of a poisoned pool, naming what poisoned it.
    pub(crate) fn poison_error(&self) -> BufferError {
        match self.poison.get() {
            Some(cause) => BufferError::Poisoned {
                cause: Arc::clone(cause),
            },
            None => {
                debug_assert!(false, "invariant 7: poison_error of a pool not poisoned");
                BufferError::Config("the buffer pool is not poisoned".into())
            }
        }
    }
}

/// Keel's buffer pool (see the module documentation for the protocol).
pub struct BufferPool {
    shared: Arc<Shared>,
    writer: Mutex<Option<BackgroundWriter>>,
}

impl BufferPool {
    /// A pool of `config.frames()` frames doing I/O through `io`, and asking
    /// `wal` to flush before writing a page (invariant 4). Starts the
    /// background writer if configured.
    pub fn new(
        io: Arc<dyn AsyncIo>,
        wal: Arc<dyn WalFlusher>,
        config: BufferConfig,
    ) -> Result<BufferPool, BufferError> {
        config.validate()?;
        let n = config.frames();
        let frames: Arc<[Frame]> = (0..n).map(|_| Frame::new()).collect();
        let table = Arc::new(PageTable::new(n));
        let meta = Meta::new(Arc::clone(&table), Arc::clone(&frames));
        let shared = Arc::new(Shared {
            io,
            wal,
            frames,
            table,
            meta: Mutex::new(meta),
            changed: Condvar::new(),
            stats: Counters::default(),
            wal_durable: AtomicU64::new(0),
            poison: OnceLock::new(),
            writer_signal: WriterSignal::default(),
            arena: BufArena::new(PAGE_SIZE, n, config.huge_pages),
        });
        let writer = if config.background_writer {
            Some(BackgroundWriter::start(
                Arc::clone(&shared),
                config.writer_interval_ms,
                config.writer_batch_pages,
            )?)
        } else {
            None
        };
        Ok(BufferPool {
            shared,
            writer: Mutex::new(writer),
        })
    }

    /// Number of frames.
    pub fn frame_count(&self) -> usize {
        self.shared.frames.len()
    }

    /// Makes `handle` (an opened data file) known as `file`.
    pub fn register_file(&self, file: FileId, handle: FileHandle) -> Result<(), BufferError> {
        let mut meta = self.shared.meta.lock();
        if meta.files.contains_key(&file) {
            return Err(BufferError::FileRegistered { file });
        }
        meta.files
            .insert(file, super::frame::FileEntry::new(handle));
        Ok(())
    }

    /// Forgets `file` and **discards** its cached pages, dirty or not (to
    /// keep changes, [`flush_file`](Self::flush_file) first). Fails with
    /// `FileBusy` while any of its pages is pinned, loading or being
    /// written. Returns the handle so the caller can close it.
    pub fn unregister_file(&self, file: FileId) -> Result<FileHandle, BufferError> {
        let mut meta = self.shared.meta.lock();
        let handle = meta.handle(file)?;
        let frames: Vec<usize> = (0..meta.frames.len())
            .filter(|&f| meta.frames[f].key.is_some_and(|k| k.file == file))
            .collect();
        // Under every shard's write lock no hit can pin a frame, so the
        // check and the discard that follows see the same pins (the pin
        // rule, table.rs): all the file's pages go, or none.
        let table = Arc::clone(&self.shared.table);
        let mut shards = table.write_all();
        if frames.iter().any(|&f| !meta.evictable(f)) {
            return Err(BufferError::FileBusy { file });
        }
        for f in frames {
            meta.release_locked(f, &mut shards);
        }
        drop(shards);
        meta.files.remove(&file);
        Ok(handle)
    }

    /// Pins a page without latching it, reading it if needed. Latch it
    /// with [`PinnedPage::read`] / [`PinnedPage::write`].
    pub fn pin(&self, file: FileId, page: PageId) -> Result<PinnedPage<'_>, BufferError> {
        let key = PageKey { file, page };
        let frame = self.shared.pin(key)?;
        Ok(PinnedPage::new(&self.shared, frame, key))
    }

    /// Read-ahead: loads the pages of `pages` that are not in the pool,
    /// their reads submitted together, and installs each one that verifies
    /// unpinned (it may be evicted again before it is used). A page that
    /// cannot be read or fails verification is not installed: the fetch
    /// that needs it reads it again and reports the error. Takes no latch
    /// (call it with none held); dirty victims are written together first.
    /// Stops early, without an error, when every frame is pinned or busy.
    /// Returns the number of pages installed; an error only from writing
    /// a dirty victim.
    pub fn prefetch(&self, pages: &[(FileId, PageId)]) -> Result<usize, BufferError> {
        let keys: Vec<PageKey> = pages
            .iter()
            .map(|&(file, page)| PageKey { file, page })
            .collect();
        self.shared.prefetch(&keys)
    }

    /// Pins the page and takes its latch shared.
    pub fn fetch_read(&self, file: FileId, page: PageId) -> Result<PageReadGuard<'_>, BufferError> {
        Ok(self.pin(file, page)?.read())
    }

    /// Pins the page and takes its latch exclusive.
    pub fn fetch_write(
        &self,
        file: FileId,
        page: PageId,
    ) -> Result<PageWriteGuard<'_>, BufferError> {
        Ok(self.pin(file, page)?.write())
    }

    /// A frame for a page that does not exist on disk yet: zeroed, nothing
    /// read, returned latched exclusive. The caller formats it and marks it
    /// dirty before dropping the guard (a guard dropped with no change
    /// marked unmaps the frame again). Fails with `AlreadyCached` if the
    /// page is in the pool.
    pub fn new_page(&self, file: FileId, page: PageId) -> Result<PageWriteGuard<'_>, BufferError> {
        let key = PageKey { file, page };
        let shared = &*self.shared;
        let frame = match shared.claim_frame(key, Want::New)? {
            Claimed::Miss(frame, _) => frame,
            // claim_frame(New) reports a cached page as AlreadyCached; never
            // zero a live page if that ever changes.
            Claimed::Hit(frame) => {
                shared.unpin(frame);
                return Err(BufferError::AlreadyCached { file, page });
            }
        };
        let mut latch = shared.frames[frame].latch_write();
        if latch.len() == PAGE_SIZE {
            latch.fill(0);
        } else {
            *latch = shared.page_buf();
        }
        shared.meta.lock().finish_load(frame);
        shared.changed.notify_all();
        Ok(PageWriteGuard::new_page(
            latch,
            PinnedPage::new(shared, frame, key),
        ))
    }

    /// Writes the page if it is dirty (waiting for a write-back already in
    /// progress). Do not call it with latches held.
    pub fn flush_page(&self, file: FileId, page: PageId) -> Result<(), BufferError> {
        self.shared.flush_page(PageKey { file, page })
    }

    /// Writes every page of `file` dirty at the call, then fdatasyncs it.
    pub fn flush_file(&self, file: FileId) -> Result<(), BufferError> {
        self.shared.flush_where(|f| f == file)
    }

    /// Writes every page dirty at the call, then fdatasyncs every file
    /// written since its last sync: afterwards every change made before the
    /// call is durable in the data files (shutdown, checkpoints). Do not
    /// call it with latches held.
    pub fn flush_all(&self) -> Result<(), BufferError> {
        self.shared.flush_where(|_| true)
    }

    /// The dirty page table: every dirty page with its recLSN (the LSN of
    /// its first change since it was last clean), ordered by file and page.
    pub fn dirty_pages(&self) -> Vec<(FileId, PageId, Lsn)> {
        let meta = self.shared.meta.lock();
        let mut out: Vec<_> = meta
            .frames
            .iter()
            .filter(|m| m.dirty)
            .filter_map(|m| m.key.map(|k| (k.file, k.page, m.rec_lsn)))
            .collect();
        drop(meta);
        out.sort_unstable();
        out
    }

    /// Whether a failed fdatasync has poisoned the pool (invariant 7).
    pub fn is_poisoned(&self) -> bool {
        self.shared.is_poisoned()
    }

    /// Poisons the pool because the page latched in `g` was changed and
    /// the log refused the change's record (`reason`): from now on no page
    /// is written (invariant 4), and every later write or flush fails with
    /// the returned refusal.
    pub(crate) fn poison_unlogged(&self, g: &PageWriteGuard<'_>, reason: String) -> BufferError {
        self.shared.poison(BufferError::Unlogged {
            file: g.file(),
            page: g.page_id(),
            reason,
        })
    }

    /// The failure that poisoned the pool, if one did.
    pub fn poison_cause(&self) -> Option<Arc<BufferError>> {
        self.shared.poison.get().cloned()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BufferStats {
        let dirty = self.shared.meta.lock().dirty_count();
        let hits = self.shared.table.hits();
        self.shared.stats.snapshot(self.frame_count(), dirty, hits)
    }

    /// Stops the background writer, then [`flush_all`](Self::flush_all).
    /// The pool stays usable (without the writer). Dropping the pool stops
    /// the writer but does not flush.
    pub fn shutdown(&self) -> Result<(), BufferError> {
        let writer = self.writer.lock().take();
        drop(writer);
        self.flush_all()
    }
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("frames", &self.frame_count())
            .field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}
