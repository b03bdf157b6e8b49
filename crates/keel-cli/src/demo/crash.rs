//! The parent's side of the crash phase: start `keel demo-child`, follow
//! its reports, SIGKILL it after a random delay, and sort its transactions
//! into acknowledged and in flight.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::child::{Line, read_lines};
use super::workload::TxnRecord;
use crate::Failure;

/// The longest the child may take to open the database and start.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How to run and crash a child: what `keel demo-child` is told, and when
/// to kill it.
#[derive(Clone, Debug)]
pub struct ChildSpec<'a> {
    /// The data directory.
    pub dir: &'a Path,
    /// Worker threads.
    pub threads: u16,
    /// The workload's seed.
    pub seed: u64,
    /// Small values (`--quick`).
    pub quick: bool,
    /// Kill this long after the child reports it is ready.
    pub delay: Duration,
    /// Acknowledged commits to wait for before killing, whatever the delay.
    pub min_acks: usize,
    /// The I/O backend's name (`auto`, `thread-pool`, `io-uring`).
    pub backend: &'a str,
    /// The first transaction sequence number of each worker, so tags stay
    /// unique across runs on one directory.
    pub first_seq: u64,
    /// The child's automatic checkpoint interval.
    pub checkpoint_every: Duration,
    /// Show a spinner on a terminal while following the child.
    pub spinner: bool,
    /// A small engine (`--small`).
    pub small: bool,
    /// Redo consistency checking (`--consistency-check`).
    pub consistency_check: bool,
    /// Side relations and trees created and dropped under the kill
    /// (`--ddl`).
    pub ddl: bool,
}

