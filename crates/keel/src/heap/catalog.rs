//! The catalog: relation 0, a heap of one row per relation.
//!
//! A row is the relation id (u32, little-endian), then for a tree the tag
//! byte [`TREE_TAG`] (a control character, which no name contains, so a
//! heap's row, which has none, reads the same as before trees existed),
//! then its name in UTF-8 (1 to 255 bytes). Creating a relation logs a `RelationCreate`
//! record and inserts the row in one committed transaction; dropping logs
//! `RelationDrop` and deletes the row (the protocols, and what recovery
//! does about files, are in [`crate::recovery::ddl`]). The rows are read
//! back at open, after recovery, so the catalog is whatever the log says
//! it is.
//!
//! Ids: relations are numbered from 1, in creation order, and an id is
//! never handed out twice. Every id is below [`RELATION_ID_LIMIT`]: the
//! counter of the next id stops at the limit, which is how it says that
//! every id is used (a create is then refused with
//! [`DbError::RelationIdsExhausted`]); it never moves past it, so it never
//! wraps round to the catalog's id 0 or to a relation's.
//!
//! Files: relation `n` lives in `rel/<n>.heap` under the data directory and
//! its free space map in `rel/<n>.fsm` ([`crate::datadir::layout`] names
//! them, [`crate::datadir::files`] creates, lists and removes them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

use super::{Relation, RelationKind};
use crate::error::{DbError, Result};
use crate::types::{RelationId, TupleId};
use crate::wal::payload::MAX_NAME_LEN;

/// The catalog's own relation id.
pub const CATALOG_ID: RelationId = RelationId(0);
/// Every relation id is below this. The counter of the next id
/// ([`Catalog::allocate_id`]) stops here when every id is used; a file or a
/// catalog row naming an id at or above it was not written by Keel.
pub const RELATION_ID_LIMIT: u32 = u32::MAX;

/// Whether `id` is below [`RELATION_ID_LIMIT`]: one Keel may hand out.
pub fn below_id_limit(id: RelationId) -> bool {
    id.0 < RELATION_ID_LIMIT
}
/// The catalog's name (reserved).
pub const CATALOG_NAME: &str = "keel_catalog";

/// The byte after the id in a tree's catalog row (module docs).
pub const TREE_TAG: u8 = 0x01;

/// Checks a relation name given by a caller.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let bad = |reason| DbError::BadRelationName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("it is empty").into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad("it is longer than 255 bytes").into());
    }
    if name.chars().any(char::is_control) {
        return Err(bad("it contains control characters").into());
    }
    if name == CATALOG_NAME {
        return Err(bad("it is the catalog's name").into());
    }
    Ok(())
}

/// A catalog row's bytes.
pub fn encode_row(id: RelationId, name: &str, kind: RelationKind) -> Vec<u8> {
    let mut b = id.0.to_le_bytes().to_vec();
    if kind == RelationKind::Tree {
        b.push(TREE_TAG);
    }
    b.extend_from_slice(name.as_bytes());
    b
}

/// Decodes a catalog row read at `tid`.
pub fn decode_row(tid: TupleId, bytes: &[u8]) -> Result<(RelationId, String, RelationKind)> {
    let corrupt = |reason: &str| DbError::Corrupt {
        what: format!("catalog row {tid}"),
        reason: reason.to_string(),
    };
    // The id, a tree's tag and the longest name; `check_name` below
    // bounds the name itself.
    if bytes.len() < 5 || bytes.len() > 5 + MAX_NAME_LEN {
        return Err(corrupt("row length out of range").into());
    }
    let mut id = [0u8; 4];
    id.copy_from_slice(&bytes[..4]);
    let id = RelationId(u32::from_le_bytes(id));
    let (kind, name) = match bytes[4] {
        TREE_TAG => (RelationKind::Tree, &bytes[5..]),
        _ => (RelationKind::Heap, &bytes[4..]),
    };
    let name = std::str::from_utf8(name).map_err(|_| corrupt("name is not UTF-8"))?;
    if id == CATALOG_ID {
        return Err(corrupt("row names relation 0").into());
    }
    if !below_id_limit(id) {
        return Err(corrupt(&format!(
            "row names relation {id}, at or above the relation id limit {RELATION_ID_LIMIT}"
        ))
        .into());
    }
    // Only names `check_name` accepted were ever written.
    if let Err(crate::Error::Db(DbError::BadRelationName { reason, .. })) = check_name(name) {
        return Err(corrupt(&format!("its name {name:?} is not a valid name: {reason}")).into());
    }
    Ok((id, name.to_string(), kind))
}

#[derive(Default)]
struct Maps {
    /// Looked up on every operation; relation ids are Keel's own, so Fx.
    by_id: FxHashMap<RelationId, Arc<Relation>>,
    by_name: BTreeMap<String, RelationId>,
}

/// The relations of an open database, by id and by name.
pub(crate) struct Catalog {
    maps: RwLock<Maps>,
    /// The id the next create gets; at most [`RELATION_ID_LIMIT`], which
    /// means every id is used.
    next_id: AtomicU32,
    /// Serializes create and drop.
    pub ddl: Mutex<()>,
}

impl Catalog {
    pub(crate) fn new(next_id: u32) -> Catalog {
        Catalog {
            maps: RwLock::new(Maps::default()),
            next_id: AtomicU32::new(next_id.clamp(1, RELATION_ID_LIMIT)),
            ddl: Mutex::new(()),
        }
    }

