//! Golden-file tests of the page dump: the same formatter `keel inspect page`
//! prints. A format change shows up here as a diff in review. Regenerate with
//! `KEEL_UPDATE_GOLDEN=1 cargo test -p keel --test page_dump`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::path::PathBuf;

use keel::page::{
    DumpOptions, OverflowHead, OverflowPage, PAGE_SIZE, SlottedPage, TupleFlags, dump_page, seal,
    set_page_lsn,
};
use keel::{Lsn, PageId, SlotId, TupleId};

fn golden(name: &str, actual: &str) {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "golden", name]
        .iter()
        .collect();
    if std::env::var_os("KEEL_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (set KEEL_UPDATE_GOLDEN=1 to create)",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs from the dump (set KEEL_UPDATE_GOLDEN=1 to accept):\n{actual}",
            path.display()
        );
    }
}

/// A heap page with every slot kind: tuples, a dead slot, a forward pointer,
/// a moved-in tuple and an overflow head.
fn sample_heap_page() -> Vec<u8> {
    let mut p = SlottedPage::init(vec![0u8; PAGE_SIZE], PageId(5)).unwrap();
    p.insert(b"hello, keel", TupleFlags::NONE).unwrap();
    p.insert(&[0xAB; 40], TupleFlags::NONE).unwrap();
    p.insert(b"to be deleted", TupleFlags::NONE).unwrap();
    p.insert(b"moves away", TupleFlags::NONE).unwrap();
    p.insert(b"arrived from 9.1", TupleFlags::MOVED_IN).unwrap();
    let head = OverflowHead::for_value(&[7u8; 20_000], PageId(12)).unwrap();
    p.insert(&head.encode(), TupleFlags::OVERFLOW_HEAD).unwrap();
    p.delete(SlotId(2)).unwrap();
    p.set_forward(SlotId(3), TupleId::new(PageId(9), SlotId(0)))
        .unwrap();
    p.set_lsn(Lsn(0x1_0000_0420));
    let mut bytes = p.into_inner();
    seal(&mut bytes).unwrap();
    bytes
}

#[test]
fn heap_page_dump_matches_golden() {
    let dump = dump_page(&sample_heap_page(), PageId(5), &DumpOptions::default());
    golden("heap_page.txt", &dump);
}

#[test]
fn heap_page_hex_dump_matches_golden() {
    let opts = DumpOptions {
        hex: true,
        preview_bytes: 4,
    };
    golden(
        "heap_page_hex.txt",
        &dump_page(&sample_heap_page(), PageId(5), &opts),
    );
}

#[test]
fn overflow_page_dump_matches_golden() {
    let mut b = vec![0u8; PAGE_SIZE];
    OverflowPage::init(
        &mut b[..],
        PageId(12),
        0,
        b"first chunk of a large value",
        13,
    )
    .unwrap();
    set_page_lsn(&mut b, Lsn(77)).unwrap();
    seal(&mut b).unwrap();
    golden(
        "overflow_page.txt",
        &dump_page(&b, PageId(12), &DumpOptions::default()),
    );
}

#[test]
fn corrupt_page_dump_names_the_problems() {
    let mut b = sample_heap_page();
    b[5000] ^= 0xFF; // in free space: only the checksum notices
    let dump = dump_page(&b, PageId(5), &DumpOptions::default());
    assert!(dump.contains("MISMATCH"), "{dump}");
    assert!(
        dump.contains("INVALID: page 5: checksum mismatch"),
        "{dump}"
    );
    golden("corrupt_page.txt", &dump);
    // Read as the wrong page id.
    let dump = dump_page(&sample_heap_page(), PageId(6), &DumpOptions::default());
    assert!(
        dump.contains("INVALID: page 6: corrupted at offset 8: page claims to be page 5"),
        "{dump}"
    );
    // Short and empty inputs.
    assert!(
        dump_page(
            &[1, 2, 3],
            PageId(0),
            &DumpOptions {
                hex: true,
                preview_bytes: 0
            }
        )
        .contains("too short")
    );
    assert!(dump_page(&[], PageId(0), &DumpOptions::default()).contains("INVALID"));
}

/// A tree's meta page, an internal page and a leaf (an inline value, an
/// overflow value, a high key and a split awaiting its downlink).
fn sample_tree_pages() -> Vec<(PageId, Vec<u8>)> {
    use keel::page::TreePage;
    use keel::page::tree::{
        FLAG_INCOMPLETE_SPLIT, VALUE_OVERFLOW, child_rest, init_meta, inline_value,
    };
    let mut meta = vec![0u8; PAGE_SIZE];
    init_meta(&mut meta, PageId(0), PageId(1), 1).unwrap();
    let mut internal = vec![0u8; PAGE_SIZE];
    let (c2, c3) = (child_rest(PageId(2)), child_rest(PageId(3)));
    let items: [(&[u8], &[u8]); 2] = [(b"", &c2), (b"melon", &c3)];
    TreePage::build(&mut internal[..], PageId(1), 1, 0, &items, None).unwrap();
    let mut leaf = vec![0u8; PAGE_SIZE];
    let inline = inline_value(b"yellow and curved");
    let mut overflow = vec![VALUE_OVERFLOW];
    overflow.extend_from_slice(
        &OverflowHead::for_value(&[3u8; 9000], PageId(12))
            .unwrap()
            .encode(),
    );
    let items: [(&[u8], &[u8]); 2] = [(b"banana", &inline), (&[b'c', 0x00, 0xff], &overflow)];
    let high = Some((&b"kiwi"[..], PageId(4)));
    TreePage::build(
        &mut leaf[..],
        PageId(2),
        0,
        FLAG_INCOMPLETE_SPLIT,
        &items,
        high,
    )
    .unwrap();
    let mut pages = vec![(PageId(0), meta), (PageId(1), internal), (PageId(2), leaf)];
    for (_, p) in &mut pages {
        set_page_lsn(p, Lsn(0x42)).unwrap();
        seal(p).unwrap();
    }
    pages
}

#[test]
fn tree_page_dumps_match_golden() {
    let dump: String = sample_tree_pages()
        .iter()
        .map(|(id, p)| dump_page(p, *id, &DumpOptions::default()))
        .collect();
    assert!(dump.contains("verdict    ok (tree-leaf page)"), "{dump}");
    golden("tree_pages.txt", &dump);
}
