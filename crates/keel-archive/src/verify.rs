//! Reading an archive back: every chunk of a timeline in LSN order, each
//! decoded and verified (header and body CRC32C, each record's frame, the
//! database id), and the chain checked: each chunk starts exactly where
//! the previous one ended, and its name agrees with its header. This is
//! what a restore will apply and what `keel archive verify` will report;
//! anything that does not hold is an error naming the object, never a
//! record skipped.

use std::time::Duration;

use keel::types::Lsn;

use crate::chunk::{self, Chunk, Expect};
use crate::config::ArchiveTarget;
use crate::error::{ArchiveError, Place, Result};
use crate::store::{ChunkObject, Remote};

/// What a verified timeline holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimelineReport {
    /// The database the chunks belong to (0 when there are none).
    pub database_id: u64,
    /// Chunks.
    pub chunks: u64,
    /// Records.
    pub records: u64,
    /// Stored bytes (compressed, with headers).
    pub stored_bytes: u64,
    /// Record bytes (uncompressed).
    pub raw_bytes: u64,
    /// Where the first chunk starts.
    pub start: Lsn,
    /// Where the last chunk ends.
    pub end: Lsn,
    /// Earliest commit time (µs since the epoch), 0 if none.
    pub min_commit_time_us: u64,
    /// Latest commit time, 0 if none.
    pub max_commit_time_us: u64,
}

/// Reads an archive.
#[derive(Debug)]
pub struct ArchiveReader {
    remote: Remote,
}

impl ArchiveReader {
    /// Opens the archive at `target`.
    pub fn open(target: &ArchiveTarget, op_timeout: Duration) -> Result<ArchiveReader> {
        Ok(ArchiveReader {
            remote: Remote::open(target, op_timeout)?,
        })
    }

    /// The chunks of `timeline`, in LSN order, as listed (not yet read).
    pub fn chunks(&self, timeline: u32) -> Result<Vec<ChunkObject>> {
        self.remote.list_chunks(timeline)
    }

    /// Reads and verifies one chunk against `expect` and its own name.
    pub fn read_chunk(&self, object: &ChunkObject, expect: &Expect) -> Result<Chunk> {
        let name = object.path.to_string();
        let bytes = self.remote.get(&object.path)?;
        let chunk = chunk::decode(&name, &bytes, expect)?;
        if chunk.header.start != object.start || chunk.header.timeline != object.timeline {
            return Err(ArchiveError::Corrupt {
                object: name,
                place: Place::Object(chunk::offsets::TIMELINE as u64),
                reason: format!(
                    "header says timeline {} from LSN {}, the name says timeline {} from LSN {}",
                    chunk.header.timeline, chunk.header.start, object.timeline, object.start
                ),
            });
        }
        Ok(chunk)
    }

    /// Reads every chunk of `timeline` in order, verifying each and the
    /// chain, and hands each to `visit`. `database_id`: the database the
    /// archive must belong to (`None`: whichever the first chunk names,
    /// then all the same).
    pub fn visit(
        &self,
        timeline: u32,
        database_id: Option<u64>,
        mut visit: impl FnMut(&Chunk) -> Result<()>,
    ) -> Result<TimelineReport> {
        let mut report = TimelineReport::default();
        let mut expect = Expect {
            database_id,
            timeline: Some(timeline),
            start: None,
        };
        for object in self.chunks(timeline)? {
            let chunk = self.read_chunk(&object, &expect)?;
            let h = chunk.header;
            if report.chunks == 0 {
                report.start = h.start;
                report.database_id = h.database_id;
            }
            report.chunks += 1;
            report.records += u64::from(h.record_count);
            report.stored_bytes += object.size;
            report.raw_bytes += u64::from(h.raw_len);
            report.end = h.end;
            if h.min_commit_time_us != 0 {
                report.min_commit_time_us = match report.min_commit_time_us {
                    0 => h.min_commit_time_us,
                    m => m.min(h.min_commit_time_us),
                };
            }
            report.max_commit_time_us = report.max_commit_time_us.max(h.max_commit_time_us);
            expect.database_id = Some(h.database_id);
            expect.start = Some(h.end);
            visit(&chunk)?;
        }
        Ok(report)
    }

    /// Verifies `timeline` (see [`visit`](Self::visit)).
    pub fn verify(&self, timeline: u32, database_id: Option<u64>) -> Result<TimelineReport> {
        self.visit(timeline, database_id, |_| Ok(()))
    }
}
