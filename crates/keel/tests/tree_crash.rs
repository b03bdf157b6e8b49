#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Power cuts at every I/O operation of a tree's structure changes, on the
//! simulated disk: a leaf split, a root split, a split that climbs three
//! levels and splits the root above them, the reclaim of leaves
//! emptied by committed deletes, and a bulk load whose own later puts
//! split the root it loaded, rolled back (recovery undoing it when the cut
//! comes first) or committed. Each step runs from the same durable
//! starting state with a buffer pool small enough that the step itself
//! evicts (so the log is flushed and pages written in its middle), then a
//! checkpoint; the power is cut at operation N of the step, for every N
//! until the step runs through. After each recovery the tree is
//! consistent (`common::tree::check_tree`: the leaf chain sorted, both
//! walks equal, every key found by descent) and holds the state before the
//! step or, once its commit was acknowledged, after it (either, when the
//! commit itself was cut), and no page leaked: the structural check
//! (`keel check`'s, [`keel::page::tree::check`]) finds nothing, not even a
//! page no downlink or right link reaches. More changes then commit on the
//! recovered tree and it is checked again.
//!
//! A test leaves a split incomplete on purpose: the log is cut right
//! after the split's record (the left half flagged `INCOMPLETE_SPLIT`), so recovery
//! rebuilds a leaf whose right half has no downlink; readers reach it by
//! the right link, and the next insert into the leaf finishes the split.

use std::sync::Arc;

use keel::page::tree::TreePage;
use keel::wal::Payload;
use keel::{Config, Database, PageId, RelationId};
use keel_io::sim::{Fault, FaultRule, SimConfig, SimDisk, SimIo};

mod common;

use common::tree::{TreeModel, check_tree};

const SEGMENT_BYTES: u32 = 1 << 20;

fn config(frames: usize) -> Config {
    let mut c = common::small_config(frames);
    c.wal.segment_size_bytes = SEGMENT_BYTES;
    c
}

/// Keys from this one up are 1,000 bytes long: a few fit a node, so a few
/// hundred of them make a tree of four levels whose inner nodes empty
/// when a range of keys is deleted.
const WIDE: u32 = 1_000_000;

fn key(i: u32) -> Vec<u8> {
    if i >= WIDE {
        let mut k = format!("wide{i:07}").into_bytes();
        k.resize(1000, b'.');
        return k;
    }
    format!("key{i:05}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    vec![i as u8; 150]
}

/// A durable disk holding tree "t" with keys `keys` (one transaction per
/// 100), after a clean close; and the model.
fn start(keys: impl Iterator<Item = u32>) -> (SimDisk, TreeModel) {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(1)));
    let db = common::open_sim(&sim, config(64)).unwrap();
    let tree = db.create_tree("t").unwrap();
    let mut model = TreeModel::new();
    let keys: Vec<u32> = keys.collect();
    for chunk in keys.chunks(100) {
        let mut tx = db.begin().unwrap();
        for &i in chunk {
            tx.put(tree, &key(i), &value(i)).unwrap();
            model.insert(key(i), value(i));
        }
        tx.commit().unwrap();
    }
    db.close().unwrap();
    (sim.crash(), model)
}

/// Puts `keys` in one transaction and commits; `Ok(true)` once the commit
/// was acknowledged, `Ok(false)` when the commit itself failed.
fn put_all(db: &Database, tree: RelationId, keys: &[u32], model: &mut TreeModel) -> Step {
    let Ok(mut tx) = db.begin() else {
        return Step::Before;
    };
    for &i in keys {
        if tx.put(tree, &key(i), &value(i + 1)).is_err() {
            return Step::Before;
        }
        model.insert(key(i), value(i + 1));
    }
    commit(tx)
}

fn delete_all(db: &Database, tree: RelationId, keys: &[u32], model: &mut TreeModel) -> Step {
    let Ok(mut tx) = db.begin() else {
        return Step::Before;
    };
    for &i in keys {
        if tx.delete_key(tree, &key(i)).is_err() {
            return Step::Before;
        }
        model.remove(&key(i));
    }
    commit(tx)
}

/// How far a step got before the cut.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// The power failed before the commit.
    Before,
    /// The commit failed: it may or may not be durable.
    InCommit,
    Acked,
}

fn commit(tx: keel::Transaction<'_>) -> Step {
    match tx.commit() {
        Ok(()) => Step::Acked,
        Err(_) => Step::InCommit,
    }
}

/// The tree's pages, and how many of them are free.
fn pages(db: &Database) -> (u32, usize) {
    let n = common::page_count(db, "t");
    (
        n,
        common::pages_of_type(db, "t", keel::page::PageType::Free),
    )
}

