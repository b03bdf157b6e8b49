#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Configurations, extreme values included: whatever `Config::validate`
//! accepts, `Database::open` honours (open, a transaction, commit, close,
//! reopen, nothing panics); whatever it refuses, its message names the
//! field. `PROPTEST_CASES` raises the case count (modest by default for
//! CI: each accepted case opens a real database twice).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use keel::buffer::BufferConfig;
use keel::{Config, Database};
use keel_io::{Backend, IoConfig};
use proptest::prelude::*;

fn usize_with_extremes(small: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = usize> {
    prop_oneof![
        12 => small,
        1 => Just(0usize),
        1 => Just(usize::MAX),
        1 => (1usize << 40)..=usize::MAX,
    ]
}

fn duration_with_extremes() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![
        Just(None),
        Just(Some(Duration::ZERO)),
        Just(Some(Duration::MAX)),
        (1u64..=60_000).prop_map(|ms| Some(Duration::from_millis(ms))),
        any::<u64>().prop_map(|s| Some(Duration::from_secs(s))),
    ]
}

prop_compose! {
    fn configs()(
        pool_frames in usize_with_extremes(0..=512),
        pool_bytes_raw in prop_oneof![Just(None), usize_with_extremes(0..=1 << 20).prop_map(Some)],
        background_writer in any::<bool>(),
        writer_interval_ms in prop_oneof![Just(0u64), 1u64..=500, Just(u64::MAX)],
        writer_batch_pages in usize_with_extremes(0..=128),
        queue_depth in prop_oneof![usize_with_extremes(1..=256), Just(32768usize), Just(32769usize)],
        worker_threads in prop_oneof![usize_with_extremes(1..=8), Just(1024usize), Just(1025usize)],
        uring in any::<bool>(),
        huge_pages in any::<bool>(),
        lock_timeout in duration_with_extremes(),
        checkpoint_interval in duration_with_extremes(),
        checkpoint_wal_bytes in prop_oneof![Just(0u64), Just(u64::MAX), 1u64..=1 << 30],
    ) -> Config {
        let pool_bytes = pool_bytes_raw
            .unwrap_or_else(|| pool_frames.saturating_mul(keel::page::PAGE_SIZE));
        let mut c = Config {
            buffer: BufferConfig {
                pool_bytes,
                background_writer,
                writer_interval_ms,
                writer_batch_pages,
                huge_pages,
            },
            io: IoConfig {
                backend: if uring { Backend::Auto } else { Backend::ThreadPool },
                queue_depth,
                worker_threads,
            },
            lock_timeout,
            checkpoint_interval,
            checkpoint_wal_bytes,
            ..Config::default()
        };
        c.wal.segment_size_bytes = 1 << 20;
        c.wal.max_batch_bytes = 64 << 10;
        c.wal.buffer_capacity_bytes = 256 << 10;
        c
    }
}

/// The fields a refusal may name.
const FIELDS: &[&str] = &[
    "pool_bytes",
    "writer_interval_ms",
    "writer_batch_pages",
    "queue_depth",
    "worker_threads",
    "checkpoint_interval",
    "lock_timeout",
    "checkpoint_wal_bytes",
];

fn use_database(config: &Config) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), config.clone()).unwrap();
    let rel = db.create_relation("r").unwrap();
    let mut tx = db.begin().unwrap();
    let tid = tx.insert(rel, b"value").unwrap();
    assert_eq!(tx.get(rel, tid).unwrap().as_deref(), Some(&b"value"[..]));
    tx.commit().unwrap();
    db.close().unwrap();
    let db = Database::open(dir.path(), config.clone()).unwrap();
    let tx = db.begin().unwrap();
    assert_eq!(tx.get(rel, tid).unwrap().as_deref(), Some(&b"value"[..]));
    drop(tx);
    db.close().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
    ))]

    #[test]
    fn accepted_configurations_work_and_refused_ones_name_a_field(config in configs()) {
        match config.validate() {
            Ok(()) => {
                let run = catch_unwind(AssertUnwindSafe(|| use_database(&config)));
                prop_assert!(run.is_ok(), "accepted but failed: {config:?}");
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(
                    FIELDS.iter().any(|f| msg.contains(f)),
                    "refusal names no field: {msg} ({config:?})"
                );
            }
        }
    }
}

#[test]
fn the_configurations_of_the_issue_are_refused_by_validate() {
    let cases: Vec<(&str, Config)> = vec![
        ("pool_bytes", {
            let mut c = Config::default();
            c.buffer.pool_bytes = usize::MAX;
            c
        }),
        ("pool_bytes", {
            let mut c = Config::default();
            c.buffer.pool_bytes = keel::buffer::max_pool_bytes() + keel::page::PAGE_SIZE;
            c
        }),
        ("worker_threads", {
            let mut c = Config::default();
            c.io.worker_threads = 20_000;
            c
        }),
        ("worker_threads", {
            let mut c = Config::default();
            c.io.worker_threads = 0;
            c
        }),
        ("queue_depth", {
            let mut c = Config::default();
            c.io.queue_depth = usize::MAX;
            c
        }),
        ("queue_depth", {
            let mut c = Config::default();
            c.io.queue_depth = 0;
            c
        }),
    ];
    for (field, c) in cases {
        let e = c.validate().unwrap_err();
        assert_eq!(e.class(), keel::ErrorClass::Usage, "{e}");
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
}

#[test]
fn the_longest_lock_timeout_works() {
    let config = Config {
        lock_timeout: Some(Duration::MAX),
        ..Config::default()
    };
    config.validate().unwrap();
    use_database(&config);
}
