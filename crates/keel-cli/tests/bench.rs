//! `keel bench`: argument checking, and tiny runs whose JSON and SVG output
//! are checked for completeness (never for timing).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::path::Path;

use serde_json::Value;

mod common;
use common::{keel, text};

fn scratch() -> tempfile::TempDir {
    // On the build's file system, like the bench's own default.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

#[test]
fn bad_arguments_exit_2_with_one_clear_line() {
    for (args, want) in [
        (vec!["bench", "commit", "--repeat", "0"], "--repeat"),
        (
            vec!["bench", "commit", "--engines", "keel,mysql"],
            "unknown engine 'mysql'",
        ),
        (
            vec!["bench", "commit", "--engines", "disk,disk"],
            "given twice",
        ),
        (
            vec!["bench", "commit", "--committers", "1,x"],
            "'x' is not a whole number",
        ),
        (
            vec!["bench", "commit", "--committers", "0"],
            "between 1 and 1024",
        ),
        (
            vec!["bench", "commit", "--secs=nan"],
            "between 0.01 and 3600",
        ),
        (vec!["bench", "commit", "--rows", "0"], "--rows"),
        (vec!["bench", "everything"], "invalid value 'everything'"),
    ] {
        let out = keel(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with("error: "), "{args:?}: {err}");
        assert!(first.contains(want), "{args:?}: want {want:?} in {first:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn figure<'a>(doc: &'a Value, engine: &str, case: &str, metric: &str) -> Option<&'a Value> {
    doc["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["engine"] == engine && f["case"] == case && f["metric"] == metric)
}

fn assert_svg(path: &Path) {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(svg.starts_with("<svg"), "{}", path.display());
    assert!(svg.trim_end().ends_with("</svg>"), "{}", path.display());
    assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
}

#[test]
fn tiny_commit_run_writes_figures_settings_and_charts() {
    let dir = scratch();
    let json = dir.path().join("out.json");
    let plots = dir.path().join("plots");
    let out = keel(&[
        "bench",
        "commit",
        "--secs",
        "0.2",
        "--repeat",
        "1",
        "--committers",
        "1,2",
        "--engines",
        "disk,sqlite",
        "--dir",
        dir.path().to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert!(stdout.contains("committers       1,2"), "{stdout}");
    assert!(
        stdout.contains("| sqlite (one connection, mutex) | 2 |"),
        "{stdout}"
    );

    let doc = read_json(&json);
    let s = &doc["settings"];
    assert_eq!(s["suite"], "commit");
    assert_eq!(s["secs"], 0.2);
    assert_eq!(s["repeat"], 1);
    assert_eq!(s["committers"], serde_json::json!([1, 2]));
    assert_eq!(s["engines"], serde_json::json!(["disk", "sqlite"]));
    assert_eq!(s["payload_bytes"], 100);
    for k in [
        "date",
        "build",
        "cpus",
        "load_average",
        "data_dir",
        "same_fs_as_tmp",
    ] {
        assert!(s["environment"][k].is_string(), "environment.{k} in {s}");
    }
    for c in ["1", "2"] {
        let case = format!("committers={c}");
        for m in [
            "commits_per_s",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "x_fdatasync_loop",
        ] {
            let f = figure(&doc, "sqlite", &case, m).unwrap_or_else(|| panic!("sqlite {case} {m}"));
            assert_eq!(f["values"].as_array().unwrap().len(), 1);
            assert!(f["median"].as_f64().unwrap() > 0.0, "{f}");
        }
        let beside = format!("beside committers={c}");
        assert!(figure(&doc, "disk", &beside, "commits_per_s").is_some());
        assert!(figure(&doc, "disk-o_dsync", &beside, "x_fdatasync_loop").is_some());
        // O_DIRECT is measured where the file system takes it, else skipped.
        let direct = figure(&doc, "disk-o_direct-o_dsync", &beside, "commits_per_s").is_some();
        let skipped = doc["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["engine"] == "disk-o_direct-o_dsync");
        assert!(
            direct != skipped,
            "O_DIRECT measured {direct}, skipped {skipped}"
        );
    }
    // The group-commit reference runs above one committer, and engines
    // there are divided by it.
    assert!(
        figure(
            &doc,
            "group-commit-reference",
            "committers=1",
            "commits_per_s"
        )
        .is_none()
    );
    let reference = figure(
        &doc,
        "group-commit-reference",
        "committers=2",
        "commits_per_s",
    );
    assert!(reference.unwrap()["median"].as_f64().unwrap() > 0.0);
    assert!(figure(&doc, "sqlite", "committers=2", "x_group_commit_reference").is_some());
    assert!(figure(&doc, "sqlite", "committers=1", "x_group_commit_reference").is_none());
    assert!(
        stdout.contains("| group-commit reference (2 committers) | 2 |"),
        "{stdout}"
    );
    assert!(stdout.contains("× fdatasync loop"), "{stdout}");
    let notes = doc["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().unwrap().contains("settle")));
    let engines = doc["engines"].as_array().unwrap();
    let sqlite = engines.iter().find(|e| e["engine"] == "sqlite").unwrap();
    assert_eq!(sqlite["settings"]["synchronous"], "FULL");
    assert_eq!(sqlite["settings"]["journal_mode"], "WAL");
    for f in ["commit-throughput.svg", "commit-latency.svg"] {
        assert_svg(&plots.join(f));
    }
}

#[test]
fn keel_archived_is_measured_against_keel_in_the_same_repeat() {
    let dir = scratch();
    let json = dir.path().join("out.json");
    let out = keel(&[
        "bench",
        "commit",
        "--secs",
        "0.2",
        "--repeat",
        "2",
        "--committers",
        "2",
        "--engines",
        "keel,keel-archived",
        "--dir",
        dir.path().to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert!(stdout.contains("× keel |"), "{stdout}");
    let doc = read_json(&json);
    let ratio = figure(&doc, "keel-archived", "committers=2", "x_keel").unwrap();
    let values = ratio["values"].as_array().unwrap();
    assert_eq!(values.len(), 2, "{ratio}");
    assert!(values.iter().all(|v| v.as_f64().unwrap() > 0.0), "{ratio}");
    let engines = doc["engines"].as_array().unwrap();
    let archived = engines
        .iter()
        .find(|e| e["engine"] == "keel-archived")
        .unwrap();
    assert!(
        archived["settings"]["archive"]
            .as_str()
            .unwrap()
            .starts_with("continuous"),
        "{archived}"
    );
    // Only the commit suite runs it.
    let out = keel(&[
        "bench",
        "insert",
        "--quick",
        "--rows",
        "1000",
        "--engines",
        "keel-archived",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("keel-archived takes part in the commit suite only"),
        "{}",
        text(&out.stdout)
    );
}

/// The values of the figure `case` / `metric` for `engine` (a kv run
/// has only the kv suite's figures).
fn values(doc: &Value, engine: &str, case: &str, metric: &str) -> Vec<f64> {
    figure(doc, engine, case, metric)
        .unwrap_or_else(|| panic!("no figure {engine} / {case} / {metric}"))["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn the_kv_disk_loop_takes_turns_with_keels_one_writer_and_a_turn_of_its_own_without_keel() {
    let run = |engines: &str| {
        let dir = scratch();
        let json = dir.path().join("kv.json");
        let out = keel(&[
            "bench",
            "kv",
            "--quick",
            "--secs",
            "0.05",
            "--repeat",
            "2",
            "--keys",
            "1000",
            "--cache-mib",
            "1",
            "--engines",
            engines,
            "--dir",
            dir.path().to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout), read_json(&json))
    };
    let fdatasync = "fdatasync loop, 1 committer";
    let one_writer = "individual writes, 1 writer / fdatasync loop";
    // Beside Keel: one figure per repeat (from the loop's slices between
    // Keel's), and the target divides by it repeat by repeat.
    let (stdout, doc) = run("disk,keel");
    assert!(
        stdout.contains("keel's one-writer phase takes turns with the disk's fdatasync loop in slices of 0.050 s (1 of keel's"),
        "{stdout}"
    );
    let disk = values(&doc, "disk", fdatasync, "ops_per_s");
    let keel = values(&doc, "keel", "individual writes", "ops_per_s");
    let ratios = values(&doc, "keel", one_writer, "x_target_reference");
    assert_eq!(disk.len(), 2);
    for i in 0..2 {
        assert!(
            (ratios[i] - keel[i] / disk[i]).abs() < 1e-9,
            "{ratios:?} {keel:?} {disk:?}"
        );
    }
    // Without Keel: the loop takes its own turn, once per repeat.
    let (stdout, doc) = run("disk,sqlite");
    assert!(!stdout.contains("takes turns"), "{stdout}");
    assert_eq!(values(&doc, "disk", fdatasync, "ops_per_s").len(), 2);
}

#[test]
fn quick_all_has_every_field() {
    let dir = scratch();
    let json = dir.path().join("all.json");
    let plots = dir.path().join("plots");
    let out = keel(&[
        "bench",
        "all",
        "--quick",
        "--secs",
        "0.05",
        "--repeat",
        "1",
        "--committers",
        "1,2",
        "--rows",
        "2000",
        "--keys",
        "1000",
        "--cache-mib",
        "1",
        "--wal-mib",
        "1",
        "--engines",
        "disk,keel,sqlite",
        "--dir",
        dir.path().to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert!(
        stdout.contains("cargo bench -p keel --bench wal"),
        "{stdout}"
    );
    let doc = read_json(&json);
    for f in doc["figures"].as_array().unwrap() {
        for k in [
            "suite", "engine", "case", "metric", "unit", "values", "median", "min", "max",
        ] {
            assert!(!f[k].is_null(), "{k} missing in {f}");
        }
    }
    let has = |suite: &str, engine: &str, metric: &str| {
        doc["figures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["suite"] == suite && f["engine"] == engine && f["metric"] == metric)
    };
    assert!(has("commit", "keel", "x_fdatasync_loop"));
    assert!(has("commit", "keel", "x_group_commit_reference"));
    assert!(has("insert", "sqlite", "rows_per_s"));
    assert!(has("insert", "sqlite", "write_bytes_per_logical_byte"));
    assert!(has("read", "sqlite", "reads_per_s"));
    assert!(has("read", "disk", "seq_read_mb_per_s"));
    assert!(has("recovery", "disk", "seq_read_mb_per_s"));
    assert!(has("io", "plain pwrite", "iops"));
    for suite in ["insert", "read"] {
        assert!(
            has(suite, "keel", "x_best_peer") || has(suite, "keel", "x_sqlite"),
            "{suite}"
        );
    }
    assert!(has("recovery", "keel", "recovery_s"));
    assert!(has("kv", "keel", "ops_per_s"));
    assert!(has("kv", "sqlite", "ops_per_s"));
    assert!(has("kv", "disk", "ops_per_s"));
    // Targets over sqlite and the disk's loop are measured; over redb
    // (not selected) they are not.
    let targets = doc["figures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["suite"] == "kv" && f["metric"] == "x_target_reference")
        .count();
    assert_eq!(targets, 3);
    assert!(has("recovery", "keel", "x_disk_seq_read"));
    let commands = doc["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n.as_str().unwrap().contains("cargo bench -p keel --bench"))
        .count();
    assert_eq!(commands, 3);
    assert!(has("recovery", "sqlite", "recovery_s"));
    assert!(has("read", "keel", "device_kib_per_read"));
    let cold = |engine: &str| {
        doc["figures"].as_array().unwrap().iter().any(|f| {
            f["suite"] == "read"
                && f["engine"] == engine
                && f["metric"] == "reads_per_s"
                && f["case"]
                    .as_str()
                    .unwrap()
                    .starts_with("cold, first 500 reads")
        })
    };
    assert!(cold("keel") && cold("sqlite"));
    let notes: Vec<&str> = doc["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for want in [
        "cargo bench -p keel --bench wal",
        "insert: bytes written measured at ",
        "read: every engine reads by address",
        "read: cold windows: posix_fadvise",
        "recovery: crash = SIGKILL",
    ] {
        assert!(
            notes.iter().any(|n| n.contains(want)),
            "{want} in {notes:?}"
        );
    }
    for f in [
        "commit-throughput.svg",
        "commit-latency.svg",
        "insert.svg",
        "read.svg",
    ] {
        assert_svg(&plots.join(f));
    }
}

#[test]
fn postgres_commit_rows_have_every_sweep_point_and_the_round_trip() {
    let dir = scratch();
    let json = dir.path().join("pg.json");
    let out = keel(&[
        "bench",
        "commit",
        "--secs",
        "0.1",
        "--repeat",
        "1",
        "--committers",
        "1,2",
        "--engines",
        "postgres",
        "--dir",
        dir.path().to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    let doc = read_json(&json);
    if doc["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["engine"] == "postgres")
    {
        return; // no server binaries here: the skip line is the whole output
    }
    // One committer: commit_delay cannot apply, only the delay-0 point runs.
    for (c, points) in [
        (1, vec!["0, commit_siblings=5"]),
        (
            2,
            vec![
                "0, commit_siblings=5",
                "10, commit_siblings=1",
                "50, commit_siblings=1",
                "200, commit_siblings=1",
            ],
        ),
    ] {
        for p in &points {
            let case = format!("committers={c}; commit_delay={p}");
            assert!(
                figure(&doc, "postgres", &case, "commits_per_s").is_some(),
                "{case}"
            );
        }
        let shown = format!("committers={c}");
        assert!(figure(&doc, "postgres", &shown, "commits_per_s").is_some());
        let rt = format!("committers={c}; SELECT 1 round trip, 1 connection");
        let us = figure(&doc, "postgres", &rt, "us_per_round_trip").unwrap();
        assert!(us["median"].as_f64().unwrap() > 0.0, "{us}");
        assert!(
            stdout.contains(&format!(
                "| postgres (best of {}: commit_delay=",
                points.len()
            )),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("postgres: SELECT 1 round trip (1 connection)"),
        "{stdout}"
    );
}

/// A `--dir` that is a file, or a `--json` that cannot be written, is bad
/// usage found before anything runs (exit 2, nothing on stdout), and the
/// file given stays as it was.
#[test]
fn paths_that_cannot_serve_exit_2_before_the_run() {
    let dir = scratch();
    let file = dir.path().join("user-file");
    std::fs::write(&file, b"user data").unwrap();
    let missing = dir.path().join("no-such-dir").join("out.json");
    for (flag, path, want) in [
        ("--dir", &file, "exists and is not a directory"),
        ("--plot", &file, "exists and is not a directory"),
        ("--json", &missing, "does not exist"),
    ] {
        let started = std::time::Instant::now();
        let out = keel(&[
            "bench",
            "kv",
            "--keys",
            "1000",
            "--secs",
            "0.01",
            "--repeat",
            "1",
            "--engines",
            "redb",
            flag,
            path.to_str().unwrap(),
        ]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        let first = err.lines().next().unwrap_or("");
        assert!(
            first.starts_with("error: ") && first.contains(want),
            "{flag}: {err}"
        );
        assert!(out.stdout.is_empty(), "{flag}: ran: {}", text(&out.stdout));
        assert!(started.elapsed().as_secs() < 30);
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"user data");
    assert!(!missing.parent().unwrap().exists());
}
