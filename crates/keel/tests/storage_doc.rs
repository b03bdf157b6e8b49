//! docs/storage.md describes every on-disk layout in prose; the code defines
//! each once as constants. This test parses the documented tables and checks
//! them against the constants, so neither can drift (invariant 1).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use keel::page::header::{
    HEADER_SIZE, NO_PAGE, PAGE_FORMAT_VERSION, PAGE_MAGIC, PAGE_SIZE, offsets,
};
use keel::page::overflow::{
    CHUNK_CAPACITY, CHUNK_DATA_OFFSET, CHUNK_INDEX_OFFSET, CHUNK_LEN_OFFSET, CHUNK_RESERVED_OFFSET,
    OverflowHead, head_offsets,
};
use keel::page::slotted::{MAX_TUPLE_LEN, SLOT_LENGTH_WORD, SLOT_OFFSET_WORD, SLOT_SIZE};

const DOC: &str = include_str!("../../../docs/storage.md");

/// Rows `(offset, size, field)` of the first table under `### {section}`.
fn table(section: &str) -> Vec<(usize, usize, String)> {
    let heading = format!("### {section}\n");
    let start = DOC
        .find(&heading)
        .unwrap_or_else(|| panic!("docs/storage.md has no section {section:?}"));
    let body = &DOC[start + heading.len()..];
    let body = &body[..body.find("\n#").unwrap_or(body.len())];
    body.lines()
        .filter(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let offset = cells.first()?.parse().ok()?;
            let size = cells.get(1)?.parse().ok()?;
            Some((offset, size, cells.get(2)?.to_string()))
        })
        .collect()
}

fn check(section: &str, expected: &[(&str, usize, usize)]) {
    let rows = table(section);
    let got: Vec<(&str, usize, usize)> =
        rows.iter().map(|(o, s, f)| (f.as_str(), *o, *s)).collect();
    assert_eq!(
        got, expected,
        "docs/storage.md section {section:?} disagrees with the code"
    );
    // Fields are contiguous: each starts where the previous ended.
    for pair in rows.windows(2) {
        assert_eq!(
            pair[0].0 + pair[0].1,
            pair[1].0,
            "gap or overlap before {:?}",
            pair[1].2
        );
    }
}

#[test]
fn page_header_matches_constants() {
    use offsets::*;
    // The same field list the generated diagrams (docs/headers.md) use.
    check("Page header", &keel::docs::page_header());
    assert_eq!(RESERVED + 2, HEADER_SIZE);
    assert!(DOC.contains(&format!("{PAGE_SIZE}-byte pages")));
    assert!(DOC.contains(&format!("same {HEADER_SIZE}-byte header")));
    assert!(DOC.contains(&format!("{:#X} as a u32", PAGE_MAGIC).replace("0X", "0x")));
    assert!(DOC.contains(&format!("page format version, {PAGE_FORMAT_VERSION}")));
    assert!(DOC.contains(&format!("{NO_PAGE:#X} for none").replace("0X", "0x")));
}

#[test]
fn slot_entry_matches_constants() {
    check(
        "Slot entry",
        &[
            ("offset", SLOT_OFFSET_WORD, 2),
            ("length", SLOT_LENGTH_WORD, 2),
        ],
    );
    assert_eq!(SLOT_SIZE, 4);
    assert!(DOC.contains(&format!("8192 - 40 - 4 = {MAX_TUPLE_LEN} bytes")));
}

#[test]
fn overflow_layouts_match_constants() {
    use head_offsets::*;
    check(
        "Overflow head",
        &[
            ("total_len", TOTAL_LEN, 8),
            ("first_page", FIRST_PAGE, 4),
            ("page_count", PAGE_COUNT, 4),
            ("value_crc", VALUE_CRC, 4),
            ("reserved", RESERVED, 4),
        ],
    );
    assert_eq!(RESERVED + 4, OverflowHead::SIZE);
    check(
        "Overflow page",
        &[
            ("chunk_len", CHUNK_LEN_OFFSET, 2),
            ("reserved", CHUNK_RESERVED_OFFSET, 2),
            ("chunk_index", CHUNK_INDEX_OFFSET, 4),
            ("chunk", CHUNK_DATA_OFFSET, CHUNK_CAPACITY),
        ],
    );
    assert_eq!(CHUNK_DATA_OFFSET + CHUNK_CAPACITY, PAGE_SIZE);
    assert!(DOC.contains(&format!("chunks of at most {CHUNK_CAPACITY} bytes")));
}

