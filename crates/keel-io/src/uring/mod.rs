//! The Linux io_uring backend.
//!
//! One dispatcher thread owns the ring (`dispatcher.rs`). Submitting threads
//! resolve the handle, take a queue permit, and send the prepared operation
//! over a channel; the dispatcher pushes submission entries in batches,
//! enters the kernel once per loop, reaps completions, resubmits short
//! transfers and completes futures.
//!
//! Which thread runs what:
//! - read, write, writev, fsync, fdatasync, allocate: the ring;
//! - open, remove, rename, read_dir, create_dir, sync_dir, set_len, size and
//!   close: synchronously on the submitting thread, inside `submit` (they are
//!   rare, and running them there keeps the dispatcher from ever blocking).
//!   They are not ordered against ring operations still in flight (contract
//!   4 in the crate docs): wait for the writes before a `set_len` that must
//!   follow them;
//! - a write or a sync given to [`AsyncIo::run_blocking`]: the plain system
//!   call on the calling thread, which would only wait for the ring anyway
//!   (one dispatcher round trip less: no channel, no eventfd, no wake-up).
//!   Such a write takes its sequence number in the file's sync order like a
//!   ring write (ring operations take theirs at submission, not at intake,
//!   so the order is the submission order) and hands the ring syncs it
//!   releases to the dispatcher; such a sync runs here only if no write of
//!   the file is in flight, and otherwise goes to the ring to be held.
//!
//! Waking the dispatcher: it sleeps in `io_uring_enter` waiting for a
//! completion. A poll of an eventfd is always armed in the ring, so a
//! submitter that finds the dispatcher asleep (the `sleeping` flag) writes the
//! eventfd and the poll's completion wakes it; the dispatcher then drains the
//! (non-blocking) eventfd and re-arms the poll. A poll rather than a read:
//! an eventfd read submitted to the ring waits in an io-wq kernel thread,
//! which doubled the context switches per wake-up. A busy dispatcher is never
//! written to, which keeps the submission path at one channel send.
//!
//! Detection: [`UringIo::new`] fails with `BackendUnavailable` when the ring
//! cannot be set up or lacks an opcode we use; `open_backend` then falls back.

mod dispatcher;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle, ThreadId};

use crossbeam_channel::Sender;
use io_uring::{IoUring, Probe, opcode};
use parking_lot::Mutex;

use crate::AsyncIo;
use crate::config::IoConfig;
use crate::driver::{Core, Ticket};
use crate::error::IoError;
use crate::file::{FileEntry, FileTable};
use crate::future::IoFuture;
use crate::op::{self, FileOp, Prepared};
use crate::request::{FileClass, Rejected, Reply, Request};
use crate::stats::IoStats;

/// Ring entries are capped here; deeper queues wait in the dispatcher's
/// backlog. 4096 entries cost ~256 KiB of kernel memory per ring.
const MAX_RING_ENTRIES: u32 = 4096;

/// An operation on its way to the dispatcher, with its place in the file's
/// sync order taken at submission (so an inline sync sees it).
pub(crate) struct Submission {
    entry: Arc<FileEntry<usize>>,
    op: FileOp,
    ticket: Ticket,
    order: dispatcher::Order,
}

/// What submitters send the dispatcher.
pub(crate) enum Intake {
    /// An operation for the ring.
    Op(Submission),
    /// Slots of held syncs that an inline write released.
    Release(Vec<usize>),
}

/// What the dispatcher and the submitters share.
pub(crate) struct Shared {
    core: Arc<Core>,
    files: FileTable<usize>,
    eventfd: OwnedFd,
    sleeping: AtomicBool,
    stopping: AtomicBool,
}

impl Shared {
    /// Wakes the dispatcher if it is (about to be) asleep.
    fn wake(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.kick();
        }
    }

    /// Writes the eventfd unconditionally.
    fn kick(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd we own. A
        // failure (the counter saturated) still leaves the fd readable, which
        // is all the wake-up needs.
        let _ = unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&raw const one).cast::<libc::c_void>(),
                8,
            )
        };
    }
}

