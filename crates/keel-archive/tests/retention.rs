//! The retention interlock's policies while the archive is down
//! (`ArchivePolicy`), against the fault-injecting store: `Stall` makes
//! commits wait and fail after its timeout, and lets them go on once the
//! archive is back; `KeepGoing` lets commits go on, reports the archive
//! broken (also in the data directory's status file), retires no
//! unarchived log, and after the store recovers the archive holds every
//! acknowledged commit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use keel::{DbError, Error, ErrorClass};
use keel_archive::fault::FaultStore;
use keel_archive::{
    ArchivePolicy, ArchiveReader, ArchiveState, ArchiveTarget, Archiver, ArchiverOptions,
    StoreConfig, read_status,
};
use object_store::memory::InMemory;

fn faulty() -> (FaultStore, ArchiveTarget) {
    let faults = FaultStore::new(Arc::new(InMemory::new()));
    let target = ArchiveTarget::new(StoreConfig::Custom(Arc::new(faults.clone())), "db");
    (faults, target)
}

fn stall(max: u64, timeout: Duration) -> ArchiverOptions {
    ArchiverOptions {
        on_archive_down: ArchivePolicy::Stall {
            max_unarchived_bytes: max,
            timeout,
        },
        stop_timeout: Duration::from_millis(200),
        ..fast()
    }
}

fn rows(db: &keel::Database, rel: keel::RelationId) -> usize {
    db.begin().unwrap().scan(rel).unwrap().count()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Archive down under `Stall`: once the unarchived log passes the limit a
/// commit waits for the whole timeout, then fails with `CommitStalled`
/// (transient, naming the bytes and the LSN), and its rows are rolled
/// back. Stopping the archiver lifts the limit, so a commit then goes on.
#[test]
fn stall_fails_a_commit_after_its_timeout_and_rolls_it_back() {
    let (faults, target) = faulty();
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rel = db.create_relation("r").unwrap();
    let timeout = Duration::from_millis(300);
    let archiver = Archiver::start(db.clone(), &target, stall(64 << 10, timeout)).unwrap();
    faults.set_down(true);
    let mut committed = 0;
    let err = loop {
        let mut tx = db.begin().unwrap();
        for r in 0..10 {
            tx.insert(rel, &value(r, 300)).unwrap();
        }
        let t0 = Instant::now();
        match tx.commit() {
            Ok(()) => committed += 10,
            Err(e) => break (e, t0.elapsed()),
        }
        assert!(committed < 10_000, "no commit ever stalled");
    };
    let (err, waited) = err;
    assert!(waited >= timeout, "failed after {waited:?}");
    assert_eq!(err.class(), ErrorClass::Transient);
    let Error::Db(DbError::CommitStalled {
        unarchived,
        max_bytes,
        held_from,
        ..
    }) = &err
    else {
        panic!("{err}")
    };
    assert!(*unarchived > 64 << 10 && *max_bytes == 64 << 10, "{err}");
    assert!(*held_from <= archiver.archived_lsn(), "{err}");
    assert!(err.to_string().contains("rolled back"), "{err}");
    // The stalled transaction's rows are gone; every acknowledged one is there.
    assert_eq!(rows(&db, rel), committed);
    assert!(!db.is_poisoned());
    let status = archiver.status();
    assert_eq!(status.state(), ArchiveState::Broken, "{status:?}");
    // A commit waiting while the archiver is dropped goes on (the limit is
    // lifted; the hold stays).
    let waiter = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut tx = db.begin().unwrap();
            tx.insert(rel, b"after").unwrap();
            tx.commit()
        })
    };
    drop(archiver);
    waiter.join().unwrap().unwrap();
    assert_eq!(rows(&db, rel), committed + 1);
}

