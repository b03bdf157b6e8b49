//! The buffer pool: a fixed set of in-memory frames that cache 8 KiB pages
//! of Keel's data files, with pins, page latches, write-back and eviction.
//!
//! Every layer above (heap, FSM, recovery) reaches a page only through
//! [`BufferPool`]. A page is named by `(FileId, PageId)`: the heap maps each
//! relation and its FSM fork to a [`FileId`] and registers the opened file
//! with [`BufferPool::register_file`]. Page `n` of a file lives at byte
//! `n * PAGE_SIZE`, read and written through [`keel_io::AsyncIo`] only.
//!
//! ## Pins and latches
//!
//! A *pin* keeps a page in its frame (a pinned frame is never evicted); a
//! *latch* (the frame's `parking_lot::RwLock`) protects the page's bytes.
//! The API hands out RAII guards that own both:
//!
//! - [`BufferPool::fetch_read`] pins, then takes the latch shared: a
//!   [`PageReadGuard`] derefs to `[u8]`. Use it to read tuples.
//! - [`BufferPool::fetch_write`] pins, then takes the latch exclusive: a
//!   [`PageWriteGuard`] also derefs mutably. Log the change first, apply
//!   it, then call [`PageWriteGuard::mark_dirty`] with the record's LSN.
//! - [`BufferPool::new_page`] is `fetch_write` for a page that is not on
//!   disk yet: the frame is zeroed and nothing is read; the caller formats
//!   it (and must mark it dirty, or the new page is lost on eviction).
//! - [`BufferPool::pin`] pins without latching ([`PinnedPage`]), for the
//!   multi-page protocol below.
//!
//! Dropping a guard releases the latch, then the pin.
//!
//! ## Latching protocol (invariant 11)
//!
//! 1. A latch is held for one page operation (read a tuple, insert, update,
//!    compact) and dropped before anything that may wait for long.
//! 2. Several pages are latched in page-id order (within one file, and in
//!    `FileId` order across files). To reach them without holding a latch
//!    across a read of another page, pin them all first ([`BufferPool::pin`]
//!    may read from disk), then latch the pins in order.
//! 3. No latch is held while waiting for a lock (lock manager), for a log
//!    flush, or for a read of another page. So `pin`, `fetch_*`,
//!    `new_page` and `flush_*` are never called with a latch held: any of
//!    them may read a page or wait for a write-back. Taking the same page's
//!    latch twice in one thread deadlocks (`parking_lot` latches are not
//!    reentrant). The one exception is a tree split (btree/mod.rs): it
//!    holds the splitting node's latch while it takes a new page and
//!    latches the parent, so it may wait for a free frame, a read, or the
//!    log flush that a dirty victim's write-back needs. That wait always
//!    ends: the log flush takes no page latch, and write-backs and eviction
//!    only *try* latches (rule 4, `writeback.rs`), so nothing they wait for
//!    can be a latch the split holds.
//! 4. The pool itself never holds a latch, its `Meta` mutex or a page-table
//!    shard lock during I/O. A
//!    write-back copies the page under a *shared* latch (so readers go on),
//!    drops it, then flushes the WAL through the copy's page LSN and writes
//!    the copy. Eviction and the background writer take a page's latch
//!    only with `try_read` and skip the page if it is busy (PostgreSQL's
//!    eviction does the same), so even a caller that breaks rule 3 cannot
//!    make them wait on it; `flush_page`/`flush_*` wait for the latch.
//! 5. Lock order: page latch, then the pool's `Meta` mutex, then one
//!    page-table shard lock (table.rs). The mutex is never held while
//!    taking a latch that anyone may hold, and nothing at all is taken
//!    while a shard lock is held (only `unregister_file` holds several,
//!    every shard's, in shard order).
//!
//! ## Frames
//!
//! The page table `(FileId, PageId) -> frame` is split into 64 shards, each
//! behind its own `RwLock` (table.rs). A *hit* takes only its key's shard
//! lock, shared: it finds the frame, checks the frame's atomic `ready`
//! flag, raises its atomic pin count and sets its atomic clock reference
//! bit (all on the frame's one cache line, frame.rs), so readers of
//! different pages share no lock, and dropping a guard takes no lock at
//! all. Everything else about a frame — its key, state, dirty flag,
//! recLSN, modification counter, write-in-progress flag — and the free
//! list, the clock's hand and the registered files live under one `Meta`
//! mutex held only for short updates; misses, eviction, write-back and
//! `unregister_file` take it. The *pin rule* (table.rs) ties the two: a
//! pin is raised only under the key's shard lock or the `Meta` mutex, and
//! a frame is unmapped or remapped only with both held, its pins checked
//! under the shard's write lock, where they cannot rise; so a frame a hit
//! pinned is never taken from it, and a victim the clock
//! chose that a hit pinned meanwhile is passed over. A frame's lifecycle
//! ([`FrameState`], the function behind each edge):
//!
//! ```text
//!                       Meta::claim (a miss or new_page takes a free frame)
//!          Free ──────────────────────────────────────────▶ Loading ◀──┐
//!          ▲  ▲          Meta::release                        │        │
//!          │  └──── (Shared::load: read, EOF or verification ─┤        │ Meta::claim
//!          │         failed; the frame is unmapped)           │        │ (eviction of
//!          │                                                  │        │  an unpinned,
//!          │                           Meta::finish_load      │        │  idle, clean
//!          │              (Shared::load verified the page,    ▼        │  frame)
//!          │               or new_page zeroed the frame)    Ready ─────┘
//!          └────────── Meta::release (unregister_file) ───────┘
//!
//!   inside Ready:  clean ── PageWriteGuard::mark_dirty ──────────────────▶ dirty
//!                  dirty ── Shared::write_frames (no change since copy) ──▶ clean
//! ```
//!
//! A dirty Ready frame is also *writing* while one write-back owns it
//! (`write_frames`: eviction, [`BufferPool::flush_page`],
//! [`BufferPool::flush_all`], the background writer). At most one
//! write-back per frame runs at a time, so an older copy can never land on
//! disk after a newer one; others wait on the pool's condition variable.
//! A writing frame stays mapped and can be pinned and changed meanwhile: a
//! concurrent fetch of a page being evicted reads the in-memory copy, never
//! the stale disk copy. The frame is marked clean after its write only if
//! its modification counter did not move since the copy was taken.
//!
//! ## Miss path
//!
//! A clock replacer picks a victim among unpinned frames that are not
//! loading or writing. If every frame is pinned the fetch fails at once with
//! [`BufferError::AllFramesPinned`] (never hangs); if some are only busy
//! with I/O it waits for them. A dirty victim is written first (invariant
//! 4: the WAL is flushed through its page LSN, the copy's CRC is sealed at
//! write time), and is reassigned only if nobody pinned or re-dirtied it
//! meanwhile; otherwise another victim is tried. Then the frame is
//! *Loading*: the page is read with `read_exact_at` (a page past the end of
//! the file is [`BufferError::PageBeyondEof`]) and fully verified with
//! [`crate::page::verify_relation_page`] (checksum over the page and its
//! id, then the structure, and a type a relation file holds). A page that
//! fails is an error naming file and page and is never returned as data;
//! the frame is unmapped and freed, and threads that waited for it retry and
//! get the error themselves.
//!
//! ## Read-ahead
//!
//! [`BufferPool::prefetch`] takes a list of pages someone is about to need
//! (recovery's redo passes the pages of the next window of log records)
//! and loads the missing ones with their reads submitted together, so the
//! backend runs them concurrently instead of one miss at a time. Under the
//! mutex it claims a frame per missing page (Loading, pinned once, as a
//! miss does); dirty victims are marked `writing` instead and written in
//! one `write_frames` batch (WAL first, invariant 4), then claimed on the
//! next round. Pinned frames are never victims. It stops early, without an
//! error, when no frame is evictable. Each read page is verified like a
//! miss: a good one becomes Ready and its pin is dropped (installed
//! unpinned, so it may be evicted again before use); one that is short,
//! fails to read or fails verification is unmapped and freed, never
//! installed, and the fetch that needs it reads it again and gets the
//! error itself. Prefetch takes no page latch except `try_read` on dirty
//! victims, and callers hold none while calling it (rule 3).
//!
//! ## Durability
//!
//! [`BufferPool::dirty_pages`] reports each dirty page with its recLSN (the
//! LSN of the first change since it was last clean) for checkpoints.
//! [`BufferPool::flush_all`] writes every page dirty when it is called, then
//! `fdatasync`s every file written since its last sync (including writes by
//! eviction and the background writer), so a checkpoint may say the data is
//! durable. Each file counts its completed page writes; a sync covers the
//! writes completed before it started. One sync per file runs at a time: a
//! flush that needs a file already being synced waits for that sync (and
//! starts its own after it if the sync began before the writes it must
//! cover), so `flush_all` never returns while a sync it relies on is still
//! in flight, and sees that sync's error. A failed `fdatasync` poisons the
//! pool (invariant 7): the first failure is kept, every later write-back
//! and flush fails with [`BufferError::Poisoned`] naming it as its source;
//! reads still work (the database layer refuses them, invariant 16).
//!
//! ## Left out
//!
//! Read-ahead on the miss path itself (only explicit `prefetch`), ring
//! buffers for scans, a lock-free (optimistic) page table, and full-page
//! images for torn-page repair (invariant 5 belongs to the heap and
//! recovery, which log them).

