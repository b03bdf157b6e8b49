#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Relations checked against a `BTreeMap` model (proptest): inserts, bulk
//! inserts (`insert_many`, a page at a time, overflow values among them),
//! updates that grow, shrink and move tuples, deletes, gets and scans, in
//! transactions that commit, abort or are cut off by a crash, with clean
//! reopens and crash reopens in between. Tuples range from 0 bytes to
//! several MiB (overflow chains). Between transactions relations are
//! created and dropped (a dropped relation's id is refused, its name free),
//! sometimes with the process dying right after the DDL returned; after
//! every reopen the catalog lists exactly the model's relations. A
//! transaction may also read damaged pages (a bit flipped on the way): each
//! operation failing on one is a corruption error, done or not, and the
//! transaction goes on and commits. Or the disk fails under it
//! (`common::disk_failure`'s shapes, likelier: the log's, the data files',
//! the control file's or the directories' syncs failing with a bare sync
//! failure, EIO or ENOSPC, or the log's or the data files' writes failing
//! with EIO or ENOSPC), from its first operation or from its commit on, and
//! through a checkpoint after an acknowledged commit: every error is fatal
//! and poisons the database (invariants 7 and 16), after which a new
//! transaction cannot commit; then the process is killed, or the power
//! cut, or killed and the power cut after the next open recovered, or a
//! clean close is tried on the failing disk (refused when poisoned; one
//! that succeeds leaves a clean open) before a power cut; and the open, on
//! a sound disk, finds every acknowledged commit, and of the failing
//! transaction all or nothing: all only if its commit was acknowledged, or
//! was called on a healthy database and failed (the model adopts what it
//! finds), nothing if the database was poisoned before. Over every
//! transaction, whatever its end (a crash's included: recovery rolls it
//! back; a failed disk's: recovery frees what a poisoned process's
//! releases did not), the overflow pages in
//! the relation's file change by exactly what the committed values need
//! (no chain leaked, none freed early), and the relation's dead slots do
//! not grow: a rolled-back insert frees its slot, and a committed delete's
//! slot and old chain are freed after its commit, or by the open after a
//! crash that kept those frees out of the log. After each transaction
//! exactly one slot holds a tuple per live value (none left that no home
//! points at). Half the cases run with a pool of six frames,
//! so pages are evicted and read again inside each change (and a damaged
//! read can land between its steps). On the simulated disk.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel::buffer::BufferConfig;
use keel::{Config, Database, RelationId, TupleId};
use keel_io::sim::{Fault, FaultRule, SimConfig, SimIo};
use keel_io::{FileClass, OpKind};
use proptest::prelude::*;

mod common;

use common::{Death, Failure, Outcome, failed, failure_strategy};

#[derive(Clone, Debug)]
enum Op {
    Insert(usize),
    /// `insert_many` of values of these lengths.
    InsertMany(Vec<usize>),
    Update(usize, usize),
    Delete(usize),
    Get(usize),
    Scan,
}

#[derive(Clone, Copy, Debug)]
enum End {
    Commit,
    Abort,
    /// The process dies: the transaction is forgotten, the database dropped.
    Crash,
    /// Reads of data pages come back with a bit flipped, each with this
    /// probability in a thousand, until an operation fails on one; the
    /// transaction goes on with good reads and commits.
    BadReads(u16),
    /// The disk fails under the transaction: its operations, its commit
    /// and a checkpoint after it run under `Failure`'s fault rules; then
    /// the process dies and the database is reopened on a sound disk.
    DiskFailure(Failure),
}

#[derive(Clone, Debug)]
struct TxnPlan {
    /// Which relation (an index into the live ones).
    rel: usize,
    ops: Vec<Op>,
    end: End,
    reopen_after: bool,
}

#[derive(Clone, Debug)]
enum Step {
    Txn(TxnPlan),
    /// Create a relation; `true`: the process dies right after it returned.
    Create(bool),
    /// Drop a live relation (by index); `true`: the process dies right
    /// after it returned.
    Drop(usize, bool),
}

