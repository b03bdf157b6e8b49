//! The archive's small text files and objects (timeline history, fence,
//! status file, standby marker, timeline file) over arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_archive::fuzz_targets::archive_text(data));
