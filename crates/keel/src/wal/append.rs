//! The log buffer: where appended records wait for a batch.
//!
//! ## Appending
//!
//! An appender encodes its record into a buffer of its own (the payload
//! straight behind the header space, one allocation), *then*, under one
//! mutex held for a few arithmetic operations and the header's stores,
//! takes its position (which depends on whether the record still fits in
//! the current segment, so a plain atomic add would not do), writes the
//! header with its LSN, and queues the buffer. Encoding, the expensive
//! part, runs in parallel on every appending thread; no lock is held while
//! payload bytes are copied (MySQL 8's log buffer reserves by atomic add
//! and copies in parallel; here the copy is replaced by a hand-over of an
//! owned buffer). The CRC is computed by the batch that writes the record
//! (`batch.rs`).
//!
//! A record that does not fit in the rest of its segment goes to the next
//! one; the tail it leaves is filled with a padding record (or zeroes, when
//! too short for a header), so every byte of a segment's data area is
//! accounted for.
//!
//! ## The pending queue
//!
//! The pending queue holds records by LSN. Positions are taken and records
//! queued under the same lock, so the queue is always the contiguous run
//! of records from the first one not yet taken by a batch to the reserved
//! end: a batch takes a prefix of it and never waits for a gap. Appenders
//! wait for room while the queue holds more than
//! [`crate::wal::WalConfig::buffer_capacity_bytes`] (the writer pushes it
//! out, `writer.rs`).
//!
//! ## Record buffers
//!
//! A batch copies its records into its write buffer, after which their
//! buffers are returned here ([`LogBuffer::recycle`]) and the next
//! appenders encode into them ([`LogBuffer::record_buf`]). A record's
//! buffer is allocated on the appender's thread and finished with on the
//! batch leader's: without the return, every record would be freed on
//! another thread than the one that allocated it, which the system
//! allocator pays for with its arena lock, contended by the appenders'
//! own allocations. The spares are bounded by [`SPARE_BYTES`] of
//! capacity in all (and no single buffer above [`SPARE_MAX_RECORD`]), so
//! the log holds at most that much memory beyond its capacity.
//!
//! Left out here: when records become durable (`group/`) and how a batch
//! reaches the disk (`batch.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::types::Lsn;
use crate::wal::WalError;
use crate::wal::record::{
    MAX_RECORD_SIZE, RECORD_HEADER_SIZE, RecordMeta, RecordType, encode_header, encode_unsealed,
};
use crate::wal::segment::{Geometry, SEGMENT_HEADER_SIZE};

/// A record placed in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Its LSN (start position).
    pub lsn: Lsn,
    /// One past its last byte.
    pub end: Lsn,
}

/// Appended records not yet taken by a batch, and where the next one
/// goes.
struct Pending {
    /// Where the next record goes.
    next: Lsn,
    /// `(LSN, record)`, ascending and contiguous up to `next`.
    records: VecDeque<(u64, Vec<u8>)>,
}

/// Most capacity, in bytes, that the spare record buffers hold together.
pub(crate) const SPARE_BYTES: usize = 4 << 20;
/// Largest buffer kept as a spare: a record holding a whole page image
/// fits.
pub(crate) const SPARE_MAX_RECORD: usize = 12 << 10;
/// Most spare buffers (a bound for the channel; [`SPARE_BYTES`] is the one
/// that usually applies).
const SPARE_COUNT: usize = 16 << 10;

/// Record buffers a batch is done with, for the next appenders.
struct Spares {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    /// Capacity of the buffers in the channel, in bytes.
    bytes: AtomicUsize,
}

impl Spares {
    fn new() -> Spares {
        let (tx, rx) = crossbeam_channel::bounded(SPARE_COUNT);
        Spares {
            tx,
            rx,
            bytes: AtomicUsize::new(0),
        }
    }

    fn take(&self) -> Option<Vec<u8>> {
        let buf = self.rx.try_recv().ok()?;
        self.bytes.fetch_sub(buf.capacity(), Ordering::Relaxed);
        Some(buf)
    }

