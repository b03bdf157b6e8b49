//! Arbitrary bytes into the WAL record frame and payload decoders, checking
//! that whatever decodes re-encodes to the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel::fuzz_targets::wal_record(data));
