//! The buffer pool's errors.

use std::sync::Arc;

use keel_io::IoError;
use thiserror::Error;

use super::{FileId, WalFlushError};
use crate::error::class::ErrorClass;
use crate::page::PageError;
use crate::types::{Lsn, PageId};

/// Errors of the buffer pool (`buffer/`).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BufferError {
    /// A page read from disk failed verification (checksum, identity or
    /// structure; invariants 2 and 9). It was not returned as data.
    #[error("file {file}, page {page}: page read from disk is corrupt")]
    PageCorrupt {
        /// The file read.
        file: FileId,
        /// The page read.
        page: PageId,
        /// What verification found.
        #[source]
        source: PageError,
    },
    /// The page lies (wholly or partly) past the end of its file.
    #[error("file {file}, page {page}: page is beyond the end of the file")]
    PageBeyondEof {
        /// The file read.
        file: FileId,
        /// The page asked for.
        page: PageId,
    },
    /// Every frame is pinned: no page can be brought in. Release guards (or
    /// configure a larger pool) and retry.
    #[error("all {frames} buffer frames are pinned")]
    AllFramesPinned {
        /// Number of frames in the pool.
        frames: usize,
    },
    /// Reading or writing a page failed.
    #[error("file {file}, page {page}: {op} failed")]
    Io {
        /// "read" or "write".
        op: &'static str,
        /// The file.
        file: FileId,
        /// The page.
        page: PageId,
        /// The I/O error.
        #[source]
        source: IoError,
    },
    /// fdatasync of a data file failed, or the writeback a flush started
    /// ahead of it; the pool is poisoned (invariant 7).
    #[error("file {file}: syncing its writes failed; the buffer pool is poisoned")]
    Sync {
        /// The file.
        file: FileId,
        /// The I/O error.
        #[source]
        source: IoError,
    },
    /// The WAL could not be made durable through a page's LSN, so the page
    /// was not written (invariant 4).
    #[error("WAL flush through {lsn} failed; the page was not written")]
    WalFlush {
        /// The page LSN the flush was for.
        lsn: Lsn,
        /// The log's error.
        #[source]
        source: WalFlushError,
    },
    /// The page images a torn write would be repaired from could not be
    /// made durable, so no page was written (invariant 5); the pool is
    /// poisoned.
    #[error("syncing the page images before a page write failed")]
    PageImages {
        /// The images store's error.
        #[source]
        source: WalFlushError,
    },
    /// An fdatasync failed, or a page holds a change the log refused; no
    /// page is written any more (invariants 4, 7).
    #[error("the buffer pool is poisoned ({cause})")]
    Poisoned {
        /// The first failure, which poisoned the pool.
        #[source]
        cause: Arc<BufferError>,
    },
    /// A latched page was changed and the log then refused the change's
    /// record: the frame holds what no record describes, so no page may be
    /// written from the pool again (invariant 4).
    #[error("file {file}, page {page} holds a change the log refused ({reason})")]
    Unlogged {
        /// The file.
        file: FileId,
        /// The page.
        page: PageId,
        /// Why the log refused it.
        reason: String,
    },
    /// The file id was never registered (or was unregistered).
    #[error("file {file} is not registered with the buffer pool")]
    UnknownFile {
        /// The file id.
        file: FileId,
    },
    /// The file id is already registered.
    #[error("file {file} is already registered with the buffer pool")]
    FileRegistered {
        /// The file id.
        file: FileId,
    },
    /// A page of the file is pinned, loading or being written.
    #[error("file {file} has pages in use")]
    FileBusy {
        /// The file id.
        file: FileId,
    },
    /// `new_page` for a page that is already in the pool.
    #[error("file {file}, page {page}: new_page of a page already in the buffer pool")]
    AlreadyCached {
        /// The file.
        file: FileId,
        /// The page.
        page: PageId,
    },
    /// The background writer thread could not be started.
    #[error("cannot start the buffer pool's background writer")]
    WriterThread {
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is invalid.
    #[error("invalid buffer pool configuration: {0}")]
    Config(String),
}

impl BufferError {
    /// Classifies the error for the caller.
    pub fn class(&self) -> ErrorClass {
        match self {
            BufferError::PageCorrupt { .. } => ErrorClass::Corruption,
            BufferError::AllFramesPinned { .. } | BufferError::FileBusy { .. } => {
                ErrorClass::Transient
            }
            BufferError::Io { source, .. } if source.is_transient() => ErrorClass::Transient,
            BufferError::Io { .. }
            | BufferError::Sync { .. }
            | BufferError::WalFlush { .. }
            | BufferError::PageImages { .. }
            | BufferError::Poisoned { .. }
            | BufferError::Unlogged { .. }
            | BufferError::WriterThread { .. } => ErrorClass::Fatal,
            BufferError::PageBeyondEof { .. }
            | BufferError::UnknownFile { .. }
            | BufferError::FileRegistered { .. }
            | BufferError::AlreadyCached { .. }
            | BufferError::Config(_) => ErrorClass::Usage,
        }
    }
}
