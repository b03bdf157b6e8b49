//! `keel check`: verifies what is on disk, as `pg_amcheck` does, without
//! opening the database (opening would run recovery and rewrite pages).
//!
//! - the control file (magic, version, checksum), and that the log belongs
//!   to its database (the segment headers' database id);
//! - every page of every relation file, read straight from the file page by
//!   page: its checksum (which covers its page id) and its structure; that
//!   its type belongs in the file (a heap's file holds heap, overflow and
//!   free pages, a tree's its meta page at page 0, nodes, overflow and free
//!   pages; a free page is an empty header over zeros); and that its LSN
//!   lies before the end of the log (invariant 4);
//! - every overflow chain, from the head in a live slot or a tree leaf:
//!   each page the next chunk, the length and the value's CRC as the head
//!   says, no page in two chains; an overflow page no chain reaches is a
//!   warning (leaked space);
//! - the catalog (relation 0): every row decodes, every row's relation has a
//!   heap file, and no heap or FSM file is left that no row names (an
//!   orphan: opening keeps it and lists it in the recovery report);
//! - each heap file is at least as long as its saved FSM says (a shorter
//!   one was truncated: opening refuses it);
//! - each tree (a relation file whose page 0 is a tree meta page): the
//!   whole tree's structure across pages (`keel::page::tree::check`:
//!   levels, right links, separators against the children's high keys,
//!   cycles); a node nothing reaches is a warning (leaked space, no key
//!   lost), as is a finding after a crash that redo may repair (below);
//! - each FSM file: its pages decode, and no recorded category promises more
//!   free space than the heap page has (a warning: the map is a hint); an
//!   empty file, or one that ends in a partial page, is a warning too (the
//!   open rebuilds the map from the heap);
//! - every WAL record from where recovery would start (the control file's
//!   `min(redo_start, undo_start)`) to the end of the log, read from where
//!   the open reads it to find its end when that is older (the start of
//!   the newest segment), and that the log reaches the control file's
//!   checkpoint; after a clean
//!   shutdown any invalid record is an error (`AbsoluteConsistency`), after a
//!   crash a torn tail is not;
//! - the WAL directory: an entry named as a segment that is a directory is
//!   a warning (the log does not count it as a segment; one numbered past
//!   the log's newest segment stops the log when it gets there, as the
//!   segment cannot take its name).
//!
//! The database must be closed: a held `LOCK` is refused, and so is a
//! standby directory whose `keel standby` runs (it holds its marker's
//! lock). After a crash
//! (control file not marked clean) check says that recovery is pending and
//! what it would read, and reports as errors only what recovery cannot
//! repair. Warnings then: a page failing verification that a record from
//! the redo start writes whole (an image or a format: redo writes over the
//! torn page) or that has a page image recovery can use (`images.0`,
//! `images.1`: recovery rebuilds it from that); any other bad page is an
//! error; a tree finding, a broken
//! overflow chain or a page of a type its file does not hold, in a
//! relation the log changes after the redo start (the crash may have left
//! a page behind its neighbours); files the log accounts for — a relation
//! whose create did not commit or whose drop did (recovery removes its
//! files), a row whose drop committed, ids created since the last
//! checkpoint. Exit 0 when no error was found, 1 otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use keel::datadir::layout::{
    CONTROL_FILE, REL_DIR, RelFile, STANDBY_FILE, WAL_DIR, check_canonical, control_path,
    lock_path, rel_dir, rel_file, wal_dir,
};
use keel::fsm::page::{ENTRIES_PER_PAGE, FsmPage};
use keel::fsm::{Categories, EMPTY_PAGE_FREE, category_bytes};
use keel::page::dump::{TreeItemView, tree_item};
use keel::page::header::offsets::CHECKSUM;
use keel::page::tree::check::{ProblemKind, check_tree};
use keel::page::{
    ChainReader, OverflowHead, PAGE_SIZE, PageError, PageType, SlotContent, SlottedPage, TreePage,
    TupleFlags, init_page, page_lsn, page_type, set_page_lsn,
};
use keel::recovery::control::{Control, read_control};
use keel::wal::segment::{SegmentDir, parse_segment_file_name, segment_file_name};
use keel::wal::{RecoveryMode, WalReader};
use keel::{Lsn, PageId, RelationId, SlotId, TupleId};
use serde_json::json;

use crate::Failure;

/// Arguments of `keel check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The data directory (of a closed database).
    #[arg(long)]
    pub dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Severity {
    Error,
    Warning,
}

/// One problem and where it is.
struct Problem {
    severity: Severity,
    place: String,
    what: String,
}

/// What a heap file's page holds, for the FSM comparison.
type PageFree = BTreeMap<u32, (usize, usize)>;

/// Everything the check found.
#[derive(Default)]
struct Report {
    problems: Vec<Problem>,
    relations: usize,
    /// Relation files holding a tree.
    trees: usize,
    pages: u64,
    wal_records: u64,
    wal_from: Option<Lsn>,
    wal_end: Option<Lsn>,
    /// The control file says the database crashed: torn pages are expected.
    crashed: bool,
    /// What the log from the scan start says about creates and drops.
    ddl: DdlSeen,
    /// What redo (from the redo start) writes over, after a crash.
    redo: RedoSeen,
}

/// The pages redo rewrites, from the records at or after the redo start.
#[derive(Default)]
struct RedoSeen {
    /// (relation, page) pairs a record writes whole: a page image (alone,
    /// among several, or a split's new right page) or a format. Redo
    /// writes it over whatever the page holds, so a torn page there is
    /// repaired; any other page failing verification is not.
    whole: BTreeSet<(u32, u32)>,
    /// (relation, page) pairs with a page image a recovery from the redo
    /// start can use (`keel::page_images`): a torn page there is rebuilt
    /// from it.
    imaged: BTreeSet<(u32, u32)>,
    /// Relations some record changes a page of: a tree finding there may
    /// be a page the crash left behind its neighbours, which redo brings
    /// up to date.
    changed: BTreeSet<u32>,
}

