//! Keel's side of the bench, on Keel's public `Database` API.
//!
//! - Each row is one heap tuple: the 8-byte id followed by the 100-byte
//!   payload (Keel has no key column; the other engines keep the id as their
//!   primary key).
//! - `commit_one` is `begin`, `insert`, `commit` (durable on return under the
//!   default `CommitMode::Sync`, one flush serving every waiting committer).
//! - `insert_batch` is one transaction with one `insert_many` of the
//!   batch's rows (Keel's bulk path: one log record per heap page).
//! - Point reads are by physical address, for every engine: Keel by the
//!   TupleId each insert returned, kept by the bench client in an id →
//!   TupleId map outside the buffer pool (as the id → ctid map is kept for
//!   PostgreSQL; SQLite's rowid is the id itself).
//! - The buffer pool gets the run's cache budget (`pool_bytes`).
//! - [`Engine::pause`] is `close` (a final checkpoint, a clean shutdown);
//!   [`Engine::resume`] opens the directory again with an empty pool.
//! - `keel-archived` (commit suite only) is the same engine with
//!   keel-archive's continuous archiver shipping its log to a local
//!   directory beside the database (the same code path as S3, so the
//!   compression, chunk building, uploads and the retention hold all run);
//!   pause stops the archiver before closing, resume starts it again after
//!   the chunks already there.
//! - The crash (recovery suite) is a real one: a `keel bench-child` process
//!   writes the log and is SIGKILLed, and another one opens the directory
//!   (recovery) and commits a row; the time is from spawning that process
//!   until its commit is acknowledged ([`super::child`]). The recovery
//!   suite opens with [`RecoveryCheckpoint::BeforeOpenReturns`]: the
//!   checkpoint that ends recovery is taken before `open` returns, so
//!   inside the time, as PostgreSQL's end-of-recovery checkpoint is (Keel's
//!   default takes it in the background while work runs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel::types::{RelationId, TupleId};
use keel::{Config, Database, RecoveryCheckpoint};
use keel_archive::{ArchiveTarget, Archiver, ArchiverOptions, StoreConfig};
use parking_lot::{Mutex, RwLock};

use super::engine::{Engine, EngineKind, Recovered, Session, process_write_bytes};
use crate::Failure;

/// The bench relation's name.
pub const RELATION: &str = "bench";

/// An open Keel database with the bench relation.
pub struct KeelEngine {
    /// The engine's directory (the database is its `db`).
    root: PathBuf,
    config: Config,
    db: RwLock<Option<Arc<Database>>>,
    rel: RwLock<RelationId>,
    /// TupleId of row `id`, as insert returned it.
    tids: Arc<Mutex<Vec<Option<TupleId>>>>,
    /// `keel-archived`: where the log goes, and the archiver while the
    /// database is open.
    archive: Option<(ArchiveTarget, Mutex<Option<Archiver>>)>,
}

fn k(e: keel::Error) -> Failure {
    Failure(format!("keel: {}", Failure::from(e).0))
}

/// The configuration the bench runs Keel with: `cache_bytes` of buffer
/// pool, the I/O backend from the environment; with `for_recovery`,
/// checkpoints run only when asked for (so the log written before a crash
/// is all replayed) and the checkpoint ending recovery is taken before
/// `open` returns.
pub fn config(cache_bytes: u64, for_recovery: bool) -> Result<Config, Failure> {
    let mut config = Config::default();
    config.buffer.pool_bytes = cache_bytes as usize;
    config.io = config.io.with_env()?;
    if for_recovery {
        config.checkpoint_wal_bytes = 0;
        config.checkpoint_interval = None;
        config.recovery_checkpoint = RecoveryCheckpoint::BeforeOpenReturns;
    }
    Ok(config)
}

/// The buffer pool's size and pages, for a settings line.
pub fn pool_setting(c: &keel::buffer::BufferConfig) -> String {
    format!(
        "{} MiB, {}",
        c.pool_bytes >> 20,
        match c.huge_pages {
            true => "huge pages asked for",
            false => "huge pages not asked for (the default)",
        }
    )
}

impl KeelEngine {
    /// Opens (creating if needed) the database in `root/db` with the bench
    /// relation (see [`config`]).
    pub fn open(root: &Path, cache_bytes: u64, for_recovery: bool) -> Result<KeelEngine, Failure> {
        let config = config(cache_bytes, for_recovery)?;
        let (db, rel) = open_db(&root.join("db"), &config)?;
        Ok(KeelEngine {
            root: root.to_path_buf(),
            config,
            db: RwLock::new(Some(Arc::new(db))),
            rel: RwLock::new(rel),
            tids: Arc::new(Mutex::new(Vec::new())),
            archive: None,
        })
    }

