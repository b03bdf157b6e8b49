//! Encoding payloads: field by field, little-endian (invariant 1).
//!
//! Encoding checks the same limits decoding does (tuple and chunk lengths,
//! ranges inside the page, name length, CLR actions), so every payload that
//! encodes also decodes, to an equal value (page images up to their hole).

use crate::page::header::{HEADER_SIZE, get_u16, offsets};
use crate::page::tree::{MAX_ITEM_LEN, MAX_KEY_LEN};
use crate::page::{CHUNK_CAPACITY, MAX_TUPLE_LEN, PAGE_SIZE, PageType, Relocation, TupleFlags};
use crate::types::{Lsn, PageId, RelationId, SlotId};
use crate::wal::WalError;
use crate::wal::record::{MAX_RECORD_SIZE, RECORD_HEADER_SIZE, RecordType};

use super::{
    MAX_NAME_LEN, MAX_PAYLOAD_SIZE, Payload, SLOT_IMAGE_FORWARD, SLOT_IMAGE_TUPLE, SlotImage,
    TupleBatch, is_clr_action,
};

/// Encoded size of a [`SlotImage`] tuple entry, less the tuple bytes.
pub(super) const SLOT_IMAGE_TUPLE_FIXED: usize = 4;
/// Encoded size of a [`SlotImage::Forward`].
pub(super) const SLOT_IMAGE_FORWARD_LEN: usize = 7;
/// Encoded size of a heap-multi-insert, less its tuple entries.
pub(super) const MULTI_INSERT_FIXED: usize = 5;
/// Encoded size of one heap-multi-insert tuple entry, less its bytes.
pub(super) const MULTI_TUPLE_FIXED: usize = 2;
/// Encoded size of one page-delta range, less its bytes.
pub(super) const DELTA_RANGE_FIXED: usize = 4;
/// Encoded size of one relocation.
pub(super) const RELOCATION_LEN: usize = 8;
/// Encoded size of a tree-root-swap payload.
pub(super) const TREE_ROOT_SWAP_LEN: usize = 12;

/// Encoded size of a tree-split payload, less its high key's bytes and
/// its image's (keep, high key length, right page, hole offset and length).
pub(super) const TREE_SPLIT_FIXED: usize = 12;

/// Encoded size of a checkpoint-end payload (six u64 fields).
pub(super) const CHECKPOINT_END_LEN: usize = 48;

/// The hole of a page image as `(offset, len)`: the free gap `lower..upper`
/// of a heap page whose bounds are sane, else `(0, 0)`. The header lies
/// below `lower`, so the hole never hides the fields that locate it.
pub(super) fn image_hole(image: &[u8; PAGE_SIZE]) -> (usize, usize) {
    let with_gap = [PageType::Heap, PageType::TreeLeaf, PageType::TreeInternal];
    if !with_gap
        .iter()
        .any(|&t| image[offsets::PAGE_TYPE] == t as u8)
    {
        return (0, 0);
    }
    let lower = usize::from(get_u16(image, offsets::LOWER));
    let upper = usize::from(get_u16(image, offsets::UPPER));
    if HEADER_SIZE <= lower && lower < upper && upper <= PAGE_SIZE {
        (lower, upper - lower)
    } else {
        (0, 0)
    }
}

fn slot_image_len(img: &SlotImage) -> usize {
    match img {
        SlotImage::Tuple { bytes, .. } => SLOT_IMAGE_TUPLE_FIXED + bytes.len(),
        SlotImage::Forward(_) => SLOT_IMAGE_FORWARD_LEN,
    }
}