impl RedoSeen {
    fn record(&mut self, r: &keel::wal::LogRecord) {
        use keel::wal::{Payload, RecordType};
        let (Some(rel), Some(page)) = (r.header.relation, r.header.page) else {
            return;
        };
        self.changed.insert(rel.0);
        let whole = matches!(
            r.header.kind,
            RecordType::PageImage
                | RecordType::PageInit
                | RecordType::MultiPageImage
                | RecordType::TreeSplit
                | RecordType::Compensation
        );
        if !whole {
            return;
        }
        let payload = match Payload::decode_record(&r.header, &r.payload) {
            Ok(Payload::Compensation { action, .. }) => *action,
            Ok(p) => p,
            Err(_) => return,
        };
        match payload {
            Payload::PageImage { .. } | Payload::PageInit { .. } => {
                self.whole.insert((rel.0, page.0));
            }
            Payload::MultiPageImage { images } => {
                self.whole.extend(images.iter().map(|(p, _)| (rel.0, p.0)));
            }
            Payload::TreeSplit { right, .. } => {
                self.whole.insert((rel.0, right.0));
            }
            _ => {}
        }
    }
}

/// The pages with an image a recovery from `c`'s redo start can use, from
/// the images files of this database (`keel::page_images`; a file that
/// does not decode holds none).
fn page_images(dir: &Path, c: &Control) -> BTreeSet<(u32, u32)> {
    use keel::page_images::{ImagesHeader, decode_entries};
    let mut pages = BTreeSet::new();
    for name in keel::datadir::layout::IMAGES_FILES {
        let Ok(bytes) = std::fs::read(dir.join(name)) else {
            continue;
        };
        if !ImagesHeader::decode(&bytes).is_ok_and(|h| h.database_id == c.database_id) {
            continue;
        }
        let (entries, _) = decode_entries(&bytes);
        pages.extend(
            entries
                .iter()
                .filter(|e| e.epoch >= c.redo_start)
                .map(|e| (e.relation.0, e.page.0)),
        );
    }
    pages
}

/// Creates and drops in the log recovery would read, by outcome.
#[derive(Default)]
struct DdlSeen {
    /// Relation id → LSN of a drop whose transaction committed.
    committed_drops: BTreeMap<u32, Lsn>,
    /// Relation id → LSN of a create whose transaction did not commit
    /// (aborted, or running at the end of the log: recovery rolls it back).
    uncommitted_creates: BTreeMap<u32, Lsn>,
    /// Relation id → LSN of a committed create.
    committed_creates: BTreeMap<u32, Lsn>,
    /// Per running transaction: (is a drop, relation, LSN).
    open: BTreeMap<u64, Vec<(bool, u32, Lsn)>>,
}

impl DdlSeen {
    fn record(&mut self, r: &keel::wal::LogRecord) {
        use keel::wal::{Payload, RecordType};
        let txn = r.header.txn.0;
        match r.header.kind {
            RecordType::RelationCreate | RecordType::RelationDrop => {
                let rel = match Payload::decode_record(&r.header, &r.payload) {
                    Ok(Payload::RelationCreate { relation, .. }) => relation.0,
                    Ok(Payload::RelationDrop { relation }) => relation.0,
                    _ => return,
                };
                let drop = r.header.kind == RecordType::RelationDrop;
                self.open
                    .entry(txn)
                    .or_default()
                    .push((drop, rel, r.header.lsn));
            }
            RecordType::Commit => {
                for (drop, rel, lsn) in self.open.remove(&txn).unwrap_or_default() {
                    if drop {
                        self.committed_drops.insert(rel, lsn);
                    } else {
                        self.committed_creates.insert(rel, lsn);
                    }
                }
            }
            RecordType::Abort => self.abort(txn),
            _ => {}
        }
    }

    fn abort(&mut self, txn: u64) {
        for (drop, rel, lsn) in self.open.remove(&txn).unwrap_or_default() {
            if !drop {
                self.uncommitted_creates.insert(rel, lsn);
            }
        }
    }

    /// At the end of the log: what is still running is rolled back.
    fn finish(&mut self) {
        let running: Vec<u64> = self.open.keys().copied().collect();
        for txn in running {
            self.abort(txn);
        }
    }

    /// What recovery will do about relation `id`'s files, if the log says.
    fn settles(&self, id: u32) -> Option<String> {
        if let Some(lsn) = self.committed_drops.get(&id) {
            return Some(format!(
                "recovery will remove it: its drop at LSN {lsn} committed"
            ));
        }
        self.uncommitted_creates
            .get(&id)
            .map(|lsn| format!("recovery will remove it: its create at LSN {lsn} did not commit"))
    }
}

impl Report {
    fn error(&mut self, place: impl Into<String>, what: impl Into<String>) {
        self.add(Severity::Error, place.into(), what.into());
    }

    fn warning(&mut self, place: impl Into<String>, what: impl Into<String>) {
        self.add(Severity::Warning, place.into(), what.into());
    }

    fn add(&mut self, severity: Severity, place: String, what: String) {
        self.problems.push(Problem {
            severity,
            place,
            what,
        });
    }

    fn errors(&self) -> usize {
        let e = |p: &&Problem| p.severity == Severity::Error;
        self.problems.iter().filter(e).count()
    }
}

/// The errors `keel check` finds in `dir`, each as `place: what`
/// (warnings left out).
pub(crate) fn errors(dir: &Path) -> Result<Vec<String>, Failure> {
    let report = check(dir)?;
    Ok(report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| format!("{}: {}", p.place, p.what))
        .collect())
}

/// Entry point of `keel check`.
pub fn run(args: CheckArgs) -> ExitCode {
    match check(&args.dir).and_then(|report| print(&args, &report).map(|()| report)) {
        Ok(report) if report.errors() == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(Failure(msg)) => {
            eprintln!("keel: error: {msg}");
            ExitCode::from(1)
        }
    }
}

