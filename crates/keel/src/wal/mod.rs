//! The write-ahead log: every change is described here before any page that
//! holds it may reach the disk (invariant 4), and a commit is acknowledged
//! only once its record is durable (invariant 6).
//!
//! The pieces, bottom up:
//!
//! - [`record`]: the record frame (header, CRC, LSN) and record types;
//! - [`payload`]: the typed payload of each record type;
//! - [`segment`]: segment files, their header, their lifecycle;
//! - `append`: the log buffer: LSN reservation and the pending queue;
//! - `group`: group commit, a state machine of its own (who leads, the
//!   poison, the generations of parked committers, the durable end);
//! - `batch`: batch I/O, how the leader writes and syncs one batch;
//! - `writer`: joins the three behind one verb per reason to make records
//!   durable (`wait_durable`, `write_batch`, `push_all`);
//! - [`reader`]: iteration from any LSN, and where the log ends;
//! - [`archive`]: zstd copies of retired segments, verified and restorable;
//! - [`import`]: a log written from records shipped elsewhere (a restore);
//! - [`gate`]: commit admission under a limit on log not yet archived;
//! - `flusher`: the buffer pool's WAL-before-data hook (invariant 4).
//!
//! [`Wal`] ties them together. It opens an existing log by finding its end
//! (cutting a torn tail, refusing a corrupt middle), zeroes the bytes a torn
//! batch may have left after that end so no stale record can ever appear to
//! continue the log, and keeps the next segment prepared ahead of the writer
//! on a background thread, which also runs the interval and size flush
//! policies (by default, the size policy writes a large transaction's log
//! while it runs: [`WalConfig::flush_size_bytes`]).
//!
//! Left out here: what records mean (heap/, recovery/) and when segments are
//! retired (checkpoints call [`Wal::retire_before`], which keeps every
//! segment at or above the hold of an archiver and the pins of online
//! backups).

mod append;
pub mod archive;
mod batch;
mod config;
mod error;
mod flusher;
pub mod gate;
mod group;
pub mod import;
pub mod payload;
pub mod reader;
pub mod record;
pub mod segment;
mod writer;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use keel_io::{AsyncIo, FileClass, IoBuf, OpenOptions};
use parking_lot::{Condvar, Mutex};

pub use append::Appended;
pub use config::{CommitMode, RecoveryMode, RetentionPolicy, WalConfig};
pub use error::WalError;
pub use gate::{Stalled, UnarchivedLimit};
pub use payload::{Payload, SlotImage, TupleBatch};
pub use reader::{LogRecord, TailCut, WalReader};
pub use record::{RecordHeader, RecordMeta, RecordType};
pub use writer::WriterStats;

use crate::types::Lsn;
use batch::SegmentSource;
use reader::WalReader as Reader;
use record::{MAX_RECORD_SIZE, RECORD_HEADER_SIZE};
use segment::{Geometry, SEGMENT_HEADER_SIZE, SegmentDir, SegmentHeader};
use writer::LogWriter;

/// What opening the log found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// Whether the log was created by this open.
    pub created: bool,
    /// The database id the segments carry.
    pub database_id: u64,
    /// Position after the last valid record: the next record goes here.
    pub end: Lsn,
    /// A torn tail that was cut off.
    pub cut: Option<TailCut>,
    /// Segment files present after opening.
    pub segments: usize,
}

/// What [`Wal::retire_before`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetireReport {
    /// Segments kept as spares for recycling.
    pub recycled: Vec<u64>,
    /// Segments archived (then deleted).
    pub archived: Vec<u64>,
    /// Segments deleted.
    pub deleted: Vec<u64>,
}

/// The write-ahead log of one database.
pub struct Wal {
    io: Arc<dyn AsyncIo>,
    dir: Arc<SegmentDir>,
    config: WalConfig,
    geometry: Geometry,
    /// Where the log ended when it was opened: the one answer recovery
    /// reads up to (see [`Wal::recovery_reader`]).
    open_end: Lsn,
    database_id: u64,
    /// No segment holding log at or above this LSN is retired
    /// ([`Wal::hold_from`]; `u64::MAX`: no hold).
    hold: std::sync::atomic::AtomicU64,
    /// Pins ([`Wal::pin_from`]): each LSN with how many pins hold it.
    pins: Arc<Mutex<std::collections::BTreeMap<Lsn, usize>>>,
    /// Commit admission against the hold ([`Wal::set_unarchived_limit`]).
    gate: gate::CommitGate,
    segments: Arc<SegmentManager>,
    writer: Arc<LogWriter>,
    background: Option<JoinHandle<()>>,
}

/// A pin on the log ([`Wal::pin_from`]); dropping it lifts the pin.
#[derive(Debug)]
pub struct LogPin {
    pins: Arc<Mutex<std::collections::BTreeMap<Lsn, usize>>>,
    lsn: Lsn,
}

impl LogPin {
    /// Where the log is pinned from.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }
}

impl Drop for LogPin {
    fn drop(&mut self) {
        let mut pins = self.pins.lock();
        if let Some(n) = pins.get_mut(&self.lsn) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.lsn);
            }
        }
    }
}

