//! A whole WAL segment of arbitrary bytes through the reader and Wal::open.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel::fuzz_targets::wal_segment(data));
