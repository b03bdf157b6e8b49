//! A restore cut by a power cut at each of its local I/O operations in
//! turn, on the simulated disk (`keel_archive::restore_with_io`): its
//! relation files, its log, the rename of its control file, the recovery
//! open and its checkpoint. After each cut and a reboot, the directory is
//! one of:
//!
//! - absent or empty: nothing of the restore survived (an open makes a new
//!   database there, which is right: there is nothing to misread);
//! - refused by `Database::open` as an unfinished restore, and by a second
//!   restore the same way;
//! - the restored database, holding every archived commit.
//!
//! Never relation files or a log without the unfinished-restore marker,
//! which an open would take for a database being created (the restore
//! syncs the directory once the marker is written, so this holds whether
//! or not the file system commits a directory's changes in order). A
//! restore into a new directory on the rebooted disk then gives every
//! commit.
//!
//! The same holds after a restore killed at an operation and then cut by
//! a power cut (the kill leaves its unsynced writes pending), and after
//! one whose operation failed (EIO, a full disk) and then lost its power.
//!
//! Default: cuts at 40 operations spread over the restore and at its last
//! four (kills and failures at 20);
//! `KEEL_RESTORE_CUT_EVERY_OP=1` cuts at every one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use keel::Database;
use keel_archive::local::Local;
use keel_archive::{ArchiveTarget, Archiver, RestoreTarget, StoreConfig};
use keel_io::AsyncIo;
use keel_io::sim::{Fault, FaultRule, SimConfig, SimDisk, SimIo};

/// An archive with a base backup and log after it, in memory; the rows.
fn archive() -> (ArchiveTarget, Vec<Vec<u8>>) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(object_store::memory::InMemory::new());
    let target = ArchiveTarget::new(StoreConfig::Custom(store), "db");
    let db = open(&tmp.path().join("data"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    workload(&db, rel, 5, 10, 0);
    let options = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..keel_archive::BackupOptions::default()
    };
    keel_archive::backup(&db, &archiver, &target, &options).unwrap();
    workload(&db, rel, 10, 10, 3);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    (target, sorted_rows(&db, "r"))
}

fn restore(target: &ArchiveTarget, sim: &Arc<SimIo>, dir: &str) -> keel_archive::Result<()> {
    let local = Local::new(Arc::clone(sim) as Arc<dyn AsyncIo>);
    keel_archive::restore_with_io(
        target,
        Path::new(dir),
        1,
        RestoreTarget::End,
        config(),
        Duration::from_secs(5),
        &local,
    )
    .map(|_| ())
}

fn open_sim(sim: &Arc<SimIo>, dir: &str) -> keel::Result<Database> {
    Database::open_with_io(dir, config(), Arc::clone(sim) as Arc<dyn AsyncIo>)
}

/// What a cut left at `/r` on `disk` (module docs), checked.
fn check_after_cut(
    disk: SimDisk,
    target: &ArchiveTarget,
    rows: &[Vec<u8>],
    at: u64,
) -> &'static str {
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(1000 + at)));
    let local = Local::new(Arc::clone(&sim) as Arc<dyn AsyncIo>);
    let names = local.list(Path::new("/r")).unwrap().unwrap_or_default();
    let left = if names.is_empty() {
        "nothing"
    } else {
        match open_sim(&sim, "/r") {
            Ok(db) => {
                assert_eq!(
                    sorted_rows(&db, "r"),
                    rows,
                    "cut at {at}: the restored rows"
                );
                db.close().unwrap();
                "restored"
            }
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("unfinished restore"),
                    "cut at {at}: {names:?} left, refused without naming the unfinished restore: {e}"
                );
                let again = restore(target, &sim, "/r").unwrap_err().to_string();
                assert!(again.contains("unfinished restore"), "cut at {at}: {again}");
                "unfinished"
            }
        }
    };
    restore(target, &sim, "/again").unwrap_or_else(|e| panic!("cut at {at}: restore again: {e}"));
    let db = open_sim(&sim, "/again").unwrap();
    assert_eq!(
        sorted_rows(&db, "r"),
        rows,
        "cut at {at}: the second restore's rows"
    );
    db.close().unwrap();
    left
}

#[test]
fn a_restore_cut_by_a_power_cut_leaves_nothing_an_open_misreads() {
    let (target, rows) = archive();
    assert_eq!(rows.len(), 150);
    // How many operations a whole restore takes.
    let sim = Arc::new(SimIo::new(SimConfig::seeded(1)));
    restore(&target, &sim, "/r").unwrap();
    let total = sim.op_count();
    let db = open_sim(&sim, "/r").unwrap();
    assert_eq!(sorted_rows(&db, "r"), rows);
    db.close().unwrap();
    let every = std::env::var("KEEL_RESTORE_CUT_EVERY_OP").is_ok_and(|v| v == "1");
    let cuts: Vec<u64> = match every {
        true => (0..total).collect(),
        // Spread over the restore, and its last operations: a cut after
        // the restore returned must find it whole.
        false => (0..40)
            .map(|i| i * total / 40)
            .chain(total.saturating_sub(4)..total)
            .collect(),
    };
    let mut seen = std::collections::BTreeMap::new();
    for at in cuts {
        let sim = Arc::new(SimIo::new(SimConfig::seeded(at)));
        sim.add_fault(FaultRule::at_op(at, Fault::PowerCut));
        let result = restore(&target, &sim, "/r");
        if !sim.is_halted() {
            // The restore ran through before operation `at`.
            result.unwrap();
            continue;
        }
        let left = check_after_cut(sim.crash(), &target, &rows, at);
        // A cut at an operation whose failure the restore does not report
        // (closing a file it no longer needs) comes after it is complete.
        assert!(
            result.is_err() || left == "restored",
            "cut at {at}: the restore reported success, and the cut left {left}"
        );
        *seen.entry(left).or_insert(0) += 1;
    }
    assert!(
        seen.contains_key("unfinished") && seen.contains_key("restored"),
        "{total} operations; the cuts left {seen:?}"
    );
}

/// A restore killed at an operation, or failing there (EIO, a full disk),
/// then cut by a power cut: the directory is one of the three states
/// (module docs), and a new restore gives every commit.
#[test]
fn a_restore_killed_or_failing_then_cut_leaves_nothing_an_open_misreads() {
    let (target, rows) = archive();
    let sim = Arc::new(SimIo::new(SimConfig::seeded(1)));
    restore(&target, &sim, "/r").unwrap();
    let total = sim.op_count();
    let mut seen = std::collections::BTreeMap::new();
    for at in (0..20).map(|i| i * total / 20) {
        for fault in [Fault::Kill, Fault::Eio, Fault::NoSpace] {
            let sim = Arc::new(SimIo::new(SimConfig::seeded(at)));
            sim.add_fault(FaultRule::at_op(at, fault));
            let result = restore(&target, &sim, "/r");
            let disk = match fault {
                Fault::Kill => {
                    assert!(
                        result.is_err(),
                        "killed at {at}: the restore reported success"
                    );
                    let after = SimIo::after_kill(sim.kill(), SimConfig::seeded(at + 1));
                    after.crash()
                }
                _ => sim.crash(),
            };
            let left = check_after_cut(disk, &target, &rows, at);
            *seen.entry((format!("{fault:?}"), left)).or_insert(0) += 1;
        }
    }
    assert!(
        seen.keys().any(|(f, l)| f == "Kill" && *l == "unfinished"),
        "{total} operations; the faults left {seen:?}"
    );
}
