//! The public facade: [`Database`], [`Transaction`], [`Config`].
//!
//! A data directory holds `control` (where recovery starts,
//! [`crate::recovery::control`]), `wal/` (the log segments), `rel/` (one
//! heap file and one free space map file per relation) and `LOCK` (held
//! while the database is open, so two processes never open it at once).
//!
//! [`Database::open`] creates the directory or opens it, runs recovery
//! (analysis, redo, undo; see [`crate::recovery`]) and takes a checkpoint.
//! A [`Transaction`] changes tuples; [`Transaction::commit`] returns once
//! the commit record is durable (under the default commit policy,
//! invariant 6). Dropping a transaction without committing rolls it back.
//! [`Database::close`] takes a final checkpoint and marks the shutdown
//! clean; dropping a `Database` without closing it is like a crash that
//! loses nothing committed.
//!
//! Transactions lock what they touch until they end (strict two-phase
//! locking, [`crate::lock`]): many threads run transactions at once,
//! and a transaction never sees another's uncommitted changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use keel_io::{AsyncIo, IoConfig};
use parking_lot::{Mutex, RwLock};

use crate::buffer::{BufferConfig, BufferPool, BufferStats};
use crate::datadir;
use crate::error::{BufferError, DbError, Error, ErrorClass, PoisonCause, Result};
use crate::fsm::{Categories, EMPTY_PAGE_FREE, FreeSpaceMap};
use crate::heap::catalog::{
    CATALOG_ID, CATALOG_NAME, Catalog, check_name, create_file, decode_row, encode_row, list_files,
    open_file, rel_dir, remove_files,
};
use crate::heap::read::HeapScan;
use crate::heap::{Relation, Store, TxnLog};
use crate::lock::{LockManager, LockMode, LockStats, LockTarget};
use crate::recovery::checkpoint::{CheckpointTarget, checkpoint, load_fsm};
use crate::recovery::control::read_control;
use crate::recovery::{CheckpointReport, PageSpace, Recovered, RecoveryReport, recover};
use crate::txn::{TxnSlot, TxnTable};
use crate::types::{Lsn, PageId, RelationId, TupleId, TxnId};
use crate::wal::{Payload, Wal, WalConfig, WriterStats, wal_dir};

/// How a database is opened.
///
/// ```
/// use std::time::Duration;
/// use keel::{Config, wal::CommitMode};
///
/// let mut config = Config {
///     lock_timeout: Some(Duration::from_secs(5)),
///     checkpoint_interval: Some(Duration::from_secs(60)),
///     ..Config::default()
/// };
/// config.buffer.pool_bytes = 256 << 20;
/// // Acknowledge commits before they are durable, losing at most ~2 ms of
/// // them in a crash (never corrupting anything): only when asked for.
/// config.wal.commit = CommitMode::Async { max_delay_us: 2000 };
/// assert!(config.validate().is_ok());
/// config.buffer.pool_bytes = 0;
/// assert!(config.validate().is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// Buffer pool size and background writer.
    pub buffer: BufferConfig,
    /// The write-ahead log: segment size, commit policy, retention, …
    pub wal: WalConfig,
    /// Which I/O backend to use.
    pub io: IoConfig,
    /// Take a checkpoint after this many bytes of log (0: never by volume).
    pub checkpoint_wal_bytes: u64,
    /// Take a checkpoint at least this often (`None`: never by time).
    pub checkpoint_interval: Option<Duration>,
    /// How long a transaction waits for a lock before it is rolled back
    /// with [`DbError::LockTimeout`] (`None`: until granted; a duration
    /// too long to represent as a deadline counts as `None`). Deadlocks
    /// are detected either way, a thread waiting for a transaction it runs
    /// itself included ([`Transaction`], "Threads").
    pub lock_timeout: Option<Duration>,
    /// Redo consistency checking (like PostgreSQL's
    /// `wal_consistency_checking`): after every page change, a `page-check`
    /// record with a full image of the page as the change left it is
    /// logged, and recovery compares each page it redoes with that image,
    /// failing with [`DbError::Recovery`] on the first difference. It costs
    /// a page image in the log per change: for tests and debugging, off by
    /// default.
    pub consistency_check: bool,
    /// When the checkpoint that ends crash recovery runs.
    pub recovery_checkpoint: RecoveryCheckpoint,
    /// How an open after an unclean shutdown makes the data directory
    /// durable before recovery reads it (invariant 14; PostgreSQL's
    /// `recovery_init_sync_method`).
    pub recovery_init_sync: datadir::RecoveryInitSync,
}

/// When the checkpoint that ends crash recovery is taken.
///
/// Recovery leaves every page it redid dirty in the buffer pool. Until a
/// checkpoint writes them, the control file keeps pointing at the last
/// checkpoint from before the crash, and the log from there is kept: a
/// crash meanwhile recovers from that point again, exactly as the first
/// time (redo is idempotent, undo is compensated, invariant 8). So the
/// database is usable the moment redo and undo are done; the checkpoint
/// only shortens the next recovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryCheckpoint {
    /// On a thread of its own, started as [`Database::open`] returns; work
    /// runs meanwhile. `close` (and dropping the database) waits for it.
    #[default]
    Background,
    /// Before [`Database::open`] returns: the time to open includes writing
    /// every page recovery redid (deterministic: the simulator's tests use
    /// it).
    BeforeOpenReturns,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            buffer: BufferConfig::default(),
            wal: WalConfig::default(),
            io: IoConfig::default(),
            checkpoint_wal_bytes: 256 << 20,
            checkpoint_interval: Some(Duration::from_secs(300)),
            lock_timeout: None,
            consistency_check: false,
            recovery_checkpoint: RecoveryCheckpoint::Background,
            recovery_init_sync: datadir::RecoveryInitSync::Fsync,
        }
    }
}

