//! Changing a tree: put and delete of keys in a transaction, and the
//! structure changes under them (split, finishing a split, a new root),
//! which are redo-only nested top actions (module docs of [`super`]).

use super::{META_PAGE, Path, check_key, corrupt, end_lock, key_lock, node_page};
use crate::buffer::PageWriteGuard;
use crate::error::{DbError, Error, Result};
use crate::heap::{INLINE_MAX, Relation};
use crate::lock::{LockMode, LockTarget};
use crate::page::tree::{
    self, FLAG_INCOMPLETE_SPLIT, MAX_ITEM_LEN, TreePage, VALUE_INLINE, VALUE_OVERFLOW, child_rest,
    item_len,
};
use crate::page::{OverflowHead, PageType, page_type};
use crate::storage::Storage;
use crate::txn::undo::{Deferred, TxnLog};
use crate::types::{PageId, TxnId};
use crate::wal::Payload;

/// Free pages tried from the FSM before a new page is made.
const FSM_ATTEMPTS: usize = 4;

/// A lock an operation needs and could not take without waiting: the
/// latches are released, it is waited for, and the operation restarts.
pub(crate) struct Blocked {
    pub target: LockTarget,
    pub mode: LockMode,
    /// Held only for the instant of the request (an insert's next-key check).
    pub instant: bool,
}

/// An item found: its leaf and its rest.
pub(crate) type Found = (PageId, Vec<u8>);
/// An item removed: its leaf, its rest, and whether the leaf is now empty.
type Removed = (PageId, Vec<u8>, bool);

/// A node split to make room, still latched, with its separator and its
/// new right half, whose downlink is still to be added above.
type Halves<'s> = (PageWriteGuard<'s>, Vec<u8>, PageId);

/// Whether an operation finished or must wait for a lock and restart.
pub(crate) enum Step<T> {
    Done(T),
    Wait(Blocked),
    /// Start again at once (the leaf was split to make room first).
    Again,
}

impl Storage {
    /// Tries `target` in `mode` for `txn` without waiting: `None` when
    /// granted (or `instant` and grantable), else what to wait for.
    pub(crate) fn try_key(
        &self,
        txn: TxnId,
        target: LockTarget,
        mode: LockMode,
        instant: bool,
    ) -> Result<Option<Blocked>> {
        let tried = if instant {
            self.locks.lock_instant(txn, target, mode, false)
        } else {
            self.locks.lock(txn, target, mode, false)
        };
        match tried {
            Ok(()) => Ok(None),
            Err(Error::Db(DbError::WouldBlock { .. })) => Ok(Some(Blocked {
                target,
                mode,
                instant,
            })),
            Err(e) => Err(e),
        }
    }

    /// Waits for a lock an operation could not take under its latch (no
    /// latch is held now, invariant 11).
    pub(crate) fn wait_key(&self, txn: TxnId, b: &Blocked) -> Result<()> {
        if b.instant {
            self.locks.lock_instant(txn, b.target, b.mode, true)
        } else {
            self.locks.lock(txn, b.target, b.mode, true)
        }
    }

    /// Runs `step` until it does not need to wait for a lock, waiting for
    /// each lock it asks for with no latch held.
    pub(crate) fn with_key_locks<T>(
        &self,
        txn: TxnId,
        mut step: impl FnMut() -> Result<Step<T>>,
    ) -> Result<T> {
        loop {
            match step()? {
                Step::Done(t) => return Ok(t),
                Step::Wait(b) => self.wait_key(txn, &b)?,
                Step::Again => {}
            }
        }
    }

    /// The lock of the first key after item `i` of the latched leaf `g`
    /// (`i` may be its length): that item's key, or the first key of a
    /// right sibling (latched shared one at a time while `g` stays
    /// latched: left to right), or the end of the tree.
    pub(crate) fn next_key_lock(
        &self,
        rel: &Relation,
        leaf: &[u8],
        pid: PageId,
        i: usize,
    ) -> Result<LockTarget> {
        let p = self.node(rel, leaf, pid, 0)?;
        if i < p.len() {
            return Ok(key_lock(rel.id, p.key(i)?));
        }
        let mut moves = 0;
        let Some(_) = p.right_link() else {
            return Ok(end_lock(rel.id));
        };
        let mut next = self.right_of(rel, &p, &mut moves)?;
        loop {
            let g = self.pool.fetch_read(rel.file(), next)?;
            let p = self.node(rel, &g, next, 0)?;
            if !p.is_empty() {
                return Ok(key_lock(rel.id, p.key(0)?));
            }
            if p.right_link().is_none() {
                return Ok(end_lock(rel.id));
            }
            next = self.right_of(rel, &p, &mut moves)?;
        }
    }

