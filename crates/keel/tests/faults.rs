#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Bad input and failing devices at the database level: a failed log sync
//! poisons the database (nothing more is acknowledged, reopening recovers),
//! a failed data sync in the checkpoint that ends recovery fails the open,
//! a flipped bit in a data page or in the control file is a clear error
//! naming it, never a wrong answer.

use std::sync::Arc;

use keel::buffer::BufferError;
use keel::page::PageType;
use keel::{Config, Database, DbError, Error, ErrorClass, PageId};
use keel_io::sim::{Fault, FaultRule, SimConfig, SimIo};
use keel_io::{AsyncIo, FileClass, OpKind};

mod common;

fn config() -> Config {
    common::small_config(32)
}

#[test]
fn a_failed_log_sync_poisons_and_reopening_recovers_the_acknowledged_commits() {
    for fault in [Fault::SyncFailure, Fault::Eio, Fault::NoSpace] {
        let sim = Arc::new(SimIo::new(SimConfig::seeded(7)));
        let io = Arc::clone(&sim) as Arc<dyn AsyncIo>;
        let db = Database::open_with_io("/db", config(), io).unwrap();
        let rel = db.create_relation("t").unwrap();
        let mut acked = Vec::new();
        for i in 0..20u8 {
            let mut tx = db.begin().unwrap();
            let tid = tx.insert(rel, &[i; 40]).unwrap();
            tx.commit().unwrap();
            acked.push((tid, i));
        }
        // The log's batches are durable writes (`RWF_DSYNC`): each fault
        // hits the write that is also the batch's sync.
        let op = OpKind::DurableWrite;
        sim.add_fault(FaultRule::always(fault).on_op(op).on_class(FileClass::Wal));
        let mut tx = db.begin().unwrap();
        tx.insert(rel, b"never acknowledged").unwrap();
        let e = tx.commit().unwrap_err();
        assert_eq!(e.class(), ErrorClass::Fatal, "{fault:?}: {e}");
        let e = db.begin().unwrap_err();
        assert!(
            matches!(e, Error::Db(DbError::Poisoned { .. })),
            "{fault:?}: {e}"
        );
        sim.clear_faults();
        let e = db.begin().unwrap_err();
        assert!(
            matches!(e, Error::Db(DbError::Poisoned { .. })),
            "poisoning is for good: {e}"
        );
        let disk = sim.crash();
        drop(db);
        let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(8)));
        let db = Database::open_with_io("/db", config(), sim as Arc<dyn AsyncIo>).unwrap();
        let tx = db.begin().unwrap();
        for (tid, i) in &acked {
            assert_eq!(tx.get(rel, *tid).unwrap(), Some(vec![*i; 40]), "{fault:?}");
        }
        // The failed commit was in flight: its record may have reached the
        // disk before the sync failed (a failed fdatasync may still have
        // written it), so it is either wholly there or wholly absent.
        let extra: Vec<Vec<u8>> = tx
            .scan(rel)
            .unwrap()
            .map(|r| r.unwrap())
            .filter(|(t, _)| !acked.iter().any(|(a, _)| a == t))
            .map(|(_, v)| v)
            .collect();
        assert!(
            extra.is_empty() || extra == vec![b"never acknowledged".to_vec()],
            "{fault:?}: unexpected rows {extra:?}"
        );
        drop(tx);
        db.close().unwrap();
    }
}

/// Flips a bit of each of `pages` of relation `rel`'s heap file in the
/// closed database at `dir` (the last bytes of the page, so its checksum
/// fails).
fn damage_heap_pages(dir: &std::path::Path, rel: keel::RelationId, pages: &[PageId]) {
    let path = dir.join(format!("rel/{}.heap", rel.0));
    let mut bytes = std::fs::read(&path).unwrap();
    for p in pages {
        bytes[p.0 as usize * keel::page::PAGE_SIZE + 8190] ^= 0x10;
    }
    std::fs::write(&path, &bytes).unwrap();
}

#[test]
fn a_flipped_bit_in_a_data_page_is_an_error_naming_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    let tid = tx.insert(rel, b"precious").unwrap();
    tx.commit().unwrap();
    db.close().unwrap();
    damage_heap_pages(dir.path(), rel, &[PageId(0)]);
    let db = Database::open(dir.path(), config()).unwrap();
    let tx = db.begin().unwrap();
    let e = tx.get(rel, tid).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Corruption, "{e}");
    let text = format!("{e}");
    assert!(text.contains(&format!("page {}", PageId(0))), "{text}");
    drop(tx);
    drop(db);
}

