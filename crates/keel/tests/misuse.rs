#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Misuse through the public API: the `try_` forms never wait (also for
//! the relation-level lock an escalation leaves behind), a thread that
//! waits for a transaction it runs itself gets `Deadlock` instead of
//! hanging, a read-only transaction refuses writes and goes on, and the
//! data directory is private to its owner.
//!
//! Every test that could hang on a regression runs with a lock timeout or
//! a hang guard, so a regression fails instead of stopping the suite.

use std::time::Duration;

use keel::buffer::BufferConfig;
use keel::lock::ESCALATE_AT;
use keel::{Config, Database, DbError, Error, RelationId, TupleId};

/// A lock wait this long means the request waited: it is a guard against a
/// hang, never a measurement.
const HANG_GUARD: Duration = Duration::from_secs(10);

fn config(lock_timeout: Option<Duration>) -> Config {
    let mut c = Config {
        buffer: BufferConfig::with_frames(256),
        lock_timeout,
        checkpoint_interval: None,
        ..Config::default()
    };
    c.wal.segment_size_bytes = 4 << 20;
    c.wal.max_batch_bytes = 256 << 10;
    c
}

fn setup(db: &Database) -> (RelationId, TupleId) {
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    let a = tx.insert(rel, b"a0").unwrap();
    tx.commit().unwrap();
    (rel, a)
}

fn is_would_block(r: &Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(r, Err(Error::Db(DbError::WouldBlock { .. })))
}

#[test]
fn try_forms_never_wait_for_an_escalated_relation_lock() {
    let dir = tempfile::tempdir().unwrap();
    // The lock timeout only guards against a hang: a `try_` call that
    // waits times out and fails the assertions below.
    let db = Database::open(dir.path(), config(Some(HANG_GUARD))).unwrap();
    let (rel, a) = setup(&db);
    let mut bulk = db.begin().unwrap();
    for i in 0..ESCALATE_AT {
        bulk.insert(rel, &i.to_le_bytes()).unwrap();
    }
    // `bulk` now holds the whole relation exclusive.
    let mut other = db.begin().unwrap();
    let got = other.try_get(rel, a);
    assert!(is_would_block(&got), "try_get: {got:?}");
    let upd = other.try_update(rel, a, b"x");
    assert!(is_would_block(&upd), "try_update: {upd:?}");
    let del = other.try_delete(rel, a);
    assert!(is_would_block(&del), "try_delete: {del:?}");
    // Still alive after WouldBlock.
    bulk.commit().unwrap();
    assert_eq!(other.try_get(rel, a).unwrap().as_deref(), Some(&b"a0"[..]));
    other.try_update(rel, a, b"a1").unwrap();
    other.commit().unwrap();
    db.close().unwrap();
}

#[test]
fn a_thread_waiting_for_its_own_transaction_gets_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    // No timeout would leave this wait unbounded; the guard turns a
    // regression into LockTimeout, which fails the assertion.
    let db = Database::open(dir.path(), config(Some(HANG_GUARD))).unwrap();
    let (rel, a) = setup(&db);
    let mut first = db.begin().unwrap();
    first.update(rel, a, b"a1").unwrap();
    let second = db.begin().unwrap();
    // `first` runs on this thread, which would wait for it: it never ends.
    let e = second.get(rel, a).unwrap_err();
    assert!(matches!(e, Error::Db(DbError::Deadlock { .. })), "{e}");
    let e = second.get(rel, a).unwrap_err();
    assert!(matches!(e, Error::Db(DbError::TxnFinished(_))), "{e}");
    drop(second);
    // The same through a chain: `third` waits (on another thread) for
    // `first`; then this thread asks for what `third` holds.
    let mut third = db.begin().unwrap();
    let fresh = third.insert(rel, b"b0").unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(move || {
            // Waits for `first`'s lock on `a`, holding its own on `fresh`.
            let r = third.get(rel, a).map(|v| v.map(|v| v.to_vec()));
            (r, third)
        });
        while db.lock_stats().waits < 1 {
            std::thread::yield_now();
        }
        let mut fourth = db.begin().unwrap();
        let e = fourth.update(rel, fresh, b"b1").unwrap_err();
        assert!(matches!(e, Error::Db(DbError::Deadlock { .. })), "{e}");
        first.commit().unwrap();
        let (r, third) = waiter.join().unwrap();
        assert_eq!(r.unwrap().as_deref(), Some(&b"a1"[..]));
        third.commit().unwrap();
    });
    assert_eq!(db.lock_stats().deadlocks, 2);
    db.close().unwrap();
}