    /// [`open`](Self::open), then starts archiving the log continuously to
    /// the local directory `root/archive` (`keel-archived`).
    pub fn open_archived(root: &Path, cache_bytes: u64) -> Result<KeelEngine, Failure> {
        let mut engine = KeelEngine::open(root, cache_bytes, false)?;
        let store = root.join("archive");
        std::fs::create_dir_all(&store)
            .map_err(|e| Failure(format!("cannot create {}: {e}", store.display())))?;
        let target = ArchiveTarget::new(StoreConfig::Local(store), "");
        engine.archive = Some((target, Mutex::new(None)));
        engine.start_archiver()?;
        Ok(engine)
    }

    /// Starts the archiver on the open database (`keel-archived` only).
    fn start_archiver(&self) -> Result<(), Failure> {
        let Some((target, slot)) = &self.archive else {
            return Ok(());
        };
        let archiver = Archiver::start(self.db()?, target, ArchiverOptions::default())
            .map_err(|e| Failure(format!("keel archiver: {e}")))?;
        *slot.lock() = Some(archiver);
        Ok(())
    }

    /// Stops the archiver, once everything durable is archived.
    fn stop_archiver(&self) -> Result<(), Failure> {
        let Some((_, slot)) = &self.archive else {
            return Ok(());
        };
        match slot.lock().take() {
            Some(a) => a
                .stop()
                .map(|_| ())
                .map_err(|e| Failure(format!("keel archiver: {e}"))),
            None => Ok(()),
        }
    }

    /// The open database.
    pub fn db(&self) -> Result<Arc<Database>, Failure> {
        self.db
            .read()
            .clone()
            .ok_or_else(|| Failure("keel: the database is closed".into()))
    }
}

/// Opens the database in `dir` and finds (or creates) the bench relation.
fn open_db(dir: &Path, config: &Config) -> Result<(Database, RelationId), Failure> {
    let db = Database::open(dir, config.clone()).map_err(k)?;
    let rel = match db.relation(RELATION).map_err(k)? {
        Some(r) => r,
        None => db.create_relation(RELATION).map_err(k)?,
    };
    Ok((db, rel))
}

impl Engine for KeelEngine {
    fn kind(&self) -> EngineKind {
        match self.archive {
            Some(_) => EngineKind::KeelArchived,
            None => EngineKind::Keel,
        }
    }

    fn settings(&self) -> Vec<(String, String)> {
        let c = &self.config;
        let ckpt = match c.checkpoint_wal_bytes {
            0 => "only when asked".to_string(),
            b => format!(
                "every {} MiB of log or {:?}",
                b >> 20,
                c.checkpoint_interval
            ),
        };
        let backend = keel_io::open_backend(&c.io)
            .map(|io| io.backend_name().to_string())
            .unwrap_or_else(|_| "?".into());
        let mut out = vec![
            ("version".into(), env!("CARGO_PKG_VERSION").into()),
            (
                "api".into(),
                "Database: begin / insert / commit; bulk load: begin / insert_many / commit; get by TupleId".into(),
            ),
            ("io backend".into(), backend),
            (
                "buffer pool".into(),
                pool_setting(&c.buffer),
            ),
            ("commit".into(), format!("{:?}", c.wal.commit)),
            (
                "wal segment".into(),
                format!("{} MiB", c.wal.segment_size_bytes >> 20),
            ),
            (
                "wal writes".into(),
                match self.db.read().as_ref().map(|db| db.wal_direct_io()) {
                    Some(true) => "O_DIRECT",
                    Some(false) if c.wal.direct_io => "page cache (O_DIRECT refused here)",
                    _ => "page cache",
                }
                .into(),
            ),
            (
                "commit yields before sleeping".into(),
                c.wal.commit_spin_yields.to_string(),
            ),
            ("checkpoints".into(), ckpt),
            (
                "end-of-recovery checkpoint".into(),
                format!("{:?}", c.recovery_checkpoint),
            ),
            (
                "relation".into(),
                format!("{RELATION}: tuple = 8-byte id + payload"),
            ),
            (
                "point reads".into(),
                "by TupleId; the id -> TupleId map is kept by the bench client, outside the pool"
                    .into(),
            ),
        ];
        if self.archive.is_some() {
            let a = ArchiverOptions::default();
            out.push((
                "archive".into(),
                format!(
                    "continuous, to a local directory beside the database: zstd chunks of up to \
                     {} MiB, each record uploaded within {:?} of being durable",
                    a.max_chunk_bytes >> 20,
                    a.max_delay
                ),
            ));
        }
        out
    }

