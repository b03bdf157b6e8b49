//! A warm standby: a copy of the primary kept current from the archive,
//! redo only, until it is promoted to be the primary.
//!
//! ## Lifecycle
//!
//! ```text
//!   (absent or empty dir)
//!        │ Standby::open: marker, newest backup, log to the head
//!        v
//!   [Following] ──poll()──> [Following]      (append new chunks, apply_log)
//!        │ promote(): final poll, new timeline, fence, marker removed
//!        v
//!   [Promoted] ── Database::open (undo losers), archive the new timeline
//! ```
//!
//! ## The directory
//!
//! A standby directory is a data directory holding the marker file
//! [`keel::datadir::layout::STANDBY_FILE`], which `Database::open` refuses
//! (a standby is never opened for work: its undo would roll back
//! transactions that may still commit upstream, and its records would take
//! LSNs the primary's later log uses). The marker is text:
//!
//! ```text
//! keel-standby 1
//! timeline 1
//! id 89abcdef01234567
//! ```
//!
//! `timeline` is the timeline followed; `id` a random number naming this
//! standby in the fence its promotion writes ([`crate::fence`]).
//!
//! ## Setting up ([`Standby::open`] on an absent or empty directory)
//!
//! 1. Write the marker first, as `standby.new`, synced, renamed into place
//!    and the directory synced ([`Local::write_whole_synced`]): after a
//!    power cut it is whole or absent, and a directory holding only
//!    `standby.new` is still empty. From then on everything else in the
//!    directory was written by the setup, and an open for work is refused
//!    at every later step.
//! 2. Choose the newest usable backup on the timeline's path that ends at
//!    or before the archive's head (as a restore does,
//!    [`crate::backup_check`]), download its files (the control file as
//!    `control.restoring`), and lay down the log from its start to the head
//!    ([`keel::wal::import::LogImport`]), byte for byte.
//! 3. Rename the control file into place and sync the directory. **No
//!    recovery open**: the first poll's redo-only apply makes the pages
//!    consistent, and nothing is logged, so the standby's log stays the
//!    primary's byte for byte.
//!
//! A setup cut short (marker, no control file) is set up again: every
//! entry but the marker and `LOCK` was written by it from the archive, so
//! its files are removed first (its directories stay, emptied: the
//! engine's I/O layer removes files only).
//!
//! ## A poll ([`Standby::poll`])
//!
//! 1. Find the local log's end again ([`LogImport::resume`] from the
//!    control file's scan start): whatever a crash left past the last
//!    synced record is the archive's bytes or a torn copy of them, and is
//!    written again.
//! 2. List the timeline's path ([`Remote::timeline_path`], `path_chunks`);
//!    when the newest chunk ends at or before the local end (its header
//!    alone is read), nothing is new.
//! 3. Otherwise read the chunks from the one holding the end (`walk`:
//!    database id, timeline, CRCs, continuity), append every record at or
//!    past the end, sync.
//! 4. Apply ([`keel::standby::apply_log`]: redo only, pages flushed, a
//!    restartpoint when the log holds a newer checkpoint) when records
//!    were appended, and at the first poll of each process (a crash
//!    between an append and its apply leaves log to apply).
//!    After a restartpoint, the segments wholly before the control file's
//!    new scan start are removed (as a primary's checkpoint retires them):
//!    no recovery, resume or promotion reads them again, and the archive
//!    holds them. A crash before the removal leaves them for the next
//!    restartpoint.
//! 5. Read the followed timeline's fence: once another standby promoted
//!    it and this one could not follow the successor (below), the report
//!    says so (this standby follows a retired primary and cannot be
//!    promoted itself).
//!
//! ## Newer timelines
//!
//! Before step 2 a poll reads the archive's histories. A timeline newer
//! than the one followed whose history leads back to it, leaving it at
//! switch `S` at or after the local log's end `E`, holds everything this
//! standby has and continues it (a standby promoted, or the primary
//! restored, at `S`): the standby follows the newest such timeline that
//! has a chunk (a history alone is a promotion or a restore not finished,
//! which may never be: one run again starts the next timeline) from
//! then on, as PostgreSQL's `recovery_target_timeline = 'latest'` does.
//! Its marker is replaced to name it (written aside, synced, renamed over
//! the old one, the directory synced: a power cut leaves the old timeline
//! or the new one, and a poll on either reaches the same log), and the
//! path read in steps 2-3 is the new timeline's, which takes the followed
//! one's log only up to `S`. A newer timeline branched before `E` (a
//! restore to an earlier point) is one this standby cannot follow: its
//! log past `S` is not that timeline's. The poll goes on with the
//! timeline it follows and its report names the one it cannot follow (set
//! a new standby up there to follow it). No timeline is followed while
//! the followed one's fence names this standby (its own promotion, cut
//! short, which `keel promote` finishes), nor by a promotion's final poll.
//! While that fence names this standby, a poll reads the followed
//! timeline only up to the fence's switch: an upload the old primary
//! began before the fence may land past it ([`crate::fence`]), and those
//! records are not the new timeline's, so the promotion run again
//! switches where its fence says.
//!
//! Every step is idempotent, so a SIGKILL or a power cut anywhere leaves a
//! standby that the next poll brings to the same state.
//!
//! ## Crash safety
//!
//! Every local read and write of the standby's directory goes through the
//! engine's I/O layer ([`crate::local::Local`]; [`Standby::open_with_io`]
//! and [`finish_promotion_with_io`] take the simulator in tests), and each
//! write is synced, with its directory entry, before the next step relies
//! on it. The one exception is the marker's lock ([`Standby`]), an
//! advisory lock taken with `std::fs` on the real file system only: the
//! I/O layer has no file locks. `tests/standby_crash.rs` cuts a setup, a
//! poll and a promotion with a power cut at each operation: the directory
//! left is nothing of the standby, a standby that an open refuses and the
//! same command run again finishes, or a promoted database whose marker is
//! gone and whose timeline file names the fenced successor; never a
//! directory an open takes for work before the marker is removed.
//!
//! ## Promotion ([`Standby::promote`])
//!
//! 1. A final poll; its end `E` is the switch LSN.
//! 2. A new timeline `L` whose history object names the followed timeline
//!    `T` as parent and `E` as switch (restore.rs's `start_timeline`).
//! 3. The fence of `T` naming `L` (create-only, [`crate::fence`]): the old
//!    primary's archiver stops; another standby's earlier promotion of `T`
//!    makes this one fail here, with its directory unchanged.
//! 4. The timeline file ([`crate::restore::TIMELINE_FILE`], `timeline L`,
//!    `from E`), whole or absent after a power cut (written aside, synced,
//!    renamed into place, the directory synced).
//! 5. Only then the marker is removed (and the directory synced): a crash
//!    before leaves a standby whose next promotion finds its own fence
//!    (the marker's id) and timeline file and goes on from step 5.
//! 6. `Database::open` with the log held (redo from the restartpoint, undo
//!    of the losers, the end-of-recovery checkpoint), then an archiver on
//!    `L` from `E` uploads the new timeline's first log, as a restore that
//!    starts a timeline does (without compaction: a new timeline has
//!    nothing to compact, and the promotion's requests stay its own). An archiver started on the directory later
//!    archives on `L` ([`crate::restore::archiver_timeline`]). A
//!    promotion run again on a directory whose marker is already gone but
//!    whose timeline file names a timeline with no chunk does this step
//!    again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel::datadir::layout::{CONTROL_FILE, LOCK_FILE, STANDBY_FILE, WAL_DIR};
use keel::types::Lsn;
use keel::wal::import::LogImport;
use keel::{Config, Database};

