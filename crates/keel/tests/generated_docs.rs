#![allow(clippy::unwrap_used, clippy::expect_used)]
//! docs/wal-records.md and docs/headers.md are generated from the code
//! (`keel::docs`); this test fails when they are stale. Regenerate with
//! `KEEL_UPDATE_DOCS=1 cargo test -p keel --test generated_docs`.

use std::path::PathBuf;

fn doc(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name)
}

#[test]
fn generated_documents_are_current() {
    for (name, text) in [
        ("wal-records.md", keel::docs::wal_records_markdown()),
        ("headers.md", keel::docs::headers_markdown()),
    ] {
        let path = doc(name);
        if std::env::var_os("KEEL_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "docs/{name} is stale; regenerate with \
             KEEL_UPDATE_DOCS=1 cargo test -p keel --test generated_docs"
        );
    }
}

#[test]
fn header_field_lists_cover_their_headers_without_gaps() {
    use keel::docs::{page_header, record_header, segment_header};
    for (fields, size) in [
        (page_header(), keel::page::HEADER_SIZE),
        (record_header(), keel::wal::record::RECORD_HEADER_SIZE),
        (segment_header(), keel::wal::segment::SEGMENT_HEADER_USED),
    ] {
        assert_eq!(fields[0].1, 0);
        for pair in fields.windows(2) {
            assert_eq!(pair[0].1 + pair[0].2, pair[1].1, "gap before {}", pair[1].0);
        }
        let last = fields.last().unwrap();
        assert_eq!(last.1 + last.2, size);
    }
}

#[test]
fn every_record_type_has_a_class() {
    let text = keel::docs::wal_records_markdown();
    for &kind in keel::wal::record::RecordType::ALL {
        assert!(
            text.contains(&format!("<<type {}>>", kind as u8)),
            "{} missing",
            kind.name()
        );
    }
}