/// The io_uring backend.
pub struct UringIo {
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<Intake>>>,
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
        let entries = u32::try_from(config.queue_depth + 1)
            .unwrap_or(MAX_RING_ENTRIES)
            .clamp(2, MAX_RING_ENTRIES)
            .next_power_of_two();
        let ring = IoUring::new(entries).map_err(unavailable)?;
        check_opcodes(&ring).map_err(unavailable)?;
        // SAFETY: eventfd has no memory-safety preconditions.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(unavailable(std::io::Error::last_os_error()));
        }
        // SAFETY: efd is a fresh descriptor that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        let shared = Arc::new(Shared {
            core: Core::new("io-uring", config.queue_depth),
            files: FileTable::new(),
            eventfd,
            sleeping: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let disp = dispatcher::Dispatcher::new(ring, rx, Arc::clone(&shared));
        let handle = thread::Builder::new()
            .name("keel-io-uring".into())
            .spawn(move || disp.run())
            .map_err(unavailable)?;
        Ok(UringIo {
            shared,
            thread_id: Some(handle.thread().id()),
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(handle)),
        })
    }

    /// Admits a request; `here` runs a write or sync on this thread.
    fn submit_inner(
        &self,
        req: Request,
        blocking: bool,
        here: bool,
    ) -> Result<IoFuture<Reply>, Rejected> {
        let s = &self.shared;
        let req = s.core.admit(req, blocking)?;
        let kind = req.kind();
        let prepared = match op::prepare(req, &s.files) {
            Ok(p) => p,
            Err(rejected) => {
                s.core.gate.release();
                return Err(rejected);
            }
        };
        match prepared {
            Prepared::Close(handle) => {
                let (ticket, fut) = Ticket::new(&s.core, kind, FileClass::Other);
                ticket.finish(s.files.remove(handle).map(|()| Reply::Done));
                Ok(fut)
            }
            Prepared::Path(req) => {
                let class = match &req {
                    Request::Open { options, .. } => options.class,
                    _ => FileClass::Other,
                };
                let (ticket, fut) = Ticket::new(&s.core, kind, class);
                ticket.finish(self.run_path(&req));
                Ok(fut)
            }
            Prepared::File { entry, op } => {
                let (ticket, fut) = Ticket::new(&s.core, kind, entry.class);
                if matches!(op, FileOp::SetLen(_) | FileOp::Size) {
                    ticket.finish(op.run_blocking(&entry));
                    return Ok(fut);
                }
                let sub = if here {
                    self.run_here(entry, op, ticket)
                } else {
                    Some(submission(entry, op, ticket))
                };
                if let Some(sub) = sub {
                    self.send(Intake::Op(sub));
                }
                Ok(fut)
            }
        }
    }

    /// Hands a message to the dispatcher and wakes it. If the dispatcher is
    /// gone, a submission drops here and its ticket completes the future
    /// with ShutDown.
    fn send(&self, msg: Intake) {
        if let Some(tx) = self.tx.lock().as_ref() {
            let _ = tx.send(msg);
        }
        self.shared.wake();
    }

    /// `run_blocking` of a read, a write or a sync: the system call on this
    /// thread, in the file's sync order. A read runs here (reads take no
    /// part in the sync order); a write registers like a ring write and
    /// passes the ring syncs it released to the dispatcher; a sync runs here
    /// only when no earlier write is in flight, else it goes to the ring
    /// (returned) to be held there. Anything else goes to the ring.
    fn run_here(
        &self,
        entry: Arc<FileEntry<usize>>,
        op: FileOp,
        ticket: Ticket,
    ) -> Option<Submission> {
        match op {
            FileOp::Read(_) => {
                ticket.finish(op.run_blocking(&entry));
                None
            }
            FileOp::Write(_) => {
                let seq = entry.order.lock().begin_write();
                let outcome = op.run_blocking(&entry);
                // Completed before it leaves the sync order (see the
                // dispatcher's `finish`).
                ticket.finish(outcome);
                let released = entry.order.lock().end_write(seq);
                if !released.is_empty() {
                    self.send(Intake::Release(released));
                }
                None
            }
            FileOp::Sync(_) if entry.order.lock().is_idle() => {
                ticket.finish(op.run_blocking(&entry));
                None
            }
            other => Some(submission(entry, other, ticket)),
        }
    }

    fn run_path(&self, req: &Request) -> Result<Reply, IoError> {
        match req {
            Request::Open { path, options } => {
                let file = op::open(path, options)?;
                let h = self
                    .shared
                    .files
                    .insert(file, path, options.class, options.direct);
                Ok(Reply::Opened(h))
            }
            other => op::run_path_blocking(other),
        }
    }
}

/// Fails when the kernel lacks an opcode this backend submits.
/// A ring submission, registered in its file's sync order.
fn submission(entry: Arc<FileEntry<usize>>, op: FileOp, ticket: Ticket) -> Submission {
    let order = if op.is_noop() {
        dispatcher::Order::None
    } else if op.kind().is_write() {
        dispatcher::Order::Write(entry.order.lock().begin_write())
    } else if matches!(op, FileOp::Sync(_)) {
        dispatcher::Order::Sync(entry.order.lock().barrier())
    } else {
        dispatcher::Order::None
    };
    Submission {
        entry,
        op,
        ticket,
        order,
    }
}

fn check_opcodes(ring: &IoUring) -> std::io::Result<()> {
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    let needed = [
        opcode::Read::CODE,
        opcode::Write::CODE,
        opcode::Writev::CODE,
        opcode::Fsync::CODE,
        opcode::Fallocate::CODE,
        opcode::PollAdd::CODE,
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
        self.submit_inner(req, true, false)
            .unwrap_or_else(|r| IoFuture::ready(kind, Err(r.error)))
    }

    fn try_submit(&self, req: Request) -> Result<IoFuture<Reply>, Rejected> {
        self.submit_inner(req, false, false)
    }

    fn run_blocking(&self, req: Request) -> Result<Reply, IoError> {
        self.submit_inner(req, true, true)
            .map_err(|r| r.error)?
            .wait()
    }

    fn queue_depth(&self) -> usize {
        self.shared.core.gate.capacity()
    }

    fn stats(&self) -> IoStats {
        self.shared.core.snapshot()
    }

    fn shutdown(&self) {
        let s = &self.shared;
        let on_dispatcher = self.thread_id == Some(thread::current().id());
        s.core.shut_down(&s.files, on_dispatcher, || {
            s.stopping.store(true, Ordering::SeqCst);
            // Dropping the sender also ends the dispatcher's intake.
            self.tx.lock().take();
            s.kick();
            let handle = self.thread.lock().take();
            if let Some(h) = handle
                && !on_dispatcher
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
