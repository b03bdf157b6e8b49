#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The poisoned state as a fault shape (invariant 16): after an injected
//! write or sync error on the log or on a data file, with several threads
//! running transactions, every call on every thread either fails or
//! returns only durable state, and reopening finds exactly the
//! acknowledged commits (plus, at most, commits whose outcome was an
//! error: their record may have reached the disk before the failure).
//! Each transaction also puts its row's value as a key of a tree, with the
//! row's TupleId as its value (a secondary index), so tree reads and
//! writes meet the poison too and the index matches the rows after
//! reopening.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use keel::{DbError, Error, ErrorClass, RelationId, TupleId};
use keel_io::sim::{Fault, FaultRule, SimConfig, SimIo};
use keel_io::{FileClass, OpKind};

mod common;

const THREADS: usize = 4;

/// What one thread saw.
#[derive(Default)]
struct Seen {
    acked: Vec<(TupleId, Vec<u8>)>,
    /// Values of commits that returned an error.
    failed: Vec<Vec<u8>>,
    /// The tuple of a commit that returned an error.
    failed_tid: Option<TupleId>,
    poisoned: bool,
}

fn value(thread: usize, i: usize) -> Vec<u8> {
    format!("t{thread}-{i:05}").into_bytes()
}

/// The index key a worker's pending transaction replaces.
fn pending_key(t: usize) -> Vec<u8> {
    format!("pending-{t}").into_bytes()
}

/// The value of a row's index key: its TupleId.
fn index_value(tid: TupleId) -> Vec<u8> {
    tid.to_string().into_bytes()
}

fn fatal(e: &Error, what: &str) {
    assert_eq!(e.class(), ErrorClass::Fatal, "{what}: {e}");
}

/// One worker: commits inserts (reading back its earlier rows) until a
/// call fails; then every call through a transaction begun before the
/// fault, and through the database, must fail.
fn worker(
    db: &keel::Database,
    rel: RelationId,
    index: RelationId,
    t: usize,
    stop: &AtomicBool,
    commits: &AtomicUsize,
) -> Seen {
    let mut seen = Seen::default();
    let reader = db.begin().unwrap();
    let mut pending = db.begin().unwrap();
    let held = pending.insert(rel, &value(t, 99_999)).unwrap();
    // A replace: it locks its key only (an insert would wait for the
    // next key, which another worker's pending transaction may hold).
    pending
        .put(index, &pending_key(t), &index_value(held))
        .unwrap();
    // The fault comes only once every worker holds its transactions.
    commits.fetch_add(1 << 32, Ordering::AcqRel);
    for i in 0.. {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let mut tx = match db.begin() {
            Ok(tx) => tx,
            Err(e) => {
                fatal(&e, "begin");
                seen.poisoned = true;
                break;
            }
        };
        if let Some((tid, v)) = seen.acked.last() {
            let read = tx.get(rel, *tid).and_then(|got| {
                assert_eq!(got.as_ref(), Some(v));
                tx.get_key(index, v)
            });
            match read {
                Ok(got) => assert_eq!(got, Some(index_value(*tid))),
                Err(e) => {
                    fatal(&e, "get");
                    seen.poisoned = true;
                    break;
                }
            }
        }
        let v = value(t, i);
        let written = tx
            .insert(rel, &v)
            .and_then(|tid| tx.put(index, &v, &index_value(tid)).map(|()| tid));
        let tid = match written {
            Ok(tid) => tid,
            Err(e) => {
                fatal(&e, "insert");
                seen.poisoned = true;
                break;
            }
        };
        match tx.commit() {
            Ok(()) => {
                seen.acked.push((tid, v));
                commits.fetch_add(1, Ordering::AcqRel);
            }
            Err(e) => {
                fatal(&e, "commit");
                seen.failed.push(v);
                seen.failed_tid = Some(tid);
                seen.poisoned = true;
                break;
            }
        }
    }
    if !seen.poisoned {
        return seen;
    }
    // Poisoned: nothing is acknowledged and nothing is read any more.
    let own = seen.acked.first().map_or(held, |(tid, _)| *tid);
    for (what, r) in [
        ("get", reader.get(rel, own).map(|_| ())),
        ("try_get", reader.try_get(rel, own).map(|_| ())),
        (
            "get of a failed commit's tuple",
            reader.get(rel, seen.failed_tid.unwrap_or(own)).map(|_| ()),
        ),
        (
            "try_get of a tuple locked by a live transaction",
            reader.try_get(rel, held).map(|_| ()),
        ),
        ("get_key", reader.get_key(index, &value(t, 0)).map(|_| ())),
        ("first key", reader.first(index).map(|_| ())),
        ("begin", db.begin().map(|_| ())),
        ("checkpoint", db.checkpoint().map(|_| ())),
        (
            "create_relation",
            db.create_relation(&format!("late{t}")).map(|_| ()),
        ),
        (
            "insert",
            pending.insert(rel, b"after the poison").map(|_| ()),
        ),
        (
            "put",
            pending.put(index, b"after the poison", b"").map(|_| ()),
        ),
    ] {
        let e = r.expect_err(what);
        fatal(&e, what);
    }
    match reader.scan(rel) {
        Err(e) => fatal(&e, "scan"),
        Ok(scan) => {
            for row in scan {
                let e = row.expect_err("a scan step after the poison");
                fatal(&e, "scan step");
            }
        }
    }
    let e = pending.commit().expect_err("commit after the poison");
    fatal(&e, "commit of a transaction begun before");
    seen.failed.push(value(t, 99_999));
    seen
}

