//! `keel inspect wal`: one line (or JSON object) per log record, then a
//! summary by record type.
//!
//! After a crash the log may end in a torn tail (the last batch, never
//! acknowledged), which is cut off and reported in the summary. After a
//! clean stop (the control file's clean flag) the log's end is known: it
//! ends with the checkpoint the control file names, every byte of it
//! durable before the flag was set. A log that ends before that
//! checkpoint's end record, or in a torn tail, then lost durable bytes:
//! an error naming the segment file (exit 1), as opening the database
//! refuses it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use keel::Lsn;
use keel::datadir::layout::wal_dir;
use keel::recovery::control::{Control, read_control};
use keel::wal::payload::Payload;
use keel::wal::segment::{SegmentDir, segment_file_name};
use keel::wal::{LogRecord, RecoveryMode, TailCut, WalReader};
use serde_json::json;

use super::quiet_on_broken_pipe;
use crate::Failure;

/// Records and bytes of one record type.
#[derive(Default)]
struct TypeTotals {
    records: u64,
    bytes: u64,
}

/// Where `keel inspect wal` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Where recovery would read from (the control file's scan start), or
    /// the oldest contiguous segment when there is no control file.
    Checkpoint,
    /// The oldest segment after which the segments are contiguous.
    Oldest,
    /// This LSN.
    At(Lsn),
}

/// The first segment of the last gap-free run of `present` (ascending):
/// segments below a gap are not part of the log that continues to its end.
fn contiguous_from(present: &[u64]) -> Option<u64> {
    let mut first = *present.last()?;
    for &n in present.iter().rev().skip(1) {
        if n + 1 != first {
            break;
        }
        first = n;
    }
    Some(first)
}

/// Decides where to start, and says on stderr what is skipped.
fn start_lsn(
    io: &std::sync::Arc<dyn keel_io::AsyncIo>,
    dir: &Path,
    start: Start,
) -> Result<Lsn, Failure> {
    let wal = wal_dir(dir);
    let present = SegmentDir::existing(io.clone(), &wal)?.list()?;
    if let Start::At(lsn) = start {
        return on_disk(io, &wal, &present, lsn);
    }
    let Some(oldest) = contiguous_from(&present) else {
        return Ok(Lsn::ZERO);
    };
    let (lsn, why) = match start {
        Start::At(lsn) => return Ok(lsn), // checked above
        Start::Checkpoint => match read_control(io, dir)? {
            Some(c) => (
                c.scan_start(),
                "where recovery reads from: the last checkpoint's redo point, or the first \
                 record of a transaction running then",
            ),
            None => (Lsn::ZERO, "no control file: the oldest contiguous segment"),
        },
        Start::Oldest => (Lsn::ZERO, "the oldest contiguous segment"),
    };
    let below: Vec<u64> = present.iter().copied().filter(|&n| n < oldest).collect();
    if !below.is_empty() {
        let names: Vec<String> = below.iter().map(|&n| segment_file_name(n)).collect();
        eprintln!(
            "note: skipped {} segment file(s) below a gap in the log (not part of it): {}",
            below.len(),
            names.join(", ")
        );
    }
    if lsn == Lsn::ZERO {
        eprintln!(
            "note: starting at segment {} ({why})",
            segment_file_name(oldest)
        );
        return first_lsn(io, &wal, oldest);
    }
    eprintln!("note: starting at {lsn} ({why}); --all shows every record on disk");
    Ok(lsn)
}

