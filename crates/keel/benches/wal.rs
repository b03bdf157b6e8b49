//! WAL benchmarks on the real disk, both real backends:
//!
//! - append throughput: records of 64 B to 8 KiB from 1 and 2 threads into
//!   the log buffer (no flush), and appended then written with `flush_all`
//!   (1 MiB batches, each synced);
//! - durable commits/s and latency with 1, 4, 16 and 64 committers (append
//!   a 100-byte commit record, wait until durable), each right after a
//!   plain `pwrite` + `fdatasync` loop on the same file system, and
//!   reported as a ratio to that loop's rate.
//!
//! `cargo bench -p keel --bench wal` (set `KEEL_BENCH_SECS` to change the
//! 2-second measurement per commit case; `-- commits` or `-- append` runs
//! one part only; `KEEL_BENCH_COMMITTERS=1,64` picks the commit cases).

#![allow(clippy::expect_used)] // a benchmark's setup failing is a bug to see at once

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use keel::types::{Lsn, TxnId};
use keel::wal::{RecordMeta, RecordType, Wal, WalConfig};
use keel_io::{AsyncIo, Backend, IoConfig};

fn backend(b: Backend) -> Option<Arc<dyn AsyncIo>> {
    keel_io::open_backend(&IoConfig {
        backend: b,
        ..IoConfig::default()
    })
    .ok()
}

fn config() -> WalConfig {
    WalConfig {
        segment_size_bytes: 64 << 20,
        buffer_capacity_bytes: 1 << 30,
        ..WalConfig::default()
    }
}

fn meta() -> RecordMeta {
    RecordMeta::new(RecordType::HeapInsert).in_txn(TxnId(1), Lsn(0))
}

/// Appends `total` bytes of `size`-byte records from `threads` threads;
/// returns (seconds appending, seconds until flushed).
fn append(io: &Arc<dyn AsyncIo>, dir: &Path, size: usize, threads: usize) -> (f64, f64) {
    let (wal, _) = Wal::open(io.clone(), dir, config()).expect("open");
    let wal = Arc::new(wal);
    let total: usize = 256 << 20;
    let per_thread = total / size / threads;
    let payload = vec![0xA5u8; size - keel::wal::record::RECORD_HEADER_SIZE];
    let start = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (wal, payload) = (wal.clone(), payload.clone());
            std::thread::spawn(move || {
                for _ in 0..per_thread {
                    wal.append(&meta(), &payload).expect("append");
                }
            })
        })
        .collect();
    for h in hs {
        h.join().expect("thread");
    }
    let appended = start.elapsed().as_secs_f64();
    wal.flush_all().expect("flush");
    let flushed = start.elapsed().as_secs_f64();
    drop(wal);
    (appended, flushed)
}

struct Commits {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    /// Commit records per write+fdatasync (group commit batch size).
    per_flush: f64,
}