/// The structural check of tree "t" (`keel check`'s) finds nothing:
/// every page of the file is a node the tree reaches, a free page or an
/// overflow page; a page that nothing reaches is a leak.
fn no_leaks(db: &Database) -> Result<(), String> {
    structure_problems(db, |_| true)
}

/// The structural check of tree "t" finds no error; pages nothing
/// reaches are allowed: a bulk load cut short by a crash before its root
/// swap leaves the nodes it built so (`btree::bulk` module docs).
fn no_errors(db: &Database) -> Result<(), String> {
    structure_problems(db, |p| {
        p.kind != keel::page::tree::check::ProblemKind::Unreachable
    })
}

/// The structural check's findings of tree "t" that `counts`.
fn structure_problems(
    db: &Database,
    counts: impl Fn(&keel::page::tree::check::TreeProblem) -> bool,
) -> Result<(), String> {
    let n = common::page_count(db, "t");
    let mut read = |id: PageId| {
        db.read_page("t", id)
            .map_err(|e| keel::page::PageError::Corrupted {
                page_id: id,
                offset: 0,
                reason: e.to_string(),
            })
    };
    let report = keel::page::tree::check::check_tree(n, &mut read);
    let found: Vec<String> = report
        .problems
        .iter()
        .filter(|p| counts(p))
        .map(|p| format!("{p}"))
        .collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(found.join("; "))
    }
}

type Run = fn(&Database, RelationId, &mut TreeModel) -> Step;

/// Runs `step` from `disk` with the power cut at each of its I/O
/// operations in turn (module docs); `then` is committed after each
/// recovery, and `structure` checks the tree after each recovery and
/// after that work. Returns the step's page counts (before, after) in a
/// run without a cut, and how many cut points were tried.
fn cut_everywhere(
    name: &str,
    disk: &SimDisk,
    model: &TreeModel,
    frames: usize,
    step: Run,
    then: Run,
    structure: fn(&Database) -> Result<(), String>,
) -> ((u32, usize), (u32, usize), u64) {
    let mut n = 0;
    loop {
        let sim = common::reboot(disk.clone(), 7);
        let db = common::open_sim(&sim, config(frames)).unwrap();
        let tree = db.tree("t").unwrap().unwrap();
        let before_pages = pages(&db);
        let at = sim.op_count() + n;
        sim.add_fault(FaultRule::at_op(at, Fault::PowerCut));
        let mut after = model.clone();
        let got = step(&db, tree, &mut after);
        if got == Step::Acked {
            // The checkpoint writes the step's pages: cut points too.
            db.checkpoint().ok();
        }
        if !sim.is_halted() {
            // The step ran through before operation N.
            sim.clear_faults();
            assert!(
                !db.is_poisoned(),
                "{name}: the step failed with no fault injected"
            );
            let after_pages = pages(&db);
            db.close().unwrap();
            return (before_pages, after_pages, n);
        }
        let disk = sim.crash();
        drop(db);
        let sim = common::reboot(disk, 100 + n);
        let db = common::open_sim(&sim, config(frames))
            .unwrap_or_else(|e| panic!("{name}, cut at {n}: recovery failed: {e}"));
        let tree = db.tree("t").unwrap().unwrap();
        let mut now = match got {
            Step::Acked => after.clone(),
            Step::Before => model.clone(),
            Step::InCommit => {
                if check_tree(&db, tree, model).is_ok() {
                    model.clone()
                } else {
                    after.clone()
                }
            }
        };
        check_tree(&db, tree, &now).unwrap_or_else(|e| panic!("{name}, cut at {n} ({got:?}): {e}"));
        structure(&db).unwrap_or_else(|e| panic!("{name}, cut at {n} ({got:?}): {e}"));
        assert_eq!(then(&db, tree, &mut now), Step::Acked, "{name}, cut at {n}");
        check_tree(&db, tree, &now)
            .unwrap_or_else(|e| panic!("{name}, cut at {n}, after more work: {e}"));
        structure(&db).unwrap_or_else(|e| panic!("{name}, cut at {n}, after more work: {e}"));
        db.close().unwrap();
        n += 1;
    }
}

#[test]
fn a_power_cut_at_every_io_of_a_leaf_split_keeps_the_tree_whole() {
    // Leaves half full (ascending inserts split them in the middle), the
    // keys between theirs free.
    let (disk, model) = start((0..1200).step_by(2));
    let odd: Run = |db, tree, m| put_all(db, tree, &(1..200).step_by(2).collect::<Vec<_>>(), m);
    let more: Run = |db, tree, m| put_all(db, tree, &(201..260).step_by(2).collect::<Vec<_>>(), m);
    let (before, after, cuts) =
        cut_everywhere("leaf split", &disk, &model, 12, odd, more, no_leaks);
    assert!(
        after.0 > before.0,
        "the step split no leaf: {before:?} {after:?}"
    );
    assert!(cuts >= 10, "only {cuts} I/O operations in the step");
    eprintln!("leaf split: {cuts} cut points, pages {before:?} -> {after:?}");
}

