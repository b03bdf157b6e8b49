#![allow(clippy::unwrap_used, clippy::expect_used)]
//! DDL under power cuts, on the simulated disk: a cut at every I/O
//! operation of `drop_relation` and of `create_relation`, over several
//! seeds, with committed rows in the relations and an uncommitted
//! transaction running beside the DDL; sometimes a second cut during the
//! recovery that follows. After the final recovery the database opens, the
//! other relation holds exactly its committed rows, and the relation the
//! DDL touched is either intact with all its rows or gone:
//!
//! - a drop is gone when `drop_relation` returned `Ok`; when it failed (the
//!   cut came inside it) it may be either, since its commit may have become
//!   durable before the cut;
//! - a create exists when `create_relation` returned `Ok`, and holds no
//!   rows either way.
//!
//! And the engine never reuses a relation id, never deletes a file it does
//! not know to belong to a committed drop or an uncommitted create, and
//! leaves no file of a relation that is gone.
//!
//! A second sweep fails each sync of the same calls instead, with EIO or
//! ENOSPC (the failed-disk shape): the call fails and poisons, then a power
//! cut, or a kill, a restart and a power cut, and the same checks hold.
//!
//! `KEEL_CRASH_DDL_SEEDS` sets the number of seeds (default 3);
//! `KEEL_CRASH_SEED=<n>` runs seed `n` alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use keel::{Config, Database, RelationId, TupleId};
use keel_io::sim::{Fault, FaultRule, Rng, SimConfig, SimDisk, SimIo};

mod common;

type Model = BTreeMap<TupleId, Vec<u8>>;

/// Disks drawn from each cut: the same moment, different fates of its
/// unsynced writes.
const DISKS_PER_CUT: u64 = 12;

fn config() -> Config {
    Config {
        consistency_check: false,
        ..common::small_config(16)
    }
}

fn open(sim: &Arc<SimIo>) -> keel::Result<Database> {
    common::open_sim(sim, config())
}

fn seeds() -> Vec<u64> {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = env("KEEL_CRASH_SEED") {
        return vec![seed];
    }
    (0..env("KEEL_CRASH_DDL_SEEDS").unwrap_or(3)).collect()
}

fn insert_rows(db: &Database, rel: RelationId, rows: usize, rng: &mut Rng, model: &mut Model) {
    let mut tx = db.begin().unwrap();
    for _ in 0..rows {
        let len = if rng.below(8) == 0 {
            5000
        } else {
            20 + rng.below(300) as usize
        };
        let b = rng.next_u64() as u8;
        let v: Vec<u8> = (0..len).map(|i| b.wrapping_add(i as u8)).collect();
        let tid = tx.insert(rel, &v).unwrap();
        model.insert(tid, v);
    }
    tx.commit().unwrap();
}

fn scan(db: &Database, rel: RelationId) -> Model {
    let tx = db.begin().unwrap();
    tx.scan(rel).unwrap().map(|r| r.unwrap()).collect()
}

/// A database with two relations of committed rows ("keep" and "victim"),
/// a checkpoint in between when `checkpointed`; returns the live database
/// and both models.
struct Setup {
    sim: Arc<SimIo>,
    db: Database,
    keep: RelationId,
    keep_rows: Model,
    victim: RelationId,
    victim_rows: Model,
}

fn setup(seed: u64, rng: &mut Rng) -> Setup {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(seed)));
    let db = open(&sim).unwrap();
    let keep = db.create_relation("keep").unwrap();
    // Catalog rows with long names: a full image of the catalog page then
    // spans several sectors of the log.
    for i in 0..6 {
        db.create_relation(&format!("{i}{}", "-".repeat(200)))
            .unwrap();
    }
    let (mut keep_rows, mut victim_rows) = (Model::new(), Model::new());
    insert_rows(&db, keep, 30, rng, &mut keep_rows);
    if rng.coin() {
        db.checkpoint().unwrap();
    }
    // A relation created and dropped before the DDL under test: its id
    // must never come back.
    let gone = db.create_relation("gone").unwrap();
    db.drop_relation("gone").unwrap();
    let victim = db.create_relation("victim").unwrap();
    assert!(victim.0 > gone.0);
    insert_rows(&db, victim, 40, rng, &mut victim_rows);
    insert_rows(&db, keep, 10, rng, &mut keep_rows);
    Setup {
        sim,
        db,
        keep,
        keep_rows,
        victim,
        victim_rows,
    }
}

