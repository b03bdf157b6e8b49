//! A structural check of a whole tree, as PostgreSQL's amcheck does for a
//! B-tree index: what no single page can vouch for.
//!
//! [`TreePage::validate`] checks one node. This module checks how nodes fit
//! together, reading pages through a closure (a file, a buffer pool, a
//! `Vec` of pages in a test) and never writing. Starting at the meta page
//! (page 0) it walks every level from the root down, each level left to
//! right along the right links, and checks:
//!
//! 1. every page reached is a valid node ([`TreePage::open`] and
//!    [`TreePage::validate`]: keys sorted and below the high key) at the
//!    level its parent implies: the root at the meta page's level, each
//!    internal page's children one level lower;
//! 2. siblings are ordered: a right sibling's keys are at or above the left
//!    node's high key, and high keys strictly ascend along a level;
//! 3. separators agree with children: for the parent items `(k_i, c_i)`
//!    of a level, in order across the whole parent level, node `c_i`'s
//!    first key is at or above `k_i`, and the chain of right links from
//!    `c_i` ends with a node whose high key is `k_{i+1}` (the parent's high
//!    key after its last item; none after the last item of the level). The
//!    chain may pass through nodes that no parent item names only where the
//!    node to their left has [`FLAG_INCOMPLETE_SPLIT`](super::FLAG_INCOMPLETE_SPLIT)
//!    set: a split whose downlink is not in the parent yet, which the next
//!    insert finishes. Above the root's level the meta page plays the
//!    parent, with one item of minus infinity and no bound;
//! 4. the leftmost node of each level is the child of the leftmost item of
//!    the level above, and the walk ends: each page is visited at most once,
//!    so a cycle of right links or a page named twice is a finding, and no
//!    more than `pages` pages are read;
//! 5. every other page of the file is free or an overflow page. A node or
//!    any other page that nothing reaches is [`ProblemKind::Unreachable`]:
//!    a leaked page, not lost data (a crash in the middle of a split can
//!    leave one), reported apart from corruption.
//!
//! It never panics on any bytes (invariant 9): a page that does not decode
//! is a finding, and the walk of its level stops there. Overflow chains of
//! leaf values are not followed (their pages are checked as pages by
//! whoever reads the file).

use std::collections::HashMap;
use std::fmt;

use super::{MAX_LEVEL, TREE_HEADER_SIZE, TreePage, read_meta};
use crate::page::PageError;
use crate::page::header::{PAGE_SIZE, PageType, page_type};
use crate::types::PageId;

/// How a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// The tree's structure is wrong: a search may miss a key.
    Corrupt,
    /// The page could not be read or failed its own checks (the caller's
    /// read said why).
    Unreadable,
    /// A page nothing in the tree reaches: wasted space, no lost key.
    Unreachable,
}

/// One finding, naming the page it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeProblem {
    /// How it matters.
    pub kind: ProblemKind,
    /// The page it is about.
    pub page: PageId,
    /// What is wrong, with the item, key or offset where useful.
    pub what: String,
}

impl fmt::Display for TreeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "page {}: {}", self.page, self.what)
    }
}

/// What [`check_tree`] found, and the tree's shape.
#[derive(Clone, Debug, Default)]
pub struct TreeReport {
    /// Every finding, in the order found.
    pub problems: Vec<TreeProblem>,
    /// The root the meta page names.
    pub root: Option<PageId>,
    /// Nodes reached on each level (index 0: the leaves); as many entries
    /// as the tree has levels.
    pub pages_per_level: Vec<u32>,
    /// Items on the leaves reached.
    pub leaf_items: u64,
    /// Bytes of the leaves reached in use (slots, items and high keys).
    pub leaf_used_bytes: u64,
    /// Nodes reached whose split awaits its downlink.
    pub incomplete_splits: u32,
}

impl TreeReport {
    /// Levels, leaves included (0 when the meta page is unreadable).
    pub fn height(&self) -> usize {
        self.pages_per_level.len()
    }

    /// Used bytes over the room of the leaves reached (0 without leaves).
    pub fn leaf_fill(&self) -> f64 {
        let leaves = self.pages_per_level.first().copied().unwrap_or(0);
        let room = u64::from(leaves) * (PAGE_SIZE - TREE_HEADER_SIZE) as u64;
        if room == 0 {
            0.0
        } else {
            self.leaf_used_bytes as f64 / room as f64
        }
    }

