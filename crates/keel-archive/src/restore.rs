//! Restoring a database from a base backup and the archive's log, to the
//! archive's end or to a point in time, and the timelines restores start.
//!
//! ## Recovery targets ([`RestoreTarget`])
//!
//! A target fixes the **stop LSN**: the restored log holds every archived
//! record that ends at or before it and nothing after, so the ordinary
//! open redoes exactly that log, undoes the transactions without a commit
//! record in it and writes the end-of-recovery checkpoint.
//!
//! - `End`: the stop is the head of the timeline (its last chunk's end).
//! - `Time(t)` (µs since the Unix epoch, as commit records store it): the
//!   stop is the end of the last record before the first commit record
//!   whose time is after `t` (the head when there is none): every commit
//!   with a time at or before `t` is kept, and nothing from the first later
//!   commit on. The stop is a record boundary even when that commit begins
//!   a segment (padding and the segment's header lie between the two), so
//!   the restored log ends exactly there and a timeline started there
//!   switches at a record's end. Only a backup
//!   that started at or before `t` (its manifest's `started`) can serve:
//!   its copy may hold any commit logged before it started. Commit times
//!   are wall-clock readings taken as each commit is logged, so a clock
//!   stepped backwards on the primary makes time targets approximate; LSN
//!   and transaction targets are exact.
//! - `Lsn(l)`: `l` must be a record boundary: the end LSN (one past the
//!   last byte) of an archived record; the stop is `l`, keeping every record
//!   that ends at or before `l`. An `l` past the head, or inside a record,
//!   is an error naming the nearest boundaries; an `l` before the oldest
//!   backup's end is the consistency-point error below.
//! - `Txn(x)`: the stop is the end of `x`'s commit record (inclusive: its
//!   commit is kept). A transaction with no commit record on the timeline
//!   (never committed, aborted, or not archived) is an error.
//!
//! ## The consistency point rule
//!
//! A backup is a copy taken while writes ran; it is consistent only once
//! its log has been redone to its **end LSN**. So a restore uses the newest
//! backup whose end LSN is at or before the stop, and never stops before
//! it. A stop before every usable backup's end is an error naming the stop
//! and the oldest backup's end.
//!
//! ## Timelines
//!
//! A restore that stops before the head starts a new **timeline**: the
//! restored database writes new records (its undo, its checkpoint, later
//! work) at LSNs the old history already used, so they must never land in
//! the old timeline's chunks. The new timeline's number is one more than
//! the largest the prefix knows (timeline folders and history objects).
//! Its parent is the timeline on the restored path whose part of the path
//! holds the stop (`branch_parent`): the restored timeline itself, or,
//! for a stop before that timeline's own switch, the ancestor whose
//! records lie below the stop; so the switch is always within the
//! parent's own log. The restore then
//!
//! 1. uploads, create-only, the new timeline's **history object**
//!    `<prefix>/timelines/<timeline:08X>.history` (format below; a 412
//!    means another restore took the number at the same moment: an error,
//!    run the restore again),
//! 2. records the timeline in the restored directory, in the file
//!    [`TIMELINE_FILE`] (`timeline <n>` and `from <LSN hex>`, the stop),
//!    before the control file is renamed into place,
//! 3. opens the database with the log held (`WalConfig::hold_at_open`)
//!    and archives it on the new timeline from the switch LSN to its
//!    durable end, so the new timeline's chunks start exactly at the
//!    switch LSN and a later restore can follow it.
//!
//! An [`Archiver`] started on a database that has [`TIMELINE_FILE`]
//! archives on that timeline: an `ArchiverOptions::timeline` of 1 (the
//! default, and never a restored database's timeline) means "the recorded
//! one"; any other number that differs is refused
//! ([`archiver_timeline`]). While that timeline has no chunk, archiving
//! begins at the recorded `from`, not at the log's durable end, so the
//! timeline's log is whole even when the restored database wrote records
//! (its shutdown checkpoint) that the restore's own archiver did not see.
//! A restore to the head (`End`) on a timeline starts none and records the
//! timeline it restored; its log is held all the same (step 7 below), so
//! an archiver started on the restored database continues that timeline
//! from the stop.
//!
//! A standby's promotion ([`crate::standby`]) starts a timeline the same
//! way (`start_timeline`, switch at the standby's log end) and also writes
//! the fence of the timeline it followed ([`crate::fence`]); a restore
//! writes no fence, so the primary it was restored from archives on.
//!
//! A timeline's **path** is its ancestry: timeline 1 alone, or its
//! parent's path cut at the switch LSN, then its own chunks. A restore on
//! timeline `n` reads the chunks of each timeline on the path up to the
//! smallest switch LSN after it on the path (normally the next one's; a
//! history that switches below its parent's own switch reads nothing of
//! that parent), and may use a backup of any timeline on the path whose
//! end LSN is at or before both the stop and that limit.
//!
//! ## History object
//!
//! Text, one field per line, in this order; the last line is the CRC32C of
//! every byte before it. Times are µs since the Unix epoch; `target` is
//! `end`, `time <µs>`, `lsn <hex>` or `txn <decimal>`:
//!
//! ```text
//! keel-timeline 1
//! database 0123456789abcdef
//! timeline 2
//! parent 1
//! switch 0000000000034567
//! target time 1767225600000000
//! created 1767225900000000
//! crc32c 1a2b3c4d
//! ```
//!
//! [`History::decode`] treats the bytes as hostile: a wrong CRC, a missing,
//! repeated or malformed field, a parent not below the timeline, or a
//! timeline that disagrees with the object's name is an error naming it.
//!
//! ## Steps ([`restore`])
//!
//! 1. Refuse a target directory that exists and is not empty.
//! 2. Read the timeline's path and the backups on it; scan the archived
//!    log from the oldest usable backup's start (every chunk verified:
//!    CRCs, database id, timeline, continuity) to find the stop LSN.
//! 3. Pick the newest usable backup whose end is at or before the stop
//!    ([`crate::backup_check::check_backup`]: files and log checked); a
//!    damaged newer one is passed over and named in the report, and when
//!    every candidate is damaged the error names each.
//! 4. Download each file, the control file first, check its size and
//!    CRC32C against the manifest and the control file's database id
//!    against the manifest's, and write it (synced), the control file as
//!    [`RESTORING_CONTROL`] so that an open refuses the directory until
//!    step 7. A relation file is streamed to disk a piece at a time
//!    ([`Remote::read_streamed`]) and checked once whole, so a restore
//!    holds one piece of it in memory, whatever its size.
//! 5. Write the log from the backup's start to the stop
//!    ([`keel::wal::import::LogImport`]), the last chunk cut at the stop.
//!    "Chunks" here are the listing's covering set: chunks and compacted
//!    objects alike; one that compaction deleted after the listing is read
//!    from the compacted object that replaced it, from the same LSN
//!    ([`crate::read`]).
//! 6. Start a new timeline when the stop is before the head (above).
//! 7. Mark the directory as followed by the archive (its status file,
//!    [`crate::status`]: stopped, archived up to the stop; synced), rename
//!    the control file into place, sync the directory, open the database
//!    with the log held (redo, undo, end-of-recovery checkpoint), archive
//!    the new timeline's first log, close. Every restore, to the head or
//!    not, holds the log: the records its open and close write after the
//!    stop may move the redo point into a later segment, and neither that
//!    close's checkpoint nor any later open (which holds the log while the
//!    status file is there) retires the segment holding the stop, where
//!    an archiver of the restored database continues.
//!
//! ## Crash safety
//!
//! Every local write goes through the engine's I/O layer
//! ([`crate::local::Local`]; [`restore_with_io`] takes the simulator in
//! tests) and is synced before the next step relies on it: each directory
//! the restore creates is synced in its parent, [`RESTORING_CONTROL`] is
//! written first and its directory synced before any relation file is
//! created, every file is synced once whole, and the rename of step 7 is
//! synced before the open. So a power cut or a kill at any moment leaves
//! nothing of the restore, an unfinished restore that an open and a second
//! restore refuse by name, or the restored database; never relation files
//! or a log an open would take for a database being created, and never a
//! reported restore that a power cut afterwards takes away
//! (`tests/restore_crash.rs` cuts it at each operation).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel::checksum::crc32c;
use keel::types::{Lsn, TxnId};
use keel::wal::{Payload, RecordType};
use keel::{Config, Database};
use object_store::path::Path as ObjectPath;