/// Runs the workload, injects `rule` once some commits are acknowledged
/// (and takes a checkpoint, for faults on data files), checks every
/// thread, crashes, reopens and checks the rows.
fn poisoned_under_load(rule: FaultRule, checkpoint: bool, seed: u64) {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(seed)));
    let db = common::open_sim(&sim, common::small_config(64)).unwrap();
    let rel = db.create_relation("t").unwrap();
    let index = db.create_tree("index").unwrap();
    let mut tx = db.begin().unwrap();
    for t in 0..THREADS {
        tx.put(index, &pending_key(t), b"never replaced").unwrap();
    }
    tx.commit().unwrap();
    let stop = AtomicBool::new(false);
    let commits = AtomicUsize::new(0);
    let seen: Vec<Seen> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (db, stop, commits) = (&db, &stop, &commits);
                s.spawn(move || worker(db, rel, index, t, stop, commits))
            })
            .collect();
        // A worker that ends before the fault failed: its join reports it.
        while commits.load(Ordering::Acquire) < (THREADS << 32) + 40
            && !workers.iter().any(|w| w.is_finished())
        {
            std::thread::yield_now();
        }
        sim.add_fault(rule);
        if checkpoint {
            let result = db.checkpoint();
            if result.is_ok() {
                // The workers must stop for the scope to end and the
                // failure below to be reported.
                stop.store(true, Ordering::Release);
            }
            let e = result.expect_err("checkpoint with a failing data sync");
            fatal(&e, "checkpoint");
        }
        // Workers stop at their first error; the flag ends the test if the
        // fault never fires (the assertion below then fails).
        let deadline_commits = commits.load(Ordering::Acquire) + 2_000;
        while commits.load(Ordering::Acquire) < deadline_commits
            && !workers.iter().all(|w| w.is_finished())
        {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Release);
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (t, s) in seen.iter().enumerate() {
        assert!(s.poisoned, "thread {t} never saw the fault");
    }
    let disk = sim.crash();
    drop(db);
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(seed + 1)));
    let db = common::open_sim(&sim, common::small_config(64)).unwrap();
    let tx = db.begin().unwrap();
    let rows: HashMap<TupleId, Vec<u8>> = tx.scan(rel).unwrap().map(|r| r.unwrap()).collect();
    for s in &seen {
        for (tid, v) in &s.acked {
            assert_eq!(rows.get(tid), Some(v), "acknowledged commit lost");
        }
    }
    for (tid, v) in &rows {
        let acked = seen
            .iter()
            .any(|s| s.acked.iter().any(|(t, a)| t == tid && a == v));
        let in_doubt = seen.iter().any(|s| s.failed.contains(v));
        assert!(
            acked || in_doubt,
            "row {tid} = {:?} was never committed",
            String::from_utf8_lossy(v)
        );
    }
    // The index holds a key for every row and for nothing else.
    let mut keys: HashMap<Vec<u8>, Vec<u8>> =
        tx.range(index, ..).unwrap().map(|r| r.unwrap()).collect();
    for t in 0..THREADS {
        let placeholder = keys.remove(&pending_key(t));
        assert_eq!(placeholder.as_deref(), Some(&b"never replaced"[..]));
    }
    for (tid, v) in &rows {
        assert_eq!(
            keys.get(v),
            Some(&index_value(*tid)),
            "row {tid} not indexed"
        );
    }
    assert_eq!(keys.len(), rows.len(), "index keys without their row");
    drop(tx);
    db.close().unwrap();
}

