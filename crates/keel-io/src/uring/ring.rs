//! The shared ring: requests table, submission queue and completion queue
//! behind one lock, used by every thread.
//!
//! A submitting thread stores its request in the table, pushes its entry
//! and enters the kernel itself (`io_uring_enter` to submit, without
//! waiting), then reaps the completion queue, all in one *turn* under the
//! lock ([`Ring::start`]). A buffered read that the page cache serves
//! completes inside that very call, so the request is finished before
//! `submit` returns and no other thread is involved. Requests the kernel
//! hands to its own workers (every fsync; on ext4 every buffered write; a
//! read of an uncached page) complete later and are reaped by whoever gets
//! there first: the next submitter, a thread waiting on a future, or the
//! dispatcher thread (`reaper.rs` says who waits in the kernel for them,
//! and why only one thread at a time).
//!
//! The lock (`state`) covers the table, both queues and the submissions
//! themselves. Entering the kernel to submit under it costs no parallelism
//! (the kernel serializes submissions to a ring on its own lock anyway) and
//! tells exactly which thread submitted which entry: the kernel queues the
//! work it cannot finish at once on workers of that thread, so the thread
//! must not exit before the entry completes (`thread_exit.rs`). Waiting in
//! the kernel happens without the lock. No ticket is finished or dropped
//! under it: completing a future may call back into the ring
//! (`Driver::disown`) and runs wakers, so [`Done`] carries each finished
//! request out of the lock.
//!
//! Invariants:
//! - A request's slot lives from [`Ring::start`] until its final completion
//!   is reaped; the kernel only ever holds pointers into the heap memory of
//!   requests in `slots` (their buffers and iovec arrays, which do not move
//!   when the slot moves).
//! - `in_kernel` counts the entries pushed and not yet reaped, and stays
//!   below the submission queue's size: the submission queue can never be
//!   full, and the completion queue (twice as large) never overflows. A
//!   request that finds it full waits in `backlog`, which every reap drains.
//! - Every entry is pushed and submitted in the same turn; `unsubmitted`
//!   holds, in queue order, only those an interrupted enter left behind,
//!   and the next turn submits them.
//! - A sync is pushed only when its file's sync order allows it
//!   (`order.rs`); until then it is held there by slot index, and the
//!   completion of the write that releases it pushes it.
//! - If the ring itself fails (an `io_uring_enter` error other than EINTR,
//!   EAGAIN or EBUSY), every request in the table completes with the error
//!   and its memory is deliberately leaked (the kernel may still point into
//!   it); later requests fail with the same error.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Weak};

use io_uring::IoUring;
use parking_lot::{Condvar, Mutex};

use super::thread_exit::{self, Tracker};
use crate::driver::Ticket;
use crate::error::{FileRef, IoError};
use crate::file::FileEntry;
use crate::future::Slot;
use crate::op::{FileOp, Step};
use crate::request::OpKind;

/// io_uring_enter's flag to wait for completions.
const IORING_ENTER_GETEVENTS: u32 = 1;

/// A ring request, from submission to its final completion.
pub(crate) struct InFlight {
    pub(crate) entry: Arc<FileEntry<usize>>,
    pub(crate) op: FileOp,
    pub(crate) ticket: Ticket,
    /// A write's sequence number in its file's sync order.
    pub(crate) write_seq: Option<u64>,
    /// The thread whose enter submitted the entry now in the kernel.
    pub(crate) submitter: Option<Arc<Tracker>>,
}

/// A request out of the table with its outcome, finished outside the lock.
pub(super) struct Done {
    inf: InFlight,
    result: Result<(), IoError>,
}

impl Done {
    /// Completes the future, then takes a write out of its file's sync
    /// order; returns the slots of the held syncs that released.
    fn finish(self) -> Vec<usize> {
        let InFlight {
            entry,
            op,
            ticket,
            write_seq,
            ..
        } = self.inf;
        // The future completes before the write leaves the sync order, so a
        // sync it lets start (pushed here, or run inline on another thread)
        // never finishes before the write's future does.
        ticket.finish(self.result.and_then(|()| op.into_reply()));
        match write_seq {
            Some(seq) => entry.order.lock().end_write(seq),
            None => Vec::new(),
        }
    }
}

/// What one turn under the lock left to do outside it.
#[derive(Default)]
pub(super) struct Batch {
    done: Vec<Done>,
    /// Requests of a broken ring, with its errno.
    lost: Vec<InFlight>,
    errno: i32,
    /// A waiter offered the free reaper role (`reaper.rs`).
    pub(super) offer: Option<Weak<Slot>>,
}

pub(super) struct State {
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
    /// Requests in `slots`.
    pub(super) live: usize,
    /// Entries pushed and not yet reaped.
    pub(super) in_kernel: usize,
    /// Entries pushed and not yet submitted, in queue order.
    unsubmitted: VecDeque<usize>,
    backlog: VecDeque<usize>,
    /// Some thread holds the reaper role (`reaper.rs`).
    pub(super) reaper: bool,
    /// Threads sleeping on their futures until offered the role.
    pub(super) waiters: VecDeque<Weak<Slot>>,
    /// Reasons the dispatcher must reap: adopted requests, submitters
    /// waiting for a queue permit, exiting threads, a shutdown draining the
    /// queue.
    pub(super) need: usize,
    pub(super) stopping: bool,
    /// The errno that broke the ring.
    pub(super) broken: Option<i32>,
}

