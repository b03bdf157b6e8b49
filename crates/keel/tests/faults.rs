#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Bad input and failing devices at the database level: a failed log sync
//! poisons the database (nothing more is acknowledged, reopening recovers),
//! a flipped bit in a data page or in the control file is a clear error
//! naming it, never a wrong answer.

use std::sync::Arc;

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
        let op = if fault == Fault::SyncFailure || fault == Fault::Eio {
            OpKind::Fdatasync
        } else {
            OpKind::Write
        };
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

#[test]
fn a_flipped_bit_in_a_data_page_is_an_error_naming_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    let tid = tx.insert(rel, b"precious").unwrap();
    tx.commit().unwrap();
    db.close().unwrap();
    let path = dir.path().join(format!("rel/{}.heap", rel.0));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8190] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let tx = db.begin().unwrap();
    let e = tx.get(rel, tid).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Corruption, "{e}");
    let text = format!("{e}");
    assert!(text.contains(&format!("page {}", PageId(0))), "{text}");
    drop(tx);
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
