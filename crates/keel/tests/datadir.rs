#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The data directory's open sequence: where a new directory's entry is
//! made durable, and the sync of an unclean directory before recovery
//! (invariant 14), on the simulator and on the real file system.

mod common;

use keel_io::watch::{Watch, Watched};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel::datadir::RecoveryInitSync;
use keel::{Config, Database};
use keel_io::Request;
use keel_io::sim::{SimConfig, SimIo};
use parking_lot::Mutex;

/// Records the path of every directory sync.
#[derive(Default)]
struct SyncedDirs(Mutex<Vec<PathBuf>>);

impl Watch for SyncedDirs {
    fn before(&self, req: &Request) -> bool {
        if let Request::SyncDir { path } = req {
            self.0.lock().push(path.clone());
        }
        false
    }
}

#[test]
fn a_relative_data_directory_entry_is_synced_in_the_working_directory() {
    let io = Arc::new(Watched {
        inner: Arc::new(SimIo::new(SimConfig::seeded(1))),
        watch: SyncedDirs::default(),
    });
    let name = "keel-relative-datadir-test";
    let db = Database::open_with_io(name, common::small_config(16), io.clone()).unwrap();
    db.close().unwrap();
    let synced = io.watch.0.lock().clone();
    // Creating `name` adds an entry to the working directory: that is the
    // directory to sync, not the root.
    assert_eq!(
        synced.first().map(PathBuf::as_path),
        Some(Path::new(".")),
        "{synced:?}"
    );
    assert!(
        synced
            .iter()
            .all(|p| p == Path::new(".") || p.starts_with(name)),
        "a directory outside the data directory was synced: {synced:?}"
    );
}

/// Runs a few commits and kills the process (no close: its last writes
/// stay in the simulated page cache, the control file says unclean).
fn killed(seed: u64) -> keel_io::sim::SimKernel {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(seed)));
    let db = common::open_sim(&sim, common::small_config(16)).unwrap();
    let rel = db.create_relation("t").unwrap();
    for i in 0..20u8 {
        let mut tx = db.begin().unwrap();
        tx.insert(rel, &[i; 700]).unwrap();
        tx.commit().unwrap();
    }
    let kernel = sim.kill();
    drop(db);
    kernel
}

#[test]
fn an_open_after_a_kill_syncs_the_data_directory_and_a_clean_one_does_not() {
    for method in [RecoveryInitSync::Fsync, RecoveryInitSync::SyncFs] {
        let sim = Arc::new(SimIo::after_kill(killed(3), SimConfig::seeded(4)));
        let config = Config {
            recovery_init_sync: method,
            ..common::small_config(16)
        };
        let db = common::open_sim(&sim, config.clone()).unwrap();
        let sync = db.recovery_report().data_dir_sync.clone().unwrap();
        assert_eq!(sync.method, method);
        // `/db`, `/db/wal`, `/db/rel`.
        assert_eq!(sync.dirs, 3, "{sync:?}");
        if method == RecoveryInitSync::Fsync {
            // control, at least one segment, the catalog's and t's files.
            assert!(sync.files >= 4, "{sync:?}");
        }
        db.close().unwrap();
        let db = common::open_sim(&sim, config).unwrap();
        assert_eq!(db.recovery_report().data_dir_sync, None);
        db.close().unwrap();
    }
}

#[test]
fn both_methods_work_on_the_real_file_system() {
    let tmp = tempfile::tempdir().unwrap();
    for method in [RecoveryInitSync::Fsync, RecoveryInitSync::SyncFs] {
        let dir = tmp.path().join(format!("{method:?}"));
        let config = Config {
            recovery_init_sync: method,
            ..Config::default()
        };
        let db = Database::open(&dir, config.clone()).unwrap();
        let rel = db.create_relation("t").unwrap();
        let mut tx = db.begin().unwrap();
        tx.insert(rel, b"kept").unwrap();
        tx.commit().unwrap();
        // Dropped without close: the control file stays unclean.
        drop(db);
        let db = Database::open(&dir, config).unwrap();
        let sync = db.recovery_report().data_dir_sync.clone();
        let sync = sync.unwrap_or_else(|| panic!("{method:?}: no sync after an unclean close"));
        assert_eq!(sync.dirs, 3, "{sync:?}");
        assert_eq!(db.begin().unwrap().scan(rel).unwrap().count(), 1);
        db.close().unwrap();
    }
}

