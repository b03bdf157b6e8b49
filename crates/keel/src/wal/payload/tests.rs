use proptest::prelude::*;

use super::*;
use crate::page::header::{offsets, put_u16};
use crate::page::{CHUNK_CAPACITY, MAX_TUPLE_LEN, NO_PAGE, SlottedPage};
use crate::types::PageId;
use crate::wal::WalError;
use crate::wal::record::{self, RecordMeta};

const LSN: Lsn = Lsn(0x1234);

/// A heap page with a few tuples: a hole between lower and upper.
fn heap_page() -> Box<[u8; PAGE_SIZE]> {
    let mut page = SlottedPage::init(vec![0u8; PAGE_SIZE], PageId(9)).unwrap();
    for i in 0..5u8 {
        page.insert(&[i + 1; 100], TupleFlags::NONE).unwrap();
    }
    page.set_lsn(Lsn(77));
    Box::new(page.into_inner().try_into().unwrap())
}

/// A page with no hole: not a heap page, every byte non-zero past the header.
fn full_page() -> Box<[u8; PAGE_SIZE]> {
    let mut b = vec![0u8; PAGE_SIZE];
    crate::page::init_page(&mut b, PageId(4), PageType::Overflow).unwrap();
    for (i, x) in b[HEADER..].iter_mut().enumerate() {
        *x = (i % 251) as u8 | 1;
    }
    Box::new(b.try_into().unwrap())
}

const HEADER: usize = crate::page::HEADER_SIZE;

/// A tree node `id` at `level` with a few items, linked right to page 8.
fn tree_node(id: u32, level: u16) -> Box<[u8; PAGE_SIZE]> {
    let mut p = Box::new([0u8; PAGE_SIZE]);
    let items: &[(&[u8], &[u8])] = &[(b"", &[0, 0, 0, 3]), (b"m", &[0, 0, 0, 5])];
    crate::page::tree::TreePage::build(
        &mut p[..],
        PageId(id),
        level,
        0,
        items,
        Some((&b"z"[..], PageId(8))),
    )
    .unwrap();
    p
}

/// A tree leaf whose image has no hole (its bounds insane), the largest
/// image a tree-split can carry.
fn holeless_leaf(id: u32) -> Box<[u8; PAGE_SIZE]> {
    let mut p = full_page();
    crate::page::header::put_u32(&mut p[..], offsets::PAGE_ID, id);
    p[offsets::PAGE_TYPE] = PageType::TreeLeaf as u8;
    put_u16(&mut p[..], offsets::LOWER, 0);
    put_u16(&mut p[..], offsets::UPPER, 0);
    p
}

fn tuple_image(len: usize) -> SlotImage {
    SlotImage::Tuple {
        flags: TupleFlags::MOVED_IN,
        bytes: vec![0xAB; len],
    }
}

fn forward() -> SlotImage {
    SlotImage::Forward(TupleId::new(PageId(12), SlotId(3)))
}

/// A heap-multi-insert of `tuples` into slots from `first`.
fn multi(first: u16, flags: TupleFlags, tuples: &[&[u8]]) -> Payload {
    let mut batch = TupleBatch::with_capacity(tuples.len(), 0);
    for t in tuples {
        batch.push(t);
    }
    Payload::HeapMultiInsert {
        first: SlotId(first),
        flags,
        tuples: batch,
    }
}

