//! The synchronisation Keel's concurrent protocols run on, behind one small
//! trait, so the same protocol code runs on the operating system's
//! primitives in Keel and on a model checker's in the tests (`model.rs`).
//! Two protocols are written this way: group commit (`wal/group`) and the
//! lock manager's wait and deadlock path (`lock`).
//!
//! [`Primitives`] names six things: a lock, a 64-bit atomic word read
//! without the lock, a *bell* (a futex word committers sleep on), a
//! *monitor* (a lock with a condition variable, for waits that end when
//! another thread changes the guarded state or a deadline passes), a
//! yield, and the calling thread's identity. [`Os`] is the real one:
//! `parking_lot` for the lock and the monitor, std atomics, `atomic_wait`'s
//! futex calls for the bell, and a thread-local counter for identities.
//! Every operation is a direct call on the underlying primitive (generic
//! code, monomorphised): the abstraction costs nothing on the hot paths.

#[cfg(test)]
pub(crate) mod model;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// The primitives Keel's concurrent protocols run on.
pub(crate) trait Primitives: Send + Sync + 'static {
    /// A mutual-exclusion lock around `T`.
    type Lock<T: Send>: Lock<T>;
    /// A 64-bit atomic word.
    type Word: Word;
    /// A word committers sleep on until it changes.
    type Bell: Bell;
    /// A lock around `T` with a condition variable.
    type Monitor<T: Send>: Monitor<T>;
    /// Gives the core to another thread for a moment.
    fn yield_now();
    /// The calling thread's identity: distinct for every thread alive at
    /// the same time, and never reused by [`Os`].
    fn thread_key() -> u64;
}

/// A lock whose holder runs one closure: every critical section is a
/// function, and no guard outlives it.
pub(crate) trait Lock<T>: Send + Sync {
    /// A lock around `value`.
    fn new(value: T) -> Self;
    /// Runs `f` holding the lock.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

/// An atomic `u64`: loads acquire, stores and maxima release.
pub(crate) trait Word: Send + Sync {
    /// A word holding `value`.
    fn new(value: u64) -> Self;
    /// The current value (acquire).
    fn load(&self) -> u64;
    /// Replaces the value (release).
    fn store(&self, value: u64);
    /// Raises the value to at least `value` (release).
    fn fetch_max(&self, value: u64);
}

/// A futex word: a counter that sleepers compare against the value they
/// read before going to sleep.
pub(crate) trait Bell: Send + Sync {
    /// A bell at zero.
    fn new() -> Self;
    /// The current value (acquire).
    fn load(&self) -> u32;
    /// Bumps the value (release): sleepers that read the old one and are
    /// not yet asleep will not sleep.
    fn ring(&self);
    /// Sleeps while the value is `rung`: returns at once if it differs
    /// (checked atomically with going to sleep, so a ring is never slept
    /// through), after a wake-up, or spuriously.
    fn wait(&self, rung: u32);
    /// Wakes one sleeper, if any.
    fn wake_one(&self);
    /// Wakes every sleeper.
    fn wake_all(&self);
}

/// A lock with a condition variable: a waiter runs a step under the lock
/// until the step settles, sleeping between steps until another thread
/// calls [`Monitor::notify_all`] or the deadline passes.
pub(crate) trait Monitor<T>: Send + Sync {
    /// A monitor around `value`.
    fn new(value: T) -> Self;
    /// Runs `f` holding the lock.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
    /// Runs `step` holding the lock until it returns `Some`, sleeping
    /// between calls (the lock released) until notified or `deadline`
    /// passes. `step` learns whether the sleep before it ended at the
    /// deadline (`false` on the first call). Wake-ups may be spurious: a
    /// step decides from the guarded state, never from having been woken.
    fn wait_until<R>(
        &self,
        deadline: Option<Instant>,
        step: impl FnMut(&mut T, bool) -> Option<R>,
    ) -> R;
    /// Wakes every waiter.
    fn notify_all(&self);
}

/// The operating system's primitives.
pub(crate) struct Os;

impl Primitives for Os {
    type Lock<T: Send> = parking_lot::Mutex<T>;
    type Word = AtomicU64;
    type Bell = AtomicU32;
    type Monitor<T: Send> = OsMonitor<T>;

    fn yield_now() {
        std::thread::yield_now();
    }

    fn thread_key() -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        thread_local! {
            static KEY: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        KEY.with(|k| *k)
    }
}

/// [`Os`]'s monitor: a `parking_lot` mutex and condition variable.
pub(crate) struct OsMonitor<T> {
    state: parking_lot::Mutex<T>,
    changed: parking_lot::Condvar,
}

impl<T: Send> Monitor<T> for OsMonitor<T> {
    fn new(value: T) -> Self {
        OsMonitor {
            state: parking_lot::Mutex::new(value),
            changed: parking_lot::Condvar::new(),
        }
    }

    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.state.lock())
    }

    fn wait_until<R>(
        &self,
        deadline: Option<Instant>,
        mut step: impl FnMut(&mut T, bool) -> Option<R>,
    ) -> R {
        let mut state = self.state.lock();
        let mut timed_out = false;
        loop {
            if let Some(settled) = step(&mut state, timed_out) {
                return settled;
            }
            timed_out = match deadline {
                Some(d) => self.changed.wait_until(&mut state, d).timed_out(),
                None => {
                    self.changed.wait(&mut state);
                    false
                }
            };
        }
    }

    fn notify_all(&self) {
        self.changed.notify_all();
    }
}

impl<T: Send> Lock<T> for parking_lot::Mutex<T> {
    fn new(value: T) -> Self {
        parking_lot::Mutex::new(value)
    }

    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock())
    }
}

impl Word for AtomicU64 {
    fn new(value: u64) -> Self {
        AtomicU64::new(value)
    }

    #[inline]
    fn load(&self) -> u64 {
        AtomicU64::load(self, Ordering::Acquire)
    }

    #[inline]
    fn store(&self, value: u64) {
        AtomicU64::store(self, value, Ordering::Release);
    }

    #[inline]
    fn fetch_max(&self, value: u64) {
        AtomicU64::fetch_max(self, value, Ordering::Release);
    }
}

impl Bell for AtomicU32 {
    fn new() -> Self {
        AtomicU32::new(0)
    }

    #[inline]
    fn load(&self) -> u32 {
        AtomicU32::load(self, Ordering::Acquire)
    }

    #[inline]
    fn ring(&self) {
        self.fetch_add(1, Ordering::Release);
    }

    #[inline]
    fn wait(&self, rung: u32) {
        atomic_wait::wait(self, rung);
    }

    #[inline]
    fn wake_one(&self) {
        atomic_wait::wake_one(self);
    }

    #[inline]
    fn wake_all(&self) {
        atomic_wait::wake_all(self);
    }
}
