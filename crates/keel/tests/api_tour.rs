#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The public API used the way a newcomer uses it, mistakes included: each
//! test states what a call at an edge must give (a clear error or the
//! right answer), never a panic, a hang or a silently wrong result.

use std::collections::BTreeMap;
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::ops::RangeBounds;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keel::btree::MAX_KEY_LEN;
use keel::buffer::BufferConfig;
use keel::heap::MAX_VALUE_LEN;
use keel::{Config, Database, DbError, Error, RelationId};

/// A range's two ends.
type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

fn config() -> Config {
    let mut c = Config {
        buffer: BufferConfig::with_frames(256),
        checkpoint_interval: None,
        ..Config::default()
    };
    c.wal.segment_size_bytes = 1 << 20;
    c.wal.max_batch_bytes = 128 << 10;
    c
}

fn keys(tx: &keel::Transaction<'_>, tree: RelationId, r: impl RangeBounds<[u8]>) -> Vec<Vec<u8>> {
    tx.range(tree, r).unwrap().map(|kv| kv.unwrap().0).collect()
}

#[test]
fn keys_and_values_at_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let t = db.create_tree("t").unwrap();
    let big = vec![0xabu8; 5 << 20];
    let max_key = vec![0xffu8; MAX_KEY_LEN];
    let mut tx = db.begin().unwrap();
    tx.put(t, b"", b"empty key").unwrap();
    tx.put(t, b"e", b"").unwrap();
    tx.put(t, &max_key, &big).unwrap();
    tx.put(t, b"big", &big).unwrap();
    let e = tx.put(t, &[1; MAX_KEY_LEN + 1], b"v").unwrap_err();
    assert!(matches!(e, Error::Db(DbError::KeyTooLarge { .. })), "{e}");
    let e = tx.get_key(t, &[1; MAX_KEY_LEN + 1]).unwrap_err();
    assert!(matches!(e, Error::Db(DbError::KeyTooLarge { .. })), "{e}");
    let huge = vec![0u8; MAX_VALUE_LEN + 1];
    let e = tx.put(t, b"huge", &huge).unwrap_err();
    assert!(matches!(e, Error::Db(DbError::ValueTooLarge { .. })), "{e}");
    drop(huge);
    tx.commit().unwrap();

    // A 0-byte value replaces a large one; the large one comes back whole
    // from `replace`.
    let mut tx = db.begin().unwrap();
    let old = tx.replace(t, b"big", b"").unwrap();
    assert_eq!(old.as_deref(), Some(&big[..]));
    assert_eq!(tx.get_key(t, b"big").unwrap(), Some(Vec::new()));
    tx.commit().unwrap();

    let check = |db: &Database| {
        let tx = db.begin_read().unwrap();
        assert_eq!(
            tx.get_key(t, b"").unwrap().as_deref(),
            Some(&b"empty key"[..])
        );
        assert_eq!(tx.get_key(t, b"e").unwrap(), Some(Vec::new()));
        assert_eq!(tx.get_key(t, b"big").unwrap(), Some(Vec::new()));
        assert_eq!(tx.get_key(t, &max_key).unwrap().as_deref(), Some(&big[..]));
        assert_eq!(tx.get_key(t, b"huge").unwrap(), None);
        assert_eq!(tx.first(t).unwrap().unwrap().0, b"".to_vec());
        assert_eq!(tx.last(t).unwrap().unwrap().0, max_key);
        assert_eq!(tx.len(t).unwrap(), 4);
        tx.commit().unwrap();
    };
    check(&db);
    db.close().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    check(&db);
    db.close().unwrap();
}

