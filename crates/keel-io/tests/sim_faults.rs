//! Fault injection in the simulator.

// Helpers outside #[test] functions unwrap too (clippy.toml's test allowance
// covers only the test functions themselves).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use keel_io::sim::{Fault, FaultRule, SimConfig, SimIo};
use keel_io::{AsyncIo, ErrorClass, FileClass, FileHandle, IoBuf, IoError, OpKind, OpenOptions};

fn setup(config: SimConfig) -> (SimIo, FileHandle, FileHandle) {
    let sim = SimIo::new(config);
    sim.create_dir(Path::new("/db")).wait().unwrap();
    sim.sync_dir(Path::new("/")).wait().unwrap();
    let data = sim
        .open(
            Path::new("/db/data"),
            OpenOptions::read_write_create(FileClass::Data),
        )
        .wait()
        .unwrap();
    let wal = sim
        .open(
            Path::new("/db/wal"),
            OpenOptions::read_write_create(FileClass::Wal),
        )
        .wait()
        .unwrap();
    sim.sync_dir(Path::new("/db")).wait().unwrap();
    (sim, data, wal)
}

#[test]
fn eio_on_a_chosen_write() {
    let (sim, data, _) = setup(SimConfig::seeded(1));
    sim.write_at(data, 0, IoBuf::from(&b"before"[..]))
        .wait()
        .unwrap();
    let n = sim.op_count();
    sim.add_fault(FaultRule::at_op(n + 1, Fault::Eio));
    sim.write_at(data, 0, IoBuf::from(&b"first!"[..]))
        .wait()
        .unwrap(); // op n
    let e = sim
        .write_at(data, 0, IoBuf::from(&b"second"[..]))
        .wait()
        .unwrap_err(); // op n+1
    assert!(
        matches!(
            e,
            IoError::Io {
                op: OpKind::Write,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert_eq!(e.class(), ErrorClass::Fatal);
    assert!(e.to_string().contains("/db/data"), "{e}");
    // The failed write had no effect; the next one works.
    let got = sim.read_exact_at(data, 0, IoBuf::zeroed(6)).wait().unwrap();
    assert_eq!(&got[..], b"first!");
    sim.write_at(data, 0, IoBuf::from(&b"third!"[..]))
        .wait()
        .unwrap();
    assert_eq!(sim.stats().errors(OpKind::Write), 1);
}

#[test]
fn enospc_on_a_file_class() {
    let (sim, data, wal) = setup(SimConfig::seeded(2));
    sim.add_fault(FaultRule::always(Fault::NoSpace).on_class(FileClass::Wal));
    let e = sim.write_at(wal, 0, IoBuf::zeroed(10)).wait().unwrap_err();
    assert!(matches!(e, IoError::NoSpace { .. }), "{e}");
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    assert!(e.is_fatal());
    let e = sim
        .writev_at(wal, 0, vec![IoBuf::zeroed(1)])
        .wait()
        .unwrap_err();
    assert!(matches!(
        e,
        IoError::NoSpace {
            op: OpKind::WriteV,
            ..
        }
    ));
    let e = sim.allocate(wal, 0, 4096).wait().unwrap_err();
    assert!(matches!(
        e,
        IoError::NoSpace {
            op: OpKind::Allocate,
            ..
        }
    ));
    sim.write_at(data, 0, IoBuf::zeroed(10)).wait().unwrap();
    sim.clear_faults();
    sim.write_at(wal, 0, IoBuf::zeroed(10)).wait().unwrap();
}

/// For 100 seeds: 4 KiB written, then `op` on the file fails with a sync
/// failure (`fail` runs it; the error must name `op`), and an fsync after
/// it succeeds. Returns the seeds whose crash then lost some of the bytes,
/// though reads showed them all before the crash.
fn lost_after_a_failed(op: OpKind, fail: impl Fn(&SimIo, FileHandle) -> IoError) -> usize {
    lost_after(Fault::SyncFailure, op, fail)
}

/// [`lost_after_a_failed`] with `fault` injected on `op`.
fn lost_after(fault: Fault, op: OpKind, fail: impl Fn(&SimIo, FileHandle) -> IoError) -> usize {
    let mut lost = 0;
    for seed in 0..100 {
        let (sim, data, _) = setup(SimConfig::seeded(seed));
        sim.write_at(data, 0, IoBuf::from(vec![9u8; 4096]))
            .wait()
            .unwrap();
        sim.add_fault(FaultRule::always(fault).on_op(op));
        let e = fail(&sim, data);
        assert!(e.is_sync_failure(), "{e}");
        assert_eq!(e.op(), Some(op), "{e}");
        let errno = if fault == Fault::NoSpace {
            libc::ENOSPC
        } else {
            libc::EIO
        };
        assert_eq!(e.raw_os_error(), Some(errno), "{fault:?}: {e}");
        sim.clear_faults();
        // Reads still see the data, and a retried fsync "succeeds"…
        let got = sim
            .read_exact_at(data, 0, IoBuf::zeroed(4096))
            .wait()
            .unwrap();
        assert!(got.iter().all(|&b| b == 9));
        sim.fsync(data).wait().unwrap();
        // …yet what was dropped at the failure is gone for good.
        let disk = sim.crash();
        let img = disk.file(Path::new("/db/data")).unwrap();
        if img.len() < 4096 || img.iter().any(|&b| b != 9) {
            lost += 1;
        }
    }
    lost
}

#[test]
fn a_failed_fsync_loses_data_and_a_retry_lies() {
    let lost = lost_after_a_failed(OpKind::Fsync, |sim, data| {
        sim.fsync(data).wait().unwrap_err()
    });
    assert!(lost > 0, "the fsyncgate model loses data for some seeds");
}

/// EIO and ENOSPC on a sync are what Linux reports after a writeback
/// error (ENOSPC from delayed allocation or a thin device): the pages it
/// could not write are marked clean, so a retried sync succeeds without
/// them. Each is the sync failure model, on every kind of file sync.
#[test]
fn eio_or_a_full_disk_on_a_sync_loses_data_and_a_retry_lies() {
    for fault in [Fault::Eio, Fault::NoSpace] {
        for op in [OpKind::Fsync, OpKind::Fdatasync, OpKind::Writeback] {
            let lost = lost_after(fault, op, |sim, data| match op {
                OpKind::Fsync => sim.fsync(data).wait().unwrap_err(),
                OpKind::Fdatasync => sim.fdatasync(data).wait().unwrap_err(),
                _ => sim.start_writeback(data, 0, 4096).wait().unwrap_err(),
            });
            assert!(lost > 0, "{fault:?} on {}: no seed lost data", op.name());
        }
    }
}

/// A failed syncfs drops every file's dirty state, whatever it reports.
#[test]
fn eio_or_a_full_disk_on_syncfs_loses_data() {
    for fault in [Fault::Eio, Fault::NoSpace, Fault::SyncFailure] {
        let mut lost = 0;
        for seed in 0..50 {
            let (sim, data, _) = setup(SimConfig::seeded(seed));
            sim.write_at(data, 0, IoBuf::from(vec![9u8; 4096]))
                .wait()
                .unwrap();
            sim.add_fault(FaultRule::always(fault).on_op(OpKind::SyncFs));
            sim.sync_fs(Path::new("/db")).wait().unwrap_err();
            sim.clear_faults();
            sim.sync_fs(Path::new("/db")).wait().unwrap();
            let disk = sim.crash();
            let img = disk.file(Path::new("/db/data")).unwrap();
            if img.len() < 4096 || img.iter().any(|&b| b != 9) {
                lost += 1;
            }
        }
        assert!(lost > 0, "{fault:?}: a failed syncfs lost nothing");
    }
}

/// A failed start of writeback is a sync failure: the kernel may have
/// dropped the pages it could not write, and the file's next sync
/// succeeds without bringing them back.
#[test]
fn a_failed_writeback_loses_data_like_a_failed_sync() {
    let lost = lost_after_a_failed(OpKind::Writeback, |sim, data| {
        sim.start_writeback(data, 0, 4096).wait().unwrap_err()
    });
    assert!(lost > 0, "a failed writeback loses data for some seeds");
}

/// A durable write that fails to become durable is a sync failure: the
/// kernel dropped the file's dirty state, its own bytes and the earlier
/// ones alike, and the file's next sync succeeds without them.
#[test]
fn a_failed_durable_write_loses_data_like_a_failed_sync() {
    let lost = lost_after_a_failed(OpKind::DurableWrite, |sim, data| {
        sim.durable_write_at(data, 4096, IoBuf::from(vec![1u8; 512]))
            .wait()
            .unwrap_err()
    });
    assert!(lost > 0, "a failed durable write loses data for some seeds");
}

/// EIO and a full disk fail a durable write either at its write, with no
/// effect, or at its sync, as a sync failure: its bytes reach the kernel,
/// reads see them, and whether they (and the file's earlier unsynced
/// writes) are on the disk is a crash's draw. Both happen across seeds.
#[test]
fn a_durable_write_fails_with_eio_or_a_full_disk_at_its_write_or_its_sync() {
    for fault in [Fault::Eio, Fault::NoSpace] {
        let (mut untouched, mut reached) = (0, 0);
        for seed in 0..40 {
            let (sim, _, wal) = setup(SimConfig::seeded(seed));
            sim.add_fault(FaultRule::always(fault).on_op(OpKind::DurableWrite));
            let e = sim
                .durable_write_at(wal, 0, IoBuf::from(vec![3u8; 100]))
                .wait()
                .unwrap_err();
            assert_eq!(e.op(), Some(OpKind::DurableWrite), "{fault:?}: {e}");
            assert!(e.is_fatal() && e.is_sync_failure(), "{fault:?}: {e}");
            sim.clear_faults();
            sim.fsync(wal).wait().unwrap();
            match sim.size(wal).wait().unwrap() {
                0 => {
                    untouched += 1;
                    let disk = sim.crash();
                    assert_eq!(disk.file(Path::new("/db/wal")), Some(&[][..]));
                }
                100 => reached += 1,
                n => panic!("{fault:?}: size {n}"),
            }
        }
        assert!(
            untouched > 0 && reached > 0,
            "{fault:?}: {untouched}/{reached}"
        );
    }
}

#[test]
fn short_writes_are_resubmitted_or_reported() {
    let (sim, data, _) = setup(SimConfig::seeded(3));
    let n = sim.op_count();
    sim.add_fault(FaultRule::at_op(n, Fault::ShortWrite { max_bytes: 100 }));
    sim.write_at(data, 10, IoBuf::from(vec![5u8; 1000]))
        .wait()
        .unwrap();
    let got = sim
        .read_exact_at(data, 10, IoBuf::zeroed(1000))
        .wait()
        .unwrap();
    assert!(got.iter().all(|&b| b == 5), "the remainder was resubmitted");

    sim.add_fault(FaultRule::always(Fault::ShortWrite { max_bytes: 0 }).on_op(OpKind::WriteV));
    let e = sim
        .writev_at(data, 4096, vec![IoBuf::zeroed(300), IoBuf::zeroed(200)])
        .wait()
        .unwrap_err();
    match e {
        IoError::ShortWrite {
            offset,
            wanted,
            written,
            ..
        } => assert_eq!((offset, wanted, written), (4096, 500, 0)),
        other => panic!("expected ShortWrite, got {other}"),
    }
    assert_eq!(sim.size(data).wait().unwrap(), 1010);
}

#[test]
fn probabilistic_faults_are_deterministic() {
    let run = |seed| {
        let (sim, data, _) = setup(SimConfig {
            faults: vec![FaultRule::with_probability(0.3, Fault::Eio).on_op(OpKind::Write)],
            ..SimConfig::seeded(seed)
        });
        (0..200u64)
            .map(|i| sim.write_at(data, i, IoBuf::zeroed(1)).wait().is_ok())
            .collect::<Vec<bool>>()
    };
    let a = run(11);
    assert_eq!(a, run(11));
    let failures = a.iter().filter(|ok| !**ok).count();
    assert!((20..=100).contains(&failures), "about 30% fail: {failures}");
    assert_ne!(a, run(12));
}

#[test]
fn power_cut_at_an_operation_number() {
    let (sim, data, wal) = setup(SimConfig::seeded(4));
    sim.write_at(wal, 0, IoBuf::from(&b"durable"[..]))
        .wait()
        .unwrap();
    sim.fdatasync(wal).wait().unwrap();
    let cut = sim.op_count() + 2;
    sim.add_fault(FaultRule::at_op(cut, Fault::PowerCut));
    sim.write_at(data, 0, IoBuf::zeroed(1)).wait().unwrap();
    sim.write_at(data, 1, IoBuf::zeroed(1)).wait().unwrap();
    let e = sim.write_at(data, 2, IoBuf::zeroed(1)).wait().unwrap_err();
    assert!(matches!(e, IoError::ShutDown { .. }));
    assert!(sim.is_halted());
    assert!(sim.fsync(wal).wait().is_err());
    let disk = sim.crash();
    assert_eq!(disk.file(Path::new("/db/wal")), Some(&b"durable"[..]));
}

#[test]
fn direct_io_rules_in_the_simulator() {
    let (sim, _, _) = setup(SimConfig::seeded(5));
    let opts = OpenOptions::read_write_create(FileClass::Data).direct(true);
    let h = sim.open(Path::new("/db/direct"), opts).wait().unwrap();
    sim.write_at(h, 4096, IoBuf::aligned(8192)).wait().unwrap();
    let e = sim
        .write_at(h, 100, IoBuf::aligned(4096))
        .wait()
        .unwrap_err();
    assert!(matches!(e, IoError::Misaligned { offset: 100, .. }), "{e}");
    assert!(e.is_usage());
    let e = sim.read_at(h, 0, IoBuf::aligned(100)).wait().unwrap_err();
    assert!(matches!(e, IoError::Misaligned { len: 100, .. }), "{e}");

    let tmpfs = SimIo::new(SimConfig {
        direct_io_supported: false,
        ..SimConfig::default()
    });
    let e = tmpfs.open(Path::new("/f"), opts).wait().unwrap_err();
    assert!(matches!(e, IoError::DirectIoUnsupported { .. }), "{e}");
}

#[test]
fn inline_calls_count_as_operations_and_take_faults() {
    let (sim, _, wal) = setup(SimConfig::seeded(7));
    let n = sim.op_count();
    sim.add_fault(FaultRule::at_op(n + 1, Fault::Eio));
    sim.add_fault(FaultRule::always(Fault::SyncFailure).on_op(OpKind::Fdatasync));
    sim.write_at_blocking(wal, 0, IoBuf::from(vec![1u8; 512]))
        .unwrap(); // op n
    let e = sim
        .write_at_blocking(wal, 512, IoBuf::from(vec![2u8; 512]))
        .unwrap_err(); // op n+1
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    let e = sim.fdatasync_blocking(wal).unwrap_err(); // op n+2
    assert!(e.is_sync_failure(), "{e}");
    assert_eq!(sim.op_count(), n + 3);
    sim.clear_faults();
    sim.add_fault(FaultRule::at_op(n + 3, Fault::PowerCut));
    let e = sim.fdatasync_blocking(wal).unwrap_err();
    assert!(matches!(e, IoError::ShutDown { .. }), "{e}");
    assert!(sim.is_halted());
}
