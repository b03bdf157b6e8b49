//! The commit suite: single-row durable commits at each committer count N.
//!
//! What runs at each N, each in its own timed window of `--secs`:
//! - the disk's single-committer loops ([`disk`](super::disk)), one
//!   committer whatever N: `pwrite` 128 B + `fdatasync` (the *fdatasync
//!   loop*), `pwrite` 128 B on an `O_DSYNC` file, and `pwrite` 4 KiB
//!   (aligned) on an `O_DIRECT|O_DSYNC` file;
//! - at N > 1, the ideal group-commit reference loop
//!   ([`reference`](mod@super::reference)): N threads, no engine work, one
//!   leader's durable write (a `pwrite` to a file opened `O_DSYNC`, the
//!   kernel path of Keel's log's `RWF_DSYNC` writes) per batch of whoever
//!   is waiting;
//! - Keel, SQLite (one connection shared behind a mutex) and PostgreSQL (a
//!   connection per committer), N committer threads each. PostgreSQL runs
//!   once per point of its `commit_delay` × `commit_siblings` sweep, and its
//!   `SELECT 1` round trip is measured on one connection: the floor every
//!   one of its statements pays.
//!
//! Order and settling. An engine's windows form a group (the disk's loops
//! and the reference loop are one group). Repeat *i* runs the groups
//! starting at group *i* mod *n* ([`rotation`]), so no engine always runs
//! first or always right after the same neighbour. After every window the
//! engine is checkpointed and the suite waits until the disk is quiet
//! ([`settle`](super::settle)).
//!
//! Figures: each is the median over the repeats with the spread min..max;
//! a ratio divides the two figures of the same repeat, then takes the
//! median ([`pairwise`]).
//! - `× fdatasync loop`: over the single-committer fdatasync loop at the
//!   same N: the ceiling for one committer only;
//! - `× group ref`: over the group-commit reference loop at the same N
//!   (N > 1): the ceiling for N committers;
//! - `× keel` (`keel-archived`, in the last column): Keel with its log
//!   archived continuously over Keel alone in the same repeat; archiving
//!   must not slow commits;
//! - `× best peer` (Keel): over the faster of SQLite and PostgreSQL in the
//!   same repeat;
//! - an engine with a sweep is shown at its best point (the highest median
//!   commits/s, [`best_of`]), its setting in the label; every point's
//!   figures are in the JSON under the case `committers=N; SETTING=V, …`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::Ctx;
use super::args::Suite;
use super::disk::{CommitLoop, SyncVariant};
use super::engine::{Engine, EngineKind, SweepPoint, payload};
use super::measure::{self, OpenBox, Rate, TimedOp};
use super::reference::{self, GroupCommit};
use super::report::{Figure, best_of, fmt_num};
use super::settle::Settle;
use crate::Failure;

/// What one window measures.
#[derive(Clone, Debug, PartialEq)]
enum Role {
    /// A single-committer loop of the disk.
    Loop(SyncVariant),
    /// The group-commit reference loop at N committers.
    Reference,
    /// An engine at N committers, as set up.
    Engine(EngineKind),
    /// An engine at N committers under one point of its settings sweep.
    Sweep(EngineKind, SweepPoint),
    /// One connection's empty-statement round trip.
    RoundTrip(EngineKind),
}

/// One window's subject.
struct Contestant<'a> {
    role: Role,
    threads: usize,
    /// The engine swept before and checkpointed after the window.
    engine: Option<&'a dyn Engine>,
    open: OpenBox<'a>,
    ids: &'a AtomicU64,
}

/// The disk's loops beyond the fdatasync loop, set up once for the suite.
#[derive(Default)]
struct Loops {
    variants: Vec<(SyncVariant, Arc<CommitLoop>)>,
    reference: Option<Arc<GroupCommit>>,
}