#[test]
fn a_power_cut_at_every_io_of_a_root_split_keeps_the_tree_whole() {
    // One leaf, the root, nearly full.
    let (disk, model) = start(0..45);
    let split: Run = |db, tree, m| put_all(db, tree, &(100..110).collect::<Vec<_>>(), m);
    let more: Run = |db, tree, m| put_all(db, tree, &(200..300).collect::<Vec<_>>(), m);
    let (before, after, cuts) =
        cut_everywhere("root split", &disk, &model, 12, split, more, no_leaks);
    assert_eq!(before.0, 2, "a meta page and a root leaf");
    assert_eq!(
        after.0, 4,
        "the root split into two leaves under a new root"
    );
    assert!(cuts >= 5, "only {cuts} I/O operations in the step");
    eprintln!("root split: {cuts} cut points, pages {before:?} -> {after:?}");
}

/// Ascending 1,000-byte keys: the 133rd splits a leaf, its parent and the
/// root of three levels (a tree of four levels after it, `WIDE`'s notes).
const UP_THREE: u32 = 130;

fn up_three(db: &Database, tree: RelationId, m: &mut TreeModel) -> Step {
    let keys: Vec<u32> = (WIDE + UP_THREE..WIDE + UP_THREE + 6).collect();
    put_all(db, tree, &keys, m)
}

/// More ascending keys after [`up_three`]: the 208th splits a leaf, its
/// parent and the parent's parent, below the new root.
fn up_three_more(db: &Database, tree: RelationId, m: &mut TreeModel) -> Step {
    let keys: Vec<u32> = (WIDE + UP_THREE + 6..WIDE + 220).collect();
    put_all(db, tree, &keys, m)
}

/// [`up_three`] from its starting state grows the tree from three levels
/// to four.
fn assert_three_levels_up(model: &TreeModel) {
    let (disk, _) = start(WIDE..WIDE + UP_THREE);
    let sim = common::reboot(disk, 2);
    let db = common::open_sim(&sim, config(POOL)).unwrap();
    let tree = db.tree("t").unwrap().unwrap();
    let before = common::nodes_per_level(&db, "t");
    assert_eq!(up_three(&db, tree, &mut model.clone()), Step::Acked);
    let after = common::nodes_per_level(&db, "t");
    db.close().unwrap();
    assert_eq!(
        (before.len(), after.len()),
        (3, 4),
        "{before:?} -> {after:?}"
    );
}

#[test]
fn a_power_cut_at_every_io_of_a_split_up_three_levels_keeps_the_tree_whole() {
    let (disk, model) = start(WIDE..WIDE + UP_THREE);
    let (before, after, cuts) = cut_everywhere(
        "split up three levels",
        &disk,
        &model,
        12,
        up_three,
        up_three_more,
        no_leaks,
    );
    assert_three_levels_up(&model);
    assert!(after.0 > before.0, "{before:?} {after:?}");
    assert!(cuts >= 10, "only {cuts} I/O operations in the step");
    eprintln!("split up three levels: {cuts} cut points, pages {before:?} -> {after:?}");
}

#[test]
fn a_power_cut_at_every_io_of_a_leaf_reclaim_keeps_the_tree_whole() {
    let (disk, model) = start(0..800);
    // Empties whole leaves in the middle of the tree.
    let clear: Run = |db, tree, m| delete_all(db, tree, &(200..500).collect::<Vec<_>>(), m);
    // Refills them: the splits reuse the reclaimed pages.
    let refill: Run = |db, tree, m| put_all(db, tree, &(200..500).collect::<Vec<_>>(), m);
    let (before, after, cuts) =
        cut_everywhere("reclaim", &disk, &model, 12, clear, refill, no_leaks);
    assert_eq!(before.1, 0, "free pages before the deletes");
    assert!(after.1 >= 2, "the deletes reclaimed {} leaves", after.1);
    assert!(cuts >= 5, "only {cuts} I/O operations in the step");
    eprintln!("reclaim: {cuts} cut points, pages {before:?} -> {after:?}");
}

