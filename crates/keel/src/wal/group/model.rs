//! The group-commit protocol under the `shuttle` model checker.
//!
//! [`GroupCommit`] runs on [`Model`] (`sync/model.rs`: shuttle's lock and
//! atomics and a modelled futex), so shuttle's scheduler decides every
//! interleaving of its threads. The log is a [`FakeLog`]:
//! records of fixed size appended in order, and batches of a few records
//! that become durable when `write_batch` returns, or fail on a chosen
//! batch as a failed fdatasync would. Each check runs small
//! configurations (three committers, two commits each) and asserts:
//!
//! - no commit returns `Ok` before its record is durable (invariant 6);
//! - every waiter wakes: a committer left asleep is a deadlock, which
//!   shuttle reports as a failure;
//! - the poison reaches everyone, with the first failure as its cause,
//!   and no batch is written after a failed one (invariants 7 and 16);
//! - one batch is written at a time (so at most one is unsynced, which
//!   the reader's torn-tail rule relies on).
//!
//! Why shuttle, and how many schedules each check runs, is said in
//! `sync/model.rs`.

use std::path::Path;
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};
use std::sync::{Arc, PoisonError};

use keel_io::{FileRef, IoError, OpKind};
use shuttle::rand::{Rng, thread_rng};
use shuttle::sync::Mutex;

use super::{CONTINUE_LIMIT, GroupCommit, Os};
use crate::sync::model::{Model, check};
use crate::types::Lsn;
use crate::wal::WalError;

/// Bytes of each fake record.
const RECORD: u64 = 10;

/// The log behind the protocol: appends in order, batches of at most
/// `batch_records` records from the durable end, durable when
/// `write_batch` returns `Ok`.
struct FakeLog {
    state: Mutex<FakeState>,
}

struct FakeState {
    reserved: u64,
    durable: u64,
    batches: usize,
    batch_records: u64,
    /// The batch whose sync fails.
    fail_at: Option<usize>,
    failed: bool,
    /// A batch is being written (at most one at a time: the reader's
    /// torn-tail rule relies on one unsynced batch at most).
    in_flight: bool,
    /// Batch `.0` waits until `.1` committers sleep on a bell.
    gate: Option<(usize, usize)>,
}

impl FakeLog {
    fn state(&self) -> shuttle::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self) -> Lsn {
        let mut st = self.state();
        st.reserved += RECORD;
        Lsn(st.reserved - RECORD)
    }

    fn durable(&self) -> u64 {
        self.state().durable
    }

    fn write_batch(&self, group: &GroupCommit<Model>, through: Lsn) -> Result<Lsn, WalError> {
        let (end, fails, gate) = {
            let mut st = self.state();
            assert!(!st.failed, "a batch after a failed one (invariant 7)");
            assert!(!st.in_flight, "two batches in flight at once");
            st.in_flight = true;
            assert!(
                through.0 < st.reserved,
                "a batch through {through:?}, never appended"
            );
            let end = st.reserved.min(st.durable + st.batch_records * RECORD);
            st.batches += 1;
            let batch = st.batches - 1;
            let gate = st.gate.filter(|&(at, _)| at == batch).map(|(_, n)| n);
            (end, st.fail_at == Some(batch), gate)
        };
        while gate.is_some_and(|n| asleep(group) < n) {
            shuttle::thread::yield_now();
        }
        // The write and the sync take a while: others run meanwhile.
        shuttle::thread::yield_now();
        let mut st = self.state();
        st.in_flight = false;
        if fails {
            st.failed = true;
            return Err(injected("fdatasync", OpKind::Fdatasync));
        }
        st.durable = end;
        Ok(Lsn(end))
    }
}

/// Committers asleep on a bell.
fn asleep(group: &GroupCommit<Model>) -> usize {
    group.bells.iter().map(|b| b.sleepers()).sum()
}

fn injected(what: &'static str, op: OpKind) -> WalError {
    let source = std::io::Error::from_raw_os_error(EIO);
    WalError::Io {
        op: what,
        source: IoError::from_os(op, FileRef::path(Path::new("model")), source),
    }
}

/// The errno of an I/O error.
const EIO: i32 = 5;