/// Prepares segments ahead of the writer and keeps spares for recycling.
struct SegmentManager {
    dir: Arc<SegmentDir>,
    template: SegmentHeader,
    state: Mutex<SegmentState>,
    wake: Condvar,
    stop: AtomicBool,
}

struct SegmentState {
    prepared: BTreeSet<u64>,
    spares: Vec<u64>,
    /// The writer's segment at the last retirement (or at open): where the
    /// current checkpoint cycle's log began.
    cycle_start: u64,
    /// Segments a checkpoint cycle enters, as estimated at the last
    /// retirement ([`Wal::spare_target`]).
    cycle_estimate: f64,
    wanted: Option<u64>,
    /// A preparation failed: no segment is prepared again (invariant 7).
    failed: bool,
}

impl SegmentManager {
    /// Prepares segments like `template` (with the configured batch size)
    /// in `dir`, starting from `state`.
    fn new(
        dir: Arc<SegmentDir>,
        template: SegmentHeader,
        config: &WalConfig,
        state: SegmentState,
    ) -> SegmentManager {
        SegmentManager {
            dir,
            template: SegmentHeader {
                max_batch_bytes: config.max_batch_bytes,
                ..template
            },
            state: Mutex::new(state),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        }
    }

    fn prepare_locked(&self, st: &mut SegmentState, n: u64) -> Result<(), WalError> {
        if st.failed {
            return Err(WalError::Closed);
        }
        let header = SegmentHeader {
            segment_no: n,
            ..self.template
        };
        let spare = st.spares.pop();
        self.dir.prepare(&header, spare)?;
        st.prepared.insert(n);
        Ok(())
    }
}

impl SegmentSource for SegmentManager {
    fn ensure_prepared(&self, n: u64) -> Result<bool, WalError> {
        let mut st = self.state.lock();
        if st.prepared.contains(&n) {
            return Ok(false);
        }
        // A failure poisons the log (the next batch fails with it);
        // no later call prepares again (invariant 7).
        let prepared = self.prepare_locked(&mut st, n);
        st.failed |= prepared.is_err();
        prepared.map(|()| true)
    }

    fn entered(&self, n: u64) {
        let mut st = self.state.lock();
        st.prepared.retain(|&p| p >= n);
        st.wanted = Some(n + 1);
        drop(st);
        self.wake.notify_all();
    }
}

/// Bytes `find_end` reads to check a segment's first record (more only
/// when that record is longer).
const PROBE_BYTES: usize = 64 << 10;

/// How far past the end a torn batch may have left valid-looking bytes.
fn stale_window(max_batch: u64) -> u64 {
    max_batch + MAX_RECORD_SIZE as u64
}

impl Wal {
    /// Opens the log in `dir`, creating it when the directory has no
    /// segments. An existing log's segment size and database id win over the
    /// configuration's.
    pub fn open(
        io: Arc<dyn AsyncIo>,
        dir: &Path,
        config: WalConfig,
    ) -> Result<(Wal, OpenReport), WalError> {
        Self::open_from(io, dir, config, None)
    }

    /// [`Wal::open`] for a log that recovery will read from `scan_start`
    /// (the control file's scan start; `None`: the whole log). In
    /// [`RecoveryMode::SalvageToFirstError`] the end of the log is the
    /// first invalid record from there, as recovery will read it, and
    /// whatever followed it is set aside (renamed, never deleted) so that
    /// no record from before the salvage can reappear after the new ones.
    pub fn open_from(
        io: Arc<dyn AsyncIo>,
        dir: &Path,
        mut config: WalConfig,
        scan_start: Option<Lsn>,
    ) -> Result<(Wal, OpenReport), WalError> {
        config.validate()?;
        let sdir = Arc::new(SegmentDir::open(io.clone(), dir, false)?);
        sdir.remove_unfinished_preparations()?;
        let (template, created) = Self::template_or_create(&sdir, &config)?;
        let geometry = Geometry {
            segment_size: u64::from(template.segment_size),
        };
        let (end, cut) = match created {
            true => (geometry.first_record(0), None),
            false => Self::settle_end(&io, &sdir, geometry, &template, &config, scan_start)?,
        };
        // O_DIRECT where asked for and the file system has it (the
        // config's field from here on says what the writer does).
        if config.direct_io {
            let current = geometry.segment_of(end);
            let present = sdir.list()?;
            // Tried on the segment the writer goes on in, or the newest one
            // before it (the writer prepares a missing one itself).
            if let Some(&n) = present.iter().rev().find(|&&n| n <= current) {
                config.direct_io = sdir.direct_supported(n)?;
            }
        }
        let sdir = Arc::new(sdir.with_direct(config.direct_io));
        let tail = if config.direct_io {
            Self::read_tail(&io, &sdir, geometry, end)?
        } else {
            Vec::new()
        };
        let present = sdir.list()?;
        let current = geometry.segment_of(end);
        let (prepared, bound) = Self::prepared_at_or_after(&sdir, &present, current, &template);
        // Invariant 10: a segment's header bounds every batch written into
        // it (a reader tells a torn tail from damage by it, and the next
        // open clears that far past the end). The segments this process
        // goes on filling may have been prepared by one with smaller
        // batches: this process's batches keep to the smallest such bound
        // (the segments it prepares itself carry its own).
        let mut batches = config.clone();
        if let Some(b) = bound {
            batches.max_batch_bytes = batches.max_batch_bytes.min(b);
        }
        let spares = Self::spares_to_keep(&sdir, &config)?;
        let state = SegmentState {
            prepared,
            spares,
            cycle_start: current,
            cycle_estimate: 0.0,
            wanted: Some(current + 1),
            failed: false,
        };
        let segments = Arc::new(SegmentManager::new(sdir.clone(), template, &config, state));
        let writer = Arc::new(LogWriter::new(
            io.clone(),
            sdir.clone(),
            segments.clone(),
            geometry,
            &batches,
            end,
            tail,
        ));
        let report = OpenReport {
            created,
            database_id: template.database_id,
            end,
            cut,
            segments: present.len(),
        };
        let mut wal = Wal {
            io,
            dir: sdir,
            geometry,
            open_end: end,
            database_id: template.database_id,
            hold: std::sync::atomic::AtomicU64::new(if config.hold_at_open {
                present
                    .first()
                    .map_or(end.0, |&n| geometry.first_record(n).0)
            } else {
                u64::MAX
            }),
            pins: Arc::default(),
            gate: gate::CommitGate::default(),
            segments,
            writer,
            background: None,
            config,
        };
        wal.background = Some(wal.spawn_background());
        Ok((wal, report))
    }

