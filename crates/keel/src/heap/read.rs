//! Reading tuples: point reads through forward pointers and overflow
//! chains, and full scans in TupleId order.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Relation, corrupt};
use crate::error::Result;
use crate::lock::{LockMode, LockTarget};
use crate::page::page_type;
use crate::page::{PageType, SlotContent, SlottedPage, TupleFlags};
use crate::storage::Storage;
use crate::types::{PageId, SlotId, TupleId, TxnId};

/// What a slot holds, copied out of the page so its latch can be dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// No tuple (free, dead, not a heap page, past the slot directory).
    Nothing,
    /// The stored bytes (a value or an overflow head) and their flags.
    Stored(Vec<u8>, TupleFlags),
    /// The tuple lives at another address.
    Forward(TupleId),
}

/// How often a read retries a forward pointer that moved under it.
const FORWARD_RETRIES: usize = 4;

/// The slot `slot` of a page, as found.
pub(crate) fn slot_of(page: &[u8], pid: PageId, slot: SlotId) -> Result<Found> {
    if page_type(page) != Some(PageType::Heap) {
        return Ok(Found::Nothing);
    }
    let p = SlottedPage::open(page, pid)?;
    if slot.0 >= p.slot_count() {
        return Ok(Found::Nothing);
    }
    Ok(match p.get(slot)? {
        SlotContent::Free | SlotContent::Dead => Found::Nothing,
        SlotContent::Tuple { bytes, flags } => Found::Stored(bytes.to_vec(), flags),
        SlotContent::Forward(t) => Found::Forward(t),
    })
}

/// Every tuple a scan reports from one page, by home address.
fn page_rows(page: &[u8], pid: PageId) -> Result<Vec<(TupleId, Found)>> {
    if page_type(page) != Some(PageType::Heap) {
        return Ok(Vec::new());
    }
    let p = SlottedPage::open(page, pid)?;
    let mut rows = Vec::new();
    for (slot, content) in p.slots() {
        let found = match content? {
            SlotContent::Tuple { flags, .. } if flags.contains(TupleFlags::MOVED_IN) => continue,
            SlotContent::Tuple { bytes, flags } => Found::Stored(bytes.to_vec(), flags),
            SlotContent::Forward(t) => Found::Forward(t),
            SlotContent::Free | SlotContent::Dead => continue,
        };
        rows.push((TupleId::new(pid, slot), found));
    }
    Ok(rows)
}

impl Storage {
    /// The value at home address `tid`, or `None` when no tuple lives there.
    pub(crate) fn get(&self, rel: &Relation, tid: TupleId) -> Result<Option<Vec<u8>>> {
        let found = self.home(rel, tid)?;
        self.resolve(rel, tid, found)
    }

    /// What the home slot `tid` holds; a `MOVED_IN` tuple is no home.
    pub(crate) fn home(&self, rel: &Relation, tid: TupleId) -> Result<Found> {
        if tid.page.0 >= rel.page_count() {
            return Ok(Found::Nothing);
        }
        let g = self.pool.fetch_read(rel.file(), tid.page)?;
        Ok(match slot_of(&g, tid.page, tid.slot)? {
            Found::Stored(_, f) if f.contains(TupleFlags::MOVED_IN) => Found::Nothing,
            other => other,
        })
    }

    /// The value a home slot's contents stand for.
    pub(crate) fn resolve(
        &self,
        rel: &Relation,
        tid: TupleId,
        mut found: Found,
    ) -> Result<Option<Vec<u8>>> {
        for _ in 0..FORWARD_RETRIES {
            match found {
                Found::Nothing => return Ok(None),
                Found::Stored(bytes, flags) => {
                    return self.materialize(rel, tid.page, bytes, flags).map(Some);
                }
                Found::Forward(target) => {
                    if let Some((bytes, flags)) = self.moved_in(rel, target)? {
                        return self.materialize(rel, target.page, bytes, flags).map(Some);
                    }
                    // The tuple moved again (or was deleted) between the two
                    // reads: read the home slot again.
                    found = self.home(rel, tid)?;
                }
            }
        }
        Err(corrupt(
            rel,
            tid,
            "forward pointer leads to no moved tuple".into(),
        ))
    }

