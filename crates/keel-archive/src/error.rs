//! The archive's one error type.
//!
//! Every variant names the object (its path under the archive prefix) or the
//! setting it is about, and where in the object a problem lies, so an
//! operator can find it. No variant carries a credential: store errors keep
//! `object_store`'s error as their source, and those describe requests
//! (method, path, status), never their signing keys.
//!
//! [`ArchiveError::is_transient`] classifies: a transient error (the store
//! unreachable, a request timed out) is retried; anything else stops the
//! archiver, because retrying cannot change the answer (a tampered chunk,
//! another writer on the prefix, another database's archive).

use std::fmt;
use std::time::Duration;

use keel::types::Lsn;

/// Where in an object a decoding problem lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A byte offset in the stored object (the chunk header, or the
    /// compressed body as a whole).
    Object(u64),
    /// A byte offset in the decompressed body, with the LSN the record
    /// there should have.
    Body {
        /// Offset in the decompressed body.
        offset: u64,
        /// The LSN expected at that offset.
        lsn: Lsn,
    },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Object(off) => write!(f, "object offset {off}"),
            Place::Body { offset, lsn } => {
                write!(f, "decompressed body offset {offset} (LSN {lsn})")
            }
        }
    }
}

/// An archive error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The object store refused or failed a request.
    #[error("object store: {op} {object}: {source}")]
    Store {
        /// The operation (put, get, list).
        op: &'static str,
        /// The object or prefix.
        object: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A request did not finish in time.
    #[error("object store: {op} {object} timed out after {after:?}")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The object or prefix.
        object: String,
        /// The limit it exceeded.
        after: Duration,
    },
    /// A chunk's bytes are not a valid chunk.
    #[error("{object}: corrupt at {place}: {reason}")]
    Corrupt {
        /// The object.
        object: String,
        /// Where.
        place: Place,
        /// What is wrong.
        reason: String,
    },
    /// A chunk's header or body does not match its CRC32C.
    #[error(
        "{object}: {what} checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    ChecksumMismatch {
        /// The object.
        object: String,
        /// "header" or "body".
        what: &'static str,
        /// The CRC the header stores.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// A chunk (or the archive) belongs to another database.
    #[error("{object}: belongs to database {found:#018x}, not {expected:#018x}")]
    WrongDatabase {
        /// The object.
        object: String,
        /// The database archiving or reading.
        expected: u64,
        /// The database the chunk names.
        found: u64,
    },
    /// A chunk does not start where the previous one ended.
    #[error("{object}: starts at LSN {found}, but the archive continues at LSN {expected}")]
    Discontinuity {
        /// The object.
        object: String,
        /// Where the previous chunk ended.
        expected: Lsn,
        /// Where this one starts.
        found: Lsn,
    },
    /// Two objects of a timeline claim the same log and do not agree (two
    /// compacted objects whose ranges overlap, or a leftover chunk that
    /// differs from the compacted object covering it).
    #[error("{first} and {second} disagree: {reason}")]
    Overlap {
        /// One object.
        first: String,
        /// The other.
        second: String,
        /// How they disagree.
        reason: String,
    },
    /// A create-only upload found a different object under the chunk's
    /// name: another writer archives to the same prefix.
    #[error(
        "{object} already exists with other contents: another writer archives to this \
         prefix (two primaries, or a copied data directory); archiving stopped, nothing \
         was overwritten"
    )]
    SplitBrain {
        /// The object.
        object: String,
    },
    /// The archive goes further than this database's log: it holds another
    /// history.
    #[error(
        "the archive under {prefix} ends at LSN {archive_end}, past this database's durable \
         log end {durable}: it holds another history"
    )]
    AheadOfLog {
        /// The archive prefix.
        prefix: String,
        /// Where the archive ends.
        archive_end: Lsn,
        /// Where the log ends.
        durable: Lsn,
    },
    /// Reading the log failed (a retired segment, a damaged record).
    #[error("reading the log from LSN {from}: {source}")]
    Log {
        /// Where reading started.
        from: Lsn,
        /// The engine's error.
        #[source]
        source: Box<keel::Error>,
    },
    /// The log's next record does not follow the archive's end (a start
    /// LSN that is not a record boundary).
    #[error(
        "the log's next record is at LSN {record}, which does not follow the archive's end at LSN {archive_end}"
    )]
    LogGap {
        /// Where the archive ends.
        archive_end: Lsn,
        /// The record read next.
        record: Lsn,
    },
    /// The engine failed while taking a backup or opening a restored
    /// database.
    #[error(transparent)]
    Backup(Box<keel::Error>),
    /// A complete backup cannot be restored from: the log between its
    /// start and end LSN is not all in the archive.
    #[error("backup {backup}: {reason}")]
    BackupLogMissing {
        /// The backup's folder.
        backup: String,
        /// Where the log stops or breaks.
        reason: String,
    },
    /// A standby or a promotion cannot go on (a directory that is not a
    /// standby, another timeline, a promotion already made); the reason
    /// says which.
    #[error("standby: {0}")]
    Standby(String),
    /// The archiver's timeline was promoted away: a standby that followed
    /// it became a primary on `successor`, so this database is no longer
    /// the primary and archiving stopped (nothing was overwritten).
    #[error(
        "{object}: timeline {timeline} was promoted to timeline {successor} at LSN {switch} \
         (a standby took over as primary): this database is fenced off, archiving stopped"
    )]
    Fenced {
        /// The fence object.
        object: String,
        /// The timeline fenced off (the archiver's).
        timeline: u32,
        /// The promoted standby's timeline.
        successor: u32,
        /// Where the promoted standby's timeline branched.
        switch: Lsn,
    },
    /// A restore cannot go on (no backup, an archive that ends too early, a
    /// target directory in use); the reason says which.
    #[error("restore: {0}")]
    Restore(String),
    /// The archiver stopped on this error.
    #[error("archiving stopped: {0}")]
    Failed(std::sync::Arc<ArchiveError>),
    /// A setting is invalid.
    #[error("invalid archive setting: {0}")]
    Config(String),
    /// A credentials file is unusable. The reason never quotes the file.
    #[error("credentials file {path}: {reason}")]
    Credentials {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The archiver's status file could not be written or read.
    #[error("archive status file {path}: {op}: {source}")]
    StatusIo {
        /// The file.
        path: std::path::PathBuf,
        /// What was being done.
        op: &'static str,
        /// The failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The archiver's status file holds something else than its format.
    #[error("archive status file {path}: line {line}: {reason}")]
    StatusFormat {
        /// The file.
        path: std::path::PathBuf,
        /// The line (1-based).
        line: usize,
        /// What is wrong there.
        reason: String,
    },
    /// `wait_archived` gave up.
    #[error("LSN {lsn} not archived within {after:?} (archived up to LSN {archived})")]
    WaitTimeout {
        /// The LSN waited for.
        lsn: Lsn,
        /// How far the archive got.
        archived: Lsn,
        /// How long it waited.
        after: Duration,
    },
    /// The archiver stopped (after an error, or by request) before reaching
    /// what was asked.
    #[error("the archiver stopped at LSN {archived}")]
    Stopped {
        /// How far the archive got.
        archived: Lsn,
    },
}

impl From<keel::Error> for ArchiveError {
    fn from(e: keel::Error) -> ArchiveError {
        ArchiveError::Backup(Box::new(e))
    }
}

impl ArchiveError {
    /// Whether retrying the same request may succeed: the store was
    /// unreachable or slow. Everything else (corruption, another writer,
    /// another database, a bad setting) is final.
    pub fn is_transient(&self) -> bool {
        match self {
            ArchiveError::Timeout { .. } => true,
            ArchiveError::Store { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::AlreadyExists { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ),
            _ => false,
        }
    }
}

/// The archive's result type.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;
