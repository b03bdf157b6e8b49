//! The free space map (FSM): which heap page of a relation has room for a
//! new tuple.
//!
//! One [`FreeSpaceMap`] per relation records, for each heap page, two
//! numbers: its *contiguous* free bytes (the gap between slot directory and
//! tuples, usable at once) and its *total* free bytes (contiguous plus the
//! holes left by deletes, usable after compaction). Both are stored as a
//! one-byte [category](mod@category) of 32 bytes, rounded **down**, so a
//! recorded value never promises more than the page had when it was
//! recorded. [`FreeSpaceMap::find`] returns a page whose recorded space
//! covers a request, in O(1), preferring a page where the tuple fits *now*
//! over one that must be compacted first.
//!
//! ## A hint, never trusted
//!
//! The map is not part of the database's correctness. It is not WAL-logged,
//! it may be stale after concurrent changes or a crash, and its categories
//! are approximations. The legacy codebase this project replaces had a bug
//! born of forgetting that: *"the FSM trusted its buckets without checking
//! that the page really had room for the tuple plus its slot"*
//! (ARCHITECTURE.md). Here the API is shaped so the check cannot be skipped.
//! The insert protocol, for the heap:
//!
//! 1. Ask for [`request_bytes`]`(tuple_len)` — the tuple's allocation *plus*
//!    a slot entry — with [`FreeSpaceMap::find`] or
//!    [`FreeSpaceMap::find_with`]. `None`: extend the relation and record
//!    the new pages with [`FreeSpaceMap::update`].
//! 2. Latch the page and ask [`SlottedPage::fit`]`(tuple_len)`, the page's
//!    own exact answer (it counts the slot unless a free one can be reused).
//!    `Now`: insert. `AfterCompaction`: compact (logging the relocations),
//!    then insert. `No`: the hint was stale — record the page's actual space
//!    with [`FreeSpaceMap::update`] (or [`FreeSpaceMap::update_from_page`])
//!    and go back to step 1.
//! 3. After every change to a page's free space (insert, update, compaction,
//!    and a delete once its space is really reusable), record it with
//!    [`FreeSpaceMap::update_from_page`].
//!
//! Step 2's retry terminates: `fit` said `No`, so the page's actual free
//! space is below the request, and (rounding down) its new category is
//! below [`min_category`] of the request — the page stops matching. Each
//! retry retires one stale page.
//!
//! ## Structure and invariants
//!
//! Two indexes of 256 buckets each, one by contiguous category and one by
//! total category, each with a bitmap of non-empty buckets (four `u64`
//! words). A bucket is a `Vec` of page ids; each page's entry (a `Vec`
//! indexed by page id) remembers its position in both, so insert is a push
//! and remove a `swap_remove`. These hold after every public call:
//!
//! - F1. A tracked page's recorded categories are those of the last
//!   [`FreeSpaceMap::update`], rounded down, with `contiguous <= total`.
//! - F2. Each tracked page appears exactly once in each index, in the bucket
//!   of its category, at the position its entry records.
//! - F3. A bitmap bit is set iff its bucket is non-empty.
//!
//! [`FreeSpaceMap::find`]`(n)` takes the lowest non-empty contiguous bucket
//! whose category covers `n` (one masked `trailing_zeros` per bitmap word)
//! and answers [`FitKind::Now`]; if there is none, the lowest adequate
//! total bucket and [`FitKind::AfterCompaction`]. Taking the *lowest*
//! adequate bucket (best fit) fills nearly full pages first and keeps roomy
//! pages for large tuples, which keeps relations dense under churn.
//!
//! ## Spreading concurrent inserters
//!
//! Best fit alone would send every inserter to the same page, and they would
//! queue on its latch. Within the chosen bucket the map picks the page at a
//! rotating position (a shared atomic counter, advanced by every `find`), so
//! two callers asking at once get different pages whenever the bucket holds
//! more than one. A caller that wants locality as well (consecutive inserts
//! of one transaction on one page, fewer dirty pages and full-page images,
//! invariant 5) keeps an [`FsmCursor`]: [`FreeSpaceMap::find_with`] returns
//! the cursor's page again while its recorded contiguous space covers the
//! request. Spreading needs several candidate pages: under contention the
//! heap should extend a relation by a few pages at a time.
//!
//! ## Concurrency
//!
//! The map is `Send + Sync`: one `parking_lot::RwLock`, held for O(1) work
//! per call and released before returning. Lookups share it; updates take it
//! exclusively. It is a leaf lock: the map never latches a page or waits on
//! anything while holding it, so the heap may call the map while holding a
//! page latch without deadlock (invariant 11 holds for the page latch; the
//! map adds no waiting).
//!
//! ## Persistence and crashes
//!
//! The map is saved in its own file as checksummed FSM pages ([`page`]:
//! the common header, then one byte per heap page for each category).
//! [`FreeSpaceMap::from_pages`] validates every page (checksum, header, body
//! fields, consistency across pages) and reports the first corrupt page as
//! a [`PageError`] naming it. The caller's policy for any such error is
//! *rebuild, not fail*: [`FreeSpaceMap::rebuild`] from the heap pages'
//! actual free space.
//!
//! Changes to the map are **not** WAL-logged. After a crash the map is
//! repaired from the heap: either loaded from the FSM file (written at each
//! checkpoint) and then updated for every heap page that redo touched —
//! exactly the pages whose space may have changed since — or, if the file
//! is missing or corrupt, rebuilt from every heap page. This is safe because
//! the map is only a hint: a stale entry that over-promises costs one
//! `fit`/`update` round trip (step 2), and one that under-promises leaves
//! some space unused until the page is next recorded. Neither can put a
//! tuple where there is no room or lose one.
//!
//! ## Saving only what changed
//!
//! Every call that changes what the file would hold (a page's categories,
//! a page tracked or forgotten, a truncate) advances the map's *version*
//! under its lock. A checkpoint writes a map's file only when
//! [`FreeSpaceMap::needs_save`]: its version differs from the one last
//! marked saved. It takes a [`SaveImage`] (the entries and the version
//! under one read lock), writes and syncs the file, and only once the file
//! and its directory entry are durable calls [`FreeSpaceMap::mark_saved`]
//! with the image's version; a change made meanwhile leaves the map
//! unsaved for the next checkpoint. So a file a checkpoint skips holds
//! exactly the map it would have written, and recovery repairs it from the
//! pages the log names after that checkpoint, as above. A map loaded from
//! its file starts saved; a new or rebuilt one starts unsaved, so every
//! relation gets a file at its first checkpoint. Relations never shrink,
//! so an older file never covers pages the heap file lacks (and open's
//! repair forgets entries past the relation's pages all the same).
//!
//! ## What this module leaves out
//!
//! I/O (the caller writes and reads the pages through the buffer pool or
//! `AsyncIo`), extending relations, latching heap pages, and deciding when a
//! deleted tuple's space is reusable (the heap should record it only when no
//! rollback can need it back). Page ids are expected to be dense, as the heap
//! allocates them: the map's memory is about 12 bytes per page id up to the
//! highest one recorded, and its file one page per 4070 heap pages.

