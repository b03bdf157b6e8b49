//! Slotted heap pages: a slot directory growing up, tuples growing down.
//!
//! ```text
//!  0          40                lower              upper             8192
//!  +----------+-----------------+------------------+-----------------+
//!  |  header  | slot 0 | slot 1 |   free space     | tuple 1 |tuple 0|
//!  +----------+-----------------+------------------+-----------------+
//! ```
//!
//! A slot is 4 bytes: `u16` offset with the slot kind in its top 3 bits, and
//! `u16` length with the tuple flags in its top 3 bits (docs/storage.md,
//! "Slot entry"). A tuple's number is its slot index; slot numbers never
//! change while the tuple lives (invariant 12): compaction moves bytes, not
//! slots, and an update that no longer fits is turned by the heap into a
//! *forward* slot pointing at the tuple's new home.
//!
//! Slot kinds and their transitions (the function behind each edge):
//!
//! ```text
//!            insert / insert_at                 set_forward
//!   Free ---------------------------> Tuple ----------------> Forward
//!    ^                                 |  ^                     |
//!    |              delete             |  |  update (undo of a  |
//!    |   Dead <------------------------+  +---- move) ----------+
//!    |    |  ^                                                  |
//!    +----+  +------------------------ delete ------------------+
//!  free_slot            (Dead --insert_at--> Tuple: undo of a delete)
//! ```
//!
//! A *dead* slot's tuple bytes are reclaimed at once but its number stays
//! reserved, so the deleting transaction can still be rolled back into the
//! same slot; the heap frees it (`free_slot`) once no rollback can need it.
//! Only *free* slots are reused by [`SlottedPage::insert`].
//!
//! ## Space accounting
//!
//! Each tuple occupies `max(len, FORWARD_LEN)` bytes ([`alloc_len`]), so any
//! tuple can later be replaced in place by a 6-byte forward pointer. Free space
//! is `upper - lower` (contiguous) plus `frag` (holes left in the tuple area by
//! deletes and updates). The header's free hint says no slot below it is free,
//! which keeps insert from scanning the directory when no slot is reusable.
//! These facts, checked by [`SlottedPage::validate`]:
//!
//! 1. `40 + 4 * slots <= lower <= upper <= 8192`, `free_hint <= slots`;
//! 2. tuple and forward allocations lie in `upper..8192` and never overlap;
//! 3. `frag == (8192 - upper) - sum(allocations)`;
//! 4. free and dead slots have offset and length zero and no flags;
//! 5. no slot below `free_hint` is free, and the last slot is not free
//!    (trailing free slots are trimmed, giving their 4 bytes back);
//! 6. the header's next-page link is [`NO_PAGE`]:
//!    only overflow pages chain (a heap page is formatted by
//!    [`SlottedPage::init`], and no heap operation writes the link).

use crate::page::PageError;
use crate::page::header::{
    HEADER_SIZE, NO_PAGE, PAGE_SIZE, PageHeader, PageType, corrupted, get_u16, get_u32, offsets,
    put_u16,
};
use crate::page::overflow::OverflowHead;
use crate::page::stats::PageStats;
use crate::types::{Lsn, PageId, SlotId, TupleId};

/// Size of one slot directory entry, in bytes.
pub const SLOT_SIZE: usize = 4;
/// Offset within a slot entry of the u16 offset word (kind in bits 13-15).
pub const SLOT_OFFSET_WORD: usize = 0;
/// Offset within a slot entry of the u16 length word (flags in bits 13-15).
pub const SLOT_LENGTH_WORD: usize = 2;
/// Size of a forward pointer's body (page u32, slot u16), and so the
/// smallest allocation any tuple gets.
pub const FORWARD_LEN: usize = 6;
/// The bytes a dead slot is claimed with before it is turned back into a
/// forward pointer (rollback of a delete of a moved tuple).
pub const FORWARD_PLACEHOLDER: [u8; FORWARD_LEN] = [0; FORWARD_LEN];
/// The largest tuple a heap page holds (an empty page, one slot).
pub const MAX_TUPLE_LEN: usize = PAGE_SIZE - HEADER_SIZE - SLOT_SIZE;

const VALUE_MASK: u16 = 0x1FFF;
const TAG_SHIFT: u32 = 13;

/// Bytes a tuple of `len` bytes occupies in the tuple area.
pub const fn alloc_len(len: usize) -> usize {
    if len < FORWARD_LEN { FORWARD_LEN } else { len }
}

