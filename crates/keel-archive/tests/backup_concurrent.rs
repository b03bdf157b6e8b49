//! A base backup taken while a mixed workload runs, restored and compared
//! with the acknowledged commits: heap inserts, updates and deletes, tree
//! puts and deletes that split and shrink nodes, relations and trees
//! created, filled, bulk-loaded and dropped, and checkpoints, all on other
//! threads while the backup copies the files one page per part. Restored
//! to the archive's end, every relation holds exactly what its last
//! commit left; restored to the backup's end LSN (its consistency point),
//! each writer's relations hold what one of its commits left, no earlier
//! than its last commit acknowledged before the backup began. Seeds come
//! from `KEEL_BACKUP_ROUNDS` (default 2).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use keel::{Database, RelationId, RelationKind, TupleId};
use keel_archive::backup::BackupOptions;
use keel_archive::{Archiver, RestoreTarget};
use keel_io::sim::Rng;

/// A relation's contents as an order-free digest: the wrapping sum of a
/// hash of each row (a tree's row is its key, a zero byte, its value).
fn row_hash(row: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    row.hash(&mut h);
    h.finish()
}

fn tree_row(k: &[u8], v: &[u8]) -> Vec<u8> {
    [k, &[0], v].concat()
}

/// What one writer's relations hold after each of its steps: `(name,
/// digest, rows)` sorted by name.
type State = Vec<(String, u64, usize)>;

struct Writer {
    /// The state after each acknowledged step (`[0]`: before the first).
    states: Vec<State>,
    /// How many steps were acknowledged when the backup began.
    acked_before_backup: usize,
}

impl Writer {
    /// A writer whose state before its first step is `initial`.
    fn starting(initial: State) -> Writer {
        Writer {
            states: vec![initial],
            acked_before_backup: 0,
        }
    }
}

fn heap_writer(db: &Database, rel: RelationId, seed: u64, run: &Flags) -> Writer {
    let mut rng = Rng::new(seed);
    let mut rows: HashMap<TupleId, Vec<u8>> = HashMap::new();
    let (mut digest, mut n) = (0u64, 0usize);
    let mut w = Writer::starting(vec![("r".into(), 0, 0)]);
    let mut i = 0usize;
    while run.go(i) {
        let mut tx = db.begin().unwrap();
        let (mut d, mut c) = (digest, n);
        let mut changed: Vec<(TupleId, Option<Vec<u8>>)> = Vec::new();
        for _ in 0..1 + rng.below(4) {
            i += 1;
            let pick = rows
                .keys()
                .nth(rng.below(rows.len().max(1) as u64) as usize);
            let pick = pick
                .copied()
                .filter(|t| !changed.iter().any(|(c, _)| c == t));
            match (rng.below(10), pick) {
                (0..=1, Some(t)) => {
                    tx.delete(rel, t).unwrap();
                    d = d.wrapping_sub(row_hash(&rows[&t]));
                    c -= 1;
                    changed.push((t, None));
                }
                (2..=4, Some(t)) => {
                    let v = value(i, 20 + rng.below(1500) as usize);
                    tx.update(rel, t, &v).unwrap();
                    d = d
                        .wrapping_sub(row_hash(&rows[&t]))
                        .wrapping_add(row_hash(&v));
                    changed.push((t, Some(v)));
                }
                _ => {
                    let v = [
                        &i.to_le_bytes()[..],
                        &value(i, 20 + rng.below(900) as usize),
                    ]
                    .concat();
                    let t = tx.insert(rel, &v).unwrap();
                    d = d.wrapping_add(row_hash(&v));
                    c += 1;
                    changed.push((t, Some(v)));
                }
            }
        }
        if rng.below(8) == 0 {
            tx.abort().unwrap();
            continue;
        }
        tx.commit().unwrap();
        for (t, v) in changed {
            match v {
                Some(v) => rows.insert(t, v),
                None => rows.remove(&t),
            };
        }
        (digest, n) = (d, c);
        w.states.push(vec![("r".into(), digest, n)]);
        run.note(&mut w);
    }
    w
}

