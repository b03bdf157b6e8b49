//! Keel's asynchronous I/O layer.
//!
//! Everything the engine reads from or writes to disk goes through the
//! object-safe [`AsyncIo`] trait (held as `Arc<dyn AsyncIo>`). A file is
//! opened once and named by a [`FileHandle`] afterwards; every request is
//! submitted without blocking on the I/O itself and returns an [`IoFuture`]
//! that any executor can poll, or that [`IoFuture::wait`] blocks on.
//!
//! Three backends implement it:
//! - [`ThreadPoolIo`]: portable, N workers doing blocking system calls;
//! - `UringIo` (Linux): one io_uring shared by every thread: the submitting
//!   thread enters the kernel itself and reaps what completed inline, a
//!   waiting thread reaps what completes later, a dispatcher thread reaps
//!   for futures nobody waits on;
//! - [`sim::SimIo`]: deterministic and in memory, with a volatile and a
//!   durable image, crashes that tear unsynced writes, and fault injection.
//!
//! The contract every backend keeps (one shared test suite checks it):
//!
//! 1. **Ownership.** Requests own their buffers ([`IoBuf`]); replies hand them
//!    back. Dropping a future never cancels its operation: the backend keeps
//!    the buffer until the kernel is done with it. On failure the buffers of
//!    the request are dropped (the error does not carry them).
//! 2. **Completion.** Every admitted request completes, shutdown included
//!    (`ShutDown` for those that could not run). Shutdown and `Drop` drain
//!    admitted work, then join every thread.
//! 3. **Backpressure.** At most [`AsyncIo::queue_depth`] requests are in
//!    flight; `submit` waits for room, `try_submit` returns `WouldBlock` and
//!    hands the request back. Nothing is dropped.
//! 4. **Sync order.** An fsync/fdatasync completes only after every write,
//!    writev, durable write, allocate or set_len submitted earlier to the
//!    same file has completed (`order.rs`). Nothing else is ordered: wait
//!    for a future before submitting a request that depends on its effect.
//!    So a writeback start ([`AsyncIo::start_writeback`], advice that makes
//!    nothing durable) covers only writes that completed before it, and a
//!    durable write ([`AsyncIo::durable_write_at`]) makes only its own
//!    bytes durable, never the file's earlier writes.
//! 5. **Full transfers.** Writes complete fully or fail; short transfers are
//!    resubmitted. Reads stop early only at end of file: [`AsyncIo::read_at`]
//!    returns the count, [`AsyncIo::read_exact_at`] fails with `ShortRead`.
//! 6. **O_DIRECT** is an open option. Offsets, lengths and buffer addresses
//!    of direct requests must be multiples of [`DIRECT_IO_ALIGN`] (use
//!    [`IoBuf::aligned`]); misuse fails with `Misaligned` before any system
//!    call, and a file system that refuses O_DIRECT fails the open with
//!    `DirectIoUnsupported`.
//!
//! Left out on purpose: cancellation of submitted requests, registered
//! buffers/files, and a Windows IoRing backend (see ARCHITECTURE.md).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod buf;
mod config;
mod driver;
mod error;
mod file;
mod future;
mod gate;
mod op;
mod order;
mod request;
mod stats;
mod thread_pool;

pub mod sim;
#[cfg(target_os = "linux")]
mod uring;
pub mod watch;

#[cfg(feature = "bench")]
pub mod bench;

use std::path::Path;
use std::sync::Arc;

pub use buf::{AlignedBuf, BufArena, DIRECT_IO_ALIGN, IoBuf};
pub use config::{BACKEND_ENV, Backend, IoConfig, MAX_QUEUE_DEPTH, MAX_WORKER_THREADS};
pub use error::{ErrorClass, FileRef, IoError};
pub use future::IoFuture;
pub use request::{
    DIR_MODE, DirEntry, FILE_MODE, FileClass, FileHandle, OpKind, OpenOptions, Rejected, Reply,
    Request,
};
pub use stats::{IoStats, OpStats};
pub use thread_pool::ThreadPoolIo;
#[cfg(target_os = "linux")]
pub use uring::UringIo;

/// Keel's I/O interface. Object safe: the engine holds `Arc<dyn AsyncIo>`.
///
/// Implementors provide [`submit`](AsyncIo::submit),
/// [`try_submit`](AsyncIo::try_submit) and the bookkeeping methods; the typed
/// operations are provided on top of them.
pub trait AsyncIo: Send + Sync {
    /// The backend's name ("thread-pool", "io-uring", "sim").
    fn backend_name(&self) -> &'static str;

