//! `keel shell`: a line protocol on stdin/stdout, one response per command,
//! flushed after each one.
//!
//! The commands and their answers are [`PROTOCOL`], which `keel shell
//! --help` prints.
//!
//! With `--archive URL` (and `keel archive`'s location flags) an archiver
//! ships the log to that archive while the shell runs, with the policy the
//! `--on-archive-failure` flags choose ([`crate::archive_policy`]): under
//! `stall`, a commit that waited too long for the archive is answered
//! `err transient: …` and was rolled back. At the end the archiver is
//! stopped (draining what it can) before the database is closed; its
//! progress is in the data directory's status file (`keel stats`). A
//! directory an archiver worked on is opened with its log held
//! (`crate::stats` module essay), with or without `--archive`.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use keel::{Config, Database, DbError, ErrorClass, RelationId, Transaction, TupleId};
use keel_archive::{Archiver, ArchiverOptions};

use crate::Failure;

/// `keel shell` arguments.
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Data directory (created if it does not exist; opening runs recovery).
    #[arg(long)]
    dir: PathBuf,
    /// Archive the log while the shell runs: `s3://BUCKET/PREFIX` or
    /// `file:///DIR` (with `--on-archive-failure stall`, a commit that
    /// waited too long for the archive is answered `err transient: …` and
    /// was rolled back).
    #[arg(long, value_name = "URL")]
    archive: Option<String>,
    /// With --archive: the endpoint of an S3-compatible server
    /// (`http://127.0.0.1:8333`); unset for AWS S3 itself.
    #[arg(long, value_name = "URL", requires = "archive")]
    endpoint: Option<String>,
    /// With --archive: the S3 region (default: AWS_REGION, else us-east-1).
    #[arg(long, requires = "archive")]
    region: Option<String>,
    /// With --archive: a file of `key = value` credentials that only its
    /// owner may read or write. Default: the AWS_* environment variables.
    #[arg(long, value_name = "FILE", requires = "archive")]
    credentials_file: Option<PathBuf>,
    /// With --archive: seconds one request to the store may take (1 to
    /// 86400).
    #[arg(long, default_value_t = 60, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=crate::archive::MAX_REQUEST_SECS))]
    timeout: u64,
    #[command(flatten)]
    policy: crate::archive_policy::PolicyArgs,
}

/// The protocol, as `keel shell --help` prints it after the options.
pub const PROTOCOL: &str = "\
Protocol: one command a line on stdin, one answer (or, for scan and range,
several lines ending in `end`) on stdout, flushed after each command:

  create REL            -> ok
  begin                 -> ok
  begin read            -> ok                 (a read-only transaction: writes fail)
  insert REL HEX        -> tid P.S
  get REL P.S           -> val HEX | none
  update REL P.S HEX    -> ok
  delete REL P.S        -> ok
  scan REL              -> row P.S HEX (one per tuple, in TupleId order), then: end
  create-tree TREE      -> ok
  drop-tree TREE        -> ok
  put TREE KEY VALUE    -> ok                 (insert or replace)
  get TREE KEY          -> val HEX | none
  del TREE KEY          -> val HEX | none     (the value deleted)
  range TREE [LO [HI]]  -> kv KEY VALUE (one per key, in key order), then: end
  commit                -> committed          (written only once the commit is durable)
  abort                 -> aborted
  checkpoint            -> ok
  quit

Tuples are named by TupleId (P.S: page and slot, e.g. 0.1); tuple values,
tree keys and tree values are hex (get tells a TupleId from a key by its
dot). A range is LO <= key < HI; an omitted bound, or -, is open. Blank
lines and lines starting with # are skipped. A line longer than 64 MiB
is answered with an error and not run.

Outside begin...commit each data command runs in its own transaction
(autocommit) and is answered only once that transaction is durable.
create, create-tree and drop-tree always commit at once on their own, so
they are refused while a transaction is open (an abort could not undo
them). Any error, a line that is not UTF-8 included, is answered
`err KIND: message` (KIND: usage, transient, corruption, fatal) and the
shell goes on. End of input or quit with a transaction open rolls it back.
With a terminal on stdin the shell prompts with `keel> `.";

const PROMPT: &str = "keel> ";

