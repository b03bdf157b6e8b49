//! The demo's workload: worker threads that each own their tuples (so two
//! transactions never write the same tuple) and run transactions of
//! inserts, updates that grow (and so move) or shrink tuples, deletes,
//! multi-MiB overflow values and aborts, and now and then a read-only
//! transaction that checks the index against the heap ([`Worker::run_txn`]).
//!
//! Every value is recomputable from its [`Version`]: an 18-byte header
//! (magic, the writing transaction's tag, the operation's number in it, the
//! length) followed by bytes drawn from a generator seeded by the header.
//! A value found after a crash therefore names the transaction that wrote it
//! and proves its own integrity.
//!
//! Beside the heap relations, a tree ([`INDEX`]) is a secondary index of
//! every live value: key = the value's version ([`index_key`]: tag and
//! operation number, unique over the demo), value = where it lives
//! ([`index_value`]: relation index and TupleId). The index changes in the
//! same transaction as the tuple: an insert adds a key, an update replaces
//! the old version's key by the new one's (the TupleId stays the same even
//! when the tuple moves, invariant 12), a delete removes the key.

use keel::{Database, RelationId, Transaction, TupleId};
use keel_io::sim::Rng;

use crate::Failure;

/// The demo's relations: small tuples, and large values in overflow chains.
pub const RELATIONS: [&str; 2] = ["accounts", "blobs"];
/// The tree indexing every live value by its version.
pub const INDEX: &str = "by_version";
/// Index of `accounts` in [`RELATIONS`].
pub const SMALL: u8 = 0;
/// Index of `blobs` in [`RELATIONS`].
pub const BLOB: u8 = 1;

const MAGIC: [u8; 4] = *b"KDv1";
const HEADER_LEN: usize = 18;
/// Transactions rolled back on purpose, per million.
const ABORT_PPM: u32 = 80_000;
/// Transactions that are a worker's read-only check of the index, per
/// million.
const INDEX_CHECK_PPM: u32 = 50_000;

/// The ids of the demo's relations and of its index tree.
#[derive(Clone, Copy, Debug)]
pub struct Rels {
    /// The heap relations, in [`RELATIONS`] order.
    pub heap: [RelationId; 2],
    /// The [`INDEX`] tree.
    pub index: RelationId,
}

/// The index key of a version: its tag and operation number, big-endian
/// (so keys sort by transaction).
pub fn index_key(v: Version) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..8].copy_from_slice(&v.tag.to_be_bytes());
    k[8..].copy_from_slice(&v.op.to_be_bytes());
    k
}

/// The index value of a tuple: `REL/P.S` (relation index, TupleId).
pub fn index_value(key: Key) -> Vec<u8> {
    format!("{}/{}", key.0, key.1).into_bytes()
}

/// Reads an [`index_value`] back.
pub fn parse_index_value(bytes: &[u8]) -> Option<Key> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (rel, tid) = text.split_once('/')?;
    Some((rel.parse().ok()?, tid.parse().ok()?))
}

/// A tuple address in the demo: relation index and TupleId.
pub type Key = (u8, TupleId);

/// The tuples a worker owns, per relation.
pub type Owned = [Vec<(TupleId, Version)>; 2];

/// What a value is: who wrote it, as which operation, and how long it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    /// The writing transaction's tag ([`tag`]).
    pub tag: u64,
    /// The operation's number within that transaction.
    pub op: u16,
    /// Length of the value in bytes.
    pub len: u32,
}

/// A transaction's tag: unique over the whole demo, naming its worker.
pub fn tag(phase: u8, worker: u16, seq: u64) -> u64 {
    (u64::from(phase) << 56) | (u64::from(worker) << 40) | (seq & ((1 << 40) - 1))
}

/// The worker that ran the transaction `tag`.
pub fn tag_worker(tag: u64) -> u16 {
    (tag >> 40) as u16
}

