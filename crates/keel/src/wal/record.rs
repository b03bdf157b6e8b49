//! The WAL record frame: a 48-byte header, then the payload.
//!
//! ```text
//!  0         4           8                  16                 24
//!  +---------+-----------+------------------+------------------+
//!  | crc32c  | total len |       LSN        |    prev LSN      |
//!  +---------+-----------+------------------+------------------+
//!  24                 32         36         40          44   45   46    48
//!  +------------------+----------+----------+-----------+----+----+-----+-------
//!  |     txn id       | relation |  page    |batch back |type|flag| rsv |payload…
//!  +------------------+----------+----------+-----------+----+----+-----+-------
//! ```
//!
//! - `crc32c` covers bytes 4..total_len: the rest of the header (length,
//!   type, LSN, …) and the payload (invariant 2).
//! - `total len` counts header and payload. Records are not padded; a small
//!   record costs its 44-byte header plus its payload.
//! - `LSN` is the byte position of the record in the logical log
//!   (invariant 3). A reader checks it against the position it read the
//!   record from, so a stale record in a recycled segment never validates.
//! - `prev LSN` links a transaction's records backwards (zero for its first).
//! - `relation` and `page` name the page the record changes, or are
//!   [`NO_RELATION`]/[`NO_PAGE`] when none.
//! - `batch back` is how many bytes before this record the flush batch that
//!   wrote it began (zero for a batch's first record). The writer syncs each
//!   batch before writing the next, so a reader that finds invalid bytes at
//!   `p` followed by a valid record `q` can tell a torn tail (`q`'s batch
//!   began at or before `p`: that batch was never synced, never
//!   acknowledged) from corruption (`q`'s batch began after `p`: the bytes at
//!   `p` were synced once and are now damaged), invariant 10.
//! - `type` is a [`RecordType`]; `flag` and `rsv` are zero in version 1.
//!
//! An appender fills in everything but `batch back` and the CRC; the flush
//! that writes the record [`seal`]s it with both.
//!
//! Decoding validates all of this and returns a [`WalError`] naming the LSN
//! and what was wrong; it never panics and never allocates more than the
//! bytes it was given (invariant 9).

use crate::checksum::crc32c;
use crate::page::NO_PAGE;
use crate::types::{Lsn, PageId, RelationId, TxnId};
use crate::wal::WalError;
use crate::wal::segment::{MIN_SEGMENT_SIZE, SEGMENT_HEADER_SIZE};

/// Size of the record header, in bytes.
pub const RECORD_HEADER_SIZE: usize = 48;
/// Largest record the log accepts (header included): the data area of the
/// smallest segment, so that every record fits in one segment whatever the
/// segment size (records never span segments, invariant 15). The records
/// Keel writes stay far below it: the largest are an update's before and
/// after images of one tuple (each at most a page) and a page image; the
/// checkpoint-end record has a fixed size. The decoder rejects a longer
/// length field before reading further.
pub const MAX_RECORD_SIZE: usize = MIN_SEGMENT_SIZE as usize - SEGMENT_HEADER_SIZE;
/// Relation id meaning "no relation".
pub const NO_RELATION: u32 = u32::MAX;

/// Byte offsets of the record header fields (mirrored in docs/storage.md).
pub mod offsets {
    /// u32 CRC32C of bytes 4..total_len.
    pub const CRC: usize = 0;
    /// u32 header plus payload length.
    pub const TOTAL_LEN: usize = 4;
    /// u64 the record's own LSN.
    pub const LSN: usize = 8;
    /// u64 the transaction's previous record, or zero.
    pub const PREV_LSN: usize = 16;
    /// u64 transaction id, or zero.
    pub const TXN_ID: usize = 24;
    /// u32 relation id, or `NO_RELATION`.
    pub const RELATION: usize = 32;
    /// u32 page id, or `NO_PAGE`.
    pub const PAGE: usize = 36;
    /// u32 bytes from the start of the record's flush batch to the record.
    pub const BATCH_BACK: usize = 40;
    /// u8 record type.
    pub const TYPE: usize = 44;
    /// u8 flags, zero.
    pub const FLAGS: usize = 45;
    /// u16 reserved, zero.
    pub const RESERVED: usize = 46;
}

