//! [`IoFuture`]: the handle a submitter holds on an operation in flight.
//!
//! A backend creates a ([`Completer`], [`IoFuture`]) pair per request. The two
//! share a slot: a mutex-protected state plus a condition variable.
//!
//! ```text
//!             Completer::complete            poll / wait
//!   Pending ─────────────────────────▶ Done ─────────────▶ Taken
//!     │  (stores the waker on poll)     (wakes the waker, notifies the condvar)
//! ```
//!
//! Driven futures. The thread pool completes a request on its own threads;
//! io_uring completes one only when some thread reaps the ring. A backend of
//! the second kind gives its futures a [`Driver`]: a future's `wait` then
//! asks the driver to [`help`](Driver::help) (reap on the waiting thread,
//! which saves handing the completion over from another thread) and sleeps
//! on the condvar only when the driver says so, until the operation
//! completes or the driver [nudges](Slot::nudge) it to help again. A future
//! polled while pending, or dropped while pending, is *adopted*: its owner
//! will not help, so the driver must collect it without them
//! ([`Driver::adopt`], undone by [`Driver::disown`] at completion; each is
//! called under the slot's lock, so they pair up exactly once per request).
//!
//! Invariants:
//! - Every future completes. If a `Completer` is dropped without completing
//!   (a backend thread died, a queue was torn down), its `Drop` completes the
//!   slot with `ShutDown`. A waiter can therefore never hang on a lost request.
//! - Dropping an `IoFuture` early never cancels the operation: the backend
//!   still owns the request (and its buffers) and runs it to the end; the
//!   result is dropped with the slot.
//! - The waker is invoked after the slot's lock is released.
//! - Lock order: a slot's lock may be held while calling into the driver
//!   (`adopt`, `disown`); a driver never takes a slot's lock while holding
//!   its own.
//!
//! Left out: cancellation, and combinators (`join`, `select`); any executor's
//! own can be used since `IoFuture` is a plain `std::future::Future`.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

use crate::error::{FileRef, IoError};
use crate::request::{OpKind, Reply};

type Outcome = Result<Reply, IoError>;

/// What [`Driver::help`] tells the waiting thread to do next.
pub(crate) enum Help {
    /// Check the future again (the driver made progress, or may now).
    Again,
    /// Sleep until the operation completes or [`Slot::nudge`] is called.
    Sleep,
}

/// A backend whose completions are collected by whichever thread gets there
/// (see the module docs).
pub(crate) trait Driver: Send + Sync {
    /// The owner of `slot` blocks on it: make progress on this thread if
    /// possible. Returning [`Help::Sleep`] promises a later nudge of `slot`
    /// or its completion.
    fn help(&self, slot: &Arc<Slot>) -> Help;
    /// Collects what has already completed, without blocking.
    fn poke(&self);
    /// A pending request's owner will not help: collect it without them.
    fn adopt(&self);
    /// An adopted request completed.
    fn disown(&self);
    /// A request completed while its waiter had been nudged to help and
    /// had not acted on it yet: the waiter will return without helping,
    /// so whatever the nudge offered it (the reaper role) goes to another.
    fn pass_on(&self);
}

enum State {
    Pending {
        waker: Option<Waker>,
        /// The driver asked the waiter to help again.
        nudged: bool,
        /// Counted by [`Driver::adopt`].
        adopted: bool,
    },
    Done(Outcome),
    Taken,
}

