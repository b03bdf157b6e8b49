#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Errors of `Database::open` on data directories it cannot use: each names
//! the path, keeps the operating system's error as its `source()`, and is
//! classed so the user can act (nothing was opened, so none is Fatal).

use std::error::Error as _;
use std::path::Path;

use keel::{Config, Database, ErrorClass};

fn config() -> Config {
    Config {
        checkpoint_interval: None,
        ..Config::default()
    }
}

/// A closed database with one relation.
fn build(dir: &Path) {
    let db = Database::open(dir, config()).unwrap();
    db.create_relation("a").unwrap();
    db.close().unwrap();
}

/// The error and each of its sources, joined by ": ".
fn chain(e: &keel::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        text.push_str(": ");
        text.push_str(&s.to_string());
        next = s.source();
    }
    text
}

/// The innermost `io::Error` of the chain, if any.
fn io_source(e: &keel::Error) -> Option<&std::io::Error> {
    let mut next = e.source();
    let mut found = None;
    while let Some(s) = next {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            found = Some(io);
        }
        next = s.source();
    }
    found
}

#[test]
fn a_lock_file_that_cannot_be_created_is_named_with_its_os_error() {
    let tmp = tempfile::tempdir().unwrap();
    // `LOCK` is a link to a path under a regular file: creating it fails
    // with ENOTDIR whoever runs the test.
    std::fs::write(tmp.path().join("plain"), b"x").unwrap();
    let dir = tmp.path().join("db");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("plain/LOCK"), dir.join("LOCK")).unwrap();
    let err = Database::open(&dir, config()).unwrap_err();
    let text = chain(&err);
    assert!(!text.contains("invalid configuration"), "{text}");
    assert!(
        text.contains(&dir.join("LOCK").display().to_string()),
        "{text}"
    );
    let io = io_source(&err).unwrap_or_else(|| panic!("no io::Error source: {text}"));
    assert_eq!(io.kind(), std::io::ErrorKind::NotADirectory, "{text}");
    assert_eq!(err.class(), ErrorClass::Usage, "{text}");
}

#[test]
fn a_read_only_data_directory_is_named_with_its_os_error() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    let probe = dir.join("probe");
    if std::fs::write(&probe, b"").is_ok() {
        // Permission bits do not stop this user (root): the case cannot be
        // made here; the LOCK test above covers the same error path.
        std::fs::remove_file(&probe).unwrap();
        eprintln!("skipped: a 0o500 directory is writable by this user");
        return;
    }
    let err = Database::open(&dir, config()).unwrap_err();
    let text = chain(&err);
    assert!(!text.contains("invalid configuration"), "{text}");
    assert!(
        text.contains(&dir.join("LOCK").display().to_string()),
        "{text}"
    );
    assert!(io_source(&err).is_some(), "no io::Error source: {text}");
    assert_eq!(err.class(), ErrorClass::Usage, "{text}");
}

#[test]
fn a_data_directory_under_a_regular_file_is_a_usage_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("plain"), b"x").unwrap();
    let dir = tmp.path().join("plain/db");
    let err = Database::open(&dir, config()).unwrap_err();
    let text = chain(&err);
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert!(io_source(&err).is_some(), "no io::Error source: {text}");
    assert_eq!(err.class(), ErrorClass::Usage, "{text}");
    assert_eq!(
        std::fs::read(tmp.path().join("plain")).unwrap(),
        b"x".to_vec()
    );
}

#[test]
fn a_non_canonical_relation_file_name_is_refused_naming_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    build(&dir);
    let rel = dir.join("rel");
    let canonical = std::fs::read_dir(&rel)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".heap") && n != "0.heap")
        .min()
        .unwrap();
    let id = canonical.strip_suffix(".heap").unwrap();
    let padded = format!("{id:0>5}.heap");
    std::fs::copy(rel.join(&canonical), rel.join(&padded)).unwrap();
    let err = Database::open(&dir, config()).unwrap_err();
    let text = chain(&err);
    assert!(text.contains(&padded), "{text}");
    assert!(text.contains(&canonical), "{text}");
    assert!(!text.contains("already registered"), "{text}");
    // Both files are left as they were.
    assert!(rel.join(&padded).exists() && rel.join(&canonical).exists());
    // Without the stray name the database opens.
    std::fs::remove_file(rel.join(&padded)).unwrap();
    Database::open(&dir, config()).unwrap().close().unwrap();
}

