//! Helpers shared by the end-to-end tests of the `keel` binary.

#![allow(clippy::expect_used)] // fixtures panic on setup failure by design

use std::collections::BTreeSet;
use std::path::Path;

use keel::{Config, Database};
use std::process::{Command, Output};

/// The keys of relation `rel` in the database at `dir`: each row's first
/// four bytes, little-endian, as the tests write them.
#[allow(dead_code)] // used by the archive kill and full-disk tests only
pub fn row_keys(dir: &Path, rel: &str) -> BTreeSet<u32> {
    let db = Database::open(dir, Config::default()).expect("open the database");
    let rel = db
        .relation(rel)
        .expect("read the catalog")
        .expect("the relation");
    let keys = db
        .begin()
        .expect("begin")
        .scan(rel)
        .expect("scan")
        .map(|r| u32::from_le_bytes(r.expect("a row").1[..4].try_into().expect("4 bytes")))
        .collect();
    db.close().expect("close the database");
    keys
}

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

/// A `file://` URL for the local-directory archive at `p`.
#[allow(dead_code)] // not every test binary archives
pub fn url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// The environment variable `name` as a number, if set (a test's cycle
/// count or seed); anything else set there is a panic naming it.
#[allow(dead_code)] // used by the kill tests only
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
    })
}

/// xorshift64*: enough randomness to pick kill moments, replayable.
#[allow(dead_code)] // used by the kill tests only
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    /// Seeded from the environment variable `seed_var`, or else from the
    /// clock; the seed is printed as `seed_var=…`, so a failing run is
    /// replayed by setting it.
    pub fn from_env(seed_var: &str) -> Rng {
        let seed = env_u64(seed_var).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_nanos() as u64
                | 1
        });
        println!("{seed_var}={seed}");
        Rng(seed)
    }

    /// A number below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}
