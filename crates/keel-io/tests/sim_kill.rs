//! The simulator's process kill (`SimIo::kill` / `SimIo::after_kill`) and
//! syncfs: a killed process's unsynced writes survive in the kernel, are
//! visible to the next process, and stay not durable until someone syncs
//! them; a later power cut resolves them like the next process's own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::pattern;
use keel_io::sim::{Fault, FaultRule, SimConfig, SimIo};
use keel_io::{AsyncIo, FileClass, FileHandle, IoBuf, IoError, OpKind, OpenOptions};

const SEEDS: u64 = 200;

fn create(sim: &SimIo, path: &str) -> FileHandle {
    sim.open(
        Path::new(path),
        OpenOptions::read_write_create(FileClass::Data),
    )
    .wait()
    .unwrap()
}

fn reopen(sim: &SimIo, path: &str) -> FileHandle {
    sim.open(Path::new(path), OpenOptions::new(FileClass::Data))
        .wait()
        .unwrap()
}

fn read_all(sim: &SimIo, h: FileHandle) -> Vec<u8> {
    let len = sim.size(h).wait().unwrap() as usize;
    sim.read_exact_at(h, 0, IoBuf::zeroed(len))
        .wait()
        .unwrap()
        .into_vec()
}

/// A process that creates `/db/f` durably, writes `synced` and syncs it,
/// then writes `unsynced` over it without a sync, and is killed.
fn killed_process(seed: u64, synced: &[u8], unsynced: &[u8]) -> keel_io::sim::SimKernel {
    let sim = SimIo::new(SimConfig::seeded(seed));
    sim.create_dir(Path::new("/db")).wait().unwrap();
    sim.sync_dir(Path::new("/")).wait().unwrap();
    let h = create(&sim, "/db/f");
    sim.sync_dir(Path::new("/db")).wait().unwrap();
    sim.write_at(h, 0, IoBuf::from(synced.to_vec()))
        .wait()
        .unwrap();
    sim.fsync(h).wait().unwrap();
    sim.write_at(h, 0, IoBuf::from(unsynced.to_vec()))
        .wait()
        .unwrap();
    sim.kill()
}

#[test]
fn the_next_process_reads_what_a_killed_one_wrote() {
    let (old, new) = (pattern(1, 4096), pattern(2, 4096));
    let next = SimIo::after_kill(killed_process(0, &old, &new), SimConfig::seeded(1));
    let h = reopen(&next, "/db/f");
    assert_eq!(read_all(&next, h), new);
}

#[test]
fn a_killed_process_unsynced_writes_are_not_durable_after_the_restart() {
    let (old, new) = (pattern(1, 4096), pattern(2, 4096));
    let (mut kept, mut lost) = (0, 0);
    for seed in 0..SEEDS {
        let next = SimIo::after_kill(killed_process(seed, &old, &new), SimConfig::seeded(seed));
        // The restart only reads.
        let h = reopen(&next, "/db/f");
        assert_eq!(read_all(&next, h), new);
        let disk = next.crash();
        let found = disk.file(Path::new("/db/f")).unwrap();
        assert_eq!(found.len(), 4096, "seed {seed}");
        // The synced content is the floor: every sector is old or new.
        for (i, sector) in found.chunks(512).enumerate() {
            let at = i * 512..(i + 1) * 512;
            assert!(
                sector == &old[at.clone()] || sector == &new[at],
                "seed {seed}: sector {i} is neither old nor new"
            );
        }
        if found == new.as_slice() {
            kept += 1;
        } else {
            lost += 1;
        }
    }
    assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
}

#[test]
fn a_sync_by_the_next_process_makes_the_dead_one_writes_durable() {
    let (old, new) = (pattern(1, 4096), pattern(2, 4096));
    for seed in 0..SEEDS {
        let next = SimIo::after_kill(killed_process(seed, &old, &new), SimConfig::seeded(seed));
        let h = reopen(&next, "/db/f");
        if seed % 2 == 0 {
            next.fsync(h).wait().unwrap();
        } else {
            next.sync_fs(Path::new("/db")).wait().unwrap();
        }
        let disk = next.crash();
        assert_eq!(disk.file(Path::new("/db/f")).unwrap(), new, "seed {seed}");
    }
}

