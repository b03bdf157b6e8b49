//! SVG charts of a run, drawn with plotters (SVG backend only): commits/s
//! against committers (log-log) per engine, the disk's single-committer
//! loops and the group-commit reference loop (PostgreSQL at its best sweep
//! point; the other points and the round trip stay in the JSON), latency
//! percentiles, and insert, read and recovery throughput bars. Each point or
//! bar is the median; the whiskers span min..max over the repeats.

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::{Figure, Report, fmt_num};
use crate::Failure;

/// The colour of an engine's line or bar, by its JSON engine name.
fn color(engine: &str) -> RGBColor {
    match engine {
        "keel" => RGBColor(200, 30, 30),
        "sqlite" => RGBColor(30, 90, 200),
        "postgres" => RGBColor(40, 150, 60),
        "disk" => RGBColor(0, 0, 0),
        "group-commit-reference" => RGBColor(120, 40, 160),
        _ => RGBColor(120, 120, 120),
    }
}

/// The legend name of an engine's line in the commit charts.
fn series_name(engine: &str) -> String {
    match engine {
        "disk" => "disk: fdatasync loop (1 committer)".into(),
        e if e.starts_with("disk-") => format!("{e} (1 committer)"),
        e => e.into(),
    }
}

fn perr<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> Failure + '_ {
    move |e| Failure(format!("cannot draw {}: {e}", path.display()))
}

/// Writes every chart the report has figures for into `dir`.
pub fn write_all(dir: &Path, r: &Report) -> Result<Vec<PathBuf>, Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure(format!("cannot create --plot {}: {e}", dir.display())))?;
    let mut written = Vec::new();
    let commit = series(r, "commit", "commits_per_s");
    if !commit.is_empty() {
        let p = dir.join("commit-throughput.svg");
        lines(&p, "Durable single-row commits", "commits/s", &commit)?;
        written.push(p);
        let p = dir.join("commit-latency.svg");
        latency(&p, r)?;
        written.push(p);
    }
    for (suite, metric, title, unit, file) in [
        (
            "insert",
            "rows_per_s",
            "Bulk insert (10,000-row transactions)",
            "rows/s",
            "insert.svg",
        ),
        (
            "read",
            "reads_per_s",
            "Random point reads",
            "reads/s",
            "read.svg",
        ),
        (
            "recovery",
            "replay_mb_per_s",
            "Recovery: log replayed per second",
            "MB/s",
            "recovery.svg",
        ),
    ] {
        let mut figs: Vec<&Figure> = r
            .figures
            .iter()
            .filter(|f| f.suite == suite && f.metric == metric)
            .collect();
        if suite == "recovery" {
            figs.extend(
                r.figures
                    .iter()
                    .filter(|f| f.suite == suite && f.metric == "seq_read_mb_per_s"),
            );
        }
        if !figs.is_empty() {
            let p = dir.join(file);
            bars(&p, title, unit, &figs)?;
            written.push(p);
        }
    }
    Ok(written)
}

/// An axis label: whole numbers without decimals.
fn axis_num(v: f64) -> String {
    if v.abs() >= 1.0 && (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if v == 0.0 {
        "0".into()
    } else {
        fmt_num(v)
    }
}

/// One line per engine: (engine, [(committers, median, min, max)]).
type Series = Vec<(String, Vec<(f64, f64, f64, f64)>)>;

/// The committer count of a case ending in `committers=N`; `None` for a
/// case with more after it (a sweep point, a round trip).
fn committers_of(case: &str) -> Option<f64> {
    case.rsplit_once("committers=")?.1.parse().ok()
}

fn series(r: &Report, suite: &str, metric: &str) -> Series {
    let mut out: Series = Vec::new();
    for f in r
        .figures
        .iter()
        .filter(|f| f.suite == suite && f.metric == metric)
    {
        let Some(c) = committers_of(&f.case) else {
            continue;
        };
        let (lo, hi) = f.spread();
        match out.iter_mut().find(|(e, _)| *e == f.engine) {
            Some((_, pts)) => pts.push((c, f.median(), lo, hi)),
            None => out.push((f.engine.clone(), vec![(c, f.median(), lo, hi)])),
        }
    }
    out
}

fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 1.0..10.0;
    }
    lo / 1.5..hi * 1.5
}

/// A log-log chart of `s` against committers.
fn lines(path: &Path, title: &str, y_desc: &str, s: &Series) -> Result<(), Failure> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(perr(path))?;
    draw_lines(&root, path, title, y_desc, s)?;
    root.present().map_err(perr(path))
}

