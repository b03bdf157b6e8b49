//! Helpers shared by the crash and fault tests on the simulated disk.

#![allow(dead_code)] // each test file uses the helpers it needs

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keel::buffer::BufferConfig;
use keel::{Config, Database};
use keel_io::AsyncIo;
use keel_io::sim::{SimConfig, SimDisk, SimIo};

pub mod side;
pub mod tree;

/// A small engine for crash tests: `frames` buffer frames (so evictions
/// happen), 1 MiB log segments and 128 KiB flush batches (so segments roll
/// over), no automatic checkpoints (the tests take them), and redo
/// consistency checking on: every recovery compares the pages it rebuilds
/// with the images logged at run time.
pub fn small_config(frames: usize) -> Config {
    let mut c = Config {
        buffer: BufferConfig::with_frames(frames),
        checkpoint_interval: None,
        checkpoint_wal_bytes: 0,
        recovery_checkpoint: keel::RecoveryCheckpoint::BeforeOpenReturns,
        consistency_check: true,
        ..Config::default()
    };
    c.wal.segment_size_bytes = 1 << 20;
    c.wal.max_batch_bytes = 128 << 10;
    c
}

/// The simulator of crash cycle `seed` (and of its restarts, at `seed`
/// plus a multiple of 2): on odd seeds the file system refuses O_DIRECT,
/// so the log falls back to the page cache and both of its write paths
/// (`WalConfig::direct_io`) run under every crash shape of the cycle.
pub fn crash_sim_config(seed: u64) -> SimConfig {
    SimConfig {
        direct_io_supported: seed.is_multiple_of(2),
        ..SimConfig::seeded(seed)
    }
}

/// Opens (creating or recovering) the database at `/db` on the simulator.
pub fn open_sim(sim: &Arc<SimIo>, config: Config) -> keel::Result<Database> {
    Database::open_with_io("/db", config, Arc::clone(sim) as Arc<dyn AsyncIo>)
}

/// Writes the simulated disk's `/db` under `$KEEL_CRASH_DUMP/<name>` when
/// that variable is set, for `keel inspect` and `keel check` on a failing
/// cycle; does nothing otherwise.
pub fn dump_disk(disk: &SimDisk, name: &str) {
    let Some(root) = std::env::var_os("KEEL_CRASH_DUMP") else {
        return;
    };
    let to = std::path::Path::new(&root).join(name);
    for (path, data) in disk.files() {
        let Ok(rel) = path.strip_prefix("/db") else {
            continue;
        };
        let file = to.join(rel);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, data).unwrap();
    }
    for dir in disk.dirs() {
        if let Ok(rel) = dir.strip_prefix("/db") {
            std::fs::create_dir_all(to.join(rel)).unwrap();
        }
    }
    eprintln!("the simulated disk is in {}", to.display());
}

