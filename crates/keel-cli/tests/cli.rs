//! End-to-end tests of the built `keel` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;
use common::{keel, text};

#[test]
fn demo_crashes_a_child_recovers_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let d = data.to_str().unwrap();
    let out = keel(&["demo", "--quick", "--dir", d, "--seed", "7"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains(" 0 lost, 0 phantom, 0 corrupt"), "{stdout}");
    assert!(stdout.contains("and tree by_version"), "{stdout}");
    // The index tree was read back, one key per tuple, none wrong.
    let verification = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("verification"))
        .unwrap();
    let count = |after: &str| -> u64 {
        let (head, _) = verification.split_once(after).unwrap();
        head.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(count(" index keys"), count(" tuples ("), "{verification}");
    assert!(count(" index keys") > 0, "{verification}");
    assert!(verification.ends_with(" 0 wrong"), "{verification}");
    assert!(stdout.contains("killed by SIGKILL"), "{stdout}");
    assert!(stdout.contains("verification passed"), "{stdout}");
    for row in ["commits/s", "recovery", "WAL", "accounts", "blobs"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(row)),
            "{row}: {stdout}"
        );
    }
    // The tree's row gives its shape, its keys the index keys read back.
    let tree = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("by_version"))
        .unwrap();
    assert!(
        tree.contains(" tree, ") && tree.contains("height "),
        "{tree}"
    );
    let keys: u64 = tree
        .split_once(" keys")
        .unwrap()
        .0
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(keys, count(" index keys"), "{tree}\n{verification}");
    // The recovered database opens and inspects cleanly.
    let out = keel(&[
        "inspect", "page", "--dir", d, "--rel", "accounts", "--page", "0",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("verdict    ok (heap page)"));

    // A second run wipes the first one's directory.
    let out = keel(&["demo", "--quick", "--dir", d, "--threads", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // A directory the demo did not make is left alone: exit 2, one line.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("precious"), b"keep me").unwrap();
    let out = keel(&["demo", "--quick", "--dir", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("keel: error: "), "{stderr}");
    assert!(stderr.contains("not made by keel demo"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one-line error: {stderr}");
    assert!(other.join("precious").exists());

    // The child's subcommand is internal.
    let help = text(&keel(&["--help"]).stdout);
    assert!(
        help.contains("demo") && !help.contains("demo-child"),
        "{help}"
    );
}

#[test]
fn demo_archive_loses_the_directory_and_restores_it_from_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let d = data.to_str().unwrap();
    let out = keel(&["demo", "--quick", "--dir", d, "--seed", "11", "--archive"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("lost the data directory"), "{stdout}");
    assert!(stdout.contains("restore took "), "{stdout}");
    assert!(
        stdout.contains("keel check on the restored directory: no problem"),
        "{stdout}"
    );
    for restored in stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("restored database:"))
    {
        assert!(restored.ends_with(" 0 lost, 0 phantom"), "{restored}");
    }
    assert!(stdout.contains("restore verified"), "{stdout}");
    // The point-in-time restore came first: fewer tuples, a new timeline.
    let tuples: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("restored database: "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(tuples.len(), 2, "{stdout}");
    assert!(tuples[0] < tuples[1], "{stdout}");
    assert!(
        stdout.contains("the restore started timeline 2"),
        "{stdout}"
    );
    // The archive is left for inspection and holds the backup.
    let archive = dir.path().join("demo.archive").join("store");
    let url = format!("file://{}", archive.display());
    let out = keel(&["archive", "list", "--archive", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("backup"),
        "{}",
        text(&out.stdout)
    );
    let out = keel(&["check", "--dir", d]);
    assert!(out.status.success(), "{}", text(&out.stdout));

    // A second run wipes the first one's archive too.
    let out = keel(&["demo", "--quick", "--dir", d, "--threads", "2", "--archive"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // An archive directory the demo did not make is left alone.
    let other = dir.path().join("other");
    let theirs = dir.path().join("other.archive");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("precious"), b"keep me").unwrap();
    let out = keel(&[
        "demo",
        "--quick",
        "--dir",
        other.to_str().unwrap(),
        "--archive",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not made by keel demo"));
    assert!(theirs.join("precious").exists());

    // --endpoint goes with an s3:// archive only.
    let out = keel(&[
        "demo",
        "--quick",
        "--dir",
        d,
        "--archive",
        "--endpoint",
        "http://h",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--endpoint is for --archive s3://"));
}

/// `DIR/pages`: two sealed heap pages of small tuples.
fn page_file(dir: &std::path::Path) -> std::path::PathBuf {
    use keel::page::{PAGE_SIZE, SlottedPage, TupleFlags, seal};
    let mut image = Vec::new();
    for p in 0..2u32 {
        let mut page = SlottedPage::init(vec![0u8; PAGE_SIZE], keel::PageId(p)).unwrap();
        for i in 0..40u8 {
            page.insert(&[i; 100], TupleFlags::NONE).unwrap();
        }
        let mut bytes = page.into_inner();
        seal(&mut bytes).unwrap();
        image.extend_from_slice(&bytes);
    }
    let file = dir.join("pages");
    std::fs::write(&file, &image).unwrap();
    file
}

#[test]
fn inspect_page_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = page_file(dir.path());
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

/// `DIR/wal`: 1,600 transactions (begin, heap-insert, commit) committed
/// from four threads through group commit.
fn wal_fixture(dir: &std::path::Path) {
    use keel::datadir::layout::wal_dir;
    use keel::types::{Lsn, PageId, RelationId, SlotId, TxnId};
    use keel::wal::payload::Payload;
    use keel::wal::{RecordMeta, RecordType, Wal, WalConfig};
    std::fs::create_dir_all(dir).unwrap();
    let io = keel_io::open_backend(&keel_io::IoConfig::default()).unwrap();
    let (wal, _) = Wal::open(io, &wal_dir(dir), WalConfig::default()).unwrap();
    let wal = std::sync::Arc::new(wal);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let wal = &wal;
            s.spawn(move || {
                for i in 0..400u64 {
                    let txn = TxnId(t * 400 + i + 1);
                    let meta = RecordMeta::new(RecordType::Begin).in_txn(txn, Lsn::ZERO);
                    let begin = wal.append_payload(meta, &Payload::Begin).unwrap();
                    let insert = Payload::HeapInsert {
                        slot: SlotId(i as u16),
                        flags: keel::page::TupleFlags::NONE,
                        tuple: vec![t as u8; 100],
                    };
                    let meta = RecordMeta::new(RecordType::HeapInsert)
                        .in_txn(txn, begin.lsn)
                        .on_page(RelationId(1), PageId(t as u32));
                    let ins = wal.append_payload(meta, &insert).unwrap();
                    let meta = RecordMeta::new(RecordType::Commit).in_txn(txn, ins.lsn);
                    let commit = Payload::Commit { commit_time_us: 1 };
                    wal.commit_wait(wal.append_payload(meta, &commit).unwrap())
                        .unwrap();
                }
            });
        }
    });
    std::sync::Arc::into_inner(wal).unwrap().close().unwrap();
}

#[test]
fn inspect_wal_lists_records_and_reports_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("wal-fixture");
    let d = data.to_str().unwrap();
    wal_fixture(&data);
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

/// A bulk insert's records, and the CLR that rolls one back, are decoded
/// and described by `keel inspect wal`.
#[test]
fn inspect_wal_describes_bulk_inserts_and_their_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let db = keel::Database::open(&data, keel::Config::default()).unwrap();
    let rel = db.create_relation("bulk").unwrap();
    let rows: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_le_bytes().repeat(25)).collect();
    let mut tx = db.begin().unwrap();
    tx.insert_many(rel, &rows).unwrap();
    tx.commit().unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert_many(rel, &rows[..10]).unwrap();
    tx.abort().unwrap();
    db.close().unwrap();
    let out = keel(&["inspect", "wal", "--all", "--dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("heap-multi-insert") && stdout.contains("slots 0..="),
        "{stdout}"
    );
    assert!(
        stdout.contains("tuples, 1000 B, flags -"),
        "no ten-row run in {stdout}"
    );
    assert!(stdout.contains("clr"), "{stdout}");
    assert!(stdout.contains("heap-multi-remove slots"), "{stdout}");
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

/// A data directory with relation "accounts": 600 rows of 100 bytes, every
/// tenth deleted, every seventh grown to 2000 bytes (too big for its page:
/// it moves and leaves a forward pointer), one 20 KB row in overflow pages; closed cleanly unless
/// `crash`, when the database is dropped without closing (recovery runs on
/// the next open).
fn sample_db(dir: &std::path::Path, crash: bool) {
    let db = keel::Database::open(dir, keel::Config::default()).unwrap();
    let rel = db.create_relation("accounts").unwrap();
    db.create_relation("empty").unwrap();
    let mut tx = db.begin().unwrap();
    let mut tids = Vec::new();
    for i in 0..600u32 {
        let mut row = vec![b'a' + (i % 26) as u8; 100];
        row[..4].copy_from_slice(&i.to_le_bytes());
        tids.push(tx.insert(rel, &row).unwrap());
    }
    tx.insert(rel, &vec![7u8; 20_000]).unwrap();
    tx.commit().unwrap();
    let mut tx = db.begin().unwrap();
    for (i, tid) in tids.iter().enumerate() {
        if i % 10 == 0 {
            tx.delete(rel, *tid).unwrap();
        } else if i % 7 == 0 {
            tx.update(rel, *tid, &[b'u'; 2000]).unwrap();
        }
    }
    tx.commit().unwrap();
    if crash {
        drop(db);
    } else {
        db.close().unwrap();
    }
}

#[test]
fn inspect_page_of_a_relation() {
    for crash in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("db");
        sample_db(&data, crash);
        let d = data.to_str().unwrap();
        let out = keel(&[
            "inspect", "page", "--dir", d, "--rel", "accounts", "--page", "0", "--hex",
        ]);
        assert!(out.status.success(), "crash {crash}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with("page 0 (8192 bytes)"), "{stdout}");
        assert!(stdout.contains("verdict    ok (heap page)"), "{stdout}");
        assert!(stdout.contains("checksum   0x"), "{stdout}");
        assert!(!stdout.contains("MISMATCH"), "{stdout}");
        // Deleted slots are freed after the commit. A crash leaves them
        // dead when that cleanup's records had not reached the log (a
        // documented leak of slot numbers), free when a background flush
        // made them durable first; a clean close always frees them.
        let freed = stdout.contains("] free");
        if crash {
            assert!(freed || stdout.contains("] dead"), "{stdout}");
        } else {
            assert!(freed, "{stdout}");
        }
        assert!(stdout.contains("] forward"), "{stdout}");
        assert!(stdout.contains("hex:"), "{stdout}");

        let out = keel(&[
            "inspect", "page", "--dir", d, "--rel", "accounts", "--page", "0", "--json",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
        assert_eq!(v["page"], 0);
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["type"], "heap");
        assert_eq!(v["header"]["checksum_ok"], true);
        let slots = v["slots"].as_array().unwrap();
        let first = slots[0]["state"].as_str().unwrap();
        assert!(first == "free" || (crash && first == "dead"), "{v}");
        assert_eq!(slots[1]["state"], "tuple");
        assert_eq!(slots[1]["preview_hex"], "01000000626262626262626262626262");
        assert!(
            slots.iter().any(|s| s["state"] == "forward"),
            "an update that moved leaves a forward pointer: {v}"
        );
    }
}

#[test]
fn inspect_page_of_a_relation_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("db");
    sample_db(&data, false);
    let d = data.to_str().unwrap();
    // The command ran and found nothing to show: exit 1, one line.
    for (args, needle) in [
        (
            &[
                "inspect", "page", "--dir", d, "--rel", "nope", "--page", "0",
            ][..],
            "no relation \"nope\"",
        ),
        (
            &[
                "inspect", "page", "--dir", d, "--rel", "empty", "--page", "0",
            ],
            "there is no page 0",
        ),
        (
            &[
                "inspect", "page", "--dir", d, "--rel", "accounts", "--page", "99999",
            ],
            "there is no page 99999",
        ),
        (
            &["inspect", "fsm", "--dir", d, "--rel", "nope"],
            "no relation",
        ),
    ] {
        let out = keel(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("keel: error: "), "{stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one-line error: {stderr}");
    }
    // A directory that holds no database is not created as one.
    let empty = tmp.path().join("nothing");
    let out = keel(&[
        "inspect",
        "fsm",
        "--dir",
        empty.to_str().unwrap(),
        "--rel",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a Keel data directory"));
    assert!(!empty.exists());
    // Nor is a directory with a log but no control file.
    let bare = tmp.path().join("bare");
    std::fs::create_dir_all(bare.join("wal")).unwrap();
    let b = bare.to_str().unwrap();
    let out = keel(&["inspect", "page", "--dir", b, "--rel", "x", "--page", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a Keel data directory"));
    assert!(!bare.join("control").exists() && !bare.join("rel").exists());
    // The database still opens after being inspected.
    let db = keel::Database::open(&data, keel::Config::default()).unwrap();
    let rel = db.relation("accounts").unwrap().unwrap();
    let tx = db.begin().unwrap();
    assert_eq!(tx.scan(rel).unwrap().count(), 601 - 60);
    drop(tx);
    db.close().unwrap();
}

#[test]
fn inspect_page_usage_errors_exit_2() {
    for args in [
        &["inspect", "page", "--page", "0"][..],
        &[
            "inspect", "page", "--dir", "d", "--file", "f", "--page", "0",
        ],
        &["inspect", "page", "--dir", "d", "--page", "0"],
        &["inspect", "page", "--rel", "r", "--page", "0"],
        &[
            "inspect", "page", "--file", "f", "--rel", "r", "--page", "0",
        ],
        &["inspect", "page", "--dir", "d", "--rel", "r"],
        &["inspect", "fsm", "--dir", "d"],
        &["inspect", "fsm", "--rel", "r"],
    ] {
        let out = keel(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn inspect_fsm_lists_pages_and_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("db");
    sample_db(&data, false);
    let d = data.to_str().unwrap();
    let out = keel(&["inspect", "fsm", "--dir", d, "--rel", "accounts"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let pages = stdout.lines().filter(|l| l.starts_with("page ")).count();
    assert!(pages >= 10, "{stdout}");
    assert!(
        stdout.contains("summary: relation \"accounts\""),
        "{stdout}"
    );
    assert!(stdout.contains("75-100%"), "{stdout}");

    let out = keel(&["inspect", "fsm", "--dir", d, "--rel", "accounts", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (summary, rows) = lines.split_last().unwrap();
    let summary = &summary["summary"];
    assert_eq!(rows.len(), pages);
    assert_eq!(summary["pages"], pages);
    let histogram: u64 = summary["histogram"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(histogram, pages as u64);
    for r in rows {
        let (c, t) = (
            r["contiguous"].as_u64().unwrap(),
            r["total"].as_u64().unwrap(),
        );
        assert!(c <= t && t <= 8152, "{r}");
    }
    // Overflow pages are not in the map; the file has more pages than it.
    assert!(
        summary["relation_pages"].as_u64().unwrap() > pages as u64,
        "{summary}"
    );

    // An empty relation has an empty map.
    let out = keel(&["inspect", "fsm", "--dir", d, "--rel", "empty", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(v["summary"]["pages"], 0);
}

#[test]
fn docs_prints_the_generated_diagrams() {
    let out = keel(&["docs", "wal-schema"]);
    assert_eq!(out.status.code(), Some(0));
    let text = text(&out.stdout);
    assert_eq!(text, keel::docs::wal_records_markdown());
    assert!(text.contains("classDiagram"));
    let out = keel(&["docs", "headers"]);
    assert_eq!(text_of(&out), keel::docs::headers_markdown());
    let out = keel(&["docs", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

fn text_of(out: &std::process::Output) -> String {
    text(&out.stdout)
}

/// Runs the built `keel` with `args` and stdout going to `stdout`.
fn keel_to(args: &[&str], stdout: std::process::Stdio) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

/// A reader that stopped listening (`keel check | true`) ends the output
/// quietly, with the command's own exit code; a full disk is an error
/// naming stdout. Never a panic.
#[test]
fn a_closed_or_full_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let d = data.to_str().unwrap();
    let out = keel(&["demo", "--quick", "--dir", d, "--seed", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for args in [
        &["check", "--dir", d][..],
        &["stats", "--dir", d],
        &["checkpoint", "--dir", d],
        &["docs", "headers"],
        &["inspect", "wal", "--dir", d],
    ] {
        // The read end is closed before the command starts: every write
        // to stdout fails with EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = keel_to(args, writer.into());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");

        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = keel_to(args, full.into());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("keel: error: writing to stdout: ")),
            "{args:?}: {stderr}"
        );
    }
}

/// The demo's archive goes beside the data directory however the directory
/// is spelled: a trailing slash does not put it inside.
#[test]
fn demo_archive_goes_beside_a_directory_spelled_with_a_trailing_slash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ts");
    let d = format!("{}/", data.display());
    let out = keel(&["demo", "--quick", "--dir", &d, "--seed", "3", "--archive"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!data.join(".archive").exists(), "{stdout}");
    assert!(dir.path().join("ts.archive").is_dir(), "{stdout}");
}
