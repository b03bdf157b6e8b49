//! Error types, one `#[non_exhaustive]` enum per layer.
//!
//! Rules (STYLE.md §5):
//! - corruption is its own variant and always says *where* (page id, offset,
//!   LSN) and *what* was wrong, so `keel check` and users can act on it;
//! - an `io::Error` is never flattened into a string: it stays the `source()`;
//! - callers never match on message text: [`ErrorClass`] tells them whether an
//!   error is the caller's mistake, transient, corruption, or fatal.
//!
//! Each layer's enum lives in that layer ([`PageError`] in `page/`,
//! [`WalError`] in `wal/`, [`BufferError`] in `buffer/`); [`DbError`], the
//! errors of the layers above the log and the buffer pool (heap, recovery,
//! transactions, the data directory), lives here with the top-level
//! [`Error`](enum@Error), which wraps them all so the public API returns one
//! type, and the classifier.
//!
//! Imports point down only: this module names the layers' enums, and the
//! layers name only [`ErrorClass`], which lives in the leaf file
//! `error/class.rs` (it imports nothing), so no cycle runs through here.

use thiserror::Error;

use std::path::PathBuf;
use std::sync::Arc;

use keel_io::IoError;

pub(crate) mod class;

pub use crate::buffer::BufferError;
pub use crate::page::PageError;
pub use crate::types::ParseIdError;
use crate::types::{Lsn, PageId, RelationId, TupleId, TxnId};
pub use crate::wal::WalError;
pub use class::ErrorClass;

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
    /// Every relation id below the limit has been handed out (ids are
    /// never reused): no relation can be created. Nothing changed.
    #[error("relation ids are exhausted: every id below the limit {limit} has been used")]
    RelationIdsExhausted {
        /// The limit ([`crate::heap::catalog::RELATION_ID_LIMIT`]).
        limit: u32,
    },
    /// A create found a file of the id it was given already in the data
    /// directory (placed there by something other than this database, as
    /// every file Keel made is below the next id): the create is refused
    /// and the file left as it is, never opened or removed. The id is not
    /// handed out again; a later create gets the next one.
    #[error("relation {relation}: its file {} exists already; the create was refused and the file left as it is", path.display())]
    RelationFileExists {
        /// The id the create was given.
        relation: RelationId,
        /// The file found.
        path: PathBuf,
    },
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
    /// A heap operation on a tree, or a tree operation on a heap.
    #[error("relation {relation} is a {found}, not a {expected}")]
    WrongRelationKind {
        /// The relation's name.
        relation: String,
        /// The kind the operation works on.
        expected: &'static str,
        /// The relation's kind.
        found: &'static str,
    },
    /// A bulk load into a tree that has keys.
    #[error("tree {0} is not empty: a bulk load needs an empty tree")]
    TreeNotEmpty(String),
    /// A bulk load's keys are not strictly ascending.
    #[error("bulk load: key {index} is not above the key before it")]
    Unsorted {
        /// Its position in the input (from 0).
        index: u64,
    },
    /// A tree key longer than the maximum.
    #[error("key of {len} bytes exceeds the maximum of {max} bytes")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The maximum ([`crate::btree::MAX_KEY_LEN`]).
        max: usize,
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
    /// A write in a read-only transaction (`Database::begin_read`); the
    /// transaction goes on, unchanged.
    #[error("transaction {txn} is read-only (begun with begin_read): it cannot write")]
    ReadOnly {
        /// The transaction.
        txn: TxnId,
    },
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
    /// The commit was not admitted: more log than the archiver's limit
    /// lay unarchived for the whole wait (`wal::gate`). The commit record
    /// was never written; the transaction was rolled back.
    #[error(
        "transaction {txn}: commit waited {waited:?} for the archive: {unarchived} bytes of log \
         past LSN {held_from} are not archived (limit {max_bytes}); it was rolled back"
    )]
    CommitStalled {
        /// The transaction that waited.
        txn: TxnId,
        /// Bytes of log past the archive's end when the wait ended.
        unarchived: u64,
        /// The archive's end (where the log is held from).
        held_from: Lsn,
        /// The limit on unarchived bytes.
        max_bytes: u64,
        /// How long the commit waited.
        waited: std::time::Duration,
    },
    /// A fatal error poisoned the database (invariants 7 and 16): every
    /// call fails with this error, naming the first fatal error as its
    /// `source()`, until the database is reopened (which runs recovery).
    #[error("the database is poisoned (reopen it to recover) by: {}", .cause.chain())]
    Poisoned {
        /// The first fatal error.
        #[source]
        cause: ErrorCause,
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
            | DbError::RelationIdsExhausted { .. }
            | DbError::BadRelationName { .. }
            | DbError::NoSuchTuple { .. }
            | DbError::NoSuchPage { .. }
            | DbError::WrongRelationKind { .. }
            | DbError::KeyTooLarge { .. }
            | DbError::TreeNotEmpty(_)
            | DbError::Unsorted { .. }
            | DbError::ValueTooLarge { .. }
            | DbError::TxnFinished(_)
            | DbError::ReadOnly { .. }
            | DbError::Config(_)
            | DbError::Locked(_) => ErrorClass::Usage,
            DbError::WouldBlock { .. }
            | DbError::Deadlock { .. }
            | DbError::LockTimeout { .. }
            | DbError::CommitStalled { .. } => ErrorClass::Transient,
            DbError::Corrupt { .. }
            | DbError::Recovery { .. }
            | DbError::RelationFileExists { .. } => ErrorClass::Corruption,
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
    /// A file of the data directory that Keel writes (`LOCK`) is something
    /// else in its place: a FIFO, a directory, a socket, a device, a
    /// symbolic link to nothing ([`crate::datadir::non_regular_kind`]).
    /// Refused before it is read or written; nothing was opened.
    #[error("{} is {kind}, not a regular file", path.display())]
    NotARegularFile {
        /// The path.
        path: PathBuf,
        /// What is there, with its article ("a FIFO").
        kind: &'static str,
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
            Error::DataDir { .. } | Error::NotARegularFile { .. } => ErrorClass::Usage,
        }
    }
}

/// Result alias for Keel's public API.
pub type Result<T, E = Error> = std::result::Result<T, E>;
