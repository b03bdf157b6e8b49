//! The vocabulary of requests: handles, file classes, operation kinds, open
//! options, and the [`Request`] / [`Reply`] pair every backend speaks.
//!
//! A [`Request`] owns everything the operation needs, buffers included, so a
//! backend can keep it alive for as long as the kernel may touch it, whatever
//! the submitter does with its future. The matching [`Reply`] hands the
//! buffers back.
//!
//! Invariants:
//! - A [`FileHandle`] is a number a backend gave out at open time. Numbers are
//!   never reused within one backend, so a closed handle stays bad forever
//!   (a later request on it fails with `BadHandle`, never reaches another file).
//! - Writes (`Write`, `WriteV`) complete fully or fail: a short transfer is
//!   resubmitted for the remainder. Reads fill the buffer unless end of file
//!   comes first; `exact` turns that case into `ShortRead`.
//!
//! Left out: anything about how a request is executed (see the backends).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use crate::buf::IoBuf;
use crate::error::IoError;

/// An open file in one backend. Copy it freely; it is just a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileHandle(u64);

impl FileHandle {
    /// Makes a handle from its number (backends, and tests of bad handles).
    pub const fn from_raw(id: u64) -> FileHandle {
        FileHandle(id)
    }

    /// The handle's number.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FileHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handle #{}", self.0)
    }
}

/// What a file is for; given at open time and used to split the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileClass {
    /// Relation data pages.
    Data,
    /// Write-ahead log segments.
    Wal,
    /// The control file and other small metadata files.
    Control,
    /// The page images kept beside the log, a torn page's repair (Keel's
    /// `images.0` and `images.1`).
    Images,
    /// Anything else, and operations on directories and paths.
    Other,
}

impl FileClass {
    /// Every class, in index order.
    pub const ALL: [FileClass; 5] = [
        FileClass::Data,
        FileClass::Wal,
        FileClass::Control,
        FileClass::Images,
        FileClass::Other,
    ];

    /// The class's position in [`FileClass::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A short lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            FileClass::Data => "data",
            FileClass::Wal => "wal",
            FileClass::Control => "control",
            FileClass::Images => "images",
            FileClass::Other => "other",
        }
    }
}

impl fmt::Display for FileClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind of an operation, for errors and statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// Positioned read.
    Read,
    /// Positioned write of one buffer.
    Write,
    /// Positioned write of several buffers.
    WriteV,
    /// Positioned write of one buffer that returns once its bytes are
    /// durable (`pwritev2` with `RWF_DSYNC`).
    DurableWrite,
    /// fsync.
    Fsync,
    /// fdatasync.
    Fdatasync,
    /// Start of writeback (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`).
    Writeback,
    /// Preallocation.
    Allocate,
    /// Truncate or extend.
    SetLen,
    /// File size query.
    Size,
    /// Open or create.
    Open,
    /// Close a handle.
    Close,
    /// Remove a file.
    Remove,
    /// Rename a file.
    Rename,
    /// List a directory.
    ReadDir,
    /// Create a directory.
    CreateDir,
    /// fsync of a directory.
    SyncDir,
    /// syncfs: every file and directory of one file system.
    SyncFs,
}

impl OpKind {
    /// Every kind, in index order.
    pub const ALL: [OpKind; 18] = [
        OpKind::Read,
        OpKind::Write,
        OpKind::WriteV,
        OpKind::DurableWrite,
        OpKind::Fsync,
        OpKind::Fdatasync,
        OpKind::Writeback,
        OpKind::Allocate,
        OpKind::SetLen,
        OpKind::Size,
        OpKind::Open,
        OpKind::Close,
        OpKind::Remove,
        OpKind::Rename,
        OpKind::ReadDir,
        OpKind::CreateDir,
        OpKind::SyncDir,
        OpKind::SyncFs,
    ];