/// The x range of a chart of `s`: x is log2(committers) on a linear axis,
/// labelled at powers of two.
fn log2_x_range(s: &Series) -> (f64, f64) {
    let (lo, hi) = s
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0.log2()))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) }
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    path: &Path,
    title: &str,
    y_desc: &str,
    s: &Series,
) -> Result<(), Failure> {
    let (lo, hi) = log2_x_range(s);
    let xs = lo - 0.3..hi + 0.3;
    let ys = log_range(
        s.iter()
            .flat_map(|(_, p)| p.iter().flat_map(|q| [q.2, q.3])),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(xs, ys.log_scale())
        .map_err(perr(path))?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("concurrent committers (log scale)")
        .y_desc(y_desc)
        .x_labels(((hi - lo).ceil() as usize + 1) * 4)
        .x_label_formatter(&|v| {
            let r = v.round();
            if (v - r).abs() < 1e-6 && r >= 0.0 {
                format!("{}", 2f64.powf(r))
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| axis_num(*v))
        .draw()
        .map_err(perr(path))?;
    for (engine, pts) in s {
        let c = color(engine);
        let style = c.stroke_width(2 - u32::from(engine.starts_with("disk-")));
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0.log2(), p.1)),
                style,
            ))
            .map_err(perr(path))?
            .label(series_name(engine))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.0.log2(), p.1), 4, c.filled())),
            )
            .map_err(perr(path))?;
        chart
            .draw_series(
                pts.iter()
                    .map(|p| PathElement::new(vec![(p.0.log2(), p.2), (p.0.log2(), p.3)], c)),
            )
            .map_err(perr(path))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(perr(path))
}

/// p50 and p99 commit latency against committers, one panel each.
fn latency(path: &Path, r: &Report) -> Result<(), Failure> {
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(perr(path))?;
    let panels = root.split_evenly((1, 2));
    for (area, (metric, title)) in panels.iter().zip([
        ("p50_us", "Commit latency p50"),
        ("p99_us", "Commit latency p99"),
    ]) {
        draw_lines(area, path, title, "µs", &series(r, "commit", metric))?;
    }
    root.present().map_err(perr(path))
}

/// One bar per figure (median, whiskers min..max), labelled engine + case.
fn bars(path: &Path, title: &str, unit: &str, figs: &[&Figure]) -> Result<(), Failure> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(perr(path))?;
    let labels: Vec<String> = figs
        .iter()
        .map(|f| {
            let case = f.case.split(" (").next().unwrap_or(&f.case);
            format!("{} {case}", f.engine)
        })
        .collect();
    let top = figs
        .iter()
        .map(|f| f.spread().1)
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.15;
    let n = figs.len() as u32;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d((0u32..n.saturating_sub(1)).into_segmented(), 0.0..top)
        .map_err(perr(path))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .y_desc(unit)
        .x_labels(figs.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| axis_num(*v))
        .draw()
        .map_err(perr(path))?;
    let label_style =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (i, f) in figs.iter().enumerate() {
        let i = i as u32;
        let c = color(&f.engine);
        let (lo, hi) = f.spread();
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), f.median()),
            ],
            c.mix(0.75).filled(),
        );
        bar.set_margin(0, 0, 18, 18);
        chart.draw_series([bar]).map_err(perr(path))?;
        let mid = SegmentValue::CenterOf(i);
        chart
            .draw_series([PathElement::new(
                vec![(mid.clone(), lo), (mid.clone(), hi)],
                BLACK,
            )])
            .map_err(perr(path))?;
        chart
            .draw_series([Text::new(
                fmt_num(f.median()),
                (mid, hi),
                label_style.clone(),
            )])
            .map_err(perr(path))?;
    }
    root.present().map_err(perr(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_lines_take_only_plain_committer_cases() {
        assert_eq!(committers_of("committers=64"), Some(64.0));
        assert_eq!(committers_of("beside committers=4"), Some(4.0));
        assert_eq!(
            committers_of("committers=4; commit_delay=10, commit_siblings=1"),
            None
        );
        assert_eq!(
            committers_of("committers=4; SELECT 1 round trip, 1 connection"),
            None
        );
        assert_eq!(committers_of("rows=1000"), None);
        assert_eq!(series_name("disk"), "disk: fdatasync loop (1 committer)");
        assert_eq!(series_name("disk-o_dsync"), "disk-o_dsync (1 committer)");
        assert_eq!(series_name("keel"), "keel");
    }
}
