//! The [`Engine`] trait every contestant implements, and how each is set up.
//!
//! An engine is set up once per suite on a fresh data directory with the
//! run's cache budget; each committer or reader thread opens its own
//! [`Session`] (one connection per thread). Every engine stores the same row:
//! an 8-byte id and a [`PAYLOAD_BYTES`]-byte payload, and a commit returns
//! only once it is durable.
//!
//! Point reads are by physical address for every engine (Keel's TupleId,
//! PostgreSQL's ctid, SQLite's rowid), the id → address maps kept by the
//! bench client. [`Engine::pause`] and [`Engine::resume`] shut an engine
//! down and start it again with an empty cache: the insert suite runs only
//! the measured engine, the read suite's cold windows start from nothing.

use std::path::Path;

use super::args::Suite;
use super::measure::OpenBox;
use crate::Failure;

/// Bytes of payload per row.
pub const PAYLOAD_BYTES: usize = 100;
/// Logical bytes per row: the 8-byte id and the payload.
pub const ROW_BYTES: u64 = 8 + PAYLOAD_BYTES as u64;
/// Rows per transaction in the insert suite (and when loading rows).
pub const BATCH_ROWS: u64 = 10_000;

/// The contestants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EngineKind {
    /// Keel itself.
    Keel,
    /// SQLite (bundled, through rusqlite).
    Sqlite,
    /// A throwaway PostgreSQL cluster.
    Postgres,
    /// redb (the crate, in this process): only in the kv suite.
    Redb,
    /// Keel with its log archived continuously (keel-archive's archiver,
    /// to a local directory): only in the commit suite, where it is
    /// compared with Keel alone in the same repeat.
    KeelArchived,
    /// The disk's own ceilings: commit loops with no engine work (pwrite +
    /// fdatasync, O_DSYNC, O_DIRECT|O_DSYNC, and the group-commit reference
    /// loop in the commit suite), appends, sequential reads.
    Disk,
}

impl EngineKind {
    /// Every engine, in the order they run.
    pub const ALL: [EngineKind; 4] = [
        EngineKind::Disk,
        EngineKind::Keel,
        EngineKind::Sqlite,
        EngineKind::Postgres,
    ];

    /// Every engine --engines names: [`ALL`](Self::ALL), redb and Keel
    /// archived.
    pub const NAMED: [EngineKind; 6] = [
        EngineKind::Disk,
        EngineKind::Keel,
        EngineKind::Sqlite,
        EngineKind::Postgres,
        EngineKind::Redb,
        EngineKind::KeelArchived,
    ];

    /// The engine's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Keel => "keel",
            EngineKind::Sqlite => "sqlite",
            EngineKind::Postgres => "postgres",
            EngineKind::Redb => "redb",
            EngineKind::KeelArchived => "keel-archived",
            EngineKind::Disk => "disk",
        }
    }

    /// A peer: an engine Keel is compared against (not Keel, not the disk).
    pub fn is_peer(self) -> bool {
        matches!(
            self,
            EngineKind::Sqlite | EngineKind::Postgres | EngineKind::Redb
        )
    }
}

/// What a crash followed by recovery measured.
#[derive(Clone, Copy, Debug)]
pub struct Recovered {
    /// Log written since the last checkpoint, replayed by recovery.
    pub wal_bytes: u64,
    /// From spawning the recovering process (or server) until its first
    /// commit was acknowledged.
    pub secs: f64,
}

/// One point of a settings sweep: (setting, value) pairs.
pub type SweepPoint = Vec<(String, String)>;

