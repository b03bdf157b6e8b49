//! The warm standby scenario, run against each store: a standby set up
//! from a backup follows a primary across polls with its log equal to the
//! primary's, is never opened for work, and its promotion keeps exactly
//! the archived commits (an open transaction undone), starts a timeline,
//! fences the old primary's archiver, and refuses a second standby.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keel::Database;
use keel::types::Lsn;
use keel::wal::{RecoveryMode, WalReader};
use keel_archive::standby::Standby;
use keel_archive::{ArchiveError, ArchiveTarget, Archiver, RestoreTarget};

use super::*;

/// The records of the log in `dir` from `from`, up to its end.
pub fn dir_records(dir: &Path, from: Lsn) -> Vec<Rec> {
    let io = keel_io::open_backend(&keel_io::IoConfig::default()).unwrap();
    WalReader::open_read_only(
        io,
        &dir.join("wal"),
        from,
        RecoveryMode::AbsoluteConsistency,
    )
    .unwrap()
    .map(|r| {
        let r = r.unwrap();
        (r.header, r.payload)
    })
    .collect()
}

fn open_standby(target: &ArchiveTarget, dir: &Path) -> Standby {
    Standby::open(target, dir, None, config(), Duration::from_secs(10))
        .unwrap()
        .0
}

pub fn standby_follows_and_promotes(target: &ArchiveTarget) {
    let tmp = tempfile::tempdir().unwrap();
    let (p, s, s2) = (
        tmp.path().join("primary"),
        tmp.path().join("standby"),
        tmp.path().join("standby2"),
    );
    let db = open(&p);
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), target, fast()).unwrap();
    let mut committed = Vec::new();
    let mut insert = |db: &Database, i: usize| {
        let mut tx = db.begin().unwrap();
        tx.insert(rel, &value(i, 200)).unwrap();
        tx.commit().unwrap();
        committed.push(value(i, 200));
    };
    for i in 0..20 {
        insert(&db, i);
    }
    let options = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..keel_archive::BackupOptions::default()
    };
    let m = keel_archive::backup(&db, &archiver, target, &options).unwrap();
    for i in 20..40 {
        insert(&db, i);
    }
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    let (mut standby, setup) =
        Standby::open(target, &s, None, config(), Duration::from_secs(10)).unwrap();
    let setup = setup.unwrap();
    assert_eq!(setup.backup, m);
    let err = Database::open(&s, config()).unwrap_err().to_string();
    assert!(err.contains("keel promote"), "{err}");
    let mut other = open_standby(target, &s2);
    other.poll().unwrap();
    // Three rounds: commits (a checkpoint in the second), archived, polled.
    let mut restartpoints = 0;
    for round in 0..3 {
        for i in 0..15 {
            insert(&db, 100 * (round + 1) + i);
        }
        if round == 1 {
            db.checkpoint().unwrap();
            insert(&db, 999);
        }
        archiver
            .wait_archived(db.durable_lsn(), Duration::from_secs(30))
            .unwrap();
        let r = standby.poll().unwrap();
        assert!(r.to > r.from, "round {round}: {r}");
        let apply = r.apply.as_ref().unwrap();
        assert_eq!(apply.recovery.txns_undone, 0);
        restartpoints += usize::from(apply.restartpoint.is_some());
        assert_eq!(
            dir_records(&s, m.start),
            log_records(&db, m.start)
                .into_iter()
                .filter(|(h, _)| h.lsn.0 + u64::from(h.total_len) <= r.to.0)
                .collect::<Vec<_>>(),
            "round {round}: the standby's log is the primary's"
        );
        assert_eq!(r.promoted_to, None);
        let again = standby.poll().unwrap();
        assert_eq!(
            (again.from, again.to, again.apply.is_none()),
            (r.to, r.to, true)
        );
    }
    assert!(restartpoints >= 1, "the checkpoint became a restartpoint");
    // The segments before the restartpoint are gone; the rest remain.
    let scan_start = keel::recovery::Control::decode(
        &std::fs::read(s.join("control")).unwrap(),
        &s.join("control"),
    )
    .unwrap()
    .scan_start();
    let oldest = std::fs::read_dir(s.join("wal"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            u64::from_str_radix(name.strip_suffix(".wal")?, 16).ok()
        })
        .min()
        .unwrap();
    assert_eq!(
        oldest,
        scan_start.0 / (128 << 10),
        "segments before the restartpoint removed"
    );
    // A transaction open at the promotion, its insert archived.
    let mut loser = db.begin().unwrap();
    loser.insert(rel, b"never committed").unwrap();
    insert(&db, 5000);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    let before = snapshot(target);
    let report = standby.promote().unwrap();
    assert_eq!((report.parent, report.timeline), (1, 2));
    assert!(report.recovery.txns_undone >= 1, "{:?}", report.recovery);
    assert!(!s.join(keel::datadir::layout::STANDBY_FILE).exists());
    let remote = keel_archive::Remote::open(target, Duration::from_secs(10)).unwrap();
    let first = remote.list_chunks(2).unwrap();
    assert_eq!(
        first.first().map(|c| c.start),
        Some(report.switch),
        "the new timeline's log is archived from the switch"
    );
    let mut expected = committed.clone();
    expected.sort();
    assert_eq!(rows(&s, "r"), expected);
    // The old primary goes on; its archiver is fenced.
    let mut tx = db.begin().unwrap();
    tx.insert(rel, b"after the promotion").unwrap();
    tx.commit().unwrap();
    let err = archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap_err();
    let stopped = archiver.stop().unwrap_err();
    for e in [err.to_string(), stopped.to_string()] {
        assert!(e.contains("promoted to timeline 2"), "{e}");
    }
    drop(loser);
    let restart = Archiver::start(db.clone(), target, fast()).unwrap_err();
    assert!(
        matches!(restart, ArchiveError::Fenced { successor: 2, .. }),
        "{restart}"
    );
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    // Nothing in the archive was overwritten.
    let after: std::collections::BTreeMap<_, _> = snapshot(target).into_iter().collect();
    for (name, bytes) in &before {
        assert_eq!(after.get(name), Some(bytes), "{name} changed");
    }
    // The promoted database archives on timeline 2; a restore follows it.
    let db = open(&s);
    let archiver = Archiver::start(db.clone(), target, fast()).unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(rel, b"on timeline 2").unwrap();
    tx.commit().unwrap();
    let head = db.durable_lsn();
    archiver
        .wait_archived(head, Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    // The second standby of the same primary, behind the switch, follows
    // the promoted one onto timeline 2 and stays a standby.
    let r = other.poll().unwrap();
    assert_eq!(r.switched_to, Some((2, report.switch)), "{r}");
    assert_eq!(
        (r.promoted_to, r.cannot_follow, r.to),
        (None, None, head),
        "{r}"
    );
    assert!(
        r.to_string().contains("now following timeline 00000002"),
        "{r}"
    );
    assert_eq!(other.timeline(), 2);
    drop(other);
    // Asked for timeline 1 it follows on timeline 2, which descends from
    // it; a timeline it does not descend from is refused.
    let again = Standby::open(target, &s2, Some(1), config(), Duration::from_secs(10));
    assert_eq!(again.unwrap().0.timeline(), 2);
    let err = Standby::open(target, &s2, Some(7), config(), Duration::from_secs(10))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not descend from timeline 7"), "{err}");
    assert_eq!(
        keel_archive::standby::read_marker(&s2)
            .unwrap()
            .map(|m| m.timeline),
        Some(2)
    );
    let err = Database::open(&s2, config()).unwrap_err().to_string();
    assert!(err.contains("keel promote"), "{err}");
    let restored = tmp.path().join("restored");
    let r = keel_archive::restore(
        target,
        &restored,
        2,
        RestoreTarget::End,
        config(),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.timeline, 2);
    expected.push(b"on timeline 2".to_vec());
    expected.sort();
    assert_eq!(rows(&restored, "r"), expected);
    // The second standby, promoted, has the same rows and branches from
    // timeline 2.
    let report = open_standby(target, &s2).promote().unwrap();
    assert_eq!((report.parent, report.timeline), (2, 3));
    assert_eq!(rows(&s2, "r"), expected);
}