mod error;
mod flusher;
mod frame;
mod guard;
mod pool;
mod prefetch;
mod replacer;
mod stats;
mod table;
mod writeback;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;

pub use flusher::{InjectedFlushFailure, NoWal, RecordingFlusher, WalFlushError, WalFlusher};
pub use frame::FrameState;
pub use guard::{PageReadGuard, PageWriteGuard, PinnedPage};
pub use pool::BufferPool;
pub use stats::BufferStats;

pub use error::BufferError;

/// Number of a data file known to the buffer pool. The heap gives each
/// relation and each of its forks (the FSM) its own id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u32);

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Buffer pool configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferConfig {
    /// Memory for page frames, in bytes; the pool has
    /// `pool_bytes / PAGE_SIZE` frames (at least 2; a database needs
    /// [`crate::MIN_FRAMES`]).
    pub pool_bytes: usize,
    /// Whether a background thread writes dirty pages ahead of eviction.
    pub background_writer: bool,
    /// How long the background writer sleeps between batches. Shorter means
    /// fewer synchronous writes on the miss path and more writes of pages
    /// that would have been changed again.
    pub writer_interval_ms: u64,
    /// Most pages the background writer writes per batch (submitted
    /// together, so the backend can run them concurrently).
    pub writer_batch_pages: usize,
    /// Whether the frames' memory asks for transparent huge pages
    /// (`MADV_HUGEPAGE`, Linux). Asked for, a large pool can take fewer
    /// TLB misses when pages are read at random (a 64 MiB pool on the
    /// development VM read no faster), but the first write into each 2 MiB of
    /// the pool waits while a whole huge page is faulted in and zeroed; on
    /// a virtual machine whose host takes back the guest's free memory, it
    /// also waits for the host to back those 2 MiB (on the development VM,
    /// 42–73 ms for the first 16 MiB against 6–7 ms in 4 KiB pages, so a
    /// fresh pool filled by a bulk load ran up to twice as slow). Off (the
    /// default), the pool's memory follows the system's transparent huge
    /// page setting.
    pub huge_pages: bool,
}

