//! `keel demo`: Keel end to end on a fresh data directory.
//!
//! What exists so far is the page layer, so the demo exercises it the way the
//! heap will: tuples of mixed sizes spread over slotted pages, deletes,
//! updates that grow in place or move and leave a forward pointer, values too
//! large for a page stored as overflow chains, and compaction. It checks
//! every tuple against an in-memory model after each phase, seals the pages,
//! writes them to `DIR/demo.pages`, reads them back and verifies every
//! checksum, and prints space metrics before and after compaction and an
//! interpreted dump of a page.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use keel::page::{
    CHUNK_CAPACITY, DumpOptions, Fit, MAX_TUPLE_LEN, NO_PAGE, OverflowHead, OverflowPage,
    PAGE_SIZE, PageStats, SlotContent, SlottedPage, TupleFlags, dump_page, seal, verify,
};
use keel::{PageError, PageId, TupleId};

use keel_io::sim::Rng;

use crate::Failure;

/// Tuples inserted by the demo workload.
const TUPLES: usize = 4000;
/// Size of the large values stored as overflow chains.
const LARGE_VALUES: [usize; 2] = [100_000, 1 << 20];

pub fn run(dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
    let started = Instant::now();
    let mut heap = PageHeap::default();
    let mut model: BTreeMap<TupleId, Vec<u8>> = BTreeMap::new();
    let mut rng = Rng::new(0x6B65_656C);

    println!("Keel demo: page layer, data directory {}", dir.display());
    for i in 0..TUPLES {
        let len = 20 + rng.below(380) as usize;
        let value = random_bytes(&mut rng, len, i as u8);
        let tid = heap.insert(&value)?;
        model.insert(tid, value);
    }
    for (i, len) in LARGE_VALUES.iter().enumerate() {
        let value = random_bytes(&mut rng, *len, 0xA0 + i as u8);
        let tid = heap.insert(&value)?;
        model.insert(tid, value);
    }
    println!(
        "  inserted   {} tuples (20-400 B) and {} overflow values ({} B) on {} pages",
        TUPLES,
        LARGE_VALUES.len(),
        LARGE_VALUES.map(|l| l.to_string()).join(" B, "),
        heap.pages.len()
    );
    heap.check(&model)?;

    let tids: Vec<TupleId> = model.keys().copied().collect();
    let (mut deleted, mut updated) = (0, 0);
    for (i, tid) in tids.iter().enumerate() {
        if i % 3 == 0 {
            heap.delete(*tid)?;
            model.remove(tid);
            deleted += 1;
        } else if i % 3 == 1 && model[tid].len() < MAX_TUPLE_LEN / 2 {
            let len = model[tid].len() + 200 + rng.below(600) as usize;
            let grown = random_bytes(&mut rng, len, i as u8);
            heap.update(*tid, &grown)?;
            model.insert(*tid, grown);
            updated += 1;
        }
    }
    println!(
        "  changed    {deleted} deletes, {updated} growing updates: {} in place, {} moved \
         (forward pointers), {} after compacting the page",
        heap.in_place, heap.moved, heap.compacted_for_room
    );
    heap.check(&model)?;

    let before = heap.stats();
    let relocations = heap.compact_all();
    let after = heap.stats();
    heap.check(&model)?;
    println!("  before compaction: {before}");
    println!("  after  compaction: {after}");
    println!("  compaction moved {relocations} tuples; every TupleId still reads its value");

    let file = dir.join("demo.pages");
    let image = heap.seal_all()?;
    std::fs::write(&file, &image)
        .map_err(|e| Failure(format!("cannot write {}: {e}", file.display())))?;
    let read_back = std::fs::read(&file)
        .map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
    for (n, page) in read_back.chunks(PAGE_SIZE).enumerate() {
        verify(page, PageId(n as u32))?;
    }
    println!(
        "  wrote {} pages ({} KiB) to {}; read back, every checksum and slot verified",
        heap.pages.len(),
        image.len() / 1024,
        file.display()
    );
    println!("  {} live tuples verified against the model", model.len());
    crate::demo_wal::run(dir)?;
    println!("  elapsed {:.1} ms", started.elapsed().as_secs_f64() * 1e3);

    println!("\nPage 0, interpreted (first slots):");
    let dump = dump_page(&read_back[..PAGE_SIZE], PageId(0), &DumpOptions::default());
    for line in dump.lines().take(30) {
        println!("  {line}");
    }
    println!(
        "\nInspect any page: keel inspect page --file {} --page N [--hex]",
        file.display()
    );
    Ok(())
}