/// Bulk loads `LOADED` keys into the empty tree (one root leaf), then puts
/// `SPLITTING` more in the same transaction, which split that root under
/// a new one; `commit_it` decides how the transaction ends.
fn bulk_then_split(db: &Database, tree: RelationId, m: &mut TreeModel, commit_it: bool) -> Step {
    let Ok(mut tx) = db.begin() else {
        return Step::Before;
    };
    let mut after = m.clone();
    let loaded: Vec<(Vec<u8>, Vec<u8>)> = LOADED.map(|i| (key(i), value(i))).collect();
    if tx.bulk_load(tree, loaded.iter().cloned()).is_err() {
        return Step::Before;
    }
    after.extend(loaded);
    for i in SPLITTING {
        if tx.put(tree, &key(i), &value(i)).is_err() {
            return Step::Before;
        }
        after.insert(key(i), value(i));
    }
    if commit_it {
        // What the tree holds once the commit is durable (a commit the cut
        // leaves in doubt may be either; `cut_everywhere` checks both).
        *m = after;
        return commit(tx);
    }
    // A failed rollback poisons the database (`cut_everywhere`
    // refuses that in a run with no cut). Another tree's creation (a
    // durable commit) makes the rollback's records durable.
    if tx.abort().is_ok() {
        let _ = db.create_tree("flush");
    }
    Step::Before
}

const LOADED: std::ops::Range<u32> = 0..30;
/// Enough puts to split the loaded root and to evict pages of the
/// transaction from the small pool (so its log reaches the disk before
/// it ends).
const SPLITTING: std::ops::Range<u32> = 100..700;

/// Runs `step` (a bulk load into the empty tree, then its splitting
/// puts) under a power cut at each of its I/O operations, then more puts
/// after each recovery (`cut_everywhere`); returns its page counts
/// (before, after) in the run without a cut.
fn bulk_cut_everywhere(name: &str, step: Run) -> ((u32, usize), (u32, usize)) {
    let (disk, model) = start(std::iter::empty());
    let more: Run = |db, tree, m| put_all(db, tree, &(300..340).collect::<Vec<_>>(), m);
    let (before, after, cuts) = cut_everywhere(name, &disk, &model, 12, step, more, no_errors);
    assert!(cuts >= 10, "{name}: only {cuts} I/O operations in the step");
    eprintln!("{name}: {cuts} cut points, pages {before:?} -> {after:?}");
    (before, after)
}

/// A bulk load rolled back after its own puts split the loaded root: the
/// rollback names the root the meta page holds now, and frees every node
/// under it. Cut at every I/O operation, then recovered (which undoes the
/// load when the cut came before the rollback's end).
#[test]
fn a_power_cut_at_every_io_of_a_bulk_load_rolled_back_after_its_root_split() {
    let step: Run = |db, tree, m| bulk_then_split(db, tree, m, false);
    let (before, after) = bulk_cut_everywhere("bulk rolled back", step);
    assert_eq!(before.0, 2, "a meta page and an empty root leaf");
    assert!(
        after.1 >= 3,
        "the rollback freed the loaded root and its splits: {after:?}"
    );
}

/// The same transaction committed: cut at every I/O operation, the tree
/// holds nothing of it or all of it.
#[test]
fn a_power_cut_at_every_io_of_a_bulk_load_whose_root_split_commits() {
    let step: Run = |db, tree, m| bulk_then_split(db, tree, m, true);
    let (_, after) = bulk_cut_everywhere("bulk committed", step);
    assert!(after.0 >= 5, "the loaded root split: {after:?}");
}

/// The log of `disk` cut at `end` (`common::cut_log`).
fn cut_log(disk: SimDisk, end: keel::Lsn) -> SimDisk {
    common::cut_log(disk, SEGMENT_BYTES, end)
}

/// A root leaf split by a transaction of one put, and the log cut right
/// after the split's record (the right half and the left's truncation):
/// the disk, the model of what stays committed, and the tree.
fn cut_root_split() -> (SimDisk, TreeModel, RelationId) {
    let (disk, mut model) = start(0..45);
    let sim = common::reboot(disk, 2);
    let db = common::open_sim(&sim, config(64)).unwrap();
    let tree = db.tree("t").unwrap().unwrap();
    // One put per transaction until one splits the root: that transaction
    // logs nothing before the split's record, so the cut below leaves the
    // open no insert of it to undo (an undo is a writer, and a writer
    // that meets the flagged leaf finishes its split). The transactions
    // before it stay committed.
    let mut split = model.clone();
    for i in 100..110 {
        let before = split.clone();
        assert_eq!(put_all(&db, tree, &[i], &mut split), Step::Acked);
        if pages(&db).0 == 4 {
            model = before;
            break;
        }
    }
    assert_eq!(pages(&db).0, 4, "the root split");
    let disk = sim.crash();
    drop(db);

    // The split's record: the right half and the left's truncation, on
    // page 1 of the tree (the leaf changed since the open's checkpoint).
    let left = common::log_records(&disk)
        .into_iter()
        .find(|r| {
            r.header.relation == Some(tree)
                && r.header.page == Some(PageId(1))
                && matches!(
                    Payload::decode_record(&r.header, &r.payload),
                    Ok(Payload::TreeSplit { right, .. }) if right != PageId(1)
                )
        })
        .expect("the split logs both halves in one tree-split record");
    (cut_log(disk, left.end()), model, tree)
}

