//! Ordered maps: B-link trees of byte-string keys and values, on the same
//! pages, buffer pool, log, locks and recovery as the heap.
//!
//! A tree is a relation (`RelationKind::Tree`) whose file holds a meta page
//! (page 0, naming the root and its level) and nodes (page formats in
//! [`crate::page::tree`]). Keys are ordered by memcmp and are at most
//! [`MAX_KEY_LEN`] bytes; a value that keeps its item within
//! [`MAX_ITEM_LEN`] is stored in the leaf, a larger one in an overflow
//! chain in the same file (the heap's chains: `OverflowWrite` records,
//! freed after the deleting or replacing commit, or, when a crash kept
//! that free out of the log, by the next open from the old head in the
//! `TreeDelete` record: `recovery::redo`) with its 24-byte head in the
//! leaf.
//!
//! ## Concurrency: B-link descent (Lehman and Yao; invariant 11)
//!
//! Every node has a high key and a right link. A reader holds one latch at
//! a time: it reads the root from the meta page, and at each node, if the
//! key is not below the node's high key, it follows the right link (the
//! node split after its parent was read); otherwise it takes the child's
//! id, releases the node and latches the child. A writer descends the same
//! way with shared latches down to the leaf's parent and latches the leaf
//! exclusively (never shared first), moving right under exclusive
//! latches, one at a time.
//!
//! A get need not start at the root: a tree keeps **routes**, a copy of
//! the downlinks of one of its upper levels (the leaves' when there are
//! at most [`routes::MAX_ROUTES`] of them), and a get descends from the
//! node whose separator is the last at or below its key, moving right from
//! there as from any node it reached through a stale parent. That is
//! correct because a node's range only ever shrinks from the right while
//! the routes exist: whatever frees a node or widens one leftwards (a
//! reclaim, a bulk load, its rollback) holds the structure lock
//! exclusively and drops the routes first ([`routes`] gives the rule in
//! full). A writer starts from the routes the same way (it holds the
//! structure lock shared too); its path then holds only the nodes below
//! the routes' level, and a split that needs a parent above them finds it
//! by a descent from the root.
//!
//! A **split** of node L (at any level) happens under L's exclusive latch:
//! a new page R is taken (a free page the FSM knows of, or a page past the
//! end of the file) and latched, and both halves are logged in **one**
//! record: R holding the upper half of L's items with L's old high key and
//! right link, and L holding the lower half, with the first key of R as its
//! high key, R as its right link and the `INCOMPLETE_SPLIT` flag (a
//! `tree-split` of R's image and L's truncation, or a `multi-page-image` of
//! both, [`Storage::change_split`]; below). R's latch is released;
//! with L still latched, the parent P is latched (child, then parent, never
//! the other way round), found by the path of the descent and moving
//! right until the page holding L's downlink, and the downlink `(first key
//! of R, R)` is inserted into it. Then L's flag is cleared and L
//! released. A full P is split first, the same way (its halves logged,
//! its own flag set, its new right half PR latched after it), the
//! downlink goes into whichever of P and PR covers its key, L's flag is
//! cleared and L released, and only then is P's downlink added one level
//! up, P taking L's place. So a split holds at most three pages (L, P,
//! PR; at the top, the old root, the new root and the meta page) however
//! tall the tree, and a pool of a few frames grows a tree of any height.
//! When L was the root, a new root with the two downlinks is
//! made and the meta page is changed to name it. Between the two halves
//! and the downlink, readers reach R through L's right link; a crash
//! between a level's downlink and the next level's leaves the upper
//! split flagged, and the next writer there finishes it.
//!
//! Latch order, the whole of it: levels are latched bottom-up (a page of
//! level `l + 1` only while holding pages of level `l` or below, except
//! during a descent, which holds one page at a time); within a level, left
//! to right (a writer holding a leaf may latch its right siblings to find
//! the key after its last one); the meta page and a page being allocated
//! last. A free page the FSM offers is latched without waiting (another
//! split may have been offered it too and made it a node, which a descent
//! may hold while it waits for this split's node): a page someone holds
//! goes back to the map and the next offer is tried. No latch is held
//! while waiting for a lock. A split is the one
//! place that may wait for I/O with latches held: taking the new page or
//! reading the parent may need a free frame, and freeing one may write a
//! dirty victim after flushing the log through its LSN. Neither the log
//! flush nor a write-back ever waits for a page latch (write-backs only try
//! latches, buffer/mod.rs rule 4), so the wait always ends.
//!
//! ## Logging and recovery
//!
//! A key's insert and delete in a transaction are `TreeInsert` and
//! `TreeDelete` records on the leaf, undone **logically**: rollback (and
//! recovery's undo) descends again to the leaf that holds the key *now*
//! and logs a CLR there ([`undo`]). A split is a nested top action: its
//! page images, the parent's `TreeInsert` of the downlink, the new root
//! and the meta page's change are logged outside any transaction, so they
//! are redone and never undone, and rolling back the insert that caused a
//! split leaves the split in place.
//!
//! The rule that keeps a crash from leaking a page: **every record of a
//! structure change leaves a tree in which each page of the file is
//! reachable or free.** So the changes that must go together are one
//! record: the two halves of a split (a `tree-split`,
//! [`Storage::change_split`]); a new root and the meta
//! page naming it, and a reclaimed leaf, its left sibling and its parent
//! ([`reclaim`]), each a `multi-page-image` ([`Storage::change_pages`]).
//! Redo applies such a record to each of its pages only when that page's
//! LSN is below the record's, page by page (invariant 8: redo is
//! idempotent however often recovery runs), and a log cut anywhere leaves
//! the record whole or absent. An image is a whole page, so it needs no
//! page image kept before it (invariant 5). A `tree-split`'s truncation of
//! L is not: it rebuilds L from L's own items as the log left them,
//! checking that the item it cuts at holds the new high key. So when L has
//! not changed since the redo point, the split keeps L's image first, under
//! the redo gate, as any first change does (`storage::images`), and redo
//! repairs a torn L from that image before it meets the truncation. A
//! leaf split logs about half a page this way (R's items, not L's as
//! well). A page taken past the end of the file joins the file only
//! with that record. A crash between the split's record and the downlink
//! leaves `INCOMPLETE_SPLIT` on L, R reachable through L's right link: the
//! next writer that latches L exclusively finishes the split (nbtree's
//! rule); until then readers move right. `keel check` reports any page
//! that nothing reaches, and the crash tests (`tests/tree_crash.rs`) cut
//! the log after every record of a split, a root split and a reclaim and
//! require that it reports nothing.
//!
//! ## Locking: key-range locks (ARIES/KVL)
//!
//! A transaction locks the tree in an intention mode and each key it
//! touches, by [`key_lock`] (a 64-bit hash of the key: two keys sharing a
//! hash share a lock, which only makes a transaction wait more). Reads lock
//! the key they return (S); a read that finds nothing locks the *next* key
//! (the first key above it, or the end of the tree, [`END_OF_TREE`]), so
//! the key cannot appear until the reader ends. A range scan locks every
//! key it returns and the first key past its range. An insert of a new
//! key checks the next key for a reader's lock (an instant X request,
//! granted and released at once) before it locks the key X for good, so
//! no insert lands in a gap a running scan has read; a delete locks the
//! key and the next key X until it ends. Locks are tried without waiting
//! under the leaf's latch; when one would wait, the latch is released,
//! the lock waited for, and the operation starts again from the root.
//!
//! A read-only transaction ([`Database::begin_read`](crate::Database::begin_read))
//! that has made
//! [`TREE_READ_ESCALATE_AT`](crate::TREE_READ_ESCALATE_AT) reads in a tree
//! (gets and range scans, one each) tries, never waiting, to lock the
//! whole tree S (granted only while no other transaction holds it IX);
//! from then on its gets there, and the scans it starts there, take no key
//! lock, since the tree lock gives them all (and keeps the tree's writers
//! waiting until the reader ends). A transaction that may write keeps to
//! key locks up to the lock manager's own escalation after `ESCALATE_AT`
//! of them: holding the tree S, its first write there would need X, and
//! two such transactions would deadlock. A tree
//! held X (a bulk load's lock, or the lock manager's escalation after
//! `ESCALATE_AT` key locks, which the transaction looks for at that count)
//! covers the same way, and then its puts take no key locks either: no
//! other transaction holds any lock in the tree.
//!
//! ## Empty leaves
//!
//! A leaf emptied by committed deletes is reclaimed after the commit
//! ([`reclaim`]): under the tree's structure lock held exclusively (no
//! descent is under way), in one record, it leaves its parent and a
//! sibling under the same parent takes its range (the left one its high
//! key and right link, or the right one its place in the parent, with the
//! node left of it relinked), and it becomes a free page the next split or
//! overflow chain reuses. A leaf that is its parent's only child has its
//! parent merged into a sibling first (climbing while a node is an only
//! child; the root stays), so a tree whose keys all move along, a queue,
//! keeps a file the size of its live keys.
//!
//! The queue of leaves to reclaim lives in memory until the commit's
//! reclaim runs, so a crash after the commit and before the reclaim would
//! forget them. The open finds them again: recovery notes every leaf that
//! a transaction's key delete (or a CLR's) in the log it reads names, and
//! once the catalog is loaded, before any transaction runs, the open
//! reclaims each of those that is an empty leaf (`reclaim_leaf` checks the
//! rest). The log read reaches every such delete: a committed transaction
//! stays in the transaction table until its reclaims have run
//! (`txn::transaction::end`), so a checkpoint taken in between counts it
//! as active and its scan start stays at or before the transaction's first
//! record.

