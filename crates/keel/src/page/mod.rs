//! Pages: Keel's 8 KiB unit of storage, as byte layouts with no I/O at all.
//!
//! Every file Keel writes for relations is an array of [`PAGE_SIZE`]-byte
//! pages; page `n` lives at byte `n * PAGE_SIZE`. Each page starts with the
//! same 40-byte [common header](header) (magic, version, type, page id, LSN,
//! CRC32C, free-space bounds, a next-page link). What follows depends on the
//! page type:
//!
//! - **heap pages** are *slotted*: a slot directory grows up from the header,
//!   tuple bytes grow down from the end of the page, and free space is the gap
//!   between them ([`slotted`]);
//! - **overflow pages** carry one chunk of a tuple too large for a heap page,
//!   chained by the header's next-page link ([`overflow`]);
//! - **tree pages** are the meta page and the nodes of a B-link tree: sorted
//!   items, a high key and a right link ([`tree`]).
//!
//! This module works on plain `&[u8]` / `&mut [u8]` of exactly `PAGE_SIZE`
//! bytes, so the buffer pool can hand it a frame, a test a `Vec`, and a fuzzer
//! arbitrary bytes. It never reads or writes files.
//!
//! ## Trust
//!
//! Bytes that come from disk are untrusted (invariant 9). [`verify`] checks the
//! checksum, the header and every slot, and is what the buffer pool calls on
//! each read; after that the page is only changed through this module's
//! operations, which keep it valid. Even so, every accessor bounds-checks what
//! it reads and returns [`PageError::Corrupted`] rather than panicking, so a
//! bug elsewhere degrades into an error that names the page and offset.
//!
//! ## What this module leaves out
//!
//! WAL logging (the heap layer logs each operation before calling these),
//! latching (the buffer pool's frame latches), and deciding *where* a tuple
//! goes (the free space map). Compaction returns its relocation list so the
//! caller can log it.

pub mod compare;
pub mod dump;
mod error;
pub mod header;
pub mod overflow;
pub mod slotted;
pub mod stats;
pub mod tree;

pub use compare::first_difference;
pub use dump::{DumpOptions, dump_page};
pub use error::PageError;
pub use header::{
    HEADER_SIZE, NO_PAGE, PAGE_FORMAT_VERSION, PAGE_MAGIC, PAGE_SIZE, PageHeader, PageType,
    RawHeader, compute_checksum, init_page, page_lsn, page_type, seal, set_page_lsn,
    verify_checksum,
};
pub use overflow::{CHUNK_CAPACITY, ChainReader, OverflowHead, OverflowPage};
pub use slotted::{
    FORWARD_PLACEHOLDER, Fit, MAX_TUPLE_LEN, Relocation, SLOT_SIZE, SlotContent, SlotEntry,
    SlotKind, SlottedPage, TupleFlags,
};
pub use stats::PageStats;
pub use tree::TreePage;

use crate::types::PageId;

/// Fully validates a page read from disk as page `expected`: length, checksum
/// (which covers the page id, invariant 2), header, and the type-specific
/// structure (every slot of a heap page, the chunk of an overflow page).
///
/// An all-zero page (a file extended but never written) fails the magic
/// check like any other garbage: callers that extend files format new pages
/// explicitly rather than relying on zeroes.
pub fn verify(bytes: &[u8], expected: PageId) -> Result<PageType, PageError> {
    verify_checksum(bytes, expected)?;
    verify_structure(bytes, expected)
}

/// [`verify`] for a page of a relation file, as the buffer pool reads
/// one: besides, its type is one a relation file holds (heap, overflow,
/// tree node or meta page, free page; never an FSM or meta page, whose
/// files are their own), and a free page is an empty header over zeros,
/// as freeing leaves it. A page whose type byte changed under a valid
/// checksum is so refused as corrupt rather than skipped by a scan as a
/// page holding nothing.
pub fn verify_relation_page(bytes: &[u8], expected: PageId) -> Result<PageType, PageError> {
    let page_type = verify(bytes, expected)?;
    match page_type {
        PageType::Fsm | PageType::Meta => Err(PageError::Corrupted {
            page_id: expected,
            offset: header::offsets::PAGE_TYPE,
            reason: format!("a {} page in a relation file", page_type.name()),
        }),
        PageType::Free => match bytes[HEADER_SIZE..].iter().position(|&b| b != 0) {
            Some(i) => Err(PageError::Corrupted {
                page_id: expected,
                offset: HEADER_SIZE + i,
                reason: "a free page holds bytes past its header".into(),
            }),
            None => Ok(page_type),
        },
        _ => Ok(page_type),
    }
}

/// Validates header and structure without the checksum: used for pages in
/// memory that have been changed since they were last sealed.
pub fn verify_structure(bytes: &[u8], expected: PageId) -> Result<PageType, PageError> {
    let header = PageHeader::read(bytes, expected)?;
    match header.page_type {
        PageType::Heap => SlottedPage::open(bytes, expected)?.validate()?,
        PageType::Overflow => {
            OverflowPage::open(bytes, expected)?;
        }
        PageType::TreeLeaf | PageType::TreeInternal => {
            TreePage::open(bytes, expected)?.validate()?
        }
        PageType::TreeMeta => {
            tree::read_meta(bytes, expected)?;
        }
        PageType::Free | PageType::Fsm | PageType::Meta => {}
    }
    Ok(header.page_type)
}
