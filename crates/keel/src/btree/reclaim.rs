//! Reclaiming a leaf emptied by committed deletes (module docs of
//! [`super`], Empty leaves).
//!
//! Runs after the deleting transaction's commit is durable, under the
//! tree's structure lock held exclusively: no descent or scan of the tree
//! is under way, so no one can be on its way to the leaf, and the latches
//! below (parent, then the leaf's left sibling, then the leaf) cannot meet
//! another tree operation's. One redo-only `multi-page-image` record
//! changes the three pages at once:
//!
//! 1. the parent without its downlink to the leaf;
//! 2. the left sibling with the leaf's high key and right link;
//! 3. the leaf formatted as a free page, then given to the FSM for the next
//!    split or overflow chain.
//!
//! A crash leaves all three changed or none (each page redone by its own
//! LSN, invariant 8): never a leaf out of the tree and not free. A leaf
//! that is its parent's first child, that is not empty any more, or whose
//! left sibling is not linked to it (a split in progress) stays.

use super::{Path, node_page};
use crate::error::Result;
use crate::heap::Relation;
use crate::page::tree::child_rest;
use crate::page::{PAGE_SIZE, PageType, init_page};
use crate::storage::Storage;
use crate::storage::apply::apply;
use crate::types::{Lsn, PageId};
use crate::wal::Payload;

impl Storage {
    /// Reclaims leaf `leaf` of `rel` if it is still empty; `key` is a key
    /// it covered (the last one deleted), to find its parent.
    pub(crate) fn reclaim_leaf(&self, rel: &Relation, leaf: PageId, key: &[u8]) -> Result<()> {
        let _only = rel.structure.write();
        if leaf.0 >= rel.page_count() {
            return Ok(());
        }
        let (_, root_level) = self.tree_root(rel)?;
        if root_level == 0 {
            return Ok(());
        }
        let start = self.descend(rel, key, 1, &mut Path::new())?;
        let mut pg = self.latch_covering(rel, start, 1, key)?;
        let p = self.node(rel, &pg, pg.page_id(), 1)?;
        let Some(i) = p.find_child(leaf)? else {
            return Ok(());
        };
        if i == 0 || p.incomplete_split() {
            return Ok(());
        }
        let left = p.child(i - 1)?;
        let down_key = p.key(i)?.to_vec();
        let mut lg = self.pool.fetch_write(rel.file(), left)?;
        let mut g = self.pool.fetch_write(rel.file(), leaf)?;
        let (lp, p) = (self.node(rel, &lg, left, 0)?, self.node(rel, &g, leaf, 0)?);
        if !p.is_empty()
            || p.incomplete_split()
            || lp.incomplete_split()
            || lp.right_link() != Some(leaf)
        {
            return Ok(());
        }
        let high = p.high_key().map(<[u8]>::to_vec);
        let right = p.right_link();
        let left_items = lp.items()?;
        let unlink = Payload::TreeDelete {
            key: down_key,
            rest: child_rest(leaf).to_vec(),
        };
        let ppid = pg.page_id();
        let mut parent = Box::new([0u8; PAGE_SIZE]);
        parent.copy_from_slice(&pg[..]);
        apply(&unlink, &mut parent[..], ppid, Lsn::ZERO)?;
        let widened = node_page(left, 0, 0, &left_items, high.as_deref().zip(right))?;
        let mut free = Box::new([0u8; PAGE_SIZE]);
        init_page(&mut free[..], leaf, PageType::Free)?;
        self.change_pages(
            rel.id,
            &mut [&mut pg, &mut lg, &mut g],
            vec![(ppid, parent), (left, widened), (leaf, free)],
        )?;
        drop((pg, lg));
        rel.fsm.update(
            leaf,
            crate::fsm::EMPTY_PAGE_FREE,
            crate::fsm::EMPTY_PAGE_FREE,
        );
        Ok(())
    }
}