impl<'a> ChildSpec<'a> {
    /// The demo's settings: four checkpoints' worth of interval, 20 acks.
    pub fn new(dir: &'a Path, threads: u16, seed: u64, delay: Duration) -> ChildSpec<'a> {
        ChildSpec {
            dir,
            threads,
            seed,
            quick: false,
            delay,
            min_acks: 20,
            backend: "auto",
            first_seq: 0,
            checkpoint_every: Duration::from_millis(700),
            spinner: true,
            small: false,
            consistency_check: false,
            ddl: false,
        }
    }
}

/// What the crashed child did.
#[derive(Debug, Default)]
pub struct CrashRun {
    /// Its process id.
    pub pid: u32,
    /// Transactions whose commit returned, in the order reported.
    pub acked: Vec<TxnRecord>,
    /// Transactions announced (commit called or about to be) but not
    /// acknowledged when it died: each may or may not be durable.
    pub in_flight: Vec<TxnRecord>,
    /// From its ready report to the kill.
    pub ran: Duration,
    /// The last step reported of each side relation (`--ddl`).
    pub ddl: std::collections::BTreeMap<String, super::child::DdlStep>,
    /// The last step reported of each side tree (`--ddl`).
    pub trees: std::collections::BTreeMap<String, super::child::DdlStep>,
}

/// The child's reports so far.
#[derive(Default)]
struct Log {
    pending: HashMap<u64, TxnRecord>,
    acked: Vec<TxnRecord>,
    ready: Option<Instant>,
    ddl: std::collections::BTreeMap<String, super::child::DdlStep>,
    trees: std::collections::BTreeMap<String, super::child::DdlStep>,
}

impl Log {
    fn apply(&mut self, line: Result<Line, String>) -> Result<(), Failure> {
        match line.map_err(Failure)? {
            Line::Ready => self.ready = Some(Instant::now()),
            Line::Prepared(rec) => {
                self.pending.insert(rec.tag, rec);
            }
            Line::Committed(tag) => {
                let rec = self.pending.remove(&tag).ok_or_else(|| {
                    Failure(format!(
                        "the child acknowledged txn {tag:#x} it never announced"
                    ))
                })?;
                self.acked.push(rec);
            }
            Line::Ddl(step, name) => {
                self.ddl.insert(name, step);
            }
            Line::Tree(step, name) => {
                self.trees.insert(name, step);
            }
        }
        Ok(())
    }
}

/// Starts `keel demo-child` with its stdout and stderr piped to us.
fn spawn(spec: &ChildSpec<'_>) -> Result<Child, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure(format!("cannot find the keel executable: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("demo-child")
        .arg("--dir")
        .arg(spec.dir)
        .args(["--threads", &spec.threads.to_string()])
        .args(["--seed", &spec.seed.to_string()])
        .args(["--backend", spec.backend])
        .args(["--first-seq", &spec.first_seq.to_string()])
        .args([
            "--checkpoint-ms",
            &spec.checkpoint_every.as_millis().max(1).to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if spec.quick {
        cmd.arg("--quick");
    }
    if spec.small {
        cmd.arg("--small");
    }
    if spec.consistency_check {
        cmd.arg("--consistency-check");
    }
    if spec.ddl {
        cmd.arg("--ddl");
    }
    cmd.spawn()
        .map_err(|e| Failure(format!("cannot start the demo's child process: {e}")))
}

/// Runs the child on `spec.dir` and kills it `spec.delay` after it is ready.
pub fn crash_child(spec: &ChildSpec<'_>) -> Result<CrashRun, Failure> {
    let mut child = spawn(spec)?;
    let (stdout, mut stderr) = match (child.stdout.take(), child.stderr.take()) {
        (Some(o), Some(e)) => (o, e),
        _ => return Err(Failure("the child's pipes are missing".into())),
    };
    let (tx, rx) = channel();
    let reader = std::thread::spawn(move || read_lines(stdout, tx));
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut log = Log::default();
    let bar = if spec.spinner {
        super::spinner()
    } else {
        ProgressBar::hidden()
    };
    let followed = follow(&rx, &mut log, (spec.delay, spec.min_acks), &bar);
    bar.finish_and_clear();
    let killed_at = Instant::now();
    let status = kill(&mut child);
    // The pipe still holds what the child wrote before it died.
    let drained: Result<(), Failure> = rx.iter().try_for_each(|line| log.apply(line));
    let _ = reader.join();
    let stderr = errors.join().unwrap_or_default();
    let why = |e: Failure| {
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        Failure(format!("{} {first}", e.0).trim_end().to_string())
    };
    followed.map_err(why)?;
    drained?;
    let status = status?;
    if status.signal() != Some(libc::SIGKILL) {
        return Err(why(Failure(format!(
            "the child ended with {status}, not by SIGKILL:"
        ))));
    }
    Ok(CrashRun {
        pid: child.id(),
        ran: log
            .ready
            .map_or(Duration::ZERO, |r| killed_at.saturating_duration_since(r)),
        in_flight: log.pending.into_values().collect(),
        acked: log.acked,
        ddl: log.ddl,
        trees: log.trees,
    })
}

/// Follows the child's reports until it is time to kill it.
fn follow(
    rx: &Receiver<Result<Line, String>>,
    log: &mut Log,
    (delay, min_acks): (Duration, usize),
    bar: &ProgressBar,
) -> Result<(), Failure> {
    let started = Instant::now();
    loop {
        bar.set_message(format!("child: {} commits acknowledged", log.acked.len()));
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => log.apply(line)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Failure(
                    "the demo's child process ended before it was killed:".into(),
                ));
            }
        }
        match log.ready {
            Some(at) if at.elapsed() >= delay && log.acked.len() >= min_acks => return Ok(()),
            Some(at) if at.elapsed() >= delay + START_LIMIT => {
                return Err(Failure(format!(
                    "the child acknowledged only {} commits in {:?}",
                    log.acked.len(),
                    at.elapsed()
                )));
            }
            None if started.elapsed() >= START_LIMIT => {
                return Err(Failure(
                    "the demo's child process did not start in time".into(),
                ));
            }
            _ => {}
        }
    }
}

/// SIGKILL (what `Child::kill` sends on Unix), then reap.
fn kill(child: &mut Child) -> Result<std::process::ExitStatus, Failure> {
    let _ = child.kill();
    child
        .wait()
        .map_err(|e| Failure(format!("cannot wait for the child process: {e}")))
}
