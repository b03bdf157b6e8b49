//! The background writer: a thread that writes dirty, unpinned pages ahead
//! of the clock's hand, so that a miss rarely finds only dirty victims and
//! has to write one synchronously.
//!
//! Each round it sleeps up to `writer_interval_ms`, or less when a miss
//! had to write a dirty victim itself (it *kicks* the writer), then claims
//! the dirty frames the clock will reach next (`claim_writer_batch`) and
//! hands them to `write_frames` (skipping pages latched exclusive at that
//! moment), which submits all the writes at once and then waits for them.
//!
//! The batch follows demand: at least `writer_batch_pages`, and twice the
//! evictions since the previous round, up to a quarter of the pool. So a
//! pool that fills faster than the fixed batch drains (a bulk load) is kept
//! ahead of its misses, and an idle pool costs one small batch per
//! interval. A round that found as many dirty pages as it wanted while
//! demand lasted runs again at once. With no demand (no eviction since the
//! previous round), a round whose writes would first have to sync page
//! images (`WalFlusher::page_images_pending`: an fdatasync on the device
//! the log commits on) writes nothing: the pages wait for demand or for
//! the next checkpoint, which writes them anyway. Each round also writes
//! out (without a sync) the page images waiting in memory, so that the
//! changes appending them never write (`WalFlusher::write_page_images_behind`).
//!
//! A failed batch leaves its pages dirty and is only counted
//! (`writer_errors`): the next `flush_all` or eviction reports the error to
//! a caller. It does not sync files; `flush_all` does.
//!
//! Lifecycle: `start` spawns the thread; `stop` (also on `Drop`) sets the
//! stop flag, wakes the thread and joins it. A batch in progress finishes
//! first.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::BufferError;
use super::pool::Shared;
use super::stats::bump;
use super::writeback::LatchMode;

#[derive(Default)]
struct SignalState {
    stop: bool,
    kicked: bool,
}

/// How the pool wakes (kicks) and stops its background writer.
#[derive(Default)]
pub(crate) struct WriterSignal {
    state: Mutex<SignalState>,
    wake: Condvar,
}

impl WriterSignal {
    /// A miss wrote a dirty victim itself: the writer should run now.
    /// Harmless when there is no writer.
    pub(crate) fn kick(&self) {
        let mut st = self.state.lock();
        if !st.kicked {
            st.kicked = true;
            self.wake.notify_one();
        }
    }

    /// Sleeps up to `interval` (not at all unless `sleep`) unless kicked
    /// or stopped; `false` once stopped.
    fn wait(&self, interval: Duration, sleep: bool) -> bool {
        let mut st = self.state.lock();
        if sleep && !st.stop && !st.kicked {
            self.wake.wait_for(&mut st, interval);
        }
        st.kicked = false;
        !st.stop
    }

    fn stop(&self) {
        self.state.lock().stop = true;
        self.wake.notify_all();
    }
}

/// The running writer thread.
pub(crate) struct BackgroundWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundWriter {
    pub(crate) fn start(
        shared: Arc<Shared>,
        interval_ms: u64,
        batch_pages: usize,
    ) -> Result<BackgroundWriter, BufferError> {
        let interval = Duration::from_millis(interval_ms);
        let sh = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("keel-bufwriter".into())
            .spawn(move || run(&sh, interval, batch_pages))
            .map_err(|source| BufferError::WriterThread { source })?;
        Ok(BackgroundWriter {
            shared,
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        self.shared.writer_signal.stop();
        if let Some(thread) = self.thread.take() {
            // A panic in the writer has already been reported; the pool's
            // state is protected by its own locks, so there is nothing to do.
            let _ = thread.join();
        }
    }
}

impl Drop for BackgroundWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared, interval: Duration, batch_pages: usize) {
    let most = (shared.frames.len() / 4).max(batch_pages);
    let mut seen = shared.stats.evictions.load(Ordering::Relaxed);
    let mut again = false;
    loop {
        if !shared.writer_signal.wait(interval, !again) {
            return;
        }
        again = false;
        if shared.is_poisoned() {
            continue;
        }
        shared.wal.write_page_images_behind();
        let evictions = shared.stats.evictions.load(Ordering::Relaxed);
        let demand = evictions.saturating_sub(seen) as usize;
        seen = evictions;
        if demand == 0 && shared.wal.page_images_pending() {
            continue;
        }
        let want = batch_pages.max(demand.saturating_mul(2)).min(most);
        let batch = shared.claim_writer_batch(want);
        if batch.is_empty() {
            continue;
        }
        again = demand > 0 && batch.len() == want;
        // Try: a page latched exclusive is busy now; skip it rather than
        // wait (its holder may itself be waiting for a frame).
        match shared.write_frames(batch, LatchMode::Try) {
            Ok(outcome) => bump(&shared.stats.writer_pages, outcome.written as u64),
            Err(_) => {
                bump(&shared.stats.writer_errors, 1);
                again = false;
            }
        }
    }
}
