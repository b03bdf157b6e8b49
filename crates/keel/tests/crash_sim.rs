#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Crash tests on the simulated disk: a power cut at a random I/O operation
//! during a transactional workload (inserts, bulk inserts, updates,
//! deletes, aborts, with checkpoints), then recovery, sometimes a
//! standby's redo-only apply first (`keel::standby`, itself cut by a power
//! cut half the time), and sometimes a second power cut during recovery
//! itself. After the final
//! recovery the relation holds exactly the acknowledged commits (plus, at
//! most, the one transaction whose commit was in flight), whatever
//! unsynced writes the cut dropped or tore.
//!
//! In one power-cut cycle in four the disk may fail first, as in the
//! two-stage test below (`common::disk_failure`).
//!
//! A third test crashes in two stages: a process kill (unsynced writes stay
//! in the page cache), a restart that recovers, then a power cut — after
//! more work, or during that recovery itself (invariant 14). In one cycle
//! in four of the former, a read fails (EIO) during the restart's
//! recovery: its open fails or recovers everything, and another restart
//! recovers what it left. In two of
//! three cycles the disk failed before the kill (`common::disk_failure`):
//! a sync of the log, the data files, the control file or a directory,
//! reporting EIO or a full disk, leaving what a file sync dropped from the
//! disk in the page cache, clean; or a write of the log or the data files,
//! with EIO or a full disk. The failure must poison the process: what the
//! workload reached before the kill is then refused (invariant 16).
//!
//! Every workload also puts, replaces and deletes keys of a tree and reads
//! them back with ranges in both directions (keys up to `MAX_KEY_LEN`
//! bytes, values inline and in overflow chains, enough keys to split
//! leaves and the root), so tree changes, their splits and their logical
//! undo run under every shape: after each recovery the tree holds exactly
//! the acknowledged keys and its walk is consistent (`common::tree`). One
//! transaction in ten is a long reader (`common::tree::long_tree_read`):
//! past the tree's read escalation, it reads its last ranges under the
//! tree lock, with no key locks, under the same cuts and failing disks.
//!
//! Every workload also creates and drops side relations (one committed row
//! each), so DDL runs under each shape: after each recovery a side relation
//! whose `create_relation` or `drop_relation` returned is there or gone as
//! that call said, one whose call the crash cut is either, and no file is
//! left that recovery could not place (invariant 13).
//!
//! The log runs both of its write paths under every shape: even seeds
//! write it with O_DIRECT, odd seeds on a file system that refuses
//! O_DIRECT, so it falls back to the page cache
//! (`common::crash_sim_config`).
//!
//! `KEEL_CRASH_CYCLES` sets the number of power-cut cycles (default 600,
//! split over two tests that run in parallel; each cycle is a fresh
//! simulated disk, seeded by its number, printed when it fails).
//! `KEEL_CRASH_SEED=<n>` runs cycle `n` alone, replaying a failure (the
//! buffer pool's background writer can change the interleaving, so a
//! replay is not always exact). `KEEL_CRASH_TWO_STAGE_CYCLES` (default
//! 200), `KEEL_CRASH_TWO_STAGE_FIRST` (the first seed) and
//! `KEEL_CRASH_TWO_STAGE_SEED` do the same for the two-stage test; the soak
//! runs 10,000 or more. The defaults keep the file near a
//! minute on a busy two-core machine.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel::{Config, Database, RelationId, TupleId};
use keel_io::sim::{Fault, FaultRule, Rng, SimIo};
use keel_io::{FileClass, OpKind};

mod common;

use common::side::Side;
use common::tree::{
    TreeModel, check_tree, long_tree_read, random_key, random_tree_op, read_tree, show,
};

/// Everything the workload wrote: every tuple of its heaps, every key of
/// its tree.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    tuples: BTreeMap<(RelationId, TupleId), Vec<u8>>,
    keys: TreeModel,
    /// Tree `loaded`: empty until a bulk load into it commits.
    loaded: TreeModel,
}

/// The relations of a workload: heaps, a tree of random changes and a
/// tree filled by a bulk load (`load_tree`).
struct Rels {
    heaps: Vec<RelationId>,
    tree: RelationId,
    loaded: RelationId,
}

impl Rels {
    fn create(db: &Database, heaps: usize) -> Rels {
        Rels {
            heaps: (0..heaps)
                .map(|i| db.create_relation(&format!("t{i}")).unwrap())
                .collect(),
            tree: db.create_tree("keys").unwrap(),
            loaded: db.create_tree("loaded").unwrap(),
        }
    }
}

