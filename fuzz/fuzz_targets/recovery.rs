//! Recovery (Database::open) over a WAL segment of arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel::fuzz_targets::recovery(data));
