//! Buffer pool tests through the public API: eviction round trips and
//! concurrent heap-page workloads on the simulator and the thread-pool
//! backend, WAL-before-data (invariant 4) watched at the I/O layer with a
//! recording flusher and with the real log, durability across a simulated
//! power cut after `flush_all`, and the background writer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keel::buffer::{BufferConfig, BufferError, BufferPool, FileId, NoWal, RecordingFlusher};
use keel::buffer::{PageWriteGuard, WalFlusher};
use keel::page::{self, SlottedPage, TupleFlags};
use keel::types::{Lsn, PageId, SlotId, TxnId};
use keel::wal::{RecordMeta, RecordType, Wal, WalConfig};
use keel_io::sim::{SimConfig, SimIo};
use keel_io::{
    AsyncIo, FileClass, FileHandle, IoBuf, IoConfig, OpenOptions, Request, ThreadPoolIo,
};
use parking_lot::Mutex;

mod common;

use keel_io::watch::{Watch, Watched};

const F: FileId = FileId(1);
const THREADS: u32 = 4;
const PAGES: u32 = 100;
const ROUNDS: u32 = 6;

/// One backend with a directory to put data files in.
struct Backend {
    io: Arc<dyn AsyncIo>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Backend {
    fn sim() -> Backend {
        Backend {
            io: Arc::new(SimIo::new(SimConfig::seeded(7))),
            dir: PathBuf::from("/"),
            _tmp: None,
        }
    }

    fn thread_pool() -> Backend {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        Backend {
            io: Arc::new(ThreadPoolIo::new(&IoConfig::default()).unwrap()),
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
        }
    }

    fn open(&self, name: &str) -> FileHandle {
        open(&*self.io, &self.dir.join(name))
    }
}

fn open(io: &dyn AsyncIo, path: &Path) -> FileHandle {
    io.open(path, OpenOptions::read_write_create(FileClass::Data))
        .wait()
        .unwrap()
}

fn pool(
    io: &Arc<dyn AsyncIo>,
    handle: FileHandle,
    cfg: BufferConfig,
    wal: Arc<dyn WalFlusher>,
) -> BufferPool {
    let pool = BufferPool::new(io.clone(), wal, cfg).unwrap();
    pool.register_file(F, handle).unwrap();
    pool
}

/// The tuple thread `t` inserts into `page` in `round`.
fn tuple(t: u32, page: u32, round: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [t, page, round, t ^ page ^ round] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

fn insert(g: &mut PageWriteGuard<'_>, page: u32, data: &[u8], lsn: Lsn) -> SlotId {
    let mut sp = SlottedPage::open(&mut g[..], PageId(page)).unwrap();
    let slot = sp.insert(data, TupleFlags::NONE).unwrap();
    g.mark_dirty(lsn);
    slot
}

fn check_page(pool: &BufferPool, page: u32, rounds: u32) {
    let g = pool.fetch_read(F, PageId(page)).unwrap();
    let sp = SlottedPage::open(&g[..], PageId(page)).unwrap();
    assert_eq!(u32::from(sp.slot_count()), rounds, "page {page}");
    for r in 0..rounds {
        let t = page % THREADS;
        assert_eq!(
            sp.tuple(SlotId(r as u16)).unwrap(),
            &tuple(t, page, r)[..],
            "page {page} slot {r}"
        );
    }
}

#[test]
fn eviction_round_trip_on_the_simulator() {
    eviction_round_trip(Backend::sim());
}

#[test]
fn eviction_round_trip_on_the_thread_pool() {
    eviction_round_trip(Backend::thread_pool());
}

/// 8 frames, 100 pages: every page is evicted (dirty) and read back.
fn eviction_round_trip(b: Backend) {
    let h = b.open("rel");
    let pool = pool(&b.io, h, BufferConfig::with_frames(8), Arc::new(NoWal));
    for p in 0..PAGES {
        let mut g = pool.new_page(F, PageId(p)).unwrap();
        SlottedPage::init(&mut g[..], PageId(p)).unwrap();
        insert(&mut g, p, &tuple(p % THREADS, p, 0), Lsn(u64::from(p) + 1));
    }
    for p in (0..PAGES).rev() {
        check_page(&pool, p, 1);
    }
    let s = pool.stats();
    assert!(s.dirty_evictions >= u64::from(PAGES) - 8, "{s:?}");
    assert!(s.reads >= u64::from(PAGES) - 8, "{s:?}");
    pool.flush_all().unwrap();
    drop(pool);
    let pool = self::pool(&b.io, h, BufferConfig::with_frames(8), Arc::new(NoWal));
    for p in 0..PAGES {
        check_page(&pool, p, 1);
    }
}

#[test]
fn concurrent_writers_on_the_simulator() {
    concurrent_workload(Backend::sim(), BufferConfig::with_frames(8));
}

#[test]
fn concurrent_writers_on_the_simulator_with_one_spare_frame() {
    // Four threads holding a pin each leave one frame to cycle through,
    // while the background writer competes for it.
    let cfg = BufferConfig {
        background_writer: true,
        writer_interval_ms: 1,
        writer_batch_pages: 2,
        ..BufferConfig::with_frames(5)
    };
    concurrent_workload(Backend::sim(), cfg);
}

#[test]
fn concurrent_writers_on_the_thread_pool_with_background_writer() {
    let cfg = BufferConfig {
        background_writer: true,
        writer_interval_ms: 1,
        writer_batch_pages: 4,
        ..BufferConfig::with_frames(8)
    };
    concurrent_workload(Backend::thread_pool(), cfg);
}

/// Four threads each own every fourth page, format them as heap pages and
/// insert a tuple per round, reading each back (and an older one) at once;
/// 8 frames for 100 pages, so pages are evicted and re-read constantly.
fn concurrent_workload(b: Backend, cfg: BufferConfig) {
    let h = b.open("rel");
    let wal = Arc::new(RecordingFlusher::new());
    let pool = pool(&b.io, h, cfg, wal.clone());
    let next_lsn = AtomicU64::new(1);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (pool, next_lsn) = (&pool, &next_lsn);
            s.spawn(move || {
                let mine: Vec<u32> = (0..PAGES).filter(|p| p % THREADS == t).collect();
                for round in 0..ROUNDS {
                    for &p in &mine {
                        let lsn = Lsn(next_lsn.fetch_add(1, Ordering::SeqCst));
                        let mut g = if round == 0 {
                            let mut g = pool.new_page(F, PageId(p)).unwrap();
                            SlottedPage::init(&mut g[..], PageId(p)).unwrap();
                            g
                        } else {
                            pool.fetch_write(F, PageId(p)).unwrap()
                        };
                        let slot = insert(&mut g, p, &tuple(t, p, round), lsn);
                        assert_eq!(u32::from(slot.0), round);
                        drop(g);
                        let g = pool.fetch_read(F, PageId(p)).unwrap();
                        let sp = SlottedPage::open(&g[..], PageId(p)).unwrap();
                        assert_eq!(sp.tuple(slot).unwrap(), &tuple(t, p, round)[..]);
                        assert_eq!(sp.tuple(SlotId(0)).unwrap(), &tuple(t, p, 0)[..]);
                    }
                }
            });
        }
    });
    for p in 0..PAGES {
        check_page(&pool, p, ROUNDS);
    }
    pool.shutdown().unwrap();
    assert!(pool.dirty_pages().is_empty());
    let s = pool.stats();
    assert!(s.syncs >= 1 && s.evictions > 0, "{s:?}");
    assert!(wal.durable() >= Lsn(1));
    drop(pool);
    let fresh = self::pool(&b.io, h, BufferConfig::with_frames(8), Arc::new(NoWal));
    for p in 0..PAGES {
        check_page(&fresh, p, ROUNDS);
    }
}