fn tree_writer(db: &Database, tree: RelationId, seed: u64, run: &Flags) -> Writer {
    let mut rng = Rng::new(seed.rotate_left(17));
    let mut keys: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut w = Writer::starting(vec![("t".into(), 0, 0)]);
    let mut i = 0usize;
    while run.go(i) {
        let mut tx = db.begin().unwrap();
        let mut next = keys.clone();
        for _ in 0..1 + rng.below(6) {
            i += 1;
            let k = format!("k{:06}", rng.below(4000)).into_bytes();
            if rng.below(4) == 0 {
                tx.delete_key(tree, &k).unwrap();
                next.remove(&k);
            } else {
                let v = value(i, 50 + rng.below(600) as usize);
                tx.put(tree, &k, &v).unwrap();
                next.insert(k, v);
            }
        }
        if rng.below(8) == 0 {
            tx.abort().unwrap();
            continue;
        }
        tx.commit().unwrap();
        keys = next;
        let digest = keys
            .iter()
            .fold(0u64, |d, (k, v)| d.wrapping_add(row_hash(&tree_row(k, v))));
        w.states.push(vec![("t".into(), digest, keys.len())]);
        run.note(&mut w);
    }
    w
}

/// Creates, fills, bulk-loads and drops relations and trees named `d…`.
fn ddl_writer(db: &Database, seed: u64, run: &Flags) -> Writer {
    let mut rng = Rng::new(seed.rotate_left(41));
    let mut live: BTreeMap<String, (RelationKind, u64, usize)> = BTreeMap::new();
    let mut w = Writer::starting(Vec::new());
    let state = |live: &BTreeMap<String, (RelationKind, u64, usize)>| -> State {
        live.iter()
            .map(|(n, &(_, d, c))| (n.clone(), d, c))
            .collect()
    };
    let mut i = 0usize;
    while run.go(i) {
        i += 1;
        let name = format!("d{i:05}");
        match rng.below(5) {
            0 | 1 if !live.is_empty() => {
                let victim = live
                    .keys()
                    .nth(rng.below(live.len() as u64) as usize)
                    .unwrap()
                    .clone();
                match live[&victim].0 {
                    RelationKind::Heap => db.drop_relation(&victim).unwrap(),
                    RelationKind::Tree => db.drop_tree(&victim).unwrap(),
                }
                live.remove(&victim);
            }
            2 => {
                let tree = db.create_tree(&name).unwrap();
                live.insert(name.clone(), (RelationKind::Tree, 0, 0));
                w.states.push(state(&live));
                run.note(&mut w);
                let n = 1 + rng.below(400) as usize;
                let items: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
                    .map(|j| (format!("b{j:06}").into_bytes(), value(i + j, 120)))
                    .collect();
                let mut tx = db.begin().unwrap();
                tx.bulk_load(tree, items.iter().map(|(k, v)| (k.clone(), v.clone())))
                    .unwrap();
                tx.commit().unwrap();
                let d = items
                    .iter()
                    .fold(0u64, |d, (k, v)| d.wrapping_add(row_hash(&tree_row(k, v))));
                live.insert(name, (RelationKind::Tree, d, n));
            }
            _ => {
                let rel = db.create_relation(&name).unwrap();
                live.insert(name.clone(), (RelationKind::Heap, 0, 0));
                w.states.push(state(&live));
                run.note(&mut w);
                let n = 1 + rng.below(60) as usize;
                let mut tx = db.begin().unwrap();
                let mut d = 0u64;
                for j in 0..n {
                    let v = value(i * 7 + j, 100 + rng.below(700) as usize);
                    tx.insert(rel, &v).unwrap();
                    d = d.wrapping_add(row_hash(&v));
                }
                tx.commit().unwrap();
                live.insert(name, (RelationKind::Heap, d, n));
            }
        }
        w.states.push(state(&live));
        run.note(&mut w);
    }
    w
}

/// When the writers stop, and whether the backup has begun.
struct Flags {
    stop: AtomicBool,
    backup_began: AtomicBool,
}

impl Flags {
    /// Whether a writer goes on: until told to stop, and for at least
    /// `MIN_STEPS` steps.
    fn go(&self, i: usize) -> bool {
        !self.stop.load(Ordering::SeqCst) || i < 40
    }
    /// Records, until the backup begins, that every step so far was
    /// acknowledged before it.
    fn note(&self, w: &mut Writer) {
        if !self.backup_began.load(Ordering::SeqCst) {
            w.acked_before_backup = w.states.len() - 1;
        }
    }
}

/// The restored database's relations whose names `keep` accepts, with
/// their digests.
fn restored_state(db: &Database, keep: impl Fn(&str) -> bool) -> State {
    let tx = db.begin().unwrap();
    let mut out: State = db
        .relations()
        .into_iter()
        .filter(|r| keep(&r.name))
        .map(|r| {
            let rows: Vec<Vec<u8>> = match r.kind {
                RelationKind::Heap => tx.scan(r.id).unwrap().map(|x| x.unwrap().1).collect(),
                RelationKind::Tree => tx
                    .range(r.id, ..)
                    .unwrap()
                    .map(|x| {
                        let (k, v) = x.unwrap();
                        tree_row(&k, &v)
                    })
                    .collect(),
            };
            let d = rows.iter().fold(0u64, |d, r| d.wrapping_add(row_hash(r)));
            (r.name, d, rows.len())
        })
        .collect();
    out.sort();
    out
}