/// The engine under test; redo consistency checking only when `check`
/// (it logs a page image per change, which doubles the test's time when on
/// for every cycle).
fn config(check: bool) -> Config {
    Config {
        consistency_check: check,
        ..common::small_config(24)
    }
}

fn open(sim: &Arc<SimIo>, check: bool) -> keel::Result<Database> {
    common::open_sim(sim, config(check))
}

fn value(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(20) {
        0 => 3000 + rng.below(20_000) as usize,
        1..=4 => 600 + rng.below(1500) as usize,
        _ => rng.below(200) as usize,
    };
    let b = rng.next_u64() as u8;
    (0..len).map(|i| b.wrapping_add(i as u8)).collect()
}

/// How a transaction failed: before its commit (it must leave no trace)
/// or in its commit (it may or may not have become durable).
enum Failed {
    Before,
    InCommit(Model),
}

/// One transaction of random changes to one of the heaps (its inserts;
/// its updates and deletes pick any tuple) and to the tree; the model it
/// leaves if it commits.
fn txn(db: &Database, rels: &Rels, model: &Model, rng: &mut Rng) -> Result<Model, Failed> {
    changes(db, rels, model, rng).map_err(|_| Failed::Before)?
}

fn changes(
    db: &Database,
    rels: &Rels,
    model: &Model,
    rng: &mut Rng,
) -> keel::Result<Result<Model, Failed>> {
    if model.loaded.is_empty() && rng.below(8) == 0 {
        return load_tree(db, rels, model, rng);
    }
    let mut after = model.clone();
    let long_read = rng.below(10) == 0;
    if long_read && rng.coin() {
        // A long reader: read-only, past the tree's read escalation.
        let tx = db.begin_read()?;
        long_tree_read(&tx, rels.tree, &model.keys, b"", rng)?;
        tx.commit()?;
        return Ok(Ok(after));
    }
    let mut tx = db.begin()?;
    if long_read {
        // As many reads in a transaction that then writes: it keeps to
        // key locks, and its writes below take no tree lock.
        long_tree_read(&tx, rels.tree, &model.keys, b"", rng)?;
    }
    let rel = match &rels.heaps[..] {
        [only] => *only,
        heaps => heaps[rng.below(heaps.len() as u64) as usize],
    };
    // Some transactions are long enough that evictions flush their
    // records before they end: the losers recovery has to undo.
    let n = if rng.below(5) == 0 {
        60
    } else {
        1 + rng.below(8)
    };
    for _ in 0..n {
        if rng.below(3) == 0 {
            random_tree_op(&mut tx, rels.tree, &mut after.keys, b"", rng, value)?;
            continue;
        }
        let after = &mut after.tuples;
        let mine = after.keys().filter(|k| k.0 == rel).count() as u64;
        let pick = (mine > 0).then(|| {
            *after
                .keys()
                .filter(|k| k.0 == rel)
                .nth(rng.below(mine) as usize)
                .unwrap()
        });
        match (rng.below(5), pick) {
            (0, Some((r, tid))) => {
                tx.delete(r, tid)?;
                after.remove(&(r, tid));
            }
            (1, Some((r, tid))) => {
                let v = value(rng);
                tx.update(r, tid, &v)?;
                after.insert((r, tid), v);
            }
            (4, _) => {
                // A bulk insert: one record per page it fills.
                let values: Vec<Vec<u8>> = (0..1 + rng.below(40)).map(|_| value(rng)).collect();
                let tids = tx.insert_many(rel, &values)?;
                after.extend(tids.into_iter().map(|t| (rel, t)).zip(values));
            }
            _ => {
                let v = value(rng);
                let tid = tx.insert(rel, &v)?;
                after.insert((rel, tid), v);
            }
        }
    }
    end_txn(tx, rng, model, after)
}

/// Ends `tx`: one in six rolled back (leaving `model`), the rest
/// committed (leaving `after`, or a commit that failed in flight).
fn end_txn(
    tx: keel::Transaction<'_>,
    rng: &mut Rng,
    model: &Model,
    after: Model,
) -> keel::Result<Result<Model, Failed>> {
    if rng.below(6) == 0 {
        tx.abort()?;
        return Ok(Ok(model.clone()));
    }
    Ok(match tx.commit() {
        Ok(()) => Ok(after),
        Err(_) => Err(Failed::InCommit(after)),
    })
}