/// Checks, for every write to a watched data file, that the WAL is
/// already durable through the page LSN in the written bytes.
struct WalWatch {
    covered: Box<dyn Fn(Lsn) -> bool + Send + Sync>,
    data: Mutex<HashSet<FileHandle>>,
    page_writes: AtomicU64,
    violations: Mutex<Vec<String>>,
}

impl WalWatch {
    /// `inner` watched by a `WalWatch` whose log is durable through an LSN
    /// when `covered` says so.
    fn around(
        inner: Arc<dyn AsyncIo>,
        covered: impl Fn(Lsn) -> bool + Send + Sync + 'static,
    ) -> Arc<Watched<WalWatch>> {
        Arc::new(Watched {
            inner,
            watch: WalWatch {
                covered: Box::new(covered),
                data: Mutex::new(HashSet::new()),
                page_writes: AtomicU64::new(0),
                violations: Mutex::new(Vec::new()),
            },
        })
    }
}

impl Watch for WalWatch {
    fn before(&self, req: &Request) -> bool {
        // A single page, or neighbouring pages in one vectored write.
        let (file, offset, bufs) = match req {
            Request::Write { file, offset, buf } => (file, *offset, vec![buf]),
            Request::WriteV { file, offset, bufs } => (file, *offset, bufs.iter().collect()),
            _ => return false,
        };
        if !self.data.lock().contains(file) {
            return false;
        }
        for (i, buf) in bufs.into_iter().enumerate() {
            let offset = offset + (i * page::PAGE_SIZE) as u64;
            self.page_writes.fetch_add(1, Ordering::SeqCst);
            let lsn = page::page_lsn(buf).unwrap();
            if lsn != Lsn::ZERO && !(self.covered)(lsn) {
                self.violations.lock().push(format!(
                    "page at offset {offset} with LSN {lsn} written early"
                ));
            }
        }
        false
    }
}

