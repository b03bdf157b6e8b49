//! Compaction against stores that need nothing installed: the archiver's
//! compactor and `keel archive compact`'s catch-up pass, a compaction cut
//! off at every one of its requests (power cut and outage), readers whose
//! listing went stale, objects that disagree, and what a restore saves.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use keel::Database;
use keel::types::Lsn;
use keel_archive::chunk::{self, ChunkBuilder, Expect};
use keel_archive::fault::FaultStore;
use keel_archive::{
    ArchiveError, ArchiveReader, ArchiveTarget, Archiver, ArchiverOptions, Remote, RestoreTarget,
    StoreConfig, compact_timeline,
};
use object_store::ObjectStore;
use object_store::memory::InMemory;

fn target_of(store: Arc<dyn ObjectStore>) -> ArchiveTarget {
    ArchiveTarget::new(StoreConfig::Custom(store), "db")
}

/// A copy of every object of `src`, so each cut starts from the same
/// archive.
fn clone_store(src: &InMemory) -> Arc<InMemory> {
    use futures::TryStreamExt;
    let dst = Arc::new(InMemory::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let metas: Vec<_> = src.list(None).try_collect().await.unwrap();
        for m in metas {
            let bytes = src.get(&m.location).await.unwrap().bytes().await.unwrap();
            dst.put(&m.location, bytes.into()).await.unwrap();
        }
    });
    dst
}

/// An archive without compaction: a backup, then a workload over several
/// segments. Returns the store, the database (log kept), where archiving
/// began and how many rows it holds.
fn uncompacted_archive(dir: &std::path::Path) -> (Arc<InMemory>, Arc<Database>, Lsn, usize) {
    let store = Arc::new(InMemory::new());
    let target = target_of(store.clone());
    let db = open(&dir.join("data"));
    let rel = db.create_relation("r").unwrap();
    let start = db.durable_lsn();
    let options = ArchiverOptions {
        compact: false,
        ..fast()
    };
    let archiver = Archiver::start(db.clone(), &target, options).unwrap();
    workload(&db, rel, 2, 10, 0);
    let backup = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..keel_archive::BackupOptions::default()
    };
    keel_archive::backup(&db, &archiver, &target, &backup).unwrap();
    workload(&db, rel, 40, 20, 0);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    (store, db, start, 2 * 10 + 40 * 20)
}

fn restored_rows(target: &ArchiveTarget, dir: &std::path::Path) -> usize {
    keel_archive::restore(
        target,
        dir,
        1,
        RestoreTarget::End,
        config(),
        Duration::from_secs(5),
    )
    .unwrap();
    let db = Database::open(dir, config()).unwrap();
    let rel = db.relation("r").unwrap().unwrap();
    let n = db.begin().unwrap().scan(rel).unwrap().count();
    db.close().unwrap();
    n
}

#[test]
fn the_archiver_compacts_completed_segments_in_memory() {
    the_archiver_compacts_completed_segments(&target_of(Arc::new(InMemory::new())));
}

#[test]
fn catch_up_compaction_in_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let target = ArchiveTarget::new(StoreConfig::Local(dir.path().join("archive")), "site/db");
    std::fs::create_dir_all(dir.path().join("archive")).unwrap();
    catch_up_compaction(&target);
    let wal = dir.path().join("archive/site/db/wal/00000001");
    let names: Vec<String> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    // `<start>-<end>.compacted`: 16 + 1 + 16 + 10 characters.
    assert!(
        names
            .iter()
            .any(|n| n.len() == 43 && n.ends_with(".compacted")),
        "{names:?}"
    );
}

