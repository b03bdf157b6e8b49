#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The public API end to end: relations, tuples, transactions, reopen and
//! recovery after a crash (the database dropped without `close`).

use std::collections::BTreeMap;

use keel::buffer::BufferConfig;
use keel::{Config, Database, DbError, Error, Transaction, TupleId};

fn small_config() -> Config {
    let mut c = Config {
        buffer: BufferConfig::with_frames(64),
        consistency_check: true,
        ..Config::default()
    };
    c.wal.segment_size_bytes = 4 << 20;
    c.wal.max_batch_bytes = 256 << 10;
    c
}

fn value(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

#[test]
fn the_documented_api_shape_works_and_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    let rel = db.create_relation("accounts").unwrap();
    assert_eq!(db.relation("accounts").unwrap(), Some(rel));
    assert_eq!(db.relation("nope").unwrap(), None);
    let mut tx = db.begin().unwrap();
    let tid = tx.insert(rel, b"bytes").unwrap();
    assert_eq!(tx.get(rel, tid).unwrap().as_deref(), Some(&b"bytes"[..]));
    tx.update(rel, tid, b"new bytes").unwrap();
    let keep = tx.insert(rel, b"kept").unwrap();
    tx.delete(rel, tid).unwrap();
    let rows: Vec<(TupleId, Vec<u8>)> = tx.scan(rel).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(rows, vec![(keep, b"kept".to_vec())]);
    tx.commit().unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();

    let db = Database::open(dir.path(), Config::default()).unwrap();
    assert!(db.recovery_report().clean_shutdown);
    let rel = db.relation("accounts").unwrap().unwrap();
    let tx = db.begin().unwrap();
    assert_eq!(tx.get(rel, keep).unwrap().as_deref(), Some(&b"kept"[..]));
    assert_eq!(tx.get(rel, tid).unwrap(), None);
    drop(tx);
    db.close().unwrap();
}

#[test]
fn relation_names_are_checked_and_unique_and_drop_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), small_config()).unwrap();
    let a = db.create_relation("a").unwrap();
    let e = db.create_relation("a").unwrap_err();
    assert!(matches!(e, Error::Db(DbError::RelationExists(_))), "{e}");
    assert!(db.create_relation("").is_err());
    assert!(db.create_relation("keel_catalog").is_err());
    let b = db.create_relation("b").unwrap();
    assert_ne!(a, b);
    let mut tx = db.begin().unwrap();
    tx.insert(b, b"x").unwrap();
    tx.commit().unwrap();
    db.drop_relation("b").unwrap();
    assert_eq!(db.relation("b").unwrap(), None);
    assert!(!dir.path().join(format!("rel/{}.heap", b.0)).exists());
    let mut tx = db.begin().unwrap();
    let e = tx.insert(b, b"x").unwrap_err();
    assert!(matches!(e, Error::Db(DbError::NoSuchRelation(_))), "{e}");
    drop(tx);
    db.close().unwrap();
    let db = Database::open(dir.path(), small_config()).unwrap();
    let names: Vec<String> = db.relations().into_iter().map(|r| r.name).collect();
    assert_eq!(names, vec!["a".to_string()]);
    let c = db.create_relation("c").unwrap();
    assert!(c.0 > b.0, "relation ids are not reused");
    db.close().unwrap();
}

