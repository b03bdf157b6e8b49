//! End-to-end tests of the built `keel` binary.

#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

use std::process::{Command, Output};

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .expect("run keel")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn demo_runs_and_its_pages_inspect_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let out = keel(&["demo", "--dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "demo failed: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("live tuples verified against the model"),
        "{stdout}"
    );
    assert!(stdout.contains("fragmentation 0.0%"), "{stdout}");

    let file = data.join("demo.pages");
    let out = keel(&[
        "inspect",
        "page",
        "--file",
        file.to_str().unwrap(),
        "--page",
        "1",
        "--hex",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("verdict    ok (heap page)"), "{stdout}");
    assert!(stdout.contains("hex:"), "{stdout}");

    // A flipped byte makes inspect report the corruption and exit 1.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8192 + 4000] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    let out = keel(&[
        "inspect",
        "page",
        "--file",
        file.to_str().unwrap(),
        "--page",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("page 1: checksum mismatch"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one-line error: {stderr}");

    let out = keel(&[
        "inspect",
        "page",
        "--file",
        file.to_str().unwrap(),
        "--page",
        "99999",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("there is no page 99999"));
}

#[test]
fn inspect_wal_lists_records_and_reports_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let d = data.to_str().unwrap();
    assert!(keel(&["demo", "--dir", d]).status.success());
    let out = keel(&["inspect", "wal", "--dir", d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("heap-insert"), "{stdout}");
    let commit_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("commit "))
        .unwrap_or_else(|| panic!("no commit totals in {stdout}"));
    assert_eq!(
        commit_line.split_whitespace().nth(1),
        Some("1600"),
        "{commit_line}"
    );

    let out = keel(&["inspect", "wal", "--dir", d, "--json"]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4801);
    assert_eq!(lines[0]["type"], "begin");
    assert_eq!(lines[4800]["summary"]["records"], 4800);
    let from = lines[3]["lsn"].as_str().unwrap().to_string();
    let out = keel(&["inspect", "wal", "--dir", d, "--from", &from, "--json"]);
    assert_eq!(text(&out.stdout).lines().count(), 4798);

    // Damage a record in the middle: exit 1, naming its LSN.
    let seg = data.join("wal").join("0000000000000000.wal");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[4096 + 2000] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let out = keel(&["inspect", "wal", "--dir", d]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("WAL corrupted at 0/0000"), "{stderr}");
    // Salvage mode stops there instead.
    let out = keel(&["inspect", "wal", "--dir", d, "--salvage"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("torn tail cut"));
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["frobnicate"][..],
        &["inspect", "page", "--page", "x", "--file", "f"],
        &["demo", "--no-such-flag"],
        &["inspect", "wal", "--dir", "x", "--from", "zz/1"],
    ] {
        let out = keel(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = keel(&["--help"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("demo"));
}
