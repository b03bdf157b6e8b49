//! `keel archive list` and `keel archive verify` on a local-directory
//! archive written by the Archiver from a real database: what list shows,
//! verify passing, then failing on a flipped byte and a missing chunk with
//! an error naming the object; and archive URLs and credentials files
//! refused with a clear error before anything is read.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel::{Config, Database, Lsn};
use keel_archive::{ArchiveTarget, Archiver, ArchiverOptions, StoreConfig};

mod common;
use common::{keel, text, url};

/// A database with small segments archived to `archive` (a local
/// directory, empty prefix), without compaction: the tests that use it
/// name, change and remove chunk files, which an archiver's compactor
/// could replace by a compacted object at any moment before it stops.
/// Returns the database id and the LSN range the archive covers.
fn make_archive(data: &Path, archive: &Path) -> (u64, Lsn, Lsn) {
    make_archive_with(data, archive, false)
}

/// As [`make_archive`], compacting as it goes or not.
fn make_archive_with(data: &Path, archive: &Path, compact: bool) -> (u64, Lsn, Lsn) {
    let mut config = Config {
        checkpoint_interval: None,
        ..Config::default()
    };
    config.wal.segment_size_bytes = 128 << 10;
    config.wal.max_batch_bytes = 32 << 10;
    config.wal.min_wal_size_bytes = 0;
    let db = Arc::new(Database::open(data, config).unwrap());
    let rel = db.create_relation("r").unwrap();
    let start = db.durable_lsn();
    let target = ArchiveTarget::new(StoreConfig::Local(archive.to_path_buf()), "");
    let options = ArchiverOptions {
        max_chunk_bytes: keel::wal::record::MAX_RECORD_SIZE,
        max_delay: Duration::from_millis(20),
        poll_interval: Duration::from_millis(2),
        compact,
        ..ArchiverOptions::default()
    };
    let archiver = Archiver::start(db.clone(), &target, options).unwrap();
    for t in 0..40usize {
        let mut tx = db.begin().unwrap();
        for r in 0..20usize {
            tx.insert(rel, &vec![(t * 20 + r) as u8; 300]).unwrap();
        }
        tx.commit().unwrap();
    }
    let end = archiver.stop().unwrap();
    (db.database_id(), start, end)
}

