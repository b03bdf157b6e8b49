//! A transaction's undo log: what rolling each of its records back needs
//! ([`UndoEntry`]), what its commit releases ([`Deferred`]) and the bytes
//! it holds for its rollback ([`TxnLog`]).
//!
//! The storage context's change path ([`crate::storage`]) appends each
//! record a transaction logs here as it logs it, and the heap adds the
//! releases and reservations its operations leave; the transaction
//! ([`super::transaction`]) rolls the log back or releases it when it ends.
//! This module is the one part of `txn/` the layers below it use: it
//! depends only on pages, records and types, never on the lifecycle.
//!
//! ## Memory
//!
//! An entry is at most 40 bytes (a compile-time check below). An insert
//! keeps only its slot, a multi-insert only its first slot and count; the
//! pages of an overflow chain it writes are one entry however many there
//! are ([`Undo::Chain`]); a tree insert keeps only its key, appended to
//! the transaction's key arena ([`TxnLog::keys`]) rather than allocated
//! alone, so a load of a million keys makes no allocation per key for its
//! rollback and frees none at its commit; an update, delete or forward
//! keeps its record with the slot's before-image, at most `INLINE_MAX`
//! bytes. So a transaction holds a few dozen bytes per change plus at most
//! two inline tuples, never a copy of a large value (heap essay, "Memory a
//! transaction holds").

use std::borrow::Cow;

use crate::types::{Lsn, PageId, RelationId, SlotId, TupleId, TxnId};
use crate::wal::{Payload, RecordType};

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
    /// Remove the tuples a multi-insert put in the `count` slots from
    /// `first` (a heap-multi-remove): as for `Insert`, their bytes stay on
    /// the page until then, so the undo stack keeps no tuple.
    InsertRun { first: SlotId, count: u16 },
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
    /// Delete the key a tree insert put: bytes `at..at + len` of the
    /// transaction's key arena ([`TxnLog::keys`]). The item stays in the
    /// tree until its undo (the transaction holds the key's lock, and its
    /// later changes to the key are undone first), which reads the rest
    /// from the leaf (`undo_tree_record`), so the stack keeps no copy of
    /// every inserted value.
    TreeInsert { at: u64, len: u16 },
    /// Reverse this record with [`crate::storage::apply::undo_action`] (boxed: an entry per
    /// insert stays small). Only records whose before-image is at most a
    /// tuple's bytes (a heap update, delete or forward) are kept this way;
    /// a large value's before-image is its 24-byte overflow head, its chain
    /// staying untouched until the commit frees it (`Deferred`).
    Record(Box<Payload>),
}

