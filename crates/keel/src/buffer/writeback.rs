//! Writing dirty pages: the one write-back routine every path uses
//! (eviction, `flush_page`, `flush_file`/`flush_all`, the background
//! writer), and the data-file syncs.
//!
//! [`Shared::write_frames`] takes frames its caller marked `writing` and:
//!
//! 1. copies each page under a shared latch (`try_read` on the eviction
//!    path, see the essay's protocol, and in `flush_all`'s batches, which
//!    then write a page they found latched alone), noting its modification
//!    counter while the latch excludes every writer;
//! 2. seals each copy's CRC32C (computed at write time, invariant 2);
//! 3. checks that the pool is still not poisoned (a change the log refused
//!    poisons it before its latch is released, so a copy that holds such a
//!    change is refused here; invariant 16), then flushes the WAL through
//!    the highest page LSN of the batch and syncs the page images a torn
//!    write would be repaired from (`WalFlusher::sync_page_images`,
//!    invariant 5; a failure poisons the pool), holding no latch and no
//!    mutex (invariants 4 and 11). If any fails nothing is written;
//! 4. submits every write at once through `AsyncIo` (pages next to each
//!    other in one file as one vectored write), then waits for all;
//! 5. under the mutex: clears `writing`, and marks a frame clean only if
//!    its counter did not move since the copy; a frame changed since keeps
//!    as its `rec_lsn` the LSN of the first change after the copy.
//!
//! Steps 1–4 and 4–5 are two halves (`start_frames`, `finish_frames`), so
//! that `flush_all` copies and submits its next batch while the previous
//! one's writes are under way (the backend copies them into the page
//! cache on its own threads), and copies each batch into the buffers its
//! previous writes returned instead of fresh, zeroed ones.
//!
//! `flush_all` and `flush_file` end in an fdatasync of the files they
//! wrote. So that the device writes while they copy the next batches,
//! rather than all at once in that sync, they start the writeback of each
//! batch's writes as soon as these complete (`AsyncIo::start_writeback`,
//! PostgreSQL's `checkpoint_flush_after`). That is advice: only the sync
//! makes the pages durable. A failed writeback is a failed sync (invariant
//! 7): the kernel may have dropped pages it could not write, so the pool is
//! poisoned, and a later sync is never trusted to cover them. Eviction and
//! the background writer start none: no sync follows their writes soon.

use keel_io::{FileHandle, IoBuf, IoFuture, Request};
use rustc_hash::FxHashMap as HashMap;

use super::BufferError;
use super::FileId;
use super::frame::{FileEntry, FrameState, PageKey};
use super::pool::{Shared, page_offset};
use super::stats::bump;
use crate::page;
use crate::types::Lsn;

/// Pages `flush_all` writes per batch: enough for the backend to overlap
/// many writes, few enough that the copies stay at 512 KiB of memory.
const FLUSH_BATCH_PAGES: usize = 64;

/// How `write_frames` takes a page's latch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LatchMode {
    /// Wait for it: the caller holds no latch.
    Block,
    /// Give up on the page if it is latched exclusive: the caller (a miss,
    /// or the background writer) must not wait for a latch holder that may
    /// itself be waiting for a frame.
    Try,
}

/// What `write_frames` did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WriteOutcome {
    /// Pages written.
    pub(crate) written: usize,
}

/// One page on its way to disk.
struct Job {
    frame: usize,
    key: PageKey,
    handle: FileHandle,
    mod_count: u64,
    lsn: Lsn,
    buf: IoBuf,
}

/// What copying one frame gave.
enum Copied {
    Ready(Job),
    /// Latch busy (`LatchMode::Try`).
    Skipped(usize),
}

/// A batch whose writes `start_frames` submitted and `finish_frames` has
/// not waited for yet: its frames are still marked `writing`.
pub(crate) struct InFlight {
    frames: Vec<usize>,
    jobs: Vec<Job>,
    runs: Vec<std::ops::Range<usize>>,
    pending: Vec<IoFuture<Vec<IoBuf>>>,
    first_err: Option<BufferError>,
}