    /// The kind's position in [`OpKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A short lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::WriteV => "writev",
            OpKind::DurableWrite => "durable_write",
            OpKind::Fsync => "fsync",
            OpKind::Fdatasync => "fdatasync",
            OpKind::Writeback => "start_writeback",
            OpKind::Allocate => "allocate",
            OpKind::SetLen => "set_len",
            OpKind::Size => "size",
            OpKind::Open => "open",
            OpKind::Close => "close",
            OpKind::Remove => "remove",
            OpKind::Rename => "rename",
            OpKind::ReadDir => "read_dir",
            OpKind::CreateDir => "create_dir",
            OpKind::SyncDir => "sync_dir",
            OpKind::SyncFs => "syncfs",
        }
    }

    /// Writes, preallocations and length changes: what an fsync must wait for.
    pub const fn is_write(self) -> bool {
        matches!(
            self,
            OpKind::Write
                | OpKind::WriteV
                | OpKind::DurableWrite
                | OpKind::Allocate
                | OpKind::SetLen
        )
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to open a file. Built with [`OpenOptions::new`] and chained setters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// The class the file's requests are counted under.
    pub class: FileClass,
    /// Open for reading.
    pub read: bool,
    /// Open for writing.
    pub write: bool,
    /// Create the file if it does not exist.
    pub create: bool,
    /// Fail with `AlreadyExists` if it exists (implies `create`).
    pub create_new: bool,
    /// Truncate the file to length 0.
    pub truncate: bool,
    /// Bypass the page cache (O_DIRECT): every offset, length and buffer
    /// address must then be aligned to [`crate::DIRECT_IO_ALIGN`].
    pub direct: bool,
    /// Permission bits of a file this open creates (less the process's
    /// umask); [`FILE_MODE`] unless set. The simulator ignores it.
    pub mode: u32,
}

/// Permission bits of the files Keel creates: readable and writable by
/// their owner only (a database's files are its owner's data).
pub const FILE_MODE: u32 = 0o600;

/// Permission bits of the directories Keel creates: its owner only.
pub const DIR_MODE: u32 = 0o700;

impl OpenOptions {
    /// Read-only, no creation, buffered.
    pub const fn new(class: FileClass) -> OpenOptions {
        OpenOptions {
            class,
            read: true,
            write: false,
            create: false,
            create_new: false,
            truncate: false,
            direct: false,
            mode: FILE_MODE,
        }
    }

    /// Read and write, creating the file if needed: the usual for engine files.
    pub const fn read_write_create(class: FileClass) -> OpenOptions {
        OpenOptions::new(class).write(true).create(true)
    }

    /// Sets `read`.
    pub const fn read(mut self, on: bool) -> Self {
        self.read = on;
        self
    }

    /// Sets `write`.
    pub const fn write(mut self, on: bool) -> Self {
        self.write = on;
        self
    }

    /// Sets `create`.
    pub const fn create(mut self, on: bool) -> Self {
        self.create = on;
        self
    }

    /// Sets `create_new`.
    pub const fn create_new(mut self, on: bool) -> Self {
        self.create_new = on;
        self
    }

    /// Sets `truncate`.
    pub const fn truncate(mut self, on: bool) -> Self {
        self.truncate = on;
        self
    }

    /// Sets `direct` (O_DIRECT).
    pub const fn direct(mut self, on: bool) -> Self {
        self.direct = on;
        self
    }

    /// Sets `mode`, the permission bits of a created file.
    pub const fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    /// The entry's name (no directory part).
    pub name: OsString,
    /// Whether the entry is a directory.
    pub is_dir: bool,
    /// Whether the entry is a regular file, or a symbolic link to one (not
    /// a FIFO, socket or device, which an open may block on or refuse).
    pub is_file: bool,
}

