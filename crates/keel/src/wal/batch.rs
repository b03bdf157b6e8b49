//! Batch I/O: how the group-commit leader writes one batch.
//!
//! [`BatchWriter::write_batch`] takes what is queued from the last written
//! position (at most one batch and never past a segment's end; the queue
//! holds every record reserved, `append.rs`), seals the records (their CRCs),
//! stages them into one buffer at their file offset, and writes it as one
//! durable write on the leader's own thread
//! ([`AsyncIo::durable_write_at_blocking`]: `pwritev2` with `RWF_DSYNC`,
//! one system call where a write and an fdatasync take two, and on a
//! device with FUA one device write where they take a write and a cache
//! flush; the leader would only wait for an I/O thread's answer). Only
//! one leader runs at a time, so the cursor below is its alone; the
//! previous batch's buffer is kept for the next (no fresh megabyte, and no
//! page faults on it, per batch).
//!
//! A durable write makes only its own bytes durable, so the rule it rests
//! on is that **every earlier write to a segment is durable before the
//! segment's first batch**: a segment is prepared (zero-filled, its header
//! written) and fsynced before it is used (`segment.rs`); the repairs at
//! open (clearing past the end of the log, rewriting it) fdatasync what
//! they write before the writer starts; and every batch is itself a
//! durable write.
//!
//! With O_DIRECT a write starts at a block boundary: the partial block at
//! the written end is rewritten with the bytes it already had, and the
//! write is zero-padded to a whole block. Those bytes stay where the last
//! write left them, in its buffer ([`Tail`]): a batch that starts in the
//! block the last one ended in reuses that buffer as it is, its old bytes
//! at its start and its zeroes after them, and copies only its records in;
//! a commit path with nothing to copy but its own records keeps the
//! committer's caches for its records (the writer's thread slept in the
//! last write).
//!
//! A failed batch returns its error and changes nothing: its bytes may or
//! may not be durable, so the caller poisons the log (invariant 7) and
//! nothing here retries it. Its records left the queue with it, so the
//! writer cannot go on either: every later call returns
//! [`WalError::Poisoned`] naming the log and the first failure, never an
//! `Ok` that a caller could take for a durable end (invariant 16).

use std::sync::Arc;

use keel_io::{AsyncIo, FileHandle, FileRef, IoBuf, IoError, OpKind};
use parking_lot::Mutex;

use crate::types::Lsn;
use crate::wal::WalError;
use crate::wal::append::{Chunk, LogBuffer};
use crate::wal::record::{RECORD_HEADER_SIZE, seal};
use crate::wal::segment::{Geometry, SEGMENT_HEADER_SIZE, SegmentDir};
use crate::wal::writer::WriterStats;

/// Alignment of O_DIRECT writes.
const BLOCK: u64 = 4096;

/// Hooks the batch writer needs from the segment manager.
pub(crate) trait SegmentSource: Send + Sync {
    /// Makes sure segment `n` is prepared; returns whether this call had to
    /// prepare it (the background preparer was behind).
    fn ensure_prepared(&self, n: u64) -> Result<bool, WalError>;
    /// The writer started using segment `n`: prepare `n + 1` in the background.
    fn entered(&self, n: u64);
}

/// Where the bytes of the partial block at the written end are (O_DIRECT
/// rewrites that block): `written_end % BLOCK` of them.
///
/// A failed write leaves the tail as it was and takes the `spare` buffer
/// with it. No batch is staged after a failed one: the writer refuses
/// every call after a failure ([`WriterCursor::failed`]; the group commit,
/// poisoned, makes none either, invariant 7). Should one be staged all the
/// same, an `InSpare` tail without its buffer is refused, never rewritten
/// from other bytes.
enum Tail {
    /// In this vector: the block as the open read it.
    Owned(Vec<u8>),
    /// In the cursor's `spare` buffer from `at` (a block boundary of the
    /// buffer); every byte after them up to the buffer's length is zero
    /// (the last write's padding).
    InSpare { at: usize },
}

/// Where the log is written up to: the leader's alone.
struct WriterCursor {
    written_end: Lsn,
    tail: Tail,
    open: Option<(u64, FileHandle)>,
    /// The previous batch's write buffer, returned by its write.
    spare: Option<IoBuf>,
    /// The previous batch's list of chunks, emptied, for the next batch.
    chunk_list: Vec<Chunk>,
    /// What made a batch fail, once one has: its records left the queue
    /// and the written end stays before them, so no later batch can
    /// continue the log.
    failed: Option<String>,
}

