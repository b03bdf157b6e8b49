//! Inserting tuples and creating pages: the FSM loop, compaction before an
//! insert, and extending a relation.

use std::sync::atomic::Ordering;

use super::{Relation, corrupt};
use crate::buffer::PageWriteGuard;
use crate::error::{DbError, Result};
use crate::fsm::{EMPTY_PAGE_FREE, request_bytes};
use crate::lock::{LockMode, LockTarget};
use crate::page::page_type;
use crate::page::{Fit, PageType, SlottedPage, TupleFlags};
use crate::storage::Storage;
use crate::txn::undo::TxnLog;
use crate::types::{PageId, TupleId};
use crate::wal::Payload;

/// How many pages the FSM may suggest before the relation is extended.
/// Each wrong suggestion corrects the FSM, so misses do not repeat.
const FSM_ATTEMPTS: usize = 8;

impl Storage {
    /// Inserts `value` into `rel` in `log`'s transaction (an overflow chain
    /// first when it is larger than [`INLINE_MAX`](super::INLINE_MAX)).
    pub(crate) fn insert(&self, log: &mut TxnLog, rel: &Relation, value: &[u8]) -> Result<TupleId> {
        let (bytes, flags) = self.stored_form(log, rel, value)?;
        self.insert_tuple(log, rel, &bytes, flags)
    }

    /// Inserts stored bytes (a value or an overflow head) on some page.
    pub(crate) fn insert_tuple(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        bytes: &[u8],
        flags: TupleFlags,
    ) -> Result<TupleId> {
        let need = request_bytes(bytes.len());
        for _ in 0..FSM_ATTEMPTS {
            let Some((pid, _)) = rel.fsm.find(need) else {
                break;
            };
            if pid.0 >= rel.page_count() {
                rel.fsm.remove(pid);
                continue;
            }
            let mut g = self.pool.fetch_write(rel.file(), pid)?;
            if let Some(tid) = self.insert_on(log, rel, &mut g, bytes, flags)? {
                return Ok(tid);
            }
        }
        // A new page always has room; it is refused only when a reader
        // holds a lock on the address its first slot would get.
        for _ in 0..FSM_ATTEMPTS {
            let mut g = self.extend(rel)?;
            if let Some(tid) = self.insert_on(log, rel, &mut g, bytes, flags)? {
                return Ok(tid);
            }
            self.note_free(rel, &g);
        }
        Err(corrupt(
            rel,
            "its last page",
            "new pages refuse every insert".into(),
        ))
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
        match page_type(g) {
            Some(PageType::Heap) => {}
            Some(PageType::Free) => {
                let init = Payload::PageInit {
                    page_type: PageType::Heap,
                };
                self.change(None, rel.id, g, &init)?;
            }
            _ => {
                rel.fsm.remove(pid);
                return Ok(None);
            }
        }
        let fit = self.fit(rel, &SlottedPage::open(&g[..], pid)?, bytes.len());
        match fit {
            Fit::Now => {}
            Fit::AfterCompaction => self.compact(rel, g)?,
            Fit::No => {
                self.note_free(rel, g);
                return Ok(None);
            }
        }
        let slot = SlottedPage::open(&g[..], pid)?.next_insert_slot();
        // The new tuple is locked before anyone can see it; the request
        // never waits (a latch is held, invariant 11). It can only fail if a
        // reader locked this address while it held nothing: use another
        // page then.
        let target = LockTarget::Tuple(rel.id, TupleId::new(pid, slot));
        if log.txn.0 != 0
            && self
                .locks
                .lock(log.txn, target, LockMode::Exclusive, false)
                .is_err()
        {
            return Ok(None);
        }
        let insert = Payload::HeapInsert {
            slot,
            flags,
            tuple: bytes.to_vec(),
        };
        self.change_owned(Some(log), rel.id, g, insert)?;
        self.note_free(rel, g);
        Ok(Some(TupleId::new(pid, slot)))
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
        let _extending = rel.extend.lock();
        let n = rel.page_count();
        if n == u32::MAX - 1 {
            return Err(DbError::ValueTooLarge {
                len: n as usize,
                max: n as usize,
            }
            .into());
        }
        let pid = PageId(n);
        let mut g = self.pool.new_page(rel.file(), pid)?;
        self.change(log, rel.id, &mut g, payload)?;
        rel.pages.store(n + 1, Ordering::Release);
        Ok(g)
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