/// One operation, owning everything it needs.
#[derive(Debug)]
pub enum Request {
    /// Read `buf.len()` bytes at `offset` (fewer only at end of file; with
    /// `exact`, end of file is a `ShortRead` error).
    Read {
        /// The file.
        file: FileHandle,
        /// Where to read.
        offset: u64,
        /// Where to put the bytes; handed back in the reply.
        buf: IoBuf,
        /// Whether a short read is an error.
        exact: bool,
    },
    /// Write all of `buf` at `offset`.
    Write {
        /// The file.
        file: FileHandle,
        /// Where to write.
        offset: u64,
        /// The bytes; handed back in the reply.
        buf: IoBuf,
    },
    /// Write all of `buf` at `offset` and complete once those bytes, and
    /// the metadata needed to read them back (the file's size), are
    /// durable: `pwritev2(RWF_DSYNC)`, one system call where a write and an
    /// fdatasync take two. It makes durable *only its own bytes*: on a
    /// device with FUA the kernel writes them with FUA and flushes nothing
    /// else, so earlier writes to the file still in the device's cache stay
    /// there. Use it where every earlier write to the file is already
    /// durable (the log: each of its writes is one of these). Needs Linux
    /// 4.7 or later; elsewhere it is a write followed by an fdatasync.
    /// In the sync order (contract 4) it counts as a write.
    DurableWrite {
        /// The file.
        file: FileHandle,
        /// Where to write.
        offset: u64,
        /// The bytes; handed back in the reply.
        buf: IoBuf,
    },
    /// Write the buffers back to back starting at `offset`.
    WriteV {
        /// The file.
        file: FileHandle,
        /// Where the first buffer goes.
        offset: u64,
        /// The bytes; handed back in the reply.
        bufs: Vec<IoBuf>,
    },
    /// fsync (`data_only`: fdatasync). Completes only after every write
    /// submitted earlier to the same file has completed.
    Sync {
        /// The file.
        file: FileHandle,
        /// fdatasync rather than fsync.
        data_only: bool,
    },
    /// Start writing back to the device what completed writes left in the
    /// page cache in `offset..offset + len` (Linux: `sync_file_range` with
    /// `SYNC_FILE_RANGE_WRITE`, which neither waits nor consumes a
    /// writeback error, so the file's next fdatasync still reports it).
    /// It makes nothing durable: it only lets the device work while the
    /// caller writes more, so a later fdatasync finds less to write. Not
    /// ordered after writes still in flight. Where the kernel or the file
    /// system lacks it, it completes doing nothing.
    StartWriteback {
        /// The file.
        file: FileHandle,
        /// Start of the range.
        offset: u64,
        /// Length of the range (at most `u32::MAX`).
        len: u32,
    },
    /// Reserve `len` bytes at `offset` (fallocate; extends the file).
    Allocate {
        /// The file.
        file: FileHandle,
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
    },
    /// Truncate or extend to `len`.
    SetLen {
        /// The file.
        file: FileHandle,
        /// The new length.
        len: u64,
    },
    /// The file's length.
    Size {
        /// The file.
        file: FileHandle,
    },
    /// Forget the handle; the descriptor closes once in-flight requests end.
    Close {
        /// The file.
        file: FileHandle,
    },
    /// Open or create a file.
    Open {
        /// The file's path.
        path: PathBuf,
        /// How.
        options: OpenOptions,
    },
    /// Remove a file.
    Remove {
        /// The file's path.
        path: PathBuf,
    },
    /// Rename a file, replacing `to` if it exists.
    Rename {
        /// The old path.
        from: PathBuf,
        /// The new path.
        to: PathBuf,
    },
    /// List a directory (sorted by name).
    ReadDir {
        /// The directory.
        path: PathBuf,
    },
    /// Create one directory (its parent must exist).
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Its permission bits (less the process's umask; the simulator
        /// ignores them).
        mode: u32,
    },
    /// fsync a directory, making creates, removes and renames in it durable.
    SyncDir {
        /// The directory.
        path: PathBuf,
    },
    /// syncfs(2) on the file system holding `path`: every file's and every
    /// directory's unsynced changes on it become durable, whoever wrote
    /// them (Linux only; elsewhere it fails with `Unsupported`).
    SyncFs {
        /// Any file or directory on the file system.
        path: PathBuf,
    },
}

