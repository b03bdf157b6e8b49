//! `keel inspect wal` on a real demo directory: it starts where the log
//! recovery reads begins, says what it skipped, and `--all` / `--from`
//! start elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;
use common::{keel, text};

/// Segment numbers of the `*.wal` files in `wal`, ascending.
fn segments(wal: &std::path::Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(wal)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            keel::wal::segment::parse_segment_file_name(&name)
        })
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn inspect_wal_straight_after_demo() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let d = data.to_str().unwrap();
    let out = keel(&["demo", "--quick", "--dir", d, "--seed", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Retired segments kept for recycling are out of the log's names: the
    // segments left form one run without a gap.
    let segs = segments(&data.join("wal"));
    assert!(!segs.is_empty());
    assert!(
        segs.windows(2).all(|w| w[1] == w[0] + 1),
        "a gap among the log's segments: {segs:?}"
    );

    let out = keel(&["inspect", "wal", "--dir", d]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("note: starting at"), "{stderr}");
    assert!(stderr.contains("redo point"), "{stderr}");
    assert!(stdout.contains("end of log at"), "{stdout}");
    assert!(stdout.contains("checkpoint-end"), "{stdout}");

    // --all shows at least as much; --json carries where it started.
    let all = keel(&["inspect", "wal", "--dir", d, "--all", "--json"]);
    assert!(all.status.success(), "{}", text(&all.stderr));
    let last: serde_json::Value =
        serde_json::from_str(text(&all.stdout).lines().last().unwrap()).unwrap();
    let start = last["summary"]["start"].as_str().unwrap().to_string();
    let json = keel(&["inspect", "wal", "--dir", d, "--json"]);
    let n_all = text(&all.stdout).lines().count();
    let n_default = text(&json.stdout).lines().count();
    assert!(n_all >= n_default, "{n_all} < {n_default}");

    // --from the start --all used gives the same records.
    let from = keel(&["inspect", "wal", "--dir", d, "--from", &start, "--json"]);
    assert!(from.status.success(), "{}", text(&from.stderr));
    assert_eq!(text(&from.stdout).lines().count(), n_all);
}

/// `--from` an LSN no segment on disk holds is refused, naming the
/// segments there, rather than reported as the end of the log.
#[test]
fn inspect_wal_from_an_lsn_outside_the_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let d = data.to_str().unwrap();
    let out = keel(&["demo", "--quick", "--dir", d, "--seed", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let segs = segments(&data.join("wal"));
    let newest = keel::wal::segment::segment_file_name(*segs.last().unwrap());
    let out = keel(&["inspect", "wal", "--dir", d, "--from", "ffffffff/ffffffff"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.starts_with("keel: error: --from FFFFFFFF/FFFFFFFF: ") && stderr.contains(&newest),
        "{stderr}"
    );
    assert!(!stdout.contains("end of log"), "{stdout}");
}
