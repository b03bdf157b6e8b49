//! Keel's synchronisation primitives under the `shuttle` model checker.
//!
//! [`Model`] implements [`Primitives`] with shuttle's lock, atomics and
//! condition variable, a modelled futex ([`ModelBell`]) and a modelled
//! monitor ([`ModelMonitor`]), so shuttle's scheduler decides every
//! interleaving of a protocol's threads; [`check`] runs one check under
//! random and PCT schedules. The checks themselves live beside the
//! protocols: `wal/group/model.rs` (group commit) and `lock/model.rs`
//! (the lock manager's waits and deadlocks).
//!
//! `shuttle` rather than `loom`: loom enumerates every interleaving, which
//! for three threads, a lock, two bells and group commit's yield loops
//! does not finish without bounds that hide the interesting schedules;
//! shuttle samples schedules (uniformly random, and PCT, which finds a
//! bug that needs `d` preemptions with a known probability) for a chosen
//! number of iterations, so the checks fit in the default test run. What
//! shuttle does not model is weak memory: it runs every atomic as
//! `SeqCst` (the protocols' orderings are acquire/release pairs on words
//! written under a lock).
//!
//! Each check runs [`DEFAULT_ITERATIONS`] random and as many PCT
//! schedules from a fixed seed; `KEEL_SHUTTLE_ITERATIONS` sets another
//! count and `KEEL_SHUTTLE_SEED` another seed (a failure prints the
//! schedule to replay).

use std::sync::{Arc, PoisonError};
use std::time::Instant;

use shuttle::rand::{Rng, thread_rng};
use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::sync::atomic::{AtomicU64, Ordering};
use shuttle::sync::{Condvar, Mutex};
use shuttle::{Config, Runner};

use super::{Bell, Lock, Monitor, Primitives, Word};

/// Schedules per scheduler and check when `KEEL_SHUTTLE_ITERATIONS` is
/// unset: about a second for all checks in a release build.
pub(crate) const DEFAULT_ITERATIONS: usize = 2000;

/// Preemptions a PCT schedule makes (its bug depth).
const PCT_DEPTH: usize = 3;

/// Shuttle's primitives.
pub(crate) struct Model;

impl Primitives for Model {
    type Lock<T: Send> = Mutex<T>;
    type Word = AtomicU64;
    type Bell = ModelBell;
    type Monitor<T: Send> = ModelMonitor<T>;

    fn yield_now() {
        shuttle::thread::yield_now();
    }

    fn thread_key() -> u64 {
        usize::from(shuttle::thread::current().id()) as u64
    }
}

impl<T: Send> Lock<T> for Mutex<T> {
    fn new(value: T) -> Self {
        Mutex::new(value)
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Word for AtomicU64 {
    fn new(value: u64) -> Self {
        AtomicU64::new(value)
    }

    fn load(&self) -> u64 {
        AtomicU64::load(self, Ordering::SeqCst)
    }

    fn store(&self, value: u64) {
        AtomicU64::store(self, value, Ordering::SeqCst);
    }

    fn fetch_max(&self, value: u64) {
        AtomicU64::fetch_max(self, value, Ordering::SeqCst);
    }
}

/// A futex word: `wait` sleeps only if the word still holds the value,
/// checked atomically with going to sleep, and a sleeper wakes only when
/// `wake_one` picks it (shuttle's random choice among the sleepers) or
/// `wake_all` runs: a ring alone wakes nobody, as with the real futex.
pub(crate) struct ModelBell {
    inner: Mutex<BellInner>,
    woken: Condvar,
}

struct BellInner {
    word: u32,
    /// Tickets of the sleepers not yet woken.
    sleepers: Vec<u64>,
    next_ticket: u64,
}

impl ModelBell {
    /// Threads asleep on the bell now.
    pub(crate) fn sleepers(&self) -> usize {
        self.inner().sleepers.len()
    }

    fn inner(&self) -> shuttle::sync::MutexGuard<'_, BellInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Bell for ModelBell {
    fn new() -> Self {
        ModelBell {
            inner: Mutex::new(BellInner {
                word: 0,
                sleepers: Vec::new(),
                next_ticket: 0,
            }),
            woken: Condvar::new(),
        }
    }

    fn load(&self) -> u32 {
        self.inner().word
    }

    fn ring(&self) {
        let mut b = self.inner();
        b.word = b.word.wrapping_add(1);
    }

    fn wait(&self, rung: u32) {
        let mut b = self.inner();
        if b.word != rung {
            return;
        }
        let ticket = b.next_ticket;
        b.next_ticket += 1;
        b.sleepers.push(ticket);
        while b.sleepers.contains(&ticket) {
            b = self.woken.wait(b).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn wake_one(&self) {
        let mut b = self.inner();
        if !b.sleepers.is_empty() {
            let at = thread_rng().gen_range(0..b.sleepers.len());
            b.sleepers.swap_remove(at);
        }
        self.woken.notify_all();
    }

    fn wake_all(&self) {
        self.inner().sleepers.clear();
        self.woken.notify_all();
    }
}

fn iterations() -> usize {
    std::env::var("KEEL_SHUTTLE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS)
}

fn seed() -> u64 {
    std::env::var("KEEL_SHUTTLE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x4b45_454c)
}

/// Runs `body` under random schedules, then under PCT schedules.
pub(crate) fn check(body: impl Fn() + Send + Sync + 'static) {
    let body = Arc::new(body);
    let config = || {
        let mut config = Config::new();
        config.silence_warnings = true;
        config
    };
    let (n, seed) = (iterations(), seed());
    let random = body.clone();
    Runner::new(RandomScheduler::new_from_seed(seed, n), config()).run(move || random());
    Runner::new(PctScheduler::new_from_seed(seed, PCT_DEPTH, n), config()).run(move || body());
}

/// A monitor whose sleeps with a deadline may end at the deadline at any
/// point (shuttle has no clock): when a step asks to sleep with a
/// deadline, shuttle's random choice decides whether the deadline has
/// passed, so schedules explore both the timeout and the wake-up.
pub(crate) struct ModelMonitor<T> {
    state: Mutex<T>,
    changed: Condvar,
}

impl<T> ModelMonitor<T> {
    fn state(&self) -> shuttle::sync::MutexGuard<'_, T> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Send> Monitor<T> for ModelMonitor<T> {
    fn new(value: T) -> Self {
        ModelMonitor {
            state: Mutex::new(value),
            changed: Condvar::new(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.state())
    }

    fn wait_until<R>(
        &self,
        deadline: Option<Instant>,
        mut step: impl FnMut(&mut T, bool) -> Option<R>,
    ) -> R {
        let mut state = self.state();
        let mut timed_out = false;
        loop {
            if let Some(settled) = step(&mut state, timed_out) {
                return settled;
            }
            timed_out = deadline.is_some() && thread_rng().gen_bool(0.25);
            if timed_out {
                // The deadline passed: others ran meanwhile.
                drop(state);
                shuttle::thread::yield_now();
                state = self.state();
            } else {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    fn notify_all(&self) {
        self.changed.notify_all();
    }
}
