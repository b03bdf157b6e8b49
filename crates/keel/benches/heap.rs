//! Heap benchmarks through the public `Database` API, on the real disk,
//! both real I/O backends, a 16 MiB buffer pool:
//!
//! - insert throughput: 1,000,000 tuples of 100 bytes in one transaction,
//!   committed at the end (rows/s over insert + commit; the relation is
//!   ~6x the pool, so eviction writes pages while it runs);
//! - random point reads by TupleId (`Transaction::get`) of 100-byte tuples,
//!   from 1 and 2 threads, with the relation inside the pool (~12 MiB) and
//!   at 4x the pool (~64 MiB), after a warm-up pass. Misses are served by
//!   the kernel's page cache (not limited here), not by the device.
//!
//! `cargo bench -p keel --bench heap` (`KEEL_BENCH_SECS`: seconds per read
//! case, default 3; `KEEL_BENCH_ROWS`: rows of the insert case; `-- insert`
//! or `-- reads` runs one part). The data lives under cargo's
//! `CARGO_TARGET_TMPDIR` and is removed afterwards.

#![allow(clippy::expect_used)] // a benchmark's setup failing is a bug to see at once

use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use keel::buffer::{BufferConfig, BufferStats};
use keel::{Config, Database, RelationId, TupleId};
use keel_io::sim::Rng;
use keel_io::{Backend, IoConfig};

/// Buffer pool size of every case.
const POOL_BYTES: usize = 16 << 20;
/// Tuple size.
const ROW: usize = 100;
/// Rows per transaction while loading a relation for the read cases.
const LOAD_BATCH: usize = 10_000;
/// One read in this many is timed for the latency percentiles.
const SAMPLE_EVERY: u64 = 16;

fn config(backend: Backend) -> Config {
    Config {
        buffer: BufferConfig {
            pool_bytes: POOL_BYTES,
            ..BufferConfig::default()
        },
        io: IoConfig {
            backend,
            ..IoConfig::default()
        },
        ..Config::default()
    }
}

/// Row `i`: its number, then a filler byte.
fn row(i: u64) -> [u8; ROW] {
    let mut r = [(i % 251) as u8; ROW];
    r[..8].copy_from_slice(&i.to_le_bytes());
    r
}

fn mib(pages: u32) -> f64 {
    f64::from(pages) * 8192.0 / f64::from(1u32 << 20)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let only: Option<String> = std::env::args()
        .skip(1)
        .find(|a| a == "insert" || a == "reads");
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let secs: f64 = env_or("KEEL_BENCH_SECS", 3.0);
    let rows: u64 = env_or("KEEL_BENCH_ROWS", 1_000_000);
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    println!(
        "heap benchmarks in {}, pool {} MiB, {secs} s per read case",
        tmp.path().display(),
        POOL_BYTES >> 20
    );
    for (name, b) in [
        ("thread-pool", Backend::ThreadPool),
        ("io-uring", Backend::IoUring),
    ] {
        if keel_io::open_backend(&config(b).io).is_err() {
            println!("{name}: unavailable, skipped");
            continue;
        }
        if run("insert") {
            insert_table(tmp.path(), name, b, rows);
        }
        if run("reads") {
            read_table(tmp.path(), name, b, secs);
        }
    }
}

