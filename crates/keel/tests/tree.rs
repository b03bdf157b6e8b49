#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Ordered maps end to end: put, get, delete, ranges in both directions,
//! splits to several levels, rollback (logical undo across splits), reopen
//! and recovery after a crash, page reclaim, and key-range locking.

use std::collections::BTreeMap;
use std::ops::Bound;

use keel::buffer::BufferConfig;
use keel::{Config, Database, DbError, Error, RelationId};

mod common;

fn config() -> Config {
    let mut c = Config {
        buffer: BufferConfig::with_frames(256),
        consistency_check: true,
        ..Config::default()
    };
    c.wal.segment_size_bytes = 4 << 20;
    c
}

/// A key that spreads inserts over the whole tree.
fn key(i: u64) -> Vec<u8> {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut k = h.to_be_bytes().to_vec();
    k.extend_from_slice(&i.to_be_bytes());
    k
}

fn value(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect()
}

fn all(db: &Database, tree: RelationId) -> Vec<(Vec<u8>, Vec<u8>)> {
    let tx = db.begin().unwrap();
    let v = tx.range(tree, ..).unwrap().map(|kv| kv.unwrap()).collect();
    tx.commit().unwrap();
    v
}

#[test]
fn a_tree_holds_what_a_map_holds_through_splits_rollback_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let tree = db.create_tree("t").unwrap();
    assert_eq!(db.tree("t").unwrap(), Some(tree));
    let mut model = BTreeMap::new();
    // Enough keys for three levels (about 40 items per leaf).
    for batch in 0..20u64 {
        let mut tx = db.begin().unwrap();
        for i in batch * 500..(batch + 1) * 500 {
            let v = value(i, 150);
            tx.put(tree, &key(i), &v).unwrap();
            model.insert(key(i), v);
        }
        tx.commit().unwrap();
    }
    // A rolled-back transaction that splits leaves and replaces values.
    let mut tx = db.begin().unwrap();
    for i in 10_000..12_000u64 {
        tx.put(tree, &key(i), &value(i, 150)).unwrap();
    }
    for i in 0..300u64 {
        let old = tx.replace(tree, &key(i), b"changed").unwrap();
        assert_eq!(old, Some(value(i, 150)));
        assert_eq!(
            tx.delete_key(tree, &key(i + 300)).unwrap(),
            Some(value(i + 300, 150))
        );
    }
    tx.abort().unwrap();
    assert_eq!(
        all(&db, tree),
        model.clone().into_iter().collect::<Vec<_>>()
    );

    // Deletes, large values (overflow chains), empty keys and values.
    let mut tx = db.begin().unwrap();
    for i in (0..10_000u64).step_by(3) {
        assert!(tx.delete_key(tree, &key(i)).unwrap().is_some());
        model.remove(&key(i));
    }
    let big = value(7, 100_000);
    tx.put(tree, b"big", &big).unwrap();
    model.insert(b"big".to_vec(), big.clone());
    tx.put(tree, b"", b"").unwrap();
    model.insert(Vec::new(), Vec::new());
    tx.commit().unwrap();

    let tx = db.begin().unwrap();
    assert_eq!(tx.get_key(tree, b"big").unwrap(), Some(big.clone()));
    assert_eq!(tx.get_key(tree, &key(0)).unwrap(), None);
    // One buffer for many gets: each found value is all of it, a missing
    // key leaves it empty, whatever it held before (inline values, an
    // overflow chain, the empty value).
    let mut buf = b"left over".to_vec();
    for i in (1..10_000u64).step_by(97) {
        let found = tx.get_key_into(tree, &key(i), &mut buf).unwrap();
        match model.get(&key(i)) {
            Some(v) => assert!(found && buf == *v, "key {i}"),
            None => assert!(!found && buf.is_empty(), "key {i}"),
        }
    }
    assert!(tx.get_key_into(tree, b"big", &mut buf).unwrap());
    assert_eq!(buf, big);
    assert!(!tx.get_key_into(tree, &key(0), &mut buf).unwrap());
    assert!(buf.is_empty());
    buf.extend_from_slice(b"stale");
    assert!(tx.get_key_into(tree, b"", &mut buf).unwrap());
    assert!(buf.is_empty(), "the empty value");
    assert_eq!(tx.first(tree).unwrap().unwrap().0, Vec::<u8>::new());
    assert_eq!(
        tx.last(tree).unwrap(),
        model
            .iter()
            .next_back()
            .map(|(k, v)| (k.clone(), v.clone()))
    );
    let lo = key(17);
    let hi = key(4242);
    let (a, b) = if lo < hi { (lo, hi) } else { (hi, lo) };
    let want: Vec<_> = model
        .range::<[u8], _>((Bound::Included(&a[..]), Bound::Excluded(&b[..])))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let got: Vec<_> = tx
        .range(tree, (Bound::Included(&a[..]), Bound::Excluded(&b[..])))
        .unwrap()
        .map(|kv| kv.unwrap())
        .collect();
    assert_eq!(got, want);
    let mut back: Vec<_> = tx
        .range(tree, (Bound::Included(&a[..]), Bound::Excluded(&b[..])))
        .unwrap()
        .rev()
        .map(|kv| kv.unwrap())
        .collect();
    back.reverse();
    assert_eq!(back, want);
    // Both ends at once meet in the middle without repeating an item.
    let mut r = tx.range(tree, ..).unwrap();
    let mut seen = 0;
    loop {
        let f = r.next().map(|kv| kv.unwrap());
        let b = r.next_back().map(|kv| kv.unwrap());
        seen += usize::from(f.is_some()) + usize::from(b.is_some());
        if f.is_none() && b.is_none() {
            break;
        }
    }
    assert_eq!(seen, model.len());
    assert_eq!(tx.len(tree).unwrap(), model.len());
    tx.commit().unwrap();
    db.close().unwrap();

    let db = Database::open(dir.path(), config()).unwrap();
    assert_eq!(all(&db, tree), model.into_iter().collect::<Vec<_>>());
    db.close().unwrap();
}