pub(crate) mod bulk;
pub(crate) mod read;
pub(crate) mod reclaim;
pub(crate) mod routes;
pub(crate) mod undo;
pub(crate) mod write;

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;

use crate::buffer::PageWriteGuard;
use crate::error::{DbError, Result};
use crate::heap::{Relation, RelationKind};
use crate::lock::LockTarget;
use crate::page::PAGE_SIZE;
use crate::page::tree::{self, TreePage};
use crate::storage::Storage;
use crate::types::{PageId, RelationId};
use crate::wal::Payload;

pub use crate::page::tree::{MAX_ITEM_LEN, MAX_KEY_LEN};

/// The meta page of every tree.
pub(crate) const META_PAGE: PageId = PageId(0);

/// The lock name of "past the last key" ([`key_lock`] never returns it).
pub const END_OF_TREE: u64 = u64::MAX;

/// The lock on `key` in tree `rel` (module docs, Locking).
pub(crate) fn key_lock(rel: RelationId, key: &[u8]) -> LockTarget {
    let mut h = rustc_hash::FxBuildHasher.build_hasher();
    h.write(key);
    h.write_u8(0xff);
    let hash = h.finish();
    LockTarget::Key(rel, if hash == END_OF_TREE { 0 } else { hash })
}

/// The lock on the end of tree `rel`.
pub(crate) fn end_lock(rel: RelationId) -> LockTarget {
    LockTarget::Key(rel, END_OF_TREE)
}

