//! Keel's side of the bench, for now straight on Keel's write-ahead log.
//!
//! Keel's public `Database` API (issue 5) does not exist yet, so Keel takes
//! part in the commit suite only, through the exact path a single-row commit
//! will take there: a heap-insert record carrying the 100-byte row, then a
//! commit record, then `commit_wait` (durable under `CommitMode::Sync`, one
//! flush serving every waiting committer). What this leaves out is the heap
//! page change itself, done in the buffer pool and written back later by the
//! checkpointer, off the commit path.
//!
//! When the `Database` API lands, a `KeelDbEngine` implementing
//! [`Engine`] on it (`create_relation` in `reset`, `begin`/`insert`/`commit`
//! in `commit_one` and `insert_batch`, the TupleIds it returns kept per id
//! for `point_read`, a killed child process for `crash_recover`) replaces
//! this one, and [`takes_part`](super::engine::takes_part) stops excusing
//! Keel from the insert, read and recovery suites.

use std::path::Path;
use std::sync::Arc;

use keel::page::TupleFlags;
use keel::types::{Lsn, PageId, RelationId, SlotId, TxnId};
use keel::wal::payload::Payload;
use keel::wal::{RecordMeta, RecordType, Wal, WalConfig};

use super::engine::{Engine, EngineKind, NEEDS_DATABASE, Session, process_write_bytes};
use crate::Failure;

/// Rows of 108 bytes that share one 8 KiB heap page (for the records' page ids).
const ROWS_PER_PAGE: u64 = 64;

/// Keel's log in `dir/wal`, default configuration.
pub struct KeelWalEngine {
    wal: Arc<Wal>,
    backend: &'static str,
    config: WalConfig,
}

impl KeelWalEngine {
    /// Creates a new log in `dir`.
    pub fn open(dir: &Path) -> Result<KeelWalEngine, Failure> {
        let io = keel_io::open_backend(&keel_io::IoConfig::from_env()?)?;
        let backend = io.backend_name();
        let config = WalConfig::default();
        let (wal, _) = Wal::open(io, &keel::wal::wal_dir(dir), config.clone())?;
        Ok(KeelWalEngine {
            wal: Arc::new(wal),
            backend,
            config,
        })
    }
}

impl Engine for KeelWalEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Keel
    }

    fn settings(&self) -> Vec<(String, String)> {
        let c = &self.config;
        vec![
            (
                "path".into(),
                "WAL only: heap-insert record + commit record + commit_wait (Database API pending)"
                    .into(),
            ),
            ("io backend".into(), self.backend.into()),
            ("commit".into(), format!("{:?}", c.commit)),
            (
                "segment".into(),
                format!("{} MiB", c.segment_size_bytes >> 20),
            ),
            (
                "max_batch".into(),
                format!("{} KiB", c.max_batch_bytes >> 10),
            ),
            ("direct_io".into(), c.direct_io.to_string()),
        ]
    }

    fn session(&self) -> Result<Box<dyn Session>, Failure> {
        Ok(Box::new(KeelWalSession {
            wal: self.wal.clone(),
            row: Vec::with_capacity(128),
        }))
    }

    fn reset(&self) -> Result<(), Failure> {
        Ok(())
    }

    fn checkpoint(&self) -> Result<(), Failure> {
        self.wal.flush_all()?;
        Ok(())
    }

    fn bytes_written(&self) -> Option<u64> {
        process_write_bytes()
    }
}

struct KeelWalSession {
    wal: Arc<Wal>,
    row: Vec<u8>,
}

impl Session for KeelWalSession {
    fn commit_one(&mut self, id: u64, payload: &[u8]) -> Result<(), Failure> {
        let txn = TxnId(id + 1);
        self.row.clear();
        self.row.extend_from_slice(&id.to_le_bytes());
        self.row.extend_from_slice(payload);
        let insert = Payload::HeapInsert {
            slot: SlotId((id % ROWS_PER_PAGE) as u16),
            flags: TupleFlags::NONE,
            tuple: std::mem::take(&mut self.row),
        };
        let meta = RecordMeta::new(RecordType::HeapInsert)
            .in_txn(txn, Lsn::ZERO)
            .on_page(RelationId(1), PageId((id / ROWS_PER_PAGE) as u32 + 1));
        let ins = self.wal.append_payload(meta, &insert);
        if let Payload::HeapInsert { tuple, .. } = insert {
            self.row = tuple;
        }
        let ins = ins?;
        let commit = self.wal.append_payload(
            RecordMeta::new(RecordType::Commit).in_txn(txn, ins.lsn),
            &Payload::Commit { commit_time_us: 0 },
        )?;
        self.wal.commit_wait(commit)?;
        Ok(())
    }

    fn insert_batch(&mut self, _: u64, _: u64, _: &[u8]) -> Result<(), Failure> {
        Err(Failure(format!("keel: {NEEDS_DATABASE}")))
    }

    fn point_read(&mut self, _: u64) -> Result<bool, Failure> {
        Err(Failure(format!("keel: {NEEDS_DATABASE}")))
    }
}