    /// Whether the backend's results are a function of the sequence of
    /// requests alone: the simulator's are (the same seed and the same
    /// requests in the same order give the same results, byte for byte),
    /// a real device's are not. A caller that may spread its I/O over
    /// threads or keep it on one (recovery's log read-ahead) keeps it on
    /// one when this is `true`, so that a seed replays the same run. Every
    /// backend, and every wrapper of one, states it: a wrapper of the
    /// simulator forwards it.
    fn deterministic(&self) -> bool;

    /// Submits a request, waiting while the queue is full.
    fn submit(&self, req: Request) -> IoFuture<Reply>;

    /// Submits a request if the queue has room; otherwise hands it back with
    /// `WouldBlock` (or `ShutDown`, `BadHandle`, `Misaligned`).
    fn try_submit(&self, req: Request) -> Result<IoFuture<Reply>, Rejected>;

    /// The most requests in flight at once.
    fn queue_depth(&self) -> usize;

    /// A snapshot of the statistics.
    fn stats(&self) -> IoStats;

    /// Refuses new requests, completes every admitted one and joins the
    /// backend's threads. Idempotent; `Drop` calls it too.
    fn shutdown(&self);

    /// Runs a request to completion and returns its reply, on the calling
    /// thread where the backend can: the thread pool and io_uring make a
    /// read's, a write's or a sync's system call right here instead of handing it to
    /// another thread and waiting for the answer; the simulator runs it as
    /// it runs everything. Otherwise the same contract as
    /// [`submit`](AsyncIo::submit) followed by [`IoFuture::wait`]: a permit
    /// from the queue, the sync order of contract 4 (a sync that must wait
    /// for earlier writes waits for them), statistics, the same errors. For
    /// callers that would block on the result at once anyway, such as the
    /// log's flush leader or a buffer pool miss.
    fn run_blocking(&self, req: Request) -> Result<Reply, IoError> {
        self.submit(req).wait()
    }

    /// [`write_at`](AsyncIo::write_at) run by
    /// [`run_blocking`](AsyncIo::run_blocking).
    fn write_at_blocking(
        &self,
        file: FileHandle,
        offset: u64,
        buf: IoBuf,
    ) -> Result<IoBuf, IoError> {
        self.run_blocking(Request::Write { file, offset, buf })
            .and_then(reply::written)
    }

    /// [`durable_write_at`](AsyncIo::durable_write_at) run by
    /// [`run_blocking`](AsyncIo::run_blocking): the log's flush leader
    /// writes and syncs a batch in one system call on its own thread.
    fn durable_write_at_blocking(
        &self,
        file: FileHandle,
        offset: u64,
        buf: IoBuf,
    ) -> Result<IoBuf, IoError> {
        self.run_blocking(Request::DurableWrite { file, offset, buf })
            .and_then(reply::written)
    }

    /// [`read_exact_at`](AsyncIo::read_exact_at) run by
    /// [`run_blocking`](AsyncIo::run_blocking): for a caller that needs the
    /// page now (a buffer pool miss), where handing the read to another
    /// thread would only add two context switches to a page-cache hit.
    fn read_exact_at_blocking(
        &self,
        file: FileHandle,
        offset: u64,
        buf: IoBuf,
    ) -> Result<IoBuf, IoError> {
        self.run_blocking(Request::Read {
            file,
            offset,
            buf,
            exact: true,
        })
        .and_then(reply::read_exact)
    }

    /// [`fdatasync`](AsyncIo::fdatasync) run by
    /// [`run_blocking`](AsyncIo::run_blocking).
    fn fdatasync_blocking(&self, file: FileHandle) -> Result<(), IoError> {
        self.run_blocking(Request::Sync {
            file,
            data_only: true,
        })
        .and_then(reply::unit)
    }