/// `lsn` when a segment file on disk holds it; otherwise an error naming
/// the segments there and the LSNs they hold (a position no segment holds
/// would be reported as the end of the log).
fn on_disk(
    io: &std::sync::Arc<dyn keel_io::AsyncIo>,
    wal: &Path,
    present: &[u64],
    lsn: Lsn,
) -> Result<Lsn, Failure> {
    let shown = wal.display();
    let (Some(&first), Some(&last)) = (present.first(), present.last()) else {
        return Err(Failure(format!(
            "--from {lsn}: {shown} holds no segment file"
        )));
    };
    let sdir = SegmentDir::existing(io.clone(), wal)?;
    let Some(size) = sdir
        .newest_header(present)
        .map(|h| u64::from(h.segment_size))
    else {
        return Err(Failure(format!(
            "--from {lsn}: no segment file in {shown} has a valid header"
        )));
    };
    let segment = lsn.0 / size;
    if present.contains(&segment) {
        return Ok(lsn);
    }
    let (from, to) = (Lsn(first * size), Lsn((last + 1).saturating_mul(size)));
    let gaps = if last - first + 1 == present.len() as u64 {
        String::new()
    } else {
        " with gaps".to_owned()
    };
    Err(Failure(format!(
        "--from {lsn}: no segment file on disk holds it ({} is not in {shown}); the segments \
         there are {}..{}{gaps}, holding LSNs {from} to {to}",
        segment_file_name(segment),
        segment_file_name(first),
        segment_file_name(last),
    )))
}

/// The first record position of segment `n` of the log in `wal`.
fn first_lsn(
    io: &std::sync::Arc<dyn keel_io::AsyncIo>,
    wal: &Path,
    n: u64,
) -> Result<Lsn, Failure> {
    let header = SegmentDir::existing(io.clone(), wal)?.read_header(n)?;
    Ok(Lsn(
        header.start_lsn().0 + keel::wal::segment::SEGMENT_HEADER_SIZE as u64
    ))
}

pub fn inspect_wal(dir: &Path, start: Start, json: bool, salvage: bool) -> Result<(), Failure> {
    let io = keel_io::open_backend(&keel_io::IoConfig::from_env()?)?;
    let mode = if salvage {
        RecoveryMode::SalvageToFirstError
    } else {
        RecoveryMode::TolerateTornTail
    };
    let from = start_lsn(&io, dir, start)?;
    // The log is inspected even where the control file is damaged (the
    // default start has refused that already).
    let control = read_control(&io, dir).ok().flatten();
    let mut reader = WalReader::open_read_only(io, &wal_dir(dir), from, mode)?;
    let mut totals: BTreeMap<&'static str, TypeTotals> = BTreeMap::new();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failure = None;
    for record in reader.by_ref() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                failure = Some(Failure(e.to_string()));
                break;
            }
        };
        let t = totals.entry(record.header.kind.name()).or_default();
        t.records += 1;
        t.bytes += u64::from(record.header.total_len);
        let line = if json {
            record_json(&record).to_string()
        } else {
            record_line(&record)
        };
        if let Err(e) = writeln!(out, "{line}") {
            // A reader that stopped listening (`| head`) is not a failure.
            return quiet_on_broken_pipe(e);
        }
    }
    let end = reader.end();
    let cut = reader.tail_cut().cloned();
    let summary = if json {
        summary_json(&totals, from, end, cut.as_ref())
    } else {
        summary_text(&totals, end, cut.as_ref())
    };
    if let Err(e) = writeln!(out, "{summary}").and_then(|_| out.flush()) {
        return quiet_on_broken_pipe(e);
    }
    drop(out);
    if failure.is_none()
        && !salvage
        && let (Some(c), Some(end)) = (control.filter(|c| c.clean), end)
    {
        let segment =
            |lsn: Lsn| wal_dir(dir).join(segment_file_name(lsn.0 / reader.segment_size()));
        failure = cleanly_stopped_log_damage(&c, end, cut.as_ref(), segment);
    }
    failure.map_or(Ok(()), Err)
}

