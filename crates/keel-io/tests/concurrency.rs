//! Concurrency cases of the shared suite, run against every backend: many
//! threads submitting, waiting, polling and dropping requests at once; a
//! sync held behind writes of other threads (which exit without waiting);
//! shutdown racing submitters; the last reference dropped inside a waker.
//!
//! The io_uring backend is where these bite: any thread may submit, reap a
//! completion, hold the reaper role or be nudged to take it (see
//! `src/uring/reaper.rs`). The queue depth is small (4), so the permit gate
//! and the ring's hand-offs are exercised all the time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use common::{Fixture, block_on, pattern};
use keel_io::{AsyncIo, FileClass, FileHandle, IoBuf, IoError, IoFuture, OpenOptions};

const BLOCK: usize = 4096;

fn create(io: &dyn AsyncIo, f: &Fixture, name: &str) -> FileHandle {
    io.open(
        &f.path(name),
        OpenOptions::read_write_create(FileClass::Data),
    )
    .wait()
    .expect("open")
}

/// What one thread of `many_threads` does with its requests.
#[derive(Clone, Copy)]
enum Style {
    /// Submits a window of writes, waits for them newest first.
    WaitNewestFirst,
    /// Awaits every request on a tiny executor (adopted futures).
    Poll,
    /// Drops every other write's future and waits for the rest.
    DropSome,
    /// `run_blocking` writes and syncs.
    Blocking,
}

/// Eight threads, four styles, each writing its own region of one file
/// (with syncs and read-backs in between); the file holds every block at
/// the end.
fn many_threads(f: &Fixture) {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 96;
    let h = create(&*f.io, f, "many");
    let styles = [
        Style::WaitNewestFirst,
        Style::Poll,
        Style::DropSome,
        Style::Blocking,
    ];
    thread::scope(|s| {
        for t in 0..THREADS {
            let io = &*f.io;
            let style = styles[t as usize % styles.len()];
            s.spawn(move || {
                let at = |i: u64| (t * PER_THREAD + i) * BLOCK as u64;
                let data = |i: u64| IoBuf::from(pattern(t * 1000 + i, BLOCK));
                let mut window = Vec::new();
                for i in 0..PER_THREAD {
                    match style {
                        Style::WaitNewestFirst => {
                            window.push(io.write_at(h, at(i), data(i)));
                            if window.len() == 3 {
                                while let Some(w) = window.pop() {
                                    w.wait().unwrap();
                                }
                            }
                        }
                        Style::Poll => {
                            block_on(io.write_at(h, at(i), data(i))).unwrap();
                        }
                        Style::DropSome => {
                            let w = io.write_at(h, at(i), data(i));
                            if i % 2 == 0 {
                                drop(w);
                            } else {
                                w.wait().unwrap();
                            }
                        }
                        Style::Blocking => {
                            io.write_at_blocking(h, at(i), data(i)).unwrap();
                        }
                    }
                    if i % 16 == 15 {
                        for w in window.drain(..) {
                            w.wait().unwrap();
                        }
                        match style {
                            Style::Poll => block_on(io.fdatasync(h)).unwrap(),
                            Style::Blocking => io.fdatasync_blocking(h).unwrap(),
                            _ => io.fdatasync(h).wait().unwrap(),
                        }
                        // Every write of this thread so far has completed:
                        // the sync waited for those it did not.
                        let back = io.read_exact_at(h, at(i - 15), IoBuf::zeroed(16 * BLOCK));
                        let back = back.wait().unwrap();
                        for k in 0..16 {
                            let got = &back[k * BLOCK..(k + 1) * BLOCK];
                            let want = pattern(t * 1000 + i - 15 + k as u64, BLOCK);
                            assert_eq!(got, &want[..], "thread {t} block {}", i - 15 + k as u64);
                        }
                    }
                }
            });
        }
    });
    let len = (THREADS * PER_THREAD) as usize * BLOCK;
    let (all, n) = f.io.read_at(h, 0, IoBuf::zeroed(len)).wait().unwrap();
    assert_eq!(n, len);
    for t in 0..THREADS {
        for i in 0..PER_THREAD {
            let at = ((t * PER_THREAD + i) as usize) * BLOCK;
            assert_eq!(&all[at..at + BLOCK], &pattern(t * 1000 + i, BLOCK)[..]);
        }
    }
}

