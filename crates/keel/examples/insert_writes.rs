//! Keel's own write requests for the load of `keel bench insert`
//! (BENCHMARKS.md, "Heap"), counted by the I/O backend rather than by the
//! kernel's `write_bytes`, which counts a page dirtied again after its
//! writeback once more:
//!
//! ```text
//! cargo run --release -p keel --example insert_writes -- [ROWS] [batch|rows] [REPEATS] [DIR]
//! ```
//!
//! Like the bench: a 64 MiB buffer pool, the default configuration
//! otherwise, ROWS (default 1,000,000) rows of an 8-byte id and 100 bytes
//! in transactions of 10,000, through `Transaction::insert_many` (`batch`,
//! the default) or one `insert` per row (`rows`); the relation is dropped
//! and created again before each of REPEATS (default 3) runs, and each run
//! ends with a checkpoint, so the bytes count the heap pages as well as the
//! log. Per run it prints rows/s (inserts and commits, not the checkpoint)
//! and the bytes written per logical byte: log records (what the log
//! writer wrote, a partial block written again counted again), the rest of
//! the WAL writes (zero-fill of new segments and their headers), data
//! pages, and the control file and FSM, then the kernel's count for the
//! process (Linux; what `keel bench` reports). DIR defaults
//! to a new directory under the system temp dir, removed at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use keel::{Config, Database, RelationId};
use keel_io::{FileClass, IoStats, OpKind};

const BATCH_ROWS: u64 = 10_000;
const PAYLOAD_BYTES: usize = 100;

/// The kernel's `write_bytes` for this process (Linux), what `keel bench`
/// reports.
fn kernel_write_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Bytes written by successful write requests to files of `class`.
fn written(stats: &IoStats, class: FileClass) -> u64 {
    [OpKind::Write, OpKind::WriteV]
        .iter()
        .filter_map(|&op| stats.get(op, class))
        .map(|s| s.bytes)
        .sum()
}

fn load(db: &Database, rel: RelationId, rows: u64, batch: bool) -> keel::Result<()> {
    let payload: Vec<u8> = (0..PAYLOAD_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    let mut id = 0;
    while id < rows {
        let n = BATCH_ROWS.min(rows - id);
        let values: Vec<Vec<u8>> = (id..id + n)
            .map(|i| [&i.to_le_bytes()[..], &payload].concat())
            .collect();
        let mut tx = db.begin()?;
        if batch {
            tx.insert_many(rel, &values)?;
        } else {
            for v in &values {
                tx.insert(rel, v)?;
            }
        }
        tx.commit()?;
        id += n;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let batch = args.next().is_none_or(|m| m != "rows");
    let repeats: u32 = args.next().map_or(Ok(3), |a| a.parse())?;
    let (dir, temporary) = match args.next() {
        Some(d) => (PathBuf::from(d), false),
        None => (
            std::env::temp_dir().join(format!("keel-insert-writes-{}", std::process::id())),
            true,
        ),
    };
    let mut config = Config::default();
    config.buffer.pool_bytes = 64 << 20;
    config.io = config.io.with_env()?;
    let io = keel_io::open_backend(&config.io)?;
    let db = Database::open_with_io(&dir, config, Arc::clone(&io))?;
    let logical = (rows * (8 + PAYLOAD_BYTES as u64)) as f64;
    let per = |bytes: u64| bytes as f64 / logical;
    println!(
        "| run | rows/s | log records | other WAL writes | data | control + FSM | total | kernel write_bytes |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in 1..=repeats {
        if db.relation("bench")?.is_some() {
            db.drop_relation("bench")?;
        }
        let rel = db.create_relation("bench")?;
        let (io0, log0) = (io.stats(), db.wal_stats().bytes_written);
        let kernel0 = kernel_write_bytes();
        let started = Instant::now();
        load(&db, rel, rows, batch)?;
        let secs = started.elapsed().as_secs_f64();
        db.checkpoint()?;
        let (io1, log1) = (io.stats(), db.wal_stats().bytes_written);
        let kernel = match (kernel0, kernel_write_bytes()) {
            (Some(a), Some(b)) => format!("{:.2}", per(b.saturating_sub(a))),
            _ => "-".into(),
        };
        let delta = |class| written(&io1, class) - written(&io0, class);
        let records = log1 - log0;
        let wal = delta(FileClass::Wal);
        let data = delta(FileClass::Data);
        let other = delta(FileClass::Control) + delta(FileClass::Other);
        println!(
            "| {run} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {kernel} |",
            rows as f64 / secs,
            per(records),
            per(wal.saturating_sub(records)),
            per(data),
            per(other),
            per(wal + data + other),
        );
    }
    db.close()?;
    if temporary {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
