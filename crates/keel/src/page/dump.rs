//! The one page dump formatter: an interpreted view plus an optional hexdump.
//!
//! Tests compare it against golden files and `keel inspect page` prints it, so
//! a format change shows up in review. It accepts *any* bytes (a fuzz target
//! feeds it garbage): what decodes is shown, what does not is named, and it
//! never panics (invariant 9).

use std::fmt::Write;

use crate::page::PageError;
use crate::page::header::{
    HEADER_SIZE, NO_PAGE, PAGE_SIZE, PageType, compute_checksum, get_u16, get_u32, get_u64, offsets,
};
use crate::page::overflow::{CHUNK_INDEX_OFFSET, CHUNK_LEN_OFFSET, OverflowHead, OverflowPage};
use crate::page::slotted::{SlotContent, SlottedPage, TupleFlags};
use crate::page::tree::{
    self, TREE_HEADER_SIZE, TREE_SLOT_SIZE, TreePage, VALUE_INLINE, VALUE_OVERFLOW,
};
use crate::types::{Lsn, PageId};

/// Bytes of a tree key shown before it is cut short.
const KEY_PREVIEW_BYTES: usize = 64;

/// What the dump shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct DumpOptions {
    /// Append a hexdump of the whole page (runs of identical lines collapsed).
    pub hex: bool,
    /// Bytes of each tuple to preview (0 = a default of 16).
    pub preview_bytes: usize,
}

/// Formats page `expected` (as read from disk: any bytes) for people.
pub fn dump_page(bytes: &[u8], expected: PageId, opts: &DumpOptions) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "page {expected} ({} bytes)", bytes.len());
    if bytes.len() >= HEADER_SIZE {
        header_lines(&mut out, bytes);
    } else {
        let _ = writeln!(out, "  (too short for a {HEADER_SIZE}-byte header)");
    }
    let verdict = match crate::page::verify(bytes, expected) {
        Ok(t) => format!("ok ({} page)", t.name()),
        Err(e) => format!("INVALID: {e}"),
    };
    let _ = writeln!(out, "  verdict    {verdict}");
    let preview = if opts.preview_bytes == 0 {
        16
    } else {
        opts.preview_bytes
    };
    if let Ok(page) = SlottedPage::open(bytes, expected) {
        slot_lines(&mut out, &page, preview);
    } else if let Ok(page) = OverflowPage::open(bytes, expected) {
        let _ = writeln!(
            out,
            "chunk {} of {} bytes: {}",
            page.chunk_index(),
            page.chunk().len(),
            preview_bytes(page.chunk(), preview)
        );
    } else if let Ok(page) = TreePage::open(bytes, expected) {
        tree_lines(&mut out, &page, bytes, preview);
    }
    if opts.hex {
        out.push_str("hex:\n");
        hexdump(&mut out, bytes);
    }
    out
}