/// Runs the commit suite.
pub fn run(ctx: &mut Ctx) -> Result<(), Failure> {
    let max = ctx.settings.committers.iter().copied().max().unwrap_or(1);
    let engines = ctx.engines(Suite::Commit, max)?;
    if engines.is_empty() {
        return Ok(());
    }
    let loops = if engines.iter().any(|e| e.kind() == EngineKind::Disk) {
        open_loops(ctx)?
    } else {
        Loops::default()
    };
    let settle = Settle::for_dir(&ctx.root);
    let settle_text = format!("commit: settle {}", settle.describe());
    ctx.out.line(&format!("  {settle_text}"));
    ctx.report.notes.push(settle_text);
    let ids: Vec<AtomicU64> = (0..=engines.len()).map(|_| AtomicU64::new(0)).collect();
    let counts = ctx.settings.committers.clone();
    let per_count: Vec<Vec<Vec<Contestant>>> = counts
        .iter()
        .map(|&c| contestants(&engines, &loops, &ids, c))
        .collect();
    let windows: usize = per_count.iter().flatten().map(Vec::len).sum();
    ctx.out
        .plan((windows * ctx.settings.repeat as usize) as u64);
    ctx.out.line(
        "\n| engine | committers | commits/s | p50 µs | p99 µs | CPU µs/commit | × fdatasync loop | × group ref | × best peer |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    let mut unsettled = 0;
    let mut notes = Vec::new();
    for (groups, &c) in per_count.iter().zip(&counts) {
        let rows = measure_count(ctx, groups, c, &settle, &mut unsettled)?;
        notes.extend(record(ctx, c, &rows));
    }
    if let Some(g) = &loops.reference {
        notes.push(reference_note(g.counts())?);
    }
    if unsettled > 0 {
        notes.push(format!(
            "commit: {unsettled} settles ended at their limit with I/O still in flight \
             (the device's counters include other processes' I/O)"
        ));
    }
    for n in notes {
        ctx.out.line(&n);
        ctx.report.notes.push(n);
    }
    Ok(())
}

/// Sets up the O_DSYNC loops and the reference loop next to the disk's
/// fdatasync loop; a loop this file system refuses is skipped with a line.
fn open_loops(ctx: &mut Ctx) -> Result<Loops, Failure> {
    let dir = ctx.root.join("commit-disk");
    let mut loops = Loops::default();
    for v in SyncVariant::ALL {
        if v == SyncVariant::Fdatasync {
            continue;
        }
        match CommitLoop::open(&dir, v) {
            Ok(l) => {
                ctx.settings_line(Suite::Commit, v.name(), l.settings());
                loops.variants.push((v, Arc::new(l)));
            }
            Err(e) => ctx.skip_named(Suite::Commit, v.name(), &e.0),
        }
    }
    let g = GroupCommit::open(&dir)?;
    ctx.settings_line(Suite::Commit, reference::NAME, g.settings());
    loops.reference = Some(Arc::new(g));
    Ok(loops)
}

/// The reference loop's batching over the whole suite; an error if any
/// queued commit was not made durable (the loop's own check of itself).
fn reference_note(c: reference::Counts) -> Result<String, Failure> {
    if c.durable != c.queued {
        return Err(Failure(format!(
            "commit suite: the group-commit reference loop made {} of {} commits durable",
            c.durable, c.queued
        )));
    }
    Ok(format!(
        "commit: group-commit reference: {} commits in {} batches of one pwrite + one \
         fdatasync ({} per batch)",
        c.durable,
        c.batches,
        fmt_num(c.durable as f64 / c.batches.max(1) as f64)
    ))
}

/// Every window at `c` committers, one group per engine, in table order.
fn contestants<'a>(
    engines: &'a [Box<dyn Engine>],
    loops: &'a Loops,
    ids: &'a [AtomicU64],
    c: usize,
) -> Vec<Vec<Contestant<'a>>> {
    let loop_ids = &ids[engines.len()];
    engines
        .iter()
        .zip(ids)
        .map(|(e, ids)| {
            let e = e.as_ref();
            let kind = e.kind();
            let with = |role, threads, open: OpenBox<'a>| Contestant {
                role,
                threads,
                engine: Some(e),
                open,
                ids,
            };
            if kind == EngineKind::Disk {
                return disk_group(e, loops, loop_ids, c);
            }
            let mut group = Vec::new();
            if let Some(open) = e.round_trip() {
                group.push(with(Role::RoundTrip(kind), 1, open));
            }
            let sweep = e.commit_sweep(c);
            if sweep.is_empty() {
                group.push(with(Role::Engine(kind), c, Box::new(measure::sessions(e))));
            }
            for p in sweep {
                group.push(with(
                    Role::Sweep(kind, p),
                    c,
                    Box::new(measure::sessions(e)),
                ));
            }
            group
        })
        .collect()
}

