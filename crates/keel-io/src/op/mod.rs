//! One struct per I/O operation, each with a blocking path (used by the
//! thread pool, and by io_uring for operations it runs synchronously) and,
//! where io_uring has an opcode, a ring path: build the submission entry,
//! then digest the completion (monoio's `driver/op` shape). Keeping both
//! paths side by side keeps the two backends' semantics identical: the same
//! short-transfer resubmission, the same error mapping, the same checks.
//!
//! The lifecycle of a ring operation:
//!
//! ```text
//!   prepare() ──▶ sqe() ──▶ (kernel) ──▶ on_cqe(res) ──┬─ Step::Again ──▶ sqe() …
//!                                                      ├─ Step::Done ───▶ into_reply()
//!                                                      └─ Step::Failed(e)
//! ```
//!
//! Invariants:
//! - `prepare` resolves the handle and checks O_DIRECT alignment before any
//!   system call, so misuse fails the same way on every backend.
//! - Between `sqe()` and the completion that answers it, the operation (and
//!   so its buffers and iovec array) must not move or be dropped: the
//!   io_uring backend keeps it boxed in its in-flight table.

mod meta;
mod read;
mod sync;
mod write;

use std::sync::Arc;

pub(crate) use meta::{create_dir, open, read_dir, remove, rename, sync_dir, sync_fs};
pub(crate) use read::ReadOp;
pub(crate) use sync::{AllocOp, SyncOp, WritebackOp};
pub(crate) use write::WriteOp;

use crate::buf::DIRECT_IO_ALIGN;
use crate::error::{FileRef, IoError};
use crate::file::{FileEntry, FileTable};
use crate::request::{OpKind, Rejected, Reply, Request};

/// Largest transfer handed to one system call (Linux's own cap, which also
/// keeps every length representable in the i32 result of a completion).
pub(crate) const MAX_TRANSFER: usize = 0x7fff_f000;

/// What a completion means for the operation.
#[derive(Debug)]
pub(crate) enum Step {
    /// Partial progress or EINTR/EAGAIN: submit the remainder.
    Again,
    /// Finished; take the reply with `into_reply`.
    Done,
    /// Failed.
    Failed(IoError),
}

/// An operation on an open file.
pub(crate) enum FileOp {
    Read(ReadOp),
    Write(WriteOp),
    Sync(SyncOp),
    Writeback(WritebackOp),
    Allocate(AllocOp),
    SetLen(u64),
    Size,
}

impl FileOp {
    pub(crate) fn kind(&self) -> OpKind {
        match self {
            FileOp::Read(_) => OpKind::Read,
            FileOp::Write(w) => w.kind(),
            FileOp::Sync(s) => s.kind(),
            FileOp::Writeback(_) => OpKind::Writeback,
            FileOp::Allocate(_) => OpKind::Allocate,
            FileOp::SetLen(_) => OpKind::SetLen,
            FileOp::Size => OpKind::Size,
        }
    }

    /// Whether the operation has nothing to do (empty transfer): the ring
    /// path completes it without a system call.
    pub(crate) fn is_noop(&self) -> bool {
        match self {
            FileOp::Read(op) => op.is_empty(),
            FileOp::Write(op) => op.is_empty(),
            FileOp::Allocate(op) => op.is_empty(),
            FileOp::Writeback(op) => op.is_empty(),
            _ => false,
        }
    }

    /// The ring entry for the next (or first) submission; `None` for the
    /// operations io_uring runs synchronously (set_len, size).
    #[cfg(target_os = "linux")]
    pub(crate) fn sqe(
        &mut self,
        fd: std::os::fd::RawFd,
    ) -> Result<Option<io_uring::squeue::Entry>, IoError> {
        Ok(Some(match self {
            FileOp::Read(op) => op.sqe(fd),
            FileOp::Write(op) => op.sqe(fd)?,
            FileOp::Sync(op) => op.sqe(fd),
            FileOp::Writeback(op) => op.sqe(fd)?,
            FileOp::Allocate(op) => op.sqe(fd)?,
            FileOp::SetLen(_) | FileOp::Size => return Ok(None),
        }))
    }

    /// Digests a completion.
    pub(crate) fn on_cqe(&mut self, res: i32, file: &std::fs::File) -> Step {
        match self {
            FileOp::Read(op) => op.on_cqe(res),
            FileOp::Write(op) => op.on_cqe(res),
            FileOp::Sync(op) => op.on_cqe(res),
            FileOp::Writeback(op) => op.on_cqe(res),
            FileOp::Allocate(op) => op.on_cqe(res, file),
            FileOp::SetLen(_) | FileOp::Size => Step::Done,
        }
    }

    /// The reply after `Step::Done`.
    pub(crate) fn into_reply(self) -> Result<Reply, IoError> {
        match self {
            FileOp::Read(op) => op.into_reply(),
            FileOp::Write(op) => op.into_reply(),
            FileOp::Sync(_)
            | FileOp::Writeback(_)
            | FileOp::Allocate(_)
            | FileOp::SetLen(_)
            | FileOp::Size => Ok(Reply::Done),
        }
    }

