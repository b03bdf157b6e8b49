use std::path::PathBuf;

use keel_io::sim::{Fault, FaultRule, SimConfig, SimIo};
use keel_io::{AsyncIo, OpKind};

use super::*;

const DB: u64 = 0x5eed;

fn sim() -> (Arc<dyn AsyncIo>, Arc<SimIo>, PathBuf) {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(3)));
    let dir = PathBuf::from("/db");
    sim.create_dir(&dir).wait().unwrap();
    sim.sync_dir(Path::new("/")).wait().unwrap();
    let io: Arc<dyn AsyncIo> = sim.clone();
    (io, sim, dir)
}

/// A formatted-looking page whose bytes say which page and version it is.
fn page(pid: u32, version: u8) -> Box<[u8; PAGE_SIZE]> {
    let mut p = Box::new([0u8; PAGE_SIZE]);
    for (i, b) in p.iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(31).wrapping_add(pid) as u8 ^ version;
    }
    p
}

fn file_bytes(io: &Arc<dyn AsyncIo>, path: &Path) -> Vec<u8> {
    let h = io
        .open(path, OpenOptions::new(FileClass::Images))
        .wait()
        .unwrap();
    let size = io.size(h).wait().unwrap() as usize;
    let bytes = io
        .read_exact_at(h, 0, IoBuf::zeroed(size))
        .wait()
        .unwrap()
        .to_vec();
    io.close(h).wait().unwrap();
    bytes
}

/// Opens the store of `epoch` in `dir`, keeps images of `pids` (of
/// relation `rel`, version 1), syncs and closes it.
fn keep_images(
    io: &Arc<dyn AsyncIo>,
    dir: &Path,
    epoch: Lsn,
    rel: u32,
    pids: std::ops::Range<u32>,
) {
    let images = PageImages::open(io.clone(), dir, DB, Some(epoch), false).unwrap();
    for pid in pids {
        images
            .append(epoch, RelationId(rel), PageId(pid), &page(pid, 1))
            .unwrap();
    }
    images.sync().unwrap();
    images.close();
}

/// Keeps the image of page `pid` of relation 1 at `version`, as of `epoch`.
fn put(images: &PageImages, epoch: Lsn, pid: u32, version: u8) {
    images
        .append(epoch, RelationId(1), PageId(pid), &page(pid, version))
        .unwrap();
}

#[test]
fn a_header_round_trips_and_a_damaged_one_says_what_is_wrong() {
    let h = ImagesHeader {
        database_id: DB,
        epoch: Lsn(4096),
    };
    let bytes = h.encode();
    assert_eq!(ImagesHeader::decode(&bytes), Ok(h));
    let mut bad = bytes;
    bad[0] ^= 1;
    assert_eq!(ImagesHeader::decode(&bad), Err("bad magic".into()));
    let mut bad = bytes;
    bad[30] ^= 1;
    assert_eq!(
        ImagesHeader::decode(&bad),
        Err("header checksum mismatch".into())
    );
    let mut bad = bytes;
    bad[8] = 9;
    assert!(
        ImagesHeader::decode(&bad)
            .unwrap_err()
            .contains("version 9")
    );
    assert!(
        ImagesHeader::decode(&bytes[..31])
            .unwrap_err()
            .contains("31 bytes")
    );
}

#[test]
fn images_synced_in_one_epoch_are_read_back_by_the_next_open_of_that_epoch() {
    let (io, _sim, dir) = sim();
    let epoch = Lsn(8192);
    keep_images(&io, &dir, epoch, 3, 0..40);

    let again = PageImages::open(io.clone(), &dir, DB, Some(epoch), false).unwrap();
    assert!(again.has_image(epoch, RelationId(3), PageId(7)));
    assert!(!again.has_image(epoch, RelationId(4), PageId(7)));
    for pid in 0..40 {
        let got = again.image(epoch, RelationId(3), PageId(pid)).unwrap();
        assert_eq!(got.as_deref(), Some(&*page(pid, 1)), "page {pid}");
    }
    assert_eq!(again.image(epoch, RelationId(3), PageId(40)).unwrap(), None);
    // Another epoch's open finds none of them.
    again.close();
    let other = PageImages::open(io, &dir, DB, Some(Lsn(12288)), false).unwrap();
    assert_eq!(
        other.image(Lsn(12288), RelationId(3), PageId(1)).unwrap(),
        None
    );
}

