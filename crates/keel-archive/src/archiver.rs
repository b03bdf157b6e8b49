//! The continuous archiver: a background thread that ships the durable log
//! to the archive in chunks, and holds the log until it has.
//!
//! ## Protocol
//!
//! 1. **Start** ([`Archiver::start`], on the caller's thread, so a bad
//!    setting or a foreign archive fails at once). A database restored
//!    onto a timeline archives on it ([`crate::restore::archiver_timeline`]:
//!    the option's default 1 means that one, another number is refused).
//!    List the timeline's chunks. None: archiving begins at
//!    `ArchiverOptions::start_lsn`, else where the restore left the log,
//!    else at the log's durable end. Otherwise it continues at the newest chunk's
//!    end, after checking that chunk's header: another database's id, or an
//!    end past this log's durable end (another history), is refused. Then
//!    hold the log from there ([`Database::hold_log_from`]) and check that
//!    it can still be read.
//! 2. **Read** when `max_chunk_bytes` of new log are durable, or when log
//!    has been durable and unread for `max_delay`, or on stop. Records are
//!    read whole with [`Database::log_reader`] (which checks each record's
//!    CRC and LSN) and appended to the open chunk, byte for byte as the log
//!    holds them. The reader loads whole segments, so the archiver reads
//!    in these batches rather than after every commit.
//! 3. **Close a chunk** when it would pass `max_chunk_bytes`, when the next
//!    record starts a new segment (chunks never span one), when its oldest
//!    record was seen durable `max_delay` ago or more (a commit, or any
//!    other record: a checkpoint's records matter to a restore too, and
//!    `wait_archived(durable_lsn)` must finish), and on stop.
//! 4. **Upload** create-only ([`Remote::put_create`]), after reading the
//!    timeline's fence ([`crate::fence`]): once a standby of this timeline
//!    was promoted, the archiver stops with `ArchiveError::Fenced` (it also
//!    refuses to start). A transient failure
//!    (unreachable, timed out) is retried with backoff, forever while
//!    running and until `stop_timeout` after a stop; the chunk's bytes do
//!    not change between tries, so a try that landed but was reported as
//!    failed is recognised by the next one. Any other failure (another
//!    writer on the prefix, a refused request) stops the archiver.
//! 5. **Landed**: the archive reaches the chunk's end; the log hold moves
//!    there, so checkpoints may retire what is archived and nothing else
//!    (the retention interlock); waiters are woken.
//!
//! ```text
//!            start()                       stop()
//!   [Starting] ──────> [Running] ──────────────────> [Draining] ──> [Stopped]
//!                        │  ^  upload ok / retry         │ flushed, or
//!                        │  └───────────┘                │ stop_timeout passed
//!                        │ fatal error                   v
//!                        └─────────────────────────> [Failed]
//! ```
//!
//! A failed archiver keeps its hold: the log stays on disk past
//! checkpoints, so nothing is lost while an operator looks; `status()`
//! reports the error. The hold lives in the open [`Database`] only: after a
//! restart the log is held again once an archiver starts, and a segment
//! retired before that (a checkpoint at open) makes the next start fail
//! with an error naming the LSN it cannot read, never a silent gap.
//!
//! One archiver per database: the hold is a single value.
//!
//! ## When the archive is down ([`ArchivePolicy`])
//!
//! Retirement waits for the archive (the hold above), so an archive that
//! stays down makes the log grow. The user chooses what happens then;
//! nothing is lost silently either way:
//!
//! - [`ArchivePolicy::KeepGoing`] (the default): commits go on, the hold
//!   stays (no unarchived segment is retired), and `status()` and the
//!   status file say `broken`, with the last error and the lag, until an
//!   upload lands again. The disk is what runs out.
//! - [`ArchivePolicy::Stall`]: the archiver sets the engine's limit on
//!   unarchived log ([`Database::limit_unarchived`], `keel::wal::gate`):
//!   once more than `max_unarchived_bytes` of durable log lie past the
//!   hold, each user commit waits (keeping its locks) before its commit
//!   record is appended; it goes on as soon as an upload lands (moving
//!   the hold wakes it), and after `timeout` it is rolled back and fails
//!   with `DbError::CommitStalled` (never acknowledged, invariant 6).
//!   Stopping or dropping the archiver lifts the limit (waiters go on;
//!   the hold stays); an archiver that failed but is not yet stopped
//!   keeps it.
//!
//! ## Compaction
//!
//! With `ArchiverOptions::compact` (the default) a second thread, the
//! compactor, replaces each completed segment's chunks with one object
//! ([`crate::compact`]), so a restore fetches one object per segment. The
//! uploader tells it when a chunk that begins a new segment has landed
//! (the segment before is then complete); it also makes one pass at
//! start, finishing what an interrupted compaction left. It works with
//! its own connection and never touches the log, the hold or the commit
//! path, so a slow or failing compaction delays neither commits nor
//! uploads. Its errors are reported in `status()` and never stop
//! archiving: a transient one is retried at the next segment; any other
//! (two objects that disagree) stops compaction until a restart, leaving
//! every object in place. Stopping the archiver stops the compactor
//! between two requests; what it leaves is a state the next pass (or
//! `keel archive compact`) finishes.
//!
//! ## Published progress
//!
//! The archiver writes its state to the data directory's status file
//! ([`crate::status`]) when the state changes and about once a second
//! while it progresses; `keel stats` reads it.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keel::Database;
use keel::types::Lsn;
use keel::wal::{Payload, RecordHeader, RecordType};
use parking_lot::{Condvar, Mutex};