/// Every record of the log in `/db/wal` on a simulated disk, read from the
/// start (a torn tail ends it).
pub fn log_records(disk: &SimDisk) -> Vec<keel::wal::LogRecord> {
    use keel::wal::{RecoveryMode, WalReader};
    let io = Arc::new(SimIo::from_disk(disk.clone(), SimConfig::seeded(7))) as Arc<dyn AsyncIo>;
    WalReader::open_read_only(
        io,
        std::path::Path::new("/db/wal"),
        keel::Lsn::ZERO,
        RecoveryMode::TolerateTornTail,
    )
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

/// The log of `disk` (segments of `segment_bytes`) cut at `end` as a torn
/// tail would: its bytes from there to the end of the segment zeroed.
pub fn cut_log(disk: SimDisk, segment_bytes: u32, end: keel::Lsn) -> SimDisk {
    let g = keel::wal::segment::Geometry {
        segment_size: u64::from(segment_bytes),
    };
    let name = keel::wal::segment::segment_file_name(g.segment_of(end));
    let path = std::path::Path::new("/db/wal").join(name);
    let mut seg = disk.file(&path).unwrap().to_vec();
    let at = g.offset_in_segment(end) as usize;
    seg[at..].fill(0);
    disk.with_file(&path, &seg)
}

/// The log of `disk` cut at `end`: as [`cut_log`], and every later
/// segment's records zeroed too (what was logged after `end` may span
/// segments).
pub fn cut_log_all(disk: SimDisk, segment_bytes: u32, end: keel::Lsn) -> SimDisk {
    let g = keel::wal::segment::Geometry {
        segment_size: u64::from(segment_bytes),
    };
    let mut disk = cut_log(disk, segment_bytes, end);
    for n in g.segment_of(end) + 1.. {
        let name = keel::wal::segment::segment_file_name(n);
        let path = std::path::Path::new("/db/wal").join(name);
        let Some(seg) = disk.file(&path) else {
            break;
        };
        let mut seg = seg.to_vec();
        seg[keel::wal::segment::SEGMENT_HEADER_SIZE..].fill(0);
        disk = disk.with_file(&path, &seg);
    }
    disk
}

/// The smallest log for WAL tests: 64 KiB segments (the minimum), 16 KiB
/// batches, a 256 KiB buffer, so segments roll over within a few records.
pub fn small_wal_config() -> keel::wal::WalConfig {
    keel::wal::WalConfig {
        segment_size_bytes: keel::wal::segment::MIN_SEGMENT_SIZE,
        max_batch_bytes: 16 * 1024,
        buffer_capacity_bytes: 256 * 1024,
        ..keel::wal::WalConfig::default()
    }
}

/// A simulated disk holding a durable `/db`, for a log in `/db/wal`.
pub fn wal_sim(seed: u64) -> Arc<SimIo> {
    let io = Arc::new(SimIo::new(SimConfig::seeded(seed)));
    io.create_dir(std::path::Path::new("/db")).wait().unwrap();
    io.sync_dir(std::path::Path::new("/")).wait().unwrap();
    io
}

/// The machine back up after a crash: a fresh simulator on `disk`.
pub fn reboot(disk: SimDisk, seed: u64) -> Arc<SimIo> {
    Arc::new(SimIo::from_disk(disk, SimConfig::seeded(seed)))
}

/// The disk failure a two-stage crash cycle (kill, restart, power cut)
/// puts on its first process in two of three cycles:
///
/// - a failed sync: the syncs of the log (its durable writes), the data
///   files (and the writeback a checkpoint starts ahead of their
///   fdatasync), the control file or the directories fail now and then,
///   reporting EIO or ENOSPC (a file system that allocates blocks at
///   writeback, or a thin device, meets a full disk in fsync), or as the
///   simulator's bare sync failure; a failed file sync drops what it was to
///   make durable while the page cache keeps it, clean (Linux after a
///   writeback error);
/// - an I/O error or a full disk on a write: the log's durable writes, or
///   the data files' page writes and the writeback starts ahead of their
///   sync, fail with EIO or ENOSPC now and then, having done nothing;
/// - the page images kept beside the log (`images.N`): their writes, or
///   their syncs before a page write, fail.
///
/// The first failure poisons the process; the kill then leaves the next
/// one files whose newest pages read back yet were never durable
/// (docs/storage.md, "Unclean open"), or that never got the write that
/// failed.
pub fn disk_failure(rng: &mut keel_io::sim::Rng) -> Vec<keel_io::sim::FaultRule> {
    use keel_io::sim::Fault;
    let fault = [Fault::SyncFailure, Fault::Eio, Fault::NoSpace][rng.below(3) as usize];
    match rng.below(14) {
        0 => DiskPath::WalSync.fail(fault, 0.03),
        1 => DiskPath::DataSync.fail(fault, 0.5),
        2 => DiskPath::ControlSync.fail(fault, 0.5),
        // Directory syncs: their changes stay pending, as a journalled
        // file system keeps them (the simulator's model).
        3 => DiskPath::DirSync.fail(fault, 0.3),
        4 => DiskPath::WalWrite.fail(Fault::Eio, 0.03),
        5 => DiskPath::WalWrite.fail(Fault::NoSpace, 0.03),
        6 => DiskPath::DataWrite.fail(Fault::Eio, 0.3),
        7 => DiskPath::DataWrite.fail(Fault::NoSpace, 0.3),
        8 => DiskPath::ImagesSync.fail(fault, 0.5),
        9 => DiskPath::ImagesWrite.fail([Fault::Eio, Fault::NoSpace][rng.below(2) as usize], 0.3),
        _ => Vec::new(),
    }
}

/// One of the disk's durable paths, as [`disk_failure`] and the models'
/// failing disks make it fail.
#[derive(Clone, Copy, Debug)]
pub enum DiskPath {
    /// The log's syncs (its durable writes).
    WalSync,
    /// The data files' fdatasync and the writeback ahead of it.
    DataSync,
    /// The control file's syncs.
    ControlSync,
    /// Directory syncs (segment and relation file creation).
    DirSync,
    /// The log's durable writes fail at the write, having done nothing.
    WalWrite,
    /// The data files' page writes and writeback starts.
    DataWrite,
    /// The page images' syncs (before page writes).
    ImagesSync,
    /// The page images' writes.
    ImagesWrite,
}

impl DiskPath {
    /// Rules failing each operation of this path with `fault`, with
    /// probability `p`.
    pub fn fail(self, fault: keel_io::sim::Fault, p: f64) -> Vec<keel_io::sim::FaultRule> {
        use keel_io::sim::FaultRule;
        use keel_io::{FileClass, OpKind};
        const SYNCS: [OpKind; 6] = [
            OpKind::Fsync,
            OpKind::Fdatasync,
            OpKind::DurableWrite,
            OpKind::Writeback,
            OpKind::SyncDir,
            OpKind::SyncFs,
        ];
        const DATA_WRITES: [OpKind; 3] = [OpKind::Write, OpKind::WriteV, OpKind::Writeback];
        let (class, ops): (FileClass, &[OpKind]) = match self {
            DiskPath::WalSync => (FileClass::Wal, &SYNCS),
            DiskPath::DataSync => (FileClass::Data, &SYNCS),
            DiskPath::ControlSync => (FileClass::Control, &SYNCS),
            DiskPath::DirSync => (FileClass::Other, &SYNCS),
            DiskPath::WalWrite => (FileClass::Wal, &[OpKind::DurableWrite]),
            DiskPath::DataWrite => (FileClass::Data, &DATA_WRITES),
            DiskPath::ImagesSync => (FileClass::Images, &SYNCS),
            DiskPath::ImagesWrite => (FileClass::Images, &DATA_WRITES),
        };
        ops.iter()
            .map(|&op| {
                FaultRule::with_probability(p, fault)
                    .on_class(class)
                    .on_op(op)
            })
            .collect()
    }

    /// Whether this path's operations are syncs (a sync can fail bare, with
    /// EIO or ENOSPC; a write with EIO or ENOSPC).
    pub fn is_sync(self) -> bool {
        !matches!(
            self,
            DiskPath::WalWrite | DiskPath::DataWrite | DiskPath::ImagesWrite
        )
    }
}

/// A failing disk under one transaction of a model test: its operations,
/// its commit and a checkpoint after it run under [`Failure::rules`]; then
/// the process dies as [`Death`] says and the database is reopened on a
/// sound disk.
#[derive(Clone, Copy, Debug)]
pub struct Failure {
    pub shape: DiskPath,
    /// Picks the fault: a bare sync failure, EIO or ENOSPC (writes: EIO
    /// or ENOSPC).
    pub fault: u8,
    /// Each matching operation fails with this probability in a thousand.
    pub per_mille: u16,
    /// The rules go in just before the commit, not before the first
    /// operation.
    pub at_commit: bool,
    /// A checkpoint follows an acknowledged commit (still under the
    /// rules): data writes and syncs, control file and directory syncs.
    pub checkpoint: bool,
    /// How the process ends after the transaction.
    pub death: Death,
}

/// How the process on a failing disk ends.
#[derive(Clone, Copy, Debug)]
pub enum Death {
    /// Killed: what it wrote stays in the kernel, unsynced writes pending.
    Kill,
    /// A power cut: unsynced writes are dropped or torn.
    PowerCut,
    /// Killed, and the power cut in the next process right after its open
    /// recovered (and the open's checks passed): what that open exposed
    /// stays.
    KillThenPowerCut,
    /// A clean close, still on the failing disk (refused on a poisoned
    /// database), then a power cut.
    CloseThenPowerCut,
}

impl Failure {
    /// The fault rules of this failure.
    pub fn rules(&self) -> Vec<keel_io::sim::FaultRule> {
        use keel_io::sim::Fault;
        let p = f64::from(self.per_mille) / 1000.0;
        let fault = match self.shape.is_sync() {
            true => [Fault::SyncFailure, Fault::Eio, Fault::NoSpace][usize::from(self.fault % 3)],
            false => [Fault::Eio, Fault::NoSpace][usize::from(self.fault % 2)],
        };
        self.shape.fail(fault, p)
    }

    /// Makes `sim`'s disk fail as this failure says, from now on.
    pub fn arm(&self, sim: &SimIo) {
        for rule in self.rules() {
            sim.add_fault(rule);
        }
    }
}

/// Any [`Failure`]: each path, fault, death and probability alike.
pub fn failure_strategy() -> impl proptest::strategy::Strategy<Value = Failure> {
    use proptest::prelude::*;
    let shape = prop_oneof![
        Just(DiskPath::WalSync),
        Just(DiskPath::DataSync),
        Just(DiskPath::ControlSync),
        Just(DiskPath::DirSync),
        Just(DiskPath::WalWrite),
        Just(DiskPath::DataWrite),
        Just(DiskPath::ImagesSync),
        Just(DiskPath::ImagesWrite),
    ];
    let death = prop_oneof![
        Just(Death::Kill),
        Just(Death::PowerCut),
        Just(Death::KillThenPowerCut),
        Just(Death::CloseThenPowerCut),
    ];
    (
        shape,
        0u8..6,
        500u16..=1000,
        any::<bool>(),
        prop::bool::weighted(0.9),
        death,
    )
        .prop_map(
            |(shape, fault, per_mille, at_commit, checkpoint, death)| Failure {
                shape,
                fault,
                per_mille,
                at_commit,
                checkpoint,
                death,
            },
        )
}

/// An error met while the disk fails (`what` failed): fatal, and the
/// database poisoned (invariants 7 and 16: the first failed write or sync
/// poisons it, and every later call is refused).
pub fn failed(db: &Database, e: &keel::Error, what: &str) {
    assert_eq!(e.class(), keel::ErrorClass::Fatal, "{what}: {e}");
    assert!(
        db.is_poisoned(),
        "{what} failed ({e}) but the database is not poisoned"
    );
}

/// How a transaction ended, for what a crash may leave of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its commit returned `Ok`: it survives any crash.
    Acked,
    /// Its commit was called on a healthy database and failed: recovery
    /// finds it wholly committed or wholly absent.
    InCommit,
    /// It was not committed (aborted, cut off, or the database was
    /// poisoned before its commit): it is wholly absent.
    NotCommitted,
}