thread_local! {
    /// Set while this thread runs a waker: code inside a waker must not
    /// wait for the backend's requests to drain (it may be holding some).
    static IN_WAKER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is inside a waker that a completion invoked.
pub(crate) fn in_waker() -> bool {
    IN_WAKER.with(Cell::get)
}

/// The state a [`Completer`] and its [`IoFuture`] share.
pub(crate) struct Slot {
    state: Mutex<State>,
    cond: Condvar,
    driver: Option<Weak<dyn Driver>>,
}

impl Slot {
    fn driver(&self) -> Option<Arc<dyn Driver>> {
        self.driver.as_ref().and_then(Weak::upgrade)
    }

    fn finish(&self, outcome: Outcome) {
        let (waker, nudged) = {
            let mut state = self.state.lock();
            match std::mem::replace(&mut *state, State::Done(outcome)) {
                State::Pending {
                    waker,
                    adopted,
                    nudged,
                } => {
                    if adopted && let Some(d) = self.driver() {
                        d.disown();
                    }
                    (waker, nudged)
                }
                // Completing twice cannot happen (complete consumes the
                // Completer); keep the first outcome if it somehow did.
                other => {
                    *state = other;
                    (None, false)
                }
            }
        };
        self.cond.notify_all();
        if nudged && let Some(d) = self.driver() {
            d.pass_on();
        }
        if let Some(w) = waker {
            IN_WAKER.with(|f| f.set(true));
            w.wake();
            IN_WAKER.with(|f| f.set(false));
        }
    }

    /// Whether the request has not completed yet.
    pub(crate) fn is_pending(&self) -> bool {
        matches!(*self.state.lock(), State::Pending { .. })
    }

    /// Asks a waiter sleeping on this slot to help again. Returns false if
    /// the operation already completed (nobody to nudge).
    pub(crate) fn nudge(&self) -> bool {
        let mut state = self.state.lock();
        match &mut *state {
            State::Pending { nudged, .. } => {
                *nudged = true;
                self.cond.notify_all();
                true
            }
            _ => false,
        }
    }

    /// Marks a pending request adopted (once), telling the driver.
    fn adopt(&self, state: &mut State) {
        if let State::Pending { adopted, .. } = state
            && !*adopted
            && let Some(d) = self.driver()
        {
            *adopted = true;
            d.adopt();
        }
    }
}

/// The backend's half of a request: completes the matching [`IoFuture`].
pub(crate) struct Completer {
    slot: Option<Arc<Slot>>,
    op: OpKind,
}

impl Completer {
    /// A new pending pair.
    pub(crate) fn pair(op: OpKind) -> (Completer, IoFuture<Reply>) {
        Completer::pair_driven(op, None)
    }

    /// A new pending pair whose future asks `driver` for help (module docs).
    pub(crate) fn pair_driven(
        op: OpKind,
        driver: Option<Weak<dyn Driver>>,
    ) -> (Completer, IoFuture<Reply>) {
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Pending {
                waker: None,
                nudged: false,
                adopted: false,
            }),
            cond: Condvar::new(),
            driver,
        });
        let fut = IoFuture {
            handle: Handle(Arc::clone(&slot)),
            convert: Ok,
            op,
        };
        (
            Completer {
                slot: Some(slot),
                op,
            },
            fut,
        )
    }

    /// Delivers the outcome and wakes the waiter.
    pub(crate) fn complete(mut self, outcome: Outcome) {
        if let Some(slot) = self.slot.take() {
            slot.finish(outcome);
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.finish(Err(IoError::ShutDown { op: self.op }));
        }
    }
}

/// The future's hold on its slot: dropped while the request is pending, it
/// has the request adopted (nobody is left to help collect it).
struct Handle(Arc<Slot>);

impl Drop for Handle {
    fn drop(&mut self) {
        let slot = &self.0;
        if slot.driver.is_some() {
            let mut state = slot.state.lock();
            slot.adopt(&mut state);
        }
    }
}

/// The pending result of a submitted operation.
///
/// Poll it from any executor, or block on it with [`IoFuture::wait`].
/// Dropping it does not cancel the operation.
#[must_use = "an IoFuture carries the operation's result and buffers"]
pub struct IoFuture<T> {
    handle: Handle,
    convert: fn(Reply) -> Result<T, IoError>,
    op: OpKind,
}

impl IoFuture<Reply> {
    /// A future that is already complete.
    pub(crate) fn ready(op: OpKind, outcome: Outcome) -> IoFuture<Reply> {
        let (completer, fut) = Completer::pair(op);
        completer.complete(outcome);
        fut
    }

    /// Re-types the future: `convert` turns the reply into the caller's type.
    pub fn map_reply<U>(self, convert: fn(Reply) -> Result<U, IoError>) -> IoFuture<U> {
        IoFuture {
            handle: self.handle,
            convert,
            op: self.op,
        }
    }
}

impl<T> IoFuture<T> {
    /// Blocks the calling thread until the operation completes (helping a
    /// driven backend collect it, see the module docs).
    pub fn wait(self) -> Result<T, IoError> {
        let slot = &self.handle.0;
        let driver = slot.driver();
        let mut sleep = false;
        loop {
            {
                let mut state = slot.state.lock();
                loop {
                    match std::mem::replace(&mut *state, State::Taken) {
                        State::Done(outcome) => return outcome.and_then(self.convert),
                        State::Taken => return Err(self.taken_error()),
                        State::Pending {
                            waker,
                            nudged,
                            adopted,
                        } => {
                            let go = driver.is_some() && (nudged || !sleep);
                            *state = State::Pending {
                                waker,
                                nudged: false,
                                adopted,
                            };
                            if go {
                                break;
                            }
                            self.slot_cond().wait(&mut state);
                        }
                    }
                }
            }
            sleep = matches!(driver.as_ref().map(|d| d.help(slot)), Some(Help::Sleep));
        }
    }

    fn slot_cond(&self) -> &Condvar {
        &self.handle.0.cond
    }

    /// Whether the operation has completed (a later `wait` will not block).
    pub fn is_ready(&self) -> bool {
        let slot = &self.handle.0;
        if let Some(d) = slot.driver() {
            d.poke();
        }
        matches!(*slot.state.lock(), State::Done(_))
    }

    /// The kind of operation this future is for.
    pub fn op(&self) -> OpKind {
        self.op
    }

    fn taken_error(&self) -> IoError {
        IoError::InvalidArgument {
            op: self.op,
            file: FileRef::default(),
            reason: "future polled after it returned its result",
            source: None,
        }
    }
}

