//! Slotted page micro-benchmarks: tuple insert and delete (reported per
//! tuple), compaction (per page), and sealing/verifying a page.
//!
//! `cargo bench -p keel --bench page`

#![allow(clippy::expect_used)] // a benchmark's setup failing is a bug to see at once

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use keel::PageId;
use keel::page::{PAGE_SIZE, SlottedPage, TupleFlags, seal, verify};
use keel::types::SlotId;

const TUPLE: [u8; 100] = [0x5A; 100];

/// A page filled with 100-byte tuples; returns it and the tuple count.
fn full_page() -> (Vec<u8>, u64) {
    let mut p = SlottedPage::init(vec![0u8; PAGE_SIZE], PageId(1)).expect("page");
    let mut n = 0;
    while p.insert(&TUPLE, TupleFlags::NONE).is_ok() {
        n += 1;
    }
    (p.into_inner(), n)
}

fn bench(c: &mut Criterion) {
    let (full, per_page) = full_page();
    let mut g = c.benchmark_group("page");
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(per_page));

    g.bench_function("insert_100B_per_tuple", |b| {
        b.iter_batched_ref(
            || SlottedPage::init(vec![0u8; PAGE_SIZE], PageId(1)).expect("page"),
            |p| {
                for _ in 0..per_page {
                    black_box(p.insert(black_box(&TUPLE), TupleFlags::NONE).expect("fits"));
                }
            },
            BatchSize::SmallInput,
        )
    });

    g.bench_function("delete_per_tuple", |b| {
        b.iter_batched_ref(
            || full.clone(),
            |bytes| {
                let mut p = SlottedPage::open(&mut bytes[..], PageId(1)).expect("page");
                for s in 0..per_page as u16 {
                    p.delete(SlotId(s)).expect("live");
                }
            },
            BatchSize::SmallInput,
        )
    });

    g.throughput(Throughput::Elements(1));
    let mut holey = SlottedPage::open(full.clone(), PageId(1)).expect("page");
    for s in (0..per_page as u16).step_by(2) {
        holey.delete(SlotId(s)).expect("live");
    }
    let holey = holey.into_inner();
    g.bench_function("compact_half_deleted_page", |b| {
        b.iter_batched_ref(
            || holey.clone(),
            |bytes| {
                let mut p = SlottedPage::open(&mut bytes[..], PageId(1)).expect("page");
                black_box(p.compact());
            },
            BatchSize::SmallInput,
        )
    });

    let mut sealed = full.clone();
    seal(&mut sealed).expect("seal");
    g.bench_function("seal_page", |b| b.iter(|| seal(black_box(&mut sealed))));
    g.bench_function("verify_full_page", |b| {
        b.iter(|| verify(black_box(&sealed), PageId(1)).expect("valid"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