/// Writes batches into the segment files.
pub(crate) struct BatchWriter {
    io: Arc<dyn AsyncIo>,
    dir: Arc<SegmentDir>,
    segments: Arc<dyn SegmentSource>,
    geometry: Geometry,
    direct: bool,
    cursor: Mutex<WriterCursor>,
    /// The I/O counters of [`WriterStats`] (the others are zero here).
    stats: Mutex<WriterStats>,
}

impl BatchWriter {
    /// A writer that continues the log at `end`. `tail` is the content of
    /// the block holding `end` up to `end` (needed with O_DIRECT).
    pub(crate) fn new(
        io: Arc<dyn AsyncIo>,
        dir: Arc<SegmentDir>,
        segments: Arc<dyn SegmentSource>,
        geometry: Geometry,
        direct: bool,
        end: Lsn,
        tail: Vec<u8>,
    ) -> BatchWriter {
        BatchWriter {
            io,
            dir,
            segments,
            geometry,
            direct,
            cursor: Mutex::new(WriterCursor {
                written_end: end,
                tail: Tail::Owned(tail),
                open: None,
                spare: None,
                chunk_list: Vec::new(),
                failed: None,
            }),
            stats: Mutex::new(WriterStats::default()),
        }
    }

    /// Writes durably what is queued in `buffer` from the written end,
    /// at most one batch and one segment. Returns the new durable end.
    /// After a batch failed, every call fails: [`WalError::Poisoned`]
    /// naming the log and that failure.
    pub(crate) fn write_batch(&self, buffer: &LogBuffer) -> Result<Lsn, WalError> {
        let mut cur = self.cursor.lock();
        if let Some(first) = &cur.failed {
            return Err(self.earlier_batch_failed(&cur, first));
        }
        let result = self.write_next(&mut cur, buffer);
        if let Err(e) = &result {
            cur.failed = Some(with_sources(e));
        }
        result
    }

    /// [`write_batch`](Self::write_batch) of a writer that has not failed.
    fn write_next(&self, cur: &mut WriterCursor, buffer: &LogBuffer) -> Result<Lsn, WalError> {
        let start = self.geometry.record_position(cur.written_end);
        let mut chunks = buffer.take_contiguous(start, std::mem::take(&mut cur.chunk_list));
        if chunks.is_empty() {
            cur.chunk_list = chunks;
            return Ok(cur.written_end);
        }
        for chunk in &mut chunks {
            // Padding too short for a header is zeroes, with nothing to seal.
            chunk.for_each_piece(|r| {
                if r.len() >= RECORD_HEADER_SIZE {
                    seal(r, start);
                }
            });
        }
        let batch: usize = chunks.iter().map(Chunk::len).sum();
        let fh = self.segment_handle(cur, self.geometry.segment_of(start))?;
        let (offset, buf) = self.stage(cur, start, &chunks)?;
        let write_len = buf.len() as u64;
        let end = Lsn(start.0 + batch as u64);
        // Where the records end in the staged buffer (after the partial
        // block's old bytes, with O_DIRECT).
        let staged_end = (self.geometry.offset_in_segment(start) - offset) as usize + batch;
        let record_count = chunks.iter().map(Chunk::pieces).sum::<usize>() as u64;
        cur.chunk_list = buffer.recycle(chunks);
        let buf = self
            .io
            .durable_write_at_blocking(fh, offset, buf)
            .map_err(WalError::io("write a batch durably"))?;
        // With O_DIRECT the next batch rewrites the block holding `end`:
        // its bytes (at most one block) stay in the written buffer, which
        // the write does not change, followed by the padding's zeroes.
        if self.direct {
            let keep = (end.0 % BLOCK) as usize;
            cur.tail = Tail::InSpare {
                at: staged_end - keep,
            };
        }
        cur.spare = Some(buf);
        cur.written_end = end;
        buffer.release(batch);
        let mut stats = self.stats.lock();
        stats.flushes += 1;
        stats.bytes_written += write_len;
        stats.flushed_records += record_count;
        Ok(end)
    }

    fn segment_handle(&self, cur: &mut WriterCursor, seg: u64) -> Result<FileHandle, WalError> {
        if let Some((n, fh)) = cur.open
            && n == seg
        {
            return Ok(fh);
        }
        if self.segments.ensure_prepared(seg)? {
            self.stats.lock().inline_prepares += 1;
        }
        let fh = self.dir.open_segment(seg)?;
        if let Some((_, old)) = cur.open.replace((seg, fh)) {
            let _ = self.io.close(old).wait();
        }
        self.segments.entered(seg);
        Ok(fh)
    }

