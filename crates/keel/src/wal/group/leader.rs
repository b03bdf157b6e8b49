//! The leader's side of group commit: batches written for the parked
//! committers until nobody waits or the lead is handed over (the protocol
//! is in the parent module's essay).

use super::{Generation, GroupCommit, GroupState, Lead};
use crate::sync::{Bell, Lock, Primitives, Word};
use crate::types::Lsn;
use crate::wal::WalError;

/// What the leader does after a batch.
#[derive(Clone, Copy, Debug)]
enum Next {
    /// Write another batch (`own_done`: its own record is durable already).
    Continue { own_done: bool },
    /// Leave; wake one sleeper of generation `open` to take the lead.
    HandOver { open: u64 },
    /// Leave; nobody waits.
    Release,
    /// Leave; wake every sleeper of generation `open` with the poison.
    Poisoned { open: u64 },
}

impl<P: Primitives> GroupCommit<P> {
    /// Writes batches as the leader (the lead is `Running` for it) until
    /// the record at `own` is durable, then for the committers that parked
    /// meanwhile (at most `continue_limit` more), then hands the lead over
    /// or frees it. Each batch closes the open generation, is written
    /// through the highest LSN parked in it and rings its bell; a failure
    /// rings every bell to the poison (invariant 7).
    pub(super) fn lead(&self, own: Lsn, write_batch: &impl Fn(Lsn) -> Result<Lsn, WalError>) {
        let _unwinding = PoisonOnUnwind::new(self);
        let mut extra = 0u32;
        // Committers parked in the generation this leader closed last: its
        // batch woke them all.
        let mut woke = 0usize;
        loop {
            self.await_returning(woke);
            let closed = self.state.with(close_generation);
            let target = Lsn(closed.max_lsn.max(own.0));
            let result = write_batch(target);
            let next = self.state.with(|st| {
                let next = self.finish_batch(st, own, target, extra, result);
                // Rung under the lock, so a committer that parks after this
                // reads the new value and cannot sleep through the ring.
                self.bell(closed.number).ring();
                if let Next::HandOver { open } | Next::Poisoned { open } = next {
                    // Everyone parked in the open generation and not yet
                    // asleep sees this and checks for itself.
                    self.bell(open).ring();
                }
                next
            });
            if closed.parked > 0 {
                self.bell(closed.number).wake_all();
            }
            match next {
                Next::Continue { own_done } => extra += u32::from(own_done),
                Next::Poisoned { open } => return self.bell(open).wake_all(),
                // One sleeper of the open generation wakes and takes the
                // lead (a committer arriving first may take it instead).
                // Committers of the closed generation the batch did not
                // reach were woken by its bell and take it the same way.
                Next::HandOver { open } => return self.bell(open).wake_one(),
                Next::Release => return,
            }
            woke = closed.parked;
        }
    }

    /// Before a batch that follows one which woke `woke` committers:
    /// yields (at most `spin_yields` times) until as many have parked
    /// again, so that they share this sync rather than wait through it for
    /// the next one: the "small wait when it helps" of group commit, a few
    /// microseconds, and none after a batch that woke nobody (a lone
    /// committer never waits).
    fn await_returning(&self, woke: usize) {
        if woke == 0 {
            return;
        }
        for _ in 0..self.spin_yields {
            if self.state.with(|st| st.open.parked) >= woke {
                return;
            }
            P::yield_now();
        }
    }

    /// After a batch: publishes its end, or poisons the log with its
    /// failure (`fail`), then decides the leader's next step: another
    /// batch (`Running` stays), `hand_over` or `release`.
    fn finish_batch(
        &self,
        st: &mut GroupState,
        own: Lsn,
        target: Lsn,
        extra: u32,
        result: Result<Lsn, WalError>,
    ) -> Next {
        match result {
            Ok(end) => self.durable.fetch_max(end.0),
            Err(e) => self.fail(st, e),
        }
        let open = st.open.number;
        if matches!(st.lead, Lead::Poisoned(_)) {
            return Next::Poisoned { open };
        }
        let durable = self.durable.load();
        let own_done = durable > own.0;
        // Left to do: the leader's own record or a parked one the batch
        // did not reach (it stops at a segment's end and at one batch), or
        // committers parked in the generation opened meanwhile.
        let more = durable <= target.0 || st.open.parked > 0;
        if more && (!own_done || extra < self.continue_limit) {
            st.continued += u64::from(own_done);
            Next::Continue { own_done }
        } else if more {
            self.hand_over(st);
            Next::HandOver { open }
        } else {
            self.release(st);
            Next::Release
        }
    }
}

/// Poisons the log when the leader unwinds (a panic in `write_batch`):
/// the lead is `Running` for a leader that is gone, so without the poison
/// every committer parked for it, and every later one, would wait forever;
/// and the batch's bytes may or may not be durable (invariant 7).
struct PoisonOnUnwind<'a, P: Primitives> {
    group: &'a GroupCommit<P>,
    /// Whether the thread was unwinding already when the lead began (a
    /// commit made from a destructor during a panic): only a panic of the
    /// lead itself poisons.
    was_panicking: bool,
}

impl<'a, P: Primitives> PoisonOnUnwind<'a, P> {
    fn new(group: &'a GroupCommit<P>) -> Self {
        PoisonOnUnwind {
            group,
            was_panicking: std::thread::panicking(),
        }
    }
}

impl<P: Primitives> Drop for PoisonOnUnwind<'_, P> {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.was_panicking {
            self.group.poison(WalError::LeaderPanicked);
        }
    }
}

/// Closes the open generation for a batch: every committer parked in it
/// has its record pending by now. The next one opens.
fn close_generation(st: &mut GroupState) -> Generation {
    let closed = st.open;
    st.open = Generation {
        number: closed.number + 1,
        parked: 0,
        max_lsn: 0,
    };
    closed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::sync::Os;

    /// A leader that panics in its batch poisons the log: the committer
    /// parked for that batch wakes with the poison, and later ones fail at
    /// once, instead of waiting for a leader that is gone.
    #[test]
    fn a_leader_that_panics_poisons_the_log_and_wakes_the_parked() {
        let group = Arc::new(GroupCommit::<Os>::new(Lsn(0), 0, 4));
        let leader = {
            let group = group.clone();
            std::thread::spawn(move || {
                group.wait_durable(Lsn(0), |_| {
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while group.state.with(|st| st.open.parked) == 0 {
                        assert!(Instant::now() < deadline, "nobody parked");
                        std::thread::yield_now();
                    }
                    panic!("a bug in the batch path");
                })
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !group.state.with(|st| matches!(st.lead, Lead::Running)) {
            assert!(Instant::now() < deadline, "nobody leads");
            std::thread::yield_now();
        }
        let parked = {
            let group = group.clone();
            std::thread::spawn(move || group.wait_durable(Lsn(10), |_| Ok(Lsn(20))))
        };
        assert!(leader.join().is_err(), "the leader panicked");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !parked.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the committer parked for the panicked leader never woke"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let err = parked.join().unwrap().unwrap_err();
        assert!(
            matches!(&err, WalError::Poisoned { cause } if matches!(**cause, WalError::LeaderPanicked)),
            "{err:?}"
        );
        assert!(group.is_poisoned());
        let later = group.wait_durable(Lsn(30), |_| Ok(Lsn(40)));
        assert!(matches!(later, Err(WalError::Poisoned { .. })), "{later:?}");
    }
}
