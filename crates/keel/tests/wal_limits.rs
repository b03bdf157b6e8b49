//! The log at its limits: records of every size on the smallest segments,
//! flushes past the end, stray file names, salvage, a lost log tail, and a
//! failed segment preparation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;

use common::{reboot, small_wal_config as smallest, wal_sim as sim};
use keel_io::watch::{Watch, Watched};

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use keel::types::{Lsn, TxnId};
use keel::wal::record::{MAX_RECORD_SIZE, RECORD_HEADER_SIZE};
use keel::wal::segment::{MIN_SEGMENT_SIZE, segment_file_name};
use keel::wal::{RecordMeta, RecordType, RecoveryMode, Wal, WalConfig};
use keel::{ErrorClass, WalError};
use keel_io::sim::{Fault, FaultRule, SimDisk, SimIo};
use keel_io::{AsyncIo, FileClass, OpKind, Request};

const DIR: &str = "/db/wal";

fn meta(i: u64) -> RecordMeta {
    RecordMeta::new(RecordType::HeapInsert).in_txn(TxnId(i + 1), Lsn(i))
}

fn payload(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 13 + j * 31) as u8).collect()
}

fn read_from(wal: &Wal, from: Lsn, mode: RecoveryMode) -> Vec<(Lsn, Vec<u8>)> {
    wal.reader(from, mode)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.header.lsn, r.payload)
        })
        .collect()
}

/// A flush through a position no record starts at (at or past the end of
/// what was appended) is an error, not a leader waiting forever.
#[test]
fn flushing_past_the_end_is_an_error() {
    let io = sim(1);
    let (wal, _) = Wal::open(io, Path::new(DIR), smallest()).unwrap();
    let a = wal.append(&meta(0), b"one").unwrap();
    for lsn in [a.end, Lsn(a.end.0 + 1), Lsn(u64::MAX)] {
        let e = wal.flush(lsn).unwrap_err();
        assert!(matches!(e, WalError::FlushBeyondEnd { .. }), "{e}");
        assert_eq!(e.class(), ErrorClass::Usage);
        assert!(e.to_string().contains("the log ends at"), "{e}");
    }
    wal.flush(a.lsn).unwrap();
    assert!(!wal.is_poisoned());
    wal.close().unwrap();
}

/// Invariant 9: a file in `wal/` whose name looks like a segment but whose
/// number no log can reach is a clear error naming it, never a panic.
#[test]
fn a_stray_segment_name_is_an_error_naming_the_file() {
    let io = sim(2);
    let (wal, _) = Wal::open(io.clone(), Path::new(DIR), smallest()).unwrap();
    wal.append(&meta(0), b"one").unwrap();
    wal.close().unwrap();
    for name in ["FFFFFFFFFFFFFFFF.wal", "0000001000000000.wal"] {
        let path = Path::new(DIR).join(name);
        let fh = io
            .open(
                &path,
                keel_io::OpenOptions::read_write_create(FileClass::Wal),
            )
            .wait()
            .unwrap();
        io.write_at(fh, 0, keel_io::IoBuf::from(vec![0xAB; 100]))
            .wait()
            .unwrap();
        io.close(fh).wait().unwrap();
        let e = Wal::open(io.clone(), Path::new(DIR), smallest())
            .err()
            .unwrap_or_else(|| panic!("{name} accepted"));
        assert!(e.to_string().contains(name), "{e}");
        assert!(e.to_string().contains("not a segment of any log"), "{e}");
        io.remove(&path).wait().unwrap();
    }
    let (wal, report) = Wal::open(io, Path::new(DIR), smallest()).unwrap();
    assert!(!report.created);
    wal.close().unwrap();
}