/// The relation ids that have files (heap or FSM) on a disk.
fn file_ids(disk: &SimDisk) -> Vec<u32> {
    let mut ids: Vec<u32> = disk
        .files()
        .filter_map(|(p, _)| {
            let name = p.strip_prefix("/db/rel").ok()?.to_str()?;
            name.split('.').next()?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Reboots from `disk`, sometimes with a power cut during recovery and a
/// second reboot; returns the database after the final recovery.
fn recover(disk: SimDisk, seed: u64, rng: &mut Rng) -> (Arc<SimIo>, Database) {
    let mut sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(seed + 1000)));
    if rng.coin() {
        sim.add_fault(FaultRule::at_op(1 + rng.below(300), Fault::PowerCut));
        if let Ok(db) = open(&sim) {
            drop(db);
        }
        let disk = sim.crash();
        sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(seed + 2000)));
    }
    let db = open(&sim)
        .unwrap_or_else(|e| panic!("seed {seed}: the database does not open after the cut: {e}"));
    (sim, db)
}

/// What a cut inside a DDL call may leave, checked after recovery.
fn check_after(
    seed: u64,
    at: u64,
    s: &Setup,
    db: &Database,
    sim: &Arc<SimIo>,
    victim_may_exist: bool,
    victim_may_be_gone: bool,
) {
    let ctx = format!("seed {seed}, cut at op +{at}");
    assert_eq!(scan(db, s.keep), s.keep_rows, "{ctx}: relation keep");
    match db.relation("victim").unwrap() {
        Some(id) => {
            assert!(victim_may_exist, "{ctx}: the dropped relation came back");
            assert_eq!(id, s.victim, "{ctx}");
            assert_eq!(scan(db, id), s.victim_rows, "{ctx}: relation victim");
        }
        None => assert!(victim_may_be_gone, "{ctx}: the relation is gone"),
    }
    // Ids only grow, and every relation file belongs to a listed relation
    // (a drop known committed is completed; nothing else is left over).
    let fresh = db.create_relation("after").unwrap();
    assert!(fresh.0 > s.victim.0, "{ctx}: id {fresh} reused");
    let mut listed: Vec<u32> = db.relations().iter().map(|r| r.id.0).collect();
    listed.push(0);
    listed.sort_unstable();
    let disk = sim.crash();
    let on_disk = file_ids(&disk);
    assert!(
        on_disk.iter().all(|id| listed.contains(id)),
        "{ctx}: files of {on_disk:?} but relations {listed:?}; report {:?}",
        db.recovery_report()
    );
    assert!(
        db.recovery_report().orphan_files.is_empty(),
        "{ctx}: orphans reported: {:?}",
        db.recovery_report().orphan_files
    );
}

#[test]
fn power_cut_at_every_operation_of_drop_relation() {
    let mut cuts = 0;
    for seed in seeds() {
        for at in 0u64.. {
            let mut rng = Rng::new(seed * 31 + 7);
            let mut s = setup(seed, &mut rng);
            if seed % 2 == 0 {
                // The drop's change to the catalog page then logs a full
                // page image: its records span several sectors of the log,
                // and a cut can keep `relation-drop` but lose the commit.
                s.db.checkpoint().unwrap();
            }
            // An uncommitted transaction on the other relation, whose
            // records the drop's commit flushes with it: a loser.
            let mut loser = s.db.begin().unwrap();
            loser.insert(s.keep, &[9u8; 700]).unwrap();
            // A commit that makes the loser's records durable: the drop's
            // own records start a fresh write to the log.
            insert_rows(&s.db, s.keep, 1, &mut rng, &mut s.keep_rows);
            let start = s.sim.op_count();
            s.sim
                .add_fault(FaultRule::at_op(start + at, Fault::PowerCut));
            let dropped = s.db.drop_relation("victim");
            if !s.sim.is_halted() {
                // The cut came after the drop's last operation: done.
                dropped.unwrap();
                assert!(at > 0);
                break;
            }
            cuts += 1;
            std::mem::forget(loser);
            // Several of the disks this moment's cut could leave (each
            // unsynced write kept, dropped or torn by sector).
            for variant in 0..DISKS_PER_CUT {
                let disk = s.sim.crash();
                let (sim, db) = recover(disk, seed * 1000 + at * 10 + variant, &mut rng);
                check_after(seed, at, &s, &db, &sim, dropped.is_err(), true);
            }
        }
    }
    eprintln!("{cuts} cuts inside drop_relation");
}

