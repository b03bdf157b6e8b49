//! Point-in-time restore and timelines on a local-directory store: a seeded
//! random workload of committed and aborted transactions, archived
//! continuously with a backup in the middle, restored to random targets
//! (time, LSN, transaction) and compared with a model of exactly the
//! transactions committed up to the target; targets that cannot be met are
//! errors; a restore before the head starts a timeline that later restores
//! follow and that an archiver on the restored database continues.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use keel::types::{Lsn, TxnId};
use keel::wal::{Payload, RecordType};
use keel::{Database, RelationId};
use keel_archive::{
    ArchiveReader, ArchiveTarget, Archiver, ArchiverOptions, BackupOptions, Manifest, Remote,
    RestoreTarget, StoreConfig,
};
use keel_io::sim::Rng;

/// A committed transaction as the archive shows it.
#[derive(Clone, Debug)]
struct Commit {
    txn: TxnId,
    lsn: Lsn,
    end: Lsn,
    time_us: u64,
}

struct World {
    tmp: tempfile::TempDir,
    target: ArchiveTarget,
    backup: Manifest,
    /// Values each transaction inserted (committed or not).
    written: BTreeMap<TxnId, Vec<Vec<u8>>>,
    aborted: Vec<TxnId>,
    commits: Vec<Commit>,
}