/// The bytes of a value.
pub fn value(v: Version) -> Vec<u8> {
    let len = (v.len as usize).max(HEADER_LEN);
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&v.tag.to_le_bytes());
    out.extend_from_slice(&v.op.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    let mut rng = Rng::new(v.tag ^ (u64::from(v.op) << 44) ^ u64::from(v.len));
    while out.len() < len {
        let word = rng.next_u64().to_le_bytes();
        let n = (len - out.len()).min(8);
        out.extend_from_slice(&word[..n]);
    }
    out
}

/// Reads a value's header and checks every byte against it.
pub fn decode(bytes: &[u8]) -> Result<Version, String> {
    if bytes.len() < HEADER_LEN || bytes[..4] != MAGIC {
        return Err(format!("{} bytes without the demo's header", bytes.len()));
    }
    let u = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b[..r.len()].copy_from_slice(&bytes[r]);
        u64::from_le_bytes(b)
    };
    let v = Version {
        tag: u(4..12),
        op: u(12..14) as u16,
        len: u(14..18) as u32,
    };
    if v.len as usize != bytes.len() {
        return Err(format!(
            "header says {} bytes, found {}",
            v.len,
            bytes.len()
        ));
    }
    if value(v) != bytes {
        return Err(format!("bytes differ from what txn {:#x} wrote", v.tag));
    }
    Ok(v)
}

/// One change a transaction made: a version appears or disappears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// An insert, or the new side of an update.
    Add(Key, Version),
    /// A delete, or the old side of an update.
    Remove(Key, Version),
}

/// A transaction's changes, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRecord {
    /// Its tag.
    pub tag: u64,
    /// Its effects.
    pub effects: Vec<Effect>,
}

/// How big the workload is.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Transactions per thread in the first phase.
    pub txns_per_thread: u64,
    /// Large values are `blob_min..blob_max` bytes.
    pub blob_min: u64,
    /// See `blob_min`.
    pub blob_max: u64,
    /// Every this many transactions, a thread also changes a large value.
    pub blob_every: u64,
}

impl Sizes {
    /// The full demo, or the quick one the tests run.
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                txns_per_thread: 120,
                blob_min: 512 << 10,
                blob_max: 3 << 19,
                blob_every: 50,
            }
        } else {
            Sizes {
                txns_per_thread: 3000,
                blob_min: 1 << 20,
                blob_max: 4 << 20,
                blob_every: 200,
            }
        }
    }
}

impl Sizes {
    /// Short crash cycles (`keel crashtest`): large values of 16–96 KiB,
    /// still overflow chains of several pages, but cheap to write and check.
    pub fn small() -> Sizes {
        Sizes {
            txns_per_thread: 120,
            blob_min: 16 << 10,
            blob_max: 96 << 10,
            blob_every: 20,
        }
    }
}

/// What a worker did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// Transactions committed.
    pub commits: u64,
    /// Transactions rolled back on purpose.
    pub aborts: u64,
    /// Tuples inserted (in committed transactions).
    pub inserts: u64,
    /// Updates that grew a tuple (most of them move it to another page).
    pub grows: u64,
    /// Updates that shrank a tuple.
    pub shrinks: u64,
    /// Tuples deleted.
    pub deletes: u64,
    /// Read-only transactions that checked the index against the heap.
    pub index_checks: u64,
    /// Large values written (inserted or updated).
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.commits += o.commits;
        self.aborts += o.aborts;
        self.inserts += o.inserts;
        self.grows += o.grows;
        self.shrinks += o.shrinks;
        self.deletes += o.deletes;
        self.index_checks += o.index_checks;
        self.blobs += o.blobs;
        self.blob_bytes += o.blob_bytes;
    }
}

/// Where a worker reports its transactions.
pub trait Sink {
    /// Called just before `commit`: the transaction is about to be in flight.
    fn announce(&mut self, rec: &TxnRecord) -> Result<(), Failure>;
    /// Called once `commit` has returned: the transaction is durable.
    fn acknowledge(&mut self, rec: TxnRecord) -> Result<(), Failure>;
}

