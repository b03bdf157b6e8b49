//! The portable backend: N worker threads fed by a bounded crossbeam channel.
//!
//! Every request — data, sync and path operations alike — runs on a worker
//! with the plain blocking system call (`pread`, `pwrite`, `pwritev`, `fsync`,
//! `fdatasync`, `fallocate`, …). `close` is the exception: it removes the
//! handle from the table at submission (see `file.rs`). So is
//! [`AsyncIo::run_blocking`]: the caller's own thread runs the job exactly as
//! a worker would, saving the two thread hand-offs of a submit-and-wait.
//!
//! Ordering: workers run requests concurrently, so a sync could otherwise
//! overtake a write submitted before it. Each file's `SyncOrder` holds such a
//! sync; the worker that completes the last earlier write runs it (never by
//! blocking a worker while it waits, which could deadlock when every worker
//! held a sync and the writes sat behind them in the queue).
//!
//! Shutdown drains: the gate closes (new submissions get `ShutDown`), every
//! admitted request runs to completion, then each worker receives `Stop` and
//! is joined. If `shutdown` runs on a worker thread itself (a waker that drops
//! the last reference), it cannot wait for itself: it closes the gate, stops
//! the workers and joins all but its own thread.

use std::sync::Arc;
use std::thread::{self, JoinHandle, ThreadId};

use crossbeam_channel::{Receiver, Sender};
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

/// A request's place in its file's sync order.
enum Order {
    None,
    Write(u64),
    Sync(u64),
}

enum Work {
    File {
        entry: Arc<FileEntry<Job>>,
        op: FileOp,
        order: Order,
    },
    Path(Request),
}

/// One admitted request on its way to a worker.
pub(crate) struct Job {
    work: Work,
    ticket: Ticket,
}

enum Msg {
    Run(Job),
    Stop,
}

struct Shared {
    core: Arc<Core>,
    files: FileTable<Job>,
    tx: Sender<Msg>,
    worker_ids: Mutex<Vec<ThreadId>>,
}

/// The thread-pool backend.
pub struct ThreadPoolIo {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl ThreadPoolIo {
    /// Starts `config.worker_threads` workers.
    pub fn new(config: &IoConfig) -> Result<ThreadPoolIo, IoError> {
        config.validate()?;
        let (tx, rx) = crossbeam_channel::bounded(config.queue_depth + config.worker_threads);
        let shared = Arc::new(Shared {
            core: Core::new("thread-pool", config.queue_depth),
            files: FileTable::new(),
            tx,
            worker_ids: Mutex::new(Vec::new()),
        });
        let mut workers = Vec::with_capacity(config.worker_threads);
        for i in 0..config.worker_threads {
            let shared2 = Arc::clone(&shared);
            let rx: Receiver<Msg> = rx.clone();
            let spawned = thread::Builder::new()
                .name(format!("keel-io-{i}"))
                .spawn(move || worker(&shared2, &rx));
            match spawned {
                Ok(h) => {
                    shared.worker_ids.lock().push(h.thread().id());
                    workers.push(h);
                }
                Err(source) => {
                    let pool = ThreadPoolIo {
                        shared,
                        workers: Mutex::new(workers),
                    };
                    pool.shutdown();
                    return Err(IoError::BackendUnavailable {
                        backend: "thread-pool",
                        source,
                    });
                }
            }
        }
        Ok(ThreadPoolIo {
            shared,
            workers: Mutex::new(workers),
        })
    }

    fn submit_inner(&self, req: Request, blocking: bool) -> Result<IoFuture<Reply>, Rejected> {
        let (job, fut) = self.admit_job(req, blocking)?;
        if let Some(job) = job {
            // The channel holds queue_depth + workers messages and at most
            // queue_depth jobs are admitted, so this send never blocks. If
            // the workers are gone, the job drops and its ticket completes
            // the future.
            let _ = self.shared.tx.send(Msg::Run(job));
        }
        Ok(fut)
    }