    /// Opens (or creates) a file.
    fn open(&self, path: &Path, options: OpenOptions) -> IoFuture<FileHandle> {
        self.submit(Request::Open {
            path: path.to_path_buf(),
            options,
        })
        .map_reply(reply::handle)
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns the buffer and the
    /// count, which is smaller only at end of file.
    fn read_at(&self, file: FileHandle, offset: u64, buf: IoBuf) -> IoFuture<(IoBuf, usize)> {
        self.submit(Request::Read {
            file,
            offset,
            buf,
            exact: false,
        })
        .map_reply(reply::read)
    }

    /// Reads exactly `buf.len()` bytes at `offset`; end of file first is a
    /// `ShortRead { offset, wanted, got }` error.
    fn read_exact_at(&self, file: FileHandle, offset: u64, buf: IoBuf) -> IoFuture<IoBuf> {
        self.submit(Request::Read {
            file,
            offset,
            buf,
            exact: true,
        })
        .map_reply(reply::read_exact)
    }

    /// Writes all of `buf` at `offset`; returns the buffer.
    fn write_at(&self, file: FileHandle, offset: u64, buf: IoBuf) -> IoFuture<IoBuf> {
        self.submit(Request::Write { file, offset, buf })
            .map_reply(reply::written)
    }

    /// Writes all of `buf` at `offset` and completes once those bytes are
    /// durable ([`Request::DurableWrite`]: only its own bytes; sync earlier
    /// writes first); returns the buffer.
    fn durable_write_at(&self, file: FileHandle, offset: u64, buf: IoBuf) -> IoFuture<IoBuf> {
        self.submit(Request::DurableWrite { file, offset, buf })
            .map_reply(reply::written)
    }

    /// Writes the buffers back to back from `offset`; returns them.
    fn writev_at(&self, file: FileHandle, offset: u64, bufs: Vec<IoBuf>) -> IoFuture<Vec<IoBuf>> {
        self.submit(Request::WriteV { file, offset, bufs })
            .map_reply(reply::written_v)
    }

    /// fsync: data and metadata durable, after every earlier write.
    fn fsync(&self, file: FileHandle) -> IoFuture<()> {
        self.submit(Request::Sync {
            file,
            data_only: false,
        })
        .map_reply(reply::unit)
    }

    /// fdatasync: data (and the size needed to read it) durable, after every
    /// earlier write.
    fn fdatasync(&self, file: FileHandle) -> IoFuture<()> {
        self.submit(Request::Sync {
            file,
            data_only: true,
        })
        .map_reply(reply::unit)
    }

    /// Starts writing back to the device what completed writes left in
    /// the page cache in `offset..offset + len`, without waiting for it
    /// ([`Request::StartWriteback`]): advice ahead of an fdatasync, which
    /// alone makes the range durable and reports a failed write-back.
    fn start_writeback(&self, file: FileHandle, offset: u64, len: u32) -> IoFuture<()> {
        self.submit(Request::StartWriteback { file, offset, len })
            .map_reply(reply::unit)
    }

    /// Reserves `len` bytes at `offset`, extending the file.
    fn allocate(&self, file: FileHandle, offset: u64, len: u64) -> IoFuture<()> {
        self.submit(Request::Allocate { file, offset, len })
            .map_reply(reply::unit)
    }

    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, file: FileHandle, len: u64) -> IoFuture<()> {
        self.submit(Request::SetLen { file, len })
            .map_reply(reply::unit)
    }

    /// The file's length.
    fn size(&self, file: FileHandle) -> IoFuture<u64> {
        self.submit(Request::Size { file }).map_reply(reply::size)
    }

    /// Closes the handle (at once; requests in flight finish first).
    fn close(&self, file: FileHandle) -> IoFuture<()> {
        self.submit(Request::Close { file }).map_reply(reply::unit)
    }

    /// Removes a file.
    fn remove(&self, path: &Path) -> IoFuture<()> {
        self.submit(Request::Remove {
            path: path.to_path_buf(),
        })
        .map_reply(reply::unit)
    }

    /// Renames a file, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> IoFuture<()> {
        self.submit(Request::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        })
        .map_reply(reply::unit)
    }

    /// Lists a directory, sorted by name.
    fn read_dir(&self, path: &Path) -> IoFuture<Vec<DirEntry>> {
        self.submit(Request::ReadDir {
            path: path.to_path_buf(),
        })
        .map_reply(reply::entries)
    }

    /// Creates a directory, accessible to its owner only ([`DIR_MODE`]).
    fn create_dir(&self, path: &Path) -> IoFuture<()> {
        self.create_dir_with_mode(path, DIR_MODE)
    }

    /// Creates a directory with permission bits `mode` (less the umask).
    fn create_dir_with_mode(&self, path: &Path, mode: u32) -> IoFuture<()> {
        self.submit(Request::CreateDir {
            path: path.to_path_buf(),
            mode,
        })
        .map_reply(reply::unit)
    }

    /// Makes the directory's entries durable (fsync of the directory).
    fn sync_dir(&self, path: &Path) -> IoFuture<()> {
        self.submit(Request::SyncDir {
            path: path.to_path_buf(),
        })
        .map_reply(reply::unit)
    }

    /// syncfs(2): makes every unsynced change on the file system holding
    /// `path` durable — every file's data and every directory's entries,
    /// written by this process or any other (Linux only).
    fn sync_fs(&self, path: &Path) -> IoFuture<()> {
        self.submit(Request::SyncFs {
            path: path.to_path_buf(),
        })
        .map_reply(reply::unit)
    }

    /// [`read_at`](AsyncIo::read_at) without waiting for queue room.
    fn try_read_at(
        &self,
        file: FileHandle,
        offset: u64,
        buf: IoBuf,
    ) -> Result<IoFuture<(IoBuf, usize)>, Rejected> {
        self.try_submit(Request::Read {
            file,
            offset,
            buf,
            exact: false,
        })
        .map(|f| f.map_reply(reply::read))
    }

    /// [`write_at`](AsyncIo::write_at) without waiting for queue room.
    fn try_write_at(
        &self,
        file: FileHandle,
        offset: u64,
        buf: IoBuf,
    ) -> Result<IoFuture<IoBuf>, Rejected> {
        self.try_submit(Request::Write { file, offset, buf })
            .map(|f| f.map_reply(reply::written))
    }

    /// [`writev_at`](AsyncIo::writev_at) without waiting for queue room.
    fn try_writev_at(
        &self,
        file: FileHandle,
        offset: u64,
        bufs: Vec<IoBuf>,
    ) -> Result<IoFuture<Vec<IoBuf>>, Rejected> {
        self.try_submit(Request::WriteV { file, offset, bufs })
            .map(|f| f.map_reply(reply::written_v))
    }
}