/// Every page-changing payload other than a CLR, with edge sizes.
fn page_actions() -> Vec<Payload> {
    vec![
        Payload::PageImage { image: heap_page() },
        Payload::PageImage { image: full_page() },
        Payload::PageDelta { ranges: vec![] },
        Payload::PageDelta {
            ranges: vec![(24, vec![1, 2]), (0, vec![]), (8000, vec![7; 192])],
        },
        Payload::PageInit {
            page_type: PageType::Heap,
        },
        Payload::TreeInsert {
            key: b"key".to_vec(),
            rest: vec![0, 1, 2],
        },
        Payload::TreeInsert {
            key: vec![0xab; crate::page::tree::MAX_KEY_LEN],
            rest: vec![],
        },
        Payload::TreeDelete {
            key: vec![],
            rest: vec![9; crate::page::tree::MAX_ITEM_LEN],
        },
        Payload::TreeRootSwap {
            old: crate::types::PageId(1),
            old_level: 0,
            new: crate::types::PageId(900),
            new_level: 3,
        },
        Payload::MultiPageImage {
            images: vec![
                (crate::types::PageId(4), {
                    let mut p = Box::new([0u8; PAGE_SIZE]);
                    crate::page::tree::TreePage::build(
                        &mut p[..],
                        crate::types::PageId(4),
                        0,
                        0,
                        &[(&b"k"[..], &b"\0v"[..])],
                        None,
                    )
                    .unwrap();
                    p
                }),
                (crate::types::PageId(0), {
                    let mut p = Box::new([0u8; PAGE_SIZE]);
                    crate::page::tree::init_meta(
                        &mut p[..],
                        crate::types::PageId(0),
                        crate::types::PageId(4),
                        0,
                    )
                    .unwrap();
                    p
                }),
            ],
        },
        Payload::TreeSplit {
            keep: 1,
            sep: b"m".to_vec(),
            right: PageId(6),
            image: tree_node(6, 0),
        },
        Payload::TreeSplit {
            keep: u16::MAX,
            sep: vec![0xcd; crate::page::tree::MAX_KEY_LEN],
            right: PageId(u32::MAX - 1),
            image: tree_node(u32::MAX - 1, 3),
        },
        Payload::HeapInsert {
            slot: SlotId(3),
            flags: TupleFlags::NONE,
            tuple: vec![],
        },
        Payload::HeapInsert {
            slot: SlotId(u16::MAX),
            flags: TupleFlags::OVERFLOW_HEAD.union(TupleFlags::MOVED_IN),
            tuple: vec![9; MAX_TUPLE_LEN],
        },
        multi(0, TupleFlags::NONE, &[]),
        multi(3, TupleFlags::MOVED_IN, &[b"one", b"", &[7; 300]]),
        multi(u16::MAX, TupleFlags::NONE, &[&[9; MAX_TUPLE_LEN]]),
        Payload::HeapMultiRemove {
            first: SlotId(0),
            count: 0,
        },
        Payload::HeapMultiRemove {
            first: SlotId(3),
            count: 70,
        },
        Payload::HeapMultiRemove {
            first: SlotId(u16::MAX),
            count: 1,
        },
        Payload::HeapDelete {
            slot: SlotId(4),
            old: tuple_image(120),
        },
        Payload::HeapDelete {
            slot: SlotId(0),
            old: forward(),
        },
        Payload::HeapUpdate {
            slot: SlotId(5),
            old: tuple_image(0),
            new_flags: TupleFlags::NONE,
            new: vec![1; 80],
        },
        Payload::HeapUpdate {
            slot: SlotId(5),
            old: forward(),
            new_flags: TupleFlags::MOVED_IN,
            new: vec![],
        },
        Payload::HeapForward {
            slot: SlotId(6),
            target: TupleId::new(PageId(NO_PAGE - 1), SlotId(2)),
            old: tuple_image(MAX_TUPLE_LEN),
        },
        Payload::HeapFreeSlot { slot: SlotId(7) },
        Payload::PageCompaction {
            relocations: vec![],
        },
        Payload::PageCompaction {
            relocations: vec![
                Relocation {
                    slot: SlotId(1),
                    old_offset: 7000,
                    new_offset: 8092,
                    len: 100,
                },
                Relocation {
                    slot: SlotId(0),
                    old_offset: 6000,
                    new_offset: 7992,
                    len: 100,
                },
            ],
        },
        Payload::OverflowWrite {
            index: 0,
            next: NO_PAGE,
            chunk: vec![],
        },
        Payload::OverflowWrite {
            index: 7,
            next: 12,
            chunk: vec![3; CHUNK_CAPACITY],
        },
        Payload::OverflowFree,
    ]
}

/// At least one payload of every type, with edge sizes.
fn samples() -> Vec<Payload> {
    let mut v = vec![Payload::Padding { len: 0 }, Payload::Padding { len: 77 }];
    v.extend(page_actions());
    v.extend([
        Payload::PageCheck {
            of: Lsn(4096),
            image: heap_page(),
        },
        Payload::PageCheck {
            of: Lsn(u64::MAX),
            image: full_page(),
        },
        Payload::Begin,
        Payload::Commit {
            commit_time_us: 1_700_000_000_123_456,
        },
        Payload::Abort,
        Payload::CheckpointBegin,
        checkpoint_end(0, 0),
        checkpoint_end(12, 3),
        checkpoint_end(u64::MAX, u64::MAX),
        Payload::RelationCreate {
            relation: RelationId(5),
            name: String::new(),
        },
        Payload::RelationCreate {
            relation: RelationId(5),
            name: "é".repeat(MAX_NAME_LEN / 2) + "x",
        },
        Payload::RelationDrop {
            relation: RelationId(5),
        },
    ]);
    for action in page_actions() {
        if !is_clr_action(action.kind()) {
            continue;
        }
        v.push(Payload::Compensation {
            undo_next: Lsn(0x1234),
            action: Box::new(action),
        });
    }
    v
}

fn checkpoint_end(dirty_pages: u64, active_txns: u64) -> Payload {
    Payload::CheckpointEnd {
        begin_lsn: Lsn(4096),
        next_txn: TxnId(42),
        redo_start: Lsn(4000),
        undo_start: Lsn(3000),
        dirty_pages,
        active_txns,
    }
}

fn enc(p: &Payload) -> Vec<u8> {
    p.to_bytes().unwrap()
}

fn bad(kind: RecordType, bytes: &[u8]) -> (usize, String) {
    match Payload::decode(kind, bytes, LSN) {
        Err(WalError::BadPayload {
            lsn,
            kind: k,
            offset,
            reason,
        }) => {
            assert_eq!((lsn, k), (LSN, kind.name()));
            (offset, reason)
        }
        other => panic!("{kind:?} {bytes:?}: expected BadPayload, got {other:?}"),
    }
}

#[test]
fn every_sample_round_trips() {
    for p in samples() {
        let bytes = enc(&p);
        assert_eq!(bytes.len(), p.encoded_len(), "{p:?}");
        let back = Payload::decode(p.kind(), &bytes, LSN).unwrap();
        assert_eq!(back, p);
        assert_eq!(enc(&back), bytes);
        let _ = p.summary();
    }
    let mut kinds: Vec<RecordType> = samples().iter().map(Payload::kind).collect();
    kinds.sort();
    kinds.dedup();
    let mut all = RecordType::ALL.to_vec();
    all.sort();
    assert_eq!(kinds, all, "a record type has no sample");
}