/// One set-up engine.
pub trait Engine: Send + Sync {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;
    /// The engine's settings as set up (printed and written to the JSON).
    fn settings(&self) -> Vec<(String, String)>;
    /// Opens a connection for one thread.
    fn session(&self) -> Result<Box<dyn Session>, Failure>;
    /// Replaces the bench table with an empty one.
    fn reset(&self) -> Result<(), Failure>;
    /// Forces everything written so far out to the data files (a checkpoint).
    fn checkpoint(&self) -> Result<(), Failure>;
    /// Bytes this engine has written to storage so far (a running counter,
    /// compared before and after), when it can be measured.
    fn bytes_written(&self) -> Option<u64>;
    /// Writes `wal_bytes` of log after a checkpoint in a process of its
    /// own, SIGKILLs it, and times recovery: from spawning the recovering
    /// process until its first commit is acknowledged.
    fn crash_recover(&self, wal_bytes: u64) -> Result<Recovered, Failure> {
        let _ = wal_bytes;
        Err(Failure(format!("{}: no crash hook", self.kind().name())))
    }
    /// The settings the commit suite sweeps at `committers` (each point is
    /// measured, the best reported); empty: measured as set up.
    fn commit_sweep(&self, committers: usize) -> Vec<SweepPoint> {
        let _ = committers;
        Vec::new()
    }
    /// Applies a point of [`commit_sweep`](Engine::commit_sweep) to every
    /// session opened from now on.
    fn apply_sweep_point(&self, point: &SweepPoint) -> Result<(), Failure> {
        let _ = point;
        Err(Failure(format!(
            "{}: no settings sweep",
            self.kind().name()
        )))
    }
    /// For a client/server engine: opens connections whose operation is
    /// one empty statement (`SELECT 1`), the round trip every statement
    /// pays. `None` for an engine in this process.
    fn round_trip(&self) -> Option<OpenBox<'_>> {
        None
    }
    /// Shuts the engine down cleanly: nothing of it runs or caches, every
    /// file it wrote is closed (a server stopped, a database closed). Every
    /// session must be dropped first.
    fn pause(&self) -> Result<(), Failure> {
        Ok(())
    }
    /// Starts it again after [`Engine::pause`], with an empty cache.
    fn resume(&self) -> Result<(), Failure> {
        Ok(())
    }
    /// Called once rows are loaded and before point reads: an engine whose
    /// sessions read by physical address learns each row's here.
    fn prepare_reads(&self) -> Result<(), Failure> {
        Ok(())
    }
}

/// One connection, used by one thread.
pub trait Session: Send {
    /// Inserts one row and commits it durably.
    fn commit_one(&mut self, id: u64, payload: &[u8]) -> Result<(), Failure>;
    /// Inserts rows `first_id..first_id + rows` in one durable transaction.
    fn insert_batch(&mut self, first_id: u64, rows: u64, payload: &[u8]) -> Result<(), Failure>;
    /// Reads the row with this id; whether it was found.
    fn point_read(&mut self, id: u64) -> Result<bool, Failure>;
}

/// The outcome of setting an engine up for a suite.
pub enum Setup {
    /// Ready to measure.
    Ready(Box<dyn Engine>),
    /// Not part of this suite or not available here: one line saying why.
    Skip(String),
}

/// Sets `kind` up on a fresh directory `dir` with `cache_bytes` of cache.
pub fn setup(
    kind: EngineKind,
    suite: Suite,
    dir: &Path,
    cache_bytes: u64,
    max_sessions: usize,
) -> Result<Setup, Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
    Ok(match kind {
        EngineKind::Disk => Setup::Ready(Box::new(super::disk::DiskEngine::open(dir)?)),
        EngineKind::Keel => Setup::Ready(Box::new(super::keel_engine::KeelEngine::open(
            dir,
            cache_bytes,
            suite == Suite::Recovery,
        )?)),
        EngineKind::Sqlite => Setup::Ready(Box::new(super::sqlite::SqliteEngine::open(
            dir,
            cache_bytes,
        )?)),
        EngineKind::Redb => Setup::Skip("redb takes part in the kv suite only".into()),
        EngineKind::KeelArchived if suite == Suite::Commit => Setup::Ready(Box::new(
            super::keel_engine::KeelEngine::open_archived(dir, cache_bytes)?,
        )),
        EngineKind::KeelArchived => {
            Setup::Skip("keel-archived takes part in the commit suite only".into())
        }
        EngineKind::Postgres => {
            match super::postgres::PostgresEngine::open(dir, cache_bytes, max_sessions)? {
                Some(e) => Setup::Ready(Box::new(e)),
                None => Setup::Skip(
                    "server binaries not installed (scripts/install-peers.sh installs them)".into(),
                ),
            }
        }
    })
}

/// Bytes written to storage by this process so far (`/proc/self/io`).
pub fn process_write_bytes() -> Option<u64> {
    proc_write_bytes("self")
}

/// `write_bytes` of `/proc/PID/io`.
pub fn proc_write_bytes(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The payload every engine stores.
pub fn payload() -> Vec<u8> {
    (0..PAYLOAD_BYTES).map(|i| (i * 7 % 251) as u8).collect()
}