#[test]
fn large_values_moves_and_many_rows_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), small_config()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut model = BTreeMap::new();
    let mut tx = db.begin().unwrap();
    for i in 0..2000 {
        let len = match i % 100 {
            0 => 3 << 20,
            1 => 9000,
            _ => 20 + i % 300,
        };
        let v = value(i, len);
        let tid = tx.insert(rel, &v).unwrap();
        model.insert(tid, v);
    }
    tx.commit().unwrap();
    // Grow every third tuple so that many must move.
    let mut tx = db.begin().unwrap();
    let tids: Vec<TupleId> = model.keys().copied().collect();
    for (k, tid) in tids.iter().enumerate() {
        if k % 3 == 0 {
            let v = value(k + 7, 500 + k % 1500);
            tx.update(rel, *tid, &v).unwrap();
            model.insert(*tid, v);
        } else if k % 7 == 0 {
            tx.delete(rel, *tid).unwrap();
            model.remove(tid);
        }
    }
    tx.commit().unwrap();
    let check = |db: &Database| {
        let tx = db.begin().unwrap();
        let rows: BTreeMap<TupleId, Vec<u8>> = tx.scan(rel).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), model.len());
        assert!(rows == model, "scan differs from the model");
        for (tid, v) in model.iter().take(50) {
            assert_eq!(tx.get(rel, *tid).unwrap().as_ref(), Some(v));
        }
    };
    check(&db);
    db.close().unwrap();
    let db = Database::open(dir.path(), small_config()).unwrap();
    check(&db);
    drop(db); // a crash: no final checkpoint
    let db = Database::open(dir.path(), small_config()).unwrap();
    assert!(!db.recovery_report().clean_shutdown);
    check(&db);
    db.close().unwrap();
}

#[test]
fn abort_and_drop_roll_back_and_a_crash_undoes_unfinished_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), small_config()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    let tids: Vec<TupleId> = (0..300)
        .map(|i| tx.insert(rel, &value(i, 200)).unwrap())
        .collect();
    tx.commit().unwrap();

    let mut tx = db.begin().unwrap();
    for (i, tid) in tids.iter().enumerate() {
        match i % 3 {
            0 => tx.delete(rel, *tid).unwrap(),
            1 => tx.update(rel, *tid, &value(i, 3000)).unwrap(),
            _ => tx.update(rel, *tid, &value(i, 10)).unwrap(),
        }
    }
    for i in 0..200 {
        tx.insert(rel, &value(i, 900)).unwrap();
    }
    tx.abort().unwrap();
    let original = |db: &Database| {
        let tx = db.begin().unwrap();
        let rows: Vec<(TupleId, Vec<u8>)> = tx.scan(rel).unwrap().map(|r| r.unwrap()).collect();
        let expect: Vec<(TupleId, Vec<u8>)> = tids
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, value(i, 200)))
            .collect();
        assert_eq!(rows.len(), expect.len());
        assert!(rows == expect, "rollback did not restore every tuple");
    };
    original(&db);
    {
        let mut tx = db.begin().unwrap();
        tx.update(rel, tids[0], b"dropped").unwrap();
    }
    original(&db);

    // A transaction still running at the crash: its records reach the log
    // (a later commit flushes them) but it never commits.
    let mut loser = db.begin().unwrap();
    for (i, tid) in tids.iter().enumerate().take(100) {
        loser.update(rel, *tid, &value(i + 1, 5000)).unwrap();
    }
    std::mem::forget(loser);
    let mut tx = db.begin().unwrap();
    let committed = tx.insert(rel, b"after").unwrap();
    tx.commit().unwrap();
    drop(db);

    let db = Database::open(dir.path(), small_config()).unwrap();
    let r = db.recovery_report().clone();
    assert_eq!(r.txns_undone, 1, "{r:?}");
    assert!(r.records_undone >= 100, "{r:?}");
    let tx = db.begin().unwrap();
    assert_eq!(
        tx.get(rel, committed).unwrap().as_deref(),
        Some(&b"after"[..])
    );
    for (i, tid) in tids.iter().enumerate() {
        assert_eq!(
            tx.get(rel, *tid).unwrap(),
            Some(value(i, 200)),
            "tuple {tid}"
        );
    }
    drop(tx);
    db.close().unwrap();
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), small_config()).unwrap();
    let e = Database::open(dir.path(), small_config()).unwrap_err();
    assert!(matches!(e, Error::Db(DbError::Locked(_))), "{e}");
    db.close().unwrap();
    Database::open(dir.path(), small_config())
        .unwrap()
        .close()
        .unwrap();
}