/// The disk's group: its loops at one committer, the reference at `c > 1`.
fn disk_group<'a>(
    disk: &'a dyn Engine,
    loops: &'a Loops,
    ids: &'a AtomicU64,
    c: usize,
) -> Vec<Contestant<'a>> {
    let mut group = vec![Contestant {
        role: Role::Loop(SyncVariant::Fdatasync),
        threads: 1,
        engine: Some(disk),
        open: Box::new(measure::sessions(disk)),
        ids,
    }];
    for (v, l) in &loops.variants {
        group.push(Contestant {
            role: Role::Loop(*v),
            threads: 1,
            engine: None,
            open: Box::new(move || Ok(Box::new(l.op()) as Box<dyn TimedOp>)),
            ids,
        });
    }
    if let Some(g) = loops.reference.as_ref().filter(|_| c > 1) {
        group.push(Contestant {
            role: Role::Reference,
            threads: c,
            engine: None,
            open: Box::new(move || Ok(Box::new(g.op()) as Box<dyn TimedOp>)),
            ids,
        });
    }
    group
}

/// The group order of repeat `rep` over `n` groups: starting at `rep mod n`.
pub fn rotation(rep: usize, n: usize) -> Vec<usize> {
    (0..n).map(|k| (rep + k) % n).collect()
}

/// Every repeat of every window at `c` committers, settling after each.
/// Returns each window's role and its rates, in table order.
fn measure_count(
    ctx: &mut Ctx,
    groups: &[Vec<Contestant>],
    c: usize,
    settle: &Settle,
    unsettled: &mut usize,
) -> Result<Vec<(Role, Vec<Rate>)>, Failure> {
    let repeat = ctx.settings.repeat as usize;
    let mut rates: Vec<Vec<Vec<Rate>>> = groups.iter().map(|g| vec![Vec::new(); g.len()]).collect();
    for rep in 0..repeat {
        for g in rotation(rep, groups.len()) {
            for (j, con) in groups[g].iter().enumerate() {
                ctx.out.step(&format!(
                    "commit: {} × {} at {c} (repeat {}/{repeat})",
                    label_of(&con.role),
                    con.threads,
                    rep + 1
                ));
                let r = window(ctx, con).map_err(|f| {
                    Failure(format!("commit suite, {}: {}", label_of(&con.role), f.0))
                })?;
                rates[g][j].push(r);
                ctx.out.done();
                if let Some(e) = con.engine {
                    e.checkpoint()?;
                }
                if !settle.wait() {
                    *unsettled += 1;
                }
            }
        }
    }
    Ok(groups
        .iter()
        .zip(rates)
        .flat_map(|(g, r)| g.iter().map(|con| con.role.clone()).zip(r))
        .collect())
}

/// One timed window.
fn window(ctx: &Ctx, con: &Contestant) -> Result<Rate, Failure> {
    if let (Role::Sweep(_, point), Some(e)) = (&con.role, con.engine) {
        e.apply_sweep_point(point)?;
    }
    measure::commits(
        &*con.open,
        con.threads,
        ctx.settings.secs,
        con.ids,
        &payload(),
    )
}