/// The longest command line the shell reads, newline included: a value
/// of up to 32 MiB in hex. Longer lines are read to their end without
/// being kept, answered with an error and not run, so no input (a file
/// without newlines, `/dev/zero`) makes the shell hold more than this.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// One line of input, read by [`read_line`].
enum Line {
    /// The line is in the buffer.
    Read,
    /// The line was longer than the limit; this many bytes were read and
    /// dropped.
    TooLong(u64),
    /// End of input.
    End,
}

/// Reads the next line of `input` into `raw` (cleared first), keeping at
/// most `limit` bytes of it.
fn read_line(input: &mut impl BufRead, raw: &mut Vec<u8>, limit: usize) -> std::io::Result<Line> {
    raw.clear();
    let n = (&mut *input).take(limit as u64).read_until(b'\n', raw)?;
    if n == 0 {
        return Ok(Line::End);
    }
    if n < limit || raw.last() == Some(&b'\n') || input.fill_buf()?.is_empty() {
        return Ok(Line::Read);
    }
    let mut dropped = n as u64;
    raw.clear();
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let (used, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        input.consume(used);
        dropped += used as u64;
        if end {
            break;
        }
    }
    Ok(Line::TooLong(dropped))
}
const COMMANDS: &str = "create, begin, insert, get, update, delete, scan, create-tree, \
                        drop-tree, put, del, range, commit, abort, checkpoint, quit";

/// An error answered as `err KIND: message`.
#[derive(Debug)]
struct ShellError {
    kind: &'static str,
    msg: String,
}

impl ShellError {
    fn usage(msg: impl Into<String>) -> Self {
        ShellError {
            kind: "usage",
            msg: msg.into(),
        }
    }
}

impl From<keel::Error> for ShellError {
    fn from(e: keel::Error) -> Self {
        let kind = match e.class() {
            ErrorClass::Usage => "usage",
            ErrorClass::Transient => "transient",
            ErrorClass::Corruption => "corruption",
            ErrorClass::Fatal => "fatal",
        };
        ShellError {
            kind,
            msg: Failure::from(e).0,
        }
    }
}

/// A data command, parsed and with its relation resolved.
enum Op {
    Insert(RelationId, Vec<u8>),
    Get(RelationId, TupleId),
    Update(RelationId, TupleId, Vec<u8>),
    Delete(RelationId, TupleId),
    Scan(RelationId),
    Put(RelationId, Vec<u8>, Vec<u8>),
    GetKey(RelationId, Vec<u8>),
    Del(RelationId, Vec<u8>),
    Range(RelationId, Bound<Vec<u8>>, Bound<Vec<u8>>),
}

pub fn run(args: ShellArgs) -> Result<(), Failure> {
    let policy = args
        .policy
        .policy_with(args.archive.is_some())
        .unwrap_or_else(|Failure(msg)| crate::exit_usage("shell", &msg));
    let location = args.archive.clone().map(|url| crate::archive::Location {
        url,
        endpoint: args.endpoint.clone(),
        region: args.region.clone(),
        credentials_file: args.credentials_file.clone(),
        timeout: args.timeout,
    });
    let target = location
        .as_ref()
        .map(crate::archive::parse_location)
        .transpose()?;
    let config = Config {
        io: keel_io::IoConfig::from_env()?,
        ..Config::default()
    };
    let db = Database::open(&args.dir, config).map_err(|e| {
        Failure(format!(
            "opening {}: {}",
            args.dir.display(),
            Failure::from(e).0
        ))
    })?;
    let db = Arc::new(db);
    let archiver = match &target {
        Some(target) => {
            let options = ArchiverOptions {
                op_timeout: Duration::from_secs(args.timeout),
                on_archive_down: policy,
                ..ArchiverOptions::default()
            };
            match Archiver::start(db.clone(), target, options) {
                Ok(a) => Some(a),
                Err(e) => {
                    let closed = close(db, &args.dir)
                        .err()
                        .map(|c| format!("; then {}", c.0))
                        .unwrap_or_default();
                    return Err(Failure(format!("starting the archiver: {e}{closed}")));
                }
            }
        }
        None => None,
    };
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let result = session(
        &db,
        stdin.lock(),
        &mut std::io::stdout().lock(),
        interactive,
    );
    let stopped = archiver.map(Archiver::stop).transpose();
    let closed = close(db, &args.dir);
    result?;
    stopped.map_err(|e| Failure(format!("stopping the archiver: {e}")))?;
    closed
}

