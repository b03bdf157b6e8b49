//! `keel inspect page`: one page of a page file or of a relation, as the
//! shared dump text or as one JSON object.

use std::path::Path;

use keel::PageId;
use keel::page::dump::{TreeItemView, tree_item};
use keel::page::{
    DumpOptions, OverflowHead, OverflowPage, PAGE_SIZE, PageHeader, PageType, RawHeader,
    SlotContent, SlottedPage, TreePage, TupleFlags, compute_checksum, dump_page,
};
use serde_json::{Value, json};

use super::{PageArgs, print_out, with_relation};
use crate::Failure;

/// Bytes of each tuple shown in the JSON preview.
const PREVIEW_BYTES: usize = 16;

pub fn run(args: PageArgs) -> Result<(), Failure> {
    let id = PageId(args.page);
    let (bytes, what) = match (&args.file, &args.dir, &args.rel) {
        (Some(file), _, _) => (read_file_page(file, args.page)?, file.display().to_string()),
        (None, Some(dir), Some(rel)) => {
            // read_page returns the page with the checksum it would be
            // written with (a page changed in memory is sealed at write).
            let bytes = with_relation(dir, rel, |db| db.read_page(rel, id).map_err(Failure::from))?;
            (bytes, format!("relation {rel:?}"))
        }
        // clap's argument group requires exactly one source.
        _ => return Err(Failure("give --file F, or --dir D with --rel NAME".into())),
    };
    let text = if args.json {
        let mut v = page_json(&bytes, id);
        if args.hex {
            v["hex"] = Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect());
        }
        format!("{v}\n")
    } else {
        dump_page(
            &bytes,
            id,
            &DumpOptions {
                hex: args.hex,
                preview_bytes: 0,
            },
        )
    };
    print_out(&text)?;
    match keel::page::verify(&bytes, id) {
        Ok(_) => Ok(()),
        Err(e) => Err(Failure(format!("{what}: {e}"))),
    }
}

