//! Overflow chains: tuples larger than a heap page.
//!
//! A tuple longer than [`MAX_TUPLE_LEN`](crate::page::MAX_TUPLE_LEN) is split
//! into chunks of at most [`CHUNK_CAPACITY`] bytes, each stored
//! on its own overflow page; the pages are linked through the common header's
//! next-page field. In the heap page, the tuple's slot (flagged
//! `OVERFLOW_HEAD`) holds a 24-byte [`OverflowHead`]:
//!
//! ```text
//!  0                  8            12            16          20         24
//!  +------------------+------------+-------------+-----------+----------+
//!  | total length u64 | first page | page count  | value crc | reserved |
//!  +------------------+------------+-------------+-----------+----------+
//! ```
//!
//! An overflow page, after the common header:
//!
//! ```text
//!  40          42         44            48                         8192
//!  +-----------+----------+-------------+----------------------------+
//!  | chunk len | reserved | chunk index |  chunk bytes ...           |
//!  +-----------+----------+-------------+----------------------------+
//! ```
//!
//! Each page's checksum covers its own id; the chunk index catches a link to
//! the wrong position in a chain; and the head's CRC32C of the whole value
//! catches a chain assembled from the wrong pages (for instance a page freed
//! and reused by another tuple while a stale head still pointed at it). So a
//! broken chain is always an error, never a wrong value.
//!
//! This module only encodes and decodes; the heap allocates, writes, logs and
//! frees the pages.

use crate::checksum::{crc32c, crc32c_append};
use crate::page::PageError;
use crate::page::header::{
    HEADER_SIZE, NO_PAGE, PAGE_SIZE, PageHeader, PageType, corrupted, get_u16, get_u32, get_u64,
    init_page, offsets, put_u16, put_u32, put_u64,
};
use crate::types::PageId;

/// Largest value an overflow chain holds (1 GiB, the heap's largest
/// value). A head claiming more is corrupt: nothing Keel writes is larger,
/// and a reader never reserves memory on a length it has not checked
/// against this bound (invariant 9).
pub const MAX_CHAIN_LEN: u64 = 1 << 30;

/// Memory a [`ChainReader`] reserves before its first page: the value grows
/// from there as pages arrive, so a corrupt head costs at most this much.
const INITIAL_RESERVE: u64 = 1 << 20;

/// Byte offsets of the fields of an encoded [`OverflowHead`].
pub mod head_offsets {
    /// u64 length of the whole value.
    pub const TOTAL_LEN: usize = 0;
    /// u32 first overflow page.
    pub const FIRST_PAGE: usize = 8;
    /// u32 number of overflow pages.
    pub const PAGE_COUNT: usize = 12;
    /// u32 CRC32C of the whole value.
    pub const VALUE_CRC: usize = 16;
    /// u32 reserved, must be zero.
    pub const RESERVED: usize = 20;
}

/// The head of an overflow chain, stored as the tuple's bytes in its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverflowHead {
    /// Length of the whole value.
    pub total_len: u64,
    /// First overflow page.
    pub first_page: PageId,
    /// Number of overflow pages in the chain.
    pub page_count: u32,
    /// CRC32C of the whole value.
    pub value_crc: u32,
}

impl OverflowHead {
    /// Encoded size, in bytes.
    pub const SIZE: usize = 24;

    /// Builds the head for `value` stored from `first_page` on.
    pub fn for_value(value: &[u8], first_page: PageId) -> Result<OverflowHead, PageError> {
        let page_count =
            u32::try_from(pages_needed(value.len())).map_err(|_| PageError::TupleTooLarge {
                len: value.len(),
                max: CHUNK_CAPACITY * u32::MAX as usize,
            })?;
        Ok(OverflowHead {
            total_len: value.len() as u64,
            first_page,
            page_count,
            value_crc: crc32c(value),
        })
    }

