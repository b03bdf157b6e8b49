//! `keel crashtest`: the SIGKILL crash loop, 100 cycles on each real I/O
//! backend (issue 6), and its usage errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;
use common::{keel, text};

/// Runs 100 cycles on `backend` and checks the text verdict; with
/// `check`, under redo consistency checking.
fn hundred_cycles(backend: &str, seed: &str, check: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let mut args = vec![
        "crashtest",
        "--cycles",
        "100",
        "--seed",
        seed,
        "--backend",
        backend,
        // Short cycles (kill 50-100 ms after the child is ready): 100 of
        // them stay affordable on a debug build.
        "--max-kill-ms",
        "100",
        "--dir",
        d,
    ];
    if check {
        args.push("--consistency-check");
    }
    let out = keel(&args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("backend {backend}")), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("cycle ")).count(),
        100,
        "{stdout}"
    );
    assert!(stdout.contains("cycle 100/100: "), "{stdout}");
    assert!(stdout.contains("cycles            100 of 100"), "{stdout}");
    // The child created and dropped side relations and side trees under
    // the kills, and each cycle checked them after recovery.
    for what in ["side relations", "side trees"] {
        let side = stdout
            .lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("no {what} line: {stdout}"));
        let created: u64 = side
            .split_whitespace()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{side}"));
        assert!(created > 0, "{side}");
    }
    assert!(
        stdout.contains("lost              0 (must be 0)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("phantom           0 (must be 0)"),
        "{stdout}"
    );
    assert!(stdout.contains("crashtest passed"), "{stdout}");
    // Commits were made and verified (a loop that never committed would
    // prove nothing).
    let verified = stdout
        .lines()
        .find_map(|l| l.strip_prefix("commits verified  "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(verified >= 100, "{stdout}");
    // With checking on, recoveries compared redone pages with the images
    // logged at run time (a mismatch fails the cycle, hence the run).
    let compared = stdout
        .lines()
        .find_map(|l| l.strip_prefix("consistency check "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    if check {
        assert!(compared.is_some_and(|n| n > 0), "{stdout}");
    } else {
        assert_eq!(compared, None, "{stdout}");
    }
}

#[test]
fn hundred_sigkill_cycles_on_the_thread_pool_lose_nothing_and_redo_matches_run_time_pages() {
    hundred_cycles("thread-pool", "11", true);
}

#[test]
fn hundred_sigkill_cycles_on_io_uring_lose_nothing() {
    hundred_cycles("io-uring", "12", false);
}

#[test]
fn json_summary_and_a_reused_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    for _ in 0..2 {
        // The second run wipes the first one's directory.
        let out = keel(&[
            "crashtest",
            "--cycles",
            "1",
            "--seed",
            "3",
            "--dir",
            d,
            "--json",
        ]);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}\n{}",
            text(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["passed"], true, "{v}");
        assert_eq!(v["cycles"], 1, "{v}");
        assert_eq!(v["lost"], 0, "{v}");
        assert_eq!(v["phantom"], 0, "{v}");
        assert_eq!(v["seed"], 3, "{v}");
    }
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious"), b"keep me").unwrap();
    let foreign = dir.path().to_str().unwrap();
    for args in [
        &["crashtest", "--cycles", "0"][..],
        &["crashtest", "--cycles", "many"],
        &["crashtest", "--backend", "floppy"],
        &["crashtest", "--seed", "-1"],
        &["crashtest", "--no-such-flag"],
        &["crashtest", "--dir", foreign],
    ] {
        let out = keel(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A directory crashtest did not make is left alone, with one line.
    let out = keel(&["crashtest", "--dir", foreign]);
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("keel: error: "), "{stderr}");
    assert!(stderr.contains("not made by keel crashtest"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(dir.path().join("precious").exists());
}

/// A thread of `keel demo-child` that fails (here the DDL thread, whose
/// create finds the name taken) ends the child at once with the error, so
/// the crash loop reports it instead of killing the child and verifying
/// the rest.
#[test]
fn a_failed_child_thread_ends_the_child_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let out = keel(&[
        "crashtest",
        "--cycles",
        "1",
        "--seed",
        "5",
        "--threads",
        "2",
        "--no-ddl",
        "--dir",
        d,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The DDL thread's first side relation, for --first-seq 0x1000000.
    let taken = "side_1000000";
    let db = keel::Database::open(&data, keel::Config::default()).unwrap();
    db.create_relation(taken).unwrap();
    db.close().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["demo-child", "--dir", d, "--threads", "2", "--seed", "1"])
        .args(["--small", "--quick", "--ddl", "--first-seq", "16777216"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the child still runs 30 s after its DDL thread failed");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(taken), "{stderr}");
}

/// Runs one cycle whose directory `after_kill` (a shell command) damages
/// between the kill and recovery; the run must fail. Returns stdout and
/// the data directory (kept by the failed run).
fn damaged_cycle(after_kill: &str) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cmd = after_kill.replace("@keel", env!("CARGO_BIN_EXE_keel"));
    let out = keel(&[
        "crashtest",
        "--cycles",
        "1",
        "--seed",
        "5",
        "--threads",
        "2",
        "--dir",
        data.to_str().unwrap(),
        "--after-kill",
        &cmd,
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("crashtest FAILED"), "{stdout}");
    (stdout, dir)
}

/// A committed row deleted behind the verifier's back is a lost commit.
#[test]
fn a_row_lost_between_kill_and_recovery_fails_the_cycle() {
    let (stdout, _dir) = damaged_cycle(
        r#"d="$KEEL_CRASHTEST_DIR"
        t=$(printf 'scan accounts\nquit\n' | @keel shell --dir "$d" | awk '/^row /{print $2; exit}')
        test -n "$t" && printf 'delete accounts %s\nquit\n' "$t" | @keel shell --dir "$d""#,
    );
    let lost = stdout
        .lines()
        .find_map(|l| l.strip_prefix("lost              "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(lost.is_some_and(|n| n > 0), "{stdout}");
}

/// A side relation the child never reported (as one an earlier cycle
/// dropped would be, come back) fails the cycle, and stays in the kept
/// directory.
#[test]
fn a_side_relation_back_after_its_drop_fails_the_cycle() {
    let (stdout, dir) = damaged_cycle(
        r#"printf 'create side_zzz\nquit\n' | @keel shell --dir "$KEEL_CRASHTEST_DIR""#,
    );
    assert!(
        stdout.contains("side relation side_zzz is there"),
        "{stdout}"
    );
    let db = keel::Database::open(dir.path().join("data"), keel::Config::default()).unwrap();
    assert!(db.relation("side_zzz").unwrap().is_some());
    db.close().unwrap();
}

/// A side tree whose create was acknowledged, dropped behind the
/// verifier's back (every `tree_<seq>` the first cycle can have made),
/// fails the cycle.
#[test]
fn an_acknowledged_side_tree_lost_between_kill_and_recovery_fails_the_cycle() {
    let (stdout, _dir) = damaged_cycle(
        r#"for n in $(seq 0 4095); do printf 'drop-tree tree_%x\n' "$n"; done |
        @keel shell --dir "$KEEL_CRASHTEST_DIR" >/dev/null"#,
    );
    let gone = stdout
        .lines()
        .find(|l| l.contains("side tree tree_") && l.ends_with("): gone"));
    assert!(
        gone.is_some_and(|l| l.contains("last step Made") || l.contains("last step Created")),
        "{stdout}"
    );
}

/// A side tree the child never reported (as one an earlier cycle dropped
/// would be, come back) fails the cycle, and stays in the kept directory.
#[test]
fn a_side_tree_back_after_its_drop_fails_the_cycle() {
    let (stdout, dir) = damaged_cycle(
        r#"printf 'create-tree tree_zzz\nquit\n' | @keel shell --dir "$KEEL_CRASHTEST_DIR""#,
    );
    assert!(stdout.contains("side tree tree_zzz is there"), "{stdout}");
    let db = keel::Database::open(dir.path().join("data"), keel::Config::default()).unwrap();
    assert!(db.tree("tree_zzz").unwrap().is_some());
    db.close().unwrap();
}

/// Every file under `dir`, by path.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// An earlier crashtest's directory that a process has open (it holds
/// `LOCK`) is refused, and nothing in it is deleted.
#[test]
fn a_crashtest_directory_in_use_is_not_wiped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let first = keel(&["crashtest", "--cycles", "1", "--seed", "3", "--dir", d]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let db = keel::Database::open(&data, keel::Config::default()).unwrap();
    let before = files_under(&data);
    assert!(
        before.iter().any(|p| p.ends_with("keel-crashtest.marker")),
        "{before:?}"
    );
    let out = keel(&["crashtest", "--cycles", "1", "--seed", "3", "--dir", d]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("in use by another open database"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was deleted"), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert_eq!(files_under(&data), before);
    db.close().unwrap();
}

/// A run in which no commit was acknowledged (the child ran no workers)
/// fails: it checked nothing.
#[test]
fn a_run_that_acknowledged_no_commit_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = keel(&[
        "crashtest",
        "--dir",
        data.to_str().unwrap(),
        "--cycles",
        "2",
        "--seed",
        "9",
        "--max-kill-ms",
        "60",
        "--idle-child",
        "--json",
    ]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["acknowledged"], 0, "{v}");
    assert_eq!(v["cycles"], 2, "{v}");
    assert_eq!(v["passed"], false, "{v}");
    assert!(
        v["problems"]
            .to_string()
            .contains("no commit was acknowledged in 2 cycles"),
        "{v}"
    );
    assert!(stderr.contains("no commit was acknowledged"), "{stderr}");
    // The text summary says it too.
    let text_run = keel(&[
        "crashtest",
        "--cycles",
        "1",
        "--max-kill-ms",
        "60",
        "--idle-child",
        "--dir",
        data.to_str().unwrap(),
    ]);
    let stdout = text(&text_run.stdout);
    assert_eq!(text_run.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("problem: no commit was acknowledged"),
        "{stdout}"
    );
    assert!(stdout.contains("crashtest FAILED"), "{stdout}");
}
