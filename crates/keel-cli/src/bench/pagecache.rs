//! Emptying the kernel's page cache of one engine's files, for cold reads.
//!
//! Every regular file under the engine's data directory is opened, synced
//! (`fsync`: the advice below drops clean pages only) and given
//! `posix_fadvise(POSIX_FADV_DONTNEED)` over its whole length. This touches
//! only that engine's files, needs no privilege, and leaves the rest of the
//! machine's cache alone (unlike writing `/proc/sys/vm/drop_caches`, which
//! needs root and empties every cache on the machine). The engine must be
//! paused first ([`super::engine::Engine::pause`]): a file it keeps open
//! and writes could be cached again at once, and its own cache would serve
//! the reads anyway.

use std::fs::File;
use std::path::Path;

use crate::Failure;

/// How the cache is emptied, for the printed settings.
pub const METHOD: &str = "posix_fadvise(POSIX_FADV_DONTNEED) on every file of the engine's \
                          data directory after fsync, with the engine shut down";

/// What [`drop_dir`] went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Files synced and advised.
    pub files: u64,
    /// Their total length.
    pub bytes: u64,
}

/// Syncs every regular file under `dir` and drops its cached pages.
pub fn drop_dir(dir: &Path) -> Result<Dropped, Failure> {
    let mut done = Dropped::default();
    let mut todo = vec![dir.to_path_buf()];
    let fail = |what: &str, p: &Path, e: std::io::Error| {
        Failure(format!(
            "dropping cached pages: cannot {what} {}: {e}",
            p.display()
        ))
    };
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| fail("list", &d, e))? {
            let entry = entry.map_err(|e| fail("list", &d, e))?;
            let path = entry.path();
            let ty = entry.file_type().map_err(|e| fail("stat", &path, e))?;
            if ty.is_dir() {
                todo.push(path);
                continue;
            }
            if !ty.is_file() {
                continue; // sockets, links: nothing cached of their own
            }
            let f = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(fail("open", &path, e)),
            };
            f.sync_all().map_err(|e| fail("fsync", &path, e))?;
            keel_io::bench::drop_page_cache(&f).map_err(|e| fail("advise", &path, e))?;
            done.files += 1;
            done.bytes += f.metadata().map_err(|e| fail("stat", &path, e))?.len();
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn goes_through_every_file_below() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 5000]).unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        std::fs::write(dir.path().join("sub/deeper/b"), vec![2u8; 300]).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("link")).unwrap();
        let d = drop_dir(dir.path()).unwrap();
        assert_eq!(
            d,
            Dropped {
                files: 2,
                bytes: 5300
            }
        );
        assert!(drop_dir(&dir.path().join("missing")).is_err());
    }
}
