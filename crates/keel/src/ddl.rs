//! Creating and dropping relations on a running database: the live half of
//! the create and drop protocol whose recovery half is
//! [`crate::recovery::ddl`] (invariant 13: a DDL change reaches the files
//! only once its commit is durable).
//!
//! Each runs as a system transaction ([`system_txn`]) that commits durably
//! whatever the commit policy. Creates and drops are serialized by the
//! catalog's DDL lock; a drop also takes an exclusive relation lock, so it
//! waits for the transactions using the relation.

use std::sync::Arc;

use crate::datadir::files::{check_unused, make_file, open_file, remove_files};
use crate::engine::Engine;
use crate::error::{DbError, Result};
use crate::fsm::FreeSpaceMap;
use crate::heap::catalog::{CATALOG_ID, check_name, encode_row};
use crate::heap::{Relation, RelationKind};
use crate::lock::{LockMode, LockTarget};
use crate::txn::transaction::system_txn;
use crate::types::RelationId;
use crate::wal::Payload;

/// Creates relation `name` of `kind`. `relation-create` is durable before
/// the file exists, so recovery can place every file a create leaves
/// (removed unless the create committed). A tree's meta page and empty root
/// leaf are formatted in the same transaction (redo-only records: an
/// aborted create's file is removed whole).
///
/// The id is one no relation had (ids are never reused, and the counter
/// never passes [`RELATION_ID_LIMIT`](crate::heap::catalog::RELATION_ID_LIMIT)).
/// A file of it already in `rel/` refuses the create before anything is
/// logged, and is left as it is. A create that fails removes only the file
/// it made itself: never the catalog's, never one of an id the catalog
/// knows.
pub(crate) fn create_relation(
    engine: &Engine,
    name: &str,
    kind: RelationKind,
) -> Result<RelationId> {
    let _ddl = engine.catalog.ddl.lock();
    check_name(name)?;
    if engine.catalog.by_name(name).is_some() {
        return Err(DbError::RelationExists(name.to_string()).into());
    }
    let id = engine.catalog.allocate_id()?;
    let store = &engine.store;
    check_unused(store, &engine.dir, id)?;
    let cat = engine.user_or_catalog(CATALOG_ID)?;
    // Set once this create has made the file: only then is it this
    // create's to remove.
    let made = std::cell::Cell::new(false);
    let created = system_txn(
        engine,
        |_, log| {
            let create = Payload::RelationCreate {
                relation: id,
                name: name.to_string(),
            };
            // Checkpoints are held off from the record to the file, as
            // for a drop: one between the two would move the redo start
            // past the record while the file is not there, and a base
            // backup listing the files after it would hold neither the
            // file nor a record that makes it.
            let held = engine.checkpoint_lock.lock();
            let rec = store.log_txn(log, &create)?;
            store.wal.flush(rec.lsn)?;
            make_file(store, &engine.dir, id)?;
            made.set(true);
            drop(held);
            let pages = open_file(store, &engine.dir, id)?;
            let pages = match kind {
                RelationKind::Heap => pages,
                RelationKind::Tree => {
                    let fresh =
                        Relation::new(id, name.into(), pages, FreeSpaceMap::new(), None, kind);
                    store.format_tree(&fresh)?;
                    fresh.page_count()
                }
            };
            let tid = store.insert(log, &cat, &encode_row(id, name, kind))?;
            Ok((tid, pages))
        },
        |_| Ok(()),
    );
    match created {
        Ok((tid, pages)) => {
            let rel = Relation::new(
                id,
                name.to_string(),
                pages,
                FreeSpaceMap::new(),
                Some(tid),
                kind,
            );
            engine.catalog.insert(Arc::new(rel));
            Ok(id)
        }
        Err(e) => {
            // Rolled back on a usable database: the create is known
            // aborted, the file it made goes. On a poisoned one, whether
            // its commit became durable is unknown: the file stays for
            // recovery to settle (`recovery::ddl`).
            if made.get()
                && id != CATALOG_ID
                && engine.catalog.get(id).is_none()
                && engine.check_usable().is_ok()
                && let Err(r) = remove_files(store, &engine.dir, id)
            {
                let _ = engine.note(r);
            }
            Err(e)
        }
    }
}

/// Drops relation `name` (which must be of `kind`, when given): an exclusive relation lock (waiting for running
/// users), then `relation-drop` and the catalog row's delete committed
/// durably, then the files removed; checkpoints are held off from the
/// commit to the removal.
pub(crate) fn drop_relation(engine: &Engine, name: &str, kind: Option<RelationKind>) -> Result<()> {
    let rel = engine.named(name)?;
    // The kind is checked on the relation this drop then locks and
    // removes (one dropped and made again under the name meanwhile is
    // refused below), never on a separate lookup.
    if let Some(kind) = kind {
        rel.expect(kind)?;
    }
    let cat = engine.user_or_catalog(CATALOG_ID)?;
    let store = &engine.store;
    system_txn(
        engine,
        |txn, log| {
            store
                .locks
                .lock(txn, LockTarget::Relation(rel.id), LockMode::Exclusive, true)?;
            let ddl = engine.catalog.ddl.lock();
            // Dropped by someone else while this waited for the lock.
            let current = engine.catalog.get(rel.id).filter(|r| Arc::ptr_eq(r, &rel));
            let Some(tid) = current.and_then(|r| r.catalog_tid) else {
                return Err(DbError::NoSuchRelation(name.to_string()).into());
            };
            let held = engine.checkpoint_lock.lock();
            store.log_txn(log, &Payload::RelationDrop { relation: rel.id })?;
            store.delete(log, &cat, tid)?;
            Ok((ddl, held))
        },
        |_| {
            // Committed: no transaction finds it any more, and one that
            // waited for its lock sees it gone (`Transaction::still_there`).
            engine.catalog.remove(rel.id);
            remove_files(store, &engine.dir, rel.id)
        },
    )
    .map(|_| ())
}
