//! SQLite as a peer: the bundled library through rusqlite, in WAL mode with
//! `synchronous=FULL` (a commit returns once its WAL frames are fsynced),
//! prepared statements, and a page cache of the run's byte budget.
//!
//! Every session shares **one connection behind a mutex**, which is how
//! SQLite is used from threads (its serialized mode does the same inside the
//! library): with N committers, one commit runs at a time and the others
//! wait on the mutex, rather than N connections each taking the database's
//! write lock in turn and sleeping in the busy handler between tries.
//! SQLite has no group commit: each commit is its own WAL append and fsync.
//! The connection is opened on first use and closed by `pause`.
//!
//! - Point reads are by rowid: the id is the `INTEGER PRIMARY KEY`, so the
//!   row's address is its key (a descent of the table's own B-tree).
//! - The crash (recovery suite): a `keel bench-child` process writes the
//!   WAL with automatic checkpoints off (`wal_autocheckpoint=0`) and is
//!   SIGKILLed; recovery is timed from spawning another one until its first
//!   commit is acknowledged ([`super::child`]). Its first transaction
//!   rebuilds the WAL index by reading every frame of the WAL; SQLite takes
//!   no checkpoint at the end of recovery (the WAL is copied into the
//!   database at the next automatic checkpoint, or when the last
//!   connection closes, after the time is taken).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use super::engine::{Engine, EngineKind, Recovered, Session, process_write_bytes};
use crate::Failure;

const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

fn err(e: rusqlite::Error) -> Failure {
    Failure(format!("sqlite: {e}"))
}

/// A connection shared by every session.
type Shared = Arc<Mutex<Connection>>;

/// SQLite on one database file, through one shared connection.
pub struct SqliteEngine {
    path: PathBuf,
    cache_kib: u64,
    /// The shared connection, once opened (closed again by `pause`).
    conn: Mutex<Option<Shared>>,
}

impl SqliteEngine {
    /// Creates the database in `dir` with the bench table.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SqliteEngine, Failure> {
        let e = SqliteEngine::attach(dir, cache_bytes);
        let c = e.connect()?;
        let mode: String = c
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Failure(format!("sqlite: journal_mode is {mode}, not wal")));
        }
        drop(c);
        e.reset()?;
        Ok(e)
    }

    /// The database in `dir` as it is (nothing created or reset).
    pub fn attach(dir: &Path, cache_bytes: u64) -> SqliteEngine {
        SqliteEngine {
            path: dir.join("bench.sqlite"),
            cache_kib: (cache_bytes / 1024).max(1),
            conn: Mutex::new(None),
        }
    }

    /// The database file; its log is this path with `-wal` appended.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A session whose connection also runs `pragmas` after the usual ones.
    pub fn session_with(&self, pragmas: &str) -> Result<Box<dyn Session>, Failure> {
        let conn = self.connect()?;
        conn.execute_batch(pragmas).map_err(err)?;
        Ok(Box::new(SqliteSession {
            conn: Arc::new(Mutex::new(conn)),
        }))
    }

    /// The shared connection, opened if it is not.
    fn shared(&self) -> Result<Shared, Failure> {
        let mut slot = self.conn.lock();
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(Mutex::new(self.connect()?));
        *slot = Some(c.clone());
        Ok(c)
    }

    fn connect(&self) -> Result<Connection, Failure> {
        let c = Connection::open(&self.path).map_err(err)?;
        c.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        c.execute_batch(&format!(
            "PRAGMA synchronous=FULL; PRAGMA cache_size=-{};",
            self.cache_kib
        ))
        .map_err(err)?;
        Ok(c)
    }
}

impl Engine for SqliteEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Sqlite
    }

    fn settings(&self) -> Vec<(String, String)> {
        vec![
            (
                "version".into(),
                rusqlite::version().to_string() + " (bundled)",
            ),
            ("journal_mode".into(), "WAL".into()),
            ("synchronous".into(), "FULL".into()),
            (
                "connection".into(),
                "one, shared by every thread behind a mutex".into(),
            ),
            (
                "busy_timeout".into(),
                format!("{} ms", BUSY_TIMEOUT.as_millis()),
            ),
            ("cache_size".into(), format!("-{} (KiB)", self.cache_kib)),
            (
                "table".into(),
                "bench(id INTEGER PRIMARY KEY, payload BLOB)".into(),
            ),
            ("point reads".into(), "by rowid (= id)".into()),
        ]
    }

    fn session(&self) -> Result<Box<dyn Session>, Failure> {
        Ok(Box::new(SqliteSession {
            conn: self.shared()?,
        }))
    }

    fn pause(&self) -> Result<(), Failure> {
        // The last session is gone: closing the connection closes the files.
        self.conn.lock().take();
        Ok(())
    }

    fn reset(&self) -> Result<(), Failure> {
        let c = self.shared()?;
        let c = c.lock();
        c.execute_batch(
            "DROP TABLE IF EXISTS bench;
             CREATE TABLE bench (id INTEGER PRIMARY KEY, payload BLOB NOT NULL);
             PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .map_err(err)
    }

    fn checkpoint(&self) -> Result<(), Failure> {
        let c = self.shared()?;
        let c = c.lock();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(err)
    }

    fn bytes_written(&self) -> Option<u64> {
        process_write_bytes()
    }

    fn crash_recover(&self, wal_bytes: u64) -> Result<Recovered, Failure> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        super::child::crash_cycle(EngineKind::Sqlite, dir, self.cache_kib * 1024, wal_bytes)
    }
}

struct SqliteSession {
    conn: Shared,
}

const INSERT: &str = "INSERT INTO bench (id, payload) VALUES (?1, ?2)";

impl Session for SqliteSession {
    fn commit_one(&mut self, id: u64, payload: &[u8]) -> Result<(), Failure> {
        // Autocommit: the statement is its own durable transaction.
        let conn = self.conn.lock();
        let mut st = conn.prepare_cached(INSERT).map_err(err)?;
        st.execute(params![id as i64, payload]).map_err(err)?;
        Ok(())
    }

    fn insert_batch(&mut self, first_id: u64, rows: u64, payload: &[u8]) -> Result<(), Failure> {
        let conn = self.conn.lock();
        conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        let result = (|| {
            let mut st = conn.prepare_cached(INSERT)?;
            for id in first_id..first_id + rows {
                st.execute(params![id as i64, payload])?;
            }
            Ok::<(), rusqlite::Error>(())
        })();
        match result {
            Ok(()) => conn.execute_batch("COMMIT").map_err(err),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(err(e))
            }
        }
    }

    fn point_read(&mut self, id: u64) -> Result<bool, Failure> {
        let conn = self.conn.lock();
        let mut st = conn
            .prepare_cached("SELECT payload FROM bench WHERE id = ?1")
            .map_err(err)?;
        let row: Option<Vec<u8>> = st
            .query_row(params![id as i64], |r| r.get(0))
            .optional()
            .map_err(err)?;
        Ok(row.is_some())
    }
}
