//! A log written from records shipped elsewhere: a restore from an archive
//! lays the records of its chunks back into segment files, so that an
//! ordinary open finds the log and recovery replays it.
//!
//! ## Rules
//!
//! - Records keep their LSNs: a run of records starting at LSN `l` is
//!   written at segment `l / segment_size`, offset `l % segment_size`,
//!   byte for byte as the original log held it (the records carry their
//!   LSNs and CRCs, invariants 2 and 3, so nothing is re-encoded).
//! - Runs are pushed in LSN order, each one whole records inside one
//!   segment (an archive chunk never spans a segment). Within a segment a
//!   run starts exactly where the previous one ended; the first run of a
//!   later segment starts at that segment's first record position, and the
//!   previous segment's tail is filled as the writer fills it (a padding
//!   record, or zeroes when no header fits), so the reader moves on.
//! - The first segment holds nothing before the first run (zeroes after its
//!   header): the log begins mid-segment, at a backup's start. An open
//!   finds its end from the control file's scan start in that case
//!   ([`Wal::open_from`](super::Wal::open_from)). That scan start may
//!   lie in the tail of the segment before the first run's
//!   ([`LogImport::begin_at`]): that segment is then written too, its
//!   tail padded from the scan start, so the open's reader moves on.
//! - Each segment file is written whole (segment size, header and all),
//!   synced, and the directory synced at [`LogImport::finish`]. The
//!   directory must hold no segment yet: an import never replaces a log.
//!
//! ## Continuing an imported log ([`LogImport::resume`])
//!
//! A standby appends the archive's new records to the log it imported
//! earlier. Its end is found again from a known record boundary `from`
//! (the control file's scan start: durable, and a record's start) by
//! reading the records from there with the engine's reader up to the
//! first invalid one ([`RecoveryMode::SalvageToFirstError`], which stops
//! there instead of failing). Every byte past that end came from the
//! archive and is never more than a copy of it, so a crash in the middle
//! of an append, which leaves any mix of old, new and torn bytes past the
//! last synced record, is repaired by writing the archive's records there
//! again.
//!
//! - The segment holding the end, when its file has this log's header, is
//!   written from the first appended byte on (at that offset, then
//!   synced), never before it: the records already there stay untouched.
//! - Every later segment is written whole, header and all, whether or not
//!   a file of that number exists: a file past the end holds nothing of
//!   the log (an open prepares the next segment ahead of the writer, full
//!   of zeroes; an append cut short leaves a partial copy), so replacing
//!   it loses nothing.
//! - Each write is followed by one `fdatasync`; a failed sync is an error
//!   (invariant 7), never retried.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_io::{AsyncIo, FileClass, IoBuf, OpenOptions};

use crate::types::Lsn;
use crate::wal::reader::WalReader;
use crate::wal::record::{self, RECORD_HEADER_SIZE, RecordMeta, RecordType};
use crate::wal::segment::{
    Geometry, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, SegmentDir, SegmentHeader,
};
use crate::wal::{RecoveryMode, WalError};

/// A log being written from shipped records (module essay).
pub struct LogImport {
    io: Arc<dyn AsyncIo>,
    dir: SegmentDir,
    template: SegmentHeader,
    geometry: Geometry,
    /// The segment being filled.
    current: Option<Filling>,
    /// Where the log begins ([`LogImport::begin_at`]), if set.
    begin: Option<Lsn>,
    /// One past the last record pushed (`None` before the first push).
    end: Option<Lsn>,
    /// For a resumed log: the segment holding the end it was resumed at,
    /// and whether its file has this log's header (then it is written
    /// from the end on, never whole).
    resumed: Option<(u64, bool)>,
}

/// A segment being filled: its number, its bytes, and the first byte to
/// write (0: the whole file).
struct Filling {
    n: u64,
    buf: Vec<u8>,
    write_from: usize,
}