pub(crate) struct Ring {
    uring: IoUring,
    /// The most entries in the kernel at once (the submission queue's size).
    capacity: usize,
    pub(super) state: Mutex<State>,
    /// The dispatcher sleeps here (with `state`'s lock).
    pub(super) bell: Condvar,
}

impl Ring {
    pub(crate) fn new(uring: IoUring) -> Ring {
        let capacity = uring.params().sq_entries() as usize;
        Ring {
            uring,
            capacity: capacity.max(1),
            state: Mutex::new(State {
                slots: Vec::new(),
                free: Vec::new(),
                live: 0,
                in_kernel: 0,
                unsubmitted: VecDeque::new(),
                backlog: VecDeque::new(),
                reaper: false,
                waiters: VecDeque::new(),
                need: 0,
                stopping: false,
                broken: None,
            }),
            bell: Condvar::new(),
        }
    }

    /// Takes a request from its submitter: stores it, pushes its entry (a
    /// sync admitted with `sync_barrier` is held instead while earlier
    /// writes of its file are in flight), submits, reaps what completed.
    pub(crate) fn start(&self, inf: InFlight, sync_barrier: Option<u64>) {
        let mut batch = Batch::default();
        {
            let mut st = self.state.lock();
            if let Some(errno) = st.broken {
                drop(st);
                fail(inf, errno);
                return;
            }
            let entry = Arc::clone(&inf.entry);
            let idx = st.insert(inf);
            let ready = match sync_barrier {
                Some(barrier) => entry.order.lock().start_sync(barrier, idx).is_some(),
                None => true,
            };
            if ready {
                self.push(&mut st, idx, &mut batch);
            }
            self.turn(&mut st, &mut batch, false);
        }
        self.settle(batch, false);
    }

    /// Pushes the held syncs that a write run outside the ring released.
    pub(crate) fn release(&self, slots: Vec<usize>) {
        let mut batch = Batch::default();
        {
            let mut st = self.state.lock();
            for idx in slots {
                self.push(&mut st, idx, &mut batch);
            }
            self.turn(&mut st, &mut batch, false);
        }
        self.settle(batch, false);
    }

    /// One turn under the lock: submits what was pushed, reaps (if the role
    /// is free, or `holder` says this thread holds it) until reaping pushes
    /// nothing more, and offers the role on if it is free.
    pub(super) fn turn(&self, st: &mut State, batch: &mut Batch, holder: bool) {
        loop {
            self.submit(st, batch);
            if st.broken.is_some() || (st.reaper && !holder) {
                break;
            }
            self.reap(st, batch);
            if st.unsubmitted.is_empty() {
                break;
            }
        }
        if batch.offer.is_none() {
            batch.offer = self.offer_role(st);
        }
    }

    /// Outside the lock: fails what a broken ring lost, finishes what
    /// completed, and turns again to push the syncs those completions
    /// released, until nothing is left; nudges the waiter offered the role.
    pub(super) fn settle(&self, mut batch: Batch, holder: bool) {
        loop {
            for inf in batch.lost.drain(..) {
                fail(inf, batch.errno);
            }
            self.nudge(batch.offer.take());
            if batch.done.is_empty() {
                return;
            }
            let released: Vec<usize> = batch.done.drain(..).flat_map(Done::finish).collect();
            if released.is_empty() {
                return;
            }
            let mut st = self.state.lock();
            for idx in released {
                self.push(&mut st, idx, &mut batch);
            }
            self.turn(&mut st, &mut batch, holder);
        }
    }

    /// Pushes slot `idx`'s entry, or parks it in the backlog when the
    /// kernel holds `capacity` entries already.
    fn push(&self, st: &mut State, idx: usize, batch: &mut Batch) {
        if st.in_kernel >= self.capacity {
            st.backlog.push_back(idx);
            return;
        }
        let Some(inf) = st.slots.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let sqe = match inf.op.sqe(inf.entry.file.as_raw_fd()) {
            Ok(Some(sqe)) => sqe.user_data(idx as u64),
            Ok(None) => {
                let err = not_a_ring_op(inf.entry.file_ref(), inf.op.kind());
                st.take(idx, Err(err), &mut batch.done, &self.bell);
                return;
            }
            Err(e) => {
                st.take(idx, Err(e), &mut batch.done, &self.bell);
                return;
            }
        };
        // SAFETY: the lock is held, so no other SubmissionQueue exists. The
        // entry points into the buffers (and iovec array) of the request in
        // slots[idx], which stays there, unmoved in memory, until its
        // completion is reaped (module invariant).
        let pushed = unsafe { self.uring.submission_shared().push(&sqe) }.is_ok();
        if pushed {
            st.in_kernel += 1;
            st.unsubmitted.push_back(idx);
        } else {
            // Not reachable while in_kernel < capacity; kept safe anyway.
            st.backlog.push_back(idx);
        }
    }

