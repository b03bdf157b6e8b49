//! Typed payloads of WAL records: what each record says, and its bytes.
//!
//! A WAL record is a 44-byte frame ([`record`](super::record)) followed by a
//! payload. The frame says *which* page of *which* relation the record is
//! about, in *which* transaction, and what kind of record it is; the payload
//! says what happened. [`Payload`] has one variant per [`RecordType`], and
//! each variant carries exactly what recovery needs to repeat the change
//! (redo) and, for changes a transaction may roll back, to reverse it (undo).
//!
//! # Physiological logging
//!
//! Keel logs the way ARIES and PostgreSQL do:
//!
//! - **Redo is physical to a page, logical within it.** A page-changing
//!   record names one page in its header and describes an operation on it
//!   ("insert these bytes at slot 3", "replace these byte ranges"), not a
//!   byte diff of the whole page. Redo applies the operation only when the
//!   page's LSN is below the record's LSN, then sets the page LSN to the
//!   record's: applying a record twice is impossible, so redo can run again
//!   after a crash during recovery. Slot numbers are stable (invariant 12),
//!   so "slot 3" means the same tuple whenever redo runs.
//! - **Torn pages are repaired by images** (invariant 5): the first change to
//!   a page after a checkpoint keeps the page's image beside the log
//!   (`storage::images`), so redo never starts from a half-written page; a
//!   [`Payload::PageImage`] in the log is a whole page a record sets (a
//!   tree's first pages).
//! - **Undo is logical and logged** (invariant 8). Each heap record carries the
//!   slot's *before-image* ([`SlotImage`]) next to the new contents. Rolling
//!   back writes a [`Payload::Compensation`] record (a CLR) whose action is
//!   the redo-only operation that reversed the change ("put the old tuple
//!   back at slot 3") and whose `undo_next` is the LSN of the next record
//!   still to undo. CLRs are redone but never undone, so a crash in the
//!   middle of a rollback never undoes anything twice.
//!
//! docs/storage.md ("WAL payloads", "Redo and undo") lists every layout and
//! the redo and undo action of every type.
//!
//! # Encoding
//!
//! Every field is little-endian and written one by one (invariant 1); byte
//! strings carry a length prefix; lists carry a count. An encoding is
//! canonical: a payload has exactly one encoding, and decoding any bytes that
//! decode re-encodes to the same bytes (the fuzz target checks this).
//!
//! The decoder treats its input as hostile (invariant 9): a short read, an
//! unknown enum byte, a count the remaining bytes cannot hold, or trailing
//! bytes after the payload is a
//! [`WalError::BadPayload`](crate::WalError::BadPayload) naming the LSN, the
//! record type and the byte offset. Counts are checked against the remaining
//! bytes *before* anything is allocated, so no input makes the decoder
//! allocate more than a small multiple of its own length. It never panics.
//!
//! # What this module leaves out
//!
//! Applying payloads. Redo and undo handlers live with the structures they
//! change (heap/ for tuples and overflow chains, recovery/ for the analysis,
//! redo and undo passes); this module only says what a record means and how
//! it is spelled. It does not check a payload against the page it will be
//! applied to (whether slot 3 exists is the redo handler's question), nor
//! the record header's relation and page fields (the log's reader does).

mod cursor;
mod decode;
mod encode;
pub mod schema;
mod summary;

pub(crate) use encode::{encode_page_image, page_image_len};

#[cfg(test)]
mod tests;

use crate::page::{PAGE_SIZE, PageType, Relocation, TupleFlags};
use crate::types::{Lsn, PageId, RelationId, SlotId, TupleId, TxnId};
use crate::wal::record::{MAX_RECORD_SIZE, RECORD_HEADER_SIZE, RecordType};

/// Largest payload a record can carry: the largest record less its header.
/// Encoding refuses larger payloads and decoding rejects them.
pub const MAX_PAYLOAD_SIZE: usize = MAX_RECORD_SIZE - RECORD_HEADER_SIZE;
/// Longest relation name a [`Payload::RelationCreate`] carries, in bytes
/// (its length prefix is one byte).
pub const MAX_NAME_LEN: usize = 255;
/// Tag byte of a [`SlotImage::Tuple`].
pub const SLOT_IMAGE_TUPLE: u8 = 1;
/// Tag byte of a [`SlotImage::Forward`].
pub const SLOT_IMAGE_FORWARD: u8 = 2;

