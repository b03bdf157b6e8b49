//! The 40-byte header every Keel page starts with.
//!
//! ```text
//!  0        4      6    7    8          12         16                   24
//!  +--------+------+----+----+----------+----------+--------------------+
//!  | magic  | ver  |type|flag| page id  |  crc32c  |      page LSN      |
//!  +--------+------+----+----+----------+----------+--------------------+
//!  24     26     28      30     32          36        38        40
//!  +------+------+-------+------+-----------+---------+---------+
//!  |lower |upper |slots  |frag  | next page |free hint|reserved |
//!  +------+------+-------+------+-----------+---------+---------+
//! ```
//!
//! All fields are little-endian (invariant 1). The CRC32C covers all
//! `PAGE_SIZE` bytes, with the checksum field itself read as zero; because
//! it covers the page id, a page written at the wrong offset fails
//! verification (invariant 2). docs/storage.md describes the same layout in
//! prose, and a test checks the two agree.
//!
//! `lower`, `upper`, `slots`, `frag` and `free hint` belong to slotted (heap)
//! pages; other
//! page types keep them at the values [`init_page`] sets. `next page` links
//! overflow chains ([`NO_PAGE`] when there is none).

use crate::checksum::{crc32c, crc32c_append};
use crate::page::PageError;
use crate::types::{Lsn, PageId};

/// Size of every page, in bytes.
pub const PAGE_SIZE: usize = 8192;
/// Size of the common header, in bytes.
pub const HEADER_SIZE: usize = 40;
/// First four bytes of every page: `"KEEL"` read as a little-endian u32.
pub const PAGE_MAGIC: u32 = u32::from_le_bytes(*b"KEEL");
/// Version of the page format this code reads and writes.
pub const PAGE_FORMAT_VERSION: u16 = 1;
/// Value of the next-page link meaning "no next page".
pub const NO_PAGE: u32 = u32::MAX;

/// Byte offsets of the header fields (invariant 1; mirrored in docs/storage.md).
pub mod offsets {
    /// u32 magic, [`super::PAGE_MAGIC`].
    pub const MAGIC: usize = 0;
    /// u16 format version.
    pub const VERSION: usize = 4;
    /// u8 page type.
    pub const PAGE_TYPE: usize = 6;
    /// u8 flags (none defined in version 1; must be zero).
    pub const FLAGS: usize = 7;
    /// u32 page id.
    pub const PAGE_ID: usize = 8;
    /// u32 CRC32C of the page with this field read as zero.
    pub const CHECKSUM: usize = 12;
    /// u64 LSN of the last WAL record applied to the page.
    pub const LSN: usize = 16;
    /// u16 end of the slot directory (first free byte).
    pub const LOWER: usize = 24;
    /// u16 start of the tuple area (one past the last free byte).
    pub const UPPER: usize = 26;
    /// u16 number of slot directory entries.
    pub const SLOT_COUNT: usize = 28;
    /// u16 free bytes inside the tuple area, outside `lower..upper`.
    pub const FRAG_BYTES: usize = 30;
    /// u32 next page of an overflow chain, or [`super::NO_PAGE`].
    pub const NEXT_PAGE: usize = 32;
    /// u16 slotted pages: no slot below this index is free.
    pub const FREE_HINT: usize = 36;
    /// u16 reserved, must be zero.
    pub const RESERVED: usize = 38;
}

/// What a page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PageType {
    /// Allocated but unused (e.g. a freed overflow page).
    Free = 0,
    /// A slotted page of tuples.
    Heap = 1,
    /// One chunk of a large tuple.
    Overflow = 2,
    /// A free space map page.
    Fsm = 3,
    /// A file's metadata page.
    Meta = 4,
    /// A tree's meta page (its root and level).
    TreeMeta = 5,
    /// An internal node of a tree.
    TreeInternal = 6,
    /// A leaf of a tree.
    TreeLeaf = 7,
}

impl PageType {
    /// Decodes the type byte.
    pub fn from_u8(v: u8) -> Option<PageType> {
        Some(match v {
            0 => PageType::Free,
            1 => PageType::Heap,
            2 => PageType::Overflow,
            3 => PageType::Fsm,
            4 => PageType::Meta,
            5 => PageType::TreeMeta,
            6 => PageType::TreeInternal,
            7 => PageType::TreeLeaf,
            _ => return None,
        })
    }

    /// Lower-case name, as printed by the dump and in errors.
    pub fn name(self) -> &'static str {
        match self {
            PageType::Free => "free",
            PageType::Heap => "heap",
            PageType::Overflow => "overflow",
            PageType::Fsm => "fsm",
            PageType::Meta => "meta",
            PageType::TreeMeta => "tree-meta",
            PageType::TreeInternal => "tree-internal",
            PageType::TreeLeaf => "tree-leaf",
        }
    }
}