    /// Encodes the head.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put_u64(&mut b, head_offsets::TOTAL_LEN, self.total_len);
        put_u32(&mut b, head_offsets::FIRST_PAGE, self.first_page.0);
        put_u32(&mut b, head_offsets::PAGE_COUNT, self.page_count);
        put_u32(&mut b, head_offsets::VALUE_CRC, self.value_crc);
        b
    }

    /// Decodes a head stored in a slot of `page_id`, checking that its page
    /// count matches its length (so a reader never allocates more than the
    /// chain it then reads justifies, invariant 9).
    pub fn decode(bytes: &[u8], page_id: PageId) -> Result<OverflowHead, PageError> {
        if bytes.len() != Self::SIZE {
            return Err(corrupted(
                page_id,
                0,
                format!(
                    "overflow head is {} bytes, expected {}",
                    bytes.len(),
                    Self::SIZE
                ),
            ));
        }
        let head = OverflowHead {
            total_len: get_u64(bytes, head_offsets::TOTAL_LEN),
            first_page: PageId(get_u32(bytes, head_offsets::FIRST_PAGE)),
            page_count: get_u32(bytes, head_offsets::PAGE_COUNT),
            value_crc: get_u32(bytes, head_offsets::VALUE_CRC),
        };
        let expect = usize::try_from(head.total_len)
            .map(pages_needed)
            .unwrap_or(usize::MAX);
        if get_u32(bytes, head_offsets::RESERVED) != 0
            || head.total_len > MAX_CHAIN_LEN
            || head.first_page.0 == NO_PAGE
            || expect != head.page_count as usize
        {
            return Err(corrupted(
                page_id,
                0,
                format!(
                    "inconsistent overflow head: {} bytes in {} pages from page {}",
                    head.total_len, head.page_count, head.first_page
                ),
            ));
        }
        Ok(head)
    }

    /// Reassembles the value from the chain's pages, given in chain order
    /// (each as page id and bytes). Checks every page, the links, the chunk
    /// indexes, the total length and the value's CRC.
    pub fn assemble<'a, I>(&self, pages: I) -> Result<Vec<u8>, PageError>
    where
        I: IntoIterator<Item = (PageId, &'a [u8])>,
    {
        let mut reader = ChainReader::new(*self);
        for (id, bytes) in pages {
            reader.push(id, bytes)?;
        }
        reader.finish()
    }
}

/// Reads an overflow chain one page at a time, so a caller holds one page
/// at a time (a 64 MiB value spans about 8,000 pages). [`ChainReader::next_page`]
/// says which page to read next; [`ChainReader::finish`] checks the whole.
#[derive(Debug)]
pub struct ChainReader {
    head: OverflowHead,
    value: Vec<u8>,
    next: u32,
    count: u32,
}

impl ChainReader {
    /// Starts reading the chain of `head`.
    pub fn new(head: OverflowHead) -> ChainReader {
        // The head is untrusted until its pages are read: reserve at most
        // INITIAL_RESERVE up front (invariant 9); a real value grows past it
        // as its chunks arrive.
        let cap = usize::try_from(head.total_len.min(INITIAL_RESERVE)).unwrap_or(0);
        ChainReader {
            head,
            value: Vec::with_capacity(cap),
            next: head.first_page.0,
            count: 0,
        }
    }

    /// The page to read next, or `None` when the chain has ended.
    pub fn next_page(&self) -> Option<PageId> {
        (self.next != NO_PAGE && self.count < self.head.page_count).then_some(PageId(self.next))
    }

    /// Adds the next page of the chain.
    pub fn push(&mut self, id: PageId, bytes: &[u8]) -> Result<(), PageError> {
        if self.next_page() != Some(id) {
            return Err(corrupted(id, 0, "overflow chain page out of order"));
        }
        let page = OverflowPage::open(bytes, id)?;
        if page.chunk_index() != self.count {
            return Err(corrupted(
                id,
                CHUNK_INDEX_OFFSET,
                format!(
                    "chunk index {} where {} was expected",
                    page.chunk_index(),
                    self.count
                ),
            ));
        }
        if (self.value.len() + page.chunk().len()) as u64 > self.head.total_len {
            return Err(corrupted(
                id,
                CHUNK_LEN_OFFSET,
                "chain longer than its head says",
            ));
        }
        self.value.extend_from_slice(page.chunk());
        self.count += 1;
        self.next = page.next_page();
        Ok(())
    }

    /// Checks the chain ended where the head says and the value's CRC.
    pub fn finish(self) -> Result<Vec<u8>, PageError> {
        let h = self.head;
        let whole = self.count == h.page_count && self.next == NO_PAGE;
        if !whole || self.value.len() as u64 != h.total_len || crc32c(&self.value) != h.value_crc {
            return Err(corrupted(
                h.first_page,
                0,
                format!(
                    "overflow chain from page {} does not match its head \
                     ({} of {} pages, {} of {} bytes)",
                    h.first_page,
                    self.count,
                    h.page_count,
                    self.value.len(),
                    h.total_len
                ),
            ));
        }
        Ok(self.value)
    }
}

