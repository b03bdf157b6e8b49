//! The chunk: one immutable archive object holding a run of whole log
//! records, zstd-compressed, behind a header that says whose log it is,
//! which part, and how to check it.
//!
//! ```text
//!  0       4     6     8               16        20        24              32
//!  +-------+-----+-----+---------------+---------+---------+---------------+
//!  | magic | ver | hsz | database id   | timeline| records | start LSN     |
//!  +-------+-----+-----+---------------+---------+---------+---------------+
//!  32              40              48              56        60        64        68        72
//!  +---------------+---------------+---------------+---------+---------+---------+---------+----
//!  | end LSN       | min commit us | max commit us | body len| raw len | body crc| hdr crc | body…
//!  +---------------+---------------+---------------+---------+---------+---------+---------+----
//! ```
//!
//! Everything is little-endian (invariant 1); docs/storage.md ("WAL
//! archive") describes each field and a test checks it against
//! [`offsets`].
//!
//! ## The LSN range
//!
//! A chunk covers log positions `start..end`: `start` is where the previous
//! chunk of its timeline ended (or where archiving began), `end` is one past
//! its last record. So the chunks of a timeline tile the log exactly, and
//! continuity between two chunks is plain equality: `next.start ==
//! prev.end`. Records are byte-contiguous within a chunk, because a chunk
//! never spans a segment boundary: the archiver closes a chunk when the next
//! record starts a new segment. The only gap is therefore at a chunk's
//! start: its first record is either at `start`, or, when `start` was a
//! segment's end (or padding filled the rest of it), at the next segment's
//! first record position: a multiple of 4096 no more than
//! [`MAX_START_GAP`] bytes after `start`.
//!
//! ## Decoding (invariant 9)
//!
//! [`decode`] treats the bytes as hostile: it checks the header CRC, the
//! sizes against the object's length and [`MAX_RAW_BYTES`], the body CRC,
//! then decompresses at most `raw len` bytes (so the allocation grows only
//! with what the body really expands to), and walks the records with the
//! engine's own frame decoder (length, LSN, CRC32C of each record,
//! invariants 2 and 3). The record count, the end LSN and the commit times
//! must agree with the header. Every error names the object and the offset;
//! nothing panics.

use keel::checksum::crc32c;
use keel::types::Lsn;
use keel::wal::Payload;
use keel::wal::record::{self, MAX_RECORD_SIZE, RECORD_HEADER_SIZE, RecordHeader, RecordType};
use keel::wal::segment::SEGMENT_HEADER_SIZE;

use crate::error::{ArchiveError, Place, Result};

/// `KWAR` as a little-endian u32.
pub const CHUNK_MAGIC: u32 = u32::from_le_bytes(*b"KWAR");
/// Chunk format version.
pub const CHUNK_VERSION: u16 = 1;
/// Size of the chunk header in bytes.
pub const CHUNK_HEADER_SIZE: usize = 72;
/// Most uncompressed record bytes a chunk may hold. The archiver's
/// `max_chunk_bytes` is at most this; the decoder rejects a larger `raw
/// len` before allocating anything.
pub const MAX_RAW_BYTES: usize = 64 << 20;
/// Largest gap between a chunk's start and its first record: padding (less
/// than one record) plus the next segment's header.
pub const MAX_START_GAP: u64 = (MAX_RECORD_SIZE + SEGMENT_HEADER_SIZE) as u64;
/// zstd level for chunk bodies: level 3 (zstd's default) compresses log
/// records several-fold at hundreds of MB/s per core; higher levels cost
/// several times the CPU for a few percent. The archiver is off the commit
/// path, but it shares the machine with it.
pub const ZSTD_LEVEL: i32 = 3;

/// Byte offsets of the chunk header fields (mirrored in docs/storage.md).
pub mod offsets {
    /// u32 `KWAR`.
    pub const MAGIC: usize = 0;
    /// u16 format version.
    pub const VERSION: usize = 4;
    /// u16 header size.
    pub const HEADER_SIZE: usize = 6;
    /// u64 the database's id.
    pub const DATABASE_ID: usize = 8;
    /// u32 timeline.
    pub const TIMELINE: usize = 16;
    /// u32 number of records.
    pub const RECORD_COUNT: usize = 20;
    /// u64 where the chunk's range starts.
    pub const START_LSN: usize = 24;
    /// u64 one past its last record.
    pub const END_LSN: usize = 32;
    /// u64 earliest commit time in it (µs since the epoch), 0 if none.
    pub const MIN_COMMIT_TIME: usize = 40;
    /// u64 latest commit time in it, 0 if none.
    pub const MAX_COMMIT_TIME: usize = 48;
    /// u32 compressed body length.
    pub const BODY_LEN: usize = 56;
    /// u32 uncompressed body length.
    pub const RAW_LEN: usize = 60;
    /// u32 CRC32C of the compressed body.
    pub const BODY_CRC: usize = 64;
    /// u32 CRC32C of header bytes 0..68.
    pub const HEADER_CRC: usize = 68;
}

