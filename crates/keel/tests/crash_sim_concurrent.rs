#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Power cuts on the simulated disk during a concurrent workload: several
//! threads each commit transactions on tuples of their own (inserts, bulk
//! inserts, updates that move tuples or make them overflow values, deletes,
//! aborts, long transactions whose records evictions flush), one of them
//! takes a checkpoint now and then, and the power is cut at a random I/O
//! operation (sometimes a second time, during recovery). After recovery each thread's
//! tuples are exactly its acknowledged commits, or those plus its one
//! transaction whose commit was in flight — all of it or none of it.
//! Meanwhile a DDL thread creates and drops side relations (with a row
//! each), so drops and creates race commits, checkpoints and evictions
//! under the cut; after recovery each side relation whose call returned
//! exists exactly as that call said, and no file is left unplaced.
//!
//! Each thread also puts, deletes and range-reads keys of its own (those
//! starting with its number) in one shared tree, so concurrent splits,
//! their logical undo and key-range locks run under the same cuts: after
//! recovery each thread's keys are its acknowledged ones (or those plus its
//! commit in flight) and the tree's walk is consistent. One transaction in
//! ten is a long reader of the thread's keys (`common::tree::long_tree_read`):
//! past the tree's read escalation, it reads its last ranges under the tree
//! lock whenever no other thread holds the tree.
//!
//! A second test crashes in two stages — a process kill, a restart, then a
//! power cut after more work or during the restart's recovery — with the
//! same checks after each recovery.
//!
//! Even seeds write the log with O_DIRECT, odd seeds on a file system that
//! refuses it, so the log falls back to the page cache
//! (`common::crash_sim_config`).
//!
//! `KEEL_CRASH_CONCURRENT_CYCLES` sets the number of cycles (default 120);
//! a failing cycle prints its seed (`KEEL_CRASH_CONCURRENT_SEED=<n>` runs
//! that one alone). The simulator serialises requests, but the interleaving
//! of the threads is the scheduler's, so a seed replays the same workload
//! and cut point, not necessarily the same interleaving. The two-stage test
//! has its own `KEEL_CRASH_CONCURRENT_TWO_STAGE_CYCLES` (default 100) and
//! `KEEL_CRASH_CONCURRENT_TWO_STAGE_SEED`. With `KEEL_CRASH_DUMP=<dir>`, a
//! two-stage cycle whose recovery fails writes the files it recovered
//! from under `<dir>`, for `keel inspect wal` and `keel check`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use keel::{Config, Database, RelationId, TupleId};
use keel_io::sim::{Fault, FaultRule, Rng, SimIo};

/// One thread's rows: its tuples and its keys of the tree.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    tuples: BTreeMap<TupleId, Vec<u8>>,
    keys: TreeModel,
}

/// The tree every thread puts its keys in.
const TREE: &str = "keys";

const THREADS: u8 = 4;

mod common;

use common::side::Side;
use common::tree::{TreeModel, check_tree, long_tree_read, random_tree_op, read_tree, show};

fn config() -> Config {
    common::small_config(24)
}

fn open(sim: &Arc<SimIo>) -> keel::Result<Database> {
    common::open_sim(sim, config())
}

/// A value tagged with its thread (first byte) and a per-thread serial, so
/// every tuple found after recovery can be attributed.
fn value(thread: u8, serial: &mut u32, rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(20) {
        0 => 3000 + rng.below(20_000) as usize,
        1..=4 => 600 + rng.below(1500) as usize,
        _ => rng.below(200) as usize,
    };
    *serial += 1;
    let mut v = vec![thread];
    v.extend_from_slice(&serial.to_le_bytes());
    let b = rng.next_u64() as u8;
    v.extend((0..len).map(|i| b.wrapping_add(i as u8)));
    v
}

enum Failed {
    /// Before its commit: it must leave no trace.
    Before,
    /// In its commit: durable wholly or not at all.
    InCommit(Model),
}

struct Worker {
    thread: u8,
    serial: u32,
    rng: Rng,
}

impl Worker {
    fn txn(&mut self, db: &Database, rel: RelationId, model: &Model) -> Result<Model, Failed> {
        self.changes(db, rel, model).map_err(|_| Failed::Before)?
    }

