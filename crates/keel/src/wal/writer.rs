//! The log writer: the [`LogBuffer`] (append and reserve, `append.rs`),
//! the [`GroupCommit`] protocol (`group/`) and the [`BatchWriter`]
//! (batch I/O, `batch.rs`) joined behind three verbs, one per reason a
//! record is made durable:
//!
//! - [`LogWriter::wait_durable`]: a caller waits until its record is
//!   durable (a commit, the buffer pool before writing a page), sharing
//!   one sync with every concurrent caller (invariant 6);
//! - `write_batch` (the batch writer's): the group's leader writes and
//!   syncs one batch; only the protocol calls it;
//! - [`LogWriter::push_all`]: nobody waits for a particular record, but
//!   everything appended so far should reach the disk (the background
//!   thread's interval and size policies, an appender that finds the
//!   buffer full, a clean close).
//!
//! A failure poisons the log (invariant 7): appends and waits fail from
//! then on. Its state lives in [`GroupCommit`] only.

use std::sync::Arc;

use keel_io::AsyncIo;

use crate::types::Lsn;
use crate::wal::WalError;
use crate::wal::append::{Appended, LogBuffer, with_record_buf};
use crate::wal::batch::{BatchWriter, SegmentSource};
use crate::wal::config::WalConfig;
use crate::wal::group::{CONTINUE_LIMIT, GroupCommit};
use crate::wal::record::{RECORD_HEADER_SIZE, RecordMeta};
use crate::wal::segment::{Geometry, SegmentDir};

/// Counters of the writer, for `keel stats` and the benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records appended (padding excluded).
    pub records: u64,
    /// Bytes appended, headers and padding included.
    pub bytes: u64,
    /// Batches written and synced.
    pub flushes: u64,
    /// Bytes written by batches (including rewritten partial blocks).
    pub bytes_written: u64,
    /// Segments the writer had to prepare itself because the background
    /// preparer was behind (a commit waited on file creation).
    pub inline_prepares: u64,
    /// Record frames written by batches (padding included):
    /// `flushed_records / flushes` is the average group-commit batch.
    pub flushed_records: u64,
    /// Batches a leader wrote for other committers after its own record
    /// was durable (pipelined: no hand-over before the next batch).
    pub continued_flushes: u64,
    /// Times a leader handed the lead over to the parked committers.
    pub handoffs: u64,
}

/// The log buffer, group commit and batch I/O of one log.
pub(crate) struct LogWriter {
    buffer: LogBuffer,
    group: GroupCommit,
    batch: BatchWriter,
}

impl LogWriter {
    /// A writer that continues the log at `end` (the position after the
    /// last valid record). `tail` is the content of the block holding `end`
    /// up to `end` (needed with O_DIRECT).
    pub(crate) fn new(
        io: Arc<dyn AsyncIo>,
        dir: Arc<SegmentDir>,
        segments: Arc<dyn SegmentSource>,
        geometry: Geometry,
        config: &WalConfig,
        end: Lsn,
        tail: Vec<u8>,
    ) -> LogWriter {
        let max_batch = config.max_batch_bytes as usize;
        LogWriter {
            buffer: LogBuffer::new(geometry, max_batch, config.buffer_capacity_bytes, end),
            group: GroupCommit::new(end, config.commit_spin_yields, CONTINUE_LIMIT),
            batch: BatchWriter::new(io, dir, segments, geometry, config.direct_io, end, tail),
        }
    }

    /// Appends a record; returns where it went. It is not durable until a
    /// batch covers it.
    pub(crate) fn append(&self, meta: &RecordMeta, payload: &[u8]) -> Result<Appended, WalError> {
        let len = RECORD_HEADER_SIZE + payload.len();
        LogBuffer::check_len(len)?;
        with_record_buf(|record| {
            record.resize(RECORD_HEADER_SIZE, 0);
            record.extend_from_slice(payload);
            self.append_record(meta, record)
        })
    }

    /// Appends a record whose payload `record` already holds behind
    /// [`RECORD_HEADER_SIZE`] bytes of header space (filled in here).
    pub(crate) fn append_record(
        &self,
        meta: &RecordMeta,
        record: &mut [u8],
    ) -> Result<Appended, WalError> {
        self.admit(record.len())?;
        Ok(self.buffer.place(meta, record))
    }

    /// Refuses a record of `len` bytes the log does not take (too large,
    /// or the log poisoned) and waits for room for it in the queue.
    fn admit(&self, len: usize) -> Result<(), WalError> {
        LogBuffer::check_len(len)?;
        if self.group.is_poisoned() {
            return Err(self.group.poison_error());
        }
        // Drain by pushing what is there; a leader may already be doing it.
        while !self.buffer.has_room(len) {
            self.push_all()?;
        }
        Ok(())
    }

    /// Returns once every record up to and including the one at `lsn` is
    /// durable (group commit: concurrent callers share one sync).
    pub(crate) fn wait_durable(&self, lsn: Lsn) -> Result<(), WalError> {
        if self.group.durable_end() <= lsn && !self.group.is_poisoned() {
            // No record starts at or past the reserved end: a leader asked
            // to write through it would wait for bytes nobody will append.
            let end = self.buffer.reserved_end();
            if lsn >= end {
                return Err(WalError::FlushBeyondEnd { lsn, end });
            }
        }
        self.group
            .wait_durable(lsn, |_through| self.batch.write_batch(&self.buffer))
    }

    /// Makes everything reserved so far durable.
    pub(crate) fn push_all(&self) -> Result<(), WalError> {
        let end = self.buffer.reserved_end();
        if end > self.group.durable_end() {
            self.wait_durable(Lsn(end.0 - 1))?;
        }
        Ok(())
    }

    /// Position after the last reserved record.
    pub(crate) fn reserved_end(&self) -> Lsn {
        self.buffer.reserved_end()
    }

    /// Position up to which the log is durable.
    pub(crate) fn durable_end(&self) -> Lsn {
        self.group.durable_end()
    }

    /// Poisons the log with a failure outside a batch (a segment
    /// preparation); a poison already there stays the cause.
    pub(crate) fn poison(&self, error: WalError) {
        self.group.poison(error);
    }

    /// Whether an earlier failure poisoned the log.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.group.is_poisoned()
    }

    /// The refusal of a poisoned log ([`WalError::Closed`] while healthy).
    pub(crate) fn poison_error(&self) -> WalError {
        self.group.poison_error()
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> WriterStats {
        let (records, bytes) = self.buffer.counts();
        let group = self.group.stats();
        WriterStats {
            records,
            bytes,
            continued_flushes: group.continued,
            handoffs: group.handoffs,
            ..self.batch.stats()
        }
    }

    /// Closes the open segment handle.
    pub(crate) fn close(&self) {
        self.batch.close();
    }
}