use crate::archiver::{Archiver, ArchiverOptions};
use crate::backup::Manifest;
use crate::backup_check::{backup_folder, check_backup, is_damage};
use crate::chunk::{self, CHUNK_HEADER_SIZE};
use crate::config::ArchiveTarget;
use crate::error::{ArchiveError, Result};
use crate::fence::Fence;
use crate::local::{Local, staged_path};
use crate::restore::{
    History, PathChunk, Recorded, RestoreTarget, TIMELINE_FILE, download_files, end_of,
    path_chunks, read_timeline_file_with, start_timeline, walk, write_log, write_timeline_file,
};
use crate::store::Remote;

/// The first word of the standby marker.
pub const STANDBY_MAGIC: &str = "keel-standby";
/// Standby marker format version.
pub const STANDBY_VERSION: u32 = 1;

/// What the marker file says (module essay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The timeline followed.
    pub timeline: u32,
    /// This standby's id.
    pub id: u64,
}

impl Marker {
    pub(crate) fn encode(&self) -> String {
        format!(
            "{STANDBY_MAGIC} {STANDBY_VERSION}\ntimeline {}\nid {:016x}\n",
            self.timeline, self.id
        )
    }

    pub(crate) fn decode(path: &Path, text: &str) -> Result<Marker> {
        let bad = || {
            ArchiveError::Standby(format!(
                "{} does not read `{STANDBY_MAGIC} {STANDBY_VERSION}`, `timeline <n>`, \
                 `id <16 hex digits>`: {text:?}",
                path.display()
            ))
        };
        let mut lines = text.lines();
        if lines.next() != Some(&format!("{STANDBY_MAGIC} {STANDBY_VERSION}")) {
            return Err(bad());
        }
        let timeline = lines
            .next()
            .and_then(|l| l.strip_prefix("timeline "))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|&n| n != 0)
            .ok_or_else(bad)?;
        let id = lines
            .next()
            .and_then(|l| l.strip_prefix("id "))
            .filter(|h| h.len() == 16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(bad)?;
        match lines.next() {
            None => Ok(Marker { timeline, id }),
            Some(_) => Err(bad()),
        }
    }
}