macro_rules! record_types {
    ($($(#[$doc:meta])* $name:ident = $val:literal, $text:literal;)*) => {
        /// The kind of a WAL record; its payload layout is in docs/storage.md.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum RecordType {
            $($(#[$doc])* $name = $val,)*
        }

        impl RecordType {
            /// Every record type, in code order.
            pub const ALL: &'static [RecordType] = &[$(RecordType::$name,)*];

            /// Decodes the type byte.
            pub fn from_u8(v: u8) -> Option<RecordType> {
                match v {
                    $($val => Some(RecordType::$name),)*
                    _ => None,
                }
            }

            /// Name as printed by `keel inspect wal`.
            pub fn name(self) -> &'static str {
                match self {
                    $(RecordType::$name => $text,)*
                }
            }
        }
    };
}

record_types! {
    /// Filler to the end of a segment when the next record does not fit.
    Padding = 0, "padding";
    /// A whole page the record sets (a tree's meta page and first leaf).
    PageImage = 1, "page-image";
    /// Byte ranges written into a page.
    PageDelta = 2, "page-delta";
    /// A page formatted as an empty page of some type.
    PageInit = 3, "page-init";
    /// Tuples removed and their slots freed at once: the undo of a
    /// multi-insert, as a CLR's action.
    HeapMultiRemove = 9, "heap-multi-remove";
    /// A tuple inserted at a slot.
    HeapInsert = 10, "heap-insert";
    /// A tuple deleted from a slot (the slot becomes dead).
    HeapDelete = 11, "heap-delete";
    /// A slot's tuple replaced with new bytes.
    HeapUpdate = 12, "heap-update";
    /// A slot's tuple replaced by a forward pointer.
    HeapForward = 13, "heap-forward";
    /// A dead slot made free for reuse.
    HeapFreeSlot = 14, "heap-free-slot";
    /// A page compacted, with the relocation list.
    PageCompaction = 15, "page-compaction";
    /// One chunk of an overflow chain written to its page.
    OverflowWrite = 16, "overflow-write";
    /// An overflow page freed.
    OverflowFree = 17, "overflow-free";
    /// A page as it is right after an earlier change to it, logged in
    /// consistency-check mode; redo compares, never applies.
    PageCheck = 18, "page-check";
    /// Several tuples inserted on one page, each at its slot.
    HeapMultiInsert = 19, "heap-multi-insert";
    /// A transaction began.
    Begin = 20, "begin";
    /// A transaction committed.
    Commit = 21, "commit";
    /// A transaction finished rolling back.
    Abort = 22, "abort";
    /// A compensation record: the redo-only undo of an earlier record.
    Compensation = 23, "clr";
    /// A checkpoint started.
    CheckpointBegin = 30, "checkpoint-begin";
    /// A checkpoint ended, with the dirty page and transaction tables.
    CheckpointEnd = 31, "checkpoint-end";
    /// An item inserted into a tree node at its sorted place.
    TreeInsert = 50, "tree-insert";
    /// An item removed from a tree node.
    TreeDelete = 51, "tree-delete";
    /// A tree's meta page switched to another root (a bulk load).
    TreeRootSwap = 52, "tree-root-swap";
    /// Whole images of several pages of one relation, as one change.
    MultiPageImage = 53, "multi-page-image";
    /// A tree node split: its new right sibling's image and the node's
    /// truncation to the items it keeps.
    TreeSplit = 54, "tree-split";
    /// A relation was created.
    RelationCreate = 40, "relation-create";
    /// A relation was dropped.
    RelationDrop = 41, "relation-drop";
}

/// The decoded header of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Header plus payload length.
    pub total_len: u32,
    /// The record's LSN (its byte position in the log).
    pub lsn: Lsn,
    /// The transaction's previous record, or `Lsn::ZERO`.
    pub prev_lsn: Lsn,
    /// Transaction id, or zero.
    pub txn: TxnId,
    /// The relation whose page the record changes, if any.
    pub relation: Option<RelationId>,
    /// The page the record changes, if any.
    pub page: Option<PageId>,
    /// Record type.
    pub kind: RecordType,
    /// Start of the flush batch that wrote the record.
    pub batch_start: Lsn,
}

impl RecordHeader {
    /// Payload length.
    pub fn payload_len(&self) -> usize {
        (self.total_len as usize).saturating_sub(RECORD_HEADER_SIZE)
    }
}

/// What a record is about, before it has an LSN: the fields the appender
/// chooses. The log assigns the LSN when it reserves space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    /// Record type.
    pub kind: RecordType,
    /// Transaction id, or `TxnId(0)`.
    pub txn: TxnId,
    /// The transaction's previous record, or `Lsn::ZERO`.
    pub prev_lsn: Lsn,
    /// The relation whose page the record changes, if any.
    pub relation: Option<RelationId>,
    /// The page the record changes, if any.
    pub page: Option<PageId>,
}

