//! `keel inspect`: decode on-disk structures with the same formatter the
//! tests' golden files use.
//!
//! `page --file` reads a page file directly and touches nothing else.
//! `page --dir` and `fsm` open the data directory as a database (which runs
//! recovery and takes a checkpoint, exactly as any open does), so what they
//! show is the page or map the engine itself would use; they close it
//! cleanly before exiting.

mod fsm;
mod page;
mod wal;

use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, Subcommand};
use keel::{Database, Lsn};

use crate::Failure;
pub(crate) use crate::{print_out, quiet_on_broken_pipe};

#[derive(Debug, Subcommand)]
pub enum Target {
    /// Print one page: header, verdict, slots, tuples. Either a page of a
    /// page file (--file), or a page of a relation in a data directory
    /// (--dir and --rel; the database is opened, which runs recovery).
    Page(PageArgs),
    /// Print a relation's free space map: one line per tracked page, then a
    /// summary (opens the database, which runs recovery).
    Fsm {
        /// Data directory.
        #[arg(long)]
        dir: PathBuf,
        /// Relation name.
        #[arg(long)]
        rel: String,
        /// Machine-readable output: one JSON object per page, then one with
        /// the summary.
        #[arg(long)]
        json: bool,
    },
    /// List the write-ahead log's records, one line each, then a summary.
    Wal {
        /// Data directory (its log is in DIR/wal).
        #[arg(long)]
        dir: PathBuf,
        /// First LSN to show, as HI/LO hex (as printed) or a byte position.
        /// By default the log is shown from where recovery would read it:
        /// the last checkpoint's redo point (or the first record of a
        /// transaction running then, if older), as the control file says.
        #[arg(long, conflicts_with = "all")]
        from: Option<Lsn>,
        /// Show every record still on disk: from the oldest segment after
        /// which the segments are contiguous to the newest.
        #[arg(long)]
        all: bool,
        /// Machine-readable output: one JSON object per record, then one
        /// with the summary.
        #[arg(long)]
        json: bool,
        /// Stop at the first invalid record instead of reporting corruption.
        #[arg(long)]
        salvage: bool,
    },
}

/// `keel inspect page`: exactly one of `--file` and `--dir` (with `--rel`).
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["file", "dir"])))]
pub struct PageArgs {
    /// File of 8 KiB pages (page N at byte N * 8192).
    #[arg(long, conflicts_with = "rel")]
    file: Option<PathBuf>,
    /// Data directory: read the page through the database's buffer pool
    /// (verified when read from disk; the checksum shown is recomputed, as
    /// it would be when the page is next written).
    #[arg(long, requires = "rel")]
    dir: Option<PathBuf>,
    /// Relation whose page to print (with --dir).
    #[arg(long, requires = "dir")]
    rel: Option<String>,
    /// Page number.
    #[arg(long)]
    page: u32,
    /// Also print a hexdump of the page.
    #[arg(long)]
    hex: bool,
    /// Machine-readable output: one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(target: Target) -> Result<(), Failure> {
    match target {
        Target::Page(args) => page::run(args),
        Target::Fsm { dir, rel, json } => fsm::run(&dir, &rel, json),
        Target::Wal {
            dir,
            from,
            all,
            json,
            salvage,
        } => {
            let start = match (from, all) {
                (Some(lsn), _) => wal::Start::At(lsn),
                (None, true) => wal::Start::Oldest,
                (None, false) => wal::Start::Checkpoint,
            };
            wal::inspect_wal(&dir, start, json, salvage)
        }
    }
}

/// Opens the database in `dir` for inspection. Refuses a directory without
/// a control file (every open writes one before it returns): opening would
/// create a database there.
fn open_database(dir: &Path) -> Result<Database, Failure> {
    crate::stats::open_existing(dir).map(|(db, _, _)| db)
}

/// Runs `f` on the database in `dir` and closes it (also when `f` fails),
/// after checking that relation `rel` exists.
fn with_relation<T>(
    dir: &Path,
    rel: &str,
    f: impl FnOnce(&Database) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let db = open_database(dir)?;
    let result = match db.relation(rel) {
        Ok(Some(_)) => f(&db),
        Ok(None) => {
            let names: Vec<String> = db.relations().into_iter().map(|r| r.name).collect();
            let known = if names.is_empty() {
                "it has no relations".to_owned()
            } else {
                format!("it has {}", names.join(", "))
            };
            Err(Failure(format!(
                "no relation {rel:?} in {} ({known})",
                dir.display()
            )))
        }
        Err(e) => Err(Failure::from(e)),
    };
    let closed = db.close();
    let value = result?;
    closed.map_err(|e| Failure(format!("closing {}: {}", dir.display(), Failure::from(e).0)))?;
    Ok(value)
}