    /// Keeps `buf` if it is small enough and the spares have room; drops
    /// it otherwise.
    fn put(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap == 0 || cap > SPARE_MAX_RECORD {
            return;
        }
        if self.bytes.fetch_add(cap, Ordering::Relaxed) + cap > SPARE_BYTES
            || self.tx.try_send(buf).is_err()
        {
            self.bytes.fetch_sub(cap, Ordering::Relaxed);
        }
    }
}

/// Reservation and the pending queue.
pub(crate) struct LogBuffer {
    geometry: Geometry,
    /// [`crate::wal::WalConfig::max_batch_bytes`].
    max_batch: usize,
    /// [`crate::wal::WalConfig::buffer_capacity_bytes`].
    capacity: usize,
    pending: Mutex<Pending>,
    /// Bytes queued or taken by a batch that is not yet durable (what
    /// counts against `capacity`).
    held: AtomicUsize,
    records: AtomicU64,
    bytes: AtomicU64,
    spares: Spares,
}

impl LogBuffer {
    /// An empty buffer whose next record goes at `end`.
    pub(crate) fn new(geometry: Geometry, max_batch: usize, capacity: usize, end: Lsn) -> Self {
        LogBuffer {
            geometry,
            max_batch,
            capacity,
            pending: Mutex::new(Pending {
                next: end,
                records: VecDeque::new(),
            }),
            held: AtomicUsize::new(0),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            spares: Spares::new(),
        }
    }

    /// An empty buffer for a record of about `len` bytes (header space
    /// included), a spare when there is one (see "Record buffers").
    pub(crate) fn record_buf(&self, len: usize) -> Vec<u8> {
        let mut buf = self.spares.take().unwrap_or_default();
        buf.clear();
        buf.reserve(len);
        buf
    }

    /// Takes back the buffers of records a batch has copied.
    pub(crate) fn recycle(&self, records: Vec<Vec<u8>>) {
        for r in records {
            self.spares.put(r);
        }
    }

    /// Refuses a record of `len` bytes (header included) larger than the
    /// log accepts (invariant 15).
    pub(crate) fn check_len(len: usize) -> Result<(), WalError> {
        if len > MAX_RECORD_SIZE {
            return Err(WalError::RecordTooLarge {
                len,
                max: MAX_RECORD_SIZE,
            });
        }
        Ok(())
    }

    /// Whether a record of `len` bytes may enter the queue now: it fits
    /// under the capacity, or nothing is held.
    pub(crate) fn has_room(&self, len: usize) -> bool {
        let held = self.held.load(Ordering::Acquire);
        held + len <= self.capacity || held == 0
    }

    /// Places `record` (its payload behind [`RECORD_HEADER_SIZE`] bytes of
    /// header space, filled in here) at the next position and queues it.
    pub(crate) fn place(&self, meta: &RecordMeta, mut record: Vec<u8>) -> Appended {
        let len = record.len();
        debug_assert!(len >= RECORD_HEADER_SIZE, "record without header space");
        debug_assert!(
            len as u64 <= self.geometry.segment_size - SEGMENT_HEADER_SIZE as u64,
            "a record larger than a segment's data area (inv. 15)"
        );
        let mut pending = self.pending.lock();
        let at = self.geometry.record_position(pending.next);
        let seg_end = self.geometry.segment_end(at);
        let lsn = if at.0 + len as u64 <= seg_end.0 {
            at
        } else {
            let pad = (seg_end.0 - at.0) as usize;
            self.held.fetch_add(pad, Ordering::AcqRel);
            pending.records.push_back((at.0, padding_bytes(at, pad)));
            self.geometry.record_position(seg_end)
        };
        encode_header(&mut record, meta, lsn);
        pending.next = Lsn(lsn.0 + len as u64);
        pending.records.push_back((lsn.0, record));
        self.held.fetch_add(len, Ordering::AcqRel);
        drop(pending);
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        Appended {
            lsn,
            end: Lsn(lsn.0 + len as u64),
        }
    }

