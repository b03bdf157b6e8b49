//! Error types, one `#[non_exhaustive]` enum per layer.
//!
//! Rules (STYLE.md §5):
//! - corruption is its own variant and always says *where* (page id, offset,
//!   LSN) and *what* was wrong, so `keel check` and users can act on it;
//! - an `io::Error` is never flattened into a string: it stays the `source()`;
//! - callers never match on message text: [`ErrorClass`] tells them whether an
//!   error is the caller's mistake, transient, corruption, or fatal.
//!
//! Layers add their enums here as they are built; the top-level [`Error`](enum@Error)
//! wraps them so the public API returns one type.

use thiserror::Error;

use std::path::PathBuf;
use std::sync::Arc;

use keel_io::IoError;

use crate::buffer::{FileId, WalFlushError};
use crate::types::{Lsn, PageId, RelationId, SlotId, TupleId, TxnId};

/// How a caller should react to an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request was invalid (bad argument, tuple too large, no such slot).
    /// Nothing was changed; fix the call.
    Usage,
    /// The request could not be done now but may succeed later (page full).
    Transient,
    /// Bytes read from disk failed validation (invariants 2, 9, 10).
    Corruption,
    /// The engine cannot continue safely (I/O failure, poisoned WAL, inv. 7).
    Fatal,
}

/// A text form of an identifier (`TupleId`, `Lsn`, …) did not parse.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("invalid {kind}: {input:?}")]
pub struct ParseIdError {
    /// Which identifier type was being parsed.
    pub kind: &'static str,
    /// The text that was rejected.
    pub input: String,
}

/// Errors of the page layer (`page/`): slotted heap pages, overflow pages.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PageError {
    /// The page's stored CRC32C does not match its contents (invariant 2).
    #[error("page {page_id}: checksum mismatch (stored {expected:#010x}, computed {got:#010x})")]
    ChecksumMismatch {
        /// Page that failed (the id the caller expected to read).
        page_id: PageId,
        /// CRC stored in the header.
        expected: u32,
        /// CRC computed over the bytes read.
        got: u32,
    },
    /// A structural check failed: the bytes are not a valid page.
    #[error("page {page_id}: corrupted at offset {offset}: {reason}")]
    Corrupted {
        /// Page that failed (the id the caller expected to read).
        page_id: PageId,
        /// Byte offset within the page of the offending field.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
    /// The page has no contiguous room for the request. When
    /// `after_compaction >= needed`, compacting the page makes room.
    #[error(
        "does not fit: {needed} bytes needed, {contiguous} contiguous free \
         ({after_compaction} after compaction)"
    )]
    DoesNotFit {
        /// Bytes the operation needs (tuple plus any new slot entry).
        needed: usize,
        /// Contiguous free bytes now.
        contiguous: usize,
        /// Contiguous free bytes the operation could use after compaction.
        after_compaction: usize,
    },
    /// A tuple is larger than any page can hold; store it as an overflow chain.
    #[error("tuple of {len} bytes exceeds the in-page maximum of {max} bytes")]
    TupleTooLarge {
        /// Requested length.
        len: usize,
        /// Largest tuple a single empty page holds.
        max: usize,
    },
    /// The slot number is past the end of the slot directory.
    #[error("no slot {slot} (the page has {slot_count} slots)")]
    NoSuchSlot {
        /// The slot asked for.
        slot: SlotId,
        /// Number of slots in the directory.
        slot_count: u16,
    },
    /// The slot exists but does not hold what the operation needs
    /// (e.g. reading a free slot or updating a forward pointer).
    #[error("slot {slot} is {state}, not a live tuple")]
    SlotNotLive {
        /// The slot asked for.
        slot: SlotId,
        /// Its state, as printed by the page dump.
        state: &'static str,
    },
    /// The page is not of the type the operation works on.
    #[error("page {page_id}: is a {found} page, expected {expected}")]
    WrongPageType {
        /// The page.
        page_id: PageId,
        /// Type the caller needed.
        expected: &'static str,
        /// Type found in the header.
        found: &'static str,
    },
}

