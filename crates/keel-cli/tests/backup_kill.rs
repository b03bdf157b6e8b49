//! `keel backup` killed with SIGKILL at random moments (opening the
//! database, checkpointing, streaming a relation file in parts, waiting for
//! the archive, writing the manifest) against a local-directory archive.
//! After each kill: `keel archive verify` passes (every backup with a
//! manifest has its files and its log; a backup without one is reported
//! incomplete, not used), a restore works and holds a prefix of the
//! committed transactions that includes every one the last complete
//! backup saw, and the data directory opens again. A `keel restore` killed
//! at a random moment leaves a directory that is a database holding such
//! a prefix or one an open refuses (never an empty database). At the end
//! one more
//! `keel backup` runs to completion and a restore holds every
//! acknowledged commit, with `keel check` passing.
//!
//! Default: 3 kills. `KEEL_BACKUP_KILL_CYCLES=N` runs more;
//! `KEEL_BACKUP_KILL_SEED=S` replays a run (the seed is printed).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel::{Config, Database};

mod common;
use common::{Rng, env_u64, keel, row_keys, text, url};

/// Bytes per row: 3,000 rows make a heap file of about 3 MiB, many parts
/// of [`PART`] long.
const ROW_BYTES: usize = 1000;
/// The part size the backups stream with.
const PART: &str = "65536";

/// Commits `txs` transactions of `rows` rows each, keys from `next`;
/// returns each transaction's keys, in commit order.
fn commit_rows(data: &Path, next: &mut u32, txs: usize, rows: usize) -> Vec<Vec<u32>> {
    let db = Database::open(data, Config::default()).unwrap();
    let rel = match db.relation("r").unwrap() {
        Some(r) => r,
        None => db.create_relation("r").unwrap(),
    };
    let mut done = Vec::new();
    for _ in 0..txs {
        let mut tx = db.begin().unwrap();
        let mut keys = Vec::new();
        for _ in 0..rows {
            let mut row = vec![0x5Au8; ROW_BYTES];
            row[..4].copy_from_slice(&next.to_le_bytes());
            tx.insert(rel, &row).unwrap();
            keys.push(*next);
            *next += 1;
        }
        tx.commit().unwrap();
        done.push(keys);
    }
    db.close().unwrap();
    done
}

fn backup_args(data: &Path, archive: &Path) -> Vec<String> {
    vec![
        "backup".into(),
        "--dir".into(),
        data.display().to_string(),
        "--archive".into(),
        url(archive),
        "--part-size".into(),
        PART.into(),
    ]
}

/// `keel archive verify`: must pass; returns its output.
fn verify_passes(archive: &Path) -> String {
    let out = keel(&["archive", "verify", "--archive", &url(archive)]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "verify failed:\n{all}");
    all
}

