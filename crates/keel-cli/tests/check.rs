//! `keel check` on a clean data directory and on deliberately damaged ones:
//! a flipped byte in a heap page, in a WAL record and in the control file;
//! and a relation file holding a tree written by hand, which `keel check`
//! walks and `keel inspect page` decodes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::path::Path;

use keel::{Config, Database, Lsn};

mod common;
use common::{keel, text};

/// A closed database with relation `t` (relation 1) of a few pages.
fn make_db(dir: &Path) {
    let db = Database::open(dir, Config::default()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..300u32 {
        tx.insert(rel, &[i as u8; 120]).unwrap();
    }
    tx.commit().unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();
}

/// A closed database whose relation 1 is tree `t` (its file is then
/// rewritten by [`write_tree`]).
fn make_tree_db(dir: &Path) {
    let db = Database::open(dir, Config::default()).unwrap();
    db.create_tree("t").unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn check(dir: &Path) -> (Option<i32>, String) {
    let out = keel(&["check", "--dir", dir.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    (out.status.code(), format!("{stdout}{}", text(&out.stderr)))
}

/// The control file's redo start (offset 24, little-endian).
fn redo_start(dir: &Path) -> u64 {
    let control = std::fs::read(dir.join("control")).unwrap();
    u64::from_le_bytes(control[24..32].try_into().unwrap())
}

#[test]
fn a_clean_database_passes() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(": 0 errors,"), "{out}");
    assert!(out.contains("2 relations"), "{out}");

    let out = keel(&["check", "--dir", tmp.path().to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["pages"].as_u64().unwrap() >= 2, "{v}");
    assert!(v["wal_records"].as_u64().unwrap() >= 2, "{v}");
}

#[test]
fn a_flipped_byte_in_a_heap_page_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    // Page 1 of relation 1, in the middle of its tuples.
    flip(&tmp.path().join("rel/1.heap"), 8192 + 6000);
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("error: rel/1.heap page 1 ") && l.contains("checksum")),
        "{out}"
    );
}

#[test]
fn a_flipped_byte_in_a_wal_record_is_named_with_its_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let lsn = redo_start(tmp.path());
    // Segment n holds LSNs n*16MiB.. at the same file offsets.
    let size = 16u64 << 20;
    let segment = tmp.path().join(format!("wal/{:016X}.wal", lsn / size));
    flip(&segment, lsn % size + 20);
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    let shown = Lsn(lsn).to_string();
    assert!(
        out.lines()
            .any(|l| l.starts_with("error: wal") && l.contains(&shown)),
        "LSN {shown}: {out}"
    );
}

#[test]
fn a_flipped_byte_in_the_control_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    flip(&tmp.path().join("control"), 20);
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("error: control: ") && l.contains("control")),
        "{out}"
    );
}

/// A control file of another database than its log's (sealed with a
/// valid checksum) is an error naming both ids, as the open refuses it.
/// A CRC-valid control file whose redo start points inside the checkpoint
/// begin record, or whose checkpoint end names the begin record: `keel
/// check` names the disagreement, as the open refuses it.
#[test]
fn a_control_file_that_disagrees_with_its_checkpoint_record_is_an_error() {
    for (what, field, delta) in [("redo start", 24usize, 8u64), ("checkpoint end", 32, 0)] {
        let tmp = tempfile::tempdir().unwrap();
        make_db(tmp.path());
        let path = tmp.path().join("control");
        let mut control = std::fs::read(&path).unwrap();
        // Moved 8 bytes into the begin record, or to the begin record.
        let value = redo_start(tmp.path()) + delta;
        control[field..field + 8].copy_from_slice(&value.to_le_bytes());
        control[8..12].fill(0);
        let crc = keel::checksum::crc32c(&control);
        control[8..12].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, control).unwrap();
        let (code, out) = check(tmp.path());
        assert_eq!(code, Some(1), "{what}: {out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("error: control: ")
                    && l.contains("does not belong to this log")),
            "{what}: {out}"
        );
        let e = Database::open(tmp.path(), Config::default()).unwrap_err();
        assert!(
            e.to_string().contains("does not belong to this log"),
            "{what}: {e}"
        );
    }
}

