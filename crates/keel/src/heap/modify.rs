//! Updating and deleting tuples, rolling a transaction back, and releasing
//! what a committed transaction freed.

use std::sync::Arc;

use super::read::{Found, slot_of};
use super::{Relation, corrupt, no_tuple};
use crate::buffer::PageWriteGuard;
use crate::error::{DbError, Error, ErrorCause, PageError, Result};
use crate::fsm::EMPTY_PAGE_FREE;
use crate::page::page_lsn;
use crate::page::page_type;
use crate::page::slotted::alloc_len;
use crate::page::slotted::content_name;
use crate::page::{Fit, MAX_TUPLE_LEN, PageType, SlotContent, SlottedPage, TupleFlags};
use crate::storage::Storage;
use crate::storage::apply::undo_insert;
use crate::txn::undo::{Deferred, TxnLog, Undo, UndoEntry};
use crate::types::{Lsn, PageId, RelationId, SlotId, TupleId};
use crate::wal::{Payload, SlotImage};

/// The delete of a replace whose insert is `insert` (of `key`, just taken
/// off `log`'s undo stack), taken off the stack too: the entry below it,
/// when it is a tree delete of the same key in the same tree logged just
/// before the insert (`put_step` logs a replace so, under one latch).
/// Returns the delete's previous LSN and the old rest it removed.
fn replaced_by(log: &mut TxnLog, insert: &UndoEntry, key: &[u8]) -> Option<(Lsn, Vec<u8>)> {
    let below = log.undo.last()?;
    let Undo::Record(p) = &below.undo else {
        return None;
    };
    let Payload::TreeDelete { key: k, rest } = &**p else {
        return None;
    };
    if below.relation != insert.relation || below.lsn != insert.prev_lsn || k != key {
        return None;
    }
    let found = (below.prev_lsn, rest.clone());
    log.undo.pop();
    Some(found)
}

impl Storage {
    /// Whether a tuple of `len` bytes fits on the latched heap page, counting
    /// the bytes running transactions reserved there as taken.
    pub(crate) fn fit(&self, rel: &Relation, page: &SlottedPage<&[u8]>, len: usize) -> Fit {
        let reserved = self.reserved_on(rel, page.page_id());
        let fit = page.fit(len);
        if reserved == 0 || fit == Fit::No {
            return fit;
        }
        let need = page.fit_need(len) + reserved;
        if need > page.total_free() {
            Fit::No
        } else if need > page.contiguous_free() {
            Fit::AfterCompaction
        } else {
            Fit::Now
        }
    }

    pub(crate) fn reserved_on(&self, rel: &Relation, pid: PageId) -> usize {
        let r = self.reserved.lock();
        if r.is_empty() {
            return 0;
        }
        r.get(&(rel.id, pid)).copied().unwrap_or(0)
    }

    /// Holds `bytes` freed on a page for `log`'s rollback.
    fn reserve(&self, log: &mut TxnLog, rel: &Relation, pid: PageId, bytes: usize) {
        if bytes == 0 {
            return;
        }
        *self.reserved.lock().entry((rel.id, pid)).or_insert(0) += bytes;
        log.reserved.push((rel.id, pid, bytes));
    }

    /// Gives back everything `log` reserved (its transaction ended).
    pub(crate) fn release_reservations(&self, log: &mut TxnLog) {
        if log.reserved.is_empty() {
            return;
        }
        let mut r = self.reserved.lock();
        for (rel, pid, bytes) in log.reserved.drain(..) {
            if let Some(v) = r.get_mut(&(rel, pid)) {
                *v = v.saturating_sub(bytes);
                if *v == 0 {
                    r.remove(&(rel, pid));
                }
            }
        }
    }

    /// Replaces the value of the tuple at home address `tid`.
    pub(crate) fn update(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        tid: TupleId,
        value: &[u8],
    ) -> Result<()> {
        if self.home(rel, tid)? == Found::Nothing {
            return Err(no_tuple(rel, tid));
        }
        let (bytes, flags) = self.stored_form(log, rel, value)?;
        // Until a slot holds the new bytes, a failure leaves their chain
        // (if any) to nobody: it is rolled back (`abandon_chain`).
        let mut placed = false;
        let updated = self.update_stored(log, rel, tid, &bytes, flags, &mut placed);
        if updated.is_err() && !placed {
            self.abandon(log, rel, &bytes, flags)?;
        }
        updated
    }