/// The marker of the standby at `dir`, if it is one.
pub fn read_marker(dir: &Path) -> Result<Option<Marker>> {
    let path = dir.join(STANDBY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Marker::decode(&path, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ArchiveError::Standby(format!("{}: {e}", path.display()))),
    }
}

/// The largest marker read (three short lines).
const MAX_MARKER: u64 = 4096;

/// [`read_marker`] through `local` (the simulator in crash tests).
fn read_marker_with(local: &Local, dir: &Path) -> Result<Option<Marker>> {
    let path = dir.join(STANDBY_FILE);
    match local.read_small(&path, MAX_MARKER)? {
        Some(bytes) => Marker::decode(&path, &String::from_utf8_lossy(&bytes)).map(Some),
        None => Ok(None),
    }
}

/// What setting up a standby did.
#[derive(Clone, Debug)]
pub struct SetupReport {
    /// The backup laid down.
    pub backup: Manifest,
    /// Where the log laid down ends.
    pub log_end: Lsn,
    /// Chunks read.
    pub chunks: u64,
    /// Bytes of files downloaded.
    pub file_bytes: u64,
    /// Newer backups passed over as damaged (folder, why).
    pub passed_over: Vec<(String, String)>,
    /// Whether an earlier setup cut short was cleared first.
    pub cleared_unfinished: bool,
}

/// What one poll did.
#[derive(Clone, Debug)]
pub struct PollReport {
    /// The local log's end before the poll.
    pub from: Lsn,
    /// Its end after.
    pub to: Lsn,
    /// Chunks read.
    pub chunks: u64,
    /// The redo-only apply, when one ran.
    pub apply: Option<keel::standby::ApplyReport>,
    /// Segments removed after a restartpoint (wholly before the new scan
    /// start).
    pub retired: usize,
    /// The timeline the followed one was promoted to, when its fence
    /// exists ([`crate::fence`]) and this standby could not follow it:
    /// another standby took over, and this one follows a retired primary
    /// (set a new standby up on the successor).
    pub promoted_to: Option<u32>,
    /// The newer timeline this poll began following, and the LSN where it
    /// branched from the one followed before (module essay, "Newer
    /// timelines").
    pub switched_to: Option<(u32, Lsn)>,
    /// The newest timeline branched from the followed one before this
    /// standby's log end, which it cannot follow, and its switch LSN.
    pub cannot_follow: Option<(u32, Lsn)>,
}

impl std::fmt::Display for PollReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((l, at)) = self.switched_to {
            write!(f, "now following timeline {l:08X} (branched at {at}); ")?;
        }
        match self.to > self.from {
            true => write!(
                f,
                "log {} → {} (+{} bytes, {} chunks)",
                self.from,
                self.to,
                self.to.0 - self.from.0,
                self.chunks
            )?,
            false => write!(f, "log at {}, nothing new", self.to)?,
        }
        if let Some(a) = &self.apply {
            write!(f, "; redo {} records", a.recovery.records_redone)?;
            if let Some(r) = a.restartpoint {
                write!(f, "; restartpoint at checkpoint {r}")?;
            }
            if self.retired > 0 {
                write!(f, "; {} old segments removed", self.retired)?;
            }
        }
        if let Some((l, at)) = self.cannot_follow {
            write!(
                f,
                "; timeline {l:08X} branched at LSN {at}, before this standby's log end: it \
                 cannot follow it (set a new standby up on timeline {l:08X} to follow it)"
            )?;
        }
        if let Some(l) = self.promoted_to {
            write!(
                f,
                "; the timeline followed was promoted to timeline {l:08X}: this standby follows \
                 a retired primary"
            )?;
        }
        Ok(())
    }
}

/// What a promotion did.
#[derive(Clone, Debug)]
pub struct PromoteReport {
    /// The final catch-up (`None` when the marker was already gone: the
    /// promotion finished one cut short after step 5).
    pub last_poll: Option<PollReport>,
    /// The timeline followed.
    pub parent: u32,
    /// The new timeline.
    pub timeline: u32,
    /// Where it branched (the standby's log end).
    pub switch: Lsn,
    /// The history object written (`None` when an earlier try wrote it).
    pub history: Option<History>,
    /// What the opening recovery did (losers undone).
    pub recovery: keel::RecoveryReport,
    /// How far the new timeline was archived.
    pub archived: Lsn,
}

/// An open standby directory (module essay). It holds a lock on its marker
/// file: one process follows a standby at a time.
#[derive(Debug)]
pub struct Standby {
    dir: PathBuf,
    target: ArchiveTarget,
    remote: Remote,
    marker: Marker,
    config: Config,
    op_timeout: Duration,
    database_id: u64,
    applied: bool,
    local: Local,
    _lock: Option<std::fs::File>,
}

fn standby_err(e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Standby(e.to_string())
}

fn engine(e: impl Into<keel::Error>) -> ArchiveError {
    ArchiveError::Backup(Box::new(e.into()))
}

