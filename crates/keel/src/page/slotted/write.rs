//! Changing a slotted page: insert, update, forward, delete, free, compact.
//!
//! Each operation checks its preconditions (slot state, room) before it
//! writes a byte, so a failed call leaves the page unchanged. Each keeps the
//! facts listed in the parent module's docs; the property test in `tests.rs`
//! checks them after every step.

use super::*;
use crate::page::header::{init_page, put_u16, put_u32};

impl<B: AsRef<[u8]> + AsMut<[u8]>> SlottedPage<B> {
    /// Formats `bytes` as an empty heap page with id `page_id`.
    pub fn init(mut bytes: B, page_id: PageId) -> Result<Self, PageError> {
        init_page(bytes.as_mut(), page_id, PageType::Heap)?;
        Ok(SlottedPage { bytes, page_id })
    }

    fn set_field(&mut self, off: usize, v: usize) {
        debug_assert!(
            v <= usize::from(u16::MAX),
            "page field overflow (inv. 1: every field fits its width)"
        );
        put_u16(self.bytes.as_mut(), off, v as u16);
    }

    /// Sets the page LSN (after the change was logged, invariant 4).
    pub fn set_lsn(&mut self, lsn: Lsn) {
        crate::page::header::put_u64(self.bytes.as_mut(), offsets::LSN, lsn.0);
    }

    fn write_slot(&mut self, slot: SlotId, e: &SlotEntry) {
        let at = HEADER_SIZE + SLOT_SIZE * usize::from(slot.0);
        self.bytes.as_mut()[at..at + SLOT_SIZE].copy_from_slice(&e.encode());
    }

    /// Claims `alloc` bytes at the top of the free space; the caller checked
    /// they are there.
    fn claim(&mut self, alloc: usize) -> usize {
        let off = self.upper() - alloc;
        self.set_field(offsets::UPPER, off);
        off
    }

    fn release(&mut self, e: &SlotEntry) {
        if e.alloc() == 0 {
            return;
        }
        if usize::from(e.offset) == self.upper() {
            // The lowest allocation: give it straight back to contiguous space.
            self.set_field(offsets::UPPER, self.upper() + e.alloc());
        } else {
            self.set_field(offsets::FRAG_BYTES, self.frag() + e.alloc());
        }
    }

    fn does_not_fit(&self, needed: usize) -> PageError {
        PageError::DoesNotFit {
            needed,
            contiguous: self.contiguous_free(),
            after_compaction: self.total_free(),
        }
    }

    fn store(&mut self, slot: SlotId, data: &[u8], flags: TupleFlags) {
        let off = self.claim(alloc_len(data.len()));
        self.bytes.as_mut()[off..off + data.len()].copy_from_slice(data);
        let entry = SlotEntry {
            kind: SlotKind::Tuple,
            offset: off as u16,
            len: data.len() as u16,
            flags,
        };
        self.write_slot(slot, &entry);
    }

    fn check_tuple_len(len: usize) -> Result<(), PageError> {
        if len > MAX_TUPLE_LEN {
            return Err(PageError::TupleTooLarge {
                len,
                max: MAX_TUPLE_LEN,
            });
        }
        Ok(())
    }

    /// Inserts a tuple into the lowest free slot, or a new slot at the end,
    /// and returns its slot number. Fails with `DoesNotFit` when there is no
    /// contiguous room (its `after_compaction` says whether compacting helps).
    pub fn insert(&mut self, data: &[u8], flags: TupleFlags) -> Result<SlotId, PageError> {
        Self::check_tuple_len(data.len())?;
        let reuse = self.first_free_slot();
        let need = alloc_len(data.len()) + if reuse.is_some() { 0 } else { SLOT_SIZE };
        if need > self.contiguous_free() {
            return Err(self.does_not_fit(need));
        }
        let slot = match reuse {
            Some(s) => s,
            None => self.push_slot(),
        };
        self.store(slot, data, flags);
        self.set_field(offsets::FREE_HINT, usize::from(slot.0) + 1);
        Ok(slot)
    }