/// Rows `(offset, size, field)` of the first table under the exact heading
/// line `heading`, as text (variable offsets and sizes are formulas).
fn layout(heading: &str) -> Vec<(String, String, String)> {
    let start = DOC
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("docs/storage.md has no heading {heading:?}"));
    let body = &DOC[start + heading.len() + 2..];
    let body = &body[..body.find("\n#").unwrap_or(body.len())];
    body.lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and alignment rows
        .map(|l| {
            let c: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            (c[0].clone(), c[1].clone(), c[2].clone())
        })
        .collect()
}

/// A payload of `kind` whose variable parts are all empty.
fn smallest_payload(kind: keel::wal::record::RecordType) -> keel::wal::payload::Payload {
    use keel::page::{PageType, TupleFlags};
    use keel::wal::payload::{Payload, SlotImage};
    use keel::wal::record::RecordType as T;
    use keel::{Lsn, RelationId, SlotId, TxnId};
    let empty = SlotImage::Tuple {
        flags: TupleFlags::NONE,
        bytes: vec![],
    };
    match kind {
        T::Padding => Payload::Padding { len: 0 },
        T::PageImage => Payload::PageImage {
            image: Box::new([0; PAGE_SIZE]),
        },
        T::PageCheck => Payload::PageCheck {
            of: Lsn(1),
            image: Box::new([0; PAGE_SIZE]),
        },
        T::PageDelta => Payload::PageDelta { ranges: vec![] },
        T::PageInit => Payload::PageInit {
            page_type: PageType::Heap,
        },
        T::HeapInsert => Payload::HeapInsert {
            slot: SlotId(1),
            flags: TupleFlags::NONE,
            tuple: vec![],
        },
        T::HeapMultiInsert => Payload::HeapMultiInsert {
            first: SlotId(1),
            flags: TupleFlags::NONE,
            tuples: keel::wal::TupleBatch::default(),
        },
        T::HeapMultiRemove => Payload::HeapMultiRemove {
            first: SlotId(1),
            count: 2,
        },
        T::HeapDelete => Payload::HeapDelete {
            slot: SlotId(1),
            old: empty,
        },
        T::HeapUpdate => Payload::HeapUpdate {
            slot: SlotId(1),
            old: empty,
            new_flags: TupleFlags::NONE,
            new: vec![],
        },
        T::HeapForward => Payload::HeapForward {
            slot: SlotId(1),
            target: keel::TupleId::default(),
            old: empty,
        },
        T::HeapFreeSlot => Payload::HeapFreeSlot { slot: SlotId(1) },
        T::PageCompaction => Payload::PageCompaction {
            relocations: vec![],
        },
        T::OverflowWrite => Payload::OverflowWrite {
            index: 0,
            next: NO_PAGE,
            chunk: vec![],
        },
        T::OverflowFree => Payload::OverflowFree,
        T::Begin => Payload::Begin,
        T::Commit => Payload::Commit { commit_time_us: 1 },
        T::Abort => Payload::Abort,
        T::Compensation => Payload::Compensation {
            undo_next: Lsn(1),
            action: Box::new(Payload::OverflowFree),
        },
        T::CheckpointBegin => Payload::CheckpointBegin,
        T::CheckpointEnd => Payload::CheckpointEnd {
            begin_lsn: Lsn(1),
            next_txn: TxnId(1),
            redo_start: Lsn(1),
            undo_start: Lsn(1),
            dirty_pages: 0,
            active_txns: 0,
        },
        T::RelationCreate => Payload::RelationCreate {
            relation: RelationId(1),
            name: String::new(),
        },
        T::RelationDrop => Payload::RelationDrop {
            relation: RelationId(1),
        },
        T::TreeInsert => Payload::TreeInsert {
            key: vec![],
            rest: vec![],
        },
        T::TreeDelete => Payload::TreeDelete {
            key: vec![],
            rest: vec![],
        },
        T::TreeRootSwap => Payload::TreeRootSwap {
            old: keel::PageId(1),
            old_level: 0,
            new: keel::PageId(2),
            new_level: 1,
        },
        T::MultiPageImage => {
            let mut a = Box::new([0u8; keel::page::PAGE_SIZE]);
            keel::page::init_page(&mut a[..], keel::PageId(2), keel::page::PageType::Free).unwrap();
            let mut b = Box::new([0u8; keel::page::PAGE_SIZE]);
            keel::page::init_page(&mut b[..], keel::PageId(5), keel::page::PageType::Free).unwrap();
            Payload::MultiPageImage {
                images: vec![(keel::PageId(2), a), (keel::PageId(5), b)],
            }
        }
        T::TreeSplit => {
            let mut image = Box::new([0u8; keel::page::PAGE_SIZE]);
            keel::page::init_page(
                &mut image[..],
                keel::PageId(5),
                keel::page::PageType::TreeLeaf,
            )
            .unwrap();
            Payload::TreeSplit {
                keep: 1,
                sep: vec![],
                right: keel::PageId(5),
                image,
            }
        }
    }
}

