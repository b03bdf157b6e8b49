//! The Linux io_uring backend.
//!
//! One ring, shared by every thread (`ring.rs`). The thread that submits a
//! read, write, writev, fsync, fdatasync or allocate pushes the entry and
//! enters the kernel itself, then reaps: what the kernel completes inline (a
//! read the page cache serves; a buffered write, on file systems that take
//! one without blocking, which ext4 does not) is finished before `submit`
//! returns, on the submitting thread. What the kernel hands to its workers
//! instead is reaped by the thread that waits for it, or by the dispatcher
//! thread when nobody does (`reaper.rs`); and the thread that submitted it
//! does not exit before it completes, since the kernel would cancel it
//! (`thread_exit.rs`).
//!
//! Which thread runs what:
//! - read, write, writev, fsync, fdatasync, allocate: the ring, entered from
//!   the submitting thread;
//! - open, remove, rename, read_dir, create_dir, sync_dir, set_len, size and
//!   close: synchronously on the submitting thread, inside `submit` (they are
//!   rare and have no ring opcode worth using here). They are not ordered
//!   against ring operations still in flight (contract 4 in the crate docs):
//!   wait for the writes before a `set_len` that must follow them;
//! - a read, write or sync given to [`AsyncIo::run_blocking`]: the plain
//!   system call on the calling thread (no ring entry, no completion to
//!   reap, and no future: the answer is returned as it comes, the request
//!   followed from admission by a `Direct` instead of a ticket, see
//!   `driver.rs`). Such a write takes its sequence number in the file's
//!   sync order like a ring write (ring operations take theirs at
//!   submission too, so the order is the submission order) and pushes the
//!   ring syncs it releases; such a sync runs here only if no write of the
//!   file is in flight, and otherwise goes to the ring to be held (and this
//!   thread waits for its future).
//!
//! Detection: [`UringIo::new`] fails with `BackendUnavailable` when the ring
//! cannot be set up or lacks an opcode we use; `open_backend` then falls back.

mod reaper;
mod ring;
mod thread_exit;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle, ThreadId};

use io_uring::{IoUring, Probe, opcode};
use parking_lot::Mutex;

use crate::AsyncIo;
use crate::config::IoConfig;
use crate::driver::{Core, Direct, Ticket};
use crate::error::IoError;
use crate::file::{FileEntry, FileTable};
use crate::future::{self, Driver, IoFuture};
use crate::op::{self, FileOp, Prepared};
use crate::request::{FileClass, OpKind, Rejected, Reply, Request};
use crate::stats::IoStats;
use ring::{InFlight, Ring};

/// Ring entries are capped here; deeper queues wait in the ring's backlog.
/// 4096 entries cost ~256 KiB of kernel memory per ring.
const MAX_RING_ENTRIES: u32 = 4096;

/// The io_uring backend.
pub struct UringIo {
    core: Arc<Core>,
    files: FileTable<usize>,
    ring: Arc<Ring>,
    /// What the futures of ring requests ask for help (the ring).
    driver: Weak<dyn Driver>,
    draining: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: Option<ThreadId>,
}

impl UringIo {
    /// Sets up a ring of `config.queue_depth` entries (capped) and starts
    /// the dispatcher thread.
    pub fn new(config: &IoConfig) -> Result<UringIo, IoError> {
        config.validate()?;
        let unavailable = |source| IoError::BackendUnavailable {
            backend: "io-uring",
            source,
        };
        let entries = u32::try_from(config.queue_depth)
            .unwrap_or(MAX_RING_ENTRIES)
            .clamp(2, MAX_RING_ENTRIES)
            .next_power_of_two();
        let uring = IoUring::new(entries).map_err(unavailable)?;
        check_opcodes(&uring).map_err(unavailable)?;
        let ring = Arc::new(Ring::new(uring));
        thread_exit::register(&ring);
        let ring2 = Arc::clone(&ring);
        let handle = thread::Builder::new()
            .name("keel-io-uring".into())
            .spawn(move || ring2.run_dispatcher())
            .map_err(unavailable)?;
        let weak: Weak<Ring> = Arc::downgrade(&ring);
        Ok(UringIo {
            core: Core::new("io-uring", config.queue_depth),
            files: FileTable::new(),
            driver: weak,
            ring,
            draining: AtomicBool::new(false),
            thread_id: Some(handle.thread().id()),
            thread: Mutex::new(Some(handle)),
        })
    }

