//! Applying page-changing records to pages: one function for doing, redoing
//! and compensating.
//!
//! Every change the heap makes to a page is first expressed as a
//! [`Payload`], logged, and then applied to the page by [`apply`]. Redo calls
//! the same [`apply`] with the record read back from the log, and rollback
//! applies the [`undo_action`] of a record (after logging it in a CLR). So the
//! page a crash recovery rebuilds is, byte for byte, the page the running
//! engine built: there is no second implementation to drift from the first.
//! (A tree insert at run time, [`apply_tree_insert_at`], skips only the
//! search for its index, which its writer has just made; the node insert
//! is the one redo runs.)
//!
//! All page operations used here are deterministic functions of the page
//! and the payload (compaction included), which is what makes replay exact.
//! [`apply`] sets the page LSN; the caller decides *whether* to apply (redo
//! only when the page LSN is below the record's, invariant 5/8).

use crate::error::PageError;
use crate::page::{
    FORWARD_PLACEHOLDER, OverflowPage, PAGE_SIZE, PageType, Relocation, SlotContent, SlottedPage,
    TreePage, TupleFlags, init_page, set_page_lsn,
};
use crate::types::{Lsn, PageId};
use crate::wal::payload::{Payload, SlotImage};

/// Applies a page-changing payload to page `page_id` (its bytes), as the
/// record at `lsn`, and sets the page LSN to `lsn`.
pub fn apply(
    payload: &Payload,
    page: &mut [u8],
    page_id: PageId,
    lsn: Lsn,
) -> Result<(), PageError> {
    apply_action(payload, page, page_id)?;
    set_page_lsn(page, lsn)
}

/// [`apply`] of a `tree-insert` of `(key, rest)` made at run time into
/// node `page_id`, at index `at`: where the writer's
/// [`search`](TreePage::search) of the node placed `key` (absent), under
/// the exclusive latch it has held since, over bytes
/// [`TreePage::open`] accepted. So the node is not checked or searched a
/// second time; redo and rollback, which know none of that, apply the
/// record with [`apply`], which does both. The bytes are those `apply`
/// gives: the same insert at the index its search finds.
pub(crate) fn apply_tree_insert_at(
    page: &mut [u8],
    page_id: PageId,
    at: usize,
    key: &[u8],
    rest: &[u8],
    lsn: Lsn,
) -> Result<(), PageError> {
    debug_assert_eq!(
        TreePage::open(&*page, page_id).and_then(|p| p.search(key)),
        Ok(Err(at)),
        "a tree insert at the index a search of the node gives"
    );
    TreePage::reopen(&mut *page, page_id).insert(at, key, rest)?;
    set_page_lsn(page, lsn)
}

fn heap(page: &mut [u8], page_id: PageId) -> Result<SlottedPage<&mut [u8]>, PageError> {
    SlottedPage::open(page, page_id)
}

/// A whole page's image over the page.
fn put_image(page: &mut [u8], page_id: PageId, image: &[u8]) -> Result<(), PageError> {
    if page.len() != PAGE_SIZE {
        return Err(PageError::Corrupted {
            page_id,
            offset: 0,
            reason: format!("page buffer of {} bytes", page.len()),
        });
    }
    page.copy_from_slice(image);
    Ok(())
}

/// Byte ranges of a `page-delta` over the page, each checked to fit.
fn put_ranges(
    page: &mut [u8],
    page_id: PageId,
    ranges: &[(u16, Vec<u8>)],
) -> Result<(), PageError> {
    for (offset, bytes) in ranges {
        let at = usize::from(*offset);
        let dest = page
            .get_mut(at..at + bytes.len())
            .ok_or_else(|| PageError::Corrupted {
                page_id,
                offset: at,
                reason: format!("delta of {} bytes runs off the page", bytes.len()),
            })?;
        dest.copy_from_slice(bytes);
    }
    Ok(())
}

/// Compacts the page; the tuples it moves must be those the log recorded.
fn compact(page: &mut [u8], page_id: PageId, logged: &[Relocation]) -> Result<(), PageError> {
    let moved = heap(page, page_id)?.compact();
    if moved != logged {
        return Err(PageError::Corrupted {
            page_id,
            offset: 0,
            reason: format!(
                "compaction moved {} tuples where the log says {}: redo diverged",
                moved.len(),
                logged.len()
            ),
        });
    }
    Ok(())
}