#[test]
fn power_cut_at_every_operation_of_create_relation() {
    let mut cuts = 0;
    for seed in seeds() {
        for at in 0u64.. {
            let mut rng = Rng::new(seed * 131 + 3);
            let s = setup(seed, &mut rng);
            if seed % 2 == 0 {
                s.db.checkpoint().unwrap();
            }
            let mut loser = s.db.begin().unwrap();
            loser.insert(s.keep, &[7u8; 900]).unwrap();
            let start = s.sim.op_count();
            s.sim
                .add_fault(FaultRule::at_op(start + at, Fault::PowerCut));
            let created = s.db.create_relation("new");
            if !s.sim.is_halted() {
                created.unwrap();
                assert!(at > 0);
                break;
            }
            cuts += 1;
            std::mem::forget(loser);
            for variant in 0..DISKS_PER_CUT {
                let disk = s.sim.crash();
                let (sim, db) = recover(disk, seed * 1000 + at * 10 + variant, &mut rng);
                let ctx = format!("seed {seed}, cut at op +{at}");
                match db.relation("new").unwrap() {
                    Some(id) => {
                        assert!(id.0 > s.victim.0, "{ctx}: id {id} reused");
                        assert!(scan(&db, id).is_empty(), "{ctx}");
                    }
                    None => assert!(created.is_err(), "{ctx}: an acknowledged create is gone"),
                }
                check_after(seed, at, &s, &db, &sim, true, false);
            }
        }
    }
    eprintln!("{cuts} cuts inside create_relation");
}

#[test]
fn relation_ids_are_never_reused_after_a_crash() {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(5)));
    let db = open(&sim).unwrap();
    db.checkpoint().unwrap();
    let a = db.create_relation("a").unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(a, b"row of a").unwrap();
    tx.commit().unwrap();
    db.drop_relation("a").unwrap();
    let disk = sim.crash();
    drop(db);
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(6)));
    let db = open(&sim).unwrap();
    let b = db.create_relation("b").unwrap();
    assert!(b.0 > a.0, "relation id {a} handed out again after a crash");
    let mut tx = db.begin().unwrap();
    tx.insert(b, b"row of b").unwrap();
    tx.commit().unwrap();
    // A second crash replays a's records and b's: each stays its own.
    let disk = sim.crash();
    drop(db);
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(7)));
    let db = open(&sim).unwrap();
    let rows: Vec<Vec<u8>> = scan(&db, b).into_values().collect();
    assert_eq!(rows, vec![b"row of b".to_vec()]);
    assert_eq!(db.relation("a").unwrap(), None);
}

/// A file in `rel/` that no catalog row names and that recovery cannot
/// place (no create or drop of it in the log) is kept and reported, never
/// removed.
#[test]
fn unknown_relation_files_are_kept_and_reported() {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(9)));
    let db = open(&sim).unwrap();
    let a = db.create_relation("a").unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(a, b"x").unwrap();
    tx.commit().unwrap();
    db.close().unwrap();
    let disk = sim.crash();
    let stray = vec![0xABu8; 8192];
    let disk = disk.with_file(Path::new("/db/rel/77.heap"), &stray);
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(10)));
    let db = open(&sim).unwrap();
    let orphans = &db.recovery_report().orphan_files;
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert!(orphans[0].ends_with("rel/77.heap"), "{orphans:?}");
    let fresh = db.create_relation("b").unwrap();
    assert!(fresh.0 > 77, "id {fresh} would collide with rel/77.heap");
    db.close().unwrap();
    let disk = sim.crash();
    assert_eq!(disk.file(Path::new("/db/rel/77.heap")), Some(&stray[..]));
}

/// Reopens a closed database's disk with `extra` files added to it.
fn reopen_with(sim: &Arc<SimIo>, db: Database, extra: &[(&str, &[u8])], seed: u64) -> Arc<SimIo> {
    db.close().unwrap();
    let mut disk = sim.crash();
    for (path, bytes) in extra {
        disk = disk.with_file(Path::new(path), bytes);
    }
    Arc::new(SimIo::from_disk(disk, SimConfig::seeded(seed)))
}

/// A database with relation "x" holding one committed row; returns it and
/// the row's id.
fn with_one_row(sim: &Arc<SimIo>) -> (Database, RelationId, TupleId) {
    let db = open(sim).unwrap();
    let x = db.create_relation("x").unwrap();
    let mut tx = db.begin().unwrap();
    let tid = tx.insert(x, b"keep me").unwrap();
    tx.commit().unwrap();
    (db, x, tid)
}