#[test]
fn a_transaction_handed_to_another_thread_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config(Some(HANG_GUARD))).unwrap();
    let (rel, a) = setup(&db);
    let mut first = db.begin().unwrap();
    first.update(rel, a, b"a1").unwrap();
    std::thread::scope(|s| {
        let (go, wait_go) = std::sync::mpsc::channel::<()>();
        // The new thread makes a call on `first`, so it now runs there.
        let (ran, wait_ran) = std::sync::mpsc::channel::<()>();
        let owner = s.spawn(move || {
            first.get(rel, a).unwrap();
            ran.send(()).unwrap();
            wait_go.recv().unwrap();
            first.commit().unwrap();
        });
        wait_ran.recv().unwrap();
        let second = db.begin().unwrap();
        let got = std::thread::scope(|inner| {
            let reader = inner.spawn(move || second.get(rel, a).unwrap());
            while db.lock_stats().waits < 1 {
                std::thread::yield_now();
            }
            go.send(()).unwrap();
            reader.join().unwrap()
        });
        assert_eq!(got.as_deref(), Some(&b"a1"[..]));
        owner.join().unwrap();
    });
    db.close().unwrap();
}

/// Every directory and file under `dir`, with its permission bits.
fn modes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            if meta.is_dir() {
                todo.push(path.clone());
            }
            out.push((path, meta.permissions().mode() & 0o777, meta.is_dir()));
        }
    }
    out
}

#[test]
fn the_data_directory_and_its_files_are_private_to_their_owner() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("db");
    let db = Database::open(&dir, config(None)).unwrap();
    let (rel, _) = setup(&db);
    let mut tx = db.begin().unwrap();
    tx.insert(rel, &[7u8; 20_000]).unwrap(); // an overflow chain
    tx.commit().unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();
    use std::os::unix::fs::PermissionsExt;
    let top = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(top, 0o700, "the data directory is {top:03o}");
    let all = modes(&dir);
    assert!(
        all.len() >= 6,
        "expected LOCK, control, wal/, rel/ and files: {all:?}"
    );
    for (path, mode, is_dir) in all {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:03o}", path.display());
    }
}

#[test]
fn a_data_directory_other_users_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("db");
    Database::open(&dir, config(None)).unwrap().close().unwrap();
    for (mode, who) in [
        (0o777, "every user"),
        (0o770, "its group"),
        (0o702, "every user"),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = Database::open(&dir, config(None)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&dir.display().to_string()) && msg.contains(who),
            "{mode:03o}: {msg}"
        );
        assert_eq!(e.class(), keel::ErrorClass::Usage, "{msg}");
    }
    // Readable by others (as an older Keel made it) is opened as it is.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    Database::open(&dir, config(None)).unwrap().close().unwrap();
}

/// Every write in a read-only transaction (`begin_read`) fails with
/// `ReadOnly` before it takes a lock or changes anything: the transaction
/// goes on reading what it read before (nothing of it changed), a writer
/// beside it is not held back by any of the refused writes, and it commits
/// or rolls back as any reader does.
#[test]
fn a_read_only_transaction_refuses_every_write_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config(Some(HANG_GUARD))).unwrap();
    let (rel, a) = setup(&db);
    let tree = db.create_tree("kv").unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(tree, b"k", b"v").unwrap();
    tx.commit().unwrap();
    let refused = |r: Result<(), Error>, what: &str| match r {
        Err(Error::Db(DbError::ReadOnly { .. })) => {}
        other => panic!("{what} in a read-only transaction: {other:?}"),
    };

    for end_with_commit in [true, false] {
        let mut reader = db.begin_read().unwrap();
        assert!(reader.is_read_only());
        assert_eq!(reader.get(rel, a).unwrap().as_deref(), Some(&b"a0"[..]));
        refused(reader.insert(rel, b"x").map(|_| ()), "insert");
        refused(reader.insert_many(rel, [b"x"]).map(|_| ()), "insert_many");
        refused(reader.update(rel, a, b"x"), "update");
        refused(reader.try_update(rel, a, b"x"), "try_update");
        refused(reader.delete(rel, a), "delete");
        refused(reader.try_delete(rel, a), "try_delete");
        refused(reader.put(tree, b"k", b"x"), "put");
        refused(reader.put(tree, b"new", b"x"), "put of a new key");
        refused(reader.replace(tree, b"k", b"x").map(|_| ()), "replace");
        refused(reader.delete_key(tree, b"k").map(|_| ()), "delete_key");
        let empty = db.create_tree(&format!("empty{end_with_commit}")).unwrap();
        refused(
            reader.bulk_load(empty, [(b"a", b"1")]).map(|_| ()),
            "bulk_load",
        );
        // Still live, and nothing changed.
        assert_eq!(reader.get(rel, a).unwrap().as_deref(), Some(&b"a0"[..]));
        assert_eq!(
            reader.get_key(tree, b"k").unwrap().as_deref(),
            Some(&b"v"[..])
        );
        // The refusals took no lock: a writer on this thread (where a wait
        // for the reader would fail at once with Deadlock) loads the tree
        // the reader's bulk load was refused on, which needs it exclusive,
        // and inserts into the relation; the tuple the reader read stays
        // locked shared.
        let mut w = db.begin().unwrap();
        w.bulk_load(empty, [(b"a", b"1")]).unwrap();
        w.insert(rel, b"w").unwrap();
        assert!(matches!(
            w.try_update(rel, a, b"w"),
            Err(Error::Db(DbError::WouldBlock { .. }))
        ));
        w.commit().unwrap();
        if end_with_commit {
            reader.commit().unwrap();
        } else {
            reader.abort().unwrap();
        }
    }
    let mut w = db.begin().unwrap();
    w.update(rel, a, b"a1").unwrap();
    w.commit().unwrap();
    assert!(!db.begin().unwrap().is_read_only());
    db.close().unwrap();
}