fn check(dir: &Path) -> Result<Report, Failure> {
    let shown = dir.display();
    if !control_path(dir).is_file() {
        return Err(Failure(format!(
            "{shown} is not a Keel data directory (it has no control file)"
        )));
    }
    refuse_if_open(dir)?;
    let io = keel_io::open_backend(&keel_io::IoConfig::from_env()?)?;
    let mut report = Report::default();
    let control = match read_control(&io, dir) {
        Ok(c) => c,
        Err(e) => {
            report.error(CONTROL_FILE, Failure::from(e).0);
            None
        }
    };
    report.crashed = control.as_ref().is_some_and(|c| !c.clean);
    // The log first: what it says about creates and drops decides which
    // leftover files recovery settles.
    if let Some(c) = &control {
        check_database_id(dir, &io, c, &mut report);
        check_wal(dir, io, c, &mut report);
        if report.crashed {
            report.redo.imaged = page_images(dir, c);
        }
    }
    if report.crashed
        && let Some(c) = &control
    {
        let end = report
            .wal_end
            .map_or_else(|| "its end".to_owned(), |e| e.to_string());
        report.warning(
            CONTROL_FILE,
            format!(
                "not closed cleanly: recovery is pending; opening the database will read the log \
                 from LSN {} (redo from LSN {}) to {end} ({} records), roll back the transactions \
                 still running there and complete {} committed drop(s); torn pages the log rewrites \
                 whole and files the log accounts for are warnings",
                c.scan_start(),
                c.redo_start,
                report.wal_records,
                report.ddl.committed_drops.len(),
            ),
        );
    }
    check_wal_dir(dir, &mut report)?;
    let files = relation_files(dir, &mut report)?;
    let mut free: BTreeMap<u32, (PageFree, u32)> = BTreeMap::new();
    let mut catalog = Vec::new();
    let mut trees = BTreeSet::new();
    for (&id, _) in files.iter().filter(|(_, f)| f.heap) {
        let path = RelFile::Heap.path(dir, RelationId(id));
        let scan = check_heap_file(&path, id, &mut report, (id == 0).then_some(&mut catalog))?;
        if check_tree_file(&path, id, scan.pages, &mut report)? {
            trees.insert(id);
        }
        check_chains(&path, id, &scan, &mut report)?;
        free.insert(id, (scan.free, scan.pages));
    }
    report.relations = files.values().filter(|f| f.heap).count();
    check_catalog(&files, &catalog, &trees, control.as_ref(), &mut report);
    for (&id, _) in files.iter().filter(|(_, f)| f.fsm) {
        check_fsm(dir, id, free.get(&id), &mut report)?;
    }
    Ok(report)
}

/// Refuses a database that a process has open (it holds `LOCK`), or that
/// a `keel standby` process follows (it holds its marker file, `standby`,
/// and applies the archive's log to the pages while check would read
/// them).
fn refuse_if_open(dir: &Path) -> Result<(), Failure> {
    refuse_if_locked(dir, &lock_path(dir), "is open in another process")?;
    refuse_if_locked(
        dir,
        &dir.join(STANDBY_FILE),
        "is followed by a running keel standby",
    )
}

/// Refuses `dir` when another process holds the advisory lock on `path`
/// (absent: nothing to refuse); `what` says who holds it.
fn refuse_if_locked(dir: &Path, path: &Path, what: &str) -> Result<(), Failure> {
    if path.symlink_metadata().is_ok() {
        crate::require_regular_file(path)?;
    }
    let Ok(file) = File::open(path) else {
        return Ok(());
    };
    match keel::datadir::try_lock_waiting(&file) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure(format!(
            "{} {what} (it holds {}); stop it first",
            dir.display(),
            path.display()
        ))),
        Err(e) => Err(Failure(format!("cannot lock {}: {e}", path.display()))),
    }
}

/// The files of one relation id under `rel/`.
#[derive(Default)]
struct RelFiles {
    heap: bool,
    fsm: bool,
}

/// The relation files in `rel/`, named as the engine names them
/// ([`keel::datadir::layout`]); a name spelled otherwise is an error (the
/// engine refuses to open the directory), anything else a warning.
fn relation_files(dir: &Path, report: &mut Report) -> Result<BTreeMap<u32, RelFiles>, Failure> {
    let rel = rel_dir(dir);
    let entries = std::fs::read_dir(&rel)
        .map_err(|e| Failure(format!("cannot read {}: {e}", rel.display())))?;
    let mut files: BTreeMap<u32, RelFiles> = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| Failure(format!("cannot read {}: {e}", rel.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let place = format!("{REL_DIR}/{name}");
        if let Err(e) = check_canonical(dir, &name) {
            report.error(place, e.to_string());
            continue;
        }
        if rel_file(&name).is_some()
            && let Err(Failure(e)) = crate::require_regular_file(&entry.path())
        {
            report.error(place, e);
            continue;
        }
        match rel_file(&name) {
            Some((id, RelFile::Heap)) => files.entry(id.0).or_default().heap = true,
            Some((id, RelFile::Fsm)) => files.entry(id.0).or_default().fsm = true,
            Some((_, RelFile::FsmTmp)) => report.warning(place, "temporary file left by a crash"),
            None => report.warning(place, "not a relation file"),
        }
    }
    Ok(files)
}

/// Where relation `id`'s file of `kind` is, as reports name it.
fn rel_place(id: u32, kind: RelFile) -> String {
    format!("{REL_DIR}/{}", kind.name(RelationId(id)))
}

/// Reads page `p` of `file`, or `None` past the end.
fn read_page(file: &File, p: u32, len: u64) -> std::io::Result<Option<Vec<u8>>> {
    let at = u64::from(p) * PAGE_SIZE as u64;
    if at + PAGE_SIZE as u64 > len {
        return Ok(None);
    }
    let mut buf = vec![0u8; PAGE_SIZE];
    file.read_exact_at(&mut buf, at)?;
    Ok(Some(buf))
}

/// What one pass over a relation file found, for the checks that follow
/// it (free space map, overflow chains).
#[derive(Default)]
struct Scanned {
    /// Each heap or free page's contiguous and total free bytes.
    free: PageFree,
    /// Whole pages in the file.
    pages: u32,
    /// Every overflow head in a live slot or a tree leaf, with where it is.
    heads: Vec<(String, OverflowHead)>,
    /// Pages of type overflow.
    overflow: BTreeSet<u32>,
    /// Some page failed verification (its heads, if any, are unknown).
    unreadable: bool,
}

/// What a relation file holds, by its page 0.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileKind {
    /// Page 0 is a heap page (or the file is empty).
    Heap,
    /// Page 0 is a tree meta page.
    Tree,
    /// Page 0 fails verification: which types belong is unknown.
    Unknown,
}

