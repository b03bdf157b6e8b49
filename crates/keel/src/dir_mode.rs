//! Who may use a data directory: its owner only.
//!
//! Keel creates the data directory and every directory in it with
//! [`keel_io::DIR_MODE`] (0700) and every file with [`keel_io::FILE_MODE`]
//! (0600), less the process's umask: a database's files are its owner's
//! data (PostgreSQL creates its data directory 0700 too). Opening a
//! directory that other users can write is refused: whoever can write it
//! can replace the log or a relation file, so nothing read from it could
//! be trusted. A directory that others can only read (an older Keel made
//! them 0755) is opened as it is: Keel never changes the permissions of a
//! directory it did not create, and the files it creates there are 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{DbError, Result};

/// Refuses `dir` when users other than its owner can write it (group or
/// world write permission). Only for a directory on the real file system.
pub(crate) fn check(dir: &Path) -> Result<()> {
    let mode = std::fs::metadata(dir)
        .map_err(|e| {
            DbError::Config(format!(
                "cannot read the permissions of {}: {e}",
                dir.display()
            ))
        })?
        .permissions()
        .mode();
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (_, true) => "every user",
        (true, false) => "its group",
        (false, false) => return Ok(()),
    };
    Err(DbError::Config(format!(
        "data directory {} is writable by {who} (mode {:03o}); Keel opens only a directory \
         that other users cannot write (run: chmod go-w {})",
        dir.display(),
        mode & 0o777,
        dir.display()
    ))
    .into())
}