#[test]
fn range_bounds_at_their_edges_answer_as_a_sorted_map_does() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let t = db.create_tree("t").unwrap();
    let empty = db.create_tree("empty").unwrap();
    let mut tx = db.begin().unwrap();
    let model: Vec<Vec<u8>> = [&b""[..], b"a", b"b", b"ba", b"c", &[0xff], &[0xff, 0xff]]
        .iter()
        .map(|k| k.to_vec())
        .collect();
    for k in &model {
        tx.put(t, k, b"v").unwrap();
    }
    tx.commit().unwrap();

    let tx = db.begin().unwrap();
    let a: &[u8] = b"a";
    let b: &[u8] = b"b";
    let c: &[u8] = b"c";
    let bounds: Vec<Bounds<'_>> = vec![
        (Included(c), Included(a)),
        (Included(c), Excluded(a)),
        (Excluded(b), Excluded(b)),
        (Excluded(b), Included(b)),
        (Included(b), Excluded(b)),
        (Included(b), Included(b)),
        (Excluded(b), Unbounded),
        (Unbounded, Excluded(b)),
        (Unbounded, Included(b"")),
        (Unbounded, Excluded(b"")),
        (Excluded(b""), Unbounded),
        (Included(&[0xff]), Unbounded),
        (Excluded(&[0xff, 0xff]), Unbounded),
        (Unbounded, Unbounded),
    ];
    for (lo, hi) in bounds {
        let want: Vec<Vec<u8>> = model
            .iter()
            .filter(|k| (lo, hi).contains(&k[..]))
            .cloned()
            .collect();
        assert_eq!(keys(&tx, t, (lo, hi)), want, "{lo:?}..{hi:?}");
        let mut back: Vec<Vec<u8>> = tx
            .range(t, (lo, hi))
            .unwrap()
            .rev()
            .map(|kv| kv.unwrap().0)
            .collect();
        back.reverse();
        assert_eq!(back, want, "{lo:?}..{hi:?} from the back");
        assert!(keys(&tx, empty, (lo, hi)).is_empty());
    }
    let all: Vec<Vec<u8>> = tx.prefix(t, b"").unwrap().map(|kv| kv.unwrap().0).collect();
    assert_eq!(all, model);
    let ff: Vec<Vec<u8>> = tx
        .prefix(t, &[0xff])
        .unwrap()
        .map(|kv| kv.unwrap().0)
        .collect();
    assert_eq!(ff, vec![vec![0xff], vec![0xff, 0xff]]);
    let b_: Vec<Vec<u8>> = tx
        .prefix(t, b"b")
        .unwrap()
        .map(|kv| kv.unwrap().0)
        .collect();
    assert_eq!(b_, vec![b"b".to_vec(), b"ba".to_vec()]);
    assert_eq!(tx.first(empty).unwrap(), None);
    assert_eq!(tx.last(empty).unwrap(), None);
    assert_eq!(tx.len(empty).unwrap(), 0);
    assert!(tx.prefix(empty, b"").unwrap().next().is_none());
    tx.commit().unwrap();
    db.close().unwrap();
}

/// A range read from both ends at once returns every key exactly once,
/// wherever the two ends meet (within a leaf, at a leaf boundary, on one
/// key).
#[test]
fn a_range_read_from_both_ends_meets_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let t = db.create_tree("t").unwrap();
    let n = 3000u32;
    let key = |i: u32| format!("k{i:06}").into_bytes();
    let mut tx = db.begin().unwrap();
    for i in 0..n {
        tx.put(t, &key(i), &[7; 100]).unwrap();
    }
    tx.commit().unwrap();
    let tx = db.begin_read().unwrap();
    for (lo, hi) in [(0, n), (10, 11), (10, 12), (10, 13), (0, 700), (333, 2999)] {
        let (lo_k, hi_k) = (key(lo), key(hi));
        for pattern in 0..4u32 {
            let mut r = tx
                .range(t, (Included(&lo_k[..]), Excluded(&hi_k[..])))
                .unwrap();
            let (mut front, mut back) = (Vec::new(), Vec::new());
            let mut step = 0u32;
            loop {
                let from_front = match pattern {
                    0 => step.is_multiple_of(2),
                    1 => !step.is_multiple_of(3),
                    2 => step.is_multiple_of(5),
                    _ => (step * 7919) % 11 < 5,
                };
                step += 1;
                let item = if from_front { r.next() } else { r.next_back() };
                match item {
                    Some(kv) => match from_front {
                        true => front.push(kv.unwrap().0),
                        false => back.push(kv.unwrap().0),
                    },
                    None => break,
                }
            }
            assert!(r.next().is_none() && r.next_back().is_none());
            back.reverse();
            front.extend(back);
            let want: Vec<Vec<u8>> = (lo..hi).map(key).collect();
            assert_eq!(front.len(), want.len(), "{lo}..{hi} pattern {pattern}");
            assert!(front == want, "{lo}..{hi} pattern {pattern}");
        }
    }
    tx.commit().unwrap();
    db.close().unwrap();
}