impl Config {
    /// Checks every value.
    pub fn validate(&self) -> Result<()> {
        self.buffer.validate()?;
        self.wal.validate()?;
        self.io
            .validate()
            .map_err(|e| DbError::Config(format!("io: {e}")))?;
        if self.checkpoint_interval.is_some_and(|d| d.is_zero()) {
            return Err(DbError::Config("checkpoint_interval must not be zero".into()).into());
        }
        Ok(())
    }
}

/// A relation as listed by [`Database::relations`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationInfo {
    /// Its id.
    pub id: RelationId,
    /// Its name.
    pub name: String,
    /// Pages in its file.
    pub pages: u32,
}

pub(crate) struct Inner {
    dir: PathBuf,
    store: Store,
    catalog: Catalog,
    txns: TxnTable,
    checkpoint_lock: Mutex<()>,
    last_checkpoint: Mutex<(Lsn, Instant)>,
    recovery: RecoveryReport,
    /// The first fatal error; set once, by [`Inner::poison`] only.
    poison: OnceLock<PoisonCause>,
    /// The last failure of a background checkpoint, until one succeeds.
    background_error: Mutex<Option<Arc<Error>>>,
    cleanup_failures: AtomicU64,
    _dir_lock: Option<std::fs::File>,
}

/// An open Keel database. `Send + Sync`: share it (or an `Arc` of it)
/// between threads, each running its own transactions.
///
/// ```
/// # fn main() -> keel::Result<()> {
/// # let tmp = std::env::temp_dir().join(format!("keel-doc-db-{}", std::process::id()));
/// use keel::{Config, Database};
///
/// let db = Database::open(&tmp, Config::default())?;
/// let rel = db.create_relation("events")?;
/// std::thread::scope(|s| {
///     for t in 0..2u8 {
///         let db = &db;
///         s.spawn(move || -> keel::Result<()> {
///             let mut tx = db.begin()?;
///             tx.insert(rel, &[t; 16])?;
///             tx.commit() // durable on return
///         });
///     }
/// });
/// db.checkpoint()?;
/// db.close()?;
/// let db = Database::open(&tmp, Config::default())?; // recovery runs here
/// assert!(db.recovery_report().clean_shutdown);
/// assert_eq!(db.begin()?.scan(rel)?.count(), 2);
/// # db.close()?;
/// # std::fs::remove_dir_all(&tmp).ok();
/// # Ok(())
/// # }
/// ```
pub struct Database {
    inner: Arc<Inner>,
    checkpointer: Option<(Sender<()>, JoinHandle<()>)>,
    /// The end-of-recovery checkpoint taken in the background
    /// ([`RecoveryCheckpoint::Background`]).
    recovery_checkpoint: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens the database in `dir`, creating it if the directory does not
    /// exist or is empty, and runs recovery.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Database> {
        let io = keel_io::open_backend(&config.io)?;
        Database::open_with_io(dir, config, io)
    }

    /// [`open`](Self::open) on a given I/O backend (the simulator in tests).
    pub fn open_with_io(
        dir: impl AsRef<Path>,
        config: Config,
        io: Arc<dyn AsyncIo>,
    ) -> Result<Database> {
        config.validate()?;
        let (inner, deferred) = open_inner(dir.as_ref(), &config, io)?;
        let inner = Arc::new(inner);
        let recovery_checkpoint = match deferred {
            true => Some(start_recovery_checkpoint(&inner)?),
            false => None,
        };
        let checkpointer = start_checkpointer(&inner, &config)?;
        Ok(Database {
            inner,
            checkpointer,
            recovery_checkpoint,
        })
    }

    /// Creates a relation and returns its id (durable on return).
    pub fn create_relation(&self, name: &str) -> Result<RelationId> {
        self.inner.check_usable()?;
        self.inner.create_relation(name)
    }

    /// The id of the relation called `name`, if there is one.
    pub fn relation(&self, name: &str) -> Result<Option<RelationId>> {
        Ok(self.inner.catalog.by_name(name).map(|r| r.id))
    }

    /// Drops the relation called `name` and removes its files (durable on
    /// return). Waits for the transactions using it to end (an exclusive
    /// relation lock: [`Config::lock_timeout`] and deadlock detection
    /// apply, and a drop that gives up changes nothing); afterwards every
    /// use of it is [`DbError::NoSuchRelation`]. Do not call it from a
    /// thread whose own open transaction uses the relation: without a lock
    /// timeout that waits forever.
    pub fn drop_relation(&self, name: &str) -> Result<()> {
        self.inner.check_usable()?;
        self.inner.drop_relation(name)
    }

    /// Every relation, by id (the catalog itself is not listed).
    pub fn relations(&self) -> Vec<RelationInfo> {
        self.inner
            .catalog
            .all()
            .into_iter()
            .filter(|r| r.id != CATALOG_ID)
            .map(|r| RelationInfo {
                id: r.id,
                name: r.name.clone(),
                pages: r.page_count(),
            })
            .collect()
    }

    /// Starts a transaction.
    pub fn begin(&self) -> Result<Transaction<'_>> {
        self.inner.check_usable()?;
        let (id, slot) = self.inner.txns.begin();
        self.inner.store.locks.begin(id);
        Ok(Transaction::new(&self.inner, id, slot))
    }

    /// Takes a checkpoint now.
    pub fn checkpoint(&self) -> Result<CheckpointReport> {
        self.inner.check_usable()?;
        self.inner.checkpoint(false)
    }

    /// What recovery did when the database was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The log's counters.
    pub fn wal_stats(&self) -> WriterStats {
        self.inner.store.wal.stats()
    }

    /// The lock manager's counters (waits, deadlocks, timeouts).
    pub fn lock_stats(&self) -> LockStats {
        self.inner.store.locks.stats()
    }

    /// Number of transactions running now.
    pub fn active_transactions(&self) -> usize {
        self.inner.txns.active_count()
    }

    /// The end of the log.
    pub fn wal_end(&self) -> Lsn {
        self.inner.store.wal.end_lsn()
    }

    /// The buffer pool's counters.
    pub fn buffer_stats(&self) -> BufferStats {
        self.inner.store.pool.stats()
    }

    /// Whether a fatal error poisoned the database (invariant 16): every
    /// call fails with [`DbError::Poisoned`] until it is reopened.
    pub fn is_poisoned(&self) -> bool {
        self.inner.poisoned().is_some()
    }

    /// The first fatal error, which poisoned the database, if one did.
    pub fn poison_cause(&self) -> Option<PoisonCause> {
        self.inner.poisoned().map(|(cause, _)| cause)
    }

    /// The last error of a checkpoint taken in the background (by the
    /// checkpointer or at the end of recovery), until a later checkpoint
    /// succeeds. A fatal one also poisons the database and is then
    /// [`DbError::Poisoned`] naming it. After a failure the checkpointer
    /// waits before trying again, doubling the wait (1 s up to 5 min).
    pub fn background_error(&self) -> Option<Arc<Error>> {
        self.inner.background_error.lock().clone()
    }

    /// Post-commit cleanups (freeing slots and overflow pages) that failed;
    /// each leaks space, never data.
    pub fn cleanup_failures(&self) -> u64 {
        self.inner.cleanup_failures.load(Ordering::Relaxed)
    }

    /// A copy of page `page` of relation `name` as it is in the buffer pool
    /// (for inspection tools), with its checksum computed as if it were
    /// written now (a changed page's stored checksum is only refreshed when
    /// the page is written).
    pub fn read_page(&self, name: &str, page: PageId) -> Result<Vec<u8>> {
        // Invariant 16: a page may hold changes that are not durable.
        self.inner.check_usable()?;
        let rel = self.inner.named(name)?;
        if page.0 >= rel.page_count() {
            return Err(DbError::NoSuchPage {
                relation: name.to_string(),
                page,
                pages: rel.page_count(),
            }
            .into());
        }
        let mut copy = self.inner.store.pool.fetch_read(rel.file(), page)?.to_vec();
        if crate::page::PageHeader::read(&copy, page).is_ok() {
            crate::page::seal(&mut copy)?;
        }
        Ok(copy)
    }

    /// The free space map of relation `name`: each tracked page and its
    /// recorded categories.
    pub fn fsm_snapshot(&self, name: &str) -> Result<Vec<(PageId, Categories)>> {
        Ok(self.inner.named(name)?.fsm.snapshot())
    }

    /// Takes a last checkpoint, marks the shutdown clean and closes.
    pub fn close(mut self) -> Result<()> {
        self.stop_checkpointer();
        self.inner.check_usable()?;
        self.inner.checkpoint(true)?;
        self.inner.store.pool.shutdown()?;
        self.inner.store.wal.flush_all()?;
        Ok(())
    }

    fn stop_checkpointer(&mut self) {
        if let Some((stop, handle)) = self.checkpointer.take() {
            drop(stop);
            let _ = handle.join();
        }
        if let Some(handle) = self.recovery_checkpoint.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.stop_checkpointer();
    }
}