/// Locks the marker file (one process follows a standby at a time): an
/// advisory lock on the open file, which lasts as long as the returned
/// handle. It is taken with `std::fs` because the engine's I/O layer has no
/// file locks, and only on the real file system: the simulator's files are
/// not there, and a test on it runs one standby process at a time (the
/// engine's `LOCK` is taken the same way, and a lock that looks held is
/// tried again for a moment: [`keel::datadir::try_lock_waiting`]).
fn lock_marker(local: &Local, dir: &Path) -> Result<Option<std::fs::File>> {
    if local.is_simulated() {
        return Ok(None);
    }
    let path = dir.join(STANDBY_FILE);
    let file = std::fs::File::open(&path)
        .map_err(|e| standby_err(format!("cannot open {}: {e}", path.display())))?;
    match keel::datadir::try_lock_waiting(&file) {
        Ok(true) => Ok(Some(file)),
        Ok(false) => Err(ArchiveError::Standby(format!(
            "{} is in use by another standby process (its {STANDBY_FILE} file is locked)",
            dir.display()
        ))),
        Err(e) => Err(standby_err(format!("cannot lock {}: {e}", path.display()))),
    }
}

fn read_control(local: &Local, dir: &Path) -> Result<keel::recovery::Control> {
    keel::recovery::control::read_control(local.io(), dir)
        .map_err(engine)?
        .ok_or_else(|| standby_err(format!("{} has no {CONTROL_FILE} file", dir.display())))
}

impl Standby {
    /// Opens the standby at `dir`, setting it up first when `dir` is absent
    /// or empty (module essay). `timeline`: the one to follow (`None`: a
    /// new standby follows timeline 1, an existing one its own); an
    /// existing standby is refused unless it follows that timeline or one
    /// descended from it (module essay, "Newer timelines"). Each request to
    /// the store may take up to `op_timeout`.
    pub fn open(
        target: &ArchiveTarget,
        dir: &Path,
        timeline: Option<u32>,
        config: Config,
        op_timeout: Duration,
    ) -> Result<(Standby, Option<SetupReport>)> {
        let local = Local::for_config(&config.io)?;
        Standby::open_with_io(target, dir, timeline, config, op_timeout, &local)
    }

    /// [`Standby::open`] with the directory read and written through
    /// `local` (the simulator in crash tests), and so every later poll and
    /// the promotion.
    pub fn open_with_io(
        target: &ArchiveTarget,
        dir: &Path,
        timeline: Option<u32>,
        config: Config,
        op_timeout: Duration,
        local: &Local,
    ) -> Result<(Standby, Option<SetupReport>)> {
        let local = local.clone().for_standby();
        let remote = Remote::open(target, op_timeout)?;
        let existing = read_marker_with(&local, dir)?;
        // A marker being written (setup step 1 cut short) is all there is
        // of a setup that did not begin: the directory counts as empty.
        let staged = staged_path(Path::new(STANDBY_FILE));
        let empty = local
            .list(dir)?
            .is_none_or(|names| names.iter().all(|n| Path::new(n) == staged));
        let marker = match existing {
            Some(m) => {
                // The timeline asked for, or one it moved on from
                // ("Newer timelines"): one on the followed one's path.
                if let Some(t) = timeline.filter(|&t| t != m.timeline)
                    && !remote
                        .timeline_path(m.timeline)?
                        .iter()
                        .any(|&(p, _, _)| p == t)
                {
                    return Err(standby_err(format!(
                        "{} follows timeline {}, which does not descend from timeline {t}",
                        dir.display(),
                        m.timeline,
                    )));
                }
                m
            }
            None if empty => {
                // Created with its entry synced in its parent, as the
                // engine creates a data directory; the marker is there
                // whole or not at all.
                local.create_dir_all(dir)?;
                let m = Marker {
                    timeline: timeline.unwrap_or(1),
                    id: keel::types::random_id(),
                };
                local.write_whole_synced(&dir.join(STANDBY_FILE), m.encode().as_bytes())?;
                m
            }
            None => {
                return Err(standby_err(format!(
                    "{} is neither empty nor a standby (no {STANDBY_FILE} file): a standby is \
                     set up only in a new or empty directory",
                    dir.display()
                )));
            }
        };
        let lock = lock_marker(&local, dir)?;
        let mut setup = None;
        if !local.exists(&dir.join(CONTROL_FILE))? {
            let cleared = clear_unfinished_setup(&local, dir)?;
            let mut report = set_up(&remote, dir, marker.timeline, &local)?;
            report.cleared_unfinished = cleared;
            setup = Some(report);
        }
        let database_id = read_control(&local, dir)?.database_id;
        let standby = Standby {
            dir: dir.to_path_buf(),
            target: target.clone(),
            remote,
            marker,
            config,
            op_timeout,
            database_id,
            applied: false,
            local,
            _lock: lock,
        };
        Ok((standby, setup))
    }