impl RecordMeta {
    /// A record of `kind` outside any transaction and page.
    pub fn new(kind: RecordType) -> RecordMeta {
        RecordMeta {
            kind,
            txn: TxnId(0),
            prev_lsn: Lsn::ZERO,
            relation: None,
            page: None,
        }
    }

    /// The same record in transaction `txn`, after `prev_lsn`.
    pub fn in_txn(mut self, txn: TxnId, prev_lsn: Lsn) -> RecordMeta {
        self.txn = txn;
        self.prev_lsn = prev_lsn;
        self
    }

    /// The same record about page `page` of `relation`.
    pub fn on_page(mut self, relation: RelationId, page: PageId) -> RecordMeta {
        self.relation = Some(relation);
        self.page = Some(page);
        self
    }
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Size of the encoded record for a payload of `payload_len` bytes.
pub fn encoded_len(payload_len: usize) -> usize {
    RECORD_HEADER_SIZE + payload_len
}

/// Encodes a record at `lsn` into `out` (exactly `encoded_len(payload.len())`
/// bytes), all but `batch back` and the CRC, which [`seal`] adds. The caller
/// checked the size against [`MAX_RECORD_SIZE`].
pub fn encode_unsealed(out: &mut [u8], meta: &RecordMeta, lsn: Lsn, payload: &[u8]) {
    debug_assert_eq!(
        out.len(),
        RECORD_HEADER_SIZE + payload.len(),
        "record buffer of the wrong size (inv. 1)"
    );
    out[RECORD_HEADER_SIZE..].copy_from_slice(payload);
    encode_header(out, meta, lsn);
}

/// Writes the header (all but `batch back` and the CRC, which [`seal`]
/// adds) of the record in `out`, whose payload already follows the header
/// space: the whole of `out` is the record.
pub fn encode_header(out: &mut [u8], meta: &RecordMeta, lsn: Lsn) {
    let total = out.len();
    encode_header_of(&mut out[..RECORD_HEADER_SIZE], total, meta, lsn);
}

/// [`encode_header`] into the header's own bytes `h`, for a record of
/// `total` bytes whose payload is written elsewhere.
pub(crate) fn encode_header_of(h: &mut [u8], total: usize, meta: &RecordMeta, lsn: Lsn) {
    debug_assert!(
        total >= RECORD_HEADER_SIZE && h.len() == RECORD_HEADER_SIZE,
        "record shorter than its header (inv. 1)"
    );
    put_u32(h, offsets::TOTAL_LEN, total as u32);
    put_u64(h, offsets::LSN, lsn.0);
    put_u64(h, offsets::PREV_LSN, meta.prev_lsn.0);
    put_u64(h, offsets::TXN_ID, meta.txn.0);
    put_u32(
        h,
        offsets::RELATION,
        meta.relation.map_or(NO_RELATION, |r| r.0),
    );
    put_u32(h, offsets::PAGE, meta.page.map_or(NO_PAGE, |p| p.0));
    h[offsets::TYPE] = meta.kind as u8;
    h[offsets::FLAGS] = 0;
    h[offsets::RESERVED..RECORD_HEADER_SIZE].fill(0);
}

/// Completes an encoded record written in the flush batch that starts at
/// `batch_start`: stores `batch back` and the CRC over everything after the
/// CRC field (invariant 2).
pub fn seal(record: &mut [u8], batch_start: Lsn) {
    debug_assert!(
        record.len() >= RECORD_HEADER_SIZE,
        "sealing a short record (inv. 2)"
    );
    let lsn = get_u64(record, offsets::LSN);
    debug_assert!(lsn >= batch_start.0, "record before its batch (inv. 10)");
    put_u32(record, offsets::BATCH_BACK, (lsn - batch_start.0) as u32);
    let crc = crc32c(&record[offsets::TOTAL_LEN..]);
    put_u32(record, offsets::CRC, crc);
}

/// Encodes and seals a record at `lsn` that begins its own batch.
pub fn encode(meta: &RecordMeta, lsn: Lsn, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; encoded_len(payload.len())];
    encode_unsealed(&mut out, meta, lsn, payload);
    seal(&mut out, lsn);
    out
}