fn chunks(archive: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(archive.join("wal/00000001"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Runs `keel archive ARGS`: exit code and stdout + stderr.
fn archive(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["archive"];
    all.extend_from_slice(args);
    let out = keel(&all);
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[test]
fn list_shows_each_timeline_from_the_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let (id, start, end) = make_archive(&tmp.path().join("data"), &dir);
    let files = chunks(&dir);
    assert!(files.len() >= 3, "{files:?}");
    let (code, out) = archive(&["list", "--archive", &url(&dir), "--json"]);
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let tl = &v["timelines"].as_array().unwrap()[..];
    assert_eq!(tl.len(), 1, "{v}");
    let t = &tl[0];
    assert_eq!(t["timeline"], 1);
    assert_eq!(t["database_id"], id);
    assert_eq!(t["chunks"], files.len() as u64);
    assert_eq!(t["gaps"], 0);
    assert_eq!(t["start_lsn"], start.0);
    assert_eq!(t["end_lsn"], end.0);
    let (min, max) = (
        t["min_commit_time_us"].as_u64().unwrap(),
        t["max_commit_time_us"].as_u64().unwrap(),
    );
    assert!(min > 1_600_000_000_000_000 && min <= max, "{t}");
    let stored: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    assert_eq!(t["stored_bytes"], stored);

    let (code, out) = archive(&["list", "--archive", &url(&dir)]);
    assert_eq!(code, Some(0), "{out}");
    let row = out.lines().find(|l| l.starts_with("00000001")).unwrap();
    assert!(
        row.contains(&start.to_string()) && row.contains(&end.to_string()),
        "{out}"
    );
    assert!(row.contains('Z'), "commit times in UTC: {out}");
}

#[test]
fn verify_passes_then_names_the_first_bad_object() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    make_archive(&tmp.path().join("data"), &dir);
    let (code, out) = archive(&["verify", "--archive", &url(&dir)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("timeline 00000001") && out.contains("verified"),
        "{out}"
    );

    let files = chunks(&dir);
    let victim = &files[1];
    let name = victim.file_name().unwrap().to_str().unwrap();
    let original = std::fs::read(victim).unwrap();
    let mut flipped = original.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    std::fs::write(victim, &flipped).unwrap();
    let (code, out) = archive(&["verify", "--archive", &url(&dir)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(name) && out.contains("body checksum mismatch"),
        "{out}"
    );
    // list reads headers only: the flipped body is not its business.
    assert_eq!(archive(&["list", "--archive", &url(&dir)]).0, Some(0));

    std::fs::remove_file(victim).unwrap();
    let next = files[2].file_name().unwrap().to_str().unwrap();
    let (code, out) = archive(&["verify", "--archive", &url(&dir)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(next) && out.contains("continues at LSN"),
        "{out}"
    );
    let (code, out) = archive(&["list", "--archive", &url(&dir), "--json"]);
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["timelines"][0]["gaps"], 1, "{v}");

    std::fs::write(victim, &original).unwrap();
    assert_eq!(archive(&["verify", "--archive", &url(&dir)]).0, Some(0));
}

#[test]
fn bad_locations_are_refused_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    for (args, expect) in [
        (
            vec!["--archive", "/some/dir"],
            "expected s3://BUCKET/PREFIX",
        ),
        (vec!["--archive", "file://relative"], "absolute path"),
        (vec!["--archive", "s3:///prefix"], "no bucket"),
        (vec!["--archive", &url(&missing)], "no such directory"),
        (
            vec![
                "--archive",
                &url(tmp.path()),
                "--endpoint",
                "http://127.0.0.1:1",
            ],
            "are for s3:// archives",
        ),
    ] {
        for cmd in ["list", "verify"] {
            let mut all = vec![cmd];
            all.extend_from_slice(&args);
            let (code, out) = archive(&all);
            assert_eq!(code, Some(1), "{all:?}: {out}");
            assert!(out.contains(expect), "{all:?}: {out}");
        }
    }
    assert!(!missing.exists());
    // An empty directory lists as empty; verifying it is a failure.
    let (code, out) = archive(&["list", "--archive", &url(tmp.path())]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no timelines"), "{out}");
    let (code, out) = archive(&["verify", "--archive", &url(tmp.path())]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no chunks to verify"), "{out}");
}

/// A request timeout of zero, or one too long to add to a clock reading,
/// is a usage error before anything is touched.
#[test]
fn timeouts_out_of_range_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["0", "86401", "18446744073709551615"] {
        for cmd in ["list", "verify"] {
            let (code, out) = archive(&[cmd, "--archive", &url(tmp.path()), "--timeout", bad]);
            assert_eq!(code, Some(2), "{cmd} --timeout {bad}: {out}");
            assert!(out.contains("--timeout"), "{cmd} --timeout {bad}: {out}");
        }
    }
    let data = tmp.path().join("data");
    let out = keel(&[
        "backup",
        "--dir",
        data.to_str().unwrap(),
        "--archive",
        &url(tmp.path()),
        "--archive-timeout",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--archive-timeout"));
    assert!(!data.exists(), "the refused backup made its directory");
}

/// Secrets are never arguments; a credentials file others may read is
/// refused before any request, and its contents are never printed.
#[cfg(unix)]
#[test]
fn credentials_come_only_from_an_owner_only_file_or_the_environment() {
    use std::os::unix::fs::PermissionsExt;
    let (code, out) = archive(&["list", "--archive", "s3://b/p", "--secret-access-key", "x"]);
    assert_eq!(code, Some(2), "no such argument: {out}");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("credentials");
    let secret = "do-not-print-this-secret";
    std::fs::write(
        &file,
        format!("access_key_id = k\nsecret_access_key = {secret}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = archive(&[
        "verify",
        "--archive",
        "s3://bucket/prefix",
        "--endpoint",
        "http://127.0.0.1:9",
        "--credentials-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("chmod 600") && !out.contains(secret), "{out}");
}

/// `keel backup` into a local archive, `keel archive list` showing it,
/// `keel restore` into a new directory holding every row (and `keel check`
/// passing on it), and a second restore into that directory refused.
#[test]
fn backup_then_restore_round_trips_and_a_used_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, dir) = (tmp.path().join("data"), tmp.path().join("archive"));
    std::fs::create_dir_all(&dir).unwrap();
    let db = Database::open(&data, Config::default()).unwrap();
    let rel = db.create_relation("r").unwrap();
    for i in 0..50u32 {
        let mut tx = db.begin().unwrap();
        tx.insert(rel, &i.to_le_bytes()).unwrap();
        tx.commit().unwrap();
    }
    db.close().unwrap();
    let data_s = data.display().to_string();
    // The archive-failure policy flags of `keel shell`: checked, then used.
    let base = ["backup", "--dir", &data_s, "--archive", &url(&dir)];
    let out = keel(&[&base[..], &["--on-archive-failure", "stall"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("needs --max-unarchived"));
    let stall = ["--on-archive-failure", "stall", "--max-unarchived", "64MiB"];
    let out = keel(&[&base[..], &stall[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("3 files"),
        "{}",
        text(&out.stdout)
    );
    let (code, out) = archive(&["list", "--archive", &url(&dir), "--json"]);
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["backups"].as_array().unwrap().len(), 1, "{v}");
    let restored = tmp.path().join("restored");
    let restored_s = restored.display().to_string();
    let out = keel(&["restore", "--archive", &url(&dir), "--dir", &restored_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = keel(&["check", "--dir", &restored_s]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let db = Database::open(&restored, Config::default()).unwrap();
    let rel = db.relation("r").unwrap().unwrap();
    assert_eq!(db.begin().unwrap().scan(rel).unwrap().count(), 50);
    db.close().unwrap();
    let out = keel(&["restore", "--archive", &url(&dir), "--dir", &restored_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not empty"),
        "{}",
        text(&out.stderr)
    );
}

/// `keel archive verify` checks backups: a complete one passes, a folder
/// without a manifest is reported incomplete (not an error), and a
/// backup file whose bytes differ from its manifest fails the command
/// with an error naming the backup and the file.
#[test]
fn verify_checks_each_backup_and_names_a_damaged_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, dir) = (tmp.path().join("data"), tmp.path().join("archive"));
    std::fs::create_dir_all(&dir).unwrap();
    let db = Database::open(&data, Config::default()).unwrap();
    let rel = db.create_relation("r").unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..200u32 {
        tx.insert(rel, &[i.to_le_bytes().to_vec(), vec![7; 200]].concat())
            .unwrap();
    }
    tx.commit().unwrap();
    db.close().unwrap();
    let data_s = data.display().to_string();
    // The archive-failure policy flags of `keel shell`: checked, then used.
    let base = ["backup", "--dir", &data_s, "--archive", &url(&dir)];
    let out = keel(&[&base[..], &["--on-archive-failure", "stall"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("needs --max-unarchived"));
    let stall = ["--on-archive-failure", "stall", "--max-unarchived", "64MiB"];
    let out = keel(&[&base[..], &stall[..]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (code, out) = archive(&["verify", "--archive", &url(&dir)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 complete backups"), "{out}");
    let timeline = dir.join("backups/00000001");
    let folder = std::fs::read_dir(&timeline)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = folder.file_name().unwrap().to_str().unwrap().to_string();
    // A backup cut off before its manifest: same start, another run id.
    let start = name.split('-').next().unwrap();
    let cut = timeline.join(format!("{start}-00000000000000AB"));
    std::fs::create_dir_all(cut.join("files")).unwrap();
    std::fs::copy(folder.join("files/control"), cut.join("files/control")).unwrap();
    let (code, out) = archive(&["verify", "--archive", &url(&dir)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("{start}-00000000000000AB: incomplete")),
        "{out}"
    );
    let heap = std::fs::read_dir(folder.join("files/rel"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&heap).unwrap();
    bytes[5000] ^= 0x10;
    std::fs::write(&heap, &bytes).unwrap();
    let (code, out) = archive(&["verify", "--archive", &url(&dir)]);
    assert_eq!(code, Some(1), "{out}");
    let heap_name = heap.file_name().unwrap().to_str().unwrap();
    assert!(
        out.contains(&name) && out.contains(heap_name) && out.contains("checksum mismatch"),
        "{out}"
    );
    // The restore has no usable backup left and says which and why.
    let restored = tmp.path().join("restored").display().to_string();
    let out = keel(&["restore", "--archive", &url(&dir), "--dir", &restored]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no usable backup") && err.contains(heap_name),
        "{err}"
    );
}

/// `keel restore` to a transaction, to an RFC 3339 time and to an LSN:
/// each directory holds exactly the commits up to its target, a point
/// before the head starts a timeline that `keel archive list` shows, and a
/// malformed target is refused naming the flag.
#[test]
fn restore_to_a_point_keeps_exactly_the_commits_up_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, dir) = (tmp.path().join("data"), tmp.path().join("archive"));
    std::fs::create_dir_all(&dir).unwrap();
    let target = ArchiveTarget::new(StoreConfig::Local(dir.clone()), "");
    let db = Arc::new(Database::open(&data, Config::default()).unwrap());
    let rel = db.create_relation("r").unwrap();
    let id = db.database_id();
    let options = ArchiverOptions {
        max_delay: Duration::from_millis(20),
        poll_interval: Duration::from_millis(2),
        ..ArchiverOptions::default()
    };
    let archiver = Archiver::start(db.clone(), &target, options).unwrap();
    let commit = |i: u32| {
        let mut tx = db.begin().unwrap();
        let id = tx.id();
        tx.insert(rel, &i.to_le_bytes()).unwrap();
        tx.commit().unwrap();
        (id, db.durable_lsn())
    };
    for i in 0..10 {
        commit(i);
    }
    keel_archive::backup(
        &db,
        &archiver,
        &target,
        &keel_archive::BackupOptions::default(),
    )
    .unwrap();
    let mut marks = Vec::new();
    for i in 10..40 {
        let (txn, lsn) = commit(i);
        marks.push((txn, lsn, std::time::SystemTime::now()));
        std::thread::sleep(Duration::from_millis(3));
    }
    archiver
        .wait_archived(db.durable_lsn(), Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();

    let rows = |d: &Path| {
        let db = Database::open(d, Config::default()).unwrap();
        let rel = db.relation("r").unwrap().unwrap();
        let n = db.begin().unwrap().scan(rel).unwrap().count();
        db.close().unwrap();
        n
    };
    let restore = |name: &str, flag: &str, value: &str| {
        let d = tmp.path().join(name);
        let out = keel(&[
            "restore",
            "--archive",
            &url(&dir),
            "--dir",
            &d.display().to_string(),
            flag,
            value,
        ]);
        (d, out)
    };
    // Transaction 15 of the workload (the sixth after the backup).
    let (d, out) = restore("txn", "--txn", &marks[5].0.0.to_string());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("started timeline 00000002"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(rows(&d), 16);
    // A time read after commit 25 was durable and before commit 26 began.
    let at = chrono::DateTime::<chrono::Utc>::from(marks[15].2)
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (d, out) = restore("time", "--time", &at);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(rows(&d), 26);
    // The LSN where commit 30's record ends (the durable end after it).
    let lsn = format!("0x{:x}", marks[20].1.0);
    let (d, out) = restore("lsn", "--lsn", &lsn);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(rows(&d), 31);
    let (code, out) = archive(&["list", "--archive", &url(&dir)]);
    assert_eq!(code, Some(0), "{out}");
    for t in ["00000002", "00000003", "00000004"] {
        assert!(
            out.contains(&format!("timeline {t} branched from 00000001")),
            "{out}"
        );
    }
    // Verify follows the histories; a history whose parent has no chunks
    // (a foreign or hand-made object) fails it, naming the object.
    let (code, out) = archive(&["verify", "--archive", &url(&dir)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("3 timeline histories"), "{out}");
    let stray = keel_archive::History {
        database_id: id,
        timeline: 9,
        parent: 7,
        switch: marks[1].1,
        target: keel_archive::RestoreTarget::End,
        created_us: 1,
    };
    std::fs::write(dir.join("timelines/00000009.history"), stray.encode()).unwrap();
    let (code, out) = archive(&["verify", "--archive", &url(&dir)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("00000009.history: its parent timeline 00000007 has no history"),
        "{out}"
    );
    let (_, out) = restore("bad", "--time", "yesterday");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--time \"yesterday\""),
        "{}",
        text(&out.stderr)
    );
}

/// `keel archive compact` on an archive whose archiver did not compact:
/// `list` then counts compacted objects, `verify` passes, a chunk put
/// back inside a compacted object (a compaction cut before its deletes)
/// is listed as a leftover, verified against the compacted object and
/// deleted by the next `compact`.
#[test]
fn compact_replaces_completed_segments_and_list_and_verify_count_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let (_, start, end) = make_archive_with(&tmp.path().join("data"), &dir, false);
    let before = chunks(&dir);
    assert!(before.iter().all(|p| p.extension().unwrap() == "chunk"));
    let saved: Vec<(PathBuf, Vec<u8>)> = before
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    let (code, out) = archive(&["compact", "--archive", &url(&dir)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("compacted objects written"), "{out}");
    let after = chunks(&dir);
    assert!(after.len() < before.len(), "{after:?}");
    let list = |dir: &Path| {
        let (code, out) = archive(&["list", "--archive", &url(dir), "--json"]);
        assert_eq!(code, Some(0), "{out}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["timelines"][0].clone()
    };
    let t = list(&dir);
    assert!(t["compacted"].as_u64().unwrap() >= 1, "{t}");
    assert_eq!(t["chunks"], after.len() as u64, "{t}");
    assert_eq!(t["start_lsn"], start.0);
    assert_eq!(t["end_lsn"], end.0);
    assert_eq!(t["gaps"], 0);
    let (code, out) = archive(&["verify", "--archive", &url(&dir)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("compacted; 0 leftover"), "{out}");
    // A leftover: one deleted chunk back in place.
    let (gone, bytes) = saved.iter().find(|(p, _)| !p.exists()).unwrap();
    std::fs::write(gone, bytes).unwrap();
    assert_eq!(list(&dir)["leftovers"], 1);
    let (code, out) = archive(&["verify", "--archive", &url(&dir)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 leftover chunks agree"), "{out}");
    let (code, out) = archive(&["compact", "--archive", &url(&dir)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("0 compacted objects written") && out.contains("1 leftover"),
        "{out}"
    );
    assert!(!gone.exists());
    assert_eq!(list(&dir)["leftovers"], 0);
}

/// `keel archive cleanup`: a backup folder without a manifest is listed
/// once it is older than --older-than (never at the 24-hour default, just
/// written), deleted only with --apply; a complete backup is never
/// touched.
#[test]
fn cleanup_lists_then_deletes_only_folders_without_a_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let complete = dir.join("backups/00000001/0000000000001000-00000000000000AA");
    let killed = dir.join("backups/00000001/0000000000002000-00000000000000BB");
    for f in [&complete, &killed] {
        std::fs::create_dir_all(f.join("files/rel")).unwrap();
        std::fs::write(f.join("files/control"), b"c").unwrap();
        std::fs::write(f.join("files/rel/1"), b"r").unwrap();
    }
    std::fs::write(complete.join("manifest"), b"m").unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["cleanup", "--archive"];
        let u = url(&dir);
        args.push(&u);
        args.extend_from_slice(extra);
        archive(&args)
    };
    let (code, out) = run(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no backup folder without a manifest"), "{out}");
    std::thread::sleep(Duration::from_millis(50));
    let (code, out) = run(&["--older-than", "10ms"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("would delete") && out.contains("00000000000000BB"),
        "{out}"
    );
    assert!(!out.contains("00000000000000AA"), "{out}");
    assert!(killed.join("files/control").exists());
    let (code, out) = run(&["--older-than", "10ms", "--apply"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("deleted 1 incomplete backups"), "{out}");
    assert!(!killed.join("files/control").exists() && !killed.join("files/rel/1").exists());
    assert!(complete.join("manifest").exists() && complete.join("files/rel/1").exists());
    let (code, out) = run(&["--older-than", "bogus"]);
    assert_eq!(code, Some(2), "{out}");
    // Retention reads every manifest: one that is not a manifest stops
    // it, naming the object, and nothing is deleted.
    let (code, out) = run(&["--retain-backups", "1", "--apply"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("0000000000001000-00000000000000AA/manifest"),
        "{out}"
    );
    assert!(complete.join("manifest").exists());
    let (code, out) = run(&["--retain-backups", "0"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("at least 1"), "{out}");
}

/// `--retain-backups 0` is bad usage (exit 2), refused before anything
/// runs: with `--apply`, no incomplete backup is deleted first.
#[test]
fn cleanup_refuses_retaining_no_backup_before_deleting_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("archive");
    let killed = dir.join("backups/00000001/0000000000002000-00000000000000BB");
    std::fs::create_dir_all(killed.join("files")).unwrap();
    std::fs::write(killed.join("files/control"), b"c").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let u = url(&dir);
    let (code, out) = archive(&[
        "cleanup",
        "--archive",
        &u,
        "--older-than",
        "10ms",
        "--apply",
        "--retain-backups",
        "0",
    ]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("--retain-backups") && out.contains("at least 1"),
        "{out}"
    );
    assert!(!out.contains("deleted"), "{out}");
    assert!(killed.join("files/control").exists(), "{out}");
}

/// `keel demo` takes the archive-failure policy flags with --archive only.
#[test]
fn demo_policy_flags_need_an_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("demo");
    let out = keel(&[
        "demo",
        "--dir",
        d.to_str().unwrap(),
        "--on-archive-failure",
        "keep-going",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("need --archive"),
        "{}",
        text(&out.stderr)
    );
    assert!(!d.exists(), "the refused demo made its directory");
    let out = keel(&[
        "demo",
        "--dir",
        d.to_str().unwrap(),
        "--archive",
        "--on-archive-failure",
        "stall",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("needs --max-unarchived"),
        "{}",
        text(&out.stderr)
    );
}

/// A part size below a page is refused as bad usage before the data
/// directory is touched: it is not marked as archived.
#[test]
fn a_part_size_below_a_page_is_refused_before_the_directory_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, dir) = (tmp.path().join("data"), tmp.path().join("archive"));
    std::fs::create_dir_all(&dir).unwrap();
    Database::open(&data, Config::default())
        .unwrap()
        .close()
        .unwrap();
    let before: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let data_s = data.display().to_string();
    for size in ["0", "8191"] {
        let out = keel(&[
            "backup",
            "--dir",
            &data_s,
            "--archive",
            &url(&dir),
            "--part-size",
            size,
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("--part-size") && stderr.contains("less than a page"),
            "{stderr}"
        );
    }
    assert!(!data.join("archive-status").exists());
    let after: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);
}