    /// The timeline followed.
    pub fn timeline(&self) -> u32 {
        self.marker.timeline
    }

    /// Fetches the chunks past the local log's end, appends them and
    /// applies them (module essay, "A poll").
    pub fn poll(&mut self) -> Result<PollReport> {
        self.poll_following(true)
    }

    /// [`poll`](Self::poll), following a newer timeline when
    /// `follow_newer` (module essay, "Newer timelines").
    fn poll_following(&mut self, follow_newer: bool) -> Result<PollReport> {
        let mut report = self.fetch_following(follow_newer)?;
        if report.to > report.from || !self.applied {
            let apply = keel::standby::apply_log_with_io(
                &self.dir,
                self.config.clone(),
                self.local.io().clone(),
            )
            .map_err(engine)?;
            self.applied = true;
            if apply.restartpoint.is_some() {
                report.retired = self.retire_before_restartpoint()?;
            }
            report.apply = Some(apply);
        }
        Ok(report)
    }

    /// Step 4's retirement: removes the segments wholly before the control
    /// file's scan start (module essay). Returns how many.
    fn retire_before_restartpoint(&self) -> Result<usize> {
        let scan_start = read_control(&self.local, &self.dir)?.scan_start();
        let sdir = keel::wal::segment::SegmentDir::existing(
            self.local.io().clone(),
            &self.dir.join(WAL_DIR),
        )
        .map_err(engine)?;
        let present = sdir.list().map_err(engine)?;
        let Some(size) = sdir
            .newest_header(&present)
            .map(|h| u64::from(h.segment_size))
        else {
            return Ok(0);
        };
        let keep_from = scan_start.0 / size;
        let old: Vec<u64> = present.into_iter().filter(|&n| n < keep_from).collect();
        for &n in &old {
            sdir.remove(n).map_err(engine)?;
        }
        if !old.is_empty() {
            sdir.sync().map_err(engine)?;
        }
        Ok(old.len())
    }

    /// A poll's steps 1–3 alone: the log caught up with the archive and
    /// synced, not applied (the next [`poll`](Self::poll) of any process
    /// applies it).
    pub fn fetch(&mut self) -> Result<PollReport> {
        self.fetch_following(true)
    }

    fn fetch_following(&mut self, follow_newer: bool) -> Result<PollReport> {
        let control = read_control(&self.local, &self.dir)?;
        let mut import = LogImport::resume(
            self.local.io().clone(),
            &self.dir.join(WAL_DIR),
            self.database_id,
            control.scan_start(),
        )
        .map_err(engine)?;
        let from = import.end().unwrap_or(control.scan_start());
        // A fence of the followed timeline naming this standby is its own
        // promotion's, begun and cut short: it is finished at the fence's
        // switch, never left for the timeline it started, and the log of
        // the followed timeline is read only up to that switch (an upload
        // the old primary began before the fence may land past it,
        // `crate::fence`; its records are not the new timeline's).
        let own_switch = self
            .remote
            .read_fence(self.marker.timeline)?
            .filter(|f| f.standby_id == self.marker.id)
            .map(|f| f.switch);
        let (follow, cannot_follow) = match follow_newer && own_switch.is_none() {
            true => self.newer_timeline(from)?,
            false => (None, None),
        };
        if let Some((l, _)) = follow {
            self.switch_timeline(l)?;
        }
        let mut path = self.remote.timeline_path(self.marker.timeline)?;
        if let Some(switch) = own_switch
            && let Some(last) = path.last_mut()
        {
            last.2 = Some(last.2.map_or(switch, |to| to.min(switch)));
        }
        let chunks = path_chunks(&self.remote, &path)?;
        let mut read = 0;
        if self.has_new(&chunks, from)? {
            let mut failure = None;
            walk(&self.remote, &chunks, self.database_id, from, |c, cut| {
                read += 1;
                let Some(end) = import.end() else {
                    return Ok(false);
                };
                // The raw bytes begin at the first record, which may lie
                // past the chunk's start (a new segment's first record).
                let base = c
                    .records()
                    .next()
                    .map_or(c.header.start.0, |(h, _)| h.lsn.0);
                let mut first = None;
                let mut last = end;
                for (h, _) in c.records() {
                    let e = end_of(h);
                    if cut.is_some_and(|cut| e > cut) {
                        break;
                    }
                    if h.lsn >= end {
                        first.get_or_insert(h.lsn);
                        last = e;
                    }
                }
                if let Some(f) = first {
                    let Some(bytes) = c.raw().get((f.0 - base) as usize..(last.0 - base) as usize)
                    else {
                        return Err(ArchiveError::Corrupt {
                            object: c.header.start.to_string(),
                            place: crate::error::Place::Object(0),
                            reason: format!("records {f}..{last} are not in the chunk's body"),
                        });
                    };
                    if let Err(e) = import.push(f, bytes) {
                        failure = Some(e);
                        return Ok(false);
                    }
                }
                Ok(true)
            })?;
            if let Some(e) = failure {
                return Err(engine(e));
            }
        }
        let to = import.finish().map_err(engine)?.unwrap_or(from);
        if to > from {
            self.applied = false;
        }
        let promoted_to = self
            .remote
            .read_fence(self.marker.timeline)?
            .map(|f| f.successor);
        Ok(PollReport {
            from,
            to,
            chunks: read,
            apply: None,
            retired: 0,
            promoted_to,
            switched_to: follow,
            cannot_follow,
        })
    }

