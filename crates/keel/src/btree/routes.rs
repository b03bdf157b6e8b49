//! Routes: an in-memory copy of a tree's upper levels, from which a get
//! starts its descent at a low level instead of at the root.
//!
//! A get's descent costs, at every level, a buffer-pool hit (a shard lock,
//! a hash probe, a pin and a latch, all writes to shared cache lines), a
//! node's header checks and a binary search. The levels above the leaves
//! change rarely (a split adds one downlink to a parent), so a tree keeps
//! [`Routes`]: the downlinks of one level `T`, in key order, each a
//! separator (the low end of the range of the node it names) and the
//! node's page id. A get searches the routes for the last separator at or
//! below its key and descends from that node of level `T` (the leaves
//! themselves when they are few enough, [`MAX_ROUTES`]), latching one page
//! at a time as any descent does ([`crate::btree`] essay).
//!
//! ## Why a stale copy is still a correct start (Lehman and Yao)
//!
//! The rule routes rest on: **a node's low end never rises and the node
//! is never freed while its routes are in use.** A split moves the upper
//! half of a node to a new right sibling: the node's range shrinks from
//! the right only, and every key leaves it rightwards, along its right
//! link. Only reclaiming a leaf (and merging the parents it empties)
//! widens a node's range leftwards or frees a node, and a bulk load and
//! its rollback free nodes; all of them run under the tree's structure
//! lock held exclusively ([`restructure`]), and they drop the routes
//! before they change anything. Routes are built and read only under the
//! structure lock held shared (every tree operation holds it), so a get
//! never meets routes built before such a change.
//!
//! So every route's separator is, for as long as the routes exist, at or
//! below the low end of its node's range, and the node is a node of level
//! `T`. The route a get takes is the last one whose separator is at or
//! below the key: that node starts at or below the key, the node that
//! covers the key is it or lies right of it, and the descent reaches it
//! by moving right past high keys, as it does past any split that
//! happened after it read a parent. A copy built while splits run (it
//! reads the nodes one at a time, at different moments) holds the same:
//! every separator in it was the low end of its node when it was read,
//! and ranges only shrink rightwards afterwards. A copy that lacks the
//! downlinks of later splits only costs moves right; once a copy has cost
//! [`Routes::stale`] moves, it is dropped. A copy whose root is no longer
//! the tree's root (the root split) is rebuilt by the next get.
//!
//! ## Lifecycle
//!
//! ```text
//!  none ──first get──▶ routes ──reclaim, bulk load, rollback (restructure)──▶ placeholder
//!                        ▲  └──────stale (Routes::stale, drop_routes)───────────▶   │
//!                        └────── the get after `wait` gets from the root ───────────┘
//! ```
//!
//! Routes are an `ArcSwapOption` in the tree's [`Relation`]: a get loads
//! them without writing any shared cache line. A get that finds none
//! builds them (reading the upper levels, one shared latch at a time) and
//! stores them for the next gets. Dropped routes leave a placeholder
//! ([`Routes::placeholder`]): the next gets descend from the root, as
//! every get did before routes, and count themselves on it, and the one
//! that reaches its `wait` builds routes again, so a tree whose routes are
//! dropped often does not pay a copy per drop.
//!
//! Writers (puts, deletes, logical undo) start from the routes as gets do
//! (`Storage::leaf_for_write`), under the same structure lock held shared,
//! and count their moves right against the copy; they latch the leaf
//! exclusively and move right under exclusive latches. A split changes
//! nothing the rule relies on (the split node's range shrinks from the
//! right, the new node is reached through its right link), so routes
//! stay valid across splits without being updated: a split of a node the
//! routes name only costs later descents a move right, and a split that
//! needs a parent above the routes' level finds it by a descent from the
//! root. The descents inside a split (to a parent, for a new root) start
//! from the root.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::Result;
use crate::heap::Relation;
use crate::page::tree::key_prefix;
use crate::storage::Storage;
use crate::types::PageId;