/// Writers on other threads submit writes and a sync and exit without
/// waiting (on io_uring their thread's kernel workers run them, and must not
/// be torn down with the thread first); a sync submitted after them, waited
/// for on yet another thread, completes only after every one of those
/// writes did, and everything succeeds.
fn sync_behind_other_threads(f: &Fixture) {
    let h = create(&*f.io, f, "held");
    for round in 0..16u64 {
        let (writes, syncs): (Vec<IoFuture<IoBuf>>, Vec<IoFuture<()>>) = thread::scope(|s| {
            let handles: Vec<_> = (0..4u64)
                .map(|t| {
                    let io = &*f.io;
                    s.spawn(move || {
                        let writes: Vec<_> = (0..8u64)
                            .map(|i| {
                                let block = t * 8 + i;
                                let buf = IoBuf::from(pattern(round * 100 + block, BLOCK));
                                io.write_at(h, block * BLOCK as u64, buf)
                            })
                            .collect();
                        (writes, io.fdatasync(h))
                    })
                })
                .collect();
            let mut writes = Vec::new();
            let mut syncs = Vec::new();
            for j in handles {
                let (w, s) = j.join().unwrap();
                writes.extend(w);
                syncs.push(s);
            }
            (writes, syncs)
        });
        let sync = f.io.fsync(h);
        let synced = thread::spawn(move || sync.wait()).join().unwrap();
        synced.unwrap();
        assert!(
            writes.iter().all(|w| w.is_ready()),
            "round {round}: the sync completed before a write submitted before it"
        );
        for (block, w) in writes.into_iter().enumerate() {
            let buf = w.wait().unwrap();
            assert_eq!(&buf[..], &pattern(round * 100 + block as u64, BLOCK)[..]);
        }
        for s in syncs {
            s.wait().unwrap();
        }
    }
}

/// While this thread has a long write to a file in flight, four threads
/// each submit a write to it and a sync, hand the futures over and exit at
/// once: every request still succeeds (leaving a future never cancels its
/// request, whichever thread submitted it), and the data is there. On
/// io_uring the kernel queues these writes on each submitting thread's own
/// workers and runs one file's writes one at a time across all of them, so
/// the exiting threads' writes are still queued behind the long one when
/// they exit.
fn submitters_exit_at_once(f: &Fixture) {
    const LONG: usize = 32 << 20;
    const SHORT: usize = 64 * 1024;
    let h = create(&*f.io, f, "exit");
    let long_data = IoBuf::from(pattern(7, LONG));
    let at = |t: u64| LONG as u64 + t * SHORT as u64;
    let mut long_data = Some(long_data);
    for round in 0..4u64 {
        let Some(buf) = long_data.take() else { break };
        let long = f.io.write_at(h, 0, buf);
        let spawned: Vec<_> = (0..4u64)
            .map(|t| {
                let io = Arc::clone(&f.io);
                thread::spawn(move || {
                    let w = io.write_at(h, at(t), IoBuf::from(pattern(round * 10 + t, SHORT)));
                    (w, io.fdatasync(h))
                })
            })
            .collect();
        for (t, j) in spawned.into_iter().enumerate() {
            let (w, sync) = j.join().unwrap();
            sync.wait().unwrap();
            let buf = w.wait().unwrap();
            assert_eq!(&buf[..], &pattern(round * 10 + t as u64, SHORT)[..]);
        }
        long_data = Some(long.wait().unwrap());
    }
}

