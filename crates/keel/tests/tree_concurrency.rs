#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Trees under concurrent transactions: threads putting, deleting,
//! reading and scanning one tree through a small buffer pool with the redo
//! consistency check on and checkpoints running (`KEEL_TREE_TXNS` transactions per thread, default
//! 300); the phantom a heap scan allows and a tree range
//! does not; readers of many ranges, past the read escalation, reading
//! repeatably while writers come and go; and churn that must not grow
//! the tree's file.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keel::buffer::BufferConfig;
use keel::{Config, Database, DbError, Error, RelationId};
use keel_io::sim::Rng;

mod common;

use common::tree::{TreeModel, check_tree, model_range, random_tree_op, read_tree};

fn config(frames: usize) -> Config {
    let mut c = Config {
        buffer: BufferConfig::with_frames(frames),
        consistency_check: true,
        lock_timeout: Some(Duration::from_secs(5)),
        ..Config::default()
    };
    c.wal.segment_size_bytes = 4 << 20;
    c
}

fn value(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(30) {
        0 => 2500 + rng.below(6000) as usize,
        1..=5 => 400 + rng.below(1600) as usize,
        _ => rng.below(120) as usize,
    };
    let b = rng.next_u64() as u8;
    (0..len).map(|i| b.wrapping_add(i as u8)).collect()
}

/// Whether `e` is a lock conflict the transaction may be retried after.
fn conflict(e: &Error) -> bool {
    matches!(
        e,
        Error::Db(DbError::Deadlock { .. } | DbError::LockTimeout { .. })
    )
}

/// What one thread's transactions met.
#[derive(Default)]
struct Tally {
    committed: u64,
    aborted: u64,
    conflicts: u64,
}

/// One transaction of thread `t` on its own keys (prefix `[t]`), checked
/// against `mine` (its committed keys), plus now and then a scan of the
/// whole tree; returns the keys it leaves if it commits.
fn txn(
    db: &Database,
    tree: RelationId,
    t: u8,
    mine: &TreeModel,
    rng: &mut Rng,
) -> keel::Result<Option<TreeModel>> {
    let mut after = mine.clone();
    let mut tx = db.begin()?;
    for _ in 0..1 + rng.below(12) {
        if rng.below(25) == 0 {
            // Every thread's keys: in order, this thread's exactly its own.
            let all = read_tree(&tx, tree)?;
            let own: TreeModel = all.into_iter().filter(|(k, _)| k[0] == t).collect();
            assert!(
                own == after,
                "thread {t}: the whole tree shows other keys of mine"
            );
        } else {
            random_tree_op(&mut tx, tree, &mut after, &[t], rng, value)?;
        }
    }
    let own = model_range(
        &after,
        Bound::Included(&[t][..]),
        Bound::Excluded(&[t + 1][..]),
    );
    let got: Vec<_> = tx.prefix(tree, &[t])?.collect::<keel::Result<_>>()?;
    assert!(got == own, "thread {t}: its prefix differs from its view");
    if rng.below(5) == 0 {
        tx.abort()?;
        return Ok(None);
    }
    tx.commit()?;
    Ok(Some(after))
}

/// Thread `t`'s work: `n` transactions, each retried after a lock conflict.
fn worker(db: &Database, tree: RelationId, t: u8, n: u32) -> (TreeModel, Tally) {
    let mut rng = Rng::new(u64::from(t) * 7919);
    let mut mine = TreeModel::new();
    let mut tally = Tally::default();
    for _ in 0..n {
        match txn(db, tree, t, &mine, &mut rng) {
            Ok(Some(after)) => {
                mine = after;
                tally.committed += 1;
            }
            Ok(None) => tally.aborted += 1,
            Err(e) if conflict(&e) => tally.conflicts += 1,
            Err(e) => panic!("thread {t}: {e}"),
        }
    }
    (mine, tally)
}