    fn changes(
        &mut self,
        db: &Database,
        rel: RelationId,
        model: &Model,
    ) -> keel::Result<Result<Model, Failed>> {
        let mut after = model.clone();
        let tree = db.tree(TREE)?.expect("the workload's tree");
        let long_read = self.rng.below(10) == 0;
        if long_read && self.rng.coin() {
            // A long reader of this thread's keys: read-only, past the
            // tree's read escalation (granted while no other thread holds
            // the tree).
            let tx = db.begin_read()?;
            long_tree_read(&tx, tree, &model.keys, &[self.thread], &mut self.rng)?;
            tx.commit()?;
            return Ok(Ok(after));
        }
        let mut tx = db.begin()?;
        if long_read {
            // As many reads in a transaction that then writes: it keeps to
            // key locks, so the other threads' writers, and two such
            // transactions, run beside it.
            long_tree_read(&tx, tree, &model.keys, &[self.thread], &mut self.rng)?;
        }
        let n = if self.rng.below(8) == 0 {
            40
        } else {
            1 + self.rng.below(6)
        };
        for _ in 0..n {
            if self.rng.below(3) == 0 {
                let (thread, serial) = (self.thread, &mut self.serial);
                let keys = &mut after.keys;
                random_tree_op(&mut tx, tree, keys, &[thread], &mut self.rng, |rng| {
                    value(thread, serial, rng)
                })?;
                continue;
            }
            let after = &mut after.tuples;
            let pick = (!after.is_empty()).then(|| {
                *after
                    .keys()
                    .nth(self.rng.below(after.len() as u64) as usize)
                    .unwrap()
            });
            match (self.rng.below(5), pick) {
                (0, Some(tid)) => {
                    tx.delete(rel, tid)?;
                    after.remove(&tid);
                }
                (1, Some(tid)) => {
                    let v = value(self.thread, &mut self.serial, &mut self.rng);
                    tx.update(rel, tid, &v)?;
                    after.insert(tid, v);
                }
                (4, _) => {
                    // A bulk insert, racing the other threads' for pages.
                    let n = 1 + self.rng.below(30);
                    let values: Vec<Vec<u8>> = (0..n)
                        .map(|_| value(self.thread, &mut self.serial, &mut self.rng))
                        .collect();
                    let tids = tx.insert_many(rel, &values)?;
                    after.extend(tids.into_iter().zip(values));
                }
                _ => {
                    let v = value(self.thread, &mut self.serial, &mut self.rng);
                    let tid = tx.insert(rel, &v)?;
                    after.insert(tid, v);
                }
            }
        }
        if self.rng.below(6) == 0 {
            tx.abort()?;
            return Ok(Ok(model.clone()));
        }
        Ok(match tx.commit() {
            Ok(()) => Ok(after),
            Err(_) => Err(Failed::InCommit(after)),
        })
    }

    /// Commits from `start` (its tuples' content) until the crash (or
    /// `max` transactions); returns the acknowledged model and the one
    /// whose commit was in flight.
    fn run(
        &mut self,
        db: &Database,
        rel: RelationId,
        start: Model,
        max: u32,
    ) -> (Model, Option<Model>) {
        let mut acked = start;
        for i in 0..max {
            if self.thread == 1 && i % 12 == 11 && db.checkpoint().is_err() {
                break;
            }
            match self.txn(db, rel, &acked) {
                Ok(m) => acked = m,
                Err(Failed::Before) => break,
                Err(Failed::InCommit(m)) => return (acked, Some(m)),
            }
        }
        (acked, None)
    }
}

