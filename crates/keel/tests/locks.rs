#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Locking seen through the public API: readers wait for writers, scans
//! never return uncommitted tuples, deadlocks roll the victim back (also a
//! cycle closed through a holder granted after its waiter began waiting),
//! the `try_` forms never wait, and lock waits can time out.

use std::time::{Duration, Instant};

use keel::buffer::BufferConfig;
use keel::{Config, Database, DbError, Error, RelationId, TupleId};

fn open(dir: &std::path::Path, lock_timeout: Option<Duration>) -> Database {
    let mut c = Config {
        buffer: BufferConfig::with_frames(64),
        lock_timeout,
        ..Config::default()
    };
    c.wal.segment_size_bytes = 4 << 20;
    c.wal.max_batch_bytes = 256 << 10;
    Database::open(dir, c).unwrap()
}

fn setup(db: &Database) -> (RelationId, TupleId, TupleId) {
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    let a = tx.insert(rel, b"a0").unwrap();
    let b = tx.insert(rel, b"b0").unwrap();
    tx.commit().unwrap();
    (rel, a, b)
}

#[test]
fn a_reader_waits_for_the_writer_and_sees_only_committed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), None);
    let (rel, a, _) = setup(&db);
    let mut w = db.begin().unwrap();
    w.update(rel, a, b"a1-uncommitted").unwrap();
    let fresh = w.insert(rel, b"new-uncommitted").unwrap();
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let r = db.begin().unwrap();
            let got = r.get(rel, a).unwrap();
            let rows: Vec<_> = r.scan(rel).unwrap().map(|x| x.unwrap()).collect();
            (got, rows)
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !reader.is_finished(),
            "the reader did not wait for the writer"
        );
        let r2 = db.begin().unwrap();
        let e = r2.try_get(rel, a).unwrap_err();
        assert!(matches!(e, Error::Db(DbError::WouldBlock { .. })), "{e}");
        assert_eq!(
            r2.get(rel, TupleId::new(keel::PageId(99), keel::SlotId(0)))
                .unwrap(),
            None
        );
        drop(r2);
        w.abort().unwrap();
        let (got, rows) = reader.join().unwrap();
        assert_eq!(got.as_deref(), Some(&b"a0"[..]));
        assert!(
            rows.iter().all(|(t, _)| *t != fresh),
            "a scan returned an aborted insert"
        );
        assert_eq!(rows.len(), 2);
    });
    db.close().unwrap();
}

#[test]
fn a_deadlock_rolls_the_victim_back_and_the_other_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), None);
    let (rel, a, b) = setup(&db);
    let mut t1 = db.begin().unwrap();
    let mut t2 = db.begin().unwrap();
    t1.update(rel, a, b"a-t1").unwrap();
    t2.update(rel, b, b"b-t2").unwrap();
    std::thread::scope(|s| {
        let first = s.spawn(move || {
            // Waits for t2's lock on b.
            t1.update(rel, b, b"b-t1").unwrap();
            t1.commit().unwrap();
        });
        std::thread::sleep(Duration::from_millis(100));
        let e = t2.update(rel, a, b"a-t2").unwrap_err();
        assert!(matches!(e, Error::Db(DbError::Deadlock { .. })), "{e}");
        let e = t2.update(rel, a, b"again").unwrap_err();
        assert!(matches!(e, Error::Db(DbError::TxnFinished(_))), "{e}");
        drop(t2);
        first.join().unwrap();
    });
    let r = db.begin().unwrap();
    assert_eq!(r.get(rel, a).unwrap().as_deref(), Some(&b"a-t1"[..]));
    assert_eq!(r.get(rel, b).unwrap().as_deref(), Some(&b"b-t1"[..]));
    drop(r);
    assert_eq!(db.lock_stats().deadlocks, 1);
    db.close().unwrap();
}