#[test]
fn wal_before_data_with_a_recording_flusher() {
    let flusher = Arc::new(RecordingFlusher::new());
    let f2 = flusher.clone();
    let sim: Arc<dyn AsyncIo> = Arc::new(SimIo::new(SimConfig::seeded(3)));
    let watched = WalWatch::around(sim, move |lsn| lsn <= f2.durable());
    let watch = &watched.watch;
    let io: Arc<dyn AsyncIo> = watched.clone();
    let h = open(&*io, Path::new("/rel"));
    watch.data.lock().insert(h);
    let cfg = BufferConfig {
        background_writer: true,
        writer_interval_ms: 1,
        writer_batch_pages: 3,
        ..BufferConfig::with_frames(6)
    };
    let pool = pool(&io, h, cfg, flusher.clone());
    let next_lsn = AtomicU64::new(1);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (pool, next_lsn) = (&pool, &next_lsn);
            s.spawn(move || {
                for round in 0..3 {
                    for p in (0..40).filter(|p| p % THREADS == t) {
                        let lsn = Lsn(next_lsn.fetch_add(1, Ordering::SeqCst));
                        let mut g = if round == 0 {
                            let mut g = pool.new_page(F, PageId(p)).unwrap();
                            SlottedPage::init(&mut g[..], PageId(p)).unwrap();
                            g
                        } else {
                            pool.fetch_write(F, PageId(p)).unwrap()
                        };
                        insert(&mut g, p, &tuple(t, p, round), lsn);
                    }
                }
            });
        }
    });
    pool.flush_all().unwrap();
    assert!(watch.page_writes.load(Ordering::SeqCst) >= 40);
    assert_eq!(*watch.violations.lock(), Vec::<String>::new());
    assert!(flusher.calls() > 0);
}

#[test]
fn wal_before_data_with_the_real_log() {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(5)));
    sim.create_dir(Path::new("/db")).wait().unwrap();
    let sim: Arc<dyn AsyncIo> = sim;
    let wal_cfg = WalConfig {
        segment_size_bytes: 64 * 1024,
        max_batch_bytes: 16 * 1024,
        buffer_capacity_bytes: 256 * 1024,
        ..WalConfig::default()
    };
    let (wal, _) = Wal::open(sim.clone(), Path::new("/db/wal"), wal_cfg).unwrap();
    let wal = Arc::new(wal);
    let w2 = wal.clone();
    // The record at `lsn` is durable once the durable end is past it.
    let watched = WalWatch::around(sim, move |lsn| w2.durable_lsn() > lsn);
    let watch = &watched.watch;
    let io: Arc<dyn AsyncIo> = watched.clone();
    let h = open(&*io, Path::new("/db/rel"));
    watch.data.lock().insert(h);
    let pool = pool(&io, h, BufferConfig::with_frames(4), wal.clone());
    for round in 0..3u32 {
        for p in 0..30 {
            let rec = wal
                .append(
                    &RecordMeta::new(RecordType::HeapInsert).in_txn(TxnId(1), Lsn::ZERO),
                    &tuple(0, p, round),
                )
                .unwrap();
            let mut g = if round == 0 {
                let mut g = pool.new_page(F, PageId(p)).unwrap();
                SlottedPage::init(&mut g[..], PageId(p)).unwrap();
                g
            } else {
                pool.fetch_write(F, PageId(p)).unwrap()
            };
            insert(&mut g, p, &tuple(0, p, round), rec.lsn);
        }
    }
    pool.flush_all().unwrap();
    assert!(watch.page_writes.load(Ordering::SeqCst) >= 60);
    assert_eq!(*watch.violations.lock(), Vec::<String>::new());
    for p in 0..30 {
        let g = pool.fetch_read(F, PageId(p)).unwrap();
        let sp = SlottedPage::open(&g[..], PageId(p)).unwrap();
        assert_eq!(sp.slot_count(), 3);
    }
}

