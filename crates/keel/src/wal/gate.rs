//! Commit admission: a limit on log not yet shipped elsewhere.
//!
//! An archiver holds the log from the end of what it has shipped
//! ([`Wal::hold_from`](super::Wal::hold_from)), so retirement keeps every
//! unarchived segment. While the archive is down the log therefore grows
//! without bound. A [`UnarchivedLimit`] bounds it: a transaction's commit
//! is admitted only while the log past the hold (the reserved end minus the
//! hold) is at most `max_bytes`; otherwise the committer waits, before its
//! commit record is appended, until the hold moves (the archive caught up),
//! the limit is lifted, or `timeout` passes (the caller then rolls the
//! transaction back: it never committed, so nothing acknowledged is lost —
//! invariant 6).
//!
//! Rules:
//! - The gate never blocks a commit record already appended: admission is
//!   decided before the append, so a waiter holds no log position and no
//!   group-commit slot, only its own locks.
//! - Every change to the hold or the limit wakes the waiters; they also
//!   re-check every [`RECHECK`] so a poisoned database (invariant 16) is
//!   noticed by the caller's own check, never waited out.
//! - No hold, or no limit: every commit is admitted at once.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::types::Lsn;

/// How often a waiting committer looks at the database's health even when
/// nothing wakes it.
const RECHECK: Duration = Duration::from_millis(50);

/// The bound on unarchived log (module essay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnarchivedLimit {
    /// Commits wait once more than this many bytes of log lie past the
    /// hold.
    pub max_bytes: u64,
    /// How long one commit waits before it fails.
    pub timeout: Duration,
}

/// Why a commit was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stalled {
    /// Bytes of log past the hold when the wait ended.
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
    /// log's reserved end; `keep_waiting` returns false when the caller
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
