//! The one error type of the I/O layer.
//!
//! Every failure a backend can report is a variant of [`IoError`]. A variant
//! says *what kind* of failure it is; its fields say *which operation* ran
//! ([`OpKind`]) and *on which file* ([`FileRef`]: a handle, a path, or both),
//! so a message read in a log names what and where without a backtrace.
//!
//! Invariants:
//! - When the operating system reported the failure, its `std::io::Error` is
//!   kept as the [`std::error::Error::source`]. Classification is done once,
//!   from the OS error number ([`IoError::from_os`]), never from error text.
//! - [`IoError::class`] sorts every variant into [`ErrorClass::Transient`]
//!   (retrying the same request may succeed), [`ErrorClass::Fatal`] (the state
//!   of the file is in doubt: EIO, ENOSPC, a failed fsync, a cancelled request)
//!   or [`ErrorClass::Usage`] (the request itself was wrong for the current
//!   state: a bad handle, a missing file, a misaligned O_DIRECT buffer).
//!
//! Left out: policy. Whether an fsync failure poisons the engine
//! (ARCHITECTURE.md invariant 7) is decided by the layers above; this module
//! only makes such failures easy to recognise ([`IoError::is_sync_failure`]).

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::request::{FileHandle, OpKind};

/// The file an operation was about: its handle, its path, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileRef {
    /// The handle the request named, if it named one.
    pub handle: Option<FileHandle>,
    /// The path, when known (for handles: the path the file was opened with).
    pub path: Option<Arc<Path>>,
}

impl FileRef {
    /// A reference to a file known only by its path.
    pub fn path(path: &Path) -> FileRef {
        FileRef {
            handle: None,
            path: Some(Arc::from(path)),
        }
    }

    /// A reference to a file known only by its handle.
    pub fn handle(handle: FileHandle) -> FileRef {
        FileRef {
            handle: Some(handle),
            path: None,
        }
    }

    /// A reference carrying both the handle and the path it was opened with.
    pub fn both(handle: FileHandle, path: Arc<Path>) -> FileRef {
        FileRef {
            handle: Some(handle),
            path: Some(path),
        }
    }
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.handle, &self.path) {
            (Some(h), Some(p)) => write!(f, "{} ({h})", p.display()),
            (None, Some(p)) => write!(f, "{}", p.display()),
            (Some(h), None) => write!(f, "{h}"),
            (None, None) => f.write_str("<no file>"),
        }
    }
}

/// How a caller should react to an [`IoError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Retrying the same request may succeed (EINTR, a full queue).
    Transient,
    /// The state of the file is in doubt (EIO, ENOSPC, failed fsync, a
    /// request cancelled by shutdown). Durable-state owners treat this as
    /// fatal (ARCHITECTURE.md invariant 7).
    Fatal,
    /// The request was wrong for the current state: bad handle, missing file,
    /// misaligned direct I/O, invalid configuration.
    Usage,
}

