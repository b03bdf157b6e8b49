//! The names in a data directory, spelled in this one place
//! (docs/storage.md, "Data directory"), and which directories an open
//! adopts.
//!
//! ```text
//! <dir>/LOCK            held (flock) while a process has the database open
//! <dir>/control         where recovery starts (recovery::control)
//! <dir>/control.tmp     a control file being replaced (renamed over control)
//! <dir>/wal/            log segments (wal::segment names the files in it)
//! <dir>/images.0        page images as of a redo point (storage::images)
//! <dir>/images.1        the same, for the other of two epochs
//! <dir>/rel/<n>.heap    relation n's pages
//! <dir>/rel/<n>.fsm     relation n's saved free space map
//! <dir>/rel/<n>.fsm.tmp a map being saved (renamed over <n>.fsm)
//! <dir>/standby         present while the directory is a warm standby
//! <dir>/archive-status  present while an archive follows the log (held at open)
//! ```
//!
//! `<n>` is the relation id in decimal without leading zeros. Every name
//! read from the directory is untrusted (invariant 9): [`rel_file`] parses
//! any spelling of a number, and [`check_canonical`] refuses one that is
//! not the spelling Keel writes (`007.heap` beside `7.heap` would be a
//! second file of relation 7).
//!
//! This module is a leaf (it uses only types and errors), so every layer
//! that names a file — the log, recovery, the catalog, `keel check` — uses
//! it.
//!
//! # Which directories an open adopts
//!
//! [`check_adoptable`]: an absent or empty directory becomes a new
//! database; one with a `control` file is a Keel data directory; one
//! without holds only what a Keel directory holds before its first control
//! file (`LOCK`, `wal/`, `rel/`, `control.tmp`: a create that crashed).
//! Anything else is refused naming the first entry that does not belong,
//! and nothing in it is touched (not even `LOCK` is created).
//!
//! # A standby is never opened for work
//!
//! A directory holding [`STANDBY_FILE`] is a warm standby (crate
//! `keel-archive`): its log is the primary's, copied from the archive, and
//! only redo may touch it ([`crate::standby::apply_log`]). An open for work
//! would undo transactions that may still commit upstream and log records
//! of its own at LSNs the primary's later log uses, so
//! `Adopt::ForWork` refuses it, naming `keel promote`, which finishes the
//! standby (a new timeline) and removes the file before it opens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_io::AsyncIo;

use crate::error::{DbError, Result};
use crate::types::RelationId;

/// The lock file, held while the database is open.
pub const LOCK_FILE: &str = "LOCK";
/// The control file.
pub const CONTROL_FILE: &str = "control";
/// A control file being written, renamed over [`CONTROL_FILE`].
pub const CONTROL_TMP_FILE: &str = "control.tmp";
/// The control file of a restore in progress (crate `keel-archive`),
/// renamed to [`CONTROL_FILE`] once the restore's files and log are
/// complete: a directory holding it and no control file is an unfinished
/// restore, which an open refuses.
pub const RESTORING_CONTROL_FILE: &str = "control.restoring";
/// Present while the directory is a warm standby (module docs); its
/// contents belong to crate `keel-archive` (docs/storage.md, "Warm
/// standby").
pub const STANDBY_FILE: &str = "standby";
/// Present while an archive follows the directory's log; written by crate
/// `keel-archive`'s archiver (docs/storage.md, "Status file"). An open
/// holds the log from its oldest segment while it is there
/// ([`archive_follows`]).
pub const ARCHIVE_STATUS_FILE: &str = "archive-status";
/// The two page images files (`storage::images`, docs/storage.md "Page
/// images"): each holds the images of one epoch.
pub const IMAGES_FILES: [&str; 2] = ["images.0", "images.1"];
/// The directory of log segments.
pub const WAL_DIR: &str = "wal";
/// The directory of relation files.
pub const REL_DIR: &str = "rel";

/// Path of the lock file.
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join(LOCK_FILE)
}

/// Path of the control file.
pub fn control_path(dir: &Path) -> PathBuf {
    dir.join(CONTROL_FILE)
}

/// Path of a control file being written.
pub fn control_tmp_path(dir: &Path) -> PathBuf {
    dir.join(CONTROL_TMP_FILE)
}

/// The log's directory.
pub fn wal_dir(dir: &Path) -> PathBuf {
    dir.join(WAL_DIR)
}

/// The relation files' directory.
pub fn rel_dir(dir: &Path) -> PathBuf {
    dir.join(REL_DIR)
}

/// The kinds of file a relation has in `rel/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelFile {
    /// `<n>.heap`: its pages.
    Heap,
    /// `<n>.fsm`: its saved free space map.
    Fsm,
    /// `<n>.fsm.tmp`: a map being saved.
    FsmTmp,
}

impl RelFile {
    /// The file name's ending, with its dot.
    pub fn suffix(self) -> &'static str {
        match self {
            RelFile::Heap => ".heap",
            RelFile::Fsm => ".fsm",
            RelFile::FsmTmp => ".fsm.tmp",
        }
    }

    /// The name Keel writes for relation `id`'s file of this kind.
    pub fn name(self, id: RelationId) -> String {
        format!("{}{}", id.0, self.suffix())
    }

    /// Its path under data directory `dir`.
    pub fn path(self, dir: &Path, id: RelationId) -> PathBuf {
        rel_dir(dir).join(self.name(id))
    }
}

