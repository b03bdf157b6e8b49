//! The simulated file system: a volatile and a durable image of every file
//! and of the directory namespace, and the crash that turns the first into a
//! possible second.
//!
//! Durability model (what survives [`Model::crash`]):
//!
//! 1. **File contents.** A write, set_len or allocate changes the volatile
//!    image at once (reads see it) and is appended to the inode's pending
//!    list. fsync/fdatasync of the file makes every pending change durable
//!    (fdatasync is modelled as fsync: Linux's fdatasync also flushes the
//!    size needed to read the data). A *failed* sync (any fault injected on
//!    it: EIO, ENOSPC or `SyncFailure`, as Linux marks the pages it could
//!    not write clean) resolves the pending changes as a crash would and
//!    forgets them, so a retried sync succeeds without restoring what was
//!    lost.
//!
//!    1a. A *durable write* (`Request::DurableWrite`, `RWF_DSYNC`) is durable
//!    when it returns, and only its own bytes are: it stays in the
//!    pending list, in order, but a crash (or a failed sync) always keeps
//!    it whole, after resolving the changes pending before it as usual. So
//!    a later crash can still drop or tear an earlier unsynced write beside
//!    it, as a device with FUA would (it writes the one block through and
//!    flushes nothing else), and an earlier write over the same bytes can
//!    never land on top of it.
//! 2. **Torn writes.** At a crash each pending write, in order, is applied to
//!    the durable image independently: kept whole, dropped whole, or torn —
//!    in which case each 512-byte sector it touches (sectors aligned to file
//!    offset 0) is independently old or new (SQLite's crash model). A sector
//!    is never half old, half new. A kept sector beyond the end of the file
//!    extends it (the gap reads as zeros). Pending set_len/allocate are kept
//!    or dropped whole.
//! 3. **Namespace.** Creating, removing or renaming a file, or creating a
//!    directory, changes the volatile namespace at once and appends a change
//!    to the pending list of the parent directory (for a rename: of the
//!    destination's parent; both halves of a rename form one change).
//!    sync_dir of that directory makes its pending changes durable. At a
//!    crash the disk is, at random, one of two kinds. On a journalled file
//!    system (ext4's default, XFS) each directory keeps a random *prefix*
//!    of its pending changes: metadata is committed in order. On one
//!    without a journal (ext2, ext4 with `^has_journal`), whose metadata
//!    blocks are written back in any order, each directory keeps any
//!    *subset* of them, applied in order: a later create can survive an
//!    earlier remove, a rename the create of its source. A rename is one
//!    change on both kinds (both halves or neither). Entries whose
//!    parent directory did not survive vanish with it, and a file whose
//!    entry did not survive is lost, fsynced content or not: sync the
//!    directory after creating a file.
//! 4. **syncfs** makes every pending change durable at once: every inode's
//!    and every directory's, whoever made it ([`Model::sync_all`]).
//! 5. **Process kill.** A killed process loses nothing the kernel already
//!    holds: the model itself — live images, durable images and every
//!    pending list, of files and of directories — is the kernel's page
//!    cache, and it survives the process whole (`SimIo::kill` hands it over
//!    as a `SimKernel`; only the process's open handles go, and closing a
//!    file syncs nothing). The next process reads the live images, while
//!    the dead process's unsynced changes are still pending: they become
//!    durable only through a sync (of that file, of that directory, or
//!    syncfs), and a later crash resolves them like any other pending
//!    change. This is the shape "kill, restart, power cut" (invariant 14).
//!
//! The root directory `/` always exists and is also the working directory:
//! `.` names it, and a relative top-level name lives in it. Paths are
//! otherwise compared as given, so use absolute, normalised paths. Renaming
//! directories and removing directories are not modelled (they fail with
//! `InvalidArgument`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::rng::Rng;

/// Sector size of the torn-write model.
pub const SECTOR_SIZE: usize = 512;

/// A namespace entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    File(u64),
    Dir,
}

