//! What recovery does about relation files: the DDL half of recovery.
//!
//! ## The create and drop protocols (docs/storage.md, "Relations and the heap")
//!
//! **Create.** (1) The relation's id is taken from the catalog's counter;
//! ids are never handed out twice, not even across a crash (see below). A
//! file of that id already in `rel/` refuses the create before anything is
//! logged (so no `relation-create` record ever claims a file the create did
//! not make), and the heap file is made exclusively.
//! (2) A system transaction logs `relation-create` and flushes the log up
//! to it, so the record is durable before the file exists. (3) The empty
//! heap file is created and `rel/` synced. (4) The catalog row is inserted
//! and the transaction commits durably. A crash before the commit is
//! durable leaves the file of an *uncommitted create*: recovery sees the
//! `relation-create` record of a loser or aborted transaction and removes
//! the file (it never held committed data). A file whose create no record
//! in the scanned log explains is an orphan: kept and reported.
//!
//! **Drop.** (1) The dropper waits for an exclusive relation lock (running
//! users finish first; lock timeout and deadlock detection apply). (2) A
//! system transaction logs `relation-drop` and deletes the catalog row, and
//! commits durably. (3) Only then are the relation's files removed and
//! `rel/` synced. Checkpoints are held off from (2) to (3), so the
//! `relation-drop` record and its commit are always in the log recovery
//! reads while the files may still exist. A crash before the commit is
//! durable undoes the drop (undo restores the catalog row; the files were
//! never touched); a crash after it leaves a *drop known committed*, which
//! recovery completes by removing the files once redo and undo are done.
//!
//! ## Rules recovery follows (invariant 13)
//!
//! - Redo never removes a relation file. Redo of `relation-create` makes an
//!   empty file when there is none (every page of the relation is formatted
//!   by a later record, so redo rebuilds it). A record of a relation
//!   without a file (its create lies before the redo start) is skipped only
//!   when the log holds a committed drop of that relation (its files were
//!   removed before the crash) or an uncommitted create of it; otherwise
//!   recovery fails, naming the relation and the LSN.
//! - After undo, drops known committed are completed.
//! - A file no catalog row names is removed only when its create is known
//!   uncommitted; any other is kept and listed in
//!   [`RecoveryReport::orphan_files`](super::RecoveryReport::orphan_files).
//! - The next relation id is past the control file's counter, every id a
//!   `relation-create` record names and every relation file on disk whose
//!   id is below [`RELATION_ID_LIMIT`](crate::heap::catalog::RELATION_ID_LIMIT).
//!   A file at or above the limit was not made by Keel: it is an orphan
//!   like any other file no row names, and does not move the counter
//!   (which stops at the limit, meaning that every id is used).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::buffer::FileId;
use crate::datadir::files::{rel_dir_names, remove_files};
use crate::datadir::layout::{RelFile, fsm_path, heap_path};
use crate::error::{DbError, Result};
use crate::heap::Relation;
use crate::storage::Storage;
use crate::types::{Lsn, RelationId, TxnId};
use crate::wal::Payload;

/// What the log says about creates and drops (analysis) and which relations
/// redo found without a file.
#[derive(Default)]
pub(crate) struct DdlLog {
    /// Creates and drops of transactions not ended yet: `true` for a drop.
    open: FxHashMap<TxnId, Vec<(bool, RelationId)>>,
    /// Relations whose drop committed.
    pub committed_drops: FxHashSet<RelationId>,
    /// Relations whose create's transaction aborted or is a loser.
    pub uncommitted_creates: FxHashSet<RelationId>,
    /// Relations a record named (at this LSN, the first) without a file.
    missing: BTreeMap<RelationId, Lsn>,
    /// Highest relation id a `relation-create` record names.
    pub max_created: Option<RelationId>,
}

impl DdlLog {
    /// Analysis of one record of transaction `txn`.
    pub(crate) fn analyse(&mut self, txn: TxnId, payload: &Payload) {
        match payload {
            Payload::RelationCreate { relation, .. } => {
                self.max_created = self.max_created.max(Some(*relation));
                self.open.entry(txn).or_default().push((false, *relation));
            }
            Payload::RelationDrop { relation } => {
                self.open.entry(txn).or_default().push((true, *relation));
            }
            Payload::Commit { .. } => {
                for (drop, rel) in self.open.remove(&txn).unwrap_or_default() {
                    if drop {
                        self.committed_drops.insert(rel);
                    }
                }
            }
            Payload::Abort => self.aborted(txn),
            _ => {}
        }
    }