/// Path of relation `id`'s heap file.
pub fn heap_path(dir: &Path, id: RelationId) -> PathBuf {
    RelFile::Heap.path(dir, id)
}

/// Path of relation `id`'s free space map file.
pub fn fsm_path(dir: &Path, id: RelationId) -> PathBuf {
    RelFile::Fsm.path(dir, id)
}

/// The relation and kind of a name in `rel/`, if it is one: a decimal
/// number (any spelling: see [`check_canonical`]) and a known ending.
pub fn rel_file(name: &str) -> Option<(RelationId, RelFile)> {
    let (number, rest) = name.split_at(name.find('.')?);
    let kind = [RelFile::Heap, RelFile::Fsm, RelFile::FsmTmp]
        .into_iter()
        .find(|k| k.suffix() == rest)?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((RelationId(number.parse().ok()?), kind))
}

/// Refuses a name in `rel/` that [`rel_file`] parses but that is not
/// spelled as Keel spells it (leading zeros), naming both paths.
pub fn check_canonical(dir: &Path, name: &str) -> Result<()> {
    let Some((id, kind)) = rel_file(name) else {
        return Ok(());
    };
    if name == kind.name(id) {
        return Ok(());
    }
    Err(DbError::Corrupt {
        what: format!("relation file {}", rel_dir(dir).join(name).display()),
        reason: format!(
            "not a name Keel writes: it would be relation {id}'s file, whose name is {}",
            kind.path(dir, id).display()
        ),
    }
    .into())
}

/// Whether an archive follows `dir`'s log ([`ARCHIVE_STATUS_FILE`] is
/// there): the open then holds the log from its oldest segment
/// (`WalConfig::hold_at_open`), so that no checkpoint retires a segment
/// the archive may lack before an archiver has looked at the archive's
/// end and moved the hold. A directory that cannot be listed is treated as
/// followed (the hold only keeps log longer).
pub(crate) fn archive_follows(io: &Arc<dyn AsyncIo>, dir: &Path) -> bool {
    match io.read_dir(dir).wait() {
        Ok(entries) => entries.iter().any(|e| e.name == ARCHIVE_STATUS_FILE),
        Err(_) => true,
    }
}

/// Entries a Keel directory holds before its first control file, and
/// whether each is a directory.
const BEFORE_CONTROL: [(&str, bool); 4] = [
    (LOCK_FILE, false),
    (WAL_DIR, true),
    (REL_DIR, true),
    (CONTROL_TMP_FILE, false),
];

/// What an open of a directory is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Adopt {
    /// `Database::open`: a standby is refused (module docs).
    ForWork,
    /// A standby's redo ([`crate::standby`]).
    ForRedo,
}

/// Refuses to open `dir` unless it is absent, empty, or a Keel data
/// directory, and, for work, not a standby (module docs).
pub(crate) fn check_adoptable(io: &Arc<dyn AsyncIo>, dir: &Path, why: Adopt) -> Result<()> {
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
    if why == Adopt::ForWork && entries.iter().any(|e| e.name == STANDBY_FILE) {
        return Err(DbError::Config(format!(
            "{} is a warm standby ({STANDBY_FILE} file): it only applies the primary's archived \
             log and is never opened for work; run `keel promote --dir {} --archive URL` to make \
             it a primary",
            dir.display(),
            dir.display()
        ))
        .into());
    }
    if let Some(control) = entries.iter().find(|e| e.name == CONTROL_FILE) {
        if control.is_dir {
            return refuse("`control` is a directory, not a control file".into());
        }
        return Ok(());
    }
    if entries.iter().any(|e| e.name == RESTORING_CONTROL_FILE) {
        return refuse(format!(
            "it holds an unfinished restore ({RESTORING_CONTROL_FILE}, no control file): the \
             restore stopped before its files and log were complete; delete the directory and \
             restore again"
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_file_names_parse() {
        assert_eq!(rel_file("12.heap"), Some((RelationId(12), RelFile::Heap)));
        assert_eq!(rel_file("12.fsm"), Some((RelationId(12), RelFile::Fsm)));
        assert_eq!(
            rel_file("12.fsm.tmp"),
            Some((RelationId(12), RelFile::FsmTmp))
        );
        assert_eq!(rel_file("012.heap"), Some((RelationId(12), RelFile::Heap)));
        for bad in [
            "x.heap",
            ".heap",
            "12.txt",
            "LOCK",
            "12",
            "-1.heap",
            "99999999999.heap",
        ] {
            assert_eq!(rel_file(bad), None, "{bad}");
        }
        assert_eq!(RelFile::Fsm.name(RelationId(3)), "3.fsm");
    }

    #[test]
    fn only_the_spelling_keel_writes_is_canonical() {
        let dir = Path::new("/db");
        assert!(check_canonical(dir, "7.heap").is_ok());
        assert!(check_canonical(dir, "LOCK").is_ok());
        let e = check_canonical(dir, "007.fsm").unwrap_err().to_string();
        assert!(
            e.contains("/db/rel/007.fsm") && e.contains("/db/rel/7.fsm"),
            "{e}"
        );
    }
}