#[test]
fn a_control_file_of_another_database_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let path = tmp.path().join("control");
    let mut control = std::fs::read(&path).unwrap();
    // database_id at offset 16; the CRC32C at offset 8 covers all 64
    // bytes with itself read as zero (docs/storage.md, "Control file").
    control[16..24].copy_from_slice(&0x4d2u64.to_le_bytes());
    control[8..12].fill(0);
    let crc = keel::checksum::crc32c(&control);
    control[8..12].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, control).unwrap();
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with(
            "error: control: the control file belongs to database 0x4d2, the log in wal/ to 0x"
        )),
        "{out}"
    );
    let e = Database::open(tmp.path(), Config::default()).unwrap_err();
    assert!(e.to_string().contains("belongs to database 0x4d2"), "{e}");
}

#[test]
fn an_open_database_or_a_missing_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let db = Database::open(tmp.path(), Config::default()).unwrap();
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with("keel: error: ") && out.contains("is open"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    db.close().unwrap();

    let (code, out) = check(&tmp.path().join("nothing"));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not a Keel data directory"), "{out}");
    let out = keel(&["check"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A directory a running `keel standby` follows (it holds the lock on its
/// marker file) is refused: the standby changes its pages while check
/// would read them. Once the lock is gone, check runs.
#[test]
fn a_directory_a_running_standby_follows_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let marker = std::fs::File::create(tmp.path().join("standby")).unwrap();
    marker.lock().unwrap();
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("keel standby"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    drop(marker);
    let (code, out) = check(tmp.path());
    assert!(!out.contains("keel standby"), "{code:?} {out}");
}

/// A crash state that recovers perfectly (relations created and dropped
/// since the last checkpoint, the process gone without closing) is not
/// corruption: check says recovery is pending and exits 0.
#[test]
fn a_crash_state_that_recovery_repairs_is_recovery_pending_not_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let db = Database::open(tmp.path(), Config::default()).unwrap();
    let kept = db.create_relation("kept").unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(kept, b"row").unwrap();
    tx.commit().unwrap();
    db.create_relation("dropped").unwrap();
    db.drop_relation("dropped").unwrap();
    drop(db); // like a crash: nothing marks the shutdown clean
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("recovery is pending"), "{out}");
    assert!(
        out.contains(&format!("from LSN {}", Lsn(redo_start(tmp.path())))),
        "{out}"
    );
    let db = Database::open(tmp.path(), Config::default()).unwrap();
    assert!(db.relation("kept").unwrap().is_some());
    assert!(db.relation("dropped").unwrap().is_none());
    db.close().unwrap();
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
}

/// Every file under `dir` (path, length, contents, modification time), in
/// a stable order.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                todo.push(p);
            } else {
                out.push((
                    p.clone(),
                    std::fs::read(&p).unwrap(),
                    meta.modified().unwrap(),
                ));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The read-only tools (README, "The tool") change nothing in a directory
/// left by a crash: no file written, created or removed.
#[test]
fn read_only_tools_leave_a_crashed_directory_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let db = Database::open(tmp.path(), Config::default()).unwrap();
    let rel = db.relation("t").unwrap().unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(rel, &[9u8; 20_000]).unwrap();
    tx.commit().unwrap();
    let mut open = db.begin().unwrap();
    open.insert(rel, b"never committed").unwrap();
    std::mem::forget(open);
    drop(db); // like a crash: nothing marks the shutdown clean
    let before = snapshot(tmp.path());
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("recovery is pending"), "{out}");
    let d = tmp.path().to_str().unwrap();
    let heap = tmp.path().join("rel/1.heap");
    let h = heap.to_str().unwrap();
    for args in [
        &["check", "--dir", d][..],
        &["check", "--dir", d, "--json"],
        &["inspect", "wal", "--dir", d],
        &["inspect", "wal", "--dir", d, "--all", "--json"],
        &["inspect", "page", "--file", h, "--page", "0"],
    ] {
        let out = keel(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            snapshot(tmp.path()) == before,
            "{args:?} changed the directory"
        );
    }
}

/// A heap file shorter than its saved free space map says is an error
/// naming the file and the missing pages.
#[test]
fn a_truncated_heap_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let heap = tmp.path().join("rel/1.heap");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&heap)
        .unwrap()
        .set_len(0)
        .unwrap();
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rel/1.heap"), "{out}");
    assert!(out.contains("truncated"), "{out}");
}

/// A relation file that nothing accounts for is named.
#[test]
fn an_orphan_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    std::fs::write(tmp.path().join("rel/42.heap"), vec![0u8; 8192]).unwrap();
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rel/42.heap"), "{out}");
    assert!(out.contains("orphan"), "{out}");
}

