//! Identifier newtypes shared by every layer of Keel.
//!
//! Each identifier that crosses a layer boundary or reaches the disk is a
//! newtype, so a page id can never be passed where a slot or an LSN is
//! expected. All of them are `Copy`, ordered, hashable, and display in the
//! form the `keel` tool prints and parses.
//!
//! Widths are part of the on-disk formats (docs/storage.md):
//!
//! | type         | width | meaning                                             |
//! |--------------|-------|-----------------------------------------------------|
//! | `PageId`     | u32   | page number within one relation file                |
//! | `SlotId`     | u16   | index into a page's slot directory (invariant 12)   |
//! | `Lsn`        | u64   | byte position in the logical log (invariant 3)      |
//! | `TxnId`      | u64   | transaction id, never reused                        |
//! | `RelationId` | u32   | catalog id of a relation                            |
//! | `TupleId`    | (u32, u16) | page and slot; stable until delete (inv. 12)   |

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A text form of an identifier (`TupleId`, `Lsn`, …) did not parse.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("invalid {kind}: {input:?}")]
pub struct ParseIdError {
    /// Which identifier type was being parsed.
    pub kind: &'static str,
    /// The text that was rejected.
    pub input: String,
}

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $inner);

        impl $name {
            /// The raw integer value.
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                Self(v)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim().parse::<$inner>().map(Self).map_err(|_| ParseIdError {
                    kind: stringify!($name),
                    input: s.to_owned(),
                })
            }
        }
    };
}

id_newtype!(
    /// Number of a page within one file (page `n` lives at byte `n * PAGE_SIZE`).
    PageId(u32)
);
id_newtype!(
    /// Index into a page's slot directory. Slot numbers never change while the
    /// tuple lives (invariant 12).
    SlotId(u16)
);
id_newtype!(
    /// Transaction id. Zero means "no transaction".
    TxnId(u64)
);
id_newtype!(
    /// Catalog id of a relation.
    RelationId(u32)
);

/// Log sequence number: the byte position of a record in the logical log
/// (invariant 3). `Lsn::ZERO` is "before any record" and is the LSN of a page
/// that has never been logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The LSN before any record.
    pub const ZERO: Lsn = Lsn(0);

    /// The raw byte position.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// This LSN advanced by `bytes`, or `None` on overflow.
    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }
}

impl fmt::Display for Lsn {
    /// Printed as `segment-ish/offset` hex halves, like PostgreSQL's `0/16B3748`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:08X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = ParseIdError;
    /// Accepts `HI/LO` in hex (as displayed) or a plain decimal byte position.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseIdError {
            kind: "Lsn",
            input: s.to_owned(),
        };
        let t = s.trim();
        if let Some((hi, lo)) = t.split_once('/') {
            let hi = u32::from_str_radix(hi, 16).map_err(|_| err())?;
            let lo = u32::from_str_radix(lo, 16).map_err(|_| err())?;
            Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
        } else {
            t.parse::<u64>().map(Lsn).map_err(|_| err())
        }
    }
}

impl From<u64> for Lsn {
    fn from(v: u64) -> Self {
        Lsn(v)
    }
}

/// Address of a tuple: the page it lives on and its slot. Displays and parses
/// as `page.slot`, e.g. `12.3`. Stable until the tuple is deleted
/// (invariant 12): compaction keeps slot numbers, and an update that moves the
/// tuple leaves a forward pointer at this address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TupleId {
    /// Page holding the tuple's slot.
    pub page: PageId,
    /// Slot within that page.
    pub slot: SlotId,
}

impl TupleId {
    /// Builds a tuple id from its parts.
    pub const fn new(page: PageId, slot: SlotId) -> Self {
        TupleId { page, slot }
    }

    /// Its 6-byte form: the page (u32) then the slot (u16), big-endian, so
    /// the bytes sort as the ids do (a tree value or key naming a tuple).
    pub fn to_bytes(self) -> [u8; 6] {
        let mut b = [0u8; 6];
        b[..4].copy_from_slice(&self.page.0.to_be_bytes());
        b[4..].copy_from_slice(&self.slot.0.to_be_bytes());
        b
    }

    /// Reads [`to_bytes`](Self::to_bytes)'s form; `None` unless `b` is 6
    /// bytes long.
    pub fn from_bytes(b: &[u8]) -> Option<TupleId> {
        let b: [u8; 6] = b.try_into().ok()?;
        Some(TupleId {
            page: PageId(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            slot: SlotId(u16::from_be_bytes([b[4], b[5]])),
        })
    }
}

impl fmt::Display for TupleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.page, self.slot)
    }
}

impl FromStr for TupleId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseIdError {
            kind: "TupleId",
            input: s.to_owned(),
        };
        let (p, sl) = s.trim().split_once('.').ok_or_else(err)?;
        Ok(TupleId {
            page: PageId(p.parse().map_err(|_| err())?),
            slot: SlotId(sl.parse().map_err(|_| err())?),
        })
    }
}

/// A fresh nonzero id, unique in practice (not secret): the standard
/// library's per-process random hash keys mixed with the time and the
/// process id. Database ids and backup run ids come from here.
pub fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish() | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuple_id_bytes_round_trip_and_sort_as_the_ids() {
        let a = TupleId::new(PageId(2), SlotId(900));
        let b = TupleId::new(PageId(256), SlotId(1));
        assert_eq!(TupleId::from_bytes(&a.to_bytes()), Some(a));
        assert!(a.to_bytes() < b.to_bytes() && a < b);
        assert_eq!(TupleId::from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn tuple_id_round_trips_through_text() {
        let tid = TupleId::new(PageId(12), SlotId(3));
        assert_eq!(tid.to_string(), "12.3");
        assert_eq!("12.3".parse::<TupleId>(), Ok(tid));
        assert!("12".parse::<TupleId>().is_err());
        assert!("12.70000".parse::<TupleId>().is_err());
        assert!("a.b".parse::<TupleId>().is_err());
    }

    #[test]
    fn lsn_round_trips_in_both_forms() {
        let lsn = Lsn(0x1_0000_2000);
        assert_eq!(lsn.to_string(), "1/00002000");
        assert_eq!("1/00002000".parse::<Lsn>(), Ok(lsn));
        assert_eq!("4294975488".parse::<Lsn>(), Ok(lsn));
        let e = "x/1".parse::<Lsn>().unwrap_err();
        assert!(e.to_string().contains("Lsn"), "{e}");
    }

    #[test]
    fn ids_order_by_value() {
        assert!(PageId(1) < PageId(2));
        assert!(TupleId::new(PageId(1), SlotId(9)) < TupleId::new(PageId(2), SlotId(0)));
        assert_eq!("42".parse::<PageId>(), Ok(PageId(42)));
    }
}
