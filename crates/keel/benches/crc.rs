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
//! Results and targets are in BENCHMARKS.md, section "CRC32C".

use std::hint::black_box;
use std::time::Duration;

use crc::{CRC_32_ISCSI, Crc, Table};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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
    // 30 benchmarks × (0.5 s warm-up + 2 s measurement + analysis) ≈ 1¾ minutes.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = crc32c_throughput
}
criterion_main!(benches);
