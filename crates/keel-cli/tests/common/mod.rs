//! Helpers shared by the end-to-end tests of the `keel` binary.

#![allow(clippy::expect_used)] // fixtures panic on setup failure by design

use std::process::{Command, Output};

/// Runs the built `keel` with `args` and collects its output.
pub fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .output()
        .expect("run keel")
}

/// Bytes of an output stream as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