    /// [`update`](Self::update) with the new value's stored form; sets
    /// `placed` once a slot holds it.
    fn update_stored(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        tid: TupleId,
        bytes: &[u8],
        flags: TupleFlags,
        placed: &mut bool,
    ) -> Result<()> {
        let mut g = self.pool.fetch_write(rel.file(), tid.page)?;
        match slot_of(&g, tid.page, tid.slot)? {
            Found::Stored(old, old_flags) if !old_flags.contains(TupleFlags::MOVED_IN) => {
                let (old, release) = self.released_image(rel, tid, old, old_flags)?;
                if self.update_in_place(log, rel, &mut g, tid, &old, bytes, flags)? {
                    *placed = true;
                    log.deferred.extend(release);
                    return Ok(());
                }
                drop(g);
                let moved = flags.union(TupleFlags::MOVED_IN);
                let target = self.insert_tuple(log, rel, bytes, moved)?;
                self.repoint_or_unplace(log, rel, tid, target, old, bytes, moved, placed)?;
                log.deferred.extend(release);
                Ok(())
            }
            Found::Forward(at) => {
                drop(g);
                self.update_moved(log, rel, tid, at, bytes, flags, placed)
            }
            Found::Stored(..) | Found::Nothing => Err(no_tuple(rel, tid)),
        }
    }

    /// Updates a tuple that lives at `at`, away from its home `tid`; sets
    /// `placed` once a slot holds the new bytes.
    #[allow(clippy::too_many_arguments)]
    fn update_moved(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        tid: TupleId,
        at: TupleId,
        bytes: &[u8],
        flags: TupleFlags,
        placed: &mut bool,
    ) -> Result<()> {
        let moved = flags.union(TupleFlags::MOVED_IN);
        let mut g = self.pool.fetch_write(rel.file(), at.page)?;
        let Found::Stored(old, old_flags) = slot_of(&g, at.page, at.slot)? else {
            return Err(corrupt(
                rel,
                tid,
                format!("forward to {at}, which holds no tuple"),
            ));
        };
        let (old, release) = self.released_image(rel, at, old, old_flags)?;
        if self.update_in_place(log, rel, &mut g, at, &old, bytes, moved)? {
            *placed = true;
            log.deferred.extend(release);
            return Ok(());
        }
        drop(g);
        let target = self.insert_tuple(log, rel, bytes, moved)?;
        let forward = SlotImage::Forward(at);
        self.repoint_or_unplace(log, rel, tid, target, forward, bytes, moved, placed)?;
        let mut g = self.pool.fetch_write(rel.file(), at.page)?;
        self.delete_slot(log, rel, &mut g, at, old)?;
        log.deferred.extend(release);
        Ok(())
    }

    /// The before-image of a tuple being replaced or deleted, and the
    /// release of its overflow chain (if any) when the transaction
    /// commits: queued by the caller only once no slot points at the chain
    /// any more, so a change that fails part way (a page that cannot be
    /// read, no frame free) never frees a chain its tuple still holds.
    fn released_image(
        &self,
        rel: &Relation,
        at: TupleId,
        bytes: Vec<u8>,
        flags: TupleFlags,
    ) -> Result<(SlotImage, Option<Deferred>)> {
        let release = match flags.contains(TupleFlags::OVERFLOW_HEAD) {
            true => Some(Deferred::FreeChain(
                rel.id,
                self.read_head(rel, at.page, &bytes)?,
            )),
            false => None,
        };
        Ok((SlotImage::Tuple { flags, bytes }, release))
    }