/// One page of an overflow chain.
#[derive(Debug)]
pub struct OverflowPage<B> {
    bytes: B,
    page_id: PageId,
}

/// Offset of an overflow page's u16 chunk length.
pub const CHUNK_LEN_OFFSET: usize = HEADER_SIZE;
/// Offset of an overflow page's u16 reserved field.
pub const CHUNK_RESERVED_OFFSET: usize = HEADER_SIZE + 2;
/// Offset of an overflow page's u32 chunk index (position in the chain).
pub const CHUNK_INDEX_OFFSET: usize = HEADER_SIZE + 4;
/// Offset of an overflow page's chunk bytes.
pub const CHUNK_DATA_OFFSET: usize = HEADER_SIZE + 8;
/// Most chunk bytes one overflow page holds.
pub const CHUNK_CAPACITY: usize = PAGE_SIZE - CHUNK_DATA_OFFSET;

/// Number of overflow pages a value of `len` bytes needs.
pub fn pages_needed(len: usize) -> usize {
    len.div_ceil(CHUNK_CAPACITY)
}

/// Splits a value into the chunks its overflow pages carry, in order.
pub fn chunks(value: &[u8]) -> std::slice::Chunks<'_, u8> {
    value.chunks(CHUNK_CAPACITY)
}

impl<B: AsRef<[u8]>> OverflowPage<B> {
    /// Opens page `expected` as an overflow page, checking the header and
    /// the chunk fields.
    pub fn open(bytes: B, expected: PageId) -> Result<Self, PageError> {
        let header = PageHeader::read(bytes.as_ref(), expected)?;
        if header.page_type != PageType::Overflow {
            return Err(PageError::WrongPageType {
                page_id: expected,
                expected: PageType::Overflow.name(),
                found: header.page_type.name(),
            });
        }
        let b = bytes.as_ref();
        let len = usize::from(get_u16(b, CHUNK_LEN_OFFSET));
        if len > CHUNK_CAPACITY {
            return Err(corrupted(
                expected,
                CHUNK_LEN_OFFSET,
                format!("chunk length {len} exceeds {}", CHUNK_CAPACITY),
            ));
        }
        if get_u16(b, CHUNK_RESERVED_OFFSET) != 0 {
            return Err(corrupted(
                expected,
                CHUNK_RESERVED_OFFSET,
                "reserved field is not zero",
            ));
        }
        Ok(OverflowPage {
            bytes,
            page_id: expected,
        })
    }

    /// This page's id.
    pub fn page_id(&self) -> PageId {
        self.page_id
    }

    /// The chunk bytes.
    pub fn chunk(&self) -> &[u8] {
        let b = self.bytes.as_ref();
        let len = usize::from(get_u16(b, CHUNK_LEN_OFFSET));
        &b[CHUNK_DATA_OFFSET..CHUNK_DATA_OFFSET + len]
    }

    /// Position of this chunk in its chain.
    pub fn chunk_index(&self) -> u32 {
        get_u32(self.bytes.as_ref(), CHUNK_INDEX_OFFSET)
    }

