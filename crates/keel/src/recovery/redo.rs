//! The recovery pass: analysis and redo in one scan of the log, then undo
//! of the losers (module docs of [`crate::recovery`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rustc_hash::{FxHashMap, FxHashSet};

use super::RecoveryReport;
use super::control::Control;
use super::ddl::DdlLog;
use crate::buffer::{BufferError, PageWriteGuard};
use crate::datadir::files::{create_file, highest_file_id};
use crate::error::{DbError, Error, Result};
use crate::heap::Relation;
use crate::page::header::HEADER_SIZE;
use crate::page::header::offsets as header;
use crate::page::{PAGE_SIZE, PageType, SLOT_SIZE, SlotKind, SlottedPage, page_lsn};
use crate::storage::Storage;
use crate::storage::apply::apply;
use crate::txn::undo::{TxnLog, Undo, UndoEntry, push_undo};
use crate::types::{Lsn, PageId, RelationId, SlotId, TxnId};
use crate::wal::{Payload, RecordHeader, RecoveryMode};

/// Records read ahead of redo: at most this many, or [`WINDOW_BYTES`] of
/// payload, are decoded before their pages are prefetched in one batch.
const WINDOW_RECORDS: usize = 16_384;
/// Payload bytes read ahead of redo (see [`WINDOW_RECORDS`]).
const WINDOW_BYTES: usize = 4 << 20;

/// What recovery hands back to the database.
pub(crate) struct Recovered {
    pub report: RecoveryReport,
    /// Pages redo or undo changed.
    pub touched: FxHashSet<(RelationId, PageId)>,
    /// Free space of each page redo saw (changed or not), as it was when
    /// redo ended; pages undo changed afterwards are left out (their FSM
    /// entries are read again from the page).
    pub space: FxHashMap<(RelationId, PageId), PageSpace>,
    /// Highest transaction id seen.
    pub max_txn: TxnId,
    /// Creates and drops the log holds ([`super::ddl`]).
    pub ddl: DdlLog,
    /// The id the next relation gets: past the control file's counter,
    /// every id a `relation-create` record names and every relation file
    /// found on disk (ids are never reused, invariant 13).
    pub next_relation: u32,
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

/// A transaction seen by analysis and not (yet) ended.
#[derive(Default)]
struct Open {
    last_lsn: Lsn,
    /// Its records that rollback would undo, oldest first: where they are,
    /// not their payloads (read back from the log only for a loser).
    undo: Vec<UndoRef>,
}

/// A record on an undo stack, by position.
#[derive(Clone, Copy)]
struct UndoRef {
    relation: RelationId,
    page: PageId,
    lsn: Lsn,
    prev_lsn: Lsn,
}

/// The page redo holds latched between records.
struct Cached<'a> {
    rid: RelationId,
    guard: PageWriteGuard<'a>,
    /// Whether redo applied a record to it.
    changed: bool,
    /// The last record redo applied to it.
    last_lsn: Lsn,
}

struct Pass<'a> {
    store: &'a Storage,
    /// The page of the previous record, still latched: consecutive records
    /// of one page (the common case) fetch it once. Released (its free
    /// space and, if redo changed it, its id recorded) before any other
    /// page is fetched (invariant 11) and before undo.
    cached: Option<Cached<'a>>,
    dir: &'a Path,
    rels: &'a mut HashMap<RelationId, Arc<Relation>>,
    redo_start: Lsn,
    /// How the log is read (undo reads losers' records back).
    mode: RecoveryMode,
    txns: BTreeMap<TxnId, Open>,
    rec: Recovered,
}