    /// Replaces the tuple at `at` in place (compacting first if that makes
    /// room). Returns `false`, changing nothing, when it does not fit.
    #[allow(clippy::too_many_arguments)]
    fn update_in_place(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        g: &mut PageWriteGuard<'_>,
        at: TupleId,
        old: &SlotImage,
        bytes: &[u8],
        flags: TupleFlags,
    ) -> Result<bool> {
        let SlotImage::Tuple {
            bytes: old_bytes, ..
        } = old
        else {
            return Ok(false);
        };
        let (old_alloc, new_alloc) = (alloc_len(old_bytes.len()), alloc_len(bytes.len()));
        let page = SlottedPage::open(&g[..], at.page)?;
        if new_alloc > old_alloc {
            // The tuple's own old bytes count: when only they make the
            // room, the page update compacts around them itself.
            let room = page.total_free() + old_alloc;
            if bytes.len() > MAX_TUPLE_LEN || new_alloc + self.reserved_on(rel, at.page) > room {
                return Ok(false);
            }
            if new_alloc > page.contiguous_free() && new_alloc <= page.total_free() {
                self.compact(rel, g)?;
            }
        }
        let payload = Payload::HeapUpdate {
            slot: at.slot,
            old: old.clone(),
            new_flags: flags,
            new: bytes.to_vec(),
        };
        self.change(Some(log), rel.id, g, &payload)?;
        if new_alloc < old_alloc {
            // Undo grows the tuple back, and a growing update takes its new
            // room before it releases the old: hold the whole old size.
            self.reserve(log, rel, at.page, old_alloc);
        }
        self.note_free(rel, g);
        Ok(true)
    }

    /// Points home slot `tid` at `target`; it held `old`.
    fn repoint(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        tid: TupleId,
        target: TupleId,
        old: SlotImage,
    ) -> Result<()> {
        let mut g = self.pool.fetch_write(rel.file(), tid.page)?;
        let freed = match &old {
            // Undo puts the tuple back before releasing the forward's bytes.
            SlotImage::Tuple { bytes, .. } => alloc_len(bytes.len()),
            SlotImage::Forward(_) => 0,
        };
        let payload = Payload::HeapForward {
            slot: tid.slot,
            target,
            old,
        };
        self.change(Some(log), rel.id, &mut g, &payload)?;
        self.reserve(log, rel, tid.page, freed);
        self.note_free(rel, &g);
        Ok(())
    }

    /// Points home `tid` (whose slot held `old`) at the new tuple just
    /// inserted at `target`; sets `placed` once the home points there. When
    /// the home cannot be changed (its page fails to read), the new tuple
    /// would be reachable from nowhere: it is deleted again, as a change of
    /// this transaction, so its slot and its chain go with the
    /// transaction's end like any deleted tuple's (`placed` stays false, so
    /// the caller releases the chain at commit; a rollback undoes the
    /// delete and then the insert). Only if that delete fails too is the
    /// tuple left in place (`placed` set, so no chain something points at
    /// is ever released).
    #[allow(clippy::too_many_arguments)]
    fn repoint_or_unplace(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        tid: TupleId,
        target: TupleId,
        old: SlotImage,
        bytes: &[u8],
        flags: TupleFlags,
        placed: &mut bool,
    ) -> Result<()> {
        let Err(e) = self.repoint(log, rel, tid, target, old) else {
            *placed = true;
            return Ok(());
        };
        let image = SlotImage::Tuple {
            flags,
            bytes: bytes.to_vec(),
        };
        let unplaced = self
            .pool
            .fetch_write(rel.file(), target.page)
            .map_err(Error::from)
            .and_then(|mut g| self.delete_slot(log, rel, &mut g, target, image));
        *placed = unplaced.is_err();
        Err(e)
    }