/// Routes a tree keeps at most: the level they name is the lowest whose
/// nodes are at most this many and whose separators take at most
/// [`MAX_ROUTE_KEY_BYTES`]. 16,384 routes of 24-byte keys take about
/// 650 KiB; a tree of a few million such keys routes straight to its
/// leaves. Routes live outside the buffer pool: each tree that gets read
/// holds at most about 16 bytes a route plus its separators.
pub(crate) const MAX_ROUTES: usize = 16_384;
/// Routes dropped per get that descends from the root before routes are
/// built again ([`Routes::placeholder`]).
const REBUILD_WAIT: usize = 16;

/// Separator bytes a tree's routes hold at most (long keys make fewer
/// routes, at a higher level, rather than more memory).
pub(crate) const MAX_ROUTE_KEY_BYTES: usize = 512 << 10;

/// The downlinks of one level of a tree (module docs).
pub(crate) struct Routes {
    /// The level of the nodes the routes name.
    level: u16,
    /// The root hint (`root << 16 | level`) the copy was made from.
    root: u64,
    /// Each separator's first 8 bytes, zero-padded, as a big-endian
    /// integer (ordered as memcmp orders the padded bytes), ascending.
    prefixes: Vec<u64>,
    /// The separators' bytes, one after another; separator `i` ends at
    /// `ends[i]` and starts where separator `i - 1` ends.
    keys: Vec<u8>,
    ends: Vec<u32>,
    /// The node each route names.
    pages: Vec<PageId>,
    /// Moves right that gets starting from these routes made at `level`;
    /// in a placeholder, the gets that found it.
    moves: AtomicU32,
    /// In a placeholder (no routes), the gets that descend from the root
    /// before one builds routes again ([`Routes::placeholder`]).
    wait: u32,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Routes({} to level {}, root hint {:#x})",
            self.pages.len(),
            self.level,
            self.root
        )
    }
}

impl Routes {
    /// Routes to the nodes of `level` in `list` (in key order, the first
    /// separator empty: minus infinity); `None` when the separators are
    /// not strictly ascending (a copy that contradicts the tree's rules is
    /// not used; the descent from the root reports what is wrong).
    fn new(level: u16, root: u64, list: RouteList) -> Option<Routes> {
        let n = list.pages.len();
        if n == 0 || !list.separator(0).is_empty() {
            return None;
        }
        if (1..n).any(|i| list.separator(i - 1) >= list.separator(i)) {
            return None;
        }
        Some(Routes {
            level,
            root,
            prefixes: (0..n)
                .map(|i| u64::from_be_bytes(key_prefix(list.separator(i))))
                .collect(),
            keys: list.keys,
            ends: list.ends,
            pages: list.pages,
            moves: AtomicU32::new(0),
            wait: 0,
        })
    }

    /// What replaces `dropped` routes (or nothing): no routes, and a count
    /// of gets to descend from the root before one builds them again, so
    /// that a tree whose routes are dropped often (a reclaim after every
    /// few commits) does not pay a copy per drop. A get from the root
    /// costs about a thousand instructions more than one from routes, a
    /// copy about sixty per route: [`REBUILD_WAIT`] routes' worth of gets.
    fn placeholder(dropped: Option<&Routes>) -> Routes {
        let routes = dropped.map_or(0, |r| {
            if r.usable() {
                r.pages.len()
            } else {
                r.wait as usize * REBUILD_WAIT
            }
        });
        Routes {
            level: 0,
            root: 0,
            prefixes: Vec::new(),
            keys: Vec::new(),
            ends: Vec::new(),
            pages: Vec::new(),
            moves: AtomicU32::new(0),
            wait: u32::try_from(routes / REBUILD_WAIT).unwrap_or(u32::MAX),
        }
    }

    /// Whether these are routes, not a placeholder.
    pub(crate) fn usable(&self) -> bool {
        !self.pages.is_empty()
    }

