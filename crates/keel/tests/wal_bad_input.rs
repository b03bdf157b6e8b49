#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Bad WAL input at the database level. The data directory of a real-file
//! database is copied (while it is open, as a crash would leave it) onto the
//! simulated disk, its log is damaged, and `Database::open` must:
//! - after a torn tail (the last segment zeroed from any byte offset within
//!   the last records; segments are fixed-size and zero-filled, so this is
//!   what a truncated log looks like) recover exactly the transactions whose
//!   commit record lies wholly before the cut;
//! - refuse a flipped bit in a record's header, length or payload that is
//!   followed by valid records with a corruption error naming the record's
//!   LSN (invariant 10), never a panic;
//! - refuse a log with a missing middle segment, naming the segment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel::buffer::BufferConfig;
use keel::wal::RecordType;
use keel::wal::record::{RECORD_HEADER_SIZE, offsets};
use keel::wal::segment::segment_file_name;
use keel::{Config, Database, ErrorClass, Lsn, RelationId, TupleId, TxnId};
use keel_io::AsyncIo;
mod common;

use keel_io::sim::{SimConfig, SimDisk, SimIo};

const SEGMENT: u64 = 64 * 1024;

fn config() -> Config {
    let mut c = Config {
        buffer: BufferConfig::with_frames(256),
        checkpoint_interval: None,
        checkpoint_wal_bytes: 0,
        recovery_checkpoint: keel::RecoveryCheckpoint::BeforeOpenReturns,
        ..Config::default()
    };
    c.wal.segment_size_bytes = SEGMENT as u32;
    c.wal.max_batch_bytes = 16 << 10;
    c.wal.buffer_capacity_bytes = 1 << 20;
    c
}

/// A committed transaction: its id, its tuple, its value.
struct Committed {
    txn: TxnId,
    tid: TupleId,
    value: Vec<u8>,
}

/// Commits `n` one-tuple transactions (sizes from `len`) into a real-file
/// database and copies its directory, as it is while still open, onto a
/// simulated disk under `/db`, leaving out the segments `skip`.
fn image(
    n: usize,
    len: impl Fn(usize) -> usize,
    skip: &[u64],
) -> (SimDisk, RelationId, Vec<Committed>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut done = Vec::new();
    for i in 0..n {
        let value: Vec<u8> = (0..len(i)).map(|k| (i * 7 + k) as u8).collect();
        let mut tx = db.begin().unwrap();
        let txn = tx.id();
        let tid = tx.insert(rel, &value).unwrap();
        tx.commit().unwrap();
        done.push(Committed { txn, tid, value });
    }
    let skipped: Vec<String> = skip.iter().map(|&s| segment_file_name(s)).collect();
    let mut disk = SimDisk::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(sub) = stack.pop() {
        for entry in std::fs::read_dir(dir.path().join(&sub)).unwrap() {
            let entry = entry.unwrap();
            let rel_path = sub.join(entry.file_name());
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                stack.push(rel_path);
            } else if name != "LOCK" && !skipped.contains(&name) {
                let bytes = std::fs::read(entry.path()).unwrap();
                disk = disk.with_file(&Path::new("/db").join(&rel_path), &bytes);
            }
        }
    }
    drop(db);
    (disk, rel, done)
}

fn boot(disk: SimDisk) -> Arc<SimIo> {
    Arc::new(SimIo::from_disk(disk, SimConfig::seeded(3)))
}

fn open(disk: SimDisk) -> keel::Result<Database> {
    Database::open_with_io("/db", config(), boot(disk) as Arc<dyn AsyncIo>)
}

/// Every record of the log: (LSN, end, type, transaction).
fn records(disk: &SimDisk) -> Vec<(Lsn, Lsn, RecordType, TxnId)> {
    common::log_records(disk)
        .into_iter()
        .map(|r| (r.header.lsn, r.end(), r.header.kind, r.header.txn))
        .collect()
}

fn segment_path(lsn: Lsn) -> PathBuf {
    Path::new("/db/wal").join(segment_file_name(lsn.0 / SEGMENT))
}

/// The disk with the log's segment holding `at` changed by `edit(bytes,
/// offset of at)`.
fn edited(disk: &SimDisk, at: Lsn, edit: impl FnOnce(&mut Vec<u8>, usize)) -> SimDisk {
    let path = segment_path(at);
    let mut bytes = disk.file(&path).unwrap().to_vec();
    edit(&mut bytes, (at.0 % SEGMENT) as usize);
    disk.clone().with_file(&path, &bytes)
}

fn scan(db: &Database, rel: RelationId) -> BTreeMap<TupleId, Vec<u8>> {
    let tx = db.begin().unwrap();
    tx.scan(rel).unwrap().map(|r| r.unwrap()).collect()
}

