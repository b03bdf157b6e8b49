//! The shared test suite: every case runs against every backend (thread
//! pool, io_uring, simulator). A backend that cannot run here (io_uring
//! without kernel support) prints SKIPPED and passes.

// Helpers outside #[test] functions unwrap too (clippy.toml's test allowance
// covers only the test functions themselves).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::thread;

use common::{Fixture, block_on, pattern};
use keel_io::{ErrorClass, FileClass, FileHandle, IoBuf, IoError, OpKind, OpenOptions, Request};

fn create(f: &Fixture, name: &str, class: FileClass) -> FileHandle {
    f.io.open(&f.path(name), OpenOptions::read_write_create(class))
        .wait()
        .expect("open")
}

fn read_all(f: &Fixture, h: FileHandle, len: usize) -> Vec<u8> {
    let (buf, n) = f.io.read_at(h, 0, IoBuf::zeroed(len)).wait().expect("read");
    assert_eq!(n, len, "file shorter than expected");
    buf.into_vec()
}

fn read_after_write(f: &Fixture) {
    let h = create(f, "a", FileClass::Data);
    let data = pattern(1, 10_000);
    let back =
        f.io.write_at(h, 0, IoBuf::from(data.clone()))
            .wait()
            .unwrap();
    assert_eq!(&back[..], &data[..], "write hands the buffer back");
    f.io.write_at(h, 20_000, IoBuf::from(&b"tail"[..]))
        .wait()
        .unwrap();
    assert_eq!(f.io.size(h).wait().unwrap(), 20_004);
    let got =
        f.io.read_exact_at(h, 0, IoBuf::zeroed(10_000))
            .wait()
            .unwrap();
    assert_eq!(got.into_vec(), data);
    // The hole reads as zeros.
    let hole =
        f.io.read_exact_at(h, 10_000, IoBuf::zeroed(100))
            .wait()
            .unwrap();
    assert!(hole.iter().all(|&b| b == 0));
    // read_at past the end returns the count; read_exact_at errors.
    let (buf, n) = f.io.read_at(h, 20_000, IoBuf::zeroed(100)).wait().unwrap();
    assert_eq!((n, &buf[..4]), (4, &b"tail"[..]));
    match f.io.read_exact_at(h, 20_000, IoBuf::zeroed(100)).wait() {
        Err(IoError::ShortRead {
            offset,
            wanted,
            got,
            ..
        }) => assert_eq!((offset, wanted, got), (20_000, 100, 4)),
        other => panic!("expected ShortRead, got {other:?}"),
    }
    let (_, n) = f.io.read_at(h, 1 << 30, IoBuf::zeroed(10)).wait().unwrap();
    assert_eq!(n, 0);
    // set_len and allocate.
    f.io.set_len(h, 5).wait().unwrap();
    assert_eq!(f.io.size(h).wait().unwrap(), 5);
    f.io.allocate(h, 0, 1 << 16).wait().unwrap();
    assert_eq!(f.io.size(h).wait().unwrap(), 1 << 16);
    assert_eq!(&read_all(f, h, 5)[..], &data[..5]);
    // Empty transfers are fine.
    f.io.write_at(h, 3, IoBuf::zeroed(0)).wait().unwrap();
    let (_, n) = f.io.read_at(h, 0, IoBuf::zeroed(0)).wait().unwrap();
    assert_eq!(n, 0);
    f.io.fsync(h).wait().unwrap();
    f.io.fdatasync(h).wait().unwrap();
    f.io.close(h).wait().unwrap();
}

