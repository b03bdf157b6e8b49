//! Shared helpers of the archive tests: a small database, a workload, and
//! reading the same records from the log and from the archive.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

pub mod standby;

use std::sync::Arc;
use std::time::Duration;

use keel::buffer::BufferConfig;
use keel::types::Lsn;
use keel::wal::RecordHeader;
use keel::{Config, Database, RelationId};
use keel_archive::{
    ArchiveError, ArchiveReader, ArchiveTarget, Archiver, ArchiverOptions, Put, Remote,
};

/// A record: its header and payload.
pub type Rec = (RecordHeader, Vec<u8>);

/// Small segments (so a workload crosses many) and a small pool.
pub fn config() -> Config {
    let mut c = Config {
        buffer: BufferConfig::with_frames(64),
        checkpoint_interval: None,
        ..Config::default()
    };
    c.wal.segment_size_bytes = 128 << 10;
    c.wal.max_batch_bytes = 32 << 10;
    c.wal.min_wal_size_bytes = 0;
    c
}

/// An archive in a new `store` directory under `tmp`, named `db`.
pub fn local_target(tmp: &std::path::Path) -> ArchiveTarget {
    let root = tmp.join("store");
    std::fs::create_dir_all(&root).unwrap();
    ArchiveTarget::new(keel_archive::StoreConfig::Local(root), "db")
}

pub fn open(dir: &std::path::Path) -> Arc<Database> {
    Arc::new(Database::open(dir, config()).unwrap())
}

/// Archiver options that make a test quick: short delays and backoff,
/// chunks of one segment's size at most.
pub fn fast() -> ArchiverOptions {
    ArchiverOptions {
        max_chunk_bytes: keel::wal::record::MAX_RECORD_SIZE,
        max_delay: Duration::from_millis(20),
        poll_interval: Duration::from_millis(2),
        op_timeout: Duration::from_secs(5),
        max_backoff: Duration::from_millis(20),
        stop_timeout: Duration::from_secs(10),
        ..ArchiverOptions::default()
    }
}

pub fn value(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// `txns` transactions of `rows` inserts of 300 bytes each, a checkpoint
/// every `checkpoint_every` transactions.
pub fn workload(db: &Database, rel: RelationId, txns: usize, rows: usize, checkpoint_every: usize) {
    for t in 0..txns {
        let mut tx = db.begin().unwrap();
        for r in 0..rows {
            tx.insert(rel, &value(t * rows + r, 300)).unwrap();
        }
        tx.commit().unwrap();
        if checkpoint_every > 0 && t % checkpoint_every == checkpoint_every - 1 {
            db.checkpoint().unwrap();
        }
    }
}

/// The log's records from `from` to its durable end.
pub fn log_records(db: &Database, from: Lsn) -> Vec<Rec> {
    db.log_reader(from)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.header, r.payload)
        })
        .collect()
}

/// The archive's records of timeline 1, verified chunk by chunk.
pub fn archive_records(reader: &ArchiveReader, database_id: u64) -> Vec<Rec> {
    let mut out = Vec::new();
    reader
        .visit(1, Some(database_id), |chunk| {
            out.extend(chunk.records().map(|(h, p)| (*h, p.to_vec())));
            Ok(())
        })
        .unwrap();
    out
}

/// Archives a workload through `target`, waits for it, stops, and checks
/// the archive: every chunk decodes, the chain is continuous, and its
/// records are exactly the log's from where archiving began.
pub fn archive_and_compare(target: &ArchiveTarget, options: ArchiverOptions) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rel = db.create_relation("r").unwrap();
    let start = db.durable_lsn();
    let archiver = Archiver::start(db.clone(), target, options).unwrap();
    // No checkpoints: the log must stay to be compared (once archived,
    // a checkpoint may retire it).
    workload(&db, rel, 40, 20, 0);
    let durable = db.durable_lsn();
    archiver
        .wait_archived(durable, Duration::from_secs(20))
        .unwrap();
    let status = archiver.status();
    assert!(status.chunks >= 4, "{status:?}");
    assert!(!status.failed, "{status:?}");
    let end = archiver.stop().unwrap();
    assert!(end >= durable);
    let reader = ArchiveReader::open(target, Duration::from_secs(5)).unwrap();
    let report = reader.verify(1, Some(db.database_id())).unwrap();
    assert_eq!(report.start, start);
    assert!(report.end >= durable.min(report.end) && report.end <= end);
    assert!(
        report.min_commit_time_us > 0 && report.min_commit_time_us <= report.max_commit_time_us
    );
    let archived = archive_records(&reader, db.database_id());
    let logged = log_records(&db, start);
    assert_eq!(archived.len(), logged.len());
    assert!(
        archived == logged,
        "the archive's records differ from the log's"
    );
    assert_eq!(report.records, logged.len() as u64);
}

