//! Reclaiming a leaf emptied by committed deletes (module docs of
//! [`super`], Empty leaves).
//!
//! Runs after the deleting transaction's commit is durable, under the
//! tree's structure lock held exclusively: no descent or scan of the tree
//! is under way, so no one can be on its way to the leaf, and the latches
//! below (parent, then the leaf's left sibling, then the leaf) cannot meet
//! another tree operation's. Three redo-only records, in this order:
//!
//! 1. the parent's downlink to the leaf is removed (`TreeDelete` on the
//!    parent): the leaf's keys now route to its left sibling, whose high key
//!    sends a descent right, to the leaf, which is still linked;
//! 2. the left sibling takes the leaf's high key and right link (a page
//!    image): the leaf is out of the tree;
//! 3. the leaf is formatted as a free page and given to the FSM, for the
//!    next split or overflow chain.
//!
//! A crash after 1 leaves a valid tree; after 2, the leaf is unreachable
//! and not yet free: `keel check` reports it as unreachable. A leaf that is
//! its parent's first child, that is not empty any more, or whose left
//! sibling is not linked to it (a split in progress) stays.

use super::{Path, node_image};
use crate::error::Result;
use crate::heap::Relation;
use crate::page::PageType;
use crate::page::tree::child_rest;
use crate::storage::Storage;
use crate::types::PageId;
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
        self.change(None, rel.id, &mut pg, &unlink)?;
        drop(pg);
        let widened = node_image(left, 0, 0, &left_items, high.as_deref().zip(right))?;
        self.change(None, rel.id, &mut lg, &widened)?;
        drop(lg);
        let free = Payload::PageInit {
            page_type: PageType::Free,
        };
        self.change(None, rel.id, &mut g, &free)?;
        rel.fsm.update(
            leaf,
            crate::fsm::EMPTY_PAGE_FREE,
            crate::fsm::EMPTY_PAGE_FREE,
        );
        Ok(())
    }
}