#[test]
fn bad_tuple_ids_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), small_config()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    let tid = tx.insert(rel, b"x").unwrap();
    let far: TupleId = "999.0".parse().unwrap();
    let slot: TupleId = format!("{}.77", tid.page).parse().unwrap();
    assert_eq!(tx.get(rel, far).unwrap(), None);
    assert_eq!(tx.get(rel, slot).unwrap(), None);
    for t in [far, slot] {
        let e = tx.update(rel, t, b"y").unwrap_err();
        assert!(matches!(e, Error::Db(DbError::NoSuchTuple { .. })), "{e}");
        assert!(tx.delete(rel, t).is_err());
    }
    tx.commit().unwrap();
    db.close().unwrap();
}

#[test]
fn read_page_returns_verifiable_pages_and_refuses_pages_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), small_config()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(rel, b"x").unwrap();
    tx.commit().unwrap();
    let page = db.read_page("t", keel::PageId(0)).unwrap();
    keel::page::verify(&page, keel::PageId(0)).unwrap();
    let e = db.read_page("t", keel::PageId(5)).unwrap_err();
    assert!(matches!(e, Error::Db(DbError::NoSuchPage { .. })), "{e}");
    assert_eq!(e.class(), keel::ErrorClass::Usage);
    db.close().unwrap();
}

fn control(dir: &std::path::Path) -> keel::recovery::Control {
    let io = keel_io::open_backend(&keel_io::IoConfig::default()).unwrap();
    keel::recovery::control::read_control(&io, dir)
        .unwrap()
        .expect("a control file")
}

/// After a crash, `open` returns once redo and undo are done and the
/// end-of-recovery checkpoint runs in the background (the default): work
/// goes on meanwhile, dropping the database waits for the checkpoint, and
/// the next recovery starts from it. With `BeforeOpenReturns` it is taken
/// inside `open`.
#[test]
fn the_checkpoint_after_crash_recovery_runs_in_the_background_and_the_next_recovery_starts_there() {
    for mode in [
        keel::RecoveryCheckpoint::Background,
        keel::RecoveryCheckpoint::BeforeOpenReturns,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            recovery_checkpoint: mode,
            checkpoint_interval: None,
            checkpoint_wal_bytes: 0,
            ..small_config()
        };
        let db = Database::open(dir.path(), config.clone()).unwrap();
        let rel = db.create_relation("r").unwrap();
        db.checkpoint().unwrap();
        let mut rows = BTreeMap::new();
        for batch in 0..20 {
            let mut tx = db.begin().unwrap();
            for i in 0..100 {
                let v = value(batch * 100 + i, 60);
                rows.insert(tx.insert(rel, &v).unwrap(), v);
            }
            tx.commit().unwrap();
        }
        drop(db); // the crash
        let before = control(dir.path());

        let db = Database::open(dir.path(), config.clone()).unwrap();
        let report = db.recovery_report().clone();
        assert!(!report.clean_shutdown, "{mode:?}");
        assert!(report.records_redone >= 2000, "{mode:?}: {report:?}");
        // Work runs while (or after) the checkpoint is taken.
        let mut tx = db.begin().unwrap();
        for (tid, v) in &rows {
            assert_eq!(tx.get(rel, *tid).unwrap().as_ref(), Some(v), "{mode:?}");
        }
        let extra = value(99_999, 30);
        rows.insert(tx.insert(rel, &extra).unwrap(), extra);
        tx.commit().unwrap();
        drop(db); // a second crash; waits for the recovery checkpoint
        let after = control(dir.path());
        assert!(
            after.redo_start >= report.log_end && !after.clean,
            "{mode:?}: the recovery checkpoint moved redo from {:?} to {:?}, not past {:?}",
            before.redo_start,
            after.redo_start,
            report.log_end
        );

        let db = Database::open(dir.path(), config).unwrap();
        let again = db.recovery_report().clone();
        assert_eq!(again.redo_start, after.redo_start, "{mode:?}");
        assert!(
            again.records_scanned < report.records_scanned / 10,
            "{mode:?}: {again:?}"
        );
        let tx = db.begin().unwrap();
        let got: BTreeMap<TupleId, Vec<u8>> = tx.scan(rel).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(got, rows, "{mode:?}");
        drop(tx);
        db.close().unwrap();
        assert!(control(dir.path()).clean);
    }
}

