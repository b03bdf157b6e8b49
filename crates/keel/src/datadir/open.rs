//! The open sequence (module docs of [`crate::datadir`], steps 1–5): from a
//! path to an [`Engine`] whose recovery is done.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use keel_io::AsyncIo;
use parking_lot::{Mutex, RwLock};

use super::files::{create_file, list_files, open_file};
use super::layout::{archive_follows, heap_path, lock_path, rel_dir, wal_dir};
use crate::buffer::BufferPool;
use crate::engine::Engine;
use crate::error::{DbError, Error, Result};
use crate::fsm::{EMPTY_PAGE_FREE, FreeSpaceMap};
use crate::heap::catalog::{CATALOG_ID, CATALOG_NAME, Catalog, decode_row};
use crate::heap::read::HeapScan;
use crate::heap::{Relation, RelationKind};
use crate::lock::LockManager;
use crate::recovery::checkpoint::load_fsm;
use crate::recovery::control::{Control, read_control};
use crate::recovery::{Finish, PageSpace, Recovered, RecoveryReport, recover};
use crate::storage::Storage;
use crate::storage::images::{PageImages, PoolFlusher};
use crate::txn::TxnTable;
use crate::txn::table::next_txn_id;
use crate::types::{Lsn, PageId, RelationId, TupleId};
use crate::wal::Wal;
use crate::{Config, RecoveryCheckpoint};

/// Opens `dir`: the files, recovery, the catalog and the FSMs, then a
/// checkpoint. Returns `true` when the checkpoint after a crash recovery is
/// left to a background thread ([`RecoveryCheckpoint::Background`]). After
/// a clean shutdown or on a new database it is taken here: it has nothing
/// to write, and it must mark the control file unclean before any work
/// starts.
pub(crate) fn open(dir: &Path, config: &Config, io: Arc<dyn AsyncIo>) -> Result<(Engine, bool)> {
    super::layout::check_adoptable(&io, dir, super::layout::Adopt::ForWork)?;
    ensure_dir(&io, dir)?;
    let dir_lock = lock_dir(dir)?;
    let control = read_control(&io, dir)?;
    let synced = super::sync_if_unclean(&io, dir, control.as_ref(), config.recovery_init_sync)?;
    let (store, log_rewritten) = open_store(dir, config, io, control.as_ref(), synced.is_some())?;
    let mut rels = open_relation_files(&store, dir, control.is_some())?;
    let recovered = recover(
        &store,
        dir,
        &mut rels,
        control.as_ref(),
        config.wal.recovery_mode,
        Finish::Undo,
    )?;
    let catalog = Catalog::new(recovered.next_relation);
    let (orphans, removed) = load_catalog(&store, dir, &catalog, rels, &recovered)?;
    let next_txn = next_txn_id(
        dir,
        &[
            control.map_or(1, |c| c.next_txn.0),
            recovered.max_txn.0.saturating_add(1),
        ],
    )?;
    let mut report = recovered.report;
    report.data_dir_sync = synced;
    report.log_bytes_rewritten = log_rewritten;
    report.orphan_files = orphans;
    report.creates_removed = removed;
    let engine = Engine {
        dir: dir.to_path_buf(),
        store,
        catalog,
        txns: TxnTable::new(next_txn),
        checkpoint_lock: Mutex::new(()),
        last_checkpoint: Mutex::new((Lsn::ZERO, Instant::now())),
        recovery: RecoveryReport::default(),
        poison: OnceLock::new(),
        background_error: Mutex::new(None),
        cleanup_failures: AtomicU64::new(0),
        _dir_lock: dir_lock,
    };
    reclaim_emptied(&engine, &recovered.deleted_on)?;
    free_dead_slots(&engine, &recovered.dead_on)?;
    free_released_chains(&engine, &recovered.released_chains)?;
    let deferred = config.recovery_checkpoint == RecoveryCheckpoint::Background
        && control.is_some_and(|c| !c.clean);
    if !deferred {
        engine.checkpoint(false)?;
    }
    report.duration = report.duration.max(Duration::from_nanos(1));
    let engine = Engine {
        recovery: report,
        ..engine
    };
    Ok((engine, deferred))
}