/// The decoded common header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageHeader {
    /// Page type.
    pub page_type: PageType,
    /// Flags byte (zero in format version 1).
    pub flags: u8,
    /// The page's own id.
    pub page_id: PageId,
    /// Stored checksum.
    pub checksum: u32,
    /// LSN of the last change.
    pub lsn: Lsn,
    /// End of the slot directory.
    pub lower: u16,
    /// Start of the tuple area.
    pub upper: u16,
    /// Slot directory entries.
    pub slot_count: u16,
    /// Fragmented free bytes in the tuple area.
    pub frag_bytes: u16,
    /// Next page in a chain, or [`NO_PAGE`].
    pub next_page: u32,
    /// Slotted pages: no slot below this index is free.
    pub free_hint: u16,
}

pub(crate) fn get_u16(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[off..off + 2]);
    u16::from_le_bytes(a)
}

pub(crate) fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

pub(crate) fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn corrupted(page_id: PageId, offset: usize, reason: impl Into<String>) -> PageError {
    PageError::Corrupted {
        page_id,
        offset,
        reason: reason.into(),
    }
}

/// Checks that `bytes` is exactly one page long.
pub(crate) fn check_len(bytes: &[u8], page_id: PageId) -> Result<(), PageError> {
    if bytes.len() == PAGE_SIZE {
        Ok(())
    } else {
        Err(corrupted(
            page_id,
            0,
            format!("page is {} bytes, expected {PAGE_SIZE}", bytes.len()),
        ))
    }
}

/// The header's fields as stored, checked for nothing: the one decoder of
/// the header's bytes, which [`PageHeader::read`] validates and inspection
/// tools show as they are (a damaged header included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawHeader {
    /// Should be [`PAGE_MAGIC`].
    pub magic: u32,
    /// Should be [`PAGE_FORMAT_VERSION`].
    pub version: u16,
    /// The type byte ([`PageType::from_u8`]).
    pub type_byte: u8,
    /// The flags byte.
    pub flags: u8,
    /// The id the page claims.
    pub page_id: PageId,
    /// Stored checksum.
    pub checksum: u32,
    /// Page LSN.
    pub lsn: Lsn,
    /// End of the slot directory.
    pub lower: u16,
    /// Start of the tuple area.
    pub upper: u16,
    /// Slot directory entries.
    pub slot_count: u16,
    /// Fragmented free bytes.
    pub frag_bytes: u16,
    /// Next page in a chain.
    pub next_page: u32,
    /// Free-slot hint.
    pub free_hint: u16,
    /// Should be zero.
    pub reserved: u16,
}

impl RawHeader {
    /// The fields of a page's header; `None` unless `bytes` is a whole page.
    pub fn of(bytes: &[u8]) -> Option<RawHeader> {
        use offsets::*;
        if bytes.len() != PAGE_SIZE {
            return None;
        }
        Some(RawHeader {
            magic: get_u32(bytes, MAGIC),
            version: get_u16(bytes, VERSION),
            type_byte: bytes[PAGE_TYPE],
            flags: bytes[FLAGS],
            page_id: PageId(get_u32(bytes, PAGE_ID)),
            checksum: get_u32(bytes, CHECKSUM),
            lsn: Lsn(get_u64(bytes, LSN)),
            lower: get_u16(bytes, LOWER),
            upper: get_u16(bytes, UPPER),
            slot_count: get_u16(bytes, SLOT_COUNT),
            frag_bytes: get_u16(bytes, FRAG_BYTES),
            next_page: get_u32(bytes, NEXT_PAGE),
            free_hint: get_u16(bytes, FREE_HINT),
            reserved: get_u16(bytes, RESERVED),
        })
    }
}