/// A slot's contents before a change: what undo puts back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotImage {
    /// A tuple and its flags.
    Tuple {
        /// Tuple flags.
        flags: TupleFlags,
        /// Tuple bytes (at most [`MAX_TUPLE_LEN`](crate::page::MAX_TUPLE_LEN)).
        bytes: Vec<u8>,
    },
    /// A forward pointer to where the tuple had moved.
    Forward(TupleId),
}

/// The tuples of one heap-multi-insert record, in slot order: their bytes
/// one after another in one buffer, and where each ends, so a record of a
/// page's worth of small tuples costs two allocations, not one per tuple.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TupleBatch {
    /// Where each tuple's bytes end in `bytes`.
    ends: Vec<usize>,
    /// The tuples' bytes, one after another.
    bytes: Vec<u8>,
}

impl TupleBatch {
    /// An empty batch with room for `tuples` tuples of `bytes` bytes in all.
    pub fn with_capacity(tuples: usize, bytes: usize) -> TupleBatch {
        TupleBatch {
            ends: Vec::with_capacity(tuples),
            bytes: Vec::with_capacity(bytes),
        }
    }

    /// Appends a tuple.
    pub fn push(&mut self, tuple: &[u8]) {
        self.bytes.extend_from_slice(tuple);
        self.ends.push(self.bytes.len());
    }

    /// Number of tuples.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Number of tuples as a run's `count` field: a logged batch has at
    /// most `u16::MAX` (encoding refuses more, decoding reads a u16 count),
    /// so the number saturates only for a batch that was never logged.
    pub fn run_len(&self) -> u16 {
        u16::try_from(self.ends.len()).unwrap_or(u16::MAX)
    }

    /// Whether the batch has no tuple.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of all the tuples together.
    pub fn tuple_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Each tuple's bytes, in order.
    pub fn iter(&self) -> impl Clone + Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.ends
            .iter()
            .zip(starts)
            .map(|(&end, start)| &self.bytes[start..end])
    }
}

/// Most pages one [`Payload::MultiPageImage`] holds (a record of four
/// images is at most about 33 KiB, invariant 15).
pub const MAX_MULTI_IMAGES: usize = 4;