#[test]
fn names_a_newcomer_tries_are_refused_or_kept_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    db.create_relation("events").unwrap();
    let e = db.create_tree("events").unwrap_err();
    assert!(matches!(e, Error::Db(DbError::RelationExists(_))), "{e}");
    let t = db.create_tree("t").unwrap();
    let e = db.create_relation("t").unwrap_err();
    assert!(matches!(e, Error::Db(DbError::RelationExists(_))), "{e}");
    let e = db.create_tree("t").unwrap_err();
    assert!(matches!(e, Error::Db(DbError::RelationExists(_))), "{e}");
    for bad in ["", "a\0b", "line\nbreak", &"x".repeat(256)] {
        let e = db.create_tree(bad).unwrap_err();
        assert!(
            matches!(e, Error::Db(DbError::BadRelationName { .. })),
            "{bad:?}: {e}"
        );
    }
    // Names are names, never paths: these are kept as they are.
    let odd = [
        "a/b".to_string(),
        "../../etc".to_string(),
        "x".repeat(255),
        "é".repeat(127),
        " ".to_string(),
    ];
    for name in &odd {
        db.create_tree(name).unwrap();
    }
    let e = db.tree("events").unwrap_err();
    assert!(
        matches!(e, Error::Db(DbError::WrongRelationKind { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("events"), "{e}");
    db.close().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    for name in &odd {
        assert!(db.tree(name).unwrap().is_some(), "{name:?} kept");
    }
    assert_eq!(db.tree("t").unwrap(), Some(t));
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!files.iter().any(|f| f == "a" || f == "etc"), "{files:?}");
    db.close().unwrap();
}

/// A tree handle kept after the tree is dropped (and a new one made under
/// its name) names the old tree as gone, never reaches the new one.
#[test]
fn a_tree_handle_after_its_drop_is_no_such_relation_even_when_the_name_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let old = db.create_tree("t").unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(old, b"k", b"old").unwrap();
    tx.commit().unwrap();
    db.drop_tree("t").unwrap();
    let new = db.create_tree("t").unwrap();
    assert_ne!(old, new);
    let mut tx = db.begin().unwrap();
    tx.put(new, b"k", b"new").unwrap();
    tx.commit().unwrap();
    let mut tx = db.begin().unwrap();
    for r in [
        tx.get_key(old, b"k").map(|_| ()),
        tx.range(old, ..).map(|_| ()),
        tx.prefix(old, b"").map(|_| ()),
        tx.first(old).map(|_| ()),
        tx.len(old).map(|_| ()),
    ] {
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Db(DbError::NoSuchRelation(_))), "{e}");
    }
    let e = tx.put(old, b"k", b"x").unwrap_err();
    assert!(matches!(e, Error::Db(DbError::NoSuchRelation(_))), "{e}");
    let e = tx.delete_key(old, b"k").unwrap_err();
    assert!(matches!(e, Error::Db(DbError::NoSuchRelation(_))), "{e}");
    drop(tx);
    let tx = db.begin().unwrap();
    assert_eq!(tx.get_key(new, b"k").unwrap().as_deref(), Some(&b"new"[..]));
    drop(tx);
    let e = db.drop_tree("t-gone").unwrap_err();
    assert!(matches!(e, Error::Db(DbError::NoSuchRelation(_))), "{e}");
    db.close().unwrap();
}

/// A transaction moved to another thread commits there; one dropped there
/// rolls back.
#[test]
fn a_transaction_ends_on_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let t = db.create_tree("t").unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(t, b"a", b"1").unwrap();
    std::thread::scope(|s| s.spawn(move || tx.commit().unwrap()).join().unwrap());
    let mut tx = db.begin().unwrap();
    tx.put(t, b"b", b"2").unwrap();
    std::thread::scope(|s| s.spawn(move || drop(tx)).join().unwrap());
    let tx = db.begin().unwrap();
    assert_eq!(keys(&tx, t, ..), vec![b"a".to_vec()]);
    assert_eq!(db.active_transactions(), 1);
    drop(tx);
    assert_eq!(db.active_transactions(), 0);
    db.close().unwrap();
}