#[test]
fn a_crash_loses_no_committed_key_and_keeps_no_uncommitted_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    {
        let db = Database::open(dir.path(), config()).unwrap();
        let tree = db.create_tree("t").unwrap();
        for batch in 0..10u64 {
            let mut tx = db.begin().unwrap();
            for i in batch * 400..(batch + 1) * 400 {
                tx.put(tree, &key(i), &value(i, 100)).unwrap();
                model.insert(key(i), value(i, 100));
            }
            tx.commit().unwrap();
        }
        // Running when the process dies: its splits stay, its keys go.
        let mut tx = db.begin().unwrap();
        for i in 4000..6000u64 {
            tx.put(tree, &key(i), &value(i, 100)).unwrap();
        }
        for i in 0..100u64 {
            tx.delete_key(tree, &key(i)).unwrap();
        }
        std::mem::forget(tx);
        // Dropped without close: recovery runs at the next open.
        drop(db);
    }
    let db = Database::open(dir.path(), config()).unwrap();
    assert!(!db.recovery_report().clean_shutdown);
    let tree = db.tree("t").unwrap().unwrap();
    assert_eq!(all(&db, tree), model.into_iter().collect::<Vec<_>>());
    db.close().unwrap();
}

#[test]
fn misuse_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let tree = db.create_tree("t").unwrap();
    let heap = db.create_relation("h").unwrap();
    let mut tx = db.begin().unwrap();
    let e = tx
        .put(tree, &[0; keel::btree::MAX_KEY_LEN + 1], b"v")
        .unwrap_err();
    assert!(matches!(e, Error::Db(DbError::KeyTooLarge { .. })), "{e}");
    let e = tx.put(heap, b"k", b"v").unwrap_err();
    assert!(
        matches!(e, Error::Db(DbError::WrongRelationKind { .. })),
        "{e}"
    );
    let e = tx.insert(tree, b"v").unwrap_err();
    assert!(
        matches!(e, Error::Db(DbError::WrongRelationKind { .. })),
        "{e}"
    );
    assert!(db.tree("h").is_err());
    tx.put(tree, &[7; keel::btree::MAX_KEY_LEN], b"v").unwrap();
    tx.commit().unwrap();
    // drop_tree refuses a heap, and changes nothing.
    let e = db.drop_tree("h").unwrap_err();
    assert!(
        matches!(e, Error::Db(DbError::WrongRelationKind { .. })),
        "{e}"
    );
    assert_eq!(db.relation("h").unwrap(), Some(heap));
    db.drop_tree("t").unwrap();
    assert_eq!(db.tree("t").unwrap(), None);
    db.close().unwrap();
}

