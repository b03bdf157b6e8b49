//! The ideal group-commit reference loop: the most durable commits per
//! second N committers can get from this file system when each commit is
//! one 128-byte record and each batch one durable write (a `pwrite` to a
//! file opened `O_DSYNC`: it returns once its bytes are durable, the kernel
//! path of the `pwritev2(RWF_DSYNC)` Keel's log writes its batches with),
//! with no engine work at all. Above one committer, the commit suite divides every
//! engine's rate by this loop's at the same committer count: it is the real
//! ceiling for N committers, where the single-committer fdatasync loop is
//! only a floor for it.
//!
//! Protocol (one mutex guards [`State`]; one condition variable wakes
//! waiters):
//!
//! 1. A committer appends its record to `pending` and takes the next
//!    sequence number `seq` (`queued += 1`).
//! 2. It loops: if `durable >= seq`, its record is durable and it returns;
//!    if the log has failed, it returns that error; if no leader is writing,
//!    it becomes the leader (step 3); otherwise it waits on the condition
//!    variable.
//! 3. The leader sets `writing`, takes every pending record (its own and
//!    those of whoever is waiting) and the highest sequence number among
//!    them, and releases the mutex. It writes them at the next offset with
//!    **one** durable write (a short one is continued from where it
//!    stopped, each part durable on its own return).
//! 4. It retakes the mutex, clears `writing`, sets `durable` to that
//!    sequence number (or records the error: a failed durable write is
//!    never retried, every later commit fails), and wakes every waiter. Records
//!    queued during the write form the next batch, led by whichever waiter
//!    takes the mutex first.
//!
//! Every record is written exactly once (step 3 empties `pending`); a
//! committer returns only after a sync that covered its record; a leader
//! never holds the mutex across I/O. The file is written out in full
//! beforehand, as for the disk's loops, and a batch that would run past its
//! end starts again at offset 0.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::disk::{COMMIT_BYTES, COMMIT_FILE_BYTES, preallocate, write_record};
use super::measure::TimedOp;
use crate::Failure;

/// The name in the JSON report.
pub const NAME: &str = "group-commit-reference";

/// What the committers share, under the mutex.
#[derive(Default)]
struct State {
    /// Records of committers waiting for the next batch, back to back.
    pending: Vec<u8>,
    /// The buffer the last batch was written from, kept for reuse.
    spare: Vec<u8>,
    /// Sequence number of the last record queued (the first is 1).
    queued: u64,
    /// Every record with a sequence number up to this one is durable.
    durable: u64,
    /// A leader is writing a batch now.
    writing: bool,
    /// The first write or sync error; every commit from then on fails.
    failed: Option<String>,
    /// Where the next batch goes.
    offset: u64,
    /// Batches written: one durable write each.
    batches: u64,
}

/// Counters of a reference loop, read after a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    /// Commits queued.
    pub queued: u64,
    /// Commits made durable.
    pub durable: u64,
    /// Batches written.
    pub batches: u64,
}

/// The reference loop on one preallocated file.
pub struct GroupCommit {
    file: File,
    path: PathBuf,
    file_bytes: u64,
    state: Mutex<State>,
    done: Condvar,
}

impl GroupCommit {
    /// Preallocates `dir/commit-group-commit-reference.dat` and opens it.
    pub fn open(dir: &Path) -> Result<GroupCommit, Failure> {
        let path = dir.join(format!("commit-{NAME}.dat"));
        preallocate(&path, COMMIT_FILE_BYTES)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .open(&path)
            .map_err(|e| Failure(format!("{NAME}: cannot open {}: {e}", path.display())))?;
        Ok(GroupCommit::on(file, path, COMMIT_FILE_BYTES))
    }

    /// The loop over `file` (opened `O_DSYNC` for the measured loop; the
    /// unit tests check the protocol on a plain file).
    fn on(file: File, path: PathBuf, file_bytes: u64) -> GroupCommit {
        GroupCommit {
            file,
            path,
            file_bytes,
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        }
    }

    /// The loop's settings (printed and written to the JSON).
    pub fn settings(&self) -> Vec<(String, String)> {
        vec![
            (
                "commit".into(),
                format!(
                    "a {COMMIT_BYTES} B record per committer; one leader writes every \
                     waiting record in one pwrite to the file opened O_DSYNC and wakes the batch"
                ),
            ),
            (
                "file".into(),
                format!(
                    "{}, {} MiB written out and synced first",
                    self.path.display(),
                    self.file_bytes >> 20
                ),
            ),
        ]
    }

    /// One thread's handle.
    pub fn op(self: &Arc<Self>) -> ReferenceOp {
        ReferenceOp(self.clone())
    }

    /// The counters so far.
    pub fn counts(&self) -> Counts {
        let st = self.state.lock();
        Counts {
            queued: st.queued,
            durable: st.durable,
            batches: st.batches,
        }
    }

