//! Positioned write of one or several buffers at one offset. A short
//! transfer is resubmitted for the remainder; a transfer of zero bytes while
//! bytes remain is a `ShortWrite` error. If a resubmission fails after some
//! bytes were written, the OS error is reported: the range is then partly
//! written and the caller must treat its content as unknown.
//!
//! A durable write ([`OpKind::DurableWrite`]) passes `RWF_DSYNC` with every
//! system call (`pwritev2`, or the ring entry's `rw_flags`), so each
//! transfer returns once its bytes are durable: a resubmitted remainder is
//! made durable by its own call. Its failure is a failed sync's (invariant
//! 7): the bytes may be lost and the write is never retried. Where
//! `pwritev2` does not exist (not Linux) it is a plain write followed by an
//! fdatasync.

use std::fs::File;
use std::os::fd::AsRawFd;

use super::{MAX_TRANSFER, Step, errno_step};
use crate::buf::IoBuf;
use crate::error::{FileRef, IoError};
use crate::request::{OpKind, Reply};

/// Most iovecs handed to one system call (Linux's IOV_MAX); the rest go in
/// the resubmission.
const MAX_IOVECS: usize = 1024;

pub(crate) struct WriteOp {
    file: FileRef,
    kind: OpKind,
    offset: u64,
    bufs: Vec<IoBuf>,
    total: usize,
    done: usize,
    /// Points into `bufs`; rebuilt before each system call.
    iov: Vec<libc::iovec>,
}

// SAFETY: the raw pointers in `iov` point into `bufs`, which this value owns
// (heap memory that does not move when the value moves). They are only
// dereferenced (by the kernel) while the owning thread, or the io_uring
// in-flight table, holds the value; nothing else shares them.
unsafe impl Send for WriteOp {}

impl WriteOp {
    pub(crate) fn new(file: FileRef, kind: OpKind, offset: u64, bufs: Vec<IoBuf>) -> WriteOp {
        let total = bufs.iter().map(|b| b.len()).sum();
        WriteOp {
            file,
            kind,
            offset,
            bufs,
            total,
            done: 0,
            iov: Vec::new(),
        }
    }

    pub(crate) fn kind(&self) -> OpKind {
        self.kind
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Rebuilds `iov` for the bytes not yet written, at most
    /// [`MAX_TRANSFER`] of them (one submission's lengths are 32-bit; the
    /// rest goes in the next step, as after any short write).
    fn build_iov(&mut self) {
        self.iov.clear();
        let mut skip = self.done;
        let mut total = 0usize;
        for b in &self.bufs {
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            let rest = &b[skip..];
            skip = 0;
            let len = rest.len().min(MAX_TRANSFER - total);
            self.iov.push(libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: len,
            });
            total += len;
            if total == MAX_TRANSFER || self.iov.len() == MAX_IOVECS {
                break;
            }
        }
    }

    fn position(&self) -> Result<libc::off_t, IoError> {
        libc::off_t::try_from(self.offset + self.done as u64).map_err(|_| {
            IoError::InvalidArgument {
                op: self.kind,
                file: self.file.clone(),
                reason: "offset beyond the largest file offset",
                source: None,
            }
        })
    }

    fn short(&self) -> IoError {
        IoError::ShortWrite {
            op: self.kind,
            file: self.file.clone(),
            offset: self.offset,
            wanted: self.total,
            written: self.done,
        }
    }