/// The longest wait of the checkpointer between failed attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The background checkpointer: by log volume and by time.
fn start_checkpointer(
    inner: &Arc<Inner>,
    config: &Config,
) -> Result<Option<(Sender<()>, JoinHandle<()>)>> {
    if config.checkpoint_wal_bytes == 0 && config.checkpoint_interval.is_none() {
        return Ok(None);
    }
    let (tx, rx): (Sender<()>, Receiver<()>) = bounded(1);
    let inner = Arc::clone(inner);
    let (bytes, interval) = (config.checkpoint_wal_bytes, config.checkpoint_interval);
    let handle = std::thread::Builder::new()
        .name("keel-checkpointer".into())
        .spawn(move || {
            let tick = Duration::from_millis(200);
            // After a failure: no attempt before `retry_at`, the wait
            // doubling from 1 s to 5 min (a failing checkpoint is not
            // retried in a tight loop; its error stays visible).
            let mut backoff = Duration::ZERO;
            let mut retry_at = Instant::now();
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = rx.recv_timeout(tick) {
                let (lsn, at) = *inner.last_checkpoint.lock();
                let by_volume =
                    bytes > 0 && inner.store.wal.end_lsn().0.saturating_sub(lsn.0) >= bytes;
                let by_time = interval.is_some_and(|d| at.elapsed() >= d);
                let due = (by_volume || by_time) && Instant::now() >= retry_at;
                if due && inner.check_usable().is_ok() {
                    if inner.background_checkpoint() {
                        backoff = Duration::ZERO;
                    } else {
                        backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                        retry_at = Instant::now() + backoff;
                    }
                }
            }
        })
        .map_err(|e| DbError::Config(format!("cannot start the checkpointer thread: {e}")))?;
    Ok(Some((tx, handle)))
}

/// Takes the end-of-recovery checkpoint on a thread of its own
/// ([`RecoveryCheckpoint::Background`]); its error, if any, is kept as
/// [`Database::background_error`] (a fatal one also poisons the database).
fn start_recovery_checkpoint(inner: &Arc<Inner>) -> Result<JoinHandle<()>> {
    let inner = Arc::clone(inner);
    std::thread::Builder::new()
        .name("keel-recovery-checkpoint".into())
        .spawn(move || {
            if inner.check_usable().is_ok() {
                inner.background_checkpoint();
            }
        })
        .map_err(|e| {
            DbError::Config(format!("cannot start the recovery checkpoint thread: {e}")).into()
        })
}

