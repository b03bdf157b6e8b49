//! Crash tests of the simulator's durability model, under many seeds.

// Helpers outside #[test] functions unwrap too (clippy.toml's test allowance
// covers only the test functions themselves).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::pattern;
use keel_io::sim::{SECTOR_SIZE, SimConfig, SimDisk, SimIo};
use keel_io::{AsyncIo, FileClass, FileHandle, IoBuf, OpenOptions};

const SEEDS: u64 = 300;

fn boot(seed: u64) -> SimIo {
    let sim = SimIo::new(SimConfig::seeded(seed));
    sim.create_dir(Path::new("/db")).wait().unwrap();
    sim.sync_dir(Path::new("/")).wait().unwrap();
    sim
}

fn create(sim: &SimIo, path: &str) -> FileHandle {
    sim.open(
        Path::new(path),
        OpenOptions::read_write_create(FileClass::Data),
    )
    .wait()
    .unwrap()
}

/// One unsynced write, as the test remembers it.
struct Unsynced {
    offset: usize,
    data: Vec<u8>,
}

#[derive(Default)]
struct Seen {
    kept: bool,
    dropped: bool,
    torn: bool,
}

/// Runs a random workload; returns the durable image the model promises and
/// the writes since the last fsync (which never overlap each other).
fn workload(sim: &SimIo, h: FileHandle, seed: u64) -> (Vec<u8>, Vec<Unsynced>) {
    let mut rnd = pattern(seed, 256).into_iter().cycle();
    let mut next = move || rnd.next().unwrap() as usize;
    let mut synced: Vec<u8> = Vec::new();
    let mut live: Vec<u8> = Vec::new();
    let mut unsynced: Vec<Unsynced> = Vec::new();
    for step in 0..12 {
        // A fresh region per write, so unsynced writes never overlap:
        // region `step` spans [step * 4096, step * 4096 + 4096).
        let offset = step * 4096 + next() * 7 % 1500;
        let len = 1 + next() * 13 % 2500;
        let data = pattern(seed * 1000 + step as u64, len);
        // Odd seeds go through the inline calls, which must obey the
        // same durability model.
        let buf = IoBuf::from(data.clone());
        if seed % 2 == 1 {
            sim.write_at_blocking(h, offset as u64, buf).unwrap();
        } else {
            sim.write_at(h, offset as u64, buf).wait().unwrap();
        }
        if live.len() < offset + len {
            live.resize(offset + len, 0);
        }
        live[offset..offset + len].copy_from_slice(&data);
        unsynced.push(Unsynced { offset, data });
        if next() % 4 == 0 {
            if seed % 2 == 1 {
                sim.fdatasync_blocking(h).unwrap();
            } else {
                sim.fsync(h).wait().unwrap();
            }
            synced.clone_from(&live);
            unsynced.clear();
        }
    }
    (synced, unsynced)
}

/// Checks one crash image against the model; records which outcomes it saw.
fn check_image(img: &[u8], synced: &[u8], unsynced: &[Unsynced], seen: &mut Seen) {
    assert!(
        img.len() >= synced.len(),
        "durable bytes lost: {} < {}",
        img.len(),
        synced.len()
    );
    let old = |i: usize| synced.get(i).copied().unwrap_or(0);
    let mut covered = vec![false; img.len()];
    for w in unsynced {
        let end = w.offset + w.data.len();
        let (mut any_new, mut any_old) = (false, false);
        let mut pos = w.offset;
        while pos < end {
            let piece_end = ((pos / SECTOR_SIZE + 1) * SECTOR_SIZE).min(end);
            let new = &w.data[pos - w.offset..piece_end - w.offset];
            let is_new = piece_end <= img.len() && &img[pos..piece_end] == new;
            let is_old = (pos..piece_end).all(|i| i >= img.len() || img[i] == old(i));
            assert!(
                is_new || is_old,
                "sector piece [{pos}, {piece_end}) is neither old nor new (torn inside a sector)"
            );
            if is_new && !is_old {
                any_new = true;
            }
            if is_old && !is_new {
                any_old = true;
            }
            for c in covered.iter_mut().take(piece_end.min(img.len())).skip(pos) {
                *c = true;
            }
            pos = piece_end;
        }
        match (any_new, any_old) {
            (true, true) => seen.torn = true,
            (true, false) => seen.kept = true,
            (false, true) => seen.dropped = true,
            (false, false) => {}
        }
    }
    for (i, &b) in img.iter().enumerate() {
        if !covered[i] {
            assert_eq!(
                b,
                old(i),
                "byte {i} changed though no unsynced write covers it"
            );
        }
    }
    let max_end = unsynced
        .iter()
        .map(|w| w.offset + w.data.len())
        .max()
        .unwrap_or(0)
        .max(synced.len());
    assert!(img.len() <= max_end, "file grew past every write");
}

