//! Arbitrary bytes into the base-backup manifest decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_archive::fuzz_targets::manifest_decode(data));
