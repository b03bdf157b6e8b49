#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The memory a transaction holds for its rollback does not grow with the
//! size of the values it writes: an insert or update of a 64 MiB value
//! (an overflow chain of thousands of pages) and a delete of one keep a
//! few bytes per change, not a copy of the value. Rollback, recovery's
//! undo of a loser and recovery after a crash in the middle of a rollback
//! all restore the values exactly.
//!
//! The 64 MiB case runs on a real directory (the simulated disk would keep
//! every byte written in memory several times over); the crash cases run on
//! the simulator with smaller values, which still make chains of hundreds
//! or thousands of pages.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel::{Database, RelationId, TupleId};
use keel_io::sim::{Fault, FaultRule, SimConfig, SimDisk, SimIo};

mod common;

type Model = BTreeMap<TupleId, Vec<u8>>;

/// The large value's size.
const BIG_BYTES: usize = 64 << 20;

/// The large value's size where recovery undoes a loser (1,000-page
/// chains).
const RECOVERY_BIG_BYTES: usize = 8 << 20;

/// The large value's size where a test crashes several times (chains of
/// 500 pages: a cut lands inside the rollback of one).
const CRASH_BIG_BYTES: usize = 4 << 20;

/// What a transaction may hold after a few changes of large values: a
/// few dozen bytes per change plus, at most, one page-sized before-image.
const HELD_BOUND_BYTES: usize = 16 << 10;

/// A value of `len` bytes whose every overflow chunk differs from every
/// other (a chunk restored to the wrong place shows).
fn value(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed << 28).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// The engine on the simulated disk, with redo consistency checking.
fn open(sim: &Arc<SimIo>) -> Database {
    common::open_sim(sim, common::small_config(256)).unwrap()
}

fn scan(db: &Database, rel: RelationId) -> Model {
    let tx = db.begin().unwrap();
    tx.scan(rel).unwrap().map(|r| r.unwrap()).collect()
}

/// Compares without printing 64 MiB values on a mismatch.
fn assert_same(found: &Model, want: &Model, what: &str) {
    let summary =
        |m: &Model| -> Vec<(TupleId, usize)> { m.iter().map(|(t, v)| (*t, v.len())).collect() };
    assert!(
        found == want,
        "{what}: found {:?}, want {:?} (tuple, length)",
        summary(found),
        summary(want)
    );
}

/// A database with three committed tuples (two of `big` bytes, one small).
fn setup(db: &Database, big: usize) -> (RelationId, Model) {
    let rel = db.create_relation("big").unwrap();
    let mut model = Model::new();
    let mut tx = db.begin().unwrap();
    for (seed, len) in [(1, big), (2, big), (3, 100)] {
        let v = value(seed, len);
        model.insert(tx.insert(rel, &v).unwrap(), v);
    }
    tx.commit().unwrap();
    (rel, model)
}

/// Inserts, updates and deletes values of `big` bytes in `tx`, checking
/// after each change what the transaction holds.
fn large_changes(tx: &mut keel::Transaction<'_>, rel: RelationId, model: &Model, big: usize) {
    let tids: Vec<TupleId> = model.keys().copied().collect();
    let held = |tx: &keel::Transaction<'_>, what: &str| {
        let n = tx.undo_bytes();
        assert!(
            n <= HELD_BOUND_BYTES,
            "after {what} ({big} bytes) the transaction holds {n} bytes for undo \
             (bound {HELD_BOUND_BYTES})"
        );
    };
    tx.insert(rel, &value(4, big)).unwrap();
    held(tx, "an insert of a large value");
    tx.update(rel, tids[0], &value(5, big)).unwrap();
    held(tx, "an update of a large value to another");
    tx.delete(rel, tids[1]).unwrap();
    held(tx, "a delete of a large value");
    tx.update(rel, tids[2], &value(6, big)).unwrap();
    held(tx, "an update of a small value to a large one");
}

