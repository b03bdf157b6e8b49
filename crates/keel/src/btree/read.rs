//! Reading a tree: a key's value, and range scans in either direction,
//! with the key-range locks that make them serializable (module docs of
//! [`super`], Locking).
//!
//! A scan keeps the part of its range not yet returned as two bounds,
//! `lo` and `hi`, and two buffers: the next items from the front (read
//! from the leaf covering `lo`) and from the back (read from the leaf
//! holding the last key below `hi`), a bounded number per fill
//! ([`FIRST_FILL`], doubling). Each item is locked shared while its
//! leaf is latched (or, when that would wait, after the latch is released,
//! and the leaf is read again). Returning an item from the front moves
//! `lo` past it, from the back moves `hi` below it, so the two ends never
//! return the same item. Before its first item a scan locks the first key
//! past its range (or the end of the tree), so no key can appear in the
//! range, or at its upper edge, until the transaction ends. A buffered
//! item was locked when read, and a key locked shared cannot be deleted
//! or changed by another transaction, so the buffer stays true. A scan
//! started while its transaction holds the whole tree shared or exclusive
//! is `covered`: it locks neither its items nor its edge (the tree lock
//! keeps every other transaction's change out of the whole tree).

use std::collections::VecDeque;
use std::ops::Bound;

use super::routes::RoutesCache;
use super::write::Step;
use super::{check_key, end_lock, key_lock};
use crate::buffer::PageReadGuard;
use crate::error::Result;
use crate::heap::Relation;
use crate::lock::{LockMode, LockTarget};
use crate::page::tree::{TreePage, VALUE_INLINE};
use crate::storage::Storage;
use crate::types::{PageId, TxnId};

/// Items a scan's first fill of either end reads and locks at most; each
/// later fill of that end reads twice as many (up to the rest of the
/// leaf). A short scan (`take(10)`) so locks about what it returns, not
/// every key to the end of its leaf, and a long one still reads whole
/// leaves after a few fills.
pub(crate) const FIRST_FILL: usize = 16;

/// Items a batch makes room for before a fill, at most (a fill's count
/// doubles without bound; a leaf holds a few hundred items at most).
const FILL_RESERVE: usize = 256;

/// Items a scan read from leaves and locked, not yet returned: each key,
/// and its inline value or (for a value in an overflow chain) the item's
/// rest, packed into one buffer that the scan's next fill of that end
/// reuses, so a fill allocates nothing per item; an item's key and value
/// get buffers of their own only when it is returned.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    items: VecDeque<Packed>,
}

/// Where one item of a [`Batch`] lies in its bytes.
struct Packed {
    key: std::ops::Range<usize>,
    rest: std::ops::Range<usize>,
    /// `Some(leaf)`: `rest` is the rest of an item of `leaf` whose value is
    /// in an overflow chain, read when the item is returned; `None`: `rest`
    /// is the value.
    chain: Option<PageId>,
}

