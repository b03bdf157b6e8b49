//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/<target>/`) and a
//! deterministic set of mutations through the fuzz targets' bodies, so every
//! test run checks the decoders' no-panic contract (invariant 9) without
//! nightly. Write the seed corpus with
//! `KEEL_WRITE_SEED_CORPUS=1 cargo test -p keel --test fuzz_corpus`.

#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

use std::path::PathBuf;

use keel::fuzz_targets::page_decode;
use keel::page::{OverflowHead, OverflowPage, PAGE_SIZE, SlottedPage, TupleFlags, seal, verify};
use keel::{PageId, SlotId, TupleId};

fn corpus_dir(target: &str) -> PathBuf {
    [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "fuzz",
        "corpus",
        target,
    ]
    .iter()
    .collect()
}

/// Fuzz input: page id, then the page.
fn input(id: u32, page: &[u8]) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    v.extend_from_slice(page);
    v
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut heap = SlottedPage::init(vec![0u8; PAGE_SIZE], PageId(3)).unwrap();
    for i in 0..30u8 {
        heap.insert(&vec![i; usize::from(i) * 7], TupleFlags::NONE)
            .unwrap();
    }
    for s in [2u16, 5, 9] {
        heap.delete(SlotId(s)).unwrap();
    }
    heap.free_slot(SlotId(5)).unwrap();
    heap.set_forward(SlotId(7), TupleId::new(PageId(8), SlotId(1)))
        .unwrap();
    let head = OverflowHead::for_value(&[1u8; 10_000], PageId(20)).unwrap();
    heap.insert(&head.encode(), TupleFlags::OVERFLOW_HEAD)
        .unwrap();
    let mut heap = heap.into_inner();
    seal(&mut heap).unwrap();
    verify(&heap, PageId(3)).unwrap();

    let mut overflow = vec![0u8; PAGE_SIZE];
    OverflowPage::init(&mut overflow[..], PageId(20), 0, &[1u8; 8000], 21).unwrap();
    seal(&mut overflow).unwrap();

    let mut empty = SlottedPage::init(vec![0u8; PAGE_SIZE], PageId(0))
        .unwrap()
        .into_inner();
    seal(&mut empty).unwrap();
    vec![
        ("heap_page".into(), input(3, &heap)),
        ("overflow_page".into(), input(20, &overflow)),
        ("empty_heap_page".into(), input(0, &empty)),
        ("short".into(), input(1, &heap[..100])),
        ("zeroes".into(), input(0, &[0u8; PAGE_SIZE])),
    ]
}

#[test]
fn committed_corpus_replays_without_panics() {
    let dir = corpus_dir("page_decode");
    if std::env::var_os("KEEL_WRITE_SEED_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        page_decode(&bytes);
        n += 1;
    }
    assert!(n >= 5, "corpus at {} has only {n} inputs", dir.display());
}

/// Flips each byte of the header and slot directory, and a stride of the
/// tuple area, both with the stale checksum (caught by the CRC) and re-sealed
/// (so the structural checks must catch it or the page must still behave).
#[test]
fn single_byte_mutations_never_panic() {
    for (_, seed) in seeds() {
        let (id, page) = seed.split_at(4);
        let positions = (0..page.len().min(400)).chain((400..page.len()).step_by(61));
        for pos in positions {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut m = page.to_vec();
                m[pos] ^= flip;
                page_decode(&[id, &m].concat());
                if m.len() == PAGE_SIZE {
                    seal(&mut m).unwrap();
                    page_decode(&[id, &m].concat());
                }
            }
        }
    }
}