#[test]
fn a_split_cut_after_its_left_half_is_finished_by_the_next_insert() {
    let (disk, mut model, tree) = cut_root_split();
    let sim = common::reboot(disk, 3);
    let db = common::open_sim(&sim, config(64)).unwrap();
    let page = db.read_page("t", PageId(1)).unwrap();
    let leaf = TreePage::open(&page[..], PageId(1)).unwrap();
    assert!(
        leaf.incomplete_split(),
        "recovery rebuilt the flagged left half"
    );
    let right = leaf.right_link().unwrap();
    // Readers reach the right half through the right link.
    check_tree(&db, tree, &model).unwrap();
    // The next insert into the leaf finishes the split: a new root holds
    // both halves' downlinks.
    assert_eq!(put_all(&db, tree, &[0], &mut model), Step::Acked);
    let page = db.read_page("t", PageId(1)).unwrap();
    assert!(
        !TreePage::open(&page[..], PageId(1))
            .unwrap()
            .incomplete_split()
    );
    assert_eq!(pages(&db).0, 4, "a new root beside the two halves");
    let root = db.read_page("t", PageId(3)).unwrap();
    let root = TreePage::open(&root[..], PageId(3)).unwrap();
    assert_eq!(root.level(), 1);
    assert_eq!(
        (root.child(0).unwrap(), root.child(1).unwrap()),
        (PageId(1), right)
    );
    check_tree(&db, tree, &model).unwrap();
    db.close().unwrap();
    let sim = common::reboot(sim.crash(), 4);
    let db = common::open_sim(&sim, config(64)).unwrap();
    check_tree(&db, tree, &model).unwrap();
    db.close().unwrap();
}

/// A writer that starts left of a split cut before its downlink (the
/// root hint still names the left half as the root) finishes that split
/// before it moves right, so inserts that split the right half in turn
/// find a parent for its downlink.
#[test]
fn writers_right_of_a_cut_root_split_finish_it_and_split_the_right_half() {
    let (disk, mut model, tree) = cut_root_split();
    let sim = common::reboot(disk, 3);
    let db = common::open_sim(&sim, config(64)).unwrap();
    // Enough keys right of the split to split the right half twice.
    assert_eq!(
        put_all(&db, tree, &(200..300).collect::<Vec<_>>(), &mut model),
        Step::Acked
    );
    let page = db.read_page("t", PageId(1)).unwrap();
    assert!(
        !TreePage::open(&page[..], PageId(1))
            .unwrap()
            .incomplete_split()
    );
    assert!(pages(&db).0 >= 6, "the right half split");
    check_tree(&db, tree, &model).unwrap();
    db.close().unwrap();
    let sim = common::reboot(sim.crash(), 4);
    let db = common::open_sim(&sim, config(64)).unwrap();
    check_tree(&db, tree, &model).unwrap();
    db.close().unwrap();
}

/// The log of `disk` cut at `end`, later segments too
/// (`common::cut_log_all`).
fn cut_log_all(disk: SimDisk, end: keel::Lsn) -> SimDisk {
    common::cut_log_all(disk, SEGMENT_BYTES, end)
}

/// Frames of the pool [`cut_after_every_record`] runs with: more than any
/// of its trees has pages, so no page is written before the crash and the
/// data files are the starting state's.
const POOL: usize = 256;

/// Runs `step` from `disk` to its acknowledged commit, then, for every
/// record the step logged, recovers from the log cut right after that
/// record (as a crash that made the log durable only that far leaves it):
/// the tree holds the state before the step or after it, and no page
/// leaked. A structure change logged as several records would leave a
/// page formatted and linked from nowhere when cut between them. Returns
/// how many cuts were tried and the step's page counts (all, free).
fn cut_after_every_record(
    name: &str,
    disk: SimDisk,
    model: &TreeModel,
    step: Run,
) -> (usize, (u32, usize)) {
    let sim = common::reboot(disk, 2);
    let db = common::open_sim(&sim, config(POOL)).unwrap();
    let tree = db.tree("t").unwrap().unwrap();
    let mut after = model.clone();
    assert_eq!(step(&db, tree, &mut after), Step::Acked, "{name}");
    let pages_after = pages(&db);
    let disk = sim.crash();
    drop(db);
    // The step's records: those after the checkpoint of the open.
    let all = common::log_records(&disk);
    let opened = all
        .iter()
        .rposition(|r| r.header.kind == keel::wal::RecordType::CheckpointEnd)
        .unwrap();
    let records = &all[opened + 1..];
    assert!(
        records
            .iter()
            .any(|r| r.header.kind == keel::wal::RecordType::TreeSplit)
            || !name.contains("split"),
        "{name}: no split logged as a tree-split"
    );
    for (i, r) in records.iter().enumerate() {
        let sim = common::reboot(cut_log_all(disk.clone(), r.end()), 10 + i as u64);
        let db = common::open_sim(&sim, config(POOL))
            .unwrap_or_else(|e| panic!("{name}, cut after record {i}: recovery failed: {e}"));
        let tree = db.tree("t").unwrap().unwrap();
        check_tree(&db, tree, model)
            .or_else(|_| check_tree(&db, tree, &after))
            .unwrap_or_else(|e| panic!("{name}, cut after record {i} ({:?}): {e}", r.header.kind));
        no_leaks(&db)
            .unwrap_or_else(|e| panic!("{name}, cut after record {i} ({:?}): {e}", r.header.kind));
        db.close().unwrap();
    }
    (records.len(), pages_after)
}