/// One configuration.
#[derive(Clone, Copy, Default)]
struct Scenario {
    committers: usize,
    commits_each: usize,
    batch_records: u64,
    spin_yields: u32,
    continue_limit: u32,
    fail_at: Option<usize>,
    gate: Option<(usize, usize)>,
    poison_from_outside: bool,
}

/// What one execution returned.
struct Outcome {
    group: Arc<GroupCommit<Model>>,
    log: Arc<FakeLog>,
    /// Every commit: its LSN and what `wait_durable` returned.
    commits: Vec<(Lsn, Result<(), WalError>)>,
}

impl Scenario {
    /// Runs the committers (and the outside poisoner) to the end.
    fn run(self) -> Outcome {
        let group = Arc::new(GroupCommit::<Model>::new(
            Lsn(0),
            self.spin_yields,
            self.continue_limit,
        ));
        let log = Arc::new(FakeLog {
            state: Mutex::new(FakeState {
                reserved: 0,
                durable: 0,
                batches: 0,
                batch_records: self.batch_records,
                fail_at: self.fail_at,
                failed: false,
                in_flight: false,
                gate: self.gate,
            }),
        });
        let committers: Vec<_> = (0..self.committers)
            .map(|_| {
                let (group, log) = (group.clone(), log.clone());
                shuttle::thread::spawn(move || commit_loop(&group, &log, self.commits_each))
            })
            .collect();
        let poisoner = self.poison_from_outside.then(|| {
            let group = group.clone();
            shuttle::thread::spawn(move || {
                group.poison(injected("prepare a segment", OpKind::Fsync));
            })
        });
        let commits = committers
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect();
        if let Some(h) = poisoner {
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
        Outcome {
            group,
            log,
            commits,
        }
    }
}

/// A committer: appends and waits, `n` times. A commit acknowledged
/// before its record is durable fails the check at once.
fn commit_loop(
    group: &GroupCommit<Model>,
    log: &FakeLog,
    n: usize,
) -> Vec<(Lsn, Result<(), WalError>)> {
    (0..n)
        .map(|_| {
            let lsn = log.append();
            let result = group.wait_durable(lsn, |through| log.write_batch(group, through));
            if result.is_ok() {
                let durable = log.durable();
                assert!(
                    durable > lsn.0,
                    "commit at {lsn:?} returned, durable to {durable} (inv. 6)"
                );
            }
            assert!(
                group.durable_end().0 <= log.durable(),
                "durable end ahead of the log"
            );
            (lsn, result)
        })
        .collect()
}

impl Outcome {
    /// Every refusal names one cause, the log's; returns it (`None`: no
    /// poison). After the end, a new commit is refused with it too.
    fn poison_cause(&self) -> Option<Arc<WalError>> {
        let cause = match self.group.poison_error() {
            WalError::Poisoned { cause } => Some(cause),
            _ => None,
        };
        for (lsn, result) in &self.commits {
            match (result, &cause) {
                (Ok(()), _) => {}
                (Err(WalError::Poisoned { cause: seen }), Some(cause)) => {
                    assert!(
                        Arc::ptr_eq(seen, cause),
                        "commit at {lsn:?} saw another cause"
                    );
                }
                (Err(e), _) => panic!("commit at {lsn:?} failed with {e} but no poison"),
            }
        }
        if cause.is_some() {
            assert!(self.group.is_poisoned());
            let late = self.log.append();
            let refused = self
                .group
                .wait_durable(late, |_| panic!("a batch after the poison"));
            assert!(matches!(refused, Err(WalError::Poisoned { .. })));
        }
        cause
    }

