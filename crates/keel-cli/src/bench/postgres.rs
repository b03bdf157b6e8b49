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
//! In the commit suite each commit is one `INSERT` in autocommit, so it
//! pays a client/server round trip over the Unix socket on top of the WAL
//! flush; [`Engine::round_trip`] measures that floor (`SELECT 1` on one
//! connection). PostgreSQL's own group commit is tuned by `commit_delay` (µs
//! a committing backend sleeps before flushing, so others' commit records
//! join the flush) and `commit_siblings` (the delay applies only while at
//! least that many other transactions are active); the suite sweeps
//! [`COMMIT_DELAYS_US`] × [`COMMIT_SIBLINGS`] with `SET` on each new session
//! and reports the best point (see [`sweep_points`]).
//!
//! [`pg_cluster`]: super::pg_cluster
//! [`pg_wire`]: super::pg_wire
//! [`Cluster::kill`]: super::pg_cluster::Cluster::kill

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use postgres::{Client, Statement};

use super::engine::{
    BATCH_ROWS, Engine, EngineKind, Recovered, Session, SweepPoint, proc_write_bytes,
};
use super::measure::{OpenBox, TimedOp};
use super::pg_cluster::{Cluster, find_bindir};
use super::pg_wire::{Tid, copy_stream};
use crate::Failure;

/// `commit_delay` values the commit suite sweeps, in µs.
pub const COMMIT_DELAYS_US: [u32; 4] = [0, 10, 50, 200];
/// `commit_siblings` values the commit suite sweeps.
pub const COMMIT_SIBLINGS: [u32; 2] = [1, 5];
/// The settings a sweep point may carry (each applied with `SET`).
const SWEPT: [&str; 2] = ["commit_delay", "commit_siblings"];

/// The sweep points at `committers`: `commit_delay=0` once (siblings have
/// no effect without a delay), then every delay above 0 with every
/// `commit_siblings` that `committers` can reach. PostgreSQL delays only
/// when at least `commit_siblings` *other* transactions are active, which N
/// committers reach only when `commit_siblings <= N - 1`; any other point
/// runs exactly as `commit_delay=0` does. At one committer only the first
/// point is left.
pub fn sweep_points(committers: usize) -> Vec<SweepPoint> {
    let point = |delay: u32, siblings: u32| {
        vec![
            ("commit_delay".to_string(), delay.to_string()),
            ("commit_siblings".to_string(), siblings.to_string()),
        ]
    };
    let mut out = vec![point(0, 5)];
    for delay in COMMIT_DELAYS_US.into_iter().filter(|d| *d > 0) {
        for siblings in COMMIT_SIBLINGS {
            if (siblings as usize) < committers {
                out.push(point(delay, siblings));
            }
        }
    }
    out
}

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
    /// Settings every new session applies with `SET` (a sweep point).
    session_settings: Mutex<SweepPoint>,
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
            "commit_delay",
            "commit_siblings",
        ] {
            settings.push((k.to_string(), show(&mut c, k)?));
        }
        settings.push((
            "table".into(),
            "bench(id bigint PRIMARY KEY, payload bytea NOT NULL)".into(),
        ));
        settings.push((
            "commit".into(),
            "one INSERT in autocommit: one round trip over the Unix socket \
             (measured: SELECT 1) plus the WAL flush; commit_delay x commit_siblings \
             swept per committer count, best reported"
                .into(),
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
            session_settings: Mutex::new(Vec::new()),
            ctids: Arc::new(RwLock::new(Vec::new())),
        };
        e.reset()?;
        Ok(Some(e))
    }

    /// A new connection with the current sweep point applied.
    fn client(&self) -> Result<Client, Failure> {
        let mut c = self.cluster.lock().connect().map_err(err)?;
        for (k, v) in self.session_settings.lock().iter() {
            c.batch_execute(&format!("SET {k} = '{v}'")).map_err(err)?;
        }
        Ok(c)
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

    fn commit_sweep(&self, committers: usize) -> Vec<SweepPoint> {
        sweep_points(committers)
    }

    fn apply_sweep_point(&self, point: &SweepPoint) -> Result<(), Failure> {
        for (k, v) in point {
            if !SWEPT.contains(&k.as_str()) || v.parse::<u32>().is_err() {
                return Err(Failure(format!("postgres: cannot sweep {k}={v}")));
            }
        }
        *self.session_settings.lock() = point.clone();
        Ok(())
    }

    fn round_trip(&self) -> Option<OpenBox<'_>> {
        Some(Box::new(move || {
            let mut client = self.client()?;
            let select = client.prepare("SELECT 1").map_err(err)?;
            Ok(Box::new(RoundTrip { client, select }) as Box<dyn TimedOp>)
        }))
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

/// One connection running `SELECT 1`: a round trip with no work.
struct RoundTrip {
    client: Client,
    select: Statement,
}

impl TimedOp for RoundTrip {
    fn run(&mut self, _id: u64, _payload: &[u8]) -> Result<(), Failure> {
        let one: i32 = self
            .client
            .query_one(&self.select, &[])
            .map_err(err)?
            .get(0);
        if one != 1 {
            return Err(Failure(format!("postgres: SELECT 1 returned {one}")));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn delays(points: &[SweepPoint]) -> Vec<(String, String)> {
        points
            .iter()
            .map(|p| (p[0].1.clone(), p[1].1.clone()))
            .collect()
    }

    #[test]
    fn sweep_points_are_those_that_can_apply() {
        let s = |d: &str, n: &str| (d.to_string(), n.to_string());
        assert_eq!(delays(&sweep_points(1)), vec![s("0", "5")]);
        assert_eq!(
            delays(&sweep_points(4)),
            vec![s("0", "5"), s("10", "1"), s("50", "1"), s("200", "1")]
        );
        let all = sweep_points(64);
        assert_eq!(all.len(), 1 + 3 * 2);
        assert!(
            all.iter()
                .all(|p| p[0].0 == "commit_delay" && p[1].0 == "commit_siblings")
        );
        assert!(delays(&all).contains(&s("200", "5")));
        // 6 committers: 5 others can be active, so siblings 5 applies.
        assert_eq!(sweep_points(6).len(), 7);
        assert_eq!(sweep_points(5).len(), 4);
    }
}