impl PageHeader {
    /// Decodes and checks the header of a page expected to be `expected`:
    /// length, magic, version, type, flags, page id, and the free-space bounds
    /// (`HEADER_SIZE + 4 * slots <= lower <= upper <= PAGE_SIZE`). Does not
    /// check the checksum (see [`verify_checksum`]).
    pub fn read(bytes: &[u8], expected: PageId) -> Result<PageHeader, PageError> {
        use offsets::*;
        check_len(bytes, expected)?;
        let raw = RawHeader::of(bytes).ok_or_else(|| corrupted(expected, 0, "not a page"))?;
        if raw.magic != PAGE_MAGIC {
            return Err(corrupted(
                expected,
                MAGIC,
                format!(
                    "bad magic {:#010x} (expected {PAGE_MAGIC:#010x})",
                    raw.magic
                ),
            ));
        }
        if raw.version != PAGE_FORMAT_VERSION {
            return Err(corrupted(
                expected,
                VERSION,
                format!("unsupported page format version {}", raw.version),
            ));
        }
        let page_type = PageType::from_u8(raw.type_byte).ok_or_else(|| {
            corrupted(
                expected,
                PAGE_TYPE,
                format!("unknown page type {}", raw.type_byte),
            )
        })?;
        if raw.flags != 0 {
            return Err(corrupted(
                expected,
                FLAGS,
                format!("unknown flags {:#04x}", raw.flags),
            ));
        }
        if raw.page_id != expected {
            return Err(corrupted(
                expected,
                PAGE_ID,
                format!(
                    "page claims to be page {} (misdirected write?)",
                    raw.page_id
                ),
            ));
        }
        if raw.reserved != 0 {
            return Err(corrupted(expected, RESERVED, "reserved field is not zero"));
        }
        let header = PageHeader {
            page_type,
            flags: raw.flags,
            page_id: raw.page_id,
            checksum: raw.checksum,
            lsn: raw.lsn,
            lower: raw.lower,
            upper: raw.upper,
            slot_count: raw.slot_count,
            frag_bytes: raw.frag_bytes,
            next_page: raw.next_page,
            free_hint: raw.free_hint,
        };
        header.check_bounds(expected)?;
        Ok(header)
    }

    fn check_bounds(&self, page_id: PageId) -> Result<(), PageError> {
        let dir_end = HEADER_SIZE + 4 * usize::from(self.slot_count);
        let (lower, upper) = (usize::from(self.lower), usize::from(self.upper));
        if lower < dir_end {
            return Err(corrupted(
                page_id,
                offsets::LOWER,
                format!(
                    "lower {lower} is inside the slot directory ({} slots end at {dir_end})",
                    self.slot_count
                ),
            ));
        }
        if lower > upper {
            return Err(corrupted(
                page_id,
                offsets::LOWER,
                format!("lower {lower} > upper {upper}"),
            ));
        }
        if self.free_hint > self.slot_count {
            return Err(corrupted(
                page_id,
                offsets::FREE_HINT,
                format!(
                    "free-slot hint {} is past the {} slots",
                    self.free_hint, self.slot_count
                ),
            ));
        }
        if upper > PAGE_SIZE {
            return Err(corrupted(
                page_id,
                offsets::UPPER,
                format!("upper {upper} is past the end of the page"),
            ));
        }
        Ok(())
    }
}

/// The type a page's type byte names, if it names one (the rest of the
/// header unchecked: see [`PageHeader::read`]).
pub fn page_type(bytes: &[u8]) -> Option<PageType> {
    bytes
        .get(offsets::PAGE_TYPE)
        .and_then(|&b| PageType::from_u8(b))
}

/// Initializes `bytes` as an empty page of the given type: zeroes it, writes
/// the header with `lower = HEADER_SIZE`, `upper = PAGE_SIZE`, LSN zero and
/// no next page. The checksum is left zero until [`seal`].
pub fn init_page(bytes: &mut [u8], page_id: PageId, page_type: PageType) -> Result<(), PageError> {
    check_len(bytes, page_id)?;
    bytes.fill(0);
    write_empty_header(bytes, page_id, page_type);
    Ok(())
}

/// The header fields of an empty page over zeroed bytes: `bytes` holds at
/// least the common header ([`HEADER_SIZE`] bytes), all zero, and every
/// field [`init_page`] sets is written; the rest stays zero.
pub(crate) fn write_empty_header(bytes: &mut [u8], page_id: PageId, page_type: PageType) {
    use offsets::*;
    put_u32(bytes, MAGIC, PAGE_MAGIC);
    put_u16(bytes, VERSION, PAGE_FORMAT_VERSION);
    bytes[PAGE_TYPE] = page_type as u8;
    put_u32(bytes, PAGE_ID, page_id.0);
    put_u16(bytes, LOWER, HEADER_SIZE as u16);
    put_u16(bytes, UPPER, PAGE_SIZE as u16);
    put_u32(bytes, NEXT_PAGE, NO_PAGE);
}

/// CRC32C of a page with its checksum field read as zero (invariant 2).
pub fn compute_checksum(bytes: &[u8]) -> u32 {
    use offsets::CHECKSUM;
    let head = crc32c(&bytes[..CHECKSUM.min(bytes.len())]);
    let with_zero = crc32c_append(head, &[0u8; 4]);
    crc32c_append(with_zero, bytes.get(CHECKSUM + 4..).unwrap_or(&[]))
}

/// Computes the checksum and stores it in the header. Called just before a
/// page is written (the buffer pool does this at write time).
pub fn seal(bytes: &mut [u8]) -> Result<(), PageError> {
    check_len(bytes, claimed_id(bytes))?;
    let crc = compute_checksum(bytes);
    put_u32(bytes, offsets::CHECKSUM, crc);
    Ok(())
}