/// Relation ids are below `RELATION_ID_LIMIT` (u32::MAX). A file named with
/// an id at or above it was not made by Keel: recovery reports it as an
/// orphan and keeps it, and it does not move the next relation id, so
/// creates go on with the ids after the relations' own (and never wrap to
/// the catalog's id 0).
#[test]
fn a_relation_file_past_the_id_limit_is_an_orphan_and_moves_no_id() {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(11)));
    let (db, x, tid) = with_one_row(&sim);
    let stray = vec![0x5Au8; 8192];
    let sim = reopen_with(&sim, db, &[("/db/rel/4294967295.heap", &stray)], 12);
    let db = open(&sim).unwrap();
    let orphans = &db.recovery_report().orphan_files;
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert!(orphans[0].ends_with("rel/4294967295.heap"), "{orphans:?}");
    let a = db.create_relation("a").unwrap();
    assert_eq!(a, RelationId(x.0 + 1));
    let b = db.create_relation("b").unwrap();
    assert_eq!(b, RelationId(a.0 + 1));
    assert_eq!(
        db.begin().unwrap().get(x, tid).unwrap().as_deref(),
        Some(&b"keep me"[..])
    );
    db.close().unwrap();
    let disk = sim.crash();
    assert_eq!(
        disk.file(Path::new("/db/rel/4294967295.heap")),
        Some(&stray[..])
    );
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(13)));
    let db = open(&sim).unwrap();
    let names: Vec<String> = db.relations().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["x", "a", "b"]);
}

/// The relation id counter stops at the limit and never wraps: once every
/// id below `RELATION_ID_LIMIT` is used (here an orphan at the last id
/// puts the counter there), every create is refused with
/// `RelationIdsExhausted` and changes nothing, and no file is removed: not
/// the catalog's, not a relation's, not the orphan.
#[test]
fn exhausted_relation_ids_are_refused_and_never_wrap() {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(14)));
    let (db, x, tid) = with_one_row(&sim);
    let last = format!(
        "/db/rel/{}.heap",
        keel::heap::catalog::RELATION_ID_LIMIT - 1
    );
    let stray = vec![0xA5u8; 8192];
    let sim = reopen_with(&sim, db, &[(&last, &stray)], 15);
    let db = open(&sim).unwrap();
    assert_eq!(db.recovery_report().orphan_files.len(), 1);
    for name in ["a", "b", "c"] {
        let e = db.create_relation(name).unwrap_err();
        assert!(
            matches!(e, keel::Error::Db(keel::DbError::RelationIdsExhausted { limit })
                if limit == keel::heap::catalog::RELATION_ID_LIMIT),
            "{e:?}"
        );
        assert_eq!(e.class(), keel::ErrorClass::Usage);
        assert!(e.to_string().contains("4294967295"), "{e}");
    }
    let names: Vec<String> = db.relations().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["x"]);
    assert_eq!(
        db.begin().unwrap().get(x, tid).unwrap().as_deref(),
        Some(&b"keep me"[..])
    );
    db.close().unwrap();
    let disk = sim.crash();
    for file in ["/db/rel/0.heap", &format!("/db/rel/{x}.heap")] {
        assert!(disk.file(Path::new(file)).is_some(), "{file} was removed");
    }
    assert_eq!(disk.file(Path::new(&last)), Some(&stray[..]));
    let sim = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(16)));
    let db = open(&sim).unwrap();
    assert_eq!(
        db.begin().unwrap().get(x, tid).unwrap().as_deref(),
        Some(&b"keep me"[..])
    );
}

/// A create never opens, adopts or removes a file it did not make: when a
/// file of the id it was given is already in `rel/` (put there while the
/// database runs), it is refused with `RelationFileExists` before anything
/// is logged, the file is left as it was (also by recovery, which keeps it
/// as an orphan), and the next create gets the next id.
#[test]
fn a_create_never_adopts_or_removes_a_file_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let x = db.create_relation("x").unwrap();
    let taken = dir.path().join("rel").join(format!("{}.heap", x.0 + 1));
    let stray = vec![0x3Cu8; 8192];
    std::fs::write(&taken, &stray).unwrap();
    let e = db.create_relation("a").unwrap_err();
    assert!(
        matches!(&e, keel::Error::Db(keel::DbError::RelationFileExists { relation, path })
            if relation.0 == x.0 + 1 && *path == taken),
        "{e:?}"
    );
    assert_eq!(db.relation("a").unwrap(), None);
    assert_eq!(std::fs::read(&taken).unwrap(), stray);
    let a = db.create_relation("a").unwrap();
    assert_eq!(a, RelationId(x.0 + 2));
    // The next free id's FSM file alone refuses it too.
    let fsm = dir.path().join("rel").join(format!("{}.fsm", a.0 + 1));
    std::fs::write(&fsm, b"not ours").unwrap();
    assert!(db.create_relation("b").is_err());
    assert_eq!(std::fs::read(&fsm).unwrap(), b"not ours");
    drop(db);
    let db = Database::open(dir.path(), config()).unwrap();
    let orphans = &db.recovery_report().orphan_files;
    assert!(orphans.contains(&taken), "{orphans:?}");
    assert_eq!(std::fs::read(&taken).unwrap(), stray);
    assert_eq!(std::fs::read(&fsm).unwrap(), b"not ours");
    let names: Vec<String> = db.relations().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["x", "a"]);
    db.close().unwrap();
}

