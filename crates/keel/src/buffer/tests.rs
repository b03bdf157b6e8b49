//! Buffer pool unit tests on the simulator backend. Each test names the
//! rule it checks; the multi-threaded, thread-pool and crash tests are in
//! `tests/buffer.rs`.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use keel_io::sim::{Fault, FaultRule, SimConfig, SimIo};
use keel_io::{AsyncIo, FileClass, FileHandle, IoBuf, OpKind, OpenOptions};
use parking_lot::Mutex;

use super::*;
use crate::error::ErrorClass;
use crate::page::{PAGE_SIZE, SlottedPage, TupleFlags};
use crate::types::{Lsn, PageId, SlotId};

const F: FileId = FileId(7);

fn sim() -> Arc<SimIo> {
    Arc::new(SimIo::new(SimConfig::seeded(1)))
}

fn open(io: &dyn AsyncIo, path: &str) -> FileHandle {
    io.open(
        Path::new(path),
        OpenOptions::read_write_create(FileClass::Data),
    )
    .wait()
    .unwrap()
}

fn pool_with(io: Arc<SimIo>, frames: usize, wal: Arc<dyn WalFlusher>) -> BufferPool {
    let handle = open(&*io, "/data");
    let pool = BufferPool::new(io, wal, BufferConfig::with_frames(frames)).unwrap();
    pool.register_file(F, handle).unwrap();
    pool
}

fn pool(io: Arc<SimIo>, frames: usize) -> BufferPool {
    pool_with(io, frames, Arc::new(NoWal))
}

/// Formats a new heap page holding one tuple, `tag`, logged at `lsn`.
fn create(pool: &BufferPool, page: u32, tag: u64, lsn: u64) {
    let mut g = pool.new_page(F, PageId(page)).unwrap();
    let mut sp = SlottedPage::init(&mut g[..], PageId(page)).unwrap();
    sp.insert(&tag.to_le_bytes(), TupleFlags::NONE).unwrap();
    g.mark_dirty(Lsn(lsn));
}

/// Replaces the page's tuple with `tag`, logged at `lsn`.
fn update(pool: &BufferPool, page: u32, tag: u64, lsn: u64) {
    let mut g = pool.fetch_write(F, PageId(page)).unwrap();
    let mut sp = SlottedPage::open(&mut g[..], PageId(page)).unwrap();
    sp.update(SlotId(0), &tag.to_le_bytes(), TupleFlags::NONE)
        .unwrap();
    g.mark_dirty(Lsn(lsn));
}

fn tag_in(bytes: &[u8], page: u32) -> u64 {
    let sp = SlottedPage::open(bytes, PageId(page)).unwrap();
    u64::from_le_bytes(sp.tuple(SlotId(0)).unwrap().try_into().unwrap())
}

fn read_tag(pool: &BufferPool, page: u32) -> u64 {
    tag_in(&pool.fetch_read(F, PageId(page)).unwrap(), page)
}

/// The page as stored in the simulated file, bypassing the pool.
fn on_disk(io: &SimIo, page: u32) -> Option<Vec<u8>> {
    let h = open(io, "/data");
    let off = u64::from(page) * PAGE_SIZE as u64;
    io.read_exact_at(h, off, IoBuf::zeroed(PAGE_SIZE))
        .wait()
        .ok()
        .map(IoBuf::into_vec)
}

#[test]
fn read_after_write_through_eviction() {
    let io = sim();
    let pool = pool(io.clone(), 8);
    for p in 0..100 {
        create(&pool, p, u64::from(p) * 3, u64::from(p) + 1);
    }
    for p in (0..100).rev() {
        assert_eq!(read_tag(&pool, p), u64::from(p) * 3);
    }
    for p in (0..100).step_by(7) {
        update(&pool, p, 1000 + u64::from(p), 200 + u64::from(p));
    }
    for p in 0..100 {
        let want = if p % 7 == 0 {
            1000 + u64::from(p)
        } else {
            u64::from(p) * 3
        };
        assert_eq!(read_tag(&pool, p), want);
    }
    let s = pool.stats();
    assert_eq!(s.frames, 8);
    assert!(
        s.evictions >= 92 && s.dirty_evictions > 0 && s.reads > 0,
        "{s:?}"
    );
    pool.flush_all().unwrap();
    assert!(pool.dirty_pages().is_empty());
    drop(pool);

    let fresh = self::pool(io, 8);
    for p in 0..100 {
        let want = if p % 7 == 0 {
            1000 + u64::from(p)
        } else {
            u64::from(p) * 3
        };
        assert_eq!(read_tag(&fresh, p), want);
    }
}