/// One change to apply to the durable namespace as a unit.
#[derive(Debug, Clone)]
struct NsChange(Vec<(PathBuf, Option<Node>)>);

#[derive(Debug, Clone)]
enum Pending {
    /// A write; a `durable` one (a durable write) survives every crash
    /// whole, while the changes pending before it are resolved on their own.
    Write {
        offset: u64,
        data: Vec<u8>,
        durable: bool,
    },
    SetLen(u64),
    Extend(u64),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Inode {
    durable: Vec<u8>,
    pub(crate) live: Vec<u8>,
    pending: Vec<Pending>,
}

impl Inode {
    /// A write: durable at once when `durable` (rule 1a), pending
    /// otherwise.
    pub(crate) fn write(&mut self, offset: usize, data: &[u8], durable: bool) {
        let end = offset + data.len();
        if self.live.len() < end {
            self.live.resize(end, 0);
        }
        self.live[offset..end].copy_from_slice(data);
        if durable && self.pending.is_empty() {
            // Nothing pending before it to resolve first.
            put_bytes(&mut self.durable, offset, data);
            return;
        }
        self.pending.push(Pending::Write {
            offset: offset as u64,
            data: data.to_vec(),
            durable,
        });
    }

    pub(crate) fn set_len(&mut self, len: usize) {
        self.live.resize(len, 0);
        self.pending.push(Pending::SetLen(len as u64));
    }

    pub(crate) fn extend(&mut self, end: usize) {
        if self.live.len() < end {
            self.live.resize(end, 0);
            self.pending.push(Pending::Extend(end as u64));
        }
    }

    /// Makes every pending change durable. (Not a copy of `live`: after a
    /// failed sync, `live` holds data that will never reach the disk.)
    pub(crate) fn sync(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            match p {
                Pending::Write { offset, data, .. } => {
                    put_bytes(&mut self.durable, offset as usize, &data)
                }
                Pending::SetLen(len) => self.durable.resize(len as usize, 0),
                Pending::Extend(end) => {
                    if self.durable.len() < end as usize {
                        self.durable.resize(end as usize, 0);
                    }
                }
            }
        }
    }

    /// The sync failed after the kernel dropped the dirty state: resolve the
    /// pending changes as a crash would, and forget them.
    pub(crate) fn lose_pending(&mut self, rng: &mut Rng) {
        self.durable = self.resolve(rng);
        self.pending.clear();
    }

    /// What the durable image is after a crash.
    fn resolve(&self, rng: &mut Rng) -> Vec<u8> {
        let mut img = self.durable.clone();
        for p in &self.pending {
            match p {
                Pending::Write {
                    offset,
                    data,
                    durable: false,
                } => apply_write(&mut img, *offset as usize, data, rng),
                Pending::Write {
                    offset,
                    data,
                    durable: true,
                } => put_bytes(&mut img, *offset as usize, data),
                Pending::SetLen(len) => {
                    if rng.coin() {
                        img.resize(*len as usize, 0);
                    }
                }
                Pending::Extend(end) => {
                    if rng.coin() && img.len() < *end as usize {
                        img.resize(*end as usize, 0);
                    }
                }
            }
        }
        img
    }
}

/// Writes `data` at `offset` into a durable image, extending it.
fn put_bytes(img: &mut Vec<u8>, offset: usize, data: &[u8]) {
    let end = offset + data.len();
    if img.len() < end {
        img.resize(end, 0);
    }
    img[offset..end].copy_from_slice(data);
}

/// Applies one unsynced write at a crash: kept, dropped or torn by sector.
fn apply_write(img: &mut Vec<u8>, offset: usize, data: &[u8], rng: &mut Rng) {
    let mode = rng.below(3);
    if mode == 1 {
        return; // dropped
    }
    let end = offset + data.len();
    let mut pos = offset;
    while pos < end {
        let piece_end = ((pos / SECTOR_SIZE + 1) * SECTOR_SIZE).min(end);
        if mode == 0 || rng.coin() {
            if img.len() < piece_end {
                img.resize(piece_end, 0);
            }
            img[pos..piece_end].copy_from_slice(&data[pos - offset..piece_end - offset]);
        }
        pos = piece_end;
    }
}

