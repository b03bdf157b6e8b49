//! Keel's one-writer commit against the disk's own loops, interleaved in
//! short windows so the disk's drift falls on all of them alike:
//!
//! ```text
//! cargo run --release -p keel --example commit_pair -- [SECS] [WINDOW] [DIR]
//! ```
//!
//! Loads 50,000 keys as `keel bench kv` does (24-byte keys, 150-byte
//! values, a 64 MiB pool, checkpointed), then for SECS (default 20) takes
//! turns of WINDOW (default 200) commits each, in the order keel,
//! fdatasync loop, keel, log-shaped loop:
//!
//! - `keel`: one put of a new key per durable transaction (the suite's
//!   individual writes);
//! - `fdatasync loop`: `pwrite` of 128 B then `fdatasync` on a file written
//!   out and synced first (the suite's reference);
//! - `log-shaped loop`: what Keel's log asks of the disk per commit without
//!   Keel: an `O_DIRECT` write with `RWF_DSYNC` of the 4 KiB blocks holding
//!   the next B bytes (B: Keel's log bytes per commit in its window before,
//!   at most 32 KiB), so a commit that crosses a block writes two.
//!
//! Prints each one's mean time, the calling thread's CPU time per commit
//! (user and system, and the user part), the mean time of the first 20 commits of a window,
//! and the rates' ratios. DIR defaults to a new directory under the system
//! temp dir, removed at the end. In the environment:
//!
//! - `KEEL_PAIR_CHECKPOINT`: a checkpoint before each of Keel's windows
//!   (untimed), so its first change to each page logs the page's image, as
//!   in the kv suite, where every slice of Keel's starts checkpointed;
//! - `KEEL_PAIR_REST_MS=N`: a sleep of N ms before every window (the kv
//!   suite settles the disk before each slice);
//! - `KEEL_PAIR_NO_BACKGROUND_WRITER`: the buffer pool without its
//!   background writer.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Instant;

use keel::{Config, Database};

#[path = "kv_shape/mod.rs"]
mod kv_shape;
use kv_shape::{VALUE_BYTES, key, thread_cpu, thread_user_cpu};

const LOAD_KEYS: u64 = 50_000;
const FILE_BYTES: u64 = 64 << 20;
const BLOCK: usize = 4096;
/// Most bytes per commit the log-shaped loop writes (Keel's can be more
/// with several page images).
const MAX_SHAPED: usize = 8 * BLOCK;
/// Commits at the start of each window timed apart.
const FIRST: u64 = 20;

#[derive(Default)]
struct Tally {
    commits: u64,
    secs: f64,
    cpu: f64,
    /// The user-space part of `cpu`.
    user: f64,
    /// Time of the first FIRST commits of each window, and their number.
    first: f64,
    firsts: u64,
}

impl Tally {
    fn us(&self) -> f64 {
        self.secs * 1e6 / self.commits.max(1) as f64
    }
    fn cpu_us(&self) -> f64 {
        self.cpu * 1e6 / self.commits.max(1) as f64
    }
    fn user_us(&self) -> f64 {
        self.user * 1e6 / self.commits.max(1) as f64
    }
    fn rate(&self) -> f64 {
        self.commits as f64 / self.secs.max(1e-9)
    }
}

