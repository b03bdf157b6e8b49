//! Arbitrary bytes into the page decoder, validator and dump.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel::fuzz_targets::page_decode(data));
