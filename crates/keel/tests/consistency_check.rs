#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Redo consistency-check mode (`Config::consistency_check`): every page
//! change is followed by a page-check record holding the page as the change
//! left it, and recovery compares the pages it rebuilds with those images.
//! - after a crash, recovery really compares pages (and they are equal);
//! - an image changed in the log (CRC re-sealed, so the record itself is
//!   valid) makes recovery fail naming the page, its relation and the byte;
//! - with the mode off, no page-check record is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel::wal::RecordType;
use keel::wal::payload::Payload;
use keel::wal::record::{RECORD_HEADER_SIZE, seal};
use keel::wal::segment::segment_file_name;
use keel::{Config, Database, DbError, Error, Lsn, RelationId, TupleId};
use keel_io::sim::{Rng, SimConfig, SimDisk, SimIo};

mod common;

/// Log segment size of [`common::small_config`].
const SEGMENT: u64 = 1 << 20;

fn config(check: bool) -> Config {
    Config {
        consistency_check: check,
        ..common::small_config(64)
    }
}

type Model = BTreeMap<TupleId, Vec<u8>>;

/// Committed inserts, growing and shrinking updates and deletes, then a
/// crash (the database is never closed). Returns the disk as the crash
/// left it, the relation and what it holds.
fn crashed(check: bool) -> (SimDisk, RelationId, Model) {
    let sim = Arc::new(SimIo::new(SimConfig::seeded(11)));
    let db = common::open_sim(&sim, config(check)).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut rng = Rng::new(5);
    let mut model = Model::new();
    for round in 0..40u8 {
        let mut tx = db.begin().unwrap();
        for _ in 0..6 {
            let len = if rng.below(10) == 0 {
                3000 + rng.below(6000) as usize
            } else {
                rng.below(300) as usize
            };
            let value = vec![round; len];
            let pick = (!model.is_empty()).then(|| {
                *model
                    .keys()
                    .nth(rng.below(model.len() as u64) as usize)
                    .unwrap()
            });
            match (rng.below(4), pick) {
                (0, Some(t)) => {
                    tx.delete(rel, t).unwrap();
                    model.remove(&t);
                }
                (1, Some(t)) => {
                    tx.update(rel, t, &value).unwrap();
                    model.insert(t, value);
                }
                _ => {
                    let t = tx.insert(rel, &value).unwrap();
                    model.insert(t, value);
                }
            }
        }
        tx.commit().unwrap();
    }
    let disk = sim.crash();
    drop(db);
    (disk, rel, model)
}

fn boot(disk: SimDisk) -> Arc<SimIo> {
    Arc::new(SimIo::from_disk(disk, SimConfig::seeded(12)))
}

fn scan(db: &Database, rel: RelationId) -> Model {
    let tx = db.begin().unwrap();
    tx.scan(rel).unwrap().map(|r| r.unwrap()).collect()
}

/// A record of the log: its LSN, its batch start, its decoded payload and
/// the page its header names.
type Record = (Lsn, Lsn, Payload, Option<(RelationId, keel::PageId)>);

/// Every record of the log.
fn records(disk: &SimDisk) -> Vec<Record> {
    common::log_records(disk)
        .into_iter()
        .map(|r| {
            let payload = Payload::decode_record(&r.header, &r.payload).unwrap();
            let page = r.header.relation.zip(r.header.page);
            (r.header.lsn, r.header.batch_start, payload, page)
        })
        .collect()
}

fn segment_path(lsn: Lsn) -> PathBuf {
    Path::new("/db/wal").join(segment_file_name(lsn.0 / SEGMENT))
}

#[test]
fn recovery_after_a_crash_compares_the_pages_it_redoes() {
    let (disk, rel, model) = crashed(true);
    let checks = records(&disk)
        .into_iter()
        .filter(|r| matches!(r.2, Payload::PageCheck { .. }))
        .count();
    assert!(checks > 100, "only {checks} page-check records logged");
    let db = common::open_sim(&boot(disk), config(true)).unwrap();
    let report = db.recovery_report();
    assert!(report.records_redone > 0, "{report:?}");
    assert!(report.consistency_checks > 0, "{report:?}");
    assert!(
        report.consistency_checks <= checks as u64,
        "{report:?} for {checks} page-check records"
    );
    assert_eq!(scan(&db, rel), model);
    db.close().unwrap();
}

#[test]
fn a_page_image_that_differs_from_redo_fails_recovery_naming_the_page() {
    let (disk, rel, _) = crashed(true);
    // Change byte 8 (the page id) of every heap page-check image of the
    // relation and re-seal each record, so the records stay valid and only
    // the comparison can notice. Payload: of (8), hole offset and length
    // (2 + 2), then the page from byte 0 (the hole starts past the header).
    const IMAGE_BYTE: usize = 8;
    let mut damaged = disk.clone();
    let mut pages = Vec::new();
    for (lsn, batch_start, payload, page) in records(&disk) {
        let Payload::PageCheck { image, .. } = &payload else {
            continue;
        };
        let Some((r, pid)) = page.filter(|(r, _)| *r == rel) else {
            continue;
        };
        assert_eq!(
            u32::from_le_bytes(image[8..12].try_into().unwrap()),
            pid.0,
            "a page-check image is the page its header names"
        );
        let path = segment_path(lsn);
        let mut bytes = damaged.file(&path).unwrap().to_vec();
        let at = (lsn.0 % SEGMENT) as usize;
        let len = RECORD_HEADER_SIZE + payload.encoded_len();
        let record = &mut bytes[at..at + len];
        record[RECORD_HEADER_SIZE + 12 + IMAGE_BYTE] ^= 0x40;
        seal(record, batch_start);
        damaged = damaged.with_file(&path, &bytes);
        pages.push((r, pid));
    }
    assert!(!pages.is_empty(), "no page-check record of relation {rel}");
    let e = common::open_sim(&boot(damaged), config(true))
        .map(drop)
        .unwrap_err();
    let Error::Db(DbError::Recovery { lsn, reason }) = &e else {
        panic!("expected a recovery error, got {e}");
    };
    assert!(
        reason.contains("consistency check")
            && reason.contains(&format!("of relation {rel}"))
            && reason.contains(&format!("first at byte {IMAGE_BYTE}")),
        "at {lsn}: {reason}"
    );
    assert!(
        pages
            .iter()
            .any(|(_, pid)| reason.contains(&format!("page {pid} "))),
        "at {lsn}: {reason}"
    );
    // The undamaged log recovers.
    common::open_sim(&boot(disk), config(true))
        .unwrap()
        .close()
        .unwrap();
}

#[test]
fn without_the_mode_no_page_check_is_logged_or_compared() {
    let (disk, rel, model) = crashed(false);
    let recs = records(&disk);
    assert!(recs.iter().any(|r| r.2.kind() == RecordType::HeapInsert));
    assert!(
        !recs.iter().any(|r| r.2.kind() == RecordType::PageCheck),
        "a page-check record logged with the mode off"
    );
    let db = common::open_sim(&boot(disk), config(false)).unwrap();
    assert_eq!(db.recovery_report().consistency_checks, 0);
    assert_eq!(scan(&db, rel), model);
    db.close().unwrap();
}
