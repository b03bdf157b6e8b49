//! Reclaiming a leaf emptied by committed deletes (module docs of
//! [`super`], Empty leaves), and the inner nodes left with a single child
//! on the way.
//!
//! Runs after the deleting transaction's commit is durable, under the
//! tree's structure lock held exclusively: no descent or scan of the tree
//! is under way, so no one can be on its way to a page it removes, and
//! its latches cannot meet another tree operation's.
//!
//! ## One step: a node leaves its parent
//!
//! Every change is one **removal**: node `N` of level `l` leaves its parent
//! `G`, and its items (none for an empty leaf; one or more downlinks for an
//! inner node) move into a sibling under the same parent, in one redo-only
//! `multi-page-image` record of at most four pages:
//!
//! - **Merge left** (`N` is not `G`'s first child): the left sibling `S`
//!   takes `N`'s items after its own (an inner node's first item, minus
//!   infinity, takes `N`'s separator in `G` as its key), and `N`'s high key
//!   and right link. Pages: `G` without `N`'s downlink, `S`, `N` freed.
//! - **Merge right** (`N` is `G`'s first child, `G` has another): the right
//!   sibling `S` takes `N`'s items before its own (`S`'s first item, minus
//!   infinity, takes `S`'s separator as its key); `G`'s first downlink now
//!   names `S` and `S`'s own item goes, so `S` covers from `N`'s low end.
//!   The node left of `N` on its level (under another parent, found by
//!   descending to the keys just below `N`'s low end; none when `N` is the
//!   leftmost) links to `S`. Pages: `G`, `S` (unchanged for an empty leaf,
//!   so left out), the left neighbour, `N` freed.
//!
//! After each step every page of the file is reachable or free and every
//! level's high keys and right links agree with the separators above them,
//! so a crash between two steps leaves a tree as valid as before them; the
//! freed page goes to the FSM for the next split or overflow chain.
//!
//! ## The whole reclaim of an empty leaf
//!
//! When the leaf's parent has another child, one removal takes the leaf
//! out. When the leaf is its parent's only child, the parent is first
//! removed from *its* parent (merging its one downlink into a sibling, so
//! the leaf gains siblings), climbing while a node is its parent's only
//! child; then the leaf goes. The root is never removed, so a root with
//! a single child keeps it. A step that finds something it does not expect
//! (a split awaiting its downlink, a sibling that does not link to the
//! node, a sibling without room for the items) changes nothing and the
//! leaf stays, empty and linked: no key is lost and later inserts in its
//! range use it.

use super::{corrupt, node_page};
use crate::buffer::PageWriteGuard;
use crate::error::Result;
use crate::heap::Relation;
use crate::page::tree::{TreePage, child_rest};
use crate::page::{PAGE_SIZE, PageType, init_page};
use crate::storage::Storage;
use crate::types::PageId;

/// Items of a node, as `node_page` takes them.
type Items = Vec<(Vec<u8>, Vec<u8>)>;

/// A node found on the way down, with the low end of its range (`None`:
/// minus infinity).
struct Found {
    pid: PageId,
    low: Option<Vec<u8>>,
}

