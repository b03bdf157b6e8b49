//! Fuzzy checkpoints (module docs of [`crate::recovery`]) and the free
//! space map files they write.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use keel_io::{FileClass, IoBuf, OpenOptions};

use super::control::{Control, write_control};
use crate::buffer::FileId;
use crate::datadir::layout::{RelFile, fsm_path, rel_dir};
use crate::error::Result;
use crate::fsm::FreeSpaceMap;
use crate::heap::Relation;
use crate::heap::catalog::Catalog;
use crate::page::PAGE_SIZE;
use crate::storage::Storage;
use crate::txn::TxnTable;
use crate::types::{Lsn, PageId, RelationId};
use crate::wal::{Payload, RecordMeta};

/// What a checkpoint did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointReport {
    /// LSN of its begin record: the new redo start.
    pub begin: Lsn,
    /// LSN of its end record.
    pub end: Lsn,
    /// Pages dirtied again between the begin record and the end record.
    pub dirty_pages: usize,
    /// Transactions running at the end record.
    pub active_txns: usize,
    /// Log segments retired (recycled, deleted or archived).
    pub segments_retired: usize,
    /// Free space map files written (those of relations whose map changed
    /// since it was last saved).
    pub fsm_files_written: usize,
    /// How long it took.
    pub duration: Duration,
}

/// What a checkpoint works on.
pub(crate) struct CheckpointTarget<'a> {
    pub store: &'a Storage,
    pub dir: &'a Path,
    pub catalog: &'a Catalog,
    pub txns: &'a TxnTable,
    /// Whether this is the last act of a clean close.
    pub clean: bool,
    /// Fails once the database is poisoned (invariant 16).
    pub usable: &'a dyn Fn() -> Result<()>,
}

/// Takes a checkpoint. Callers serialize checkpoints.
pub(crate) fn checkpoint(t: &CheckpointTarget<'_>) -> Result<CheckpointReport> {
    let started = Instant::now();
    let store = t.store;
    let begin = log_begin(store)?;
    // Each relation's length before `flush_all`: every page below it is in
    // its heap file once `flush_all` returns, so the maps saved below cover
    // no more (a saved map covering pages the heap file lacks means the
    // file lost them: `recovery::ddl::check_file_lengths`).
    let durable_pages: HashMap<RelationId, u32> = t
        .catalog
        .all()
        .iter()
        .map(|r| (r.id, r.page_count()))
        .collect();
    store.pool.flush_all()?;
    let dirty_pages = store.pool.dirty_pages();
    let dirty_count = dirty_pages.len();
    let redo_start = redo_start(begin, &dirty_pages);
    let active = t.txns.snapshot();
    let undo_start = active
        .iter()
        .map(|a| a.first)
        .min()
        .unwrap_or(redo_start)
        .min(redo_start);
    // Fixed-size (invariant 15): recovery reads neither table, only the
    // control file's starts, which the record repeats for the log's readers.
    let end_payload = Payload::CheckpointEnd {
        begin_lsn: begin,
        next_txn: t.txns.next_id(),
        redo_start,
        undo_start,
        dirty_pages: dirty_count as u64,
        active_txns: active.len() as u64,
    };
    let meta = RecordMeta::new(end_payload.kind());
    let end = store.wal.append_payload(meta, &end_payload)?;
    store.wal.flush(end.lsn)?;
    let fsm_files_written = save_changed_fsms(store, t.dir, t.catalog, &durable_pages)?;
    // A transaction that failed on a poisoned database leaves the table
    // without being undone in memory (recovery undoes it): the snapshot
    // above may lack it while the pages just written hold its changes.
    // Poison came first, so it shows here, and the control file is not
    // moved past that transaction's records (invariant 16).
    (t.usable)()?;
    let control = Control {
        clean: t.clean,
        next_relation: t.catalog.next_id(),
        database_id: store.wal.database_id(),
        redo_start,
        checkpoint_end: end.lsn,
        undo_start,
        next_txn: t.txns.next_id(),
    };
    write_control(&store.io, t.dir, &control)?;
    store.images.epoch_durable(redo_start);
    let retired = store.wal.retire_before(undo_start)?;
    Ok(CheckpointReport {
        begin,
        end: end.lsn,
        dirty_pages: dirty_count,
        active_txns: active.len(),
        segments_retired: retired.recycled.len() + retired.archived.len() + retired.deleted.len(),
        fsm_files_written,
        duration: started.elapsed(),
    })
}

/// Appends the checkpoint's begin record and, under the redo gate, makes
/// its LSN the new redo point and the epoch of the page images: every page
/// changed after it appends its image as of then first (invariant 5,
/// `storage::images`). Returns its LSN.
fn log_begin(store: &Storage) -> Result<Lsn> {
    let mut gate = store.redo_point.write();
    let meta = RecordMeta::new(Payload::CheckpointBegin.kind());
    let rec = store.wal.append_payload(meta, &Payload::CheckpointBegin)?;
    store.images.start_epoch(rec.lsn);
    *gate = rec.lsn;
    Ok(rec.lsn)
}

/// Where redo of a crash after this checkpoint starts, given its begin
/// record and the pages dirty after its `flush_all`. Every change logged
/// before the begin record was on a dirty frame when `flush_all` looked
/// (the redo gate, `heap` module docs step 4), so it is on disk now, and
/// each frame dirty again names as its recLSN its first change after the
/// copy written: none is older than `begin`. Redo starts at the oldest
/// recLSN all the same (ARIES), so that if that ever failed to hold,
/// recovery would replay the change rather than lose it.
fn redo_start(begin: Lsn, dirty_pages: &[(FileId, PageId, Lsn)]) -> Lsn {
    dirty_pages
        .iter()
        .map(|&(_, _, rec_lsn)| rec_lsn)
        .min()
        .map_or(begin, |oldest| oldest.min(begin))
}

