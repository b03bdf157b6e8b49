//! The warm standby (`keel_archive::standby`) on a local archive: the
//! follow-and-promote scenario (also run over S3 in s3.rs and
//! s3_external.rs), and a standby cut off from the store at each request
//! of its setup, or losing power between an append and its apply, that
//! resumes to the same log and rows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::standby::*;
use common::*;
use keel::Database;
use keel_archive::fault::FaultStore;
use keel_archive::standby::Standby;
use keel_archive::{ArchiveTarget, Archiver, StoreConfig};

fn local(root: &Path) -> ArchiveTarget {
    std::fs::create_dir_all(root).unwrap();
    ArchiveTarget::new(StoreConfig::Local(root.to_path_buf()), "db")
}

#[test]
fn a_standby_follows_its_primary_and_promotes_on_a_local_archive() {
    let tmp = tempfile::tempdir().unwrap();
    standby_follows_and_promotes(&local(&tmp.path().join("archive")));
}

fn standby(target: &ArchiveTarget, dir: &Path) -> keel_archive::Result<Standby> {
    Standby::open(target, dir, None, config(), Duration::from_secs(5)).map(|(s, _)| s)
}

/// Without the marker, the standby's database as a promotion would open
/// it (with no open transaction, exactly the primary's rows).
fn rows_as_promoted(dir: &Path, scratch: &Path) -> Vec<Vec<u8>> {
    copy_dir(dir, scratch);
    std::fs::remove_file(scratch.join(keel::datadir::layout::STANDBY_FILE)).unwrap();
    let _ = std::fs::remove_file(scratch.join(keel::datadir::layout::LOCK_FILE));
    rows(scratch, "r")
}

/// The standby's log from its control file's scan start (the segments
/// before it are removed at restartpoints) is `reference` from there.
fn log_from_scan_start(dir: &Path, reference: &[Rec]) {
    let control = dir.join("control");
    let scan = keel::recovery::Control::decode(&std::fs::read(&control).unwrap(), &control)
        .unwrap()
        .scan_start();
    let expected: Vec<&Rec> = reference.iter().filter(|(h, _)| h.lsn >= scan).collect();
    let got = dir_records(dir, scan);
    assert!(
        got.iter().eq(expected.iter().copied()),
        "{}: the log from {scan} differs from the archive's ({} records, expected {})",
        dir.display(),
        got.len(),
        expected.len()
    );
}