/// Rolling back an insert takes the tuple's before-image from its page (the
/// undo stack keeps no copy of inserted tuples): a transaction that inserts
/// tuples and then shrinks, grows (past a page, into an overflow chain) or
/// deletes them rolls back to exactly what was committed, both by `abort`
/// and by recovery after a crash.
#[test]
fn inserts_changed_by_their_own_transaction_roll_back_live_and_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), small_config()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    let mut kept: Vec<(TupleId, Vec<u8>)> = (0..50)
        .map(|i| (tx.insert(rel, &value(i, 150)).unwrap(), value(i, 150)))
        .collect();
    tx.commit().unwrap();
    let churn = |tx: &mut Transaction<'_>| {
        for i in 0..120 {
            let tid = tx.insert(rel, &value(i, 100)).unwrap();
            match i % 3 {
                0 => tx.update(rel, tid, &value(i, 20)).unwrap(),
                1 => {
                    tx.update(rel, tid, &value(i, 6000)).unwrap();
                    tx.update(rel, tid, &value(i, 50)).unwrap();
                }
                _ => tx.delete(rel, tid).unwrap(),
            }
        }
    };
    let rows = |db: &Database| -> Vec<(TupleId, Vec<u8>)> {
        let tx = db.begin().unwrap();
        tx.scan(rel).unwrap().map(|r| r.unwrap()).collect()
    };

    let mut tx = db.begin().unwrap();
    churn(&mut tx);
    tx.abort().unwrap();
    assert!(
        rows(&db) == kept,
        "abort left other tuples than the committed ones"
    );

    let mut loser = db.begin().unwrap();
    churn(&mut loser);
    std::mem::forget(loser);
    let mut tx = db.begin().unwrap();
    kept.push((tx.insert(rel, b"after").unwrap(), b"after".to_vec()));
    tx.commit().unwrap();
    drop(db);

    let db = Database::open(dir.path(), small_config()).unwrap();
    let r = db.recovery_report().clone();
    assert_eq!(r.txns_undone, 1, "{r:?}");
    let mut got = rows(&db);
    got.sort();
    kept.sort();
    assert!(
        got == kept,
        "recovery left other tuples than the committed ones"
    );
}