/// Why a page of type `t` at page `p` does not belong in a file of
/// `kind`, if it does not. A heap's file holds heap, overflow and free
/// pages; a tree's file its meta page at page 0, its nodes, overflow and
/// free pages; no relation file holds a free space map or file meta page.
fn misplaced(kind: FileKind, p: u32, t: PageType) -> Option<String> {
    let name = t.name();
    match (kind, t) {
        (_, PageType::Fsm | PageType::Meta) => {
            Some(format!("a {name} page, which no relation file holds"))
        }
        (_, PageType::TreeMeta) if p != 0 => {
            Some("a tree meta page past page 0 (a tree has one, at page 0)".to_owned())
        }
        (FileKind::Heap, PageType::TreeLeaf | PageType::TreeInternal) => Some(format!(
            "a {name} page in a relation whose page 0 is not a tree meta page"
        )),
        (FileKind::Tree, PageType::Heap) => {
            Some("a heap page in a tree's file (page 0 is its meta page)".to_owned())
        }
        _ => None,
    }
}

/// Why free page `p` is not as a free page is written (an empty header
/// over zeros, `init_page`), if it is not: a page of another kind whose
/// type byte changed would otherwise pass as free and be reused.
fn malformed_free(bytes: &[u8], p: u32) -> Option<String> {
    let mut empty = vec![0u8; PAGE_SIZE];
    init_page(&mut empty, PageId(p), PageType::Free).ok()?;
    let lsn = page_lsn(bytes)?;
    set_page_lsn(&mut empty, lsn).ok()?;
    // The checksum field is the only other one that differs.
    let checksum = CHECKSUM..CHECKSUM + 4;
    empty[checksum.clone()].copy_from_slice(bytes.get(checksum)?);
    let at = bytes.iter().zip(&empty).position(|(a, b)| a != b)?;
    Some(format!(
        "a free page with byte {at} set (a free page is an empty header over zeros): \
         its type byte may be damaged, hiding what it held"
    ))
}

/// The type of page 0 of `file`, which decides what else it may hold.
fn file_kind(file: &File, len: u64) -> std::io::Result<FileKind> {
    Ok(match read_page(file, 0, len)? {
        None => FileKind::Heap,
        Some(bytes) => match keel::page::verify(&bytes, PageId(0)) {
            Ok(PageType::TreeMeta) => FileKind::Tree,
            Ok(_) => FileKind::Heap,
            Err(_) => FileKind::Unknown,
        },
    })
}

/// Reports `what` at `at` in relation `id`: an error, or a warning when
/// the database crashed and the log changes the relation after the redo
/// start (redo may bring a page the crash left behind up to date).
fn finding(report: &mut Report, id: u32, at: String, what: String) {
    if report.crashed && report.redo.changed.contains(&id) {
        report.warning(at, format!("{what} (recovery may repair it)"));
    } else {
        report.error(at, what);
    }
}

/// Verifies every page of a heap file: its checksum and structure, that
/// its type belongs in the file, and that its LSN is before the end of
/// the log; returns what [`Scanned`] lists, and collects the catalog's rows
/// when `catalog` is given.
fn check_heap_file(
    path: &Path,
    id: u32,
    report: &mut Report,
    mut catalog: Option<&mut Vec<CatalogRow>>,
) -> Result<Scanned, Failure> {
    let place = rel_place(id, RelFile::Heap);
    let cannot = |e: std::io::Error| Failure(format!("cannot read {}: {e}", path.display()));
    let file = File::open(path).map_err(cannot)?;
    let len = file.metadata().map_err(cannot)?.len();
    if len % PAGE_SIZE as u64 != 0 {
        report.error(
            &place,
            format!("{len} bytes: not a whole number of {PAGE_SIZE}-byte pages"),
        );
    }
    let kind = file_kind(&file, len).map_err(cannot)?;
    let mut scan = Scanned::default();
    let mut p = 0u32;
    while let Some(bytes) = read_page(&file, p, len).map_err(cannot)? {
        report.pages += 1;
        let at = format!(
            "{place} page {p} (offset {})",
            u64::from(p) * PAGE_SIZE as u64
        );
        let verified = keel::page::verify(&bytes, PageId(p));
        if let Ok(t) = verified {
            let wrong = misplaced(kind, p, t).or_else(|| {
                (t == PageType::Free)
                    .then(|| malformed_free(&bytes, p))
                    .flatten()
            });
            if let Some(what) = wrong {
                scan.unreadable = true;
                finding(report, id, at.clone(), what);
            }
            check_page_lsn(&bytes, &at, report);
        }
        match verified {
            Ok(PageType::Heap) => {
                if let Ok(page) = SlottedPage::open(&bytes[..], PageId(p)) {
                    scan.free
                        .insert(p, (page.contiguous_free(), page.total_free()));
                    collect_heap_heads(&page, PageId(p), &at, &mut scan.heads, report);
                    if let Some(rows) = catalog.as_deref_mut() {
                        collect_rows(&page, PageId(p), &at, rows);
                    }
                }
            }
            Ok(PageType::TreeLeaf) => {
                if let Ok(page) = TreePage::open(&bytes[..], PageId(p)) {
                    collect_leaf_heads(&page, &bytes, &at, &mut scan.heads);
                }
            }
            Ok(PageType::Overflow) => {
                scan.overflow.insert(p);
            }
            // A free page is reused as an empty heap page.
            Ok(PageType::Free) => {
                scan.free.insert(p, (EMPTY_PAGE_FREE, EMPTY_PAGE_FREE));
            }
            Ok(_) => {}
            Err(e) => {
                scan.unreadable = true;
                if report.crashed && report.redo.whole.contains(&(id, p)) {
                    report.warning(
                        at,
                        format!(
                            "{e} (recovery repairs it: the log from the redo start rewrites it whole)"
                        ),
                    );
                } else if report.crashed && report.redo.imaged.contains(&(id, p)) {
                    report.warning(at, format!("{e} (recovery repairs it from its page image)"));
                } else if report.crashed {
                    report.error(
                        at,
                        format!(
                            "{e} (recovery cannot repair it: neither the log from the redo start \
                             nor the page images hold it whole)"
                        ),
                    );
                } else {
                    report.error(at, e.to_string());
                }
            }
        }
        p += 1;
    }
    scan.pages = p;
    Ok(scan)
}

