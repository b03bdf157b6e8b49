use super::super::{FLAG_INCOMPLETE_SPLIT, child_rest, init_meta, inline_value};
use super::*;
use crate::page::header::init_page;

/// A file of tree pages in memory.
struct File(Vec<Vec<u8>>);

impl File {
    fn new(root: u32, level: u16) -> File {
        let mut meta = vec![0u8; PAGE_SIZE];
        init_meta(&mut meta, PageId(0), PageId(root), level).unwrap();
        File(vec![meta])
    }

    /// Page `id`, formatted by `f` (the file grows to hold it).
    fn page(&mut self, id: u32, f: impl FnOnce(&mut [u8], PageId)) -> &mut Self {
        let id_us = id as usize;
        while self.0.len() <= id_us {
            let mut p = vec![0u8; PAGE_SIZE];
            init_page(&mut p, PageId(self.0.len() as u32), PageType::Free).unwrap();
            self.0.push(p);
        }
        f(&mut self.0[id_us], PageId(id));
        self
    }

    fn leaf(&mut self, id: u32, keys: &[&str], high: Option<(&str, u32)>, flags: u16) -> &mut Self {
        let values: Vec<Vec<u8>> = keys.iter().map(|k| inline_value(k.as_bytes())).collect();
        let items: Vec<(&[u8], &[u8])> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| (k.as_bytes(), &v[..]))
            .collect();
        self.node(id, 0, &items, high, flags)
    }

    fn internal(
        &mut self,
        id: u32,
        level: u16,
        items: &[(&str, u32)],
        high: Option<(&str, u32)>,
        flags: u16,
    ) -> &mut Self {
        let rests: Vec<[u8; 4]> = items.iter().map(|(_, c)| child_rest(PageId(*c))).collect();
        let items: Vec<(&[u8], &[u8])> = items
            .iter()
            .zip(&rests)
            .map(|((k, _), r)| (k.as_bytes(), &r[..]))
            .collect();
        self.node(id, level, &items, high, flags)
    }

    fn node(
        &mut self,
        id: u32,
        level: u16,
        items: &[(&[u8], &[u8])],
        high: Option<(&str, u32)>,
        flags: u16,
    ) -> &mut Self {
        let high = high.map(|(k, r)| (k.as_bytes(), PageId(r)));
        self.page(id, |b, id| {
            TreePage::build(b, id, level, flags, items, high).unwrap();
        })
    }

    fn check(&self) -> TreeReport {
        let pages = &self.0;
        check_tree(pages.len() as u32, &mut |id| {
            pages
                .get(id.0 as usize)
                .cloned()
                .ok_or(PageError::Corrupted {
                    page_id: id,
                    offset: 0,
                    reason: "no such page".into(),
                })
        })
    }
}

/// Root 1 over leaves 2 ("a".."c" below "g"), 3 ("g", "h" below "p") and
/// 4 (from "p"); page 5 is free.
fn two_levels() -> File {
    let mut f = File::new(1, 1);
    f.internal(1, 1, &[("", 2), ("g", 3), ("p", 4)], None, 0)
        .leaf(2, &["a", "b", "c"], Some(("g", 3)), 0)
        .leaf(3, &["g", "h"], Some(("p", 4)), 0)
        .leaf(4, &["p", "z"], None, 0)
        .page(5, |b, id| init_page(b, id, PageType::Free).unwrap());
    f
}

/// The findings of kind `kind` on page `page`.
fn on(r: &TreeReport, kind: ProblemKind, page: u32) -> Vec<String> {
    r.problems
        .iter()
        .filter(|p| p.kind == kind && p.page == PageId(page))
        .map(|p| p.what.clone())
        .collect()
}

fn assert_clean(r: &TreeReport) {
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert!(!r.has_errors());
}

#[test]
fn a_valid_tree_passes_with_its_shape() {
    let r = two_levels().check();
    assert_clean(&r);
    assert_eq!(r.root, Some(PageId(1)));
    assert_eq!(r.height(), 2);
    assert_eq!(r.pages_per_level, [3, 1]);
    assert_eq!(r.leaf_items, 7);
    // Seven 12-byte slots, items of 2 + 1 + 1 + 1 bytes, two 1-byte high keys.
    assert_eq!(r.leaf_used_bytes, 7 * (12 + 5) + 2);
    let room = 3.0 * (PAGE_SIZE - TREE_HEADER_SIZE) as f64;
    assert!((r.leaf_fill() - (7.0 * 17.0 + 2.0) / room).abs() < 1e-12);
    assert_eq!(r.incomplete_splits, 0);
}

#[test]
fn a_split_awaiting_its_downlink_passes() {
    // Leaf 3 split at "k": page 6 holds "k", "m" and has no downlink yet.
    let mut f = two_levels();
    f.leaf(3, &["g", "h"], Some(("k", 6)), FLAG_INCOMPLETE_SPLIT)
        .leaf(6, &["k", "m"], Some(("p", 4)), 0);
    let r = f.check();
    assert_clean(&r);
    assert_eq!(r.pages_per_level, [4, 1]);
    assert_eq!(r.incomplete_splits, 1);
    // Without the flag the same pages are a missing downlink.
    f.leaf(3, &["g", "h"], Some(("k", 6)), 0);
    let r = f.check();
    assert!(
        on(&r, ProblemKind::Corrupt, 3)[0].contains("it has no split pending"),
        "{r:?}"
    );
    assert!(on(&r, ProblemKind::Corrupt, 6)[0].contains("have no downlink in level 1"));
}

