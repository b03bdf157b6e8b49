//! The field layout of every payload, as data: what docs/wal-records.md is
//! generated from (`keel docs wal-schema`).
//!
//! The codec (`encode.rs`, `decode.rs`) is written field by field; this
//! table states the same layout declaratively, and [`walk`] parses bytes by
//! it. A test encodes every sample payload and checks that [`walk`] consumes
//! exactly its bytes, so the table, and the diagrams generated from it,
//! cannot drift from the codec.

use crate::page::PAGE_SIZE;
use crate::wal::record::RecordType;

/// How a field is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Unsigned integer of this many bytes, little-endian.
    Uint(usize),
    /// Bytes whose count is the value of an earlier field of the same scope.
    Bytes(&'static str),
    /// The rest of a page image after its hole: `8192 - hole_offset - hole_len`.
    ImageTail,
    /// Zero bytes up to the end of the payload.
    Zeroes,
    /// A [`SlotImage`](super::SlotImage): kind byte, then tuple or forward.
    SlotImage,
    /// A list of items, counted by an earlier field.
    List(&'static str, &'static [Field]),
    /// A CLR's action: a payload of the type named by an earlier field.
    Action(&'static str),
}

/// One field of a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Its name (as in docs/storage.md).
    pub name: &'static str,
    /// How it is stored.
    pub ty: FieldType,
}

const fn f(name: &'static str, ty: FieldType) -> Field {
    Field { name, ty }
}

use FieldType::{Action, Bytes, ImageTail, List, Uint, Zeroes};

const RANGE: &[Field] = &[
    f("offset", Uint(2)),
    f("len", Uint(2)),
    f("bytes", Bytes("len")),
];
const RELOCATION: &[Field] = &[
    f("slot", Uint(2)),
    f("old_offset", Uint(2)),
    f("new_offset", Uint(2)),
    f("len", Uint(2)),
];

/// The fields of a slot image's two forms (after its kind byte).
pub const SLOT_IMAGE_TUPLE: &[Field] = &[
    f("kind", Uint(1)),
    f("flags", Uint(1)),
    f("len", Uint(2)),
    f("bytes", Bytes("len")),
];
/// A slot image holding a forward pointer.
pub const SLOT_IMAGE_FORWARD: &[Field] =
    &[f("kind", Uint(1)), f("page", Uint(4)), f("slot", Uint(2))];

const PADDING: &[Field] = &[f("zeroes", Zeroes)];
const PAGE_IMAGE: &[Field] = &[
    f("hole_offset", Uint(2)),
    f("hole_len", Uint(2)),
    f("before", Bytes("hole_offset")),
    f("after", ImageTail),
];
const MULTI_IMAGE: &[Field] = &[
    f("page", Uint(4)),
    f("hole_offset", Uint(2)),
    f("hole_len", Uint(2)),
    f("before", Bytes("hole_offset")),
    f("after", ImageTail),
];
const MULTI_PAGE_IMAGE: &[Field] = &[f("count", Uint(1)), f("images", List("count", MULTI_IMAGE))];
const TREE_SPLIT: &[Field] = &[
    f("keep", Uint(2)),
    f("sep_len", Uint(2)),
    f("sep", Bytes("sep_len")),
    f("right", Uint(4)),
    f("hole_offset", Uint(2)),
    f("hole_len", Uint(2)),
    f("before", Bytes("hole_offset")),
    f("after", ImageTail),
];
const PAGE_CHECK: &[Field] = &[
    f("of", Uint(8)),
    f("hole_offset", Uint(2)),
    f("hole_len", Uint(2)),
    f("before", Bytes("hole_offset")),
    f("after", ImageTail),
];
const PAGE_DELTA: &[Field] = &[f("count", Uint(2)), f("ranges", List("count", RANGE))];
const PAGE_INIT: &[Field] = &[f("page_type", Uint(1))];
const HEAP_INSERT: &[Field] = &[
    f("slot", Uint(2)),
    f("flags", Uint(1)),
    f("tuple_len", Uint(2)),
    f("tuple", Bytes("tuple_len")),
];
const MULTI_TUPLE: &[Field] = &[f("tuple_len", Uint(2)), f("tuple", Bytes("tuple_len"))];
const HEAP_MULTI_INSERT: &[Field] = &[
    f("first_slot", Uint(2)),
    f("flags", Uint(1)),
    f("count", Uint(2)),
    f("tuples", List("count", MULTI_TUPLE)),
];
const HEAP_MULTI_REMOVE: &[Field] = &[f("first_slot", Uint(2)), f("count", Uint(2))];
const HEAP_DELETE: &[Field] = &[f("slot", Uint(2)), f("old", FieldType::SlotImage)];
const HEAP_UPDATE: &[Field] = &[
    f("slot", Uint(2)),
    f("old", FieldType::SlotImage),
    f("new_flags", Uint(1)),
    f("new_len", Uint(2)),
    f("new", Bytes("new_len")),
];
const HEAP_FORWARD: &[Field] = &[
    f("slot", Uint(2)),
    f("target_page", Uint(4)),
    f("target_slot", Uint(2)),
    f("old", FieldType::SlotImage),
];
const HEAP_FREE_SLOT: &[Field] = &[f("slot", Uint(2))];
const PAGE_COMPACTION: &[Field] = &[
    f("count", Uint(2)),
    f("relocations", List("count", RELOCATION)),
];
const OVERFLOW_WRITE: &[Field] = &[
    f("index", Uint(4)),
    f("next", Uint(4)),
    f("chunk_len", Uint(2)),
    f("chunk", Bytes("chunk_len")),
];
const COMMIT: &[Field] = &[f("commit_time_us", Uint(8))];
const COMPENSATION: &[Field] = &[
    f("undo_next", Uint(8)),
    f("action_type", Uint(1)),
    f("action", Action("action_type")),
];
const CHECKPOINT_END: &[Field] = &[
    f("begin_lsn", Uint(8)),
    f("next_txn", Uint(8)),
    f("redo_start", Uint(8)),
    f("undo_start", Uint(8)),
    f("dirty_pages", Uint(8)),
    f("active_txns", Uint(8)),
];
const RELATION_CREATE: &[Field] = &[
    f("relation", Uint(4)),
    f("name_len", Uint(1)),
    f("name", Bytes("name_len")),
];
const TREE_ITEM: &[Field] = &[
    f("key_len", Uint(2)),
    f("key", Bytes("key_len")),
    f("rest_len", Uint(2)),
    f("rest", Bytes("rest_len")),
];
const TREE_ROOT_SWAP: &[Field] = &[
    f("old_root", Uint(4)),
    f("old_level", Uint(2)),
    f("new_root", Uint(4)),
    f("new_level", Uint(2)),
];
const RELATION_DROP: &[Field] = &[f("relation", Uint(4))];

