#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Damaged data directories on the real file system: each file kind of a
//! closed database (catalog heap, user heap, FSM, control, a WAL segment)
//! truncated, removed or renamed. `Database::open` must then either refuse
//! with an error naming the file, or open with every committed row — and a
//! failed open removes nothing (the directory listing is compared before
//! and after). Also: a non-empty directory that is not a Keel database is
//! refused and left untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel::{Config, Database};

const ROWS: usize = 300;

fn config() -> Config {
    Config {
        checkpoint_interval: None,
        ..Config::default()
    }
}

fn row(name: &str, i: usize) -> Vec<u8> {
    format!("{name} row {i} {}", "x".repeat(100)).into_bytes()
}

/// A closed database with relations "a" and "b" of committed rows.
fn build(dir: &Path) {
    let db = Database::open(dir, config()).unwrap();
    for name in ["a", "b"] {
        let rel = db.create_relation(name).unwrap();
        let mut tx = db.begin().unwrap();
        for i in 0..ROWS {
            tx.insert(rel, &row(name, i)).unwrap();
        }
        tx.commit().unwrap();
    }
    db.close().unwrap();
}

/// Every file under `dir` (but LOCK) and its length.
fn listing(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
            } else if p.file_name().unwrap() != "LOCK" {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    e.metadata().unwrap().len(),
                );
            }
        }
    }
    out
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    Truncate(u64),
    Remove,
    Rename,
}

fn damage(path: &Path, how: Damage) {
    match how {
        Damage::Truncate(len) => std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len)
            .unwrap(),
        Damage::Remove => std::fs::remove_file(path).unwrap(),
        Damage::Rename => std::fs::rename(path, path.with_extension("moved")).unwrap(),
    }
}

/// The file of each kind in a built directory, relative to it.
fn targets(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut wal: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    wal.sort();
    vec![
        ("catalog heap", PathBuf::from("rel/0.heap")),
        ("user heap", PathBuf::from("rel/1.heap")),
        ("catalog fsm", PathBuf::from("rel/0.fsm")),
        ("user fsm", PathBuf::from("rel/1.fsm")),
        ("control", PathBuf::from("control")),
        (
            "newest wal segment",
            wal.last().unwrap().strip_prefix(dir).unwrap().to_path_buf(),
        ),
    ]
}

#[test]
fn damaged_files_are_refused_by_name_or_lose_nothing() {
    let mut outcomes = Vec::new();
    let damages = [
        Damage::Truncate(0),
        Damage::Truncate(4096),
        Damage::Truncate(8192),
        Damage::Remove,
        Damage::Rename,
    ];
    let probe = tempfile::tempdir().unwrap();
    build(probe.path());
    for (kind, file) in targets(probe.path()) {
        for how in damages {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("db");
            build(&dir);
            let path = dir.join(&file);
            if !path.exists() {
                continue;
            }
            damage(&path, how);
            let before = listing(&dir);
            let shown = file.display().to_string();
            match Database::open(&dir, config()) {
                Err(e) => {
                    let msg = e.to_string();
                    let named = msg.contains(&shown)
                        || msg.contains(file.file_name().unwrap().to_str().unwrap())
                        || (kind == "control" && msg.contains("control"));
                    assert!(
                        named,
                        "{kind} {how:?}: the error does not name {shown}: {msg}"
                    );
                    assert_eq!(
                        listing(&dir),
                        before,
                        "{kind} {how:?}: a failed open changed files"
                    );
                    outcomes.push(format!("{kind} {how:?}: refused: {msg}"));
                }
                Ok(db) => {
                    for name in ["a", "b"] {
                        let rel = db
                            .relation(name)
                            .unwrap()
                            .unwrap_or_else(|| panic!("{kind} {how:?}: relation {name} is gone"));
                        let tx = db.begin().unwrap();
                        let mut rows: Vec<Vec<u8>> =
                            tx.scan(rel).unwrap().map(|r| r.unwrap().1).collect();
                        rows.sort();
                        let mut want: Vec<Vec<u8>> = (0..ROWS).map(|i| row(name, i)).collect();
                        want.sort();
                        assert!(rows == want, "{kind} {how:?}: relation {name} differs");
                    }
                    let after = listing(&dir);
                    for f in before.keys() {
                        assert!(
                            after.contains_key(f) || f.extension().is_some_and(|x| x == "wal"),
                            "{kind} {how:?}: {} was removed by open",
                            f.display()
                        );
                    }
                    db.close().unwrap();
                    outcomes.push(format!("{kind} {how:?}: opened with all rows"));
                }
            }
        }
    }
    for o in &outcomes {
        eprintln!("{o}");
    }
}