#[test]
fn a_torn_tail_is_cut_off_and_later_images_follow_the_last_whole_one() {
    let (io, _sim, dir) = sim();
    let epoch = Lsn(8192);
    keep_images(&io, &dir, epoch, 1, 0..3);
    let path = dir.join(IMAGES_FILES[0]);
    let whole = file_bytes(&io, &path);
    // Cut the last entry short, as a crash during its write would.
    let h = io
        .open(&path, OpenOptions::new(FileClass::Images).write(true))
        .wait()
        .unwrap();
    io.set_len(h, whole.len() as u64 - 100).wait().unwrap();
    io.close(h).wait().unwrap();

    let again = PageImages::open(io.clone(), &dir, DB, Some(epoch), false).unwrap();
    assert!(
        again
            .image(epoch, RelationId(1), PageId(1))
            .unwrap()
            .is_some()
    );
    assert_eq!(again.image(epoch, RelationId(1), PageId(2)).unwrap(), None);
    again
        .append(epoch, RelationId(1), PageId(9), &page(9, 2))
        .unwrap();
    again.sync().unwrap();
    again.close();
    let (entries, end) = decode_entries(&file_bytes(&io, &path));
    let pages: Vec<u32> = entries.iter().map(|e| e.page.0).collect();
    assert_eq!(pages, vec![0, 1, 9]);
    assert_eq!(entries[2].image, page(9, 2));
    assert_eq!(end as usize, file_bytes(&io, &path).len());
}

#[test]
fn an_entrys_checksum_covers_its_epoch() {
    let mut bytes = ImagesHeader {
        database_id: DB,
        epoch: Lsn(100),
    }
    .encode()
    .to_vec();
    encode_entry(Lsn(100), RelationId(2), PageId(5), &page(5, 0), &mut bytes);
    encode_entry(Lsn(300), RelationId(2), PageId(6), &page(6, 0), &mut bytes);
    let (entries, end) = decode_entries(&bytes);
    let seen: Vec<(Lsn, u32)> = entries.iter().map(|e| (e.epoch, e.page.0)).collect();
    assert_eq!(seen, vec![(Lsn(100), 5), (Lsn(300), 6)]);
    assert_eq!(end as usize, bytes.len());
    // The first entry's epoch changed: it no longer checks, and reading
    // stops there.
    bytes[IMAGES_HEADER_LEN + 8] ^= 1;
    let (entries, end) = decode_entries(&bytes);
    assert!(entries.is_empty());
    assert_eq!(end, IMAGES_HEADER_LEN as u64);
}

/// A checkpoint that began (e2) and did not complete: a page that did not
/// change in the control file's epoch (e1), changed and was written in
/// e2, is repaired from its e2 image by a recovery from e1; a later
/// checkpoint (e3) that begins while e1 is still the control file's epoch
/// keeps e2's images.
#[test]
fn a_recovery_uses_the_images_of_a_later_epoch_and_a_new_epoch_keeps_them() {
    let (io, _sim, dir) = sim();
    let (e1, e2, e3) = (Lsn(1000), Lsn(2000), Lsn(3000));
    let images = PageImages::open(io.clone(), &dir, DB, Some(e1), false).unwrap();
    put(&images, e1, 1, 1);
    images.sync().unwrap();
    images.start_epoch(e2);
    put(&images, e2, 2, 2);
    put(&images, e2, 1, 2);
    images.sync().unwrap();
    images.start_epoch(e3);
    put(&images, e3, 3, 3);
    images.sync().unwrap();
    images.close();

    let got = |s: &PageImages, e: Lsn, p: u32| s.image(e, RelationId(1), PageId(p)).unwrap();
    let from_e1 = PageImages::open(io.clone(), &dir, DB, Some(e1), false).unwrap();
    // The oldest image at or after the redo start.
    assert_eq!(got(&from_e1, e1, 1).as_deref(), Some(&*page(1, 1)));
    assert_eq!(got(&from_e1, e1, 2).as_deref(), Some(&*page(2, 2)));
    assert_eq!(got(&from_e1, e1, 3).as_deref(), Some(&*page(3, 3)));
    from_e1.close();
    // From e3, the images of older epochs do not count.
    let from_e3 = PageImages::open(io, &dir, DB, Some(e3), false).unwrap();
    assert_eq!(got(&from_e3, e3, 1), None);
    assert_eq!(got(&from_e3, e3, 2), None);
    assert_eq!(got(&from_e3, e3, 3).as_deref(), Some(&*page(3, 3)));
}

/// Once the control file names e2, the next epoch takes the file that held
/// only e1's images, and truncates it.
#[test]
fn a_new_epoch_restarts_the_file_whose_images_are_older_than_the_control_files() {
    let (io, _sim, dir) = sim();
    let (e1, e2, e3) = (Lsn(1000), Lsn(2000), Lsn(3000));
    let images = PageImages::open(io.clone(), &dir, DB, Some(e1), false).unwrap();
    put(&images, e1, 1, 1);
    images.start_epoch(e2);
    put(&images, e2, 2, 2);
    images.sync().unwrap();
    images.epoch_durable(e2);
    images.start_epoch(e3);
    put(&images, e3, 3, 3);
    images.sync().unwrap();
    images.close();
    let epochs = |name: &str| -> Vec<Lsn> {
        decode_entries(&file_bytes(&io, &dir.join(name)))
            .0
            .iter()
            .map(|e| e.epoch)
            .collect()
    };
    assert_eq!(epochs(IMAGES_FILES[0]), vec![e3]);
    assert_eq!(epochs(IMAGES_FILES[1]), vec![e2]);
    // Once the control file names e3, e2's file is cut to nothing.
    let images = PageImages::open(io.clone(), &dir, DB, Some(e2), false).unwrap();
    images.epoch_durable(e3);
    images.close();
    assert!(file_bytes(&io, &dir.join(IMAGES_FILES[1])).is_empty());
    assert_eq!(epochs(IMAGES_FILES[0]), vec![e3]);
}

