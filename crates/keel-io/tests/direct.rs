//! O_DIRECT on the real backends: works on a disk file system, fails
//! cleanly where the file system refuses it, and misaligned requests
//! are refused before any system call.

// Helpers outside #[test] functions unwrap too (clippy.toml's test allowance
// covers only the test functions themselves).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Fixture, pattern};
use keel_io::{FileClass, IoBuf, IoError, OpKind, OpenOptions};

fn direct_round_trip(f: &Fixture) {
    let opts = OpenOptions::read_write_create(FileClass::Data).direct(true);
    let h =
        f.io.open(&f.path("direct"), opts)
            .wait()
            .expect("O_DIRECT open on a disk fs");
    let data = pattern(9, 16384);
    f.io.write_at(h, 8192, IoBuf::aligned_from(&data))
        .wait()
        .unwrap();
    let two = vec![
        IoBuf::aligned_from(&data[..4096]),
        IoBuf::aligned_from(&data[4096..8192]),
    ];
    f.io.writev_at(h, 0, two).wait().unwrap();
    f.io.fdatasync(h).wait().unwrap();
    let got =
        f.io.read_exact_at(h, 8192, IoBuf::aligned(16384))
            .wait()
            .unwrap();
    assert_eq!(&got[..], &data[..]);
    let got =
        f.io.read_exact_at(h, 0, IoBuf::aligned(8192))
            .wait()
            .unwrap();
    assert_eq!(&got[..], &data[..8192]);
    // A durable write (the log's): aligned, then read back past the sync.
    f.io.durable_write_at(h, 24576, IoBuf::aligned_from(&data[..8192]))
        .wait()
        .unwrap();
    let got =
        f.io.read_exact_at(h, 24576, IoBuf::aligned(8192))
            .wait()
            .unwrap();
    assert_eq!(&got[..], &data[..8192]);
    let e =
        f.io.durable_write_at(h, 4096, IoBuf::zeroed(100))
            .wait()
            .unwrap_err();
    assert!(
        matches!(
            e,
            IoError::Misaligned {
                op: OpKind::DurableWrite,
                ..
            }
        ),
        "{e}"
    );

    let e =
        f.io.write_at(h, 10, IoBuf::aligned(4096))
            .wait()
            .unwrap_err();
    assert!(matches!(e, IoError::Misaligned { offset: 10, .. }), "{e}");
    let e =
        f.io.read_at(h, 0, IoBuf::zeroed(4096 + 1))
            .wait()
            .unwrap_err();
    assert!(matches!(e, IoError::Misaligned { .. }), "{e}");
    assert!(e.is_usage());
}

/// A file system without direct I/O support refuses O_DIRECT at open time
/// with EINVAL. tmpfs did until Linux 6.6 (this machine's kernel is newer,
/// so its tmpfs accepts it); procfs still refuses, so it stands in here.
fn refused_cleanly(f: &Fixture) {
    let proc_file = Path::new("/proc/self/status");
    if !proc_file.exists() {
        eprintln!("SKIPPED: no procfs here");
        return;
    }
    let opts = OpenOptions::new(FileClass::Other).direct(true);
    let e = f.io.open(proc_file, opts).wait().unwrap_err();
    assert!(matches!(e, IoError::DirectIoUnsupported { .. }), "{e}");
    assert!(e.to_string().contains("O_DIRECT") && e.to_string().contains("/proc/self/status"));
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    assert!(e.is_usage());

    // tmpfs: refused cleanly on kernels before 6.6, accepted after.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let path = shm.join(format!(
            "keel-io-direct-{}-{}",
            std::process::id(),
            f.io.backend_name()
        ));
        let opts = OpenOptions::read_write_create(FileClass::Data).direct(true);
        let r = f.io.open(&path, opts).wait();
        let _ = std::fs::remove_file(&path);
        match r {
            Ok(_) => eprintln!("note: this kernel's tmpfs accepts O_DIRECT"),
            Err(e) => assert!(matches!(e, IoError::DirectIoUnsupported { .. }), "{e}"),
        }
    }
}

#[test]
fn thread_pool_direct() {
    let f = common::thread_pool(8).unwrap();
    direct_round_trip(&f);
    refused_cleanly(&f);
}

#[test]
fn io_uring_direct() {
    if let Some(f) = common::io_uring(8) {
        direct_round_trip(&f);
        refused_cleanly(&f);
    }
}
