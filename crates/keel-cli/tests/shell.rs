//! End-to-end tests of `keel shell`, `keel stats` and `keel checkpoint`,
//! driving the built binary through pipes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{keel, text};

/// Runs one shell session on `dir` with `script` as stdin (not a terminal:
/// no prompt) and returns its stdout lines.
fn shell(dir: &Path, script: &str) -> Vec<String> {
    shell_bytes(dir, script.as_bytes())
}

/// [`shell`] with stdin bytes that need not be UTF-8.
fn shell_bytes(dir: &Path, script: &[u8]) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["shell", "--dir", dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keel shell");
    child.stdin.take().unwrap().write_all(script).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_owned).collect()
}

/// Pairs of (command, expected answer lines): every command, autocommit,
/// explicit transactions, and the errors that leave the shell running. A
/// `*` stands for a TupleId whose slot depends on the engine's slot reuse
/// (slot 1 is freed by the delete).
const SESSION: &[(&str, &[&str])] = &[
    ("create t", &["ok"]),
    ("insert t 68656c6c6f", &["tid 0.0"]), // autocommit
    ("get t 0.0", &["val 68656c6c6f"]),
    ("update t 0.0 776f726c64", &["ok"]),
    ("insert t 0102", &["tid 0.1"]),
    ("delete t 0.1", &["ok"]),
    ("get t 0.1", &["none"]),
    (
        "insert t zz",
        &["err usage: invalid hex \"zz\": not a hex digit"],
    ),
    (
        "insert t abc",
        &["err usage: invalid hex \"abc\": odd number of digits"],
    ),
    ("insert nope 00", &["err usage: no relation nope"]),
    ("scan nope", &["err usage: no relation nope"]),
    (
        "update t 0.9 00",
        &["err usage: relation 1: no tuple at 0.9"],
    ),
    (
        "get t x.y",
        &["err usage: invalid TupleId: \"x.y\" (expected PAGE.SLOT, e.g. 0.1)"],
    ),
    (
        "frobnicate",
        &[
            "err usage: unknown command \"frobnicate\" (commands: create, begin, insert, get, update, delete, scan, create-tree, drop-tree, put, del, range, commit, abort, checkpoint, quit)",
        ],
    ),
    ("insert t", &["err usage: expected: insert REL HEX"]),
    ("commit", &["err usage: no transaction is open (use begin)"]),
    ("begin", &["ok"]),
    (
        "begin",
        &["err usage: a transaction is already open (commit or abort it first)"],
    ),
    ("insert t aa", &["tid *"]),
    ("scan t", &["row 0.0 776f726c64", "row * aa", "end"]),
    ("abort", &["aborted"]),
    ("abort", &["err usage: no transaction is open (use begin)"]),
    ("begin", &["ok"]),
    ("insert t bbbb", &["tid *"]),
    ("update t 0.0 cc", &["ok"]),
    ("commit", &["committed"]),
    ("checkpoint", &["ok"]),
    ("", &[]), // blank lines are skipped
    ("scan t", &["row 0.0 cc", "row * bbbb", "end"]),
    ("begin", &["ok"]),
    ("insert t dd", &["tid *"]), // rolled back by quit
    ("quit", &[]),
    ("insert t ee", &[]), // after quit: never read
];

/// `want` with `*` standing for one TupleId (`P.S`), or `#` for one
/// transaction id (a number).
fn matches(want: &str, line: &str) -> bool {
    let is_tid = |s: &str| s.parse::<keel::TupleId>().is_ok();
    let is_txn = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (split, ok): (_, &dyn Fn(&str) -> bool) = match want.split_once('*') {
        Some(split) => (Some(split), &is_tid),
        None => (want.split_once('#'), &is_txn),
    };
    match split {
        None => want == line,
        Some((pre, post)) => line
            .strip_prefix(pre)
            .and_then(|r| r.strip_suffix(post))
            .is_some_and(ok),
    }
}

#[test]
fn shell_protocol_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let script: String = SESSION.iter().map(|(cmd, _)| format!("{cmd}\n")).collect();
    let expected: Vec<String> = SESSION
        .iter()
        .flat_map(|(_, out)| out.iter().map(|l| (*l).to_owned()))
        .collect();
    let lines = shell(&dir, &script);
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(matches(want, line), "expected {want:?}, got {line:?}");
    }
    let bbbb = lines.iter().find(|l| l.ends_with(" bbbb")).unwrap();
    let bbbb_tid = bbbb.split(' ').nth(1).unwrap();

    // A second session (reopen): autocommitted and committed data survived,
    // the aborted and the unfinished transaction left nothing. End of input
    // without quit ends the session too.
    let lines = shell(&dir, &format!("scan t\nget t {bbbb_tid}\n"));
    assert_eq!(lines, ["row 0.0 cc", bbbb, "end", "val bbbb"]);
}