    pub(crate) fn run_blocking(mut self, file: &File) -> Result<Reply, IoError> {
        let durable = self.kind == OpKind::DurableWrite;
        while self.done < self.total {
            let pos = self.position()?;
            let n = if durable {
                self.pwrite_durable(file, pos)
            } else if let [buf] = &self.bufs[..] {
                // One buffer (a page): a plain pwrite of what remains, with
                // no iovec array to build.
                let rest = &buf[self.done..];
                // SAFETY: `rest` lies in a buffer owned by `self`, alive and
                // not accessed elsewhere during the call, and the length is
                // its own; the descriptor is owned by `file`.
                unsafe { libc::pwrite(file.as_raw_fd(), rest.as_ptr().cast(), rest.len(), pos) }
            } else {
                self.build_iov();
                let count = libc::c_int::try_from(self.iov.len()).unwrap_or(libc::c_int::MAX);
                // SAFETY: every iovec points into a buffer owned by `self`,
                // alive and not accessed elsewhere during the call; `count`
                // is the array's length; the descriptor is owned by `file`.
                unsafe { libc::pwritev(file.as_raw_fd(), self.iov.as_ptr(), count, pos) }
            };
            match usize::try_from(n) {
                Ok(0) => return Err(self.short()),
                Ok(n) => self.done += n,
                Err(_) => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(IoError::from_os(self.kind, self.file, e));
                    }
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        if durable {
            file.sync_data()
                .map_err(|e| IoError::from_os(self.kind, self.file.clone(), e))?;
        }
        self.into_reply()
    }

    /// One `pwritev2(RWF_DSYNC)` of what remains (one buffer, the log's
    /// batch, needs no iovec array built).
    #[cfg(target_os = "linux")]
    fn pwrite_durable(&mut self, file: &File, pos: libc::off_t) -> isize {
        let one;
        let iov: &[libc::iovec] = if let [buf] = &self.bufs[..] {
            let rest = &buf[self.done..];
            one = [libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: rest.len().min(MAX_TRANSFER),
            }];
            &one
        } else {
            self.build_iov();
            &self.iov
        };
        let count = libc::c_int::try_from(iov.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: every iovec points into a buffer owned by `self`, alive
        // and not accessed elsewhere during the call; `count` is the
        // array's length; the descriptor is owned by `file`.
        unsafe { libc::pwritev2(file.as_raw_fd(), iov.as_ptr(), count, pos, libc::RWF_DSYNC) }
    }

    /// Elsewhere the write itself is plain; `run_blocking` syncs after it.
    #[cfg(not(target_os = "linux"))]
    fn pwrite_durable(&mut self, file: &File, pos: libc::off_t) -> isize {
        self.build_iov();
        let count = libc::c_int::try_from(self.iov.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: as in `run_blocking`'s vectored case.
        unsafe { libc::pwritev(file.as_raw_fd(), self.iov.as_ptr(), count, pos) }
    }

    pub(crate) fn into_reply(mut self) -> Result<Reply, IoError> {
        if matches!(self.kind, OpKind::Write | OpKind::DurableWrite)
            && self.bufs.len() == 1
            && let Some(buf) = self.bufs.pop()
        {
            return Ok(Reply::Written(buf));
        }
        Ok(Reply::WrittenV(self.bufs))
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn sqe(
        &mut self,
        fd: std::os::fd::RawFd,
    ) -> Result<io_uring::squeue::Entry, IoError> {
        use io_uring::{opcode, types};
        let pos = self.position()? as u64;
        self.build_iov();
        let flags = if self.kind == OpKind::DurableWrite {
            libc::RWF_DSYNC
        } else {
            0
        };
        Ok(match self.iov.as_slice() {
            [one] => {
                opcode::Write::new(types::Fd(fd), one.iov_base as *const u8, one.iov_len as u32)
                    .offset(pos)
                    .rw_flags(flags)
                    .build()
            }
            many => opcode::Writev::new(types::Fd(fd), many.as_ptr(), many.len() as u32)
                .offset(pos)
                .rw_flags(flags)
                .build(),
        })
    }

    pub(crate) fn on_cqe(&mut self, res: i32) -> Step {
        match usize::try_from(res) {
            Err(_) => errno_step(self.kind, &self.file, -res),
            Ok(0) if self.done < self.total => Step::Failed(self.short()),
            Ok(n) => {
                self.done += n;
                if self.done >= self.total {
                    Step::Done
                } else {
                    Step::Again
                }
            }
        }
    }
}
