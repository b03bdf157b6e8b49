//! `keel inspect wal` on a real demo directory: it starts where the log
//! recovery reads begins, says what it skipped, and `--all` / `--from`
//! start elsewhere; after a clean stop a log cut short is damage.

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

/// A closed database in `dir` with a few hundred committed rows, all in
/// segment 0; returns the control file's checkpoint end (offset 32).
fn clean_db(dir: &std::path::Path) -> u64 {
    use keel::{Config, Database};
    let db = Database::open(dir, Config::default()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..300u32 {
        tx.insert(rel, &[i as u8; 120]).unwrap();
    }
    tx.commit().unwrap();
    db.close().unwrap();
    let control = std::fs::read(dir.join("control")).unwrap();
    u64::from_le_bytes(control[32..40].try_into().unwrap())
}

/// After a clean stop the log ends with the checkpoint the control file
/// names, so a log that ends earlier, or in a torn tail, lost bytes that
/// were durable: segment 0 truncated anywhere before the checkpoint's end
/// exits 1 naming the segment file, never 0 with a cut tail.
#[test]
fn a_truncated_segment_after_a_clean_stop_is_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let checkpoint_end = clean_db(tmp.path());
    let seg = tmp.path().join("wal/0000000000000000.wal");
    let pristine = std::fs::read(&seg).unwrap();
    let out = keel(&["inspect", "wal", "--dir", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Inside the checkpoint's end record, at its start, and before the
    // redo point (where inspection starts reading).
    for len in [checkpoint_end + 20, checkpoint_end, checkpoint_end - 100] {
        std::fs::write(&seg, &pristine).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len)
            .unwrap();
        let out = keel(&["inspect", "wal", "--dir", d]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "cut at {len}: {stderr}");
        assert!(
            stderr.contains("keel: error: ") && stderr.contains(seg.to_str().unwrap()),
            "cut at {len}: {stderr}"
        );
    }
}
