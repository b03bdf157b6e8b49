//! Space metrics of pages, summed across a relation.
//!
//! One [`PageStats`] describes one heap page ([`SlottedPage::stats`]); adding
//! them gives a relation's totals, which `keel stats` and the demo print.
//! Derived figures (fill factor, fragmentation) are computed from the sums,
//! never stored, so they cannot disagree with them.
//!
//! [`SlottedPage::stats`]: crate::page::SlottedPage::stats

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

use crate::page::header::{HEADER_SIZE, PAGE_SIZE};

/// Space usage of one or more heap pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageStats {
    /// Pages counted.
    pub pages: u64,
    /// Live tuples (including tuples moved in from another page).
    pub live_tuples: u64,
    /// Bytes of live tuples.
    pub tuple_bytes: u64,
    /// Free bytes: contiguous plus fragmented.
    pub free_bytes: u64,
    /// Free bytes in the gap between slot directory and tuples.
    pub contiguous_free_bytes: u64,
    /// Free bytes in holes among the tuples (reclaimed by compaction).
    pub fragmented_bytes: u64,
    /// Deleted slots whose numbers are still reserved.
    pub dead_slots: u64,
    /// Free slots awaiting reuse.
    pub free_slots: u64,
    /// Forward pointers left by updates that moved a tuple.
    pub forward_slots: u64,
    /// Slots that failed to decode (always zero on a healthy page).
    pub corrupt_slots: u64,
}

impl PageStats {
    /// Fraction of the pages' usable bytes (all but headers) that are not
    /// free: 1.0 is full, 0.0 is empty.
    pub fn fill_factor(&self) -> f64 {
        let usable = self.pages * (PAGE_SIZE - HEADER_SIZE) as u64;
        if usable == 0 {
            return 0.0;
        }
        1.0 - self.free_bytes as f64 / usable as f64
    }

    /// Fraction of the free bytes that are fragmented (not usable without
    /// compaction): 0.0 means all free space is contiguous.
    pub fn fragmentation(&self) -> f64 {
        if self.free_bytes == 0 {
            return 0.0;
        }
        self.fragmented_bytes as f64 / self.free_bytes as f64
    }
}

impl AddAssign for PageStats {
    fn add_assign(&mut self, o: PageStats) {
        self.pages += o.pages;
        self.live_tuples += o.live_tuples;
        self.tuple_bytes += o.tuple_bytes;
        self.free_bytes += o.free_bytes;
        self.contiguous_free_bytes += o.contiguous_free_bytes;
        self.fragmented_bytes += o.fragmented_bytes;
        self.dead_slots += o.dead_slots;
        self.free_slots += o.free_slots;
        self.forward_slots += o.forward_slots;
        self.corrupt_slots += o.corrupt_slots;
    }
}

impl Add for PageStats {
    type Output = PageStats;
    fn add(mut self, o: PageStats) -> PageStats {
        self += o;
        self
    }
}

impl Sum for PageStats {
    fn sum<I: Iterator<Item = PageStats>>(iter: I) -> PageStats {
        iter.fold(PageStats::default(), Add::add)
    }
}

impl fmt::Display for PageStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pages {} | live tuples {} ({} B) | free {} B ({} contiguous, {} fragmented) | \
             fill {:.1}% | fragmentation {:.1}% | slots: {} dead, {} free, {} forward",
            self.pages,
            self.live_tuples,
            self.tuple_bytes,
            self.free_bytes,
            self.contiguous_free_bytes,
            self.fragmented_bytes,
            self.fill_factor() * 100.0,
            self.fragmentation() * 100.0,
            self.dead_slots,
            self.free_slots,
            self.forward_slots,
        )?;
        if self.corrupt_slots > 0 {
            write!(f, " | CORRUPT slots {}", self.corrupt_slots)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_ratios() {
        let a = PageStats {
            pages: 1,
            free_bytes: 1000,
            fragmented_bytes: 250,
            contiguous_free_bytes: 750,
            live_tuples: 3,
            ..PageStats::default()
        };
        let total: PageStats = [a, a].into_iter().sum();
        assert_eq!(total.pages, 2);
        assert_eq!(total.live_tuples, 6);
        assert!((total.fragmentation() - 0.25).abs() < 1e-9);
        let usable = 2.0 * (PAGE_SIZE - HEADER_SIZE) as f64;
        assert!((total.fill_factor() - (1.0 - 2000.0 / usable)).abs() < 1e-9);
        assert_eq!(PageStats::default().fill_factor(), 0.0);
        assert_eq!(PageStats::default().fragmentation(), 0.0);
    }
}