#[test]
fn flush_all_survives_a_power_cut() {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(11)));
    let io: Arc<dyn AsyncIo> = sim.clone();
    let h = open(&*io, Path::new("/rel"));
    // Creating the file is a directory change: make it durable (the
    // heap's job when it creates a relation; the pool syncs file data).
    io.sync_dir(Path::new("/")).wait().unwrap();
    let pool = pool(&io, h, BufferConfig::with_frames(8), Arc::new(NoWal));
    for p in 0..40 {
        let mut g = pool.new_page(F, PageId(p)).unwrap();
        SlottedPage::init(&mut g[..], PageId(p)).unwrap();
        insert(&mut g, p, &tuple(p % THREADS, p, 0), Lsn(1));
    }
    pool.flush_all().unwrap();
    drop(pool);
    for seed in 0..4 {
        let disk = sim.crash();
        let rebooted: Arc<dyn AsyncIo> = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(seed)));
        let h = open(&*rebooted, Path::new("/rel"));
        let pool = self::pool(&rebooted, h, BufferConfig::with_frames(8), Arc::new(NoWal));
        for p in 0..40 {
            check_page(&pool, p, 1);
        }
    }
}

/// `flush_all` writes its pages in batches, each submitted before the
/// previous one is waited for, and copies pages into the buffers earlier
/// writes returned: every page still reaches the disk whole and as its
/// own (a reused buffer holds another page's bytes until the copy), in a
/// first flush and in a second one after every page changed again.
#[test]
fn flush_all_in_many_batches_survives_a_power_cut() {
    const PAGES: u32 = 300;
    let sim = Arc::new(SimIo::new(SimConfig::seeded(12)));
    let io: Arc<dyn AsyncIo> = sim.clone();
    let h = open(&*io, Path::new("/rel"));
    io.sync_dir(Path::new("/")).wait().unwrap();
    let pool = pool(&io, h, BufferConfig::with_frames(400), Arc::new(NoWal));
    for p in 0..PAGES {
        let mut g = pool.new_page(F, PageId(p)).unwrap();
        SlottedPage::init(&mut g[..], PageId(p)).unwrap();
        insert(&mut g, p, &tuple(p % THREADS, p, 0), Lsn(1));
    }
    pool.flush_all().unwrap();
    assert_eq!(pool.stats().dirty_frames, 0);
    // Changed in reverse order, so no page lands in its old buffer.
    for p in (0..PAGES).rev() {
        let mut g = pool.fetch_write(F, PageId(p)).unwrap();
        insert(&mut g, p, &tuple(p % THREADS, p, 1), Lsn(2));
    }
    pool.flush_all().unwrap();
    assert_eq!(pool.stats().dirty_frames, 0);
    drop(pool);
    let disk = sim.crash();
    let rebooted: Arc<dyn AsyncIo> = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(3)));
    let h = open(&*rebooted, Path::new("/rel"));
    let pool = self::pool(&rebooted, h, BufferConfig::with_frames(8), Arc::new(NoWal));
    for p in 0..PAGES {
        check_page(&pool, p, 2);
    }
}

/// A 16-frame pool on `b`'s file "rel" with a background writer that
/// sleeps `interval_ms` between batches of 4 pages.
fn pool_with_writer(b: &Backend, interval_ms: u64) -> BufferPool {
    let h = b.open("rel");
    let cfg = BufferConfig {
        background_writer: true,
        writer_interval_ms: interval_ms,
        writer_batch_pages: 4,
        ..BufferConfig::with_frames(16)
    };
    pool(&b.io, h, cfg, Arc::new(NoWal))
}

/// Creates pages `0..n`, each a heap page with one tuple, dirty at LSN 5.
fn dirty_new_pages(pool: &BufferPool, n: u32) {
    for p in 0..n {
        let mut g = pool.new_page(F, PageId(p)).unwrap();
        SlottedPage::init(&mut g[..], PageId(p)).unwrap();
        insert(&mut g, p, &tuple(0, p, 0), Lsn(5));
    }
}