#[test]
fn configurations_a_newcomer_tries() {
    let mut c = config();
    c.wal.segment_size_bytes = 4096;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("segment_size_bytes"), "{e}");
    let mut c = config();
    c.wal.segment_size_bytes = (1 << 20) + 1;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("segment_size_bytes"), "{e}");
    let mut c = config();
    c.checkpoint_interval = Some(Duration::ZERO);
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("checkpoint_interval"), "{e}");
    // Fewer frames than one operation pins at once.
    let mut c = config();
    c.buffer = BufferConfig::with_frames(keel::MIN_FRAMES - 1);
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("pool_bytes") && e.contains("at least 4"), "{e}");
    // The refusal is the same through `open`, which creates nothing.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    assert!(Database::open(&path, c).is_err());
    assert!(
        !path.exists(),
        "a refused configuration created the directory"
    );

    // A checkpoint after every byte of log, and a short interval: every
    // commit works and the database reopens clean.
    let mut c = config();
    c.checkpoint_wal_bytes = 1;
    c.checkpoint_interval = Some(Duration::from_millis(1));
    c.buffer = BufferConfig::with_frames(16);
    let db = Database::open(&path, c.clone()).unwrap();
    let t = db.create_tree("t").unwrap();
    for i in 0..200u32 {
        let mut tx = db.begin().unwrap();
        tx.put(t, &i.to_be_bytes(), &[1; 300]).unwrap();
        tx.commit().unwrap();
    }
    assert!(
        db.background_error().is_none(),
        "{:?}",
        db.background_error()
    );
    db.close().unwrap();
    let db = Database::open(&path, c).unwrap();
    assert!(db.recovery_report().clean_shutdown);
    assert_eq!(db.begin().unwrap().len(t).unwrap(), 200);
    db.close().unwrap();
}

#[test]
fn a_regular_file_as_the_data_directory_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain");
    std::fs::write(&file, b"not a database").unwrap();
    let e = Database::open(&file, config()).unwrap_err();
    let text = format!("{e}");
    assert!(text.contains("plain"), "{text}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a database".to_vec());
}

// --- many threads ----------------------------------------------------------

const ACCOUNTS: u64 = 32;
const OPENING: u64 = 1000;

fn account(i: u64) -> Vec<u8> {
    format!("acct/{i:03}").into_bytes()
}

fn amount(v: &[u8]) -> u64 {
    u64::from_le_bytes(v.try_into().expect("an account holds 8 bytes"))
}

/// Whether `e` is what a contended transaction may get: it was rolled back
/// as a deadlock victim or after its lock timeout.
fn contended(e: &Error) -> bool {
    matches!(
        e,
        Error::Db(DbError::Deadlock { .. } | DbError::LockTimeout { .. })
    )
}

/// Every account from `tx`, read from the front or the back; the sum and
/// the count must be what they always are.
fn audit(tx: &keel::Transaction<'_>, t: RelationId, backwards: bool) -> keel::Result<()> {
    let mut r = tx.prefix(t, b"acct/")?;
    let (mut n, mut sum) = (0, 0);
    loop {
        let item = if backwards { r.next_back() } else { r.next() };
        let Some(kv) = item else { break };
        let (_, v) = kv?;
        n += 1;
        sum += amount(&v);
    }
    assert_eq!(
        (n, sum),
        (ACCOUNTS, ACCOUNTS * OPENING),
        "an audit saw a partial transfer"
    );
    Ok(())
}

fn transfer(db: &Database, t: RelationId, rng: &mut u64, abort: bool) -> keel::Result<()> {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let from = next() % ACCOUNTS;
    let to = next() % ACCOUNTS;
    let d = next() % 10;
    let scratch = format!("tmp/{:04}", next() % 64).into_bytes();
    let mut tx = db.begin()?;
    let a = amount(&tx.get_key(t, &account(from))?.expect("account"));
    if a < d {
        return tx.commit();
    }
    tx.put(t, &account(from), &(a - d).to_le_bytes())?;
    let b = amount(&tx.get_key(t, &account(to))?.expect("account"));
    tx.put(t, &account(to), &(b + d).to_le_bytes())?;
    if next() % 2 == 0 {
        tx.put(t, &scratch, &vec![1; (next() % 3000) as usize])?;
    } else {
        tx.delete_key(t, &scratch)?;
    }
    match abort {
        true => tx.abort(),
        false => tx.commit(),
    }
}