fn apply_action(payload: &Payload, page: &mut [u8], page_id: PageId) -> Result<(), PageError> {
    match payload {
        Payload::PageImage { image } => put_image(page, page_id, &image[..]),
        Payload::MultiPageImage { images } => match images.iter().find(|(p, _)| *p == page_id) {
            Some((_, image)) => put_image(page, page_id, &image[..]),
            None => Err(PageError::Corrupted {
                page_id,
                offset: 0,
                reason: "a multi-page-image record with no image of this page".into(),
            }),
        },
        Payload::TreeSplit {
            keep,
            sep,
            right,
            image,
        } => {
            if page_id == *right {
                put_image(page, page_id, &image[..])
            } else {
                TreePage::open(page, page_id)?.split_left(usize::from(*keep), sep, *right)
            }
        }
        Payload::PageDelta { ranges } => put_ranges(page, page_id, ranges),
        Payload::PageInit { page_type } => match page_type {
            PageType::Heap => SlottedPage::init(page, page_id).map(|_| ()),
            other => init_page(page, page_id, *other),
        },
        Payload::HeapInsert { slot, flags, tuple } => {
            heap(page, page_id)?.insert_at(*slot, tuple, *flags)
        }
        Payload::HeapMultiInsert {
            first,
            flags,
            tuples,
        } => heap(page, page_id)?.insert_run_at(*first, *flags, tuples.iter()),
        Payload::HeapMultiRemove { first, count } => {
            heap(page, page_id)?.remove_run(*first, *count)
        }
        Payload::HeapDelete { slot, .. } => heap(page, page_id)?.delete(*slot),
        Payload::HeapUpdate {
            slot,
            new_flags,
            new,
            ..
        } => {
            let mut p = heap(page, page_id)?;
            if matches!(p.get(*slot)?, SlotContent::Dead) {
                // Undo of a delete whose before-image was a tuple restored by
                // an update: claim the dead slot first.
                p.insert_at(*slot, new, *new_flags)
            } else {
                p.update(*slot, new, *new_flags)
            }
        }
        Payload::HeapForward { slot, target, .. } => {
            let mut p = heap(page, page_id)?;
            if matches!(p.get(*slot)?, SlotContent::Dead) {
                // Undo of a delete of a forward pointer: claim the dead slot
                // with the forward pointer's 6 bytes, then point it.
                p.insert_at(*slot, &FORWARD_PLACEHOLDER, TupleFlags::NONE)?;
            }
            p.set_forward(*slot, *target)
        }
        Payload::HeapFreeSlot { slot } => heap(page, page_id)?.free_slot(*slot),
        Payload::PageCompaction { relocations } => compact(page, page_id, relocations),
        Payload::OverflowWrite { index, next, chunk } => {
            OverflowPage::init(page, page_id, *index, chunk, *next).map(|_| ())
        }
        Payload::OverflowFree => init_page(page, page_id, PageType::Free),
        Payload::TreeInsert { key, rest } => {
            let mut p = TreePage::open(page, page_id)?;
            match p.search(key)? {
                Err(i) => p.insert(i, key, rest),
                Ok(_) => Err(diverged(page_id, "inserts a key the node already has")),
            }
        }
        Payload::TreeDelete { key, .. } => {
            let mut p = TreePage::open(page, page_id)?;
            match p.search(key)? {
                Ok(i) => p.remove(i),
                Err(_) => Err(diverged(page_id, "removes a key the node does not have")),
            }
        }
        Payload::TreeRootSwap {
            old,
            old_level,
            new,
            new_level,
        } => {
            if crate::page::tree::read_meta(page, page_id)? != (*old, *old_level) {
                return Err(diverged(
                    page_id,
                    "swaps a root the meta page does not name",
                ));
            }
            crate::page::tree::set_root(page, *new, *new_level);
            Ok(())
        }
        Payload::Compensation { action, .. } => apply_action(action, page, page_id),
        Payload::Padding { .. }
        | Payload::PageCheck { .. }
        | Payload::Begin
        | Payload::Commit { .. }
        | Payload::Abort
        | Payload::CheckpointBegin
        | Payload::CheckpointEnd { .. }
        | Payload::RelationCreate { .. }
        | Payload::RelationDrop { .. } => Err(PageError::Corrupted {
            page_id,
            offset: 0,
            reason: format!("a {} record does not change pages", payload.kind().name()),
        }),
    }
}

fn diverged(page_id: PageId, what: &str) -> PageError {
    PageError::Corrupted {
        page_id,
        offset: 0,
        reason: format!("a tree record {what}: redo diverged"),
    }
}

/// The action that reverses `payload` on its page, to be logged in a CLR and
/// applied with [`apply`]; `None` for records that are not undone.
pub fn undo_action(payload: &Payload) -> Option<Payload> {
    Some(match payload {
        Payload::HeapInsert { slot, .. } => undo_insert(*slot),
        Payload::HeapMultiInsert { first, tuples, .. } => Payload::HeapMultiRemove {
            first: *first,
            count: tuples.run_len(),
        },
        Payload::HeapDelete { slot, old } => restore(*slot, old, None),
        Payload::HeapUpdate {
            slot,
            old,
            new_flags,
            new,
        } => restore(
            *slot,
            old,
            Some(SlotImage::Tuple {
                flags: *new_flags,
                bytes: new.clone(),
            }),
        ),
        Payload::HeapForward { slot, target, old } => {
            restore(*slot, old, Some(SlotImage::Forward(*target)))
        }
        Payload::OverflowWrite { .. } => Payload::OverflowFree,
        _ => return None,
    })
}

