//! Decoding payloads from untrusted bytes (invariant 9).
//!
//! Every check encoding makes is repeated here, plus the ones only bytes can
//! fail: short reads, unknown enum bytes, counts larger than the remaining
//! bytes can hold, non-zero padding, a page image whose hole is not the one
//! its own header implies, invalid UTF-8, and trailing bytes.

use crate::page::header::HEADER_SIZE;
use crate::page::tree::{MAX_ITEM_LEN, MAX_KEY_LEN};
use crate::page::{CHUNK_CAPACITY, MAX_TUPLE_LEN, PAGE_SIZE, PageType, Relocation, TupleFlags};
use crate::types::{Lsn, PageId, RelationId, SlotId, TupleId, TxnId};
use crate::wal::WalError;
use crate::wal::record::{RecordHeader, RecordType};

use super::cursor::Cursor;
use super::encode::{
    DELTA_RANGE_FIXED, MULTI_TUPLE_FIXED, RELOCATION_LEN, SLOT_IMAGE_FORWARD_LEN,
    SLOT_IMAGE_TUPLE_FIXED, image_hole, relocation_problem, run_problem, tree_split_problem,
};
use super::{
    MAX_PAYLOAD_SIZE, Payload, SLOT_IMAGE_FORWARD, SLOT_IMAGE_TUPLE, SlotImage, TupleBatch,
    is_clr_action,
};

impl Payload {
    /// Decodes the payload of a record of type `kind` at `lsn` (the LSN only
    /// names the record in errors). The whole of `bytes` must be the
    /// payload: trailing bytes are an error.
    pub fn decode(kind: RecordType, bytes: &[u8], lsn: Lsn) -> Result<Payload, WalError> {
        let mut cur = Cursor::new(bytes, lsn, kind.name());
        if bytes.len() > MAX_PAYLOAD_SIZE {
            return Err(cur.error_at(
                MAX_PAYLOAD_SIZE,
                format!(
                    "{} bytes is longer than any record's payload ({MAX_PAYLOAD_SIZE})",
                    bytes.len()
                ),
            ));
        }
        let payload = body(kind, &mut cur)?;
        cur.finish()?;
        Ok(payload)
    }

    /// Decodes the payload of a record whose frame
    /// [`record::decode`](crate::wal::record::decode) returned.
    pub fn decode_record(header: &RecordHeader, payload: &[u8]) -> Result<Payload, WalError> {
        Payload::decode(header.kind, payload, header.lsn)
    }
}