use crate::archiver::{Archiver, ArchiverOptions};
use crate::backup::{BackupEntry, Manifest, RESTORING_CONTROL};
use crate::backup_check::{backup_folder, check_backup, is_damage};
use crate::chunk::{Chunk, Expect};
use crate::config::ArchiveTarget;
use crate::error::{ArchiveError, Place, Result};
use crate::local::Local;
use crate::store::{ChunkObject, Put, Remote};

/// The file in a restored data directory that names its timeline.
pub const TIMELINE_FILE: &str = "archive.timeline";
/// The first word of a history object.
pub const HISTORY_MAGIC: &str = "keel-timeline";
/// History object format version.
pub const HISTORY_VERSION: u32 = 1;
/// Largest history object accepted.
pub const MAX_HISTORY_BYTES: usize = 4096;

/// The wall clock in µs since the Unix epoch, as commit records store it.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Where a restore stops replaying the log (module essay, "Recovery
/// targets").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreTarget {
    /// Everything the timeline holds.
    #[default]
    End,
    /// Every commit with a time at or before this (µs since the Unix
    /// epoch), nothing after.
    Time(u64),
    /// Every record that ends at or before this LSN, which must be a
    /// record's end.
    Lsn(Lsn),
    /// Up to and including this transaction's commit.
    Txn(TxnId),
}

impl std::fmt::Display for RestoreTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreTarget::End => write!(f, "end"),
            RestoreTarget::Time(t) => write!(f, "time {t}"),
            RestoreTarget::Lsn(l) => write!(f, "lsn {:016x}", l.0),
            RestoreTarget::Txn(x) => write!(f, "txn {}", x.0),
        }
    }
}

