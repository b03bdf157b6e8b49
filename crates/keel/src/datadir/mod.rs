//! The data directory: what it holds and the order in which an open trusts
//! it.
//!
//! A data directory holds `control` (where recovery starts,
//! [`crate::recovery::control`]), `wal/` (the log segments, [`crate::wal`]),
//! `rel/` (one heap file and one free space map file per relation,
//! [`crate::heap::catalog`]) and `LOCK` (held while a process has the
//! database open).
//!
//! # The open sequence
//!
//! 1. Create the directory if it is absent, and make its entry in its
//!    parent durable ([`parent_dir`] names that parent).
//! 2. Take `LOCK`, so no other process changes the directory meanwhile.
//! 3. Read `control`.
//! 4. **Unclean open** ([`sync`]): when `control` says the last process did
//!    not close cleanly — or there is no `control` but the directory holds
//!    files — make every file and directory of the data directory durable
//!    before anything reads it for recovery (invariant 14). A process that
//!    was killed leaves its writes in the kernel's page cache: the next
//!    process reads them as if they were on disk, but a power cut would
//!    still lose them. Recovery builds on what it reads (it skips redo of
//!    pages that look written, trusts the log's tail up to where it ends,
//!    and its checkpoint moves the redo point past both), so what it reads
//!    must first be made what the disk holds.
//!    A sync that *failed* in the dead process is not repaired by syncing
//!    again: the kernel may have dropped the write and kept the pages in
//!    its cache, clean. So an unclean open also writes again what it is
//!    about to trust: the log's last batch, synced before recovery reads
//!    it ([`crate::wal::Wal::rewrite_tail`]), and
//!    every page a record from the redo start on names, which redo leaves
//!    dirty for the checkpoint that ends recovery
//!    ([`crate::recovery`]'s redo).
//! 5. Open the log (which may cut a torn tail and prepare segments: it
//!    writes only after step 4) and check it belongs with `control`,
//!    rewriting its tail after an unclean stop; then
//!    the relation files (their lengths checked against what the log and
//!    the saved maps know), recovery, the catalog (naming each file, and
//!    settling files no row names, [`crate::recovery::ddl`]), the free
//!    space maps, and a checkpoint — in the background after a crash
//!    recovery ([`open`](fn@open)).
//!
//! [`layout`] spells every name in the directory (a leaf, used by every
//! layer that names a file); [`files`] creates, lists and removes relation
//! files. The log names its segments inside `wal/` itself
//! ([`crate::wal::segment`]).

pub(crate) mod files;
mod kind;
pub mod layout;
mod open;
mod sync;

use std::path::{Path, PathBuf};

pub use kind::{kind_name, non_regular_kind};
pub(crate) use open::{apply_redo_only, open};
pub use open::{lock_dir, try_lock_waiting};
pub(crate) use sync::sync_if_unclean;
pub use sync::{RecoveryInitSync, SyncReport, sync_data_directory};

/// The directory whose entries hold `dir`: the one to sync after creating
/// `dir`. A relative path of one component lives in the working directory,
/// `.` (not in `/`).
pub fn parent_dir(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        Some(_) => PathBuf::from("."),
        None => dir.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_of_a_relative_name_is_the_working_directory() {
        assert_eq!(parent_dir(Path::new("keel-demo")), Path::new("."));
        assert_eq!(parent_dir(Path::new("a/keel-demo")), Path::new("a"));
        assert_eq!(parent_dir(Path::new("./keel-demo")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/keel-demo")), Path::new("/"));
        assert_eq!(parent_dir(Path::new("/srv/db")), Path::new("/srv"));
        assert_eq!(parent_dir(Path::new("/")), Path::new("/"));
    }
}
