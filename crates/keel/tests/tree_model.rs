#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Trees checked against a `BTreeMap` model (proptest), on the simulated
//! disk: puts, replaces, deletes, gets, ranges in both directions with
//! every kind of bound, first and last, bulk fills that split leaves up to
//! new roots, bulk clears that empty leaves (reclaim) and bulk loads
//! (`Transaction::bulk_load`, into the new tree or refused by one with
//! keys, or failing on keys out of order with the transaction going on,
//! then split, rolled back or crashed like the rest), in transactions
//! that commit, abort, or end in a crash — a process kill (before the
//! commit, or right after it is acknowledged), a power cut
//! after the transaction's last change, or a power cut at a random I/O
//! operation inside the transaction (its commit may then be in flight) —
//! or that read damaged pages (a bit flipped on the way: each operation
//! failing on one is a corruption error, done or not key by key, and the
//! transaction goes on and commits), or on a failing disk (a log write,
//! a page write or a sync fails with EIO, ENOSPC or a bare sync failure:
//! the database is poisoned, the commit refused unless reached first, and
//! the process killed, cut off, killed and then cut off after the next
//! open, or closed and cut off), and clean reopens. Keys range from empty to `MAX_KEY_LEN` bytes; values
//! from empty through the inline/overflow boundary (an item of key length
//! prefix, key, value kind and value just below, at and above
//! `MAX_ITEM_LEN`) to overflow chains of hundreds of KiB. After every
//! crash and reopen the tree is consistent and holds exactly the committed
//! model (`common::tree::check_tree`), and over every transaction, whatever
//! its end, the overflow pages in the file change by exactly what the
//! committed values need (no chain leaked, none freed early): a committed
//! replace's or delete's old chain is freed after its commit, or by the
//! open after a crash that kept that free out of the log.
//!
//! Every other power cut is followed by another during the recovery it
//! calls for, at one of that recovery's I/O operations (or after it ends).
//!
//! Each case runs with a buffer pool of 32 frames, 8, or the fewest a
//! database takes (`keel::MIN_FRAMES`), so splits, rollbacks and reclaims
//! also run with their pages evicted and written between every step.
//!
//! `KEEL_PROPTEST_CASES` sets the number of cases (default 24).

use std::ops::Bound;
use std::sync::Arc;

use keel::btree::{MAX_ITEM_LEN, MAX_KEY_LEN};
use keel::{Database, RelationId};
use keel_io::sim::{Fault, FaultRule, SimConfig, SimIo};
use keel_io::{FileClass, OpKind};
use proptest::prelude::*;

mod common;

use common::tree::{TreeModel, check_in, check_tree, model_range, read_range};
use common::{Death, Failure, Outcome, failed, failure_strategy};

/// A key: short ones collide often; long ones interleave with them.
#[derive(Clone, Debug)]
enum Key {
    Short(u16),
    Empty,
    /// `MAX_KEY_LEN` bytes.
    Longest(u16),
    /// This many bytes.
    Padded(u16, u16),
}

