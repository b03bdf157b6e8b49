//! `cargo bench -p keel-io --features bench --bench io`
//!
//! Random 8 KiB reads and writes at queue depth 1, 8 and 32, buffered and
//! O_DIRECT, on the thread-pool and io_uring backends side by side; then
//! sequential 8 KiB append + fdatasync on both and on a plain
//! `pwrite` + `fdatasync` loop. Prints one Markdown table.
//!
//! Environment: KEEL_BENCH_SECS (per case, default 1.5), KEEL_BENCH_DIR
//! (default: the target directory's tmp, on the build's file system),
//! KEEL_BENCH_FILE_MIB (default 256).

use std::path::PathBuf;
use std::time::Duration;

use keel_io::bench::{self, BenchResult, Pattern};
use keel_io::{AsyncIo, Backend, IoConfig, ThreadPoolIo, UringIo};

const BLOCK: usize = 8192;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn backend(kind: Backend, queue_depth: usize) -> Option<Box<dyn AsyncIo>> {
    let config = IoConfig {
        backend: kind,
        queue_depth,
        // One worker per request in flight (up to 16): the pool's best case.
        worker_threads: queue_depth.clamp(1, 16),
    };
    match kind {
        Backend::IoUring => match UringIo::new(&config) {
            Ok(io) => Some(Box::new(io)),
            Err(e) => {
                eprintln!("io_uring unavailable, skipped: {e}");
                None
            }
        },
        _ => ThreadPoolIo::new(&config)
            .ok()
            .map(|io| Box::new(io) as Box<dyn AsyncIo>),
    }
}

fn row(label: &str, r: &BenchResult) {
    println!(
        "| {label} | {:.0} | {:.1} | {:.1} | {:.2} |",
        r.iops,
        r.latency_ns_p50 as f64 / 1000.0,
        r.latency_ns_p99 as f64 / 1000.0,
        r.cpu_ns_per_op / 1000.0,
    );
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported.
    let secs = Duration::from_secs_f64(env_f64("KEEL_BENCH_SECS", 1.5));
    let mib = env_f64("KEEL_BENCH_FILE_MIB", 256.0) as u64;
    let dir = std::env::var("KEEL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let tmp = match tempfile::Builder::new()
        .prefix("keel-io-bench")
        .tempdir_in(&dir)
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot create a temp dir in {}: {e}", dir.display());
            std::process::exit(1);
        }
    };
    let data = tmp.path().join("data");
    if let Err(e) = bench::prepare_file(&data, mib << 20) {
        eprintln!("cannot prepare {}: {e}", data.display());
        std::process::exit(1);
    }
    println!("file: {} MiB in {}, {secs:?} per case", mib, dir.display());
    println!();
    println!("| case | IOPS | p50 µs | p99 µs | CPU µs/op |");
    println!("|---|---:|---:|---:|---:|");
    for direct in [false, true] {
        for pattern in [Pattern::RandomRead, Pattern::RandomWrite] {
            for qd in [1, 8, 32] {
                for kind in [Backend::ThreadPool, Backend::IoUring] {
                    let Some(io) = backend(kind, qd) else {
                        continue;
                    };
                    let label = format!(
                        "{} {} {} QD{qd} {}",
                        if pattern == Pattern::RandomRead {
                            "rand-read"
                        } else {
                            "rand-write"
                        },
                        BLOCK / 1024,
                        if direct { "KiB direct" } else { "KiB buffered" },
                        io.backend_name()
                    );
                    match bench::random_io(&*io, &data, pattern, BLOCK, qd, direct, secs) {
                        Ok(r) => row(&label, &r),
                        Err(e) => println!("| {label} | failed: {e} | | | |"),
                    }
                }
            }
        }
    }
    for kind in [Backend::ThreadPool, Backend::IoUring] {
        let Some(io) = backend(kind, 8) else { continue };
        let label = format!("append 8 KiB + fdatasync {}", io.backend_name());
        let path = tmp.path().join(format!("append-{}", io.backend_name()));
        match bench::append_fdatasync(&*io, &path, BLOCK, secs * 2) {
            Ok(r) => row(&label, &r),
            Err(e) => println!("| {label} | failed: {e} | | | |"),
        }
    }
    let path = tmp.path().join("append-plain");
    match bench::plain_pwrite_fdatasync(&path, BLOCK, secs * 2) {
        Ok(r) => row("append 8 KiB + fdatasync plain pwrite loop", &r),
        Err(e) => println!("| plain loop | failed: {e} | | | |"),
    }
}