impl PageError {
    /// Classifies the error for the caller.
    pub fn class(&self) -> ErrorClass {
        match self {
            PageError::ChecksumMismatch { .. } | PageError::Corrupted { .. } => {
                ErrorClass::Corruption
            }
            PageError::DoesNotFit { .. } => ErrorClass::Transient,
            PageError::TupleTooLarge { .. }
            | PageError::NoSuchSlot { .. }
            | PageError::SlotNotLive { .. }
            | PageError::WrongPageType { .. } => ErrorClass::Usage,
        }
    }
}

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
            WalError::Io { .. } | WalError::Poisoned { .. } => ErrorClass::Fatal,
        }
    }
}

/// Errors of the buffer pool (`buffer/`).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BufferError {
    /// A page read from disk failed verification (checksum, identity or
    /// structure; invariants 2 and 9). It was not returned as data.
    #[error("file {file}, page {page}: page read from disk is corrupt")]
    PageCorrupt {
        /// The file read.
        file: FileId,
        /// The page read.
        page: PageId,
        /// What verification found.
        #[source]
        source: PageError,
    },
    /// The page lies (wholly or partly) past the end of its file.
    #[error("file {file}, page {page}: page is beyond the end of the file")]
    PageBeyondEof {
        /// The file read.
        file: FileId,
        /// The page asked for.
        page: PageId,
    },
    /// Every frame is pinned: no page can be brought in. Release guards (or
    /// configure a larger pool) and retry.
    #[error("all {frames} buffer frames are pinned")]
    AllFramesPinned {
        /// Number of frames in the pool.
        frames: usize,
    },
    /// Reading or writing a page failed.
    #[error("file {file}, page {page}: {op} failed")]
    Io {
        /// "read" or "write".
        op: &'static str,
        /// The file.
        file: FileId,
        /// The page.
        page: PageId,
        /// The I/O error.
        #[source]
        source: IoError,
    },
    /// fdatasync of a data file failed; the pool is poisoned (invariant 7).
    #[error("file {file}: fdatasync failed; the buffer pool is poisoned")]
    Sync {
        /// The file.
        file: FileId,
        /// The I/O error.
        #[source]
        source: IoError,
    },
    /// The WAL could not be made durable through a page's LSN, so the page
    /// was not written (invariant 4).
    #[error("WAL flush through {lsn} failed; the page was not written")]
    WalFlush {
        /// The page LSN the flush was for.
        lsn: Lsn,
        /// The log's error.
        #[source]
        source: WalFlushError,
    },
    /// An fdatasync failed; no page is written any more (inv. 7).
    #[error("the buffer pool is poisoned by a failed fdatasync ({cause})")]
    Poisoned {
        /// The first failure, which poisoned the pool.
        #[source]
        cause: Arc<BufferError>,
    },
    /// The file id was never registered (or was unregistered).
    #[error("file {file} is not registered with the buffer pool")]
    UnknownFile {
        /// The file id.
        file: FileId,
    },
    /// The file id is already registered.
    #[error("file {file} is already registered with the buffer pool")]
    FileRegistered {
        /// The file id.
        file: FileId,
    },
    /// A page of the file is pinned, loading or being written.
    #[error("file {file} has pages in use")]
    FileBusy {
        /// The file id.
        file: FileId,
    },
    /// `new_page` for a page that is already in the pool.
    #[error("file {file}, page {page}: new_page of a page already in the buffer pool")]
    AlreadyCached {
        /// The file.
        file: FileId,
        /// The page.
        page: PageId,
    },
    /// The background writer thread could not be started.
    #[error("cannot start the buffer pool's background writer")]
    WriterThread {
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is invalid.
    #[error("invalid buffer pool configuration: {0}")]
    Config(String),
}

