//! Arbitrary bytes into the free space map's page decoder and loader.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel::fuzz_targets::fsm_page(data));
