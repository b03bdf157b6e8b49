//! The catalog: relation 0, a heap of one row per relation.
//!
//! A row is the relation id (u32, little-endian) followed by its name in
//! UTF-8 (1 to 255 bytes). Creating a relation logs a `RelationCreate`
//! record and inserts the row in one committed transaction; dropping logs
//! `RelationDrop` and deletes the row (the protocols, and what recovery
//! does about files, are in [`crate::recovery::ddl`]). The rows are read
//! back at open, after recovery, so the catalog is whatever the log says
//! it is.
//!
//! Files: relation `n` lives in `rel/<n>.heap` under the data directory and
//! its free space map in `rel/<n>.fsm`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::{Mutex, RwLock};

use keel_io::{FileClass, OpenOptions};

use super::{Relation, Store};
use crate::buffer::{BufferError, FileId};
use crate::error::{DbError, Result};
use crate::page::PAGE_SIZE;
use crate::types::{RelationId, TupleId};
use crate::wal::payload::MAX_NAME_LEN;

/// The catalog's own relation id.
pub(crate) const CATALOG_ID: RelationId = RelationId(0);
/// The catalog's name (reserved).
pub(crate) const CATALOG_NAME: &str = "keel_catalog";

/// Directory of relation files under the data directory.
pub(crate) fn rel_dir(dir: &Path) -> PathBuf {
    dir.join("rel")
}

/// Path of relation `id`'s heap file.
pub(crate) fn heap_path(dir: &Path, id: RelationId) -> PathBuf {
    rel_dir(dir).join(format!("{}.heap", id.0))
}

/// Path of relation `id`'s free space map file.
pub(crate) fn fsm_path(dir: &Path, id: RelationId) -> PathBuf {
    rel_dir(dir).join(format!("{}.fsm", id.0))
}

/// The relation id of a file name `<n>.heap`, if it is one.
pub(crate) fn heap_file_id(name: &str) -> Option<RelationId> {
    let n = name.strip_suffix(".heap")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().map(RelationId)
}

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
pub(crate) fn encode_row(id: RelationId, name: &str) -> Vec<u8> {
    let mut b = id.0.to_le_bytes().to_vec();
    b.extend_from_slice(name.as_bytes());
    b
}

/// Decodes a catalog row read at `tid`.
pub(crate) fn decode_row(tid: TupleId, bytes: &[u8]) -> Result<(RelationId, String)> {
    let corrupt = |reason: &str| DbError::Corrupt {
        what: format!("catalog row {tid}"),
        reason: reason.to_string(),
    };
    if bytes.len() < 5 || bytes.len() > 4 + MAX_NAME_LEN {
        return Err(corrupt("row length out of range").into());
    }
    let mut id = [0u8; 4];
    id.copy_from_slice(&bytes[..4]);
    let id = RelationId(u32::from_le_bytes(id));
    let name = std::str::from_utf8(&bytes[4..]).map_err(|_| corrupt("name is not UTF-8"))?;
    if id == CATALOG_ID {
        return Err(corrupt("row names relation 0").into());
    }
    Ok((id, name.to_string()))
}

#[derive(Default)]
struct Maps {
    by_id: HashMap<RelationId, Arc<Relation>>,
    by_name: BTreeMap<String, RelationId>,
}

/// The relations of an open database, by id and by name.
pub(crate) struct Catalog {
    maps: RwLock<Maps>,
    next_id: AtomicU32,
    /// Serializes create and drop.
    pub ddl: Mutex<()>,
}

impl Catalog {
    pub(crate) fn new(next_id: u32) -> Catalog {
        Catalog {
            maps: RwLock::new(Maps::default()),
            next_id: AtomicU32::new(next_id.max(1)),
            ddl: Mutex::new(()),
        }
    }

