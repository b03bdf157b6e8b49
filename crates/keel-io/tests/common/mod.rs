//! Test helpers shared by the integration tests: a tiny executor, fixtures
//! for every backend, and deterministic byte patterns.

#![allow(dead_code)]
#![allow(clippy::expect_used)] // fixtures panic on setup failure by design

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use keel_io::sim::{SimConfig, SimIo};
use keel_io::{AsyncIo, Backend, IoConfig, ThreadPoolIo, UringIo};

/// A waker that unparks the thread that is blocking on the future.
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// The smallest executor there is: poll, park until woken, repeat.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

/// A backend plus a directory to work in.
pub struct Fixture {
    pub io: Arc<dyn AsyncIo>,
    pub dir: PathBuf,
    pub sim: Option<Arc<SimIo>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Fixture {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The backend alone (the simulator's second handle dropped), and what
    /// keeps the directory alive: for a test that needs to hold the only
    /// reference to the backend.
    pub fn into_backend(self) -> (Arc<dyn AsyncIo>, PathBuf, Option<tempfile::TempDir>) {
        (self.io, self.dir, self._tmp)
    }
}

fn tempdir() -> tempfile::TempDir {
    // CARGO_TARGET_TMPDIR is under the target directory, on /work (a disk
    // file system), not on a tmpfs that would refuse O_DIRECT.
    tempfile::Builder::new()
        .prefix("keel-io-test")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

fn config(backend: Backend, queue_depth: usize) -> IoConfig {
    IoConfig {
        backend,
        queue_depth,
        worker_threads: 4,
    }
}

pub fn thread_pool(queue_depth: usize) -> Option<Fixture> {
    let tmp = tempdir();
    let io = ThreadPoolIo::new(&config(Backend::ThreadPool, queue_depth)).expect("thread pool");
    Some(Fixture {
        io: Arc::new(io),
        dir: tmp.path().to_path_buf(),
        sim: None,
        _tmp: Some(tmp),
    })
}

pub fn io_uring(queue_depth: usize) -> Option<Fixture> {
    let io = match UringIo::new(&config(Backend::IoUring, queue_depth)) {
        Ok(io) => io,
        Err(e) => {
            eprintln!("SKIPPED: io_uring is unavailable on this machine: {e}");
            return None;
        }
    };
    let tmp = tempdir();
    Some(Fixture {
        io: Arc::new(io),
        dir: tmp.path().to_path_buf(),
        sim: None,
        _tmp: Some(tmp),
    })
}

pub fn sim(queue_depth: usize) -> Option<Fixture> {
    let sim = Arc::new(SimIo::new(SimConfig {
        queue_depth,
        ..SimConfig::seeded(42)
    }));
    let dir = PathBuf::from("/t");
    sim.create_dir(&dir).wait().expect("sim dir");
    Some(Fixture {
        io: sim.clone(),
        dir,
        sim: Some(sim),
        _tmp: None,
    })
}

/// Deterministic bytes for (tag, position).
pub fn pattern(tag: u64, len: usize) -> Vec<u8> {
    let mut x = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