impl Batch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }

    /// Empties the batch for a fill of at most `fill` items. A fill takes
    /// its items from one leaf, so their bytes fit in a page's: reserved
    /// once, they never grow the buffer.
    fn clear_for(&mut self, fill: usize) {
        self.clear();
        self.bytes.reserve(crate::page::PAGE_SIZE);
        self.items.reserve(fill.min(FILL_RESERVE));
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds item `(key, rest)` of leaf `at`: its inline value copied now
    /// (one copy, no second read of the leaf), or the rest of an item
    /// whose value is in an overflow chain.
    fn push(&mut self, at: PageId, key: &[u8], rest: &[u8]) {
        let k = self.bytes.len();
        self.bytes.extend_from_slice(key);
        let (chain, value) = match rest.split_first() {
            Some((&VALUE_INLINE, v)) => (None, v),
            _ => (Some(at), rest),
        };
        let v = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.items.push_back(Packed {
            key: k..v,
            rest: v..self.bytes.len(),
            chain,
        });
    }

    /// The next item's key.
    fn next_key(&self) -> Option<&[u8]> {
        self.items.front().map(|p| &self.bytes[p.key.clone()])
    }

    /// Removes the next item into `key` and `value`, cleared first (a
    /// value in an overflow chain read now, into a buffer of its own);
    /// `false` when there is none.
    fn pop_into(
        &mut self,
        store: &Storage,
        rel: &Relation,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> Result<bool> {
        let Some(p) = self.items.pop_front() else {
            return Ok(false);
        };
        key.clear();
        key.extend_from_slice(&self.bytes[p.key]);
        let rest = &self.bytes[p.rest];
        match p.chain {
            None => {
                value.clear();
                value.extend_from_slice(rest);
            }
            Some(at) => *value = store.tree_value_of(rel, at, rest)?,
        }
        Ok(true)
    }
}

/// What a get found under its leaf's latch: an inline value, already
/// copied into the caller's buffer, or the rest of an item whose value is
/// in an overflow chain, read after the latch is released.
enum Hit {
    Copied,
    Chain(PageId, Vec<u8>),
}

impl Hit {
    /// Copies the inline value of item rest `rest` of leaf `at` into
    /// `out`, or keeps the rest of a chained one.
    fn new(at: PageId, rest: &[u8], out: &mut Vec<u8>) -> Hit {
        match rest.split_first() {
            Some((&VALUE_INLINE, v)) => {
                out.clear();
                out.extend_from_slice(v);
                Hit::Copied
            }
            _ => Hit::Chain(at, rest.to_vec()),
        }
    }
}

impl Storage {
    /// `key`'s value in tree `rel`, locking the key (or, when absent, the
    /// next key) shared for `txn`; with `covered`, `txn` holds the whole
    /// tree shared or exclusive (an escalation or a bulk load), which gives
    /// every key lock a get would take, so none is asked for.
    pub(crate) fn tree_get(
        &self,
        txn: TxnId,
        rel: &Relation,
        key: &[u8],
        covered: bool,
        routes: &mut RoutesCache,
    ) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        Ok(self
            .tree_get_into(txn, rel, key, covered, routes, &mut out)?
            .then_some(out))
    }

    /// [`tree_get`](Self::tree_get) into `out`: whether `key` is there.
    /// An inline value is copied into `out`'s allocation; an overflow
    /// value, read into a buffer of its own, replaces it. The descent
    /// starts from the routes `routes` caches (`rel`'s).
    pub(crate) fn tree_get_into(
        &self,
        txn: TxnId,
        rel: &Relation,
        key: &[u8],
        covered: bool,
        routes: &mut RoutesCache,
        out: &mut Vec<u8>,
    ) -> Result<bool> {
        check_key(key)?;
        out.clear();
        let found =
            self.with_key_locks(txn, || self.get_step(txn, rel, key, covered, routes, out))?;
        match found {
            Some(Hit::Copied) => Ok(true),
            Some(Hit::Chain(at, rest)) => {
                *out = self.tree_value_of(rel, at, &rest)?;
                Ok(true)
            }
            None => {
                out.clear();
                Ok(false)
            }
        }
    }

    fn get_step(
        &self,
        txn: TxnId,
        rel: &Relation,
        key: &[u8],
        covered: bool,
        routes: &mut RoutesCache,
        out: &mut Vec<u8>,
    ) -> Result<Step<Option<Hit>>> {
        let _shared = rel.structure.read();
        let (g, pid) = self.leaf_for_read_cached(rel, key, routes)?;
        // The descent opened the leaf, checked its level, and still holds
        // its latch.
        let p = TreePage::reopen(&g[..], pid);
        if covered {
            return Ok(Step::Done(match p.search(key)? {
                Ok(i) => Some(Hit::new(pid, p.item(i)?.1, out)),
                Err(_) => None,
            }));
        }
        let (target, found) = match p.search(key)? {
            Ok(i) => (
                key_lock(rel.id, key),
                Some(Hit::new(pid, p.item(i)?.1, out)),
            ),
            Err(i) => (self.next_key_lock(rel, &g, pid, i)?, None),
        };
        Ok(match self.try_key(txn, target, LockMode::Shared, false)? {
            Some(b) => Step::Wait(b),
            None => Step::Done(found),
        })
    }
}