/// The page id a page's header claims, for error messages before the page
/// is known to be whole (zero when the bytes are too short to hold one).
fn claimed_id(bytes: &[u8]) -> PageId {
    PageId(
        bytes
            .get(offsets::PAGE_ID..offsets::PAGE_ID + 4)
            .map_or(0, |b| get_u32(b, 0)),
    )
}

/// Checks the stored checksum of a page expected to be page `expected`.
pub fn verify_checksum(bytes: &[u8], expected: PageId) -> Result<(), PageError> {
    check_len(bytes, expected)?;
    let stored = get_u32(bytes, offsets::CHECKSUM);
    let computed = compute_checksum(bytes);
    if stored != computed {
        return Err(PageError::ChecksumMismatch {
            page_id: expected,
            expected: stored,
            got: computed,
        });
    }
    Ok(())
}

/// Reads the page LSN of a page (any type). The page must be `PAGE_SIZE` bytes.
pub fn page_lsn(bytes: &[u8]) -> Option<Lsn> {
    bytes
        .get(offsets::LSN..offsets::LSN + 8)
        .map(|b| Lsn(get_u64(b, 0)))
}

/// Stores the page LSN (the heap calls this after logging a change).
pub fn set_page_lsn(bytes: &mut [u8], lsn: Lsn) -> Result<(), PageError> {
    check_len(bytes, claimed_id(bytes))?;
    put_u64(bytes, offsets::LSN, lsn.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(id: u32, t: PageType) -> Vec<u8> {
        let mut b = vec![0u8; PAGE_SIZE];
        init_page(&mut b, PageId(id), t).unwrap();
        seal(&mut b).unwrap();
        b
    }

    #[test]
    fn fresh_page_verifies_and_decodes() {
        let b = page(7, PageType::Heap);
        verify_checksum(&b, PageId(7)).unwrap();
        let h = PageHeader::read(&b, PageId(7)).unwrap();
        assert_eq!(h.page_type, PageType::Heap);
        assert_eq!(usize::from(h.lower), HEADER_SIZE);
        assert_eq!(usize::from(h.upper), PAGE_SIZE);
        assert_eq!(h.next_page, NO_PAGE);
    }

    #[test]
    fn checksum_covers_page_id_and_every_byte() {
        let b = page(7, PageType::Heap);
        // The same bytes read as page 8 (a misdirected write) fail.
        assert!(matches!(verify_checksum(&b, PageId(7)), Ok(())));
        let mut moved = b.clone();
        put_u32(&mut moved, offsets::PAGE_ID, 8);
        assert!(matches!(
            verify_checksum(&moved, PageId(8)),
            Err(PageError::ChecksumMismatch { .. })
        ));
        for pos in [0, 11, 16, 39, 40, 4000, PAGE_SIZE - 1] {
            let mut c = b.clone();
            c[pos] ^= 0x10;
            assert!(verify_checksum(&c, PageId(7)).is_err(), "flip at {pos}");
        }
    }

    #[test]
    fn header_rejects_bad_fields_with_location() {
        let good = page(3, PageType::Heap);
        let cases: Vec<(usize, Vec<u8>, &str)> = vec![
            (offsets::MAGIC, b"XEEL".to_vec(), "magic"),
            (offsets::VERSION, 9u16.to_le_bytes().to_vec(), "version"),
            (offsets::PAGE_TYPE, vec![99], "page type"),
            (offsets::FLAGS, vec![1], "flags"),
            (
                offsets::PAGE_ID,
                4u32.to_le_bytes().to_vec(),
                "claims to be page 4",
            ),
            (offsets::RESERVED, 1u16.to_le_bytes().to_vec(), "reserved"),
            (
                offsets::FREE_HINT,
                1u16.to_le_bytes().to_vec(),
                "hint 1 is past",
            ),
            (
                offsets::LOWER,
                10u16.to_le_bytes().to_vec(),
                "slot directory",
            ),
            (
                offsets::UPPER,
                20u16.to_le_bytes().to_vec(),
                "lower 40 > upper 20",
            ),
            (
                offsets::UPPER,
                9000u16.to_le_bytes().to_vec(),
                "past the end",
            ),
        ];
        for (off, bytes, needle) in cases {
            let mut b = good.clone();
            b[off..off + bytes.len()].copy_from_slice(&bytes);
            let e = PageHeader::read(&b, PageId(3)).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg} lacks {needle}");
            assert!(msg.starts_with("page 3:"), "{msg}");
        }
        let e = PageHeader::read(&good[..100], PageId(3)).unwrap_err();
        assert!(e.to_string().contains("100 bytes"));
    }
}
