//! `keel inspect fsm`: a relation's free space map as the engine holds it
//! after opening (and so after recovery): one line per tracked page, then a
//! summary with a histogram of free space by quarter of a page.
//!
//! The map records categories, not bytes ([`keel::fsm::category`](fn@keel::fsm::category)): each
//! figure shown is the category's promise, a lower bound on the page's free
//! space (at most 31 bytes under it) when it was recorded.

use std::fmt::Write;
use std::path::Path;

use keel::PageId;
use keel::fsm::{Categories, EMPTY_PAGE_FREE, category_bytes};
use serde_json::json;

use super::{print_out, with_relation};
use crate::Failure;

/// Quarter labels of the histogram (by total free bytes over an empty
/// page's free bytes).
const QUARTERS: [&str; 4] = ["0-25%", "25-50%", "50-75%", "75-100%"];

/// One tracked page in bytes.
struct Entry {
    page: u32,
    contiguous: usize,
    total: usize,
}

/// What the summary says.
struct Summary {
    relation_pages: u32,
    tracked: usize,
    avg_contiguous: f64,
    avg_total: f64,
    quarters: [u64; 4],
}

pub fn run(dir: &Path, rel: &str, json: bool) -> Result<(), Failure> {
    let (snapshot, relation_pages) = with_relation(dir, rel, |db| {
        let pages = db
            .relations()
            .into_iter()
            .find(|r| r.name == rel)
            .map_or(0, |r| r.pages);
        Ok((db.fsm_snapshot(rel)?, pages))
    })?;
    let entries = to_bytes(&snapshot);
    let summary = summarize(&entries, relation_pages);
    let text = if json {
        json_text(&entries, &summary)
    } else {
        plain_text(rel, &entries, &summary)
    };
    print_out(&text)
}

fn to_bytes(snapshot: &[(PageId, Categories)]) -> Vec<Entry> {
    let mut entries: Vec<Entry> = snapshot
        .iter()
        .map(|(p, c)| Entry {
            page: p.0,
            contiguous: category_bytes(c.contiguous),
            total: category_bytes(c.total),
        })
        .collect();
    entries.sort_by_key(|e| e.page);
    entries
}

/// The quarter of a page (0..=3) that `total` free bytes fall in.
fn quarter(total: usize) -> usize {
    (total * 4 / EMPTY_PAGE_FREE).min(3)
}

fn summarize(entries: &[Entry], relation_pages: u32) -> Summary {
    let mut quarters = [0u64; 4];
    for e in entries {
        quarters[quarter(e.total)] += 1;
    }
    // Sums in integers: a float sum of no terms is -0.0, which would print
    // as "-0 bytes" for a map that tracks no page.
    let n = entries.len().max(1) as f64;
    let contiguous: usize = entries.iter().map(|e| e.contiguous).sum();
    let total: usize = entries.iter().map(|e| e.total).sum();
    Summary {
        relation_pages,
        tracked: entries.len(),
        avg_contiguous: contiguous as f64 / n,
        avg_total: total as f64 / n,
        quarters,
    }
}

fn plain_text(rel: &str, entries: &[Entry], s: &Summary) -> String {
    let mut out = String::new();
    for e in entries {
        let _ = writeln!(
            out,
            "page {:>8}  contiguous {:>5}  total {:>5}",
            e.page, e.contiguous, e.total
        );
    }
    let pct = |b: f64| 100.0 * b / EMPTY_PAGE_FREE as f64;
    let _ = writeln!(
        out,
        "summary: relation {rel:?}: {} pages tracked of {} in the file; \
         average free {:.0} bytes ({:.1}%), {:.0} contiguous ({:.1}%)",
        s.tracked,
        s.relation_pages,
        s.avg_total,
        pct(s.avg_total),
        s.avg_contiguous,
        pct(s.avg_contiguous),
    );
    let _ = writeln!(out, "  total free     pages");
    for (label, n) in QUARTERS.iter().zip(s.quarters) {
        let _ = writeln!(out, "  {label:<10} {n:>9}");
    }
    out
}

fn json_text(entries: &[Entry], s: &Summary) -> String {
    let mut out = String::new();
    for e in entries {
        let v = json!({"page": e.page, "contiguous": e.contiguous, "total": e.total});
        let _ = writeln!(out, "{v}");
    }
    let histogram: serde_json::Map<String, serde_json::Value> = QUARTERS
        .iter()
        .zip(s.quarters)
        .map(|(k, n)| ((*k).to_owned(), json!(n)))
        .collect();
    let v = json!({"summary": {
        "pages": s.tracked,
        "relation_pages": s.relation_pages,
        "avg_free": s.avg_total,
        "avg_contiguous_free": s.avg_contiguous,
        "page_free": EMPTY_PAGE_FREE,
        "histogram": histogram,
    }});
    let _ = writeln!(out, "{v}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_of_no_pages_averages_zero_not_minus_zero() {
        let s = summarize(&[], 3);
        let text = plain_text("r", &[], &s);
        assert!(
            text.contains("average free 0 bytes (0.0%), 0 contiguous (0.0%)"),
            "{text}"
        );
        let json = json_text(&[], &s);
        assert!(!json.contains("-0"), "{json}");
    }

    #[test]
    fn quarters_cover_an_empty_page() {
        assert_eq!(quarter(0), 0);
        assert_eq!(quarter(EMPTY_PAGE_FREE / 4 - 1), 0);
        assert_eq!(quarter(EMPTY_PAGE_FREE / 2), 2);
        assert_eq!(quarter(EMPTY_PAGE_FREE), 3);
    }
}