fn body(kind: RecordType, cur: &mut Cursor<'_>) -> Result<Payload, WalError> {
    Ok(match kind {
        RecordType::Padding => padding(cur)?,
        RecordType::PageImage => Payload::PageImage {
            image: page_image(cur)?,
        },
        RecordType::PageDelta => page_delta(cur)?,
        RecordType::MultiPageImage => multi_page_image(cur)?,
        RecordType::TreeSplit => tree_split(cur)?,
        RecordType::PageInit => {
            let at = cur.pos();
            let b = cur.u8("page type")?;
            let page_type = PageType::from_u8(b)
                .ok_or_else(|| cur.error_at(at, format!("unknown page type {b}")))?;
            Payload::PageInit { page_type }
        }
        RecordType::HeapInsert => {
            let slot = slot(cur)?;
            let (flags, tuple) = tuple(cur)?;
            Payload::HeapInsert { slot, flags, tuple }
        }
        RecordType::HeapMultiInsert => multi_insert(cur)?,
        RecordType::HeapMultiRemove => {
            let first = slot(cur)?;
            let at = cur.pos();
            let count = cur.u16("slot count")?;
            if let Some(reason) = run_problem(first, usize::from(count)) {
                return Err(cur.error_at(at, reason));
            }
            Payload::HeapMultiRemove { first, count }
        }
        RecordType::HeapDelete => Payload::HeapDelete {
            slot: slot(cur)?,
            old: slot_image(cur)?,
        },
        RecordType::HeapUpdate => {
            let slot = slot(cur)?;
            let old = slot_image(cur)?;
            let (new_flags, new) = tuple(cur)?;
            Payload::HeapUpdate {
                slot,
                old,
                new_flags,
                new,
            }
        }
        RecordType::HeapForward => Payload::HeapForward {
            slot: slot(cur)?,
            target: tuple_id(cur)?,
            old: slot_image(cur)?,
        },
        RecordType::HeapFreeSlot => Payload::HeapFreeSlot { slot: slot(cur)? },
        RecordType::PageCompaction => compaction(cur)?,
        RecordType::OverflowWrite => {
            let index = cur.u32("chunk index")?;
            let next = cur.u32("next page")?;
            let chunk = bytes16(cur, CHUNK_CAPACITY, "overflow chunk")?.to_vec();
            Payload::OverflowWrite { index, next, chunk }
        }
        RecordType::OverflowFree => Payload::OverflowFree,
        RecordType::PageCheck => {
            let of = Lsn(cur.u64("checked LSN")?);
            Payload::PageCheck {
                of,
                image: page_image(cur)?,
            }
        }
        RecordType::Begin => Payload::Begin,
        RecordType::Commit => Payload::Commit {
            commit_time_us: cur.u64("commit time")?,
        },
        RecordType::Abort => Payload::Abort,
        RecordType::Compensation => compensation(cur)?,
        RecordType::CheckpointBegin => Payload::CheckpointBegin,
        RecordType::CheckpointEnd => checkpoint_end(cur)?,
        RecordType::TreeInsert => Payload::TreeInsert {
            key: bytes16(cur, MAX_KEY_LEN, "tree key")?.to_vec(),
            rest: bytes16(cur, MAX_ITEM_LEN, "tree item")?.to_vec(),
        },
        RecordType::TreeDelete => Payload::TreeDelete {
            key: bytes16(cur, MAX_KEY_LEN, "tree key")?.to_vec(),
            rest: bytes16(cur, MAX_ITEM_LEN, "tree item")?.to_vec(),
        },
        RecordType::TreeRootSwap => Payload::TreeRootSwap {
            old: PageId(cur.u32("old root")?),
            old_level: cur.u16("old level")?,
            new: PageId(cur.u32("new root")?),
            new_level: cur.u16("new level")?,
        },
        RecordType::RelationCreate => relation_create(cur)?,
        RecordType::RelationDrop => Payload::RelationDrop {
            relation: RelationId(cur.u32("relation")?),
        },
    })
}

fn padding(cur: &mut Cursor<'_>) -> Result<Payload, WalError> {
    let start = cur.pos();
    let bytes = cur.take(cur.remaining(), "padding")?;
    if let Some(i) = bytes.iter().position(|&b| b != 0) {
        return Err(cur.error_at(start + i, "padding byte is not zero"));
    }
    Ok(Payload::Padding { len: bytes.len() })
}

/// A page image with its hole elided (page-image and page-check records).
/// A `multi-page-image`: a count of 1 to [`MAX_MULTI_IMAGES`](super::MAX_MULTI_IMAGES), then each
/// page's id and image, no page twice, each image naming its page.
fn multi_page_image(cur: &mut Cursor<'_>) -> Result<Payload, WalError> {
    let at = cur.pos();
    let count = usize::from(cur.u8("image count")?);
    if count == 0 || count > super::MAX_MULTI_IMAGES {
        return Err(cur.error_at(
            at,
            format!(
                "{count} page images in one record (1 to {})",
                super::MAX_MULTI_IMAGES
            ),
        ));
    }
    let mut images: Vec<(PageId, Box<[u8; PAGE_SIZE]>)> = Vec::with_capacity(count);
    for _ in 0..count {
        let at = cur.pos();
        let page = PageId(cur.u32("page id")?);
        let image = page_image(cur)?;
        let named = crate::page::header::get_u32(&image[..], crate::page::header::offsets::PAGE_ID);
        if named != page.0 || images.iter().any(|(p, _)| *p == page) {
            return Err(cur.error_at(
                at,
                format!("image of page {page} (naming page {named}) given twice or misnamed"),
            ));
        }
        images.push((page, image));
    }
    Ok(Payload::MultiPageImage { images })
}

