//! `keel checkpoint`: opens the database (which runs recovery), takes a
//! checkpoint, prints what it did, and closes the database cleanly.

use std::path::PathBuf;

use clap::Args;

use crate::Failure;
use crate::stats::{close, open_existing};

/// `keel checkpoint` arguments.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Data directory (must exist; opening runs recovery).
    #[arg(long)]
    dir: PathBuf,
}

pub fn run(args: CheckpointArgs) -> Result<(), Failure> {
    let (db, _io, _control) = open_existing(&args.dir)?;
    let rec = db.recovery_report().clone();
    let report = db.checkpoint();
    let closed = close(db, &args.dir);
    let c = report?;
    closed?;
    println!(
        "recovery: {} records scanned, {} redone, {} transactions undone, {:.1} ms",
        rec.records_scanned,
        rec.records_redone,
        rec.txns_undone,
        rec.duration.as_secs_f64() * 1e3
    );
    println!(
        "checkpoint: begin {}, end {}, {} dirty pages, {} active transactions, \
         {} segments retired, {} FSM files written, {:.1} ms",
        c.begin,
        c.end,
        c.dirty_pages,
        c.active_txns,
        c.segments_retired,
        c.fsm_files_written,
        c.duration.as_secs_f64() * 1e3
    );
    Ok(())
}