/// The internal pages a descent passed, `(level, page)` from the root
/// down, for finding a parent. A hint only: a split checks the level of
/// what it pops and descends again when it does not match. Held in a fixed
/// array, one entry per level above the leaves (at most
/// [`MAX_LEVEL`](crate::page::tree::MAX_LEVEL)), so a put allocates nothing
/// for it; a push past that many is dropped, and a split then finds that
/// parent by a descent.
pub(crate) struct Path {
    len: usize,
    nodes: [(u16, PageId); PATH_CAPACITY],
}

/// Entries a [`Path`] holds: one per level a node may have above a leaf.
const PATH_CAPACITY: usize = crate::page::tree::MAX_LEVEL as usize;

impl Path {
    /// An empty path.
    pub(crate) fn new() -> Path {
        Path {
            len: 0,
            nodes: [(0, PageId(0)); PATH_CAPACITY],
        }
    }

    /// Forgets every entry.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Records a node passed (dropped when the path is full).
    pub(crate) fn push(&mut self, node: (u16, PageId)) {
        if let Some(slot) = self.nodes.get_mut(self.len) {
            *slot = node;
            self.len += 1;
        }
    }

    /// The last node recorded, removed.
    pub(crate) fn pop(&mut self) -> Option<(u16, PageId)> {
        self.len = self.len.checked_sub(1)?;
        Some(self.nodes[self.len])
    }
}

