//! The continuous archiver end to end against stores that need nothing
//! installed: `object_store`'s LocalFileSystem and InMemory, and the fault
//! injector around InMemory. Each test runs a real database and checks
//! the archive against its log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use keel_archive::chunk::{self, CHUNK_HEADER_SIZE};
use keel_archive::fault::{Fault, FaultStore, Op};
use keel_archive::{
    ArchiveError, ArchiveReader, ArchiveTarget, Archiver, ArchiverOptions, StoreConfig,
};
use object_store::ObjectStore;
use object_store::memory::InMemory;

fn memory() -> (Arc<InMemory>, ArchiveTarget) {
    let store = Arc::new(InMemory::new());
    let target = ArchiveTarget::new(StoreConfig::Custom(store.clone()), "db");
    (store, target)
}

#[test]
fn a_workload_archived_to_a_local_directory_equals_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let target = ArchiveTarget::new(StoreConfig::Local(dir.path().join("archive")), "site/db1");
    archive_and_compare(&target, fast());
    // The layout: chunks named by timeline and start LSN under the
    // prefix; completed segments compacted, named by start and end.
    let wal = dir.path().join("archive/site/db1/wal/00000001");
    let names: Vec<String> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.len() >= 2, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| (n.len() == 22 && n.ends_with(".chunk"))
                || (n.len() == 43 && n.ends_with(".compacted"))),
        "{names:?}"
    );
}

#[test]
fn a_workload_archived_to_memory_equals_the_log() {
    let (_, target) = memory();
    archive_and_compare(&target, fast());
}

/// Every fault shape on the upload path: refused, hung past the request
/// limit, performed but reported failed, and slow. The archiver retries
/// each; the reply-lost upload is found already there, byte for byte, and
/// counts as done.
#[test]
fn uploads_survive_every_fault_shape_and_a_lost_reply_is_success() {
    let faults = FaultStore::new(Arc::new(InMemory::new()));
    for f in [
        Fault::LostReply,
        Fault::Error,
        Fault::Hang(Duration::from_millis(300)),
        Fault::Slow(Duration::from_millis(50)),
        Fault::LostReply,
    ] {
        faults.inject(Op::Put, f);
    }
    let target = ArchiveTarget::new(StoreConfig::Custom(Arc::new(faults.clone())), "db");
    let options = ArchiverOptions {
        op_timeout: Duration::from_millis(100),
        ..fast()
    };
    archive_and_compare(&target, options);
    let stats = faults.stats();
    assert_eq!(stats.injected, 5, "{stats:?}");
    // Each lost reply is followed by a create that finds the object and a
    // get that compares it.
    assert!(stats.gets >= 2, "{stats:?}");
}

/// A second writer on the prefix is stopped; nothing is overwritten.
#[test]
fn a_second_writer_on_the_prefix_is_stopped_and_nothing_is_overwritten() {
    let (_, target) = memory();
    second_writer_is_stopped(&target);
}

#[test]
fn another_databases_archive_is_refused_at_start() {
    let (_, target) = memory();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db1 = open(d1.path());
    let rel = db1.create_relation("r").unwrap();
    let a1 = Archiver::start(db1.clone(), &target, fast()).unwrap();
    workload(&db1, rel, 3, 5, 0);
    a1.stop().unwrap();
    let db2 = open(d2.path());
    let err = Archiver::start(db2.clone(), &target, fast()).unwrap_err();
    assert!(matches!(err, ArchiveError::WrongDatabase { .. }), "{err}");
}

/// While the store is down the archiver keeps retrying and the log hold
/// keeps every unarchived segment through checkpoints; once the store is
/// back the archive catches up without a gap, and only then may
/// checkpoints retire that log.
#[test]
fn the_hold_keeps_the_log_until_it_is_archived() {
    let faults = FaultStore::new(Arc::new(InMemory::new()));
    let target = ArchiveTarget::new(StoreConfig::Custom(Arc::new(faults.clone())), "db");
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rel = db.create_relation("r").unwrap();
    let start = db.durable_lsn();
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    faults.set_down(true);
    // About 330 KiB of log: rows and checkpoints (page images are kept
    // beside the log, not in it).
    workload(&db, rel, 45, 20, 3);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while archiver.status().retries == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = archiver.status();
    assert!(status.lag_bytes > 256 << 10, "{status:?}");
    assert!(status.last_error.is_some() && !status.failed, "{status:?}");
    assert!(status.retries > 0, "{status:?}");
    // Every record from the start is still in the WAL directory.
    let logged = log_records(&db, start);
    assert!(logged.len() > 600);
    faults.set_down(false);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(20))
        .unwrap();
    let reader = ArchiveReader::open(&target, Duration::from_secs(5)).unwrap();
    let archived = archive_records(&reader, db.database_id());
    assert!(archived[..logged.len()] == logged[..]);
    // Archived: checkpoints may retire the old segments now.
    workload(&db, rel, 1, 1, 1);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(20))
        .unwrap();
    db.checkpoint().unwrap();
    let gone = db
        .log_reader(start)
        .map(|mut r| r.next().map(|x| x.is_ok()));
    assert!(
        !matches!(gone, Ok(Some(true))),
        "the archived log was retired"
    );
    archiver.stop().unwrap();
}

/// After a clean stop and a restart the archiver continues at the newest
/// chunk's end.
#[test]
fn archiving_continues_after_a_restart() {
    let (_, target) = memory();
    continues_after_a_restart(&target);
}

