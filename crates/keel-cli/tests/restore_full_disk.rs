//! `keel restore` whose local writes fail part way, as on a full disk: the
//! restore runs under a file size limit (`RLIMIT_FSIZE`, with `SIGXFSZ`
//! ignored), so a write past the limit fails with `EFBIG` the way one on a
//! full disk fails with `ENOSPC` — an error from a write in the middle of
//! the restore, after some files are whole. Two limits: one the first
//! relation file passes (the log's segment files fail), one it does not.
//!
//! After each failure: the command exits non-zero naming the file it could
//! not write, and never panics; `Database::open` refuses the directory as
//! an unfinished restore (it never takes it for a new, empty database);
//! a second restore into it refuses it the same way; and once it is
//! removed, a restore without the limit gives every committed row.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use keel::{Config, Database};

mod common;
use common::{keel, row_keys, text, url};

const ROW_BYTES: usize = 1000;
const ROWS: u32 = 600;

/// A database of [`ROWS`] rows (its heap file about 600 KiB), backed up
/// into the archive at `archive`.
fn backed_up(data: &Path, archive: &Path) {
    let db = Database::open(data, Config::default()).unwrap();
    let rel = db.create_relation("r").unwrap();
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(100) {
        let mut tx = db.begin().unwrap();
        for &k in chunk {
            let mut row = vec![0x5Au8; ROW_BYTES];
            row[..4].copy_from_slice(&k.to_le_bytes());
            tx.insert(rel, &row).unwrap();
        }
        tx.commit().unwrap();
    }
    db.close().unwrap();
    std::fs::create_dir_all(archive).unwrap();
    let out = keel(&[
        "backup",
        "--dir",
        &data.display().to_string(),
        "--archive",
        &url(archive),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "backup failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `keel restore` into `into` with every file it writes limited to
/// `limit` bytes.
fn restore_limited(archive: &Path, into: &Path, limit: u64) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
    cmd.args([
        "restore",
        "--archive",
        &url(archive),
        "--dir",
        &into.display().to_string(),
    ]);
    // SAFETY: between fork and exec the closure only calls
    // async-signal-safe functions (setrlimit, signal) and touches no
    // memory of the parent's threads.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Ignored signals stay ignored across exec: a write past the
            // limit then fails with EFBIG instead of killing the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    cmd.output().expect("run keel restore")
}

#[test]
fn a_restore_whose_writes_fail_part_way_leaves_a_directory_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, archive) = (tmp.path().join("data"), tmp.path().join("archive"));
    backed_up(&data, &archive);
    // 64 KiB: the heap file fails; 4 MiB: the heap file is whole and a
    // log segment file (16 MiB, written whole) fails.
    for (limit, failing) in [(64u64 << 10, "rel"), (4 << 20, "wal")] {
        let into = tmp.path().join(format!("restored-{limit}"));
        let out = restore_limited(&archive, &into, limit);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_ne!(
            out.status.code(),
            Some(0),
            "limit {limit}: the restore passed:\n{all}"
        );
        assert!(!all.contains("panicked"), "limit {limit}: a panic:\n{all}");
        assert!(
            all.contains("File too large") && all.contains(failing),
            "limit {limit}: the error names neither the failure nor a file under {failing}/:\n{all}"
        );
        let e = Database::open(&into, Config::default())
            .err()
            .unwrap_or_else(|| panic!("limit {limit}: the directory opened as a database"));
        assert!(
            e.to_string().contains("restor"),
            "limit {limit}: the open refused it without naming the unfinished restore: {e}"
        );
        let again = keel(&[
            "restore",
            "--archive",
            &url(&archive),
            "--dir",
            &into.display().to_string(),
        ]);
        let again_all = format!("{}{}", text(&again.stdout), text(&again.stderr));
        assert_ne!(again.status.code(), Some(0));
        assert!(
            again_all.contains("unfinished restore"),
            "limit {limit}: a second restore did not name the unfinished one:\n{again_all}"
        );
        std::fs::remove_dir_all(&into).unwrap();
        let out = keel(&[
            "restore",
            "--archive",
            &url(&archive),
            "--dir",
            &into.display().to_string(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "limit {limit}: the restore after the failure failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_eq!(
            row_keys(&into, "r"),
            (0..ROWS).collect::<BTreeSet<_>>(),
            "limit {limit}"
        );
    }
}
