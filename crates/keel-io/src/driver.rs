//! Glue every backend shares: admission through the [`Gate`], and the
//! [`Ticket`] that follows a request from admission to completion, records
//! its statistics, returns its permit and completes its future.
//!
//! A request that [`AsyncIo::run_blocking`](crate::AsyncIo::run_blocking)
//! runs to the end on the caller's thread, its answer going straight back
//! to that caller, has nothing to complete: it is followed by a [`Direct`]
//! instead, which records and returns the permit like a ticket but makes no
//! future (no allocation, no completion handshake, no wake-up).
//!
//! Invariant: a ticket or a `Direct` is finished exactly once. If it is
//! dropped unfinished (a queue torn down, a thread gone, a panic), its
//! `Drop` still returns the permit and counts an error (and a ticket
//! completes its future with `ShutDown`) — so shutdown's drain can never
//! wait for a permit that will not come back.

use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::error::IoError;
use crate::file::FileTable;
use crate::future::{Completer, Driver, IoFuture};
use crate::gate::Gate;
use crate::request::{FileClass, OpKind, Rejected, Reply, Request};
use crate::stats::{IoStats, Stats};

/// The parts of a backend every request touches.
pub(crate) struct Core {
    pub(crate) gate: Gate,
    pub(crate) stats: Stats,
}

impl Core {
    pub(crate) fn new(name: &'static str, queue_depth: usize) -> Arc<Core> {
        Arc::new(Core {
            gate: Gate::new(queue_depth),
            stats: Stats::new(name),
        })
    }

    /// Takes a permit (waiting, or not when `blocking` is false).
    pub(crate) fn admit(&self, req: Request, blocking: bool) -> Result<Request, Rejected> {
        let kind = req.kind();
        let r = if blocking {
            self.gate.acquire(kind)
        } else {
            self.gate.try_acquire(kind)
        };
        match r {
            Ok(()) => Ok(req),
            Err(error) => Err(Rejected {
                error,
                request: Box::new(req),
            }),
        }
    }

    /// Records an operation's outcome and gives its permit back: the end
    /// of every admitted operation, answered by a ticket or directly.
    pub(crate) fn settle(
        &self,
        kind: OpKind,
        class: FileClass,
        started: Instant,
        outcome: &Result<Reply, IoError>,
    ) {
        let bytes = outcome.as_ref().map_or(0, Reply::bytes);
        self.stats
            .record(kind, class, bytes, outcome.is_ok(), started.elapsed());
        self.gate.release();
    }

    pub(crate) fn snapshot(&self) -> IoStats {
        self.stats.snapshot()
    }

    /// The shutdown every backend runs: refuse new requests, wait for
    /// those in flight, `stop` the backend's threads, then forget the open
    /// files. Called on one of the backend's own threads (its last user
    /// dropped it there), it neither waits for the requests in flight (that
    /// thread may be the one completing them) nor clears the files (other
    /// threads may still be using them); `stop` must not join that thread.
    pub(crate) fn shut_down<H>(
        &self,
        files: &FileTable<H>,
        on_own_thread: bool,
        stop: impl FnOnce(),
    ) {
        self.gate.close();
        if !on_own_thread {
            self.gate.wait_idle();
        }
        stop();
        if !on_own_thread {
            files.clear();
        }
    }
}

/// Follows one admitted request to its completion.
pub(crate) struct Ticket {
    core: Arc<Core>,
    completer: Option<Completer>,
    kind: OpKind,
    class: FileClass,
    started: Instant,
}

impl Ticket {
    /// A ticket for a request that already holds a permit.
    pub(crate) fn new(
        core: &Arc<Core>,
        kind: OpKind,
        class: FileClass,
    ) -> (Ticket, IoFuture<Reply>) {
        Ticket::driven(core, kind, class, None)
    }

    /// A ticket whose future asks `driver` for help while it waits (see
    /// `future.rs`).
    pub(crate) fn driven(
        core: &Arc<Core>,
        kind: OpKind,
        class: FileClass,
        driver: Option<Weak<dyn Driver>>,
    ) -> (Ticket, IoFuture<Reply>) {
        let (completer, fut) = Completer::pair_driven(kind, driver);
        let ticket = Ticket {
            core: Arc::clone(core),
            completer: Some(completer),
            kind,
            class,
            started: Instant::now(),
        };
        (ticket, fut)
    }

    /// Records, releases the permit, then completes the future.
    pub(crate) fn finish(mut self, outcome: Result<Reply, IoError>) {
        self.core
            .settle(self.kind, self.class, self.started, &outcome);
        if let Some(c) = self.completer.take() {
            c.complete(outcome);
        }
    }
}

/// Follows one admitted request that the caller's thread runs to the end
/// and answers itself (module docs).
pub(crate) struct Direct<'a> {
    core: &'a Core,
    kind: OpKind,
    class: FileClass,
    started: Instant,
    finished: bool,
}

impl<'a> Direct<'a> {
    /// Follows a request that already holds a permit, from now.
    pub(crate) fn new(core: &'a Core, kind: OpKind, class: FileClass) -> Direct<'a> {
        Direct {
            core,
            kind,
            class,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Records and releases the permit; hands `outcome` back for the
    /// caller to return.
    pub(crate) fn finish(mut self, outcome: Result<Reply, IoError>) -> Result<Reply, IoError> {
        self.core
            .settle(self.kind, self.class, self.started, &outcome);
        self.finished = true;
        outcome
    }
}

impl Drop for Direct<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.core
                .stats
                .record(self.kind, self.class, 0, false, self.started.elapsed());
            self.core.gate.release();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(c) = self.completer.take() {
            self.core
                .stats
                .record(self.kind, self.class, 0, false, self.started.elapsed());
            self.core.gate.release();
            c.complete(Err(IoError::ShutDown { op: self.kind }));
        }
    }
}