/// Every `op` of `class` fails with `fault`, under load, once for each
/// seed of `seeds`.
fn failing_syncs(
    fault: Fault,
    op: OpKind,
    class: FileClass,
    checkpoint: bool,
    seeds: std::ops::Range<u64>,
) {
    for seed in seeds {
        let rule = FaultRule::always(fault).on_op(op).on_class(class);
        poisoned_under_load(rule, checkpoint, seed);
    }
}

/// The log's batches are durable writes (`RWF_DSYNC`): a sync failure of
/// the log is one of them failing after the kernel dropped its bytes.
#[test]
fn a_failed_log_sync_poisons_every_thread() {
    failing_syncs(
        Fault::SyncFailure,
        OpKind::DurableWrite,
        FileClass::Wal,
        false,
        1..4,
    );
}

/// Every `op` of `class` fails, with EIO (seed `seed`) and then with a
/// full disk (seed `seed + 1`), under load.
fn failing_writes(op: OpKind, class: FileClass, checkpoint: bool, seed: u64) {
    for (seed, fault) in [(seed, Fault::Eio), (seed + 1, Fault::NoSpace)] {
        let rule = FaultRule::always(fault).on_op(op).on_class(class);
        poisoned_under_load(rule, checkpoint, seed);
    }
}

#[test]
fn a_failed_log_write_poisons_every_thread() {
    failing_writes(OpKind::DurableWrite, FileClass::Wal, false, 11);
}

/// A data file's fdatasync fails with EIO, or with ENOSPC (blocks
/// allocated only at writeback meet a full disk).
#[test]
fn a_failed_data_sync_poisons_every_thread() {
    failing_syncs(Fault::Eio, OpKind::Fdatasync, FileClass::Data, true, 21..23);
    failing_syncs(
        Fault::NoSpace,
        OpKind::Fdatasync,
        FileClass::Data,
        true,
        23..25,
    );
}

/// A checkpoint's sync of the new control file, or of a directory it
/// renames into, fails with EIO or ENOSPC.
#[test]
fn a_failed_control_file_or_directory_sync_poisons_every_thread() {
    for (n, fault) in [Fault::Eio, Fault::NoSpace].into_iter().enumerate() {
        let seed = 61 + 2 * n as u64;
        failing_syncs(
            fault,
            OpKind::Fdatasync,
            FileClass::Control,
            true,
            seed..seed + 1,
        );
        failing_syncs(
            fault,
            OpKind::SyncDir,
            FileClass::Other,
            true,
            seed + 1..seed + 2,
        );
    }
}

/// The log's batch fails at its sync with ENOSPC.
#[test]
fn a_log_sync_failing_with_a_full_disk_poisons_every_thread() {
    failing_syncs(
        Fault::NoSpace,
        OpKind::DurableWrite,
        FileClass::Wal,
        false,
        4..6,
    );
}

/// A page write that fails (EIO, or a full disk) in the buffer pool's
/// writeback, reached through a checkpoint (pages go down as vectored
/// writes, neighbours together).
#[test]
fn a_failed_data_write_poisons_every_thread() {
    failing_writes(OpKind::WriteV, FileClass::Data, true, 31);
}