/// Why bytes at a log position are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameProblem {
    /// Fewer bytes than a header, or than the header's length, are there.
    Truncated,
    /// The bytes are all zero (never written).
    Zeroes,
    /// The header's length is impossible.
    BadLength(u32),
    /// The header's LSN is not the position it was read from (a stale record).
    WrongLsn(Lsn),
    /// The CRC does not match.
    BadChecksum {
        /// Stored CRC.
        stored: u32,
        /// Computed CRC.
        computed: u32,
    },
    /// The type byte, flags or reserved bytes are unknown.
    BadField(&'static str),
}

impl std::fmt::Display for FrameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameProblem::Truncated => f.write_str("record truncated"),
            FrameProblem::Zeroes => f.write_str("zeroes where a record should start"),
            FrameProblem::BadLength(n) => write!(f, "impossible record length {n}"),
            FrameProblem::WrongLsn(l) => write!(f, "record claims LSN {l} (stale or misplaced)"),
            FrameProblem::BadChecksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            FrameProblem::BadField(what) => write!(f, "invalid {what}"),
        }
    }
}

/// Decodes the record that should start at `bytes[0]`, read from log
/// position `at`. `bytes` may extend past the record; the record's length
/// is in the returned header. Checks length, LSN, CRC, type and reserved
/// fields.
pub fn decode_frame(bytes: &[u8], at: Lsn) -> Result<RecordHeader, FrameProblem> {
    let Some(h) = bytes.get(..RECORD_HEADER_SIZE) else {
        return Err(if bytes.iter().all(|&b| b == 0) {
            FrameProblem::Zeroes
        } else {
            FrameProblem::Truncated
        });
    };
    let total_len = get_u32(h, offsets::TOTAL_LEN);
    if total_len == 0 && h.iter().all(|&b| b == 0) {
        return Err(FrameProblem::Zeroes);
    }
    let total = total_len as usize;
    if !(RECORD_HEADER_SIZE..=MAX_RECORD_SIZE).contains(&total) {
        return Err(FrameProblem::BadLength(total_len));
    }
    let lsn = Lsn(get_u64(h, offsets::LSN));
    if lsn != at {
        return Err(FrameProblem::WrongLsn(lsn));
    }
    let Some(whole) = bytes.get(..total) else {
        return Err(FrameProblem::Truncated);
    };
    let stored = get_u32(h, offsets::CRC);
    let computed = crc32c(&whole[offsets::TOTAL_LEN..]);
    if stored != computed {
        return Err(FrameProblem::BadChecksum { stored, computed });
    }
    let kind =
        RecordType::from_u8(h[offsets::TYPE]).ok_or(FrameProblem::BadField("record type"))?;
    if h[offsets::FLAGS] != 0 || h[offsets::RESERVED] != 0 || h[offsets::RESERVED + 1] != 0 {
        return Err(FrameProblem::BadField("flags or reserved bytes"));
    }
    let relation = match get_u32(h, offsets::RELATION) {
        NO_RELATION => None,
        r => Some(RelationId(r)),
    };
    let page = match get_u32(h, offsets::PAGE) {
        NO_PAGE => None,
        p => Some(PageId(p)),
    };
    let back = u64::from(get_u32(h, offsets::BATCH_BACK));
    if back > lsn.0 {
        return Err(FrameProblem::BadField("batch back"));
    }
    Ok(RecordHeader {
        total_len,
        lsn,
        prev_lsn: Lsn(get_u64(h, offsets::PREV_LSN)),
        txn: TxnId(get_u64(h, offsets::TXN_ID)),
        relation,
        page,
        kind,
        batch_start: Lsn(lsn.0 - back),
    })
}

