//! Base backups and restores end to end on a local-directory store: a
//! backup taken while writers run restores every acknowledged commit; a
//! backup without its manifest is never used; a damaged backup file is
//! refused naming it, and a restore falls back past it to an older
//! complete backup; a backup cut short leaves the archive usable.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use keel::{Database, RelationId};
use keel_archive::RestoreTarget;
use keel_archive::backup::{BackupOptions, Manifest};
use keel_archive::fault::{Fault, FaultStore, Op};
use keel_archive::{ArchiveError, ArchiveTarget, Archiver, Remote, StoreConfig};
use keel_io::watch::{Watch, Watched};
use object_store::path::Path as ObjectPath;

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    target: ArchiveTarget,
    db: Arc<Database>,
    rel: RelationId,
    archiver: Option<Archiver>,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    let target = ArchiveTarget::new(StoreConfig::Local(root.clone()), "db");
    let db = open(&tmp.path().join("data"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    Setup {
        root,
        target,
        db,
        rel,
        archiver: Some(archiver),
        _tmp: tmp,
    }
}

fn options() -> BackupOptions {
    BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..BackupOptions::default()
    }
}

fn take_backup(s: &Setup) -> Manifest {
    keel_archive::backup(&s.db, s.archiver.as_ref().unwrap(), &s.target, &options()).unwrap()
}

fn insert(db: &Database, rel: RelationId, v: &[u8]) {
    let mut tx = db.begin().unwrap();
    tx.insert(rel, v).unwrap();
    tx.commit().unwrap();
}

fn restore_into(s: &Setup, dir: &Path) -> keel_archive::Result<keel_archive::RestoreReport> {
    keel_archive::restore(
        &s.target,
        dir,
        1,
        RestoreTarget::End,
        config(),
        Duration::from_secs(5),
    )
}

/// Waits until the archive holds the whole durable log.
fn archive_all(s: &Setup) {
    s.archiver
        .as_ref()
        .unwrap()
        .wait_archived(s.db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
}

/// The folder of the complete backup `m` (`<start>-<id>`, with a
/// manifest).
fn backup_folder(s: &Setup, m: &Manifest) -> PathBuf {
    let tl = s.root.join("db/backups/00000001");
    let prefix = format!("{:016X}-", m.start.0);
    std::fs::read_dir(&tl)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&prefix)
                && p.join("manifest").exists()
        })
        .unwrap()
}

#[test]
fn a_backup_taken_while_writers_run_restores_every_acknowledged_commit() {
    let s = setup();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (db, stop, rel) = (s.db.clone(), stop.clone(), s.rel);
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) || i < 200 {
                    let v = [vec![w as u8], value(i, 200)].concat();
                    insert(&db, rel, &v);
                    acked.push(v);
                    i += 1;
                    if i % 50 == 0 {
                        db.checkpoint().unwrap();
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let m = take_backup(&s);
    assert!(m.start < m.end, "{m:?}");
    assert!(m.files.iter().any(|f| f.name == "control"));
    assert!(m.files.iter().any(|f| f.name.starts_with("rel/")));
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let mut acked = BTreeSet::new();
    for w in writers {
        acked.extend(w.join().unwrap());
    }
    // One transaction left unfinished in the archived log: undone.
    let mut open_tx = s.db.begin().unwrap();
    open_tx.insert(s.rel, b"never committed").unwrap();
    s.db.checkpoint().unwrap();
    archive_all(&s);
    let restored = s._tmp.path().join("restored");
    let report = restore_into(&s, &restored).unwrap();
    drop(open_tx);
    assert_eq!(report.backup, m);
    assert!(report.log_end >= m.end);
    let got: BTreeSet<Vec<u8>> = rows(&restored, "r").into_iter().collect();
    assert_eq!(got.len(), acked.len());
    assert!(
        got == acked,
        "the restored rows differ from the acknowledged commits"
    );
    // The listing shows the one backup.
    let remote = Remote::open(&s.target, Duration::from_secs(5)).unwrap();
    let backups = remote.list_backups().unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].start, m.start);
    // A restore never writes into a directory in use.
    let err = restore_into(&s, &restored).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}