    /// The next page of the chain, or [`NO_PAGE`].
    pub fn next_page(&self) -> u32 {
        get_u32(self.bytes.as_ref(), offsets::NEXT_PAGE)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> OverflowPage<B> {
    /// Formats `bytes` as overflow page `page_id` holding `chunk`, the
    /// `index`-th of its chain, followed by `next` (or [`NO_PAGE`]).
    pub fn init(
        mut bytes: B,
        page_id: PageId,
        index: u32,
        chunk: &[u8],
        next: u32,
    ) -> Result<Self, PageError> {
        if chunk.len() > CHUNK_CAPACITY {
            return Err(PageError::TupleTooLarge {
                len: chunk.len(),
                max: CHUNK_CAPACITY,
            });
        }
        let b = bytes.as_mut();
        init_page(b, page_id, PageType::Overflow)?;
        put_u16(b, CHUNK_LEN_OFFSET, chunk.len() as u16);
        put_u32(b, CHUNK_INDEX_OFFSET, index);
        b[CHUNK_DATA_OFFSET..CHUNK_DATA_OFFSET + chunk.len()].copy_from_slice(chunk);
        put_u32(b, offsets::NEXT_PAGE, next);
        Ok(OverflowPage { bytes, page_id })
    }
}

/// CRC32C of a value given as consecutive pieces (e.g. chunks as they are
/// written), equal to [`crc32c()`] of their concatenation.
pub fn value_crc<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> u32 {
    pieces.into_iter().fold(crc32c(&[]), crc32c_append)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_chain(value: &[u8], first: u32) -> (OverflowHead, Vec<(PageId, Vec<u8>)>) {
        let head = OverflowHead::for_value(value, PageId(first)).unwrap();
        let chunks: Vec<&[u8]> = chunks(value).collect();
        let mut pages = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let id = first + i as u32;
            let next = if i + 1 == chunks.len() {
                NO_PAGE
            } else {
                id + 1
            };
            let mut b = vec![0u8; PAGE_SIZE];
            OverflowPage::init(&mut b[..], PageId(id), i as u32, chunk, next).unwrap();
            crate::page::seal(&mut b).unwrap();
            pages.push((PageId(id), b));
        }
        (head, pages)
    }

    fn value(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn chains_round_trip_at_chunk_boundaries() {
        let cap = CHUNK_CAPACITY;
        for len in [1, cap - 1, cap, cap + 1, 3 * cap, 100_000] {
            let v = value(len);
            let (head, pages) = build_chain(&v, 10);
            let enc = head.encode();
            let head2 = OverflowHead::decode(&enc, PageId(1)).unwrap();
            assert_eq!(head, head2);
            assert_eq!(head.page_count as usize, pages_needed(len));
            let got = head2
                .assemble(pages.iter().map(|(id, b)| (*id, &b[..])))
                .unwrap();
            assert_eq!(got, v, "len {len}");
            for (id, b) in &pages {
                crate::page::verify(b, *id).unwrap();
            }
        }
        assert_eq!(value_crc([&b"1234"[..], b"56789"]), crc32c(b"123456789"));
    }

    #[test]
    fn broken_chains_are_errors() {
        let v = value(3 * CHUNK_CAPACITY);
        let (head, pages) = build_chain(&v, 10);
        let refs: Vec<(PageId, &[u8])> = pages.iter().map(|(id, b)| (*id, &b[..])).collect();
        // Missing last page.
        assert!(head.assemble(refs[..2].iter().copied()).is_err());
        // Pages out of order.
        let swapped = vec![refs[0], refs[2], refs[1]];
        assert!(head.assemble(swapped).is_err());
        // A page from another value with the right id and index.
        let other = value(3 * CHUNK_CAPACITY + 7);
        let (_, other_pages) = build_chain(&other.iter().map(|b| b ^ 1).collect::<Vec<_>>(), 10);
        let mixed = vec![refs[0], (other_pages[1].0, &other_pages[1].1[..]), refs[2]];
        let e = head.assemble(mixed).unwrap_err();
        assert!(e.to_string().contains("does not match its head"), "{e}");
        // An inconsistent head.
        let mut bad = head;
        bad.page_count += 1;
        assert!(OverflowHead::decode(&bad.encode(), PageId(1)).is_err());
        assert!(OverflowHead::decode(&[0u8; 5], PageId(1)).is_err());
    }

    /// Invariant 9: a head read from disk cannot make a reader reserve more
    /// than the bound, whatever length it claims.
    #[test]
    fn a_head_claiming_a_huge_value_is_refused_and_never_reserved() {
        let consistent = |total_len: u64| OverflowHead {
            total_len,
            first_page: PageId(10),
            page_count: pages_needed(total_len as usize) as u32,
            value_crc: 0,
        };
        // The largest chain's head decodes; one byte more is corrupt, and so
        // is the ≈35 TB a u32 page count could describe.
        let max = consistent(MAX_CHAIN_LEN);
        assert_eq!(OverflowHead::decode(&max.encode(), PageId(1)).unwrap(), max);
        for len in [
            MAX_CHAIN_LEN + 1,
            CHUNK_CAPACITY as u64 * u64::from(u32::MAX),
        ] {
            let e = OverflowHead::decode(&consistent(len).encode(), PageId(1)).unwrap_err();
            assert!(e.to_string().contains("inconsistent overflow head"), "{e}");
        }
        // A head that decodes reserves at most INITIAL_RESERVE before any page.
        let reader = ChainReader::new(max);
        assert!(reader.value.capacity() as u64 <= INITIAL_RESERVE);
    }
}