#[test]
fn wal_record_header_matches_constants() {
    use keel::wal::record::{RECORD_HEADER_SIZE, offsets::*};
    check("WAL record header", &keel::docs::record_header());
    assert_eq!(RESERVED + 2, RECORD_HEADER_SIZE);
    assert!(DOC.contains(&format!(
        "its {RECORD_HEADER_SIZE}-byte header plus its payload"
    )));
}

/// The payload summary table lists every record type with its code, and
/// the size of every fixed-size payload; each type's layout table starts at
/// offset 0, is contiguous where its sizes are numbers, and adds up to
/// `encoded_len()` when all of them are.
#[test]
fn wal_payload_layouts_match_encoded_len() {
    use keel::wal::record::RecordType;
    let summary = layout("### WAL payloads");
    assert_eq!(summary.len(), RecordType::ALL.len());
    for &kind in RecordType::ALL {
        let row = summary
            .iter()
            .find(|r| r.2 == kind.name())
            .unwrap_or_else(|| panic!("{} missing from the payload table", kind.name()));
        assert_eq!(row.0, (kind as u8).to_string(), "code of {}", kind.name());
        let sample = smallest_payload(kind);
        assert_eq!(sample.kind(), kind);
        if let Ok(size) = row.1.parse::<usize>() {
            assert_eq!(size, sample.encoded_len(), "size of {}", kind.name());
        }
        let rows = layout(&format!("#### {} ({})", kind.name(), kind as u8));
        let mut at = 0;
        let mut fixed = true;
        for (off, size, field) in &rows {
            match (off.parse::<usize>(), size.parse::<usize>()) {
                (Ok(o), Ok(s)) if fixed => {
                    assert_eq!(o, at, "{}: {field} is not contiguous", kind.name());
                    at += s;
                }
                _ => fixed = false,
            }
        }
        if fixed {
            assert_eq!(at, sample.encoded_len(), "layout of {}", kind.name());
        }
        if let Ok(size) = row.1.parse::<usize>() {
            assert!(
                fixed,
                "{} has a fixed size but a variable layout",
                kind.name()
            );
            assert_eq!(size, at, "size of {}", kind.name());
        }
    }
}

#[test]
fn fsm_page_matches_constants() {
    use keel::fsm::category::{CATEGORY_BYTES, EMPTY_PAGE_FREE};
    use keel::fsm::page::{ENTRIES_PER_PAGE, UNTRACKED, offsets::*};
    check(
        "FSM page",
        &[
            ("first_page", FIRST_PAGE, 4),
            ("covered_pages", COVERED_PAGES, 4),
            ("entry_count", ENTRY_COUNT, 2),
            ("category_size", CATEGORY_SIZE, 2),
            ("contiguous", CONTIGUOUS, ENTRIES_PER_PAGE),
            ("total", TOTAL, ENTRIES_PER_PAGE),
        ],
    );
    assert_eq!(FIRST_PAGE, HEADER_SIZE);
    assert_eq!(TOTAL + ENTRIES_PER_PAGE, PAGE_SIZE);
    assert!(DOC.contains(&format!("promises `c * {CATEGORY_BYTES}` bytes")));
    assert!(DOC.contains(&format!("255\npromises {EMPTY_PAGE_FREE} bytes")));
    assert!(DOC.contains(&format!(
        "i * {ENTRIES_PER_PAGE} + {}",
        ENTRIES_PER_PAGE - 1
    )));
    assert!(
        DOC.contains(&format!("({:#04X}, {:#04X})", UNTRACKED.0, UNTRACKED.1).replace("0X", "0x"))
    );
}