    /// The leaf part of an item for `value`: inline, or the head of an
    /// overflow chain written now (before any latch is taken).
    pub(crate) fn tree_value(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        key: &[u8],
        value: &[u8],
    ) -> Result<Vec<u8>> {
        if item_len(key, value) < MAX_ITEM_LEN && value.len() <= INLINE_MAX {
            let mut rest = std::mem::take(&mut log.spare_rest);
            tree::set_inline_value(&mut rest, value);
            return Ok(rest);
        }
        let head = self.chain_form(log, rel, value)?;
        let mut rest = Vec::with_capacity(1 + OverflowHead::SIZE);
        rest.push(VALUE_OVERFLOW);
        rest.extend_from_slice(&head.encode());
        Ok(rest)
    }

    /// The value an item's rest stands for (reading its chain if it has
    /// one; no latch may be held).
    pub(crate) fn tree_value_of(&self, rel: &Relation, at: PageId, rest: &[u8]) -> Result<Vec<u8>> {
        match rest.split_first() {
            Some((&VALUE_INLINE, v)) => Ok(v.to_vec()),
            Some((&VALUE_OVERFLOW, head)) => {
                let head = self.read_head(rel, at, head)?;
                self.read_chain(rel, head)
            }
            _ => Err(corrupt(rel, at, "a leaf item with no value kind")),
        }
    }

    /// Releases what an item's rest holds outside the leaf once the
    /// deleting transaction commits (an overflow chain).
    pub(super) fn defer_release(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        at: PageId,
        rest: &[u8],
    ) -> Result<()> {
        if let Some((&VALUE_OVERFLOW, head)) = rest.split_first() {
            let head = self.read_head(rel, at, head)?;
            log.deferred.push(Deferred::FreeChain(rel.id, head));
        }
        Ok(())
    }