    /// Builds the write: the records at their file offset; with O_DIRECT,
    /// from the start of the block (the partial block is rewritten with the
    /// same bytes it had) and zero-padded to a block.
    fn stage(
        &self,
        cur: &mut WriterCursor,
        start: Lsn,
        chunks: &[Chunk],
    ) -> Result<(u64, IoBuf), WalError> {
        let file_off = self.geometry.offset_in_segment(start);
        let batch: usize = chunks.iter().map(Chunk::len).sum();
        let spare = cur.spare.take();
        if !self.direct {
            let mut buf = spare.map(IoBuf::into_vec).unwrap_or_default();
            buf.clear();
            buf.reserve(batch);
            for c in chunks {
                buf.extend_from_slice(c.bytes());
            }
            return Ok((file_off, IoBuf::from(buf)));
        }
        let block_off = file_off - file_off % BLOCK;
        let tail_len = (file_off - block_off) as usize;
        let len = (tail_len + batch).next_multiple_of(BLOCK as usize);
        // Every byte up to `len` is set below: the partial block's old
        // bytes at the start, the records, then zeroes for the padding
        // (the buffer's earlier batch is never written again).
        let (mut buf, zero_to) = match &cur.tail {
            Tail::Owned(tail) => {
                debug_assert_eq!(tail.len(), tail_len, "O_DIRECT tail out of step");
                let mut buf = spare
                    .filter(IoBuf::is_aligned)
                    .unwrap_or_else(|| IoBuf::aligned(0));
                buf.set_len_for_overwrite(len);
                buf[..tail_len].copy_from_slice(tail);
                (buf, 0)
            }
            &Tail::InSpare { at } => {
                // The last write's buffer comes back with every write that
                // succeeds; the bytes are only in it.
                let Some(old) = spare else {
                    return Err(self.earlier_batch_failed(cur, "its buffer is gone"));
                };
                debug_assert!(at + tail_len <= old.len(), "O_DIRECT tail out of step");
                if old.capacity() < len {
                    let mut bigger = IoBuf::aligned(len.max(2 * old.capacity()));
                    bigger[..tail_len].copy_from_slice(&old[at..at + tail_len]);
                    let zero_to = bigger.len();
                    (bigger, zero_to)
                } else if at == 0 {
                    // The block the last write ended in: its bytes are at
                    // the buffer's start already, zeroes after them.
                    let zero_to = old.len();
                    (old, zero_to)
                } else {
                    let mut buf = old;
                    buf.copy_within(at..at + tail_len, 0);
                    (buf, 0)
                }
            }
        };
        buf.set_len_for_overwrite(len);
        let mut at = tail_len;
        for c in chunks {
            buf[at..at + c.len()].copy_from_slice(c.bytes());
            at += c.len();
        }
        // Zeroes are there already from `tail_len` (so from `at`) up to
        // `zero_to`.
        let fill_from = at.max(zero_to.min(len));
        buf[fill_from..].fill(0);
        Ok((block_off, buf))
    }

    /// The error of every call after a batch failed with `first`: the log
    /// is poisoned, and the error names the segment it was writing (or the
    /// WAL directory) and that failure.
    fn earlier_batch_failed(&self, cur: &WriterCursor, first: &str) -> WalError {
        let file = match cur.open {
            Some((n, _)) => FileRef::path(&self.dir.segment_path(n)),
            None => FileRef::path(self.dir.path()),
        };
        let source = IoError::from_os(
            OpKind::DurableWrite,
            file,
            std::io::Error::other(format!(
                "the log is poisoned: an earlier batch failed ({first})"
            )),
        );
        WalError::Poisoned {
            cause: Arc::new(WalError::Io {
                op: "write a batch durably",
                source,
            }),
        }
    }

    /// The I/O counters.
    pub(crate) fn stats(&self) -> WriterStats {
        *self.stats.lock()
    }

    /// Closes the open segment handle.
    pub(crate) fn close(&self) {
        if let Some((_, fh)) = self.cursor.lock().open.take() {
            let _ = self.io.close(fh).wait();
        }
    }
}