/// After a clean stop and a restart the archiver continues at the newest
/// chunk's end, and the timeline stays one continuous chain.
pub fn continues_after_a_restart(target: &ArchiveTarget) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rel = db.create_relation("r").unwrap();
    let start = db.durable_lsn();
    let a = Archiver::start(db.clone(), target, fast()).unwrap();
    workload(&db, rel, 10, 10, 0);
    let first_end = a.stop().unwrap();
    Arc::try_unwrap(db).unwrap().close().unwrap();
    let db = open(dir.path());
    let a = Archiver::start(db.clone(), target, fast()).unwrap();
    workload(&db, rel, 10, 10, 0);
    a.wait_archived(db.durable_lsn(), Duration::from_secs(10))
        .unwrap();
    a.stop().unwrap();
    let reader = ArchiveReader::open(target, Duration::from_secs(5)).unwrap();
    let report = reader.verify(1, Some(db.database_id())).unwrap();
    assert_eq!(reader.timelines().unwrap(), vec![1]);
    assert_eq!(report.start, start);
    assert!(report.end > first_end);
    let archived = archive_records(&reader, db.database_id());
    assert!(archived == log_records(&db, start));
}

/// A create-only put that finds the name taken by other bytes means
/// another writer: a copy of the data directory (same database id)
/// archiving its own, different history to the same prefix. The second
/// writer stops with a split-brain error; the first one's objects are
/// untouched and its timeline still verifies.
pub fn second_writer_is_stopped(target: &ArchiveTarget) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rel = db.create_relation("r").unwrap();
    Arc::try_unwrap(db).unwrap().close().unwrap();
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let (db1, db2) = (open(dir.path()), open(copy.path()));
    assert_eq!(db1.database_id(), db2.database_id());
    // Both start on the empty prefix, at the same LSN.
    let a1 = Archiver::start(db1.clone(), target, fast()).unwrap();
    let a2 = Archiver::start(db2.clone(), target, fast()).unwrap();
    workload(&db1, rel, 5, 10, 0);
    a1.wait_archived(db1.durable_lsn(), Duration::from_secs(10))
        .unwrap();
    let before = snapshot(target);
    assert!(!before.is_empty());
    // The copy commits something else from the same LSN.
    let mut tx = db2.begin().unwrap();
    tx.insert(rel, b"another history").unwrap();
    tx.commit().unwrap();
    let err = a2
        .wait_archived(db2.durable_lsn(), Duration::from_secs(10))
        .unwrap_err();
    match &err {
        ArchiveError::Failed(e) => {
            assert!(matches!(**e, ArchiveError::SplitBrain { .. }), "{e}")
        }
        e => panic!("expected a split-brain failure, got {e}"),
    }
    assert!(err.to_string().contains("another writer"), "{err}");
    assert!(a2.status().failed);
    assert!(
        snapshot(target) == before,
        "the first writer's chunks are intact"
    );
    assert!(a2.stop().is_err());
    a1.stop().unwrap();
    let reader = ArchiveReader::open(target, Duration::from_secs(5)).unwrap();
    reader.verify(1, Some(db1.database_id())).unwrap();
}

/// Create-only puts: a second put of the same bytes is a retried upload;
/// of other bytes, another writer, and the first bytes stay.
pub fn create_only_puts(target: &ArchiveTarget) {
    let remote = Remote::open(target, Duration::from_secs(5)).unwrap();
    let path = remote.chunk_path(1, Lsn(4096));
    assert_eq!(
        remote.put_create(&path, b"chunk one").unwrap(),
        Put::Created
    );
    assert_eq!(
        remote.put_create(&path, b"chunk one").unwrap(),
        Put::AlreadyThere
    );
    let e = remote.put_create(&path, b"chunk two").unwrap_err();
    assert!(matches!(e, ArchiveError::SplitBrain { .. }), "{e}");
    assert_eq!(remote.get(&path).unwrap(), b"chunk one");
}