impl Storage {
    /// Reclaims leaf `leaf` of `rel` if it is still empty; `key` is a key
    /// it covered (the last one deleted), to find its parents.
    pub(crate) fn reclaim_leaf(&self, rel: &Relation, leaf: PageId, key: &[u8]) -> Result<()> {
        let _only = super::routes::restructure(rel);
        // Each pass removes one page (or stops), so the file's page count
        // bounds the passes.
        for _ in 0..=rel.page_count() {
            if leaf.0 >= rel.page_count() || !self.is_empty_leaf(rel, leaf)? {
                return Ok(());
            }
            let (_, root_level) = self.tree_root(rel)?;
            if root_level == 0 {
                return Ok(());
            }
            // The lowest node on the leaf's path that is not its parent's
            // only child: removing it (or the leaf) is the next step.
            let mut node = leaf;
            let mut level = 0;
            loop {
                let Some(parent) = self.parent_of(rel, key, node, level + 1)? else {
                    return Ok(());
                };
                let children = {
                    let g = self.pool.fetch_read(rel.file(), parent.pid)?;
                    self.node(rel, &g, parent.pid, level + 1)?.len()
                };
                if children >= 2 {
                    if !self.remove_node(rel, &parent, node, level)? {
                        return Ok(());
                    }
                    break;
                }
                if level + 1 == root_level {
                    // The root's only child: the root stays, and so does it.
                    return Ok(());
                }
                node = parent.pid;
                level += 1;
            }
            if node == leaf {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Whether page `pid` is a leaf with no item.
    fn is_empty_leaf(&self, rel: &Relation, pid: PageId) -> Result<bool> {
        let g = self.pool.fetch_read(rel.file(), pid)?;
        Ok(TreePage::open(&g[..], pid).is_ok_and(|p| p.is_leaf() && p.is_empty()))
    }

    /// The node of `level` holding `key` with the low end of its range, if
    /// it holds a downlink to `child` (it does unless `key` left `child`'s
    /// range since it was deleted).
    fn parent_of(
        &self,
        rel: &Relation,
        key: &[u8],
        child: PageId,
        level: u16,
    ) -> Result<Option<Found>> {
        let found = self.descend_with_low(rel, key, level)?;
        let g = self.pool.fetch_read(rel.file(), found.pid)?;
        let p = self.node(rel, &g, found.pid, level)?;
        Ok(p.find_child(child)?.map(|_| found))
    }

    /// Descends to the node of `level` holding `key`, keeping the low end
    /// of each node's range: the separator of the downlink taken, or the
    /// high key of the node moved right from.
    fn descend_with_low(&self, rel: &Relation, key: &[u8], level: u16) -> Result<Found> {
        let (mut pid, mut at) = self.tree_root(rel)?;
        let mut low: Option<Vec<u8>> = None;
        let mut moves = 0;
        loop {
            let g = self.pool.fetch_read(rel.file(), pid)?;
            let p = self.node(rel, &g, pid, at)?;
            if !p.covers(key) {
                low = p.high_key().map(<[u8]>::to_vec);
                pid = self.right_of(rel, &p, &mut moves)?;
                continue;
            }
            if at == level {
                return Ok(Found { pid, low });
            }
            let (i, child) = p.child_for(key)?;
            if i > 0 {
                low = Some(p.key(i)?.to_vec());
            }
            pid = self.checked_child(rel, &p, child)?;
            at -= 1;
        }
    }

    /// The node of `level` whose range ends at `low` (the left neighbour
    /// of the node whose range starts there), found by descending to the
    /// keys just below `low`.
    fn node_ending_at(&self, rel: &Relation, low: &[u8], level: u16) -> Result<PageId> {
        let (mut pid, mut at) = self.tree_root(rel)?;
        let mut moves = 0;
        loop {
            let g = self.pool.fetch_read(rel.file(), pid)?;
            let p = self.node(rel, &g, pid, at)?;
            if p.high_key().is_some_and(|h| h < low) {
                pid = self.right_of(rel, &p, &mut moves)?;
                continue;
            }
            if at == level {
                return Ok(pid);
            }
            let i = match p.search(low)? {
                Ok(i) | Err(i) => i.saturating_sub(1),
            };
            pid = self.checked_child(rel, &p, p.child(i)?)?;
            at -= 1;
        }
    }

    fn checked_child(&self, rel: &Relation, p: &TreePage<&[u8]>, child: PageId) -> Result<PageId> {
        if child.0 >= rel.page_count() || child.0 == 0 {
            return Err(corrupt(
                rel,
                p.page_id(),
                format!("child {child} past the file"),
            ));
        }
        Ok(child)
    }

    /// One removal (module docs): node `pid` of `level` leaves `parent`,
    /// its items moving into a sibling. `false` when a check fails and
    /// nothing was changed.
    fn remove_node(&self, rel: &Relation, parent: &Found, pid: PageId, level: u16) -> Result<bool> {
        // The left neighbour is found first, while no latch is held: its
        // descent may pass the pages latched below.
        let (i, sibling) = {
            let g = self.pool.fetch_read(rel.file(), parent.pid)?;
            let p = self.node(rel, &g, parent.pid, level + 1)?;
            let Some(i) = p.find_child(pid)? else {
                return Ok(false);
            };
            if p.incomplete_split() || p.len() < 2 {
                return Ok(false);
            }
            (i, p.child(if i == 0 { 1 } else { i - 1 })?)
        };
        let left = match (&parent.low, i) {
            (Some(low), 0) => Some(self.node_ending_at(rel, low, level)?),
            _ => None,
        };
        if sibling == pid || left.is_some_and(|l| l == pid || l == sibling) {
            return Ok(false);
        }
        let mut pg = self.pool.fetch_write(rel.file(), parent.pid)?;
        let mut ng = self.pool.fetch_write(rel.file(), pid)?;
        let mut sg = self.pool.fetch_write(rel.file(), sibling)?;
        let mut lg = match left {
            Some(l) => Some(self.pool.fetch_write(rel.file(), l)?),
            None => None,
        };
        let (p, n, s) = (
            self.node(rel, &pg, parent.pid, level + 1)?,
            self.node(rel, &ng, pid, level)?,
            self.node(rel, &sg, sibling, level)?,
        );
        if n.incomplete_split() || s.incomplete_split() || (n.is_leaf() && !n.is_empty()) {
            return Ok(false);
        }
        let mut parent_items = p.items()?;
        let parent_high = owned_high(&p);
        let mut moved = n.items()?;
        let mut kept = s.items()?;
        let mut changed: Vec<(PageId, Box<[u8; PAGE_SIZE]>)> = Vec::with_capacity(4);
        if i > 0 {
            // Merge left: S takes N's items, high key and right link.
            if s.right_link() != Some(pid) {
                return Ok(false);
            }
            if let Some(first) = moved.first_mut().filter(|_| level > 0) {
                first.0 = parent_items[i].0.clone();
            }
            kept.append(&mut moved);
            let high = owned_high(&n);
            let Some(widened) = fitting(sibling, level, &kept, &high) else {
                return Ok(false);
            };
            parent_items.remove(i);
            changed.push((sibling, widened));
        } else {
            // Merge right: S takes N's items before its own and N's place
            // in the parent; the node left of N links to S.
            if n.right_link() != Some(sibling) {
                return Ok(false);
            }
            if !moved.is_empty() {
                if let Some(first) = kept.first_mut() {
                    first.0 = parent_items[1].0.clone();
                }
                moved.append(&mut kept);
                let Some(image) = fitting(sibling, level, &moved, &owned_high(&s)) else {
                    return Ok(false);
                };
                changed.push((sibling, image));
            }
            if let (Some(lg), Some(low)) = (&lg, &parent.low) {
                let lpid = lg.page_id();
                let l = self.node(rel, lg, lpid, level)?;
                if l.right_link() != Some(pid)
                    || l.high_key() != Some(&low[..])
                    || l.incomplete_split()
                {
                    return Ok(false);
                }
                let relinked = node_page(lpid, level, 0, &l.items()?, Some((low, sibling)))?;
                changed.push((lpid, relinked));
            }
            parent_items.remove(1);
            parent_items[0].1 = child_rest(sibling).to_vec();
        }
        let mut images = vec![(
            parent.pid,
            node_page(
                parent.pid,
                level + 1,
                0,
                &parent_items,
                parent_high.as_ref().map(|(k, r)| (&k[..], *r)),
            )?,
        )];
        images.extend(changed);
        let mut free = Box::new([0u8; PAGE_SIZE]);
        init_page(&mut free[..], pid, PageType::Free)?;
        images.push((pid, free));
        // One guard per image, in the images' order: the parent, the
        // sibling when it changed, the left neighbour when it changed, N.
        let sibling_changed = images.iter().any(|(id, _)| *id == sibling);
        let mut guards: Vec<&mut PageWriteGuard<'_>> = vec![&mut pg];
        if sibling_changed {
            guards.push(&mut sg);
        }
        if let Some(lg) = lg
            .as_mut()
            .filter(|g| images.iter().any(|(id, _)| *id == g.page_id()))
        {
            guards.push(lg);
        }
        guards.push(&mut ng);
        self.change_pages(rel.id, &mut guards, images)?;
        drop((pg, ng, sg, lg));
        rel.fsm.update(
            pid,
            crate::fsm::EMPTY_PAGE_FREE,
            crate::fsm::EMPTY_PAGE_FREE,
        );
        Ok(true)
    }
}

/// A node's high key and right link, owned.
fn owned_high(p: &TreePage<&[u8]>) -> Option<(Vec<u8>, PageId)> {
    p.high_key().map(<[u8]>::to_vec).zip(p.right_link())
}

/// Node `pid` holding `items` bounded by `high`, or `None` when they do
/// not fit a page.
fn fitting(
    pid: PageId,
    level: u16,
    items: &Items,
    high: &Option<(Vec<u8>, PageId)>,
) -> Option<Box<[u8; PAGE_SIZE]>> {
    node_page(
        pid,
        level,
        0,
        items,
        high.as_ref().map(|(k, r)| (&k[..], *r)),
    )
    .ok()
}
