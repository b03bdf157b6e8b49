//! The kv suite's phases, its figures, the table on stdout and issue #20's
//! speed targets as ratios ([`TARGETS`]).
//!
//! A target divides Keel's figure by a reference figure of the *same*
//! repeat (the faster of several engines where it names several), then
//! takes the median of those ratios ([`pairwise`]); a reference engine
//! that did not run leaves the target unmeasured ("-"), never met.

use std::collections::BTreeMap;

use super::super::Ctx;
use super::super::commit::pairwise;
use super::super::report::{Figure, fmt_num, median};

/// What the suite measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// `--keys` puts in one durable transaction.
    BulkLoad,
    /// One put per durable commit, one writer.
    Individual,
    /// One put per durable commit, 64 writers.
    Writers64,
    /// Durable transactions of 1,000 puts (100 of them at full size).
    Batch,
    /// Random gets, one thread.
    Reads,
    /// Range reads of 10 entries, one thread.
    Ranges,
    /// Random gets, 4 threads.
    Reads4,
    /// Random gets, 8 threads.
    Reads8,
    /// Every key deleted, in transactions of 1,000.
    Removals,
    /// The disk's loop: pwrite 128 B + fdatasync, one committer.
    DiskSync,
}

impl Phase {
    /// The phases every store runs, in the order of redb's comparison (the
    /// order of the tables).
    pub const STORE: [Phase; 9] = [
        Phase::BulkLoad,
        Phase::Individual,
        Phase::Writers64,
        Phase::Batch,
        Phase::Reads,
        Phase::Ranges,
        Phase::Reads4,
        Phase::Reads8,
        Phase::Removals,
    ];

    /// The order the phases run in: every read phase before the write
    /// phases that run for a fixed time (`--secs`), which leave each engine
    /// with as many more keys as it committed in that time; so every engine
    /// reads the same keys (the loaded ones and the batch writes').
    pub const RUN: [Phase; 9] = [
        Phase::BulkLoad,
        Phase::Batch,
        Phase::Reads,
        Phase::Ranges,
        Phase::Reads4,
        Phase::Reads8,
        Phase::Individual,
        Phase::Writers64,
        Phase::Removals,
    ];

    /// Its name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Phase::BulkLoad => "bulk load",
            Phase::Individual => "individual writes",
            Phase::Writers64 => "individual writes, 64 writers",
            Phase::Batch => "batch writes of 1,000",
            Phase::Reads => "random reads",
            Phase::Ranges => "range reads of 10",
            Phase::Reads4 => "random reads, 4 threads",
            Phase::Reads8 => "random reads, 8 threads",
            Phase::Removals => "removals",
            Phase::DiskSync => "fdatasync loop, 1 committer",
        }
    }

    /// What one operation of the figure is.
    pub fn op(self) -> &'static str {
        match self {
            Phase::BulkLoad | Phase::Batch => "put",
            Phase::Individual | Phase::Writers64 => "durable commit of 1 put",
            Phase::Reads | Phase::Reads4 | Phase::Reads8 => "get",
            Phase::Ranges => "range of 10",
            Phase::Removals => "delete",
            Phase::DiskSync => "pwrite + fdatasync",
        }
    }

    /// Threads of a read phase (1 for the others).
    pub fn threads(self) -> usize {
        match self {
            Phase::Reads4 => 4,
            Phase::Reads8 => 8,
            _ => 1,
        }
    }
}

/// Operations per second, per (engine, phase), one value per repeat.
#[derive(Default, Debug)]
pub struct Results {
    values: BTreeMap<(String, Phase), Vec<f64>>,
}

impl Results {
    /// Adds one repeat's figure.
    pub fn push(&mut self, engine: &str, p: Phase, per_sec: f64) {
        self.values
            .entry((engine.to_string(), p))
            .or_default()
            .push(per_sec);
    }

    fn get(&self, engine: &str, p: Phase) -> Option<&Vec<f64>> {
        self.values.get(&(engine.to_string(), p))
    }

    fn engines(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (e, _) in self.values.keys() {
            if !out.contains(e) {
                out.push(e.clone());
            }
        }
        let rank = |e: &str| {
            ["keel", "sqlite", "redb", "disk"]
                .iter()
                .position(|x| *x == e)
        };
        out.sort_by_key(|e| rank(e).unwrap_or(usize::MAX));
        out
    }
}