#[test]
fn threads_putting_deleting_and_scanning_one_tree_see_their_own_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config(12)).unwrap();
    let tree = db.create_tree("t").unwrap();
    let threads = 4u8;
    let n: u32 = std::env::var("KEEL_TREE_TXNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let done = AtomicBool::new(false);
    let results: Vec<(TreeModel, Tally)> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=threads)
            .map(|t| {
                let db = &db;
                s.spawn(move || worker(db, tree, t, n))
            })
            .collect();
        // Checkpoints meanwhile: their writes must never wait on a split
        // that waits for a frame.
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                db.checkpoint().unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let results = handles.into_iter().map(|h| h.join().unwrap()).collect();
        done.store(true, Ordering::SeqCst);
        results
    });
    let mut union = TreeModel::new();
    let (mut committed, mut conflicts) = (0, 0);
    for (mine, tally) in results {
        committed += tally.committed;
        conflicts += tally.conflicts;
        assert!(
            tally.committed >= 50,
            "a thread committed only {}",
            tally.committed
        );
        union.extend(mine);
    }
    assert!(union.len() > 200, "only {} keys", union.len());
    check_tree(&db, tree, &union).unwrap();
    eprintln!(
        "{committed} commits, {conflicts} lock conflicts, {} keys",
        union.len()
    );
    db.close().unwrap();
    let db = Database::open(dir.path(), config(12)).unwrap();
    check_tree(&db, tree, &union).unwrap();
    db.close().unwrap();
}

/// Keys of a tree within `lo..hi`.
fn keys_in(tx: &keel::Transaction<'_>, tree: RelationId, lo: &[u8], hi: &[u8]) -> Vec<Vec<u8>> {
    tx.range(tree, (Bound::Included(lo), Bound::Excluded(hi)))
        .unwrap()
        .map(|kv| kv.unwrap().0)
        .collect()
}