    /// Runs the operation to the end on the calling thread.
    pub(crate) fn run_blocking<H>(self, entry: &FileEntry<H>) -> Result<Reply, IoError> {
        let fref = || entry.file_ref();
        match self {
            FileOp::Read(op) => op.run_blocking(&entry.file),
            FileOp::Write(op) => op.run_blocking(&entry.file),
            FileOp::Sync(op) => op.run_blocking(&entry.file),
            FileOp::Writeback(op) => op.run_blocking(&entry.file),
            FileOp::Allocate(op) => op.run_blocking(&entry.file),
            FileOp::SetLen(len) => entry
                .file
                .set_len(len)
                .map(|()| Reply::Done)
                .map_err(|e| IoError::from_os(OpKind::SetLen, fref(), e)),
            FileOp::Size => entry
                .file
                .metadata()
                .map(|m| Reply::Size(m.len()))
                .map_err(|e| IoError::from_os(OpKind::Size, fref(), e)),
        }
    }
}

/// A request made ready to run.
pub(crate) enum Prepared<H> {
    /// An operation on an open file, holding the file open.
    File {
        entry: Arc<FileEntry<H>>,
        op: FileOp,
    },
    /// A path operation (open, remove, rename, read_dir, create_dir, sync_dir, syncfs).
    Path(Request),
    /// A close (done at submission by every backend).
    Close(crate::request::FileHandle),
}

/// Resolves the handle and checks the request; hands the request back with
/// the error when it cannot run.
pub(crate) fn prepare<H>(req: Request, table: &FileTable<H>) -> Result<Prepared<H>, Rejected> {
    let kind = req.kind();
    let Some(handle) = req.handle() else {
        return Ok(Prepared::Path(req));
    };
    if let Request::Close { file } = req {
        return Ok(Prepared::Close(file));
    }
    let entry = match table.get(handle, kind) {
        Ok(e) => e,
        Err(error) => {
            return Err(Rejected {
                error,
                request: Box::new(req),
            });
        }
    };
    if entry.direct
        && let Err(error) = check_direct_request(&req, entry.file_ref())
    {
        return Err(Rejected {
            error,
            request: Box::new(req),
        });
    }
    let fref = entry.file_ref();
    let op = match req {
        Request::Read {
            offset, buf, exact, ..
        } => FileOp::Read(ReadOp::new(fref, offset, buf, exact)),
        Request::Write { offset, buf, .. } => {
            FileOp::Write(WriteOp::new(fref, OpKind::Write, offset, vec![buf]))
        }
        Request::WriteV { offset, bufs, .. } => {
            FileOp::Write(WriteOp::new(fref, OpKind::WriteV, offset, bufs))
        }
        Request::DurableWrite { offset, buf, .. } => {
            FileOp::Write(WriteOp::new(fref, OpKind::DurableWrite, offset, vec![buf]))
        }
        Request::Sync { data_only, .. } => FileOp::Sync(SyncOp::new(fref, data_only)),
        Request::StartWriteback { offset, len, .. } => {
            FileOp::Writeback(WritebackOp::new(fref, offset, len))
        }
        Request::Allocate { offset, len, .. } => FileOp::Allocate(AllocOp::new(fref, offset, len)),
        Request::SetLen { len, .. } => FileOp::SetLen(len),
        Request::Size { .. } => FileOp::Size,
        // Handled above: path requests have no handle, Close returned early.
        other => return Ok(Prepared::Path(other)),
    };
    Ok(Prepared::File { entry, op })
}

/// The O_DIRECT rules: offset, every length and every address aligned.
pub(crate) fn check_direct(
    op: OpKind,
    file: &FileRef,
    offset: u64,
    bufs: &[&[u8]],
) -> Result<(), IoError> {
    let align = DIRECT_IO_ALIGN;
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let bad_buf = bufs
        .iter()
        .find(|b| !b.len().is_multiple_of(align) || !(b.as_ptr() as usize).is_multiple_of(align));
    if offset.is_multiple_of(align as u64) && bad_buf.is_none() {
        return Ok(());
    }
    Err(IoError::Misaligned {
        op,
        file: file.clone(),
        offset,
        len: total,
        addr: bad_buf.or(bufs.first()).map_or(0, |b| b.as_ptr() as usize),
        align,
    })
}

fn check_direct_request(req: &Request, file: FileRef) -> Result<(), IoError> {
    match req {
        Request::Read { offset, buf, .. }
        | Request::Write { offset, buf, .. }
        | Request::DurableWrite { offset, buf, .. } => {
            check_direct(req.kind(), &file, *offset, &[buf])
        }
        Request::WriteV { offset, bufs, .. } => {
            let slices: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
            check_direct(req.kind(), &file, *offset, &slices)
        }
        _ => Ok(()),
    }
}

/// Runs a path request on the calling thread. `Open` is not handled here
/// (it needs the backend's table); callers route it to [`open`].
pub(crate) fn run_path_blocking(req: &Request) -> Result<Reply, IoError> {
    match req {
        Request::Remove { path } => remove(path),
        Request::Rename { from, to } => rename(from, to),
        Request::ReadDir { path } => read_dir(path),
        Request::CreateDir { path, mode } => create_dir(path, *mode),
        Request::SyncDir { path } => sync_dir(path),
        Request::SyncFs { path } => sync_fs(path),
        other => Err(IoError::InvalidArgument {
            op: other.kind(),
            file: FileRef::default(),
            reason: "not a path request",
            source: None,
        }),
    }
}

/// Maps a negative completion result (or errno) to an error or a retry.
pub(crate) fn errno_step(op: OpKind, file: &FileRef, errno: i32) -> Step {
    if errno == libc::EINTR || errno == libc::EAGAIN {
        Step::Again
    } else {
        Step::Failed(IoError::errno(op, file.clone(), errno))
    }
}
