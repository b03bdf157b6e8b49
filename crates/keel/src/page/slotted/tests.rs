//! Unit and model tests of slotted pages.

use super::*;
use crate::page::{seal, verify};

fn new_page(id: u32) -> SlottedPage<Vec<u8>> {
    SlottedPage::init(vec![0u8; PAGE_SIZE], PageId(id)).unwrap()
}

fn tid(p: u32, s: u16) -> TupleId {
    TupleId::new(PageId(p), SlotId(s))
}

#[test]
fn insert_get_delete_update() {
    let mut p = new_page(1);
    let a = p.insert(b"alpha", TupleFlags::NONE).unwrap();
    let b = p.insert(b"bravo!!", TupleFlags::NONE).unwrap();
    assert_eq!((a, b), (SlotId(0), SlotId(1)));
    assert_eq!(p.tuple(a).unwrap(), b"alpha");
    p.update(a, b"a much longer alpha", TupleFlags::NONE)
        .unwrap();
    assert_eq!(p.tuple(a).unwrap(), b"a much longer alpha");
    p.update(b, b"b", TupleFlags::NONE).unwrap();
    assert_eq!(p.tuple(b).unwrap(), b"b");
    p.delete(a).unwrap();
    assert_eq!(p.get(a).unwrap(), SlotContent::Dead);
    assert!(matches!(p.tuple(a), Err(PageError::SlotNotLive { .. })));
    assert!(matches!(p.delete(a), Err(PageError::SlotNotLive { .. })));
    assert!(matches!(
        p.get(SlotId(9)),
        Err(PageError::NoSuchSlot { .. })
    ));
    p.validate().unwrap();
    seal(p.bytes.as_mut_slice()).unwrap();
    verify(p.bytes(), PageId(1)).unwrap();
}

#[test]
fn dead_slots_are_reserved_until_freed_then_reused() {
    let mut p = new_page(1);
    for i in 0..4u8 {
        p.insert(&[i; 10], TupleFlags::NONE).unwrap();
    }
    p.delete(SlotId(1)).unwrap();
    assert_eq!(p.insert(b"x", TupleFlags::NONE).unwrap(), SlotId(4));
    p.free_slot(SlotId(1)).unwrap();
    assert_eq!(p.insert(b"y", TupleFlags::NONE).unwrap(), SlotId(1));
    // Freeing trailing slots trims the directory.
    p.delete(SlotId(4)).unwrap();
    p.delete(SlotId(3)).unwrap();
    p.free_slot(SlotId(4)).unwrap();
    assert_eq!(p.slot_count(), 4);
    p.free_slot(SlotId(3)).unwrap();
    assert_eq!(p.slot_count(), 3);
    p.validate().unwrap();
    assert!(matches!(
        p.free_slot(SlotId(0)),
        Err(PageError::SlotNotLive { .. })
    ));
}

#[test]
fn insert_at_restores_exact_addresses() {
    let mut p = new_page(2);
    p.insert_at(SlotId(3), b"three", TupleFlags::NONE).unwrap();
    assert_eq!(p.slot_count(), 4);
    assert_eq!(p.get(SlotId(1)).unwrap(), SlotContent::Free);
    assert_eq!(p.insert(b"zero", TupleFlags::NONE).unwrap(), SlotId(0));
    p.validate().unwrap();
    p.delete(SlotId(3)).unwrap();
    p.insert_at(SlotId(3), b"back", TupleFlags::NONE).unwrap();
    assert_eq!(p.tuple(SlotId(3)).unwrap(), b"back");
    assert!(p.insert_at(SlotId(0), b"taken", TupleFlags::NONE).is_err());
    p.validate().unwrap();
}

