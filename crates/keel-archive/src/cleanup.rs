//! Removing what a killed `keel backup` left: backup folders without a
//! manifest.
//!
//! A backup writes its manifest last ([`mod@crate::backup`]), so a folder
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
//! Nothing of the above touches the log (`wal/`) or the timeline
//! histories.
//!
//! ## Retention ([`retention_plan`], `--retain-backups N`)
//!
//! Keeps, for every timeline, the N newest complete backups a restore of
//! that timeline can use, deletes the other complete ones, then the log of
//! timeline 1 that nothing kept needs. End LSNs order backups only along
//! one timeline's path: a timeline started by a restore or a promotion
//! writes its LSNs again from its switch, so its newest backup may end
//! below an older one of its parent.
//!
//! 5. For each timeline the archive knows (timeline 1, every chunk
//!    folder, every history, every backup folder's timeline), the complete
//!    backups usable on its path (on a timeline of the path, ending at or
//!    before where the path leaves that timeline, as a restore picks them)
//!    are ranked by end LSN and the N newest are kept. Every other backup
//!    folder with a manifest is deleted, its manifest first (so a deletion
//!    cut off leaves a folder without a manifest, which restores never use
//!    and `cleanup` removes), then its files. Every timeline so keeps its
//!    newest backup whatever the others hold; nothing is deleted unless
//!    more than N complete backups exist; N is at least 1. A timeline
//!    whose path cannot be read (a history missing or damaged) is an
//!    error, and nothing is deleted.
//! 6. The log is kept from the **keep point**: the smallest of the kept
//!    backups' start LSNs (on every timeline), the start LSNs of backup
//!    folders without a manifest (a backup may be running), and the LSNs
//!    where the timelines' paths leave timeline 1 (their switches from
//!    timeline 1: their histories must find their parent's log at the
//!    switch). Objects of timeline 1 that end at or before the keep point
//!    (the next object in the listing starts at or before it) are deleted,
//!    oldest first, so an interrupted retention leaves a log without a
//!    hole; leftovers inside a deleted compacted object go with it.
//! 7. The log of any other timeline is kept whole: a backup on an
//!    ancestor may need all of it. What is lost is the ability to restore
//!    a timeline to a point before the oldest backup kept for it ends.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use object_store::path::Path as ObjectPath;

use keel::types::Lsn;

use crate::backup::{BackupEntry, BackupFolder};
use crate::error::{ArchiveError, Result};
use crate::restore::usable_on;
use crate::store::{ChunkObject, Remote};

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

/// What retention would delete ([`retention_plan`]).
#[derive(Clone, Debug, Default)]
pub struct RetentionPlan {
    /// The complete backups kept, by end LSN.
    pub kept: Vec<BackupFolder>,
    /// The complete backups to delete, by end LSN (rule 5).
    pub backups: Vec<BackupFolder>,
    /// Where timeline 1's log is kept from (rule 6); `None`: all of it.
    pub keep_from: Option<Lsn>,
    /// Timeline 1's objects to delete, oldest first, leftovers included.
    pub log: Vec<ChunkObject>,
}

/// The plan of retention keeping `keep` backups (module essay, rules
/// 5 to 7); nothing is deleted.
pub fn retention_plan(remote: &Remote, keep: usize) -> Result<RetentionPlan> {
    if keep == 0 {
        return Err(ArchiveError::Config(
            "--retain-backups must keep at least 1 backup".into(),
        ));
    }
    let folders = remote.list_backup_folders()?;
    let mut complete = Vec::new();
    for f in folders.iter().filter(|f| f.manifest) {
        let entry = BackupEntry {
            timeline: f.timeline,
            start: f.start,
            manifest: ObjectPath::from(format!("{}/manifest", f.folder)),
        };
        let m = remote.read_manifest(&entry)?;
        complete.push((m.end, m.start, f.clone()));
    }
    complete.sort_by(|a, b| (a.0, a.1, &a.2.folder).cmp(&(b.0, b.1, &b.2.folder)));
    // Every timeline the archive knows (rule 5): chunk folders, histories
    // and backup folders. A path that cannot be read is an error, never a
    // reason to delete.
    let timelines: BTreeSet<u32> = std::iter::once(1)
        .chain(remote.list_timelines()?)
        .chain(remote.list_histories()?.iter().map(|h| h.timeline))
        .chain(folders.iter().map(|f| f.timeline))
        .collect();
    let mut kept = vec![false; complete.len()];
    let mut leaves_timeline_1 = Vec::new();
    for &t in &timelines {
        let path = remote.timeline_path(t)?;
        let usable = complete
            .iter()
            .enumerate()
            .filter(|(_, (end, _, f))| usable_on(&path, f.timeline, *end))
            .map(|(i, _)| i);
        for i in usable.rev().take(keep) {
            kept[i] = true;
        }
        // Where this path leaves timeline 1 (rule 6).
        if let Some(&(1, _, Some(to))) = path.first() {
            leaves_timeline_1.push(to);
        }
    }
    let mut plan = RetentionPlan::default();
    for (c, &k) in complete.iter().zip(&kept) {
        match k {
            true => plan.kept.push(c.2.clone()),
            false => plan.backups.push(c.2.clone()),
        }
    }
    if plan.backups.is_empty() {
        return Ok(plan);
    }
    let keep_from = complete
        .iter()
        .zip(&kept)
        .filter(|&(_, &k)| k)
        .map(|(c, _)| c.1)
        .chain(folders.iter().filter(|f| !f.manifest).map(|f| f.start))
        .chain(leaves_timeline_1)
        .min();
    plan.keep_from = keep_from;
    let Some(keep_from) = keep_from else {
        return Ok(plan);
    };
    let listing = remote.list_timeline(1)?;
    let covering = &listing.covering;
    for (i, o) in covering.iter().enumerate() {
        let end = o.end.or_else(|| covering.get(i + 1).map(|n| n.start));
        if end.is_none_or(|e| e > keep_from) {
            break;
        }
        plan.log.extend(
            listing
                .leftovers
                .iter()
                .filter(|(_, j)| *j == i)
                .map(|(l, _)| l.clone()),
        );
        plan.log.push(o.clone());
    }
    Ok(plan)
}

/// Carries out `plan` (rules 5 and 6, in that order); returns the objects
/// deleted.
pub fn apply_retention(remote: &Remote, plan: &RetentionPlan) -> Result<u64> {
    let mut deleted = 0;
    for f in &plan.backups {
        let dir = ObjectPath::from(f.folder.clone());
        let manifest = ObjectPath::from(format!("{}/manifest", f.folder));
        remote.delete(&manifest)?;
        deleted += 1;
        for m in remote.list_recursive(&dir)? {
            remote.delete(&m.location)?;
            deleted += 1;
        }
    }
    for o in &plan.log {
        remote.delete(&o.path)?;
        deleted += 1;
    }
    Ok(deleted)
}
