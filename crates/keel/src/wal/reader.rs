//! Reading the log forward from any LSN, validating every record.
//!
//! The reader loads one whole segment at a time (and submits the read of the
//! next one before parsing the current, so I/O overlaps decoding), checks
//! its header, and walks its records: each must have the right LSN for its
//! position (invariant 3) and a good CRC (invariant 2). Padding records and
//! tails too short for a header move it to the next segment.
//!
//! ## Where the log ends (invariant 10)
//!
//! At the first position that does not hold a valid record the reader looks
//! for any valid record further on (in the rest of the segment and in every
//! later segment; a cheap LSN-field test first, the CRC only on a match):
//!
//! - none: the log ends here. Zeroes are a clean end; anything else is a
//!   torn tail and is reported in [`TailCut`].
//! - valid records, but all from the flush batch the invalid bytes belong to
//!   (each header says where its batch began): the writer syncs each batch
//!   before it writes the next, so that batch was being written when the
//!   system crashed and was never acknowledged. A torn tail: the log ends
//!   here too (`TolerateTornTail`).
//! - any valid record from a batch that began after them: the invalid bytes
//!   were synced before that batch was written, so a once-durable record is
//!   damaged. That is corruption, an error naming the LSN, unless the
//!   [`RecoveryMode`] says to salvage.
//!
//! A missing segment between present ones is an error naming it.

use std::collections::BTreeSet;
use std::sync::Arc;

use keel_io::{AsyncIo, FileClass, FileHandle, IoBuf, IoFuture, OpenOptions};

use crate::types::Lsn;
use crate::wal::WalError;
use crate::wal::config::RecoveryMode;
use crate::wal::record::{
    FrameProblem, RECORD_HEADER_SIZE, RecordHeader, RecordType, decode_frame, offsets as rec,
};
use crate::wal::segment::{Geometry, SEGMENT_HEADER_SIZE, SegmentDir, SegmentHeader};

/// A record read from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Its validated header.
    pub header: RecordHeader,
    /// Its payload bytes.
    pub payload: Vec<u8>,
}

impl LogRecord {
    /// One past its last byte.
    pub fn end(&self) -> Lsn {
        Lsn(self.header.lsn.0 + u64::from(self.header.total_len))
    }
}

/// Invalid bytes the reader cut off the end of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailCut {
    /// Where the invalid bytes start (the end of the log).
    pub at: Lsn,
    /// What was wrong there.
    pub reason: String,
    /// A valid record found after them, within one unsynced batch (or
    /// anywhere, when salvaging).
    pub valid_after: Option<Lsn>,
}

struct Loaded {
    segment: u64,
    data: Vec<u8>,
}

type Prefetch = (u64, FileHandle, IoFuture<(IoBuf, usize)>);

/// Iterates over the records of the log from a starting LSN.
pub struct WalReader {
    io: Arc<dyn AsyncIo>,
    dir: Arc<SegmentDir>,
    geometry: Geometry,
    database_id: u64,
    mode: RecoveryMode,
    present: BTreeSet<u64>,
    pos: Lsn,
    current: Option<Loaded>,
    prefetch: Option<Prefetch>,
    /// The buffer of the last segment left, reused for the next read (a
    /// fresh segment-sized buffer costs a page fault per 4 KiB).
    spare: Option<Vec<u8>>,
    end: Option<Lsn>,
    cut: Option<TailCut>,
    failed: bool,
    /// Where the log is known to end ([`WalReader::until`]).
    until: Option<Lsn>,
}

impl WalReader {
    pub(crate) fn new(
        io: Arc<dyn AsyncIo>,
        dir: Arc<SegmentDir>,
        geometry: Geometry,
        database_id: u64,
        mode: RecoveryMode,
        from: Lsn,
    ) -> Result<WalReader, WalError> {
        let present = dir.list()?.into_iter().collect();
        Ok(WalReader {
            io,
            dir,
            geometry,
            database_id,
            mode,
            present,
            pos: geometry.record_position(from),
            current: None,
            prefetch: None,
            spare: None,
            end: None,
            cut: None,
            failed: false,
            until: None,
        })
    }

    /// Reads up to `end`, where the log is known to end, and no further;
    /// stopping before it is an error naming both positions.
    pub fn until(mut self, end: Lsn) -> WalReader {
        self.until = Some(self.geometry.record_position(end));
        self
    }