/// A restore of the compacted archive fetches fewer objects than of the
/// same archive uncompacted, and restores the same rows.
#[test]
fn a_restore_of_a_compacted_archive_fetches_fewer_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _db, _, rows) = uncompacted_archive(tmp.path());
    let compacted = clone_store(&store);
    let remote = Remote::open(&target_of(compacted.clone()), Duration::from_secs(5)).unwrap();
    let r = compact_timeline(&remote, 1, None, &|| false).unwrap();
    assert!(r.objects >= 2 && r.chunks_deleted > r.objects, "{r:?}");
    let mut gets = Vec::new();
    for (i, s) in [store, compacted].into_iter().enumerate() {
        let faults = FaultStore::new(s);
        let t = target_of(Arc::new(faults.clone()));
        assert_eq!(restored_rows(&t, &tmp.path().join(format!("r{i}"))), rows);
        gets.push(faults.stats().gets);
    }
    assert!(
        gets[1] + r.chunks_deleted - r.objects <= gets[0],
        "gets uncompacted {} compacted {} ({r:?})",
        gets[0],
        gets[1]
    );
}

/// A compaction cut off after each of its writes (a power cut of the
/// compacting process) and after each of its requests (an outage): the
/// archive still lists, verifies and holds exactly the log's records; the
/// next pass finishes the work (leftovers checked and deleted); and a
/// restore from a cut archive has every row.
#[test]
fn compaction_cut_at_every_step_leaves_a_whole_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, db, start, rows) = uncompacted_archive(tmp.path());
    let logged = log_records(&db, start);
    let probe = FaultStore::new(clone_store(&store));
    let full = compact_timeline(
        &Remote::open(&target_of(Arc::new(probe.clone())), Duration::from_secs(5)).unwrap(),
        1,
        None,
        &|| false,
    )
    .unwrap();
    let s = probe.stats();
    let (writes, requests) = (s.puts + s.deletes, s.puts + s.deletes + s.gets + s.lists);
    assert_eq!(s.puts, full.objects);
    assert_eq!(s.deletes, full.chunks_deleted);
    let mut leftovers_seen = 0;
    for (outage, steps) in [(false, writes), (true, requests)] {
        for n in 0..steps {
            let inner = clone_store(&store);
            let faults = FaultStore::new(inner.clone());
            match outage {
                false => faults.power_cut_after(n),
                true => faults.outage_after(n),
            }
            let cut = Remote::open(&target_of(Arc::new(faults)), Duration::from_secs(5)).unwrap();
            assert!(
                compact_timeline(&cut, 1, None, &|| false).is_err(),
                "cut after {n}"
            );
            let t = target_of(inner.clone());
            let remote = Remote::open(&t, Duration::from_secs(5)).unwrap();
            leftovers_seen += remote.list_timeline(1).unwrap().leftovers.len();
            let reader = ArchiveReader::open(&t, Duration::from_secs(5)).unwrap();
            reader.verify(1, Some(db.database_id())).unwrap();
            assert!(
                archive_records(&reader, db.database_id()) == logged,
                "cut after {n}"
            );
            if !outage && n % 3 == 1 {
                let into = tmp.path().join(format!("cut{n}"));
                assert_eq!(restored_rows(&t, &into), rows, "cut after {n}");
            }
            let next = compact_timeline(&remote, 1, None, &|| false).unwrap();
            let listing = remote.list_timeline(1).unwrap();
            assert!(listing.leftovers.is_empty(), "cut after {n}: {listing:?}");
            assert_eq!(
                listing.covering.iter().filter(|o| o.is_compacted()).count() as u64,
                full.objects,
                "cut after {n}: {next:?}"
            );
            assert!(archive_records(&reader, db.database_id()) == logged);
        }
    }
    assert!(
        leftovers_seen > 0,
        "no cut fell between a put and its deletes"
    );
}