/// Every tuple of `rels` and key of the tree, by the thread that wrote it
/// (first byte); the tree's walk is checked consistent.
fn scan_by_thread(
    seed: u64,
    stage: &str,
    db: &Database,
    rels: &[RelationId],
) -> BTreeMap<u8, Model> {
    let scan = || -> keel::Result<BTreeMap<u8, Model>> {
        let tx = db.begin()?;
        let mut by_thread: BTreeMap<u8, Model> = BTreeMap::new();
        for &rel in rels {
            for row in tx.scan(rel)? {
                let (tid, v) = row?;
                by_thread.entry(v[0]).or_default().tuples.insert(tid, v);
            }
        }
        let tree = db.tree(TREE)?.expect("the workload's tree");
        let keys = read_tree(&tx, tree)?;
        check_tree(db, tree, &keys)
            .unwrap_or_else(|e| panic!("seed {seed} ({stage}): tree walk: {e}"));
        for (k, v) in keys {
            by_thread.entry(k[0]).or_default().keys.insert(k, v);
        }
        Ok(by_thread)
    };
    scan().unwrap_or_else(|e| panic!("seed {seed} ({stage}): scan failed: {e}"))
}

/// Fails the test unless each thread's tuples are exactly its acknowledged
/// commits, or those plus its one commit in flight; returns them.
fn expect(
    seed: u64,
    stage: &str,
    db: &Database,
    rels: &[RelationId],
    outcomes: &[(Model, Option<Model>)],
) -> Vec<Model> {
    let mut by_thread = scan_by_thread(seed, stage, db, rels);
    let mut found = Vec::new();
    for (i, (acked, in_flight)) in outcomes.iter().enumerate() {
        let thread = i as u8 + 1;
        let mine = by_thread.remove(&thread).unwrap_or_default();
        if mine != *acked && in_flight.as_ref() != Some(&mine) {
            let (a, m) = (&acked.tuples, &mine.tuples);
            let lost: Vec<_> = a.keys().filter(|t| m.get(t) != a.get(t)).collect();
            let extra: Vec<_> = m.keys().filter(|t| !a.contains_key(t)).collect();
            let (a, m) = (&acked.keys, &mine.keys);
            let lost_keys: Vec<_> = a
                .keys()
                .filter(|k| m.get(*k) != a.get(*k))
                .map(|k| show(k))
                .collect();
            let extra_keys: Vec<_> = m
                .keys()
                .filter(|k| !a.contains_key(*k))
                .map(|k| show(k))
                .collect();
            panic!(
                "seed {seed} ({stage}): thread {thread}: lost or changed {lost:?}, phantom \
                 {extra:?}; tree keys lost or changed {lost_keys:?}, phantom {extra_keys:?} \
                 (in-flight commit: {}); recovery {:?}",
                in_flight.is_some(),
                db.recovery_report()
            );
        }
        found.push(mine);
    }
    assert!(
        by_thread.is_empty(),
        "seed {seed} ({stage}): tuples of no thread: {:?}",
        by_thread.keys().collect::<Vec<_>>()
    );
    found
}

