//! The `keel` tool.
fn main() {}