#[test]
fn runs_fill_free_slots_then_the_end_and_are_removed_whole() {
    let mut p = new_page(5);
    for i in 0..7u8 {
        p.insert(&[i; 10], TupleFlags::NONE).unwrap();
    }
    for s in [1u16, 2, 4] {
        p.delete(SlotId(s)).unwrap();
        p.free_slot(SlotId(s)).unwrap();
    }
    p.delete(SlotId(5)).unwrap();
    // Free slots 1 and 2 are consecutive; slot 3 is in use: the run stops.
    let values = [&b"a"[..], b"bb", b"ccc"];
    let lens = values.iter().map(|v| v.len());
    assert_eq!(p.plan_run(lens, 0), (SlotId(1), 2));
    let run = values[..2].iter().copied();
    p.insert_run_at(SlotId(1), TupleFlags::NONE, run).unwrap();
    assert_eq!(p.tuple(SlotId(2)).unwrap(), b"bb");
    // Slot 5 is dead (kept for a rollback): a run from free slot 4 stops.
    assert_eq!(p.plan_run([5, 5, 5], 0), (SlotId(4), 1));
    p.free_slot(SlotId(5)).unwrap();
    assert_eq!(p.plan_run([5, 5, 5], 0), (SlotId(4), 2));
    // Reservations shrink the room: nothing fits.
    assert_eq!(p.plan_run([5], p.contiguous_free()), (SlotId(4), 0));
    let run = [&b"x"[..], b"y"];
    p.insert_run_at(SlotId(4), TupleFlags::MOVED_IN, run)
        .unwrap();
    // Then new slots at the end.
    assert_eq!(p.plan_run([1, 2], 0), (SlotId(7), 2));
    let run = [&b"w"[..], b"z"];
    p.insert_run_at(SlotId(7), TupleFlags::MOVED_IN, run)
        .unwrap();
    assert_eq!(p.slot_count(), 9);
    let last = SlotContent::Tuple {
        bytes: b"z",
        flags: TupleFlags::MOVED_IN,
    };
    assert_eq!(p.get(SlotId(8)).unwrap(), last);
    p.validate().unwrap();
    // A slot in use, or no room, refuses the run, and nothing changes.
    let before = p.bytes().to_vec();
    let run = [&b"q"[..], b"r"];
    assert!(matches!(
        p.insert_run_at(SlotId(8), TupleFlags::NONE, run),
        Err(PageError::SlotNotLive { .. })
    ));
    let run = [&[0u8; 8000][..]];
    assert!(p.insert_run_at(SlotId(20), TupleFlags::NONE, run).is_err());
    assert_eq!(p.bytes(), &before[..]);
    // Removing the run at the end trims the directory; one in the middle
    // leaves its slots free.
    p.remove_run(SlotId(7), 2).unwrap();
    assert_eq!(p.slot_count(), 7);
    p.remove_run(SlotId(4), 2).unwrap();
    assert_eq!(p.get(SlotId(5)).unwrap(), SlotContent::Free);
    assert!(matches!(
        p.remove_run(SlotId(0), 5),
        Err(PageError::SlotNotLive { .. })
    ));
    assert!(p.remove_run(SlotId(u16::MAX), 2).is_err());
    assert_eq!(p.slot_count(), 7);
    p.validate().unwrap();
}

#[test]
fn forward_pointers_replace_tuples_in_place() {
    let mut p = new_page(3);
    let s = p.insert(b"", TupleFlags::NONE).unwrap();
    assert_eq!(p.tuple(s).unwrap(), b"");
    let before = p.contiguous_free();
    p.set_forward(s, tid(9, 4)).unwrap();
    assert_eq!(
        p.contiguous_free(),
        before,
        "a forward pointer fits in any allocation"
    );
    assert_eq!(p.get(s).unwrap(), SlotContent::Forward(tid(9, 4)));
    p.update(s, b"home again", TupleFlags::NONE).unwrap();
    assert_eq!(p.tuple(s).unwrap(), b"home again");
    p.validate().unwrap();
}

#[test]
fn full_page_reports_does_not_fit_and_compaction_makes_room() {
    let mut p = new_page(4);
    let mut n = 0;
    while p.insert(&[7u8; 100], TupleFlags::NONE).is_ok() {
        n += 1;
    }
    assert_eq!(n, (PAGE_SIZE - HEADER_SIZE) / (100 + SLOT_SIZE));
    for s in (0..n).step_by(2) {
        p.delete(SlotId(s as u16)).unwrap();
    }
    assert_eq!(p.fit(150), Fit::AfterCompaction);
    let err = p.insert(&[1u8; 150], TupleFlags::NONE).unwrap_err();
    assert!(
        matches!(err, PageError::DoesNotFit { needed, after_compaction, .. } if needed == 150 + SLOT_SIZE && after_compaction >= needed),
        "{err}"
    );
    let before: Vec<Vec<u8>> = (0..n)
        .map(|s| {
            p.tuple(SlotId(s as u16))
                .map(<[u8]>::to_vec)
                .unwrap_or_default()
        })
        .collect();
    let moved = p.compact();
    assert!(!moved.is_empty());
    assert_eq!(p.stats().fragmented_bytes, 0);
    for (s, old) in before.iter().enumerate() {
        if s % 2 == 1 {
            assert_eq!(p.tuple(SlotId(s as u16)).unwrap(), &old[..]);
        }
    }
    for r in &moved {
        assert!(r.new_offset > r.old_offset);
    }
    p.validate().unwrap();
    assert_eq!(p.fit(150), Fit::Now);
    p.insert(&[1u8; 150], TupleFlags::NONE).unwrap();
    assert_eq!(p.fit(MAX_TUPLE_LEN + 1), Fit::No);
    assert!(matches!(
        p.insert(&vec![0; MAX_TUPLE_LEN + 1], TupleFlags::NONE),
        Err(PageError::TupleTooLarge { .. })
    ));
}

