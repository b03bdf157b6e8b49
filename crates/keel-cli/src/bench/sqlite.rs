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

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use super::engine::{Engine, EngineKind, Session, process_write_bytes};
use crate::Failure;

const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

fn err(e: rusqlite::Error) -> Failure {
    Failure(format!("sqlite: {e}"))
}

/// SQLite on one database file, through one shared connection.
pub struct SqliteEngine {
    conn: Arc<Mutex<Connection>>,
    cache_kib: u64,
}

impl SqliteEngine {
    /// Creates the database in `dir` with the bench table.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SqliteEngine, Failure> {
        let cache_kib = (cache_bytes / 1024).max(1);
        let c = connect(&dir.join("bench.sqlite"), cache_kib)?;
        let mode: String = c
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Failure(format!("sqlite: journal_mode is {mode}, not wal")));
        }
        let e = SqliteEngine {
            conn: Arc::new(Mutex::new(c)),
            cache_kib,
        };
        e.reset()?;
        Ok(e)
    }
}

fn connect(path: &Path, cache_kib: u64) -> Result<Connection, Failure> {
    let c = Connection::open(path).map_err(err)?;
    c.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    c.execute_batch(&format!(
        "PRAGMA synchronous=FULL; PRAGMA cache_size=-{cache_kib};"
    ))
    .map_err(err)?;
    Ok(c)
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
        ]
    }

    fn session(&self) -> Result<Box<dyn Session>, Failure> {
        Ok(Box::new(SqliteSession {
            conn: self.conn.clone(),
        }))
    }

    fn reset(&self) -> Result<(), Failure> {
        self.conn
            .lock()
            .execute_batch(
                "DROP TABLE IF EXISTS bench;
             CREATE TABLE bench (id INTEGER PRIMARY KEY, payload BLOB NOT NULL);
             PRAGMA wal_checkpoint(TRUNCATE);",
            )
            .map_err(err)
    }

    fn checkpoint(&self) -> Result<(), Failure> {
        self.conn
            .lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(err)
    }

    fn bytes_written(&self) -> Option<u64> {
        process_write_bytes()
    }
}

struct SqliteSession {
    conn: Arc<Mutex<Connection>>,
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