#[test]
fn a_directory_that_is_not_a_keel_database_is_refused_and_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mine");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), b"my data").unwrap();
    let err = Database::open(&dir, config()).unwrap_err().to_string();
    assert!(err.contains("not a Keel data directory"), "{err}");
    assert!(err.contains("notes.txt"), "{err}");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("notes.txt")]);
    // An empty directory is a new database.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    Database::open(&empty, config()).unwrap().close().unwrap();
}

/// Invariant 9: a free space map file far longer than its relation needs
/// (here a sparse 1 TiB) is never read whole: it is a hint, so open
/// rebuilds the map from the heap pages and every row is there.
#[test]
fn an_fsm_file_longer_than_its_relation_needs_is_not_read_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    build(&dir);
    damage(&dir.join("rel/1.fsm"), Damage::Truncate(1 << 40));
    let db = Database::open(&dir, config()).unwrap();
    let rel = db.relation("a").unwrap().unwrap();
    let mut tx = db.begin().unwrap();
    assert_eq!(tx.scan(rel).unwrap().count(), ROWS);
    tx.insert(rel, &row("a", ROWS)).unwrap();
    tx.commit().unwrap();
    db.close().unwrap();
    let len = std::fs::metadata(dir.join("rel/1.fsm")).unwrap().len();
    assert!(len < 1 << 20, "the map was saved again at its size: {len}");
}

/// A heap page whose type byte was changed under a valid checksum (to an
/// FSM page, or to a free page over the rows it holds) is refused as
/// corrupt by the read that meets it, naming its page: a scan never skips
/// its rows as a page holding nothing.
#[test]
fn a_heap_page_retyped_under_a_valid_checksum_is_corrupt_not_empty() {
    use keel::page::{PAGE_SIZE, PageType, header};
    for retype in [PageType::Fsm, PageType::Free] {
        let tmp = tempfile::tempdir().unwrap();
        build(tmp.path());
        let path = tmp.path().join("rel/1.heap");
        let mut bytes = std::fs::read(&path).unwrap();
        let page = &mut bytes[PAGE_SIZE..2 * PAGE_SIZE];
        assert_eq!(header::page_type(page), Some(PageType::Heap));
        page[header::offsets::PAGE_TYPE] = retype as u8;
        header::seal(page).unwrap();
        std::fs::write(&path, &bytes).unwrap();

        let db = Database::open(tmp.path(), config()).unwrap();
        let rel = db.relation("a").unwrap().unwrap();
        let tx = db.begin().unwrap();
        let rows: keel::Result<usize> = tx.scan(rel).unwrap().try_fold(0, |n, r| r.map(|_| n + 1));
        let e = rows.expect_err("a scan over the retyped page");
        assert_eq!(e.class(), keel::ErrorClass::Corruption, "{retype:?}: {e}");
        assert!(e.to_string().contains("page 1"), "{retype:?}: {e}");
        drop(tx);
        db.close().unwrap();
    }
}

/// A heap page whose header links a next page (only overflow pages chain)
/// under a checksum sealed over it is refused as corrupt when the buffer
/// pool loads it, naming the page and the field, not scanned as a heap
/// page.
#[test]
fn a_heap_page_linking_a_next_page_is_corrupt() {
    use keel::page::{NO_PAGE, PAGE_SIZE, PageType, header};
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path());
    let path = tmp.path().join("rel/1.heap");
    let mut bytes = std::fs::read(&path).unwrap();
    let page = &mut bytes[PAGE_SIZE..2 * PAGE_SIZE];
    assert_eq!(header::page_type(page), Some(PageType::Heap));
    let next = header::offsets::NEXT_PAGE;
    assert_eq!(page[next..next + 4], NO_PAGE.to_le_bytes());
    page[next..next + 4].copy_from_slice(&2u32.to_le_bytes());
    header::seal(page).unwrap();
    std::fs::write(&path, &bytes).unwrap();

    let db = Database::open(tmp.path(), config()).unwrap();
    let rel = db.relation("a").unwrap().unwrap();
    let tx = db.begin().unwrap();
    let rows: keel::Result<usize> = tx.scan(rel).unwrap().try_fold(0, |n, r| r.map(|_| n + 1));
    let e = rows.expect_err("a scan over the page");
    assert_eq!(e.class(), keel::ErrorClass::Corruption, "{e}");
    // The error and its sources, outermost first.
    let mut shown = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        shown = format!("{shown}: {s}");
        source = s.source();
    }
    assert!(shown.contains("page 1"), "{shown}");
    assert!(
        shown.contains(&format!("offset {next}")) && shown.contains("next_page is 2"),
        "{shown}"
    );
    drop(tx);
    db.close().unwrap();
}
