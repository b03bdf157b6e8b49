//! The log buffer: where appended records wait for a batch.
//!
//! ## Appending
//!
//! An appender encodes its record into a buffer of its own thread (the
//! payload straight behind the header space, [`with_record_buf`]), *then*,
//! under one mutex, takes its position (which depends on whether the
//! record still fits in the current segment, so a plain atomic add would
//! not do), writes the header with its LSN and copies the record onto the
//! end of the queue. Encoding, the expensive part, runs in parallel on
//! every appending thread; the lock is held for a few arithmetic
//! operations and one copy of the finished record (a few hundred bytes for
//! most, a page and a little for the largest common one, a split's half).
//! PostgreSQL's WAL insertion and MySQL 8's log buffer copy records into a
//! shared buffer the same way; here the copy runs under the lock that
//! gives the position, so the queue never has a gap. The CRC is computed
//! by the batch that writes the record (`batch.rs`).
//!
//! A record that does not fit in the rest of its segment goes to the next
//! one; the tail it leaves is filled with a padding record (or zeroes, when
//! too short for a header), so every byte of a segment's data area is
//! accounted for.
//!
//! ## The pending queue
//!
//! The pending queue holds the log's bytes from the first one not yet
//! taken by a batch to the reserved end, as [`Chunk`]s: runs of whole
//! records, each inside one segment and at most [`CHUNK_BYTES`] (or one
//! batch, when that is less) long; a record longer than that has a chunk
//! of its own. A batch takes whole chunks. Positions are taken and
//! records copied under the same lock, so the queue is always contiguous:
//! a batch takes a prefix of it and never waits for a gap. Appenders wait
//! for room while the queue holds more than
//! [`crate::wal::WalConfig::buffer_capacity_bytes`] (the writer pushes it
//! out, `writer.rs`).
//!
//! ## Memory
//!
//! A chunk's buffer is allocated once, with all its room, and comes back
//! after its batch has copied it into its write buffer
//! ([`LogBuffer::recycle`]): the appenders' records cost no allocation,
//! nothing allocated on one thread is freed on another, and nothing is
//! handed between threads per record (the loading thread of a bulk load
//! and the log's thread share one lock and one queue, touched once per
//! record and once per batch). The spare chunks are bounded by
//! [`SPARE_BYTES`] of capacity in all, and each thread's record buffer by
//! [`RECORD_BUF_KEEP`], so the log holds at most that much memory beyond
//! its capacity.
//!
//! Left out here: when records become durable (`group/`) and how a batch
//! reaches the disk (`batch.rs`).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Most bytes of records a chunk holds (less when a batch is shorter; a
/// record longer alone has a chunk of its own). A chunk's room is reserved
/// when it is started, so a quiet log holds this much, not a batch's
/// megabyte; a batch takes several chunks.
pub(crate) const CHUNK_BYTES: usize = 64 << 10;
/// Most capacity, in bytes, that the spare chunks hold together.
pub(crate) const SPARE_BYTES: usize = 4 << 20;
/// Most capacity a thread's record buffer keeps between records: a record
/// holding a whole page image fits; a larger one's buffer is freed.
pub(crate) const RECORD_BUF_KEEP: usize = 12 << 10;

thread_local! {
    /// The buffer this thread's appenders encode their records into.
    static RECORD_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on this thread's record buffer, emptied (its capacity kept
/// from the record before, up to [`RECORD_BUF_KEEP`]). The buffer is taken
/// out for the call, so an append made inside `f` gets a fresh one instead
/// of finding it borrowed.
pub(crate) fn with_record_buf<T>(f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    let mut buf = RECORD_BUF.take();
    buf.clear();
    let out = f(&mut buf);
    if buf.capacity() <= RECORD_BUF_KEEP {
        RECORD_BUF.set(buf);
    }
    out
}

/// A run of whole records (padding included) queued for a batch: the log's
/// bytes from `start`, inside one segment.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// LSN of its first byte.
    start: u64,
    /// The records, end to end.
    bytes: Vec<u8>,
    /// Where each record (or padding piece) begins in `bytes`.
    starts: Vec<u32>,
}

impl Chunk {
    /// Its bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// How many records (and padding pieces) it holds.
    pub(crate) fn pieces(&self) -> usize {
        self.starts.len()
    }

    /// Calls `f` on each record (and padding piece), in log order.
    pub(crate) fn for_each_piece(&mut self, mut f: impl FnMut(&mut [u8])) {
        if self.starts.is_empty() {
            return;
        }
        let total = self.bytes.len();
        let ends = self.starts.iter().skip(1).map(|&s| s as usize);
        let mut rest = &mut self.bytes[..];
        let mut at = 0;
        for end in ends.chain(std::iter::once(total)) {
            let (piece, tail) = rest.split_at_mut(end - at);
            f(piece);
            rest = tail;
            at = end;
        }
    }

