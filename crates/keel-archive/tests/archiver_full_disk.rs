//! The archiver over a primary whose own disk fills up: the primary runs
//! on the simulated disk with its archiver, and for a stretch of commits
//! its writes fail with ENOSPC at random (log appends, segment
//! preparation, page writes of the background writer and checkpoints).
//! A failed log write or sync poisons the log (invariants 7 and 16), so
//! every later commit fails too; the archiver goes on reading the log
//! meanwhile. Then the disk has room again and the process ends: killed
//! in odd rounds (its unsynced writes stay in the kernel), losing power
//! in even ones. The primary is opened again, archives on, commits more
//! and is archived to its end. In the odd rounds the kill lands at a
//! random I/O of the commits, and the reopened primary first ships the log
//! the dead process left in the kernel, unsynced, and then loses power
//! itself before a last open (the kill-then-power-cut shape under the
//! archiver).
//!
//! After each round: the archive's one timeline verifies (LSN continuity
//! and every CRC), so the archiver never shipped log the full disk kept
//! from being written or synced; and a restore holds every acknowledged
//! row, and otherwise only rows whose commit returned an error.
//!
//! Default: 24 rounds (`KEEL_ARCHIVER_FULL_DISK_ROUNDS` for more), each
//! from its own seed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step fails the test

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use keel::{Database, RelationId};
use keel_archive::Archiver;
use keel_io::OpKind;
use keel_io::sim::{Fault, FaultRule, SimConfig, SimIo};

/// Commits rows `from..from + n`, one per transaction, whatever fails: the
/// acknowledged rows and the rows whose commit returned an error.
fn commit(db: &Database, rel: RelationId, from: usize, n: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut acked, mut failed) = (Vec::new(), Vec::new());
    for i in from..from + n {
        let v = value(i, 600);
        let done = db.begin().and_then(|mut tx| {
            tx.insert(rel, &v)?;
            tx.commit()
        });
        if done.is_ok() {
            acked.push(v);
        } else {
            failed.push(v);
        }
    }
    (acked, failed)
}

/// Opens the primary again; its relation.
fn reopen(sim: &Arc<SimIo>) -> (Arc<Database>, RelationId) {
    let db = open_sim_primary(sim);
    let rel = db.relation("r").unwrap().expect("the relation survives");
    (db, rel)
}

/// One round; whether the full disk made a commit fail.
fn round(seed: u64, root: &Path) -> bool {
    let (t, sim, db, rel, archiver) = archived_sim_primary(root, seed);
    let (mut acked, failed) = commit(&db, rel, 0, 20);
    assert!(failed.is_empty(), "seed {seed}: no fault was set yet");

    // The disk fills: a write or vectored write fails with ENOSPC now and
    // then (the rate varies by round, so some rounds fail early).
    let per_mille = 5 + seed % 4 * 15;
    for op in [OpKind::Write, OpKind::WriteV] {
        sim.add_fault(
            FaultRule::with_probability(per_mille as f64 / 1000.0, Fault::NoSpace).on_op(op),
        );
    }
    if !seed.is_multiple_of(2) {
        // The kill lands at a random I/O of these commits.
        let mut rng = keel_io::sim::Rng::new(seed);
        let at = sim.op_count() + 1 + rng.below(400);
        sim.add_fault(FaultRule::at_op(at, Fault::Kill));
    }
    let (more, mut unacked) = commit(&db, rel, 20, 300);
    acked.extend(more);
    let filled = seed.is_multiple_of(2) && !unacked.is_empty();
    // Room again; the archiver ships what it may, then the process ends.
    sim.clear_faults();
    let _ = archiver.stop();
    // The process ends before the database is closed (a close would sync).
    let sim = if !seed.is_multiple_of(2) {
        Arc::new(SimIo::after_kill(sim.kill(), SimConfig::seeded(seed + 1)))
    } else {
        Arc::new(SimIo::from_disk(sim.crash(), SimConfig::seeded(seed + 1)))
    };
    drop(db);

    let (mut db, mut rel) = reopen(&sim);
    if !seed.is_multiple_of(2) {
        // After the kill, the reopened primary ships the log the dead
        // process left, then loses power before it commits anything: its
        // open must have synced that log before the archiver could read it
        // (invariant 14).
        let archiver = Archiver::start(db.clone(), &t, fast()).unwrap();
        archiver
            .wait_archived(db.durable_lsn(), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("seed {seed}: archiving after the kill: {e}"));
        archiver.stop().unwrap();
        let disk = sim.crash();
        drop(db);
        (db, rel) = reopen(&Arc::new(SimIo::from_disk(
            disk,
            SimConfig::seeded(seed + 2),
        )));
    }
    let archiver = Archiver::start(db.clone(), &t, fast()).unwrap();
    let (after, failed) = commit(&db, rel, 1_000, 30);
    assert!(
        failed.is_empty(),
        "seed {seed}: a commit failed after the reopen"
    );
    acked.extend(after);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("seed {seed}: archiving after the reopen: {e}"));
    archiver.stop().unwrap();
    let id = db.database_id();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();

    let got = verify_and_restore(&t, root, seed, id, &format!("seed {seed}"));
    let want: BTreeSet<Vec<u8>> = acked.into_iter().collect();
    let lost = want.difference(&got).count();
    assert_eq!(
        lost, 0,
        "seed {seed}: {lost} acknowledged rows missing from the restore"
    );
    unacked.sort();
    let never = got
        .difference(&want)
        .filter(|v| unacked.binary_search(v).is_err())
        .count();
    assert_eq!(
        never, 0,
        "seed {seed}: the restore holds {never} rows never committed"
    );
    filled
}

#[test]
fn a_primary_whose_disk_fills_keeps_an_archive_that_restores_every_row() {
    let rounds = rounds_from_env("KEEL_ARCHIVER_FULL_DISK_ROUNDS", 24);
    let tmp = tempfile::tempdir().unwrap();
    let mut filled = 0;
    for seed in 1..=rounds {
        filled += u32::from(round(seed, tmp.path()));
    }
    assert!(
        rounds < 4 || filled > 0,
        "the disk never filled in {rounds} rounds"
    );
}