/// A long `max_delay` uploads nothing on its own; `stop` still flushes
/// every durable record.
#[test]
fn stop_flushes_the_durable_log() {
    let (_, target) = memory();
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rel = db.create_relation("r").unwrap();
    let options = ArchiverOptions {
        max_delay: Duration::from_secs(3600),
        max_chunk_bytes: 16 << 20,
        ..fast()
    };
    let a = Archiver::start(db.clone(), &target, options).unwrap();
    workload(&db, rel, 2, 3, 0);
    let durable = db.durable_lsn();
    let err = a
        .wait_archived(durable, Duration::from_millis(50))
        .unwrap_err();
    assert!(matches!(err, ArchiveError::WaitTimeout { .. }), "{err}");
    assert!(a.stop().unwrap() >= durable);
}

/// Chunks changed after upload are refused by name and place: a flipped
/// body byte, a header rewritten with a valid CRC for another database, a
/// truncated object, and a missing chunk in the chain.
#[test]
fn tampered_chunks_are_refused_with_a_clear_error() {
    let (store, target) = memory();
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rel = db.create_relation("r").unwrap();
    let a = Archiver::start(db.clone(), &target, fast()).unwrap();
    workload(&db, rel, 20, 20, 0);
    a.stop().unwrap();
    let reader = ArchiveReader::open(&target, Duration::from_secs(5)).unwrap();
    let chunks = reader.chunks(1).unwrap();
    assert!(chunks.len() >= 3);
    let victim = &chunks[1];
    let original = get(&store, &victim.path);
    let id = db.database_id();
    let verify = || reader.verify(1, Some(id)).unwrap_err();

    let mut flipped = original.clone();
    *flipped.last_mut().unwrap() ^= 0x40;
    put(&store, &victim.path, flipped);
    let e = verify();
    assert!(
        matches!(e, ArchiveError::ChecksumMismatch { what: "body", .. }),
        "{e}"
    );
    assert!(e.to_string().contains(victim.path.as_ref()), "{e}");

    let mut header = chunk::decode_header("x", &original, original.len() as u64).unwrap();
    header.database_id ^= 1;
    let mut foreign = chunk::encode_header(&header).to_vec();
    foreign.extend_from_slice(&original[CHUNK_HEADER_SIZE..]);
    put(&store, &victim.path, foreign);
    assert!(matches!(verify(), ArchiveError::WrongDatabase { .. }));

    put(
        &store,
        &victim.path,
        original[..original.len() - 1].to_vec(),
    );
    let e = verify();
    assert!(matches!(e, ArchiveError::Corrupt { .. }), "{e}");

    delete(&store, &victim.path);
    let e = verify();
    assert!(matches!(e, ArchiveError::Discontinuity { .. }), "{e}");

    put(&store, &victim.path, original);
    reader.verify(1, Some(id)).unwrap();
}

#[test]
fn bad_settings_are_refused() {
    let (_, target) = memory();
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    for options in [
        ArchiverOptions {
            max_chunk_bytes: 10,
            ..fast()
        },
        ArchiverOptions {
            timeline: 0,
            ..fast()
        },
    ] {
        let e = Archiver::start(db.clone(), &target, options).unwrap_err();
        assert!(matches!(e, ArchiveError::Config(_)), "{e}");
    }
    let bad_prefix = ArchiveTarget::new(target.store.clone(), "a/../b");
    let e = Archiver::start(db.clone(), &bad_prefix, fast()).unwrap_err();
    assert!(matches!(e, ArchiveError::Config(_)), "{e}");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn get(store: &InMemory, path: &object_store::path::Path) -> Vec<u8> {
    rt().block_on(async {
        store
            .get(path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    })
}

fn put(store: &InMemory, path: &object_store::path::Path, bytes: Vec<u8>) {
    rt().block_on(async { store.put(path, bytes.into()).await.unwrap() });
}

fn delete(store: &InMemory, path: &object_store::path::Path) {
    rt().block_on(async { store.delete(path).await.unwrap() });
}

/// A crash (the process dies: the database is dropped without `close`)
/// while the store is down and the archive lags: reopened with
/// `WalConfig::hold_at_open`, recovery and its checkpoint retire none of
/// the unarchived log, and a new archiver continues the one timeline from
/// the newest chunk, so the archive ends up equal to the log from the
/// start.
#[test]
fn a_crash_while_the_archive_lags_loses_no_log_for_it() {
    let faults = FaultStore::new(Arc::new(InMemory::new()));
    let target = ArchiveTarget::new(StoreConfig::Custom(Arc::new(faults.clone())), "db");
    let options = ArchiverOptions {
        stop_timeout: Duration::from_millis(200),
        ..fast()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rel = db.create_relation("r").unwrap();
    let start = db.durable_lsn();
    let archiver = Archiver::start(db.clone(), &target, options.clone()).unwrap();
    workload(&db, rel, 5, 10, 0);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(20))
        .unwrap();
    faults.set_down(true);
    // About 330 KiB of log: rows and checkpoints (page images are kept
    // beside the log, not in it).
    workload(&db, rel, 45, 20, 3);
    // The process dies: the archiver's last uploads fail, the database is
    // not closed.
    drop(archiver);
    drop(Arc::try_unwrap(db).ok().unwrap());
    faults.set_down(false);

    let mut config = common::config();
    config.wal.hold_at_open = true;
    config.recovery_checkpoint = keel::RecoveryCheckpoint::BeforeOpenReturns;
    let db = Arc::new(keel::Database::open(dir.path(), config).unwrap());
    assert!(!db.recovery_report().clean_shutdown);
    let archiver = Archiver::start(db.clone(), &target, options).unwrap();
    workload(&db, rel, 5, 10, 0);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(20))
        .unwrap();
    archiver.stop().unwrap();
    let reader = ArchiveReader::open(&target, Duration::from_secs(5)).unwrap();
    let report = reader.verify(1, Some(db.database_id())).unwrap();
    assert_eq!(report.start, start);
    assert!(archive_records(&reader, db.database_id()) == log_records(&db, start));
}