/// Sixteen threads transfer between accounts, churn other keys and audit
/// the accounts with ranges from both ends, in a tree, with commits and
/// aborts, under a watchdog. Every audit sees the total (serializable);
/// afterwards the tree passes the structural check, and reopens whole.
#[test]
fn sixteen_threads_keep_a_tree_consistent_and_never_hang() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.buffer = BufferConfig::with_frames(64);
    let db = Arc::new(Database::open(dir.path(), c.clone()).unwrap());
    let t = db.create_tree("bank").unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..ACCOUNTS {
        tx.put(t, &account(i), &OPENING.to_le_bytes()).unwrap();
    }
    tx.commit().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for id in 0..16u64 {
        let (db, stop, progress, done) = (
            Arc::clone(&db),
            Arc::clone(&stop),
            Arc::clone(&progress),
            done_tx.clone(),
        );
        std::thread::spawn(move || {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (id + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
            let mut i = 0u64;
            let mut failure = None;
            while !stop.load(Ordering::Relaxed) && failure.is_none() {
                let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    i += 1;
                    let r = match i % 8 {
                        0 => db.begin_read().and_then(|tx| {
                            audit(&tx, t, i.is_multiple_of(16))?;
                            tx.commit()
                        }),
                        1 => db.begin().and_then(|tx| {
                            audit(&tx, t, true)?;
                            tx.commit()
                        }),
                        n => transfer(&db, t, &mut rng, n == 2),
                    };
                    match r {
                        Ok(()) => None,
                        Err(e) if contended(&e) => None,
                        Err(e) => Some(format!("thread {id}: {e}")),
                    }
                }));
                failure = match step {
                    Ok(f) => f,
                    Err(p) => Some(format!(
                        "thread {id} panicked: {}",
                        p.downcast_ref::<String>().map_or("?", String::as_str)
                    )),
                };
                progress.fetch_add(1, Ordering::Relaxed);
            }
            drop(db);
            done.send(failure).unwrap();
        });
    }
    drop(done_tx);
    // Meanwhile: checkpoints, and a side tree made, used and dropped.
    let until = Instant::now() + Duration::from_secs(3);
    let mut rounds = 0;
    while Instant::now() < until {
        db.checkpoint().unwrap();
        let side = db.create_tree("side").unwrap();
        let mut tx = db.begin().unwrap();
        tx.put(side, b"k", &[rounds as u8; 100]).unwrap();
        tx.commit().unwrap();
        db.drop_tree("side").unwrap();
        rounds += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(rounds > 1);
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    for _ in 0..16 {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(None) => {}
            Ok(Some(failure)) => panic!("{failure}"),
            Err(_) => panic!(
                "threads hang: {} operations done, {} transactions still active, locks {:?}",
                progress.load(Ordering::Relaxed),
                db.active_transactions(),
                db.lock_stats()
            ),
        }
    }
    assert!(progress.load(Ordering::Relaxed) > 100);
    assert_eq!(db.active_transactions(), 0);

    let pages = db
        .relations()
        .into_iter()
        .find(|r| r.id == t)
        .unwrap()
        .pages;
    let mut read = |id: keel::PageId| {
        db.read_page("bank", id)
            .map_err(|e| keel::page::PageError::Corrupted {
                page_id: id,
                offset: 0,
                reason: e.to_string(),
            })
    };
    let report = keel::page::tree::check::check_tree(pages, &mut read);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let before: BTreeMap<Vec<u8>, Vec<u8>> = {
        let tx = db.begin_read().unwrap();
        audit(&tx, t, false).unwrap();
        let m = tx.range(t, ..).unwrap().map(|kv| kv.unwrap()).collect();
        tx.commit().unwrap();
        m
    };
    let db = Arc::into_inner(db).expect("every thread let go of the database");
    db.close().unwrap();
    let db = Database::open(dir.path(), c).unwrap();
    let tx = db.begin_read().unwrap();
    audit(&tx, t, true).unwrap();
    let after: BTreeMap<Vec<u8>, Vec<u8>> =
        tx.range(t, ..).unwrap().map(|kv| kv.unwrap()).collect();
    assert!(after == before, "the reopened tree differs");
    tx.commit().unwrap();
    db.close().unwrap();
}

/// Runs `f` on a thread of its own and fails the test if it has not
/// returned within `secs` seconds (a hang), instead of hanging the run.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    match wait.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer in {secs} s"),
        Err(e) => panic!("{what}: the thread panicked ({e})"),
    }
}

