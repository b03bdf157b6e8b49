#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Many threads on a buffer pool much smaller than the data (every thread
//! forces evictions), and the free space map keeping pages full after a
//! delete-heavy workload.

use std::collections::BTreeMap;

use keel::buffer::BufferConfig;
use keel::page::SlottedPage;
use keel::{Config, Database, PageId, TupleId};

mod common;

use common::StopOnDrop;

fn config(frames: usize) -> Config {
    let mut c = Config {
        buffer: BufferConfig::with_frames(frames),
        consistency_check: true,
        ..Config::default()
    };
    c.wal.segment_size_bytes = 4 << 20;
    c.wal.max_batch_bytes = 256 << 10;
    c
}

fn value(t: usize, i: usize) -> Vec<u8> {
    let len = 50 + (t * 131 + i * 17) % 600;
    (0..len).map(|j| (t * 7 + i * 3 + j) as u8).collect()
}

#[test]
fn threads_insert_update_and_read_through_a_small_pool() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config(16)).unwrap();
    let rel = db.create_relation("t").unwrap();
    let threads = 4;
    let per_thread = 1500;
    let written: Vec<BTreeMap<TupleId, Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let db = &db;
                s.spawn(move || {
                    let mut mine = BTreeMap::new();
                    for batch in 0..per_thread / 50 {
                        let mut tx = db.begin().unwrap();
                        for k in 0..50 {
                            let i = batch * 50 + k;
                            let v = value(t, i);
                            let tid = tx.insert(rel, &v).unwrap();
                            mine.insert(tid, v);
                        }
                        // Grow some of this thread's earlier tuples (moves).
                        let grow: Vec<TupleId> = mine.keys().copied().step_by(37).collect();
                        for tid in grow.into_iter().take(3) {
                            let v = value(t + 100, tid.slot.0 as usize);
                            tx.update(rel, tid, &v).unwrap();
                            mine.insert(tid, v);
                        }
                        for (tid, v) in mine.iter().step_by(29) {
                            assert_eq!(tx.get(rel, *tid).unwrap().as_ref(), Some(v));
                        }
                        tx.commit().unwrap();
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = BTreeMap::new();
    for m in written {
        for (tid, v) in m {
            assert!(all.insert(tid, v).is_none(), "{tid} given to two threads");
        }
    }
    let stats = db.buffer_stats();
    assert!(stats.evictions > 0, "the pool never evicted: {stats:?}");
    let check = |db: &Database| {
        let tx = db.begin().unwrap();
        let rows: BTreeMap<TupleId, Vec<u8>> = tx.scan(rel).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), all.len());
        assert!(rows == all, "scan differs from what the threads wrote");
    };
    check(&db);
    db.close().unwrap();
    let db = Database::open(dir.path(), config(16)).unwrap();
    check(&db);
    db.close().unwrap();
}

/// Average fill factor of the relation's heap pages.
fn average_fill(db: &Database, name: &str) -> (f64, u32) {
    let pages = common::page_count(db, name);
    let mut fill = 0.0;
    let mut heap_pages = 0;
    for p in 0..pages {
        let bytes = db.read_page(name, PageId(p)).unwrap();
        if let Ok(page) = SlottedPage::open(&bytes[..], PageId(p)) {
            fill += page.stats().fill_factor();
            heap_pages += 1;
        }
    }
    (fill / f64::from(heap_pages), pages)
}

#[test]
fn freed_space_is_refilled_after_a_delete_heavy_workload() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config(256)).unwrap();
    let rel = db.create_relation("churn").unwrap();
    let row = |i: usize| vec![(i % 251) as u8; 100];
    let mut tids = Vec::new();
    let mut tx = db.begin().unwrap();
    for i in 0..20_000 {
        tids.push(tx.insert(rel, &row(i)).unwrap());
    }
    tx.commit().unwrap();
    let (fill_before, pages_before) = average_fill(&db, "churn");
    for round in 0..4 {
        // Delete 80% of the rows, then insert as many again.
        let mut tx = db.begin().unwrap();
        let mut kept = Vec::new();
        let mut deleted = 0;
        for (k, tid) in tids.iter().enumerate() {
            if (k + round) % 5 != 0 {
                tx.delete(rel, *tid).unwrap();
                deleted += 1;
            } else {
                kept.push(*tid);
            }
        }
        tx.commit().unwrap();
        let mut tx = db.begin().unwrap();
        for i in 0..deleted {
            kept.push(tx.insert(rel, &row(i)).unwrap());
        }
        tx.commit().unwrap();
        tids = kept;
    }
    let (fill, pages) = average_fill(&db, "churn");
    assert!(
        pages <= pages_before + pages_before / 50,
        "the relation grew from {pages_before} to {pages} pages: freed space was not reused"
    );
    assert!(
        fill >= 0.90,
        "average fill {fill:.3} (was {fill_before:.3}) after churn"
    );
    db.close().unwrap();
}