mod buckets;
pub mod category;
pub mod page;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::RwLock;

use crate::page::PageError;
use crate::page::header::{NO_PAGE, corrupted};
use crate::page::slotted::alloc_len;
use crate::page::{PageStats, SLOT_SIZE, SlottedPage};
use crate::types::PageId;

use buckets::Buckets;
pub use category::{CATEGORY_BYTES, EMPTY_PAGE_FREE, category, category_bytes, min_category};
pub use page::{Categories, ENTRIES_PER_PAGE, FsmPage};

/// Bytes to ask the map for to insert a tuple of `tuple_len` bytes: its
/// allocation in the tuple area plus a new slot entry. Asking for less is the
/// legacy bug the module docs describe.
pub const fn request_bytes(tuple_len: usize) -> usize {
    alloc_len(tuple_len) + SLOT_SIZE
}

/// A map's file as [`FreeSpaceMap::save_image`] took it.
#[derive(Clone, Debug)]
pub struct SaveImage {
    /// The map's version when the image was taken; pass it to
    /// [`FreeSpaceMap::mark_saved`] once the file is durable.
    pub version: u64,
    /// The file's pages: page `i` is FSM page id `i`, sealed.
    pub pages: Vec<Vec<u8>>,
    /// Whether the image holds every entry of the map (an image cut by
    /// [`FreeSpaceMap::save_image_below`] may not).
    pub complete: bool,
}

