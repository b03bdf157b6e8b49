//! Redo: every page-changing record at or after the redo start is applied
//! to its page when the page's LSN is below the record's (module docs of
//! [`crate::recovery`], "Redo" and "Consistency checks").
//!
//! Redo holds one page latched between records, so consecutive records of
//! one page (the common case) fetch it once; it lets go of it before any
//! other page is fetched (invariant 11), and records then the page's free
//! space and, if it changed the page, that it was touched. Every page redo
//! changed must verify when redo lets go of it (invariants 9, 10).
//!
//! A page that already holds a record is skipped, yet left dirty: the
//! checkpoint that ends recovery (or a standby's restartpoint) writes and
//! syncs it before the redo point moves past the record. Read after a
//! kill, the page may come from the kernel's page cache only: a sync that
//! failed in the dead process leaves its pages there clean (Linux after a
//! writeback error), so no later sync writes them unless they are written
//! again, and the disk may hold an older or torn page the log would no
//! longer repair (invariant 14). Every page a record at or after the redo
//! start names is therefore written by recovery, whether redo changed it
//! or not; a page no such record names was made durable by the checkpoint
//! that redo starts from.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::{RecoveryReport, failed, readahead, recovery};
use crate::buffer::{BufferError, PageWriteGuard};
use crate::datadir::files::create_file;
use crate::error::Result;
use crate::heap::Relation;
use crate::page::tree::VALUE_OVERFLOW;
use crate::page::{OverflowHead, PAGE_SIZE, TupleFlags, first_difference, page_lsn};
use crate::storage::apply::apply;
use crate::storage::{Storage, frame_page, is_formatted};
use crate::types::{Lsn, PageId, RelationId, TxnId};
use crate::wal::{Payload, RecordHeader, SlotImage};

/// What a page offers the free space map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageSpace {
    /// A heap page: contiguous and total free bytes.
    Heap(usize, usize),
    /// A free page.
    Free,
    /// Any other page (overflow): not in the map.
    Other,
}

impl PageSpace {
    pub(crate) fn of(page: &[u8], pid: PageId) -> PageSpace {
        match crate::page::page_type(page) {
            Some(crate::page::PageType::Heap) => crate::page::SlottedPage::open(page, pid)
                .map_or(PageSpace::Other, |p| {
                    PageSpace::Heap(p.contiguous_free(), p.total_free())
                }),
            Some(crate::page::PageType::Free) => PageSpace::Free,
            _ => PageSpace::Other,
        }
    }
}

/// The page redo holds latched between records.
struct Cached<'s> {
    rid: RelationId,
    guard: PageWriteGuard<'s>,
    /// Whether redo applied a record to it.
    changed: bool,
    /// Whether redo marked it dirty without changing it (module docs).
    rewrite: bool,
    /// The last record redo applied to it.
    last_lsn: Lsn,
}

/// The redo pass over the records of the log, in log order.
pub(super) struct Redo<'s, 'r> {
    store: &'s Storage,
    /// The page of the previous record, still latched (module docs).
    cached: Option<Cached<'s>>,
    dir: &'r Path,
    /// The relation files; a `relation-create` adds one that is missing.
    rels: &'r mut HashMap<RelationId, Arc<Relation>>,
    redo_start: Lsn,
    out: Redone,
}

/// What redo leaves for undo and the database.
pub(super) struct Redone {
    /// The report, with the counts of records read, redone and skipped
    /// and of consistency checks.
    pub report: RecoveryReport,
    /// Pages redo changed.
    pub touched: FxHashSet<(RelationId, PageId)>,
    /// Free space of each page redo saw, as redo left it.
    pub space: FxHashMap<(RelationId, PageId), PageSpace>,
    /// Pages redo marked dirty without changing them (module docs).
    pub rewritten: FxHashSet<(RelationId, PageId)>,
    /// Relations a record named (at this LSN, the first) without a file.
    pub missing: BTreeMap<RelationId, Lsn>,
    /// Tree leaves a transaction's key delete (or a CLR's) named in the log
    /// read, each with the last key deleted there: the leaves a crash may
    /// have left empty before their reclaim ran (`btree` module docs,
    /// Empty leaves).
    pub deleted_on: FxHashMap<(RelationId, PageId), Vec<u8>>,
    /// Heap pages a transaction's tuple delete (or a CLR's) named in the
    /// log read: the pages a crash may have left holding dead slots whose
    /// free, logged after the deleting commit, never reached the log.
    pub dead_on: FxHashSet<(RelationId, PageId)>,
    /// Overflow chains of values (a heap's or a tree's) a committed
    /// transaction deleted or replaced in the log read, each with the LSN
    /// of the record that dropped its reference: the chains a crash may
    /// have left allocated before their free (logged after the commit)
    /// reached the log.
    pub released_chains: Vec<(RelationId, OverflowHead, Lsn)>,
    /// The same, for transactions whose commit or abort is not read yet.
    chains_of_open: FxHashMap<TxnId, Vec<(RelationId, OverflowHead, Lsn)>>,
}

