//! The storage context every layer above the buffer pool works through
//! ([`Storage`]): the I/O backend, the buffer pool, the log, the lock
//! manager, the redo gate and the reservations rollback needs — and the
//! one path every page change takes, in a transaction or not.
//!
//! ## How a change is made (`Storage::change`)
//!
//! Every page change, in a transaction or not, follows one path:
//!
//! 1. The caller holds the page's exclusive latch (a [`PageWriteGuard`]).
//! 2. Under the *redo gate* (a shared lock on the redo point of the latest
//!    checkpoint), if the page's LSN is below the redo point and the record
//!    does not rebuild the whole page ([`Payload::formats_page`]), the
//!    page as it is (its image as of the redo point) is appended to the
//!    page images ([`images`]; invariant 5: recovery repairs a torn page
//!    from it). That copies the page into memory and writes nothing to the
//!    log: the image must be durable before the page is written, not
//!    before the commit, and the buffer pool syncs the images before every
//!    page write. A checkpoint moves the redo point (and starts a new epoch
//!    of images) under the exclusive side of the gate, so no change can be
//!    logged after a checkpoint began while having checked the previous
//!    redo point.
//! 3. The change is applied to the page with [`apply::apply`] (the same
//!    function redo and rollback use; a tree insert whose writer searched
//!    the leaf under the latch it holds goes in at the index found, with
//!    the same node insert, [`apply::apply_tree_insert_at`]) and only if
//!    that succeeds is it logged. Page operations check before they modify, so a refused
//!    change leaves the page as it was and nothing in the log. When the
//!    log refuses the record after the page changed (it is poisoned by a
//!    failed write or sync), the page holds a change no record describes:
//!    the buffer pool is poisoned at once and writes no page again
//!    (invariant 4), so the change dies with the process.
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

pub mod apply;
pub mod images;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use keel_io::AsyncIo;
use parking_lot::{Mutex, RwLock};

use crate::buffer::{BufferPool, PageWriteGuard};
use crate::error::{PageError, Result};
use crate::lock::LockManager;
use crate::page::{PAGE_SIZE, page_lsn, page_type};
use crate::txn::undo::{TxnLog, Undo, UndoEntry, push_undo};
use crate::types::{Lsn, PageId, RelationId};
use crate::wal::{Payload, RecordMeta, Wal};

/// The storage context (module docs).
pub(crate) struct Storage {
    pub io: Arc<dyn AsyncIo>,
    pub pool: BufferPool,
    pub wal: Arc<Wal>,
    /// The page images a torn page is repaired from (module docs, step 2;
    /// [`images`]).
    pub images: Arc<images::PageImages>,
    /// Redo point of the latest begun checkpoint (module docs, step 2).
    pub redo_point: RwLock<Lsn>,
    /// Bytes per page freed by running transactions (module docs, "Room
    /// for rollback").
    pub reserved: Mutex<HashMap<(RelationId, PageId), usize>>,
    /// Tuple and relation locks.
    pub locks: LockManager,
    /// Whether every change is followed by a `PageCheck` record of the page
    /// (`Config::consistency_check`; module docs, step 5).
    pub consistency_check: bool,
}

impl Storage {
    /// Applies `payload` to the latched page and logs it (module docs), in
    /// `log`'s transaction if given. Returns the record's LSN.
    pub(crate) fn change(
        &self,
        log: Option<&mut TxnLog>,
        rel: RelationId,
        g: &mut PageWriteGuard<'_>,
        payload: &Payload,
    ) -> Result<Lsn> {
        self.change_by(log, rel, g, payload, |page, pid, lsn| {
            apply::apply(payload, page, pid, lsn)
        })
    }

    /// [`change`](Self::change) of a `tree-insert` `payload` into the
    /// latched leaf `g` at index `at`, where the caller's search of the
    /// leaf, under the latch it has held since, placed the key
    /// ([`apply::apply_tree_insert_at`]).
    pub(crate) fn change_tree_insert_at(
        &self,
        log: Option<&mut TxnLog>,
        rel: RelationId,
        g: &mut PageWriteGuard<'_>,
        payload: &Payload,
        at: usize,
    ) -> Result<Lsn> {
        let Payload::TreeInsert { key, rest } = payload else {
            return self.change(log, rel, g, payload);
        };
        self.change_by(log, rel, g, payload, |page, pid, lsn| {
            apply::apply_tree_insert_at(page, pid, at, key, rest, lsn)
        })
    }

