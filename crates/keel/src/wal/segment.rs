//! WAL segments: fixed-size files that hold the logical log.
//!
//! The log is one stream of bytes; an [`Lsn`] is a position in it
//! (invariant 3). Segment `n` holds positions `n * S .. (n + 1) * S`, where
//! `S` is the segment size, in the file `wal/{n:016X}.wal` at the same
//! offsets. The first [`SEGMENT_HEADER_SIZE`] bytes of each segment are its
//! header, so the first record of segment `n` is at `n * S + 4096`; LSN 0 is
//! never a record's position, which keeps `Lsn::ZERO` free to mean "none".
//!
//! ```text
//!  0       4     6     8               16        20        24              32
//!  +-------+-----+-----+---------------+---------+---------+---------------+
//!  | magic | ver | rsv | segment no    | seg size| hdr size| start LSN     |
//!  +-------+-----+-----+---------------+---------+---------+---------------+
//!  32              40         44         48                        4096
//!  +---------------+----------+----------+-------------------------+
//!  | database id   | max batch|  crc32c  |  zero                   |
//!  +---------------+----------+----------+-------------------------+
//! ```
//!
//! Records never span segments: a record that does not fit in what is left
//! of a segment is preceded by a padding record (or, when fewer than a
//! header's bytes are left, by nothing) and starts in the next segment.
//!
//! `max batch` is the most bytes the writer ever has written but not yet
//! synced. The reader uses it to tell a torn tail (invalid bytes followed by
//! valid records only within one unsynced batch) from corruption (valid
//! records further on), invariant 10. The database id ties a segment to its
//! database, so a segment copied from elsewhere fails validation.
//!
//! Lifecycle of a segment file (the function behind each edge):
//!
//! ```text
//!   (none) --prepare--> Prepared --first write--> Active --rollover--> Full
//!                          ^                                           |
//!                          +------ recycle (rename, new header) -------+
//!                                                                      |
//!                              Archived (zstd copy) <--archive---------+
//!                              Deleted <--------------remove-----------+
//! ```
//!
//! A prepared segment is written out to its full size (zeroes) and its header synced,
//! and the directory synced, before the writer may use it, so a commit never
//! waits on file creation and a crash never leaves a used segment whose name
//! or header was not durable.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use keel_io::{AsyncIo, FileClass, FileHandle, IoBuf, IoError, OpenOptions};

use crate::checksum::crc32c;
use crate::types::Lsn;
use crate::wal::WalError;

/// Bytes reserved at the start of every segment for its header (one 4 KiB
/// block, so record data stays block-aligned for O_DIRECT).
pub const SEGMENT_HEADER_SIZE: usize = 4096;
/// `"KWAL"` as a little-endian u32.
pub const SEGMENT_MAGIC: u32 = u32::from_le_bytes(*b"KWAL");
/// Segment format version.
pub const SEGMENT_FORMAT_VERSION: u16 = 1;
/// Bytes of the header that carry fields; the rest of the 4 KiB is zero.
pub const SEGMENT_HEADER_USED: usize = 48;
/// File name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".wal";
/// File name suffix of a retired segment kept for recycling: out of the
/// log's names, so no reader takes it for part of the log.
pub const SPARE_SUFFIX: &str = ".wal.spare";
/// Suffix of a segment being prepared (`<n>.wal.prep`), renamed to its
/// segment name once its header is on disk: never part of the log.
pub const PREP_SUFFIX: &str = ".prep";

/// Bytes of zeroes one write of [`SegmentDir::zero_fill`] carries.
const ZERO_CHUNK: u64 = 1 << 20;
/// Zero-fill writes in flight at once.
const ZERO_IN_FLIGHT: usize = 2;

