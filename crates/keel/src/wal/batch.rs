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
//! A failed write returns its error and changes nothing: its bytes may or
//! may not be durable, so the caller poisons the log (invariant 7) and
//! nothing here retries it.

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
enum Tail {
    /// In this vector: the block as the open read it.
    Owned(Vec<u8>),
    /// In the cursor's `spare` buffer from `at` (a block boundary of the
    /// buffer); every byte after them up to the buffer's length is zero
    /// (the last write's padding).
    InSpare { at: usize },
    /// Gone with the buffer of a write that failed: the log is poisoned
    /// then (invariant 7) and writes nothing more.
    Lost,
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
            }),
            stats: Mutex::new(WriterStats::default()),
        }
    }

    /// Writes durably what is queued in `buffer` from the written end,
    /// at most one batch and one segment. Returns the new durable end.
    pub(crate) fn write_batch(&self, buffer: &LogBuffer) -> Result<Lsn, WalError> {
        let mut cur = self.cursor.lock();
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
        let fh = self.segment_handle(&mut cur, self.geometry.segment_of(start))?;
        let (offset, buf) = self.stage(&mut cur, start, &chunks)?;
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
        // Until the write returns the buffer, the bytes are only in it.
        let (mut buf, zero_to) = match std::mem::replace(&mut cur.tail, Tail::Lost) {
            Tail::Lost => return Err(self.earlier_write_failed(cur)),
            Tail::Owned(tail) => {
                debug_assert_eq!(tail.len(), tail_len, "O_DIRECT tail out of step");
                let mut buf = spare
                    .filter(IoBuf::is_aligned)
                    .unwrap_or_else(|| IoBuf::aligned(0));
                buf.set_len_for_overwrite(len);
                buf[..tail_len].copy_from_slice(&tail);
                (buf, 0)
            }
            Tail::InSpare { at } => {
                // The last write's buffer comes back with every write that
                // succeeds.
                let Some(old) = spare else {
                    return Err(self.earlier_write_failed(cur));
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

    /// The error of a batch after one whose write failed (the log is
    /// poisoned then, and the group commit starts no more batches): the
    /// partial block's bytes went with the failed write's buffer, so
    /// nothing is written.
    fn earlier_write_failed(&self, cur: &WriterCursor) -> WalError {
        let file = match cur.open {
            Some((_, fh)) => FileRef::handle(fh),
            None => FileRef::path(self.dir.path()),
        };
        let source = IoError::from_os(
            OpKind::DurableWrite,
            file,
            std::io::Error::other("an earlier batch's write failed"),
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

/// Headers are skipped by [`Geometry::record_position`]; records never
/// start inside one.
const _: () = assert!((SEGMENT_HEADER_SIZE as u64).is_multiple_of(BLOCK));