/// Reclaims the tree leaves left empty by committed deletes whose reclaim
/// a crash stopped: reclaim runs after the deleting commit and is not
/// logged until it runs, so the open looks again at every leaf a key
/// delete in the log read named (`reclaim_leaf` checks that the leaf is
/// still an empty leaf its parent links to, and otherwise changes
/// nothing). No transaction runs yet.
fn reclaim_emptied(
    engine: &Engine,
    deleted_on: &rustc_hash::FxHashMap<(RelationId, PageId), Vec<u8>>,
) -> Result<()> {
    let mut leaves: Vec<_> = deleted_on.iter().collect();
    leaves.sort_by_key(|((rid, pid), _)| (*rid, *pid));
    for ((rid, pid), key) in leaves {
        let Some(rel) = engine.catalog.get(*rid) else {
            continue;
        };
        if rel.kind != crate::heap::RelationKind::Tree || pid.0 >= rel.page_count() {
            continue;
        }
        let empty_leaf = {
            let g = engine.store.pool.fetch_read(rel.file(), *pid)?;
            crate::page::tree::TreePage::open(&g[..], *pid)
                .is_ok_and(|p| p.is_leaf() && p.is_empty())
        };
        if empty_leaf {
            engine.store.reclaim_leaf(&rel, *pid, key)?;
        }
    }
    Ok(())
}

/// Frees the dead slots on the heap pages a tuple delete in the log named
/// (`dead_on`): a committed delete's slot is freed after its commit, in a
/// record of its own that a crash may have kept out of the log, and a
/// dead slot is needed only while its deleting transaction may still roll
/// back. Undo has run and no transaction runs yet, so every dead slot is
/// garbage here. A page that cannot be read or changed keeps its dead
/// slots (counted with the cleanup failures: space, never data); a fatal
/// failure (a page write or the log failed) fails the open, as a failure
/// of the checkpoint ending recovery does (invariant 16).
fn free_dead_slots(
    engine: &Engine,
    dead_on: &rustc_hash::FxHashSet<(RelationId, PageId)>,
) -> Result<()> {
    let mut pages: Vec<_> = dead_on.iter().copied().collect();
    pages.sort_unstable();
    for (rid, pid) in pages {
        let Some(rel) = engine.catalog.get(rid) else {
            continue;
        };
        if rel.kind != crate::heap::RelationKind::Heap || pid.0 >= rel.page_count() {
            continue;
        }
        if let Err(e) = engine.store.free_dead_slots(&rel, pid) {
            cleanup_failed(engine, e)?;
        }
    }
    Ok(())
}

