#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Invariant 5 beside the log: the first change to a page after a
//! checkpoint keeps the page's image in `images.N`, not in the log, and a
//! page torn after that is rebuilt from it by recovery.

use std::path::Path;
use std::sync::Arc;

use keel::page_images::decode_entries;
use keel::wal::RecordType;
use keel_io::sim::SimIo;

mod common;

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn value(i: u32, version: u32) -> Vec<u8> {
    let mut v = format!("value-{i}-{version}-").into_bytes();
    v.resize(180, b'.');
    v
}

/// A tree of 400 keys over many leaves, checkpointed, then one key of
/// every seventh changed, each in a commit of its own, in a pool of 8
/// frames (so evictions write the changed leaves); the power is cut. The
/// log after the checkpoint holds no page image, the images files hold
/// the changed leaves' images, and a leaf torn on disk afterwards is
/// rebuilt from its image by the next open, with every acknowledged
/// commit in place.
#[test]
fn a_commit_logs_no_page_image_and_a_torn_page_is_rebuilt_from_the_images_file() {
    let sim = Arc::new(SimIo::new(common::crash_sim_config(2)));
    let db = common::open_sim(&sim, common::small_config(8)).unwrap();
    let tree = db.create_tree("t").unwrap();
    for chunk in (0..400u32).collect::<Vec<_>>().chunks(50) {
        let mut tx = db.begin().unwrap();
        for &i in chunk {
            tx.put(tree, &key(i), &value(i, 0)).unwrap();
        }
        tx.commit().unwrap();
    }
    db.checkpoint().unwrap();
    let changed: Vec<u32> = (0..400).step_by(7).collect();
    for &i in &changed {
        let mut tx = db.begin().unwrap();
        tx.put(tree, &key(i), &value(i, 1)).unwrap();
        tx.commit().unwrap();
    }
    let disk = sim.crash();
    drop(db);

    let records = common::log_records(&disk);
    let end = records
        .iter()
        .rposition(|r| r.header.kind == RecordType::CheckpointEnd)
        .unwrap();
    assert!(
        records[end..]
            .iter()
            .all(|r| r.header.kind != RecordType::PageImage),
        "the commits after the checkpoint logged no page image"
    );
    assert!(
        records[end..]
            .iter()
            .filter(|r| r.header.kind == RecordType::TreeInsert)
            .count()
            >= changed.len(),
        "each commit logged its key"
    );

    // A leaf with an image of the newest epoch, torn on disk.
    let mut imaged = Vec::new();
    for name in keel::datadir::layout::IMAGES_FILES {
        if let Some(bytes) = disk.file(&Path::new("/db").join(name)) {
            imaged.extend(decode_entries(bytes).0);
        }
    }
    let newest = imaged.iter().map(|e| e.epoch).max().expect("images kept");
    let victim = imaged
        .iter()
        .filter(|e| e.epoch == newest && e.relation == tree && e.page.0 > 1)
        .map(|e| e.page)
        .next()
        .expect("an image of a leaf changed after the checkpoint");
    let heap = format!("/db/rel/{}.heap", tree.0);
    let mut file = disk.file(Path::new(&heap)).unwrap().to_vec();
    let at = victim.0 as usize * 8192;
    file[at + 4096..at + 8192].fill(0xAB);
    let disk = disk.with_file(Path::new(&heap), &file);

    let sim = common::reboot(disk, 3);
    let db = common::open_sim(&sim, common::small_config(8)).unwrap();
    // The leaf torn here, and any the power cut tore.
    let rebuilt = db.recovery_report().pages_from_images;
    assert!(
        rebuilt >= 1,
        "page {victim} rebuilt from its image ({rebuilt})"
    );
    let tx = db.begin().unwrap();
    for i in 0..400 {
        let want = value(i, u32::from(changed.contains(&i)));
        assert_eq!(
            tx.get_key(tree, &key(i)).unwrap(),
            Some(want),
            "key {i} after page {victim} was rebuilt"
        );
    }
    drop(tx);
    db.close().unwrap();
    // A clean close keeps no image: its checkpoint made every one older
    // than the control file's epoch.
    let disk = sim.crash();
    for name in keel::datadir::layout::IMAGES_FILES {
        let len = disk
            .file(&Path::new("/db").join(name))
            .map_or(0, <[u8]>::len);
        assert_eq!(len, 0, "{name} after a clean close");
    }
}

/// A backup copies every page whole, needing no page image: a page that
/// fails its checksum in every read is damaged, and the backup fails
/// naming the file and the page instead of copying it. Every other page
/// (and every page after the damage is gone) is copied as it is on disk.
#[test]
fn a_backup_refuses_a_page_that_never_verifies() {
    let sim = Arc::new(SimIo::new(common::crash_sim_config(4)));
    let db = common::open_sim(&sim, common::small_config(16)).unwrap();
    let tree = db.create_tree("t").unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..300 {
        tx.put(tree, &key(i), &value(i, 0)).unwrap();
    }
    tx.commit().unwrap();
    db.close().unwrap();
    let disk = sim.crash();
    let heap = format!("/db/rel/{}.heap", tree.0);
    let whole = disk.file(Path::new(&heap)).unwrap().to_vec();
    let mut damaged = whole.clone();
    damaged[2 * 8192 + 100] ^= 0x10;

    let sim = common::reboot(disk.clone().with_file(Path::new(&heap), &damaged), 5);
    let db = common::open_sim(&sim, common::small_config(16)).unwrap();
    let e = db
        .backup(|_, _| Ok::<(), keel::Error>(()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("rel/{}.heap, page 2", tree.0)) && e.contains("checksum"),
        "{e}"
    );
    db.close().unwrap();

    let sim = common::reboot(disk, 6);
    let db = common::open_sim(&sim, common::small_config(16)).unwrap();
    let mut copied = None;
    db.backup(|f, bytes| {
        if f.name == format!("rel/{}.heap", tree.0) {
            copied = Some(bytes.to_vec());
        }
        Ok::<(), keel::Error>(())
    })
    .unwrap();
    let copied = copied.expect("the tree's file was copied");
    assert_eq!(copied.len(), whole.len());
    db.close().unwrap();
}
