//! Tests of the free space map: unit tests, a model test against a linear
//! search, persistence and corruption, concurrency, and churn on real pages.

use std::sync::{Arc, Barrier};
use std::thread;

use parking_lot::Mutex;
use proptest::prelude::*;

use super::category::EMPTY_PAGE_FREE;
use super::*;
use crate::page::{Fit, PAGE_SIZE, TupleFlags, seal};
use crate::types::SlotId;

use keel_io::sim::Rng;

fn empty_pages(n: u32) -> FreeSpaceMap {
    FreeSpaceMap::rebuild((0..n).map(|p| (PageId(p), EMPTY_PAGE_FREE, EMPTY_PAGE_FREE)))
}

/// The page an error names.
fn named_page(e: &PageError) -> PageId {
    match e {
        PageError::ChecksumMismatch { page_id, .. }
        | PageError::Corrupted { page_id, .. }
        | PageError::WrongPageType { page_id, .. } => *page_id,
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<FreeSpaceMap>();
}

#[test]
fn finds_only_pages_whose_record_covers_the_request() {
    let fsm = FreeSpaceMap::new();
    assert!(fsm.is_empty());
    assert_eq!(fsm.find(10), None);
    fsm.update(PageId(3), 100, 100); // category 3: promises 96 bytes
    assert_eq!(fsm.len(), 1);
    assert_eq!(fsm.recorded(PageId(3)), Some((96, 96)));
    assert_eq!(fsm.find(96), Some((PageId(3), FitKind::Now)));
    assert_eq!(
        fsm.find(97),
        None,
        "rounding down: 100 free bytes promise 96"
    );
    fsm.update(PageId(3), 100, 1000);
    assert_eq!(fsm.find(97), Some((PageId(3), FitKind::AfterCompaction)));
    assert_eq!(fsm.find(993), None);
    assert!(fsm.remove(PageId(3)));
    assert!(!fsm.remove(PageId(3)));
    assert!(!fsm.remove(PageId(99)));
    assert_eq!(fsm.find(1), None);
    assert!(fsm.is_empty());
    fsm.check_invariants().unwrap();
}

#[test]
fn prefers_now_then_best_fit() {
    let fsm = FreeSpaceMap::new();
    fsm.update(PageId(0), 50, 4000); // only after compaction
    fsm.update(PageId(1), 3000, 3000);
    fsm.update(PageId(2), 600, 600);
    fsm.update(PageId(3), 250, 250);
    // 200 fits now on 1, 2 and 3: the tightest (3) is chosen, not 0.
    assert_eq!(fsm.find(200), Some((PageId(3), FitKind::Now)));
    assert_eq!(fsm.find(500), Some((PageId(2), FitKind::Now)));
    assert_eq!(fsm.find(2000), Some((PageId(1), FitKind::Now)));
    assert_eq!(fsm.find(3500), Some((PageId(0), FitKind::AfterCompaction)));
    assert_eq!(fsm.find(5000), None);
}

#[test]
fn largest_tuple_matches_an_empty_page() {
    let fsm = empty_pages(1);
    let biggest = request_bytes(crate::page::MAX_TUPLE_LEN);
    assert_eq!(biggest, EMPTY_PAGE_FREE);
    assert_eq!(fsm.find(biggest), Some((PageId(0), FitKind::Now)));
    assert_eq!(fsm.find(biggest + 1), None);
    fsm.update(PageId(0), EMPTY_PAGE_FREE - 1, EMPTY_PAGE_FREE - 1);
    assert_eq!(fsm.find(biggest), None);
}

#[test]
fn request_counts_the_slot_and_minimum_allocation() {
    assert_eq!(request_bytes(100), 104);
    assert_eq!(request_bytes(0), 10); // 6-byte minimum allocation + slot
}

#[test]
fn update_normalizes_and_ignores_no_change() {
    let fsm = FreeSpaceMap::new();
    fsm.update(PageId(5), 640, 10); // total below contiguous: raised
    assert_eq!(fsm.recorded(PageId(5)), Some((640, 640)));
    assert_eq!(fsm.covered_pages(), 6);
    fsm.update(PageId(5), 650, 660); // same categories
    assert_eq!(fsm.recorded(PageId(5)), Some((640, 640)));
    fsm.update(PageId(5), 0, 0);
    assert_eq!(fsm.categories(PageId(5)).map(|c| c.total), Some(0));
    assert_eq!(fsm.find(0), Some((PageId(5), FitKind::Now)));
    assert_eq!(fsm.find(1), None);
    fsm.check_invariants().unwrap();
}

#[test]
fn truncate_forgets_the_tail() {
    let fsm = empty_pages(10);
    fsm.truncate(4);
    assert_eq!(fsm.len(), 4);
    assert_eq!(fsm.covered_pages(), 4);
    let pages: Vec<PageId> = fsm.snapshot().into_iter().map(|(p, _)| p).collect();
    assert_eq!(pages, (0..4).map(PageId).collect::<Vec<_>>());
    fsm.truncate(10);
    assert_eq!(fsm.len(), 4);
    fsm.check_invariants().unwrap();
}

#[test]
fn cursor_sticks_to_its_page_while_it_has_room() {
    let fsm = empty_pages(8);
    let (mut a, mut b) = (FsmCursor::new(), FsmCursor::default());
    let (pa, _) = fsm.find_with(1000, &mut a).unwrap();
    let (pb, _) = fsm.find_with(1000, &mut b).unwrap();
    assert_ne!(pa, pb);
    assert_eq!(a.page(), Some(pa));
    for _ in 0..5 {
        assert_eq!(fsm.find_with(1000, &mut a), Some((pa, FitKind::Now)));
        assert_eq!(fsm.find_with(1000, &mut b), Some((pb, FitKind::Now)));
    }
    fsm.update(pa, 500, 500);
    let (next, _) = fsm.find_with(1000, &mut a).unwrap();
    assert_ne!(next, pa);
    assert_eq!(a.page(), Some(next));
    fsm.remove(next);
    assert_ne!(fsm.find_with(1000, &mut a).map(|f| f.0), Some(next));
    a.reset();
    assert_eq!(a.page(), None);
}

/// Real heap pages behind the protocol of the module docs.
struct Heap {
    pages: Vec<Vec<u8>>,
    fsm: FreeSpaceMap,
    stale_hints: usize,
    cursor: Option<FsmCursor>,
}

impl Heap {
    fn new(cursor: bool) -> Heap {
        Heap {
            pages: Vec::new(),
            fsm: FreeSpaceMap::new(),
            stale_hints: 0,
            cursor: cursor.then(FsmCursor::new),
        }
    }

    fn page(&mut self, p: PageId) -> SlottedPage<&mut [u8]> {
        SlottedPage::open(&mut self.pages[p.0 as usize][..], p).unwrap()
    }

    fn insert(&mut self, tuple: &[u8]) -> (PageId, SlotId) {
        let need = request_bytes(tuple.len());
        loop {
            let found = match &mut self.cursor {
                Some(c) => self.fsm.find_with(need, c),
                None => self.fsm.find(need),
            };
            let Some((p, _)) = found else {
                let p = PageId(self.pages.len() as u32);
                let page = SlottedPage::init(vec![0u8; PAGE_SIZE], p).unwrap();
                self.fsm.update_from_page(&page);
                self.pages.push(page.into_inner());
                continue;
            };
            let mut page = SlottedPage::open(&mut self.pages[p.0 as usize][..], p).unwrap();
            match page.fit(tuple.len()) {
                Fit::Now => {}
                Fit::AfterCompaction => {
                    page.compact();
                }
                Fit::No => {
                    self.fsm.update_from_page(&page);
                    self.stale_hints += 1;
                    continue;
                }
            }
            let slot = page.insert(tuple, TupleFlags::NONE).unwrap();
            self.fsm.update_from_page(&page);
            return (p, slot);
        }
    }

    fn delete(&mut self, (p, s): (PageId, SlotId)) {
        let mut page = SlottedPage::open(&mut self.pages[p.0 as usize][..], p).unwrap();
        page.delete(s).unwrap();
        page.free_slot(s).unwrap();
        self.fsm.update_from_page(&page);
    }

    fn stats(&self) -> PageStats {
        self.pages
            .iter()
            .enumerate()
            .map(|(i, b)| SlottedPage::open(&b[..], PageId(i as u32)).unwrap().stats())
            .sum()
    }

    /// The map records exactly each page's actual space, rounded down.
    fn check_map(&self) {
        self.fsm.check_invariants().unwrap();
        assert_eq!(self.fsm.len(), self.pages.len());
        for (i, b) in self.pages.iter().enumerate() {
            let page = SlottedPage::open(&b[..], PageId(i as u32)).unwrap();
            page.validate().unwrap();
            let want = Categories {
                contiguous: category(page.contiguous_free()),
                total: category(page.total_free()),
            };
            assert_eq!(self.fsm.categories(PageId(i as u32)), Some(want));
        }
    }
}

/// Delete-heavy churn on real pages: freed space is found and reused, so
/// the relation stays dense instead of growing.
fn churn(cursor: bool) {
    let mut rng = Rng::new(0x5EED ^ u64::from(cursor));
    let mut heap = Heap::new(cursor);
    let mut live: Vec<(PageId, SlotId)> = Vec::new();
    let tuple = |rng: &mut Rng| vec![0xA5u8; 20 + rng.below(280) as usize];
    for _ in 0..6000 {
        let t = tuple(&mut rng);
        live.push(heap.insert(&t));
    }
    let initial_pages = heap.pages.len();
    assert!(heap.stats().fill_factor() >= 0.95, "{}", heap.stats());
    for round in 0..6 {
        let deletes = live.len() / 2;
        for _ in 0..deletes {
            let victim = live.swap_remove(rng.below(live.len() as u64) as usize);
            heap.delete(victim);
        }
        assert!(heap.stats().fill_factor() < 0.6);
        for _ in 0..deletes {
            let t = tuple(&mut rng);
            live.push(heap.insert(&t));
        }
        let stats = heap.stats();
        assert!(
            stats.fill_factor() >= 0.90,
            "round {round} (cursor {cursor}): {stats}"
        );
        assert_eq!(stats.live_tuples as usize, live.len());
    }
    assert!(
        heap.pages.len() <= initial_pages + initial_pages / 20,
        "relation grew from {initial_pages} to {} pages",
        heap.pages.len()
    );
    // The map was told every change, so its hints were never stale.
    assert_eq!(heap.stale_hints, 0);
    heap.check_map();
}

#[test]
fn freed_space_is_reused_after_churn() {
    churn(false);
}

#[test]
fn freed_space_is_reused_after_churn_with_cursor() {
    churn(true);
}

#[test]
fn stale_hints_are_corrected_by_the_protocol() {
    let mut heap = Heap::new(false);
    let first = heap.insert(&[1u8; 100]);
    // Fill page 0, then lie to the map that it is empty.
    while heap.page(first.0).fit(100) != Fit::No {
        heap.insert(&[2u8; 100]);
    }
    heap.fsm.update(PageId(0), EMPTY_PAGE_FREE, EMPTY_PAGE_FREE);
    let (p, _) = heap.insert(&[3u8; 100]);
    assert_eq!(p, PageId(1));
    assert_eq!(heap.stale_hints, 1);
    heap.check_map();
}

#[test]
fn rebuild_from_stats_matches_pages() {
    let mut heap = Heap::new(false);
    let mut rng = Rng::new(7);
    let ids: Vec<_> = (0..500)
        .map(|_| heap.insert(&vec![1u8; 10 + rng.below(500) as usize]))
        .collect();
    for id in ids.iter().step_by(3) {
        heap.delete(*id);
    }
    let stats = heap.pages.iter().enumerate().map(|(i, b)| {
        let id = PageId(i as u32);
        (id, SlottedPage::open(&b[..], id).unwrap().stats())
    });
    let rebuilt = FreeSpaceMap::rebuild_from_stats(stats);
    assert_eq!(rebuilt.snapshot(), heap.fsm.snapshot());
    rebuilt.check_invariants().unwrap();
}

/// Threads asking at the same moment get different pages: every round,
/// four threads meet at a barrier, each asks the map for a page, and then
/// inserts into it under the page's latch (a mutex), recording the change
/// while holding it.
#[test]
fn concurrent_inserters_are_spread_over_pages() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 120;
    let pages: Vec<Mutex<Vec<u8>>> = (0..16u32)
        .map(|p| {
            Mutex::new(
                SlottedPage::init(vec![0u8; PAGE_SIZE], PageId(p))
                    .unwrap()
                    .into_inner(),
            )
        })
        .collect();
    let shared = Arc::new((empty_pages(16), pages, Barrier::new(THREADS)));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let (fsm, pages, barrier) = &*shared;
                let mut got = Vec::new();
                for _ in 0..ROUNDS {
                    barrier.wait();
                    let (p, _) = fsm.find(request_bytes(200)).unwrap();
                    got.push(p);
                    barrier.wait();
                    let mut bytes = pages[p.0 as usize].lock();
                    let mut page = SlottedPage::open(&mut bytes[..], p).unwrap();
                    if page.fit(200) == Fit::Now {
                        page.insert(&[9u8; 200], TupleFlags::NONE).unwrap();
                    }
                    fsm.update_from_page(&page);
                }
                got
            })
        })
        .collect();
    let per_thread: Vec<Vec<PageId>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for round in 0..ROUNDS {
        let mut pages: Vec<PageId> = per_thread.iter().map(|g| g[round]).collect();
        pages.sort();
        pages.dedup();
        assert_eq!(pages.len(), THREADS, "round {round}: threads shared a page");
    }
    // Updates made under the page latch leave the map exact.
    let (fsm, pages, _) = &*shared;
    fsm.check_invariants().unwrap();
    for (i, b) in pages.iter().enumerate() {
        let b = b.lock();
        let page = SlottedPage::open(&b[..], PageId(i as u32)).unwrap();
        assert_eq!(
            fsm.recorded(page.page_id()).map(|r| r.0),
            Some(category_bytes(category(page.contiguous_free())))
        );
    }
}

