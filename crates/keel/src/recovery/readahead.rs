//! Read-ahead for redo: the log is read and decoded a window at a time,
//! and the pages a window's records will read are loaded in one batch
//! (module docs of [`crate::recovery`], "Read-ahead").
//!
//! Reading, validating and decoding the log runs on a thread of its own,
//! [`READ_AHEAD_WINDOWS`] windows ahead of redo, so the two overlap —
//! unless the machine has one core, or the I/O backend is deterministic
//! ([`AsyncIo::deterministic`], the simulator: its crash tests replay a
//! seed only if the order of I/O operations is), where the log is read
//! inline between windows. Windows redo is done with go back to the
//! reader, which drops their payloads and refills them: the thread that
//! allocated a payload frees it (freeing across threads costs the
//! allocator far more).

use std::collections::HashMap;
use std::sync::Arc;

use keel_io::AsyncIo;
use rustc_hash::FxHashSet;

use super::recovery;
use crate::buffer::FileId;
use crate::error::{Error, Result};
use crate::heap::Relation;
use crate::types::{Lsn, PageId, RelationId};
use crate::wal::{Payload, RecordHeader, WalReader};

/// Records read ahead of redo: at most this many, or [`WINDOW_BYTES`] of
/// payload, are decoded before their pages are prefetched in one batch.
const WINDOW_RECORDS: usize = 16_384;
/// Payload bytes read ahead of redo (see [`WINDOW_RECORDS`]).
const WINDOW_BYTES: usize = 4 << 20;
/// Windows the reader may be ahead of redo.
const READ_AHEAD_WINDOWS: usize = 2;

/// Decoded records, in log order, that redo runs as one batch.
type Window = Vec<(RecordHeader, Payload)>;

/// Whether the log is read on a thread of its own: not on a deterministic
/// backend, and not on one core.
pub(super) fn threaded(io: &dyn AsyncIo) -> bool {
    !io.deterministic() && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
}

/// Reads the log from `reader` to its end, a window at a time, and hands
/// each window to `redo`, on a reader thread of its own when `threaded`
/// (see [`threaded`]), else inline. Stops at the first error, of the
/// reading or of `redo`, and returns it. `scan_start` is where the reader
/// starts (named by an error starting the thread).
pub(super) fn run(
    reader: WalReader,
    threaded: bool,
    scan_start: Lsn,
    mut redo: impl FnMut(&[(RecordHeader, Payload)]) -> Result<()>,
) -> Result<()> {
    let (back_tx, back_rx) = crossbeam_channel::bounded::<Window>(READ_AHEAD_WINDOWS + 1);
    let recycled = move || back_rx.try_recv().ok();
    let mut outcome = Ok(());
    let mut run = |window: Result<Window>| {
        let done = window.and_then(|w| {
            let done = redo(&w);
            let _ = back_tx.try_send(w);
            done
        });
        let ok = done.is_ok();
        if let Err(e) = done {
            outcome = Err(e);
        }
        ok
    };
    if !threaded {
        read_windows(reader, recycled, &mut run);
        return outcome;
    }
    let (tx, rx) = crossbeam_channel::bounded::<Result<Window>>(READ_AHEAD_WINDOWS);
    std::thread::scope(|s| {
        let reading = std::thread::Builder::new()
            .name("keel-redo-read".into())
            .spawn_scoped(s, move || {
                read_windows(reader, recycled, |w| tx.send(w).is_ok())
            });
        if let Err(e) = reading {
            return run(Err(recovery(
                scan_start,
                format!("cannot start the log reader thread: {e}"),
            )));
        }
        // Leaving early drops `rx`: the reader's next send fails and it
        // stops.
        rx.into_iter().all(&mut run)
    });
    outcome
}

/// Reads the log to its end, handing `send` a window at a time (at most
/// [`WINDOW_RECORDS`] records or [`WINDOW_BYTES`] of payload), then any
/// error, which ends the reading. Stops early when `send` returns false
/// (redo gave up). Each new window reuses one that `recycled` hands back
/// (emptied here), if any.
fn read_windows(
    mut reader: WalReader,
    mut recycled: impl FnMut() -> Option<Window>,
    mut send: impl FnMut(Result<Window>) -> bool,
) {
    let mut fresh = || {
        recycled()
            .map(|mut w| {
                w.clear();
                w
            })
            .unwrap_or_default()
    };
    let mut window = fresh();
    let mut window_bytes = 0usize;
    // Each payload is decoded straight from the reader's segment buffer.
    while let Some(record) = reader
        .next_with(|h, payload| Payload::decode_record(&h, payload).map(|p| (h, p, payload.len())))
    {
        // A record the log cannot read, or whose payload does not decode.
        let decoded = record.and_then(|d| d).map_err(Error::from);
        let (header, payload, len) = match decoded {
            Ok(d) => d,
            Err(e) => {
                if !window.is_empty() && !send(Ok(std::mem::take(&mut window))) {
                    return;
                }
                send(Err(e));
                return;
            }
        };
        window_bytes += len;
        window.push((header, payload));
        if window.len() >= WINDOW_RECORDS || window_bytes >= WINDOW_BYTES {
            if !send(Ok(std::mem::replace(&mut window, fresh()))) {
                return;
            }
            window_bytes = 0;
        }
    }
    if !window.is_empty() {
        send(Ok(window));
    }
}

/// The pages to load ahead of a window: every page inside its file that a
/// redo record (at or after `redo_start`) will fetch, each once, at most
/// `limit` of them. That includes a page whose first record rebuilds it
/// (init, image): the page on disk may already hold that record and the
/// ones after it, which redo then skips, and without it here each such
/// page is a read of its own. Pages past the end of their file, and of
/// relations without a file, are left out.
pub(super) fn pages(
    window: &[(RecordHeader, Payload)],
    redo_start: Lsn,
    rels: &HashMap<RelationId, Arc<Relation>>,
    limit: usize,
) -> Vec<(FileId, PageId)> {
    let mut seen = FxHashSet::default();
    let mut pages = Vec::new();
    for (h, payload) in window {
        let (Some(rid), Some(pid)) = (h.relation, h.page) else {
            continue;
        };
        if h.lsn < redo_start || !payload.page_changing() || !seen.insert((rid, pid)) {
            continue;
        }
        let Some(rel) = rels.get(&rid) else {
            continue;
        };
        if pid.0 < rel.page_count() {
            pages.push((rel.file(), pid));
            if pages.len() == limit {
                break;
            }
        }
    }
    pages
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use keel_io::sim::{SimConfig, SimIo};
    use keel_io::{IoConfig, ThreadPoolIo};

    #[test]
    fn the_log_is_read_inline_on_a_deterministic_backend_only() {
        let sim = SimIo::new(SimConfig::seeded(1));
        assert!(!threaded(&sim), "the simulator replays a seed only inline");
        let pool = ThreadPoolIo::new(&IoConfig::default()).unwrap();
        let cores = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
        assert_eq!(threaded(&pool), cores);
        pool.shutdown();
    }
}