/// Runs the workers from `starts` (one model per thread; thread `t` works
/// on `rels[(t - 1) % rels.len()]`) until the crash, and the DDL thread
/// on `side` until the crash or until the workers are done.
fn run_workers(
    db: &Database,
    rels: &[RelationId],
    starts: Vec<Model>,
    side: &mut Side,
    rng_base: u64,
    serial: u32,
) -> Vec<(Model, Option<Model>)> {
    let finished = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let finished = &finished;
        let handles: Vec<_> = (1..=THREADS)
            .zip(starts)
            .map(|(thread, start)| {
                let mut w = Worker {
                    thread,
                    serial,
                    rng: Rng::new(rng_base + u64::from(thread)),
                };
                let rel = rels[usize::from(thread - 1) % rels.len()];
                s.spawn(move || {
                    let out = w.run(db, rel, start, 150);
                    finished.fetch_add(1, Ordering::SeqCst);
                    out
                })
            })
            .collect();
        let mut rng = Rng::new(rng_base + 99);
        while finished.load(Ordering::SeqCst) < usize::from(THREADS) && side.step(db, &mut rng) {
            std::thread::sleep(Duration::from_millis(1));
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// What one cycle saw.
struct Cycle {
    committed: bool,
    undid: bool,
    /// Side relations created during the cycle.
    ddl: u32,
    /// Whether the cut fell inside a create or a drop.
    ddl_cut: bool,
}

/// One cycle.
fn cycle(seed: u64) -> Cycle {
    let mut rng = Rng::new(seed * 6151 + 3);
    let sim = Arc::new(SimIo::new(common::crash_sim_config(seed)));
    let db = open(&sim).unwrap();
    let rels = [db.create_relation("t").unwrap()];
    db.create_tree(TREE).unwrap();
    let cut = sim.op_count() + 50 + rng.below(3000);
    sim.add_fault(FaultRule::at_op(cut, Fault::PowerCut));
    let starts = vec![Model::default(); usize::from(THREADS)];
    let mut side = Side::default();
    let outcomes = run_workers(&db, &rels, starts, &mut side, seed * 1_000_003, 0);
    let disk = sim.crash();
    drop(db);

    let mut sim = Arc::new(SimIo::from_disk(
        disk,
        common::crash_sim_config(seed + 1000),
    ));
    if rng.coin() {
        sim.add_fault(FaultRule::at_op(1 + rng.below(400), Fault::PowerCut));
        if let Ok(db) = open(&sim) {
            drop(db);
        }
        let disk = sim.crash();
        sim = Arc::new(SimIo::from_disk(
            disk,
            common::crash_sim_config(seed + 2000),
        ));
    }
    let db = open(&sim).unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
    expect(seed, "power cut", &db, &rels, &outcomes);
    let ddl_cut = side.settle(seed, "power cut", &db) > 0;
    let undid = db.recovery_report().txns_undone > 0;
    db.close().unwrap();
    Cycle {
        committed: outcomes.iter().any(|(a, _)| *a != Model::default()),
        undid,
        ddl: side.next,
        ddl_cut,
    }
}

#[test]
fn concurrent_power_cuts_lose_no_acknowledged_commit_and_keep_nothing_else() {
    // A value that is not a number (an empty one) is no seed, as in
    // crash_sim.rs.
    let seed = std::env::var("KEEL_CRASH_CONCURRENT_SEED").ok();
    let seeds: Vec<u64> = match seed.and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => {
            let n = std::env::var("KEEL_CRASH_CONCURRENT_CYCLES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(120);
            (0..n).collect()
        }
    };
    let (mut committed, mut undid, mut ddl, mut ddl_cut) = (0, 0, 0, 0);
    for &seed in &seeds {
        let c = cycle(seed);
        committed += u64::from(c.committed);
        undid += u64::from(c.undid);
        ddl += u64::from(c.ddl > 0);
        ddl_cut += u64::from(c.ddl_cut);
    }
    let n = seeds.len() as u64;
    assert!(
        n < 20 || committed * 2 >= n,
        "{committed} of {n} cycles committed"
    );
    assert!(
        n < 20 || undid * 10 >= n,
        "recovery undid losers in only {undid} of {n} cycles"
    );
    assert!(
        n < 20 || ddl * 2 >= n,
        "side relations were created in only {ddl} of {n} cycles"
    );
    eprintln!(
        "{n} cycles: {committed} with commits, {undid} undid losers, {ddl} ran DDL, \
         {ddl_cut} with a create or drop the crash left unanswered"
    );
}

/// How a two-stage cycle ended.
enum TwoStage {
    CutDuringRecovery,
    CutAfterMoreWork,
}

/// Kill, restart, power cut, under the concurrent workload (each thread on
/// a relation of its own, so a restart's redo often leaves some files
/// unwritten): the process is killed at a random I/O operation (its
/// unsynced writes stay in the page cache; in half of the cycles a sync
/// failed before, dropping data the page cache keeps), the next one recovers and
/// either runs the workers again until a power cut or loses power during
/// that recovery. Every check of the single-crash test holds after the
/// kill's recovery and after the final one (invariant 14).
fn two_stage(seed: u64) -> TwoStage {
    let mut rng = Rng::new(seed * 7907 + 11);
    let sim = Arc::new(SimIo::new(common::crash_sim_config(seed)));
    let db = open(&sim).unwrap();
    let rels: Vec<RelationId> = (1..=THREADS)
        .map(|t| db.create_relation(&format!("t{t}")).unwrap())
        .collect();
    db.create_tree(TREE).unwrap();
    let kill = sim.op_count() + 50 + rng.below(3000);
    sim.add_fault(FaultRule::at_op(kill, Fault::Kill));
    // Sometimes the disk fails first: a sync, or a write with EIO or a
    // full disk (`common::disk_failure`).
    for rule in common::disk_failure(&mut rng) {
        sim.add_fault(rule);
    }
    let starts = vec![Model::default(); usize::from(THREADS)];
    let mut side = Side::default();
    let outcomes = run_workers(&db, &rels, starts, &mut side, seed * 1_000_003, 0);
    let kernel = sim.kill();
    let seen = kernel.visible();
    drop(db);

    let sim = Arc::new(SimIo::after_kill(
        kernel,
        common::crash_sim_config(seed + 1000),
    ));
    if rng.below(3) == 0 {
        sim.add_fault(FaultRule::at_op(1 + rng.below(600), Fault::PowerCut));
        if let Ok(db) = open(&sim) {
            drop(db);
        }
        let disk = sim.crash();
        let kept = disk.clone();
        let sim = Arc::new(SimIo::from_disk(
            disk,
            common::crash_sim_config(seed + 2000),
        ));
        let db = open(&sim).unwrap_or_else(|e| {
            common::dump_disk(&kept, &format!("seed-{seed}-cut-during-recovery"));
            panic!("seed {seed} (cut during recovery): recovery failed: {e}")
        });
        expect(seed, "cut during recovery", &db, &rels, &outcomes);
        side.settle(seed, "cut during recovery", &db);
        db.close().unwrap();
        return TwoStage::CutDuringRecovery;
    }
    let db = open(&sim).unwrap_or_else(|e| {
        common::dump_disk(&seen, &format!("seed-{seed}-after-the-kill"));
        panic!("seed {seed} (after the kill): recovery failed: {e}")
    });
    let recovered = expect(seed, "after the kill", &db, &rels, &outcomes);
    side.settle(seed, "after the kill", &db);
    let cut = sim.op_count() + 1 + rng.below(3000);
    sim.add_fault(FaultRule::at_op(cut, Fault::PowerCut));
    let outcomes = run_workers(
        &db,
        &rels,
        recovered,
        &mut side,
        seed * 1_000_003 + 100,
        1 << 20,
    );
    let disk = sim.crash();
    drop(db);
    let kept = disk.clone();
    let sim = Arc::new(SimIo::from_disk(
        disk,
        common::crash_sim_config(seed + 2000),
    ));
    let db = open(&sim).unwrap_or_else(|e| {
        common::dump_disk(&kept, &format!("seed-{seed}-power-cut-after-the-restart"));
        panic!("seed {seed} (power cut after the restart): recovery failed: {e}")
    });
    expect(seed, "power cut after the restart", &db, &rels, &outcomes);
    side.settle(seed, "power cut after the restart", &db);
    db.close().unwrap();
    TwoStage::CutAfterMoreWork
}

/// `KEEL_CRASH_CONCURRENT_TWO_STAGE_CYCLES` sets the number of cycles
/// (default 100); `KEEL_CRASH_CONCURRENT_TWO_STAGE_SEED=<n>` runs one.
#[test]
fn concurrent_kill_restart_then_power_cut_loses_no_acknowledged_commit() {
    // A value that is not a number (an empty one) is no seed, as in
    // crash_sim.rs.
    let seed = std::env::var("KEEL_CRASH_CONCURRENT_TWO_STAGE_SEED").ok();
    let seeds: Vec<u64> = match seed.and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => {
            let n = std::env::var("KEEL_CRASH_CONCURRENT_TWO_STAGE_CYCLES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            (0..n).collect()
        }
    };
    let (mut during_recovery, mut after_more_work) = (0u64, 0u64);
    for &seed in &seeds {
        match two_stage(seed) {
            TwoStage::CutDuringRecovery => during_recovery += 1,
            TwoStage::CutAfterMoreWork => after_more_work += 1,
        }
    }
    let n = seeds.len() as u64;
    assert!(
        n < 20 || (during_recovery * 5 >= n && after_more_work * 2 >= n),
        "{during_recovery} cut during recovery, {after_more_work} after more work, of {n}"
    );
    eprintln!(
        "{n} concurrent two-stage cycles: {during_recovery} cut during recovery, \
         {after_more_work} after more work"
    );
}
