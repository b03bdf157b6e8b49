//! The micro suites from earlier issues.
//!
//! `io` runs in-process, shortened, through `keel_io::bench` (the functions
//! behind `cargo bench -p keel-io --features bench --bench io`). The `wal`,
//! `crc` and `fsm` benches are bench binaries whose code is not reusable from
//! here, so the tool prints the exact command that runs them (from a Keel
//! source checkout) instead; that is a note, not a failure.

use std::time::Duration;

use keel_io::bench::{self, BenchResult, Pattern};
use keel_io::{AsyncIo, Backend, IoConfig, ThreadPoolIo, UringIo};

use super::Ctx;
use super::args::Suite;
use super::report::Figure;
use crate::Failure;

const BLOCK: usize = 8192;

/// Prints how to run the `wal`, `crc` or `fsm` micro suite.
pub fn print_command(ctx: &mut Ctx, suite: Suite) {
    let (cmd, what) = match suite {
        Suite::Wal => (
            "cargo bench -p keel --bench wal",
            "append throughput and durable commits/s beside a raw fdatasync loop (KEEL_BENCH_SECS sets seconds per case)",
        ),
        Suite::Crc => (
            "cargo bench -p keel --bench crc",
            "CRC32C throughput, hardware and software (KEEL_CRC_SPLIT=1 for the length split)",
        ),
        _ => ("cargo bench -p keel --bench fsm", "free space map lookups"),
    };
    let note = format!(
        "{}: run `{cmd}` in a Keel source checkout: {what}",
        suite.name()
    );
    ctx.out.line(&format!("  {note}"));
    ctx.report.notes.push(note);
}

fn backend(kind: Backend, queue_depth: usize) -> Option<Box<dyn AsyncIo>> {
    let config = IoConfig {
        backend: kind,
        queue_depth,
        worker_threads: queue_depth.clamp(1, 16),
    };
    match kind {
        Backend::IoUring => UringIo::new(&config)
            .ok()
            .map(|io| Box::new(io) as Box<dyn AsyncIo>),
        _ => ThreadPoolIo::new(&config)
            .ok()
            .map(|io| Box::new(io) as Box<dyn AsyncIo>),
    }
}

type Case = (String, String, Vec<BenchResult>);

/// Runs the `io` suite: random 8 KiB reads and writes at QD 1, 8 and 32
/// (buffered), and append + fdatasync, on both backends and a plain
/// pwrite loop, each --secs long, --repeat times. Each case gets a backend
/// of its own with a queue of max(QD, 8) (the pool: as many workers, at
/// most 16).
pub fn io(ctx: &mut Ctx) -> Result<(), Failure> {
    let dir = ctx.root.join("io");
    std::fs::create_dir_all(&dir).map_err(|e| Failure(format!("io: {e}")))?;
    let data = dir.join("data");
    let mib: u64 = if ctx.settings.quick { 16 } else { 64 };
    bench::prepare_file(&data, mib << 20).map_err(|e| Failure(format!("io: prepare: {e}")))?;
    let secs = Duration::from_secs_f64(ctx.settings.secs);
    let cases: [(&str, Pattern, usize); 6] = [
        ("rand-read 8 KiB QD1", Pattern::RandomRead, 1),
        ("rand-read 8 KiB QD8", Pattern::RandomRead, 8),
        ("rand-read 8 KiB QD32", Pattern::RandomRead, 32),
        ("rand-write 8 KiB QD1", Pattern::RandomWrite, 1),
        ("rand-write 8 KiB QD8", Pattern::RandomWrite, 8),
        ("rand-write 8 KiB QD32", Pattern::RandomWrite, 32),
    ];
    let mut out: Vec<Case> = Vec::new();
    ctx.out
        .plan(u64::from(ctx.settings.repeat) * (2 * cases.len() as u64 + 3));
    for _ in 0..ctx.settings.repeat {
        let mut i = 0;
        let mut push = |name: &str, label: &str, r: BenchResult| {
            if out.len() <= i {
                out.push((name.to_string(), label.to_string(), Vec::new()));
            }
            out[i].2.push(r);
            i += 1;
        };
        for kind in [Backend::ThreadPool, Backend::IoUring] {
            let Some(io) = backend(kind, 8) else { continue };
            for (label, pattern, qd) in cases {
                let Some(io) = backend(kind, qd.max(8)) else {
                    continue;
                };
                ctx.out.step(&format!("io: {label} {}", io.backend_name()));
                let r = bench::random_io(&*io, &data, pattern, BLOCK, qd, false, secs)?;
                push(io.backend_name(), label, r);
                ctx.out.done();
            }
            let path = dir.join(format!("append-{}", io.backend_name()));
            let r = bench::append_fdatasync(&*io, &path, BLOCK, secs)?;
            push(io.backend_name(), "append 8 KiB + fdatasync", r);
            ctx.out.done();
        }
        let r = bench::plain_pwrite_fdatasync(&dir.join("append-plain"), BLOCK, secs)
            .map_err(|e| Failure(format!("io: plain loop: {e}")))?;
        push("plain pwrite", "append 8 KiB + fdatasync", r);
        ctx.out.done();
    }
    record(ctx, out);
    Ok(())
}

fn record(ctx: &mut Ctx, cases: Vec<Case>) {
    ctx.out.line(&format!(
        "\n(file of {} MiB, buffered)\n| backend | case | IOPS | p50 µs | p99 µs | CPU µs/op |\n|---|---|---:|---:|---:|---:|",
        if ctx.settings.quick { 16 } else { 64 }
    ));
    for (engine, case, rs) in cases {
        let fig =
            |metric: &'static str, unit: &'static str, f: &dyn Fn(&BenchResult) -> f64| Figure {
                suite: "io",
                engine: engine.clone(),
                case: case.clone(),
                metric,
                unit,
                values: rs.iter().map(f).collect(),
            };
        let figs = [
            fig("iops", "1/s", &|r| r.iops),
            fig("p50_us", "us", &|r| r.latency_ns_p50 as f64 / 1e3),
            fig("p99_us", "us", &|r| r.latency_ns_p99 as f64 / 1e3),
            fig("cpu_us_per_op", "us", &|r| r.cpu_ns_per_op / 1e3),
        ];
        ctx.out.line(&format!(
            "| {engine} | {case} | {} | {} | {} | {} |",
            figs[0].text(),
            figs[1].text(),
            figs[2].text(),
            figs[3].text()
        ));
        ctx.report.figures.extend(figs);
    }
}