fn header_lines(out: &mut String, b: &[u8]) {
    let magic = get_u32(b, offsets::MAGIC);
    let type_byte = b[offsets::PAGE_TYPE];
    let type_name = PageType::from_u8(type_byte).map_or("unknown", PageType::name);
    let stored = get_u32(b, offsets::CHECKSUM);
    let crc = if b.len() == PAGE_SIZE {
        let computed = compute_checksum(b);
        if computed == stored {
            "ok".to_owned()
        } else {
            format!("MISMATCH, computed {computed:#010x}")
        }
    } else {
        "not checked (wrong page length)".to_owned()
    };
    let next = get_u32(b, offsets::NEXT_PAGE);
    let next = if next == NO_PAGE {
        "none".to_owned()
    } else {
        next.to_string()
    };
    let rows: [(&str, String); 14] = [
        ("magic", format!("{magic:#010x} {:?}", printable(&b[..4]))),
        ("version", get_u16(b, offsets::VERSION).to_string()),
        ("type", format!("{type_name} ({type_byte})")),
        ("flags", format!("{:#04x}", b[offsets::FLAGS])),
        ("page id", get_u32(b, offsets::PAGE_ID).to_string()),
        ("checksum", format!("{stored:#010x} ({crc})")),
        ("lsn", Lsn(get_u64(b, offsets::LSN)).to_string()),
        ("lower", get_u16(b, offsets::LOWER).to_string()),
        ("upper", get_u16(b, offsets::UPPER).to_string()),
        ("slots", get_u16(b, offsets::SLOT_COUNT).to_string()),
        ("frag", get_u16(b, offsets::FRAG_BYTES).to_string()),
        ("next page", next),
        ("free hint", get_u16(b, offsets::FREE_HINT).to_string()),
        ("reserved", get_u16(b, offsets::RESERVED).to_string()),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "  {name:<10} {value}");
    }
    match PageType::from_u8(type_byte) {
        Some(PageType::Overflow) if b.len() >= HEADER_SIZE + 8 => {
            let _ = writeln!(
                out,
                "  chunk len  {}\n  chunk idx  {}",
                get_u16(b, CHUNK_LEN_OFFSET),
                get_u32(b, CHUNK_INDEX_OFFSET)
            );
        }
        Some(PageType::TreeMeta) if b.len() >= HEADER_SIZE + 8 => {
            let _ = writeln!(
                out,
                "  root       {}\n  root level {}\n  layout     {}",
                get_u32(b, tree::offsets::META_ROOT),
                get_u16(b, tree::offsets::META_LEVEL),
                get_u16(b, tree::offsets::META_LAYOUT)
            );
        }
        Some(PageType::TreeLeaf | PageType::TreeInternal) if b.len() >= TREE_HEADER_SIZE => {
            let flags = get_u16(b, tree::offsets::FLAGS);
            let split = if flags & tree::FLAG_INCOMPLETE_SPLIT != 0 {
                " (incomplete split)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  level      {}\n  tree flags {flags:#06x}{split}\n  high at    off {} len {}",
                get_u16(b, tree::offsets::LEVEL),
                get_u16(b, tree::offsets::HIGH_OFFSET),
                get_u16(b, tree::offsets::HIGH_LEN)
            );
        }
        _ => {}
    }
}

/// What a tree item's rest holds, decoded for people (the dump and
/// `keel inspect page --json`).
#[derive(Debug)]
pub enum TreeItemView<'a> {
    /// An internal item's child.
    Child(PageId),
    /// A leaf value stored inline: its bytes.
    Inline(&'a [u8]),
    /// A leaf value stored in an overflow chain.
    Overflow(OverflowHead),
    /// A rest that does not decode, and why.
    Bad(String),
}

/// Item `i` of a node: its slot's offset and length, its key, and what its
/// rest holds. Any bytes give a value or an error (invariant 9).
pub fn tree_item<'p>(
    page: &'p TreePage<&[u8]>,
    bytes: &[u8],
    i: usize,
) -> Result<(u16, u16, &'p [u8], TreeItemView<'p>), PageError> {
    let at = TREE_HEADER_SIZE + TREE_SLOT_SIZE * i;
    let (key, rest) = page.item(i)?;
    let (off, len) = (get_u16(bytes, at), get_u16(bytes, at + 2));
    let view = if page.is_leaf() {
        match rest.split_first() {
            Some((&VALUE_INLINE, value)) => TreeItemView::Inline(value),
            Some((&VALUE_OVERFLOW, head)) => match OverflowHead::decode(head, page.page_id()) {
                Ok(h) => TreeItemView::Overflow(h),
                Err(e) => TreeItemView::Bad(e.to_string()),
            },
            Some((kind, _)) => TreeItemView::Bad(format!("unknown value kind {kind}")),
            None => TreeItemView::Bad("no value kind".to_owned()),
        }
    } else {
        match page.child(i) {
            Ok(c) => TreeItemView::Child(c),
            Err(e) => TreeItemView::Bad(e.to_string()),
        }
    };
    Ok((off, len, key, view))
}

/// A tree key for people: hex and printable, the empty key by its meaning.
fn key_text(key: &[u8]) -> String {
    if key.is_empty() {
        "(minus infinity)".to_owned()
    } else {
        preview_bytes(key, KEY_PREVIEW_BYTES)
    }
}

