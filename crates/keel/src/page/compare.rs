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
//!   shorter than its allocation hold whatever earlier tuples left there;
//! - on a tree node (leaf or internal page), everything outside the node
//!   header, the slot array, the bytes of each item and the high key: the
//!   gap and the bytes of removed items, likewise.
//!
//! Every other byte counts: a header field, a slot entry, a tuple's or an
//! item's byte, any byte of a page of another type (a tree's meta page
//! included). The layout is read from the image (the copy logged at run
//! time); a slot directory or slot array it cannot read is compared byte
//! for byte.

use super::header::get_u16;
use super::header::offsets::{CHECKSUM, PAGE_TYPE};
use super::tree::{TREE_HEADER_SIZE, TREE_SLOT_SIZE, offsets as tree_offsets};
use super::{HEADER_SIZE, PAGE_SIZE, PageType, SLOT_SIZE, SlotKind, SlottedPage, TreePage};
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
    let by_layout = match PageType::from_u8(image[PAGE_TYPE]) {
        Some(PageType::Heap) => SlottedPage::open(&image[..], pid)
            .ok()
            .map(|heap| heap_difference(&heap, &differs)),
        Some(PageType::TreeLeaf | PageType::TreeInternal) => TreePage::open(&image[..], pid)
            .ok()
            .map(|node| tree_difference(&node, &image[..], &differs)),
        _ => None,
    };
    by_layout.unwrap_or_else(|| differs(HEADER_SIZE..PAGE_SIZE))
}

/// [`first_difference`] past the common header of a tree node whose image
/// is `node` (bytes `image`): the node header and slot array, then each
/// item's and the high key's bytes.
fn tree_difference(
    node: &TreePage<&[u8]>,
    image: &[u8],
    differs: &dyn Fn(std::ops::Range<usize>) -> Option<usize>,
) -> Option<usize> {
    // `TreePage::open` bounds the slot array below `upper <= PAGE_SIZE`.
    let lower = TREE_HEADER_SIZE + TREE_SLOT_SIZE * node.len();
    if let Some(at) = differs(HEADER_SIZE..lower) {
        return Some(at);
    }
    let span = |at: usize| {
        let off = usize::from(get_u16(image, at));
        off..off + usize::from(get_u16(image, at + 2))
    };
    // The high key (an empty span on the rightmost node), then the items.
    let mut spans = vec![span(tree_offsets::HIGH_OFFSET)];
    for i in 0..node.len() {
        if node.item(i).is_err() {
            // An item the page reader rejects: compare all of it.
            return differs(HEADER_SIZE..PAGE_SIZE);
        }
        spans.push(span(TREE_HEADER_SIZE + TREE_SLOT_SIZE * i));
    }
    spans.into_iter().filter_map(differs).min()
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
    use crate::page::header::put_u16;
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

    /// A leaf of three items, the middle one removed, with a high key; and
    /// where the removed item's bytes are.
    fn tree_leaf() -> (Vec<u8>, usize) {
        use crate::page::tree::inline_value;
        let mut b = vec![0u8; PAGE_SIZE];
        let (v1, v2, v3) = (
            inline_value(b"one"),
            inline_value(b"two"),
            inline_value(b"three"),
        );
        let items: [(&[u8], &[u8]); 3] = [(b"a", &v1), (b"b", &v2), (b"c", &v3)];
        let high = Some((&b"k"[..], PageId(9)));
        TreePage::build(&mut b[..], PageId(4), 0, 0, &items, high).unwrap();
        let removed_at = usize::from(get_u16(&b, TREE_HEADER_SIZE + TREE_SLOT_SIZE));
        TreePage::open(&mut b[..], PageId(4))
            .unwrap()
            .remove(1)
            .unwrap();
        (b, removed_at)
    }

    #[test]
    fn a_tree_node_compares_its_header_slots_items_and_high_key_only() {
        let (page, removed_at) = tree_leaf();
        let logged = image(&page);
        let id = PageId(4);
        let mut free = page.clone();
        free[TREE_HEADER_SIZE + 2 * TREE_SLOT_SIZE + 10] ^= 0xff; // the gap
        assert_ne!(free[removed_at + 2], 0);
        free[removed_at + 2] ^= 0xff; // the removed item's key
        assert_eq!(first_difference(&free, id, &logged), None);
        let high_at = usize::from(get_u16(&page, tree_offsets::HIGH_OFFSET));
        let last_item = usize::from(get_u16(&page, TREE_HEADER_SIZE + TREE_SLOT_SIZE));
        for at in [
            tree_offsets::FLAGS,
            TREE_HEADER_SIZE + TREE_SLOT_SIZE + 2,
            last_item + 4,
            high_at,
        ] {
            let mut changed = page.clone();
            changed[at] ^= 1;
            assert_eq!(
                first_difference(&changed, id, &logged),
                Some(at),
                "byte {at}"
            );
        }
        // An image whose slot array the reader rejects compares every byte.
        let mut bad = page.clone();
        put_u16(&mut bad, TREE_HEADER_SIZE, 7);
        let mut gap = bad.clone();
        gap[TREE_HEADER_SIZE + 2 * TREE_SLOT_SIZE + 10] ^= 0xff;
        assert_eq!(
            first_difference(&gap, id, &image(&bad)),
            Some(TREE_HEADER_SIZE + 2 * TREE_SLOT_SIZE + 10)
        );
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
