//! The log buffer and group commit.
//!
//! ## Appending
//!
//! An appender encodes its record into a buffer of its own (the payload
//! straight behind the header space, one allocation), *then* reserves
//! its position under a mutex held for a few arithmetic operations (the
//! position depends on whether the record still fits in the current segment,
//! so a plain atomic add would not do), writes the LSN and CRC into its
//! buffer, and hands the buffer to the pending map. Encoding and CRC, the
//! expensive part, run in parallel on every appending thread; no lock is held
//! while bytes are copied (the reservation-by-atomic-add idea of MySQL 8's log
//! buffer, with the copy replaced by a hand-over of an owned buffer).
//!
//! The pending queue holds records by LSN. Records enter it nearly in order
//! (two appenders may race between reservation and hand-over, and the later
//! one is then placed before the end); the flusher takes only the
//! contiguous prefix that starts at the last written position.
//!
//! ## Group commit (invariant 6)
//!
//! `flush(lsn)` returns once every byte up to the end of the record at `lsn`
//! is on stable storage. Committers elect a leader: the first one to find no
//! flush running becomes the flusher, takes *everything* contiguous that is
//! pending (up to one batch), writes it and fdatasyncs it on its own thread
//! ([`AsyncIo::write_at_blocking`], no hand-off to an I/O thread), then
//! publishes the durable end.
//!
//! Committers that arrive meanwhile park in the *open generation*. A flush
//! closes the open generation before it takes its batch, so every committer
//! parked in it has its record pending by then, and flushes through the
//! highest LSN parked there. After the sync it rings the generation's bell:
//! one futex word per generation parity, bumped under the `flush` lock and
//! woken with one `FUTEX_WAKE` for all its sleepers. Before sleeping, a
//! committer yields its core a few times
//! ([`WalConfig::commit_spin_yields`]): with more committers than cores,
//! the flush often completes while the others run, and the committer goes
//! on without a sleep and a wake-up, which on two cores cost more CPU than
//! the rest of a commit (BENCHMARKS.md).
//!
//! - If committers parked in the generation opened meanwhile, the leader
//!   flushes again for them: by then the next batch holds everything that
//!   arrived during the sync. First it yields a few times (the same
//!   setting) until as many committers have parked as its last flush woke,
//!   so that they share this sync instead of waiting for the next one. After its own record is durable it does
//!   this at most [`CONTINUE_LIMIT`] times, then *hands the lead over*: the
//!   first committer to see that takes it, even one whose own record is
//!   durable by now (one sleeper is woken for it; the bell is bumped so the
//!   ones not yet asleep look too).
//! - When nobody waits, the lead is freed.
//!
//! So a flush starts the moment the device is free (no timer), one sync
//! serves every committer waiting at the time, and there is one write and
//! one sync in flight at most: the next batch is written only after the
//! previous sync returned, which the reader's torn-tail rule relies on (at
//! most one unsynced batch).
//!
//! ## Failure (invariant 7)
//!
//! A failed write or sync poisons the log: the error is stored, every waiter
//! is woken with it, later appends and flushes fail, and nothing is retried.
//! Reopening the database runs recovery.
//!
//! ## State
//!
//! ```text
//!   durable <= written_end <= reserved_end
//!   [ durable | written, not yet synced | pending or being encoded | free ]
//! ```
//! `durable` (an atomic, so a committer checks it without a lock) only moves
//! after a successful sync, under the `flush` lock; `written_end` is the
//! leader's private cursor.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use keel_io::{AsyncIo, FileHandle, IoBuf};
use parking_lot::{Condvar, Mutex};

use crate::error::WalError;
use crate::types::Lsn;
use crate::wal::config::WalConfig;
use crate::wal::record::{
    MAX_RECORD_SIZE, RECORD_HEADER_SIZE, RecordMeta, RecordType, encode_header, encode_unsealed,
    seal,
};
use crate::wal::segment::{Geometry, SEGMENT_HEADER_SIZE, SegmentDir};

/// Alignment of O_DIRECT writes.
const BLOCK: u64 = 4096;

