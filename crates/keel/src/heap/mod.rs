//! Relations and the heap: tuples in slotted pages, reached through the
//! buffer pool, every change logged before it can reach the disk.
//!
//! A relation is one file of 8 KiB pages (`rel/<id>.heap` in the data
//! directory) registered with the buffer pool under [`FileId`] = its
//! relation id, plus an in-memory [`FreeSpaceMap`]. Relation 0 is the
//! catalog (`heap::catalog`), itself a heap of `(id, name)` tuples.
//!
//! ## How a change is made (`Store::change`)
//!
//! Every page change, in a transaction or not, follows one path:
//!
//! 1. The caller holds the page's exclusive latch (a [`PageWriteGuard`]).
//! 2. Under the *redo gate* (a shared lock on the redo point of the latest
//!    checkpoint), if the page's LSN is below the redo point and the record
//!    does not rebuild the whole page ([`Payload::formats_page`]), a full
//!    [`Payload::PageImage`] of the page as it is is logged first
//!    (invariant 5: recovery restores a torn page from it). A checkpoint
//!    moves the redo point under the exclusive side of the gate, so no
//!    change can be logged after a checkpoint began while having checked
//!    the previous redo point.
//! 3. The change is applied to the page with [`apply::apply`] (the same
//!    function redo and rollback use) and only if that succeeds is it
//!    logged. Page operations check before they modify, so a refused
//!    change leaves the page as it was and nothing in the log.
//! 4. The page LSN is set to the record's LSN and the frame marked dirty,
//!    still under the redo gate: the buffer pool writes it only after the
//!    log is durable up to that LSN (invariant 4), and a checkpoint, which
//!    takes the gate's exclusive side to append its begin record, then
//!    finds every change logged before that record on a dirty frame, so
//!    its `flush_all` writes it. A frame marked after the gate is released
//!    could be skipped, still clean, by a checkpoint that slipped in
//!    between, which would then move redo past the record.
//! 5. In consistency-check mode (`Config::consistency_check`), still under
//!    the gate and the latch, a [`Payload::PageCheck`] of the page as the
//!    change left it (page LSN = the change's LSN) is logged; recovery
//!    compares the page it rebuilds with it. A `PageImage` is not checked:
//!    it is already the exact page.
//!
//! ## Tuples
//!
//! A value of at most [`INLINE_MAX`] bytes is stored in its slot. A larger
//! one is written to a chain of overflow pages (`heap::overflow`, one
//! `OverflowWrite` record per page) and its slot holds the chain's
//! 24-byte [`OverflowHead`](crate::page::OverflowHead) flagged
//! `OVERFLOW_HEAD`.
//!
//! An update that no longer fits its page moves the tuple: the new bytes
//! are inserted on another page flagged `MOVED_IN`, and the home slot
//! becomes a forward pointer to them (invariant 12: the TupleId handed out
//! by insert keeps working). A home slot points directly at its tuple;
//! moving a moved tuple again repoints the home slot and deletes the old
//! copy, so there are never chains of forwards. Scans skip `MOVED_IN`
//! tuples and report them under their home TupleId.
//!
//! What a committed delete or update leaves behind (dead slots, overflow
//! chains of old values) is released after the commit record is durable,
//! by redo-only records (`Deferred`). A crash between the commit and that
//! cleanup leaks the space; it is never reused while it could still be
//! needed by a rollback.
//!
//! ## Room for rollback
//!
//! A delete, a shrinking update or a move frees bytes on a page that the
//! transaction's rollback needs back. Until the transaction ends, those bytes
//! are *reserved*: the page's free space as other inserts and updates see it
//! is its real free space minus the reservations on it (`Store::fit`). So
//! rollback (and recovery's undo, which runs before any new transaction)
//! always finds the room it needs, at worst after compacting the page.
//! Reservations live in memory only: after a crash no transaction is
//! running, and recovery's undo of the losers is the only writer.
//!
//! ## Memory a transaction holds
//!
//! Until it ends, a transaction holds in memory what its rollback and its
//! commit need (`TxnLog`), and that grows with the number of changes,
//! never with the size of the values:
//!
//! - one `UndoEntry` (40 bytes) per change to undo. An insert keeps only
//!   its slot (its rollback reads the tuple from the page); the pages of an
//!   overflow chain it writes are one entry however many there are
//!   (`Undo::Chain`: only where the chain is); an update, delete or
//!   forward keeps its record with the slot's before-image, which is at
//!   most [`INLINE_MAX`] bytes, because a larger value's slot holds only its
//!   24-byte overflow head and the old chain is not touched until the
//!   commit frees it (`Deferred`). So per change: a few dozen bytes plus at
//!   most two inline tuples (the update's old and new bytes).
//! - one `Deferred` release per dead slot or old chain, and one
//!   reservation per page it freed bytes on (module section "Room for
//!   rollback").
//!
//! Its locks (one per tuple it reads or writes, escalated to a relation
//! lock after `ESCALATE_AT`) live in the lock manager. Writing a large value
//! copies one chunk at a time into its log record and page. Recovery's undo
//! of a loser keeps, during analysis, a position per record (one per
//! overflow page), then builds the same entries with `push_undo`, reading
//! each record back and keeping only its `Undo`.
//!
//! ## Extending a relation
//!
//! New pages are created under the relation's extension lock, which also
//! covers logging the record that formats the page. So pages are formatted
//! in the log in page order, and a page can reach the disk only after the
//! records formatting every page before it are durable: after a crash the
//! file never has a hole that the log cannot fill.
//!
//! ## Latching (invariant 11)
//!
//! Every operation latches one page at a time and drops the latch before
//! fetching another page (following a forward pointer, reading an overflow
//! chain, moving a tuple). The redo gate is taken after a page latch and
//! never held while waiting for anything but the log buffer.

