//! The archiver over a primary whose process is killed and whose machine
//! then loses power before anything reopens it (the kill-then-power-cut
//! shape): the primary runs on the simulated disk, a kill lands at a
//! random I/O of its commits and uploads, the power cut then drops or
//! tears whatever the dead process had not synced. In every other round
//! the power fails again at a random I/O of the next open (a crash during
//! recovery, which may leave the end-of-recovery records torn or half
//! written). The primary is opened again (recovery on the cut disk),
//! archives on, commits more and is archived to its end.
//!
//! After each round: the archive's one timeline verifies (LSN continuity
//! and every CRC), so the archive never held log the cut disk lost and
//! the reopened primary then wrote differently; and a restore holds every
//! acknowledged row, plus at most the one commit the kill cut off. No
//! recovery, cut or not, may rewrite log the archive already holds. In
//! half the rounds a base backup runs into the kill first (the kill,
//! the power cut and the cut recovery then fall on a backup in progress
//! or just taken), and the restore starts from it when it completed.
//!
//! Default: 40 rounds (`KEEL_ARCHIVER_KPC_ROUNDS` for more), each from its
//! own seed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step fails the test

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use keel::{Database, RelationId};
use keel_archive::Archiver;
use keel_io::AsyncIo;
use keel_io::sim::{Fault, FaultRule, Rng, SimConfig, SimDisk, SimIo};

/// Commits rows `from..` one per transaction until `n` are acknowledged or
/// a commit fails (the kill); the acknowledged rows, and the first row
/// that was not.
fn commit(db: &Database, rel: RelationId, from: usize, n: usize) -> (Vec<Vec<u8>>, usize) {
    let mut acked = Vec::new();
    for i in from..from + n {
        let v = value(i, 600);
        let done = db.begin().and_then(|mut tx| {
            tx.insert(rel, &v)?;
            tx.commit()
        });
        if done.is_err() {
            return (acked, i);
        }
        acked.push(v);
    }
    (acked, from + n)
}

/// With `cut`: a power cut at a random I/O of an open of `disk` (the
/// crash during recovery), returning what it left and whether the open
/// itself failed; otherwise `disk` as it is.
fn cut_during_recovery(seed: u64, disk: SimDisk, cut: bool, rng: &mut Rng) -> (SimDisk, bool) {
    if !cut {
        return (disk, false);
    }
    // The I/Os an uncut open of the same disk makes.
    let probe = Arc::new(SimIo::from_disk(disk.clone(), SimConfig::seeded(seed + 3)));
    drop(open_sim_primary(&probe));
    let ops = probe.op_count();
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(seed + 4)));
    sim.add_fault(FaultRule::at_op(rng.below(ops.max(1)), Fault::PowerCut));
    let io = Arc::clone(&sim) as Arc<dyn AsyncIo>;
    let failed = Database::open_with_io(SIM_PRIMARY, config(), io).is_err();
    (sim.crash(), failed)
}

