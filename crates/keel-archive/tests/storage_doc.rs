//! docs/storage.md describes the archive chunk in prose; `chunk.rs` defines
//! it as constants. This test parses the documented table and checks it
//! against the constants, so neither can drift (invariant 1).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use keel_archive::chunk::{
    CHUNK_HEADER_SIZE, CHUNK_MAGIC, CHUNK_VERSION, MAX_RAW_BYTES, MAX_START_GAP, offsets::*,
};

const DOC: &str = include_str!("../../../docs/storage.md");

/// Rows `(field, offset, size)` of the first table under `### {section}`.
fn table(section: &str) -> Vec<(String, usize, usize)> {
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
            Some((cells.get(2)?.to_string(), offset, size))
        })
        .collect()
}

#[test]
fn chunk_header_matches_constants() {
    let rows = table("WAL archive chunk header");
    let expected = [
        ("magic", MAGIC, 4),
        ("version", VERSION, 2),
        ("header_size", HEADER_SIZE, 2),
        ("database_id", DATABASE_ID, 8),
        ("timeline", TIMELINE, 4),
        ("record_count", RECORD_COUNT, 4),
        ("start_lsn", START_LSN, 8),
        ("end_lsn", END_LSN, 8),
        ("min_commit_time_us", MIN_COMMIT_TIME, 8),
        ("max_commit_time_us", MAX_COMMIT_TIME, 8),
        ("body_len", BODY_LEN, 4),
        ("raw_len", RAW_LEN, 4),
        ("body_crc32c", BODY_CRC, 4),
        ("header_crc32c", HEADER_CRC, 4),
    ];
    let got: Vec<(&str, usize, usize)> =
        rows.iter().map(|(f, o, s)| (f.as_str(), *o, *s)).collect();
    assert_eq!(got, expected, "docs/storage.md disagrees with chunk.rs");
    for pair in rows.windows(2) {
        assert_eq!(
            pair[0].1 + pair[0].2,
            pair[1].1,
            "gap or overlap before {}",
            pair[1].0
        );
    }
    let last = rows.last().unwrap();
    assert_eq!(last.1 + last.2, CHUNK_HEADER_SIZE);
    assert!(DOC.contains(&format!("A {CHUNK_HEADER_SIZE}-byte header")));
    assert!(DOC.contains(&format!("{:#X} as a u32", CHUNK_MAGIC).replace("0X", "0x")));
    assert!(DOC.contains(&format!("chunk format version, {CHUNK_VERSION}")));
    assert!(DOC.contains(&format!("exactly {CHUNK_HEADER_SIZE} + body_len bytes")));
    assert!(DOC.contains(&format!("1 to {} |", group(MAX_RAW_BYTES as u64))));
    assert!(DOC.contains(&format!("at most {} bytes", group(MAX_START_GAP))));
    assert!(DOC.contains("<prefix>/wal/<timeline:08X>/<start LSN:016X>.chunk"));
}

/// `12345678` as `12,345,678`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The first word of each line of the last ```text block under `### {section}`.
fn text_block_keys(section: &str) -> Vec<String> {
    let heading = format!("### {section}\n");
    let start = DOC.find(&heading).unwrap();
    let body = &DOC[start + heading.len()..];
    let body = &body[..body.find("\n### ").unwrap_or(body.len())];
    let block = body.rsplit("```text\n").next().unwrap();
    let block = &block[..block.find("```").unwrap()];
    block
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn fence_and_standby_marker_formats_match_the_code() {
    let fence = keel_archive::fence::Fence {
        database_id: 1,
        timeline: 1,
        successor: 2,
        switch: keel::types::Lsn(0x34567),
        standby_id: 7,
        created_us: 1,
    };
    let encoded = String::from_utf8(fence.encode()).unwrap();
    let keys: Vec<String> = encoded
        .lines()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(text_block_keys("Fences"), keys, "docs/storage.md, Fences");
    let marker = text_block_keys("Warm standby");
    assert_eq!(
        marker,
        ["D/standby", "keel-standby", "timeline", "id"],
        "docs/storage.md, Warm standby"
    );
    assert_eq!(keel_archive::standby::STANDBY_MAGIC, "keel-standby");
    assert_eq!(keel::datadir::layout::STANDBY_FILE, "standby");
}
