//! CRC32C throughput: `cargo bench -p keel --bench crc`.
//!
//! For each input size (an 8 KiB page; 512 B, just above the hardware path's
//! length split; 256, 64 and 32 B, the range of WAL records) it measures:
//!
//! - `keel`: [`keel::checksum::crc32c`], the dispatching entry point that
//!   pages and WAL records use (mode chosen by `KEEL_CRC32C`, default auto);
//! - `hardware`: [`keel::checksum::hardware::crc32c`], Keel's hardware path
//!   (`crc-fast` up to 256 B, the `crc32c` crate above);
//! - `crc32c_crate`, `crc_fast_crate`: each hardware crate alone at every
//!   size, so the split can be re-checked on a new machine;
//! - `software_slice16`: Keel's software path (`crc`, 16 tables);
//! - `bytewise_table1`: `crc` with a single 256-entry table, the baseline
//!   the software path must beat by 4×.
//!
//! With `KEEL_CRC_SPLIT=1` it instead prints the table behind the hardware
//! path's length split (`hardware::SMALL_INPUT_MAX_BYTES`): the two hardware
//! crates timed in interleaved rounds, best round kept. On a shared VM whose
//! clock drifts between criterion runs, interleaving compares the crates
//! under the same conditions, which criterion's one-after-the-other groups
//! cannot.
//!
//! Results and targets are in BENCHMARKS.md, section "CRC32C".

use std::hint::black_box;
use std::time::{Duration, Instant};

use crc::{CRC_32_ISCSI, Crc, Table};
use criterion::{Criterion, Throughput, criterion_group};
use keel::checksum;

static BYTEWISE: Crc<u32, Table<1>> = Crc::<u32, Table<1>>::new(&CRC_32_ISCSI);

/// A page, just above the hardware length split, then WAL-record sizes.
const SIZES_BYTES: [usize; 5] = [8192, 512, 256, 64, 32];

fn input(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            // xorshift32: cheap, deterministic, not all-zero.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

fn crc32c_throughput(c: &mut Criterion) {
    for len in SIZES_BYTES {
        let data = input(len);
        let expected = checksum::software::crc32c(&data);
        assert_eq!(checksum::hardware::crc32c(&data), expected);
        assert_eq!(crc32c::crc32c(&data), expected);
        assert_eq!(crc_fast::crc32_iscsi(&data), expected);
        assert_eq!(BYTEWISE.checksum(&data), expected);

        let mut group = c.benchmark_group(format!("crc32c/{len}B"));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function("keel", |b| b.iter(|| checksum::crc32c(black_box(&data))));
        group.bench_function("hardware", |b| {
            b.iter(|| checksum::hardware::crc32c(black_box(&data)))
        });
        group.bench_function("crc32c_crate", |b| {
            b.iter(|| crc32c::crc32c(black_box(&data)))
        });
        group.bench_function("crc_fast_crate", |b| {
            b.iter(|| crc_fast::crc32_iscsi(black_box(&data)))
        });
        group.bench_function("software_slice16", |b| {
            b.iter(|| checksum::software::crc32c(black_box(&data)))
        });
        group.bench_function("bytewise_table1", |b| {
            b.iter(|| BYTEWISE.checksum(black_box(&data)))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // 30 benchmarks × (0.5 s warm-up + 2 s measurement + analysis) ≈ 1½ minutes.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = crc32c_throughput
}
/// Input lengths around the split, and a page.
const SPLIT_SIZES_BYTES: [usize; 12] = [16, 32, 64, 128, 192, 256, 257, 384, 512, 768, 1024, 8192];
const SPLIT_ROUNDS: usize = 40;
/// Bytes checksummed per timing, so each timing lasts ~0.5 ms.
const SPLIT_BYTES_PER_TIMING: usize = 4 << 20;

type Crc32cFn = fn(&[u8]) -> u32;

/// Best-of-rounds throughput in GB/s (10^9 B/s) of each function at each
/// length, the functions interleaved within every round.
fn split_table() {
    let candidates: [(&str, Crc32cFn); 3] = [
        ("crc32c crate", crc32c::crc32c),
        ("crc-fast", crc_fast::crc32_iscsi),
        ("keel hardware", checksum::hardware::crc32c),
    ];
    let page = input(8192);
    println!("| input | crc32c crate | crc-fast | keel hardware |");
    println!("|---:|---:|---:|---:|");
    for len in SPLIT_SIZES_BYTES {
        let data = &page[..len];
        let iterations = SPLIT_BYTES_PER_TIMING / len;
        let mut best_ns = [f64::MAX; 3];
        for _ in 0..SPLIT_ROUNDS {
            for (best, (_, function)) in best_ns.iter_mut().zip(candidates) {
                let start = Instant::now();
                for _ in 0..iterations {
                    black_box(function(black_box(data)));
                }
                let ns = start.elapsed().as_nanos() as f64 / iterations as f64;
                *best = best.min(ns);
            }
        }
        let gbps = best_ns.map(|ns| len as f64 / ns);
        println!(
            "| {len} B | {:.1} | {:.1} | {:.1} |",
            gbps[0], gbps[1], gbps[2]
        );
    }
}

fn main() {
    if std::env::var_os("KEEL_CRC_SPLIT").is_some() {
        split_table();
        return;
    }
    // What criterion_main! expands to.
    benches();
    Criterion::default().configure_from_args().final_summary();
}
