//! fsync / fdatasync, and preallocation.
//!
//! A sync is never retried after a failure (invariant 7): EINTR is the only
//! error resubmitted, since the kernel reports it before doing any work.
//!
//! Preallocation uses `fallocate(fd, 0, offset, len)`, which extends the file
//! and reserves blocks. Where the file system does not support it
//! (EOPNOTSUPP), the fallback extends the file with `set_len` when it is
//! shorter than `offset + len` — no blocks are reserved then, so a later
//! write can still meet ENOSPC.

use std::fs::File;
use std::os::fd::AsRawFd;

use super::{Step, errno_step};
use crate::error::{FileRef, IoError};
use crate::request::{OpKind, Reply};

pub(crate) struct SyncOp {
    file: FileRef,
    data_only: bool,
}

impl SyncOp {
    pub(crate) fn new(file: FileRef, data_only: bool) -> SyncOp {
        SyncOp { file, data_only }
    }

    pub(crate) fn kind(&self) -> OpKind {
        if self.data_only {
            OpKind::Fdatasync
        } else {
            OpKind::Fsync
        }
    }

    pub(crate) fn run_blocking(self, file: &File) -> Result<Reply, IoError> {
        let r = if self.data_only {
            file.sync_data()
        } else {
            file.sync_all()
        };
        r.map(|()| Reply::Done)
            .map_err(|e| IoError::from_os(self.kind(), self.file, e))
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn sqe(&self, fd: std::os::fd::RawFd) -> io_uring::squeue::Entry {
        use io_uring::{opcode, types};
        let flags = if self.data_only {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        opcode::Fsync::new(types::Fd(fd)).flags(flags).build()
    }

    pub(crate) fn on_cqe(&self, res: i32) -> Step {
        match res {
            0.. => Step::Done,
            r if -r == libc::EINTR => Step::Again,
            r => Step::Failed(IoError::errno(self.kind(), self.file.clone(), -r)),
        }
    }
}

pub(crate) struct AllocOp {
    file: FileRef,
    offset: u64,
    len: u64,
}

impl AllocOp {
    pub(crate) fn new(file: FileRef, offset: u64, len: u64) -> AllocOp {
        AllocOp { file, offset, len }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn range(&self) -> Result<(libc::off_t, libc::off_t), IoError> {
        let bad = || IoError::InvalidArgument {
            op: OpKind::Allocate,
            file: self.file.clone(),
            reason: "range beyond the largest file offset",
            source: None,
        };
        let off = libc::off_t::try_from(self.offset).map_err(|_| bad())?;
        let len = libc::off_t::try_from(self.len).map_err(|_| bad())?;
        off.checked_add(len).ok_or_else(bad)?;
        Ok((off, len))
    }

    pub(crate) fn run_blocking(self, file: &File) -> Result<Reply, IoError> {
        if self.is_empty() {
            return Ok(Reply::Done);
        }
        let (off, len) = self.range()?;
        loop {
            // SAFETY: a plain system call on a descriptor owned by `file`.
            let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, off, len) };
            if r == 0 {
                return Ok(Reply::Done);
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EOPNOTSUPP) => return self.extend(file),
                _ => return Err(IoError::from_os(OpKind::Allocate, self.file, e)),
            }
        }
    }

    /// The fallback where fallocate is unsupported: extend with set_len.
    pub(crate) fn extend(&self, file: &File) -> Result<Reply, IoError> {
        let err = |e| IoError::from_os(OpKind::Allocate, self.file.clone(), e);
        let end = self.offset.saturating_add(self.len);
        if file.metadata().map_err(err)?.len() < end {
            file.set_len(end).map_err(err)?;
        }
        Ok(Reply::Done)
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn sqe(&self, fd: std::os::fd::RawFd) -> Result<io_uring::squeue::Entry, IoError> {
        use io_uring::{opcode, types};
        let (off, len) = self.range()?;
        Ok(opcode::Fallocate::new(types::Fd(fd), len as u64)
            .offset(off as u64)
            .build())
    }

    pub(crate) fn on_cqe(&self, res: i32, file: &File) -> Step {
        if res >= 0 {
            return Step::Done;
        }
        if -res == libc::EOPNOTSUPP {
            return match self.extend(file) {
                Ok(_) => Step::Done,
                Err(e) => Step::Failed(e),
            };
        }
        errno_step(OpKind::Allocate, &self.file, -res)
    }
}