#[test]
fn a_heap_scan_sees_a_phantom_and_a_tree_range_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(64);
    c.lock_timeout = Some(Duration::from_millis(300));
    let db = Database::open(dir.path(), c).unwrap();
    let heap = db.create_relation("h").unwrap();
    let tree = db.create_tree("t").unwrap();
    let mut tx = db.begin().unwrap();
    for k in [&b"a"[..], b"b", b"c", b"e", b"g"] {
        tx.insert(heap, k).unwrap();
        tx.put(tree, k, b"v").unwrap();
    }
    tx.commit().unwrap();

    // A heap scan locks the rows it returns, not the gaps: a row inserted
    // meanwhile shows up in the scanner's second scan.
    let scanner = db.begin().unwrap();
    let first = scanner.scan(heap).unwrap().count();
    let mut inserter = db.begin().unwrap();
    inserter.insert(heap, b"d").unwrap();
    inserter.commit().unwrap();
    let second = scanner.scan(heap).unwrap().count();
    assert_eq!(second, first + 1, "the heap scan sees the phantom");
    scanner.commit().unwrap();

    // A tree range locks its keys and the key past it: an insert into the
    // range waits for the scanner (here until its lock timeout; on a
    // thread of its own: a thread waiting for a transaction it runs itself
    // is a deadlock).
    let scanner = db.begin().unwrap();
    let first = keys_in(&scanner, tree, b"b", b"f");
    assert_eq!(first, vec![b"b".to_vec(), b"c".to_vec(), b"e".to_vec()]);
    std::thread::scope(|s| {
        s.spawn(|| {
            for k in [&b"d"[..], b"bb", b"f"] {
                let mut inserter = db.begin().unwrap();
                let e = inserter.put(tree, k, b"new").unwrap_err();
                assert!(matches!(e, Error::Db(DbError::LockTimeout { .. })), "{e}");
            }
        });
    });
    // Outside the range and its edge, inserts go ahead.
    let mut other = db.begin().unwrap();
    other.put(tree, b"h", b"new").unwrap();
    other.commit().unwrap();
    assert_eq!(keys_in(&scanner, tree, b"b", b"f"), first, "no phantom");

    // An inserter on a thread of its own returns only after the scanner's
    // commit released the range.
    let released = AtomicBool::new(false);
    std::thread::scope(|s| {
        let inserter = s.spawn(|| {
            let mut tx = db.begin().unwrap();
            tx.put(tree, b"d", b"new").unwrap();
            assert!(released.load(Ordering::SeqCst), "the insert did not wait");
            tx.commit().unwrap();
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(keys_in(&scanner, tree, b"b", b"f"), first, "no phantom");
        released.store(true, Ordering::SeqCst);
        scanner.commit().unwrap();
        inserter.join().unwrap();
    });
    let tx = db.begin().unwrap();
    assert_eq!(keys_in(&tx, tree, b"b", b"f").len(), 4);
    tx.commit().unwrap();
    db.close().unwrap();
}

#[test]
fn churn_reuses_reclaimed_leaves_and_keeps_the_file_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config(128)).unwrap();
    let tree = db.create_tree("t").unwrap();
    let pages = || db.relations().iter().find(|r| r.id == tree).unwrap().pages;
    let mut sizes = Vec::new();
    let mut rng = Rng::new(5);
    for cycle in 0..8u64 {
        let mut model = BTreeMap::new();
        let mut tx = db.begin().unwrap();
        for _ in 0..2000 {
            let k = rng.next_u64().to_be_bytes().to_vec();
            let v = vec![cycle as u8; 100];
            tx.put(tree, &k, &v).unwrap();
            model.insert(k, v);
        }
        tx.commit().unwrap();
        check_tree(&db, tree, &model).unwrap();
        let full = pages();
        let mut tx = db.begin().unwrap();
        for k in model.keys() {
            tx.delete_key(tree, k).unwrap();
        }
        tx.commit().unwrap();
        check_tree(&db, tree, &TreeModel::new()).unwrap();
        sizes.push(full);
    }
    // The first cycle grows the file; later ones reuse its reclaimed leaves
    // (a few pages more for inner nodes).
    let first = sizes[0];
    assert!(
        sizes.iter().all(|&s| s <= first + first / 4),
        "the file grows under churn: {sizes:?}"
    );
    eprintln!("pages after each cycle's inserts: {sizes:?}");
    db.close().unwrap();
}

/// A scanner's own key `i`: the scanner's keys end in 0, inserters' in 1,
/// so both share leaves and inserts split the leaves the scanner reads.
fn scanner_key(i: u32) -> Vec<u8> {
    let mut k = vec![0x20];
    k.extend_from_slice(&(i * 1000).to_be_bytes());
    k.push(0);
    k
}