/// A record placed in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Its LSN (start position).
    pub lsn: Lsn,
    /// One past its last byte.
    pub end: Lsn,
}

/// Counters of the writer, for `keel stats` and the benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records appended (padding excluded).
    pub records: u64,
    /// Bytes appended, headers and padding included.
    pub bytes: u64,
    /// Flushes that wrote and synced.
    pub flushes: u64,
    /// Bytes written by flushes (including rewritten partial blocks).
    pub bytes_written: u64,
    /// Segments the writer had to prepare itself because the background
    /// preparer was behind (a commit waited on file creation).
    pub inline_prepares: u64,
    /// Record frames written by flushes (padding included):
    /// `flushed_records / flushes` is the average group-commit batch.
    pub flushed_records: u64,
    /// Flushes a leader ran for other committers after its own record was
    /// durable (pipelined: no hand-over before the next flush).
    pub continued_flushes: u64,
    /// Times a leader handed the lead over to the parked committers.
    pub handoffs: u64,
}

struct Reserve {
    /// Where the next record goes.
    next: Lsn,
}

/// Appended records not yet taken by a flush.
struct Pending {
    /// `(LSN, record)`, ascending by LSN.
    records: VecDeque<(u64, Vec<u8>)>,
    bytes: usize,
}

impl Pending {
    /// Adds a record: at the back when it is the highest LSN (nearly
    /// always), else where its LSN belongs.
    fn insert(&mut self, lsn: u64, record: Vec<u8>) {
        self.bytes += record.len();
        match self.records.back() {
            Some(&(last, _)) if last > lsn => {
                let at = self.records.partition_point(|&(l, _)| l < lsn);
                self.records.insert(at, (lsn, record));
            }
            _ => self.records.push_back((lsn, record)),
        }
    }

    /// The length of the first record if it starts at `lsn`.
    fn first_at(&self, lsn: u64) -> Option<usize> {
        self.records
            .front()
            .filter(|(l, _)| *l == lsn)
            .map(|(_, r)| r.len())
    }
}

/// Who flushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lead {
    /// Nobody: the next committer that needs a flush leads.
    Free,
    /// A leader is flushing; committers park.
    Running,
    /// The leader left with committers parked: the first committer to see
    /// this leads, even one whose own record is durable by now.
    HandedOver,
}

struct FlushState {
    lead: Lead,
    /// The generation a committer that parks now joins: the next flush to
    /// start covers it.
    open: u64,
    /// Committers parked in the open generation.
    open_count: usize,
    /// Highest LSN parked in the open generation (0 while nobody is).
    open_max: u64,
    poison: Option<Arc<WalError>>,
}

/// A futex word per generation parity: the committers of generation `g`
/// read `bells[g % 2]` when they park and sleep until it changes. Two words
/// are enough: `g + 2` (the same word) opens only when the flush of `g + 1`
/// starts, after `g`'s bell was bumped (under the `flush` lock), so a
/// committer of `g + 2` reads the word after that bump and waits for the
/// next one; a wake-up for `g` arriving late only makes it look again.
struct Bells([AtomicU32; 2]);

impl Bells {
    fn of(&self, generation: u64) -> &AtomicU32 {
        &self.0[(generation % 2) as usize]
    }
}

/// Most flushes a leader runs for others after its own record is durable
/// before it hands the lead over (bounds its commit latency).
const CONTINUE_LIMIT: u32 = 4;

/// State only the flush leader touches (one leader at a time).
struct WriterCursor {
    written_end: Lsn,
    /// Bytes of the partial block at `written_end` (O_DIRECT rewrites it).
    tail: Vec<u8>,
    open: Option<(u64, FileHandle)>,
    /// The previous flush's write buffer, returned by its write: the next
    /// flush stages into it (no fresh megabyte, and no page faults on it,
    /// per flush).
    spare: Option<IoBuf>,
}