/// Shutdown while four threads keep submitting: it returns, every future
/// admitted before it completes (Ok), every later one fails with ShutDown.
fn shutdown_races_submitters(f: &Fixture) {
    let h = create(&*f.io, f, "race");
    let futures = Mutex::new(Vec::new());
    let started = std::sync::Barrier::new(5);
    thread::scope(|s| {
        for t in 0..4u64 {
            let (io, futures, started) = (&*f.io, &futures, &started);
            s.spawn(move || {
                started.wait();
                for i in 0u64.. {
                    let off = (t * 1_000 + i % 1_000) * BLOCK as u64;
                    let buf = IoBuf::from(pattern(i, BLOCK));
                    let w = match io.try_write_at(h, off, buf) {
                        Ok(w) => w,
                        Err(r) if matches!(r.error, IoError::WouldBlock { .. }) => {
                            io.write_at(h, off, r.request.into_bufs().remove(0))
                        }
                        Err(r) => {
                            assert!(matches!(r.error, IoError::ShutDown { .. }), "{}", r.error);
                            break;
                        }
                    };
                    let sync = (i % 8 == 7).then(|| io.fdatasync(h));
                    futures.lock().unwrap().push((w, sync));
                }
            });
        }
        started.wait();
        // Shut down while the submitters are well under way.
        while futures.lock().unwrap().len() < 64 {
            thread::sleep(Duration::from_millis(1));
        }
        f.io.shutdown();
    });
    let futures = futures.into_inner().unwrap();
    for (w, sync) in futures {
        assert!(w.is_ready(), "a future is complete after shutdown");
        match w.wait() {
            Ok(_) | Err(IoError::ShutDown { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
        if let Some(sync) = sync {
            assert!(matches!(
                sync.wait(),
                Ok(()) | Err(IoError::ShutDown { .. })
            ));
        }
    }
}

/// Drops the backend it holds when woken, then says so.
struct DropOnWake {
    io: Mutex<Option<Arc<dyn AsyncIo>>>,
    woke: Mutex<Option<mpsc::Sender<()>>>,
}

impl Wake for DropOnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        drop(self.io.lock().unwrap().take());
        if let Some(tx) = self.woke.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

/// The last reference to the backend is dropped inside a waker that a
/// completion runs (on whichever thread completes it): the backend shuts
/// down from there without waiting for itself, and the future is complete.
fn last_reference_dropped_in_a_waker(make: fn(usize) -> Option<Fixture>) {
    let Some(f) = make(4) else { return };
    let h = create(&*f.io, &f, "w");
    let write = f.io.write_at(h, 0, IoBuf::from(pattern(1, BLOCK)));
    let mut sync = f.io.fsync(h);
    let (io, _dir, _tmp) = f.into_backend();
    let (tx, rx) = mpsc::channel();
    let waker = Arc::new(DropOnWake {
        io: Mutex::new(Some(io)),
        woke: Mutex::new(Some(tx)),
    });
    let w = Waker::from(Arc::clone(&waker));
    match std::pin::Pin::new(&mut sync).poll(&mut Context::from_waker(&w)) {
        // A backend that completes at submission (the simulator) never
        // calls the waker.
        Poll::Ready(r) => {
            r.unwrap();
            write.wait().unwrap();
            return;
        }
        Poll::Pending => {}
    }
    drop(w);
    drop(waker);
    // The dispatcher or this thread (is_ready collects completions) runs it.
    let mut woke = false;
    for _ in 0..10_000 {
        if rx.recv_timeout(Duration::from_millis(1)).is_ok() {
            woke = true;
            break;
        }
        let _ = write.is_ready();
    }
    assert!(woke, "the waker ran");
    assert!(sync.is_ready());
    block_on(sync).unwrap();
    write.wait().unwrap();
}

macro_rules! suite {
    ($name:ident, $make:path) => {
        mod $name {
            use super::*;

            fn run(case: fn(&Fixture)) {
                if let Some(f) = $make(4) {
                    case(&f);
                }
            }

            #[test]
            fn many_threads() {
                run(super::many_threads);
            }
            #[test]
            fn sync_behind_other_threads() {
                run(super::sync_behind_other_threads);
            }
            #[test]
            fn submitters_exit_at_once() {
                run(super::submitters_exit_at_once);
            }
            #[test]
            fn shutdown_races_submitters() {
                run(super::shutdown_races_submitters);
            }
            #[test]
            fn last_reference_dropped_in_a_waker() {
                super::last_reference_dropped_in_a_waker($make);
            }
        }
    };
}

suite!(thread_pool, common::thread_pool);
suite!(io_uring, common::io_uring);
suite!(sim, common::sim);
