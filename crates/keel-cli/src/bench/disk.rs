//! The disk's own ceilings, measured on the same file system as the engines.
//!
//! - Commits: single-committer loops that each make one record durable per
//!   commit on a file written out in full and synced beforehand (as Keel's
//!   WAL segments are), so no commit allocates extents or changes the file's
//!   size, and each sync flushes data only:
//!   - [`SyncVariant::Fdatasync`]: `pwrite` of 128 B, then `fdatasync` (the
//!     "fdatasync loop" every engine's single-committer figure is divided
//!     by);
//!   - [`SyncVariant::ODsync`]: `pwrite` of 128 B on a file opened
//!     `O_DSYNC` (the write returns once durable; no separate sync call);
//!   - [`SyncVariant::ODirectODsync`]: `pwrite` of 4 KiB from a 4 KiB-aligned
//!     buffer at a 4 KiB-aligned offset, the file opened
//!     `O_DIRECT|O_DSYNC` (no page cache; O_DIRECT needs the alignment, so
//!     each commit writes a whole 4 KiB block).
//!
//!   The group-commit reference loop for N committers is
//!   [`reference`](super::reference).
//! - Inserts: each transaction's rows appended as one write, then fdatasync.
//! - Sequential reads: a file read with O_DIRECT in 1 MiB requests, so the
//!   rate is the device's, not the page cache's.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use keel_io::IoBuf;
use parking_lot::Mutex;

use super::engine::{Engine, EngineKind, ROW_BYTES, Session, process_write_bytes};
use super::measure::TimedOp;
use crate::Failure;

/// Size of each preallocated commit file: large enough that a loop rarely
/// wraps around within a measurement (wrapping rewrites written-out blocks,
/// which costs the same).
pub const COMMIT_FILE_BYTES: u64 = 64 << 20;
/// Bytes per commit record of the buffered loops and the reference loop.
pub const COMMIT_BYTES: usize = 128;
/// Bytes per commit with O_DIRECT: one aligned block.
pub const DIRECT_COMMIT_BYTES: usize = 4096;

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure(format!("disk: {what} {}: {e}", path.display()))
}

/// How a single-committer loop makes each commit durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncVariant {
    /// `pwrite` + `fdatasync`.
    Fdatasync,
    /// `pwrite` on a file opened `O_DSYNC`.
    ODsync,
    /// `pwrite` of an aligned block on a file opened `O_DIRECT|O_DSYNC`.
    ODirectODsync,
}

impl SyncVariant {
    /// Every variant, in the order the commit suite runs them.
    pub const ALL: [SyncVariant; 3] = [
        SyncVariant::Fdatasync,
        SyncVariant::ODsync,
        SyncVariant::ODirectODsync,
    ];

    /// The name in the JSON report (`disk` for the fdatasync loop).
    pub fn name(self) -> &'static str {
        match self {
            SyncVariant::Fdatasync => "disk",
            SyncVariant::ODsync => "disk-o_dsync",
            SyncVariant::ODirectODsync => "disk-o_direct-o_dsync",
        }
    }

    /// The row label in the table.
    pub fn label(self) -> String {
        let what = match self {
            SyncVariant::Fdatasync => "fdatasync loop",
            SyncVariant::ODsync => "O_DSYNC loop",
            SyncVariant::ODirectODsync => "O_DIRECT+O_DSYNC loop",
        };
        format!(
            "disk: {what}, {} B/commit (1 committer)",
            self.write_bytes()
        )
    }

    /// Bytes written per commit.
    pub fn write_bytes(self) -> usize {
        match self {
            SyncVariant::ODirectODsync => DIRECT_COMMIT_BYTES,
            _ => COMMIT_BYTES,
        }
    }

    fn open_flags(self) -> i32 {
        match self {
            SyncVariant::Fdatasync => 0,
            SyncVariant::ODsync => libc::O_DSYNC,
            SyncVariant::ODirectODsync => libc::O_DIRECT | libc::O_DSYNC,
        }
    }

    /// What one commit does, in words.
    pub fn describe(self) -> String {
        let n = self.write_bytes();
        match self {
            SyncVariant::Fdatasync => format!("pwrite {n} B + fdatasync"),
            SyncVariant::ODsync => format!("pwrite {n} B, file opened O_DSYNC"),
            SyncVariant::ODirectODsync => format!(
                "pwrite {n} B from an aligned buffer at {n}-aligned offsets, \
                 file opened O_DIRECT|O_DSYNC"
            ),
        }
    }
}