/// Closes the database once the archiver let it go, naming the directory
/// on failure.
fn close(db: Arc<Database>, dir: &std::path::Path) -> Result<(), Failure> {
    let db = Arc::try_unwrap(db)
        .map_err(|_| Failure(format!("{} is still in use at exit", dir.display())))?;
    db.close()
        .map_err(|e| Failure(format!("closing {}: {}", dir.display(), Failure::from(e).0)))
}

/// Reads commands until `quit` or end of input. A reader that stopped
/// listening (broken pipe) ends the session quietly.
fn session(
    db: &Database,
    input: impl BufRead,
    out: &mut impl Write,
    interactive: bool,
) -> Result<(), Failure> {
    session_limited(db, input, out, interactive, MAX_LINE_BYTES)
}

/// [`session`] with lines of at most `limit` bytes.
fn session_limited(
    db: &Database,
    mut input: impl BufRead,
    out: &mut impl Write,
    interactive: bool,
    limit: usize,
) -> Result<(), Failure> {
    // Declared after `db`: the open transaction borrows it.
    let mut tx: Option<Transaction<'_>> = None;
    let mut raw = Vec::new();
    loop {
        if interactive && !emit(out, PROMPT)? {
            break;
        }
        let line = read_line(&mut input, &mut raw, limit)
            .map_err(|e| Failure(format!("reading stdin: {e}")))?;
        let reply = match line {
            Line::End => break,
            Line::TooLong(n) => format!(
                "err usage: the line is {n} bytes, longer than the {limit} a line may have: \
                 not run"
            ),
            Line::Read => match std::str::from_utf8(&raw) {
                Err(e) => format!(
                    "err usage: the line is not UTF-8 (byte {} of it): not run",
                    e.valid_up_to() + 1
                ),
                Ok(line) => {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let Some(&first) = words.first() else {
                        continue;
                    };
                    if first.starts_with('#') {
                        continue;
                    }
                    if first == "quit" && words.len() == 1 {
                        break;
                    }
                    match execute(db, &mut tx, &words) {
                        Ok(text) => text,
                        Err(e) => format!("err {}: {}", e.kind, e.msg.replace('\n', " ")),
                    }
                }
            },
        };
        if !emit(out, &format!("{reply}\n"))? {
            break;
        }
    }
    if interactive {
        // Leave the terminal's cursor on a fresh line after ^D.
        emit(out, "\n")?;
    }
    drop(tx); // rolls back a transaction left open
    Ok(())
}

/// Writes and flushes; `false` when the reader has gone away.
fn emit(out: &mut impl Write, text: &str) -> Result<bool, Failure> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure(format!("writing to stdout: {e}"))),
    }
}

/// Runs one command and returns its answer (several lines for `scan`).
fn execute<'db>(
    db: &'db Database,
    tx: &mut Option<Transaction<'db>>,
    words: &[&str],
) -> Result<String, ShellError> {
    if let [cmd @ ("create" | "create-tree" | "drop-tree"), _] = words
        && tx.is_some()
    {
        return Err(ShellError::usage(format!(
            "{cmd} commits at once in a transaction of its own and cannot be \
             part of the open one (commit or abort it first)"
        )));
    }
    match words {
        ["create", rel] => {
            db.create_relation(rel)?;
            Ok("ok".into())
        }
        ["create-tree", name] => {
            db.create_tree(name)?;
            Ok("ok".into())
        }
        ["drop-tree", name] => {
            db.drop_tree(name)?;
            Ok("ok".into())
        }
        ["begin"] | ["begin", "read"] => {
            if tx.is_some() {
                return Err(ShellError::usage(
                    "a transaction is already open (commit or abort it first)",
                ));
            }
            *tx = Some(match words {
                [_, _] => db.begin_read()?,
                _ => db.begin()?,
            });
            Ok("ok".into())
        }
        ["commit"] => {
            let t = tx.take().ok_or_else(no_transaction)?;
            t.commit()?;
            Ok("committed".into())
        }
        ["abort"] => {
            let t = tx.take().ok_or_else(no_transaction)?;
            t.abort()?;
            Ok("aborted".into())
        }
        ["checkpoint"] => {
            db.checkpoint()?;
            Ok("ok".into())
        }
        _ => {
            let op = parse_op(db, words)?;
            match tx {
                Some(t) => apply(t, &op),
                None => autocommit(db, &op),
            }
        }
    }
}