/// Every object under the target's prefix: name and bytes, sorted.
pub fn snapshot(target: &ArchiveTarget) -> Vec<(String, Vec<u8>)> {
    use futures::TryStreamExt;
    let store = target.build_store().unwrap();
    let prefix = object_store::path::Path::from(target.prefix.trim_matches('/'));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let metas: Vec<object_store::ObjectMeta> =
            store.list(Some(&prefix)).try_collect().await.unwrap();
        let mut out = Vec::new();
        for m in metas {
            let bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
            out.push((m.location.to_string(), bytes.to_vec()));
        }
        out.sort();
        out
    })
}

pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        match e.file_type().unwrap().is_dir() {
            true => copy_dir(&e.path(), &target),
            false => {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
}

/// A base backup taken while a workload runs, then more commits archived,
/// then a restore into a new directory: every row is there, and a backup
/// cut short (files but no manifest) is not used.
pub fn backup_and_restore(target: &ArchiveTarget) {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("data"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), target, fast()).unwrap();
    workload(&db, rel, 5, 10, 0);
    let options = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..keel_archive::BackupOptions::default()
    };
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || workload(&db, rel, 10, 10, 3))
    };
    let m = keel_archive::backup(&db, &archiver, target, &options).unwrap();
    writer.join().unwrap();
    // A later backup cut short after its first file: never chosen.
    let remote = Remote::open(target, Duration::from_secs(5)).unwrap();
    let mut first = true;
    let _ = db.backup(|f, bytes| -> keel_archive::Result<()> {
        if !first {
            return Err(ArchiveError::Config("killed".into()));
        }
        first = false;
        let c = keel::recovery::Control::decode(bytes, std::path::Path::new("control")).unwrap();
        let path = format!(
            "{}/files/{}",
            remote.backup_dir(1, c.scan_start(), 0x5EED),
            f.name
        );
        remote
            .put_create(&object_store::path::Path::from(path), bytes)
            .map(|_| ())
    });
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    let restored = tmp.path().join("restored");
    let report = keel_archive::restore(
        target,
        &restored,
        1,
        keel_archive::RestoreTarget::End,
        config(),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(report.backup, m);
    let db2 = Database::open(&restored, config()).unwrap();
    let rel2 = db2.relation("r").unwrap().unwrap();
    let n = db2.begin().unwrap().scan(rel2).unwrap().count();
    assert_eq!(n, 150);
    db2.close().unwrap();
}

/// A relation file of about 10 MiB backed up in parts of 5 MiB (S3's
/// smallest), so it goes up as a multipart upload over the wire; the
/// backup checks as usable (sizes and CRC32C read back as a stream) and
/// restores every row.
pub fn streamed_backup_and_restore(target: &ArchiveTarget) {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("data"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), target, fast()).unwrap();
    let rows = 10_000;
    for t in 0..rows / 500 {
        let mut tx = db.begin().unwrap();
        for r in 0..500 {
            tx.insert(rel, &value(t * 500 + r, 1000)).unwrap();
        }
        tx.commit().unwrap();
    }
    let part = 5 << 20;
    let options = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(60),
        part_size_bytes: part,
        ..keel_archive::BackupOptions::default()
    };
    let m = keel_archive::backup(&db, &archiver, target, &options).unwrap();
    let heap = m.files.iter().map(|f| f.size).max().unwrap();
    assert!(heap > part as u64, "a heap file of {heap} bytes: one part");
    let remote = Remote::open(target, Duration::from_secs(30)).unwrap();
    let entry = remote.list_backups().unwrap().pop().unwrap();
    assert_eq!(
        keel_archive::backup_check::check_backup(&remote, &entry).unwrap(),
        m
    );
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    let restored = tmp.path().join("restored");
    let report = keel_archive::restore(
        target,
        &restored,
        1,
        keel_archive::RestoreTarget::End,
        config(),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(report.backup, m);
    let db2 = Database::open(&restored, config()).unwrap();
    let rel2 = db2.relation("r").unwrap().unwrap();
    assert_eq!(db2.begin().unwrap().scan(rel2).unwrap().count(), rows);
    db2.close().unwrap();
}

