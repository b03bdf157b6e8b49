//! One index of pages by category: 256 buckets and a bitmap of the
//! non-empty ones.
//!
//! Each bucket is a `Vec` of page numbers; the caller keeps each page's
//! position in it, so insert is a push and remove a `swap_remove` (the page
//! that moved into the hole is returned so the caller can fix its position).
//! The bitmap has one bit per bucket in four `u64` words; finding the first
//! non-empty bucket at or above a category masks the first word and takes
//! `trailing_zeros`, at most four words in all. Every operation is O(1).

use super::category::CATEGORIES;

const WORDS: usize = CATEGORIES / 64;

/// Pages bucketed by one category byte.
#[derive(Debug)]
pub(super) struct Buckets {
    nonempty: [u64; WORDS],
    lists: Vec<Vec<u32>>,
}

impl Buckets {
    pub(super) fn new() -> Buckets {
        Buckets {
            nonempty: [0; WORDS],
            lists: vec![Vec::new(); CATEGORIES],
        }
    }

    /// Adds `page` to bucket `cat`; returns its position there.
    pub(super) fn insert(&mut self, cat: u8, page: u32) -> u32 {
        let list = &mut self.lists[usize::from(cat)];
        list.push(page);
        self.nonempty[usize::from(cat) / 64] |= 1 << (cat % 64);
        // A bucket never holds more than u32::MAX pages: page ids are u32.
        (list.len() - 1) as u32
    }

    /// Removes the page at `pos` of bucket `cat`. If another page moved into
    /// `pos` to fill the hole, returns it: its position is now `pos`.
    pub(super) fn remove(&mut self, cat: u8, pos: u32) -> Option<u32> {
        let list = &mut self.lists[usize::from(cat)];
        let pos = pos as usize;
        // A position comes from the map itself; out of range would be a bug,
        // and the map is a hint: the entry is dropped, never trusted.
        if pos >= list.len() {
            return None;
        }
        list.swap_remove(pos);
        if list.is_empty() {
            self.nonempty[usize::from(cat) / 64] &= !(1 << (cat % 64));
        }
        list.get(pos).copied()
    }

    /// The lowest non-empty bucket at or above `cat`.
    pub(super) fn first_at_least(&self, cat: u8) -> Option<u8> {
        let start = usize::from(cat) / 64;
        let mut word = self.nonempty[start] & (u64::MAX << (cat % 64));
        let mut w = start;
        loop {
            if word != 0 {
                return Some((w * 64 + word.trailing_zeros() as usize) as u8);
            }
            w += 1;
            word = *self.nonempty.get(w)?;
        }
    }

    /// The pages in bucket `cat`.
    pub(super) fn bucket(&self, cat: u8) -> &[u32] {
        &self.lists[usize::from(cat)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_follows_the_buckets() {
        let mut b = Buckets::new();
        assert_eq!(b.first_at_least(0), None);
        let p7 = b.insert(7, 100);
        let p200 = b.insert(200, 101);
        let q7 = b.insert(7, 102);
        assert_eq!((p7, p200, q7), (0, 0, 1));
        assert_eq!(b.first_at_least(0), Some(7));
        assert_eq!(b.first_at_least(7), Some(7));
        assert_eq!(b.first_at_least(8), Some(200));
        assert_eq!(b.first_at_least(64), Some(200));
        assert_eq!(b.first_at_least(201), None);
        assert_eq!(b.first_at_least(255), None);
        // Removing position 0 moves page 102 into it.
        assert_eq!(b.remove(7, p7), Some(102));
        assert_eq!(b.bucket(7), &[102]);
        assert_eq!(b.remove(7, 0), None);
        assert_eq!(b.first_at_least(0), Some(200));
        b.insert(255, 5);
        assert_eq!(b.first_at_least(201), Some(255));
        assert_eq!(b.remove(200, p200), None);
        assert_eq!(b.remove(255, 0), None);
        assert_eq!(b.first_at_least(0), None);
    }
}