fn len_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        10 => 0usize..80,
        6 => 80usize..1500,
        3 => 1500usize..9000,
        1 => 9000usize..(3 << 20),
    ]
}

/// Lengths of a bulk insert's values: mostly small, some past a page.
fn many_strategy() -> impl Strategy<Value = Vec<usize>> {
    let len = prop_oneof![
        12 => 0usize..200,
        3 => 200usize..1500,
        1 => 1500usize..9000,
    ];
    prop::collection::vec(len, 0..120)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => len_strategy().prop_map(Op::Insert),
        2 => many_strategy().prop_map(Op::InsertMany),
        3 => (any::<usize>(), len_strategy()).prop_map(|(i, l)| Op::Update(i, l)),
        2 => any::<usize>().prop_map(Op::Delete),
        2 => any::<usize>().prop_map(Op::Get),
        1 => Just(Op::Scan),
    ]
}

fn plan_strategy() -> impl Strategy<Value = TxnPlan> {
    (
        any::<usize>(),
        prop::collection::vec(op_strategy(), 1..12),
        prop_oneof![
            6 => Just(End::Commit),
            2 => Just(End::Abort),
            1 => Just(End::Crash),
            2 => (20u16..400).prop_map(End::BadReads),
            2 => failure_strategy().prop_map(End::DiskFailure),
        ],
        prop::bool::weighted(0.2),
    )
        .prop_map(|(rel, ops, end, reopen_after)| TxnPlan {
            rel,
            ops,
            end,
            reopen_after,
        })
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => plan_strategy().prop_map(Step::Txn),
        1 => prop::bool::weighted(0.3).prop_map(Step::Create),
        1 => (any::<usize>(), prop::bool::weighted(0.3)).prop_map(|(i, c)| Step::Drop(i, c)),
    ]
}

fn config(frames: usize) -> Config {
    let mut c = Config {
        buffer: BufferConfig::with_frames(frames),
        checkpoint_interval: None,
        checkpoint_wal_bytes: 0,
        recovery_checkpoint: keel::RecoveryCheckpoint::BeforeOpenReturns,
        consistency_check: true,
        ..Config::default()
    };
    c.wal.segment_size_bytes = 4 << 20;
    c.wal.max_batch_bytes = 256 << 10;
    c
}

