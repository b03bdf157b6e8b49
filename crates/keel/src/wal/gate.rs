//! Commit admission: a limit on log not yet shipped elsewhere.
//!
//! An archiver holds the log from the end of what it has shipped
//! ([`Wal::hold_from`](super::Wal::hold_from)), so retirement keeps every
//! unarchived segment. While the archive is down the log therefore grows
//! without bound. A [`UnarchivedLimit`] bounds it by stalling commits.
//!
//! ## The rule
//!
//! A user transaction's commit is admitted while
//! `durable end − hold ≤ max_bytes`, where the hold is the archive's end
//! and the durable end is [`Wal::durable_lsn`](super::Wal::durable_lsn).
//! Otherwise the committer waits, before its commit record is appended,
//! until the hold moves (an upload landed), the limit is lifted, or
//! `timeout` passes; then the caller rolls the transaction back: it never
//! committed, so nothing acknowledged is lost (invariant 6).
//!
//! Why the durable end and not the reserved end: the archiver can ship
//! only durable records, so with a healthy archive `durable end − hold`
//! always falls back to zero within the archiver's `max_delay`, whatever
//! `max_bytes` is. Records appended but not yet durable (a large
//! transaction still writing, a batch in flight) would keep the reserved
//! end past the limit with nothing the archiver could do about it, and a
//! commit would fail although the archive works.
//!
//! What the limit bounds, precisely: the *durable* log past the archive's
//! end at the moment a commit is admitted. It is a soft bound on the log on
//! disk, exceeded by
//! - the records of transactions that are still writing (only commits are
//!   gated, never other appends: a transaction is stopped at its commit,
//!   not in the middle of its work),
//! - commits admitted together before the durable end moved (each admits
//!   on the same reading), and their commit records,
//! - rollbacks (compensation records and abort records are never gated:
//!   undoing must always be possible) and system transactions (catalog
//!   changes commit durably and ungated: `CommitWait::Durable`),
//! - checkpoints and the records they write.
//!
//! ## Rules
//!
//! - The gate never blocks a commit record already appended: admission is
//!   decided before the append, so a waiter holds no log position and no
//!   group-commit slot.
//! - A waiter keeps its transaction's locks while it waits (it is still
//!   active: it may yet commit). Transactions that need them wait too, or
//!   fail by their own lock timeout or deadlock detection; the wait is
//!   bounded by `timeout`, after which the rollback releases them.
//! - Every change to the hold or the limit wakes the waiters; they also
//!   re-check every [`RECHECK`] so a poisoned database (invariant 16) is
//!   noticed by the caller's own check, never waited out.
//! - No hold, or no limit: every commit is admitted at once. A transaction
//!   that wrote nothing (no commit record) is admitted at once.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::types::Lsn;

/// How often a waiting committer looks at the database's health even when
/// nothing wakes it.
const RECHECK: Duration = Duration::from_millis(50);

/// The bound on unarchived log (module essay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnarchivedLimit {
    /// Commits wait once more than this many bytes of durable log lie
    /// past the hold.
    pub max_bytes: u64,
    /// How long one commit waits before it fails.
    pub timeout: Duration,
}

/// Why a commit was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stalled {
    /// Durable log bytes past the hold when the wait ended.
    pub unarchived: u64,
    /// Where the log is held from (the archive's end).
    pub held_from: Lsn,
    /// The limit that applied.
    pub limit: UnarchivedLimit,
    /// How long the commit waited.
    pub waited: Duration,
}

/// The limit and the condition its waiters sleep on.
#[derive(Debug, Default)]
pub(crate) struct CommitGate {
    limit: Mutex<Option<UnarchivedLimit>>,
    changed: Condvar,
}

impl CommitGate {
    pub(crate) fn set_limit(&self, limit: Option<UnarchivedLimit>) {
        *self.limit.lock() = limit;
        self.changed.notify_all();
    }

    pub(crate) fn limit(&self) -> Option<UnarchivedLimit> {
        *self.limit.lock()
    }