    /// Adds a relation.
    pub(crate) fn insert(&self, rel: Arc<Relation>) {
        let mut m = self.maps.write();
        let after = match below_id_limit(rel.id) {
            true => rel.id.0 + 1,
            false => RELATION_ID_LIMIT,
        };
        self.next_id.fetch_max(after, Ordering::AcqRel);
        if rel.id != CATALOG_ID {
            m.by_name.insert(rel.name.clone(), rel.id);
        }
        m.by_id.insert(rel.id, rel);
    }

    /// Removes a relation.
    pub(crate) fn remove(&self, id: RelationId) -> Option<Arc<Relation>> {
        let mut m = self.maps.write();
        let rel = m.by_id.remove(&id)?;
        m.by_name.remove(&rel.name);
        Some(rel)
    }

    /// A relation by id.
    pub(crate) fn get(&self, id: RelationId) -> Option<Arc<Relation>> {
        self.maps.read().by_id.get(&id).cloned()
    }

    /// A relation by name (the catalog is not found by name).
    pub(crate) fn by_name(&self, name: &str) -> Option<Arc<Relation>> {
        let m = self.maps.read();
        m.by_name.get(name).and_then(|id| m.by_id.get(id)).cloned()
    }

    /// Every relation, the catalog first, by id.
    pub(crate) fn all(&self) -> Vec<Arc<Relation>> {
        let mut v: Vec<_> = self.maps.read().by_id.values().cloned().collect();
        v.sort_by_key(|r| r.id);
        v
    }

    /// The id the next relation gets.
    pub(crate) fn next_id(&self) -> u32 {
        self.next_id.load(Ordering::Acquire)
    }

    /// Takes the next id, or refuses when every id below
    /// [`RELATION_ID_LIMIT`] is used. The counter moves only from an id to
    /// the one after it, and never past the limit: a refused create leaves
    /// it where it was, so it never wraps round to an id in use.
    pub(crate) fn allocate_id(&self) -> Result<RelationId> {
        self.next_id
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                n.checked_add(1).filter(|_| n < RELATION_ID_LIMIT)
            })
            .map(RelationId)
            .map_err(|_| {
                DbError::RelationIdsExhausted {
                    limit: RELATION_ID_LIMIT,
                }
                .into()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{PageId, SlotId};

    #[test]
    fn rows_round_trip_and_bad_rows_are_refused() {
        let tid = TupleId::new(PageId(0), SlotId(3));
        let heap = RelationKind::Heap;
        let row = encode_row(RelationId(7), "accounts", heap);
        assert_eq!(
            decode_row(tid, &row).unwrap(),
            (RelationId(7), "accounts".to_string(), heap)
        );
        let tree = encode_row(RelationId(8), "by_name", RelationKind::Tree);
        assert_eq!(
            decode_row(tid, &tree).unwrap(),
            (RelationId(8), "by_name".to_string(), RelationKind::Tree)
        );
        assert!(
            decode_row(tid, &tree[..5]).is_err(),
            "a tree row without a name"
        );
        assert!(decode_row(tid, &row[..4]).is_err());
        // The longest name, for either kind; one byte more is refused.
        let longest = "n".repeat(MAX_NAME_LEN);
        for kind in [heap, RelationKind::Tree] {
            let row = encode_row(RelationId(9), &longest, kind);
            assert_eq!(
                decode_row(tid, &row).unwrap(),
                (RelationId(9), longest.clone(), kind)
            );
            let mut long = row.clone();
            long.push(b'n');
            assert!(decode_row(tid, &long).is_err(), "{kind:?}");
        }
        assert!(decode_row(tid, &encode_row(RelationId(0), "x", heap)).is_err());
        assert!(decode_row(tid, &encode_row(RelationId(2), "a\nb", heap)).is_err());
        assert!(decode_row(tid, &encode_row(RelationId(2), CATALOG_NAME, heap)).is_err());
        let mut bad = row.clone();
        bad[5] = 0xff;
        let e = decode_row(tid, &bad).unwrap_err().to_string();
        assert!(e.contains("catalog row 0.3"), "{e}");
    }

    #[test]
    fn ids_stop_at_the_limit_and_never_wrap() {
        let c = Catalog::new(RELATION_ID_LIMIT - 2);
        assert_eq!(c.allocate_id().unwrap(), RelationId(RELATION_ID_LIMIT - 2));
        assert_eq!(c.allocate_id().unwrap(), RelationId(RELATION_ID_LIMIT - 1));
        for _ in 0..3 {
            let e = c.allocate_id().unwrap_err();
            assert!(
                matches!(
                    e,
                    crate::Error::Db(DbError::RelationIdsExhausted {
                        limit: RELATION_ID_LIMIT
                    })
                ),
                "{e:?}"
            );
            assert_eq!(c.next_id(), RELATION_ID_LIMIT);
        }
        // A counter started past the limit is held at it.
        assert_eq!(Catalog::new(u32::MAX).next_id(), RELATION_ID_LIMIT);
        assert!(Catalog::new(u32::MAX).allocate_id().is_err());
        let tid = TupleId::new(PageId(0), SlotId(1));
        let row = encode_row(RelationId(RELATION_ID_LIMIT), "x", RelationKind::Heap);
        assert!(decode_row(tid, &row).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("accounts").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(256)).is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(CATALOG_NAME).is_err());
    }
}
