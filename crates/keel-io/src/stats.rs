//! Per-backend telemetry: for every (operation kind, file class) pair, the
//! count, bytes, errors and a latency histogram.
//!
//! Latency is measured from admission (after any backpressure wait) to the
//! moment the backend completes the future, so it includes queueing inside
//! the backend but not time the caller spent blocked on a full queue.
//!
//! Hot path cost: one uncontended `parking_lot` mutex per (kind, class) cell
//! and one histogram increment. Cells are separate so a WAL flusher and the
//! data writers do not share a lock. Histograms are allocated on first use
//! and keep two significant digits (1% resolution) up to one hour.
//!
//! [`Stats::snapshot`] returns plain data ([`IoStats`]) for `keel stats`.

use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::request::{FileClass, OpKind};

/// Largest latency the histograms track (longer ones are clamped): 1 hour.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;
/// Significant digits of the histograms: 2 gives 1% resolution in a few KiB.
const SIGNIFICANT_DIGITS: u8 = 2;

#[derive(Default)]
struct Cell {
    count: u64,
    bytes: u64,
    errors: u64,
    latency_ns: Option<Histogram<u64>>,
}

pub(crate) struct Stats {
    backend: &'static str,
    cells: Box<[Mutex<Cell>]>,
}

impl Stats {
    pub(crate) fn new(backend: &'static str) -> Stats {
        let n = OpKind::ALL.len() * FileClass::ALL.len();
        Stats {
            backend,
            cells: (0..n).map(|_| Mutex::new(Cell::default())).collect(),
        }
    }

    fn cell(&self, op: OpKind, class: FileClass) -> Option<&Mutex<Cell>> {
        self.cells
            .get(op.index() * FileClass::ALL.len() + class.index())
    }

    /// Records one completed operation.
    pub(crate) fn record(
        &self,
        op: OpKind,
        class: FileClass,
        bytes: u64,
        ok: bool,
        latency: Duration,
    ) {
        let Some(cell) = self.cell(op, class) else {
            return;
        };
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let mut c = cell.lock();
        c.count += 1;
        c.bytes += bytes;
        if !ok {
            c.errors += 1;
        }
        if c.latency_ns.is_none() {
            // Constant, valid bounds: creation cannot fail; if it somehow
            // did, latency is simply not tracked for this cell.
            c.latency_ns = Histogram::new_with_bounds(1, MAX_LATENCY_NS, SIGNIFICANT_DIGITS).ok();
        }
        if let Some(hist) = c.latency_ns.as_mut() {
            hist.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
        }
    }

    /// A copy of every non-empty cell.
    pub(crate) fn snapshot(&self) -> IoStats {
        let mut ops = Vec::new();
        for op in OpKind::ALL {
            for class in FileClass::ALL {
                let Some(cell) = self.cell(op, class) else {
                    continue;
                };
                let c = cell.lock();
                if c.count == 0 {
                    continue;
                }
                let q = |p: f64| c.latency_ns.as_ref().map_or(0, |h| h.value_at_quantile(p));
                ops.push(OpStats {
                    op,
                    class,
                    count: c.count,
                    bytes: c.bytes,
                    errors: c.errors,
                    latency_ns_p50: q(0.5),
                    latency_ns_p99: q(0.99),
                    latency_ns_p999: q(0.999),
                    latency_ns_max: c.latency_ns.as_ref().map_or(0, |h| h.max()),
                });
            }
        }
        IoStats {
            backend: self.backend,
            ops,
        }
    }
}

/// Statistics of one (operation kind, file class) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpStats {
    /// The operation kind.
    pub op: OpKind,
    /// The file class.
    pub class: FileClass,
    /// Completed operations (successful or not).
    pub count: u64,
    /// Bytes moved by successful operations.
    pub bytes: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Median latency.
    pub latency_ns_p50: u64,
    /// 99th percentile latency.
    pub latency_ns_p99: u64,
    /// 99.9th percentile latency.
    pub latency_ns_p999: u64,
    /// Largest latency seen.
    pub latency_ns_max: u64,
}

/// A snapshot of a backend's statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoStats {
    /// The backend's name ("thread-pool", "io-uring", "sim").
    pub backend: &'static str,
    /// Every (kind, class) pair that saw at least one operation.
    pub ops: Vec<OpStats>,
}

impl IoStats {
    /// The statistics of one pair, if it saw any operation.
    pub fn get(&self, op: OpKind, class: FileClass) -> Option<&OpStats> {
        self.ops.iter().find(|s| s.op == op && s.class == class)
    }

    /// Operations of one kind across all classes.
    pub fn count(&self, op: OpKind) -> u64 {
        self.ops
            .iter()
            .filter(|s| s.op == op)
            .map(|s| s.count)
            .sum()
    }

    /// Errors of one kind across all classes.
    pub fn errors(&self, op: OpKind) -> u64 {
        self.ops
            .iter()
            .filter(|s| s.op == op)
            .map(|s| s.errors)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_snapshots() {
        let s = Stats::new("test");
        s.record(
            OpKind::Write,
            FileClass::Wal,
            8192,
            true,
            Duration::from_micros(10),
        );
        s.record(
            OpKind::Write,
            FileClass::Wal,
            0,
            false,
            Duration::from_micros(30),
        );
        let snap = s.snapshot();
        let w = snap.get(OpKind::Write, FileClass::Wal).unwrap();
        assert_eq!((w.count, w.bytes, w.errors), (2, 8192, 1));
        assert!(w.latency_ns_p50 >= 9_000 && w.latency_ns_max >= 29_000);
        assert!(snap.get(OpKind::Read, FileClass::Wal).is_none());
        assert_eq!(snap.count(OpKind::Write), 2);
    }
}