/// What the map's record says about a page it returns. Only a hint: the heap
/// asks the page itself ([`SlottedPage::fit`]) before relying on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FitKind {
    /// The recorded contiguous free space covers the request.
    Now,
    /// Only the recorded total free space does: compact the page first.
    AfterCompaction,
}

/// A caller's memory of the page it last got from
/// [`FreeSpaceMap::find_with`], for locality: the same page is returned while
/// its recorded contiguous space covers the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsmCursor {
    last: Option<PageId>,
}

impl FsmCursor {
    /// A cursor with no page yet.
    pub const fn new() -> FsmCursor {
        FsmCursor { last: None }
    }

    /// The page this cursor returns next if it still has room.
    pub fn page(&self) -> Option<PageId> {
        self.last
    }

    /// Forgets the page (e.g. after the heap found it unusable).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

/// One heap page's record: its categories and positions in both indexes
/// (F2). `cats` is `None` for an untracked page id.
#[derive(Clone, Copy, Debug)]
struct Entry {
    pos_contiguous: u32,
    pos_total: u32,
    cats: Option<Categories>,
}

const UNTRACKED: Entry = Entry {
    pos_contiguous: 0,
    pos_total: 0,
    cats: None,
};

#[derive(Debug)]
struct Inner {
    entries: Vec<Entry>,
    tracked: usize,
    contiguous: Buckets,
    total: Buckets,
    /// Advanced by every call that changes what the map's file would hold
    /// (module docs, "Saving only what changed").
    version: u64,
}

impl Inner {
    fn new() -> Inner {
        Inner {
            entries: Vec::new(),
            tracked: 0,
            contiguous: Buckets::new(),
            total: Buckets::new(),
            version: 0,
        }
    }

    fn get(&self, page: PageId) -> Option<Categories> {
        self.entries.get(page.0 as usize).and_then(|e| e.cats)
    }

    fn set(&mut self, page: u32, cats: Categories) {
        let i = page as usize;
        if i >= self.entries.len() {
            self.entries.resize(i + 1, UNTRACKED);
        }
        match self.entries[i].cats {
            Some(old) if old == cats => return,
            Some(_) => self.unlink(page),
            None => self.tracked += 1,
        }
        self.version += 1;
        let pos_contiguous = self.contiguous.insert(cats.contiguous, page);
        let pos_total = self.total.insert(cats.total, page);
        self.entries[i] = Entry {
            pos_contiguous,
            pos_total,
            cats: Some(cats),
        };
    }

    /// Removes a tracked page from both indexes (its entry is left as is).
    fn unlink(&mut self, page: u32) {
        let e = self.entries[page as usize];
        let Some(cats) = e.cats else { return };
        if let Some(moved) = self.contiguous.remove(cats.contiguous, e.pos_contiguous) {
            self.entries[moved as usize].pos_contiguous = e.pos_contiguous;
        }
        if let Some(moved) = self.total.remove(cats.total, e.pos_total) {
            self.entries[moved as usize].pos_total = e.pos_total;
        }
    }

    fn remove(&mut self, page: PageId) -> bool {
        if self.get(page).is_none() {
            return false;
        }
        self.unlink(page.0);
        self.entries[page.0 as usize] = UNTRACKED;
        self.tracked -= 1;
        self.version += 1;
        true
    }

    /// Best fit: the lowest adequate contiguous bucket, else the lowest
    /// adequate total bucket; `spin` picks the page within it.
    fn pick(&self, need: u8, spin: usize) -> Option<(PageId, FitKind)> {
        let (index, kind, cat) = match self.contiguous.first_at_least(need) {
            Some(cat) => (&self.contiguous, FitKind::Now, cat),
            None => (
                &self.total,
                FitKind::AfterCompaction,
                self.total.first_at_least(need)?,
            ),
        };
        let bucket = index.bucket(cat);
        Some((PageId(bucket[spin % bucket.len()]), kind))
    }
}

/// The free space map of one relation. See the module docs for the
/// protocol its callers follow.
pub struct FreeSpaceMap {
    inner: RwLock<Inner>,
    /// Advanced by every lookup; picks the page within a bucket so that
    /// concurrent callers are spread over pages.
    spin: AtomicUsize,
    /// One more than the version whose file is durable, 0 when none is
    /// (module docs, "Saving only what changed").
    saved: AtomicU64,
}

impl Default for FreeSpaceMap {
    fn default() -> Self {
        FreeSpaceMap::new()
    }
}

impl fmt::Debug for FreeSpaceMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.inner.read();
        f.debug_struct("FreeSpaceMap")
            .field("tracked_pages", &g.tracked)
            .field("covered_pages", &g.entries.len())
            .finish()
    }
}