    /// Deletes the tuple at home address `tid`.
    pub(crate) fn delete(&self, log: &mut TxnLog, rel: &Relation, tid: TupleId) -> Result<()> {
        if tid.page.0 >= rel.page_count() {
            return Err(no_tuple(rel, tid));
        }
        let mut g = self.pool.fetch_write(rel.file(), tid.page)?;
        match slot_of(&g, tid.page, tid.slot)? {
            Found::Stored(old, flags) if !flags.contains(TupleFlags::MOVED_IN) => {
                let (old, release) = self.released_image(rel, tid, old, flags)?;
                self.delete_slot(log, rel, &mut g, tid, old)?;
                log.deferred.extend(release);
                Ok(())
            }
            Found::Forward(at) => {
                self.delete_slot(log, rel, &mut g, tid, SlotImage::Forward(at))?;
                drop(g);
                let mut g = self.pool.fetch_write(rel.file(), at.page)?;
                let Found::Stored(old, flags) = slot_of(&g, at.page, at.slot)? else {
                    return Err(corrupt(
                        rel,
                        tid,
                        format!("forward to {at}, which holds no tuple"),
                    ));
                };
                let (old, release) = self.released_image(rel, at, old, flags)?;
                self.delete_slot(log, rel, &mut g, at, old)?;
                log.deferred.extend(release);
                Ok(())
            }
            Found::Stored(..) | Found::Nothing => Err(no_tuple(rel, tid)),
        }
    }

    /// Deletes slot `at` (which holds `old`) on the latched page; the slot
    /// is freed for reuse once the transaction commits.
    fn delete_slot(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        g: &mut PageWriteGuard<'_>,
        at: TupleId,
        old: SlotImage,
    ) -> Result<()> {
        let freed = match &old {
            SlotImage::Tuple { bytes, .. } => alloc_len(bytes.len()),
            SlotImage::Forward(_) => alloc_len(0),
        };
        let payload = Payload::HeapDelete { slot: at.slot, old };
        self.change(Some(log), rel.id, g, &payload)?;
        self.reserve(log, rel, at.page, freed);
        log.deferred.push(Deferred::FreeSlot(rel.id, at));
        self.note_free(rel, g);
        Ok(())
    }

    /// A change that wrote a new value's overflow chain stored nothing
    /// that points at it (an update that found no tuple, an insert whose
    /// tuple found no page): the chain is rolled back (`abandon_chain`).
    pub(super) fn abandon(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        bytes: &[u8],
        flags: TupleFlags,
    ) -> Result<()> {
        if flags.contains(TupleFlags::OVERFLOW_HEAD) {
            let head = crate::page::OverflowHead::decode(bytes, PageId(0))?;
            self.abandon_chain(log, rel, head)?;
        }
        Ok(())
    }

    /// Frees every dead slot of heap page `pid` (each with a redo-only
    /// record, as a committed delete's slot is freed): only when no
    /// transaction can roll back into one, which is the open after
    /// recovery. A page that is not a heap page is left alone.
    pub(crate) fn free_dead_slots(&self, rel: &Relation, pid: PageId) -> Result<()> {
        let mut g = self.pool.fetch_write(rel.file(), pid)?;
        if page_type(&g) != Some(PageType::Heap) {
            return Ok(());
        }
        let dead: Vec<SlotId> = {
            let page = SlottedPage::open(&g[..], pid)?;
            (0..page.slot_count())
                .map(SlotId)
                .filter(|&s| page.get(s).is_ok_and(|c| c == SlotContent::Dead))
                .collect()
        };
        for slot in dead.into_iter().rev() {
            self.change(None, rel.id, &mut g, &Payload::HeapFreeSlot { slot })?;
        }
        self.note_free(rel, &g);
        Ok(())
    }

    /// Records the latched heap page's free space (less reservations) in
    /// the FSM.
    pub(crate) fn note_free(&self, rel: &Relation, g: &PageWriteGuard<'_>) {
        let pid = g.page_id();
        match page_type(g) {
            Some(PageType::Heap) => {
                if let Ok(p) = SlottedPage::open(&g[..], pid) {
                    let r = self.reserved_on(rel, pid);
                    rel.fsm.update(
                        pid,
                        p.contiguous_free().saturating_sub(r),
                        p.total_free().saturating_sub(r),
                    );
                }
            }
            Some(PageType::Free) => rel.fsm.update(pid, EMPTY_PAGE_FREE, EMPTY_PAGE_FREE),
            _ => {
                rel.fsm.remove(pid);
            }
        }
    }