/// The fields of `kind`'s payload, in order.
pub fn fields(kind: RecordType) -> &'static [Field] {
    use RecordType as T;
    match kind {
        T::Padding => PADDING,
        T::PageImage => PAGE_IMAGE,
        T::PageDelta => PAGE_DELTA,
        T::PageInit => PAGE_INIT,
        T::HeapInsert => HEAP_INSERT,
        T::HeapMultiInsert => HEAP_MULTI_INSERT,
        T::HeapMultiRemove => HEAP_MULTI_REMOVE,
        T::HeapDelete => HEAP_DELETE,
        T::HeapUpdate => HEAP_UPDATE,
        T::HeapForward => HEAP_FORWARD,
        T::HeapFreeSlot => HEAP_FREE_SLOT,
        T::PageCompaction => PAGE_COMPACTION,
        T::OverflowWrite => OVERFLOW_WRITE,
        T::PageCheck => PAGE_CHECK,
        T::OverflowFree | T::Begin | T::Abort | T::CheckpointBegin => &[],
        T::Commit => COMMIT,
        T::Compensation => COMPENSATION,
        T::CheckpointEnd => CHECKPOINT_END,
        T::TreeInsert | T::TreeDelete => TREE_ITEM,
        T::TreeRootSwap => TREE_ROOT_SWAP,
        T::MultiPageImage => MULTI_PAGE_IMAGE,
        T::TreeSplit => TREE_SPLIT,
        T::RelationCreate => RELATION_CREATE,
        T::RelationDrop => RELATION_DROP,
    }
}

/// Parses `bytes` as a payload of `kind` by the table alone and returns how
/// many bytes the fields take (the whole input for a faithful table). Only
/// lengths are followed; values are not checked.
pub fn walk(kind: RecordType, bytes: &[u8]) -> Result<usize, String> {
    let mut at = 0;
    walk_fields(fields(kind), bytes, &mut at)?;
    Ok(at)
}

fn take<'b>(bytes: &'b [u8], at: &mut usize, n: usize, name: &str) -> Result<&'b [u8], String> {
    let end = at
        .checked_add(n)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| format!("{name}: {n} bytes needed at offset {at}"))?;
    let s = &bytes[*at..end];
    *at = end;
    Ok(s)
}

fn uint(b: &[u8]) -> u64 {
    b.iter().rev().fold(0, |v, &x| (v << 8) | u64::from(x))
}

fn walk_fields(fields: &[Field], bytes: &[u8], at: &mut usize) -> Result<(), String> {
    let mut seen: Vec<(&str, u64)> = Vec::new();
    let value = |seen: &[(&str, u64)], name: &str| {
        seen.iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v as usize)
            .ok_or_else(|| format!("no earlier field {name}"))
    };
    for field in fields {
        match field.ty {
            Uint(n) => {
                let v = uint(take(bytes, at, n, field.name)?);
                seen.push((field.name, v));
            }
            Bytes(len) => {
                take(bytes, at, value(&seen, len)?, field.name)?;
            }
            ImageTail => {
                let hole = value(&seen, "hole_offset")? + value(&seen, "hole_len")?;
                take(bytes, at, PAGE_SIZE.saturating_sub(hole), field.name)?;
            }
            Zeroes => *at = bytes.len(),
            FieldType::SlotImage => {
                let kind = take(bytes, at, 1, "kind")?[0];
                *at -= 1;
                let form = match kind {
                    super::SLOT_IMAGE_FORWARD => SLOT_IMAGE_FORWARD,
                    _ => SLOT_IMAGE_TUPLE,
                };
                walk_fields(form, bytes, at)?;
            }
            List(count, item) => {
                for _ in 0..value(&seen, count)? {
                    walk_fields(item, bytes, at)?;
                }
            }
            Action(ty) => {
                let kind = RecordType::from_u8(value(&seen, ty)? as u8)
                    .ok_or_else(|| format!("{}: unknown action type", field.name))?;
                walk_fields(self::fields(kind), bytes, at)?;
            }
        }
    }
    Ok(())
}

/// The size of a field as the diagrams print it.
pub fn size_text(ty: FieldType) -> String {
    match ty {
        Uint(n) => format!("u{}", n * 8),
        Bytes(len) => format!("bytes[{len}]"),
        ImageTail => "bytes[8192 - hole_offset - hole_len]".into(),
        Zeroes => "zero bytes to the end".into(),
        FieldType::SlotImage => "SlotImage".into(),
        List(count, _) => format!("list[{count}]"),
        Action(ty) => format!("payload of {ty}"),
    }
}