/// Node `p` of tree `rel`, when it is at `level`; otherwise corruption
/// naming both levels.
fn at_level<'p>(rel: &Relation, p: TreePage<&'p [u8]>, level: u16) -> Result<TreePage<&'p [u8]>> {
    if p.level() != level {
        return Err(corrupt(
            rel,
            p.page_id(),
            format!(
                "a node of level {} where level {level} was expected",
                p.level()
            ),
        ));
    }
    Ok(p)
}

/// The error for tree contents that contradict the tree's rules.
pub(crate) fn corrupt(rel: &Relation, page: PageId, reason: impl Into<String>) -> crate::Error {
    DbError::Corrupt {
        what: format!("tree {} ({}), page {page}", rel.id, rel.name),
        reason: reason.into(),
    }
    .into()
}

/// Refuses a relation that is not a tree.
pub(crate) fn check_tree(rel: &Relation) -> Result<()> {
    rel.expect(RelationKind::Tree)
}

/// Refuses a key longer than [`MAX_KEY_LEN`].
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(DbError::KeyTooLarge {
            len: key.len(),
            max: MAX_KEY_LEN,
        }
        .into());
    }
    Ok(())
}

impl Storage {
    /// Formats a new tree's file: the meta page naming an empty root leaf
    /// at page 1 (redo-only records, ddl.rs).
    pub(crate) fn format_tree(&self, rel: &Relation) -> Result<()> {
        let mut meta = Box::new([0u8; PAGE_SIZE]);
        tree::init_meta(&mut meta[..], META_PAGE, PageId(1), 0)?;
        drop(self.create_page(None, rel, &Payload::PageImage { image: meta })?);
        let mut leaf = Box::new([0u8; PAGE_SIZE]);
        TreePage::build(&mut leaf[..], PageId(1), 0, 0, &[], None)?;
        drop(self.create_page(None, rel, &Payload::PageImage { image: leaf })?);
        Ok(())
    }

    /// The root and its level.
    pub(crate) fn tree_root(&self, rel: &Relation) -> Result<(PageId, u16)> {
        let g = self.pool.fetch_read(rel.file(), META_PAGE)?;
        let (root, level) = tree::read_meta(&g, META_PAGE)?;
        set_root_hint(rel, root, level);
        Ok((root, level))
    }

    /// Where a descent starts: the root as last seen, or the meta page's.
    /// A root only ever gains a level above it (a split) or is switched
    /// under the structure lock held exclusively (a bulk load, which
    /// updates the hint), so a stale root is an old root: still a node of
    /// its level, from which right links reach every key of that level.
    pub(crate) fn root_hint(&self, rel: &Relation) -> Result<(PageId, u16)> {
        let hint = rel.root_hint.load(Ordering::Acquire);
        if hint == 0 {
            return self.tree_root(rel);
        }
        Ok((PageId((hint >> 16) as u32), (hint & 0xffff) as u16))
    }