/// Opens the files, recovers, loads the catalog and the FSMs, checkpoints.
/// Returns `true` when the checkpoint after a crash recovery is left to
/// [`start_recovery_checkpoint`] ([`RecoveryCheckpoint::Background`]).
/// After a clean shutdown or on a new database it is taken here: it has
/// nothing to write, and it must mark the control file unclean before any
/// work starts.
fn open_inner(dir: &Path, config: &Config, io: Arc<dyn AsyncIo>) -> Result<(Inner, bool)> {
    crate::recovery::layout::check_adoptable(&io, dir)?;
    ensure_dir(&io, dir)?;
    let dir_lock = lock_dir(dir)?;
    let control = read_control(&io, dir)?;
    let synced = datadir::sync_if_unclean(&io, dir, control.as_ref(), config.recovery_init_sync)?;
    let scan_start = control.map(|c| c.scan_start());
    let (wal, _) = Wal::open_from(io.clone(), &wal_dir(dir), config.wal.clone(), scan_start)?;
    if let Some(c) = &control
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
    let wal = Arc::new(wal);
    let pool = BufferPool::new(io.clone(), wal.clone(), config.buffer.clone())?;
    let store = Store {
        io: io.clone(),
        pool,
        wal,
        redo_point: RwLock::new(control.map_or(Lsn::ZERO, |c| c.redo_start)),
        reserved: Mutex::new(HashMap::new()),
        locks: LockManager::new(config.lock_timeout),
        consistency_check: config.consistency_check,
    };
    ensure_dir(&io, &rel_dir(dir))?;
    let mut rels = HashMap::new();
    for id in list_files(&store, dir)? {
        let pages = open_file(&store, dir, id)?;
        rels.insert(id, Arc::new(placeholder(id, pages)));
    }
    if let std::collections::hash_map::Entry::Vacant(slot) = rels.entry(CATALOG_ID) {
        if control.is_some() {
            return Err(DbError::Corrupt {
                what: format!("data directory {}", dir.display()),
                reason: "the catalog's file rel/0.heap is missing".into(),
            }
            .into());
        }
        let pages = create_file(&store, dir, CATALOG_ID)?;
        slot.insert(Arc::new(placeholder(CATALOG_ID, pages)));
    }
    crate::recovery::ddl::check_file_lengths(&store, dir, &rels)?;
    let recovered = recover(
        &store,
        dir,
        &mut rels,
        control.as_ref(),
        config.wal.recovery_mode,
    )?;
    let catalog = Catalog::new(recovered.next_relation);
    let (orphans, removed) = load_catalog(&store, dir, &catalog, rels, &recovered)?;
    let next_txn = TxnId(
        control
            .map_or(1, |c| c.next_txn.0)
            .max(recovered.max_txn.0 + 1),
    );
    let mut report = recovered.report;
    report.data_dir_sync = synced;
    report.orphan_files = orphans;
    report.creates_removed = removed;
    let inner = Inner {
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
    let deferred = config.recovery_checkpoint == RecoveryCheckpoint::Background
        && control.is_some_and(|c| !c.clean);
    if !deferred {
        inner.checkpoint(false)?;
    }
    report.duration = report.duration.max(Duration::from_nanos(1));
    let inner = Inner {
        recovery: report,
        ..inner
    };
    Ok((inner, deferred))
}

fn placeholder(id: RelationId, pages: u32) -> Relation {
    Relation::new(
        id,
        format!("relation {id}"),
        pages,
        FreeSpaceMap::new(),
        None,
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
    io.sync_dir(&datadir::parent_dir(dir))
        .wait()
        .map_err(|e| data_dir("sync the directory holding", e))?;
    Ok(())
}

/// Takes `dir/LOCK` exclusively when `dir` is on the real file system (a
/// simulated backend's directories are not).
fn lock_dir(dir: &Path) -> Result<Option<std::fs::File>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    crate::dir_mode::check(dir)?;
    let path = dir.join("LOCK");
    let file = std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true),
        keel_io::FILE_MODE,
    )
    .open(&path)
    .map_err(|e| Error::DataDir {
        action: "create the lock file",
        path: path.clone(),
        source: keel_io::IoError::from_os(keel_io::OpKind::Open, keel_io::FileRef::path(&path), e),
    })?;
    // The lock belongs to LOCK's open file description, which a child that
    // another thread of this process forks shares until its exec closes it:
    // a lock just released can look held for that instant. A holder that
    // stays (another open database) is still reported after the wait.
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return Err(DbError::Locked(dir.display().to_string()).into()),
        }
    }
}

/// How long [`lock_dir`] waits for a LOCK held only for an instant.
const LOCK_WAIT: Duration = Duration::from_millis(250);

