//! A backend that shows every request to an observer before handing it
//! on: the one wrapper tests put around a backend (the simulator, or a
//! real one) to observe or steer requests — hold one until the test lets
//! it go, fail a chosen one, note what was synced.

use std::sync::Arc;

use crate::{AsyncIo, IoFuture, IoStats, Rejected, Reply, Request};

/// What a [`Watched`] backend shows each request to.
pub trait Watch: Send + Sync + 'static {
    /// Sees `req` before it is submitted (and may hold it there); returns
    /// whether [`Watch::after`] must run once that submission returned.
    fn before(&self, req: &Request) -> bool;
    /// Runs after the submission of a request `before` flagged (the
    /// simulator runs a request at submission).
    fn after(&self) {}
}

/// An I/O backend that shows every request to `watch`, then hands it to
/// `inner`.
pub struct Watched<W> {
    /// The backend that runs the requests.
    pub inner: Arc<dyn AsyncIo>,
    /// What sees each request first.
    pub watch: W,
}

impl<W: Watch> AsyncIo for Watched<W> {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn deterministic(&self) -> bool {
        self.inner.deterministic()
    }
    fn submit(&self, req: Request) -> IoFuture<Reply> {
        let flagged = self.watch.before(&req);
        let f = self.inner.submit(req);
        if flagged {
            self.watch.after();
        }
        f
    }
    fn try_submit(&self, req: Request) -> Result<IoFuture<Reply>, Rejected> {
        let flagged = self.watch.before(&req);
        let f = self.inner.try_submit(req);
        if flagged {
            self.watch.after();
        }
        f
    }
    fn queue_depth(&self) -> usize {
        self.inner.queue_depth()
    }
    fn stats(&self) -> IoStats {
        self.inner.stats()
    }
    fn shutdown(&self) {
        self.inner.shutdown();
    }
}
