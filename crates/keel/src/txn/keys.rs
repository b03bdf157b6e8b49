//! A transaction's operations on ordered maps (trees, [`crate::btree`]):
//! put, get, delete, and range, prefix, first and last, all serializable
//! through key-range locks held until the transaction ends.
//!
//! ```
//! # fn main() -> keel::Result<()> {
//! # let tmp = std::env::temp_dir().join(format!("keel-doc-tree-{}", std::process::id()));
//! use keel::{Config, Database};
//!
//! let db = Database::open(&tmp, Config::default())?;
//! let users = db.create_tree("users")?;
//! let mut tx = db.begin()?;
//! tx.put(users, b"ada", b"Lovelace")?;
//! tx.put(users, b"alan", b"Turing")?;
//! tx.put(users, b"grace", b"Hopper")?;
//! tx.commit()?;
//!
//! let tx = db.begin()?;
//! assert_eq!(tx.get_key(users, b"alan")?, Some(b"Turing".to_vec()));
//! let a: Vec<Vec<u8>> = tx.prefix(users, b"a")?.map(|kv| kv.map(|(k, _)| k)).collect::<keel::Result<_>>()?;
//! assert_eq!(a, vec![b"ada".to_vec(), b"alan".to_vec()]);
//! assert_eq!(tx.last(users)?.map(|(k, _)| k), Some(b"grace".to_vec()));
//! tx.commit()?;
//! # db.close()?;
//! # std::fs::remove_dir_all(&tmp).ok();
//! # Ok(())
//! # }
//! ```
//!
//! A tree whose values are [`TupleId`](crate::TupleId)s (`tid.to_bytes()`)
//! is a secondary index over a heap relation: TupleIds never change while
//! their tuple lives (invariant 12), so an update that moves a tuple, or a
//! compaction that relocates it, needs no change to the index. Insert the
//! tuple and its index key in one transaction, and delete both together.

use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use super::transaction::Transaction;
use crate::btree::read::TreeCursor;
use crate::error::Result;
use crate::heap::Relation;
use crate::lock::LockMode;
use crate::types::RelationId;