/// What a slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotKind {
    /// Unused; `insert` may reuse it.
    Free,
    /// Deleted; its number stays reserved until `free_slot`.
    Dead,
    /// A tuple's bytes.
    Tuple,
    /// A forward pointer to where the tuple moved.
    Forward,
}

impl SlotKind {
    fn from_tag(tag: u16) -> Option<SlotKind> {
        Some(match tag {
            0 => SlotKind::Free,
            1 => SlotKind::Dead,
            2 => SlotKind::Tuple,
            3 => SlotKind::Forward,
            _ => return None,
        })
    }

    fn tag(self) -> u16 {
        match self {
            SlotKind::Free => 0,
            SlotKind::Dead => 1,
            SlotKind::Tuple => 2,
            SlotKind::Forward => 3,
        }
    }

    /// Lower-case name, as printed by the dump.
    pub fn name(self) -> &'static str {
        match self {
            SlotKind::Free => "free",
            SlotKind::Dead => "dead",
            SlotKind::Tuple => "tuple",
            SlotKind::Forward => "forward",
        }
    }
}

/// Flags stored with a tuple (top bits of the slot's length word).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TupleFlags(u8);

impl TupleFlags {
    /// No flags: an ordinary tuple stored whole on this page.
    pub const NONE: TupleFlags = TupleFlags(0);
    /// The tuple's bytes are an [`OverflowHead`]: the value lives in a chain
    /// of overflow pages.
    pub const OVERFLOW_HEAD: TupleFlags = TupleFlags(0b001);
    /// The tuple was moved here by an update; its stable address is a forward
    /// slot elsewhere, so scans skip it here and reach it through that slot.
    pub const MOVED_IN: TupleFlags = TupleFlags(0b010);
    const ALL: u8 = 0b011;

    /// Whether every flag in `other` is set.
    pub fn contains(self, other: TupleFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two flag sets.
    pub fn union(self, other: TupleFlags) -> TupleFlags {
        TupleFlags(self.0 | other.0)
    }

    /// The raw bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Flags from raw bits, or `None` if an unknown bit is set.
    pub fn from_bits(bits: u8) -> Option<TupleFlags> {
        (bits & !Self::ALL == 0).then_some(TupleFlags(bits))
    }
}

/// A decoded slot directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotEntry {
    /// What the slot holds.
    pub kind: SlotKind,
    /// Offset of its bytes in the page (zero for free/dead slots).
    pub offset: u16,
    /// Length of its bytes (zero for free/dead slots).
    pub len: u16,
    /// Tuple flags.
    pub flags: TupleFlags,
}

impl SlotEntry {
    const FREE: SlotEntry = SlotEntry {
        kind: SlotKind::Free,
        offset: 0,
        len: 0,
        flags: TupleFlags::NONE,
    };

    /// Bytes this slot occupies in the tuple area.
    pub fn alloc(&self) -> usize {
        match self.kind {
            SlotKind::Tuple | SlotKind::Forward => alloc_len(usize::from(self.len)),
            SlotKind::Free | SlotKind::Dead => 0,
        }
    }

    fn encode(&self) -> [u8; SLOT_SIZE] {
        let w0 = (self.kind.tag() << TAG_SHIFT) | (self.offset & VALUE_MASK);
        let w1 = (u16::from(self.flags.bits()) << TAG_SHIFT) | (self.len & VALUE_MASK);
        let mut out = [0u8; SLOT_SIZE];
        put_u16(&mut out, SLOT_OFFSET_WORD, w0);
        put_u16(&mut out, SLOT_LENGTH_WORD, w1);
        out
    }
}

/// A slot's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotContent<'a> {
    /// Unused slot.
    Free,
    /// Deleted tuple; number reserved.
    Dead,
    /// Tuple bytes and flags.
    Tuple {
        /// The tuple's bytes (an encoded [`OverflowHead`] when flagged so).
        bytes: &'a [u8],
        /// Its flags.
        flags: TupleFlags,
    },
    /// The tuple moved to this address.
    Forward(TupleId),
}

/// Whether a tuple of some length fits on a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// It fits in the contiguous free space now.
    Now,
    /// It fits once the page is compacted.
    AfterCompaction,
    /// It does not fit on this page.
    No,
}

/// One tuple moved by [`SlottedPage::compact`]; the list is what the WAL's
/// compaction record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// The slot whose bytes moved (its number did not change).
    pub slot: SlotId,
    /// Offset before compaction.
    pub old_offset: u16,
    /// Offset after compaction.
    pub new_offset: u16,
    /// Bytes moved (the slot's allocation).
    pub len: u16,
}