/// A page image encoded from a borrowed page is byte for byte the payload's
/// encoding, with and without a hole, after what is already in `out`.
#[test]
fn borrowed_page_image_encodes_as_the_payload() {
    let mut leaf = tree_node(5, 0);
    leaf[offsets::LSN..offsets::LSN + 8].copy_from_slice(&33u64.to_le_bytes());
    for page in [heap_page(), full_page(), leaf] {
        let mut out = vec![0xEE; 3];
        encode_page_image(&page, &mut out);
        assert_eq!(out[..3], [0xEE; 3], "what was there stays");
        let want = enc(&Payload::PageImage {
            image: page.clone(),
        });
        assert_eq!(out[3..], want[..]);
        assert_eq!(page_image_len(&page), want.len());
    }
    assert!(
        page_image_len(&heap_page()) < PAGE_SIZE,
        "a heap page's hole is left out"
    );
}

#[test]
fn encode_appends_and_whole_records_decode() {
    let p = Payload::HeapInsert {
        slot: SlotId(3),
        flags: TupleFlags::NONE,
        tuple: b"hello".to_vec(),
    };
    let mut out = vec![0xEE];
    p.encode(&mut out).unwrap();
    assert_eq!(out, [0xEE, 3, 0, 0, 5, 0, b'h', b'e', b'l', b'l', b'o']);
    let meta = RecordMeta::new(p.kind()).on_page(RelationId(1), PageId(2));
    let rec = record::encode(&meta, Lsn(8192), &out[1..]);
    let (h, body) = record::decode(&rec, Lsn(8192)).unwrap();
    assert_eq!(Payload::decode_record(&h, body).unwrap(), p);
}

#[test]
fn page_images_elide_the_heap_hole_only() {
    let heap = heap_page();
    let lower = usize::from(crate::page::header::get_u16(&heap[..], offsets::LOWER));
    let upper = usize::from(crate::page::header::get_u16(&heap[..], offsets::UPPER));
    assert_eq!((lower, upper), (HEADER + 20, PAGE_SIZE - 500));
    let p = Payload::PageImage { image: heap };
    assert_eq!(p.encoded_len(), 4 + PAGE_SIZE - (upper - lower));
    assert_eq!(p.summary(), "8192 B page, hole 60..7692 (7632 B elided)");
    // Stale bytes in the hole are not logged; they come back as zeroes.
    let mut dirty = heap_page();
    dirty[lower..upper].fill(0x5A);
    let back = Payload::decode(
        RecordType::PageImage,
        &enc(&Payload::PageImage { image: dirty }),
        LSN,
    )
    .unwrap();
    assert_eq!(back, p);
    // No hole: other page types, an empty gap, insane bounds.
    let full = Payload::PageImage { image: full_page() };
    assert_eq!(full.encoded_len(), 4 + PAGE_SIZE);
    for (lo, up) in [(100u16, 100u16), (200, 100), (10, 100), (100, 9000)] {
        let mut img = heap_page();
        put_u16(&mut img[..], offsets::LOWER, lo);
        put_u16(&mut img[..], offsets::UPPER, up);
        let p = Payload::PageImage { image: img };
        assert_eq!(p.encoded_len(), 4 + PAGE_SIZE, "lower {lo} upper {up}");
        assert_eq!(Payload::decode(p.kind(), &enc(&p), LSN).unwrap(), p);
    }
    // A hole that is not the page's own gap is not canonical.
    let mut b = enc(&full);
    b[2..4].copy_from_slice(&100u16.to_le_bytes());
    b[0..2].copy_from_slice(&100u16.to_le_bytes());
    b.truncate(b.len() - 100);
    assert!(
        bad(RecordType::PageImage, &b)
            .1
            .contains("not the page's free gap")
    );
    let mut b = enc(&p);
    b[0..4].copy_from_slice(&[1, 0, 0, 0]);
    assert!(bad(RecordType::PageImage, &b).1.contains("impossible hole"));
    let mut b = enc(&p);
    b[0..4].copy_from_slice(&[0xFF, 0x1F, 2, 0]);
    assert!(bad(RecordType::PageImage, &b).1.contains("impossible hole"));
}

#[test]
fn every_truncation_is_an_error() {
    for p in samples() {
        if matches!(p, Payload::Padding { .. }) {
            continue; // any run of zeroes is padding
        }
        let bytes = enc(&p);
        for cut in 0..bytes.len() {
            let (offset, _) = bad(p.kind(), &bytes[..cut]);
            assert!(offset <= cut, "{:?} cut {cut}: offset {offset}", p.kind());
        }
    }
}

#[test]
fn trailing_bytes_are_errors() {
    for p in samples() {
        let mut bytes = enc(&p);
        let len = bytes.len();
        bytes.push(1);
        let (offset, reason) = bad(p.kind(), &bytes);
        assert_eq!(offset, len, "{p:?}: {reason}");
    }
    assert_eq!(bad(RecordType::Padding, &[0, 0, 3, 0]).0, 2);
}

