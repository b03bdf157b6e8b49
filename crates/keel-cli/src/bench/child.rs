//! The recovery suite's crashes for the engines that run inside the bench's
//! process (Keel and SQLite): a real process is killed, and another one
//! recovers.
//!
//! `keel bench-child ROLE` (hidden) runs one side; it reports on stdout, one
//! line each, flushed:
//!
//! ```text
//! W <bytes>    *-write: the log has grown by <bytes> since a checkpoint;
//!              the process now waits to be killed (SIGKILL)
//! C <bytes>    *-recover: the first commit after opening is acknowledged;
//!              <bytes> of log were there to replay
//! ```
//!
//! One crash cycle ([`crash_cycle`]), the same for both engines:
//!
//! 1. spawn `ROLE=*-write`: open, start from an empty table and a
//!    checkpoint, commit 10,000-row transactions with automatic checkpoints
//!    off until the log has grown by the target, report `W`;
//! 2. SIGKILL it and reap it (its exit status must say SIGKILL);
//! 3. note the time, spawn `ROLE=*-recover`: open (the engine's recovery),
//!    commit one row, report `C`;
//! 4. the time from the spawn to the `C` line arriving is the figure; then
//!    the child closes cleanly and must exit with success.
//!
//! PostgreSQL's cycle has the same shape with the server in place of the
//! child ([`super::postgres`]). A child that does not report within
//! [`CHILD_LIMIT`] is killed and the cycle fails; so does one whose parent
//! disappears (its stdin ends).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use super::engine::{BATCH_ROWS, Engine, EngineKind, Recovered, payload};
use super::keel_engine::KeelEngine;
use super::sqlite::SqliteEngine;
use crate::Failure;

/// The longest a child may take to report.
const CHILD_LIMIT: Duration = Duration::from_secs(600);
/// The id of the row the recovering process commits (no loaded row has it).
const PROBE_ID: u64 = 1 << 62;

/// What a `keel bench-child` process does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Keel: write the log, report `W`, wait for the kill.
    KeelWrite,
    /// Keel: open (recover), commit a row, report `C`, close.
    KeelRecover,
    /// SQLite: write the WAL, report `W`, wait for the kill.
    SqliteWrite,
    /// SQLite: open, commit a row (recovery), report `C`, close.
    SqliteRecover,
}

impl Role {
    /// The role's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::KeelWrite => "keel-write",
            Role::KeelRecover => "keel-recover",
            Role::SqliteWrite => "sqlite-write",
            Role::SqliteRecover => "sqlite-recover",
        }
    }
}

/// Arguments of the hidden `keel bench-child`.
#[derive(Debug, clap::Args)]
pub struct ChildArgs {
    /// What to do.
    #[arg(value_enum)]
    pub role: Role,
    /// The engine's data directory (as the bench set it up).
    #[arg(long)]
    pub dir: PathBuf,
    /// The engine's cache budget, in bytes.
    #[arg(long)]
    pub cache_bytes: u64,
    /// Log to write before reporting `W` (the write roles).
    #[arg(long, default_value_t = 0)]
    pub wal_bytes: u64,
}

/// Runs `keel bench-child`.
pub fn child_main(args: ChildArgs) -> ExitCode {
    let result = match args.role {
        Role::KeelWrite => keel_write(&args),
        Role::KeelRecover => keel_recover(&args),
        Role::SqliteWrite => sqlite_write(&args),
        Role::SqliteRecover => sqlite_recover(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("keel bench-child {}: error: {msg}", args.role.name());
            ExitCode::from(1)
        }
    }
}

/// Writes one report line and flushes it.
fn say(tag: char, bytes: u64) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{tag} {bytes}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure(format!("cannot report to the bench: {e}")))
}

/// Blocks until the parent's SIGKILL; an error if the parent went away.
fn wait_for_kill() -> Result<(), Failure> {
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Err(Failure(
        "the bench went away before killing this process".into(),
    ))
}

fn keel_write(a: &ChildArgs) -> Result<(), Failure> {
    let e = KeelEngine::open(&a.dir, a.cache_bytes, true)?;
    e.reset()?;
    e.checkpoint()?;
    let db = e.db()?;
    let start = db.wal_end().0;
    let mut s = e.session()?;
    let payload = payload();
    let mut id = 0;
    while db.wal_end().0 - start < a.wal_bytes {
        s.insert_batch(id, BATCH_ROWS, &payload)?;
        id += BATCH_ROWS;
    }
    say('W', db.wal_end().0 - start)?;
    wait_for_kill()
}

fn keel_recover(a: &ChildArgs) -> Result<(), Failure> {
    let e = KeelEngine::open(&a.dir, a.cache_bytes, true)?;
    e.session()?.commit_one(PROBE_ID, &payload())?;
    let report = e.db()?.recovery_report().clone();
    say('C', report.log_end.0.saturating_sub(report.redo_start.0))?;
    if report.clean_shutdown {
        return Err(Failure(
            "keel: the database opened as cleanly shut down, not crashed".into(),
        ));
    }
    e.pause()
}

