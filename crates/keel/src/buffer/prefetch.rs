//! Read-ahead: [`BufferPool::prefetch`](super::BufferPool::prefetch) loads
//! a batch of pages with their reads submitted together (essay, "Read-ahead").

use keel_io::FileHandle;

use super::BufferError;
use super::frame::PageKey;
use super::pool::{Shared, Victim, page_offset};
use super::stats::bump;
use super::writeback::LatchMode;
use crate::page;

/// Rounds of "claim frames, write the dirty victims together" a prefetch
/// makes before it loads what it has.
const CLAIM_ROUNDS: usize = 4;

/// A frame claimed (Loading, pinned once) for a page to read.
struct Claim {
    frame: usize,
    key: PageKey,
    handle: FileHandle,
}

impl Shared {
    /// Loads the missing pages among `keys` (see `BufferPool::prefetch`).
    pub(crate) fn prefetch(&self, keys: &[PageKey]) -> Result<usize, BufferError> {
        let mut todo: Vec<PageKey> = keys.to_vec();
        todo.sort_unstable();
        todo.dedup();
        let mut claims = Vec::with_capacity(todo.len());
        let mut first_err = None;
        for _ in 0..CLAIM_ROUNDS {
            let dirty = self.claim_batch(&mut claims, &mut todo);
            if dirty.is_empty() {
                break;
            }
            // The victims are written together (eviction one at a time is
            // the cost read-ahead is meant to avoid), then claimed next round.
            match self.write_frames(dirty, LatchMode::Try) {
                Ok(outcome) => {
                    bump(&self.stats.dirty_evictions, outcome.written as u64);
                    self.writer_signal.kick();
                }
                Err(e) => {
                    first_err = Some(e);
                    break;
                }
            }
        }
        let loaded = self.load_batch(claims);
        first_err.map_or(Ok(loaded), Err)
    }

    /// Claims a frame for each page of `todo` not in the pool, as far as
    /// clean victims go; dirty victims are marked `writing` and returned,
    /// and the pages still without a frame stay in `todo`.
    fn claim_batch(&self, claims: &mut Vec<Claim>, todo: &mut Vec<PageKey>) -> Vec<usize> {
        let mut meta = self.meta.lock();
        let mut dirty = Vec::new();
        let mut rest = Vec::new();
        let mut stuck = false;
        for key in todo.drain(..) {
            if self.table.contains(&key) {
                continue;
            }
            let Ok(handle) = meta.handle(key.file) else {
                continue; // unknown file: nothing to read ahead
            };
            if stuck {
                rest.push(key);
                continue;
            }
            match self.find_victim(&mut meta) {
                Ok(Victim::Clean(frame)) => match meta.claim(frame, key) {
                    Ok(old) => {
                        if old.is_some() {
                            bump(&self.stats.evictions, 1);
                        }
                        claims.push(Claim { frame, key, handle });
                    }
                    // A hit pinned the victim meanwhile: try the next round.
                    Err(_) => rest.push(key),
                },
                Ok(Victim::Dirty(frame)) => {
                    meta.frames[frame].writing = true;
                    dirty.push(frame);
                    rest.push(key);
                }
                // Nothing evictable now: read ahead what was claimed.
                Ok(Victim::Wait) | Err(_) => {
                    stuck = true;
                    rest.push(key);
                }
            }
        }
        *todo = rest;
        dirty
    }

    /// Reads every claimed page, then verifies each: a good one becomes
    /// Ready (unpinned), any other is unmapped. Returns the number of pages
    /// installed.
    ///
    /// The first half of the batch is submitted at once; the caller reads
    /// the second half itself (`read_exact_at_blocking`) meanwhile. On
    /// io_uring, buffered reads that the kernel's cache serves complete
    /// inline on the dispatcher thread, one after another; the caller's own
    /// reads copy beside them on another core (BENCHMARKS.md, Recovery).
    fn load_batch(&self, claims: Vec<Claim>) -> usize {
        let half = claims.len() / 2;
        let queued: Vec<_> = claims[..half]
            .iter()
            .map(|c| {
                let buf = self.frames[c.frame].take_buffer(|| self.page_buf());
                self.io
                    .read_exact_at(c.handle, page_offset(c.key.page), buf)
            })
            .collect();
        let here: Vec<_> = claims[half..]
            .iter()
            .map(|c| {
                let buf = self.frames[c.frame].take_buffer(|| self.page_buf());
                self.io
                    .read_exact_at_blocking(c.handle, page_offset(c.key.page), buf)
            })
            .collect();
        let reads = queued.into_iter().map(|f| f.wait()).chain(here);
        let mut good = Vec::with_capacity(claims.len());
        for (c, read) in claims.iter().zip(reads) {
            let (buf, ok) = match read {
                Ok(buf) => {
                    bump(&self.stats.reads, 1);
                    let ok = page::verify_relation_page(&buf, c.key.page).is_ok();
                    (buf, ok)
                }
                // EOF or an I/O error: a later fetch reports it.
                Err(_) => (self.page_buf(), false),
            };
            *self.frames[c.frame].latch_write() = buf;
            good.push(ok);
        }
        let mut meta = self.meta.lock();
        let mut loaded = 0;
        for (c, ok) in claims.iter().zip(good) {
            if ok {
                meta.finish_load(c.frame);
                self.unpin(c.frame);
                loaded += 1;
            } else {
                meta.release(c.frame);
            }
        }
        drop(meta);
        self.changed.notify_all();
        bump(&self.stats.misses, loaded as u64);
        loaded
    }
}
