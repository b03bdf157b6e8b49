//! Which directories `Database::open` adopts (docs/storage.md, "Data
//! directory").
//!
//! A directory is opened as a Keel database when it
//!
//! 1. does not exist or is empty: a new database is created in it;
//! 2. holds a `control` file: a Keel database (its contents are then
//!    checked by the control file's CRC, the log's database id, …);
//! 3. holds no `control` file, and nothing but what Keel creates before its
//!    first checkpoint writes `control`: `LOCK`, the directories `wal/` and
//!    `rel/`, and `control.tmp`. That is a database whose creation was cut
//!    short, and opening it finishes the creation.
//!
//! Anything else is refused with an error naming the directory and the
//! first entry that does not belong, and nothing in it is touched (not even
//! `LOCK` is created).

use std::path::Path;
use std::sync::Arc;

use keel_io::AsyncIo;

use crate::error::{DbError, Result};

/// Entries a Keel directory holds before its first control file, and
/// whether each is a directory.
const BEFORE_CONTROL: [(&str, bool); 4] = [
    ("LOCK", false),
    ("wal", true),
    ("rel", true),
    ("control.tmp", false),
];

/// Refuses to open `dir` unless it is absent, empty, or a Keel data
/// directory (module docs).
pub(crate) fn check_adoptable(io: &Arc<dyn AsyncIo>, dir: &Path) -> Result<()> {
    let Ok(entries) = io.read_dir(dir).wait() else {
        // Absent (created by the caller) or unreadable (the caller's own
        // attempt to use it reports why).
        return Ok(());
    };
    let refuse = |reason: String| -> Result<()> {
        Err(DbError::Config(format!(
            "{} is not empty and is not a Keel data directory: {reason}",
            dir.display()
        ))
        .into())
    };
    if let Some(control) = entries.iter().find(|e| e.name == "control") {
        if control.is_dir {
            return refuse("`control` is a directory, not a control file".into());
        }
        return Ok(());
    }
    for e in &entries {
        let known = BEFORE_CONTROL
            .iter()
            .any(|(name, is_dir)| e.name == *name && e.is_dir == *is_dir);
        if !known {
            return refuse(format!(
                "it has no control file, and {:?} is not something Keel creates",
                e.name
            ));
        }
    }
    Ok(())
}
