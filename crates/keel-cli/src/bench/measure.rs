//! The timed loops: concurrent committers, random point reads (for a time,
//! or the first N after a cold start) and loading rows.
//!
//! A commit loop drives [`TimedOp`]s, one per thread: an engine's
//! [`Session`] (its `commit_one`), or a loop with no engine behind it (the
//! disk's commit loops, the group-commit reference, a statement round trip).
//! The clock starts once every thread has opened its connection and stops
//! when the deadline passes; operations finishing after the deadline are
//! counted, and the elapsed time is taken after every thread has stopped, so
//! the rate is operations over the time they took.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use keel_io::sim::Rng;

use super::engine::{Engine, Session};
use crate::Failure;

/// What a timed run of commits measured.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Operations timed.
    pub ops: u64,
    /// Operations per second over the run.
    pub per_sec: f64,
    /// Latency percentiles in microseconds: p50, p90, p99, p99.9.
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// CPU time (user + system) of this whole process per operation, in
    /// microseconds, over the timed window: every thread of an in-process
    /// engine (committers, log writer, checkpointer, I/O threads) and the
    /// kernel work charged to them. NaN where not measured.
    pub cpu_us_per_op: f64,
}

fn histogram() -> Result<Histogram<u64>, Failure> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3)
        .map_err(|e| Failure(format!("histogram: {e}")))
}

/// One operation a timed loop repeats; each thread owns one.
pub trait TimedOp: Send {
    /// Runs the operation once for row `id`; returns once it is durable (a
    /// commit) or answered (a round trip).
    fn run(&mut self, id: u64, payload: &[u8]) -> Result<(), Failure>;
}

impl TimedOp for Box<dyn Session> {
    fn run(&mut self, id: u64, payload: &[u8]) -> Result<(), Failure> {
        self.commit_one(id, payload)
    }
}

/// Opens one thread's [`TimedOp`].
pub type OpenOp<'a> = &'a (dyn Fn() -> Result<Box<dyn TimedOp>, Failure> + Sync);
/// An owned [`OpenOp`].
pub type OpenBox<'a> = Box<dyn Fn() -> Result<Box<dyn TimedOp>, Failure> + Sync + 'a>;

/// Opens `engine`'s sessions as [`TimedOp`]s (their `commit_one`).
pub fn sessions(engine: &dyn Engine) -> impl Fn() -> Result<Box<dyn TimedOp>, Failure> + Sync {
    move || Ok(Box::new(engine.session()?) as Box<dyn TimedOp>)
}

fn rate(h: &Histogram<u64>, secs: f64) -> Rate {
    let q = |p| h.value_at_quantile(p) as f64 / 1e3;
    Rate {
        ops: h.len(),
        per_sec: h.len() as f64 / secs.max(1e-9),
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
        cpu_us_per_op: f64::NAN,
    }
}

/// Starts a measurement's threads after its clock: every thread and the
/// caller meet (`ready`), the caller reads the clock, and only then are the
/// threads let go (`go`). With one barrier the threads could run, even
/// finish, before a caller that lost its core read the clock, and the
/// figure would count their work in less time than it took.
pub struct StartGate {
    ready: Barrier,
    go: Barrier,
}

impl StartGate {
    /// A gate for `threads` threads and the caller.
    pub fn new(threads: usize) -> StartGate {
        StartGate {
            ready: Barrier::new(threads + 1),
            go: Barrier::new(threads + 1),
        }
    }

    /// On each thread: returns once the caller has read the clock.
    pub fn wait(&self) {
        self.ready.wait();
        self.go.wait();
    }

    /// On the caller: once every thread is ready, reads the clock, lets
    /// the threads go and returns the time read.
    pub fn start(&self) -> Instant {
        self.ready.wait();
        let start = Instant::now();
        self.go.wait();
        start
    }
}

