//! A standby's redo (`keel::standby::apply_log`): a copy of a closed
//! primary, fed the primary's log as it grows, applies it with no undo and
//! no log of its own, moves its control file to each newer checkpoint (so
//! the next apply starts there, not at the copy), and, opened at last,
//! holds exactly the primary's committed rows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::path::Path;

use keel::standby::apply_log;
use keel::{Config, Database, RecoveryCheckpoint};

fn config() -> Config {
    Config {
        checkpoint_interval: None,
        checkpoint_wal_bytes: u64::MAX,
        recovery_checkpoint: RecoveryCheckpoint::BeforeOpenReturns,
        ..Config::default()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "LOCK" {
            continue;
        }
        match e.file_type().unwrap().is_dir() {
            true => copy_dir(&e.path(), &to.join(&name)),
            false => {
                std::fs::copy(e.path(), to.join(&name)).unwrap();
            }
        }
    }
}

/// Ships the primary's log: every segment file it has, over the standby's.
fn ship_log(primary: &Path, standby: &Path) {
    copy_dir(&primary.join("wal"), &standby.join("wal"));
}

/// The standby's log files that the primary also has are byte for byte
/// the primary's: the standby logged nothing.
fn assert_log_is_the_primarys(primary: &Path, standby: &Path) {
    for e in std::fs::read_dir(primary.join("wal")).unwrap() {
        let e = e.unwrap();
        let theirs = std::fs::read(e.path()).unwrap();
        let ours = std::fs::read(standby.join("wal").join(e.file_name())).unwrap();
        assert!(
            ours == theirs,
            "{:?} differs from the primary's",
            e.file_name()
        );
    }
}

fn insert(db: &Database, v: &[u8]) {
    let rel = db.relation("r").unwrap().unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(rel, v).unwrap();
    tx.commit().unwrap();
}

fn rows(dir: &Path) -> Vec<Vec<u8>> {
    let db = Database::open(dir, config()).unwrap();
    let out = scan_rows(&db);
    db.close().unwrap();
    out
}

/// Relation "r"'s rows in `db`, sorted.
fn scan_rows(db: &Database) -> Vec<Vec<u8>> {
    let rel = db.relation("r").unwrap().unwrap();
    let mut out: Vec<Vec<u8>> = db
        .begin()
        .unwrap()
        .scan(rel)
        .unwrap()
        .map(|r| r.unwrap().1)
        .collect();
    out.sort();
    out
}

fn row(i: u32) -> Vec<u8> {
    format!("row-{i:05}-{}", "x".repeat(100)).into_bytes()
}

#[test]
fn a_standby_applies_shipped_log_with_restartpoints_and_opens_to_the_primarys_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, s) = (tmp.path().join("primary"), tmp.path().join("standby"));
    let db = Database::open(&p, config()).unwrap();
    db.create_relation("r").unwrap();
    for i in 0..50 {
        insert(&db, &row(i));
    }
    db.close().unwrap();
    copy_dir(&p, &s);

    // The primary goes on: a checkpoint, more commits, and a transaction
    // left open whose insert is durable (a later commit flushed it).
    let db = Database::open(&p, config()).unwrap();
    let rel = db.relation("r").unwrap().unwrap();
    for i in 50..100 {
        insert(&db, &row(i));
    }
    let c1 = db.checkpoint().unwrap();
    for i in 100..120 {
        insert(&db, &row(i));
    }
    let mut loser = db.begin().unwrap();
    loser.insert(rel, b"open-at-the-ship").unwrap();
    insert(&db, &row(120));

    ship_log(&p, &s);
    let first = apply_log(&s, config()).unwrap();
    assert_eq!(
        first.restartpoint,
        Some(c1.end),
        "the control file moves to the checkpoint"
    );
    assert_eq!(first.recovery.txns_undone, 0, "a standby undoes nothing");
    assert!(first.recovery.records_redone > 0);
    assert_log_is_the_primarys(&p, &s);

    // Applying again starts at the restartpoint, not at the copy, and
    // finds every page already current.
    let again = apply_log(&s, config()).unwrap();
    assert_eq!(again.restartpoint, None);
    assert!(again.recovery.scan_start > first.recovery.scan_start);
    assert_eq!(again.recovery.records_redone, 0);
    assert_log_is_the_primarys(&p, &s);

    // Promoting a copy now: the open transaction is a loser.
    let promoted = tmp.path().join("promoted-early");
    copy_dir(&s, &promoted);
    let mut expected: Vec<Vec<u8>> = (0..=120).map(row).collect();
    expected.sort();
    assert_eq!(rows(&promoted), expected);

    // The open transaction commits on the primary, which checkpoints and
    // closes; the standby applies that too.
    loser.commit().unwrap();
    for i in 121..140 {
        insert(&db, &row(i));
    }
    let c2 = db.checkpoint().unwrap();
    db.close().unwrap();
    ship_log(&p, &s);
    let last = apply_log(&s, config()).unwrap();
    assert!(last.restartpoint.is_some_and(|r| r > c2.begin), "{last:?}");
    assert_log_is_the_primarys(&p, &s);
    let mut expected: Vec<Vec<u8>> = (0..140).map(row).collect();
    expected.push(b"open-at-the-ship".to_vec());
    expected.sort();
    assert_eq!(rows(&s), expected);
    assert_eq!(rows(&p), expected);
}