fn fill(seed: usize, len: usize) -> Vec<u8> {
    let mut x = seed as u64 ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn pick(model: &BTreeMap<TupleId, Vec<u8>>, i: usize) -> Option<TupleId> {
    (!model.is_empty()).then(|| *model.keys().nth(i % model.len()).unwrap())
}

/// Runs `op` in `tx`, checking every answer against `model` (which a
/// change updates).
fn run_op(
    tx: &mut keel::Transaction<'_>,
    rel: RelationId,
    model: &mut BTreeMap<TupleId, Vec<u8>>,
    op: &Op,
    seed: usize,
) -> keel::Result<()> {
    match *op {
        Op::Insert(len) => {
            let v = fill(seed, len);
            let tid = tx.insert(rel, &v)?;
            assert!(model.insert(tid, v).is_none(), "{tid} handed out twice");
        }
        Op::InsertMany(ref lens) => {
            let values = many_values(seed, lens);
            let tids = tx.insert_many(rel, &values)?;
            assert_eq!(tids.len(), values.len());
            for (tid, v) in tids.into_iter().zip(values) {
                assert!(model.insert(tid, v).is_none(), "{tid} handed out twice");
            }
        }
        Op::Update(i, len) => {
            if let Some(tid) = pick(model, i) {
                let v = fill(seed, len);
                tx.update(rel, tid, &v)?;
                model.insert(tid, v);
            }
        }
        Op::Delete(i) => {
            if let Some(tid) = pick(model, i) {
                tx.delete(rel, tid)?;
                model.remove(&tid);
                assert_eq!(tx.get(rel, tid)?, None);
            }
        }
        Op::Get(i) => {
            if let Some(tid) = pick(model, i) {
                assert_eq!(tx.get(rel, tid)?.as_ref(), model.get(&tid));
            }
        }
        Op::Scan => check_scan_in(tx, rel, model)?,
    }
    Ok(())
}

fn many_values(seed: usize, lens: &[usize]) -> Vec<Vec<u8>> {
    lens.iter()
        .enumerate()
        .map(|(k, &len)| fill(seed * 1000 + k, len))
        .collect()
}

/// After `op` failed on a damaged read (the reads good again): what it
/// changed, read back. An insert is done or not; a bulk insert may have
/// placed some of its values (each at most once); an update or delete is
/// done or not. The model takes what is there.
fn settle_failed(
    tx: &keel::Transaction<'_>,
    rel: RelationId,
    model: &mut BTreeMap<TupleId, Vec<u8>>,
    op: &Op,
    seed: usize,
    picked: Option<TupleId>,
) -> keel::Result<()> {
    let mut fresh: Vec<(TupleId, Vec<u8>)> = Vec::new();
    for row in tx.scan(rel)? {
        let (tid, v) = row?;
        if !model.contains_key(&tid) {
            fresh.push((tid, v));
        }
    }
    let mut allowed: Vec<Vec<u8>> = match *op {
        Op::Insert(len) => vec![fill(seed, len)],
        Op::InsertMany(ref lens) => many_values(seed, lens),
        _ => Vec::new(),
    };
    for (tid, v) in fresh {
        let at = allowed.iter().position(|a| *a == v);
        let at = at.unwrap_or_else(|| panic!("{op:?}: a failed operation left {tid}"));
        allowed.swap_remove(at);
        model.insert(tid, v);
    }
    if let Some(tid) = picked {
        let new = match *op {
            Op::Update(_, len) => Some(fill(seed, len)),
            _ => None,
        };
        let got = tx.get(rel, tid)?;
        assert!(
            got.as_ref() == model.get(&tid) || got == new,
            "{op:?}: {tid} holds neither its old value nor its new one"
        );
        match got {
            Some(v) => model.insert(tid, v),
            None => model.remove(&tid),
        };
    }
    Ok(())
}

/// Runs one transaction on machine `m`; returns the model as the
/// transaction left it and how it ended.
fn run_txn(
    m: &Machine,
    rel: RelationId,
    committed: &BTreeMap<TupleId, Vec<u8>>,
    plan: &TxnPlan,
    seed: &mut usize,
) -> (BTreeMap<TupleId, Vec<u8>>, Outcome) {
    if let End::DiskFailure(f) = plan.end {
        return run_failing_txn(m, rel, committed, plan, f, seed);
    }
    let mut model = committed.clone();
    let mut tx = m.db().begin().unwrap();
    if let End::BadReads(per_mille) = plan.end {
        m.sim.add_fault(
            FaultRule::with_probability(f64::from(per_mille) / 1000.0, Fault::FlipBit)
                .on_op(OpKind::Read)
                .on_class(FileClass::Data),
        );
    }
    for op in &plan.ops {
        *seed += 1;
        let picked = match *op {
            Op::Update(i, _) | Op::Delete(i) => pick(&model, i),
            _ => None,
        };
        match (run_op(&mut tx, rel, &mut model, op, *seed), plan.end) {
            (Ok(()), _) => {}
            (Err(e), End::BadReads(_)) => {
                assert_eq!(e.class(), keel::ErrorClass::Corruption, "{op:?}: {e}");
                assert!(!m.db().is_poisoned(), "{op:?}: {e}");
                m.sim.clear_faults();
                settle_failed(&tx, rel, &mut model, op, *seed, picked).unwrap();
            }
            (Err(e), _) => panic!("{op:?}: {e}"),
        }
    }
    m.sim.clear_faults();
    let outcome = match plan.end {
        End::Commit | End::BadReads(_) => {
            tx.commit().unwrap();
            Outcome::Acked
        }
        End::Abort => {
            tx.abort().unwrap();
            Outcome::NotCommitted
        }
        End::Crash | End::DiskFailure(_) => {
            std::mem::forget(tx);
            Outcome::NotCommitted
        }
    };
    (model, outcome)
}

/// Runs one transaction on machine `m` while its disk fails as `f` says;
/// returns the model as the transaction left it and how it ended. Every
/// error is fatal and poisons the database; the operations after it run
/// on (each may fail, none may answer wrongly), the commit is refused, and
/// so is a new transaction's. A commit that returned `Ok` stands even if
/// the releases after it (freeing its dead slots and old chains) poisoned
/// the database.
fn run_failing_txn(
    m: &Machine,
    rel: RelationId,
    committed: &BTreeMap<TupleId, Vec<u8>>,
    plan: &TxnPlan,
    f: Failure,
    seed: &mut usize,
) -> (BTreeMap<TupleId, Vec<u8>>, Outcome) {
    let db = m.db();
    let mut model = committed.clone();
    let mut tx = db.begin().unwrap();
    if !f.at_commit {
        f.arm(&m.sim);
    }
    for op in &plan.ops {
        *seed += 1;
        if let Err(e) = run_op(&mut tx, rel, &mut model, op, *seed) {
            failed(db, &e, &format!("{op:?}"));
        }
    }
    if f.at_commit {
        f.arm(&m.sim);
    }
    let outcome = common::commit_on_failing_disk(db, tx, &f);
    if db.is_poisoned() {
        common::refuses_commits(db, |tx| {
            tx.insert(rel, b"written after the failure").map(drop)
        });
    }
    (model, outcome)
}

fn check_scan(tx: &keel::Transaction<'_>, rel: RelationId, model: &BTreeMap<TupleId, Vec<u8>>) {
    check_scan_in(tx, rel, model).unwrap();
}

fn check_scan_in(
    tx: &keel::Transaction<'_>,
    rel: RelationId,
    model: &BTreeMap<TupleId, Vec<u8>>,
) -> keel::Result<()> {
    let rows: Vec<(TupleId, Vec<u8>)> = tx.scan(rel)?.collect::<keel::Result<_>>()?;
    let keys: Vec<TupleId> = rows.iter().map(|(t, _)| *t).collect();
    let want: Vec<TupleId> = model.keys().copied().collect();
    assert_eq!(keys, want, "scan returns the model's TupleIds in order");
    for (tid, v) in rows {
        assert!(model.get(&tid) == Some(&v), "value of {tid} differs");
    }
    Ok(())
}

/// Overflow pages in relation `name`'s file less those the values of
/// `model` need: constant over any transaction that ends without a crash.
fn overflow_surplus(db: &Database, name: &str, model: &BTreeMap<TupleId, Vec<u8>>) -> isize {
    let needed: usize = model
        .values()
        .filter(|v| v.len() > keel::heap::INLINE_MAX)
        .map(|v| v.len().div_ceil(keel::page::CHUNK_CAPACITY))
        .sum();
    common::pages_of_type(db, name, keel::page::PageType::Overflow) as isize - needed as isize
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
        self.db = Some(common::open_sim(&self.sim, config(self.frames)).unwrap());
    }

    /// The process dies: what it wrote stays in the kernel; the reopen
    /// recovers.
    fn crash_reopen(&mut self, rels: &Relations) {
        self.die(false);
        check_all(self.db(), rels);
    }

    /// The process dies, killed (what it wrote stays in the kernel) or by
    /// a power cut (unsynced writes dropped or torn), and the next one
    /// opens the database, on a disk that no longer fails.
    fn die(&mut self, power_cut: bool) {
        self.sim.clear_faults();
        self.boots += 1;
        self.sim = if power_cut {
            let disk = self.sim.crash();
            self.db = None;
            common::reboot(disk, self.boots)
        } else {
            let kernel = self.sim.kill();
            self.db = None;
            Arc::new(SimIo::after_kill(kernel, SimConfig::seeded(self.boots)))
        };
        self.open();
    }

    /// A clean close on the disk as it is (failing or not), then a power
    /// cut, and the next process opens the database on a disk that no
    /// longer fails: a close that returned `Ok` made everything durable
    /// and the open is clean. A poisoned database refuses to close
    /// cleanly.
    fn close_then_power_cut(&mut self) {
        let db = self.db.take().unwrap();
        let poisoned = db.is_poisoned();
        let closed = db.close();
        match &closed {
            Ok(()) => assert!(!poisoned, "a poisoned database closed cleanly"),
            Err(e) => assert_eq!(e.class(), keel::ErrorClass::Fatal, "close: {e}"),
        }
        self.die(true);
        if closed.is_ok() {
            assert!(
                self.db().recovery_report().clean_shutdown,
                "a clean close was not clean after a power cut"
            );
        }
    }

    /// A clean close and reopen.
    fn reopen(&mut self, rels: &Relations) {
        self.db.take().unwrap().close().unwrap();
        self.open();
        assert!(self.db().recovery_report().clean_shutdown);
        check_all(self.db(), rels);
    }
}