fn is_deadlock<T: std::fmt::Debug>(r: keel::Result<T>, what: &str) {
    match r {
        Err(Error::Db(DbError::Deadlock { .. })) => {}
        other => panic!("{what}: expected Deadlock, got {other:?}"),
    }
}

/// Two transactions interleaved on one thread in a tree: the second one
/// that would wait for the first fails at once with a deadlock (no lock
/// timeout is set, so a wait would hang), and the first goes on.
#[test]
fn two_transactions_of_one_thread_in_one_tree_never_wait_for_each_other() {
    within(20, "interleaved transactions", || {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), config()).unwrap();
        let t = db.create_tree("t").unwrap();
        let mut tx = db.begin().unwrap();
        tx.put(t, b"k", b"1").unwrap();
        tx.commit().unwrap();

        // A writer, then a reader of the same key, a range over it, a
        // read-only range and a writer of it.
        let mut w = db.begin().unwrap();
        w.put(t, b"k", b"2").unwrap();
        let r = db.begin().unwrap();
        is_deadlock(r.get_key(t, b"k"), "get");
        drop(r);
        let r = db.begin().unwrap();
        is_deadlock(
            r.range(t, ..).and_then(|mut it| it.next().transpose()),
            "range",
        );
        drop(r);
        let r = db.begin_read().unwrap();
        is_deadlock(r.last(t), "last");
        drop(r);
        let mut r = db.begin().unwrap();
        is_deadlock(r.put(t, b"k", b"3"), "put");
        drop(r);
        // A key the writer does not hold is free.
        let mut other = db.begin().unwrap();
        other.put(t, b"z", b"z").unwrap();
        other.commit().unwrap();
        w.commit().unwrap();

        // A reader first: a writer of what it read, and of the gap it
        // locked past its range, fail the same way.
        let r = db.begin().unwrap();
        assert_eq!(
            keys(&r, t, (Included(&b"a"[..]), Excluded(&b"m"[..]))),
            vec![b"k".to_vec()]
        );
        let mut w = db.begin().unwrap();
        is_deadlock(w.put(t, b"k", b"4"), "put over a read key");
        drop(w);
        let mut w = db.begin().unwrap();
        is_deadlock(w.put(t, b"b", b"4"), "put into a read range");
        drop(w);
        r.commit().unwrap();
        let tx = db.begin().unwrap();
        assert_eq!(tx.get_key(t, b"k").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(tx.get_key(t, b"b").unwrap(), None);
        drop(tx);
        assert_eq!(db.active_transactions(), 0);
        db.close().unwrap();
    });
}

/// Edges of one transaction's own writes, and of a finished iterator.
#[test]
fn a_transaction_reads_its_own_writes_and_an_ended_range_stays_ended() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let t = db.create_tree("t").unwrap();
    let mut tx = db.begin().unwrap();
    assert_eq!(tx.replace(t, b"a", b"1").unwrap(), None);
    assert_eq!(
        tx.replace(t, b"a", b"2").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(tx.delete_key(t, b"missing").unwrap(), None);
    tx.put(t, b"b", b"x").unwrap();
    assert_eq!(tx.delete_key(t, b"b").unwrap().as_deref(), Some(&b"x"[..]));
    assert_eq!(tx.delete_key(t, b"b").unwrap(), None);
    assert_eq!(tx.get_key(t, b"b").unwrap(), None);
    let mut out = b"stale".to_vec();
    assert!(!tx.get_key_into(t, b"b", &mut out).unwrap());
    assert!(out.is_empty(), "{out:?}");
    assert!(tx.get_key_into(t, b"a", &mut out).unwrap());
    assert_eq!(out, b"2");
    assert_eq!(keys(&tx, t, ..), vec![b"a".to_vec()]);
    let mut r = tx.range(t, ..).unwrap();
    assert!(r.next().is_some());
    for _ in 0..3 {
        assert!(r.next().is_none());
        assert!(r.next_back().is_none());
    }
    drop(r);
    tx.commit().unwrap();
    // An abort brings back a deleted key and its large value.
    let big = vec![5u8; 100_000];
    let mut tx = db.begin().unwrap();
    tx.put(t, b"big", &big).unwrap();
    tx.commit().unwrap();
    let mut tx = db.begin().unwrap();
    tx.delete_key(t, b"big").unwrap();
    tx.put(t, b"new", b"n").unwrap();
    tx.abort().unwrap();
    let tx = db.begin().unwrap();
    assert_eq!(tx.get_key(t, b"big").unwrap(), Some(big));
    assert_eq!(tx.get_key(t, b"new").unwrap(), None);
    drop(tx);
    db.close().unwrap();
}

