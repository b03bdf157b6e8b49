//! A fixed amount of tree work, for comparing builds by instruction counts
//! where wall-clock figures are too noisy (a shared machine):
//!
//! ```text
//! cargo run --release -p keel --example tree_ops -- [KEYS] [GETS] [DIR] [CHECKPOINT] [WRITES] [RANGES]
//! perf stat -e instructions:u target/release/examples/tree_ops 50000 0
//! perf stat -e instructions:u target/release/examples/tree_ops 50000 1000000
//! ```
//!
//! Shaped like `keel bench kv`: a 64 MiB buffer pool, KEYS (default
//! 50,000) random 24-byte keys with 150-byte values put in one transaction
//! and committed (the bulk load, without its checkpoint), then GETS
//! (default 1,000,000) gets of loaded keys in read transactions of 1,000.
//! The keys come from a fixed xorshift sequence, so every run does the
//! same work: the difference between a run with GETS and one with none is
//! the gets' cost. Prints the rate of each part (and the log bytes the
//! load appended, and how much of the load's time its commit took). DIR
//! defaults to a new directory under the system temp dir, removed at the
//! end. CHECKPOINT `1` (default `0`) adds a `Database::checkpoint` after
//! the load's commit, timed apart, as the suite's bulk load times it (the
//! data in the data files). WRITES (default 0) then puts that many new
//! keys, one per durable transaction, as the suite's individual writes do,
//! in `individual_writes` (for `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect='*individual_writes*'`); the process's CPU time per
//! write is printed beside the rate (the rest of a write is the wait for
//! its durable write), and the writing thread's user time per write.
//! RANGES (default 0) then reads that many ranges of 10 entries from
//! loaded keys, 100 per read transaction, as the suite's range reads do
//! (`Range::next_into`, one key and one value buffer; with
//! `KEEL_RANGE_ITERATOR` set, the iterator's `next`, two new buffers per
//! entry), in `range_reads` (for callgrind as above).
//! The load also prints its CPU time: the loading thread's and the whole
//! process's (the log's threads included). With `KEEL_WAL_BUFFERED` set in
//! the environment the log is written through the page cache instead of
//! with O_DIRECT (`WalConfig::direct_io`).
//! With `KEEL_HUGE_PAGES` set, the buffer pool asks for transparent huge
//! pages (`BufferConfig::huge_pages`).

use std::path::PathBuf;
use std::time::Instant;

use keel::{Config, Database};

#[path = "kv_shape/mod.rs"]
mod kv_shape;
use kv_shape::{VALUE_BYTES, key, thread_cpu, thread_user_cpu};

