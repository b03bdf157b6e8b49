//! The crash phase. `keel demo-child` (hidden) reopens the demo's database
//! and runs the workload until it is killed, reporting on stdout, one line
//! each, flushed before going on:
//!
//! ```text
//! R                                   ready (recovery done, workers start)
//! P <tag> <effect>...                 about to call commit (in flight from now)
//! C <tag>                             commit returned: acknowledged
//! D <step> <name>                     with --ddl: a side relation's create or
//!                                     drop (step: `create`, `made` once
//!                                     the create returned, `created` once
//!                                     its rows committed, `drop`, `dropped`)
//! T <step> <name>                     with --ddl: a side tree's, the same
//!                                     steps (`created` once its keys
//!                                     committed)
//! ```
//!
//! An effect is `+rel:page.slot:tag:op:len` (a version appears) or
//! `-rel:page.slot:tag:op:len` (one disappears). The parent reads the lines
//! through a pipe, so nothing needs syncing: a line written before the kill
//! is in the pipe, and a last line cut short by the kill is ignored (its
//! `commit` was never called). The parent kills the child with SIGKILL.
//!
//! Any thread's error ends the child at once (the others stop before their
//! next transaction or DDL step, and it exits 1 naming the error): a worker
//! or DDL thread that failed, or a worker's own check of the index, must
//! fail the parent's run, never leave it verifying the rest.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use keel::{Config, Database, TupleId};

use super::workload::{
    Effect, Key, Owned, Sink, Sizes, TxnRecord, Version, Worker, decode, tag_worker,
};
use crate::Failure;

/// The child gives up on its own after this long (if its parent vanished
/// without closing the pipe).
const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// Arguments of the hidden `keel demo-child`.
#[derive(Debug, clap::Args)]
pub struct ChildArgs {
    /// The demo's data directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Worker threads (as many as the first phase had); 0: none, so no
    /// commit is made (only the DDL thread runs, with `--ddl`).
    #[arg(long)]
    pub threads: u16,
    /// The workload's seed.
    #[arg(long)]
    pub seed: u64,
    /// Small values, as `keel demo --quick`.
    #[arg(long)]
    pub quick: bool,
    /// The I/O backend: auto, thread-pool or io-uring.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Each worker's first transaction sequence number (tags stay unique
    /// across runs on one directory).
    #[arg(long, default_value_t = 0)]
    pub first_seq: u64,
    /// Automatic checkpoint interval, in milliseconds.
    #[arg(long, default_value_t = 700, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_ms: u64,
    /// A small engine ([`engine_config`]), quick to open, and smaller
    /// large values ([`Sizes::small`]).
    #[arg(long)]
    pub small: bool,
    /// Log a page image after every change, for recovery to compare
    /// (`Config::consistency_check`).
    #[arg(long)]
    pub consistency_check: bool,
    /// Also create and drop side relations (`side_<seq>`, [`SIDE_ROWS`]
    /// rows each) and side trees (`tree_<seq>`, [`SIDE_KEYS`] keys each)
    /// on a thread of their own, reporting each step.
    #[arg(long)]
    pub ddl: bool,
}

/// Rows a side relation gets in the transaction after its create.
pub const SIDE_ROWS: u32 = 5;

/// The value of row `i` of side relation `name`.
pub fn side_row(name: &str, i: u32) -> Vec<u8> {
    format!("{name} row {i}").into_bytes()
}

/// The first name of every side tree (`tree_<seq>`, hex).
pub const SIDE_TREE_PREFIX: &str = "tree_";

/// Keys a side tree gets in the transaction after its create.
pub const SIDE_KEYS: u32 = 3;

/// Key and value `i` of side tree `name`.
pub fn side_entry(name: &str, i: u32) -> (Vec<u8>, Vec<u8>) {
    (
        format!("{name} key {i}").into_bytes(),
        format!("{name} value {i}").into_bytes(),
    )
}