/// The name of a window in progress lines.
fn label_of(role: &Role) -> String {
    match role {
        Role::Loop(v) => v.name().into(),
        Role::Reference => reference::NAME.into(),
        Role::Engine(k) => k.name().into(),
        Role::Sweep(k, p) => format!("{} {}", k.name(), point_text(p)),
        Role::RoundTrip(k) => format!("{} SELECT 1", k.name()),
    }
}

/// `commit_delay=10, commit_siblings=1`.
fn point_text(p: &SweepPoint) -> String {
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One table row (or a sweep point kept for the JSON only).
#[derive(Clone)]
struct Row<'a> {
    engine: String,
    case: String,
    label: String,
    rates: &'a [Rate],
    /// (metric, values) ratios shown in the table, if present.
    ratios: Vec<(&'static str, Vec<f64>)>,
    printed: bool,
    /// A round trip, not a commit: its figures are round trips.
    round_trip: bool,
}

fn per_sec(rates: &[Rate]) -> Vec<f64> {
    rates.iter().map(|r| r.per_sec).collect()
}

/// The index in `rows` of each engine's shown row: its only window, or
/// the best point of its sweep.
fn shown(rows: &[(Role, Vec<Rate>)]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, (role, _)) in rows.iter().enumerate() {
        match role {
            Role::Sweep(kind, _) => {
                let points: Vec<usize> = (0..rows.len())
                    .filter(|&j| matches!(&rows[j].0, Role::Sweep(k, _) if k == kind))
                    .collect();
                let series: Vec<Vec<f64>> = points.iter().map(|&j| per_sec(&rows[j].1)).collect();
                if best_of(&series).map(|b| points[b]) == Some(i) {
                    out.push(i);
                }
            }
            _ => out.push(i),
        }
    }
    out
}

/// The fastest peer's commits/s in each of `repeats` repeats, over the
/// peers' shown rows.
fn best_peer(rows: &[(Role, Vec<Rate>)], shown: &[usize], repeats: usize) -> Vec<f64> {
    let peers: Vec<&[Rate]> = shown
        .iter()
        .filter(|&&i| match &rows[i].0 {
            Role::Engine(k) | Role::Sweep(k, _) => k.is_peer(),
            _ => false,
        })
        .map(|&i| rows[i].1.as_slice())
        .collect();
    if peers.is_empty() {
        return Vec::new();
    }
    (0..repeats)
        .map(|rep| {
            peers
                .iter()
                .filter_map(|p| p.get(rep))
                .map(|r| r.per_sec)
                .fold(0.0, f64::max)
        })
        .collect()
}

/// Turns one committer count's windows into figures and table rows;
/// returns the notes on its sweeps.
fn record(ctx: &mut Ctx, c: usize, rows: &[(Role, Vec<Rate>)]) -> Vec<String> {
    let find = |want: &Role| {
        rows.iter()
            .find(|(r, _)| r == want)
            .map(|(_, v)| per_sec(v))
    };
    let fdatasync = find(&Role::Loop(SyncVariant::Fdatasync));
    let group_ref = find(&Role::Reference).filter(|_| c > 1);
    // Keel with archiving on is measured against Keel alone.
    let keel = find(&Role::Engine(EngineKind::Keel));
    let shown = shown(rows);
    let repeats = rows.first().map_or(0, |r| r.1.len());
    let peer = best_peer(rows, &shown, repeats);
    let mut out = Vec::new();
    for (i, (role, rates)) in rows.iter().enumerate() {
        let mine = per_sec(rates);
        let mut row = describe(role, c, rates, rows);
        let on_n = matches!(role, Role::Engine(_) | Role::Sweep(..));
        if let Some(f) = fdatasync.as_ref().filter(|_| {
            !matches!(
                role,
                Role::Loop(SyncVariant::Fdatasync) | Role::RoundTrip(_)
            )
        }) {
            row.ratios.push(("x_fdatasync_loop", pairwise(&mine, f)));
        }
        if let Some(g) = group_ref.as_ref().filter(|_| on_n) {
            row.ratios
                .push(("x_group_commit_reference", pairwise(&mine, g)));
        }
        if matches!(role, Role::Engine(EngineKind::Keel)) && !peer.is_empty() {
            row.ratios.push(("x_best_peer", pairwise(&mine, &peer)));
        }
        if let Some(keel) = keel
            .as_ref()
            .filter(|_| matches!(role, Role::Engine(EngineKind::KeelArchived)))
        {
            row.ratios.push(("x_keel", pairwise(&mine, keel)));
        }
        if let Role::Sweep(k, p) = role {
            // Every point under its own case; the best also as the engine's row.
            let best = shown.contains(&i);
            out.push(format!(
                "commit, committers={c}: {} at {}: {}/s{}",
                k.name(),
                point_text(p),
                fmt_num(super::report::median(&mine)),
                if best { " (best, shown)" } else { "" }
            ));
            let point_case = format!("committers={c}; {}", point_text(p));
            emit(
                ctx,
                c,
                &Row {
                    case: point_case,
                    printed: false,
                    ..row.clone()
                },
            );
            if !best {
                continue;
            }
        }
        emit(ctx, c, &row);
    }
    out
}