    /// Whether a finding says the structure is wrong or a page unreadable
    /// (unreachable pages do not count).
    pub fn has_errors(&self) -> bool {
        self.problems
            .iter()
            .any(|p| p.kind != ProblemKind::Unreachable)
    }
}

/// One parent item as the level below sees it: the child holds keys from
/// `low` up to `high` (`None`: no bound).
struct Downlink {
    parent: PageId,
    item: usize,
    low: Vec<u8>,
    child: PageId,
    high: Option<Vec<u8>>,
}

/// What the checks across pages need of a node.
struct Node {
    id: PageId,
    incomplete_split: bool,
    high: Option<Vec<u8>>,
    /// The smallest real key (item 1 on an internal page: item 0 is minus
    /// infinity).
    first_key: Option<Vec<u8>>,
    /// An internal page's items, bounded as the level below sees them.
    downlinks: Vec<Downlink>,
}

/// Checks the tree stored in a file of `pages` pages, reading page `id`
/// with `read` (module docs). A `read` error is reported as
/// [`ProblemKind::Unreadable`] for that page.
pub fn check_tree(
    pages: u32,
    read: &mut dyn FnMut(PageId) -> Result<Vec<u8>, PageError>,
) -> TreeReport {
    let mut c = Checker {
        pages,
        read,
        visited: vec![false; pages as usize],
        report: TreeReport::default(),
    };
    c.walk();
    c.unreachable();
    c.report
}

struct Checker<'a> {
    pages: u32,
    read: &'a mut dyn FnMut(PageId) -> Result<Vec<u8>, PageError>,
    visited: Vec<bool>,
    report: TreeReport,
}

/// A key for people: hex, shortened past 32 bytes.
fn show(key: &[u8]) -> String {
    let hex: String = key.iter().take(32).map(|b| format!("{b:02x}")).collect();
    match key.len() {
        0 => "minus infinity (the empty key)".to_owned(),
        n if n > 32 => format!("{hex}... ({n} bytes)"),
        _ => hex,
    }
}

/// A bound for people: a key, or none.
fn show_bound(bound: Option<&[u8]>) -> String {
    bound.map_or_else(|| "none".to_owned(), show)
}