/// What [`restore`] did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The backup used.
    pub backup: Manifest,
    /// Where the restored log ends (the stop LSN).
    pub log_end: Lsn,
    /// The head of the timeline restored from.
    pub head: Lsn,
    /// Chunks applied (a cut one included).
    pub chunks: u64,
    /// Bytes of files downloaded.
    pub file_bytes: u64,
    /// The timeline the restored database archives on: a new one when the
    /// stop is before the head.
    pub timeline: u32,
    /// The history object written, when a new timeline was started.
    pub history: Option<History>,
    /// What recovery did when the restored database was opened.
    pub recovery: keel::RecoveryReport,
    /// Newer complete backups passed over as damaged (folder, why): the
    /// restore fell back to an older one ([`crate::backup_check`]).
    pub passed_over: Vec<(String, String)>,
}

/// A timeline's history object (module essay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// The database.
    pub database_id: u64,
    /// The timeline it describes.
    pub timeline: u32,
    /// The timeline it branched from.
    pub parent: u32,
    /// Where it branched: the parent's records below this LSN are its own.
    pub switch: Lsn,
    /// The restore target that started it.
    pub target: RestoreTarget,
    /// When (µs since the Unix epoch).
    pub created_us: u64,
}

impl History {
    /// The object's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let target = match self.target {
            RestoreTarget::End => "end".to_string(),
            RestoreTarget::Time(t) => format!("time {t}"),
            RestoreTarget::Lsn(l) => format!("lsn {:016x}", l.0),
            RestoreTarget::Txn(x) => format!("txn {}", x.0),
        };
        crate::sealed::seal(format!(
            "{HISTORY_MAGIC} {HISTORY_VERSION}\ndatabase {:016x}\ntimeline {}\nparent {}\n\
             switch {:016x}\ntarget {target}\ncreated {}\n",
            self.database_id, self.timeline, self.parent, self.switch.0, self.created_us
        ))
    }

    /// Decodes a history object read from `object` (hostile input).
    pub fn decode(object: &str, bytes: &[u8]) -> Result<History> {
        let h = crate::sealed::Sealed::open(
            object,
            bytes,
            &crate::sealed::Kind {
                what: "timeline history",
                magic: HISTORY_MAGIC,
                version: HISTORY_VERSION,
                lines: 8,
                max_bytes: MAX_HISTORY_BYTES,
            },
        )?;
        let database_id = h.hex(1, "database")?;
        let timeline = h.small(2, "timeline")?;
        let parent = h.small(3, "parent")?;
        if parent == 0 || parent >= timeline {
            return Err(h.bad(3, format!("parent {parent} of timeline {timeline}")));
        }
        let switch = Lsn(h.hex(4, "switch")?);
        let target = parse_target(h.field(5, "target")?)
            .ok_or_else(|| h.bad(5, "malformed target".into()))?;
        let created_us = h.dec(6, "created")?;
        Ok(History {
            database_id,
            timeline,
            parent,
            switch,
            target,
            created_us,
        })
    }
}

fn parse_target(s: &str) -> Option<RestoreTarget> {
    let (kind, value) = s.split_once(' ').unwrap_or((s, ""));
    match kind {
        "end" if value.is_empty() => Some(RestoreTarget::End),
        "time" => value.parse().ok().map(RestoreTarget::Time),
        "lsn" => u64::from_str_radix(value, 16)
            .ok()
            .map(|l| RestoreTarget::Lsn(Lsn(l))),
        "txn" => value.parse().ok().map(|x| RestoreTarget::Txn(TxnId(x))),
        _ => None,
    }
}

impl Remote {
    fn history_root(&self) -> String {
        match self.prefix().is_empty() {
            true => "timelines".into(),
            false => format!("{}/timelines", self.prefix()),
        }
    }

    /// The history object of `timeline`.
    pub fn history_path(&self, timeline: u32) -> ObjectPath {
        ObjectPath::from(format!("{}/{timeline:08X}.history", self.history_root()))
    }

    /// Every timeline's history object, by timeline. An object under
    /// `timelines/` that is not a history's is an error naming it.
    pub fn list_histories(&self) -> Result<Vec<History>> {
        let mut out = Vec::new();
        for meta in self.list_recursive(&ObjectPath::from(self.history_root()))? {
            let name = meta.location.filename().unwrap_or("");
            let timeline = name
                .strip_suffix(".history")
                .filter(|h| h.len() == 8)
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    ArchiveError::Config(format!(
                        "{} is not a timeline history's name; the archive prefix must hold only the archive",
                        meta.location
                    ))
                })?;
            let h = History::decode(meta.location.as_ref(), &self.get(&meta.location)?)?;
            if h.timeline != timeline {
                return Err(ArchiveError::Corrupt {
                    object: meta.location.to_string(),
                    place: Place::Object(0),
                    reason: format!("it describes timeline {}", h.timeline),
                });
            }
            out.push(h);
        }
        out.sort_by_key(|h| h.timeline);
        Ok(out)
    }

    /// The path of `timeline` (module essay): `(timeline, from, to)` in
    /// order, where that timeline's records in `from..to` are the history's
    /// (`to` is `None` for the last). Each `to` is at most every later
    /// switch on the path: a timeline that branched below its parent's own
    /// switch reads nothing of the parent, and the grandparent up to the
    /// child's switch.
    pub fn timeline_path(&self, timeline: u32) -> Result<Vec<(u32, Lsn, Option<Lsn>)>> {
        let histories = self.list_histories()?;
        let mut rev: Vec<(u32, Lsn, Option<Lsn>)> = Vec::new();
        let mut t = timeline;
        let mut to: Option<Lsn> = None;
        loop {
            match histories.iter().find(|h| h.timeline == t) {
                Some(h) => {
                    rev.push((t, h.switch, to));
                    to = Some(to.map_or(h.switch, |to| to.min(h.switch)));
                    t = h.parent;
                }
                None if t == 1 => {
                    rev.push((1, Lsn::ZERO, to));
                    break;
                }
                None => {
                    return Err(ArchiveError::Restore(format!(
                        "timeline {t} has no history object under {} and is not timeline 1",
                        self.prefix()
                    )));
                }
            }
        }
        rev.reverse();
        Ok(rev)
    }
}