    /// Enters the kernel to submit what was pushed, without waiting, and
    /// tags the entries it took with this thread's tracker.
    fn submit(&self, st: &mut State, batch: &mut Batch) {
        if st.unsubmitted.is_empty() {
            return;
        }
        let taken = match self.uring.submit() {
            Ok(n) => n,
            Err(e) if transient(&e) => 0,
            Err(e) => {
                self.break_ring(st, batch, &e);
                return;
            }
        };
        let me = thread_exit::current();
        for idx in st.unsubmitted.drain(..taken.min(st.unsubmitted.len())) {
            if let (Some(me), Some(Some(inf))) = (&me, st.slots.get_mut(idx)) {
                me.begin();
                inf.submitter = Some(Arc::clone(me));
            }
        }
    }

    /// Consumes the completion queue: resubmits short transfers, moves
    /// finished requests into the batch, refills from the backlog.
    fn reap(&self, st: &mut State, batch: &mut Batch) {
        // SAFETY: the lock is held, so no other CompletionQueue exists.
        let cq = unsafe { self.uring.completion_shared() };
        for cqe in cq {
            let Ok(idx) = usize::try_from(cqe.user_data()) else {
                continue;
            };
            st.in_kernel = st.in_kernel.saturating_sub(1);
            let Some(inf) = st.slots.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            if let Some(t) = inf.submitter.take() {
                t.end();
            }
            match inf.op.on_cqe(cqe.result(), &inf.entry.file) {
                Step::Again => self.push(st, idx, batch),
                Step::Done => st.take(idx, Ok(()), &mut batch.done, &self.bell),
                Step::Failed(e) => st.take(idx, Err(e), &mut batch.done, &self.bell),
            }
        }
        while st.in_kernel < self.capacity
            && let Some(idx) = st.backlog.pop_front()
        {
            self.push(st, idx, batch);
        }
    }

    /// Sleeps in the kernel until a completion arrives (the reaper role's
    /// wait; nothing is submitted here, and the lock is not held).
    pub(super) fn wait_in_kernel(&self) {
        // SAFETY: no argument pointer is passed; the ring's descriptor is
        // owned by `uring`.
        let r = unsafe {
            self.uring
                .submitter()
                .enter::<libc::sigset_t>(0, 1, IORING_ENTER_GETEVENTS, None)
        };
        if let Err(e) = r
            && !transient(&e)
        {
            let mut batch = Batch::default();
            self.break_ring(&mut self.state.lock(), &mut batch, &e);
            self.settle(batch, false);
        }
    }

    /// The ring is broken: every request moves into the batch to be failed
    /// (its memory leaked, see the module docs), and everyone who sleeps is
    /// woken.
    fn break_ring(&self, st: &mut State, batch: &mut Batch, e: &std::io::Error) {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        st.broken = Some(errno);
        batch.errno = errno;
        batch.lost.extend(st.slots.drain(..).flatten());
        st.free.clear();
        st.backlog.clear();
        st.unsubmitted.clear();
        st.live = 0;
        st.in_kernel = 0;
        self.bell.notify_all();
        // Their requests are among the lost: failing them wakes them.
        st.waiters.clear();
    }
}

impl State {
    fn insert(&mut self, inf: InFlight) -> usize {
        self.live += 1;
        while let Some(idx) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(idx)
                && slot.is_none()
            {
                *slot = Some(inf);
                return idx;
            }
        }
        self.slots.push(Some(inf));
        self.slots.len() - 1
    }

    /// Takes slot `idx` out of the table (its completion was the last)
    /// into `done`.
    fn take(
        &mut self,
        idx: usize,
        result: Result<(), IoError>,
        done: &mut Vec<Done>,
        bell: &Condvar,
    ) {
        let Some(inf) = self.slots.get_mut(idx).and_then(Option::take) else {
            return;
        };
        self.free.push(idx);
        self.live -= 1;
        if self.live == 0 && self.stopping {
            bell.notify_all();
        }
        done.push(Done { inf, result });
    }
}

/// Completes a request the broken ring cannot run, leaking its operation
/// (the kernel may still hold pointers into its buffers).
fn fail(inf: InFlight, errno: i32) {
    let InFlight {
        entry,
        op,
        ticket,
        submitter,
        ..
    } = inf;
    if let Some(t) = submitter {
        t.end();
    }
    let err = IoError::from_os(
        op.kind(),
        entry.file_ref(),
        std::io::Error::from_raw_os_error(errno),
    );
    ticket.finish(Err(err));
    std::mem::forget(op);
}

/// Errors of `io_uring_enter` after which the ring still works.
fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

fn not_a_ring_op(file: FileRef, op: OpKind) -> IoError {
    IoError::InvalidArgument {
        op,
        file,
        reason: "operation cannot be submitted to the ring",
        source: None,
    }
}