fn commits(io: &Arc<dyn AsyncIo>, dir: &Path, committers: usize, secs: f64) -> Commits {
    let (wal, _) = Wal::open(io.clone(), dir, WalConfig::default()).expect("open");
    let wal = Arc::new(wal);
    let stop = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = (0..committers)
        .map(|_| {
            let (wal, stop) = (wal.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                let payload = [7u8; 100];
                let m = RecordMeta::new(RecordType::Commit);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let a = wal.append(&m, &payload).expect("append");
                    wal.commit_wait(a).expect("commit");
                    let _ = h.record(t.elapsed().as_nanos() as u64);
                }
                h
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for h in hs {
        all.add(h.join().expect("thread")).expect("merge");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = wal.stats();
    Commits {
        per_sec: all.len() as f64 / elapsed,
        p50_us: all.value_at_quantile(0.5) as f64 / 1e3,
        p99_us: all.value_at_quantile(0.99) as f64 / 1e3,
        per_flush: stats.records as f64 / stats.flushes.max(1) as f64,
    }
}

/// The disk's ceiling for one committer: write 128 bytes, fdatasync, repeat.
fn raw_fdatasync(dir: &Path, secs: f64) -> Commits {
    let path = dir.join("raw");
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("raw file");
    // Written out in full first, as WAL segments are preallocated, so each
    // fdatasync flushes data only, not new extents.
    let zeros = vec![0u8; 1 << 20];
    for i in 0..64u64 {
        f.write_all_at(&zeros, i << 20).expect("preallocate");
    }
    f.sync_all().expect("sync");
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    let buf = [3u8; 128];
    let start = Instant::now();
    let mut off = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        f.write_all_at(&buf, off).expect("pwrite");
        f.sync_data().expect("fdatasync");
        let _ = h.record(t.elapsed().as_nanos() as u64);
        off = (off + 128) % (64 << 20);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Commits {
        per_sec: h.len() as f64 / elapsed,
        p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
        p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
        per_flush: 1.0,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `-- commits` or `-- append` runs only that part.
    let only: Option<String> = std::env::args()
        .skip(1)
        .find(|a| a == "commits" || a == "append");
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let secs: f64 = std::env::var("KEEL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    std::fs::create_dir_all("target").expect("target dir");
    let tmp = tempfile::tempdir_in("target").expect("temp dir");
    println!(
        "WAL benchmarks in {} ({secs} s per commit case)",
        tmp.path().display()
    );
    for (name, b) in [
        ("thread-pool", Backend::ThreadPool),
        ("io-uring", Backend::IoUring),
    ] {
        let Some(io) = backend(b) else {
            println!("{name}: unavailable, skipped");
            continue;
        };
        if run("append") {
            append_table(&io, tmp.path(), name);
        }
        if run("commits") {
            commit_table(&io, tmp.path(), name, secs);
        }
    }
}

fn append_table(io: &Arc<dyn AsyncIo>, tmp: &Path, name: &str) {
    println!("\n## {name}: append 256 MiB of records");
    println!("| record | threads | append MB/s | records/s | append+flush MB/s |");
    println!("|---:|---:|---:|---:|---:|");
    for size in [64usize, 256, 1024, 4096, 8192] {
        for threads in [1usize, 2] {
            let dir = tmp.join(format!("{name}-a{size}-{threads}"));
            let (appended, flushed) = append(io, &dir, size, threads);
            let mb = 256.0 * 1.048_576;
            let n = ((256usize << 20) / size / threads * threads) as f64;
            println!(
                "| {size} B | {threads} | {:.0} | {:.0} | {:.0} |",
                mb / appended,
                n / appended,
                mb / flushed
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Each committer count right after its own raw `pwrite` + `fdatasync`
/// loop: the disk's rate drifts by tens of percent within minutes, so a
/// ratio is taken against the raw rate measured just before it.
fn commit_table(io: &Arc<dyn AsyncIo>, tmp: &Path, name: &str, secs: f64) {
    println!("\n## {name}: durable commits (100-byte records)");
    println!(
        "| committers | commits/s | p50 µs | p99 µs | raw pwrite+fdatasync/s just before | × raw | commits per sync |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    // KEEL_BENCH_COMMITTERS=64 (or 1,64) runs only those cases.
    let counts: Vec<usize> = std::env::var("KEEL_BENCH_COMMITTERS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 16, 64]);
    for c in counts {
        let raw = raw_fdatasync(tmp, secs);
        let dir = tmp.join(format!("{name}-c{c}"));
        let r = commits(io, &dir, c, secs);
        println!(
            "| {c} | {:.0} | {:.0} | {:.0} | {:.0} (p50 {:.0} µs) | {:.2} | {:.1} |",
            r.per_sec,
            r.p50_us,
            r.p99_us,
            raw.per_sec,
            raw.p50_us,
            r.per_sec / raw.per_sec,
            r.per_flush
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
