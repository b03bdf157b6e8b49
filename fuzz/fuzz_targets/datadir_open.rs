//! Database::open of a directory whose control file and first WAL segment
//! header are arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel::fuzz_targets::datadir_open(data));