/// Reads the catalog's rows after recovery, gives every relation its name
/// and FSM, and settles files no row names
/// ([`settle_unnamed`](crate::recovery::ddl::settle_unnamed)): returns the
/// orphans kept and the uncommitted creates removed.
fn load_catalog(
    store: &Store,
    dir: &Path,
    catalog: &Catalog,
    mut rels: HashMap<RelationId, Arc<Relation>>,
    recovered: &Recovered,
) -> Result<(Vec<PathBuf>, Vec<RelationId>)> {
    let finish =
        |id: RelationId, pages: u32, name: String, tid: Option<TupleId>| -> Result<Arc<Relation>> {
            let rel = Relation::new(id, name, pages, FreeSpaceMap::new(), tid);
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
    let cat = finish(CATALOG_ID, cat, CATALOG_NAME.into(), None)?;
    catalog.insert(Arc::clone(&cat));
    for row in HeapScan::new(store, cat, None) {
        let (tid, bytes) = row?;
        let (id, name) = decode_row(tid, &bytes)?;
        let Some(rel) = rels.remove(&id) else {
            return Err(DbError::Corrupt {
                what: format!("relation {id} ({name})"),
                reason: format!(
                    "the catalog lists it but its file {} is missing",
                    crate::heap::catalog::heap_path(dir, id).display()
                ),
            }
            .into());
        };
        catalog.insert(finish(id, rel.page_count(), name, Some(tid))?);
    }
    let uncommitted = &recovered.ddl.uncommitted_creates;
    crate::recovery::ddl::settle_unnamed(store, dir, rels.into_keys(), uncommitted)
}

/// Brings a relation's FSM up to date: pages recovery saw are recorded from
/// what redo found (no read); pages past what a loaded map covers, or every
/// page when none was loaded, and pages undo changed are read. Pages the
/// log does not name since the checkpoint keep their saved entries.
fn refresh_fsm(store: &Store, rel: &Relation, rec: &Recovered, loaded: bool) -> Result<()> {
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
            None => PageSpace::of(&store.pool.fetch_read(rel.file(), pid)?, pid),
        };
        match space {
            PageSpace::Heap(contiguous, total) => rel.fsm.update(pid, contiguous, total),
            PageSpace::Free => rel.fsm.update(pid, EMPTY_PAGE_FREE, EMPTY_PAGE_FREE),
            PageSpace::Other => {
                rel.fsm.remove(pid);
            }
        }
    }
    Ok(())
}

impl Inner {
    /// Fails with [`DbError::Poisoned`] once the database is poisoned.
    fn check_usable(&self) -> Result<()> {
        match self.poisoned() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// The first fatal error and the refusal naming it, once poisoned. A
    /// log or buffer pool that poisoned itself (a background flush, an
    /// eviction's sync) poisons the database here, with its own cause.
    fn poisoned(&self) -> Option<(PoisonCause, Error)> {
        if self.poison.get().is_none() {
            if let Some(e) = self.store.wal.poison_error() {
                self.poison(e.into());
            } else if let Some(cause) = self.store.pool.poison_cause() {
                self.poison(BufferError::Poisoned { cause }.into());
            }
        }
        let cause = self.poison.get()?.clone();
        let refusal = DbError::Poisoned {
            cause: cause.clone(),
        };
        Some((cause, refusal.into()))
    }

    /// Poisons the database (invariants 7 and 16); the one place that
    /// decides it. The first cause is kept: later ones are consequences.
    /// Returns the refusal every call gets from now on, naming it.
    ///
    /// Rule: poison is set *before* the failing transaction's locks are
    /// released, and every read checks it after taking its locks. So a
    /// poisoned transaction's changes, left in memory (no undo runs on a
    /// poisoned database; recovery rolls them back), can never be read.
    fn poison(&self, cause: Error) -> Error {
        let cause = self.poison.get_or_init(|| PoisonCause::new(cause)).clone();
        DbError::Poisoned { cause }.into()
    }

    /// Passes `e` on; a fatal one poisons the database first and becomes
    /// the refusal naming the first fatal error.
    fn note(&self, e: Error) -> Error {
        if e.class() == ErrorClass::Fatal {
            self.poison(e)
        } else {
            e
        }
    }

    /// Undoes a transaction's changes. On a poisoned database nothing is
    /// undone in memory (undo writes the log; recovery will do it): the
    /// poison refusal is returned. A failed undo poisons.
    fn undo(&self, log: &mut TxnLog) -> Result<()> {
        self.check_usable()?;
        if log.last_lsn == Lsn::ZERO {
            return Ok(());
        }
        self.store
            .rollback(log, &self.lookup())
            .map_err(|e| self.poison(e))
    }

    /// A checkpoint on a background thread: its error is kept for
    /// [`Database::background_error`]; returns whether it succeeded.
    fn background_checkpoint(&self) -> bool {
        let result = self.checkpoint(false);
        let mut last = self.background_error.lock();
        match result {
            Ok(_) => {
                *last = None;
                true
            }
            Err(e) => {
                *last = Some(Arc::new(e));
                false
            }
        }
    }

    fn lookup(&self) -> impl Fn(RelationId) -> Option<Arc<Relation>> + '_ {
        |id| self.catalog.get(id)
    }

    fn named(&self, name: &str) -> Result<Arc<Relation>> {
        self.catalog
            .by_name(name)
            .ok_or_else(|| DbError::NoSuchRelation(name.to_string()).into())
    }

    /// A relation a transaction may change (not the catalog).
    fn user_relation(&self, id: RelationId) -> Result<Arc<Relation>> {
        match self.catalog.get(id) {
            Some(r) if id != CATALOG_ID => Ok(r),
            _ => Err(DbError::NoSuchRelation(id.to_string()).into()),
        }
    }

    fn checkpoint(&self, clean: bool) -> Result<CheckpointReport> {
        let _one = self.checkpoint_lock.lock();
        let report = checkpoint(&CheckpointTarget {
            store: &self.store,
            dir: &self.dir,
            catalog: &self.catalog,
            txns: &self.txns,
            clean,
        });
        match report {
            Ok(r) => {
                *self.last_checkpoint.lock() = (r.begin, Instant::now());
                Ok(r)
            }
            Err(e) => Err(self.note(e)),
        }
    }