/// `e` and each of its sources, joined by ": ".
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        text = format!("{text}: {s}");
        next = s.source();
    }
    text
}

/// Headers are skipped by [`Geometry::record_position`]; records never
/// start inside one.
const _: () = assert!((SEGMENT_HEADER_SIZE as u64).is_multiple_of(BLOCK));

#[cfg(test)]
mod tests {
    use std::path::Path;

    use keel_io::sim::{Fault, FaultRule, SimConfig, SimIo};

    use super::*;
    use crate::wal::record::{RecordMeta, RecordType, encoded_len};
    use crate::wal::segment::SegmentHeader;

    const SEGMENT: u64 = 1 << 20;
    const BATCH: usize = 64 << 10;

    /// Prepares each segment when the writer first needs it.
    struct Prepare(Arc<SegmentDir>);

    impl SegmentSource for Prepare {
        fn ensure_prepared(&self, n: u64) -> Result<bool, WalError> {
            let header = SegmentHeader {
                segment_no: n,
                segment_size: SEGMENT as u32,
                database_id: 7,
                max_batch_bytes: BATCH as u32,
            };
            self.0.prepare(&header, None).map(|()| true)
        }

        fn entered(&self, _: u64) {}
    }

    fn append(log: &LogBuffer, payload_len: usize, fill: u8) {
        let mut record = vec![fill; encoded_len(payload_len)];
        log.place(&RecordMeta::new(RecordType::Padding), &mut record);
    }

    /// The first `len` bytes of segment 0.
    fn read(io: &SimIo, dir: &SegmentDir, len: usize) -> Vec<u8> {
        dir.with_segment(0, false, |fh| {
            let (buf, n) = io
                .read_at(fh, 0, IoBuf::zeroed(len))
                .wait()
                .map_err(WalError::io("read"))?;
            Ok(buf[..n].to_vec())
        })
        .unwrap()
    }

    /// After a failed write every later call fails, with or without
    /// O_DIRECT: the failed batch's records left the queue, so the writer
    /// can never again return an end a caller could take as durable. A
    /// caller that ignores the poison and appends more records gets the
    /// same error (those records do not start at the written end, where
    /// the queue's contiguity check would otherwise stop the batch), and
    /// nothing is written: not over the partial block whose bytes went
    /// with the failed write's buffer ([`Tail`]), not anywhere else.
    #[test]
    fn after_a_failed_write_every_call_fails_and_nothing_more_is_written() {
        for direct in [true, false] {
            let io = Arc::new(SimIo::new(SimConfig::seeded(3)));
            let dir = Arc::new(SegmentDir::open(io.clone(), Path::new("/w"), direct).unwrap());
            let geometry = Geometry {
                segment_size: SEGMENT,
            };
            let start = Lsn(SEGMENT_HEADER_SIZE as u64);
            let log = LogBuffer::new(geometry, BATCH, 256 << 10, start);
            let source = Arc::new(Prepare(dir.clone()));
            let writer = BatchWriter::new(
                io.clone(),
                dir.clone(),
                source,
                geometry,
                direct,
                start,
                vec![],
            );

            append(&log, 100, 0xAA);
            let end = writer.write_batch(&log).unwrap();
            assert!(
                !end.0.is_multiple_of(BLOCK),
                "the batch ends inside a block"
            );
            let first = read(&io, &dir, end.0 as usize);
            assert!(first[start.0 as usize..].ends_with(&[0xAA; 100]));

            append(&log, 200, 0xBB);
            io.add_fault(FaultRule::always(Fault::Eio).on_op(OpKind::DurableWrite));
            let failed = writer.write_batch(&log).unwrap_err();
            assert!(matches!(failed, WalError::Io { .. }), "{failed}");
            io.clear_faults();

            let ops = io.op_count();
            for more in [false, true] {
                if more {
                    append(&log, 300, 0xCC);
                }
                let e = writer.write_batch(&log).unwrap_err();
                let WalError::Poisoned { cause } = &e else {
                    panic!("direct {direct}, more {more}: {e}");
                };
                let shown = with_sources(&**cause);
                assert!(
                    shown.contains("/w/0000000000000000.wal")
                        && shown.contains("an earlier batch failed"),
                    "direct {direct}, more {more}: {shown}"
                );
                assert_eq!(io.op_count(), ops, "no I/O after the failed write");
            }
            assert_eq!(
                read(&io, &dir, end.0 as usize),
                first,
                "the first batch's records are untouched"
            );
        }
    }
}