/// The typed payload of a WAL record; one variant per [`RecordType`].
///
/// Page-changing variants apply to the page named in the record header
/// (a multi-page image also to the other pages it names).
/// Layouts are in docs/storage.md, "WAL payloads".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Zero bytes filling a segment's tail.
    Padding {
        /// Number of zero bytes.
        len: usize,
    },
    /// A full page: the record sets the page to it. On a heap page the free gap between the
    /// header's `lower` and `upper` is not stored and decodes as zeroes.
    PageImage {
        /// The page, header included.
        image: Box<[u8; PAGE_SIZE]>,
    },
    /// Byte ranges written into a page.
    PageDelta {
        /// `(offset, bytes)`; each range lies inside the page.
        ranges: Vec<(u16, Vec<u8>)>,
    },
    /// The page formatted as an empty page of a type.
    PageInit {
        /// The page's new type.
        page_type: PageType,
    },
    /// A tuple inserted at a slot. Undo deletes the slot.
    HeapInsert {
        /// The slot (stable address, invariant 12).
        slot: SlotId,
        /// Tuple flags.
        flags: TupleFlags,
        /// Tuple bytes.
        tuple: Vec<u8>,
    },
    /// Tuples inserted on one page into consecutive slots from `first`, all
    /// with the same flags: a bulk insert logs one record per page instead
    /// of one per tuple. The last slot is at most `u16::MAX`. Undo removes
    /// them all with one [`HeapMultiRemove`](Payload::HeapMultiRemove).
    HeapMultiInsert {
        /// The first tuple's slot; tuple `i` is in slot `first + i`.
        first: SlotId,
        /// Every tuple's flags.
        flags: TupleFlags,
        /// The tuples, in slot order.
        tuples: TupleBatch,
    },
    /// The tuples in the `count` slots from `first` removed and the slots
    /// freed at once, the highest first: the action of the CLR that undoes
    /// a [`HeapMultiInsert`](Payload::HeapMultiInsert). It carries no
    /// before-images: a CLR is never undone.
    HeapMultiRemove {
        /// The lowest slot.
        first: SlotId,
        /// How many slots (the last is at most `u16::MAX`).
        count: u16,
    },
    /// A tuple or forward pointer deleted (the slot becomes dead). Undo puts
    /// `old` back at the same slot.
    HeapDelete {
        /// The slot.
        slot: SlotId,
        /// What it held.
        old: SlotImage,
    },
    /// A slot's contents replaced by a tuple. Undo puts `old` back.
    HeapUpdate {
        /// The slot.
        slot: SlotId,
        /// What it held.
        old: SlotImage,
        /// Flags of the new tuple.
        new_flags: TupleFlags,
        /// Bytes of the new tuple.
        new: Vec<u8>,
    },
    /// A slot's contents replaced by a forward pointer (the tuple moved to
    /// `target`). Undo puts `old` back.
    HeapForward {
        /// The slot.
        slot: SlotId,
        /// Where the tuple now lives.
        target: TupleId,
        /// What the slot held.
        old: SlotImage,
    },
    /// A dead slot made free for reuse (redo-only).
    HeapFreeSlot {
        /// The slot.
        slot: SlotId,
    },
    /// The page compacted; the list says what moved (redo-only).
    PageCompaction {
        /// Each allocation that moved.
        relocations: Vec<Relocation>,
    },
    /// One chunk of an overflow chain written to the header's page.
    OverflowWrite {
        /// Position of the chunk in its chain.
        index: u32,
        /// Next page of the chain, or [`NO_PAGE`](crate::page::NO_PAGE).
        next: u32,
        /// Chunk bytes (at most [`CHUNK_CAPACITY`](crate::page::CHUNK_CAPACITY)).
        chunk: Vec<u8>,
    },
    /// The header's overflow page freed.
    OverflowFree,
    /// The header's page exactly as it was right after the change logged
    /// at `of` (its page LSN equal to `of`), logged in consistency-check
    /// mode (`Config::consistency_check`). Redo never applies it: it
    /// compares the page it rebuilt with it (ignoring the page checksum and,
    /// on a heap page, its free space: the gap, which is not stored, freed
    /// bytes and tuple padding). No undo, no transaction.
    PageCheck {
        /// The LSN of the change the image follows.
        of: Lsn,
        /// The page, header included; stored like a [`Payload::PageImage`].
        image: Box<[u8; PAGE_SIZE]>,
    },
    /// A transaction began.
    Begin,
    /// A transaction committed.
    Commit {
        /// Wall-clock commit time, microseconds since the Unix epoch.
        commit_time_us: u64,
    },
    /// A transaction finished rolling back.
    Abort,
    /// A compensation log record (CLR): the redo-only action that undid an
    /// earlier record, and the next record of the transaction still to undo
    /// (invariant 8). Never undone itself.
    Compensation {
        /// The transaction's next record to undo (`Lsn::ZERO`: none left).
        undo_next: Lsn,
        /// The action, one of the page-changing variants other than a CLR.
        action: Box<Payload>,
    },
    /// A checkpoint started.
    CheckpointBegin,
    /// A checkpoint ended. Fixed-size whatever the number of dirty pages or
    /// running transactions (invariant 15): recovery starts from the
    /// control file's redo and undo starts and rebuilds the transaction
    /// table by reading the log from there, so the record carries those
    /// positions and the sizes of the tables, not the tables.
    CheckpointEnd {
        /// LSN of the matching checkpoint-begin record.
        begin_lsn: Lsn,
        /// The next transaction id to hand out.
        next_txn: TxnId,
        /// Where redo starts after this checkpoint.
        redo_start: Lsn,
        /// First LSN of the oldest transaction running at the checkpoint
        /// (`redo_start` when none was): where recovery reads from.
        undo_start: Lsn,
        /// Pages dirty again when the end record was written.
        dirty_pages: u64,
        /// Transactions running when the end record was written.
        active_txns: u64,
    },
    /// An item inserted into the header's tree node (leaf or internal) at
    /// its sorted place: a key and the item's rest (a leaf's value part, an
    /// internal page's child). Logged in a transaction on a leaf, it is
    /// undone *logically*: the key is removed from whatever leaf holds it
    /// by then, found by descending the tree again (another transaction's
    /// split may have moved it). Logged outside a transaction (a downlink
    /// added by a split) it is redo-only.
    TreeInsert {
        /// The key (at most [`MAX_KEY_LEN`](crate::page::tree::MAX_KEY_LEN) bytes).
        key: Vec<u8>,
        /// The item's rest.
        rest: Vec<u8>,
    },
    /// The item with `key` removed from the header's tree node; `rest` is
    /// what it held, so undo (logical, as for [`TreeInsert`](Payload::TreeInsert))
    /// puts it back.
    TreeDelete {
        /// The key.
        key: Vec<u8>,
        /// The removed item's rest.
        rest: Vec<u8>,
    },
    /// The header's tree meta page switched from the root `old` (at
    /// `old_level`) to `new` (at `new_level`): the last step of a bulk load,
    /// which built the new tree beside the old, empty one. Undo switches
    /// back (a CLR with the fields swapped) and frees the new tree's pages.
    TreeRootSwap {
        /// The root before.
        old: PageId,
        /// Its level.
        old_level: u16,
        /// The root after.
        new: PageId,
        /// Its level.
        new_level: u16,
    },
    /// Whole images of up to [`MAX_MULTI_IMAGES`] pages of the header's
    /// relation, logged as one change: the structure changes of a tree
    /// that touch several pages (a split's two halves; a new root and the
    /// meta page naming it; a reclaimed leaf, its left sibling and its
    /// parent). The header names the first page. Redo applies each image
    /// to its page when *that* page's LSN is below the record's, page by
    /// page, so the record is idempotent (invariant 8) and a crash leaves
    /// all of its pages changed or none: no half of it, which is what
    /// keeps a split from leaking its new page. Each image is a full page,
    /// so none of the pages needs an image before it (invariant 5).
    /// Redo-only, logged outside any transaction; never a CLR's action.
    MultiPageImage {
        /// `(page, image)`, the header's page first, each page once.
        images: Vec<(PageId, Box<[u8; PAGE_SIZE]>)>,
    },
    /// A split of the header's tree node L, logged as the half that moves
    /// and a truncation of L: R's whole image, and L cut to its first
    /// `keep` items, bounded by `sep` (the key of L's item `keep` before
    /// the split), linked right to R and flagged `INCOMPLETE_SPLIT`. The
    /// truncation is a function of L as the log left it just before this
    /// record: when L has not changed since the redo point, its image is
    /// kept before this record (invariant 5, `storage::images`), so a torn
    /// L is rebuilt before the truncation is applied.
    /// Redo applies each part by its own page's LSN, as a multi-page
    /// image's (invariant 8); R's image formats R, so R may be past the
    /// end of the file. Redo-only, logged outside any transaction; never
    /// a CLR's action.
    TreeSplit {
        /// Items L keeps (at least one; the first it gives up is `keep`).
        keep: u16,
        /// L's new high key, the first key R holds.
        sep: Vec<u8>,
        /// The new right sibling R.
        right: PageId,
        /// R's whole image.
        image: Box<[u8; PAGE_SIZE]>,
    },
    /// A relation was created.
    RelationCreate {
        /// Its id.
        relation: RelationId,
        /// Its name (UTF-8, at most [`MAX_NAME_LEN`] bytes).
        name: String,
    },
    /// A relation was dropped.
    RelationDrop {
        /// Its id.
        relation: RelationId,
    },
}