#[test]
fn fsynced_bytes_survive_and_unsynced_ones_tear_by_sector() {
    let mut seen = Seen::default();
    for seed in 0..SEEDS {
        let sim = boot(seed);
        let h = create(&sim, "/db/f");
        sim.sync_dir(Path::new("/db")).wait().unwrap();
        let (synced, unsynced) = workload(&sim, h, seed);
        let disk = sim.crash();
        let img = disk
            .file(Path::new("/db/f"))
            .expect("synced entry survives");
        check_image(img, &synced, &unsynced, &mut seen);
    }
    assert!(
        seen.kept && seen.dropped && seen.torn,
        "every outcome occurs across seeds"
    );
}

#[test]
fn crashes_are_deterministic_per_seed() {
    let run = |seed| {
        let sim = boot(seed);
        let h = create(&sim, "/db/f");
        workload(&sim, h, seed);
        create(&sim, "/db/g");
        sim.crash()
    };
    let mut differs = false;
    for seed in 0..50 {
        assert_eq!(run(seed), run(seed), "seed {seed}");
        differs |= run(seed) != run(seed + 1000);
    }
    assert!(differs, "different seeds give different crashes");
}

#[test]
fn unsynced_creates_and_renames_may_vanish_but_are_atomic() {
    let (mut created_kept, mut created_lost) = (false, false);
    let (mut renamed, mut not_renamed) = (false, false);
    for seed in 0..SEEDS {
        let sim = boot(seed);
        let a = create(&sim, "/db/a");
        sim.write_at(a, 0, IoBuf::from(&b"A"[..])).wait().unwrap();
        sim.fsync(a).wait().unwrap();
        sim.sync_dir(Path::new("/db")).wait().unwrap();
        // Unsynced namespace changes: a new file (fsynced content, but its
        // entry is not) and a rename.
        let n = create(&sim, "/db/new");
        sim.write_at(n, 0, IoBuf::from(&b"N"[..])).wait().unwrap();
        sim.fsync(n).wait().unwrap();
        sim.rename(Path::new("/db/a"), Path::new("/db/b"))
            .wait()
            .unwrap();
        let disk = sim.crash();
        match disk.file(Path::new("/db/new")) {
            Some(c) => {
                assert_eq!(c, b"N");
                created_kept = true;
            }
            None => created_lost = true,
        }
        let (old, new) = (disk.file(Path::new("/db/a")), disk.file(Path::new("/db/b")));
        match (old, new) {
            (Some(c), None) => {
                assert_eq!(c, b"A");
                not_renamed = true;
            }
            (None, Some(c)) => {
                assert_eq!(c, b"A");
                renamed = true;
            }
            other => panic!("seed {seed}: rename not atomic: {other:?}"),
        }
    }
    assert!(created_kept && created_lost && renamed && not_renamed);
}

#[test]
fn without_a_journal_a_later_directory_change_can_survive_an_earlier_one() {
    // Unsynced: remove `x`, then create `y`. A journalled disk keeps a
    // prefix (x alone, neither, or y alone); one without a journal may
    // also keep the create and lose the remove (both).
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..SEEDS {
        let sim = boot(seed);
        let x = create(&sim, "/db/x");
        sim.close(x).wait().unwrap();
        sim.sync_dir(Path::new("/db")).wait().unwrap();
        sim.remove(Path::new("/db/x")).wait().unwrap();
        let y = create(&sim, "/db/y");
        sim.close(y).wait().unwrap();
        let disk = sim.crash();
        seen.insert((
            disk.file(Path::new("/db/x")).is_some(),
            disk.file(Path::new("/db/y")).is_some(),
        ));
    }
    let all = [(true, false), (false, false), (false, true), (true, true)];
    assert_eq!(seen, all.into_iter().collect(), "every state occurs");
}

#[test]
fn synced_namespace_changes_survive_every_crash() {
    for seed in 0..SEEDS {
        let sim = boot(seed);
        sim.create_dir(Path::new("/db/sub")).wait().unwrap();
        let a = create(&sim, "/db/sub/a");
        sim.write_at(a, 0, IoBuf::from(&b"hello"[..]))
            .wait()
            .unwrap();
        sim.fdatasync(a).wait().unwrap();
        sim.sync_dir(Path::new("/db/sub")).wait().unwrap();
        sim.sync_dir(Path::new("/db")).wait().unwrap();
        let old = create(&sim, "/db/old");
        sim.close(old).wait().unwrap();
        sim.sync_dir(Path::new("/db")).wait().unwrap();
        sim.remove(Path::new("/db/old")).wait().unwrap();
        sim.sync_dir(Path::new("/db")).wait().unwrap();
        let disk = sim.crash();
        assert_eq!(
            disk.file(Path::new("/db/sub/a")),
            Some(&b"hello"[..]),
            "seed {seed}"
        );
        assert!(disk.file(Path::new("/db/old")).is_none());
        assert!(disk.has_dir(Path::new("/db/sub")));
    }
}