#[test]
fn unsynchronized_finds_never_repeat_within_a_bucket() {
    let fsm = Arc::new(empty_pages(1000));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let fsm = Arc::clone(&fsm);
            thread::spawn(move || {
                (0..200)
                    .map(|_| fsm.find(500).unwrap().0)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<PageId> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        800,
        "800 finds in a bucket of 1000 pages repeat none"
    );
}

fn sample_map() -> FreeSpaceMap {
    let mut rng = Rng::new(99);
    let fsm = FreeSpaceMap::new();
    for p in 0..9000u32 {
        if p % 11 != 5 {
            let total = rng.below((EMPTY_PAGE_FREE + 1) as u64) as usize;
            fsm.update(PageId(p), rng.below((total + 1) as u64) as usize, total);
        }
    }
    fsm
}

#[test]
fn pages_round_trip() {
    let fsm = sample_map();
    let pages = fsm.to_pages();
    assert_eq!(pages.len(), 3);
    assert_eq!(fsm.page_count(), 3);
    let loaded = FreeSpaceMap::from_pages(&pages).unwrap();
    assert_eq!(loaded.snapshot(), fsm.snapshot());
    assert_eq!(loaded.covered_pages(), 9000);
    assert_eq!(loaded.to_pages(), pages);
    loaded.check_invariants().unwrap();
    for (i, p) in pages.iter().enumerate() {
        crate::page::verify(p, PageId(i as u32)).unwrap();
    }
    let empty = FreeSpaceMap::from_pages(Vec::<Vec<u8>>::new()).unwrap();
    assert!(empty.is_empty());
    assert!(FreeSpaceMap::new().to_pages().is_empty());
}

#[test]
fn every_flipped_byte_is_detected_and_named() {
    let pages = sample_map().to_pages();
    for k in 0..pages.len() {
        for pos in 0..PAGE_SIZE {
            let mut bad = pages.clone();
            bad[k][pos] ^= 0x01;
            let e = FreeSpaceMap::from_pages(&bad).unwrap_err();
            assert!(
                matches!(e, PageError::ChecksumMismatch { page_id, .. } if page_id.0 as usize == k),
                "page {k} byte {pos}: {e}"
            );
        }
    }
}

/// Flips re-sealed (so the checksum passes): every header and body field
/// flip is rejected, naming the page; an entry flip is either rejected or
/// decodes to a map that encodes to exactly the same bytes (the encoding is
/// canonical, so nothing is silently dropped).
#[test]
fn resealed_flips_are_rejected_or_round_trip() {
    use crate::page::header::offsets::CHECKSUM;
    let pages = sample_map().to_pages();
    for pos in 0..PAGE_SIZE {
        for flip in [0x01u8, 0x80] {
            let mut bad = pages.clone();
            bad[1][pos] ^= flip;
            seal(&mut bad[1]).unwrap();
            if pos < page::offsets::CONTIGUOUS && !(CHECKSUM..CHECKSUM + 4).contains(&pos) {
                // A field: the whole file is needed to check `covered pages`.
                let e = FreeSpaceMap::from_pages(&bad).unwrap_err();
                assert_eq!(named_page(&e), PageId(1), "{e}");
                continue;
            }
            match FsmPage::decode(&bad[1], PageId(1)) {
                Err(e) => assert_eq!(named_page(&e), PageId(1), "{e}"),
                Ok(p) => assert_eq!(p.encode(), bad[1], "byte {pos} flip {flip:#x}"),
            }
        }
    }
}

#[test]
fn inconsistent_files_are_rejected_naming_the_page() {
    let pages = sample_map().to_pages();
    let e = FreeSpaceMap::from_pages(&pages[..2]).unwrap_err();
    assert_eq!(named_page(&e), PageId(2));
    assert!(e.to_string().contains("ends after 2 pages"), "{e}");

    let swapped = [&pages[1], &pages[0], &pages[2]];
    let e = FreeSpaceMap::from_pages(swapped).unwrap_err();
    assert_eq!(named_page(&e), PageId(0));

    let other = FreeSpaceMap::rebuild((0..8500).map(|p| (PageId(p), 100, 200))).to_pages();
    let spliced = [&pages[0], &other[1], &pages[2]];
    let e = FreeSpaceMap::from_pages(spliced).unwrap_err();
    assert_eq!(named_page(&e), PageId(1));
    assert!(e.to_string().contains("FSM page 0 says 9000"), "{e}");

    let mut heap = SlottedPage::init(vec![0u8; PAGE_SIZE], PageId(0))
        .unwrap()
        .into_inner();
    seal(&mut heap).unwrap();
    let e = FreeSpaceMap::from_pages([heap]).unwrap_err();
    assert!(matches!(e, PageError::WrongPageType { .. }), "{e}");
}

#[derive(Clone, Debug)]
enum Op {
    Update(u32, usize, usize),
    Remove(u32),
    Find(usize),
    FindWith(usize),
    Truncate(u32),
    RoundTrip,
}

fn page_id() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0..40u32, 1 => 4060..4080u32]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (page_id(), 0..8300usize, 0..8300usize).prop_map(|(p, c, t)| Op::Update(p, c, t)),
        1 => page_id().prop_map(Op::Remove),
        5 => (0..8300usize).prop_map(Op::Find),
        2 => (0..8300usize).prop_map(Op::FindWith),
        1 => (0..4100u32).prop_map(Op::Truncate),
        1 => Just(Op::RoundTrip),
    ]
}