impl BufferError {
    /// Classifies the error for the caller.
    pub fn class(&self) -> ErrorClass {
        match self {
            BufferError::PageCorrupt { .. } => ErrorClass::Corruption,
            BufferError::AllFramesPinned { .. } | BufferError::FileBusy { .. } => {
                ErrorClass::Transient
            }
            BufferError::Io { source, .. } if source.is_transient() => ErrorClass::Transient,
            BufferError::Io { .. }
            | BufferError::Sync { .. }
            | BufferError::WalFlush { .. }
            | BufferError::Poisoned { .. }
            | BufferError::WriterThread { .. } => ErrorClass::Fatal,
            BufferError::PageBeyondEof { .. }
            | BufferError::UnknownFile { .. }
            | BufferError::FileRegistered { .. }
            | BufferError::AlreadyCached { .. }
            | BufferError::Config(_) => ErrorClass::Usage,
        }
    }
}

/// Errors of the database layer (`heap/`, `recovery/`, `db.rs`): relations,
/// tuples, transactions, the control file and the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DbError {
    /// No relation has this name or id.
    #[error("no relation {0}")]
    NoSuchRelation(String),
    /// A relation of this name exists already.
    #[error("relation {0:?} exists already")]
    RelationExists(String),
    /// A relation name is empty, too long, or has control characters.
    #[error("invalid relation name {name:?}: {reason}")]
    BadRelationName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The TupleId names no live tuple of the relation.
    #[error("relation {relation}: no tuple at {tid}")]
    NoSuchTuple {
        /// The relation.
        relation: RelationId,
        /// The address given.
        tid: TupleId,
    },
    /// A page number past the end of a relation.
    #[error("relation {relation} has {pages} pages; there is no page {page}")]
    NoSuchPage {
        /// The relation's name.
        relation: String,
        /// The page asked for.
        page: PageId,
        /// Pages it has.
        pages: u32,
    },
    /// The value is larger than a tuple may be.
    #[error("value of {len} bytes is larger than the {max}-byte limit")]
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The transaction has already committed or rolled back.
    #[error("transaction {0} has already finished")]
    TxnFinished(TxnId),
    /// A file of the database failed validation (control file, catalog,
    /// relation file, a tuple's overflow chain).
    #[error("{what}: corrupt: {reason}")]
    Corrupt {
        /// The file or structure, with where in it.
        what: String,
        /// What validation found.
        reason: String,
    },
    /// Recovery found the log and the pages or files disagreeing (a page
    /// newer than the log, a consistency check that failed, a record of a
    /// relation whose file is gone without a committed drop): corruption,
    /// at the record `lsn`, with a reason that names the page and relation
    /// where there are some. A failure of an operation below recovery (a
    /// read, a write, a record that does not apply) is
    /// [`DbError::RecoveryStep`] instead, which keeps it as its `source()`.
    #[error("recovery failed at {lsn}: {reason}")]
    Recovery {
        /// The record being processed.
        lsn: Lsn,
        /// What went wrong.
        reason: String,
    },
    /// An operation recovery needed failed: reading, creating or writing a
    /// page, applying a record to it, reading the log back, undoing a
    /// loser. Names the record (`lsn`) and, where there is one, its page;
    /// `source()` is the failure itself, which decides the class
    /// ([`DbError::class`]): an I/O error stays fatal, never corruption.
    #[error("recovery failed at {lsn}{}: {doing}", on_page(*relation, *page))]
    RecoveryStep {
        /// The record being processed.
        lsn: Lsn,
        /// The relation the record names, if any.
        relation: Option<RelationId>,
        /// The page the record names, if any.
        page: Option<PageId>,
        /// What recovery was doing, e.g. "reading the page".
        doing: String,
        /// The failure.
        #[source]
        source: ErrorCause,
    },
    /// Rolling back a transaction (an abort, a failed commit, a dropped
    /// transaction, or recovery undoing a loser) failed undoing one of its
    /// changes. A running database is poisoned by it (invariant 16): the
    /// changes not undone stay for recovery. `source()` is the failure,
    /// which decides the class ([`DbError::class`]).
    #[error(
        "transaction {txn}: rollback failed undoing the {undo} at {lsn} \
         on page {page} of relation {relation}"
    )]
    Rollback {
        /// The transaction.
        txn: TxnId,
        /// The record being undone.
        lsn: Lsn,
        /// Its relation.
        relation: RelationId,
        /// Its page.
        page: PageId,
        /// What the record did, e.g. "insert".
        undo: &'static str,
        /// The failure.
        #[source]
        source: ErrorCause,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory is in use by another open database.
    #[error("data directory {0} is in use by another open database")]
    Locked(String),
    /// A lock is held by another transaction and the request was not to
    /// wait (a `try_` operation). Nothing changed; retry later.
    #[error("transaction {txn}: lock not available now")]
    WouldBlock {
        /// The requesting transaction.
        txn: TxnId,
    },
    /// Waiting for the lock would never end (a cycle in the waits-for
    /// graph): this transaction was chosen as the victim and rolled back.
    #[error("transaction {txn}: deadlock; it was rolled back")]
    Deadlock {
        /// The victim.
        txn: TxnId,
    },
    /// The lock was not granted within the configured timeout; the
    /// transaction was rolled back.
    #[error("transaction {txn}: lock wait timed out; it was rolled back")]
    LockTimeout {
        /// The transaction that waited.
        txn: TxnId,
    },
    /// A fatal error poisoned the database (invariants 7 and 16): every
    /// call fails with this error, naming the first fatal error as its
    /// `source()`, until the database is reopened (which runs recovery).
    #[error("the database is poisoned (reopen it to recover) by: {}", .cause.chain())]
    Poisoned {
        /// The first fatal error.
        #[source]
        cause: PoisonCause,
    },
}