/// A reader that listed before compaction deleted the chunks reads on from
/// the compacted object, from the same LSN, and sees every record once.
#[test]
fn a_reader_with_a_stale_listing_reads_on_from_the_compacted_object() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, db, start, _) = uncompacted_archive(tmp.path());
    let t = target_of(store);
    let remote = Remote::open(&t, Duration::from_secs(5)).unwrap();
    let stale = remote.list_chunks(1).unwrap();
    let reader = ArchiveReader::open(&t, Duration::from_secs(5)).unwrap();
    // The first chunk is read before compaction, the rest after.
    let mut expect = Expect {
        database_id: Some(db.database_id()),
        timeline: Some(1),
        start: None,
    };
    let first = reader.read_chunk(&stale[0], &expect).unwrap();
    let mut records: Vec<Rec> = first.records().map(|(h, p)| (*h, p.to_vec())).collect();
    expect.start = Some(first.header.end);
    let r = compact_timeline(&remote, 1, None, &|| false).unwrap();
    assert!(r.chunks_deleted > 2, "{r:?}");
    let mut read = 1;
    for object in &stale[1..] {
        if keel_archive::read::covered(object.start, expect.start) {
            continue;
        }
        let c = reader.read_chunk(object, &expect).unwrap();
        assert_eq!(c.header.start, object.start);
        records.extend(c.records().map(|(h, p)| (*h, p.to_vec())));
        expect.start = Some(c.header.end);
        read += 1;
    }
    assert!(read < stale.len(), "every chunk was still there");
    assert!(records == log_records(&db, start));
    // A restore that finds the chunks gone reads the compacted objects.
    assert!(archive_records(&reader, db.database_id()) == log_records(&db, start));
}

/// Two compacted objects whose ranges overlap are an error naming both,
/// for every reader; so is a leftover chunk whose records differ from
/// the compacted object covering it, and compaction then deletes nothing.
#[test]
fn objects_that_disagree_are_named_and_nothing_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, db, _, _) = uncompacted_archive(tmp.path());
    let original = target_of(clone_store(&store));
    let t = target_of(store);
    let remote = Remote::open(&t, Duration::from_secs(5)).unwrap();
    let chunks = Remote::open(&original, Duration::from_secs(5))
        .unwrap()
        .list_chunks(1)
        .unwrap();
    compact_timeline(&remote, 1, None, &|| false).unwrap();
    let listing = remote.list_timeline(1).unwrap();
    let c = listing.covering.iter().find(|o| o.is_compacted()).unwrap();
    let end = c.end.unwrap();
    // A leftover inside `c` with other records: a chunk of `c`'s range
    // rebuilt with one payload byte changed (valid CRCs).
    let inside = chunks
        .iter()
        .find(|o| o.start > c.start && o.start < end)
        .unwrap();
    let mut reread = None;
    let original_chunk = ArchiveReader::open(&original, Duration::from_secs(5))
        .unwrap()
        .read_chunk(inside, &Expect::default())
        .unwrap();
    assert_eq!(original_chunk.header.start, inside.start);
    let mut b = ChunkBuilder::new(db.database_id(), 1, inside.start);
    for (i, (h, p)) in original_chunk.records().enumerate() {
        let mut p = p.to_vec();
        if i == 0 && h.kind != keel::wal::RecordType::Commit && !p.is_empty() {
            p[0] ^= 0xFF;
            reread = Some(h.lsn);
        }
        let commit = match h.kind {
            keel::wal::RecordType::Commit => Some(u64::from_le_bytes(p[..8].try_into().unwrap())),
            _ => None,
        };
        b.push(h, &p, commit);
    }
    assert!(reread.is_some());
    let (_, forged) = b.finish().unwrap();
    chunk::decode("forged", &forged, &Expect::default()).unwrap();
    remote
        .put_create(&remote.chunk_path(1, inside.start), &forged)
        .unwrap();
    let reader = ArchiveReader::open(&t, Duration::from_secs(5)).unwrap();
    let e = reader.verify(1, None).unwrap_err();
    match &e {
        ArchiveError::Overlap { first, second, .. } => {
            assert_eq!(first, c.path.as_ref());
            assert!(second.ends_with(".chunk"), "{e}");
        }
        e => panic!("expected a disagreement, got {e}"),
    }
    assert!(compact_timeline(&remote, 1, None, &|| false).is_err());
    assert_eq!(remote.list_timeline(1).unwrap().leftovers.len(), 1);
    // The archiver's compactor meets it too: it reports the disagreement
    // and stops compacting; archiving goes on.
    let archiver = Archiver::start(db.clone(), &t, fast()).unwrap();
    let rel = db.relation("r").unwrap().unwrap();
    workload(&db, rel, 20, 20, 0);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while archiver.status().compaction_error.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = archiver.status();
    archiver.stop().unwrap();
    assert!(!status.failed, "{status:?}");
    assert!(
        matches!(
            status.compaction_error.as_deref(),
            Some(ArchiveError::Overlap { .. })
        ),
        "{status:?}"
    );
    assert_eq!(remote.list_timeline(1).unwrap().leftovers.len(), 1);
    // A second compacted name over part of `c`'s range.
    remote
        .put_create(&remote.chunk_path(1, inside.start), &forged)
        .unwrap();
    let overlapping = remote.compacted_path(1, inside.start, Lsn(end.0 + 8));
    remote.put_create(&overlapping, b"x").unwrap();
    let e = remote.list_chunks(1).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(c.path.as_ref()) && text.contains(overlapping.as_ref()),
        "{text}"
    );
}