    /// A reader over the log in `wal_dir` that changes nothing on disk (for
    /// tools): the segment size and database id come from the first segment
    /// with a valid header.
    pub fn open_read_only(
        io: Arc<dyn AsyncIo>,
        wal_dir: &std::path::Path,
        from: Lsn,
        mode: RecoveryMode,
    ) -> Result<WalReader, WalError> {
        let dir = Arc::new(SegmentDir::existing(io.clone(), wal_dir)?);
        let present = dir.list()?;
        let header = present
            .iter()
            .find_map(|&n| dir.read_header(n).ok())
            .ok_or_else(|| WalError::BadSegment {
                segment: present.first().copied().unwrap_or(0),
                path: wal_dir.to_path_buf(),
                reason: "no segment with a valid header".into(),
            })?;
        let geometry = Geometry {
            segment_size: u64::from(header.segment_size),
        };
        let from = if from == Lsn::ZERO {
            present.first().map_or(from, |&n| geometry.first_record(n))
        } else {
            from
        };
        WalReader::new(io, dir, geometry, header.database_id, mode, from)
    }

    /// Where opening the log in `wal_dir` starts reading it to find its
    /// end ([`Wal`](super::Wal)'s `find_end`), given recovery's
    /// `scan_start`: normally the start of the newest segment that begins
    /// with a valid record. A tool that reads from here, or from
    /// `scan_start` when that is older, meets every invalid record the
    /// open meets. Changes nothing on disk; `None` when no segment is
    /// present.
    pub fn end_search_start(
        io: Arc<dyn AsyncIo>,
        wal_dir: &std::path::Path,
        scan_start: Lsn,
        mode: RecoveryMode,
    ) -> Result<Option<Lsn>, WalError> {
        let dir = SegmentDir::existing(io.clone(), wal_dir)?;
        let present = dir.list()?;
        // The open's template: the newest segment with a valid header.
        let Some(template) = dir.newest_header(&present) else {
            return Ok(None);
        };
        let geometry = Geometry {
            segment_size: u64::from(template.segment_size),
        };
        super::Wal::end_search_start(&io, &dir, geometry, &template, mode, Some(scan_start))
    }

    /// Where the log ends: known once the iterator returned `None`.
    pub fn end(&self) -> Option<Lsn> {
        self.end
    }

    /// The torn tail that was cut off, if any (known at the end).
    pub fn tail_cut(&self) -> Option<&TailCut> {
        self.cut.as_ref()
    }

    /// The position of the next record to read.
    pub fn position(&self) -> Lsn {
        self.pos
    }

    /// The size of the log's segments, in bytes (segment `n` holds the
    /// LSNs from `n * segment_size`).
    pub fn segment_size(&self) -> u64 {
        self.geometry.segment_size
    }

    fn submit_read(&mut self, n: u64) -> Result<Prefetch, WalError> {
        let opts = OpenOptions::new(FileClass::Wal);
        let fh = self
            .io
            .open(&self.dir.segment_path(n), opts)
            .wait()
            .map_err(WalError::io("open a segment for reading"))?;
        let size = self.geometry.segment_size as usize;
        let buf = match self.spare.take() {
            Some(mut v) => {
                v.resize(size, 0);
                IoBuf::from(v)
            }
            None => IoBuf::zeroed(size),
        };
        Ok((n, fh, self.io.read_at(fh, 0, buf)))
    }

    /// Reads and validates segment `n` (using the prefetched read if it is
    /// the one), and starts reading the next present segment.
    fn load(&mut self, n: u64) -> Result<Loaded, WalError> {
        let (seg, fh, fut) = match self.prefetch.take() {
            Some(p) if p.0 == n => p,
            other => {
                if let Some((_, fh, f)) = other {
                    let _ = f.wait();
                    let _ = self.io.close(fh).wait();
                }
                self.submit_read(n)?
            }
        };
        let read = fut.wait();
        let _ = self.io.close(fh).wait();
        let (buf, got) = read.map_err(WalError::io("read a segment"))?;
        let path = self.dir.segment_path(seg);
        let header = SegmentHeader::decode(&buf[..got.min(SEGMENT_HEADER_SIZE)], seg, &path)?;
        if u64::from(header.segment_size) != self.geometry.segment_size
            || header.database_id != self.database_id
        {
            return Err(WalError::BadSegment {
                segment: seg,
                path,
                reason: format!(
                    "belongs to database {:#x} with {}-byte segments, not {:#x} with {}",
                    header.database_id,
                    header.segment_size,
                    self.database_id,
                    self.geometry.segment_size
                ),
            });
        }
        let mut data = buf.into_vec();
        data.truncate(got);
        if let Some(&next) = self.present.range(seg + 1..).next() {
            self.prefetch = self.submit_read(next).ok();
        }
        Ok(Loaded { segment: seg, data })
    }