    /// Rolls back every change of `log`'s transaction, newest first, each
    /// with a compensation record (invariant 8), then logs the abort.
    /// `lookup` finds a relation by id.
    pub(crate) fn rollback(
        &self,
        log: &mut TxnLog,
        lookup: &dyn Fn(RelationId) -> Option<Arc<Relation>>,
    ) -> Result<()> {
        let txn = log.txn;
        while let Some(entry) = log.undo.pop() {
            let Some(rel) = lookup(entry.relation) else {
                continue;
            };
            let failed = |e: Error| DbError::Rollback {
                txn,
                lsn: entry.lsn,
                relation: rel.id,
                page: entry.page,
                undo: entry.undo.name(),
                source: ErrorCause::new(e),
            };
            if let Some(mut chain) = ChainUndo::of(&entry) {
                self.undo_chain(log, &rel, &mut chain).map_err(failed)?;
                continue;
            }
            if let Undo::TreeInsert { at, len } = entry.undo {
                let key = log.pop_key(at, len).ok_or_else(|| {
                    failed(corrupt(
                        &rel,
                        format!("tree page {}", entry.page),
                        format!("the key of the undo entry at {} (bytes {at}, {len} long) is not in the transaction's key arena", entry.lsn),
                    ))
                })?;
                // A replace's delete and insert are undone together.
                if let Some((delete_prev, old)) = replaced_by(log, &entry, &key) {
                    self.undo_tree_replace(log, &rel, &key, entry.prev_lsn, delete_prev, old)
                        .map_err(failed)?;
                    continue;
                }
                let record = Payload::TreeInsert {
                    key,
                    rest: Vec::new(),
                };
                self.undo_tree_record(log, &rel, entry.prev_lsn, &record)
                    .map_err(failed)?;
                continue;
            }
            if let Undo::Record(p) = &entry.undo
                && matches!(
                    **p,
                    Payload::TreeInsert { .. }
                        | Payload::TreeDelete { .. }
                        | Payload::TreeRootSwap { .. }
                )
            {
                self.undo_tree_record(log, &rel, entry.prev_lsn, p)
                    .map_err(failed)?;
                continue;
            }
            let mut g = self
                .pool
                .fetch_write(rel.file(), entry.page)
                .map_err(|e| failed(e.into()))?;
            let action = match &entry.undo {
                Undo::Insert { slot } => inserted_away(&g, entry.page, *slot).map_err(failed)?,
                Undo::InsertRun { first, count } => Payload::HeapMultiRemove {
                    first: *first,
                    count: *count,
                },
                Undo::Chain { .. } | Undo::TreeInsert { .. } => continue, // rolled back above
                Undo::Record(p) => match crate::storage::apply::undo_action(p) {
                    Some(action) => action,
                    None => continue,
                },
            };
            let clr = Payload::Compensation {
                undo_next: entry.prev_lsn,
                action: Box::new(action),
            };
            let undone = match self.change(Some(log), rel.id, &mut g, &clr) {
                Err(Error::Page(PageError::DoesNotFit { .. })) => {
                    self.compact(&rel, &mut g).map_err(failed)?;
                    self.change(Some(log), rel.id, &mut g, &clr)
                }
                other => other,
            };
            undone.map_err(failed)?;
            self.note_free(&rel, &g);
        }
        log.deferred.clear();
        self.log_txn(log, &Payload::Abort)?;
        self.release_reservations(log);
        Ok(())
    }

    /// Rolls back at once `entry`, an [`Undo::Chain`] entry just taken off
    /// the top of `log`'s undo stack, for a chain nothing points at
    /// (`abandon_chain`). When that fails part way, what is left of the
    /// chain goes back on the undo stack (a rollback frees it) and is
    /// queued for release at the commit, as an abandoned chain that could
    /// not be rolled back is, and the failure is returned, naming the
    /// entry as a rollback does ([`DbError::Rollback`]).
    pub(crate) fn undo_abandoned_chain(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        entry: UndoEntry,
    ) -> Result<()> {
        let Some(mut chain) = ChainUndo::of(&entry) else {
            return Ok(());
        };
        let Err(e) = self.undo_chain(log, rel, &mut chain) else {
            return Ok(());
        };
        if chain.pages > 0 {
            log.undo.push(chain.entry(rel.id));
            let left = crate::page::OverflowHead {
                total_len: 0,
                first_page: chain.head,
                page_count: chain.pages,
                value_crc: 0,
            };
            log.deferred.push(Deferred::FreeChain(rel.id, left));
        }
        Err(DbError::Rollback {
            txn: log.txn,
            lsn: entry.lsn,
            relation: rel.id,
            page: entry.page,
            undo: entry.undo.name(),
            source: ErrorCause::new(e),
        }
        .into())
    }

