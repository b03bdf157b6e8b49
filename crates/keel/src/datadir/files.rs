//! Creating, opening, listing and removing relation files (the names are
//! [`super::layout`]'s). Creation and removal make the change to `rel/`
//! durable (a directory fsync) before they return; the create and drop
//! protocols that decide when they run are [`crate::ddl`] and
//! [`crate::recovery::ddl`].

use std::path::Path;

use keel_io::{FileClass, OpenOptions};

use super::layout::{RelFile, check_canonical, fsm_path, heap_path, rel_dir, rel_file};
use crate::buffer::{BufferError, FileId};
use crate::error::Result;
use crate::page::PAGE_SIZE;
use crate::storage::Storage;
use crate::types::RelationId;

/// Opens relation `id`'s existing heap file, registers it with the buffer
/// pool and returns its length in whole pages.
pub(crate) fn open_file(store: &Storage, dir: &Path, id: RelationId) -> Result<u32> {
    let path = heap_path(dir, id);
    let opts = OpenOptions::new(FileClass::Data).write(true);
    let f = store.io.open(&path, opts).wait()?;
    let size = store.io.size(f).wait()?;
    store.pool.register_file(FileId(id.0), f)?;
    Ok(u32::try_from(size / PAGE_SIZE as u64).unwrap_or(u32::MAX))
}

/// Creates relation `id`'s heap file (empty), makes its name durable and
/// registers it with the buffer pool. An existing file is opened instead.
pub(crate) fn create_file(store: &Storage, dir: &Path, id: RelationId) -> Result<u32> {
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

/// The highest relation id any file in `rel/` belongs to.
pub(crate) fn highest_file_id(store: &Storage, dir: &Path) -> Result<Option<RelationId>> {
    Ok(rel_dir_names(store, dir)?
        .iter()
        .filter_map(|n| rel_file(n).map(|(id, _)| id))
        .max())
}