/// Hooks the writer needs from the segment manager.
pub(crate) trait SegmentSource: Send + Sync {
    /// Makes sure segment `n` is prepared; returns whether this call had to
    /// prepare it (the background preparer was behind).
    fn ensure_prepared(&self, n: u64) -> Result<bool, WalError>;
    /// The writer started using segment `n`: prepare `n + 1` in the background.
    fn entered(&self, n: u64);
}

/// The log buffer and group commit machinery.
pub(crate) struct LogWriter {
    io: Arc<dyn AsyncIo>,
    dir: Arc<SegmentDir>,
    segments: Arc<dyn SegmentSource>,
    geometry: Geometry,
    max_batch: usize,
    capacity: usize,
    direct: bool,
    /// [`WalConfig::commit_spin_yields`].
    spin_yields: u32,
    reserve: Mutex<Reserve>,
    pending: Mutex<Pending>,
    /// Signalled when records enter the map (a leader waits for a gap to
    /// fill) and when they leave it (appenders wait for buffer room).
    pending_cv: Condvar,
    flush: Mutex<FlushState>,
    /// Position up to which the log is durable; only moves forward, after a
    /// successful sync, under the `flush` lock (read without it).
    durable: AtomicU64,
    /// `lead == HandedOver`, readable without the lock by a committer whose
    /// record is durable (it must take the lead before it returns).
    handed_over: AtomicBool,
    bells: Bells,
    cursor: Mutex<WriterCursor>,
    poisoned: AtomicBool,
    records: AtomicU64,
    bytes: AtomicU64,
    stats: Mutex<WriterStats>,
}

impl LogWriter {
    /// A writer that continues the log at `end` (the position after the
    /// last valid record). `tail` is the content of the block holding `end`
    /// up to `end` (needed with O_DIRECT).
    pub(crate) fn new(
        io: Arc<dyn AsyncIo>,
        dir: Arc<SegmentDir>,
        segments: Arc<dyn SegmentSource>,
        geometry: Geometry,
        config: &WalConfig,
        end: Lsn,
        tail: Vec<u8>,
    ) -> LogWriter {
        LogWriter {
            io,
            dir,
            segments,
            geometry,
            max_batch: config.max_batch_bytes as usize,
            capacity: config.buffer_capacity_bytes,
            direct: config.direct_io,
            spin_yields: config.commit_spin_yields,
            reserve: Mutex::new(Reserve { next: end }),
            pending: Mutex::new(Pending {
                records: VecDeque::new(),
                bytes: 0,
            }),
            pending_cv: Condvar::new(),
            flush: Mutex::new(FlushState {
                lead: Lead::Free,
                open: 0,
                open_count: 0,
                open_max: 0,
                poison: None,
            }),
            durable: AtomicU64::new(end.0),
            handed_over: AtomicBool::new(false),
            bells: Bells([AtomicU32::new(0), AtomicU32::new(0)]),
            cursor: Mutex::new(WriterCursor {
                written_end: end,
                tail,
                open: None,
                spare: None,
            }),
            poisoned: AtomicBool::new(false),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            stats: Mutex::new(WriterStats::default()),
        }
    }

    pub(crate) fn poison_error(&self) -> WalError {
        let cause = self.flush.lock().poison.clone();
        match cause {
            Some(cause) => WalError::Poisoned { cause },
            None => WalError::Closed,
        }
    }

    /// Appends a record; returns where it went. It is not durable until a
    /// flush covers it.
    pub(crate) fn append(&self, meta: &RecordMeta, payload: &[u8]) -> Result<Appended, WalError> {
        let len = RECORD_HEADER_SIZE + payload.len();
        if len > MAX_RECORD_SIZE {
            return Err(WalError::RecordTooLarge {
                len,
                max: MAX_RECORD_SIZE,
            });
        }
        let mut record = Vec::with_capacity(len);
        record.resize(RECORD_HEADER_SIZE, 0);
        record.extend_from_slice(payload);
        self.append_record(meta, record)
    }

