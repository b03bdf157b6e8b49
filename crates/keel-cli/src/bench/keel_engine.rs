//! Keel's side of the bench, on Keel's public `Database` API.
//!
//! - Each row is one heap tuple: the 8-byte id followed by the 100-byte
//!   payload (Keel has no key column; the other engines keep the id as their
//!   primary key).
//! - `commit_one` is `begin`, `insert`, `commit` (durable on return under the
//!   default `CommitMode::Sync`, one flush serving every waiting committer).
//! - `insert_batch` is one transaction of the batch's inserts.
//! - Point reads are by TupleId: Keel is an engine core without indexes, so
//!   the bench keeps the TupleId each insert returned, indexed by row id, as
//!   a caller would; the peers look the id up in their primary key index.
//! - The buffer pool gets the run's cache budget (`pool_bytes`).
//! - A crash is dropping the `Database` without `close`: no final
//!   checkpoint, no clean-shutdown mark, dirty pages lost; what reached the
//!   files (the log up to the last commit, pages written back before) stays,
//!   as after `pg_ctl stop -m immediate`. Recovery is timed as the
//!   `Database::open` that follows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use keel::types::{RelationId, TupleId};
use keel::{Config, Database};
use parking_lot::{Mutex, RwLock};

use super::engine::{BATCH_ROWS, Engine, EngineKind, Recovered, Session, process_write_bytes};
use crate::Failure;

const RELATION: &str = "bench";

/// An open Keel database with the bench relation.
pub struct KeelEngine {
    dir: PathBuf,
    config: Config,
    db: RwLock<Option<Arc<Database>>>,
    rel: RwLock<RelationId>,
    /// TupleId of row `id`, as insert returned it.
    tids: Arc<Mutex<Vec<Option<TupleId>>>>,
    backend: String,
}

fn k(e: keel::Error) -> Failure {
    Failure(format!("keel: {}", Failure::from(e).0))
}

impl KeelEngine {
    /// Creates a database in `dir` with `cache_bytes` of buffer pool. With
    /// `for_recovery`, checkpoints run only when asked for, so the log
    /// written before a crash is all replayed.
    pub fn open(dir: &Path, cache_bytes: u64, for_recovery: bool) -> Result<KeelEngine, Failure> {
        let mut config = Config::default();
        config.buffer.pool_bytes = cache_bytes as usize;
        config.io = config.io.with_env()?;
        if for_recovery {
            config.checkpoint_wal_bytes = 0;
            config.checkpoint_interval = None;
        }
        let db = Database::open(dir.join("db"), config.clone()).map_err(k)?;
        let backend = keel_io::open_backend(&config.io)
            .map(|io| io.backend_name().to_string())
            .unwrap_or_else(|_| "?".into());
        let rel = db.create_relation(RELATION).map_err(k)?;
        Ok(KeelEngine {
            dir: dir.join("db"),
            config,
            db: RwLock::new(Some(Arc::new(db))),
            rel: RwLock::new(rel),
            tids: Arc::new(Mutex::new(Vec::new())),
            backend,
        })
    }

    fn db(&self) -> Result<Arc<Database>, Failure> {
        self.db
            .read()
            .clone()
            .ok_or_else(|| Failure("keel: the database is closed".into()))
    }
}

impl Engine for KeelEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Keel
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
        vec![
            ("version".into(), env!("CARGO_PKG_VERSION").into()),
            (
                "api".into(),
                "Database: begin / insert / commit, get by TupleId".into(),
            ),
            ("io backend".into(), self.backend.clone()),
            (
                "buffer pool".into(),
                format!("{} MiB", c.buffer.pool_bytes >> 20),
            ),
            ("commit".into(), format!("{:?}", c.wal.commit)),
            (
                "wal segment".into(),
                format!("{} MiB", c.wal.segment_size_bytes >> 20),
            ),
            ("wal direct_io".into(), c.wal.direct_io.to_string()),
            (
                "commit yields before sleeping".into(),
                c.wal.commit_spin_yields.to_string(),
            ),
            ("checkpoints".into(), ckpt),
            (
                "relation".into(),
                format!("{RELATION}: tuple = 8-byte id + payload"),
            ),
        ]
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

    fn crash_recover(&self, wal_bytes: u64) -> Result<Recovered, Failure> {
        let db = self.db()?;
        db.checkpoint().map_err(k)?;
        let start = db.wal_end().0;
        let mut s = self.session()?;
        let payload = super::engine::payload();
        let mut id = 0;
        while db.wal_end().0 - start < wal_bytes {
            s.insert_batch(id, BATCH_ROWS, &payload)?;
            id += BATCH_ROWS;
        }
        let written = db.wal_end().0 - start;
        drop((s, db));
        // The crash: the last handle dropped without close().
        let crashed = self.db.write().take();
        if crashed.is_some_and(|d| Arc::into_inner(d).is_none()) {
            return Err(Failure("keel: database still in use at the crash".into()));
        }
        let t = Instant::now();
        let db = Database::open(&self.dir, self.config.clone()).map_err(k)?;
        let secs = t.elapsed().as_secs_f64();
        let report = db.recovery_report().clone();
        if report.clean_shutdown {
            return Err(Failure(
                "keel: reopened as a clean shutdown, not a crash".into(),
            ));
        }
        *self.db.write() = Some(Arc::new(db));
        self.reset()?;
        Ok(Recovered {
            wal_bytes: report
                .log_end
                .0
                .saturating_sub(report.redo_start.0)
                .max(written),
            secs,
        })
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