#[test]
fn compaction_with_overlapping_moves_preserves_every_byte() {
    // Tuples of distinct content whose moves overlap their own old bytes.
    let mut p = new_page(5);
    let vals: Vec<Vec<u8>> = (0..20u8)
        .map(|i| vec![i; 50 + usize::from(i) * 37])
        .collect();
    for v in &vals {
        p.insert(v, TupleFlags::NONE).unwrap();
    }
    for s in [0u16, 3, 4, 10, 17] {
        p.delete(SlotId(s)).unwrap();
    }
    p.update(SlotId(5), &[5u8; 20], TupleFlags::NONE).unwrap();
    p.compact();
    p.validate().unwrap();
    for (i, v) in vals.iter().enumerate() {
        match i {
            0 | 3 | 4 | 10 | 17 => assert_eq!(p.get(SlotId(i as u16)).unwrap(), SlotContent::Dead),
            5 => assert_eq!(p.tuple(SlotId(5)).unwrap(), &[5u8; 20]),
            _ => assert_eq!(p.tuple(SlotId(i as u16)).unwrap(), &v[..]),
        }
    }
    // Compacting a compact page moves nothing.
    assert!(p.compact().is_empty());
}

#[test]
fn largest_tuple_fills_an_empty_page() {
    let mut p = new_page(6);
    let s = p
        .insert(&vec![9u8; MAX_TUPLE_LEN], TupleFlags::NONE)
        .unwrap();
    assert_eq!(p.contiguous_free(), 0);
    assert_eq!(p.tuple(s).unwrap().len(), MAX_TUPLE_LEN);
    p.validate().unwrap();
}

fn corrupt(mut p: SlottedPage<Vec<u8>>, at: usize, bytes: &[u8]) -> Result<(), PageError> {
    p.bytes[at..at + bytes.len()].copy_from_slice(bytes);
    seal(&mut p.bytes).unwrap();
    verify(&p.bytes, PageId(8)).map(|_| ())
}