/// The engine name, case and label of one window.
fn describe<'a>(role: &Role, c: usize, rates: &'a [Rate], rows: &[(Role, Vec<Rate>)]) -> Row<'a> {
    let committers = format!("committers={c}");
    let (engine, case, label) = match role {
        Role::Loop(v) => (v.name().into(), format!("beside {committers}"), v.label()),
        Role::Reference => (
            reference::NAME.into(),
            committers,
            format!("group-commit reference ({c} committers)"),
        ),
        Role::Engine(k) => (k.name().into(), committers, engine_label(*k)),
        Role::Sweep(k, p) => {
            let points = rows
                .iter()
                .filter(|(r, _)| matches!(r, Role::Sweep(q, _) if q == k))
                .count();
            let label = format!("{} (best of {points}: {})", k.name(), point_text(p));
            (k.name().into(), committers, label)
        }
        Role::RoundTrip(k) => (
            k.name().into(),
            format!("{committers}; SELECT 1 round trip, 1 connection"),
            format!("{}: SELECT 1 round trip (1 connection)", k.name()),
        ),
    };
    Row {
        engine,
        case,
        label,
        rates,
        ratios: Vec::new(),
        printed: true,
        round_trip: matches!(role, Role::RoundTrip(_)),
    }
}

fn engine_label(k: EngineKind) -> String {
    match k {
        EngineKind::Sqlite => "sqlite (one connection, mutex)".into(),
        k => k.name().into(),
    }
}