    /// The newest timeline branched (directly or through others) from the
    /// one followed at or after `end`, which this standby can follow, with
    /// the LSN where its history leaves the followed one; and the newest
    /// one branched before `end`, which it cannot (module essay, "Newer
    /// timelines").
    #[allow(clippy::type_complexity)]
    fn newer_timeline(&self, end: Lsn) -> Result<(Option<(u32, Lsn)>, Option<(u32, Lsn)>)> {
        let followed = self.marker.timeline;
        let histories = self.remote.list_histories()?;
        // Where the path of `t` leaves the followed timeline, if it does.
        let leaves = |t: u32| -> Option<Lsn> {
            let mut at = t;
            let mut switch = None;
            // Each step moves to a parent; a cycle among damaged histories
            // ends after one step per history.
            for _ in 0..=histories.len() {
                if at == followed {
                    return switch;
                }
                let h = histories.iter().find(|h| h.timeline == at)?;
                switch = Some(h.switch);
                at = h.parent;
            }
            None
        };
        let mut newer: Vec<(u32, Lsn)> = histories
            .iter()
            .filter(|h| h.timeline > followed)
            .filter_map(|h| Some((h.timeline, leaves(h.timeline)?)))
            .collect();
        newer.sort_unstable_by_key(|&(t, _)| std::cmp::Reverse(t));
        let mut cannot = None;
        for (t, switch) in newer {
            // A history whose timeline has no chunk yet is a promotion or
            // a restore not finished (its first log is archived before it
            // returns; one cut short and run again starts the next
            // timeline): never followed, so no standby is left on a
            // timeline nobody writes.
            if self.remote.list_chunks(t)?.is_empty() {
                continue;
            }
            match switch >= end {
                true => return Ok((Some((t, switch)), cannot)),
                // Reported only when newer than the one followed.
                false => {
                    cannot.get_or_insert((t, switch));
                }
            }
        }
        Ok((None, cannot))
    }

    /// Follows timeline `timeline` from now on: the marker is replaced
    /// (whole or not at all after a power cut) and locked again.
    fn switch_timeline(&mut self, timeline: u32) -> Result<()> {
        let marker = Marker {
            timeline,
            id: self.marker.id,
        };
        self.local
            .write_whole_synced(&self.dir.join(STANDBY_FILE), marker.encode().as_bytes())?;
        self.marker = marker;
        // The lock held is on the file replaced.
        self._lock = None;
        self._lock = lock_marker(&self.local, &self.dir)?;
        Ok(())
    }

    /// Whether the path's newest chunk ends past `end` (its header alone is
    /// read when it starts before `end`).
    fn has_new(&self, chunks: &[PathChunk], end: Lsn) -> Result<bool> {
        let Some(last) = chunks.last() else {
            return Ok(false);
        };
        if last.object.start >= end {
            return Ok(true);
        }
        let name = last.object.path.to_string();
        let head = match self
            .remote
            .get_prefix(&last.object.path, CHUNK_HEADER_SIZE as u64)
        {
            Ok(head) => head,
            // Compacted away since the listing (crate::read): the walk
            // reads on from the compacted object and finds what is new.
            Err(e) if crate::read::is_vanished_chunk(&e) => return Ok(true),
            Err(e) => return Err(e),
        };
        let h = chunk::decode_header(&name, &head, last.object.size)?;
        if h.database_id != self.database_id {
            return Err(ArchiveError::WrongDatabase {
                object: name,
                expected: self.database_id,
                found: h.database_id,
            });
        }
        Ok(last.to.map_or(h.end, |to| to.min(h.end)) > end)
    }