fn sqlite_wal(e: &SqliteEngine) -> PathBuf {
    let mut p = e.path().as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

fn sqlite_write(a: &ChildArgs) -> Result<(), Failure> {
    // Creates the table afresh and truncates the WAL.
    let e = SqliteEngine::open(&a.dir, a.cache_bytes)?;
    let mut s = e.session_with("PRAGMA wal_autocheckpoint=0;")?;
    let wal = sqlite_wal(&e);
    let payload = payload();
    let mut id = 0;
    loop {
        s.insert_batch(id, BATCH_ROWS, &payload)?;
        id += BATCH_ROWS;
        let len = std::fs::metadata(&wal)
            .map_err(|e| Failure(format!("sqlite: cannot stat {}: {e}", wal.display())))?
            .len();
        if len >= a.wal_bytes {
            say('W', len)?;
            return wait_for_kill();
        }
    }
}

fn sqlite_recover(a: &ChildArgs) -> Result<(), Failure> {
    let e = SqliteEngine::attach(&a.dir, a.cache_bytes);
    let wal = std::fs::metadata(sqlite_wal(&e)).map_or(0, |m| m.len());
    let mut s = e.session()?;
    s.commit_one(PROBE_ID, &payload())?;
    say('C', wal)?;
    // Closing the last connection checkpoints the WAL, after the time.
    drop(s);
    Ok(())
}

/// One crash cycle of `kind` (Keel or SQLite) on `dir`: see the module
/// essay. Returns the log replayed and the time from spawning the
/// recovering process to its first acknowledged commit.
pub fn crash_cycle(
    kind: EngineKind,
    dir: &Path,
    cache_bytes: u64,
    wal_bytes: u64,
) -> Result<Recovered, Failure> {
    let (write, recover) = match kind {
        EngineKind::Keel => (Role::KeelWrite, Role::KeelRecover),
        EngineKind::Sqlite => (Role::SqliteWrite, Role::SqliteRecover),
        other => {
            return Err(Failure(format!(
                "{}: no crash in a child process",
                other.name()
            )));
        }
    };
    let mut w = Spawned::start(write, dir, cache_bytes, wal_bytes)?;
    w.line('W')?;
    w.kill()?;
    let mut r = Spawned::start(recover, dir, cache_bytes, 0)?;
    let (at, replayed) = r.line('C')?;
    let secs = at.duration_since(r.launched).as_secs_f64();
    r.finish()?;
    Ok(Recovered {
        wal_bytes: replayed,
        secs,
    })
}

/// A running `keel bench-child`.
struct Spawned {
    role: Role,
    child: Child,
    /// Its stdout lines, each with the time it arrived.
    lines: Receiver<(Instant, String)>,
    /// Just before the spawn.
    launched: Instant,
}

impl Spawned {
    fn start(role: Role, dir: &Path, cache_bytes: u64, wal_bytes: u64) -> Result<Spawned, Failure> {
        let exe = std::env::current_exe()
            .map_err(|e| Failure(format!("cannot find the keel binary: {e}")))?;
        let mut cmd = Command::new(exe);
        cmd.arg("bench-child")
            .arg(role.name())
            .arg("--dir")
            .arg(dir)
            .arg("--cache-bytes")
            .arg(cache_bytes.to_string())
            .arg("--wal-bytes")
            .arg(wal_bytes.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let launched = Instant::now();
        let mut child = cmd.spawn().map_err(|e| {
            Failure(format!(
                "cannot start keel bench-child {}: {e}",
                role.name()
            ))
        })?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| Failure("bench-child: no stdout pipe".into()))?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Spawned {
            role,
            child,
            lines,
            launched,
        })
    }

    /// Waits for the line tagged `tag`: when it arrived and its number.
    fn line(&mut self, tag: char) -> Result<(Instant, u64), Failure> {
        let deadline = self.launched + CHILD_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, text)) => {
                    if let Some(n) = parse_report(&text, tag) {
                        return Ok((at, n));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    return Err(
                        self.failure(&format!("sent no '{tag}' line within {CHILD_LIMIT:?}"))
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.failure(&format!("ended before its '{tag}' line")));
                }
            }
        }
    }

    /// SIGKILL, reaped; the exit status must say SIGKILL.
    fn kill(mut self) -> Result<(), Failure> {
        self.child
            .kill()
            .map_err(|e| Failure(format!("cannot kill bench-child: {e}")))?;
        let status = self
            .child
            .wait()
            .map_err(|e| Failure(format!("cannot reap bench-child: {e}")))?;
        if status.signal() != Some(libc::SIGKILL) {
            return Err(self.failure(&format!("was not ended by SIGKILL ({status})")));
        }
        Ok(())
    }

    /// Waits for a successful exit.
    fn finish(mut self) -> Result<(), Failure> {
        drop(self.child.stdin.take());
        match self.child.wait() {
            Ok(s) if s.success() => Ok(()),
            _ => Err(self.failure("failed after reporting")),
        }
    }

    /// A failure naming the child, its exit status and its last error line.
    fn failure(&mut self, what: &str) -> Failure {
        let status = self
            .child
            .wait()
            .map_or_else(|e| format!("cannot reap: {e}"), |s| s.to_string());
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Failure(format!(
            "keel bench-child {} {what} ({status}) {last}",
            self.role.name()
        ))
    }
}

/// The number of a report line `<tag> <number>`.
fn parse_report(line: &str, tag: char) -> Option<u64> {
    let rest = line.strip_prefix(tag)?.strip_prefix(' ')?;
    rest.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn role_names_are_the_command_line_names() {
        for r in Role::value_variants() {
            assert_eq!(Role::from_str(r.name(), false), Ok(*r));
        }
    }

    #[test]
    fn report_lines() {
        assert_eq!(parse_report("W 1048576", 'W'), Some(1_048_576));
        assert_eq!(parse_report("C 0", 'C'), Some(0));
        assert_eq!(parse_report("C 12", 'W'), None);
        assert_eq!(parse_report("W12", 'W'), None);
        assert_eq!(parse_report("W -1", 'W'), None);
        assert_eq!(parse_report("W 1 2", 'W'), None);
    }
}
