//! Logical undo of a transaction's key inserts and deletes (module docs
//! of [`super`], Logging and recovery).
//!
//! A `TreeInsert` or `TreeDelete` record names the leaf the key was on
//! when it was logged, but another transaction's split may have moved the
//! key since. So undo descends from the root again to the leaf that covers
//! the key now, and logs there a CLR whose action is the inverse: a
//! `TreeDelete` of the key for an insert, a `TreeInsert` of the key and its
//! old rest for a delete (splitting the leaf first when it is full; the
//! split is redo-only). The CLR's undo-next is the undone record's
//! previous LSN, so a crash during rollback or recovery resumes after it
//! (invariant 8). The transaction still holds the key's exclusive lock,
//! so nobody else has changed the key meanwhile.

use super::{Path, corrupt};
use crate::buffer::PageWriteGuard;
use crate::error::Result;
use crate::heap::Relation;
use crate::page::tree::{TreePage, item_len};
use crate::storage::Storage;
use crate::txn::undo::TxnLog;
use crate::types::Lsn;
use crate::wal::Payload;

impl Storage {
    /// Undoes a bulk load's root swap: a CLR naming the old root again,
    /// then every page of the tree it replaces freed (redo-only).
    ///
    /// The tree replaced is the one the meta page names now, not the one
    /// the swap installed: the loading transaction may have split the
    /// loaded root since (a new root above it, redo-only, not undone).
    /// Every page reachable from the current root is the load's or one of
    /// those splits': the transaction has held the tree's lock
    /// exclusively since the load, and its later key changes have been
    /// undone before this record. The old, empty root is intact: it is
    /// freed only after a commit (`Deferred::FreeNode`).
    fn undo_root_swap(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        undo_next: Lsn,
        old: (crate::types::PageId, u16),
    ) -> Result<()> {
        let _only = super::routes::restructure(rel);
        let mut mg = self.pool.fetch_write(rel.file(), super::META_PAGE)?;
        let current = crate::page::tree::read_meta(&mg, super::META_PAGE)?;
        let clr = Payload::Compensation {
            undo_next,
            action: Box::new(Payload::TreeRootSwap {
                old: current.0,
                old_level: current.1,
                new: old.0,
                new_level: old.1,
            }),
        };
        self.change(Some(log), rel.id, &mut mg, &clr)?;
        drop(mg);
        super::set_root_hint(rel, old.0, old.1);
        self.free_tree_pages(rel, current.0, current.1)
    }

    /// Undoes a replace of `key` in tree `rel`: its insert of the new rest
    /// (whose undo-next is the delete's LSN, `insert_undo_next`) and the
    /// delete of the old rest `old` before it (undo-next
    /// `delete_undo_next`), two CLRs under one latch of the leaf that holds
    /// the key now. Undone one at a time, the key would be missing from
    /// its leaf between the two while its latch is released, and a reader
    /// finding it missing locks the next key instead, which this
    /// transaction does not hold: it would read a committed key as absent
    /// (the rule a forward replace keeps, `put_step`). A crash between the
    /// two CLRs resumes at the delete's undo (invariant 8).
    pub(crate) fn undo_tree_replace(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        key: &[u8],
        insert_undo_next: Lsn,
        delete_undo_next: Lsn,
        old: Vec<u8>,
    ) -> Result<()> {
        let _shared = rel.structure.read();
        let old_len = item_len(key, &old);
        let (mut g, found) = self.undo_leaf(rel, key, |p, found| {
            Ok(match found {
                Ok(i) => p.total_free() + item_len(key, p.item(i)?.1) >= old_len,
                Err(_) => true,
            })
        })?;
        let pid = g.page_id();
        let Ok(i) = found else {
            return Err(corrupt(
                rel,
                pid,
                "undo of a replace finds the key absent".to_string(),
            ));
        };
        let new = self.node(rel, &g, pid, 0)?.item(i)?.1.to_vec();
        for (undo_next, action) in [
            (
                insert_undo_next,
                Payload::TreeDelete {
                    key: key.to_vec(),
                    rest: new,
                },
            ),
            (
                delete_undo_next,
                Payload::TreeInsert {
                    key: key.to_vec(),
                    rest: old,
                },
            ),
        ] {
            let clr = Payload::Compensation {
                undo_next,
                action: Box::new(action),
            };
            self.change(Some(log), rel.id, &mut g, &clr)?;
        }
        Ok(())
    }

