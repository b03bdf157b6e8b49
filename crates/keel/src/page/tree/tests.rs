use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::page::verify_structure;

const ID: PageId = PageId(3);

fn empty_leaf() -> Vec<u8> {
    let mut buf = vec![0u8; PAGE_SIZE];
    TreePage::build(&mut buf[..], ID, 0, 0, &[], None).unwrap();
    buf
}

/// Inserts `key` with an inline value where `search` says.
fn put(buf: &mut [u8], key: &[u8], value: &[u8]) -> Result<bool, PageError> {
    let mut p = TreePage::open(buf, ID)?;
    match p.search(key)? {
        Ok(_) => Ok(false),
        Err(i) => p.insert(i, key, &inline_value(value)).map(|()| true),
    }
}

#[test]
fn items_stay_sorted_and_a_full_page_refuses_with_does_not_fit() {
    let mut buf = empty_leaf();
    let mut n = 0u32;
    loop {
        let key = (n.wrapping_mul(2_654_435_761)).to_be_bytes();
        match put(&mut buf, &key, &[7; 100]) {
            Ok(true) => n += 1,
            Ok(false) => unreachable!("keys are distinct"),
            Err(PageError::DoesNotFit { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    // 107-byte items with their slots.
    assert_eq!(
        n as usize,
        (PAGE_SIZE - TREE_HEADER_SIZE) / (107 + TREE_SLOT_SIZE)
    );
    let p = TreePage::open(&buf[..], ID).unwrap();
    p.validate().unwrap();
    let keys: Vec<_> = (0..p.len()).map(|i| p.key(i).unwrap().to_vec()).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(verify_structure(&buf, ID).unwrap(), PageType::TreeLeaf);
}

#[test]
fn removing_then_inserting_compacts_and_compaction_is_deterministic() {
    let mut a = empty_leaf();
    for k in 0..56u8 {
        put(&mut a, &[k], &[k; 120]).unwrap();
    }
    for k in (0..56u8).step_by(2) {
        let mut p = TreePage::open(&mut a[..], ID).unwrap();
        let i = p.search(&[k]).unwrap().unwrap();
        p.remove(i).unwrap();
    }
    let mut b = a.clone();
    // Needs compaction: the free bytes are fragments.
    let big = vec![9u8; 1900];
    let p = TreePage::open(&a[..], ID).unwrap();
    assert!(p.contiguous_free() < 1900 && p.fits(2 + 2 + 1 + 1900));
    put(&mut a, &[200, 1], &big).unwrap();
    put(&mut b, &[200, 1], &big).unwrap();
    assert_eq!(
        a, b,
        "the same insert on the same page gives the same bytes"
    );
    let p = TreePage::open(&a[..], ID).unwrap();
    p.validate().unwrap();
    assert_eq!(p.len(), 29);
}

#[test]
fn internal_pages_route_keys_to_children_and_the_high_key_bounds_the_node() {
    let mut buf = vec![0u8; PAGE_SIZE];
    let c = |n: u32| child_rest(PageId(n));
    let (c1, c2, c3) = (c(10), c(11), c(12));
    let items: Vec<(&[u8], &[u8])> = vec![(b"", &c1), (b"f", &c2), (b"m", &c3)];
    let p = TreePage::build(&mut buf[..], ID, 1, 0, &items, Some((b"t", PageId(20)))).unwrap();
    p.validate().unwrap();
    assert_eq!(p.child_for(b"a").unwrap().1, PageId(10));
    assert_eq!(p.child_for(b"f").unwrap().1, PageId(11));
    assert_eq!(p.child_for(b"l").unwrap().1, PageId(11));
    assert_eq!(p.child_for(b"s").unwrap().1, PageId(12));
    assert!(p.covers(b"s") && !p.covers(b"t"));
    assert_eq!(p.right_link(), Some(PageId(20)));
    assert_eq!(p.find_child(PageId(12)).unwrap(), Some(2));
    assert_eq!(verify_structure(&buf, ID).unwrap(), PageType::TreeInternal);
}

#[test]
fn corrupt_nodes_are_errors_naming_the_page() {
    let mut buf = empty_leaf();
    for k in 0..5u8 {
        put(&mut buf, &[k], b"v").unwrap();
    }
    let bad = |mutate: &dyn Fn(&mut [u8])| {
        let mut b = buf.clone();
        mutate(&mut b);
        let err = TreePage::open(&b[..], ID).and_then(|p| p.validate());
        match err {
            Err(PageError::Corrupted { page_id, .. }) => assert_eq!(page_id, ID),
            other => panic!("expected corruption, got {other:?}"),
        }
    };
    // Keys out of order: swap two slots.
    bad(&|b| {
        let (s, n) = (TREE_HEADER_SIZE, TREE_SLOT_SIZE);
        let (x, y) = (b[s..s + n].to_vec(), b[s + n..s + 2 * n].to_vec());
        b[s..s + n].copy_from_slice(&y);
        b[s + n..s + 2 * n].copy_from_slice(&x);
    });
    // Keys out of order by the slots' offsets only (prefixes in order).
    bad(&|b| {
        let s = TREE_HEADER_SIZE;
        let (x, y) = (
            b[s..s + 4].to_vec(),
            b[s + TREE_SLOT_SIZE..s + TREE_SLOT_SIZE + 4].to_vec(),
        );
        b[s..s + 4].copy_from_slice(&y);
        b[s + TREE_SLOT_SIZE..s + TREE_SLOT_SIZE + 4].copy_from_slice(&x);
    });
    // A slot's key prefix that is not its key's.
    bad(&|b| b[TREE_HEADER_SIZE + 4] ^= 0x01);
    // A high-key prefix on a node with no high key.
    bad(&|b| b[offsets::HIGH_PREFIX] = 1);
    // A slot past the page.
    bad(&|b| put_u16(b, TREE_HEADER_SIZE, 8190));
    // A leaf at level 2.
    bad(&|b| put_u16(b, offsets::LEVEL, 2));
    // A high key without a right link.
    bad(&|b| {
        put_u16(b, offsets::HIGH_OFFSET, 8000);
        put_u16(b, offsets::HIGH_LEN, 1);
    });
    // Unknown flags.
    bad(&|b| put_u16(b, offsets::FLAGS, 0x80));
    // Fragment accounting off.
    bad(&|b| put_u16(b, super::super::header::offsets::FRAG_BYTES, 3));
}

/// Redo opens a node between records without its full validation, so an
/// insert must not trust the count of fragmented bytes: a count larger
/// than the holes is an error naming the page, never a panic; one larger
/// than the item area is refused at open.
#[test]
fn an_insert_into_a_node_with_a_false_count_of_fragmented_bytes_is_an_error() {
    let frag_at = super::super::header::offsets::FRAG_BYTES;
    let mut buf = empty_leaf();
    for k in 0..4u8 {
        put(&mut buf, &[k], &[k; 1990]).unwrap();
    }
    let upper = usize::from(get_u16(&buf, super::super::header::offsets::UPPER));
    let mut bad = buf.clone();
    put_u16(&mut bad, frag_at, (PAGE_SIZE - upper) as u16);
    let mut p = TreePage::open(&mut bad[..], ID).unwrap();
    assert!(p.contiguous_free() < 1000, "the node is nearly full");
    match p.insert(4, &[9; 100], &inline_value(&[1; 900])) {
        Err(PageError::Corrupted { page_id, .. }) => assert_eq!(page_id, ID),
        other => panic!("expected corruption, got {other:?}"),
    }
    let mut bad = buf.clone();
    put_u16(&mut bad, frag_at, 60_000);
    match TreePage::open(&bad[..], ID) {
        Err(PageError::Corrupted { page_id, .. }) => assert_eq!(page_id, ID),
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn meta_pages_name_a_root() {
    let mut buf = vec![0u8; PAGE_SIZE];
    init_meta(&mut buf, PageId(0), PageId(1), 0).unwrap();
    assert_eq!(read_meta(&buf, PageId(0)).unwrap(), (PageId(1), 0));
    put_u32(&mut buf, offsets::META_ROOT, 0);
    assert!(matches!(
        read_meta(&buf, PageId(0)),
        Err(PageError::Corrupted { .. })
    ));
}

#[test]
fn a_tree_of_another_layout_is_refused_by_name() {
    let mut buf = vec![0u8; PAGE_SIZE];
    init_meta(&mut buf, PageId(0), PageId(1), 0).unwrap();
    assert_eq!(
        get_u16(&buf, offsets::META_LAYOUT),
        super::TREE_LAYOUT_VERSION
    );
    // Layout 0 kept zero where the version is.
    put_u16(&mut buf, offsets::META_LAYOUT, 0);
    match read_meta(&buf, PageId(0)) {
        Err(PageError::Corrupted { offset, reason, .. }) => {
            assert_eq!(offset, offsets::META_LAYOUT);
            assert!(reason.contains("tree layout version 0"), "{reason}");
            assert!(
                reason.contains("reads only tree layout version 1"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A node in layout 0: a 48-byte header and 4-byte slots.
    let mut node = vec![0u8; PAGE_SIZE];
    TreePage::build(
        &mut node[..],
        PageId(1),
        0,
        0,
        &[(&b"a"[..], &b"\0x"[..]), (&b"b"[..], &b"\0y"[..])],
        None,
    )
    .unwrap();
    put_u16(&mut node, super::super::header::offsets::LOWER, 48 + 4 * 2);
    match TreePage::open(&node[..], PageId(1)) {
        Err(PageError::Corrupted { reason, .. }) => {
            assert!(reason.contains("tree layout version 0"), "{reason}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a layout-0 node opened"),
    }
}

proptest! {
    /// Random inserts and removes on one leaf agree with a map, and the
    /// page validates after each.
    #[test]
    fn a_leaf_behaves_like_a_sorted_map(
        ops in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(0u8..4, 0..12), 0usize..300),
            1..300,
        )
    ) {
        let mut buf = empty_leaf();
        let mut model = BTreeMap::new();
        for (insert, key, vlen) in ops {
            if insert {
                match put(&mut buf, &key, &vec![1u8; vlen]) {
                    Ok(true) => { model.insert(key, vlen); }
                    Ok(false) => prop_assert!(model.contains_key(&key)),
                    Err(PageError::DoesNotFit { .. }) => {}
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            } else {
                let mut p = TreePage::open(&mut buf[..], ID).unwrap();
                if let Ok(i) = p.search(&key).unwrap() {
                    p.remove(i).unwrap();
                    prop_assert!(model.remove(&key).is_some());
                } else {
                    prop_assert!(!model.contains_key(&key));
                }
            }
            let p = TreePage::open(&buf[..], ID).unwrap();
            p.validate().unwrap();
            let got: Vec<(Vec<u8>, usize)> = p
                .items()
                .unwrap()
                .into_iter()
                .map(|(k, r)| (k, r.len() - 1))
                .collect();
            let want: Vec<(Vec<u8>, usize)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
            prop_assert_eq!(got, want);
        }
    }

    /// No bytes make `open` or `validate` panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), PAGE_SIZE)) {
        let mut b = bytes;
        b[..40].copy_from_slice(&empty_leaf()[..40]);
        if let Ok(p) = TreePage::open(&b[..], ID) {
            let _ = p.validate();
            for i in 0..p.len() {
                let _ = p.item(i);
            }
        }
    }
}

/// The move-right test decided by the header's high-key prefix agrees with
/// comparing whole keys, for keys that tie with the prefix, are shorter
/// than it, or end in zero bytes.
#[test]
fn covers_agrees_with_comparing_whole_keys() {
    let highs: [&[u8]; 4] = [b"", b"\x00", b"abcdefgh", b"abcdefghij"];
    let keys: [&[u8]; 9] = [
        b"",
        b"\x00",
        b"\x00\x00",
        b"abc",
        b"abcdefg",
        b"abcdefgh",
        b"abcdefgh\x00",
        b"abcdefghij",
        b"abcdefghik",
    ];
    for high in highs {
        let mut buf = vec![0u8; PAGE_SIZE];
        let p = TreePage::build(&mut buf[..], ID, 0, 0, &[], Some((high, PageId(9)))).unwrap();
        p.validate().unwrap();
        for key in keys {
            assert_eq!(p.covers(key), key < high, "key {key:?}, high key {high:?}");
        }
    }
}

#[test]
fn split_left_keeps_the_first_items_as_build_would_and_refuses_a_diverged_cut() {
    // A leaf with fragmentation (an item removed) and a high key.
    let mut buf = vec![0u8; PAGE_SIZE];
    let items: Vec<(Vec<u8>, Vec<u8>)> = (0..10u8)
        .map(|i| (vec![b'a' + i; 3], inline_value(&[i; 50])))
        .collect();
    let refs: Vec<(&[u8], &[u8])> = items.iter().map(|(k, r)| (&k[..], &r[..])).collect();
    TreePage::build(&mut buf[..], ID, 0, 0, &refs, Some((b"zzz", PageId(9)))).unwrap();
    TreePage::open(&mut buf[..], ID).unwrap().remove(2).unwrap();
    let left: Vec<(&[u8], &[u8])> = refs.iter().copied().filter(|(k, _)| k[0] != b'c').collect();
    let before = buf.clone();
    // A cut that is not where the log says fails and changes nothing.
    for (keep, sep, right) in [
        (0, &b"aaa"[..], PageId(7)),
        (9, b"jjj", PageId(7)),
        (4, b"eee", PageId(7)),
        (4, b"fff", NO_PAGE_ID),
        (4, b"fff", ID),
    ] {
        let err = TreePage::open(&mut buf[..], ID)
            .unwrap()
            .split_left(keep, sep, right);
        assert!(
            matches!(err, Err(PageError::Corrupted { .. })),
            "{keep} {sep:?}: {err:?}"
        );
        assert_eq!(buf, before);
    }
    TreePage::open(&mut buf[..], ID)
        .unwrap()
        .split_left(4, b"fff", PageId(7))
        .unwrap();
    let want = built_by_inserts(
        ID,
        0,
        FLAG_INCOMPLETE_SPLIT,
        &left[..4],
        Some((b"fff", PageId(7))),
    )
    .unwrap();
    assert_eq!(
        buf, want,
        "the same bytes as a node built from the kept items"
    );
    TreePage::open(&buf[..], ID).unwrap().validate().unwrap();
}

const NO_PAGE_ID: PageId = PageId(NO_PAGE);

/// Node `id` as an all-zero page formatted by `init_page`, its tree
/// fields set and its items added one `insert` at a time: the bytes
/// `node_image` (and so `build` and `split_left`) must give.
fn built_by_inserts(
    id: PageId,
    level: u16,
    flags: u16,
    items: &[(&[u8], &[u8])],
    high: Option<(&[u8], PageId)>,
) -> Result<Vec<u8>, PageError> {
    use crate::page::header::offsets as h;
    let mut b = vec![0u8; PAGE_SIZE];
    let kind = match level {
        0 => PageType::TreeLeaf,
        _ => PageType::TreeInternal,
    };
    init_page(&mut b, id, kind)?;
    put_u16(&mut b, offsets::LEVEL, level);
    put_u16(&mut b, offsets::FLAGS, flags);
    let mut upper = PAGE_SIZE;
    if let Some((key, right)) = high {
        upper -= key.len();
        b[upper..].copy_from_slice(key);
        put_u16(&mut b, offsets::HIGH_OFFSET, upper as u16);
        put_u16(&mut b, offsets::HIGH_LEN, key.len() as u16);
        b[offsets::HIGH_PREFIX..offsets::HIGH_PREFIX + KEY_PREFIX_LEN]
            .copy_from_slice(&key_prefix(key));
        put_u32(&mut b, h::NEXT_PAGE, right.0);
    }
    put_u16(&mut b, h::UPPER, upper as u16);
    put_u16(&mut b, h::LOWER, TREE_HEADER_SIZE as u16);
    let mut p = TreePage {
        buf: &mut b[..],
        id,
    };
    for (i, (key, rest)) in items.iter().enumerate() {
        p.insert(i, key, rest)?;
    }
    Ok(b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `node_image` writes each byte once where the reference zeroes the
    /// page and inserts item by item: the same bytes, the same refusals.
    #[test]
    fn a_node_image_is_the_page_built_by_inserts(
        mut keys in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..20), 0usize..400),
            0..40,
        ),
        level in 0u16..3,
        flags in 0u16..2,
        high in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..30)),
    ) {
        keys.sort();
        keys.dedup_by(|a, b| a.0 == b.0);
        let items: Vec<(Vec<u8>, Vec<u8>)> = keys
            .iter()
            .map(|(k, n)| (k.clone(), inline_value(&vec![k.len() as u8; *n])))
            .collect();
        let refs: Vec<(&[u8], &[u8])> = items.iter().map(|(k, r)| (&k[..], &r[..])).collect();
        let high = high.as_deref().map(|k| (k, PageId(11)));
        let got = node_image(ID, level, flags, &refs, high);
        match built_by_inserts(ID, level, flags, &refs, high) {
            Ok(want) => prop_assert_eq!(&got.unwrap()[..], &want[..]),
            Err(PageError::DoesNotFit { .. }) => {
                prop_assert!(matches!(got, Err(PageError::DoesNotFit { .. })), "{:?}", got.map(|_| ()));
            }
            Err(e) => panic!("reference refused: {e}"),
        }
    }

    /// A split of a leaf whose free gap and removed items' bytes hold
    /// other bytes gives the node built from the kept items: its gap is
    /// zero again, whatever the page held.
    #[test]
    fn a_split_left_half_is_built_from_the_kept_items_alone(
        n in 3usize..30,
        removed in 0usize..30,
        junk in any::<u8>(),
        cut in 1usize..29,
    ) {
        let items: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
            .map(|i| (format!("key{i:03}").into_bytes(), inline_value(&[i as u8; 150])))
            .collect();
        let refs: Vec<(&[u8], &[u8])> = items.iter().map(|(k, r)| (&k[..], &r[..])).collect();
        let mut buf = built_by_inserts(ID, 0, 0, &refs, None).unwrap();
        let mut kept: Vec<(&[u8], &[u8])> = refs.clone();
        if removed < n {
            // The removed item's bytes stay on the page as fragmentation.
            TreePage::open(&mut buf[..], ID).unwrap().remove(removed).unwrap();
            kept.remove(removed);
        }
        let p = TreePage::open(&buf[..], ID).unwrap();
        let lower = TREE_HEADER_SIZE + TREE_SLOT_SIZE * p.len();
        buf[lower..lower + 2 * TREE_SLOT_SIZE].fill(junk);
        let p = TreePage::open(&buf[..], ID).unwrap();
        let len = p.len();
        prop_assume!(cut < len);
        let sep = p.key(cut).unwrap().to_vec();
        TreePage::open(&mut buf[..], ID).unwrap().split_left(cut, &sep, PageId(8)).unwrap();
        let want = built_by_inserts(
            ID,
            0,
            FLAG_INCOMPLETE_SPLIT,
            &kept[..cut],
            Some((&sep, PageId(8))),
        )
        .unwrap();
        prop_assert_eq!(&buf[..], &want[..]);
    }
}

/// Keys whose 8-byte prefixes tie in runs (equal first bytes, keys shorter
/// than the prefix, keys ending in zero bytes): `search` finds each key at
/// its index and places every other probe where a search of the sorted
/// keys does.
#[test]
fn search_finds_keys_and_gaps_among_tied_prefixes() {
    let mut keys: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\0".to_vec(),
        b"a".to_vec(),
        b"a\0".to_vec(),
        b"a\0\0".to_vec(),
        b"abcdefg".to_vec(),
        b"abcdefg\0".to_vec(),
        b"abcdefg\0\0".to_vec(),
        b"abcdefgi".to_vec(),
        b"\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
    ];
    for n in 0..40u8 {
        keys.push([&b"abcdefgh"[..], &[n, n]].concat());
        keys.push([&b"user0000"[..], &[b'0' + n % 10, n]].concat());
    }
    keys.sort();
    keys.dedup();
    let mut buf = empty_leaf();
    for k in &keys {
        assert!(put(&mut buf, k, b"v").unwrap());
    }
    let p = TreePage::open(&buf[..], ID).unwrap();
    p.validate().unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(p.search(k).unwrap(), Ok(i), "key {k:?}");
        let mut probes = vec![[&k[..], &[0]].concat(), [&k[..], &[0xff]].concat()];
        if let Some((_, shorter)) = k.split_last() {
            probes.push(shorter.to_vec());
        }
        for probe in probes {
            assert_eq!(
                p.search(&probe).unwrap(),
                keys.binary_search(&probe),
                "probe {probe:?}"
            );
        }
    }
}

proptest! {
    /// The fast checks of `open` and `item` accept exactly what the
    /// field-by-field checks accept, for nodes with a few header or slot
    /// bytes changed.
    #[test]
    fn fast_and_field_by_field_checks_agree(
        internal in any::<bool>(),
        changes in proptest::collection::vec(
            (0usize..TREE_HEADER_SIZE + 3 * TREE_SLOT_SIZE, any::<u8>()),
            1..4,
        ),
    ) {
        let mut buf = vec![0u8; PAGE_SIZE];
        let (c1, c2, c3) = (child_rest(PageId(10)), child_rest(PageId(11)), child_rest(PageId(12)));
        let v = inline_value(b"value");
        let items: Vec<(&[u8], &[u8])> = if internal {
            vec![(b"", &c1), (b"f", &c2), (b"m", &c3)]
        } else {
            vec![(b"a", &v), (b"f", &v), (b"m", &v)]
        };
        TreePage::build(&mut buf[..], ID, u16::from(internal), 0, &items, Some((b"t", PageId(20))))
            .unwrap();
        for (at, byte) in changes {
            buf[at] = byte;
        }
        let slow = TreePage::open_slow(&buf[..], ID);
        prop_assert_eq!(header_ok(&buf), slow.is_ok());
        if let Ok(p) = slow {
            for i in 0..p.len() + 1 {
                let fast = p.item_fast(i);
                let slow = p.item_slow(i);
                prop_assert_eq!(fast.is_some(), slow.is_ok());
                if let (Some(f), Ok(s)) = (fast, slow) {
                    prop_assert_eq!(f, s);
                }
            }
        }
    }
}
