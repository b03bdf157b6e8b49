//! Shared helpers of the archive tests: a small database, a workload, and
//! reading the same records from the log and from the archive.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::sync::Arc;
use std::time::Duration;

use keel::buffer::BufferConfig;
use keel::types::Lsn;
use keel::wal::RecordHeader;
use keel::{Config, Database, RelationId};
use keel_archive::{ArchiveReader, ArchiverOptions};

/// A record: its header and payload.
pub type Rec = (RecordHeader, Vec<u8>);

/// Small segments (so a workload crosses many) and a small pool.
pub fn config() -> Config {
    let mut c = Config {
        buffer: BufferConfig::with_frames(64),
        checkpoint_interval: None,
        ..Config::default()
    };
    c.wal.segment_size_bytes = 128 << 10;
    c.wal.max_batch_bytes = 32 << 10;
    c.wal.min_wal_size_bytes = 0;
    c
}

pub fn open(dir: &std::path::Path) -> Arc<Database> {
    Arc::new(Database::open(dir, config()).unwrap())
}

/// Archiver options that make a test quick: short delays and backoff,
/// chunks of one segment's size at most.
pub fn fast() -> ArchiverOptions {
    ArchiverOptions {
        max_chunk_bytes: keel::wal::record::MAX_RECORD_SIZE,
        max_delay: Duration::from_millis(20),
        poll_interval: Duration::from_millis(2),
        op_timeout: Duration::from_secs(5),
        max_backoff: Duration::from_millis(20),
        stop_timeout: Duration::from_secs(10),
        ..ArchiverOptions::default()
    }
}

pub fn value(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// `txns` transactions of `rows` inserts of 300 bytes each, a checkpoint
/// every `checkpoint_every` transactions.
pub fn workload(db: &Database, rel: RelationId, txns: usize, rows: usize, checkpoint_every: usize) {
    for t in 0..txns {
        let mut tx = db.begin().unwrap();
        for r in 0..rows {
            tx.insert(rel, &value(t * rows + r, 300)).unwrap();
        }
        tx.commit().unwrap();
        if checkpoint_every > 0 && t % checkpoint_every == checkpoint_every - 1 {
            db.checkpoint().unwrap();
        }
    }
}

/// The log's records from `from` to its durable end.
pub fn log_records(db: &Database, from: Lsn) -> Vec<Rec> {
    db.log_reader(from)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.header, r.payload)
        })
        .collect()
}

/// The archive's records of timeline 1, verified chunk by chunk.
pub fn archive_records(reader: &ArchiveReader, database_id: u64) -> Vec<Rec> {
    let mut out = Vec::new();
    reader
        .visit(1, Some(database_id), |chunk| {
            out.extend(chunk.records().map(|(h, p)| (*h, p.to_vec())));
            Ok(())
        })
        .unwrap();
    out
}

/// Archives a workload through `target`, waits for it, stops, and checks
/// the archive: every chunk decodes, the chain is continuous, and its
/// records are exactly the log's from where archiving began.
pub fn archive_and_compare(target: &keel_archive::ArchiveTarget, options: ArchiverOptions) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let rel = db.create_relation("r").unwrap();
    let start = db.durable_lsn();
    let archiver = keel_archive::Archiver::start(db.clone(), target, options).unwrap();
    // No checkpoints: the log must stay to be compared (once archived,
    // a checkpoint may retire it).
    workload(&db, rel, 40, 20, 0);
    let durable = db.durable_lsn();
    archiver
        .wait_archived(durable, Duration::from_secs(20))
        .unwrap();
    let status = archiver.status();
    assert!(status.chunks >= 4, "{status:?}");
    assert!(!status.failed, "{status:?}");
    let end = archiver.stop().unwrap();
    assert!(end >= durable);
    let reader = ArchiveReader::open(target, Duration::from_secs(5)).unwrap();
    let report = reader.verify(1, Some(db.database_id())).unwrap();
    assert_eq!(report.start, start);
    assert!(report.end >= durable.min(report.end) && report.end <= end);
    assert!(
        report.min_commit_time_us > 0 && report.min_commit_time_us <= report.max_commit_time_us
    );
    let archived = archive_records(&reader, db.database_id());
    let logged = log_records(&db, start);
    assert_eq!(archived.len(), logged.len());
    assert!(
        archived == logged,
        "the archive's records differ from the log's"
    );
    assert_eq!(report.records, logged.len() as u64);
}