    /// The moved tuple at `target`, if there is one.
    fn moved_in(&self, rel: &Relation, target: TupleId) -> Result<Option<(Vec<u8>, TupleFlags)>> {
        if target.page.0 >= rel.page_count() {
            return Err(corrupt(
                rel,
                target,
                "forward pointer past the end of the relation".into(),
            ));
        }
        let g = self.pool.fetch_read(rel.file(), target.page)?;
        Ok(match slot_of(&g, target.page, target.slot)? {
            Found::Stored(b, f) if f.contains(TupleFlags::MOVED_IN) => Some((b, f)),
            _ => None,
        })
    }

    /// The value of stored bytes: themselves, or their overflow chain.
    fn materialize(
        &self,
        rel: &Relation,
        at: PageId,
        bytes: Vec<u8>,
        flags: TupleFlags,
    ) -> Result<Vec<u8>> {
        if flags.contains(TupleFlags::OVERFLOW_HEAD) {
            let head = self.read_head(rel, at, &bytes)?;
            self.read_chain(rel, head)
        } else {
            Ok(bytes)
        }
    }
}

/// A full scan of a relation in TupleId order, one page latched at a time.
///
/// With a transaction, each reported tuple is locked shared first: under the
/// page latch the scan *tries* the lock (never waiting, invariant 11); a
/// tuple whose lock is busy is locked after the latch is dropped, waiting,
/// and its slot read again, so the scan never returns uncommitted bytes.
pub(crate) struct HeapScan<'a> {
    store: &'a Storage,
    rel: Arc<Relation>,
    txn: Option<TxnId>,
    next_page: u32,
    batch: VecDeque<(TupleId, Found, bool)>,
}

impl<'a> HeapScan<'a> {
    pub(crate) fn new(store: &'a Storage, rel: Arc<Relation>, txn: Option<TxnId>) -> HeapScan<'a> {
        HeapScan {
            store,
            rel,
            txn,
            next_page: 0,
            batch: VecDeque::new(),
        }
    }

    fn load_next_page(&mut self) -> Result<()> {
        let pid = PageId(self.next_page);
        self.next_page += 1;
        let g = self.store.pool.fetch_read(self.rel.file(), pid)?;
        for (tid, found) in page_rows(&g, pid)? {
            let locked = match self.txn {
                None => true,
                Some(txn) => self
                    .store
                    .locks
                    .lock(txn, self.target(tid), LockMode::Shared, false)
                    .is_ok(),
            };
            self.batch.push_back((tid, found, locked));
        }
        Ok(())
    }

    fn target(&self, tid: TupleId) -> LockTarget {
        LockTarget::Tuple(self.rel.id, tid)
    }

    /// The row at `tid`, locking it (waiting) and reading it again if the
    /// lock was busy under the latch.
    fn row(&self, tid: TupleId, found: Found, locked: bool) -> Result<Option<Vec<u8>>> {
        let found = match (locked, self.txn) {
            (false, Some(txn)) => {
                self.store
                    .locks
                    .lock(txn, self.target(tid), LockMode::Shared, true)?;
                self.store.home(&self.rel, tid)?
            }
            _ => found,
        };
        self.store.resolve(&self.rel, tid, found)
    }
}

impl Iterator for HeapScan<'_> {
    type Item = Result<(TupleId, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((tid, found, locked)) = self.batch.pop_front() {
                match self.row(tid, found, locked) {
                    Ok(Some(v)) => return Some(Ok((tid, v))),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
            if self.next_page >= self.rel.page_count() {
                return None;
            }
            if let Err(e) = self.load_next_page() {
                return Some(Err(e));
            }
        }
    }
}
