//! Write-ahead log tests: round trips across segments on every backend,
//! group commit under crashes, poisoning, torn tails at every byte, bit
//! flips, stale records, recycling, archive and restore.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keel::WalError;
use keel::types::{Lsn, TxnId};
use keel::wal::record::RECORD_HEADER_SIZE;
use keel::wal::segment::{SegmentDir, SegmentHeader, segment_file_name};
use keel::wal::{
    CommitMode, RecordMeta, RecordType, RecoveryMode, RetentionPolicy, Wal, WalConfig, archive,
};
use keel_io::sim::{Fault, FaultRule, SimDisk};
use keel_io::{AsyncIo, Backend, FileClass, IoConfig, OpKind};
use parking_lot::Mutex;

mod common;

use common::{reboot, small_wal_config as small_config, wal_sim as sim};

const DIR: &str = "/db/wal";

/// A deterministic payload for record `i`.
fn payload(i: u64) -> Vec<u8> {
    let len = (i * 7919 % 3000) as usize;
    (0..len).map(|j| (i as usize + j * 31) as u8).collect()
}

fn meta(i: u64) -> RecordMeta {
    RecordMeta::new(RecordType::HeapInsert).in_txn(TxnId(i), Lsn(i))
}

/// Reads every record from the start; returns (lsn, txn, payload).
fn read_all(wal: &Wal) -> Vec<(Lsn, u64, Vec<u8>)> {
    let reader = wal.reader(Lsn(0), RecoveryMode::TolerateTornTail).unwrap();
    reader
        .map(|r| {
            let r = r.unwrap();
            (r.header.lsn, r.header.txn.0, r.payload)
        })
        .collect()
}

fn open(io: Arc<dyn AsyncIo>, config: WalConfig) -> Wal {
    Wal::open(io, Path::new(DIR), config).unwrap().0
}

/// Appends records `0..n` (meta and payload of each index), flushing
/// after every `flush_every`-th, then everything; returns (lsn, txn,
/// payload) of each, as [`read_all`] reads them back.
fn append_flushed(wal: &Wal, n: u64, flush_every: u64) -> Vec<(Lsn, u64, Vec<u8>)> {
    let mut written = Vec::new();
    for i in 0..n {
        let a = wal.append(&meta(i), &payload(i)).unwrap();
        written.push((a.lsn, i, payload(i)));
        if i % flush_every == 0 {
            wal.flush(a.lsn).unwrap();
        }
    }
    wal.flush_all().unwrap();
    written
}

fn round_trip(io: Arc<dyn AsyncIo>, dir: &Path, config: WalConfig) {
    let (wal, report) = Wal::open(io.clone(), dir, config.clone()).unwrap();
    assert!(report.created);
    let mut written = append_flushed(&wal, 600, 50);
    assert_eq!(read_all(&wal), written);
    let end = wal.end_lsn();
    assert!(wal.stats().flushes > 0);
    wal.close().unwrap();

    let (wal, report) = Wal::open(io, dir, config).unwrap();
    assert!(!report.created);
    assert_eq!(report.end, end);
    assert_eq!(report.cut, None);
    assert!(report.segments > 5, "{} segments", report.segments);
    let a = wal.append(&meta(9999), b"after reopen").unwrap();
    assert_eq!(a.lsn, end);
    wal.flush(a.lsn).unwrap();
    written.push((a.lsn, 9999, b"after reopen".to_vec()));
    assert_eq!(read_all(&wal), written);
    wal.close().unwrap();
}

#[test]
fn round_trip_across_segments_on_sim() {
    round_trip(sim(1), Path::new(DIR), small_config());
}

#[test]
fn the_log_is_written_with_o_direct_where_the_file_system_has_it_and_through_the_cache_where_not() {
    let io = sim(3);
    let (wal, _) = Wal::open(io.clone(), Path::new(DIR), small_config()).unwrap();
    assert!(wal.direct_io(), "O_DIRECT is the default where supported");
    wal.close().unwrap();

    let refusing = Arc::new(keel_io::sim::SimIo::new(keel_io::sim::SimConfig {
        direct_io_supported: false,
        ..keel_io::sim::SimConfig::seeded(4)
    }));
    refusing.create_dir(Path::new("/db")).wait().unwrap();
    round_trip(refusing.clone(), Path::new(DIR), small_config());
    let (wal, _) = Wal::open(refusing, Path::new(DIR), small_config()).unwrap();
    assert!(
        !wal.direct_io(),
        "a refused O_DIRECT falls back to the page cache"
    );
    wal.close().unwrap();

    let buffered = WalConfig {
        direct_io: false,
        ..small_config()
    };
    let (wal, _) = Wal::open(io, Path::new(DIR), buffered).unwrap();
    assert!(!wal.direct_io(), "direct_io: false is never direct");
    wal.close().unwrap();
}

/// With O_DIRECT a batch is written from the start of its block and padded
/// to the block's end. The padding is zeroes even when the staging buffer
/// last held a larger batch: no fragment of an earlier batch lands after
/// the log's end, where a reader would take it for the next record.
#[test]
fn a_direct_batchs_padding_is_zeroes_after_a_larger_batch() {
    let io = sim(71);
    let wal = open(io.clone(), small_config());
    assert!(wal.direct_io());
    let mut last = Lsn::ZERO;
    for i in 0..40 {
        last = wal.append(&meta(i), &[0xAB; 1000]).unwrap().lsn;
    }
    wal.flush(last).unwrap();
    let small = wal.append(&meta(40), &[0xCD; 10]).unwrap().lsn;
    wal.flush(small).unwrap();
    let end = wal.end_lsn();
    let disk = io.crash();
    drop(wal);
    let size = u64::from(small_config().segment_size_bytes);
    assert_eq!(end.0 / size, 0, "the log fits its first segment");
    assert_zero_after_end(&disk, end, "");
}

/// The bytes after the log's end `end` up to its block's end on `disk`
/// (a small-config log) are zero: no fragment of an earlier batch lies
/// where a reader would take it for the next record. `when` prefixes the
/// failure.
fn assert_zero_after_end(disk: &SimDisk, end: Lsn, when: &str) {
    let size = u64::from(small_config().segment_size_bytes);
    let bytes = disk
        .file(&Path::new(DIR).join(segment_file_name(end.0 / size)))
        .unwrap();
    let from = (end.0 % size) as usize;
    let to = from.next_multiple_of(4096);
    let dirty = bytes[from..to].iter().filter(|&&b| b != 0).count();
    assert_eq!(
        dirty, 0,
        "{when}{dirty} non-zero bytes in the padding after the log's end at {from}"
    );
}