/// The relation files in `dir`'s `rel/`, sorted.
fn rel_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("rel"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A relation created and dropped on the primary after the standby's copy,
/// then a checkpoint: the standby's redo re-creates the relation's file
/// (redo removes none), and the restartpoint moves past both records. The
/// apply completes the committed drop (and removes an aborted create's
/// file) first, so no file is left that a later scan could not place.
#[test]
fn a_standby_completes_the_drops_its_restartpoint_moves_past() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, s) = (tmp.path().join("primary"), tmp.path().join("standby"));
    let db = Database::open(&p, config()).unwrap();
    db.create_relation("r").unwrap();
    insert(&db, &row(0));
    db.close().unwrap();
    copy_dir(&p, &s);

    let db = Database::open(&p, config()).unwrap();
    let gone = db.create_relation("gone").unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(gone, &row(1)).unwrap();
    tx.commit().unwrap();
    db.drop_relation("gone").unwrap();
    insert(&db, &row(2));
    let c1 = db.checkpoint().unwrap();
    insert(&db, &row(3));
    ship_log(&p, &s);

    let applied = apply_log(&s, config()).unwrap();
    assert_eq!(applied.restartpoint, Some(c1.end));
    assert_eq!(applied.recovery.drops_completed, vec![gone]);
    assert_eq!(
        rel_files(&s),
        rel_files(&p),
        "the standby keeps the primary's relation files"
    );
    db.close().unwrap();
    ship_log(&p, &s);
    apply_log(&s, config()).unwrap();
    let promoted = Database::open(&s, config()).unwrap();
    assert_eq!(
        promoted.recovery_report().orphan_files,
        Vec::<std::path::PathBuf>::new()
    );
    assert!(promoted.relation("gone").unwrap().is_none());
    promoted.close().unwrap();
    let mut expected: Vec<Vec<u8>> = vec![row(0), row(2), row(3)];
    expected.sort();
    assert_eq!(rows(&s), expected);
}

#[test]
fn a_standby_without_a_control_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = apply_log(tmp.path().join("absent"), config()).unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
    let err = apply_log(tmp.path(), config()).unwrap_err();
    assert!(err.to_string().contains("has no control file"), "{err}");
}

#[test]
fn a_directory_marked_standby_is_never_opened_for_work_but_applies_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, s) = (tmp.path().join("primary"), tmp.path().join("standby"));
    let db = Database::open(&p, config()).unwrap();
    db.create_relation("r").unwrap();
    insert(&db, &row(1));
    db.close().unwrap();
    copy_dir(&p, &s);
    std::fs::write(s.join(keel::datadir::layout::STANDBY_FILE), b"").unwrap();
    let err = Database::open(&s, config()).unwrap_err().to_string();
    assert!(
        err.contains("warm standby") && err.contains("keel promote"),
        "{err}"
    );
    apply_log(&s, config()).unwrap();
    std::fs::remove_file(s.join(keel::datadir::layout::STANDBY_FILE)).unwrap();
    assert_eq!(rows(&s), vec![row(1)]);
}

mod sim_standby {
    //! The standby's apply under power cuts, on the simulated disk.

    use std::sync::Arc;

    use keel::Database;
    use keel::standby::apply_log_with_io;
    use keel_io::AsyncIo;
    use keel_io::sim::{Fault, FaultRule, SimConfig, SimDisk, SimIo};

    use super::{config, row, scan_rows};

    fn open(disk: &SimDisk, seed: u64) -> (Arc<SimIo>, Database) {
        let sim = Arc::new(SimIo::from_disk(disk.clone(), SimConfig::seeded(seed)));
        let db = Database::open_with_io("/db", config(), sim.clone() as Arc<dyn AsyncIo>).unwrap();
        (sim, db)
    }