impl FreeSpaceMap {
    /// An empty map.
    pub fn new() -> FreeSpaceMap {
        FreeSpaceMap {
            inner: RwLock::new(Inner::new()),
            spin: AtomicUsize::new(0),
            saved: AtomicU64::new(0),
        }
    }

    /// Records heap page `page`'s free space: `contiguous_free` bytes usable
    /// now, `total_free` after compaction (taken as at least
    /// `contiguous_free`). Both are rounded down to their category. Starts
    /// tracking the page if it was not. [`NO_PAGE`] is not a page: ignored.
    pub fn update(&self, page: PageId, contiguous_free: usize, total_free: usize) {
        if page.0 == NO_PAGE {
            return;
        }
        let cats = Categories {
            contiguous: category(contiguous_free),
            total: category(total_free.max(contiguous_free)),
        };
        self.inner.write().set(page.0, cats);
    }

    /// Records a heap page's actual free space, read from the page itself.
    pub fn update_from_page<B: AsRef<[u8]>>(&self, page: &SlottedPage<B>) {
        self.update(page.page_id(), page.contiguous_free(), page.total_free());
    }

    /// Stops tracking `page` (e.g. it was freed or became an overflow page).
    /// Returns whether it was tracked.
    pub fn remove(&self, page: PageId) -> bool {
        self.inner.write().remove(page)
    }

    /// Records that the relation has pages up to `pages`: those the map
    /// did not cover yet are covered as holding no free space, so a saved
    /// map speaks for every page of the file it was cut to and an open
    /// reads none of them (pages with room are [`update`](Self::update)d
    /// as they get it). A relation whose pages never have room for the
    /// map (a tree's nodes, overflow chains) would otherwise be read whole
    /// at every open.
    pub fn cover(&self, pages: u32) {
        let mut g = self.inner.write();
        if g.entries.len() >= pages as usize {
            return;
        }
        g.entries.resize(pages as usize, UNTRACKED);
        g.version += 1;
    }

    /// Forgets every page from `pages` on (the relation was truncated to
    /// `pages` pages).
    pub fn truncate(&self, pages: u32) {
        let mut g = self.inner.write();
        if g.entries.len() <= pages as usize {
            return;
        }
        for p in pages..g.entries.len() as u32 {
            g.remove(PageId(p));
        }
        g.entries.truncate(pages as usize);
        g.version += 1;
    }

    /// A page whose recorded space covers `min_bytes` (pass
    /// [`request_bytes`] of the tuple), preferring one where it fits now.
    /// Among equally good pages, successive calls rotate, so concurrent
    /// callers get different pages. `None` when no recorded page covers it:
    /// extend the relation. The caller must re-check the page (module docs).
    pub fn find(&self, min_bytes: usize) -> Option<(PageId, FitKind)> {
        let need = min_category(min_bytes)?;
        let g = self.inner.read();
        g.pick(need, self.spin.fetch_add(1, Ordering::Relaxed))
    }

    /// Like [`find`](Self::find), but returns `cursor`'s page again while its
    /// recorded contiguous space covers `min_bytes`, and remembers the page
    /// it returns.
    pub fn find_with(&self, min_bytes: usize, cursor: &mut FsmCursor) -> Option<(PageId, FitKind)> {
        let need = min_category(min_bytes)?;
        let g = self.inner.read();
        if let Some(p) = cursor.last
            && g.get(p).is_some_and(|c| c.contiguous >= need)
        {
            return Some((p, FitKind::Now));
        }
        let found = g.pick(need, self.spin.fetch_add(1, Ordering::Relaxed));
        cursor.last = found.map(|(p, _)| p);
        found
    }

    /// Number of heap pages tracked.
    pub fn len(&self) -> usize {
        self.inner.read().tracked
    }