/// Runs analysis, redo and undo over the log of the open `store`, starting
/// from `control`'s checkpoint (the whole log when there is none).
/// `rels` holds the relation files found on disk; redo adds and removes
/// entries as relations are created and dropped.
pub(crate) fn recover(
    store: &Storage,
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
        mode,
        txns: BTreeMap::new(),
        rec: Recovered {
            report: RecoveryReport {
                clean_shutdown: control.is_some_and(|c| c.clean),
                scan_start,
                redo_start,
                ..RecoveryReport::default()
            },
            touched: FxHashSet::default(),
            space: FxHashMap::default(),
            max_txn: control.map_or(TxnId(0), |c| TxnId(c.next_txn.0.saturating_sub(1))),
            ddl: DdlLog::default(),
            next_relation: 1,
        },
    };
    let highest_file = highest_file_id(store, dir)?;
    if let Some(c) = control {
        c.check_log_reaches(store.wal.open_end(), &store.wal)?;
    }
    let reader = store.wal.recovery_reader(scan_start, mode)?;
    // Windows redo is done with go back to the reader, which drops their
    // payloads and refills them: the thread that allocated a payload frees
    // it (freeing across threads costs the allocator far more).
    let (back_tx, back_rx) = crossbeam_channel::bounded::<Window>(READ_AHEAD_WINDOWS + 1);
    let recycled = move || back_rx.try_recv().ok();
    let mut outcome = Ok(());
    let mut run = |window: Result<Window>| {
        let done = window.and_then(|w| {
            let done = pass.window(&w);
            let _ = back_tx.try_send(w);
            done
        });
        let ok = done.is_ok();
        if let Err(e) = done {
            outcome = Err(e);
        }
        ok
    };
    // Reading, validating and decoding the log runs on a thread of its
    // own, a window ahead of redo, so the two overlap. Inline instead on
    // one core, and on the simulated disk (whose crash tests replay a seed
    // only if the order of I/O operations is deterministic).
    let parallel = store.io.backend_name() != "sim"
        && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    if parallel {
        let (tx, rx) = crossbeam_channel::bounded::<Result<Window>>(READ_AHEAD_WINDOWS);
        std::thread::scope(|s| {
            let reading = std::thread::Builder::new()
                .name("keel-redo-read".into())
                .spawn_scoped(s, move || {
                    read_windows(reader, recycled, |w| tx.send(w).is_ok())
                });
            if let Err(e) = reading {
                return run(Err(recovery(
                    scan_start,
                    format!("cannot start the log reader thread: {e}"),
                )));
            }
            // Leaving early drops `rx`: the reader's next send fails and it
            // stops.
            rx.into_iter().all(&mut run)
        });
    } else {
        read_windows(reader, recycled, &mut run);
    }
    outcome?;
    pass.rec.report.log_end = store.wal.end_lsn();
    pass.release_cached()?;
    pass.undo_losers()?;
    let dropped = pass.rec.ddl.finish(store, dir, pass.rels)?;
    pass.rec.report.drops_completed = dropped;
    let after = |id: Option<RelationId>| id.map_or(1, |r| r.0.saturating_add(1));
    pass.rec.next_relation = control
        .map_or(1, |c| c.next_relation)
        .max(after(pass.rec.ddl.max_created))
        .max(after(highest_file))
        .max(1);
    pass.rec.report.pages_redone = pass.rec.touched.len() as u64;
    pass.rec.report.duration = started.elapsed();
    Ok(pass.rec)
}

/// Decoded records, in log order, that redo runs as one batch.
type Window = Vec<(RecordHeader, Payload)>;

/// Windows the reader may be ahead of redo.
const READ_AHEAD_WINDOWS: usize = 2;

