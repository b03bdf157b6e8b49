//! Error types, one `#[non_exhaustive]` enum per layer.
//!
//! Rules (STYLE.md §5):
//! - corruption is its own variant and always says *where* (page id, offset,
//!   LSN) and *what* was wrong, so `keel check` and users can act on it;
//! - an `io::Error` is never flattened into a string: it stays the `source()`;
//! - callers never match on message text: [`ErrorClass`] tells them whether an
//!   error is the caller's mistake, transient, corruption, or fatal.
//!
//! Layers add their enums here as they are built; the top-level [`Error`]
//! wraps them so the public API returns one type.

use thiserror::Error;

use crate::types::{PageId, SlotId};

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

/// The error type of Keel's public API.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A page-layer error.
    #[error(transparent)]
    Page(#[from] PageError),
    /// An identifier's text form did not parse.
    #[error(transparent)]
    ParseId(#[from] ParseIdError),
}

impl Error {
    /// Classifies the error for the caller.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Page(e) => e.class(),
            Error::ParseId(_) => ErrorClass::Usage,
        }
    }
}

/// Result alias for Keel's public API.
pub type Result<T, E = Error> = std::result::Result<T, E>;