#[test]
fn a_bulk_load_at_its_edges() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let t = db.create_tree("t").unwrap();
    let none: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut tx = db.begin().unwrap();
    assert_eq!(tx.bulk_load(t, none).unwrap(), 0);
    assert_eq!(tx.len(t).unwrap(), 0);
    tx.commit().unwrap();

    let dup = vec![
        (b"a".to_vec(), b"1".to_vec()),
        (b"a".to_vec(), b"2".to_vec()),
    ];
    let mut tx = db.begin().unwrap();
    let e = tx.bulk_load(t, dup).unwrap_err();
    assert!(matches!(e, Error::Db(DbError::Unsorted { .. })), "{e}");
    drop(tx);
    let long = vec![(vec![1u8; MAX_KEY_LEN + 1], b"1".to_vec())];
    let mut tx = db.begin().unwrap();
    let e = tx.bulk_load(t, long).unwrap_err();
    assert!(matches!(e, Error::Db(DbError::KeyTooLarge { .. })), "{e}");
    drop(tx);
    let mut tx = db.begin().unwrap();
    tx.put(t, b"x", b"y").unwrap();
    let e = tx.bulk_load(t, vec![(b"a", b"1")]).unwrap_err();
    assert!(matches!(e, Error::Db(DbError::TreeNotEmpty(_))), "{e}");
    drop(tx);

    let big = vec![3u8; 3 << 20];
    let items: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (Vec::new(), b"empty key".to_vec()),
        (b"a".to_vec(), Vec::new()),
        (b"b".to_vec(), big.clone()),
        (vec![0xff; MAX_KEY_LEN], b"max".to_vec()),
    ];
    let mut tx = db.begin().unwrap();
    assert_eq!(tx.bulk_load(t, items.clone()).unwrap(), 4);
    tx.put(t, b"c", b"after").unwrap();
    assert_eq!(tx.len(t).unwrap(), 5);
    tx.commit().unwrap();
    db.close().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let tx = db.begin().unwrap();
    let got: Vec<(Vec<u8>, Vec<u8>)> = tx.range(t, ..).unwrap().map(|kv| kv.unwrap()).collect();
    let mut want = items;
    want.insert(3, (b"c".to_vec(), b"after".to_vec()));
    assert!(got == want, "the loaded tree differs");
    drop(tx);
    db.close().unwrap();
}

/// Ids that name no user relation (the catalog's, one never handed out)
/// and the wrong kind of relation are refused by every call.
#[test]
fn ids_of_no_user_relation_are_refused_by_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let heap = db.create_relation("h").unwrap();
    let tree = db.create_tree("t").unwrap();
    let mut tx = db.begin().unwrap();
    let tid = tx.insert(heap, b"").unwrap();
    for id in [RelationId(0), RelationId(999), RelationId(u32::MAX)] {
        let results = [
            tx.insert(id, b"x").map(|_| ()),
            tx.get(id, tid).map(|_| ()),
            tx.scan(id).map(|_| ()),
            tx.put(id, b"k", b"v"),
            tx.get_key(id, b"k").map(|_| ()),
            tx.range(id, ..).map(|_| ()),
            tx.len(id).map(|_| ()),
        ];
        for r in results {
            let e = r.unwrap_err();
            assert!(
                matches!(e, Error::Db(DbError::NoSuchRelation(_))),
                "{id}: {e}"
            );
        }
    }
    let kind = |r: keel::Result<()>| {
        let e = r.unwrap_err();
        assert!(
            matches!(e, Error::Db(DbError::WrongRelationKind { .. })),
            "{e}"
        );
    };
    kind(tx.scan(tree).map(|_| ()));
    kind(tx.get(tree, tid).map(|_| ()));
    kind(tx.len(heap).map(|_| ()));
    kind(tx.prefix(heap, b"").map(|_| ()));
    kind(tx.first(heap).map(|_| ()));
    // An empty value is a value.
    assert_eq!(tx.get(heap, tid).unwrap(), Some(Vec::new()));
    let tid2 = tx.insert(heap, &vec![9u8; 50_000]).unwrap();
    tx.update(heap, tid2, b"").unwrap();
    assert_eq!(tx.get(heap, tid2).unwrap(), Some(Vec::new()));
    assert!(
        tx.insert_many(heap, Vec::<Vec<u8>>::new())
            .unwrap()
            .is_empty()
    );
    tx.commit().unwrap();
    db.close().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let tx = db.begin().unwrap();
    let rows: Vec<_> = tx.scan(heap).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(rows, vec![(tid, Vec::new()), (tid2, Vec::new())]);
    drop(tx);
    db.close().unwrap();
}