pub mod apply;
pub mod catalog;
mod insert;
mod modify;
mod overflow;
pub(crate) mod read;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use keel_io::AsyncIo;
use parking_lot::{Mutex, RwLock};

use crate::buffer::{BufferPool, FileId, PageWriteGuard};
use crate::error::{DbError, Error, Result};
use crate::fsm::FreeSpaceMap;
use crate::page::{PAGE_SIZE, PageType, page_lsn};
use crate::types::{Lsn, PageId, RelationId, SlotId, TupleId, TxnId};
use crate::wal::{Payload, RecordMeta, RecordType, Wal};

/// Largest value stored in its slot; larger values go to an overflow chain.
/// A quarter page, so a page always holds several tuples (PostgreSQL's
/// TOAST threshold has the same reason).
pub const INLINE_MAX: usize = 2032;

/// Largest value a tuple may hold (what an overflow chain may hold).
pub const MAX_VALUE_LEN: usize = crate::page::overflow::MAX_CHAIN_LEN as usize;

/// One relation: its file, page count and free space map.
#[derive(Debug)]
pub(crate) struct Relation {
    /// Its id (and the buffer pool's [`FileId`] of its file).
    pub id: RelationId,
    /// Its name.
    pub name: String,
    /// Pages the relation has (formatted ones, on disk or only in the pool).
    pub pages: AtomicU32,
    /// Free space per heap page (a hint, re-checked on every use).
    pub fsm: FreeSpaceMap,
    /// Serializes creating pages (module docs, "Extending a relation").
    pub extend: Mutex<()>,
    /// Where its row lives in the catalog (`None` for the catalog itself).
    pub catalog_tid: Option<TupleId>,
}

impl Relation {
    pub(crate) fn new(
        id: RelationId,
        name: String,
        pages: u32,
        fsm: FreeSpaceMap,
        catalog_tid: Option<TupleId>,
    ) -> Relation {
        Relation {
            id,
            name,
            pages: AtomicU32::new(pages),
            fsm,
            extend: Mutex::new(()),
            catalog_tid,
        }
    }

    /// The buffer pool's name for its file.
    pub(crate) fn file(&self) -> FileId {
        FileId(self.id.0)
    }

    /// Number of pages.
    pub(crate) fn page_count(&self) -> u32 {
        self.pages.load(Ordering::Acquire)
    }
}

/// A record a transaction may have to undo, kept in memory for rollback.
#[derive(Clone, Debug)]
pub(crate) struct UndoEntry {
    pub relation: RelationId,
    pub page: PageId,
    pub lsn: Lsn,
    pub prev_lsn: Lsn,
    pub undo: Undo,
}

