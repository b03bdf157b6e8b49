#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Gets that start from a tree's routes (`btree/routes.rs`, a copy of its
//! upper levels) while other threads split leaves and inner nodes, empty
//! whole leaves so that they are reclaimed (and their parents merged),
//! and reuse the freed pages: every get of a key nobody changes returns
//! its value, and the tree checks clean at the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keel::buffer::BufferConfig;
use keel::{Config, Database, DbError, Error, RelationId};
use keel_io::sim::Rng;

mod common;

use common::StopOnDrop;
use common::tree::{TreeModel, check_tree};

/// Stable keys: below and above the churned range, never changed after
/// the load.
fn stable(i: u32) -> Vec<u8> {
    let mut k = if i.is_multiple_of(2) {
        b"a".to_vec()
    } else {
        b"z".to_vec()
    };
    k.extend_from_slice(&i.to_be_bytes());
    k
}

fn stable_value(i: u32) -> Vec<u8> {
    let mut v = i.to_le_bytes().to_vec();
    v.resize(60 + (i % 40) as usize, i as u8);
    v
}

/// Churned keys, all between the two stable ranges, sharing their first 8
/// bytes in runs (so routes and nodes compare whole keys on ties).
fn churned(round: u32, i: u32) -> Vec<u8> {
    let mut k = b"mmmmmmm".to_vec();
    k.push((i % 4) as u8);
    k.extend_from_slice(&(i.wrapping_mul(2_654_435_761) ^ round).to_be_bytes());
    k
}

fn conflict(e: &Error) -> bool {
    matches!(
        e,
        Error::Db(DbError::Deadlock { .. } | DbError::LockTimeout { .. })
    )
}

const STABLE: u32 = 3000;

/// Runs a writing transaction until it commits, again after each deadlock
/// or lock timeout (a reader's next-key lock in the churned range).
fn retry(mut txn: impl FnMut() -> keel::Result<()>) {
    loop {
        match txn() {
            Ok(()) => return,
            Err(e) if conflict(&e) => {}
            Err(e) => panic!("writer: {e}"),
        }
    }
}

fn reader(db: &Database, tree: RelationId, seed: u64, stop: &AtomicBool) -> u64 {
    let mut rng = Rng::new(seed);
    let mut gets = 0;
    while !stop.load(Ordering::Relaxed) {
        let tx = db.begin().unwrap();
        // Fewer than TREE_READ_ESCALATE_AT gets: key locks, so writers
        // keep running beside the reader.
        for _ in 0..40 {
            let i = (rng.next_u64() % u64::from(STABLE)) as u32;
            if i.is_multiple_of(4) {
                // A key of the churned range: absent, or a value of some
                // round; never an error.
                let k = churned(i % 7, i);
                match tx.get_key(tree, &k) {
                    Ok(None) => {}
                    Ok(Some(v)) => assert!(
                        v.len() == 500 && v.iter().all(|&b| b == v[0]),
                        "churned key {i}"
                    ),
                    Err(e) if conflict(&e) => break,
                    Err(e) => panic!("get of churned key {i}: {e}"),
                }
                continue;
            }
            match tx.get_key(tree, &stable(i)) {
                Ok(v) => assert_eq!(v, Some(stable_value(i)), "stable key {i}"),
                Err(e) if conflict(&e) => break,
                Err(e) => panic!("get of stable key {i}: {e}"),
            }
            gets += 1;
        }
        let _ = tx.commit();
    }
    gets
}

/// A database in a new directory with tree `t` holding the stable keys,
/// and the model of it.
fn stable_tree() -> (tempfile::TempDir, Database, RelationId, TreeModel) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        buffer: BufferConfig::with_frames(256),
        lock_timeout: Some(Duration::from_secs(5)),
        ..Config::default()
    };
    let db = Database::open(dir.path(), config).unwrap();
    let tree = db.create_tree("t").unwrap();
    let mut model = TreeModel::new();
    let mut tx = db.begin().unwrap();
    for i in 0..STABLE {
        tx.put(tree, &stable(i), &stable_value(i)).unwrap();
        model.insert(stable(i), stable_value(i));
    }
    tx.commit().unwrap();
    (dir, db, tree, model)
}

/// `KEEL_ROUTES_ROUNDS`, or `default`.
fn rounds_or(default: u32) -> u32 {
    std::env::var("KEEL_ROUTES_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn gets_from_routes_stay_right_while_leaves_split_and_are_reclaimed() {
    let (_dir, db, tree, model) = stable_tree();
    let stop = AtomicBool::new(false);
    let rounds = rounds_or(12);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|t| {
                let (db, stop) = (&db, &stop);
                s.spawn(move || reader(db, tree, 11 + t, stop))
            })
            .collect();
        let stopping = StopOnDrop(&stop);
        for round in 0..rounds {
            // Fill the churned range (splits up the tree), then empty it
            // (each emptied leaf is reclaimed after the commit).
            // Large values: a few hundred leaves, two inner levels.
            let n = 3000 + round * 200;
            for chunk in (0..n).collect::<Vec<_>>().chunks(250) {
                retry(|| {
                    let mut tx = db.begin()?;
                    for &i in chunk {
                        tx.put(tree, &churned(round, i), &[round as u8; 500])?;
                    }
                    tx.commit()
                });
            }
            retry(|| {
                let mut tx = db.begin()?;
                for i in 0..n {
                    assert!(tx.delete_key(tree, &churned(round, i))?.is_some());
                }
                tx.commit()
            });
        }
        drop(stopping);
        for r in readers {
            assert!(r.join().unwrap() > 0, "a reader made no get");
        }
    });
    check_tree(&db, tree, &model).unwrap();
    db.close().unwrap();
}