/// `keel check` names files as the engine does: a relation file spelled
/// otherwise than Keel writes it (which open refuses) is an error naming
/// both spellings, and the open agrees.
#[test]
fn a_relation_file_name_keel_does_not_write_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let rel = tmp.path().join("rel");
    std::fs::copy(rel.join("1.heap"), rel.join("01.heap")).unwrap();
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("rel/01.heap") && out.contains("not a name Keel writes"),
        "{out}"
    );
    let e = Database::open(tmp.path(), Config::default()).unwrap_err();
    assert!(e.to_string().contains("not a name Keel writes"), "{e}");
}

/// A catalog row the engine's decoder refuses (here: a name with a control
/// character, which no create accepts) is an error of `keel check`, as it
/// is of the open.
#[test]
fn a_catalog_row_the_engine_refuses_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    // Relation 1's row is "t" (id 1 then the name) on the catalog's page 0:
    // turn the name into a control character and reseal the page.
    let path = tmp.path().join("rel").join("0.heap");
    let mut page = std::fs::read(&path).unwrap();
    let row = [1u8, 0, 0, 0, b't'];
    let at = page.windows(5).position(|w| w == row).unwrap();
    page[at + 4] = b'\n';
    keel::page::seal(&mut page[..keel::page::PAGE_SIZE]).unwrap();
    std::fs::write(&path, &page).unwrap();
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("is not a valid name"), "{out}");
    let e = Database::open(tmp.path(), Config::default()).unwrap_err();
    assert!(e.to_string().contains("is not a valid name"), "{e}");
}

/// Writes relation 1's file as a tree built by hand: root 1 over leaves 2
/// ("a", "b" below "m") and 3 (from "m"), then `extra` pages, every page
/// sealed; the relation's saved free space map is removed (it describes
/// the heap the file held before).
fn write_tree(dir: &Path, leaf_high: &[u8], extra: &[Vec<u8>]) {
    use keel::PageId;
    use keel::page::tree::{child_rest, init_meta, inline_value};
    use keel::page::{PAGE_SIZE, TreePage};
    let mut pages = vec![vec![0u8; PAGE_SIZE]; 4];
    init_meta(&mut pages[0], PageId(0), PageId(1), 1).unwrap();
    let (c2, c3) = (child_rest(PageId(2)), child_rest(PageId(3)));
    let root: [(&[u8], &[u8]); 2] = [(b"", &c2), (b"m", &c3)];
    TreePage::build(&mut pages[1][..], PageId(1), 1, 0, &root, None).unwrap();
    let (va, vm) = (inline_value(b"1"), inline_value(b"2"));
    let left: [(&[u8], &[u8]); 2] = [(b"a", &va), (b"b", &va)];
    let high = Some((leaf_high, PageId(3)));
    TreePage::build(&mut pages[2][..], PageId(2), 0, 0, &left, high).unwrap();
    let right: [(&[u8], &[u8]); 1] = [(b"m", &vm)];
    TreePage::build(&mut pages[3][..], PageId(3), 0, 0, &right, None).unwrap();
    pages.extend(extra.iter().cloned());
    let mut file = Vec::new();
    for mut p in pages {
        keel::page::seal(&mut p).unwrap();
        file.extend_from_slice(&p);
    }
    std::fs::write(dir.join("rel/1.heap"), file).unwrap();
    let _ = std::fs::remove_file(dir.join("rel/1.fsm"));
}

/// `keel check` walks a relation file that holds a tree: a consistent one
/// passes, a separator its child disagrees with is an error naming the
/// page, and a node nothing reaches is a warning.
#[test]
fn a_tree_file_is_walked_across_its_pages() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree_db(tmp.path());
    write_tree(tmp.path(), b"m", &[]);
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2 relations (1 a tree), "), "{out}");
    assert!(!out.contains("warning: rel/1.heap"), "{out}");

    // Leaf 2's high key "k" is below the root's separator "m" for leaf 3.
    write_tree(tmp.path(), b"k", &[]);
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("error: rel/1.heap page 2: high key 6b")),
        "{out}"
    );

    // A leaf at page 4 that no downlink or right link reaches.
    let mut leaked = vec![0u8; keel::page::PAGE_SIZE];
    keel::page::TreePage::build(&mut leaked[..], keel::PageId(4), 0, 0, &[], None).unwrap();
    write_tree(tmp.path(), b"m", &[leaked]);
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("warning: rel/1.heap page 4: a tree-leaf page")),
        "{out}"
    );
}