/// With O_DIRECT each batch rewrites the partial block the last one ended
/// in, from the bytes the last write's buffer still holds, and pads its
/// last block with zeroes: batches that stay in one block, cross into the
/// next, cross several, and outgrow the buffer, in a deterministic mix,
/// each synced; a power cut after any of them reads every record back,
/// with zeroes after the log's end.
#[test]
fn direct_batches_of_every_size_after_each_other_read_back_after_a_power_cut() {
    for batches in 1..=120 {
        direct_batches_then_power_cut(batches);
    }
}

fn direct_batches_then_power_cut(batches: usize) {
    let io = sim(72);
    let wal = open(io.clone(), small_config());
    assert!(wal.direct_io());
    let mut written = Vec::new();
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut i = 0u64;
    for _ in 0..batches {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // Mostly batches inside one block; now and then a block's worth or
        // several, and one in 16 larger than any batch before it.
        let (records, len) = match (state >> 33) % 16 {
            0 => (8, 6000),
            1..=3 => (2, 1500),
            _ => (1, ((state >> 40) % 200) as usize),
        };
        let mut last = Lsn::ZERO;
        for _ in 0..records {
            let bytes: Vec<u8> = (0..len).map(|j| (i as usize * 7 + j) as u8 | 1).collect();
            last = wal.append(&meta(i), &bytes).unwrap().lsn;
            written.push((last, i, bytes));
            i += 1;
        }
        wal.flush(last).unwrap();
    }
    let end = wal.end_lsn();
    let disk = io.crash();
    drop(wal);
    assert_zero_after_end(&disk, end, &format!("after {batches} batches: "));
    let wal = open(reboot(disk, 73), small_config());
    assert_eq!(wal.end_lsn(), end, "after {batches} batches: the log's end");
    assert_eq!(read_all(&wal), written, "after {batches} batches");
    wal.close().unwrap();
}

fn real_backend(backend: Backend) -> Option<Arc<dyn AsyncIo>> {
    let config = IoConfig {
        backend,
        ..IoConfig::default()
    };
    match keel_io::open_backend(&config) {
        Ok(io) => Some(io),
        Err(e) => {
            eprintln!("skipping {backend:?}: {e}");
            None
        }
    }
}

fn real_dir() -> tempfile::TempDir {
    // /work is a real disk file system (O_DIRECT works there); fall back to
    // the default temp dir elsewhere.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// Records sized so that some end exactly at a segment boundary.
#[test]
fn records_ending_exactly_at_a_segment_end() {
    let io = sim(2);
    let wal = open(io.clone(), small_config());
    let seg = 64 * 1024u64;
    // The first segment holds seg - 4096 bytes of records: fill it exactly
    // with records of 1024 bytes, then keep going.
    let record = 1024 - RECORD_HEADER_SIZE;
    let per_segment = (seg - 4096) / 1024;
    let mut lsns = Vec::new();
    for i in 0..per_segment * 3 {
        lsns.push(wal.append(&meta(i), &vec![i as u8; record]).unwrap().lsn);
    }
    wal.flush_all().unwrap();
    assert_eq!(lsns[per_segment as usize], Lsn(seg + 4096));
    let got: Vec<Lsn> = read_all(&wal).into_iter().map(|r| r.0).collect();
    assert_eq!(got, lsns);
    let end = wal.end_lsn();
    wal.close().unwrap();
    assert_eq!(open(io, small_config()).end_lsn(), end);
}

/// A durable end that follows a segment's padding is not a record's end;
/// `last_record_end` gives the end of the record before the padding (a
/// base backup's end LSN, where a restore must be able to stop).
#[test]
fn the_last_record_end_before_a_segments_padding() {
    let io = sim(3);
    let wal = open(io, small_config());
    let written = append_flushed(&wal, 400, 7);
    let ends: Vec<Lsn> = written
        .iter()
        .map(|(lsn, _, p)| Lsn(lsn.0 + (RECORD_HEADER_SIZE + p.len()) as u64))
        .collect();
    let seg = small_config().segment_size_bytes as u64;
    let last = *ends.last().unwrap();
    let mut padded = 0;
    for n in 1..last.0 / seg {
        let boundary = Lsn(n * seg);
        let before = *ends.iter().filter(|e| **e <= boundary).max().unwrap();
        padded += usize::from(before < boundary);
        assert_eq!(wal.last_record_end(boundary, Lsn(0)).unwrap(), before);
        assert_eq!(wal.last_record_end(boundary, boundary).unwrap(), boundary);
    }
    assert!(padded > 3, "{padded} segments end in padding");
    for e in &ends[..50] {
        assert_eq!(wal.last_record_end(*e, Lsn(0)).unwrap(), *e);
    }
    wal.close().unwrap();
}

#[test]
fn round_trip_on_real_backends_buffered_and_direct() {
    for backend in [Backend::ThreadPool, Backend::IoUring] {
        let Some(io) = real_backend(backend) else {
            continue;
        };
        for direct_io in [false, true] {
            let tmp = real_dir();
            let config = WalConfig {
                direct_io,
                ..small_config()
            };
            round_trip(io.clone(), &tmp.path().join("wal"), config);
        }
    }
}

/// Committers on `io`: each appends and waits for durability `per_thread`
/// times; returns what they were acknowledged for.
fn commit_concurrently(wal: &Arc<Wal>, threads: u64, per_thread: u64) -> Vec<(Lsn, u64)> {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..per_thread {
                    let id = t * 1_000_000 + i;
                    let a = wal.append(&meta(id), &payload(id % 97)).unwrap();
                    wal.commit_wait(a).unwrap();
                    assert!(wal.durable_lsn() >= a.end, "acknowledged before durable");
                    acked.push((a.lsn, id));
                }
                acked
            })
        })
        .collect();
    let mut acked: Vec<(Lsn, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    acked.sort();
    acked
}

