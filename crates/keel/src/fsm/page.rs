//! The FSM file: the map saved as checksummed 8 KiB pages.
//!
//! The free space map of a relation lives in its own file of
//! [`PAGE_SIZE`]-byte pages. FSM page `i` is page id `i` of that file and
//! describes heap pages `i × 4070 .. (i + 1) × 4070`, one byte per heap page
//! for each of the two recorded categories:
//!
//! ```text
//!  0         40          44             48          50           52
//!  +---------+-----------+--------------+-----------+------------+
//!  | header  | first page| covered pages| entries   | cat. bytes |
//!  +---------+-----------+--------------+-----------+------------+
//!  52                          4122                           8192
//!  +---------------------------+------------------------------+
//!  | contiguous category × 4070 | total category × 4070       |
//!  +---------------------------+------------------------------+
//! ```
//!
//! The header is the common page header ([`crate::page::header`]) with type
//! [`PageType::Fsm`] and every heap-only field at the value [`init_page`]
//! gives it; its CRC32C covers the page and its id (invariant 2), so an FSM
//! page written at the wrong offset of the file fails as the page it is not.
//! All integers are little-endian (invariant 1); docs/storage.md, "FSM page",
//! describes the same layout and a test checks the two agree.
//!
//! Entry `k` of the page describes heap page `first page + k`. A tracked
//! page has `contiguous <= total` (categories round down, see
//! [`mod@super::category`]); the pair `(0xFF, 0x00)`, impossible for a tracked
//! page, marks a page the map does not track (not a heap page, or removed).
//! Entries past `entries` are zero. `covered pages` is the number of heap
//! page ids the whole map spans (one past the highest): every page of the
//! file carries it, so a truncated or spliced FSM file is detected.
//!
//! [`FsmPage::decode`] checks all of this and reports the first problem as a
//! [`PageError`] naming the FSM page and the byte offset; it never panics
//! and allocates nothing beyond the one page's entries (invariant 9).

use crate::page::PageError;
use crate::page::header::{
    HEADER_SIZE, NO_PAGE, PAGE_SIZE, PageHeader, PageType, corrupted, get_u16, get_u32, init_page,
    offsets as header, put_u16, put_u32, seal, verify_checksum,
};
use crate::types::{Lsn, PageId};

use super::category::CATEGORY_BYTES;

/// Byte offsets of the FSM page body (invariant 1; mirrored in
/// docs/storage.md, "FSM page").
pub mod offsets {
    use super::HEADER_SIZE;

    /// u32 first heap page this FSM page describes.
    pub const FIRST_PAGE: usize = HEADER_SIZE;
    /// u32 heap page ids the whole map spans; the same on every FSM page.
    pub const COVERED_PAGES: usize = HEADER_SIZE + 4;
    /// u16 entries used on this page.
    pub const ENTRY_COUNT: usize = HEADER_SIZE + 8;
    /// u16 bytes per category step, [`super::CATEGORY_BYTES`].
    pub const CATEGORY_SIZE: usize = HEADER_SIZE + 10;
    /// u8 × [`super::ENTRIES_PER_PAGE`] contiguous-free categories.
    pub const CONTIGUOUS: usize = HEADER_SIZE + 12;
    /// u8 × [`super::ENTRIES_PER_PAGE`] total-free categories.
    pub const TOTAL: usize = CONTIGUOUS + super::ENTRIES_PER_PAGE;
}

/// Heap pages one FSM page describes.
pub const ENTRIES_PER_PAGE: usize = (PAGE_SIZE - offsets::CONTIGUOUS) / 2;

/// The entry bytes (contiguous, total) of a page the map does not track.
pub const UNTRACKED: (u8, u8) = (0xFF, 0x00);

/// The two categories recorded for one heap page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Categories {
    /// Category of the contiguous free bytes (usable without compaction).
    pub contiguous: u8,
    /// Category of all free bytes (usable after compaction); `>= contiguous`.
    pub total: u8,
}

/// One decoded FSM page: the categories of a run of heap pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsmPage {
    page_id: PageId,
    first_page: PageId,
    covered_pages: u32,
    entries: Vec<Option<Categories>>,
}

impl FsmPage {
    /// The page of the map at `page_id` covering `covered_pages` heap pages
    /// in all, with `entries` for the heap pages from
    /// [`first_page_of`]`(page_id)` on. `None` when the pieces disagree
    /// (wrong number of entries for that position).
    pub fn new(
        page_id: PageId,
        covered_pages: u32,
        entries: Vec<Option<Categories>>,
    ) -> Option<FsmPage> {
        let first = first_page_of(page_id)?;
        let expect = (u64::from(covered_pages).checked_sub(first)?).min(ENTRIES_PER_PAGE as u64);
        let consistent = expect > 0
            && entries.len() as u64 == expect
            && entries.iter().flatten().all(|c| c.contiguous <= c.total);
        consistent.then_some(FsmPage {
            page_id,
            // Below NO_PAGE: checked by first_page_of.
            first_page: PageId(first as u32),
            covered_pages,
            entries,
        })
    }

