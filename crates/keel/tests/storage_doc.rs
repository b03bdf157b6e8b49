//! docs/storage.md describes every on-disk layout in prose; the code defines
//! each once as constants. This test parses the documented tables and checks
//! them against the constants, so neither can drift (invariant 1).

#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

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
    check(
        "Page header",
        &[
            ("magic", MAGIC, 4),
            ("version", VERSION, 2),
            ("page_type", PAGE_TYPE, 1),
            ("flags", FLAGS, 1),
            ("page_id", PAGE_ID, 4),
            ("checksum", CHECKSUM, 4),
            ("lsn", LSN, 8),
            ("lower", LOWER, 2),
            ("upper", UPPER, 2),
            ("slot_count", SLOT_COUNT, 2),
            ("frag_bytes", FRAG_BYTES, 2),
            ("next_page", NEXT_PAGE, 4),
            ("free_hint", FREE_HINT, 2),
            ("reserved", RESERVED, 2),
        ],
    );
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