    /// Whether a descent may start from these routes now: they are routes,
    /// built from the root the tree's root hint `hint` names.
    pub(crate) fn serve(&self, hint: u64) -> bool {
        self.usable() && self.root == hint
    }

    /// The level of the nodes the routes name.
    pub(crate) fn level(&self) -> u16 {
        self.level
    }

    /// Separator `i`.
    fn separator(&self, i: usize) -> &[u8] {
        separator(&self.keys, &self.ends, i)
    }

    /// The node of the last route whose separator is at or below `key`.
    pub(crate) fn route(&self, key: &[u8]) -> PageId {
        let want = u64::from_be_bytes(key_prefix(key));
        // Routes up to `end` have a prefix at or below the key's.
        let end = self.prefixes.partition_point(|&p| p <= want);
        let i = match end.checked_sub(1) {
            Some(last) if self.prefixes[last] < want => last,
            _ => {
                // The routes from `tie` to `end` share the key's prefix:
                // their separators decide. Route 0 (empty) is at or below
                // every key, so some route qualifies.
                let tie = self.prefixes[..end].partition_point(|&p| p < want);
                let (mut lo, mut hi) = (tie, end);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if self.separator(mid) <= key {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo.saturating_sub(1)
            }
        };
        self.pages[i]
    }

    /// Counts `moves` moves right a get made at [`level`](Self::level)
    /// after starting from these routes; returns whether the copy is now
    /// stale enough to drop: its moves have cost about what a new copy
    /// costs (a quarter of a move per route, at least 16).
    pub(crate) fn stale(&self, moves: u32) -> bool {
        if moves == 0 {
            return false;
        }
        let total = self.moves.fetch_add(moves, Ordering::Relaxed) + moves;
        total as usize > (self.pages.len() / 4).max(16)
    }
}

/// Separator `i` of separators stored one after another in `keys`, each
/// ending at its entry of `ends`.
fn separator<'k>(keys: &'k [u8], ends: &[u32], i: usize) -> &'k [u8] {
    let start = i.checked_sub(1).map_or(0, |j| ends[j] as usize);
    &keys[start..ends[i] as usize]
}

/// Routes being copied: separators one after another, where each ends,
/// and the node each names.
#[derive(Default)]
struct RouteList {
    keys: Vec<u8>,
    ends: Vec<u32>,
    pages: Vec<PageId>,
}

impl RouteList {
    fn separator(&self, i: usize) -> &[u8] {
        separator(&self.keys, &self.ends, i)
    }

    fn push(&mut self, sep: &[u8], page: PageId) -> Option<()> {
        self.keys.extend_from_slice(sep);
        self.ends.push(u32::try_from(self.keys.len()).ok()?);
        self.pages.push(page);
        Some(())
    }
}

/// Routes as loaded from a tree: a guard that takes no reference count,
/// so loading them writes no shared cache line; empty for a tree without
/// routes.
pub(crate) type RoutesGuard = arc_swap::Guard<Option<std::sync::Arc<Routes>>>;

/// A tree's routes as one transaction last loaded them (its `TreeHold`):
/// each load compares the pointer the tree holds with the copy's, one
/// atomic load, where [`Storage::routes`] takes and settles a debt slot of
/// `arc_swap`'s. The copy is a strong reference, so its address cannot be
/// reused while it is held, and a copy the tree no longer holds is never
/// taken for the tree's: loads run under the structure lock held shared,
/// and every drop that the routes rule needs ([`restructure`]) stores under
/// it held exclusively, so a load after one sees the new pointer. The copy
/// lives as long as the transaction that loaded it, or until its next load
/// finds the tree holding another.
pub(crate) struct RoutesCache(arc_swap::Cache<RoutesOf, Option<std::sync::Arc<Routes>>>);

/// The routes slot of a tree, reached through a handle that keeps the
/// tree alive (what [`arc_swap::Cache`] reads).
struct RoutesOf(std::sync::Arc<Relation>);

impl std::ops::Deref for RoutesOf {
    type Target = arc_swap::ArcSwapOption<Routes>;