#[test]
fn large_changes_hold_little_memory_and_abort_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), keel::Config::default()).unwrap();
    let (rel, model) = setup(&db, BIG_BYTES);
    let mut tx = db.begin().unwrap();
    large_changes(&mut tx, rel, &model, BIG_BYTES);
    tx.abort().unwrap();
    assert_same(&scan(&db, rel), &model, "after abort");
    db.close().unwrap();
}

#[test]
fn recovery_undoes_a_loser_with_large_changes_exactly() {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(2)));
    let db = open(&sim);
    let (rel, mut model) = setup(&db, RECOVERY_BIG_BYTES);
    let mut tx = db.begin().unwrap();
    large_changes(&mut tx, rel, &model, RECOVERY_BIG_BYTES);
    // A later commit makes the loser's records durable too.
    let mut other = db.begin().unwrap();
    let v = value(7, 10);
    model.insert(other.insert(rel, &v).unwrap(), v);
    other.commit().unwrap();
    let disk = sim.crash();
    drop(tx);
    drop(db);
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(3)));
    let db = open(&sim);
    assert_eq!(db.recovery_report().txns_undone, 1);
    assert_same(&scan(&db, rel), &model, "after recovery");
    db.close().unwrap();
}

/// Aborts `tx` with a power cut `ops` I/Os later: whether the cut landed
/// inside the abort, and the disk it left.
fn abort_under_a_cut(sim: &SimIo, tx: keel::Transaction<'_>, ops: u64) -> (bool, SimDisk) {
    sim.add_fault(FaultRule::at_op(sim.op_count() + ops, Fault::PowerCut));
    let cut = tx.abort().is_err();
    (cut, sim.crash())
}

/// Opens `disk` with a power cut `cut_after` I/Os into its recovery (a
/// second cut, which that recovery's rollback must survive: invariant 8,
/// nothing is undone twice), then opens what the cut left: the database,
/// and the records both recoveries undid. `seeds` seed the two
/// simulators.
fn recover_through_a_cut(disk: SimDisk, seeds: (u64, u64), cut_after: u64) -> (Database, u64) {
    let mut undone = 0;
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(seeds.0)));
    sim.add_fault(FaultRule::at_op(
        sim.op_count() + cut_after,
        Fault::PowerCut,
    ));
    if let Ok(db) = common::open_sim(&sim, common::small_config(256)) {
        undone += db.recovery_report().records_undone;
        drop(db);
    }
    let sim = Arc::new(SimIo::from_disk(sim.crash(), SimConfig::seeded(seeds.1)));
    let db = open(&sim);
    undone += db.recovery_report().records_undone;
    (db, undone)
}

#[test]
fn a_crash_during_the_rollback_of_large_changes_is_finished_by_recovery() {
    let mut cut_in_abort = 0;
    for (i, ops) in [3u64, 60, 400, 2500].into_iter().enumerate() {
        let sim = Arc::new(SimIo::new(SimConfig::seeded(10 + i as u64)));
        let db = open(&sim);
        let (rel, model) = setup(&db, CRASH_BIG_BYTES);
        let mut tx = db.begin().unwrap();
        large_changes(&mut tx, rel, &model, CRASH_BIG_BYTES);
        let (cut, disk) = abort_under_a_cut(&sim, tx, ops);
        drop(db);
        let seeds = (20 + i as u64, 30 + i as u64);
        let (db, undone_after_cut) = recover_through_a_cut(disk, seeds, 50 * ops);
        assert_same(
            &scan(&db, rel),
            &model,
            &format!("cut {ops} ops into abort"),
        );
        db.close().unwrap();
        cut_in_abort += u32::from(cut && undone_after_cut > 0);
    }
    assert!(
        cut_in_abort > 0,
        "no power cut landed inside a rollback that recovery then finished"
    );
}

/// Tree inserts in the undo's test: keys of the kv suite's size.
const TREE_KEY_BYTES: usize = 24;