    /// Finds where an existing log ends ([`Wal::find_end`]), sets aside
    /// what follows a salvaged cut, and clears the segments after the end.
    fn settle_end(
        io: &Arc<dyn AsyncIo>,
        sdir: &Arc<SegmentDir>,
        geometry: Geometry,
        template: &SegmentHeader,
        config: &WalConfig,
        scan_start: Option<Lsn>,
    ) -> Result<(Lsn, Option<TailCut>), WalError> {
        let mode = config.recovery_mode;
        let (end, cut) = Self::find_end(io, sdir, geometry, template, mode, scan_start)?;
        if mode == RecoveryMode::SalvageToFirstError && cut.is_some() {
            Self::set_aside_after(io, sdir, geometry, end)?;
        }
        Self::clear_after_end(io, sdir, geometry, end, template)?;
        Ok((end, cut))
    }

    /// The header of the newest valid segment, as the template of the
    /// segments to come; on a directory with no segment, a new log's
    /// (segment 0 prepared, `true`). Files that are all invalid are refused
    /// rather than overwritten on a guess.
    fn template_or_create(
        sdir: &SegmentDir,
        config: &WalConfig,
    ) -> Result<(SegmentHeader, bool), WalError> {
        let present = sdir.list()?;
        if let Some(h) = sdir.newest_header(&present) {
            return Ok((h, false));
        }
        if let Some(&n) = present.first() {
            return Err(WalError::BadSegment {
                segment: n,
                path: sdir.segment_path(n),
                reason: "no segment of this log has a valid header".into(),
            });
        }
        let h = SegmentHeader {
            segment_no: 0,
            segment_size: config.segment_size_bytes,
            database_id: crate::types::random_id(),
            max_batch_bytes: config.max_batch_bytes,
        };
        sdir.prepare(&h, None)?;
        Ok((h, true))
    }

    /// Segments at or after `current` (the end's) are the writer's to fill.
    /// Only one whose header is valid (this log's, this number) counts as
    /// prepared: records written into a file without one could never be
    /// read back, so every acknowledged commit in it would be lost. Any
    /// other (damaged) is prepared again first. Also returns the smallest
    /// batch bound among their headers.
    fn prepared_at_or_after(
        sdir: &SegmentDir,
        present: &[u64],
        current: u64,
        template: &SegmentHeader,
    ) -> (BTreeSet<u64>, Option<u32>) {
        let mut bound: Option<u32> = None;
        let prepared = present
            .iter()
            .copied()
            .filter(|&n| n >= current)
            .filter(|&n| {
                let Ok(h) = sdir.read_header(n) else {
                    return false;
                };
                let ours = h.same_log(template);
                if ours {
                    bound = Some(bound.map_or(h.max_batch_bytes, |b| b.min(h.max_batch_bytes)));
                }
                ours
            })
            .collect();
        (prepared, bound)
    }

    /// Spares left by an earlier process, recycled too (its retirements
    /// sized the pool; the next one here trims it to this process's
    /// target). Under another retention policy they are retired files and
    /// removed.
    fn spares_to_keep(sdir: &SegmentDir, config: &WalConfig) -> Result<Vec<u64>, WalError> {
        let spares = sdir.list_spares()?;
        if config.retention == RetentionPolicy::Recycle {
            return Ok(spares);
        }
        for &n in &spares {
            sdir.remove_spare(n)?;
        }
        Ok(Vec::new())
    }