    fn session(&self) -> Result<Box<dyn Session>, Failure> {
        Ok(Box::new(KeelSession {
            db: self.db()?,
            rel: *self.rel.read(),
            tids: self.tids.clone(),
            row: Vec::with_capacity(128),
        }))
    }

    fn reset(&self) -> Result<(), Failure> {
        let db = self.db()?;
        db.drop_relation(RELATION).map_err(k)?;
        *self.rel.write() = db.create_relation(RELATION).map_err(k)?;
        self.tids.lock().clear();
        Ok(())
    }

    fn checkpoint(&self) -> Result<(), Failure> {
        self.db()?.checkpoint().map_err(k)?;
        Ok(())
    }

    fn bytes_written(&self) -> Option<u64> {
        process_write_bytes()
    }

    fn pause(&self) -> Result<(), Failure> {
        self.stop_archiver()?;
        let Some(db) = self.db.write().take() else {
            return Ok(());
        };
        let db = Arc::into_inner(db)
            .ok_or_else(|| Failure("keel: database still in use when shutting down".into()))?;
        db.close().map_err(k)
    }

    fn resume(&self) -> Result<(), Failure> {
        let mut slot = self.db.write();
        if slot.is_none() {
            let (db, rel) = open_db(&self.root.join("db"), &self.config)?;
            *self.rel.write() = rel;
            *slot = Some(Arc::new(db));
            drop(slot);
            self.start_archiver()?;
        }
        Ok(())
    }

    fn crash_recover(&self, wal_bytes: u64) -> Result<Recovered, Failure> {
        // The directory belongs to the child processes from here on.
        self.pause()?;
        self.tids.lock().clear();
        super::child::crash_cycle(
            EngineKind::Keel,
            &self.root,
            self.config.buffer.pool_bytes as u64,
            wal_bytes,
        )
    }
}

struct KeelSession {
    db: Arc<Database>,
    rel: RelationId,
    tids: Arc<Mutex<Vec<Option<TupleId>>>>,
    row: Vec<u8>,
}

impl KeelSession {
    fn row(&mut self, id: u64, payload: &[u8]) {
        self.row.clear();
        self.row.extend_from_slice(&id.to_le_bytes());
        self.row.extend_from_slice(payload);
    }
}

impl Session for KeelSession {
    fn commit_one(&mut self, id: u64, payload: &[u8]) -> Result<(), Failure> {
        self.row(id, payload);
        let mut tx = self.db.begin().map_err(k)?;
        tx.insert(self.rel, &self.row).map_err(k)?;
        tx.commit().map_err(k)
    }

    /// One transaction of the batch's rows through
    /// `Transaction::insert_many`: each row is still its own tuple with its
    /// own TupleId and exclusive lock, durable at the commit, but the rows
    /// that go to one page are logged as one heap-multi-insert record and
    /// placed under one page latch. It is Keel's bulk path for many rows in
    /// one transaction, as a prepared `INSERT` run once per row inside one
    /// transaction is SQLite's (its rows are appended to a B-tree page in
    /// memory and each page reaches its WAL once) and `COPY` is
    /// PostgreSQL's (its `heap_multi_insert` logs one record per page the
    /// same way). The rows are built in one buffer first, as the peers bind
    /// their parameters.
    fn insert_batch(&mut self, first_id: u64, rows: u64, payload: &[u8]) -> Result<(), Failure> {
        let row_len = 8 + payload.len();
        let mut buf = Vec::with_capacity(rows as usize * row_len);
        for id in first_id..first_id + rows {
            buf.extend_from_slice(&id.to_le_bytes());
            buf.extend_from_slice(payload);
        }
        let db = self.db.clone();
        let mut tx = db.begin().map_err(k)?;
        let tids = tx.insert_many(self.rel, buf.chunks(row_len)).map_err(k)?;
        tx.commit().map_err(k)?;
        let mut map = self.tids.lock();
        let end = (first_id + rows) as usize;
        if map.len() < end {
            map.resize(end, None);
        }
        for (i, t) in tids.into_iter().enumerate() {
            map[first_id as usize + i] = Some(t);
        }
        Ok(())
    }

    fn point_read(&mut self, id: u64) -> Result<bool, Failure> {
        let tid = self.tids.lock().get(id as usize).copied().flatten();
        let Some(tid) = tid else { return Ok(false) };
        let tx = self.db.begin().map_err(k)?;
        let found = tx.get(self.rel, tid).map_err(k)?;
        tx.commit().map_err(k)?;
        Ok(found.is_some_and(|v| v.len() >= 8 && v[..8] == id.to_le_bytes()))
    }
}
