//! Positioned read: fill the buffer, resubmitting after short reads, until it
//! is full or end of file. `exact` makes end of file a `ShortRead` error.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{MAX_TRANSFER, Step, errno_step};
use crate::buf::IoBuf;
use crate::error::{FileRef, IoError};
use crate::request::{OpKind, Reply};

pub(crate) struct ReadOp {
    file: FileRef,
    offset: u64,
    buf: IoBuf,
    exact: bool,
    done: usize,
}

impl ReadOp {
    pub(crate) fn new(file: FileRef, offset: u64, buf: IoBuf, exact: bool) -> ReadOp {
        ReadOp {
            file,
            offset,
            buf,
            exact,
            done: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn remaining(&self) -> usize {
        (self.buf.len() - self.done).min(MAX_TRANSFER)
    }

    pub(crate) fn run_blocking(mut self, file: &File) -> Result<Reply, IoError> {
        while self.done < self.buf.len() {
            let end = self.done + self.remaining();
            match file.read_at(
                &mut self.buf[self.done..end],
                self.offset + self.done as u64,
            ) {
                Ok(0) => break,
                Ok(n) => self.done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(IoError::from_os(OpKind::Read, self.file, e)),
            }
        }
        self.into_reply()
    }

    /// The reply once no more bytes will come.
    pub(crate) fn into_reply(self) -> Result<Reply, IoError> {
        if self.exact && self.done < self.buf.len() {
            return Err(IoError::ShortRead {
                file: self.file,
                offset: self.offset,
                wanted: self.buf.len(),
                got: self.done,
            });
        }
        Ok(Reply::Read {
            buf: self.buf,
            n: self.done,
        })
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn sqe(&mut self, fd: std::os::fd::RawFd) -> io_uring::squeue::Entry {
        use io_uring::{opcode, types};
        let len = self.remaining();
        // The pointer stays inside the buffer: done <= len.
        let ptr = self.buf[self.done..].as_mut_ptr();
        opcode::Read::new(types::Fd(fd), ptr, len as u32)
            .offset(self.offset + self.done as u64)
            .build()
    }

    pub(crate) fn on_cqe(&mut self, res: i32) -> Step {
        match usize::try_from(res) {
            Err(_) => errno_step(OpKind::Read, &self.file, -res),
            Ok(0) => Step::Done,
            Ok(n) => {
                self.done += n;
                if self.done >= self.buf.len() {
                    Step::Done
                } else {
                    Step::Again
                }
            }
        }
    }
}
