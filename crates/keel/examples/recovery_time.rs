//! Time from a crash to an open database, in one process, for paired
//! engine comparisons (BENCHMARKS.md, "Paired"):
//!
//! ```text
//! cargo run --release -p keel --example recovery_time -- [WAL_MIB] [REPEATS] [DIR]
//! ```
//!
//! Per repeat: a fresh database (64 MiB buffer pool, the default
//! configuration otherwise), one relation, a checkpoint, then rows of an
//! 8-byte id and 100 bytes in transactions of 10,000 one `insert` each
//! until WAL_MIB (default 256) of log follow the checkpoint; the database
//! is dropped without `close` (the crash: nothing more is written), and
//! `Database::open` is timed (analysis, redo, undo; the end-of-recovery
//! checkpoint as the default configuration takes it). Prints seconds and
//! replay MB/s per repeat.

use std::path::PathBuf;
use std::time::Instant;

use keel::{Config, Database};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let wal_mib: u64 = args.get(1).map_or(Ok(256), |s| s.parse())?;
    let repeats: u32 = args.get(2).map_or(Ok(3), |s| s.parse())?;
    let root = args.get(3).map_or_else(
        || std::env::temp_dir().join("keel-recovery-time"),
        PathBuf::from,
    );
    let mut config = Config::default();
    config.buffer.pool_bytes = 64 << 20;
    for r in 0..repeats {
        let dir = root.join(format!("r{r}"));
        let _ = std::fs::remove_dir_all(&dir);
        let db = Database::open(&dir, config.clone())?;
        let rel = db.create_relation("bench")?;
        db.checkpoint()?;
        let start = db.wal_end().0;
        let mut row = vec![7u8; 108];
        let mut id = 0u64;
        while db.wal_end().0 - start < wal_mib << 20 {
            let mut tx = db.begin()?;
            for _ in 0..10_000 {
                row[..8].copy_from_slice(&id.to_le_bytes());
                tx.insert(rel, &row)?;
                id += 1;
            }
            tx.commit()?;
        }
        let written = db.wal_end().0 - start;
        drop(db);
        let t = Instant::now();
        let db = Database::open(&dir, config.clone())?;
        let secs = t.elapsed().as_secs_f64();
        assert!(!db.recovery_report().clean_shutdown, "not a crash");
        println!(
            "repeat {r}: {written} bytes of log, open {secs:.3} s, {:.0} MB/s",
            written as f64 / secs / 1e6
        );
        db.close()?;
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