    fn insert_rows(db: &Database, rows: std::ops::Range<u32>) {
        let rel = db.relation("r").unwrap().unwrap();
        for i in rows {
            let mut tx = db.begin().unwrap();
            tx.insert(rel, &row(i)).unwrap();
            tx.commit().unwrap();
        }
    }

    /// The primary's log laid over `standby` (its segments, as shipped).
    fn ship(primary: &SimDisk, standby: SimDisk) -> SimDisk {
        primary
            .files()
            .filter(|(p, _)| p.starts_with("/db/wal"))
            .fold(standby, |d, (p, data)| d.with_file(p, data))
    }

    fn apply(
        disk: &SimDisk,
        seed: u64,
        cut: Option<u64>,
    ) -> (keel::Result<keel::standby::ApplyReport>, SimDisk) {
        let sim = Arc::new(SimIo::from_disk(disk.clone(), SimConfig::seeded(seed)));
        if let Some(at) = cut {
            sim.add_fault(FaultRule::at_op(at, Fault::PowerCut));
        }
        let report = apply_log_with_io("/db", config(), sim.clone() as Arc<dyn AsyncIo>);
        (report, sim.crash())
    }

    /// A standby whose restartpoint moved its control file past pages the
    /// same apply changed: such a page torn is rebuilt from the image the
    /// restartpoint kept. Then it applies more log to those pages with the
    /// power cut at each of its I/O operations in turn (the simulator
    /// drops or tears the writes not yet synced): each time the next apply
    /// repairs every page and the standby opens to the primary's rows.
    #[test]
    fn power_cuts_during_an_apply_after_a_restartpoint_lose_no_row() {
        let (psim, db) = open(&SimDisk::new(), 1);
        db.create_relation("r").unwrap();
        insert_rows(&db, 0..40);
        db.close().unwrap();
        let base = psim.crash();

        let (psim, db) = open(&base, 2);
        insert_rows(&db, 40..80);
        db.checkpoint().unwrap();
        insert_rows(&db, 80..160);
        db.checkpoint().unwrap();
        insert_rows(&db, 160..200);
        let shipped = psim.crash();
        drop(db);
        let (first, standby) = apply(&ship(&shipped, base), 3, None);
        assert!(first.unwrap().restartpoint.is_some(), "a restartpoint");

        // The page the first apply changed last holds records past the
        // restartpoint's redo start: torn (as a write of the next apply
        // could tear it), it is rebuilt from the image the restartpoint
        // kept, and the apply goes on.
        {
            let heap = "/db/rel/1.heap";
            let mut file = standby.file(std::path::Path::new(heap)).unwrap().to_vec();
            let newest = file
                .chunks(8192)
                .enumerate()
                .max_by_key(|(_, p)| keel::page::page_lsn(p))
                .map(|(i, _)| i)
                .unwrap();
            file[newest * 8192 + 5000..(newest + 1) * 8192].fill(0xEE);
            let torn = standby.clone().with_file(std::path::Path::new(heap), &file);
            let (again, _) = apply(&torn, 6, None);
            let again = again.unwrap_or_else(|e| panic!("page {newest} torn: {e}"));
            assert_eq!(again.recovery.pages_from_images, 1, "page {newest} rebuilt");
        }

        // The primary goes on: its next inserts land on the pages the
        // first apply changed after the restartpoint's redo start.
        let (psim, db) = open(&shipped, 4);
        insert_rows(&db, 200..260);
        db.close().unwrap();
        let primary = psim.crash();
        let standby = ship(&primary, standby);

        let ops = {
            let sim = Arc::new(SimIo::from_disk(standby.clone(), SimConfig::seeded(5)));
            apply_log_with_io("/db", config(), sim.clone() as Arc<dyn AsyncIo>).unwrap();
            sim.op_count()
        };
        let expected: Vec<Vec<u8>> = {
            let mut v: Vec<Vec<u8>> = (0..260).map(row).collect();
            v.sort();
            v
        };
        for at in 1..ops {
            // A cut past the apply's last operation (its files' closes)
            // leaves it done: the next apply finds nothing to do.
            let (_, disk) = apply(&standby, 10 + at, Some(at));
            let (again, disk) = apply(&disk, 5000 + at, None);
            again.unwrap_or_else(|e| panic!("apply after a cut at op {at}: {e}"));
            let (_, db) = open(&disk, 9000 + at);
            assert_eq!(scan_rows(&db), expected, "cut at op {at}");
            db.close().unwrap();
        }
    }
}