    /// This page's id in the FSM file.
    pub fn page_id(&self) -> PageId {
        self.page_id
    }

    /// First heap page described.
    pub fn first_page(&self) -> PageId {
        self.first_page
    }

    /// Heap page ids the whole map spans.
    pub fn covered_pages(&self) -> u32 {
        self.covered_pages
    }

    /// Categories of heap pages `first_page ..`, `None` for untracked ones.
    pub fn entries(&self) -> &[Option<Categories>] {
        &self.entries
    }

    /// Encodes the page, sealed (checksum set) and ready to write.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; PAGE_SIZE];
        // A page-sized buffer always formats and seals.
        let _ = init_page(&mut b, self.page_id, PageType::Fsm);
        put_u32(&mut b, offsets::FIRST_PAGE, self.first_page().0);
        put_u32(&mut b, offsets::COVERED_PAGES, self.covered_pages);
        put_u16(&mut b, offsets::ENTRY_COUNT, self.entries.len() as u16);
        put_u16(&mut b, offsets::CATEGORY_SIZE, CATEGORY_BYTES as u16);
        for (k, e) in self.entries.iter().enumerate() {
            let (c, t) = e.map_or(UNTRACKED, |c| (c.contiguous, c.total));
            b[offsets::CONTIGUOUS + k] = c;
            b[offsets::TOTAL + k] = t;
        }
        let _ = seal(&mut b);
        b
    }

    /// Decodes and fully validates FSM page `expected`: length, checksum,
    /// common header (type `Fsm`, heap fields at their initial values, LSN
    /// zero since the map is never WAL-logged), and every body field.
    pub fn decode(bytes: &[u8], expected: PageId) -> Result<FsmPage, PageError> {
        verify_checksum(bytes, expected)?;
        check_header(bytes, expected)?;
        let field = |off: usize, reason: String| Err(corrupted(expected, off, reason));
        let size = usize::from(get_u16(bytes, offsets::CATEGORY_SIZE));
        if size != CATEGORY_BYTES {
            return field(
                offsets::CATEGORY_SIZE,
                format!("category size {size}, expected {CATEGORY_BYTES}"),
            );
        }
        let first = get_u32(bytes, offsets::FIRST_PAGE);
        if first_page_of(expected) != Some(u64::from(first)) {
            return field(
                offsets::FIRST_PAGE,
                format!(
                    "first heap page {first}, expected {} × {ENTRIES_PER_PAGE}",
                    expected
                ),
            );
        }
        let covered = get_u32(bytes, offsets::COVERED_PAGES);
        if covered <= first {
            return field(
                offsets::COVERED_PAGES,
                format!("the map covers {covered} heap pages, none from {first} on"),
            );
        }
        let count = usize::from(get_u16(bytes, offsets::ENTRY_COUNT));
        let expect = ((covered - first) as usize).min(ENTRIES_PER_PAGE);
        if count != expect {
            return field(
                offsets::ENTRY_COUNT,
                format!("{count} entries where {covered} covered pages make {expect}"),
            );
        }
        let entries = decode_entries(bytes, expected, count)?;
        Ok(FsmPage {
            page_id: expected,
            first_page: PageId(first),
            covered_pages: covered,
            entries,
        })
    }
}

/// The first heap page FSM page `page_id` describes, if it is a valid heap
/// page id.
pub fn first_page_of(page_id: PageId) -> Option<u64> {
    let first = u64::from(page_id.0) * ENTRIES_PER_PAGE as u64;
    (first < u64::from(NO_PAGE)).then_some(first)
}

/// Checks the common header of an FSM page: type, and every field that
/// only heap or overflow pages use still at its initial value.
fn check_header(bytes: &[u8], expected: PageId) -> Result<(), PageError> {
    let h = PageHeader::read(bytes, expected)?;
    if h.page_type != PageType::Fsm {
        return Err(PageError::WrongPageType {
            page_id: expected,
            expected: PageType::Fsm.name(),
            found: h.page_type.name(),
        });
    }
    let fields: [(usize, u64, u64, &str); 7] = [
        (header::LSN, h.lsn.0, Lsn::ZERO.0, "LSN"),
        (header::LOWER, h.lower.into(), HEADER_SIZE as u64, "lower"),
        (header::UPPER, h.upper.into(), PAGE_SIZE as u64, "upper"),
        (header::SLOT_COUNT, h.slot_count.into(), 0, "slot count"),
        (
            header::FRAG_BYTES,
            h.frag_bytes.into(),
            0,
            "fragmented bytes",
        ),
        (
            header::NEXT_PAGE,
            h.next_page.into(),
            NO_PAGE.into(),
            "next page",
        ),
        (header::FREE_HINT, h.free_hint.into(), 0, "free hint"),
    ];
    for (off, got, want, name) in fields {
        if got != want {
            return Err(corrupted(
                expected,
                off,
                format!("FSM page {name} is {got}, expected {want}"),
            ));
        }
    }
    Ok(())
}