    /// Appends a free slot entry (room checked by the caller).
    fn push_slot(&mut self) -> SlotId {
        let slot = SlotId(self.slot_count());
        self.set_field(offsets::SLOT_COUNT, usize::from(slot.0) + 1);
        self.set_field(offsets::LOWER, self.lower() + SLOT_SIZE);
        self.write_slot(slot, &SlotEntry::FREE);
        slot
    }

    /// Inserts a tuple at a given slot, which must be free, dead, or past the
    /// end of the directory (the directory grows with free slots). Redo of an
    /// insert and undo of a delete use this to restore the exact address.
    pub fn insert_at(
        &mut self,
        slot: SlotId,
        data: &[u8],
        flags: TupleFlags,
    ) -> Result<(), PageError> {
        Self::check_tuple_len(data.len())?;
        let count = self.slot_count();
        if slot.0 < count {
            let e = self.slot(slot)?;
            if !matches!(e.kind, SlotKind::Free | SlotKind::Dead) {
                return Err(PageError::SlotNotLive {
                    slot,
                    state: "in use",
                });
            }
            let need = alloc_len(data.len());
            if need > self.contiguous_free() {
                return Err(self.does_not_fit(need));
            }
        } else {
            let new_slots = usize::from(slot.0 - count) + 1;
            let need = alloc_len(data.len()) + new_slots * SLOT_SIZE;
            if need > self.contiguous_free() {
                return Err(self.does_not_fit(need));
            }
            for _ in 0..new_slots {
                self.push_slot();
            }
            if new_slots > 1 {
                // The slots between the old end and `slot` are free.
                let hint = self.free_hint().min(count);
                self.set_field(offsets::FREE_HINT, usize::from(hint));
            }
        }
        self.store(slot, data, flags);
        if self.free_hint() == slot.0 {
            // Every slot below the hint is in use, and now this one too.
            self.set_field(offsets::FREE_HINT, usize::from(slot.0) + 1);
        }
        Ok(())
    }