    fn finish(&mut self, at: Lsn, cut: Option<TailCut>) {
        self.end = Some(at);
        self.cut = cut;
    }

    /// Moves to the next record; returns its header and where its payload
    /// starts in the current segment's buffer.
    fn step(&mut self) -> Result<(RecordHeader, usize), Stop> {
        loop {
            if self.until.is_some_and(|u| self.pos >= u) {
                return Err(Stop::End(None));
            }
            let seg = self.geometry.segment_of(self.pos);
            if self.current.as_ref().is_none_or(|c| c.segment != seg) {
                if let Some(done) = self.current.take() {
                    self.spare = Some(done.data);
                }
                if !self.present.contains(&seg) {
                    return Err(self.missing(seg));
                }
                match self.load(seg) {
                    Ok(l) => self.current = Some(l),
                    Err(e) => return Err(self.bad_segment(seg, e)),
                }
            }
            let Some(cur) = self.current.as_ref() else {
                return Err(Stop::End(None));
            };
            let off = self.geometry.offset_in_segment(self.pos) as usize;
            if (self.geometry.segment_size as usize - off) < RECORD_HEADER_SIZE {
                self.pos = self
                    .geometry
                    .record_position(self.geometry.segment_end(self.pos));
                continue;
            }
            match decode_frame(cur.data.get(off..).unwrap_or(&[]), self.pos) {
                Ok(h) if h.kind == RecordType::Padding => {
                    self.pos = self
                        .geometry
                        .record_position(self.geometry.segment_end(self.pos));
                }
                Ok(h) => {
                    // A record that ends a segment is followed by the next
                    // segment's first record, past its header.
                    let next = Lsn(self.pos.0 + u64::from(h.total_len));
                    self.pos = self.geometry.record_position(next);
                    return Ok((h, off + RECORD_HEADER_SIZE));
                }
                Err(problem) => return Err(self.bad_record(problem)),
            }
        }
    }

    /// Segment `seg` is not there: the end of the log, unless a later
    /// segment holds records (then one is missing in the middle).
    fn missing(&mut self, seg: u64) -> Stop {
        match self.valid_record_in_later_segments(seg) {
            Ok(Some(_)) => Stop::Error(WalError::MissingSegment {
                segment: seg,
                lsn: self.pos,
            }),
            Ok(None) => Stop::End(None),
            Err(e) => Stop::Error(e),
        }
    }

    /// Segment `seg` could not be loaded (`e`). The end of the log only
    /// when it holds no record of this log and no later segment does: a
    /// segment's header is on disk before the segment takes its name
    /// (`SegmentDir::prepare`), so a header that does not decode on a
    /// segment with records is damage (invariant 10: an error naming the
    /// LSN), and a failed open or read says nothing of what the segment
    /// holds, so it is never taken for the end (which would cut, then
    /// clear, acknowledged commits).
    fn bad_segment(&mut self, seg: u64, e: WalError) -> Stop {
        if matches!(e, WalError::Io { .. }) {
            return Stop::Error(e);
        }
        let own = match self.read_raw(seg) {
            Ok(data) => scan_for_valid(&data, self.geometry.segment_start(seg).0, 0),
            Err(io) => return Stop::Error(io),
        };
        if let Some(found) = own {
            return Stop::Error(WalError::Corrupted {
                lsn: self.pos,
                reason: e.to_string(),
                next_valid: found.lsn,
            });
        }
        match self.valid_record_in_later_segments(seg) {
            Ok(Some(_)) => Stop::Error(e),
            Ok(None) => Stop::End(Some(TailCut {
                at: self.pos,
                reason: e.to_string(),
                valid_after: None,
            })),
            Err(io) => Stop::Error(io),
        }
    }