/// The model: each live relation's name, id and committed tuples.
type Relations = BTreeMap<String, (RelationId, BTreeMap<TupleId, Vec<u8>>)>;

/// The catalog lists exactly the model's relations, under the same ids,
/// and each holds exactly its committed tuples.
fn check_all(db: &Database, rels: &Relations) {
    let listed: BTreeMap<String, RelationId> =
        db.relations().into_iter().map(|r| (r.name, r.id)).collect();
    let want: BTreeMap<String, RelationId> =
        rels.iter().map(|(n, (id, _))| (n.clone(), *id)).collect();
    assert_eq!(listed, want, "the catalog lists the model's relations");
    let tx = db.begin().unwrap();
    for (rel, model) in rels.values() {
        check_scan(&tx, *rel, model);
    }
}

/// How many transactions ran on a failing disk, and how many of them saw
/// it fail (the database poisoned).
#[derive(Debug, Default)]
struct Tally {
    failing: usize,
    failed: usize,
}

/// Every tuple of relation `rel`, read in a transaction of its own.
fn relation_now(db: &Database, rel: RelationId) -> BTreeMap<TupleId, Vec<u8>> {
    let tx = db.begin().unwrap();
    tx.scan(rel).unwrap().collect::<keel::Result<_>>().unwrap()
}