impl<'s, 'r> Redo<'s, 'r> {
    /// Redo of the records at or after `redo_start` into the pages of
    /// `rels`, counting into `report`.
    pub(super) fn new(
        store: &'s Storage,
        dir: &'r Path,
        rels: &'r mut HashMap<RelationId, Arc<Relation>>,
        redo_start: Lsn,
        report: RecoveryReport,
    ) -> Redo<'s, 'r> {
        Redo {
            store,
            cached: None,
            dir,
            rels,
            redo_start,
            out: Redone {
                report,
                touched: FxHashSet::default(),
                space: FxHashMap::default(),
                rewritten: FxHashSet::default(),
                missing: BTreeMap::new(),
                deleted_on: FxHashMap::default(),
                dead_on: FxHashSet::default(),
                released_chains: Vec::new(),
                chains_of_open: FxHashMap::default(),
            },
        }
    }

    /// Lets go of the latched page and hands back what redo found.
    pub(super) fn finish(mut self) -> Result<Redone> {
        self.release_cached()?;
        Ok(self.out)
    }

    /// Notes the chain of a value `payload` (a transaction's own record,
    /// not a CLR) drops the reference to: a heap delete, in-place update or
    /// move of a tuple stored as an overflow head, or a tree key delete (a
    /// delete's, or a replace's first half) of an item whose value part is
    /// an overflow head. Kept for the open once the transaction's commit is
    /// read; dropped at its abort.
    fn note_released_chain(&mut self, h: &RecordHeader, payload: &Payload) {
        if h.txn.0 == 0 {
            return;
        }
        match payload {
            Payload::Commit { .. } => {
                if let Some(chains) = self.out.chains_of_open.remove(&h.txn) {
                    self.out.released_chains.extend(chains);
                }
            }
            Payload::Abort => {
                self.out.chains_of_open.remove(&h.txn);
            }
            Payload::HeapDelete { old, .. }
            | Payload::HeapUpdate { old, .. }
            | Payload::HeapForward { old, .. } => {
                let (SlotImage::Tuple { flags, bytes }, Some(rid), Some(pid)) =
                    (old, h.relation, h.page)
                else {
                    return;
                };
                if !flags.contains(TupleFlags::OVERFLOW_HEAD) {
                    return;
                }
                self.note_head(h, rid, pid, bytes);
            }
            // A transaction logs key deletes on leaves only (a node's
            // downlinks change outside any transaction).
            Payload::TreeDelete { rest, .. } => {
                let (Some((&VALUE_OVERFLOW, head)), Some(rid), Some(pid)) =
                    (rest.split_first(), h.relation, h.page)
                else {
                    return;
                };
                self.note_head(h, rid, pid, head);
            }
            _ => {}
        }
    }

    /// Notes the chain whose head `bytes` (read from page `pid` of `rid`)
    /// `h`'s transaction dropped. A head that does not decode names no
    /// chain to free.
    fn note_head(&mut self, h: &RecordHeader, rid: RelationId, pid: PageId, bytes: &[u8]) {
        if let Ok(head) = OverflowHead::decode(bytes, pid) {
            let chains = self.out.chains_of_open.entry(h.txn).or_default();
            chains.push((rid, head, h.lsn));
        }
    }

    /// Read-ahead for a window ([`readahead::pages`]), at most a quarter
    /// of the pool. Only a hint: a page that does not load is fetched (and
    /// its error reported) by the record that needs it.
    pub(super) fn prefetch(&mut self, window: &[(RecordHeader, Payload)]) -> Result<()> {
        let limit = (self.store.pool.frame_count() / 4).max(1);
        let pages = readahead::pages(window, self.redo_start, self.rels, limit);
        if pages.len() > 1 {
            // Invariant 11: no latch is held while other pages are read.
            self.release_cached()?;
            let first = window.first().map_or(self.redo_start, |(h, _)| h.lsn);
            self.store.pool.prefetch(&pages).map_err(failed(
                first,
                None,
                "writing pages out to read ahead",
            ))?;
        }
        Ok(())
    }