fn vectored_write(f: &Fixture) {
    let h = create(f, "v", FileClass::Wal);
    let parts = [pattern(2, 100), pattern(3, 5000), pattern(4, 1)];
    let bufs: Vec<IoBuf> = parts.iter().map(|p| IoBuf::from(p.clone())).collect();
    let back = f.io.writev_at(h, 7, bufs).wait().unwrap();
    assert_eq!(back.len(), 3);
    assert_eq!(&back[1][..], &parts[1][..]);
    let all = read_all(f, h, 7 + 5101);
    assert_eq!(&all[7..], &parts.concat()[..]);
    // Many buffers (more than fit one system call on some paths).
    let many: Vec<IoBuf> = (0..1500u64).map(|i| IoBuf::from(pattern(i, 3))).collect();
    let want: Vec<u8> = (0..1500u64).flat_map(|i| pattern(i, 3)).collect();
    f.io.writev_at(h, 0, many).wait().unwrap();
    assert_eq!(read_all(f, h, want.len()), want);
    let empty = f.io.writev_at(h, 0, Vec::new()).wait().unwrap();
    assert!(empty.is_empty());
}

fn concurrent_writers(f: &Fixture) {
    const BLOCK: usize = 4096;
    const PER_THREAD: usize = 64;
    const THREADS: usize = 4;
    let h = create(f, "c", FileClass::Data);
    thread::scope(|s| {
        for t in 0..THREADS {
            let io = Arc::clone(&f.io);
            s.spawn(move || {
                let futs: Vec<_> = (0..PER_THREAD)
                    .map(|i| {
                        let block = t * PER_THREAD + i;
                        let off = (block * BLOCK) as u64;
                        io.write_at(h, off, IoBuf::from(pattern(block as u64, BLOCK)))
                    })
                    .collect();
                for fut in futs {
                    fut.wait().unwrap();
                }
            });
        }
    });
    let all = read_all(f, h, THREADS * PER_THREAD * BLOCK);
    for block in 0..THREADS * PER_THREAD {
        let got = &all[block * BLOCK..(block + 1) * BLOCK];
        assert_eq!(got, &pattern(block as u64, BLOCK)[..], "block {block}");
    }
}

/// The fixture's queue depth is 4: 300 requests must all be accepted
/// (submitters wait) and all complete.
fn beyond_queue_depth(f: &Fixture) {
    assert_eq!(f.io.queue_depth(), 4);
    let h = create(f, "q", FileClass::Data);
    let futs: Vec<_> = (0..300u64)
        .map(|i| f.io.write_at(h, i * 100, IoBuf::from(pattern(i, 100))))
        .collect();
    let reads: Vec<_> = (0..300u64)
        .map(|i| f.io.read_at(h, i * 100, IoBuf::zeroed(100)))
        .collect();
    for fut in futs {
        fut.wait().unwrap();
    }
    for r in reads {
        r.wait().unwrap();
    }
    let all = read_all(f, h, 30_000);
    for i in 0..300usize {
        assert_eq!(&all[i * 100..(i + 1) * 100], &pattern(i as u64, 100)[..]);
    }
    // try_submit accepts when there is room (nothing is in flight now).
    let fut =
        f.io.try_write_at(h, 0, IoBuf::from(&b"x"[..]))
            .expect("room");
    fut.wait().unwrap();
}

fn dropped_futures(f: &Fixture) {
    let h = create(f, "d", FileClass::Data);
    for i in 0..50u64 {
        drop(f.io.write_at(h, i * 1000, IoBuf::from(pattern(i + 100, 1000))));
    }
    drop(f.io.read_at(h, 0, IoBuf::zeroed(4096)));
    // The fsync completes only after the earlier writes did.
    f.io.fsync(h).wait().unwrap();
    let all = read_all(f, h, 50_000);
    for i in 0..50usize {
        assert_eq!(
            &all[i * 1000..(i + 1) * 1000],
            &pattern(i as u64 + 100, 1000)[..]
        );
    }
}

