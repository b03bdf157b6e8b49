//! Making an unclean data directory durable before recovery trusts it
//! (invariant 14; PostgreSQL's `SyncDataDirectory`).
//!
//! # Why
//!
//! When a process dies (kill -9, a panic that aborts, the OOM killer), the
//! writes it made without syncing them are not lost: they sit in the
//! kernel's page cache, and the next process reads them as if they were on
//! disk. They are not durable: a power cut in the next ~30 s (the kernel's
//! writeback window) can still drop or tear them. Recovery, though, builds
//! on what it reads:
//!
//! - redo skips a record whose page already carries its LSN — a page the
//!   dead process wrote at eviction, possibly never synced;
//! - the log's end is wherever the readable records stop — possibly in a
//!   tail the dead process wrote but never synced, holding the changes of
//!   a transaction whose commit was never acknowledged;
//! - the checkpoint that ends recovery syncs only the files *this* process
//!   wrote, then moves the redo point past all of it.
//!
//! A power cut after that loses acknowledged commits (a page reverts, and
//! the log that would redo it is no longer replayed), tears pages whose
//! image is no longer kept, or keeps some of an unacknowledged
//! transaction's changes without the log records that would undo them.
//!
//! # The rule
//!
//! At every unclean open — `control` says the last process did not close
//! cleanly, or there is no `control` but the directory holds files (a crash
//! before the first control file was written) — and before anything reads
//! the directory for recovery or writes to it, every regular file and every
//! directory under the data directory is made durable: `control`, every
//! log segment, every relation's heap and free space map file, the data
//! directory itself, `wal/` and `rel/`. A clean shutdown synced everything
//! before it marked `control` clean, so a clean open skips this.
//!
//! A failure is fatal and never retried (invariant 7): after a failed
//! fsync the kernel may have dropped the dirty pages, and a second fsync
//! would succeed without making them durable. The open fails; the next
//! open tries again from the start, on whatever the disk then holds.
//!
//! # How ([`RecoveryInitSync`])
//!
//! - `Fsync` (the default, portable): list the directories, open every
//!   file read-only and fsync it through the I/O backend, a batch of
//!   [`MAX_OPEN_FILES`] at a time with every fsync of the batch submitted
//!   before the first is waited for (the backend overlaps them), then fsync
//!   every directory. Its cost grows with the number of files, and with
//!   the dirty data the dead process left (which has to reach the disk
//!   either way).
//! - `SyncFs` (Linux): one `syncfs(2)` per directory of the data directory
//!   (normally all on one file system, so the first does the work): it
//!   flushes the whole file system at once, without opening each file —
//!   the fast path on directories with many files. It also flushes other
//!   programs' dirty data on that file system, and on kernels before 5.8
//!   it may not report a writeback error, which is why it is not the
//!   default (the same trade-off as PostgreSQL's
//!   `recovery_init_sync_method`).
//!
//! The simulator backend models both (syncfs syncs everything), so the
//! crash tests run through the same code as production.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_io::{AsyncIo, FileClass, FileHandle, IoError, IoFuture, OpenOptions};

use crate::error::Result;
use crate::recovery::Control;

/// Files held open at once while syncing with [`RecoveryInitSync::Fsync`]:
/// more overlaps more fsyncs in the backend, fewer keeps the number of
/// open descriptors well below the usual limit of 1,024.
pub const MAX_OPEN_FILES: usize = 128;

/// How an unclean open makes the data directory durable (PostgreSQL's
/// `recovery_init_sync_method`; see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryInitSync {
    /// Open and fsync every file, then every directory. Portable.
    #[default]
    Fsync,
    /// `syncfs(2)` on the file system(s) of the data directory (Linux only;
    /// other systems fail the open with an error naming the directory).
    SyncFs,
}

/// What the sync of an unclean data directory did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncReport {
    /// How.
    pub method: RecoveryInitSync,
    /// Regular files fsynced (0 with `SyncFs`, which opens none).
    pub files: u64,
    /// Directories fsynced (or syncfs'd).
    pub dirs: u64,
    /// Wall time, listing included.
    pub duration: Duration,
}

/// The unclean-open step of the open sequence: syncs the data directory
/// `dir` when the last process did not close it cleanly (module docs);
/// `None` when it did, or when the directory is new.
pub(crate) fn sync_if_unclean(
    io: &Arc<dyn AsyncIo>,
    dir: &Path,
    control: Option<&Control>,
    method: RecoveryInitSync,
) -> Result<Option<SyncReport>> {
    let unclean = match control {
        Some(c) => !c.clean,
        // No control file: a new database, unless files were left by a
        // process that crashed before writing the first one.
        None => io
            .read_dir(dir)
            .wait()?
            .iter()
            .any(|e| e.name != super::layout::LOCK_FILE),
    };
    if !unclean {
        return Ok(None);
    }
    sync_data_directory(io, dir, method).map(Some)
}