impl Undo {
    /// What undoing `payload` needs, keeping as little of it as that: a
    /// tree insert's key goes to the end of `keys`, the transaction's key
    /// arena ([`TxnLog::keys`]).
    pub(crate) fn of(payload: Cow<'_, Payload>, keys: &mut Vec<u8>) -> Undo {
        match *payload {
            Payload::HeapInsert { slot, .. } => Undo::Insert { slot },
            Payload::HeapMultiInsert {
                first, ref tuples, ..
            } => Undo::InsertRun {
                first,
                count: tuples.run_len(),
            },
            Payload::TreeInsert { ref key, .. } => match u16::try_from(key.len()) {
                Ok(len) => {
                    let at = keys.len() as u64;
                    keys.extend_from_slice(key);
                    Undo::TreeInsert { at, len }
                }
                // Keys are at most a quarter page; kept whole otherwise.
                Err(_) => Undo::Record(Box::new(Payload::TreeInsert {
                    key: key.clone(),
                    rest: Vec::new(),
                })),
            },
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
            Undo::InsertRun { .. } => RecordType::HeapMultiInsert.name(),
            Undo::Chain { .. } => RecordType::OverflowWrite.name(),
            Undo::TreeInsert { .. } => RecordType::TreeInsert.name(),
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
    /// A tree leaf its deletes left empty, and the last key it held (to
    /// find its parent): reclaimed if still empty (`btree::reclaim`).
    ReclaimLeaf(RelationId, PageId, Vec<u8>),
    /// A tree node no meta page names any more (a bulk load's old root):
    /// freed if still an empty leaf (`btree::bulk`).
    FreeNode(RelationId, PageId),
}

/// A transaction's view of the log: its id, last record, what it would
/// have to undo and what it releases at commit.
#[derive(Debug)]
pub(crate) struct TxnLog {
    pub txn: TxnId,
    pub last_lsn: Lsn,
    pub undo: Vec<UndoEntry>,
    /// The keys of the tree inserts on `undo` ([`Undo::TreeInsert`]),
    /// end to end in the order they were pushed.
    pub keys: Vec<u8>,
    /// The buffers of the last tree insert's record (its key and its
    /// item's rest), which the next one builds its record in: a put that
    /// inserts an inline value allocates neither (a replace still copies
    /// the old item for its `TreeDelete`).
    pub spare_key: Vec<u8>,
    pub spare_rest: Vec<u8>,
    pub deferred: Vec<Deferred>,
    /// Bytes this transaction freed on pages and holds for its rollback.
    pub reserved: Vec<(RelationId, PageId, usize)>,
}

/// Most capacity, in bytes, each of a finished log's buffers may have to
/// be kept for the next transaction begun on the same thread
/// ([`LogSpares`]); a larger one goes back to the allocator.
const SPARE_KEEP_BYTES: usize = 4 << 10;

/// The emptied buffers of the last transaction log dropped on this thread,
/// which the next one begun here starts with: a short transaction (a put
/// and its commit) then allocates none of its undo stack, key arena or
/// record buffers.
#[derive(Default)]
struct LogSpares {
    undo: Vec<UndoEntry>,
    keys: Vec<u8>,
    spare_key: Vec<u8>,
    spare_rest: Vec<u8>,
}

thread_local! {
    static LOG_SPARES: std::cell::Cell<Option<LogSpares>> = const { std::cell::Cell::new(None) };
}

/// `v` emptied, if its capacity is within [`SPARE_KEEP_BYTES`]; else a
/// vector that holds nothing.
fn emptied<T>(mut v: Vec<T>) -> Vec<T> {
    if v.capacity() * std::mem::size_of::<T>() > SPARE_KEEP_BYTES {
        return Vec::new();
    }
    v.clear();
    v
}

impl TxnLog {
    pub(crate) fn new(txn: TxnId) -> TxnLog {
        let spares = LOG_SPARES.take().unwrap_or_default();
        TxnLog {
            txn,
            last_lsn: Lsn::ZERO,
            undo: spares.undo,
            keys: spares.keys,
            spare_key: spares.spare_key,
            spare_rest: spares.spare_rest,
            deferred: Vec::new(),
            reserved: Vec::new(),
        }
    }

    /// The key of the [`Undo::TreeInsert`] entry `at`/`len` just popped
    /// off the stack, copied out; `None` when the arena does not hold it.
    /// The arena's tail is released when the key is its last bytes (the
    /// stack is popped in the order it was pushed).
    pub(crate) fn pop_key(&mut self, at: u64, len: u16) -> Option<Vec<u8>> {
        let at = usize::try_from(at).ok()?;
        let end = at.checked_add(usize::from(len))?;
        let key = self.keys.get(at..end)?.to_vec();
        if end == self.keys.len() {
            self.keys.truncate(at);
        }
        Some(key)
    }

    /// Bytes of memory this log holds until its transaction ends: the
    /// undo stack (entries and the before-images they box), the key arena
    /// and the spare record buffers, the deferred releases and the
    /// reservations. A boxed payload is
    /// counted as its size plus its encoded length, which is within a few
    /// bytes of the heap bytes its vectors hold.
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
            + self.keys.capacity()
            + self.spare_key.capacity()
            + self.spare_rest.capacity()
            + boxed
            + self.deferred.capacity() * size_of::<Deferred>()
            + self.reserved.capacity() * size_of::<(RelationId, PageId, usize)>()
    }
}

/// An undo entry per insert: 1 M inserted rows in one transaction keep
/// 40 MB of undo stack, not a copy of every tuple.
const _: () = assert!(std::mem::size_of::<UndoEntry>() <= 40);

/// Gives the log's buffers, emptied, to the next transaction begun on this
/// thread ([`LogSpares`]); entries still on the undo stack are dropped, as
/// they would be with the log.
impl Drop for TxnLog {
    fn drop(&mut self) {
        let spares = LogSpares {
            undo: emptied(std::mem::take(&mut self.undo)),
            keys: emptied(std::mem::take(&mut self.keys)),
            spare_key: emptied(std::mem::take(&mut self.spare_key)),
            spare_rest: emptied(std::mem::take(&mut self.spare_rest)),
        };
        // During the thread's own teardown the slot may be gone: the
        // buffers are then simply freed.
        let _ = LOG_SPARES.try_with(|slot| slot.set(Some(spares)));
    }
}

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

    /// A tree insert's key goes to the arena; popping the entries in the
    /// order they were pushed copies each key out and releases the tail.
    #[test]
    fn tree_insert_keys_live_in_the_arena_until_popped() {
        let mut log = TxnLog::new(TxnId(1));
        let undo = |key: &[u8], log: &mut TxnLog| {
            let payload = Payload::TreeInsert {
                key: key.to_vec(),
                rest: vec![9; 150],
            };
            Undo::of(Cow::Owned(payload), &mut log.keys)
        };
        let first = undo(b"alpha", &mut log);
        let second = undo(b"be", &mut log);
        assert_eq!(log.keys, b"alphabe");
        let (Undo::TreeInsert { at: a1, len: l1 }, Undo::TreeInsert { at: a2, len: l2 }) =
            (&first, &second)
        else {
            panic!("tree inserts kept as {first:?} and {second:?}");
        };
        let (a1, l1, a2, l2) = (*a1, *l1, *a2, *l2);
        assert_eq!(log.pop_key(a2, l2).as_deref(), Some(&b"be"[..]));
        assert_eq!(log.keys, b"alpha");
        // A key past the arena's end is reported, not read.
        assert_eq!(log.pop_key(a1, 9), None);
        assert_eq!(log.pop_key(u64::MAX, 1), None);
        assert_eq!(log.pop_key(a1, l1).as_deref(), Some(&b"alpha"[..]));
        assert!(log.keys.is_empty());
    }
}