    /// Runs `f` as a system transaction that commits durably whatever the
    /// commit policy; rolls it back if `f` fails. `on_commit` runs once the
    /// commit is durable, before the transaction's locks are released.
    fn system_txn<T>(
        &self,
        f: impl FnOnce(TxnId, &mut TxnLog) -> Result<T>,
        on_commit: impl FnOnce(&mut T) -> Result<()>,
    ) -> Result<T> {
        let (id, slot) = self.txns.begin();
        self.store.locks.begin(id);
        let mut log = TxnLog::new(id);
        slot.before_write(self.store.wal.end_lsn());
        let result = f(id, &mut log).and_then(|mut v| {
            let rec = self.store.log_txn(&mut log, &commit_payload())?;
            self.store.wal.flush(rec.lsn)?;
            let done = on_commit(&mut v);
            Ok((v, done))
        });
        let result = match result {
            Ok((v, Ok(()))) => {
                if self.store.after_commit(&mut log, &self.lookup()).is_err() {
                    self.cleanup_failures.fetch_add(1, Ordering::Relaxed);
                }
                Ok(v)
            }
            // An error of `on_commit` comes after the commit: nothing to
            // roll back.
            Ok((_, Err(e))) => Err(self.note(e)),
            Err(e) => {
                let e = self.note(e);
                match self.undo(&mut log) {
                    Ok(()) => Err(e),
                    Err(poisoned) => Err(poisoned),
                }
            }
        };
        // Poison, if any, is set: the locks may go (invariant 16).
        self.store.locks.release_all(id);
        self.txns.end(id);
        result
    }

    fn create_relation(&self, name: &str) -> Result<RelationId> {
        let _ddl = self.catalog.ddl.lock();
        check_name(name)?;
        if self.catalog.by_name(name).is_some() {
            return Err(DbError::RelationExists(name.to_string()).into());
        }
        let id = self.catalog.allocate_id()?;
        let cat = self.user_or_catalog(CATALOG_ID)?;
        // The create protocol (`recovery::ddl`): `relation-create` is
        // durable before the file exists, so recovery can place every file
        // a create leaves (removed unless the create committed).
        let created = self.system_txn(
            |_, log| {
                let create = Payload::RelationCreate {
                    relation: id,
                    name: name.to_string(),
                };
                let rec = self.store.log_txn(log, &create)?;
                self.store.wal.flush(rec.lsn)?;
                let pages = create_file(&self.store, &self.dir, id)?;
                let tid = self.store.insert(log, &cat, &encode_row(id, name))?;
                Ok((tid, pages))
            },
            |_| Ok(()),
        );
        match created {
            Ok((tid, pages)) => {
                let rel =
                    Relation::new(id, name.to_string(), pages, FreeSpaceMap::new(), Some(tid));
                self.catalog.insert(Arc::new(rel));
                Ok(id)
            }
            Err(e) => {
                // Rolled back on a usable database: the create is known
                // aborted, its file goes. On a poisoned one, whether its
                // commit became durable is unknown: the file stays for
                // recovery to settle (`recovery::ddl`).
                if self.check_usable().is_ok()
                    && let Err(r) = remove_files(&self.store, &self.dir, id)
                {
                    let _ = self.note(r);
                }
                Err(e)
            }
        }
    }

    /// The drop protocol (`recovery::ddl`): an exclusive relation lock
    /// (waiting for running users), then `relation-drop` and the catalog
    /// row's delete committed durably, then the files removed; checkpoints
    /// are held off from the commit to the removal.
    fn drop_relation(&self, name: &str) -> Result<()> {
        let rel = self.named(name)?;
        let cat = self.user_or_catalog(CATALOG_ID)?;
        self.system_txn(
            |txn, log| {
                self.store.locks.lock(
                    txn,
                    LockTarget::Relation(rel.id),
                    LockMode::Exclusive,
                    true,
                )?;
                let ddl = self.catalog.ddl.lock();
                // Dropped by someone else while this waited for the lock.
                let current = self.catalog.get(rel.id).filter(|r| Arc::ptr_eq(r, &rel));
                let Some(tid) = current.and_then(|r| r.catalog_tid) else {
                    return Err(DbError::NoSuchRelation(name.to_string()).into());
                };
                let held = self.checkpoint_lock.lock();
                self.store
                    .log_txn(log, &Payload::RelationDrop { relation: rel.id })?;
                self.store.delete(log, &cat, tid)?;
                Ok((ddl, held))
            },
            |_| {
                // Committed: no transaction finds it any more, and one that
                // waited for its lock sees it gone (`Transaction::relation`).
                self.catalog.remove(rel.id);
                remove_files(&self.store, &self.dir, rel.id)
            },
        )
        .map(|_| ())
    }

    fn user_or_catalog(&self, id: RelationId) -> Result<Arc<Relation>> {
        self.catalog
            .get(id)
            .ok_or_else(|| DbError::NoSuchRelation(id.to_string()).into())
    }
}

fn commit_payload() -> Payload {
    let commit_time_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    Payload::Commit { commit_time_us }
}