#[test]
fn all_frames_pinned_is_an_error_not_a_hang() {
    let pool = pool(sim(), 4);
    let guards: Vec<_> = (0..4)
        .map(|p| pool.new_page(F, PageId(p)).unwrap())
        .collect();
    let e = pool.fetch_read(F, PageId(9)).unwrap_err();
    assert!(
        matches!(e, BufferError::AllFramesPinned { frames: 4 }),
        "{e}"
    );
    assert_eq!(e.class(), ErrorClass::Transient);
    let e = pool.new_page(F, PageId(9)).unwrap_err();
    assert!(matches!(e, BufferError::AllFramesPinned { .. }), "{e}");
    drop(guards);
    // Unmarked new pages were never dirty: their frames are simply reused.
    create(&pool, 9, 9, 1);
    assert_eq!(read_tag(&pool, 9), 9);
    // Pins without latches count too.
    let pins: Vec<_> = (10..14)
        .map(|p| {
            create(&pool, p, 0, 1);
            pool.pin(F, PageId(p)).unwrap()
        })
        .collect();
    assert!(matches!(
        pool.fetch_read(F, PageId(9)),
        Err(BufferError::AllFramesPinned { .. })
    ));
    drop(pins);
    assert_eq!(read_tag(&pool, 9), 9);
}

#[test]
fn dirty_pages_report_the_first_lsn_since_clean() {
    let pool = pool(sim(), 8);
    create(&pool, 1, 0, 10);
    update(&pool, 1, 1, 20);
    create(&pool, 2, 0, 15);
    assert_eq!(
        pool.dirty_pages(),
        vec![(F, PageId(1), Lsn(10)), (F, PageId(2), Lsn(15))]
    );
    pool.flush_page(F, PageId(1)).unwrap();
    assert_eq!(pool.dirty_pages(), vec![(F, PageId(2), Lsn(15))]);
    update(&pool, 1, 2, 30);
    update(&pool, 1, 3, 40);
    assert_eq!(
        pool.dirty_pages(),
        vec![(F, PageId(1), Lsn(30)), (F, PageId(2), Lsn(15))]
    );
    // The header carries the last LSN.
    let g = pool.fetch_read(F, PageId(1)).unwrap();
    assert_eq!(crate::page::page_lsn(&g), Some(Lsn(40)));
}

#[test]
fn a_page_is_written_only_after_the_wal_is_durable_through_its_lsn() {
    let io = sim();
    let wal = Arc::new(RecordingFlusher::new());
    let pool = pool_with(io.clone(), 4, wal.clone());
    create(&pool, 0, 5, 100);
    pool.flush_page(F, PageId(0)).unwrap();
    assert_eq!(wal.durable(), Lsn(100));
    assert_eq!(tag_in(&on_disk(&io, 0).unwrap(), 0), 5);

    // The flusher fails: the page is not written and the error says why.
    wal.set_failing(true);
    update(&pool, 0, 6, 200);
    let e = pool.flush_page(F, PageId(0)).unwrap_err();
    assert!(
        matches!(e, BufferError::WalFlush { lsn: Lsn(200), .. }),
        "{e}"
    );
    assert_eq!(e.class(), ErrorClass::Fatal);
    assert!(std::error::Error::source(&e).is_some());
    assert_eq!(tag_in(&on_disk(&io, 0).unwrap(), 0), 5);
    assert_eq!(pool.dirty_pages(), vec![(F, PageId(0), Lsn(200))]);

    // Eviction of that dirty page fails the miss the same way, and the
    // page stays in memory, dirty.
    for p in 1..4 {
        create(&pool, p, 0, 0);
    }
    let mut failed = 0;
    for p in 4..12 {
        match pool.new_page(F, PageId(p)) {
            Err(BufferError::WalFlush { .. }) => failed += 1,
            Err(e) => panic!("{e}"),
            Ok(_) => {}
        }
    }
    assert!(failed > 0);
    assert_eq!(tag_in(&on_disk(&io, 0).unwrap(), 0), 5);
    assert_eq!(read_tag(&pool, 0), 6);

    // Once the log recovers, the write goes through.
    wal.set_failing(false);
    pool.flush_all().unwrap();
    assert_eq!(wal.durable(), Lsn(200));
    assert_eq!(tag_in(&on_disk(&io, 0).unwrap(), 0), 6);
}