    fn all_acknowledged(&self) {
        for (lsn, result) in &self.commits {
            assert!(result.is_ok(), "commit at {lsn:?}: {result:?}");
        }
        let st = self.log.state();
        assert_eq!(self.group.durable_end().0, st.durable);
        assert_eq!(st.durable, st.reserved, "every record was waited for");
    }
}

const THREE: Scenario = Scenario {
    committers: 3,
    commits_each: 2,
    batch_records: 2,
    spin_yields: 1,
    continue_limit: CONTINUE_LIMIT,
    fail_at: None,
    gate: None,
    poison_from_outside: false,
};

#[test]
fn three_committers_return_only_durable_and_all_wake() {
    check(|| {
        let mut rng = thread_rng();
        let outcome = Scenario {
            batch_records: rng.gen_range(1..=3),
            spin_yields: rng.gen_range(0..=2),
            continue_limit: rng.gen_range(0..=2),
            ..THREE
        }
        .run();
        outcome.all_acknowledged();
        assert!(outcome.poison_cause().is_none());
    });
}

#[test]
fn a_handed_over_lead_is_taken_and_every_waiter_wakes() {
    check(|| {
        // The first batch waits for the two others to fall asleep, and
        // each batch carries one record: unless the leader's record is the
        // last, a committer still waits when its own is durable, and with
        // no batch for others allowed the leader hands the lead over.
        let outcome = Scenario {
            batch_records: 1,
            continue_limit: 0,
            gate: Some((0, 2)),
            ..THREE
        }
        .run();
        outcome.all_acknowledged();
        HANDOFFS.fetch_add(outcome.group.stats().handoffs, StdOrdering::Relaxed);
    });
    assert!(
        HANDOFFS.load(StdOrdering::Relaxed) > 0,
        "no schedule handed the lead over"
    );
}

/// Hand-overs seen by all executions of the hand-over check.
static HANDOFFS: StdAtomicU64 = StdAtomicU64::new(0);

#[test]
fn an_fsync_error_mid_batch_poisons_every_waiter() {
    check(|| {
        // The first batch fails while both other committers sleep.
        let outcome = Scenario {
            fail_at: Some(0),
            gate: Some((0, 2)),
            ..THREE
        }
        .run();
        let cause = outcome.poison_cause().expect("poisoned");
        assert!(
            matches!(
                *cause,
                WalError::Io {
                    op: "fdatasync",
                    ..
                }
            ),
            "{cause}"
        );
        for (lsn, result) in &outcome.commits {
            assert!(
                result.is_err(),
                "commit at {lsn:?} acknowledged after the failure"
            );
        }
    });
}

#[test]
fn a_failure_at_any_batch_reaches_everyone() {
    check(|| {
        let mut rng = thread_rng();
        let outcome = Scenario {
            batch_records: rng.gen_range(1..=2),
            continue_limit: rng.gen_range(0..=1),
            fail_at: Some(rng.gen_range(0..4)),
            ..THREE
        }
        .run();
        // Every commit is acknowledged durable or refused with the one
        // cause (checked in `run` and here); none hangs.
        if let Some(cause) = outcome.poison_cause() {
            assert!(
                matches!(
                    *cause,
                    WalError::Io {
                        op: "fdatasync",
                        ..
                    }
                ),
                "{cause}"
            );
        } else {
            outcome.all_acknowledged();
        }
    });
}

#[test]
fn a_poison_from_outside_reaches_everyone_with_the_first_cause() {
    check(|| {
        let mut rng = thread_rng();
        let outcome = Scenario {
            fail_at: rng.gen_bool(0.5).then_some(1),
            poison_from_outside: true,
            ..THREE
        }
        .run();
        // The outside poison always lands, so a cause is always there,
        // and every refusal names that one (a later failure never
        // replaced it).
        assert!(outcome.poison_cause().is_some());
    });
}

/// The first failure stays the cause, on the real primitives, in both
/// orders.
#[test]
fn the_first_failure_stays_the_cause() {
    let fail = |_| Err(injected("fdatasync", OpKind::Fdatasync));
    let group = GroupCommit::<Os>::new(Lsn(0), 0, CONTINUE_LIMIT);
    group.poison(injected("prepare a segment", OpKind::Fsync));
    let refused = group.wait_durable(Lsn(0), fail);
    assert!(
        matches!(&refused, Err(WalError::Poisoned { cause }) if matches!(**cause, WalError::Io { op: "prepare a segment", .. })),
        "{refused:?}"
    );

    let group = GroupCommit::<Os>::new(Lsn(0), 0, CONTINUE_LIMIT);
    let refused = group.wait_durable(Lsn(0), fail);
    assert!(
        matches!(&refused, Err(WalError::Poisoned { .. })),
        "{refused:?}"
    );
    group.poison(injected("prepare a segment", OpKind::Fsync));
    let WalError::Poisoned { cause } = group.poison_error() else {
        panic!("not poisoned");
    };
    assert!(
        matches!(
            *cause,
            WalError::Io {
                op: "fdatasync",
                ..
            }
        ),
        "{cause}"
    );
}