/// Records a row's figures and prints it when it is shown.
fn emit(ctx: &mut Ctx, c: usize, row: &Row) {
    let fig = |metric: &'static str, unit: &'static str, values: Vec<f64>| Figure {
        suite: "commit",
        engine: row.engine.clone(),
        case: row.case.clone(),
        metric,
        unit,
        values,
    };
    let rate = per_sec(row.rates);
    let mut figs = if row.round_trip {
        let us = rate.iter().map(|r| 1e6 / r.max(1e-9)).collect();
        vec![
            fig("round_trips_per_s", "1/s", rate),
            fig("us_per_round_trip", "us", us),
        ]
    } else {
        vec![fig("commits_per_s", "1/s", rate)]
    };
    for (metric, get) in [
        ("p50_us", (|r: &Rate| r.p50_us) as fn(&Rate) -> f64),
        ("p90_us", |r| r.p90_us),
        ("p99_us", |r| r.p99_us),
        ("p999_us", |r| r.p999_us),
    ] {
        figs.push(fig(metric, "us", row.rates.iter().map(get).collect()));
    }
    // A server's CPU is not in this process: measured only in-process.
    if row.engine != "postgres" && !row.round_trip {
        let cpu = row.rates.iter().map(|r| r.cpu_us_per_op).collect();
        figs.push(fig("cpu_us_per_commit", "us", cpu));
    }
    for (metric, values) in &row.ratios {
        figs.push(fig(metric, "x", values.clone()));
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
    let label = if row.round_trip {
        format!(
            "{}: {} µs each (mean)",
            row.label,
            text("us_per_round_trip")
        )
    } else {
        row.label.clone()
    };
    if row.printed {
        ctx.out.line(&format!(
            "| {label} | {c} | {} | {} | {} | {} | {} | {} | {} |",
            text("commits_per_s"),
            p("p50_us"),
            p("p99_us"),
            p("cpu_us_per_commit"),
            text("x_fdatasync_loop"),
            text("x_group_commit_reference"),
            if figs.iter().any(|f| f.metric == "x_keel") {
                format!("{} × keel", text("x_keel"))
            } else {
                text("x_best_peer")
            },
        ));
    }
    ctx.report.figures.extend(figs);
}

/// `a[i] / b[i]` for each repeat.
pub fn pairwise(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| if *y > 0.0 { x / y } else { f64::NAN })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::median;

    fn rate(per_sec: f64) -> Rate {
        Rate {
            ops: 1,
            per_sec,
            p50_us: 1.0,
            p90_us: 2.0,
            p99_us: 3.0,
            p999_us: 4.0,
            cpu_us_per_op: 5.0,
        }
    }

    fn rates(v: &[f64]) -> Vec<Rate> {
        v.iter().copied().map(rate).collect()
    }

    #[test]
    fn ratios_pair_repeats_then_take_the_median() {
        let keel = [300.0, 100.0, 500.0];
        let peer = [100.0, 100.0, 100.0];
        let r = pairwise(&keel, &peer);
        assert_eq!(r, vec![3.0, 1.0, 5.0]);
        assert_eq!(median(&r), 3.0);
        // A zero or missing denominator gives no ratio, not infinity.
        assert!(pairwise(&[1.0], &[0.0])[0].is_nan());
        assert_eq!(pairwise(&[1.0, 2.0], &[1.0]).len(), 1);
    }

    #[test]
    fn rotation_starts_each_repeat_one_group_later() {
        assert_eq!(rotation(0, 4), vec![0, 1, 2, 3]);
        assert_eq!(rotation(1, 4), vec![1, 2, 3, 0]);
        assert_eq!(rotation(5, 4), vec![1, 2, 3, 0]);
        assert_eq!(rotation(2, 3), vec![2, 0, 1]);
        assert_eq!(rotation(3, 1), vec![0]);
        assert!(rotation(0, 0).is_empty());
        // Over n repeats every group runs first once.
        let firsts: Vec<usize> = (0..4).map(|r| rotation(r, 4)[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2, 3]);
    }

    fn sweep(delay: &str) -> Role {
        Role::Sweep(
            EngineKind::Postgres,
            vec![("commit_delay".into(), delay.into())],
        )
    }

    #[test]
    fn the_shown_sweep_point_is_the_best_and_peers_use_it() {
        let rows = vec![
            (Role::Loop(SyncVariant::Fdatasync), rates(&[100.0, 100.0])),
            (Role::Engine(EngineKind::Keel), rates(&[900.0, 1000.0])),
            (Role::Engine(EngineKind::Sqlite), rates(&[200.0, 50.0])),
            (
                Role::RoundTrip(EngineKind::Postgres),
                rates(&[9000.0, 9000.0]),
            ),
            (sweep("0"), rates(&[100.0, 100.0])),
            (sweep("10"), rates(&[300.0, 500.0])),
            (sweep("50"), rates(&[250.0, 260.0])),
        ];
        let s = shown(&rows);
        assert_eq!(s, vec![0, 1, 2, 3, 5]);
        // Repeat 0: max(sqlite 200, postgres 300); repeat 1: max(50, 500).
        assert_eq!(best_peer(&rows, &s, 2), vec![300.0, 500.0]);
        assert_eq!(
            best_peer(&rows[..2], &shown(&rows[..2]), 2),
            Vec::<f64>::new()
        );
    }
}
