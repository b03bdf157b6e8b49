//! B-link tree pages: the nodes of an ordered map (`btree/`), as layouts
//! over `&[u8]` with no I/O.
//!
//! A tree lives in one relation file. Page 0 is its *meta page*
//! ([`PageType::TreeMeta`]), which names the root and its level; every other
//! page in use is a *node*: a leaf ([`PageType::TreeLeaf`], level 0) or an
//! internal page ([`PageType::TreeInternal`], level ≥ 1).
//!
//! ```text
//!  0          40     42     44         46        48         56
//!  +----------+------+------+----------+---------+----------+---------------------+
//!  | common   |level |flags |high key  |high key |high key  | slot array ...      |
//!  | header   |      |      |offset    |length   |prefix    | offset, len, prefix |
//!  +----------+------+------+----------+---------+----------+---------------------+
//!  ... free ...  | items, growing down from the end of the page | high key |
//! ```
//!
//! - The common header's `next page` is the node's **right link**: the next
//!   node of the same level ([`NO_PAGE`] for the rightmost). `lower`,
//!   `upper`, `slots` and `frag` bound the slot array and the item area as
//!   on a heap page, so the free gap `lower..upper` is left out of page
//!   images the same way.
//! - The **high key** bounds the node from above: every key on the node is
//!   strictly below it, and the keys of its right sibling are at or above
//!   it. The rightmost node of a level has none (length and offset zero);
//!   every other node has one. The header keeps its prefix (as a slot
//!   keeps its item's, below; zero without a high key), so the move-right
//!   test of a descent reads the high key's bytes, at the far end of the
//!   page, only when a key shares those first bytes with it.
//! - The slot array is **sorted** by key (memcmp order, strictly
//!   ascending). Slot `i` is a `u16` offset and a `u16` length of item `i`
//!   and the item key's **prefix**: its first [`KEY_PREFIX_LEN`] bytes,
//!   zero-padded. A binary search compares prefixes (as big-endian
//!   integers, which orders them as memcmp orders the padded bytes) and
//!   reads an item's key only when the prefixes are equal, so a search
//!   touches the slot array and about one item instead of one item per
//!   step (item reads are cache misses scattered over the page). Padding
//!   keeps the order: two keys whose padded prefixes differ compare as
//!   their prefixes do, since a key shorter than the prefix is a prefix of
//!   any key it shares its bytes with, and so sorts first.
//! - An **item** is `u16 key length, key bytes, rest`. On a leaf the rest is
//!   a value: a kind byte ([`VALUE_INLINE`]: the value's bytes follow;
//!   [`VALUE_OVERFLOW`]: a 24-byte overflow head follows). On an internal
//!   page the rest is the child's `u32` page id, and the child holds the
//!   keys from the item's key (inclusive) up to the next item's key; the
//!   first item's key is empty and means "minus infinity" (nbtree's
//!   convention), so every key below the high key has a child.
//! - `flags` bit [`FLAG_INCOMPLETE_SPLIT`]: the node was split and its new
//!   right sibling has no downlink in the parent yet. A crash between the
//!   split and the downlink leaves it set; the next insert that meets it
//!   finishes the split (nbtree's `INCOMPLETE_SPLIT`).
//!
//! Items are packed toward the end of the page with the high key last.
//! Removing an item leaves its bytes as fragmentation (`frag`); an insert
//! that finds no contiguous room compacts the page first, deterministically
//! (items rewritten in slot order from the end of the page), so redo of the
//! same insert on the same page yields the same bytes.
//!
//! The meta page holds, after the common header, the root's `u32` page id,
//! its `u16` level and the `u16` **tree layout version**
//! ([`TREE_LAYOUT_VERSION`]): the node layout above, which changes apart
//! from the page format of every page type (`PAGE_FORMAT_VERSION`). A tree
//! whose meta page names another layout is refused as a whole, naming
//! both versions; layout 0 is the one before key prefixes (48-byte node
//! header, 4-byte slots), which kept zero in that field. A node in layout
//! 0 met on its own (by recovery's redo, before the meta page is read) is
//! refused by [`TreePage::open`] with the same words.

use super::PageError;
use super::header::{
    NO_PAGE, PAGE_SIZE, PageHeader, PageType, check_len, get_u16, get_u32, init_page, put_u16,
    put_u32, write_empty_header,
};
use crate::types::PageId;

pub mod check;

/// Bytes of a node's header: the common header and the tree fields.
pub const TREE_HEADER_SIZE: usize = 56;
/// Size of a slot array entry: item offset, item length, key prefix.
pub const TREE_SLOT_SIZE: usize = 12;
/// Bytes of a key kept in its slot (zero-padded), compared before the item.
/// Eight bytes compare as one `u64`; a longer prefix would cost slot room
/// (four items' worth of a 8 KiB leaf of 24-byte keys per 8 bytes) for
/// keys whose first 8 bytes are mostly distinct anyway.
pub const KEY_PREFIX_LEN: usize = 8;
/// Offset of the key prefix within a slot.
const SLOT_PREFIX: usize = 4;
// `prefix_of` takes the prefix as a slot's bytes 4..12.
const _: () = assert!(SLOT_PREFIX == 4 && TREE_SLOT_SIZE == SLOT_PREFIX + KEY_PREFIX_LEN);