/// A cleanup of the open that failed: a fatal error fails the open, any
/// other is counted with the cleanup failures (its space stays leaked).
fn cleanup_failed(engine: &Engine, e: Error) -> Result<()> {
    if e.class() == crate::ErrorClass::Fatal {
        return Err(e);
    }
    engine
        .cleanup_failures
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Frees what is left of the overflow chains committed transactions
/// dropped in the log read (`released`): each chain is freed after its
/// commit, in records a crash may have kept out of the log, in whole or in
/// part (the last page first, so what is left is the chain's first pages,
/// still linked). Only pages unchanged since the record that dropped the
/// reference are freed (`Storage::free_chain`): a page changed since was
/// freed then, and may hold another value now. A chain that cannot be
/// read stays allocated (counted with the cleanup failures: space, never
/// data); a fatal failure fails the open.
fn free_released_chains(
    engine: &Engine,
    released: &[(RelationId, crate::page::OverflowHead, Lsn)],
) -> Result<()> {
    for &(rid, head, lsn) in released {
        // A heap's or a tree's: both keep values in the same chains.
        let Some(rel) = engine.catalog.get(rid) else {
            continue;
        };
        if let Err(e) = engine.store.free_chain(&rel, head, Some(lsn)) {
            cleanup_failed(engine, e)?;
        }
    }
    Ok(())
}

/// Opens the log (checking it belongs with `control`) and builds the
/// storage context on it. After an `unclean` stop the log's last batch
/// (none of it before the control file's redo start) is written again
/// and synced before anything reads it ([`Wal::rewrite_tail`], invariant
/// 14); returns the bytes that took.
fn open_store(
    dir: &Path,
    config: &Config,
    io: Arc<dyn AsyncIo>,
    control: Option<&Control>,
    unclean: bool,
) -> Result<(Storage, u64)> {
    let scan_start = control.map(|c| c.scan_start());
    let mut wal_config = config.wal.clone();
    // An archive follows this log: nothing it may lack is retired before
    // an archiver moves the hold (docs/storage.md, "Retention interlock").
    wal_config.hold_at_open |= archive_follows(&io, dir);
    let (wal, _) = Wal::open_from(io.clone(), &wal_dir(dir), wal_config, scan_start)?;
    if let Some(c) = control
        && c.database_id != wal.database_id()
    {
        return Err(DbError::Corrupt {
            what: format!("data directory {}", dir.display()),
            reason: format!(
                "the control file belongs to database {:#x}, the log to {:#x}",
                c.database_id,
                wal.database_id()
            ),
        }
        .into());
    }
    let log_rewritten = match unclean {
        true => wal.rewrite_tail(control.map(|c| c.redo_start))?,
        false => 0,
    };
    let wal = Arc::new(wal);
    let images = Arc::new(PageImages::open(
        io.clone(),
        dir,
        wal.database_id(),
        control.map(|c| c.redo_start),
        unclean,
    )?);
    let flusher = Arc::new(PoolFlusher {
        wal: wal.clone(),
        images: images.clone(),
    });
    let pool = BufferPool::new(io.clone(), flusher, config.buffer.clone())?;
    let store = Storage {
        io,
        pool,
        wal,
        images,
        redo_point: RwLock::new(control.map_or(Lsn::ZERO, |c| c.redo_start)),
        reserved: Mutex::new(HashMap::new()),
        locks: LockManager::new(config.lock_timeout),
        consistency_check: config.consistency_check,
    };
    Ok((store, log_rewritten))
}

/// Starts the page images of a standby's restartpoint at `epoch`, the redo
/// start of the checkpoint its control file is about to name
/// (`storage::images`, "Two files"): the image of every page redo saw
/// (`pages`) that holds a record at or after `epoch` — its page LSN says
/// so — is appended and synced. Those pages are on disk and synced, so each is a whole
/// state of its page from the epoch on; a page redo changes after the
/// control file moves then needs no image of its own, and one torn by a
/// write of the next apply is repaired from these.
fn restart_images(
    store: &Storage,
    rels: &HashMap<RelationId, Arc<Relation>>,
    mut pages: Vec<(RelationId, PageId)>,
    epoch: Lsn,
) -> Result<()> {
    pages.sort_unstable();
    store.images.start_epoch(epoch);
    for (rid, pid) in pages {
        let Some(rel) = rels.get(&rid) else {
            continue;
        };
        if pid.0 >= rel.page_count() {
            continue;
        }
        let g = store.pool.fetch_read(rel.file(), pid)?;
        if crate::page::page_lsn(&g[..]).is_some_and(|l| l >= epoch) {
            store
                .images
                .append(epoch, rid, pid, crate::storage::frame_page(&g[..]))?;
        }
    }
    store.images.sync()
}

/// Opens every relation file in `rel/` (creating the catalog's on a new
/// database) and checks their lengths; names come later, from the catalog.
fn open_relation_files(
    store: &Storage,
    dir: &Path,
    has_control: bool,
) -> Result<HashMap<RelationId, Arc<Relation>>> {
    ensure_dir(&store.io, &rel_dir(dir))?;
    let mut rels = HashMap::new();
    for id in list_files(store, dir)? {
        let pages = open_file(store, dir, id)?;
        rels.insert(id, Arc::new(placeholder(id, pages)));
    }
    if let std::collections::hash_map::Entry::Vacant(slot) = rels.entry(CATALOG_ID) {
        if has_control {
            return Err(DbError::Corrupt {
                what: format!("data directory {}", dir.display()),
                reason: "the catalog's file rel/0.heap is missing".into(),
            }
            .into());
        }
        let pages = create_file(store, dir, CATALOG_ID)?;
        slot.insert(Arc::new(placeholder(CATALOG_ID, pages)));
    }
    crate::recovery::ddl::check_file_lengths(store, dir, &rels)?;
    Ok(rels)
}

fn placeholder(id: RelationId, pages: u32) -> Relation {
    Relation::new(
        id,
        format!("relation {id}"),
        pages,
        FreeSpaceMap::new(),
        None,
        RelationKind::Heap,
    )
}

/// Creates `dir` through the I/O backend if it does not exist.
fn ensure_dir(io: &Arc<dyn AsyncIo>, dir: &Path) -> Result<()> {
    if io.read_dir(dir).wait().is_ok() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(io, parent)?;
    }
    let data_dir = |action, source| Error::DataDir {
        action,
        path: dir.to_path_buf(),
        source,
    };
    match io.create_dir(dir).wait() {
        Ok(()) | Err(keel_io::IoError::AlreadyExists { .. }) => {}
        Err(e) => return Err(data_dir("create the directory", e)),
    }
    io.sync_dir(&super::parent_dir(dir))
        .wait()
        .map_err(|e| data_dir("sync the directory holding", e))?;
    Ok(())
}

