//! A thread that submitted ring entries does not exit before they complete.
//!
//! The kernel runs an entry it cannot complete during `io_uring_enter`
//! (every fsync; on ext4 every buffered write; a read of an uncached page on
//! some file systems) on io-wq workers that belong to the *thread* whose
//! `io_uring_enter` submitted it. When that thread exits, work still queued
//! there is cancelled: the request completes with ECANCELED. A write or a
//! sync failing that way would poison the engine for no reason, and
//! dropping a future must never cancel its request (contract 1).
//!
//! So the ring tags each entry with the [`Tracker`] of the thread whose
//! enter submitted it (`ring.rs` submits under its lock, so it knows), and
//! every thread's tracker lives in a thread-local [`Guard`] whose destructor
//! runs as the thread exits, before the kernel tears its workers down: it
//! waits until the thread's entries have all been reaped, asking every
//! ring's dispatcher to reap meanwhile (`Ring::need`).
//!
//! Left out: a thread that submits from inside another thread-local's
//! destructor, after its guard is gone, is not tracked; the main thread's
//! thread-locals are not destroyed at process exit (nothing outlives the
//! process's rings then anyway).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};

use super::ring::Ring;

/// One thread's entries in the kernel.
#[derive(Default)]
pub(crate) struct Tracker {
    pending: AtomicUsize,
    /// The thread is exiting and waits for `pending` to reach zero.
    exiting: AtomicBool,
    lock: Mutex<()>,
    zero: Condvar,
}

impl Tracker {
    /// One more entry submitted by this thread is in the kernel.
    pub(crate) fn begin(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    /// One of them was reaped.
    pub(crate) fn end(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 && self.exiting.load(Ordering::SeqCst) {
            let _g = self.lock.lock();
            self.zero.notify_all();
        }
    }

    fn wait_idle(&self) {
        if self.pending.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.exiting.store(true, Ordering::SeqCst);
        let rings: Vec<Arc<Ring>> = registry()
            .lock()
            .map(|r| r.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        for ring in &rings {
            ring.need(true);
        }
        if let Ok(mut g) = self.lock.lock() {
            while self.pending.load(Ordering::SeqCst) > 0 {
                g = match self.zero.wait(g) {
                    Ok(g) => g,
                    Err(_) => break,
                };
            }
        }
        for ring in &rings {
            ring.need(false);
        }
    }
}

/// Owns the thread's tracker; waits for its entries when the thread exits.
struct Guard(Arc<Tracker>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.wait_idle();
    }
}

thread_local! {
    static GUARD: Guard = Guard(Arc::new(Tracker::default()));
}

/// The calling thread's tracker (`None` while its thread-locals are being
/// destroyed).
pub(crate) fn current() -> Option<Arc<Tracker>> {
    GUARD.try_with(|g| Arc::clone(&g.0)).ok()
}

fn registry() -> &'static Mutex<Vec<Weak<Ring>>> {
    static RINGS: OnceLock<Mutex<Vec<Weak<Ring>>>> = OnceLock::new();
    RINGS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Makes `ring` one that exiting threads ask to reap for them.
pub(crate) fn register(ring: &Arc<Ring>) {
    if let Ok(mut rings) = registry().lock() {
        rings.retain(|w| w.strong_count() > 0);
        rings.push(Arc::downgrade(ring));
    }
}