/// A key of about 1 KiB: few fit a leaf, so the leaves' separators pass
/// the routes' byte budget and the routes name a level above the leaves.
fn long_key(i: u32) -> Vec<u8> {
    let mut k = vec![b'k'; 1000];
    k[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
    k
}

#[test]
fn gets_from_routes_above_the_leaves_find_keys_put_before_and_after_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Config::default()).unwrap();
    let tree = db.create_tree("long").unwrap();
    let mut model = TreeModel::new();
    let mut tx = db.begin().unwrap();
    for i in 0..4000 {
        tx.put(tree, &long_key(i), &i.to_le_bytes()).unwrap();
        model.insert(long_key(i), i.to_le_bytes().to_vec());
    }
    tx.commit().unwrap();
    // The first gets build the routes; the puts after them split nodes the
    // routes do not know of, and the gets after those move right.
    for round in 0..3u32 {
        let tx = db.begin().unwrap();
        for (k, v) in &model {
            assert_eq!(tx.get_key(tree, k).unwrap().as_ref(), Some(v));
        }
        assert_eq!(tx.get_key(tree, b"absent").unwrap(), None);
        tx.commit().unwrap();
        let mut tx = db.begin().unwrap();
        for i in 0..1500 {
            let i = 10_000 + round * 1500 + i;
            tx.put(tree, &long_key(i), &i.to_le_bytes()).unwrap();
            model.insert(long_key(i), i.to_le_bytes().to_vec());
        }
        tx.commit().unwrap();
    }
    check_tree(&db, tree, &model).unwrap();
    db.close().unwrap();
}

/// Key `i` of writer `w`'s own range (the writers' ranges interleave in
/// the tree: the first byte is shared, the writer's byte comes second).
fn writer_key(w: u8, i: u32) -> Vec<u8> {
    let mut k = vec![b'w', w];
    k.extend_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
    k
}

/// Puts and deletes that start from the routes (`leaf_for_write`) while
/// another writer splits leaves and inner nodes and empties whole ranges
/// (reclaims that drop the routes and free pages the splits reuse): each
/// writer's keys end as its own model says, the stable keys keep their
/// values, and the tree checks clean.
#[test]
fn puts_and_deletes_from_routes_stay_right_while_leaves_split_and_are_reclaimed() {
    let (_dir, db, tree, mut model) = stable_tree();
    let rounds = rounds_or(6);
    let stop = AtomicBool::new(false);
    let models: Vec<TreeModel> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..2u8)
            .map(|w| {
                let db = &db;
                s.spawn(move || {
                    let mut mine = TreeModel::new();
                    let mut rng = Rng::new(99 + u64::from(w));
                    for round in 0..rounds {
                        // Fill (splits), overwrite a third, delete half,
                        // and in odd rounds of writer 0 empty the whole
                        // range (its leaves are reclaimed after the commit).
                        let n = 1500 + round * 100;
                        for chunk in (0..n).collect::<Vec<_>>().chunks(300) {
                            let mut staged = Vec::new();
                            retry(|| {
                                staged.clear();
                                let mut tx = db.begin()?;
                                for &i in chunk {
                                    let v = vec![(round as u8) ^ w; 100 + (i % 300) as usize];
                                    tx.put(tree, &writer_key(w, i), &v)?;
                                    staged.push((writer_key(w, i), v));
                                }
                                tx.commit()
                            });
                            mine.extend(staged.drain(..));
                        }
                        let mut staged = Vec::new();
                        retry(|| {
                            staged.clear();
                            let mut tx = db.begin()?;
                            for _ in 0..n / 3 {
                                let i = (rng.next_u64() % u64::from(n)) as u32;
                                let v = vec![0xa0 ^ w; 40 + (i % 500) as usize];
                                tx.put(tree, &writer_key(w, i), &v)?;
                                staged.push((writer_key(w, i), Some(v)));
                            }
                            let empty_all = w == 0 && round % 2 == 1;
                            for i in 0..n {
                                if empty_all || i % 2 == 0 {
                                    tx.delete_key(tree, &writer_key(w, i))?;
                                    staged.push((writer_key(w, i), None));
                                }
                            }
                            tx.commit()
                        });
                        for (k, v) in staged {
                            match v {
                                Some(v) => mine.insert(k, v),
                                None => mine.remove(&k),
                            };
                        }
                        // A transaction that rolls back: its logical undo
                        // starts from the routes too.
                        // A deadlock or lock timeout has rolled it back
                        // already (the reader's key locks): nothing to abort.
                        let mut tx = db.begin().unwrap();
                        let mut active = true;
                        for i in 0..200 {
                            match tx.put(tree, &writer_key(w, n + i), b"rolled back") {
                                Ok(_) => {}
                                Err(e) if conflict(&e) => {
                                    active = false;
                                    break;
                                }
                                Err(e) => panic!("writer {w}: {e}"),
                            }
                        }
                        if active {
                            tx.abort().unwrap();
                        }
                    }
                    mine
                })
            })
            .collect();
        let reader = {
            let (db, stop) = (&db, &stop);
            s.spawn(move || reader(db, tree, 5, stop))
        };
        let stopping = StopOnDrop(&stop);
        let models = writers.into_iter().map(|w| w.join().unwrap()).collect();
        drop(stopping);
        assert!(reader.join().unwrap() > 0, "the reader made no get");
        models
    });
    for m in models {
        model.extend(m);
    }
    check_tree(&db, tree, &model).unwrap();
    db.close().unwrap();
}