/// Reads the log to its end, handing `send` a window at a time (at most
/// [`WINDOW_RECORDS`] records or [`WINDOW_BYTES`] of payload), then any
/// error, which ends the reading. Stops early when `send` returns false
/// (redo gave up). Each new window reuses one that `recycled` hands back
/// (emptied here), if any.
fn read_windows(
    mut reader: crate::wal::WalReader,
    mut recycled: impl FnMut() -> Option<Window>,
    mut send: impl FnMut(Result<Window>) -> bool,
) {
    let mut fresh = || {
        recycled()
            .map(|mut w| {
                w.clear();
                w
            })
            .unwrap_or_default()
    };
    let mut window = fresh();
    let mut window_bytes = 0usize;
    // Each payload is decoded straight from the reader's segment buffer.
    while let Some(record) = reader
        .next_with(|h, payload| Payload::decode_record(&h, payload).map(|p| (h, p, payload.len())))
    {
        // A record the log cannot read, or whose payload does not decode.
        let decoded = record.and_then(|d| d).map_err(Error::from);
        let (header, payload, len) = match decoded {
            Ok(d) => d,
            Err(e) => {
                if !window.is_empty() && !send(Ok(std::mem::take(&mut window))) {
                    return;
                }
                send(Err(e));
                return;
            }
        };
        window_bytes += len;
        window.push((header, payload));
        if window.len() >= WINDOW_RECORDS || window_bytes >= WINDOW_BYTES {
            if !send(Ok(std::mem::replace(&mut window, fresh()))) {
                return;
            }
            window_bytes = 0;
        }
    }
    if !window.is_empty() {
        send(Ok(window));
    }
}

impl<'a> Pass<'a> {
    /// Prefetches the pages the window's records will read, then runs
    /// each record.
    fn window(&mut self, window: &[(RecordHeader, Payload)]) -> Result<()> {
        self.prefetch(window)?;
        for (h, payload) in window {
            self.record(*h, payload)?;
        }
        Ok(())
    }

    /// Read-ahead for a window: every page inside its file that a redo
    /// record will fetch, loaded in one batch so redo does not wait for one
    /// read at a time. That includes a page whose first record rebuilds it
    /// (init, image): the page on disk may already hold that record and the
    /// ones after it, which redo then skips; leaving it out made each such
    /// page a synchronous read. Only a hint: a page that does not load is
    /// fetched (and its error reported) by the record that needs it.
    fn prefetch(&mut self, window: &[(RecordHeader, Payload)]) -> Result<()> {
        let limit = (self.store.pool.frame_count() / 4).max(1);
        let mut seen = FxHashSet::default();
        let mut pages = Vec::new();
        for (h, payload) in window {
            let (Some(rid), Some(pid)) = (h.relation, h.page) else {
                continue;
            };
            if h.lsn < self.redo_start || !payload.page_changing() || !seen.insert((rid, pid)) {
                continue;
            }
            let Some(rel) = self.rels.get(&rid) else {
                continue;
            };
            if pid.0 < rel.page_count() {
                pages.push((rel.file(), pid));
                if pages.len() == limit {
                    break;
                }
            }
        }
        if pages.len() > 1 {
            // Invariant 11: no latch is held while other pages are read.
            self.release_cached()?;
            self.store.pool.prefetch(&pages)?;
        }
        Ok(())
    }

    fn record(&mut self, h: RecordHeader, payload: &Payload) -> Result<()> {
        self.rec.report.records_scanned += 1;
        self.rec.report.bytes_scanned += u64::from(h.total_len);
        if h.lsn >= self.redo_start {
            self.redo_record(&h, payload)?;
        }
        self.analyse(&h, payload);
        Ok(())
    }

