//! The background writer: a thread that periodically writes a batch of
//! dirty, unpinned pages, so that a miss rarely finds only dirty victims
//! and has to write one synchronously.
//!
//! Each round it sleeps `writer_interval_ms` (or until stopped), claims up
//! to `writer_batch_pages` frames round-robin (`claim_writer_batch`), and
//! hands them to `write_frames` (skipping pages latched exclusive at that
//! moment), which submits all the writes at once and then waits for them. A failed batch leaves its pages dirty and is only
//! counted (`writer_errors`): the next `flush_all` or eviction reports the
//! error to a caller. It does not sync files; `flush_all` does.
//!
//! Lifecycle: `start` spawns the thread; `stop` (also on `Drop`) sets the
//! stop flag, wakes the thread and joins it. A batch in progress finishes
//! first.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::pool::Shared;
use super::stats::bump;
use super::writeback::LatchMode;
use crate::error::BufferError;

struct Control {
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The running writer thread.
pub(crate) struct BackgroundWriter {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundWriter {
    pub(crate) fn start(
        shared: Arc<Shared>,
        interval_ms: u64,
        batch_pages: usize,
    ) -> Result<BackgroundWriter, BufferError> {
        let control = Arc::new(Control {
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let ctl = Arc::clone(&control);
        let interval = Duration::from_millis(interval_ms);
        let thread = std::thread::Builder::new()
            .name("keel-bufwriter".into())
            .spawn(move || run(&shared, &ctl, interval, batch_pages))
            .map_err(|source| BufferError::WriterThread { source })?;
        Ok(BackgroundWriter {
            control,
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        *self.control.stop.lock() = true;
        self.control.wake.notify_all();
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

fn run(shared: &Shared, control: &Control, interval: Duration, batch_pages: usize) {
    loop {
        {
            let mut stop = control.stop.lock();
            if !*stop {
                control.wake.wait_for(&mut stop, interval);
            }
            if *stop {
                return;
            }
        }
        if shared.is_poisoned() {
            continue;
        }
        let batch = shared.claim_writer_batch(batch_pages);
        if batch.is_empty() {
            continue;
        }
        // Try: a page latched exclusive is busy now; skip it rather than
        // wait (its holder may itself be waiting for a frame).
        match shared.write_frames(batch, LatchMode::Try) {
            Ok(outcome) => bump(&shared.stats.writer_pages, outcome.written as u64),
            Err(_) => bump(&shared.stats.writer_errors, 1),
        }
    }
}