#[test]
fn a_log_cut_after_any_record_of_a_root_split_leaks_no_page() {
    let (disk, model) = start(0..45);
    let split: Run = |db, tree, m| put_all(db, tree, &(100..110).collect::<Vec<_>>(), m);
    let (n, pages) = cut_after_every_record("root split", disk, &model, split);
    assert_eq!(pages.0, 4, "the root split");
    assert!(n >= 5, "only {n} records in the step");
}

#[test]
fn a_log_cut_after_any_record_of_leaf_splits_leaks_no_page() {
    let (disk, model) = start((0..1200).step_by(2));
    let odd: Run = |db, tree, m| put_all(db, tree, &(1..200).step_by(2).collect::<Vec<_>>(), m);
    let (n, _) = cut_after_every_record("leaf splits", disk, &model, odd);
    assert!(n >= 50, "only {n} records in the step");
}

#[test]
fn a_log_cut_after_any_record_of_a_split_up_three_levels_leaks_no_page() {
    let (disk, model) = start(WIDE..WIDE + UP_THREE);
    let (n, pages) = cut_after_every_record("split up three levels", disk, &model, up_three);
    assert_three_levels_up(&model);
    assert!(n >= 8, "only {n} records in the step ({pages:?})");
}

#[test]
fn a_log_cut_after_any_record_of_a_leaf_reclaim_leaks_no_page() {
    let (disk, model) = start(0..800);
    // The reclaims are logged after the commit; another tree's creation
    // (a durable commit) makes their records durable before the crash.
    let clear: Run = |db, tree, m| {
        let step = delete_all(db, tree, &(200..500).collect::<Vec<_>>(), m);
        db.create_tree("flush").unwrap();
        step
    };
    let (n, pages) = cut_after_every_record("reclaim", disk, &model, clear);
    assert!(pages.1 >= 2, "the deletes reclaimed {} leaves", pages.1);
    assert!(n >= 50, "only {n} records in the step");
}

/// Deletes wide keys `range` in one transaction, then makes the reclaims
/// durable (another tree's creation commits durably).
fn delete_wide(
    db: &Database,
    tree: RelationId,
    range: std::ops::Range<u32>,
    m: &mut TreeModel,
) -> Step {
    let step = delete_all(db, tree, &range.collect::<Vec<_>>(), m);
    db.create_tree("flush").unwrap();
    step
}

/// Inner nodes left with a single empty child are merged into a sibling
/// and the child removed; each of those steps is one record, so a cut
/// after any of them leaves a whole tree.
#[test]
fn a_log_cut_after_any_record_of_inner_node_merges_leaks_no_page() {
    let (disk, model) = start(WIDE..WIDE + 400);
    {
        let sim = common::reboot(disk.clone(), 3);
        let db = common::open_sim(&sim, config(64)).unwrap();
        let levels = common::nodes_per_level(&db, "t");
        assert!(
            levels.len() >= 3,
            "a tree of three levels or more: {levels:?}"
        );
        db.close().unwrap();
    }
    // The middle: merges left, and merges right whose left neighbour is
    // under another parent.
    let middle: Run = |db, tree, m| delete_wide(db, tree, WIDE + 100..WIDE + 300, m);
    // The left end: merges right of the leftmost nodes of each level.
    let left: Run = |db, tree, m| delete_wide(db, tree, WIDE..WIDE + 250, m);
    for (name, step) in [("middle", middle), ("left end", left)] {
        let sim = common::reboot(disk.clone(), 4);
        let db = common::open_sim(&sim, config(POOL)).unwrap();
        let before = common::nodes_per_level(&db, "t");
        let tree = db.tree("t").unwrap().unwrap();
        assert_eq!(step(&db, tree, &mut model.clone()), Step::Acked);
        let after = common::nodes_per_level(&db, "t");
        assert!(
            after[1] < before[1] && after[2] < before[2],
            "{name}: inner nodes per level {before:?} -> {after:?}"
        );
        db.close().unwrap();
        let (n, pages) = cut_after_every_record(name, disk.clone(), &model, step);
        assert!(n >= 20, "{name}: only {n} records in the step");
        assert!(
            pages.1 >= 40,
            "{name}: the deletes freed only {} pages",
            pages.1
        );
    }
}