/// A drop removes every file of its relation, the free space map a
/// checkpoint was writing when a process died included.
#[test]
fn a_drop_removes_a_half_written_free_space_map_too() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let x = db.create_relation("x").unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(x, b"row").unwrap();
    tx.commit().unwrap();
    let rel = dir.path().join("rel");
    let tmp = rel.join(format!("{}.fsm.tmp", x.0));
    std::fs::write(&tmp, b"half a map").unwrap();
    db.drop_relation("x").unwrap();
    let left: Vec<_> = std::fs::read_dir(&rel)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(&format!("{}.", x.0)))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    db.close().unwrap();
}

/// The DDL call of a sync-failure sweep.
#[derive(Clone, Copy, Debug)]
enum Ddl {
    Drop,
    Create,
}

/// A sync failing (EIO or ENOSPC, by seed; Linux drops what it could not
/// write either way) at each sync of `drop_relation` and of
/// `create_relation`: the call fails and poisons the database; then the
/// process loses power, or is killed (the page cache keeps what the failed
/// sync dropped, clean) and the next one recovers, commits and loses
/// power. Each recovery holds the committed rows, the relation as the
/// call's outcome allows, and no file recovery could not place.
#[test]
fn a_sync_failing_at_every_sync_of_ddl() {
    use keel_io::{AsyncIo, OpKind};
    const SYNCS: [OpKind; 5] = [
        OpKind::Fsync,
        OpKind::Fdatasync,
        OpKind::DurableWrite,
        OpKind::Writeback,
        OpKind::SyncDir,
    ];
    let mut failures = 0;
    for seed in seeds() {
        let fault = [Fault::Eio, Fault::NoSpace][seed as usize % 2];
        for ddl in [Ddl::Drop, Ddl::Create] {
            for at in 0u64.. {
                let mut rng = Rng::new(seed * 17 + 5);
                let mut s = setup(seed, &mut rng);
                insert_rows(&s.db, s.keep, 1, &mut rng, &mut s.keep_rows);
                let start = s.sim.op_count();
                let errors = |sim: &SimIo| -> u64 {
                    let st = sim.stats();
                    SYNCS.iter().map(|&op| st.errors(op)).sum()
                };
                let before = errors(&s.sim);
                for op in SYNCS {
                    s.sim
                        .add_fault(FaultRule::at_op(start + at, fault).on_op(op));
                }
                let result = match ddl {
                    Ddl::Drop => s.db.drop_relation("victim").map(|()| None),
                    Ddl::Create => s.db.create_relation("new").map(Some),
                };
                let ctx = format!("seed {seed}, {fault:?} on op +{at} of {ddl:?}");
                if errors(&s.sim) == before {
                    if s.sim.op_count() <= start + at {
                        result.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                        break;
                    }
                    continue; // op `at` was no sync
                }
                failures += 1;
                let e = result.as_ref().expect_err(&ctx);
                common::poison_cause(&s.db.begin().unwrap_err(), &ctx);
                assert_eq!(e.class(), keel::ErrorClass::Fatal, "{ctx}: {e}");
                let disk = if rng.coin() {
                    s.sim.crash()
                } else {
                    let kernel = s.sim.kill();
                    let sim = Arc::new(SimIo::after_kill(kernel, SimConfig::seeded(seed + 500)));
                    let db = open(&sim).unwrap_or_else(|e| panic!("{ctx}: after the kill: {e}"));
                    assert_eq!(scan(&db, s.keep), s.keep_rows, "{ctx}: after the kill");
                    insert_rows(&db, s.keep, 3, &mut rng, &mut s.keep_rows);
                    let disk = sim.crash();
                    drop(db);
                    disk
                };
                let (sim, db) = recover(disk, seed * 1000 + at, &mut rng);
                if let Ddl::Create = ddl
                    && let Some(id) = db.relation("new").unwrap()
                {
                    assert!(id.0 > s.victim.0, "{ctx}: id {id} reused");
                    assert!(scan(&db, id).is_empty(), "{ctx}");
                }
                let dropped = matches!(ddl, Ddl::Drop);
                check_after(seed, at, &s, &db, &sim, true, dropped);
            }
        }
    }
    assert!(failures > 0, "no sync failed inside DDL");
    eprintln!("{failures} sync failures inside DDL");
}
