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
//!   ([`Wal::open_from`](super::Wal::open_from)).
//! - Each segment file is written whole (segment size, header and all),
//!   synced, and the directory synced at [`LogImport::finish`]. The
//!   directory must hold no segment yet: an import never replaces a log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_io::{AsyncIo, FileClass, IoBuf, OpenOptions};

use crate::types::Lsn;
use crate::wal::WalError;
use crate::wal::record::{self, RECORD_HEADER_SIZE, RecordMeta, RecordType};
use crate::wal::segment::{
    Geometry, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, SegmentDir, SegmentHeader,
};

/// A log being written from shipped records (module essay).
pub struct LogImport {
    io: Arc<dyn AsyncIo>,
    dir: SegmentDir,
    template: SegmentHeader,
    geometry: Geometry,
    /// The segment being filled and its bytes.
    current: Option<(u64, Vec<u8>)>,
    /// One past the last record pushed (`None` before the first push).
    end: Option<Lsn>,
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
            end: None,
        })
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
        if self.current.as_ref().is_some_and(|(n, _)| *n != seg) {
            self.close_segment()?;
        }
        let (_, buf) = self.current.get_or_insert_with(|| {
            let mut buf = vec![0u8; self.geometry.segment_size as usize];
            let header = SegmentHeader {
                segment_no: seg,
                ..self.template
            }
            .encode();
            buf[..header.len()].copy_from_slice(&header);
            (seg, buf)
        });
        buf[off..off + bytes.len()].copy_from_slice(bytes);
        self.end = Some(Lsn(first.0 + bytes.len() as u64));
        Ok(())
    }

    /// Pads the current segment's tail (when a later segment follows) and
    /// writes it.
    fn close_segment(&mut self) -> Result<(), WalError> {
        let Some((n, mut buf)) = self.current.take() else {
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
        self.write_segment(n, buf)
    }

    fn write_segment(&self, n: u64, buf: Vec<u8>) -> Result<(), WalError> {
        let path: PathBuf = self.dir.segment_path(n);
        let opts = OpenOptions::read_write_create(FileClass::Wal);
        let fh = self
            .io
            .open(&path, opts)
            .wait()
            .map_err(WalError::io("create an imported segment"))?;
        let result = self
            .io
            .write_at(fh, 0, IoBuf::from(buf))
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
        if let Some((n, buf)) = self.current.take() {
            self.write_segment(n, buf)?;
        }
        self.io
            .sync_dir(self.dir.path())
            .wait()
            .map_err(WalError::io("sync the imported log's directory"))?;
        Ok(self.end)
    }
}