/// The timeline an archiver of the database in `dir` uses, given the one
/// asked for, and where archiving begins while that timeline has no chunk
/// (module essay, "Timelines").
pub fn archiver_timeline(dir: &Path, requested: u32) -> Result<(u32, Option<Lsn>)> {
    let Some(recorded) = read_timeline_file(dir)? else {
        return Ok((requested, None));
    };
    match requested == recorded.timeline || requested == 1 {
        true => Ok((recorded.timeline, Some(recorded.from))),
        false => Err(ArchiveError::Config(format!(
            "{} was restored onto timeline {} ({}); archiving it on timeline {requested} \
             would mix two histories",
            dir.display(),
            recorded.timeline,
            TIMELINE_FILE
        ))),
    }
}

/// The timeline recorded in the data directory `dir`, if any.
pub fn recorded_timeline(dir: &Path) -> Result<Option<u32>> {
    Ok(read_timeline_file(dir)?.map(|r| r.timeline))
}

/// The contents of [`TIMELINE_FILE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) timeline: u32,
    /// Where the restore (or the promotion) left the log: archiving an
    /// empty timeline begins here.
    pub(crate) from: Lsn,
}

fn read_timeline_file(dir: &Path) -> Result<Option<Recorded>> {
    let path = dir.join(TIMELINE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => Recorded::decode(&path, &t).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ArchiveError::Config(format!("{}: {e}", path.display()))),
    }
}

/// [`TIMELINE_FILE`] in `dir` read through `local` (a standby's promotion
/// on the simulator), `None` when there is none.
pub(crate) fn read_timeline_file_with(local: &Local, dir: &Path) -> Result<Option<Recorded>> {
    let path = dir.join(TIMELINE_FILE);
    match local.read_small(&path, MAX_TIMELINE_FILE)? {
        Some(bytes) => Recorded::decode(&path, &String::from_utf8_lossy(&bytes)).map(Some),
        None => Ok(None),
    }
}

/// Writes [`TIMELINE_FILE`] in `dir` through `local`: after a power cut it
/// is absent or whole ([`Local::write_whole_synced`]).
pub(crate) fn write_timeline_file(local: &Local, dir: &Path, recorded: &Recorded) -> Result<()> {
    local.write_whole_synced(&dir.join(TIMELINE_FILE), recorded.encode().as_bytes())
}

/// The largest [`TIMELINE_FILE`] read (two short lines).
const MAX_TIMELINE_FILE: u64 = 4096;

impl Recorded {
    pub(crate) fn encode(&self) -> String {
        format!("timeline {}\nfrom {:016x}\n", self.timeline, self.from.0)
    }

    pub(crate) fn decode(path: &Path, text: &str) -> Result<Recorded> {
        let mut lines = text.lines();
        let timeline = lines
            .next()
            .and_then(|l| l.strip_prefix("timeline "))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|&n| n != 0);
        let from = lines
            .next()
            .and_then(|l| l.strip_prefix("from "))
            .and_then(|n| u64::from_str_radix(n, 16).ok());
        match (timeline, from, lines.next()) {
            (Some(timeline), Some(from), None) => Ok(Recorded {
                timeline,
                from: Lsn(from),
            }),
            _ => Err(ArchiveError::Config(format!(
                "{} does not read `timeline <n>` (n ≥ 1) then `from <LSN in hex>`: {:?}",
                path.display(),
                text
            ))),
        }
    }
}

/// One chunk on a timeline's path, with the part of it that belongs to the
/// path (records ending at or before `to`).
pub(crate) struct PathChunk {
    pub(crate) object: ChunkObject,
    pub(crate) to: Option<Lsn>,
}

/// The chunks of a path, in LSN order.
pub(crate) fn path_chunks(
    remote: &Remote,
    path: &[(u32, Lsn, Option<Lsn>)],
) -> Result<Vec<PathChunk>> {
    let mut out = Vec::new();
    for &(t, from, to) in path {
        for object in remote.list_chunks(t)? {
            let below = to.is_none_or(|to| object.start < to);
            if below && (object.start >= from || t == path[0].0) {
                out.push(PathChunk { object, to });
            }
        }
    }
    Ok(out)
}