#[test]
fn wal_segment_header_matches_constants() {
    use keel::wal::segment::{
        SEGMENT_FORMAT_VERSION, SEGMENT_HEADER_SIZE, SEGMENT_HEADER_USED, SEGMENT_MAGIC, offsets,
    };
    check("WAL segment header", &keel::docs::segment_header());
    assert_eq!(offsets::CRC + 4, SEGMENT_HEADER_USED);
    assert!(DOC.contains(&format!(
        "| 20     | 4    | header_size  | {SEGMENT_HEADER_SIZE} |"
    )));
    assert!(DOC.contains(&format!("{:#X} as a u32", SEGMENT_MAGIC).replace("0X", "0x")));
    assert!(DOC.contains(&format!("segment format version, {SEGMENT_FORMAT_VERSION}")));
}

#[test]
fn control_file_matches_constants() {
    use keel::recovery::control::{CONTROL_SIZE, offsets};
    check(
        "Control file",
        &[
            ("magic", offsets::MAGIC, 4),
            ("version", offsets::VERSION, 2),
            ("flags", offsets::FLAGS, 2),
            ("crc32c", offsets::CRC, 4),
            ("next_relation", offsets::NEXT_RELATION, 4),
            ("database_id", offsets::DATABASE_ID, 8),
            ("redo_start", offsets::REDO_START, 8),
            ("checkpoint_end", offsets::CHECKPOINT_END, 8),
            ("undo_start", offsets::UNDO_START, 8),
            ("next_txn", offsets::NEXT_TXN, 8),
            ("reserved", offsets::RESERVED, 8),
        ],
    );
    assert_eq!(offsets::RESERVED + 8, CONTROL_SIZE);
}