/// One round; whether a power cut made the reopen after the kill fail.
fn round(seed: u64, root: &Path) -> bool {
    let (t, sim, db, rel, archiver) = archived_sim_primary(root, seed);
    let (mut acked, next) = commit(&db, rel, 0, 20);
    assert_eq!(acked.len(), 20, "seed {seed}: no fault was set yet");

    // The kill: at a random I/O among the next commits and uploads.
    let mut rng = keel_io::sim::Rng::new(seed);
    let at = sim.op_count() + 1 + rng.below(200);
    sim.add_fault(FaultRule::at_op(at, Fault::Kill));
    // In half the rounds a base backup runs into the kill: it fails
    // (leaving no manifest, so no restore chooses it) or it is whole, and
    // then the restore below may start from it.
    if seed % 4 < 2 {
        let options = keel_archive::BackupOptions {
            archive_timeout: Duration::from_secs(2),
            ..keel_archive::BackupOptions::default()
        };
        let _ = keel_archive::backup(&db, &archiver, &t, &options);
    }
    let (more, cut_off) = commit(&db, rel, next, 400);
    acked.extend(more);
    assert!(
        sim.is_halted(),
        "seed {seed}: the kill at op {at} never came"
    );
    // The dead process's archiver and database fail from here on.
    let _ = archiver.stop();
    drop(db);
    // Then the power cut, before anything reopens the directory.
    let disk = SimIo::after_kill(sim.kill(), SimConfig::seeded(seed + 1)).crash();
    let (disk, recovery_cut) = cut_during_recovery(seed, disk, seed.is_multiple_of(2), &mut rng);
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(seed + 2)));

    let db = open_sim_primary(&sim);
    // The status file as the kill, the power cut and any cut during the
    // recovery left it: whole (written aside and renamed over), so it
    // decodes as `keel_archive::read_status` decodes it.
    let status_file = Path::new(SIM_PRIMARY).join(keel_archive::status::STATUS_FILE);
    let local = keel_archive::local::Local::new(Arc::clone(db.io()));
    if let Some(left) = local.read_small(&status_file, 4096).unwrap() {
        let text = String::from_utf8(left)
            .unwrap_or_else(|e| panic!("seed {seed}: the status file left is not UTF-8: {e}"));
        keel_archive::status::PublishedStatus::decode(&status_file, &text)
            .unwrap_or_else(|e| panic!("seed {seed}: the status file left: {e}"));
    }
    let rel = db.relation("r").unwrap().expect("the relation survives");
    let archiver = Archiver::start(db.clone(), &t, fast()).unwrap();
    let (after, _) = commit(&db, rel, cut_off + 1, 30);
    assert_eq!(
        after.len(),
        30,
        "seed {seed}: a commit failed after the reboot"
    );
    acked.extend(after);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("seed {seed}: archiving after the reboot: {e}"));
    // Its status file is written beside the database, on the same disk.
    if let Some(e) = archiver.status().last_error {
        panic!("seed {seed}: the archiver reports {e}");
    }
    let status = local
        .read_small(&status_file, 4096)
        .unwrap()
        .unwrap_or_else(|| panic!("seed {seed}: no archive-status file"));
    assert!(
        String::from_utf8_lossy(&status).starts_with("keel-archive-status 1"),
        "seed {seed}: the status file holds {status:?}"
    );
    archiver.stop().unwrap();
    let id = db.database_id();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();

    let got = verify_and_restore(
        &t,
        root,
        seed,
        id,
        &format!("seed {seed} (kill at op {at})"),
    );
    let want: BTreeSet<Vec<u8>> = acked.into_iter().collect();
    let lost: Vec<_> = want.difference(&got).collect();
    assert!(
        lost.is_empty(),
        "seed {seed} (kill at op {at}): {} acknowledged rows missing from the restore",
        lost.len()
    );
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        extra.is_empty() || (extra.len() == 1 && *extra[0] == value(cut_off, 600)),
        "seed {seed}: the restore holds {} rows never committed",
        extra.len()
    );
    recovery_cut
}

#[test]
fn a_primary_killed_then_power_cut_keeps_an_archive_that_restores_every_row() {
    let rounds = rounds_from_env("KEEL_ARCHIVER_KPC_ROUNDS", 40);
    let tmp = tempfile::tempdir().unwrap();
    let mut recoveries_cut = 0;
    for seed in 1..=rounds {
        recoveries_cut += u32::from(round(seed, tmp.path()));
    }
    assert!(
        rounds < 10 || recoveries_cut > 0,
        "no power cut landed in a recovery in {rounds} rounds"
    );
}

/// The power cut right after an archiver started, before anything else
/// synced the data directory: the directory is still marked as followed
/// (the archiver's first status write is synced with its directory), so
/// the reopened primary holds its log from the oldest segment and retires
/// nothing the archive may lack.
#[test]
fn a_power_cut_just_after_an_archiver_starts_leaves_the_log_held() {
    let root = tempfile::tempdir().unwrap();
    for seed in 0..16u64 {
        let (t, sim, db) = unarchived_sim_primary(root.path(), seed);
        assert_eq!(
            db.log_hold(),
            None,
            "seed {seed}: nothing follows a new directory"
        );
        assert!(
            held_after_start_and_power_cut(&t, &sim, db, seed + 1),
            "seed {seed}: the reopened primary holds its log for the next archiver"
        );
    }
}
