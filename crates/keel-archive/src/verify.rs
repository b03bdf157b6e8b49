//! Reading an archive back: every chunk of a timeline in LSN order, each
//! decoded and verified (header and body CRC32C, each record's frame, the
//! database id), and the chain checked: each chunk starts exactly where
//! the previous one ended, and its name agrees with its header. This is
//! what a restore will apply and what `keel archive verify` will report;
//! anything that does not hold is an error naming the object, never a
//! record skipped. Compacted objects are read like chunks (their name's
//! end must match their header too), and each leftover chunk of an
//! interrupted compaction is checked against the compacted object that
//! covers it ([`crate::compact::check_leftovers`]).

use std::time::Duration;

use keel::types::Lsn;

use crate::chunk::{self, Chunk, ChunkHeader, Expect};
use crate::config::ArchiveTarget;
use crate::error::Result;
use crate::store::{ChunkObject, Remote};

/// What a verified timeline holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimelineReport {
    /// The database the chunks belong to (0 when there are none).
    pub database_id: u64,
    /// Objects read (chunks and compacted objects).
    pub chunks: u64,
    /// How many of them were compacted objects.
    pub compacted: u64,
    /// Leftover chunks (an interrupted compaction's) checked against the
    /// compacted object covering them.
    pub leftovers: u64,
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

/// The range of commit times in a run of chunks (µs since the epoch; 0
/// for none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitTimes {
    /// Earliest commit time, 0 if none.
    pub min_us: u64,
    /// Latest commit time, 0 if none.
    pub max_us: u64,
}

impl CommitTimes {
    /// Adds a chunk's range (0, 0 for a chunk without commits).
    pub fn add(&mut self, min_us: u64, max_us: u64) {
        if min_us != 0 {
            self.min_us = match self.min_us {
                0 => min_us,
                m => m.min(min_us),
            };
        }
        self.max_us = self.max_us.max(max_us);
    }
}

/// A timeline as its chunks' headers describe it (nothing verified
/// beyond each header's own CRC).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimelineSummary {
    /// The timeline.
    pub timeline: u32,
    /// The database the first chunk names (0 when there are none).
    pub database_id: u64,
    /// Objects covering the log (chunks and compacted objects).
    pub chunks: u64,
    /// How many of them are compacted objects.
    pub compacted: u64,
    /// Chunks a compacted object replaces that are still stored (an
    /// interrupted compaction; the next one deletes them).
    pub leftovers: u64,
    /// Places where a chunk does not start at the previous one's end.
    pub gaps: u64,
    /// Stored bytes (compressed, with headers).
    pub stored_bytes: u64,
    /// Where the first chunk starts.
    pub start: Lsn,
    /// Where the last chunk ends.
    pub end: Lsn,
    /// The commit times the chunks cover.
    pub times: CommitTimes,
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

    /// The timelines the archive holds, in order.
    pub fn timelines(&self) -> Result<Vec<u32>> {
        self.remote.list_timelines()
    }

    /// Reads and verifies one chunk against `expect` and its own name.
    /// A chunk compaction deleted since the listing is read from the
    /// compacted object that replaced it, from the same LSN on
    /// ([`crate::read::read_listed`]).
    pub fn read_chunk(&self, object: &ChunkObject, expect: &Expect) -> Result<Chunk> {
        Ok(crate::read::read_listed(&self.remote, object, expect)?.0)
    }

    /// Reads one chunk's header alone (a ranged read of its first bytes),
    /// checked (magic, CRC, sizes against the object's length) and against
    /// its name; the body is not read.
    pub fn read_header(&self, object: &ChunkObject) -> Result<ChunkHeader> {
        let head = self
            .remote
            .get_prefix(&object.path, chunk::CHUNK_HEADER_SIZE as u64)?;
        let header = chunk::decode_header(object.path.as_ref(), &head, object.size)?;
        crate::read::check_name(object, &header)?;
        Ok(header)
    }

    /// Summarizes `timeline` from its chunks' headers alone: cheap (one
    /// small read per chunk), but it checks no body; see
    /// [`verify`](Self::verify) for that.
    pub fn summarize(&self, timeline: u32) -> Result<TimelineSummary> {
        crate::read::relisting(|| self.summarize_once(timeline))
    }

    fn summarize_once(&self, timeline: u32) -> Result<TimelineSummary> {
        let mut s = TimelineSummary {
            timeline,
            ..TimelineSummary::default()
        };
        let listing = self.remote.list_timeline(timeline)?;
        s.leftovers = listing.leftovers.len() as u64;
        for object in listing.covering {
            let h = self.read_header(&object)?;
            s.compacted += u64::from(object.is_compacted());
            if s.chunks == 0 {
                s.database_id = h.database_id;
                s.start = h.start;
            } else if h.start != s.end {
                s.gaps += 1;
            }
            s.chunks += 1;
            s.stored_bytes += object.size;
            s.end = h.end;
            s.times.add(h.min_commit_time_us, h.max_commit_time_us);
        }
        Ok(s)
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
        let listing = self.remote.list_timeline(timeline)?;
        for object in &listing.covering {
            if report.chunks > 0 && crate::read::covered(object.start, expect.start) {
                continue;
            }
            let (chunk, source) = crate::read::read_listed(&self.remote, object, &expect)?;
            let h = chunk.header;
            report.compacted += u64::from(source.is_compacted());
            if report.chunks == 0 {
                report.start = h.start;
                report.database_id = h.database_id;
            }
            report.chunks += 1;
            report.records += u64::from(h.record_count);
            report.stored_bytes += source.size;
            report.raw_bytes += u64::from(h.raw_len);
            report.end = h.end;
            let mut times = CommitTimes {
                min_us: report.min_commit_time_us,
                max_us: report.max_commit_time_us,
            };
            times.add(h.min_commit_time_us, h.max_commit_time_us);
            (report.min_commit_time_us, report.max_commit_time_us) = (times.min_us, times.max_us);
            expect.database_id = Some(h.database_id);
            expect.start = Some(h.end);
            visit(&chunk)?;
        }
        let leftovers =
            crate::compact::check_leftovers(&self.remote, &listing, expect.database_id)?;
        report.leftovers = leftovers.len() as u64;
        Ok(report)
    }

    /// Verifies `timeline` (see [`visit`](Self::visit)).
    pub fn verify(&self, timeline: u32, database_id: Option<u64>) -> Result<TimelineReport> {
        self.visit(timeline, database_id, |_| Ok(()))
    }
}
