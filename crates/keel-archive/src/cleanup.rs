//! Removing what a killed `keel backup` left: backup folders without a
//! manifest.
//!
//! A backup writes its manifest last ([`crate::backup`]), so a folder
//! without one is a backup that was killed or cut off, or one still
//! running. Restores never use such a folder; it only costs storage.
//!
//! ## Rules
//!
//! 1. Only a folder with **no manifest** is a candidate; a folder with a
//!    manifest is never touched, whatever its age or state.
//! 2. Its **newest object** must be older than the threshold (`keel
//!    archive cleanup --older-than`, default 24 hours): a running backup
//!    uploads a file at least every few minutes, so it is never taken for
//!    an abandoned one. A backup that uploads one file for longer than the
//!    threshold would be; choose the threshold above the longest upload.
//! 3. Just before deleting, the folder is listed again: a manifest that
//!    appeared, or an object newer than the threshold, spares it.
//! 4. Its objects are deleted one by one; a cleanup cut off half way
//!    leaves a folder that is still without a manifest, and the next
//!    cleanup finishes it.
//!
//! Nothing here touches the log (`wal/`) or the timeline histories.

use std::time::{Duration, SystemTime};

use object_store::path::Path as ObjectPath;

use crate::backup::BackupFolder;
use crate::error::Result;
use crate::store::Remote;

/// What [`remove_incomplete`] did with one folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removed {
    /// Deleted: this many objects.
    Deleted(u64),
    /// Spared at the last look (rule 3): it gained a manifest or a new
    /// object.
    Spared(String),
}

/// The backup folders without a manifest whose newest object is older
/// than `older_than` (rules 1 and 2), oldest first.
pub fn incomplete_backups(remote: &Remote, older_than: Duration) -> Result<Vec<BackupFolder>> {
    let now = SystemTime::now();
    Ok(remote
        .list_backup_folders()?
        .into_iter()
        .filter(|f| !f.manifest && old_enough(f.last_modified, now, older_than))
        .collect())
}

fn old_enough(modified: SystemTime, now: SystemTime, older_than: Duration) -> bool {
    now.duration_since(modified)
        .is_ok_and(|age| age >= older_than)
}

/// Deletes the objects of the incomplete backup `folder` after looking at
/// it once more (rules 3 and 4).
pub fn remove_incomplete(
    remote: &Remote,
    folder: &BackupFolder,
    older_than: Duration,
) -> Result<Removed> {
    let dir = ObjectPath::from(folder.folder.clone());
    let objects = remote.list_recursive(&dir)?;
    let now = SystemTime::now();
    let manifest = format!("{}/manifest", folder.folder);
    if objects.iter().any(|m| m.location.as_ref() == manifest) {
        return Ok(Removed::Spared("it has a manifest now".into()));
    }
    if let Some(young) = objects
        .iter()
        .find(|m| !old_enough(SystemTime::from(m.last_modified), now, older_than))
    {
        return Ok(Removed::Spared(format!(
            "{} was written less than {older_than:?} ago",
            young.location
        )));
    }
    let mut deleted = 0;
    for m in &objects {
        remote.delete(&m.location)?;
        deleted += 1;
    }
    Ok(Removed::Deleted(deleted))
}
