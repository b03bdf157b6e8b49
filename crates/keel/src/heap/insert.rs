//! Inserting tuples and creating pages: the FSM loop, compaction before an
//! insert, bulk inserts a page at a time, and extending a relation.

use std::sync::atomic::Ordering;

use super::{INLINE_MAX, MAX_VALUE_LEN, Relation, corrupt};
use crate::buffer::PageWriteGuard;
use crate::error::{DbError, Result};
use crate::fsm::{EMPTY_PAGE_FREE, request_bytes};
use crate::lock::{LockMode, LockTarget};
use crate::page::page_type;
use crate::page::{Fit, PageType, SlottedPage, TupleFlags};
use crate::storage::Storage;
use crate::txn::undo::TxnLog;
use crate::types::{PageId, SlotId, TupleId};
use crate::wal::{Payload, TupleBatch};

/// How many pages the FSM may suggest before the relation is extended.
/// Each wrong suggestion corrects the FSM, so misses do not repeat.
const FSM_ATTEMPTS: usize = 8;

impl Storage {
    /// Inserts `value` into `rel` in `log`'s transaction (an overflow chain
    /// first when it is larger than [`INLINE_MAX`]).
    pub(crate) fn insert(&self, log: &mut TxnLog, rel: &Relation, value: &[u8]) -> Result<TupleId> {
        let (bytes, flags) = self.stored_form(log, rel, value)?;
        self.insert_tuple(log, rel, &bytes, flags).or_else(|e| {
            self.abandon(log, rel, &bytes, flags)?;
            Err(e)
        })
    }

    /// Inserts stored bytes (a value or an overflow head) on some page.
    pub(crate) fn insert_tuple(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        bytes: &[u8],
        flags: TupleFlags,
    ) -> Result<TupleId> {
        self.on_some_page(rel, request_bytes(bytes.len()), |g| {
            self.insert_on(log, rel, g, bytes, flags)
        })
    }

    /// Inserts `values` in order and returns their addresses. A value
    /// larger than [`INLINE_MAX`] takes [`insert`](Self::insert)'s path (its
    /// overflow chain, then its head); every run of inline values between
    /// them fills one page at a time and is logged as one heap-multi-insert
    /// record per page (module docs of [`crate::heap`], "Bulk insert").
    /// Every value is checked against [`MAX_VALUE_LEN`] before anything is
    /// inserted.
    pub(crate) fn insert_many(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        values: &[&[u8]],
    ) -> Result<Vec<TupleId>> {
        if let Some(v) = values.iter().find(|v| v.len() > MAX_VALUE_LEN) {
            return Err(DbError::ValueTooLarge {
                len: v.len(),
                max: MAX_VALUE_LEN,
            }
            .into());
        }
        if log.txn.0 != 0 {
            let x = LockMode::Exclusive;
            self.locks
                .expect_tuple_locks(log.txn, rel.id, values.len(), x)?;
        }
        let mut tids = Vec::with_capacity(values.len());
        let mut rest = values;
        while let Some((first, after)) = rest.split_first() {
            if first.len() > INLINE_MAX {
                tids.push(self.insert(log, rel, first)?);
                rest = after;
                continue;
            }
            let run = rest.iter().position(|v| v.len() > INLINE_MAX);
            let (mut inline, after) = rest.split_at(run.unwrap_or(rest.len()));
            while let Some(first) = inline.first() {
                let placed = self.on_some_page(rel, request_bytes(first.len()), |g| {
                    self.insert_run_on(log, rel, g, inline, &mut tids)
                })?;
                inline = &inline[placed..];
            }
            rest = after;
        }
        Ok(tids)
    }

