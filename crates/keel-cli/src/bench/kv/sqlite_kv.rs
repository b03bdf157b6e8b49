//! SQLite as a key-value store: a `WITHOUT ROWID` table keyed by the key
//! (so the row lives in the primary key's B-tree, one descent per lookup,
//! as in a key-value store), in WAL mode with `synchronous=FULL`, through
//! cached prepared statements — the configuration the other suites give it.
//!
//! Writes go through **one connection behind a mutex** (with 64 writers,
//! one commit runs at a time and the others wait on the mutex, SQLite's
//! best shape for threads: see [`super::super::sqlite`]). Reads take a
//! connection of their own from a pool (WAL readers run side by side), so
//! 8 reading threads use 8 connections, each with the run's page cache
//! budget. A read call is one `BEGIN … COMMIT` read transaction.

use std::ops::Range;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

use super::store::{KvStore, check, key, value};
use crate::Failure;

fn err(e: rusqlite::Error) -> Failure {
    Failure(format!("sqlite: {e}"))
}

const PUT: &str = "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)";
const GET: &str = "SELECT value FROM kv WHERE key = ?1";
const RANGE: &str = "SELECT key, value FROM kv WHERE key >= ?1 ORDER BY key LIMIT ?2";
const DELETE: &str = "DELETE FROM kv WHERE key = ?1";