/// One speed target of issue #20: Keel's `phase` over the faster of
/// `over` (engine, phase) in the same repeat, at least `goal`.
pub struct Target {
    pub label: &'static str,
    pub phase: Phase,
    pub over: &'static [(&'static str, Phase)],
    pub goal: f64,
}

/// Issue #20's "Speed" targets that the kv suite measures.
pub const TARGETS: [Target; 5] = [
    Target {
        label: "random reads in cache / faster of sqlite, redb",
        phase: Phase::Reads,
        over: &[("sqlite", Phase::Reads), ("redb", Phase::Reads)],
        goal: 1.0,
    },
    Target {
        label: "individual writes, 1 writer / fdatasync loop",
        phase: Phase::Individual,
        over: &[("disk", Phase::DiskSync)],
        goal: 0.95,
    },
    Target {
        label: "individual writes, 64 writers / redb",
        phase: Phase::Writers64,
        over: &[("redb", Phase::Writers64)],
        goal: 10.0,
    },
    Target {
        label: "bulk load / redb",
        phase: Phase::BulkLoad,
        over: &[("redb", Phase::BulkLoad)],
        goal: 1.0,
    },
    Target {
        label: "range reads of 10 / sqlite",
        phase: Phase::Ranges,
        over: &[("sqlite", Phase::Ranges)],
        goal: 1.0,
    },
];

/// Keel's ratios for `t`, one per repeat; `None` when Keel or every
/// reference is missing.
pub fn ratios(r: &Results, t: &Target) -> Option<Vec<f64>> {
    let keel = r.get("keel", t.phase)?;
    let refs: Vec<&Vec<f64>> = t.over.iter().filter_map(|(e, p)| r.get(e, *p)).collect();
    if refs.is_empty() {
        return None;
    }
    let best: Vec<f64> = (0..keel.len())
        .map(|i| {
            refs.iter()
                .filter_map(|v| v.get(i).copied())
                .fold(f64::NAN, f64::max)
        })
        .collect();
    Some(pairwise(keel, &best))
}

/// Prints the table and the targets, and records every figure.
pub fn report(ctx: &mut Ctx, r: &Results) {
    let engines = r.engines();
    let mut lines = vec![
        format!(
            "\n| phase | one operation | {} |",
            engines
                .iter()
                .map(|e| format!("{e} ops/s"))
                .collect::<Vec<_>>()
                .join(" | ")
        ),
        format!("|---|---|{}", "---:|".repeat(engines.len())),
    ];
    let phases = Phase::STORE.iter().chain([Phase::DiskSync].iter());
    for &p in phases {
        let mut cells = Vec::new();
        for e in &engines {
            let fig = r.get(e, p).map(|v| Figure {
                suite: "kv",
                engine: e.clone(),
                case: p.name().into(),
                metric: "ops_per_s",
                unit: "1/s",
                values: v.clone(),
            });
            cells.push(fig.as_ref().map_or("-".into(), Figure::text));
            ctx.report.figures.extend(fig);
        }
        if cells.iter().any(|c| c != "-") {
            lines.push(format!(
                "| {} | {} | {} |",
                p.name(),
                p.op(),
                cells.join(" | ")
            ));
        }
    }
    lines.push(
        "\n| issue #20 target: keel / reference | ratio | spread | goal | met | repeats at goal |\n\
         |---|---:|---:|---:|---|---:|"
            .into(),
    );
    for t in &TARGETS {
        let ratios = ratios(r, t);
        let (text, spread, met, at) = match &ratios {
            Some(v) => {
                let m = median(v);
                let (lo, hi) = v
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                        (lo.min(x), hi.max(x))
                    });
                (
                    format!("{}x", fmt_num(m)),
                    format!("{}..{}", fmt_num(lo), fmt_num(hi)),
                    if m >= t.goal { "yes" } else { "no" },
                    format!("{} of {}", at_goal(v, t.goal), v.len()),
                )
            }
            None => ("-".into(), "-".into(), "not measured", "-".into()),
        };
        lines.push(format!(
            "| {} | {text} | {spread} | {}x | {met} | {at} |",
            t.label,
            fmt_num(t.goal)
        ));
        if let Some(values) = ratios {
            ctx.report.figures.push(Figure {
                suite: "kv",
                engine: "keel".into(),
                case: t.label.into(),
                metric: "x_target_reference",
                unit: "x",
                values,
            });
        }
    }
    for l in lines {
        ctx.out.line(&l);
    }
}