/// A page's LSN names the last record applied to it, so it lies before
/// the end of the log (invariant 4: a page reaches the disk only after the
/// log is durable up to its LSN). One at or past the end carries changes
/// whose records the log lost: recovery can neither redo nor undo them.
fn check_page_lsn(bytes: &[u8], at: &str, report: &mut Report) {
    let (Some(lsn), Some(end)) = (page_lsn(bytes), report.wal_end) else {
        return;
    };
    if lsn >= end {
        report.error(
            at,
            format!(
                "page LSN {lsn} is not before the end of the log ({end}): the log lost the \
                 records that wrote it, or the page is damaged"
            ),
        );
    }
}

/// The overflow heads in page `pid`'s live slots; a head that does not
/// decode is an error at its slot.
fn collect_heap_heads(
    page: &SlottedPage<&[u8]>,
    pid: PageId,
    at: &str,
    heads: &mut Vec<(String, OverflowHead)>,
    report: &mut Report,
) {
    for (slot, content) in page.slots() {
        if let Ok(SlotContent::Tuple { bytes, flags }) = content
            && flags.contains(TupleFlags::OVERFLOW_HEAD)
        {
            let here = format!("{at} slot {}", slot.0);
            match OverflowHead::decode(bytes, pid) {
                Ok(head) => heads.push((here, head)),
                Err(e) => report.error(here, e.to_string()),
            }
        }
    }
}

/// The overflow heads of a tree leaf's values (a value that does not
/// decode fails the page's verification, reported there).
fn collect_leaf_heads(
    page: &TreePage<&[u8]>,
    bytes: &[u8],
    at: &str,
    heads: &mut Vec<(String, OverflowHead)>,
) {
    for i in 0..page.len() {
        if let Ok((_, _, _, TreeItemView::Overflow(head))) = tree_item(page, bytes, i) {
            heads.push((format!("{at} item {i}"), head));
        }
    }
}

/// Follows every overflow chain from its head, as a read of the value
/// does (`ChainReader`: each page an overflow page with the next chunk
/// index, the length and the value's CRC as the head says), and checks
/// that no page is in two chains. An overflow page no chain reaches is a
/// warning (leaked space, no value lost), unless some page of the file
/// failed verification (the heads it held are unknown) or a chain broke
/// (the pages past the break are the value's, not leaked).
fn check_chains(path: &Path, id: u32, scan: &Scanned, report: &mut Report) -> Result<(), Failure> {
    let cannot = |e: std::io::Error| Failure(format!("cannot read {}: {e}", path.display()));
    let file = File::open(path).map_err(cannot)?;
    let len = file.metadata().map_err(cannot)?.len();
    let mut owner: BTreeMap<u32, &str> = BTreeMap::new();
    let mut broken = false;
    for (at, head) in &scan.heads {
        let problem = walk_chain(&file, len, scan.pages, head, at, &mut owner).map_err(cannot)?;
        if let Some(what) = problem {
            broken = true;
            let what = format!(
                "its value's overflow chain from page {}: {what}",
                head.first_page
            );
            finding(report, id, at.clone(), what);
        }
    }
    if scan.unreadable || broken {
        return Ok(());
    }
    let place = rel_place(id, RelFile::Heap);
    for p in scan.overflow.iter().filter(|p| !owner.contains_key(p)) {
        report.warning(
            format!("{place} page {p}"),
            "an overflow page no value's chain reaches (leaked space, no value lost)",
        );
    }
    Ok(())
}

/// Reads one chain; `owner` maps each page already in a chain to its
/// head's place. Returns what is wrong with the chain, if anything.
fn walk_chain<'a>(
    file: &File,
    len: u64,
    pages: u32,
    head: &OverflowHead,
    at: &'a str,
    owner: &mut BTreeMap<u32, &'a str>,
) -> std::io::Result<Option<String>> {
    let mut reader = ChainReader::new(*head);
    while let Some(pid) = reader.next_page() {
        if let Some(other) = owner.insert(pid.0, at) {
            return Ok(Some(if other == at {
                format!("it reaches page {pid} twice (a cycle)")
            } else {
                format!("page {pid} is also in the chain of the value at {other}")
            }));
        }
        let Some(bytes) = read_page(file, pid.0, len)? else {
            return Ok(Some(format!(
                "it links to page {pid}, past the end of the file ({pages} pages)"
            )));
        };
        if let Err(e) = reader.push(pid, &bytes) {
            return Ok(Some(e.to_string()));
        }
    }
    Ok(reader.finish().err().map(|e| e.to_string()))
}