pub(crate) fn end_of(h: &keel::wal::RecordHeader) -> Lsn {
    Lsn(h.lsn.0 + u64::from(h.total_len))
}

/// Reads the path's chunks from the one holding `from`, verified and
/// chained, handing each to `visit` with the LSN where its part of the
/// path ends; `visit` returns false to stop.
pub(crate) fn walk(
    remote: &Remote,
    chunks: &[PathChunk],
    database_id: u64,
    from: Lsn,
    mut visit: impl FnMut(&Chunk, Option<Lsn>) -> Result<bool>,
) -> Result<Lsn> {
    let first = chunks
        .iter()
        .rposition(|c| c.object.start <= from)
        .ok_or_else(|| {
            ArchiveError::Restore(format!(
                "the archive begins after LSN {from}, where redo starts"
            ))
        })?;
    let mut expect = Expect {
        database_id: Some(database_id),
        timeline: None,
        start: None,
    };
    let mut end = from;
    let mut reached = None;
    for pc in &chunks[first..] {
        // Passed over: compaction deleted it after the listing and the
        // object read in its stead already held its log (`crate::read`).
        let t = pc.object.timeline;
        if reached.is_some_and(|(rt, r)| rt == t && crate::read::covered(pc.object.start, Some(r)))
        {
            continue;
        }
        expect.timeline = Some(t);
        let (c, _) = crate::read::read_listed(remote, &pc.object, &expect)?;
        reached = Some((t, c.header.end));
        let cut = pc.to.filter(|&to| to < c.header.end);
        end = cut.unwrap_or(c.header.end);
        expect.start = Some(end);
        if !visit(&c, cut)? {
            break;
        }
    }
    Ok(end)
}

/// The end of the path's log: its last chunk's end, cut at that
/// timeline's part of the path.
pub(crate) fn path_head(remote: &Remote, chunks: &[PathChunk], database_id: u64) -> Result<Lsn> {
    let Some(last) = chunks.last() else {
        return Ok(Lsn::ZERO);
    };
    let expect = Expect {
        database_id: Some(database_id),
        timeline: Some(last.object.timeline),
        start: Some(last.object.start),
    };
    let (c, _) = crate::read::read_listed(remote, &last.object, &expect)?;
    Ok(last.to.map_or(c.header.end, |to| to.min(c.header.end)))
}

/// Finds the stop LSN of `target` on the path from `from`, and the path's
/// head (module essay).
fn find_stop(
    remote: &Remote,
    chunks: &[PathChunk],
    database_id: u64,
    from: Lsn,
    target: RestoreTarget,
) -> Result<(Lsn, Lsn)> {
    let mut stop = None;
    // The end of the last record read: a time target stops there, which
    // is a record boundary even when the later commit begins a segment.
    let mut kept_end = None;
    let walked = walk(remote, chunks, database_id, from, |c, cut| {
        for (h, payload) in c.records() {
            let end = end_of(h);
            if cut.is_some_and(|cut| end > cut) {
                break;
            }
            match target {
                RestoreTarget::Time(t) if h.kind == RecordType::Commit => {
                    let time = match Payload::decode(h.kind, payload, h.lsn)
                        .map_err(|e| ArchiveError::Backup(Box::new(e.into())))?
                    {
                        Payload::Commit { commit_time_us } => commit_time_us,
                        _ => 0,
                    };
                    if time > t {
                        // With no record read before it the stop is before
                        // every backup's end: the consistency-point error.
                        stop = Some(kept_end.unwrap_or(h.lsn));
                        return Ok(false);
                    }
                }
                RestoreTarget::Txn(x) if h.kind == RecordType::Commit && h.txn == x => {
                    stop = Some(end);
                    return Ok(false);
                }
                RestoreTarget::Lsn(l) if end >= l => {
                    if end != l {
                        return Err(ArchiveError::Restore(format!(
                            "LSN {l} is not a record boundary: the record at {} ends at {end} \
                             (a target LSN is the end of a record)",
                            h.lsn
                        )));
                    }
                    stop = Some(l);
                    return Ok(false);
                }
                _ => {}
            }
            kept_end = Some(end);
        }
        Ok(true)
    })?;
    // A walk that stopped at the target has not seen the head.
    let head = match stop {
        Some(_) => path_head(remote, chunks, database_id)?.max(walked),
        None => walked,
    };
    let stop = match (target, stop) {
        (_, Some(s)) => s,
        (RestoreTarget::End | RestoreTarget::Time(_), None) => head,
        (RestoreTarget::Lsn(l), None) if l == from || l == head => l,
        (RestoreTarget::Lsn(l), None) => {
            return Err(ArchiveError::Restore(format!(
                "LSN {l} is outside the archived log, which runs from {from} to {head}"
            )));
        }
        (RestoreTarget::Txn(x), None) => {
            return Err(ArchiveError::Restore(format!(
                "transaction {} has no commit record in the archived log from LSN {from} to {head}: \
                 it never committed, or its commit was not archived",
                x.0
            )));
        }
    };
    Ok((stop, head))
}