/// Point-in-time restore through the store: a restore to a transaction
/// keeps exactly the commits up to it and starts timeline 2 (its history
/// object uploaded create-only); an archiver on the restored database
/// continues timeline 2, and a restore of timeline 2 follows timeline 1 up
/// to the switch, then timeline 2.
pub fn restore_to_a_point_and_follow_the_timeline(target: &ArchiveTarget) {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("data"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), target, fast()).unwrap();
    let insert = |db: &Database, i: usize| {
        let mut tx = db.begin().unwrap();
        let id = tx.id();
        tx.insert(rel, &value(i, 40)).unwrap();
        tx.commit().unwrap();
        id
    };
    for i in 0..5 {
        insert(&db, i);
    }
    let options = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..keel_archive::BackupOptions::default()
    };
    keel_archive::backup(&db, &archiver, target, &options).unwrap();
    let txns: Vec<_> = (5..20).map(|i| insert(&db, i)).collect();
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    let count = |dir: &std::path::Path| {
        let db = Database::open(dir, config()).unwrap();
        let rel = db.relation("r").unwrap().unwrap();
        let n = db.begin().unwrap().scan(rel).unwrap().count();
        db.close().unwrap();
        n
    };
    let restore = |dir: &std::path::Path, timeline, t| {
        keel_archive::restore(target, dir, timeline, t, config(), Duration::from_secs(10)).unwrap()
    };
    let a = tmp.path().join("a");
    let report = restore(&a, 1, keel_archive::RestoreTarget::Txn(txns[4]));
    assert_eq!(report.timeline, 2);
    assert_eq!(count(&a), 10);
    let remote = Remote::open(target, Duration::from_secs(5)).unwrap();
    let histories = remote.list_histories().unwrap();
    assert_eq!(histories.len(), 1);
    assert_eq!((histories[0].timeline, histories[0].parent), (2, 1));
    let db = open(&a);
    let archiver = Archiver::start(db.clone(), target, fast()).unwrap();
    for i in 100..103 {
        insert(&db, i);
    }
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    let b = tmp.path().join("b");
    let report = restore(&b, 2, keel_archive::RestoreTarget::End);
    assert_eq!(report.timeline, 2);
    assert_eq!(count(&b), 13);
    // Timeline 1 is still whole: its end has all twenty.
    let c = tmp.path().join("c");
    restore(&c, 1, keel_archive::RestoreTarget::End);
    assert_eq!(count(&c), 20);
}

/// The rows of relation `name` in the database at `dir`, sorted.
pub fn rows(dir: &std::path::Path, name: &str) -> Vec<Vec<u8>> {
    let db = Database::open(dir, config()).unwrap();
    let out = sorted_rows(&db, name);
    db.close().unwrap();
    out
}

/// The rows of relation `name` in `db`, sorted.
pub fn sorted_rows(db: &Database, name: &str) -> Vec<Vec<u8>> {
    let rel = db.relation(name).unwrap().unwrap();
    let mut out: Vec<Vec<u8>> = db
        .begin()
        .unwrap()
        .scan(rel)
        .unwrap()
        .map(|r| r.unwrap().1)
        .collect();
    out.sort();
    out
}

/// Archives a workload that fills several segments and waits for it.
/// Returns the database (its log kept: no checkpoints), where archiving
/// began, and the archiver's final status.
pub fn archive_segments(
    dir: &std::path::Path,
    target: &ArchiveTarget,
    options: ArchiverOptions,
    txns: usize,
) -> (Arc<Database>, Lsn, keel_archive::ArchiverStatus) {
    let db = open(dir);
    let rel = db.create_relation("r").unwrap();
    let start = db.durable_lsn();
    let archiver = Archiver::start(db.clone(), target, options).unwrap();
    workload(&db, rel, txns, 20, 0);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    let status = archiver.status();
    archiver.stop().unwrap();
    (db, start, status)
}

/// The archiver compacts completed segments while it runs (each one once
/// the next segment's first chunk has landed), deleting nothing else:
/// the listing covers the log with compacted objects then chunks, no
/// leftovers, and the records are the log's. A catch-up pass afterwards
/// (`keel archive compact`) leaves only the unfinished last segment as
/// chunks, and a second pass has nothing to do.
pub fn the_archiver_compacts_completed_segments(target: &ArchiveTarget) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rel = db.create_relation("r").unwrap();
    let start = db.durable_lsn();
    let archiver = Archiver::start(db.clone(), target, fast()).unwrap();
    workload(&db, rel, 60, 20, 0);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while archiver.status().compacted_objects < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = archiver.status();
    archiver.stop().unwrap();
    assert!(status.compacted_objects >= 2, "{status:?}");
    assert!(status.compaction_error.is_none(), "{status:?}");
    // A stop may cut a compaction between its upload and its deletes:
    // leftovers are legal then, and the next pass finishes them.
    let remote = Remote::open(target, Duration::from_secs(5)).unwrap();
    let listing = remote.list_timeline(1).unwrap();
    let compacted =
        |l: &keel_archive::Listing| l.covering.iter().filter(|o| o.is_compacted()).count();
    assert!(compacted(&listing) >= 2, "{listing:?}");
    let pass = keel_archive::compact_timeline(&remote, 1, None, &|| false).unwrap();
    let listing = remote.list_timeline(1).unwrap();
    assert!(listing.leftovers.is_empty(), "{listing:?}");
    let n = compacted(&listing);
    // Compacted objects first; only the last segment may still be chunks.
    assert!(
        listing.covering[..n].iter().all(|o| o.is_compacted()),
        "{listing:?}"
    );
    assert_eq!(listing.covering.len() - n, pass.chunks_pending as usize);
    let reader = ArchiveReader::open(target, Duration::from_secs(5)).unwrap();
    let report = reader.verify(1, Some(db.database_id())).unwrap();
    assert_eq!(report.compacted, n as u64);
    assert_eq!(report.start, start);
    assert!(archive_records(&reader, db.database_id()) == log_records(&db, start));
    let again = keel_archive::compact_timeline(&remote, 1, None, &|| false).unwrap();
    assert_eq!((again.objects, again.chunks_deleted), (0, 0), "{again:?}");
}

