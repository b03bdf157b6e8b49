//! The synchronisation group commit runs on, behind one small trait so the
//! same protocol code runs on the operating system's primitives in Keel and
//! on a model checker's in the tests (`model.rs`).
//!
//! [`Primitives`] names four things: a lock, a 64-bit atomic word read
//! without the lock, a *bell* (a futex word committers sleep on) and a
//! yield. [`Os`] is the real one: `parking_lot` for the lock, std atomics,
//! and `atomic_wait`'s futex calls for the bell. Every operation is a
//! direct call on the underlying primitive (generic code, monomorphised):
//! the abstraction costs nothing on the commit path.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The primitives of the group-commit protocol.
pub(crate) trait Primitives: 'static {
    /// A mutual-exclusion lock around `T`.
    type Lock<T: Send>: Lock<T>;
    /// A 64-bit atomic word.
    type Word: Word;
    /// A word committers sleep on until it changes.
    type Bell: Bell;
    /// Gives the core to another thread for a moment.
    fn yield_now();
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

/// The operating system's primitives.
pub(crate) struct Os;

impl Primitives for Os {
    type Lock<T: Send> = parking_lot::Mutex<T>;
    type Word = AtomicU64;
    type Bell = AtomicU32;

    fn yield_now() {
        std::thread::yield_now();
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
