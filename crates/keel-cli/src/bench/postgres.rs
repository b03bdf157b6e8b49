//! PostgreSQL as a peer: its own throwaway cluster (see [`pg_cluster`]) with
//! `fsync=on`, `synchronous_commit=on`, the default `wal_sync_method`, and
//! `shared_buffers` of the run's cache budget; one connection per thread
//! through the synchronous `postgres` crate, prepared statements.
//!
//! - Bulk loads use `COPY bench FROM STDIN (FORMAT binary)`, as
//!   PostgreSQL's users load data: one COPY per 10,000-row batch, each its
//!   own durable transaction, the rows encoded by [`pg_wire`].
//! - Point reads are by physical address, as Keel's and SQLite's are: once
//!   rows are loaded, [`Engine::prepare_reads`] fetches every row's `ctid`
//!   into the bench's id → ctid map (kept in the client, outside
//!   `shared_buffers`, as Keel's id → TupleId map is kept outside its
//!   pool), and a read is `WHERE ctid = $1` (a Tid Scan, no index).
//! - The crash is SIGKILL to every server process ([`Cluster::kill`]);
//!   recovery is timed from launching the server until a first `INSERT`
//!   commits on a new connection (connection attempts every millisecond).
//!   PostgreSQL ends crash recovery with a checkpoint it waits for before
//!   accepting connections, so that checkpoint is inside the time.
//!
//! [`pg_cluster`]: super::pg_cluster
//! [`pg_wire`]: super::pg_wire
//! [`Cluster::kill`]: super::pg_cluster::Cluster::kill

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use postgres::{Client, Statement};

use super::engine::{BATCH_ROWS, Engine, EngineKind, Recovered, Session, proc_write_bytes};
use super::pg_cluster::{Cluster, find_bindir};
use super::pg_wire::{Tid, copy_stream};
use crate::Failure;

/// The bulk load statement.
const COPY_IN: &str = "COPY bench (id, payload) FROM STDIN (FORMAT binary)";
/// Rows fetched per round trip when learning every row's ctid.
const CTID_FETCH_ROWS: i32 = 50_000;

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
    /// The ctid of row `id`, learnt by `prepare_reads`.
    ctids: Arc<RwLock<Vec<Tid>>>,
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
        let (_, mut c) = cluster.start()?;
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
        settings.push((
            "bulk load".into(),
            format!("{COPY_IN}, one per {BATCH_ROWS}-row transaction"),
        ));
        settings.push((
            "point reads".into(),
            "by ctid (Tid Scan); the id -> ctid map is kept by the bench client".into(),
        ));
        let e = PostgresEngine {
            cluster: Mutex::new(cluster),
            settings,
            ctids: Arc::new(RwLock::new(Vec::new())),
        };
        e.reset()?;
        Ok(Some(e))
    }

    fn client(&self) -> Result<Client, Failure> {
        self.cluster.lock().connect().map_err(err)
    }

    /// A checkpoint, then COPY batches until the log has grown by
    /// `wal_bytes`; returns how much it grew.
    fn write_log(&self, wal_bytes: u64) -> Result<u64, Failure> {
        let mut c = self.client()?;
        c.batch_execute("CHECKPOINT").map_err(err)?;
        let start: String = c
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .map_err(err)?
            .get(0);
        let mut s = self.session()?;
        let payload = super::engine::payload();
        let mut next = 0;
        loop {
            s.insert_batch(next, BATCH_ROWS, &payload)?;
            next += BATCH_ROWS;
            let row = c
                .query_one(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint",
                    &[&start],
                )
                .map_err(err)?;
            let w: i64 = row.get(0);
            if w as u64 >= wal_bytes {
                return Ok(w as u64);
            }
        }
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
        let read = client
            .prepare("SELECT id, payload FROM bench WHERE ctid = $1::text::tid")
            .map_err(err)?;
        Ok(Box::new(PgSession {
            client,
            insert,
            read,
            ctids: self.ctids.clone(),
        }))
    }

    fn reset(&self) -> Result<(), Failure> {
        self.ctids.write().clear();
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

    fn pause(&self) -> Result<(), Failure> {
        self.cluster.lock().stop("fast")
    }

    fn resume(&self) -> Result<(), Failure> {
        self.cluster.lock().start().map(|_| ())
    }

    fn prepare_reads(&self) -> Result<(), Failure> {
        let mut c = self.client()?;
        let mut tx = c.transaction().map_err(err)?;
        let portal = tx.bind("SELECT id, ctid FROM bench", &[]).map_err(err)?;
        let mut map = self.ctids.write();
        map.clear();
        loop {
            let rows = tx.query_portal(&portal, CTID_FETCH_ROWS).map_err(err)?;
            if rows.is_empty() {
                break;
            }
            for r in rows {
                let id: i64 = r.try_get(0).map_err(err)?;
                let tid: Tid = r.try_get(1).map_err(err)?;
                let i = usize::try_from(id)
                    .map_err(|_| Failure(format!("postgres: row id {id} out of range")))?;
                if map.len() <= i {
                    map.resize(i + 1, Tid::default());
                }
                map[i] = tid;
            }
        }
        tx.commit().map_err(err)
    }

    fn crash_recover(&self, wal_bytes: u64) -> Result<Recovered, Failure> {
        let written = self.write_log(wal_bytes)?;
        let mut cluster = self.cluster.lock();
        cluster.kill()?;
        let (launched, mut c) = cluster.start()?;
        c.execute(
            "INSERT INTO bench (id, payload) VALUES ($1, $2)",
            &[&-1i64, &super::engine::payload()],
        )
        .map_err(err)?;
        let secs = launched.elapsed().as_secs_f64();
        drop((c, cluster));
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
    read: Statement,
    ctids: Arc<RwLock<Vec<Tid>>>,
}

impl Session for PgSession {
    fn commit_one(&mut self, id: u64, payload: &[u8]) -> Result<(), Failure> {
        self.client
            .execute(&self.insert, &[&(id as i64), &payload])
            .map_err(err)?;
        Ok(())
    }

    fn insert_batch(&mut self, first_id: u64, rows: u64, payload: &[u8]) -> Result<(), Failure> {
        let data = copy_stream(first_id as i64, rows as i64, payload)
            .map_err(|e| Failure(format!("postgres: {e}")))?;
        let mut w = self.client.copy_in(COPY_IN).map_err(err)?;
        w.write_all(&data)
            .map_err(|e| Failure(format!("postgres: COPY: {e}")))?;
        let n = w.finish().map_err(err)?;
        if n != rows {
            return Err(Failure(format!(
                "postgres: COPY loaded {n} rows, not {rows}"
            )));
        }
        Ok(())
    }

    fn point_read(&mut self, id: u64) -> Result<bool, Failure> {
        let tid = self.ctids.read().get(id as usize).copied();
        let Some(tid) = tid.filter(|t| t.offset != 0) else {
            return Ok(false);
        };
        let rows = self.client.query(&self.read, &[&tid.text()]).map_err(err)?;
        Ok(rows.first().and_then(|r| r.try_get::<_, i64>(0).ok()) == Some(id as i64))
    }
}