    /// Runs `attempt` on a page that may have `need` free bytes (one the
    /// FSM suggests, else a new one) until it places something there, and
    /// returns what it returned. `attempt` returns `None` when the page
    /// will not do; it has corrected the FSM then.
    fn on_some_page<T>(
        &self,
        rel: &Relation,
        need: usize,
        mut attempt: impl FnMut(&mut PageWriteGuard<'_>) -> Result<Option<T>>,
    ) -> Result<T> {
        for _ in 0..FSM_ATTEMPTS {
            let Some((pid, _)) = rel.fsm.find(need) else {
                break;
            };
            if pid.0 >= rel.page_count() {
                rel.fsm.remove(pid);
                continue;
            }
            let mut g = self.pool.fetch_write(rel.file(), pid)?;
            if let Some(done) = attempt(&mut g)? {
                return Ok(done);
            }
        }
        // A new page always has room; it is refused only when a reader
        // holds a lock on the address its first slot would get.
        for _ in 0..FSM_ATTEMPTS {
            let mut g = self.extend(rel)?;
            if let Some(done) = attempt(&mut g)? {
                return Ok(done);
            }
            self.note_free(rel, &g);
        }
        Err(corrupt(
            rel,
            "its last page",
            "new pages refuse every insert".into(),
        ))
    }

    /// Formats a free page as a heap page; whether the latched page is a
    /// heap page now (else the FSM forgets it).
    fn heap_page_ready(&self, rel: &Relation, g: &mut PageWriteGuard<'_>) -> Result<bool> {
        match page_type(g) {
            Some(PageType::Heap) => Ok(true),
            Some(PageType::Free) => {
                let init = Payload::PageInit {
                    page_type: PageType::Heap,
                };
                self.change(None, rel.id, g, &init)?;
                Ok(true)
            }
            _ => {
                rel.fsm.remove(g.page_id());
                Ok(false)
            }
        }
    }

    /// Makes room for a first tuple of `len` bytes on the latched heap page
    /// (compacting it when that makes room); `false` when it does not fit,
    /// with the FSM corrected.
    fn room_for(&self, rel: &Relation, g: &mut PageWriteGuard<'_>, len: usize) -> Result<bool> {
        match self.fit(rel, &SlottedPage::open(&g[..], g.page_id())?, len) {
            Fit::Now => Ok(true),
            Fit::AfterCompaction => self.compact(rel, g).map(|()| true),
            Fit::No => {
                self.note_free(rel, g);
                Ok(false)
            }
        }
    }

    /// Locks the tuple about to be inserted at `slot` exclusively before
    /// anyone can see it; the request never waits (a latch is held,
    /// invariant 11). It can only fail if a reader locked this address
    /// while it held nothing: the caller uses another slot or page then.
    fn lock_new(&self, log: &TxnLog, rel: &Relation, at: TupleId) -> bool {
        log.txn.0 == 0
            || self
                .locks
                .lock(
                    log.txn,
                    LockTarget::Tuple(rel.id, at),
                    LockMode::Exclusive,
                    false,
                )
                .is_ok()
    }

    /// Inserts on the latched page if the tuple fits there (compacting
    /// first when that makes room); otherwise corrects the FSM and returns
    /// `None`.
    fn insert_on(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        g: &mut PageWriteGuard<'_>,
        bytes: &[u8],
        flags: TupleFlags,
    ) -> Result<Option<TupleId>> {
        let pid = g.page_id();
        if !self.heap_page_ready(rel, g)? || !self.room_for(rel, g, bytes.len())? {
            return Ok(None);
        }
        let slot = SlottedPage::open(&g[..], pid)?.next_insert_slot();
        if !self.lock_new(log, rel, TupleId::new(pid, slot)) {
            return Ok(None);
        }
        let insert = Payload::HeapInsert {
            slot,
            flags,
            tuple: bytes.to_vec(),
        };
        self.change(Some(log), rel.id, g, &insert)?;
        self.note_free(rel, g);
        Ok(Some(TupleId::new(pid, slot)))
    }

    /// Inserts as many of `values` (inline values, in order) as fit on the
    /// latched page in consecutive slots, from the first, as one
    /// heap-multi-insert record, and appends their addresses to `tids`. Returns how many, or `None` when
    /// not even the first fits (the FSM corrected).
    fn insert_run_on(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        g: &mut PageWriteGuard<'_>,
        values: &[&[u8]],
        tids: &mut Vec<TupleId>,
    ) -> Result<Option<usize>> {
        let pid = g.page_id();
        if !self.heap_page_ready(rel, g)? || !self.room_for(rel, g, values[0].len())? {
            return Ok(None);
        }
        let page = SlottedPage::open(&g[..], pid)?;
        let reserved = self.reserved_on(rel, pid);
        let (first, n) = page.plan_run(values.iter().map(|v| v.len()), reserved);
        // `plan_run` keeps `first + i` within u16.
        let mut new: Vec<TupleId> = (0..n)
            .map(|i| TupleId::new(pid, SlotId(first.0 + i)))
            .collect();
        // Locked as `insert_on` locks one (never waiting, under the latch);
        // a slot a reader has locked ends the run there.
        if log.txn.0 != 0 {
            let granted = self.locks.lock_new_tuples(log.txn, rel.id, &new)?;
            new.truncate(granted);
        }
        if new.is_empty() {
            return Ok(None);
        }
        let placed = &values[..new.len()];
        let bytes = placed.iter().map(|v| v.len()).sum();
        let mut tuples = TupleBatch::with_capacity(new.len(), bytes);
        for value in placed {
            tuples.push(value);
        }
        let insert = Payload::HeapMultiInsert {
            first,
            flags: TupleFlags::NONE,
            tuples,
        };
        self.change(Some(log), rel.id, g, &insert)?;
        self.note_free(rel, g);
        tids.extend_from_slice(&new);
        Ok(Some(new.len()))
    }

    /// Compacts the latched heap page and logs the relocations (a redo-only
    /// record outside any transaction: compaction changes no tuple).
    pub(crate) fn compact(&self, rel: &Relation, g: &mut PageWriteGuard<'_>) -> Result<()> {
        let pid = g.page_id();
        let mut copy = g.to_vec();
        let relocations = SlottedPage::open(&mut copy[..], pid)?.compact();
        self.change(None, rel.id, g, &Payload::PageCompaction { relocations })?;
        Ok(())
    }

    /// Creates the next page of `rel` as an empty heap page and returns it
    /// latched.
    pub(crate) fn extend(&self, rel: &Relation) -> Result<PageWriteGuard<'_>> {
        let init = Payload::PageInit {
            page_type: PageType::Heap,
        };
        self.create_page(None, rel, &init)
    }

