//! The dispatcher thread: the only owner of the ring.
//!
//! One loop iteration:
//!
//! ```text
//!   intake()        take new submissions from the channel (writes carry
//!                   the sequence number and syncs the barrier they took at
//!                   submission; a sync is held while writes before it are
//!                   in flight — order.rs), and the held syncs that inline
//!                   writes released
//!   flush()         push ready operations' entries into the SQ (and re-arm
//!                   the eventfd read)
//!   enter(want)     io_uring_enter: submit the batch; sleep for one
//!                   completion unless new submissions are already waiting
//!   reap()          for each completion: resubmit the remainder, or finish
//!                   the ticket; a finished write may release held syncs
//! ```
//!
//! Invariants:
//! - An operation's slot in `slots` lives from intake until its final
//!   completion is reaped; the kernel only ever holds pointers into the
//!   heap memory of operations that are in `slots` (their buffers and iovec
//!   arrays, which do not move when the slot is moved).
//! - The eventfd poll has at most one entry in flight, and is reaped before
//!   the thread exits.
//! - The loop exits only when stopping, with no operation in `slots` and the
//!   channel closed and empty.
//!
//! If the ring itself fails (an `io_uring_enter` error other than EINTR,
//! EAGAIN or EBUSY), every operation in flight is completed with the error
//! and its memory deliberately leaked: the kernel may still hold pointers to
//! it, and leaking is the only safe choice left.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, TryRecvError};
use io_uring::{IoUring, opcode, types};

use super::{Intake, Shared, Submission};
use crate::driver::Ticket;
use crate::error::{FileRef, IoError};
use crate::file::FileEntry;
use crate::op::{FileOp, Step};

/// user_data of the eventfd read (slot indexes are far below it).
const WAKE_TOKEN: u64 = u64::MAX;

/// A request's place in its file's sync order (taken at submission).
pub(crate) enum Order {
    None,
    Write(u64),
    Sync(u64),
}

struct InFlight {
    entry: Arc<FileEntry<usize>>,
    op: FileOp,
    ticket: Ticket,
    order: Order,
}

pub(super) struct Dispatcher {
    ring: IoUring,
    rx: Receiver<Intake>,
    rx_open: bool,
    shared: Arc<Shared>,
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
    live: usize,
    ready: VecDeque<usize>,
    cqes: Vec<(u64, i32)>,
    wake_buf: Box<u64>,
    wake_armed: bool,
}

impl Dispatcher {
    pub(super) fn new(ring: IoUring, rx: Receiver<Intake>, shared: Arc<Shared>) -> Dispatcher {
        Dispatcher {
            ring,
            rx,
            rx_open: true,
            shared,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            ready: VecDeque::new(),
            cqes: Vec::new(),
            wake_buf: Box::new(0),
            wake_armed: false,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            self.intake();
            self.flush();
            let stopping = self.shared.stopping.load(Ordering::SeqCst);
            if self.live == 0 && !self.rx_open && stopping {
                break;
            }
            if let Err(e) = self.enter() {
                self.fail_all(&e);
                break;
            }
            self.reap();
        }
        self.quiesce_wake();
    }

    fn intake(&mut self) {
        while self.rx_open {
            match self.rx.try_recv() {
                Ok(Intake::Op(sub)) => self.accept(sub),
                Ok(Intake::Release(slots)) => self.ready.extend(slots),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.rx_open = false,
            }
        }
    }

    fn accept(&mut self, sub: Submission) {
        let Submission {
            entry,
            op,
            ticket,
            order,
        } = sub;
        if op.is_noop() {
            ticket.finish(op.into_reply());
            return;
        }
        let (order, sync_barrier) = match order {
            Order::Sync(barrier) => (Order::None, Some(barrier)),
            other => (other, None),
        };
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let entry2 = Arc::clone(&entry);
        if let Some(slot) = self.slots.get_mut(idx) {
            *slot = Some(InFlight {
                entry,
                op,
                ticket,
                order,
            });
        }
        self.live += 1;
        match sync_barrier {
            Some(barrier) => {
                if let Some(idx) = entry2.order.lock().start_sync(barrier, idx) {
                    self.ready.push_back(idx);
                }
            }
            None => self.ready.push_back(idx),
        }
    }