    /// Frees the pages of the overflow chunks `chain` stands for
    /// ([`Undo::Chain`]), newest first, each with its own CLR: its undo-next
    /// is the record that wrote the next older chunk (the LSN of the page
    /// this one links to: nothing changes an overflow page between its
    /// write and its free), and for the oldest the record before the chain.
    /// These are exactly the CLRs that undoing each `OverflowWrite` alone
    /// logs, so recovery, which reads the records back one by one, agrees
    /// (invariant 8). Each page is checked to be the chunk the chain
    /// expects before it is freed; one page is latched at a time
    /// (invariant 11). `chain` is kept at what is left to free, so after
    /// an error it stands for the pages not freed.
    fn undo_chain(&self, log: &mut TxnLog, rel: &Relation, chain: &mut ChainUndo) -> Result<()> {
        while chain.pages > 0 {
            let (pid, lsn, index, next) = (chain.head, chain.lsn, chain.index, chain.next);
            // `push_undo` merged only chunks whose index + 1 fits.
            let older_index = index.saturating_add(1);
            let older = match chain.pages {
                1 => None,
                _ => Some(self.chunk_at(rel, PageId(next), older_index)?),
            };
            let undo_next = older.map_or(chain.prev_lsn, |o| o.lsn);
            let mut g = self.pool.fetch_write(rel.file(), pid)?;
            let here = chunk_of(&g, pid, index)?;
            if here.lsn != lsn || here.next != next {
                return Err(corrupt(
                    rel,
                    format!("overflow page {pid}"),
                    format!(
                        "holds chunk {index} at LSN {} linked to page {}; its rollback \
                         expects LSN {lsn} linked to page {next}",
                        here.lsn, here.next
                    ),
                ));
            }
            let clr = Payload::Compensation {
                undo_next,
                action: Box::new(Payload::OverflowFree),
            };
            self.change(Some(log), rel.id, &mut g, &clr)?;
            self.note_free(rel, &g);
            drop(g);
            chain.pages -= 1;
            if let Some(o) = older {
                (chain.head, chain.lsn) = (PageId(next), o.lsn);
                (chain.index, chain.next) = (older_index, o.next);
            }
        }
        Ok(())
    }

    /// The overflow chunk `index` a rollback expects on page `pid`.
    fn chunk_at(&self, rel: &Relation, pid: PageId, index: u32) -> Result<Chunk> {
        if pid.0 >= rel.page_count() {
            return Err(corrupt(
                rel,
                format!("overflow chunk {index}"),
                format!("its rollback expects it on page {pid}, past the end of the relation"),
            ));
        }
        let g = self.pool.fetch_read(rel.file(), pid)?;
        chunk_of(&g, pid, index)
    }

    /// Releases what a committed transaction freed (its commit is durable):
    /// dead slots become reusable, old overflow chains free pages. A
    /// release that fails leaks its space, never data, and the others are
    /// still tried; but a fatal failure (a page write or the log failed)
    /// ends the releases: the caller poisons the database with it
    /// (invariant 16: nothing more is written), and the open after the
    /// crash frees what this commit released and no record freed.
    /// Returns how many releases failed, and the fatal error if one was.
    pub(crate) fn after_commit(
        &self,
        log: &mut TxnLog,
        lookup: &dyn Fn(RelationId) -> Option<Arc<Relation>>,
    ) -> (u64, Option<Error>) {
        self.release_reservations(log);
        let mut failed = 0;
        for d in std::mem::take(&mut log.deferred) {
            if let Err(e) = self.release(d, lookup) {
                failed += 1;
                if e.class() == crate::ErrorClass::Fatal {
                    return (failed, Some(e));
                }
            }
        }
        (failed, None)
    }