    /// Inserts or replaces `key`'s value in tree `rel`; returns the old
    /// value when there was one and `want_old`.
    pub(crate) fn tree_put(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        key: &[u8],
        value: &[u8],
        want_old: bool,
        covered: bool,
    ) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        let mut rest = self.tree_value(log, rel, key, value)?;
        let txn = log.txn;
        let old =
            match self.with_key_locks(txn, || self.put_step(log, rel, key, &mut rest, covered)) {
                Ok(old) => old,
                Err(e) => {
                    // No record took `rest` (a logged insert empties it): a
                    // chain written for the value is nobody's.
                    if let Some((&VALUE_OVERFLOW, head)) = rest.split_first()
                        && let Ok(head) = OverflowHead::decode(head, META_PAGE)
                    {
                        // A failed rollback of the chain is the error
                        // to report (it poisons when fatal).
                        self.abandon_chain(log, rel, head)?;
                    }
                    return Err(e);
                }
            };
        match old {
            // The replace is logged: its old chain is released at commit
            // even if reading the old value fails.
            Some((at, old)) => {
                self.defer_release(log, rel, at, &old)?;
                match want_old {
                    true => self.tree_value_of(rel, at, &old).map(Some),
                    false => Ok(None),
                }
            }
            None => Ok(None),
        }
    }

    /// One attempt at a put: `Done(Some((page, old rest)))` for a replace.
    /// With `covered`, the transaction holds the tree exclusively, which
    /// gives every key lock a put takes, so none is asked for. `rest` is
    /// moved into the insert's record once the put is logged (it ends
    /// `Done` then, so no later attempt reads it).
    fn put_step(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        key: &[u8],
        rest: &mut Vec<u8>,
        covered: bool,
    ) -> Result<Step<Option<Found>>> {
        let _shared = rel.structure.read();
        let mut path = Path::new();
        let g = self.writable_leaf(rel, key, &mut path)?;
        let pid = g.page_id();
        // `writable_leaf` opened it as a leaf under this latch, held since.
        let found = TreePage::reopen(&g[..], pid).search(key)?;
        let mine = key_lock(rel.id, key);
        match found {
            Ok(i) => {
                if !covered
                    && let Some(b) = self.try_key(log.txn, mine, LockMode::Exclusive, false)?
                {
                    return Ok(Step::Wait(b));
                }
                let p = TreePage::reopen(&g[..], pid);
                let old = p.item(i)?.1.to_vec();
                // The new item must fit where the old one was before the
                // old one goes: a key is never missing from its leaf while
                // its latch is released (a scan would skip it).
                let room = p.total_free() + item_len(key, &old);
                if room < item_len(key, rest) {
                    self.split(rel, g, 0, &mut path)?;
                    return Ok(Step::Again);
                }
                let mut g = g;
                let delete = Payload::TreeDelete {
                    key: key.to_vec(),
                    rest: old.clone(),
                };
                self.change(Some(log), rel.id, &mut g, &delete)?;
                self.log_insert(log, rel, &mut g, None, key, rest)?;
                Ok(Step::Done(Some((pid, old))))
            }
            Err(i) => {
                if !covered {
                    let next = self.next_key_lock(rel, &g, pid, i)?;
                    if let Some(b) = self.try_key(log.txn, next, LockMode::Exclusive, true)? {
                        return Ok(Step::Wait(b));
                    }
                    if let Some(b) = self.try_key(log.txn, mine, LockMode::Exclusive, false)? {
                        return Ok(Step::Wait(b));
                    }
                }
                self.insert_into_leaf(log, rel, g, &mut path, i, key, rest)?;
                Ok(Step::Done(None))
            }
        }
    }

    /// Deletes `key` from tree `rel`; returns its value if it was there.
    pub(crate) fn tree_delete(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        let txn = log.txn;
        let gone = self.with_key_locks(txn, || self.delete_step(log, rel, key))?;
        let Some((at, old, emptied)) = gone else {
            return Ok(None);
        };
        // The delete is logged: what it releases at commit is queued
        // before the old value is read, which may fail (a damaged chain).
        self.defer_release(log, rel, at, &old)?;
        if emptied {
            log.deferred
                .push(Deferred::ReclaimLeaf(rel.id, at, key.to_vec()));
        }
        self.tree_value_of(rel, at, &old).map(Some)
    }

    /// One attempt at a delete: the leaf, the removed item's rest and
    /// whether the leaf is now empty.
    fn delete_step(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        key: &[u8],
    ) -> Result<Step<Option<Removed>>> {
        let _shared = rel.structure.read();
        let mut path = Path::new();
        let mut g = self.writable_leaf(rel, key, &mut path)?;
        let pid = g.page_id();
        let found = self.node(rel, &g, pid, 0)?.search(key)?;
        let i = match found {
            Ok(i) => i,
            Err(i) => {
                // Nothing to delete: the answer stays true until this
                // transaction ends (the next key is locked, as a read's).
                let next = self.next_key_lock(rel, &g, pid, i)?;
                return Ok(
                    match self.try_key(log.txn, next, LockMode::Shared, false)? {
                        Some(b) => Step::Wait(b),
                        None => Step::Done(None),
                    },
                );
            }
        };
        let next = self.next_key_lock(rel, &g, pid, i + 1)?;
        for target in [key_lock(rel.id, key), next] {
            if let Some(b) = self.try_key(log.txn, target, LockMode::Exclusive, false)? {
                return Ok(Step::Wait(b));
            }
        }
        let old = self.node(rel, &g, pid, 0)?.item(i)?.1.to_vec();
        let delete = Payload::TreeDelete {
            key: key.to_vec(),
            rest: old,
        };
        self.change(Some(log), rel.id, &mut g, &delete)?;
        let emptied = self.node(rel, &g, pid, 0)?.is_empty();
        let Payload::TreeDelete { rest, .. } = delete else {
            unreachable!("built above")
        };
        Ok(Step::Done(Some((pid, rest, emptied))))
    }

    /// The leaf holding `key`, latched exclusively, with any split left
    /// incomplete on it finished first. The leaf was opened and checked as
    /// a node of level 0 under the latch the guard holds, so
    /// `TreePage::reopen` may skip those checks until the guard changes
    /// it.
    pub(crate) fn writable_leaf(
        &self,
        rel: &Relation,
        key: &[u8],
        path: &mut Path,
    ) -> Result<PageWriteGuard<'_>> {
        loop {
            let g = self.leaf_for_write(rel, key, path)?;
            if !TreePage::reopen(&g[..], g.page_id()).incomplete_split() {
                return Ok(g);
            }
            self.finish_split(rel, g, 0, path)?;
        }
    }

    /// Inserts `(key, rest)` into the latched leaf `g` (as
    /// [`writable_leaf`](Self::writable_leaf) returned it, unchanged since,
    /// its search placing `key` at index `at`) in `log`'s transaction,
    /// splitting it (and finding the leaf again) until it fits. `rest` is
    /// moved into the logged record (left empty).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert_into_leaf<'s>(
        &'s self,
        log: &mut TxnLog,
        rel: &Relation,
        mut g: PageWriteGuard<'s>,
        path: &mut Path,
        at: usize,
        key: &[u8],
        rest: &mut Vec<u8>,
    ) -> Result<()> {
        // Where `key` goes in `g`, while `g` is the leaf searched.
        let mut at = Some(at);
        loop {
            if TreePage::reopen(&g[..], g.page_id()).fits(item_len(key, rest)) {
                return self.log_insert(log, rel, &mut g, at, key, rest);
            }
            self.split(rel, g, 0, path)?;
            g = self.writable_leaf(rel, key, path)?;
            at = None;
        }
    }

    /// Logs and makes the insert of `(key, rest)` into the latched leaf
    /// `g`, which has room for it, in `log`'s transaction: at index `at`
    /// when given (where a search of `g`, under the latch held since,
    /// placed `key`), else where the change's own search places it. The
    /// record is built in the transaction's spare buffers
    /// (`TxnLog::spare_key`, `spare_rest`, `rest` moved into it) and they
    /// are kept for the next put once it is logged: the undo entry copied
    /// the key to its arena.
    fn log_insert(
        &self,
        log: &mut TxnLog,
        rel: &Relation,
        g: &mut PageWriteGuard<'_>,
        at: Option<usize>,
        key: &[u8],
        rest: &mut Vec<u8>,
    ) -> Result<()> {
        let mut owned = std::mem::take(&mut log.spare_key);
        owned.clear();
        owned.extend_from_slice(key);
        let insert = Payload::TreeInsert {
            key: owned,
            rest: std::mem::take(rest),
        };
        match at {
            Some(at) => self.change_tree_insert_at(Some(log), rel.id, g, &insert, at)?,
            None => self.change(Some(log), rel.id, g, &insert)?,
        };
        if let Payload::TreeInsert { key, rest } = insert {
            (log.spare_key, log.spare_rest) = (key, rest);
        }
        Ok(())
    }

    /// Inserts a downlink `(key, rest)` into the latched internal node `g`
    /// of `level` (redo-only). A full `g` is split first and the downlink
    /// goes into the half that covers `key`; the split node is then
    /// returned, still latched, with its separator and right half, whose
    /// own downlink the caller adds one level up after letting go of the
    /// level below (`add_downlink`), so a split never holds a page per
    /// level of the tree.
    fn insert_into_node<'s>(
        &'s self,
        rel: &Relation,
        mut g: PageWriteGuard<'s>,
        level: u16,
        path: &mut Path,
        key: &[u8],
        rest: &[u8],
    ) -> Result<Option<Halves<'s>>> {
        loop {
            let p = TreePage::open(&g[..], g.page_id())?;
            if p.incomplete_split() {
                self.finish_split(rel, g, level, path)?;
            } else if p.fits(item_len(key, rest)) {
                self.insert_downlink(rel, &mut g, key, rest)?;
                return Ok(None);
            } else {
                let (sep, mut rg) = self.split_halves(rel, &mut g, level)?;
                let right = rg.page_id();
                if key < sep.as_slice() {
                    drop(rg);
                    self.insert_downlink(rel, &mut g, key, rest)?;
                } else {
                    self.insert_downlink(rel, &mut rg, key, rest)?;
                }
                return Ok(Some((g, sep, right)));
            }
            let start = self.descend(rel, key, level, &mut Path::new())?;
            g = self.latch_covering(rel, start, level, key)?;
        }
    }

    /// Logs the insert of the downlink `(key, rest)` into the latched
    /// internal node `g` (redo-only); `g` must have room for it.
    fn insert_downlink(
        &self,
        rel: &Relation,
        g: &mut PageWriteGuard<'_>,
        key: &[u8],
        rest: &[u8],
    ) -> Result<()> {
        let pid = g.page_id();
        if !TreePage::open(&g[..], pid)?.fits(item_len(key, rest)) {
            return Err(corrupt(
                rel,
                pid,
                format!(
                    "no room for a {}-byte downlink in a half of a split",
                    item_len(key, rest)
                ),
            ));
        }
        let insert = Payload::TreeInsert {
            key: key.to_vec(),
            rest: rest.to_vec(),
        };
        self.change(None, rel.id, g, &insert)?;
        Ok(())
    }

    /// Splits the latched node `g` of `level` and adds the new right
    /// half's downlink above (module docs); releases every latch.
    pub(crate) fn split<'s>(
        &'s self,
        rel: &Relation,
        mut g: PageWriteGuard<'s>,
        level: u16,
        path: &mut Path,
    ) -> Result<()> {
        let (sep, rg) = self.split_halves(rel, &mut g, level)?;
        let right = rg.page_id();
        drop(rg);
        self.add_downlink(rel, g, level, sep, right, path)
    }

    /// Logs the split of the latched node `g` of `level` into two halves:
    /// `g` keeps the lower half, the first key of the upper half as its
    /// high key, the new right half as its right link and the
    /// `INCOMPLETE_SPLIT` flag, and stays latched. Returns the separator
    /// and the right half, latched (reachable only through `g`).
    fn split_halves<'s>(
        &'s self,
        rel: &Relation,
        g: &mut PageWriteGuard<'s>,
        level: u16,
    ) -> Result<(Vec<u8>, PageWriteGuard<'s>)> {
        let pid = g.page_id();
        let (keep, sep) = {
            let p = self.node(rel, g, pid, level)?;
            if p.len() < 2 {
                return Err(corrupt(
                    rel,
                    pid,
                    format!("a full node with {} items", p.len()),
                ));
            }
            let k = split_point(&p)?;
            (k, p.key(k)?.to_vec())
        };
        let keep = u16::try_from(keep)
            .map_err(|_| corrupt(rel, pid, format!("a node of {keep}+ items")))?;
        // Both halves in one record (`change_split`): a crash leaves L
        // whole and R unused (free, or never part of the file), or both
        // halves linked; never R formatted and unreachable. L's half is
        // logged as a truncation to its first `keep` items (L's image kept
        // first when the split is its first change since the redo point).
        // R's image is built from L's items where they lie
        // (L stays latched and unchanged until `change_split`).
        let rg = self.with_new_page(rel, |mut rg| {
            let rpid = rg.page_id();
            let right = right_half(&TreePage::reopen(&g[..], pid), usize::from(keep), rpid)?;
            self.change_split(rel.id, g, &mut rg, keep, &sep, right)?;
            Ok(rg)
        })?;
        Ok((sep, rg))
    }

    /// Finishes the split of the latched node `g` (flagged
    /// `INCOMPLETE_SPLIT`): adds its right sibling's downlink above and
    /// clears the flag; releases every latch.
    pub(crate) fn finish_split<'s>(
        &'s self,
        rel: &Relation,
        g: PageWriteGuard<'s>,
        level: u16,
        path: &mut Path,
    ) -> Result<()> {
        let pid = g.page_id();
        let p = self.node(rel, &g, pid, level)?;
        let (Some(sep), Some(right)) = (p.high_key().map(<[u8]>::to_vec), p.right_link()) else {
            return Err(corrupt(
                rel,
                pid,
                "an incomplete split with no right sibling",
            ));
        };
        self.add_downlink(rel, g, level, sep, right, path)
    }

    /// Adds the downlink `(sep, right)` for the right half of the split of
    /// the latched node `lg` of `level` — into its parent, or into a new
    /// root when it is the root — then clears `lg`'s flag and lets go of
    /// it. A parent that had to split to take the downlink is still
    /// latched then, and its own downlink is added the same way, one level
    /// up: at any moment a split holds the node whose downlink it adds,
    /// the parent and the parent's new half (module docs).
    fn add_downlink<'s>(
        &'s self,
        rel: &Relation,
        mut lg: PageWriteGuard<'s>,
        mut level: u16,
        mut sep: Vec<u8>,
        mut right: PageId,
        path: &mut Path,
    ) -> Result<()> {
        loop {
            let lpid = lg.page_id();
            let above = match path.pop() {
                Some((l, pid)) if l == level + 1 => Some(pid),
                _ => {
                    let (root, root_level) = self.tree_root(rel)?;
                    if root_level == level {
                        if root != lpid {
                            return Err(corrupt(
                                rel,
                                lpid,
                                format!(
                                    "a split node of the root's level {level} that is not the root {root}"
                                ),
                            ));
                        }
                        None
                    } else {
                        Some(self.descend(rel, &sep, level + 1, &mut Path::new())?)
                    }
                }
            };
            let mut parent_split = None;
            match above {
                None => self.new_root(rel, lpid, level, &sep, right)?,
                Some(start) => {
                    let pg = self.latch_covering(rel, start, level + 1, &sep)?;
                    let p = self.node(rel, &pg, pg.page_id(), level + 1)?;
                    match p.search(&sep)? {
                        // Logged before a crash that stopped the split.
                        Ok(i) if p.child(i)? == right => {}
                        Ok(_) => {
                            return Err(corrupt(
                                rel,
                                pg.page_id(),
                                "a separator with another child",
                            ));
                        }
                        Err(_) => {
                            parent_split = self.insert_into_node(
                                rel,
                                pg,
                                level + 1,
                                path,
                                &sep,
                                &child_rest(right),
                            )?;
                        }
                    }
                }
            }
            let flags = TreePage::open(&lg[..], lpid)?.flags() & !FLAG_INCOMPLETE_SPLIT;
            let clear = Payload::PageDelta {
                ranges: vec![(tree::offsets::FLAGS as u16, flags.to_le_bytes().to_vec())],
            };
            self.change(None, rel.id, &mut lg, &clear)?;
            let Some((pg, psep, pright)) = parent_split else {
                return Ok(());
            };
            (lg, level, sep, right) = (pg, level + 1, psep, pright);
        }
    }

    /// Makes a new root above the old root `left` (split into `left` and
    /// `right` at `sep`) and names it in the meta page.
    fn new_root(
        &self,
        rel: &Relation,
        left: PageId,
        level: u16,
        sep: &[u8],
        right: PageId,
    ) -> Result<()> {
        let items = vec![
            (Vec::new(), child_rest(left).to_vec()),
            (sep.to_vec(), child_rest(right).to_vec()),
        ];
        // The new root and the meta page naming it in one record: a crash
        // never leaves the root formatted and unnamed.
        let root = self.with_new_page(rel, |mut ng| {
            let root = ng.page_id();
            let image = node_page(root, level + 1, 0, &items, None)?;
            let mut mg = self.pool.fetch_write(rel.file(), META_PAGE)?;
            let (old, _) = tree::read_meta(&mg, META_PAGE)?;
            if old != left {
                return Err(corrupt(
                    rel,
                    META_PAGE,
                    format!("root {old} changed while {left} was being split"),
                ));
            }
            let mut meta = Box::new([0u8; crate::page::PAGE_SIZE]);
            meta.copy_from_slice(&mg[..]);
            tree::set_root(&mut meta[..], root, level + 1);
            self.change_pages(
                rel.id,
                &mut [&mut ng, &mut mg],
                vec![(root, image), (META_PAGE, meta)],
            )?;
            Ok(root)
        })?;
        super::set_root_hint(rel, root, level + 1);
        Ok(())
    }

    /// Runs `f` on a page for a new node, latched and not in use: a free
    /// page the FSM knows of, or a page past the end of the file, which
    /// becomes part of the file only when `f` succeeds (`f` logs the
    /// record that formats it, and the file is extended in that order, as
    /// `create_page_with` does).
    pub(crate) fn with_new_page<'s, T>(
        &'s self,
        rel: &Relation,
        f: impl FnOnce(PageWriteGuard<'s>) -> Result<T>,
    ) -> Result<T> {
        if let Some(g) = self.reuse_free_page(rel)? {
            return f(g);
        }
        self.extend_with(rel, |pid| f(self.pool.new_page(rel.file(), pid)?))
    }

    /// Formats a page for a new node with the image `make` builds for its
    /// id (redo-only): a free page the FSM knows of, or a new one. Returns
    /// it latched.
    pub(crate) fn place_node(
        &self,
        rel: &Relation,
        make: impl Fn(PageId) -> Result<Payload>,
    ) -> Result<PageWriteGuard<'_>> {
        if let Some(mut g) = self.reuse_free_page(rel)? {
            let pid = g.page_id();
            self.change(None, rel.id, &mut g, &make(pid)?)?;
            return Ok(g);
        }
        self.create_page_with(None, rel, make)
    }

    /// A free page of the tree the FSM offers, latched, after at most
    /// `FSM_ATTEMPTS` offers (each taken out of the map: an offer that is
    /// not a free page, past the end or the meta page, is stale); `None`
    /// when the map has none.
    ///
    /// The caller holds the latch of the node it splits, so the offered
    /// page is latched without waiting: two splits can be offered the same
    /// free page, and once one has made it a node, a descent may hold it
    /// while it waits for the other's node on its right, which waiting
    /// here would deadlock (invariant 11 allows latching last only a page
    /// nobody else can reach). A page someone holds is given back to the
    /// map (a stale offer if it is a node by now) and the next one tried.
    fn reuse_free_page(&self, rel: &Relation) -> Result<Option<PageWriteGuard<'_>>> {
        for _ in 0..FSM_ATTEMPTS {
            let Some((pid, _)) = rel.fsm.find(crate::fsm::EMPTY_PAGE_FREE) else {
                break;
            };
            rel.fsm.remove(pid);
            if pid.0 >= rel.page_count() || pid == META_PAGE {
                continue;
            }
            let g = match self.pool.pin(rel.file(), pid)?.try_write() {
                Ok(g) => g,
                Err(_busy) => {
                    let free = crate::fsm::EMPTY_PAGE_FREE;
                    rel.fsm.update(pid, free, free);
                    continue;
                }
            };
            if page_type(&g) == Some(PageType::Free) {
                return Ok(Some(g));
            }
        }
        Ok(None)
    }
}