    /// Pushes ready entries into the submission queue.
    fn flush(&mut self) {
        if !self.wake_armed && self.push_wake() {
            self.wake_armed = true;
        }
        while let Some(&idx) = self.ready.front() {
            let Some(inf) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
                self.ready.pop_front();
                continue;
            };
            let fd = inf.entry.file.as_raw_fd();
            let sqe = match inf.op.sqe(fd) {
                Ok(Some(sqe)) => sqe.user_data(idx as u64),
                Ok(None) => {
                    let err = not_a_ring_op(inf.entry.file_ref(), inf.op.kind());
                    self.ready.pop_front();
                    self.finish(idx, Err(err));
                    continue;
                }
                Err(e) => {
                    self.ready.pop_front();
                    self.finish(idx, Err(e));
                    continue;
                }
            };
            // SAFETY: the entry points into the buffers (and iovec array) of
            // the operation in slots[idx], which stays there, unmoved in
            // memory, until its completion is reaped (module invariant).
            let pushed = unsafe { self.ring.submission().push(&sqe) };
            if pushed.is_ok() {
                self.ready.pop_front();
            } else if self.ring.submit().is_err() || self.ring.submission().is_full() {
                // The kernel has not consumed the queue yet; retry after the
                // next enter.
                break;
            }
        }
    }

    fn push_wake(&mut self) -> bool {
        let sqe = opcode::PollAdd::new(
            types::Fd(self.shared.eventfd.as_raw_fd()),
            libc::POLLIN as u32,
        )
        .build()
        .user_data(WAKE_TOKEN);
        // SAFETY: a poll entry refers to no user memory; the eventfd it polls
        // is owned by `shared`, which outlives the ring (the poll is reaped in
        // `quiesce_wake` before the thread exits).
        unsafe { self.ring.submission().push(&sqe) }.is_ok()
    }

    /// Resets the eventfd after its poll fired.
    fn drain_wake(&mut self) {
        // SAFETY: reads 8 bytes into a live, writable u64 owned by self from
        // a non-blocking eventfd we own; EAGAIN (already drained) is fine.
        let _ = unsafe {
            libc::read(
                self.shared.eventfd.as_raw_fd(),
                (&raw mut *self.wake_buf).cast::<libc::c_void>(),
                8,
            )
        };
    }

    /// Submits the batch and, unless work is already waiting, sleeps until a
    /// completion (an operation's, or the eventfd read's) arrives.
    fn enter(&mut self) -> std::io::Result<()> {
        let sleepy = self.ready.is_empty();
        let mut want = 0;
        if sleepy {
            self.shared.sleeping.store(true, Ordering::SeqCst);
            let quiet = self.rx.is_empty()
                && !(self.shared.stopping.load(Ordering::SeqCst) && self.live == 0);
            if quiet && self.wake_armed {
                want = 1;
            } else {
                self.shared.sleeping.store(false, Ordering::SeqCst);
            }
        }
        let r = self.ring.submit_and_wait(want);
        self.shared.sleeping.store(false, Ordering::SeqCst);
        match r {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR | libc::EAGAIN | libc::EBUSY) => Ok(()),
                _ => Err(e),
            },
        }
    }

    fn reap(&mut self) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
        for &(user_data, res) in &cqes {
            if user_data == WAKE_TOKEN {
                self.wake_armed = false;
                self.drain_wake();
                continue;
            }
            let Ok(idx) = usize::try_from(user_data) else {
                continue;
            };
            let Some(inf) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            match inf.op.on_cqe(res, &inf.entry.file) {
                Step::Again => self.ready.push_back(idx),
                Step::Done => self.finish(idx, Ok(())),
                Step::Failed(e) => self.finish(idx, Err(e)),
            }
        }
        cqes.clear();
        self.cqes = cqes;
    }

    /// Retires slot `idx`: releases syncs its write was holding, completes
    /// the future.
    fn finish(&mut self, idx: usize, result: Result<(), IoError>) {
        let Some(inf) = self.slots.get_mut(idx).and_then(Option::take) else {
            return;
        };
        self.free.push(idx);
        self.live -= 1;
        let InFlight {
            entry,
            op,
            ticket,
            order,
        } = inf;
        // The future completes before the write leaves the sync order, so a
        // sync it lets start (held here, or inline on another thread) never
        // finishes before the write's future does.
        ticket.finish(result.and_then(|()| op.into_reply()));
        if let Order::Write(seq) = order {
            let released = entry.order.lock().end_write(seq);
            self.ready.extend(released);
        }
    }

    /// The ring is broken: fail everything, leaking what the kernel may
    /// still point into.
    fn fail_all(&mut self, e: &std::io::Error) {
        for slot in &mut self.slots {
            if let Some(inf) = slot.take() {
                let err = IoError::from_os(
                    inf.op.kind(),
                    inf.entry.file_ref(),
                    std::io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)),
                );
                inf.ticket.finish(Err(err));
                std::mem::forget(inf.op);
            }
        }
        self.live = 0;
        self.ready.clear();
        // Submissions still queued were never given to the kernel: dropping
        // them completes their futures with ShutDown.
        while self.rx.try_recv().is_ok() {}
        self.wake_armed = false;
    }

    /// Completes the armed eventfd poll before the ring is dropped.
    fn quiesce_wake(&mut self) {
        while self.wake_armed {
            self.shared.kick();
            if self.ring.submit_and_wait(1).is_err() {
                return;
            }
            let woke = self.ring.completion().any(|c| c.user_data() == WAKE_TOKEN);
            if woke {
                self.wake_armed = false;
            }
        }
    }
}

fn not_a_ring_op(file: FileRef, op: crate::request::OpKind) -> IoError {
    IoError::InvalidArgument {
        op,
        file,
        reason: "operation cannot be submitted to the ring",
        source: None,
    }
}