    fn bad_record(&mut self, problem: FrameProblem) -> Stop {
        let at = self.pos;
        // The first valid record after the bad bytes, and the first one
        // written by a later flush batch than theirs (a record in a later
        // segment always is).
        let (first, mut later) = self.scan_current(at);
        if later.is_none() {
            let seg = self.geometry.segment_of(at);
            later = match self.valid_record_in_later_segments(seg) {
                Ok(later) => later,
                Err(e) => return Stop::Error(e),
            };
        }
        let first = first.or(later);
        let cut = |valid_after: Option<&RecordHeader>| TailCut {
            at,
            reason: problem.to_string(),
            valid_after: valid_after.map(|h| h.lsn),
        };
        let corrupted = |next: &RecordHeader| {
            Stop::Error(WalError::Corrupted {
                lsn: at,
                reason: problem.to_string(),
                next_valid: next.lsn,
            })
        };
        match (self.mode, later.as_ref(), first.as_ref()) {
            (RecoveryMode::SalvageToFirstError, _, first) => Stop::End(Some(cut(first))),
            (_, Some(later), _) => corrupted(later),
            (_, None, None) if problem == FrameProblem::Zeroes => Stop::End(None),
            (RecoveryMode::TolerateTornTail, None, first) => Stop::End(Some(cut(first))),
            (RecoveryMode::AbsoluteConsistency, None, Some(first)) => corrupted(first),
            (RecoveryMode::AbsoluteConsistency, None, None) => Stop::Error(WalError::BadRecord {
                lsn: at,
                reason: problem.to_string(),
            }),
        }
    }

    /// Scans the loaded segment after the bad bytes at `at`, hopping from
    /// valid record to valid record: returns the first valid record, and
    /// the first one whose flush batch began after `at`.
    fn scan_current(&self, at: Lsn) -> (Option<RecordHeader>, Option<RecordHeader>) {
        let Some(cur) = self.current.as_ref() else {
            return (None, None);
        };
        let base = self.geometry.segment_start(cur.segment).0;
        let mut from = (at.0 + 1).saturating_sub(base) as usize;
        let mut first = None;
        while let Some(h) = scan_for_valid(&cur.data, base, from) {
            first.get_or_insert(h);
            if h.batch_start > at {
                return (first, Some(h));
            }
            from = (h.lsn.0 - base) as usize + h.total_len as usize;
        }
        (first, None)
    }

