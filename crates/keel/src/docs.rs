//! Diagrams of the on-disk formats, generated from the code's own
//! definitions: the payload table of [`crate::wal::payload::schema`] and
//! the header offset constants. `keel docs` prints them; docs/wal-records.md
//! and docs/headers.md hold their output, and a test fails when those files
//! are stale (regenerate with `KEEL_UPDATE_DOCS=1 cargo test -p keel --test
//! generated_docs`, or `keel docs wal-schema > docs/wal-records.md` and
//! `keel docs headers > docs/headers.md`).

use std::fmt::Write as _;

use crate::page::header::{HEADER_SIZE, offsets as page};
use crate::wal::payload::schema::{
    Field, FieldType, SLOT_IMAGE_FORWARD, SLOT_IMAGE_TUPLE, fields, size_text,
};
use crate::wal::record::{RECORD_HEADER_SIZE, RecordType, offsets as rec};
use crate::wal::segment::{SEGMENT_HEADER_USED, offsets as seg};

/// A header field: name, offset, size in bytes.
pub type HeaderField = (&'static str, usize, usize);

/// The WAL record header's fields.
pub fn record_header() -> Vec<HeaderField> {
    vec![
        ("crc", rec::CRC, 4),
        ("total_len", rec::TOTAL_LEN, 4),
        ("lsn", rec::LSN, 8),
        ("prev_lsn", rec::PREV_LSN, 8),
        ("txn_id", rec::TXN_ID, 8),
        ("relation", rec::RELATION, 4),
        ("page", rec::PAGE, 4),
        ("batch_back", rec::BATCH_BACK, 4),
        ("type", rec::TYPE, 1),
        ("flags", rec::FLAGS, 1),
        (
            "reserved",
            rec::RESERVED,
            RECORD_HEADER_SIZE - rec::RESERVED,
        ),
    ]
}

/// The common page header's fields.
pub fn page_header() -> Vec<HeaderField> {
    vec![
        ("magic", page::MAGIC, 4),
        ("version", page::VERSION, 2),
        ("page_type", page::PAGE_TYPE, 1),
        ("flags", page::FLAGS, 1),
        ("page_id", page::PAGE_ID, 4),
        ("checksum", page::CHECKSUM, 4),
        ("lsn", page::LSN, 8),
        ("lower", page::LOWER, 2),
        ("upper", page::UPPER, 2),
        ("slot_count", page::SLOT_COUNT, 2),
        ("frag_bytes", page::FRAG_BYTES, 2),
        ("next_page", page::NEXT_PAGE, 4),
        ("free_hint", page::FREE_HINT, 2),
        ("reserved", page::RESERVED, HEADER_SIZE - page::RESERVED),
    ]
}

/// The WAL segment header's fields (the rest of its 4 KiB is zero).
pub fn segment_header() -> Vec<HeaderField> {
    vec![
        ("magic", seg::MAGIC, 4),
        ("version", seg::VERSION, 2),
        ("reserved", seg::RESERVED, 2),
        ("segment_no", seg::SEGMENT_NO, 8),
        ("segment_size", seg::SEGMENT_SIZE, 4),
        ("header_size", seg::HEADER_SIZE, 4),
        ("start_lsn", seg::START_LSN, 8),
        ("database_id", seg::DATABASE_ID, 8),
        ("max_batch", seg::MAX_BATCH, 4),
        ("crc32c", seg::CRC, SEGMENT_HEADER_USED - seg::CRC),
    ]
}

fn packet(out: &mut String, title: &str, fields: &[HeaderField]) {
    let _ = writeln!(out, "```mermaid\npacket-beta\ntitle {title}");
    for (name, offset, size) in fields {
        let _ = writeln!(out, "{}-{}: \"{name}\"", offset, offset + size - 1);
    }
    out.push_str("```\n");
}

const GENERATED: &str = "<!-- Generated from the code by `keel docs`; do not edit. \
Regenerate: KEEL_UPDATE_DOCS=1 cargo test -p keel --test generated_docs -->\n";

/// docs/headers.md: the page, record and segment headers as packet diagrams
/// (one unit is one byte).
pub fn headers_markdown() -> String {
    let mut out = String::from(GENERATED);
    out.push_str(
        "\n# Keel headers\n\nByte layouts drawn from the offset constants \
         (one unit is one byte; all integers little-endian). docs/storage.md \
         explains each field.\n\n## Page header\n\n",
    );
    packet(&mut out, "Page header (40 bytes)", &page_header());
    out.push_str("\n## WAL record header\n\n");
    packet(&mut out, "WAL record header (48 bytes)", &record_header());
    out.push_str("\n## WAL segment header\n\n");
    packet(
        &mut out,
        "WAL segment header (first 48 of 4096 bytes)",
        &segment_header(),
    );
    out
}

fn class_name(kind: RecordType) -> String {
    kind.name()
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Writes class `name`, then a class for each list field's items; returns
/// the names of those item classes.
fn class(out: &mut String, name: &str, note: &str, fields: &[Field]) -> Vec<String> {
    let _ = writeln!(out, "    class {name} {{");
    if !note.is_empty() {
        let _ = writeln!(out, "        <<{note}>>");
    }
    for field in fields {
        let _ = writeln!(out, "        +{} {}", size_text(field.ty), field.name);
    }
    out.push_str("    }\n");
    let mut items = Vec::new();
    for field in fields {
        if let FieldType::List(_, item) = field.ty {
            let item_name = format!("{name}_{}", field.name);
            class(out, &item_name, "list item", item);
            items.push(item_name);
        }
    }
    items
}

/// docs/wal-records.md: every WAL record type's payload as a mermaid class
/// diagram, built from the payload table.
pub fn wal_records_markdown() -> String {
    let mut out = String::from(GENERATED);
    out.push_str(
        "\n# Keel WAL records\n\nEvery record is a 48-byte header (docs/headers.md) \
         followed by its payload. Each class below is one record type (code and \
         name) with its payload fields in order; `uN` is an N-bit little-endian \
         integer, `bytes[f]` as many bytes as field `f` says, `list[f]` that many \
         items of the linked class. docs/storage.md gives each type's meaning and \
         its redo and undo.\n\n```mermaid\nclassDiagram\n",
    );
    let mut links = Vec::new();
    for &kind in RecordType::ALL {
        let name = class_name(kind);
        let lists = class(
            &mut out,
            &name,
            &format!("type {}", kind as u8),
            fields(kind),
        );
        for l in lists {
            links.push(format!("    {name} *-- {l}"));
        }
        for field in fields(kind) {
            if field.ty == FieldType::SlotImage {
                links.push(format!("    {name} --> SlotImageTuple : {}", field.name));
                links.push(format!("    {name} --> SlotImageForward : {}", field.name));
            }
        }
    }
    class(
        &mut out,
        "SlotImageTuple",
        "slot image, kind 1",
        SLOT_IMAGE_TUPLE,
    );
    class(
        &mut out,
        "SlotImageForward",
        "slot image, kind 2",
        SLOT_IMAGE_FORWARD,
    );
    links.sort();
    links.dedup();
    for l in links {
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str("```\n");
    out
}