/// The durable state of a simulated disk: what survives a crash, and what a
/// new simulator boots from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimDisk {
    files: BTreeMap<PathBuf, Vec<u8>>,
    dirs: BTreeSet<PathBuf>,
}

impl SimDisk {
    /// An empty disk (only `/`).
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// The content of a file, if it exists.
    pub fn file(&self, path: &Path) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// Every file and its content, by path.
    pub fn files(&self) -> impl Iterator<Item = (&Path, &[u8])> {
        self.files.iter().map(|(p, d)| (p.as_path(), d.as_slice()))
    }

    /// Every directory except `/`.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(PathBuf::as_path)
    }

    /// Whether a directory exists.
    pub fn has_dir(&self, path: &Path) -> bool {
        is_root(path) || self.dirs.contains(path)
    }

    /// Adds a file (its parent directories are added too).
    pub fn with_file(mut self, path: &Path, content: &[u8]) -> SimDisk {
        let mut dir = parent(path);
        while !is_root(&dir) {
            self.dirs.insert(dir.clone());
            dir = parent(&dir);
        }
        self.files.insert(path.to_path_buf(), content.to_vec());
        self
    }
}

/// Whether `p` names the root, which is also the working directory (`.`).
pub(crate) fn is_root(p: &Path) -> bool {
    p.as_os_str().is_empty() || p == Path::new("/") || p == Path::new(".")
}

/// The directory holding `p` (the root for top-level names).
pub(crate) fn parent(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("/"),
    }
}

/// The namespace and the inodes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Model {
    pub(crate) inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    live: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    pending: BTreeMap<PathBuf, Vec<NsChange>>,
}

impl Model {
    /// The live namespace with each file's live content, as a disk.
    pub(crate) fn live_disk(&self) -> SimDisk {
        let mut disk = SimDisk::default();
        for (path, node) in &self.live {
            match node {
                Node::Dir => {
                    disk.dirs.insert(path.clone());
                }
                Node::File(ino) => {
                    let content = self.inodes.get(ino).map(|i| i.live.clone());
                    disk.files.insert(path.clone(), content.unwrap_or_default());
                }
            }
        }
        disk
    }

    pub(crate) fn from_disk(disk: SimDisk) -> Model {
        let mut m = Model::default();
        for d in disk.dirs {
            m.live.insert(d, Node::Dir);
        }
        for (path, content) in disk.files {
            let ino = m.new_inode();
            if let Some(inode) = m.inodes.get_mut(&ino) {
                inode.durable.clone_from(&content);
                inode.live = content;
            }
            m.live.insert(path, Node::File(ino));
        }
        m.durable = m.live.clone();
        m
    }