/// Whether `key` is at or above the lower bound.
fn above(lo: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    match lo {
        Bound::Unbounded => true,
        Bound::Included(b) => key >= &b[..],
        Bound::Excluded(b) => key > &b[..],
    }
}

/// Whether `key` is at or below the upper bound.
fn below(hi: &Bound<Vec<u8>>, key: &[u8]) -> bool {
    match hi {
        Bound::Unbounded => true,
        Bound::Included(b) => key <= &b[..],
        Bound::Excluded(b) => key < &b[..],
    }
}

/// A range scan's position (module docs).
pub(crate) struct TreeCursor {
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    front: Batch,
    back: Batch,
    /// The key past the range is locked.
    edge_locked: bool,
    /// The front reached the end of the range.
    front_done: bool,
    /// The back reached the start of the range.
    back_done: bool,
    /// Items the next fill of the front, and of the back, reads at most
    /// ([`FIRST_FILL`]).
    front_fill: usize,
    back_fill: usize,
    /// The transaction holds the tree shared or exclusive, which gives
    /// every key lock the scan would take: fills ask for none (set by the
    /// transaction when the scan starts, `Transaction::range`).
    pub(crate) covered: bool,
}

impl TreeCursor {
    /// A scan of the keys within `lo..hi`.
    pub(crate) fn new(lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>) -> Result<TreeCursor> {
        for b in [&lo, &hi] {
            if let Bound::Included(k) | Bound::Excluded(k) = b {
                check_key(k)?;
            }
        }
        Ok(TreeCursor {
            lo,
            hi,
            front: Batch::default(),
            back: Batch::default(),
            edge_locked: false,
            front_done: false,
            back_done: false,
            front_fill: FIRST_FILL,
            back_fill: FIRST_FILL,
            covered: false,
        })
    }

    /// Whether the range left is empty.
    fn exhausted(&self) -> bool {
        match (&self.lo, &self.hi) {
            (Bound::Included(a), Bound::Included(b)) => a > b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
            | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
            _ => false,
        }
    }

