//! The recovery pass: analysis and redo in one scan of the log, then undo
//! of the losers (module docs of [`crate::recovery`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::RecoveryReport;
use super::control::Control;
use crate::buffer::{BufferError, PageWriteGuard};
use crate::error::{DbError, Error, Result};
use crate::fsm::FreeSpaceMap;
use crate::heap::apply::apply;
use crate::heap::catalog::{create_file, remove_files};
use crate::heap::{Relation, Store, TxnLog, UndoEntry};
use crate::page::page_lsn;
use crate::types::{Lsn, PageId, RelationId, TxnId};
use crate::wal::{LogRecord, Payload, RecordHeader, RecoveryMode};

/// What recovery hands back to the database.
pub(crate) struct Recovered {
    pub report: RecoveryReport,
    /// Pages redo or undo changed.
    pub touched: HashSet<(RelationId, PageId)>,
    /// Free space of each page redo saw (changed or not), as it was when
    /// redo ended; pages undo changed afterwards are left out (their FSM
    /// entries are read again from the page).
    pub space: HashMap<(RelationId, PageId), PageSpace>,
    /// Highest transaction id seen.
    pub max_txn: TxnId,
}

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
        match crate::heap::page_type(page) {
            Some(crate::page::PageType::Heap) => crate::page::SlottedPage::open(page, pid)
                .map_or(PageSpace::Other, |p| {
                    PageSpace::Heap(p.contiguous_free(), p.total_free())
                }),
            Some(crate::page::PageType::Free) => PageSpace::Free,
            _ => PageSpace::Other,
        }
    }
}

/// A transaction seen by analysis and not (yet) ended.
#[derive(Default)]
struct Open {
    last_lsn: Lsn,
    undo: Vec<UndoEntry>,
}

struct Pass<'a> {
    store: &'a Store,
    /// The page of the previous record, still latched: consecutive records
    /// of one page (the common case) fetch it once. Dropped before any other
    /// page is fetched (invariant 11) and before undo.
    cached: Option<(RelationId, PageWriteGuard<'a>)>,
    dir: &'a Path,
    rels: &'a mut HashMap<RelationId, Arc<Relation>>,
    redo_start: Lsn,
    txns: BTreeMap<TxnId, Open>,
    rec: Recovered,
}

/// Runs analysis, redo and undo over the log of the open `store`, starting
/// from `control`'s checkpoint (the whole log when there is none).
/// `rels` holds the relation files found on disk; redo adds and removes
/// entries as relations are created and dropped.
pub(crate) fn recover(
    store: &Store,
    dir: &Path,
    rels: &mut HashMap<RelationId, Arc<Relation>>,
    control: Option<&Control>,
    mode: RecoveryMode,
) -> Result<Recovered> {
    let started = Instant::now();
    let (scan_start, redo_start) =
        control.map_or((Lsn::ZERO, Lsn::ZERO), |c| (c.scan_start(), c.redo_start));
    let mut pass = Pass {
        store,
        cached: None,
        dir,
        rels,
        redo_start,
        txns: BTreeMap::new(),
        rec: Recovered {
            report: RecoveryReport {
                clean_shutdown: control.is_some_and(|c| c.clean),
                scan_start,
                redo_start,
                ..RecoveryReport::default()
            },
            touched: HashSet::new(),
            space: HashMap::new(),
            max_txn: control.map_or(TxnId(0), |c| TxnId(c.next_txn.0.saturating_sub(1))),
        },
    };
    for record in store.wal.reader(scan_start, mode)? {
        pass.record(record?)?;
    }
    pass.rec.report.log_end = store.wal.end_lsn();
    pass.cached = None;
    pass.undo_losers()?;
    pass.rec.report.pages_redone = pass.rec.touched.len() as u64;
    pass.rec.report.duration = started.elapsed();
    Ok(pass.rec)
}

