//! The recovery suite: time from a crash to ready after --wal-mib of log
//! written since the last checkpoint, and the replay rate against the disk's
//! sequential read rate measured in the same repeat.
//!
//! One definition for every engine:
//!
//! - **The crash** is SIGKILL of the process that wrote the log, with no
//!   checkpoint since the log began: a `keel bench-child` process for Keel
//!   and SQLite ([`super::child`]), every server process for PostgreSQL.
//! - **Ready** is the first acknowledged commit: the time runs from
//!   spawning the recovering process (the child; PostgreSQL's server) until
//!   a one-row `INSERT` commits durably in it (PostgreSQL: on a connection
//!   from the bench, tried every millisecond).
//!
//! What each engine does in that time:
//!
//! - **Keel**: syncs the data directory (the dead process's writes may be
//!   in the kernel's cache only, invariant 14), redoes the log from the
//!   last checkpoint, undoes losers, then takes the end-of-recovery
//!   checkpoint before `open` returns (`RecoveryCheckpoint::
//!   BeforeOpenReturns`; Keel's default takes it in the background).
//! - **PostgreSQL**: syncs the data directory
//!   (`recovery_init_sync_method=fsync`), replays the WAL, and waits for its
//!   end-of-recovery checkpoint before accepting connections: both
//!   checkpoints are inside the time.
//! - **SQLite**: the first transaction rebuilds the WAL index by reading
//!   and checksumming every frame of the WAL (written with
//!   `wal_autocheckpoint=0`); nothing is redone into the database file and
//!   no checkpoint is taken (the WAL is copied in when the last connection
//!   closes, after the time).

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
    let note = "recovery: crash = SIGKILL of the writing process(es); time = spawning the \
                recovering process -> its first acknowledged commit; end-of-recovery \
                checkpoint inside the time for keel and postgres, none for sqlite";
    ctx.out.line(&format!("  {note}"));
    ctx.report.notes.push(note.into());
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
        "\n| engine | log | spawn to first commit s | replay MB/s | × disk sequential read | time × postgres |\n\
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
        // Below 1: ready sooner than PostgreSQL.
        let vs_pg = pg_secs
            .as_ref()
            .filter(|_| kind != EngineKind::Postgres)
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