#[test]
fn a_bulk_load_builds_the_tree_bottom_up_and_a_rollback_removes_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let tree = db.create_tree("t").unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> =
        (0..30_000u64).map(|i| (key(i), value(i, 150))).collect();
    model.insert(b"large".to_vec(), value(1, 50_000));
    let pages = |db: &Database| db.relations().iter().find(|r| r.id == tree).unwrap().pages;

    // Rolled back: nothing stays, and the pages it built are free again.
    let mut tx = db.begin().unwrap();
    assert_eq!(tx.bulk_load(tree, &model).unwrap(), model.len() as u64);
    assert_eq!(tx.len(tree).unwrap(), model.len());
    tx.abort().unwrap();
    assert!(all(&db, tree).is_empty());
    let after_abort = pages(&db);

    let mut tx = db.begin().unwrap();
    let e = tx
        .bulk_load(tree, [(b"b", b"1"), (b"a", b"2")])
        .unwrap_err();
    assert!(
        matches!(e, Error::Db(DbError::Unsorted { index: 1 })),
        "{e}"
    );
    tx.bulk_load(tree, &model).unwrap();
    tx.commit().unwrap();
    assert!(
        pages(&db) <= after_abort + 2,
        "the second load reuses the first one's pages"
    );
    assert_eq!(
        all(&db, tree),
        model.clone().into_iter().collect::<Vec<_>>()
    );

    let mut tx = db.begin().unwrap();
    let e = tx.bulk_load(tree, [(b"z", b"1")]).unwrap_err();
    assert!(matches!(e, Error::Db(DbError::TreeNotEmpty(_))), "{e}");
    // Ordinary changes on the loaded tree, then a crash.
    for i in 30_000..31_000u64 {
        tx.put(tree, &key(i), &value(i, 150)).unwrap();
        model.insert(key(i), value(i, 150));
    }
    tx.commit().unwrap();
    drop(db);
    let db = Database::open(dir.path(), config()).unwrap();
    assert_eq!(all(&db, tree), model.into_iter().collect::<Vec<_>>());
    db.close().unwrap();
}

/// A short scan locks about what it returns: the keys it read and the
/// first fill's few more, not every key to the end of its leaf; what it
/// returned stays locked until it ends.
#[test]
fn a_short_scan_locks_what_it_read_not_the_rest_of_its_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.lock_timeout = Some(std::time::Duration::from_millis(300));
    let db = Database::open(dir.path(), c).unwrap();
    let t = db.create_tree("t").unwrap();
    let k = |i: u32| format!("k{i:03}").into_bytes();
    let mut tx = db.begin().unwrap();
    for i in 0..60 {
        tx.put(t, &k(i), b"v").unwrap();
    }
    tx.commit().unwrap();

    let reader = db.begin().unwrap();
    let got: Vec<Vec<u8>> = reader
        .range(t, (Bound::Included(&k(0)[..]), Bound::Unbounded))
        .unwrap()
        .take(2)
        .map(|kv| kv.unwrap().0)
        .collect();
    assert_eq!(got, vec![k(0), k(1)]);

    // Same leaf, far past what the scan returned: not locked.
    let mut writer = db.begin().unwrap();
    writer.put(t, &k(50), b"w").unwrap();
    writer.commit().unwrap();

    // A key the scan returned is locked shared until the reader ends (the
    // writer, on the reader's thread, is refused as a deadlock rather than
    // left waiting: lock module docs, Threads).
    let mut writer = db.begin().unwrap();
    let e = writer.put(t, &k(1), b"w").unwrap_err();
    assert!(
        matches!(
            e,
            Error::Db(DbError::Deadlock { .. } | DbError::LockTimeout { .. })
        ),
        "{e}"
    );
    drop(writer);
    reader.commit().unwrap();
    let mut writer = db.begin().unwrap();
    writer.put(t, &k(1), b"w").unwrap();
    writer.commit().unwrap();
    db.close().unwrap();
}

