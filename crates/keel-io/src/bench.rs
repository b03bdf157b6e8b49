//! Measurement functions behind `cargo bench -p keel-io --bench io` and the
//! CLI's `keel bench io` (enabled by the `bench` feature).
//!
//! Each function drives one backend with one pattern for a fixed wall-clock
//! duration and reports operations per second, latency percentiles and CPU
//! time per operation. Latency is measured by the submitter: from just
//! before it submits a request to its future returning. At queue depth > 1
//! the submitter waits for the oldest request first (a FIFO window), so a
//! request that finished early is counted when its turn comes — the same
//! bias for every backend. CPU time is `getrusage(RUSAGE_SELF)` user + system
//! over the run, divided by the operations: it covers every thread of the
//! process (workers, the dispatcher, and the kernel's io_uring workers
//! charged to it).
//!
//! Left out: warm-up control (the page cache is whatever the previous case
//! left) and multi-process load.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::{AsyncIo, FileClass, IoBuf, IoError, IoFuture, OpenOptions};

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// Operations completed.
    pub ops: u64,
    /// Wall-clock duration.
    pub elapsed: Duration,
    /// Operations per second.
    pub iops: f64,
    /// Median latency.
    pub latency_ns_p50: u64,
    /// 99th percentile latency.
    pub latency_ns_p99: u64,
    /// Process CPU time (user + system) per operation.
    pub cpu_ns_per_op: f64,
}

/// Random reads or random writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Positioned reads at random block-aligned offsets.
    RandomRead,
    /// Positioned writes at random block-aligned offsets.
    RandomWrite,
}

/// Creates `path` with `size_bytes` of non-zero data, synced (setup only).
pub fn prepare_file(path: &Path, size_bytes: u64) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8 + 1).collect();
    let mut left = size_bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()
}

/// Drops `file`'s pages from the kernel's page cache
/// (`posix_fadvise(POSIX_FADV_DONTNEED)` over the whole file), so the next
/// reads of it reach the device. Only clean pages are dropped: sync the file
/// first. Linux only; elsewhere an `Unsupported` error.
pub fn drop_page_cache(file: &File) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the call's duration (borrowed
        // from `file`); the advice only affects the kernel's cache.
        let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        // posix_fadvise returns the error number instead of setting errno.
        match r {
            0 => Ok(()),
            e => Err(std::io::Error::from_raw_os_error(e)),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "posix_fadvise is only used on Linux",
        ))
    }
}

/// Process CPU time so far (user + system, all threads).
pub fn cpu_time() -> Duration {
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the call's duration.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if r != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct Meter {
    hist: Option<Histogram<u64>>,
    started: Instant,
    cpu0: Duration,
    ops: u64,
}

impl Meter {
    fn start() -> Meter {
        Meter {
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).ok(),
            started: Instant::now(),
            cpu0: cpu_time(),
            ops: 0,
        }
    }

    fn record(&mut self, latency: Duration) {
        self.ops += 1;
        if let Some(h) = self.hist.as_mut() {
            let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
            h.saturating_record(ns.max(1));
        }
    }

    fn finish(self) -> BenchResult {
        let elapsed = self.started.elapsed();
        let cpu = cpu_time().saturating_sub(self.cpu0);
        let ops = self.ops.max(1);
        let q = |p| self.hist.as_ref().map_or(0, |h| h.value_at_quantile(p));
        BenchResult {
            ops: self.ops,
            elapsed,
            iops: self.ops as f64 / elapsed.as_secs_f64(),
            latency_ns_p50: q(0.5),
            latency_ns_p99: q(0.99),
            cpu_ns_per_op: cpu.as_nanos() as f64 / ops as f64,
        }
    }
}

/// xorshift64*: the offsets' random source (fixed seed: runs are comparable).
struct Offsets {
    state: u64,
    blocks: u64,
    block_bytes: u64,
}

impl Offsets {
    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r % self.blocks) * self.block_bytes
    }
}

enum InFlight {
    Read(IoFuture<(IoBuf, usize)>),
    Write(IoFuture<IoBuf>),
}

/// Random `block_bytes` reads or writes over the existing file at `path`,
/// keeping `queue_depth` requests in flight, for `duration`.
pub fn random_io(
    io: &dyn AsyncIo,
    path: &Path,
    pattern: Pattern,
    block_bytes: usize,
    queue_depth: usize,
    direct: bool,
    duration: Duration,
) -> Result<BenchResult, IoError> {
    let opts = OpenOptions::new(FileClass::Data).write(true).direct(direct);
    let file = io.open(path, opts).wait()?;
    let size = io.size(file).wait()?;
    let mut offsets = Offsets {
        state: 0x9E37_79B9_7F4A_7C15,
        blocks: (size / block_bytes as u64).max(1),
        block_bytes: block_bytes as u64,
    };
    let mut spare: Vec<IoBuf> = (0..queue_depth.max(1))
        .map(|i| {
            let mut b = IoBuf::aligned(block_bytes);
            b.fill(i as u8 + 1);
            b
        })
        .collect();
    let mut window: VecDeque<(InFlight, Instant)> = VecDeque::new();
    let mut meter = Meter::start();
    let deadline = Instant::now() + duration;
    loop {
        let submitting = Instant::now() < deadline;
        while submitting && window.len() < queue_depth.max(1) {
            let Some(buf) = spare.pop() else { break };
            let off = offsets.next();
            // The clock starts before submit: a backend may do the whole
            // operation inside it (io_uring on a page-cache hit).
            let t0 = Instant::now();
            let fut = match pattern {
                Pattern::RandomRead => InFlight::Read(io.read_at(file, off, buf)),
                Pattern::RandomWrite => InFlight::Write(io.write_at(file, off, buf)),
            };
            window.push_back((fut, t0));
        }
        let Some((fut, t0)) = window.pop_front() else {
            break;
        };
        let buf = match fut {
            InFlight::Read(f) => f.wait()?.0,
            InFlight::Write(f) => f.wait()?,
        };
        meter.record(t0.elapsed());
        spare.push(buf);
    }
    let result = meter.finish();
    io.close(file).wait()?;
    Ok(result)
}

/// Appends `block_bytes` then fdatasyncs, one pair at a time, to a new file
/// at `path`, for `duration`. One operation = one write + one fdatasync.
pub fn append_fdatasync(
    io: &dyn AsyncIo,
    path: &Path,
    block_bytes: usize,
    duration: Duration,
) -> Result<BenchResult, IoError> {
    let opts = OpenOptions::read_write_create(FileClass::Wal).truncate(true);
    let file = io.open(path, opts).wait()?;
    let mut buf = IoBuf::zeroed(block_bytes);
    buf.fill(0x5a);
    let mut offset = 0u64;
    let mut meter = Meter::start();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        buf = io.write_at(file, offset, buf).wait()?;
        io.fdatasync(file).wait()?;
        meter.record(t0.elapsed());
        offset += block_bytes as u64;
    }
    let result = meter.finish();
    io.close(file).wait()?;
    Ok(result)
}

/// The baseline: a plain `pwrite` + `fdatasync` loop on the calling thread,
/// no I/O layer at all.
pub fn plain_pwrite_fdatasync(
    path: &Path,
    block_bytes: usize,
    duration: Duration,
) -> std::io::Result<BenchResult> {
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let buf = vec![0x5a; block_bytes];
    let mut offset = 0u64;
    let mut meter = Meter::start();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        file.write_all_at(&buf, offset)?;
        file.sync_data()?;
        meter.record(t0.elapsed());
        offset += block_bytes as u64;
    }
    Ok(meter.finish())
}
