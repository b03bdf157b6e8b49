//! The archiver over a primary whose own disk fails: the primary runs on
//! the simulated disk with its archiver, and for a stretch of commits its
//! I/O fails at random, by round (`seed % 3`):
//!
//! - the disk is full: writes fail with ENOSPC (log appends, segment
//!   preparation, page writes of the background writer and checkpoints),
//!   and so do syncs (a file system that allocates blocks at writeback
//!   meets the full disk there, dropping what it could not place);
//! - I/O errors: reads (the archiver's reads of the log included), writes
//!   and syncs fail with EIO;
//! - failed syncs that drop the dirty data (`Fault::SyncFailure`, the
//!   "fsyncgate" behaviour: a retried sync would succeed without making
//!   anything durable). After a kill, the next process reads the dropped
//!   log and pages from the page cache, where they stay clean; its open
//!   writes them again before trusting them (docs/storage.md "Unclean
//!   open", steps 5 and 6).
//!
//! A failed log write or sync poisons the log (invariants 7 and 16), so
//! every later commit fails too; the archiver goes on reading the log
//! meanwhile. Then the faults stop and the process ends: killed
//! in odd rounds (its unsynced writes stay in the kernel), losing power
//! in even ones. The primary is opened again, archives on, commits more
//! and is archived to its end. In the odd rounds the kill lands at a
//! random I/O of the commits, and the reopened primary first ships the log
//! the dead process left in the kernel, unsynced, and then loses power
//! itself before a last open (the kill-then-power-cut shape under the
//! archiver).
//!
//! As the disk starts failing, a base backup is taken too: it fails
//! (about one round in six, the database poisoned under it), or it is
//! whole, and the final restore then starts from it.
//!
//! After each round: the archive's one timeline verifies (LSN continuity
//! and every CRC), so the archiver never shipped log the failing disk kept
//! from being written or synced; and a restore holds every acknowledged
//! row, and otherwise only rows whose commit returned an error.
//!
//! Default: 24 rounds, every fault with both endings (`KEEL_ARCHIVER_DISK_FAULT_ROUNDS`
//! for more), each from its own seed.

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

/// The faults of round `seed` (module docs), at `per_mille` of the
/// operations they apply to.
fn disk_faults(seed: u64, per_mille: u64) -> Vec<FaultRule> {
    let p = per_mille as f64 / 1000.0;
    let (fault, ops): (Fault, &[OpKind]) = match seed % 3 {
        0 => (
            Fault::NoSpace,
            &[
                OpKind::Write,
                OpKind::WriteV,
                OpKind::DurableWrite,
                OpKind::Fdatasync,
                OpKind::Fsync,
            ],
        ),
        2 => (
            Fault::SyncFailure,
            &[OpKind::Fdatasync, OpKind::Fsync, OpKind::DurableWrite],
        ),
        _ => (
            Fault::Eio,
            &[
                OpKind::Read,
                OpKind::Write,
                OpKind::WriteV,
                OpKind::DurableWrite,
                OpKind::Fdatasync,
            ],
        ),
    };
    ops.iter()
        .map(|&op| FaultRule::with_probability(p, fault).on_op(op))
        .collect()
}

/// One round; whether the disk's faults made a commit fail.
fn round(seed: u64, root: &Path) -> bool {
    let (t, sim, db, rel, archiver) = archived_sim_primary(root, seed);
    let (mut acked, failed) = commit(&db, rel, 0, 20);
    assert!(failed.is_empty(), "seed {seed}: no fault was set yet");

    // The disk fails now and then (the rate varies by round, so some
    // rounds fail early).
    for rule in disk_faults(seed, 5 + seed % 4 * 15) {
        sim.add_fault(rule);
    }
    if !seed.is_multiple_of(2) {
        // The kill lands at a random I/O of these commits.
        let mut rng = keel_io::sim::Rng::new(seed);
        let at = sim.op_count() + 1 + rng.below(400);
        sim.add_fault(FaultRule::at_op(at, Fault::Kill));
    }
    // A base backup taken on the failing disk: it fails (leaving no
    // manifest, so no restore chooses it), or it is whole, and then the
    // restore below starts from it.
    let options = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(2),
        ..keel_archive::BackupOptions::default()
    };
    let _ = keel_archive::backup(&db, &archiver, &t, &options);
    let (more, mut unacked) = commit(&db, rel, 20, 300);
    acked.extend(more);
    let failed_by_disk = seed.is_multiple_of(2) && !unacked.is_empty();
    // The faults stop; the archiver ships what it may, then the process ends.
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
    failed_by_disk
}

#[test]
fn a_primary_whose_disk_fails_keeps_an_archive_that_restores_every_row() {
    let rounds = rounds_from_env("KEEL_ARCHIVER_DISK_FAULT_ROUNDS", 24);
    let tmp = tempfile::tempdir().unwrap();
    let mut failed_by_disk = 0;
    for seed in 1..=rounds {
        failed_by_disk += u32::from(round(seed, tmp.path()));
    }
    assert!(
        rounds < 4 || failed_by_disk > 0,
        "the disk's faults never failed a commit in {rounds} rounds"
    );
}

/// A full disk, an I/O error or a failed sync while an archiver marks the
/// directory at its start (the synced status file): the start fails and
/// leaves the log's hold as it found it, never reporting an archive that
/// a reopened primary would not keep the log for; once the disk is well,
/// a start marks the directory and a power cut after it keeps the mark.
#[test]
fn a_failing_disk_while_an_archiver_marks_the_directory_fails_its_start() {
    let root = tempfile::tempdir().unwrap();
    let faults = [
        FaultRule::always(Fault::NoSpace)
            .on_op(OpKind::Write)
            .on_class(keel_io::FileClass::Other),
        FaultRule::always(Fault::SyncFailure)
            .on_op(OpKind::Fsync)
            .on_class(keel_io::FileClass::Other),
        FaultRule::always(Fault::Eio).on_op(OpKind::SyncDir),
    ];
    for (seed, rule) in faults.into_iter().enumerate() {
        let seed = seed as u64;
        let (t, sim, db) = unarchived_sim_primary(root.path(), seed);
        sim.add_fault(rule);
        let failed = Archiver::start(db.clone(), &t, fast());
        assert!(
            failed.is_err(),
            "seed {seed}: a start that could not mark the directory"
        );
        assert_eq!(db.log_hold(), None, "seed {seed}: the hold is put back");
        sim.clear_faults();
        assert!(
            held_after_start_and_power_cut(&t, &sim, db, seed + 10),
            "seed {seed}: marked once the start succeeded"
        );
    }
}
