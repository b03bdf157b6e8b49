//! Backups cut off by a power cut of the process taking them, at every
//! upload step, against a local-directory store behind the fault-injecting
//! wrapper (`fault` module: after the cut nothing more reaches the store,
//! an unfinished multipart upload is never completed and nothing is
//! cleaned up). After each cut: every backup with a manifest is usable
//! (its files and its log), the cut one has no manifest and is reported
//! incomplete, a later backup succeeds, and a restore holds every
//! acknowledged commit. Also: a backup cut off while a long transaction
//! holds the log's scan start back can be taken again from the same start
//! LSN.
//!
//! Default: cuts at up to 12 steps spread over the upload;
//! `KEEL_BACKUP_CUT_EVERY_STEP=1` cuts at every step.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use keel::{Database, RelationId};
use keel_archive::backup_check::check_backup;
use keel_archive::fault::{Fault, FaultStore, Op};
use keel_archive::{ArchiveTarget, Archiver, BackupEntry, Remote, StoreConfig};
use keel_archive::{BackupOptions, RestoreTarget};
use object_store::local::LocalFileSystem;

struct Setup {
    tmp: tempfile::TempDir,
    /// The archiver's view of the store (never faulted).
    target: ArchiveTarget,
    /// The store the backups write through, one wrapper per attempt.
    inner: Arc<LocalFileSystem>,
    db: Arc<Database>,
    rel: RelationId,
    archiver: Archiver,
    acked: BTreeSet<Vec<u8>>,
    next: usize,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    let target = ArchiveTarget::new(StoreConfig::Local(root.clone()), "");
    let inner = Arc::new(LocalFileSystem::new_with_prefix(&root).unwrap());
    let db = open(&tmp.path().join("data"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    Setup {
        tmp,
        target,
        inner,
        db,
        rel,
        archiver,
        acked: BTreeSet::new(),
        next: 0,
    }
}

impl Setup {
    /// Commits `n` rows of 1,000 bytes, one transaction each.
    fn commit(&mut self, n: usize) {
        for _ in 0..n {
            let v = value(self.next, 1000);
            let mut tx = self.db.begin().unwrap();
            tx.insert(self.rel, &v).unwrap();
            tx.commit().unwrap();
            self.acked.insert(v);
            self.next += 1;
        }
    }

    /// A new wrapper over the store, and the target that writes through it.
    fn faulty(&self) -> (FaultStore, ArchiveTarget) {
        let store = FaultStore::new(self.inner.clone());
        let target = ArchiveTarget::new(StoreConfig::Custom(Arc::new(store.clone())), "");
        (store, target)
    }

    fn backup(&self, target: &ArchiveTarget) -> keel_archive::Result<keel_archive::Manifest> {
        let options = BackupOptions {
            archive_timeout: Duration::from_secs(30),
            part_size_bytes: 16 << 10,
            ..BackupOptions::default()
        };
        keel_archive::backup(&self.db, &self.archiver, target, &options)
    }

    fn remote(&self) -> Remote {
        Remote::open(&self.target, Duration::from_secs(5)).unwrap()
    }

    /// Every backup with a manifest is usable; returns how many there
    /// are and how many folders have none.
    fn check_archive(&self) -> (usize, usize) {
        let remote = self.remote();
        let (mut complete, mut incomplete) = (0, 0);
        for f in remote.list_backup_folders().unwrap() {
            if !f.manifest {
                incomplete += 1;
                continue;
            }
            let entry = BackupEntry {
                timeline: f.timeline,
                start: f.start,
                manifest: format!("{}/manifest", f.folder).into(),
            };
            check_backup(&remote, &entry)
                .unwrap_or_else(|e| panic!("backup {} is not usable: {e}", f.folder));
            complete += 1;
        }
        (complete, incomplete)
    }

    /// Archives the whole log, restores into a new directory and returns
    /// the restored rows.
    fn restore(&self, name: &str) -> (keel_archive::RestoreReport, BTreeSet<Vec<u8>>) {
        self.archiver
            .wait_archived(self.db.durable_lsn(), Duration::from_secs(30))
            .unwrap();
        let dir: PathBuf = self.tmp.path().join(name);
        let report = keel_archive::restore(
            &self.target,
            &dir,
            1,
            RestoreTarget::End,
            config(),
            Duration::from_secs(5),
        )
        .unwrap();
        (report, rows(&dir, "r").into_iter().collect())
    }
}

#[test]
fn a_power_cut_at_any_upload_step_leaves_only_usable_backups() {
    let mut s = setup();
    s.commit(300);
    // The uploads of one whole backup, counted.
    let (store, target) = s.faulty();
    let first = s.backup(&target).unwrap();
    let steps = store.stats().puts;
    assert!(steps > 10, "a backup of {steps} uploads: too few parts");
    let every = std::env::var_os("KEEL_BACKUP_CUT_EVERY_STEP").is_some();
    let stride = match every {
        true => 1,
        false => steps.div_ceil(12),
    };
    let mut cuts = 0;
    for cut in (0..steps).step_by(stride as usize) {
        s.commit(3);
        let (store, target) = s.faulty();
        store.power_cut_after(cut);
        let err = s.backup(&target).unwrap_err();
        assert!(
            err.to_string().contains("injected fault"),
            "cut {cut}: {err}"
        );
        cuts += 1;
        let (complete, incomplete) = s.check_archive();
        assert_eq!(complete, 1, "cut {cut}: a backup cut off has a manifest");
        assert_eq!(incomplete, usize::from(cut > 0), "cut {cut}");
        // The cut run's objects stay (never deleted on a guess); clear
        // them so the next cut's count is its own.
        for f in s.remote().list_backup_folders().unwrap() {
            if !f.manifest {
                std::fs::remove_dir_all(s.tmp.path().join("store").join(&f.folder)).unwrap();
            }
        }
    }
    assert!(cuts >= 10, "{cuts} cuts");
    let (report, got) = s.restore("restored-after-cuts");
    assert_eq!(report.backup.start, first.start);
    assert!(report.passed_over.is_empty());
    assert_eq!(got, s.acked);
    // Power back: the next backup is complete and is the one restored.
    s.commit(3);
    let (_, target) = s.faulty();
    let last = s.backup(&target).unwrap();
    assert_eq!(s.check_archive(), (2, 0));
    let (report, got) = s.restore("restored-after-recovery");
    assert_eq!(report.backup, last);
    assert_eq!(got, s.acked);
}

/// A long transaction holds the checkpoint's scan start, so a backup
/// retried after one cut off starts at the same LSN: the retry must not
/// collide with the cut run's objects.
#[test]
fn a_backup_cut_off_under_a_long_transaction_can_be_taken_again() {
    let mut s = setup();
    s.commit(50);
    let db = s.db.clone();
    let mut long = db.begin().unwrap();
    long.insert(s.rel, b"held open across the backups").unwrap();
    // The control file goes up, the first relation file fails.
    let (store, target) = s.faulty();
    store.inject(Op::Put, Fault::Slow(Duration::ZERO));
    store.inject(Op::Put, Fault::Error);
    assert!(s.backup(&target).is_err());
    s.commit(5);
    let (_, target) = s.faulty();
    let m = s
        .backup(&target)
        .unwrap_or_else(|e| panic!("the retried backup failed: {e}"));
    long.commit().unwrap();
    s.acked.insert(b"held open across the backups".to_vec());
    let remote = s.remote();
    let folders = remote.list_backup_folders().unwrap();
    assert_eq!(folders.len(), 2, "{folders:?}");
    assert_eq!(folders[0].start, folders[1].start, "{folders:?}");
    assert_eq!(s.check_archive(), (1, 1));
    let (report, got) = s.restore("restored");
    assert_eq!(report.backup, m);
    assert_eq!(got, s.acked);
}