/// The action that reverses an insert into `slot`: a one-slot
/// [`HeapMultiRemove`](Payload::HeapMultiRemove), which deletes the tuple
/// and frees its slot in one record, so a crash can never leave the
/// rolled-back insert's slot dead (its TupleId was never committed, so the
/// slot is free to reuse at once, as a rolled-back run's are).
pub fn undo_insert(slot: crate::types::SlotId) -> Payload {
    Payload::HeapMultiRemove {
        first: slot,
        count: 1,
    }
}

/// The action that puts `old` back into `slot`, whose current contents are
/// `current` (`None`: the slot is dead).
fn restore(slot: crate::types::SlotId, old: &SlotImage, current: Option<SlotImage>) -> Payload {
    let current = current.unwrap_or(SlotImage::Tuple {
        flags: TupleFlags::NONE,
        bytes: Vec::new(),
    });
    match old {
        SlotImage::Tuple { flags, bytes } => Payload::HeapUpdate {
            slot,
            old: current,
            new_flags: *flags,
            new: bytes.clone(),
        },
        SlotImage::Forward(target) => Payload::HeapForward {
            slot,
            target: *target,
            old: current,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::{Fit, verify_structure};
    use crate::types::{SlotId, TupleId};

    fn page() -> Vec<u8> {
        let mut b = vec![0u8; PAGE_SIZE];
        apply(
            &Payload::PageInit {
                page_type: PageType::Heap,
            },
            &mut b,
            PageId(4),
            Lsn(100),
        )
        .unwrap();
        b
    }

    /// A slot's contents in an owned, comparable form.
    fn content(b: &[u8], s: u16) -> String {
        let p = SlottedPage::open(b, PageId(4)).unwrap();
        format!("{:?}", p.get(SlotId(s)).unwrap())
    }

    fn tuple(bytes: &[u8]) -> SlotImage {
        SlotImage::Tuple {
            flags: TupleFlags::NONE,
            bytes: bytes.to_vec(),
        }
    }

    /// Applies each payload, then undoes them in reverse order; the page
    /// must end as it started (apart from the LSN): the undone insert's slot
    /// is freed, not left dead.
    #[test]
    fn every_heap_change_is_undone_by_its_undo_action() {
        let mut b = page();
        let mut lsn = 200;
        let mut step = |b: &mut Vec<u8>, p: &Payload| {
            lsn += 10;
            apply(p, b, PageId(4), Lsn(lsn)).unwrap();
            verify_structure(b, PageId(4)).unwrap();
        };
        let base = Payload::HeapInsert {
            slot: SlotId(0),
            flags: TupleFlags::NONE,
            tuple: b"base".to_vec(),
        };
        step(&mut b, &base);
        let start = b.clone();
        let changes = vec![
            Payload::HeapInsert {
                slot: SlotId(1),
                flags: TupleFlags::NONE,
                tuple: b"one".to_vec(),
            },
            Payload::HeapUpdate {
                slot: SlotId(0),
                old: tuple(b"base"),
                new_flags: TupleFlags::NONE,
                new: vec![7; 300],
            },
            Payload::HeapForward {
                slot: SlotId(0),
                target: TupleId::new(PageId(9), SlotId(2)),
                old: tuple(&[7; 300]),
            },
            Payload::HeapDelete {
                slot: SlotId(0),
                old: SlotImage::Forward(TupleId::new(PageId(9), SlotId(2))),
            },
            Payload::HeapDelete {
                slot: SlotId(1),
                old: tuple(b"one"),
            },
        ];
        for c in &changes {
            step(&mut b, c);
        }
        assert_eq!(content(&b, 0), "Dead");
        for c in changes.iter().rev() {
            let undo = undo_action(c).unwrap();
            step(
                &mut b,
                &Payload::Compensation {
                    undo_next: Lsn::ZERO,
                    action: Box::new(undo),
                },
            );
        }
        assert_eq!(content(&b, 0), content(&start, 0));
        // The undone insert freed its slot: the directory is back to one.
        let p = SlottedPage::open(&b[..], PageId(4)).unwrap();
        assert_eq!(p.slot_count(), 1);
    }

    #[test]
    fn redo_of_the_same_records_rebuilds_the_same_bytes() {
        let mut live = page();
        let mut log = Vec::new();
        let mut lsn = 1000;
        for i in 0..60u16 {
            let p = if i % 5 == 4 {
                Payload::HeapDelete {
                    slot: SlotId(i - 2),
                    old: tuple(&[0; 1]),
                }
            } else {
                Payload::HeapInsert {
                    slot: SlotId(i),
                    flags: TupleFlags::NONE,
                    tuple: vec![i as u8; 40 + usize::from(i)],
                }
            };
            lsn += 100;
            apply(&p, &mut live, PageId(4), Lsn(lsn)).unwrap();
            log.push((p, lsn));
        }
        let relocations = SlottedPage::open(live.clone(), PageId(4))
            .unwrap()
            .compact();
        lsn += 100;
        let compaction = Payload::PageCompaction { relocations };
        apply(&compaction, &mut live, PageId(4), Lsn(lsn)).unwrap();
        log.push((compaction, lsn));
        let mut replay = page();
        for (p, l) in &log {
            apply(p, &mut replay, PageId(4), Lsn(*l)).unwrap();
        }
        assert_eq!(replay, live);
        // A compaction that does not reproduce is an error, not silence.
        let wrong = Payload::PageCompaction {
            relocations: Vec::new(),
        };
        let mut again = page();
        for (p, l) in &log[..5] {
            apply(p, &mut again, PageId(4), Lsn(*l)).unwrap();
        }
        assert!(SlottedPage::open(&again[..], PageId(4)).unwrap().fit(10) == Fit::Now);
        let e = apply(&wrong, &mut again, PageId(4), Lsn(4)).unwrap_err();
        assert!(e.to_string().contains("redo diverged"), "{e}");
    }

    /// A multi-insert's undo action removes the whole run and frees its
    /// slots; a run that would not fit, or lands on a slot in use, is
    /// refused with the page unchanged.
    #[test]
    fn a_multi_insert_is_undone_whole_and_refused_whole() {
        let mut b = page();
        let one = Payload::HeapInsert {
            slot: SlotId(0),
            flags: TupleFlags::NONE,
            tuple: b"kept".to_vec(),
        };
        apply(&one, &mut b, PageId(4), Lsn(200)).unwrap();
        let start = b.clone();
        let mut tuples = crate::wal::TupleBatch::default();
        for i in 0..50u8 {
            tuples.push(&[i; 100]);
        }
        let run = Payload::HeapMultiInsert {
            first: SlotId(1),
            flags: TupleFlags::NONE,
            tuples,
        };
        apply(&run, &mut b, PageId(4), Lsn(300)).unwrap();
        verify_structure(&b, PageId(4)).unwrap();
        assert_eq!(
            content(&b, 50),
            format!(
                "{:?}",
                SlotContent::Tuple {
                    bytes: &[49; 100],
                    flags: TupleFlags::NONE
                }
            )
        );
        let undo = undo_action(&run).unwrap();
        assert_eq!(
            undo,
            Payload::HeapMultiRemove {
                first: SlotId(1),
                count: 50
            }
        );
        let clr = Payload::Compensation {
            undo_next: Lsn::ZERO,
            action: Box::new(undo),
        };
        apply(&clr, &mut b, PageId(4), Lsn(400)).unwrap();
        verify_structure(&b, PageId(4)).unwrap();
        let (now, then) = (
            SlottedPage::open(&b[..], PageId(4)).unwrap(),
            SlottedPage::open(&start[..], PageId(4)).unwrap(),
        );
        assert_eq!(now.slot_count(), 1);
        assert_eq!(now.contiguous_free(), then.contiguous_free());
        assert_eq!(content(&b, 0), content(&start, 0));
        // Refused whole: a run over the slot in use, a run too large.
        let before = b.clone();
        let mut over = crate::wal::TupleBatch::default();
        over.push(b"x");
        let taken = Payload::HeapMultiInsert {
            first: SlotId(0),
            flags: TupleFlags::NONE,
            tuples: over,
        };
        assert!(apply(&taken, &mut b, PageId(4), Lsn(500)).is_err());
        let mut big = crate::wal::TupleBatch::default();
        for _ in 0..3 {
            big.push(&[1; 3000]);
        }
        let too_big = Payload::HeapMultiInsert {
            first: SlotId(1),
            flags: TupleFlags::NONE,
            tuples: big,
        };
        assert!(apply(&too_big, &mut b, PageId(4), Lsn(500)).is_err());
        assert_eq!(b, before);
    }

    #[test]
    fn non_page_records_are_refused() {
        let mut b = page();
        assert!(apply(&Payload::Begin, &mut b, PageId(4), Lsn(5)).is_err());
        assert_eq!(undo_action(&Payload::Begin), None);
        assert_eq!(
            undo_action(&Payload::OverflowWrite {
                index: 0,
                next: 0,
                chunk: vec![]
            }),
            Some(Payload::OverflowFree)
        );
    }
}