    /// Creates the next page of `rel` with `payload` (a record that formats
    /// a whole page) and returns it latched. Holds the extension lock from
    /// choosing the page id to logging the record (module docs).
    pub(crate) fn create_page(
        &self,
        log: Option<&mut TxnLog>,
        rel: &Relation,
        payload: &Payload,
    ) -> Result<PageWriteGuard<'_>> {
        self.create_page_with(log, rel, |_| Ok(payload.clone()))
    }

    /// [`create_page`](Self::create_page) with the record built for the
    /// new page's id (a page image names its page).
    pub(crate) fn create_page_with(
        &self,
        log: Option<&mut TxnLog>,
        rel: &Relation,
        make: impl FnOnce(PageId) -> Result<Payload>,
    ) -> Result<PageWriteGuard<'_>> {
        self.extend_with(rel, |pid| {
            let payload = make(pid)?;
            let mut g = self.pool.new_page(rel.file(), pid)?;
            self.change(log, rel.id, &mut g, &payload)?;
            Ok(g)
        })
    }

    /// Runs `f` on the id of the page past the end of `rel`'s file, under
    /// the extension lock; the page becomes part of the file only when `f`
    /// succeeds (`f` logs the record that formats it before the file grows
    /// to hold it).
    pub(crate) fn extend_with<T>(
        &self,
        rel: &Relation,
        f: impl FnOnce(PageId) -> Result<T>,
    ) -> Result<T> {
        let _extending = rel.extend.lock();
        let n = rel.page_count();
        if n >= crate::page::NO_PAGE - 1 {
            return Err(DbError::ValueTooLarge {
                len: n as usize,
                max: n as usize,
            }
            .into());
        }
        let out = f(PageId(n))?;
        rel.pages.store(n + 1, Ordering::Release);
        rel.fsm.cover(n + 1);
        Ok(out)
    }

    /// Writes `payload` (a whole-page record: an overflow chunk) to a page
    /// nobody uses: an empty or freed page the FSM knows of, or a new one.
    /// Returns the page.
    pub(crate) fn place_whole_page(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        payload: &Payload,
    ) -> Result<PageId> {
        for _ in 0..FSM_ATTEMPTS {
            let Some((pid, _)) = rel.fsm.find(EMPTY_PAGE_FREE) else {
                break;
            };
            if pid.0 >= rel.page_count() {
                rel.fsm.remove(pid);
                continue;
            }
            let mut g = self.pool.fetch_write(rel.file(), pid)?;
            let unused = match page_type(&g) {
                Some(PageType::Free) => true,
                Some(PageType::Heap) => SlottedPage::open(&g[..], pid)?.slot_count() == 0,
                _ => false,
            };
            if unused {
                rel.fsm.remove(pid);
                self.change(Some(log), rel.id, &mut g, payload)?;
                return Ok(pid);
            }
            self.note_free(rel, &g);
        }
        let g = self.create_page(Some(log), rel, payload)?;
        Ok(g.page_id())
    }
}