/// A bulk load into the empty tree `loaded` (keys up to `MAX_KEY_LEN`,
/// values inline and in overflow chains), then puts in the same
/// transaction, often enough to split the root it loaded; committed, or
/// one in six rolled back, which must leave the tree empty and loadable
/// again, as recovery must when the crash comes first.
fn load_tree(
    db: &Database,
    rels: &Rels,
    model: &Model,
    rng: &mut Rng,
) -> keel::Result<Result<Model, Failed>> {
    let mut after = model.clone();
    let mut tx = db.begin()?;
    let items: TreeModel = (0..1 + rng.below(200))
        .map(|_| (random_key(b"", rng), value(rng)))
        .collect();
    let loaded = tx.bulk_load(rels.loaded, &items)?;
    assert_eq!(loaded, items.len() as u64, "keys loaded");
    after.loaded = items;
    for _ in 0..rng.below(150) {
        let (k, v) = (random_key(b"", rng), value(rng));
        tx.put(rels.loaded, &k, &v)?;
        after.loaded.insert(k, v);
    }
    end_txn(tx, rng, model, after)
}

fn scan(db: &Database, rels: &Rels) -> keel::Result<Model> {
    let tx = db.begin()?;
    let mut found = Model::default();
    for &rel in &rels.heaps {
        for row in tx.scan(rel)? {
            let (tid, v) = row?;
            found.tuples.insert((rel, tid), v);
        }
    }
    found.keys = read_tree(&tx, rels.tree)?;
    found.loaded = read_tree(&tx, rels.loaded)?;
    Ok(found)
}

/// `scan`, failing the test with the seed and the stage on an error; the
/// tree's walk is checked consistent with what the scan found.
fn scan_at(seed: u64, stage: &str, db: &Database, rels: &Rels) -> Model {
    let found =
        scan(db, rels).unwrap_or_else(|e| panic!("seed {seed} ({stage}): scan failed: {e}"));
    check_tree(db, rels.tree, &found.keys)
        .unwrap_or_else(|e| panic!("seed {seed} ({stage}): tree walk: {e}"));
    check_tree(db, rels.loaded, &found.loaded)
        .unwrap_or_else(|e| panic!("seed {seed} ({stage}): loaded tree walk: {e}"));
    found
}

/// Runs the workload from `start` (the relation's content) until the
/// crash; returns the acknowledged model and the model of a transaction
/// whose commit was in flight at the crash.
fn run_until_cut(
    db: &Database,
    rels: &Rels,
    start: Model,
    side: &mut Side,
    rng: &mut Rng,
) -> (Model, Option<Model>) {
    let mut acked = start;
    for i in 0u64.. {
        if i % 25 == 24 && db.checkpoint().is_err() {
            break;
        }
        if i % 10 == 5 && !side.step(db, rng) {
            break;
        }
        match txn(db, rels, &acked, rng) {
            Ok(m) => acked = m,
            Err(Failed::Before) => break,
            Err(Failed::InCommit(m)) => return (acked, Some(m)),
        }
    }
    (acked, None)
}

/// The seeds of half `half` (0 or 1) of the run.
fn seeds(half: u64) -> Vec<u64> {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = env("KEEL_CRASH_SEED") {
        return if half == 0 { vec![seed] } else { Vec::new() };
    }
    let cycles = env("KEEL_CRASH_CYCLES").unwrap_or(600);
    let mid = cycles / 2;
    if half == 0 {
        (0..mid).collect()
    } else {
        (mid..cycles).collect()
    }
}

#[test]
fn power_cuts_lose_no_acknowledged_commit_and_keep_nothing_else() {
    power_cuts(&seeds(0));
}

#[test]
fn power_cuts_lose_no_acknowledged_commit_and_keep_nothing_else_more_seeds() {
    power_cuts(&seeds(1));
}