/// The page as one JSON object: header fields, verdict, statistics and
/// slots (heap pages), chunk (overflow pages), root (tree meta pages),
/// node fields and items (tree nodes). Any bytes are accepted.
fn page_json(b: &[u8], id: PageId) -> Value {
    let mut v = json!({
        "page": id.0,
        "bytes": b.len(),
        "header": header_json(b, id),
    });
    match keel::page::verify(b, id) {
        Ok(t) => {
            v["valid"] = json!(true);
            v["type"] = json!(t.name());
        }
        Err(e) => {
            v["valid"] = json!(false);
            v["error"] = json!(e.to_string());
        }
    }
    if let Ok(page) = SlottedPage::open(b, id) {
        let s = page.stats();
        v["stats"] = json!({
            "live_tuples": s.live_tuples,
            "tuple_bytes": s.tuple_bytes,
            "free_bytes": s.free_bytes,
            "contiguous_free_bytes": s.contiguous_free_bytes,
            "fragmented_bytes": s.fragmented_bytes,
            "dead_slots": s.dead_slots,
            "free_slots": s.free_slots,
            "forward_slots": s.forward_slots,
            "corrupt_slots": s.corrupt_slots,
        });
        v["slots"] = Value::Array(
            page.slots()
                .map(|(slot, c)| slot_json(&page, slot, c))
                .collect(),
        );
    } else if let Ok(page) = OverflowPage::open(b, id) {
        v["chunk"] = json!({
            "index": page.chunk_index(),
            "len": page.chunk().len(),
            "next_page": next_page(page.next_page()),
        });
    } else if let Ok(page) = TreePage::open(b, id) {
        v["node"] = node_json(&page, b);
    } else if keel::page::page_type(b) == Some(PageType::TreeMeta) {
        v["tree_meta"] = match keel::page::tree::read_meta(b, id) {
            Ok((root, level)) => json!({ "root": root.0, "root_level": level }),
            Err(e) => json!({ "error": e.to_string() }),
        };
    }
    v
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A tree node's fields and every item: its key in hex and its child, or
/// its value's kind and length.
fn node_json(page: &TreePage<&[u8]>, b: &[u8]) -> Value {
    let items: Vec<Value> = (0..page.len())
        .map(|i| match tree_item(page, b, i) {
            Err(e) => json!({ "item": i, "error": e.to_string() }),
            Ok((offset, len, key, view)) => {
                let mut v = json!({ "item": i, "offset": offset, "len": len, "key_hex": hex(key) });
                match view {
                    TreeItemView::Child(c) => v["child"] = json!(c.0),
                    TreeItemView::Inline(value) => {
                        v["value"] = json!({ "kind": "inline", "len": value.len() });
                    }
                    TreeItemView::Overflow(h) => {
                        v["value"] = json!({
                            "kind": "overflow",
                            "total_len": h.total_len,
                            "first_page": h.first_page.0,
                            "page_count": h.page_count,
                        });
                    }
                    TreeItemView::Bad(e) => v["error"] = json!(e),
                }
                v
            }
        })
        .collect();
    json!({
        "level": page.level(),
        "flags": page.flags(),
        "incomplete_split": page.incomplete_split(),
        "high_key_hex": page.high_key().map(hex),
        "right_link": page.right_link().map(|p| p.0),
        "items": items,
    })
}

/// Raw header fields (whatever they hold, decoded by the engine's
/// [`RawHeader`]), and whether the header is valid.
fn header_json(b: &[u8], id: PageId) -> Value {
    let Some(h) = RawHeader::of(b) else {
        return Value::Null;
    };
    json!({
        "magic": format!("{:#010x}", h.magic),
        "version": h.version,
        "type": PageType::from_u8(h.type_byte).map_or("unknown", PageType::name),
        "type_byte": h.type_byte,
        "flags": h.flags,
        "page_id": h.page_id.0,
        "checksum": format!("{:#010x}", h.checksum),
        "checksum_ok": compute_checksum(b) == h.checksum,
        "lsn": h.lsn.to_string(),
        "lower": h.lower,
        "upper": h.upper,
        "slots": h.slot_count,
        "frag": h.frag_bytes,
        "next_page": next_page(h.next_page),
        "free_hint": h.free_hint,
        "reserved": h.reserved,
        "decodes": PageHeader::read(b, id).is_ok(),
    })
}

fn next_page(p: u32) -> Value {
    if p == keel::page::NO_PAGE {
        Value::Null
    } else {
        json!(p)
    }
}

fn slot_json(
    page: &SlottedPage<&[u8]>,
    slot: keel::SlotId,
    content: Result<SlotContent<'_>, keel::PageError>,
) -> Value {
    let mut v = json!({ "slot": slot.0 });
    if let Ok(e) = page.slot(slot) {
        v["offset"] = json!(e.offset);
        v["len"] = json!(e.len);
    }
    match content {
        Err(e) => {
            v["state"] = json!("error");
            v["error"] = json!(e.to_string());
        }
        Ok(SlotContent::Free) => v["state"] = json!("free"),
        Ok(SlotContent::Dead) => v["state"] = json!("dead"),
        Ok(SlotContent::Forward(tid)) => {
            v["state"] = json!("forward");
            v["to"] = json!(tid.to_string());
        }
        Ok(SlotContent::Tuple { bytes, flags }) => {
            v["state"] = json!("tuple");
            v["moved_in"] = json!(flags.contains(TupleFlags::MOVED_IN));
            if flags.contains(TupleFlags::OVERFLOW_HEAD) {
                v["overflow"] = match OverflowHead::decode(bytes, page.page_id()) {
                    Ok(h) => json!({
                        "total_len": h.total_len,
                        "first_page": h.first_page.0,
                        "page_count": h.page_count,
                    }),
                    Err(e) => json!({ "error": e.to_string() }),
                };
            } else {
                let shown = &bytes[..bytes.len().min(PREVIEW_BYTES)];
                v["preview_hex"] =
                    json!(shown.iter().map(|b| format!("{b:02x}")).collect::<String>());
            }
        }
    }
    v
}

/// Reads page `page` of `file`; a page past the end is an error naming both.
fn read_file_page(file: &Path, page: u32) -> Result<Vec<u8>, Failure> {
    use std::io::{Read, Seek, SeekFrom};
    crate::require_regular_file(file)?;
    let mut f = std::fs::File::open(file)
        .map_err(|e| Failure(format!("cannot open {}: {e}", file.display())))?;
    let len = f
        .metadata()
        .map_err(|e| Failure(format!("{}: {e}", file.display())))?
        .len();
    let pages = len / PAGE_SIZE as u64;
    if u64::from(page) >= pages {
        return Err(Failure(format!(
            "{} has {pages} whole pages; there is no page {page}",
            file.display()
        )));
    }
    let mut buf = vec![0u8; PAGE_SIZE];
    f.seek(SeekFrom::Start(u64::from(page) * PAGE_SIZE as u64))
        .and_then(|_| f.read_exact(&mut buf))
        .map_err(|e| Failure(format!("reading page {page} of {}: {e}", file.display())))?;
    Ok(buf)
}