impl Pass<'_> {
    fn record(&mut self, r: LogRecord) -> Result<()> {
        let h = r.header;
        let payload = Payload::decode_record(&h, &r.payload)?;
        self.rec.report.records_scanned += 1;
        self.rec.report.bytes_scanned += u64::from(h.total_len);
        self.analyse(&h, &payload);
        if h.lsn < self.redo_start {
            return Ok(());
        }
        match &payload {
            Payload::RelationCreate { relation, .. } => {
                self.cached = None;
                self.create(*relation)
            }
            Payload::RelationDrop { relation } => {
                self.cached = None;
                self.rels.remove(relation);
                remove_files(self.store, self.dir, *relation)
            }
            p if p.page_changing() => self.redo(&h, p),
            _ => Ok(()),
        }
    }

    /// Analysis: the transaction table and each transaction's undo stack.
    fn analyse(&mut self, h: &RecordHeader, payload: &Payload) {
        if h.txn.0 == 0 {
            return;
        }
        self.rec.max_txn = self.rec.max_txn.max(h.txn);
        if matches!(payload, Payload::Commit { .. } | Payload::Abort) {
            self.txns.remove(&h.txn);
            return;
        }
        let t = self.txns.entry(h.txn).or_default();
        t.last_lsn = h.lsn;
        if let Some(undo_next) = payload.undo_next() {
            while t.undo.last().is_some_and(|e| e.lsn > undo_next) {
                t.undo.pop();
            }
        } else if payload.needs_undo()
            && let (Some(relation), Some(page)) = (h.relation, h.page)
        {
            t.undo.push(UndoEntry {
                relation,
                page,
                lsn: h.lsn,
                prev_lsn: h.prev_lsn,
                payload: payload.clone(),
            });
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
            FreeSpaceMap::new(),
            None,
        );
        self.rels.insert(id, Arc::new(rel));
        Ok(())
    }

    /// Redo of one page-changing record.
    fn redo(&mut self, h: &RecordHeader, payload: &Payload) -> Result<()> {
        let (Some(rid), Some(pid)) = (h.relation, h.page) else {
            return Err(recovery(h.lsn, "page record without a page".into()));
        };
        let Some(rel) = self.rels.get(&rid).cloned() else {
            // The relation's file is gone: a later drop removed it.
            return Ok(());
        };
        let mut g = match self.cached.take() {
            Some((r, g)) if r == rid && g.page_id() == pid => g,
            other => {
                drop(other);
                page_for(self.store, &rel, pid, payload, h.lsn)?
            }
        };
        if page_lsn(&g).is_some_and(|l| l >= h.lsn) {
            self.rec.report.records_skipped += 1;
        } else {
            apply(payload, &mut g, pid, h.lsn).map_err(|e| {
                recovery(h.lsn, format!("redo on page {pid} of relation {rid}: {e}"))
            })?;
            g.mark_dirty(h.lsn);
            self.rec.report.records_redone += 1;
            self.rec.touched.insert((rid, pid));
        }
        self.rec.space.insert((rid, pid), PageSpace::of(&g, pid));
        self.cached = Some((rid, g));
        Ok(())
    }

    /// Undo: rolls every loser back with CLRs and an abort record.
    fn undo_losers(&mut self) -> Result<()> {
        let losers = std::mem::take(&mut self.txns);
        let rels: &HashMap<RelationId, Arc<Relation>> = self.rels;
        let lookup = |id: RelationId| rels.get(&id).cloned();
        for (txn, open) in losers.into_iter().rev() {
            let mut log = TxnLog::new(txn);
            log.last_lsn = open.last_lsn;
            log.undo = open.undo;
            self.rec.report.records_undone += log.undo.len() as u64;
            for e in &log.undo {
                self.rec.touched.insert((e.relation, e.page));
                self.rec.space.remove(&(e.relation, e.page));
            }
            self.store.rollback(&mut log, &lookup)?;
            self.rec.report.txns_undone += 1;
        }
        Ok(())
    }
}

/// The page a record applies to, latched (recreated empty when the record
/// rebuilds the whole page and the old one is missing or torn).
fn page_for<'s>(
    store: &'s Store,
    rel: &Relation,
    pid: PageId,
    payload: &Payload,
    lsn: Lsn,
) -> Result<PageWriteGuard<'s>> {
    let formats = formats_page(payload);
    let g = if pid.0 < rel.page_count() {
        match store.pool.fetch_write(rel.file(), pid) {
            Ok(g) => g,
            Err(BufferError::PageCorrupt { .. } | BufferError::PageBeyondEof { .. }) if formats => {
                store.pool.new_page(rel.file(), pid)?
            }
            Err(e) => {
                return Err(recovery(
                    lsn,
                    format!(
                        "page {pid} of relation {}: {e}; no page image precedes this record",
                        rel.id
                    ),
                ));
            }
        }
    } else if formats {
        let g = store.pool.new_page(rel.file(), pid)?;
        rel.pages
            .fetch_max(pid.0 + 1, std::sync::atomic::Ordering::AcqRel);
        g
    } else {
        return Err(recovery(
            lsn,
            format!(
                "page {pid} of relation {} is past the end of its file and no record formats it",
                rel.id
            ),
        ));
    };
    Ok(g)
}

/// Whether a record rebuilds its whole page, so the old page is not needed.
fn formats_page(payload: &Payload) -> bool {
    match payload {
        Payload::PageImage { .. }
        | Payload::PageInit { .. }
        | Payload::OverflowWrite { .. }
        | Payload::OverflowFree => true,
        Payload::Compensation { action, .. } => formats_page(action),
        _ => false,
    }
}

fn recovery(lsn: Lsn, reason: String) -> Error {
    DbError::Recovery { lsn, reason }.into()
}