/// Group commit with leaders that keep flushing for others and hand over,
/// on every backend, buffered and O_DIRECT (whose partial last block every
/// flush rewrites), with committers that yield before they sleep and ones
/// that sleep at once, and with one-block batches (a flush then covers only
/// part of the committers parked for it): every acknowledged record is read
/// back after reopening, at its LSN, and nothing else is there.
#[test]
fn concurrent_committers_on_every_backend() {
    let mut backends: Vec<(Arc<dyn AsyncIo>, Option<tempfile::TempDir>)> = vec![(sim(5), None)];
    for b in [Backend::ThreadPool, Backend::IoUring] {
        if let Some(io) = real_backend(b) {
            backends.push((io, Some(real_dir())));
        }
    }
    // (O_DIRECT, yields before sleeping, batch bytes, committers)
    let variants = [
        (false, 16, 16 * 1024, 12),
        (true, 16, 16 * 1024, 12),
        (false, 0, 4096, 40),
        (true, 0, 4096, 40),
    ];
    for (io, tmp) in backends {
        for (direct_io, spin, batch, threads) in variants {
            let name = format!("wal-{direct_io}-{spin}");
            let dir = match &tmp {
                Some(t) => t.path().join(name),
                None => PathBuf::from(format!("/db/{name}")),
            };
            let config = WalConfig {
                direct_io,
                commit_spin_yields: spin,
                max_batch_bytes: batch,
                ..small_config()
            };
            let wal = Arc::new(Wal::open(io.clone(), &dir, config.clone()).unwrap().0);
            let acked = commit_concurrently(&wal, threads, 60);
            let stats = wal.stats();
            assert_eq!(stats.records, threads * 60);
            // Padding frames at segment ends are flushed too.
            assert!(stats.flushed_records >= stats.records, "{stats:?}");
            assert!(stats.flushes <= stats.flushed_records, "{stats:?}");
            let wal = Arc::into_inner(wal).unwrap();
            wal.close().unwrap();
            let (wal, report) = Wal::open(io.clone(), &dir, config).unwrap();
            assert_eq!(report.cut, None);
            let got: Vec<(Lsn, u64)> = read_all(&wal)
                .into_iter()
                .map(|(lsn, txn, payload)| {
                    assert_eq!(payload, payload_of(txn), "{lsn}");
                    (lsn, txn)
                })
                .collect();
            assert_eq!(got, acked, "{} direct={direct_io}", io.backend_name());
        }
    }
}

fn payload_of(txn: u64) -> Vec<u8> {
    payload(txn % 97)
}

/// Many committers; the machine loses power at a random moment; every
/// commit acknowledged before that moment is in the recovered log.
#[test]
fn acknowledged_commits_survive_a_crash() {
    for seed in 0..8u64 {
        let io = sim(seed);
        let wal = Arc::new(open(io.clone(), small_config()));
        let acked: Arc<Mutex<Vec<(Lsn, u64)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..6u64)
            .map(|t| {
                let (wal, acked, stop) = (wal.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let id = t * 1_000_000 + i;
                        let Ok(a) = wal.append(&meta(id), &payload(id)) else {
                            break;
                        };
                        if wal.flush(a.lsn).is_err() {
                            break;
                        }
                        acked.lock().push((a.lsn, id));
                    }
                })
            })
            .collect();
        while acked.lock().len() < 200 + seed as usize * 40 {
            std::thread::yield_now();
        }
        let before_crash = acked.lock().clone();
        let disk = io.crash();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        drop(wal);
        let wal = open(reboot(disk, seed), small_config());
        let recovered: std::collections::HashMap<Lsn, u64> =
            read_all(&wal).into_iter().map(|(l, t, _)| (l, t)).collect();
        for (lsn, id) in &before_crash {
            assert_eq!(
                recovered.get(lsn),
                Some(id),
                "seed {seed}: acknowledged {lsn} lost"
            );
        }
    }
}

/// A batch's durable write that the kernel takes in pieces (a short
/// transfer, then the remainder resubmitted, each piece durable by its own
/// call): every flush succeeds, and after a power cut every flushed record
/// reads back, each from its own position.
#[test]
fn short_durable_writes_are_resubmitted_and_every_flushed_record_survives_a_power_cut() {
    let io = sim(8);
    let wal = open(io.clone(), small_config());
    io.add_fault(
        FaultRule::with_probability(0.5, Fault::ShortWrite { max_bytes: 700 })
            .on_op(OpKind::DurableWrite),
    );
    let written = append_flushed(&wal, 300, 3);
    assert!(
        io.stats().count(OpKind::DurableWrite) > 50,
        "the batches went down as durable writes"
    );
    let disk = io.crash();
    drop(wal);
    let wal = open(reboot(disk, 9), small_config());
    assert_eq!(read_all(&wal), written);
}

#[test]
fn failed_sync_poisons_the_log_and_wakes_every_waiter() {
    let io = sim(3);
    let wal = Arc::new(open(io.clone(), small_config()));
    for i in 0..20 {
        let a = wal.append(&meta(i), &payload(i)).unwrap();
        wal.flush(a.lsn).unwrap();
    }
    // The log's batches are durable writes: their sync is in the write.
    io.add_fault(FaultRule::always(Fault::SyncFailure).on_op(OpKind::DurableWrite));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut errors = 0;
                for i in 0..50 {
                    match wal.append(&meta(t * 100 + i), b"x") {
                        Ok(a) => {
                            if wal.flush(a.lsn).is_err() {
                                errors += 1;
                            }
                        }
                        Err(_) => errors += 1,
                    }
                }
                errors
            })
        })
        .collect();
    // Every thread finishes (nobody hangs) and every attempt failed.
    let errors: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(errors.iter().all(|&e| e == 50), "{errors:?}");
    assert!(wal.is_poisoned());
    let e = wal.append(&meta(1), b"later").unwrap_err();
    assert!(matches!(e, WalError::Poisoned { .. }), "{e}");
    assert_eq!(e.class(), keel::ErrorClass::Fatal);
    io.clear_faults();
    // Nothing is retried: still poisoned after the fault clears.
    assert!(wal.flush(Lsn(1)).is_err() || wal.durable_lsn() > Lsn(1));
    assert!(wal.append(&meta(2), b"still").is_err());
}

