//! `keel stats`: space per relation, the log on disk, the last checkpoint,
//! the WAL archive's progress, and the buffer pool and I/O figures of this
//! run.
//!
//! The archive's progress comes from the status file an archiver keeps in
//! the data directory (keel-archive's `status` module): its state (`ok`,
//! `broken`, `failed`, `stopped`), its policy while the archive is down,
//! the LSN archived to, the lag in bytes (from there to the end of the log
//! now, which includes log written after the archiver last wrote the file)
//! and in seconds (the age of the oldest unarchived commit when the file
//! was written), its compactor's counts (objects written, chunks they
//! replaced), and its last error and last compaction error, with any URL's
//! user, password and query cut. The store is never contacted. No file: `archive: not
//! configured`; an unreadable one is reported on that line, and the other
//! figures are still printed.
//!
//! A directory with a status file is opened with the log held from its
//! oldest segment (`Database::open` does it, `WalConfig::hold_at_open`):
//! the checkpoints of this run retire no log, since the archive may not
//! have it yet (the next archiver continues from where the archive ends
//! and needs it).
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
use keel_archive::PublishedStatus;
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
    /// The archive status file: `None` when there is none.
    archive: Option<Result<PublishedStatus, String>>,
}

pub fn run(args: StatsArgs) -> Result<(), Failure> {
    let (db, io, checkpoint) = open_existing(&args.dir)?;
    let report = collect(&db, &io, &args.dir, checkpoint);
    let report = report.map(|r| Report {
        archive: read_archive_status(&args.dir),
        ..r
    });
    let closed = close(db, &args.dir);
    let report = report?;
    closed?;
    let text = if args.json {
        format!("{}\n", to_json(&report))
    } else {
        to_text(&report)
    };
    out!("{text}")?;
    Ok(())
}

/// The archive status file of `dir`: `None` when there is none. One that
/// is not a regular file (which `keel_archive::read_status` refuses by
/// its kind, unopened) is unreadable, as is one that does not decode.
fn read_archive_status(dir: &Path) -> Option<Result<PublishedStatus, String>> {
    keel_archive::read_status(dir)
        .map_err(|e| Failure::from(e).0)
        .transpose()
}

/// Opens the database in `dir` on a backend the caller keeps (for its
/// statistics), returning the control file as it was before opening.
/// Refuses a directory without a control file: opening would create a
/// database there. (The open refuses a `LOCK` that is not a regular file,
/// naming what it is, without blocking on a FIFO.)
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
        archive: None,
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
        "tree_pages": r.tree_pages,
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
        "archive": archive_json(r),
    })
}

/// Log bytes not archived: from the archived LSN to the end of the log now
/// or when the status was written, whichever is further.
fn lag_bytes(st: &PublishedStatus, log_end: Lsn) -> u64 {
    st.durable_lsn
        .max(log_end)
        .get()
        .saturating_sub(st.archived_lsn.get())
}

/// Seconds the oldest unarchived commit had waited when the status was
/// written (0: none waiting).
fn lag_seconds(st: &PublishedStatus) -> f64 {
    st.oldest_unarchived_commit_us
        .map_or(0.0, |c| st.updated_us.saturating_sub(c) as f64 / 1e6)
}

/// Seconds since the status was written.
fn status_age(st: &PublishedStatus) -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    now.saturating_sub(st.updated_us) as f64 / 1e6
}

/// The policy as a phrase: `keep-going`, or `stall at N unarchived,
/// commits fail after T` (the file's `stall BYTES MS`).
fn policy_text(policy: &str) -> String {
    let stall = policy.strip_prefix("stall ").and_then(|rest| {
        let (bytes, ms) = rest.split_once(' ')?;
        Some((bytes.parse::<u64>().ok()?, ms.parse::<u64>().ok()?))
    });
    match stall {
        Some((bytes, ms)) => format!(
            "stall commits at {} unarchived, fail them after {:.1} s",
            mib(bytes),
            ms as f64 / 1e3
        ),
        None => policy.to_string(),
    }
}

fn archive_json(r: &Report) -> Value {
    match &r.archive {
        None => Value::Null,
        Some(Err(e)) => json!({ "error": e }),
        Some(Ok(st)) => json!({
            "state": st.state.as_str(),
            "policy": st.policy,
            "archived_lsn": st.archived_lsn.to_string(),
            "archived_lsn_bytes": st.archived_lsn.get(),
            "log_end": st.durable_lsn.max(r.wal_end).to_string(),
            "lag_bytes": lag_bytes(st, r.wal_end),
            "lag_seconds": lag_seconds(st),
            "status_age_seconds": status_age(st),
            "chunks": st.chunks,
            "retries": st.retries,
            "last_error": st.last_error.as_deref().map(keel_archive::status::redact),
            "compacted_objects": st.compacted_objects,
            "chunks_compacted": st.chunks_compacted,
            "compaction_error": st.compaction_error.as_deref().map(keel_archive::status::redact),
        }),
    }
}

/// The `archive:` lines (module essay).
fn archive_text(r: &Report) -> String {
    let st = match &r.archive {
        None => return "archive: not configured\n".into(),
        Some(Err(e)) => return format!("archive: status unreadable: {e}\n"),
        Some(Ok(st)) => st,
    };
    let mut s = format!(
        "archive: {}, policy {}\n",
        st.state.as_str(),
        policy_text(&st.policy)
    );
    let lag = lag_bytes(st, r.wal_end);
    let oldest = match st.oldest_unarchived_commit_us {
        Some(_) => format!("oldest unarchived commit {:.1} s old", lag_seconds(st)),
        None => "no unarchived commit".into(),
    };
    let _ = writeln!(
        s,
        "  archived to LSN {}, log end {}: lag {lag} bytes ({}), {oldest}",
        st.archived_lsn,
        st.durable_lsn.max(r.wal_end),
        mib(lag),
    );
    let _ = writeln!(
        s,
        "  {} chunks uploaded, {} retries; status written {:.1} s ago",
        st.chunks,
        st.retries,
        status_age(st)
    );
    let _ = writeln!(
        s,
        "  compaction: {} objects written, replacing {} chunks",
        st.compacted_objects, st.chunks_compacted
    );
    if let Some(e) = &st.last_error {
        let _ = writeln!(s, "  last error: {}", keel_archive::status::redact(e));
    }
    if let Some(e) = &st.compaction_error {
        let _ = writeln!(
            s,
            "  last compaction error: {}",
            keel_archive::status::redact(e)
        );
    }
    s
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
            "  {:<16} {} pages ({} heap, {} tree, {} overflow, {} free, {} invalid), {} live tuples, \
             fill {:.1}%, fragmentation {:.1}%",
            rel.name,
            rel.pages,
            h.pages,
            rel.tree_pages,
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
    s.push_str(&archive_text(r));
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
    // The operation column fits the longest operation name.
    let width = keel_io::OpKind::ALL
        .iter()
        .map(|k| k.name().len())
        .max()
        .unwrap_or(10);
    for op in &r.io.ops {
        let _ = writeln!(
            s,
            "  {:<width$} {:<8} {:>8} ops {:>10}  p50 {:>10}  p99 {:>10}  max {:>10}",
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