#[test]
fn an_image_of_an_epoch_the_store_does_not_take_is_refused() {
    let (io, _sim, dir) = sim();
    let images = PageImages::open(io, &dir, DB, Some(Lsn(10)), false).unwrap();
    let e = images
        .append(Lsn(20), RelationId(1), PageId(1), &page(1, 0))
        .unwrap_err();
    let want = format!(
        "as of {} while the images taken are as of {}",
        Lsn(20),
        Lsn(10)
    );
    assert!(e.to_string().contains(&want), "{e}");
}

#[test]
fn a_failed_sync_is_never_retried_and_refuses_every_later_append() {
    let (io, sim, dir) = sim();
    let epoch = Lsn(64);
    let images = PageImages::open(io, &dir, DB, Some(epoch), false).unwrap();
    images
        .append(epoch, RelationId(1), PageId(1), &page(1, 0))
        .unwrap();
    images.sync().unwrap();
    images
        .append(epoch, RelationId(1), PageId(2), &page(2, 0))
        .unwrap();
    sim.add_fault(FaultRule {
        op: Some(OpKind::Fdatasync),
        ..FaultRule::always(Fault::SyncFailure)
    });
    assert!(images.sync().is_err());
    sim.clear_faults();
    let again = images.sync().unwrap_err();
    assert!(again.to_string().contains("poisoned"), "{again}");
    assert!(
        images
            .append(epoch, RelationId(1), PageId(3), &page(3, 0))
            .is_err()
    );
}

#[test]
fn a_file_of_another_database_is_ignored_and_restarted_when_used() {
    let (io, _sim, dir) = sim();
    let epoch = Lsn(64);
    let theirs = PageImages::open(io.clone(), &dir, DB + 1, Some(epoch), false).unwrap();
    theirs
        .append(epoch, RelationId(1), PageId(1), &page(1, 0))
        .unwrap();
    theirs.sync().unwrap();
    theirs.close();
    let ours = PageImages::open(io.clone(), &dir, DB, Some(epoch), false).unwrap();
    assert_eq!(ours.image(epoch, RelationId(1), PageId(1)).unwrap(), None);
    ours.append(epoch, RelationId(1), PageId(2), &page(2, 0))
        .unwrap();
    ours.sync().unwrap();
    ours.close();
    let again = PageImages::open(io, &dir, DB, Some(epoch), false).unwrap();
    assert!(
        again
            .image(epoch, RelationId(1), PageId(2))
            .unwrap()
            .is_some()
    );
    assert_eq!(again.image(epoch, RelationId(1), PageId(1)).unwrap(), None);
}

/// A sync that failed in a dead process leaves its images in the page
/// cache only (readable, clean, never written again by a later sync). The
/// open after that unclean stop writes what it read again and syncs it,
/// so the images it appends after them survive the next power cut and a
/// recovery reads all of them.
#[test]
fn an_unclean_open_makes_durable_the_images_a_failed_sync_left_in_the_cache() {
    // The failed sync keeps, drops or tears what it covered, by the seed.
    for seed in 0..24 {
        unclean_open_after_a_failed_sync(seed);
    }
}

fn unclean_open_after_a_failed_sync(seed: u64) {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(seed)));
    let dir = PathBuf::from("/db");
    sim.create_dir(&dir).wait().unwrap();
    sim.sync_dir(Path::new("/")).wait().unwrap();
    let epoch = Lsn(64);
    let images = PageImages::open(sim.clone(), &dir, DB, Some(epoch), false).unwrap();
    put(&images, epoch, 1, 1);
    images.sync().unwrap();
    put(&images, epoch, 2, 1);
    sim.add_fault(FaultRule {
        op: Some(OpKind::Fdatasync),
        ..FaultRule::always(Fault::SyncFailure)
    });
    assert!(images.sync().is_err());
    sim.clear_faults();
    let kernel = sim.kill();
    drop(images);

    let sim = Arc::new(SimIo::after_kill(kernel, SimConfig::seeded(seed + 100)));
    let images = PageImages::open(sim.clone(), &dir, DB, Some(epoch), true).unwrap();
    assert!(
        images.has_image(epoch, RelationId(1), PageId(2)),
        "seed {seed}: read from the cache"
    );
    put(&images, epoch, 3, 1);
    images.sync().unwrap();
    drop(images);
    let disk = sim.crash();

    let io: Arc<dyn AsyncIo> = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(seed + 200)));
    let images = PageImages::open(io, &dir, DB, Some(epoch), false).unwrap();
    for pid in 1..=3 {
        assert!(
            images
                .image(epoch, RelationId(1), PageId(pid))
                .unwrap()
                .is_some(),
            "seed {seed}: page {pid}'s image after the power cut"
        );
    }
}