/// `keel inspect page` decodes a tree's meta page and nodes, as text and
/// as JSON.
#[test]
fn inspect_page_decodes_tree_pages() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree_db(tmp.path());
    write_tree(tmp.path(), b"m", &[]);
    let file = tmp.path().join("rel/1.heap");
    let f = file.to_str().unwrap();
    let page = |p: &str, json: bool| {
        let mut args = vec!["inspect", "page", "--file", f, "--page", p];
        if json {
            args.push("--json");
        }
        let out = keel(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let meta = page("0", false);
    assert!(meta.contains("  root       1\n  root level 1\n"), "{meta}");
    let leaf = page("2", false);
    assert!(
        leaf.contains("  high key   6d |m|\n  right link 3\n"),
        "{leaf}"
    );
    assert!(leaf.contains("key 62 |b| inline 1 bytes: 31 |1|"), "{leaf}");
    let v: serde_json::Value = serde_json::from_str(page("1", true).trim()).unwrap();
    assert_eq!(v["node"]["level"], 1, "{v}");
    assert_eq!(v["node"]["items"][1]["key_hex"], "6d", "{v}");
    assert_eq!(v["node"]["items"][1]["child"], 3, "{v}");
    assert_eq!(v["node"]["high_key_hex"], serde_json::Value::Null, "{v}");
    let v: serde_json::Value = serde_json::from_str(page("2", true).trim()).unwrap();
    assert_eq!(v["node"]["right_link"], 3, "{v}");
    assert_eq!(v["node"]["items"][0]["value"]["kind"], "inline", "{v}");
    let v: serde_json::Value = serde_json::from_str(page("0", true).trim()).unwrap();
    assert_eq!(v["tree_meta"]["root"], 1, "{v}");
}

/// `keel stats` shows the shape of a relation whose file holds a tree.
#[test]
fn stats_shows_a_trees_shape() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree_db(tmp.path());
    write_tree(tmp.path(), b"m", &[]);
    let d = tmp.path().to_str().unwrap();
    let out = keel(&["stats", "--dir", d]);
    let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("tree: height 2, pages per level [2, 1] (leaves first), 3 items"),
        "{shown}"
    );
    let out = keel(&["stats", "--dir", d, "--json"]);
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let t = &v["relations"][0]["tree"];
    assert_eq!(t["height"], 2, "{v}");
    assert_eq!(t["problems"], 0, "{v}");
}

/// A tree made through the API, split to three levels, with deletes that
/// reclaim leaves, a bulk-loaded second tree, and a crash: `keel check`
/// walks both trees and finds nothing wrong, before and after recovery.
#[test]
fn trees_made_through_the_api_pass_check_before_and_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let key = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes();
    {
        let db = Database::open(tmp.path(), Config::default()).unwrap();
        let tree = db.create_tree("by_key").unwrap();
        for batch in 0..20u64 {
            let mut tx = db.begin().unwrap();
            for i in batch * 1000..(batch + 1) * 1000 {
                tx.put(tree, &key(i), &[i as u8; 100]).unwrap();
            }
            tx.commit().unwrap();
        }
        let mut tx = db.begin().unwrap();
        for i in 0..10_000u64 {
            tx.delete_key(tree, &key(i)).unwrap();
        }
        tx.commit().unwrap();
        let loaded = db.create_tree("loaded").unwrap();
        let mut tx = db.begin().unwrap();
        tx.bulk_load(loaded, (0..5000u32).map(|i| (i.to_be_bytes(), [1u8; 40])))
            .unwrap();
        tx.commit().unwrap();
        db.close().unwrap();
    }
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("(2 trees)"), "{out}");
    assert!(out.contains("0 errors, 0 warnings"), "{out}");
    {
        let db = Database::open(tmp.path(), Config::default()).unwrap();
        let tree = db.tree("by_key").unwrap().unwrap();
        let mut tx = db.begin().unwrap();
        for i in 20_000..25_000u64 {
            tx.put(tree, &key(i), &[3u8; 100]).unwrap();
        }
        tx.commit().unwrap();
        drop(db); // no close: the next open recovers
    }
    Database::open(tmp.path(), Config::default())
        .unwrap()
        .close()
        .unwrap();
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
}

/// A heap relation whose file holds a tree, or the other way round, is an
/// error naming the catalog row.
#[test]
fn a_relation_kind_its_file_contradicts_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    write_tree(tmp.path(), b"m", &[]);
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the catalog says heap but its file's page 0 is a tree meta page"),
        "{out}"
    );
}