    /// Commits one record for row `id`; returns once it is durable.
    pub fn commit(&self, id: u64, payload: &[u8]) -> Result<(), Failure> {
        let mut st = self.state.lock();
        if let Some(e) = &st.failed {
            return Err(Failure(format!("{NAME}: {e}")));
        }
        let at = st.pending.len();
        st.pending.resize(at + COMMIT_BYTES, 0);
        write_record(&mut st.pending[at..], id, payload);
        st.queued += 1;
        let seq = st.queued;
        loop {
            if st.durable >= seq {
                return Ok(());
            }
            if let Some(e) = &st.failed {
                return Err(Failure(format!("{NAME}: {e}")));
            }
            if st.writing {
                self.done.wait(&mut st);
            } else {
                st = self.lead(st);
            }
        }
    }

    /// Steps 3 and 4: writes and syncs every pending record as one batch.
    fn lead<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.writing = true;
        let spare = std::mem::take(&mut st.spare);
        let mut batch = std::mem::replace(&mut st.pending, spare);
        let upto = st.queued;
        let len = batch.len() as u64;
        let off = if st.offset + len > self.file_bytes {
            0
        } else {
            st.offset
        };
        st.offset = off + len;
        drop(st);
        // The file is opened O_DSYNC: the write returns once durable.
        let result = self
            .file
            .write_all_at(&batch, off)
            .map_err(|e| format!("durable write to {}: {e}", self.path.display()));
        let mut st = self.state.lock();
        batch.clear();
        st.spare = batch;
        st.writing = false;
        match result {
            Ok(()) => {
                st.durable = upto;
                st.batches += 1;
            }
            Err(e) => {
                st.failed.get_or_insert(e);
            }
        }
        self.done.notify_all();
        st
    }
}

/// One thread's side of a [`GroupCommit`].
pub struct ReferenceOp(Arc<GroupCommit>);

impl TimedOp for ReferenceOp {
    fn run(&mut self, id: u64, payload: &[u8]) -> Result<(), Failure> {
        self.0.commit(id, payload)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn small(dir: &Path, file_bytes: u64) -> Arc<GroupCommit> {
        let path = dir.join("ref.dat");
        preallocate(&path, file_bytes).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        Arc::new(GroupCommit::on(file, path, file_bytes))
    }

    /// The ids of the records in `path`'s first `n` slots.
    fn ids_in(path: &Path, n: usize) -> Vec<u64> {
        let bytes = std::fs::read(path).unwrap();
        (0..n)
            .map(|i| {
                let at = i * COMMIT_BYTES;
                u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
            })
            .collect()
    }

    #[test]
    fn every_commit_is_written_once_and_counted_once() {
        let dir = scratch();
        let (threads, each) = (8u64, 50u64);
        let g = small(dir.path(), 1 << 20);
        std::thread::scope(|s| {
            for t in 0..threads {
                let g = g.clone();
                s.spawn(move || {
                    for i in 0..each {
                        g.commit(1000 + t * each + i, b"payload").unwrap();
                    }
                });
            }
        });
        let c = g.counts();
        let total = threads * each;
        assert_eq!(c.queued, total);
        assert_eq!(c.durable, total);
        assert!((1..=total).contains(&c.batches), "{c:?}");
        let mut ids = ids_in(&dir.path().join("ref.dat"), total as usize);
        ids.sort_unstable();
        assert_eq!(ids, (1000..1000 + total).collect::<Vec<_>>());
    }

    #[test]
    fn waiting_committers_share_one_durable_write() {
        let dir = scratch();
        let g = small(dir.path(), 1 << 20);
        // A leader is "writing": every committer queues its record and waits.
        g.state.lock().writing = true;
        std::thread::scope(|s| {
            for id in 0..5u64 {
                let g = g.clone();
                s.spawn(move || g.commit(id, b"x").unwrap());
            }
            while g.counts().queued < 5 {
                std::thread::yield_now();
            }
            // The "leader" finishes: the first waiter to wake leads all five.
            g.state.lock().writing = false;
            g.done.notify_all();
        });
        assert_eq!(
            g.counts(),
            Counts {
                queued: 5,
                durable: 5,
                batches: 1
            }
        );
        let mut ids = ids_in(&dir.path().join("ref.dat"), 5);
        ids.sort_unstable();
        assert_eq!(ids, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_failed_write_fails_the_batch_and_every_later_commit() {
        let dir = scratch();
        let path = dir.path().join("ro.dat");
        preallocate(&path, 1 << 16).unwrap();
        // Opened read-only: the leader's durable write fails.
        let g = Arc::new(GroupCommit::on(
            File::open(&path).unwrap(),
            path.clone(),
            1 << 16,
        ));
        let errors: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4u64)
                .map(|id| {
                    let g = g.clone();
                    s.spawn(move || g.commit(id, b"x").unwrap_err().0)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            errors.iter().all(|e| e.contains("durable write")),
            "{errors:?}"
        );
        assert!(g.commit(9, b"x").unwrap_err().0.contains("durable write"));
        let c = g.counts();
        assert_eq!((c.durable, c.batches), (0, 0));
    }

    #[test]
    fn a_batch_past_the_end_starts_again_at_zero() {
        let dir = scratch();
        let slots = 4u64;
        let g = small(dir.path(), slots * COMMIT_BYTES as u64);
        for id in 0..slots + 1 {
            g.commit(100 + id, b"x").unwrap();
        }
        // Slot 0 was rewritten by the fifth commit; the others kept theirs.
        assert_eq!(
            ids_in(&dir.path().join("ref.dat"), slots as usize),
            vec![104, 101, 102, 103]
        );
    }
}
