//! `keel standby` and `keel promote` on a local-directory archive: a
//! standby set up from `keel backup`'s backup, caught up with `--once`
//! after the primary commits more, never opened for work, then promoted:
//! the primary's rows, a new timeline, and the old primary's archiver
//! fenced.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::sync::Arc;
use std::time::Duration;

use keel::{Config, Database};
use keel_archive::{ArchiveError, ArchiveTarget, Archiver, StoreConfig};

mod common;
use common::{keel, text, url};

fn insert(db: &Database, from: u32, to: u32) {
    let rel = db.relation("r").unwrap().unwrap();
    for i in from..to {
        let mut tx = db.begin().unwrap();
        tx.insert(rel, &i.to_le_bytes()).unwrap();
        tx.commit().unwrap();
    }
}

#[test]
fn standby_follows_with_once_and_promote_fences_the_old_primary() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, archive, s) = (
        tmp.path().join("data"),
        tmp.path().join("archive"),
        tmp.path().join("standby"),
    );
    std::fs::create_dir_all(&archive).unwrap();
    let db = Database::open(&data, Config::default()).unwrap();
    db.create_relation("r").unwrap();
    insert(&db, 0, 20);
    db.close().unwrap();
    let (data_s, s_s, url) = (
        data.display().to_string(),
        s.display().to_string(),
        url(&archive),
    );
    let out = keel(&["backup", "--dir", &data_s, "--archive", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let standby = |extra: &[&str]| {
        let mut args = vec!["standby", "--archive", &url, "--dir", &s_s];
        args.extend_from_slice(extra);
        keel(&args)
    };
    let out = standby(&["--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("set up a standby of timeline 00000001") && said.contains("poll: "),
        "{said}"
    );
    let err = Database::open(&s, Config::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("keel promote"), "{err}");

    // The primary commits more, archived by its own archiver.
    let target = ArchiveTarget::new(StoreConfig::Local(archive.clone()), "");
    let db = Arc::new(Database::open(&data, Config::default()).unwrap());
    let archiver = Archiver::start(db.clone(), &target, Default::default()).unwrap();
    insert(&db, 20, 30);
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    let out = standby(&["--once", "--poll", "100ms"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("poll: log ") && said.contains("redo "),
        "{said}"
    );
    let out = standby(&["--once", "--timeline", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("follows timeline 1"),
        "{}",
        text(&out.stderr)
    );
    let out = standby(&["--once", "--poll", "5h"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    let out = keel(&["promote", "--dir", &s_s, "--archive", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("timeline 00000002 from timeline 00000001"),
        "{said}"
    );
    assert!(
        archive
            .join("wal/00000002")
            .read_dir()
            .unwrap()
            .next()
            .is_some(),
        "the new timeline's first log is archived"
    );
    let out = keel(&["archive", "verify", "--archive", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let promoted = Database::open(&s, Config::default()).unwrap();
    let rel = promoted.relation("r").unwrap().unwrap();
    assert_eq!(promoted.begin().unwrap().scan(rel).unwrap().count(), 30);
    promoted.close().unwrap();
    let out = keel(&["promote", "--dir", &s_s, "--archive", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("already archived"),
        "{}",
        text(&out.stderr)
    );

    let err = Archiver::start(db.clone(), &target, Default::default()).unwrap_err();
    assert!(
        matches!(err, ArchiveError::Fenced { successor: 2, .. }),
        "{err}"
    );
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
}

/// `keel standby` killed with SIGKILL at several moments (its setup, its
/// appends, its applies): the next `keel standby --once` resumes it, and
/// its promotion holds every row.
#[test]
fn a_standby_killed_at_random_moments_resumes_and_promotes_to_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, archive, s) = (
        tmp.path().join("data"),
        tmp.path().join("archive"),
        tmp.path().join("standby"),
    );
    std::fs::create_dir_all(&archive).unwrap();
    let mut config = Config::default();
    config.wal.segment_size_bytes = 256 << 10;
    config.wal.max_batch_bytes = 64 << 10;
    let db = Database::open(&data, config.clone()).unwrap();
    let rel = db.create_relation("r").unwrap();
    let rows = |db: &Database, from: u32, to: u32| {
        for t in from..to {
            let mut tx = db.begin().unwrap();
            for r in 0..20u32 {
                tx.insert(
                    rel,
                    &[(t * 20 + r).to_le_bytes().as_slice(), &[7; 300]].concat(),
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
    };
    rows(&db, 0, 20);
    db.close().unwrap();
    let (data_s, s_s, url) = (
        data.display().to_string(),
        s.display().to_string(),
        url(&archive),
    );
    let out = keel(&["backup", "--dir", &data_s, "--archive", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let target = ArchiveTarget::new(StoreConfig::Local(archive.clone()), "");
    let db = Arc::new(Database::open(&data, config).unwrap());
    let archiver = Archiver::start(db.clone(), &target, Default::default()).unwrap();
    for batch in 0..6 {
        rows(&db, 20 + batch * 40, 60 + batch * 40);
        db.checkpoint().unwrap();
    }
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    // Kills land at fractions of what a whole setup and first poll take.
    let probe = tmp.path().join("probe").display().to_string();
    let started = std::time::Instant::now();
    let out = keel(&["standby", "--archive", &url, "--dir", &probe, "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let whole_ms = started.elapsed().as_millis() as u64;
    for (i, percent) in [20u64, 50, 80, 40, 95].into_iter().enumerate() {
        let after_ms = whole_ms * percent / 100;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
            .args([
                "standby",
                "--archive",
                &url,
                "--dir",
                &s_s,
                "--poll",
                "10ms",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(after_ms));
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.code().is_none(),
            "kill {i}: exited by itself: {}",
            text(&out.stderr)
        );
        if s.join(keel::datadir::layout::STANDBY_FILE).exists() {
            let err = Database::open(&s, Config::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("keel promote"), "kill {i}: {err}");
        }
    }
    let out = keel(&["standby", "--archive", &url, "--dir", &s_s, "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = keel(&["promote", "--dir", &s_s, "--archive", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let promoted = Database::open(&s, Config::default()).unwrap();
    let rel = promoted.relation("r").unwrap().unwrap();
    assert_eq!(
        promoted.begin().unwrap().scan(rel).unwrap().count(),
        260 * 20
    );
    promoted.close().unwrap();
}
