//! The commit suite: single-row durable commits at each committer count.
//!
//! For each committer count and each repeat, the disk's ceiling (one
//! committer, pwrite + fdatasync) is measured first, then every engine, back
//! to back, so each ratio compares figures taken moments apart.

use std::sync::atomic::AtomicU64;

use super::Ctx;
use super::args::Suite;
use super::engine::{Engine, EngineKind, payload};
use super::measure::{self, Rate};
use super::report::{Figure, fmt_num};
use crate::Failure;

/// Runs the commit suite.
pub fn run(ctx: &mut Ctx) -> Result<(), Failure> {
    let max = ctx.settings.committers.iter().copied().max().unwrap_or(1);
    let engines = ctx.engines(Suite::Commit, max)?;
    if engines.is_empty() {
        return Ok(());
    }
    let s = &ctx.settings;
    ctx.out
        .plan((s.committers.len() * s.repeat as usize * engines.len()) as u64);
    ctx.out.line(
        "\n| engine | committers | commits/s | p50 µs | p99 µs | × ceiling | × best peer |\n\
         |---|---:|---:|---:|---:|---:|---:|",
    );
    let ids: Vec<AtomicU64> = engines.iter().map(|_| AtomicU64::new(0)).collect();
    for c in ctx.settings.committers.clone() {
        let mut rates: Vec<Vec<Rate>> = vec![Vec::new(); engines.len()];
        for rep in 0..ctx.settings.repeat {
            for (i, e) in engines.iter().enumerate() {
                let threads = if e.kind() == EngineKind::Disk { 1 } else { c };
                ctx.out.step(&format!(
                    "commit: {} × {threads} (repeat {}/{})",
                    e.kind().name(),
                    rep + 1,
                    ctx.settings.repeat
                ));
                let r = measure::commits(
                    e.as_ref(),
                    threads,
                    ctx.settings.secs,
                    &ids[i],
                    &payload(),
                )
                .map_err(|f| Failure(format!("commit suite, {}: {}", e.kind().name(), f.0)))?;
                rates[i].push(r);
                ctx.out.done();
            }
        }
        record(ctx, &engines, c, &rates);
    }
    Ok(())
}

/// Turns one committer count's measurements into figures and table rows.
fn record(ctx: &mut Ctx, engines: &[Box<dyn Engine>], c: usize, rates: &[Vec<Rate>]) {
    let kinds: Vec<EngineKind> = engines.iter().map(|e| e.kind()).collect();
    let per_sec = |i: usize| rates[i].iter().map(|r| r.per_sec).collect::<Vec<f64>>();
    let ceiling = kinds
        .iter()
        .position(|k| *k == EngineKind::Disk)
        .map(per_sec);
    let peers: Vec<usize> = (0..kinds.len()).filter(|&i| kinds[i].is_peer()).collect();
    for (i, kind) in kinds.iter().enumerate() {
        // The ceiling always runs one committer, measured beside each count.
        let case = if *kind == EngineKind::Disk {
            format!("ceiling beside committers={c}")
        } else {
            format!("committers={c}")
        };
        let mut figs = Vec::new();
        let fig = |metric: &'static str, unit: &'static str, values: Vec<f64>| Figure {
            suite: "commit",
            engine: kind.name().into(),
            case: case.clone(),
            metric,
            unit,
            values,
        };
        figs.push(fig("commits_per_s", "1/s", per_sec(i)));
        for (metric, get) in [
            ("p50_us", (|r: &Rate| r.p50_us) as fn(&Rate) -> f64),
            ("p90_us", |r| r.p90_us),
            ("p99_us", |r| r.p99_us),
            ("p999_us", |r| r.p999_us),
        ] {
            figs.push(fig(metric, "us", rates[i].iter().map(get).collect()));
        }
        if let Some(ceil) = ceiling.as_ref().filter(|_| *kind != EngineKind::Disk) {
            figs.push(fig("x_ceiling", "x", pairwise(&per_sec(i), ceil)));
        }
        if *kind == EngineKind::Keel && !peers.is_empty() {
            let best = best_peer(rates, &peers, rates[i].len());
            figs.push(fig("x_best_peer", "x", pairwise(&per_sec(i), &best)));
        }
        let text = |m: &str| {
            figs.iter()
                .find(|f| f.metric == m)
                .map_or("-".to_string(), Figure::text)
        };
        let p = |m: &str| {
            figs.iter()
                .find(|f| f.metric == m)
                .map_or("-".into(), |f| fmt_num(f.median()))
        };
        let label = if *kind == EngineKind::Disk {
            "disk ceiling (1 committer)".to_string()
        } else {
            kind.name().to_string()
        };
        ctx.out.line(&format!(
            "| {label} | {c} | {} | {} | {} | {} | {} |",
            text("commits_per_s"),
            p("p50_us"),
            p("p99_us"),
            text("x_ceiling"),
            text("x_best_peer"),
        ));
        ctx.report.figures.extend(figs);
    }
}

/// The fastest peer's commits per second in each of `repeats` repeats.
fn best_peer(rates: &[Vec<Rate>], peers: &[usize], repeats: usize) -> Vec<f64> {
    (0..repeats)
        .map(|rep| {
            peers
                .iter()
                .map(|&p| rates[p][rep].per_sec)
                .fold(0.0, f64::max)
        })
        .collect()
}

/// `a[i] / b[i]` for each repeat.
pub fn pairwise(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| if *y > 0.0 { x / y } else { f64::NAN })
        .collect()
}
