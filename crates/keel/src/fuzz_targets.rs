//! Bodies of the cargo-fuzz targets in `fuzz/`, kept in the library so the
//! normal test suite can replay the committed corpus through exactly the same
//! code (`tests/fuzz_corpus.rs`). Each target asserts the decoder's contract:
//! any bytes give a value or an error, never a panic (invariant 9), and
//! whatever decodes as valid behaves like a valid page.

use crate::page::{
    DumpOptions, Fit, OverflowPage, PAGE_SIZE, SlotContent, SlottedPage, TupleFlags, dump_page,
    seal, verify, verify_structure,
};
use crate::types::{PageId, SlotId};

/// Page decoder, validator and dump over arbitrary bytes. The first four
/// bytes choose the page id the bytes are read as, the rest is the page.
pub fn page_decode(data: &[u8]) {
    let (id, page) = match data.split_first_chunk::<4>() {
        Some((id, rest)) => (PageId(u32::from_le_bytes(*id)), rest),
        None => (PageId(0), data),
    };
    let _ = verify(page, id);
    let _ = dump_page(
        page,
        id,
        &DumpOptions {
            hex: true,
            preview_bytes: 0,
        },
    );
    if let Ok(p) = OverflowPage::open(page, id) {
        let _ = (p.chunk().len(), p.chunk_index(), p.next_page());
    }
    let Ok(p) = SlottedPage::open(page, id) else {
        return;
    };
    // Accessors on a page that passed only the header check must not panic.
    let _ = p.stats();
    let _ = p.fit(100);
    for (_, content) in p.slots() {
        let _ = content;
    }
    if p.validate().is_err() {
        return;
    }
    // A structurally valid page behaves like one: changes keep it valid.
    let before: Vec<Option<Vec<u8>>> = (0..p.slot_count())
        .map(|s| match p.get(SlotId(s)) {
            Ok(SlotContent::Tuple { bytes, .. }) => Some(bytes.to_vec()),
            _ => None,
        })
        .collect();
    let mut copy = page.to_vec();
    let mut p = SlottedPage::open(&mut copy[..], id).expect("reopened a valid page");
    p.compact();
    if p.fit(10) == Fit::Now {
        p.insert(b"fuzz tuple", TupleFlags::NONE)
            .expect("insert after fit said Now");
    }
    p.validate()
        .expect("a valid page stays valid after compaction and insert");
    for (s, old) in before.iter().enumerate() {
        if let Some(old) = old {
            let now = p
                .tuple(SlotId(s as u16))
                .expect("tuple survives compaction");
            assert_eq!(now, &old[..], "compaction changed tuple {s}");
        }
    }
    if copy.len() == PAGE_SIZE {
        seal(&mut copy).expect("page-sized buffer seals");
        verify(&copy, id).expect("a sealed valid page verifies");
        let _ = verify_structure(&copy, id);
    }
}