/// The tree commands: hex keys and values, ranges with open and closed
/// bounds, transactions, the errors, and a reopen.
const TREE_SESSION: &[(&str, &[&str])] = &[
    ("create-tree idx", &["ok"]),
    (
        "create-tree idx",
        &["err usage: relation \"idx\" exists already"],
    ),
    ("put idx 02 bb", &["ok"]),
    ("put idx 01 aa", &["ok"]),
    ("put idx 03 cc", &["ok"]),
    ("put idx 02 b2", &["ok"]), // replaces
    ("get idx 02", &["val b2"]),
    ("get idx 09", &["none"]),
    ("range idx", &["kv 01 aa", "kv 02 b2", "kv 03 cc", "end"]),
    ("range idx 02", &["kv 02 b2", "kv 03 cc", "end"]),
    ("range idx 01 03", &["kv 01 aa", "kv 02 b2", "end"]),
    ("range idx - 02", &["kv 01 aa", "end"]),
    ("range idx 04", &["end"]),
    ("del idx 01", &["val aa"]),
    ("del idx 01", &["none"]),
    ("begin", &["ok"]),
    ("put idx 04 dd", &["ok"]),
    ("del idx 03", &["val cc"]),
    ("abort", &["aborted"]),
    ("begin", &["ok"]),
    ("put idx 05 ee", &["ok"]),
    ("commit", &["committed"]),
    ("begin read", &["ok"]),
    ("get idx 05", &["val ee"]),
    (
        "put idx 06 ff",
        &["err usage: transaction # is read-only (begun with begin_read): it cannot write"],
    ),
    ("range idx 05", &["kv 05 ee", "end"]),
    ("commit", &["committed"]),
    ("begin write", &["err usage: expected: begin [read]"]),
    (
        "put idx 0g 00",
        &["err usage: invalid hex \"0g\": not a hex digit"],
    ),
    (
        "put idx 01",
        &["err usage: expected: put TREE KEY VALUE (hex)"],
    ),
    (
        "range idx 01 02 03",
        &["err usage: expected: range TREE [LO [HI]] (hex; - for an open bound)"],
    ),
    ("get nope 01", &["err usage: no tree nope"]),
    ("create t", &["ok"]),
    (
        "put t 01 01",
        &["err usage: relation t is a heap, not a tree"],
    ),
    ("insert t 00", &["tid 0.0"]),
    ("get t 0.0", &["val 00"]), // a TupleId: the heap's get
    ("create-tree gone", &["ok"]),
    ("put gone 01 01", &["ok"]),
    ("drop-tree gone", &["ok"]),
    ("get gone 01", &["err usage: no tree gone"]),
    (
        "drop-tree t",
        &["err usage: relation t is a heap, not a tree"],
    ),
];

#[test]
fn shell_tree_commands_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let script: String = TREE_SESSION
        .iter()
        .map(|(cmd, _)| format!("{cmd}\n"))
        .collect();
    let expected: Vec<&str> = TREE_SESSION
        .iter()
        .flat_map(|(_, out)| out.iter().copied())
        .collect();
    let lines = shell(&dir, &script);
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(matches(want, line), "expected {want:?}, got {line:?}");
    }
    // A key over the maximum is refused, naming both lengths.
    let long = "ab".repeat(keel::btree::MAX_KEY_LEN + 1);
    let lines = shell(&dir, &format!("put idx {long} 00\nrange idx\n"));
    assert_eq!(
        lines,
        [
            "err usage: key of 1025 bytes exceeds the maximum of 1024 bytes",
            "kv 02 b2",
            "kv 03 cc",
            "kv 05 ee",
            "end"
        ]
    );
}

/// `create`, `create-tree` and `drop-tree` commit on their own at once, so
/// inside `begin`…`commit` they are refused (an `abort` could not undo
/// them, and a `drop-tree` of a tree the open transaction used would wait
/// for it), and the open transaction goes on unharmed.
#[test]
fn ddl_inside_a_transaction_is_refused_and_the_transaction_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let refused = |cmd: &str| {
        format!(
            "err usage: {cmd} commits at once in a transaction of its own and cannot be \
             part of the open one (commit or abort it first)"
        )
    };
    let lines = shell(
        &dir,
        "create-tree t\nbegin\nput t 01 aa\ncreate x\ncreate-tree y\ndrop-tree t\n\
         put t 02 bb\nabort\nbegin\nput t 03 cc\ndrop-tree t\ncommit\n\
         insert x 00\nget y 01\nrange t\n",
    );
    assert_eq!(
        lines,
        [
            "ok".to_owned(),
            "ok".to_owned(),
            "ok".to_owned(),
            refused("create"),
            refused("create-tree"),
            refused("drop-tree"),
            "ok".to_owned(),
            "aborted".to_owned(),
            "ok".to_owned(),
            "ok".to_owned(),
            refused("drop-tree"),
            "committed".to_owned(),
            "err usage: no relation x".to_owned(),
            "err usage: no tree y".to_owned(),
            "kv 03 cc".to_owned(),
            "end".to_owned(),
        ]
    );
}