/// `threads` committers, each on its own [`TimedOp`] from `open`, commit one
/// row at a time for `secs`; ids come from `next_id`, so every row is new.
pub fn commits(
    open: OpenOp<'_>,
    threads: usize,
    secs: f64,
    next_id: &AtomicU64,
    payload: &[u8],
) -> Result<Rate, Failure> {
    let stop = AtomicBool::new(false);
    let gate = StartGate::new(threads);
    let first_error: Mutex<Option<Failure>> = Mutex::new(None);
    let fail = |e: Failure| {
        stop.store(true, Ordering::Relaxed);
        if let Ok(mut g) = first_error.lock() {
            g.get_or_insert(e);
        }
    };
    let mut all = histogram()?;
    let mut elapsed = 0.0;
    let (mut cpu_start, mut cpu) = (Duration::ZERO, Duration::ZERO);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let op = open();
                    gate.wait();
                    let mut h = histogram().ok()?;
                    let mut op = op.map_err(fail).ok()?;
                    while !stop.load(Ordering::Relaxed) {
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        let t = Instant::now();
                        if let Err(e) = op.run(id, payload) {
                            fail(e);
                            break;
                        }
                        h.saturating_record(t.elapsed().as_nanos() as u64);
                    }
                    Some(h)
                })
            })
            .collect();
        let start = gate.start();
        cpu_start = keel_io::bench::cpu_time();
        let deadline = start + Duration::from_secs_f64(secs);
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5).min(deadline - Instant::now()));
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            if let Ok(Some(h)) = h.join() {
                let _ = all.add(h);
            }
        }
        elapsed = start.elapsed().as_secs_f64();
        cpu = keel_io::bench::cpu_time().saturating_sub(cpu_start);
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut r = rate(&all, elapsed);
    r.cpu_us_per_op = cpu.as_secs_f64() * 1e6 / (r.ops.max(1) as f64);
    Ok(r)
}

/// Random point reads of ids in `0..rows` on one session for `secs`.
pub fn reads(session: &mut dyn Session, rows: u64, secs: f64, seed: u64) -> Result<Rate, Failure> {
    let limit = Duration::from_secs_f64(secs);
    read_loop(session, rows, seed, |_, elapsed| elapsed >= limit)
}

/// The first `n` random point reads of ids in `0..rows` on one session
/// (the cold reads: every one timed, from the first to the last).
pub fn first_reads(
    session: &mut dyn Session,
    rows: u64,
    n: u64,
    seed: u64,
) -> Result<Rate, Failure> {
    read_loop(session, rows, seed, |done, _| done >= n)
}

/// Reads until `enough(reads done, time elapsed)`; every id must be found.
fn read_loop(
    session: &mut dyn Session,
    rows: u64,
    seed: u64,
    mut enough: impl FnMut(u64, Duration) -> bool,
) -> Result<Rate, Failure> {
    let mut rng = Rng::new(seed);
    let mut h = histogram()?;
    let start = Instant::now();
    let mut missing = 0u64;
    while !enough(h.len(), start.elapsed()) {
        let id = rng.below(rows.max(1));
        let t = Instant::now();
        if !session.point_read(id)? {
            missing += 1;
        }
        h.saturating_record(t.elapsed().as_nanos() as u64);
    }
    if missing > 0 {
        return Err(Failure(format!(
            "{missing} point reads found no row (of ids 0..{rows} loaded)"
        )));
    }
    Ok(rate(&h, start.elapsed().as_secs_f64()))
}

/// Loads rows `0..rows` in transactions of `batch` rows.
pub fn load(
    session: &mut dyn Session,
    rows: u64,
    batch: u64,
    payload: &[u8],
) -> Result<f64, Failure> {
    let start = Instant::now();
    let mut id = 0;
    while id < rows {
        let n = batch.min(rows - id);
        session.insert_batch(id, n, payload)?;
        id += n;
    }
    Ok(start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_thread_starts_before_the_clock() {
        let threads = 8;
        for _ in 0..20 {
            let gate = StartGate::new(threads);
            let (start, begun) = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        s.spawn(|| {
                            gate.wait();
                            Instant::now()
                        })
                    })
                    .collect();
                let start = gate.start();
                let begun: Vec<Instant> = handles
                    .into_iter()
                    .map(|h| h.join().expect("thread"))
                    .collect();
                (start, begun)
            });
            for b in begun {
                assert!(b >= start, "a thread began before the clock was read");
            }
        }
    }
}
