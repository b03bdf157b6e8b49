//! The insert suite: --rows rows of 100 bytes in transactions of 10,000 on
//! one session: rows/s, and bytes written to storage per logical byte
//! (measured from the engine's processes' `write_bytes` in /proc, after a
//! checkpoint so the data files are counted as well as the log).

use std::time::Instant;

use super::Ctx;
use super::args::Suite;
use super::commit::pairwise;
use super::engine::{BATCH_ROWS, Engine, EngineKind, ROW_BYTES, payload};
use super::report::Figure;
use crate::Failure;

struct Insert {
    rows_per_s: f64,
    write_amp: f64,
}

fn one(e: &dyn Engine, rows: u64) -> Result<Insert, Failure> {
    e.reset()?;
    let mut s = e.session()?;
    let payload = payload();
    let before = e.bytes_written();
    let t = Instant::now();
    let mut id = 0;
    while id < rows {
        let n = BATCH_ROWS.min(rows - id);
        s.insert_batch(id, n, &payload)?;
        id += n;
    }
    let secs = t.elapsed().as_secs_f64();
    drop(s);
    e.checkpoint()?;
    let written = match (before, e.bytes_written()) {
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
    ctx.out.plan(engines.len() as u64 * u64::from(repeat));
    let mut results: Vec<Vec<Insert>> = engines.iter().map(|_| Vec::new()).collect();
    for rep in 0..repeat {
        for (i, e) in engines.iter().enumerate() {
            let name = e.kind().name();
            ctx.out.step(&format!(
                "insert: {name} {rows} rows (repeat {}/{repeat})",
                rep + 1
            ));
            let r = one(e.as_ref(), rows)
                .map_err(|f| Failure(format!("insert suite, {name}: {}", f.0)))?;
            results[i].push(r);
            ctx.out.done();
        }
    }
    ctx.out.line(
        "\n| engine | rows | rows/s | bytes written per logical byte | × sqlite |\n\
         |---|---:|---:|---:|---:|",
    );
    let kinds: Vec<EngineKind> = engines.iter().map(|e| e.kind()).collect();
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
    Ok(())
}
