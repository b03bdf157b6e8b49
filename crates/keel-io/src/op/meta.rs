//! Path operations: open, remove, rename, list, create directory, sync
//! directory. All are blocking system calls; the backends decide on which
//! thread they run.

use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{FileRef, IoError};
use crate::request::{DirEntry, OpKind, OpenOptions, Reply};

/// Opens a file as the options say. A file system that refuses O_DIRECT
/// (EINVAL at open, as tmpfs does) gives `DirectIoUnsupported`.
///
/// A FIFO or a socket under the name is refused with `InvalidArgument`
/// naming it (files and devices are opened). The open itself is
/// non-blocking, so a FIFO cannot hold it until a writer appears; the flag
/// is cleared again on the file it returns (io_uring would answer `EAGAIN`
/// for it rather than wait).
pub(crate) fn open(path: &Path, o: &OpenOptions) -> Result<File, IoError> {
    let mut oo = fs::OpenOptions::new();
    oo.read(o.read)
        .write(o.write)
        .create(o.create)
        .create_new(o.create_new)
        .truncate(o.truncate)
        .mode(o.mode);
    let direct = if o.direct { libc::O_DIRECT } else { 0 };
    oo.custom_flags(direct | libc::O_NONBLOCK);
    let file = oo.open(path).map_err(|e| {
        if o.direct && e.raw_os_error() == Some(libc::EINVAL) {
            IoError::DirectIoUnsupported {
                file: FileRef::path(path),
                source: e,
            }
        } else {
            IoError::from_os(OpKind::Open, FileRef::path(path), e)
        }
    })?;
    let failed = |e: std::io::Error| IoError::from_os(OpKind::Open, FileRef::path(path), e);
    let kind = file.metadata().map_err(failed)?.file_type();
    if kind.is_fifo() || kind.is_socket() {
        return Err(failed(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a FIFO or a socket, not a regular file",
        )));
    }
    clear_nonblocking(&file).map_err(failed)?;
    Ok(file)
}

/// Clears `O_NONBLOCK` on `file`.
fn clear_nonblocking(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is open for the life of `file`; F_GETFL/F_SETFL read
    // and set its status flags only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn remove(path: &Path) -> Result<Reply, IoError> {
    fs::remove_file(path)
        .map(|()| Reply::Done)
        .map_err(|e| IoError::from_os(OpKind::Remove, FileRef::path(path), e))
}

pub(crate) fn rename(from: &Path, to: &Path) -> Result<Reply, IoError> {
    fs::rename(from, to)
        .map(|()| Reply::Done)
        .map_err(|e| IoError::from_os(OpKind::Rename, FileRef::path(from), e))
}

pub(crate) fn read_dir(path: &Path) -> Result<Reply, IoError> {
    let err = |e| IoError::from_os(OpKind::ReadDir, FileRef::path(path), e);
    let mut entries = Vec::new();
    for item in fs::read_dir(path).map_err(err)? {
        let item = item.map_err(err)?;
        let kind = item.file_type().map_err(err)?;
        let is_file = kind.is_file()
            || (kind.is_symlink() && fs::metadata(item.path()).is_ok_and(|m| m.is_file()));
        entries.push(DirEntry {
            name: item.file_name(),
            is_dir: kind.is_dir(),
            is_file,
        });
    }
    entries.sort();
    Ok(Reply::Entries(entries))
}

pub(crate) fn create_dir(path: &Path, mode: u32) -> Result<Reply, IoError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map(|()| Reply::Done)
        .map_err(|e| IoError::from_os(OpKind::CreateDir, FileRef::path(path), e))
}

/// fsync of the directory itself, which makes the entries created, removed
/// or renamed in it durable.
pub(crate) fn sync_dir(path: &Path) -> Result<Reply, IoError> {
    let err = |e| IoError::from_os(OpKind::SyncDir, FileRef::path(path), e);
    File::open(path).map_err(err)?.sync_all().map_err(err)?;
    Ok(Reply::Done)
}

/// syncfs(2) on the file system holding `path`: writes back and flushes
/// every dirty file and directory of that file system, including what
/// other (dead) processes left in the page cache. Linux reports writeback
/// errors met since the descriptor was opened (kernels since 5.8); older
/// kernels may return success after a failed writeback, which is why it is
/// an option next to per-file fsync, not the only way.
#[cfg(target_os = "linux")]
pub(crate) fn sync_fs(path: &Path) -> Result<Reply, IoError> {
    use std::os::fd::AsRawFd;
    let err = |e| IoError::from_os(OpKind::SyncFs, FileRef::path(path), e);
    let file = File::open(path).map_err(err)?;
    // SAFETY: syncfs takes a file descriptor and nothing else; `file` keeps
    // the descriptor open for the duration of the call.
    let rc = unsafe { libc::syncfs(file.as_raw_fd()) };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(Reply::Done)
}

/// syncfs(2) exists only on Linux.
#[cfg(not(target_os = "linux"))]
pub(crate) fn sync_fs(path: &Path) -> Result<Reply, IoError> {
    Err(IoError::errno(
        OpKind::SyncFs,
        FileRef::path(path),
        libc::ENOSYS,
    ))
}