/// A line that is not UTF-8 is refused, naming the first bad byte, rather
/// than run with its bytes replaced (two different names would reach one
/// relation); the session goes on.
#[test]
fn a_line_that_is_not_utf8_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let lines = shell_bytes(&dir, b"create r\xff\ncreate r\xfe\ncreate r\n");
    assert_eq!(
        lines,
        [
            "err usage: the line is not UTF-8 (byte 9 of it): not run",
            "err usage: the line is not UTF-8 (byte 9 of it): not run",
            "ok",
        ]
    );
    let lines = shell(&dir, "create r\u{fffd}\n");
    assert_eq!(lines, ["ok"], "no relation was made from the refused lines");
}

/// `keel shell --help` documents the protocol: a line for every command
/// the shell names when it meets an unknown one, with its answer.
#[test]
fn shell_help_documents_every_command_and_its_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = shell(&tmp.path().join("db"), "frobnicate\n");
    let commands = lines[0]
        .split_once("(commands: ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap();
    let out = keel(&["shell", "--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    for cmd in commands.split(", ") {
        assert!(
            help.lines()
                .any(|l| l.starts_with(&format!("  {cmd} ")) || l == format!("  {cmd}")),
            "no line for {cmd:?} in:\n{help}"
        );
    }
    for answer in [
        "-> tid P.S",
        "-> val HEX | none",
        "then: end",
        "-> committed",
    ] {
        assert!(help.contains(answer), "{answer:?} missing from:\n{help}");
    }
    assert!(help.contains("err KIND: message"), "{help}");
}

#[test]
fn stats_json_and_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let d = dir.to_str().unwrap();
    let lines = shell(&dir, "create a\ninsert a 0011\ninsert a 2233\ncreate b\n");
    assert_eq!(lines, ["ok", "tid 0.0", "tid 0.1", "ok"]);

    let out = keel(&["stats", "--dir", d, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rels = v["relations"].as_array().unwrap();
    let a = rels.iter().find(|r| r["name"] == "a").unwrap();
    assert_eq!(a["live_tuples"], 2);
    assert_eq!(a["pages"], 1);
    let fill = a["fill_factor"].as_f64().unwrap();
    assert!(fill > 0.0 && fill < 1.0, "{fill}");
    assert!(a["fragmentation"].as_f64().is_some());
    assert!(rels.iter().any(|r| r["name"] == "b"));
    assert!(v["wal"]["segments"].as_u64().unwrap() >= 1);
    assert!(v["wal"]["bytes"].as_u64().unwrap() > 0);
    assert!(v["wal"]["end"].is_string());
    assert_eq!(v["last_checkpoint"]["clean_shutdown"], true);
    assert!(v["last_checkpoint"]["redo_start"].is_string());
    assert!(v["recovery"]["records_scanned"].is_u64());
    assert!(v["buffer"]["frames"].as_u64().unwrap() > 0);
    assert!(v["io"]["backend"].is_string());
    assert!(!v["io"]["ops"].as_array().unwrap().is_empty());

    let out = keel(&["stats", "--dir", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("2 live tuples"), "{stdout}");
    assert!(stdout.contains("last checkpoint"), "{stdout}");

    let out = keel(&["checkpoint", "--dir", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("recovery: "), "{stdout}");
    assert!(stdout.contains("\ncheckpoint: begin "), "{stdout}");

    // A directory that is not a database: exit 1, one line, nothing created.
    let missing = tmp.path().join("missing");
    for cmd in ["stats", "checkpoint"] {
        let out = keel(&[cmd, "--dir", missing.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        assert!(stderr.starts_with("keel: error: "), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!missing.exists());
    }
}

/// A crash between sending `commit` and reading `committed`: the shell is
/// killed with SIGKILL right after the commit line is written. The
/// transaction was in flight, so after reopening it is either wholly there
/// or wholly absent; every change answered before is there.
#[test]
fn a_crash_between_commit_and_its_answer_keeps_all_or_nothing() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["shell", "--dir", dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ask = |cmd: &str| {
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
    };
    ask("create t");
    assert_eq!(lines.next().unwrap().unwrap(), "ok");
    ask("insert t 01");
    assert_eq!(lines.next().unwrap().unwrap(), "tid 0.0"); // acknowledged
    ask("begin");
    assert_eq!(lines.next().unwrap().unwrap(), "ok");
    for v in ["aa", "bb", "cc"] {
        ask(&format!("insert t {v}"));
        assert!(lines.next().unwrap().unwrap().starts_with("tid "));
    }
    ask("commit");
    child.kill().unwrap(); // SIGKILL, without reading the answer
    child.wait().unwrap();
    // The open after the kill syncs the data directory before recovery.
    let out = keel(&[
        "checkpoint",
        "--dir",
        dir.to_str().unwrap(),
        "--recovery-init-sync",
        "syncfs",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .starts_with("data directory sync (unclean shutdown): SyncFs, 0 files, 3 directories"),
        "{stdout}"
    );
    let rows = shell(&dir, "scan t\n");
    let values: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.strip_prefix("row "))
        .map(|r| r.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(rows.last().map(String::as_str), Some("end"), "{rows:?}");
    assert!(
        values == ["01"] || values == ["01", "aa", "bb", "cc"],
        "the in-flight transaction must be all or nothing: {values:?}"
    );
}
