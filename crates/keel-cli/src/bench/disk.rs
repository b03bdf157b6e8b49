//! The disk's own ceiling, measured on the same file system as the engines.
//!
//! - Commits: a plain `pwrite` of 128 bytes + `fdatasync` loop on a file
//!   written out in full beforehand (as Keel's WAL segments are), so each
//!   fdatasync flushes data only, never new extents: the most durable
//!   single-committer commits/s this file system gives.
//! - Inserts: each transaction's rows appended as one write, then fdatasync.
//! - Sequential reads: a file read with O_DIRECT in 1 MiB requests, so the
//!   rate is the device's, not the page cache's.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use super::engine::{Engine, EngineKind, ROW_BYTES, Session, process_write_bytes};
use crate::Failure;

/// Size of the preallocated commit file.
const COMMIT_FILE_BYTES: u64 = 64 << 20;
/// Bytes per simulated commit record.
const COMMIT_BYTES: usize = 128;

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure(format!("disk: {what} {}: {e}", path.display()))
}

/// The disk ceiling "engine".
pub struct DiskEngine {
    commit_file: Arc<File>,
    commit_offset: Arc<AtomicU64>,
    insert: Arc<Mutex<(File, u64)>>,
    insert_path: PathBuf,
}

impl DiskEngine {
    /// Preallocates the commit file in `dir`.
    pub fn open(dir: &Path) -> Result<DiskEngine, Failure> {
        let path = dir.join("commit.dat");
        let f = open_rw(&path)?;
        let zeros = vec![0u8; 1 << 20];
        for i in 0..COMMIT_FILE_BYTES >> 20 {
            f.write_all_at(&zeros, i << 20)
                .map_err(|e| io_err("cannot preallocate", &path, e))?;
        }
        f.sync_all().map_err(|e| io_err("cannot sync", &path, e))?;
        let insert_path = dir.join("insert.dat");
        let ins = open_rw(&insert_path)?;
        Ok(DiskEngine {
            commit_file: Arc::new(f),
            commit_offset: Arc::new(AtomicU64::new(0)),
            insert: Arc::new(Mutex::new((ins, 0))),
            insert_path,
        })
    }
}

fn open_rw(path: &Path) -> Result<File, Failure> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io_err("cannot create", path, e))
}

impl Engine for DiskEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Disk
    }

    fn settings(&self) -> Vec<(String, String)> {
        vec![
            (
                "commit".into(),
                format!(
                    "pwrite {COMMIT_BYTES} B + fdatasync, file of {} MiB written out first",
                    COMMIT_FILE_BYTES >> 20
                ),
            ),
            (
                "insert".into(),
                "one appending write per transaction + fdatasync".into(),
            ),
            ("read".into(), "sequential, O_DIRECT, 1 MiB requests".into()),
        ]
    }

    fn session(&self) -> Result<Box<dyn Session>, Failure> {
        Ok(Box::new(DiskSession {
            commit_file: self.commit_file.clone(),
            commit_offset: self.commit_offset.clone(),
            insert: self.insert.clone(),
            buf: Vec::new(),
        }))
    }

    fn reset(&self) -> Result<(), Failure> {
        let mut g = self.insert.lock();
        g.0.set_len(0)
            .map_err(|e| io_err("cannot truncate", &self.insert_path, e))?;
        g.1 = 0;
        Ok(())
    }

    fn checkpoint(&self) -> Result<(), Failure> {
        Ok(())
    }

    fn bytes_written(&self) -> Option<u64> {
        process_write_bytes()
    }
}

struct DiskSession {
    commit_file: Arc<File>,
    commit_offset: Arc<AtomicU64>,
    insert: Arc<Mutex<(File, u64)>>,
    buf: Vec<u8>,
}

impl Session for DiskSession {
    fn commit_one(&mut self, id: u64, payload: &[u8]) -> Result<(), Failure> {
        let mut rec = [0u8; COMMIT_BYTES];
        rec[..8].copy_from_slice(&id.to_le_bytes());
        let n = payload.len().min(COMMIT_BYTES - 8);
        rec[8..8 + n].copy_from_slice(&payload[..n]);
        let off = self
            .commit_offset
            .fetch_add(COMMIT_BYTES as u64, Ordering::Relaxed)
            % COMMIT_FILE_BYTES;
        self.commit_file
            .write_all_at(&rec, off)
            .map_err(|e| Failure(format!("disk: pwrite: {e}")))?;
        self.commit_file
            .sync_data()
            .map_err(|e| Failure(format!("disk: fdatasync: {e}")))
    }

    fn insert_batch(&mut self, first_id: u64, rows: u64, payload: &[u8]) -> Result<(), Failure> {
        self.buf.clear();
        for id in first_id..first_id + rows {
            self.buf.extend_from_slice(&id.to_le_bytes());
            self.buf.extend_from_slice(payload);
        }
        let mut g = self.insert.lock();
        let off = g.1;
        g.0.write_all_at(&self.buf, off)
            .map_err(|e| Failure(format!("disk: write: {e}")))?;
        g.0.sync_data()
            .map_err(|e| Failure(format!("disk: fdatasync: {e}")))?;
        g.1 += rows * ROW_BYTES;
        Ok(())
    }

    fn point_read(&mut self, _id: u64) -> Result<bool, Failure> {
        Err(Failure(
            "disk: no point reads (the read suite measures its sequential rate)".into(),
        ))
    }
}

/// The sequential read rate: `bytes` written to a new file in `dir`, synced,
/// then read back in 1 MiB requests. Returns (MB/s, whether O_DIRECT was
/// used; without it the figure may come from the page cache).
pub fn sequential_read(dir: &Path, bytes: u64) -> Result<(f64, bool), Failure> {
    const CHUNK: usize = 1 << 20;
    let path = dir.join("seqread.dat");
    let bytes = bytes.div_ceil(CHUNK as u64).max(1) * CHUNK as u64;
    {
        let f = open_rw(&path)?;
        let data: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8 + 1).collect();
        for i in 0..bytes / CHUNK as u64 {
            f.write_all_at(&data, i * CHUNK as u64)
                .map_err(|e| io_err("cannot write", &path, e))?;
        }
        f.sync_all().map_err(|e| io_err("cannot sync", &path, e))?;
    }
    let direct = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path);
    let (f, is_direct) = match direct {
        Ok(f) => (f, true),
        Err(_) => (
            File::open(&path).map_err(|e| io_err("cannot open", &path, e))?,
            false,
        ),
    };
    let mut buf = keel_io::IoBuf::aligned(CHUNK);
    let start = Instant::now();
    let mut off = 0;
    while off < bytes {
        let n = f
            .read_at(&mut buf[..], off)
            .map_err(|e| io_err("cannot read", &path, e))?;
        if n == 0 {
            break;
        }
        off += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok((off as f64 / 1e6 / secs.max(1e-9), is_direct))
}