fn run_txns(db: &Database, rel: RelationId, rng: &mut Rng, n: usize, w: &mut World, tag: u8) {
    for i in 0..n {
        let mut tx = db.begin().unwrap();
        let id = tx.id();
        let mut vals = Vec::new();
        for r in 0..1 + rng.below(3) {
            let v = format!("{tag}-{i}-{r}-{}", rng.below(1000)).into_bytes();
            tx.insert(rel, &v).unwrap();
            vals.push(v);
        }
        w.written.insert(id, vals);
        if rng.below(4) == 0 {
            tx.abort().unwrap();
            w.aborted.push(id);
        } else {
            tx.commit().unwrap();
        }
        if rng.below(3) == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn commits_in(target: &ArchiveTarget, timeline: u32) -> Vec<Commit> {
    let reader = ArchiveReader::open(target, Duration::from_secs(5)).unwrap();
    let mut out = Vec::new();
    reader
        .visit(timeline, None, |c| {
            for (h, p) in c.records() {
                if h.kind == RecordType::Commit {
                    let Payload::Commit { commit_time_us } =
                        Payload::decode(h.kind, p, h.lsn).unwrap()
                    else {
                        panic!("commit record without a commit payload");
                    };
                    out.push(Commit {
                        txn: h.txn,
                        lsn: h.lsn,
                        end: Lsn(h.lsn.0 + u64::from(h.total_len)),
                        time_us: commit_time_us,
                    });
                }
            }
            Ok(())
        })
        .unwrap();
    out
}

fn world(seed: u64) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let target = local_target(tmp.path());
    let db = open(&tmp.path().join("data"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    let mut rng = Rng::new(seed | 1);
    let mut w = World {
        backup: Manifest {
            database_id: 0,
            timeline: 0,
            start: Lsn::ZERO,
            end: Lsn::ZERO,
            checkpoint_end: Lsn::ZERO,
            segment_size: 0,
            max_batch_bytes: 0,
            started_us: None,
            files: Vec::new(),
        },
        tmp,
        target,
        written: BTreeMap::new(),
        aborted: Vec::new(),
        commits: Vec::new(),
    };
    run_txns(&db, rel, &mut rng, 30, &mut w, 0);
    let options = BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..BackupOptions::default()
    };
    w.backup = keel_archive::backup(&db, &archiver, &w.target, &options).unwrap();
    run_txns(&db, rel, &mut rng, 60, &mut w, 1);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    w.commits = commits_in(&w.target, 1);
    w
}

fn model(w: &World, kept: impl Fn(&Commit) -> bool) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = w
        .commits
        .iter()
        .filter(|c| kept(c))
        .filter_map(|c| w.written.get(&c.txn))
        .flatten()
        .cloned()
        .collect();
    out.sort();
    out
}

fn restore(
    w: &World,
    dir: &Path,
    timeline: u32,
    t: RestoreTarget,
) -> keel_archive::Result<keel_archive::RestoreReport> {
    keel_archive::restore(
        &w.target,
        dir,
        timeline,
        t,
        config(),
        Duration::from_secs(10),
    )
}

#[test]
fn restores_to_random_targets_hold_exactly_the_commits_up_to_the_target() {
    for seed in [0x5eed_u64, 0xfeed_beef] {
        let w = world(seed);
        let mut rng = Rng::new(seed.wrapping_mul(7) | 1);
        // Commits whose record starts after the backup's end: any of them
        // is a target a restore can meet.
        let usable: Vec<usize> = (0..w.commits.len())
            .filter(|&i| w.commits[i].lsn >= w.backup.end)
            .collect();
        assert!(usable.len() > 10, "the workload commits after the backup");
        for round in 0..6 {
            let i = usable[rng.below(usable.len() as u64) as usize];
            let c = w.commits[i].clone();
            let (t, expected) = match round % 3 {
                0 => (RestoreTarget::Txn(c.txn), model(&w, |x| x.lsn <= c.lsn)),
                1 => (RestoreTarget::Lsn(c.end), model(&w, |x| x.end <= c.end)),
                _ => (
                    RestoreTarget::Time(c.time_us),
                    model(&w, |x| x.time_us <= c.time_us),
                ),
            };
            let dir = w.tmp.path().join(format!("r{seed:x}-{round}"));
            let report = restore(&w, &dir, 1, t).unwrap();
            assert_eq!(rows(&dir, "r"), expected, "seed {seed:#x} target {t}");
            assert!(
                report.log_end >= report.backup.end,
                "never before the consistency point"
            );
            let last = i + 1 == w.commits.len();
            assert_eq!(report.history.is_some(), report.log_end < report.head);
            if !last {
                assert!(
                    report.timeline > 1,
                    "a restore before the head starts a timeline"
                );
            }
        }
        // The end: every commit.
        let dir = w.tmp.path().join(format!("end{seed:x}"));
        let report = restore(&w, &dir, 1, RestoreTarget::End).unwrap();
        assert_eq!(rows(&dir, "r"), model(&w, |_| true));
        assert_eq!(report.timeline, 1);
        assert!(report.history.is_none());
    }
}

#[test]
fn targets_that_cannot_be_met_are_errors_naming_them() {
    let w = world(0xabc);
    let before = w.commits.iter().find(|c| c.end < w.backup.start).unwrap();
    let e = restore(
        &w,
        &w.tmp.path().join("a"),
        1,
        RestoreTarget::Lsn(before.end),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("before the oldest usable backup's end LSN"),
        "{e}"
    );
    assert!(e.contains(&w.backup.end.to_string()), "{e}");
    let e = restore(&w, &w.tmp.path().join("b"), 1, RestoreTarget::Time(1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("before the oldest usable backup started"), "{e}");
    // A time after the backup started but before its consistency point.
    let inside = w.commits.iter().find(|c| {
        c.lsn >= w.backup.start
            && c.end <= w.backup.end
            && c.time_us >= w.backup.started_us.unwrap()
    });
    if let Some(c) = inside {
        let e = restore(
            &w,
            &w.tmp.path().join("b2"),
            1,
            RestoreTarget::Time(c.time_us - 1),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("before the oldest usable backup's end LSN"),
            "{e}"
        );
    }
    let aborted = *w.aborted.last().unwrap();
    let e = restore(&w, &w.tmp.path().join("c"), 1, RestoreTarget::Txn(aborted))
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no commit record"), "{e}");
    let last = w.commits.last().unwrap();
    let e = restore(
        &w,
        &w.tmp.path().join("d"),
        1,
        RestoreTarget::Lsn(Lsn(last.end.0 - 1)),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not a record boundary"), "{e}");
    let e = restore(
        &w,
        &w.tmp.path().join("e"),
        1,
        RestoreTarget::Lsn(Lsn(last.end.0 + (1 << 30))),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("outside the archived log"), "{e}");
    // None of these started a timeline.
    let reader = ArchiveReader::open(&w.target, Duration::from_secs(5)).unwrap();
    assert_eq!(reader.timelines().unwrap(), vec![1]);
}

#[test]
fn a_new_timeline_is_archived_and_followed_and_never_touches_the_old_one() {
    let w = world(0x7177);
    let old: Vec<_> = snapshot(&w.target)
        .into_iter()
        .filter(|(n, _)| n.contains("/wal/00000001/"))
        .collect();
    let mid = w
        .commits
        .iter()
        .filter(|c| c.lsn >= w.backup.end)
        .nth(5)
        .unwrap()
        .clone();
    let a = w.tmp.path().join("a");
    let report = restore(&w, &a, 1, RestoreTarget::Txn(mid.txn)).unwrap();
    assert_eq!(report.timeline, 2);
    let h = report.history.clone().unwrap();
    assert_eq!((h.parent, h.switch), (1, mid.end));
    let mut expected = model(&w, |c| c.lsn <= mid.lsn);
    assert_eq!(rows(&a, "r"), expected);

    // An archiver on the restored database continues timeline 2; an
    // explicit other timeline is refused.
    let db = open(&a);
    let rel = db.relation("r").unwrap().unwrap();
    let refused = Archiver::start(
        db.clone(),
        &w.target,
        ArchiverOptions {
            timeline: 3,
            ..fast()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(refused.contains("restored onto timeline 2"), "{refused}");
    let archiver = Archiver::start(db.clone(), &w.target, fast()).unwrap();
    for i in 0..20 {
        let v = format!("after-{i}").into_bytes();
        let mut tx = db.begin().unwrap();
        tx.insert(rel, &v).unwrap();
        tx.commit().unwrap();
        expected.push(v);
    }
    expected.sort();
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    let now: Vec<_> = snapshot(&w.target)
        .into_iter()
        .filter(|(n, _)| n.contains("/wal/00000001/"))
        .collect();
    assert_eq!(now, old, "timeline 1's chunks are never touched");

    // Restoring timeline 2 follows its history: timeline 1's backup and
    // chunks up to the switch, then timeline 2's chunks.
    let b = w.tmp.path().join("b");
    let report = restore(&w, &b, 2, RestoreTarget::End).unwrap();
    assert_eq!(report.timeline, 2);
    assert!(report.history.is_none());
    assert_eq!(rows(&b, "r"), expected);

    // A point on timeline 2 before its head starts timeline 3.
    let t2 = commits_in(&w.target, 2);
    let first_new = t2.first().unwrap();
    let c = w.tmp.path().join("c");
    let report = restore(&w, &c, 2, RestoreTarget::Txn(first_new.txn)).unwrap();
    assert_eq!(report.timeline, 3);
    let mut first_only = model(&w, |c| c.lsn <= mid.lsn);
    first_only.push(b"after-0".to_vec());
    first_only.sort();
    assert_eq!(rows(&c, "r"), first_only);
}

#[test]
fn a_target_at_a_chunk_end_before_the_head_starts_a_timeline() {
    // The commit that ends a chunk other than the last: the stop is found
    // at that chunk's end, and the head lies chunks further on.
    for seed in [0x51de_u64, 0xc0ffee, 0x1234_5678] {
        let w = world(seed);
        let reader = ArchiveReader::open(&w.target, Duration::from_secs(5)).unwrap();
        let mut ends = Vec::new();
        reader
            .visit(1, None, |c| {
                ends.push(c.header.end);
                Ok(())
            })
            .unwrap();
        let head = *ends.last().unwrap();
        let Some(c) = w
            .commits
            .iter()
            .find(|c| c.lsn >= w.backup.end && c.end < head && ends.contains(&c.end))
            .cloned()
        else {
            continue;
        };
        let dir = w.tmp.path().join("at-chunk-end");
        let report = restore(&w, &dir, 1, RestoreTarget::Txn(c.txn)).unwrap();
        assert_eq!(
            report.head, head,
            "seed {seed:#x}: the head is the archive's end"
        );
        assert_eq!(report.log_end, c.end);
        assert_eq!(
            report.timeline, 2,
            "a stop before the head starts a timeline"
        );
        assert_eq!(rows(&dir, "r"), model(&w, |x| x.lsn <= c.lsn));
        return;
    }
    panic!("no workload put a commit at the end of a chunk before the head");
}

/// A store outage at each request of a point-in-time restore in turn: the
/// restore fails with an error, what it leaves is either refused by an
/// open or a database holding exactly the commits up to the target, and a
/// restore once the store is back gives the same rows.
#[test]
fn an_outage_at_any_request_of_a_restore_leaves_nothing_wrong() {
    use keel_archive::fault::FaultStore;
    let w = world(0x0a7a);
    let c = w
        .commits
        .iter()
        .filter(|c| c.lsn >= w.backup.end)
        .nth(3)
        .unwrap()
        .clone();
    let expected = model(&w, |x| x.lsn <= c.lsn);
    let inner = w.target.build_store().unwrap();
    let through = |store: &FaultStore, dir: &Path| {
        let target = ArchiveTarget::new(StoreConfig::Custom(Arc::new(store.clone())), "db");
        keel_archive::restore(
            &target,
            dir,
            1,
            RestoreTarget::Txn(c.txn),
            config(),
            Duration::from_secs(10),
        )
    };
    let counted = FaultStore::new(inner.clone());
    through(&counted, &w.tmp.path().join("counted")).unwrap();
    let s = counted.stats();
    let requests = s.puts + s.gets + s.lists;
    assert!(requests > 5, "{s:?}");
    for k in 0..requests {
        let store = FaultStore::new(inner.clone());
        store.outage_after(k);
        let dir = w.tmp.path().join(format!("outage-{k}"));
        let err = through(&store, &dir).map(|_| ()).unwrap_err();
        assert!(!err.to_string().is_empty());
        // Absent or empty: nothing was restored (an open would make a
        // new database there, as in any empty directory).
        let restored_any = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
        if restored_any && let Ok(db) = Database::open(&dir, config()) {
            db.close().unwrap();
            assert_eq!(rows(&dir, "r"), expected, "outage after {k} requests");
        }
        let again = w.tmp.path().join(format!("again-{k}"));
        through(&FaultStore::new(inner.clone()), &again).unwrap();
        assert_eq!(
            rows(&again, "r"),
            expected,
            "restore after the outage at {k}"
        );
    }
}

/// A time target's stop is the end of the last record kept, not the start
/// of the first later commit: when that commit is the first record of a
/// segment, padding and the segment's header lie between the two, and the
/// restore still stops where the kept log ends.
#[test]
fn a_time_target_whose_next_commit_begins_a_segment_stops_at_the_kept_end() {
    const SEGMENT_BYTES: u64 = 128 << 10;
    const FIRST_RECORD: u64 = 4096; // the segment header's size
    let tmp = tempfile::tempdir().unwrap();
    let target = local_target(tmp.path());
    let db = open(&tmp.path().join("data"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    let options = BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..BackupOptions::default()
    };
    let backup = keel_archive::backup(&db, &archiver, &target, &options).unwrap();
    // One insert per transaction, with distinct commit times, until a
    // commit after the backup's end begins a segment and another follows.
    let mut written = BTreeMap::new();
    let mut found = None;
    for i in 0..40_000 {
        let mut tx = db.begin().unwrap();
        let v = value(i, 40 + (i * 7919) % 2000);
        tx.insert(rel, &v).unwrap();
        written.insert(tx.id(), v);
        tx.commit().unwrap();
        std::thread::sleep(Duration::from_micros(20));
        if i % 1000 == 999 {
            archiver
                .wait_archived(db.durable_lsn(), Duration::from_secs(30))
                .unwrap();
            let cs = commits_in(&target, 1);
            found = (1..cs.len() - 1)
                .find(|&k| {
                    cs[k].lsn.0 % SEGMENT_BYTES == FIRST_RECORD
                        && cs[k].lsn >= backup.end
                        && cs[k - 1].time_us < cs[k].time_us
                })
                .map(|k| (cs[k - 1].clone(), cs[k].clone()));
            if found.is_some() {
                break;
            }
        }
    }
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    let (before, first_later) = found.expect("no commit record began a segment");
    let mut expected: Vec<_> = commits_in(&target, 1)
        .iter()
        .filter(|c| c.lsn < first_later.lsn)
        .filter_map(|c| written.get(&c.txn).cloned())
        .collect();
    expected.sort();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    let dir = tmp.path().join("restored");
    let report = keel_archive::restore(
        &target,
        &dir,
        1,
        RestoreTarget::Time(first_later.time_us - 1),
        config(),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(report.log_end < first_later.lsn);
    assert!(report.log_end >= before.end);
    assert_eq!(
        report.timeline, 2,
        "a stop before the head starts a timeline"
    );
    assert_eq!(report.history.unwrap().switch, report.log_end);
    assert_eq!(rows(&dir, "r"), expected);
}

/// A restore of timeline 2 to a point before timeline 2's own switch
/// starts a timeline whose parent is the timeline holding the stop
/// (timeline 1), and that timeline restores to its end with exactly its
/// rows. A history that switches below its parent's own switch (parent 2
/// at the same stop) is read with every earlier timeline cut at that
/// switch, so it restores to the same rows.
#[test]
fn a_restore_before_its_timelines_switch_branches_from_the_timeline_holding_the_stop() {
    let w = world(0x5a1c);
    let after: Vec<_> = w
        .commits
        .iter()
        .filter(|c| c.end >= w.backup.end)
        .cloned()
        .collect();
    let restore_and_write = |from: u32, t: RestoreTarget, dir: &str, tag: &str| {
        let d = w.tmp.path().join(dir);
        let report = restore(&w, &d, from, t).unwrap();
        let db = open(&d);
        let rel = db.relation("r").unwrap().unwrap();
        let archiver = Archiver::start(db.clone(), &w.target, fast()).unwrap();
        let restored = sorted_rows(&db, "r");
        let mut rows = restored.clone();
        for i in 0..10 {
            let v = format!("{tag}-{i}").into_bytes();
            let mut tx = db.begin().unwrap();
            tx.insert(rel, &v).unwrap();
            tx.commit().unwrap();
            rows.push(v);
        }
        rows.sort();
        archiver
            .wait_archived(db.durable_lsn(), Duration::from_secs(30))
            .unwrap();
        archiver.stop().unwrap();
        Arc::try_unwrap(db).ok().unwrap().close().unwrap();
        (report, restored, rows)
    };
    // Timeline 2 branches from timeline 1 at a later commit.
    let (late, early) = (after[40].clone(), after[10].clone());
    let (r2, _, _) = restore_and_write(1, RestoreTarget::Txn(late.txn), "tl2", "tl2");
    assert_eq!(r2.timeline, 2);
    // Timeline 3: timeline 2 restored to a commit below its switch.
    let (r3, restored, expected) =
        restore_and_write(2, RestoreTarget::Txn(early.txn), "tl3", "tl3");
    assert_eq!(r3.timeline, 3);
    let h = r3.history.unwrap();
    assert_eq!(
        (h.parent, h.switch),
        (1, early.end),
        "the stop is on timeline 1"
    );
    assert_eq!(restored, model(&w, |c| c.lsn <= early.lsn));
    let again = w.tmp.path().join("tl3-again");
    restore(&w, &again, 3, RestoreTarget::End).unwrap();
    assert_eq!(rows(&again, "r"), expected);

    // The same branch recorded with timeline 2 as its parent: the path
    // reads nothing of timeline 2 and timeline 1 only up to the switch.
    let remote = Remote::open(&w.target, Duration::from_secs(5)).unwrap();
    let mut h4 = h.clone();
    h4.timeline = 4;
    h4.parent = 2;
    let switch2 = r2.history.unwrap().switch;
    assert!(h4.switch < switch2);
    remote
        .put_create(&remote.history_path(4), &h4.encode())
        .unwrap();
    let path = remote.timeline_path(4).unwrap();
    assert_eq!(
        path,
        vec![
            (1, Lsn::ZERO, Some(h4.switch)),
            (2, switch2, Some(h4.switch)),
            (4, h4.switch, None)
        ]
    );
    let d4 = w.tmp.path().join("tl4");
    let r4 = restore(&w, &d4, 4, RestoreTarget::End).unwrap();
    assert_eq!(r4.log_end, h4.switch);
    assert_eq!(rows(&d4, "r"), restored);
}

/// A restore marks the restored directory as followed by the archive (its
/// status file, archived up to the stop) and opens it with the log held,
/// so neither its own open and close nor any later open retires the
/// segment holding the stop: an archiver started on the restored database
/// continues the timeline from there, also after a restore to the end
/// whose log ended just before a segment's end.
#[test]
fn an_archiver_continues_a_database_restored_to_the_end() {
    const SEGMENT_BYTES: u64 = 128 << 10;
    let tmp = tempfile::tempdir().unwrap();
    let target = local_target(tmp.path());
    let db = open(&tmp.path().join("data"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    let options = BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..BackupOptions::default()
    };
    keel_archive::backup(&db, &archiver, &target, &options).unwrap();
    // Commit until the log ends within 200 bytes of a segment's end: the
    // records the restored database writes after the stop then move its
    // redo point into the next segment.
    for i in 0.. {
        let mut tx = db.begin().unwrap();
        tx.insert(rel, &value(i, 40 + (i * 7919) % 2000)).unwrap();
        tx.commit().unwrap();
        let durable = db.durable_lsn().0;
        if SEGMENT_BYTES - durable % SEGMENT_BYTES < 200 && durable > 2 * SEGMENT_BYTES {
            break;
        }
        assert!(i < 100_000, "the log never ended near a segment's end");
    }
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();

    let dir = tmp.path().join("restored");
    let report = keel_archive::restore(
        &target,
        &dir,
        1,
        RestoreTarget::End,
        config(),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(report.timeline, 1);
    let status = keel_archive::read_status(&dir).unwrap().unwrap();
    assert_eq!(status.archived_lsn, report.log_end);
    // The original primary is gone; the restored copy takes over and
    // archives on.
    let db = open(&dir);
    let rel = db.relation("r").unwrap().unwrap();
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    for i in 0..20 {
        let mut tx = db.begin().unwrap();
        tx.insert(rel, format!("after-{i}").as_bytes()).unwrap();
        tx.commit().unwrap();
    }
    let expected = sorted_rows(&db, "r");
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    let again = tmp.path().join("again");
    keel_archive::restore(
        &target,
        &again,
        1,
        RestoreTarget::End,
        config(),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(rows(&again, "r"), expected);
}