#[test]
fn bad_enum_bytes_are_errors_at_their_offset() {
    let cases: Vec<(RecordType, Vec<u8>, usize, &str)> = vec![
        (RecordType::PageInit, vec![9], 0, "unknown page type 9"),
        (
            RecordType::HeapInsert,
            vec![1, 0, 0x04, 0, 0],
            2,
            "tuple flags 0x04",
        ),
        (
            RecordType::HeapMultiInsert,
            vec![1, 0, 0x04, 0, 0],
            2,
            "tuple flags 0x04",
        ),
        (
            RecordType::HeapMultiInsert,
            vec![0xFF, 0xFF, 0, 2, 0, 0, 0, 0, 0],
            3,
            "passes slot 65535",
        ),
        (
            RecordType::HeapMultiRemove,
            vec![0xFE, 0xFF, 3, 0],
            2,
            "a run of 3 slots from slot 65534 passes slot 65535",
        ),
        (
            RecordType::HeapDelete,
            vec![1, 0, 0, 1, 2, 3],
            2,
            "slot image kind 0",
        ),
        (
            RecordType::HeapDelete,
            vec![1, 0, 3, 1, 2, 3],
            2,
            "slot image kind 3",
        ),
        (
            RecordType::HeapUpdate,
            vec![1, 0, 2, 1, 0, 0, 0, 0, 0, 0xFF, 0, 0],
            9,
            "flags 0xff",
        ),
        (
            RecordType::Compensation,
            [vec![0; 8], vec![99]].concat(),
            8,
            "unknown action type 99",
        ),
        (
            RecordType::Compensation,
            [vec![0; 8], vec![53]].concat(),
            8,
            "cannot carry a multi-page-image",
        ),
        (
            RecordType::MultiPageImage,
            vec![0],
            0,
            "0 page images in one record",
        ),
        (
            RecordType::MultiPageImage,
            vec![5],
            0,
            "5 page images in one record",
        ),
        (
            RecordType::Compensation,
            [vec![0; 8], vec![20]].concat(),
            8,
            "cannot carry a begin",
        ),
        (
            RecordType::Compensation,
            [vec![0; 8], vec![0]].concat(),
            8,
            "cannot carry a padding",
        ),
        (
            RecordType::Compensation,
            [vec![0; 8], vec![23], vec![0; 8], vec![17]].concat(),
            8,
            "cannot carry a clr",
        ),
        (
            RecordType::RelationCreate,
            vec![1, 0, 0, 0, 3, b'a', 0xC3, 0x28],
            6,
            "not UTF-8",
        ),
        (RecordType::Padding, vec![0, 0, 0, 0x80], 3, "not zero"),
    ];
    for (kind, bytes, offset, needle) in cases {
        let (o, reason) = bad(kind, &bytes);
        assert!(reason.contains(needle), "{kind:?}: {reason} lacks {needle}");
        assert_eq!(o, offset, "{kind:?}: {reason}");
    }
    let end = enc(&checkpoint_end(0, 1));
    let (o, reason) = bad(RecordType::CheckpointEnd, &end[..44]);
    assert_eq!(o, 40, "{reason}");
    assert!(reason.contains("transaction count"), "{reason}");
    // Nested errors name the CLR and an offset in its payload.
    let clr = [vec![0; 8], vec![10], vec![1, 0, 0x80, 0, 0]].concat();
    assert_eq!(bad(RecordType::Compensation, &clr).0, 11);
}