/// What rolling one record back needs.
#[derive(Clone, Debug)]
pub(crate) enum Undo {
    /// Remove the tuple the transaction inserted in `slot`. Its bytes stay
    /// on the page until then (the transaction holds the tuple's lock, and
    /// its later changes to it are undone first), so the compensation
    /// record's before-image is read from there and the undo stack keeps
    /// no copy of every inserted tuple.
    Insert { slot: SlotId },
    /// Free the pages of `pages` overflow chunks the transaction wrote as
    /// consecutive records of its own: the newest on the entry's page
    /// (chunk `index`, linked to page `next`), each older one on the page
    /// the newer one links to, with the next higher chunk index. Undoing an
    /// `OverflowWrite` needs only where its page is (the action is
    /// `OverflowFree`), and a chain is written last chunk first, each page
    /// linking to the one written before it, so one entry stands for a
    /// whole chain however long the value (`push_undo` merges them) and
    /// no chunk is copied.
    Chain { pages: u32, index: u32, next: u32 },
    /// Reverse this record with [`apply::undo_action`] (boxed: an entry per
    /// insert stays small). Only records whose before-image is at most a
    /// tuple's bytes (a heap update, delete or forward) are kept this way;
    /// a large value's before-image is its 24-byte overflow head, its chain
    /// staying untouched until the commit frees it (`Deferred`).
    Record(Box<Payload>),
}

impl Undo {
    /// What undoing `payload` needs, keeping as little of it as that.
    pub(crate) fn of(payload: Cow<'_, Payload>) -> Undo {
        match *payload {
            Payload::HeapInsert { slot, .. } => Undo::Insert { slot },
            Payload::OverflowWrite { index, next, .. } => Undo::Chain {
                pages: 1,
                index,
                next,
            },
            _ => Undo::Record(Box::new(payload.into_owned())),
        }
    }

    /// The record type's name, for errors.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Undo::Insert { .. } => RecordType::HeapInsert.name(),
            Undo::Chain { .. } => RecordType::OverflowWrite.name(),
            Undo::Record(p) => p.kind().name(),
        }
    }
}

/// Pushes `entry` on a transaction's undo stack, merging the write of an
/// overflow chunk into the chain entry on top when it continues that chain:
/// the transaction's previous record wrote the page this chunk links to,
/// with the next chunk index (`Undo::Chain`). The running transaction and
/// recovery's undo of a loser build their stacks with this one function,
/// so both roll back through the same entries and log the same CLRs.
pub(crate) fn push_undo(stack: &mut Vec<UndoEntry>, entry: UndoEntry) {
    if let Undo::Chain {
        pages: 1,
        index,
        next,
    } = entry.undo
        && let Some(top) = stack.last_mut()
        && top.relation == entry.relation
        && top.lsn == entry.prev_lsn
        && top.page.0 == next
        && let Undo::Chain {
            pages,
            index: top_index,
            ..
        } = top.undo
        && index.checked_add(1) == Some(top_index)
        && pages < u32::MAX
    {
        top.page = entry.page;
        top.lsn = entry.lsn;
        top.undo = Undo::Chain {
            pages: pages + 1,
            index,
            next,
        };
        return;
    }
    stack.push(entry);
}

/// Space a committed transaction releases once its commit is durable.
#[derive(Clone, Debug)]
pub(crate) enum Deferred {
    /// A slot left dead by a delete or a move: made free for reuse.
    FreeSlot(RelationId, TupleId),
    /// The pages of an overflow chain no longer referenced.
    FreeChain(RelationId, crate::page::OverflowHead),
}

/// A transaction's view of the log: its id, last record, what it would
/// have to undo and what it releases at commit.
#[derive(Debug)]
pub(crate) struct TxnLog {
    pub txn: TxnId,
    pub last_lsn: Lsn,
    pub undo: Vec<UndoEntry>,
    pub deferred: Vec<Deferred>,
    /// Bytes this transaction freed on pages and holds for its rollback.
    pub reserved: Vec<(RelationId, PageId, usize)>,
}

impl TxnLog {
    pub(crate) fn new(txn: TxnId) -> TxnLog {
        TxnLog {
            txn,
            last_lsn: Lsn::ZERO,
            undo: Vec::new(),
            deferred: Vec::new(),
            reserved: Vec::new(),
        }
    }