use crate::chunk::{self, CHUNK_HEADER_SIZE, ChunkBuilder, MAX_RAW_BYTES};
use crate::config::ArchiveTarget;
use crate::error::{ArchiveError, Result};
use crate::status::{self, ArchiveState, PublishedStatus};
use crate::store::{Put, Remote};

/// How the archiver batches and retries.
#[derive(Clone, Debug)]
pub struct ArchiverOptions {
    /// The history the log belongs to (1 until a restore starts another).
    pub timeline: u32,
    /// A chunk holds at most this many bytes of records (uncompressed):
    /// larger chunks mean fewer objects and requests, smaller ones less
    /// log read again after an interruption. Between one record's size and
    /// [`MAX_RAW_BYTES`].
    pub max_chunk_bytes: usize,
    /// A record (a commit, or any other) is uploaded at most about this
    /// long after it became durable, plus the upload's own time: the
    /// recovery point objective.
    pub max_delay: Duration,
    /// How often the thread looks at the durable end (an atomic load).
    pub poll_interval: Duration,
    /// Time limit of each request to the store.
    pub op_timeout: Duration,
    /// Longest wait between retries of a failed upload (backoff doubles
    /// from `poll_interval` up to this).
    pub max_backoff: Duration,
    /// How long `stop` keeps retrying to flush the durable log.
    pub stop_timeout: Duration,
    /// Where archiving begins on an empty timeline (a record boundary whose
    /// log is still on disk); `None`: the durable end of the log. Ignored
    /// when the timeline has chunks: archiving continues after them.
    pub start_lsn: Option<Lsn>,
    /// What commits do while the archive is down (module essay).
    pub on_archive_down: ArchivePolicy,
    /// Whether to write the status file in the data directory
    /// ([`crate::status`]).
    pub publish_status: bool,
    /// Whether the compactor thread replaces each completed segment's
    /// chunks with one object ([`crate::compact`]; module essay).
    pub compact: bool,
}

/// What commits do while the archive is down (module essay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ArchivePolicy {
    /// Commits go on; the log is kept and the archiver reports `broken`.
    #[default]
    KeepGoing,
    /// Commits wait once more than `max_unarchived_bytes` of log are not
    /// archived, and fail (rolled back) after waiting `timeout`.
    Stall {
        /// Log bytes past the archive's end at which commits wait.
        max_unarchived_bytes: u64,
        /// How long one commit waits before it fails.
        timeout: Duration,
    },
}

