//! RAII pins and latch guards.
//!
//! A [`PinnedPage`] owns one pin. [`PageReadGuard`] and [`PageWriteGuard`]
//! own a latch *and* a pin, declared in that order so that dropping a guard
//! releases the latch first and the pin second: a frame is never unpinned
//! (hence evictable) while its latch is still held.

use std::fmt;
use std::ops::{Deref, DerefMut};

use keel_io::IoBuf;
use parking_lot::{RwLockReadGuard, RwLockWriteGuard};

use super::FileId;
use super::frame::PageKey;
use super::pool::Shared;
use crate::page;
use crate::types::{Lsn, PageId};

/// A pinned page: it stays in its frame until this is dropped, but its
/// bytes are not latched. Latch with [`read`](Self::read) or
/// [`write`](Self::write) — when latching several pages, pin them all first
/// and latch in page-id order (invariant 11).
pub struct PinnedPage<'a> {
    shared: &'a Shared,
    frame: usize,
    key: PageKey,
}

impl<'a> PinnedPage<'a> {
    pub(crate) fn new(shared: &'a Shared, frame: usize, key: PageKey) -> PinnedPage<'a> {
        PinnedPage { shared, frame, key }
    }

    /// The page's file.
    pub fn file(&self) -> FileId {
        self.key.file
    }

    /// The page's id.
    pub fn page_id(&self) -> PageId {
        self.key.page
    }

    /// Takes the latch shared (waits for an exclusive holder).
    pub fn read(self) -> PageReadGuard<'a> {
        let shared = self.shared;
        PageReadGuard {
            latch: shared.frames[self.frame].latch_read(),
            pin: self,
        }
    }

    /// Takes the latch exclusive (waits for every other holder).
    pub fn write(self) -> PageWriteGuard<'a> {
        let shared = self.shared;
        PageWriteGuard::new(shared.frames[self.frame].latch_write(), self)
    }

    /// Takes the latch exclusive if nobody holds it; otherwise hands the
    /// pin back, having waited for nothing. For a page that may be latched
    /// out of invariant 11's order (a free page offered to a split: it may
    /// have become a node since the offer).
    pub(crate) fn try_write(self) -> Result<PageWriteGuard<'a>, PinnedPage<'a>> {
        let shared = self.shared;
        match shared.frames[self.frame].try_latch_write() {
            Some(latch) => Ok(PageWriteGuard::new(latch, self)),
            None => Err(self),
        }
    }
}

impl Drop for PinnedPage<'_> {
    fn drop(&mut self) {
        self.shared.unpin(self.frame);
    }
}

impl fmt::Debug for PinnedPage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PinnedPage(file {}, page {})",
            self.key.file, self.key.page
        )
    }
}

/// A pinned page latched shared: its bytes, read-only.
pub struct PageReadGuard<'a> {
    // Field order is drop order: latch, then pin.
    latch: RwLockReadGuard<'a, IoBuf>,
    pin: PinnedPage<'a>,
}

impl PageReadGuard<'_> {
    /// The page's file.
    pub fn file(&self) -> FileId {
        self.pin.file()
    }

    /// The page's id.
    pub fn page_id(&self) -> PageId {
        self.pin.page_id()
    }

    /// Whether these bytes passed a tree node's header checks since they
    /// last changed (a frame's `node_checked`), so that
    /// `TreePage::reopen` may stand for `TreePage::open` on them.
    pub(crate) fn node_checked(&self) -> bool {
        self.pin.shared.frames[self.pin.frame].node_checked()
    }

    /// Records that these bytes passed a tree node's header checks
    /// (`TreePage::open` accepted them under this latch).
    pub(crate) fn set_node_checked(&self) {
        self.pin.shared.frames[self.pin.frame].set_node_checked();
    }
}

impl Deref for PageReadGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.latch
    }
}

impl fmt::Debug for PageReadGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PageReadGuard(file {}, page {})",
            self.file(),
            self.page_id()
        )
    }
}

/// A pinned page latched exclusive: its bytes, writable. After changing
/// them, call [`mark_dirty`](Self::mark_dirty) with the LSN of the record
/// that logged the change (log first: invariant 4 is about the page LSN).
pub struct PageWriteGuard<'a> {
    // Field order is drop order: latch, then pin.
    latch: RwLockWriteGuard<'a, IoBuf>,
    pin: PinnedPage<'a>,
    /// A page [`BufferPool::new_page`](super::BufferPool::new_page) made
    /// that no change has been marked on yet: dropped so, its frame is
    /// unmapped (the page was never written anywhere).
    fresh: bool,
}

impl<'a> PageWriteGuard<'a> {
    pub(crate) fn new(latch: RwLockWriteGuard<'a, IoBuf>, pin: PinnedPage<'a>) -> Self {
        PageWriteGuard {
            latch,
            pin,
            fresh: false,
        }
    }

    /// The guard of a page `new_page` made (see `fresh`).
    pub(crate) fn new_page(latch: RwLockWriteGuard<'a, IoBuf>, pin: PinnedPage<'a>) -> Self {
        PageWriteGuard {
            latch,
            pin,
            fresh: true,
        }
    }

    /// The page's file.
    pub fn file(&self) -> FileId {
        self.pin.file()
    }

    /// The page's id.
    pub fn page_id(&self) -> PageId {
        self.pin.page_id()
    }

    /// Records a change logged at `lsn`: stores `lsn` as the page LSN, marks
    /// the frame dirty (its recLSN becomes `lsn` if it was clean) and bumps
    /// its modification counter, so a write-back that copied the page
    /// before this change will not mark it clean. Call it after each change
    /// (or once after several, before dropping the guard).
    pub fn mark_dirty(&mut self, lsn: Lsn) {
        debug_assert!(
            page::page_lsn(&self.latch).is_none_or(|old| old <= lsn),
            "page LSN goes backwards on file {} page {} (inv. 8: redo compares page LSNs)",
            self.file(),
            self.page_id()
        );
        let stored = page::set_page_lsn(&mut self.latch, lsn);
        debug_assert!(stored.is_ok(), "a frame holds exactly one page");
        self.pin.shared.mark_dirty(self.pin.frame, lsn);
        self.fresh = false;
    }
}

impl Drop for PageWriteGuard<'_> {
    /// A new page dropped before any change was marked on it (its caller
    /// failed before formatting it) leaves the pool: it exists nowhere but
    /// in this frame, so a later fetch must find it missing (past the end
    /// of the file) rather than read zeros no check has seen, and a later
    /// `new_page` of the same page must find it free. The latch and the
    /// pin are still held here; a frame someone else pinned meanwhile (a
    /// fetch of a page past the file's end) stays.
    fn drop(&mut self) {
        if self.fresh {
            self.pin.shared.meta.lock().discard_new(self.pin.frame);
        }
    }
}

impl Deref for PageWriteGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.latch
    }
}

impl DerefMut for PageWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.latch
    }
}

impl fmt::Debug for PageWriteGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PageWriteGuard(file {}, page {})",
            self.file(),
            self.page_id()
        )
    }
}