/// Takes `dir/LOCK` exclusively when `dir` is on the real file system (a
/// simulated backend's directories are not); `None` when `dir` is not a
/// directory. The lock lasts as long as the returned file is open. Every
/// open takes it first; a tool that changes a data directory without
/// opening it (wiping one, say) takes it the same way and holds it while
/// it works. A lock another process holds is [`DbError::Locked`];
/// something other than a regular file in `LOCK`'s place is
/// [`Error::NotARegularFile`] naming what it is; and nothing in `dir`
/// changes but `LOCK` being created if absent.
pub fn lock_dir(dir: &Path) -> Result<Option<std::fs::File>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    crate::dir_mode::check(dir)?;
    let path = lock_path(dir);
    let failed = |action, e| Error::DataDir {
        action,
        path: path.clone(),
        source: keel_io::IoError::from_os(keel_io::OpKind::Open, keel_io::FileRef::path(&path), e),
    };
    // Anything but a regular file in the lock file's place is refused by
    // its kind before it is opened; one put there meanwhile is refused
    // after, as it is opened without blocking (a FIFO opens at once rather
    // than waiting for a process at its other end).
    let not_a_file = |kind| Error::NotARegularFile {
        path: path.clone(),
        kind,
    };
    match super::non_regular_kind(&path) {
        Ok(Some(kind)) => return Err(not_a_file(kind)),
        Ok(None) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed("read the lock file's metadata", e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).read(true).write(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, keel_io::FILE_MODE);
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options
        .open(&path)
        .map_err(|e| failed("create the lock file", e))?;
    let kind = file
        .metadata()
        .map_err(|e| failed("read the lock file's metadata", e))?
        .file_type();
    if !kind.is_file() {
        return Err(not_a_file(super::kind_name(kind)));
    }
    match try_lock_waiting(&file) {
        Ok(true) => Ok(Some(file)),
        Ok(false) | Err(_) => Err(DbError::Locked(dir.display().to_string()).into()),
    }
}

