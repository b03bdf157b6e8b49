//! The local side of a restore and of a warm standby: every write to the
//! data directory, and every read of it that must see those writes, goes
//! through the engine's I/O layer ([`keel_io::AsyncIo`]) rather than
//! `std::fs`, so that the simulator can cut them with a power cut at any
//! operation and a test can check what is left ([`mod@crate::restore`]
//! and [`mod@crate::standby`], "Crash safety").
//!
//! Every write is followed by its own sync before the caller relies on
//! it, and a directory is synced before a file created in it is counted
//! on: after a power cut a file is there whole only if it was synced and
//! its directory entry was synced. Removals and renames are durable once
//! their directory is synced ([`Local::sync_dir`]), which the caller does
//! before it relies on them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_io::{AsyncIo, FileClass, FileHandle, IoBuf, IoError, OpenOptions};

use crate::error::{ArchiveError, Result};

/// The local side of a restore or a standby: an I/O backend, and the
/// error its failures are reported as.
#[derive(Clone)]
pub struct Local {
    io: Arc<dyn AsyncIo>,
    wrap: fn(String) -> ArchiveError,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("backend", &self.io.backend_name())
            .finish()
    }
}

fn failed(
    wrap: fn(String) -> ArchiveError,
    path: &Path,
    what: &str,
) -> impl Fn(IoError) -> ArchiveError {
    let path = path.to_path_buf();
    let what = what.to_string();
    move |e| {
        // The I/O error's text names the operation; its source, the
        // operating system's error, says why.
        let mut msg = format!("{what} {}: {e}", path.display());
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        wrap(msg)
    }
}

impl Local {
    /// Local writes through `io`, failures reported as a restore's.
    pub fn new(io: Arc<dyn AsyncIo>) -> Local {
        Local {
            io,
            wrap: ArchiveError::Restore,
        }
    }

    /// Local writes through the backend `config` names.
    pub fn for_config(config: &keel_io::IoConfig) -> Result<Local> {
        keel_io::open_backend(config)
            .map(Local::new)
            .map_err(|e| ArchiveError::Restore(format!("cannot start the I/O backend: {e}")))
    }

    /// The same backend, failures reported as a standby's.
    pub fn for_standby(self) -> Local {
        Local {
            wrap: ArchiveError::Standby,
            ..self
        }
    }

    fn failed(&self, path: &Path, what: &str) -> impl Fn(IoError) -> ArchiveError {
        failed(self.wrap, path, what)
    }

    /// Whether the backend is the simulator, whose files are not on the
    /// real file system (and which has no file locks).
    pub fn is_simulated(&self) -> bool {
        self.io.deterministic()
    }

    /// The backend.
    pub fn io(&self) -> &Arc<dyn AsyncIo> {
        &self.io
    }

    /// The names in directory `dir`, or `None` when it does not exist.
    pub fn list(&self, dir: &Path) -> Result<Option<Vec<String>>> {
        match self.io.read_dir(dir).wait() {
            Ok(entries) => Ok(Some(
                entries
                    .into_iter()
                    .map(|e| e.name.to_string_lossy().into_owned())
                    .collect(),
            )),
            Err(IoError::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed(dir, "cannot list")(e)),
        }
    }

    /// The entries of directory `dir` (name, whether a directory), or
    /// `None` when it does not exist.
    pub fn entries(&self, dir: &Path) -> Result<Option<Vec<(String, bool)>>> {
        match self.io.read_dir(dir).wait() {
            Ok(entries) => Ok(Some(
                entries
                    .into_iter()
                    .map(|e| (e.name.to_string_lossy().into_owned(), e.is_dir))
                    .collect(),
            )),
            Err(IoError::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed(dir, "cannot list")(e)),
        }
    }

    /// Whether `path` exists (a file or a directory).
    pub fn exists(&self, path: &Path) -> Result<bool> {
        let Some(name) = path.file_name() else {
            return Ok(true);
        };
        let name = name.to_string_lossy();
        Ok(self
            .list(&keel::datadir::parent_dir(path))?
            .is_some_and(|names| names.iter().any(|n| *n == name)))
    }

    /// The whole of file `path`, at most `limit` bytes (a larger file is an
    /// error naming it), or `None` when it does not exist.
    pub fn read_small(&self, path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
        let fh = match self.io.open(path, OpenOptions::new(FileClass::Data)).wait() {
            Ok(fh) => fh,
            Err(IoError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failed(path, "cannot open")(e)),
        };
        let read = self
            .io
            .size(fh)
            .wait()
            .map_err(self.failed(path, "cannot read the size of"))
            .and_then(|size| match size <= limit {
                true => self
                    .io
                    .read_exact_at(fh, 0, IoBuf::zeroed(size as usize))
                    .wait()
                    .map(IoBuf::into_vec)
                    .map_err(self.failed(path, "cannot read")),
                false => Err((self.wrap)(format!(
                    "{} is {size} bytes, more than the {limit} such a file holds",
                    path.display()
                ))),
            });
        let closed = self
            .io
            .close(fh)
            .wait()
            .map_err(self.failed(path, "cannot close"));
        let bytes = read?;
        closed?;
        Ok(Some(bytes))
    }