impl Checker<'_> {
    fn problem(&mut self, kind: ProblemKind, page: PageId, what: impl Into<String>) {
        self.report.problems.push(TreeProblem {
            kind,
            page,
            what: what.into(),
        });
    }

    fn corrupt(&mut self, page: PageId, what: impl Into<String>) {
        self.problem(ProblemKind::Corrupt, page, what);
    }

    /// Reads the meta page, then each level from the root down.
    fn walk(&mut self) {
        let meta = PageId(0);
        if self.pages == 0 {
            return self.corrupt(meta, "the file has no pages (no meta page)");
        }
        self.visited[0] = true;
        let read = (self.read)(meta).and_then(|b| read_meta(&b, meta));
        let (root, root_level) = match read {
            Ok(m) => m,
            Err(e) => return self.problem(ProblemKind::Unreadable, meta, e.to_string()),
        };
        self.report.root = Some(root);
        let levels = usize::from(root_level.min(MAX_LEVEL)) + 1;
        self.report.pages_per_level = vec![0; levels];
        let mut downlinks = vec![Downlink {
            parent: meta,
            item: 0,
            low: Vec::new(),
            child: root,
            high: None,
        }];
        let mut parents_complete = true;
        let mut level = root_level;
        while let Some(first) = downlinks.first() {
            let (chain, complete) = self.walk_level(level, first.child, first.parent);
            self.match_level(level, &downlinks, &chain, (complete, parents_complete));
            self.report.pages_per_level[usize::from(level)] = chain.len() as u32;
            if level == 0 {
                break;
            }
            downlinks = chain.into_iter().flat_map(|n| n.downlinks).collect();
            parents_complete = complete;
            level -= 1;
        }
    }

    /// Follows the right links of `level` from `leftmost` (named by page
    /// `from`); returns its nodes in order and whether the walk reached the
    /// level's rightmost node.
    fn walk_level(&mut self, level: u16, leftmost: PageId, from: PageId) -> (Vec<Node>, bool) {
        let mut chain: Vec<Node> = Vec::new();
        let mut next = Some((leftmost, from));
        while let Some((id, from)) = next {
            let Some(node) = self.visit(id, from, level) else {
                return (chain, false);
            };
            if let Some(left) = chain.last() {
                self.check_siblings(left, &node);
            }
            next = node.right.map(|r| (r, id));
            chain.push(node.node);
        }
        (chain, true)
    }

    /// Reads page `id` (named by page `from`) as a node of `level`, or
    /// reports why it is not one.
    fn visit(&mut self, id: PageId, from: PageId, level: u16) -> Option<Visited> {
        if id.0 == 0 || id.0 >= self.pages {
            let what = format!(
                "links to page {id}, outside the tree's pages 1..{}",
                self.pages
            );
            self.corrupt(from, what);
            return None;
        }
        if std::mem::replace(&mut self.visited[id.0 as usize], true) {
            let what =
                format!("links to page {id}, already reached (a cycle, or a page named twice)");
            self.corrupt(from, what);
            return None;
        }
        let bytes = match (self.read)(id) {
            Ok(b) => b,
            Err(e) => {
                self.problem(ProblemKind::Unreadable, id, e.to_string());
                return None;
            }
        };
        let node = match self.decode(&bytes, id, level) {
            Ok(n) => n,
            Err(what) => {
                self.corrupt(id, what);
                return None;
            }
        };
        if node.node.incomplete_split {
            self.report.incomplete_splits += 1;
        }
        Some(node)
    }

    /// Decodes a node of `level`, adding a leaf to the statistics.
    fn decode(&mut self, bytes: &[u8], id: PageId, level: u16) -> Result<Visited, String> {
        let page = TreePage::open(bytes, id).map_err(|e| e.to_string())?;
        page.validate().map_err(|e| e.to_string())?;
        if page.level() != level {
            return Err(format!(
                "a node of level {}, where its parent implies level {level}",
                page.level()
            ));
        }
        let high = page.high_key().map(<[u8]>::to_vec);
        let first = usize::from(!page.is_leaf());
        let first_key = page.key(first).ok().map(<[u8]>::to_vec);
        let mut downlinks = Vec::new();
        if page.is_leaf() {
            self.report.leaf_items += page.len() as u64;
            let used = PAGE_SIZE - TREE_HEADER_SIZE - page.total_free();
            self.report.leaf_used_bytes += used as u64;
        } else {
            if page.is_empty() {
                return Err("an internal page with no item".to_owned());
            }
            for i in 0..page.len() {
                let low = page.key(i).map_err(|e| e.to_string())?.to_vec();
                let child = page.child(i).map_err(|e| e.to_string())?;
                let bound = match page.key(i + 1) {
                    Ok(k) => Some(k.to_vec()),
                    Err(_) => high.clone(),
                };
                let (parent, item) = (id, i);
                downlinks.push(Downlink {
                    parent,
                    item,
                    low,
                    child,
                    high: bound,
                });
            }
        }
        let node = Node {
            id,
            incomplete_split: page.incomplete_split(),
            high,
            first_key,
            downlinks,
        };
        Ok(Visited {
            node,
            right: page.right_link(),
        })
    }

    /// Check 2: `right` follows `left` on a level.
    fn check_siblings(&mut self, left: &Node, right: &Visited) {
        let right = &right.node;
        // A node with a right link has a high key (`TreePage::open`).
        let Some(bound) = left.high.as_deref() else {
            return;
        };
        if let Some(first) = right.first_key.as_deref().filter(|k| *k < bound) {
            let what = format!(
                "first key {} is below the high key {} of its left sibling, page {}",
                show(first),
                show(bound),
                left.id
            );
            self.corrupt(right.id, what);
        }
        if let Some(high) = right.high.as_deref().filter(|h| *h <= bound) {
            let what = format!(
                "high key {} is not above the high key {} of its left sibling, page {}",
                show(high),
                show(bound),
                left.id
            );
            self.corrupt(right.id, what);
        }
    }
}