/// Takes the exclusive advisory lock on `file`: `Ok(false)` when another
/// holder keeps it. A lock belongs to its file's open file description,
/// which a child that another thread of the holding process forks shares
/// until its exec closes it: a lock just released can look held for that
/// while, which on a loaded machine (a test suite spawning processes on
/// two cores) has passed a quarter of a second. So a held lock is tried
/// again for up to two seconds; a holder that stays (another open
/// database) is still reported after the wait. Every taker of `LOCK` (the
/// open, and the tools that refuse an open database) goes through here.
pub fn try_lock_waiting(file: &std::fs::File) -> std::io::Result<bool> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// How long [`try_lock_waiting`] waits for a lock held only for an
/// instant.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Reads the catalog's rows after recovery, gives every relation its name
/// and FSM, and settles files no row names
/// ([`settle_unnamed`](crate::recovery::ddl::settle_unnamed)): returns the
/// orphans kept and the uncommitted creates removed.
fn load_catalog(
    store: &Storage,
    dir: &Path,
    catalog: &Catalog,
    mut rels: HashMap<RelationId, Arc<Relation>>,
    recovered: &Recovered,
) -> Result<(Vec<PathBuf>, Vec<RelationId>)> {
    let finish = |id: RelationId,
                  pages: u32,
                  name: String,
                  tid: Option<TupleId>,
                  kind|
     -> Result<Arc<Relation>> {
        let rel = Relation::new(id, name, pages, FreeSpaceMap::new(), tid, kind);
        let fsm = load_fsm(store, dir, id, pages);
        let loaded = fsm.is_some();
        let rel = Relation {
            fsm: fsm.unwrap_or_default(),
            ..rel
        };
        refresh_fsm(store, &rel, recovered, loaded)?;
        Ok(Arc::new(rel))
    };
    let cat = rels.remove(&CATALOG_ID).map_or(0, |r| r.page_count());
    let cat = finish(
        CATALOG_ID,
        cat,
        CATALOG_NAME.into(),
        None,
        RelationKind::Heap,
    )?;
    catalog.insert(Arc::clone(&cat));
    for row in HeapScan::new(store, cat, None) {
        let (tid, bytes) = row?;
        let (id, name, kind) = decode_row(tid, &bytes)?;
        let Some(rel) = rels.remove(&id) else {
            return Err(DbError::Corrupt {
                what: format!("relation {id} ({name})"),
                reason: format!(
                    "the catalog lists it but its file {} is missing",
                    heap_path(dir, id).display()
                ),
            }
            .into());
        };
        catalog.insert(finish(id, rel.page_count(), name, Some(tid), kind)?);
    }
    let uncommitted = &recovered.ddl.uncommitted_creates;
    crate::recovery::ddl::settle_unnamed(store, dir, rels.into_keys(), uncommitted)
}

/// Brings a relation's FSM up to date: pages recovery saw are recorded from
/// what redo found (no read); pages past what a loaded map covers, or every
/// page when none was loaded, and pages undo changed are read. Pages the
/// log does not name since the checkpoint keep their saved entries.
fn refresh_fsm(store: &Storage, rel: &Relation, rec: &Recovered, loaded: bool) -> Result<()> {
    let pages = rel.page_count();
    let from = if loaded {
        rel.fsm.covered_pages().min(pages)
    } else {
        0
    };
    rel.fsm.truncate(pages);
    // Below `from`, the saved map is as of the last checkpoint: every page a
    // record after it names (redone, or skipped because the page reached
    // the disk before the crash) may have changed since.
    let mut todo: Vec<u32> = (from..pages).collect();
    todo.extend(
        rec.touched
            .iter()
            .chain(rec.space.keys())
            .filter(|(r, p)| *r == rel.id && p.0 < from)
            .map(|(_, p)| p.0),
    );
    todo.sort_unstable();
    todo.dedup();
    for p in todo {
        let pid = PageId(p);
        let space = match rec.space.get(&(rel.id, pid)) {
            Some(s) => *s,
            None => match store.pool.fetch_read(rel.file(), pid) {
                Ok(g) => PageSpace::of(&g, pid),
                // A page that fails verification is reported where it is
                // read (a get, a scan, `keel check`), never offered for
                // space, and does not keep the rest of the database from
                // opening: redo did not need it (its pages are in
                // `rec.space`). An I/O error still fails the open.
                Err(crate::buffer::BufferError::PageCorrupt { .. }) => PageSpace::Other,
                Err(e) => return Err(e.into()),
            },
        };
        match space {
            PageSpace::Heap(contiguous, total) => rel.fsm.update(pid, contiguous, total),
            PageSpace::Free => rel.fsm.update(pid, EMPTY_PAGE_FREE, EMPTY_PAGE_FREE),
            PageSpace::Other => {
                rel.fsm.remove(pid);
            }
        }
    }
    rel.fsm.cover(pages);
    Ok(())
}