#[test]
fn backward_scans_see_every_key_while_inserts_split_their_leaves() {
    let dir = tempfile::tempdir().unwrap();
    // A small pool: re-reading a leaf sometimes waits for the disk, which
    // widens every window between two latches.
    let mut c = config(64);
    c.wal.commit = keel::wal::CommitMode::Async { max_delay_us: 1000 };
    let db = Database::open(dir.path(), c).unwrap();
    let tree = db.create_tree("t").unwrap();
    let mine = 2_000u32;
    let mut tx = db.begin().unwrap();
    for i in 0..mine {
        tx.put(tree, &scanner_key(i), &[7; 40]).unwrap();
    }
    tx.commit().unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (db, done) = (&db, &done);
            s.spawn(move || {
                let mut rng = Rng::new(t + 11);
                for _ in 0..20_000 {
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                    let mut k = vec![0x20];
                    k.extend_from_slice(&((rng.next_u64() as u32) % (mine * 1000)).to_be_bytes());
                    k.push(1);
                    let mut tx = db.begin().unwrap();
                    match tx.put(tree, &k, &[9; 60]) {
                        Ok(_) => tx.commit().unwrap(),
                        Err(e) if conflict(&e) => tx.abort().unwrap(),
                        Err(e) => panic!("insert: {e}"),
                    }
                }
            });
        }
        let mut rng = Rng::new(3);
        for round in 0..5_000 {
            let top = 40 + rng.below(u64::from(mine) - 40) as u32;
            let tx = db.begin().unwrap();
            let hi = scanner_key(top);
            let mut want = top;
            let got = tx.range(tree, (Bound::Unbounded, Bound::Included(&hi[..])));
            // The scanner's 20 keys at and below `top`, with every inserted
            // key between them read and passed over.
            let mine_only = |item: &keel::Result<(Vec<u8>, Vec<u8>)>| {
                item.as_ref().map_or(true, |(k, _)| k[5] == 0)
            };
            let got = match got.and_then(|r| {
                r.rev()
                    .filter(mine_only)
                    .take(20)
                    .collect::<keel::Result<Vec<_>>>()
            }) {
                Ok(got) => got,
                Err(e) if conflict(&e) => continue,
                Err(e) => panic!("scan: {e}"),
            };
            for (k, _) in &got {
                assert_eq!(
                    k,
                    &scanner_key(want),
                    "round {round}: a key missing below {top}"
                );
                want -= 1;
            }
            assert_eq!(got.len(), 20, "round {round}: keys missing below {top}");
            tx.commit().unwrap();
        }
        done.store(true, Ordering::SeqCst);
    });
    db.close().unwrap();
}

/// A queue through a tree: each transaction adds `step` keys at one end
/// and removes the `step` oldest at the other, so every leaf and inner
/// node in turn holds only removed keys. Returns the tree's page count
/// after each round, and checks the tree at the end.
fn queue_rounds(descending: bool) -> Vec<u32> {
    // Keys of 1,000 bytes: a few per leaf and few children per inner node,
    // so a short run empties many inner nodes.
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config(256)).unwrap();
    let tree = db.create_tree("q").unwrap();
    let pages = || db.relations().iter().find(|r| r.id == tree).unwrap().pages;
    let key = |n: u64| {
        let mut k = if descending { u64::MAX - n } else { n }
            .to_be_bytes()
            .to_vec();
        k.resize(1000, 0x5a);
        k
    };
    let (rounds, step) = (200u64, 40u64);
    let mut sizes = Vec::new();
    for round in 0..rounds {
        let mut tx = db.begin().unwrap();
        for n in round * step..(round + 1) * step {
            tx.put(tree, &key(n), b"v").unwrap();
        }
        if round > 0 {
            for n in (round - 1) * step..round * step {
                tx.delete_key(tree, &key(n)).unwrap();
            }
        }
        tx.commit().unwrap();
        sizes.push(pages());
    }
    let mut model = TreeModel::new();
    for n in (rounds - 1) * step..rounds * step {
        model.insert(key(n), b"v".to_vec());
    }
    check_tree(&db, tree, &model).unwrap();
    db.close().unwrap();
    sizes
}

#[test]
fn a_queue_through_a_tree_keeps_its_file_bounded() {
    for descending in [false, true] {
        let sizes = queue_rounds(descending);
        let (early, last) = (sizes[20], *sizes.last().unwrap());
        assert!(
            last <= early + early / 2,
            "keys {}: the file grows with the keys ever inserted, not the \
             keys alive: {early} pages at round 20, {last} at round {}",
            if descending {
                "descending"
            } else {
                "ascending"
            },
            sizes.len()
        );
    }
}

/// A wide key of the concurrent queue: `n` big-endian, padded to 1,000
/// bytes (a few per node, so reclaims remove inner nodes).
fn queue_key(n: u64) -> Vec<u8> {
    let mut k = n.to_be_bytes().to_vec();
    k.resize(1000, 0x5a);
    k
}

