//! The insert suite: --rows rows of 100 bytes in transactions of 10,000 on
//! one session: rows/s, and bytes written to storage per logical byte.
//!
//! - **The clock** runs from the first transaction until every row is
//!   durable *and checkpointed*, so every engine ends in the same state,
//!   its data in its data files: after the last commit, Keel's
//!   `checkpoint()`, PostgreSQL's `CHECKPOINT` and SQLite's
//!   `PRAGMA wal_checkpoint(TRUNCATE)` (on its still open connection; it is
//!   closed after the time is taken) all run inside the time, as SQLite's automatic
//!   checkpoints and Keel's and PostgreSQL's own during the load do. The
//!   disk's rows are durable at each batch's fdatasync.
//! - **Bytes written** are the block device's sectors written × 512
//!   ([`super::blockdev`]) from before the first transaction to after the
//!   final checkpoint, with only the measured engine running: every other
//!   engine is shut down ([`Engine::pause`]: PostgreSQL's server stopped,
//!   Keel's database closed) while one is measured. Where the data
//!   directory has no block device the figure falls back to the
//!   processes' `write_bytes` (`/proc/PID/io`), and the output says so.
//! - Each engine runs on its own session; PostgreSQL loads with binary
//!   `COPY` ([`super::postgres`]).
//! - Repeat 1 of every engine runs, then repeat 2, …, each repeat starting
//!   one engine later than the last ([`rotation`]), so none always runs
//!   first (on a disk still busy with the last one's writeback).
//!
//! [`rotation`]: super::commit::rotation

use std::time::Instant;

use super::Ctx;
use super::args::Suite;
use super::blockdev::{self, BlockDev};
use super::commit::pairwise;
use super::engine::{BATCH_ROWS, Engine, EngineKind, ROW_BYTES, payload};
use super::measure;
use super::report::Figure;
use crate::Failure;

struct Insert {
    rows_per_s: f64,
    write_amp: f64,
}

/// Where bytes written are counted.
enum Meter {
    /// The block device under the data directory.
    Device(BlockDev),
    /// The engine processes' `/proc/PID/io` (no block device: why).
    Process(String),
}

impl Meter {
    fn new(ctx: &Ctx) -> Meter {
        match blockdev::find(&ctx.root) {
            Ok(dev) => Meter::Device(dev),
            Err(why) => Meter::Process(why),
        }
    }

    fn describe(&self) -> String {
        match self {
            Meter::Device(d) => d.describe(),
            Meter::Process(why) => format!(
                "no block device ({why}); falling back to the engine processes' \
                 write_bytes in /proc/PID/io (Keel, SQLite and the disk share the \
                 bench's own process counter)"
            ),
        }
    }

    /// Bytes written so far, when measurable.
    fn written(&self, e: &dyn Engine) -> Result<Option<u64>, Failure> {
        match self {
            Meter::Device(d) => d.counters().map(|c| Some(c.written_bytes)).map_err(Failure),
            Meter::Process(_) => Ok(e.bytes_written()),
        }
    }
}

fn one(e: &dyn Engine, rows: u64, meter: &Meter) -> Result<Insert, Failure> {
    e.resume()?;
    e.reset()?;
    let mut s = e.session()?;
    let payload = payload();
    let before = meter.written(e)?;
    let t = Instant::now();
    measure::load(s.as_mut(), rows, BATCH_ROWS, &payload)?;
    drop(s);
    e.checkpoint()?;
    let secs = t.elapsed().as_secs_f64();
    let after = meter.written(e)?;
    e.pause()?;
    let written = match (before, after) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64,
        _ => f64::NAN,
    };
    Ok(Insert {
        rows_per_s: rows as f64 / secs.max(1e-9),
        write_amp: written / (rows * ROW_BYTES) as f64,
    })
}

/// Runs the insert suite.
pub fn run(ctx: &mut Ctx) -> Result<(), Failure> {
    let engines = ctx.engines(Suite::Insert, 1)?;
    let (rows, repeat) = (ctx.settings.rows, ctx.settings.repeat);
    let meter = Meter::new(ctx);
    let how = format!("insert: bytes written measured at {}", meter.describe());
    ctx.out.line(&format!("  {how}"));
    ctx.report.notes.push(how);
    for e in &engines {
        e.pause()?;
    }
    ctx.out.plan(engines.len() as u64 * u64::from(repeat));
    let mut results: Vec<Vec<Insert>> = engines.iter().map(|_| Vec::new()).collect();
    for rep in 0..repeat {
        for i in super::commit::rotation(rep as usize, engines.len()) {
            let e = &engines[i];
            let name = e.kind().name();
            ctx.out.step(&format!(
                "insert: {name} {rows} rows (repeat {}/{repeat})",
                rep + 1
            ));
            let r = one(e.as_ref(), rows, &meter)
                .map_err(|f| Failure(format!("insert suite, {name}: {}", f.0)))?;
            results[i].push(r);
            ctx.out.done();
        }
    }
    let kinds: Vec<EngineKind> = engines.iter().map(|e| e.kind()).collect();
    record(ctx, rows, &kinds, &results);
    Ok(())
}

/// The figures and table rows of every engine.
fn record(ctx: &mut Ctx, rows: u64, kinds: &[EngineKind], results: &[Vec<Insert>]) {
    ctx.out.line(
        "\n| engine | rows | rows/s | bytes written per logical byte | × sqlite |\n\
         |---|---:|---:|---:|---:|",
    );
    let rate = |i: usize| results[i].iter().map(|r| r.rows_per_s).collect::<Vec<_>>();
    let sqlite = kinds.iter().position(|k| *k == EngineKind::Sqlite);
    for (i, kind) in kinds.iter().enumerate() {
        let fig = |metric: &'static str, unit: &'static str, values: Vec<f64>| Figure {
            suite: "insert",
            engine: kind.name().into(),
            case: format!("rows={rows}"),
            metric,
            unit,
            values,
        };
        let mut figs = vec![
            fig("rows_per_s", "1/s", rate(i)),
            fig(
                "write_bytes_per_logical_byte",
                "x",
                results[i].iter().map(|r| r.write_amp).collect(),
            ),
        ];
        if let Some(sq) = sqlite.filter(|&s| s != i) {
            figs.push(fig("x_sqlite", "x", pairwise(&rate(i), &rate(sq))));
        }
        let text = |m: &str| {
            figs.iter()
                .find(|f| f.metric == m)
                .map_or("-".into(), Figure::text)
        };
        ctx.out.line(&format!(
            "| {} | {rows} | {} | {} | {} |",
            kind.name(),
            text("rows_per_s"),
            text("write_bytes_per_logical_byte"),
            text("x_sqlite"),
        ));
        ctx.report.figures.extend(figs);
    }
}
