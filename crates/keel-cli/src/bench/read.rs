//! The read suite: random point reads on one session per engine, every
//! engine with the same cache budget.
//!
//! - **By address, for every engine.** A read fetches the row at its
//!   physical address: Keel by TupleId, PostgreSQL by `ctid` (a Tid Scan),
//!   SQLite by rowid (its id, the `INTEGER PRIMARY KEY`, is its address: a
//!   descent of the table's B-tree). The id → address maps for Keel and
//!   PostgreSQL are kept by the bench client, outside both engines' caches
//!   alike, and no engine reads an index beside the table.
//! - **Working sets:** inside the cache (half the budget, in logical row
//!   bytes) and at 4× the budget. Warm: after loading, a checkpoint and a
//!   warm-up, reads run for `--secs`; the kernel's page cache is not
//!   limited, so "4x cache" measures reads that miss the engine's cache but
//!   mostly hit the kernel's.
//! - **Cold** (on the 4× working set): before each window the engine is
//!   shut down ([`Engine::pause`]), the kernel's cache of its files is
//!   emptied ([`pagecache`]) and the engine is started again with an empty
//!   cache ([`Engine::resume`]: Keel's database reopened, PostgreSQL's
//!   server restarted, a new SQLite connection); then the first
//!   [`cold_reads`] reads are timed, so their misses reach the disk.
//! - **Interleaved repeats:** every engine is loaded first; then repeat 1
//!   of every engine runs, then repeat 2, …, so each pairwise ratio
//!   compares windows measured moments apart; each repeat starts one
//!   engine later than the last ([`rotation`]), so none always runs first.
//!
//! [`rotation`]: super::commit::rotation
//! - Beside each window, the bytes the block device read per point read
//!   ([`blockdev`]; device-wide), which shows where the reads were served.
//!   The disk's sequential read rate (O_DIRECT) is measured beside it all.
//!
//! [`pagecache`]: super::pagecache
//! [`blockdev`]: super::blockdev

use super::Ctx;
use super::args::Suite;
use super::blockdev::{self, BlockDev};
use super::commit::pairwise;
use super::disk::sequential_read;
use super::engine::{BATCH_ROWS, Engine, EngineKind, ROW_BYTES, Session, payload};
use super::measure::{self, Rate};
use super::pagecache;
use super::report::Figure;
use crate::Failure;