fn tree_key(txn: u8, i: u32) -> Vec<u8> {
    let mut k = vec![txn; TREE_KEY_BYTES];
    k[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
    k
}

fn tree_contents(db: &Database, tree: RelationId) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let tx = db.begin().unwrap();
    let all = tx.range(tree, ..).unwrap().map(|kv| kv.unwrap()).collect();
    tx.commit().unwrap();
    all
}

/// A database on `sim` with tree "t" holding `keys` committed keys, and
/// what it holds.
fn committed_tree(
    sim: &Arc<SimIo>,
    keys: u32,
) -> (Database, RelationId, BTreeMap<Vec<u8>, Vec<u8>>) {
    let db = open(sim);
    let tree = db.create_tree("t").unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..keys {
        tx.put(tree, &tree_key(0, i), b"committed").unwrap();
    }
    tx.commit().unwrap();
    let model = tree_contents(&db, tree);
    (db, tree, model)
}

/// A tree insert keeps only its key for its rollback: a transaction of
/// thousands of puts holds an entry and a key per put (and its vectors'
/// spare capacity), not a boxed record each. Two such
/// transactions, their puts interleaved, are rolled back exactly: one by
/// abort, and both as losers of a crash (each loser's keys kept apart).
#[test]
fn tree_inserts_hold_their_keys_only_and_are_undone_exactly() {
    const PUTS: u32 = 4_000;
    const ENTRY_BYTES: usize = 40;
    let sim = Arc::new(SimIo::new(SimConfig::seeded(41)));
    let (db, tree, model) = committed_tree(&sim, 200);

    let mut a = db.begin().unwrap();
    let before = a.undo_bytes();
    for i in 0..PUTS {
        a.put(tree, &tree_key(1, i), &[1; 150]).unwrap();
    }
    let held = a.undo_bytes() - before;
    // The undo stack's and the key arena's spare capacity: under half
    // their length at this count (4,096 entries, 128 KiB of arena).
    let bound = 3 * PUTS as usize * (ENTRY_BYTES + TREE_KEY_BYTES) / 2;
    assert!(
        held <= bound,
        "{PUTS} tree inserts hold {held} bytes for undo (bound {bound})"
    );
    a.abort().unwrap();
    assert_eq!(tree_contents(&db, tree), model, "after abort");

    // Two losers, on two trees (next-key locks would make one wait for
    // the other on a shared tree), their puts interleaved in the log.
    let second = db.create_tree("u").unwrap();
    let third = db.create_tree("w").unwrap();
    let (mut a, mut b) = (db.begin().unwrap(), db.begin().unwrap());
    for i in 0..PUTS / 4 {
        a.put(tree, &tree_key(2, i), &[2; 150]).unwrap();
        b.put(second, &tree_key(3, i), &[3; 150]).unwrap();
    }
    // Replacing a committed key and deleting one add records of other
    // kinds between the inserts.
    a.put(tree, &tree_key(0, 1), b"replaced").unwrap();
    a.delete_key(tree, &tree_key(0, 2)).unwrap();
    b.put(second, &tree_key(3, PUTS), b"last").unwrap();
    // A later commit makes both losers' records durable.
    let mut other = db.begin().unwrap();
    other.put(third, &tree_key(4, 0), b"winner").unwrap();
    other.commit().unwrap();
    let disk = sim.crash();
    drop((a, b));
    drop(db);
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(42)));
    let db = open(&sim);
    assert_eq!(db.recovery_report().txns_undone, 2);
    assert_eq!(tree_contents(&db, tree), model, "first tree after recovery");
    assert!(
        tree_contents(&db, second).is_empty(),
        "second tree after recovery"
    );
    let winner = BTreeMap::from([(tree_key(4, 0), b"winner".to_vec())]);
    assert_eq!(tree_contents(&db, third), winner, "the winner's tree");
    db.close().unwrap();
}