#[test]
fn a_killed_process_unsynced_entries_need_a_directory_sync() {
    let (mut present, mut missing) = (0, 0);
    for seed in 0..SEEDS {
        let sim = SimIo::new(SimConfig::seeded(seed));
        sim.create_dir(Path::new("/db")).wait().unwrap();
        sim.sync_dir(Path::new("/")).wait().unwrap();
        let h = create(&sim, "/db/g");
        sim.write_at(h, 0, IoBuf::from(pattern(3, 1024)))
            .wait()
            .unwrap();
        sim.fsync(h).wait().unwrap();
        let next = SimIo::after_kill(sim.kill(), SimConfig::seeded(seed));
        let listed = next.read_dir(Path::new("/db")).wait().unwrap();
        assert_eq!(listed.len(), 1, "the next process sees the entry");
        let sync_dir = seed % 3 == 0;
        if sync_dir {
            next.sync_dir(Path::new("/db")).wait().unwrap();
        }
        let disk = next.crash();
        match disk.file(Path::new("/db/g")) {
            Some(content) => {
                present += 1;
                assert_eq!(content, pattern(3, 1024), "seed {seed}");
            }
            None => {
                assert!(!sync_dir, "seed {seed}: synced entry lost");
                missing += 1;
            }
        }
    }
    assert!(
        present > 0 && missing > 0,
        "present {present}, missing {missing}"
    );
}

#[test]
fn syncfs_makes_every_file_and_directory_durable() {
    for seed in 0..SEEDS {
        let sim = SimIo::new(SimConfig::seeded(seed));
        sim.create_dir(Path::new("/db")).wait().unwrap();
        sim.create_dir(Path::new("/db/rel")).wait().unwrap();
        let a = create(&sim, "/db/a");
        let b = create(&sim, "/db/rel/b");
        sim.write_at(a, 100, IoBuf::from(pattern(4, 3000)))
            .wait()
            .unwrap();
        sim.write_at(b, 0, IoBuf::from(pattern(5, 700)))
            .wait()
            .unwrap();
        sim.sync_fs(Path::new("/db")).wait().unwrap();
        let disk = sim.crash();
        assert!(disk.has_dir(Path::new("/db/rel")), "seed {seed}");
        let a = disk.file(Path::new("/db/a")).unwrap();
        assert_eq!(&a[100..], pattern(4, 3000), "seed {seed}");
        assert_eq!(disk.file(Path::new("/db/rel/b")).unwrap(), pattern(5, 700));
    }
}

#[test]
fn a_failed_syncfs_resolves_the_pending_writes_and_reports_eio() {
    let (old, new) = (pattern(1, 4096), pattern(2, 4096));
    let (mut kept, mut lost) = (0, 0);
    for seed in 0..SEEDS {
        let next = SimIo::after_kill(killed_process(seed, &old, &new), SimConfig::seeded(seed));
        next.add_fault(FaultRule::always(Fault::SyncFailure).on_op(OpKind::SyncFs));
        let err = next.sync_fs(Path::new("/db")).wait().unwrap_err();
        assert!(matches!(err, IoError::Io { .. }), "{err}");
        next.clear_faults();
        // Retrying succeeds, without bringing back what the failure lost.
        next.sync_fs(Path::new("/db")).wait().unwrap();
        let found = next.crash();
        let found = found.file(Path::new("/db/f")).unwrap();
        if found == new.as_slice() {
            kept += 1;
        } else {
            lost += 1;
        }
    }
    assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
}

#[test]
fn a_kill_fault_stops_the_process_and_keeps_its_writes_in_the_kernel() {
    let sim = SimIo::new(SimConfig::seeded(9));
    sim.create_dir(Path::new("/db")).wait().unwrap();
    let h = create(&sim, "/db/f");
    sim.write_at(h, 0, IoBuf::from(pattern(6, 512)))
        .wait()
        .unwrap();
    sim.add_fault(FaultRule::at_op(sim.op_count(), Fault::Kill));
    let err = sim.fsync(h).wait().unwrap_err();
    assert!(matches!(err, IoError::ShutDown { .. }), "{err}");
    assert!(sim.is_halted());
    let next = SimIo::after_kill(sim.kill(), SimConfig::seeded(10));
    // The dead process's handle means nothing to the next one.
    assert!(next.size(h).wait().is_err());
    let h = reopen(&next, "/db/f");
    assert_eq!(read_all(&next, h), pattern(6, 512));
}

#[test]
fn dot_names_the_root_directory() {
    let sim = SimIo::new(SimConfig::seeded(11));
    sim.create_dir(Path::new("demo")).wait().unwrap();
    sim.sync_dir(Path::new(".")).wait().unwrap();
    let disk = sim.crash();
    assert!(disk.has_dir(Path::new("demo")));
}
