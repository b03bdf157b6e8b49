//! `keel checkpoint`: opens the database (which runs recovery), takes a
//! checkpoint, prints what it did, and closes the database cleanly.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use keel::Config;
use keel::datadir::RecoveryInitSync;

use crate::Failure;
use crate::stats::{close, open_existing_with};

/// `keel checkpoint` arguments.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Data directory (must exist; opening runs recovery).
    #[arg(long)]
    dir: PathBuf,
    /// How an unclean directory is made durable before recovery
    /// (`Config::recovery_init_sync`).
    #[arg(long, value_enum, default_value_t = SyncArg::Fsync)]
    recovery_init_sync: SyncArg,
}

/// `--recovery-init-sync` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SyncArg {
    /// Open and fsync every file, then every directory.
    Fsync,
    /// syncfs(2) on the data directory's file system (Linux).
    Syncfs,
}

pub fn run(args: CheckpointArgs) -> Result<(), Failure> {
    let config = Config {
        recovery_init_sync: match args.recovery_init_sync {
            SyncArg::Fsync => RecoveryInitSync::Fsync,
            SyncArg::Syncfs => RecoveryInitSync::SyncFs,
        },
        ..Config::default()
    };
    let (db, _io, _control) = open_existing_with(&args.dir, config)?;
    let rec = db.recovery_report().clone();
    if let Some(s) = &rec.data_dir_sync {
        outln!(
            "data directory sync (unclean shutdown): {:?}, {} files, {} directories, {:.1} ms",
            s.method,
            s.files,
            s.dirs,
            s.duration.as_secs_f64() * 1e3
        )?;
    }
    let report = db.checkpoint();
    let closed = close(db, &args.dir);
    let c = report?;
    closed?;
    outln!(
        "recovery: {} records scanned, {} redone, {} transactions undone, {:.1} ms",
        rec.records_scanned,
        rec.records_redone,
        rec.txns_undone,
        rec.duration.as_secs_f64() * 1e3
    )?;
    outln!(
        "checkpoint: begin {}, end {}, {} dirty pages, {} active transactions, \
         {} segments retired, {} FSM files written, {:.1} ms",
        c.begin,
        c.end,
        c.dirty_pages,
        c.active_txns,
        c.segments_retired,
        c.fsm_files_written,
        c.duration.as_secs_f64() * 1e3
    )?;
    Ok(())
}