fn decode_entries(
    bytes: &[u8],
    page_id: PageId,
    count: usize,
) -> Result<Vec<Option<Categories>>, PageError> {
    let mut entries = Vec::with_capacity(count);
    for k in 0..ENTRIES_PER_PAGE {
        let (c, t) = (bytes[offsets::CONTIGUOUS + k], bytes[offsets::TOTAL + k]);
        if k >= count {
            if (c, t) != (0, 0) {
                let off = if c != 0 {
                    offsets::CONTIGUOUS
                } else {
                    offsets::TOTAL
                };
                return Err(corrupted(
                    page_id,
                    off + k,
                    format!("unused entry {k} is not zero"),
                ));
            }
        } else if (c, t) == UNTRACKED {
            entries.push(None);
        } else if c > t {
            return Err(corrupted(
                page_id,
                offsets::CONTIGUOUS + k,
                format!("entry {k}: contiguous category {c} exceeds total category {t}"),
            ));
        } else {
            entries.push(Some(Categories {
                contiguous: c,
                total: t,
            }));
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FsmPage {
        let entries = (0..100u8)
            .map(|i| {
                (i % 7 != 3).then_some(Categories {
                    contiguous: i,
                    total: i.saturating_mul(2),
                })
            })
            .collect();
        FsmPage::new(PageId(1), ENTRIES_PER_PAGE as u32 + 100, entries).unwrap()
    }

    #[test]
    fn layout_fills_the_page() {
        assert_eq!(ENTRIES_PER_PAGE, 4070);
        assert_eq!(offsets::TOTAL + ENTRIES_PER_PAGE, PAGE_SIZE);
    }

    #[test]
    fn round_trips() {
        let p = sample();
        let bytes = p.encode();
        assert_eq!(FsmPage::decode(&bytes, PageId(1)).unwrap(), p);
        assert_eq!(p.first_page(), PageId(ENTRIES_PER_PAGE as u32));
        assert_eq!(crate::page::verify(&bytes, PageId(1)), Ok(PageType::Fsm));
    }

    #[test]
    fn new_rejects_inconsistent_pieces() {
        let one = vec![None; 10];
        assert!(FsmPage::new(PageId(0), 10, one.clone()).is_some());
        assert!(FsmPage::new(PageId(0), 11, one.clone()).is_none());
        assert!(FsmPage::new(PageId(1), 10, one).is_none());
        let bad = vec![Some(Categories {
            contiguous: 2,
            total: 1,
        })];
        assert!(FsmPage::new(PageId(0), 1, bad).is_none());
        assert!(FsmPage::new(PageId(0), 0, vec![]).is_none());
        assert!(FsmPage::new(PageId(u32::MAX), u32::MAX, vec![None]).is_none());
    }

    /// Re-sealed field changes: each is caught by the body checks and named.
    #[test]
    fn rejects_bad_fields_with_location() {
        let good = sample().encode();
        let cases: Vec<(usize, Vec<u8>, &str)> = vec![
            (header::PAGE_TYPE, vec![1], "is a heap page"),
            (header::LSN, vec![1], "LSN is 1"),
            (header::LOWER, 44u16.to_le_bytes().to_vec(), "lower is 44"),
            (header::NEXT_PAGE, 5u32.to_le_bytes().to_vec(), "next page"),
            (offsets::CATEGORY_SIZE, vec![16], "category size 16"),
            (offsets::FIRST_PAGE, vec![0, 0, 0, 0], "first heap page 0"),
            (offsets::COVERED_PAGES, vec![1, 0, 0, 0], "covers 1 heap"),
            (offsets::ENTRY_COUNT, vec![99], "99 entries"),
            (offsets::CONTIGUOUS + 5, vec![200], "entry 5: contiguous"),
            (offsets::TOTAL + 100, vec![1], "unused entry 100"),
            (offsets::CONTIGUOUS + 4000, vec![1], "unused entry 4000"),
        ];
        for (off, patch, needle) in cases {
            let mut b = good.clone();
            b[off..off + patch.len()].copy_from_slice(&patch);
            seal(&mut b).unwrap();
            let msg = FsmPage::decode(&b, PageId(1)).unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg} lacks {needle}");
            assert!(msg.starts_with("page 1:"), "{msg}");
        }
        // Read at the wrong position: the page id (covered by the checksum)
        // gives it away.
        let msg = FsmPage::decode(&good, PageId(2)).unwrap_err().to_string();
        assert!(
            msg.starts_with("page 2:") && msg.contains("claims to be page 1"),
            "{msg}"
        );
        let e = FsmPage::decode(&good[..10], PageId(1)).unwrap_err();
        assert!(e.to_string().contains("10 bytes"), "{e}");
    }
}