#[test]
fn a_standby_cut_off_or_power_cut_at_any_step_resumes_to_the_same_log_and_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let target = local(&tmp.path().join("archive"));
    let p = tmp.path().join("primary");
    let db = open(&p);
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    workload(&db, rel, 3, 10, 0);
    let options = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..keel_archive::BackupOptions::default()
    };
    let start = keel_archive::backup(&db, &archiver, &target, &options)
        .unwrap()
        .start;
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    // A standby set up now, then the primary writes several segments.
    let s = tmp.path().join("standby");
    standby(&target, &s).unwrap().poll().unwrap();
    workload(&db, rel, 12, 100, 5);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    let expected = rows(&p, "r");
    assert_eq!(expected.len(), 30 + 12 * 100);

    // Power cut between an append and its apply: the append synced up to
    // some LSN, the rest is lost (zeroes, later segments gone) or torn (a
    // wrong byte), and no apply ran.
    let mut fetched = standby(&target, &s).unwrap();
    let f = fetched.fetch().unwrap();
    drop(fetched);
    assert!(f.to.0 - f.from.0 > 2 * (128 << 10), "{f}");
    // Appended, not applied: nothing retired yet, the whole log is there.
    let reference = dir_records(&s, start);
    {
        let clean = tmp.path().join("clean");
        copy_dir(&s, &clean);
        let r = standby(&target, &clean).unwrap().poll().unwrap();
        assert_eq!(r.to, f.to);
        assert!(r.apply.is_some(), "the first poll of a process applies");
        assert!(
            r.retired > 0,
            "segments before the restartpoint removed: {r}"
        );
        log_from_scan_start(&clean, &reference);
        assert_eq!(
            rows_as_promoted(&clean, &tmp.path().join("clean-open")),
            expected
        );
    }
    let segment = 128u64 << 10;
    let mut seed = 0x5eed_u64;
    for shape in 0..8 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let cut = f.from.0 + (seed >> 11) % (f.to.0 - f.from.0);
        let dir = tmp.path().join(format!("cut-{shape}"));
        copy_dir(&s, &dir);
        let wal = dir.join("wal");
        let name = |n: u64| wal.join(keel::wal::segment::segment_file_name(n));
        let off = cut % segment;
        {
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(name(cut / segment))
                .unwrap();
            match shape % 2 {
                0 => file
                    .write_all_at(&vec![0; (segment - off) as usize], off)
                    .unwrap(),
                _ => file.write_all_at(&[0xA5; 7], off).unwrap(),
            }
        }
        if shape % 2 == 0 {
            for n in cut / segment + 1..=f.to.0 / segment {
                let _ = std::fs::remove_file(name(n));
            }
        }
        let r = standby(&target, &dir).unwrap().poll().unwrap();
        assert_eq!(r.to, f.to, "shape {shape}, cut at {cut:#x}");
        assert!(r.apply.is_some());
        log_from_scan_start(&dir, &reference);
        assert_eq!(
            rows_as_promoted(&dir, &tmp.path().join(format!("open-{shape}"))),
            expected,
            "shape {shape}"
        );
    }

    // A store outage at each request of a new standby's setup and first
    // poll: what it leaves is never opened for work, and a later run with
    // the store back finishes it.
    let inner = target.build_store().unwrap();
    let through =
        |store: &FaultStore| ArchiveTarget::new(StoreConfig::Custom(Arc::new(store.clone())), "db");
    let counted = FaultStore::new(inner.clone());
    standby(&through(&counted), &tmp.path().join("counted"))
        .unwrap()
        .poll()
        .unwrap();
    let st = counted.stats();
    let requests = st.puts + st.gets + st.lists;
    assert!(requests > 5, "{st:?}");
    for k in 0..requests {
        let store = FaultStore::new(inner.clone());
        store.outage_after(k);
        let dir = tmp.path().join(format!("outage-{k}"));
        let err = standby(&through(&store), &dir).and_then(|mut s| s.poll().map(|_| ()));
        assert!(err.is_err(), "outage after {k} requests");
        if dir.exists() {
            let refused = Database::open(&dir, config()).unwrap_err().to_string();
            assert!(refused.contains("keel promote"), "{refused}");
        }
        let r = standby(&target, &dir).unwrap().poll().unwrap();
        assert_eq!(r.to, f.to, "outage after {k}");
        log_from_scan_start(&dir, &reference);
    }
}

/// A store outage at each request of a promotion in turn: the promotion
/// fails; what it leaves is a standby (refused for work) or a promoted
/// directory; run again with the store back it finishes, with exactly the
/// primary's rows, on the timeline the fence names.
#[test]
fn a_promotion_cut_off_at_any_request_finishes_when_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    let target = local(&archive);
    let p = tmp.path().join("primary");
    let db = open(&p);
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    workload(&db, rel, 2, 10, 0);
    let options = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..keel_archive::BackupOptions::default()
    };
    keel_archive::backup(&db, &archiver, &target, &options).unwrap();
    workload(&db, rel, 3, 10, 2);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    let expected = rows(&p, "r");
    let s = tmp.path().join("standby");
    standby(&target, &s).unwrap().poll().unwrap();

    let faulty =
        |store: &FaultStore| ArchiveTarget::new(StoreConfig::Custom(Arc::new(store.clone())), "db");
    let copy = |k: &str| {
        let (a, d) = (
            tmp.path().join(format!("archive-{k}")),
            tmp.path().join(format!("standby-{k}")),
        );
        copy_dir(&archive, &a);
        copy_dir(&s, &d);
        (a, d)
    };
    // The promotion's own requests (its archiver does not compact, and
    // nothing else uses the store), the same in every run: a cut after
    // request k always cuts the same one.
    let count = |name: &str| {
        let (a, d) = copy(name);
        let counted = FaultStore::new(local(&a).build_store().unwrap());
        standby(&faulty(&counted), &d).unwrap().promote().unwrap();
        counted.stats()
    };
    let st = count("counted");
    let requests = st.puts + st.gets + st.lists;
    assert!(requests > 5, "{st:?}");
    let again = count("counted-again");
    assert_eq!(
        again.puts + again.gets + again.lists,
        requests,
        "{st:?}, then {again:?}"
    );
    for k in 0..requests {
        let (a, d) = copy(&k.to_string());
        let store = FaultStore::new(local(&a).build_store().unwrap());
        store.outage_after(k);
        let t = faulty(&store);
        // A short limit: with the store down, the promotion's archiver
        // gives up on its first log after it.
        let cut = Standby::open(&t, &d, None, config(), Duration::from_millis(300))
            .and_then(|(s, _)| s.promote());
        assert!(cut.is_err(), "outage after {k} requests");
        let good = local(&a);
        let marker = keel_archive::standby::read_marker(&d).unwrap();
        let again = match marker {
            Some(_) => {
                let refused = Database::open(&d, config()).unwrap_err().to_string();
                assert!(refused.contains("keel promote"), "{refused}");
                standby(&good, &d).unwrap().promote().map(|_| ())
            }
            None => {
                keel_archive::standby::finish_promotion(&good, &d, config(), Duration::from_secs(5))
                    .map(|_| ())
            }
        };
        if let Err(e) = again {
            // The promotion's first log landed before the cut: the
            // directory is a promoted database already.
            assert!(e.to_string().contains("already archived"), "k {k}: {e}");
        }
        let remote = keel_archive::Remote::open(&good, Duration::from_secs(5)).unwrap();
        let fence = remote.read_fence(1).unwrap().expect("a fence");
        assert_eq!(
            keel_archive::restore::recorded_timeline(&d).unwrap(),
            Some(fence.successor),
            "outage after {k}: the directory is on the fenced successor"
        );
        assert_eq!(rows(&d, "r"), expected, "outage after {k}");
    }
}