    /// Whether no page is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap page ids the map spans: one past the highest page ever recorded
    /// (since creation, load or the last truncate).
    pub fn covered_pages(&self) -> u32 {
        // At most NO_PAGE entries: `update` ignores NO_PAGE itself.
        self.inner.read().entries.len() as u32
    }

    /// The categories recorded for `page`, if tracked.
    pub fn categories(&self, page: PageId) -> Option<Categories> {
        self.inner.read().get(page)
    }

    /// The free bytes the map promises for `page` (contiguous, total): lower
    /// bounds of what it had when recorded.
    pub fn recorded(&self, page: PageId) -> Option<(usize, usize)> {
        self.categories(page)
            .map(|c| (category_bytes(c.contiguous), category_bytes(c.total)))
    }

    /// Every tracked page and its categories, in page order.
    pub fn snapshot(&self) -> Vec<(PageId, Categories)> {
        let g = self.inner.read();
        g.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.cats.map(|c| (PageId(i as u32), c)))
            .collect()
    }

    /// Builds a map from the actual free space of heap pages, given as
    /// (page, contiguous free, total free) — e.g. from a scan of the
    /// relation after the FSM file failed to load, or after a crash.
    pub fn rebuild<I>(pages: I) -> FreeSpaceMap
    where
        I: IntoIterator<Item = (PageId, usize, usize)>,
    {
        let map = FreeSpaceMap::new();
        for (page, contiguous, total) in pages {
            map.update(page, contiguous, total);
        }
        map
    }

    /// [`rebuild`](Self::rebuild) from each heap page's [`PageStats`]
    /// ([`SlottedPage::stats`]).
    pub fn rebuild_from_stats<I>(pages: I) -> FreeSpaceMap
    where
        I: IntoIterator<Item = (PageId, PageStats)>,
    {
        Self::rebuild(pages.into_iter().map(|(p, s)| {
            let (c, t) = (s.contiguous_free_bytes, s.free_bytes);
            (
                p,
                usize::try_from(c).unwrap_or(usize::MAX),
                usize::try_from(t).unwrap_or(usize::MAX),
            )
        }))
    }

    /// Number of pages the FSM file needs.
    pub fn page_count(&self) -> usize {
        self.inner.read().entries.len().div_ceil(ENTRIES_PER_PAGE)
    }

    /// FSM page `index` of the file, if the map has one.
    pub fn fsm_page(&self, index: PageId) -> Option<FsmPage> {
        let g = self.inner.read();
        let first = usize::try_from(page::first_page_of(index)?).ok()?;
        let end = g.entries.len().min(first.checked_add(ENTRIES_PER_PAGE)?);
        let entries = g.entries.get(first..end)?.iter().map(|e| e.cats).collect();
        FsmPage::new(index, g.entries.len() as u32, entries)
    }

    /// The whole FSM file: page `i` of the result is FSM page id `i`,
    /// sealed and ready to write.
    pub fn to_pages(&self) -> Vec<Vec<u8>> {
        self.save_image().pages
    }

    /// Whether the map differs from the last file
    /// [`mark_saved`](Self::mark_saved) was told is durable (always, for a
    /// map not loaded from its file and never saved).
    pub fn needs_save(&self) -> bool {
        let version = self.inner.read().version;
        self.saved.load(Ordering::Acquire) != version.wrapping_add(1)
    }

    /// The whole FSM file as of one instant, with the map's version then:
    /// the entries are copied under one read lock and encoded after it is
    /// released.
    pub fn save_image(&self) -> SaveImage {
        self.save_image_below(u32::MAX)
    }

    /// [`save_image`](Self::save_image) of the map cut to its first
    /// `pages` heap pages: what a checkpoint saves, so that a saved map
    /// never covers a heap page that was not durable in the heap file when
    /// it was saved. A cut image is not [`SaveImage::complete`]: the map
    /// still needs a save once the rest of its pages are durable.
    pub fn save_image_below(&self, pages: u32) -> SaveImage {
        let (version, mut entries) = {
            let g = self.inner.read();
            let entries: Vec<Option<Categories>> = g.entries.iter().map(|e| e.cats).collect();
            (g.version, entries)
        };
        let complete = entries.len() <= pages as usize;
        entries.truncate(pages as usize);
        let covered = entries.len() as u32;
        let pages = entries
            .chunks(ENTRIES_PER_PAGE)
            .enumerate()
            .filter_map(|(i, part)| FsmPage::new(PageId(i as u32), covered, part.to_vec()))
            .map(|p| p.encode())
            .collect();
        SaveImage {
            version,
            pages,
            complete,
        }
    }

    /// Records that the file of `image_version` ([`SaveImage::version`]) is
    /// durable: the map needs no save until it changes again. Changes made
    /// after that image was taken keep it unsaved.
    pub fn mark_saved(&self, image_version: u64) {
        self.saved
            .fetch_max(image_version.wrapping_add(1), Ordering::AcqRel);
    }

    /// Loads a map from its file's pages, in page order (page `i` is read as
    /// FSM page id `i`). Every page is fully validated, and the pages must
    /// agree on how many heap pages they cover and all be present. An error
    /// names the first bad page; the caller then [rebuilds](Self::rebuild)
    /// from the heap rather than failing.
    pub fn from_pages<I>(pages: I) -> Result<FreeSpaceMap, PageError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut covered: Option<u32> = None;
        let mut entries: Vec<Option<Categories>> = Vec::new();
        for (i, bytes) in pages.into_iter().enumerate() {
            let id = PageId(u32::try_from(i).unwrap_or(NO_PAGE));
            let p = FsmPage::decode(bytes.as_ref(), id)?;
            let want = *covered.get_or_insert(p.covered_pages());
            if p.covered_pages() != want {
                return Err(corrupted(
                    id,
                    page::offsets::COVERED_PAGES,
                    format!(
                        "covers {} heap pages but FSM page 0 says {want}",
                        p.covered_pages()
                    ),
                ));
            }
            // Grows with the input only: each page adds its own entries.
            entries.extend_from_slice(p.entries());
        }
        let covered = covered.unwrap_or(0);
        if entries.len() != covered as usize {
            let missing = entries.len().div_ceil(ENTRIES_PER_PAGE);
            return Err(corrupted(
                PageId(missing as u32),
                0,
                format!(
                    "FSM file ends after {missing} pages but covers {covered} heap pages \
                     ({} pages)",
                    (covered as usize).div_ceil(ENTRIES_PER_PAGE)
                ),
            ));
        }
        let mut inner = Inner::new();
        inner.entries = vec![UNTRACKED; entries.len()];
        for (i, e) in entries.iter().enumerate() {
            if let Some(cats) = e {
                inner.set(i as u32, *cats);
            }
        }
        // Loaded from its file: the map is what the file holds.
        inner.version = 0;
        Ok(FreeSpaceMap {
            inner: RwLock::new(inner),
            spin: AtomicUsize::new(0),
            saved: AtomicU64::new(1),
        })
    }

    /// Checks F1–F3 (tests and `keel check`): returns a description of the
    /// first broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.inner.read().check()
    }
}