/// Walks the tree in relation `id`'s file of `pages` pages when its page 0
/// is a tree meta page; returns whether it is. Pages failing verification
/// were reported by [`check_heap_file`]; the walk stops at them and says
/// nothing more.
fn check_tree_file(path: &Path, id: u32, pages: u32, report: &mut Report) -> Result<bool, Failure> {
    let cannot = |e: std::io::Error| Failure(format!("cannot read {}: {e}", path.display()));
    let file = File::open(path).map_err(cannot)?;
    let len = file.metadata().map_err(cannot)?.len();
    let first = read_page(&file, 0, len).map_err(cannot)?;
    if first.as_deref().and_then(page_type) != Some(PageType::TreeMeta) {
        return Ok(false);
    }
    report.trees += 1;
    let mut failed: Option<std::io::Error> = None;
    let tree = check_tree(pages, &mut |p| {
        let unread = |reason: String| PageError::Corrupted {
            page_id: p,
            offset: 0,
            reason,
        };
        match read_page(&file, p.0, len) {
            Ok(Some(bytes)) => keel::page::verify(&bytes, p).map(|_| bytes),
            Ok(None) => Err(unread("past the end of the file".to_owned())),
            Err(e) => {
                let reason = e.to_string();
                failed.get_or_insert(e);
                Err(unread(reason))
            }
        }
    });
    if let Some(e) = failed {
        return Err(cannot(e));
    }
    let place = rel_place(id, RelFile::Heap);
    for p in tree.problems {
        let at = format!("{place} page {}", p.page);
        match p.kind {
            ProblemKind::Unreadable => {}
            ProblemKind::Unreachable => report.warning(at, p.what),
            ProblemKind::Corrupt if report.crashed && report.redo.changed.contains(&id) => {
                report.warning(at, format!("{} (recovery may repair it)", p.what));
            }
            ProblemKind::Corrupt => report.error(at, p.what),
        }
    }
    Ok(true)
}

/// A catalog row as found on disk: where it is (for the report), its
/// TupleId and its bytes.
type CatalogRow = (String, TupleId, Vec<u8>);

/// The catalog rows on page `pid`, with where each is.
fn collect_rows(page: &SlottedPage<&[u8]>, pid: PageId, at: &str, rows: &mut Vec<CatalogRow>) {
    for (slot, content) in page.slots() {
        if let Ok(SlotContent::Tuple { bytes, flags }) = content
            && !flags.contains(TupleFlags::OVERFLOW_HEAD)
        {
            let tid = TupleId::new(pid, SlotId(slot.0));
            rows.push((format!("{at} slot {}", slot.0), tid, bytes.to_vec()));
        }
    }
}

fn check_catalog(
    files: &BTreeMap<u32, RelFiles>,
    rows: &[CatalogRow],
    trees: &BTreeSet<u32>,
    control: Option<&Control>,
    report: &mut Report,
) {
    if !files.get(&0).is_some_and(|f| f.heap) {
        report.error(rel_place(0, RelFile::Heap), "the catalog's file is missing");
    }
    let mut named: BTreeSet<u32> = BTreeSet::from([0]);
    let mut names: BTreeMap<String, u32> = BTreeMap::new();
    for (at, tid, bytes) in rows {
        // The engine's own decoder: what it refuses at open is an error here.
        let (id, name, kind) = match keel::heap::catalog::decode_row(*tid, bytes) {
            Ok((id, name, kind)) => (id.0, name, kind),
            Err(e) => {
                report.error(format!("catalog row at {at}"), e.to_string());
                continue;
            }
        };
        let place = format!("catalog row {name:?} (relation {id}) at {at}");
        if let Some(other) = names.insert(name.clone(), id) {
            report.error(&place, format!("name already used by relation {other}"));
        }
        if !named.insert(id) {
            report.error(&place, "relation id listed twice (or 0)");
        }
        let file_is_tree = trees.contains(&id);
        if files.get(&id).is_some_and(|f| f.heap)
            && (kind == keel::RelationKind::Tree) != file_is_tree
        {
            let what = format!(
                "the catalog says {} but its file's page 0 is {}a tree meta page",
                kind.name(),
                if file_is_tree { "" } else { "not " }
            );
            if report.crashed {
                report.warning(&place, format!("{what} (recovery may repair it)"));
            } else {
                report.error(&place, what);
            }
        }
        if !files.get(&id).is_some_and(|f| f.heap) {
            let what = format!("its file {} is missing", rel_place(id, RelFile::Heap));
            match report.ddl.committed_drops.get(&id) {
                // The row's delete is in the log, not yet on the page.
                Some(lsn) if report.crashed => report.warning(
                    &place,
                    format!("{what}; its drop at LSN {lsn} committed: recovery deletes the row"),
                ),
                _ => report.error(&place, what),
            }
        }
        if control.is_some_and(|c| id >= c.next_relation) {
            let what = "id not below the control file's next_relation";
            if report.crashed {
                report.warning(
                    &place,
                    format!("{what} (created since the last checkpoint: recovery moves the counter past it)"),
                );
            } else {
                report.error(&place, what);
            }
        }
    }
    check_unnamed(files, &named, report);
}

/// Files no catalog row names: settled by recovery when the log accounts
/// for them, orphans otherwise.
fn check_unnamed(files: &BTreeMap<u32, RelFiles>, named: &BTreeSet<u32>, report: &mut Report) {
    for (id, f) in files.iter().filter(|(id, _)| !named.contains(id)) {
        for (has, kind) in [(f.heap, RelFile::Heap), (f.fsm, RelFile::Fsm)] {
            if !has {
                continue;
            }
            let place = rel_place(*id, kind);
            if let Some(how) = report.ddl.settles(*id).filter(|_| report.crashed) {
                report.warning(place, format!("no catalog row names it; {how}"));
            } else if report.crashed && report.ddl.committed_creates.contains_key(id) {
                report.warning(
                    place,
                    "no catalog row names it on disk yet; its create committed: recovery inserts the row",
                );
            } else {
                report.error(
                    place,
                    "orphan file: no catalog row names it and the log does not account for it \
                     (opening keeps it and lists it in the recovery report)",
                );
            }
        }
    }
}