    /// Inserts `tuples` with `flags` into consecutive slots from `first`,
    /// each as [`insert_at`] does: the redo of a heap-multi-insert record.
    /// Each slot must be free, dead or past the directory's end, the last
    /// must exist (at most `u16::MAX`), and all the tuples must fit in the
    /// contiguous free space together: this is checked for the whole run
    /// before the first byte is written, so a refused run leaves the page
    /// unchanged.
    ///
    /// [`insert_at`]: SlottedPage::insert_at
    pub fn insert_run_at<'t, I>(
        &mut self,
        first: SlotId,
        flags: TupleFlags,
        tuples: I,
    ) -> Result<(), PageError>
    where
        I: IntoIterator<Item = &'t [u8]>,
        I::IntoIter: Clone,
    {
        let tuples = tuples.into_iter();
        let count = usize::from(self.slot_count());
        let (mut need, mut end) = (0usize, count);
        for (i, data) in tuples.clone().enumerate() {
            Self::check_tuple_len(data.len())?;
            let at = usize::from(first.0) + i;
            let slot = u16::try_from(at).map(SlotId).map_err(|_| {
                corrupted(
                    self.page_id,
                    HEADER_SIZE,
                    format!("a run of tuples from slot {first} passes slot {}", u16::MAX),
                )
            })?;
            if at < count {
                let e = self.slot(slot)?;
                if !matches!(e.kind, SlotKind::Free | SlotKind::Dead) {
                    return Err(PageError::SlotNotLive {
                        slot,
                        state: "in use",
                    });
                }
            } else {
                end = at + 1;
            }
            need += alloc_len(data.len());
        }
        need += (end - count) * SLOT_SIZE;
        if need > self.contiguous_free() {
            return Err(self.does_not_fit(need));
        }
        for (slot, data) in (first.0..).zip(tuples) {
            self.insert_at(SlotId(slot), data, flags)?;
        }
        Ok(())
    }

    /// Removes the tuples in the `count` slots from `first` and frees the
    /// slots (delete, then [`free_slot`]), the highest first: the undo of a
    /// run [`insert_run_at`] inserted. Each slot must hold a tuple; this is
    /// checked for all of them before anything changes.
    ///
    /// [`free_slot`]: SlottedPage::free_slot
    /// [`insert_run_at`]: SlottedPage::insert_run_at
    pub fn remove_run(&mut self, first: SlotId, count: u16) -> Result<(), PageError> {
        let slots = (0..count).rev().map(|i| first.0.checked_add(i).map(SlotId));
        for slot in slots.clone() {
            let slot = slot.ok_or_else(|| {
                corrupted(
                    self.page_id,
                    HEADER_SIZE,
                    format!(
                        "a run of {count} slots from slot {first} passes slot {}",
                        u16::MAX
                    ),
                )
            })?;
            let e = self.slot(slot)?;
            if e.kind != SlotKind::Tuple {
                return Err(PageError::SlotNotLive {
                    slot,
                    state: e.kind.name(),
                });
            }
        }
        for slot in slots.flatten() {
            self.delete(slot)?;
            self.free_slot(slot)?;
        }
        Ok(())
    }

    /// Replaces the contents of a tuple or forward slot with a tuple of new
    /// bytes (the slot number never changes). A shrinking update rewrites the
    /// bytes where they are; a growing one takes new room from the contiguous
    /// free space and releases the old bytes afterwards; when only the old
    /// bytes make the room, it releases them, compacts the page and stores
    /// the new bytes. It fails with `DoesNotFit` (changing nothing) only when
    /// the page cannot hold the new bytes even then; the heap then moves the
    /// tuple to another page and leaves a forward pointer here.
    pub fn update(
        &mut self,
        slot: SlotId,
        data: &[u8],
        flags: TupleFlags,
    ) -> Result<(), PageError> {
        Self::check_tuple_len(data.len())?;
        let old = self.slot(slot)?;
        if !matches!(old.kind, SlotKind::Tuple | SlotKind::Forward) {
            return Err(PageError::SlotNotLive {
                slot,
                state: old.kind.name(),
            });
        }
        let new_alloc = alloc_len(data.len());
        if new_alloc <= old.alloc() {
            let off = usize::from(old.offset);
            self.bytes.as_mut()[off..off + data.len()].copy_from_slice(data);
            self.set_field(offsets::FRAG_BYTES, self.frag() + old.alloc() - new_alloc);
            let entry = SlotEntry {
                kind: SlotKind::Tuple,
                offset: old.offset,
                len: data.len() as u16,
                flags,
            };
            self.write_slot(slot, &entry);
            return Ok(());
        }
        if new_alloc <= self.contiguous_free() {
            self.release(&old);
            self.store(slot, data, flags);
            return Ok(());
        }
        if new_alloc > self.total_free() + old.alloc() {
            return Err(self.does_not_fit(new_alloc));
        }
        // Only the tuple's own old bytes make the room: give them up first,
        // compact, then store. (Undoing a shrinking update relies on this:
        // the page may have no other room left.) Deterministic, so redo of
        // the same record repeats it exactly.
        self.release(&old);
        let dead = SlotEntry {
            kind: SlotKind::Dead,
            ..SlotEntry::FREE
        };
        self.write_slot(slot, &dead);
        self.compact();
        self.store(slot, data, flags);
        Ok(())
    }

    /// Replaces a tuple (or an older forward pointer) with a forward pointer
    /// to `target`, always in place: every allocation is at least
    /// [`FORWARD_LEN`] bytes.
    pub fn set_forward(&mut self, slot: SlotId, target: TupleId) -> Result<(), PageError> {
        let old = self.slot(slot)?;
        if !matches!(old.kind, SlotKind::Tuple | SlotKind::Forward) {
            return Err(PageError::SlotNotLive {
                slot,
                state: old.kind.name(),
            });
        }
        let off = usize::from(old.offset);
        let body = &mut self.bytes.as_mut()[off..off + FORWARD_LEN];
        put_u32(body, 0, target.page.0);
        put_u16(body, 4, target.slot.0);
        self.set_field(offsets::FRAG_BYTES, self.frag() + old.alloc() - FORWARD_LEN);
        let entry = SlotEntry {
            kind: SlotKind::Forward,
            offset: old.offset,
            len: FORWARD_LEN as u16,
            flags: TupleFlags::NONE,
        };
        self.write_slot(slot, &entry);
        Ok(())
    }

    /// Deletes the tuple or forward pointer in `slot`: its bytes are
    /// reclaimed, its number stays reserved (the slot becomes dead).
    pub fn delete(&mut self, slot: SlotId) -> Result<(), PageError> {
        let old = self.slot(slot)?;
        if !matches!(old.kind, SlotKind::Tuple | SlotKind::Forward) {
            return Err(PageError::SlotNotLive {
                slot,
                state: old.kind.name(),
            });
        }
        self.release(&old);
        let dead = SlotEntry {
            kind: SlotKind::Dead,
            ..SlotEntry::FREE
        };
        self.write_slot(slot, &dead);
        Ok(())
    }

    /// Makes a dead slot free for reuse; trailing free slots are trimmed from
    /// the directory.
    pub fn free_slot(&mut self, slot: SlotId) -> Result<(), PageError> {
        let old = self.slot(slot)?;
        if old.kind != SlotKind::Dead {
            return Err(PageError::SlotNotLive {
                slot,
                state: old.kind.name(),
            });
        }
        self.write_slot(slot, &SlotEntry::FREE);
        let hint = self.free_hint().min(slot.0);
        let mut count = self.slot_count();
        while count > 0 && matches!(self.slot(SlotId(count - 1)), Ok(e) if e.kind == SlotKind::Free)
        {
            count -= 1;
        }
        let trimmed = usize::from(self.slot_count() - count);
        self.set_field(offsets::SLOT_COUNT, usize::from(count));
        self.set_field(offsets::LOWER, self.lower() - trimmed * SLOT_SIZE);
        self.set_field(offsets::FREE_HINT, usize::from(hint.min(count)));
        Ok(())
    }

    /// Coalesces all free space into one contiguous gap and returns what
    /// moved. Slot numbers never change (invariant 12).
    ///
    /// Allocations are moved in descending offset order, each to just below
    /// the previous one. A moved allocation's new offset is never below its
    /// old one (everything packed above it came from above it), so a copy
    /// can only overlap its own old bytes (handled by `copy_within`), never a
    /// tuple not yet moved. Compaction is deterministic: the same page always
    /// yields the same result and relocation list.
    pub fn compact(&mut self) -> Vec<Relocation> {
        let mut allocs: Vec<(u16, SlotId, SlotEntry)> = (0..self.slot_count())
            .map(SlotId)
            .filter_map(|s| self.slot(s).ok().map(|e| (e.offset, s, e)))
            .filter(|(_, _, e)| e.alloc() > 0)
            .collect();
        allocs.sort_unstable_by_key(|a| std::cmp::Reverse(a.0));
        let mut top = PAGE_SIZE;
        let mut moved = Vec::new();
        for (old_off, slot, e) in allocs {
            let len = e.alloc();
            let new_off = top - len;
            debug_assert!(
                new_off >= usize::from(old_off),
                "compaction moved a tuple down (inv. 12)"
            );
            if new_off != usize::from(old_off) {
                let src = usize::from(old_off);
                self.bytes.as_mut().copy_within(src..src + len, new_off);
                self.write_slot(
                    slot,
                    &SlotEntry {
                        offset: new_off as u16,
                        ..e
                    },
                );
                moved.push(Relocation {
                    slot,
                    old_offset: old_off,
                    new_offset: new_off as u16,
                    len: len as u16,
                });
            }
            top = new_off;
        }
        self.set_field(offsets::UPPER, top);
        self.set_field(offsets::FRAG_BYTES, 0);
        // Zero the reclaimed gap so stale tuple bytes never leak into dumps
        // or page images.
        let lower = self.lower();
        self.bytes.as_mut()[lower..top].fill(0);
        moved
    }
}