#[test]
fn checkpoints_while_threads_commit_then_a_crash_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config(32)).unwrap();
    let rel = db.create_relation("t").unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let written: Vec<BTreeMap<TupleId, Vec<u8>>> = std::thread::scope(|s| {
        let checkpointer = s.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let report = db.checkpoint().unwrap();
                assert_dirty_pages_after_begin(dir.path(), &report);
                n += 1;
            }
            n
        });
        let workers: Vec<_> = (0..3)
            .map(|t| {
                let db = &db;
                s.spawn(move || {
                    let mut mine = BTreeMap::new();
                    for i in 0..400 {
                        let mut tx = db.begin().unwrap();
                        let v = value(t, i);
                        let tid = tx.insert(rel, &v).unwrap();
                        mine.insert(tid, v);
                        if let Some((&old, _)) = mine.iter().nth(i / 2) {
                            let v = value(t + 10, i);
                            tx.update(rel, old, &v).unwrap();
                            mine.insert(old, v);
                        }
                        tx.commit().unwrap();
                    }
                    mine
                })
            })
            .collect();
        let stopping = StopOnDrop(&stop);
        let done: Vec<_> = workers.into_iter().map(|h| h.join().unwrap()).collect();
        drop(stopping);
        assert!(checkpointer.join().unwrap() > 0);
        done
    });
    drop(db); // crash: no final checkpoint
    let db = Database::open(dir.path(), config(32)).unwrap();
    let all: BTreeMap<TupleId, Vec<u8>> = written.into_iter().flatten().collect();
    let tx = db.begin().unwrap();
    let rows: BTreeMap<TupleId, Vec<u8>> = tx.scan(rel).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), all.len());
    assert!(rows == all, "a committed change is missing after the crash");
    drop(tx);
    db.close().unwrap();
}

/// Reads the checkpoint's end record back and checks its redo start: a
/// checkpoint writes every page dirty at its begin record, so a page dirty
/// again at the end record was changed after the begin record, and its
/// recLSN must say so (`flush_all` must not miss a change logged before the
/// begin record, and a page changed during its write-back must not keep the
/// recLSN of the change written): the oldest recLSN, and so the redo start,
/// is never before the begin record.
fn assert_dirty_pages_after_begin(dir: &std::path::Path, report: &keel::CheckpointReport) {
    use keel::wal::{Payload, RecoveryMode, WalReader};
    let io = keel_io::open_backend(&keel_io::IoConfig::default()).unwrap();
    let mut reader = WalReader::open_read_only(
        io,
        &dir.join("wal"),
        report.end,
        RecoveryMode::TolerateTornTail,
    )
    .unwrap();
    let r = reader.next().unwrap().unwrap();
    let payload = Payload::decode_record(&r.header, &r.payload).unwrap();
    let Payload::CheckpointEnd {
        begin_lsn,
        redo_start,
        ..
    } = payload
    else {
        panic!("record at {} is not a checkpoint end", report.end);
    };
    assert_eq!(begin_lsn, report.begin);
    assert_eq!(
        redo_start, begin_lsn,
        "a page is dirty since {redo_start}, before the checkpoint began at {begin_lsn}"
    );
}

#[test]
fn after_a_crash_the_fsm_never_promises_more_than_a_page_has() {
    use keel::fsm::category_bytes;
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config(16)).unwrap();
    let rel = db.create_relation("f").unwrap();
    let mut tx = db.begin().unwrap();
    let tids: Vec<TupleId> = (0..3000)
        .map(|i| tx.insert(rel, &value(1, i)).unwrap())
        .collect();
    tx.commit().unwrap();
    db.checkpoint().unwrap();
    // After the checkpoint (and its saved FSM): pages fill and empty again,
    // and the small pool writes many of them before the crash.
    let mut tx = db.begin().unwrap();
    for (k, tid) in tids.iter().enumerate() {
        if k % 3 == 0 {
            tx.delete(rel, *tid).unwrap();
        } else if k % 3 == 1 {
            tx.update(rel, *tid, &value(2, k + 1000)).unwrap();
        }
    }
    for i in 0..800 {
        tx.insert(rel, &value(3, i)).unwrap();
    }
    tx.commit().unwrap();
    drop(db);
    let db = Database::open(dir.path(), config(16)).unwrap();
    let snapshot = db.fsm_snapshot("f").unwrap();
    assert!(!snapshot.is_empty());
    for (pid, cats) in snapshot {
        let bytes = db.read_page("f", pid).unwrap();
        let page = SlottedPage::open(&bytes[..], pid)
            .unwrap_or_else(|e| panic!("the FSM tracks page {pid}, which is no heap page: {e}"));
        assert!(
            category_bytes(cats.contiguous) <= page.contiguous_free()
                && category_bytes(cats.total) <= page.total_free(),
            "page {pid}: FSM promises {:?}, page has {} / {}",
            cats,
            page.contiguous_free(),
            page.total_free()
        );
    }
    db.close().unwrap();
}