/// Decodes an FSM file and compares each recorded category with the page.
fn check_fsm(
    dir: &Path,
    id: u32,
    heap: Option<&(PageFree, u32)>,
    report: &mut Report,
) -> Result<(), Failure> {
    let path = RelFile::Fsm.path(dir, RelationId(id));
    let place = rel_place(id, RelFile::Fsm);
    let cannot = |e: std::io::Error| Failure(format!("cannot read {}: {e}", path.display()));
    let file = File::open(&path).map_err(cannot)?;
    let len = file.metadata().map_err(cannot)?.len();
    let page = PAGE_SIZE as u64;
    if len == 0 {
        report.warning(
            &place,
            "empty (the map will be rebuilt from the heap at open)",
        );
    } else if !len.is_multiple_of(page) {
        report.warning(
            &place,
            format!(
                "{len} bytes, not a whole number of {page}-byte pages: it ends in a partial page \
                 (the map will be rebuilt from the heap at open)"
            ),
        );
    }
    let mut p = 0u32;
    while let Some(bytes) = read_page(&file, p, len).map_err(cannot)? {
        let at = format!("{place} page {p}");
        match FsmPage::decode(&bytes, PageId(p)) {
            Ok(page) => {
                let pages = heap.map(|h| h.1);
                if p == 0
                    && let Some(pages) = pages
                    && page.covered_pages() > pages
                {
                    // A checkpoint saves a map only over pages already in
                    // the heap file, and heap files never shrink.
                    report.error(
                        rel_place(id, RelFile::Heap),
                        format!(
                            "truncated: {pages} pages, but its saved free space map covers {}: \
                             pages {pages}..{} are missing",
                            page.covered_pages(),
                            page.covered_pages()
                        ),
                    );
                }
                compare_fsm(&page, heap.map(|h| &h.0), &at, report)
            }
            // The engine rebuilds a bad map from the heap: not an error.
            Err(e) => report.warning(&at, format!("{e} (the map will be rebuilt at open)")),
        }
        p += 1;
    }
    Ok(())
}

fn compare_fsm(page: &FsmPage, heap: Option<&PageFree>, at: &str, report: &mut Report) {
    let first = page.first_page().0;
    for (k, entry) in page.entries().iter().enumerate() {
        let Some(Categories { contiguous, total }) = *entry else {
            continue;
        };
        let heap_page = first + k as u32;
        let Some(&(c_free, t_free)) = heap.and_then(|h| h.get(&heap_page)) else {
            report.warning(
                format!("{at} entry {k}"),
                format!("tracks page {heap_page}, which is not a valid heap or free page"),
            );
            continue;
        };
        let (c_promise, t_promise) = (category_bytes(contiguous), category_bytes(total));
        if c_promise > c_free || t_promise > t_free {
            report.warning(
                format!("{at} entry {k} (heap page {heap_page})"),
                format!(
                    "promises {c_promise} contiguous / {t_promise} total free bytes; the page has {c_free} / {t_free}"
                ),
            );
        }
    }
    debug_assert!(
        page.entries().len() <= ENTRIES_PER_PAGE,
        "the FSM page decoder bounds its entries (inv. 9)"
    );
}

/// The log must belong to the control file's database: the newest valid
/// segment header carries the same database id, as the open requires.
/// (A log the header cannot be read from is reported by [`check_wal`].)
fn check_database_id(
    dir: &Path,
    io: &std::sync::Arc<dyn keel_io::AsyncIo>,
    c: &Control,
    report: &mut Report,
) {
    let Ok(segments) = SegmentDir::existing(io.clone(), &wal_dir(dir)) else {
        return;
    };
    let Some(header) = segments
        .list()
        .ok()
        .and_then(|present| segments.newest_header(&present))
    else {
        return;
    };
    if header.database_id != c.database_id {
        report.error(
            CONTROL_FILE,
            format!(
                "the control file belongs to database {:#x}, the log in {WAL_DIR}/ to {:#x}: \
                 opening the database refuses it",
                c.database_id, header.database_id
            ),
        );
    }
}

/// The entries of the WAL directory named as segments (`<n>.wal`) that are
/// directories: the log lists only files as segments, so one is not part
/// of the log, and one numbered past the newest segment file is where the
/// log will one day need to put a segment (preparing it then fails, and a
/// failed preparation stops the log). Warnings naming the path: opening
/// the database does not refuse them.
fn check_wal_dir(dir: &Path, report: &mut Report) -> Result<(), Failure> {
    let wal = wal_dir(dir);
    let cannot = |e: std::io::Error| Failure(format!("cannot read {}: {e}", wal.display()));
    let entries = match std::fs::read_dir(&wal) {
        Ok(entries) => entries,
        // A missing WAL directory is reported by the log's own checks.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(cannot(e)),
    };
    let mut segment_files = Vec::new();
    let mut segment_dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(cannot)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(n) = parse_segment_file_name(&name) else {
            continue;
        };
        if entry.file_type().map_err(cannot)?.is_dir() {
            segment_dirs.push((n, name));
        } else {
            segment_files.push(n);
        }
    }
    let newest = segment_files.iter().max().copied();
    segment_dirs.sort_unstable();
    for (n, name) in segment_dirs {
        let ahead = if newest.is_none_or(|newest| n > newest) {
            format!(
                "; the log's newest segment is {}, and when the log reaches segment {n:#X} it \
                 cannot put a segment file there and stops: move it out of {WAL_DIR}/",
                newest.map_or_else(|| "none".to_owned(), segment_file_name)
            )
        } else {
            String::new()
        };
        report.warning(
            format!("{WAL_DIR}/{name}"),
            format!("a directory named as a log segment: the log does not read it{ahead}"),
        );
    }
    Ok(())
}

