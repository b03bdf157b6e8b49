//! Archiving retired segments: zstd-compressed copies that can be verified
//! and restored.
//!
//! An archived segment is `ARCHIVE/{segment name}.zst`: one zstd frame with
//! its content checksum on, holding the whole segment file. It is written to
//! a temporary name, synced, renamed and the directory synced, so an archive
//! file either is complete or does not exist. Verification decompresses it
//! (zstd checks its checksum) and validates the segment header it holds,
//! so a file that is not the segment it claims to be fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_io::{AsyncIo, FileClass, IoBuf, OpenOptions};

use crate::wal::WalError;
use crate::wal::segment::{SEGMENT_HEADER_SIZE, SegmentDir, SegmentHeader, segment_file_name};

/// zstd level: fast to write on the checkpoint path; WAL compresses well
/// even at low levels.
const ZSTD_LEVEL: i32 = 3;

fn bad(segment: u64, path: &Path, reason: String) -> WalError {
    WalError::BadSegment {
        segment,
        path: path.to_path_buf(),
        reason,
    }
}

/// Path of segment `n`'s archive copy in `archive_dir`.
pub fn archive_path(archive_dir: &Path, n: u64) -> PathBuf {
    archive_dir.join(format!("{}.zst", segment_file_name(n)))
}

fn read_whole(io: &Arc<dyn AsyncIo>, path: &Path) -> Result<Vec<u8>, WalError> {
    let fh = io
        .open(path, OpenOptions::new(FileClass::Wal))
        .wait()
        .map_err(WalError::io("open for archiving"))?;
    let result = (|| {
        let size = io.size(fh).wait().map_err(WalError::io("size"))?;
        let buf = io
            .read_exact_at(fh, 0, IoBuf::zeroed(size as usize))
            .wait()
            .map_err(WalError::io("read for archiving"))?;
        Ok(buf.into_vec())
    })();
    let _ = io.close(fh).wait();
    result
}

/// Writes `bytes` to `path` atomically: temporary file, sync, rename,
/// directory sync.
fn write_atomically(io: &Arc<dyn AsyncIo>, path: &Path, bytes: Vec<u8>) -> Result<(), WalError> {
    let tmp = path.with_extension("tmp");
    let opts = OpenOptions::read_write_create(FileClass::Wal).truncate(true);
    let fh = io
        .open(&tmp, opts)
        .wait()
        .map_err(WalError::io("create an archive file"))?;
    let result = io
        .write_at(fh, 0, IoBuf::from(bytes))
        .wait()
        .map_err(WalError::io("write an archive file"))
        .and_then(|_| {
            io.fsync(fh)
                .wait()
                .map_err(WalError::io("sync an archive file"))
        });
    let _ = io.close(fh).wait();
    result?;
    io.rename(&tmp, path)
        .wait()
        .map_err(WalError::io("rename an archive file"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    io.sync_dir(dir)
        .wait()
        .map_err(WalError::io("sync the archive directory"))
}

fn ensure_dir(io: &Arc<dyn AsyncIo>, dir: &Path) -> Result<(), WalError> {
    if io.read_dir(dir).wait().is_ok() {
        return Ok(());
    }
    io.create_dir(dir)
        .wait()
        .map_err(WalError::io("create the archive directory"))?;
    let parent = dir.parent().unwrap_or(Path::new("."));
    io.sync_dir(parent)
        .wait()
        .map_err(WalError::io("sync the archive's parent"))
}

/// Copies segment `n` of `dir`, compressed, into `archive_dir` and verifies
/// the copy before returning (the caller may then delete the original).
pub fn archive_segment(
    io: &Arc<dyn AsyncIo>,
    dir: &SegmentDir,
    n: u64,
    archive_dir: &Path,
) -> Result<PathBuf, WalError> {
    ensure_dir(io, archive_dir)?;
    let src = dir.segment_path(n);
    let bytes = read_whole(io, &src)?;
    SegmentHeader::decode(&bytes, n, &src)?;
    let dest = archive_path(archive_dir, n);
    let compressed = compress(&bytes).map_err(|e| bad(n, &dest, format!("zstd: {e}")))?;
    write_atomically(io, &dest, compressed)?;
    let check = verify_archived(io, archive_dir, n)?;
    if check != bytes {
        return Err(bad(
            n,
            &dest,
            "archived copy differs from the segment".into(),
        ));
    }
    Ok(dest)
}

fn compress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = zstd::stream::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
    enc.include_checksum(true)?;
    enc.write_all(bytes)?;
    enc.finish()
}

/// Decompresses and validates the archived copy of segment `n`; returns the
/// segment's bytes.
pub fn verify_archived(
    io: &Arc<dyn AsyncIo>,
    archive_dir: &Path,
    n: u64,
) -> Result<Vec<u8>, WalError> {
    use std::io::Read;

    let path = archive_path(archive_dir, n);
    let compressed = read_whole(io, &path)?;
    let undecodable = |e: std::io::Error| bad(n, &path, format!("does not decompress: {e}"));
    let mut decoder = zstd::stream::read::Decoder::new(&compressed[..]).map_err(undecodable)?;
    // The header first; the segment size it names bounds the rest, so a
    // small file that decompresses to far more than a segment is refused
    // without holding more than a segment plus a byte (invariant 9).
    let mut bytes = Vec::with_capacity(SEGMENT_HEADER_SIZE);
    (&mut decoder)
        .take(SEGMENT_HEADER_SIZE as u64)
        .read_to_end(&mut bytes)
        .map_err(undecodable)?;
    let header = SegmentHeader::decode(&bytes, n, &path)?;
    let size = u64::from(header.segment_size);
    decoder
        .take(size + 1 - bytes.len() as u64)
        .read_to_end(&mut bytes)
        .map_err(undecodable)?;
    if bytes.len() as u64 > size {
        return Err(bad(
            n,
            &path,
            format!("decompresses to more than its segment size, {size} bytes"),
        ));
    }
    if bytes.len() as u64 != size {
        return Err(bad(
            n,
            &path,
            format!(
                "holds {} bytes, the segment size is {}",
                bytes.len(),
                header.segment_size
            ),
        ));
    }
    Ok(bytes)
}

/// Restores segment `n` from `archive_dir` into the WAL directory `dir`.
pub fn restore_segment(
    io: &Arc<dyn AsyncIo>,
    archive_dir: &Path,
    n: u64,
    dir: &SegmentDir,
) -> Result<(), WalError> {
    let bytes = verify_archived(io, archive_dir, n)?;
    write_atomically(io, &dir.segment_path(n), bytes)
}
