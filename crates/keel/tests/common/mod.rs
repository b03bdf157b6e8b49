//! Helpers shared by the crash and fault tests on the simulated disk.

#![allow(dead_code)] // each test file uses the helpers it needs

use std::sync::Arc;

use keel::buffer::BufferConfig;
use keel::{Config, Database};
use keel_io::AsyncIo;
use keel_io::sim::{SimConfig, SimDisk, SimIo};

pub mod side;

/// A small engine for crash tests: `frames` buffer frames (so evictions
/// happen), 1 MiB log segments and 128 KiB flush batches (so segments roll
/// over), no automatic checkpoints (the tests take them), and redo
/// consistency checking on: every recovery compares the pages it rebuilds
/// with the images logged at run time.
pub fn small_config(frames: usize) -> Config {
    let mut c = Config {
        buffer: BufferConfig::with_frames(frames),
        checkpoint_interval: None,
        checkpoint_wal_bytes: 0,
        recovery_checkpoint: keel::RecoveryCheckpoint::BeforeOpenReturns,
        consistency_check: true,
        ..Config::default()
    };
    c.wal.segment_size_bytes = 1 << 20;
    c.wal.max_batch_bytes = 128 << 10;
    c
}

/// Opens (creating or recovering) the database at `/db` on the simulator.
pub fn open_sim(sim: &Arc<SimIo>, config: Config) -> keel::Result<Database> {
    Database::open_with_io("/db", config, Arc::clone(sim) as Arc<dyn AsyncIo>)
}

/// Every record of the log in `/db/wal` on a simulated disk, read from the
/// start (a torn tail ends it).
pub fn log_records(disk: &SimDisk) -> Vec<keel::wal::LogRecord> {
    use keel::wal::{RecoveryMode, WalReader};
    let io = Arc::new(SimIo::from_disk(disk.clone(), SimConfig::seeded(7))) as Arc<dyn AsyncIo>;
    WalReader::open_read_only(
        io,
        std::path::Path::new("/db/wal"),
        keel::Lsn::ZERO,
        RecoveryMode::TolerateTornTail,
    )
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}
