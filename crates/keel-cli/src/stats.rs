//! `keel stats`: space per relation, the log on disk, the last checkpoint,
//! and the buffer pool and I/O figures of this run.
//!
//! The last checkpoint is read from the control file before the database is
//! opened: it is the one the previous user of the directory left. Opening
//! (recovery) and reading every page through the buffer pool is the work
//! the buffer and I/O figures describe; the database is closed cleanly
//! (which takes a checkpoint) before exiting.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use keel::buffer::BufferStats;
use keel::recovery::Control;
use keel::recovery::control::read_control;
use keel::{Config, Database, Lsn, RecoveryReport};
use keel_io::{AsyncIo, IoStats};
use serde_json::{Value, json};

use crate::Failure;
use crate::space::{self, RelSpace};

/// `keel stats` arguments.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Data directory (must exist; opening runs recovery).
    #[arg(long)]
    dir: PathBuf,
    /// Machine-readable output: one JSON object.
    #[arg(long)]
    json: bool,
}

/// An open database, its I/O backend, and the control file as it was
/// before opening.
pub type Opened = (Database, Arc<dyn AsyncIo>, Option<Control>);

/// Everything `keel stats` reports.
struct Report {
    dir: PathBuf,
    relations: Vec<RelSpace>,
    wal_end: Lsn,
    wal_segments: usize,
    wal_bytes: u64,
    checkpoint: Option<Control>,
    recovery: RecoveryReport,
    buffer: BufferStats,
    io: IoStats,
}

pub fn run(args: StatsArgs) -> Result<(), Failure> {
    let (db, io, checkpoint) = open_existing(&args.dir)?;
    let report = collect(&db, &io, &args.dir, checkpoint);
    let closed = close(db, &args.dir);
    let report = report?;
    closed?;
    let text = if args.json {
        format!("{}\n", to_json(&report))
    } else {
        to_text(&report)
    };
    print!("{text}");
    Ok(())
}

/// Opens the database in `dir` on a backend the caller keeps (for its
/// statistics), returning the control file as it was before opening.
/// Refuses a directory without a control file: opening would create a
/// database there.
pub fn open_existing(dir: &Path) -> Result<Opened, Failure> {
    open_existing_with(dir, Config::default())
}

/// [`open_existing`] with `config` (its I/O backend still from the
/// environment).
pub fn open_existing_with(dir: &Path, config: Config) -> Result<Opened, Failure> {
    if !keel::datadir::layout::control_path(dir).is_file() {
        return Err(Failure(format!(
            "{} is not a Keel data directory (it has no control file)",
            dir.display()
        )));
    }
    let config = Config {
        io: keel_io::IoConfig::from_env()?,
        ..config
    };
    let io = keel_io::open_backend(&config.io)?;
    let control = read_control(&io, dir).map_err(|e| {
        Failure(format!(
            "reading the control file of {}: {}",
            dir.display(),
            Failure::from(e).0
        ))
    })?;
    let db = Database::open_with_io(dir, config, io.clone())
        .map_err(|e| Failure(format!("opening {}: {}", dir.display(), Failure::from(e).0)))?;
    Ok((db, io, control))
}

/// Closes the database, naming the directory on failure.
pub fn close(db: Database, dir: &Path) -> Result<(), Failure> {
    db.close()
        .map_err(|e| Failure(format!("closing {}: {}", dir.display(), Failure::from(e).0)))
}

fn collect(
    db: &Database,
    io: &Arc<dyn AsyncIo>,
    dir: &Path,
    checkpoint: Option<Control>,
) -> Result<Report, Failure> {
    let (wal_segments, wal_bytes) = space::wal_files(dir);
    Ok(Report {
        dir: dir.to_path_buf(),
        relations: space::relations(db)?,
        wal_end: db.wal_end(),
        wal_segments,
        wal_bytes,
        checkpoint,
        recovery: db.recovery_report().clone(),
        buffer: db.buffer_stats(),
        io: io.stats(),
    })
}

fn rel_json(r: &RelSpace) -> Value {
    let h = &r.heap;
    let tree = r.tree.as_ref().map(|t| {
        json!({
            "height": t.height(),
            "pages_per_level": t.pages_per_level,
            "leaf_items": t.leaf_items,
            "leaf_fill": t.leaf_fill(),
            "incomplete_splits": t.incomplete_splits,
            "problems": t.problems.len(),
        })
    });
    json!({
        "tree": tree,
        "name": r.name,
        "pages": r.pages,
        "heap_pages": h.pages,
        "overflow_pages": r.overflow,
        "free_pages": r.free,
        "invalid_pages": r.invalid,
        "live_tuples": h.live_tuples,
        "tuple_bytes": h.tuple_bytes,
        "free_bytes": h.free_bytes,
        "fragmented_bytes": h.fragmented_bytes,
        "dead_slots": h.dead_slots,
        "forward_slots": h.forward_slots,
        "fill_factor": h.fill_factor(),
        "fragmentation": h.fragmentation(),
    })
}

