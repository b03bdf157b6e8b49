//! Continuing an imported log (`LogImport::resume`), as a standby does
//! after each poll: the records already there stay, a crash in the middle
//! of an append (a torn or partial write past the last synced record) is
//! repaired by writing the records again, and a next segment that an open
//! of the log prepared ahead of its end is written over.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::path::Path;
use std::sync::Arc;

use keel::types::Lsn;
use keel::wal::import::LogImport;
use keel::wal::segment::segment_file_name;
use keel::wal::{RecoveryMode, Wal, WalConfig, WalReader};
use keel::{Config, Database};

const SEGMENT: u64 = 128 << 10;

fn config() -> Config {
    let mut c = Config {
        checkpoint_interval: None,
        ..Config::default()
    };
    c.wal.segment_size_bytes = SEGMENT as u32;
    c.wal.max_batch_bytes = 32 << 10;
    c.wal.min_wal_size_bytes = 0;
    c
}

fn io() -> Arc<dyn keel_io::AsyncIo> {
    keel_io::open_backend(&keel_io::IoConfig::default()).unwrap()
}

/// Every record of the log in `wal`, with its raw bytes.
fn records(wal: &Path) -> Vec<(Lsn, Vec<u8>)> {
    let reader =
        WalReader::open_read_only(io(), wal, Lsn::ZERO, RecoveryMode::AbsoluteConsistency).unwrap();
    let mut out = Vec::new();
    for r in reader {
        let r = r.unwrap();
        let seg = std::fs::read(wal.join(segment_file_name(r.header.lsn.0 / SEGMENT))).unwrap();
        let off = (r.header.lsn.0 % SEGMENT) as usize;
        out.push((
            r.header.lsn,
            seg[off..off + r.header.total_len as usize].to_vec(),
        ));
    }
    out
}

/// The records grouped into runs of one segment each, as archive chunks
/// are.
fn runs(recs: &[(Lsn, Vec<u8>)]) -> Vec<(Lsn, Vec<u8>)> {
    let mut out: Vec<(Lsn, Vec<u8>)> = Vec::new();
    for (lsn, bytes) in recs {
        match out.last_mut() {
            Some((first, run))
                if first.0 / SEGMENT == lsn.0 / SEGMENT
                    && first.0 + run.len() as u64 == lsn.0
                    && run.len() < 8 << 10 =>
            {
                run.extend_from_slice(bytes)
            }
            _ => out.push((*lsn, bytes.clone())),
        }
    }
    out
}

#[test]
fn a_resumed_import_repairs_a_torn_append_and_writes_over_a_prepared_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let primary = tmp.path().join("primary");
    let db = Database::open(&primary, config()).unwrap();
    let rel = db.create_relation("r").unwrap();
    for t in 0..150 {
        let mut tx = db.begin().unwrap();
        for r in 0..10 {
            tx.insert(rel, &vec![((t * 10 + r) % 251) as u8; 300])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let database_id = db.database_id();
    // Left open: a close's checkpoint could retire the early segments.
    let wal = primary.join("wal");
    let recs = records(&wal);
    let runs = runs(&recs);
    assert!(
        recs.last().unwrap().0.0 / SEGMENT >= 3,
        "the log spans several segments"
    );
    let header = keel::wal::segment::SegmentDir::existing(io(), &wal)
        .unwrap()
        .read_header(0)
        .unwrap();
    let step = (runs.len() / 7).max(1);
    for cut in (1..runs.len()).step_by(step) {
        for tear in [false, true] {
            let dir = tmp.path().join(format!("import-{cut}-{tear}"));
            let mut import = LogImport::create(
                io(),
                &dir,
                database_id,
                header.segment_size,
                header.max_batch_bytes,
            )
            .unwrap();
            for (first, bytes) in &runs[..cut] {
                import.push(*first, bytes).unwrap();
            }
            let end = import.finish().unwrap().unwrap();
            // An open of the log, as a standby's apply does: it clears
            // past the end and prepares the next segment ahead.
            let (w, _) = Wal::open(io(), &dir, WalConfig::default()).unwrap();
            drop(w);
            if tear {
                // An append cut short: the next run's bytes, one of them
                // wrong, and whatever follows it.
                let (next, bytes) = &runs[cut];
                let mut torn = bytes.clone();
                let mid = torn.len() / 2;
                torn[mid] ^= 0x5a;
                let seg = dir.join(segment_file_name(next.0 / SEGMENT));
                if seg.exists() {
                    use std::os::unix::fs::FileExt;
                    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
                    f.write_all_at(&torn, next.0 % SEGMENT).unwrap();
                }
            }
            let mut import = LogImport::resume(io(), &dir, database_id, recs[0].0).unwrap();
            // The valid records a torn append left count: the end is
            // past them, inside the run.
            let resumed = import.end().unwrap();
            let run_end = runs[cut].0.0 + runs[cut].1.len() as u64;
            match tear {
                false => assert_eq!(resumed, end, "cut {cut}"),
                true => assert!(resumed >= end && resumed.0 < run_end, "cut {cut}"),
            }
            for (first, bytes) in &runs[cut..] {
                let skip = resumed.0.saturating_sub(first.0) as usize;
                if skip < bytes.len() {
                    import
                        .push(Lsn(first.0 + skip as u64), &bytes[skip..])
                        .unwrap();
                }
            }
            import.finish().unwrap();
            let got = records(&dir);
            assert!(
                got == recs,
                "cut {cut} tear {tear}: {} records, the primary has {}",
                got.len(),
                recs.len()
            );
            assert!(LogImport::resume(io(), &dir, database_id ^ 1, recs[0].0).is_err());
        }
    }
    db.close().unwrap();
}
