//! Bulk load: building a tree from sorted input bottom-up, for loading a
//! large sorted input into an empty tree in one transaction.
//!
//! The transaction holds the tree's relation lock exclusively and the
//! structure lock exclusively, so no one else reads or changes the tree
//! meanwhile, and no key lock is needed. Leaves are filled left to right to
//! [`FILL`] of their room (PostgreSQL's nbtree build leaves 10% free too,
//! so later inserts do not split at once): each node's page is taken when
//! its first item arrives (an empty node's page image, a few dozen bytes of
//! log), and its full page image is logged once the first key of the next
//! node, its high key, is known. Then each level above is built the same
//! way from the first keys of the level below, until one node is left:
//! the new root.
//!
//! The nodes' images are redo-only; the one record in the transaction is
//! the meta page's `TreeRootSwap` from the old, empty root to the new one.
//! Rolling it back (or recovery undoing it) switches back and frees every
//! page of the new tree ([`Storage::free_tree_pages`]); values written to
//! overflow chains are freed by their own undo. After the commit the old,
//! empty root leaf is freed (`Deferred::FreeNode`). A bulk load that fails
//! before its swap (latching the meta page for it included) rolls its
//! chains back at once and frees the nodes it built, on every
//! level, each tried (one it cannot free is leaked space); one cut short
//! by a crash before its swap leaves them unreachable, which `keel check`
//! reports.
//!
//! A node's high key is the next node's first key, up to `MAX_KEY_LEN`
//! bytes: a node closed at [`FILL`] with a long one that would not fit
//! beside its items gives its last item to the next node instead, whose
//! key (which fitted as part of the item) becomes the high key.

use super::{META_PAGE, check_key, corrupt, node_image};
use crate::error::{DbError, Result};
use crate::heap::Relation;
use crate::page::tree::{self, TREE_HEADER_SIZE, TREE_SLOT_SIZE, TreePage, child_rest, item_len};
use crate::page::{PAGE_SIZE, PageType};
use crate::storage::Storage;
use crate::txn::undo::{Deferred, TxnLog};
use crate::types::PageId;
use crate::wal::Payload;

/// A node's room: its items with their slots, and its high key.
const ROOM: usize = PAGE_SIZE - TREE_HEADER_SIZE;

/// Bytes of a node's room a bulk load fills (90%).
pub const FILL: usize = ROOM * 9 / 10;

/// One level under construction.
struct Level {
    level: u16,
    /// The node being filled: its page, first key and items.
    page: Option<PageId>,
    first: Vec<u8>,
    items: Vec<(Vec<u8>, Vec<u8>)>,
    bytes: usize,
    /// Every node finished, with its first key (its separator above).
    done: Vec<(Vec<u8>, PageId)>,
}

impl Level {
    fn new(level: u16) -> Level {
        Level {
            level,
            page: None,
            first: Vec::new(),
            items: Vec::new(),
            bytes: 0,
            done: Vec::new(),
        }
    }

    /// Adds an item (for an internal level: a child and its first key).
    ///
    /// A node is closed when the item would take it past [`FILL`], with
    /// the item's key, the next node's first, as its high key. When that
    /// key would not fit beside the node's items (a long key on a nearly
    /// full node), the node's last item moves to the next node instead and
    /// its key is the high key: it fits, as the item held it.
    fn push(&mut self, store: &Storage, rel: &Relation, key: Vec<u8>, rest: Vec<u8>) -> Result<()> {
        let size = item_len(&key, &rest) + TREE_SLOT_SIZE;
        match self.page {
            None => self.page = Some(store.empty_node(rel, self.level)?),
            Some(current) if self.bytes + size > FILL => {
                let carried = if self.items.len() > 1 && self.bytes + key.len() > ROOM {
                    self.items.pop()
                } else {
                    None
                };
                let high = carried.as_ref().map_or(&key[..], |(k, _)| &k[..]);
                let next = store.empty_node(rel, self.level)?;
                store.write_node(rel, current, self.level, &self.items, Some((high, next)))?;
                let first = std::mem::take(&mut self.first);
                self.done.push((first, current));
                self.items.clear();
                self.bytes = 0;
                self.page = Some(next);
                if let Some((k, r)) = carried {
                    self.add(k, r);
                }
            }
            Some(_) => {}
        }
        self.add(key, rest);
        Ok(())
    }

    /// Appends an item to the node being filled.
    fn add(&mut self, key: Vec<u8>, rest: Vec<u8>) {
        self.bytes += item_len(&key, &rest) + TREE_SLOT_SIZE;
        if self.items.is_empty() {
            self.first = key.clone();
        }
        // An internal node's first item is minus infinity.
        let key = if self.level > 0 && self.items.is_empty() {
            Vec::new()
        } else {
            key
        };
        self.items.push((key, rest));
    }