    /// Bytes of memory this log holds until its transaction ends: the
    /// undo stack (entries and the before-images they box), the deferred
    /// releases and the reservations. A boxed payload is counted as its
    /// size plus its encoded length, which is within a few bytes of the
    /// heap bytes its vectors hold.
    pub(crate) fn held_bytes(&self) -> usize {
        use std::mem::size_of;
        let boxed: usize = self
            .undo
            .iter()
            .map(|e| match &e.undo {
                Undo::Record(p) => size_of::<Payload>() + p.encoded_len(),
                _ => 0,
            })
            .sum();
        self.undo.capacity() * size_of::<UndoEntry>()
            + boxed
            + self.deferred.capacity() * size_of::<Deferred>()
            + self.reserved.capacity() * size_of::<(RelationId, PageId, usize)>()
    }
}

/// Everything heap operations share: the I/O backend, the buffer pool, the
/// log, and the redo gate.
pub(crate) struct Store {
    pub io: Arc<dyn AsyncIo>,
    pub pool: BufferPool,
    pub wal: Arc<Wal>,
    /// Redo point of the latest begun checkpoint (module docs, step 2).
    pub redo_point: RwLock<Lsn>,
    /// Bytes per page freed by running transactions (module docs, "Room
    /// for rollback").
    pub reserved: Mutex<HashMap<(RelationId, PageId), usize>>,
    /// Tuple and relation locks.
    pub locks: crate::lock::LockManager,
    /// Whether every change is followed by a `PageCheck` record of the page
    /// (`Config::consistency_check`; module docs, step 5).
    pub consistency_check: bool,
}

impl Store {
    /// Applies `payload` to the latched page and logs it (module docs), in
    /// `log`'s transaction if given. Returns the record's LSN.
    pub(crate) fn change(
        &self,
        log: Option<&mut TxnLog>,
        rel: &Relation,
        g: &mut PageWriteGuard<'_>,
        payload: &Payload,
    ) -> Result<Lsn> {
        self.change_cow(log, rel, g, Cow::Borrowed(payload))
    }

    /// [`change`](Self::change) of a payload the caller gives away: the
    /// undo stack keeps it without a copy (an insert's tuple bytes).
    pub(crate) fn change_owned(
        &self,
        log: Option<&mut TxnLog>,
        rel: &Relation,
        g: &mut PageWriteGuard<'_>,
        payload: Payload,
    ) -> Result<Lsn> {
        self.change_cow(log, rel, g, Cow::Owned(payload))
    }

    fn change_cow(
        &self,
        log: Option<&mut TxnLog>,
        rel: &Relation,
        g: &mut PageWriteGuard<'_>,
        payload: Cow<'_, Payload>,
    ) -> Result<Lsn> {
        let pid = g.page_id();
        let gate = self.redo_point.read();
        let current = page_lsn(g).unwrap_or(Lsn::ZERO);
        if !payload.formats_page() && current < *gate && is_formatted(g) {
            let image = Payload::PageImage { image: image_of(g) };
            let meta = RecordMeta::new(image.kind()).on_page(rel.id, pid);
            let rec = self.wal.append_payload(meta, &image)?;
            g.mark_dirty(rec.lsn);
        }
        let before = page_lsn(g).unwrap_or(Lsn::ZERO);
        apply::apply(&payload, g, pid, before)?;
        let mut meta = RecordMeta::new(payload.kind()).on_page(rel.id, pid);
        if let Some(log) = &log {
            meta = meta.in_txn(log.txn, log.last_lsn);
        }
        let rec = self.wal.append_payload(meta, &payload)?;
        // Marked dirty before the gate is released (step 4): a checkpoint
        // whose begin record follows this record must find the frame dirty
        // when its `flush_all` looks, or the change would be neither written
        // by that checkpoint nor redone after a crash (redo starts at its
        // begin record).
        g.mark_dirty(rec.lsn);
        if self.consistency_check && !matches!(*payload, Payload::PageImage { .. }) {
            self.log_check(rel, g, rec.lsn)?;
        }
        drop(gate);
        if let Some(log) = log {
            if payload.needs_undo() {
                push_undo(
                    &mut log.undo,
                    UndoEntry {
                        relation: rel.id,
                        page: pid,
                        lsn: rec.lsn,
                        prev_lsn: log.last_lsn,
                        undo: Undo::of(payload),
                    },
                );
            }
            log.last_lsn = rec.lsn;
        }
        Ok(rec.lsn)
    }