#[test]
fn a_backup_without_its_manifest_is_never_used() {
    let s = setup();
    insert(&s.db, s.rel, b"before the first backup");
    let first = take_backup(&s);
    insert(&s.db, s.rel, b"between the backups");
    let second = take_backup(&s);
    assert!(second.start > first.start);
    std::fs::remove_file(backup_folder(&s, &second).join("manifest")).unwrap();
    insert(&s.db, s.rel, b"after");
    archive_all(&s);
    let restored = s._tmp.path().join("restored");
    let report = restore_into(&s, &restored).unwrap();
    assert_eq!(report.backup.start, first.start);
    let got: BTreeSet<Vec<u8>> = rows(&restored, "r").into_iter().collect();
    let want: BTreeSet<Vec<u8>> = [
        &b"before the first backup"[..],
        b"between the backups",
        b"after",
    ]
    .iter()
    .map(|v| v.to_vec())
    .collect();
    assert_eq!(got, want);
}

#[test]
fn a_damaged_backup_file_is_refused_naming_it() {
    let s = setup();
    common::workload(&s.db, s.rel, 10, 10, 0);
    let m = take_backup(&s);
    archive_all(&s);
    let heap = m.files.iter().find(|f| f.name.starts_with("rel/")).unwrap();
    let path = backup_folder(&s, &m).join("files").join(&heap.name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let restored = s._tmp.path().join("restored");
    let err = restore_into(&s, &restored).unwrap_err();
    let folder = backup_folder(&s, &m);
    let folder = folder.file_name().unwrap().to_str().unwrap();
    let text = err.to_string();
    assert!(
        text.contains("no usable backup")
            && text.contains("checksum mismatch")
            && text.contains(folder)
            && text.contains(&heap.name),
        "{err}"
    );
    // The backup was checked before anything was written.
    assert!(!restored.exists());
}

/// Two complete backups; the newer one damaged by `damage` (given its
/// folder and manifest): the restore passes it over, naming it, and
/// restores the older one and the log from it: every row.
fn falls_back_past(damage: impl FnOnce(&Path, &Manifest) -> String) {
    let s = setup();
    insert(&s.db, s.rel, b"before the first backup");
    let first = take_backup(&s);
    common::workload(&s.db, s.rel, 5, 10, 0);
    let second = take_backup(&s);
    insert(&s.db, s.rel, b"after the second backup");
    archive_all(&s);
    let folder = backup_folder(&s, &second);
    let named = damage(&folder, &second);
    let want: BTreeSet<Vec<u8>> =
        s.db.begin()
            .unwrap()
            .scan(s.rel)
            .unwrap()
            .map(|r| r.unwrap().1)
            .collect();
    let restored = s._tmp.path().join("restored");
    let report = restore_into(&s, &restored).unwrap();
    assert_eq!(report.backup.start, first.start);
    assert_eq!(report.passed_over.len(), 1, "{:?}", report.passed_over);
    let (passed, why) = &report.passed_over[0];
    assert!(
        passed.ends_with(folder.file_name().unwrap().to_str().unwrap()),
        "{passed}"
    );
    assert!(why.contains(&named), "{why}");
    let got: BTreeSet<Vec<u8>> = rows(&restored, "r").into_iter().collect();
    assert_eq!(got.len(), 52);
    assert_eq!(got, want);
}

#[test]
fn a_restore_falls_back_past_a_newest_backup_with_a_damaged_file() {
    falls_back_past(|folder, m| {
        let heap = m.files.iter().find(|f| f.name.starts_with("rel/")).unwrap();
        let path = folder.join("files").join(&heap.name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        heap.name.clone()
    });
}

#[test]
fn a_restore_falls_back_past_a_newest_backup_missing_a_file() {
    falls_back_past(|folder, m| {
        let heap = m.files.iter().find(|f| f.name.starts_with("rel/")).unwrap();
        std::fs::remove_file(folder.join("files").join(&heap.name)).unwrap();
        heap.name.clone()
    });
}

#[test]
fn a_restore_with_every_backup_damaged_names_each_and_writes_nothing() {
    let s = setup();
    insert(&s.db, s.rel, b"before the first backup");
    let first = take_backup(&s);
    insert(&s.db, s.rel, b"between");
    let second = take_backup(&s);
    archive_all(&s);
    for m in [&first, &second] {
        let f = backup_folder(&s, m).join("files/control");
        let mut bytes = std::fs::read(&f).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&f, &bytes).unwrap();
    }
    let restored = s._tmp.path().join("restored");
    let err = restore_into(&s, &restored).unwrap_err().to_string();
    for m in [&first, &second] {
        let folder = backup_folder(&s, m);
        assert!(
            err.contains(folder.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
    }
    assert!(err.contains("files/control"), "{err}");
    assert!(!restored.exists());
}

#[test]
fn the_archive_must_reach_the_backups_end() {
    let s = setup();
    common::workload(&s.db, s.rel, 5, 10, 0);
    archive_all(&s);
    std::thread::sleep(Duration::from_millis(50));
    let m = take_backup(&s);
    // A restore that finds the archive short of the end is refused: make a
    // copy of the archive without its newest chunk.
    let wal = s.root.join("db/wal/00000001");
    let mut chunks: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    chunks.sort();
    let newest = chunks.last().unwrap().clone();
    let kept = std::fs::read(&newest).unwrap();
    drop(s.archiver);
    let s = Setup {
        archiver: None,
        ..s
    };
    std::fs::remove_file(&newest).unwrap();
    let err = restore_into(&s, &s._tmp.path().join("restored")).unwrap_err();
    assert!(err.to_string().contains("consistency point"), "{err}");
    std::fs::write(&newest, kept).unwrap();
    let report = restore_into(&s, &s._tmp.path().join("restored2")).unwrap();
    assert_eq!(report.backup.start, m.start);
}

/// A backup is committed (its manifest written) only once the store shows
/// the whole log it needs, as a restore will check it: uploads of the log
/// that the store acknowledged and lost while the backup ran (so the
/// archiver counts them shipped) leave the backup without a manifest,
/// an error naming the missing log, never a backup a restore would pass
/// over.
#[test]
fn a_backup_whose_log_the_store_lost_writes_no_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    let local = || -> Arc<dyn object_store::ObjectStore> {
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&root).unwrap())
    };
    // The archiver uploads through one wrapper, the backup through
    // another, both to the same directory.
    let shipping = FaultStore::new(local());
    let backing = FaultStore::new(local());
    let archive = ArchiveTarget::new(StoreConfig::Custom(Arc::new(shipping.clone())), "db");
    let target = ArchiveTarget::new(StoreConfig::Custom(Arc::new(backing.clone())), "db");
    let db = open(&tmp.path().join("data"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &archive, fast()).unwrap();
    common::workload(&db, rel, 5, 10, 0);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    // The backup's first uploads are slow, so the archiver ships log
    // while it runs; writers go on meanwhile.
    for _ in 0..3 {
        backing.inject(Op::Put, Fault::Slow(Duration::from_millis(200)));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                insert(&db, rel, &common::value(i, 300));
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // Once the backup has uploaded its first file (its start LSN fixed by
    // then), the store loses the archiver's next uploads: chunks of the
    // log between the backup's start and its end among them.
    let loser = {
        let (backing, shipping) = (backing.clone(), shipping.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while backing.stats().puts == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the backup never uploaded"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            for _ in 0..4 {
                shipping.inject(Op::Put, Fault::Lost);
            }
        })
    };
    let result = keel_archive::backup(&db, &archiver, &target, &options());
    loser.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let err = result.expect_err("a backup whose log the store lost was reported taken");
    assert!(
        matches!(err, ArchiveError::BackupLogMissing { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not all in the archive"), "{err}");
    let remote = Remote::open(&target, Duration::from_secs(5)).unwrap();
    assert!(
        remote.list_backups().unwrap().is_empty(),
        "no backup has a manifest"
    );
    let folders = remote.list_backup_folders().unwrap();
    assert_eq!(folders.len(), 1, "the incomplete backup's folder is kept");
    drop(archiver);
}

#[test]
fn a_backup_cut_short_leaves_the_archive_usable() {
    let s = setup();
    common::workload(&s.db, s.rel, 5, 10, 0);
    let complete = take_backup(&s);
    common::workload(&s.db, s.rel, 5, 10, 0);
    // A second backup killed after uploading its first file: the sink
    // fails as a dying process would stop, and no manifest is written.
    let remote = Remote::open(&s.target, Duration::from_secs(5)).unwrap();
    let mut uploaded = 0;
    let cut = s.db.backup(|f, bytes| -> keel_archive::Result<()> {
        if uploaded == 1 {
            return Err(ArchiveError::Config("killed".into()));
        }
        let c = keel::recovery::Control::decode(bytes, Path::new("control")).unwrap();
        let dir = remote.backup_dir(1, c.scan_start(), 0x5EED);
        remote.put_create(&ObjectPath::from(format!("{dir}/files/{}", f.name)), bytes)?;
        uploaded += 1;
        Ok(())
    });
    assert!(cut.is_err());
    assert_eq!(remote.list_backups().unwrap().len(), 1);
    common::workload(&s.db, s.rel, 5, 10, 0);
    archive_all(&s);
    let restored = s._tmp.path().join("restored");
    let report = restore_into(&s, &restored).unwrap();
    assert_eq!(report.backup.start, complete.start);
    assert_eq!(rows(&restored, "r").len(), 150);
}

#[test]
fn a_manifest_round_trips_and_every_damage_is_an_error() {
    let m = Manifest {
        database_id: 0x0123_4567_89ab_cdef,
        timeline: 1,
        start: keel::Lsn(0x12000),
        end: keel::Lsn(0x34567),
        checkpoint_end: keel::Lsn(0x12345),
        segment_size: 1 << 24,
        max_batch_bytes: 1 << 20,
        started_us: Some(1_767_225_600_000_000),
        files: vec![
            keel::backup::BackupFile {
                name: "control".into(),
                size: 64,
                crc32c: 0xdead_beef,
            },
            keel::backup::BackupFile {
                name: "rel/1.heap".into(),
                size: 8192,
                crc32c: 7,
            },
        ],
    };
    let bytes = m.encode();
    assert_eq!(Manifest::decode("m", &bytes).unwrap(), m);
    for i in 0..bytes.len() {
        for bit in [0x01, 0x20, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            assert!(Manifest::decode("m", &b).is_err(), "flip of byte {i}");
        }
    }
    for len in 0..bytes.len() - 1 {
        let err = Manifest::decode("backups/m", &bytes[..len]).unwrap_err();
        assert!(err.to_string().contains("backups/m"), "{err}");
    }
    // A name outside the data directory is refused even with a good CRC.
    let evil = Manifest {
        files: vec![keel::backup::BackupFile {
            name: "../../etc/passwd".into(),
            size: 1,
            crc32c: 1,
        }],
        ..m
    };
    let bytes = evil.encode();
    let err = Manifest::decode("m", &bytes).unwrap_err();
    assert!(
        err.to_string().contains("is not a file a backup holds"),
        "{err}"
    );
    // The error's place is where the line starts, and it names the line.
    let at = String::from_utf8(bytes).unwrap().find("file ").unwrap();
    let keel_archive::ArchiveError::Corrupt { place, reason, .. } = err else {
        panic!("{err}");
    };
    assert_eq!(place, keel_archive::Place::Object(at as u64), "{reason}");
    assert!(reason.starts_with("manifest line 10:"), "{reason}");
}

/// A pin keeps the log from its LSN through any number of checkpoints,
/// beside the archiver's hold, and dropping it lets checkpoints retire
/// that log again.
#[test]
fn a_log_pin_outlives_checkpoints_and_coexists_with_the_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(tmp.path());
    let rel = db.create_relation("r").unwrap();
    db.checkpoint().unwrap();
    let pinned_at = db.durable_lsn();
    let pin = db.pin_log_from(pinned_at);
    db.hold_log_from(Some(pinned_at));
    // The hold moves on (as an archiver's does); the pin stays.
    common::workload(&db, rel, 40, 20, 5);
    db.hold_log_from(Some(db.durable_lsn()));
    db.checkpoint().unwrap();
    assert!(
        db.log_reader(pinned_at).unwrap().next().unwrap().is_ok(),
        "the pinned log was retired"
    );
    drop(pin);
    common::workload(&db, rel, 2, 1, 0);
    db.checkpoint().unwrap();
    let read = db
        .log_reader(pinned_at)
        .and_then(|mut r| r.next().transpose().map_err(Into::into));
    assert!(read.is_err(), "the log stayed after the pin was dropped");
}

#[test]
fn a_file_many_parts_long_is_streamed_and_restores_whole() {
    let s = setup();
    // About 2.5 MiB of rows in one heap file, uploaded in 64 KiB parts:
    // the upload holds one part in memory, never the file.
    let value = vec![0xA5u8; 1000];
    for chunk in 0..50 {
        let mut tx = s.db.begin().unwrap();
        for i in 0..50u32 {
            let mut v = value.clone();
            v[..8].copy_from_slice(&(u64::from(chunk * 50 + i)).to_le_bytes());
            tx.insert(s.rel, &v).unwrap();
        }
        tx.commit().unwrap();
    }
    let part = 64 << 10;
    let options = BackupOptions {
        part_size_bytes: part,
        ..options()
    };
    let m = keel_archive::backup(&s.db, s.archiver.as_ref().unwrap(), &s.target, &options).unwrap();
    let heap = m.files.iter().max_by_key(|f| f.size).unwrap();
    assert!(heap.size > 20 * part as u64, "{} bytes", heap.size);
    let object = backup_folder(&s, &m).join("files").join(&heap.name);
    let stored = std::fs::read(&object).unwrap();
    assert_eq!(stored.len() as u64, heap.size);
    assert_eq!(keel::checksum::crc32c(&stored), heap.crc32c);
    let remote = Remote::open(&s.target, Duration::from_secs(5)).unwrap();
    let folder = backup_folder(&s, &m);
    let rel = folder.strip_prefix(&s.root).unwrap().to_str().unwrap();
    let sum = remote
        .crc_streamed(&ObjectPath::from(format!("{rel}/files/{}", heap.name)))
        .unwrap();
    assert_eq!((sum.size, sum.crc32c), (heap.size, heap.crc32c));
    archive_all(&s);
    let restored = s._tmp.path().join("restored");
    restore_into(&s, &restored).unwrap();
    let got = rows(&restored, "r");
    assert_eq!(got.len(), 2500);
    let keys: BTreeSet<u64> = got
        .iter()
        .map(|r| u64::from_le_bytes(r[..8].try_into().unwrap()))
        .collect();
    assert_eq!(keys.len(), 2500);
}

#[test]
fn a_part_size_below_a_page_is_refused() {
    let s = setup();
    let options = BackupOptions {
        part_size_bytes: 100,
        ..options()
    };
    let e =
        keel_archive::backup(&s.db, s.archiver.as_ref().unwrap(), &s.target, &options).unwrap_err();
    assert!(e.to_string().contains("part size 100 bytes"), "{e}");
}

#[test]
fn a_sink_that_reads_a_file_in_part_is_an_error_naming_it() {
    let s = setup();
    common::workload(&s.db, s.rel, 20, 10, 0);
    let mut seen = Vec::new();
    let err =
        s.db.backup_streaming(
            |f: &mut keel::backup::BackupReader<'_>| -> keel::Result<()> {
                seen.push((f.name().to_string(), f.size()));
                // One page of each file (a part size is rounded down to
                // whole pages), not the rest.
                let part = f.read_part(keel::page::PAGE_SIZE + 100)?.unwrap();
                assert_eq!(
                    part.len() as u64,
                    f.size().min(keel::page::PAGE_SIZE as u64),
                    "{}",
                    f.name()
                );
                Ok(())
            },
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
    // Files of one page at most are read whole and described; the first
    // longer one is the error, and the backup stops there.
    let (heap, _) = seen.last().unwrap();
    assert!(
        seen.iter()
            .rev()
            .skip(1)
            .all(|(_, size)| *size <= keel::page::PAGE_SIZE as u64),
        "{seen:?}"
    );
    assert!(
        seen.last().unwrap().1 > keel::page::PAGE_SIZE as u64,
        "{seen:?}"
    );
    assert!(
        err.contains(heap) && err.contains("must read each file to its end"),
        "{err}"
    );
}

/// What a restore killed after its first file leaves (the control file as
/// `control.restoring`, nothing else finished) is named as an unfinished
/// restore by an open and by a second restore into it.
#[test]
fn an_unfinished_restore_is_named_by_an_open_and_by_a_restore() {
    let s = setup();
    insert(&s.db, s.rel, b"row");
    take_backup(&s);
    archive_all(&s);
    let restored = s._tmp.path().join("restored");
    std::fs::create_dir_all(restored.join("rel")).unwrap();
    std::fs::write(restored.join("control.restoring"), b"partial").unwrap();
    let open_err = Database::open(&restored, config()).unwrap_err().to_string();
    assert!(
        open_err.contains("unfinished restore (control.restoring"),
        "{open_err}"
    );
    let again = restore_into(&s, &restored).unwrap_err().to_string();
    assert!(again.contains("holds an unfinished restore"), "{again}");
}

/// A backup of a database restored onto timeline 2 is filed under
/// timeline 2, where its archiver ships its log, even when the options
/// name the default timeline 1; so a restore of timeline 1, which the
/// original database goes on writing, never replays timeline 1's log onto
/// timeline 2's copy. An explicit timeline other than the archiver's is
/// refused.
#[test]
fn a_backup_is_filed_under_the_timeline_its_archiver_ships() {
    let s = setup();
    for i in 0..20 {
        insert(&s.db, s.rel, &value(i, 100));
    }
    let first = take_backup(&s);
    for i in 0..20 {
        insert(&s.db, s.rel, format!("timeline 1 only {i}").as_bytes());
    }
    archive_all(&s);
    let branch = s._tmp.path().join("branch");
    let report = keel_archive::restore(
        &s.target,
        &branch,
        1,
        RestoreTarget::Lsn(first.end),
        config(),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(report.timeline, 2);
    let b = open(&branch);
    let rel = b.relation("r").unwrap().unwrap();
    for i in 0..20 {
        insert(&b, rel, format!("timeline 2 only {i}").as_bytes());
    }
    let archiver = Archiver::start(b.clone(), &s.target, fast()).unwrap();
    assert_eq!(archiver.timeline(), 2);
    let refused = keel_archive::backup(
        &b,
        &archiver,
        &s.target,
        &BackupOptions {
            timeline: 3,
            ..options()
        },
    )
    .unwrap_err();
    assert!(refused.to_string().contains("timeline 2"), "{refused}");
    let m = keel_archive::backup(&b, &archiver, &s.target, &options()).unwrap();
    assert_eq!(m.timeline, 2);
    archiver.stop().unwrap();
    Arc::try_unwrap(b).ok().unwrap().close().unwrap();
    // Timeline 1 runs on past the branch's backup.
    workload(&s.db, s.rel, 40, 10, 0);
    archive_all(&s);
    let expected = sorted_rows(&s.db, "r");
    let whole = s._tmp.path().join("timeline-1");
    let report = restore_into(&s, &whole).unwrap();
    assert_eq!(report.backup.timeline, 1);
    assert_eq!(rows(&whole, "r"), expected);
}

/// A backup whose start LSN (the scan start: a running transaction's
/// first LSN, which is the log's end when that transaction began to
/// write) lies in a segment's tail, the transaction's first record having
/// gone to the next segment, and whose first archived chunk begins there:
/// the restore writes the segment holding the start LSN, so the open
/// finds the log from there.
#[test]
fn a_backup_starting_in_a_segments_padding_restores() {
    let s = setup();
    let segment = config().wal.segment_size_bytes as u64;
    // Commit small transactions until the log's end is a few bytes short
    // of a segment's end.
    let mut i = 0;
    loop {
        let left = segment - s.db.wal_end().0 % segment;
        if (1..200).contains(&left) && s.db.wal_end().0 > segment {
            break;
        }
        insert(&s.db, s.rel, &value(i, 60 + i % 50));
        i += 1;
    }
    let end = s.db.wal_end();
    archive_all(&s);
    let mut open_tx = s.db.begin().unwrap();
    open_tx.insert(s.rel, &value(7, 1000)).unwrap();
    let m = take_backup(&s);
    assert_eq!(m.start, end, "the open transaction holds the scan start");
    open_tx.commit().unwrap();
    let expected = sorted_rows(&s.db, "r");
    archive_all(&s);
    let restored = s._tmp.path().join("restored");
    restore_into(&s, &restored).unwrap();
    assert_eq!(rows(&restored, "r"), expected);
}

/// Holds the exclusive create of a heap file, once armed, until the test
/// lets it go.
struct GateCreate {
    armed: AtomicBool,
    entered: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    release: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl Watch for GateCreate {
    fn before(&self, req: &keel_io::Request) -> bool {
        if let keel_io::Request::Open { path, options } = req
            && options.create_new
            && path.extension().is_some_and(|e| e == "heap")
            && self.armed.swap(false, Ordering::SeqCst)
            && let Some(tx) = self.entered.lock().unwrap().take()
        {
            tx.send(()).unwrap();
            // A dropped sender (the test failed) also lets it go.
            let rx = self.release.lock().unwrap().take().unwrap();
            let _ = rx.recv();
        }
        false
    }
}

/// A relation whose create was logged before the backup's checkpoint and
/// whose file was made after the backup listed the relation files: the
/// restore has its file and its committed rows.
#[test]
fn a_relation_whose_file_is_made_after_the_backup_lists_the_files_is_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let target = local_target(tmp.path());
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let gate = Arc::new(Watched {
        inner: keel_io::open_backend(&config().io).unwrap(),
        watch: GateCreate {
            armed: AtomicBool::new(false),
            entered: std::sync::Mutex::new(Some(entered_tx)),
            release: std::sync::Mutex::new(Some(release_rx)),
        },
    });
    let io: Arc<dyn keel_io::AsyncIo> = gate.clone();
    let db = Arc::new(Database::open_with_io(tmp.path().join("data"), config(), io).unwrap());
    let rel = db.create_relation("r").unwrap();
    insert(&db, rel, b"before");
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    gate.watch.armed.store(true, Ordering::SeqCst);
    std::thread::scope(|s| {
        let release = release;
        let late = s.spawn(|| {
            let id = db.create_relation("late").unwrap();
            for i in 0..30 {
                insert(&db, id, &value(i, 500));
            }
        });
        // The create's record is durable; its file is not made yet. The
        // backup starts now; the file is made a moment later (the backup
        // may wait for it).
        entered.recv().unwrap();
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            release.send(()).unwrap();
        });
        keel_archive::backup(&db, &archiver, &target, &options()).unwrap();
        late.join().unwrap();
    });
    let expected = sorted_rows(&db, "late");
    assert_eq!(expected.len(), 30);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    let restored = tmp.path().join("restored");
    keel_archive::restore(
        &target,
        &restored,
        1,
        RestoreTarget::End,
        config(),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(rows(&restored, "late"), expected);
    assert_eq!(rows(&restored, "r"), vec![b"before".to_vec()]);
}