    /// The leaf that covers `key` now (undo descends again: module docs),
    /// exclusively latched, with `key`'s place in it (`Err`: absent), once
    /// `room` says what undo will log there fits; otherwise the leaf is
    /// split first (redo-only) and the descent starts over.
    fn undo_leaf(
        &self,
        rel: &Relation,
        key: &[u8],
        room: impl Fn(&TreePage<&[u8]>, std::result::Result<usize, usize>) -> Result<bool>,
    ) -> Result<(PageWriteGuard<'_>, std::result::Result<usize, usize>)> {
        let mut path = Path::new();
        loop {
            let g = self.writable_leaf(rel, key, &mut path)?;
            let pid = g.page_id();
            let p = self.node(rel, &g, pid, 0)?;
            let found = p.search(key)?;
            if room(&p, found)? {
                return Ok((g, found));
            }
            self.split(rel, g, 0, &mut path)?;
        }
    }

    /// Undoes `record` (a `TreeInsert` or `TreeDelete` of `log`'s
    /// transaction on tree `rel`), logging the CLR with `undo_next`. An
    /// insert's rest is not needed (the undo stack keeps only its key,
    /// `Undo::TreeInsert`): the CLR's `TreeDelete` carries the rest the
    /// leaf holds, which is the inserted one, as the transaction's later
    /// changes to the key are undone first.
    pub(crate) fn undo_tree_record(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        undo_next: Lsn,
        record: &Payload,
    ) -> Result<()> {
        if let Payload::TreeRootSwap { old, old_level, .. } = *record {
            return self.undo_root_swap(log, rel, undo_next, (old, old_level));
        }
        let _shared = rel.structure.read();
        let (key, action) = match record {
            Payload::TreeInsert { key, .. } => (
                key,
                Payload::TreeDelete {
                    key: key.clone(),
                    rest: Vec::new(),
                },
            ),
            Payload::TreeDelete { key, rest } => (
                key,
                Payload::TreeInsert {
                    key: key.clone(),
                    rest: rest.clone(),
                },
            ),
            other => {
                return Err(corrupt(
                    rel,
                    crate::types::PageId(0),
                    format!("a {} record undone as a tree record", other.kind().name()),
                ));
            }
        };
        let need = match &action {
            Payload::TreeInsert { key, rest } => item_len(key, rest),
            _ => 0,
        };
        let inserts = matches!(action, Payload::TreeInsert { .. });
        // A leaf that contradicts the record comes back as it is, to be
        // reported below.
        let (mut g, found) = self.undo_leaf(rel, key, |p, found| {
            Ok(found.is_ok() == inserts || p.fits(need))
        })?;
        let pid = g.page_id();
        let present = found.is_ok();
        if present == inserts {
            return Err(corrupt(
                rel,
                pid,
                format!(
                    "undo of a {} finds the key {}",
                    record.kind().name(),
                    if present { "present" } else { "absent" }
                ),
            ));
        }
        let mut action = action;
        if let (Payload::TreeDelete { rest, .. }, Ok(i)) = (&mut action, found) {
            *rest = self.node(rel, &g, pid, 0)?.item(i)?.1.to_vec();
        }
        let clr = Payload::Compensation {
            undo_next,
            action: Box::new(action),
        };
        self.change(Some(log), rel.id, &mut g, &clr)?;
        Ok(())
    }
}