/// An update that fails part way, on a damaged page (an error that
/// neither poisons nor ends the transaction), changes nothing: the
/// transaction commits and the tuple still holds its old value, whose
/// overflow chain is not released.
#[test]
fn an_update_failing_on_a_damaged_page_keeps_the_old_value_through_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let big: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    let mut tx = db.begin().unwrap();
    let x = tx.insert(rel, &big).unwrap();
    // Fills the tuple's page, so a 2,000-byte value must move.
    let mut i = 0u32;
    while tx.insert(rel, &[i as u8; 1000]).unwrap().page == x.page {
        i += 1;
    }
    tx.commit().unwrap();
    let pages = db.fsm_snapshot("t").unwrap();
    db.close().unwrap();
    // Damages every other page that has room: the move cannot land.
    let others: Vec<PageId> = pages
        .iter()
        .map(|(p, _)| *p)
        .filter(|&p| p != x.page)
        .collect();
    damage_heap_pages(dir.path(), rel, &others);

    let db = Database::open(dir.path(), config()).unwrap();
    let mut tx = db.begin().unwrap();
    let e = tx.update(rel, x, &[9u8; 2000]).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Corruption, "{e}");
    tx.commit().unwrap();
    assert!(!db.is_poisoned());
    // A released chain's pages would be free pages now.
    let tx = db.begin().unwrap();
    assert_eq!(tx.get(rel, x).unwrap().as_deref(), Some(&big[..]));
    drop(tx);
    drop(db);
}

/// An insert of a large value whose tuple finds no page it can use (the
/// one with room is damaged) fails, and the overflow chain it had written
/// is rolled back at once: no page is left holding it, before or after
/// the commit.
#[test]
fn an_insert_failing_after_its_overflow_chain_leaves_no_chain_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(rel, b"small").unwrap();
    tx.commit().unwrap();
    db.close().unwrap();
    damage_heap_pages(dir.path(), rel, &[PageId(0)]);

    let db = Database::open(dir.path(), config()).unwrap();
    let overflow_pages = |db: &Database| common::pages_of_type(db, "t", PageType::Overflow);
    let mut tx = db.begin().unwrap();
    let e = tx.insert(rel, &[7u8; 20_000]).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Corruption, "{e}");
    assert_eq!(
        overflow_pages(&db),
        0,
        "the chain is left after the failure"
    );
    tx.commit().unwrap();
    assert_eq!(overflow_pages(&db), 0, "the chain is left after the commit");
    drop(db);
}

/// A large value's overflow chain that fails part way (the second free
/// page it takes is damaged) leaves none of the pages it did write: the
/// one written is rolled back at once, nothing points at it.
#[test]
fn a_chain_write_failing_part_way_leaves_no_chain_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    let tid = tx.insert(rel, &[1u8; 40_000]).unwrap();
    tx.commit().unwrap();
    let mut tx = db.begin().unwrap();
    tx.delete(rel, tid).unwrap();
    tx.commit().unwrap();
    // The chain's pages are free now; all but the first one offered are
    // damaged, so the next chain writes one page and fails on the next.
    let mut free: Vec<PageId> = db
        .fsm_snapshot("t")
        .unwrap()
        .iter()
        .map(|(p, _)| *p)
        .filter(|&p| p != tid.page)
        .collect();
    free.sort();
    assert!(free.len() >= 4, "{free:?}");
    db.close().unwrap();
    damage_heap_pages(dir.path(), rel, &free[1..]);

    let db = Database::open(dir.path(), config()).unwrap();
    let overflow_pages = |db: &Database| common::pages_of_type(db, "t", PageType::Overflow);
    let mut tx = db.begin().unwrap();
    let e = tx.insert(rel, &[7u8; 40_000]).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Corruption, "{e}");
    assert_eq!(
        overflow_pages(&db),
        0,
        "the chunk written before the failure is left"
    );
    tx.commit().unwrap();
    assert!(!db.is_poisoned());
    assert_eq!(
        overflow_pages(&db),
        0,
        "the partial chain is left after the commit"
    );
    drop(db);
}

/// A tree put whose value's chain is written but whose leaf cannot be
/// read (damaged) fails, and the chain is rolled back at once.
#[test]
fn a_tree_put_failing_after_its_overflow_chain_leaves_no_chain_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let tree = db.create_tree("k").unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(tree, b"a", b"small").unwrap();
    tx.commit().unwrap();
    let leaves = common::pages_with_type(&db, "k", PageType::TreeLeaf);
    let [leaf] = leaves[..] else {
        panic!("{leaves:?}")
    };
    db.close().unwrap();
    damage_heap_pages(dir.path(), tree, &[leaf]);

    let db = Database::open(dir.path(), config()).unwrap();
    let overflow_pages = |db: &Database| common::pages_of_type(db, "k", PageType::Overflow);
    let mut tx = db.begin().unwrap();
    let e = tx.put(tree, b"b", &[7u8; 20_000]).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Corruption, "{e}");
    assert_eq!(
        overflow_pages(&db),
        0,
        "the chain is left after the failure"
    );
    tx.commit().unwrap();
    assert!(!db.is_poisoned());
    assert_eq!(overflow_pages(&db), 0, "the chain is left after the commit");
    drop(db);
}