    /// How many spares the retirement that ends a checkpoint cycle keeps
    /// ([`WalConfig::min_wal_size_bytes`]), updating the estimate of the
    /// segments a cycle enters with this one's, `entered`. As PostgreSQL's
    /// estimate of the distance between checkpoints, it follows a longer
    /// cycle at once and a shorter one by a tenth of the difference, so a
    /// checkpoint asked for early does not shrink the pool; one spare more
    /// than the estimate serves a cycle as long as the last that crosses
    /// one more segment boundary.
    fn spare_target(&self, st: &mut SegmentState, entered: u64) -> usize {
        let entered = entered as f64;
        st.cycle_estimate = if entered >= st.cycle_estimate {
            entered
        } else {
            0.9 * st.cycle_estimate + 0.1 * entered
        };
        let min = self
            .config
            .min_wal_size_bytes
            .div_ceil(self.geometry.segment_size);
        let estimate = st.cycle_estimate.ceil() as u64 + 1;
        usize::try_from(min.max(estimate)).unwrap_or(usize::MAX)
    }

    /// Where the log ends: the one function that decides it (recovery
    /// reads up to its answer, [`Wal::recovery_reader`]).
    ///
    /// Normally the log is read from the start of the newest segment that
    /// begins with a valid record (when none does, from `scan_start`: a
    /// log restored from an archive begins mid-segment, at a backup's
    /// start, [`import`]): an invalid record before that is followed by
    /// valid ones from later batches, so recovery's reader, which starts
    /// earlier, meets it as corruption, an error, whatever the end. When
    /// salvaging, the end is the first invalid record from where recovery
    /// starts (`scan_start`, or the oldest segment), so it is read from
    /// there.
    fn find_end(
        io: &Arc<dyn AsyncIo>,
        dir: &Arc<SegmentDir>,
        geometry: Geometry,
        template: &SegmentHeader,
        mode: RecoveryMode,
        scan_start: Option<Lsn>,
    ) -> Result<(Lsn, Option<TailCut>), WalError> {
        let from = Self::end_search_start(io, dir, geometry, template, mode, scan_start)?;
        let Some(from) = from else {
            return Ok((geometry.first_record(0), None));
        };
        let mut reader = Reader::new(
            io.clone(),
            dir.clone(),
            geometry,
            template.database_id,
            mode,
            from,
        )?;
        for record in reader.by_ref() {
            record?;
        }
        let end = reader.end().unwrap_or(geometry.record_position(from));
        Ok((end, reader.tail_cut().cloned()))
    }

    /// Where [`Wal::find_end`] starts reading: `None` when no segment is
    /// present. Reads segment headers and first records only.
    pub(crate) fn end_search_start(
        io: &Arc<dyn AsyncIo>,
        dir: &SegmentDir,
        geometry: Geometry,
        template: &SegmentHeader,
        mode: RecoveryMode,
        scan_start: Option<Lsn>,
    ) -> Result<Option<Lsn>, WalError> {
        let present = dir.list()?;
        Ok(if mode == RecoveryMode::SalvageToFirstError {
            scan_start.or(present.first().map(|&n| geometry.first_record(n)))
        } else {
            present
                .iter()
                .rev()
                .copied()
                .find(|&n| Self::starts_with_a_record(io, dir, geometry, template, n))
                .map(|n| geometry.first_record(n))
                .or(scan_start.filter(|s| present.contains(&geometry.segment_of(*s))))
                .or(present.first().map(|&n| geometry.first_record(n)))
        })
    }

    /// Salvage: moves whatever follows `end` out of the log. Later segments
    /// are renamed to `<name>.salvaged-<end>`; the segment holding `end` is
    /// copied to that name, then zeroed from `end` on and synced. Nothing
    /// is deleted, and no record from before the salvage can later appear
    /// to continue the log or sit past its new end.
    fn set_aside_after(
        io: &Arc<dyn AsyncIo>,
        dir: &SegmentDir,
        geometry: Geometry,
        end: Lsn,
    ) -> Result<(), WalError> {
        let seg = geometry.segment_of(end);
        let aside = |n: u64| {
            dir.path().join(format!(
                "{}.salvaged-{:016X}",
                segment::segment_file_name(n),
                end.0
            ))
        };
        let present = dir.list()?;
        for &n in present.iter().filter(|&&n| n > seg) {
            io.rename(&dir.segment_path(n), &aside(n))
                .wait()
                .map_err(WalError::io("set a salvaged segment aside"))?;
        }
        if present.contains(&seg) {
            dir.with_segment(seg, true, |fh| {
                let size = geometry.segment_size as usize;
                let (whole, got) = io
                    .read_at(fh, 0, IoBuf::zeroed(size))
                    .wait()
                    .map_err(WalError::io("read a salvaged segment"))?;
                let from = geometry.offset_in_segment(end) as usize;
                if whole[from.min(got)..got].iter().all(|&b| b == 0) {
                    return Ok(());
                }
                let copy_opts = OpenOptions::read_write_create(FileClass::Wal);
                let copy = io
                    .open(&aside(seg), copy_opts)
                    .wait()
                    .map_err(WalError::io("create a salvaged copy"))?;
                let copied = io
                    .write_at(copy, 0, IoBuf::from(whole[..got].to_vec()))
                    .wait()
                    .and_then(|_| io.fdatasync(copy).wait());
                let _ = io.close(copy).wait();
                copied.map_err(WalError::io("write a salvaged copy"))?;
                io.write_at(fh, from as u64, IoBuf::zeroed(got - from))
                    .wait()
                    .map_err(WalError::io("clear a salvaged segment"))?;
                io.fdatasync(fh).wait().map_err(WalError::io("fdatasync"))
            })?;
        }
        dir.sync()
    }

