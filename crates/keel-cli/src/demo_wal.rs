//! The demo's write-ahead log phase: concurrent transactions committed
//! through group commit, then the log read back and checked.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use keel::types::{Lsn, PageId, RelationId, SlotId, TxnId};
use keel::wal::payload::Payload;
use keel::wal::{RecordMeta, RecordType, RecoveryMode, Wal, WalConfig, WalReader, wal_dir};

use crate::Failure;

/// Committing threads.
const THREADS: u64 = 4;
/// Transactions per thread.
const TXNS_PER_THREAD: u64 = 400;

pub fn run(dir: &Path) -> Result<(), Failure> {
    let io = keel_io::open_backend(&keel_io::IoConfig::from_env()?)?;
    let wal_path = wal_dir(dir);
    if wal_path.exists() {
        // The demo starts its log afresh each run.
        std::fs::remove_dir_all(&wal_path)
            .map_err(|e| Failure(format!("cannot clear {}: {e}", wal_path.display())))?;
    }
    let (wal, _) = Wal::open(io.clone(), &wal_path, WalConfig::default())?;
    let wal = Arc::new(wal);
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || -> Result<(), keel::WalError> {
                for i in 0..TXNS_PER_THREAD {
                    let txn = TxnId(t * TXNS_PER_THREAD + i + 1);
                    let begin = wal.append_payload(
                        RecordMeta::new(RecordType::Begin).in_txn(txn, Lsn::ZERO),
                        &Payload::Begin,
                    )?;
                    let insert = Payload::HeapInsert {
                        slot: SlotId(i as u16),
                        flags: keel::page::TupleFlags::NONE,
                        tuple: vec![t as u8; 100],
                    };
                    let meta = RecordMeta::new(RecordType::HeapInsert)
                        .in_txn(txn, begin.lsn)
                        .on_page(RelationId(1), PageId(t as u32));
                    let ins = wal.append_payload(meta, &insert)?;
                    let commit = Payload::Commit {
                        commit_time_us: now_us(),
                    };
                    let rec = wal.append_payload(
                        RecordMeta::new(RecordType::Commit).in_txn(txn, ins.lsn),
                        &commit,
                    )?;
                    wal.commit_wait(rec)?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| Failure("a committing thread panicked".into()))??;
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = wal.stats();
    let commits = THREADS * TXNS_PER_THREAD;
    println!(
        "  WAL: {commits} transactions from {THREADS} threads, {:.0} commits/s; \
         {} syncs (group commit: {:.1} commits per sync)",
        commits as f64 / secs,
        stats.flushes,
        commits as f64 / stats.flushes.max(1) as f64
    );
    let end = wal.end_lsn();
    Arc::into_inner(wal)
        .ok_or_else(|| Failure("the log is still in use".into()))?
        .close()?;

    let mut reader =
        WalReader::open_read_only(io, &wal_path, Lsn::ZERO, RecoveryMode::AbsoluteConsistency)?;
    let mut found = 0u64;
    let mut records = 0u64;
    for r in reader.by_ref() {
        let r = r?;
        records += 1;
        if r.header.kind == RecordType::Commit {
            found += 1;
        }
    }
    if found != commits || reader.end() != Some(end) {
        return Err(Failure(format!(
            "the log holds {found} of {commits} commits, ending at {:?} instead of {end}",
            reader.end()
        )));
    }
    println!(
        "  WAL: read back {records} records, {} bytes, every CRC and LSN checked; \
         all {commits} commits present (keel inspect wal --dir {})",
        stats.bytes,
        dir.display()
    );
    Ok(())
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