/// `keel restore` into a new directory; the keys of the restored rows.
fn restore_keys(archive: &Path, into: &Path) -> BTreeSet<u32> {
    let into_s = into.display().to_string();
    let out = keel(&["restore", "--archive", &url(archive), "--dir", &into_s]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "restore failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let db = Database::open(into, Config::default()).unwrap();
    let rel = db.relation("r").unwrap().unwrap();
    let keys = db
        .begin()
        .unwrap()
        .scan(rel)
        .unwrap()
        .map(|r| {
            let (_, row) = r.unwrap();
            assert_eq!(row.len(), ROW_BYTES);
            u32::from_le_bytes(row[..4].try_into().unwrap())
        })
        .collect();
    db.close().unwrap();
    keys
}

/// `got` must be the keys of the first k transactions of `txs`, for a k
/// of at least `at_least`: a restore gives a prefix of the history, never
/// a transaction in part or one out of order.
fn assert_prefix(got: &BTreeSet<u32>, txs: &[Vec<u32>], at_least: usize, what: &str) {
    let mut k = 0;
    let mut want = BTreeSet::new();
    while want.len() < got.len() && k < txs.len() {
        want.extend(txs[k].iter().copied());
        k += 1;
    }
    assert_eq!(
        got,
        &want,
        "{what}: {} rows restored are not the first transactions' rows",
        got.len()
    );
    assert!(
        k >= at_least,
        "{what}: {k} transactions restored, the last complete backup saw {at_least}"
    );
}

#[test]
fn a_backup_killed_at_random_moments_leaves_the_archive_verified_and_restorable() {
    let cycles = env_u64("KEEL_BACKUP_KILL_CYCLES").unwrap_or(3);
    let mut rng = Rng::from_env("KEEL_BACKUP_KILL_SEED");
    let tmp = tempfile::tempdir().unwrap();
    let (data, archive) = (tmp.path().join("data"), tmp.path().join("archive"));
    std::fs::create_dir_all(&archive).unwrap();
    let mut next = 0u32;
    let mut txs = commit_rows(&data, &mut next, 30, 100);
    let began = Instant::now();
    let out = keel(
        &backup_args(&data, &archive)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let full_ms = began.elapsed().as_millis() as u64;
    let mut backed_up = txs.len();
    let mut killed = 0;
    for cycle in 0..cycles {
        txs.extend(commit_rows(&data, &mut next, 5, 40));
        let wait = Duration::from_millis(rng.below(full_ms + full_ms / 2));
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(backup_args(&data, &archive))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(wait);
        let finished = child.try_wait().unwrap();
        child.kill().unwrap(); // SIGKILL; a no-op error-free call once it has exited
        let status = child.wait().unwrap();
        let completed = finished.is_some_and(|s| s.success());
        match (finished, completed) {
            (_, true) => backed_up = txs.len(),
            (Some(s), false) => {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
                panic!("cycle {cycle}: keel backup failed on its own ({s}): {err}");
            }
            (None, _) => killed += 1,
        }
        println!(
            "cycle {cycle}: {} after {wait:?} ({status})",
            match completed {
                true => "completed",
                false => "killed",
            }
        );
        let report = verify_passes(&archive);
        let restored = tmp.path().join(format!("restored-{cycle}"));
        let began = Instant::now();
        let got = restore_keys(&archive, &restored);
        let restore_ms = began.elapsed().as_millis() as u64;
        assert_prefix(&got, &txs, backed_up, &format!("cycle {cycle}\n{report}"));
        // A restore killed at a random moment leaves a directory that is
        // either a database holding a prefix of the history (killed in
        // its last step, the first open) or one an open refuses.
        let cut = tmp.path().join(format!("restore-killed-{cycle}"));
        let wait = Duration::from_millis(rng.below(restore_ms + restore_ms / 4));
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["restore", "--archive", &url(&archive), "--dir"])
            .arg(&cut)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(wait);
        child.kill().unwrap();
        let status = child.wait().unwrap();
        println!("cycle {cycle}: restore {status} after {wait:?}");
        let entries: Vec<String> = match std::fs::read_dir(&cut) {
            Ok(d) => d
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        if entries.iter().any(|e| e == "control") {
            let keys = row_keys(&cut, "r");
            assert_prefix(
                &keys,
                &txs,
                backed_up,
                &format!("cycle {cycle}, killed restore"),
            );
        } else if !entries.is_empty() {
            let err = Database::open(&cut, Config::default())
                .err()
                .unwrap_or_else(|| {
                    panic!("cycle {cycle}: a restore cut short ({entries:?}) opened")
                });
            assert!(
                err.to_string().contains("not a Keel data directory"),
                "{err}"
            );
        }
    }
    println!("{killed} of {cycles} backups killed");
    let out = keel(
        &backup_args(&data, &archive)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    verify_passes(&archive);
    let restored = tmp.path().join("restored-final");
    let got = restore_keys(&archive, &restored);
    let all: BTreeSet<u32> = txs.iter().flatten().copied().collect();
    assert_eq!(got, all, "the last restore lost acknowledged commits");
    let out = keel(&["check", "--dir", &restored.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}
