#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A checkpoint writes the free space map file of a relation only when
//! its map changed since it was last saved, and the files it leaves alone
//! still describe their relations exactly: after a clean close, every
//! relation reopens with the map it had.

use std::sync::Arc;

use keel::fsm::Categories;
use keel::{Database, PageId, RelationId};
use keel_io::sim::{SimConfig, SimIo};

mod common;

const RELATIONS: usize = 40;

fn maps(db: &Database, names: &[String]) -> Vec<Vec<(PageId, Categories)>> {
    names.iter().map(|n| db.fsm_snapshot(n).unwrap()).collect()
}

fn insert(db: &Database, rel: RelationId, len: usize) {
    let mut tx = db.begin().unwrap();
    tx.insert(rel, &vec![7u8; len]).unwrap();
    tx.commit().unwrap();
}

#[test]
fn a_checkpoint_writes_only_the_maps_that_changed() {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(5)));
    let db = common::open_sim(&sim, common::small_config(64)).unwrap();
    let names: Vec<String> = (0..RELATIONS).map(|i| format!("r{i}")).collect();
    let rels: Vec<RelationId> = names
        .iter()
        .map(|n| db.create_relation(n).unwrap())
        .collect();
    for &rel in &rels {
        insert(&db, rel, 100);
    }
    let first = db.checkpoint().unwrap();
    assert!(
        first.fsm_files_written >= RELATIONS,
        "the first checkpoint wrote {} FSM files for {RELATIONS} changed relations",
        first.fsm_files_written
    );

    let before = sim.op_count();
    let idle = db.checkpoint().unwrap();
    let idle_ops = sim.op_count() - before;
    assert_eq!(
        idle.fsm_files_written, 0,
        "a checkpoint with no change wrote {} FSM files ({idle_ops} I/O operations)",
        idle.fsm_files_written
    );
    // Its I/O does not grow with the number of relations.
    assert!(
        idle_ops < 40,
        "an idle checkpoint with {RELATIONS} relations took {idle_ops} I/O operations"
    );

    // One relation gains a page, another a tuple on its page.
    insert(&db, rels[3], 6000);
    insert(&db, rels[3], 6000);
    insert(&db, rels[17], 50);
    let changed = db.checkpoint().unwrap();
    assert_eq!(
        changed.fsm_files_written, 2,
        "two relations' maps changed since the last checkpoint"
    );
    assert_eq!(db.checkpoint().unwrap().fsm_files_written, 0);

    // Files written at different checkpoints, and those skipped, load back
    // as the maps the relations have now.
    let want = maps(&db, &names);
    db.close().unwrap();
    let disk = sim.crash();
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(6)));
    let db = common::open_sim(&sim, common::small_config(64)).unwrap();
    assert!(db.recovery_report().clean_shutdown);
    assert_eq!(maps(&db, &names), want);
    // A reopened database whose maps all loaded writes none of them again.
    assert_eq!(db.checkpoint().unwrap().fsm_files_written, 0);
    db.close().unwrap();
}

#[test]
fn after_a_crash_the_maps_recovery_changed_are_written_again() {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(7)));
    let db = common::open_sim(&sim, common::small_config(64)).unwrap();
    let names: Vec<String> = (0..3).map(|i| format!("r{i}")).collect();
    let rels: Vec<RelationId> = names
        .iter()
        .map(|n| db.create_relation(n).unwrap())
        .collect();
    for &rel in &rels {
        insert(&db, rel, 100);
    }
    db.checkpoint().unwrap();
    // After the checkpoint only relation 1 changes; then a power cut.
    for _ in 0..3 {
        insert(&db, rels[1], 5000);
    }
    let want = maps(&db, &names);
    let disk = sim.crash();
    drop(db);
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(8)));
    let db = common::open_sim(&sim, common::small_config(64)).unwrap();
    assert!(!db.recovery_report().clean_shutdown);
    assert_eq!(maps(&db, &names), want);
    // Recovery's checkpoint saved relation 1's refreshed map: a clean
    // close and reopen load it, no page of the relation read again.
    let next = db.checkpoint().unwrap();
    assert_eq!(
        next.fsm_files_written, 0,
        "recovery's checkpoint saved them"
    );
    db.close().unwrap();
    let disk = sim.crash();
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(9)));
    let db = common::open_sim(&sim, common::small_config(64)).unwrap();
    assert_eq!(maps(&db, &names), want);
    db.close().unwrap();
}
