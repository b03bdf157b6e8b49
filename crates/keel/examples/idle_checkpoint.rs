//! Times checkpoints of a database with many relations and no changes
//! (the figure in BENCHMARKS.md, "Idle checkpoint"):
//!
//! ```text
//! cargo run --release -p keel --example idle_checkpoint -- [RELATIONS] [DIR]
//! ```
//!
//! Creates RELATIONS relations (default 2000) with one tuple each in DIR
//! (default: a new directory under the system temp dir, removed at the
//! end), takes one checkpoint that saves everything, then five with
//! nothing changed, and prints each report.

use std::path::PathBuf;
use std::time::Instant;

use keel::{Config, Database};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let relations: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let (dir, temporary) = match args.next() {
        Some(d) => (PathBuf::from(d), false),
        None => (
            std::env::temp_dir().join(format!("keel-idle-checkpoint-{}", std::process::id())),
            true,
        ),
    };
    let config = Config {
        checkpoint_interval: None,
        checkpoint_wal_bytes: 0,
        ..Config::default()
    };
    let db = Database::open(&dir, config)?;
    let started = Instant::now();
    for i in 0..relations {
        let rel = db.create_relation(&format!("r{i}"))?;
        let mut tx = db.begin()?;
        tx.insert(rel, b"one tuple")?;
        tx.commit()?;
    }
    println!(
        "{relations} relations created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let first = db.checkpoint()?;
    println!("first checkpoint: {first:?}");
    let mut ms = Vec::new();
    for _ in 0..5 {
        let report = db.checkpoint()?;
        println!("idle checkpoint: {report:?}");
        ms.push(report.duration.as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "idle checkpoint median {:.2} ms (min {:.2}, max {:.2})",
        ms[2], ms[0], ms[4]
    );
    db.close()?;
    if temporary {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