/// A key whose value's chain is damaged can still be deleted: the delete
/// returns the read's error (corruption, naming the page) and is done, so
/// committing removes the key; a rollback keeps it.
#[test]
fn a_key_whose_value_chain_is_damaged_is_deleted_with_the_reads_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let tree = db.create_tree("k").unwrap();
    let mut tx = db.begin().unwrap();
    tx.put(tree, b"a", &[3u8; 20_000]).unwrap();
    tx.put(tree, b"b", b"small").unwrap();
    tx.commit().unwrap();
    let chain = common::pages_with_type(&db, "k", PageType::Overflow);
    assert!(chain.len() > 1, "{chain:?}");
    db.close().unwrap();
    damage_heap_pages(dir.path(), tree, &chain[..1]);

    let db = Database::open(dir.path(), config()).unwrap();
    for commit in [false, true] {
        let mut tx = db.begin().unwrap();
        let e = tx.delete_key(tree, b"a").unwrap_err();
        assert_eq!(e.class(), ErrorClass::Corruption, "{e}");
        assert!(e.to_string().contains(&format!("page {}", chain[0])), "{e}");
        assert_eq!(tx.get_key(tree, b"a").unwrap(), None);
        match commit {
            true => tx.commit().unwrap(),
            false => tx.abort().unwrap(),
        }
        let tx = db.begin().unwrap();
        assert_eq!(
            tx.get_key(tree, b"b").unwrap().as_deref(),
            Some(&b"small"[..])
        );
        match commit {
            // Kept by the rollback: its value still fails to read.
            false => assert!(tx.get_key(tree, b"a").is_err()),
            true => assert_eq!(tx.get_key(tree, b"a").unwrap(), None),
        }
    }
    assert!(!db.is_poisoned());
    drop(db);
}

#[test]
fn a_corrupt_control_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    Database::open(dir.path(), config())
        .unwrap()
        .close()
        .unwrap();
    let path = dir.path().join("control");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[30] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let e = Database::open(dir.path(), config()).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Corruption, "{e}");
    assert!(e.to_string().contains("control"), "{e}");
}

/// Each source of `e`, outermost first (not `e` itself).
fn sources(e: &Error) -> Vec<&(dyn std::error::Error + 'static)> {
    std::iter::successors(std::error::Error::source(e), |s| s.source()).collect()
}

#[test]
fn an_io_error_reading_a_page_during_redo_stays_an_io_error_naming_the_record() {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(11)));
    let db = common::open_sim(&sim, config()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let commit = |from: u8| {
        let mut tx = db.begin().unwrap();
        for i in from..from + 10 {
            tx.insert(rel, &[i; 60]).unwrap();
        }
        tx.commit().unwrap();
    };
    commit(0);
    // The checkpoint writes the page; the commit after it logs changes
    // that redo applies to the page it reads back from the file.
    db.checkpoint().unwrap();
    commit(10);
    let disk = sim.crash();
    drop(db);
    let sim = Arc::new(SimIo::from_disk(disk.clone(), SimConfig::seeded(12)));
    sim.add_fault(
        FaultRule::always(Fault::Eio)
            .on_op(OpKind::Read)
            .on_class(FileClass::Data),
    );
    let e = common::open_sim(&sim, config()).map(drop).unwrap_err();
    let text = e.to_string();
    // An I/O error stays one: fatal, not corruption, and not blamed on
    // the log.
    assert_eq!(e.class(), ErrorClass::Fatal, "{text}");
    assert!(!text.contains("no page image"), "{text}");
    // The device's error is in the source chain, with the OS error kept.
    let chain = sources(&e);
    let eio = chain
        .iter()
        .find_map(|s| s.downcast_ref::<keel_io::IoError>())
        .unwrap_or_else(|| panic!("no I/O error among the sources of: {text}"));
    assert!(matches!(eio, keel_io::IoError::Io { .. }), "{eio}");
    assert_eq!(eio.op(), Some(OpKind::Read), "{eio}");
    assert!(eio.raw_os_error().is_some(), "{eio}");
    // The message names the record redo was running and its page.
    let named = common::log_records(&disk).iter().any(|r| {
        let h = &r.header;
        match (h.relation, h.page) {
            (Some(r), Some(p)) => {
                text.contains(&format!("at {} ", h.lsn))
                    && text.contains(&format!("page {p} of relation {r}"))
            }
            _ => false,
        }
    });
    assert!(named, "names no record's LSN and page: {text}");
    // The error says where, and keeps the buffer pool's read error whole.
    let Error::Db(DbError::RecoveryStep {
        relation: Some(_),
        page: Some(page),
        source,
        ..
    }) = &e
    else {
        panic!("expected a recovery step error, got {text}");
    };
    assert!(
        matches!(
            source.error(),
            Error::Buffer(BufferError::Io { page: p, op: "read", .. }) if p == page
        ),
        "{text}: {}",
        source.error()
    );
}