    /// Promotes the standby to a primary on a new timeline (module essay,
    /// "Promotion").
    pub fn promote(mut self) -> Result<PromoteReport> {
        // The final poll follows no newer timeline: one branched from the
        // followed timeline is another promotion's or a restore's (the
        // fence refuses the first), or this promotion's own from a try cut
        // short; a promotion branches from the timeline it followed.
        let last_poll = self.poll_following(false)?;
        let switch = last_poll.to;
        let parent = self.marker.timeline;
        let (timeline, history) = self.claim_timeline(switch)?;
        let recorded = Recorded {
            timeline,
            from: switch,
        };
        match read_timeline_file_with(&self.local, &self.dir)? {
            Some(r) if r == recorded => {}
            Some(r) => {
                return Err(standby_err(format!(
                    "{} already names timeline {} from LSN {}, not timeline {timeline} from LSN \
                     {switch}: it belongs to another promotion",
                    self.dir.join(TIMELINE_FILE).display(),
                    r.timeline,
                    r.from
                )));
            }
            // Whole or absent after a power cut, its directory synced.
            None => write_timeline_file(&self.local, &self.dir, &recorded)?,
        }
        self.local.remove(&self.dir.join(STANDBY_FILE))?;
        self.local.sync_dir(&self.dir)?;
        let Standby {
            dir,
            target,
            config,
            op_timeout,
            local,
            _lock,
            ..
        } = self;
        drop(_lock);
        let (recovery, archived) =
            open_and_archive(&dir, &target, config, op_timeout, &local, recorded)?;
        Ok(PromoteReport {
            last_poll: Some(last_poll),
            parent,
            timeline,
            switch,
            history,
            recovery,
            archived,
        })
    }

    /// Steps 2 and 3 of a promotion: the new timeline and the fence of
    /// the followed one, or this standby's own from an earlier try.
    fn claim_timeline(&self, switch: Lsn) -> Result<(u32, Option<History>)> {
        let parent = self.marker.timeline;
        let own = |f: &Fence| -> Result<u32> {
            match f.standby_id == self.marker.id && f.switch == switch {
                true => Ok(f.successor),
                false => Err(standby_err(format!(
                    "timeline {parent} was already promoted to timeline {} at LSN {} by another \
                     standby ({}): two primaries cannot follow one; set this standby up again \
                     on timeline {}",
                    f.successor,
                    f.switch,
                    self.remote.fence_path(parent),
                    f.successor
                ))),
            }
        };
        if let Some(f) = self.remote.read_fence(parent)? {
            return Ok((own(&f)?, None));
        }
        let history = start_timeline(
            &self.remote,
            self.database_id,
            parent,
            switch,
            RestoreTarget::End,
        )?;
        let fence = Fence {
            database_id: self.database_id,
            timeline: parent,
            successor: history.timeline,
            switch,
            standby_id: self.marker.id,
            created_us: crate::restore::now_us(),
        };
        match self.remote.put_fence(&fence)? {
            None => Ok((history.timeline, Some(history))),
            Some(f) => Ok((own(&f)?, None)),
        }
    }
}

/// Finishes a promotion whose marker is already removed (module essay,
/// step 6, run again): the directory must hold a timeline file.
pub fn finish_promotion(
    target: &ArchiveTarget,
    dir: &Path,
    config: Config,
    op_timeout: Duration,
) -> Result<PromoteReport> {
    let local = Local::for_config(&config.io)?;
    finish_promotion_with_io(target, dir, config, op_timeout, &local)
}

/// [`finish_promotion`] with the directory read and written through
/// `local` (the simulator in crash tests).
pub fn finish_promotion_with_io(
    target: &ArchiveTarget,
    dir: &Path,
    config: Config,
    op_timeout: Duration,
    local: &Local,
) -> Result<PromoteReport> {
    let local = local.clone().for_standby();
    let Some(recorded) = read_timeline_file_with(&local, dir)? else {
        return Err(standby_err(format!(
            "{} is not a standby (no {STANDBY_FILE} file) nor a promoted one (no {TIMELINE_FILE})",
            dir.display()
        )));
    };
    let (timeline, switch) = (recorded.timeline, recorded.from);
    let remote = Remote::open(target, op_timeout)?;
    if !remote.list_chunks(timeline)?.is_empty() {
        return Err(standby_err(format!(
            "{} was promoted to timeline {timeline}, which is already archived: open it as a \
             database",
            dir.display()
        )));
    }
    let parent = remote
        .list_histories()?
        .into_iter()
        .find(|h| h.timeline == timeline)
        .map_or(1, |h| h.parent);
    let (recovery, archived) = open_and_archive(dir, target, config, op_timeout, &local, recorded)?;
    Ok(PromoteReport {
        last_poll: None,
        parent,
        timeline,
        switch,
        history: None,
        recovery,
        archived,
    })
}