/// A `tree-split`: the items kept (at least one), the high key, the right
/// page and its image, a tree node naming that page.
fn tree_split(cur: &mut Cursor<'_>) -> Result<Payload, WalError> {
    let at = cur.pos();
    let keep = cur.u16("items kept")?;
    let sep = bytes16(cur, MAX_KEY_LEN, "tree high key")?.to_vec();
    let right = PageId(cur.u32("right page")?);
    let image = page_image(cur)?;
    if let Some(reason) = tree_split_problem(keep, right, &image) {
        return Err(cur.error_at(at, reason));
    }
    Ok(Payload::TreeSplit {
        keep,
        sep,
        right,
        image,
    })
}

fn page_image(cur: &mut Cursor<'_>) -> Result<Box<[u8; PAGE_SIZE]>, WalError> {
    let at = cur.pos();
    let hole_off = usize::from(cur.u16("hole offset")?);
    let hole_len = usize::from(cur.u16("hole length")?);
    let sane = if hole_len == 0 {
        hole_off == 0
    } else {
        hole_off >= HEADER_SIZE && hole_off + hole_len <= PAGE_SIZE
    };
    if !sane {
        return Err(cur.error_at(
            at,
            format!("impossible hole {hole_off}+{hole_len} in a {PAGE_SIZE}-byte page"),
        ));
    }
    let mut image = Box::new([0u8; PAGE_SIZE]);
    let tail = hole_off + hole_len;
    image[..hole_off].copy_from_slice(cur.take(hole_off, "page bytes before the hole")?);
    image[tail..].copy_from_slice(cur.take(PAGE_SIZE - tail, "page bytes after the hole")?);
    // Canonical form: the hole must be exactly the one the encoder would
    // elide from this page, so a decoded image re-encodes to the same bytes.
    if image_hole(&image) != (hole_off, hole_len) {
        return Err(cur.error_at(
            at,
            format!("hole {hole_off}+{hole_len} is not the page's free gap lower..upper"),
        ));
    }
    Ok(image)
}

fn page_delta(cur: &mut Cursor<'_>) -> Result<Payload, WalError> {
    let n = cur.count16(DELTA_RANGE_FIXED, "page ranges")?;
    let mut ranges = Vec::with_capacity(n);
    for _ in 0..n {
        let at = cur.pos();
        let off = cur.u16("range offset")?;
        let bytes = bytes16(cur, PAGE_SIZE, "page range")?;
        if usize::from(off) + bytes.len() > PAGE_SIZE {
            return Err(cur.error_at(
                at,
                format!(
                    "range {off}+{} runs past the {PAGE_SIZE}-byte page",
                    bytes.len()
                ),
            ));
        }
        ranges.push((off, bytes.to_vec()));
    }
    Ok(Payload::PageDelta { ranges })
}

fn compaction(cur: &mut Cursor<'_>) -> Result<Payload, WalError> {
    let n = cur.count16(RELOCATION_LEN, "relocations")?;
    let mut relocations = Vec::with_capacity(n);
    for _ in 0..n {
        let at = cur.pos();
        let r = Relocation {
            slot: SlotId(cur.u16("relocated slot")?),
            old_offset: cur.u16("old offset")?,
            new_offset: cur.u16("new offset")?,
            len: cur.u16("relocation length")?,
        };
        if let Some(reason) = relocation_problem(&r) {
            return Err(cur.error_at(at, reason));
        }
        relocations.push(r);
    }
    Ok(Payload::PageCompaction { relocations })
}

fn multi_insert(cur: &mut Cursor<'_>) -> Result<Payload, WalError> {
    let first = slot(cur)?;
    let flags = flags(cur)?;
    let at = cur.pos();
    let n = cur.count16(MULTI_TUPLE_FIXED, "multi-insert tuples")?;
    if let Some(reason) = run_problem(first, n) {
        return Err(cur.error_at(at, reason));
    }
    // `count16` checked that the entries' fixed parts fit in what is left.
    let mut tuples = TupleBatch::with_capacity(n, cur.remaining() - n * MULTI_TUPLE_FIXED);
    for _ in 0..n {
        tuples.push(bytes16(cur, MAX_TUPLE_LEN, "tuple")?);
    }
    Ok(Payload::HeapMultiInsert {
        first,
        flags,
        tuples,
    })
}