/// A directory made by `keel demo --quick --seed 1` at `dir`.
fn make_demo(dir: &Path) {
    let out = keel(&[
        "demo",
        "--quick",
        "--seed",
        "1",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// The WAL segment file holding `lsn` (16 MiB segments).
fn segment_of(dir: &Path, lsn: u64) -> std::path::PathBuf {
    dir.join(format!("wal/{:016X}.wal", lsn / (16u64 << 20)))
}

/// The segment holding the checkpoint gone: the log no longer reaches the
/// checkpoint the control file names, which the open refuses, so check
/// is an error naming the segment.
#[test]
fn a_missing_segment_holding_the_checkpoint_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    make_demo(&d);
    let segment = segment_of(&d, redo_start(&d));
    std::fs::remove_file(&segment).unwrap();
    assert!(Database::open(&d, Config::default()).is_err());
    let (code, out) = check(&d);
    assert_eq!(code, Some(1), "{out}");
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert!(
        out.lines()
            .any(|l| l.starts_with("error: wal") && l.contains(name)),
        "{name}: {out}"
    );
}

/// A flipped byte in the newest segment before the redo point: the open
/// reads that segment from its start to find the log's end and refuses the
/// damage, so check reads from there too and reports it.
#[test]
fn a_flipped_byte_before_the_redo_point_in_the_newest_segment_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let lsn = redo_start(tmp.path());
    let size = 16u64 << 20;
    assert!(
        lsn % size > 20_000,
        "the redo point is past the first records"
    );
    flip(&segment_of(tmp.path(), lsn), lsn % size / 2);
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("error: wal record at LSN")),
        "{out}"
    );
    assert!(Database::open(tmp.path(), Config::default()).is_err());
}

/// After a crash, a page failing verification is a warning only when the
/// log from the redo point holds a whole image of it (or formats it), which
/// recovery writes over it; any other bad page is damage recovery cannot
/// repair: an error.
#[test]
fn after_a_crash_only_pages_the_log_rewrites_whole_are_warnings() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let db = Database::open(tmp.path(), Config::default()).unwrap();
    let kept = db.create_relation("kept").unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(kept, b"row").unwrap();
    tx.commit().unwrap();
    drop(db); // like a crash: nothing marks the shutdown clean

    // Relation 2's page 0 is formatted by the log after the redo point:
    // garbage there is a torn page recovery repairs.
    let kept_file = tmp.path().join("rel/2.heap");
    let mut bytes = std::fs::read(&kept_file).unwrap_or_default();
    bytes.resize(bytes.len().max(8192), 0);
    bytes[..8192].fill(0x5a);
    std::fs::write(&kept_file, &bytes).unwrap();
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("warning: rel/2.heap page 0 ") && l.contains("recovery")),
        "{out}"
    );

    // Relation 1's page 1 changed before the checkpoint: nothing in the
    // log rewrites it.
    flip(&tmp.path().join("rel/1.heap"), 8192 + 6000);
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("error: rel/1.heap page 1 ") && l.contains("checksum")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("warning: rel/2.heap page 0 ")),
        "{out}"
    );
}

/// Runs the built `keel` with `args`, killed if it runs past 20 seconds
/// (a hang is a failure, not a stuck test run).
fn keel_within(args: &[&str]) -> (Option<i32>, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("{args:?} hung: {}", text(&out.stdout));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
    (out.status.code(), shown)
}

/// A FIFO or a directory with a relation file's name is refused by name,
/// never opened (opening a FIFO blocks until a writer comes).
#[test]
fn a_fifo_or_a_directory_named_as_a_relation_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let fifo = tmp.path().join("rel/7.heap");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::create_dir(tmp.path().join("rel/5.heap")).unwrap();
    let d = tmp.path().to_str().unwrap();
    let (code, out) = keel_within(&["check", "--dir", d]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("error: rel/7.heap: ") && l.contains("a FIFO")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("error: rel/5.heap: ") && l.contains("a directory")),
        "{out}"
    );

    let f = fifo.to_str().unwrap();
    let (code, out) = keel_within(&["inspect", "page", "--file", f, "--page", "0"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with("keel: error: ") && out.contains("7.heap is a FIFO"),
        "{out}"
    );
}

/// A relation's page counts in `keel stats --json` add up to its pages.
fn assert_page_counts_add_up(r: &serde_json::Value) {
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert_eq!(
        n("heap_pages")
            + n("tree_pages")
            + n("overflow_pages")
            + n("free_pages")
            + n("invalid_pages"),
        n("pages"),
        "{r}"
    );
}