/// Writes the FSM file of every relation whose map changed since its file
/// was last saved (`fsm` module docs, "Saving only what changed"), each cut
/// to the heap pages `durable_pages` says were durable before the
/// checkpoint's flush (a saved map never covers a page its heap file may
/// lack), syncs the directory once, and only then marks the maps saved.
/// Returns how many files it wrote. An idle checkpoint writes none,
/// however many relations there are.
fn save_changed_fsms(
    store: &Storage,
    dir: &Path,
    catalog: &Catalog,
    durable_pages: &HashMap<RelationId, u32>,
) -> Result<usize> {
    let mut written = Vec::new();
    for rel in catalog.all() {
        if !rel.fsm.needs_save() {
            continue;
        }
        // A relation created since the lengths were taken has no page
        // known durable yet.
        let pages = durable_pages.get(&rel.id).copied().unwrap_or(0);
        let image = rel.fsm.save_image_below(pages);
        write_fsm(store, dir, &rel, &image.pages)?;
        written.push((rel, image));
    }
    if written.is_empty() {
        return Ok(0);
    }
    // The renames are durable with their directory entries.
    store.io.sync_dir(&rel_dir(dir)).wait()?;
    for (rel, image) in &written {
        // A cut image leaves the map to be saved again by a later
        // checkpoint, once its newer pages are durable.
        if image.complete {
            rel.fsm.mark_saved(image.version);
        }
    }
    Ok(written.len())
}

/// Writes relation `rel`'s FSM file from `pages` (write new, fdatasync,
/// rename); the caller syncs the directory.
fn write_fsm(store: &Storage, dir: &Path, rel: &Relation, pages: &[Vec<u8>]) -> Result<()> {
    let path = fsm_path(dir, rel.id);
    let tmp = RelFile::FsmTmp.path(dir, rel.id);
    let io = &store.io;
    let f = io
        .open(
            &tmp,
            OpenOptions::new(FileClass::Data).write(true).create(true),
        )
        .wait()?;
    let mut bytes = Vec::with_capacity(pages.len() * PAGE_SIZE);
    for p in pages {
        bytes.extend_from_slice(p);
    }
    let len = bytes.len() as u64;
    let written = io
        .write_at(f, 0, IoBuf::from(bytes))
        .wait()
        .and_then(|_| io.set_len(f, len).wait())
        .and_then(|_| io.fdatasync(f).wait());
    io.close(f).wait()?;
    written?;
    io.rename(&tmp, &path).wait()?;
    Ok(())
}

/// Reads relation `id`'s FSM file; `None` when it is missing, does not
/// validate, or is longer than a map of the relation's `heap_pages` needs
/// (the caller rebuilds the map from the heap pages: the FSM is a hint,
/// and a corrupt one is never fatal). The file is read whole only once its
/// size is known to be what `heap_pages` justifies (invariant 9).
pub(crate) fn load_fsm(
    store: &Storage,
    dir: &Path,
    id: RelationId,
    heap_pages: u32,
) -> Option<FreeSpaceMap> {
    let io = &store.io;
    let f = io
        .open(&fsm_path(dir, id), OpenOptions::new(FileClass::Data))
        .wait()
        .ok()?;
    let loaded = (|| {
        let size = io.size(f).wait().ok()? as usize;
        if size == 0 || !size.is_multiple_of(PAGE_SIZE) || size > fsm_file_max(heap_pages) {
            return None;
        }
        let buf = io.read_exact_at(f, 0, IoBuf::zeroed(size)).wait().ok()?;
        FreeSpaceMap::from_pages(buf.chunks(PAGE_SIZE)).ok()
    })();
    let _ = io.close(f).wait();
    loaded
}

/// The largest FSM file a relation of `heap_pages` pages can have: one FSM
/// page per [`ENTRIES_PER_PAGE`](crate::fsm::ENTRIES_PER_PAGE) heap pages
/// (at least one page).
fn fsm_file_max(heap_pages: u32) -> usize {
    (heap_pages as usize)
        .div_ceil(crate::fsm::ENTRIES_PER_PAGE)
        .max(1)
        .saturating_mul(PAGE_SIZE)
}

/// How many heap pages relation `id`'s saved FSM file says it covers
/// (read from its first page), or `None` when there is no file or its
/// first page does not validate (the map is a hint: no evidence then).
pub(crate) fn saved_fsm_coverage(store: &Storage, dir: &Path, id: RelationId) -> Option<u32> {
    let io = &store.io;
    let f = io
        .open(&fsm_path(dir, id), OpenOptions::new(FileClass::Data))
        .wait()
        .ok()?;
    let covered = (|| {
        let size = io.size(f).wait().ok()?;
        if size < PAGE_SIZE as u64 {
            return None;
        }
        let buf = io
            .read_exact_at(f, 0, IoBuf::zeroed(PAGE_SIZE))
            .wait()
            .ok()?;
        let page = crate::fsm::page::FsmPage::decode(&buf, crate::types::PageId(0)).ok()?;
        Some(page.covered_pages())
    })();
    let _ = io.close(f).wait();
    covered
}
