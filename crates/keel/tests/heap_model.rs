#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Relations checked against a `BTreeMap` model (proptest): inserts, bulk
//! inserts (`insert_many`, a page at a time, overflow values among them),
//! updates that grow, shrink and move tuples, deletes, gets and scans, in
//! transactions that commit, abort or are cut off by a crash, with clean
//! reopens and crash reopens in between. Tuples range from 0 bytes to
//! several MiB (overflow chains). Between transactions relations are
//! created and dropped (a dropped relation's id is refused, its name free),
//! sometimes with the process dying right after the DDL returned; after
//! every reopen the catalog lists exactly the model's relations.

use std::collections::BTreeMap;
use std::path::Path;

use keel::buffer::BufferConfig;
use keel::{Config, Database, RelationId, TupleId};
use proptest::prelude::*;

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
        prop_oneof![6 => Just(End::Commit), 2 => Just(End::Abort), 1 => Just(End::Crash)],
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

fn config() -> Config {
    let mut c = Config {
        buffer: BufferConfig::with_frames(48),
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

/// Runs one transaction; returns the model as the transaction left it.
fn run_txn(
    db: &Database,
    rel: RelationId,
    committed: &BTreeMap<TupleId, Vec<u8>>,
    plan: &TxnPlan,
    seed: &mut usize,
) -> BTreeMap<TupleId, Vec<u8>> {
    let mut model = committed.clone();
    let mut tx = db.begin().unwrap();
    for op in &plan.ops {
        *seed += 1;
        match *op {
            Op::Insert(len) => {
                let v = fill(*seed, len);
                let tid = tx.insert(rel, &v).unwrap();
                assert!(model.insert(tid, v).is_none(), "{tid} handed out twice");
            }
            Op::InsertMany(ref lens) => {
                let values: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(k, &len)| fill(*seed * 1000 + k, len))
                    .collect();
                let tids = tx.insert_many(rel, &values).unwrap();
                assert_eq!(tids.len(), values.len());
                for (tid, v) in tids.into_iter().zip(values) {
                    assert!(model.insert(tid, v).is_none(), "{tid} handed out twice");
                }
            }
            Op::Update(i, len) => {
                if let Some(tid) = pick(&model, i) {
                    let v = fill(*seed, len);
                    tx.update(rel, tid, &v).unwrap();
                    model.insert(tid, v);
                }
            }
            Op::Delete(i) => {
                if let Some(tid) = pick(&model, i) {
                    tx.delete(rel, tid).unwrap();
                    model.remove(&tid);
                    assert_eq!(tx.get(rel, tid).unwrap(), None);
                }
            }
            Op::Get(i) => {
                if let Some(tid) = pick(&model, i) {
                    assert_eq!(tx.get(rel, tid).unwrap().as_ref(), model.get(&tid));
                }
            }
            Op::Scan => check_scan(&tx, rel, &model),
        }
    }
    match plan.end {
        End::Commit => tx.commit().unwrap(),
        End::Abort => tx.abort().unwrap(),
        End::Crash => std::mem::forget(tx),
    }
    model
}

fn check_scan(tx: &keel::Transaction<'_>, rel: RelationId, model: &BTreeMap<TupleId, Vec<u8>>) {
    let rows: Vec<(TupleId, Vec<u8>)> = tx.scan(rel).unwrap().map(|r| r.unwrap()).collect();
    let keys: Vec<TupleId> = rows.iter().map(|(t, _)| *t).collect();
    let want: Vec<TupleId> = model.keys().copied().collect();
    assert_eq!(keys, want, "scan returns the model's TupleIds in order");
    for (tid, v) in rows {
        assert!(model.get(&tid) == Some(&v), "value of {tid} differs");
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

/// The process dies: nothing more is written; the reopen recovers.
fn crash_reopen(db: Database, dir: &Path, rels: &Relations) -> Database {
    drop(db);
    let db = Database::open(dir, config()).unwrap();
    check_all(&db, rels);
    db
}

fn run(dir: &Path, steps: &[Step]) {
    let mut db = Database::open(dir, config()).unwrap();
    let mut rels = Relations::new();
    let first = db.create_relation("r0").unwrap();
    rels.insert("r0".into(), (first, BTreeMap::new()));
    let (mut seed, mut next_name) = (0, 1);
    let mut dropped: Vec<RelationId> = Vec::new();
    for step in steps {
        match step {
            Step::Create(crash) => {
                let name = format!("r{next_name}");
                next_name += 1;
                let id = db.create_relation(&name).unwrap();
                assert!(!dropped.contains(&id), "{id:?} reused after its drop");
                rels.insert(name, (id, BTreeMap::new()));
                if *crash {
                    db = crash_reopen(db, dir, &rels);
                }
            }
            Step::Drop(i, crash) => {
                let Some(name) = rels.keys().nth(i % rels.len().max(1)).cloned() else {
                    continue;
                };
                let (id, _) = rels.remove(&name).unwrap();
                db.drop_relation(&name).unwrap();
                dropped.push(id);
                assert_eq!(db.relation(&name).unwrap(), None);
                let tx = db.begin().unwrap();
                assert!(tx.scan(id).is_err(), "a dropped relation's id is refused");
                drop(tx);
                if *crash {
                    db = crash_reopen(db, dir, &rels);
                }
            }
            Step::Txn(plan) => {
                let Some(name) = rels.keys().nth(plan.rel % rels.len().max(1)).cloned() else {
                    continue;
                };
                let (rel, committed) = &rels[&name];
                let (rel, after) = (*rel, run_txn(&db, *rel, committed, plan, &mut seed));
                match plan.end {
                    End::Commit => {
                        rels.insert(name, (rel, after));
                    }
                    End::Abort => check_all(&db, &rels),
                    End::Crash => {
                        db = crash_reopen(db, dir, &rels);
                        continue;
                    }
                }
                if plan.reopen_after {
                    db.close().unwrap();
                    db = Database::open(dir, config()).unwrap();
                    assert!(db.recovery_report().clean_shutdown);
                    check_all(&db, &rels);
                }
            }
        }
    }
    check_all(&db, &rels);
    db.close().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("KEEL_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12),
        ..ProptestConfig::default()
    })]

    #[test]
    fn relations_behave_like_maps(steps in prop::collection::vec(step_strategy(), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), &steps);
    }
}
