//! One-line payload descriptions, as `keel inspect wal` prints them after
//! the record type (STYLE.md §7: one formatter for tests and the CLI).

use std::fmt::Write as _;

use crate::page::{NO_PAGE, PAGE_SIZE, Relocation, TupleFlags};
use crate::types::SlotId;

use super::encode::image_hole;
use super::{Payload, SlotImage, TupleBatch};

/// Ranges or relocations listed before the summary says "…".
const LISTED_ITEMS: usize = 4;

/// `-` for no flags, else their names joined by `,`.
fn flags(f: TupleFlags) -> String {
    let mut names = Vec::new();
    if f.contains(TupleFlags::OVERFLOW_HEAD) {
        names.push("overflow-head");
    }
    if f.contains(TupleFlags::MOVED_IN) {
        names.push("moved-in");
    }
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(",")
    }
}

fn tuple(f: TupleFlags, bytes: &[u8]) -> String {
    format!("{} B, flags {}", bytes.len(), flags(f))
}

fn image(img: &SlotImage) -> String {
    match img {
        SlotImage::Tuple { flags: f, bytes } => format!("tuple {}", tuple(*f, bytes)),
        SlotImage::Forward(tid) => format!("forward -> {tid}"),
    }
}

/// A page image's size and elided hole.
fn page(image: &[u8; PAGE_SIZE]) -> String {
    match image_hole(image) {
        (_, 0) => format!("{PAGE_SIZE} B page, no hole"),
        (off, len) => format!(
            "{PAGE_SIZE} B page, hole {off}..{} ({len} B elided)",
            off + len
        ),
    }
}

fn list<T>(items: &[T], item: impl Fn(&T) -> String) -> String {
    let mut s: Vec<String> = items.iter().take(LISTED_ITEMS).map(item).collect();
    if items.len() > LISTED_ITEMS {
        s.push("…".to_owned());
    }
    s.join(" ")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `2 ranges, 14 B: 24+8, 100+6`.
fn delta(ranges: &[(u16, Vec<u8>)]) -> String {
    let total: usize = ranges.iter().map(|(_, b)| b.len()).sum();
    let mut s = format!("{}, {total} B", plural(ranges.len(), "range", "ranges"));
    if !ranges.is_empty() {
        let _ = write!(s, ": {}", list(ranges, |(o, b)| format!("{o}+{}", b.len())));
    }
    s
}

/// `2 relocations, 240 B: 3:8000->8100, …`.
fn compaction(relocations: &[Relocation]) -> String {
    let moved: usize = relocations.iter().map(|r| usize::from(r.len)).sum();
    let mut s = format!(
        "{}, {moved} B",
        plural(relocations.len(), "relocation", "relocations")
    );
    if !relocations.is_empty() {
        let each = |r: &Relocation| format!("{}:{}->{}", r.slot, r.old_offset, r.new_offset);
        let _ = write!(s, ": {}", list(relocations, each));
    }
    s
}

/// `slots 3..=14, 12 tuples, 1296 B, flags -`.
fn multi_insert(first: SlotId, f: TupleFlags, tuples: &TupleBatch) -> String {
    format!(
        "{}, {}, {} B, flags {}",
        run(first, tuples.len()),
        plural(tuples.len(), "tuple", "tuples"),
        tuples.tuple_bytes(),
        flags(f)
    )
}

/// A key in hex, its first 16 bytes and its length when longer.
fn short_hex(key: &[u8]) -> String {
    let mut s: String = key.iter().take(16).map(|b| format!("{b:02x}")).collect();
    if key.len() > 16 {
        let _ = write!(s, "… ({} B)", key.len());
    }
    if s.is_empty() {
        s.push_str("(empty)");
    }
    s
}

/// `slots 3..=14`, `slot 3`, `no slot`.
fn run(first: SlotId, count: usize) -> String {
    match count {
        0 => "no slot".into(),
        1 => format!("slot {first}"),
        n => format!("slots {first}..={}", usize::from(first.0) + n - 1),
    }
}

impl Payload {
    /// A one-line description of the payload, without the record type:
    /// `slot 3, 120 B, flags -`, `undo-next 0/00001234, heap-delete slot 4,
    /// was tuple 120 B, flags -`, `12 dirty pages, 3 txns, …`. Empty for
    /// payloads with no fields.
    pub fn summary(&self) -> String {
        match self {
            Payload::Padding { len } => format!("{len} B"),
            Payload::PageImage { image } => page(image),
            Payload::MultiPageImage { images } => images
                .iter()
                .map(|(p, image)| format!("page {p}: {}", page(image)))
                .collect::<Vec<_>>()
                .join("; "),
            Payload::TreeSplit {
                keep,
                sep,
                right,
                image,
            } => format!(
                "keep {}, high key {}, right page {right}: {}",
                plural(usize::from(*keep), "item", "items"),
                short_hex(sep),
                page(image)
            ),
            Payload::PageCheck { of, image } => format!("of {of}, {}", page(image)),
            Payload::PageDelta { ranges } => delta(ranges),
            Payload::PageInit { page_type } => format!("{} page", page_type.name()),
            Payload::HeapInsert {
                slot,
                flags: f,
                tuple: t,
            } => format!("slot {slot}, {}", tuple(*f, t)),
            Payload::HeapMultiInsert {
                first,
                flags: f,
                tuples,
            } => multi_insert(*first, *f, tuples),
            Payload::HeapMultiRemove { first, count } => run(*first, usize::from(*count)),
            Payload::HeapDelete { slot, old } => format!("slot {slot}, was {}", image(old)),
            Payload::HeapUpdate {
                slot,
                old,
                new_flags,
                new,
            } => format!(
                "slot {slot}, {}, was {}",
                tuple(*new_flags, new),
                image(old)
            ),
            Payload::HeapForward { slot, target, old } => {
                format!("slot {slot} -> {target}, was {}", image(old))
            }
            Payload::HeapFreeSlot { slot } => format!("slot {slot}"),
            Payload::PageCompaction { relocations } => compaction(relocations),
            Payload::OverflowWrite { index, next, chunk } => {
                let next = match *next {
                    NO_PAGE => "none".to_owned(),
                    p => p.to_string(),
                };
                format!("chunk {index}, {} B, next page {next}", chunk.len())
            }
            Payload::OverflowFree | Payload::Begin | Payload::Abort | Payload::CheckpointBegin => {
                String::new()
            }
            Payload::Commit { commit_time_us } => format!("at {commit_time_us} us"),
            Payload::Compensation { undo_next, action } => {
                let mut s = format!("undo-next {undo_next}, {}", action.kind().name());
                let inner = action.summary();
                if !inner.is_empty() {
                    let _ = write!(s, " {inner}");
                }
                s
            }
            Payload::CheckpointEnd {
                begin_lsn,
                next_txn,
                redo_start,
                undo_start,
                dirty_pages,
                active_txns,
            } => format!(
                "{}, {}, begin {begin_lsn}, redo {redo_start}, undo {undo_start}, next txn {next_txn}",
                plural(*dirty_pages as usize, "dirty page", "dirty pages"),
                plural(*active_txns as usize, "txn", "txns")
            ),
            Payload::TreeInsert { key, rest } | Payload::TreeDelete { key, rest } => {
                format!("key {}, {} B", short_hex(key), rest.len())
            }
            Payload::TreeRootSwap {
                old,
                old_level,
                new,
                new_level,
            } => format!("root {old} (level {old_level}) -> {new} (level {new_level})"),
            Payload::RelationCreate { relation, name } => format!("relation {relation} {name:?}"),
            Payload::RelationDrop { relation } => format!("relation {relation}"),
        }
    }
}
