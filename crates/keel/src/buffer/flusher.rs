//! The buffer pool's view of the write-ahead log (invariant 4).
//!
//! A page is written only after the log is durable up to that page's LSN.
//! The pool asks the log through [`WalFlusher`], a trait defined here and
//! implemented by [`crate::wal::Wal`] (in `wal/flusher.rs`) and, with the
//! page images a torn write is repaired from (invariant 5), by the
//! database's own flusher (`storage::images::PoolFlusher`), so the pool can
//! be tested with [`RecordingFlusher`], which remembers how far it was
//! asked to flush and can be told to fail.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::types::Lsn;

/// The error a [`WalFlusher`] returns; kept as the `source()` of
/// [`super::BufferError::WalFlush`].
pub type WalFlushError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Makes the log durable up to a page's LSN before the page is written
/// (invariant 4).
pub trait WalFlusher: Send + Sync {
    /// Returns once the record at `lsn` and every record before it are on
    /// stable storage, or with the error that prevented it. The pool never
    /// calls it with [`Lsn::ZERO`] (a page that was never logged).
    fn flush_through(&self, lsn: Lsn) -> Result<(), WalFlushError>;

    /// Returns once every page image appended so far is on stable storage
    /// (`storage::images`): called before every batch of page writes,
    /// after [`flush_through`](Self::flush_through). A failure poisons the
    /// pool. Nothing to do where pages have no images kept beside the log.
    fn sync_page_images(&self) -> Result<(), WalFlushError> {
        Ok(())
    }

    /// Whether a page image is appended and not yet synced, so that the
    /// next page write would first sync the images. The background writer
    /// writes ahead of demand only when this is `false`.
    fn page_images_pending(&self) -> bool {
        false
    }

    /// Writes page images appended in memory out to their file, without a
    /// sync, so that the threads appending them never write: the
    /// background writer calls it once a round. A failure is kept where
    /// the images are, and refused by the next `sync_page_images`.
    fn write_page_images_behind(&self) {}
}

/// A flusher for pools whose pages are never logged (tools, tests): every
/// flush succeeds at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoWal;

impl WalFlusher for NoWal {
    fn flush_through(&self, _lsn: Lsn) -> Result<(), WalFlushError> {
        Ok(())
    }
}

/// A test flusher: records the highest LSN it made "durable" and the number
/// of calls, and fails on demand.
#[derive(Debug, Default)]
pub struct RecordingFlusher {
    durable: AtomicU64,
    calls: AtomicU64,
    failing: AtomicBool,
}

/// The error [`RecordingFlusher`] returns while failing.
#[derive(Debug, thiserror::Error)]
#[error("injected WAL flush failure at {lsn}")]
pub struct InjectedFlushFailure {
    /// The LSN the pool asked for.
    pub lsn: Lsn,
}

impl RecordingFlusher {
    /// A flusher that has flushed nothing.
    pub fn new() -> RecordingFlusher {
        RecordingFlusher::default()
    }

    /// The highest LSN a successful `flush_through` covered.
    pub fn durable(&self) -> Lsn {
        Lsn(self.durable.load(Ordering::SeqCst))
    }

    /// How many times `flush_through` was called.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Makes every later call fail (`true`) or succeed (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

impl WalFlusher for RecordingFlusher {
    fn flush_through(&self, lsn: Lsn) -> Result<(), WalFlushError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(Box::new(InjectedFlushFailure { lsn }));
        }
        self.durable.fetch_max(lsn.0, Ordering::SeqCst);
        Ok(())
    }
}