/// Rolls `victim` back the way a deadlock does: it waits, on this thread,
/// for a key another transaction of this thread holds exclusively. Returns
/// that other transaction, still running.
fn roll_back_by_deadlock<'db>(
    db: &'db Database,
    victim: &keel::Transaction<'db>,
    other_tree: RelationId,
) -> keel::Transaction<'db> {
    let mut w = db.begin().unwrap();
    w.put(other_tree, b"k", b"changed").unwrap();
    let e = victim.get_key(other_tree, b"k").unwrap_err();
    assert!(matches!(e, Error::Db(DbError::Deadlock { .. })), "{e}");
    w
}

fn is_finished<T: std::fmt::Debug>(item: Option<keel::Result<T>>, what: &str) {
    match item {
        Some(Err(Error::Db(DbError::TxnFinished(_)))) => {}
        other => panic!("{what} after its transaction was rolled back: {other:?}"),
    }
}

/// A range or scan still open over a transaction that a deadlock rolled
/// back returns `TxnFinished` for its next item, not rows the transaction
/// read before (no longer locked) nor rows read afterwards with no lock
/// at all (a range covered by a tree lock the rollback released).
#[test]
fn an_open_range_or_scan_returns_nothing_after_its_transaction_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config(Some(HANG_GUARD))).unwrap();
    let (rel, a) = setup(&db);
    let tree = db.create_tree("kv").unwrap();
    let other = db.create_tree("other").unwrap();
    let key = |i: u32| format!("key{i:04}").into_bytes();
    let mut tx = db.begin().unwrap();
    for i in 0..200 {
        tx.put(tree, &key(i), b"v").unwrap();
        tx.insert(rel, b"row").unwrap();
    }
    tx.put(other, b"k", b"v").unwrap();
    tx.commit().unwrap();

    // A range covered by the read-only transaction's tree lock.
    let reader = db.begin_read().unwrap();
    for i in 0..keel::TREE_READ_ESCALATE_AT + 1 {
        reader.get_key(tree, &key(i)).unwrap();
    }
    let mut covered = reader.range(tree, ..).unwrap();
    let mut w = roll_back_by_deadlock(&db, &reader, other);
    // The rollback released the tree lock: a writer changes the tree.
    w.put(tree, b"a-new-key", b"uncommitted").unwrap();
    is_finished(covered.next(), "a covered range");
    drop(covered);
    w.abort().unwrap();
    drop(reader);

    // Ranges from either end, in the middle of their first batch.
    for backward in [false, true] {
        let reader = db.begin().unwrap();
        let mut range = reader.range(tree, ..).unwrap();
        let first = if backward {
            range.next_back()
        } else {
            range.next()
        };
        assert!(matches!(first, Some(Ok(_))), "{first:?}");
        let mut w = roll_back_by_deadlock(&db, &reader, other);
        w.put(tree, &key(if backward { 197 } else { 2 }), b"changed")
            .unwrap();
        let next = if backward {
            range.next_back()
        } else {
            range.next()
        };
        is_finished(next, "a range");
        drop(range);
        w.abort().unwrap();
    }

    // A heap scan in the middle of its first page.
    let reader = db.begin().unwrap();
    let mut scan = reader.scan(rel).unwrap();
    assert_eq!(scan.next().unwrap().unwrap().0, a);
    let w = roll_back_by_deadlock(&db, &reader, other);
    is_finished(scan.next(), "a heap scan");
    drop(scan);
    w.abort().unwrap();
    drop(reader);
    db.close().unwrap();
}