/// A record of `len` bytes for row `id`: the id, then as much of the
/// payload as fits, then zeroes.
pub fn write_record(out: &mut [u8], id: u64, payload: &[u8]) {
    out.fill(0);
    let id_len = out.len().min(8);
    out[..id_len].copy_from_slice(&id.to_le_bytes()[..id_len]);
    let n = payload.len().min(out.len() - id_len);
    out[id_len..id_len + n].copy_from_slice(&payload[..n]);
}

/// Creates `path` and writes it out in full with zeroes, synced.
pub fn preallocate(path: &Path, bytes: u64) -> Result<(), Failure> {
    let f = open_rw(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < bytes {
        let n = (bytes - off).min(zeros.len() as u64) as usize;
        f.write_all_at(&zeros[..n], off)
            .map_err(|e| io_err("cannot preallocate", path, e))?;
        off += n as u64;
    }
    f.sync_all().map_err(|e| io_err("cannot sync", path, e))
}

/// A single-committer commit loop on its own preallocated file; concurrent
/// callers take consecutive slots.
pub struct CommitLoop {
    variant: SyncVariant,
    file: File,
    path: PathBuf,
    offset: AtomicU64,
}

impl CommitLoop {
    /// Preallocates `dir/commit-<name>.dat` and opens it for `variant`.
    pub fn open(dir: &Path, variant: SyncVariant) -> Result<CommitLoop, Failure> {
        let path = dir.join(format!("commit-{}.dat", variant.name()));
        preallocate(&path, COMMIT_FILE_BYTES)?;
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(variant.open_flags())
            .open(&path)
            .map_err(|e| io_err(&format!("cannot open ({})", variant.describe()), &path, e))?;
        // One probe write, so a file system that takes the flags at open but
        // refuses the writes (O_DIRECT on some) is found here.
        file.write_all_at(&IoBuf::aligned(variant.write_bytes()), 0)
            .map_err(|e| io_err(&format!("cannot write ({})", variant.describe()), &path, e))?;
        Ok(CommitLoop {
            variant,
            file,
            path,
            offset: AtomicU64::new(0),
        })
    }

    /// The loop's settings (printed and written to the JSON).
    pub fn settings(&self) -> Vec<(String, String)> {
        vec![
            ("commit".into(), self.variant.describe()),
            (
                "file".into(),
                format!(
                    "{}, {} MiB written out and synced first",
                    self.path.display(),
                    COMMIT_FILE_BYTES >> 20
                ),
            ),
        ]
    }

    /// One thread's handle: its own (aligned) record buffer.
    pub fn op(self: &Arc<Self>) -> LoopOp {
        LoopOp {
            commits: self.clone(),
            buf: IoBuf::aligned(self.variant.write_bytes()),
        }
    }

    /// Makes `rec` durable in the next slot.
    fn commit(&self, rec: &[u8]) -> Result<(), Failure> {
        let n = rec.len() as u64;
        let off = self.offset.fetch_add(n, Ordering::Relaxed) % COMMIT_FILE_BYTES;
        self.file
            .write_all_at(rec, off)
            .map_err(|e| io_err("pwrite", &self.path, e))?;
        if self.variant == SyncVariant::Fdatasync {
            self.file
                .sync_data()
                .map_err(|e| io_err("fdatasync", &self.path, e))?;
        }
        Ok(())
    }
}

/// One thread's side of a [`CommitLoop`].
pub struct LoopOp {
    commits: Arc<CommitLoop>,
    buf: IoBuf,
}

impl TimedOp for LoopOp {
    fn run(&mut self, id: u64, payload: &[u8]) -> Result<(), Failure> {
        write_record(&mut self.buf, id, payload);
        self.commits.commit(&self.buf)
    }
}

/// The disk ceiling "engine": the fdatasync commit loop, appends, reads.
pub struct DiskEngine {
    commits: Arc<CommitLoop>,
    insert: Arc<Mutex<(File, u64)>>,
    insert_path: PathBuf,
}

impl DiskEngine {
    /// Preallocates the commit file in `dir`.
    pub fn open(dir: &Path) -> Result<DiskEngine, Failure> {
        let insert_path = dir.join("insert.dat");
        let ins = open_rw(&insert_path)?;
        Ok(DiskEngine {
            commits: Arc::new(CommitLoop::open(dir, SyncVariant::Fdatasync)?),
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
                    "{}, file of {} MiB written out first",
                    SyncVariant::Fdatasync.describe(),
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
            commit: self.commits.op(),
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
    commit: LoopOp,
    insert: Arc<Mutex<(File, u64)>>,
    buf: Vec<u8>,
}

impl Session for DiskSession {
    fn commit_one(&mut self, id: u64, payload: &[u8]) -> Result<(), Failure> {
        self.commit.run(id, payload)
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