impl ArchivePolicy {
    /// As written in the status file: `keep-going` or `stall BYTES MS`.
    pub fn describe(&self) -> String {
        match self {
            ArchivePolicy::KeepGoing => "keep-going".into(),
            ArchivePolicy::Stall {
                max_unarchived_bytes,
                timeout,
            } => format!("stall {max_unarchived_bytes} {}", timeout.as_millis()),
        }
    }
}

impl Default for ArchiverOptions {
    fn default() -> Self {
        ArchiverOptions {
            timeline: 1,
            max_chunk_bytes: 8 << 20,
            max_delay: Duration::from_secs(1),
            poll_interval: Duration::from_millis(10),
            op_timeout: Duration::from_secs(30),
            max_backoff: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(30),
            start_lsn: None,
            on_archive_down: ArchivePolicy::KeepGoing,
            publish_status: true,
            compact: true,
        }
    }
}

impl ArchiverOptions {
    fn validate(&self) -> Result<()> {
        let min = keel::wal::record::MAX_RECORD_SIZE;
        if !(min..=MAX_RAW_BYTES).contains(&self.max_chunk_bytes) {
            return Err(ArchiveError::Config(format!(
                "max_chunk_bytes {} must be in {min}..={MAX_RAW_BYTES}",
                self.max_chunk_bytes
            )));
        }
        if self.timeline == 0 {
            return Err(ArchiveError::Config("timeline 0 is reserved".into()));
        }
        if self.poll_interval.is_zero() || self.op_timeout.is_zero() {
            return Err(ArchiveError::Config(
                "poll_interval and op_timeout must be positive".into(),
            ));
        }
        if let ArchivePolicy::Stall { timeout, .. } = self.on_archive_down
            && timeout.is_zero()
        {
            return Err(ArchiveError::Config(
                "the Stall policy's timeout must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// What the archiver has done so far.
#[derive(Clone, Debug)]
pub struct ArchiverStatus {
    /// Every durable record below this LSN is in the archive.
    pub archived_lsn: Lsn,
    /// The log's durable end.
    pub durable_lsn: Lsn,
    /// Durable log bytes not yet archived.
    pub lag_bytes: u64,
    /// Chunks uploaded (including ones found already there).
    pub chunks: u64,
    /// Bytes uploaded (compressed, with headers).
    pub bytes_uploaded: u64,
    /// Uploads tried again after a transient failure.
    pub retries: u64,
    /// The most recent error, transient or final.
    pub last_error: Option<Arc<ArchiveError>>,
    /// Whether the archiver stopped on an error (`last_error` says which).
    pub failed: bool,
    /// Whether uploads have failed since the last one that landed (the
    /// archive is down; `last_error` says why; retries go on).
    pub broken: bool,
    /// Commit time (µs since the epoch) of the oldest commit the archiver
    /// has read from the log and not yet archived.
    pub oldest_unarchived_commit_us: Option<u64>,
    /// Whether its thread still runs.
    pub running: bool,
    /// Compacted objects written by its compactor.
    pub compacted_objects: u64,
    /// Chunks they replaced (and leftovers of interrupted compactions),
    /// deleted.
    pub chunks_compacted: u64,
    /// The compactor's most recent error. Archiving goes on regardless;
    /// a transient error is retried at the next segment, any other stops
    /// compaction until the archiver restarts.
    pub compaction_error: Option<Arc<ArchiveError>>,
}

impl ArchiverStatus {
    /// `ok`, `broken`, `failed` or `stopped`.
    pub fn state(&self) -> ArchiveState {
        if self.failed {
            ArchiveState::Failed
        } else if !self.running {
            ArchiveState::Stopped
        } else if self.broken {
            ArchiveState::Broken
        } else {
            ArchiveState::Ok
        }
    }
}

#[derive(Debug, Default)]
struct State {
    archived: Lsn,
    chunks: u64,
    bytes_uploaded: u64,
    retries: u64,
    last_error: Option<Arc<ArchiveError>>,
    failed: bool,
    broken: bool,
    oldest_commit: Option<u64>,
    running: bool,
    /// Set by `stop`: retry uploads until then, then give up.
    stop_deadline: Option<Instant>,
    /// A new segment's first chunk has landed: the compactor has work.
    compact_wanted: bool,
    compacted_objects: u64,
    chunks_compacted: u64,
    compaction_error: Option<Arc<ArchiveError>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock());
        self.changed.notify_all();
    }

    fn stopping(&self) -> Option<Instant> {
        self.state.lock().stop_deadline
    }

    /// Sleeps up to `d`, waking early on a stop request.
    fn sleep(&self, d: Duration) {
        let mut st = self.state.lock();
        if st.stop_deadline.is_none() {
            self.changed.wait_for(&mut st, d);
        }
    }
}

/// A running archiver (module essay). Stopping it, explicitly or by
/// dropping it, flushes the durable log first, retrying a failing store for
/// up to `stop_timeout`. It holds an `Arc` of the database: stop it before
/// closing the database.
#[derive(Debug)]
pub struct Archiver {
    db: Arc<Database>,
    /// The timeline it archives on (its options' timeline as resolved at
    /// start: a restored database's recorded one).
    timeline: u32,
    stop_timeout: Duration,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    compactor: Option<JoinHandle<()>>,
}

impl Archiver {
    /// Starts archiving `db`'s log to `target` (protocol step 1).
    pub fn start(
        db: Arc<Database>,
        target: &ArchiveTarget,
        options: ArchiverOptions,
    ) -> Result<Archiver> {
        let mut options = options;
        options.validate()?;
        let (timeline, from) = crate::restore::archiver_timeline(db.dir(), options.timeline)?;
        options.timeline = timeline;
        options.start_lsn = options.start_lsn.or(from);
        let remote = Remote::open(target, options.op_timeout)?;
        let start = resume_point(&db, &remote, &options)?;
        remote.check_fence(options.timeline, db.database_id())?;
        // A start that fails puts back the hold it found (one set at open
        // for an archive that lags), never lifts it: the log it keeps may
        // be all that is left of what the archive lacks.
        let previous = db.log_hold();
        db.hold_log_from(Some(start));
        if let Err(e) = probe_log(&db, start).and_then(|()| mark_followed(&db, start, &options)) {
            db.hold_log_from(previous);
            return Err(e);
        }
        if let ArchivePolicy::Stall {
            max_unarchived_bytes,
            timeout,
        } = options.on_archive_down
        {
            db.limit_unarchived(Some(keel::wal::UnarchivedLimit {
                max_bytes: max_unarchived_bytes,
                timeout,
            }));
        }
        let shared = Arc::new(Shared::default());
        shared.update(|st| {
            st.archived = start;
            st.running = true;
            // A first pass finishes what an interrupted one left.
            st.compact_wanted = true;
        });
        let compactor = match options.compact {
            true => {
                let c = Compactor {
                    remote: Remote::open(target, options.op_timeout)?,
                    timeline: options.timeline,
                    database_id: db.database_id(),
                    shared: shared.clone(),
                };
                let spawned = std::thread::Builder::new()
                    .name("keel-compactor".into())
                    .spawn(move || c.run());
                Some(spawned.map_err(|e| {
                    ArchiveError::Config(format!("cannot start the compactor thread: {e}"))
                })?)
            }
            false => None,
        };
        let stop_timeout = options.stop_timeout;
        let worker = Worker {
            db: db.clone(),
            chunk: ChunkBuilder::new(db.database_id(), options.timeline, start),
            next_read: start,
            unread_since: None,
            oldest_seen: None,
            staging: Vec::new(),
            uploading_commit: None,
            opens_segment: false,
            published: None,
            remote,
            options,
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("keel-archiver".into())
            .spawn(move || worker.run())
            .map_err(|e| {
                db.limit_unarchived(None);
                shared.update(|st| st.stop_deadline = Some(Instant::now()));
                ArchiveError::Config(format!("cannot start the archiver thread: {e}"))
            })?;
        Ok(Archiver {
            db,
            timeline,
            stop_timeout,
            shared,
            thread: Some(thread),
            compactor,
        })
    }

    /// The timeline it archives on: its options' timeline, or for a
    /// database restored onto a timeline ([`crate::restore::TIMELINE_FILE`])
    /// the recorded one.
    pub fn timeline(&self) -> u32 {
        self.timeline
    }

    /// Whether it archives the log of `db` (the very database, not a copy).
    pub fn archives(&self, db: &Database) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.db), db)
    }

    /// Every durable record below this LSN is in the archive.
    pub fn archived_lsn(&self) -> Lsn {
        self.shared.state.lock().archived
    }

    /// The archiver's counters, lag and last error.
    pub fn status(&self) -> ArchiverStatus {
        status_of(&self.db, &self.shared.state.lock())
    }

    /// Waits until the archive holds every record below `lsn` (for
    /// example [`Database::durable_lsn`] after a commit). Fails if the
    /// archiver stops first or `timeout` passes.
    pub fn wait_archived(&self, lsn: Lsn, timeout: Duration) -> Result<Lsn> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock();
        loop {
            if st.archived >= lsn {
                return Ok(st.archived);
            }
            if !st.running {
                return Err(stopped_error(&st));
            }
            if self
                .shared
                .changed
                .wait_until(&mut st, deadline)
                .timed_out()
                && st.archived < lsn
            {
                return Err(ArchiveError::WaitTimeout {
                    lsn,
                    archived: st.archived,
                    after: timeout,
                });
            }
        }
    }