/// The images file's header and entry (docs/storage.md "Page images"):
/// the tables' offsets are where the code puts each field, and an entry
/// built from the entry table's layout decodes.
#[test]
fn page_images_file_matches_the_code() {
    use keel::page_images::{
        IMAGE_ENTRY_HEADER_LEN, IMAGES_HEADER_LEN, IMAGES_MAGIC, IMAGES_VERSION, ImagesHeader,
        decode_entries,
    };
    check(
        "Page images",
        &[
            ("magic", 0, 8),
            ("version", 8, 4),
            ("crc32c", 12, 4),
            ("database_id", 16, 8),
            ("epoch", 24, 8),
        ],
    );
    assert_eq!(IMAGES_HEADER_LEN, 32);
    let header = ImagesHeader {
        database_id: 0x0102_0304_0506_0708,
        epoch: keel::Lsn(0x1122_3344),
    }
    .encode();
    assert_eq!(header[0..8], IMAGES_MAGIC);
    assert_eq!(header[8..12], IMAGES_VERSION.to_le_bytes());
    assert_eq!(header[16..24], 0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(header[24..32], 0x1122_3344u64.to_le_bytes());

    check(
        "Images file entry",
        &[
            ("length", 0, 4),
            ("crc32c", 4, 4),
            ("epoch", 8, 8),
            ("relation", 16, 4),
            ("page", 20, 4),
        ],
    );
    assert_eq!(IMAGE_ENTRY_HEADER_LEN, 24);
    // An entry laid out by the table: a page with no hole (offset and
    // length 0), then the page.
    let page = vec![0x5Au8; keel::page::PAGE_SIZE];
    let mut body = Vec::new();
    body.extend_from_slice(&77u64.to_le_bytes());
    body.extend_from_slice(&5u32.to_le_bytes());
    body.extend_from_slice(&9u32.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&page);
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&keel::checksum::crc32c(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    let (entries, end) = decode_entries(&bytes);
    assert_eq!(end as usize, bytes.len(), "the entry decodes whole");
    assert_eq!(
        (entries[0].epoch.0, entries[0].relation.0, entries[0].page.0),
        (77, 5, 9)
    );
    assert_eq!(entries[0].image[..], page[..]);
}

/// Rows `(offset, size, field)` of the table under the exact heading line
/// `heading` whose offset and size are numbers (rows with formulas are left
/// out), checked to be contiguous.
fn numeric_layout(heading: &str) -> Vec<(String, usize, usize)> {
    let rows: Vec<(String, usize, usize)> = layout(heading)
        .into_iter()
        .filter_map(|(o, s, f)| Some((f, o.parse().ok()?, s.parse().ok()?)))
        .collect();
    for pair in rows.windows(2) {
        assert_eq!(
            pair[0].1 + pair[0].2,
            pair[1].1,
            "{heading}: gap or overlap before {:?}",
            pair[1].0
        );
    }
    rows
}

/// `numeric_layout(heading)` equals `expected`.
fn check_numeric(heading: &str, expected: &[(&str, usize, usize)]) {
    let got = numeric_layout(heading);
    let got: Vec<(&str, usize, usize)> = got.iter().map(|(f, o, s)| (f.as_str(), *o, *s)).collect();
    assert_eq!(
        got, expected,
        "docs/storage.md {heading:?} disagrees with the code"
    );
}

#[test]
fn tree_pages_match_constants() {
    use keel::page::PageType;
    use keel::page::tree::{
        FLAG_INCOMPLETE_SPLIT, KEY_PREFIX_LEN, MAX_ITEM_LEN, MAX_KEY_LEN, MAX_LEVEL,
        TREE_HEADER_SIZE, TREE_SLOT_SIZE, VALUE_INLINE, VALUE_OVERFLOW, offsets,
    };
    check_numeric(
        "#### Tree meta page",
        &[
            ("root", offsets::META_ROOT, 4),
            ("root_level", offsets::META_LEVEL, 2),
            ("layout_version", offsets::META_LAYOUT, 2),
        ],
    );
    assert_eq!(offsets::META_ROOT, HEADER_SIZE);
    check_numeric(
        "#### Tree node",
        &[
            ("level", offsets::LEVEL, 2),
            ("flags", offsets::FLAGS, 2),
            ("high_offset", offsets::HIGH_OFFSET, 2),
            ("high_len", offsets::HIGH_LEN, 2),
            ("high_prefix", offsets::HIGH_PREFIX, KEY_PREFIX_LEN),
        ],
    );
    assert_eq!(offsets::LEVEL, HEADER_SIZE);
    assert_eq!(offsets::HIGH_LEN + 2, offsets::HIGH_PREFIX);
    assert_eq!(offsets::HIGH_PREFIX + KEY_PREFIX_LEN, TREE_HEADER_SIZE);
    let node = layout("#### Tree node");
    assert_eq!(
        node.last().unwrap(),
        &(
            TREE_HEADER_SIZE.to_string(),
            format!("{TREE_SLOT_SIZE} * slot_count"),
            "slots".to_owned()
        )
    );
    assert!(DOC.contains(&format!(
        "`lower` is `{TREE_HEADER_SIZE} + {TREE_SLOT_SIZE} * slot_count`"
    )));
    assert!(DOC.contains(&format!(
        "bit 0 `INCOMPLETE_SPLIT` (value {FLAG_INCOMPLETE_SPLIT})"
    )));
    assert!(DOC.contains(&format!("| 0 for a leaf, at most {MAX_LEVEL} |")));
    assert!(DOC.contains(&format!("a level above {MAX_LEVEL} is corrupt")));
    assert!(DOC.contains(&format!("length of the high key, at most {MAX_KEY_LEN};")));
    check_numeric(
        "#### Tree slot entry",
        &[
            ("offset", 0, 2),
            ("length", 2, 2),
            ("prefix", 4, KEY_PREFIX_LEN),
        ],
    );
    assert_eq!(TREE_SLOT_SIZE, 4 + KEY_PREFIX_LEN);
    let item = layout("#### Tree item");
    let expect = |o: &str, s: &str, f: &str| (o.to_owned(), s.to_owned(), f.to_owned());
    assert_eq!(
        item,
        [
            expect("0", "2", "key_len"),
            expect("2", "key_len", "key"),
            expect("2 + key_len", "rest", "rest"),
        ]
    );
    assert!(DOC.contains(&format!("| 0 | 2 | key_len | at most {MAX_KEY_LEN} |")));
    assert!(DOC.contains(&format!("kind {VALUE_INLINE} (inline)")));
    assert!(DOC.contains(&format!(
        "kind {VALUE_OVERFLOW} (overflow), a {}-byte overflow head",
        OverflowHead::SIZE
    )));
    assert!(DOC.contains(&format!(
        "overflow value part is exactly {} bytes",
        1 + OverflowHead::SIZE
    )));
    assert!(DOC.contains(&format!("item is at most {MAX_ITEM_LEN} bytes")));
    // Every page type is listed with its code where the docs list them.
    let types: Vec<String> = (0..=u8::MAX)
        .filter_map(PageType::from_u8)
        .map(|t| format!("{} {}", t as u8, t.name()))
        .collect();
    let listed = types.join(", ");
    assert_eq!(DOC.matches(&format!("| {listed} |")).count(), 2, "{listed}");
    for t in [
        PageType::TreeMeta,
        PageType::TreeInternal,
        PageType::TreeLeaf,
    ] {
        assert!(DOC.contains(&format!("page type {}, {}", t as u8, t.name())));
    }
}