fn power_cuts(seeds: &[u64]) {
    let cycles = seeds.len() as u64;
    if cycles == 0 {
        return;
    }
    let (mut with_commits, mut with_keys, mut redone, mut undone) = (0, 0, 0, 0);
    let mut compared = 0;
    let (mut ddl_ran, mut ddl_cut) = (0, 0);
    let (mut applies, mut disk_failures) = (0, 0);
    for &seed in seeds {
        // One cycle in four runs with redo consistency checking.
        let check = seed % 4 == 0;
        let mut rng = Rng::new(seed * 7919 + 1);
        let sim = Arc::new(SimIo::new(common::crash_sim_config(seed)));
        let db = open(&sim, check).unwrap();
        let rels = Rels::create(&db, 1);
        let cut = sim.op_count() + 50 + rng.below(4000);
        sim.add_fault(FaultRule::at_op(cut, Fault::PowerCut));
        // One cycle in four, the disk may fail before the cut
        // (`common::disk_failure`, drawn from a generator of its own so
        // that the other cycles run as they always did): the power then
        // fails on a poisoned process, whose failed sync left data only
        // in the page cache.
        let mut failing = Rng::new(seed * 6151 + 3);
        if failing.below(4) == 0 {
            for rule in common::disk_failure(&mut failing) {
                sim.add_fault(rule);
            }
            disk_failures += 1;
        }
        let mut side = Side::default();
        let (acked, in_flight) = run_until_cut(&db, &rels, Model::default(), &mut side, &mut rng);
        common::assert_poisoned_unless_halted(seed, &sim, &db);
        let disk = sim.crash();
        drop(db);

        let mut sim = Arc::new(SimIo::from_disk(
            disk,
            common::crash_sim_config(seed + 1000),
        ));
        if rng.below(3) == 0 {
            // The directory as a standby's: a redo-only apply (no undo, no
            // log, the control file moved to the newest checkpoint), cut by
            // a power cut half the time, before the open that promotes it.
            let cut_apply = rng.coin();
            if cut_apply {
                sim.add_fault(FaultRule::at_op(
                    sim.op_count() + 1 + rng.below(400),
                    Fault::PowerCut,
                ));
            }
            let dyn_sim: Arc<dyn keel_io::AsyncIo> = sim.clone();
            let applied = keel::standby::apply_log_with_io("/db", config(check), dyn_sim);
            if !cut_apply {
                applied.unwrap_or_else(|e| panic!("seed {seed} (redo-only apply): {e}"));
            }
            applies += 1;
            let disk = sim.crash();
            sim = Arc::new(SimIo::from_disk(
                disk,
                common::crash_sim_config(seed + 3000),
            ));
        }
        if rng.coin() {
            // A second power cut, during recovery.
            sim.add_fault(FaultRule::at_op(
                sim.op_count() + 1 + rng.below(400),
                Fault::PowerCut,
            ));
            if let Ok(db) = open(&sim, check) {
                drop(db);
            }
            let disk = sim.crash();
            sim = Arc::new(SimIo::from_disk(
                disk,
                common::crash_sim_config(seed + 2000),
            ));
        }
        let db = open(&sim, check).unwrap();
        ddl_cut += side.settle(seed, "power cut", &db);
        ddl_ran += u64::from(side.next > 0);
        let found = scan_at(seed, "power cut", &db, &rels);
        compared += db.recovery_report().consistency_checks;
        with_commits += u64::from(acked != Model::default());
        with_keys += u64::from(!acked.keys.is_empty());
        redone += u64::from(db.recovery_report().records_redone > 0);
        undone += u64::from(db.recovery_report().txns_undone > 0);
        expect(seed, "power cut", &db, &found, &acked, &in_flight);
        db.close().unwrap();
    }
    // Only over many cycles (not a single replayed seed):
    if cycles >= 20 {
        // The cuts must land inside real work, not before it starts.
        assert!(
            with_commits * 2 >= cycles,
            "{with_commits} of {cycles} cycles committed anything"
        );
        assert!(
            with_keys * 2 >= cycles,
            "{with_keys} of {cycles} cycles committed tree keys"
        );
        assert!(
            redone * 2 >= cycles,
            "recovery redid records in only {redone} of {cycles} cycles"
        );
        assert!(
            undone * 10 >= cycles,
            "recovery undid losers in only {undone} of {cycles} cycles"
        );
        // Recovery compared pages with their run-time images (all equal, or
        // it would have failed), not only skipped the check records.
        assert!(compared > 0, "no page compared in {cycles} cycles");
        assert!(
            applies * 5 >= cycles,
            "only {applies} of {cycles} cycles applied redo-only first"
        );
        assert!(
            ddl_ran * 2 >= cycles,
            "relations were created in only {ddl_ran} of {cycles} cycles"
        );
    }
    eprintln!(
        "{cycles} cycles: {with_commits} with commits ({with_keys} with tree keys), {redone} redid, {undone} undid, \
         {compared} pages compared, DDL in {ddl_ran} ({ddl_cut} cut mid-DDL), {applies} redo-only applies first, \
         {disk_failures} with a failing disk"
    );
}