/// `key`'s prefix as kept in a slot: its first [`KEY_PREFIX_LEN`] bytes,
/// zero-padded.
pub fn key_prefix(key: &[u8]) -> [u8; KEY_PREFIX_LEN] {
    if let Some(p) = key.first_chunk::<KEY_PREFIX_LEN>() {
        return *p;
    }
    let mut p = [0u8; KEY_PREFIX_LEN];
    let n = key.len().min(KEY_PREFIX_LEN);
    p[..n].copy_from_slice(&key[..n]);
    p
}

/// A slot's key prefix as a big-endian integer (ordered as memcmp orders
/// the padded bytes).
fn prefix_of(slot: &[u8; TREE_SLOT_SIZE]) -> u64 {
    let [_, _, _, _, a, b, c, d, e, f, g, h] = *slot;
    u64::from_be_bytes([a, b, c, d, e, f, g, h])
}

/// Longest key a tree accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest item (key length prefix, key, value kind and inline value).
/// A quarter of a node's room, so a node always holds at least three items
/// and its high key, and either half of a split has room for any item.
pub const MAX_ITEM_LEN: usize = 2000;
/// Leaf value kind: the value's bytes follow.
pub const VALUE_INLINE: u8 = 0;
/// Leaf value kind: a 24-byte overflow head follows.
pub const VALUE_OVERFLOW: u8 = 1;
/// Node flag: split, but the parent has no downlink for the right half yet.
pub const FLAG_INCOMPLETE_SPLIT: u16 = 1;
/// The node layout this build reads and writes, kept in the meta page
/// (module docs). 0: 48-byte node headers and 4-byte slots, no key
/// prefixes; 1: 8-byte key prefixes in slots and in the node header.
pub const TREE_LAYOUT_VERSION: u16 = 1;
/// Layout 0's node header size and slot size, recognised only to name the
/// layout in an error.
const LAYOUT_0_HEADER: usize = 48;
const LAYOUT_0_SLOT: usize = 4;
/// Every flag a node may carry.
const KNOWN_FLAGS: u16 = FLAG_INCOMPLETE_SPLIT;
/// Deepest tree accepted (a level above this is corruption): with at
/// least three items per node, 2^32 pages never need more.
pub const MAX_LEVEL: u16 = 32;

/// Byte offsets of the tree fields (invariant 1; mirrored in docs/storage.md).
pub mod offsets {
    /// u16 node level (0 for a leaf).
    pub const LEVEL: usize = 40;
    /// u16 node flags.
    pub const FLAGS: usize = 42;
    /// u16 offset of the high key's bytes (0: none).
    pub const HIGH_OFFSET: usize = 44;
    /// u16 length of the high key.
    pub const HIGH_LEN: usize = 46;
    /// The high key's first 8 bytes, zero-padded (zero without one).
    pub const HIGH_PREFIX: usize = 48;
    /// Meta page: u32 root page id.
    pub const META_ROOT: usize = 40;
    /// Meta page: u16 root level.
    pub const META_LEVEL: usize = 44;
    /// Meta page: u16 tree layout version.
    pub const META_LAYOUT: usize = 46;
}

fn corrupt(page_id: PageId, offset: usize, reason: impl Into<String>) -> PageError {
    PageError::Corrupted {
        page_id,
        offset,
        reason: reason.into(),
    }
}

/// Formats `buf` as page `id`, a meta page naming `root` at `level`.
pub fn init_meta(buf: &mut [u8], id: PageId, root: PageId, level: u16) -> Result<(), PageError> {
    init_page(buf, id, PageType::TreeMeta)?;
    put_u32(buf, offsets::META_ROOT, root.0);
    put_u16(buf, offsets::META_LEVEL, level);
    put_u16(buf, offsets::META_LAYOUT, TREE_LAYOUT_VERSION);
    Ok(())
}

/// Names `root` at `level` in a meta page (checked by the caller to be one).
pub fn set_root(buf: &mut [u8], root: PageId, level: u16) {
    put_u32(buf, offsets::META_ROOT, root.0);
    put_u16(buf, offsets::META_LEVEL, level);
}

/// The root and its level, read from a meta page.
pub fn read_meta(buf: &[u8], id: PageId) -> Result<(PageId, u16), PageError> {
    let h = PageHeader::read(buf, id)?;
    if h.page_type != PageType::TreeMeta {
        return Err(PageError::WrongPageType {
            page_id: id,
            expected: PageType::TreeMeta.name(),
            found: h.page_type.name(),
        });
    }
    let layout = get_u16(buf, offsets::META_LAYOUT);
    if layout != TREE_LAYOUT_VERSION {
        return Err(corrupt(id, offsets::META_LAYOUT, layout_error(layout)));
    }
    let root = get_u32(buf, offsets::META_ROOT);
    let level = get_u16(buf, offsets::META_LEVEL);
    if root == 0 || root == NO_PAGE || level > MAX_LEVEL {
        return Err(corrupt(
            id,
            offsets::META_ROOT,
            format!("meta page names root {root} at level {level}"),
        ));
    }
    Ok((PageId(root), level))
}

/// Why a tree written in node layout `layout` is refused.
fn layout_error(layout: u16) -> String {
    let what = if layout == 0 {
        "tree layout version 0 (48-byte node headers, 4-byte slots, no key prefixes)".to_string()
    } else {
        format!("tree layout version {layout}")
    };
    format!(
        "{what}, but this build of Keel reads only tree layout version {TREE_LAYOUT_VERSION} \
         (8-byte key prefixes in slots and node headers): the tree was written by another \
         Keel build; read it with that build (for example, to export its keys)"
    )
}