/// A power cut in the middle of rolling back thousands of tree inserts
/// (some of their CLRs logged, the rest not), then a second cut during
/// the recovery that finishes the rollback: the last recovery undoes
/// exactly the inserts no CLR covers, reading their keys back from the
/// log into the loser's key arena, and the tree holds what was committed.
/// The latest cut lands after the abort returned, before its CLRs were
/// synced: recovery undoes the whole transaction again.
#[test]
fn a_crash_during_the_rollback_of_tree_inserts_is_finished_by_recovery() {
    const PUTS: u32 = 3_000;
    let mut cut_in_abort = 0;
    for (i, ops) in [2u64, 5, 12, 40].into_iter().enumerate() {
        let sim = Arc::new(SimIo::new(SimConfig::seeded(50 + i as u64)));
        let (db, tree, model) = committed_tree(&sim, 300);
        let mut tx = db.begin().unwrap();
        for k in 0..PUTS {
            tx.put(tree, &tree_key(1, k), &[1; 150]).unwrap();
        }
        // Replaces and deletes of committed keys among the inserts.
        tx.put(tree, &tree_key(0, 7), b"replaced").unwrap();
        tx.delete_key(tree, &tree_key(0, 8)).unwrap();
        tx.put(tree, &tree_key(1, PUTS), b"last").unwrap();
        let (cut, disk) = abort_under_a_cut(&sim, tx, ops);
        drop(db);
        let seeds = (60 + i as u64, 70 + i as u64);
        let (db, undone_after_cut) = recover_through_a_cut(disk, seeds, 20 * ops);
        assert_eq!(
            tree_contents(&db, tree),
            model,
            "cut {ops} ops into the abort"
        );
        db.close().unwrap();
        cut_in_abort += u32::from(cut && undone_after_cut > 0);
    }
    assert!(
        cut_in_abort > 0,
        "no power cut landed inside a tree rollback that recovery then finished"
    );
}

/// Log writes that fail (an I/O error, then a full disk) in the middle of
/// rolling back thousands of tree inserts: the abort fails as a rollback
/// error and poisons the database, and the database reopened after a
/// power cut holds exactly the committed keys (recovery finishes the
/// rollback from the keys it reads back from the log). The log buffer is
/// small, so the rollback's compensation records must be written while it
/// runs.
#[test]
fn a_failed_log_write_in_a_rollback_of_tree_inserts_poisons_and_recovery_finishes_it() {
    use keel::{DbError, Error};
    use keel_io::{FileClass, OpKind};
    const PUTS: u32 = 3_000;
    for (seed, fault) in [(80u64, Fault::Eio), (82, Fault::NoSpace)] {
        let sim = Arc::new(SimIo::new(SimConfig::seeded(seed)));
        let (db, tree, model) = committed_tree(&sim, 300);
        drop(db);
        let mut config = common::small_config(256);
        config.wal.buffer_capacity_bytes = config.wal.max_batch_bytes as usize;
        let db = common::open_sim(&sim, config).unwrap();
        let mut tx = db.begin().unwrap();
        for k in 0..PUTS {
            tx.put(tree, &tree_key(1, k), &[1; 150]).unwrap();
        }
        // The log's batches are durable writes.
        sim.add_fault(
            FaultRule::always(fault)
                .on_op(OpKind::DurableWrite)
                .on_class(FileClass::Wal),
        );
        let e = tx.abort().unwrap_err();
        let cause = common::poison_cause(&e, &format!("{fault:?}"));
        assert!(
            matches!(cause.error(), Error::Db(DbError::Rollback { .. })),
            "{fault:?}: expected a rollback error as the cause, got {cause}"
        );
        assert!(db.begin().is_err(), "{fault:?}: a failed rollback poisons");
        let disk = sim.crash();
        drop(db);
        let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(seed + 1)));
        let db = open(&sim);
        let report = db.recovery_report();
        assert_eq!(report.txns_undone, 1, "{fault:?}: the loser is rolled back");
        assert!(report.records_undone > 0, "{fault:?}: {report:?}");
        assert_eq!(tree_contents(&db, tree), model, "{fault:?}: after recovery");
        db.close().unwrap();
    }
}
