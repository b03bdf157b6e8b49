//! Checking base backups in the archive, and choosing the one a restore
//! starts from.
//!
//! ## What makes a backup usable
//!
//! A backup folder (`backup` module, "Layout") is **complete** when its
//! manifest is there, and **usable** when, in addition:
//!
//! 1. its manifest decodes and agrees with its folder's name
//!    ([`Remote::read_manifest`]);
//! 2. every file the manifest names is in the folder with exactly the
//!    manifest's size and CRC32C, read back as a stream
//!    ([`Remote::crc_streamed`]: one piece in memory at a time);
//! 3. the archive holds the log of the backup's timeline without a gap
//!    from the chunk holding its start LSN to (at least) its end LSN, the
//!    consistency point, as the chunks' headers say (each header checked
//!    against its CRC and its name). The chunk bodies are checked where
//!    they are read: by `keel archive verify` for the whole timeline, and
//!    by a restore for what it applies.
//!
//! A folder without a manifest is **incomplete** (a backup killed, cut off
//! by a power cut, or failed before its commit point): it is reported,
//! never restored from, never an error, and never deleted here (nothing
//! in the archive is removed on a guess).
//!
//! ## Choosing a backup ([`choose_backup`])
//!
//! Newest first (by start LSN) on the timeline: the first usable backup
//! is chosen. A complete backup that is damaged (a file missing, a size or
//! CRC32C that differs from its manifest, log missing between its start
//! and end LSN) is passed over and named in [`Chosen::passed_over`] with
//! the reason, so the caller can say it fell back. When none is usable the
//! error names each backup and why. Damage is never skipped silently
//! (invariant 10): every backup passed over is named to the caller, and
//! `keel archive verify` fails on it. Errors that say nothing about a
//! backup (the store unreachable, a request timed out, a listing refused)
//! are returned as they are, never taken for damage: a restore must not
//! fall back to an older backup because the network blinked.
//!
//! Checking reads every file of the chosen backup once before the restore
//! downloads it: a restore reads the backup twice, in exchange for never
//! starting to write a target from a copy that cannot finish.

use keel::types::Lsn;
use object_store::path::Path as ObjectPath;

use crate::backup::{BackupEntry, Manifest};
use crate::chunk;
use crate::error::{ArchiveError, Result};
use crate::store::Remote;

/// The folder of the backup whose manifest is `entry.manifest`.
pub fn backup_folder(entry: &BackupEntry) -> String {
    let m = entry.manifest.as_ref();
    m.strip_suffix("/manifest").unwrap_or(m).to_string()
}

/// Checks the complete backup `entry` (module essay, rules 1-3) and
/// returns its manifest. Errors name the backup's folder and, for a file,
/// the file.
pub fn check_backup(remote: &Remote, entry: &BackupEntry) -> Result<Manifest> {
    let folder = backup_folder(entry);
    let m = remote.read_manifest(entry)?;
    for f in &m.files {
        let object = format!("{folder}/files/{}", f.name);
        let sum = remote.crc_streamed(&ObjectPath::from(object.clone()))?;
        if sum.size != f.size {
            return Err(ArchiveError::Corrupt {
                object,
                place: crate::error::Place::Object(sum.size),
                reason: format!(
                    "backup file of {} bytes, its manifest says {}",
                    sum.size, f.size
                ),
            });
        }
        if sum.crc32c != f.crc32c {
            return Err(ArchiveError::ChecksumMismatch {
                object,
                what: "backup file",
                stored: f.crc32c,
                computed: sum.crc32c,
            });
        }
    }
    check_log_covers(remote, &folder, m.timeline, m.start, m.end)?;
    Ok(m)
}

/// The log of `timeline` must run without a gap from the chunk holding
/// `start` to `end` (module essay, rule 3); `folder` names the backup in
/// errors.
pub fn check_log_covers(
    remote: &Remote,
    folder: &str,
    timeline: u32,
    start: Lsn,
    end: Lsn,
) -> Result<()> {
    crate::read::relisting(|| check_log_covers_once(remote, folder, timeline, start, end))
}