/// A database whose lock waits end after 20 s (a hang fails, never stops
/// the suite) with a tree `t` of keys `0..n`, values of 20 bytes,
/// committed; the directory goes last.
fn locking_tree(n: u64) -> (tempfile::TempDir, Database, RelationId) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.lock_timeout = Some(std::time::Duration::from_secs(20));
    let db = Database::open(dir.path(), c).unwrap();
    let t = db.create_tree("t").unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..n {
        tx.put(t, &key(i), &value(i, 20)).unwrap();
    }
    tx.commit().unwrap();
    (dir, db, t)
}

/// A read-only transaction that has made `TREE_READ_ESCALATE_AT` gets in
/// a tree holds the whole tree shared: from then on no writer can change
/// any key of it until the reader ends (the keys it read, and every other
/// key and gap). While a writer holds the tree, the reader keeps to key
/// locks and the writer's other keys stay writable.
#[test]
fn a_reader_of_many_keys_locks_the_tree_and_a_writer_keeps_it_to_key_locks() {
    let n = u64::from(keel::TREE_READ_ESCALATE_AT) * 3;
    let (_dir, db, t) = locking_tree(n);
    let refused = |e: Error| {
        // On the reader's own thread a wait is refused as a deadlock (lock
        // module docs, Threads), never left to hang.
        assert!(matches!(e, Error::Db(DbError::Deadlock { .. })), "{e}");
    };

    let reader = db.begin_read().unwrap();
    for i in 0..u64::from(keel::TREE_READ_ESCALATE_AT) - 1 {
        assert_eq!(reader.get_key(t, &key(i)).unwrap(), Some(value(i, 20)));
    }
    // Below the threshold only the keys read are locked.
    let mut w = db.begin().unwrap();
    w.put(t, &key(n - 1), b"w").unwrap();
    w.commit().unwrap();
    let i = u64::from(keel::TREE_READ_ESCALATE_AT) - 1;
    assert_eq!(reader.get_key(t, &key(i)).unwrap(), Some(value(i, 20)));
    // Now the whole tree: a key never read, and a new one.
    let mut w = db.begin().unwrap();
    refused(w.put(t, &key(n - 2), b"w").unwrap_err());
    drop(w);
    let mut w = db.begin().unwrap();
    refused(w.put(t, b"new", b"w").unwrap_err());
    drop(w);
    // Its later gets still answer, absent keys too.
    assert_eq!(reader.get_key(t, b"absent").unwrap(), None);
    assert_eq!(reader.get_key(t, &key(n - 1)).unwrap(), Some(b"w".to_vec()));

    // Moved to another thread, the reader is re-homed by its next get
    // there, so a writer on that thread is refused as a deadlock instead
    // of waiting for a transaction its own thread must finish.
    let shared = &db;
    let reader = std::thread::scope(|s| {
        s.spawn(move || {
            assert_eq!(reader.get_key(t, &key(1)).unwrap(), Some(value(1, 20)));
            let mut w = shared.begin().unwrap();
            let started = std::time::Instant::now();
            refused(w.put(t, &key(2), b"w").unwrap_err());
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
            reader
        })
        .join()
        .unwrap()
    });
    reader.commit().unwrap();
    let mut w = db.begin().unwrap();
    w.put(t, &key(n - 2), b"w").unwrap();
    w.commit().unwrap();

    // A writer holding the tree (IX, uncommitted) keeps a long reader to
    // key locks: the writer can still change keys the reader did not read.
    let mut w = db.begin().unwrap();
    w.put(t, &key(n - 3), b"w1").unwrap();
    let reader = db.begin_read().unwrap();
    for i in 0..4 * u64::from(keel::TREE_READ_ESCALATE_AT) / 3 {
        assert_eq!(reader.get_key(t, &key(i)).unwrap(), Some(value(i, 20)));
    }
    w.put(t, &key(n - 4), b"w2").unwrap();
    refused(w.put(t, &key(5), b"w3").unwrap_err());
    drop(w);
    reader.commit().unwrap();
    db.close().unwrap();
}