/// Invariant 15: a record larger than the smallest segment's data area is
/// refused with an error naming both sizes; the largest allowed one fits.
#[test]
fn a_record_larger_than_a_segment_is_refused() {
    let io = sim(3);
    let (wal, _) = Wal::open(io.clone(), Path::new(DIR), smallest()).unwrap();
    let max_payload = MAX_RECORD_SIZE - RECORD_HEADER_SIZE;
    for len in [max_payload + 1, 70_000, 80_000, 4 << 20] {
        let e = wal.append(&meta(0), &payload(0, len)).unwrap_err();
        assert!(matches!(e, WalError::RecordTooLarge { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&(len + RECORD_HEADER_SIZE).to_string()),
            "{text}"
        );
        assert!(text.contains(&MAX_RECORD_SIZE.to_string()), "{text}");
        assert!(text.contains(&MIN_SEGMENT_SIZE.to_string()), "{text}");
    }
    let a = wal.append(&meta(1), &payload(1, max_payload)).unwrap();
    wal.flush(a.lsn).unwrap();
    let end = wal.end_lsn();
    wal.close().unwrap();
    let disk = io.crash();
    let (wal, report) = Wal::open(reboot(disk, 3), Path::new(DIR), smallest()).unwrap();
    assert_eq!(report.end, end);
    let read = read_from(&wal, Lsn::ZERO, RecoveryMode::AbsoluteConsistency);
    assert_eq!(read, vec![(a.lsn, payload(1, max_payload))]);
}

/// Records of every size from empty to the largest, on the smallest
/// segment: every size near either edge, and a stride between, appended
/// back to back so they land at every offset and cross many segment
/// boundaries; reopened and read back byte for byte.
#[test]
fn record_sizes_at_the_edges() {
    let max_payload = MAX_RECORD_SIZE - RECORD_HEADER_SIZE;
    let mut sizes: Vec<usize> = (0..=200).collect();
    sizes.extend((201..max_payload - 200).step_by(97));
    sizes.extend(max_payload - 200..=max_payload);
    // And a run of the largest, each filling a segment.
    sizes.extend([max_payload; 5]);
    let io = sim(4);
    let (wal, _) = Wal::open(io.clone(), Path::new(DIR), smallest()).unwrap();
    let mut written = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let a = wal
            .append(&meta(i as u64), &payload(i as u64, len))
            .unwrap();
        assert_eq!(
            a.lsn.0 / u64::from(MIN_SEGMENT_SIZE),
            (a.end.0 - 1) / u64::from(MIN_SEGMENT_SIZE),
            "record {i} of {len} bytes spans segments"
        );
        written.push((a.lsn, payload(i as u64, len)));
        if i % 37 == 0 {
            wal.flush(a.lsn).unwrap();
        }
    }
    wal.flush_all().unwrap();
    let end = wal.end_lsn();
    wal.close().unwrap();
    let disk = io.crash();
    let io = reboot(disk, 4);
    let (wal, report) = Wal::open(io, Path::new(DIR), smallest()).unwrap();
    assert_eq!(report.end, end);
    assert_eq!(report.cut, None);
    assert!(report.segments > 100, "{} segments", report.segments);
    let read = read_from(&wal, Lsn::ZERO, RecoveryMode::AbsoluteConsistency);
    assert_eq!(read.len(), written.len());
    assert!(read == written, "records differ after reopening");
}

/// Values around the inline and overflow thresholds through the database
/// on the smallest segments: committed, the database crashed and
/// recovered, every value reads back.
#[test]
fn values_near_overflow_thresholds_on_64_kib_segments() {
    use keel::heap::INLINE_MAX;
    use keel::page::{CHUNK_CAPACITY, MAX_TUPLE_LEN};
    let mut config = common::small_config(64);
    config.wal.segment_size_bytes = MIN_SEGMENT_SIZE;
    config.wal.max_batch_bytes = 16 << 10;
    config.wal.buffer_capacity_bytes = 256 << 10;
    let mut sizes = Vec::new();
    for edge in [
        INLINE_MAX,
        CHUNK_CAPACITY,
        2 * CHUNK_CAPACITY,
        MAX_TUPLE_LEN,
        MAX_RECORD_SIZE,
        MIN_SEGMENT_SIZE as usize,
    ] {
        sizes.extend([edge - 1, edge, edge + 1]);
    }
    sizes.push(300_000);
    let io = sim(5);
    let db = common::open_sim(&io, config.clone()).unwrap();
    let rel = db.create_relation("edges").unwrap();
    let mut tids = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let mut t = db.begin().unwrap();
        tids.push(t.insert(rel, &payload(i as u64, len)).unwrap());
        t.commit().unwrap();
        if i == sizes.len() / 2 {
            db.checkpoint().unwrap();
        }
    }
    drop(db);
    let disk = io.crash();
    let io = reboot(disk, 5);
    let db = common::open_sim(&io, config).unwrap();
    let t = db.begin().unwrap();
    for (i, (&len, tid)) in sizes.iter().zip(&tids).enumerate() {
        let got = t.get(rel, *tid).unwrap().unwrap();
        assert!(got == payload(i as u64, len), "value {i} of {len} bytes");
    }
}