    /// The next item from the front, its value read, into `key` and
    /// `value`; `false` at the end of the range.
    pub(crate) fn next_front(
        &mut self,
        store: &Storage,
        txn: TxnId,
        rel: &Relation,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> Result<bool> {
        self.lock_edge(store, txn, rel)?;
        loop {
            if let Some(next) = self.front.next_key() {
                if !below(&self.hi, next) {
                    self.front.clear();
                    self.front_done = true;
                    return Ok(false);
                }
                set_excluded(&mut self.lo, next);
                return self.front.pop_into(store, rel, key, value);
            }
            if self.front_done || self.exhausted() {
                return Ok(false);
            }
            let mut batch = std::mem::take(&mut self.front);
            let more =
                store.with_key_locks(txn, || self.fill_front(store, txn, rel, &mut batch))?;
            self.front_fill = self.front_fill.saturating_mul(2);
            self.front = batch;
            self.front_done |= !more && self.front.is_empty();
        }
    }

    /// The next item from the back, its value read, into `key` and
    /// `value`; `false` at the start of the range.
    pub(crate) fn next_back(
        &mut self,
        store: &Storage,
        txn: TxnId,
        rel: &Relation,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> Result<bool> {
        self.lock_edge(store, txn, rel)?;
        loop {
            if let Some(next) = self.back.next_key() {
                if !above(&self.lo, next) {
                    self.back.clear();
                    self.back_done = true;
                    return Ok(false);
                }
                set_excluded(&mut self.hi, next);
                return self.back.pop_into(store, rel, key, value);
            }
            if self.back_done || self.exhausted() {
                return Ok(false);
            }
            let mut batch = std::mem::take(&mut self.back);
            let found =
                store.with_key_locks(txn, || self.fill_back(store, txn, rel, &mut batch))?;
            self.back_fill = self.back_fill.saturating_mul(2);
            self.back = batch;
            self.back_done |= !found;
        }
    }

    /// Locks the first key past the range, once (covered: the tree lock
    /// keeps every key out of the range and its edge).
    fn lock_edge(&mut self, store: &Storage, txn: TxnId, rel: &Relation) -> Result<()> {
        if self.edge_locked || self.covered {
            return Ok(());
        }
        let hi = self.hi.clone();
        store.with_key_locks(txn, || {
            let _shared = rel.structure.read();
            let target = match &hi {
                Bound::Unbounded => end_lock(rel.id),
                Bound::Included(k) | Bound::Excluded(k) => {
                    let (g, pid) = store.leaf_for_read(rel, k)?;
                    // Opened and checked by the descent, latched since.
                    let p = TreePage::reopen(&g[..], pid);
                    let i = match (p.search(k)?, &hi) {
                        (Ok(i), Bound::Excluded(_)) => i,
                        (Ok(i), _) => i + 1,
                        (Err(i), _) => i,
                    };
                    store.next_key_lock(rel, &g, pid, i)?
                }
            };
            lock_shared(store, txn, target)
        })?;
        self.edge_locked = true;
        Ok(())
    }

    /// Reads the items of the range from the leaf covering `lo` on, moving
    /// right past leaves with none, at most `front_fill` of them, into
    /// `out`; locks each. Returns whether the range may go on past them.
    fn fill_front(
        &self,
        store: &Storage,
        txn: TxnId,
        rel: &Relation,
        out: &mut Batch,
    ) -> Result<Step<bool>> {
        out.clear_for(self.front_fill);
        let _shared = rel.structure.read();
        let start: &[u8] = match &self.lo {
            Bound::Unbounded => &[],
            Bound::Included(k) | Bound::Excluded(k) => k,
        };
        let (mut g, mut at) = store.leaf_for_read(rel, start)?;
        let mut moves = 0;
        loop {
            let p = store.node(rel, &g, at, 0)?;
            let (Ok(first) | Err(first)) = p.search(start)?;
            for i in first..p.len() {
                let (key, rest) = p.item(i)?;
                if !above(&self.lo, key) {
                    continue;
                }
                if !below(&self.hi, key) {
                    return Ok(Step::Done(false));
                }
                if out.len() == self.front_fill {
                    return Ok(Step::Done(true));
                }
                if !self.covered
                    && let Some(b) =
                        store.try_key(txn, key_lock(rel.id, key), LockMode::Shared, false)?
                {
                    return Ok(Step::Wait(b));
                }
                out.push(at, key, rest);
            }
            if !out.is_empty() {
                return Ok(Step::Done(true));
            }
            let high_in_range = p.high_key().is_some_and(|h| below(&self.hi, h));
            if !high_in_range {
                return Ok(Step::Done(false));
            }
            // Keys from the high key on are right of this leaf.
            let right = store.right_of(rel, &p, &mut moves)?;
            drop(g);
            g = store.pool.fetch_read(rel.file(), right)?;
            at = right;
        }
    }

    /// Reads the items of the range from the leaf holding the last key
    /// below `hi`, last first, at most `back_fill` of them, into `out`;
    /// locks each. `false` when the range has no key left.
    fn fill_back(
        &self,
        store: &Storage,
        txn: TxnId,
        rel: &Relation,
        out: &mut Batch,
    ) -> Result<Step<bool>> {
        out.clear_for(self.back_fill);
        let _shared = rel.structure.read();
        let mut hi = self.hi.clone();
        loop {
            let (g, at, low) = store.leaf_before(rel, &hi)?;
            let p = store.node(rel, &g, at, 0)?;
            for i in (0..p.len()).rev() {
                let (key, rest) = p.item(i)?;
                if !below(&hi, key) {
                    continue;
                }
                if !above(&self.lo, key) || out.len() == self.back_fill {
                    break;
                }
                if !self.covered
                    && let Some(b) =
                        store.try_key(txn, key_lock(rel.id, key), LockMode::Shared, false)?
                {
                    return Ok(Step::Wait(b));
                }
                out.push(at, key, rest);
            }
            if !out.is_empty() {
                return Ok(Step::Done(true));
            }
            // Nothing below `hi` here: go on left of this leaf's range (its
            // low end is below `hi`, so this ends).
            match low {
                Some(low) if self.lo_below(&low) => hi = Bound::Excluded(low),
                _ => return Ok(Step::Done(false)),
            }
        }
    }

    /// Whether some key above `lo` lies below `k` (the range reaches left of `k`).
    fn lo_below(&self, k: &[u8]) -> bool {
        match &self.lo {
            Bound::Unbounded => true,
            Bound::Included(b) | Bound::Excluded(b) => &b[..] < k,
        }
    }
}

/// Makes `b` exclude `key`, reusing its buffer when it has one.
fn set_excluded(b: &mut Bound<Vec<u8>>, key: &[u8]) {
    match b {
        Bound::Included(v) | Bound::Excluded(v) => {
            v.clear();
            v.extend_from_slice(key);
            let v = std::mem::take(v);
            *b = Bound::Excluded(v);
        }
        Bound::Unbounded => *b = Bound::Excluded(key.to_vec()),
    }
}

fn lock_shared(store: &Storage, txn: TxnId, target: LockTarget) -> Result<Step<()>> {
    Ok(match store.try_key(txn, target, LockMode::Shared, false)? {
        Some(b) => Step::Wait(b),
        None => Step::Done(()),
    })
}

impl Storage {
    /// The leaf whose range holds the last keys below `hi`, still latched
    /// (a split after the latch was released could move those keys to a
    /// new right sibling), and the low end of its range (`None`: minus
    /// infinity), found by descending with one shared latch at a time.
    fn leaf_before(
        &self,
        rel: &Relation,
        hi: &Bound<Vec<u8>>,
    ) -> Result<(PageReadGuard<'_>, PageId, Option<Vec<u8>>)> {
        let (mut pid, mut level) = self.root_hint(rel)?;
        let mut low: Option<Vec<u8>> = None;
        let mut moves = 0;
        loop {
            let g = self.pool.fetch_read(rel.file(), pid)?;
            let p = self.node(rel, &g, pid, level)?;
            // Move right while keys below `hi` may lie right of this node.
            let right = match (p.high_key(), hi) {
                (None, _) => false,
                (Some(_), Bound::Unbounded) => true,
                (Some(h), Bound::Included(b)) => h <= &b[..],
                (Some(h), Bound::Excluded(b)) => h < &b[..],
            };
            if right {
                low = p.high_key().map(<[u8]>::to_vec);
                pid = self.right_of(rel, &p, &mut moves)?;
                continue;
            }
            if level == 0 {
                return Ok((g, pid, low));
            }
            let i = last_child_below(&p, hi)?;
            if i > 0 {
                low = Some(p.key(i)?.to_vec());
            }
            pid = p.child(i)?;
            if pid.0 >= rel.page_count() || pid.0 == 0 {
                return Err(super::corrupt(
                    rel,
                    p.page_id(),
                    format!("child {pid} past the file"),
                ));
            }
            level -= 1;
        }
    }
}

/// The last item of an internal node whose child may hold keys below `hi`.
fn last_child_below<B: AsRef<[u8]>>(p: &TreePage<B>, hi: &Bound<Vec<u8>>) -> Result<usize> {
    let n = p.len();
    let i = match hi {
        Bound::Unbounded => n.saturating_sub(1),
        Bound::Included(b) => p.child_for(b)?.0,
        Bound::Excluded(b) => match p.search(b)? {
            Ok(i) | Err(i) => i.saturating_sub(1),
        },
    };
    Ok(i)
}