    /// Redo of one record (nothing for a record before the redo start).
    pub(super) fn record(&mut self, h: &RecordHeader, payload: &Payload) -> Result<()> {
        self.out.report.records_scanned += 1;
        self.out.report.bytes_scanned += u64::from(h.total_len);
        let deleted = match payload {
            Payload::TreeDelete { key, .. } if h.txn.0 != 0 => Some(key),
            Payload::Compensation { action, .. } => match &**action {
                Payload::TreeDelete { key, .. } => Some(key),
                _ => None,
            },
            _ => None,
        };
        if let (Some(key), Some(rid), Some(pid)) = (deleted, h.relation, h.page) {
            self.out.deleted_on.insert((rid, pid), key.clone());
        }
        let heap_delete = match payload {
            Payload::HeapDelete { .. } => h.txn.0 != 0,
            Payload::Compensation { action, .. } => matches!(**action, Payload::HeapDelete { .. }),
            _ => false,
        };
        if let (true, Some(rid), Some(pid)) = (heap_delete, h.relation, h.page) {
            self.out.dead_on.insert((rid, pid));
        }
        self.note_released_chain(h, payload);
        if h.lsn < self.redo_start {
            return Ok(());
        }
        match payload {
            // Invariant 13: redo never removes a relation file. A create
            // makes an empty file when it is missing (a later committed drop
            // removed it, or the directory lost it): every page of the
            // relation is formatted by a record after this one, so redo
            // rebuilds it; what the create's outcome asks for is settled
            // after undo (`recovery::ddl`).
            Payload::RelationCreate { relation, .. } => {
                self.release_cached()?;
                self.create(*relation)
            }
            Payload::RelationDrop { .. } => self.release_cached(),
            Payload::PageCheck { of, image } => self.check(h, *of, image),
            // Each page on its own: applied when its LSN is below the
            // record's (the payload's docs), one latch at a time.
            Payload::MultiPageImage { images } => {
                for (pid, _) in images {
                    self.redo_at(h, *pid, payload)?;
                }
                Ok(())
            }
            // The truncation of the header's page and the image of the
            // right page, each by its own page's LSN (the payload's docs).
            Payload::TreeSplit { right, .. } => {
                if h.page == Some(*right) {
                    return Err(recovery(
                        h.lsn,
                        format!("a tree-split of page {right} into itself"),
                    ));
                }
                self.redo(h, payload)?;
                self.redo_at(h, *right, payload)
            }
            p if p.page_changing() => self.redo(h, p),
            _ => Ok(()),
        }
    }

    fn create(&mut self, id: RelationId) -> Result<()> {
        if self.rels.contains_key(&id) {
            return Ok(());
        }
        let pages = create_file(self.store, self.dir, id)?;
        let rel = Relation::new(
            id,
            format!("relation {id}"),
            pages,
            crate::fsm::FreeSpaceMap::new(),
            None,
            crate::heap::RelationKind::Heap,
        );
        self.rels.insert(id, Arc::new(rel));
        Ok(())
    }

    /// Redo of one page-changing record.
    fn redo(&mut self, h: &RecordHeader, payload: &Payload) -> Result<()> {
        let Some(pid) = h.page else {
            return Err(recovery(h.lsn, "page record without a page".into()));
        };
        self.redo_at(h, pid, payload)
    }