/// Restores into the new data directory `dir` the database whose history
/// is `timeline` of the archive at `target`, up to `restore_target`
/// (module essay).
pub fn restore(
    target: &ArchiveTarget,
    dir: &Path,
    timeline: u32,
    restore_target: RestoreTarget,
    config: Config,
    op_timeout: Duration,
) -> Result<RestoreReport> {
    let local = Local::for_config(&config.io)?;
    restore_with_io(
        target,
        dir,
        timeline,
        restore_target,
        config,
        op_timeout,
        &local,
    )
}

/// [`restore`] with its local files written through `local` (the
/// simulator in crash tests). Restoring to a point before the archive's
/// end starts a new timeline and archives its first log; that archiver
/// writes its status file through the restored database's backend, the
/// same one.
pub fn restore_with_io(
    target: &ArchiveTarget,
    dir: &Path,
    timeline: u32,
    restore_target: RestoreTarget,
    config: Config,
    op_timeout: Duration,
    local: &Local,
) -> Result<RestoreReport> {
    refuse_non_empty(local, dir)?;
    let remote = Remote::open(target, op_timeout)?;
    let path = remote.timeline_path(timeline)?;
    let mut backups = path_backups(&remote, &path)?;
    if backups.is_empty() {
        return Err(ArchiveError::Restore(format!(
            "no complete backup (one with a manifest) on timeline {timeline}'s history under {}",
            remote.prefix()
        )));
    }
    // A time target can use only backups that started at or before it
    // (module essay, "Recovery targets").
    if let RestoreTarget::Time(t) = restore_target {
        let earliest = backups.iter().filter_map(|(_, m)| m.started_us).min();
        backups.retain(|(_, m)| m.started_us.is_some_and(|s| s <= t));
        if backups.is_empty() {
            return Err(ArchiveError::Restore(match earliest {
                Some(s) => format!(
                    "time {t} µs is before the oldest usable backup started ({s} µs): its copy \
                     may hold later commits; restore to a later time"
                ),
                None => format!(
                    "the backups on timeline {timeline}'s history record no start time \
                     (version {} manifests): restore to an LSN or a transaction instead",
                    crate::backup::MANIFEST_VERSION_V1
                ),
            }));
        }
    }
    let oldest = &backups[0].1;
    if let RestoreTarget::Lsn(l) = restore_target
        && l < oldest.end
    {
        return Err(before_consistency(restore_target, l, oldest));
    }
    let chunks = path_chunks(&remote, &path)?;
    let (stop, head) = find_stop(
        &remote,
        &chunks,
        oldest.database_id,
        oldest.start,
        restore_target,
    )?;
    let mut passed_over = Vec::new();
    let mut chosen = None;
    for (entry, _) in backups.iter().rev().filter(|(_, m)| m.end <= stop) {
        match check_backup(&remote, entry) {
            Ok(m) => {
                chosen = Some((entry.clone(), m));
                break;
            }
            Err(e) if is_damage(&e) => passed_over.push((backup_folder(entry), e.to_string())),
            Err(e) => return Err(e),
        }
    }
    if chosen.is_none() && !passed_over.is_empty() {
        let each: Vec<String> = passed_over
            .iter()
            .map(|(f, why)| format!("{f}: {why}"))
            .collect();
        return Err(ArchiveError::Restore(format!(
            "no usable backup (one with a manifest, its files and its log) ends at or before \
             the stop LSN {stop} on timeline {timeline:08X}'s history; every complete one is \
             damaged: {}",
            each.join("; ")
        )));
    }
    let Some((entry, manifest)) = chosen else {
        return Err(match head < oldest.end {
            true => ArchiveError::Restore(format!(
                "the archive of timeline {timeline} ends at LSN {head}, before the oldest backup's \
                 end LSN {} (its consistency point): no backup can be made consistent yet",
                oldest.end
            )),
            false => before_consistency(restore_target, stop, oldest),
        });
    };
    let file_bytes = download_files(&remote, &entry, &manifest, dir, local)?;
    let (log_end, applied) = write_log(&remote, &manifest, &chunks, stop, dir, local)?;
    if log_end != stop {
        return Err(ArchiveError::Restore(format!(
            "the archived log ends at LSN {log_end}, not at the stop LSN {stop}"
        )));
    }
    let history = match stop < head {
        true => Some(start_timeline(
            &remote,
            manifest.database_id,
            branch_parent(&path, stop),
            stop,
            restore_target,
        )?),
        false => None,
    };
    let new_timeline = history.as_ref().map_or(timeline, |h| h.timeline);
    write_timeline_file(
        local,
        dir,
        &Recorded {
            timeline: new_timeline,
            from: stop,
        },
    )?;
    mark_restored(local, dir, stop)?;
    let control = dir.join(keel::datadir::layout::CONTROL_FILE);
    local.rename(&dir.join(RESTORING_CONTROL), &control)?;
    local.sync_dir(dir)?;
    let mut config = config;
    config.wal.hold_at_open = true;
    let db = Arc::new(
        Database::open_with_io(dir, config, local.io().clone())
            .map_err(|e| ArchiveError::Backup(Box::new(e)))?,
    );
    let recovery = db.recovery_report().clone();
    if history.is_some() {
        let archiver = Archiver::start(
            db.clone(),
            target,
            ArchiverOptions {
                timeline: new_timeline,
                start_lsn: Some(stop),
                op_timeout,
                ..ArchiverOptions::default()
            },
        )?;
        archiver.wait_archived(db.durable_lsn(), op_timeout)?;
        archiver.stop()?;
    }
    let db = Arc::try_unwrap(db).map_err(|_| {
        ArchiveError::Restore("the restored database is still in use by the archiver".into())
    })?;
    db.close().map_err(|e| ArchiveError::Backup(Box::new(e)))?;
    Ok(RestoreReport {
        backup: manifest,
        log_end,
        head,
        chunks: applied,
        file_bytes,
        timeline: new_timeline,
        history,
        recovery,
        passed_over,
    })
}