    /// Logs a `PageCheck` of the latched page as the change at `of` left
    /// it (module docs, step 5). `mark_dirty` already set the page LSN to
    /// `of`, so the image carries it, as the page redo rebuilds will.
    fn log_check(&self, rel: &Relation, g: &PageWriteGuard<'_>, of: Lsn) -> Result<()> {
        debug_assert_eq!(
            page_lsn(g),
            Some(of),
            "page LSN is the change's LSN before its check image (inv. 4)"
        );
        let check = Payload::PageCheck {
            of,
            image: image_of(g),
        };
        let meta = RecordMeta::new(check.kind()).on_page(rel.id, g.page_id());
        self.wal.append_payload(meta, &check)?;
        Ok(())
    }

    /// Logs a record outside any page in `log`'s transaction (commit,
    /// abort, relation create/drop). Returns what was appended.
    pub(crate) fn log_txn(
        &self,
        log: &mut TxnLog,
        payload: &Payload,
    ) -> Result<crate::wal::Appended> {
        let meta = RecordMeta::new(payload.kind()).in_txn(log.txn, log.last_lsn);
        let rec = self.wal.append_payload(meta, payload)?;
        log.last_lsn = rec.lsn;
        Ok(rec)
    }
}

/// A copy of the latched page, for a page-image or page-check record.
fn image_of(page: &[u8]) -> Box<[u8; PAGE_SIZE]> {
    let mut image = Box::new([0u8; PAGE_SIZE]);
    image.copy_from_slice(page);
    image
}

/// Whether the page has been formatted (an all-zero frame is a page being
/// created).
fn is_formatted(page: &[u8]) -> bool {
    page_type(page).is_some_and(|_| page[..4] == crate::page::PAGE_MAGIC.to_le_bytes())
}

/// The type byte of a formatted page.
pub(crate) fn page_type(page: &[u8]) -> Option<PageType> {
    page.get(crate::page::header::offsets::PAGE_TYPE)
        .and_then(|&b| PageType::from_u8(b))
}

/// The error for a tuple address that names nothing.
pub(crate) fn no_tuple(rel: &Relation, tid: TupleId) -> Error {
    DbError::NoSuchTuple {
        relation: rel.id,
        tid,
    }
    .into()
}

/// The error for inconsistent heap contents found at run time.
pub(crate) fn corrupt(rel: &Relation, what: impl std::fmt::Display, reason: String) -> Error {
    DbError::Corrupt {
        what: format!("relation {} ({}), {what}", rel.id, rel.name),
        reason,
    }
    .into()
}

/// An undo entry per insert: 1 M inserted rows in one transaction keep
/// 40 MB of undo stack, not a copy of every tuple.
const _: () = assert!(std::mem::size_of::<UndoEntry>() <= 40);

#[cfg(test)]
mod tests {
    use super::*;

    fn write(page: u32, lsn: u64, prev: u64, index: u32, next: u32) -> UndoEntry {
        UndoEntry {
            relation: RelationId(1),
            page: PageId(page),
            lsn: Lsn(lsn),
            prev_lsn: Lsn(prev),
            undo: Undo::Chain {
                pages: 1,
                index,
                next,
            },
        }
    }

    /// A chain written as consecutive records becomes one entry; a write
    /// that does not continue it (another chain, a gap in the transaction's
    /// records, a link elsewhere) starts a new one.
    #[test]
    fn consecutive_chunk_writes_of_one_chain_merge() {
        let no = crate::page::NO_PAGE;
        let mut stack = Vec::new();
        push_undo(&mut stack, write(7, 100, 50, 2, no));
        push_undo(&mut stack, write(9, 200, 100, 1, 7));
        push_undo(&mut stack, write(4, 300, 200, 0, 9));
        assert_eq!(stack.len(), 1);
        let top = &stack[0];
        assert_eq!(
            (top.page, top.lsn, top.prev_lsn),
            (PageId(4), Lsn(300), Lsn(50))
        );
        assert!(matches!(
            top.undo,
            Undo::Chain {
                pages: 3,
                index: 0,
                next: 9
            }
        ));
        // The next value's chain starts fresh.
        push_undo(&mut stack, write(11, 400, 300, 1, no));
        // A write linked elsewhere, or not right after the top record.
        push_undo(&mut stack, write(12, 500, 400, 0, 3));
        push_undo(&mut stack, write(13, 700, 600, 0, 12));
        assert_eq!(stack.len(), 4);
    }
}