/// The seeds of the two-stage test: `KEEL_CRASH_TWO_STAGE_CYCLES` (default
/// 200) of them from `KEEL_CRASH_TWO_STAGE_FIRST` (default 0, to split a
/// soak over processes), or `KEEL_CRASH_TWO_STAGE_SEED=<n>` alone.
fn two_stage_seeds() -> Vec<u64> {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = env("KEEL_CRASH_TWO_STAGE_SEED") {
        return vec![seed];
    }
    let first = env("KEEL_CRASH_TWO_STAGE_FIRST").unwrap_or(0);
    (first..first + env("KEEL_CRASH_TWO_STAGE_CYCLES").unwrap_or(200)).collect()
}

/// Fails the test unless `found` is exactly the acknowledged model, or that
/// plus the one transaction whose commit was in flight.
/// After a recovery at `stage`: the side relations settle, and the
/// tuples are the acknowledged model, or it plus the in-flight commit;
/// returns what was found.
fn recovered(
    seed: u64,
    stage: &str,
    db: &Database,
    rels: &Rels,
    side: &mut Side,
    acked: &Model,
    in_flight: &Option<Model>,
) -> Model {
    side.settle(seed, stage, db);
    let found = scan_at(seed, stage, db, rels);
    expect(seed, stage, db, &found, acked, in_flight);
    found
}

fn expect(
    seed: u64,
    stage: &str,
    db: &Database,
    found: &Model,
    acked: &Model,
    in_flight: &Option<Model>,
) {
    if found == acked || in_flight.as_ref() == Some(found) {
        return;
    }
    let (a, f) = (&acked.tuples, &found.tuples);
    let lost: Vec<_> = a.keys().filter(|t| f.get(t) != a.get(t)).collect();
    let extra: Vec<_> = f.keys().filter(|t| !a.contains_key(t)).collect();
    let (a, f) = (&acked.keys, &found.keys);
    let lost_keys: Vec<_> = a
        .keys()
        .filter(|k| f.get(*k) != a.get(*k))
        .map(|k| show(k))
        .collect();
    let extra_keys: Vec<_> = f
        .keys()
        .filter(|k| !a.contains_key(*k))
        .map(|k| show(k))
        .collect();
    panic!(
        "seed {seed} ({stage}): lost or changed {lost:?}, phantom {extra:?}; tree keys lost \
         or changed {lost_keys:?}, phantom {extra_keys:?} (in-flight commit: {}); recovery {:?}",
        in_flight.is_some(),
        db.recovery_report()
    );
}

/// Kill, restart, power cut: the workload's process is killed at a random
/// I/O operation (its unsynced writes stay in the kernel's page cache); the
/// next process recovers on what the dead one left — and either runs more
/// of the workload until a power cut, or loses power during that recovery
/// itself. After the final recovery, every acknowledged commit (of either
/// process) is there and nothing else: no unacknowledged or aborted
/// transaction, none half applied (invariant 14).
#[test]
fn kill_restart_then_power_cut_loses_no_acknowledged_commit() {
    let seeds = two_stage_seeds();
    let (mut during_recovery, mut after_more_work, mut committed_twice) = (0u64, 0u64, 0u64);
    for (i, &seed) in seeds.iter().enumerate() {
        match two_stage(seed) {
            TwoStage::CutDuringRecovery => during_recovery += 1,
            TwoStage::CutAfterMoreWork { committed_after } => {
                after_more_work += 1;
                committed_twice += u64::from(committed_after);
            }
        }
        if (i + 1) % 500 == 0 {
            // Progress of a long soak (shown with --nocapture).
            eprintln!("two-stage: {} seeds passed, up to seed {seed}", i + 1);
        }
    }
    let n = seeds.len() as u64;
    if n >= 20 {
        assert!(
            during_recovery * 5 >= n,
            "{during_recovery} of {n} cut during recovery"
        );
        assert!(
            after_more_work * 2 >= n,
            "{after_more_work} of {n} cut after more work"
        );
        assert!(
            committed_twice * 4 >= after_more_work,
            "the restarted process committed in only {committed_twice} of {after_more_work}"
        );
    }
    eprintln!(
        "{n} two-stage cycles: {during_recovery} cut during recovery, {after_more_work} after \
         more work ({committed_twice} of them with new commits)"
    );
}