    /// Position after the last reserved record.
    pub(crate) fn reserved_end(&self) -> Lsn {
        self.pending.lock().next
    }

    /// Removes and returns the records queued from `start` on, up to one
    /// batch and the end of `start`'s segment.
    pub(crate) fn take_contiguous(&self, start: Lsn) -> Vec<Vec<u8>> {
        let seg_end = self.geometry.segment_end(start);
        let mut out = Vec::new();
        let mut size = 0usize;
        let mut pending = self.pending.lock();
        let mut pos = start.0;
        while let Some((lsn, r)) = pending.records.front() {
            // The queue starts at the written end (one batch at a time
            // takes from it); anything else stops the batch rather than
            // writing a record at another position than its own.
            debug_assert_eq!(*lsn, pos, "the queue is contiguous from the written end");
            if *lsn != pos
                || *lsn >= seg_end.0
                || (!out.is_empty() && size + r.len() > self.max_batch)
            {
                break;
            }
            size += r.len();
            pos += r.len() as u64;
            let (_, r) = pending.records.pop_front().unwrap_or_default();
            out.push(r);
        }
        out
    }

    /// A batch of `bytes` taken from the queue is durable: its room is
    /// free again.
    pub(crate) fn release(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Records appended (padding excluded) and bytes appended.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.records.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// The bytes that fill a segment's tail of `len` bytes at `at`: a padding
/// record when a header fits, zeroes otherwise (the reader skips a tail too
/// short for a header).
fn padding_bytes(at: Lsn, len: usize) -> Vec<u8> {
    if len < RECORD_HEADER_SIZE {
        return vec![0u8; len];
    }
    let mut buf = vec![0u8; len];
    let meta = RecordMeta::new(RecordType::Padding);
    let zeros = vec![0u8; len - RECORD_HEADER_SIZE];
    encode_unsealed(&mut buf, &meta, at, &zeros);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer() -> LogBuffer {
        let geometry = Geometry {
            segment_size: 1 << 20,
        };
        LogBuffer::new(
            geometry,
            64 << 10,
            256 << 10,
            Lsn(SEGMENT_HEADER_SIZE as u64),
        )
    }

    #[test]
    fn a_recycled_buffer_comes_back_empty_with_its_capacity() {
        let log = buffer();
        let mut used = Vec::with_capacity(300);
        used.extend_from_slice(&[9u8; 250]);
        log.recycle(vec![used]);
        let again = log.record_buf(200);
        assert!(again.is_empty(), "a spare is handed out empty");
        assert!(again.capacity() >= 300, "the spare kept its capacity");
        assert_eq!(log.spares.bytes.load(Ordering::Relaxed), 0);
        let fresh = log.record_buf(100);
        assert!(fresh.is_empty() && fresh.capacity() >= 100);
    }

    #[test]
    fn spares_stay_within_their_byte_bound() {
        let log = buffer();
        let big = vec![0u8; SPARE_MAX_RECORD + 1];
        log.recycle(vec![big]);
        assert_eq!(
            log.spares.bytes.load(Ordering::Relaxed),
            0,
            "too large to keep"
        );
        let each = 8 << 10;
        let offered = SPARE_BYTES / each + 10;
        log.recycle((0..offered).map(|_| Vec::with_capacity(each)).collect());
        let kept = log.spares.bytes.load(Ordering::Relaxed);
        assert!(
            kept <= SPARE_BYTES,
            "{kept} bytes kept, bound {SPARE_BYTES}"
        );
        assert!(kept >= SPARE_BYTES - each, "the bound is used: {kept}");
        let mut taken = 0;
        while log.spares.take().is_some() {
            taken += 1;
        }
        assert_eq!(taken, kept / each);
        assert_eq!(log.spares.bytes.load(Ordering::Relaxed), 0);
    }
}