    /// Checks that page `pid` is a node of `level` within the file.
    pub(crate) fn node<'p>(
        &self,
        rel: &Relation,
        page: &'p [u8],
        pid: PageId,
        level: u16,
    ) -> Result<TreePage<&'p [u8]>> {
        at_level(rel, TreePage::open(page, pid)?, level)
    }

    /// [`node`](Self::node) for a page latched shared, whose header checks
    /// run only when its bytes have not passed them since they last changed
    /// (`PageReadGuard::node_checked`); the level is checked every time.
    pub(crate) fn read_node<'p>(
        &self,
        rel: &Relation,
        g: &'p crate::buffer::PageReadGuard<'_>,
        pid: PageId,
        level: u16,
    ) -> Result<TreePage<&'p [u8]>> {
        if !g.node_checked() {
            let p = self.node(rel, g, pid, level)?;
            g.set_node_checked();
            return Ok(p);
        }
        at_level(rel, TreePage::reopen(&g[..], pid), level)
    }

    /// The next page right of `p`, checked to lie inside the file; `moves`
    /// bounds a walk by the file's page count, so a cycle of right links is
    /// corruption, not a hang.
    pub(crate) fn right_of<B: AsRef<[u8]>>(
        &self,
        rel: &Relation,
        p: &TreePage<B>,
        moves: &mut u32,
    ) -> Result<PageId> {
        *moves += 1;
        match p.right_link() {
            Some(r) if r.0 < rel.page_count() && r.0 != 0 && *moves <= rel.page_count() => Ok(r),
            other => Err(corrupt(
                rel,
                p.page_id(),
                format!("right link {other:?} while moving right"),
            )),
        }
    }

    /// Descends to the node of `level` whose range holds `key` and returns
    /// its id, recording in `path` the internal pages above it (module
    /// docs: one shared latch at a time).
    pub(crate) fn descend(
        &self,
        rel: &Relation,
        key: &[u8],
        level: u16,
        path: &mut Path,
    ) -> Result<PageId> {
        path.clear();
        self.walk(rel, key, level, Some(path)).map(|(_, pid)| pid)
    }

    /// The leaf whose range holds `key`, latched shared, found as
    /// [`descend`](Self::descend) finds it (one latch at a time). The leaf
    /// was opened and checked as a node of level 0 under the latch the
    /// guard holds, so `TreePage::reopen` may skip those checks.
    ///
    /// Starts from the tree's routes when it has them ([`routes`]): at
    /// the node of the routes' level whose range starts closest below
    /// `key`, moving right from there as from any node. Call with the
    /// structure lock held shared.
    pub(crate) fn leaf_for_read(
        &self,
        rel: &Relation,
        key: &[u8],
    ) -> Result<(crate::buffer::PageReadGuard<'_>, PageId)> {
        let held = self.routes(rel)?;
        self.leaf_from_routes(rel, key, held.as_deref().filter(|r| r.usable()))
    }

    /// [`leaf_for_read`](Self::leaf_for_read) with the routes loaded
    /// through `cache`, a cache of `rel`'s (`routes::RoutesCache`).
    pub(crate) fn leaf_for_read_cached(
        &self,
        rel: &Relation,
        key: &[u8],
        cache: &mut routes::RoutesCache,
    ) -> Result<(crate::buffer::PageReadGuard<'_>, PageId)> {
        match cache.current(rel) {
            Some(r) => self.leaf_from_routes(rel, key, Some(r)),
            None => self.leaf_for_read(rel, key),
        }
    }

    /// [`leaf_for_read`](Self::leaf_for_read) from usable routes `routes`
    /// of `rel`, or from the root without them.
    fn leaf_from_routes(
        &self,
        rel: &Relation,
        key: &[u8],
        routes: Option<&routes::Routes>,
    ) -> Result<(crate::buffer::PageReadGuard<'_>, PageId)> {
        let Some(r) = routes else {
            return self.walk(rel, key, 0, None);
        };
        let (g, pid, moves) = self.walk_from(rel, key, 0, r.route(key), r.level(), None)?;
        if r.stale(moves) {
            routes::drop_routes(rel);
        }
        Ok((g, pid))
    }

    /// The descent itself: from the root (as last seen, or the meta page's
    /// when the hint is below `level`) to the node of `level` holding
    /// `key`, moving right past high keys, one shared latch at a time;
    /// returns that node still latched. Internal pages passed go to `path`.
    fn walk(
        &self,
        rel: &Relation,
        key: &[u8],
        level: u16,
        path: Option<&mut Path>,
    ) -> Result<(crate::buffer::PageReadGuard<'_>, PageId)> {
        let (mut pid, mut at) = self.root_hint(rel)?;
        if at < level {
            // The hint is older than the root that level belongs to.
            (pid, at) = self.tree_root(rel)?;
        }
        if at < level {
            return Err(corrupt(
                rel,
                pid,
                format!("root at level {at}, below {level}"),
            ));
        }
        self.walk_from(rel, key, level, pid, at, path)
            .map(|(g, pid, _)| (g, pid))
    }

    /// The descent from node `pid` of level `at` (at or above `level`):
    /// as [`walk`](Self::walk), and also returns how many times it moved
    /// right.
    fn walk_from(
        &self,
        rel: &Relation,
        key: &[u8],
        level: u16,
        mut pid: PageId,
        mut at: u16,
        mut path: Option<&mut Path>,
    ) -> Result<(crate::buffer::PageReadGuard<'_>, PageId, u32)> {
        let mut moves = 0;
        loop {
            let g = self.pool.fetch_read(rel.file(), pid)?;
            let p = self.read_node(rel, &g, pid, at)?;
            if !p.covers(key) {
                pid = self.right_of(rel, &p, &mut moves)?;
                continue;
            }
            if at == level {
                return Ok((g, pid, moves));
            }
            let (_, child) = p.child_for(key)?;
            if child.0 >= rel.page_count() || child.0 == 0 {
                return Err(corrupt(rel, pid, format!("child {child} past the file")));
            }
            if let Some(path) = path.as_deref_mut() {
                path.push((at, pid));
            }
            pid = child;
            at -= 1;
        }
    }

    /// Latches exclusively the node of `level` whose range holds `key`,
    /// starting at `pid` and moving right (finishing any split left
    /// incomplete on a node it moves right from).
    pub(crate) fn latch_covering(
        &self,
        rel: &Relation,
        pid: PageId,
        level: u16,
        key: &[u8],
    ) -> Result<PageWriteGuard<'_>> {
        self.latch_covering_counted(rel, pid, level, key, &mut 0)
    }

    /// As [`latch_covering`](Self::latch_covering), adding the moves right
    /// it made to `moves`.
    fn latch_covering_counted(
        &self,
        rel: &Relation,
        mut pid: PageId,
        level: u16,
        key: &[u8],
        moves: &mut u32,
    ) -> Result<PageWriteGuard<'_>> {
        loop {
            let g = self.pool.fetch_write(rel.file(), pid)?;
            let p = self.node(rel, &g, pid, level)?;
            if p.covers(key) {
                return Ok(g);
            }
            if p.incomplete_split() {
                // A writer never moves right past an unfinished split: the
                // right half could split in turn with no parent to take
                // its downlink (nbtree's rule). Finish it, then look again.
                self.finish_split(rel, g, level, &mut Path::new())?;
                continue;
            }
            pid = self.right_of(rel, &p, moves)?;
        }
    }

    /// The leaf holding `key`, latched exclusively, and the internal pages
    /// passed on the way in `path`.
    ///
    /// Starts where a get starts ([`leaf_for_read`](Self::leaf_for_read)):
    /// at the node the tree's routes name for `key` when it has usable
    /// routes, else at the root. Above the leaves it descends with one
    /// shared latch at a time to the parent of the leaf, takes the leaf's
    /// id there, releases the parent and latches the leaf exclusively,
    /// moving right under exclusive latches (the leaf is never latched
    /// shared first). Routes are as correct a start for a writer as for a
    /// get (the writer holds the structure lock shared, [`routes`] gives
    /// the rule); `path` then holds only the nodes below the routes'
    /// level, and a split that needs a parent above them finds it by a
    /// descent from the root (`add_downlink`). Moves right count against
    /// the routes as a get's do. Call with the structure lock held shared.
    pub(crate) fn leaf_for_write(
        &self,
        rel: &Relation,
        key: &[u8],
        path: &mut Path,
    ) -> Result<PageWriteGuard<'_>> {
        path.clear();
        let held = self.routes(rel)?;
        let routes = held.as_ref().filter(|r| r.usable());
        let (start, at) = match routes {
            Some(r) => (r.route(key), r.level()),
            None => self.root_hint(rel)?,
        };
        let mut moves = 0;
        let leaf = if at == 0 {
            start
        } else {
            let (g, parent, m) = self.walk_from(rel, key, 1, start, at, Some(&mut *path))?;
            moves += m;
            let (_, child) = self.node(rel, &g, parent, 1)?.child_for(key)?;
            drop(g);
            if child.0 >= rel.page_count() || child.0 == 0 {
                return Err(corrupt(rel, parent, format!("child {child} past the file")));
            }
            path.push((1, parent));
            child
        };
        let g = self.latch_covering_counted(rel, leaf, 0, key, &mut moves)?;
        if routes.is_some_and(|r| r.stale(moves)) {
            routes::drop_routes(rel);
        }
        Ok(g)
    }
}

