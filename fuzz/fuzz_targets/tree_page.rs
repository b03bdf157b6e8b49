//! Arbitrary bytes into the tree page decoder, validator, dump, page
//! comparison and the tree checker.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel::fuzz_targets::tree_page(data));