    /// Flushes the durable log to the archive and stops; returns how far
    /// the archive reaches. The log hold stays until the database closes,
    /// so a later archiver continues where this one ended.
    pub fn stop(mut self) -> Result<Lsn> {
        self.finish()
    }

    fn finish(&mut self) -> Result<Lsn> {
        let Some(thread) = self.thread.take() else {
            return Ok(self.archived_lsn());
        };
        let deadline = Instant::now() + self.stop_timeout;
        self.shared
            .update(|st| st.stop_deadline = Some(*st.stop_deadline.get_or_insert(deadline)));
        let _ = thread.join();
        // The Stall limit belongs to a running archiver: lifting it lets
        // waiting commits go on (the hold stays, so nothing is retired).
        self.db.limit_unarchived(None);
        if let Some(c) = self.compactor.take() {
            let _ = c.join();
        }
        let st = self.shared.state.lock();
        match st.failed {
            true => Err(stopped_error(&st)),
            false => Ok(st.archived),
        }
    }
}

impl Drop for Archiver {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Marks `db`'s directory as followed by an archive before anything ships:
/// its status file, written and synced with its directory, so that every
/// later open, after any crash, holds the log (`Database::open` holds it
/// while the file is there). Later updates of the file are not synced
/// (module `status`): a crash may lose one, never the file. Nothing to do
/// when the options turn the status file off (then every open of the
/// directory must set `WalConfig::hold_at_open` itself).
fn mark_followed(db: &Database, start: Lsn, options: &ArchiverOptions) -> Result<()> {
    if !options.publish_status {
        return Ok(());
    }
    let st = State {
        archived: start,
        running: true,
        ..State::default()
    };
    status::write_status(db.io(), db.dir(), &published_status(db, &st, options), true)
}

/// What the status file says of `st` (module `status`).
fn published_status(db: &Database, st: &State, options: &ArchiverOptions) -> PublishedStatus {
    let status = status_of(db, st);
    PublishedStatus {
        state: status.state(),
        policy: options.on_archive_down.describe(),
        archived_lsn: status.archived_lsn,
        durable_lsn: status.durable_lsn,
        oldest_unarchived_commit_us: status.oldest_unarchived_commit_us,
        updated_us: status::now_us(),
        chunks: status.chunks,
        retries: status.retries,
        last_error: status.last_error.as_ref().map(|e| e.to_string()),
        compacted_objects: status.compacted_objects,
        chunks_compacted: status.chunks_compacted,
        compaction_error: status.compaction_error.as_ref().map(|e| e.to_string()),
    }
}

fn status_of(db: &Database, st: &State) -> ArchiverStatus {
    let durable = db.durable_lsn();
    ArchiverStatus {
        archived_lsn: st.archived,
        durable_lsn: durable,
        lag_bytes: durable.0.saturating_sub(st.archived.0),
        chunks: st.chunks,
        bytes_uploaded: st.bytes_uploaded,
        retries: st.retries,
        last_error: st.last_error.clone(),
        failed: st.failed,
        broken: st.broken,
        oldest_unarchived_commit_us: st.oldest_commit,
        running: st.running,
        compacted_objects: st.compacted_objects,
        chunks_compacted: st.chunks_compacted,
        compaction_error: st.compaction_error.clone(),
    }
}

fn stopped_error(st: &State) -> ArchiveError {
    match (&st.last_error, st.failed) {
        (Some(e), true) => ArchiveError::Failed(e.clone()),
        _ => ArchiveError::Stopped {
            archived: st.archived,
        },
    }
}

/// Where archiving continues (protocol step 1).
fn resume_point(db: &Database, remote: &Remote, options: &ArchiverOptions) -> Result<Lsn> {
    crate::read::relisting(|| resume_point_once(db, remote, options))
}

fn resume_point_once(db: &Database, remote: &Remote, options: &ArchiverOptions) -> Result<Lsn> {
    let chunks = remote.list_chunks(options.timeline)?;
    let durable = db.durable_lsn();
    let Some(newest) = chunks.last() else {
        return Ok(options.start_lsn.unwrap_or(durable));
    };
    let name = newest.path.to_string();
    let head = remote.get_prefix(&newest.path, CHUNK_HEADER_SIZE as u64)?;
    let header = chunk::decode_header(&name, &head, newest.size)?;
    if header.database_id != db.database_id() {
        return Err(ArchiveError::WrongDatabase {
            object: name,
            expected: db.database_id(),
            found: header.database_id,
        });
    }
    if header.start != newest.start
        || header.timeline != options.timeline
        || newest.end.is_some_and(|end| end != header.end)
    {
        return Err(ArchiveError::Corrupt {
            object: name,
            place: crate::error::Place::Object(chunk::offsets::TIMELINE as u64),
            reason: format!(
                "header says timeline {} from LSN {}, its name says timeline {} from LSN {}",
                header.timeline, header.start, options.timeline, newest.start
            ),
        });
    }
    if header.end > durable {
        return Err(ArchiveError::AheadOfLog {
            prefix: remote.prefix().to_string(),
            archive_end: header.end,
            durable,
        });
    }
    Ok(header.end)
}

/// Checks that the log from `start` can be read (its segment not retired).
fn probe_log(db: &Database, start: Lsn) -> Result<()> {
    let log_err = |e: keel::Error| ArchiveError::Log {
        from: start,
        source: Box::new(e),
    };
    let mut reader = db.log_reader(start).map_err(log_err)?;
    match reader.next() {
        Some(Err(e)) => Err(log_err(e.into())),
        _ => Ok(()),
    }
}

/// The archiver thread's state (protocol steps 2–5).
struct Worker {
    db: Arc<Database>,
    remote: Remote,
    options: ArchiverOptions,
    shared: Arc<Shared>,
    /// The open chunk; its start is the archive's end.
    chunk: ChunkBuilder,
    /// Where the next read starts.
    next_read: Lsn,
    /// When durable log past `next_read` was first seen.
    unread_since: Option<Instant>,
    /// When the open chunk's oldest record was seen durable.
    oldest_seen: Option<Instant>,
    /// The payload of the record being appended.
    staging: Vec<u8>,
    /// The oldest commit time in the chunk being uploaded.
    uploading_commit: Option<u64>,
    /// Whether the open chunk's first record begins a segment (the
    /// previous segment is complete once it lands).
    opens_segment: bool,
    /// The state last written to the status file, and when.
    published: Option<(ArchiveState, Instant)>,
}

impl Worker {
    fn run(mut self) {
        let result = self.run_loop();
        self.shared.update(|st| {
            if let Err(e) = result {
                st.last_error = Some(Arc::new(e));
                st.failed = true;
            }
            st.running = false;
        });
        self.publish(true);
    }

