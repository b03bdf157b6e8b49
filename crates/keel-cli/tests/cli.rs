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
fn bad_usage_exits_2() {
    for args in [
        &["frobnicate"][..],
        &["inspect", "page", "--page", "x", "--file", "f"],
        &["demo", "--no-such-flag"],
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