#[test]
fn huge_counts_fail_before_allocating() {
    assert!(
        bad(RecordType::PageDelta, &[0xFF, 0xFF, 0, 0])
            .1
            .contains("65535 page ranges")
    );
    assert!(
        bad(RecordType::PageCompaction, &[9, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .1
            .contains("9 relocations")
    );
    let (_, r) = bad(RecordType::HeapInsert, &[0, 0, 0, 0xFF, 0xFF]);
    assert!(r.contains("65535 bytes exceeds 8148"), "{r}");
    let (o, r) = bad(RecordType::HeapMultiInsert, &[0, 0, 0, 0xFF, 0xFF, 0, 0]);
    assert!(r.contains("65535 multi-insert tuples claimed"), "{r}");
    assert_eq!(o, 3);
    let (o, r) = bad(RecordType::HeapMultiInsert, &[0, 0, 0, 1, 0, 0xFF, 0xFF]);
    assert!(r.contains("65535 bytes exceeds 8148"), "{r}");
    assert_eq!(o, 5);
    let (_, r) = bad(
        RecordType::OverflowWrite,
        &[0, 0, 0, 0, 0, 0, 0, 0, 0xD1, 0x1F],
    );
    assert!(r.contains("8145 bytes exceeds 8144"), "{r}");
    let huge = vec![0u8; MAX_PAYLOAD_SIZE + 1];
    assert_eq!(bad(RecordType::Padding, &huge).0, MAX_PAYLOAD_SIZE);
}

#[test]
fn ranges_and_relocations_stay_inside_the_page() {
    let delta = [
        vec![1, 0],
        8000u16.to_le_bytes().to_vec(),
        vec![193, 0],
        vec![0; 193],
    ]
    .concat();
    assert!(bad(RecordType::PageDelta, &delta).1.contains("runs past"));
    let reloc = [
        vec![1, 0],
        vec![0, 0],
        100u16.to_le_bytes().to_vec(),
        8100u16.to_le_bytes().to_vec(),
        100u16.to_le_bytes().to_vec(),
    ]
    .concat();
    let (o, r) = bad(RecordType::PageCompaction, &reloc);
    assert!(r.contains("new bytes 8100+100"), "{r}");
    assert_eq!(o, 2);
}

#[test]
fn invalid_payloads_do_not_encode() {
    let cases = vec![
        Payload::RelationCreate {
            relation: RelationId(1),
            name: "n".repeat(MAX_NAME_LEN + 1),
        },
        Payload::HeapInsert {
            slot: SlotId(0),
            flags: TupleFlags::NONE,
            tuple: vec![0; MAX_TUPLE_LEN + 1],
        },
        Payload::HeapDelete {
            slot: SlotId(0),
            old: tuple_image(MAX_TUPLE_LEN + 1),
        },
        multi(1, TupleFlags::NONE, &[&[0; MAX_TUPLE_LEN + 1]]),
        multi(u16::MAX, TupleFlags::NONE, &[b"a", b"b"]),
        Payload::HeapMultiRemove {
            first: SlotId(u16::MAX - 1),
            count: 3,
        },
        Payload::OverflowWrite {
            index: 0,
            next: 0,
            chunk: vec![0; CHUNK_CAPACITY + 1],
        },
        Payload::PageDelta {
            ranges: vec![(8000, vec![0; 193])],
        },
        Payload::PageCompaction {
            relocations: vec![Relocation {
                slot: SlotId(0),
                old_offset: 8100,
                new_offset: 0,
                len: 100,
            }],
        },
        Payload::Compensation {
            undo_next: LSN,
            action: Box::new(Payload::Commit { commit_time_us: 1 }),
        },
        Payload::Compensation {
            undo_next: LSN,
            action: Box::new(Payload::Compensation {
                undo_next: LSN,
                action: Box::new(Payload::OverflowFree),
            }),
        },
    ];
    for p in cases {
        let mut out = vec![7, 7];
        let e = p.encode(&mut out).unwrap_err();
        assert!(
            matches!(e, WalError::BadPayload { lsn: Lsn::ZERO, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("cannot encode"), "{e}");
        assert_eq!(out, [7, 7], "a failed encode left bytes behind");
    }
    let e = Payload::Padding {
        len: MAX_PAYLOAD_SIZE + 1,
    }
    .to_bytes()
    .unwrap_err();
    assert!(matches!(e, WalError::RecordTooLarge { .. }), "{e}");
    let name = Payload::RelationCreate {
        relation: RelationId(1),
        name: "n".repeat(MAX_NAME_LEN),
    };
    assert_eq!(enc(&name).len(), 5 + MAX_NAME_LEN);
    assert_eq!(
        Payload::Padding {
            len: MAX_PAYLOAD_SIZE
        }
        .to_bytes()
        .unwrap()
        .len(),
        MAX_PAYLOAD_SIZE
    );
}

#[test]
fn summaries_read_like_the_inspector_prints_them() {
    let insert = Payload::HeapInsert {
        slot: SlotId(3),
        flags: TupleFlags::NONE,
        tuple: vec![0; 120],
    };
    assert_eq!(insert.summary(), "slot 3, 120 B, flags -");
    let clr = Payload::Compensation {
        undo_next: LSN,
        action: Box::new(Payload::HeapDelete {
            slot: SlotId(4),
            old: SlotImage::Tuple {
                flags: TupleFlags::OVERFLOW_HEAD,
                bytes: vec![0; 24],
            },
        }),
    };
    assert_eq!(
        clr.summary(),
        "undo-next 0/00001234, heap-delete slot 4, was tuple 24 B, flags overflow-head"
    );
    assert_eq!(
        checkpoint_end(12, 3).summary(),
        "12 dirty pages, 3 txns, begin 0/00001000, redo 0/00000FA0, undo 0/00000BB8, next txn 42"
    );
    let forward = Payload::HeapForward {
        slot: SlotId(1),
        target: TupleId::new(PageId(8), SlotId(2)),
        old: tuple_image(10),
    };
    assert_eq!(
        forward.summary(),
        "slot 1 -> 8.2, was tuple 10 B, flags moved-in"
    );
    assert_eq!(
        multi(3, TupleFlags::NONE, &[&[1; 100], &[2; 8]]).summary(),
        "slots 3..=4, 2 tuples, 108 B, flags -"
    );
    assert_eq!(
        multi(7, TupleFlags::MOVED_IN, &[b""]).summary(),
        "slot 7, 1 tuple, 0 B, flags moved-in"
    );
    let undone = Payload::Compensation {
        undo_next: LSN,
        action: Box::new(Payload::HeapMultiRemove {
            first: SlotId(3),
            count: 12,
        }),
    };
    assert_eq!(
        undone.summary(),
        "undo-next 0/00001234, heap-multi-remove slots 3..=14"
    );
    let overflow = Payload::OverflowWrite {
        index: 2,
        next: NO_PAGE,
        chunk: vec![1; 10],
    };
    assert_eq!(overflow.summary(), "chunk 2, 10 B, next page none");
    let created = Payload::RelationCreate {
        relation: RelationId(5),
        name: "orders\n".into(),
    };
    assert_eq!(created.summary(), "relation 5 \"orders\\n\"");
    let clr_free = Payload::Compensation {
        undo_next: Lsn::ZERO,
        action: Box::new(Payload::OverflowFree),
    };
    assert_eq!(clr_free.summary(), "undo-next 0/00000000, overflow-free");
    assert_eq!(Payload::Begin.summary(), "");
    for p in samples() {
        assert!(!p.summary().contains('\n'), "{p:?}");
    }
}

#[test]
fn classification_helpers() {
    for p in samples() {
        let k = p.kind();
        assert_eq!(p.page_changing(), is_page_changing(k));
        if let Payload::Compensation { action, .. } = &p {
            assert!(p.page_changing() && !p.needs_undo());
            assert!(action.page_changing() && is_clr_action(action.kind()));
            assert_eq!(p.undo_next(), Some(LSN));
        } else {
            assert_eq!(p.undo_next(), None);
        }
    }
    assert!(!Payload::Begin.page_changing());
    assert!(!Payload::Padding { len: 3 }.page_changing());
    let check = Payload::PageCheck {
        of: LSN,
        image: heap_page(),
    };
    assert!(!check.page_changing() && !check.needs_undo() && !check.formats_page());
    assert!(Payload::HeapFreeSlot { slot: SlotId(1) }.page_changing());
    assert!(!Payload::HeapFreeSlot { slot: SlotId(1) }.needs_undo());
    let undone: Vec<RecordType> = samples()
        .iter()
        .filter(|p| p.needs_undo())
        .map(Payload::kind)
        .collect();
    assert!(
        !Payload::HeapMultiRemove {
            first: SlotId(1),
            count: 2
        }
        .needs_undo()
    );
    for k in [
        RecordType::HeapInsert,
        RecordType::HeapMultiInsert,
        RecordType::HeapDelete,
        RecordType::HeapUpdate,
        RecordType::HeapForward,
        RecordType::OverflowWrite,
    ] {
        assert!(undone.contains(&k), "{k:?}");
    }
    assert!(undone.iter().all(|k| is_clr_action(*k)));
}

// --- property tests ---

fn arb_flags() -> impl Strategy<Value = TupleFlags> {
    (0u8..4).prop_map(|b| TupleFlags::from_bits(b).unwrap())
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn arb_slot_image() -> impl Strategy<Value = SlotImage> {
    prop_oneof![
        (arb_flags(), arb_bytes(200)).prop_map(|(flags, bytes)| SlotImage::Tuple { flags, bytes }),
        (any::<u32>(), any::<u16>())
            .prop_map(|(p, s)| SlotImage::Forward(TupleId::new(PageId(p), SlotId(s)))),
    ]
}

/// A page image as decoding returns it: hole (if any) zeroed.
fn arb_image() -> impl Strategy<Value = Box<[u8; PAGE_SIZE]>> {
    (0u8..6, 0u16..8300, 0u16..8300, any::<u8>()).prop_map(|(t, lower, upper, seed)| {
        let mut img = Box::new([0u8; PAGE_SIZE]);
        for (i, b) in img.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
        img[offsets::PAGE_TYPE] = t;
        put_u16(&mut img[..], offsets::LOWER, lower);
        put_u16(&mut img[..], offsets::UPPER, upper);
        let (off, len) = super::encode::image_hole(&img);
        img[off..off + len].fill(0);
        img
    })
}

fn arb_page_action() -> impl Strategy<Value = Payload> {
    let slot = any::<u16>().prop_map(SlotId);
    prop_oneof![
        (arb_bytes(40), arb_bytes(60), any::<bool>()).prop_map(|(key, rest, insert)| {
            if insert {
                Payload::TreeInsert { key, rest }
            } else {
                Payload::TreeDelete { key, rest }
            }
        }),
        arb_image().prop_map(|image| Payload::PageImage { image }),
        prop::collection::vec((any::<u16>(), arb_bytes(40)), 0..6).prop_map(|v| {
            let ranges = v
                .into_iter()
                .map(|(o, b)| ((usize::from(o) % (PAGE_SIZE - b.len() + 1)) as u16, b))
                .collect();
            Payload::PageDelta { ranges }
        }),
        (0u8..5).prop_map(|t| Payload::PageInit {
            page_type: PageType::from_u8(t).unwrap()
        }),
        (slot.clone(), arb_flags(), arb_bytes(300))
            .prop_map(|(slot, flags, tuple)| Payload::HeapInsert { slot, flags, tuple }),
        (
            any::<u16>(),
            arb_flags(),
            prop::collection::vec(arb_bytes(120), 0..6)
        )
            .prop_map(|(first, flags, tuples)| {
                // The run's last slot stays within u16.
                let first = first.min(u16::MAX - tuples.len() as u16);
                let tuples: Vec<&[u8]> = tuples.iter().map(Vec::as_slice).collect();
                multi(first, flags, &tuples)
            }),
        (any::<u16>(), any::<u16>()).prop_map(|(first, count)| Payload::HeapMultiRemove {
            first: SlotId(first.min(u16::MAX - count.saturating_sub(1))),
            count,
        }),
        (slot.clone(), arb_slot_image()).prop_map(|(slot, old)| Payload::HeapDelete { slot, old }),
        (slot.clone(), arb_slot_image(), arb_flags(), arb_bytes(300)).prop_map(
            |(slot, old, new_flags, new)| Payload::HeapUpdate {
                slot,
                old,
                new_flags,
                new
            }
        ),
        (slot.clone(), any::<(u32, u16)>(), arb_slot_image()).prop_map(|(slot, (p, s), old)| {
            Payload::HeapForward {
                slot,
                target: TupleId::new(PageId(p), SlotId(s)),
                old,
            }
        }),
        slot.clone().prop_map(|slot| Payload::HeapFreeSlot { slot }),
        prop::collection::vec(any::<(u16, u16, u16, u16)>(), 0..8).prop_map(|v| {
            let relocations = v
                .into_iter()
                .map(|(s, o, n, l)| {
                    let len = l % 512;
                    let room = PAGE_SIZE as u16 - len + 1;
                    Relocation {
                        slot: SlotId(s),
                        old_offset: o % room,
                        new_offset: n % room,
                        len,
                    }
                })
                .collect();
            Payload::PageCompaction { relocations }
        }),
        (any::<u32>(), any::<u32>(), arb_bytes(300))
            .prop_map(|(index, next, chunk)| Payload::OverflowWrite { index, next, chunk }),
        Just(Payload::OverflowFree),
    ]
}

fn arb_other() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (0usize..100).prop_map(|len| Payload::Padding { len }),
        (any::<u64>(), arb_image())
            .prop_map(|(of, image)| Payload::PageCheck { of: Lsn(of), image }),
        Just(Payload::Begin),
        any::<u64>().prop_map(|commit_time_us| Payload::Commit { commit_time_us }),
        Just(Payload::Abort),
        (any::<u64>(), arb_page_action()).prop_map(|(u, a)| Payload::Compensation {
            undo_next: Lsn(u),
            action: Box::new(a)
        }),
        Just(Payload::CheckpointBegin),
        any::<[u64; 6]>().prop_map(|[b, n, r, u, d, a]| Payload::CheckpointEnd {
            begin_lsn: Lsn(b),
            next_txn: TxnId(n),
            redo_start: Lsn(r),
            undo_start: Lsn(u),
            dirty_pages: d,
            active_txns: a,
        }),
        (any::<u32>(), "\\PC{0,60}").prop_map(|(r, name)| Payload::RelationCreate {
            relation: RelationId(r),
            name
        }),
        any::<u32>().prop_map(|r| Payload::RelationDrop {
            relation: RelationId(r)
        }),
    ]
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![arb_page_action(), arb_other()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_payloads_round_trip(p in arb_payload()) {
        let bytes = enc(&p);
        prop_assert_eq!(bytes.len(), p.encoded_len());
        let back = Payload::decode(p.kind(), &bytes, LSN).unwrap();
        prop_assert_eq!(&back, &p);
        prop_assert_eq!(enc(&back), bytes);
    }

    #[test]
    fn arbitrary_bytes_decode_or_fail_cleanly(
        kind in prop::sample::select(RecordType::ALL),
        bytes in arb_bytes(64),
    ) {
        if let Ok(p) = Payload::decode(kind, &bytes, LSN) {
            prop_assert_eq!(p.kind(), kind);
            prop_assert_eq!(enc(&p), bytes);
            let _ = p.summary();
        }
    }
}

#[test]
fn the_schema_table_walks_every_sample_exactly() {
    use super::schema::walk;
    let mut payloads = samples();
    payloads.extend(
        page_actions()
            .into_iter()
            .filter(|a| is_clr_action(a.kind()))
            .map(|a| Payload::Compensation {
                undo_next: Lsn(77),
                action: Box::new(a),
            }),
    );
    payloads.push(checkpoint_end(3, 2));
    payloads.push(Payload::Padding { len: 17 });
    for p in payloads {
        let bytes = enc(&p);
        assert_eq!(
            walk(p.kind(), &bytes),
            Ok(bytes.len()),
            "{}: the schema and the codec disagree",
            p.kind().name()
        );
    }
    // A table that drifted would be caught: a short input is an error.
    let bytes = enc(&samples()[0]);
    if !bytes.is_empty() {
        assert!(walk(samples()[0].kind(), &bytes[..bytes.len() - 1]).is_err());
    }
}

/// Invariant 15: the checkpoint-end record has one size whatever the
/// tables it describes. A buffer pool of 4 GiB of dirty pages (524,288
/// pages of 8 KiB) and a million running transactions make the same
/// 48-byte payload, far inside the smallest segment.
#[test]
fn checkpoint_end_is_fixed_size_for_any_table() {
    let pages_in_4_gib = (4u64 << 30) / PAGE_SIZE as u64;
    for (dirty, txns) in [(0, 0), (pages_in_4_gib, 1_000_000), (u64::MAX, u64::MAX)] {
        let p = checkpoint_end(dirty, txns);
        let bytes = enc(&p);
        assert_eq!(bytes.len(), 48);
        assert_eq!(p.encoded_len(), 48);
        assert!(RECORD_HEADER_SIZE + bytes.len() <= MAX_RECORD_SIZE);
        assert_eq!(
            Payload::decode(RecordType::CheckpointEnd, &bytes, LSN).unwrap(),
            p
        );
    }
}

/// Invariant 15: the largest payload each record type Keel writes can
/// reach fits in a record, and so in the smallest segment. Each case is
/// the worst its producer can build: tuples of the largest size, a page
/// image with no hole, a delta rewriting the whole page, a compaction of
/// as many slots as a page can hold, a full overflow chunk, the longest
/// relation name, and CLRs wrapping each.
#[test]
fn every_record_keel_writes_fits_in_the_smallest_segment() {
    let tuple = |len: usize| SlotImage::Tuple {
        flags: TupleFlags::NONE,
        bytes: vec![7; len],
    };
    let max_slots = PAGE_SIZE / 4;
    let worst = vec![
        Payload::PageImage { image: full_page() },
        Payload::TreeSplit {
            keep: 1,
            sep: vec![1; crate::page::tree::MAX_KEY_LEN],
            right: PageId(4),
            image: holeless_leaf(4),
        },
        Payload::PageCheck {
            of: LSN,
            image: full_page(),
        },
        Payload::PageDelta {
            ranges: vec![(0, vec![1; PAGE_SIZE])],
        },
        Payload::HeapInsert {
            slot: SlotId(1),
            flags: TupleFlags::NONE,
            tuple: vec![1; MAX_TUPLE_LEN],
        },
        // What the heap puts on one page in one record: the most of its
        // smallest tuples (6 bytes and a slot each), or its largest.
        multi(0, TupleFlags::NONE, &vec![&[5u8; 6][..]; PAGE_SIZE / 10]),
        multi(0, TupleFlags::NONE, &[&[5; MAX_TUPLE_LEN]]),
        Payload::HeapMultiRemove {
            first: SlotId(0),
            count: u16::MAX,
        },
        Payload::HeapDelete {
            slot: SlotId(1),
            old: tuple(MAX_TUPLE_LEN),
        },
        Payload::HeapUpdate {
            slot: SlotId(1),
            old: tuple(MAX_TUPLE_LEN),
            new_flags: TupleFlags::NONE,
            new: vec![2; MAX_TUPLE_LEN],
        },
        Payload::HeapForward {
            slot: SlotId(1),
            target: TupleId::new(PageId(1), SlotId(1)),
            old: tuple(MAX_TUPLE_LEN),
        },
        Payload::PageCompaction {
            relocations: (0..max_slots)
                .map(|i| crate::page::Relocation {
                    slot: SlotId(i as u16),
                    old_offset: 100,
                    new_offset: 200,
                    len: 8,
                })
                .collect(),
        },
        Payload::OverflowWrite {
            index: u32::MAX,
            next: 1,
            chunk: vec![3; CHUNK_CAPACITY],
        },
        Payload::RelationCreate {
            relation: RelationId(1),
            name: "n".repeat(MAX_NAME_LEN),
        },
        checkpoint_end(u64::MAX, u64::MAX),
    ];
    let clrs: Vec<Payload> = worst
        .iter()
        .filter(|p| is_clr_action(p.kind()))
        .map(|p| Payload::Compensation {
            undo_next: LSN,
            action: Box::new(p.clone()),
        })
        .collect();
    for p in worst.iter().chain(&clrs) {
        let len = RECORD_HEADER_SIZE + enc(p).len();
        assert!(
            len <= MAX_RECORD_SIZE,
            "{}: {len} bytes > {MAX_RECORD_SIZE}",
            p.kind().name()
        );
    }
}

#[test]
fn a_multi_page_image_names_each_page_once_and_rightly() {
    let free = |id: u32| {
        let mut p = Box::new([0u8; PAGE_SIZE]);
        crate::page::init_page(&mut p[..], PageId(id), PageType::Free).unwrap();
        p
    };
    let twice = Payload::MultiPageImage {
        images: vec![(PageId(3), free(3)), (PageId(3), free(3))],
    };
    let (at, why) = bad(RecordType::MultiPageImage, &enc(&twice));
    assert!(at > 1 && why.contains("page 3"), "{at} {why}");
    let misnamed = Payload::MultiPageImage {
        images: vec![(PageId(3), free(4))],
    };
    let (at, why) = bad(RecordType::MultiPageImage, &enc(&misnamed));
    assert!(at == 1 && why.contains("naming page 4"), "{at} {why}");
    let many = Payload::MultiPageImage {
        images: (0..5).map(|i| (PageId(i), free(i))).collect(),
    };
    assert!(many.to_bytes().is_err());
}

#[test]
fn a_tree_split_keeps_an_item_and_carries_a_tree_node_naming_its_right_page() {
    let split = |keep: u16, right: u32, image: Box<[u8; PAGE_SIZE]>| Payload::TreeSplit {
        keep,
        sep: b"m".to_vec(),
        right: PageId(right),
        image,
    };
    // Encoding refuses what decoding would.
    assert!(split(0, 6, tree_node(6, 0)).to_bytes().is_err());
    assert!(split(1, 7, tree_node(6, 0)).to_bytes().is_err());
    let mut free = Box::new([0u8; PAGE_SIZE]);
    crate::page::init_page(&mut free[..], PageId(6), PageType::Free).unwrap();
    assert!(split(1, 6, free.clone()).to_bytes().is_err());
    // Bytes that break each rule fail at the payload's start, saying which.
    let good = enc(&split(2, 6, tree_node(6, 1)));
    let mut zero_keep = good.clone();
    zero_keep[..2].copy_from_slice(&0u16.to_le_bytes());
    let (at, why) = bad(RecordType::TreeSplit, &zero_keep);
    assert!(at == 0 && why.contains("keeps no item"), "{at} {why}");
    let mut misnamed = good.clone();
    misnamed[5..9].copy_from_slice(&7u32.to_le_bytes());
    let (at, why) = bad(RecordType::TreeSplit, &misnamed);
    assert!(at == 0 && why.contains("names page 6"), "{at} {why}");
    let mut untyped = good.clone();
    // The image starts after keep, the high key and the page id (9 bytes)
    // and its hole bounds (4); the page type lies before the hole.
    untyped[13 + offsets::PAGE_TYPE] = PageType::Heap as u8;
    let (at, why) = bad(RecordType::TreeSplit, &untyped);
    assert!(at == 0 && why.contains("not a tree node"), "{at} {why}");
    for cut in 0..good.len() {
        assert!(Payload::decode(RecordType::TreeSplit, &good[..cut], LSN).is_err());
    }
}