#[test]
fn a_power_cut_at_every_io_of_inner_node_merges_keeps_the_tree_whole() {
    let (disk, model) = start(WIDE..WIDE + 200);
    let clear: Run =
        |db, tree, m| delete_all(db, tree, &(WIDE + 20..WIDE + 150).collect::<Vec<_>>(), m);
    let refill: Run =
        |db, tree, m| put_all(db, tree, &(WIDE + 20..WIDE + 150).collect::<Vec<_>>(), m);
    let (before, after, cuts) =
        cut_everywhere("inner merges", &disk, &model, 12, clear, refill, no_leaks);
    assert_eq!(before.1, 0, "free pages before the deletes");
    assert!(after.1 >= 45, "the deletes freed {} pages", after.1);
    assert!(cuts >= 5, "only {cuts} I/O operations in the step");
    eprintln!("inner merges: {cuts} cut points, pages {before:?} -> {after:?}");
}

#[test]
fn leaves_a_crash_left_empty_before_their_reclaim_are_reclaimed_by_the_next_open() {
    let (disk, model) = start(0..800);
    let sim = common::reboot(disk, 2);
    let db = common::open_sim(&sim, config(64)).unwrap();
    let tree = db.tree("t").unwrap().unwrap();
    let mut after = model.clone();
    let keys: Vec<u32> = (200..500).collect();
    assert_eq!(delete_all(&db, tree, &keys, &mut after), Step::Acked);
    let reclaimed = pages(&db).1;
    assert!(reclaimed >= 2, "the deletes reclaimed {reclaimed} leaves");
    db.create_tree("flush").unwrap();
    let disk = sim.crash();
    drop(db);
    // The log cut right before the first reclaim's record: the deleting
    // commit is durable, no reclaim is.
    let all = common::log_records(&disk);
    let opened = all
        .iter()
        .rposition(|r| r.header.kind == keel::wal::RecordType::CheckpointEnd)
        .unwrap();
    let first = all[opened..]
        .iter()
        .find(|r| r.header.kind == keel::wal::RecordType::MultiPageImage)
        .expect("a reclaim record");
    assert!(
        all[opened..]
            .iter()
            .take_while(|r| r.header.lsn < first.header.lsn)
            .any(|r| r.header.kind == keel::wal::RecordType::Commit),
        "the deleting commit comes before the first reclaim"
    );
    let sim = common::reboot(cut_log_all(disk, first.header.lsn), 5);
    let db = common::open_sim(&sim, config(64)).unwrap();
    check_tree(&db, tree, &after).unwrap();
    no_leaks(&db).unwrap();
    assert_eq!(
        pages(&db).1,
        reclaimed,
        "the open reclaimed the leaves the deletes emptied"
    );
    db.close().unwrap();
}

/// The records of tree "t" that `step`, run on `disk` reopened, logged
/// after the open's checkpoint, decoded, with their pages.
fn step_records(disk: &SimDisk, step: Run) -> Vec<(Option<PageId>, Payload)> {
    let sim = common::reboot(disk.clone(), 2);
    let db = common::open_sim(&sim, config(POOL)).unwrap();
    let tree = db.tree("t").unwrap().unwrap();
    assert_eq!(step(&db, tree, &mut TreeModel::new()), Step::Acked);
    let disk = sim.crash();
    drop(db);
    let all = common::log_records(&disk);
    let opened = all
        .iter()
        .rposition(|r| r.header.kind == keel::wal::RecordType::CheckpointEnd)
        .unwrap();
    all[opened + 1..]
        .iter()
        .filter(|r| r.header.relation == Some(tree))
        .map(|r| {
            (
                r.header.page,
                Payload::decode_record(&r.header, &r.payload).unwrap(),
            )
        })
        .collect()
}

