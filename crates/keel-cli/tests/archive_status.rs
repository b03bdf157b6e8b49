//! The WAL archive's status in `keel stats` and the archive flags of
//! `keel shell`: a shell that archives while it runs leaves a status file
//! whose state, policy, archived LSN and lag `keel stats` prints (text and
//! JSON, the LSN the same as the archive's own end); a broken archive's
//! last error is shown with any URL's secrets cut; no file says `not
//! configured`, a bad one says why; bad policy flags are refused with a
//! message naming the flag.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::{keel, text};

/// Runs `keel shell ARGS` with `input` on stdin.
fn shell(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("shell")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keel shell");
    // A shell that refused its arguments has closed its input already.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

fn stats_text(dir: &Path) -> String {
    let out = keel(&["stats", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn stats_json(dir: &Path) -> serde_json::Value {
    let out = keel(&["stats", "--dir", dir.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line {start:?} in:\n{text}"))
}

#[test]
fn stats_shows_what_the_archiver_published() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let archive = tmp.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    let url = format!("file://{}", archive.display());
    let d = data.to_str().unwrap();

    // Never archived: nothing to report.
    let out = shell(&["--dir", d], "create r\nquit\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        line(&stats_text(&data), "archive:"),
        "archive: not configured"
    );
    assert!(stats_json(&data)["archive"].is_null());

    // A shell that archives under the Stall policy.
    let mut input = String::new();
    for i in 0..50 {
        input.push_str(&format!("insert r {}\n", "ab".repeat(100 + i)));
    }
    input.push_str("quit\n");
    let out = shell(
        &[
            "--dir",
            d,
            "--archive",
            &url,
            "--on-archive-failure",
            "stall",
            "--max-unarchived",
            "1MiB",
            "--stall-timeout",
            "5s",
        ],
        &input,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches("tid ").count(), 50);

    let stats = stats_text(&data);
    assert_eq!(
        line(&stats, "archive:"),
        "archive: stopped, policy stall commits at 1.0 MiB unarchived, fail them after 5.0 s"
    );
    let lag_line = line(&stats, "archived to LSN");
    assert!(
        lag_line.contains("lag ") && lag_line.ends_with("no unarchived commit"),
        "{stats}"
    );
    assert!(!stats.contains("last error"), "{stats}");
    // Fifty rows complete no segment: nothing to compact yet.
    assert_eq!(
        line(&stats, "compaction:").trim(),
        "compaction: 0 objects written, replacing 0 chunks"
    );
    let json = stats_json(&data);
    let a = &json["archive"];
    assert_eq!(a["compacted_objects"], 0, "{a}");
    assert!(a["compaction_error"].is_null(), "{a}");
    assert_eq!(a["state"], "stopped", "{a}");
    assert_eq!(a["policy"], "stall 1048576 5000", "{a}");
    assert!(a["last_error"].is_null(), "{a}");
    // The LSN reported is where the archive itself ends.
    let list = keel(&["archive", "list", "--archive", &url, "--json"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let archived = a["archived_lsn_bytes"].as_u64().unwrap();
    assert_eq!(list["timelines"][0]["end_lsn"].as_u64().unwrap(), archived);
    // The lag runs to the log's end now: the shell's closing checkpoint
    // (and this stats run's) came after the archiver stopped.
    let log_end = json["wal"]["end_bytes"].as_u64().unwrap();
    assert!(log_end > archived, "{json}");
    assert_eq!(a["lag_bytes"].as_u64().unwrap(), log_end - archived, "{a}");

    // A broken archive, as a server would leave it: the error is shown,
    // with a URL's user, password and query cut.
    let status = data.join("archive-status");
    let published = std::fs::read_to_string(&status).unwrap();
    let updated: u64 = published
        .lines()
        .find_map(|l| l.strip_prefix("updated_us "))
        .unwrap()
        .parse()
        .unwrap();
    let broken = published.replace("state stopped", "state broken").replace(
        "oldest_unarchived_commit_us 0",
        &format!("oldest_unarchived_commit_us {}", updated - 2_500_000),
    ) + "last_error object store: Error performing PUT \
           http://AKIAEXAMPLE:s3cr3t@127.0.0.1:8333/b/k?X-Amz-Signature=feed in 1s: connection refused\n"
        + "compaction_error object store: Error performing DELETE \
           http://AKIAEXAMPLE:s3cr3t@127.0.0.1:8333/b/c?X-Amz-Signature=feed: timed out\n";
    std::fs::write(&status, broken).unwrap();
    let stats = stats_text(&data);
    assert!(
        line(&stats, "archived to LSN").ends_with("oldest unarchived commit 2.5 s old"),
        "{stats}"
    );
    assert!(
        line(&stats, "archive:").starts_with("archive: broken, policy stall"),
        "{stats}"
    );
    let err = line(&stats, "last error:");
    assert!(
        err.contains("http://<redacted>@127.0.0.1:8333/b/k?<redacted> in 1s: connection refused"),
        "{err}"
    );
    let err = line(&stats, "last compaction error:");
    assert!(
        err.contains("DELETE http://<redacted>@127.0.0.1:8333/b/c?<redacted> timed out"),
        "{err}"
    );
    assert!(!stats.contains("s3cr3t") && !stats.contains("AKIA") && !stats.contains("feed"));
    let json = stats_json(&data);
    assert!(!json.to_string().contains("s3cr3t"), "{json}");
    assert_eq!(json["archive"]["state"], "broken");

    // A file that is not a status: said on the archive line, the rest of
    // the report still printed.
    std::fs::write(&status, "hello\n").unwrap();
    let stats = stats_text(&data);
    let l = line(&stats, "archive:");
    assert!(
        l.starts_with("archive: status unreadable:") && l.contains("line 1"),
        "{l}"
    );
    assert!(stats.contains("wal: end"), "{stats}");
}

#[test]
fn bad_archive_policy_flags_are_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    let url = format!("file://{}", archive.display());
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["--dir", d];
        args.extend_from_slice(extra);
        let out = shell(&args, "quit\n");
        (out.status.code(), text(&out.stderr))
    };
    // Bad values: the argument parser's usage error (exit 2).
    for (flags, says) in [
        (
            &["--on-archive-failure", "sometimes"][..],
            "--on-archive-failure",
        ),
        (&["--max-unarchived", "12XB"][..], "unknown unit \"XB\""),
        (&["--max-unarchived", "lots"][..], "--max-unarchived"),
        (&["--stall-timeout", "30"][..], "needs a unit"),
        (&["--stall-timeout", "0s"][..], "must be positive"),
    ] {
        let mut args = vec!["--archive", &url];
        args.extend_from_slice(flags);
        let (code, err) = run(&args);
        assert_eq!(code, Some(2), "{flags:?}: {err}");
        assert!(err.contains(says), "{flags:?}: {err}");
    }
    // Flags that do not fit together (a usage error, exit 2), nothing
    // opened or created.
    for (flags, says) in [
        (
            &["--archive", &url, "--on-archive-failure", "stall"][..],
            "needs --max-unarchived",
        ),
        (
            &["--archive", &url, "--max-unarchived", "1MiB"][..],
            "only with --on-archive-failure stall",
        ),
        (
            &["--on-archive-failure", "keep-going"][..],
            "need --archive",
        ),
    ] {
        let (code, err) = run(flags);
        assert_eq!(code, Some(2), "{flags:?}: {err}");
        assert!(err.contains(says), "{flags:?}: {err}");
        assert!(!data.exists(), "{flags:?} created the data directory");
    }
}

fn segments(data: &Path) -> usize {
    std::fs::read_dir(data.join("wal"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy().into_owned();
            name.strip_suffix(".wal")
                .is_some_and(|n| n.len() == 16 && n.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .count()
}

/// Log written after the archiver stopped is not in the archive: `keel
/// checkpoint` (and every command opening the directory) must not retire
/// it, so that the next archiver (`keel shell --archive`) continues the
/// archive from its end with no gap and `keel archive verify` passes.
#[test]
fn commands_opening_an_archived_directory_retire_no_unarchived_log() {
    use std::sync::Arc;
    use std::time::Duration;

    use keel::{Config, Database};
    use keel_archive::{ArchiveTarget, Archiver, ArchiverOptions, StoreConfig};

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let archive = tmp.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    let url = format!("file://{}", archive.display());
    let mut config = Config {
        checkpoint_interval: None,
        ..Config::default()
    };
    config.wal.segment_size_bytes = 128 << 10;
    config.wal.max_batch_bytes = 32 << 10;
    config.wal.min_wal_size_bytes = 0;
    let db = Arc::new(Database::open(&data, config).unwrap());
    let rel = db.create_relation("r").unwrap();
    let target = ArchiveTarget::new(StoreConfig::Local(archive.clone()), "");
    let options = ArchiverOptions {
        max_delay: Duration::from_millis(20),
        ..ArchiverOptions::default()
    };
    let archiver = Archiver::start(db.clone(), &target, options).unwrap();
    let insert = |n: usize| {
        for t in 0..n {
            let mut tx = db.begin().unwrap();
            for r in 0..20usize {
                tx.insert(rel, &vec![(t * 20 + r) as u8; 300]).unwrap();
            }
            tx.commit().unwrap();
        }
    };
    insert(5);
    archiver.stop().unwrap();
    // About 1.2 MiB of log the archive does not have: several segments.
    insert(200);
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    let before = segments(&data);
    assert!(before > 5, "{before} segments");

    let d = data.to_str().unwrap();
    let out = keel(&["checkpoint", "--dir", d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(segments(&data) >= before, "unarchived log retired");
    let out = shell(&["--dir", d, "--archive", &url], "quit\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let verify = keel(&["archive", "verify", "--archive", &url]);
    assert!(
        verify.status.success(),
        "{}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );
    let json = stats_json(&data);
    assert_eq!(json["archive"]["state"], "stopped");
    assert!(json["archive"]["archived_lsn_bytes"].as_u64().unwrap() > 1 << 20);
}