fn window(
    t: &mut Tally,
    n: u64,
    mut one: impl FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let c0 = thread_cpu();
    let u0 = thread_user_cpu();
    let s = Instant::now();
    for i in 0..n {
        let at = Instant::now();
        one()?;
        if i < FIRST {
            t.first += at.elapsed().as_secs_f64();
            t.firsts += 1;
        }
    }
    t.secs += s.elapsed().as_secs_f64();
    t.cpu += thread_cpu() - c0;
    t.user += thread_user_cpu() - u0;
    t.commits += n;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).map_or(Ok(20.0), |s| s.parse())?;
    let win: u64 = args.get(2).map_or(Ok(200), |s| s.parse())?;
    let (dir, remove) = match args.get(3) {
        Some(d) => (PathBuf::from(d), false),
        None => (
            std::env::temp_dir().join(format!("keel-commit-pair-{}", std::process::id())),
            true,
        ),
    };
    let checkpoint = std::env::var_os("KEEL_PAIR_CHECKPOINT").is_some();
    let rest_ms: Option<u64> = match std::env::var("KEEL_PAIR_REST_MS") {
        Ok(v) => Some(v.parse()?),
        Err(_) => None,
    };
    let mut config = Config::default();
    config.buffer.pool_bytes = 64 << 20;
    config.buffer.background_writer = std::env::var_os("KEEL_PAIR_NO_BACKGROUND_WRITER").is_none();
    let db = Database::open(dir.join("db"), config)?;
    let tree = db.create_tree("kv")?;
    let value = [7u8; VALUE_BYTES];
    let mut txn = db.begin()?;
    for i in 0..LOAD_KEYS {
        txn.put(tree, &key(i), &value)?;
    }
    txn.commit()?;
    db.checkpoint()?;

    let zeros = vec![0u8; 1 << 20];
    let open = |name: &str, flags: i32| -> Result<std::fs::File, Box<dyn std::error::Error>> {
        let path = dir.join(name);
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let mut off = 0;
        while off < FILE_BYTES {
            f.write_all_at(&zeros, off)?;
            off += zeros.len() as u64;
        }
        f.sync_all()?;
        drop(f);
        Ok(OpenOptions::new()
            .write(true)
            .custom_flags(flags)
            .open(&path)?)
    };
    let plain = open("fdatasync.dat", 0)?;
    let direct = open("log-shaped.dat", libc::O_DIRECT)?;
    let mut block = keel_io::IoBuf::aligned(MAX_SHAPED + BLOCK);
    block.fill(0x5a);

    let (mut k, mut l, mut s) = (Tally::default(), Tally::default(), Tally::default());
    let mut next = LOAD_KEYS;
    let mut loop_off = 0u64;
    let mut shaped_off = 0u64;
    let mut per_commit = 0u64;
    let rest = || {
        if let Some(ms) = rest_ms {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    };
    let started = Instant::now();
    // Turns: keel, fdatasync loop, keel, log-shaped loop.
    for turn in 0u64.. {
        if started.elapsed().as_secs_f64() >= secs && turn % 4 == 0 {
            break;
        }
        if turn % 2 == 0 && checkpoint {
            db.checkpoint()?;
        }
        rest();
        match turn % 4 {
            0 | 2 => {
                let end = db.wal_end();
                window(&mut k, win, || {
                    let mut txn = db.begin()?;
                    txn.put(tree, &key(next), &value)?;
                    next += 1;
                    txn.commit()?;
                    Ok(())
                })?;
                let bytes = (db.wal_end().0 - end.0) / win;
                if turn == 0 {
                    println!("keel's log bytes per commit, first window: {bytes}");
                }
                per_commit = bytes.min(MAX_SHAPED as u64);
            }
            1 => window(&mut l, win, || {
                plain.write_all_at(&block[..128], loop_off % FILE_BYTES)?;
                plain.sync_data()?;
                loop_off += 128;
                Ok(())
            })?,
            _ => window(&mut s, win, || {
                let start = shaped_off % (FILE_BYTES - 2 * MAX_SHAPED as u64);
                let first = start / BLOCK as u64 * BLOCK as u64;
                let last = (start + per_commit).div_ceil(BLOCK as u64) * BLOCK as u64;
                let iov = [std::io::IoSlice::new(&block[..(last - first) as usize])];
                // SAFETY: the descriptor is open and `iov` points at one
                // buffer that outlives the call.
                let n = unsafe {
                    libc::pwritev2(
                        direct.as_raw_fd(),
                        iov.as_ptr().cast(),
                        1,
                        first as libc::off_t,
                        libc::RWF_DSYNC,
                    )
                };
                if n < 0 {
                    return Err(std::io::Error::last_os_error().into());
                }
                shaped_off += per_commit;
                Ok(())
            })?,
        }
    }
    for (name, t) in [
        ("keel", &k),
        ("fdatasync loop", &l),
        ("log-shaped loop", &s),
    ] {
        println!(
            "{name:16} {:>7} commits {:>7.0}/s {:>6.1} µs/commit {:>5.1} µs CPU ({:>4.1} user), first {FIRST} of a window {:>6.1} µs each",
            t.commits,
            t.rate(),
            t.us(),
            t.cpu_us(),
            t.user_us(),
            t.first * 1e6 / t.firsts.max(1) as f64
        );
    }
    println!(
        "keel / fdatasync loop {:.3}, keel / log-shaped loop {:.3}, log-shaped / fdatasync {:.3}",
        k.rate() / l.rate(),
        k.rate() / s.rate(),
        s.rate() / l.rate()
    );
    drop(db);
    if remove {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