fn to_json(r: &Report) -> Value {
    let checkpoint = r.checkpoint.as_ref().map(|c| {
        json!({
            "redo_start": c.redo_start.to_string(),
            "end": c.checkpoint_end.to_string(),
            "clean_shutdown": c.clean,
        })
    });
    let rec = &r.recovery;
    let b = &r.buffer;
    json!({
        "dir": r.dir.display().to_string(),
        "relations": r.relations.iter().map(rel_json).collect::<Vec<_>>(),
        "wal": {
            "end": r.wal_end.to_string(),
            "end_bytes": r.wal_end.get(),
            "segments": r.wal_segments,
            "bytes": r.wal_bytes,
        },
        "last_checkpoint": checkpoint,
        "recovery": {
            "clean_shutdown": rec.clean_shutdown,
            "redo_start": rec.redo_start.to_string(),
            "log_end": rec.log_end.to_string(),
            "records_scanned": rec.records_scanned,
            "records_redone": rec.records_redone,
            "consistency_checks": rec.consistency_checks,
            "txns_undone": rec.txns_undone,
            "duration_ms": rec.duration.as_secs_f64() * 1e3,
        },
        "buffer": {
            "frames": b.frames, "hits": b.hits, "misses": b.misses,
            "reads": b.reads, "writes": b.writes, "evictions": b.evictions,
            "syncs": b.syncs,
        },
        "io": io_json(&r.io),
    })
}

fn io_json(io: &IoStats) -> Value {
    let ops: Vec<Value> = io
        .ops
        .iter()
        .map(|s| {
            json!({
                "op": s.op.to_string(), "class": s.class.to_string(),
                "count": s.count, "bytes": s.bytes, "errors": s.errors,
                "latency_ns_p50": s.latency_ns_p50, "latency_ns_p99": s.latency_ns_p99,
                "latency_ns_p999": s.latency_ns_p999, "latency_ns_max": s.latency_ns_max,
            })
        })
        .collect();
    json!({ "backend": io.backend, "ops": ops })
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / f64::from(1 << 20))
}

fn us(ns: u64) -> String {
    format!("{:.1} us", ns as f64 / 1e3)
}

fn to_text(r: &Report) -> String {
    let mut s = format!("database {}\n", r.dir.display());
    s.push_str("relations:\n");
    if r.relations.is_empty() {
        s.push_str("  (none)\n");
    }
    for rel in &r.relations {
        let h = &rel.heap;
        let _ = writeln!(
            s,
            "  {:<16} {} pages ({} heap, {} overflow, {} free, {} invalid), {} live tuples, \
             fill {:.1}%, fragmentation {:.1}%",
            rel.name,
            rel.pages,
            h.pages,
            rel.overflow,
            rel.free,
            rel.invalid,
            h.live_tuples,
            h.fill_factor() * 100.0,
            h.fragmentation() * 100.0
        );
        if let Some(t) = &rel.tree {
            let _ = writeln!(
                s,
                "  {:<16} tree: height {}, pages per level {:?} (leaves first), {} items, \
                 leaf fill {:.1}%, {} problems (see keel check)",
                "",
                t.height(),
                t.pages_per_level,
                t.leaf_items,
                t.leaf_fill() * 100.0,
                t.problems.len()
            );
        }
    }
    let _ = writeln!(
        s,
        "wal: end {}, {} segments, {} on disk",
        r.wal_end,
        r.wal_segments,
        mib(r.wal_bytes)
    );
    match &r.checkpoint {
        Some(c) => {
            let _ = writeln!(
                s,
                "last checkpoint (before this run): redo start {}, end {}, clean shutdown {}",
                c.redo_start,
                c.checkpoint_end,
                if c.clean { "yes" } else { "no" }
            );
        }
        None => s.push_str("last checkpoint (before this run): none\n"),
    }
    s.push_str(&activity_text(r));
    s
}

/// Recovery, buffer pool and I/O figures of this run.
fn activity_text(r: &Report) -> String {
    let rec = &r.recovery;
    let b = &r.buffer;
    let mut s = format!(
        "recovery at open: {} records scanned, {} redone, {} transactions undone, {:.1} ms\n",
        rec.records_scanned,
        rec.records_redone,
        rec.txns_undone,
        rec.duration.as_secs_f64() * 1e3
    );
    let _ = writeln!(
        s,
        "buffer pool (this run): {} frames, {} hits, {} misses, {} reads, {} writes, {} evictions",
        b.frames, b.hits, b.misses, b.reads, b.writes, b.evictions
    );
    let _ = writeln!(s, "i/o (this run, {} backend):", r.io.backend);
    for op in &r.io.ops {
        let _ = writeln!(
            s,
            "  {:<10} {:<8} {:>8} ops {:>10}  p50 {:>10}  p99 {:>10}  max {:>10}",
            op.op.to_string(),
            op.class.to_string(),
            op.count,
            mib(op.bytes),
            us(op.latency_ns_p50),
            us(op.latency_ns_p99),
            us(op.latency_ns_max)
        );
    }
    s
}