fn compensation(cur: &mut Cursor<'_>) -> Result<Payload, WalError> {
    let undo_next = Lsn(cur.u64("undo-next LSN")?);
    let at = cur.pos();
    let b = cur.u8("action type")?;
    let kind = RecordType::from_u8(b)
        .ok_or_else(|| cur.error_at(at, format!("unknown action type {b}")))?;
    if !is_clr_action(kind) {
        return Err(cur.error_at(at, format!("a CLR cannot carry a {} action", kind.name())));
    }
    let action = Box::new(body(kind, cur)?);
    Ok(Payload::Compensation { undo_next, action })
}

fn checkpoint_end(cur: &mut Cursor<'_>) -> Result<Payload, WalError> {
    let begin_lsn = Lsn(cur.u64("checkpoint-begin LSN")?);
    let next_txn = TxnId(cur.u64("next transaction id")?);
    Ok(Payload::CheckpointEnd {
        begin_lsn,
        next_txn,
        redo_start: Lsn(cur.u64("redo start")?),
        undo_start: Lsn(cur.u64("undo start")?),
        dirty_pages: cur.u64("dirty page count")?,
        active_txns: cur.u64("transaction count")?,
    })
}

fn relation_create(cur: &mut Cursor<'_>) -> Result<Payload, WalError> {
    let relation = RelationId(cur.u32("relation")?);
    let n = usize::from(cur.u8("name length")?);
    let at = cur.pos();
    let raw = cur.take(n, "relation name")?;
    let name = std::str::from_utf8(raw)
        .map_err(|e| cur.error_at(at + e.valid_up_to(), "relation name is not UTF-8"))?;
    Ok(Payload::RelationCreate {
        relation,
        name: name.to_owned(),
    })
}

fn slot(cur: &mut Cursor<'_>) -> Result<SlotId, WalError> {
    cur.u16("slot").map(SlotId)
}

fn tuple_id(cur: &mut Cursor<'_>) -> Result<TupleId, WalError> {
    let page = PageId(cur.u32("forward page")?);
    let slot = SlotId(cur.u16("forward slot")?);
    Ok(TupleId::new(page, slot))
}

/// A u16 length prefix and that many bytes, at most `max`.
fn bytes16<'a>(cur: &mut Cursor<'a>, max: usize, what: &str) -> Result<&'a [u8], WalError> {
    let at = cur.pos();
    let n = usize::from(cur.u16(what)?);
    if n > max {
        return Err(cur.error_at(at, format!("{what} of {n} bytes exceeds {max}")));
    }
    cur.take(n, what)
}

/// A tuple flags byte.
fn flags(cur: &mut Cursor<'_>) -> Result<TupleFlags, WalError> {
    let at = cur.pos();
    let b = cur.u8("tuple flags")?;
    TupleFlags::from_bits(b)
        .ok_or_else(|| cur.error_at(at, format!("unknown tuple flags {b:#04x}")))
}

/// Tuple flags and length-prefixed tuple bytes.
fn tuple(cur: &mut Cursor<'_>) -> Result<(TupleFlags, Vec<u8>), WalError> {
    let flags = flags(cur)?;
    Ok((flags, bytes16(cur, MAX_TUPLE_LEN, "tuple")?.to_vec()))
}

fn slot_image(cur: &mut Cursor<'_>) -> Result<SlotImage, WalError> {
    let at = cur.pos();
    let tag = cur.u8("slot image kind")?;
    let img = match tag {
        SLOT_IMAGE_TUPLE => {
            let (flags, bytes) = tuple(cur)?;
            SlotImage::Tuple { flags, bytes }
        }
        SLOT_IMAGE_FORWARD => SlotImage::Forward(tuple_id(cur)?),
        _ => return Err(cur.error_at(at, format!("unknown slot image kind {tag}"))),
    };
    debug_assert!(
        cur.pos() - at
            == match &img {
                SlotImage::Tuple { bytes, .. } => SLOT_IMAGE_TUPLE_FIXED + bytes.len(),
                SlotImage::Forward(_) => SLOT_IMAGE_FORWARD_LEN,
            },
        "slot image layout constants disagree with the decoder (inv. 1)"
    );
    Ok(img)
}