/// A relation's pages held in memory, filled the way the heap will fill them.
#[derive(Default)]
struct PageHeap {
    pages: Vec<Vec<u8>>,
    /// Heap pages, in the order they were created.
    heap_pages: Vec<u32>,
    in_place: usize,
    moved: usize,
    compacted_for_room: usize,
}

impl PageHeap {
    fn page(&mut self, id: PageId) -> Result<SlottedPage<&mut [u8]>, PageError> {
        let bytes = self
            .pages
            .get_mut(id.0 as usize)
            .ok_or(PageError::Corrupted {
                page_id: id,
                offset: 0,
                reason: "no such page in the demo heap".into(),
            })?;
        SlottedPage::open(&mut bytes[..], id)
    }

    fn new_heap_page(&mut self) -> Result<PageId, PageError> {
        let id = PageId(self.pages.len() as u32);
        self.pages
            .push(SlottedPage::init(vec![0u8; PAGE_SIZE], id)?.into_inner());
        self.heap_pages.push(id.0);
        Ok(id)
    }

    /// Stores `value` in a page with room (compacting one if that makes
    /// room), or a new page. Values over a page become overflow chains.
    fn place(&mut self, value: &[u8], flags: TupleFlags) -> Result<TupleId, Failure> {
        let (stored, flags) = if value.len() > MAX_TUPLE_LEN {
            let head = self.write_overflow(value)?;
            (
                head.encode().to_vec(),
                flags.union(TupleFlags::OVERFLOW_HEAD),
            )
        } else {
            (value.to_vec(), flags)
        };
        // Check the last few pages, as a free space map would suggest them.
        let candidates: Vec<u32> = self.heap_pages.iter().rev().take(4).copied().collect();
        for id in candidates {
            let mut page = self.page(PageId(id))?;
            match page.fit(stored.len()) {
                Fit::Now => {}
                Fit::AfterCompaction => {
                    page.compact();
                    self.compacted_for_room += 1;
                    page = self.page(PageId(id))?;
                }
                Fit::No => continue,
            }
            let slot = page.insert(&stored, flags)?;
            return Ok(TupleId::new(PageId(id), slot));
        }
        let id = self.new_heap_page()?;
        let slot = self.page(id)?.insert(&stored, flags)?;
        Ok(TupleId::new(id, slot))
    }

    fn insert(&mut self, value: &[u8]) -> Result<TupleId, Failure> {
        self.place(value, TupleFlags::NONE)
    }

    fn write_overflow(&mut self, value: &[u8]) -> Result<OverflowHead, Failure> {
        let first = self.pages.len() as u32;
        let head = OverflowHead::for_value(value, PageId(first))?;
        let chunks = value.chunks(CHUNK_CAPACITY);
        let count = chunks.len() as u32;
        for (i, chunk) in chunks.enumerate() {
            let id = first + i as u32;
            let next = if i as u32 + 1 == count {
                NO_PAGE
            } else {
                id + 1
            };
            let mut bytes = vec![0u8; PAGE_SIZE];
            OverflowPage::init(&mut bytes[..], PageId(id), i as u32, chunk, next)?;
            self.pages.push(bytes);
        }
        Ok(head)
    }