/// A producer appends keys, a consumer deletes the oldest (reclaiming
/// leaves and merging inner nodes under the structure lock), and a scanner
/// reads the whole tree in both directions, all at once through a small
/// pool with the redo consistency check on. Every scan is sorted and
/// gapless (the keys alive form one run), and the tree at the end holds
/// exactly the keys not consumed, in a file of bounded size.
#[test]
fn a_queue_consumed_while_scanned_stays_whole() {
    use std::sync::atomic::AtomicU64;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(24);
    c.wal.commit = keel::wal::CommitMode::Async { max_delay_us: 1000 };
    let db = Database::open(dir.path(), c).unwrap();
    let tree = db.create_tree("q").unwrap();
    let total = 3000u64;
    let produced = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let retry = |f: &mut dyn FnMut() -> keel::Result<()>| loop {
        match f() {
            Ok(()) => return,
            Err(e) if conflict(&e) => continue,
            Err(e) => panic!("{e}"),
        }
    };
    let scans = std::thread::scope(|s| {
        s.spawn(|| {
            for n in 0..total {
                retry(&mut || {
                    let mut tx = db.begin()?;
                    tx.put(tree, &queue_key(n), b"v")?;
                    tx.commit()
                });
                produced.store(n + 1, Ordering::Release);
            }
        });
        s.spawn(|| {
            let mut next = 0u64;
            while next < total - 30 {
                if produced.load(Ordering::Acquire) < next + 40 {
                    std::thread::yield_now();
                    continue;
                }
                retry(&mut || {
                    let mut tx = db.begin()?;
                    for n in next..next + 10 {
                        assert!(tx.delete_key(tree, &queue_key(n))?.is_some(), "key {n}");
                    }
                    tx.commit()
                });
                next += 10;
            }
            done.store(true, Ordering::Release);
        });
        s.spawn(|| {
            let mut scans = 0u32;
            while !done.load(Ordering::Acquire) {
                let backward = scans % 2 == 1;
                retry(&mut || {
                    let tx = db.begin()?;
                    let mut keys: Vec<u64> = Vec::new();
                    let range = tx.range(tree, ..)?;
                    let items: Vec<_> = if backward {
                        range.rev().collect::<keel::Result<_>>()?
                    } else {
                        range.collect::<keel::Result<_>>()?
                    };
                    for (k, _) in items {
                        keys.push(u64::from_be_bytes(k[..8].try_into().unwrap()));
                    }
                    if backward {
                        keys.reverse();
                    }
                    assert!(
                        keys.windows(2).all(|w| w[1] == w[0] + 1),
                        "a scan ({}) is not one sorted run: {keys:?}",
                        if backward { "backward" } else { "forward" }
                    );
                    tx.commit()
                });
                scans += 1;
            }
            scans
        })
        .join()
        .unwrap()
    });
    assert!(scans > 0);
    let consumed = (total - 30).div_ceil(10) * 10;
    let mut model = TreeModel::new();
    for n in consumed..total {
        model.insert(queue_key(n), b"v".to_vec());
    }
    check_tree(&db, tree, &model).unwrap();
    let pages = db.relations().iter().find(|r| r.id == tree).unwrap().pages;
    assert!(
        pages < 120,
        "{pages} pages for {} keys alive",
        total - consumed
    );
    db.close().unwrap();
}

