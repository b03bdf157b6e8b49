//! The deterministic simulator backend.
//!
//! [`SimIo`] keeps files in memory (see `model.rs` for the durability
//! model), executes every request inline inside `submit` — the returned
//! future is already complete — and draws every random choice (crash
//! outcomes, probabilistic faults) from one splitmix64 generator seeded by
//! [`SimConfig::seed`]. The same seed and the same sequence of requests give
//! the same results, byte for byte.
//!
//! What it is for: the engine's crash tests run a workload, [`SimIo::crash`]
//! to get the [`SimDisk`] a power cut could leave, boot a new simulator from
//! it ([`SimIo::from_disk`]) and run recovery; fault injection
//! ([`FaultRule`]) makes chosen operations fail with EIO, ENOSPC, a short
//! write, a failing fsync, a power cut or a process kill, at an operation
//! number, on a file class, or with a probability.
//!
//! Two kinds of crash, and their composition:
//!
//! - **Power cut** ([`SimIo::crash`]): unsynced writes are dropped or torn;
//!   the next simulator boots from the [`SimDisk`], where everything is
//!   durable.
//! - **Process kill** ([`SimIo::kill`]): the kernel's page cache survives.
//!   The [`SimKernel`] holds every file's live content *and* its unsynced
//!   changes, still pending; [`SimIo::after_kill`] boots the next process
//!   on it. It reads what the dead process wrote, but none of that is
//!   durable until someone syncs it.
//! - **Kill, restart, power cut**: a `crash` of the simulator booted by
//!   `after_kill` resolves the dead process's pending changes together with
//!   its own, so a restart that builds on the dead process's unsynced
//!   writes without syncing them first loses them (see `model.rs`).
//!
//! Left out: concurrency effects (requests are serialised by one mutex, so
//! there are no reorderings between threads beyond their submission order),
//! timing, queue-depth backpressure (nothing is ever queued; `try_submit`
//! never returns `WouldBlock`), hard links, and directory rename/removal.

mod fault;
mod model;
pub mod rng;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

pub use fault::{Fault, FaultRule, Trigger};
pub use model::{SECTOR_SIZE, SimDisk};

use self::model::{Inode, Model, Node, parent};
pub use self::rng::Rng;
use crate::error::{FileRef, IoError};
use crate::future::IoFuture;
use crate::op::check_direct;
use crate::request::{
    DirEntry, FileClass, FileHandle, OpKind, OpenOptions, Rejected, Reply, Request,
};
use crate::stats::{IoStats, Stats};
use crate::{AsyncIo, IoBuf};

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Reported by `queue_depth` (the simulator never queues).
    pub queue_depth: usize,
    /// Whether opening with O_DIRECT succeeds (false models tmpfs).
    pub direct_io_supported: bool,
    /// Fault injection rules, checked in order.
    pub faults: Vec<FaultRule>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 0,
            queue_depth: 128,
            direct_io_supported: true,
            faults: Vec::new(),
        }
    }
}

impl SimConfig {
    /// The defaults with this seed.
    pub fn seeded(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            ..SimConfig::default()
        }
    }
}

struct SimFile {
    inode: u64,
    path: Arc<Path>,
    class: FileClass,
    options: OpenOptions,
}

struct State {
    rng: Rng,
    ops: u64,
    faults: Vec<FaultRule>,
    model: Model,
    handles: BTreeMap<u64, SimFile>,
    next_handle: u64,
    halted: bool,
    shut: bool,
    direct_io_supported: bool,
}

/// What a killed process leaves in the kernel ([`SimIo::kill`]): the whole
/// file system model, live and durable images and every pending change.
/// Opaque: the only thing to do with it is [`SimIo::after_kill`].
pub struct SimKernel {
    model: Model,
}

impl SimKernel {
    /// What a process booted on this kernel reads: every file's live
    /// content, unsynced changes included (for inspecting a failure; the
    /// kernel itself is unchanged).
    pub fn visible(&self) -> SimDisk {
        self.model.live_disk()
    }
}

impl std::fmt::Debug for SimKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimKernel")
            .field("inodes", &self.model.inodes.len())
            .finish_non_exhaustive()
    }
}