    /// Redo of a page-changing record on page `pid` of its relation (the
    /// header's page, or one page of a multi-page record).
    fn redo_at(&mut self, h: &RecordHeader, pid: PageId, payload: &Payload) -> Result<()> {
        let Some(rid) = h.relation else {
            return Err(recovery(h.lsn, "page record without a relation".into()));
        };
        // The page latched for the previous record (the common case) needs
        // no relation lookup: its relation was there when it was latched,
        // and a drop releases it first.
        let rel = if self.holds(rid, pid) {
            None
        } else {
            let Some(rel) = self.rels.get(&rid).cloned() else {
                // The relation's file is gone: skipped, and accounted for
                // once the whole log is read (`DdlLog::finish`).
                self.out.missing.entry(rid).or_insert(h.lsn);
                return Ok(());
            };
            Some(rel)
        };
        let store = self.store;
        let epoch = self.redo_start;
        let rebuilt = std::cell::Cell::new(false);
        let mut c = self.latch(rid, pid, h.lsn, || match &rel {
            Some(rel) => page_for(store, rel, pid, payload, h.lsn, epoch, &rebuilt),
            None => Err(recovery(h.lsn, format!("relation {rid} not found"))),
        })?;
        self.out.report.pages_from_images += u64::from(rebuilt.get());
        if let Some(l) = page_lsn(&c.guard).filter(|&l| l >= h.lsn) {
            if !c.changed && !c.rewrite {
                // Leaves the page (and its LSN) as it is, dirty.
                c.guard.mark_dirty(l);
                c.rewrite = true;
            }
            self.cached = Some(c);
            return self.skip(h.lsn, rid, pid, l);
        }
        // The rule of `Storage::change` (step 2), so that a write of this
        // page torn by a crash during recovery is repaired as a running
        // engine's would be (`storage::images`).
        if page_lsn(&c.guard).unwrap_or(Lsn::ZERO) < epoch
            && !payload.formats(pid)
            && is_formatted(&c.guard)
            && !store.images.has_image(epoch, rid, pid)
        {
            store
                .images
                .append(epoch, rid, pid, frame_page(&c.guard))
                .map_err(failed(
                    h.lsn,
                    Some((rid, pid)),
                    "appending the page's image",
                ))?;
        }
        apply(payload, &mut c.guard, pid, h.lsn).map_err(failed(
            h.lsn,
            Some((rid, pid)),
            "applying the record",
        ))?;
        c.guard.mark_dirty(h.lsn);
        c.changed = true;
        c.last_lsn = h.lsn;
        self.out.report.records_redone += 1;
        self.cached = Some(c);
        Ok(())
    }

    /// A record the page already holds (its LSN `page_lsn` is at or past
    /// the record's): skipped. A page can only hold changes the log has:
    /// one past its end means the log lost its tail, and LSNs would be
    /// handed out again.
    fn skip(&mut self, lsn: Lsn, rid: RelationId, pid: PageId, page_lsn: Lsn) -> Result<()> {
        let end = self.store.wal.open_end();
        if page_lsn >= end {
            return Err(recovery(
                lsn,
                format!(
                    "page {pid} of relation {rid} has LSN {page_lsn}, at or past the end of \
                     the log at {end}: the log lost records the page holds"
                ),
            ));
        }
        self.out.report.records_skipped += 1;
        Ok(())
    }

    /// Consistency check: compares the page named by a `PageCheck` record
    /// with its image when the page is as the change at `of` left it (page
    /// LSN = `of`); otherwise (the page on disk was newer and redo skipped
    /// the change, or the page is gone) there is nothing to compare.
    fn check(&mut self, h: &RecordHeader, of: Lsn, image: &[u8; PAGE_SIZE]) -> Result<()> {
        let (Some(rid), Some(pid)) = (h.relation, h.page) else {
            return Err(recovery(h.lsn, "page-check record without a page".into()));
        };
        let Some(rel) = self.rels.get(&rid).cloned() else {
            return Ok(());
        };
        if pid.0 >= rel.page_count() {
            return Ok(());
        }
        let store = self.store;
        let c = self.latch(rid, pid, h.lsn, || {
            store.pool.fetch_write(rel.file(), pid).map_err(failed(
                h.lsn,
                Some((rid, pid)),
                format!("reading the page to check it after {of}"),
            ))
        })?;
        let compared = page_lsn(&c.guard) == Some(of);
        let outcome = compared
            .then(|| first_difference(&c.guard, pid, image))
            .flatten();
        self.cached = Some(c);
        if let Some(at) = outcome {
            return Err(recovery(
                h.lsn,
                format!(
                    "consistency check: page {pid} of relation {rid} after redo of {of} \
                     differs from the page logged at run time, first at byte {at}"
                ),
            ));
        }
        if compared {
            self.out.report.consistency_checks += 1;
        }
        Ok(())
    }

    /// Whether the page latched for the previous record is `(rid, pid)`.
    fn holds(&self, rid: RelationId, pid: PageId) -> bool {
        self.cached
            .as_ref()
            .is_some_and(|c| c.rid == rid && c.guard.page_id() == pid)
    }