/// SQLite on `dir/kv.sqlite`.
pub struct SqliteKv {
    path: PathBuf,
    cache_kib: u64,
    /// `PRAGMA page_size` and `PRAGMA mmap_size` as the database has them.
    page_size: i64,
    mmap_size: i64,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl SqliteKv {
    /// Creates the database and its table.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SqliteKv, Failure> {
        let path = dir.join("kv.sqlite");
        let cache_kib = (cache_bytes / 1024).max(1);
        let writer = connect(&path, cache_kib)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Failure(format!("sqlite: journal_mode is {mode}, not wal")));
        }
        writer
            .execute_batch(
                "CREATE TABLE kv (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL) \
                 WITHOUT ROWID",
            )
            .map_err(err)?;
        let pragma = |name: &str| -> Result<i64, Failure> {
            writer
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .map_err(err)
        };
        let (page_size, mmap_size) = (pragma("page_size")?, pragma("mmap_size")?);
        Ok(SqliteKv {
            path,
            cache_kib,
            page_size,
            mmap_size,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on a pooled read connection inside one read transaction.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Failure>) -> Result<T, Failure> {
        let pooled = self.readers.lock().pop();
        let c = match pooled {
            Some(c) => c,
            None => connect(&self.path, self.cache_kib)?,
        };
        c.execute_batch("BEGIN").map_err(err)?;
        let out = f(&c);
        let end = c.execute_batch("COMMIT").map_err(err);
        self.readers.lock().push(c);
        let out = out?;
        end.map(|()| out)
    }

    /// Runs `f` on the write connection inside one `BEGIN IMMEDIATE …
    /// COMMIT` transaction (rolled back if `f` fails).
    fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Failure>) -> Result<T, Failure> {
        let c = self.writer.lock();
        c.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        match f(&c) {
            Ok(v) => c.execute_batch("COMMIT").map_err(err).map(|()| v),
            Err(e) => {
                let _ = c.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

fn connect(path: &Path, cache_kib: u64) -> Result<Connection, Failure> {
    let c = Connection::open(path).map_err(err)?;
    c.busy_timeout(std::time::Duration::from_secs(60))
        .map_err(err)?;
    c.execute_batch(&format!(
        "PRAGMA synchronous=FULL; PRAGMA cache_size=-{cache_kib};"
    ))
    .map_err(err)?;
    Ok(c)
}

impl KvStore for SqliteKv {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn settings(&self) -> Vec<(String, String)> {
        vec![
            (
                "version".into(),
                rusqlite::version().to_string() + " (bundled)",
            ),
            (
                "table".into(),
                "kv(key BLOB PRIMARY KEY, value BLOB) WITHOUT ROWID".into(),
            ),
            ("journal_mode".into(), "WAL".into()),
            ("synchronous".into(), "FULL".into()),
            ("page_size".into(), format!("{} B", self.page_size)),
            (
                "mmap_size".into(),
                format!("{} (reads through its page cache)", self.mmap_size),
            ),
            (
                "cache_size".into(),
                format!("-{} (KiB) per connection", self.cache_kib),
            ),
            (
                "write".into(),
                "one connection behind a mutex: BEGIN IMMEDIATE; prepared INSERT OR REPLACE \
                 per key; COMMIT"
                    .into(),
            ),
            (
                "read".into(),
                "a pooled connection per thread: BEGIN; prepared SELECT per key, or \
                 SELECT … WHERE key >= ? ORDER BY key LIMIT 10 per range; COMMIT"
                    .into(),
            ),
            ("delete".into(), "as write, prepared DELETE per key".into()),
            (
                "checkpoint".into(),
                "PRAGMA wal_checkpoint(TRUNCATE)".into(),
            ),
        ]
    }

    fn put(&self, ids: Range<u64>) -> Result<(), Failure> {
        self.write(|c| {
            let mut st = c.prepare_cached(PUT).map_err(err)?;
            for i in ids {
                st.execute(params![&key(i)[..], &value(i)[..]])
                    .map_err(err)?;
            }
            Ok(())
        })
    }

    fn get(&self, ids: &[u64]) -> Result<(), Failure> {
        self.read(|c| {
            let mut st = c.prepare_cached(GET).map_err(err)?;
            // The value is checked where SQLite holds it (a borrowed blob,
            // no copy), as redb's guard is; Keel copies into a reused buffer.
            for &i in ids {
                let checked = st
                    .query_row(params![&key(i)[..]], |r| {
                        Ok(check("sqlite", i, Some(r.get_ref(0)?.as_blob()?)))
                    })
                    .optional()
                    .map_err(err)?;
                checked.unwrap_or_else(|| check("sqlite", i, None))?;
            }
            Ok(())
        })
    }

    fn ranges(&self, starts: &[u64], len: usize) -> Result<u64, Failure> {
        self.read(|c| {
            let mut st = c.prepare_cached(RANGE).map_err(err)?;
            let mut n = 0;
            for &s in starts {
                let mut rows = st.query(params![&key(s)[..], len as i64]).map_err(err)?;
                while let Some(row) = rows.next().map_err(err)? {
                    // Borrowed blobs, no copy (module docs of `super::store`).
                    let k = row
                        .get_ref(0)
                        .map_err(err)?
                        .as_blob()
                        .map_err(|e| err(e.into()))?;
                    let v = row
                        .get_ref(1)
                        .map_err(err)?
                        .as_blob()
                        .map_err(|e| err(e.into()))?;
                    std::hint::black_box((k, v));
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    fn delete(&self, ids: Range<u64>) -> Result<u64, Failure> {
        self.write(|c| {
            let mut st = c.prepare_cached(DELETE).map_err(err)?;
            let mut found = 0;
            for i in ids {
                found += st.execute(params![&key(i)[..]]).map_err(err)? as u64;
            }
            Ok(found)
        })
    }

    fn checkpoint(&self) -> Result<(), Failure> {
        self.writer
            .lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The settings line names the page size and memory mapping the
    /// database really has, as SQLite reports them.
    #[test]
    fn settings_name_the_page_size_and_mmap() {
        let tmp = tempfile::tempdir().unwrap();
        let kv = SqliteKv::open(tmp.path(), 1 << 20).unwrap();
        let c = Connection::open(tmp.path().join("kv.sqlite")).unwrap();
        let page: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        let settings = kv.settings();
        let get = |k: &str| {
            settings
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("page_size"), Some(format!("{page} B")));
        assert!(
            get("mmap_size").is_some_and(|v| v.starts_with("0 ")),
            "{settings:?}"
        );
        assert_eq!(
            get("cache_size").as_deref(),
            Some("-1024 (KiB) per connection")
        );
    }
}