/// Waits until `f` holds; fails the test naming `what` after ten seconds.
fn wait_for(what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A waiter waits for every transaction whose lock conflicts with what it
/// wants *now*, including one granted after it began waiting (requests
/// are granted whenever compatible, so a reader can join the reader a
/// writer waits for). A cycle closed through such a holder has a victim at
/// once, not only when an unrelated transaction ends: here T1 waits to
/// write `a`, read by T2; T3 then reads `a` too and waits to read `b`,
/// written by T1. T1 and T3 wait for each other while T2 stays open, and
/// with no lock timeout they would wait forever if T2 waited for them.
#[test]
fn a_cycle_closed_through_a_holder_granted_after_the_wait_began_has_a_victim() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), None);
    let (rel, a, b) = setup(&db);
    // T2, on this thread: a reader of `a`, otherwise idle.
    let t2 = db.begin().unwrap();
    assert_eq!(t2.get(rel, a).unwrap().as_deref(), Some(&b"a0"[..]));
    std::thread::scope(|s| {
        let db = &db;
        let t1 = s.spawn(move || {
            let mut t1 = db.begin().unwrap();
            t1.update(rel, b, b"b1").unwrap();
            // Waits for T2 (and, once T3 reads `a`, for T3).
            t1.update(rel, a, b"a1")?;
            t1.commit()
        });
        wait_for("T1 waits", || db.lock_stats().waits >= 1);
        let t3 = s.spawn(move || {
            let t3 = db.begin().unwrap();
            // Granted at once: compatible with T2's read.
            t3.get(rel, a).unwrap();
            // Waits for T1's write of `b`: the cycle T3 -> T1 -> T3.
            t3.get(rel, b)?;
            t3.commit()
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !(t1.is_finished() || t3.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let broken = t1.is_finished() || t3.is_finished();
        let stats = db.lock_stats();
        // Let the threads end either way.
        t2.commit().unwrap();
        let ends = [t1.join().unwrap(), t3.join().unwrap()];
        assert!(
            broken,
            "T1 and T3 waited for each other, with no victim, while the unrelated T2 \
             stayed open (lock stats {stats:?})"
        );
        let victims = ends
            .iter()
            .filter(|r| matches!(r, Err(Error::Db(DbError::Deadlock { .. }))))
            .count();
        assert_eq!(victims, 1, "{ends:?}");
        assert!(ends.iter().any(Result::is_ok), "{ends:?}");
        assert_eq!(db.lock_stats().deadlocks, 1);
    });
    db.close().unwrap();
}

#[test]
fn try_forms_never_wait_and_timeouts_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), Some(Duration::from_millis(50)));
    let (rel, a, b) = setup(&db);
    let mut holder = db.begin().unwrap();
    holder.delete(rel, a).unwrap();
    let mut other = db.begin().unwrap();
    other.update(rel, b, b"b1").unwrap();
    let e = other.try_update(rel, a, b"x").unwrap_err();
    assert!(matches!(e, Error::Db(DbError::WouldBlock { .. })), "{e}");
    let e = other.try_delete(rel, a).unwrap_err();
    assert!(matches!(e, Error::Db(DbError::WouldBlock { .. })), "{e}");
    // Still alive after WouldBlock: its own change stands.
    assert_eq!(other.get(rel, b).unwrap().as_deref(), Some(&b"b1"[..]));
    // On another thread: this one runs `holder`, so waiting here for it
    // would be a deadlock.
    let e = std::thread::scope(|s| {
        s.spawn(move || other.update(rel, a, b"x").unwrap_err())
            .join()
            .unwrap()
    });
    assert!(matches!(e, Error::Db(DbError::LockTimeout { .. })), "{e}");
    holder.commit().unwrap();
    let r = db.begin().unwrap();
    assert_eq!(r.get(rel, a).unwrap(), None);
    assert_eq!(
        r.get(rel, b).unwrap().as_deref(),
        Some(&b"b0"[..]),
        "timeout rolled back"
    );
    drop(r);
    db.close().unwrap();
}
