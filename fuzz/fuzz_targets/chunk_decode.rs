//! Arbitrary bytes into the WAL archive's chunk decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_archive::fuzz_targets::chunk_decode(data));