/// Byte offsets of the segment header fields (mirrored in docs/storage.md).
pub mod offsets {
    /// u32 `"KWAL"`.
    pub const MAGIC: usize = 0;
    /// u16 format version.
    pub const VERSION: usize = 4;
    /// u16 reserved, zero.
    pub const RESERVED: usize = 6;
    /// u64 segment number.
    pub const SEGMENT_NO: usize = 8;
    /// u32 segment size in bytes.
    pub const SEGMENT_SIZE: usize = 16;
    /// u32 header size in bytes (4096).
    pub const HEADER_SIZE: usize = 20;
    /// u64 LSN of the segment's first byte (`segment no * segment size`).
    pub const START_LSN: usize = 24;
    /// u64 the database's id.
    pub const DATABASE_ID: usize = 32;
    /// u32 most unsynced bytes the writer ever has in flight.
    pub const MAX_BATCH: usize = 40;
    /// u32 CRC32C of bytes 0..44.
    pub const CRC: usize = 44;
}

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment number.
    pub segment_no: u64,
    /// Segment size in bytes.
    pub segment_size: u32,
    /// The database the segment belongs to.
    pub database_id: u64,
    /// Most unsynced bytes in flight at once.
    pub max_batch_bytes: u32,
}

impl SegmentHeader {
    /// Whether `self` belongs to the same log as `other`: the same database
    /// and segment size (the segment number aside).
    pub fn same_log(&self, other: &SegmentHeader) -> bool {
        self.database_id == other.database_id && self.segment_size == other.segment_size
    }

    /// LSN of the segment's first byte.
    pub fn start_lsn(&self) -> Lsn {
        Lsn(self.segment_no * u64::from(self.segment_size))
    }