impl Payload {
    /// Length of [`Payload::encode`]'s output (saturating for payloads too
    /// large to encode).
    pub fn encoded_len(&self) -> usize {
        match self {
            Payload::Padding { len } => *len,
            Payload::PageImage { image } => 4 + PAGE_SIZE - image_hole(image).1,
            Payload::MultiPageImage { images } => {
                1 + images
                    .iter()
                    .map(|(_, image)| 8 + PAGE_SIZE - image_hole(image).1)
                    .sum::<usize>()
            }
            Payload::PageCheck { image, .. } => 12 + PAGE_SIZE - image_hole(image).1,
            Payload::TreeSplit { sep, image, .. } => {
                TREE_SPLIT_FIXED + sep.len() + PAGE_SIZE - image_hole(image).1
            }
            Payload::PageDelta { ranges } => ranges.iter().fold(2usize, |n, (_, b)| {
                n.saturating_add(DELTA_RANGE_FIXED + b.len())
            }),
            Payload::PageInit { .. } => 1,
            Payload::HeapInsert { tuple, .. } => 5 + tuple.len(),
            Payload::HeapMultiInsert { tuples, .. } => tuples
                .len()
                .saturating_mul(MULTI_TUPLE_FIXED)
                .saturating_add(tuples.tuple_bytes())
                .saturating_add(MULTI_INSERT_FIXED),
            Payload::HeapMultiRemove { .. } => 4,
            Payload::HeapDelete { old, .. } => 2 + slot_image_len(old),
            Payload::HeapUpdate { old, new, .. } => 2 + slot_image_len(old) + 3 + new.len(),
            Payload::HeapForward { old, .. } => 8 + slot_image_len(old),
            Payload::HeapFreeSlot { .. } => 2,
            Payload::PageCompaction { relocations } => relocations
                .len()
                .saturating_mul(RELOCATION_LEN)
                .saturating_add(2),
            Payload::OverflowWrite { chunk, .. } => 10 + chunk.len(),
            Payload::OverflowFree | Payload::Begin | Payload::Abort | Payload::CheckpointBegin => 0,
            Payload::Commit { .. } => 8,
            Payload::Compensation { action, .. } => action.encoded_len().saturating_add(9),
            Payload::CheckpointEnd { .. } => CHECKPOINT_END_LEN,
            Payload::TreeInsert { key, rest } | Payload::TreeDelete { key, rest } => {
                4 + key.len() + rest.len()
            }
            Payload::TreeRootSwap { .. } => TREE_ROOT_SWAP_LEN,
            Payload::RelationCreate { name, .. } => 5 + name.len(),
            Payload::RelationDrop { .. } => 4,
        }
    }