/// " on page P of relation R" where a record names a page.
fn on_page(relation: Option<RelationId>, page: Option<PageId>) -> String {
    match (relation, page) {
        (Some(r), Some(p)) => format!(" on page {p} of relation {r}"),
        (Some(r), None) => format!(" in relation {r}"),
        (None, _) => String::new(),
    }
}

/// An [`Error`](enum@Error) kept as the `source()` of another: shared (a clone is a
/// reference), equal only to itself. Transparent in a `source()` chain: it
/// displays as the error, and its `source()` is the error's own; the error
/// itself is [`ErrorCause::error`].
#[derive(Clone, Debug)]
pub struct ErrorCause(Arc<Error>);

/// The first fatal error of a database, shared by every refusal that
/// follows it ([`DbError::Poisoned`]).
pub type PoisonCause = ErrorCause;

impl ErrorCause {
    pub(crate) fn new(error: Error) -> ErrorCause {
        ErrorCause(Arc::new(error))
    }

    /// The error itself.
    pub fn error(&self) -> &Error {
        &self.0
    }

    /// The error and each of its sources, joined by ": ".
    pub fn chain(&self) -> String {
        let mut text = self.0.to_string();
        let mut next = std::error::Error::source(&*self.0);
        while let Some(e) = next {
            text.push_str(": ");
            text.push_str(&e.to_string());
            next = e.source();
        }
        text
    }
}

