//! The public facade: [`Database`] and [`Config`] ([`Transaction`] lives
//! with its lifecycle in [`crate::txn`]). Each method checks the poison and
//! hands over to the module that owns the work:
//!
//! - [`Database::open`]: the open sequence, [`crate::datadir`] (lock,
//!   control, sync of an unclean directory, log, relation files, recovery,
//!   catalog, free space maps, checkpoint).
//! - [`Database::create_relation`] / [`Database::drop_relation`]: the live
//!   DDL protocol (`ddl`), whose recovery half is [`crate::recovery::ddl`].
//! - [`Database::begin`]: a [`Transaction`]; [`Transaction::commit`]
//!   returns once the commit record is durable (under the default commit
//!   policy, invariant 6). Dropping a transaction without committing rolls
//!   it back.
//! - [`Database::backup`]: an online base backup, the data files copied
//!   while writes continue ([`crate::backup`]).
//! - [`Database::checkpoint`], poison and counters: the open engine
//!   (`engine`), shared with the background checkpointer.
//!
//! [`Database::close`] takes a final checkpoint and marks the shutdown
//! clean; dropping a `Database` without closing it is like a crash that
//! loses nothing committed. Transactions lock what they touch until they
//! end (strict two-phase locking, [`crate::lock`]): many threads run
//! transactions at once, and a transaction never sees another's
//! uncommitted changes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use keel_io::{AsyncIo, IoConfig};

use crate::buffer::{BufferConfig, BufferStats};
use crate::datadir;
use crate::engine::{Engine, start_checkpointer, start_recovery_checkpoint};
use crate::error::{DbError, Error, ErrorCause, Result};
use crate::fsm::Categories;
use crate::heap::RelationKind;
use crate::heap::catalog::CATALOG_ID;
use crate::lock::LockStats;
use crate::recovery::{CheckpointReport, RecoveryReport};
use crate::txn::Transaction;
use crate::types::{Lsn, PageId, RelationId};
use crate::wal::{WalConfig, WriterStats};

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