#[test]
fn validation_names_page_and_problem() {
    let mut p = new_page(8);
    p.insert(&[1u8; 100], TupleFlags::NONE).unwrap();
    p.insert(&[2u8; 100], TupleFlags::NONE).unwrap();
    let slot0 = HEADER_SIZE;
    let slot1 = HEADER_SIZE + SLOT_SIZE;
    let off1 = p.slot(SlotId(1)).unwrap().offset;
    let tuple_word = |off: u16| ((2u16 << 13) | off).to_le_bytes();
    let cases: Vec<(usize, Vec<u8>, &str)> = vec![
        // Slot 1 made to point into slot 0's bytes.
        (slot1, tuple_word(off1 + 50).to_vec(), "overlap"),
        // Slot 0 pointing past the end of the page.
        (slot0, tuple_word(8150).to_vec(), "outside the tuple area"),
        // Slot 0 pointing into free space.
        (slot0, tuple_word(100).to_vec(), "outside the tuple area"),
        // Unknown slot kind.
        (
            slot0,
            ((7u16 << 13) | 8000).to_le_bytes().to_vec(),
            "unknown kind",
        ),
        // Unknown flag bits.
        (
            slot0 + 2,
            ((4u16 << 13) | 100).to_le_bytes().to_vec(),
            "unknown flags",
        ),
        // Wrong fragmentation count.
        (
            offsets::FRAG_BYTES,
            5u16.to_le_bytes().to_vec(),
            "fragmented-bytes",
        ),
        // Too many slots for lower.
        (
            offsets::SLOT_COUNT,
            50u16.to_le_bytes().to_vec(),
            "slot directory",
        ),
    ];
    for (at, bytes, needle) in cases {
        let e = corrupt(
            SlottedPage {
                bytes: p.bytes.clone(),
                page_id: PageId(8),
            },
            at,
            &bytes,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(needle) && msg.starts_with("page 8:"),
            "{msg} lacks {needle}"
        );
        assert_eq!(e.class(), crate::ErrorClass::Corruption);
    }
}

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(Vec<u8>),
        InsertAt(u16, Vec<u8>),
        Update(u16, Vec<u8>),
        Forward(u16, u32, u16),
        Delete(u16),
        Free(u16),
        Compact,
        /// A run planned by `plan_run` and inserted by `insert_run_at`.
        InsertRun(Vec<Vec<u8>>),
        /// `insert_run_at` from an arbitrary slot.
        InsertRunAt(u16, Vec<Vec<u8>>),
        RemoveRun(u16, u16),
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..64),
            2 => proptest::collection::vec(any::<u8>(), 64..600),
            1 => proptest::collection::vec(any::<u8>(), 2000..5000),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => bytes().prop_map(Op::Insert),
            1 => (0u16..40, bytes()).prop_map(|(s, b)| Op::InsertAt(s, b)),
            4 => (0u16..40, bytes()).prop_map(|(s, b)| Op::Update(s, b)),
            1 => (0u16..40, any::<u32>(), any::<u16>()).prop_map(|(s, p, t)| Op::Forward(s, p, t)),
            3 => (0u16..40).prop_map(Op::Delete),
            2 => (0u16..40).prop_map(Op::Free),
            1 => Just(Op::Compact),
            2 => proptest::collection::vec(bytes(), 0..30).prop_map(Op::InsertRun),
            1 => (0u16..40, proptest::collection::vec(bytes(), 0..6))
                .prop_map(|(s, v)| Op::InsertRunAt(s, v)),
            1 => (0u16..40, 0u16..8).prop_map(|(s, n)| Op::RemoveRun(s, n)),
        ]
    }

    /// Bytes `values` need inserted into consecutive slots from `first` of
    /// a page with `count` slots.
    fn run_need(first: u16, count: usize, values: &[Vec<u8>]) -> usize {
        let end = match values.len() {
            0 => count,
            n => count.max(usize::from(first) + n),
        };
        values.iter().map(|v| alloc_len(v.len())).sum::<usize>() + (end - count) * SLOT_SIZE
    }

    fn insert_run(p: &mut SlottedPage<Vec<u8>>, model: &mut Vec<M>, values: Vec<Vec<u8>>) {
        let (first, n) = p.plan_run(values.iter().map(Vec::len), 0);
        let expect = model
            .iter()
            .position(|m| *m == M::Free)
            .unwrap_or(model.len());
        assert_eq!(
            usize::from(first.0),
            expect,
            "a run starts at the next insert slot"
        );
        let n = usize::from(n);
        let run = &values[..n];
        p.insert_run_at(first, TupleFlags::NONE, run.iter().map(Vec::as_slice))
            .unwrap();
        if let Some(next) = values.get(n) {
            // The run is the longest that fits: the next slot is in use or
            // the next value has no room.
            let slot = usize::from(first.0) + n;
            let taken = model.get(slot).is_some_and(|m| *m != M::Free);
            let need = alloc_len(next.len())
                + if slot < usize::from(p.slot_count()) {
                    0
                } else {
                    SLOT_SIZE
                };
            assert!(
                taken || need > p.contiguous_free(),
                "the run stopped early at {n}"
            );
        }
        for (i, v) in run.iter().enumerate() {
            set(model, first.0 + i as u16, M::Tuple(v.clone()));
        }
    }

    #[derive(Clone, Debug, PartialEq)]
    enum M {
        Free,
        Dead,
        Tuple(Vec<u8>),
        Fwd(TupleId),
    }

    fn get(model: &[M], s: u16) -> &M {
        model.get(usize::from(s)).unwrap_or(&M::Free)
    }

    fn set(model: &mut Vec<M>, s: u16, v: M) {
        let i = usize::from(s);
        if model.len() <= i {
            model.resize(i + 1, M::Free);
        }
        model[i] = v;
        while model.last() == Some(&M::Free) {
            model.pop();
        }
    }

    fn apply(p: &mut SlottedPage<Vec<u8>>, model: &mut Vec<M>, op: Op) {
        match op {
            Op::Insert(b) => match p.insert(&b, TupleFlags::NONE) {
                Ok(s) => {
                    let expect = model
                        .iter()
                        .position(|m| *m == M::Free)
                        .unwrap_or(model.len());
                    assert_eq!(
                        usize::from(s.0),
                        expect,
                        "insert reuses the lowest free slot"
                    );
                    set(model, s.0, M::Tuple(b));
                }
                Err(PageError::DoesNotFit { .. }) => {}
                Err(e) => panic!("insert: {e}"),
            },
            Op::InsertAt(s, b) => {
                let ok = matches!(get(model, s), M::Free | M::Dead);
                match p.insert_at(SlotId(s), &b, TupleFlags::NONE) {
                    Ok(()) => {
                        assert!(ok);
                        set(model, s, M::Tuple(b));
                    }
                    Err(PageError::DoesNotFit { .. }) => assert!(ok),
                    Err(_) => assert!(!ok),
                }
            }
            Op::Update(s, b) => {
                let ok = matches!(get(model, s), M::Tuple(_) | M::Fwd(_));
                match p.update(SlotId(s), &b, TupleFlags::NONE) {
                    Ok(()) => {
                        assert!(ok);
                        set(model, s, M::Tuple(b));
                    }
                    Err(PageError::DoesNotFit { .. }) => assert!(ok),
                    Err(_) => assert!(!ok),
                }
            }
            Op::Forward(s, page, slot) => {
                let ok = matches!(get(model, s), M::Tuple(_) | M::Fwd(_));
                let target = tid(page, slot);
                assert_eq!(p.set_forward(SlotId(s), target).is_ok(), ok);
                if ok {
                    set(model, s, M::Fwd(target));
                }
            }
            Op::Delete(s) => {
                let ok = matches!(get(model, s), M::Tuple(_) | M::Fwd(_));
                assert_eq!(p.delete(SlotId(s)).is_ok(), ok);
                if ok {
                    set(model, s, M::Dead);
                }
            }
            Op::Free(s) => {
                let ok = *get(model, s) == M::Dead;
                assert_eq!(p.free_slot(SlotId(s)).is_ok(), ok);
                if ok {
                    set(model, s, M::Free);
                }
            }
            Op::Compact => {
                let free = p.total_free();
                p.compact();
                assert_eq!(p.contiguous_free(), free);
            }
            Op::InsertRun(values) => insert_run(p, model, values),
            Op::InsertRunAt(first, values) => {
                let slots_ok = (0..values.len())
                    .all(|i| matches!(get(model, first + i as u16), M::Free | M::Dead));
                let fits = run_need(first, model.len(), &values) <= p.contiguous_free();
                let before = p.bytes().to_vec();
                let run = values.iter().map(Vec::as_slice);
                match p.insert_run_at(SlotId(first), TupleFlags::NONE, run) {
                    Ok(()) => {
                        assert!(slots_ok && fits);
                        for (i, v) in values.into_iter().enumerate() {
                            set(model, first + i as u16, M::Tuple(v));
                        }
                    }
                    Err(e) => {
                        assert!(!(slots_ok && fits), "{e}");
                        assert!(p.bytes() == &before[..], "a refused run changed the page");
                    }
                }
            }
            Op::RemoveRun(first, count) => {
                let ok = (first..first + count).all(|s| matches!(get(model, s), M::Tuple(_)));
                let before = p.bytes().to_vec();
                match p.remove_run(SlotId(first), count) {
                    Ok(()) => {
                        assert!(ok);
                        for s in (first..first + count).rev() {
                            set(model, s, M::Free);
                        }
                    }
                    Err(e) => {
                        assert!(!ok, "{e}");
                        assert!(
                            p.bytes() == &before[..],
                            "a refused removal changed the page"
                        );
                    }
                }
            }
        }
    }

    fn check(p: &mut SlottedPage<Vec<u8>>, model: &[M]) {
        p.validate().unwrap();
        assert_eq!(usize::from(p.slot_count()), model.len());
        for (i, m) in model.iter().enumerate() {
            let got = p.get(SlotId(i as u16)).unwrap();
            let ok = match (m, got) {
                (M::Free, SlotContent::Free) | (M::Dead, SlotContent::Dead) => true,
                (M::Tuple(v), SlotContent::Tuple { bytes, .. }) => v[..] == *bytes,
                (M::Fwd(t), SlotContent::Forward(g)) => *t == g,
                _ => false,
            };
            assert!(ok, "slot {i}: model {m:?}, page {got:?}");
        }
        let used: usize = model
            .iter()
            .map(|m| match m {
                M::Tuple(v) => alloc_len(v.len()),
                M::Fwd(_) => FORWARD_LEN,
                _ => 0,
            })
            .sum();
        assert_eq!(
            p.total_free() + used + model.len() * SLOT_SIZE + HEADER_SIZE,
            PAGE_SIZE
        );
        seal(&mut p.bytes).unwrap();
        verify(&p.bytes, PageId(77)).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn page_matches_vec_model(ops in proptest::collection::vec(op(), 1..150)) {
            let mut p = new_page(77);
            let mut model: Vec<M> = Vec::new();
            for op in ops {
                apply(&mut p, &mut model, op);
                check(&mut p, &model);
            }
        }
    }
}