/// How many of the repeat-by-repeat `ratios` reach `goal`: the median
/// says whether the target is met, this how reliably.
fn at_goal(ratios: &[f64], goal: f64) -> usize {
    ratios.iter().filter(|&&r| r >= goal).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(rows: &[(&str, Phase, &[f64])]) -> Results {
        let mut r = Results::default();
        for (e, p, v) in rows {
            for x in *v {
                r.push(e, *p, *x);
            }
        }
        r
    }

    #[test]
    fn targets_divide_repeat_by_repeat_over_the_faster_reference() {
        let r = results(&[
            ("keel", Phase::Reads, &[300.0, 100.0, 500.0]),
            ("sqlite", Phase::Reads, &[100.0, 200.0, 100.0]),
            ("redb", Phase::Reads, &[150.0, 50.0, 250.0]),
            ("keel", Phase::Writers64, &[1000.0, 2000.0, 3000.0]),
            ("redb", Phase::Writers64, &[100.0, 100.0, 100.0]),
        ]);
        // Repeat by repeat: 300/150, 100/200, 500/250.
        assert_eq!(ratios(&r, &TARGETS[0]), Some(vec![2.0, 0.5, 2.0]));
        assert_eq!(ratios(&r, &TARGETS[2]), Some(vec![10.0, 20.0, 30.0]));
        // No disk loop, no sqlite ranges: unmeasured, not met.
        assert_eq!(ratios(&r, &TARGETS[1]), None);
        assert_eq!(ratios(&r, &TARGETS[4]), None);
        // One reference missing leaves the other.
        let r = results(&[
            ("keel", Phase::Reads, &[300.0]),
            ("redb", Phase::Reads, &[100.0]),
        ]);
        assert_eq!(ratios(&r, &TARGETS[0]), Some(vec![3.0]));
        // No keel figure: nothing to divide.
        let r = results(&[("redb", Phase::BulkLoad, &[1.0])]);
        assert_eq!(ratios(&r, &TARGETS[3]), None);
    }

    #[test]
    fn repeats_at_goal_count_each_ratio_against_the_goal() {
        assert_eq!(at_goal(&[0.9, 1.0, 1.2], 1.0), 2);
        assert_eq!(at_goal(&[0.94, 0.95], 0.95), 1);
        assert_eq!(at_goal(&[], 1.0), 0);
    }

    #[test]
    fn targets_name_the_phases_they_divide() {
        for t in &TARGETS {
            assert!(Phase::STORE.contains(&t.phase), "{}", t.label);
            assert!(!t.over.is_empty());
            for (e, p) in t.over {
                assert!(t.label.contains(e) || *p == Phase::DiskSync, "{}", t.label);
                assert!(t.goal > 0.0);
            }
        }
        assert_eq!(Phase::Reads8.threads(), 8);
        assert_eq!(Phase::Ranges.threads(), 1);
    }

    #[test]
    fn every_phase_runs_once_and_reads_come_before_timed_writes() {
        let mut run = Phase::RUN.to_vec();
        let mut store = Phase::STORE.to_vec();
        run.sort_by_key(|p| p.name());
        store.sort_by_key(|p| p.name());
        assert_eq!(run, store);
        let at = |p: Phase| Phase::RUN.iter().position(|&q| q == p);
        for read in [Phase::Reads, Phase::Ranges, Phase::Reads4, Phase::Reads8] {
            for timed in [Phase::Individual, Phase::Writers64, Phase::Removals] {
                assert!(
                    at(read) < at(timed),
                    "{} after {}",
                    read.name(),
                    timed.name()
                );
            }
            assert!(
                at(read) > at(Phase::Batch),
                "{} before the batches",
                read.name()
            );
        }
        assert_eq!(Phase::RUN[0], Phase::BulkLoad);
    }

    #[test]
    fn engines_print_in_a_fixed_order() {
        let r = results(&[
            ("disk", Phase::DiskSync, &[1.0]),
            ("redb", Phase::Reads, &[1.0]),
            ("keel", Phase::Reads, &[1.0]),
        ]);
        assert_eq!(r.engines(), vec!["keel", "redb", "disk"]);
    }
}
