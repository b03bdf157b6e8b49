//! The `keel` tool: runs, inspects, benchmarks and crash-tests Keel.
//!
//! Conventions (as in `sqlite3`, `pg_waldump`, `pg_amcheck`): `--help` on every
//! command; exit code 0 on success, 1 when the command ran and found a failure
//! (corruption, a lost commit), 2 on bad usage (clap's own exit code); errors
//! go to stderr as one line, `keel: error: …`.

/// `print!` for the tool's output: a reader that stopped listening
/// (`| head`, `| true`) ends the output quietly; any other failure to write
/// (a full disk) is a [`Failure`]. Evaluates to `Result<(), Failure>`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::print_out(&format!($($arg)*))
    };
}

/// `println!` as [`out!`] is `print!`.
macro_rules! outln {
    () => {
        $crate::print_out("\n")
    };
    ($($arg:tt)*) => {
        $crate::print_out(&format!("{}\n", format_args!($($arg)*)))
    };
}

mod archive;
mod archive_policy;
mod bench;
mod check;
mod checkpoint;
mod crashtest;
mod demo;
mod docs;
mod inspect;
mod shell;
mod space;
mod standby;
mod stats;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keel: a crash-safe page, log and transaction layer for building databases.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Keel end to end on a fresh data directory: a concurrent workload,
    /// a checkpoint, a child process killed with SIGKILL, recovery, and a
    /// check that every acknowledged commit survived and nothing else.
    Demo(demo::DemoArgs),
    /// The demo's crashing child process (internal).
    #[command(hide = true)]
    DemoChild(demo::ChildArgs),
    /// Decode and print on-disk structures.
    #[command(subcommand)]
    Inspect(inspect::Target),
    /// Measure Keel against SQLite, PostgreSQL and the disk's own ceiling.
    Bench(bench::BenchArgs),
    /// The recovery bench's crashing and recovering processes (internal).
    #[command(hide = true)]
    BenchChild(bench::ChildArgs),
    /// Crash a child process with SIGKILL over and over on one data
    /// directory, recover each time, and check that no acknowledged commit
    /// was lost and no other change appeared.
    Crashtest(crashtest::CrashtestArgs),
    /// Verify a closed database on disk: every page's checksum and
    /// structure, the catalog, the free space maps, and every WAL record
    /// from the last checkpoint.
    Check(check::CheckArgs),
    /// A line protocol on stdin/stdout: create, begin, begin read, insert,
    /// get, update, delete, scan, create-tree, drop-tree, put, del, range,
    /// commit, abort, checkpoint, quit (one answer per line).
    #[command(after_help = shell::PROTOCOL)]
    Shell(shell::ShellArgs),
    /// Relations (pages, tuples, fill factor, fragmentation), the log, the
    /// last checkpoint, buffer pool and I/O figures.
    Stats(stats::StatsArgs),
    /// Open (recover), take a checkpoint, print it, and close.
    Checkpoint(checkpoint::CheckpointArgs),
    /// Take an online base backup into a WAL archive (credentials from the
    /// environment or --credentials-file, never arguments).
    Backup(archive::BackupArgs),
    /// Restore a backup and the archive's log into a new data directory, to
    /// the archive's end or to --time (RFC 3339 or Unix seconds), --lsn or
    /// --txn; a point before the end starts a new timeline.
    Restore(archive::RestoreArgs),
    /// Follow a WAL archive as a warm standby: lay down the newest backup
    /// in a new directory, then apply new log every --poll (redo only).
    Standby(standby::StandbyArgs),
    /// Make a standby the primary: final catch-up, a new timeline, the old
    /// primary's archiver fenced, open transactions undone.
    Promote(standby::PromoteArgs),
    /// The WAL archive in object storage: list its timelines and backups,
    /// verify it.
    #[command(subcommand)]
    Archive(archive::ArchiveCommand),
    /// Print the format diagrams generated from the code (docs/wal-records.md,
    /// docs/headers.md).
    Docs(docs::DocsArgs),
}

/// A failure the tool reports with exit code 1.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        let mut msg = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        Failure(msg)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => return demo::run(args),
        Command::DemoChild(args) => return demo::child_main(args),
        Command::Inspect(target) => inspect::run(target),
        Command::Bench(args) => bench::run(args),
        Command::BenchChild(args) => return bench::child_main(args),
        Command::Shell(args) => shell::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Checkpoint(args) => checkpoint::run(args),
        Command::Crashtest(args) => return crashtest::run(args),
        Command::Check(args) => return check::run(args),
        Command::Docs(args) => docs::run(args),
        Command::Archive(cmd) => archive::run(cmd),
        Command::Backup(args) => archive::backup(args),
        Command::Restore(args) => archive::restore(args),
        Command::Standby(args) => standby::standby(args),
        Command::Promote(args) => standby::promote(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("keel: error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Ends the tool as the argument parser ends it on a bad flag of
/// subcommand `sub` (its message format with that subcommand's usage,
/// exit code 2), for flags that parse each alone but do not fit together.
/// Called before anything is opened or created.
pub(crate) fn exit_usage(sub: &str, msg: &str) -> ! {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    cli.build();
    let kind = clap::error::ErrorKind::ArgumentConflict;
    match cli.find_subcommand_mut(sub) {
        Some(cmd) => cmd.error(kind, msg).exit(),
        None => cli.error(kind, msg).exit(),
    }
}

/// Writes `text` to stdout; a reader that stopped listening (`| head`) is
/// not a failure.
pub(crate) fn print_out(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) => quiet_on_broken_pipe(e),
    }
}

/// A closed pipe on stdout is the reader's choice, not a failure; any other
/// error writing it is.
pub(crate) fn quiet_on_broken_pipe(e: std::io::Error) -> Result<(), Failure> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(Failure(format!("writing to stdout: {e}")))
    }
}

/// Refuses `path` unless it is a regular file or a symbolic link to one
/// (what the engine counts as a file when it lists a directory): opening a
/// FIFO blocks until a writer comes, and a directory or a device holds no
/// pages. Looks without opening; the error names the path and what it is
/// ([`keel::datadir::non_regular_kind`]).
pub(crate) fn require_regular_file(path: &std::path::Path) -> Result<(), Failure> {
    let shown = path.display();
    match keel::datadir::non_regular_kind(path) {
        Ok(None) => Ok(()),
        Ok(Some(what)) => Err(Failure(format!(
            "{shown} is {what}, not a regular file: not opened"
        ))),
        Err(e) => Err(Failure(format!("cannot read {shown}: {e}"))),
    }
}