/// A heap page over borrowed or owned bytes: `SlottedPage<&[u8]>` reads,
/// `SlottedPage<&mut [u8]>` also changes it.
#[derive(Debug)]
pub struct SlottedPage<B> {
    bytes: B,
    page_id: PageId,
}

impl<B: AsRef<[u8]>> SlottedPage<B> {
    /// Opens page `expected` as a heap page, checking its header and bounds
    /// (not the checksum: see [`crate::page::verify`], nor every slot: see
    /// [`SlottedPage::validate`]; each slot is bounds-checked when read).
    pub fn open(bytes: B, expected: PageId) -> Result<Self, PageError> {
        let header = PageHeader::read(bytes.as_ref(), expected)?;
        if header.page_type != PageType::Heap {
            return Err(PageError::WrongPageType {
                page_id: expected,
                expected: PageType::Heap.name(),
                found: header.page_type.name(),
            });
        }
        Ok(SlottedPage {
            bytes,
            page_id: expected,
        })
    }

    /// The underlying bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> B {
        self.bytes
    }

    /// This page's id.
    pub fn page_id(&self) -> PageId {
        self.page_id
    }

    fn field(&self, off: usize) -> usize {
        usize::from(get_u16(self.bytes(), off))
    }

    /// LSN of the last change.
    pub fn lsn(&self) -> Lsn {
        Lsn(crate::page::header::get_u64(self.bytes(), offsets::LSN))
    }

    /// Number of slot directory entries.
    pub fn slot_count(&self) -> u16 {
        get_u16(self.bytes(), offsets::SLOT_COUNT)
    }

    fn lower(&self) -> usize {
        self.field(offsets::LOWER)
    }

    fn upper(&self) -> usize {
        self.field(offsets::UPPER)
    }

    fn frag(&self) -> usize {
        self.field(offsets::FRAG_BYTES)
    }

    fn free_hint(&self) -> u16 {
        get_u16(self.bytes(), offsets::FREE_HINT)
    }

    /// Contiguous free bytes between the slot directory and the tuples.
    pub fn contiguous_free(&self) -> usize {
        self.upper().saturating_sub(self.lower())
    }

    /// All free bytes: contiguous plus fragmented.
    pub fn total_free(&self) -> usize {
        self.contiguous_free() + self.frag()
    }

    fn needs_new_slot(&self) -> bool {
        self.first_free_slot().is_none()
    }

    /// Bytes a new tuple of `len` bytes takes on this page: its allocation,
    /// plus a slot entry when no free slot can be reused.
    pub fn fit_need(&self, len: usize) -> usize {
        let slot = if self.needs_new_slot() { SLOT_SIZE } else { 0 };
        alloc_len(len) + slot
    }

    /// Whether a new tuple of `len` bytes fits (counting a new slot entry
    /// when no free slot can be reused). The free space map asks this
    /// before trusting its own hint.
    pub fn fit(&self, len: usize) -> Fit {
        if len > MAX_TUPLE_LEN {
            return Fit::No;
        }
        let need = self.fit_need(len);
        if need <= self.contiguous_free() {
            Fit::Now
        } else if need <= self.total_free() {
            Fit::AfterCompaction
        } else {
            Fit::No
        }
    }

    /// Decodes slot `slot`, checking it lies inside the page.
    pub fn slot(&self, slot: SlotId) -> Result<SlotEntry, PageError> {
        let count = self.slot_count();
        if slot.0 >= count {
            return Err(PageError::NoSuchSlot {
                slot,
                slot_count: count,
            });
        }
        let at = HEADER_SIZE + SLOT_SIZE * usize::from(slot.0);
        let raw = self
            .bytes()
            .get(at..at + SLOT_SIZE)
            .ok_or_else(|| corrupted(self.page_id, at, "slot directory runs off the page"))?;
        let (w0, w1) = (
            get_u16(raw, SLOT_OFFSET_WORD),
            get_u16(raw, SLOT_LENGTH_WORD),
        );
        let kind = SlotKind::from_tag(w0 >> TAG_SHIFT)
            .ok_or_else(|| corrupted(self.page_id, at, format!("slot {slot}: unknown kind")))?;
        let flags = TupleFlags::from_bits((w1 >> TAG_SHIFT) as u8).ok_or_else(|| {
            corrupted(self.page_id, at + 2, format!("slot {slot}: unknown flags"))
        })?;
        let entry = SlotEntry {
            kind,
            offset: w0 & VALUE_MASK,
            len: w1 & VALUE_MASK,
            flags,
        };
        self.check_entry(slot, at, &entry)?;
        Ok(entry)
    }

    fn check_entry(&self, slot: SlotId, at: usize, e: &SlotEntry) -> Result<(), PageError> {
        let bad = |reason: String| {
            Err(corrupted(
                self.page_id,
                at,
                format!("slot {slot}: {reason}"),
            ))
        };
        match e.kind {
            SlotKind::Free | SlotKind::Dead => {
                if e.offset != 0 || e.len != 0 || e.flags != TupleFlags::NONE {
                    return bad(format!(
                        "{} slot with offset/length/flags set",
                        e.kind.name()
                    ));
                }
            }
            SlotKind::Tuple | SlotKind::Forward => {
                let (off, len) = (usize::from(e.offset), usize::from(e.len));
                if off < self.upper() || off + e.alloc() > PAGE_SIZE {
                    return bad(format!(
                        "bytes {off}..{} outside the tuple area {}..{PAGE_SIZE}",
                        off + e.alloc(),
                        self.upper()
                    ));
                }
                if e.kind == SlotKind::Forward
                    && (len != FORWARD_LEN || e.flags != TupleFlags::NONE)
                {
                    return bad(format!("forward slot of length {len} with flags"));
                }
                if e.flags.contains(TupleFlags::OVERFLOW_HEAD) && len != OverflowHead::SIZE {
                    return bad(format!("overflow head of length {len}"));
                }
                if len > MAX_TUPLE_LEN {
                    return bad(format!("length {len} exceeds {MAX_TUPLE_LEN}"));
                }
            }
        }
        Ok(())
    }

    /// Reads slot `slot`'s contents.
    pub fn get(&self, slot: SlotId) -> Result<SlotContent<'_>, PageError> {
        let e = self.slot(slot)?;
        let (off, len) = (usize::from(e.offset), usize::from(e.len));
        Ok(match e.kind {
            SlotKind::Free => SlotContent::Free,
            SlotKind::Dead => SlotContent::Dead,
            SlotKind::Tuple => SlotContent::Tuple {
                bytes: &self.bytes()[off..off + len],
                flags: e.flags,
            },
            SlotKind::Forward => {
                let b = &self.bytes()[off..off + FORWARD_LEN];
                SlotContent::Forward(TupleId::new(PageId(get_u32(b, 0)), SlotId(get_u16(b, 4))))
            }
        })
    }

    /// The bytes of the tuple in `slot`, which must be a tuple slot.
    pub fn tuple(&self, slot: SlotId) -> Result<&[u8], PageError> {
        match self.get(slot)? {
            SlotContent::Tuple { bytes, .. } => Ok(bytes),
            other => Err(PageError::SlotNotLive {
                slot,
                state: content_name(&other),
            }),
        }
    }

    /// Every slot with its contents, in slot order.
    pub fn slots(&self) -> impl Iterator<Item = (SlotId, Result<SlotContent<'_>, PageError>)> {
        (0..self.slot_count()).map(move |s| (SlotId(s), self.get(SlotId(s))))
    }

    /// The slot the next [`insert`](SlottedPage::insert) will use: the lowest
    /// free slot, or a new one at the end. The heap logs this slot number
    /// before it inserts.
    pub fn next_insert_slot(&self) -> SlotId {
        self.first_free_slot().unwrap_or(SlotId(self.slot_count()))
    }

    /// Where a run of new tuples of lengths `lens` goes when inserted one
    /// after another into consecutive slots from [`next_insert_slot`]:
    /// that slot and how many of the tuples fit, from the first, in the
    /// contiguous free space less `reserved` bytes (held for running
    /// transactions' rollbacks), without compaction. The run stops where
    /// the next slot would not follow the previous one: at a slot in use
    /// after reused free ones. [`insert_run_at`] inserts such a run.
    ///
    /// [`next_insert_slot`]: SlottedPage::next_insert_slot
    /// [`insert_run_at`]: SlottedPage::insert_run_at
    pub fn plan_run(
        &self,
        lens: impl IntoIterator<Item = usize>,
        reserved: usize,
    ) -> (SlotId, u16) {
        let first = self.next_insert_slot();
        let mut room = self.contiguous_free().saturating_sub(reserved);
        let count = self.slot_count();
        let mut n: u16 = 0;
        for len in lens {
            let Some(slot) = first.0.checked_add(n) else {
                break;
            };
            let need = match slot < count {
                // A slot in the directory must be free to be reused.
                true if matches!(self.slot(SlotId(slot)), Ok(e) if e.kind == SlotKind::Free) => {
                    alloc_len(len)
                }
                true => break,
                false => alloc_len(len) + SLOT_SIZE,
            };
            if len > MAX_TUPLE_LEN || need > room {
                break;
            }
            room -= need;
            n += 1;
        }
        (first, n)
    }

    fn first_free_slot(&self) -> Option<SlotId> {
        (self.free_hint()..self.slot_count())
            .map(SlotId)
            .find(|&s| matches!(self.slot(s), Ok(e) if e.kind == SlotKind::Free))
    }

    /// Space metrics of this page.
    pub fn stats(&self) -> PageStats {
        let mut st = PageStats {
            pages: 1,
            free_bytes: self.total_free() as u64,
            contiguous_free_bytes: self.contiguous_free() as u64,
            fragmented_bytes: self.frag() as u64,
            ..PageStats::default()
        };
        for (_, content) in self.slots() {
            match content {
                Ok(SlotContent::Tuple { bytes, .. }) => {
                    st.live_tuples += 1;
                    st.tuple_bytes += bytes.len() as u64;
                }
                Ok(SlotContent::Forward(_)) => st.forward_slots += 1,
                Ok(SlotContent::Dead) => st.dead_slots += 1,
                Ok(SlotContent::Free) => st.free_slots += 1,
                Err(_) => st.corrupt_slots += 1,
            }
        }
        st
    }

    /// Checks every structural fact listed in the module docs. Called on
    /// every page read from disk (with the checksum) and after each step of
    /// the property tests.
    pub fn validate(&self) -> Result<(), PageError> {
        let next = get_u32(self.bytes(), offsets::NEXT_PAGE);
        if next != NO_PAGE {
            return Err(corrupted(
                self.page_id,
                offsets::NEXT_PAGE,
                format!("next_page is {next}, not NO_PAGE: only overflow pages chain"),
            ));
        }
        let mut allocs: Vec<(usize, usize, SlotId)> = Vec::with_capacity(self.slot_count().into());
        for s in (0..self.slot_count()).map(SlotId) {
            let e = self.slot(s)?;
            if e.kind == SlotKind::Free && s.0 < self.free_hint() {
                return Err(corrupted(
                    self.page_id,
                    offsets::FREE_HINT,
                    format!(
                        "slot {s} is free but below the free hint {}",
                        self.free_hint()
                    ),
                ));
            }
            if e.flags.contains(TupleFlags::OVERFLOW_HEAD) {
                OverflowHead::decode(self.tuple(s)?, self.page_id)?;
            }
            if e.alloc() > 0 {
                allocs.push((usize::from(e.offset), e.alloc(), s));
            }
        }
        if let Some(last) = self.slot_count().checked_sub(1)
            && self.slot(SlotId(last))?.kind == SlotKind::Free
        {
            return Err(corrupted(
                self.page_id,
                offsets::SLOT_COUNT,
                format!("last slot {last} is free (should have been trimmed)"),
            ));
        }
        allocs.sort_unstable();
        for pair in allocs.windows(2) {
            let ((a_off, a_len, a), (b_off, _, b)) = (pair[0], pair[1]);
            if a_off + a_len > b_off {
                return Err(corrupted(
                    self.page_id,
                    b_off,
                    format!("slot {b}'s bytes overlap slot {a}'s"),
                ));
            }
        }
        let used: usize = allocs.iter().map(|a| a.1).sum();
        let expect_frag = (PAGE_SIZE - self.upper()).saturating_sub(used);
        if expect_frag != self.frag() {
            return Err(corrupted(
                self.page_id,
                offsets::FRAG_BYTES,
                format!(
                    "fragmented-bytes count {} disagrees with the slots ({expect_frag})",
                    self.frag()
                ),
            ));
        }
        Ok(())
    }
}

/// The dump's name for a slot content.
pub(crate) fn content_name(c: &SlotContent<'_>) -> &'static str {
    match c {
        SlotContent::Free => "free",
        SlotContent::Dead => "dead",
        SlotContent::Tuple { .. } => "tuple",
        SlotContent::Forward(_) => "a forward pointer",
    }
}

mod write;

#[cfg(test)]
mod tests;