/// Two transactions from `begin` that each read twice
/// `TREE_READ_ESCALATE_AT` keys of a tree, and only then (once both have
/// read them) each replace a key neither read, both commit: a transaction
/// that may write keeps to key locks however much it reads. Were either to
/// hold the tree shared after its reads, its write would need the tree
/// exclusive, which the other's shared lock refuses, and each would wait
/// for the other (a deadlock, one of them rolled back).
#[test]
fn read_then_write_transactions_keep_to_key_locks_and_both_commit() {
    let esc = u64::from(keel::TREE_READ_ESCALATE_AT);
    let n = 4 * esc;
    let (_dir, db, t) = locking_tree(n);
    let both_read = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        for w in 0..2 {
            let (db, both_read) = (&db, &both_read);
            s.spawn(move || {
                let mut tx = db.begin().unwrap();
                for i in 0..2 * esc {
                    assert_eq!(tx.get_key(t, &key(i)).unwrap(), Some(value(i, 20)));
                }
                both_read.wait();
                // A key that exists and neither read: its own lock only.
                tx.put(t, &key(3 * esc + w), b"written").unwrap();
                tx.commit().unwrap();
            });
        }
    });
    for w in 0..2 {
        let r = db.begin_read().unwrap();
        assert_eq!(
            r.get_key(t, &key(3 * esc + w)).unwrap(),
            Some(b"written".to_vec())
        );
        r.commit().unwrap();
    }
    db.close().unwrap();
}

/// A range scan counts as one read toward the same escalation, however
/// many keys it reads: a long range alone, or 63 reads, leave the keys
/// outside them writable; the 64th read locks the whole tree shared, and
/// ranges started after it answer from both ends with no key locks. A
/// writer holding the tree keeps a reader of many ranges to key locks.
#[test]
fn ranges_count_toward_the_read_escalation_and_answer_under_the_tree_lock() {
    let esc = u64::from(keel::TREE_READ_ESCALATE_AT);
    let n = esc * 4;
    let (_dir, db, t) = locking_tree(n);
    let sorted: Vec<Vec<u8>> = all(&db, t).into_iter().map(|(k, _)| k).collect();
    let refused = |e: Error| {
        assert!(matches!(e, Error::Db(DbError::Deadlock { .. })), "{e}");
    };
    // Replaces an existing key (its own lock only, no next-key check).
    let replace = |i: usize, v: &[u8]| -> keel::Result<()> {
        let mut w = db.begin().unwrap();
        w.put(t, &sorted[i], v)?;
        w.commit()
    };
    let ten = |tx: &keel::Transaction<'_>, from: usize| -> Vec<Vec<u8>> {
        let lo = (Bound::Included(&sorted[from][..]), Bound::Unbounded);
        tx.range(t, lo)
            .unwrap()
            .take(10)
            .map(|kv| kv.unwrap().0)
            .collect()
    };

    let reader = db.begin_read().unwrap();
    // One long range: one read, whatever its length.
    let lo = (
        Bound::Included(&sorted[0][..]),
        Bound::Included(&sorted[149][..]),
    );
    assert_eq!(reader.range(t, lo).unwrap().count(), 150);
    replace(255, b"w").unwrap();
    // 62 more ranges: 63 reads, still key locks only.
    for i in 0..62 {
        assert_eq!(ten(&reader, i), sorted[i..i + 10].to_vec());
    }
    replace(254, b"w").unwrap();
    // The 64th read locks the tree: a key never read, and a new one.
    assert_eq!(ten(&reader, 200), sorted[200..210].to_vec());
    let mut w = db.begin().unwrap();
    refused(w.put(t, &sorted[230], b"w").unwrap_err());
    drop(w);
    let mut w = db.begin().unwrap();
    refused(w.put(t, b"new", b"w").unwrap_err());
    drop(w);
    // Ranges under the tree lock answer from either end.
    let back: Vec<Vec<u8>> = reader
        .range(t, ..)
        .unwrap()
        .rev()
        .map(|kv| kv.unwrap().0)
        .collect();
    let mut want = sorted.clone();
    want.reverse();
    assert_eq!(back, want);
    assert_eq!(
        reader.last(t).unwrap().unwrap(),
        (sorted[255].clone(), b"w".to_vec())
    );
    let mut both = reader.range(t, ..).unwrap();
    assert_eq!(both.next().unwrap().unwrap().0, sorted[0]);
    assert_eq!(both.next_back().unwrap().unwrap().0, sorted[255]);
    assert_eq!(both.count() as u64, n - 2);
    reader.commit().unwrap();
    replace(230, b"w").unwrap();

    // A writer holding the tree (IX, uncommitted) keeps a reader of many
    // ranges to key locks: the writer can still change keys it did not read.
    let mut w = db.begin().unwrap();
    w.put(t, &sorted[250], b"w1").unwrap();
    let reader = db.begin().unwrap();
    for i in 0..2 * esc as usize {
        assert_eq!(ten(&reader, i % 20), sorted[i % 20..i % 20 + 10].to_vec());
    }
    w.put(t, &sorted[240], b"w2").unwrap();
    refused(w.put(t, &sorted[5], b"w3").unwrap_err());
    drop(w);
    reader.commit().unwrap();
    db.close().unwrap();
}