/// Readers making 100 ranges per transaction, so each passes the read
/// escalation and, when no writer holds the tree at that moment, reads
/// its last ranges under the tree lock, against writers replacing and
/// inserting keys (pausing between transactions, so the tree is sometimes
/// free): every range a reader reads again answers the same, every range
/// is ordered and starts at its bound, nobody meets an error but a lock
/// conflict, and the tree holds what the writers committed.
#[test]
fn readers_of_many_ranges_read_repeatably_while_writers_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config(128)).unwrap();
    let tree = db.create_tree("t").unwrap();
    let k = |i: u64| -> Vec<u8> {
        let mut v = b"k".to_vec();
        v.extend_from_slice(&i.to_be_bytes());
        v
    };
    let loaded = 2_000u64;
    let mut model = TreeModel::new();
    let mut tx = db.begin().unwrap();
    for i in 0..loaded {
        tx.put(tree, &k(i * 4), &i.to_le_bytes()).unwrap();
        model.insert(k(i * 4), i.to_le_bytes().to_vec());
    }
    tx.commit().unwrap();
    let done = AtomicBool::new(false);
    let (models, reads) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let (db, done) = (&db, &done);
                s.spawn(move || {
                    let mut rng = Rng::new(w + 101);
                    let mut mine = TreeModel::new();
                    while !done.load(Ordering::SeqCst) {
                        // Thread w replaces loaded keys i*4 of its own
                        // parity of i and inserts keys i*4 + 1 + w, so the
                        // two threads' changes never meet.
                        let i = rng.below(loaded / 2) * 2 + w;
                        let key = if rng.below(2) == 0 {
                            k(i * 4)
                        } else {
                            k(i * 4 + 1 + w)
                        };
                        let v = rng.next_u64().to_le_bytes().to_vec();
                        let mut tx = db.begin().unwrap();
                        match tx.put(tree, &key, &v).and_then(|_| tx.commit()) {
                            Ok(()) => {
                                mine.insert(key, v);
                            }
                            Err(e) if conflict(&e) => {}
                            Err(e) => panic!("writer {w}: {e}"),
                        }
                        std::thread::sleep(Duration::from_micros(300));
                    }
                    mine
                })
            })
            .collect();
        let readers: Vec<_> = (0..2u64)
            .map(|r| {
                let db = &db;
                s.spawn(move || {
                    let mut rng = Rng::new(r + 7);
                    let (mut kb, mut vb) = (Vec::new(), Vec::new());
                    let mut ranges = 0u64;
                    for _ in 0..40 {
                        let tx = db.begin_read().unwrap();
                        let mut again = Vec::new();
                        let outcome = (|| -> keel::Result<()> {
                            for j in 0..100 {
                                let lo = k(rng.below(loaded * 4));
                                let from = (Bound::Included(&lo[..]), Bound::Unbounded);
                                let mut range = tx.range(tree, from)?;
                                let mut got = Vec::new();
                                while got.len() < 10 && range.next_into(&mut kb, &mut vb)? {
                                    got.push((kb.clone(), vb.clone()));
                                }
                                assert!(got.first().is_none_or(|(first, _)| *first >= lo));
                                assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "unordered");
                                if j % 8 == 0 {
                                    again.push((lo, got));
                                }
                                ranges += 1;
                            }
                            for (lo, got) in &again {
                                let from = (Bound::Included(&lo[..]), Bound::Unbounded);
                                let now: Vec<_> = tx
                                    .range(tree, from)?
                                    .take(got.len())
                                    .collect::<keel::Result<_>>()?;
                                assert_eq!(&now, got, "reader {r}: a range read twice differs");
                            }
                            Ok(())
                        })();
                        match outcome {
                            Ok(()) => tx.commit().unwrap(),
                            Err(e) if conflict(&e) => drop(tx),
                            Err(e) => panic!("reader {r}: {e}"),
                        }
                    }
                    ranges
                })
            })
            .collect();
        // Joined before anything can panic here, so the writers stop even
        // when a reader failed.
        let joined: Vec<_> = readers.into_iter().map(|h| h.join()).collect();
        done.store(true, Ordering::SeqCst);
        let reads: u64 = joined.into_iter().map(|r| r.unwrap()).sum();
        let models: Vec<TreeModel> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        (models, reads)
    });
    assert!(reads >= 4_000, "readers read {reads} ranges");
    for m in models {
        model.extend(m);
    }
    check_tree(&db, tree, &model).unwrap();
    db.close().unwrap();
}