/// Marks the restored directory `dir` as followed by the archive, which
/// holds its log up to `stop`: its status file (stopped, archived to
/// `stop`), written and synced with the directory before the control file
/// is put in place, so that every open of the restored database holds its
/// log until an archiver continues it (module essay, step 7).
fn mark_restored(local: &Local, dir: &Path, stop: Lsn) -> Result<()> {
    let status = crate::status::PublishedStatus {
        state: crate::status::ArchiveState::Stopped,
        policy: crate::archiver::ArchivePolicy::default().describe(),
        archived_lsn: stop,
        durable_lsn: stop,
        oldest_unarchived_commit_us: None,
        updated_us: now_us(),
        chunks: 0,
        retries: 0,
        last_error: None,
        compacted_objects: 0,
        chunks_compacted: 0,
        compaction_error: None,
    };
    crate::status::write_status(local.io(), dir, &status, true)
}

/// The complete backups usable on a timeline's `path`: on one of its
/// timelines, and ending at or before the switch to the next; oldest end
/// first.
pub(crate) fn path_backups(
    remote: &Remote,
    path: &[(u32, Lsn, Option<Lsn>)],
) -> Result<Vec<(BackupEntry, Manifest)>> {
    let mut backups = Vec::new();
    for entry in remote.list_backups()? {
        if !path.iter().any(|p| p.0 == entry.timeline) {
            continue;
        }
        let m = remote.read_manifest(&entry)?;
        if usable_on(path, entry.timeline, m.end) {
            backups.push((entry, m));
        }
    }
    backups.sort_by_key(|(_, m)| (m.end, m.start));
    Ok(backups)
}

/// Whether a complete backup of `timeline` ending at `end` can serve a
/// restore on `path`: its timeline is on the path and its end is at or
/// before where the path leaves that timeline.
pub(crate) fn usable_on(path: &[(u32, Lsn, Option<Lsn>)], timeline: u32, end: Lsn) -> bool {
    path.iter()
        .find(|p| p.0 == timeline)
        .is_some_and(|&(_, _, to)| to.is_none_or(|to| end <= to))
}

fn before_consistency(target: RestoreTarget, stop: Lsn, oldest: &Manifest) -> ArchiveError {
    ArchiveError::Restore(format!(
        "the target ({target}) stops at LSN {stop}, before the oldest usable backup's end LSN {} \
         (its consistency point, backup from LSN {}): restore to a later point",
        oldest.end, oldest.start
    ))
}

/// The timeline on `path` whose part of the path holds `stop`: the last
/// one that begins at or before it. A new timeline switching at `stop`
/// branches from it, never from a later one whose own switch is past
/// `stop` (module essay, "Timelines").
pub(crate) fn branch_parent(path: &[(u32, Lsn, Option<Lsn>)], stop: Lsn) -> u32 {
    path.iter()
        .rev()
        .find(|&&(_, from, _)| from <= stop)
        .map_or(1, |&(t, _, _)| t)
}

/// Uploads the history object of the next unused timeline.
pub(crate) fn start_timeline(
    remote: &Remote,
    database_id: u64,
    parent: u32,
    switch: Lsn,
    target: RestoreTarget,
) -> Result<History> {
    let used = remote
        .list_timelines()?
        .into_iter()
        .chain(remote.list_histories()?.iter().map(|h| h.timeline))
        .max()
        .unwrap_or(1);
    let timeline = used
        .checked_add(1)
        .ok_or_else(|| ArchiveError::Restore("every timeline number is used".into()))?;
    let created_us = now_us();
    let history = History {
        database_id,
        timeline,
        parent,
        switch,
        target,
        created_us,
    };
    let path = remote.history_path(timeline);
    match remote.put_create(&path, &history.encode())? {
        Put::Created => Ok(history),
        Put::AlreadyThere => Err(ArchiveError::Restore(format!(
            "{path} already exists: another restore started timeline {timeline}; restore again"
        ))),
    }
}

