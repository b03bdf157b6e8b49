//! The read suite: random point reads by key on one session, with the
//! working set inside the cache (half the budget, in logical row bytes) and
//! at 4× the budget; every engine gets the same cache budget. The operating
//! system's page cache is not limited, so "4× cache" measures reads that
//! miss the engine's cache but mostly hit the kernel's. The disk's
//! sequential read rate (O_DIRECT) is measured beside it.

use super::Ctx;
use super::args::Suite;
use super::commit::pairwise;
use super::disk::sequential_read;
use super::engine::{BATCH_ROWS, Engine, EngineKind, ROW_BYTES, payload};
use super::measure;
use super::report::Figure;
use crate::Failure;

/// The two working sets: (case name, logical bytes).
fn working_sets(cache: u64) -> [(&'static str, u64); 2] {
    [("in cache", cache / 2), ("4x cache", cache * 4)]
}

/// Runs the read suite.
pub fn run(ctx: &mut Ctx) -> Result<(), Failure> {
    let engines = ctx.engines(Suite::Read, 1)?;
    let repeat = ctx.settings.repeat;
    ctx.out
        .plan(u64::from(repeat) * (1 + 2 * engines.len() as u64));
    let readers: Vec<&Box<dyn Engine>> = engines
        .iter()
        .filter(|e| e.kind() != EngineKind::Disk)
        .collect();
    ctx.out.line(
        "\n| engine | working set | rows | reads/s | p50 µs | p99 µs | × best peer |\n\
         |---|---|---:|---:|---:|---:|---:|",
    );
    if engines.iter().any(|e| e.kind() == EngineKind::Disk) {
        disk_rate(ctx)?;
    }
    for (set, bytes) in working_sets(ctx.settings.cache_bytes) {
        let rows = (bytes / ROW_BYTES).max(1);
        let mut all: Vec<(EngineKind, Vec<measure::Rate>)> = Vec::new();
        for e in &readers {
            let rates = measure_one(ctx, e.as_ref(), set, rows)
                .map_err(|f| Failure(format!("read suite, {}: {}", e.kind().name(), f.0)))?;
            all.push((e.kind(), rates));
        }
        record(ctx, set, rows, &all);
    }
    Ok(())
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
        "| disk | {} | - | {} MB/s | - | - | - |",
        f.case,
        f.text()
    ));
    ctx.report.figures.push(f);
    Ok(())
}

fn measure_one(
    ctx: &mut Ctx,
    e: &dyn Engine,
    set: &str,
    rows: u64,
) -> Result<Vec<measure::Rate>, Failure> {
    let name = e.kind().name();
    ctx.out
        .step(&format!("read: loading {rows} rows into {name}"));
    e.reset()?;
    let mut s = e.session()?;
    measure::load(s.as_mut(), rows, BATCH_ROWS, &payload())?;
    e.checkpoint()?;
    let secs = ctx.settings.secs;
    ctx.out.step(&format!("read: {name} {set} warm-up"));
    measure::reads(s.as_mut(), rows, secs / 2.0, 1)?;
    let mut rates = Vec::new();
    for rep in 0..ctx.settings.repeat {
        ctx.out.step(&format!(
            "read: {name} {set} (repeat {}/{})",
            rep + 1,
            ctx.settings.repeat
        ));
        rates.push(measure::reads(s.as_mut(), rows, secs, 2 + u64::from(rep))?);
        ctx.out.done();
    }
    Ok(rates)
}

fn record(ctx: &mut Ctx, set: &str, rows: u64, all: &[(EngineKind, Vec<measure::Rate>)]) {
    let per_sec = |r: &[measure::Rate]| r.iter().map(|x| x.per_sec).collect::<Vec<_>>();
    let peers: Vec<&Vec<measure::Rate>> = all
        .iter()
        .filter(|(k, _)| k.is_peer())
        .map(|(_, r)| r)
        .collect();
    for (kind, rates) in all {
        let fig = |metric: &'static str, unit: &'static str, values: Vec<f64>| Figure {
            suite: "read",
            engine: kind.name().into(),
            case: format!("{set} ({rows} rows)"),
            metric,
            unit,
            values,
        };
        let mut figs = vec![
            fig("reads_per_s", "1/s", per_sec(rates)),
            fig("p50_us", "us", rates.iter().map(|r| r.p50_us).collect()),
            fig("p99_us", "us", rates.iter().map(|r| r.p99_us).collect()),
        ];
        if *kind == EngineKind::Keel && !peers.is_empty() {
            let best: Vec<f64> = (0..rates.len())
                .map(|i| peers.iter().map(|p| p[i].per_sec).fold(0.0, f64::max))
                .collect();
            figs.push(fig("x_best_peer", "x", pairwise(&per_sec(rates), &best)));
        }
        let text = |m: &str| {
            figs.iter()
                .find(|f| f.metric == m)
                .map_or("-".into(), Figure::text)
        };
        ctx.out.line(&format!(
            "| {} | {set} | {rows} | {} | {} | {} | {} |",
            kind.name(),
            text("reads_per_s"),
            text("p50_us"),
            text("p99_us"),
            text("x_best_peer"),
        ));
        ctx.report.figures.extend(figs);
    }
}