impl Request {
    /// The kind of operation.
    pub fn kind(&self) -> OpKind {
        match self {
            Request::Read { .. } => OpKind::Read,
            Request::Write { .. } => OpKind::Write,
            Request::WriteV { .. } => OpKind::WriteV,
            Request::DurableWrite { .. } => OpKind::DurableWrite,
            Request::Sync {
                data_only: false, ..
            } => OpKind::Fsync,
            Request::Sync {
                data_only: true, ..
            } => OpKind::Fdatasync,
            Request::StartWriteback { .. } => OpKind::Writeback,
            Request::Allocate { .. } => OpKind::Allocate,
            Request::SetLen { .. } => OpKind::SetLen,
            Request::Size { .. } => OpKind::Size,
            Request::Close { .. } => OpKind::Close,
            Request::Open { .. } => OpKind::Open,
            Request::Remove { .. } => OpKind::Remove,
            Request::Rename { .. } => OpKind::Rename,
            Request::ReadDir { .. } => OpKind::ReadDir,
            Request::CreateDir { .. } => OpKind::CreateDir,
            Request::SyncDir { .. } => OpKind::SyncDir,
            Request::SyncFs { .. } => OpKind::SyncFs,
        }
    }

    /// The handle the request is on, if it is on one.
    pub fn handle(&self) -> Option<FileHandle> {
        match self {
            Request::Read { file, .. }
            | Request::Write { file, .. }
            | Request::WriteV { file, .. }
            | Request::DurableWrite { file, .. }
            | Request::Sync { file, .. }
            | Request::StartWriteback { file, .. }
            | Request::Allocate { file, .. }
            | Request::SetLen { file, .. }
            | Request::Size { file }
            | Request::Close { file } => Some(*file),
            _ => None,
        }
    }

    /// Takes the request's buffers back (after a refused `try_submit`).
    pub fn into_bufs(self) -> Vec<IoBuf> {
        match self {
            Request::Read { buf, .. }
            | Request::Write { buf, .. }
            | Request::DurableWrite { buf, .. } => vec![buf],
            Request::WriteV { bufs, .. } => bufs,
            _ => Vec::new(),
        }
    }
}

/// The result of a successful [`Request`].
#[derive(Debug)]
pub enum Reply {
    /// Nothing to return.
    Done,
    /// A read: the buffer and how many bytes were read into its front.
    Read {
        /// The buffer, handed back.
        buf: IoBuf,
        /// Bytes read.
        n: usize,
    },
    /// A write: the buffer, handed back.
    Written(IoBuf),
    /// A vectored write: the buffers, handed back.
    WrittenV(Vec<IoBuf>),
    /// A size.
    Size(u64),
    /// A newly opened file.
    Opened(FileHandle),
    /// A directory listing, sorted by name.
    Entries(Vec<DirEntry>),
}

impl Reply {
    /// Bytes moved by the operation (for statistics).
    pub(crate) fn bytes(&self) -> u64 {
        match self {
            Reply::Read { n, .. } => *n as u64,
            Reply::Written(b) => b.len() as u64,
            Reply::WrittenV(bs) => bs.iter().map(|b| b.len() as u64).sum(),
            _ => 0,
        }
    }
}

/// A `try_` submission that was refused, with the request handed back so its
/// buffers are not lost.
#[derive(Debug)]
pub struct Rejected {
    /// Why (`WouldBlock`, `ShutDown`, `BadHandle`…).
    pub error: IoError,
    /// The request, untouched (boxed to keep results small).
    pub request: Box<Request>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request refused: {}", self.error)
    }
}

impl std::error::Error for Rejected {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