/// Makes every file and directory under `dir` durable, by `method`
/// (module docs). Public for `keel` to measure it; [`crate::Database::open`]
/// calls it on every unclean open.
pub fn sync_data_directory(
    io: &Arc<dyn AsyncIo>,
    dir: &Path,
    method: RecoveryInitSync,
) -> Result<SyncReport> {
    let started = Instant::now();
    let (files, dirs) = walk(io, dir)?;
    let report = |files: usize| SyncReport {
        method,
        files: files as u64,
        dirs: dirs.len() as u64,
        duration: started.elapsed(),
    };
    match method {
        RecoveryInitSync::Fsync => {
            for batch in files.chunks(MAX_OPEN_FILES) {
                fsync_files(io, batch)?;
            }
            wait_all(dirs.iter().map(|d| io.sync_dir(d)).collect())?;
            Ok(report(files.len()))
        }
        RecoveryInitSync::SyncFs => {
            for d in &dirs {
                io.sync_fs(d).wait()?;
            }
            Ok(report(0))
        }
    }
}

/// A regular file to sync, with the class its requests are counted under.
type FileToSync = (PathBuf, FileClass);

/// Every regular file and every directory under `dir`, `dir` included,
/// children before parents.
fn walk(io: &Arc<dyn AsyncIo>, dir: &Path) -> Result<(Vec<FileToSync>, Vec<PathBuf>)> {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let class = match d.file_name().and_then(|n| n.to_str()) {
            Some("wal") => FileClass::Wal,
            Some(super::layout::REL_DIR) => FileClass::Data,
            _ => FileClass::Control,
        };
        for entry in io.read_dir(&d).wait()? {
            let path = d.join(&entry.name);
            // Only regular files hold Keel's data; opening anything else
            // (a FIFO someone left here) could block the open for good.
            if entry.is_dir {
                todo.push(path);
            } else if entry.is_file {
                let images = super::layout::IMAGES_FILES
                    .iter()
                    .any(|n| entry.name.to_str() == Some(n));
                let class = if images && d == dir {
                    FileClass::Images
                } else {
                    class
                };
                files.push((path, class));
            }
        }
        dirs.push(d);
    }
    // `todo` is a stack, so every directory was listed after its parent:
    // reversed, children come first.
    dirs.reverse();
    Ok((files, dirs))
}