    /// Removes file `path` (the caller syncs its directory).
    pub fn remove(&self, path: &Path) -> Result<()> {
        self.io
            .remove(path)
            .wait()
            .map_err(self.failed(path, "cannot remove"))
    }

    /// Creates directory `dir` and any missing parent, each created one's
    /// entry synced in its parent (else a power cut after the restore
    /// returned could take the whole directory with it).
    pub fn create_dir_all(&self, dir: &Path) -> Result<()> {
        let mut missing: Vec<&Path> = Vec::new();
        for d in dir.ancestors() {
            if d.as_os_str().is_empty() || self.list(d)?.is_some() {
                break;
            }
            missing.push(d);
        }
        for d in missing.into_iter().rev() {
            match self.io.create_dir(d).wait() {
                Ok(()) | Err(IoError::AlreadyExists { .. }) => {}
                Err(e) => return Err(self.failed(d, "cannot create")(e)),
            }
            self.sync_dir(&keel::datadir::parent_dir(d))?;
        }
        Ok(())
    }

    /// Syncs directory `dir` (the entries created in it).
    pub fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.io
            .sync_dir(dir)
            .wait()
            .map_err(self.failed(dir, "cannot sync"))
    }

    /// Renames `from` to `to` (the caller syncs their directory).
    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.io
            .rename(from, to)
            .wait()
            .map_err(self.failed(to, "cannot put in place"))
    }

    /// A file created at `path`, which must not exist.
    pub fn create_new(&self, path: &Path) -> Result<NewFile<'_>> {
        let opts = OpenOptions::new(FileClass::Data)
            .write(true)
            .create_new(true);
        let fh = self
            .io
            .open(path, opts)
            .wait()
            .map_err(self.failed(path, "cannot create"))?;
        Ok(NewFile {
            local: self,
            fh: Some(fh),
            path: path.to_path_buf(),
            len: 0,
        })
    }

    /// Creates `path` holding `bytes`, synced.
    pub fn write_new_synced(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut f = self.create_new(path)?;
        f.append(bytes)?;
        f.sync_close()
    }

    /// Puts `bytes` at `path` (replacing what is there) so that after a
    /// power cut it is the old file or the whole new one, never a torn or
    /// empty one: written and synced as [`staged_path`]`(path)` (one an
    /// earlier cut left is removed first), renamed into place, and the
    /// directory synced.
    pub fn write_whole_synced(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let staged = staged_path(path);
        if self.exists(&staged)? {
            self.remove(&staged)?;
        }
        self.write_new_synced(&staged, bytes)?;
        self.rename(&staged, path)?;
        self.sync_dir(&keel::datadir::parent_dir(path))
    }
}

/// Where [`Local::write_whole_synced`] writes `path` before renaming it
/// into place: `<path>.new`.
pub fn staged_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".new");
    PathBuf::from(name)
}

/// A file being written from its start.
pub struct NewFile<'a> {
    local: &'a Local,
    fh: Option<FileHandle>,
    path: PathBuf,
    len: u64,
}

impl NewFile<'_> {
    /// Writes `bytes` after what was written.
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(fh) = self.fh else {
            return Err((self.local.wrap)(format!(
                "{} is already closed",
                self.path.display()
            )));
        };
        if bytes.is_empty() {
            return Ok(());
        }
        self.local
            .io
            .write_at(fh, self.len, IoBuf::from(bytes.to_vec()))
            .wait()
            .map_err(self.local.failed(&self.path, "cannot write"))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Syncs the file's data and closes it.
    pub fn sync_close(mut self) -> Result<()> {
        let Some(fh) = self.fh.take() else {
            return Ok(());
        };
        let synced = self
            .local
            .io
            .fdatasync(fh)
            .wait()
            .map_err(self.local.failed(&self.path, "cannot sync"));
        let closed = self
            .local
            .io
            .close(fh)
            .wait()
            .map_err(self.local.failed(&self.path, "cannot close"));
        synced.and(closed)
    }
}

impl Drop for NewFile<'_> {
    fn drop(&mut self) {
        if let Some(fh) = self.fh.take() {
            let _ = self.local.io.close(fh).wait();
        }
    }
}