/// Commits `tx` on a disk failing as `f` says (its rules already in), then
/// checkpoints if `f` asks and the commit was acknowledged: an `Ok` commit
/// is refused on a poisoned database, a release failing after it poisons
/// the database (only a failed write or sync fails one here), and every
/// error is fatal and poisons it ([`failed`]).
pub fn commit_on_failing_disk(db: &Database, tx: keel::Transaction<'_>, f: &Failure) -> Outcome {
    let poisoned = db.is_poisoned();
    let cleanups = db.cleanup_failures();
    let outcome = match tx.commit() {
        Ok(()) => {
            assert!(!poisoned, "a poisoned database acknowledged a commit");
            assert!(
                db.cleanup_failures() == cleanups || db.is_poisoned(),
                "a release after the commit failed; the database is not poisoned"
            );
            Outcome::Acked
        }
        Err(e) => {
            failed(db, &e, "commit");
            match poisoned {
                true => Outcome::NotCommitted,
                false => Outcome::InCommit,
            }
        }
    };
    if outcome == Outcome::Acked
        && f.checkpoint
        && let Err(e) = db.checkpoint()
    {
        failed(db, &e, "checkpoint");
    }
    outcome
}

/// A poisoned database refuses to begin a transaction, or to commit one
/// that wrote (`write`, which may fail itself, as [`failed`] says).
pub fn refuses_commits(
    db: &Database,
    write: impl FnOnce(&mut keel::Transaction<'_>) -> keel::Result<()>,
) {
    let mut tx = match db.begin() {
        Ok(tx) => tx,
        Err(e) => {
            poison_cause(&e, "begin on a poisoned database");
            return;
        }
    };
    if let Err(e) = write(&mut tx) {
        failed(db, &e, "a write after the failure");
    }
    let e = tx
        .commit()
        .expect_err("a poisoned database acknowledged a commit");
    failed(db, &e, "a commit after the failure");
}

/// A workload that stopped before the kill or power cut it ran into
/// stopped at a failure of the disk (`disk_failure`): the database must be
/// poisoned, refusing every later transaction (invariants 7 and 16), for
/// seed `seed`.
pub fn assert_poisoned_unless_halted(seed: u64, sim: &SimIo, db: &Database) {
    if sim.is_halted() {
        return;
    }
    assert!(
        db.is_poisoned(),
        "seed {seed}: the workload stopped on an error but the database is not poisoned"
    );
    let e = db
        .begin()
        .err()
        .unwrap_or_else(|| panic!("seed {seed}: a poisoned database began a transaction"));
    poison_cause(&e, &format!("seed {seed}: begin after the failure"));
}

/// The cause a poisoned database's refusal `e` names. Fails the test
/// (saying `what`) unless `e` is fatal and is that refusal.
pub fn poison_cause<'e>(e: &'e keel::Error, what: &str) -> &'e keel::ErrorCause {
    assert_eq!(e.class(), keel::ErrorClass::Fatal, "{what}: {e}");
    let keel::Error::Db(keel::DbError::Poisoned { cause }) = e else {
        panic!("{what}: expected the poison refusal, got {e}");
    };
    cause
}