/// The bytes of a leaf item's value part for an inline value.
pub fn inline_value(value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + value.len());
    set_inline_value(&mut v, value);
    v
}

/// [`inline_value`] into `rest`, replacing what it held.
pub fn set_inline_value(rest: &mut Vec<u8>, value: &[u8]) {
    rest.clear();
    rest.push(VALUE_INLINE);
    rest.extend_from_slice(value);
}

/// The bytes of an internal item's rest: the child's page id.
pub fn child_rest(child: PageId) -> [u8; 4] {
    child.0.to_le_bytes()
}

/// Length of an item of `key` and `rest`.
pub fn item_len(key: &[u8], rest: &[u8]) -> usize {
    2 + key.len() + rest.len()
}

/// An item copied out of a node: its key and its rest.
pub type OwnedItem = (Vec<u8>, Vec<u8>);

/// Whether `b` passes every check of [`TreePage::open`]: a page of a
/// node's type, its slot array and item area within bounds, its level
/// matching its type, only known flags, and a high key inside the item
/// area exactly when it has a right link. Reads the header as one fixed
/// array, without a branch per field.
fn header_ok(b: &[u8]) -> bool {
    use super::header::offsets as h;
    let Some(head) = b.first_chunk::<TREE_HEADER_SIZE>() else {
        return false;
    };
    let u16_at = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]);
    let kind = head[h::PAGE_TYPE];
    let leaf = kind == PageType::TreeLeaf as u8;
    let count = usize::from(u16_at(h::SLOT_COUNT));
    let lower = usize::from(u16_at(h::LOWER));
    let upper = usize::from(u16_at(h::UPPER));
    let level = u16_at(offsets::LEVEL);
    let flags = u16_at(offsets::FLAGS);
    let right = u32::from_le_bytes([
        head[h::NEXT_PAGE],
        head[h::NEXT_PAGE + 1],
        head[h::NEXT_PAGE + 2],
        head[h::NEXT_PAGE + 3],
    ]);
    let frag = usize::from(u16_at(h::FRAG_BYTES));
    let hoff = usize::from(u16_at(offsets::HIGH_OFFSET));
    let hlen = usize::from(u16_at(offsets::HIGH_LEN));
    let high_ok = if hoff != 0 {
        right != NO_PAGE && hoff >= upper && hoff + hlen <= PAGE_SIZE && hlen <= MAX_KEY_LEN
    } else {
        right == NO_PAGE && hlen == 0
    };
    b.len() == PAGE_SIZE
        && (leaf || kind == PageType::TreeInternal as u8)
        && lower == TREE_HEADER_SIZE + TREE_SLOT_SIZE * count
        && lower <= upper
        && upper <= PAGE_SIZE
        && frag <= PAGE_SIZE - upper
        && leaf == (level == 0)
        && level <= MAX_LEVEL
        && flags & !KNOWN_FLAGS == 0
        && high_ok
}

/// A node (leaf or internal page) over its bytes.
pub struct TreePage<B> {
    buf: B,
    id: PageId,
}

impl<B: AsRef<[u8]>> TreePage<B> {
    /// Opens page `id` as a node, checking what its accessors rely on: the
    /// type, the bounds of the slot array and item area, the level, flags
    /// and high key (not every item: [`validate`](Self::validate) does
    /// that; nor the page's identity, magic, version and checksum, which
    /// [`crate::page::verify`] checks when the page is read from disk).
    ///
    /// The checks run first as one expression over the header's bytes (the
    /// path of every node a descent opens); only a page that fails them is
    /// examined again, field by field, to name what is wrong.
    pub fn open(buf: B, id: PageId) -> Result<TreePage<B>, PageError> {
        if header_ok(buf.as_ref()) {
            return Ok(TreePage { buf, id });
        }
        TreePage::open_slow(buf, id)
    }

