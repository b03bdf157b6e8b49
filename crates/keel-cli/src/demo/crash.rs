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
/// Acknowledged commits to wait for before killing, whatever the delay.
const MIN_ACKS: usize = 20;

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
}

/// The child's reports so far.
#[derive(Default)]
struct Log {
    pending: HashMap<u64, TxnRecord>,
    acked: Vec<TxnRecord>,
    ready: Option<Instant>,
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
        }
        Ok(())
    }
}

/// Starts `keel demo-child` with its stdout and stderr piped to us.
fn spawn(dir: &Path, threads: u16, seed: u64, quick: bool) -> Result<Child, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure(format!("cannot find the keel executable: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("demo-child")
        .arg("--dir")
        .arg(dir)
        .args(["--threads", &threads.to_string()])
        .args(["--seed", &seed.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if quick {
        cmd.arg("--quick");
    }
    cmd.spawn()
        .map_err(|e| Failure(format!("cannot start the demo's child process: {e}")))
}

/// Runs the child on `dir` and kills it `delay` after it is ready.
pub fn crash_child(
    dir: &Path,
    threads: u16,
    seed: u64,
    (quick, delay): (bool, Duration),
) -> Result<CrashRun, Failure> {
    let mut child = spawn(dir, threads, seed, quick)?;
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
    let bar = super::spinner();
    let followed = follow(&rx, &mut log, delay, &bar);
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
    })
}

/// Follows the child's reports until it is time to kill it.
fn follow(
    rx: &Receiver<Result<Line, String>>,
    log: &mut Log,
    delay: Duration,
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
            Some(at) if at.elapsed() >= delay && log.acked.len() >= MIN_ACKS => return Ok(()),
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