/// A step of a side relation's or side tree's life, as the child reports
/// it (a tree's rows are its keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DdlStep {
    /// `create_relation` is about to be called.
    Create,
    /// It returned (acknowledged); its rows are not committed yet.
    Made,
    /// Its rows committed.
    Created,
    /// `drop_relation` is about to be called.
    Drop,
    /// It returned.
    Dropped,
}

impl DdlStep {
    fn word(self) -> &'static str {
        match self {
            DdlStep::Create => "create",
            DdlStep::Made => "made",
            DdlStep::Created => "created",
            DdlStep::Drop => "drop",
            DdlStep::Dropped => "dropped",
        }
    }

    fn parse(w: &str) -> Option<DdlStep> {
        [
            DdlStep::Create,
            DdlStep::Made,
            DdlStep::Created,
            DdlStep::Drop,
            DdlStep::Dropped,
        ]
        .into_iter()
        .find(|s| s.word() == w)
    }
}

/// The DDL thread: creates a side relation, fills it, drops it; creates
/// a side tree, fills it, and drops the one before it; again, reporting
/// each step before and after. One side tree lives from one round to the
/// next, so a kill after the first round finds an acknowledged one.
fn side_relations(
    db: &Database,
    out: &Mutex<std::io::Stdout>,
    first_seq: u64,
    going: &dyn Fn() -> bool,
) -> Result<(), Failure> {
    let mut seq = first_seq;
    let mut live_tree: Option<String> = None;
    while going() {
        side_relation(db, out, &format!("side_{seq:x}"))?;
        let tree = format!("{SIDE_TREE_PREFIX}{seq:x}");
        seq += 1;
        side_tree(db, out, &tree)?;
        if let Some(old) = live_tree.replace(tree) {
            let say = |step: DdlStep| emit(out, &format!("T {} {old}", step.word()));
            say(DdlStep::Drop)?;
            db.drop_tree(&old)?;
            say(DdlStep::Dropped)?;
        }
    }
    Ok(())
}

/// Creates side relation `name`, commits its rows, and drops it.
fn side_relation(db: &Database, out: &Mutex<std::io::Stdout>, name: &str) -> Result<(), Failure> {
    let say = |step: DdlStep| emit(out, &format!("D {} {name}", step.word()));
    say(DdlStep::Create)?;
    let rel = db.create_relation(name)?;
    say(DdlStep::Made)?;
    let mut tx = db.begin()?;
    for i in 0..SIDE_ROWS {
        tx.insert(rel, &side_row(name, i))?;
    }
    tx.commit()?;
    say(DdlStep::Created)?;
    say(DdlStep::Drop)?;
    db.drop_relation(name)?;
    say(DdlStep::Dropped)
}

/// Creates side tree `name` and commits its keys.
fn side_tree(db: &Database, out: &Mutex<std::io::Stdout>, name: &str) -> Result<(), Failure> {
    let say = |step: DdlStep| emit(out, &format!("T {} {name}", step.word()));
    say(DdlStep::Create)?;
    let tree = db.create_tree(name)?;
    say(DdlStep::Made)?;
    let mut tx = db.begin()?;
    for i in 0..SIDE_KEYS {
        let (key, value) = side_entry(name, i);
        tx.put(tree, &key, &value)?;
    }
    tx.commit()?;
    say(DdlStep::Created)
}