    /// Updates in place when the page has room (after compaction if need
    /// be); otherwise moves the tuple and leaves a forward pointer, so the
    /// TupleId stays valid (invariant 12).
    fn update(&mut self, tid: TupleId, value: &[u8]) -> Result<(), Failure> {
        // A tuple that moved before: drop its old copy, the home slot takes
        // the new value (or a new forward pointer).
        if let SlotContent::Forward(old) = self.page(tid.page)?.get(tid.slot)? {
            self.page(old.page)?.delete(old.slot)?;
        }
        let mut page = self.page(tid.page)?;
        match page.update(tid.slot, value, TupleFlags::NONE) {
            Ok(()) => {
                self.in_place += 1;
                return Ok(());
            }
            Err(PageError::DoesNotFit {
                needed,
                after_compaction,
                ..
            }) if after_compaction >= needed => {
                page.compact();
                page.update(tid.slot, value, TupleFlags::NONE)?;
                self.compacted_for_room += 1;
                return Ok(());
            }
            Err(PageError::DoesNotFit { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let target = self.place(value, TupleFlags::MOVED_IN)?;
        self.page(tid.page)?.set_forward(tid.slot, target)?;
        self.moved += 1;
        Ok(())
    }

    fn delete(&mut self, tid: TupleId) -> Result<(), Failure> {
        let mut page = self.page(tid.page)?;
        if let SlotContent::Forward(target) = page.get(tid.slot)? {
            self.page(target.page)?.delete(target.slot)?;
            page = self.page(tid.page)?;
        }
        page.delete(tid.slot)?;
        Ok(())
    }

    fn get(&mut self, tid: TupleId) -> Result<Option<Vec<u8>>, Failure> {
        let page = self.page(tid.page)?;
        let (bytes, flags) = match page.get(tid.slot)? {
            SlotContent::Tuple { bytes, flags } => (bytes.to_vec(), flags),
            SlotContent::Forward(target) => return self.get(target),
            SlotContent::Free | SlotContent::Dead => return Ok(None),
        };
        if !flags.contains(TupleFlags::OVERFLOW_HEAD) {
            return Ok(Some(bytes));
        }
        let head = OverflowHead::decode(&bytes, tid.page)?;
        let mut chain = Vec::new();
        let mut next = head.first_page.0;
        while next != NO_PAGE && chain.len() <= head.page_count as usize {
            let page = self.pages.get(next as usize).ok_or_else(|| {
                Failure(format!(
                    "overflow chain of {tid} links to missing page {next}"
                ))
            })?;
            chain.push((PageId(next), &page[..]));
            next = OverflowPage::open(&page[..], PageId(next))?.next_page();
        }
        Ok(Some(head.assemble(chain)?))
    }

    /// Checks every tuple of the model reads back unchanged.
    fn check(&mut self, model: &BTreeMap<TupleId, Vec<u8>>) -> Result<(), Failure> {
        for (tid, value) in model {
            if self.get(*tid)?.as_deref() != Some(&value[..]) {
                return Err(Failure(format!("tuple {tid} does not read back its value")));
            }
        }
        Ok(())
    }

    fn stats(&mut self) -> PageStats {
        let ids = self.heap_pages.clone();
        ids.into_iter()
            .filter_map(|id| self.page(PageId(id)).ok().map(|p| p.stats()))
            .sum()
    }

    fn compact_all(&mut self) -> usize {
        let ids = self.heap_pages.clone();
        ids.into_iter()
            .filter_map(|id| self.page(PageId(id)).ok().map(|mut p| p.compact().len()))
            .sum()
    }

    fn seal_all(&mut self) -> Result<Vec<u8>, PageError> {
        let mut image = Vec::with_capacity(self.pages.len() * PAGE_SIZE);
        for page in &mut self.pages {
            seal(page)?;
            image.extend_from_slice(page);
        }
        Ok(image)
    }
}

/// Deterministic bytes for the demo's values (the same every run).
fn random_bytes(rng: &mut Rng, len: usize, tag: u8) -> Vec<u8> {
    let seed = rng.next_u64();
    (0..len)
        .map(|i| tag ^ (seed.rotate_left(i as u32 % 64) as u8) ^ (i as u8))
        .collect()
}