    /// Wakes the waiters (the hold moved). Taking the lock orders this
    /// after a waiter's check, so no wake-up is lost.
    pub(crate) fn wake(&self) {
        drop(self.limit.lock());
        self.changed.notify_all();
    }

    /// Waits until a commit may be appended. `log` reads the hold and the
    /// log's durable end (module rule); `keep_waiting` returns false when the caller
    /// must stop waiting (a poisoned database), which admits it so that
    /// its own checks report why.
    pub(crate) fn admit(
        &self,
        log: impl Fn() -> (Option<Lsn>, Lsn),
        keep_waiting: impl Fn() -> bool,
    ) -> Result<(), Stalled> {
        let mut guard = self.limit.lock();
        let Some(first) = *guard else { return Ok(()) };
        let start = Instant::now();
        let deadline = start + first.timeout;
        loop {
            let Some(limit) = *guard else { return Ok(()) };
            let (hold, end) = log();
            let Some(held_from) = hold else { return Ok(()) };
            let unarchived = end.0.saturating_sub(held_from.0);
            if unarchived <= limit.max_bytes || !keep_waiting() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Stalled {
                    unarchived,
                    held_from,
                    limit,
                    waited: now - start,
                });
            }
            self.changed
                .wait_for(&mut guard, (deadline - now).min(RECHECK));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const LIMIT: UnarchivedLimit = UnarchivedLimit {
        max_bytes: 100,
        timeout: Duration::from_millis(200),
    };

    #[test]
    fn admission_follows_the_rule() {
        let gate = CommitGate::default();
        // No limit, or no hold: admitted whatever lies past.
        assert!(gate.admit(|| (Some(Lsn(0)), Lsn(1 << 30)), || true).is_ok());
        gate.set_limit(Some(LIMIT));
        assert!(gate.admit(|| (None, Lsn(1 << 30)), || true).is_ok());
        // At the limit: admitted; one byte past: waits the timeout, fails.
        assert!(gate.admit(|| (Some(Lsn(50)), Lsn(150)), || true).is_ok());
        let t0 = Instant::now();
        let s = gate
            .admit(|| (Some(Lsn(50)), Lsn(151)), || true)
            .unwrap_err();
        assert!(t0.elapsed() >= LIMIT.timeout);
        assert_eq!((s.unarchived, s.held_from, s.limit), (101, Lsn(50), LIMIT));
        assert!(s.waited >= LIMIT.timeout);
        // A hold past the durable end counts as nothing unarchived.
        assert!(gate.admit(|| (Some(Lsn(500)), Lsn(151)), || true).is_ok());
        // A caller that must stop waiting (a poisoned database) is admitted
        // at once, for its own checks to report why.
        let t0 = Instant::now();
        assert!(gate.admit(|| (Some(Lsn(0)), Lsn(1000)), || false).is_ok());
        assert!(t0.elapsed() < LIMIT.timeout);
    }

    #[test]
    fn a_waiter_goes_on_when_the_hold_moves_or_the_limit_is_lifted() {
        let gate = Arc::new(CommitGate::default());
        gate.set_limit(Some(UnarchivedLimit {
            timeout: Duration::from_secs(30),
            ..LIMIT
        }));
        let hold = Arc::new(AtomicU64::new(0));
        let waiter = |gate: &Arc<CommitGate>, hold: &Arc<AtomicU64>| {
            let (gate, hold) = (gate.clone(), hold.clone());
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let r = gate.admit(
                    || (Some(Lsn(hold.load(Ordering::SeqCst))), Lsn(1000)),
                    || true,
                );
                (r, t0.elapsed())
            })
        };
        let w = waiter(&gate, &hold);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!w.is_finished());
        hold.store(950, Ordering::SeqCst);
        gate.wake();
        let (r, waited) = w.join().unwrap();
        assert!(r.is_ok() && waited < Duration::from_secs(10), "{waited:?}");
        hold.store(0, Ordering::SeqCst);
        let w = waiter(&gate, &hold);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!w.is_finished());
        gate.set_limit(None);
        let (r, waited) = w.join().unwrap();
        assert!(r.is_ok() && waited < Duration::from_secs(10), "{waited:?}");
    }
}
