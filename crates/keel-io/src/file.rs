//! The open-file table shared by the thread-pool and io_uring backends.
//!
//! A [`FileTable`] maps handle numbers to `Arc<FileEntry>`. A request looks
//! its handle up once, at submission, and keeps the `Arc` until it completes:
//! closing a handle removes it from the table immediately (later requests get
//! `BadHandle`) while requests already in flight keep the descriptor open
//! until they finish. The descriptor is closed when the last `Arc` drops.
//!
//! Invariant: handle numbers are never reused (a 64-bit counter). The
//! table is looked up on every request, so it hashes with Fx: handle
//! numbers are Keel's own counter, never chosen by an outsider, and
//! SipHash's resistance to chosen keys would buy nothing here.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap as HashMap;

use crate::error::{FileRef, IoError};
use crate::order::SyncOrder;
use crate::request::{FileClass, FileHandle, OpKind};

/// One open file. `H` is what the backend parks in the sync order.
pub(crate) struct FileEntry<H> {
    pub(crate) handle: FileHandle,
    pub(crate) file: File,
    pub(crate) path: Arc<Path>,
    pub(crate) class: FileClass,
    pub(crate) direct: bool,
    pub(crate) order: Mutex<SyncOrder<H>>,
}

impl<H> FileEntry<H> {
    pub(crate) fn file_ref(&self) -> FileRef {
        FileRef::both(self.handle, Arc::clone(&self.path))
    }
}

pub(crate) struct FileTable<H> {
    next: AtomicU64,
    map: RwLock<HashMap<u64, Arc<FileEntry<H>>>>,
}

impl<H> FileTable<H> {
    pub(crate) fn new() -> FileTable<H> {
        FileTable {
            next: AtomicU64::new(1),
            map: RwLock::new(HashMap::default()),
        }
    }

    pub(crate) fn insert(
        &self,
        file: File,
        path: &Path,
        class: FileClass,
        direct: bool,
    ) -> FileHandle {
        let handle = FileHandle::from_raw(self.next.fetch_add(1, Ordering::Relaxed));
        let entry = FileEntry {
            handle,
            file,
            path: Arc::from(path),
            class,
            direct,
            order: Mutex::new(SyncOrder::default()),
        };
        self.map.write().insert(handle.raw(), Arc::new(entry));
        handle
    }

    pub(crate) fn get(&self, handle: FileHandle, op: OpKind) -> Result<Arc<FileEntry<H>>, IoError> {
        self.map
            .read()
            .get(&handle.raw())
            .cloned()
            .ok_or(IoError::BadHandle { op, handle })
    }

    pub(crate) fn remove(&self, handle: FileHandle) -> Result<(), IoError> {
        match self.map.write().remove(&handle.raw()) {
            Some(_) => Ok(()),
            None => Err(IoError::BadHandle {
                op: OpKind::Close,
                handle,
            }),
        }
    }

    /// Forgets every handle (at shutdown).
    pub(crate) fn clear(&self) {
        self.map.write().clear();
    }
}