    /// Transaction `txn` ended without committing (an abort record, or a
    /// loser rolled back by recovery): its creates never happened.
    pub(crate) fn aborted(&mut self, txn: TxnId) {
        for (drop, rel) in self.open.remove(&txn).unwrap_or_default() {
            if !drop {
                self.uncommitted_creates.insert(rel);
            }
        }
    }

    /// Notes that the record at `lsn` names relation `rel`, which has no
    /// file.
    pub(crate) fn missing(&mut self, rel: RelationId, lsn: Lsn) {
        self.missing.entry(rel).or_insert(lsn);
    }

    /// After undo (every loser ended): checks that each relation redo found
    /// without a file is accounted for, then completes the drops known
    /// committed. Returns the relations whose files it removed.
    pub(crate) fn finish(
        &mut self,
        store: &Storage,
        dir: &Path,
        rels: &mut HashMap<RelationId, Arc<Relation>>,
    ) -> Result<Vec<RelationId>> {
        let losers: Vec<TxnId> = self.open.keys().copied().collect();
        for txn in losers {
            self.aborted(txn);
        }
        for (&rel, &lsn) in &self.missing {
            if !self.committed_drops.contains(&rel) && !self.uncommitted_creates.contains(&rel) {
                return Err(DbError::Recovery {
                    lsn,
                    reason: format!(
                        "relation {rel} has no file ({}), and the log holds no committed \
                         drop of it",
                        heap_path(dir, rel).display()
                    ),
                }
                .into());
            }
        }
        let mut dropped: Vec<RelationId> = self.committed_drops.iter().copied().collect();
        dropped.sort_unstable();
        for &rel in &dropped {
            rels.remove(&rel);
            remove_files(store, dir, rel)?;
        }
        Ok(dropped)
    }
}

/// Settles the relation files no catalog row names, after recovery: a
/// file whose create is known uncommitted is removed; any other is kept,
/// closed, and returned (its heap and FSM paths, when present) as an orphan
/// (invariant 13: nothing is removed on a guess). Returns the orphans and
/// the relations whose files were removed.
pub(crate) fn settle_unnamed(
    store: &Storage,
    dir: &Path,
    unnamed: impl IntoIterator<Item = RelationId>,
    uncommitted_creates: &FxHashSet<RelationId>,
) -> Result<(Vec<PathBuf>, Vec<RelationId>)> {
    let mut orphans = Vec::new();
    let mut removed = Vec::new();
    let names = rel_dir_names(store, dir)?;
    let mut unnamed: Vec<RelationId> = unnamed.into_iter().collect();
    unnamed.sort_unstable();
    for id in unnamed {
        if uncommitted_creates.contains(&id) {
            remove_files(store, dir, id)?;
            removed.push(id);
            continue;
        }
        if let Ok(f) = store.pool.unregister_file(FileId(id.0)) {
            store.io.close(f).wait()?;
        }
        orphans.push(heap_path(dir, id));
        if names.iter().any(|n| *n == RelFile::Fsm.name(id)) {
            orphans.push(fsm_path(dir, id));
        }
    }
    Ok((orphans, removed))
}

/// Refuses relation files shorter than what the database knows of them: a
/// heap file with fewer pages than its saved free space map covers lost
/// pages (a checkpoint saves a map only over pages already durable in the
/// heap file, and heap files never shrink). Checked before recovery
/// changes anything, so nothing is rebuilt or removed on that evidence.
pub(crate) fn check_file_lengths(
    store: &Storage,
    dir: &Path,
    rels: &HashMap<RelationId, Arc<Relation>>,
) -> Result<()> {
    let mut ids: Vec<&RelationId> = rels.keys().collect();
    ids.sort_unstable();
    for &id in ids {
        let pages = rels[&id].page_count();
        if let Some(covered) = super::checkpoint::saved_fsm_coverage(store, dir, id)
            && covered > pages
        {
            return Err(DbError::Corrupt {
                what: format!("relation file {}", heap_path(dir, id).display()),
                reason: format!(
                    "it has {pages} pages but its saved free space map ({}) covers {covered}: \
                     pages {pages}..{covered} are missing (the file was truncated)",
                    fsm_path(dir, id).display()
                ),
            }
            .into());
        }
    }
    Ok(())
}