impl Payload {
    /// The record type this payload is written as.
    pub fn kind(&self) -> RecordType {
        match self {
            Payload::Padding { .. } => RecordType::Padding,
            Payload::PageImage { .. } => RecordType::PageImage,
            Payload::PageDelta { .. } => RecordType::PageDelta,
            Payload::PageInit { .. } => RecordType::PageInit,
            Payload::HeapInsert { .. } => RecordType::HeapInsert,
            Payload::HeapMultiInsert { .. } => RecordType::HeapMultiInsert,
            Payload::HeapMultiRemove { .. } => RecordType::HeapMultiRemove,
            Payload::HeapDelete { .. } => RecordType::HeapDelete,
            Payload::HeapUpdate { .. } => RecordType::HeapUpdate,
            Payload::HeapForward { .. } => RecordType::HeapForward,
            Payload::HeapFreeSlot { .. } => RecordType::HeapFreeSlot,
            Payload::PageCompaction { .. } => RecordType::PageCompaction,
            Payload::OverflowWrite { .. } => RecordType::OverflowWrite,
            Payload::OverflowFree => RecordType::OverflowFree,
            Payload::PageCheck { .. } => RecordType::PageCheck,
            Payload::Begin => RecordType::Begin,
            Payload::Commit { .. } => RecordType::Commit,
            Payload::Abort => RecordType::Abort,
            Payload::Compensation { .. } => RecordType::Compensation,
            Payload::CheckpointBegin => RecordType::CheckpointBegin,
            Payload::CheckpointEnd { .. } => RecordType::CheckpointEnd,
            Payload::TreeInsert { .. } => RecordType::TreeInsert,
            Payload::TreeDelete { .. } => RecordType::TreeDelete,
            Payload::TreeRootSwap { .. } => RecordType::TreeRootSwap,
            Payload::MultiPageImage { .. } => RecordType::MultiPageImage,
            Payload::TreeSplit { .. } => RecordType::TreeSplit,
            Payload::RelationCreate { .. } => RecordType::RelationCreate,
            Payload::RelationDrop { .. } => RecordType::RelationDrop,
        }
    }