/// A worker thread's state: the tuples it owns, per relation.
pub struct Worker<'db> {
    db: &'db Database,
    rels: Rels,
    phase: u8,
    id: u16,
    seq: u64,
    rng: Rng,
    sizes: Sizes,
    owned: Owned,
    /// What it did so far.
    pub counts: Counts,
}

/// A transaction being built: its effects and the owned-list changes to
/// make if it commits.
struct Plan {
    tag: u64,
    effects: Vec<Effect>,
    /// (relation, index in `owned`, new version or `None` for a delete).
    touched: Vec<(u8, usize, Option<Version>)>,
    added: Vec<(u8, TupleId, Version)>,
    counts: Counts,
}

impl<'db> Worker<'db> {
    /// A worker of `phase` owning `owned` (tuples found from earlier phases).
    pub fn new(
        db: &'db Database,
        rels: Rels,
        (phase, id): (u8, u16),
        seed: u64,
        sizes: Sizes,
        owned: Owned,
    ) -> Worker<'db> {
        Worker {
            db,
            rels,
            phase,
            id,
            seq: 0,
            rng: Rng::new(seed ^ (u64::from(id) << 32) ^ u64::from(phase)),
            sizes,
            owned,
            counts: Counts::default(),
        }
    }

    /// The same worker numbering its transactions from `seq + 1`, so a
    /// later run on the same directory never reuses an earlier run's tags.
    pub fn starting_at(mut self, seq: u64) -> Worker<'db> {
        self.seq = seq;
        self
    }

    /// Runs one transaction: a few operations, then commit (reported to
    /// `sink` before and after) or, now and then, a rollback; or, now and
    /// then, a read-only check of the index ([`check_index`](Self::check_index)).
    pub fn run_txn(&mut self, sink: &mut dyn Sink) -> Result<(), Failure> {
        if self.rng.chance(INDEX_CHECK_PPM) {
            return self.check_index();
        }
        self.seq += 1;
        let mut plan = Plan {
            tag: tag(self.phase, self.id, self.seq),
            effects: Vec::new(),
            touched: Vec::new(),
            added: Vec::new(),
            counts: Counts::default(),
        };
        let mut tx = self.db.begin()?;
        match self.ops(&mut tx, &mut plan) {
            Ok(()) => {}
            // A deadlock or a lock timeout rolled the transaction back:
            // workers own their tuples and index keys, but an index put
            // locks the next key too, which may be another worker's, so
            // two of them can wait for each other. Nothing was announced;
            // it counts as a rollback, as an application would retry it.
            Err(e) if e.class() == keel::ErrorClass::Transient => {
                self.counts.aborts += 1;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if self.rng.chance(ABORT_PPM) {
            if self.rng.coin() {
                tx.abort()?;
            } else {
                drop(tx); // dropping rolls back too
            }
            self.counts.aborts += 1;
            return Ok(());
        }
        let rec = TxnRecord {
            tag: plan.tag,
            effects: std::mem::take(&mut plan.effects),
        };
        sink.announce(&rec)?;
        tx.commit()?;
        self.commit_plan(plan);
        self.counts.commits += 1;
        sink.acknowledge(rec)
    }

    /// A read-only transaction (`begin_read`) that gets the index key of
    /// each tuple this worker owns and the tuple it names, and fails unless
    /// they agree. Past 64 keys it tries to lock the whole index shared, so
    /// a kill can land in a reader holding it. Only this worker writes its
    /// tuples and their keys, but another worker's index put locks the key
    /// after its own, which may be one of these: the check can wait for
    /// that writer while the writer waits for a key the check has read, and
    /// a deadlock or a lock timeout then rolls the check back. It counts as
    /// a rollback, as in [`run_txn`](Self::run_txn), and is not a failure.
    fn check_index(&mut self) -> Result<(), Failure> {
        match self.index_agrees() {
            Ok(agrees) => {
                agrees?;
                self.counts.index_checks += 1;
                Ok(())
            }
            Err(e) if e.class() == keel::ErrorClass::Transient => {
                self.counts.aborts += 1;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// [`check_index`](Self::check_index)'s transaction: the engine's
    /// error, or whether every key and tuple agreed.
    fn index_agrees(&self) -> keel::Result<Result<(), Failure>> {
        let tx = self.db.begin_read()?;
        for (r, owned) in self.owned.iter().enumerate() {
            let rel = r as u8;
            for &(tid, v) in owned {
                let named = tx.get_key(self.rels.index, &index_key(v))?;
                if named.as_deref().and_then(parse_index_value) != Some((rel, tid)) {
                    return Ok(Err(Failure(format!(
                        "index check: the key of {rel}/{tid} names {:?}",
                        named.map(|n| String::from_utf8_lossy(&n).into_owned())
                    ))));
                }
                let found = tx.get(self.rels.heap[r], tid)?.map(|b| decode(&b));
                if found != Some(Ok(v)) {
                    return Ok(Err(Failure(format!(
                        "index check: {rel}/{tid} holds {found:?}, its index key {v:?}"
                    ))));
                }
            }
        }
        tx.commit()?;
        Ok(Ok(()))
    }

    /// The transaction's operations: a few small ones and, now and then,
    /// a large value's.
    fn ops(&mut self, tx: &mut Transaction<'_>, plan: &mut Plan) -> keel::Result<()> {
        let ops = 1 + self.rng.below(4) as u16;
        for op in 0..ops {
            self.small_op(tx, plan, op)?;
        }
        if self.seq % self.sizes.blob_every == u64::from(self.id) % self.sizes.blob_every {
            self.blob_op(tx, plan, ops)?;
        }
        Ok(())
    }

    /// An insert (40–400 B), an update that grows (600–2000 B, usually
    /// moving the tuple) or shrinks it, or a delete.
    fn small_op(&mut self, tx: &mut Transaction<'_>, plan: &mut Plan, op: u16) -> keel::Result<()> {
        let r = self.rng.below(100);
        let target = self.pick(SMALL, plan).filter(|_| r >= 45);
        let Some(i) = target else {
            let len = 40 + self.rng.below(360);
            return self.insert(
                tx,
                plan,
                SMALL,
                Version {
                    tag: plan.tag,
                    op,
                    len: len as u32,
                },
            );
        };
        if r < 80 {
            let grow = self.rng.coin();
            let len = if grow {
                600 + self.rng.below(1400)
            } else {
                24 + self.rng.below(180)
            };
            let new = Version {
                tag: plan.tag,
                op,
                len: len as u32,
            };
            self.update(tx, plan, SMALL, i, new)?;
            if grow {
                plan.counts.grows += 1;
            } else {
                plan.counts.shrinks += 1;
            }
            Ok(())
        } else {
            self.delete(tx, plan, SMALL, i)
        }
    }

    /// A large value: inserted while the worker owns fewer than two,
    /// otherwise replaced by another size or deleted.
    fn blob_op(&mut self, tx: &mut Transaction<'_>, plan: &mut Plan, op: u16) -> keel::Result<()> {
        let len = self.sizes.blob_min + self.rng.below(self.sizes.blob_max - self.sizes.blob_min);
        let new = Version {
            tag: plan.tag,
            op,
            len: len as u32,
        };
        let target = self
            .pick(BLOB, plan)
            .filter(|_| self.owned[BLOB as usize].len() >= 2);
        match target {
            None => self.insert(tx, plan, BLOB, new)?,
            Some(i) if self.rng.coin() => self.update(tx, plan, BLOB, i, new)?,
            Some(i) => return self.delete(tx, plan, BLOB, i),
        }
        plan.counts.blobs += 1;
        plan.counts.blob_bytes += len;
        Ok(())
    }

    /// A random owned tuple this transaction has not touched yet.
    fn pick(&mut self, rel: u8, plan: &Plan) -> Option<usize> {
        let n = self.owned[rel as usize].len() as u64;
        if (n < 8 && rel == SMALL) || n == 0 {
            return None;
        }
        let i = self.rng.below(n) as usize;
        let taken = plan.touched.iter().any(|&(r, j, _)| r == rel && j == i);
        (!taken).then_some(i)
    }

    fn insert(
        &mut self,
        tx: &mut Transaction<'_>,
        plan: &mut Plan,
        rel: u8,
        v: Version,
    ) -> keel::Result<()> {
        let tid = tx.insert(self.rels.heap[rel as usize], &value(v))?;
        tx.put(self.rels.index, &index_key(v), &index_value((rel, tid)))?;
        plan.effects.push(Effect::Add((rel, tid), v));
        plan.added.push((rel, tid, v));
        plan.counts.inserts += 1;
        Ok(())
    }

    fn update(
        &mut self,
        tx: &mut Transaction<'_>,
        plan: &mut Plan,
        rel: u8,
        i: usize,
        v: Version,
    ) -> keel::Result<()> {
        let (tid, old) = self.owned[rel as usize][i];
        tx.update(self.rels.heap[rel as usize], tid, &value(v))?;
        tx.delete_key(self.rels.index, &index_key(old))?;
        tx.put(self.rels.index, &index_key(v), &index_value((rel, tid)))?;
        plan.effects.push(Effect::Remove((rel, tid), old));
        plan.effects.push(Effect::Add((rel, tid), v));
        plan.touched.push((rel, i, Some(v)));
        Ok(())
    }

    fn delete(
        &mut self,
        tx: &mut Transaction<'_>,
        plan: &mut Plan,
        rel: u8,
        i: usize,
    ) -> keel::Result<()> {
        let (tid, old) = self.owned[rel as usize][i];
        tx.delete(self.rels.heap[rel as usize], tid)?;
        tx.delete_key(self.rels.index, &index_key(old))?;
        plan.effects.push(Effect::Remove((rel, tid), old));
        plan.touched.push((rel, i, None));
        plan.counts.deletes += 1;
        Ok(())
    }

    /// Makes a committed plan's changes to the owned lists.
    fn commit_plan(&mut self, plan: Plan) {
        let mut gone: Vec<(u8, usize)> = Vec::new();
        for (rel, i, new) in plan.touched {
            match new {
                Some(v) => self.owned[rel as usize][i].1 = v,
                None => gone.push((rel, i)),
            }
        }
        gone.sort_unstable_by(|a, b| b.cmp(a));
        for (rel, i) in gone {
            self.owned[rel as usize].swap_remove(i);
        }
        for (rel, tid, v) in plan.added {
            self.owned[rel as usize].push((tid, v));
        }
        self.counts += plan.counts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entries_round_trip_and_sort_by_transaction() {
        let tid = TupleId::new(keel::types::PageId(12), keel::types::SlotId(3));
        assert_eq!(parse_index_value(&index_value((1, tid))), Some((1, tid)));
        assert_eq!(index_value((0, tid)), b"0/12.3");
        assert_eq!(parse_index_value(b"0-12.3"), None);
        assert_eq!(parse_index_value(b"x/12.3"), None);
        assert_eq!(parse_index_value(&[0xff, b'/']), None);
        let v = |tag, op| Version { tag, op, len: 40 };
        assert!(index_key(v(1, 9)) < index_key(v(2, 0)));
        assert!(index_key(v(2, 0)) < index_key(v(2, 1)));
        assert!(index_key(v(0x100, 0)) > index_key(v(0xff, 7)));
    }

    #[test]
    fn values_round_trip_and_damage_is_seen() {
        let v = Version {
            tag: tag(2, 3, 77),
            op: 4,
            len: 1000,
        };
        let mut bytes = value(v);
        assert_eq!(decode(&bytes), Ok(v));
        assert_eq!(tag_worker(v.tag), 3);
        bytes[500] ^= 1;
        assert!(decode(&bytes).is_err());
        assert!(decode(b"short").is_err());
    }
}