impl Shared {
    /// Writes the given frames (each Ready, dirty, mapped, and marked
    /// `writing` by the caller). Every frame's `writing` flag is cleared
    /// before this returns, whatever happens. Returns the first error.
    pub(crate) fn write_frames(
        &self,
        frames: Vec<usize>,
        mode: LatchMode,
    ) -> Result<WriteOutcome, BufferError> {
        let mut spare = Vec::new();
        let started = self.start_frames(frames, mode, &mut spare)?;
        self.finish_frames(started, &mut spare)
    }

    /// Steps 1–4 of `write_frames`: copies (into `spare`'s page buffers
    /// while it has any), seals, makes the log durable and submits. On an
    /// error every frame's `writing` flag is cleared and nothing was
    /// submitted; on success `finish_frames` must be called.
    fn start_frames(
        &self,
        frames: Vec<usize>,
        mode: LatchMode,
        spare: &mut Vec<IoBuf>,
    ) -> Result<InFlight, BufferError> {
        if self.is_poisoned() {
            self.end_writes(&frames, &[]);
            return Err(self.poison_error());
        }
        let mut jobs = Vec::with_capacity(frames.len());
        let mut skipped = Vec::new();
        let mut first_err = None;
        for &frame in &frames {
            match self.copy_frame(frame, mode, spare) {
                Ok(Copied::Ready(job)) => jobs.push(job),
                Ok(Copied::Skipped(f)) => skipped.push(f),
                Err(e) => {
                    skipped.push(frame);
                    first_err.get_or_insert(e);
                }
            }
        }
        // Checked again after the copies (invariants 4 and 16): a change
        // the log refused poisons the pool before its latch is released,
        // so a copy taken under that latch afterwards sees the poison here.
        // The check at the top misses it when this write-back passed it
        // while waiting for the latch, and the copy's page LSN, the last
        // logged change's, may be durable already.
        if self.is_poisoned() {
            self.end_writes(&frames, &[]);
            return Err(self.poison_error());
        }
        let max_lsn = jobs.iter().map(|j| j.lsn).max().unwrap_or(Lsn::ZERO);
        if let Err(e) = self.ensure_wal_durable(max_lsn) {
            self.end_writes(&frames, &[]);
            return Err(e);
        }
        if !jobs.is_empty()
            && let Err(source) = self.wal.sync_page_images()
        {
            self.end_writes(&frames, &[]);
            return Err(self.poison(BufferError::PageImages { source }));
        }
        // Pages next to each other in one file go down as one vectored
        // write (step 4): a checkpoint's sorted batches of a freshly loaded
        // file become a few large writes instead of one per page.
        jobs.sort_unstable_by_key(|j| j.key);
        let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            match runs.last_mut() {
                Some(run)
                    if jobs[run.end - 1].key.file == job.key.file
                        && jobs[run.end - 1].handle == job.handle
                        && jobs[run.end - 1].key.page.0.checked_add(1) == Some(job.key.page.0) =>
                {
                    run.end = i + 1;
                }
                _ => runs.push(i..i + 1),
            }
        }
        let pending: Vec<IoFuture<Vec<IoBuf>>> = runs
            .iter()
            .map(|run| {
                let bufs: Vec<IoBuf> = jobs[run.clone()]
                    .iter_mut()
                    .map(|job| {
                        debug_assert!(
                            job.lsn.0 <= self.wal_durable.load(std::sync::atomic::Ordering::SeqCst),
                            "invariant 4: page {} written before the WAL is durable through {}",
                            job.key.page,
                            job.lsn
                        );
                        std::mem::replace(&mut job.buf, IoBuf::zeroed(0))
                    })
                    .collect();
                let first = &jobs[run.start];
                self.io
                    .writev_at(first.handle, page_offset(first.key.page), bufs)
            })
            .collect();
        Ok(InFlight {
            frames,
            jobs,
            runs,
            pending,
            first_err,
        })
    }

    /// Step 5 of `write_frames`: waits for the writes `start_frames`
    /// submitted, records them, and clears every frame's `writing` flag.
    /// The page buffers the writes return go to `spare`. Returns the first
    /// error of the batch.
    fn finish_frames(
        &self,
        batch: InFlight,
        spare: &mut Vec<IoBuf>,
    ) -> Result<WriteOutcome, BufferError> {
        let InFlight {
            frames,
            jobs,
            runs,
            pending,
            mut first_err,
        } = batch;
        let results: Vec<_> = pending.into_iter().map(|f| f.wait()).collect();
        let mut done = Vec::with_capacity(jobs.len());
        for (run, result) in runs.into_iter().zip(results) {
            match result {
                Ok(bufs) => {
                    spare.extend(bufs);
                    done.extend(
                        jobs[run]
                            .iter()
                            .map(|job| (job.frame, job.key.file, job.mod_count)),
                    );
                }
                Err(source) => {
                    // Every page of a failed write stays dirty; the error
                    // names the run's first page.
                    let job = &jobs[run.start];
                    first_err.get_or_insert(BufferError::Io {
                        op: "write",
                        file: job.key.file,
                        page: job.key.page,
                        source,
                    });
                }
            }
        }
        bump(&self.stats.writes, done.len() as u64);
        self.end_writes(&frames, &done);
        match first_err {
            Some(e) => Err(e),
            None => Ok(WriteOutcome {
                written: done.len(),
            }),
        }
    }

    /// Step 1–2: copies a page under its shared latch (into a buffer of
    /// `spare` when it has one) and seals the copy.
    fn copy_frame(
        &self,
        frame: usize,
        mode: LatchMode,
        spare: &mut Vec<IoBuf>,
    ) -> Result<Copied, BufferError> {
        let f = &self.frames[frame];
        let latch = match mode {
            LatchMode::Block => f.latch_read(),
            LatchMode::Try => match f.try_latch_read() {
                Some(latch) => latch,
                None => return Ok(Copied::Skipped(frame)),
            },
        };
        // The latch excludes every writer, so the counter read now matches
        // the bytes copied below (lock order: latch, then mutex).
        let (key, handle, mod_count) = {
            let mut meta = self.meta.lock();
            let m = &mut meta.frames[frame];
            let key = m.key.filter(|_| m.writing && m.state == FrameState::Ready);
            let Some(key) = key else {
                debug_assert!(
                    false,
                    "write-back of a frame not claimed for writing (inv. 4: only a claimed copy is checked against the durable log)"
                );
                return Ok(Copied::Skipped(frame));
            };
            m.copied = true;
            let mod_count = m.mod_count;
            (key, meta.handle(key.file)?, mod_count)
        };
        let mut buf = match spare.pop() {
            // Every byte is overwritten: the old page's bytes never leak.
            Some(mut buf) if buf.len() == latch.len() && buf.is_aligned() => {
                buf.copy_from_slice(&latch);
                buf
            }
            _ => IoBuf::aligned_from(&latch),
        };
        drop(latch);
        let lsn = page::page_lsn(&buf).unwrap_or(Lsn::ZERO);
        page::seal(&mut buf).map_err(|source| BufferError::PageCorrupt {
            file: key.file,
            page: key.page,
            source,
        })?;
        // A page that does not verify is never written (invariant 9 on the
        // way out): the write-back fails, naming the page.
        page::verify_structure(&buf, key.page).map_err(|source| BufferError::PageCorrupt {
            file: key.file,
            page: key.page,
            source,
        })?;
        Ok(Copied::Ready(Job {
            frame,
            key,
            handle,
            mod_count,
            lsn,
            buf,
        }))
    }

    /// Step 3: makes the WAL durable through `lsn` (invariant 4).
    pub(crate) fn ensure_wal_durable(&self, lsn: Lsn) -> Result<(), BufferError> {
        use std::sync::atomic::Ordering;
        if lsn == Lsn::ZERO || lsn.0 <= self.wal_durable.load(Ordering::SeqCst) {
            return Ok(());
        }
        bump(&self.stats.wal_flushes, 1);
        self.wal
            .flush_through(lsn)
            .map_err(|source| BufferError::WalFlush { lsn, source })?;
        self.wal_durable.fetch_max(lsn.0, Ordering::SeqCst);
        Ok(())
    }

    /// Step 5: `frames` are no longer being written; `done` lists the
    /// written ones as (frame, file, modification counter of the copy).
    fn end_writes(&self, frames: &[usize], done: &[(usize, FileId, u64)]) {
        let mut meta = self.meta.lock();
        for &(frame, file, mod_count) in done {
            let m = &mut meta.frames[frame];
            if m.mod_count == mod_count {
                m.dirty = false;
                m.rec_lsn = Lsn::ZERO;
            } else {
                // Changed since the copy: what is not on disk starts at
                // the first change after it.
                m.rec_lsn = m.rec_lsn_after_copy;
            }
            if let Some(entry) = meta.files.get_mut(&file) {
                entry.written += 1;
            }
        }
        for &frame in frames {
            let m = &mut meta.frames[frame];
            m.writing = false;
            m.copied = false;
            m.rec_lsn_after_copy = Lsn::ZERO;
        }
        drop(meta);
        self.changed.notify_all();
    }

    /// `flush_page`: writes the page if dirty, after any write in progress.
    pub(crate) fn flush_page(&self, key: PageKey) -> Result<(), BufferError> {
        let mut meta = self.meta.lock();
        loop {
            let Some(frame) = self.table.get(&key) else {
                return Ok(());
            };
            let m = &mut meta.frames[frame];
            if m.state != FrameState::Ready || !m.dirty {
                return Ok(());
            }
            if m.writing {
                self.changed.wait(&mut meta);
                continue;
            }
            m.writing = true;
            drop(meta);
            return self.write_frames(vec![frame], LatchMode::Block).map(|_| ());
        }
    }

    /// `flush_file` / `flush_all`: writes every page of a matching file that
    /// is dirty now (each at least once, from a copy taken after this call
    /// began), then syncs the matching files.
    pub(crate) fn flush_where(&self, matches: impl Fn(FileId) -> bool) -> Result<(), BufferError> {
        if self.is_poisoned() {
            return Err(self.poison_error());
        }
        let mut in_flight = None;
        let mut spare = Vec::new();
        let written = self.write_dirty(&matches, &mut in_flight, &mut spare);
        // A batch still in flight is finished whatever happened: its frames
        // stay `writing` until it is.
        let finished = match in_flight {
            Some((batch, keys)) => self.finish_batch(batch, keys, &mut spare),
            None => Ok(()),
        };
        written?;
        finished?;
        self.sync_files(matches)
    }

    /// `finish_frames` of a batch of `flush_where`, then the start of its
    /// writes' writeback, on this thread (module essay). A failed start
    /// poisons the pool, as a failed sync does (invariant 7).
    fn finish_flushed(&self, batch: InFlight, spare: &mut Vec<IoBuf>) -> Result<(), BufferError> {
        // Each run is one write of neighbouring pages, a page a job. A
        // batch that finishes without an error wrote every one of them.
        let written: Vec<(FileId, FileHandle, u64, usize)> = batch
            .runs
            .iter()
            .map(|run| {
                let first = &batch.jobs[run.start];
                let offset = page_offset(first.key.page);
                (
                    first.key.file,
                    first.handle,
                    offset,
                    run.len() * page::PAGE_SIZE,
                )
            })
            .collect();
        self.finish_frames(batch, spare)?;
        for (file, handle, offset, bytes) in written {
            // A flush batch's run is at most FLUSH_BATCH_PAGES pages; a
            // longer one would only go without the advice.
            let Ok(len) = u32::try_from(bytes) else {
                continue;
            };
            let started = self.io.run_blocking(Request::StartWriteback {
                file: handle,
                offset,
                len,
            });
            if let Err(source) = started {
                let e = self.poison(BufferError::Sync { file, source });
                self.changed.notify_all();
                return Err(e);
            }
        }
        Ok(())
    }

    /// `flush_where`'s writes, in batches of `FLUSH_BATCH_PAGES`; each
    /// batch is submitted before the previous one (`in_flight`, with the
    /// keys it was given) is waited for. The caller finishes the batch left
    /// in `in_flight`, also after an error.
    fn write_dirty(
        &self,
        matches: &impl Fn(FileId) -> bool,
        in_flight: &mut Option<(InFlight, Vec<PageKey>)>,
        spare: &mut Vec<IoBuf>,
    ) -> Result<(), BufferError> {
        let mut todo: Vec<(usize, PageKey)> = {
            let meta = self.meta.lock();
            meta.frames
                .iter()
                .enumerate()
                .filter(|(_, m)| m.dirty)
                .filter_map(|(f, m)| m.key.map(|k| (f, k)))
                .filter(|(_, k)| matches(k.file))
                .collect()
        };
        // In file and page order, so a batch's neighbouring pages are
        // written together (`write_frames`, step 4).
        todo.sort_unstable_by_key(|&(_, k)| k);
        while !todo.is_empty() {
            let (mut batch, mut keys) = (Vec::new(), Vec::new());
            let mut later = Vec::new();
            let mut meta = self.meta.lock();
            for (frame, key) in todo {
                let m = &mut meta.frames[frame];
                if m.key != Some(key) || !m.dirty || m.state != FrameState::Ready {
                    continue; // evicted (hence written) or already clean
                }
                if m.writing || batch.len() == FLUSH_BATCH_PAGES {
                    later.push((frame, key));
                } else {
                    m.writing = true;
                    batch.push(frame);
                    keys.push(key);
                }
            }
            if batch.is_empty() && !later.is_empty() {
                // Only pages another write-back owns: wait for one to end.
                self.changed.wait(&mut meta);
            }
            drop(meta);
            if !batch.is_empty() {
                // Latches are only tried while the batch is marked `writing`
                // (none of its frames can be evicted meanwhile): a tree split
                // holds a latch while it waits for a frame (invariant 11), so
                // waiting for that latch here could wait forever. A page left
                // latched is written alone, waiting for its latch, once no
                // batch is in flight (`finish_batch`): that withholds no
                // frame, a latched page being pinned anyway.
                let started = self.start_frames(batch, LatchMode::Try, spare)?;
                if let Some((previous, previous_keys)) = in_flight.replace((started, keys)) {
                    self.finish_flushed(previous, spare)?;
                    if self.any_dirty(&previous_keys) {
                        if let Some((current, current_keys)) = in_flight.take() {
                            self.finish_batch(current, current_keys, spare)?;
                        }
                        self.flush_pages(previous_keys)?;
                    }
                }
            }
            todo = later;
        }
        Ok(())
    }

    /// Waits for the batch in flight, then writes alone each of its pages
    /// still dirty (skipped as latched, or changed since its copy).
    fn finish_batch(
        &self,
        batch: InFlight,
        keys: Vec<PageKey>,
        spare: &mut Vec<IoBuf>,
    ) -> Result<(), BufferError> {
        self.finish_flushed(batch, spare)?;
        if self.any_dirty(&keys) {
            self.flush_pages(keys)?;
        }
        Ok(())
    }

    /// `flush_page` of each of `keys`, in order.
    fn flush_pages(&self, keys: Vec<PageKey>) -> Result<(), BufferError> {
        for key in keys {
            self.flush_page(key)?;
        }
        Ok(())
    }

    /// Whether any of `keys` is cached and dirty.
    fn any_dirty(&self, keys: &[PageKey]) -> bool {
        let meta = self.meta.lock();
        keys.iter().any(|key| {
            self.table
                .get(key)
                .is_some_and(|frame| meta.frames[frame].dirty)
        })
    }

    /// fdatasync of every matching file written since its last sync.
    /// Returns only once every write completed before the call is covered
    /// by a sync that succeeded, and fails if any sync it relies on failed.
    ///
    /// Per file, one sync runs at a time (`FileEntry::syncing`). A caller
    /// that needs a file whose in-flight sync started after the writes it
    /// must cover waits for that sync; one whose in-flight sync is older
    /// waits for it to end, then starts its own. A failure poisons the pool
    /// before the in-flight mark is cleared, so every waiter sees it; the
    /// sync is never retried (invariant 7).
    fn sync_files(&self, matches: impl Fn(FileId) -> bool) -> Result<(), BufferError> {
        let mut meta = self.meta.lock();
        let mut need: Vec<(FileId, FileHandle, u64)> = meta
            .files
            .iter()
            .filter(|(file, entry)| entry.written > entry.synced && matches(**file))
            .map(|(&file, entry)| (file, entry.handle, entry.written))
            .collect();
        loop {
            if self.is_poisoned() {
                return Err(self.poison_error());
            }
            // Done with a file once a good sync covers the writes, or once
            // it is unregistered (its pages were discarded with it).
            need.retain(|(file, handle, upto)| {
                meta.files
                    .get(file)
                    .is_some_and(|e| e.handle == *handle && e.synced < *upto)
            });
            if need.is_empty() {
                return Ok(());
            }
            let start = claim_syncs(&mut meta.files, &need);
            if start.is_empty() {
                bump(&self.stats.sync_waits, 1);
                self.changed.wait(&mut meta);
                continue;
            }
            drop(meta);
            let results = self.fdatasync_all(start);
            meta = self.meta.lock();
            let mut first_err = None;
            for (file, handle, upto, result) in results {
                match result {
                    Ok(()) => {}
                    Err(source) => {
                        first_err.get_or_insert(BufferError::Sync { file, source });
                    }
                }
                if let Some(entry) = meta.files.get_mut(&file)
                    && entry.handle == handle
                {
                    entry.syncing = None;
                    if first_err.is_none() {
                        entry.synced = entry.synced.max(upto);
                    }
                }
            }
            if let Some(e) = first_err {
                let e = self.poison(e);
                drop(meta);
                self.changed.notify_all();
                return Err(e);
            }
            self.changed.notify_all();
        }
    }

    /// Issues an fdatasync of each file at once, then waits for them all.
    fn fdatasync_all(&self, files: Vec<(FileId, FileHandle, u64)>) -> Vec<SyncResult> {
        let pending: Vec<_> = files
            .into_iter()
            .map(|(file, handle, upto)| (file, handle, upto, self.io.fdatasync(handle)))
            .collect();
        bump(&self.stats.syncs, pending.len() as u64);
        pending
            .into_iter()
            .map(|(file, handle, upto, fut)| (file, handle, upto, fut.wait()))
            .collect()
    }

    /// The background writer's batch: up to `max` dirty frames that nobody
    /// pins or writes, now marked `writing`, scanned from the clock's hand
    /// on: the frames the next misses will evict first.
    pub(crate) fn claim_writer_batch(&self, max: usize) -> Vec<usize> {
        let mut meta = self.meta.lock();
        let n = meta.frames.len();
        let start = meta.clock.hand();
        let mut batch = Vec::new();
        let mut scanned = 0;
        while scanned < n && batch.len() < max {
            let frame = (start + scanned) % n;
            scanned += 1;
            let pins = meta.pins(frame);
            let m = &mut meta.frames[frame];
            if m.dirty && m.state == FrameState::Ready && pins == 0 && !m.writing {
                m.writing = true;
                batch.push(frame);
            }
        }
        batch
    }
}

/// A sync's file, handle, the write count it covers, and its result.
type SyncResult = (FileId, FileHandle, u64, Result<(), keel_io::IoError>);

/// Marks a sync in flight for each file of `need` that has none (one sync
/// per file at a time) and returns those, with the writes each covers.
fn claim_syncs(
    files: &mut HashMap<FileId, FileEntry>,
    need: &[(FileId, FileHandle, u64)],
) -> Vec<(FileId, FileHandle, u64)> {
    let mut start = Vec::new();
    for (file, _, _) in need {
        if let Some(entry) = files.get_mut(file)
            && entry.syncing.is_none()
        {
            entry.syncing = Some(entry.written);
            start.push((*file, entry.handle, entry.written));
        }
    }
    start
}