/// `next_into` and `next_back_into` give what the iterator gives, from
/// both ends at once, into reused buffers: a short value after a long
/// one, an overflow value (read from its chain), and nothing once the two
/// ends meet.
#[test]
fn next_into_reads_what_the_iterator_reads_into_reused_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let t = db.create_tree("t").unwrap();
    let mut tx = db.begin().unwrap();
    let mut model = BTreeMap::new();
    for i in 0..300u64 {
        let len = match i % 50 {
            0 => 20_000,
            1 => 1,
            _ => 40 + (i as usize % 7) * 30,
        };
        model.insert(key(i), value(i, len));
        tx.put(t, &key(i), &value(i, len)).unwrap();
    }
    tx.commit().unwrap();
    let want: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();

    let tx = db.begin().unwrap();
    let (mut k, mut v) = (vec![9u8; 64], vec![9u8; 30_000]);
    let mut r = tx.range(t, ..).unwrap();
    assert!(format!("{r:?}").starts_with("Range"), "{r:?}");
    let (mut front, mut back) = (Vec::new(), Vec::new());
    loop {
        let a = r.next_into(&mut k, &mut v).unwrap();
        if a {
            front.push((k.clone(), v.clone()));
        }
        let b = r.next_back_into(&mut k, &mut v).unwrap();
        if b {
            back.push((k.clone(), v.clone()));
        }
        if !a && !b {
            break;
        }
    }
    assert!(!r.next_into(&mut k, &mut v).unwrap());
    back.reverse();
    front.extend(back);
    assert_eq!(front, want);
    // From a bound, against the iterator over the same range.
    let lo = (
        Bound::Excluded(&want[100].0[..]),
        Bound::Included(&want[160].0[..]),
    );
    let by_iter: Vec<_> = tx.range(t, lo).unwrap().map(|kv| kv.unwrap()).collect();
    let mut r = tx.range(t, lo).unwrap();
    let mut by_into = Vec::new();
    while r.next_into(&mut k, &mut v).unwrap() {
        by_into.push((k.clone(), v.clone()));
    }
    assert_eq!(by_into, by_iter);
    assert_eq!(by_into, want[101..=160].to_vec());
    drop(r);
    tx.commit().unwrap();
    db.close().unwrap();
}

/// A transaction that writes `ESCALATE_AT` keys of a tree holds the tree
/// exclusively (the lock manager's escalation, which the transaction then
/// counts on, taking no more key locks): readers wait for all of it, and
/// what it wrote is there after its commit, or gone after its rollback.
#[test]
fn a_writer_of_many_keys_holds_the_tree_and_its_writes_commit_or_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let t = db.create_tree("t").unwrap();
    let n = u64::from(keel::lock::ESCALATE_AT) * 2 + 10;
    for commit in [false, true] {
        let mut w = db.begin().unwrap();
        for i in 0..n {
            w.put(t, &key(i), &value(i, 30)).unwrap();
        }
        // Replaces under the tree lock too.
        w.put(t, &key(3), b"again").unwrap();
        let r = db.begin().unwrap();
        let e = r.get_key(t, b"never written").unwrap_err();
        assert!(matches!(e, Error::Db(DbError::Deadlock { .. })), "{e}");
        drop(r);
        if commit {
            w.commit().unwrap();
        } else {
            w.abort().unwrap();
        }
        let kv = all(&db, t);
        if commit {
            assert_eq!(kv.len() as u64, n);
            let r = db.begin().unwrap();
            assert_eq!(r.get_key(t, &key(3)).unwrap(), Some(b"again".to_vec()));
            assert_eq!(r.get_key(t, &key(n - 1)).unwrap(), Some(value(n - 1, 30)));
            r.commit().unwrap();
        } else {
            assert!(kv.is_empty());
        }
    }
    db.close().unwrap();
}