/// A transaction: changes to tuples that become durable together at
/// [`commit`](Self::commit), or are rolled back by
/// [`abort`](Self::abort) or by dropping it.
///
/// Reads lock tuples shared and writes lock them exclusive until the
/// transaction ends (strict two-phase locking; see docs/storage.md,
/// "Isolation"). When a lock request would deadlock or times out, the
/// transaction is rolled back at once and the call returns
/// [`DbError::Deadlock`] or [`DbError::LockTimeout`]; later calls return
/// [`DbError::TxnFinished`]. The `try_` forms never wait for a lock: they
/// return [`DbError::WouldBlock`] and the transaction goes on.
///
/// **Threads.** A transaction is `Send` but not `Sync`: one thread at a
/// time runs it (move it to another thread, never share it). A lock wait
/// blocks the calling thread, so a thread must not wait for a transaction
/// it runs itself: when the transaction a request would wait for made its
/// latest lock request on the waiting thread, the request fails at once
/// with [`DbError::Deadlock`] (and its transaction is rolled back) instead
/// of hanging ([`crate::lock`], "Threads"). Hand a transaction to
/// another thread by moving it there and using it there.
///
/// ```compile_fail,E0277
/// # let tmp = std::env::temp_dir().join(format!("keel-doc-sync-{}", std::process::id()));
/// let db = keel::Database::open(&tmp, keel::Config::default()).unwrap();
/// let tx = db.begin().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| tx.id()); // a transaction cannot be shared between threads
/// });
/// ```
///
/// ```
/// # fn main() -> keel::Result<()> {
/// # let tmp = std::env::temp_dir().join(format!("keel-doc-tx-{}", std::process::id()));
/// use keel::{Config, Database, DbError, Error};
///
/// let db = Database::open(&tmp, Config::default())?;
/// let rel = db.create_relation("accounts")?;
/// let mut tx = db.begin()?;
/// let alice = tx.insert(rel, b"alice: 100")?;
/// tx.commit()?;
///
/// let mut writer = db.begin()?;
/// writer.update(rel, alice, b"alice: 90")?; // holds alice's lock
/// let reader = db.begin()?;
/// match reader.try_get(rel, alice) {
///     Err(Error::Db(DbError::WouldBlock { .. })) => {} // would wait: yield instead
///     other => panic!("expected WouldBlock, got {other:?}"),
/// }
/// drop(reader);
/// writer.abort()?; // rolled back with compensation records
/// assert_eq!(db.begin()?.get(rel, alice)?.as_deref(), Some(&b"alice: 100"[..]));
/// # db.close()?;
/// # std::fs::remove_dir_all(&tmp).ok();
/// # Ok(())
/// # }
/// ```
pub struct Transaction<'db> {
    db: &'db Inner,
    id: TxnId,
    state: Mutex<TxnState>,
    slot: Arc<TxnSlot>,
    /// Makes the type `!Sync` (it stays `Send`): see "Threads" above.
    _one_thread: std::marker::PhantomData<std::cell::Cell<()>>,
}