/// Where to split node `p`: the first index of the right half, so that
/// the halves hold about the same bytes (both non-empty; `p` holds at
/// least two items).
fn split_point<B: AsRef<[u8]>>(p: &TreePage<B>) -> Result<usize> {
    let n = p.len();
    let size = |i: usize| -> Result<usize> {
        let (k, r) = p.item(i)?;
        Ok(item_len(k, r) + tree::TREE_SLOT_SIZE)
    };
    let mut total = 0;
    for i in 0..n {
        total += size(i)?;
    }
    let mut acc = 0;
    for i in 0..n {
        acc += size(i)?;
        if acc * 2 >= total {
            return Ok((i + 1).clamp(1, n - 1));
        }
    }
    Ok(n - 1)
}

/// The image of page `rpid` as the right half of node `p` split at item
/// `k`: `p`'s items from `k` on (an internal node's first key emptied: it
/// stands for minus infinity), `p`'s high key and right link.
fn right_half<B: AsRef<[u8]>>(
    p: &TreePage<B>,
    k: usize,
    rpid: PageId,
) -> Result<Box<[u8; crate::page::PAGE_SIZE]>> {
    let level = p.level();
    let mut items = Vec::with_capacity(p.len().saturating_sub(k));
    for i in k..p.len() {
        let (key, rest) = p.item(i)?;
        // An internal node's first item is minus infinity.
        items.push((if level > 0 && i == k { &[][..] } else { key }, rest));
    }
    Ok(tree::node_image(
        rpid,
        level,
        0,
        &items,
        p.high_key().zip(p.right_link()),
    )?)
}