/// The sync of an unclean directory opens regular files only: a FIFO
/// someone left in the directory (whose open blocks until a writer comes)
/// does not stop the open, and is left as it is.
#[test]
fn an_unclean_open_passes_over_a_fifo_in_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Database::open(&dir, Config::default()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(rel, b"kept").unwrap();
    tx.commit().unwrap();
    drop(db);
    let fifo = dir.join("notes.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    let (tx, rx) = std::sync::mpsc::channel();
    let opening = dir.clone();
    std::thread::spawn(move || {
        let opened = Database::open(&opening, Config::default()).and_then(|db| {
            let rows = db.begin()?.scan(rel)?.count();
            let synced = db.recovery_report().data_dir_sync.clone();
            db.close()?;
            Ok((rows, synced.is_some()))
        });
        let _ = tx.send(opened.map_err(|e| e.to_string()));
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(60));
    // Lets a blocked open go on, so the test's thread ends either way
    // (without a reader waiting, this open fails at once).
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
    assert_eq!(got, Ok(Ok((1, true))), "the open did not return");
    assert!(fifo.exists());
}

/// Commits rows `rows` of `rel`, one transaction each, `[i; 700]`.
fn commit_rows(db: &Database, rel: keel::RelationId, rows: std::ops::Range<u8>) {
    for i in rows {
        let mut tx = db.begin().unwrap();
        tx.insert(rel, &[i; 700]).unwrap();
        tx.commit().unwrap();
    }
}

/// The first byte of every row of `rel`, sorted.
fn rows(db: &Database, rel: keel::RelationId) -> Vec<u8> {
    let tx = db.begin().unwrap();
    let mut v: Vec<u8> = tx.scan(rel).unwrap().map(|r| r.unwrap().1[0]).collect();
    v.sort_unstable();
    v
}

/// A sync that failed before a kill, after which the kernel keeps the
/// pages it dropped from the disk in its cache, clean (Linux after a
/// writeback error, whether it reports EIO or ENOSPC): a sync of the log
/// (a commit fails) or of the data files (a checkpoint fails). The next process's own syncs never write
/// those pages; its open writes the log's tail and every page the log
/// names again (invariant 14), so what it acknowledges survives a power
/// cut, and so do the commits the dead process acknowledged before.
#[test]
fn a_sync_that_failed_before_a_kill_is_written_again_by_the_next_open() {
    use keel_io::sim::{Fault, FaultRule};
    use keel_io::{FileClass, OpKind};
    const SYNCS: [OpKind; 4] = [
        OpKind::Fsync,
        OpKind::Fdatasync,
        OpKind::DurableWrite,
        OpKind::Writeback,
    ];
    // Every class with every way a sync fails.
    for seed in 0..6u64 {
        let class = [FileClass::Wal, FileClass::Data][seed as usize % 2];
        let fault = [Fault::SyncFailure, Fault::Eio, Fault::NoSpace][seed as usize % 3];
        let sim = Arc::new(SimIo::new(SimConfig::seeded(seed)));
        let db = common::open_sim(&sim, common::small_config(64)).unwrap();
        let rel = db.create_relation("t").unwrap();
        commit_rows(&db, rel, 0..20);
        db.checkpoint().unwrap();
        commit_rows(&db, rel, 20..40);
        for op in SYNCS {
            sim.add_fault(FaultRule::always(fault).on_class(class).on_op(op));
        }
        if class == FileClass::Wal {
            let mut tx = db.begin().unwrap();
            tx.insert(rel, &[40; 700]).unwrap();
            assert!(
                tx.commit().is_err(),
                "seed {seed}: the commit's sync failed"
            );
        } else {
            assert!(
                db.checkpoint().is_err(),
                "seed {seed}: the checkpoint's sync failed"
            );
        }
        let kernel = sim.kill();
        drop(db);

        let sim = Arc::new(SimIo::after_kill(kernel, SimConfig::seeded(seed + 100)));
        let db = common::open_sim(&sim, common::small_config(64)).unwrap();
        let report = db.recovery_report().clone();
        // The last batch and one record at most (`small_config`: 128 KiB
        // batches), from a 4 KiB boundary.
        let window = (128 << 10) + keel::wal::record::MAX_RECORD_SIZE as u64 + 4096;
        assert!(
            report.log_bytes_rewritten > 0 && report.log_bytes_rewritten <= window,
            "seed {seed}: {report:?}"
        );
        if class == FileClass::Data {
            assert!(report.pages_rewritten > 0, "seed {seed}: {report:?}");
        }
        let mut expected: Vec<u8> = rows(&db, rel);
        assert!(
            expected.starts_with(&(0..40).collect::<Vec<u8>>()),
            "seed {seed}"
        );
        commit_rows(&db, rel, 50..60);
        expected.extend(50..60);
        let disk = sim.crash();
        drop(db);

        let db = common::open_sim(&common::reboot(disk, seed + 200), common::small_config(64))
            .unwrap_or_else(|e| panic!("seed {seed} ({class:?}, {fault:?}): {e}"));
        assert_eq!(
            rows(&db, rel),
            expected,
            "seed {seed} ({class:?}, {fault:?})"
        );
        db.close().unwrap();
    }
}