/// A log poisoned by a failed background flush (the asynchronous commit
/// policy: nobody waited for the record): its close reports the poison,
/// since records appended before it may not be durable (invariant 16),
/// and still stops the background thread.
#[test]
fn closing_a_poisoned_log_reports_the_poison() {
    let io = sim(4);
    let mut config = small_config();
    config.commit = CommitMode::Async {
        max_delay_us: 1_000,
    };
    let wal = open(io.clone(), config);
    io.add_fault(FaultRule::always(Fault::SyncFailure).on_op(OpKind::DurableWrite));
    wal.append(&meta(1), &payload(1)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !wal.is_poisoned() {
        assert!(
            std::time::Instant::now() < deadline,
            "the background flush never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let e = wal.close().unwrap_err();
    assert!(matches!(e, WalError::Poisoned { .. }), "{e}");
}

/// Writes `n` records each flushed as its own batch; returns their LSNs and
/// the crashed disk.
fn log_of_batches(n: u64, one_batch_from: u64) -> (Vec<(Lsn, usize)>, SimDisk) {
    let io = sim(11);
    let wal = open(io.clone(), small_config());
    let mut recs = Vec::new();
    for i in 0..n {
        let p = payload(i + 1);
        let a = wal.append(&meta(i), &p).unwrap();
        recs.push((a.lsn, RECORD_HEADER_SIZE + p.len()));
        if i < one_batch_from {
            wal.flush(a.lsn).unwrap();
        }
    }
    wal.flush_all().unwrap();
    (recs, io.crash())
}

fn segment0() -> PathBuf {
    Path::new(DIR).join(segment_file_name(0))
}

fn reopen_with(disk: SimDisk, edit: impl FnOnce(&mut Vec<u8>)) -> Result<Wal, WalError> {
    let mut bytes = disk.file(&segment0()).unwrap().to_vec();
    edit(&mut bytes);
    let disk = disk.with_file(&segment0(), &bytes);
    Wal::open(reboot(disk, 5), Path::new(DIR), small_config()).map(|(w, _)| w)
}

#[test]
fn torn_tail_is_cut_at_every_byte_of_the_last_batch() {
    // Records 0..5 flushed one by one; 5..8 written in one final batch.
    let (recs, disk) = log_of_batches(8, 5);
    let batch_start = recs[5].0.0 as usize;
    let batch_end = (recs[7].0.0 as usize) + recs[7].1;
    for cut in batch_start..batch_end {
        for garbage in [false, true] {
            let wal = reopen_with(disk.clone(), |b| {
                for (k, byte) in b[cut..batch_end].iter_mut().enumerate() {
                    *byte = if garbage { (k * 131 + 7) as u8 } else { 0 };
                }
            })
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            let got = read_all(&wal);
            let whole = recs
                .iter()
                .filter(|(l, len)| l.0 as usize + len <= cut)
                .count();
            assert_eq!(got.len(), whole, "cut at {cut} (garbage {garbage})");
            let next = recs.get(whole).map_or(Lsn(batch_end as u64), |r| r.0);
            assert_eq!(wal.end_lsn(), next, "cut at {cut}");
        }
    }
}

#[test]
fn damage_inside_a_synced_batch_is_corruption_naming_the_lsn() {
    let (recs, disk) = log_of_batches(8, 8);
    for victim in [1usize, 4, 6] {
        let (lsn, len) = recs[victim];
        for offset in [0, 5, RECORD_HEADER_SIZE, len - 1] {
            let at = lsn.0 as usize + offset;
            let err = reopen_with(disk.clone(), |b| b[at] ^= 0x20)
                .err()
                .unwrap_or_else(|| panic!("flip in record {victim} at +{offset} accepted"));
            match &err {
                WalError::Corrupted { lsn: bad, .. } => assert_eq!(*bad, lsn),
                other => panic!("record {victim} +{offset}: {other}"),
            }
            assert!(err.to_string().contains(&lsn.to_string()), "{err}");
        }
    }
    // The last record has nothing after it: indistinguishable from a torn
    // write, so it is cut (and only the strict mode calls it an error).
    let (last, _) = recs[7];
    let flip_last = |b: &mut Vec<u8>| b[last.0 as usize + 50] ^= 1;
    let mut bytes = disk.file(&segment0()).unwrap().to_vec();
    flip_last(&mut bytes);
    let strict = WalConfig {
        recovery_mode: RecoveryMode::AbsoluteConsistency,
        ..small_config()
    };
    let damaged = disk.clone().with_file(&segment0(), &bytes);
    let e = Wal::open(reboot(damaged, 5), Path::new(DIR), strict)
        .err()
        .unwrap();
    assert!(
        matches!(e, WalError::BadRecord { lsn, .. } if lsn == last),
        "{e}"
    );
    let wal = reopen_with(disk, flip_last).unwrap();
    assert_eq!(wal.end_lsn(), last);
}

/// A batch of several records followed by later batches: damage to its
/// first record is corruption even though the next valid record belongs to
/// the same (synced) batch.
#[test]
fn damage_in_a_multi_record_batch_followed_by_later_batches_is_corruption() {
    let io = sim(12);
    let wal = open(io.clone(), small_config());
    let mut lsns = Vec::new();
    for i in 0..10u64 {
        let a = wal.append(&meta(i), &payload(i + 1)).unwrap();
        lsns.push(a.lsn);
        // Records 3..6 go out in one batch; the others one by one.
        if !(3..5).contains(&i) {
            wal.flush(a.lsn).unwrap();
        }
    }
    let disk = io.crash();
    for victim in [3usize, 4] {
        let at = lsns[victim].0 as usize + 20;
        let err = reopen_with(disk.clone(), |b| b[at] ^= 0x01).err().unwrap();
        assert!(
            matches!(err, WalError::Corrupted { lsn, .. } if lsn == lsns[victim]),
            "record {victim}: {err}"
        );
    }
}

#[test]
fn stale_records_after_a_cut_never_come_back() {
    // 5..8 in one batch; tear record 5, so 6 and 7 are valid but cut.
    let (recs, disk) = log_of_batches(8, 5);
    let at = recs[5].0.0 as usize;
    let wal = reopen_with(disk, |b| b[at + 10] ^= 0xFF).unwrap();
    assert_eq!(wal.end_lsn(), recs[5].0);
    // A new record exactly as long as the torn one ends where record 6
    // starts; record 6's stale bytes must not read as the log's next record.
    let a = wal.append(&meta(77), &payload(6)).unwrap();
    wal.flush(a.lsn).unwrap();
    let got = read_all(&wal);
    assert_eq!(got.len(), 6);
    assert_eq!(got[5].1, 77);
}

/// A failed zero-fill of a new segment is an error naming the step (not a
/// panic, not a segment used half-written), and the segment is prepared
/// again by the next open. Segments are larger than one zero-fill write, so
/// the failure lands with other writes in flight.
#[test]
fn a_failed_zero_fill_is_named_and_prepared_again() {
    let io = sim(41);
    let config = WalConfig {
        segment_size_bytes: 4 << 20,
        ..small_config()
    };
    io.add_fault(
        FaultRule::always(Fault::Eio)
            .on_op(OpKind::Write)
            .on_class(FileClass::Wal),
    );
    let Err(err) = Wal::open(io.clone(), Path::new(DIR), config.clone()) else {
        panic!("opened a log whose first segment could not be written");
    };
    assert!(err.to_string().contains("zero-fill a segment"), "{err}");
    io.clear_faults();
    let wal = open(io.clone(), config);
    let a = wal.append(&meta(1), &payload(1)).unwrap();
    wal.flush(a.lsn).unwrap();
    assert_eq!(read_all(&wal), vec![(a.lsn, 1, payload(1))]);
}

#[test]
fn a_next_segment_without_a_valid_header_is_prepared_again_before_use() {
    // The log ends in segment 0; segment 1 exists but its header is zeroes
    // (damage, or a crash mid-prepare). The writer must not append into it
    // as it is: its records could never be read back.
    let io = sim(31);
    let wal = open(io.clone(), small_config());
    for i in 0..5 {
        wal.append(&meta(i), &payload(i)).unwrap();
    }
    wal.flush_all().unwrap();
    wal.close().unwrap();
    let disk = io.crash();
    let seg1 = Path::new(DIR).join(segment_file_name(1));
    let size = small_config().segment_size_bytes as usize;
    let disk = disk.with_file(&seg1, &vec![0u8; size]);
    let io = reboot(disk, 32);
    let wal = open(io.clone(), small_config());
    // Enough to fill segment 0 and go on into segments 1 and 2.
    for i in 5..120 {
        let a = wal.append(&meta(i), &payload(i)).unwrap();
        wal.flush(a.lsn).unwrap();
    }
    let end = wal.end_lsn();
    assert!(
        end.0 > 2 * size as u64,
        "the test must reach segment 2: {end}"
    );
    drop(wal);
    let wal = open(reboot(io.crash(), 33), small_config());
    assert_eq!(wal.end_lsn(), end);
    let txns: Vec<u64> = read_all(&wal).into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(txns, (0..120).collect::<Vec<u64>>());
}

#[test]
fn recycled_and_deleted_segments_keep_the_log_readable() {
    for retention in [RetentionPolicy::Recycle, RetentionPolicy::Delete] {
        let io = sim(21);
        let config = WalConfig {
            retention: retention.clone(),
            ..small_config()
        };
        let wal = open(io.clone(), config.clone());
        let mut keep_from = Lsn(0);
        for i in 0..1500u64 {
            let a = wal.append(&meta(i), &payload(i)).unwrap();
            if i % 100 == 0 {
                wal.flush(a.lsn).unwrap();
            }
            if i == 700 {
                keep_from = a.lsn;
                wal.flush_all().unwrap();
                let r = wal.retire_before(keep_from).unwrap();
                assert!(!(r.recycled.is_empty() && r.deleted.is_empty()), "{r:?}");
            }
        }
        wal.flush_all().unwrap();
        let expected: Vec<u64> = (700..1500).collect();
        let got: Vec<u64> = wal
            .reader(keep_from, RecoveryMode::TolerateTornTail)
            .unwrap()
            .map(|r| r.unwrap().header.txn.0)
            .collect();
        assert_eq!(got, expected, "{retention:?}");
        let end = wal.end_lsn();
        wal.close().unwrap();
        let wal = open(io, config);
        assert_eq!(wal.end_lsn(), end, "{retention:?}");
    }
}

#[test]
fn archived_segments_verify_and_restore() {
    let io = sim(31);
    let archive_dir = PathBuf::from("/db/archive");
    let config = WalConfig {
        retention: RetentionPolicy::Archive(archive_dir.clone()),
        ..small_config()
    };
    let wal = open(io.clone(), config.clone());
    for i in 0..400u64 {
        wal.append(&meta(i), &payload(i)).unwrap();
    }
    wal.flush_all().unwrap();
    let report = wal.retire_before(wal.end_lsn()).unwrap();
    assert!(report.archived.len() >= 3, "{report:?}");
    let io_dyn: Arc<dyn AsyncIo> = io.clone();
    for &n in &report.archived {
        archive::verify_archived(&io_dyn, &archive_dir, n).unwrap();
    }
    // The archived segments are gone from the log: reading from the start
    // finds the first one missing.
    let mut from_start = wal.reader(Lsn(0), RecoveryMode::TolerateTornTail).unwrap();
    assert!(matches!(
        from_start.next(),
        Some(Err(WalError::MissingSegment { .. }))
    ));
    // Restore them and read everything again.
    let dir = SegmentDir::open(io_dyn.clone(), Path::new(DIR), false).unwrap();
    for &n in &report.archived {
        archive::restore_segment(&io_dyn, &archive_dir, n, &dir).unwrap();
    }
    let txns: Vec<u64> = read_all(&wal).into_iter().map(|r| r.1).collect();
    assert_eq!(txns, (0..400).collect::<Vec<_>>());
    // A damaged archive is detected.
    let path = archive::archive_path(&archive_dir, report.archived[0]);
    let disk = io.crash();
    let names: Vec<_> = disk.files().map(|(p, _)| p.to_path_buf()).collect();
    let mut bytes = disk
        .file(&path)
        .unwrap_or_else(|| panic!("{} not in {names:?}", path.display()))
        .to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let io2: Arc<dyn AsyncIo> = reboot(disk.with_file(&path, &bytes), 1);
    assert!(archive::verify_archived(&io2, &archive_dir, report.archived[0]).is_err());
}

/// An archived copy is read only as far as its segment's size: one that
/// decompresses to far more (a small file of 64 MiB of zeros after a
/// valid header) is refused as such, without decompressing all of it.
#[test]
fn an_archived_copy_larger_than_its_segment_is_refused() {
    use std::io::Write;
    let io = sim(32);
    let archive_dir = PathBuf::from("/db/archive");
    let header = SegmentHeader {
        segment_no: 3,
        segment_size: 64 * 1024,
        database_id: 7,
        max_batch_bytes: 16 * 1024,
    };
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    enc.include_checksum(true).unwrap();
    enc.write_all(&header.encode()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        enc.write_all(&zeros).unwrap();
    }
    let compressed = enc.finish().unwrap();
    assert!(compressed.len() < 64 * 1024, "{}", compressed.len());
    let disk = io
        .crash()
        .with_file(&archive::archive_path(&archive_dir, 3), &compressed);
    let io2: Arc<dyn AsyncIo> = reboot(disk, 1);
    let e = archive::verify_archived(&io2, &archive_dir, 3).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("more than its segment size, 65536 bytes") && text.contains(".zst"),
        "{text}"
    );
}

#[test]
fn missing_middle_segment_is_named() {
    let io = sim(41);
    let wal = open(io.clone(), small_config());
    for i in 0..400u64 {
        wal.append(&meta(i), &payload(i)).unwrap();
    }
    wal.flush_all().unwrap();
    io.remove(&Path::new(DIR).join(segment_file_name(2)))
        .wait()
        .unwrap();
    let err = wal
        .reader(Lsn(0), RecoveryMode::TolerateTornTail)
        .unwrap()
        .find_map(Result::err)
        .unwrap();
    assert!(
        matches!(err, WalError::MissingSegment { segment: 2, .. }),
        "{err}"
    );
}

#[test]
fn async_commit_acknowledges_first_and_flushes_soon() {
    let io = sim(51);
    let config = WalConfig {
        commit: CommitMode::Async {
            max_delay_us: 2_000,
        },
        ..small_config()
    };
    let wal = open(io, config);
    let a = wal.append(&meta(1), b"async").unwrap();
    wal.commit_wait(a).unwrap();
    // The background flush makes it durable; wait for it (bounded).
    for _ in 0..2_000 {
        if wal.durable_lsn() > a.lsn {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("async commit never flushed");
}

#[test]
fn bad_configuration_is_refused() {
    let e = Wal::open(
        sim(1),
        Path::new(DIR),
        WalConfig {
            segment_size_bytes: 12345,
            ..WalConfig::default()
        },
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("segment_size_bytes"), "{e}");
    let wal = open(sim(1), small_config());
    let e = wal.append(&meta(1), &vec![0u8; 5 << 20]).unwrap_err();
    assert!(matches!(e, WalError::RecordTooLarge { .. }), "{e}");
}

/// Appends fixed-size records until the log's end passes `until`; returns
/// the last one's LSN.
fn append_until(wal: &Wal, next: &mut u64, until: u64) -> Lsn {
    let mut last = Lsn::ZERO;
    while wal.end_lsn().0 < until {
        last = wal
            .append(&meta(*next), &[(*next % 251) as u8; 1000])
            .unwrap()
            .lsn;
        *next += 1;
    }
    last
}

/// Spare segments kept in the WAL directory.
fn spares(io: &Arc<keel_io::sim::SimIo>) -> usize {
    io.read_dir(Path::new(DIR))
        .wait()
        .unwrap()
        .iter()
        .filter(|e| e.name.to_str().is_some_and(|n| n.ends_with(".wal.spare")))
        .count()
}

/// Waits until the segment after the one the log ends in is prepared (the
/// background thread prepares it once the writer enters its predecessor),
/// so that a retirement next does not race that preparation for a spare.
fn wait_next_prepared(io: &Arc<keel_io::sim::SimIo>, wal: &Wal) {
    let next = wal.end_lsn().0 / wal.segment_size() + 1;
    let name = format!("{next:016X}.wal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !io
        .read_dir(Path::new(DIR))
        .wait()
        .unwrap()
        .iter()
        .any(|e| e.name.to_str() == Some(name.as_str()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "segment {next} was never prepared"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// WAL-class bytes written other than log records (the log's batches are
/// its durable writes): zero-fill of new segments and segment headers.
fn other_wal_writes(io: &Arc<keel_io::sim::SimIo>, wal: &Wal) -> u64 {
    let stats = io.stats();
    let written: u64 = [OpKind::Write, OpKind::WriteV, OpKind::DurableWrite]
        .iter()
        .filter_map(|&op| stats.get(op, FileClass::Wal))
        .map(|s| s.bytes)
        .sum();
    written - wal.stats().bytes_written
}

/// `min_wal_size_bytes`: a steady load, the same volume of log between
/// checkpoints, stops creating segments after its first cycles (preparing
/// the next segment is then a rename and a header: no zero-fill, no new
/// file); the spares a burst left shrink again over quieter cycles, but
/// never below `min_wal_size_bytes`; a reopen keeps them.
#[test]
fn a_steady_load_recycles_every_segment_it_needs() {
    let io = sim(51);
    let size = u64::from(keel::wal::segment::MIN_SEGMENT_SIZE);
    let config = WalConfig {
        min_wal_size_bytes: 2 * size,
        ..small_config()
    };
    let wal = open(io.clone(), config.clone());
    let mut next = 0;
    let mut cycle = |wal: &Wal, segments: u64| -> u64 {
        let before = other_wal_writes(&io, wal);
        append_until(wal, &mut next, wal.end_lsn().0 + segments * size);
        wal.flush_all().unwrap();
        wait_next_prepared(&io, wal);
        wal.retire_before(wal.end_lsn()).unwrap();
        other_wal_writes(&io, wal) - before
    };
    let first = cycle(&wal, 6);
    assert!(
        first >= 4 * size,
        "the first cycle zero-filled {first} bytes"
    );
    cycle(&wal, 6);
    for c in 3..10 {
        let other = cycle(&wal, 6);
        // Headers only (4 KiB per prepared segment), no segment's zero-fill.
        assert!(
            other <= 8 * 4096,
            "cycle {c} wrote {other} bytes besides records"
        );
    }
    assert!((6..=8).contains(&spares(&io)), "{} spares", spares(&io));
    cycle(&wal, 20);
    let after_burst = spares(&io);
    assert!(after_burst >= 18, "{after_burst} spares after a burst");
    for _ in 0..40 {
        cycle(&wal, 1);
    }
    let quiet = spares(&io);
    assert!(
        (2..=4).contains(&quiet),
        "{quiet} spares after quiet cycles"
    );
    let end = wal.end_lsn();
    wal.close().unwrap();
    let wal = open(io.clone(), config);
    assert_eq!(wal.end_lsn(), end);
    assert_eq!(spares(&io), quiet);
}

/// A recycled segment keeps its old records past the new end of the log.
/// Each is a valid frame at its old position and never at its new one
/// (invariant 3: a record's LSN is checked against where it was read), so
/// after a crash right after the first records written into the recycled
/// segment, the log ends exactly after them and reads back only them.
#[test]
fn a_recycled_segments_old_records_never_continue_the_log() {
    let io = sim(61);
    let size = u64::from(keel::wal::segment::MIN_SEGMENT_SIZE);
    let wal = open(io.clone(), small_config());
    let mut next = 0;
    append_until(&wal, &mut next, 3 * size + 100);
    wal.flush_all().unwrap();
    let retired = wal.retire_before(Lsn(2 * size)).unwrap();
    assert_eq!(retired.recycled, vec![0, 1]);
    // Segment 4 was prepared before the retirement; 5 is made of a spare.
    let last = append_until(&wal, &mut next, 5 * size + 5000);
    wal.flush(last).unwrap();
    let end = wal.end_lsn();
    let disk = io.crash();
    drop(wal);
    let seg = end.0 / size;
    assert_eq!(seg, 5);
    let bytes = disk
        .file(&Path::new(DIR).join(segment_file_name(seg)))
        .unwrap();
    let stale = (end.0 % size..size - RECORD_HEADER_SIZE as u64)
        .map(|o| o as usize)
        .filter(|&o| {
            let lsn = u64::from_le_bytes(bytes[o + 8..o + 16].try_into().unwrap());
            lsn % size == o as u64
                && lsn / size != seg
                && keel::wal::record::decode_frame(&bytes[o..], Lsn(lsn)).is_ok()
                && keel::wal::record::decode_frame(&bytes[o..], Lsn(seg * size + o as u64)).is_err()
        })
        .count();
    assert!(stale > 10, "only {stale} old records past the end");
    let wal = open(reboot(disk, 62), small_config());
    assert_eq!(wal.end_lsn(), end);
    let txns: Vec<u64> = wal
        .reader(Lsn(2 * size + 4096), RecoveryMode::AbsoluteConsistency)
        .unwrap()
        .map(|r| r.unwrap().header.txn.0)
        .collect();
    let first = txns[0];
    assert_eq!(txns, (first..next).collect::<Vec<u64>>());
}

/// A log imported from shipped records (`wal::import`), beginning
/// mid-segment as a restored backup's does: an open finds its end from the
/// scan start, and a reader returns every record as written; a run that
/// does not follow the end, or that crosses a segment, is refused.
#[test]
fn an_imported_log_opens_from_its_scan_start_and_reads_back() {
    use keel::wal::import::LogImport;
    use keel::wal::record;
    use keel::wal::segment::{Geometry, MIN_SEGMENT_SIZE};
    let io = sim(7);
    let dir = Path::new(DIR);
    let geometry = Geometry {
        segment_size: u64::from(MIN_SEGMENT_SIZE),
    };
    let mut import =
        LogImport::create(io.clone(), dir, 0xfeed, MIN_SEGMENT_SIZE, 16 * 1024).unwrap();
    let start = Lsn(geometry.first_record(0).0 + 1000);
    let (mut lsn, mut run_start, mut run) = (start, start, Vec::new());
    let mut written = Vec::new();
    for i in 0..120u64 {
        let bytes = record::encode(&meta(i), lsn, &payload(i));
        let fits = geometry.offset_in_segment(lsn) + bytes.len() as u64 <= geometry.segment_size
            && geometry.offset_in_segment(lsn) != 0;
        if !fits {
            import.push(run_start, &run).unwrap();
            run.clear();
            lsn = geometry.first_record(geometry.segment_of(lsn) + 1);
            run_start = lsn;
        }
        let bytes = record::encode(&meta(i), lsn, &payload(i));
        written.push((lsn, i, payload(i)));
        run.extend_from_slice(&bytes);
        lsn = Lsn(lsn.0 + bytes.len() as u64);
    }
    import.push(run_start, &run).unwrap();
    let end = lsn;
    assert!(geometry.segment_of(end) >= 2, "the log spans segments");
    // Refused: a gap after the end, and a run crossing a segment's end.
    let gap = import.push(Lsn(end.0 + 8), &run[..8]).unwrap_err();
    assert!(gap.to_string().contains("do not follow"), "{gap}");
    let last = geometry.segment_start(geometry.segment_of(end) + 1);
    let across = import.push(Lsn(last.0 - 8), &[0u8; 64]).unwrap_err();
    assert!(across.to_string().contains("one segment"), "{across}");
    assert_eq!(import.finish().unwrap(), Some(end));
    let config = small_config();
    let (wal, report) = Wal::open_from(io, dir, config, Some(start)).unwrap();
    assert!(!report.created);
    assert_eq!(report.end, end);
    let read: Vec<_> = wal
        .reader(start, RecoveryMode::AbsoluteConsistency)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.header.lsn, r.header.txn.0, r.payload)
        })
        .collect();
    assert_eq!(read.len(), written.len());
    assert!(read == written, "the imported log reads back differently");
}

/// By default the size policy writes the log of a large transaction while
/// it is still appending: past `flush_size_bytes` (1 MiB) unflushed, the
/// log's thread makes it durable without any flush or commit asking.
#[test]
fn the_default_size_policy_flushes_a_large_transaction_in_the_background() {
    let config = WalConfig::default();
    let limit = config.flush_size_bytes.expect("a size policy by default");
    let wal = open(sim(31), config);
    let start = wal.end_lsn();
    let record = vec![7u8; 2000];
    let mut end = start;
    while end.0 - start.0 < 2 * limit {
        end = wal.append(&meta(1), &record).unwrap().end;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while wal.durable_lsn().0 < start.0 + limit {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing flushed past {:?} a minute after {} unflushed bytes",
            wal.durable_lsn(),
            end.0 - start.0
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(wal.stats().flushes > 0);
    wal.close().unwrap();
}

/// A log of 120 records over several segments, each flushed (each one
/// acknowledged), closed; the disk and the log's end.
fn acknowledged_log(seed: u64) -> (SimDisk, Lsn) {
    let io = sim(seed);
    let wal = open(io.clone(), small_config());
    for i in 0..120 {
        let a = wal.append(&meta(i), &payload(i)).unwrap();
        wal.flush(a.lsn).unwrap();
    }
    let end = wal.end_lsn();
    wal.close().unwrap();
    (io.crash(), end)
}

/// The last segment's header damaged (one bit) while the segment holds
/// acknowledged records: the open fails naming the damage, in every
/// recovery mode, and clears nothing; it is not a torn tail (a segment's
/// header is on disk before the segment takes its name).
#[test]
fn a_damaged_header_on_a_segment_with_records_fails_the_open_and_clears_nothing() {
    let (disk, end) = acknowledged_log(41);
    let seg = end.0 / u64::from(small_config().segment_size_bytes);
    assert!(seg >= 1, "the log spans segments");
    let path = Path::new(DIR).join(segment_file_name(seg));
    let mut bytes = disk.file(&path).unwrap().to_vec();
    bytes[8] ^= 1;
    let disk = disk.with_file(&path, &bytes);
    for mode in [
        RecoveryMode::TolerateTornTail,
        RecoveryMode::AbsoluteConsistency,
    ] {
        let io = reboot(disk.clone(), 42);
        let config = WalConfig {
            recovery_mode: mode,
            ..small_config()
        };
        match Wal::open(io.clone(), Path::new(DIR), config) {
            Err(e) => assert!(e.to_string().contains("segment"), "{mode:?}: {e}"),
            Ok((_, report)) => panic!(
                "{mode:?}: opened with end {} of {end}, cut {:?}",
                report.end, report.cut
            ),
        }
        assert!(
            io.crash().file(&path).unwrap() == &bytes[..],
            "{mode:?}: the segment was changed"
        );
    }
}

/// An I/O error on any read of the log while it is opened fails the open
/// or leaves the log whole: never a cut of acknowledged records (then
/// cleared past the cut). The next open, without the error, finds them all.
#[test]
fn a_read_error_at_any_read_of_the_log_at_open_fails_it_or_loses_nothing() {
    let (disk, end) = acknowledged_log(51);
    let ops = {
        let io = reboot(disk.clone(), 52);
        let first = io.op_count();
        let (wal, report) = Wal::open(io.clone(), Path::new(DIR), small_config()).unwrap();
        assert_eq!(report.end, end);
        drop(wal);
        first..io.op_count()
    };
    let mut failed = 0;
    for n in ops {
        let io = reboot(disk.clone(), 52);
        io.add_fault(FaultRule {
            op: Some(OpKind::Read),
            class: Some(FileClass::Wal),
            ..FaultRule::at_op(n, Fault::Eio)
        });
        let disk = match Wal::open(io.clone(), Path::new(DIR), small_config()) {
            Ok((wal, report)) => {
                assert_eq!(report.end, end, "read error at op {n}: a cut log");
                drop(wal);
                io.crash()
            }
            Err(_) => {
                failed += 1;
                io.crash()
            }
        };
        let (wal, report) = Wal::open(reboot(disk, 53), Path::new(DIR), small_config()).unwrap();
        assert_eq!(report.end, end, "after a read error at op {n}");
        assert_eq!(read_all(&wal).len(), 120, "after a read error at op {n}");
    }
    assert!(failed > 0, "no read of the log failed an open");
}

/// A process with larger batches than the segment headers it writes into
/// (prepared by an earlier process with smaller ones) keeps its batches to
/// those headers' bound: a torn batch is then within what the next open
/// clears past the end, so none of its records can come back after the
/// records written there since.
#[test]
fn batches_keep_to_the_bound_in_the_header_of_the_segment_they_fill() {
    let base = WalConfig {
        segment_size_bytes: 1 << 20,
        direct_io: false,
        ..small_config()
    };
    let small = WalConfig {
        max_batch_bytes: 4096,
        ..base.clone()
    };
    let large = WalConfig {
        max_batch_bytes: 512 << 10,
        buffer_capacity_bytes: 4 << 20,
        flush_size_bytes: None,
        ..base
    };
    // Segment 0's header says 4 KiB batches.
    let io = sim(71);
    let wal = open(io.clone(), small);
    let a = wal.append(&meta(1), &[7u8; 1000]).unwrap();
    wal.flush(a.lsn).unwrap();
    wal.close().unwrap();
    // Then many records flushed at once by a process configured for
    // 512 KiB batches; a power cut tears one of its writes 10 KB in.
    let (wal, _) = Wal::open(io.clone(), Path::new(DIR), large.clone()).unwrap();
    let first = wal.append(&meta(1000), &[0u8; 1000]).unwrap().lsn;
    for i in 1..400u64 {
        wal.append(&meta(1000 + i), &[i as u8; 1000]).unwrap();
    }
    wal.flush_all().unwrap();
    assert!(wal.stats().flushes >= 50, "batches of at most 4 KiB");
    wal.close().unwrap();
    let path = Path::new(DIR).join(segment_file_name(0));
    let disk = io.crash();
    let mut bytes = disk.file(&path).unwrap().to_vec();
    let hole = (first.0 + 10_000) as usize;
    bytes[hole..hole + 512].fill(0);
    let disk = disk.with_file(&path, &bytes);
    // Batches of 4 KiB were each durable before the next began, so bytes
    // lost 10 KB into them are damage in the middle of the log, never a
    // torn tail: the next open refuses the log. (A 512 KiB batch would
    // have been one torn write: its end cut there, and only 64 KiB past
    // it cleared, the header's bound; the next process's records of the
    // same size then lined up with the torn batch's, and a later open
    // read those back after them.)
    let io = reboot(disk, 72);
    let opened = Wal::open(io.clone(), Path::new(DIR), large.clone());
    if let Err(e) = &opened {
        assert!(matches!(e, WalError::Corrupted { .. }), "{e}");
        return;
    }
    let (wal, report) = opened.unwrap();
    assert!(report.cut.is_some(), "the torn batch is cut");
    for i in 0..100u64 {
        let a = wal.append(&meta(5000 + i), &[9u8; 1000]).unwrap();
        wal.flush(a.lsn).unwrap();
    }
    let end = wal.end_lsn();
    wal.close().unwrap();
    let (wal, report) = Wal::open(reboot(io.crash(), 73), Path::new(DIR), large).unwrap();
    assert_eq!(report.end, end, "records of the torn batch came back");
    let txns: Vec<u64> = read_all(&wal).into_iter().map(|(_, t, _)| t).collect();
    assert_eq!(txns.last(), Some(&5099));
}