fn refuse_non_empty(local: &Local, dir: &Path) -> Result<()> {
    let Some(names) = local.list(dir)? else {
        return Ok(());
    };
    let has = |n: &str| names.iter().any(|x| x == n);
    if names.is_empty() {
        Ok(())
    } else if !has(keel::datadir::layout::CONTROL_FILE) && has(RESTORING_CONTROL) {
        Err(ArchiveError::Restore(format!(
            "{} holds an unfinished restore ({RESTORING_CONTROL}): delete it and restore \
             again (a restore writes only into a new or empty directory)",
            dir.display()
        )))
    } else {
        Err(ArchiveError::Restore(format!(
            "{} is not empty: a restore writes only into a new or empty directory",
            dir.display()
        )))
    }
}

/// Step 4: every file, verified, written and synced; the control file
/// first, as [`RESTORING_CONTROL`], its directory entry synced before
/// anything else is created, so a restore killed or cut by a power cut at
/// any later moment leaves a directory an open refuses, never one it would
/// take for a new, empty database (the relation folder alone).
pub(crate) fn download_files(
    remote: &Remote,
    entry: &BackupEntry,
    m: &Manifest,
    dir: &Path,
    local: &Local,
) -> Result<u64> {
    let rel = dir.join(keel::datadir::layout::REL_DIR);
    local.create_dir_all(dir)?;
    let base = backup_folder(entry);
    let mut total = 0;
    let mut files: Vec<_> = m.files.iter().collect();
    files.sort_by_key(|f| f.name != keel::datadir::layout::CONTROL_FILE);
    for f in files {
        let object = format!("{base}/files/{}", f.name);
        let checked = |size: u64, computed: u32| match (size == f.size, computed == f.crc32c) {
            (false, _) => Err(ArchiveError::Corrupt {
                object: object.clone(),
                place: Place::Object(size),
                reason: format!("{size} bytes, the manifest says {}", f.size),
            }),
            (true, false) => Err(ArchiveError::ChecksumMismatch {
                object: object.clone(),
                what: "backup file",
                stored: f.crc32c,
                computed,
            }),
            (true, true) => Ok(()),
        };
        if f.name == keel::datadir::layout::CONTROL_FILE {
            let bytes = remote.get(&ObjectPath::from(object.clone()))?;
            checked(bytes.len() as u64, crc32c(&bytes))?;
            let c = keel::recovery::Control::decode(&bytes, Path::new(&object))
                .map_err(|e| ArchiveError::Backup(Box::new(e)))?;
            if c.database_id != m.database_id {
                return Err(ArchiveError::WrongDatabase {
                    object,
                    expected: m.database_id,
                    found: c.database_id,
                });
            }
            local.write_new_synced(&dir.join(RESTORING_CONTROL), &bytes)?;
            // Its directory entry is durable before any other file is
            // created: after a power cut the directory holds it or holds
            // nothing of the restore, never relation files alone, which
            // an open would take for a database being created.
            local.sync_dir(dir)?;
        } else {
            // Streamed to the file a piece at a time, checked once whole:
            // until the control file is renamed into place the directory
            // is an unfinished restore, so unchecked bytes are never
            // opened.
            local.create_dir_all(&rel)?;
            let path: PathBuf = f.name.split('/').fold(dir.to_path_buf(), |p, c| p.join(c));
            let mut file = local.create_new(&path)?;
            let sum = remote.read_streamed(&ObjectPath::from(object.clone()), |piece| {
                file.append(piece)
            })?;
            checked(sum.size, sum.crc32c)?;
            file.sync_close()?;
        }
        total += f.size;
    }
    local.create_dir_all(&rel)?;
    local.sync_dir(&rel)?;
    local.sync_dir(dir)?;
    Ok(total)
}

/// Step 5: the log from the backup's start to `stop`.
pub(crate) fn write_log(
    remote: &Remote,
    m: &Manifest,
    chunks: &[PathChunk],
    stop: Lsn,
    dir: &Path,
    local: &Local,
) -> Result<(Lsn, u64)> {
    let wal_dir: PathBuf = dir.join(keel::datadir::layout::WAL_DIR);
    let mut import = keel::wal::import::LogImport::create(
        local.io().clone(),
        &wal_dir,
        m.database_id,
        m.segment_size,
        m.max_batch_bytes,
    )
    .map_err(|e| ArchiveError::Backup(Box::new(e.into())))?;
    // The open reads from the start LSN, which may lie in a segment's
    // tail before the first record archived after it.
    import.begin_at(m.start);
    let mut applied = 0;
    let mut end = m.start;
    let mut failure = None;
    walk(remote, chunks, m.database_id, m.start, |c, cut| {
        let limit = cut.map_or(stop, |cut| cut.min(stop));
        let mut first = None;
        let mut len = 0usize;
        for (h, _) in c.records() {
            if end_of(h) > limit {
                break;
            }
            let f = *first.get_or_insert(h.lsn);
            len = (end_of(h).0 - f.0) as usize;
        }
        if let Some(f) = first {
            if let Err(e) = import.push(f, &c.raw()[..len]) {
                failure = Some(e);
                return Ok(false);
            }
            end = Lsn(f.0 + len as u64);
        }
        applied += 1;
        Ok(end < stop)
    })?;
    if let Some(e) = failure {
        return Err(ArchiveError::Backup(Box::new(e.into())));
    }
    import
        .finish()
        .map_err(|e| ArchiveError::Backup(Box::new(e.into())))?;
    Ok((end, applied))
}