/// A transaction that rolls back its replace of a key never lets another
/// read the key as absent: a replace is a delete and an insert of the key,
/// and both are undone under one latch of its leaf, as both were done.
#[test]
fn a_rolled_back_replace_never_hides_the_committed_value() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let t = db.create_tree("t").unwrap();
    let mut tx = db.begin().unwrap();
    for k in [&b"a"[..], b"k", b"z"] {
        tx.put(t, k, b"committed").unwrap();
    }
    tx.put(t, b"big", &[1; 5000]).unwrap();
    tx.commit().unwrap();
    let stop = AtomicBool::new(false);
    let until = Instant::now() + Duration::from_secs(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                let mut tx = db.begin().unwrap();
                tx.put(t, b"k", b"uncommitted").unwrap();
                tx.put(t, b"big", &[2; 3000]).unwrap();
                tx.abort().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let tx = db.begin_read().unwrap();
                    let k = tx.get_key(t, b"k").unwrap();
                    let all = keys(&tx, t, ..);
                    drop(tx);
                    let ok = k.as_deref() == Some(&b"committed"[..]) && all.len() == 4;
                    if !ok {
                        stop.store(true, Ordering::Relaxed);
                    }
                    assert!(ok, "read k = {k:?}, keys {all:?}");
                }
            });
        }
    });
    db.close().unwrap();
}

/// A range or a scan whose transaction a lock wait rolled back yields that
/// error once and ends: a loop that skips errors (or counts items) ends
/// instead of spinning on `TxnFinished`.
#[test]
fn a_range_or_scan_whose_transaction_was_rolled_back_ends_after_the_error() {
    within(30, "iterators over a rolled-back transaction", || {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config();
        c.lock_timeout = Some(Duration::from_millis(50));
        let db = Database::open(dir.path(), c).unwrap();
        let t = db.create_tree("t").unwrap();
        let rel = db.create_relation("r").unwrap();
        let mut tx = db.begin().unwrap();
        for k in [&b"a"[..], b"b", b"c"] {
            tx.put(t, k, b"v").unwrap();
        }
        let first = tx.insert(rel, b"one").unwrap();
        let second = tx.insert(rel, b"two").unwrap();
        tx.commit().unwrap();
        // Another transaction writes "b" and the second row, and waits.
        let mut holder = db.begin().unwrap();
        holder.put(t, b"b", b"w").unwrap();
        holder.update(rel, second, b"TWO").unwrap();

        let is_lock_error = |e: &Error| {
            matches!(
                e,
                Error::Db(DbError::Deadlock { .. } | DbError::LockTimeout { .. })
            )
        };
        let reader = db.begin().unwrap();
        let items: Vec<_> = reader.range(t, ..).unwrap().collect();
        // "a" may come first, or the lock of the key after it may fail
        // its read already.
        let (last, before) = items.split_last().unwrap();
        assert!(last.as_ref().is_err_and(is_lock_error), "{items:?}");
        assert!(before.len() <= 1, "{items:?}");
        assert!(
            before.iter().all(|kv| kv.as_ref().unwrap().0 == b"a"),
            "{items:?}"
        );
        drop(reader);

        let reader = db.begin().unwrap();
        let skipped = reader.scan(rel).unwrap().filter_map(Result::ok).count();
        assert!(skipped <= 1, "rows after the rollback: {skipped}");
        assert!(matches!(
            reader.scan(rel),
            Err(Error::Db(DbError::TxnFinished(_)))
        ));
        drop(reader);

        holder.abort().unwrap();
        let reader = db.begin().unwrap();
        let rows: Vec<_> = reader.scan(rel).unwrap().map(Result::unwrap).collect();
        assert_eq!(rows, [(first, b"one".to_vec()), (second, b"two".to_vec())]);
        drop(reader);
        db.close().unwrap();
    });
}