/// Decodes a frame and turns a problem into a [`WalError`] naming the LSN.
pub fn decode(bytes: &[u8], at: Lsn) -> Result<(RecordHeader, &[u8]), WalError> {
    let h = decode_frame(bytes, at).map_err(|problem| WalError::BadRecord {
        lsn: at,
        reason: problem.to_string(),
    })?;
    Ok((h, &bytes[RECORD_HEADER_SIZE..h.total_len as usize]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (RecordMeta, Vec<u8>) {
        let meta = RecordMeta::new(RecordType::HeapInsert)
            .in_txn(TxnId(7), Lsn(4096))
            .on_page(RelationId(3), PageId(9));
        (meta, b"payload bytes".to_vec())
    }

    #[test]
    fn frame_round_trips() {
        let (meta, payload) = sample();
        let bytes = encode(&meta, Lsn(8192), &payload);
        assert_eq!(bytes.len(), RECORD_HEADER_SIZE + payload.len());
        let (h, p) = decode(&bytes, Lsn(8192)).unwrap();
        assert_eq!(p, &payload[..]);
        assert_eq!(h.kind, RecordType::HeapInsert);
        assert_eq!((h.txn, h.prev_lsn, h.lsn), (TxnId(7), Lsn(4096), Lsn(8192)));
        assert_eq!((h.relation, h.page), (Some(RelationId(3)), Some(PageId(9))));
        let bare = encode(&RecordMeta::new(RecordType::Commit), Lsn(100), &[]);
        let (h, _) = decode(&bare, Lsn(100)).unwrap();
        assert_eq!((h.relation, h.page), (None, None));
        for t in RecordType::ALL {
            assert_eq!(RecordType::from_u8(*t as u8), Some(*t));
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let (meta, payload) = sample();
        let bytes = encode(&meta, Lsn(8192), &payload);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(
                    decode_frame(&b, Lsn(8192)).is_err(),
                    "flip {i}.{bit} undetected"
                );
            }
        }
    }

    #[test]
    fn stale_truncated_and_zero_frames_are_named() {
        let (meta, payload) = sample();
        let bytes = encode(&meta, Lsn(8192), &payload);
        assert_eq!(
            decode_frame(&bytes, Lsn(16384)),
            Err(FrameProblem::WrongLsn(Lsn(8192)))
        );
        for cut in 0..bytes.len() {
            assert!(decode_frame(&bytes[..cut], Lsn(8192)).is_err());
        }
        assert_eq!(decode_frame(&[0u8; 100], Lsn(1)), Err(FrameProblem::Zeroes));
        assert_eq!(decode_frame(&[0u8; 3], Lsn(1)), Err(FrameProblem::Zeroes));
        let e = decode(&bytes, Lsn(16384)).unwrap_err();
        assert!(e.to_string().contains("0/00004000"), "{e}");
    }
}