    /// Takes a queue permit. A submitter that must wait for one has the
    /// dispatcher reap meanwhile (the requests holding the permits may
    /// have nobody waiting for them).
    fn admit(&self, req: Request, blocking: bool) -> Result<Request, Rejected> {
        match self.core.admit(req, false) {
            Err(r) if blocking && matches!(r.error, IoError::WouldBlock { .. }) => {
                self.ring.need(true);
                let admitted = self.core.admit(*r.request, true);
                self.ring.need(false);
                admitted
            }
            other => other,
        }
    }

    /// Admits a request and starts it; its future answers it (`submit`,
    /// `try_submit`).
    fn submit_inner(&self, req: Request, blocking: bool) -> Result<IoFuture<Reply>, Rejected> {
        let req = self.admit(req, blocking)?;
        let kind = req.kind();
        let prepared = self.prepare(req)?;
        Ok(self.dispatch(prepared, kind))
    }

    /// Resolves an admitted request's handle; a request that cannot run
    /// gives its permit back.
    fn prepare(&self, req: Request) -> Result<Prepared<usize>, Rejected> {
        op::prepare(req, &self.files).inspect_err(|_| self.core.gate.release())
    }

    /// Starts an admitted, prepared request under a ticket whose future
    /// answers it.
    fn dispatch(&self, prepared: Prepared<usize>, kind: OpKind) -> IoFuture<Reply> {
        match prepared {
            Prepared::Close(handle) => {
                let (ticket, fut) = Ticket::new(&self.core, kind, FileClass::Other);
                ticket.finish(self.files.remove(handle).map(|()| Reply::Done));
                fut
            }
            Prepared::Path(req) => {
                let class = match &req {
                    Request::Open { options, .. } => options.class,
                    _ => FileClass::Other,
                };
                let (ticket, fut) = Ticket::new(&self.core, kind, class);
                ticket.finish(self.run_path(&req));
                fut
            }
            Prepared::File { entry, op } => {
                let driver = Some(Weak::clone(&self.driver));
                let (ticket, fut) = Ticket::driven(&self.core, kind, entry.class, driver);
                if matches!(op, FileOp::SetLen(_) | FileOp::Size) {
                    ticket.finish(op.run_blocking(&entry));
                } else {
                    self.start(entry, op, ticket);
                }
                fut
            }
        }
    }

    /// Hands a request to the ring, with its place in the file's sync order
    /// taken now (so an inline sync sees it): a write's sequence number, a
    /// sync's barrier. An empty transfer completes without a system call.
    fn start(&self, entry: Arc<FileEntry<usize>>, op: FileOp, ticket: Ticket) {
        if op.is_noop() {
            ticket.finish(op.into_reply());
            return;
        }
        let mut write_seq = None;
        let mut barrier = None;
        if op.kind().is_write() {
            write_seq = Some(entry.order.lock().begin_write());
        } else if matches!(op, FileOp::Sync(_)) {
            barrier = Some(entry.order.lock().barrier());
        }
        let inf = InFlight {
            entry,
            op,
            ticket,
            write_seq,
            submitter: None,
        };
        self.ring.start(inf, barrier);
    }