fn insert_table(tmp: &Path, name: &str, b: Backend, rows: u64) {
    println!("\n## {name}: insert {rows} tuples of {ROW} B in one transaction");
    println!(
        "| rows | insert s | commit s | rows/s | heap pages (MiB) | WAL MiB | pool evictions (dirty) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let dir = tmp.join(format!("{name}-insert"));
    let db = Database::open(&dir, config(b)).expect("open");
    let rel = db.create_relation("bench").expect("create");
    let (wal0, pool0) = (db.wal_stats().bytes, db.buffer_stats());
    let start = Instant::now();
    let mut tx = db.begin().expect("begin");
    for i in 0..rows {
        tx.insert(rel, &row(i)).expect("insert");
    }
    let inserted = start.elapsed().as_secs_f64();
    tx.commit().expect("commit");
    let total = start.elapsed().as_secs_f64();
    let pages = pages_of(&db, "bench");
    let wal = (db.wal_stats().bytes - wal0) as f64 / f64::from(1u32 << 20);
    let pool = db.buffer_stats();
    println!(
        "| {rows} | {inserted:.2} | {:.3} | {:.0} | {pages} ({:.0}) | {wal:.0} | {} ({}) |",
        total - inserted,
        rows as f64 / total,
        mib(pages),
        pool.evictions - pool0.evictions,
        pool.dirty_evictions - pool0.dirty_evictions,
    );
    db.close().expect("close");
    let _ = std::fs::remove_dir_all(&dir);
}

fn pages_of(db: &Database, name: &str) -> u32 {
    db.relations()
        .into_iter()
        .find(|r| r.name == name)
        .map_or(0, |r| r.pages)
}

/// Loads `rows` tuples in `LOAD_BATCH`-row transactions, closes and reopens
/// the database (a cold pool); returns it with the relation and TupleIds.
fn load(dir: &Path, b: Backend, rows: u64) -> (Database, RelationId, Vec<TupleId>) {
    let db = Database::open(dir, config(b)).expect("open");
    let rel = db.create_relation("bench").expect("create");
    let mut tids = Vec::with_capacity(rows as usize);
    for start in (0..rows).step_by(LOAD_BATCH) {
        let mut tx = db.begin().expect("begin");
        for i in start..(start + LOAD_BATCH as u64).min(rows) {
            tids.push(tx.insert(rel, &row(i)).expect("insert"));
        }
        tx.commit().expect("commit");
    }
    db.close().expect("close");
    let db = Database::open(dir, config(b)).expect("reopen");
    (db, rel, tids)
}

/// What one read case measured.
struct Reads {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    hit_rate: f64,
}

/// Reads random tuples from `threads` threads for `secs` seconds.
fn reads(db: &Database, rel: RelationId, tids: &[TupleId], threads: usize, secs: f64) -> Reads {
    let before = db.buffer_stats();
    let deadline = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let results: Vec<(u64, Histogram<u64>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || read_loop(db, rel, tids, t as u64, start, deadline)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader"))
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let after = db.buffer_stats();
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut n = 0;
    for (count, h) in &results {
        n += count;
        hist.add(h).expect("histogram");
    }
    Reads {
        per_sec: n as f64 / elapsed,
        p50_us: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_us: hist.value_at_quantile(0.99) as f64 / 1000.0,
        hit_rate: hit_rate(&before, &after),
    }
}

fn hit_rate(before: &BufferStats, after: &BufferStats) -> f64 {
    let hits = after.hits - before.hits;
    let misses = after.misses - before.misses;
    hits as f64 / (hits + misses).max(1) as f64
}

/// One reader: its own transaction, random TupleIds, every read checked.
fn read_loop(
    db: &Database,
    rel: RelationId,
    tids: &[TupleId],
    seed: u64,
    start: Instant,
    deadline: Duration,
) -> (u64, Histogram<u64>) {
    let mut rng = Rng::new(0x4b45_454c ^ seed);
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let tx = db.begin().expect("begin");
    let mut n = 0u64;
    loop {
        if n.is_multiple_of(1024) && start.elapsed() >= deadline {
            break;
        }
        let i = rng.below(tids.len() as u64);
        let timed = n.is_multiple_of(SAMPLE_EVERY);
        let t0 = timed.then(Instant::now);
        let value = tx.get(rel, tids[i as usize]).expect("get");
        if let Some(t0) = t0 {
            let _ = hist.record(t0.elapsed().as_nanos() as u64);
        }
        let value = value.expect("tuple present");
        assert_eq!(value[..8], i.to_le_bytes(), "tuple {}", tids[i as usize]);
        n += 1;
    }
    tx.commit().expect("commit");
    (n, hist)
}

fn read_table(tmp: &Path, name: &str, b: Backend, secs: f64) {
    println!("\n## {name}: random point reads of {ROW}-byte tuples by TupleId");
    println!(
        "| working set | rows | heap MiB | threads | reads/s | p50 µs | p99 µs | pool hit rate |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (label, rows) in [("in pool", 120_000u64), ("4x pool", 640_000)] {
        let dir = tmp.join(format!("{name}-reads-{rows}"));
        let (db, rel, tids) = load(&dir, b, rows);
        let heap = mib(pages_of(&db, "bench"));
        // Warm-up: random reads for a third of the case time fill the pool.
        reads(&db, rel, &tids, 1, (secs / 3.0).max(0.5));
        for threads in [1usize, 2] {
            let r = reads(&db, rel, &tids, threads, secs);
            println!(
                "| {label} | {rows} | {heap:.1} | {threads} | {:.0} | {:.2} | {:.2} | {:.3} |",
                r.per_sec, r.p50_us, r.p99_us, r.hit_rate
            );
        }
        db.close().expect("close");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