    /// A valid record in any present segment after `seg`, whatever its
    /// header says (a record is valid only at its own LSN, its CRC covers
    /// it). A segment that cannot be read is an error: what it holds is
    /// unknown, so nothing before it may be taken for the end.
    fn valid_record_in_later_segments(
        &mut self,
        seg: u64,
    ) -> Result<Option<RecordHeader>, WalError> {
        let later: Vec<u64> = self.present.range(seg + 1..).copied().collect();
        for n in later {
            let data = self.read_raw(n)?;
            let base = self.geometry.segment_start(n).0;
            if let Some(found) = scan_for_valid(&data, base, SEGMENT_HEADER_SIZE) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Segment `n`'s bytes as they are, its header unchecked.
    fn read_raw(&mut self, n: u64) -> Result<Vec<u8>, WalError> {
        let (_, fh, read) = self.submit_read(n)?;
        let read = read.wait();
        let _ = self.io.close(fh).wait();
        let (buf, got) = read.map_err(WalError::io("read a segment"))?;
        let mut data = buf.into_vec();
        data.truncate(got);
        Ok(data)
    }
}

/// Scans `data` (a segment whose first byte is LSN `base`) from byte `from`
/// for a position holding a valid record: the LSN field must equal the
/// position before the CRC is even computed. An LSN is never zero, so runs
/// of zeroes (the usual rest of a segment) are skipped a word at a time.
fn scan_for_valid(data: &[u8], base: u64, from: usize) -> Option<RecordHeader> {
    let last = data.len().checked_sub(RECORD_HEADER_SIZE)?;
    let mut off = from.max(SEGMENT_HEADER_SIZE);
    while off <= last {
        let field = off + rec::LSN;
        // The first offset whose LSN field holds the next nonzero byte.
        let k = first_nonzero(&data[field..])?;
        if k >= 8 {
            off += k - 7;
            continue;
        }
        let pos = base + off as u64;
        if data[field..field + 8] == pos.to_le_bytes()
            && let Ok(header) = decode_frame(&data[off..], Lsn(pos))
        {
            return Some(header);
        }
        off += 1;
    }
    None
}

/// Index of the first nonzero byte of `data`.
fn first_nonzero(data: &[u8]) -> Option<usize> {
    let mut words = data.chunks_exact(8);
    let mut at = 0;
    for w in words.by_ref() {
        if w != [0u8; 8] {
            break;
        }
        at += 8;
    }
    data[at..].iter().position(|&b| b != 0).map(|i| at + i)
}

impl Drop for WalReader {
    fn drop(&mut self) {
        // An outstanding read owns its buffer until it completes; close the
        // handle once it has.
        if let Some((_, fh, f)) = self.prefetch.take() {
            let _ = f.wait();
            let _ = self.io.close(fh).wait();
        }
    }
}

enum Stop {
    End(Option<TailCut>),
    Error(WalError),
}

impl WalReader {
    /// The next record as [`Iterator::next`] reads it, but with its payload
    /// lent to `f` from the reader's segment buffer instead of copied into
    /// a `LogRecord` of its own (recovery decodes it straight from there).
    pub fn next_with<R>(
        &mut self,
        f: impl FnOnce(RecordHeader, &[u8]) -> R,
    ) -> Option<Result<R, WalError>> {
        if self.end.is_some() || self.failed {
            return None;
        }
        match self.step() {
            Ok((h, start)) => {
                let cur = self.current.as_ref()?;
                let end = start + h.total_len as usize - RECORD_HEADER_SIZE;
                Some(Ok(f(h, &cur.data[start..end])))
            }
            Err(Stop::End(cut)) => {
                let at = self.pos;
                if let Some(until) = self.until
                    && at < until
                {
                    self.failed = true;
                    self.current = None;
                    let why = cut.map_or("no record follows".into(), |c| c.reason);
                    return Some(Err(WalError::BadRecord {
                        lsn: at,
                        reason: format!(
                            "the log was found to end at {until} when it was opened, \
                             but reading stops here: {why}"
                        ),
                    }));
                }
                self.finish(at, cut);
                None
            }
            Err(Stop::Error(e)) => {
                // An error ends the iteration; `end` stays unknown.
                self.failed = true;
                self.current = None;
                Some(Err(e))
            }
        }
    }
}

impl Iterator for WalReader {
    type Item = Result<LogRecord, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(|header, payload| LogRecord {
            header,
            payload: payload.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::{RecordMeta, RecordType, encode};

    /// The zero-skipping scan finds exactly what checking every offset
    /// finds: records after zeroes, after garbage, at any alignment.
    #[test]
    fn scan_for_valid_skips_zeroes_and_finds_every_record() {
        let base = 1 << 20;
        for at in [
            SEGMENT_HEADER_SIZE,
            SEGMENT_HEADER_SIZE + 1,
            5000,
            5003,
            65_000,
        ] {
            for garbage in [false, true] {
                let mut data = vec![0u8; 70_000];
                if garbage {
                    for (i, b) in data[SEGMENT_HEADER_SIZE..at].iter_mut().enumerate() {
                        *b = (i * 7 % 251) as u8;
                    }
                }
                let meta = RecordMeta::new(RecordType::Begin);
                let rec = encode(&meta, Lsn(base + at as u64), b"payload");
                data[at..at + rec.len()].copy_from_slice(&rec);
                let found = scan_for_valid(&data, base, 0).map(|h| h.lsn);
                assert_eq!(found, Some(Lsn(base + at as u64)), "record at {at}");
                assert_eq!(scan_for_valid(&data, base, at + 1), None, "past it");
            }
        }
        assert_eq!(scan_for_valid(&[0u8; 100], base, 0), None);
        assert_eq!(first_nonzero(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 3]), Some(9));
        assert_eq!(first_nonzero(&[0, 1]), Some(1));
        assert_eq!(first_nonzero(&[0; 17]), None);
    }
}
