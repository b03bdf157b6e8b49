//! Relations and the heap: tuples in slotted pages, reached through the
//! buffer pool, every change logged before it can reach the disk.
//!
//! A relation is one file of 8 KiB pages (`rel/<id>.heap` in the data
//! directory) registered with the buffer pool under [`FileId`] = its
//! relation id, plus an in-memory [`FreeSpaceMap`]. Relation 0 is the
//! catalog (`heap::catalog`), itself a heap of `(id, name)` tuples.
//!
//! The heap's operations run on the storage context
//! ([`crate::storage::Storage`]): each page change goes through its one
//! change path, which logs it first (redo gate, full page images, invariants
//! 4 and 5) and records what undoing it needs on the transaction's undo log
//! ([`crate::txn::undo`]). The heap decides *which* change to make to which
//! page; the lock manager ([`crate::lock`]) decides who may.
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
//! ## Bulk insert
//!
//! `Storage::insert_many` (`Transaction::insert_many`) inserts many values
//! a page at a time. For the next values it takes a page as a single insert
//! does (the FSM's suggestion for the first of them, else a new page),
//! makes room for the first (compacting if that is what it takes), plans
//! how many of them fit in consecutive slots from the page's next insert
//! slot (`SlottedPage::plan_run`, less the page's reservations), locks
//! each new tuple exclusively without waiting, under the latch, with one
//! pass over the lock table (`LockManager::lock_new_tuples`: a slot a
//! reader has locked ends the run there; a call that will reach the
//! escalation threshold tries it first, `LockManager::expect_tuple_locks`),
//! and logs the run as one
//! `HeapMultiInsert` record. So a page of small tuples costs one latch,
//! one record header, one FSM update and one undo entry (the run's first
//! slot and count); each value still gets its own TupleId and lock, as if
//! inserted alone. A value larger than [`INLINE_MAX`] is inserted alone.
//! Rollback removes a run with one CLR (`HeapMultiRemove`), which frees
//! the slots at once, as rolling back a single insert does.
//!
//! ## Room for rollback
//!
//! A delete, a shrinking update or a move frees bytes on a page that the
//! transaction's rollback needs back. Until the transaction ends, those bytes
//! are *reserved*: the page's free space as other inserts and updates see it
//! is its real free space minus the reservations on it (`Storage::fit`). So
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
//!   its slot (its rollback reads the tuple from the page), a bulk insert's
//!   page only its run's first slot and count; the pages of an
//!   overflow chain it writes are one entry however many there are
//!   (`Undo::Chain`: only where the chain is); an update, delete or
//!   forward keeps its record with the slot's before-image, which is at
//!   most [`INLINE_MAX`] bytes, because a larger value's slot holds only its
//!   24-byte overflow head and the old chain is not touched until the
//!   commit frees it (`Deferred`). A tree insert keeps its key, appended
//!   to the transaction's key arena (`TxnLog::keys`), not allocated alone.
//!   So per change: a few dozen bytes plus at most two inline tuples (the
//!   update's old and new bytes) or a key.
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

pub mod catalog;
mod insert;
mod modify;
mod overflow;
pub(crate) mod read;

use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

use crate::buffer::FileId;
use crate::error::{DbError, Error};
use crate::fsm::FreeSpaceMap;
use crate::types::{RelationId, TupleId};

/// Largest value stored in its slot; larger values go to an overflow chain.
/// A quarter page, so a page always holds several tuples (PostgreSQL's
/// TOAST threshold has the same reason).
pub const INLINE_MAX: usize = 2032;

/// Largest value a tuple may hold (what an overflow chain may hold).
pub const MAX_VALUE_LEN: usize = crate::page::overflow::MAX_CHAIN_LEN as usize;

/// What a relation holds: tuples addressed by TupleId, or an ordered map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelationKind {
    /// A heap of tuples (this module).
    Heap,
    /// A B-link tree of keys and values ([`crate::btree`]).
    Tree,
}

impl RelationKind {
    /// Lower-case name, as in errors and listings.
    pub fn name(self) -> &'static str {
        match self {
            RelationKind::Heap => "heap",
            RelationKind::Tree => "tree",
        }
    }
}

/// One relation: its file, page count and free space map.
#[derive(Debug)]
pub(crate) struct Relation {
    /// Its id (and the buffer pool's [`FileId`] of its file).
    pub id: RelationId,
    /// Its name.
    pub name: String,
    /// Heap or tree. Recovery's placeholders, which precede the catalog,
    /// say heap: redo and undo act on pages and records, never on the kind.
    pub kind: RelationKind,
    /// A tree's structure lock: every tree operation holds it shared for
    /// its length (never across operations, never while waiting for a
    /// lock); reclaiming an empty leaf holds it exclusive, so no descent is
    /// under way while a page leaves the tree (`btree` essay).
    pub structure: parking_lot::RwLock<()>,
    /// A tree's root as last seen (`root << 16 | level`; 0: not yet read),
    /// where descents start instead of reading the meta page each time
    /// (`btree`: a stale root is still a node of its level whose right
    /// links lead to every key of it).
    pub root_hint: std::sync::atomic::AtomicU64,
    /// A tree's routes: a copy of its upper levels where gets start their
    /// descent (`btree::routes`, whose rule they follow); empty until a
    /// get builds them, emptied by whatever holds `structure` exclusively.
    pub routes: arc_swap::ArcSwapOption<crate::btree::routes::Routes>,
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
        kind: RelationKind,
    ) -> Relation {
        Relation {
            id,
            name,
            kind,
            structure: parking_lot::RwLock::new(()),
            root_hint: std::sync::atomic::AtomicU64::new(0),
            routes: arc_swap::ArcSwapOption::empty(),
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

    /// Refuses the relation unless it is of `kind` (a heap operation on a
    /// tree, or the other way round).
    pub(crate) fn expect(&self, kind: RelationKind) -> crate::error::Result<()> {
        if self.kind != kind {
            return Err(DbError::WrongRelationKind {
                relation: self.name.clone(),
                expected: kind.name(),
                found: self.kind.name(),
            }
            .into());
        }
        Ok(())
    }

    /// Number of pages.
    pub(crate) fn page_count(&self) -> u32 {
        self.pages.load(Ordering::Acquire)
    }
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