    /// Whether segment `n` has this log's header and a valid first record:
    /// reads the header and the first record only (one read, more only for
    /// a first record longer than [`PROBE_BYTES`]), not the whole segment.
    fn starts_with_a_record(
        io: &Arc<dyn AsyncIo>,
        dir: &SegmentDir,
        geometry: Geometry,
        template: &SegmentHeader,
        n: u64,
    ) -> bool {
        let path = dir.segment_path(n);
        let Ok(fh) = io.open(&path, OpenOptions::new(FileClass::Wal)).wait() else {
            return false;
        };
        let at = geometry.first_record(n);
        let off = geometry.offset_in_segment(at) as usize;
        let size = geometry.segment_size as usize;
        let mut want = (off + PROBE_BYTES).min(size);
        let valid = loop {
            let Ok((buf, got)) = io.read_at(fh, 0, IoBuf::zeroed(want)).wait() else {
                break false;
            };
            let header = &buf[..got.min(SEGMENT_HEADER_SIZE)];
            if !SegmentHeader::decode(header, n, &path).is_ok_and(|h| h.same_log(template)) {
                break false;
            }
            match record::decode_frame(buf.get(off..got).unwrap_or(&[]), at) {
                Ok(_) => break true,
                // A record longer than the first read: read all of it.
                Err(record::FrameProblem::Truncated)
                    if got == want && (off + MAX_RECORD_SIZE).min(size) > want =>
                {
                    want = (off + MAX_RECORD_SIZE).min(size);
                }
                Err(_) => break false,
            }
        };
        let _ = io.close(fh).wait();
        valid
    }

    /// Zeroes whatever follows `end` in its segment, as far as a torn
    /// batch can reach, so a later crash can never show a stale record as
    /// the continuation of the log; synced before any new append.
    fn clear_after_end(
        io: &Arc<dyn AsyncIo>,
        dir: &SegmentDir,
        geometry: Geometry,
        end: Lsn,
        template: &SegmentHeader,
    ) -> Result<(), WalError> {
        let seg = geometry.segment_of(end);
        if !dir.list()?.contains(&seg) {
            return Ok(());
        }
        let from = geometry.offset_in_segment(end);
        // The end's own segment bounds the batches written into it; the
        // newest header too, should the end's be unreadable.
        let batch = dir
            .read_header(seg)
            .map_or(0, |h| h.max_batch_bytes)
            .max(template.max_batch_bytes);
        let until = (from + stale_window(u64::from(batch))).min(geometry.segment_size);
        if from >= until {
            return Ok(());
        }
        let len = (until - from) as usize;
        dir.with_segment(seg, true, |fh| {
            let (buf, n) = io
                .read_at(fh, from, IoBuf::zeroed(len))
                .wait()
                .map_err(WalError::io("read past the end of the log"))?;
            if buf[..n].iter().all(|&b| b == 0) {
                return Ok(());
            }
            io.write_at(fh, from, IoBuf::zeroed(n))
                .wait()
                .map_err(WalError::io("clear past the end of the log"))?;
            io.fdatasync(fh).wait().map_err(WalError::io("fdatasync"))
        })
    }

    fn read_tail(
        io: &Arc<dyn AsyncIo>,
        dir: &SegmentDir,
        geometry: Geometry,
        end: Lsn,
    ) -> Result<Vec<u8>, WalError> {
        let off = geometry.offset_in_segment(end);
        let block = off - off % 4096;
        if off == block {
            return Ok(Vec::new());
        }
        let seg = geometry.segment_of(end);
        let tail = dir.with_segment(seg, false, |fh| {
            io.read_exact_at(fh, block, IoBuf::zeroed((off - block) as usize))
                .wait()
                .map_err(WalError::io("read the log tail"))
        })?;
        Ok(tail.into_vec())
    }

    fn spawn_background(&self) -> JoinHandle<()> {
        let segments = self.segments.clone();
        let writer = self.writer.clone();
        let period = self
            .config
            .background_period_us()
            .map(Duration::from_micros);
        let size_trigger = self.config.flush_size_bytes;
        std::thread::Builder::new()
            .name("keel-wal".into())
            .spawn(move || background_loop(&segments, &writer, period, size_trigger))
            .unwrap_or_else(|e| panic!("cannot start the WAL thread: {e}"))
    }

    /// Appends a record; not durable until a flush covers it.
    pub fn append(&self, meta: &RecordMeta, payload: &[u8]) -> Result<Appended, WalError> {
        let appended = self.writer.append(meta, payload)?;
        self.after_append(appended);
        Ok(appended)
    }

    /// Wakes the log's thread when the size flush policy asks for a flush.
    /// (Another committer's flush may already have made this record, and
    /// more, durable: then nothing is unflushed up to it.)
    fn after_append(&self, appended: Appended) {
        if let Some(limit) = self.config.flush_size_bytes
            && appended.end.0.saturating_sub(self.writer.durable_end().0) >= limit
        {
            self.segments.wake.notify_all();
        }
    }