/// The archiver itself (uploader and compactor) loses power at a spread
/// of its writes while a workload runs: what reached the store verifies
/// and is a prefix of the log; an archiver started again on the store
/// continues, its compactor finishes what the cut left, and a restore has
/// every committed row.
#[test]
fn an_archiver_cut_off_while_compacting_leaves_a_restorable_archive() {
    let run = |cut: Option<u64>| -> u64 {
        let tmp = tempfile::tempdir().unwrap();
        let inner = Arc::new(InMemory::new());
        let clean = target_of(inner.clone());
        let db = open(&tmp.path().join("data"));
        let rel = db.create_relation("r").unwrap();
        let start = db.durable_lsn();
        let a0 = Archiver::start(db.clone(), &clean, fast()).unwrap();
        workload(&db, rel, 2, 10, 0);
        let backup = keel_archive::BackupOptions {
            archive_timeout: Duration::from_secs(30),
            ..keel_archive::BackupOptions::default()
        };
        keel_archive::backup(&db, &a0, &clean, &backup).unwrap();
        a0.stop().unwrap();
        let faults = FaultStore::new(inner.clone());
        let options = ArchiverOptions {
            stop_timeout: Duration::from_millis(100),
            ..fast()
        };
        let a1 =
            Archiver::start(db.clone(), &target_of(Arc::new(faults.clone())), options).unwrap();
        if let Some(n) = cut {
            faults.power_cut_after(n);
        }
        workload(&db, rel, 40, 20, 0);
        if cut.is_none() {
            a1.wait_archived(db.durable_lsn(), Duration::from_secs(30))
                .unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while a1.status().compacted_objects < 2 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = a1.stop();
        let writes = faults.stats().puts + faults.stats().deletes;
        // What the cut left: verified, and a prefix of the log.
        let reader = ArchiveReader::open(&clean, Duration::from_secs(5)).unwrap();
        let report = reader.verify(1, Some(db.database_id())).unwrap();
        let archived = archive_records(&reader, db.database_id());
        let logged = log_records(&db, start);
        assert!(archived.len() <= logged.len() && archived[..] == logged[..archived.len()]);
        assert!(report.end <= db.durable_lsn());
        // Power back: a new archiver continues and compacts.
        let a2 = Archiver::start(db.clone(), &clean, fast()).unwrap();
        a2.wait_archived(db.durable_lsn(), Duration::from_secs(30))
            .unwrap();
        a2.stop().unwrap();
        let remote = Remote::open(&clean, Duration::from_secs(5)).unwrap();
        compact_timeline(&remote, 1, None, &|| false).unwrap();
        assert!(remote.list_timeline(1).unwrap().leftovers.is_empty());
        assert!(archive_records(&reader, db.database_id()) == log_records(&db, start));
        let rows = restored_rows(&clean, &tmp.path().join("restored"));
        assert_eq!(rows, 2 * 10 + 40 * 20, "cut {cut:?}");
        writes
    };
    let writes = run(None);
    assert!(writes > 10, "{writes} writes");
    for n in (0..writes).step_by(writes.div_ceil(8) as usize) {
        run(Some(n));
    }
}

#[test]
fn cleanup_in_memory_removes_only_incomplete_backups() {
    cleanup_removes_only_incomplete_backups(&target_of(Arc::new(InMemory::new())));
}

/// An archive in memory with 3 backups, log between and after them, all
/// compacted: the data directory's temporary root, the store, the
/// database (its archiver stopped) and the backups' manifests, oldest
/// first.
fn three_backups() -> (
    tempfile::TempDir,
    Arc<InMemory>,
    Arc<Database>,
    Vec<keel_archive::Manifest>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemory::new());
    let t = target_of(store.clone());
    let db = open(&tmp.path().join("data"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &t, fast()).unwrap();
    let options = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..keel_archive::BackupOptions::default()
    };
    let mut manifests = Vec::new();
    for _ in 0..3 {
        workload(&db, rel, 15, 20, 5);
        manifests.push(keel_archive::backup(&db, &archiver, &t, &options).unwrap());
    }
    workload(&db, rel, 5, 20, 0);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    let remote = Remote::open(&t, Duration::from_secs(5)).unwrap();
    compact_timeline(&remote, 1, None, &|| false).unwrap();
    (tmp, store, db, manifests)
}