/// A miss that has to write a dirty victim itself wakes (kicks) the
/// background writer at once, long before its interval (an hour here), and
/// the writer then cleans ahead of the clock.
#[test]
fn a_dirty_eviction_kicks_the_background_writer() {
    let b = Backend::sim();
    let pool = pool_with_writer(&b, 3_600_000);
    dirty_new_pages(&pool, 64);
    assert!(pool.stats().dirty_evictions > 0, "{:?}", pool.stats());
    // A liveness bound, not a timing: the interval alone would take an hour.
    let mut waited = 0;
    while pool.stats().writer_pages == 0 && waited < 30_000 {
        std::thread::sleep(std::time::Duration::from_millis(1));
        waited += 1;
    }
    assert!(pool.stats().writer_pages > 0, "{:?}", pool.stats());
    pool.shutdown().unwrap();
    for p in 0..64 {
        let g = pool.fetch_read(F, PageId(p)).unwrap();
        assert_eq!(page::page_lsn(&g[..]), Some(Lsn(5)), "page {p}");
    }
}

#[test]
fn background_writer_cleans_dirty_pages() {
    let b = Backend::sim();
    let pool = pool_with_writer(&b, 1);
    dirty_new_pages(&pool, 12);
    // Wait (without a deadline: no timed assertions) for the writer.
    while !pool.dirty_pages().is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let s = pool.stats();
    assert_eq!(s.writer_pages, 12, "{s:?}");
    assert_eq!(s.dirty_evictions, 0);
    // Its writes are not synced until flush_all.
    pool.shutdown().unwrap();
    assert_eq!(pool.stats().syncs, 1);
}

#[test]
fn errors_convert_into_the_top_level_error() {
    let e: keel::Error = BufferError::AllFramesPinned { frames: 3 }.into();
    assert_eq!(e.class(), keel::ErrorClass::Transient);
    assert_eq!(e.to_string(), "all 3 buffer frames are pinned");
}

/// Writes `n` pages (one tuple each) through a pool and flushes them.
fn write_pages(b: &Backend, h: FileHandle, n: u32) {
    let pool = pool(&b.io, h, BufferConfig::with_frames(8), Arc::new(NoWal));
    for p in 0..n {
        let mut g = pool.new_page(F, PageId(p)).unwrap();
        SlottedPage::init(&mut g[..], PageId(p)).unwrap();
        insert(&mut g, p, &tuple(p % THREADS, p, 0), Lsn(u64::from(p) + 1));
    }
    pool.flush_all().unwrap();
}

#[test]
fn prefetch_loads_missing_pages_in_one_batch() {
    for b in [Backend::sim(), Backend::thread_pool()] {
        let h = b.open("rel");
        write_pages(&b, h, 40);
        let pool = pool(&b.io, h, BufferConfig::with_frames(32), Arc::new(NoWal));
        let wanted: Vec<_> = (0..16).map(|p| (F, PageId(p))).collect();
        assert_eq!(pool.prefetch(&wanted).unwrap(), 16);
        let before = pool.stats();
        assert_eq!(before.reads, 16, "{before:?}");
        for p in 0..16 {
            check_page(&pool, p, 1);
        }
        let after = pool.stats();
        assert_eq!(after.reads, 16, "prefetched pages are hits: {after:?}");
        assert_eq!(after.hits - before.hits, 16, "{after:?}");
        // Already cached, and duplicates: nothing more to read.
        let again: Vec<_> = wanted.iter().chain(&wanted).copied().collect();
        assert_eq!(pool.prefetch(&again).unwrap(), 0);
        assert_eq!(pool.stats().reads, 16);
    }
}

#[test]
fn prefetch_writes_dirty_victims_and_keeps_pinned_frames() {
    let b = Backend::sim();
    let h = b.open("rel");
    write_pages(&b, h, 40);
    let pool = pool(&b.io, h, BufferConfig::with_frames(8), Arc::new(NoWal));
    // Pages 0..8 fill the pool, all dirty (a second tuple each); page 0
    // stays pinned.
    for p in 0..8 {
        let mut g = pool.fetch_write(F, PageId(p)).unwrap();
        insert(
            &mut g,
            p,
            &tuple(p % THREADS, p, 1),
            Lsn(100 + u64::from(p)),
        );
    }
    let pinned = pool.pin(F, PageId(0)).unwrap();
    let wanted: Vec<_> = (20..40).map(|p| (F, PageId(p))).collect();
    let loaded = pool.prefetch(&wanted).unwrap();
    assert!((1..=7).contains(&loaded), "loaded {loaded}");
    assert_eq!(pool.stats().dirty_evictions, 7, "{:?}", pool.stats());
    let held = pinned.read();
    assert_eq!(held[..], pool.fetch_read(F, PageId(0)).unwrap()[..]);
    drop(held);
    for p in 0..8 {
        check_page(&pool, p, 2);
    }
}

