//! The page table: `(FileId, PageId) -> frame`, split into shards so that a
//! hit takes no pool-wide lock.
//!
//! Each shard is a `parking_lot::RwLock` over a hash map, on its own cache
//! line with the shard's hit counter. A key's shard comes from bits of its
//! hash that the map itself does not use (hashbrown takes the low bits for
//! the bucket and the top seven for the tag), so keys within a shard still
//! spread over their map.
//!
//! ## The pin rule
//!
//! A pin on a mapped frame is *raised* only while holding the shard lock of
//! the frame's key (shared is enough: [`PageTable::pin_ready`]) or the
//! pool's `Meta` mutex; it may be *dropped* without any lock. A mapping is
//! changed (a frame unmapped from its page, or mapped to one) only with
//! both the `Meta` mutex and that key's shard lock held exclusive. So
//! whoever unmaps a frame checks its pin count under the shard's write
//! lock and the `Meta` mutex, where the count can only fall: a frame found
//! unpinned there stays unpinned until the mapping is gone, and a hit that
//! pinned it first is never robbed of its frame (a frame in use is never
//! evicted).
//!
//! ## Lock order
//!
//! Page latch, then the `Meta` mutex, then one shard lock. Nothing is
//! taken while a shard lock is held (it covers a map probe and a pin), and
//! only `unregister_file` holds several shard locks at once, every one of
//! them, taken in shard order.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{RwLock, RwLockWriteGuard};
use rustc_hash::{FxBuildHasher, FxHashMap as HashMap};

use super::frame::{Frame, PageKey};

/// Number of shards: enough that threads reading different pages rarely
/// meet on one lock word, few enough that the shard array (4 KiB) stays
/// in cache.
const SHARDS: usize = 64;

/// One shard: its part of the map, and the hits it served.
#[repr(align(64))]
pub(crate) struct Shard {
    map: RwLock<HashMap<PageKey, usize>>,
    /// Hits on pages of this shard (summed into `BufferStats::hits`); on the
    /// lock's cache line, which a hit has just written anyway.
    hits: AtomicU64,
}

/// What a lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The page is Ready; its frame is now pinned for the caller.
    Pinned(usize),
    /// The page is mapped to a frame still `Loading`: nothing was pinned.
    Loading,
    /// The page is not in the pool.
    Missing,
}

/// The write locks of every shard (`unregister_file`).
pub(crate) struct AllShards<'a> {
    table: &'a PageTable,
    maps: Vec<RwLockWriteGuard<'a, HashMap<PageKey, usize>>>,
}

impl AllShards<'_> {
    /// Removes `key`'s mapping (Meta mutex held).
    pub(crate) fn remove(&mut self, key: &PageKey) -> Option<usize> {
        self.maps[self.table.shard_index(key)].remove(key)
    }
}

/// The sharded page table.
pub(crate) struct PageTable {
    shards: Box<[Shard]>,
    hasher: FxBuildHasher,
}

impl PageTable {
    pub(crate) fn new(frames: usize) -> PageTable {
        let per_shard = frames.div_ceil(SHARDS);
        PageTable {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    map: RwLock::new(HashMap::with_capacity_and_hasher(
                        per_shard,
                        Default::default(),
                    )),
                    hits: AtomicU64::new(0),
                })
                .collect(),
            hasher: FxBuildHasher,
        }
    }

    fn shard_index(&self, key: &PageKey) -> usize {
        // Bits 32.. of the hash: neither hashbrown's bucket bits (low) nor
        // its tag (top seven) for any map smaller than 2^25 entries.
        (self.hasher.hash_one(key) >> 32) as usize % SHARDS
    }

    fn shard(&self, key: &PageKey) -> &Shard {
        &self.shards[self.shard_index(key)]
    }

    /// The hit path: pins `key`'s frame if it is Ready (`frames[f].ready`),
    /// under the shard's read lock (the pin rule), sets its reference bit
    /// and counts a hit.
    pub(crate) fn pin_ready(&self, key: &PageKey, frames: &[Frame]) -> Lookup {
        let shard = self.shard(key);
        let map = shard.map.read();
        let Some(&frame) = map.get(key) else {
            return Lookup::Missing;
        };
        let f = &frames[frame];
        // `ready` falls only with this shard's write lock held, and rises
        // (finish_load) after the page's bytes are in place.
        if !f.ready.load(Ordering::Acquire) {
            return Lookup::Loading;
        }
        f.pins.fetch_add(1, Ordering::AcqRel);
        drop(map);
        shard.hits.fetch_add(1, Ordering::Relaxed);
        f.touch();
        Lookup::Pinned(frame)
    }

    /// The frame holding `key`, if any. Exact while the `Meta` mutex is
    /// held (mappings change only under it).
    pub(crate) fn get(&self, key: &PageKey) -> Option<usize> {
        self.shard(key).map.read().get(key).copied()
    }

    /// Whether `key` is mapped (same caveat as [`get`](Self::get)).
    pub(crate) fn contains(&self, key: &PageKey) -> bool {
        self.get(key).is_some()
    }

    /// Write lock of `key`'s shard, to change its mapping with the `Meta`
    /// mutex held.
    pub(crate) fn write(&self, key: &PageKey) -> RwLockWriteGuard<'_, HashMap<PageKey, usize>> {
        self.shard(key).map.write()
    }

    /// Every shard's write lock, in shard order (the `Meta` mutex held).
    pub(crate) fn write_all(&self) -> AllShards<'_> {
        AllShards {
            table: self,
            maps: self.shards.iter().map(|s| s.map.write()).collect(),
        }
    }

    /// Hits served so far, over all shards.
    pub(crate) fn hits(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.hits.load(Ordering::Relaxed))
            .sum()
    }
}