/// Writes records over several smallest segments, damages one in the
/// second segment, and returns the disk and the damaged record's LSN.
fn log_with_damage_in_the_middle() -> (SimDisk, Lsn) {
    let io = sim(6);
    let (wal, _) = Wal::open(io.clone(), Path::new(DIR), smallest()).unwrap();
    let mut lsns = Vec::new();
    for i in 0..120u64 {
        let a = wal.append(&meta(i), &payload(i, 2000)).unwrap();
        wal.flush(a.lsn).unwrap();
        lsns.push(a.lsn);
    }
    wal.close().unwrap();
    let seg_size = u64::from(MIN_SEGMENT_SIZE);
    let victim = *lsns.iter().find(|l| l.0 / seg_size == 1).unwrap();
    let victim = lsns[lsns.iter().position(|&l| l == victim).unwrap() + 3];
    assert!(lsns.last().unwrap().0 / seg_size >= 3);
    let disk = io.crash();
    let path = Path::new(DIR).join(segment_file_name(1));
    let mut bytes = disk.file(&path).unwrap().to_vec();
    bytes[(victim.0 % seg_size) as usize + RECORD_HEADER_SIZE + 10] ^= 0x40;
    (disk.with_file(&path, &bytes), victim)
}

/// Salvage: where opening the log says it ends and where recovery's
/// reader stops are one answer, so a commit acknowledged after a salvaging
/// reopen is read by the next recovery, and no record from before the
/// salvage comes back after it.
#[test]
fn salvage_ends_the_log_where_recovery_stops() {
    let (disk, victim) = log_with_damage_in_the_middle();
    let salvage = WalConfig {
        recovery_mode: RecoveryMode::SalvageToFirstError,
        ..smallest()
    };
    let io = reboot(disk, 6);
    let (wal, report) = Wal::open(io.clone(), Path::new(DIR), salvage.clone()).unwrap();
    let before = read_from(&wal, Lsn::ZERO, RecoveryMode::SalvageToFirstError);
    assert_eq!(before.last().map(|r| r.0 < victim), Some(true));
    let mut reader = wal
        .reader(Lsn::ZERO, RecoveryMode::SalvageToFirstError)
        .unwrap();
    for r in reader.by_ref() {
        r.unwrap();
    }
    assert_eq!(
        reader.end(),
        Some(report.end),
        "recovery's reader and the open disagree on the end"
    );
    assert_eq!(report.end, victim);
    let a = wal
        .append(&meta(500), b"acknowledged after salvage")
        .unwrap();
    wal.flush(a.lsn).unwrap();
    wal.close().unwrap();

    // The next open (salvaging or not) reads the acknowledged record, and
    // nothing after it.
    for mode in [
        RecoveryMode::SalvageToFirstError,
        RecoveryMode::TolerateTornTail,
    ] {
        let disk = io.crash();
        let io2 = reboot(disk, 7);
        let config = WalConfig {
            recovery_mode: mode,
            ..smallest()
        };
        let (wal, report) = Wal::open(io2, Path::new(DIR), config).unwrap();
        assert_eq!(report.end, a.end, "{mode:?}");
        let after = read_from(&wal, Lsn::ZERO, RecoveryMode::AbsoluteConsistency);
        assert_eq!(after.len(), before.len() + 1, "{mode:?}");
        assert_eq!(after.last().unwrap().0, a.lsn);
        assert_eq!(after.last().unwrap().1, b"acknowledged after salvage");
        wal.close().unwrap();
    }
}

/// Makes the first full fsync of a WAL file after `arm` fail as
/// "fsyncgate" does, and counts the WAL fsyncs after it.
struct PrepFault {
    sim: Arc<SimIo>,
    armed: AtomicBool,
    fired: AtomicBool,
    fsyncs_after: AtomicU64,
}

impl Watch for PrepFault {
    /// Flags the fsync made to fail; only its own submission clears the
    /// fault again (another thread's submission in between must not).
    fn before(&self, req: &Request) -> bool {
        let Request::Sync {
            data_only: false, ..
        } = req
        else {
            return false;
        };
        if self.fired.load(Ordering::SeqCst) {
            self.fsyncs_after.fetch_add(1, Ordering::SeqCst);
            false
        } else if self.armed.swap(false, Ordering::SeqCst) {
            // Segment preparation is the only full fsync of WAL files, and
            // it runs one at a time: the next fsync is this one.
            self.fired.store(true, Ordering::SeqCst);
            self.sim.add_fault(
                FaultRule::always(Fault::SyncFailure)
                    .on_op(OpKind::Fsync)
                    .on_class(FileClass::Wal),
            );
            true
        } else {
            false
        }
    }