#[test]
fn prefetch_skips_pages_that_fail_to_load() {
    let b = Backend::sim();
    let h = b.open("rel");
    write_pages(&b, h, 4);
    let garbage = IoBuf::aligned_from(&[0xA5; page::PAGE_SIZE]);
    b.io.write_at(h, 2 * page::PAGE_SIZE as u64, garbage)
        .wait()
        .unwrap();
    let pool = pool(&b.io, h, BufferConfig::with_frames(8), Arc::new(NoWal));
    let wanted = [(F, PageId(1)), (F, PageId(2)), (F, PageId(9))];
    assert_eq!(pool.prefetch(&wanted).unwrap(), 1);
    check_page(&pool, 1, 1);
    assert!(matches!(
        pool.fetch_read(F, PageId(2)),
        Err(BufferError::PageCorrupt { .. })
    ));
    assert!(matches!(
        pool.fetch_read(F, PageId(9)),
        Err(BufferError::PageBeyondEof { .. })
    ));
}

/// The hit path takes only a shard lock of the page table, never the pool's
/// mutex, so it races eviction: this checks the pin rule (table.rs: a
/// frame in use is never evicted). Readers pin a few hot pages *without*
/// latching them, give the processor away, then latch and check that the
/// frame still holds the page they pinned (its header's page id and its
/// tuple), while another thread reads cold pages through a pool too small
/// for both, so the hot pages are evicted and reloaded all the time. A
/// frame reused under a pin would show another page's bytes.
#[test]
fn hits_racing_evictions_never_lose_their_frame() {
    const FRAMES: usize = 6;
    const HOT: u32 = 3;
    const COLD: u32 = 12;
    const READERS: u32 = 3;
    const ITERATIONS: u32 = 20_000;
    let b = Backend::sim();
    let h = b.open("rel");
    // Every thread holds at most one pin (its own miss's included), so 4
    // threads never pin all 6 frames: AllFramesPinned would be a bug here.
    let pool = pool(&b.io, h, BufferConfig::with_frames(FRAMES), Arc::new(NoWal));
    let tag = |p: u32| tuple(p % 7, p, p.wrapping_mul(31));
    for p in 0..HOT + COLD {
        let mut g = pool.new_page(F, PageId(p)).unwrap();
        SlottedPage::init(&mut g[..], PageId(p)).unwrap();
        insert(&mut g, p, &tag(p), Lsn(u64::from(p) + 1));
    }
    pool.flush_all().unwrap();
    let before = pool.stats();
    let check = |g: &[u8], p: u32| {
        let sp = SlottedPage::open(g, PageId(p))
            .unwrap_or_else(|e| panic!("frame pinned for page {p} holds another page: {e}"));
        assert_eq!(sp.tuple(SlotId(0)).unwrap(), &tag(p)[..], "page {p}");
    };
    std::thread::scope(|s| {
        for t in 0..READERS {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..ITERATIONS {
                    let p = (i + t) % HOT;
                    let pinned = pool.pin(F, PageId(p)).unwrap();
                    assert_eq!(pinned.page_id(), PageId(p));
                    std::thread::yield_now();
                    let g = pinned.read();
                    check(&g, p);
                    drop(g);
                    let g = pool.fetch_read(F, PageId(p)).unwrap();
                    check(&g, p);
                }
            });
        }
        let pool = &pool;
        s.spawn(move || {
            for i in 0..ITERATIONS {
                let p = HOT + i % COLD;
                let g = pool.fetch_read(F, PageId(p)).unwrap();
                check(&g, p);
            }
        });
    });
    let after = pool.stats();
    // The race was run: hot pages were hit, and pages were evicted and
    // read again throughout.
    assert!(after.hits - before.hits > u64::from(READERS * ITERATIONS));
    assert!(
        after.evictions - before.evictions > u64::from(ITERATIONS / 2),
        "{after:?}"
    );
    assert_eq!(after.dirty_frames, 0);
}
