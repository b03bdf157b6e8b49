//! PostgreSQL as a peer: its own throwaway cluster (see [`pg_cluster`]) with
//! `fsync=on`, `synchronous_commit=on`, the default `wal_sync_method`, and
//! `shared_buffers` of the run's cache budget; one connection per thread
//! through the synchronous `postgres` crate, prepared statements.
//!
//! Bulk loads send each 10,000-row transaction as one statement over
//! `unnest` of two arrays (the client/server round trip per row would
//! otherwise dominate), still one transaction per batch.
//!
//! [`pg_cluster`]: super::pg_cluster

use std::path::Path;
use std::time::Instant;

use parking_lot::Mutex;
use postgres::{Client, Statement};

use super::engine::{Engine, EngineKind, Recovered, Session, proc_write_bytes};
use super::pg_cluster::{Cluster, find_bindir};
use crate::Failure;

fn err(e: postgres::Error) -> Failure {
    let mut msg = format!("postgres: {e}");
    if let Some(db) = e.as_db_error() {
        msg = format!("postgres: {}", db.message());
    }
    Failure(msg)
}

/// A running cluster with the bench table.
pub struct PostgresEngine {
    cluster: Mutex<Cluster>,
    settings: Vec<(String, String)>,
}

impl PostgresEngine {
    /// Creates and starts a cluster in `dir`; `None` when the server binaries
    /// are not installed.
    pub fn open(
        dir: &Path,
        cache_bytes: u64,
        max_sessions: usize,
    ) -> Result<Option<PostgresEngine>, Failure> {
        let Some(bindir) = find_bindir() else {
            return Ok(None);
        };
        let conf = [
            ("listen_addresses", "''".to_string()),
            ("fsync", "on".into()),
            ("synchronous_commit", "on".into()),
            ("full_page_writes", "on".into()),
            (
                "shared_buffers",
                format!("'{}kB'", (cache_bytes / 1024).max(128)),
            ),
            ("max_connections", (max_sessions + 10).max(20).to_string()),
            ("logging_collector", "off".into()),
        ];
        let mut cluster = Cluster::create(bindir.clone(), dir, &conf)?;
        cluster.start()?;
        let mut c = cluster.connect().map_err(err)?;
        let show = |c: &mut Client, k: &str| -> Result<String, Failure> {
            let row = c.query_one(&format!("SHOW {k}"), &[]).map_err(err)?;
            Ok(row.get(0))
        };
        let mut settings = vec![
            ("version".into(), show(&mut c, "server_version")?),
            ("bindir".into(), bindir.display().to_string()),
            (
                "server user".into(),
                cluster.run_as().unwrap_or("(current user)").to_string(),
            ),
        ];
        for k in [
            "listen_addresses",
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "full_page_writes",
            "shared_buffers",
            "max_connections",
        ] {
            settings.push((k.to_string(), show(&mut c, k)?));
        }
        settings.push((
            "table".into(),
            "bench(id bigint PRIMARY KEY, payload bytea NOT NULL)".into(),
        ));
        let e = PostgresEngine {
            cluster: Mutex::new(cluster),
            settings,
        };
        e.reset()?;
        Ok(Some(e))
    }

    fn client(&self) -> Result<Client, Failure> {
        self.cluster.lock().connect().map_err(err)
    }
}

impl Engine for PostgresEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Postgres
    }

    fn settings(&self) -> Vec<(String, String)> {
        self.settings.clone()
    }

    fn session(&self) -> Result<Box<dyn Session>, Failure> {
        let mut client = self.client()?;
        let insert = client
            .prepare("INSERT INTO bench (id, payload) VALUES ($1, $2)")
            .map_err(err)?;
        let batch = client
            .prepare(
                "INSERT INTO bench (id, payload) \
                 SELECT * FROM unnest($1::bigint[], $2::bytea[])",
            )
            .map_err(err)?;
        let read = client
            .prepare("SELECT payload FROM bench WHERE id = $1")
            .map_err(err)?;
        Ok(Box::new(PgSession {
            client,
            insert,
            batch,
            read,
        }))
    }

    fn reset(&self) -> Result<(), Failure> {
        self.client()?
            .batch_execute(
                "DROP TABLE IF EXISTS bench;
                 CREATE TABLE bench (id bigint PRIMARY KEY, payload bytea NOT NULL);
                 CHECKPOINT;",
            )
            .map_err(err)
    }

    fn checkpoint(&self) -> Result<(), Failure> {
        self.client()?.batch_execute("CHECKPOINT").map_err(err)
    }

    fn bytes_written(&self) -> Option<u64> {
        let pids = self.cluster.lock().pids();
        if pids.is_empty() {
            return None;
        }
        pids.iter().map(|p| proc_write_bytes(p)).sum()
    }

    fn crash_recover(&self, wal_bytes: u64) -> Result<Recovered, Failure> {
        let mut c = self.client()?;
        c.batch_execute("CHECKPOINT").map_err(err)?;
        let start: String = c
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .map_err(err)?
            .get(0);
        let batch = c
            .prepare(
                "INSERT INTO bench (id, payload) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
            )
            .map_err(err)?;
        let payload = super::engine::payload();
        let mut next: i64 = 1 << 40;
        let written = loop {
            let ids: Vec<i64> = (next..next + 10_000).collect();
            let payloads: Vec<&[u8]> = ids.iter().map(|_| payload.as_slice()).collect();
            c.execute(&batch, &[&ids, &payloads]).map_err(err)?;
            next += 10_000;
            let row = c
                .query_one(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint",
                    &[&start],
                )
                .map_err(err)?;
            let w: i64 = row.get(0);
            if w as u64 >= wal_bytes {
                break w as u64;
            }
        };
        drop(c);
        let mut cluster = self.cluster.lock();
        cluster.stop("immediate")?;
        let t = Instant::now();
        cluster.start()?;
        let secs = t.elapsed().as_secs_f64();
        drop(cluster);
        self.reset()?;
        Ok(Recovered {
            wal_bytes: written,
            secs,
        })
    }
}

struct PgSession {
    client: Client,
    insert: Statement,
    batch: Statement,
    read: Statement,
}

impl Session for PgSession {
    fn commit_one(&mut self, id: u64, payload: &[u8]) -> Result<(), Failure> {
        self.client
            .execute(&self.insert, &[&(id as i64), &payload])
            .map_err(err)?;
        Ok(())
    }

    fn insert_batch(&mut self, first_id: u64, rows: u64, payload: &[u8]) -> Result<(), Failure> {
        let ids: Vec<i64> = (first_id as i64..(first_id + rows) as i64).collect();
        let payloads: Vec<&[u8]> = ids.iter().map(|_| payload).collect();
        self.client
            .execute(&self.batch, &[&ids, &payloads])
            .map_err(err)?;
        Ok(())
    }

    fn point_read(&mut self, id: u64) -> Result<bool, Failure> {
        let rows = self
            .client
            .query(&self.read, &[&(id as i64)])
            .map_err(err)?;
        Ok(!rows.is_empty())
    }
}