fn no_transaction() -> ShellError {
    ShellError::usage("no transaction is open (use begin)")
}

/// Runs `op` in its own transaction; answers once the commit is durable.
fn autocommit(db: &Database, op: &Op) -> Result<String, ShellError> {
    let mut t = db.begin()?;
    let reply = apply(&mut t, op)?; // dropping `t` on error rolls it back
    t.commit()?;
    Ok(reply)
}

fn apply(t: &mut Transaction<'_>, op: &Op) -> Result<String, ShellError> {
    Ok(match op {
        Op::Insert(rel, value) => format!("tid {}", t.insert(*rel, value)?),
        Op::Get(rel, tid) => match t.get(*rel, *tid)? {
            Some(v) => format!("val {}", hex(&v)),
            None => "none".into(),
        },
        Op::Update(rel, tid, value) => {
            t.update(*rel, *tid, value)?;
            "ok".into()
        }
        Op::Delete(rel, tid) => {
            t.delete(*rel, *tid)?;
            "ok".into()
        }
        Op::Scan(rel) => {
            let mut rows = Vec::new();
            for row in t.scan(*rel)? {
                let (tid, v) = row?;
                rows.push((tid, v));
            }
            rows.sort_by_key(|(tid, _)| *tid);
            let mut text = String::new();
            for (tid, v) in rows {
                text.push_str(&format!("row {tid} {}\n", hex(&v)));
            }
            text.push_str("end");
            text
        }
        Op::Put(tree, key, value) => {
            t.put(*tree, key, value)?;
            "ok".into()
        }
        Op::GetKey(tree, key) => found(t.get_key(*tree, key)?),
        Op::Del(tree, key) => found(t.delete_key(*tree, key)?),
        Op::Range(tree, lo, hi) => {
            let mut text = String::new();
            for kv in t.range(*tree, (bound(lo), bound(hi)))? {
                let (k, v) = kv?;
                text.push_str(&format!("kv {} {}\n", hex(&k), hex(&v)));
            }
            text.push_str("end");
            text
        }
    })
}

/// `val HEX` for a value, `none` for no value.
fn found(v: Option<Vec<u8>>) -> String {
    v.map_or_else(|| "none".into(), |v| format!("val {}", hex(&v)))
}

fn bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    b.as_ref().map(Vec::as_slice)
}

/// Parses a data command and resolves its relation.
fn parse_op(db: &Database, words: &[&str]) -> Result<Op, ShellError> {
    let rel = |name: &str| -> Result<RelationId, ShellError> {
        db.relation(name)?
            .ok_or_else(|| keel::Error::from(DbError::NoSuchRelation(name.to_owned())).into())
    };
    let tree = |name: &str| -> Result<RelationId, ShellError> {
        db.tree(name)?
            .ok_or_else(|| ShellError::usage(format!("no tree {name}")))
    };
    Ok(match words {
        ["insert", r, h] => Op::Insert(rel(r)?, unhex(h)?),
        ["get", r, t] if t.contains('.') => Op::Get(rel(r)?, tid(t)?),
        ["get", r, k] => Op::GetKey(tree(r)?, unhex(k)?),
        ["put", r, k, v] => Op::Put(tree(r)?, unhex(k)?, unhex(v)?),
        ["del", r, k] => Op::Del(tree(r)?, unhex(k)?),
        ["range", r, bounds @ ..] if bounds.len() <= 2 => {
            let b = |i: usize| match bounds.get(i) {
                None | Some(&"-") => Ok(Bound::Unbounded),
                Some(h) => unhex(h).map(|k| match i {
                    0 => Bound::Included(k),
                    _ => Bound::Excluded(k),
                }),
            };
            Op::Range(tree(r)?, b(0)?, b(1)?)
        }
        ["update", r, t, h] => Op::Update(rel(r)?, tid(t)?, unhex(h)?),
        ["delete", r, t] => Op::Delete(rel(r)?, tid(t)?),
        ["scan", r] => Op::Scan(rel(r)?),
        [cmd, ..] => return Err(ShellError::usage(usage_of(cmd))),
        [] => return Err(ShellError::usage("empty command")),
    })
}