struct TxnState {
    log: TxnLog,
    finished: bool,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<'db> Transaction<'db> {
    fn new(db: &'db Inner, id: TxnId, slot: Arc<TxnSlot>) -> Transaction<'db> {
        Transaction {
            db,
            id,
            state: Mutex::new(TxnState {
                log: TxnLog::new(id),
                finished: false,
            }),
            slot,
            _one_thread: std::marker::PhantomData,
        }
    }

    /// This transaction's id.
    pub fn id(&self) -> TxnId {
        self.id
    }

    /// Bytes of memory the transaction holds for its rollback and commit
    /// until it ends (undo stack, deferred releases, reservations); for
    /// tests and diagnostics.
    #[doc(hidden)]
    pub fn undo_bytes(&self) -> usize {
        self.state.lock().log.held_bytes()
    }

    fn live(&self) -> Result<()> {
        if self.state.lock().finished {
            return Err(DbError::TxnFinished(self.id).into());
        }
        Ok(())
    }

    /// Whether `rel`, looked up before its relation lock was granted, is
    /// still in the catalog: a drop holds the relation exclusively until it
    /// has removed it, so once a lock on it is held, a relation found here
    /// stays until this transaction ends.
    fn still_there(&self, rel: &Arc<Relation>) -> Result<()> {
        match self.db.catalog.get(rel.id) {
            Some(r) if Arc::ptr_eq(&r, rel) => Ok(()),
            _ => Err(DbError::NoSuchRelation(rel.id.to_string()).into()),
        }
    }

    /// Locks `target`; a deadlock or timeout rolls the transaction back.
    fn lock(&self, target: LockTarget, mode: LockMode, wait: bool) -> Result<()> {
        match self.db.store.locks.lock(self.id, target, mode, wait) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Handles an error of an operation: a deadlock or lock timeout rolls
    /// the transaction back; a fatal error poisons the database.
    fn fail(&self, e: Error) -> Error {
        let e = self.db.note(e);
        if matches!(
            e,
            Error::Db(DbError::Deadlock { .. } | DbError::LockTimeout { .. })
        ) {
            let mut st = self.state.lock();
            if !st.finished {
                st.finished = true;
                // A failure here poisons the database (see rollback).
                let _ = self.rollback(&mut st.log);
            }
        }
        e
    }

    fn write<T>(
        &mut self,
        rel: RelationId,
        tid: Option<(TupleId, bool)>,
        f: impl FnOnce(&Store, &mut TxnLog, &Relation) -> Result<T>,
    ) -> Result<T> {
        self.live()?;
        self.db.check_usable()?;
        let rel = self.db.user_relation(rel)?;
        // A `try_` form never waits, for the relation's lock either (an
        // escalated lock of another transaction may block it).
        let wait = tid.is_none_or(|(_, wait)| wait);
        self.lock(
            LockTarget::Relation(rel.id),
            LockMode::IntentExclusive,
            wait,
        )?;
        self.still_there(&rel)?;
        if let Some((tid, wait)) = tid {
            self.lock(LockTarget::Tuple(rel.id, tid), LockMode::Exclusive, wait)?;
        }
        // Poisoned while waiting for a lock: change nothing (invariant 16).
        self.db.check_usable()?;
        self.slot.before_write(self.db.store.wal.end_lsn());
        let mut st = self.state.lock();
        let result = f(&self.db.store, &mut st.log, &rel);
        self.slot.wrote(st.log.last_lsn);
        drop(st);
        result.map_err(|e| self.fail(e))
    }

    /// Inserts a tuple and returns its address.
    pub fn insert(&mut self, rel: RelationId, value: &[u8]) -> Result<TupleId> {
        self.write(rel, None, |s, log, r| s.insert(log, r, value))
    }

    /// The tuple at `tid`, or `None` if there is none (locks it shared).
    pub fn get(&self, rel: RelationId, tid: TupleId) -> Result<Option<Vec<u8>>> {
        self.read(rel, tid, true)
    }

    /// [`get`](Self::get) that never waits for a lock.
    pub fn try_get(&self, rel: RelationId, tid: TupleId) -> Result<Option<Vec<u8>>> {
        self.read(rel, tid, false)
    }

    fn read(&self, rel: RelationId, tid: TupleId, wait: bool) -> Result<Option<Vec<u8>>> {
        self.live()?;
        self.db.check_usable()?;
        let rel = self.db.user_relation(rel)?;
        if tid.page.0 >= rel.page_count() {
            return Ok(None);
        }
        self.lock(LockTarget::Relation(rel.id), LockMode::IntentShared, wait)?;
        self.still_there(&rel)?;
        self.lock(LockTarget::Tuple(rel.id, tid), LockMode::Shared, wait)?;
        let value = self.db.store.get(&rel, tid).map_err(|e| self.fail(e))?;
        // Invariant 16: checked after the lock was granted, so a poisoned
        // transaction's changes (its locks released after the poison was
        // set) are never returned.
        self.db.check_usable()?;
        Ok(value)
    }

    /// Replaces the tuple at `tid` (its address stays valid, invariant 12).
    pub fn update(&mut self, rel: RelationId, tid: TupleId, value: &[u8]) -> Result<()> {
        self.write(rel, Some((tid, true)), |s, log, r| {
            s.update(log, r, tid, value)
        })
    }

    /// [`update`](Self::update) that never waits for a lock.
    pub fn try_update(&mut self, rel: RelationId, tid: TupleId, value: &[u8]) -> Result<()> {
        self.write(rel, Some((tid, false)), |s, log, r| {
            s.update(log, r, tid, value)
        })
    }

    /// Deletes the tuple at `tid`.
    pub fn delete(&mut self, rel: RelationId, tid: TupleId) -> Result<()> {
        self.write(rel, Some((tid, true)), |s, log, r| s.delete(log, r, tid))
    }

    /// [`delete`](Self::delete) that never waits for a lock.
    pub fn try_delete(&mut self, rel: RelationId, tid: TupleId) -> Result<()> {
        self.write(rel, Some((tid, false)), |s, log, r| s.delete(log, r, tid))
    }

    /// Every tuple of `rel` in TupleId order, each locked shared as it is
    /// returned.
    pub fn scan(&self, rel: RelationId) -> Result<Scan<'_>> {
        self.live()?;
        self.db.check_usable()?;
        let rel = self.db.user_relation(rel)?;
        self.lock(LockTarget::Relation(rel.id), LockMode::IntentShared, true)?;
        self.still_there(&rel)?;
        Ok(Scan {
            tx: self,
            inner: HeapScan::new(&self.db.store, rel, Some(self.id)),
        })
    }

    /// Commits: returns once the commit record is durable (under the
    /// default commit policy).
    pub fn commit(self) -> Result<()> {
        let db = self.db;
        let mut st = self.state.lock();
        if st.finished {
            return Err(DbError::TxnFinished(self.id).into());
        }
        st.finished = true;
        // A commit that fails leaves the transaction neither committed nor
        // rolled back (its record may be durable or not): the database is
        // poisoned, and its changes are left to recovery. The poison is
        // set before the locks go (invariant 16).
        let result = self.commit_inner(&mut st.log).map_err(|e| db.poison(e));
        drop(st);
        db.store.locks.release_all(self.id);
        db.txns.end(self.id);
        result
    }

    fn commit_inner(&self, log: &mut TxnLog) -> Result<()> {
        let db = self.db;
        db.check_usable()?;
        if log.last_lsn == Lsn::ZERO {
            return Ok(());
        }
        let rec = db.store.log_txn(log, &commit_payload())?;
        db.store.wal.commit_wait(rec)?;
        if db.store.after_commit(log, &db.lookup()).is_err() {
            db.cleanup_failures.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Rolls back every change of this transaction.
    pub fn abort(self) -> Result<()> {
        let mut st = self.state.lock();
        if st.finished {
            return Err(DbError::TxnFinished(self.id).into());
        }
        st.finished = true;
        self.rollback(&mut st.log)
    }

    /// Rolls back, releases the locks and leaves the transaction table.
    /// A failed undo poisons the database before the locks go: changes
    /// that could not be undone stay in memory, unreadable (invariant 16).
    fn rollback(&self, log: &mut TxnLog) -> Result<()> {
        let db = self.db;
        let result = db.undo(log);
        db.store.locks.release_all(self.id);
        db.txns.end(self.id);
        result
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        if !st.finished {
            st.finished = true;
            let mut log = std::mem::replace(&mut st.log, TxnLog::new(self.id));
            let _ = self.rollback(&mut log);
        }
    }
}

/// The tuples of a relation, from [`Transaction::scan`].
pub struct Scan<'tx> {
    tx: &'tx Transaction<'tx>,
    inner: HeapScan<'tx>,
}

impl Iterator for Scan<'_> {
    type Item = Result<(TupleId, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.inner.next()?.map_err(|e| self.tx.fail(e));
        // Invariant 16: checked after the tuple's lock was granted.
        Some(item.and_then(|row| self.tx.db.check_usable().map(|()| row)))
    }
}