const GETS_PER_TXN: u64 = 1_000;
const RANGES_PER_TXN: u64 = 100;
const RANGE_LEN: usize = 10;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let keys: u64 = args.get(1).map_or(Ok(50_000), |s| s.parse())?;
    let gets: u64 = args.get(2).map_or(Ok(1_000_000), |s| s.parse())?;
    let checkpoint = args.get(4).map_or(Ok(0u8), |s| s.parse())? != 0;
    let writes: u64 = args.get(5).map_or(Ok(0), |s| s.parse())?;
    let ranges: u64 = args.get(6).map_or(Ok(0), |s| s.parse())?;
    let (dir, remove) = match args.get(3) {
        Some(d) => (PathBuf::from(d), false),
        None => (
            std::env::temp_dir().join(format!("keel-tree-ops-{}", std::process::id())),
            true,
        ),
    };
    let mut config = Config::default();
    config.buffer.pool_bytes = 64 << 20;
    config.buffer.huge_pages = std::env::var_os("KEEL_HUGE_PAGES").is_some();
    if std::env::var_os("KEEL_WAL_BUFFERED").is_some() {
        config.wal.direct_io = false;
    }
    let db = Database::open(&dir, config)?;
    let tree = db.create_tree("kv")?;

    let cpu_start = (thread_cpu(), cpu_seconds()?);
    let started = Instant::now();
    let log_start = db.wal_end();
    let mut txn = db.begin()?;
    let value = [7u8; VALUE_BYTES];
    for i in 0..keys {
        txn.put(tree, &key(i), &value)?;
    }
    let puts = started.elapsed().as_secs_f64();
    txn.commit()?;
    let load = started.elapsed().as_secs_f64();
    println!(
        "load: {keys} puts in {load:.3} s, {:.0} puts/s, {} log bytes (commit {:.3} s)",
        keys as f64 / load,
        db.wal_end().0 - log_start.0,
        load - puts
    );
    println!(
        "load CPU: this thread {:.3} s, the process {:.3} s",
        thread_cpu() - cpu_start.0,
        cpu_seconds()? - cpu_start.1
    );
    if checkpoint {
        let started = Instant::now();
        let report = db.checkpoint()?;
        println!(
            "checkpoint: {} dirty pages left in {:.3} s",
            report.dirty_pages,
            started.elapsed().as_secs_f64()
        );
    }

    let started = Instant::now();
    let mut found = 0u64;
    let mut i = 0u64;
    while i < gets {
        let txn = db.begin_read()?;
        for j in i..(i + GETS_PER_TXN).min(gets) {
            let k = key(j.wrapping_mul(7919) % keys.max(1));
            found += u64::from(txn.get_key(tree, &k)?.is_some());
        }
        txn.commit()?;
        i += GETS_PER_TXN;
    }
    let read = started.elapsed().as_secs_f64();
    if gets > 0 {
        println!(
            "gets: {gets} ({found} found) in {read:.3} s, {:.0} gets/s",
            gets as f64 / read
        );
    }
    if writes > 0 {
        let cpu_before = cpu_seconds()?;
        let user_before = thread_user_cpu();
        let started = Instant::now();
        individual_writes(&db, tree, keys..keys + writes)?;
        let took = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds()? - cpu_before;
        let user = thread_user_cpu() - user_before;
        println!(
            "writes: {writes} durable puts in {took:.3} s, {:.0} commits/s, {:.1} µs CPU each \
             ({:.1} µs of it this thread's user time)",
            writes as f64 / took,
            cpu * 1e6 / writes as f64,
            user * 1e6 / writes as f64
        );
    }
    if ranges > 0 {
        let started = Instant::now();
        let entries = range_reads(&db, tree, keys, ranges)?;
        let took = started.elapsed().as_secs_f64();
        println!(
            "ranges: {ranges} ranges of {RANGE_LEN} ({entries} entries) in {took:.3} s, {:.0} ranges/s",
            ranges as f64 / took
        );
    }
    drop(db);
    if remove {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

/// One put of key `i` per durable transaction, for each `i` of `ids`.
#[inline(never)]
fn individual_writes(
    db: &Database,
    tree: keel::RelationId,
    ids: std::ops::Range<u64>,
) -> Result<(), keel::Error> {
    let value = [7u8; VALUE_BYTES];
    for i in ids {
        let mut txn = db.begin()?;
        txn.put(tree, &key(i), &value)?;
        txn.commit()?;
    }
    Ok(())
}

/// `count` ranges of up to [`RANGE_LEN`] entries from loaded keys, in read
/// transactions of [`RANGES_PER_TXN`]; the entries read.
#[inline(never)]
fn range_reads(
    db: &Database,
    tree: keel::RelationId,
    keys: u64,
    count: u64,
) -> Result<u64, keel::Error> {
    let iterator = std::env::var_os("KEEL_RANGE_ITERATOR").is_some();
    let mut entries = 0;
    let mut i = 0;
    let (mut k, mut v) = (Vec::new(), Vec::new());
    while i < count {
        let txn = db.begin_read()?;
        for j in i..(i + RANGES_PER_TXN).min(count) {
            let lo = key(j.wrapping_mul(7919) % keys.max(1));
            let from = (
                std::ops::Bound::Included(&lo[..]),
                std::ops::Bound::Unbounded,
            );
            let mut r = txn.range(tree, from)?;
            for _ in 0..RANGE_LEN {
                let more = if iterator {
                    r.next().transpose()?.is_some()
                } else {
                    r.next_into(&mut k, &mut v)?
                };
                if !more {
                    break;
                }
                entries += 1;
            }
        }
        txn.commit()?;
        i += RANGES_PER_TXN;
    }
    Ok(entries)
}

/// User plus system CPU time of this process so far, in seconds (Linux:
/// `/proc/self/stat`, in clock ticks of 1/100 s).
fn cpu_seconds() -> Result<f64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name, which ends at the last ')'.
    let at = stat.rfind(')').ok_or("malformed /proc/self/stat")? + 2;
    let fields: Vec<&str> = stat.get(at..).unwrap_or("").split_whitespace().collect();
    let field = |n: usize| -> Result<f64, Box<dyn std::error::Error>> {
        Ok(fields
            .get(n)
            .ok_or("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    Ok((field(11)? + field(12)?) / 100.0)
}