/// A standby whose log is past the switch of a newer timeline branched
/// from the one it follows (a restore to an earlier point) cannot follow
/// it: it goes on with its timeline and its poll names the one it cannot
/// follow; and once a fence names that timeline (as another standby's
/// promotion at that point would write) it cannot be promoted either.
#[test]
fn a_standby_past_a_newer_timelines_switch_stays_and_cannot_promote_past_a_fence() {
    let tmp = tempfile::tempdir().unwrap();
    let target = local(&tmp.path().join("archive"));
    let db = open(&tmp.path().join("primary"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &target, fast()).unwrap();
    workload(&db, rel, 2, 10, 0);
    let options = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..keel_archive::BackupOptions::default()
    };
    let m = keel_archive::backup(&db, &archiver, &target, &options).unwrap();
    workload(&db, rel, 3, 10, 0);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    let dir = tmp.path().join("standby");
    let mut s = standby(&target, &dir).unwrap();
    let end = s.poll().unwrap().to;
    assert!(m.end < end);

    // A restore to the backup's end starts timeline 2 there, before the
    // standby's log end, and its database commits on it.
    let rdir = tmp.path().join("restored");
    let restored = keel_archive::restore(
        &target,
        &rdir,
        1,
        keel_archive::RestoreTarget::Lsn(m.end),
        config(),
        Duration::from_secs(5),
    )
    .unwrap();
    let switch = restored.history.as_ref().unwrap().switch;
    assert_eq!(restored.timeline, 2);
    assert!(switch < end);
    let rdb = open(&rdir);
    let rarchiver = Archiver::start(rdb.clone(), &target, fast()).unwrap();
    workload(&rdb, rdb.relation("r").unwrap().unwrap(), 1, 5, 0);
    rarchiver
        .wait_archived(rdb.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    rarchiver.stop().unwrap();
    Arc::try_unwrap(rdb).ok().unwrap().close().unwrap();
    let remote = keel_archive::Remote::open(&target, Duration::from_secs(5)).unwrap();
    let r = s.poll().unwrap();
    assert_eq!(
        (r.switched_to, r.cannot_follow, r.promoted_to, r.to),
        (None, Some((2, switch)), None, end),
        "{r}"
    );
    assert!(r.to_string().contains("cannot follow"), "{r}");
    assert_eq!(s.timeline(), 1);

    let fence = keel_archive::fence::Fence {
        database_id: m.database_id,
        timeline: 1,
        successor: 2,
        switch,
        standby_id: 1,
        created_us: 1,
    };
    assert_eq!(remote.put_fence(&fence).unwrap(), None);
    let r = s.poll().unwrap();
    assert_eq!(
        (r.cannot_follow, r.promoted_to),
        (Some((2, switch)), Some(2))
    );
    assert!(r.to_string().contains("retired primary"), "{r}");
    let err = s.promote().unwrap_err().to_string();
    assert!(err.contains("already promoted to timeline 2"), "{err}");
    assert_eq!(
        keel_archive::standby::read_marker(&dir)
            .unwrap()
            .map(|m| m.timeline),
        Some(1)
    );
    let refused = Database::open(&dir, config()).unwrap_err().to_string();
    assert!(refused.contains("keel promote"), "{refused}");
}