    /// Encodes the full 4 KiB header block.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SEGMENT_HEADER_SIZE];
        b[offsets::MAGIC..offsets::MAGIC + 4].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        b[offsets::VERSION..offsets::VERSION + 2]
            .copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        b[offsets::SEGMENT_NO..offsets::SEGMENT_NO + 8]
            .copy_from_slice(&self.segment_no.to_le_bytes());
        b[offsets::SEGMENT_SIZE..offsets::SEGMENT_SIZE + 4]
            .copy_from_slice(&self.segment_size.to_le_bytes());
        b[offsets::HEADER_SIZE..offsets::HEADER_SIZE + 4]
            .copy_from_slice(&(SEGMENT_HEADER_SIZE as u32).to_le_bytes());
        b[offsets::START_LSN..offsets::START_LSN + 8]
            .copy_from_slice(&self.start_lsn().0.to_le_bytes());
        b[offsets::DATABASE_ID..offsets::DATABASE_ID + 8]
            .copy_from_slice(&self.database_id.to_le_bytes());
        b[offsets::MAX_BATCH..offsets::MAX_BATCH + 4]
            .copy_from_slice(&self.max_batch_bytes.to_le_bytes());
        let crc = crc32c(&b[..offsets::CRC]);
        b[offsets::CRC..offsets::CRC + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates a header read from `path`, which should be
    /// segment `expected`.
    pub fn decode(bytes: &[u8], expected: u64, path: &Path) -> Result<SegmentHeader, WalError> {
        let bad = |reason: String| WalError::BadSegment {
            segment: expected,
            path: path.to_path_buf(),
            reason,
        };
        let h = bytes
            .get(..SEGMENT_HEADER_USED)
            .ok_or_else(|| bad(format!("header truncated to {} bytes", bytes.len())))?;
        let u16_at = |o: usize| u16::from_le_bytes([h[o], h[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        if u32_at(offsets::MAGIC) != SEGMENT_MAGIC {
            return Err(bad(format!("bad magic {:#010x}", u32_at(offsets::MAGIC))));
        }
        let stored = u32_at(offsets::CRC);
        let computed = crc32c(&h[..offsets::CRC]);
        if stored != computed {
            return Err(bad(format!(
                "header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            )));
        }
        if u16_at(offsets::VERSION) != SEGMENT_FORMAT_VERSION {
            return Err(bad(format!(
                "unsupported version {}",
                u16_at(offsets::VERSION)
            )));
        }
        let header = SegmentHeader {
            segment_no: u64_at(offsets::SEGMENT_NO),
            segment_size: u32_at(offsets::SEGMENT_SIZE),
            database_id: u64_at(offsets::DATABASE_ID),
            max_batch_bytes: u32_at(offsets::MAX_BATCH),
        };
        if header.segment_no != expected {
            return Err(bad(format!(
                "header says segment {} (a misnamed or recycled file?)",
                header.segment_no
            )));
        }
        if u32_at(offsets::HEADER_SIZE) as usize != SEGMENT_HEADER_SIZE
            || u16_at(offsets::RESERVED) != 0
            || header.segment_size < MIN_SEGMENT_SIZE
            || header.segment_size > MAX_SEGMENT_SIZE
            || u64_at(offsets::START_LSN) != header.start_lsn().0
            || header.max_batch_bytes == 0
        {
            return Err(bad("inconsistent header fields".into()));
        }
        Ok(header)
    }
}

/// Smallest segment size accepted.
pub const MIN_SEGMENT_SIZE: u32 = 64 * 1024;
/// Largest segment size accepted.
pub const MAX_SEGMENT_SIZE: u32 = 1 << 30;
/// Largest segment number a log can reach: the end of the segment after it
/// still fits in a u64 LSN at the largest segment size, so no position
/// arithmetic on a listed segment can overflow. A file named with a larger
/// number is not part of any log (invariant 9: names are untrusted input).
pub const MAX_SEGMENT_NO: u64 = u64::MAX / MAX_SEGMENT_SIZE as u64 - 2;
/// Largest LSN a log can reach (the start of the segment after
/// [`MAX_SEGMENT_NO`] at the largest size, so positions, segment ends and
/// record positions computed from any LSN up to it stay inside a u64).
pub const MAX_LSN: u64 = (MAX_SEGMENT_NO + 1) * MAX_SEGMENT_SIZE as u64;

/// File name of segment `n`.
pub fn segment_file_name(n: u64) -> String {
    format!("{n:016X}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name back to its number.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(SEGMENT_SUFFIX)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Where LSNs fall in segments of a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Segment size in bytes.
    pub segment_size: u64,
}

impl Geometry {
    /// Segment holding `lsn`.
    pub fn segment_of(&self, lsn: Lsn) -> u64 {
        lsn.0 / self.segment_size
    }

    /// Offset of `lsn` within its segment file.
    pub fn offset_in_segment(&self, lsn: Lsn) -> u64 {
        lsn.0 % self.segment_size
    }

    /// First byte of segment `n`.
    pub fn segment_start(&self, n: u64) -> Lsn {
        Lsn(n * self.segment_size)
    }

    /// Position of the first record of segment `n`.
    pub fn first_record(&self, n: u64) -> Lsn {
        Lsn(n * self.segment_size + SEGMENT_HEADER_SIZE as u64)
    }

    /// One past the last byte of the segment holding `lsn`.
    pub fn segment_end(&self, lsn: Lsn) -> Lsn {
        self.segment_start(self.segment_of(lsn) + 1)
    }

    /// Where the next record goes given the end of the previous one: the
    /// start of a segment is moved past its header.
    pub fn record_position(&self, end: Lsn) -> Lsn {
        if self.offset_in_segment(end) == 0 {
            Lsn(end.0 + SEGMENT_HEADER_SIZE as u64)
        } else {
            end
        }
    }
}

/// The WAL directory: names, listing, preparing, recycling and removing
/// segment files through [`AsyncIo`].
pub struct SegmentDir {
    io: std::sync::Arc<dyn AsyncIo>,
    dir: PathBuf,
    direct: bool,
}

impl SegmentDir {
    /// The segments of `dir`, created if missing.
    pub fn open(
        io: std::sync::Arc<dyn AsyncIo>,
        dir: &Path,
        direct: bool,
    ) -> Result<SegmentDir, WalError> {
        if io.read_dir(dir).wait().is_err() {
            io.create_dir(dir)
                .wait()
                .map_err(WalError::io("create the WAL directory"))?;
            if let Some(parent) = dir.parent() {
                io.sync_dir(parent)
                    .wait()
                    .map_err(WalError::io("sync the data directory"))?;
            }
        }
        Ok(SegmentDir {
            io,
            dir: dir.to_path_buf(),
            direct,
        })
    }

    /// The segments of an existing `dir`, for reading only: nothing is
    /// created.
    pub fn existing(io: std::sync::Arc<dyn AsyncIo>, dir: &Path) -> Result<SegmentDir, WalError> {
        io.read_dir(dir)
            .wait()
            .map_err(WalError::io("list the WAL directory"))?;
        Ok(SegmentDir {
            io,
            dir: dir.to_path_buf(),
            direct: false,
        })
    }

    /// The same directory, its segments opened for writing with O_DIRECT
    /// or not as `direct` says.
    pub fn with_direct(&self, direct: bool) -> SegmentDir {
        SegmentDir {
            io: self.io.clone(),
            dir: self.dir.clone(),
            direct,
        }
    }

    /// Whether segments are opened for writing with O_DIRECT.
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// Whether segment `n` can be opened with O_DIRECT: `false` when the
    /// file system refuses it; any other failure to open is an error.
    pub fn direct_supported(&self, n: u64) -> Result<bool, WalError> {
        let opts = OpenOptions::new(FileClass::Wal).write(true).direct(true);
        match self.io.open(&self.segment_path(n), opts).wait() {
            Ok(fh) => {
                let _ = self.io.close(fh).wait();
                Ok(true)
            }
            Err(IoError::DirectIoUnsupported { .. }) => Ok(false),
            Err(e) => Err(WalError::io("open a segment")(e)),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Path of segment `n`.
    pub fn segment_path(&self, n: u64) -> PathBuf {
        self.dir.join(segment_file_name(n))
    }

    /// Segment numbers present, ascending. A segment-like name beyond
    /// [`MAX_SEGMENT_NO`] is an error naming the file (invariant 9).
    pub fn list(&self) -> Result<Vec<u64>, WalError> {
        let entries = self
            .io
            .read_dir(&self.dir)
            .wait()
            .map_err(WalError::io("list the WAL directory"))?;
        let mut v: Vec<u64> = Vec::new();
        for e in entries.iter().filter(|e| !e.is_dir) {
            let Some(n) = e.name.to_str().and_then(parse_segment_file_name) else {
                continue;
            };
            if n > MAX_SEGMENT_NO {
                return Err(WalError::BadSegment {
                    segment: n,
                    path: self.dir.join(&e.name),
                    reason: format!(
                        "not a segment of any log: its number is beyond the largest a log \
                         can reach ({MAX_SEGMENT_NO:#X}); move the file out of the WAL directory"
                    ),
                });
            }
            v.push(n);
        }
        v.sort_unstable();
        Ok(v)
    }

    /// Path of segment `n` while it is being prepared.
    pub fn prep_path(&self, n: u64) -> PathBuf {
        self.dir
            .join(format!("{}{PREP_SUFFIX}", segment_file_name(n)))
    }

    /// Removes segments whose preparation a crash or a failure cut short
    /// (`<n>.wal.prep`): the writer only ever writes into a segment renamed
    /// into place after its header was synced, so no record is in one.
    /// Makes the removal durable. Returns how many were removed.
    pub fn remove_unfinished_preparations(&self) -> Result<usize, WalError> {
        let entries = self
            .io
            .read_dir(&self.dir)
            .wait()
            .map_err(WalError::io("list the WAL directory"))?;
        let unfinished: Vec<u64> = entries
            .iter()
            .filter(|e| !e.is_dir)
            .filter_map(|e| {
                let name = e.name.to_str()?.strip_suffix(PREP_SUFFIX)?;
                let n = parse_segment_file_name(name)?;
                (segment_file_name(n) == name).then_some(n)
            })
            .collect();
        for &n in &unfinished {
            self.io
                .remove(&self.prep_path(n))
                .wait()
                .map_err(WalError::io("remove an unfinished segment preparation"))?;
        }
        if !unfinished.is_empty() {
            self.io
                .sync_dir(&self.dir)
                .wait()
                .map_err(WalError::io("sync the WAL directory"))?;
        }
        Ok(unfinished.len())
    }

    /// Path of the spare made of retired segment `n`.
    pub fn spare_path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:016X}{SPARE_SUFFIX}"))
    }

    /// Spares present (by the number of the segment each was), ascending.
    pub fn list_spares(&self) -> Result<Vec<u64>, WalError> {
        let entries = self
            .io
            .read_dir(&self.dir)
            .wait()
            .map_err(WalError::io("list the WAL directory"))?;
        let mut v: Vec<u64> = entries
            .iter()
            .filter(|e| !e.is_dir)
            .filter_map(|e| {
                let hex = e.name.to_str()?.strip_suffix(SPARE_SUFFIX)?;
                (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok())?
            })
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Takes retired segment `n` out of the log, keeping its file as a
    /// spare for [`SegmentDir::prepare`] to recycle.
    pub fn make_spare(&self, n: u64) -> Result<(), WalError> {
        self.io
            .rename(&self.segment_path(n), &self.spare_path(n))
            .wait()
            .map_err(WalError::io("keep a retired segment as a spare"))
    }

    /// Removes the spare made of segment `n`.
    pub fn remove_spare(&self, n: u64) -> Result<(), WalError> {
        self.io
            .remove(&self.spare_path(n))
            .wait()
            .map_err(WalError::io("remove a spare segment"))
    }

    /// Opens segment `n` for reading and writing.
    pub fn open_segment(&self, n: u64) -> Result<FileHandle, WalError> {
        let opts = OpenOptions::new(FileClass::Wal)
            .write(true)
            .direct(self.direct);
        self.io
            .open(&self.segment_path(n), opts)
            .wait()
            .map_err(WalError::io("open a segment"))
    }

    /// Runs `f` on segment `n`, opened for reading (and writing when
    /// `write`), and closes it whatever `f` returns.
    pub fn with_segment<T>(
        &self,
        n: u64,
        write: bool,
        f: impl FnOnce(FileHandle) -> Result<T, WalError>,
    ) -> Result<T, WalError> {
        let opts = OpenOptions::new(FileClass::Wal).write(write);
        let fh = self
            .io
            .open(&self.segment_path(n), opts)
            .wait()
            .map_err(WalError::io("open a segment"))?;
        let result = f(fh);
        let _ = self.io.close(fh).wait();
        result
    }

    /// The header of the newest segment among `present` (ascending, as
    /// [`list`](Self::list) returns them) whose header is valid: the log's
    /// template, whose fields every segment of one log shares but its
    /// number. `None` when no header is valid.
    pub fn newest_header(&self, present: &[u64]) -> Option<SegmentHeader> {
        present.iter().rev().find_map(|&n| self.read_header(n).ok())
    }

    /// Reads and validates segment `n`'s header.
    pub fn read_header(&self, n: u64) -> Result<SegmentHeader, WalError> {
        let (buf, n_read) = self.with_segment(n, false, |fh| {
            self.io
                .read_at(fh, 0, IoBuf::zeroed(SEGMENT_HEADER_USED))
                .wait()
                .map_err(WalError::io("read a segment header"))
        })?;
        SegmentHeader::decode(&buf[..n_read], n, &self.segment_path(n))
    }

    /// Makes segment `header.segment_no` ready for the writer: reuses
    /// `recycle` (the spare of an old segment's number) by renaming it, or creates a new
    /// file; writes it out to full size (zeroes); writes and syncs the header; syncs the
    /// directory.
    pub fn prepare(&self, header: &SegmentHeader, recycle: Option<u64>) -> Result<(), WalError> {
        // The segment is made under a temporary name (which `list` does not
        // see) and renamed into place only once its header is on disk, so a
        // crash or kill mid-way never leaves a segment without a header.
        let path = self.segment_path(header.segment_no);
        let tmp = self.prep_path(header.segment_no);
        if let Some(old) = recycle {
            self.io
                .rename(&self.spare_path(old), &tmp)
                .wait()
                .map_err(WalError::io("recycle a segment"))?;
        }
        let opts = OpenOptions::read_write_create(FileClass::Wal).direct(self.direct);
        let fh = self
            .io
            .open(&tmp, opts)
            .wait()
            .map_err(WalError::io("create a segment"))?;
        let result = self.write_header(fh, header);
        let _ = self.io.close(fh).wait();
        result?;
        self.io
            .rename(&tmp, &path)
            .wait()
            .map_err(WalError::io("put a prepared segment in place"))?;
        self.io
            .sync_dir(&self.dir)
            .wait()
            .map_err(WalError::io("sync the WAL directory"))
    }

    fn write_header(&self, fh: FileHandle, header: &SegmentHeader) -> Result<(), WalError> {
        let size = u64::from(header.segment_size);
        let current = self
            .io
            .size(fh)
            .wait()
            .map_err(WalError::io("size a segment"))?;
        if current < size {
            self.zero_fill(fh, current, size)?;
        }
        let block = IoBuf::aligned_from(&header.encode());
        self.io
            .write_at(fh, 0, block)
            .wait()
            .map_err(WalError::io("write a segment header"))?;
        self.io
            .fsync(fh)
            .wait()
            .map_err(WalError::io("sync a segment header"))
    }

    /// Writes zeroes over `from..to`. A new segment is written out in full
    /// rather than `fallocate`d: allocated-but-unwritten extents make every
    /// first write into them a metadata change, so each commit's durable
    /// write would also commit a file-system journal transaction. Recycled
    /// segments are already written and skip this.
    ///
    /// At most [`ZERO_IN_FLIGHT`] writes of [`ZERO_CHUNK`] bytes are in
    /// flight, and each returned buffer (writes leave it zeroed) carries
    /// the next one: a 16 MiB segment costs two zeroed megabytes of memory,
    /// not sixteen.
    fn zero_fill(&self, fh: FileHandle, from: u64, to: u64) -> Result<(), WalError> {
        let mut spare: Option<IoBuf> = None;
        let mut in_flight = VecDeque::new();
        let mut at = from - from % 4096;
        let result = loop {
            if at < to && in_flight.len() < ZERO_IN_FLIGHT {
                let len = ZERO_CHUNK.min(to - at) as usize;
                let buf = match spare.take() {
                    Some(b) if b.len() == len => b,
                    _ => IoBuf::aligned(len),
                };
                in_flight.push_back(self.io.write_at(fh, at, buf));
                at += len as u64;
                continue;
            }
            let Some(write) = in_flight.pop_front() else {
                break Ok(());
            };
            match write.wait() {
                Ok(buf) => {
                    debug_assert!(
                        buf.iter().all(|&b| b == 0),
                        "a write changed its zero buffer (inv. 3: a prepared segment holds no record)"
                    );
                    spare = Some(buf);
                }
                Err(e) => break Err(WalError::io("zero-fill a segment")(e)),
            }
        };
        // After a failure, the writes still in flight finish before their
        // file may be closed.
        for write in in_flight {
            let _ = write.wait();
        }
        result
    }

    /// Removes segment `n`'s file.
    pub fn remove(&self, n: u64) -> Result<(), WalError> {
        self.io
            .remove(&self.segment_path(n))
            .wait()
            .map_err(WalError::io("remove a segment"))
    }

    /// Syncs the directory after removals or renames.
    pub fn sync(&self) -> Result<(), WalError> {
        self.io
            .sync_dir(&self.dir)
            .wait()
            .map_err(WalError::io("sync the WAL directory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            segment_no: 5,
            segment_size: 1 << 20,
            database_id: 0xDEAD_BEEF,
            max_batch_bytes: 1 << 18,
        }
    }

    #[test]
    fn header_round_trips_and_detects_damage() {
        let h = header();
        let b = h.encode();
        assert_eq!(b.len(), SEGMENT_HEADER_SIZE);
        let p = Path::new("x.wal");
        assert_eq!(SegmentHeader::decode(&b, 5, p).unwrap(), h);
        let e = SegmentHeader::decode(&b, 6, p).unwrap_err();
        assert!(e.to_string().contains("header says segment 5"), "{e}");
        for i in 0..SEGMENT_HEADER_USED {
            let mut c = b.clone();
            c[i] ^= 0x04;
            assert!(SegmentHeader::decode(&c, 5, p).is_err(), "flip at {i}");
        }
        assert!(SegmentHeader::decode(&b[..10], 5, p).is_err());
    }

    #[test]
    fn names_and_geometry() {
        assert_eq!(segment_file_name(26), "000000000000001A.wal");
        assert_eq!(parse_segment_file_name("000000000000001A.wal"), Some(26));
        assert_eq!(parse_segment_file_name("1A.wal"), None);
        assert_eq!(parse_segment_file_name("000000000000001A.tmp"), None);
        let g = Geometry {
            segment_size: 1 << 20,
        };
        assert_eq!(g.first_record(0), Lsn(4096));
        assert_eq!(g.segment_of(Lsn((1 << 20) + 5)), 1);
        assert_eq!(g.record_position(Lsn(1 << 20)), Lsn((1 << 20) + 4096));
        assert_eq!(g.record_position(Lsn(5000)), Lsn(5000));
        assert_eq!(g.segment_end(Lsn(5000)), Lsn(1 << 20));
    }
}
