//! Backend selection through `KEEL_IO_BACKEND`. The only test in this binary,
//! so changing the environment cannot race another test.

// Helpers outside #[test] functions unwrap too (clippy.toml's test allowance
// covers only the test functions themselves).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keel_io::{BACKEND_ENV, Backend, IoConfig, IoError, open_backend};

#[test]
fn env_var_selects_the_backend_or_fails_clearly() {
    // SAFETY: this test binary runs this one test; no other thread reads the
    // environment meanwhile.
    unsafe { std::env::set_var(BACKEND_ENV, "thread-pool") };
    let cfg = IoConfig::from_env().unwrap();
    assert_eq!(cfg.backend, Backend::ThreadPool);
    let io = open_backend(&cfg).unwrap();
    assert_eq!(io.backend_name(), "thread-pool");

    // SAFETY: as above.
    unsafe { std::env::set_var(BACKEND_ENV, "uring") };
    let e = IoConfig::from_env().unwrap_err();
    assert!(matches!(e, IoError::Config { .. }), "{e}");
    assert!(e.to_string().contains("KEEL_IO_BACKEND") && e.to_string().contains("uring"));
    assert!(e.is_usage());

    // SAFETY: as above.
    unsafe { std::env::remove_var(BACKEND_ENV) };
    let auto = open_backend(&IoConfig::from_env().unwrap()).unwrap();
    assert!(["io-uring", "thread-pool"].contains(&auto.backend_name()));
    let bad = IoConfig {
        queue_depth: 0,
        ..IoConfig::default()
    };
    assert!(matches!(open_backend(&bad), Err(IoError::Config { .. })));
}
