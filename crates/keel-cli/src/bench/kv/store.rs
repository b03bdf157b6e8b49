//! The key-value stores the kv suite drives, behind one [`KvStore`] trait,
//! and the keys and values every store gets.
//!
//! Key *i* is 24 bytes: three 64-bit words of the SplitMix64 finalizer
//! applied to *i* + φ, *i* + 2φ and *i* + 3φ (big-endian). The finalizer is a bijection of
//! `u64`, so the first word alone makes every key distinct, and the keys
//! are uniformly spread (random order, as in redb's comparison). Value *i*
//! is 150 bytes: *i* little-endian, then a pattern; every read compares the
//! value it got with the one written, in the bench client, the same work
//! for every store.
//!
//! Every store applies a [`KvStore`] call as one transaction: a write call
//! commits durably before it returns; a read call reads inside one read
//! transaction. The stores here are Keel (a tree through the public
//! `Database` API) and redb; SQLite is in [`super::sqlite_kv`].
//!
//! What a read hands the bench client: Keel copies each key and value into
//! buffers the client reuses (`get_key_into`, `next_into`); redb hands
//! guards over its pages and SQLite borrowed blobs, neither copying. A
//! get's value is compared with the one written in every store; a range
//! read's items are counted.

use std::ops::{Bound, Range};
use std::path::Path;
use std::sync::Arc;

use keel::Database;
use keel::types::RelationId;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::super::keel_engine;
use crate::Failure;

/// Bytes per key.
pub const KEY_BYTES: usize = 24;
/// Bytes per value.
pub const VALUE_BYTES: usize = 150;

/// One store under test. Keys and values are named by their index (see the
/// module essay); every call is one transaction.
pub trait KvStore: Send + Sync {
    /// The store's name in reports.
    fn name(&self) -> &'static str;
    /// Its settings, and what it does per operation.
    fn settings(&self) -> Vec<(String, String)>;
    /// Puts keys `ids` with their values in one durable transaction.
    fn put(&self, ids: Range<u64>) -> Result<(), Failure>;
    /// Reads the keys `ids` in one read transaction; an error if one is
    /// missing or holds another value.
    fn get(&self, ids: &[u64]) -> Result<(), Failure>;
    /// For each start in `starts`, reads `len` entries forward from key
    /// `start`, in one read transaction; the entries read.
    fn ranges(&self, starts: &[u64], len: usize) -> Result<u64, Failure>;
    /// Deletes keys `ids` in one durable transaction; how many were there.
    fn delete(&self, ids: Range<u64>) -> Result<u64, Failure>;
    /// Moves everything committed into the store's data files (untimed,
    /// between phases; the bulk load times it, see the suite essay).
    fn checkpoint(&self) -> Result<(), Failure>;
}

/// SplitMix64's finalizer (a bijection of `u64`).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Key `i`.
pub fn key(i: u64) -> [u8; KEY_BYTES] {
    let mut k = [0u8; KEY_BYTES];
    for (w, chunk) in k.chunks_exact_mut(8).enumerate() {
        let word = mix(i.wrapping_add(GOLDEN.wrapping_mul(w as u64 + 1)));
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    k
}

/// Value `i`.
pub fn value(i: u64) -> [u8; VALUE_BYTES] {
    let mut v = [0u8; VALUE_BYTES];
    v[..8].copy_from_slice(&i.to_le_bytes());
    for (j, b) in v.iter_mut().enumerate().skip(8) {
        *b = (j as u64 * 31 + i) as u8;
    }
    v
}

/// An error unless `got` is value `i`.
pub fn check(store: &str, i: u64, got: Option<&[u8]>) -> Result<(), Failure> {
    match got {
        Some(v) if v == value(i) => Ok(()),
        Some(_) => Err(Failure(format!(
            "{store}: key {i} holds another value than the one written"
        ))),
        None => Err(Failure(format!(
            "{store}: key {i} was written but is missing"
        ))),
    }
}

/// Keel: one tree; each call one transaction on the public API.
pub struct KeelKv {
    db: Arc<Database>,
    tree: RelationId,
    /// The buffer pool's settings line.
    pool: String,
}

fn k(e: keel::Error) -> Failure {
    Failure(format!("keel: {}", Failure::from(e).0))
}

impl KeelKv {
    /// Creates the database in `dir` with the tree `kv`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<KeelKv, Failure> {
        let config = keel_engine::config(cache_bytes, false)?;
        let pool = keel_engine::pool_setting(&config.buffer);
        let db = Database::open(dir, config).map_err(k)?;
        let tree = db.create_tree("kv").map_err(k)?;
        Ok(KeelKv {
            db: Arc::new(db),
            tree,
            pool,
        })
    }
}

