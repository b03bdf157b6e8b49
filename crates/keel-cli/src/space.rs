//! Space use read from an open database, shared by `keel demo` and
//! `keel stats`: every page of every relation, and the log's files.

use std::path::Path;

use keel::page::{PageStats, PageType, SlottedPage, verify_structure};
use keel::{Database, PageId};

use crate::Failure;

/// Space use of one relation, from every page.
#[derive(Debug, Default)]
pub struct RelSpace {
    /// Its name.
    pub name: String,
    /// Pages in its file.
    pub pages: u32,
    /// Slotted heap pages, aggregated.
    pub heap: PageStats,
    /// Overflow chain pages.
    pub overflow: u64,
    /// Free pages (released chains, awaiting reuse).
    pub free: u64,
    /// Pages that failed validation.
    pub invalid: u64,
}

/// Reads every page of every relation through the buffer pool; a page that
/// fails validation is counted, not fatal.
pub fn relations(db: &Database) -> Result<Vec<RelSpace>, Failure> {
    let mut out = Vec::new();
    for info in db.relations() {
        let mut rel = RelSpace {
            name: info.name.clone(),
            pages: info.pages,
            ..RelSpace::default()
        };
        for p in 0..info.pages {
            let id = PageId(p);
            let bytes = match db.read_page(&info.name, id) {
                Ok(b) => b,
                Err(e) if e.class() == keel::ErrorClass::Corruption => {
                    rel.invalid += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match verify_structure(&bytes, id) {
                Ok(PageType::Heap) => match SlottedPage::open(&bytes[..], id) {
                    Ok(page) => rel.heap += page.stats(),
                    Err(_) => rel.invalid += 1,
                },
                Ok(PageType::Overflow) => rel.overflow += 1,
                Ok(PageType::Free) => rel.free += 1,
                Ok(_) => {}
                Err(_) => rel.invalid += 1,
            }
        }
        out.push(rel);
    }
    Ok(out)
}

/// Segment files in the log directory and their total size on disk.
pub fn wal_files(dir: &Path) -> (usize, u64) {
    let Ok(entries) = std::fs::read_dir(keel::datadir::layout::wal_dir(dir)) else {
        return (0, 0);
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
        .fold((0, 0), |(n, b), e| {
            (n + 1, b + e.metadata().map_or(0, |m| m.len()))
        })
}