#[test]
fn an_io_error_in_a_running_rollback_is_a_rollback_error_that_poisons() {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(13)));
    let db = common::open_sim(&sim, common::small_config(8)).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    // Far more pages than frames: the oldest changes are evicted, and
    // undoing them reads their pages back.
    for i in 0..80u8 {
        tx.insert(rel, &[i; 1800]).unwrap();
    }
    sim.add_fault(
        FaultRule::always(Fault::Eio)
            .on_op(OpKind::Read)
            .on_class(FileClass::Data),
    );
    let e = tx.abort().unwrap_err();
    let cause = common::poison_cause(&e, "abort");
    let Error::Db(DbError::Rollback {
        relation, source, ..
    }) = cause.error()
    else {
        panic!("expected a rollback error as the cause, got {cause}");
    };
    assert_eq!(*relation, rel, "{cause}");
    assert_eq!(cause.error().class(), ErrorClass::Fatal, "{cause}");
    assert!(
        matches!(source.error(), Error::Buffer(BufferError::Io { .. })),
        "{cause}"
    );
    assert!(
        sources(cause.error())
            .iter()
            .any(|s| s.downcast_ref::<keel_io::IoError>().is_some())
    );
    assert!(db.begin().is_err(), "a failed rollback poisons");
    sim.clear_faults();
    drop(db);
}

/// The checkpoint that ends recovery cannot make its pages durable: the
/// writeback it starts fails (a sync failure, which drops pages; EIO; a
/// full disk), or its fdatasync does (each of these too: Linux drops the
/// pages it could not write, whatever it reports). The open fails naming the failure,
/// and the control file is not moved past the log it would need; after a
/// power cut, the next open recovers every acknowledged commit, heap rows
/// and tree keys.
#[test]
fn a_failed_sync_in_the_checkpoint_that_ends_recovery_fails_the_open_and_loses_nothing() {
    let cases = [
        (Fault::SyncFailure, OpKind::Writeback),
        (Fault::Eio, OpKind::Writeback),
        (Fault::NoSpace, OpKind::Writeback),
        (Fault::SyncFailure, OpKind::Fdatasync),
        (Fault::Eio, OpKind::Fdatasync),
        (Fault::NoSpace, OpKind::Fdatasync),
    ];
    for (n, (fault, op)) in cases.into_iter().enumerate() {
        let seed = 90 + 10 * n as u64;
        let what = format!("{fault:?} on {}", op.name());
        let sim = Arc::new(SimIo::new(SimConfig::seeded(seed)));
        let db = common::open_sim(&sim, config()).unwrap();
        let rel = db.create_relation("t").unwrap();
        let tree = db.create_tree("k").unwrap();
        db.checkpoint().unwrap();
        let mut acked = Vec::new();
        for i in 0..300u32 {
            let mut tx = db.begin().unwrap();
            let tid = tx.insert(rel, &[i as u8; 300]).unwrap();
            tx.put(tree, &i.to_be_bytes(), &[i as u8; 100]).unwrap();
            tx.commit().unwrap();
            acked.push((tid, i));
        }
        let disk = sim.crash();
        drop(db);

        let sim = common::reboot(disk, seed + 1);
        sim.add_fault(FaultRule::always(fault).on_op(op).on_class(FileClass::Data));
        let e = match common::open_sim(&sim, config()) {
            Ok(_) => panic!("{what}: the open succeeded though its checkpoint could not sync"),
            Err(e) => e,
        };
        assert_eq!(e.class(), ErrorClass::Fatal, "{what}: {e}");
        assert!(
            sim.stats().count(op) > 0,
            "{what}: the recovery checkpoint never reached a {}",
            op.name()
        );
        let disk = sim.crash();

        let sim = common::reboot(disk, seed + 2);
        let db = common::open_sim(&sim, config())
            .unwrap_or_else(|e| panic!("{what}: the open after the power cut failed: {e}"));
        let tx = db.begin().unwrap();
        for (tid, i) in &acked {
            let v = [*i as u8; 300];
            assert_eq!(
                tx.get(rel, *tid).unwrap().as_deref(),
                Some(&v[..]),
                "{what}: row {i}"
            );
            let k = tx.get_key(tree, &i.to_be_bytes()).unwrap();
            assert_eq!(k.as_deref(), Some(&[*i as u8; 100][..]), "{what}: key {i}");
        }
        drop(tx);
        db.close().unwrap();
    }
}