/// Retention keeping the 2 newest of 3 backups: the oldest backup goes,
/// manifest first; the log before the oldest kept backup's start goes
/// (whole objects only, oldest first); the archive still verifies, the
/// kept backups check as usable, and a restore has every row.
#[test]
fn retention_keeps_the_newest_backups_and_the_log_they_need() {
    use keel_archive::cleanup::{apply_retention, retention_plan};
    let (tmp, store, db, manifests) = three_backups();
    let t = target_of(store);
    let remote = Remote::open(&t, Duration::from_secs(5)).unwrap();
    assert!(matches!(
        retention_plan(&remote, 0),
        Err(ArchiveError::Config(_))
    ));
    assert!(retention_plan(&remote, 3).unwrap().backups.is_empty());
    let plan = retention_plan(&remote, 2).unwrap();
    assert_eq!(plan.backups.len(), 1);
    assert_eq!(plan.backups[0].start, manifests[0].start);
    assert_eq!(plan.keep_from, Some(manifests[1].start));
    assert!(!plan.log.is_empty(), "{plan:?}");
    let before = remote.list_chunks(1).unwrap();
    apply_retention(&remote, &plan).unwrap();
    let after = remote.list_chunks(1).unwrap();
    assert_eq!(after.len(), before.len() - plan.log.len());
    assert!(after[0].start <= manifests[1].start, "{after:?}");
    let left = remote.list_backups().unwrap();
    assert_eq!(left.len(), 2);
    for entry in &left {
        keel_archive::backup_check::check_backup(&remote, entry).unwrap();
    }
    let reader = ArchiveReader::open(&t, Duration::from_secs(5)).unwrap();
    reader.verify(1, Some(db.database_id())).unwrap();
    assert_eq!(
        restored_rows(&t, &tmp.path().join("restored")),
        (3 * 15 + 5) * 20
    );
    // A second run has nothing more to delete.
    let again = retention_plan(&remote, 2).unwrap();
    assert!(
        again.backups.is_empty() && again.log.is_empty(),
        "{again:?}"
    );
}