/// The writeback a checkpoint starts after each batch of page writes
/// fails: the kernel could not write pages it was given (a sync failure,
/// modelled as some of the file's unsynced writes lost, so the fdatasync
/// after it cannot be trusted to cover them), or failed with EIO, or met
/// a full disk allocating their blocks.
#[test]
fn a_failed_data_writeback_poisons_every_thread() {
    failing_syncs(
        Fault::SyncFailure,
        OpKind::Writeback,
        FileClass::Data,
        true,
        51..53,
    );
    failing_writes(OpKind::Writeback, FileClass::Data, true, 53);
}

/// A single-page write that fails (EIO, or a full disk): a page the
/// buffer pool writes alone (an eviction from the small pool, the
/// background writer, a checkpoint's lone dirty page) goes down as one
/// plain write, not a vectored one.
#[test]
fn a_failed_single_page_write_poisons_every_thread() {
    failing_writes(OpKind::Write, FileClass::Data, true, 41);
}

#[test]
fn the_first_fatal_error_is_the_cause_of_every_refusal() {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(5)));
    let db = common::open_sim(&sim, common::small_config(32)).unwrap();
    let rel = db.create_relation("t").unwrap();
    assert!(!db.is_poisoned());
    sim.add_fault(
        FaultRule::always(Fault::SyncFailure)
            .on_op(OpKind::DurableWrite)
            .on_class(FileClass::Wal),
    );
    let mut tx = db.begin().unwrap();
    tx.insert(rel, b"x").unwrap();
    let first = tx.commit().unwrap_err();
    assert!(db.is_poisoned());
    sim.clear_faults();
    let later = db.begin().unwrap_err();
    for e in [&first, &later] {
        let Error::Db(DbError::Poisoned { cause }) = e else {
            panic!("expected Poisoned, got {e}");
        };
        // The cause is the log's sync failure, in the message and as the
        // source.
        assert!(matches!(cause.error(), Error::Wal(_)), "{e}");
        let text = e.to_string();
        assert!(text.contains("durable_write"), "{text}");
        let source = std::error::Error::source(e).unwrap().to_string();
        assert_eq!(source, cause.error().to_string());
    }
    assert_eq!(db.poison_cause().unwrap().chain(), {
        let Error::Db(DbError::Poisoned { cause }) = &later else {
            unreachable!()
        };
        cause.chain()
    });
}

/// A page write that fails under the releases that follow a commit (the
/// deleted value's overflow chain read back through a pool of dirty
/// frames, whose eviction fails): the commit stands, and the failed write
/// poisons the database as it does under any other call, so the open
/// after the crash frees the chain the release could not, and no page is
/// leaked.
#[test]
fn a_failed_write_in_a_commits_releases_poisons() {
    use keel::page::{CHUNK_CAPACITY, PageType};
    let sim = Arc::new(SimIo::new(SimConfig::seeded(7)));
    let db = common::open_sim(&sim, common::small_config(6)).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    let old = tx.insert(rel, &vec![7; 10 * CHUNK_CAPACITY]).unwrap();
    tx.commit().unwrap();
    db.checkpoint().unwrap();
    let new_value = vec![8; 8 * CHUNK_CAPACITY];
    let mut tx = db.begin().unwrap();
    // Fills the pool with dirty pages.
    let new = tx.insert(rel, &new_value).unwrap();
    tx.delete(rel, old).unwrap();
    for op in [OpKind::Write, OpKind::WriteV] {
        sim.add_fault(
            FaultRule::always(Fault::Eio)
                .on_op(op)
                .on_class(FileClass::Data),
        );
    }
    tx.commit().unwrap();
    assert!(db.cleanup_failures() > 0, "no release failed");
    assert!(
        db.is_poisoned(),
        "a failed page write left the database usable"
    );
    let Err(e) = db.begin() else {
        panic!("a poisoned database began a transaction");
    };
    common::poison_cause(&e, "begin after the failed write");

    let kernel = sim.kill();
    drop(db);
    let sim = Arc::new(SimIo::after_kill(kernel, SimConfig::seeded(8)));
    let db = common::open_sim(&sim, common::small_config(6)).unwrap();
    let tx = db.begin().unwrap();
    let rows: Vec<_> = tx.scan(rel).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(rows, vec![(new, new_value)]);
    drop(tx);
    assert_eq!(common::pages_of_type(&db, "t", PageType::Overflow), 8);
    assert_eq!(common::dead_slots(&db, "t"), 0);
}