impl KvStore for KeelKv {
    fn name(&self) -> &'static str {
        "keel"
    }

    fn settings(&self) -> Vec<(String, String)> {
        vec![
            (
                "store".into(),
                "one tree (B-link tree), public Database API".into(),
            ),
            (
                "write".into(),
                "begin; put per key; commit (durable on return, group commit)".into(),
            ),
            (
                "read".into(),
                "begin_read (a read-only transaction, as redb's begin_read); get_key_into (one buffer for the transaction's gets) / range per operation, its entries read with next_into (one key and one value buffer for the transaction's ranges); commit (shared key locks until the transaction's 64th read in the tree, then the tree locked shared)".into(),
            ),
            ("delete".into(), "begin; delete_key per key; commit".into()),
            ("checkpoint".into(), "Database::checkpoint".into()),
            ("buffer pool".into(), self.pool.clone()),
            ("page size".into(), format!("{} B", keel::page::PAGE_SIZE)),
            (
                "log writes".into(),
                match self.db.wal_direct_io() {
                    true => "O_DIRECT, one RWF_DSYNC write per batch",
                    false => "through the page cache, one RWF_DSYNC write per batch",
                }
                .into(),
            ),
        ]
    }

    fn put(&self, ids: Range<u64>) -> Result<(), Failure> {
        let mut tx = self.db.begin().map_err(k)?;
        for i in ids {
            tx.put(self.tree, &key(i), &value(i)).map_err(k)?;
        }
        tx.commit().map_err(k)
    }

    fn get(&self, ids: &[u64]) -> Result<(), Failure> {
        let tx = self.db.begin_read().map_err(k)?;
        let mut v = Vec::new();
        for &i in ids {
            let found = tx.get_key_into(self.tree, &key(i), &mut v).map_err(k)?;
            check("keel", i, found.then_some(&v[..]))?;
        }
        tx.commit().map_err(k)
    }

    fn ranges(&self, starts: &[u64], len: usize) -> Result<u64, Failure> {
        let tx = self.db.begin_read().map_err(k)?;
        let mut n = 0;
        let (mut kb, mut vb) = (Vec::new(), Vec::new());
        for &s in starts {
            let lo = key(s);
            let from = (Bound::Included(&lo[..]), Bound::Unbounded);
            let mut r = tx.range(self.tree, from).map_err(k)?;
            for _ in 0..len {
                if !r.next_into(&mut kb, &mut vb).map_err(k)? {
                    break;
                }
                n += 1;
            }
        }
        tx.commit().map_err(k)?;
        Ok(n)
    }

    fn delete(&self, ids: Range<u64>) -> Result<u64, Failure> {
        let mut tx = self.db.begin().map_err(k)?;
        let mut found = 0;
        for i in ids {
            found += u64::from(tx.delete_key(self.tree, &key(i)).map_err(k)?.is_some());
        }
        tx.commit().map_err(k)?;
        Ok(found)
    }

    fn checkpoint(&self) -> Result<(), Failure> {
        self.db.checkpoint().map(|_| ()).map_err(k)
    }
}

/// redb's table.
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

/// redb: one table; default durability (`Immediate`: a commit returns once
/// its pages and the new root are fsynced); one write transaction at a
/// time (redb's design).
pub struct RedbKv {
    db: redb::Database,
    cache_bytes: u64,
}