/// Retention cut by a power cut after each of its deletes in turn (the
/// fault store's `power_cut_after`): after every cut the archive still
/// verifies (no hole in the log), every backup with a manifest checks as
/// usable, a restore has every row, and retention run again finishes
/// with the same result as an uncut run.
#[test]
fn retention_cut_after_any_delete_leaves_a_restorable_archive() {
    use keel_archive::cleanup::{apply_retention, retention_plan};
    let (tmp, store, db, _) = three_backups();
    let rows = (3 * 15 + 5) * 20;
    let mut n = 0;
    loop {
        let copy = clone_store(&store);
        let faults = FaultStore::new(copy.clone());
        let cut = target_of(Arc::new(faults.clone()));
        let remote = Remote::open(&cut, Duration::from_secs(5)).unwrap();
        let plan = retention_plan(&remote, 2).unwrap();
        faults.power_cut_after(n);
        if apply_retention(&remote, &plan).is_ok() {
            assert!(n > 3, "only {n} deletes");
            break;
        }
        let t = target_of(copy);
        let whole = Remote::open(&t, Duration::from_secs(5)).unwrap();
        ArchiveReader::open(&t, Duration::from_secs(5))
            .unwrap()
            .verify(1, Some(db.database_id()))
            .unwrap_or_else(|e| panic!("cut after {n} deletes: {e}"));
        for entry in &whole.list_backups().unwrap() {
            keel_archive::backup_check::check_backup(&whole, entry)
                .unwrap_or_else(|e| panic!("cut after {n} deletes: {e}"));
        }
        let dir = tmp.path().join(format!("restored-{n}"));
        assert_eq!(restored_rows(&t, &dir), rows, "cut after {n} deletes");
        let again = retention_plan(&whole, 2).unwrap();
        apply_retention(&whole, &again).unwrap();
        assert_eq!(
            whole.list_backups().unwrap().len(),
            2,
            "cut after {n} deletes"
        );
        assert!(retention_plan(&whole, 2).unwrap().log.is_empty());
        n += 1;
    }
}