/// The two working sets: (case name, logical bytes).
fn working_sets(cache: u64) -> [(&'static str, u64); 2] {
    [("in cache", cache / 2), ("4x cache", cache * 4)]
}

/// Reads timed after each cold start.
pub fn cold_reads(quick: bool) -> u64 {
    if quick { 500 } else { 2_000 }
}

/// One measured window.
struct Window {
    rate: Rate,
    /// Bytes the block device read per point read (NaN: no device).
    device_bytes_per_read: f64,
}

/// Runs `f`, reading the device's counters around it.
fn window(
    dev: Option<&BlockDev>,
    f: impl FnOnce() -> Result<Rate, Failure>,
) -> Result<Window, Failure> {
    let counters = || dev.map(|d| d.counters().map_err(Failure)).transpose();
    let before = counters()?;
    let rate = f()?;
    let after = counters()?;
    let device_bytes_per_read = match (before, after) {
        (Some(a), Some(b)) if rate.ops > 0 => a.delta(b).read_bytes as f64 / rate.ops as f64,
        _ => f64::NAN,
    };
    Ok(Window {
        rate,
        device_bytes_per_read,
    })
}

/// Runs the read suite.
pub fn run(ctx: &mut Ctx) -> Result<(), Failure> {
    let engines = ctx.engines(Suite::Read, 1)?;
    let readers: Vec<&dyn Engine> = engines
        .iter()
        .map(|e| e.as_ref())
        .filter(|e| e.kind() != EngineKind::Disk)
        .collect();
    let dev = announce(ctx);
    let dev = dev.as_ref();
    let repeat = u64::from(ctx.settings.repeat);
    ctx.out.plan(repeat * (1 + 3 * readers.len() as u64));
    ctx.out.line(
        "\n| engine | working set | rows | reads/s | p50 µs | p99 µs | device KiB/read | × best peer |\n\
         |---|---|---:|---:|---:|---:|---:|---:|",
    );
    if engines.iter().any(|e| e.kind() == EngineKind::Disk) {
        disk_rate(ctx)?;
    }
    let kinds: Vec<EngineKind> = readers.iter().map(|e| e.kind()).collect();
    let secs = ctx.settings.secs;
    for (set, bytes) in working_sets(ctx.settings.cache_bytes) {
        let rows = (bytes / ROW_BYTES).max(1);
        let mut sessions = Vec::new();
        for e in &readers {
            sessions.push(load(ctx, *e, set, rows).map_err(|f| named(*e, f))?);
        }
        let warm = interleave(ctx, &readers, set, |rep, i| {
            let s = sessions[i].as_mut();
            window(dev, || measure::reads(s, rows, secs, 2 + u64::from(rep)))
        })?;
        record(ctx, set, rows, &kinds, &warm);
        if set == "4x cache" {
            drop(sessions);
            let n = cold_reads(ctx.settings.quick);
            let cold = interleave(ctx, &readers, "cold", |rep, i| {
                cold_window(ctx, readers[i], rows, n, dev, 100 + u64::from(rep))
            })?;
            record(ctx, &format!("cold, first {n} reads"), rows, &kinds, &cold);
        }
    }
    Ok(())
}

/// Prints and records how the suite reads and measures; the block device
/// when there is one.
fn announce(ctx: &mut Ctx) -> Option<BlockDev> {
    let dev = blockdev::find(&ctx.root);
    let notes = [
        "read: every engine reads by address (Keel TupleId, PostgreSQL ctid, SQLite rowid); \
         the id -> address maps are kept by the bench client, outside every cache"
            .to_string(),
        format!("read: cold windows: {}", pagecache::METHOD),
        match &dev {
            Ok(d) => format!("read: device reads per point read from {}", d.describe()),
            Err(why) => format!("read: no device read counts ({why})"),
        },
    ];
    for n in notes {
        ctx.out.line(&format!("  {n}"));
        ctx.report.notes.push(n);
    }
    dev.ok()
}

/// Runs `measure(repeat, engine index)` for repeat 1 of every engine, then
/// repeat 2, …; the windows per engine.
fn interleave(
    ctx: &Ctx,
    readers: &[&dyn Engine],
    what: &str,
    mut measure: impl FnMut(u32, usize) -> Result<Window, Failure>,
) -> Result<Vec<Vec<Window>>, Failure> {
    let mut all: Vec<Vec<Window>> = readers.iter().map(|_| Vec::new()).collect();
    for rep in 0..ctx.settings.repeat {
        for i in super::commit::rotation(rep as usize, readers.len()) {
            let e = &readers[i];
            ctx.out.step(&format!(
                "read: {} {what} (repeat {}/{})",
                e.kind().name(),
                rep + 1,
                ctx.settings.repeat
            ));
            all[i].push(measure(rep, i).map_err(|f| named(*e, f))?);
            ctx.out.done();
        }
    }
    Ok(all)
}

fn named(e: &dyn Engine, f: Failure) -> Failure {
    Failure(format!("read suite, {}: {}", e.kind().name(), f.0))
}

/// Loads `rows` rows into `e`, checkpoints, learns the addresses and warms
/// up; returns the session the reads run on.
fn load(ctx: &Ctx, e: &dyn Engine, set: &str, rows: u64) -> Result<Box<dyn Session>, Failure> {
    let name = e.kind().name();
    ctx.out
        .step(&format!("read: loading {rows} rows into {name}"));
    e.reset()?;
    let mut s = e.session()?;
    measure::load(s.as_mut(), rows, BATCH_ROWS, &payload())?;
    e.checkpoint()?;
    e.prepare_reads()?;
    ctx.out.step(&format!("read: {name} {set} warm-up"));
    measure::reads(s.as_mut(), rows, ctx.settings.secs / 2.0, 1)?;
    Ok(s)
}

/// A cold start of `e` (shut down, its files dropped from the kernel's
/// cache, started again) and its first `n` reads.
fn cold_window(
    ctx: &Ctx,
    e: &dyn Engine,
    rows: u64,
    n: u64,
    dev: Option<&BlockDev>,
    seed: u64,
) -> Result<Window, Failure> {
    e.pause()?;
    pagecache::drop_dir(&ctx.engine_dir(Suite::Read, e.kind()))?;
    e.resume()?;
    let mut s = e.session()?;
    window(dev, || measure::first_reads(s.as_mut(), rows, n, seed))
}

fn disk_rate(ctx: &mut Ctx) -> Result<(), Failure> {
    let dir = ctx.root.join("read-disk");
    let floor = if ctx.settings.quick {
        16 << 20
    } else {
        64 << 20
    };
    let bytes = (ctx.settings.cache_bytes * 4).max(floor);
    let mut values = Vec::new();
    let mut direct = true;
    for _ in 0..ctx.settings.repeat {
        ctx.out.step("read: disk sequential read");
        let (mb_s, d) = sequential_read(&dir, bytes)?;
        direct &= d;
        values.push(mb_s);
        ctx.out.done();
    }
    let f = Figure {
        suite: "read",
        engine: "disk".into(),
        case: format!(
            "sequential {} MiB{}",
            bytes >> 20,
            if direct { " O_DIRECT" } else { " buffered" }
        ),
        metric: "seq_read_mb_per_s",
        unit: "MB/s",
        values,
    };
    ctx.out.line(&format!(
        "| disk | {} | - | {} MB/s | - | - | - | - |",
        f.case,
        f.text()
    ));
    ctx.report.figures.push(f);
    Ok(())
}

fn record(ctx: &mut Ctx, set: &str, rows: u64, kinds: &[EngineKind], all: &[Vec<Window>]) {
    let per_sec = |w: &[Window]| w.iter().map(|x| x.rate.per_sec).collect::<Vec<_>>();
    let peers: Vec<&Vec<Window>> = kinds
        .iter()
        .zip(all)
        .filter(|(k, _)| k.is_peer())
        .map(|(_, w)| w)
        .collect();
    for (kind, windows) in kinds.iter().zip(all) {
        let fig = |metric: &'static str, unit: &'static str, values: Vec<f64>| Figure {
            suite: "read",
            engine: kind.name().into(),
            case: format!("{set} ({rows} rows)"),
            metric,
            unit,
            values,
        };
        let mut figs = vec![
            fig("reads_per_s", "1/s", per_sec(windows)),
            fig(
                "p50_us",
                "us",
                windows.iter().map(|w| w.rate.p50_us).collect(),
            ),
            fig(
                "p99_us",
                "us",
                windows.iter().map(|w| w.rate.p99_us).collect(),
            ),
            fig(
                "device_kib_per_read",
                "KiB",
                windows
                    .iter()
                    .map(|w| w.device_bytes_per_read / 1024.0)
                    .collect(),
            ),
        ];
        if *kind == EngineKind::Keel && !peers.is_empty() {
            let best: Vec<f64> = (0..windows.len())
                .map(|i| peers.iter().map(|p| p[i].rate.per_sec).fold(0.0, f64::max))
                .collect();
            figs.push(fig("x_best_peer", "x", pairwise(&per_sec(windows), &best)));
        }
        let text = |m: &str| {
            figs.iter()
                .find(|f| f.metric == m)
                .map_or("-".into(), Figure::text)
        };
        ctx.out.line(&format!(
            "| {} | {set} | {rows} | {} | {} | {} | {} | {} |",
            kind.name(),
            text("reads_per_s"),
            text("p50_us"),
            text("p99_us"),
            text("device_kib_per_read"),
            text("x_best_peer"),
        ));
        ctx.report.figures.extend(figs);
    }
}
