//! Page comparison for consistency checks: whether two copies of a page
//! mean the same, and if not, the first byte where they differ.
//!
//! Recovery's consistency check (`Config::consistency_check`) compares
//! each page redo rebuilds with the image of that page logged at run time
//! (a `page-check` record). Two copies of a page may differ in bytes that
//! nothing reads, and those differences are not reported:
//!
//! - the checksum field: a frame in memory is not sealed;
//! - on a heap page, everything outside the header, the slot directory and
//!   the bytes of each tuple and forward pointer: the gap (which an image
//!   does not log), freed and fragmented bytes, and the padding of a tuple
//!   shorter than its allocation hold whatever earlier tuples left there.
//!
//! Every other byte counts: a header field, a slot entry, a tuple's byte,
//! any byte of a page of another type. The slotted layout is read from the
//! image (the copy logged at run time); a directory it cannot read is
//! compared byte for byte.

use super::header::offsets::{CHECKSUM, PAGE_TYPE};
use super::{HEADER_SIZE, PAGE_SIZE, PageType, SLOT_SIZE, SlotKind, SlottedPage};
use crate::types::{PageId, SlotId};

/// The first byte offset at which `page` (page `pid`) differs from
/// `image` in what the page means (module docs), if anywhere. A `page`
/// that is not [`PAGE_SIZE`] bytes long differs at its end (or at
/// `PAGE_SIZE`, when longer).
pub fn first_difference(page: &[u8], pid: PageId, image: &[u8; PAGE_SIZE]) -> Option<usize> {
    if page.len() != PAGE_SIZE {
        return Some(page.len().min(PAGE_SIZE));
    }
    let differs = |r: std::ops::Range<usize>| r.into_iter().find(|&i| page[i] != image[i]);
    let head = differs(0..CHECKSUM).or_else(|| differs(CHECKSUM + 4..HEADER_SIZE));
    if head.is_some() {
        return head;
    }
    let heap = (image[PAGE_TYPE] == PageType::Heap as u8)
        .then(|| SlottedPage::open(&image[..], pid).ok())
        .flatten();
    match heap {
        Some(heap) => heap_difference(&heap, &differs),
        None => differs(HEADER_SIZE..PAGE_SIZE),
    }
}

/// [`first_difference`] past the header of a heap page whose image is
/// `heap`: the slot directory, then each tuple's and forward pointer's
/// bytes; `differs` finds the first differing offset in a range.
fn heap_difference(
    heap: &SlottedPage<&[u8]>,
    differs: &dyn Fn(std::ops::Range<usize>) -> Option<usize>,
) -> Option<usize> {
    let lower = HEADER_SIZE + SLOT_SIZE * usize::from(heap.slot_count());
    if let Some(at) = differs(HEADER_SIZE..lower.min(PAGE_SIZE)) {
        return Some(at);
    }
    let mut first: Option<usize> = None;
    for slot in 0..heap.slot_count() {
        let Ok(e) = heap.slot(SlotId(slot)) else {
            // A directory the page reader rejects: compare all of it.
            return differs(HEADER_SIZE..PAGE_SIZE);
        };
        if matches!(e.kind, SlotKind::Tuple | SlotKind::Forward) {
            let off = usize::from(e.offset);
            let end = (off + usize::from(e.len)).min(PAGE_SIZE);
            if let Some(at) = differs(off.min(end)..end) {
                first = Some(first.map_or(at, |f| f.min(at)));
            }
        }
    }
    first
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::page::header::offsets::LSN;
    use crate::page::{TupleFlags, init_page, seal};

    /// A heap page holding three tuples, the middle one deleted, and
    /// where the deleted tuple's bytes are.
    fn heap_page() -> (Vec<u8>, usize) {
        let mut p = SlottedPage::init(vec![0u8; PAGE_SIZE], PageId(3)).unwrap();
        p.insert(b"first tuple", TupleFlags::NONE).unwrap();
        let dead = p.insert(b"deleted tuple", TupleFlags::NONE).unwrap();
        let dead_at = usize::from(p.slot(dead).unwrap().offset);
        p.insert(b"last tuple", TupleFlags::NONE).unwrap();
        p.delete(dead).unwrap();
        (p.into_inner(), dead_at)
    }

    fn image(page: &[u8]) -> [u8; PAGE_SIZE] {
        page.try_into().unwrap()
    }

    fn tuple_offset(page: &[u8], slot: u16) -> usize {
        let p = SlottedPage::open(page, PageId(3)).unwrap();
        usize::from(p.slot(SlotId(slot)).unwrap().offset)
    }

    #[test]
    fn equal_pages_and_the_checksum_field_do_not_differ() {
        let (page, _) = heap_page();
        let logged = image(&page);
        assert_eq!(first_difference(&page, PageId(3), &logged), None);
        let mut sealed = page.clone();
        seal(&mut sealed).unwrap();
        assert_ne!(sealed, page);
        assert_eq!(first_difference(&sealed, PageId(3), &logged), None);
    }

    #[test]
    fn a_heap_page_free_space_and_dead_tuples_do_not_count() {
        let (mut page, dead_at) = heap_page();
        let logged = image(&page);
        let gap = HEADER_SIZE + 3 * SLOT_SIZE + 8;
        page[gap] ^= 0xff;
        // The deleted tuple's bytes are free space now.
        assert_ne!(page[dead_at], 0);
        page[dead_at] ^= 0xff;
        assert_eq!(first_difference(&page, PageId(3), &logged), None);
    }

    #[test]
    fn a_tuple_byte_a_slot_entry_or_a_header_field_differs_where_it_is() {
        let (page, _) = heap_page();
        let logged = image(&page);
        let last = tuple_offset(&page, 2) + 4;
        let first = tuple_offset(&page, 0) + 2;
        let mut changed = page.clone();
        changed[last] ^= 1;
        changed[first] ^= 1;
        let expect = first.min(last);
        assert_eq!(first_difference(&changed, PageId(3), &logged), Some(expect));
        let mut slot = page.clone();
        slot[HEADER_SIZE + SLOT_SIZE] ^= 1;
        assert_eq!(
            first_difference(&slot, PageId(3), &logged),
            Some(HEADER_SIZE + SLOT_SIZE)
        );
        let mut lsn = page.clone();
        lsn[LSN] ^= 1;
        assert_eq!(first_difference(&lsn, PageId(3), &logged), Some(LSN));
    }

    #[test]
    fn any_byte_of_another_page_type_counts_and_a_short_page_differs_at_its_end() {
        let mut page = vec![0u8; PAGE_SIZE];
        init_page(&mut page, PageId(5), PageType::Free).unwrap();
        let logged = image(&page);
        page[PAGE_SIZE - 1] = 7;
        assert_eq!(
            first_difference(&page, PageId(5), &logged),
            Some(PAGE_SIZE - 1)
        );
        assert_eq!(
            first_difference(&page[..100], PageId(5), &logged),
            Some(100)
        );
    }
}