    /// Appends a typed payload with `meta`'s transaction and page (its type
    /// is taken from the payload).
    pub fn append_payload(
        &self,
        meta: RecordMeta,
        payload: &payload::Payload,
    ) -> Result<Appended, WalError> {
        // `encode` refuses a payload too large for a record; the capacity
        // is capped so that it gets to say so.
        let cap = RECORD_HEADER_SIZE.saturating_add(payload.encoded_len());
        self.append_encoded(meta, payload.kind(), cap.min(MAX_RECORD_SIZE), |out| {
            payload.encode(out)
        })
    }

    /// Appends a record of type `kind` whose payload `encode` writes
    /// straight behind the header space, in this thread's record buffer
    /// (`append.rs`; `cap` is about the record's length, reserved first).
    fn append_encoded(
        &self,
        meta: RecordMeta,
        kind: RecordType,
        cap: usize,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), WalError>,
    ) -> Result<Appended, WalError> {
        let meta = RecordMeta { kind, ..meta };
        let appended = append::with_record_buf(|record| {
            record.reserve(cap);
            record.resize(RECORD_HEADER_SIZE, 0);
            encode(record)?;
            self.writer.append_record(&meta, record)
        })?;
        self.after_append(appended);
        Ok(appended)
    }

    /// Makes every record up to and including the one at `lsn` durable
    /// (group commit: concurrent callers share one sync).
    pub fn flush(&self, lsn: Lsn) -> Result<(), WalError> {
        self.writer.wait_durable(lsn)
    }

    /// Waits as the commit policy requires for the commit record `rec`:
    /// until it is durable (`Sync`), or not at all (`Async`, bounded by the
    /// background flush).
    pub fn commit_wait(&self, rec: Appended) -> Result<(), WalError> {
        match self.config.commit {
            CommitMode::Sync => self.flush(rec.lsn),
            CommitMode::Async { .. } if self.writer.is_poisoned() => self.flush(rec.lsn),
            CommitMode::Async { .. } => Ok(()),
        }
    }

    /// Flushes everything appended so far.
    pub fn flush_all(&self) -> Result<(), WalError> {
        self.writer.push_all()
    }

    /// Whether segments are written with O_DIRECT: asked for by
    /// [`WalConfig::direct_io`] and supported by the file system.
    pub fn direct_io(&self) -> bool {
        self.dir.direct()
    }

    /// Position up to which the log is durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.writer.durable_end()
    }

    /// Position where the next record goes.
    pub fn end_lsn(&self) -> Lsn {
        self.geometry.record_position(self.writer.reserved_end())
    }

    /// The database id in the segment headers.
    pub fn database_id(&self) -> u64 {
        self.database_id
    }

    /// Segment size in bytes.
    pub fn segment_size(&self) -> u64 {
        self.geometry.segment_size
    }

    /// Most unsynced bytes in flight at once (written into new segment
    /// headers).
    pub fn max_batch_bytes(&self) -> u32 {
        self.config.max_batch_bytes
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether a failed write or sync poisoned the log (invariant 7).
    pub fn is_poisoned(&self) -> bool {
        self.writer.is_poisoned()
    }

    /// The refusal of a poisoned log, naming the failure that poisoned it;
    /// `None` while the log is healthy.
    pub fn poison_error(&self) -> Option<WalError> {
        self.writer
            .is_poisoned()
            .then(|| self.writer.poison_error())
    }

    /// Counters of the writer.
    pub fn stats(&self) -> WriterStats {
        self.writer.stats()
    }

    /// A reader from `from` (durable records only are guaranteed to be
    /// complete; call [`Wal::flush_all`] first to read everything).
    pub fn reader(&self, from: Lsn, mode: RecoveryMode) -> Result<WalReader, WalError> {
        Reader::new(
            self.io.clone(),
            self.dir.clone(),
            self.geometry,
            self.database_id,
            mode,
            from,
        )
    }

    /// The end of the last record that ends at or before `end`, a durable
    /// position (the end of a flush: a record's end, or a segment's end
    /// after the padding that fills its tail), reading from `from`, a
    /// record's LSN below `end` whose segment is not retired. A position
    /// after padding is not a record's end: a restore to it, or a stop at
    /// it, would fall between two records. Reads at most the segment
    /// before `end`, and only when `end` begins a segment.
    pub fn last_record_end(&self, end: Lsn, from: Lsn) -> Result<Lsn, WalError> {
        let g = self.geometry;
        if g.offset_in_segment(end) != 0 || end <= from {
            return Ok(end);
        }
        // Every segment holds at least one record (a record moves to the
        // next segment only when it does not fit, and begins it), so the
        // segment before `end` holds the last record before it.
        let start = g.first_record(g.segment_of(end) - 1).max(from);
        let mut last = None;
        for r in self
            .reader(start, RecoveryMode::AbsoluteConsistency)?
            .until(end)
        {
            let r = r?;
            if r.end() > end {
                break;
            }
            last = Some(r.end());
        }
        Ok(last.unwrap_or(end))
    }

    /// The reader recovery uses: from `from` exactly to where the log ended
    /// when it was opened. Anything that stops it earlier (an invalid
    /// record, a missing segment) is an error, whatever the recovery mode:
    /// the end was decided once, at open, and appends continue from there.
    pub fn recovery_reader(&self, from: Lsn, mode: RecoveryMode) -> Result<WalReader, WalError> {
        Ok(self.reader(from, mode)?.until(self.open_end))
    }

    /// Holds the log from `lsn` on: until the hold moves, no retirement
    /// removes, recycles or archives a segment holding log at or above it
    /// (an archiver that has shipped the log up to `lsn` elsewhere moves
    /// it forward; `None` lifts it). Checkpoints go on; only retirement
    /// waits.
    pub fn hold_from(&self, lsn: Option<Lsn>) {
        self.hold
            .store(lsn.map_or(u64::MAX, |l| l.0), Ordering::Release);
        self.gate.wake();
    }

    /// Bounds the durable log past the hold ([`gate`]; `None`: no bound):
    /// commits wait in [`Wal::admit_commit`] while more lies there.
    pub fn set_unarchived_limit(&self, limit: Option<UnarchivedLimit>) {
        self.gate.set_limit(limit);
    }

    /// The bound set by [`Wal::set_unarchived_limit`].
    pub fn unarchived_limit(&self) -> Option<UnarchivedLimit> {
        self.gate.limit()
    }

    /// Waits until a commit record may be appended under the unarchived
    /// limit ([`gate`]: the durable end counts, not the reserved one);
    /// `keep_waiting` false admits at once.
    pub fn admit_commit(&self, keep_waiting: impl Fn() -> bool) -> Result<(), Stalled> {
        self.gate
            .admit(|| (self.held_from(), self.durable_lsn()), keep_waiting)
    }

    /// Pins the log from `lsn` on until the returned [`LogPin`] is
    /// dropped: like [`Wal::hold_from`], but any number of pins coexist
    /// with the hold and with each other (an online backup pins its redo
    /// point while an archiver moves the hold). Retirement keeps every
    /// segment at or above the oldest of them.
    pub fn pin_from(&self, lsn: Lsn) -> LogPin {
        *self.pins.lock().entry(lsn).or_insert(0) += 1;
        LogPin {
            pins: self.pins.clone(),
            lsn,
        }
    }

    /// The oldest pin ([`Wal::pin_from`]), if any.
    pub fn oldest_pin(&self) -> Option<Lsn> {
        self.pins.lock().keys().next().copied()
    }

    /// The current hold ([`Wal::hold_from`]).
    pub fn held_from(&self) -> Option<Lsn> {
        let h = self.hold.load(Ordering::Acquire);
        (h != u64::MAX).then_some(Lsn(h))
    }

    /// Where the log ended when it was opened (before anything was
    /// appended by this process).
    pub fn open_end(&self) -> Lsn {
        self.open_end
    }

    /// Writes the last batch the log may hold only in the kernel's page
    /// cache again, byte for byte as it reads, and syncs it; returns the
    /// bytes written. Called by an unclean open before recovery reads the
    /// log (invariant 14).
    ///
    /// A sync that failed in a process that died since may have left its
    /// batch in the page cache only, marked clean (Linux after a writeback
    /// error): the next process reads it as log, and its own syncs, the
    /// open's data-directory sync included, never write it. A write marks
    /// those pages dirty again, so the sync that follows makes them what
    /// the disk holds. Only the last batch can be in that state: the
    /// writer syncs each batch before it writes the next (`batch`), and a
    /// failed sync poisons the log (invariant 7), so nothing is written
    /// after it. So the rewrite covers one batch and one record before the
    /// end (a batch holds at least one record, whatever its size; the
    /// larger of the segment header's and this configuration's batch size),
    /// and nothing before `not_before`, the last complete checkpoint's redo
    /// start, which that process synced. A batch never spans segments, but
    /// the window may, when the end is at the start of a segment.
    pub fn rewrite_tail(&self, not_before: Option<Lsn>) -> Result<u64, WalError> {
        const CHUNK: u64 = 1 << 20;
        let g = self.geometry;
        let end = self.open_end;
        let last = g.segment_of(end);
        let batch = self
            .dir
            .read_header(last)
            .map_or(0, |h| h.max_batch_bytes)
            .max(self.config.max_batch_bytes);
        let from = Lsn(end
            .0
            .saturating_sub(stale_window(u64::from(batch)))
            .max(not_before.map_or(0, |l| l.0)));
        let first = g.segment_of(from);
        let mut written = 0u64;
        for n in self
            .dir
            .list()?
            .into_iter()
            .filter(|&n| n >= first && n <= last)
        {
            let until = if n == last {
                g.offset_in_segment(end)
            } else {
                g.segment_size
            };
            if until == 0 {
                continue;
            }
            self.dir.with_segment(n, true, |fh| {
                let mut at = match g.segment_of(from) == n {
                    true => g.offset_in_segment(from) & !4095,
                    false => 0,
                };
                while at < until {
                    let len = (until - at).min(CHUNK) as usize;
                    let (mut buf, got) = self
                        .io
                        .read_at(fh, at, IoBuf::zeroed(len))
                        .wait()
                        .map_err(WalError::io("read the log to rewrite it"))?;
                    if got == 0 {
                        break;
                    }
                    buf.truncate(got);
                    self.io
                        .write_at(fh, at, buf)
                        .wait()
                        .map_err(WalError::io("rewrite the log"))?;
                    at += got as u64;
                    written += got as u64;
                }
                self.io
                    .fdatasync(fh)
                    .wait()
                    .map_err(WalError::io("sync the rewritten log"))
            })?;
        }
        Ok(written)
    }

    /// Retires every segment that lies wholly before `lsn` (the redo point
    /// of the last checkpoint), the hold ([`Wal::hold_from`]) and the
    /// oldest pin ([`Wal::pin_from`]), whichever is oldest, as the
    /// retention policy says. Under
    /// [`RetentionPolicy::Recycle`] the spares kept are sized for the next
    /// checkpoint cycle ([`WalConfig::min_wal_size_bytes`]): retired
    /// segments beyond that, and spares beyond it after a cycle that
    /// needed fewer, are deleted.
    pub fn retire_before(&self, lsn: Lsn) -> Result<RetireReport, WalError> {
        let held = Lsn(self.hold.load(Ordering::Acquire));
        let held = self.oldest_pin().map_or(held, |p| p.min(held));
        let limit = self.geometry.segment_of(lsn.min(held));
        let current = self.geometry.segment_of(self.writer.durable_end());
        let old: Vec<u64> = self
            .dir
            .list()?
            .into_iter()
            .filter(|&n| n < limit && n < current)
            .collect();
        let mut report = RetireReport::default();
        let mut st = self.segments.state.lock();
        let entered = current.saturating_sub(st.cycle_start);
        let keep = self.spare_target(&mut st, entered);
        st.cycle_start = current;
        for n in old {
            if st.spares.contains(&n) {
                continue;
            }
            match &self.config.retention {
                RetentionPolicy::Recycle if st.spares.len() < keep => {
                    // Renamed out of the log's names at once: a retired
                    // segment left under its own name would look like part
                    // of the log, below a gap, to every reader.
                    self.dir.make_spare(n)?;
                    st.spares.push(n);
                    report.recycled.push(n);
                }
                RetentionPolicy::Archive(to) => {
                    archive::archive_segment(&self.io, &self.dir, n, to)?;
                    self.dir.remove(n)?;
                    report.archived.push(n);
                }
                RetentionPolicy::Recycle | RetentionPolicy::Delete => {
                    self.dir.remove(n)?;
                    report.deleted.push(n);
                }
            }
        }
        while st.spares.len() > keep {
            let n = st.spares.remove(0);
            self.dir.remove_spare(n)?;
            report.deleted.push(n);
        }
        drop(st);
        if !report.deleted.is_empty() || !report.archived.is_empty() || !report.recycled.is_empty()
        {
            self.dir.sync()?;
        }
        Ok(report)
    }

    /// Flushes everything, stops the background thread and closes files.
    /// A poisoned log returns its poison: records appended before the
    /// failure may not be durable (invariant 16).
    pub fn close(mut self) -> Result<(), WalError> {
        let result = match self.poison_error() {
            Some(e) => Err(e),
            None => self.flush_all(),
        };
        self.stop_background();
        self.writer.close();
        result
    }

    fn stop_background(&mut self) {
        // Set under the state lock: the thread checks the flag under it
        // before it waits, so it either sees the flag or is already
        // waiting when the wake-up comes (none is lost).
        {
            let _st = self.segments.state.lock();
            self.segments.stop.store(true, Ordering::Release);
        }
        self.segments.wake.notify_all();
        if let Some(h) = self.background.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop_background();
        self.writer.close();
    }
}