    fn redo_record(&mut self, h: &RecordHeader, payload: &Payload) -> Result<()> {
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
            p if p.page_changing() => self.redo(h, p),
            _ => Ok(()),
        }
    }

    /// Analysis: the transaction table and each transaction's undo stack.
    fn analyse(&mut self, h: &RecordHeader, payload: &Payload) {
        if h.txn.0 == 0 {
            return;
        }
        self.rec.max_txn = self.rec.max_txn.max(h.txn);
        self.rec.ddl.analyse(h.txn, payload);
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
            t.undo.push(UndoRef {
                relation,
                page,
                lsn: h.lsn,
                prev_lsn: h.prev_lsn,
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
            crate::fsm::FreeSpaceMap::new(),
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
        // The page latched for the previous record (the common case) needs
        // no relation lookup: its relation was there when it was latched,
        // and a drop releases it first.
        let rel = if self.holds(rid, pid) {
            None
        } else {
            let Some(rel) = self.rels.get(&rid).cloned() else {
                // The relation's file is gone: skipped, and accounted for
                // once the whole log is read (`DdlLog::finish`).
                self.rec.ddl.missing(rid, h.lsn);
                return Ok(());
            };
            Some(rel)
        };
        let store = self.store;
        let mut c = self.latch(rid, pid, h.lsn, || match &rel {
            Some(rel) => page_for(store, rel, pid, payload, h.lsn),
            None => Err(recovery(h.lsn, format!("relation {rid} not found"))),
        })?;
        if let Some(l) = page_lsn(&c.guard).filter(|&l| l >= h.lsn) {
            // A page can only hold changes the log has: one past its end
            // means the log lost its tail, and LSNs would be handed out
            // again.
            let end = self.store.wal.open_end();
            if l >= end {
                self.cached = Some(c);
                return Err(recovery(
                    h.lsn,
                    format!(
                        "page {pid} of relation {rid} has LSN {l}, at or past the end of \
                         the log at {end}: the log lost records the page holds"
                    ),
                ));
            }
            self.rec.report.records_skipped += 1;
        } else {
            apply(payload, &mut c.guard, pid, h.lsn).map_err(|e| {
                recovery(h.lsn, format!("redo on page {pid} of relation {rid}: {e}"))
            })?;
            c.guard.mark_dirty(h.lsn);
            c.changed = true;
            c.last_lsn = h.lsn;
            self.rec.report.records_redone += 1;
        }
        self.cached = Some(c);
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
            store.pool.fetch_write(rel.file(), pid).map_err(|e| {
                recovery(
                    h.lsn,
                    format!("page {pid} of relation {rid}, checked after {of}: {e}"),
                )
            })
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
            self.rec.report.consistency_checks += 1;
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
        open: impl FnOnce() -> Result<PageWriteGuard<'a>>,
    ) -> Result<Cached<'a>> {
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
                crate::page::verify_structure(&c.guard, pid).map_err(|e| {
                    recovery(
                        c.last_lsn,
                        format!(
                            "page {pid} of relation {} fails verification after redo: {e}",
                            c.rid
                        ),
                    )
                })?;
            }
            self.rec
                .space
                .insert((c.rid, pid), PageSpace::of(&c.guard, pid));
            if c.changed {
                self.rec.touched.insert((c.rid, pid));
            }
        }
        Ok(())
    }

    /// Undo: rolls every loser back with CLRs and an abort record.
    fn undo_losers(&mut self) -> Result<()> {
        let losers = std::mem::take(&mut self.txns);
        let mut payloads = self.read_back(&losers)?;
        let rels: &HashMap<RelationId, Arc<Relation>> = self.rels;
        let lookup = |id: RelationId| rels.get(&id).cloned();
        for (txn, open) in losers.into_iter().rev() {
            let mut log = TxnLog::new(txn);
            log.last_lsn = open.last_lsn;
            // The same stack the running transaction would hold: one entry
            // per overflow chain (`push_undo`), so rollback logs the same CLRs.
            for r in &open.undo {
                let undo = payloads.remove(&r.lsn).ok_or_else(|| {
                    recovery(r.lsn, "the record to undo is gone from the log".into())
                })?;
                let entry = UndoEntry {
                    relation: r.relation,
                    page: r.page,
                    lsn: r.lsn,
                    prev_lsn: r.prev_lsn,
                    undo,
                };
                push_undo(&mut log.undo, entry);
                self.rec.touched.insert((r.relation, r.page));
                self.rec.space.remove(&(r.relation, r.page));
            }
            self.rec.report.records_undone += open.undo.len() as u64;
            self.store.rollback(&mut log, &lookup)?;
            self.rec.report.txns_undone += 1;
        }
        Ok(())
    }

    /// What undoing each record the losers' undo stacks name needs, read
    /// back from the log in one forward scan from the oldest of them
    /// (analysis kept only their positions: most transactions commit, and
    /// their payloads are dropped as soon as redo is done with them). Each
    /// payload is reduced to its [`Undo`] as it is read, so an overflow
    /// chunk is never held.
    fn read_back(&self, losers: &BTreeMap<TxnId, Open>) -> Result<FxHashMap<Lsn, Undo>> {
        let wanted: FxHashSet<Lsn> = losers
            .values()
            .flat_map(|o| o.undo.iter().map(|r| r.lsn))
            .collect();
        let mut found = FxHashMap::default();
        let Some(&from) = wanted.iter().min() else {
            return Ok(found);
        };
        let mut reader = self.store.wal.reader(from, self.mode)?;
        while found.len() < wanted.len() {
            let record = reader.next_with(|h, payload| {
                wanted
                    .contains(&h.lsn)
                    .then(|| Payload::decode_record(&h, payload).map(|p| (h.lsn, p)))
            });
            match record {
                None => break,
                Some(r) => {
                    if let Some(decoded) = r? {
                        let (lsn, payload) = decoded?;
                        found.insert(lsn, Undo::of(Cow::Owned(payload)));
                    }
                }
            }
        }
        Ok(found)
    }
}