/// Archive down under `Stall` with a long timeout: commits stop once the
/// limit is passed, the waiting one is not acknowledged, and it completes
/// as soon as the store is back; every commit is then archived.
#[test]
fn a_stalled_commit_completes_when_the_archive_is_back() {
    let (faults, target) = faulty();
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rel = db.create_relation("r").unwrap();
    let start = db.durable_lsn();
    let archiver = Archiver::start(
        db.clone(),
        &target,
        stall(64 << 10, Duration::from_secs(60)),
    )
    .unwrap();
    faults.set_down(true);
    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (db, done) = (db.clone(), done.clone());
        std::thread::spawn(move || {
            for t in 0..100 {
                let mut tx = db.begin().unwrap();
                for r in 0..10 {
                    tx.insert(rel, &value(t * 10 + r, 300)).unwrap();
                }
                tx.commit().unwrap();
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // Stalled: no commit for a while, the writer not finished.
    let mut last = (usize::MAX, Instant::now());
    wait_until("commits to stall", || {
        let n = done.load(Ordering::SeqCst);
        if n != last.0 {
            last = (n, Instant::now());
        }
        last.1.elapsed() > Duration::from_millis(500)
    });
    let stalled_at = done.load(Ordering::SeqCst);
    assert!(stalled_at < 100 && !writer.is_finished());
    assert!(db.wal_end().0 - archiver.archived_lsn().0 > 64 << 10);
    // (No scan here: the waiting commit still holds its locks.)
    faults.set_down(false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !writer.is_finished() {
        assert!(Instant::now() < deadline, "{:?}", archiver.status());
        std::thread::sleep(Duration::from_millis(5));
    }
    writer.join().unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 100);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    let status = archiver.status();
    assert_eq!(status.state(), ArchiveState::Ok, "{status:?}");
    archiver.stop().unwrap();
    let reader = ArchiveReader::open(&target, Duration::from_secs(5)).unwrap();
    assert!(archive_records(&reader, db.database_id()) == log_records(&db, start));
}

/// Archive down under `KeepGoing`: commits go on, the archiver and its
/// status file say `broken` with the error and the lag, checkpoints retire
/// none of the unarchived log; once the store is back everything is
/// archived and a restore has every acknowledged commit.
#[test]
fn keep_going_reports_broken_keeps_the_log_and_loses_nothing() {
    let (faults, target) = faulty();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = open(&data);
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    workload(&db, rel, 5, 10, 0);
    let backup_options = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..keel_archive::BackupOptions::default()
    };
    keel_archive::backup(&db, &archiver, &target, &backup_options).unwrap();
    let down_from = archiver.archived_lsn();
    faults.set_down(true);
    // 40 commits of 20 rows: well past several 128 KiB segments, with
    // checkpoints that would retire them.
    workload(&db, rel, 40, 20, 5);
    wait_until("the archiver to see the outage", || {
        archiver.status().state() == ArchiveState::Broken
    });
    let status = archiver.status();
    assert!(status.lag_bytes > 256 << 10, "{status:?}");
    assert!(status.last_error.is_some(), "{status:?}");
    assert!(status.oldest_unarchived_commit_us.is_some(), "{status:?}");
    // Nothing unarchived was retired: the log reads from the archive's end.
    let mut reader = db.log_reader(down_from).unwrap();
    assert!(reader.next().unwrap().is_ok());
    assert_eq!(db.log_hold(), Some(down_from));
    wait_until("the status file to say broken", || {
        read_status(&data)
            .unwrap()
            .is_some_and(|s| s.state == ArchiveState::Broken)
    });
    let published = read_status(&data).unwrap().unwrap();
    assert_eq!(published.policy, "keep-going");
    assert!(published.last_error.is_some(), "{published:?}");
    assert!(published.lag_bytes() > 0, "{published:?}");
    faults.set_down(false);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    assert_eq!(archiver.status().state(), ArchiveState::Ok);
    let archived = archiver.stop().unwrap();
    let published = read_status(&data).unwrap().unwrap();
    assert_eq!(published.state, ArchiveState::Stopped);
    assert_eq!(published.archived_lsn, archived);
    assert_eq!(published.lag_bytes(), 0);
    let restored = tmp.path().join("restored");
    keel_archive::restore(
        &target,
        &restored,
        1,
        keel_archive::RestoreTarget::End,
        config(),
        Duration::from_secs(5),
    )
    .unwrap();
    let db2 = keel::Database::open(&restored, config()).unwrap();
    let rel2 = db2.relation("r").unwrap().unwrap();
    assert_eq!(rows(&db2, rel2), 50 + 800);
    db2.close().unwrap();
}

/// `Stall` with the archive up: a transaction that writes far more than
/// the limit before committing still commits, at once or as soon as the
/// archiver ships the durable log (the gate counts the durable end, which
/// the archiver can always reach, not records still waiting to be made
/// durable), and concurrent small commits are never failed.
#[test]
fn stall_never_fails_commits_while_the_archive_is_up() {
    let (_faults, target) = faulty();
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(
        db.clone(),
        &target,
        stall(16 << 10, Duration::from_secs(10)),
    )
    .unwrap();
    let small = {
        let db = db.clone();
        std::thread::spawn(move || {
            for t in 0..50 {
                let mut tx = db.begin().unwrap();
                tx.insert(rel, &value(1_000_000 + t, 100)).unwrap();
                tx.commit().unwrap();
            }
        })
    };
    for t in 0..3 {
        let mut tx = db.begin().unwrap();
        // About 1 MiB of records, 64 times the limit.
        for r in 0..3000 {
            tx.insert(rel, &value(t * 3000 + r, 300)).unwrap();
        }
        let t0 = Instant::now();
        tx.commit().unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }
    small.join().unwrap();
    assert_eq!(rows(&db, rel), 9000 + 50);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    assert_eq!(archiver.status().state(), ArchiveState::Ok);
    archiver.stop().unwrap();
}

/// An archiver that cannot start because the log it would begin with is
/// gone puts back the hold it found instead of lifting it, so the next
/// checkpoint still retires none of the log that hold keeps.
#[test]
fn a_failed_start_keeps_the_hold_it_found() {
    let (_faults, target) = faulty();
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rel = db.create_relation("r").unwrap();
    let first = db.durable_lsn();
    // Several 128 KiB segments, then a checkpoint that retires them.
    workload(&db, rel, 40, 20, 0);
    db.checkpoint().unwrap();
    let readable = db
        .log_reader(first)
        .ok()
        .and_then(|mut r| r.next())
        .is_some_and(|r| r.is_ok());
    assert!(!readable, "the first segments were not retired");
    let held = db.durable_lsn();
    db.hold_log_from(Some(held));
    workload(&db, rel, 40, 20, 0);
    let options = ArchiverOptions {
        start_lsn: Some(first),
        ..fast()
    };
    let err = Archiver::start(db.clone(), &target, options).unwrap_err();
    assert!(err.to_string().contains(&first.to_string()), "{err}");
    assert_eq!(db.log_hold(), Some(held));
    db.checkpoint().unwrap();
    assert!(db.log_reader(held).unwrap().all(|r| r.is_ok()));
}