impl Transaction<'_> {
    /// Sets `key` to `value` in tree `tree`, inserting it or replacing its
    /// value. Keys are at most [`MAX_KEY_LEN`](crate::btree::MAX_KEY_LEN)
    /// bytes ([`DbError::KeyTooLarge`](crate::DbError::KeyTooLarge)
    /// otherwise); values of any size up to
    /// [`MAX_VALUE_LEN`](crate::heap::MAX_VALUE_LEN) (large ones go to an
    /// overflow chain).
    pub fn put(&mut self, tree: RelationId, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree_op(tree, LockMode::IntentExclusive, |s, log, r, covered, _| {
            s.tree_put(log, r, key, value, false, covered).map(|_| ())
        })
    }

    /// [`put`](Self::put), returning the value it replaced, if any. As for
    /// [`delete_key`](Self::delete_key), an old value that cannot be read
    /// (a damaged overflow chain) is an error returned after the replace
    /// is done.
    pub fn replace(
        &mut self,
        tree: RelationId,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        self.tree_op(tree, LockMode::IntentExclusive, |s, log, r, covered, _| {
            s.tree_put(log, r, key, value, true, covered)
        })
    }

    /// `key`'s value in `tree`. Locks the key shared, or when it is absent
    /// the key after it, so the answer holds until the transaction ends.
    pub fn get_key(&self, tree: RelationId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.tree_op(
            tree,
            LockMode::IntentShared,
            |s, log, r, covered, routes| s.tree_get(log.txn, r, key, covered, routes),
        )
    }

    /// [`get_key`](Self::get_key) into `out`: `true` when `key` is there
    /// (its value is then all of `out`), `false` when it is not (`out` is
    /// left empty). The same locks as `get_key`. A value stored in its
    /// leaf is copied into `out`'s allocation, so for many gets one buffer
    /// serves them all and no get allocates; a value in an overflow chain
    /// is read into a buffer of its own, which replaces `out`'s.
    pub fn get_key_into(&self, tree: RelationId, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        self.tree_op(
            tree,
            LockMode::IntentShared,
            |s, log, r, covered, routes| s.tree_get_into(log.txn, r, key, covered, routes, out),
        )
    }

    /// Deletes `key` from `tree`; returns its value if it was there.
    ///
    /// The old value is read after the delete is logged. When that read
    /// fails (its overflow chain is damaged: a [`Corruption`] error naming
    /// the page), the key is still deleted: committing removes it and
    /// releases what of its chain can be freed, so a key whose value is
    /// damaged can be removed; rolling back restores it.
    ///
    /// [`Corruption`]: crate::ErrorClass::Corruption
    pub fn delete_key(&mut self, tree: RelationId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.tree_op(tree, LockMode::IntentExclusive, |s, log, r, _, _| {
            s.tree_delete(log, r, key)
        })
    }

    /// Loads `items`, sorted by key (strictly ascending), into the empty
    /// tree `tree`, building it bottom-up: leaves filled to 90% and logged
    /// as page images, then each level above ([`crate::btree`] essay, bulk
    /// load). Takes the tree's lock exclusively until the transaction ends.
    /// Fails with [`DbError::TreeNotEmpty`](crate::DbError::TreeNotEmpty)
    /// on a tree with keys and [`DbError::Unsorted`](crate::DbError::Unsorted)
    /// on keys out of order. Rolling back removes the whole load. Returns
    /// how many keys were loaded.
    pub fn bulk_load<I, K, V>(&mut self, tree: RelationId, items: I) -> Result<u64>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        self.tree_op(tree, LockMode::Exclusive, |s, log, r, _, _| {
            s.tree_bulk_load(log, r, items)
        })
    }

    /// The keys and values of `tree` within `range`, in key order from
    /// either end (a double-ended iterator). Every key returned, and the
    /// first key past the range, is locked shared until the transaction
    /// ends: no other transaction can insert into, or delete from, the
    /// range meanwhile (no phantoms).
    ///
    /// `range` is `..` or a pair of [`Bound`]s of byte slices (std's `a..b`
    /// form needs sized bounds, so it does not take two `&[u8]`):
    ///
    /// ```
    /// # fn main() -> keel::Result<()> {
    /// # let tmp = std::env::temp_dir().join(format!("keel-doc-range-{}", std::process::id()));
    /// # let db = keel::Database::open(&tmp, keel::Config::default())?;
    /// use std::ops::Bound::{Excluded, Included};
    ///
    /// let t = db.create_tree("t")?;
    /// let mut tx = db.begin()?;
    /// for k in [&b"a"[..], b"b", b"c", b"d"] {
    ///     tx.put(t, k, b"v")?;
    /// }
    /// let (lo, hi): (&[u8], &[u8]) = (b"b", b"d");
    /// let keys: Vec<Vec<u8>> = tx
    ///     .range(t, (Included(lo), Excluded(hi)))?
    ///     .map(|kv| kv.map(|(k, _)| k))
    ///     .collect::<keel::Result<_>>()?;
    /// assert_eq!(keys, [b"b".to_vec(), b"c".to_vec()]);
    /// // The last key, from the back of the whole tree.
    /// assert_eq!(tx.range(t, ..)?.next_back().transpose()?.map(|(k, _)| k), Some(b"d".to_vec()));
    /// tx.commit()?;
    /// # db.close()?;
    /// # std::fs::remove_dir_all(&tmp).ok();
    /// # Ok(())
    /// # }
    /// ```
    pub fn range<R: RangeBounds<[u8]>>(&self, tree: RelationId, range: R) -> Result<Range<'_>> {
        let own = |b: Bound<&[u8]>| b.map(<[u8]>::to_vec);
        let cursor = TreeCursor::new(own(range.start_bound()), own(range.end_bound()))?;
        self.tree_range(tree, cursor)
    }

    /// The keys of `tree` that start with `prefix`, in order.
    pub fn prefix(&self, tree: RelationId, prefix: &[u8]) -> Result<Range<'_>> {
        let lo = Bound::Included(prefix.to_vec());
        let hi = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        self.tree_range(tree, TreeCursor::new(lo, hi)?)
    }

    fn tree_range(&self, tree: RelationId, mut cursor: TreeCursor) -> Result<Range<'_>> {
        let (rel, covered) = self.tree_for_scan(tree)?;
        cursor.covered = covered;
        Ok(Range {
            tx: self,
            rel,
            cursor,
            failed: false,
        })
    }

    /// The smallest key of `tree` and its value.
    pub fn first(&self, tree: RelationId) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.range(tree, ..)?.next().transpose()
    }

    /// The largest key of `tree` and its value.
    pub fn last(&self, tree: RelationId) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.range(tree, ..)?.next_back().transpose()
    }

    /// The number of keys in `tree` (a scan of its leaves, locking every
    /// key as [`range`](Self::range) does).
    pub fn len(&self, tree: RelationId) -> Result<usize> {
        let mut n = 0;
        for kv in self.range(tree, ..)? {
            kv?;
            n += 1;
        }
        Ok(n)
    }
}