/// The page a record applies to, latched (recreated empty when the record
/// rebuilds the whole page and the old one is missing or torn).
fn page_for<'s>(
    store: &'s Storage,
    rel: &Relation,
    pid: PageId,
    payload: &Payload,
    lsn: Lsn,
) -> Result<PageWriteGuard<'s>> {
    let formats = payload.formats_page();
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

/// The first byte offset at which `page` (page `pid`) differs from a
/// page-check `image` in what the page means, if anywhere. Compared: the
/// whole page but its checksum field (frames in memory are not sealed),
/// except on a heap page, where only the header, the slot directory and
/// the bytes of each tuple and forward pointer count. A heap page's free
/// space (the gap, which an image does not log, freed and fragmented
/// bytes, the padding of tuples shorter than their allocation) holds
/// whatever earlier tuples left there and is never read.
fn first_difference(page: &[u8], pid: PageId, image: &[u8; PAGE_SIZE]) -> Option<usize> {
    if page.len() != PAGE_SIZE {
        return Some(page.len().min(PAGE_SIZE));
    }
    let differs = |r: std::ops::Range<usize>| r.into_iter().find(|&i| page[i] != image[i]);
    let checksum = header::CHECKSUM..header::CHECKSUM + 4;
    let head = differs(0..checksum.start).or_else(|| differs(checksum.end..HEADER_SIZE));
    if head.is_some() {
        return head;
    }
    let heap = (image[header::PAGE_TYPE] == PageType::Heap as u8)
        .then(|| SlottedPage::open(&image[..], pid).ok())
        .flatten();
    let Some(heap) = heap else {
        return differs(HEADER_SIZE..PAGE_SIZE);
    };
    let lower = HEADER_SIZE + SLOT_SIZE * usize::from(heap.slot_count());
    if let Some(at) = differs(HEADER_SIZE..lower.min(PAGE_SIZE)) {
        return Some(at);
    }
    let mut first = None;
    for slot in 0..heap.slot_count() {
        let Ok(e) = heap.slot(SlotId(slot)) else {
            // A directory the page reader rejects: compare all of it.
            return differs(HEADER_SIZE..PAGE_SIZE);
        };
        if matches!(e.kind, SlotKind::Tuple | SlotKind::Forward) {
            let off = usize::from(e.offset);
            let end = (off + usize::from(e.len)).min(PAGE_SIZE);
            if let Some(at) = differs(off.min(end)..end) {
                first = Some(first.map_or(at, |f: usize| f.min(at)));
            }
        }
    }
    first
}

fn recovery(lsn: Lsn, reason: String) -> Error {
    DbError::Recovery { lsn, reason }.into()
}
