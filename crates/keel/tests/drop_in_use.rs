#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Misuse: dropping a relation that running transactions use. The drop
//! waits for them (an exclusive relation lock, under the lock timeout and
//! deadlock detection); afterwards every use of the relation is
//! `NoSuchRelation`, never an internal error.

use std::time::Duration;

use keel::{Config, Database, DbError, Error};

fn open(tmp: &tempfile::TempDir, lock_timeout: Option<Duration>) -> Database {
    let config = Config {
        lock_timeout,
        checkpoint_interval: None,
        ..Config::default()
    };
    Database::open(tmp.path().join("db"), config).unwrap()
}

fn no_such_relation<T: std::fmt::Debug>(r: keel::Result<T>) {
    match r {
        Err(Error::Db(DbError::NoSuchRelation(_))) => {}
        other => panic!("expected NoSuchRelation, got {other:?}"),
    }
}

#[test]
fn a_drop_waits_for_the_relations_users_then_they_find_it_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp, None);
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    let tid = tx.insert(rel, b"committed").unwrap();
    tx.commit().unwrap();

    let mut writer = db.begin().unwrap();
    writer.insert(rel, b"in flight").unwrap();
    let reader = db.begin().unwrap();
    let waits = db.lock_stats().waits;
    std::thread::scope(|s| {
        let dropper = s.spawn(|| db.drop_relation("t"));
        // The drop is waiting for the relation lock.
        while db.lock_stats().waits == waits && !dropper.is_finished() {
            std::thread::yield_now();
        }
        assert!(
            !dropper.is_finished(),
            "the drop did not wait for the relation's users: {:?}",
            dropper.join().unwrap()
        );
        // The users still work on it meanwhile.
        assert_eq!(
            reader.get(rel, tid).unwrap().as_deref(),
            Some(&b"committed"[..])
        );
        writer.insert(rel, b"more").unwrap();
        writer.commit().unwrap();
        drop(reader);
        dropper.join().unwrap().unwrap();
    });
    assert_eq!(db.relation("t").unwrap(), None);
    let mut late = db.begin().unwrap();
    no_such_relation(late.insert(rel, b"x"));
    no_such_relation(late.get(rel, tid));
    no_such_relation(late.scan(rel).map(|_| ()));
    no_such_relation(db.drop_relation("t"));
    drop(late);
    db.close().unwrap();
}

#[test]
fn a_transaction_that_outlives_a_drop_gets_no_such_relation() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp, None);
    let rel = db.create_relation("t").unwrap();
    // Begun before the drop, never touching the relation until after it.
    let mut tx = db.begin().unwrap();
    db.drop_relation("t").unwrap();
    no_such_relation(tx.insert(rel, b"x"));
    tx.abort().unwrap();
    db.close().unwrap();
}

#[test]
fn a_drop_gives_up_after_the_lock_timeout_and_leaves_the_relation_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp, Some(Duration::from_millis(50)));
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    let tid = tx.insert(rel, b"row").unwrap();
    tx.commit().unwrap();
    let user = db.begin().unwrap();
    user.get(rel, tid).unwrap();
    std::thread::scope(|s| {
        let r = s.spawn(|| db.drop_relation("t")).join().unwrap();
        match r {
            Err(Error::Db(DbError::LockTimeout { .. })) => {}
            other => panic!("expected LockTimeout, got {other:?}"),
        }
    });
    assert_eq!(user.get(rel, tid).unwrap().as_deref(), Some(&b"row"[..]));
    drop(user);
    assert_eq!(db.relation("t").unwrap(), Some(rel));
    db.drop_relation("t").unwrap();
    db.close().unwrap();
    let db = open(&tmp, None);
    assert_eq!(db.relation("t").unwrap(), None);
    db.close().unwrap();
}

/// A thread that drops a relation its own open transaction uses would wait
/// for itself: without a lock timeout, the drop fails at once with
/// `Deadlock` (the waits-for check sees the holder's latest request came
/// from this thread) and changes nothing; the user's transaction goes on.
#[test]
fn a_drop_from_the_thread_whose_transaction_uses_the_relation_is_a_deadlock() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp, None);
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    let tid = tx.insert(rel, b"row").unwrap();
    tx.commit().unwrap();
    let mut user = db.begin().unwrap();
    user.update(rel, tid, b"changed").unwrap();
    match db.drop_relation("t") {
        Err(Error::Db(DbError::Deadlock { .. })) => {}
        other => panic!("expected Deadlock, got {other:?}"),
    }
    assert_eq!(db.relation("t").unwrap(), Some(rel));
    assert_eq!(
        user.get(rel, tid).unwrap().as_deref(),
        Some(&b"changed"[..])
    );
    user.commit().unwrap();
    db.drop_relation("t").unwrap();
    assert_eq!(db.relation("t").unwrap(), None);
    db.close().unwrap();
}