/// `keel stats` reports what a known workload wrote: live tuples and
/// their bytes, overflow pages, a tree's items, height and pages per
/// level (against its meta page), and page counts that add up.
#[test]
fn stats_counts_a_known_workload() {
    use keel::page::overflow::pages_needed;
    let tmp = tempfile::tempdir().unwrap();
    {
        let db = Database::open(tmp.path(), Config::default()).unwrap();
        let rows = db.create_relation("rows").unwrap();
        let keys = db.create_tree("keys").unwrap();
        let mut tx = db.begin().unwrap();
        let mut tids = Vec::new();
        for i in 0..500u32 {
            tids.push(tx.insert(rows, &[i as u8; 100]).unwrap());
        }
        tx.insert(rows, &[1u8; 20_000]).unwrap();
        tx.insert(rows, &[2u8; 20_000]).unwrap();
        for i in 0..3000u32 {
            tx.put(keys, &u64::from(i).to_be_bytes(), &[3u8; 40])
                .unwrap();
        }
        tx.put(keys, b"big", &[4u8; 10_000]).unwrap();
        tx.commit().unwrap();
        let mut tx = db.begin().unwrap();
        for tid in tids.iter().step_by(10) {
            tx.delete(rows, *tid).unwrap();
        }
        tx.commit().unwrap();
        db.close().unwrap();
    }
    let out = keel(&["stats", "--dir", tmp.path().to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let rel = |name: &str| {
        v["relations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    let rows = rel("rows");
    assert_eq!(rows["live_tuples"], 452, "{rows}");
    let head = keel::page::OverflowHead::SIZE as u64;
    assert_eq!(rows["tuple_bytes"], 450 * 100 + 2 * head, "{rows}");
    assert_eq!(
        rows["overflow_pages"],
        2 * pages_needed(20_000) as u64,
        "{rows}"
    );
    assert_eq!(rows["tree_pages"], 0, "{rows}");
    assert_eq!(rows["invalid_pages"], 0, "{rows}");
    assert_page_counts_add_up(&rows);

    let keys = rel("keys");
    assert_page_counts_add_up(&keys);
    assert_eq!(keys["heap_pages"], 0, "{keys}");
    assert_eq!(
        keys["overflow_pages"],
        pages_needed(10_000) as u64,
        "{keys}"
    );
    let tree = &keys["tree"];
    assert_eq!(tree["leaf_items"], 3001, "{keys}");
    assert_eq!(tree["problems"], 0, "{keys}");
    let per_level: Vec<u64> = tree["pages_per_level"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    // Every node is reached, plus the meta page.
    assert_eq!(
        per_level.iter().sum::<u64>() + 1,
        keys["tree_pages"].as_u64().unwrap(),
        "{keys}"
    );
    assert_eq!(per_level.last(), Some(&1), "one root: {keys}");
    // The height is the meta page's root level plus one.
    let file = std::fs::read(tmp.path().join("rel/2.heap")).unwrap();
    let (_, root_level) =
        keel::page::tree::read_meta(&file[..keel::page::PAGE_SIZE], keel::PageId(0)).unwrap();
    assert_eq!(tree["height"], u64::from(root_level) + 1, "{keys}");
    assert_eq!(per_level.len(), usize::from(root_level) + 1, "{keys}");
    let fill = tree["leaf_fill"].as_f64().unwrap();
    assert!(fill > 0.0 && fill <= 1.0, "{keys}");
    // keel check finds nothing wrong in the same directory (its overflow
    // chains, in a heap and in a tree, included).
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(": 0 errors, 0 warnings"), "{out}");
}

/// Changes page `p` of the page file at `path` with `edit`, then seals it
/// (a valid checksum over the changed bytes: what the structure checks
/// see, not a checksum failure).
fn edit_page(path: &Path, p: u32, edit: impl FnOnce(&mut [u8])) {
    use keel::page::PAGE_SIZE;
    let mut bytes = std::fs::read(path).unwrap();
    let page = &mut bytes[p as usize * PAGE_SIZE..][..PAGE_SIZE];
    edit(page);
    keel::page::seal(page).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A page whose type byte was changed (and the page sealed again) is
/// reported when the new type does not belong in a relation file, or
/// when it claims to be free while holding bytes; `keel stats` counts it
/// invalid, and its page counts add up to the file's.
#[test]
fn a_page_whose_type_does_not_belong_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let heap = tmp.path().join("rel/1.heap");
    let original = std::fs::read(&heap).unwrap();
    // Page type byte at offset 6: 3 is a free space map page, 0 a free page.
    for (type_byte, needle) in [
        (3u8, "a fsm page, which no relation file holds"),
        (0u8, "a free page with byte "),
    ] {
        std::fs::write(&heap, &original).unwrap();
        edit_page(&heap, 1, |b| b[6] = type_byte);
        let (code, out) = check(tmp.path());
        assert_eq!(code, Some(1), "type {type_byte}: {out}");
        assert!(
            out.lines().any(
                |l| l.starts_with("error: rel/1.heap page 1 (offset 8192): ") && l.contains(needle)
            ),
            "type {type_byte}: {out}"
        );
    }

    // The FSM-typed page, as `keel stats` counts it (stats opens a copy).
    std::fs::write(&heap, &original).unwrap();
    edit_page(&heap, 1, |b| b[6] = 3);
    let out = keel(&["stats", "--dir", tmp.path().to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let t = v["relations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "t")
        .unwrap();
    assert_eq!(t["invalid_pages"], 1, "{t}");
    assert_page_counts_add_up(t);
}

/// A page whose LSN is at or past the end of the log carries changes the
/// log lost (invariant 4): an error naming the page and both LSNs.
#[test]
fn a_page_lsn_past_the_end_of_the_log_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    // The page LSN is at offset 16.
    edit_page(&tmp.path().join("rel/1.heap"), 2, |b| {
        b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    });
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with(
            "error: rel/1.heap page 2 (offset 16384): page LSN 100/00000000 is not before the end of the log ("
        )),
        "{out}"
    );
}

/// A closed database whose relation `t` (relation 1) holds ten rows of 50
/// bytes and one value of 20,000 bytes in an overflow chain of three pages.
fn make_chain_db(dir: &Path) {
    let db = Database::open(dir, Config::default()).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tx = db.begin().unwrap();
    for i in 0..10u8 {
        tx.insert(rel, &[i; 50]).unwrap();
    }
    tx.insert(rel, &[7u8; 20_000]).unwrap();
    tx.commit().unwrap();
    db.close().unwrap();
}

/// The pages of the page file at `path` that verify as type `t`.
fn pages_of_type(path: &Path, t: keel::page::PageType) -> Vec<u32> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .chunks(keel::page::PAGE_SIZE)
        .enumerate()
        .filter(|(p, page)| keel::page::verify(page, keel::PageId(*p as u32)).ok() == Some(t))
        .map(|(p, _)| p as u32)
        .collect()
}

/// `keel check` follows every overflow chain from its head as a read of
/// the value does: a link out of the file, a cycle or a chunk out of order
/// is an error at the slot holding the head; an overflow page no chain
/// reaches is a warning.
#[test]
fn a_broken_overflow_chain_is_named_at_its_head() {
    use keel::PageId;
    use keel::page::{OverflowPage, PageType};
    let tmp = tempfile::tempdir().unwrap();
    make_chain_db(tmp.path());
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(": 0 errors, 0 warnings"), "{out}");

    let heap = tmp.path().join("rel/1.heap");
    let chain = pages_of_type(&heap, PageType::Overflow);
    assert_eq!(chain.len(), 3, "{chain:?}");
    let original = std::fs::read(&heap).unwrap();
    let index = |p: u32| {
        let page = &original[p as usize * keel::page::PAGE_SIZE..][..keel::page::PAGE_SIZE];
        OverflowPage::open(page, PageId(p)).unwrap().chunk_index()
    };
    let first = *chain.iter().find(|&&p| index(p) == 0).unwrap();
    let second = *chain.iter().find(|&&p| index(p) == 1).unwrap();
    let head = format!("its value's overflow chain from page {first}: ");
    // Header field next_page at offset 32; an overflow page's chunk index
    // at offset 44 (docs/storage.md).
    let cases: [(u32, usize, u32, String); 3] = [
        (
            first,
            32,
            first,
            format!("it reaches page {first} twice (a cycle)"),
        ),
        (first, 32, 1000, "past the end of the file".to_owned()),
        (
            second,
            44,
            7,
            "chunk index 7 where 1 was expected".to_owned(),
        ),
    ];
    for (page, offset, value, needle) in cases {
        std::fs::write(&heap, &original).unwrap();
        edit_page(&heap, page, |b| {
            b[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        });
        let (code, out) = check(tmp.path());
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.lines().any(|l| l.starts_with("error: rel/1.heap page ")
                && l.contains(" slot ")
                && l.contains(&head)
                && l.contains(&needle)),
            "{needle}: {out}"
        );
        // Pages past a break belong to the broken value, not to no one.
        assert!(!out.contains("no value's chain reaches"), "{out}");
    }

    // A copy of the chain's last page at a new page of its own: an
    // overflow page no head reaches (leaked space, no value lost).
    std::fs::write(&heap, &original).unwrap();
    let last = *chain.iter().find(|&&p| index(p) == 2).unwrap();
    let mut bytes = original.clone();
    let extra = (bytes.len() / keel::page::PAGE_SIZE) as u32;
    let mut copy = bytes[last as usize * keel::page::PAGE_SIZE..][..keel::page::PAGE_SIZE].to_vec();
    copy[8..12].copy_from_slice(&extra.to_le_bytes());
    keel::page::seal(&mut copy).unwrap();
    bytes.extend_from_slice(&copy);
    std::fs::write(&heap, bytes).unwrap();
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines().any(|l| l
            == format!(
                "warning: rel/1.heap page {extra}: an overflow page no value's chain reaches \
                 (leaked space, no value lost)"
            )),
        "{out}"
    );
}

/// `keel stats` and `keel inspect` (which open the database) refuse a
/// `LOCK` that is a FIFO instead of blocking on it, and `keel stats`
/// reports an archive status file that is a FIFO as unreadable.
#[test]
fn stats_and_inspect_never_block_on_a_fifo() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let mkfifo = |p: &Path| {
        let made = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap();
        assert!(made.success());
    };
    let d = tmp.path().to_str().unwrap();
    mkfifo(&tmp.path().join("archive-status"));
    let (code, out) = keel_within(&["stats", "--dir", d]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("archive: status unreadable: ") && l.contains("a FIFO")),
        "{out}"
    );
    std::fs::remove_file(tmp.path().join("archive-status")).unwrap();

    std::fs::remove_file(tmp.path().join("LOCK")).unwrap();
    mkfifo(&tmp.path().join("LOCK"));
    for args in [
        &["stats", "--dir", d][..],
        &["inspect", "page", "--dir", d, "--rel", "t", "--page", "0"],
        &["inspect", "fsm", "--dir", d, "--rel", "t"],
        &["checkpoint", "--dir", d],
    ] {
        let (code, out) = keel_within(args);
        assert_eq!(code, Some(1), "{args:?}: {out}");
        assert!(
            out.starts_with("keel: error: ") && out.contains("LOCK is a FIFO, not a regular file"),
            "{args:?}: {out}"
        );
    }
}