impl PartialEq for ErrorCause {
    fn eq(&self, other: &ErrorCause) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ErrorCause {}

impl std::fmt::Display for ErrorCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ErrorCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl DbError {
    /// Classifies the error for the caller.
    pub fn class(&self) -> ErrorClass {
        match self {
            DbError::NoSuchRelation(_)
            | DbError::RelationExists(_)
            | DbError::BadRelationName { .. }
            | DbError::NoSuchTuple { .. }
            | DbError::NoSuchPage { .. }
            | DbError::ValueTooLarge { .. }
            | DbError::TxnFinished(_)
            | DbError::Config(_)
            | DbError::Locked(_) => ErrorClass::Usage,
            DbError::WouldBlock { .. } | DbError::Deadlock { .. } | DbError::LockTimeout { .. } => {
                ErrorClass::Transient
            }
            DbError::Corrupt { .. } | DbError::Recovery { .. } => ErrorClass::Corruption,
            DbError::RecoveryStep { source, .. } | DbError::Rollback { source, .. } => {
                class_below(source.error())
            }
            DbError::Poisoned { .. } => ErrorClass::Fatal,
        }
    }
}

/// The class of an error that recovery or a rollback met below it. An
/// I/O failure keeps its class (fatal, or transient); anything else means
/// a page or the log is not what the records say, which is corruption:
/// neither recovery nor a rollback makes a request that a caller could
/// have got wrong, and a page error below them (a record that does not
/// apply, a page that fails verification) is the page disagreeing with
/// the log.
fn class_below(source: &Error) -> ErrorClass {
    match source {
        Error::Page(_) => ErrorClass::Corruption,
        e => match e.class() {
            ErrorClass::Usage => ErrorClass::Corruption,
            class => class,
        },
    }
}

/// The error type of Keel's public API.
///
/// Every error names what failed and where; [`Error::class`] says what the
/// caller can do about it.
///
/// ```
/// use keel::{ErrorClass, TupleId};
///
/// let e = "12.x".parse::<TupleId>().unwrap_err();
/// let e = keel::Error::from(e);
/// assert_eq!(e.class(), ErrorClass::Usage); // fix the call; nothing changed
/// assert!(e.to_string().contains("12.x"));
/// match e.class() {
///     ErrorClass::Usage => { /* a bad argument */ }
///     ErrorClass::Transient => { /* retry: a lock, a full page, a deadlock victim */ }
///     ErrorClass::Corruption => { /* bytes on disk failed validation */ }
///     ErrorClass::Fatal => { /* poisoned: reopen to recover */ }
/// }
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A page-layer error.
    #[error(transparent)]
    Page(#[from] PageError),
    /// An identifier's text form did not parse.
    #[error(transparent)]
    ParseId(#[from] ParseIdError),
    /// A write-ahead log error.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// An I/O error outside the log.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A buffer pool error.
    #[error(transparent)]
    Buffer(#[from] BufferError),
    /// A database-level error (relations, tuples, transactions, recovery).
    #[error(transparent)]
    Db(#[from] DbError),
    /// A checksum implementation could not be selected.
    #[error(transparent)]
    Checksum(#[from] crate::checksum::ChecksumError),
    /// `Database::open` cannot use a path of the data directory (a parent
    /// that is a file, a directory that is not writable, a read-only file
    /// system). Nothing was opened; the operating system's error is the
    /// `source()`.
    #[error("cannot {action} {}", path.display())]
    DataDir {
        /// What open was doing, e.g. "create the data directory".
        action: &'static str,
        /// The path it was about.
        path: PathBuf,
        /// The I/O error, which keeps the operating system's error.
        #[source]
        source: IoError,
    },
}

impl Error {
    /// Classifies the error for the caller.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Page(e) => e.class(),
            Error::ParseId(_) => ErrorClass::Usage,
            Error::Wal(e) => e.class(),
            // An error about no operation (a setting, an unavailable
            // backend) is the caller's to fix, as keel-io classes it; one
            // on an operation leaves the file's state in doubt.
            Error::Io(e) if e.op().is_none() && e.is_usage() => ErrorClass::Usage,
            Error::Io(_) => ErrorClass::Fatal,
            Error::Buffer(e) => e.class(),
            Error::Db(e) => e.class(),
            Error::Checksum(_) => ErrorClass::Usage,
            Error::DataDir { .. } => ErrorClass::Usage,
        }
    }
}

/// Result alias for Keel's public API.
pub type Result<T, E = Error> = std::result::Result<T, E>;