/// A value's length.
#[derive(Clone, Copy, Debug)]
enum Len {
    Small(usize),
    /// The item is `MAX_ITEM_LEN` plus this (-2..=2) bytes long.
    AtLimit(i8),
    Large(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Put(Key, Len),
    Replace(Key, Len),
    Delete(Key),
    Get(Key),
    /// Bounds (0 unbounded, 1 included, 2 excluded) and direction.
    Range(Key, u8, Key, u8, bool),
    First,
    Last,
    /// Puts of `n` consecutive short keys from `start`.
    Fill(u16, u16, usize),
    /// Deletes of `n` consecutive short keys from `start`.
    Clear(u16, u16),
    /// A bulk load of these keys (sorted, the last value of a repeated
    /// key kept): into a tree with keys it must fail with `TreeNotEmpty`;
    /// into one that never had any it must load them all.
    BulkLoad(Vec<(Key, Len)>),
    /// The same keys handed over with the first moved to the end: with two
    /// keys or more it fails on that last one (`Unsorted`, after writing
    /// every large value before it), and the transaction goes on.
    BulkLoadUnsorted(Vec<(Key, Len)>),
}

#[derive(Clone, Copy, Debug)]
enum End {
    Commit,
    Abort,
    /// The process dies after the last change.
    Kill,
    /// The commit is acknowledged and the process dies at once: what the
    /// commit releases afterwards (old chains, dead slots) never reaches
    /// the log.
    CommitThenKill,
    /// The power fails after the last change.
    PowerCut,
    /// The power fails at this I/O operation from the transaction's start
    /// (or after its end, if it does not reach it).
    CutAt(u64),
    /// The transaction is rolled back and the power fails at this I/O
    /// operation from the rollback's start (or after it): a rollback's
    /// evictions write its first CLRs, so recovery may find a rollback cut
    /// between two records it logs under one latch (a replace's).
    AbortThenCut(u64),
    /// Reads of data pages come back with a bit flipped, each with this
    /// probability in a thousand, until an operation fails on one; the
    /// transaction goes on with good reads and commits.
    BadReads(u16),
    /// The disk fails under the transaction (a sync, a log write or a page
    /// write fails with EIO, ENOSPC or a bare sync failure): every error is
    /// fatal and poisons the database, the commit is refused unless it was
    /// reached first, then the process dies as the failure says and the
    /// next one opens on a sound disk.
    DiskFailure(Failure),
}

#[derive(Clone, Debug)]
struct TxnPlan {
    ops: Vec<Op>,
    end: End,
    reopen_after: bool,
}

const SHORT_KEYS: u16 = 400;

fn key_strategy() -> impl Strategy<Value = Key> {
    prop_oneof![
        12 => (0..SHORT_KEYS).prop_map(Key::Short),
        1 => Just(Key::Empty),
        2 => (0..SHORT_KEYS).prop_map(Key::Longest),
        2 => (0..SHORT_KEYS, 5..MAX_KEY_LEN as u16).prop_map(|(i, n)| Key::Padded(i, n)),
    ]
}

fn len_strategy() -> impl Strategy<Value = Len> {
    prop_oneof![
        8 => (0usize..120).prop_map(Len::Small),
        4 => (-2i8..=2).prop_map(Len::AtLimit),
        2 => (2000usize..20_000).prop_map(Len::Large),
        1 => (100_000usize..400_000).prop_map(Len::Large),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let bound = 0u8..3;
    prop_oneof![
        6 => (key_strategy(), len_strategy()).prop_map(|(k, l)| Op::Put(k, l)),
        3 => (key_strategy(), len_strategy()).prop_map(|(k, l)| Op::Replace(k, l)),
        4 => key_strategy().prop_map(Op::Delete),
        3 => key_strategy().prop_map(Op::Get),
        3 => (key_strategy(), bound.clone(), key_strategy(), bound, any::<bool>())
            .prop_map(|(a, x, b, y, rev)| Op::Range(a, x, b, y, rev)),
        1 => Just(Op::First),
        1 => Just(Op::Last),
        2 => (0..SHORT_KEYS, 1u16..250, 0usize..300).prop_map(|(s, n, l)| Op::Fill(s, n, l)),
        2 => (0..SHORT_KEYS, 1u16..250).prop_map(|(s, n)| Op::Clear(s, n)),
        1 => bulk_strategy().prop_map(Op::BulkLoad),
        1 => bulk_strategy().prop_map(Op::BulkLoadUnsorted),
    ]
}

fn bulk_strategy() -> impl Strategy<Value = Vec<(Key, Len)>> {
    prop::collection::vec((key_strategy(), len_strategy()), 0..150)
}

fn plan_strategy() -> impl Strategy<Value = TxnPlan> {
    let end = prop_oneof![
        6 => Just(End::Commit),
        2 => Just(End::Abort),
        1 => Just(End::Kill),
        1 => Just(End::CommitThenKill),
        1 => Just(End::PowerCut),
        2 => (1u64..600).prop_map(End::CutAt),
        2 => (1u64..40).prop_map(End::AbortThenCut),
        2 => (20u16..400).prop_map(End::BadReads),
        2 => failure_strategy().prop_map(End::DiskFailure),
    ];
    (
        prop::collection::vec(op_strategy(), 1..14),
        end,
        prop::bool::weighted(0.15),
    )
        .prop_map(|(ops, end, reopen_after)| TxnPlan {
            ops,
            end,
            reopen_after,
        })
}

fn short(i: u16) -> Vec<u8> {
    format!("k{i:03}").into_bytes()
}

fn key_of(k: &Key) -> Vec<u8> {
    match *k {
        Key::Short(i) => short(i),
        Key::Empty => Vec::new(),
        Key::Longest(i) => {
            let mut k = short(i);
            k.resize(MAX_KEY_LEN, b'z');
            k
        }
        Key::Padded(i, n) => {
            let mut k = short(i);
            k.resize(usize::from(n), b'm');
            k
        }
    }
}

fn value(seed: u64, key: &[u8], len: Len) -> Vec<u8> {
    let n = match len {
        Len::Small(n) | Len::Large(n) => n,
        // An item is the key's length prefix (2), the key, the value kind
        // (1) and the value.
        Len::AtLimit(d) => {
            (MAX_ITEM_LEN as isize - 3 - key.len() as isize + isize::from(d)).max(0) as usize
        }
    };
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn bound(kind: u8, key: &[u8]) -> Bound<&[u8]> {
    match kind {
        0 => Bound::Unbounded,
        1 => Bound::Included(key),
        _ => Bound::Excluded(key),
    }
}

/// Runs `ops` in `tx`, checking every answer against `model` (which the
/// changes update); stops at the first error (an injected crash).
/// `pristine`: the tree never had a key put in it (not even by a
/// transaction that did not commit), so it is still the empty root leaf.
fn run_ops(
    tx: &mut keel::Transaction<'_>,
    tree: RelationId,
    model: &mut TreeModel,
    ops: &[Op],
    seed: &mut u64,
    pristine: &mut bool,
) -> keel::Result<()> {
    for op in ops {
        *seed += 1;
        if !matches!(
            op,
            Op::Get(_)
                | Op::Range(..)
                | Op::First
                | Op::Last
                | Op::BulkLoad(_)
                | Op::BulkLoadUnsorted(_)
        ) {
            *pristine = false;
        }
        match op {
            Op::Put(k, len) => {
                let (k, v) = (key_of(k), value(*seed, &key_of(k), *len));
                tx.put(tree, &k, &v)?;
                model.insert(k, v);
            }
            Op::Replace(k, len) => {
                let (k, v) = (key_of(k), value(*seed, &key_of(k), *len));
                let old = tx.replace(tree, &k, &v)?;
                assert!(
                    old == model.insert(k, v),
                    "replace returned another old value"
                );
            }
            Op::Delete(k) => {
                let k = key_of(k);
                let old = tx.delete_key(tree, &k)?;
                assert!(old == model.remove(&k), "delete returned another value");
                assert_eq!(tx.get_key(tree, &k)?, None);
            }
            Op::Get(k) => {
                let k = key_of(k);
                assert!(
                    tx.get_key(tree, &k)?.as_ref() == model.get(&k),
                    "get differs"
                );
            }
            Op::Range(a, x, b, y, rev) => {
                let (a, b) = (key_of(a), key_of(b));
                let (lo, hi) = (bound(*x, &a), bound(*y, &b));
                let got = read_range(tx, tree, lo, hi, *rev)?;
                let mut want = model_range(model, lo, hi);
                if *rev {
                    want.reverse();
                }
                assert!(got == want, "range {lo:?}..{hi:?} (rev {rev}) differs");
            }
            Op::First => {
                let want = model.iter().next().map(|(k, v)| (k.clone(), v.clone()));
                assert!(tx.first(tree)? == want, "first differs");
            }
            Op::Last => {
                let want = model
                    .iter()
                    .next_back()
                    .map(|(k, v)| (k.clone(), v.clone()));
                assert!(tx.last(tree)? == want, "last differs");
            }
            Op::Fill(start, n, len) => {
                for i in *start..start.saturating_add(*n) {
                    let (k, v) = (
                        short(i),
                        value(*seed + u64::from(i), &short(i), Len::Small(*len)),
                    );
                    tx.put(tree, &k, &v)?;
                    model.insert(k, v);
                }
            }
            Op::Clear(start, n) => {
                for i in *start..start.saturating_add(*n) {
                    let old = tx.delete_key(tree, &short(i))?;
                    assert!(
                        old == model.remove(&short(i)),
                        "delete returned another value"
                    );
                }
            }
            Op::BulkLoad(items) => {
                let load: TreeModel = items
                    .iter()
                    .map(|(k, len)| (key_of(k), value(*seed, &key_of(k), *len)))
                    .collect();
                match tx.bulk_load(tree, &load) {
                    Ok(n) => {
                        assert!(model.is_empty(), "a bulk load into a tree with keys");
                        assert_eq!(n, load.len() as u64, "keys loaded");
                        if !load.is_empty() {
                            *pristine = false;
                        }
                        *model = load;
                    }
                    // An emptied tree may keep its inner nodes.
                    Err(keel::Error::Db(keel::DbError::TreeNotEmpty(_))) => assert!(
                        !model.is_empty() || !*pristine,
                        "a bulk load into a tree that never had a key refused"
                    ),
                    Err(e) => return Err(e),
                }
            }
            Op::BulkLoadUnsorted(items) => {
                let load: TreeModel = items
                    .iter()
                    .map(|(k, len)| (key_of(k), value(*seed, &key_of(k), *len)))
                    .collect();
                let rotated: Vec<_> = load.iter().skip(1).chain(load.iter().take(1)).collect();
                match tx.bulk_load(tree, rotated) {
                    Ok(n) => {
                        assert!(load.len() < 2, "an unsorted bulk load succeeded");
                        assert!(model.is_empty(), "a bulk load into a tree with keys");
                        assert_eq!(n, load.len() as u64, "keys loaded");
                        if !load.is_empty() {
                            *pristine = false;
                        }
                        *model = load;
                    }
                    Err(keel::Error::Db(keel::DbError::Unsorted { .. })) => assert!(
                        load.len() >= 2 && model.is_empty(),
                        "a bulk load refused as unsorted"
                    ),
                    Err(keel::Error::Db(keel::DbError::TreeNotEmpty(_))) => assert!(
                        !model.is_empty() || !*pristine,
                        "a bulk load into a tree that never had a key refused"
                    ),
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// Runs `ops` with reads that may come back damaged (`End::BadReads`):
/// an operation failing on one is a corruption error that neither ends
/// the transaction nor poisons the database; the reads are then made good
/// again, what the operation changed is settled (`settle_failed`), and the
/// rest run as usual.
fn run_through_bad_reads(
    m: &Machine,
    tx: &mut keel::Transaction<'_>,
    tree: RelationId,
    model: &mut TreeModel,
    ops: &[Op],
    seed: &mut u64,
    pristine: &mut bool,
) -> keel::Result<()> {
    for op in ops {
        if let Err(e) = run_ops(tx, tree, model, std::slice::from_ref(op), seed, pristine) {
            assert_eq!(e.class(), keel::ErrorClass::Corruption, "{op:?}: {e}");
            assert!(!m.db().is_poisoned(), "{op:?}: {e}");
            m.sim.clear_faults();
            settle_failed(tx, tree, model, op, *seed, pristine)?;
        }
    }
    m.sim.clear_faults();
    Ok(())
}

/// After `op` failed: each key it changes holds its old value or its new
/// one (a failed operation is done or not, key by key: a delete or replace
/// is done when only the read of the old value failed), and the model
/// takes what is there. A failed bulk load left the tree as it was.
fn settle_failed(
    tx: &mut keel::Transaction<'_>,
    tree: RelationId,
    model: &mut TreeModel,
    op: &Op,
    seed: u64,
    pristine: &mut bool,
) -> keel::Result<()> {
    let mut settle = |k: Vec<u8>, new: Option<Vec<u8>>| -> keel::Result<()> {
        let got = tx.get_key(tree, &k)?;
        assert!(
            got.as_ref() == model.get(&k) || got == new,
            "{op:?}: a failed operation left a key with neither its old value nor its new one"
        );
        match got {
            Some(v) => model.insert(k, v),
            None => model.remove(&k),
        };
        Ok(())
    };
    match op {
        Op::Put(k, len) | Op::Replace(k, len) => {
            let k = key_of(k);
            let v = value(seed, &k, *len);
            settle(k, Some(v))?;
        }
        Op::Delete(k) => settle(key_of(k), None)?,
        Op::Fill(start, n, len) => {
            for i in *start..start.saturating_add(*n) {
                let v = value(seed + u64::from(i), &short(i), Len::Small(*len));
                settle(short(i), Some(v))?;
            }
        }
        Op::Clear(start, n) => {
            for i in *start..start.saturating_add(*n) {
                settle(short(i), None)?;
            }
        }
        Op::BulkLoad(_) | Op::BulkLoadUnsorted(_) => {
            let all = read_range(tx, tree, Bound::Unbounded, Bound::Unbounded, false)?;
            let before: Vec<(Vec<u8>, Vec<u8>)> =
                model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            assert!(all == before, "a failed bulk load changed the tree");
        }
        Op::Get(_) | Op::Range(..) | Op::First | Op::Last => {}
    }
    if !model.is_empty() {
        *pristine = false;
    }
    Ok(())
}

/// Overflow pages in the tree's file less those the values of `model`
/// need: constant over any transaction, whatever its end (the open frees
/// what a crash kept a committed transaction's releases from freeing).
fn overflow_surplus(db: &Database, model: &TreeModel) -> isize {
    let needed: usize = model
        .iter()
        .filter(|(k, v)| 2 + k.len() + v.len() >= MAX_ITEM_LEN || v.len() > keel::heap::INLINE_MAX)
        .map(|(_, v)| v.len().div_ceil(keel::page::CHUNK_CAPACITY))
        .sum();
    common::pages_of_type(db, "t", keel::page::PageType::Overflow) as isize - needed as isize
}

/// The engine under test and its simulated machine.
struct Machine {
    sim: Arc<SimIo>,
    /// The buffer pool's frames.
    frames: usize,
    db: Option<Database>,
    boots: u64,
}

impl Machine {
    fn db(&self) -> &Database {
        self.db.as_ref().unwrap()
    }

    fn open(&mut self) {
        let config = common::small_config(self.frames);
        self.db = Some(common::open_sim(&self.sim, config).unwrap());
    }

    /// The process dies: what it wrote stays in the kernel. After every
    /// other kill the power fails during the unclean recovery that follows
    /// (its sync of the directory, its rewrite of the log's tail, the page
    /// images and the pages, its undo, its checkpoint) or after it ends,
    /// and the next open recovers from what that recovery left.
    fn kill(&mut self) {
        let kernel = self.sim.kill();
        self.db = None;
        self.boots += 1;
        self.sim = Arc::new(SimIo::after_kill(kernel, SimConfig::seeded(self.boots)));
        self.open_cut(self.boots.is_multiple_of(2));
    }

    /// The power fails: unsynced writes are dropped or torn. After every
    /// other cut the power fails again during the recovery that follows,
    /// at one of its I/O operations (its sync of the directory, its undo's
    /// CLRs, the pages it writes, its checkpoint) or after it ends, and
    /// the next open recovers from what that recovery left.
    fn power_cut(&mut self) {
        self.cut(true);
    }

    /// The power fails; `again`: on every other boot, once more during
    /// the recovery that follows ([`Machine::power_cut`]).
    fn cut(&mut self, again: bool) {
        let disk = self.sim.crash();
        self.db = None;
        self.boots += 1;
        self.sim = common::reboot(disk, self.boots);
        self.open_cut(again && self.boots.is_multiple_of(2));
    }

    /// Opens; with `cut`, the power fails first at one of the open's I/O
    /// operations (or after the open ends) and the open after that is the
    /// one kept.
    fn open_cut(&mut self, cut: bool) {
        if cut {
            let at = self.sim.op_count() + 1 + (self.boots * 37) % 300;
            self.sim.add_fault(FaultRule::at_op(at, Fault::PowerCut));
            let opened = common::open_sim(&self.sim, common::small_config(self.frames));
            if !self.sim.is_halted() {
                self.sim.clear_faults();
                self.db = Some(opened.unwrap());
                return;
            }
            let disk = self.sim.crash();
            drop(opened);
            self.boots += 1;
            self.sim = common::reboot(disk, self.boots);
        }
        self.open();
    }
}

impl Machine {
    /// A clean close on the disk as it is (failing or not), then a power
    /// cut, and the next process opens on a disk that no longer fails: a
    /// close that returned `Ok` made everything durable and the open is
    /// clean. A poisoned database refuses to close cleanly.
    fn close_then_power_cut(&mut self) {
        let db = self.db.take().unwrap();
        let poisoned = db.is_poisoned();
        let closed = db.close();
        match &closed {
            Ok(()) => assert!(!poisoned, "a poisoned database closed cleanly"),
            Err(e) => assert_eq!(e.class(), keel::ErrorClass::Fatal, "close: {e}"),
        }
        self.sim.clear_faults();
        self.cut(false);
        if closed.is_ok() {
            assert!(
                self.db().recovery_report().clean_shutdown,
                "a clean close was not clean after a power cut"
            );
        }
    }
}

/// Runs one transaction; returns the model it leaves if it commits and
/// how it ended.
fn run_txn(
    m: &Machine,
    tree: RelationId,
    committed: &TreeModel,
    plan: &TxnPlan,
    seed: &mut u64,
    pristine: &mut bool,
) -> (TreeModel, Outcome) {
    if let End::DiskFailure(f) = plan.end {
        return run_failing_txn(m, tree, committed, plan, f, seed, pristine);
    }
    let mut model = committed.clone();
    if let End::CutAt(n) = plan.end {
        let at = m.sim.op_count() + n;
        m.sim.add_fault(FaultRule::at_op(at, Fault::PowerCut));
    }
    let Ok(mut tx) = m.db().begin() else {
        return (model, Outcome::NotCommitted);
    };
    let ran = match plan.end {
        End::BadReads(per_mille) => {
            let bad = f64::from(per_mille) / 1000.0;
            m.sim.add_fault(
                FaultRule::with_probability(bad, Fault::FlipBit)
                    .on_op(OpKind::Read)
                    .on_class(FileClass::Data),
            );
            run_through_bad_reads(m, &mut tx, tree, &mut model, &plan.ops, seed, pristine)
        }
        _ => run_ops(&mut tx, tree, &mut model, &plan.ops, seed, pristine),
    };
    let outcome = match (plan.end, ran) {
        (End::Commit | End::CommitThenKill | End::CutAt(_) | End::BadReads(_), Ok(())) => {
            match tx.commit() {
                Ok(()) => Outcome::Acked,
                Err(_) => Outcome::InCommit,
            }
        }
        (End::Abort, Ok(())) => {
            tx.abort().unwrap();
            Outcome::NotCommitted
        }
        (End::AbortThenCut(n), Ok(())) => {
            let at = m.sim.op_count() + n;
            m.sim.add_fault(FaultRule::at_op(at, Fault::PowerCut));
            // Fails when the cut falls inside it.
            let _ = tx.abort();
            Outcome::NotCommitted
        }
        (_, Ok(())) => {
            std::mem::forget(tx);
            Outcome::NotCommitted
        }
        (End::CutAt(_), Err(_)) => Outcome::NotCommitted,
        (_, Err(e)) => panic!("{e:?}"),
    };
    (model, outcome)
}

/// Runs one transaction while its disk fails as `f` says
/// (`End::DiskFailure`); returns the model it leaves if it commits and how
/// it ended. The first error is fatal and poisons the database (invariants
/// 7 and 16); the operations stop there (what the failed one changed is
/// unknown, and nothing after it can commit), the commit is refused, and
/// so is a new transaction's. A commit that returned `Ok` stands even if
/// the releases after it (old chains, dead slots) poisoned the database.
fn run_failing_txn(
    m: &Machine,
    tree: RelationId,
    committed: &TreeModel,
    plan: &TxnPlan,
    f: Failure,
    seed: &mut u64,
    pristine: &mut bool,
) -> (TreeModel, Outcome) {
    let db = m.db();
    let mut model = committed.clone();
    let mut tx = db.begin().unwrap();
    if !f.at_commit {
        f.arm(&m.sim);
    }
    for op in &plan.ops {
        let one = std::slice::from_ref(op);
        if let Err(e) = run_ops(&mut tx, tree, &mut model, one, seed, pristine) {
            failed(db, &e, &format!("{op:?}"));
            break;
        }
    }
    if f.at_commit {
        f.arm(&m.sim);
    }
    let outcome = common::commit_on_failing_disk(db, tx, &f);
    if db.is_poisoned() {
        common::refuses_commits(db, |tx| tx.put(tree, b"written after the failure", b"v"));
    }
    (model, outcome)
}

/// How many transactions ran on a failing disk, and how many of them saw
/// it fail (the database poisoned).
#[derive(Debug, Default)]
struct Tally {
    failing: usize,
    failed: usize,
}

fn run(steps: &[TxnPlan], frames: usize) -> Tally {
    let mut tally = Tally::default();
    let mut m = Machine {
        sim: Arc::new(SimIo::new(SimConfig::seeded(1))),
        frames,
        db: None,
        boots: 1,
    };
    m.open();
    let tree = m.db().create_tree("t").unwrap();
    let mut committed = TreeModel::new();
    let mut seed = 0;
    let mut pristine = true;
    for (n, plan) in steps.iter().enumerate() {
        let surplus = overflow_surplus(m.db(), &committed);
        let (after, outcome) = run_txn(&m, tree, &committed, plan, &mut seed, &mut pristine);
        let in_flight = match plan.end {
            End::Commit | End::BadReads(_) => {
                assert!(outcome == Outcome::Acked, "step {n}: the commit failed");
                committed = after;
                None
            }
            End::Abort => None,
            End::Kill => {
                m.kill();
                None
            }
            End::CommitThenKill => {
                assert!(outcome == Outcome::Acked, "step {n}: the commit failed");
                committed = after;
                m.kill();
                None
            }
            End::PowerCut | End::AbortThenCut(_) => {
                m.power_cut();
                None
            }
            End::CutAt(_) | End::DiskFailure(_) => {
                if let End::DiskFailure(_) = plan.end {
                    tally.failing += 1;
                    tally.failed += usize::from(m.db().is_poisoned());
                }
                match plan.end {
                    End::DiskFailure(f) => match f.death {
                        Death::Kill | Death::KillThenPowerCut => m.kill(),
                        Death::PowerCut => m.power_cut(),
                        Death::CloseThenPowerCut => m.close_then_power_cut(),
                    },
                    _ => m.power_cut(),
                }
                match outcome {
                    Outcome::Acked => {
                        committed = after;
                        None
                    }
                    Outcome::InCommit => Some(after),
                    Outcome::NotCommitted => None,
                }
            }
        };
        assert_eq!(m.db().tree("t").unwrap(), Some(tree), "step {n}");
        let tx = m.db().begin().unwrap();
        let ok = check_in(&tx, tree, &committed);
        drop(tx);
        match (ok, in_flight) {
            (Ok(()), _) => {}
            // A commit in flight at the power cut may have become durable.
            (Err(e), Some(after)) => {
                check_tree(m.db(), tree, &after)
                    .unwrap_or_else(|e2| panic!("step {n}: neither model: {e}; {e2}"));
                committed = after;
            }
            (Err(e), None) => panic!("step {n} ({:?}): {e}", plan.end),
        }
        if let End::DiskFailure(Failure {
            death: Death::KillThenPowerCut,
            ..
        }) = plan.end
        {
            m.power_cut();
            check_tree(m.db(), tree, &committed)
                .unwrap_or_else(|e| panic!("step {n}: after the power cut that followed: {e}"));
        }
        let now = overflow_surplus(m.db(), &committed);
        assert_eq!(
            now, surplus,
            "step {n} ({:?}): overflow pages leaked",
            plan.end
        );
        if plan.reopen_after {
            m.db.take().unwrap().close().unwrap();
            m.open();
            assert!(m.db().recovery_report().clean_shutdown);
            check_tree(m.db(), tree, &committed).unwrap_or_else(|e| panic!("step {n}: {e}"));
        }
    }
    m.db.take().unwrap().close().unwrap();
    tally
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("KEEL_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn trees_behave_like_maps_through_commits_aborts_and_crashes(
        mut steps in prop::collection::vec(plan_strategy(), 1..14),
        first in prop::option::of((bulk_strategy(), any::<bool>())),
        frames in prop_oneof![Just(32usize), Just(8), Just(keel::MIN_FRAMES)],
    ) {
        // Half the runs start with a bulk load into the new tree, half of
        // those with one that fails on its keys' order.
        if let Some((items, sorted)) = first {
            let load = match sorted {
                true => Op::BulkLoad(items),
                false => Op::BulkLoadUnsorted(items),
            };
            steps[0].ops.insert(0, load);
        }
        run(&steps, frames);
    }
}

/// The failing disk fails most tree transactions it is put under: a
/// handful of generated cases, two transactions each (the first commits,
/// the second runs on a failing disk).
#[test]
fn failing_disks_fail_tree_transactions() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut total = Tally::default();
    let cases = 40;
    for case in 0..cases {
        let mut plan = || plan_strategy().new_tree(&mut runner).unwrap().current();
        let (mut first, mut second) = (plan(), plan());
        first.end = End::Commit;
        let f = failure_strategy().new_tree(&mut runner).unwrap().current();
        second.end = End::DiskFailure(f);
        let frames = [32, 8, keel::MIN_FRAMES][case % 3];
        let t = run(&[first, second], frames);
        total.failing += t.failing;
        total.failed += t.failed;
    }
    eprintln!("{total:?}");
    assert_eq!(total.failing, cases);
    assert!(
        total.failed * 3 >= total.failing * 2,
        "the disk failed under {} of {} transactions",
        total.failed,
        total.failing
    );
}