fn tree_lines(out: &mut String, page: &TreePage<&[u8]>, bytes: &[u8], preview: usize) {
    let high = page.high_key().map_or_else(|| "none".to_owned(), key_text);
    let right = page
        .right_link()
        .map_or_else(|| "none".to_owned(), |p| p.to_string());
    let _ = writeln!(out, "  high key   {high}\n  right link {right}");
    let _ = writeln!(out, "items:");
    for i in 0..page.len() {
        let line = match tree_item(page, bytes, i) {
            Err(e) => format!("ERROR {e}"),
            Ok((off, len, key, view)) => {
                let what = match view {
                    TreeItemView::Child(c) => format!("child {c}"),
                    TreeItemView::Inline(v) => {
                        format!("inline {} bytes: {}", v.len(), preview_bytes(v, preview))
                    }
                    TreeItemView::Overflow(h) => format!(
                        "overflow: {} bytes in {} pages from page {}",
                        h.total_len, h.page_count, h.first_page
                    ),
                    TreeItemView::Bad(e) => format!("ERROR {e}"),
                };
                format!("off {off:>4} len {len:>4} key {} {what}", key_text(key))
            }
        };
        let _ = writeln!(out, "  [{i:>4}] {line}");
    }
}

fn slot_lines(out: &mut String, page: &SlottedPage<&[u8]>, preview: usize) {
    let _ = writeln!(out, "  stats      {}", page.stats());
    let _ = writeln!(out, "slots:");
    for (slot, content) in page.slots() {
        let entry = page
            .slot(slot)
            .map(|e| format!("off {:>4} len {:>4}", e.offset, e.len));
        let line = match (content, entry) {
            (Err(e), _) | (_, Err(e)) => format!("ERROR {e}"),
            (Ok(SlotContent::Free), _) => "free".to_owned(),
            (Ok(SlotContent::Dead), _) => "dead".to_owned(),
            (Ok(SlotContent::Forward(tid)), Ok(at)) => format!("forward {at} -> {tid}"),
            (Ok(SlotContent::Tuple { bytes, flags }), Ok(at)) => {
                let mut s = format!("tuple   {at}");
                if flags.contains(TupleFlags::MOVED_IN) {
                    s.push_str(" moved-in");
                }
                if flags.contains(TupleFlags::OVERFLOW_HEAD) {
                    match OverflowHead::decode(bytes, page.page_id()) {
                        Ok(h) => {
                            let _ = write!(
                                s,
                                " overflow: {} bytes in {} pages from page {}",
                                h.total_len, h.page_count, h.first_page
                            );
                        }
                        Err(e) => {
                            let _ = write!(s, " overflow: ERROR {e}");
                        }
                    }
                } else {
                    let _ = write!(s, " | {}", preview_bytes(bytes, preview));
                }
                s
            }
        };
        let _ = writeln!(out, "  [{:>4}] {line}", slot.0);
    }
}

fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '.'
            }
        })
        .collect()
}

fn preview_bytes(bytes: &[u8], n: usize) -> String {
    let shown = &bytes[..bytes.len().min(n)];
    let hex: Vec<String> = shown.iter().map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > n { " ..." } else { "" };
    format!("{}{more} |{}|", hex.join(" "), printable(shown))
}

/// Hexdump, 16 bytes a line, with runs of identical lines shown as `*`
/// (as `hexdump -C` does), so an empty page's free space takes one line.
pub fn hexdump(out: &mut String, bytes: &[u8]) {
    let mut prev: Option<&[u8]> = None;
    let mut starred = false;
    for (i, line) in bytes.chunks(16).enumerate() {
        if prev == Some(line) && line.len() == 16 {
            if !starred {
                out.push_str("*\n");
                starred = true;
            }
            continue;
        }
        starred = false;
        prev = Some(line);
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(
            out,
            "{:08x}  {:<47}  |{}|",
            i * 16,
            hex.join(" "),
            printable(line)
        );
    }
    let _ = writeln!(out, "{:08x}", bytes.len());
}
