//! Creating, opening, listing and removing relation files (the names are
//! [`super::layout`]'s). Creation and removal make the change to `rel/`
//! durable (a directory fsync) before they return; the create and drop
//! protocols that decide when they run are [`crate::ddl`] and
//! [`crate::recovery::ddl`].

use std::path::Path;

use keel_io::{FileClass, OpenOptions};

use super::layout::{RelFile, check_canonical, fsm_path, heap_path, rel_dir, rel_file};
use crate::buffer::{BufferError, FileId};
use crate::error::{DbError, Result};
use crate::heap::catalog::below_id_limit;
use crate::page::PAGE_SIZE;
use crate::storage::Storage;
use crate::types::RelationId;

/// Opens relation `id`'s existing heap file, registers it with the buffer
/// pool and returns its length in whole pages.
pub(crate) fn open_file(store: &Storage, dir: &Path, id: RelationId) -> Result<u32> {
    let path = heap_path(dir, id);
    let opts = OpenOptions::new(FileClass::Data).write(true);
    let f = store.io.open(&path, opts).wait()?;
    let size = match store.io.size(f).wait() {
        Ok(size) => size,
        Err(e) => {
            let _ = store.io.close(f).wait();
            return Err(e.into());
        }
    };
    // Page ids are below `NO_PAGE` (u32::MAX): a longer file was not
    // written by Keel (a sparse or damaged one).
    let pages = match u32::try_from(size / PAGE_SIZE as u64) {
        Ok(pages) if pages < crate::page::NO_PAGE => pages,
        _ => {
            let _ = store.io.close(f).wait();
            return Err(DbError::Corrupt {
                what: format!("relation file {}", path.display()),
                reason: format!(
                    "{size} bytes: more pages than page ids can name ({})",
                    crate::page::NO_PAGE
                ),
            }
            .into());
        }
    };
    store.pool.register_file(FileId(id.0), f)?;
    Ok(pages)
}

/// Creates relation `id`'s heap file (empty) and registers it with the
/// buffer pool ([`make_file`], then [`open_file`]); returns its length in
/// pages (0).
pub(crate) fn create_file(store: &Storage, dir: &Path, id: RelationId) -> Result<u32> {
    make_file(store, dir, id)?;
    open_file(store, dir, id)
}

/// Makes relation `id`'s heap file, empty, and its name durable. A file
/// that exists already is never opened or adopted: the call is refused
/// with [`DbError::RelationFileExists`] and the file left as it is (the
/// open is exclusive, so nothing is made then). An error after the
/// exclusive open (closing, syncing `rel/`) leaves the file made.
pub(crate) fn make_file(store: &Storage, dir: &Path, id: RelationId) -> Result<()> {
    let path = heap_path(dir, id);
    let opts = OpenOptions::new(FileClass::Data)
        .write(true)
        .create_new(true);
    let f = match store.io.open(&path, opts).wait() {
        Ok(f) => f,
        Err(keel_io::IoError::AlreadyExists { .. }) => {
            return Err(DbError::RelationFileExists { relation: id, path }.into());
        }
        Err(e) => return Err(e.into()),
    };
    store.io.close(f).wait()?;
    store.io.sync_dir(&rel_dir(dir)).wait()?;
    Ok(())
}

/// How long [`remove_files`] waits for the buffer pool to let go of a
/// file's pages (a background write or read-ahead pins them for the length
/// of one I/O; a transaction cannot, as the dropper holds the relation
/// exclusively).
const UNREGISTER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Unregisters relation `id`'s file and removes it and its FSM file. A file
/// whose pages stay pinned is an error naming it, never removed from under
/// its users.
pub(crate) fn remove_files(store: &Storage, dir: &Path, id: RelationId) -> Result<()> {
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
    // A map a checkpoint was writing when the process died is its too.
    let leftover = RelFile::FsmTmp.path(dir, id);
    for path in [heap_path(dir, id), fsm_path(dir, id), leftover] {
        match store.io.remove(&path).wait() {
            Ok(()) => {}
            Err(keel_io::IoError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    store.io.sync_dir(&rel_dir(dir)).wait()?;
    Ok(())
}

/// Refuses relation `id` for a new relation when a file of it (heap or
/// free space map) is in `rel/` already: [`DbError::RelationFileExists`].
/// A create checks this before it logs anything, so that neither its
/// rollback nor recovery ever takes such a file for one it made.
pub(crate) fn check_unused(store: &Storage, dir: &Path, id: RelationId) -> Result<()> {
    let names = rel_dir_names(store, dir)?;
    for (file, path) in [
        (RelFile::Heap, heap_path(dir, id)),
        (RelFile::Fsm, fsm_path(dir, id)),
    ] {
        if names.iter().any(|n| *n == file.name(id)) {
            return Err(DbError::RelationFileExists { relation: id, path }.into());
        }
    }
    Ok(())
}

/// The heap files present in the data directory, by relation id.
///
/// Every name is untrusted (invariant 9): a name that parses as a
/// relation's file but is not the one Keel writes (`00001.heap` beside
/// `1.heap`) is refused, naming both paths, rather than read as a second
/// file of the same relation ([`check_canonical`]).
pub(crate) fn list_files(store: &Storage, dir: &Path) -> Result<Vec<RelationId>> {
    let names = rel_dir_names(store, dir)?;
    let mut ids = Vec::new();
    for name in &names {
        check_canonical(dir, name)?;
        if let Some((id, RelFile::Heap)) = rel_file(name) {
            ids.push(id);
        }
    }
    ids.sort();
    Ok(ids)
}

/// The names of the entries of `rel/`.
pub(crate) fn rel_dir_names(store: &Storage, dir: &Path) -> Result<Vec<String>> {
    Ok(store
        .io
        .read_dir(&rel_dir(dir))
        .wait()?
        .iter()
        .filter_map(|e| e.name.to_str().map(str::to_string))
        .collect())
}

/// The highest relation id below the limit
/// ([`RELATION_ID_LIMIT`](crate::heap::catalog::RELATION_ID_LIMIT)) that
/// any file in `rel/` belongs to. A file at or above the limit was not
/// made by Keel: it does not move the next id (which would then say that
/// every id is used) and, as no catalog row names it, it is kept as an
/// orphan.
pub(crate) fn highest_file_id(store: &Storage, dir: &Path) -> Result<Option<RelationId>> {
    Ok(rel_dir_names(store, dir)?
        .iter()
        .filter_map(|n| rel_file(n).map(|(id, _)| id))
        .filter(|&id| below_id_limit(id))
        .max())
}