/// The simulator backend.
pub struct SimIo {
    state: Mutex<State>,
    stats: Stats,
    queue_depth: usize,
}

impl SimIo {
    /// A simulator with an empty disk.
    pub fn new(config: SimConfig) -> SimIo {
        SimIo::from_disk(SimDisk::new(), config)
    }

    /// A simulator booted from a disk ("reboot" after [`SimIo::crash`]).
    /// Everything on it is durable.
    pub fn from_disk(disk: SimDisk, config: SimConfig) -> SimIo {
        SimIo::boot(Model::from_disk(disk), config)
    }

    fn boot(model: Model, config: SimConfig) -> SimIo {
        SimIo {
            state: Mutex::new(State {
                rng: Rng::new(config.seed),
                ops: 0,
                faults: config.faults,
                model,
                handles: BTreeMap::new(),
                next_handle: 1,
                halted: false,
                shut: false,
                direct_io_supported: config.direct_io_supported,
            }),
            stats: Stats::new("sim"),
            queue_depth: config.queue_depth.max(1),
        }
    }

    /// The number the next request will get (requests so far).
    pub fn op_count(&self) -> u64 {
        self.state.lock().ops
    }

    /// Adds a fault rule.
    pub fn add_fault(&self, rule: FaultRule) {
        self.state.lock().faults.push(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Cuts the power: returns a disk this moment's state could leave after a
    /// crash (random, from the seed) and makes every later request fail with
    /// `ShutDown`.
    pub fn crash(&self) -> SimDisk {
        let mut s = self.state.lock();
        s.halted = true;
        let State { model, rng, .. } = &mut *s;
        model.crash(rng)
    }

    /// Kills the process using this simulator: every later request fails
    /// with `ShutDown`, its handles are gone, and the kernel it leaves —
    /// every file's live content with its unsynced changes still pending —
    /// is handed over to boot the next process with
    /// [`SimIo::after_kill`]. The kernel is moved out: call it once; this
    /// simulator is empty afterwards (a later `crash` yields an empty disk).
    pub fn kill(&self) -> SimKernel {
        let mut s = self.state.lock();
        s.halted = true;
        s.handles.clear();
        SimKernel {
            model: std::mem::take(&mut s.model),
        }
    }

    /// A simulator for the process started after a kill: it sees every
    /// file as the dead process left it in the page cache, and what was not
    /// synced before the kill is still not durable (a later
    /// [`crash`](SimIo::crash) may drop or tear it).
    pub fn after_kill(kernel: SimKernel, config: SimConfig) -> SimIo {
        SimIo::boot(kernel.model, config)
    }

    /// Whether a power cut or a kill (fault, `crash` or `kill`) happened.
    pub fn is_halted(&self) -> bool {
        self.state.lock().halted
    }

    fn execute(&self, req: Request) -> Result<IoFuture<Reply>, Rejected> {
        let started = Instant::now();
        let kind = req.kind();
        let mut s = self.state.lock();
        let n = s.ops;
        s.ops += 1;
        if s.shut || s.halted {
            return Err(Rejected {
                error: IoError::ShutDown { op: kind },
                request: Box::new(req),
            });
        }
        let class = s.class_of(&req);
        let fault = s.pick_fault(n, kind, class);
        if matches!(fault, Some(Fault::PowerCut | Fault::Kill)) {
            s.halted = true;
            return Err(Rejected {
                error: IoError::ShutDown { op: kind },
                request: Box::new(req),
            });
        }
        let outcome = s.run(req, fault);
        drop(s);
        let bytes = outcome.as_ref().map_or(0, Reply::bytes);
        self.stats
            .record(kind, class, bytes, outcome.is_ok(), started.elapsed());
        Ok(IoFuture::ready(kind, outcome))
    }
}

impl State {
    fn class_of(&self, req: &Request) -> FileClass {
        match req {
            Request::Open { options, .. } => options.class,
            _ => req
                .handle()
                .and_then(|h| self.handles.get(&h.raw()))
                .map_or(FileClass::Other, |f| f.class),
        }
    }

    fn pick_fault(&mut self, n: u64, kind: OpKind, class: FileClass) -> Option<Fault> {
        for i in 0..self.faults.len() {
            let rule = self.faults[i];
            if !rule.matches(kind, class) {
                continue;
            }
            let fire = match rule.trigger {
                Trigger::AtOp(at) => at == n,
                Trigger::Always => true,
                Trigger::PerMillion(p) => self.rng.chance(p),
            };
            if fire {
                return Some(rule.fault);
            }
        }
        None
    }

    fn file(&self, h: FileHandle, op: OpKind) -> Result<&SimFile, IoError> {
        self.handles
            .get(&h.raw())
            .ok_or(IoError::BadHandle { op, handle: h })
    }

    fn run(&mut self, req: Request, fault: Option<Fault>) -> Result<Reply, IoError> {
        let kind = req.kind();
        if let Some(h) = req.handle()
            && kind != OpKind::Close
        {
            let f = self.file(h, kind)?;
            let fref = FileRef::both(h, Arc::clone(&f.path));
            check_access(&req, f, &fref)?;
            if let Some(err) = data_fault(fault, kind, &fref) {
                return Err(err);
            }
            let inode = f.inode;
            return self.run_on_file(req, inode, fref, fault);
        }
        self.run_path(req, fault)
    }

    fn run_on_file(
        &mut self,
        req: Request,
        inode: u64,
        fref: FileRef,
        fault: Option<Fault>,
    ) -> Result<Reply, IoError> {
        let kind = req.kind();
        let State { model, rng, .. } = self;
        let Some(ino) = model.inodes.get_mut(&inode) else {
            return Err(IoError::Io {
                op: kind,
                file: fref,
                source: std::io::Error::from_raw_os_error(libc::EIO),
            });
        };
        let offset_of = |o: u64| usize::try_from(o).map_err(|_| too_big(kind, &fref));
        match req {
            Request::Read {
                offset, buf, exact, ..
            } => {
                let off = offset_of(offset)?;
                let read = read_bytes(ino, fref, (offset, off), buf, exact);
                match (read, fault) {
                    (Ok(Reply::Read { mut buf, n }), Some(Fault::FlipBit)) if n > 0 => {
                        buf[n / 2] ^= 1;
                        Ok(Reply::Read { buf, n })
                    }
                    (read, _) => read,
                }
            }
            Request::Write { offset, buf, .. } => {
                write_bytes(ino, kind, &fref, offset_of(offset)?, &[&buf], fault, false)?;
                Ok(Reply::Written(buf))
            }
            Request::WriteV { offset, bufs, .. } => {
                let slices: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
                write_bytes(ino, kind, &fref, offset_of(offset)?, &slices, fault, false)?;
                Ok(Reply::WrittenV(bufs))
            }
            // A durable write that fails at its sync is a failed sync (model
            // rule 1): the bytes reached the kernel, which then dropped the
            // file's dirty state, so they and everything pending are
            // resolved as in a crash. EIO and ENOSPC may instead come from
            // the write itself, which then has no effect.
            Request::DurableWrite { offset, buf, .. } => {
                let off = offset_of(offset)?;
                if let Some(errno) = sync_errno(fault) {
                    if fault == Some(Fault::SyncFailure) || rng.coin() {
                        write_bytes(ino, kind, &fref, off, &[&buf], None, false)?;
                        ino.lose_pending(rng);
                    }
                    return Err(IoError::errno(kind, fref, errno));
                }
                write_bytes(ino, kind, &fref, off, &[&buf], fault, true)?;
                Ok(Reply::Written(buf))
            }
            Request::Sync { .. } => {
                if let Some(errno) = sync_errno(fault) {
                    ino.lose_pending(rng);
                    return Err(IoError::errno(kind, fref, errno));
                }
                ino.sync();
                Ok(Reply::Done)
            }
            // Pending writes already may or may not reach the disk before
            // a sync (model rule 2), so starting their writeback changes
            // nothing modelled. A failure is modelled as a failed sync's:
            // the kernel may have dropped what it could not write.
            Request::StartWriteback { .. } => {
                if let Some(errno) = sync_errno(fault) {
                    ino.lose_pending(rng);
                    return Err(IoError::errno(kind, fref, errno));
                }
                Ok(Reply::Done)
            }
            Request::Allocate { offset, len, .. } => {
                let end = offset
                    .checked_add(len)
                    .ok_or_else(|| too_big(kind, &fref))?;
                ino.extend(offset_of(end)?);
                Ok(Reply::Done)
            }
            Request::SetLen { len, .. } => {
                ino.set_len(offset_of(len)?);
                Ok(Reply::Done)
            }
            Request::Size { .. } => Ok(Reply::Size(ino.live.len() as u64)),
            other => Err(IoError::InvalidArgument {
                op: other.kind(),
                file: fref,
                reason: "not a file request",
                source: None,
            }),
        }
    }

    fn run_path(&mut self, req: Request, fault: Option<Fault>) -> Result<Reply, IoError> {
        let kind = req.kind();
        let nospace = fault == Some(Fault::NoSpace);
        match req {
            Request::Close { file } => match self.handles.remove(&file.raw()) {
                Some(_) => Ok(Reply::Done),
                None => Err(IoError::BadHandle {
                    op: kind,
                    handle: file,
                }),
            },
            Request::Open { path, options } => self.open(&path, options, nospace),
            Request::Remove { path } => match self.model.lookup(&path) {
                Some(Node::File(_)) => {
                    self.model.remove(&path);
                    Ok(Reply::Done)
                }
                Some(Node::Dir) => Err(unsupported(kind, &path, "removing a directory")),
                None => Err(IoError::errno(kind, FileRef::path(&path), libc::ENOENT)),
            },
            Request::Rename { from, to } => self.rename(&from, &to),
            Request::ReadDir { path } => self.read_dir(&path),
            Request::CreateDir { path, .. } => self.create_dir(&path, nospace),
            Request::SyncDir { path } => self.sync_dir(&path, fault),
            Request::SyncFs { path } => self.sync_fs(&path, fault),
            other => Err(IoError::InvalidArgument {
                op: other.kind(),
                file: FileRef::default(),
                reason: "not a path request",
                source: None,
            }),
        }
    }

    fn rename(&mut self, from: &Path, to: &Path) -> Result<Reply, IoError> {
        let kind = OpKind::Rename;
        let node = match self.model.lookup(from) {
            Some(n @ Node::File(_)) => n,
            Some(Node::Dir) => return Err(unsupported(kind, from, "renaming a directory")),
            None => return Err(IoError::errno(kind, FileRef::path(from), libc::ENOENT)),
        };
        if !self.model.is_dir(&parent(to)) {
            return Err(IoError::errno(kind, FileRef::path(to), libc::ENOENT));
        }
        if self.model.lookup(to) == Some(Node::Dir) {
            return Err(IoError::errno(kind, FileRef::path(to), libc::EISDIR));
        }
        self.model.rename(from, to, node);
        Ok(Reply::Done)
    }

    fn read_dir(&self, path: &Path) -> Result<Reply, IoError> {
        if !self.model.is_dir(path) {
            return Err(IoError::errno(
                OpKind::ReadDir,
                FileRef::path(path),
                libc::ENOENT,
            ));
        }
        let mut entries: Vec<DirEntry> = self
            .model
            .list(path)
            .into_iter()
            .map(|(name, is_dir)| DirEntry {
                name,
                is_dir,
                is_file: !is_dir,
            })
            .collect();
        entries.sort();
        Ok(Reply::Entries(entries))
    }

    fn create_dir(&mut self, path: &Path, nospace: bool) -> Result<Reply, IoError> {
        let (kind, fref) = (OpKind::CreateDir, FileRef::path(path));
        if self.model.lookup(path).is_some() {
            return Err(IoError::errno(kind, fref, libc::EEXIST));
        }
        if !self.model.is_dir(&parent(path)) {
            return Err(IoError::errno(kind, fref, libc::ENOENT));
        }
        if nospace {
            return Err(IoError::errno(kind, fref, libc::ENOSPC));
        }
        self.model.create_dir(path);
        Ok(Reply::Done)
    }

    fn sync_dir(&mut self, path: &Path, fault: Option<Fault>) -> Result<Reply, IoError> {
        let (kind, fref) = (OpKind::SyncDir, FileRef::path(path));
        if !self.model.is_dir(path) {
            return Err(IoError::errno(kind, fref, libc::ENOENT));
        }
        match sync_errno(fault) {
            Some(errno) => Err(IoError::errno(kind, fref, errno)),
            None => {
                self.model.sync_dir(path);
                Ok(Reply::Done)
            }
        }
    }

    fn sync_fs(&mut self, path: &Path, fault: Option<Fault>) -> Result<Reply, IoError> {
        let (kind, fref) = (OpKind::SyncFs, FileRef::path(path));
        if self.model.lookup(path).is_none() {
            return Err(IoError::errno(kind, fref, libc::ENOENT));
        }
        match sync_errno(fault) {
            Some(errno) => {
                let State { model, rng, .. } = self;
                model.lose_all_pending(rng);
                Err(IoError::errno(kind, fref, errno))
            }
            None => {
                self.model.sync_all();
                Ok(Reply::Done)
            }
        }
    }

    fn open(&mut self, path: &Path, o: OpenOptions, nospace: bool) -> Result<Reply, IoError> {
        let op = OpKind::Open;
        let fref = FileRef::path(path);
        if !self.model.is_dir(&parent(path)) {
            return Err(IoError::errno(op, fref, libc::ENOENT));
        }
        if o.direct && !self.direct_io_supported {
            return Err(IoError::DirectIoUnsupported {
                file: fref,
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        if (o.create || o.create_new || o.truncate) && !o.write {
            return Err(IoError::errno(op, fref, libc::EINVAL));
        }
        let inode = match self.model.lookup(path) {
            Some(Node::Dir) => return Err(IoError::errno(op, fref, libc::EISDIR)),
            Some(Node::File(_)) if o.create_new => {
                return Err(IoError::errno(op, fref, libc::EEXIST));
            }
            Some(Node::File(ino)) => {
                if o.truncate
                    && let Some(i) = self.model.inodes.get_mut(&ino)
                {
                    i.set_len(0);
                }
                ino
            }
            None if o.create || o.create_new => {
                if nospace {
                    return Err(IoError::errno(op, fref, libc::ENOSPC));
                }
                self.model.create_file(path)
            }
            None => return Err(IoError::errno(op, fref, libc::ENOENT)),
        };
        let h = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(
            h,
            SimFile {
                inode,
                path: Arc::from(path),
                class: o.class,
                options: o,
            },
        );
        Ok(Reply::Opened(FileHandle::from_raw(h)))
    }
}

/// Read/write permission and O_DIRECT alignment, as the kernel checks them.
fn check_access(req: &Request, f: &SimFile, fref: &FileRef) -> Result<(), IoError> {
    let kind = req.kind();
    let allowed = match kind {
        OpKind::Read => f.options.read,
        OpKind::Write
        | OpKind::WriteV
        | OpKind::DurableWrite
        | OpKind::Allocate
        | OpKind::SetLen => f.options.write,
        _ => true,
    };
    if !allowed {
        return Err(IoError::errno(kind, fref.clone(), libc::EBADF));
    }
    if f.options.direct {
        match req {
            Request::Read { offset, buf, .. }
            | Request::Write { offset, buf, .. }
            | Request::DurableWrite { offset, buf, .. } => {
                check_direct(kind, fref, *offset, &[buf])?;
            }
            Request::WriteV { offset, bufs, .. } => {
                let slices: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
                check_direct(kind, fref, *offset, &slices)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The error an injected fault turns a file request into, if it fails it
/// outright (short writes and every fault on a sync are handled by the
/// operation).
fn data_fault(fault: Option<Fault>, kind: OpKind, fref: &FileRef) -> Option<IoError> {
    if is_sync(kind) {
        return None;
    }
    match fault? {
        Fault::Eio => Some(IoError::errno(kind, fref.clone(), libc::EIO)),
        Fault::NoSpace => Some(IoError::errno(kind, fref.clone(), libc::ENOSPC)),
        Fault::ShortWrite { .. }
        | Fault::SyncFailure
        | Fault::FlipBit
        | Fault::PowerCut
        | Fault::Kill => None,
    }
}

/// Whether an operation of this kind makes something durable (and so
/// fails as a sync: see [`Fault::Eio`]).
fn is_sync(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Fsync
            | OpKind::Fdatasync
            | OpKind::DurableWrite
            | OpKind::Writeback
            | OpKind::SyncDir
            | OpKind::SyncFs
    )
}

/// The error number a fault on a sync fails it with: every failure of a
/// sync is one after the kernel dropped the dirty state it could not
/// write (Linux marks such pages clean), whatever it reports.
fn sync_errno(fault: Option<Fault>) -> Option<i32> {
    match fault? {
        Fault::Eio | Fault::SyncFailure => Some(libc::EIO),
        Fault::NoSpace => Some(libc::ENOSPC),
        Fault::ShortWrite { .. } | Fault::FlipBit | Fault::PowerCut | Fault::Kill => None,
    }
}

/// Reads from `ino` at `off` (`offset` as asked) into `buf`; short past
/// the end, an error then when `exact`.
fn read_bytes(
    ino: &Inode,
    fref: FileRef,
    (offset, off): (u64, usize),
    mut buf: IoBuf,
    exact: bool,
) -> Result<Reply, IoError> {
    let avail = ino.live.len().saturating_sub(off).min(buf.len());
    if avail > 0 {
        buf[..avail].copy_from_slice(&ino.live[off..off + avail]);
    }
    if exact && avail < buf.len() {
        return Err(IoError::ShortRead {
            file: fref,
            offset,
            wanted: buf.len(),
            got: avail,
        });
    }
    Ok(Reply::Read { buf, n: avail })
}

/// Writes the concatenation of `parts` at `offset`, as one system call or,
/// under a short-write fault, as a short first call and a resubmission;
/// each call's bytes durable at once when `durable`.
fn write_bytes(
    ino: &mut model::Inode,
    kind: OpKind,
    fref: &FileRef,
    offset: usize,
    parts: &[&[u8]],
    fault: Option<Fault>,
    durable: bool,
) -> Result<(), IoError> {
    let data: Vec<u8> = parts.concat();
    if data.is_empty() {
        return Ok(());
    }
    let first = match fault {
        Some(Fault::ShortWrite { max_bytes }) => max_bytes.min(data.len()),
        _ => data.len(),
    };
    if first == 0 {
        return Err(IoError::ShortWrite {
            op: kind,
            file: fref.clone(),
            offset: offset as u64,
            wanted: data.len(),
            written: 0,
        });
    }
    ino.write(offset, &data[..first], durable);
    if first < data.len() {
        ino.write(offset + first, &data[first..], durable);
    }
    Ok(())
}

fn too_big(op: OpKind, fref: &FileRef) -> IoError {
    IoError::InvalidArgument {
        op,
        file: fref.clone(),
        reason: "offset or length too large for the simulator",
        source: None,
    }
}

fn unsupported(op: OpKind, path: &Path, what: &'static str) -> IoError {
    IoError::InvalidArgument {
        op,
        file: FileRef::path(path),
        reason: what,
        source: None,
    }
}

impl AsyncIo for SimIo {
    fn backend_name(&self) -> &'static str {
        "sim"
    }

    fn deterministic(&self) -> bool {
        true
    }

    fn submit(&self, req: Request) -> IoFuture<Reply> {
        let kind = req.kind();
        self.execute(req)
            .unwrap_or_else(|r| IoFuture::ready(kind, Err(r.error)))
    }

    fn try_submit(&self, req: Request) -> Result<IoFuture<Reply>, Rejected> {
        self.execute(req)
    }

    fn queue_depth(&self) -> usize {
        self.queue_depth
    }

    fn stats(&self) -> IoStats {
        self.stats.snapshot()
    }

    fn shutdown(&self) {
        let mut s = self.state.lock();
        s.shut = true;
        s.handles.clear();
    }
}

impl std::fmt::Debug for SimIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimIo")
            .field("ops", &self.op_count())
            .finish()
    }
}
