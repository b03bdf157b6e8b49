//! A restore's writes to its local directory, through the engine's I/O
//! layer ([`keel_io::AsyncIo`]) rather than `std::fs`, so that the
//! simulator can cut them with a power cut at any operation and a test can
//! check what is left ([`mod@crate::restore`], "Crash safety").
//!
//! Every write is followed by its own sync before the restore relies on
//! it, and a directory is synced before a file created in it is counted
//! on: after a power cut a file is there whole only if it was synced and
//! its directory entry was synced.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_io::{AsyncIo, FileClass, FileHandle, IoBuf, IoError, OpenOptions};

use crate::error::{ArchiveError, Result};

/// The local side of a restore: an I/O backend.
#[derive(Clone)]
pub struct Local {
    io: Arc<dyn AsyncIo>,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("backend", &self.io.backend_name())
            .finish()
    }
}

fn failed(path: &Path, what: &str) -> impl Fn(IoError) -> ArchiveError {
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
        ArchiveError::Restore(msg)
    }
}

impl Local {
    /// Local writes through `io`.
    pub fn new(io: Arc<dyn AsyncIo>) -> Local {
        Local { io }
    }

    /// Local writes through the default backend for this machine.
    pub fn default_backend() -> Result<Local> {
        keel_io::open_backend(&keel_io::IoConfig::default())
            .map(Local::new)
            .map_err(|e| ArchiveError::Restore(format!("cannot start the I/O backend: {e}")))
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
            Err(e) => Err(failed(dir, "cannot list")(e)),
        }
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
                Err(e) => return Err(failed(d, "cannot create")(e)),
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
            .map_err(failed(dir, "cannot sync"))
    }

    /// Renames `from` to `to` (the caller syncs their directory).
    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.io
            .rename(from, to)
            .wait()
            .map_err(failed(to, "cannot put in place"))
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
            .map_err(failed(path, "cannot create"))?;
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
            return Err(ArchiveError::Restore(format!(
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
            .map_err(failed(&self.path, "cannot write"))?;
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
            .map_err(failed(&self.path, "cannot sync"));
        let closed = self
            .local
            .io
            .close(fh)
            .wait()
            .map_err(failed(&self.path, "cannot close"));
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