/// `insert_many` is a run of inserts logged a page at a time: its values
/// come back in order under the TupleIds it returned (overflow values and
/// empty ones included, free slots reused), it writes far fewer records
/// than tuples, a value too large changes nothing, and a transaction that
/// bulk-inserts and then changes its own tuples rolls back to exactly what
/// was committed, both by `abort` and by recovery after a crash.
#[test]
fn insert_many_rolls_back_live_and_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), small_config()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let rows = |db: &Database| -> Vec<(TupleId, Vec<u8>)> {
        let tx = db.begin().unwrap();
        tx.scan(rel).unwrap().map(|r| r.unwrap()).collect()
    };
    // Mixed sizes: mostly small, some empty, some past INLINE_MAX.
    let len = |i: usize| match i % 50 {
        0 => 5000,
        7 => 0,
        _ => 20 + i % 180,
    };
    let values: Vec<Vec<u8>> = (0..400).map(|i| value(i, len(i))).collect();
    let records = db.wal_stats().records;
    let mut tx = db.begin().unwrap();
    let tids = tx.insert_many(rel, &values).unwrap();
    tx.commit().unwrap();
    let written = db.wal_stats().records - records;
    assert!(
        written < 100,
        "{written} records for 400 tuples: not logged a page at a time"
    );
    let mut kept: Vec<(TupleId, Vec<u8>)> = tids.iter().copied().zip(values).collect();
    assert_eq!(rows(&db), {
        let mut k = kept.clone();
        k.sort();
        k
    });
    // Deleted slots are freed after the commit; the next bulk insert
    // reuses them between tuples still in use.
    let mut tx = db.begin().unwrap();
    for (tid, _) in kept.iter().step_by(3) {
        tx.delete(rel, *tid).unwrap();
    }
    tx.commit().unwrap();
    kept = kept
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, r)| r)
        .collect();
    let more: Vec<Vec<u8>> = (400..600).map(|i| value(i, len(i))).collect();
    let mut tx = db.begin().unwrap();
    let tids = tx.insert_many(rel, &more).unwrap();
    for (tid, v) in tids.iter().zip(&more) {
        assert_eq!(tx.get(rel, *tid).unwrap().as_ref(), Some(v));
    }
    tx.commit().unwrap();
    kept.extend(tids.into_iter().zip(more));
    kept.sort();
    assert!(
        rows(&db) == kept,
        "the second bulk insert lost or moved tuples"
    );
    // A value too large is refused before anything is inserted.
    let mut tx = db.begin().unwrap();
    let too_big = vec![vec![1u8; 10], vec![0u8; keel::heap::MAX_VALUE_LEN + 1]];
    let e = tx.insert_many(rel, &too_big).unwrap_err();
    assert!(matches!(e, Error::Db(DbError::ValueTooLarge { .. })), "{e}");
    tx.commit().unwrap();
    assert!(rows(&db) == kept, "a refused bulk insert left tuples");

    let churn = |tx: &mut Transaction<'_>| {
        let values: Vec<Vec<u8>> = (0..300).map(|i| value(i + 1000, len(i))).collect();
        let tids = tx.insert_many(rel, &values).unwrap();
        for (i, tid) in tids.iter().enumerate().step_by(4) {
            match i % 3 {
                0 => tx.update(rel, *tid, &value(i, 7000)).unwrap(),
                1 => tx.update(rel, *tid, &value(i, 3)).unwrap(),
                _ => tx.delete(rel, *tid).unwrap(),
            }
        }
    };
    let mut tx = db.begin().unwrap();
    churn(&mut tx);
    tx.abort().unwrap();
    assert!(
        rows(&db) == kept,
        "abort left other tuples than the committed ones"
    );

    let mut loser = db.begin().unwrap();
    churn(&mut loser);
    std::mem::forget(loser);
    let mut tx = db.begin().unwrap();
    kept.push((tx.insert(rel, b"after").unwrap(), b"after".to_vec()));
    tx.commit().unwrap();
    drop(db);

    let db = Database::open(dir.path(), small_config()).unwrap();
    let r = db.recovery_report().clone();
    assert_eq!(r.txns_undone, 1, "{r:?}");
    assert!(r.consistency_checks > 0, "{r:?}");
    kept.sort();
    assert!(
        rows(&db) == kept,
        "recovery left other tuples than the committed ones"
    );
    db.close().unwrap();
}

/// A configuration whose log retires segments as soon as a checkpoint
/// allows: 1 MiB segments, no spares kept.
fn retiring_config() -> Config {
    let mut config = small_config();
    config.wal.segment_size_bytes = 1 << 20;
    config.wal.min_wal_size_bytes = 0;
    config
}

/// `rounds` transactions of 50 rows of 1,000 bytes into `rel`, each
/// followed by a checkpoint (which retires what the log no longer needs).
fn commit_and_checkpoint(db: &Database, rel: keel::RelationId, rounds: usize) {
    for i in 0..rounds {
        let mut tx = db.begin().unwrap();
        for j in 0..50 {
            tx.insert(rel, &value(i * 50 + j, 1000)).unwrap();
        }
        tx.commit().unwrap();
        db.checkpoint().unwrap();
    }
}