impl<T> Future for IoFuture<T> {
    type Output = Result<T, IoError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let slot = &this.handle.0;
        if let Some(d) = slot.driver() {
            d.poke();
        }
        let mut state = slot.state.lock();
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(outcome) => Poll::Ready(outcome.and_then(this.convert)),
            State::Pending {
                waker,
                nudged,
                adopted,
            } => {
                let waker = match waker {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                *state = State::Pending {
                    waker: Some(waker),
                    nudged,
                    adopted,
                };
                slot.adopt(&mut state);
                Poll::Pending
            }
            State::Taken => Poll::Ready(Err(this.taken_error())),
        }
    }
}

impl<T> std::fmt::Debug for IoFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoFuture")
            .field("op", &self.op)
            .field("ready", &self.is_ready())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_completer_completes_with_shutdown() {
        let (c, fut) = Completer::pair(OpKind::Write);
        drop(c);
        assert!(matches!(fut.wait(), Err(IoError::ShutDown { .. })));
    }

    /// Counts the calls a future makes into its driver; `help` sleeps the
    /// first time and helps after that.
    #[derive(Default)]
    struct Counting {
        helped: Mutex<usize>,
        adopted: Mutex<isize>,
        passed: Mutex<usize>,
    }

    impl Driver for Counting {
        fn help(&self, _slot: &Arc<Slot>) -> Help {
            let mut h = self.helped.lock();
            *h += 1;
            if *h == 1 { Help::Sleep } else { Help::Again }
        }
        fn poke(&self) {}
        fn adopt(&self) {
            *self.adopted.lock() += 1;
        }
        fn pass_on(&self) {
            *self.passed.lock() += 1;
        }
        fn disown(&self) {
            *self.adopted.lock() -= 1;
        }
    }

    fn driven(driver: &Arc<Counting>) -> (Completer, IoFuture<Reply>) {
        let weak: Weak<Counting> = Arc::downgrade(driver);
        Completer::pair_driven(OpKind::Read, Some(weak))
    }

    #[test]
    fn a_polled_or_dropped_pending_future_is_adopted_once_and_disowned_at_completion() {
        let d = Arc::new(Counting::default());
        let (c, mut fut) = driven(&d);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        assert_eq!(*d.adopted.lock(), 1, "adopted once");
        drop(fut);
        assert_eq!(
            *d.adopted.lock(),
            1,
            "a dropped adopted future stays adopted"
        );
        c.complete(Ok(Reply::Done));
        assert_eq!(*d.adopted.lock(), 0, "disowned when it completes");

        let (c, fut) = driven(&d);
        drop(fut);
        assert_eq!(*d.adopted.lock(), 1, "dropped pending: adopted");
        c.complete(Ok(Reply::Done));
        assert_eq!(*d.adopted.lock(), 0);

        let (c, fut) = driven(&d);
        c.complete(Ok(Reply::Size(1)));
        drop(fut);
        assert_eq!(*d.adopted.lock(), 0, "a completed future is never adopted");
    }

    /// A request that completes after its waiter was nudged, before the
    /// waiter acted on it, has the driver pass on what the nudge offered;
    /// one completing without a nudge pending does not.
    #[test]
    fn a_completion_over_an_unanswered_nudge_passes_the_offer_on() {
        let d = Arc::new(Counting::default());
        let (c, fut) = driven(&d);
        assert!(fut.handle.0.nudge());
        c.complete(Ok(Reply::Done));
        assert_eq!(*d.passed.lock(), 1);
        assert!(matches!(fut.wait(), Ok(Reply::Done)));
        let (c, fut) = driven(&d);
        c.complete(Ok(Reply::Done));
        assert!(matches!(fut.wait(), Ok(Reply::Done)));
        assert_eq!(*d.passed.lock(), 1);
    }

    #[test]
    fn a_sleeping_waiter_helps_again_when_nudged() {
        let d = Arc::new(Counting::default());
        let (c, fut) = driven(&d);
        let slot = Arc::clone(&fut.handle.0);
        let t = std::thread::spawn(move || fut.wait());
        // The waiter asked for help once and sleeps; a nudge sends it back
        // to the driver, which then "helps" until the request completes.
        while *d.helped.lock() == 0 {
            std::thread::yield_now();
        }
        assert!(slot.nudge(), "the request is pending");
        while *d.helped.lock() < 2 {
            std::thread::yield_now();
        }
        c.complete(Ok(Reply::Done));
        assert!(matches!(t.join().unwrap(), Ok(Reply::Done)));
        assert!(!slot.nudge(), "nothing to nudge once complete");
        assert_eq!(*d.adopted.lock(), 0, "a waited future is not adopted");
    }

    #[test]
    fn wait_across_threads() {
        let (c, fut) = Completer::pair(OpKind::Size);
        let t = std::thread::spawn(move || c.complete(Ok(Reply::Size(42))));
        let size = fut.map_reply(|r| match r {
            Reply::Size(s) => Ok(s),
            _ => Ok(0),
        });
        assert_eq!(size.wait().unwrap(), 42);
        t.join().unwrap();
    }
}