#[test]
fn an_unsynced_directory_takes_its_files_with_it() {
    let mut lost = false;
    for seed in 0..100 {
        let sim = boot(seed);
        sim.create_dir(Path::new("/db/tmp")).wait().unwrap();
        let f = create(&sim, "/db/tmp/f");
        sim.fsync(f).wait().unwrap();
        sim.sync_dir(Path::new("/db/tmp")).wait().unwrap();
        // /db itself was not synced after creating /db/tmp.
        let disk = sim.crash();
        if !disk.has_dir(Path::new("/db/tmp")) {
            assert!(disk.file(Path::new("/db/tmp/f")).is_none());
            lost = true;
        }
    }
    assert!(lost);
}

#[test]
fn reboot_from_a_crashed_disk() {
    let sim = boot(7);
    let h = create(&sim, "/db/f");
    sim.write_at(h, 0, IoBuf::from(pattern(1, 3000)))
        .wait()
        .unwrap();
    sim.fsync(h).wait().unwrap();
    sim.sync_dir(Path::new("/db")).wait().unwrap();
    let disk = sim.crash();
    assert!(sim.is_halted());
    assert!(
        sim.size(h).wait().is_err(),
        "a crashed simulator refuses work"
    );

    let sim2 = SimIo::from_disk(disk.clone(), SimConfig::seeded(8));
    let h2 = sim2
        .open(
            Path::new("/db/f"),
            OpenOptions::new(FileClass::Data).write(true),
        )
        .wait()
        .unwrap();
    let got = sim2
        .read_exact_at(h2, 0, IoBuf::zeroed(3000))
        .wait()
        .unwrap();
    assert_eq!(got.into_vec(), pattern(1, 3000));
    // Everything booted from a disk is durable: crashing at once changes nothing.
    assert_eq!(sim2.crash(), disk);

    let built = SimDisk::new().with_file(Path::new("/x/y/z"), b"abc");
    assert!(built.has_dir(Path::new("/x/y")));
    let sim3 = SimIo::from_disk(built, SimConfig::default());
    let names = sim3.read_dir(Path::new("/x/y")).wait().unwrap();
    assert_eq!(names.len(), 1);
}

/// A durable write survives every crash whole, and makes only its own bytes
/// durable (model rule 1a): an unsynced write before it, beside it, is still
/// kept, dropped or torn at a crash; an unsynced write under it never lands
/// on top of it; and a short first call's remainder is durable too.
#[test]
fn a_durable_write_survives_every_crash_and_only_its_own_bytes_do() {
    let mut beside_lost = 0;
    let mut beside_kept = 0;
    for seed in 0..SEEDS {
        let sim = boot(seed);
        let h = create(&sim, "/db/f");
        sim.sync_dir(Path::new("/db")).wait().unwrap();
        let beside = pattern(seed, 4096);
        let under = pattern(seed + 1, 4096);
        let over = pattern(seed + 2, 4096);
        sim.write_at(h, 0, IoBuf::from(beside.clone()))
            .wait()
            .unwrap();
        sim.write_at(h, 8192, IoBuf::from(under)).wait().unwrap();
        let n = sim.op_count();
        if seed % 2 == 1 {
            sim.add_fault(keel_io::sim::FaultRule::at_op(
                n,
                keel_io::sim::Fault::ShortWrite { max_bytes: 1000 },
            ));
        }
        let back = sim
            .durable_write_at(h, 8192, IoBuf::from(over.clone()))
            .wait()
            .unwrap();
        assert_eq!(&back[..], &over[..], "seed {seed}: the buffer comes back");
        let disk = sim.crash();
        let img = disk.file(Path::new("/db/f")).unwrap();
        assert!(img.len() >= 12288, "seed {seed}: the durable write's size");
        assert!(
            img[8192..12288] == over[..],
            "seed {seed}: the durable write did not survive the crash whole"
        );
        if img[..4096] == beside[..] {
            beside_kept += 1;
        } else {
            beside_lost += 1;
        }
    }
    assert!(
        beside_lost > 0 && beside_kept > 0,
        "an unsynced write beside a durable one is neither always kept nor \
         always lost: kept {beside_kept}, lost {beside_lost}"
    );
}