    /// [`change`](Self::change) with `apply_to` making the change on the
    /// page (and setting its LSN): `apply::apply` of `payload`, or what
    /// gives the same bytes.
    fn change_by(
        &self,
        log: Option<&mut TxnLog>,
        rel: RelationId,
        g: &mut PageWriteGuard<'_>,
        payload: &Payload,
        apply_to: impl FnOnce(&mut [u8], PageId, Lsn) -> std::result::Result<(), PageError>,
    ) -> Result<Lsn> {
        let pid = g.page_id();
        let gate = self.redo_point.read();
        let current = page_lsn(g).unwrap_or(Lsn::ZERO);
        if !payload.formats_page() && current < *gate && is_formatted(g) {
            self.images.append(*gate, rel, pid, frame_page(g))?;
        }
        let before = page_lsn(g).unwrap_or(Lsn::ZERO);
        apply_to(g, pid, before)?;
        let mut meta = RecordMeta::new(payload.kind()).on_page(rel, pid);
        if let Some(log) = &log {
            meta = meta.in_txn(log.txn, log.last_lsn);
        }
        let rec = match self.wal.append_payload(meta, payload) {
            Ok(rec) => rec,
            Err(e) => return Err(self.unlogged(g, e.into())),
        };
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
                let undo = Undo::of(Cow::Borrowed(payload), &mut log.keys);
                push_undo(
                    &mut log.undo,
                    UndoEntry {
                        relation: rel,
                        page: pid,
                        lsn: rec.lsn,
                        prev_lsn: log.last_lsn,
                        undo,
                    },
                );
            }
            log.last_lsn = rec.lsn;
        }
        Ok(rec.lsn)
    }

    /// Logs `images` (whole pages of relation `rel`) as one redo-only
    /// `multi-page-image` record outside any transaction and puts each on
    /// its latched page in `pages` (the same pages, in the same order):
    /// a change to several pages that a crash leaves whole or undone, never
    /// half made. Whole pages need no image kept before them (invariant
    /// 5); redo applies each by its own page LSN (invariant 8).
    pub(crate) fn change_pages(
        &self,
        rel: RelationId,
        pages: &mut [&mut PageWriteGuard<'_>],
        images: Vec<(PageId, Box<[u8; PAGE_SIZE]>)>,
    ) -> Result<Lsn> {
        debug_assert!(
            pages.len() == images.len()
                && pages
                    .iter()
                    .zip(&images)
                    .all(|(g, (p, _))| g.page_id() == *p),
            "one latched page per image, in order: the record holds exactly the pages changed"
        );
        let payload = Payload::MultiPageImage { images };
        let gate = self.redo_point.read();
        let lsn = self.log_pages(rel, pages, &payload)?;
        drop(gate);
        Ok(lsn)
    }

    /// Splits the latched tree node `left` (module docs of
    /// [`crate::btree`]): `right`, a latched page not in use, gets `image`
    /// (the node's items from `keep` on, built by the caller), and `left`
    /// keeps its first `keep` items, bounded by `sep` and linked to
    /// `right` ([`TreePage::split_left`](crate::page::tree::TreePage::split_left)),
    /// in one redo-only `tree-split` record (the right image and the
    /// truncation) outside any transaction. When `left` has not changed
    /// since the redo point its image is appended first (module docs, step
    /// 2), as for any change.
    pub(crate) fn change_split<'p>(
        &self,
        rel: RelationId,
        left: &mut PageWriteGuard<'p>,
        right: &mut PageWriteGuard<'p>,
        keep: u16,
        sep: &[u8],
        image: Box<[u8; PAGE_SIZE]>,
    ) -> Result<Lsn> {
        let (lpid, rpid) = (left.page_id(), right.page_id());
        let payload = Payload::TreeSplit {
            keep,
            sep: sep.to_vec(),
            right: rpid,
            image,
        };
        let gate = self.redo_point.read();
        if page_lsn(left).unwrap_or(Lsn::ZERO) < *gate && is_formatted(left) {
            self.images.append(*gate, rel, lpid, frame_page(left))?;
        }
        let lsn = self.log_pages(rel, &mut [left, right], &payload)?;
        drop(gate);
        Ok(lsn)
    }

    /// Applies `payload`, a record changing each of the latched `pages`
    /// (the header's page first), to them, logs it outside any transaction
    /// and marks them dirty. The caller holds the redo gate.
    fn log_pages(
        &self,
        rel: RelationId,
        pages: &mut [&mut PageWriteGuard<'_>],
        payload: &Payload,
    ) -> Result<Lsn> {
        let first = pages.first().map_or(PageId(0), |g| g.page_id());
        for (i, g) in pages.iter_mut().enumerate() {
            let pid = g.page_id();
            let before = page_lsn(g).unwrap_or(Lsn::ZERO);
            // A refusal on the first page changed nothing; on a later one,
            // the pages before it hold a change with no record.
            if let Err(e) = apply::apply(payload, g, pid, before) {
                return Err(match i {
                    0 => e.into(),
                    _ => self.unlogged(g, e.into()),
                });
            }
        }
        let meta = RecordMeta::new(payload.kind()).on_page(rel, first);
        let rec = match self.wal.append_payload(meta, payload) {
            Ok(rec) => rec,
            Err(e) => return Err(self.unlogged(pages[0], e.into())),
        };
        // Marked dirty under the gate, as `change` does.
        for g in pages.iter_mut() {
            g.mark_dirty(rec.lsn);
        }
        if self.consistency_check {
            for g in pages.iter() {
                self.log_check(rel, g, rec.lsn)?;
            }
        }
        Ok(rec.lsn)
    }

    /// The error `e` of a change whose record was not logged after the
    /// latched page `g` (or a page changed with it) was changed: the pool
    /// is poisoned first, so no page holding a change the log lacks is
    /// ever written (invariant 4; step 3 of the module docs checks before
    /// changing, but the log can still refuse the record, once poisoned).
    fn unlogged(&self, g: &PageWriteGuard<'_>, e: crate::error::Error) -> crate::error::Error {
        self.pool.poison_unlogged(g, e.to_string());
        e
    }

    /// Logs a `PageCheck` of the latched page as the change at `of` left
    /// it (module docs, step 5). `mark_dirty` already set the page LSN to
    /// `of`, so the image carries it, as the page redo rebuilds will.
    fn log_check(&self, rel: RelationId, g: &PageWriteGuard<'_>, of: Lsn) -> Result<()> {
        debug_assert_eq!(
            page_lsn(g),
            Some(of),
            "page LSN is the change's LSN before its check image (inv. 4)"
        );
        let check = Payload::PageCheck {
            of,
            image: image_of(g),
        };
        let meta = RecordMeta::new(check.kind()).on_page(rel, g.page_id());
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

/// The latched frame as one page, borrowed (no copy).
pub(crate) fn frame_page(g: &[u8]) -> &[u8; PAGE_SIZE] {
    match g[..PAGE_SIZE].try_into() {
        Ok(page) => page,
        Err(_) => unreachable!("a frame holds one page"),
    }
}

/// A copy of the latched page, for a record that owns one (a page check):
/// copied into a fresh allocation, never zeroed first.
fn image_of(page: &[u8]) -> Box<[u8; PAGE_SIZE]> {
    let copy: Box<[u8]> = Box::from(&page[..PAGE_SIZE]);
    match copy.try_into() {
        Ok(image) => image,
        Err(_) => unreachable!("a slice of PAGE_SIZE bytes is one page"),
    }
}

/// Whether the page has been formatted (an all-zero frame is a page being
/// created).
pub(crate) fn is_formatted(page: &[u8]) -> bool {
    page_type(page).is_some_and(|_| page[..4] == crate::page::PAGE_MAGIC.to_le_bytes())
}