enum TwoStage {
    CutDuringRecovery,
    CutAfterMoreWork { committed_after: bool },
}

fn two_stage(seed: u64) -> TwoStage {
    let check = seed.is_multiple_of(4);
    let mut rng = Rng::new(seed * 104_729 + 5);
    let sim = Arc::new(SimIo::new(common::crash_sim_config(seed)));
    let db = open(&sim, check).unwrap();
    // Several relations, each transaction changing one: a restart's redo
    // then often leaves some relation's file unwritten (and unsynced).
    let rels = &Rels::create(&db, 4);
    let kill = sim.op_count() + 50 + rng.below(4000);
    sim.add_fault(FaultRule::at_op(kill, Fault::Kill));
    // In some cycles the first process's disk fails first
    // (`common::disk_failure`): a sync that drops what it was to make
    // durable while the page cache keeps it, clean (Linux after a writeback
    // error), or a write that fails with EIO or a full disk. The process is
    // poisoned; the kill then leaves the next process a log or a data file
    // whose newest writes read back yet were never durable.
    for rule in common::disk_failure(&mut rng) {
        sim.add_fault(rule);
    }
    let mut side = Side::default();
    let (acked, in_flight) = run_until_cut(&db, rels, Model::default(), &mut side, &mut rng);
    common::assert_poisoned_unless_halted(seed, &sim, &db);
    let kernel = sim.kill();
    drop(db);

    let sim = Arc::new(SimIo::after_kill(
        kernel,
        common::crash_sim_config(seed + 1000),
    ));
    if rng.below(3) == 0 {
        // The power fails while the restarted process recovers.
        sim.add_fault(FaultRule::at_op(1 + rng.below(600), Fault::PowerCut));
        if let Ok(db) = open(&sim, check) {
            drop(db);
        }
        let sim = Arc::new(SimIo::from_disk(
            sim.crash(),
            common::crash_sim_config(seed + 2000),
        ));
        let db =
            open(&sim, check).unwrap_or_else(|e| panic!("seed {seed} (cut during recovery): {e}"));
        let stage = "cut during recovery";
        recovered(seed, stage, &db, rels, &mut side, &acked, &in_flight);
        db.close().unwrap();
        return TwoStage::CutDuringRecovery;
    }
    let mut sim = sim;
    if rng.below(4) == 0 {
        // A read fails while the restarted process recovers: its open
        // fails, or recovers every acknowledged commit; then that process
        // dies too and the next one recovers what it left.
        let fault = if rng.coin() {
            let at = sim.op_count() + 1 + rng.below(400);
            FaultRule::at_op(at, Fault::Eio).on_op(OpKind::Read)
        } else {
            // Reads of the log: one of them fails, most likely a segment's.
            FaultRule::with_probability(0.3, Fault::Eio)
                .on_class(FileClass::Wal)
                .on_op(OpKind::Read)
        };
        sim.add_fault(fault);
        if let Ok(db) = open(&sim, check) {
            sim.clear_faults();
            let stage = "read error during recovery";
            recovered(seed, stage, &db, rels, &mut side, &acked, &in_flight);
            drop(db);
        }
        sim = Arc::new(SimIo::after_kill(
            sim.kill(),
            common::crash_sim_config(seed + 3000),
        ));
    }
    let db = open(&sim, check).unwrap_or_else(|e| panic!("seed {seed} (after the kill): {e}"));
    let after_kill = recovered(
        seed,
        "after the kill",
        &db,
        rels,
        &mut side,
        &acked,
        &in_flight,
    );
    let cut = sim.op_count() + 1 + rng.below(3000);
    sim.add_fault(FaultRule::at_op(cut, Fault::PowerCut));
    let (acked2, in_flight2) = run_until_cut(&db, rels, after_kill.clone(), &mut side, &mut rng);
    let committed_after = acked2 != after_kill;
    let disk = sim.crash();
    drop(db);
    let sim = Arc::new(SimIo::from_disk(
        disk,
        common::crash_sim_config(seed + 2000),
    ));
    let db = open(&sim, check)
        .unwrap_or_else(|e| panic!("seed {seed} (power cut after the restart): {e}"));
    let stage = "power cut after the restart";
    recovered(seed, stage, &db, rels, &mut side, &acked2, &in_flight2);
    db.close().unwrap();
    TwoStage::CutAfterMoreWork { committed_after }
}