fn check_log_covers_once(
    remote: &Remote,
    folder: &str,
    timeline: u32,
    start: Lsn,
    end: Lsn,
) -> Result<()> {
    let chunks = remote.list_chunks(timeline)?;
    let missing = |why: String| ArchiveError::BackupLogMissing {
        backup: folder.to_string(),
        reason: format!(
            "the log from its start LSN {start} to its end LSN {end} (its consistency \
             point) is not all in the archive: {why}"
        ),
    };
    let first = chunks
        .iter()
        .rposition(|c| c.start <= start)
        .ok_or_else(|| {
            missing(format!(
                "the archive of timeline {timeline:08X} begins after LSN {start}"
            ))
        })?;
    let mut reached: Option<Lsn> = None;
    for object in &chunks[first..] {
        if reached.is_some_and(|r| r >= end) {
            break;
        }
        let head = remote.get_prefix(&object.path, chunk::CHUNK_HEADER_SIZE as u64)?;
        let h = chunk::decode_header(object.path.as_ref(), &head, object.size)?;
        if h.start != object.start || h.timeline != timeline {
            return Err(ArchiveError::Corrupt {
                object: object.path.to_string(),
                place: crate::error::Place::Object(0),
                reason: format!(
                    "header says timeline {} from LSN {}, the name timeline {timeline} from LSN {}",
                    h.timeline, h.start, object.start
                ),
            });
        }
        if let Some(r) = reached
            && h.start != r
        {
            return Err(missing(format!(
                "no chunk from LSN {r} ({} starts at {})",
                object.path, h.start
            )));
        }
        reached = Some(h.end);
    }
    match reached {
        Some(r) if r >= end => Ok(()),
        Some(r) => Err(missing(format!(
            "the archive of timeline {timeline:08X} ends at LSN {r}"
        ))),
        None => Err(missing("no chunks".into())),
    }
}

/// Whether `e` says something about the backup being checked (damage,
/// an object missing, log missing) rather than about reaching the store.
pub fn is_damage(e: &ArchiveError) -> bool {
    match e {
        ArchiveError::Store { source, .. } => {
            matches!(source, object_store::Error::NotFound { .. })
        }
        ArchiveError::Timeout { .. } | ArchiveError::Config(_) => false,
        ArchiveError::Corrupt { .. }
        | ArchiveError::ChecksumMismatch { .. }
        | ArchiveError::WrongDatabase { .. }
        | ArchiveError::Discontinuity { .. }
        | ArchiveError::BackupLogMissing { .. } => true,
        _ => false,
    }
}

/// The backup a restore starts from ([`choose_backup`]).
#[derive(Debug)]
pub struct Chosen {
    /// The backup.
    pub entry: BackupEntry,
    /// Its manifest, checked.
    pub manifest: Manifest,
    /// Newer complete backups passed over as damaged: each one's folder
    /// and why.
    pub passed_over: Vec<(String, String)>,
}

/// The newest usable backup of `timeline` (module essay, "Choosing").
pub fn choose_backup(remote: &Remote, timeline: u32) -> Result<Chosen> {
    let mut passed_over = Vec::new();
    let candidates: Vec<BackupEntry> = remote
        .list_backups()?
        .into_iter()
        .filter(|b| b.timeline == timeline)
        .collect();
    for entry in candidates.into_iter().rev() {
        match check_backup(remote, &entry) {
            Ok(manifest) => {
                return Ok(Chosen {
                    entry,
                    manifest,
                    passed_over,
                });
            }
            Err(e) if is_damage(&e) => passed_over.push((backup_folder(&entry), e.to_string())),
            Err(e) => return Err(e),
        }
    }
    let why = match passed_over.is_empty() {
        true => String::new(),
        false => {
            let each: Vec<String> = passed_over
                .iter()
                .map(|(f, why)| format!("{f}: {why}"))
                .collect();
            format!("; every complete backup is damaged: {}", each.join("; "))
        }
    };
    Err(ArchiveError::Restore(format!(
        "no usable backup (one with a manifest, its files and its log) of timeline \
         {timeline:08X} under {}{why}",
        match remote.prefix() {
            "" => "the archive root",
            p => p,
        }
    )))
}