/// A log hold keeps every segment from its LSN through checkpoints, so a
/// reader started there reads every durable record; lifting it lets the
/// next checkpoint retire them.
#[test]
fn a_log_hold_keeps_the_log_for_a_reader_through_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), retiring_config()).unwrap();
    let rel = db.create_relation("r").unwrap();
    let from = db.durable_lsn();
    db.hold_log_from(Some(from));
    commit_and_checkpoint(&db, rel, 40);
    let commits = db
        .log_reader(from)
        .unwrap()
        .map(|r| r.unwrap())
        .filter(|r| r.header.kind == keel::wal::RecordType::Commit)
        .count();
    // The relation's create is a committed system transaction too.
    assert!(commits >= 40, "{commits} commits read");
    db.hold_log_from(None);
    db.checkpoint().unwrap();
    assert!(
        retired(&db, from),
        "the first records are retired once the hold is lifted"
    );
    db.close().unwrap();
}

/// Whether the log from `from` is gone: no reader opens there, or its
/// first record does not read back.
fn retired(db: &Database, from: keel::Lsn) -> bool {
    let first = db.log_reader(from).map(|mut r| r.next().map(|x| x.is_ok()));
    !matches!(first, Ok(Some(true)))
}

/// `WalConfig::hold_at_open`: the log present at open, and all after it,
/// stays through checkpoints (the one ending recovery included) until the
/// hold is moved.
#[test]
fn a_log_held_at_open_survives_recovery_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = retiring_config();
    let db = Database::open(dir.path(), config.clone()).unwrap();
    let rel = db.create_relation("r").unwrap();
    commit_and_checkpoint(&db, rel, 20);
    drop(db); // a crash: the next open recovers and checkpoints
    config.wal.hold_at_open = true;
    let db = Database::open(dir.path(), config).unwrap();
    let oldest = db.log_hold().unwrap();
    commit_and_checkpoint(&db, rel, 20);
    assert!(
        db.log_reader(oldest).unwrap().all(|r| r.is_ok()),
        "every record from the oldest segment at open is still there"
    );
    db.hold_log_from(None);
    db.checkpoint().unwrap();
    assert!(retired(&db, oldest), "retired once released");
    db.close().unwrap();
}

/// A directory an archive follows (an `archive-status` file, which the
/// archiver of crate `keel-archive` writes) is opened with its log held,
/// whatever the configuration says: a checkpoint retires nothing before an
/// archiver has moved the hold. Removing the file ends that.
#[test]
fn a_directory_an_archive_follows_opens_with_its_log_held() {
    let dir = tempfile::tempdir().unwrap();
    let config = retiring_config();
    assert!(!config.wal.hold_at_open);
    let db = Database::open(dir.path(), config.clone()).unwrap();
    let rel = db.create_relation("r").unwrap();
    assert_eq!(db.log_hold(), None, "no archive: no hold");
    commit_and_checkpoint(&db, rel, 20);
    db.close().unwrap();
    let status = dir.path().join(keel::datadir::layout::ARCHIVE_STATUS_FILE);
    std::fs::write(&status, "keel-archive-status 1\n").unwrap();
    let db = Database::open(dir.path(), config.clone()).unwrap();
    let oldest = db.log_hold().expect("held at open");
    commit_and_checkpoint(&db, rel, 20);
    assert!(
        db.log_reader(oldest).unwrap().all(|r| r.is_ok()),
        "every record from the oldest segment at open is still there"
    );
    db.close().unwrap();
    std::fs::remove_file(&status).unwrap();
    let db = Database::open(dir.path(), config).unwrap();
    assert_eq!(db.log_hold(), None, "the file removed: no hold");
    db.checkpoint().unwrap();
    assert!(retired(&db, oldest), "retired once not followed");
    db.close().unwrap();
}