fn check_restored(dir: &Path, writers: &[(&str, &Writer)], exact: bool) {
    let db = Database::open(dir, config()).unwrap();
    for (prefix, w) in writers {
        let got = restored_state(&db, |n| n.starts_with(prefix));
        let at = w.states.iter().rposition(|s| *s == got);
        match exact {
            true => assert_eq!(
                Some(&got),
                w.states.last(),
                "{prefix}: the restore to the end lacks the last commit"
            ),
            false => assert!(
                at.is_some_and(|k| k >= w.acked_before_backup),
                "{prefix}: the restore to the backup's end holds no state from step {} on \
                 (matches step {at:?} of {}): {got:?}",
                w.acked_before_backup,
                w.states.len() - 1
            ),
        }
    }
    db.close().unwrap();
}

fn round(seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let target = local_target(tmp.path());
    let db = open(&tmp.path().join("data"));
    let rel = db.create_relation("r").unwrap();
    let tree = db.create_tree("t").unwrap();
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    let flags = Arc::new(Flags {
        stop: AtomicBool::new(false),
        backup_began: AtomicBool::new(false),
    });
    let (w_heap, w_tree, w_ddl, ckpt) = std::thread::scope(|s| {
        let heap = s.spawn(|| heap_writer(&db, rel, seed, &flags));
        let tree = s.spawn(|| tree_writer(&db, tree, seed, &flags));
        let ddl = s.spawn(|| ddl_writer(&db, seed, &flags));
        let ckpt = s.spawn(|| {
            let mut n = 0;
            while !flags.stop.load(Ordering::SeqCst) {
                db.checkpoint().unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(3));
            }
            n
        });
        std::thread::sleep(Duration::from_millis(300));
        flags.backup_began.store(true, Ordering::SeqCst);
        let options = BackupOptions {
            archive_timeout: Duration::from_secs(60),
            part_size_bytes: keel::page::PAGE_SIZE,
            ..BackupOptions::default()
        };
        let m = keel_archive::backup(&db, &archiver, &target, &options);
        std::thread::sleep(Duration::from_millis(100));
        // Stopped before a failed backup is reported: the writers would
        // otherwise run (and grow) until the scope joins them, for ever.
        flags.stop.store(true, Ordering::SeqCst);
        let m = m.unwrap_or_else(|e| panic!("seed {seed:x}: the backup failed: {e}"));
        let out = (
            heap.join().unwrap(),
            tree.join().unwrap(),
            ddl.join().unwrap(),
            ckpt.join().unwrap(),
        );
        (out.0, out.1, out.2, (out.3, m))
    });
    let (checkpoints, m) = ckpt;
    assert!(checkpoints > 0);
    eprintln!(
        "seed {seed:x}: {checkpoints} checkpoints, steps {}/{} {}/{} {}/{}, backup {}..{} of {} files",
        w_heap.acked_before_backup,
        w_heap.states.len(),
        w_tree.acked_before_backup,
        w_tree.states.len(),
        w_ddl.acked_before_backup,
        w_ddl.states.len(),
        m.start,
        m.end,
        m.files.len()
    );
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(60))
        .unwrap();
    let writers = [("r", &w_heap), ("t", &w_tree), ("d", &w_ddl)];
    let at_end = tmp.path().join("at-backup-end");
    let report = keel_archive::restore(
        &target,
        &at_end,
        1,
        RestoreTarget::Lsn(m.end),
        config(),
        Duration::from_secs(10),
    );
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            let dbg = tmp.keep();
            panic!(
                "seed {seed}: restore to the backup's end {}: {e} (kept {})",
                m.end,
                dbg.display()
            )
        }
    };
    assert_eq!(report.backup, m);
    check_restored(&at_end, &writers, false);
    let whole = tmp.path().join("whole");
    keel_archive::restore(
        &target,
        &whole,
        1,
        RestoreTarget::End,
        config(),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("seed {seed}: restore to the end: {e}"));
    check_restored(&whole, &writers, true);
    archiver.stop().unwrap();
}

#[test]
fn a_backup_under_a_mixed_workload_with_ddl_restores_every_acknowledged_commit() {
    for seed in 0..rounds_from_env("KEEL_BACKUP_ROUNDS", 2) {
        round(0x9e37_79b9_7f4a_7c15 ^ (seed + 1));
    }
}