/// A reader holding two trees shared, moved to another thread and back,
/// is re-homed by whatever it does on each thread (here a get in the
/// other tree), so a writer on its thread is refused as a deadlock, never
/// left waiting for a transaction only that thread can finish.
#[test]
fn a_reader_moved_between_threads_is_rehomed_by_a_get_in_any_tree() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.lock_timeout = Some(std::time::Duration::from_secs(20));
    let db = Database::open(dir.path(), c).unwrap();
    let (a, b) = (db.create_tree("a").unwrap(), db.create_tree("b").unwrap());
    let n = u64::from(keel::TREE_READ_ESCALATE_AT);
    let mut tx = db.begin().unwrap();
    for i in 0..n {
        tx.put(a, &key(i), b"a").unwrap();
        tx.put(b, &key(i), b"b").unwrap();
    }
    tx.commit().unwrap();
    let reader = db.begin_read().unwrap();
    for i in 0..n {
        reader.get_key(a, &key(i)).unwrap();
        reader.get_key(b, &key(i)).unwrap();
    }
    let reader = std::thread::scope(|s| {
        s.spawn(move || {
            assert_eq!(reader.get_key(a, &key(0)).unwrap(), Some(b"a".to_vec()));
            reader
        })
        .join()
        .unwrap()
    });
    // Back on this thread, a get in the other tree.
    assert_eq!(reader.get_key(b, &key(1)).unwrap(), Some(b"b".to_vec()));
    let mut w = db.begin().unwrap();
    let started = std::time::Instant::now();
    let e = w.put(b, b"new", b"w").unwrap_err();
    assert!(matches!(e, Error::Db(DbError::Deadlock { .. })), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    drop(w);
    reader.commit().unwrap();
    db.close().unwrap();
}

/// The structural check of tree `name` (`keel check`'s) finds nothing.
fn structure_ok(db: &Database, name: &str) {
    let n = common::page_count(db, name);
    let mut read = |id: keel::PageId| {
        db.read_page(name, id)
            .map_err(|e| keel::page::PageError::Corrupted {
                page_id: id,
                offset: 0,
                reason: e.to_string(),
            })
    };
    let report = keel::page::tree::check::check_tree(n, &mut read);
    assert!(
        report.problems.is_empty(),
        "tree {name}: {:?}",
        report.problems
    );
}

/// A bulk load takes every key `put` takes: keys up to `MAX_KEY_LEN`
/// become high keys of full leaves and separators of full internal nodes,
/// and values up to the item limit stay inline beside them.
#[test]
fn a_bulk_load_takes_the_longest_keys_on_every_level() {
    use keel::btree::MAX_KEY_LEN;
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let padded = |i: u64, len: usize| {
        let mut k = format!("{i:06}").into_bytes();
        k.resize(len, b'x');
        k
    };
    type Model = BTreeMap<Vec<u8>, Vec<u8>>;
    let shapes: Vec<(&str, Model)> = vec![
        (
            "eight longest keys",
            (0..8)
                .map(|i| (padded(i, MAX_KEY_LEN), Vec::new()))
                .collect(),
        ),
        (
            "longest keys over three levels",
            (0..600)
                .map(|i| (padded(i, MAX_KEY_LEN), Vec::new()))
                .collect(),
        ),
        (
            "short keys among long ones",
            (0..3000)
                .map(|i| {
                    let len = if i % 7 == 3 { MAX_KEY_LEN } else { 10 };
                    (padded(i, len), value(i, 100))
                })
                .collect(),
        ),
        (
            "items near the limit",
            (0..400).map(|i| (padded(i, 900), value(i, 1000))).collect(),
        ),
    ];
    for (n, (shape, model)) in shapes.into_iter().enumerate() {
        let name = format!("t{n}");
        let tree = db.create_tree(&name).unwrap();
        let mut tx = db.begin().unwrap();
        let loaded = tx
            .bulk_load(tree, &model)
            .unwrap_or_else(|e| panic!("{shape}: {e}"));
        assert_eq!(loaded, model.len() as u64, "{shape}");
        tx.commit().unwrap();
        assert_eq!(
            all(&db, tree),
            model.into_iter().collect::<Vec<_>>(),
            "{shape}"
        );
        structure_ok(&db, &name);
    }
    db.close().unwrap();
}

