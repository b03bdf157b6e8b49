//! Buffer pool counters: atomics bumped on the hot paths, read as a
//! [`BufferStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the pool's counters (all since the pool was created).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferStats {
    /// Number of frames.
    pub frames: usize,
    /// Frames dirty at the time of the snapshot.
    pub dirty_frames: usize,
    /// Pins that found the page in memory.
    pub hits: u64,
    /// Pins that had to read the page (or create it with `new_page`).
    pub misses: u64,
    /// Pages read from disk.
    pub reads: u64,
    /// Pages written to disk (by every path).
    pub writes: u64,
    /// Frames that gave up their page for another.
    pub evictions: u64,
    /// Dirty pages written synchronously on the miss path.
    pub dirty_evictions: u64,
    /// Pages written by the background writer.
    pub writer_pages: u64,
    /// Background writer batches that failed (the pages stay dirty).
    pub writer_errors: u64,
    /// Calls to the WAL flusher (invariant 4).
    pub wal_flushes: u64,
    /// fdatasync calls on data files.
    pub syncs: u64,
    /// Times a flush waited for an fdatasync another caller had in flight
    /// (one sync per file at a time).
    pub sync_waits: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) misses: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) dirty_evictions: AtomicU64,
    pub(crate) writer_pages: AtomicU64,
    pub(crate) writer_errors: AtomicU64,
    pub(crate) wal_flushes: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) sync_waits: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// The counters, with `hits` (counted by the page table's shards).
    pub(crate) fn snapshot(&self, frames: usize, dirty_frames: usize, hits: u64) -> BufferStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BufferStats {
            frames,
            dirty_frames,
            hits,
            misses: get(&self.misses),
            reads: get(&self.reads),
            writes: get(&self.writes),
            evictions: get(&self.evictions),
            dirty_evictions: get(&self.dirty_evictions),
            writer_pages: get(&self.writer_pages),
            writer_errors: get(&self.writer_errors),
            wal_flushes: get(&self.wal_flushes),
            syncs: get(&self.syncs),
            sync_waits: get(&self.sync_waits),
        }
    }
}
