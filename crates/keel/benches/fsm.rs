//! Free space map lookups against a naive linear search, over relations of
//! 10k, 100k and 1M heap pages with a realistic spread of free space: most
//! pages nearly full, some with holes (fragmented), a few roomy or empty.
//!
//! - `fsm_find`: [`FreeSpaceMap::find`], bitmap plus bucket, O(1).
//! - `linear_best_fit`: the same answer by a scan of every page (prefer a
//!   page where the tuple fits now, then the tightest such page) — what the
//!   map replaces, and the model its tests check it against.
//! - `linear_first_fit`: the first page that fits now, else the first that
//!   fits after compaction; it stops early when roomy pages are scattered,
//!   but gives up best fit.
//! - `linear_first_fit_tail`: the same over the same pages laid out as an
//!   append-mostly relation leaves them, the nearly full ones first: first
//!   fit is then O(n) as well.
//!
//! `cargo bench -p keel --bench fsm`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use keel::PageId;
use keel::fsm::{FreeSpaceMap, request_bytes};

const SIZES: [u32; 3] = [10_000, 100_000, 1_000_000];
const EMPTY_PAGE_FREE: usize = 8152;

use keel_io::sim::Rng;

/// Per page (contiguous, total) free bytes: 90% nearly full (under 150
/// bytes), 8% with 150-1500 bytes partly in holes, 1.8% roomy, 0.2% empty.
fn free_space(pages: u32) -> Vec<(u16, u16)> {
    let mut rng = Rng::new(u64::from(pages));
    (0..pages)
        .map(|_| {
            let r = rng.below(1000) as usize;
            let total = match r {
                0..900 => rng.below(150) as usize,
                900..980 => 150 + rng.below(1350) as usize,
                980..998 => 1500 + rng.below((EMPTY_PAGE_FREE - 1500) as u64) as usize,
                _ => EMPTY_PAGE_FREE,
            };
            let contiguous = if r < 980 {
                total * rng.below(101) as usize / 100
            } else {
                total
            };
            (contiguous as u16, total as u16)
        })
        .collect()
}

/// Requests for tuples of 50 to 400 bytes, with their slot.
fn requests() -> Vec<usize> {
    let mut rng = Rng::new(42);
    (0..1024)
        .map(|_| request_bytes(50 + rng.below(351) as usize))
        .collect()
}

fn linear_best_fit(pages: &[(u16, u16)], n: usize) -> Option<u32> {
    let fits = |free: u16| usize::from(free) >= n;
    let best = |key: fn(&(u16, u16)) -> u16| {
        pages
            .iter()
            .enumerate()
            .filter(|(_, p)| fits(key(p)))
            .min_by_key(|(_, p)| key(p))
            .map(|(i, _)| i as u32)
    };
    best(|p| p.0).or_else(|| best(|p| p.1))
}

fn linear_first_fit(pages: &[(u16, u16)], n: usize) -> Option<u32> {
    let first = |key: fn(&(u16, u16)) -> u16| {
        pages
            .iter()
            .position(|p| usize::from(key(p)) >= n)
            .map(|i| i as u32)
    };
    first(|p| p.0).or_else(|| first(|p| p.1))
}

fn bench(c: &mut Criterion) {
    let reqs = requests();
    let mut g = c.benchmark_group("fsm");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(10);
    for pages in SIZES {
        let free = free_space(pages);
        let fsm = FreeSpaceMap::rebuild(
            free.iter()
                .enumerate()
                .map(|(i, &(c, t))| (PageId(i as u32), usize::from(c), usize::from(t))),
        );
        let mut i = 0;
        let mut next = || {
            i = (i + 1) % reqs.len();
            reqs[i]
        };
        g.bench_function(BenchmarkId::new("fsm_find", pages), |b| {
            b.iter(|| black_box(fsm.find(black_box(next()))))
        });
        g.bench_function(BenchmarkId::new("linear_best_fit", pages), |b| {
            b.iter(|| black_box(linear_best_fit(&free, black_box(next()))))
        });
        g.bench_function(BenchmarkId::new("linear_first_fit", pages), |b| {
            b.iter(|| black_box(linear_first_fit(&free, black_box(next()))))
        });
        let mut tail = free.clone();
        tail.sort_by_key(|&(_, t)| t >= 150); // stable: random order within
        g.bench_function(BenchmarkId::new("linear_first_fit_tail", pages), |b| {
            b.iter(|| black_box(linear_first_fit(&tail, black_box(next()))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