/// An empty FSM file, and one ending in a partial page, are warnings that
/// name the file (the open rebuilds the map from the heap); so is a
/// directory named as a log segment (the log does not read it; numbered
/// past the newest segment it stops the log when the log gets there).
/// Warnings only: check exits 0, as opening the database succeeds.
#[test]
fn an_empty_fsm_file_or_a_directory_named_as_a_segment_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    make_db(tmp.path());
    let fsm = tmp.path().join("rel/1.fsm");
    let pages = std::fs::read(&fsm).unwrap();
    assert!(!pages.is_empty());
    std::fs::write(&fsm, b"").unwrap();
    let wal = tmp.path().join("wal");
    let newest = std::fs::read_dir(&wal)
        .unwrap()
        .filter_map(|e| {
            keel::wal::segment::parse_segment_file_name(e.unwrap().file_name().to_str()?)
        })
        .max()
        .unwrap();
    let ahead = keel::wal::segment::segment_file_name(newest + 1);
    std::fs::create_dir(wal.join(&ahead)).unwrap();

    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("warning: rel/1.fsm: empty") && l.contains("rebuilt")),
        "{out}"
    );
    assert!(
        out.lines().any(
            |l| l.starts_with(&format!("warning: wal/{ahead}: a directory")) && l.contains("stops")
        ),
        "{out}"
    );
    assert!(out.contains(": 0 errors, 2 warnings"), "{out}");

    std::fs::write(&fsm, &pages[..pages.len() - 100]).unwrap();
    let (code, out) = check(tmp.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("warning: rel/1.fsm: ") && l.contains("partial page")),
        "{out}"
    );
    // The engine opens the directory as check says: both maps rebuilt, the
    // directory left alone.
    let db = Database::open(tmp.path(), Config::default()).unwrap();
    db.close().unwrap();
    assert!(wal.join(&ahead).is_dir());
}