    /// Writes the last node; returns every node of the level.
    fn finish(mut self, store: &Storage, rel: &Relation) -> Result<Vec<(Vec<u8>, PageId)>> {
        if let Some(last) = self.page {
            store.write_node(rel, last, self.level, &self.items, None)?;
            self.done.push((std::mem::take(&mut self.first), last));
        }
        Ok(self.done)
    }

    /// Every page taken so far (for freeing them after a failure).
    fn pages(&self) -> impl Iterator<Item = PageId> + '_ {
        self.done.iter().map(|(_, p)| *p).chain(self.page)
    }
}

impl Storage {
    /// Loads `items` (keys strictly ascending) into the empty tree `rel`;
    /// the caller holds the tree's relation lock exclusively. Returns how
    /// many were loaded.
    pub(crate) fn tree_bulk_load<I, K, V>(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        items: I,
    ) -> Result<u64>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let _only = super::routes::restructure(rel);
        let (old_root, old_level) = self.tree_root(rel)?;
        let g = self.pool.fetch_read(rel.file(), old_root)?;
        if old_level != 0 || !self.node(rel, &g, old_root, 0)?.is_empty() {
            return Err(DbError::TreeNotEmpty(rel.name.clone()).into());
        }
        drop(g);
        let mut leaves = Level::new(0);
        let mut chains = Vec::new();
        let filled = self.build_leaves(log, rel, items, &mut leaves, &mut chains);
        // Every page taken, on every level, for freeing them all after a
        // failure (with the chains written).
        let mut taken: Vec<PageId> = leaves.pages().collect();
        let top = filled.and_then(|n| match leaves.finish(self, rel)? {
            nodes if nodes.is_empty() => Ok(None),
            nodes => Ok(Some((n, self.build_levels(rel, nodes, &mut taken)?))),
        });
        // The meta page is latched before anything is logged that names
        // the new root: failing to read it is a failed load like the rest.
        let ready = top.and_then(|top| match top {
            Some(top) => Ok(Some((top, self.pool.fetch_write(rel.file(), META_PAGE)?))),
            None => Ok(None),
        });
        let ((n, (root, level)), mut mg) = match ready {
            Ok(Some(ready)) => ready,
            Ok(None) => return Ok(0),
            Err(e) => {
                // The chains rolled back, then every page, each tried: a
                // page that cannot be freed is leaked space, never a reason
                // to leak the rest. A failed rollback is the error to
                // report (it poisons when fatal).
                let released = self.release_chains(log, rel, &chains);
                for pid in taken {
                    let _ = self.free_node(rel, pid);
                }
                released?;
                return Err(e);
            }
        };
        let swap = Payload::TreeRootSwap {
            old: old_root,
            old_level,
            new: root,
            new_level: level,
        };
        self.change(Some(log), rel.id, &mut mg, &swap)?;
        super::set_root_hint(rel, root, level);
        log.deferred.push(Deferred::FreeNode(rel.id, old_root));
        Ok(n)
    }

    /// Builds the levels above the leaves `nodes` (each with its first
    /// key), up to one node: the root, returned with its level. `taken`
    /// gains every page each level takes, finished or not, so that the
    /// caller frees them all after a failure.
    fn build_levels(
        &self,
        rel: &Relation,
        mut nodes: Vec<(Vec<u8>, PageId)>,
        taken: &mut Vec<PageId>,
    ) -> Result<(PageId, u16)> {
        let mut level = 0;
        while nodes.len() > 1 {
            level += 1;
            let mut above = Level::new(level);
            let pushed = nodes
                .into_iter()
                .try_for_each(|(key, pid)| above.push(self, rel, key, child_rest(pid).to_vec()));
            taken.extend(above.pages());
            pushed?;
            nodes = above.finish(self, rel)?;
        }
        Ok((nodes[0].1, level))
    }

    /// A failed bulk load's values written to overflow chains (`chains`:
    /// their items' rests, in the order written), rolled back newest first
    /// (`abandon_chain`: the load logs nothing undoable between them, so
    /// each is the newest entry of the undo stack in turn). Every chain is
    /// tried: after one that cannot be rolled back the rest are released
    /// at the commit instead. Returns the first failure.
    fn release_chains(&self, log: &mut TxnLog, rel: &Relation, chains: &[Vec<u8>]) -> Result<()> {
        let mut first = Ok(());
        for rest in chains.iter().rev() {
            if let Some((&tree::VALUE_OVERFLOW, head)) = rest.split_first() {
                let released = self
                    .read_head(rel, META_PAGE, head)
                    .and_then(|head| self.abandon_chain(log, rel, head));
                if first.is_ok() {
                    first = released;
                }
            }
        }
        first
    }

    /// Fills `leaves` from `items`. `chains` gains the rest of every value
    /// written to an overflow chain.
    fn build_leaves<I, K, V>(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        items: I,
        leaves: &mut Level,
        chains: &mut Vec<Vec<u8>>,
    ) -> Result<u64>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut prev: Option<Vec<u8>> = None;
        let mut n = 0u64;
        for (k, v) in items {
            let (k, v) = (k.as_ref(), v.as_ref());
            check_key(k)?;
            if prev.as_deref().is_some_and(|p| p >= k) {
                return Err(DbError::Unsorted { index: n }.into());
            }
            let rest = self.tree_value(log, rel, k, v)?;
            if rest.first() == Some(&tree::VALUE_OVERFLOW) {
                chains.push(rest.clone());
            }
            leaves.push(self, rel, k.to_vec(), rest)?;
            prev = Some(k.to_vec());
            n += 1;
        }
        Ok(n)
    }

    /// Takes a page for a node of `level` and formats it empty (its full
    /// image follows once known).
    fn empty_node(&self, rel: &Relation, level: u16) -> Result<PageId> {
        let g = self.place_node(rel, |pid| node_image(pid, level, 0, &[], None))?;
        Ok(g.page_id())
    }

    /// Logs node `pid`'s full image.
    fn write_node(
        &self,
        rel: &Relation,
        pid: PageId,
        level: u16,
        items: &[(Vec<u8>, Vec<u8>)],
        high: Option<(&[u8], PageId)>,
    ) -> Result<()> {
        let image = node_image(pid, level, 0, items, high)?;
        let mut g = self.pool.fetch_write(rel.file(), pid)?;
        self.change(None, rel.id, &mut g, &image)?;
        Ok(())
    }

    /// Formats node `pid` as a free page (redo-only) and gives it to the FSM.
    pub(crate) fn free_node(&self, rel: &Relation, pid: PageId) -> Result<()> {
        let mut g = self.pool.fetch_write(rel.file(), pid)?;
        let free = Payload::PageInit {
            page_type: PageType::Free,
        };
        self.change(None, rel.id, &mut g, &free)?;
        rel.fsm.update(
            pid,
            crate::fsm::EMPTY_PAGE_FREE,
            crate::fsm::EMPTY_PAGE_FREE,
        );
        Ok(())
    }

    /// Frees every page of the tree under `root` (at `level`), which no
    /// meta page names any more: each level from its leftmost node along
    /// the right links.
    pub(crate) fn free_tree_pages(&self, rel: &Relation, root: PageId, level: u16) -> Result<()> {
        let mut leftmost = root;
        for at in (0..=level).rev() {
            let mut pid = Some(leftmost);
            let mut moves = 0;
            let mut next_leftmost = None;
            while let Some(p) = pid {
                if p.0 >= rel.page_count() || p == META_PAGE || moves > rel.page_count() {
                    return Err(corrupt(rel, p, "a bulk-loaded tree links outside its file"));
                }
                moves += 1;
                let g = self.pool.fetch_read(rel.file(), p)?;
                let node = TreePage::open(&g[..], p)?;
                if node.level() != at {
                    return Err(corrupt(
                        rel,
                        p,
                        format!("level {} where {at} was expected", node.level()),
                    ));
                }
                if at > 0 && next_leftmost.is_none() {
                    next_leftmost = Some(node.child(0)?);
                }
                pid = node.right_link();
                drop(g);
                self.free_node(rel, p)?;
            }
            match next_leftmost {
                Some(l) => leftmost = l,
                None => break,
            }
        }
        Ok(())
    }

    /// Frees node `pid` after a commit if it is an empty leaf the meta page
    /// no longer names (a bulk load's old root).
    pub(crate) fn free_unused_root(&self, rel: &Relation, pid: PageId) -> Result<()> {
        let _only = super::routes::restructure(rel);
        let (root, _) = self.tree_root(rel)?;
        if root == pid || pid.0 >= rel.page_count() {
            return Ok(());
        }
        let g = self.pool.fetch_read(rel.file(), pid)?;
        let empty_leaf =
            tree::TreePage::open(&g[..], pid).is_ok_and(|p| p.is_leaf() && p.is_empty());
        drop(g);
        if empty_leaf {
            self.free_node(rel, pid)?;
        }
        Ok(())
    }
}