    fn after(&self) {
        self.sim.clear_faults();
    }
}

/// Invariant 7: a segment preparation whose fsync failed is never
/// fsynced again; the log is poisoned and says why.
#[test]
fn a_failed_segment_preparation_poisons_the_log() {
    let sim = sim(8);
    // A log made by a first open.
    let (wal, _) = Wal::open(sim.clone(), Path::new(DIR), smallest()).unwrap();
    wal.close().unwrap();
    let watched = Arc::new(Watched {
        inner: sim.clone(),
        watch: PrepFault {
            sim: sim.clone(),
            armed: AtomicBool::new(false),
            fired: AtomicBool::new(false),
            fsyncs_after: AtomicU64::new(0),
        },
    });
    let io = &watched.watch;
    let (wal, _) = Wal::open(watched.clone(), Path::new(DIR), smallest()).unwrap();
    // The next full fsync of a WAL file is the next segment's preparation
    // (appends and flushes only fdatasync): it fails.
    io.armed.store(true, Ordering::SeqCst);
    // Fill segments until the log needs the one whose preparation failed.
    let mut failure = None;
    for i in 0..200 {
        let r = wal
            .append(&meta(i), &payload(i, 3000))
            .and_then(|a| wal.flush(a.lsn));
        if let Err(e) = r {
            failure = Some(e);
            break;
        }
    }
    assert!(io.fired.load(Ordering::SeqCst), "no preparation was made");
    let e = failure.expect("the log went on after a failed preparation");
    let cause = std::error::Error::source(&e).map(|c| c.to_string());
    assert_eq!(cause.as_deref(), Some("WAL sync a segment header failed"));
    assert!(matches!(e, WalError::Poisoned { .. }), "{e}");
    assert!(wal.is_poisoned());
    assert_eq!(
        io.fsyncs_after.load(Ordering::SeqCst),
        0,
        "a segment was fsynced again after a failed fsync"
    );
    drop(wal);
    // The half-prepared segment, left under its temporary name, is never
    // part of the log: the next open removes it and the log goes on.
    let names = |sim: &SimIo| -> Vec<String> {
        let entries = sim.read_dir(Path::new(DIR)).wait().unwrap();
        entries
            .iter()
            .map(|e| e.name.to_string_lossy().into_owned())
            .collect()
    };
    assert!(
        names(&sim).iter().any(|n| n.ends_with(".wal.prep")),
        "{:?}",
        names(&sim)
    );
    let (wal, _) = Wal::open(sim.clone(), Path::new(DIR), smallest()).unwrap();
    assert!(
        !names(&sim).iter().any(|n| n.ends_with(".prep")),
        "{:?}",
        names(&sim)
    );
    for i in 1000..1100 {
        let a = wal.append(&meta(i), &payload(i, 3000)).unwrap();
        wal.flush(a.lsn).unwrap();
    }
    wal.close().unwrap();
}

fn small_db_config() -> keel::Config {
    let mut config = common::small_config(64);
    config.wal.segment_size_bytes = MIN_SEGMENT_SIZE;
    config.wal.max_batch_bytes = 16 << 10;
    config.wal.buffer_capacity_bytes = 256 << 10;
    config
}

/// The control file's checkpoint end and scan start, read from its bytes.
fn control_lsns(control: &[u8]) -> (Lsn, Lsn) {
    let at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&control[o..o + 8]);
        Lsn(u64::from_le_bytes(b))
    };
    (at(32), at(24).min(at(40)))
}

