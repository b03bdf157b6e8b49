//! The lock manager's wait and deadlock path under the `shuttle` model
//! checker.
//!
//! [`LockManager`] runs on [`Model`] (`sync/model.rs`: shuttle's mutex and
//! condition variable behind the monitor, shuttle's thread ids as thread
//! keys, and deadlines that may pass at any sleep), so shuttle's scheduler
//! decides every interleaving of the transactions' threads. Each thread
//! runs one or two transactions as scripts of lock requests (one check
//! also keeps a lock on the main thread until a script has ended, so a
//! cycle left unbroken stops every thread); a request
//! refused as a deadlock victim or timed out rolls its transaction back
//! (releases everything), as Keel's transactions do. Each check asserts:
//!
//! - no two incompatible locks are ever held at once (a shadow table of
//!   granted locks, checked at every grant);
//! - every waiter wakes: a request left asleep is a deadlock of the model,
//!   which shuttle reports as a failure;
//! - every cycle is broken by one victim, never two, and the requester
//!   that closes it is that victim;
//! - no lock is granted to a finished transaction, and none outlives its
//!   transaction;
//! - the counters agree with what the requests returned.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use shuttle::rand::{Rng, thread_rng};
use shuttle::sync::Mutex;

use super::{LockManager, LockMode, LockTarget};
use crate::error::{DbError, Error};
use crate::sync::Monitor;
use crate::sync::model::{Model, check};
use crate::types::{PageId, RelationId, SlotId, TupleId, TxnId};

type Manager = LockManager<Model>;

/// Tuple `n` of relation 1.
fn tuple(n: u16) -> LockTarget {
    LockTarget::Tuple(RelationId(1), TupleId::new(PageId(0), SlotId(n)))
}

/// The locks granted and not yet released, as the requesters saw them.
#[derive(Default)]
struct Shadow {
    held: Mutex<Vec<(TxnId, LockTarget, LockMode)>>,
}

impl Shadow {
    fn held(&self) -> shuttle::sync::MutexGuard<'_, Vec<(TxnId, LockTarget, LockMode)>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a grant; fails the check if another transaction holds an
    /// incompatible lock on the same target.
    fn granted(&self, txn: TxnId, target: LockTarget, mode: LockMode) {
        let mut held = self.held();
        for &(other, t, m) in held.iter() {
            assert!(
                other == txn || t != target || mode.compatible_with(m),
                "{txn:?} got {mode:?} on {target:?} while {other:?} holds {m:?}"
            );
        }
        held.push((txn, target, mode));
    }

    /// Forgets `txn`'s locks: called before the manager releases them, so
    /// the shadow never holds less than the table.
    fn ending(&self, txn: TxnId) {
        self.held().retain(|(t, _, _)| *t != txn);
    }
}

/// How one transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Committed,
    Victim,
    TimedOut,
    Finished,
    WouldBlock,
}

/// One transaction's script: its requests, in order.
#[derive(Clone)]
struct Script {
    txn: TxnId,
    requests: Vec<(LockTarget, LockMode)>,
    wait: bool,
}

impl Script {
    fn new(txn: u64, requests: &[(u16, LockMode)]) -> Script {
        Script {
            txn: TxnId(txn),
            requests: requests.iter().map(|&(n, m)| (tuple(n), m)).collect(),
            wait: true,
        }
    }

    /// Runs the requests on the calling thread (already begun), then ends
    /// the transaction: a refused request rolls it back at once.
    fn run(&self, lm: &Manager, shadow: &Shadow) -> End {
        let mut end = End::Committed;
        for &(target, mode) in &self.requests {
            match lm.lock(self.txn, target, mode, self.wait) {
                Ok(()) => shadow.granted(self.txn, target, mode),
                Err(e) => {
                    end = refusal(self.txn, &e);
                    break;
                }
            }
        }
        shadow.ending(self.txn);
        lm.release_all(self.txn);
        end
    }
}

/// What a refused request of `txn` means.
fn refusal(txn: TxnId, e: &Error) -> End {
    match e {
        Error::Db(DbError::Deadlock { txn: t }) if *t == txn => End::Victim,
        Error::Db(DbError::LockTimeout { txn: t }) if *t == txn => End::TimedOut,
        Error::Db(DbError::TxnFinished(t)) if *t == txn => End::Finished,
        Error::Db(DbError::WouldBlock { txn: t }) if *t == txn => End::WouldBlock,
        other => panic!("{txn:?}: unexpected refusal {other}"),
    }
}

