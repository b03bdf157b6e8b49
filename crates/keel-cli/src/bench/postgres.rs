//! PostgreSQL as a peer: its own throwaway cluster (see [`pg_cluster`]) with
//! `fsync=on`, `synchronous_commit=on`, the default `wal_sync_method`, and
//! `shared_buffers` of the run's cache budget; one connection per thread
//! through the synchronous `postgres` crate, prepared statements.
//!
//! Bulk loads send each 10,000-row transaction as one statement over
//! `unnest` of two arrays (the client/server round trip per row would
//! otherwise dominate), still one transaction per batch.
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

use std::path::Path;
use std::time::Instant;

use parking_lot::Mutex;
use postgres::{Client, Statement};

use super::engine::{Engine, EngineKind, Recovered, Session, SweepPoint, proc_write_bytes};
use super::measure::{OpenBox, TimedOp};
use super::pg_cluster::{Cluster, find_bindir};
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
        let e = PostgresEngine {
            cluster: Mutex::new(cluster),
            settings,
            session_settings: Mutex::new(Vec::new()),
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
