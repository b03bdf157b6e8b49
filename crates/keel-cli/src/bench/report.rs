//! Figures, their median and spread, the table on stdout and the JSON file.

use std::path::Path;

use serde_json::{Value, json};

use super::args::Settings;
use crate::Failure;

/// One measured quantity: every repeat's value, in run order.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Suite name.
    pub suite: &'static str,
    /// Engine name (or a backend, for the micro suites).
    pub engine: String,
    /// The case within the suite, e.g. "committers=4".
    pub case: String,
    /// What was measured, e.g. "commits_per_s".
    pub metric: &'static str,
    /// Unit, e.g. "1/s", "us", "x".
    pub unit: &'static str,
    /// One value per repeat.
    pub values: Vec<f64>,
}

impl Figure {
    /// The median of the values (mean of the middle two for an even count).
    pub fn median(&self) -> f64 {
        median(&self.values)
    }

    /// The smallest and largest value.
    pub fn spread(&self) -> (f64, f64) {
        let lo = self.values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self
            .values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    }

    /// Median and spread as text: `1234 (1200..1300)`.
    pub fn text(&self) -> String {
        if self.values.is_empty() {
            return "-".into();
        }
        let (lo, hi) = self.spread();
        if self.values.len() == 1 {
            return fmt_num(self.median());
        }
        format!(
            "{} ({}..{})",
            fmt_num(self.median()),
            fmt_num(lo),
            fmt_num(hi)
        )
    }
}

/// The median of `v` (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The index of the series with the highest median (NaN values ignored;
/// the first on a tie); `None` when no series has a value.
pub fn best_of(series: &[Vec<f64>]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in series.iter().enumerate() {
        let m = median(v);
        if !m.is_nan() && best.is_none_or(|(_, b)| m > b) {
            best = Some((i, m));
        }
    }
    best.map(|(i, _)| i)
}

/// A number with sensible precision for a table.
pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() {
        "-".into()
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 0.1 || a == 0.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

/// Settings as (name, value) pairs.
pub type KeyValues = Vec<(String, String)>;

/// Everything a run produced.
#[derive(Default)]
pub struct Report {
    /// The figures, in measuring order.
    pub figures: Vec<Figure>,
    /// Engines left out of a suite: (suite, engine, why).
    pub skipped: Vec<(String, String, String)>,
    /// Each engine's settings as set up, per suite.
    pub engine_settings: Vec<(String, String, KeyValues)>,
    /// Notes (e.g. commands for the micro suites).
    pub notes: Vec<String>,
}

/// Settings as JSON.
pub fn settings_json(s: &Settings, env: &[(String, String)]) -> Value {
    let env: serde_json::Map<String, Value> = env
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "suite": s.suite.name(),
        "repeat": s.repeat,
        "secs": s.secs,
        "kv_secs": s.kv_secs,
        "committers": s.committers,
        "rows": s.rows,
        "keys": s.keys,
        "engines": s.engines.iter().map(|e| e.name()).collect::<Vec<_>>(),
        "kv_engines": s.kv_engines.iter().map(|e| e.name()).collect::<Vec<_>>(),
        "cache_bytes": s.cache_bytes,
        "wal_bytes": s.wal_bytes,
        "quick": s.quick,
        "payload_bytes": super::engine::PAYLOAD_BYTES,
        "row_bytes": super::engine::ROW_BYTES,
        "batch_rows": super::engine::BATCH_ROWS,
        "environment": env,
    })
}

/// Writes the whole report as JSON to `path`.
pub fn write_json(
    path: &Path,
    settings: &Settings,
    env: &[(String, String)],
    r: &Report,
) -> Result<(), Failure> {
    let figures: Vec<Value> = r
        .figures
        .iter()
        .map(|f| {
            let (lo, hi) = f.spread();
            json!({
                "suite": f.suite, "engine": f.engine, "case": f.case,
                "metric": f.metric, "unit": f.unit, "values": f.values,
                "median": f.median(), "min": lo, "max": hi,
            })
        })
        .collect();
    let engines: Vec<Value> = r
        .engine_settings
        .iter()
        .map(|(suite, engine, kv)| {
            let m: serde_json::Map<String, Value> = kv
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            json!({"suite": suite, "engine": engine, "settings": m})
        })
        .collect();
    let skipped: Vec<Value> = r
        .skipped
        .iter()
        .map(|(s, e, why)| json!({"suite": s, "engine": e, "reason": why}))
        .collect();
    let doc = json!({
        "tool": "keel bench",
        "keel_version": env!("CARGO_PKG_VERSION"),
        "settings": settings_json(settings, env),
        "engines": engines,
        "figures": figures,
        "skipped": skipped,
        "notes": r.notes,
    });
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| Failure(format!("cannot encode the JSON report: {e}")))?;
    std::fs::write(path, text + "\n")
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let f = Figure {
            suite: "commit",
            engine: "disk".into(),
            case: "c".into(),
            metric: "m",
            unit: "1/s",
            values: vec![1000.0, 1200.0, 1100.0],
        };
        assert_eq!(f.spread(), (1000.0, 1200.0));
        assert_eq!(f.text(), "1100 (1000..1200)");
        assert_eq!(median(&[f64::NAN, 5.0, 1.0]), 3.0);
    }

    #[test]
    fn best_of_a_sweep_is_the_highest_median() {
        // Medians 20, 30, 25: the second, though the third has the top value.
        let points = vec![
            vec![10.0, 20.0, 30.0],
            vec![30.0, 29.0, 31.0],
            vec![25.0, 24.0, 40.0],
        ];
        assert_eq!(best_of(&points), Some(1));
        // A tie goes to the first; NaN-only and empty series never win.
        assert_eq!(best_of(&[vec![f64::NAN], vec![2.0], vec![2.0]]), Some(1));
        assert_eq!(best_of(&[vec![], vec![f64::NAN]]), None);
        assert_eq!(best_of(&[]), None);
    }
}
