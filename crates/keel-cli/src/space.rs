//! Space use read from an open database, shared by `keel demo` and
//! `keel stats`: every page of every relation, the shape of a relation
//! that holds a tree, and the log's files.

use std::path::Path;

use keel::page::tree::check::{TreeReport, check_tree};
use keel::page::{PageError, PageStats, PageType, SlottedPage, verify_structure};
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
    /// A tree's pages: its meta page and its nodes.
    pub tree_pages: u64,
    /// Overflow chain pages.
    pub overflow: u64,
    /// Free pages (released chains, awaiting reuse).
    pub free: u64,
    /// Pages that failed validation, or whose type no relation file
    /// holds (a free space map page, a file meta page, a tree meta page
    /// past page 0). Every page is counted once: `pages` is the sum of
    /// the heap, tree, overflow, free and invalid pages.
    pub invalid: u64,
    /// When its page 0 is a tree meta page: the tree's shape (and what
    /// the structural check found, which `keel check` reports).
    pub tree: Option<TreeReport>,
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
                Ok(PageType::TreeMeta) if p == 0 => {
                    rel.tree_pages += 1;
                    rel.tree = Some(TreeReport::default());
                }
                Ok(PageType::TreeInternal | PageType::TreeLeaf) => rel.tree_pages += 1,
                Ok(PageType::TreeMeta | PageType::Fsm | PageType::Meta) | Err(_) => {
                    rel.invalid += 1;
                }
            }
        }
        if rel.tree.is_some() {
            rel.tree = Some(tree_shape(db, &info.name, info.pages)?);
        }
        out.push(rel);
    }
    Ok(out)
}

/// Walks the tree in relation `name` through the buffer pool; a page that
/// fails validation is a finding of the walk, any other error fatal.
fn tree_shape(db: &Database, name: &str, pages: u32) -> Result<TreeReport, Failure> {
    let mut failed: Option<keel::Error> = None;
    let report = check_tree(pages, &mut |id| match db.read_page(name, id) {
        Ok(b) => Ok(b),
        Err(e) => {
            let reason = e.to_string();
            if e.class() != keel::ErrorClass::Corruption {
                failed.get_or_insert(e);
            }
            Err(PageError::Corrupted {
                page_id: id,
                offset: 0,
                reason,
            })
        }
    });
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(report),
    }
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
