//! The archiver killed with SIGKILL at random moments: `keel shell
//! --archive` commits rows one by one (autocommit, each answered once
//! durable) while its archiver uploads and compacts, and is killed a
//! random time after it starts; the next cycle opens the directory again
//! with its archiver, which resumes where the archive ends.
//!
//! After the last cycle and a clean stop: `keel archive verify` passes
//! (no gap, no object half written or overwritten), and a restore of the
//! base backup and the archived log holds every acknowledged row, plus at
//! most the one row per kill whose commit was durable but not yet
//! answered, and nothing else.
//!
//! Default: 3 kills. `KEEL_ARCHIVER_KILL_CYCLES=N` runs more;
//! `KEEL_ARCHIVER_KILL_SEED=S` replays a run (the seed is printed).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use keel::{Config, Database};

mod common;
use common::{Rng, env_u64, keel, row_keys, text, url};

const ROW_BYTES: usize = 200;

fn row_hex(key: u32) -> String {
    let mut row = [0xA5u8; ROW_BYTES];
    row[..4].copy_from_slice(&key.to_le_bytes());
    row.iter().map(|b| format!("{b:02x}")).collect()
}

fn ok(out: &std::process::Output, what: &str) -> String {
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{what} failed:\n{all}");
    all
}

/// One `keel shell --archive` session fed inserts of keys from `first`
/// on, killed `after` from its start (or ended by `quit` when `None`);
/// returns the keys whose insert was answered.
fn session(data: &Path, archive: &Path, first: u32, after: Option<Duration>) -> Vec<u32> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "shell",
            "--dir",
            &data.display().to_string(),
            "--archive",
            &url(archive),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keel shell");
    let mut stdin = child.stdin.take().unwrap();
    let count = if after.is_some() { 100_000 } else { 50 };
    let feeder = std::thread::spawn(move || {
        for k in first..first + count {
            if writeln!(stdin, "insert t {}", row_hex(k)).is_err() {
                return; // the shell was killed
            }
        }
        let _ = writeln!(stdin, "quit");
    });
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut answered = Vec::new();
        for (k, line) in (first..).zip(BufReader::new(stdout).lines()) {
            let Ok(line) = line else { break };
            assert!(
                line.starts_with("tid "),
                "insert of key {k} answered {line:?}"
            );
            answered.push(k);
        }
        answered
    });
    if let Some(after) = after {
        std::thread::sleep(after);
        child.kill().unwrap(); // SIGKILL
    }
    let status = child.wait().unwrap();
    feeder.join().unwrap();
    let answered = reader.join().unwrap();
    if after.is_none() {
        assert!(status.success(), "the last shell session failed");
    }
    answered
}

#[test]
fn an_archiver_killed_at_random_moments_loses_no_acknowledged_commit() {
    let cycles = env_u64("KEEL_ARCHIVER_KILL_CYCLES").unwrap_or(3);
    let mut rng = Rng::from_env("KEEL_ARCHIVER_KILL_SEED");
    let tmp = tempfile::tempdir().unwrap();
    let (data, archive) = (tmp.path().join("data"), tmp.path().join("archive"));
    std::fs::create_dir_all(&archive).unwrap();
    {
        let db = Database::open(&data, Config::default()).unwrap();
        db.create_relation("t").unwrap();
        db.close().unwrap();
    }
    ok(
        &keel(&[
            "backup",
            "--dir",
            &data.display().to_string(),
            "--archive",
            &url(&archive),
        ]),
        "the base backup",
    );
    let mut acked: BTreeSet<u32> = BTreeSet::new();
    let mut next = 0u32;
    for _ in 0..cycles {
        let after = Duration::from_millis(150 + rng.below(900));
        let answered = session(&data, &archive, next, Some(after));
        acked.extend(&answered);
        // A key past the answered ones may be durable (its answer was cut
        // by the kill); the next session starts after it.
        next += answered.len() as u32 + 1;
    }
    let answered = session(&data, &archive, next, None);
    acked.extend(&answered);
    assert!(
        acked.len() > 50,
        "only {} commits acknowledged",
        acked.len()
    );

    let verified = ok(
        &keel(&["archive", "verify", "--archive", &url(&archive)]),
        "archive verify",
    );
    assert!(verified.contains("verified"), "{verified}");
    let into = tmp.path().join("restored");
    ok(
        &keel(&[
            "restore",
            "--archive",
            &url(&archive),
            "--dir",
            &into.display().to_string(),
        ]),
        "the restore",
    );
    let got = row_keys(&into, "t");
    let lost: Vec<_> = acked.difference(&got).collect();
    assert!(
        lost.is_empty(),
        "acknowledged rows missing after the restore: {lost:?}"
    );
    let extra: Vec<_> = got.difference(&acked).collect();
    assert!(
        extra.len() <= cycles as usize,
        "rows never acknowledged, more than one per kill: {extra:?}"
    );
}