/// What a chunk's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The database whose log this is.
    pub database_id: u64,
    /// The history the log belongs to (1 until a restore starts another).
    pub timeline: u32,
    /// Records in the chunk.
    pub record_count: u32,
    /// Where the chunk's range starts (the previous chunk's end).
    pub start: Lsn,
    /// One past its last record.
    pub end: Lsn,
    /// Earliest commit time in it (µs since the Unix epoch), 0 if none.
    pub min_commit_time_us: u64,
    /// Latest commit time in it, 0 if none.
    pub max_commit_time_us: u64,
    /// Compressed body length.
    pub body_len: u32,
    /// Uncompressed body length (the records' bytes).
    pub raw_len: u32,
    /// CRC32C of the compressed body.
    pub body_crc: u32,
}

/// A decoded, verified chunk: its header and its records' bytes, exactly as
/// the log holds them.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// The header.
    pub header: ChunkHeader,
    raw: Vec<u8>,
    records: Vec<(RecordHeader, usize)>,
}

impl Chunk {
    /// The records in log order: each header and its payload.
    pub fn records(&self) -> impl Iterator<Item = (&RecordHeader, &[u8])> + '_ {
        self.records.iter().map(|(h, off)| {
            let start = off + RECORD_HEADER_SIZE;
            let end = off + h.total_len as usize;
            (h, self.raw.get(start..end).unwrap_or(&[]))
        })
    }

    /// The records' bytes, as the log holds them.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Where its first record is: its start, or past a segment boundary
    /// when the chunk begins a segment ("The LSN range").
    pub fn first_lsn(&self) -> Lsn {
        self.records
            .first()
            .map_or(self.header.start, |(h, _)| h.lsn)
    }

    /// Whether its records follow the previous chunk's without a gap (no
    /// segment boundary at its start).
    pub fn continues_segment(&self) -> bool {
        self.first_lsn() == self.header.start
    }

    /// The part of the chunk from the record at `at` on, as a chunk whose
    /// header says so (start, record count, lengths, commit times; the
    /// body CRC and length stay those of the object read). `at` must be
    /// a record's start in it, or its start; `object` names it in errors.
    pub fn from_lsn(self, object: &str, at: Lsn) -> Result<Chunk> {
        if at == self.header.start {
            return Ok(self);
        }
        let Some(i) = self.records.iter().position(|(h, _)| h.lsn == at) else {
            let place = Place::Body { offset: 0, lsn: at };
            return Err(corrupt(
                object,
                place,
                format!(
                    "no record starts at LSN {at} in {}..{}",
                    self.header.start, self.header.end
                ),
            ));
        };
        let cut = self.records[i].1;
        let records: Vec<(RecordHeader, usize)> = self.records[i..]
            .iter()
            .map(|&(h, off)| (h, off - cut))
            .collect();
        let raw = self.raw[cut..].to_vec();
        let mut times = (0u64, 0u64);
        for (h, off) in &records {
            if h.kind != RecordType::Commit {
                continue;
            }
            let payload = &raw[off + RECORD_HEADER_SIZE..off + h.total_len as usize];
            if let Ok(Payload::Commit { commit_time_us: t }) =
                Payload::decode(h.kind, payload, h.lsn)
            {
                times.0 = if times.0 == 0 { t } else { times.0.min(t) };
                times.1 = times.1.max(t);
            }
        }
        let header = ChunkHeader {
            start: at,
            record_count: records.len() as u32,
            raw_len: raw.len() as u32,
            min_commit_time_us: times.0,
            max_commit_time_us: times.1,
            ..self.header
        };
        Ok(Chunk {
            header,
            raw,
            records,
        })
    }
}

/// What the reader of a chunk expects of it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expect {
    /// The database it must belong to.
    pub database_id: Option<u64>,
    /// The timeline it must be on.
    pub timeline: Option<u32>,
    /// Where it must start (the previous chunk's end).
    pub start: Option<Lsn>,
}