    /// Writes the status file when the state changed, or when `force`, or
    /// a second after the last write (module essay). A failure to write it
    /// is recorded as the last error, never stops archiving.
    fn publish(&mut self, force: bool) {
        if !self.options.publish_status {
            return;
        }
        let published = published_status(&self.db, &self.shared.state.lock(), &self.options);
        let state = published.state;
        let due = match self.published {
            None => true,
            Some((was, at)) => force || was != state || at.elapsed() >= Duration::from_secs(1),
        };
        if !due {
            return;
        }
        match status::write_status(self.db.io(), self.db.dir(), &published, false) {
            Ok(()) => self.published = Some((state, Instant::now())),
            Err(e) => self.shared.update(|st| st.last_error = Some(Arc::new(e))),
        }
    }

    /// The oldest unarchived commit the archiver has read.
    fn note_oldest_commit(&self) {
        let oldest = match (self.uploading_commit, self.chunk.min_commit_time_us()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.shared.update(|st| st.oldest_commit = oldest);
    }

    fn run_loop(&mut self) -> Result<()> {
        loop {
            let stopping = self.shared.stopping().is_some();
            if self.read_due(stopping) {
                self.read_durable()?;
            }
            let due = self
                .oldest_seen
                .is_some_and(|t| t.elapsed() >= self.options.max_delay);
            if !self.chunk.is_empty() && (due || stopping) {
                self.upload()?;
            }
            self.publish_caught_up();
            self.note_oldest_commit();
            self.publish(false);
            if stopping {
                return Ok(());
            }
            self.shared.sleep(self.options.poll_interval);
        }
    }

    /// Whether to read the log now (protocol step 2).
    fn read_due(&mut self, stopping: bool) -> bool {
        let durable = self.db.durable_lsn();
        if durable <= self.next_read {
            return false;
        }
        let since = *self.unread_since.get_or_insert_with(Instant::now);
        stopping
            || durable.0 - self.next_read.0 >= self.options.max_chunk_bytes as u64
            || since.elapsed() >= self.options.max_delay
    }

    /// Appends every durable record from `next_read` to the open chunk,
    /// uploading chunks as they fill (protocol steps 2 and 3).
    fn read_durable(&mut self) -> Result<()> {
        let from = self.next_read;
        let seen = self.unread_since.take().unwrap_or_else(Instant::now);
        let log_err = |e: keel::Error| ArchiveError::Log {
            from,
            source: Box::new(e),
        };
        let mut reader = self.db.log_reader(from).map_err(log_err)?;
        let mut staging = std::mem::take(&mut self.staging);
        loop {
            let item = reader.next_with(|h, payload| {
                staging.clear();
                staging.extend_from_slice(payload);
                h
            });
            let Some(item) = item else { break };
            let h = item.map_err(|e| log_err(e.into()))?;
            let commit = commit_time(&h, &staging).map_err(log_err)?;
            self.append(&h, &staging, commit, seen)?;
        }
        self.staging = staging;
        self.next_read = reader.position();
        Ok(())
    }

    fn append(
        &mut self,
        h: &RecordHeader,
        payload: &[u8],
        commit: Option<u64>,
        seen: Instant,
    ) -> Result<()> {
        let full = self.chunk.raw_len() + h.total_len as usize > self.options.max_chunk_bytes;
        if !self.chunk.is_empty() && (full || !self.chunk.accepts(h.lsn)) {
            self.upload()?;
        }
        if !self.chunk.accepts(h.lsn) {
            return Err(ArchiveError::LogGap {
                archive_end: self.chunk.end(),
                record: h.lsn,
            });
        }
        if self.chunk.is_empty() {
            self.opens_segment = h.lsn != self.chunk.start();
        }
        self.chunk.push(h, payload, commit);
        self.oldest_seen.get_or_insert(seen);
        Ok(())
    }

    /// Closes the open chunk and uploads it (protocol steps 4 and 5).
    fn upload(&mut self) -> Result<()> {
        let (header, bytes) = self.chunk.finish()?;
        let path = self.remote.chunk_path(header.timeline, header.start);
        self.uploading_commit =
            (header.min_commit_time_us != 0).then_some(header.min_commit_time_us);
        self.note_oldest_commit();
        self.put_with_retry(&path, &bytes)?;
        self.uploading_commit = None;
        self.oldest_seen = None;
        // Retention interlock: retirement may pass only what has landed.
        self.db.hold_log_from(Some(header.end));
        self.shared.update(|st| {
            st.archived = st.archived.max(header.end);
            st.chunks += 1;
            st.bytes_uploaded += bytes.len() as u64;
            st.broken = false;
            st.compact_wanted |= self.opens_segment;
        });
        self.note_oldest_commit();
        self.publish(false);
        Ok(())
    }

    fn put_with_retry(&mut self, path: &object_store::path::Path, bytes: &[u8]) -> Result<Put> {
        let mut backoff = self.options.poll_interval;
        loop {
            // Fenced (crate::fence, rule 1): read before every try, so an
            // archiver whose timeline was promoted away uploads nothing
            // more once the fence is visible.
            let put = self
                .remote
                .check_fence(self.options.timeline, self.db.database_id())
                .and_then(|()| self.remote.put_create(path, bytes));
            match put {
                Ok(put) => return Ok(put),
                Err(e) if e.is_transient() && !self.past_stop_deadline() => {
                    self.shared.update(|st| {
                        st.retries += 1;
                        st.last_error = Some(Arc::new(e));
                        st.broken = true;
                    });
                    self.publish(false);
                    match self.shared.stopping() {
                        // Draining: a stop request no longer cuts the wait
                        // short, so retries keep their pace until the deadline.
                        Some(_) => std::thread::sleep(backoff),
                        None => self.shared.sleep(backoff),
                    }
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn past_stop_deadline(&self) -> bool {
        self.shared.stopping().is_some_and(|d| Instant::now() >= d)
    }

    /// With no record waiting, the archive reaches as far as the reader
    /// got (past padding and segment headers, which hold no record).
    fn publish_caught_up(&self) {
        if self.chunk.is_empty() {
            let at = self.next_read;
            self.shared.update(|st| st.archived = st.archived.max(at));
        }
    }
}

/// A commit record's time, if `h` is one.
fn commit_time(h: &RecordHeader, payload: &[u8]) -> keel::Result<Option<u64>> {
    if h.kind != RecordType::Commit {
        return Ok(None);
    }
    match Payload::decode(h.kind, payload, h.lsn)? {
        Payload::Commit { commit_time_us } => Ok(Some(commit_time_us)),
        _ => Ok(None),
    }
}

/// The compactor thread (module essay, "Compaction").
struct Compactor {
    remote: Remote,
    timeline: u32,
    database_id: u64,
    shared: Arc<Shared>,
}

impl Compactor {
    fn run(self) {
        loop {
            {
                let mut st = self.shared.state.lock();
                while !st.compact_wanted && st.stop_deadline.is_none() {
                    self.shared.changed.wait(&mut st);
                }
                if st.stop_deadline.is_some() {
                    return;
                }
                st.compact_wanted = false;
            }
            let stop = || self.shared.stopping().is_some();
            let done = crate::compact::compact_timeline(
                &self.remote,
                self.timeline,
                Some(self.database_id),
                &stop,
            );
            let fatal = matches!(&done, Err(e) if !e.is_transient());
            self.shared.update(|st| match done {
                Ok(r) => {
                    st.compacted_objects += r.objects;
                    st.chunks_compacted += r.chunks_deleted + r.leftovers_deleted;
                }
                Err(e) => st.compaction_error = Some(Arc::new(e)),
            });
            if fatal {
                return;
            }
        }
    }
}