    /// Appends the encoding to `out`. Fails, leaving `out` as it was, with
    /// [`WalError::RecordTooLarge`] when the record would exceed
    /// [`MAX_RECORD_SIZE`], or with [`WalError::BadPayload`] (at
    /// `Lsn::ZERO`: the record has no LSN yet; offset into the encoding)
    /// when a field breaks a limit decoding would reject: a tuple longer
    /// than [`MAX_TUPLE_LEN`], a chunk longer than [`CHUNK_CAPACITY`], a
    /// page range or relocation past the page, a name longer than
    /// [`MAX_NAME_LEN`], a CLR whose action does not change a page.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WalError> {
        let len = self.encoded_len();
        if len > MAX_PAYLOAD_SIZE {
            return Err(WalError::RecordTooLarge {
                len: len.saturating_add(RECORD_HEADER_SIZE),
                max: MAX_RECORD_SIZE,
            });
        }
        let start = out.len();
        out.reserve(len);
        let mut w = Writer {
            out,
            start,
            kind: self.kind().name(),
        };
        match w.payload(self) {
            Ok(()) => {
                debug_assert_eq!(
                    out.len() - start,
                    len,
                    "encoded_len disagrees with encode (inv. 1)"
                );
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// The encoding as a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WalError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// Appends fields to the output; errors name the offset in the encoding.
/// Length of [`encode_page_image`]'s output.
pub(crate) fn page_image_len(image: &[u8; PAGE_SIZE]) -> usize {
    4 + PAGE_SIZE - image_hole(image).1
}

/// Encodes a [`Payload::PageImage`] of `image`, borrowed: the same bytes as
/// `Payload::PageImage { image }.encode(out)`, without the payload owning a
/// copy of the page first (the first change to a page after a checkpoint
/// logs one from its latched frame, on the committer's thread). A page
/// image always fits in a record.
pub(crate) fn encode_page_image(image: &[u8; PAGE_SIZE], out: &mut Vec<u8>) {
    out.reserve(page_image_len(image));
    let start = out.len();
    let mut w = Writer {
        out,
        start,
        kind: RecordType::PageImage.name(),
    };
    w.page_image(image);
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    kind: &'static str,
}

impl Writer<'_> {
    fn fail(&self, reason: String) -> WalError {
        WalError::BadPayload {
            lsn: Lsn::ZERO,
            kind: self.kind,
            offset: self.out.len() - self.start,
            reason: format!("cannot encode: {reason}"),
        }
    }

    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// A u16 length prefix and the bytes, at most `max` of them.
    fn bytes16(&mut self, b: &[u8], max: usize, what: &str) -> Result<(), WalError> {
        match u16::try_from(b.len()) {
            Ok(n) if b.len() <= max => {
                self.u16(n);
                self.out.extend_from_slice(b);
                Ok(())
            }
            _ => Err(self.fail(format!("{what} of {} bytes exceeds {max}", b.len()))),
        }
    }

    fn count16(&mut self, n: usize, what: &str) -> Result<(), WalError> {
        let n = u16::try_from(n).map_err(|_| self.fail(format!("{n} {what} exceed 65535")))?;
        self.u16(n);
        Ok(())
    }

    fn tuple(&mut self, flags: TupleFlags, bytes: &[u8]) -> Result<(), WalError> {
        self.u8(flags.bits());
        self.bytes16(bytes, MAX_TUPLE_LEN, "tuple")
    }

    fn slot_image(&mut self, img: &SlotImage) -> Result<(), WalError> {
        match img {
            SlotImage::Tuple { flags, bytes } => {
                self.u8(SLOT_IMAGE_TUPLE);
                self.tuple(*flags, bytes)
            }
            SlotImage::Forward(tid) => {
                self.u8(SLOT_IMAGE_FORWARD);
                self.u32(tid.page.0);
                self.u16(tid.slot.0);
                Ok(())
            }
        }
    }

    fn payload(&mut self, p: &Payload) -> Result<(), WalError> {
        match p {
            Payload::Padding { len } => self.out.resize(self.out.len() + len, 0),
            Payload::PageImage { image } => self.page_image(image),
            Payload::MultiPageImage { images } => {
                if images.is_empty() || images.len() > super::MAX_MULTI_IMAGES {
                    return Err(self.fail(format!(
                        "{} page images in one record (1 to {})",
                        images.len(),
                        super::MAX_MULTI_IMAGES
                    )));
                }
                self.u8(images.len() as u8);
                for (page, image) in images {
                    self.u32(page.0);
                    self.page_image(image);
                }
            }
            Payload::PageCheck { of, image } => {
                self.u64(of.0);
                self.page_image(image);
            }
            Payload::TreeSplit {
                keep,
                sep,
                right,
                image,
            } => self.tree_split(*keep, sep, *right, image)?,
            Payload::PageDelta { ranges } => self.page_delta(ranges)?,
            Payload::PageInit { page_type } => self.u8(*page_type as u8),
            Payload::HeapInsert { slot, flags, tuple } => {
                self.u16(slot.0);
                self.tuple(*flags, tuple)?;
            }
            Payload::HeapMultiInsert {
                first,
                flags,
                tuples,
            } => self.multi_insert(*first, *flags, tuples)?,
            Payload::HeapMultiRemove { first, count } => {
                if let Some(reason) = run_problem(*first, usize::from(*count)) {
                    return Err(self.fail(reason));
                }
                self.u16(first.0);
                self.u16(*count);
            }
            Payload::HeapDelete { slot, old } => {
                self.u16(slot.0);
                self.slot_image(old)?;
            }
            Payload::HeapUpdate {
                slot,
                old,
                new_flags,
                new,
            } => {
                self.u16(slot.0);
                self.slot_image(old)?;
                self.tuple(*new_flags, new)?;
            }
            Payload::HeapForward { slot, target, old } => {
                self.u16(slot.0);
                self.u32(target.page.0);
                self.u16(target.slot.0);
                self.slot_image(old)?;
            }
            Payload::HeapFreeSlot { slot } => self.u16(slot.0),
            Payload::PageCompaction { relocations } => self.compaction(relocations)?,
            Payload::OverflowWrite { index, next, chunk } => {
                self.u32(*index);
                self.u32(*next);
                self.bytes16(chunk, CHUNK_CAPACITY, "overflow chunk")?;
            }
            Payload::OverflowFree | Payload::Begin | Payload::Abort | Payload::CheckpointBegin => {}
            Payload::Commit { commit_time_us } => self.u64(*commit_time_us),
            Payload::Compensation { undo_next, action } => self.compensation(*undo_next, action)?,
            Payload::CheckpointEnd {
                begin_lsn,
                next_txn,
                redo_start,
                undo_start,
                dirty_pages,
                active_txns,
            } => {
                self.u64(begin_lsn.0);
                self.u64(next_txn.0);
                self.u64(redo_start.0);
                self.u64(undo_start.0);
                self.u64(*dirty_pages);
                self.u64(*active_txns);
            }
            Payload::TreeInsert { key, rest } | Payload::TreeDelete { key, rest } => {
                self.bytes16(key, MAX_KEY_LEN, "tree key")?;
                self.bytes16(rest, MAX_ITEM_LEN, "tree item")?;
            }
            Payload::TreeRootSwap {
                old,
                old_level,
                new,
                new_level,
            } => {
                self.u32(old.0);
                self.u16(*old_level);
                self.u32(new.0);
                self.u16(*new_level);
            }
            Payload::RelationCreate { relation, name } => self.relation_create(*relation, name)?,
            Payload::RelationDrop { relation } => self.u32(relation.0),
        }
        Ok(())
    }

    /// A multi-insert: its first slot, the flags, the tuple count, then
    /// each tuple's length-prefixed bytes.
    fn multi_insert(
        &mut self,
        first: SlotId,
        flags: TupleFlags,
        tuples: &TupleBatch,
    ) -> Result<(), WalError> {
        if let Some(reason) = run_problem(first, tuples.len()) {
            return Err(self.fail(reason));
        }
        self.u16(first.0);
        self.u8(flags.bits());
        self.count16(tuples.len(), "multi-insert tuples")?;
        for bytes in tuples.iter() {
            self.bytes16(bytes, MAX_TUPLE_LEN, "tuple")?;
        }
        Ok(())
    }

    /// A CLR: its undo-next, then the action's type byte and payload.
    fn compensation(&mut self, undo_next: Lsn, action: &Payload) -> Result<(), WalError> {
        let kind = action.kind();
        if !is_clr_action(kind) {
            return Err(self.fail(format!("a CLR cannot carry a {} action", kind.name())));
        }
        self.u64(undo_next.0);
        self.u8(kind as u8);
        self.payload(action)
    }

    /// The relation id, then its name with a one-byte length.
    fn relation_create(&mut self, relation: RelationId, name: &str) -> Result<(), WalError> {
        self.u32(relation.0);
        let n = u8::try_from(name.len()).map_err(|_| {
            self.fail(format!(
                "relation name of {} bytes exceeds {MAX_NAME_LEN}",
                name.len()
            ))
        })?;
        self.u8(n);
        self.out.extend_from_slice(name.as_bytes());
        Ok(())
    }

    /// A tree-split: the items kept, the high key, the right page and its
    /// image, which must name that page.
    fn tree_split(
        &mut self,
        keep: u16,
        sep: &[u8],
        right: PageId,
        image: &[u8; PAGE_SIZE],
    ) -> Result<(), WalError> {
        if let Some(reason) = tree_split_problem(keep, right, image) {
            return Err(self.fail(reason));
        }
        self.u16(keep);
        self.bytes16(sep, MAX_KEY_LEN, "tree high key")?;
        self.u32(right.0);
        self.page_image(image);
        Ok(())
    }

    fn page_image(&mut self, image: &[u8; PAGE_SIZE]) {
        let (hole_off, hole_len) = image_hole(image);
        debug_assert!(
            hole_off + hole_len <= PAGE_SIZE,
            "hole past the page (inv. 1)"
        );
        // Both fit in u16: the hole lies inside an 8 KiB page.
        self.u16(hole_off as u16);
        self.u16(hole_len as u16);
        self.out.extend_from_slice(&image[..hole_off]);
        self.out.extend_from_slice(&image[hole_off + hole_len..]);
    }

    fn page_delta(&mut self, ranges: &[(u16, Vec<u8>)]) -> Result<(), WalError> {
        self.count16(ranges.len(), "page ranges")?;
        for (off, bytes) in ranges {
            if usize::from(*off) + bytes.len() > PAGE_SIZE {
                return Err(self.fail(format!(
                    "range {off}+{} runs past the {PAGE_SIZE}-byte page",
                    bytes.len()
                )));
            }
            self.u16(*off);
            self.bytes16(bytes, PAGE_SIZE, "page range")?;
        }
        Ok(())
    }

    fn compaction(&mut self, relocations: &[Relocation]) -> Result<(), WalError> {
        self.count16(relocations.len(), "relocations")?;
        for r in relocations {
            if let Some(reason) = relocation_problem(r) {
                return Err(self.fail(reason));
            }
            self.u16(r.slot.0);
            self.u16(r.old_offset);
            self.u16(r.new_offset);
            self.u16(r.len);
        }
        Ok(())
    }
}

/// Why a run of `count` slots from `first` cannot exist, if it cannot: its
/// last slot would pass `u16::MAX`.
pub(super) fn run_problem(first: SlotId, count: usize) -> Option<String> {
    let last = usize::from(first.0) + count.saturating_sub(1);
    (last > usize::from(u16::MAX)).then(|| {
        format!(
            "a run of {count} slots from slot {first} passes slot {}",
            u16::MAX
        )
    })
}

/// Why a tree-split cannot be applied, if it cannot: the left node keeps
/// at least one item, and the image is a tree node that names the right
/// page.
pub(super) fn tree_split_problem(
    keep: u16,
    right: PageId,
    image: &[u8; PAGE_SIZE],
) -> Option<String> {
    if keep == 0 {
        return Some("a split that keeps no item on the left node".into());
    }
    let named = crate::page::header::get_u32(&image[..], offsets::PAGE_ID);
    if named != right.0 {
        return Some(format!("right page {right}'s image names page {named}"));
    }
    let node = [PageType::TreeLeaf as u8, PageType::TreeInternal as u8];
    if !node.contains(&image[offsets::PAGE_TYPE]) {
        return Some(format!(
            "right page {right}'s image is of page type {}, not a tree node",
            image[offsets::PAGE_TYPE]
        ));
    }
    None
}

/// Why a relocation cannot be applied to a page, if it cannot: both its
/// source and its destination must lie inside the page.
pub(super) fn relocation_problem(r: &Relocation) -> Option<String> {
    let len = usize::from(r.len);
    for (what, off) in [("old", r.old_offset), ("new", r.new_offset)] {
        if usize::from(off) + len > PAGE_SIZE {
            return Some(format!(
                "slot {} relocation: {what} bytes {off}+{len} run past the page",
                r.slot
            ));
        }
    }
    None
}