fn shutdown_in_flight(f: &Fixture) {
    let h = create(f, "s", FileClass::Wal);
    let writes: Vec<_> = (0..100u64)
        .map(|i| f.io.write_at(h, i * 4096, IoBuf::from(pattern(i, 4096))))
        .collect();
    let sync = f.io.fdatasync(h);
    f.io.shutdown();
    // Every future is complete once shutdown returns.
    assert!(writes.iter().all(|w| w.is_ready()));
    assert!(sync.is_ready());
    for w in writes {
        match w.wait() {
            Ok(_) | Err(IoError::ShutDown { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(matches!(
        sync.wait(),
        Ok(()) | Err(IoError::ShutDown { .. })
    ));
    // Later submissions are refused, and try_submit hands the request back.
    let e = f.io.write_at(h, 0, IoBuf::zeroed(1)).wait().unwrap_err();
    assert!(matches!(e, IoError::ShutDown { op: OpKind::Write }), "{e}");
    let rejected =
        f.io.try_submit(Request::Write {
            file: h,
            offset: 0,
            buf: IoBuf::from(vec![7; 3]),
        })
        .unwrap_err();
    assert!(matches!(rejected.error, IoError::ShutDown { .. }));
    assert_eq!(&rejected.request.into_bufs()[0][..], &[7, 7, 7]);
    f.io.shutdown(); // idempotent
}

fn error_mapping(f: &Fixture) {
    let missing = f.path("missing");
    let e =
        f.io.open(&missing, OpenOptions::new(FileClass::Data))
            .wait()
            .unwrap_err();
    assert!(
        matches!(
            e,
            IoError::NotFound {
                op: OpKind::Open,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.class(), ErrorClass::Usage);
    assert!(
        e.to_string().contains("missing"),
        "message names the file: {e}"
    );
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));

    let bogus = FileHandle::from_raw(987_654);
    let e = f.io.read_at(bogus, 0, IoBuf::zeroed(1)).wait().unwrap_err();
    assert!(matches!(e, IoError::BadHandle { op: OpKind::Read, handle } if handle == bogus));

    let h = create(f, "e", FileClass::Control);
    f.io.close(h).wait().unwrap();
    let e = f.io.fsync(h).wait().unwrap_err();
    assert!(matches!(e, IoError::BadHandle { .. }), "{e}");
    assert!(matches!(
        f.io.close(h).wait(),
        Err(IoError::BadHandle { .. })
    ));

    let e = f.io.read_dir(&f.path("nodir")).wait().unwrap_err();
    assert!(matches!(e, IoError::NotFound { .. }), "{e}");
    f.io.create_dir(&f.path("sub")).wait().unwrap();
    let e = f.io.create_dir(&f.path("sub")).wait().unwrap_err();
    assert!(matches!(e, IoError::AlreadyExists { .. }), "{e}");
    let e = f.io.remove(&f.path("nothere")).wait().unwrap_err();
    assert!(
        matches!(
            e,
            IoError::NotFound {
                op: OpKind::Remove,
                ..
            }
        ),
        "{e}"
    );
    let e =
        f.io.open(
            &f.path("e"),
            OpenOptions::read_write_create(FileClass::Data).create_new(true),
        )
        .wait()
        .unwrap_err();
    assert!(matches!(e, IoError::AlreadyExists { .. }), "{e}");

    // Writing through a read-only handle is refused by the OS (EBADF).
    let ro =
        f.io.open(&f.path("e"), OpenOptions::new(FileClass::Data))
            .wait()
            .unwrap();
    let e = f.io.write_at(ro, 0, IoBuf::zeroed(1)).wait().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
    // So is a blocking write on the caller's thread, of one buffer (a
    // plain pwrite) or of several (pwritev).
    let e = f.io.write_at_blocking(ro, 0, IoBuf::zeroed(1)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
    let e = blocking_writev(f, ro).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
}

/// A blocking vectored write of two small buffers at offset 0 of `h`.
/// A write longer than one submission can carry (4 GiB and more: lengths
/// are 32-bit) is written whole, in steps. To `/dev/null`, which reads none
/// of it (the buffer's pages are never touched); not on the simulator.
fn write_past_one_submission(f: &Fixture) {
    if f.io.deterministic() {
        return;
    }
    let opts = OpenOptions::new(FileClass::Data).read(false).write(true);
    let h =
        f.io.open(std::path::Path::new("/dev/null"), opts)
            .wait()
            .unwrap();
    for len in [1usize << 32, (1 << 32) + 4096] {
        let back = f.io.write_at(h, 0, IoBuf::zeroed(len)).wait();
        assert_eq!(
            back.map(|b| b.len()).ok(),
            Some(len),
            "a write of {len} bytes"
        );
    }
    f.io.close(h).wait().unwrap();
}

fn blocking_writev(f: &Fixture, h: FileHandle) -> Result<keel_io::Reply, IoError> {
    f.io.run_blocking(Request::WriteV {
        file: h,
        offset: 0,
        bufs: vec![IoBuf::zeroed(4), IoBuf::zeroed(4)],
    })
}

/// Writes submitted before an fsync have all completed when it completes.
fn fsync_ordering(f: &Fixture) {
    let h = create(f, "o", FileClass::Wal);
    for round in 0..5u64 {
        let writes: Vec<_> = (0..64u64)
            .map(|i| {
                let buf = IoBuf::from(pattern(round * 64 + i, 64 * 1024));
                f.io.write_at(h, i * 64 * 1024, buf)
            })
            .collect();
        let vec =
            f.io.writev_at(h, 64 * 64 * 1024, vec![IoBuf::zeroed(8192); 4]);
        let sync = if round % 2 == 0 {
            f.io.fsync(h)
        } else {
            f.io.fdatasync(h)
        };
        sync.wait().unwrap();
        assert!(
            writes.iter().all(|w| w.is_ready()) && vec.is_ready(),
            "round {round}: fsync completed before a write submitted before it"
        );
        for w in writes {
            w.wait().unwrap();
        }
        vec.wait().unwrap();
    }
}

fn executor(f: &Fixture) {
    let io = Arc::clone(&f.io);
    let path = f.path("x");
    let out = block_on(async move {
        let h = io
            .open(&path, OpenOptions::read_write_create(FileClass::Data))
            .await?;
        let a = io.write_at(h, 0, IoBuf::from(&b"hello "[..]));
        let b = io.write_at(h, 6, IoBuf::from(&b"world"[..]));
        a.await?;
        b.await?;
        io.fsync(h).await?;
        let buf = io.read_exact_at(h, 0, IoBuf::zeroed(11)).await?;
        io.close(h).await?;
        Ok::<_, IoError>(buf.into_vec())
    })
    .unwrap();
    assert_eq!(out, b"hello world");
}

fn namespace(f: &Fixture) {
    f.io.create_dir(&f.path("ns")).wait().unwrap();
    let dir = f.path("ns");
    for name in ["b", "a", "c"] {
        let h =
            f.io.open(
                &dir.join(name),
                OpenOptions::read_write_create(FileClass::Data),
            )
            .wait()
            .unwrap();
        f.io.write_at(h, 0, IoBuf::from(name.as_bytes()))
            .wait()
            .unwrap();
        f.io.close(h).wait().unwrap();
    }
    f.io.create_dir(&dir.join("d")).wait().unwrap();
    f.io.rename(&dir.join("a"), &dir.join("z")).wait().unwrap();
    f.io.remove(&dir.join("b")).wait().unwrap();
    f.io.sync_dir(&dir).wait().unwrap();
    f.io.sync_fs(&dir).wait().unwrap();
    let missing = f.io.sync_fs(&dir.join("missing")).wait().unwrap_err();
    assert!(matches!(missing, IoError::NotFound { .. }), "{missing}");
    let entries = f.io.read_dir(&dir).wait().unwrap();
    let names: Vec<_> = entries
        .iter()
        .map(|e| (e.name.to_string_lossy().into_owned(), e.is_dir))
        .collect();
    assert_eq!(
        names,
        vec![("c".into(), false), ("d".into(), true), ("z".into(), false)]
    );
    let h =
        f.io.open(&dir.join("z"), OpenOptions::new(FileClass::Data))
            .wait()
            .unwrap();
    let buf = f.io.read_exact_at(h, 0, IoBuf::zeroed(1)).wait().unwrap();
    assert_eq!(&buf[..], b"a");
    // Truncate on open.
    let t =
        f.io.open(
            &dir.join("z"),
            OpenOptions::read_write_create(FileClass::Data).truncate(true),
        )
        .wait()
        .unwrap();
    assert_eq!(f.io.size(t).wait().unwrap(), 0);
}

fn statistics(f: &Fixture) {
    let h = create(f, "st", FileClass::Wal);
    for i in 0..10u64 {
        f.io.write_at(h, i * 512, IoBuf::zeroed(512))
            .wait()
            .unwrap();
    }
    f.io.fdatasync(h).wait().unwrap();
    let _ =
        f.io.read_at(FileHandle::from_raw(u64::MAX), 0, IoBuf::zeroed(1))
            .wait();
    let s = f.io.stats();
    assert_eq!(s.backend, f.io.backend_name());
    let w = s.get(OpKind::Write, FileClass::Wal).expect("write stats");
    assert_eq!((w.count, w.bytes, w.errors), (10, 5120, 0));
    assert!(w.latency_ns_p50 > 0 && w.latency_ns_p50 <= w.latency_ns_p99);
    assert!(w.latency_ns_p99 <= w.latency_ns_p999 && w.latency_ns_p999 <= w.latency_ns_max);
    assert_eq!(
        s.get(OpKind::Fdatasync, FileClass::Wal).map(|x| x.count),
        Some(1)
    );
    assert_eq!(
        s.get(OpKind::Open, FileClass::Wal).map(|x| x.count),
        Some(1)
    );
}

/// `run_blocking` and its typed forms: the same results, errors and
/// statistics as submit-and-wait, whichever thread runs them.
fn blocking_calls(f: &Fixture) {
    let h = create(f, "b", FileClass::Wal);
    for i in 0..10u64 {
        let data = pattern(i, 512);
        let back =
            f.io.write_at_blocking(h, i * 512, IoBuf::from(data.clone()));
        assert_eq!(&back.unwrap()[..], &data[..], "the buffer comes back");
    }
    f.io.fdatasync_blocking(h).unwrap();
    let want: Vec<u8> = (0..10u64).flat_map(|i| pattern(i, 512)).collect();
    assert_eq!(read_all(f, h, 5120), want);
    match f.io.run_blocking(Request::Size { file: h }) {
        Ok(keel_io::Reply::Size(n)) => assert_eq!(n, 5120),
        other => panic!("expected a size, got {other:?}"),
    }
    let reads_before =
        f.io.stats()
            .get(OpKind::Read, FileClass::Wal)
            .map_or(0, |r| r.count);
    let got = f.io.read_exact_at_blocking(h, 512, IoBuf::zeroed(1024));
    assert_eq!(&got.unwrap()[..], &want[512..1536], "an inline read");
    let short = f.io.read_exact_at_blocking(h, 5000, IoBuf::zeroed(512));
    assert!(
        matches!(
            short,
            Err(IoError::ShortRead {
                offset: 5000,
                wanted: 512,
                got: 120,
                ..
            })
        ),
        "{short:?}"
    );
    let r =
        f.io.stats()
            .get(OpKind::Read, FileClass::Wal)
            .map_or(0, |r| r.count);
    assert_eq!(r - reads_before, 2, "inline reads are counted");
    let s = f.io.stats();
    let w = s.get(OpKind::Write, FileClass::Wal).expect("write stats");
    assert_eq!((w.count, w.bytes, w.errors), (10, 5120, 0));
    let d = s
        .get(OpKind::Fdatasync, FileClass::Wal)
        .expect("sync stats");
    assert_eq!((d.count, d.errors), (1, 0));
    assert!(d.latency_ns_max > 0, "inline syncs are timed too");
    // Errors are the ones submit reports.
    let ro = f.io.open(&f.path("b"), OpenOptions::new(FileClass::Data));
    let ro = ro.wait().unwrap();
    let e = f.io.write_at_blocking(ro, 0, IoBuf::zeroed(1)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
    f.io.close(h).wait().unwrap();
    let e = f.io.fdatasync_blocking(h).unwrap_err();
    assert!(matches!(e, IoError::BadHandle { .. }), "{e}");
    assert_eq!(f.io.stats().errors(OpKind::Write), 1);
    // Every call gave its permit back, the failed ones included: a full
    // queue's worth of requests is admitted without waiting.
    let full: Vec<_> = (0..f.io.queue_depth() as u64)
        .map(|i| {
            f.io.try_submit(Request::Write {
                file: ro,
                offset: i,
                buf: IoBuf::zeroed(1),
            })
            .expect("a free permit")
        })
        .collect();
    for fut in full {
        assert!(fut.wait().is_err(), "a read-only file refuses writes");
    }
    f.io.shutdown();
    let e = f.io.write_at_blocking(ro, 0, IoBuf::zeroed(1)).unwrap_err();
    assert!(matches!(e, IoError::ShutDown { .. }), "{e}");
}

/// An inline sync waits for writes submitted (asynchronously) before it,
/// and inline writes and syncs from many threads mix with queued ones.
fn blocking_sync_ordering(f: &Fixture) {
    let h = create(f, "bo", FileClass::Wal);
    for round in 0..5u64 {
        let writes: Vec<_> = (0..32u64)
            .map(|i| {
                f.io.write_at(h, i * 4096, IoBuf::from(pattern(round + i, 4096)))
            })
            .collect();
        f.io.fdatasync_blocking(h).unwrap();
        assert!(
            writes.iter().all(|w| w.is_ready()),
            "round {round}: an inline sync completed before a write submitted before it"
        );
        for w in writes {
            w.wait().unwrap();
        }
    }
    let region = 64 * 1024u64;
    thread::scope(|scope| {
        for t in 0..4u64 {
            let io = &f.io;
            scope.spawn(move || {
                for i in 0..16u64 {
                    let off = (t + 1) * region + i * 4096;
                    io.write_at_blocking(h, off, IoBuf::from(pattern(t * 100 + i, 4096)))
                        .unwrap();
                    if i % 4 == 3 {
                        io.fdatasync_blocking(h).unwrap();
                    }
                }
            });
        }
        let queued: Vec<_> = (0..16u64)
            .map(|i| {
                f.io.write_at(h, i * 4096, IoBuf::from(pattern(1000 + i, 4096)))
            })
            .collect();
        for w in queued {
            w.wait().unwrap();
        }
    });
    f.io.fdatasync_blocking(h).unwrap();
    let all = read_all(f, h, (5 * region) as usize);
    for i in 0..16u64 {
        let at = (i * 4096) as usize;
        assert_eq!(all[at..at + 4096], pattern(1000 + i, 4096)[..]);
        for t in 0..4u64 {
            let at = ((t + 1) * region + i * 4096) as usize;
            assert_eq!(all[at..at + 4096], pattern(t * 100 + i, 4096)[..]);
        }
    }
}

/// Created files and directories are their owner's only (0600, 0700), or
/// have the mode asked for; the simulator keeps no permissions.
fn creation_modes(f: &Fixture) {
    use std::os::unix::fs::PermissionsExt;
    let h = create(f, "private", FileClass::Data);
    f.io.close(h).wait().unwrap();
    let opts = OpenOptions::read_write_create(FileClass::Data).mode(0o640);
    let h = f.io.open(&f.path("shared"), opts).wait().unwrap();
    f.io.close(h).wait().unwrap();
    f.io.create_dir(&f.path("d")).wait().unwrap();
    f.io.create_dir_with_mode(&f.path("g"), 0o750)
        .wait()
        .unwrap();
    if f.sim.is_some() {
        return;
    }
    // Under a umask that masks none of these bits (022 or 027 or 077 would
    // only clear group/other bits of the 0640/0750 cases).
    let mode = |name: &str| {
        std::fs::metadata(f.path(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("private"), 0o600);
    assert_eq!(mode("d"), 0o700);
    assert_eq!(mode("shared") & !0o040, 0o600);
    assert_eq!(mode("g") & !0o050, 0o700);
}

/// A full disk on the real backends (`/dev/full` answers every write with
/// ENOSPC): a write fails as the fatal `NoSpace` whether it goes through
/// the ring or the pool, submitted or blocking, plain or vectored, and a
/// failed write still leaves its file's sync order, so a sync submitted
/// behind it completes after it rather than being held forever. The
/// simulator's own full-disk faults are in `sim_faults.rs`.
fn full_disk(f: &Fixture) {
    let full = std::path::Path::new("/dev/full");
    if f.sim.is_some() || !full.exists() {
        return;
    }
    let h =
        f.io.open(full, OpenOptions::new(FileClass::Wal).write(true))
            .wait()
            .unwrap();
    let no_space = |e: &IoError, op: OpKind| {
        assert!(
            matches!(e, IoError::NoSpace { op: o, .. } if *o == op),
            "{e}"
        );
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        assert!(e.is_fatal(), "{e}");
    };
    let writes: Vec<_> = (0..4u64)
        .map(|i| f.io.write_at(h, i * 8, IoBuf::zeroed(8)))
        .collect();
    let sync = f.io.fdatasync(h);
    for w in writes {
        no_space(&w.wait().unwrap_err(), OpKind::Write);
    }
    // Whatever a character device answers to fdatasync, it answers.
    let _ = sync.wait();
    let e =
        f.io.writev_at(h, 0, vec![IoBuf::zeroed(4), IoBuf::zeroed(4)])
            .wait()
            .unwrap_err();
    no_space(&e, OpKind::WriteV);
    let e = f.io.write_at_blocking(h, 0, IoBuf::zeroed(8)).unwrap_err();
    no_space(&e, OpKind::Write);
    no_space(&blocking_writev(f, h).unwrap_err(), OpKind::WriteV);
    let _ = f.io.fdatasync_blocking(h);
    f.io.close(h).wait().unwrap();
}

/// Starting writeback: advice that completes on every backend, changes
/// no byte, counts as its own kind, and leaves the next sync to do its work.
fn start_writeback(f: &Fixture) {
    let h = create(f, "wb", FileClass::Data);
    let data = pattern(7, 3 * 4096);
    f.io.write_at(h, 0, IoBuf::from(data.clone()))
        .wait()
        .unwrap();
    f.io.start_writeback(h, 0, 3 * 4096).wait().unwrap();
    // An empty range, a range past the end, and the blocking form.
    f.io.start_writeback(h, 4096, 0).wait().unwrap();
    f.io.start_writeback(h, 1 << 20, 4096).wait().unwrap();
    f.io.run_blocking(Request::StartWriteback {
        file: h,
        offset: 4096,
        len: 4096,
    })
    .unwrap();
    assert_eq!(read_all(f, h, data.len()), data);
    assert!(f.io.stats().count(OpKind::Writeback) >= 3);
    f.io.fdatasync(h).wait().unwrap();
    f.io.close(h).wait().unwrap();
    match f.io.start_writeback(h, 0, 4096).wait() {
        Err(IoError::BadHandle { op, .. }) => assert_eq!(op, OpKind::Writeback),
        other => panic!("expected BadHandle for a closed handle, got {other:?}"),
    }
}

/// A durable write writes, hands its buffer back, counts as its own kind,
/// takes its place in the sync order as a write, and refuses a closed or
/// read-only handle.
fn durable_write(f: &Fixture) {
    let h = create(f, "dw", FileClass::Wal);
    let first = pattern(11, 4096);
    let back =
        f.io.durable_write_at(h, 0, IoBuf::from(first.clone()))
            .wait()
            .unwrap();
    assert_eq!(&back[..], &first[..], "the buffer comes back");
    let second = pattern(12, 3000);
    let back =
        f.io.durable_write_at_blocking(h, 4096, IoBuf::from(second.clone()))
            .unwrap();
    assert_eq!(&back[..], &second[..]);
    let mut all = first;
    all.extend_from_slice(&second);
    assert_eq!(read_all(f, h, all.len()), all);
    assert_eq!(f.io.stats().count(OpKind::DurableWrite), 2);
    // An fsync submitted after durable writes completes after them.
    let writes: Vec<_> = (0..16u64)
        .map(|i| {
            f.io.durable_write_at(h, 8192 + i * 4096, IoBuf::from(pattern(i, 4096)))
        })
        .collect();
    f.io.fsync(h).wait().unwrap();
    assert!(
        writes.iter().all(|w| w.is_ready()),
        "an fsync completed before a durable write submitted before it"
    );
    for w in writes {
        w.wait().unwrap();
    }
    f.io.close(h).wait().unwrap();
    match f.io.durable_write_at(h, 0, IoBuf::zeroed(8)).wait() {
        Err(IoError::BadHandle { op, .. }) => assert_eq!(op, OpKind::DurableWrite),
        other => panic!("expected BadHandle for a closed handle, got {other:?}"),
    }
    let ro =
        f.io.open(&f.path("dw"), OpenOptions::new(FileClass::Wal))
            .wait()
            .unwrap();
    let e =
        f.io.durable_write_at(ro, 0, IoBuf::zeroed(8))
            .wait()
            .unwrap_err();
    assert_eq!(e.op(), Some(OpKind::DurableWrite), "{e}");
    assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
}

macro_rules! suite {
    ($name:ident, $make:path) => {
        mod $name {
            use super::*;

            fn run(case: fn(&Fixture)) {
                if let Some(f) = $make(4) {
                    case(&f);
                }
            }

            #[test]
            fn read_after_write() {
                run(super::read_after_write);
            }
            #[test]
            fn vectored_write() {
                run(super::vectored_write);
            }
            #[test]
            fn concurrent_writers() {
                run(super::concurrent_writers);
            }
            #[test]
            fn beyond_queue_depth() {
                run(super::beyond_queue_depth);
            }
            #[test]
            fn dropped_futures() {
                run(super::dropped_futures);
            }
            #[test]
            fn shutdown_in_flight() {
                run(super::shutdown_in_flight);
            }
            #[test]
            fn error_mapping() {
                run(super::error_mapping);
            }
            #[test]
            fn fsync_ordering() {
                run(super::fsync_ordering);
            }
            #[test]
            fn executor() {
                run(super::executor);
            }
            #[test]
            fn namespace() {
                run(super::namespace);
            }
            #[test]
            fn statistics() {
                run(super::statistics);
            }
            #[test]
            fn blocking_calls() {
                run(super::blocking_calls);
            }
            #[test]
            fn blocking_sync_ordering() {
                run(super::blocking_sync_ordering);
            }
            #[test]
            fn creation_modes() {
                run(super::creation_modes);
            }
            #[test]
            fn full_disk() {
                run(super::full_disk);
            }
            #[test]
            fn start_writeback() {
                run(super::start_writeback);
            }
            #[test]
            fn durable_write() {
                run(super::durable_write);
            }
            #[test]
            fn write_past_one_submission() {
                run(super::write_past_one_submission);
            }
        }
    };
}

suite!(thread_pool, common::thread_pool);
suite!(io_uring, common::io_uring);
suite!(sim, common::sim);