    /// Admits and prepares a request; returns the job to run (none for a
    /// close, which is done here) and its future.
    fn admit_job(
        &self,
        req: Request,
        blocking: bool,
    ) -> Result<(Option<Job>, IoFuture<Reply>), Rejected> {
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
        let (work, class) = match prepared {
            Prepared::Close(handle) => {
                let (ticket, fut) = Ticket::new(&s.core, kind, FileClass::Other);
                ticket.finish(s.files.remove(handle).map(|()| Reply::Done));
                return Ok((None, fut));
            }
            Prepared::Path(req) => {
                let class = match &req {
                    Request::Open { options, .. } => options.class,
                    _ => FileClass::Other,
                };
                (Work::Path(req), class)
            }
            Prepared::File { entry, op } => {
                let order = if op.kind().is_write() {
                    Order::Write(entry.order.lock().begin_write())
                } else if matches!(op, FileOp::Sync(_)) {
                    Order::Sync(entry.order.lock().barrier())
                } else {
                    Order::None
                };
                let class = entry.class;
                (Work::File { entry, op, order }, class)
            }
        };
        let (ticket, fut) = Ticket::new(&s.core, kind, class);
        Ok((Some(Job { work, ticket }), fut))
    }

    fn on_worker_thread(&self) -> bool {
        let me = thread::current().id();
        self.shared.worker_ids.lock().contains(&me)
    }
}

fn worker(shared: &Shared, rx: &Receiver<Msg>) {
    while let Ok(Msg::Run(job)) = rx.recv() {
        run(shared, job);
    }
}

fn run(shared: &Shared, job: Job) {
    let Job { work, ticket } = job;
    match work {
        Work::Path(req) => ticket.finish(run_path(shared, &req)),
        Work::File {
            entry,
            op,
            order: Order::Sync(barrier),
        } => {
            let job = Job {
                work: Work::File {
                    entry: Arc::clone(&entry),
                    op,
                    order: Order::None,
                },
                ticket,
            };
            // Held jobs are run by the worker that completes the last
            // earlier write (below).
            let ready = entry.order.lock().start_sync(barrier, job);
            if let Some(job) = ready {
                run(shared, job);
            }
        }
        Work::File { entry, op, order } => {
            let outcome = op.run_blocking(&entry);
            // The write's future completes before the write leaves the sync
            // order: a sync it lets start (here, or inline on another
            // thread) finds it complete.
            ticket.finish(outcome);
            let released = match order {
                Order::Write(seq) => entry.order.lock().end_write(seq),
                _ => Vec::new(),
            };
            for job in released {
                run(shared, job);
            }
        }
    }
}

fn run_path(shared: &Shared, req: &Request) -> Result<Reply, IoError> {
    match req {
        Request::Open { path, options } => {
            let file = op::open(path, options)?;
            let handle = shared
                .files
                .insert(file, path, options.class, options.direct);
            Ok(Reply::Opened(handle))
        }
        other => op::run_path_blocking(other),
    }
}

impl AsyncIo for ThreadPoolIo {
    fn backend_name(&self) -> &'static str {
        "thread-pool"
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

    /// Runs the job on the calling thread, exactly as a worker would: a
    /// write releases (and runs) the syncs it held back; a sync that must
    /// wait for earlier writes is held, and the worker that completes the
    /// last of them runs it while this thread waits for its future.
    fn run_blocking(&self, req: Request) -> Result<Reply, IoError> {
        let (job, fut) = self.admit_job(req, true).map_err(|r| r.error)?;
        if let Some(job) = job {
            run(&self.shared, job);
        }
        fut.wait()
    }

    fn queue_depth(&self) -> usize {
        self.shared.core.gate.capacity()
    }

    fn stats(&self) -> IoStats {
        self.shared.core.snapshot()
    }

    fn shutdown(&self) {
        let s = &self.shared;
        s.core.shut_down(&s.files, self.on_worker_thread(), || {
            let workers = std::mem::take(&mut *self.workers.lock());
            for _ in &workers {
                let _ = s.tx.send(Msg::Stop);
            }
            let me = thread::current().id();
            for w in workers {
                if w.thread().id() != me {
                    let _ = w.join();
                }
            }
        });
    }
}

impl Drop for ThreadPoolIo {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for ThreadPoolIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPoolIo")
            .field("queue_depth", &self.queue_depth())
            .finish()
    }
}