/// The promise of a recorded byte count after rounding.
fn q(bytes: usize) -> usize {
    category_bytes(category(bytes))
}

/// Checks one answer of `find` against the model: (page, contiguous, total).
fn check_find(model: &[(u32, usize, usize)], n: usize, got: Option<(PageId, FitKind)>) {
    let best = |key: fn(&(u32, usize, usize)) -> usize| {
        model
            .iter()
            .map(key)
            .filter(|&b| q(b) >= n)
            .map(category)
            .min()
    };
    let (best_now, best_later) = (best(|e| e.1), best(|e| e.2));
    let entry = |p: PageId| {
        *model
            .iter()
            .find(|e| e.0 == p.0)
            .expect("found page is tracked")
    };
    match got {
        Some((p, FitKind::Now)) => {
            let (_, c, _) = entry(p);
            assert!(c >= n && q(c) >= n, "page {p}: {c} contiguous for {n}");
            assert_eq!(Some(category(c)), best_now, "not the best fit");
        }
        Some((p, FitKind::AfterCompaction)) => {
            let (_, _, t) = entry(p);
            assert_eq!(best_now, None, "a page fits {n} now");
            assert!(t >= n && q(t) >= n, "page {p}: {t} total for {n}");
            assert_eq!(Some(category(t)), best_later, "not the best fit");
        }
        None => assert_eq!(best_later, None, "missed a page that fits {n}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn map_matches_linear_model(ops in proptest::collection::vec(op(), 1..120)) {
        let mut fsm = FreeSpaceMap::new();
        let mut model: Vec<(u32, usize, usize)> = Vec::new();
        let mut cursor = FsmCursor::new();
        for op in ops {
            match op {
                Op::Update(p, c, t) => {
                    fsm.update(PageId(p), c, t);
                    model.retain(|e| e.0 != p);
                    model.push((p, c, t.max(c)));
                }
                Op::Remove(p) => {
                    let was = model.iter().any(|e| e.0 == p);
                    model.retain(|e| e.0 != p);
                    prop_assert_eq!(fsm.remove(PageId(p)), was);
                }
                Op::Find(n) => check_find(&model, n, fsm.find(n)),
                Op::FindWith(n) => {
                    let before = cursor.page();
                    let got = fsm.find_with(n, &mut cursor);
                    match (before, got) {
                        // Sticking to the cursor's page needs only a fit now.
                        (Some(b), Some((p, FitKind::Now))) if b == p => {
                            let c = model.iter().find(|e| e.0 == p.0).map(|e| e.1);
                            prop_assert!(c.is_some_and(|c| q(c) >= n));
                        }
                        _ => check_find(&model, n, got),
                    }
                }
                Op::Truncate(k) => {
                    fsm.truncate(k);
                    model.retain(|e| e.0 < k);
                }
                Op::RoundTrip => {
                    let pages = fsm.to_pages();
                    let loaded = FreeSpaceMap::from_pages(&pages).unwrap();
                    prop_assert_eq!(loaded.snapshot(), fsm.snapshot());
                    prop_assert_eq!(loaded.covered_pages(), fsm.covered_pages());
                    prop_assert_eq!(loaded.to_pages(), pages);
                    fsm = loaded;
                }
            }
            prop_assert_eq!(fsm.len(), model.len());
            fsm.check_invariants().map_err(TestCaseError::fail)?;
        }
        for (p, c, t) in &model {
            prop_assert_eq!(fsm.recorded(PageId(*p)), Some((q(*c), q(*t))));
        }
    }
}

/// A map needs saving after any change to what its file holds, and only
/// then; a change made while an image is being written keeps it unsaved.
#[test]
fn needs_save_follows_changes_and_durable_saves() {
    let map = FreeSpaceMap::new();
    assert!(map.needs_save(), "a new map has no file yet");
    let image = map.save_image();
    map.mark_saved(image.version);
    assert!(!map.needs_save());

    map.update(PageId(3), 800, 900);
    assert!(map.needs_save());
    let image = map.save_image();
    // Changes while the image is written: it is marked saved, but the
    // map is not.
    map.update(PageId(4), 100, 100);
    map.mark_saved(image.version);
    assert!(map.needs_save());
    let image = map.save_image();
    map.mark_saved(image.version);
    assert!(!map.needs_save());

    // Same categories, a truncate past the end, removing an untracked
    // page: nothing changes.
    map.update(PageId(3), 800 + 5, 900 + 7);
    map.truncate(100);
    map.remove(PageId(50));
    assert!(!map.needs_save());
    // An older image marked late does not undo a newer mark.
    map.mark_saved(0);
    assert!(!map.needs_save());
    for change in [
        &|m: &FreeSpaceMap| m.update(PageId(3), 0, 0),
        &|m: &FreeSpaceMap| {
            m.remove(PageId(4));
        },
        &|m: &FreeSpaceMap| m.truncate(2),
    ] as [&dyn Fn(&FreeSpaceMap); 3]
    {
        change(&map);
        assert!(map.needs_save());
        map.mark_saved(map.save_image().version);
    }

    // A map loaded from its file is saved; the file round-trips.
    let loaded = FreeSpaceMap::from_pages(map.to_pages()).unwrap();
    assert!(!loaded.needs_save());
    assert_eq!(loaded.snapshot(), map.snapshot());
    assert_eq!(loaded.save_image().pages, map.to_pages());
}