/// `keel archive compact` on an archive whose archiver did not compact:
/// every completed segment becomes one object, the records stay the
/// log's, and a second pass has nothing to do.
pub fn catch_up_compaction(target: &ArchiveTarget) {
    let dir = tempfile::tempdir().unwrap();
    let options = ArchiverOptions {
        compact: false,
        ..fast()
    };
    let (db, start, _) = archive_segments(dir.path(), target, options, 40);
    let remote = Remote::open(target, Duration::from_secs(5)).unwrap();
    let before = remote.list_chunks(1).unwrap();
    assert!(before.iter().all(|o| !o.is_compacted()));
    let r = keel_archive::compact_timeline(&remote, 1, Some(db.database_id()), &|| false).unwrap();
    assert!(r.objects >= 2, "{r:?}");
    let after = remote.list_chunks(1).unwrap();
    assert_eq!(
        after.len() as u64,
        before.len() as u64 - r.chunks_deleted + r.objects
    );
    assert!(after.len() < before.len());
    let reader = ArchiveReader::open(target, Duration::from_secs(5)).unwrap();
    assert!(archive_records(&reader, db.database_id()) == log_records(&db, start));
    let again = keel_archive::compact_timeline(&remote, 1, None, &|| false).unwrap();
    assert_eq!(again.objects, 0);
    assert_eq!(again.chunks_pending, r.chunks_pending);
}

/// `keel archive cleanup`'s rules through the store: a folder without a
/// manifest is a candidate only once its newest object is older than the
/// threshold, its deletion takes every object in it, and a folder with a
/// manifest is never a candidate.
pub fn cleanup_removes_only_incomplete_backups(target: &ArchiveTarget) {
    use keel_archive::cleanup::{Removed, incomplete_backups, remove_incomplete};
    let remote = Remote::open(target, Duration::from_secs(5)).unwrap();
    let complete = remote.backup_dir(1, Lsn(0x1000), 0xAA);
    let killed = remote.backup_dir(1, Lsn(0x2000), 0xBB);
    for (dir, names) in [
        (&complete, &["files/control", "files/rel/1", "manifest"][..]),
        (&killed, &["files/control", "files/rel/1"][..]),
    ] {
        for n in names {
            let path = object_store::path::Path::from(format!("{dir}/{n}"));
            remote.put_create(&path, n.as_bytes()).unwrap();
        }
    }
    let day = Duration::from_secs(24 * 3600);
    assert!(incomplete_backups(&remote, day).unwrap().is_empty());
    // Stores keep modification times to the second.
    std::thread::sleep(Duration::from_millis(1100));
    let found = incomplete_backups(&remote, Duration::from_millis(1)).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].folder, killed);
    assert_eq!(found[0].objects, 2);
    // Rule 3: a manifest that appears before the delete spares it.
    let late = object_store::path::Path::from(format!("{killed}/manifest"));
    remote.put_create(&late, b"m").unwrap();
    assert!(matches!(
        remove_incomplete(&remote, &found[0], Duration::from_millis(1)).unwrap(),
        Removed::Spared(_)
    ));
    remote.delete(&late).unwrap();
    assert_eq!(
        remove_incomplete(&remote, &found[0], Duration::from_millis(1)).unwrap(),
        Removed::Deleted(2)
    );
    let left = remote.list_backup_folders().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (left[0].folder.as_str(), left[0].manifest, left[0].objects),
        (complete.as_str(), true, 3)
    );
}

