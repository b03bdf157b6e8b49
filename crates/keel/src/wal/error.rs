//! The write-ahead log's errors.

use std::path::PathBuf;
use std::sync::Arc;

use keel_io::IoError;
use thiserror::Error;

use crate::error::class::ErrorClass;
use crate::types::Lsn;

/// Errors of the write-ahead log (`wal/`).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WalError {
    /// The bytes at `lsn` are not a valid record (checksum, length, stale
    /// LSN, unknown type). The reader decides whether this ends the log (a
    /// torn tail) or is corruption (invariant 10).
    #[error("WAL record at {lsn}: {reason}")]
    BadRecord {
        /// Position of the record.
        lsn: Lsn,
        /// What was wrong.
        reason: String,
    },
    /// A record's payload does not decode as its type requires.
    #[error("WAL record at {lsn} ({kind}): bad payload at byte {offset}: {reason}")]
    BadPayload {
        /// Position of the record.
        lsn: Lsn,
        /// Its type name.
        kind: &'static str,
        /// Offset within the payload.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
    /// A bad record is followed by valid ones: the log is corrupt in the
    /// middle, not torn at its tail (invariant 10).
    #[error("WAL corrupted at {lsn}: {reason}; valid records follow at {next_valid}")]
    Corrupted {
        /// Position of the bad record.
        lsn: Lsn,
        /// What was wrong with it.
        reason: String,
        /// A valid record found after it.
        next_valid: Lsn,
    },
    /// A segment file's header is invalid.
    #[error("WAL segment {segment} ({}): {reason}", path.display())]
    BadSegment {
        /// Segment number.
        segment: u64,
        /// Its file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A segment the log needs is missing.
    #[error("WAL segment {segment} is missing (needed for LSN {lsn})")]
    MissingSegment {
        /// Segment number.
        segment: u64,
        /// The LSN being read.
        lsn: Lsn,
    },
    /// A record is larger than the log accepts: records never span
    /// segments, so none may exceed the data area of the smallest segment
    /// (invariant 15).
    #[error(
        "WAL record of {len} bytes exceeds the maximum of {max} \
         (the data area of a {}-byte segment; records never span segments)",
        crate::wal::segment::MIN_SEGMENT_SIZE
    )]
    RecordTooLarge {
        /// Its size.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A flush was asked for a position the log has not reached: no record
    /// starts there.
    #[error("WAL flush through {lsn} asked for, but the log ends at {end}")]
    FlushBeyondEnd {
        /// The position asked for.
        lsn: Lsn,
        /// Where the next record goes.
        end: Lsn,
    },
    /// An I/O operation on the log failed.
    #[error("WAL {op} failed")]
    Io {
        /// What the log was doing.
        op: &'static str,
        /// The I/O error.
        #[source]
        source: IoError,
    },
    /// An earlier write or fsync failed; the log accepts nothing more until
    /// the database is reopened and recovered (invariant 7).
    #[error("WAL is poisoned by an earlier failure; reopen the database to recover")]
    Poisoned {
        /// The failure that poisoned it.
        #[source]
        cause: Arc<WalError>,
    },
    /// The group-commit leader panicked while writing a batch: the
    /// batch's bytes may or may not be durable, so the log is poisoned
    /// with this as its cause (invariant 7).
    #[error("WAL group-commit leader panicked while writing a batch")]
    LeaderPanicked,
    /// The log is shut down.
    #[error("WAL is closed")]
    Closed,
    /// A configuration value is invalid.
    #[error("invalid WAL configuration: {0}")]
    Config(String),
}

impl WalError {
    /// Wraps an I/O error of the log doing `op`, for `map_err`.
    pub fn io(op: &'static str) -> impl FnOnce(IoError) -> WalError {
        move |source| WalError::Io { op, source }
    }

    /// Classifies the error for the caller.
    pub fn class(&self) -> ErrorClass {
        match self {
            WalError::BadRecord { .. }
            | WalError::BadPayload { .. }
            | WalError::Corrupted { .. }
            | WalError::BadSegment { .. }
            | WalError::MissingSegment { .. } => ErrorClass::Corruption,
            WalError::RecordTooLarge { .. }
            | WalError::FlushBeyondEnd { .. }
            | WalError::Config(_)
            | WalError::Closed => ErrorClass::Usage,
            WalError::Io { .. } | WalError::Poisoned { .. } | WalError::LeaderPanicked => {
                ErrorClass::Fatal
            }
        }
    }
}
