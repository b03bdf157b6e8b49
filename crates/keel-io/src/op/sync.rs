//! fsync / fdatasync, the start of writeback, and preallocation.
//!
//! A sync is never retried after a failure (invariant 7): EINTR is the only
//! error resubmitted, since the kernel reports it before doing any work.
//!
//! Starting writeback is `sync_file_range(fd, offset, len,
//! SYNC_FILE_RANGE_WRITE)`: it queues the range's dirty page-cache pages
//! for writing and returns. It waits for nothing and so never consumes a
//! writeback error (the `SYNC_FILE_RANGE_WAIT_*` flags would, leaving the
//! next fdatasync to report success over lost pages): the next fdatasync of
//! the file sees any error. It is advice, so a kernel or file system
//! without it (ENOSYS, EINVAL for an unknown io_uring opcode, EOPNOTSUPP,
//! ESPIPE) completes it doing nothing; any other error is reported, since
//! it means writing the pages failed.
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

pub(crate) struct WritebackOp {
    file: FileRef,
    offset: u64,
    len: u32,
}

impl WritebackOp {
    pub(crate) fn new(file: FileRef, offset: u64, len: u32) -> WritebackOp {
        WritebackOp { file, offset, len }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn offset(&self) -> Result<libc::off_t, IoError> {
        libc::off_t::try_from(self.offset).map_err(|_| IoError::InvalidArgument {
            op: OpKind::Writeback,
            file: self.file.clone(),
            reason: "range beyond the largest file offset",
            source: None,
        })
    }

    /// The answer to `errno`: done where the hint is unsupported.
    fn step(&self, errno: i32) -> Step {
        match errno {
            libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP | libc::ESPIPE => Step::Done,
            e => errno_step(OpKind::Writeback, &self.file, e),
        }
    }

    pub(crate) fn run_blocking(self, file: &File) -> Result<Reply, IoError> {
        let off = self.offset()?;
        if self.is_empty() {
            return Ok(Reply::Done);
        }
        #[cfg(target_os = "linux")]
        loop {
            // SAFETY: a plain system call on a descriptor owned by `file`.
            let r = unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    off,
                    libc::off_t::from(self.len),
                    libc::SYNC_FILE_RANGE_WRITE,
                )
            };
            let errno = match r {
                0 => return Ok(Reply::Done),
                _ => std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            };
            match self.step(errno) {
                Step::Done => return Ok(Reply::Done),
                Step::Again => continue,
                Step::Failed(e) => return Err(e),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (file, off);
            Ok(Reply::Done)
        }
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn sqe(&self, fd: std::os::fd::RawFd) -> Result<io_uring::squeue::Entry, IoError> {
        use io_uring::{opcode, types};
        let off = self.offset()?;
        Ok(opcode::SyncFileRange::new(types::Fd(fd), self.len)
            .offset(off as u64)
            .flags(libc::SYNC_FILE_RANGE_WRITE)
            .build())
    }

    pub(crate) fn on_cqe(&self, res: i32) -> Step {
        match res {
            0.. => Step::Done,
            r => self.step(-r),
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