/// Runs each group of scripts on a thread of its own (the scripts of one
/// group one after another, each begun on that thread), and returns how
/// every transaction ended, in script order.
fn run_threads(lm: &Arc<Manager>, groups: Vec<Vec<Script>>) -> Vec<End> {
    let shadow = Arc::new(Shadow::default());
    let threads: Vec<_> = groups
        .into_iter()
        .map(|scripts| {
            let (lm, shadow) = (lm.clone(), shadow.clone());
            shuttle::thread::spawn(move || {
                scripts
                    .iter()
                    .map(|s| {
                        lm.begin(s.txn);
                        s.run(&lm, &shadow)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ends: Vec<End> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        .collect();
    assert!(shadow.held().is_empty(), "a lock outlived its transaction");
    ends
}

/// Every transaction released everything, and the counters match the ends.
fn settled(lm: &Manager, txns: impl IntoIterator<Item = u64>, ends: &[End]) {
    for t in txns {
        assert_eq!(lm.held_by(TxnId(t)), 0, "txn {t} still holds locks");
    }
    let count = |e: End| ends.iter().filter(|&&x| x == e).count() as u64;
    let stats = lm.stats();
    assert_eq!(stats.deadlocks, count(End::Victim), "{ends:?}");
    assert_eq!(stats.timeouts, count(End::TimedOut), "{ends:?}");
    lm.state.with(|st| {
        assert!(st.blocked.is_empty(), "a thread is still marked waiting");
        assert!(st.waiting.is_empty(), "a wait outlived its request");
        assert!(st.granted.is_empty() && st.live.is_empty());
    });
}

/// Ends of a cycle: one victim at most, and someone commits.
fn one_victim_at_most(ends: &[End]) {
    let victims = ends.iter().filter(|&&e| e == End::Victim).count();
    assert!(victims <= 1, "two victims for one cycle: {ends:?}");
    assert!(ends.contains(&End::Committed), "nobody committed: {ends:?}");
}

use LockMode::{Exclusive as X, Shared as S};

/// Runs transaction `i + 1` with `scripts[i]` on a thread of its own, with
/// no timeout, under every schedule: a cycle among them has one victim at
/// most, someone commits, and everything is released.
fn one_victim_for(scripts: &'static [&'static [(u16, LockMode)]]) {
    check(move || {
        let lm = Arc::new(Manager::new(None));
        let groups = (1..)
            .zip(scripts)
            .map(|(txn, requests)| vec![Script::new(txn, requests)])
            .collect();
        let ends = run_threads(&lm, groups);
        one_victim_at_most(&ends);
        settled(&lm, 1..=scripts.len() as u64, &ends);
    });
}

#[test]
fn a_two_way_deadlock_has_one_victim_and_every_waiter_wakes() {
    one_victim_for(&[&[(1, X), (2, X)], &[(2, X), (1, X)]]);
}

#[test]
fn a_three_way_cycle_has_one_victim() {
    one_victim_for(&[&[(1, X), (2, X)], &[(2, X), (3, X)], &[(3, X), (1, X)]]);
}

#[test]
fn two_readers_upgrading_have_one_victim() {
    one_victim_for(&[&[(1, S), (1, X)], &[(1, S), (1, X)], &[(1, S)]]);
}

#[test]
fn a_cycle_closed_through_a_holder_granted_after_the_wait_began_has_a_victim() {
    check(|| {
        // T2 reads tuple 1 and keeps its lock until T3 has ended. T1 writes
        // tuple 2, then waits to write tuple 1; T3 reads tuple 1 (granted
        // beside T2, possibly after T1 began waiting: T1 then waits for T3
        // too), then waits to read tuple 2. T1 and T3 wait for each other
        // whatever the order, and T2 waits for T3: unless the cycle gets a
        // victim, every thread sleeps (a deadlock of the model).
        let lm = Arc::new(Manager::new(None));
        let shadow = Arc::new(Shadow::default());
        let t2 = TxnId(2);
        lm.begin(t2);
        lm.lock(t2, tuple(1), S, true).expect("free");
        shadow.granted(t2, tuple(1), S);
        let spawn = |script: Script| {
            let (lm, shadow) = (lm.clone(), shadow.clone());
            shuttle::thread::spawn(move || {
                lm.begin(script.txn);
                script.run(&lm, &shadow)
            })
        };
        let one = spawn(Script::new(1, &[(2, X), (1, X)]));
        let three = spawn(Script::new(3, &[(1, S), (2, S)]));
        let join = |h: shuttle::thread::JoinHandle<End>| {
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
        };
        let end3 = join(three);
        shadow.ending(t2);
        lm.release_all(t2);
        let ends = [join(one), end3, End::Committed];
        one_victim_at_most(&ends);
        assert!(shadow.held().is_empty(), "a lock outlived its transaction");
        settled(&lm, 1..=3, &ends);
    });
}

#[test]
fn a_request_pending_when_its_transaction_ends_is_never_granted() {
    check(|| {
        let lm = Arc::new(Manager::new(None));
        let (a, b) = (TxnId(1), TxnId(2));
        lm.begin(a);
        lm.begin(b);
        lm.lock(b, tuple(1), X, true).expect("free");
        let requester = {
            let lm = lm.clone();
            shuttle::thread::spawn(move || lm.lock(a, tuple(1), X, true))
        };
        // `a` is rolled back on another thread, before or after `b` ends.
        let b_first = thread_rng().gen_bool(0.5);
        let ender = {
            let lm = lm.clone();
            shuttle::thread::spawn(move || {
                if b_first {
                    lm.release_all(b);
                }
                lm.release_all(a);
                lm.release_all(b);
            })
        };
        let got = requester
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        ender
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        match got {
            Ok(()) => assert!(b_first, "granted while `b` held the lock"),
            Err(e) => assert_eq!(refusal(a, &e), End::Finished),
        }
        assert_eq!(
            lm.held_by(a),
            0,
            "a lock was granted to a finished transaction"
        );
        let late = lm.lock(a, tuple(2), S, true).expect_err("a ended");
        assert_eq!(refusal(a, &late), End::Finished);
        settled(&lm, 1..=2, &[]);
    });
}

#[test]
fn one_thread_running_two_transactions_never_waits_for_itself() {
    check(|| {
        // Thread one runs T1 (holds tuple 1) and then T2; T2 asks for
        // tuple 2, held by T3 on thread two, which asks for tuple 1. T2
        // must not wait for itself through T3; whoever closes the cycle
        // is refused, and the rest commits.
        let lm = Arc::new(Manager::new(None));
        let shadow = Arc::new(Shadow::default());
        let (t1, t2) = (TxnId(1), TxnId(2));
        let one = {
            let (lm, shadow) = (lm.clone(), shadow.clone());
            shuttle::thread::spawn(move || {
                lm.begin(t1);
                lm.begin(t2);
                lm.lock(t1, tuple(1), X, true).expect("free");
                shadow.granted(t1, tuple(1), X);
                let own = lm.lock(t2, tuple(1), S, true).expect_err("own wait");
                assert_eq!(refusal(t2, &own), End::Victim, "{own}");
                let end = match lm.lock(t2, tuple(2), S, true) {
                    Ok(()) => End::Committed,
                    Err(e) => refusal(t2, &e),
                };
                for t in [t2, t1] {
                    shadow.ending(t);
                    lm.release_all(t);
                }
                end
            })
        };
        let two = {
            let (lm, shadow) = (lm.clone(), shadow.clone());
            shuttle::thread::spawn(move || {
                let script = Script::new(3, &[(2, X), (1, S)]);
                lm.begin(script.txn);
                script.run(&lm, &shadow)
            })
        };
        let ends = [one, two].map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        assert!(
            ends.iter()
                .all(|e| matches!(e, End::Committed | End::Victim)),
            "{ends:?}"
        );
        assert_eq!(
            lm.stats().deadlocks,
            1 + ends.iter().filter(|&&e| e == End::Victim).count() as u64
        );
        for t in 1..=3 {
            assert_eq!(lm.held_by(TxnId(t)), 0);
        }
    });
}

#[test]
fn timeouts_refuse_only_waiting_requests_and_release_everything() {
    check(|| {
        // Deadlines may pass at any sleep (the model's monitor).
        let lm = Arc::new(Manager::new(Some(Duration::from_secs(1))));
        let ends = run_threads(
            &lm,
            vec![
                vec![Script::new(1, &[(1, X), (2, S)])],
                vec![Script::new(2, &[(2, X), (1, S)])],
                vec![Script::new(3, &[(1, S), (2, S)])],
            ],
        );
        assert!(
            ends.iter()
                .all(|e| matches!(e, End::Committed | End::Victim | End::TimedOut)),
            "{ends:?}"
        );
        settled(&lm, 1..=3, &ends);
    });
}

#[test]
fn random_scripts_keep_locks_compatible_and_end_cleanly() {
    check(|| {
        let mut rng = thread_rng();
        let timeout = rng.gen_bool(0.3).then_some(Duration::from_secs(1));
        let lm = Arc::new(Manager::new(timeout));
        let mut next = 0;
        let groups: Vec<Vec<Script>> = (0..3)
            .map(|_| {
                (0..rng.gen_range(1..=2))
                    .map(|_| {
                        next += 1;
                        let requests: Vec<(u16, LockMode)> = (0..rng.gen_range(1..=3))
                            .map(|_| (rng.gen_range(0..3), if rng.gen_bool(0.5) { S } else { X }))
                            .collect();
                        Script {
                            wait: rng.gen_bool(0.8),
                            ..Script::new(next, &requests)
                        }
                    })
                    .collect()
            })
            .collect();
        let ends = run_threads(&lm, groups);
        assert!(!ends.contains(&End::Finished), "{ends:?}");
        settled(&lm, 1..=next, &ends);
    });
}