/// The open sequence up to redo, for a standby ([`crate::standby`]): the
/// files, redo of the whole log from the control file's checkpoint with
/// no undo, every page redo changed written and synced, and the control
/// file moved to the newest complete checkpoint the log holds (the
/// restartpoint). Nothing is logged, and the directory stays unclean.
pub(crate) fn apply_redo_only(
    dir: &Path,
    config: &Config,
    io: Arc<dyn AsyncIo>,
) -> Result<crate::standby::ApplyReport> {
    super::layout::check_adoptable(&io, dir, super::layout::Adopt::ForRedo)?;
    let dir_lock = lock_dir(dir)?;
    let Some(control) = read_control(&io, dir)? else {
        return Err(DbError::Config(format!(
            "{} has no control file: a standby applies log to a restored database",
            dir.display()
        ))
        .into());
    };
    let synced = super::sync_if_unclean(&io, dir, Some(&control), config.recovery_init_sync)?;
    let (store, log_rewritten) = open_store(dir, config, io, Some(&control), synced.is_some())?;
    let mut rels = open_relation_files(&store, dir, true)?;
    let recovered = recover(
        &store,
        dir,
        &mut rels,
        Some(&control),
        config.wal.recovery_mode,
        Finish::RedoOnly,
    )?;
    // Invariant 4 holds trivially: the log is all durable (nothing new).
    store.pool.flush_all()?;
    // Decided DDL outcomes of the applied log: the files of drops known
    // committed and of creates known aborted go (the primary removed them
    // too; redo re-creates a created relation's file and removes none).
    // Before the restartpoint moves past their records, which would leave
    // those files outside every later scan (module docs of `crate::standby`,
    // step 3).
    let sorted = |ids: &rustc_hash::FxHashSet<RelationId>| {
        let mut v: Vec<RelationId> = ids.iter().copied().collect();
        v.sort_unstable();
        v
    };
    let drops = sorted(&recovered.ddl.committed_drops);
    let creates = sorted(&recovered.ddl.uncommitted_creates);
    for &rel in drops.iter().chain(&creates) {
        rels.remove(&rel);
        super::files::remove_files(&store, dir, rel)?;
    }
    let mut report = recovered.report;
    report.drops_completed = drops;
    report.creates_removed = creates;
    report.data_dir_sync = synced;
    report.log_bytes_rewritten = log_rewritten;
    let restartpoint = recovered
        .last_checkpoint
        .filter(|c| c.end > control.checkpoint_end)
        .map(|c| Control {
            clean: false,
            next_relation: recovered.next_relation.max(control.next_relation),
            database_id: control.database_id,
            redo_start: c.redo_start,
            checkpoint_end: c.end,
            undo_start: c.undo_start,
            next_txn: c.next_txn,
        });
    let restartpoint = match restartpoint {
        Some(mut c) => {
            c.next_txn = next_txn_id(
                dir,
                &[
                    c.next_txn.0,
                    recovered.max_txn.0.saturating_add(1),
                    control.next_txn.0,
                ],
            )?;
            Some(c)
        }
        None => None,
    };
    if let Some(c) = &restartpoint {
        let seen: Vec<(RelationId, PageId)> = recovered.space.keys().copied().collect();
        restart_images(&store, &rels, seen, c.redo_start)?;
        crate::recovery::control::write_control(&store.io, dir, c)?;
        store.images.epoch_durable(c.redo_start);
    }
    drop(store);
    drop(dir_lock);
    Ok(crate::standby::ApplyReport {
        recovery: report,
        restartpoint: restartpoint.map(|c| c.checkpoint_end),
    })
}