/// A split logs the moved half and a truncation, whether its node changed
/// since the last checkpoint or not (a node that did not has its image
/// kept beside the log, `keel::page_images`, and the log holds no page
/// image). A log cut after any record of a step holding both kinds of
/// split leaves a whole tree.
#[test]
fn a_split_logs_the_moved_half_and_a_truncation_whatever_its_node_last_did() {
    let (disk, model) = start(0..45);
    // How many more keys the root leaf takes before it splits.
    let fit = {
        let sim = common::reboot(disk.clone(), 2);
        let db = common::open_sim(&sim, config(POOL)).unwrap();
        let tree = db.tree("t").unwrap().unwrap();
        let mut m = model.clone();
        let fit = (100..)
            .find(|&i| {
                assert_eq!(put_all(&db, tree, &[i], &mut m), Step::Acked);
                pages(&db).0 > 2
            })
            .unwrap();
        db.close().unwrap();
        fit
    };
    // The root leaf full at a checkpoint (the clean close's).
    let (disk, model) = {
        let sim = common::reboot(disk, 3);
        let db = common::open_sim(&sim, config(POOL)).unwrap();
        let tree = db.tree("t").unwrap().unwrap();
        let mut m = model;
        assert_eq!(
            put_all(&db, tree, &(100..fit).collect::<Vec<_>>(), &mut m),
            Step::Acked
        );
        assert_eq!(pages(&db).0, 2, "no split yet");
        db.close().unwrap();
        (sim.crash(), m)
    };
    // The first key splits the full leaf; the later ones split its right
    // half, changed since the checkpoint.
    let step: Run = |db, tree, m| put_all(db, tree, &(1000..1100).collect::<Vec<_>>(), m);
    let records = step_records(&disk, step);
    let first = records
        .iter()
        .position(|(p, _)| *p == Some(PageId(1)))
        .unwrap();
    match &records[first].1 {
        Payload::TreeSplit { right, image, .. } => {
            let half = TreePage::open(&image[..], *right).unwrap();
            assert!(half.is_leaf(), "the moved half is a leaf");
        }
        other => panic!("the full leaf's first change is not a tree-split: {other:?}"),
    }
    assert!(
        !records
            .iter()
            .any(|(_, p)| matches!(p, Payload::PageImage { .. })),
        "a step of puts and splits logs no page image"
    );
    let splits = records
        .iter()
        .filter(|(_, p)| matches!(p, Payload::TreeSplit { .. }))
        .count();
    assert!(splits >= 2, "{splits} tree-splits");
    let (n, pages) = cut_after_every_record("full leaf split", disk, &model, step);
    assert!(pages.0 >= 5, "{pages:?}");
    assert!(n >= 20, "only {n} records in the step");
}

/// Splits logged as tree-splits, then changes to both halves, then a
/// checkpoint cut by a power failure at each of its I/O operations in
/// turn: the data files hold any mix of halves older and newer than the
/// split, some torn. Recovery repairs a torn left half from its page image
/// before the truncation, skips the truncation of a left half already past
/// it (redo is idempotent by page LSN) and rebuilds the same tree.
#[test]
fn a_power_cut_at_every_io_of_a_checkpoint_after_tree_splits_keeps_the_tree_whole() {
    let (disk, model) = start((0..1200).step_by(2));
    // Splits leaves (odd keys between the even ones), then changes the
    // keys of both halves of each.
    let step: Run = |db, tree, m| {
        let odd: Vec<u32> = (1..200).step_by(2).collect();
        let all: Vec<u32> = (0..200).collect();
        match put_all(db, tree, &odd, m) {
            Step::Acked => put_all(db, tree, &all, m),
            other => other,
        }
    };
    let splits = step_records(&disk, step)
        .iter()
        .filter(|(_, p)| matches!(p, Payload::TreeSplit { .. }))
        .count();
    assert!(splits >= 3, "{splits} tree-splits");
    let mut n = 0;
    loop {
        let sim = common::reboot(disk.clone(), 7);
        let db = common::open_sim(&sim, config(POOL)).unwrap();
        let tree = db.tree("t").unwrap().unwrap();
        let mut after = model.clone();
        assert_eq!(step(&db, tree, &mut after), Step::Acked);
        sim.add_fault(FaultRule::at_op(sim.op_count() + n, Fault::PowerCut));
        let done = db.checkpoint().is_ok();
        if !sim.is_halted() {
            // The checkpoint ran through before operation N.
            assert!(done);
            sim.clear_faults();
            db.close().unwrap();
            break;
        }
        let disk = sim.crash();
        drop(db);
        let sim = common::reboot(disk, 100 + n);
        let db = common::open_sim(&sim, config(POOL))
            .unwrap_or_else(|e| panic!("checkpoint cut at {n}: recovery failed: {e}"));
        check_tree(&db, tree, &after).unwrap_or_else(|e| panic!("checkpoint cut at {n}: {e}"));
        no_leaks(&db).unwrap_or_else(|e| panic!("checkpoint cut at {n}: {e}"));
        let more: Vec<u32> = (201..300).step_by(2).collect();
        assert_eq!(put_all(&db, tree, &more, &mut after), Step::Acked);
        check_tree(&db, tree, &after)
            .unwrap_or_else(|e| panic!("checkpoint cut at {n}, after more work: {e}"));
        db.close().unwrap();
        n += 1;
    }
    assert!(n >= 5, "only {n} I/O operations in the checkpoint");
    eprintln!("checkpoint after {splits} tree-splits: {n} cut points");
}