/// The fewest buffer frames a database runs with: the most pages one
/// operation holds pinned at once, a tree reclaim step's record (the
/// parent, a sibling, the left neighbour and the node leaving; a split
/// holds three however tall the tree, [`crate::btree`]). A pool that
/// small serves one thread; threads that together pin every frame get
/// [`BufferError::AllFramesPinned`](crate::buffer::BufferError::AllFramesPinned),
/// a transient error.
pub const MIN_FRAMES: usize = 4;

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
        let frames = self.buffer.frames();
        if frames < MIN_FRAMES {
            return Err(DbError::Config(format!(
                "buffer.pool_bytes {} gives {frames} frames; a database needs at least \
                 {MIN_FRAMES}",
                self.buffer.pool_bytes
            ))
            .into());
        }
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
    /// Heap or tree.
    pub kind: RelationKind,
    /// Pages in its file.
    pub pages: u32,
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
    inner: Arc<Engine>,
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
        let (inner, deferred) = datadir::open(dir.as_ref(), &config, io)?;
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
        crate::ddl::create_relation(&self.inner, name, RelationKind::Heap)
    }

    /// Creates an ordered map (a B-link tree, [`crate::btree`]) and returns
    /// its id (durable on return). Trees and relations share one namespace
    /// and the same DDL rules: [`drop_tree`](Self::drop_tree) is
    /// [`drop_relation`](Self::drop_relation).
    pub fn create_tree(&self, name: &str) -> Result<RelationId> {
        self.inner.check_usable()?;
        crate::ddl::create_relation(&self.inner, name, RelationKind::Tree)
    }

    /// The id of the tree called `name`, if there is one (a heap relation
    /// of that name is [`DbError::WrongRelationKind`]).
    pub fn tree(&self, name: &str) -> Result<Option<RelationId>> {
        match self.inner.catalog.by_name(name) {
            Some(r) => {
                crate::btree::check_tree(&r)?;
                Ok(Some(r.id))
            }
            None => Ok(None),
        }
    }

    /// Drops the tree called `name` (as [`drop_relation`](Self::drop_relation)).
    pub fn drop_tree(&self, name: &str) -> Result<()> {
        self.inner.check_usable()?;
        crate::ddl::drop_relation(&self.inner, name, Some(RelationKind::Tree))
    }

    /// The id of the relation called `name`, if there is one.
    pub fn relation(&self, name: &str) -> Result<Option<RelationId>> {
        Ok(self.inner.catalog.by_name(name).map(|r| r.id))
    }

    /// Drops the relation called `name` and removes its files (durable on
    /// return). Waits for the transactions using it to end (an exclusive
    /// relation lock: [`Config::lock_timeout`] and deadlock detection
    /// apply, and a drop that gives up changes nothing); afterwards every
    /// use of it is [`DbError::NoSuchRelation`]. Called from a thread whose
    /// own open transaction uses the relation, it would wait for itself: it
    /// fails at once with [`DbError::Deadlock`] and changes nothing.
    pub fn drop_relation(&self, name: &str) -> Result<()> {
        self.inner.check_usable()?;
        crate::ddl::drop_relation(&self.inner, name, None)
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
                kind: r.kind,
                pages: r.page_count(),
            })
            .collect()
    }

    /// Starts a transaction that may read and write. One that only reads
    /// is better begun with [`begin_read`](Self::begin_read): after many
    /// reads in a tree it may lock the whole tree instead of each key.
    pub fn begin(&self) -> Result<Transaction<'_>> {
        Transaction::begin(&self.inner, false)
    }

    /// Starts a read-only transaction: it reads as [`begin`](Self::begin)'s
    /// do, with the same locks, and every write in it fails with
    /// [`DbError::ReadOnly`] (the transaction goes on). Only a read-only
    /// transaction locks a whole tree shared after
    /// [`TREE_READ_ESCALATE_AT`](crate::TREE_READ_ESCALATE_AT) reads in it
    /// (its later reads there take no key locks): one that could still
    /// write the tree would then need it exclusive, and two such would
    /// deadlock. (A `begin` transaction's tree is locked shared only by
    /// the lock manager's own escalation, at
    /// [`ESCALATE_AT`](crate::lock::ESCALATE_AT) key locks.)
    ///
    /// ```
    /// # fn main() -> keel::Result<()> {
    /// # let tmp = std::env::temp_dir().join(format!("keel-doc-read-{}", std::process::id()));
    /// use keel::{Config, Database, DbError, Error};
    ///
    /// let db = Database::open(&tmp, Config::default())?;
    /// let tree = db.create_tree("kv")?;
    /// let mut tx = db.begin()?;
    /// tx.put(tree, b"k", b"v")?;
    /// tx.commit()?;
    ///
    /// let mut reader = db.begin_read()?;
    /// assert_eq!(reader.get_key(tree, b"k")?.as_deref(), Some(&b"v"[..]));
    /// match reader.put(tree, b"k", b"w") {
    ///     Err(Error::Db(DbError::ReadOnly { .. })) => {} // refused; the reader goes on
    ///     other => panic!("expected ReadOnly, got {other:?}"),
    /// }
    /// assert_eq!(reader.get_key(tree, b"k")?.as_deref(), Some(&b"v"[..]));
    /// reader.commit()?;
    /// # db.close()?;
    /// # std::fs::remove_dir_all(&tmp).ok();
    /// # Ok(())
    /// # }
    /// ```
    pub fn begin_read(&self) -> Result<Transaction<'_>> {
        Transaction::begin(&self.inner, true)
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

    /// The I/O backend the database reads and writes its files through:
    /// for a companion that keeps a file beside them on the same disk (an
    /// archiver's status file), the simulator's included.
    pub fn io(&self) -> &std::sync::Arc<dyn keel_io::AsyncIo> {
        &self.inner.store.io
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// How far the log is durable: every record below this LSN is on
    /// stable storage.
    pub fn durable_lsn(&self) -> Lsn {
        self.inner.store.wal.durable_lsn()
    }

    /// The database's random id, chosen when its log was created (in every
    /// WAL segment header; archives record it to refuse another's log).
    pub fn database_id(&self) -> u64 {
        self.inner.store.wal.database_id()
    }

    /// A reader of the log's durable records from `from` (a record
    /// boundary, such as a checkpoint's redo point or the end of the last
    /// record read) up to [`durable_lsn`](Self::durable_lsn) as it is now:
    /// what a log shipper or archiver follows. Segments older than the
    /// last checkpoint may be retired meanwhile; hold them with
    /// [`hold_log_from`](Self::hold_log_from).
    pub fn log_reader(&self, from: Lsn) -> Result<crate::wal::WalReader> {
        let wal = &self.inner.store.wal;
        let end = wal.durable_lsn();
        Ok(wal
            .reader(from, crate::wal::RecoveryMode::AbsoluteConsistency)?
            .until(end))
    }

    /// Where the log is held from ([`hold_log_from`](Self::hold_log_from),
    /// or `WalConfig::hold_at_open`: the first record of the oldest
    /// segment present at open), if it is.
    pub fn log_hold(&self) -> Option<Lsn> {
        self.inner.store.wal.held_from()
    }

    /// Takes an online base backup (protocol in [`crate::backup`]):
    /// checkpoints, pins the log from the checkpoint's scan start, and
    /// hands `sink` the control file and each relation heap file, read
    /// while writes continue. Returns the start and end LSNs, the files
    /// with their sizes and CRC32Cs, and the pin (drop it once the log
    /// from the start is kept elsewhere).
    pub fn backup<E: From<Error>>(
        &self,
        sink: impl FnMut(&crate::backup::BackupFile, &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<crate::backup::BaseBackup, E> {
        self.inner.check_usable()?;
        crate::backup::backup(&self.inner, sink)
    }

    /// [`backup`](Self::backup) with each file handed to `sink` as a
    /// reader it takes in parts, so no file is held in memory whole
    /// (`backup` module essay).
    pub fn backup_streaming<E: From<Error>>(
        &self,
        sink: impl FnMut(&mut crate::backup::BackupReader<'_>) -> std::result::Result<(), E>,
    ) -> std::result::Result<crate::backup::BaseBackup, E> {
        self.inner.check_usable()?;
        crate::backup::backup_streaming(&self.inner, sink)
    }

    /// Pins the log from `lsn` until the returned pin is dropped: no
    /// checkpoint retires log at or above it. Any number of pins coexist
    /// with each other and with [`hold_log_from`](Self::hold_log_from).
    pub fn pin_log_from(&self, lsn: Lsn) -> crate::wal::LogPin {
        self.inner.store.wal.pin_from(lsn)
    }

    /// Keeps the log from `lsn` on (`None`: lifts the hold): checkpoints
    /// retire no segment holding log at or above it until the hold moves,
    /// so an archiver can ship every record before the log is recycled.
    pub fn hold_log_from(&self, lsn: Option<Lsn>) {
        self.inner.store.wal.hold_from(lsn);
    }

    /// Bounds the log not yet archived (`None`: no bound): while more than
    /// `max_bytes` of durable log lie past the hold
    /// ([`hold_log_from`](Self::hold_log_from)), commits wait before
    /// appending their commit record, keeping their locks, and one that
    /// waits `timeout` is rolled back and fails with
    /// [`DbError::CommitStalled`] (never acknowledged: invariant 6). Moving
    /// the hold or changing the bound wakes the waiters. An archiver sets
    /// this for its `Stall` policy; `keel::wal::gate` states what the bound
    /// covers and what it does not.
    pub fn limit_unarchived(&self, limit: Option<crate::wal::UnarchivedLimit>) {
        self.inner.store.wal.set_unarchived_limit(limit);
    }

    /// The log's counters.
    pub fn wal_stats(&self) -> WriterStats {
        self.inner.store.wal.stats()
    }

    /// Whether the log is written with O_DIRECT ([`WalConfig::direct_io`]
    /// asks for it; the file system may not support it).
    pub fn wal_direct_io(&self) -> bool {
        self.inner.store.wal.direct_io()
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
    pub fn poison_cause(&self) -> Option<ErrorCause> {
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
    /// each leaks space, never data. One that failed on a write (a page's
    /// or the log's) also poisoned the database, and the open after the
    /// crash frees that space.
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

#[cfg(test)]
mod tests {
    use super::{Config, Database};
    use crate::page::{PageType, page_type};
    use crate::types::PageId;

    /// A split offered a free page that someone holds latched passes over
    /// it (invariant 11: the split holds its node's latch, and the page may
    /// be a node by now whose holder waits for that one) and takes another
    /// page: here the holder is the splitting thread itself, which a wait
    /// would deadlock for good.
    #[test]
    fn a_split_passes_over_a_free_page_someone_holds() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path(), Config::default()).unwrap();
        let tree = db.create_tree("t").unwrap();
        let key = |i: u32| format!("key{i:06}").into_bytes();
        let mut tx = db.begin().unwrap();
        for i in 0..3000 {
            tx.put(tree, &key(i), &[7; 150]).unwrap();
        }
        tx.commit().unwrap();
        // Empties the leaves of the middle: reclaimed, offered by the FSM.
        let mut tx = db.begin().unwrap();
        for i in 500..2500 {
            tx.delete_key(tree, &key(i)).unwrap();
        }
        tx.commit().unwrap();

        let rel = db.inner.named("t").unwrap();
        let pool = &db.inner.store.pool;
        let held: Vec<_> = (1..rel.page_count())
            .map(|p| pool.fetch_read(rel.file(), PageId(p)).unwrap())
            .filter(|g| page_type(g) == Some(PageType::Free))
            .collect();
        assert!(held.len() >= 4, "{} free pages", held.len());
        let pages = rel.page_count();

        let mut tx = db.begin().unwrap();
        for i in 500..2500 {
            tx.put(tree, &key(i), &[8; 150]).unwrap();
        }
        tx.commit().unwrap();
        assert!(rel.page_count() > pages, "the splits took new pages");
        let freed = held.len();
        drop(held);
        // Once let go, the free pages are offered again and taken.
        let mut tx = db.begin().unwrap();
        for i in 3000..6000 {
            tx.put(tree, &key(i), &[9; 150]).unwrap();
        }
        tx.commit().unwrap();
        let still_free = (1..rel.page_count())
            .filter(|&p| {
                let g = pool.fetch_read(rel.file(), PageId(p)).unwrap();
                page_type(&g) == Some(PageType::Free)
            })
            .count();
        assert!(
            still_free < freed,
            "{still_free} of {freed} free pages left"
        );
        drop(rel);
        db.close().unwrap();
    }
}