fn r(e: impl std::fmt::Display) -> Failure {
    Failure(format!("redb: {e}"))
}

impl RedbKv {
    /// Creates `dir/kv.redb` with a cache of `cache_bytes` and the table.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<RedbKv, Failure> {
        let db = redb::Database::builder()
            .set_cache_size(cache_bytes as usize)
            .create(dir.join("kv.redb"))
            .map_err(r)?;
        let tx = db.begin_write().map_err(r)?;
        tx.open_table(TABLE).map_err(r)?;
        tx.commit().map_err(r)?;
        Ok(RedbKv { db, cache_bytes })
    }
}

impl KvStore for RedbKv {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn settings(&self) -> Vec<(String, String)> {
        vec![
            ("version".into(), "5.0.0 (crate)".into()),
            ("durability".into(), "Immediate (the default)".into()),
            ("cache".into(), format!("{} MiB", self.cache_bytes >> 20)),
            (
                "write".into(),
                "begin_write (one writer at a time); open_table; insert per key; commit".into(),
            ),
            (
                "read".into(),
                "begin_read; open_table; get / range per operation".into(),
            ),
            (
                "delete".into(),
                "begin_write; remove per key; commit".into(),
            ),
            (
                "checkpoint".into(),
                "none (a commit writes the tree into the file)".into(),
            ),
        ]
    }

    fn put(&self, ids: Range<u64>) -> Result<(), Failure> {
        let tx = self.db.begin_write().map_err(r)?;
        {
            let mut t = tx.open_table(TABLE).map_err(r)?;
            for i in ids {
                t.insert(&key(i)[..], &value(i)[..]).map_err(r)?;
            }
        }
        tx.commit().map_err(r)
    }

    fn get(&self, ids: &[u64]) -> Result<(), Failure> {
        let tx = self.db.begin_read().map_err(r)?;
        let t = tx.open_table(TABLE).map_err(r)?;
        for &i in ids {
            let v = t.get(&key(i)[..]).map_err(r)?;
            check("redb", i, v.as_ref().map(|g| g.value()))?;
        }
        Ok(())
    }

    fn ranges(&self, starts: &[u64], len: usize) -> Result<u64, Failure> {
        let tx = self.db.begin_read().map_err(r)?;
        let t = tx.open_table(TABLE).map_err(r)?;
        let mut n = 0;
        for &s in starts {
            let lo = key(s);
            for kv in t.range(&lo[..]..).map_err(r)?.take(len) {
                kv.map_err(r)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn delete(&self, ids: Range<u64>) -> Result<u64, Failure> {
        let tx = self.db.begin_write().map_err(r)?;
        let mut found = 0;
        {
            let mut t = tx.open_table(TABLE).map_err(r)?;
            for i in ids {
                found += u64::from(t.remove(&key(i)[..]).map_err(r)?.is_some());
            }
        }
        tx.commit().map_err(r)?;
        Ok(found)
    }

    fn checkpoint(&self) -> Result<(), Failure> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_values_name_their_key() {
        let keys: std::collections::BTreeSet<[u8; KEY_BYTES]> = (0..10_000).map(key).collect();
        assert_eq!(keys.len(), 10_000);
        // Spread: neither sorted by index nor clustered in one byte range.
        let descents = (0..1000).filter(|&i| key(i) > key(i + 1)).count();
        assert!((400..600).contains(&descents), "{descents} descents");
        let top: std::collections::BTreeSet<u8> = (0..1000).map(|i| key(i)[0]).collect();
        assert!(top.len() > 200, "first bytes take {} values", top.len());
        assert_eq!(
            u64::from_le_bytes(value(77)[..8].try_into().unwrap_or([0; 8])),
            77
        );
        assert_ne!(value(1)[8..], value(2)[8..]);
        assert!(check("t", 5, Some(&value(5))).is_ok());
        assert!(check("t", 5, Some(&value(6))).is_err());
        assert!(check("t", 5, None).is_err());
    }
}
