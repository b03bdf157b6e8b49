//! The reaper role: which thread waits in the kernel for completions, and
//! the dispatcher thread that waits when no one else does.
//!
//! Waiting in the kernel (`io_uring_enter` with GETEVENTS) is safe for one
//! thread at a time only, and only that thread may reap while it waits. The
//! kernel wakes a waiter once the completion queue's tail passes the head
//! it read on entry; had another thread reaped the very completion this one
//! waits for between its last look and its entry, it would sleep past it.
//! So the ring has one *reaper role* (`State::reaper`):
//!
//! 1. Only the holder waits in the kernel, and only while the kernel holds
//!    an entry (`in_kernel > 0`: otherwise no completion would come).
//! 2. While the role is held, nobody else reaps; a submitter whose request
//!    completed inline leaves it to the holder, whom that completion wakes.
//!    While it is free, every submitter reaps after its own submission.
//! 3. A thread waiting on a future ([`Driver::help`]) takes the free role
//!    and keeps it until its own request completes, reaping for everyone
//!    meanwhile. If the role is held, or nothing is in the kernel, it
//!    registers in `waiters` and sleeps on its future.
//! 4. Whoever leaves the role, or pushes an entry while it is free, offers
//!    it on ([`Ring::offer_role`]): to the first registered waiter still
//!    pending (nudged awake to take it), else to the dispatcher when the
//!    ring needs one (`need > 0`). A waiter is never left asleep with the
//!    role free and an entry in the kernel, unless its request completes
//!    (which wakes it anyway). A nudged waiter whose request completes
//!    before it takes the role returns without it: the completion offers
//!    the role on ([`Driver::pass_on`]), so another sleeping waiter is
//!    never left with the role free.
//!
//! So a request waited for at queue depth 1 is reaped by its own thread:
//! the kernel's worker finishes it and wakes that thread directly, with no
//! hand-off in between. The dispatcher thread sleeps until someone needs it:
//! a future polled by an executor or dropped while pending (adopted, see
//! `future.rs`), a submitter waiting for a queue permit, or a shutdown
//! draining the queue. It then takes the role whenever it is free, one
//! wait at a time, so that a waiting thread can take it back in between.
//!
//! Lost wake-ups: a waiter registers (under the ring lock) before it sleeps
//! on its future, and a nudge sets a flag under the future's lock, so a
//! nudge between the two is seen; `bell` is waited on and rung under the
//! ring lock.

use std::sync::{Arc, Weak};

use super::ring::{Batch, Ring, State};
use crate::future::{Driver, Help, Slot};

impl Ring {
    /// If the role is free and the kernel holds an entry: the waiter to
    /// offer it to (nudge it after unlocking), or the dispatcher's bell when
    /// the ring needs a reaper.
    pub(super) fn offer_role(&self, st: &mut State) -> Option<Weak<Slot>> {
        if st.reaper || st.in_kernel == 0 {
            return None;
        }
        if let Some(w) = st.waiters.pop_front() {
            return Some(w);
        }
        if st.need > 0 {
            self.bell.notify_one();
        }
        None
    }

    /// Nudges the offered waiter; if it is gone or already complete, offers
    /// the role again.
    pub(super) fn nudge(&self, mut offer: Option<Weak<Slot>>) {
        while let Some(w) = offer.take() {
            if w.upgrade().is_some_and(|slot| slot.nudge()) {
                return;
            }
            let mut st = self.state.lock();
            offer = self.offer_role(&mut st);
        }
    }

    /// Runs the role (already taken by the caller): reaps, and waits in the
    /// kernel while `me` is pending, then leaves the role and offers it on.
    /// Returns [`Help::Sleep`] if `me` is still pending but nothing is left
    /// in the kernel to wait for (its request is a sync held behind a write
    /// running outside the ring): it is then a registered waiter.
    fn hold(&self, me: &Arc<Slot>) -> Help {
        loop {
            self.reap_once();
            let done = !me.is_pending();
            {
                let mut st = self.state.lock();
                if done || st.in_kernel == 0 || st.broken.is_some() {
                    if !done {
                        st.waiters.push_back(Arc::downgrade(me));
                    }
                    let offer = self.leave_role(&mut st);
                    drop(st);
                    self.nudge(offer);
                    return if done { Help::Again } else { Help::Sleep };
                }
            }
            self.wait_in_kernel();
        }
    }

    /// The holder's reap: one turn under the lock, finished outside.
    fn reap_once(&self) {
        let mut batch = Batch::default();
        self.turn(&mut self.state.lock(), &mut batch, true);
        self.settle(batch, true);
    }

    /// Leaves the role and offers it on.
    fn leave_role(&self, st: &mut State) -> Option<Weak<Slot>> {
        st.reaper = false;
        self.offer_role(st)
    }

    /// Counts one reason more (or less) for the dispatcher to reap.
    pub(super) fn need(&self, more: bool) {
        let mut st = self.state.lock();
        if more {
            st.need += 1;
            if !st.reaper && st.in_kernel > 0 {
                self.bell.notify_one();
            }
        } else {
            st.need = st.need.saturating_sub(1);
        }
    }

    /// Tells the dispatcher to exit once no request is left.
    pub(super) fn stop(&self) {
        self.state.lock().stopping = true;
        self.bell.notify_all();
    }

    /// The dispatcher thread: takes the free role whenever the ring needs a
    /// reaper, for one wait at a time (so a waiting thread can take it back
    /// in between).
    pub(super) fn run_dispatcher(&self) {
        loop {
            {
                let mut st = self.state.lock();
                loop {
                    if st.stopping && st.live == 0 {
                        return;
                    }
                    if !st.reaper && st.in_kernel > 0 && st.need > 0 && st.broken.is_none() {
                        st.reaper = true;
                        break;
                    }
                    self.bell.wait(&mut st);
                }
            }
            self.wait_in_kernel();
            self.reap_once();
            let offer = self.leave_role(&mut self.state.lock());
            self.nudge(offer);
        }
    }
}

impl Driver for Ring {
    fn help(&self, me: &Arc<Slot>) -> Help {
        {
            let mut st = self.state.lock();
            if st.reaper || st.in_kernel == 0 || st.broken.is_some() {
                st.waiters.retain(|w| w.strong_count() > 0);
                st.waiters.push_back(Arc::downgrade(me));
                return Help::Sleep;
            }
            st.reaper = true;
        }
        self.hold(me)
    }

    fn poke(&self) {
        let mut batch = Batch::default();
        self.turn(&mut self.state.lock(), &mut batch, false);
        self.settle(batch, false);
    }

    fn adopt(&self) {
        self.need(true);
    }

    fn disown(&self) {
        self.need(false);
    }

    fn pass_on(&self) {
        let offer = self.offer_role(&mut self.state.lock());
        self.nudge(offer);
    }
}