/// The largest `pool_bytes` on any machine (16 TiB).
pub const MAX_POOL_BYTES: usize = 1 << 44;

/// The longest `writer_interval_ms` (an hour).
pub const MAX_WRITER_INTERVAL_MS: u64 = 3_600_000;

/// The largest `pool_bytes` on this machine: its physical memory (read
/// from /proc/meminfo where there is one), and at most [`MAX_POOL_BYTES`].
pub fn max_pool_bytes() -> usize {
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            usize::try_from(kib.checked_mul(1024)?).ok()
        });
    physical.map_or(MAX_POOL_BYTES, |p| p.min(MAX_POOL_BYTES))
}

impl Default for BufferConfig {
    fn default() -> BufferConfig {
        BufferConfig {
            pool_bytes: 64 * 1024 * 1024,
            background_writer: true,
            writer_interval_ms: 100,
            writer_batch_pages: 64,
            huge_pages: false,
        }
    }
}

impl BufferConfig {
    /// A configuration with `frames` frames and no background writer (tests).
    pub fn with_frames(frames: usize) -> BufferConfig {
        BufferConfig {
            pool_bytes: frames * crate::page::PAGE_SIZE,
            background_writer: false,
            ..BufferConfig::default()
        }
    }

    /// Number of frames this configuration gives.
    pub fn frames(&self) -> usize {
        self.pool_bytes / crate::page::PAGE_SIZE
    }

    /// Checks the values: every value it accepts can be honoured (the
    /// pool's bookkeeping is allocated at open, its frames on first use).
    pub fn validate(&self) -> Result<(), BufferError> {
        let max = max_pool_bytes();
        if self.pool_bytes > max {
            return Err(BufferError::Config(format!(
                "pool_bytes {} is more than the largest pool, {max} (the machine's \
                 physical memory, and at most {MAX_POOL_BYTES})",
                self.pool_bytes
            )));
        }
        if self.writer_interval_ms > MAX_WRITER_INTERVAL_MS {
            return Err(BufferError::Config(format!(
                "writer_interval_ms {} must be in 1..={MAX_WRITER_INTERVAL_MS}",
                self.writer_interval_ms
            )));
        }
        if self.frames() < 2 {
            return Err(BufferError::Config(format!(
                "pool_bytes {} gives {} frames; at least 2 are needed",
                self.pool_bytes,
                self.frames()
            )));
        }
        if self.background_writer && (self.writer_batch_pages == 0 || self.writer_interval_ms == 0)
        {
            return Err(BufferError::Config(
                "the background writer needs writer_batch_pages > 0 and writer_interval_ms > 0"
                    .into(),
            ));
        }
        Ok(())
    }
}