/// Records `root` at `level` as the root descents start from.
pub(crate) fn set_root_hint(rel: &Relation, root: PageId, level: u16) {
    let hint = (u64::from(root.0) << 16) | u64::from(level);
    rel.root_hint.store(hint, Ordering::Release);
}

/// A page image of node `pid` holding `items`.
pub(crate) fn node_image(
    pid: PageId,
    level: u16,
    flags: u16,
    items: &[(Vec<u8>, Vec<u8>)],
    high: Option<(&[u8], PageId)>,
) -> Result<Payload> {
    let image = node_page(pid, level, flags, items, high)?;
    Ok(Payload::PageImage { image })
}

/// The bytes of node `pid` holding `items`.
pub(crate) fn node_page<K: AsRef<[u8]>, R: AsRef<[u8]>>(
    pid: PageId,
    level: u16,
    flags: u16,
    items: &[(K, R)],
    high: Option<(&[u8], PageId)>,
) -> Result<Box<[u8; PAGE_SIZE]>> {
    let refs: Vec<(&[u8], &[u8])> = items
        .iter()
        .map(|(k, r)| (k.as_ref(), r.as_ref()))
        .collect();
    Ok(crate::page::tree::node_image(
        pid, level, flags, &refs, high,
    )?)
}

#[cfg(test)]
mod tests {
    use super::{PATH_CAPACITY, Path};
    use crate::types::PageId;

    #[test]
    fn a_path_pops_what_it_kept_last_first_and_drops_pushes_past_its_capacity() {
        let mut path = Path::new();
        assert_eq!(path.pop(), None);
        for level in (1..=PATH_CAPACITY as u16 + 2).rev() {
            path.push((level, PageId(u32::from(level) * 10)));
        }
        // The two pushes past the capacity (levels 2 and 1) were dropped.
        assert_eq!(path.pop(), Some((3, PageId(30))));
        path.push((1, PageId(7)));
        assert_eq!(path.pop(), Some((1, PageId(7))));
        assert_eq!(path.pop(), Some((4, PageId(40))));
        path.clear();
        assert_eq!(path.pop(), None);
    }
}