/// Issue 16.5: a log that no longer reaches the checkpoint the control file
/// names (the segment holding its end record lost its tail) is an error
/// naming what is missing, not an empty recovery that hands out the lost
/// LSNs again.
#[test]
fn recovery_refuses_a_log_that_does_not_reach_its_checkpoint() {
    let config = small_db_config();
    let io = sim(9);
    let db = common::open_sim(&io, config.clone()).unwrap();
    let rel = db.create_relation("r").unwrap();
    for i in 0..100u64 {
        let mut t = db.begin().unwrap();
        t.insert(rel, &payload(i, 1500)).unwrap();
        t.commit().unwrap();
    }
    db.checkpoint().unwrap();
    db.close().unwrap();
    let disk = io.crash();
    let (checkpoint_end, _) = control_lsns(disk.file(Path::new("/db/control")).unwrap());
    let seg_size = u64::from(MIN_SEGMENT_SIZE);
    let seg = checkpoint_end.0 / seg_size;
    let path = Path::new(DIR).join(segment_file_name(seg));
    // The segment keeps everything before the checkpoint's end record.
    let mut bytes = disk.file(&path).unwrap().to_vec();
    bytes[(checkpoint_end.0 % seg_size) as usize..].fill(0);
    let io = reboot(disk.with_file(&path, &bytes), 9);
    let Err(e) = common::open_sim(&io, config) else {
        panic!("opened a database whose log lost its checkpoint");
    };
    let text = e.to_string();
    assert!(text.contains("the log ends at"), "{text}");
    assert!(text.contains(&checkpoint_end.to_string()), "{text}");
    assert!(text.contains(&segment_file_name(seg)), "{text}");
    assert!(text.contains("is missing or lost its tail"), "{text}");
}

/// Issue 16.5: a page whose LSN lies at or past the end of the log (the
/// log lost records the page holds) is an error, not a page redo skips
/// while new records reuse its LSNs.
#[test]
fn recovery_refuses_a_page_newer_than_the_log() {
    let mut config = small_db_config();
    config.consistency_check = false;
    config.wal.min_wal_size_bytes = u64::MAX;
    let io = sim(10);
    let db = common::open_sim(&io, config.clone()).unwrap();
    let rel = db.create_relation("r").unwrap();
    let mut t = db.begin().unwrap();
    let tids: Vec<_> = (0..40u64)
        .map(|i| t.insert(rel, &payload(i, 1000)).unwrap())
        .collect();
    t.commit().unwrap();
    db.checkpoint().unwrap();
    let old_control = io.control_bytes();
    let (checkpoint_end, _) = control_lsns(&old_control);
    let seg = checkpoint_end.0 / u64::from(MIN_SEGMENT_SIZE);
    for i in 0..300u64 {
        let mut t = db.begin().unwrap();
        t.update(rel, tids[(i % 40) as usize], &payload(i + 1, 1000))
            .unwrap();
        t.commit().unwrap();
    }
    // Every page is written with its newest LSN; the log after the first
    // checkpoint's segment is retired.
    db.checkpoint().unwrap();
    let disk = io.crash();
    // Back to the first checkpoint's control file, with the log cut after
    // its segment: the pages on disk hold changes the log no longer has.
    let io = reboot(disk.with_file(Path::new("/db/control"), &old_control), 10);
    let keep = Path::new(DIR).join(segment_file_name(seg));
    let spare = Path::new(DIR).join(format!("{seg:016X}.wal.spare"));
    if io.rename(&spare, &keep).wait().is_ok() {
        io.sync_dir(Path::new(DIR)).wait().unwrap();
    }
    let names: Vec<String> = io
        .read_dir(Path::new(DIR))
        .wait()
        .unwrap()
        .iter()
        .filter_map(|e| e.name.to_str().map(String::from))
        .collect();
    for name in names {
        let later = keel::wal::segment::parse_segment_file_name(&name).is_some_and(|n| n > seg);
        if later || name.ends_with(".spare") {
            io.remove(&Path::new(DIR).join(&name)).wait().unwrap();
        }
    }
    let Err(e) = common::open_sim(&io, config) else {
        panic!("opened a database whose pages are newer than its log");
    };
    let text = e.to_string();
    assert!(text.contains("past the end of"), "{text}");
}

trait SimExt {
    fn control_bytes(&self) -> Vec<u8>;
}

impl SimExt for Arc<SimIo> {
    /// The control file's current bytes (read through the simulator).
    fn control_bytes(&self) -> Vec<u8> {
        let fh = self
            .open(
                Path::new("/db/control"),
                keel_io::OpenOptions::new(FileClass::Control),
            )
            .wait()
            .unwrap();
        let buf = self
            .read_exact_at(fh, 0, keel_io::IoBuf::zeroed(64))
            .wait()
            .unwrap();
        self.close(fh).wait().unwrap();
        buf.to_vec()
    }
}