    /// The page `(rid, pid)` latched: the cached page if it is that one,
    /// else, once the cached page is released (invariant 11: one latch at a
    /// time), the one `open` latches.
    fn latch(
        &mut self,
        rid: RelationId,
        pid: PageId,
        lsn: Lsn,
        open: impl FnOnce() -> Result<PageWriteGuard<'s>>,
    ) -> Result<Cached<'s>> {
        if self.holds(rid, pid)
            && let Some(c) = self.cached.take()
        {
            return Ok(c);
        }
        self.release_cached()?;
        Ok(Cached {
            rid,
            guard: open()?,
            changed: false,
            rewrite: false,
            last_lsn: lsn,
        })
    }

    /// Unlatches the page redo holds, recording its free space (as redo
    /// leaves it) and, if redo changed it, that it was touched. A page redo
    /// changed must verify (a record with a valid CRC can still carry
    /// nonsense, e.g. an impossible overflow head): otherwise recovery
    /// fails naming the last record applied to it (invariants 9, 10).
    fn release_cached(&mut self) -> Result<()> {
        if let Some(c) = self.cached.take() {
            let pid = c.guard.page_id();
            if c.changed {
                crate::page::verify_structure(&c.guard, pid).map_err(failed(
                    c.last_lsn,
                    Some((c.rid, pid)),
                    "the page fails verification after redo",
                ))?;
            }
            self.out
                .space
                .insert((c.rid, pid), PageSpace::of(&c.guard, pid));
            if c.changed {
                self.out.touched.insert((c.rid, pid));
            } else if c.rewrite {
                self.out.rewritten.insert((c.rid, pid));
            }
        }
        Ok(())
    }
}

/// The page a record applies to, latched: recreated empty when the record
/// rebuilds the whole page and the old one is missing or torn, and rebuilt
/// from its image as of `epoch` (the redo start; `storage::images`) when
/// it is torn or missing and the record does not rebuild it.
fn page_for<'s>(
    store: &'s Storage,
    rel: &Relation,
    pid: PageId,
    payload: &Payload,
    lsn: Lsn,
    epoch: Lsn,
    rebuilt: &std::cell::Cell<bool>,
) -> Result<PageWriteGuard<'s>> {
    let formats = payload.formats(pid);
    let at = Some((rel.id, pid));
    if pid.0 >= rel.page_count() {
        if !formats {
            if let Some(g) = from_image(store, rel, pid, lsn, epoch)? {
                rel.pages
                    .fetch_max(pid.0 + 1, std::sync::atomic::Ordering::AcqRel);
                rebuilt.set(true);
                return Ok(g);
            }
            return Err(recovery(
                lsn,
                format!(
                    "page {pid} of relation {} is past the end of its file and no record \
                     formats it",
                    rel.id
                ),
            ));
        }
        let g =
            store
                .pool
                .new_page(rel.file(), pid)
                .map_err(failed(lsn, at, "creating the page"))?;
        rel.pages
            .fetch_max(pid.0 + 1, std::sync::atomic::Ordering::AcqRel);
        return Ok(g);
    }
    match store.pool.fetch_write(rel.file(), pid) {
        Ok(g) => Ok(g),
        Err(BufferError::PageCorrupt { .. } | BufferError::PageBeyondEof { .. }) if formats => {
            store
                .pool
                .new_page(rel.file(), pid)
                .map_err(failed(lsn, at, "creating the page"))
        }
        Err(e @ (BufferError::PageCorrupt { .. } | BufferError::PageBeyondEof { .. })) => {
            match from_image(store, rel, pid, lsn, epoch)? {
                Some(g) => {
                    rebuilt.set(true);
                    Ok(g)
                }
                None => Err(failed(
                    lsn,
                    at,
                    format!("reading the page: the page images as of {epoch} hold none of it"),
                )(e)),
            }
        }
        Err(e) => Err(failed(lsn, at, "reading the page")(e)),
    }
}

/// Page `pid` of `rel` rebuilt from its image as of `epoch`, latched, or
/// `None` when there is no image of it. The image must verify as the page.
fn from_image<'s>(
    store: &'s Storage,
    rel: &Relation,
    pid: PageId,
    lsn: Lsn,
    epoch: Lsn,
) -> Result<Option<PageWriteGuard<'s>>> {
    let at = Some((rel.id, pid));
    let Some(image) = store.images.image(epoch, rel.id, pid).map_err(failed(
        lsn,
        at,
        "reading the page's image",
    ))?
    else {
        return Ok(None);
    };
    crate::page::verify_structure(&image[..], pid).map_err(failed(
        lsn,
        at,
        format!("the page's image as of {epoch} fails verification"),
    ))?;
    let mut g =
        store
            .pool
            .new_page(rel.file(), pid)
            .map_err(failed(lsn, at, "creating the page"))?;
    g.copy_from_slice(&image[..]);
    g.mark_dirty(page_lsn(&image[..]).unwrap_or(Lsn::ZERO));
    Ok(Some(g))
}