impl std::fmt::Debug for LogImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogImport")
            .field("dir", &self.dir.path())
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl LogImport {
    /// Starts a log in `dir` (created if absent; it must hold no segment)
    /// for database `database_id` with the original log's segment size and
    /// batch limit (both are in every segment header, and LSNs map to
    /// segments by the size).
    pub fn create(
        io: Arc<dyn AsyncIo>,
        dir: &Path,
        database_id: u64,
        segment_size: u32,
        max_batch_bytes: u32,
    ) -> Result<LogImport, WalError> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size)
            || !segment_size.is_power_of_two()
        {
            return Err(WalError::BadSegment {
                segment: 0,
                path: dir.to_path_buf(),
                reason: format!(
                    "segment size {segment_size} is not a power of two in \
                     {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}"
                ),
            });
        }
        let sdir = SegmentDir::open(io.clone(), dir, false)?;
        if let Some(&n) = sdir.list()?.first() {
            return Err(WalError::BadSegment {
                segment: n,
                path: sdir.segment_path(n),
                reason: "an imported log must start in a directory without segments".into(),
            });
        }
        Ok(LogImport {
            io,
            dir: sdir,
            template: SegmentHeader {
                segment_no: 0,
                segment_size,
                database_id,
                max_batch_bytes,
            },
            geometry: Geometry {
                segment_size: u64::from(segment_size),
            },
            current: None,
            begin: None,
            end: None,
            resumed: None,
        })
    }

    /// Continues the imported log in `dir` of database `database_id` at its
    /// end, found by reading its records from `from`, a record boundary
    /// whose log is durable (module essay, "Continuing an imported log").
    pub fn resume(
        io: Arc<dyn AsyncIo>,
        dir: &Path,
        database_id: u64,
        from: Lsn,
    ) -> Result<LogImport, WalError> {
        let sdir = Arc::new(SegmentDir::existing(io.clone(), dir)?);
        let present = sdir.list()?;
        let template = sdir
            .newest_header(&present)
            .ok_or_else(|| WalError::BadSegment {
                segment: present.first().copied().unwrap_or(0),
                path: dir.to_path_buf(),
                reason: "no segment of the imported log has a valid header".into(),
            })?;
        if template.database_id != database_id {
            return Err(WalError::BadSegment {
                segment: template.segment_no,
                path: sdir.segment_path(template.segment_no),
                reason: format!(
                    "the log belongs to database {:#x}, not {database_id:#x}",
                    template.database_id
                ),
            });
        }
        let geometry = Geometry {
            segment_size: u64::from(template.segment_size),
        };
        let mut reader = WalReader::new(
            io.clone(),
            sdir.clone(),
            geometry,
            database_id,
            RecoveryMode::SalvageToFirstError,
            from,
        )?;
        for record in reader.by_ref() {
            record?;
        }
        let end = reader.end().unwrap_or(geometry.record_position(from));
        let end_seg = geometry.segment_of(end);
        let partial = present.contains(&end_seg)
            && sdir
                .read_header(end_seg)
                .is_ok_and(|h| h.same_log(&template));
        drop(reader);
        let sdir = Arc::try_unwrap(sdir).map_err(|_| WalError::BadSegment {
            segment: end_seg,
            path: dir.to_path_buf(),
            reason: "the log's reader is still open".into(),
        })?;
        Ok(LogImport {
            io,
            dir: sdir,
            template: SegmentHeader {
                segment_no: 0,
                ..template
            },
            geometry,
            current: None,
            begin: None,
            end: Some(end),
            resumed: Some((end_seg, partial)),
        })
    }

    /// Says that the log begins at `start` (a backup's start LSN, where an
    /// open of the imported log reads from), before anything is pushed.
    /// `start` may lie in a segment's tail after its last record (a
    /// running transaction's first LSN is the log's end when it began to
    /// write, and its first record may have gone to the next segment):
    /// when the first records pushed begin the next segment, the segment
    /// holding `start` is written too, its tail from `start` on filled as
    /// the writer fills it, so a reader from `start` moves on to them. A
    /// first push in `start`'s own segment makes it a no-op.
    pub fn begin_at(&mut self, start: Lsn) {
        if self.end.is_none() {
            self.begin = Some(start);
        }
    }

    /// The database the log belongs to.
    pub fn database_id(&self) -> u64 {
        self.template.database_id
    }

    /// One past the last record pushed, if any was.
    pub fn end(&self) -> Option<Lsn> {
        self.end
    }

    fn bad(&self, segment: u64, reason: String) -> WalError {
        WalError::BadSegment {
            segment,
            path: self.dir.segment_path(segment),
            reason,
        }
    }

    /// Appends `bytes`, whole records, the first at LSN `first` (rules in
    /// the module essay).
    pub fn push(&mut self, first: Lsn, bytes: &[u8]) -> Result<(), WalError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let seg = self.geometry.segment_of(first);
        let off = self.geometry.offset_in_segment(first) as usize;
        // The first push, after the segment holding the log's beginning:
        // that segment ends the way a resumed end's does (below).
        if self.end.is_none()
            && let Some(begin) = self.begin.take()
            && self.geometry.segment_of(begin) < seg
            && self.geometry.offset_in_segment(begin) != 0
        {
            self.end = Some(begin);
        }
        if off < crate::wal::segment::SEGMENT_HEADER_SIZE
            || off + bytes.len() > self.geometry.segment_size as usize
        {
            return Err(self.bad(
                seg,
                format!(
                    "records at LSN {first} ({} bytes) do not lie inside one segment's record area",
                    bytes.len()
                ),
            ));
        }
        if let Some(end) = self.end {
            let (end_seg, at_start) = (
                self.geometry.segment_of(end),
                self.geometry.offset_in_segment(end) == 0,
            );
            let follows = first == end
                || (first == self.geometry.first_record(seg)
                    && (seg == end_seg + 1 || (seg == end_seg && at_start)));
            if !follows {
                return Err(self.bad(
                    seg,
                    format!("records at LSN {first} do not follow the log's end at LSN {end}"),
                ));
            }
        }
        // A resumed log (or one begun at `begin_at`) whose end lies inside
        // an earlier segment that nothing was pushed into yet: that
        // segment's tail is padded first, as when it was being filled.
        if self.current.is_none()
            && let Some(end) = self.end
            && self.geometry.segment_of(end) < seg
            && self.geometry.offset_in_segment(end) != 0
        {
            let n = self.geometry.segment_of(end);
            let at = self.geometry.offset_in_segment(end) as usize;
            self.current = Some(self.filling(n, at));
        }
        if self.current.as_ref().is_some_and(|c| c.n != seg) {
            self.close_segment()?;
        }
        if self.current.is_none() {
            self.current = Some(self.filling(seg, off));
        }
        if let Some(filling) = self.current.as_mut() {
            filling.buf[off..off + bytes.len()].copy_from_slice(bytes);
        }
        self.end = Some(Lsn(first.0 + bytes.len() as u64));
        Ok(())
    }

    /// A new buffer for segment `n`, whose first byte to push is at `off`:
    /// written from there when it is the resumed end's segment and its
    /// file has this log's header, else whole (module essay).
    fn filling(&self, n: u64, off: usize) -> Filling {
        let write_from = match self.resumed {
            Some((r, true)) if r == n => off,
            _ => 0,
        };
        let mut buf = vec![0u8; self.geometry.segment_size as usize];
        let header = SegmentHeader {
            segment_no: n,
            ..self.template
        }
        .encode();
        buf[..header.len()].copy_from_slice(&header);
        Filling { n, buf, write_from }
    }

    /// Pads the current segment's tail (when a later segment follows) and
    /// writes it.
    fn close_segment(&mut self) -> Result<(), WalError> {
        let Some(Filling {
            n,
            mut buf,
            write_from,
        }) = self.current.take()
        else {
            return Ok(());
        };
        if let Some(end) = self.end
            && self.geometry.segment_of(end) == n
        {
            let off = self.geometry.offset_in_segment(end) as usize;
            let len = buf.len() - off;
            if len >= RECORD_HEADER_SIZE {
                let meta = RecordMeta::new(RecordType::Padding);
                let pad = record::encode(&meta, end, &vec![0u8; len - RECORD_HEADER_SIZE]);
                buf[off..].copy_from_slice(&pad);
            }
        }
        self.write_segment(n, buf, write_from)
    }

    /// Writes `buf[from..]` at offset `from` of segment `n` (the whole file
    /// when `from` is 0) and syncs it.
    fn write_segment(&self, n: u64, mut buf: Vec<u8>, from: usize) -> Result<(), WalError> {
        if from > 0 {
            buf.drain(..from);
        }
        let path: PathBuf = self.dir.segment_path(n);
        let opts = OpenOptions::read_write_create(FileClass::Wal);
        let fh = self
            .io
            .open(&path, opts)
            .wait()
            .map_err(WalError::io("create an imported segment"))?;
        let result = self
            .io
            .write_at(fh, from as u64, IoBuf::from(buf))
            .wait()
            .map_err(WalError::io("write an imported segment"))
            .and_then(|_| {
                self.io
                    .fdatasync(fh)
                    .wait()
                    .map_err(WalError::io("sync an imported segment"))
            });
        let _ = self.io.close(fh).wait();
        result
    }

    /// Writes the last segment (its tail stays zero: the log ends there),
    /// syncs the directory, and returns the log's end (`None`: nothing was
    /// pushed and nothing written).
    pub fn finish(mut self) -> Result<Option<Lsn>, WalError> {
        if let Some(f) = self.current.take() {
            self.write_segment(f.n, f.buf, f.write_from)?;
        }
        self.io
            .sync_dir(self.dir.path())
            .wait()
            .map_err(WalError::io("sync the imported log's directory"))?;
        Ok(self.end)
    }
}