/// Builds the configured backend. `Auto` falls back to the thread pool when
/// io_uring cannot be set up, saying so once on stderr.
pub fn open_backend(config: &IoConfig) -> Result<Arc<dyn AsyncIo>, IoError> {
    config.validate()?;
    match config.backend {
        Backend::ThreadPool => Ok(Arc::new(ThreadPoolIo::new(config)?)),
        Backend::IoUring => open_uring(config),
        Backend::Auto => match open_uring(config) {
            Ok(io) => Ok(io),
            Err(e) => {
                eprintln!("keel-io: io_uring unavailable ({e}); using the thread-pool backend");
                Ok(Arc::new(ThreadPoolIo::new(config)?))
            }
        },
    }
}

#[cfg(target_os = "linux")]
fn open_uring(config: &IoConfig) -> Result<Arc<dyn AsyncIo>, IoError> {
    Ok(Arc::new(UringIo::new(config)?))
}

#[cfg(not(target_os = "linux"))]
fn open_uring(_config: &IoConfig) -> Result<Arc<dyn AsyncIo>, IoError> {
    Err(IoError::BackendUnavailable {
        backend: "io-uring",
        source: std::io::Error::from(std::io::ErrorKind::Unsupported),
    })
}

/// Conversions from [`Reply`] to the typed results of the provided methods.
mod reply {
    use super::*;

    fn mismatch<T>(op: OpKind) -> Result<T, IoError> {
        Err(IoError::InvalidArgument {
            op,
            file: FileRef::default(),
            reason: "the backend returned a reply of the wrong kind",
            source: None,
        })
    }

    pub(super) fn unit(r: Reply) -> Result<(), IoError> {
        match r {
            Reply::Done => Ok(()),
            _ => mismatch(OpKind::Fsync),
        }
    }

    pub(super) fn handle(r: Reply) -> Result<FileHandle, IoError> {
        match r {
            Reply::Opened(h) => Ok(h),
            _ => mismatch(OpKind::Open),
        }
    }

    pub(super) fn read(r: Reply) -> Result<(IoBuf, usize), IoError> {
        match r {
            Reply::Read { buf, n } => Ok((buf, n)),
            _ => mismatch(OpKind::Read),
        }
    }

    pub(super) fn read_exact(r: Reply) -> Result<IoBuf, IoError> {
        read(r).map(|(buf, _)| buf)
    }

    pub(super) fn written(r: Reply) -> Result<IoBuf, IoError> {
        match r {
            Reply::Written(b) => Ok(b),
            _ => mismatch(OpKind::Write),
        }
    }

    pub(super) fn written_v(r: Reply) -> Result<Vec<IoBuf>, IoError> {
        match r {
            Reply::WrittenV(b) => Ok(b),
            _ => mismatch(OpKind::WriteV),
        }
    }

    pub(super) fn size(r: Reply) -> Result<u64, IoError> {
        match r {
            Reply::Size(s) => Ok(s),
            _ => mismatch(OpKind::Size),
        }
    }

    pub(super) fn entries(r: Reply) -> Result<Vec<DirEntry>, IoError> {
        match r {
            Reply::Entries(e) => Ok(e),
            _ => mismatch(OpKind::ReadDir),
        }
    }
}
