//! Free-space categories: one byte that stands for "at least this many bytes".
//!
//! A page's free space (contiguous or total) is recorded as a category
//! `0..=255`. Categories `0..=254` are steps of [`CATEGORY_BYTES`] (32) bytes,
//! rounded *down*: a page with 100 free bytes is category 3, which promises
//! 96. Category 255 is reserved for "as free as an empty heap page"
//! ([`EMPTY_PAGE_FREE`] = 8152 bytes): without it the largest tuples
//! (8148 bytes plus a 4-byte slot) would never match even an empty page,
//! because 254 × 32 = 8128. This is PostgreSQL's choice too (its
//! `MaxFSMRequestSize` maps to category 255).
//!
//! Rounding down is the whole point: [`category_bytes`]`(`[`category`]`(x))
//! <= x` for every `x`, so a recorded category never promises more than the
//! page had when it was recorded. The price is at most 31 bytes of space that
//! the map does not offer; [`min_category`] is the exact inverse, so nothing
//! *beyond* that rounding is ever missed.

use crate::page::{HEADER_SIZE, PAGE_SIZE};

/// Bytes per category step (256 categories of 32 bytes, as in PostgreSQL).
/// Smaller steps would waste less space to rounding but need a wider
/// on-disk entry; 32 bytes is under half the smallest useful tuple plus
/// its slot, so the waste is rarely a whole tuple.
pub const CATEGORY_BYTES: usize = 32;
/// Number of categories: one byte per recorded value.
pub const CATEGORIES: usize = 256;
/// Free bytes of an empty heap page: everything after the header.
pub const EMPTY_PAGE_FREE: usize = PAGE_SIZE - HEADER_SIZE;
/// The category reserved for "as free as an empty page".
pub const EMPTY_CATEGORY: u8 = u8::MAX;

/// Largest category that is an ordinary 32-byte step.
const LAST_STEP: usize = CATEGORIES - 2;

/// The category of `bytes` free bytes, rounded down.
pub const fn category(bytes: usize) -> u8 {
    if bytes >= EMPTY_PAGE_FREE {
        EMPTY_CATEGORY
    } else {
        let c = bytes / CATEGORY_BYTES;
        if c > LAST_STEP {
            LAST_STEP as u8
        } else {
            c as u8
        }
    }
}

/// The free bytes a category promises: a lower bound on what the page had.
pub const fn category_bytes(cat: u8) -> usize {
    if cat == EMPTY_CATEGORY {
        EMPTY_PAGE_FREE
    } else {
        cat as usize * CATEGORY_BYTES
    }
}

/// The smallest category whose promise covers `min_bytes`, or `None` when
/// no category does (more than an empty page holds).
pub const fn min_category(min_bytes: usize) -> Option<u8> {
    if min_bytes <= LAST_STEP * CATEGORY_BYTES {
        Some(min_bytes.div_ceil(CATEGORY_BYTES) as u8)
    } else if min_bytes <= EMPTY_PAGE_FREE {
        Some(EMPTY_CATEGORY)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_down_and_inverts_exactly() {
        for bytes in 0..=PAGE_SIZE + 10 {
            let c = category(bytes);
            assert!(category_bytes(c) <= bytes, "{bytes} over-promised");
            // min_category is the exact inverse: a request is matched by a
            // category iff the category's promise covers it.
            for n in [bytes.saturating_sub(1), bytes, bytes + 1] {
                let covers = category_bytes(c) >= n;
                let matched = min_category(n).is_some_and(|m| c >= m);
                assert_eq!(covers, matched, "bytes {bytes}, request {n}");
            }
        }
        assert_eq!(category(0), 0);
        assert_eq!(category(31), 0);
        assert_eq!(category(32), 1);
        assert_eq!(category(8128), 254);
        assert_eq!(category(8151), 254);
        assert_eq!(category(EMPTY_PAGE_FREE), EMPTY_CATEGORY);
        assert_eq!(min_category(0), Some(0));
        assert_eq!(min_category(33), Some(2));
        assert_eq!(min_category(EMPTY_PAGE_FREE), Some(EMPTY_CATEGORY));
        assert_eq!(min_category(EMPTY_PAGE_FREE + 1), None);
    }
}