/// A chunk being built from records read off the log.
#[derive(Clone, Debug)]
pub struct ChunkBuilder {
    database_id: u64,
    timeline: u32,
    start: Lsn,
    end: Lsn,
    raw: Vec<u8>,
    count: u32,
    min_commit: u64,
    max_commit: u64,
}

impl ChunkBuilder {
    /// An empty chunk whose range starts at `start`.
    pub fn new(database_id: u64, timeline: u32, start: Lsn) -> ChunkBuilder {
        ChunkBuilder {
            database_id,
            timeline,
            start,
            end: start,
            raw: Vec::new(),
            count: 0,
            min_commit: 0,
            max_commit: 0,
        }
    }

    /// Where its range starts.
    pub fn start(&self) -> Lsn {
        self.start
    }

    /// One past its last record (its start while empty).
    pub fn end(&self) -> Lsn {
        self.end
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The oldest commit time of its records, if one is a commit.
    pub fn min_commit_time_us(&self) -> Option<u64> {
        (self.min_commit != 0).then_some(self.min_commit)
    }

    /// Uncompressed bytes so far.
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    /// Whether a record at `lsn` may join: it follows the last record
    /// directly (no segment boundary in between), or the chunk is empty and
    /// `lsn` is a valid first record for its start.
    pub fn accepts(&self, lsn: Lsn) -> bool {
        if self.is_empty() {
            first_record_ok(self.start, lsn)
        } else {
            lsn == self.end
        }
    }

    /// Appends a record read from the log, re-encoded byte for byte as the
    /// log holds it (header fields, batch back and CRC). The caller checked
    /// [`accepts`](Self::accepts). `commit_time_us` is the commit record's
    /// time, if it is one.
    pub fn push(&mut self, h: &RecordHeader, payload: &[u8], commit_time_us: Option<u64>) {
        debug_assert!(self.accepts(h.lsn), "chunk records are contiguous (inv. 3)");
        let meta = keel::wal::RecordMeta {
            kind: h.kind,
            txn: h.txn,
            prev_lsn: h.prev_lsn,
            relation: h.relation,
            page: h.page,
        };
        let at = self.raw.len();
        self.raw.resize(at + RECORD_HEADER_SIZE, 0);
        self.raw.extend_from_slice(payload);
        let rec = &mut self.raw[at..];
        record::encode_header(rec, &meta, h.lsn);
        record::seal(rec, h.batch_start);
        self.end = h.end_lsn();
        self.count += 1;
        if let Some(t) = commit_time_us {
            self.min_commit = if self.min_commit == 0 {
                t
            } else {
                self.min_commit.min(t)
            };
            self.max_commit = self.max_commit.max(t);
        }
    }

    /// Appends a whole decoded chunk (compaction): it must start where
    /// this one ends and, unless this one is empty, continue its segment
    /// (its records byte-contiguous with these), and the total must stay
    /// within [`MAX_RAW_BYTES`]. Returns false, appending nothing, when it
    /// does not fit.
    pub fn append_chunk(&mut self, c: &Chunk) -> bool {
        let fits = self.raw.len() + c.raw.len() <= MAX_RAW_BYTES;
        let follows = c.header.start == self.end
            && (self.is_empty() || c.continues_segment())
            && (!self.is_empty() || first_record_ok(self.start, c.first_lsn()));
        if !fits || !follows || c.header.database_id != self.database_id {
            return false;
        }
        self.raw.extend_from_slice(&c.raw);
        self.end = c.header.end;
        self.count += c.header.record_count;
        if c.header.min_commit_time_us != 0 {
            self.min_commit = match self.min_commit {
                0 => c.header.min_commit_time_us,
                m => m.min(c.header.min_commit_time_us),
            };
        }
        self.max_commit = self.max_commit.max(c.header.max_commit_time_us);
        true
    }

    /// The chunk's header and object bytes; the builder is left empty,
    /// starting where this chunk ended.
    pub fn finish(&mut self) -> Result<(ChunkHeader, Vec<u8>)> {
        let body = zstd::bulk::compress(&self.raw, ZSTD_LEVEL)
            .map_err(|e| ArchiveError::Config(format!("zstd compression failed: {e}")))?;
        let header = ChunkHeader {
            database_id: self.database_id,
            timeline: self.timeline,
            record_count: self.count,
            start: self.start,
            end: self.end,
            min_commit_time_us: self.min_commit,
            max_commit_time_us: self.max_commit,
            body_len: u32::try_from(body.len()).unwrap_or(u32::MAX),
            raw_len: u32::try_from(self.raw.len()).unwrap_or(u32::MAX),
            body_crc: crc32c(&body),
        };
        let mut out = Vec::with_capacity(CHUNK_HEADER_SIZE + body.len());
        out.extend_from_slice(&encode_header(&header));
        out.extend_from_slice(&body);
        *self = ChunkBuilder::new(self.database_id, self.timeline, self.end);
        Ok((header, out))
    }
}

/// Whether the first record of a chunk starting at `start` may be at `lsn`.
pub fn first_record_ok(start: Lsn, lsn: Lsn) -> bool {
    lsn == start
        || (lsn > start
            && lsn.0.is_multiple_of(SEGMENT_HEADER_SIZE as u64)
            && lsn.0 - start.0 <= MAX_START_GAP)
}

/// Encodes a header.
pub fn encode_header(h: &ChunkHeader) -> [u8; CHUNK_HEADER_SIZE] {
    use offsets::*;
    let mut b = [0u8; CHUNK_HEADER_SIZE];
    b[MAGIC..MAGIC + 4].copy_from_slice(&CHUNK_MAGIC.to_le_bytes());
    b[VERSION..VERSION + 2].copy_from_slice(&CHUNK_VERSION.to_le_bytes());
    b[HEADER_SIZE..HEADER_SIZE + 2].copy_from_slice(&(CHUNK_HEADER_SIZE as u16).to_le_bytes());
    b[DATABASE_ID..DATABASE_ID + 8].copy_from_slice(&h.database_id.to_le_bytes());
    b[TIMELINE..TIMELINE + 4].copy_from_slice(&h.timeline.to_le_bytes());
    b[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&h.record_count.to_le_bytes());
    b[START_LSN..START_LSN + 8].copy_from_slice(&h.start.0.to_le_bytes());
    b[END_LSN..END_LSN + 8].copy_from_slice(&h.end.0.to_le_bytes());
    b[MIN_COMMIT_TIME..MIN_COMMIT_TIME + 8].copy_from_slice(&h.min_commit_time_us.to_le_bytes());
    b[MAX_COMMIT_TIME..MAX_COMMIT_TIME + 8].copy_from_slice(&h.max_commit_time_us.to_le_bytes());
    b[BODY_LEN..BODY_LEN + 4].copy_from_slice(&h.body_len.to_le_bytes());
    b[RAW_LEN..RAW_LEN + 4].copy_from_slice(&h.raw_len.to_le_bytes());
    b[BODY_CRC..BODY_CRC + 4].copy_from_slice(&h.body_crc.to_le_bytes());
    let crc = crc32c(&b[..HEADER_CRC]);
    b[HEADER_CRC..HEADER_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn corrupt(object: &str, place: Place, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Corrupt {
        object: object.to_string(),
        place,
        reason: reason.into(),
    }
}

/// Decodes and checks the header at the start of `bytes` (at least the
/// header; the whole object when `object_len` is its length).
pub fn decode_header(object: &str, bytes: &[u8], object_len: u64) -> Result<ChunkHeader> {
    use offsets::*;
    let Some(b) = bytes.get(..CHUNK_HEADER_SIZE) else {
        let reason = format!("{} bytes, shorter than a chunk header", bytes.len());
        return Err(corrupt(object, Place::Object(0), reason));
    };
    let magic = u32_at(b, MAGIC);
    if magic != CHUNK_MAGIC {
        let reason = format!("magic {magic:#010x} is not a chunk's");
        return Err(corrupt(object, Place::Object(MAGIC as u64), reason));
    }
    let stored = u32_at(b, HEADER_CRC);
    let computed = crc32c(&b[..HEADER_CRC]);
    if stored != computed {
        return Err(ArchiveError::ChecksumMismatch {
            object: object.to_string(),
            what: "header",
            stored,
            computed,
        });
    }
    let version = u16_at(b, VERSION);
    if version != CHUNK_VERSION {
        let reason = format!("chunk format version {version}, this build reads {CHUNK_VERSION}");
        return Err(corrupt(object, Place::Object(VERSION as u64), reason));
    }
    let hsz = u16_at(b, offsets::HEADER_SIZE);
    if hsz as usize != CHUNK_HEADER_SIZE {
        let reason = format!("header size {hsz}, expected {CHUNK_HEADER_SIZE}");
        return Err(corrupt(
            object,
            Place::Object(offsets::HEADER_SIZE as u64),
            reason,
        ));
    }
    let h = ChunkHeader {
        database_id: u64_at(b, DATABASE_ID),
        timeline: u32_at(b, TIMELINE),
        record_count: u32_at(b, RECORD_COUNT),
        start: Lsn(u64_at(b, START_LSN)),
        end: Lsn(u64_at(b, END_LSN)),
        min_commit_time_us: u64_at(b, MIN_COMMIT_TIME),
        max_commit_time_us: u64_at(b, MAX_COMMIT_TIME),
        body_len: u32_at(b, BODY_LEN),
        raw_len: u32_at(b, RAW_LEN),
        body_crc: u32_at(b, BODY_CRC),
    };
    check_header_sizes(object, &h, object_len)?;
    Ok(h)
}

fn check_header_sizes(object: &str, h: &ChunkHeader, object_len: u64) -> Result<()> {
    use offsets::*;
    let expect_len = CHUNK_HEADER_SIZE as u64 + u64::from(h.body_len);
    if object_len != expect_len {
        let reason = format!("object is {object_len} bytes, header says {expect_len}");
        return Err(corrupt(object, Place::Object(BODY_LEN as u64), reason));
    }
    if h.raw_len as usize > MAX_RAW_BYTES || h.raw_len == 0 {
        let reason = format!("raw length {} outside 1..={MAX_RAW_BYTES}", h.raw_len);
        return Err(corrupt(object, Place::Object(RAW_LEN as u64), reason));
    }
    if h.record_count == 0 {
        return Err(corrupt(
            object,
            Place::Object(RECORD_COUNT as u64),
            "no records",
        ));
    }
    let span = h.end.0.checked_sub(h.start.0);
    if span.is_none_or(|s| s < u64::from(h.raw_len)) {
        let reason = format!(
            "LSN range {}..{} cannot hold {} record bytes",
            h.start, h.end, h.raw_len
        );
        return Err(corrupt(object, Place::Object(START_LSN as u64), reason));
    }
    if h.min_commit_time_us > h.max_commit_time_us {
        let reason = "min commit time after max commit time";
        return Err(corrupt(
            object,
            Place::Object(MIN_COMMIT_TIME as u64),
            reason,
        ));
    }
    Ok(())
}

/// Decodes and verifies a whole chunk object named `object` (see the
/// module essay for what is checked).
pub fn decode(object: &str, bytes: &[u8], expect: &Expect) -> Result<Chunk> {
    let header = decode_header(object, bytes, bytes.len() as u64)?;
    check_expectations(object, &header, expect)?;
    let body = &bytes[CHUNK_HEADER_SIZE..];
    let computed = crc32c(body);
    if computed != header.body_crc {
        return Err(ArchiveError::ChecksumMismatch {
            object: object.to_string(),
            what: "body",
            stored: header.body_crc,
            computed,
        });
    }
    let raw = decompress(object, body, header.raw_len as usize)?;
    let records = walk_records(object, &header, &raw)?;
    Ok(Chunk {
        header,
        raw,
        records,
    })
}

fn check_expectations(object: &str, h: &ChunkHeader, expect: &Expect) -> Result<()> {
    if let Some(id) = expect.database_id.filter(|&id| id != h.database_id) {
        return Err(ArchiveError::WrongDatabase {
            object: object.to_string(),
            expected: id,
            found: h.database_id,
        });
    }
    if let Some(tl) = expect.timeline.filter(|&tl| tl != h.timeline) {
        let reason = format!("timeline {}, expected {tl}", h.timeline);
        return Err(corrupt(
            object,
            Place::Object(offsets::TIMELINE as u64),
            reason,
        ));
    }
    if let Some(start) = expect.start.filter(|&s| s != h.start) {
        return Err(ArchiveError::Discontinuity {
            object: object.to_string(),
            expected: start,
            found: h.start,
        });
    }
    Ok(())
}

/// Decompresses at most `raw_len` bytes; a body that expands to more or
/// less is corrupt. Reading through a bounded stream keeps the allocation
/// to what the body really produces.
fn decompress(object: &str, body: &[u8], raw_len: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let at = Place::Object(CHUNK_HEADER_SIZE as u64);
    let decoder = zstd::stream::read::Decoder::with_buffer(body)
        .map_err(|e| corrupt(object, at, format!("zstd: {e}")))?;
    let mut raw = Vec::new();
    decoder
        .take(raw_len as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| corrupt(object, at, format!("zstd: {e}")))?;
    if raw.len() != raw_len {
        let reason = format!("body expands to {} bytes, header says {raw_len}", raw.len());
        return Err(corrupt(object, at, reason));
    }
    Ok(raw)
}

/// Walks the records, checking each frame, their contiguity, the count,
/// the end and the commit times against the header.
fn walk_records(object: &str, h: &ChunkHeader, raw: &[u8]) -> Result<Vec<(RecordHeader, usize)>> {
    let mut records = Vec::new();
    let (mut off, mut min_commit, mut max_commit) = (0usize, 0u64, 0u64);
    let mut lsn = first_record_lsn(object, h, raw)?;
    while off < raw.len() {
        let place = Place::Body {
            offset: off as u64,
            lsn,
        };
        let rh = record::decode_frame(&raw[off..], lsn)
            .map_err(|p| corrupt(object, place, p.to_string()))?;
        let payload = &raw[off + RECORD_HEADER_SIZE..off + rh.total_len as usize];
        if rh.kind == RecordType::Commit {
            let t = match Payload::decode(rh.kind, payload, rh.lsn) {
                Ok(Payload::Commit { commit_time_us }) => commit_time_us,
                Ok(_) => 0,
                Err(e) => return Err(corrupt(object, place, e.to_string())),
            };
            min_commit = if min_commit == 0 {
                t
            } else {
                min_commit.min(t)
            };
            max_commit = max_commit.max(t);
        }
        records.push((rh, off));
        off += rh.total_len as usize;
        lsn = rh.end_lsn();
    }
    let at_end = Place::Body {
        offset: off as u64,
        lsn,
    };
    if records.len() != h.record_count as usize || lsn != h.end {
        let reason = format!(
            "{} records ending at LSN {lsn}, header says {} ending at LSN {}",
            records.len(),
            h.record_count,
            h.end
        );
        return Err(corrupt(object, at_end, reason));
    }
    if (min_commit, max_commit) != (h.min_commit_time_us, h.max_commit_time_us) {
        let reason = format!(
            "commit times {min_commit}..{max_commit}, header says {}..{}",
            h.min_commit_time_us, h.max_commit_time_us
        );
        return Err(corrupt(object, at_end, reason));
    }
    Ok(records)
}

/// The LSN the first record claims, checked against the chunk's start.
fn first_record_lsn(object: &str, h: &ChunkHeader, raw: &[u8]) -> Result<Lsn> {
    let field = record::offsets::LSN;
    let lsn = match raw.get(field..field + 8) {
        Some(b) => Lsn(u64_at(b, 0)),
        None => h.start,
    };
    if !first_record_ok(h.start, lsn) {
        let place = Place::Body {
            offset: 0,
            lsn: h.start,
        };
        let reason = format!("first record claims LSN {lsn}, not a valid first record position");
        return Err(corrupt(object, place, reason));
    }
    Ok(lsn)
}

trait EndLsn {
    fn end_lsn(&self) -> Lsn;
}

impl EndLsn for RecordHeader {
    fn end_lsn(&self) -> Lsn {
        Lsn(self.lsn.0 + u64::from(self.total_len))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failure by design

    use super::*;
    use keel::wal::RecordMeta;

    const SEG: u64 = 64 << 10;

    /// A chunk starting at `start` with `n` records, commits among them,
    /// the first at `first`.
    fn build(start: Lsn, first: Lsn, n: usize) -> (ChunkBuilder, Vec<Vec<u8>>) {
        let mut b = ChunkBuilder::new(0xDB, 1, start);
        let mut lsn = first;
        let mut raws = Vec::new();
        for i in 0..n {
            let (kind, payload) = match i % 3 {
                2 => (
                    RecordType::Commit,
                    (1_000 + i as u64).to_le_bytes().to_vec(),
                ),
                _ => (RecordType::PageDelta, vec![i as u8; 20 + i]),
            };
            let raw = record::encode(&RecordMeta::new(kind), lsn, &payload);
            let h = record::decode_frame(&raw, lsn).unwrap();
            let commit = (kind == RecordType::Commit).then(|| 1_000 + i as u64);
            assert!(b.accepts(lsn));
            b.push(&h, &payload, commit);
            lsn = h.end_lsn();
            raws.push(raw);
        }
        (b, raws)
    }

    fn expect() -> Expect {
        Expect {
            database_id: Some(0xDB),
            timeline: Some(1),
            start: None,
        }
    }

    #[test]
    fn a_chunk_round_trips_byte_for_byte() {
        let start = Lsn(3 * SEG + SEGMENT_HEADER_SIZE as u64);
        let (mut b, raws) = build(start, start, 10);
        let (header, bytes) = b.finish().unwrap();
        assert_eq!(b.start(), header.end);
        assert!(b.is_empty());
        let c = decode("c", &bytes, &expect()).unwrap();
        assert_eq!(c.header, header);
        assert_eq!(c.raw(), raws.concat());
        assert_eq!(c.records().count(), 10);
        assert_eq!(
            (header.min_commit_time_us, header.max_commit_time_us),
            (1_002, 1_008)
        );
    }

    #[test]
    fn the_first_record_may_follow_a_segment_boundary_only() {
        // The previous chunk ended 100 bytes before a segment's end.
        let start = Lsn(4 * SEG - 100);
        let first = Lsn(4 * SEG + SEGMENT_HEADER_SIZE as u64);
        assert!(first_record_ok(start, first));
        let (mut b, _) = build(start, first, 3);
        let (_, bytes) = b.finish().unwrap();
        decode("c", &bytes, &expect()).unwrap();
        assert!(!first_record_ok(start, Lsn(start.0 + 48)));
        assert!(!first_record_ok(start, Lsn(start.0 + MAX_START_GAP + 4096)));
        assert!(!first_record_ok(start, Lsn(start.0 - 4096)));
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_an_error() {
        let start = Lsn(SEG + SEGMENT_HEADER_SIZE as u64);
        let (mut b, _) = build(start, start, 6);
        let (_, bytes) = b.finish().unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                decode("c", &bad, &expect()).is_err(),
                "flip at {i} accepted"
            );
        }
        for len in 0..bytes.len() {
            let e = decode("c", &bytes[..len], &expect()).unwrap_err();
            assert!(e.to_string().starts_with("c: "), "{e}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode("c", &longer, &expect()).is_err());
    }

    /// A header with valid CRCs around a body that is not what it says:
    /// records that are not records, and a body that expands past its
    /// declared length (read no further than that length).
    #[test]
    fn forged_bodies_are_refused_by_place() {
        let start = Lsn(SEG + SEGMENT_HEADER_SIZE as u64);
        let forge = |raw: &[u8], raw_len: u32| {
            let body = zstd::bulk::compress(raw, 3).unwrap();
            let h = ChunkHeader {
                database_id: 0xDB,
                timeline: 1,
                record_count: 1,
                start,
                end: Lsn(start.0 + 1_000_000),
                min_commit_time_us: 0,
                max_commit_time_us: 0,
                body_len: body.len() as u32,
                raw_len,
                body_crc: crc32c(&body),
            };
            let mut out = encode_header(&h).to_vec();
            out.extend_from_slice(&body);
            out
        };
        let mut garbage = vec![0x5Au8; 200];
        garbage[8..16].copy_from_slice(&start.0.to_le_bytes());
        let e = decode("g", &forge(&garbage, 200), &expect()).unwrap_err();
        match e {
            ArchiveError::Corrupt {
                place: Place::Body { offset: 0, lsn },
                ..
            } => assert_eq!(lsn, start),
            e => panic!("{e}"),
        }
        let bomb = vec![0u8; 8 << 20];
        let e = decode("b", &forge(&bomb, 1000), &expect()).unwrap_err();
        assert!(e.to_string().contains("expands to 1001 bytes"), "{e}");
        let e = decode("m", &forge(&garbage, MAX_RAW_BYTES as u32 + 1), &expect()).unwrap_err();
        assert!(e.to_string().contains("raw length"), "{e}");
    }

    /// Compaction's building blocks: a chunk appends only where the
    /// previous ends and within its segment, the total stays within
    /// MAX_RAW_BYTES, and a chunk cut at a record keeps exactly the
    /// records from there.
    #[test]
    fn chunks_append_contiguously_and_cut_at_a_record() {
        let start = Lsn(SEG + SEGMENT_HEADER_SIZE as u64);
        let (mut a, raws_a) = build(start, start, 7);
        let (_, bytes_a) = a.finish().unwrap();
        let ca = decode("a", &bytes_a, &expect()).unwrap();
        let (mut b, raws_b) = build(ca.header.end, ca.header.end, 5);
        let (_, bytes_b) = b.finish().unwrap();
        let cb = decode("b", &bytes_b, &expect()).unwrap();
        assert!(ca.continues_segment() && cb.continues_segment());
        let mut k = ChunkBuilder::new(0xDB, 1, start);
        assert!(!k.append_chunk(&cb), "b does not start where k ends");
        assert!(k.append_chunk(&ca) && k.append_chunk(&cb));
        let (h, bytes) = k.finish().unwrap();
        let ck = decode("k", &bytes, &expect()).unwrap();
        assert_eq!((h.start, h.end, h.record_count), (start, cb.header.end, 12));
        assert_eq!(ck.raw(), [raws_a.concat(), raws_b.concat()].concat());
        assert_eq!((h.min_commit_time_us, h.max_commit_time_us), (1_002, 1_005));
        // Cut at b's start: b's records, b's range and commit times.
        let cut = ck.clone().from_lsn("k", cb.header.start).unwrap();
        assert_eq!(cut.raw(), cb.raw());
        assert_eq!(
            (cut.header.start, cut.header.end, cut.header.record_count),
            (cb.header.start, cb.header.end, 5)
        );
        assert_eq!(
            (cut.header.min_commit_time_us, cut.header.max_commit_time_us),
            (cb.header.min_commit_time_us, cb.header.max_commit_time_us)
        );
        let inside = Lsn(cb.header.start.0 + 8);
        assert!(
            ck.from_lsn("k", inside)
                .unwrap_err()
                .to_string()
                .contains("no record starts")
        );
        // A chunk that begins a segment (a gap at its start) starts a
        // compacted object, never joins one.
        let next_seg = Lsn(2 * SEG + SEGMENT_HEADER_SIZE as u64);
        let (mut g, _) = build(cb.header.end, next_seg, 2);
        let cg = decode("g", &g.finish().unwrap().1, &expect()).unwrap();
        assert!(!cg.continues_segment());
        let mut k2 = ChunkBuilder::new(0xDB, 1, start);
        assert!(k2.append_chunk(&ca) && k2.append_chunk(&cb));
        assert!(!k2.append_chunk(&cg));
        let mut fresh = ChunkBuilder::new(0xDB, 1, cb.header.end);
        assert!(fresh.append_chunk(&cg));
    }

    /// Two chunks whose records together pass MAX_RAW_BYTES do not join
    /// (a segment larger than 64 MiB becomes several compacted objects).
    #[test]
    fn a_compacted_object_stays_within_the_raw_limit() {
        let payload = vec![7u8; MAX_RECORD_SIZE - RECORD_HEADER_SIZE];
        let big = |start: Lsn, n: usize| {
            let mut b = ChunkBuilder::new(0xDB, 1, start);
            let mut lsn = start;
            for _ in 0..n {
                let raw = record::encode(&RecordMeta::new(RecordType::PageDelta), lsn, &payload);
                let h = record::decode_frame(&raw, lsn).unwrap();
                b.push(&h, &payload, None);
                lsn = h.end_lsn();
            }
            let (_, bytes) = b.finish().unwrap();
            decode("big", &bytes, &expect()).unwrap()
        };
        let half = MAX_RAW_BYTES / MAX_RECORD_SIZE / 2 + 1;
        let a = big(Lsn(SEGMENT_HEADER_SIZE as u64), half);
        let b = big(a.header.end, half);
        let mut k = ChunkBuilder::new(0xDB, 1, a.header.start);
        assert!(k.append_chunk(&a));
        assert!(
            !k.append_chunk(&b),
            "{} + {} bytes joined",
            a.raw().len(),
            b.raw().len()
        );
        assert_eq!(k.end(), a.header.end);
    }

    #[test]
    fn expectations_name_what_differs() {
        let start = Lsn(SEG + SEGMENT_HEADER_SIZE as u64);
        let (mut b, _) = build(start, start, 2);
        let (_, bytes) = b.finish().unwrap();
        let other_db = Expect {
            database_id: Some(7),
            ..expect()
        };
        assert!(matches!(
            decode("c", &bytes, &other_db),
            Err(ArchiveError::WrongDatabase { found: 0xDB, .. })
        ));
        let later = Expect {
            start: Some(Lsn(start.0 + 8)),
            ..expect()
        };
        assert!(matches!(
            decode("c", &bytes, &later),
            Err(ArchiveError::Discontinuity { .. })
        ));
    }
}