    /// [`open`](Self::open)'s checks one by one, for the error that names
    /// the first one the page fails.
    #[cold]
    #[inline(never)]
    fn open_slow(buf: B, id: PageId) -> Result<TreePage<B>, PageError> {
        use super::header::offsets as h;
        let b = buf.as_ref();
        if b.len() != PAGE_SIZE {
            return Err(corrupt(id, 0, format!("page buffer of {} bytes", b.len())));
        }
        let kind = PageType::from_u8(b[h::PAGE_TYPE]);
        let leaf = match kind {
            Some(PageType::TreeLeaf) => true,
            Some(PageType::TreeInternal) => false,
            other => {
                return Err(PageError::WrongPageType {
                    page_id: id,
                    expected: "tree node",
                    found: other.map_or("unknown", PageType::name),
                });
            }
        };
        let count = usize::from(get_u16(b, h::SLOT_COUNT));
        let lower = usize::from(get_u16(b, h::LOWER));
        let upper = usize::from(get_u16(b, h::UPPER));
        if lower != TREE_HEADER_SIZE + TREE_SLOT_SIZE * count || lower > upper || upper > PAGE_SIZE
        {
            if lower == LAYOUT_0_HEADER + LAYOUT_0_SLOT * count
                && lower <= upper
                && upper <= PAGE_SIZE
            {
                return Err(corrupt(id, h::LOWER, layout_error(0)));
            }
            return Err(corrupt(
                id,
                h::LOWER,
                format!("node bounds lower {lower}, upper {upper} for {count} items"),
            ));
        }
        let level = get_u16(b, offsets::LEVEL);
        if leaf != (level == 0) || level > MAX_LEVEL {
            return Err(corrupt(
                id,
                offsets::LEVEL,
                format!(
                    "a tree node of level {level} typed {}",
                    if leaf { "leaf" } else { "internal" }
                ),
            ));
        }
        let flags = get_u16(b, offsets::FLAGS);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(corrupt(
                id,
                offsets::FLAGS,
                format!("unknown flags {flags:#x}"),
            ));
        }
        let frag = usize::from(get_u16(b, h::FRAG_BYTES));
        if frag > PAGE_SIZE - upper {
            return Err(corrupt(
                id,
                h::FRAG_BYTES,
                format!(
                    "{frag} fragmented bytes among {} bytes of items",
                    PAGE_SIZE - upper
                ),
            ));
        }
        let right = get_u32(b, h::NEXT_PAGE);
        let p = TreePage { buf, id };
        let (hoff, hlen) = p.high_bounds();
        let has_high = hoff != 0;
        if has_high != (right != NO_PAGE)
            || (has_high && (hoff < upper || hoff + hlen > PAGE_SIZE || hlen > MAX_KEY_LEN))
            || (!has_high && hlen != 0)
        {
            return Err(corrupt(
                id,
                offsets::HIGH_OFFSET,
                format!("high key at {hoff} of {hlen} bytes with right link {right}"),
            ));
        }
        Ok(p)
    }

    /// Page `id` as a node without repeating [`open`](Self::open)'s
    /// checks: only for bytes `open` accepted as page `id` and that cannot
    /// have changed since (the caller has held the page's latch without a
    /// break from that `open` on, or the buffer pool's frame says no
    /// exclusive latch was taken on them since an `open` accepted them).
    /// The tree's read path uses it for the leaf its descent has just
    /// opened, and for nodes a descent reads that passed the checks before.
    pub(crate) fn reopen(buf: B, id: PageId) -> TreePage<B> {
        debug_assert!(
            TreePage::open(buf.as_ref(), id).is_ok(),
            "reopen of page {id}, which open refuses"
        );
        TreePage { buf, id }
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The page id.
    pub fn page_id(&self) -> PageId {
        self.id
    }

    /// Level (0 for a leaf).
    pub fn level(&self) -> u16 {
        get_u16(self.b(), offsets::LEVEL)
    }

    /// Whether it is a leaf.
    pub fn is_leaf(&self) -> bool {
        self.level() == 0
    }

    /// Flags.
    pub fn flags(&self) -> u16 {
        get_u16(self.b(), offsets::FLAGS)
    }

    /// Whether a split of this node awaits its downlink.
    pub fn incomplete_split(&self) -> bool {
        self.flags() & FLAG_INCOMPLETE_SPLIT != 0
    }

    /// The right sibling, if any.
    pub fn right_link(&self) -> Option<PageId> {
        let n = get_u32(self.b(), super::header::offsets::NEXT_PAGE);
        (n != NO_PAGE).then_some(PageId(n))
    }

    fn high_bounds(&self) -> (usize, usize) {
        (
            usize::from(get_u16(self.b(), offsets::HIGH_OFFSET)),
            usize::from(get_u16(self.b(), offsets::HIGH_LEN)),
        )
    }

    /// The high key (`None` on the rightmost node of a level).
    pub fn high_key(&self) -> Option<&[u8]> {
        let (off, len) = self.high_bounds();
        (off != 0).then(|| &self.b()[off..off + len])
    }

    /// Whether `key` belongs on this node or to its left (below the high
    /// key); `false` means move right.
    /// Compares the header's high-key prefix first (module docs).
    pub fn covers(&self, key: &[u8]) -> bool {
        if get_u16(self.b(), offsets::HIGH_OFFSET) == 0 {
            return true;
        }
        match u64::from_be_bytes(key_prefix(key)).cmp(&self.high_prefix()) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => self.high_key().is_none_or(|h| key < h),
        }
    }

    /// The header's high-key prefix, as a big-endian integer.
    fn high_prefix(&self) -> u64 {
        let mut p = [0u8; KEY_PREFIX_LEN];
        p.copy_from_slice(&self.b()[offsets::HIGH_PREFIX..offsets::HIGH_PREFIX + KEY_PREFIX_LEN]);
        u64::from_be_bytes(p)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        usize::from(get_u16(self.b(), super::header::offsets::SLOT_COUNT))
    }

    /// Whether the node has no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, i: usize) -> (usize, usize) {
        let at = TREE_HEADER_SIZE + TREE_SLOT_SIZE * i;
        (
            usize::from(get_u16(self.b(), at)),
            usize::from(get_u16(self.b(), at + 2)),
        )
    }

    /// Slot `i`'s key prefix as a big-endian integer (ordered as memcmp
    /// orders the padded bytes). `i` is below [`len`](Self::len), and
    /// [`open`](Self::open) checked the slot array lies inside the page.
    fn slot_prefix(&self, i: usize) -> u64 {
        let at = TREE_HEADER_SIZE + TREE_SLOT_SIZE * i + SLOT_PREFIX;
        let mut p = [0u8; KEY_PREFIX_LEN];
        p.copy_from_slice(&self.b()[at..at + KEY_PREFIX_LEN]);
        u64::from_be_bytes(p)
    }

    /// The slot array, one entry per item. [`open`](Self::open) checked
    /// that it lies inside the page; bytes it did not check give an empty
    /// array rather than a panic.
    fn slots(&self) -> &[[u8; TREE_SLOT_SIZE]] {
        let end = TREE_HEADER_SIZE + TREE_SLOT_SIZE * self.len();
        self.b()
            .get(TREE_HEADER_SIZE..end)
            .map_or(&[][..], |s| s.as_chunks::<TREE_SLOT_SIZE>().0)
    }

    /// Item `i`'s bytes, bounds-checked.
    fn item_bytes(&self, i: usize) -> Result<&[u8], PageError> {
        if i >= self.len() {
            return Err(corrupt(self.id, TREE_HEADER_SIZE, format!("no item {i}")));
        }
        let (off, len) = self.slot(i);
        let upper = usize::from(get_u16(self.b(), super::header::offsets::UPPER));
        if off < upper || off + len > PAGE_SIZE || len < 2 {
            return Err(corrupt(
                self.id,
                TREE_HEADER_SIZE + TREE_SLOT_SIZE * i,
                format!("item {i} at {off} of {len} bytes"),
            ));
        }
        Ok(&self.b()[off..off + len])
    }

    /// Item `i`'s bytes split as `(key, rest)` when its slot and key length
    /// are sound (every check of [`item`](Self::item)); `None` otherwise,
    /// and `item` then names the fault.
    fn item_fast(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let s = self.slots().get(i)?;
        let off = usize::from(u16::from_le_bytes([s[0], s[1]]));
        let len = usize::from(u16::from_le_bytes([s[2], s[3]]));
        let upper = usize::from(get_u16(self.b(), super::header::offsets::UPPER));
        if off < upper {
            return None;
        }
        let bytes = self.b().get(off..off + len)?;
        let (klen, rest) = bytes.split_first_chunk::<2>()?;
        let klen = usize::from(u16::from_le_bytes(*klen));
        if klen > MAX_KEY_LEN {
            return None;
        }
        rest.split_at_checked(klen)
    }

    /// Item `i` as its key and rest.
    pub fn item(&self, i: usize) -> Result<(&[u8], &[u8]), PageError> {
        if let Some(kr) = self.item_fast(i) {
            return Ok(kr);
        }
        self.item_slow(i)
    }

    /// [`item`](Self::item)'s checks one by one, for the error.
    #[cold]
    #[inline(never)]
    fn item_slow(&self, i: usize) -> Result<(&[u8], &[u8]), PageError> {
        let bytes = self.item_bytes(i)?;
        let klen = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
        if 2 + klen > bytes.len() || klen > MAX_KEY_LEN {
            let (off, _) = self.slot(i);
            return Err(corrupt(
                self.id,
                off,
                format!("item {i}: key of {klen} bytes in {} bytes", bytes.len()),
            ));
        }
        Ok((&bytes[2..2 + klen], &bytes[2 + klen..]))
    }

    /// Item `i`'s key.
    pub fn key(&self, i: usize) -> Result<&[u8], PageError> {
        Ok(self.item(i)?.0)
    }

    /// Item `i`'s child (internal pages).
    pub fn child(&self, i: usize) -> Result<PageId, PageError> {
        if let Some((_, &[a, b, c, d])) = self.item_fast(i) {
            return Ok(PageId(u32::from_le_bytes([a, b, c, d])));
        }
        let (_, rest) = self.item(i)?;
        let bytes: [u8; 4] = rest.try_into().map_err(|_| {
            corrupt(
                self.id,
                self.slot(i).0,
                format!("internal item {i} with a {}-byte child", rest.len()),
            )
        })?;
        Ok(PageId(u32::from_le_bytes(bytes)))
    }

    /// Binary search: `Ok(i)` when item `i` has `key`, `Err(i)` where it
    /// would be inserted.
    /// Searches the slot prefixes first (module docs), without a branch per
    /// step, for the first slot whose prefix is at or above `key`'s; only
    /// the slots whose prefix equals `key`'s (usually none or one) are
    /// compared by their items' keys.
    pub fn search(&self, key: &[u8]) -> Result<Result<usize, usize>, PageError> {
        let want = u64::from_be_bytes(key_prefix(key));
        let slots = self.slots();
        let first = slots.partition_point(|s| prefix_of(s) < want);
        let (mut lo, mut hi) = match slots.get(first..) {
            Some([s, rest @ ..]) if prefix_of(s) == want => {
                let ties = match rest.first() {
                    Some(n) if prefix_of(n) == want => {
                        1 + rest.partition_point(|s| prefix_of(s) == want)
                    }
                    _ => 1,
                };
                (first, first + ties)
            }
            _ => return Ok(Err(first)),
        };
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid)?.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }

    /// On an internal page: the item whose child holds `key` (the last item
    /// whose key is at most `key`; item 0 is minus infinity).
    pub fn child_for(&self, key: &[u8]) -> Result<(usize, PageId), PageError> {
        if self.is_empty() {
            return Err(corrupt(
                self.id,
                TREE_HEADER_SIZE,
                "internal page with no item",
            ));
        }
        let i = match self.search(key)? {
            Ok(i) => i,
            Err(0) => 0,
            Err(i) => i - 1,
        };
        Ok((i, self.child(i)?))
    }

    /// The index of the item pointing at `child`, if any (internal pages).
    pub fn find_child(&self, child: PageId) -> Result<Option<usize>, PageError> {
        for i in 0..self.len() {
            if self.child(i)? == child {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Contiguous free bytes (between the slot array and the items).
    pub fn contiguous_free(&self) -> usize {
        let lower = usize::from(get_u16(self.b(), super::header::offsets::LOWER));
        let upper = usize::from(get_u16(self.b(), super::header::offsets::UPPER));
        upper - lower
    }

    /// Free bytes after a compaction.
    pub fn total_free(&self) -> usize {
        self.contiguous_free() + usize::from(get_u16(self.b(), super::header::offsets::FRAG_BYTES))
    }

    /// Whether an item of `len` bytes fits (after compaction if need be).
    pub fn fits(&self, len: usize) -> bool {
        self.total_free() >= len + TREE_SLOT_SIZE
    }

    /// Checks every item: bounds, no overlap, keys strictly ascending and
    /// below the high key, the accounting of free bytes, internal items'
    /// children, leaf values' kinds, and the first internal item's empty
    /// key (minus infinity: every internal page has it).
    pub fn validate(&self) -> Result<(), PageError> {
        let upper = usize::from(get_u16(self.b(), super::header::offsets::UPPER));
        let frag = usize::from(get_u16(self.b(), super::header::offsets::FRAG_BYTES));
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(self.len() + 1);
        let (hoff, hlen) = self.high_bounds();
        if hoff != 0 {
            spans.push((hoff, hlen));
        }
        let high_prefix = self.high_key().map_or([0; KEY_PREFIX_LEN], key_prefix);
        if self.high_prefix() != u64::from_be_bytes(high_prefix) {
            return Err(corrupt(
                self.id,
                offsets::HIGH_PREFIX,
                "the high-key prefix is not the high key's first bytes",
            ));
        }
        let mut prev: Option<&[u8]> = None;
        for i in 0..self.len() {
            let (key, rest) = self.item(i)?;
            let (off, len) = self.slot(i);
            spans.push((off, len));
            let at = TREE_HEADER_SIZE + TREE_SLOT_SIZE * i;
            if prev.is_some_and(|p| p >= key) {
                return Err(corrupt(
                    self.id,
                    at,
                    format!("item {i}'s key is out of order"),
                ));
            }
            if !self.covers(key) {
                return Err(corrupt(
                    self.id,
                    at,
                    format!("item {i}'s key is not below the high key"),
                ));
            }
            if self.is_leaf() {
                let ok = match rest.first() {
                    Some(&VALUE_INLINE) => true,
                    Some(&VALUE_OVERFLOW) => rest.len() == 1 + super::OverflowHead::SIZE,
                    _ => false,
                };
                if !ok || len > MAX_ITEM_LEN.max(2 + MAX_KEY_LEN + 1 + super::OverflowHead::SIZE) {
                    return Err(corrupt(self.id, off, format!("item {i}: bad value part")));
                }
            } else {
                let child = self.child(i)?;
                if child.0 == 0 || child.0 == NO_PAGE || child == self.id {
                    return Err(corrupt(self.id, off, format!("item {i}: child {child}")));
                }
                if i == 0 && !key.is_empty() {
                    return Err(corrupt(
                        self.id,
                        off,
                        "first internal item's key is not minus infinity",
                    ));
                }
            }
            if self.slot_prefix(i) != u64::from_be_bytes(key_prefix(key)) {
                return Err(corrupt(
                    self.id,
                    at + SLOT_PREFIX,
                    format!("item {i}'s slot prefix is not its key's first bytes"),
                ));
            }
            prev = Some(key);
        }
        spans.sort_unstable();
        let mut end = upper;
        let mut used = 0;
        for &(off, len) in &spans {
            if off < end {
                return Err(corrupt(self.id, off, "items overlap"));
            }
            end = off + len;
            used += len;
        }
        if end > PAGE_SIZE || upper + used + frag != PAGE_SIZE {
            return Err(corrupt(
                self.id,
                super::header::offsets::FRAG_BYTES,
                format!("{used} item bytes and {frag} fragmented do not fill {upper}..{PAGE_SIZE}"),
            ));
        }
        Ok(())
    }

    /// Every item as owned `(key, rest)` pairs, in order.
    pub fn items(&self) -> Result<Vec<OwnedItem>, PageError> {
        (0..self.len())
            .map(|i| self.item(i).map(|(k, r)| (k.to_vec(), r.to_vec())))
            .collect()
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> TreePage<B> {
    /// Formats `buf` as node `id` at `level` holding `items` (sorted, each
    /// at most [`MAX_ITEM_LEN`] or an overflow item), bounded by `high_key`
    /// and linked to `right` (both or neither), with `flags`: the bytes of
    /// `node_image`. Fails, changing nothing, when they do not fit.
    pub fn build(
        buf: B,
        id: PageId,
        level: u16,
        flags: u16,
        items: &[(&[u8], &[u8])],
        high: Option<(&[u8], PageId)>,
    ) -> Result<TreePage<B>, PageError> {
        let image = node_image(id, level, flags, items, high)?;
        let mut buf = buf;
        check_len(buf.as_ref(), id)?;
        buf.as_mut().copy_from_slice(&image[..]);
        Ok(TreePage { buf, id })
    }

    fn bm(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }

    /// Sets the flags.
    pub fn set_flags(&mut self, flags: u16) {
        put_u16(self.bm(), offsets::FLAGS, flags);
    }

    /// Makes this node the left half of a split (a tree-split record):
    /// rebuilds it as [`build`](Self::build) builds a node (so doing and
    /// redoing yield the same bytes) with its first `keep` items (at least
    /// one, fewer than it holds), the high key `sep`, which must be the key
    /// of item `keep` (the first item given up; on an internal node too,
    /// though the right half keeps that item as minus infinity), the right
    /// link `right` and [`FLAG_INCOMPLETE_SPLIT`] added to its flags. A
    /// `keep` or `sep` the node does not match means the log and the page
    /// diverged: an error, the node unchanged.
    pub fn split_left(&mut self, keep: usize, sep: &[u8], right: PageId) -> Result<(), PageError> {
        let n = self.len();
        if keep == 0 || keep >= n || right.0 == NO_PAGE || right == self.id {
            return Err(corrupt(
                self.id,
                TREE_HEADER_SIZE,
                format!("a split keeping {keep} of {n} items, right page {right}"),
            ));
        }
        if self.key(keep)? != sep {
            return Err(corrupt(
                self.id,
                TREE_HEADER_SIZE + TREE_SLOT_SIZE * keep,
                format!("item {keep}'s key is not the split's high key"),
            ));
        }
        let (id, level, flags) = (self.id, self.level(), self.flags() | FLAG_INCOMPLETE_SPLIT);
        let mut items = Vec::with_capacity(keep);
        for i in 0..keep {
            items.push(self.item(i)?);
        }
        // Built apart from the page (the items are read from it) and
        // copied over it whole: a refusal leaves the node unchanged.
        let image = node_image(id, level, flags, &items, Some((sep, right)))?;
        self.bm().copy_from_slice(&image[..]);
        Ok(())
    }

    /// Inserts an item at index `i` (the caller found `i` with
    /// [`search`](Self::search)), compacting first if only that makes room.
    pub fn insert(&mut self, i: usize, key: &[u8], rest: &[u8]) -> Result<(), PageError> {
        let len = item_len(key, rest);
        if key.len() > MAX_KEY_LEN || i > self.len() {
            return Err(corrupt(
                self.id,
                TREE_HEADER_SIZE,
                format!(
                    "insert of a {}-byte key at item {i} of {}",
                    key.len(),
                    self.len()
                ),
            ));
        }
        let needed = len + TREE_SLOT_SIZE;
        if self.contiguous_free() < needed {
            if self.total_free() < needed {
                return Err(PageError::DoesNotFit {
                    needed,
                    contiguous: self.contiguous_free(),
                    after_compaction: self.total_free(),
                });
            }
            self.compact()?;
            // The fragmented bytes counted were not all there: only a page
            // the log or the disk gave wrong counts so (redo opens pages
            // between records without their full validation).
            if self.contiguous_free() < needed {
                return Err(corrupt(
                    self.id,
                    super::header::offsets::FRAG_BYTES,
                    format!(
                        "compaction freed {} contiguous bytes, not the {needed} its count of \
                         fragmented bytes promised",
                        self.contiguous_free()
                    ),
                ));
            }
        }
        let n = self.len();
        let lower = TREE_HEADER_SIZE + TREE_SLOT_SIZE * n;
        let upper = usize::from(get_u16(self.b(), super::header::offsets::UPPER)) - len;
        let b = self.bm();
        let at = TREE_HEADER_SIZE + TREE_SLOT_SIZE * i;
        b.copy_within(at..lower, at + TREE_SLOT_SIZE);
        put_u16(b, at, upper as u16);
        put_u16(b, at + 2, len as u16);
        b[at + SLOT_PREFIX..at + SLOT_PREFIX + KEY_PREFIX_LEN].copy_from_slice(&key_prefix(key));
        b[upper..upper + 2].copy_from_slice(&(key.len() as u16).to_le_bytes());
        b[upper + 2..upper + 2 + key.len()].copy_from_slice(key);
        b[upper + 2 + key.len()..upper + len].copy_from_slice(rest);
        put_u16(b, super::header::offsets::UPPER, upper as u16);
        put_u16(
            b,
            super::header::offsets::LOWER,
            (lower + TREE_SLOT_SIZE) as u16,
        );
        put_u16(b, super::header::offsets::SLOT_COUNT, (n + 1) as u16);
        Ok(())
    }

    /// Removes item `i`; its bytes become fragmentation.
    pub fn remove(&mut self, i: usize) -> Result<(), PageError> {
        self.item_bytes(i)?;
        let (_, len) = self.slot(i);
        let n = self.len();
        let frag = usize::from(get_u16(self.b(), super::header::offsets::FRAG_BYTES)) + len;
        let lower = TREE_HEADER_SIZE + TREE_SLOT_SIZE * n;
        let b = self.bm();
        let at = TREE_HEADER_SIZE + TREE_SLOT_SIZE * i;
        b.copy_within(at + TREE_SLOT_SIZE..lower, at);
        b[lower - TREE_SLOT_SIZE..lower].fill(0);
        put_u16(
            b,
            super::header::offsets::LOWER,
            (lower - TREE_SLOT_SIZE) as u16,
        );
        put_u16(b, super::header::offsets::SLOT_COUNT, (n - 1) as u16);
        put_u16(b, super::header::offsets::FRAG_BYTES, frag as u16);
        Ok(())
    }

    /// Rewrites the items packed at the end of the page (high key last) in
    /// slot order, zeroing the free gap: deterministic, so redo of an
    /// insert that compacts yields the same bytes.
    fn compact(&mut self) -> Result<(), PageError> {
        let items = self.items()?;
        let high = self.high_key().map(<[u8]>::to_vec);
        let right = self.right_link();
        let (level, flags) = (self.level(), self.flags());
        let id = self.id;
        let refs: Vec<(&[u8], &[u8])> = items.iter().map(|(k, r)| (&k[..], &r[..])).collect();
        let lsn = super::header::get_u64(self.b(), super::header::offsets::LSN);
        let mut image = node_image(id, level, flags, &refs, high.as_deref().zip(right))?;
        super::header::put_u64(&mut image[..], super::header::offsets::LSN, lsn);
        self.bm().copy_from_slice(&image[..]);
        Ok(())
    }
}

/// The bytes of node `id` at `level` holding `items` (sorted, each at
/// most [`MAX_ITEM_LEN`] or an overflow item), bounded by `high`'s key and
/// linked to its page (a node without `high` is the rightmost of its
/// level), with `flags`. The layout is the module docs': item `i` is
/// packed below item `i - 1` (item 0 just below the high key, which ends
/// the page), no fragmented bytes, and every byte outside the header, the
/// slot array, the items and the high key is zero (the free gap, left out
/// of page images, decodes as zeroes: a node rebuilt by redo equals the
/// one built at run time byte for byte). The page LSN and checksum are
/// zero.
///
/// The page is written in one pass, in address order, into a buffer
/// allocated for it: no byte is written twice (only the free gap is
/// zeroed). Fails when a key is longer than [`MAX_KEY_LEN`] or the items
/// and the high key do not fit.
pub(crate) fn node_image(
    id: PageId,
    level: u16,
    flags: u16,
    items: &[(&[u8], &[u8])],
    high: Option<(&[u8], PageId)>,
) -> Result<Box<[u8; PAGE_SIZE]>, PageError> {
    let high_len = high.map_or(0, |(key, _)| key.len());
    if high_len > PAGE_SIZE - TREE_HEADER_SIZE {
        return Err(corrupt(
            id,
            offsets::HIGH_LEN,
            format!("a {high_len}-byte high key"),
        ));
    }
    // Where the items end (the high key's offset) and where they start.
    let top = PAGE_SIZE - high_len;
    let mut upper = top;
    let mut lower = TREE_HEADER_SIZE;
    for (i, (key, rest)) in items.iter().enumerate() {
        if key.len() > MAX_KEY_LEN {
            return Err(corrupt(
                id,
                TREE_HEADER_SIZE,
                format!("insert of a {}-byte key at item {i} of {i}", key.len()),
            ));
        }
        let needed = item_len(key, rest) + TREE_SLOT_SIZE;
        if upper - lower < needed {
            return Err(PageError::DoesNotFit {
                needed,
                contiguous: upper - lower,
                after_compaction: upper - lower,
            });
        }
        upper -= item_len(key, rest);
        lower += TREE_SLOT_SIZE;
    }
    let kind = if level == 0 {
        PageType::TreeLeaf
    } else {
        PageType::TreeInternal
    };
    let mut head = [0u8; TREE_HEADER_SIZE];
    write_empty_header(&mut head, id, kind);
    put_u16(&mut head, offsets::LEVEL, level);
    put_u16(&mut head, offsets::FLAGS, flags);
    if let Some((key, right)) = high {
        // A high key of length zero still has a non-zero offset.
        put_u16(&mut head, offsets::HIGH_OFFSET, top as u16);
        put_u16(&mut head, offsets::HIGH_LEN, key.len() as u16);
        head[offsets::HIGH_PREFIX..offsets::HIGH_PREFIX + KEY_PREFIX_LEN]
            .copy_from_slice(&key_prefix(key));
        put_u32(&mut head, super::header::offsets::NEXT_PAGE, right.0);
    }
    put_u16(&mut head, super::header::offsets::LOWER, lower as u16);
    put_u16(&mut head, super::header::offsets::UPPER, upper as u16);
    put_u16(
        &mut head,
        super::header::offsets::SLOT_COUNT,
        items.len() as u16,
    );
    let mut out = Vec::with_capacity(PAGE_SIZE);
    out.extend_from_slice(&head);
    let mut at = top;
    for (key, rest) in items {
        let len = item_len(key, rest);
        at -= len;
        let mut slot = [0u8; TREE_SLOT_SIZE];
        put_u16(&mut slot, 0, at as u16);
        put_u16(&mut slot, 2, len as u16);
        slot[SLOT_PREFIX..].copy_from_slice(&key_prefix(key));
        out.extend_from_slice(&slot);
    }
    out.resize(upper, 0);
    for (key, rest) in items.iter().rev() {
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(rest);
    }
    if let Some((key, _)) = high {
        out.extend_from_slice(key);
    }
    match out.into_boxed_slice().try_into() {
        Ok(image) => Ok(image),
        Err(_) => unreachable!("the header, slots, gap, items and high key fill one page"),
    }
}

#[cfg(test)]
mod tests;