    /// The position one past its last byte.
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

/// Appended records not yet taken by a batch, and where the next one
/// goes.
struct Pending {
    /// Where the next record goes.
    next: Lsn,
    /// The queue: ascending and contiguous up to `next`.
    chunks: VecDeque<Chunk>,
    /// Chunks a batch is done with, empty, for the next ones.
    spare: Vec<Chunk>,
    /// Capacity of `spare`'s buffers, in bytes.
    spare_bytes: usize,
    /// Records appended (padding excluded) and bytes appended, counted
    /// under the lock the append holds anyway.
    records: u64,
    bytes: u64,
}

impl Pending {
    /// Copies `piece` (a record or a padding piece at `lsn`) onto the end
    /// of the queue: onto the last chunk when it ends at `lsn` and has
    /// room within `chunk_bytes`, else into a new chunk.
    fn push(&mut self, lsn: u64, piece: &[u8], chunk_bytes: usize) {
        let len = piece.len();
        let joins = self
            .chunks
            .back()
            .is_some_and(|c| c.end() == lsn && c.len() + len <= chunk_bytes);
        if !joins {
            let mut chunk = self.spare.pop().unwrap_or_default();
            self.spare_bytes -= chunk.bytes.capacity();
            chunk.start = lsn;
            // All its room at once: the chunk never grows (a reallocation
            // and copy under the lock) while it fills.
            chunk.bytes.reserve(chunk_bytes.max(len));
            self.chunks.push_back(chunk);
        }
        let Some(chunk) = self.chunks.back_mut() else {
            unreachable!("a chunk was pushed above")
        };
        // A chunk is at most CHUNK_BYTES or one record long: its offsets fit.
        let at = chunk.bytes.len();
        chunk.starts.push(at as u32);
        chunk.bytes.extend_from_slice(piece);
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
                chunks: VecDeque::new(),
                spare: Vec::new(),
                spare_bytes: 0,
                records: 0,
                bytes: 0,
            }),
            held: AtomicUsize::new(0),
        }
    }

    /// Most bytes a chunk holds but for a record longer alone: a batch's,
    /// or [`CHUNK_BYTES`] when that is less.
    fn chunk_bytes(&self) -> usize {
        self.max_batch.min(CHUNK_BYTES)
    }

    /// Takes back the chunks a batch has copied: kept, emptied, for the
    /// next records while [`SPARE_BYTES`] allows; freed otherwise (after
    /// the lock is released). Returns `chunks` emptied, for the next
    /// batch's [`take_contiguous`](Self::take_contiguous).
    pub(crate) fn recycle(&self, mut chunks: Vec<Chunk>) -> Vec<Chunk> {
        let mut freed = Vec::new();
        let mut pending = self.pending.lock();
        for mut chunk in chunks.drain(..) {
            let cap = chunk.bytes.capacity();
            if pending.spare_bytes + cap > SPARE_BYTES {
                freed.push(chunk);
                continue;
            }
            chunk.bytes.clear();
            chunk.starts.clear();
            pending.spare_bytes += cap;
            pending.spare.push(chunk);
        }
        drop(pending);
        drop(freed);
        chunks
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
    /// header space, filled in here) at the next position and copies it
    /// onto the queue.
    pub(crate) fn place(&self, meta: &RecordMeta, record: &mut [u8]) -> Appended {
        let len = record.len();
        self.place_with(len, |pending, lsn, chunk_bytes| {
            encode_header(record, meta, lsn);
            pending.push(lsn.0, record, chunk_bytes);
        })
    }

    /// Takes the next position for a record of `len` bytes (padding the
    /// segment's tail when it does not fit there) and has `push` queue it
    /// at that position, all under the lock.
    fn place_with(&self, len: usize, push: impl FnOnce(&mut Pending, Lsn, usize)) -> Appended {
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
            pending.push(at.0, &padding_bytes(at, pad), self.chunk_bytes());
            self.geometry.record_position(seg_end)
        };
        push(&mut pending, lsn, self.chunk_bytes());
        pending.next = Lsn(lsn.0 + len as u64);
        pending.records += 1;
        pending.bytes += len as u64;
        self.held.fetch_add(len, Ordering::AcqRel);
        drop(pending);
        Appended {
            lsn,
            end: Lsn(lsn.0 + len as u64),
        }
    }

    /// Position after the last reserved record.
    pub(crate) fn reserved_end(&self) -> Lsn {
        self.pending.lock().next
    }

    /// Removes and returns the chunks queued from `start` on, up to one
    /// batch (or one chunk, when the first is longer) and the end of
    /// `start`'s segment, in `out` (emptied, kept from the batch before so
    /// that a batch allocates no list).
    pub(crate) fn take_contiguous(&self, start: Lsn, mut out: Vec<Chunk>) -> Vec<Chunk> {
        let seg_end = self.geometry.segment_end(start);
        out.clear();
        let mut size = 0usize;
        let mut pending = self.pending.lock();
        let mut pos = start.0;
        while let Some(c) = pending.chunks.front() {
            // The queue starts at the written end (one batch at a time
            // takes from it, and a batch that fails leaves its writer
            // refusing every later call, so no batch is taken after
            // records left the queue unwritten) and is contiguous within a
            // segment (the next segment's first chunk starts past its
            // header); anything else stops the batch rather than writing a
            // record at another position than its own.
            debug_assert!(
                c.start == pos || c.start >= seg_end.0,
                "the queue is contiguous from the written end: a chunk at {} after {pos}",
                c.start
            );
            if c.start != pos
                || c.start >= seg_end.0
                || (!out.is_empty() && size + c.len() > self.max_batch)
            {
                break;
            }
            size += c.len();
            pos = c.end();
            let Some(c) = pending.chunks.pop_front() else {
                break;
            };
            out.push(c);
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
        let pending = self.pending.lock();
        (pending.records, pending.bytes)
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
    use crate::wal::record::{decode, encoded_len, seal};

    const SEGMENT: u64 = 1 << 20;
    const BATCH: usize = 64 << 10;

    fn buffer() -> LogBuffer {
        let geometry = Geometry {
            segment_size: SEGMENT,
        };
        LogBuffer::new(geometry, BATCH, 256 << 10, Lsn(SEGMENT_HEADER_SIZE as u64))
    }

    /// Appends a record of `payload_len` bytes of `fill`.
    fn append(log: &LogBuffer, payload_len: usize, fill: u8) -> Appended {
        let mut record = vec![fill; encoded_len(payload_len)];
        log.place(&RecordMeta::new(RecordType::Padding), &mut record)
    }

    /// Takes every chunk queued from `pos` on, batch by batch, across
    /// segment ends.
    fn drain(log: &LogBuffer, mut pos: Lsn) -> Vec<Chunk> {
        let mut all = Vec::new();
        loop {
            let chunks = log.take_contiguous(log.geometry.record_position(pos), Vec::new());
            let Some(last) = chunks.last() else {
                return all;
            };
            pos = Lsn(last.end());
            all.extend(chunks);
        }
    }

    #[test]
    fn records_queue_end_to_end_in_chunks_of_at_most_a_batch() {
        let log = buffer();
        let mut placed = Vec::new();
        for i in 0..100u8 {
            placed.push(append(&log, 1_000, i));
        }
        let start = placed[0].lsn;
        let mut pos = start;
        let mut seen = 0;
        let chunks = log.take_contiguous(start, Vec::new());
        assert!(!chunks.is_empty());
        let taken: usize = chunks.iter().map(Chunk::len).sum();
        assert!(taken <= BATCH, "one batch at most: {taken}");
        for mut c in chunks {
            assert_eq!(c.start, pos.0, "chunks follow each other");
            c.for_each_piece(|r| {
                let at = placed[seen];
                assert_eq!(r.len() as u64, at.end.0 - at.lsn.0);
                seal(r, start);
                let (header, payload) = decode(r, at.lsn).expect("a whole record");
                assert_eq!(header.lsn, at.lsn);
                assert!(payload.iter().all(|&b| b == seen as u8));
                seen += 1;
            });
            pos = Lsn(c.end());
        }
        assert!(seen > 0 && seen < 100, "{seen} records in the first batch");
        let rest = log.take_contiguous(pos, Vec::new());
        assert_eq!(
            rest.first().map(|c| c.start),
            Some(pos.0),
            "the next batch goes on from there"
        );
    }

    #[test]
    fn a_batch_longer_than_a_chunk_takes_several() {
        let geometry = Geometry {
            segment_size: 4 * SEGMENT,
        };
        let batch = 1 << 20;
        let log = LogBuffer::new(geometry, batch, 4 << 20, Lsn(SEGMENT_HEADER_SIZE as u64));
        let first = append(&log, 1_000, 1).lsn;
        for _ in 0..1_000 {
            append(&log, 1_000, 2);
        }
        let chunks = log.take_contiguous(first, Vec::new());
        assert!(chunks.len() > 1, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= CHUNK_BYTES));
        let taken: usize = chunks.iter().map(Chunk::len).sum();
        assert!(
            taken <= batch && taken > batch - CHUNK_BYTES,
            "{taken} bytes"
        );
    }

    #[test]
    fn a_record_longer_than_a_batch_has_a_chunk_of_its_own() {
        let log = buffer();
        let small = append(&log, 100, 1);
        let big = append(&log, BATCH + 4_000, 2);
        let after = append(&log, 100, 3);
        let first = log.take_contiguous(small.lsn, Vec::new());
        assert_eq!(first.len(), 1, "the big record does not join the batch");
        assert_eq!(first[0].end(), big.lsn.0);
        let second = log.take_contiguous(big.lsn, Vec::new());
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].pieces(), 1, "alone in its chunk");
        assert_eq!(second[0].end(), after.lsn.0);
    }

    #[test]
    fn a_record_that_does_not_fit_its_segment_leaves_padding_and_starts_the_next() {
        let log = buffer();
        let first = Lsn(SEGMENT_HEADER_SIZE as u64);
        let data = (SEGMENT - SEGMENT_HEADER_SIZE as u64) as usize;
        // Fill the segment but for 30 bytes, then 10 more in its last
        // record's place: too short for a header, so zeroes.
        let mut at = first;
        while (SEGMENT - at.0) as usize > BATCH {
            at = append(&log, BATCH - RECORD_HEADER_SIZE - 64, 7).end;
        }
        let left = (SEGMENT - at.0) as usize;
        at = append(&log, left - 30 - RECORD_HEADER_SIZE, 8).end;
        assert_eq!(SEGMENT - at.0, 30);
        let next = append(&log, 500, 9);
        assert_eq!(
            next.lsn.0,
            SEGMENT + SEGMENT_HEADER_SIZE as u64,
            "the next segment's first record"
        );
        let mut pos = first;
        let mut pieces = Vec::new();
        loop {
            let chunks = log.take_contiguous(pos, Vec::new());
            if chunks.is_empty() {
                break;
            }
            for mut c in chunks {
                assert!(c.start < SEGMENT || c.start >= SEGMENT + SEGMENT_HEADER_SIZE as u64);
                assert!(
                    c.end() <= SEGMENT || c.start > SEGMENT,
                    "a chunk stays in its segment"
                );
                c.for_each_piece(|r| pieces.push(r.len()));
                pos = Lsn(c.end());
            }
            if pos.0 == SEGMENT {
                pos = Lsn(SEGMENT + SEGMENT_HEADER_SIZE as u64);
            }
        }
        assert_eq!(
            pieces[pieces.len() - 2],
            30,
            "the tail's zeroes are a piece"
        );
        assert_eq!(pieces.iter().sum::<usize>(), data + encoded_len(500));
    }

    #[test]
    fn recycled_chunks_come_back_empty_within_their_byte_bound() {
        let log = buffer();
        let first = append(&log, 100, 1).lsn;
        for _ in 0..(2 * SPARE_BYTES / BATCH) {
            append(&log, BATCH - RECORD_HEADER_SIZE, 2);
        }
        let taken = drain(&log, first);
        let offered = taken.len();
        log.recycle(taken);
        let pending = log.pending.lock();
        assert!(
            pending.spare_bytes <= SPARE_BYTES,
            "{} kept",
            pending.spare_bytes
        );
        assert!(pending.spare.len() < offered, "some were freed");
        assert!(
            pending.spare_bytes >= SPARE_BYTES - 2 * BATCH,
            "the bound is used"
        );
        assert!(
            pending
                .spare
                .iter()
                .all(|c| c.bytes.is_empty() && c.starts.is_empty())
        );
        let kept: usize = pending.spare.iter().map(|c| c.bytes.capacity()).sum();
        assert_eq!(kept, pending.spare_bytes);
        drop(pending);
        let next = append(&log, 100, 3);
        let chunks = log.take_contiguous(next.lsn, Vec::new());
        assert!(
            chunks[0].bytes.capacity() >= BATCH,
            "a spare, reused, with its capacity"
        );
    }

    #[test]
    fn the_record_buffer_keeps_its_capacity_up_to_its_bound() {
        with_record_buf(|b| b.extend_from_slice(&[1u8; 300]));
        let cap = with_record_buf(|b| {
            assert!(b.is_empty(), "handed out empty");
            b.capacity()
        });
        assert!(cap >= 300, "kept: {cap}");
        with_record_buf(|b| b.resize(RECORD_BUF_KEEP + 1, 0));
        assert_eq!(with_record_buf(|b| b.capacity()), 0, "too large to keep");
        let inner = with_record_buf(|outer| {
            outer.push(1);
            with_record_buf(|inner| inner.len())
        });
        assert_eq!(inner, 0, "an append inside an append gets its own buffer");
    }
}