fn run(steps: &[Step], frames: usize) -> Tally {
    let mut tally = Tally::default();
    let mut m = Machine {
        sim: Arc::new(SimIo::new(SimConfig::seeded(1))),
        frames,
        db: None,
        boots: 1,
    };
    m.open();
    let mut rels = Relations::new();
    let first = m.db().create_relation("r0").unwrap();
    rels.insert("r0".into(), (first, BTreeMap::new()));
    let (mut seed, mut next_name) = (0, 1);
    let mut dropped: Vec<RelationId> = Vec::new();
    for step in steps {
        match step {
            Step::Create(crash) => {
                let name = format!("r{next_name}");
                next_name += 1;
                let id = m.db().create_relation(&name).unwrap();
                assert!(!dropped.contains(&id), "{id:?} reused after its drop");
                rels.insert(name, (id, BTreeMap::new()));
                if *crash {
                    m.crash_reopen(&rels);
                }
            }
            Step::Drop(i, crash) => {
                let Some(name) = rels.keys().nth(i % rels.len().max(1)).cloned() else {
                    continue;
                };
                let (id, _) = rels.remove(&name).unwrap();
                m.db().drop_relation(&name).unwrap();
                dropped.push(id);
                assert_eq!(m.db().relation(&name).unwrap(), None);
                let tx = m.db().begin().unwrap();
                assert!(tx.scan(id).is_err(), "a dropped relation's id is refused");
                drop(tx);
                if *crash {
                    m.crash_reopen(&rels);
                }
            }
            Step::Txn(plan) => {
                let Some(name) = rels.keys().nth(plan.rel % rels.len().max(1)).cloned() else {
                    continue;
                };
                let (rel, committed) = &rels[&name];
                let rel = *rel;
                let surplus = overflow_surplus(m.db(), &name, committed);
                let dead_before = common::dead_slots(m.db(), &name);
                let (after, outcome) = run_txn(&m, rel, committed, plan, &mut seed);
                match plan.end {
                    End::Commit | End::BadReads(_) => {
                        rels.insert(name.clone(), (rel, after));
                    }
                    End::Abort => check_all(m.db(), &rels),
                    End::Crash => m.crash_reopen(&rels),
                    End::DiskFailure(f) => {
                        tally.failing += 1;
                        tally.failed += usize::from(m.db().is_poisoned());
                        match f.death {
                            Death::Kill | Death::KillThenPowerCut => m.die(false),
                            Death::PowerCut => m.die(true),
                            Death::CloseThenPowerCut => m.close_then_power_cut(),
                        }
                        let found = relation_now(m.db(), rel);
                        let kept = match outcome {
                            Outcome::Acked => true,
                            Outcome::InCommit => found == after,
                            Outcome::NotCommitted => false,
                        };
                        if kept {
                            rels.insert(name.clone(), (rel, after));
                        }
                        check_all(m.db(), &rels);
                        if matches!(f.death, Death::KillThenPowerCut) {
                            m.die(true);
                            check_all(m.db(), &rels);
                        }
                    }
                }
                let want = rels.get(&name).map_or(0, |(_, r)| r.len());
                let tuples = common::tuple_slots(m.db(), &name);
                assert_eq!(
                    tuples, want,
                    "{:?}: {tuples} slots hold tuples for {want} values",
                    plan.end
                );
                let dead = common::dead_slots(m.db(), &name);
                assert!(
                    dead <= dead_before,
                    "{:?}: dead slots {dead_before} before, {dead} after",
                    plan.end
                );
                let now = overflow_surplus(m.db(), &name, &rels[&name].1);
                assert_eq!(now, surplus, "{:?}: overflow pages leaked", plan.end);
                if matches!(plan.end, End::Crash | End::DiskFailure(_)) {
                    continue;
                }
                if plan.reopen_after {
                    m.reopen(&rels);
                }
            }
        }
    }
    check_all(m.db(), &rels);
    m.db.take().unwrap().close().unwrap();
    tally
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("KEEL_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12),
        ..ProptestConfig::default()
    })]

    #[test]
    fn relations_behave_like_maps(
        steps in prop::collection::vec(step_strategy(), 1..12),
        frames in prop_oneof![Just(48usize), Just(6usize)],
    ) {
        run(&steps, frames);
    }
}

/// The failing disk fails most transactions it is put under: a handful of
/// generated cases, two transactions each (the first commits), the second
/// on a failing disk.
#[test]
fn failing_disks_fail() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut total = Tally::default();
    for case in 0..40 {
        let mut plan = || plan_strategy().new_tree(&mut runner).unwrap().current();
        let (mut first, mut second) = (plan(), plan());
        first.end = End::Commit;
        let f = failure_strategy().new_tree(&mut runner).unwrap().current();
        second.end = End::DiskFailure(f);
        let frames = if case % 2 == 0 { 48 } else { 6 };
        let t = run(&[Step::Txn(first), Step::Txn(second)], frames);
        total.failing += t.failing;
        total.failed += t.failed;
    }
    eprintln!("{total:?}");
    assert_eq!(total.failing, 40);
    assert!(
        total.failed * 3 >= total.failing * 2,
        "the disk failed under {} of {} transactions",
        total.failed,
        total.failing
    );
}