    /// Adds a relation.
    pub(crate) fn insert(&self, rel: Arc<Relation>) {
        let mut m = self.maps.write();
        self.next_id.fetch_max(rel.id.0 + 1, Ordering::AcqRel);
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

    /// Takes the next id.
    pub(crate) fn allocate_id(&self) -> Result<RelationId> {
        let id = self.next_id.fetch_add(1, Ordering::AcqRel);
        if id == u32::MAX {
            return Err(DbError::Config("relation ids are exhausted".into()).into());
        }
        Ok(RelationId(id))
    }
}

/// Opens relation `id`'s existing heap file, registers it with the buffer
/// pool and returns its length in whole pages.
pub(crate) fn open_file(store: &Store, dir: &Path, id: RelationId) -> Result<u32> {
    let path = heap_path(dir, id);
    let opts = OpenOptions::new(FileClass::Data).write(true);
    let f = store.io.open(&path, opts).wait()?;
    let size = store.io.size(f).wait()?;
    store.pool.register_file(FileId(id.0), f)?;
    Ok(u32::try_from(size / PAGE_SIZE as u64).unwrap_or(u32::MAX))
}

/// Creates relation `id`'s heap file (empty), makes its name durable and
/// registers it with the buffer pool. An existing file is opened instead.
pub(crate) fn create_file(store: &Store, dir: &Path, id: RelationId) -> Result<u32> {
    let path = heap_path(dir, id);
    let opts = OpenOptions::new(FileClass::Data).write(true).create(true);
    let f = store.io.open(&path, opts).wait()?;
    store.io.close(f).wait()?;
    store.io.sync_dir(&rel_dir(dir)).wait()?;
    open_file(store, dir, id)
}

/// How long [`remove_files`] waits for the buffer pool to let go of a
/// file's pages (a background write or read-ahead pins them for the length
/// of one I/O; a transaction cannot, as the dropper holds the relation
/// exclusively).
const UNREGISTER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Unregisters relation `id`'s file and removes it and its FSM file. A file
/// whose pages stay pinned is an error naming it, never removed from under
/// its users.
pub(crate) fn remove_files(store: &Store, dir: &Path, id: RelationId) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        match store.pool.unregister_file(FileId(id.0)) {
            Ok(f) => {
                store.io.close(f).wait()?;
                break;
            }
            Err(BufferError::UnknownFile { .. }) => break,
            Err(BufferError::FileBusy { .. }) if started.elapsed() < UNREGISTER_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
    for path in [heap_path(dir, id), fsm_path(dir, id)] {
        match store.io.remove(&path).wait() {
            Ok(()) => {}
            Err(keel_io::IoError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    store.io.sync_dir(&rel_dir(dir)).wait()?;
    Ok(())
}

/// The heap files present in the data directory, by relation id.
///
/// Every name is untrusted (invariant 9): a name that parses as a
/// relation's file but is not the one Keel writes (`00001.heap` beside
/// `1.heap`) is refused, naming both paths, rather than read as a second
/// file of the same relation.
pub(crate) fn list_files(store: &Store, dir: &Path) -> Result<Vec<RelationId>> {
    let names = rel_dir_names(store, dir)?;
    for name in &names {
        if let Some(id) = any_file_id(name) {
            check_canonical(dir, name, id)?;
        }
    }
    let mut ids: Vec<RelationId> = names.iter().filter_map(|n| heap_file_id(n)).collect();
    ids.sort();
    Ok(ids)
}

/// Refuses a file name in `rel/` that belongs to relation `id` but is not
/// spelled as Keel spells it (no leading zeros).
fn check_canonical(dir: &Path, name: &str, id: RelationId) -> Result<()> {
    let number = name.split('.').next().unwrap_or_default();
    if number == id.0.to_string() {
        return Ok(());
    }
    let canonical = format!("{}{}", id.0, &name[number.len()..]);
    Err(DbError::Corrupt {
        what: format!("relation file {}", rel_dir(dir).join(name).display()),
        reason: format!(
            "not a name Keel writes: it would be relation {id}'s file, whose name is {}",
            rel_dir(dir).join(canonical).display()
        ),
    }
    .into())
}

/// The names of the entries of `rel/`.
pub(crate) fn rel_dir_names(store: &Store, dir: &Path) -> Result<Vec<String>> {
    Ok(store
        .io
        .read_dir(&rel_dir(dir))
        .wait()?
        .iter()
        .filter_map(|e| e.name.to_str().map(str::to_string))
        .collect())
}

/// The relation id a file name in `rel/` belongs to (`<n>.heap`,
/// `<n>.fsm`, `<n>.fsm.tmp`), if it is one.
pub(crate) fn any_file_id(name: &str) -> Option<RelationId> {
    let n = name.split('.').next()?;
    let ext = &name[n.len()..];
    if !matches!(ext, ".heap" | ".fsm" | ".fsm.tmp") {
        return None;
    }
    heap_file_id(&format!("{n}.heap"))
}

/// The highest relation id any file in `rel/` belongs to.
pub(crate) fn highest_file_id(store: &Store, dir: &Path) -> Result<Option<RelationId>> {
    Ok(rel_dir_names(store, dir)?
        .iter()
        .filter_map(|n| any_file_id(n))
        .max())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{PageId, SlotId};

    #[test]
    fn rows_round_trip_and_bad_rows_are_refused() {
        let tid = TupleId::new(PageId(0), SlotId(3));
        let row = encode_row(RelationId(7), "accounts");
        assert_eq!(
            decode_row(tid, &row).unwrap(),
            (RelationId(7), "accounts".to_string())
        );
        assert!(decode_row(tid, &row[..4]).is_err());
        assert!(decode_row(tid, &encode_row(RelationId(0), "x")).is_err());
        let mut bad = row.clone();
        bad[5] = 0xff;
        let e = decode_row(tid, &bad).unwrap_err().to_string();
        assert!(e.contains("catalog row 0.3"), "{e}");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("accounts").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(256)).is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(CATALOG_NAME).is_err());
    }

    #[test]
    fn heap_file_names_parse() {
        assert_eq!(heap_file_id("12.heap"), Some(RelationId(12)));
        assert_eq!(heap_file_id("12.fsm"), None);
        assert_eq!(heap_file_id("x.heap"), None);
        assert_eq!(heap_file_id(".heap"), None);
        assert_eq!(any_file_id("12.fsm"), Some(RelationId(12)));
        assert_eq!(any_file_id("12.fsm.tmp"), Some(RelationId(12)));
        assert_eq!(any_file_id("12.heap"), Some(RelationId(12)));
        assert_eq!(any_file_id("12.txt"), None);
        assert_eq!(any_file_id("LOCK"), None);
    }
}