/// A node just read and where its right link leads.
struct Visited {
    node: Node,
    right: Option<PageId>,
}

impl Checker<'_> {
    /// Check 3: the parent items `downlinks` of `level`, in order, against
    /// the level's nodes `chain`. `complete`: the walk of the level reached
    /// its rightmost node; `parents_complete`: so did the walk of the level
    /// above (else `downlinks` is a prefix of the parent items).
    fn match_level(
        &mut self,
        level: u16,
        downlinks: &[Downlink],
        chain: &[Node],
        (complete, parents_complete): (bool, bool),
    ) {
        // Where each node is on the level, so a downlink out of place costs
        // one lookup, not a scan.
        let at: HashMap<PageId, usize> = chain.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        let mut pos = 0;
        for d in downlinks {
            if pos == chain.len() && !complete {
                return;
            }
            let found = at.get(&d.child).filter(|&&i| i >= pos).map(|&i| i - pos);
            let Some(skip) = found else {
                let next = chain.get(pos).map_or_else(
                    || "the level ends".to_owned(),
                    |n| format!("it is page {}", n.id),
                );
                let what = format!(
                    "item {} names child page {}, which is not the next node of level {level}: {next}",
                    d.item, d.child
                );
                self.corrupt(d.parent, what);
                continue;
            };
            if skip > 0 {
                self.no_downlink(&chain[pos], skip, level);
            }
            pos += skip;
            let child = &chain[pos];
            if let Some(first) = child.first_key.as_deref().filter(|k| *k < &d.low[..]) {
                let what = format!(
                    "first key {} is below the separator {} of its downlink, item {} of page {}",
                    show(first),
                    show(&d.low),
                    d.item,
                    d.parent
                );
                self.corrupt(child.id, what);
            }
            match self.follow_split(d, &chain[pos..]) {
                Some(used) => pos += used,
                None => return,
            }
        }
        if complete && parents_complete && pos < chain.len() {
            self.no_downlink(&chain[pos], chain.len() - pos, level);
        }
    }

    /// From the child of `d` (`chain[0]`), follows right links through
    /// nodes of pending splits to the node whose high key is `d`'s bound;
    /// returns how many nodes that took, or `None` where the walk of the
    /// level was cut short before the bound.
    fn follow_split(&mut self, d: &Downlink, chain: &[Node]) -> Option<usize> {
        for (i, n) in chain.iter().enumerate() {
            let (high, bound) = (n.high.as_deref(), d.high.as_deref());
            if high == bound {
                return Some(i + 1);
            }
            let below = match (high, bound) {
                (Some(h), Some(b)) => h < b,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !below || !n.incomplete_split {
                let pending = if below {
                    ", and it has no split pending (its right sibling lacks a downlink)"
                } else {
                    ""
                };
                let what = format!(
                    "high key {} where item {} of page {} bounds it by {}{pending}",
                    show_bound(high),
                    d.item,
                    d.parent,
                    show_bound(bound)
                );
                self.corrupt(n.id, what);
                return Some(i + 1);
            }
        }
        // A node with a high key has a right link: only a walk cut short
        // ends here.
        None
    }

    fn no_downlink(&mut self, first: &Node, count: usize, level: u16) {
        let what = format!(
            "{count} node(s) of level {level} from this one on have no downlink in level {}, \
             and no split is pending to their left",
            level + 1
        );
        self.corrupt(first.id, what);
    }

    /// Check 5: pages the walk did not reach.
    fn unreachable(&mut self) {
        for p in 1..self.pages {
            if self.visited[p as usize] {
                continue;
            }
            let id = PageId(p);
            match (self.read)(id) {
                Err(e) => self.problem(ProblemKind::Unreadable, id, e.to_string()),
                Ok(bytes) => match page_type(&bytes) {
                    Some(PageType::Free | PageType::Overflow) => {}
                    t => {
                        let what = format!(
                            "a {} page that no downlink or right link reaches: leaked space, \
                             as a crash in the middle of a split can leave (with no other \
                             finding, no key is lost)",
                            t.map_or("page of unknown type", PageType::name)
                        );
                        self.problem(ProblemKind::Unreachable, id, what);
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests;