/// Retention keeps, for every timeline, the newest backups usable on its
/// path, whatever end LSNs say across timelines. Timeline 2, started by a
/// restore of timeline 1 to a point between its two backups, writes its
/// LSNs again from its switch, so its own backup ends below timeline 1's
/// newest. Keeping one backup: before timeline 2 has a backup of its own,
/// timeline 1's older one is its only usable one and nothing is deleted;
/// once it has one, only the backup neither timeline needs goes, and both
/// timelines restore to their ends with every row.
#[test]
fn retention_keeps_every_timelines_newest_backup() {
    use keel_archive::cleanup::{apply_retention, retention_plan};
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(InMemory::new());
    let t = target_of(store.clone());
    let options = |timeline| keel_archive::BackupOptions {
        timeline,
        archive_timeout: Duration::from_secs(30),
        ..keel_archive::BackupOptions::default()
    };
    let insert = |db: &Database, rel, tag: &str, n: usize| {
        for i in 0..n {
            let mut tx = db.begin().unwrap();
            tx.insert(rel, format!("{tag}-{i}").as_bytes()).unwrap();
            tx.commit().unwrap();
        }
    };
    let restore = |timeline, target, dir: &std::path::Path| {
        keel_archive::restore(&t, dir, timeline, target, config(), Duration::from_secs(5)).unwrap()
    };
    let db = open(&tmp.path().join("data"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &t, fast()).unwrap();
    insert(&db, rel, "a", 20);
    let b1 = keel_archive::backup(&db, &archiver, &t, &options(1)).unwrap();
    insert(&db, rel, "b", 40);
    let b2 = keel_archive::backup(&db, &archiver, &t, &options(1)).unwrap();
    insert(&db, rel, "c", 40);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    let rows1 = sorted_rows(&db, "r");
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();

    // Timeline 2: timeline 1 restored to a commit between b1 and b2.
    let mut between = None;
    ArchiveReader::open(&t, Duration::from_secs(5))
        .unwrap()
        .visit(1, None, |c| {
            for (h, _) in c.records() {
                let end = Lsn(h.lsn.0 + u64::from(h.total_len));
                if h.kind == keel::wal::RecordType::Commit && end > b1.end && end < b2.start {
                    between.get_or_insert(h.txn);
                }
            }
            Ok(())
        })
        .unwrap();
    let d2 = tmp.path().join("tl2");
    let r2 = restore(1, RestoreTarget::Txn(between.unwrap()), &d2);
    assert_eq!(r2.timeline, 2);
    let remote = Remote::open(&t, Duration::from_secs(5)).unwrap();
    let plan = retention_plan(&remote, 1).unwrap();
    assert!(plan.backups.is_empty(), "b1 is timeline 2's only backup");

    let db2 = open(&d2);
    let archiver = Archiver::start(db2.clone(), &t, fast()).unwrap();
    insert(&db2, rel, "tl2", 10);
    let b3 = keel_archive::backup(&db2, &archiver, &t, &options(2)).unwrap();
    insert(&db2, rel, "tl2-more", 10);
    archiver
        .wait_archived(db2.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    let rows2 = sorted_rows(&db2, "r");
    Arc::try_unwrap(db2).ok().unwrap().close().unwrap();
    assert!(b3.end < b2.end, "timeline 2's newest backup ends below b2");

    let plan = retention_plan(&remote, 1).unwrap();
    let folders = |v: &[keel_archive::BackupFolder]| {
        let mut out: Vec<_> = v.iter().map(|f| (f.timeline, f.start)).collect();
        out.sort();
        out
    };
    assert_eq!(folders(&plan.backups), vec![(1, b1.start)]);
    assert_eq!(folders(&plan.kept), vec![(1, b2.start), (2, b3.start)]);
    // Cut by a power cut after each of its deletes in turn: both timelines
    // still verify and restore whole, and retention run again deletes
    // exactly what the uncut run does.
    for n in 0.. {
        let copy = clone_store(&store);
        let faults = FaultStore::new(copy.clone());
        let cut = target_of(Arc::new(faults.clone()));
        let cut_remote = Remote::open(&cut, Duration::from_secs(5)).unwrap();
        faults.power_cut_after(n);
        if apply_retention(&cut_remote, &plan).is_ok() {
            assert!(n > 1, "only {n} deletes");
            break;
        }
        let whole_target = target_of(copy);
        let whole = Remote::open(&whole_target, Duration::from_secs(5)).unwrap();
        let reader = ArchiveReader::open(&whole_target, Duration::from_secs(5)).unwrap();
        for (timeline, want) in [(1, &rows1), (2, &rows2)] {
            reader
                .verify(timeline, Some(b1.database_id))
                .unwrap_or_else(|e| panic!("cut after {n} deletes, timeline {timeline}: {e}"));
            let d = tmp.path().join(format!("cut-{n}-tl{timeline}"));
            keel_archive::restore(
                &whole_target,
                &d,
                timeline,
                RestoreTarget::End,
                config(),
                Duration::from_secs(5),
            )
            .unwrap_or_else(|e| panic!("cut after {n} deletes, timeline {timeline}: {e}"));
            assert_eq!(&rows(&d, "r"), want, "cut after {n} deletes");
        }
        let again = retention_plan(&whole, 1).unwrap();
        assert_eq!(
            folders(&again.kept),
            folders(&plan.kept),
            "cut after {n} deletes"
        );
        apply_retention(&whole, &again).unwrap();
        let mut left: Vec<_> = whole
            .list_backups()
            .unwrap()
            .iter()
            .map(|e| (e.timeline, e.start))
            .collect();
        left.sort();
        assert_eq!(left, folders(&plan.kept), "cut after {n} deletes");
    }
    apply_retention(&remote, &plan).unwrap();
    let reader = ArchiveReader::open(&t, Duration::from_secs(5)).unwrap();
    reader.verify(1, Some(b1.database_id)).unwrap();
    reader.verify(2, Some(b1.database_id)).unwrap();
    let d = tmp.path().join("tl2-end");
    restore(2, RestoreTarget::End, &d);
    assert_eq!(rows(&d, "r"), rows2);
    let d = tmp.path().join("tl1-end");
    restore(1, RestoreTarget::End, &d);
    assert_eq!(rows(&d, "r"), rows1);
    let again = retention_plan(&remote, 1).unwrap();
    assert!(
        again.backups.is_empty() && again.log.is_empty(),
        "{again:?}"
    );
}