    /// `run_blocking` of an admitted operation on an open file: a read, a
    /// write or a sync is the system call on this thread, in the file's
    /// sync order, followed by a [`Direct`] (no ticket, no future: the
    /// answer is returned from here). A read or the start of a writeback
    /// runs here (neither takes part in the sync order); a write registers
    /// like a ring write and pushes the ring syncs it released; a sync runs
    /// here only when no earlier write is in flight, else it goes to the
    /// ring to be held there and this thread waits for it. Anything else is
    /// dispatched and waited for.
    fn run_here(
        &self,
        entry: Arc<FileEntry<usize>>,
        op: FileOp,
        kind: OpKind,
    ) -> Result<Reply, IoError> {
        match op {
            FileOp::Read(_) | FileOp::Writeback(_) => {
                Direct::new(&self.core, kind, entry.class).finish(op.run_blocking(&entry))
            }
            FileOp::Write(_) => {
                let seq = entry.order.lock().begin_write();
                let here = Direct::new(&self.core, kind, entry.class);
                // Finished before it leaves the sync order (see `ring.rs`).
                let outcome = here.finish(op.run_blocking(&entry));
                let released = entry.order.lock().end_write(seq);
                if !released.is_empty() {
                    self.ring.release(released);
                }
                outcome
            }
            FileOp::Sync(_) if entry.order.lock().is_idle() => {
                Direct::new(&self.core, kind, entry.class).finish(op.run_blocking(&entry))
            }
            other => self
                .dispatch(Prepared::File { entry, op: other }, kind)
                .wait(),
        }
    }

    fn run_path(&self, req: &Request) -> Result<Reply, IoError> {
        match req {
            Request::Open { path, options } => {
                let file = op::open(path, options)?;
                let h = self.files.insert(file, path, options.class, options.direct);
                Ok(Reply::Opened(h))
            }
            other => op::run_path_blocking(other),
        }
    }
}

/// Fails when the kernel lacks an opcode this backend submits.
fn check_opcodes(ring: &IoUring) -> std::io::Result<()> {
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    let needed = [
        opcode::Read::CODE,
        opcode::Write::CODE,
        opcode::Writev::CODE,
        opcode::Fsync::CODE,
        opcode::Fallocate::CODE,
    ];
    if needed.iter().all(|&c| probe.is_supported(c)) {
        Ok(())
    } else {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

impl AsyncIo for UringIo {
    fn backend_name(&self) -> &'static str {
        "io-uring"
    }

    fn deterministic(&self) -> bool {
        false
    }

    fn submit(&self, req: Request) -> IoFuture<Reply> {
        let kind = req.kind();
        self.submit_inner(req, true)
            .unwrap_or_else(|r| IoFuture::ready(kind, Err(r.error)))
    }

    fn try_submit(&self, req: Request) -> Result<IoFuture<Reply>, Rejected> {
        self.submit_inner(req, false)
    }

    fn run_blocking(&self, req: Request) -> Result<Reply, IoError> {
        let req = self.admit(req, true).map_err(|r| r.error)?;
        let kind = req.kind();
        match self.prepare(req).map_err(|r| r.error)? {
            Prepared::File { entry, op } => self.run_here(entry, op, kind),
            other => self.dispatch(other, kind).wait(),
        }
    }

    fn queue_depth(&self) -> usize {
        self.core.gate.capacity()
    }

    fn stats(&self) -> IoStats {
        // Completions waiting in the ring count once reaped.
        self.ring.poke();
        self.core.snapshot()
    }

    fn shutdown(&self) {
        // On the dispatcher, or inside a waker a completion ran, this thread
        // may be the one that must finish the requests in flight: do not
        // wait for them (nor join the dispatcher, which waits for them).
        let on_own_thread = self.thread_id == Some(thread::current().id()) || future::in_waker();
        if !self.draining.swap(true, Ordering::SeqCst) {
            // Requests nobody waits for must still complete: the dispatcher
            // reaps from now on.
            self.ring.need(true);
        }
        self.core.shut_down(&self.files, on_own_thread, || {
            self.ring.stop();
            let handle = self.thread.lock().take();
            if let Some(h) = handle
                && !on_own_thread
            {
                let _ = h.join();
            }
        });
    }
}

impl Drop for UringIo {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for UringIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringIo")
            .field("queue_depth", &self.queue_depth())
            .finish()
    }
}
