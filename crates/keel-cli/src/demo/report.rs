//! The demo's figures: space per relation, log files, and the summary table.

use std::time::Duration;

use keel::{CheckpointReport, RecoveryReport};

use super::crash::CrashRun;
use super::verify::Verdict;
use super::workload::Counts;
use crate::Failure;
use crate::space::RelSpace;

/// Everything the summary table shows.
pub struct Summary<'a> {
    pub threads: u16,
    pub counts: Counts,
    pub phase1: Duration,
    pub syncs: u64,
    pub checkpoint: &'a CheckpointReport,
    pub crash: &'a CrashRun,
    pub recovery: &'a RecoveryReport,
    pub verdict: &'a Verdict,
    pub wal_bytes: u64,
    pub wal_files: (usize, u64),
    pub storage: &'a [RelSpace],
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / f64::from(1 << 20))
}

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// Prints the summary table.
pub fn print(s: &Summary<'_>) -> Result<(), Failure> {
    let mut rows = workload_rows(s);
    rows.extend(recovery_rows(s));
    for r in s.storage {
        rows.push((r.name.clone(), storage_row(r)));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    outln!("\nSummary")?;
    outln!("  {}", "-".repeat(76))?;
    for (k, v) in rows {
        outln!("  {k:<width$}  {v}")?;
    }
    outln!("  {}", "-".repeat(76))?;
    Ok(())
}

fn workload_rows(s: &Summary<'_>) -> Vec<(String, String)> {
    let c = &s.counts;
    let child = s.crash.acked.len() as u64;
    vec![
        (
            "workload".into(),
            format!(
                "{} threads: {} commits, {} aborts",
                s.threads, c.commits, c.aborts
            ),
        ),
        (
            "commits/s".into(),
            format!(
                "{:.0} in process, {:.0} in the child until killed",
                per_sec(c.commits, s.phase1),
                per_sec(child, s.crash.ran)
            ),
        ),
        (
            "operations (in process)".into(),
            format!(
                "{} inserts, {} growing and {} shrinking updates, {} deletes, {} large values ({})",
                c.inserts,
                c.grows,
                c.shrinks,
                c.deletes,
                c.blobs,
                mib(c.blob_bytes)
            ),
        ),
        (
            "checkpoint".into(),
            format!(
                "at {} after the in-process workload, {:.1} ms: {} segments retired",
                s.checkpoint.begin,
                s.checkpoint.duration.as_secs_f64() * 1e3,
                s.checkpoint.segments_retired,
            ),
        ),
        (
            "WAL".into(),
            format!(
                "{} logged, {} segments on disk ({}); in process {} syncs ({:.1} commits per sync)",
                mib(s.wal_bytes),
                s.wal_files.0,
                mib(s.wal_files.1),
                s.syncs,
                c.commits as f64 / s.syncs.max(1) as f64
            ),
        ),
    ]
}

fn recovery_rows(s: &Summary<'_>) -> Vec<(String, String)> {
    let (r, v, crash) = (s.recovery, s.verdict, s.crash);
    let in_flight = crash.in_flight.len();
    vec![
        (
            "crash".into(),
            format!(
                "child {} killed by SIGKILL after {:.2} s: {} commits acknowledged, {} in flight \
                 (commit called, not acknowledged)",
                crash.pid,
                crash.ran.as_secs_f64(),
                crash.acked.len(),
                in_flight
            ),
        ),
        (
            "recovery".into(),
            format!(
                "{:.1} ms; rewrote {} of log and {} pages it names before trusting them; \
                 read {} records ({}) from {}; redid {} on {} pages, skipped {}; \
                 rebuilt {} torn pages from their page images; \
                 undid {} txns ({} records); {} pages checked against logged images",
                r.duration.as_secs_f64() * 1e3,
                mib(r.log_bytes_rewritten),
                r.pages_rewritten,
                r.records_scanned,
                mib(r.bytes_scanned),
                r.redo_start,
                r.records_redone,
                r.pages_redone,
                r.records_skipped,
                r.pages_from_images,
                r.txns_undone,
                r.records_undone,
                r.consistency_checks
            ),
        ),
        (
            "verification".into(),
            format!(
                "{} acknowledged commits: {} lost, {} phantom, {} corrupt; in flight: {} durable, \
                 {} not; {} tuples ({}) read back; {} index keys, {} wrong",
                s.counts.commits + crash.acked.len() as u64,
                v.lost.len(),
                v.phantom.len(),
                v.corrupt,
                v.in_flight_applied,
                in_flight - v.in_flight_applied,
                v.tuples,
                mib(v.bytes),
                v.index_keys,
                v.index_wrong
            ),
        ),
    ]
}

fn storage_row(r: &RelSpace) -> String {
    let h = &r.heap;
    let mut row = match &r.tree {
        Some(t) => format!(
            "{} pages ({} tree, {} overflow, {} free): height {}, {} keys, leaf fill {:.1}%",
            r.pages,
            r.tree_pages,
            r.overflow,
            r.free,
            t.height(),
            t.leaf_items,
            t.leaf_fill() * 100.0
        ),
        None => heap_row(r),
    };
    if r.invalid > 0 || h.corrupt_slots > 0 {
        row.push_str(&format!(
            "; INVALID pages {}, corrupt slots {}",
            r.invalid, h.corrupt_slots
        ));
    }
    row
}

/// A heap relation's row: its pages by kind and its slots.
fn heap_row(r: &RelSpace) -> String {
    let h = &r.heap;
    format!(
        "{} pages ({} heap, {} overflow, {} free): fill {:.1}%, fragmentation {:.1}%, \
         {} live tuples, {} forward pointers",
        r.pages,
        h.pages,
        r.overflow,
        r.free,
        h.fill_factor() * 100.0,
        h.fragmentation() * 100.0,
        h.live_tuples,
        h.forward_slots
    )
}