#[test]
fn corrupt_page_on_disk_is_an_error_naming_file_and_page() {
    let io = sim();
    let pool = pool(io.clone(), 4);
    for p in 0..4 {
        create(&pool, p, u64::from(p), 1);
    }
    pool.flush_all().unwrap();
    drop(pool);
    // Flip one byte in the middle of page 2.
    let h = open(&*io, "/data");
    let off = 2 * PAGE_SIZE as u64 + 5000;
    let mut b = io.read_exact_at(h, off, IoBuf::zeroed(1)).wait().unwrap();
    b[0] ^= 0x40;
    io.write_at(h, off, b).wait().unwrap();

    let pool = self::pool(io.clone(), 4);
    let e = pool.fetch_read(F, PageId(2)).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("file 7") && msg.contains("page 2"), "{msg}");
    assert!(matches!(e, BufferError::PageCorrupt { .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Corruption);
    // Asking again reads (and rejects) it again; other pages are fine.
    assert!(pool.fetch_write(F, PageId(2)).is_err());
    assert_eq!(read_tag(&pool, 3), 3);
    assert_eq!(pool.stats().dirty_frames, 0);

    // A page past the end of the file.
    let e = pool.fetch_read(F, PageId(40)).unwrap_err();
    assert!(
        matches!(
            e,
            BufferError::PageBeyondEof {
                page: PageId(40),
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("page 40"));
}

#[test]
fn failed_read_frees_the_frame_and_a_retry_succeeds() {
    let io = sim();
    let pool = pool(io.clone(), 2);
    create(&pool, 0, 42, 1);
    create(&pool, 1, 43, 1);
    pool.flush_all().unwrap();
    create(&pool, 2, 44, 1); // evicts page 0
    create(&pool, 3, 45, 1); // evicts page 1
    io.add_fault(FaultRule::always(Fault::Eio).on_op(OpKind::Read));
    let e = pool.fetch_read(F, PageId(0)).unwrap_err();
    assert!(matches!(e, BufferError::Io { op: "read", .. }), "{e}");
    io.clear_faults();
    assert_eq!(read_tag(&pool, 0), 42);
    assert_eq!(read_tag(&pool, 1), 43);
    assert_eq!(read_tag(&pool, 2), 44);
}

/// What the gated thread reports.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// The pool called `flush_through(lsn)` and is now stopped there.
    Entered(Lsn),
    /// The pool operation returned (without ever flushing, if it comes first).
    Done,
}

/// A flusher that stops inside its first `flush_through` until the test
/// lets it go.
struct GateFlusher {
    events: Mutex<Option<mpsc::Sender<Event>>>,
    release: Mutex<Option<mpsc::Receiver<()>>>,
}

impl WalFlusher for GateFlusher {
    fn flush_through(&self, lsn: Lsn) -> Result<(), WalFlushError> {
        if let Some(tx) = self.events.lock().take() {
            tx.send(Event::Entered(lsn)).unwrap();
            // A dropped sender (the test failed) also lets it go.
            let _ = self.release.lock().take().unwrap().recv();
        }
        Ok(())
    }
}

/// Runs `op` on a thread; once the pool is stopped in the gated flusher,
/// runs `meanwhile` on this thread, then lets the flush finish. Never hangs:
/// if `op` returns without flushing, the test fails at once.
fn while_flushing<T: Send>(
    frames: usize,
    setup: impl FnOnce(&BufferPool),
    op: impl FnOnce(&BufferPool) -> T + Send,
    meanwhile: impl FnOnce(&SimIo, &BufferPool, Lsn),
) -> (Arc<SimIo>, BufferPool, T) {
    let io = sim();
    let (events_tx, events) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let wal = Arc::new(GateFlusher {
        events: Mutex::new(Some(events_tx.clone())),
        release: Mutex::new(Some(release_rx)),
    });
    let pool = pool_with(io.clone(), frames, wal);
    setup(&pool);
    let out = std::thread::scope(|s| {
        let release = release; // dropped by a failing assertion: frees the gate
        let pool = &pool;
        let worker = s.spawn(move || {
            let out = op(pool);
            let _ = events_tx.send(Event::Done);
            out
        });
        let Event::Entered(lsn) = events.recv().unwrap() else {
            panic!("the operation finished without flushing the WAL");
        };
        meanwhile(&io, pool, lsn);
        release.send(()).unwrap();
        worker.join().unwrap()
    });
    (io, pool, out)
}

#[test]
fn a_change_during_write_back_keeps_the_page_dirty() {
    let (io, pool, flushed) = while_flushing(
        4,
        |pool| create(pool, 0, 1, 10),
        |pool| pool.flush_page(F, PageId(0)),
        |_, pool, lsn| {
            // The write-back copied the page and waits for the WAL; no latch
            // is held, so the page can be changed meanwhile.
            assert_eq!(lsn, Lsn(10));
            update(pool, 0, 2, 20);
        },
    );
    flushed.unwrap();
    // The copy (tag 1) reached the disk, but the later change keeps the
    // page dirty, and its recLSN is now that change's: what is not on disk
    // starts there (a checkpoint's dirty page table relies on it).
    assert_eq!(tag_in(&on_disk(&io, 0).unwrap(), 0), 1);
    assert_eq!(pool.dirty_pages(), vec![(F, PageId(0), Lsn(20))]);
    pool.flush_all().unwrap();
    assert_eq!(tag_in(&on_disk(&io, 0).unwrap(), 0), 2);
    assert!(pool.dirty_pages().is_empty());
}

/// A new page whose guard is dropped with no change marked (its caller
/// failed before formatting it) leaves the pool: a fetch finds it past the
/// end of the file rather than reading zeros no check has seen, and the
/// page can be made again. One another thread pins meanwhile stays.
#[test]
fn a_new_page_dropped_unformatted_leaves_the_pool() {
    let pool = pool(sim(), 8);
    drop(pool.new_page(F, PageId(0)).unwrap());
    assert!(
        matches!(
            pool.fetch_read(F, PageId(0)),
            Err(BufferError::PageBeyondEof { .. })
        ),
        "an unformatted new page was served"
    );
    create(&pool, 0, 5, 1);
    assert_eq!(read_tag(&pool, 0), 5);
    // Every frame is free to use again: eight new pages dropped, eight made.
    for round in 0..2 {
        for p in 1..9 {
            match round {
                0 => drop(pool.new_page(F, PageId(p)).unwrap()),
                _ => create(&pool, p, u64::from(p), 2),
            }
        }
    }
    assert_eq!(read_tag(&pool, 8), 8);
    assert_eq!(read_tag(&pool, 0), 5);
    // A pin taken while the new page is latched keeps its frame mapped.
    let g = pool.new_page(F, PageId(20)).unwrap();
    let hits = pool.stats().hits;
    std::thread::scope(|s| {
        let waiting = s.spawn(|| pool.fetch_read(F, PageId(20)).map(|g| g[0]));
        // A hit is counted when it pins, before it waits for the latch.
        while pool.stats().hits == hits {
            std::thread::yield_now();
        }
        drop(g);
        assert_eq!(waiting.join().unwrap().unwrap(), 0);
    });
}

#[test]
fn a_page_being_evicted_is_served_from_memory() {
    let (io, pool, created) = while_flushing(
        2,
        |pool| {
            create(pool, 0, 100, 10); // frame 0, dirty, never written
            create(pool, 1, 101, 0); // frame 1
            pool.flush_page(F, PageId(1)).unwrap(); // LSN 0: no WAL flush
        },
        // The miss picks page 0's frame and stops writing it back.
        |pool| pool.new_page(F, PageId(5)).map(|g| g.page_id()),
        |io, pool, lsn| {
            assert_eq!(lsn, Lsn(10));
            let disk = on_disk(io, 0);
            assert!(
                disk.is_none_or(|b| b.iter().all(|&x| x == 0)),
                "page 0 not written yet"
            );
            // A fetch of page 0 now must not read the (absent) disk copy.
            let hits = pool.stats().hits;
            assert_eq!(read_tag(pool, 0), 100);
            assert_eq!(pool.stats().hits, hits + 1);
        },
    );
    assert_eq!(created.unwrap(), PageId(5));
    assert_eq!(tag_in(&on_disk(&io, 0).unwrap(), 0), 100);
    assert_eq!(pool.stats().dirty_evictions, 1);
}

#[test]
fn failed_fdatasync_poisons_the_pool() {
    let io = sim();
    let pool = pool(io.clone(), 4);
    create(&pool, 0, 1, 1);
    io.add_fault(FaultRule::always(Fault::SyncFailure).on_op(OpKind::Fdatasync));
    let e = pool.flush_all().unwrap_err();
    // The first failure is the cause every later refusal names.
    let is_cause = |e: &BufferError| {
        matches!(e, BufferError::Poisoned { cause }
            if matches!(**cause, BufferError::Sync { file: F, .. }))
    };
    assert!(is_cause(&e), "{e}");
    assert!(pool.is_poisoned());
    io.clear_faults();
    // Never retried: every later write-back refuses.
    create(&pool, 1, 1, 1);
    assert!(is_cause(&pool.flush_all().unwrap_err()));
    assert!(is_cause(&pool.flush_page(F, PageId(1)).unwrap_err()));
    // Reads still work.
    assert_eq!(read_tag(&pool, 0), 1);
}

#[test]
fn a_change_the_log_refused_is_never_written_by_a_write_back_waiting_for_its_latch() {
    let io = sim();
    let pool = pool(io.clone(), 4);
    create(&pool, 0, 1, 10);
    pool.flush_all().unwrap();
    update(&pool, 0, 2, 20);
    std::thread::scope(|s| {
        let mut g = pool.fetch_write(F, PageId(0)).unwrap();
        // A write-back of the dirty page starts while the latch is held: it
        // passes its first poison check and waits for the latch to copy.
        let writer = s.spawn(|| pool.flush_page(F, PageId(0)));
        std::thread::sleep(std::time::Duration::from_millis(100));
        // The change whose record the log refused (`Storage::unlogged`):
        // applied, then the pool poisoned, still under the latch.
        SlottedPage::open(&mut g[..], PageId(0))
            .unwrap()
            .update(SlotId(0), &3u64.to_le_bytes(), TupleFlags::NONE)
            .unwrap();
        pool.poison_unlogged(&g, "the log refused the record".into());
        drop(g);
        let e = writer.join().unwrap().unwrap_err();
        assert!(matches!(e, BufferError::Poisoned { .. }), "{e}");
    });
    // Invariant 4: the disk never holds a change the log lacks.
    assert_eq!(tag_in(&on_disk(&io, 0).unwrap(), 0), 1);
}

#[test]
fn files_must_be_registered_and_idle_to_unregister() {
    let io = sim();
    let pool = pool(io.clone(), 4);
    assert!(matches!(
        pool.fetch_read(FileId(99), PageId(0)),
        Err(BufferError::UnknownFile { file: FileId(99) })
    ));
    let h = open(&*io, "/other");
    assert!(matches!(
        pool.register_file(F, h),
        Err(BufferError::FileRegistered { .. })
    ));
    create(&pool, 0, 1, 1);
    assert!(matches!(
        pool.new_page(F, PageId(0)),
        Err(BufferError::AlreadyCached { .. })
    ));
    let g = pool.fetch_read(F, PageId(0)).unwrap();
    assert!(matches!(
        pool.unregister_file(F),
        Err(BufferError::FileBusy { .. })
    ));
    drop(g);
    pool.flush_file(F).unwrap();
    let handle = pool.unregister_file(F).unwrap();
    assert!(pool.dirty_pages().is_empty());
    pool.register_file(F, handle).unwrap();
    assert_eq!(read_tag(&pool, 0), 1);
}

#[test]
fn config_is_validated() {
    let io: Arc<dyn AsyncIo> = sim();
    let e = BufferPool::new(io.clone(), Arc::new(NoWal), BufferConfig::with_frames(1)).unwrap_err();
    assert!(matches!(e, BufferError::Config(_)), "{e}");
    let cfg = BufferConfig {
        writer_batch_pages: 0,
        background_writer: true,
        ..BufferConfig::with_frames(4)
    };
    assert!(BufferPool::new(io, Arc::new(NoWal), cfg).is_err());
    assert_eq!(BufferConfig::default().frames(), 8192);
}

/// Holds the first fdatasync until the test lets it go.
struct GateSync {
    entered: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<Option<mpsc::Receiver<()>>>,
}

impl keel_io::watch::Watch for GateSync {
    fn before(&self, req: &keel_io::Request) -> bool {
        if req.kind() == OpKind::Fdatasync
            && let Some(tx) = self.entered.lock().take()
        {
            tx.send(()).unwrap();
            // A dropped sender (the test failed) also lets it go.
            let _ = self.release.lock().take().unwrap().recv();
        }
        false
    }
}

#[test]
fn flush_all_returns_only_after_a_concurrent_sync_ends_and_sees_its_error() {
    let sim = sim();
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let io = Arc::new(keel_io::watch::Watched {
        inner: sim.clone(),
        watch: GateSync {
            entered: Mutex::new(Some(entered_tx)),
            release: Mutex::new(Some(release_rx)),
        },
    });
    let handle = open(&*io, "/data");
    let pool = BufferPool::new(io, Arc::new(NoWal), BufferConfig::with_frames(4)).unwrap();
    pool.register_file(F, handle).unwrap();
    create(&pool, 0, 1, 1);
    sim.add_fault(FaultRule::always(Fault::SyncFailure).on_op(OpKind::Fdatasync));
    std::thread::scope(|s| {
        // Dropped if an assertion fails, so the gated sync never hangs.
        let release = release;
        let first = s.spawn(|| pool.flush_all());
        entered.recv().unwrap();
        // The first flush is inside its fdatasync. A second flush_all must
        // not return before that sync ends: the page it wrote is not
        // durable until then.
        let (done_tx, done) = mpsc::channel();
        let pool = &pool;
        s.spawn(move || done_tx.send(pool.flush_all()).unwrap());
        let second = loop {
            if let Ok(r) = done.try_recv() {
                break Some(r);
            }
            if pool.stats().sync_waits > 0 {
                break None; // waiting for the first flush's sync
            }
            std::thread::yield_now();
        };
        assert!(
            second.is_none(),
            "flush_all returned {second:?} while a sync of a write it must cover was in flight"
        );
        release.send(()).unwrap();
        for e in [
            first.join().unwrap().unwrap_err(),
            done.recv().unwrap().unwrap_err(),
        ] {
            let BufferError::Poisoned { cause } = &e else {
                panic!("expected Poisoned, got {e}");
            };
            assert!(matches!(**cause, BufferError::Sync { file: F, .. }), "{e}");
        }
    });
}

#[test]
fn a_node_check_is_forgotten_by_every_exclusive_latch_and_by_eviction() {
    let pool = pool(sim(), 2);
    create(&pool, 1, 10, 1);
    let checked =
        |pool: &BufferPool, page: u32| pool.fetch_read(F, PageId(page)).unwrap().node_checked();
    let check = |pool: &BufferPool, page: u32| {
        pool.fetch_read(F, PageId(page)).unwrap().set_node_checked();
    };
    assert!(!checked(&pool, 1), "a page nobody checked");
    check(&pool, 1);
    assert!(checked(&pool, 1), "kept across shared latches");
    // An exclusive latch forgets it, changed or not.
    drop(pool.fetch_write(F, PageId(1)).unwrap());
    assert!(!checked(&pool, 1), "forgotten by an exclusive latch");
    check(&pool, 1);
    drop(pool.pin(F, PageId(1)).unwrap().try_write().unwrap());
    assert!(!checked(&pool, 1), "forgotten by a tried exclusive latch");

    // Page 2 pinned: pages 1 and 3 take turns in the other frame, which
    // forgets what its last page passed when it takes one (new, or read
    // back).
    create(&pool, 2, 20, 2);
    let hold = pool.pin(F, PageId(2)).unwrap();
    check(&pool, 1);
    create(&pool, 3, 30, 3);
    assert!(!checked(&pool, 3), "a new page starts unchecked");
    check(&pool, 3);
    assert_eq!(read_tag(&pool, 1), 10);
    assert!(!checked(&pool, 1), "a page read back starts unchecked");
    drop(hold);
}