/// The smallest key above every key starting with `prefix` (`None`: no
/// such key, the prefix being all `0xff` or empty).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The keys and values of a tree within a range, from
/// [`Transaction::range`] or [`Transaction::prefix`].
///
/// A range counts as one read toward the tree's read escalation
/// ([`TREE_READ_ESCALATE_AT`](crate::TREE_READ_ESCALATE_AT)), as a get
/// does: a range started once a read-only transaction
/// ([`Database::begin_read`](crate::Database::begin_read)) holds the whole
/// tree shared takes no key locks there.
///
/// As an [`Iterator`] it ends after the first error it yields (a lock
/// wait that deadlocked or timed out rolls the transaction back, and no
/// later item could be read): a loop that skips errors ends instead of
/// spinning on them. [`next_into`](Self::next_into) and
/// [`next_back_into`](Self::next_back_into) go on answering
/// [`DbError::TxnFinished`](crate::DbError::TxnFinished) after a rollback.
pub struct Range<'tx> {
    tx: &'tx Transaction<'tx>,
    rel: Arc<Relation>,
    cursor: TreeCursor,
    /// Whether the iterator yielded an error (it yields nothing after one).
    failed: bool,
}

impl Range<'_> {
    /// The next item from the front into `key` and `value` (their buffers
    /// reused: what [`Iterator::next`] returns, without two new buffers
    /// per item); `Ok(false)` at the end of the range. Locks as `next`
    /// does.
    ///
    /// ```
    /// # fn main() -> keel::Result<()> {
    /// # let tmp = std::env::temp_dir().join(format!("keel-doc-next-into-{}", std::process::id()));
    /// # let db = keel::Database::open(&tmp, keel::Config::default())?;
    /// let t = db.create_tree("t")?;
    /// let mut tx = db.begin()?;
    /// for k in [&b"a"[..], b"b", b"c"] {
    ///     tx.put(t, k, b"v")?;
    /// }
    /// let (mut key, mut value) = (Vec::new(), Vec::new());
    /// use std::ops::Bound::{Included, Unbounded};
    /// let mut r = tx.range(t, (Included(&b"b"[..]), Unbounded))?;
    /// let mut seen = Vec::new();
    /// while r.next_into(&mut key, &mut value)? {
    ///     seen.push(key.clone());
    /// }
    /// assert_eq!(seen, [b"b".to_vec(), b"c".to_vec()]);
    /// # drop(r);
    /// # tx.commit()?;
    /// # db.close()?;
    /// # std::fs::remove_dir_all(&tmp).ok();
    /// # Ok(())
    /// # }
    /// ```
    pub fn next_into(&mut self, key: &mut Vec<u8>, value: &mut Vec<u8>) -> Result<bool> {
        // Entries read (and locked) before a rollback, and a range covered
        // by a tree lock the rollback released, return nothing after it.
        self.tx.not_rolled_back()?;
        let got = self
            .cursor
            .next_front(self.tx.store(), self.tx.id(), &self.rel, key, value);
        self.tx.settle(got)
    }

    /// The next item from the back into `key` and `value`, as
    /// [`next_into`](Self::next_into) from the front; `Ok(false)` at the
    /// start of the range.
    pub fn next_back_into(&mut self, key: &mut Vec<u8>, value: &mut Vec<u8>) -> Result<bool> {
        self.tx.not_rolled_back()?;
        let got = self
            .cursor
            .next_back(self.tx.store(), self.tx.id(), &self.rel, key, value);
        self.tx.settle(got)
    }
}

impl std::fmt::Debug for Range<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Range")
            .field("tree", &self.rel.id)
            .finish_non_exhaustive()
    }
}

impl Iterator for Range<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.owned_entry(|r, k, v| r.next_into(k, v))
    }
}

impl DoubleEndedIterator for Range<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.owned_entry(|r, k, v| r.next_back_into(k, v))
    }
}

impl std::iter::FusedIterator for Range<'_> {}

impl Range<'_> {
    /// An iterator's item from a step that reads into buffers: two new
    /// buffers, filled by `step` (`next_into` or `next_back_into`);
    /// nothing once an error was yielded (the type's docs).
    fn owned_entry(
        &mut self,
        step: impl FnOnce(&mut Self, &mut Vec<u8>, &mut Vec<u8>) -> Result<bool>,
    ) -> Option<Result<(Vec<u8>, Vec<u8>)>> {
        if self.failed {
            return None;
        }
        let (mut key, mut value) = (Vec::new(), Vec::new());
        match step(self, &mut key, &mut value) {
            Ok(true) => Some(Ok((key, value))),
            Ok(false) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_ends_at_its_successor() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