/// The error for a command with the wrong arguments or an unknown name.
fn usage_of(cmd: &str) -> String {
    let form = match cmd {
        "create" => "create REL",
        "begin" => "begin [read]",
        "insert" => "insert REL HEX",
        "get" => "get REL P.S | get TREE KEY",
        "update" => "update REL P.S HEX",
        "delete" => "delete REL P.S",
        "scan" => "scan REL",
        "create-tree" => "create-tree TREE",
        "drop-tree" => "drop-tree TREE",
        "put" => "put TREE KEY VALUE (hex)",
        "del" => "del TREE KEY (hex)",
        "range" => "range TREE [LO [HI]] (hex; - for an open bound)",
        "commit" => "commit",
        "abort" => "abort",
        "checkpoint" => "checkpoint",
        "quit" => "quit",
        _ => return format!("unknown command {cmd:?} (commands: {COMMANDS})"),
    };
    format!("expected: {form}")
}

fn tid(s: &str) -> Result<TupleId, ShellError> {
    s.parse::<TupleId>()
        .map_err(|e| ShellError::usage(format!("{e} (expected PAGE.SLOT, e.g. 0.1)")))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Result<Vec<u8>, ShellError> {
    let bad = |why: &str| ShellError::usage(format!("invalid hex {s:?}: {why}"));
    if !s.len().is_multiple_of(2) {
        return Err(bad("odd number of digits"));
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| {
                (c as char)
                    .to_digit(16)
                    .ok_or_else(|| bad("not a hex digit"))
            };
            Ok((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(unhex("00ff7A").ok(), Some(vec![0, 255, 0x7a]));
        assert_eq!(hex(&[0, 255, 0x7a]), "00ff7a");
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
        assert!(unhex("é1").is_err());
        assert_eq!(unhex("").ok(), Some(vec![]));
    }

    /// One random command line: mostly a command with arguments of the
    /// right kinds (names that may not exist, tuple ids that may not,
    /// hex of every length, sometimes malformed), else words in random
    /// order and number, sometimes bytes that are not UTF-8 at all.
    fn random_line(rng: &mut keel_io::sim::Rng) -> Vec<u8> {
        const COMMANDS: &[&str] = &[
            "create",
            "begin",
            "insert",
            "get",
            "update",
            "delete",
            "scan",
            "create-tree",
            "drop-tree",
            "put",
            "del",
            "range",
            "commit",
            "abort",
            "checkpoint",
        ];
        const FORMS: &[&str] = &[
            "insert R H",
            "insert R H",
            "get R T",
            "update R T H",
            "delete R T",
            "scan R",
            "put K H H",
            "put K H H",
            "get K H",
            "del K H",
            "range K",
            "range K H",
            "range K H H",
            "range K - H",
            "begin",
            "begin read",
            "commit",
            "abort",
            "checkpoint",
            "create N",
            "create-tree N",
            "drop-tree N",
        ];
        const ODD: &[&str] = &[
            "4294967295.65535",
            "0.65536",
            "1.",
            ".1",
            "-1.0",
            "abc",
            "zz",
            "é1",
            "\u{0}",
            "-",
        ];
        let mut line = String::new();
        let roll = rng.below(100);
        if roll < 2 {
            let junk: Vec<u8> = (0..rng.below(40)).map(|_| rng.below(256) as u8).collect();
            return [junk, vec![b'\n']].concat();
        }
        let words: Vec<String> = if roll < 80 {
            pick(rng, FORMS).split(' ').map(str::to_owned).collect()
        } else {
            (0..=rng.below(4)).map(|_| pick(rng, COMMANDS)).collect()
        };
        for w in words {
            let arg = match w.as_str() {
                "R" => pick(rng, &["r", "r", "r", "s", "t", "nosuch"]),
                "K" => pick(rng, &["t", "t", "t", "u", "r", "nosuch"]),
                "N" => pick(rng, &["s", "u", "r", "t", "keel_catalog"]),
                "T" => format!("{}.{}", rng.below(6), rng.below(40)),
                "H" => {
                    let len = [0, 1, 2, 5, 40, 255, 1025, 9000][rng.below(8) as usize];
                    let hex: String = (0..len).map(|_| format!("{:02x}", rng.below(4))).collect();
                    match rng.below(20) {
                        0 => format!("{hex}0"),
                        1 => format!("g{hex}"),
                        _ => hex,
                    }
                }
                _ if rng.below(30) == 0 => pick(rng, ODD),
                _ => w,
            };
            line.push_str(&arg);
            line.push(if rng.below(10) == 0 { '\t' } else { ' ' });
        }
        if line.split_whitespace().eq(["quit"]) {
            line.clear();
        }
        line.push('\n');
        line.into_bytes()
    }

    fn pick(rng: &mut keel_io::sim::Rng, words: &[&str]) -> String {
        words[rng.below(words.len() as u64) as usize].to_owned()
    }

    /// Thousands of random command lines through one session on a
    /// simulated disk: the shell answers every one (one line, or rows
    /// then `end`) with a known answer or `err KIND: …`, never panics,
    /// and ends cleanly.
    #[test]
    fn random_lines_are_answered_and_never_panic() {
        use keel_io::sim::{Rng, SimConfig, SimIo};
        let io: Arc<dyn keel_io::AsyncIo> = Arc::new(SimIo::new(SimConfig::seeded(5)));
        let db = Database::open_with_io("/db", Config::default(), io).expect("opens");
        let mut rng = Rng::new(0x5E11);
        let mut script = b"create r\ncreate-tree t\nput t 01 02\ninsert r 0102\n".to_vec();
        for _ in 0..3000 {
            script.extend(random_line(&mut rng));
        }
        let commands = script
            .split(|&b| b == b'\n')
            .filter(|l| {
                std::str::from_utf8(l)
                    .map_or(true, |l| !l.trim().is_empty() && !l.trim().starts_with('#'))
            })
            .count();
        let mut out = Vec::new();
        session(&db, &script[..], &mut out, false).expect("the session ends cleanly");
        let out = String::from_utf8(out).expect("answers are UTF-8");
        let mut answers = 0;
        let mut done = 0;
        for line in out.lines() {
            let word = line.split(' ').next().unwrap_or("");
            match word {
                "row" | "kv" => continue,
                "ok" | "tid" | "val" | "none" | "end" | "committed" | "aborted" => done += 1,
                "err" => assert!(
                    ["err usage: ", "err transient: ", "err corruption: "]
                        .iter()
                        .any(|k| line.starts_with(k)),
                    "{line}"
                ),
                _ => panic!("unknown answer {line:?}"),
            }
            answers += 1;
        }
        assert_eq!(answers, commands, "one answer per command");
        // The lines reach the engine: a good share of them succeed.
        assert!(done * 10 > commands, "{done} of {commands} succeeded");
        db.close().expect("closes");
    }

    /// A line longer than the limit is answered with an error and not
    /// run, whatever follows it (more lines, or the end of input without a
    /// newline); the lines around it run; comments get no answer.
    #[test]
    fn long_lines_are_refused_and_comments_skipped() {
        use keel_io::sim::{SimConfig, SimIo};
        let io: Arc<dyn keel_io::AsyncIo> = Arc::new(SimIo::new(SimConfig::seeded(6)));
        let db = Database::open_with_io("/db", Config::default(), io).expect("opens");
        let long = format!("put t 01 {}\n", "ab".repeat(100));
        let exact = format!("put t 02 {}\n", "cd".repeat(20));
        let limit = exact.len();
        let script = format!(
            "create-tree t\n# a comment\n  #another\n{long}{exact}get t 01\nget t 02\n{}",
            &long[..long.len() - 1]
        );
        let mut out = Vec::new();
        session_limited(&db, script.as_bytes(), &mut out, false, limit).expect("ends cleanly");
        let out = String::from_utf8(out).expect("UTF-8");
        let refused = format!(
            "err usage: the line is {} bytes, longer than the {limit} a line may have: not run",
            long.len()
        );
        let cut = format!(
            "err usage: the line is {} bytes, longer than the {limit} a line may have: not run",
            long.len() - 1
        );
        let want = [
            "ok".to_string(),
            refused,
            "ok".into(),
            "none".into(),
            format!("val {}", "cd".repeat(20)),
            cut,
        ];
        assert_eq!(out.lines().collect::<Vec<_>>(), want);
        db.close().expect("closes");
    }
}