/// The damage in a log the database stopped cleanly (`c.clean`), which ends
/// after the checkpoint end record at `c.checkpoint_end`: a log that ends at
/// `end`, at or before that record, lost its tail; a torn tail `cut` there
/// is damaged bytes that were durable. The error names the segment file
/// (`segment` of an LSN).
fn cleanly_stopped_log_damage(
    c: &Control,
    end: Lsn,
    cut: Option<&TailCut>,
    segment: impl Fn(Lsn) -> std::path::PathBuf,
) -> Option<Failure> {
    if end <= c.checkpoint_end {
        return Some(Failure(format!(
            "{}: the database was stopped cleanly, so the log ends after the checkpoint at {} \
             that ends at {} (control file), but it ends at {end}: the segment is missing or \
             lost its tail",
            segment(c.checkpoint_end).display(),
            c.redo_start,
            c.checkpoint_end,
        )));
    }
    cut.map(|cut| {
        Failure(format!(
            "{}: the database was stopped cleanly, so the log holds no torn tail, but its bytes \
             at {} are not a valid record ({}): they were durable and are damaged",
            segment(cut.at).display(),
            cut.at,
            cut.reason,
        ))
    })
}

/// The summary line of `--json`: totals by record type, the range read
/// and the torn tail, if one was cut.
fn summary_json(
    totals: &BTreeMap<&'static str, TypeTotals>,
    from: Lsn,
    end: Option<Lsn>,
    cut: Option<&TailCut>,
) -> String {
    let by_type: serde_json::Map<String, serde_json::Value> = totals
        .iter()
        .map(|(k, t)| {
            (
                k.to_string(),
                json!({"records": t.records, "bytes": t.bytes}),
            )
        })
        .collect();
    json!({"summary": {
        "records": totals.values().map(|t| t.records).sum::<u64>(),
        "bytes": totals.values().map(|t| t.bytes).sum::<u64>(),
        "by_type": by_type,
        "start": from.to_string(),
        "end": end.map(|l| l.to_string()),
        "torn_tail": cut.map(|c| json!({"at": c.at.to_string(), "reason": c.reason})),
    }})
    .to_string()
}

/// The text summary: totals, a table by record type, where the log ends.
fn summary_text(
    totals: &BTreeMap<&'static str, TypeTotals>,
    end: Option<Lsn>,
    cut: Option<&TailCut>,
) -> String {
    let records: u64 = totals.values().map(|t| t.records).sum();
    let bytes: u64 = totals.values().map(|t| t.bytes).sum();
    let mut s = format!("summary: {records} records, {bytes} bytes\n");
    s.push_str(&format!(
        "  {:<18} {:>10} {:>14}\n",
        "type", "records", "bytes"
    ));
    for (k, t) in totals {
        s.push_str(&format!("  {k:<18} {:>10} {:>14}\n", t.records, t.bytes));
    }
    match (end, cut) {
        (Some(end), None) => s.push_str(&format!("end of log at {end}")),
        (Some(end), Some(c)) => s.push_str(&format!(
            "end of log at {end}: torn tail cut ({})",
            c.reason
        )),
        (None, _) => s.push_str("log not read to its end"),
    }
    s
}

fn describe(record: &LogRecord) -> String {
    match Payload::decode_record(&record.header, &record.payload) {
        Ok(p) => p.summary(),
        Err(e) => format!("UNDECODABLE PAYLOAD: {e}"),
    }
}

fn record_line(r: &LogRecord) -> String {
    let h = &r.header;
    let mut s = format!(
        "lsn {} len {:>5} {:<16} txn {:<6} prev {}",
        h.lsn,
        h.total_len,
        h.kind.name(),
        h.txn.0,
        h.prev_lsn
    );
    if let (Some(rel), Some(page)) = (h.relation, h.page) {
        s.push_str(&format!(" rel {rel} page {page}"));
    }
    s.push_str(" | ");
    s.push_str(&describe(r));
    s
}

fn record_json(r: &LogRecord) -> serde_json::Value {
    let h = &r.header;
    json!({
        "lsn": h.lsn.to_string(),
        "len": h.total_len,
        "type": h.kind.name(),
        "txn": h.txn.0,
        "prev_lsn": h.prev_lsn.to_string(),
        "relation": h.relation.map(|r| r.0),
        "page": h.page.map(|p| p.0),
        "payload": describe(r),
    })
}
