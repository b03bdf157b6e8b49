//! The recovery suite: time from a crash to ready after --wal-mib of log
//! written since the last checkpoint, and the replay rate against the disk's
//! sequential read rate measured in the same repeat.
//!
//! PostgreSQL: `CHECKPOINT`, bulk inserts until the log has grown by the
//! target, `pg_ctl stop -m immediate`, then from launching the server until
//! a connection succeeds (polled every 2 ms).
//!
//! Keel: a checkpoint, 10,000-row transactions until the log has grown by
//! the target (automatic checkpoints off), the `Database` dropped without
//! `close` (the crash), then the `Database::open` that recovers, timed.

use super::Ctx;
use super::args::Suite;
use super::commit::pairwise;
use super::disk::sequential_read;
use super::engine::EngineKind;
use super::report::Figure;
use crate::Failure;

/// Runs the recovery suite.
pub fn run(ctx: &mut Ctx) -> Result<(), Failure> {
    let engines = ctx.engines(Suite::Recovery, 1)?;
    let (repeat, wal) = (ctx.settings.repeat, ctx.settings.wal_bytes);
    ctx.out.plan(u64::from(repeat) * engines.len() as u64);
    let mut disk = Vec::new();
    let mut per_engine: Vec<(EngineKind, Vec<f64>, Vec<f64>)> = Vec::new();
    for rep in 0..repeat {
        for e in &engines {
            let name = e.kind().name();
            ctx.out
                .step(&format!("recovery: {name} (repeat {}/{repeat})", rep + 1));
            if e.kind() == EngineKind::Disk {
                let dir = ctx.root.join("recovery-disk");
                let floor = if ctx.settings.quick {
                    16 << 20
                } else {
                    64 << 20
                };
                disk.push(sequential_read(&dir, wal.max(floor))?.0);
            } else {
                let r = e
                    .crash_recover(wal)
                    .map_err(|f| Failure(format!("recovery suite, {name}: {}", f.0)))?;
                let i = match per_engine.iter().position(|(k, _, _)| *k == e.kind()) {
                    Some(i) => i,
                    None => {
                        per_engine.push((e.kind(), Vec::new(), Vec::new()));
                        per_engine.len() - 1
                    }
                };
                per_engine[i].1.push(r.secs);
                per_engine[i]
                    .2
                    .push(r.wal_bytes as f64 / 1e6 / r.secs.max(1e-9));
            }
            ctx.out.done();
        }
    }
    record(ctx, disk, per_engine);
    Ok(())
}

fn record(ctx: &mut Ctx, disk: Vec<f64>, per_engine: Vec<(EngineKind, Vec<f64>, Vec<f64>)>) {
    let case = format!("{} MiB of log", ctx.settings.wal_bytes >> 20);
    ctx.out.line(
        "\n| engine | log | crash to ready s | replay MB/s | × disk sequential read | time × postgres |\n\
         |---|---:|---:|---:|---:|---:|",
    );
    let fig = |engine: &str, metric: &'static str, unit: &'static str, values: Vec<f64>| Figure {
        suite: "recovery",
        engine: engine.into(),
        case: case.clone(),
        metric,
        unit,
        values,
    };
    let mut figs = Vec::new();
    if !disk.is_empty() {
        let f = fig("disk", "seq_read_mb_per_s", "MB/s", disk.clone());
        ctx.out.line(&format!(
            "| disk (sequential read) | - | - | {} | 1.00 | - |",
            f.text()
        ));
        figs.push(f);
    }
    let pg_secs = per_engine
        .iter()
        .find(|(k, _, _)| *k == EngineKind::Postgres)
        .map(|(_, s, _)| s.clone());
    for (kind, secs, mb_s) in per_engine {
        let name = kind.name();
        // Below 1: Keel is ready sooner than PostgreSQL.
        let vs_pg = pg_secs
            .as_ref()
            .filter(|_| kind == EngineKind::Keel)
            .map(|pg| fig(name, "x_postgres_recovery_time", "x", pairwise(&secs, pg)));
        let s = fig(name, "recovery_s", "s", secs);
        let r = fig(name, "replay_mb_per_s", "MB/s", mb_s.clone());
        let x =
            (!disk.is_empty()).then(|| fig(name, "x_disk_seq_read", "x", pairwise(&mb_s, &disk)));
        ctx.out.line(&format!(
            "| {name} | {case} | {} | {} | {} | {} |",
            s.text(),
            r.text(),
            x.as_ref().map_or("-".into(), Figure::text),
            vs_pg.as_ref().map_or("-".into(), Figure::text)
        ));
        figs.extend([s, r]);
        figs.extend(x);
        figs.extend(vs_pg);
    }
    ctx.report.figures.extend(figs);
}