/// The data directory of a primary on the simulated disk.
pub const SIM_PRIMARY: &str = "/keel-sim-primary";

/// Opens (creating it if needed) the primary at [`SIM_PRIMARY`] on `sim`
/// as an embedder would, with the default `WalConfig::hold_at_open`
/// (off): a reopened primary's log is held only because its first
/// archiver marked the directory (the status file, synced when the
/// archiver started), so its checkpoints (the one ending recovery runs in
/// the background) retire nothing its next archiver has not shipped.
pub fn open_sim_primary(sim: &Arc<keel_io::sim::SimIo>) -> Arc<Database> {
    let io = Arc::clone(sim) as Arc<dyn keel_io::AsyncIo>;
    let config = config();
    assert!(!config.wal.hold_at_open);
    Arc::new(Database::open_with_io(SIM_PRIMARY, config, io).expect("open the primary"))
}

/// A new primary on a simulated disk seeded by `seed`, with relation `r`
/// and no archiver yet, and a local archive target under `root`: the
/// target, the simulator and the database.
pub fn unarchived_sim_primary(
    root: &std::path::Path,
    seed: u64,
) -> (ArchiveTarget, Arc<keel_io::sim::SimIo>, Arc<Database>) {
    let store = root.join(format!("store-{seed}"));
    std::fs::create_dir_all(&store).unwrap();
    let t = ArchiveTarget::new(keel_archive::StoreConfig::Local(store), "db");
    let sim = Arc::new(keel_io::sim::SimIo::new(keel_io::sim::SimConfig::seeded(
        seed,
    )));
    let db = open_sim_primary(&sim);
    db.create_relation("r").unwrap();
    (t, sim, db)
}

/// Starts an archiver on `db` (on `sim`), cuts the power, and reopens the
/// primary on what the cut left (simulator seed `seed`): whether the
/// reopened primary holds its log.
pub fn held_after_start_and_power_cut(
    t: &ArchiveTarget,
    sim: &Arc<keel_io::sim::SimIo>,
    db: Arc<Database>,
    seed: u64,
) -> bool {
    let archiver = Archiver::start(db.clone(), t, fast()).unwrap();
    let disk = sim.crash();
    let _ = archiver.stop();
    drop(db);
    let sim = Arc::new(keel_io::sim::SimIo::from_disk(
        disk,
        keel_io::sim::SimConfig::seeded(seed),
    ));
    open_sim_primary(&sim).log_hold().is_some()
}

/// Verifies timeline 1 of `target` (LSN continuity, every CRC, database
/// `id`), restores it to its end into `root/restored-<seed>` and returns
/// the rows of relation `r` there. `what` names the round in failures.
pub fn verify_and_restore(
    target: &ArchiveTarget,
    root: &std::path::Path,
    seed: u64,
    id: u64,
    what: &str,
) -> std::collections::BTreeSet<Vec<u8>> {
    let reader = ArchiveReader::open(target, Duration::from_secs(5)).unwrap();
    reader
        .verify(1, Some(id))
        .unwrap_or_else(|e| panic!("{what}: the archive: {e}"));
    let restored = root.join(format!("restored-{seed}"));
    keel_archive::restore(
        target,
        &restored,
        1,
        keel_archive::RestoreTarget::End,
        config(),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("{what}: restore: {e}"));
    rows(&restored, "r").into_iter().collect()
}

/// The rounds a randomized test runs: the number in environment variable
/// `var`, or `default`.
pub fn rounds_from_env(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{var}: a number of rounds, not {v:?}"))
    })
}

/// A fresh primary on a simulated disk seeded by `seed`, with relation `r`,
/// archiving to a local store under `root` and with a base backup taken:
/// the target, the simulator, the database, `r` and the archiver.
pub fn archived_sim_primary(
    root: &std::path::Path,
    seed: u64,
) -> (
    ArchiveTarget,
    Arc<keel_io::sim::SimIo>,
    Arc<Database>,
    RelationId,
    Archiver,
) {
    let (t, sim, db) = unarchived_sim_primary(root, seed);
    let rel = db.relation("r").unwrap().expect("created above");
    let archiver = Archiver::start(db.clone(), &t, fast()).unwrap();
    let options = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..keel_archive::BackupOptions::default()
    };
    keel_archive::backup(&db, &archiver, &t, &options).unwrap();
    (t, sim, db, rel, archiver)
}