/// A bulk load refused part way (keys out of order) in a transaction that
/// then commits leaves no overflow chain behind: the values it had
/// written to chains are rolled back at once.
#[test]
fn a_refused_bulk_load_leaves_no_overflow_chain_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let tree = db.create_tree("t").unwrap();
    let big = vec![5u8; 30_000];
    let overflow_pages =
        |db: &Database| common::pages_of_type(db, "t", keel::page::PageType::Overflow);
    let mut tx = db.begin().unwrap();
    let items = [
        (b"b".to_vec(), big.clone()),
        (b"c".to_vec(), big.clone()),
        (b"a".to_vec(), b"x".to_vec()),
    ];
    let e = tx.bulk_load(tree, items).unwrap_err();
    assert!(
        matches!(e, Error::Db(DbError::Unsorted { index: 2 })),
        "{e}"
    );
    assert_eq!(overflow_pages(&db), 0, "chains left after the failure");
    tx.commit().unwrap();
    assert_eq!(overflow_pages(&db), 0, "chains left after the commit");
    assert!(all(&db, tree).is_empty());
    structure_ok(&db, "t");
    db.close().unwrap();
}

/// A clean open reads no node of a tree: the saved free space map covers
/// every page of the file, nodes included (they have no room to record),
/// so the open has nothing to look at. Bad pages elsewhere in a tree do
/// not keep it from opening either (`faults.rs`).
#[test]
fn a_clean_open_reads_no_page_of_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let t = db.create_tree("k").unwrap();
    let mut tx = db.begin().unwrap();
    let items = (0..20_000u32).map(|i| (i.to_be_bytes(), [1u8; 100]));
    tx.bulk_load(t, items).unwrap();
    tx.commit().unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..2_000u32 {
        tx.put(t, &(i * 7 + 3).to_le_bytes(), &[2u8; 150]).unwrap();
    }
    tx.commit().unwrap();
    let pages = common::page_count(&db, "k");
    assert!(pages > 200, "{pages}");
    db.close().unwrap();
    for _ in 0..2 {
        let db = Database::open(dir.path(), config()).unwrap();
        // The catalog's page at most.
        assert!(db.buffer_stats().reads <= 1, "{:?}", db.buffer_stats());
        let tx = db.begin().unwrap();
        assert_eq!(
            tx.get_key(t, &5u32.to_be_bytes()).unwrap().unwrap(),
            [1u8; 100]
        );
        drop(tx);
        db.close().unwrap();
    }
}

/// A split holds at most three pages however tall the tree (btree module
/// docs: a full parent is split, takes the downlink and lets go of the
/// level below before its own downlink goes up), so a pool of four
/// frames grows a tree of five levels of 1,000-byte keys, every put
/// committed, and the tree is whole after a reopen.
#[test]
fn a_pool_of_four_frames_grows_a_tree_of_five_levels() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.buffer = BufferConfig::with_frames(4);
    let wide = |i: u64| {
        let mut k = key(i);
        k.resize(1000, b'.');
        k
    };
    let db = Database::open(dir.path(), c.clone()).unwrap();
    let t = db.create_tree("t").unwrap();
    let mut model = BTreeMap::new();
    for i in 0..2500 {
        let mut tx = db.begin().unwrap();
        tx.put(t, &wide(i), &value(i, 40))
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
        tx.commit().unwrap();
        model.insert(wide(i), value(i, 40));
    }
    let levels = common::nodes_per_level(&db, "t");
    assert!(levels.len() >= 5, "nodes per level {levels:?}");
    db.close().unwrap();
    let db = Database::open(dir.path(), c).unwrap();
    let t = db.tree("t").unwrap().unwrap();
    assert_eq!(all(&db, t), model.into_iter().collect::<Vec<_>>());
    structure_ok(&db, "t");
    db.close().unwrap();
}