/// Reads every record from where recovery would start to the end.
fn check_wal(
    dir: &Path,
    io: std::sync::Arc<dyn keel_io::AsyncIo>,
    c: &Control,
    report: &mut Report,
) {
    let from = c.scan_start();
    report.wal_from = Some(from);
    let mode = if c.clean {
        RecoveryMode::AbsoluteConsistency
    } else {
        RecoveryMode::TolerateTornTail
    };
    // Read from where the open starts looking for the log's end when that
    // is older (the start of the newest segment): damage the open refuses
    // there is an error here too. Only records from `from` are counted.
    let read_from = match WalReader::end_search_start(io.clone(), &wal_dir(dir), from, mode) {
        Ok(start) => start.map_or(from, |s| s.min(from)),
        Err(e) => return report.error("wal", Failure::from(e).0),
    };
    let mut reader = match WalReader::open_read_only(io, &wal_dir(dir), read_from, mode) {
        Ok(r) => r,
        Err(e) => return report.error("wal", Failure::from(e).0),
    };
    let mut last = None;
    let (mut anchor, mut disagrees) = (c.anchor(), false);
    for record in reader.by_ref() {
        if let Ok(r) = &record
            && r.header.lsn <= anchor.at()
            && r.end() > anchor.at()
        {
            let checked = keel::wal::Payload::decode_record(&r.header, &r.payload)
                .map_err(keel::Error::from)
                .and_then(|p| anchor.record(&r.header, &p));
            if let Err(e) = checked {
                disagrees = true;
                report.error("control", Failure::from(e).0);
            }
        }
        match record {
            Ok(r) if r.header.lsn < from => last = Some(r.header.lsn),
            Ok(r) => {
                report.wal_records += 1;
                last = Some(r.header.lsn);
                report.ddl.record(&r);
                if r.header.lsn >= c.redo_start {
                    report.redo.record(&r);
                }
            }
            Err(e) => {
                let after =
                    last.map_or_else(String::new, |l| format!(" (last good record at LSN {l})"));
                return report.error(
                    format!("wal record at LSN {}", reader.position()),
                    format!("{}{after}", Failure::from(e).0),
                );
            }
        }
    }
    report.wal_end = reader.end();
    report.ddl.finish();
    if !disagrees
        && reader.end().is_some_and(|end| end > c.checkpoint_end)
        && let Err(e) = anchor.finish()
    {
        report.error("control", Failure::from(e).0);
    }
    check_log_reaches(dir, c, &reader, report);
    if let Some(cut) = reader.tail_cut() {
        report.warning(
            format!("wal at LSN {}", cut.at),
            format!("torn tail cut off: {}", cut.reason),
        );
    }
}

/// The log must reach the checkpoint the control file names: its end
/// record at `checkpoint_end` lies wholly before the log's end, as the
/// open requires (`Control::check_log_reaches`). A log that ends earlier
/// lost a segment or its tail; the error names the segment file.
fn check_log_reaches(dir: &Path, c: &Control, reader: &WalReader, report: &mut Report) {
    let end = reader.end().unwrap_or(c.scan_start());
    if end > c.checkpoint_end {
        return;
    }
    let size = reader.segment_size();
    let name = |lsn: Lsn| segment_file_name(lsn.0 / size);
    let start = name(c.scan_start());
    let place = format!("{WAL_DIR}/{}", name(c.checkpoint_end));
    let checkpoint = format!(
        "the checkpoint at {} ends at {} (control file)",
        c.redo_start, c.checkpoint_end
    );
    if !wal_dir(dir).join(&start).is_file() {
        report.error(
            format!("{WAL_DIR}/{start}"),
            format!(
                "missing: it holds LSN {}, where recovery starts reading, and {checkpoint}; \
                 opening the database refuses it",
                c.scan_start()
            ),
        );
    } else {
        report.error(
            place,
            format!(
                "the log ends at {end} but {checkpoint}: the segment is missing or lost its \
                 tail; opening the database refuses it"
            ),
        );
    }
}

fn print(args: &CheckArgs, report: &Report) -> Result<(), Failure> {
    let severity = |s: Severity| {
        if s == Severity::Error {
            "error"
        } else {
            "warning"
        }
    };
    if args.json {
        let problems: Vec<_> = report
            .problems
            .iter()
            .map(|p| json!({"severity": severity(p.severity), "where": p.place, "problem": p.what}))
            .collect();
        let out = json!({
            "dir": args.dir.display().to_string(),
            "ok": report.errors() == 0,
            "errors": report.errors(),
            "warnings": report.problems.len() - report.errors(),
            "relations": report.relations,
            "trees": report.trees,
            "pages": report.pages,
            "wal_records": report.wal_records,
            "wal_from": report.wal_from.map(|l| l.to_string()),
            "wal_end": report.wal_end.map(|l| l.to_string()),
            "recovery_pending": report.crashed,
            "problems": problems,
        });
        return outln!("{out}");
    }
    for p in &report.problems {
        outln!("{}: {}: {}", severity(p.severity), p.place, p.what)?;
    }
    let wal = match (report.wal_from, report.wal_end) {
        (Some(f), Some(e)) => format!("{} WAL records from {f} to {e}", report.wal_records),
        (Some(f), None) => format!("{} WAL records from {f}", report.wal_records),
        _ => "WAL not checked".to_owned(),
    };
    let trees = match report.trees {
        0 => String::new(),
        1 => " (1 a tree)".to_owned(),
        n => format!(" ({n} trees)"),
    };
    outln!(
        "checked {}: {} relations{trees}, {} pages, {wal}: {} errors, {} warnings",
        args.dir.display(),
        report.relations,
        report.pages,
        report.errors(),
        report.problems.len() - report.errors()
    )?;
    Ok(())
}
