//! `keel standby` and `keel promote` on a local-directory archive: a
//! standby set up from `keel backup`'s backup, caught up with `--once`
//! after the primary commits more, never opened for work, then promoted:
//! the primary's rows, a new timeline, and the old primary's archiver
//! fenced.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keel::{Config, Database};
use keel_archive::{ArchiveError, ArchiveTarget, Archiver, StoreConfig};

mod common;
use common::{keel, text};

fn url(p: &Path) -> String {
    format!("file://{}", p.display())
}

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