/// Step 6: open (undo, end-of-recovery checkpoint) with the log held, and
/// archive the new timeline `recorded` names from its switch.
fn open_and_archive(
    dir: &Path,
    target: &ArchiveTarget,
    config: Config,
    op_timeout: Duration,
    local: &Local,
    recorded: Recorded,
) -> Result<(keel::RecoveryReport, Lsn)> {
    let mut config = config;
    config.wal.hold_at_open = true;
    // The end-of-recovery checkpoint is in the log before the archiver
    // waits for its durable end, so the new timeline's first chunk holds
    // the undo and the checkpoint.
    config.recovery_checkpoint = keel::RecoveryCheckpoint::BeforeOpenReturns;
    let db = Arc::new(Database::open_with_io(dir, config, local.io().clone()).map_err(engine)?);
    let recovery = db.recovery_report().clone();
    let archiver = Archiver::start(
        db.clone(),
        target,
        ArchiverOptions {
            timeline: recorded.timeline,
            start_lsn: Some(recorded.from),
            op_timeout,
            // A new timeline has nothing to compact; an archiver started
            // on the promoted database later compacts as configured. (So
            // a promotion's requests to the store are its own thread's and
            // the archiver's, in one order.)
            compact: false,
            // A promotion waits for its first log one request's limit, and
            // no longer when the store is down: a later `keel promote`
            // (or any archiver) archives it.
            stop_timeout: op_timeout,
            ..ArchiverOptions::default()
        },
    )?;
    // Stopping flushes the durable log at once (no `max_delay` wait).
    let durable = db.durable_lsn();
    let archived = archiver.stop()?;
    if archived < durable {
        return Err(standby_err(format!(
            "the promoted database's log is archived to LSN {archived}, not to its durable end \
             {durable}: run `keel promote` again once the store answers"
        )));
    }
    let db = Arc::try_unwrap(db).map_err(|_| {
        ArchiveError::Standby("the promoted database is still in use by the archiver".into())
    })?;
    db.close().map_err(engine)?;
    Ok((recovery, archived))
}

/// A setup cut short (marker, no control file): everything but the marker
/// and `LOCK` was written by it from the archive (module essay), and is
/// removed, every directory it touched synced. The directories stay,
/// emptied (the engine's I/O layer removes files only), and the setup
/// fills them again. Returns whether there was anything.
fn clear_unfinished_setup(local: &Local, dir: &Path) -> Result<bool> {
    fn clear(local: &Local, dir: &Path, top: bool) -> Result<bool> {
        let mut cleared = false;
        for (name, is_dir) in local.entries(dir)?.unwrap_or_default() {
            if top && (name == STANDBY_FILE || name == LOCK_FILE) {
                continue;
            }
            let path = dir.join(&name);
            match is_dir {
                true => cleared |= clear(local, &path, false)?,
                false => {
                    local.remove(&path)?;
                    cleared = true;
                }
            }
        }
        if cleared {
            local.sync_dir(dir)?;
        }
        Ok(cleared)
    }
    clear(local, dir, true)
}

/// Setup steps 2 and 3 (module essay).
fn set_up(remote: &Remote, dir: &Path, timeline: u32, files: &Local) -> Result<SetupReport> {
    let path = remote.timeline_path(timeline)?;
    let backups = crate::restore::path_backups(remote, &path)?;
    let Some(oldest) = backups.first().map(|(_, m)| m.clone()) else {
        return Err(standby_err(format!(
            "no complete backup (one with a manifest) on timeline {timeline}'s history under {}",
            remote.prefix()
        )));
    };
    let chunks = path_chunks(remote, &path)?;
    let head = crate::restore::path_head(remote, &chunks, oldest.database_id)?;
    let mut passed_over = Vec::new();
    let mut chosen = None;
    for (entry, _) in backups.iter().rev().filter(|(_, m)| m.end <= head) {
        match check_backup(remote, entry) {
            Ok(m) => {
                chosen = Some((entry.clone(), m));
                break;
            }
            Err(e) if is_damage(&e) => passed_over.push((backup_folder(entry), e.to_string())),
            Err(e) => return Err(e),
        }
    }
    let Some((entry, manifest)) = chosen else {
        return Err(standby_err(format!(
            "no usable backup on timeline {timeline}'s history ends at or before the archive's \
             head {head}{}",
            passed_over
                .iter()
                .map(|(f, why)| format!("; {f}: {why}"))
                .collect::<String>()
        )));
    };
    let file_bytes = download_files(remote, &entry, &manifest, dir, files)?;
    let (log_end, chunks_read) = write_log(remote, &manifest, &chunks, head, dir, files)?;
    files.rename(
        &dir.join(crate::backup::RESTORING_CONTROL),
        &dir.join(CONTROL_FILE),
    )?;
    files.sync_dir(dir)?;
    Ok(SetupReport {
        backup: manifest,
        log_end,
        chunks: chunks_read,
        file_bytes,
        passed_over,
        cleared_unfinished: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_round_trips_and_a_bad_one_is_refused_naming_the_file() {
        let m = Marker {
            timeline: 3,
            id: 0x0123_4567_89ab_cdef,
        };
        let p = Path::new("/d/standby");
        assert_eq!(Marker::decode(p, &m.encode()).unwrap(), m);
        for bad in [
            "",
            "keel-standby 2\ntimeline 1\nid 0123456789abcdef\n",
            "keel-standby 1\ntimeline 0\nid 0123456789abcdef\n",
            "keel-standby 1\ntimeline 1\nid 0123\n",
            "keel-standby 1\ntimeline 1\nid 0123456789abcdef\nmore\n",
        ] {
            let e = Marker::decode(p, bad).unwrap_err().to_string();
            assert!(e.contains("/d/standby"), "{e}");
        }
    }
}