    fn deref(&self) -> &Self::Target {
        &self.0.routes
    }
}

impl RoutesCache {
    /// A cache of `rel`'s routes.
    pub(crate) fn new(rel: std::sync::Arc<Relation>) -> RoutesCache {
        RoutesCache(arc_swap::Cache::new(RoutesOf(rel)))
    }

    /// The routes `rel` (this cache's tree) holds now, when they are
    /// usable routes from its current root; `None` when the caller must
    /// go through [`Storage::routes`] (none yet, a placeholder, a root that
    /// split since the copy: what builds or counts).
    pub(crate) fn current(&mut self, rel: &Relation) -> Option<&Routes> {
        debug_assert!(
            std::ptr::eq(self.0.arc_swap(), &rel.routes),
            "a routes cache is read for its own tree only"
        );
        let hint = rel.root_hint.load(Ordering::Acquire);
        self.0.load().as_deref().filter(|r| r.serve(hint))
    }
}

/// Takes `rel`'s structure lock exclusively and drops its routes: the one
/// way to change what the routes rule (module docs) relies on.
pub(crate) fn restructure(rel: &Relation) -> parking_lot::RwLockWriteGuard<'_, ()> {
    let only = rel.structure.write();
    drop_routes(rel);
    only
}

/// Replaces `rel`'s routes by a placeholder ([`Routes::placeholder`]).
pub(crate) fn drop_routes(rel: &Relation) {
    let dropped = rel.routes.load_full();
    let placeholder = Routes::placeholder(dropped.as_deref());
    rel.routes.store(Some(std::sync::Arc::new(placeholder)));
}

impl Storage {
    /// The routes of tree `rel`, built if it has none or its root changed
    /// since; `None` for a tree that is one leaf. Call with the structure
    /// lock held shared.
    ///
    ///
    /// Returns them as `rel` holds them: a guard that takes no reference
    /// count (loading them writes no shared cache line); empty, or a
    /// placeholder ([`Routes::usable`] false), when the get must descend
    /// from the root.
    pub(crate) fn routes(&self, rel: &Relation) -> Result<RoutesGuard> {
        let hint = rel.root_hint.load(Ordering::Acquire);
        let held = rel.routes.load();
        match held.as_ref() {
            Some(r) if r.serve(hint) => return Ok(held),
            Some(r) if !r.usable() && r.moves.fetch_add(1, Ordering::Relaxed) < r.wait => {
                return Ok(held);
            }
            _ => {}
        }
        drop(held);
        let (root, level) = self.root_hint(rel)?;
        if level != 0 {
            let hint = rel.root_hint.load(Ordering::Acquire);
            let built = self.build_routes(rel, root, level, hint)?;
            rel.routes.store(built.map(std::sync::Arc::new));
        }
        Ok(rel.routes.load())
    }

    /// Copies the downlinks of the lowest level whose nodes number at most
    /// [`MAX_ROUTES`], from root `root` of `level` down, each node read
    /// under its own shared latch (module docs: a copy made while splits
    /// run is still a correct start).
    fn build_routes(
        &self,
        rel: &Relation,
        root: PageId,
        level: u16,
        hint: u64,
    ) -> Result<Option<Routes>> {
        let mut routes = RouteList::default();
        routes.push(&[], root);
        let mut at = level;
        'levels: while at > 0 {
            let mut below = RouteList::default();
            for r in 0..routes.pages.len() {
                let pid = routes.pages[r];
                let g = self.pool.fetch_read(rel.file(), pid)?;
                let p = self.node(rel, &g, pid, at)?;
                for i in 0..p.len() {
                    let child = p.child(i)?;
                    if child.0 >= rel.page_count() || child.0 == 0 {
                        return Err(super::corrupt(
                            rel,
                            pid,
                            format!("child {child} past the file"),
                        ));
                    }
                    // Item 0's key is minus infinity within the node: the
                    // low end of the node's range, its own separator.
                    let sep = if i == 0 {
                        routes.separator(r)
                    } else {
                        p.key(i)?
                    };
                    if below.push(sep, child).is_none()
                        || below.pages.len() > MAX_ROUTES
                        || below.keys.len() > MAX_ROUTE_KEY_BYTES
                    {
                        break 'levels;
                    }
                }
            }
            routes = below;
            at -= 1;
        }
        if at == level {
            return Ok(None);
        }
        Ok(Routes::new(at, hint, routes))
    }
}