#[test]
fn a_control_directory_is_reported_as_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    build(&dir);
    std::fs::remove_file(dir.join("control")).unwrap();
    std::fs::create_dir(dir.join("control")).unwrap();
    let err = Database::open(&dir, config()).unwrap_err();
    let text = chain(&err);
    assert!(text.contains("directory"), "{text}");
    assert!(!text.contains("4096 bytes"), "{text}");
    assert!(text.contains("control"), "{text}");
    // Tools read the control file without opening the database.
    let io = keel_io::open_backend(&keel_io::IoConfig::default()).unwrap();
    let err = keel::recovery::control::read_control(&io, &dir).unwrap_err();
    let text = chain(&err);
    assert!(text.contains("is a directory"), "{text}");
    assert!(
        text.contains(&dir.join("control").display().to_string()),
        "{text}"
    );
}

#[test]
fn an_io_configuration_error_is_a_usage_error() {
    let io = keel_io::IoError::Config {
        setting: "KEEL_IO_BACKEND",
        value: "floppy".into(),
        reason: "expected uring or threads",
    };
    assert_eq!(io.class(), keel_io::ErrorClass::Usage);
    let err = keel::Error::from(io);
    assert_eq!(err.class(), ErrorClass::Usage, "{err}");
}

/// A FIFO (or any file that is not a regular file) where the control file,
/// a relation file, the lock file or a page images file belongs is refused
/// by name, at once: an open of a FIFO would otherwise wait for a writer
/// (or, for the lock file, a reader) that never comes, and a write to it
/// would block once its pipe is full.
#[test]
fn a_fifo_where_a_data_file_belongs_is_refused_naming_it_without_waiting() {
    for victim in ["control", "rel/1.heap", "LOCK", "images.0"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("db");
        build(&dir);
        let path = dir.join(victim);
        // A page images file exists only once a page changed after a
        // checkpoint was written; the others always do.
        if victim != "images.0" {
            assert!(path.exists(), "{victim} is part of the directory");
        }
        let _ = std::fs::remove_file(&path);
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo {}", path.display());
        let (tx, rx) = std::sync::mpsc::channel();
        let opener = {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let _ = tx.send(Database::open(&dir, config()).map(drop));
            })
        };
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the open waits on the FIFO {victim}"));
        opener.join().unwrap();
        let err = result.unwrap_err();
        let text = chain(&err);
        assert!(text.contains(victim), "{victim}: {text}");
        assert!(text.contains("not a regular file"), "{victim}: {text}");
        if victim == "LOCK" {
            assert!(text.contains("LOCK is a FIFO"), "{text}");
        }
    }
}

#[test]
fn a_control_file_whose_next_transaction_id_no_database_reaches_is_refused() {
    // CRC-valid, so only the value can give it away: ids handed out from
    // it would wrap to 0, which a record reads as "no transaction".
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    build(&dir);
    let path = dir.join("control");
    let mut control =
        keel::recovery::Control::decode(&std::fs::read(&path).unwrap(), &path).unwrap();
    control.next_txn = keel::TxnId(u64::MAX);
    std::fs::write(&path, control.encode()).unwrap();
    let err = Database::open(&dir, config()).unwrap_err();
    let text = chain(&err);
    assert_eq!(err.class(), ErrorClass::Corruption, "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("transaction id"), "{text}");
}

#[test]
fn a_control_file_that_disagrees_with_its_checkpoint_record_is_refused() {
    // CRC-valid control files naming starts or a checkpoint the log does
    // not hold: redo would start inside a record or elsewhere than the
    // checkpoint said, and the open must say so rather than recover from
    // there.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    build(&dir);
    let path = dir.join("control");
    let good = std::fs::read(&path).unwrap();
    let c = keel::recovery::Control::decode(&good, &path).unwrap();
    let step = |l: keel::Lsn, d: u64| keel::Lsn(l.0 + d);
    let cases: Vec<(&str, keel::recovery::Control)> = vec![
        (
            "redo start inside the begin record",
            keel::recovery::Control {
                redo_start: step(c.redo_start, 8),
                ..c
            },
        ),
        (
            "undo start inside the begin record",
            keel::recovery::Control {
                undo_start: step(c.undo_start, 8),
                ..c
            },
        ),
        (
            "checkpoint end at the begin record",
            keel::recovery::Control {
                checkpoint_end: c.redo_start,
                ..c
            },
        ),
        (
            "checkpoint end inside its record",
            keel::recovery::Control {
                checkpoint_end: step(c.checkpoint_end, 4),
                ..c
            },
        ),
    ];
    for (what, bad) in cases {
        std::fs::write(&path, bad.encode()).unwrap();
        let err = Database::open(&dir, config()).unwrap_err();
        let text = chain(&err);
        assert_eq!(err.class(), ErrorClass::Corruption, "{what}: {text}");
        assert!(
            text.contains("does not belong to this log"),
            "{what}: {text}"
        );
    }
    std::fs::write(&path, &good).unwrap();
    Database::open(&dir, config()).unwrap().close().unwrap();
}