    /// One release of [`after_commit`](Self::after_commit).
    fn release(
        &self,
        d: Deferred,
        lookup: &dyn Fn(RelationId) -> Option<Arc<Relation>>,
    ) -> Result<()> {
        match d {
            Deferred::FreeSlot(rel, tid) => {
                let Some(rel) = lookup(rel) else {
                    return Ok(());
                };
                let mut g = self.pool.fetch_write(rel.file(), tid.page)?;
                let dead = page_type(&g) == Some(PageType::Heap)
                    && SlottedPage::open(&g[..], tid.page)?
                        .get(tid.slot)
                        .is_ok_and(|c| c == crate::page::SlotContent::Dead);
                if dead {
                    self.change(
                        None,
                        rel.id,
                        &mut g,
                        &Payload::HeapFreeSlot { slot: tid.slot },
                    )?;
                    self.note_free(&rel, &g);
                }
                Ok(())
            }
            Deferred::FreeChain(rel, head) => match lookup(rel) {
                Some(rel) => self.free_chain(&rel, head, None),
                None => Ok(()),
            },
            Deferred::ReclaimLeaf(rel, leaf, key) => match lookup(rel) {
                Some(rel) => self.reclaim_leaf(&rel, leaf, &key),
                None => Ok(()),
            },
            Deferred::FreeNode(rel, pid) => match lookup(rel) {
                Some(rel) => self.free_unused_root(&rel, pid),
                None => Ok(()),
            },
        }
    }
}

/// The action that removes the tuple a transaction inserted in `slot`
/// ([`undo_insert`]), once the slot is checked to hold a tuple (undo runs
/// newest first, so the transaction's later changes to it are already
/// reversed and it is the inserted tuple again).
fn inserted_away(g: &PageWriteGuard<'_>, pid: PageId, slot: SlotId) -> Result<Payload> {
    match SlottedPage::open(&g[..], pid)?.get(slot)? {
        SlotContent::Tuple { .. } => Ok(undo_insert(slot)),
        other => Err(PageError::SlotNotLive {
            slot,
            state: content_name(&other),
        }
        .into()),
    }
}

/// An [`Undo::Chain`] entry being rolled back.
struct ChainUndo {
    head: PageId,
    lsn: Lsn,
    prev_lsn: Lsn,
    pages: u32,
    index: u32,
    next: u32,
}

impl ChainUndo {
    /// The chain `entry` stands for, if it is an [`Undo::Chain`] entry.
    fn of(entry: &UndoEntry) -> Option<ChainUndo> {
        let Undo::Chain { pages, index, next } = entry.undo else {
            return None;
        };
        Some(ChainUndo {
            head: entry.page,
            lsn: entry.lsn,
            prev_lsn: entry.prev_lsn,
            pages,
            index,
            next,
        })
    }

    /// The undo entry of relation `relation` that stands for this chain.
    fn entry(&self, relation: RelationId) -> UndoEntry {
        UndoEntry {
            relation,
            page: self.head,
            lsn: self.lsn,
            prev_lsn: self.prev_lsn,
            undo: Undo::Chain {
                pages: self.pages,
                index: self.index,
                next: self.next,
            },
        }
    }
}

/// An overflow page as rollback checks it: the LSN of the record that
/// wrote it and its link.
#[derive(Clone, Copy)]
struct Chunk {
    lsn: Lsn,
    next: u32,
}

/// Reads the overflow page `pid`, which must hold chunk `index`.
fn chunk_of(page: &[u8], pid: PageId, index: u32) -> Result<Chunk> {
    let o = crate::page::OverflowPage::open(page, pid)?;
    if o.chunk_index() != index {
        return Err(PageError::Corrupted {
            page_id: pid,
            offset: crate::page::overflow::CHUNK_INDEX_OFFSET,
            reason: format!(
                "holds overflow chunk {} where a rollback expects chunk {index}",
                o.chunk_index()
            ),
        }
        .into());
    }
    Ok(Chunk {
        lsn: page_lsn(page).unwrap_or(Lsn::ZERO),
        next: o.next_page(),
    })
}