    /// Whether the record changes the page named in its header, so redo
    /// applies it (when the page LSN is below the record's) and the record
    /// header must name a relation and a page. True for CLRs.
    pub fn page_changing(&self) -> bool {
        is_page_changing(self.kind())
    }

    /// Whether rolling back the record's transaction must reverse it with a
    /// CLR: the heap records that change a slot's contents (a multi-insert
    /// included), and overflow writes (the page of an aborted chain is
    /// freed). A relation-create is also reversed at rollback, but by
    /// removing its files, not by a CLR.
    pub fn needs_undo(&self) -> bool {
        matches!(
            self,
            Payload::HeapInsert { .. }
                | Payload::HeapMultiInsert { .. }
                | Payload::HeapDelete { .. }
                | Payload::HeapUpdate { .. }
                | Payload::HeapForward { .. }
                | Payload::OverflowWrite { .. }
                | Payload::TreeInsert { .. }
                | Payload::TreeDelete { .. }
                | Payload::TreeRootSwap { .. }
        )
    }

    /// Whether the record rebuilds its whole page (an image, an init, an
    /// overflow chunk write or free, or a CLR whose action does), so
    /// applying it needs nothing of the old page: redo recreates a torn or
    /// missing page from it, and the first change after a checkpoint keeps
    /// no page image before it (invariant 5).
    pub fn formats_page(&self) -> bool {
        match self {
            Payload::PageImage { .. }
            | Payload::MultiPageImage { .. }
            | Payload::PageInit { .. }
            | Payload::OverflowWrite { .. }
            | Payload::OverflowFree => true,
            Payload::Compensation { action, .. } => action.formats_page(),
            _ => false,
        }
    }

    /// Whether applying the record to `page` (the header's page, or another
    /// page the record names) rebuilds it whole, so redo may create it when
    /// it is past the end of its file or torn: a tree-split's new right
    /// page, and every page of a record that [`formats_page`](Self::formats_page).
    pub fn formats(&self, page: PageId) -> bool {
        match self {
            Payload::TreeSplit { right, .. } => page == *right,
            _ => self.formats_page(),
        }
    }

    /// The `undo_next` of a CLR, `None` for every other record.
    pub fn undo_next(&self) -> Option<Lsn> {
        match self {
            Payload::Compensation { undo_next, .. } => Some(*undo_next),
            _ => None,
        }
    }
}

/// Whether records of `kind` change the page named in their header
/// (see [`Payload::page_changing`]).
pub fn is_page_changing(kind: RecordType) -> bool {
    kind == RecordType::Compensation
        || kind == RecordType::MultiPageImage
        || kind == RecordType::TreeSplit
        || is_clr_action(kind)
}

/// Whether a CLR may carry an action of `kind`: a page-changing type other
/// than a CLR itself.
pub fn is_clr_action(kind: RecordType) -> bool {
    use RecordType::*;
    matches!(
        kind,
        PageImage
            | PageDelta
            | PageInit
            | HeapInsert
            | HeapMultiInsert
            | HeapMultiRemove
            | HeapDelete
            | HeapUpdate
            | HeapForward
            | HeapFreeSlot
            | PageCompaction
            | OverflowWrite
            | OverflowFree
            | TreeInsert
            | TreeDelete
            | TreeRootSwap
    )
}