#[cfg(test)]
mod tests {
    use super::{RouteList, Routes};
    use crate::types::PageId;

    fn list(seps: &[&[u8]]) -> RouteList {
        let mut l = RouteList::default();
        for (i, s) in seps.iter().enumerate() {
            l.push(s, PageId(i as u32 + 10)).unwrap();
        }
        l
    }

    fn routes(seps: &[&[u8]]) -> Routes {
        Routes::new(0, 0, list(seps)).unwrap()
    }

    /// Each key goes to the last separator at or below it, among
    /// separators whose 8-byte prefixes tie, are shorter than 8 bytes or
    /// end in zero bytes.
    #[test]
    fn a_key_routes_to_the_last_separator_at_or_below_it() {
        let mut seps: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\0".to_vec(),
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"abcdefgh".to_vec(),
            b"abcdefgh\0".to_vec(),
            b"abcdefgh5".to_vec(),
            b"abcdefgi".to_vec(),
        ];
        for n in 0..20u8 {
            seps.push([&b"user0000"[..], &[n * 3]].concat());
        }
        seps.sort();
        let refs: Vec<&[u8]> = seps.iter().map(|s| &s[..]).collect();
        let r = routes(&refs);
        let model = |key: &[u8]| {
            let i = seps.partition_point(|s| &s[..] <= key) - 1;
            PageId(i as u32 + 10)
        };
        let mut probes: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        ];
        for s in &seps {
            probes.push(s.clone());
            probes.push([&s[..], &[0]].concat());
            probes.push([&s[..], &[0xff]].concat());
            if let Some((_, shorter)) = s.split_last() {
                probes.push(shorter.to_vec());
            }
        }
        for p in probes {
            assert_eq!(r.route(&p), model(&p), "key {p:?}");
        }
    }

    #[test]
    fn routes_out_of_order_or_without_minus_infinity_are_refused() {
        assert!(Routes::new(0, 0, list(&[b"", b"b", b"a"])).is_none());
        assert!(Routes::new(0, 0, list(&[b"", b"b", b"b"])).is_none());
        assert!(Routes::new(0, 0, list(&[b"a", b"b"])).is_none());
        assert!(Routes::new(0, 0, list(&[])).is_none());
        assert!(Routes::new(0, 0, list(&[b"", b"a"])).is_some());
    }

    #[test]
    fn moves_past_a_quarter_of_the_routes_make_them_stale() {
        let seps: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut refs: Vec<&[u8]> = vec![b""];
        refs.extend(seps.iter().skip(1).map(|s| &s[..]));
        let r = routes(&refs);
        assert!(!r.stale(0));
        assert!(!r.stale(40));
        assert!(!r.stale(10));
        assert!(r.stale(1), "51 moves for 200 routes");
    }

    /// Dropped routes leave a placeholder that lets a sixteenth of their
    /// count of gets descend from the root first; dropping a placeholder
    /// keeps its wait.
    #[test]
    fn a_placeholder_waits_a_sixteenth_of_the_dropped_routes() {
        let seps: Vec<Vec<u8>> = (1..320u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut refs: Vec<&[u8]> = vec![b""];
        refs.extend(seps.iter().map(|s| &s[..]));
        let r = routes(&refs);
        let p = Routes::placeholder(Some(&r));
        assert!(r.usable() && !p.usable());
        assert_eq!(p.wait, 20);
        assert_eq!(Routes::placeholder(Some(&p)).wait, 20);
        assert_eq!(Routes::placeholder(None).wait, 0);
    }
}