/// Every failure of the I/O layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// The file or directory does not exist (ENOENT).
    #[error("{op} {file}: not found")]
    NotFound {
        /// The operation that failed.
        op: OpKind,
        /// The file it was about.
        file: FileRef,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The file already exists (EEXIST).
    #[error("{op} {file}: already exists")]
    AlreadyExists {
        /// The operation that failed.
        op: OpKind,
        /// The file it was about.
        file: FileRef,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Permission denied (EACCES, EPERM).
    #[error("{op} {file}: permission denied")]
    PermissionDenied {
        /// The operation that failed.
        op: OpKind,
        /// The file it was about.
        file: FileRef,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// No space left on the device (ENOSPC, EDQUOT).
    #[error("{op} {file}: no space left on device")]
    NoSpace {
        /// The operation that failed.
        op: OpKind,
        /// The file it was about.
        file: FileRef,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The device reported an I/O error (EIO). After an fsync this means the
    /// written data may be lost: never retry the fsync.
    #[error("{op} {file}: I/O error")]
    Io {
        /// The operation that failed.
        op: OpKind,
        /// The file it was about.
        file: FileRef,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The system call was interrupted (EINTR).
    #[error("{op} {file}: interrupted")]
    Interrupted {
        /// The operation that failed.
        op: OpKind,
        /// The file it was about.
        file: FileRef,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The request had an invalid argument (EINVAL or a check of our own).
    #[error("{op} {file}: invalid argument: {reason}")]
    InvalidArgument {
        /// The operation that failed.
        op: OpKind,
        /// The file it was about.
        file: FileRef,
        /// What was wrong.
        reason: &'static str,
        /// The operating system's error, when it was the OS that refused.
        #[source]
        source: Option<io::Error>,
    },
    /// A request on a file opened with O_DIRECT was not aligned to
    /// [`crate::DIRECT_IO_ALIGN`] (offset, length or buffer address).
    #[error(
        "{op} {file}: misaligned direct I/O at offset {offset}, length {len}, \
         buffer address {addr:#x} (alignment {align})"
    )]
    Misaligned {
        /// The operation that failed.
        op: OpKind,
        /// The file it was about.
        file: FileRef,
        /// The file offset requested.
        offset: u64,
        /// The length requested.
        len: usize,
        /// The address of the (first misaligned) buffer.
        addr: usize,
        /// The alignment required.
        align: usize,
    },
    /// The file system refused O_DIRECT for this file (tmpfs does).
    #[error("open {file}: the file system does not support O_DIRECT")]
    DirectIoUnsupported {
        /// The file being opened.
        file: FileRef,
        /// The operating system's error (EINVAL).
        #[source]
        source: io::Error,
    },
    /// `read_exact_at` reached end of file before filling its buffer.
    #[error("read {file}: short read at offset {offset}: wanted {wanted} bytes, got {got}")]
    ShortRead {
        /// The file read.
        file: FileRef,
        /// The offset of the read.
        offset: u64,
        /// The bytes asked for.
        wanted: usize,
        /// The bytes that were there.
        got: usize,
    },
    /// A write made no progress before completing (the device accepted
    /// `written` of `wanted` bytes and then accepted nothing more).
    #[error("{op} {file}: short write at offset {offset}: wanted {wanted} bytes, wrote {written}")]
    ShortWrite {
        /// The operation that failed.
        op: OpKind,
        /// The file written.
        file: FileRef,
        /// The offset of the write.
        offset: u64,
        /// The bytes asked for.
        wanted: usize,
        /// The bytes written before progress stopped.
        written: usize,
    },
    /// The backend is shut down (or shutting down); the request was not run.
    #[error("{op}: the I/O backend is shut down")]
    ShutDown {
        /// The operation that was refused.
        op: OpKind,
    },
    /// The handle is not open in this backend (never opened, or closed).
    #[error("{op}: bad file handle {handle}")]
    BadHandle {
        /// The operation that failed.
        op: OpKind,
        /// The handle named.
        handle: FileHandle,
    },
    /// A `try_` submission found the queue full.
    #[error("{op}: the submission queue is full")]
    WouldBlock {
        /// The operation that was refused.
        op: OpKind,
    },
    /// Any other error the operating system reported.
    #[error("{op} {file}: operating system error")]
    Os {
        /// The operation that failed.
        op: OpKind,
        /// The file it was about.
        file: FileRef,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// An invalid configuration value (for example `KEEL_IO_BACKEND`).
    #[error("invalid {setting} value {value:?}: {reason}")]
    Config {
        /// The setting (an environment variable or a field name).
        setting: &'static str,
        /// The value found.
        value: String,
        /// What is allowed.
        reason: &'static str,
    },
    /// The requested backend cannot run on this machine.
    #[error("the {backend} backend is unavailable")]
    BackendUnavailable {
        /// The backend asked for.
        backend: &'static str,
        /// Why (the setup call's error).
        #[source]
        source: io::Error,
    },
}

impl IoError {
    /// Classifies an operating-system error by its error number.
    pub fn from_os(op: OpKind, file: FileRef, source: io::Error) -> IoError {
        match source.raw_os_error() {
            Some(libc::ENOENT) => IoError::NotFound { op, file, source },
            Some(libc::EEXIST) => IoError::AlreadyExists { op, file, source },
            Some(libc::EACCES | libc::EPERM) => IoError::PermissionDenied { op, file, source },
            Some(libc::ENOSPC | libc::EDQUOT) => IoError::NoSpace { op, file, source },
            Some(libc::EIO) => IoError::Io { op, file, source },
            Some(libc::EINTR) => IoError::Interrupted { op, file, source },
            Some(libc::EINVAL) => IoError::InvalidArgument {
                op,
                file,
                reason: "rejected by the operating system",
                source: Some(source),
            },
            Some(_) => IoError::Os { op, file, source },
            None => Self::from_kind(op, file, source),
        }
    }

    /// Classifies an error that carries no OS error number, by its kind.
    fn from_kind(op: OpKind, file: FileRef, source: io::Error) -> IoError {
        match source.kind() {
            io::ErrorKind::NotFound => IoError::NotFound { op, file, source },
            io::ErrorKind::AlreadyExists => IoError::AlreadyExists { op, file, source },
            io::ErrorKind::PermissionDenied => IoError::PermissionDenied { op, file, source },
            io::ErrorKind::StorageFull => IoError::NoSpace { op, file, source },
            io::ErrorKind::Interrupted => IoError::Interrupted { op, file, source },
            io::ErrorKind::InvalidInput => IoError::InvalidArgument {
                op,
                file,
                reason: "rejected by the standard library",
                source: Some(source),
            },
            _ => IoError::Os { op, file, source },
        }
    }

    /// Builds the error a backend returns for an OS error number.
    pub(crate) fn errno(op: OpKind, file: FileRef, errno: i32) -> IoError {
        IoError::from_os(op, file, io::Error::from_raw_os_error(errno))
    }

    /// How a caller should react to this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            IoError::Interrupted { .. } | IoError::WouldBlock { .. } => ErrorClass::Transient,
            IoError::NoSpace { .. }
            | IoError::Io { .. }
            | IoError::ShortWrite { .. }
            | IoError::ShutDown { .. }
            | IoError::Os { .. } => ErrorClass::Fatal,
            IoError::NotFound { .. }
            | IoError::AlreadyExists { .. }
            | IoError::PermissionDenied { .. }
            | IoError::InvalidArgument { .. }
            | IoError::Misaligned { .. }
            | IoError::DirectIoUnsupported { .. }
            | IoError::ShortRead { .. }
            | IoError::BadHandle { .. }
            | IoError::Config { .. }
            | IoError::BackendUnavailable { .. } => ErrorClass::Usage,
        }
    }

    /// Retrying may succeed.
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// The file's state is in doubt.
    pub fn is_fatal(&self) -> bool {
        self.class() == ErrorClass::Fatal
    }

    /// The request was wrong.
    pub fn is_usage(&self) -> bool {
        self.class() == ErrorClass::Usage
    }

    /// An fsync or fdatasync, a durable write, or a writeback started
    /// ahead of a sync, failed:
    /// whatever it covered may be lost, and a retry would falsely report
    /// success (invariant 7).
    pub fn is_sync_failure(&self) -> bool {
        matches!(
            self.op(),
            Some(OpKind::Fsync | OpKind::Fdatasync | OpKind::DurableWrite | OpKind::Writeback)
        ) && self.is_fatal()
    }

    /// The operation that failed, when the error is about one.
    pub fn op(&self) -> Option<OpKind> {
        match self {
            IoError::NotFound { op, .. }
            | IoError::AlreadyExists { op, .. }
            | IoError::PermissionDenied { op, .. }
            | IoError::NoSpace { op, .. }
            | IoError::Io { op, .. }
            | IoError::Interrupted { op, .. }
            | IoError::InvalidArgument { op, .. }
            | IoError::Misaligned { op, .. }
            | IoError::ShortWrite { op, .. }
            | IoError::ShutDown { op }
            | IoError::BadHandle { op, .. }
            | IoError::WouldBlock { op }
            | IoError::Os { op, .. } => Some(*op),
            IoError::DirectIoUnsupported { .. } => Some(OpKind::Open),
            IoError::ShortRead { .. } => Some(OpKind::Read),
            IoError::Config { .. } | IoError::BackendUnavailable { .. } => None,
        }
    }

    /// The operating system's error number, when there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        std::error::Error::source(self)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .and_then(io::Error::raw_os_error)
    }
}
