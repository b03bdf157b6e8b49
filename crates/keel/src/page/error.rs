//! The page layer's errors.

use thiserror::Error;

use crate::error::class::ErrorClass;
use crate::types::{PageId, SlotId};

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