#[test]
fn a_log_cut_at_every_byte_of_its_last_records_recovers_exactly_the_whole_commits() {
    let (disk, rel, done) = image(12, |i| [10, 300, 40, 1200, 5][i % 5], &[]);
    let recs = records(&disk);
    let commit_end = |txn: TxnId| {
        recs.iter()
            .find(|r| r.2 == RecordType::Commit && r.3 == txn)
            .map(|r| r.1)
    };
    // Every commit of ours is in the log, each after the one before.
    let ends: Vec<Lsn> = done.iter().map(|c| commit_end(c.txn).unwrap()).collect();
    assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");
    // The last records: those of the last four transactions.
    let from = recs
        .iter()
        .find(|r| r.3 == done[done.len() - 4].txn)
        .unwrap()
        .0;
    let to = recs.last().unwrap().1;
    assert_eq!(from.0 / SEGMENT, to.0 / SEGMENT, "the tail spans segments");
    assert!(to.0 - from.0 > 1000, "tail of {} bytes", to.0 - from.0);
    let segment = disk.file(&segment_path(from)).unwrap().to_vec();
    for cut in from.0..=to.0 {
        let damaged = edited(&disk, Lsn(cut), |b, off| b[off..].fill(0));
        let db = open(damaged).unwrap_or_else(|e| panic!("log cut at {}: {e}", Lsn(cut)));
        // Zeroing bytes that were zero already changes nothing: the log
        // really ends at the first byte the cut changed.
        let changed = (cut..to.0)
            .find(|&p| segment[(p % SEGMENT) as usize] != 0)
            .unwrap_or(to.0);
        let expected: BTreeMap<TupleId, Vec<u8>> = done
            .iter()
            .zip(&ends)
            .filter(|(_, end)| end.0 <= changed)
            .map(|(c, _)| (c.tid, c.value.clone()))
            .collect();
        let found = scan(&db, rel);
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "log cut at {}",
            Lsn(cut)
        );
        assert!(found == expected, "log cut at {}: values differ", Lsn(cut));
        drop(db);
    }
}

#[test]
fn a_flipped_bit_followed_by_valid_records_is_a_corruption_error_naming_the_lsn() {
    let (disk, _, done) = image(8, |i| 50 + i * 90, &[]);
    let recs = records(&disk);
    // Both records (insert, commit) of two transactions before the last.
    let victims: Vec<_> = recs
        .iter()
        .filter(|r| r.3 == done[4].txn || r.3 == done[6].txn)
        .copied()
        .collect();
    assert!(victims.len() >= 4, "{victims:?}");
    for (lsn, end, kind, _) in victims {
        let len = (end.0 - lsn.0) as usize;
        let mut places = vec![
            ("crc", offsets::CRC, 0x01u8),
            ("length low bit", offsets::TOTAL_LEN, 0x01),
            ("length high bit", offsets::TOTAL_LEN + 3, 0x80),
            ("lsn", offsets::LSN, 0x04),
            ("prev lsn", offsets::PREV_LSN + 1, 0x10),
            ("txn", offsets::TXN_ID, 0x02),
            ("batch back", offsets::BATCH_BACK, 0x40),
            ("type", offsets::TYPE, 0x01),
        ];
        if len > RECORD_HEADER_SIZE {
            places.push(("payload start", RECORD_HEADER_SIZE, 0x20));
            places.push(("payload end", len - 1, 0x08));
        }
        for (what, offset, flip) in places {
            let damaged = edited(&disk, lsn, |b, off| b[off + offset] ^= flip);
            let e = open(damaged)
                .map(drop)
                .err()
                .unwrap_or_else(|| panic!("{kind:?} record at {lsn}: flipped {what} accepted"));
            assert_eq!(
                e.class(),
                ErrorClass::Corruption,
                "{kind:?} record at {lsn}, {what}: {e}"
            );
            let text = e.to_string();
            assert!(
                text.contains(&lsn.to_string()) && text.contains("corrupt"),
                "{kind:?} record at {lsn}, {what}: {text}"
            );
        }
    }
}

#[test]
fn a_missing_middle_segment_is_a_clear_error_naming_it() {
    let (disk, _, _) = image(200, |i| 900 + i % 50, &[2]);
    let segments: Vec<_> = disk
        .files()
        .filter(|(p, _)| p.starts_with("/db/wal"))
        .map(|(p, _)| p.to_path_buf())
        .collect();
    assert!(
        segments.contains(&Path::new("/db/wal").join(segment_file_name(3))),
        "segment 2 is not in the middle: {segments:?}"
    );
    assert!(!segments.contains(&Path::new("/db/wal").join(segment_file_name(2))));
    let e = open(disk).map(drop).expect_err("opened without segment 2");
    assert_eq!(e.class(), ErrorClass::Corruption, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("segment 2") && text.contains("missing"),
        "{text}"
    );
}
