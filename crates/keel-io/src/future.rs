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
//! Invariants:
//! - Every future completes. If a `Completer` is dropped without completing
//!   (a backend thread died, a queue was torn down), its `Drop` completes the
//!   slot with `ShutDown`. A waiter can therefore never hang on a lost request.
//! - Dropping an `IoFuture` early never cancels the operation: the backend
//!   still owns the request (and its buffers) and runs it to the end; the
//!   result is dropped with the slot.
//! - The waker is invoked after the slot's lock is released.
//!
//! Left out: cancellation, and combinators (`join`, `select`); any executor's
//! own can be used since `IoFuture` is a plain `std::future::Future`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

use crate::error::{FileRef, IoError};
use crate::request::{OpKind, Reply};

type Outcome = Result<Reply, IoError>;

enum State {
    Pending(Option<Waker>),
    Done(Outcome),
    Taken,
}

struct Slot {
    state: Mutex<State>,
    cond: Condvar,
}

impl Slot {
    fn finish(&self, outcome: Outcome) {
        let waker = {
            let mut state = self.state.lock();
            match std::mem::replace(&mut *state, State::Done(outcome)) {
                State::Pending(waker) => waker,
                // Completing twice cannot happen (complete consumes the
                // Completer); keep the first outcome if it somehow did.
                other => {
                    *state = other;
                    None
                }
            }
        };
        self.cond.notify_all();
        if let Some(w) = waker {
            w.wake();
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
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Pending(None)),
            cond: Condvar::new(),
        });
        let fut = IoFuture {
            slot: Arc::clone(&slot),
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

/// The pending result of a submitted operation.
///
/// Poll it from any executor, or block on it with [`IoFuture::wait`].
/// Dropping it does not cancel the operation.
#[must_use = "an IoFuture carries the operation's result and buffers"]
pub struct IoFuture<T> {
    slot: Arc<Slot>,
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
            slot: self.slot,
            convert,
            op: self.op,
        }
    }
}

impl<T> IoFuture<T> {
    /// Blocks the calling thread until the operation completes.
    pub fn wait(self) -> Result<T, IoError> {
        let mut state = self.slot.state.lock();
        loop {
            match std::mem::replace(&mut *state, State::Taken) {
                State::Done(outcome) => return outcome.and_then(self.convert),
                State::Pending(w) => {
                    *state = State::Pending(w);
                    self.slot.cond.wait(&mut state);
                }
                State::Taken => return Err(self.taken_error()),
            }
        }
    }

    /// Whether the operation has completed (a later `wait` will not block).
    pub fn is_ready(&self) -> bool {
        matches!(*self.slot.state.lock(), State::Done(_))
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
        let mut state = this.slot.state.lock();
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(outcome) => Poll::Ready(outcome.and_then(this.convert)),
            State::Pending(Some(w)) if w.will_wake(cx.waker()) => {
                *state = State::Pending(Some(w));
                Poll::Pending
            }
            State::Pending(_) => {
                *state = State::Pending(Some(cx.waker().clone()));
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