impl Inner {
    fn check(&self) -> Result<(), String> {
        let mut tracked = 0;
        for (i, e) in self.entries.iter().enumerate() {
            let Some(c) = e.cats else { continue };
            tracked += 1;
            if c.contiguous > c.total {
                return Err(format!("F1: page {i}: contiguous {c:?} above total"));
            }
            let in_c = self
                .contiguous
                .bucket(c.contiguous)
                .get(e.pos_contiguous as usize);
            let in_t = self.total.bucket(c.total).get(e.pos_total as usize);
            if in_c != Some(&(i as u32)) || in_t != Some(&(i as u32)) {
                return Err(format!("F2: page {i} is not where its entry says"));
            }
        }
        for index in [&self.contiguous, &self.total] {
            let mut n = 0;
            for cat in 0..=u8::MAX {
                let len = index.bucket(cat).len();
                n += len;
                let first = index.first_at_least(cat);
                if (len > 0) != (first == Some(cat)) {
                    return Err(format!(
                        "F3: bucket {cat} has {len} pages, bitmap disagrees"
                    ));
                }
            }
            if n != tracked {
                return Err(format!("F2: {n} pages in an index, {tracked} tracked"));
            }
        }
        if tracked != self.tracked {
            return Err(format!("{} counted, {tracked} tracked", self.tracked));
        }
        Ok(())
    }
}