/// Sets its flag when dropped: threads that run until the flag is set
/// (readers, a checkpointer) stop even when the other side of a test
/// panics, so the test fails with that panic's message instead of its
/// scope waiting for them forever.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// How many pages of relation `name` are of type `kind` (a page that
/// cannot be read, a damaged one, counts as none).
pub fn pages_of_type(db: &Database, name: &str, kind: keel::page::PageType) -> usize {
    pages_with_type(db, name, kind).len()
}

/// How many slots of relation `name`'s heap pages hold content `matches`
/// accepts.
pub fn slots_where(
    db: &Database,
    name: &str,
    matches: impl Fn(&keel::page::SlotContent<'_>) -> bool,
) -> usize {
    use keel::page::{PageType, SlottedPage};
    pages_with_type(db, name, PageType::Heap)
        .into_iter()
        .map(|p| {
            let page = db.read_page(name, p).unwrap();
            let heap = SlottedPage::open(&page[..], p).unwrap();
            (0..heap.slot_count())
                .filter(|&s| heap.get(keel::SlotId(s)).is_ok_and(|c| matches(&c)))
                .count()
        })
        .sum()
}

/// How many dead slots (deleted tuples whose slot is not yet free for
/// reuse) the heap pages of relation `name` hold.
pub fn dead_slots(db: &Database, name: &str) -> usize {
    slots_where(db, name, |c| matches!(c, keel::page::SlotContent::Dead))
}

/// How many slots of relation `name`'s heap pages hold a tuple (a value
/// at its home or moved away from it; forward pointers not counted): one
/// per live value.
pub fn tuple_slots(db: &Database, name: &str) -> usize {
    slots_where(db, name, |c| {
        matches!(c, keel::page::SlotContent::Tuple { .. })
    })
}

/// How many pages relation `name` has.
pub fn page_count(db: &Database, name: &str) -> u32 {
    db.relations()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap()
        .pages
}

/// How many nodes of tree `name` each level has (leaves first).
pub fn nodes_per_level(db: &Database, name: &str) -> Vec<usize> {
    let mut levels = Vec::new();
    for p in 1..page_count(db, name) {
        let page = db.read_page(name, keel::PageId(p)).unwrap();
        if let Ok(node) = keel::page::tree::TreePage::open(&page[..], keel::PageId(p)) {
            let l = usize::from(node.level());
            levels.resize(levels.len().max(l + 1), 0);
            levels[l] += 1;
        }
    }
    levels
}

/// The pages of relation `name` whose header says `kind`, in order (pages
/// that cannot be read are not listed).
pub fn pages_with_type(db: &Database, name: &str, kind: keel::page::PageType) -> Vec<keel::PageId> {
    (0..page_count(db, name))
        .map(keel::PageId)
        .filter(|&p| {
            db.read_page(name, p)
                .is_ok_and(|page| keel::page::header::page_type(&page) == Some(kind))
        })
        .collect()
}