/// Entry point of `keel demo-child`.
pub fn main(args: ChildArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("keel: error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Checkpoints often, so the kill lands after a fuzzy checkpoint taken
/// while transactions were running.
fn child_config(args: &ChildArgs) -> Result<Config, Failure> {
    let backend = args
        .backend
        .parse()
        .map_err(|e| Failure(format!("--backend: {e}")))?;
    Ok(Config {
        checkpoint_wal_bytes: 16 << 20,
        checkpoint_interval: Some(Duration::from_millis(args.checkpoint_ms)),
        consistency_check: args.consistency_check,
        ..engine_config(backend, args.small)
    })
}

/// The engine's settings for a backend; `small` shrinks the buffer pool,
/// the log buffer and the segments (4 MiB), so short runs open and close
/// quickly. Whoever opens a directory after the child uses the same.
pub fn engine_config(backend: keel_io::Backend, small: bool) -> Config {
    let mut config = Config {
        io: keel_io::IoConfig {
            backend,
            ..keel_io::IoConfig::default()
        },
        ..Config::default()
    };
    if small {
        config.buffer.pool_bytes = 16 << 20;
        config.wal.segment_size_bytes = 4 << 20;
        config.wal.buffer_capacity_bytes = 8 << 20;
    }
    config
}

fn run(args: &ChildArgs) -> Result<(), Failure> {
    let db = Database::open(&args.dir, child_config(args)?)?;
    let rels = super::relation_ids(&db)?;
    let owned = owned_by_worker(&db, rels, args.threads)?;
    let out = Mutex::new(std::io::stdout());
    emit(&out, "R")?;
    let sizes = if args.small {
        Sizes::small()
    } else {
        Sizes::new(args.quick)
    };
    let deadline = Instant::now() + CHILD_LIMIT;
    let failed = AtomicBool::new(false);
    let going = || Instant::now() < deadline && !failed.load(Ordering::Relaxed);
    let (db, out, going, failed) = (&db, &out, &going, &failed);
    std::thread::scope(|s| {
        let side = args.ddl.then(|| {
            s.spawn(move || guarded(failed, || side_relations(db, out, args.first_seq, going)))
        });
        let handles: Vec<_> = owned
            .into_iter()
            .enumerate()
            .map(|(w, owned)| {
                s.spawn(move || {
                    guarded(failed, || {
                        let mut worker =
                            Worker::new(db, rels, (2, w as u16), args.seed, sizes, owned)
                                .starting_at(args.first_seq);
                        let mut sink = PipeSink { out };
                        while going() {
                            worker.run_txn(&mut sink)?;
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        let mut first = Ok(());
        for h in handles.into_iter().chain(side) {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(Failure("a demo thread panicked".into())));
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
}

/// Runs one thread's `body`; its error or panic sets `failed`, which
/// stops every other thread.
fn guarded(failed: &AtomicBool, body: impl FnOnce() -> Result<(), Failure>) -> Result<(), Failure> {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
        .unwrap_or_else(|_| Err(Failure("a demo thread panicked".into())));
    if r.is_err() {
        failed.store(true, Ordering::Relaxed);
    }
    r
}

/// The tuples found at start, split among the workers that own them
/// (none without workers).
fn owned_by_worker(
    db: &Database,
    rels: super::workload::Rels,
    threads: u16,
) -> Result<Vec<Owned>, Failure> {
    if threads == 0 {
        return Ok(Vec::new());
    }
    let mut owned: Vec<Owned> = (0..threads).map(|_| [Vec::new(), Vec::new()]).collect();
    let tx = db.begin()?;
    for (r, rel) in rels.heap.iter().enumerate() {
        for row in tx.scan(*rel)? {
            let (tid, bytes) = row?;
            let v = decode(&bytes).map_err(|e| Failure(format!("tuple {tid}: {e}")))?;
            let w = usize::from(tag_worker(v.tag) % threads);
            owned[w][r].push((tid, v));
        }
    }
    Ok(owned)
}

fn emit(out: &Mutex<std::io::Stdout>, line: &str) -> Result<(), Failure> {
    let mut out = out
        .lock()
        .map_err(|_| Failure("stdout lock poisoned".into()))?;
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure(format!("cannot report to the parent: {e}")))
}

struct PipeSink<'a> {
    out: &'a Mutex<std::io::Stdout>,
}

impl Sink for PipeSink<'_> {
    fn announce(&mut self, rec: &TxnRecord) -> Result<(), Failure> {
        emit(self.out, &encode_prepared(rec))
    }

    fn acknowledge(&mut self, rec: TxnRecord) -> Result<(), Failure> {
        emit(self.out, &format!("C {:x}", rec.tag))
    }
}

/// A line from the child.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// `R`
    Ready,
    /// `P …`
    Prepared(TxnRecord),
    /// `C tag`
    Committed(u64),
    /// `D step name`
    Ddl(DdlStep, String),
    /// `T step name`
    Tree(DdlStep, String),
}

fn encode_prepared(rec: &TxnRecord) -> String {
    let mut line = format!("P {:x}", rec.tag);
    for e in &rec.effects {
        let (sign, (rel, tid), v) = match e {
            Effect::Add(k, v) => ('+', k, v),
            Effect::Remove(k, v) => ('-', k, v),
        };
        line.push_str(&format!(
            " {sign}{rel}:{tid}:{:x}:{}:{}",
            v.tag, v.op, v.len
        ));
    }
    line
}

fn parse_effect(s: &str) -> Option<Effect> {
    let (add, rest) = match s.as_bytes().first()? {
        b'+' => (true, &s[1..]),
        b'-' => (false, &s[1..]),
        _ => return None,
    };
    let mut f = rest.split(':');
    let rel: u8 = f.next()?.parse().ok()?;
    let tid: TupleId = f.next()?.parse().ok()?;
    let v = Version {
        tag: u64::from_str_radix(f.next()?, 16).ok()?,
        op: f.next()?.parse().ok()?,
        len: f.next()?.parse().ok()?,
    };
    let key: Key = (rel, tid);
    Some(if add {
        Effect::Add(key, v)
    } else {
        Effect::Remove(key, v)
    })
}

/// Parses one complete line.
pub fn parse_line(line: &str) -> Option<Line> {
    let mut words = line.split_ascii_whitespace();
    match words.next()? {
        "R" => Some(Line::Ready),
        "C" => Some(Line::Committed(
            u64::from_str_radix(words.next()?, 16).ok()?,
        )),
        "D" => {
            let step = DdlStep::parse(words.next()?)?;
            Some(Line::Ddl(step, words.next()?.to_string()))
        }
        "T" => {
            let step = DdlStep::parse(words.next()?)?;
            Some(Line::Tree(step, words.next()?.to_string()))
        }
        "P" => {
            let tag = u64::from_str_radix(words.next()?, 16).ok()?;
            let effects = words.map(parse_effect).collect::<Option<Vec<_>>>()?;
            Some(Line::Prepared(TxnRecord { tag, effects }))
        }
        _ => None,
    }
}

/// Reads the child's stdout until it closes, sending each complete line;
/// a last line without its newline was cut by the kill and is dropped.
pub fn read_lines(stdout: impl Read, tx: Sender<Result<Line, String>>) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) if buf.last() != Some(&b'\n') => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned();
        let parsed =
            parse_line(&text).ok_or_else(|| format!("unreadable line from the child: {text:.120}"));
        if tx.send(parsed).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel::{PageId, SlotId};

    #[test]
    fn prepared_lines_round_trip() {
        let tid = TupleId::new(PageId(12), SlotId(3));
        let v = Version {
            tag: 0x0200_0300_0000_0007,
            op: 2,
            len: 345,
        };
        let rec = TxnRecord {
            tag: v.tag,
            effects: vec![Effect::Remove((1, tid), v), Effect::Add((0, tid), v)],
        };
        assert_eq!(
            parse_line(&encode_prepared(&rec)),
            Some(Line::Prepared(rec))
        );
        assert_eq!(parse_line("C ff"), Some(Line::Committed(255)));
        assert_eq!(parse_line("R"), Some(Line::Ready));
        assert_eq!(
            parse_line("D dropped side_1f"),
            Some(Line::Ddl(DdlStep::Dropped, "side_1f".into()))
        );
        assert_eq!(
            parse_line("D made side_2"),
            Some(Line::Ddl(DdlStep::Made, "side_2".into()))
        );
        assert_eq!(
            parse_line("T drop tree_3"),
            Some(Line::Tree(DdlStep::Drop, "tree_3".into()))
        );
        assert_eq!(parse_line("D vanish side_1f"), None);
        assert_eq!(parse_line("T vanish tree_1f"), None);
        assert_eq!(parse_line("P 1 *0:1.2:3:4:5"), None);
        assert_eq!(parse_line("X"), None);
    }
}