    /// Appends a record whose payload `record` already holds behind
    /// [`RECORD_HEADER_SIZE`] bytes of header space (filled in here).
    pub(crate) fn append_record(
        &self,
        meta: &RecordMeta,
        mut record: Vec<u8>,
    ) -> Result<Appended, WalError> {
        let len = record.len();
        if len > MAX_RECORD_SIZE {
            return Err(WalError::RecordTooLarge {
                len,
                max: MAX_RECORD_SIZE,
            });
        }
        debug_assert!(len >= RECORD_HEADER_SIZE, "record without header space");
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poison_error());
        }
        self.wait_for_room(len)?;
        let (lsn, padding) = self.reserve(len as u64);
        encode_header(&mut record, meta, lsn);
        let mut pending = self.pending.lock();
        if let Some((at, pad_len)) = padding {
            pending.insert(at.0, padding_bytes(at, pad_len));
        }
        pending.insert(lsn.0, record);
        drop(pending);
        self.pending_cv.notify_all();
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        Ok(Appended {
            lsn,
            end: Lsn(lsn.0 + len as u64),
        })
    }

    /// Reserves `len` bytes; returns the record's LSN and, when it had to
    /// skip to the next segment, the padding that fills the old one's tail.
    fn reserve(&self, len: u64) -> (Lsn, Option<(Lsn, usize)>) {
        debug_assert!(
            len <= self.geometry.segment_size - SEGMENT_HEADER_SIZE as u64,
            "a record larger than a segment's data area (inv. 15)"
        );
        let mut r = self.reserve.lock();
        let at = self.geometry.record_position(r.next);
        let seg_end = self.geometry.segment_end(at);
        if at.0 + len <= seg_end.0 {
            r.next = Lsn(at.0 + len);
            return (at, None);
        }
        let pad = (seg_end.0 - at.0) as usize;
        let lsn = self.geometry.record_position(seg_end);
        r.next = Lsn(lsn.0 + len);
        (lsn, Some((at, pad)))
    }

    /// Blocks while the buffer is over capacity (flushes drain it).
    fn wait_for_room(&self, len: usize) -> Result<(), WalError> {
        let mut pending = self.pending.lock();
        while pending.bytes + len > self.capacity && pending.bytes > 0 {
            drop(pending);
            // Drain by flushing what is there; a leader may already be doing it.
            let end = self.reserve.lock().next;
            self.flush_through(Lsn(end.0.saturating_sub(1)))?;
            pending = self.pending.lock();
        }
        Ok(())
    }

    /// Position after the last reserved record.
    pub(crate) fn reserved_end(&self) -> Lsn {
        self.reserve.lock().next
    }

    /// Position up to which the log is durable.
    pub(crate) fn durable_end(&self) -> Lsn {
        Lsn(self.durable.load(Ordering::Acquire))
    }

    /// Makes every record up to and including the one at `lsn` durable.
    pub(crate) fn flush_through(&self, lsn: Lsn) -> Result<(), WalError> {
        if self.settled(lsn).is_none() {
            // No record starts at or past the reserved end: a leader asked
            // to flush through it would wait for bytes nobody will append.
            let end = self.reserved_end();
            if lsn >= end {
                return Err(WalError::FlushBeyondEnd { lsn, end });
            }
        }
        loop {
            if let Some(done) = self.settled(lsn)
                && (done.is_err() || !self.handed_over.load(Ordering::Acquire))
            {
                return done;
            }
            let mut st = self.flush.lock();
            if st.lead == Lead::HandedOver {
                st.lead = Lead::Running;
                self.handed_over.store(false, Ordering::Release);
                drop(st);
                self.lead(lsn);
                continue;
            }
            // Checked again under the lock: a leader publishes the durable
            // end (or the poison) and rings the bells under it.
            if let Some(cause) = &st.poison {
                return Err(WalError::Poisoned {
                    cause: cause.clone(),
                });
            }
            if self.durable.load(Ordering::Acquire) > lsn.0 {
                return Ok(());
            }
            if st.lead == Lead::Running {
                // Park in the open generation: the flush that closes it
                // covers `lsn` and then rings its bell.
                let bell = self.bells.of(st.open);
                let rung = bell.load(Ordering::Acquire);
                st.open_count += 1;
                st.open_max = st.open_max.max(lsn.0);
                drop(st);
                // Yield first: with more committers than cores the flush
                // often completes while the others run, sparing this
                // committer a sleep and the leader a wake-up.
                for _ in 0..self.spin_yields {
                    if bell.load(Ordering::Acquire) != rung {
                        break;
                    }
                    std::thread::yield_now();
                }
                // Returns at once if the bell rang since `rung` was read
                // (the futex checks the word atomically with going to
                // sleep), so a ring is never slept through.
                atomic_wait::wait(bell, rung);
                // Durable, poisoned, handed the lead, or woken spuriously:
                // the checks above tell which.
                continue;
            }
            st.lead = Lead::Running;
            drop(st);
            self.lead(lsn);
        }
    }

    /// `Some` once the record at `lsn` is durable or the log is poisoned.
    fn settled(&self, lsn: Lsn) -> Option<Result<(), WalError>> {
        if self.poisoned.load(Ordering::Acquire) {
            return Some(Err(self.poison_error()));
        }
        (self.durable.load(Ordering::Acquire) > lsn.0).then_some(Ok(()))
    }

    /// Runs flushes as the leader (`lead` is `Running` for it) until the
    /// record at `lsn` is durable, then for the committers that parked
    /// meanwhile (at most [`CONTINUE_LIMIT`] more), then hands the lead
    /// over or frees it. Each flush closes the open generation, flushes
    /// through the highest LSN parked in it and rings its bell; a failure
    /// rings every bell to the poison (invariant 7).
    fn lead(&self, lsn: Lsn) {
        let mut extra = 0u32;
        // Committers parked in the generation this leader closed last: its
        // flush woke them all.
        let mut woke = 0usize;
        loop {
            self.await_returning(woke);
            let (generation, parked, parked_max) = {
                let mut st = self.flush.lock();
                let generation = st.open;
                st.open += 1;
                (
                    generation,
                    std::mem::take(&mut st.open_count),
                    std::mem::take(&mut st.open_max),
                )
            };
            let target = Lsn(parked_max.max(lsn.0));
            let result = self.flush_batch(target);
            let mut st = self.flush.lock();
            match result {
                Ok(end) => {
                    self.durable.fetch_max(end.0, Ordering::Release);
                }
                Err(e) => {
                    // The first failure is the cause: a flush that fails
                    // because a segment preparation already poisoned the
                    // log must not replace that cause with its own.
                    st.poison.get_or_insert_with(|| Arc::new(e));
                    self.poisoned.store(true, Ordering::Release);
                }
            }
            let poisoned = st.poison.is_some();
            let durable = self.durable.load(Ordering::Acquire);
            let own_done = durable > lsn.0;
            // Left to do: the leader's own record or a parked one the batch
            // did not reach (it stops at a segment's end and at one batch),
            // or committers parked in the generation opened meanwhile.
            let more = !poisoned && (durable <= target.0 || st.open_count > 0);
            let go_on = more && (!own_done || extra < CONTINUE_LIMIT);
            let open = st.open;
            // Rung under the lock, so a committer that parks after this
            // reads the new value and cannot sleep through the ring.
            self.bells.of(generation).fetch_add(1, Ordering::Release);
            if !go_on {
                if more {
                    st.lead = Lead::HandedOver;
                    self.handed_over.store(true, Ordering::Release);
                } else {
                    st.lead = Lead::Free;
                }
                if more || poisoned {
                    // Everyone parked in the open generation and not yet
                    // asleep sees this and checks for itself.
                    self.bells.of(open).fetch_add(1, Ordering::Release);
                }
            }
            drop(st);
            if parked > 0 {
                atomic_wait::wake_all(self.bells.of(generation));
            }
            if poisoned {
                atomic_wait::wake_all(self.bells.of(open));
            } else if more && !go_on {
                // One sleeper of the open generation wakes and takes the
                // lead (a committer arriving first may take it instead).
                // Committers of the closed generation the batch did not
                // reach were woken by its bell and take it the same way.
                atomic_wait::wake_one(self.bells.of(open));
                self.stats.lock().handoffs += 1;
            }
            self.pending_cv.notify_all();
            if !go_on {
                return;
            }
            woke = parked;
            if own_done {
                extra += 1;
                self.stats.lock().continued_flushes += 1;
            }
        }
    }

    /// Before a flush that follows one which woke `woke` committers:
    /// yields (at most [`WalConfig::commit_spin_yields`] times) until as
    /// many have parked again, so that they share this sync rather than
    /// wait through it for the next one: the "small wait when it helps" of
    /// group commit, a few microseconds, and none after a flush that woke
    /// nobody (a lone committer never waits).
    fn await_returning(&self, woke: usize) {
        if woke == 0 {
            return;
        }
        for _ in 0..self.spin_yields {
            if self.flush.lock().open_count >= woke {
                return;
            }
            std::thread::yield_now();
        }
    }

    /// Flushes everything pending and contiguous (at least through `lsn`,
    /// waiting for appenders that reserved earlier positions to hand over
    /// their records), at most one batch and one segment. Returns the new
    /// durable end.
    fn flush_batch(&self, lsn: Lsn) -> Result<Lsn, WalError> {
        let mut cur = self.cursor.lock();
        let start = self.geometry.record_position(cur.written_end);
        let mut records = self.take_contiguous(start, lsn);
        if records.is_empty() {
            return Ok(cur.written_end);
        }
        for r in records.iter_mut().filter(|r| r.len() >= RECORD_HEADER_SIZE) {
            seal(r, start);
        }
        let batch: usize = records.iter().map(Vec::len).sum();
        let seg = self.geometry.segment_of(start);
        let fh = self.segment_handle(&mut cur, seg)?;
        let (offset, buf) = self.stage(&mut cur, start, &records);
        let write_len = buf.len() as u64;
        let end = Lsn(start.0 + batch as u64);
        // With O_DIRECT the next flush rewrites the block holding `end`:
        // keep its bytes (at most one block) from the staged buffer.
        let next_tail = if self.direct {
            let staged_end = cur.tail.len() + batch;
            let keep = (end.0 % BLOCK) as usize;
            buf[staged_end - keep..staged_end].to_vec()
        } else {
            Vec::new()
        };
        // On the leader's own thread: it would only wait for the answer.
        let buf = self
            .io
            .write_at_blocking(fh, offset, buf)
            .map_err(WalError::io("write"))?;
        cur.spare = Some(buf);
        self.io
            .fdatasync_blocking(fh)
            .map_err(WalError::io("fdatasync"))?;
        cur.written_end = end;
        cur.tail = next_tail;
        let mut pending = self.pending.lock();
        pending.bytes -= batch;
        drop(pending);
        let mut stats = self.stats.lock();
        stats.flushes += 1;
        stats.bytes_written += write_len;
        stats.flushed_records += records.len() as u64;
        Ok(end)
    }

    /// Removes and returns the contiguous records from `start`, up to one
    /// batch and the end of `start`'s segment; waits for gaps before `lsn`.
    fn take_contiguous(&self, start: Lsn, lsn: Lsn) -> Vec<Vec<u8>> {
        let seg_end = self.geometry.segment_end(start);
        let mut out = Vec::new();
        let mut pos = start;
        let mut size = 0usize;
        let mut pending = self.pending.lock();
        loop {
            let at = if pos == seg_end { break } else { pos };
            match pending.first_at(at.0) {
                Some(len) if out.is_empty() || size + len <= self.max_batch => {
                    let (_, r) = pending.records.pop_front().unwrap_or_default();
                    pos = Lsn(at.0 + r.len() as u64);
                    size += r.len();
                    out.push(r);
                }
                Some(_) => break,
                None if at <= lsn && at < self.reserve.lock().next => {
                    // Someone reserved this position and is still encoding.
                    self.pending_cv.wait(&mut pending);
                }
                None => break,
            }
        }
        out
    }

    fn segment_handle(&self, cur: &mut WriterCursor, seg: u64) -> Result<FileHandle, WalError> {
        if let Some((n, fh)) = cur.open
            && n == seg
        {
            return Ok(fh);
        }
        if self.segments.ensure_prepared(seg)? {
            self.stats.lock().inline_prepares += 1;
        }
        let fh = self.dir.open_segment(seg)?;
        if let Some((_, old)) = cur.open.replace((seg, fh)) {
            let _ = self.io.close(old).wait();
        }
        self.segments.entered(seg);
        Ok(fh)
    }

    /// Builds the write: the records at their file offset; with O_DIRECT,
    /// from the start of the block (the partial block is rewritten with the
    /// same bytes it had) and zero-padded to a block.
    fn stage(&self, cur: &mut WriterCursor, start: Lsn, records: &[Vec<u8>]) -> (u64, IoBuf) {
        let file_off = self.geometry.offset_in_segment(start);
        let batch: usize = records.iter().map(Vec::len).sum();
        let spare = cur.spare.take();
        if !self.direct {
            let mut buf = spare.map(IoBuf::into_vec).unwrap_or_default();
            buf.clear();
            buf.reserve(batch);
            for r in records {
                buf.extend_from_slice(r);
            }
            return (file_off, IoBuf::from(buf));
        }
        let block_off = file_off - file_off % BLOCK;
        let tail_len = (file_off - block_off) as usize;
        debug_assert_eq!(cur.tail.len(), tail_len, "O_DIRECT tail out of step");
        let len = (tail_len + batch).next_multiple_of(BLOCK as usize);
        // Emptied, then grown: growth zeroes, so the padding after the
        // records is zeroes whatever the buffer held before.
        let mut buf = spare
            .filter(IoBuf::is_aligned)
            .unwrap_or_else(|| IoBuf::aligned(0));
        buf.truncate(0);
        buf.resize(len);
        buf[..tail_len].copy_from_slice(&cur.tail);
        let mut at = tail_len;
        for r in records {
            buf[at..at + r.len()].copy_from_slice(r);
            at += r.len();
        }
        (block_off, buf)
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> WriterStats {
        let mut s = *self.stats.lock();
        s.records = self.records.load(Ordering::Relaxed);
        s.bytes = self.bytes.load(Ordering::Relaxed);
        s
    }

    /// Poisons the log with `error`, a failure outside a flush (a segment
    /// preparation): every waiter is woken with it and nothing is retried
    /// (invariant 7). A poison already there is kept as the cause.
    pub(crate) fn poison(&self, error: WalError) {
        let mut st = self.flush.lock();
        if st.poison.is_none() {
            st.poison = Some(Arc::new(error));
        }
        self.poisoned.store(true, Ordering::Release);
        for bell in &self.bells.0 {
            bell.fetch_add(1, Ordering::Release);
        }
        drop(st);
        for bell in &self.bells.0 {
            atomic_wait::wake_all(bell);
        }
        self.pending_cv.notify_all();
    }

    /// Whether an earlier failure poisoned the log.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Closes the open segment handle.
    pub(crate) fn close(&self) {
        if let Some((_, fh)) = self.cursor.lock().open.take() {
            let _ = self.io.close(fh).wait();
        }
    }
}

/// The bytes that fill a segment's tail of `len` bytes at `at`: a padding
/// record when a header fits, zeroes otherwise (the reader skips a tail too
/// short for a header).
fn padding_bytes(at: Lsn, len: usize) -> Vec<u8> {
    if len < RECORD_HEADER_SIZE {
        return vec![0u8; len];
    }
    let mut buf = vec![0u8; len];
    let meta = RecordMeta::new(RecordType::Padding);
    let zeros = vec![0u8; len - RECORD_HEADER_SIZE];
    encode_unsealed(&mut buf, &meta, at, &zeros);
    buf
}

/// Headers are skipped by [`Geometry::record_position`]; records never
/// start inside one.
const _: () = assert!((SEGMENT_HEADER_SIZE as u64).is_multiple_of(BLOCK));