/// Prepares the segment the writer will need next, and flushes on the
/// interval and size policies.
fn background_loop(
    segments: &SegmentManager,
    writer: &LogWriter,
    period: Option<Duration>,
    size_trigger: Option<u64>,
) {
    let idle = period.unwrap_or(Duration::from_millis(100));
    loop {
        let mut st = segments.state.lock();
        if segments.stop.load(Ordering::Acquire) {
            return;
        }
        // A preparation that already failed (here or in the writer's own
        // `ensure_prepared`, whose caller poisons the log with its error)
        // is not followed by another: its refusal would poison the log
        // with "closed" before the writer names the real failure.
        if let Some(n) = st.wanted.take()
            && !st.failed
            && !st.prepared.contains(&n)
            && !writer.is_poisoned()
            && let Err(e) = segments.prepare_locked(&mut st, n)
        {
            // A failed preparation may have been a failed fsync: preparing
            // the same file again would fsync it again, which proves
            // nothing (invariant 7). The log is poisoned; reopening runs
            // recovery, and the half-prepared file, under its temporary
            // name, is never part of the log.
            st.failed = true;
            writer.poison(e);
        }
        segments.wake.wait_for(&mut st, idle);
        drop(st);
        if segments.stop.load(Ordering::Acquire) || writer.is_poisoned() {
            continue;
        }
        let end = writer.reserved_end();
        let unflushed = end.0.saturating_sub(writer.durable_end().0);
        let by_size = size_trigger.is_some_and(|s| unflushed >= s);
        if unflushed > 0 && (period.is_some() || by_size) {
            // A failure poisoned the log; the committers report it.
            let _ = writer.push_all();
        }
    }
}

const _: () = assert!(SEGMENT_HEADER_SIZE.is_power_of_two());