    fn new_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.inodes.insert(self.next_inode, Inode::default());
        self.next_inode
    }

    pub(crate) fn lookup(&self, p: &Path) -> Option<Node> {
        if is_root(p) {
            Some(Node::Dir)
        } else {
            self.live.get(p).copied()
        }
    }

    pub(crate) fn is_dir(&self, p: &Path) -> bool {
        self.lookup(p) == Some(Node::Dir)
    }

    fn record(&mut self, dir: PathBuf, change: Vec<(PathBuf, Option<Node>)>) {
        self.pending.entry(dir).or_default().push(NsChange(change));
    }

    /// Creates an empty file entry; returns its inode.
    pub(crate) fn create_file(&mut self, p: &Path) -> u64 {
        let ino = self.new_inode();
        self.live.insert(p.to_path_buf(), Node::File(ino));
        self.record(parent(p), vec![(p.to_path_buf(), Some(Node::File(ino)))]);
        ino
    }

    pub(crate) fn create_dir(&mut self, p: &Path) {
        self.live.insert(p.to_path_buf(), Node::Dir);
        self.record(parent(p), vec![(p.to_path_buf(), Some(Node::Dir))]);
    }

    pub(crate) fn remove(&mut self, p: &Path) {
        self.live.remove(p);
        self.record(parent(p), vec![(p.to_path_buf(), None)]);
    }

    pub(crate) fn rename(&mut self, from: &Path, to: &Path, node: Node) {
        self.live.remove(from);
        self.live.insert(to.to_path_buf(), node);
        self.record(
            parent(to),
            vec![(from.to_path_buf(), None), (to.to_path_buf(), Some(node))],
        );
    }

    pub(crate) fn list(&self, dir: &Path) -> Vec<(std::ffi::OsString, bool)> {
        let root = is_root(dir);
        self.live
            .iter()
            .filter(|(p, _)| {
                if root {
                    is_root(&parent(p))
                } else {
                    parent(p) == dir
                }
            })
            .filter_map(|(p, n)| p.file_name().map(|f| (f.to_os_string(), *n == Node::Dir)))
            .collect()
    }

    pub(crate) fn sync_dir(&mut self, dir: &Path) {
        let key = if is_root(dir) {
            PathBuf::from("/")
        } else {
            dir.to_path_buf()
        };
        if let Some(changes) = self.pending.remove(&key) {
            for c in &changes {
                apply_change(&mut self.durable, c);
            }
        }
    }

    /// syncfs: every pending change of every inode and every directory
    /// becomes durable.
    pub(crate) fn sync_all(&mut self) {
        for inode in self.inodes.values_mut() {
            inode.sync();
        }
        for changes in std::mem::take(&mut self.pending).into_values() {
            for c in &changes {
                apply_change(&mut self.durable, c);
            }
        }
    }

    /// A failed syncfs after the kernel dropped the dirty state: every
    /// inode's pending changes are resolved as a crash would, and
    /// forgotten; directories keep theirs (nothing became durable).
    pub(crate) fn lose_all_pending(&mut self, rng: &mut Rng) {
        for inode in self.inodes.values_mut() {
            if !inode.pending.is_empty() {
                inode.lose_pending(rng);
            }
        }
    }

    /// The disk after a crash now (see the module docs for the model).
    pub(crate) fn crash(&self, rng: &mut Rng) -> SimDisk {
        let mut ns = self.durable.clone();
        // Rule 3: a journalled file system or one without a journal, for
        // the whole disk.
        let journalled = rng.coin();
        for changes in self.pending.values() {
            if journalled {
                let keep = rng.below(changes.len() as u64 + 1) as usize;
                for c in &changes[..keep] {
                    apply_change(&mut ns, c);
                }
            } else {
                for c in changes {
                    if rng.coin() {
                        apply_change(&mut ns, c);
                    }
                }
            }
        }
        let contents: BTreeMap<u64, Vec<u8>> = self
            .inodes
            .iter()
            .map(|(ino, inode)| (*ino, inode.resolve(rng)))
            .collect();
        let mut disk = SimDisk::default();
        // A parent sorts before its children (it is a prefix of them).
        for (path, node) in ns {
            let dir = parent(&path);
            if !is_root(&dir) && !disk.dirs.contains(&dir) {
                continue;
            }
            match node {
                Node::Dir => {
                    disk.dirs.insert(path);
                }
                Node::File(ino) => {
                    let content = contents.get(&ino).cloned().unwrap_or_default();
                    disk.files.insert(path, content);
                }
            }
        }
        disk
    }
}

fn apply_change(ns: &mut BTreeMap<PathBuf, Node>, change: &NsChange) {
    for (path, node) in &change.0 {
        match node {
            Some(n) => {
                ns.insert(path.clone(), *n);
            }
            None => {
                ns.remove(path);
            }
        }
    }
}