#[test]
fn a_root_split_awaiting_a_new_root_passes() {
    // The root split at "p" into 1 and 7; the meta page still names 1.
    let mut f = File::new(1, 1);
    f.internal(
        1,
        1,
        &[("", 2), ("g", 3)],
        Some(("p", 7)),
        FLAG_INCOMPLETE_SPLIT,
    )
    .internal(7, 1, &[("", 4)], None, 0)
    .leaf(2, &["a"], Some(("g", 3)), 0)
    .leaf(3, &["g"], Some(("p", 4)), 0)
    .leaf(4, &["p"], None, 0);
    let r = f.check();
    assert_clean(&r);
    assert_eq!(r.pages_per_level, [3, 2]);
}

#[test]
fn keys_out_of_order_across_siblings_are_found() {
    let mut f = two_levels();
    f.leaf(3, &["f", "h"], Some(("p", 4)), 0);
    let r = f.check();
    let found = on(&r, ProblemKind::Corrupt, 3);
    assert!(
        found
            .iter()
            .any(|w| w.contains("below the high key 67 of its left sibling, page 2")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|w| w.contains("below the separator 67")),
        "{found:?}"
    );
    assert!(r.has_errors());
}

#[test]
fn a_wrong_separator_is_found() {
    let mut f = two_levels();
    f.internal(1, 1, &[("", 2), ("h", 3), ("p", 4)], None, 0);
    let r = f.check();
    let leaf2 = on(&r, ProblemKind::Corrupt, 2);
    assert!(
        leaf2[0].contains("high key 67 where item 0 of page 1 bounds it by 68"),
        "{leaf2:?}"
    );
    assert!(on(&r, ProblemKind::Corrupt, 3)[0].contains("below the separator 68"));
}

#[test]
fn a_broken_right_link_or_a_cycle_is_found() {
    // Leaf 2 skips leaf 3.
    let mut f = two_levels();
    f.leaf(2, &["a", "b", "c"], Some(("g", 4)), 0);
    let r = f.check();
    let root = on(&r, ProblemKind::Corrupt, 1);
    assert!(
        root[0].contains("item 1 names child page 3, which is not the next node"),
        "{r:?}"
    );
    assert_eq!(on(&r, ProblemKind::Unreachable, 3).len(), 1);
    // The rightmost leaf links back to the first: a cycle.
    let mut f = two_levels();
    f.leaf(4, &["p", "z"], Some(("zz", 2)), 0);
    let r = f.check();
    assert!(
        on(&r, ProblemKind::Corrupt, 4)[0].contains("links to page 2, already reached"),
        "{r:?}"
    );
    // A link past the end of the file.
    let mut f = two_levels();
    f.leaf(4, &["p", "z"], Some(("zz", 99)), 0);
    let r = f.check();
    assert!(
        on(&r, ProblemKind::Corrupt, 4)[0].contains("links to page 99, outside"),
        "{r:?}"
    );
}

#[test]
fn a_level_mismatch_is_found() {
    let mut f = two_levels();
    init_meta(&mut f.0[0], PageId(0), PageId(1), 2).unwrap();
    let r = f.check();
    assert!(
        on(&r, ProblemKind::Corrupt, 1)[0]
            .contains("a node of level 1, where its parent implies level 2")
    );
    // An internal page where a leaf belongs.
    let mut f = two_levels();
    f.internal(3, 1, &[("", 4)], Some(("p", 4)), 0);
    let r = f.check();
    assert!(
        on(&r, ProblemKind::Corrupt, 3)[0]
            .contains("a node of level 1, where its parent implies level 0")
    );
}

#[test]
fn an_unreachable_node_is_a_warning_not_an_error() {
    let mut f = two_levels();
    f.leaf(6, &["q"], None, 0);
    let r = f.check();
    assert_eq!(r.problems.len(), 1, "{r:?}");
    assert!(on(&r, ProblemKind::Unreachable, 6)[0].contains("a tree-leaf page that no downlink"));
    assert!(!r.has_errors());
}

#[test]
fn an_unreadable_page_or_a_missing_meta_page_is_reported() {
    let f = two_levels();
    let r = check_tree(f.0.len() as u32, &mut |id| {
        if id == PageId(3) {
            Err(PageError::ChecksumMismatch {
                page_id: id,
                expected: 1,
                got: 2,
            })
        } else {
            Ok(f.0[id.0 as usize].clone())
        }
    });
    assert!(on(&r, ProblemKind::Unreadable, 3)[0].contains("checksum mismatch"));
    // The walk of the leaves stops at page 3; page 4 is then unreached.
    assert_eq!(r.problems.len(), 2, "{r:?}");
    assert_eq!(on(&r, ProblemKind::Unreachable, 4).len(), 1);
    let r = check_tree(0, &mut |_| unreachable!("no page to read"));
    assert!(r.has_errors() && r.height() == 0);
    let mut f = two_levels();
    init_page(&mut f.0[0], PageId(0), PageType::Heap).unwrap();
    assert!(on(&f.check(), ProblemKind::Unreadable, 0)[0].contains("tree-meta"));
}

/// Flipped bytes anywhere in a valid tree's pages give findings or none,
/// never a panic (invariant 9).
#[test]
fn flipped_bytes_never_panic() {
    let mut f = two_levels();
    f.leaf(3, &["g", "h"], Some(("k", 6)), FLAG_INCOMPLETE_SPLIT)
        .leaf(6, &["k", "m"], Some(("p", 4)), 0);
    let clean = f.0.clone();
    let mut found = 0;
    for (page, bytes) in clean.iter().enumerate() {
        for at in (0..PAGE_SIZE).step_by(5) {
            for flip in [0x01u8, 0xff] {
                f.0[page][at] ^= flip;
                found += usize::from(!f.check().problems.is_empty());
                f.0[page][at] = bytes[at];
            }
        }
    }
    assert!(found > 0);
}