/// Opens, fsyncs and closes one batch of files: every open submitted, then
/// every fsync, then every close, before waiting on the next step. The
/// first error is returned once every opened handle is closed; nothing is
/// retried (invariant 7).
fn fsync_files(io: &Arc<dyn AsyncIo>, batch: &[FileToSync]) -> Result<()> {
    let opens: Vec<IoFuture<FileHandle>> = batch
        .iter()
        .map(|(path, class)| io.open(path, OpenOptions::new(*class)))
        .collect();
    let mut first: Option<IoError> = None;
    let mut handles = Vec::with_capacity(batch.len());
    for opened in opens {
        match opened.wait() {
            Ok(h) => handles.push(h),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    if first.is_none() {
        let syncs = handles.iter().map(|&h| io.fsync(h)).collect();
        if let Err(e) = wait_all(syncs) {
            first = Some(e);
        }
    }
    let closes = handles.iter().map(|&h| io.close(h)).collect();
    let closed = wait_all(closes);
    match first {
        Some(e) => Err(e.into()),
        None => closed.map_err(Into::into),
    }
}

/// Waits for every future; the first error, after all have completed.
fn wait_all(futures: Vec<IoFuture<()>>) -> std::result::Result<(), IoError> {
    let mut first = None;
    for f in futures {
        if let Err(e) = f.wait() {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_io::IoBuf;
    use keel_io::sim::{Fault, FaultRule, SimConfig, SimIo};

    /// A killed process's data directory: `/db` with `control`, `wal/` and
    /// `rel/` created durably, then files written (and one created) without
    /// any sync. Returns the simulator of the next process.
    fn after_kill(seed: u64) -> Arc<SimIo> {
        let sim = SimIo::new(SimConfig::seeded(seed));
        for d in ["/db", "/db/wal", "/db/rel"] {
            sim.create_dir(Path::new(d)).wait().unwrap();
        }
        for d in ["/", "/db"] {
            sim.sync_dir(Path::new(d)).wait().unwrap();
        }
        for (i, f) in FILES.iter().enumerate() {
            let h = sim
                .open(
                    Path::new(f),
                    OpenOptions::read_write_create(FileClass::Data),
                )
                .wait()
                .unwrap();
            sim.write_at(h, 0, IoBuf::from(vec![i as u8 + 1; 3000]))
                .wait()
                .unwrap();
        }
        Arc::new(SimIo::after_kill(sim.kill(), SimConfig::seeded(seed)))
    }

    const FILES: [&str; 4] = [
        "/db/control",
        "/db/wal/0000000000000001.wal",
        "/db/rel/1.heap",
        "/db/rel/1.fsm",
    ];

    fn all_durable(sim: &SimIo) -> bool {
        let disk = sim.crash();
        FILES.iter().enumerate().all(|(i, f)| {
            disk.file(Path::new(f))
                .is_some_and(|c| c == vec![i as u8 + 1; 3000].as_slice())
        })
    }

    #[test]
    fn both_methods_make_a_killed_process_writes_durable() {
        for seed in 0..40 {
            for method in [RecoveryInitSync::Fsync, RecoveryInitSync::SyncFs] {
                let sim = after_kill(seed);
                let io: Arc<dyn AsyncIo> = sim.clone();
                let report = sync_data_directory(&io, Path::new("/db"), method).unwrap();
                assert_eq!(report.dirs, 3);
                let files = if method == RecoveryInitSync::Fsync {
                    4
                } else {
                    0
                };
                assert_eq!(report.files, files);
                assert!(all_durable(&sim), "seed {seed}, {method:?}");
            }
        }
    }

    #[test]
    fn without_the_sync_a_power_cut_loses_them() {
        let lost = (0..40)
            .filter(|&seed| !all_durable(&after_kill(seed)))
            .count();
        assert!(lost > 0, "the test's workload leaves nothing pending");
    }

    #[test]
    fn an_unclean_control_file_or_leftover_files_mean_an_unclean_open() {
        let sim = after_kill(1);
        let io: Arc<dyn AsyncIo> = sim.clone();
        let dir = Path::new("/db");
        let method = RecoveryInitSync::Fsync;
        let mut control = Control {
            clean: true,
            next_relation: 1,
            database_id: 1,
            redo_start: crate::types::Lsn(4096),
            checkpoint_end: crate::types::Lsn(4096),
            undo_start: crate::types::Lsn(4096),
            next_txn: crate::types::TxnId(1),
        };
        assert_eq!(
            sync_if_unclean(&io, dir, Some(&control), method).unwrap(),
            None
        );
        control.clean = false;
        assert!(
            sync_if_unclean(&io, dir, Some(&control), method)
                .unwrap()
                .is_some()
        );
        assert!(sync_if_unclean(&io, dir, None, method).unwrap().is_some());
        // A new database: nothing but the lock file (or nothing at all).
        let empty: Arc<dyn AsyncIo> = Arc::new(SimIo::new(SimConfig::seeded(2)));
        empty.create_dir(Path::new("/new")).wait().unwrap();
        assert_eq!(
            sync_if_unclean(&empty, Path::new("/new"), None, method).unwrap(),
            None
        );
    }

    #[test]
    fn a_failed_fsync_fails_the_sync_and_is_not_retried() {
        let sim = after_kill(3);
        sim.add_fault(FaultRule::always(Fault::SyncFailure).on_class(FileClass::Data));
        let io: Arc<dyn AsyncIo> = sim.clone();
        let before = io.stats();
        let err = sync_data_directory(&io, Path::new("/db"), RecoveryInitSync::Fsync).unwrap_err();
        assert_eq!(err.class(), crate::error::ErrorClass::Fatal, "{err}");
        assert!(err.to_string().contains("/db/rel/"), "{err}");
        let fsyncs = |s: &keel_io::IoStats| s.count(keel_io::OpKind::Fsync);
        // One fsync per file of the batch, none twice.
        assert_eq!(fsyncs(&io.stats()) - fsyncs(&before), FILES.len() as u64);
    }

    #[test]
    fn a_failed_syncfs_fails_the_sync() {
        let sim = after_kill(4);
        sim.add_fault(FaultRule::always(Fault::Eio).on_op(keel_io::OpKind::SyncFs));
        let io: Arc<dyn AsyncIo> = sim.clone();
        let err = sync_data_directory(&io, Path::new("/db"), RecoveryInitSync::SyncFs).unwrap_err();
        assert_eq!(err.class(), crate::error::ErrorClass::Fatal, "{err}");
        assert!(err.to_string().contains("syncfs /db"), "{err}");
    }
}
