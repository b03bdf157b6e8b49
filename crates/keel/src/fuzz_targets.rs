//! Bodies of the cargo-fuzz targets in `fuzz/`, kept in the library so the
//! normal test suite can replay the committed corpus through exactly the same
//! code (`tests/fuzz_corpus.rs`). Each target asserts the decoder's contract:
//! any bytes give a value or an error, never a panic (invariant 9), and
//! whatever decodes as valid behaves like a valid page.
//!
//! Built only with the `fuzz-targets` feature (the fuzz crate and this
//! crate's own tests turn it on). It is the one module allowed to `expect`:
//! an oracle's broken expectation is the finding, reported as a panic.

#![allow(clippy::expect_used)]

use crate::page::{
    DumpOptions, Fit, OverflowPage, PAGE_SIZE, PageError, SlotContent, SlottedPage, TupleFlags,
    dump_page, seal, verify, verify_structure,
};
use crate::types::{PageId, SlotId};

/// Page decoder, validator and dump over arbitrary bytes. The first four
/// bytes choose the page id the bytes are read as, the rest is the page.
pub fn page_decode(data: &[u8]) {
    let (id, page) = match data.split_first_chunk::<4>() {
        Some((id, rest)) => (PageId(u32::from_le_bytes(*id)), rest),
        None => (PageId(0), data),
    };
    let _ = verify(page, id);
    let _ = dump_page(
        page,
        id,
        &DumpOptions {
            hex: true,
            preview_bytes: 0,
        },
    );
    if let Ok(p) = OverflowPage::open(page, id) {
        let _ = (p.chunk().len(), p.chunk_index(), p.next_page());
    }
    let Ok(p) = SlottedPage::open(page, id) else {
        return;
    };
    // Accessors on a page that passed only the header check must not panic.
    let _ = p.stats();
    let _ = p.fit(100);
    for (_, content) in p.slots() {
        let _ = content;
    }
    if p.validate().is_err() {
        return;
    }
    // A structurally valid page behaves like one: changes keep it valid.
    let before: Vec<Option<Vec<u8>>> = (0..p.slot_count())
        .map(|s| match p.get(SlotId(s)) {
            Ok(SlotContent::Tuple { bytes, .. }) => Some(bytes.to_vec()),
            _ => None,
        })
        .collect();
    let mut copy = page.to_vec();
    let mut p = SlottedPage::open(&mut copy[..], id).expect("reopened a valid page");
    p.compact();
    if p.fit(10) == Fit::Now {
        p.insert(b"fuzz tuple", TupleFlags::NONE)
            .expect("insert after fit said Now");
    }
    p.validate()
        .expect("a valid page stays valid after compaction and insert");
    for (s, old) in before.iter().enumerate() {
        if let Some(old) = old {
            let now = p
                .tuple(SlotId(s as u16))
                .expect("tuple survives compaction");
            assert_eq!(now, &old[..], "compaction changed tuple {s}");
        }
    }
    if copy.len() == PAGE_SIZE {
        seal(&mut copy).expect("page-sized buffer seals");
        verify(&copy, id).expect("a sealed valid page verifies");
        let _ = verify_structure(&copy, id);
    }
}

/// WAL record frame and payload decoders over arbitrary bytes. The first
/// byte picks a record type, the next eight an LSN; the rest is read both as
/// a whole record frame at that LSN and as a payload of that type. Whatever
/// decodes must re-encode to exactly the bytes it came from (encodings are
/// canonical), and describe itself without panicking.
pub fn wal_record(data: &[u8]) {
    use crate::types::Lsn;
    use crate::wal::payload::Payload;
    use crate::wal::record::{self, RecordMeta, RecordType};

    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let kind = RecordType::ALL[usize::from(pick) % RecordType::ALL.len()];
    let (lsn, body) = match rest.split_first_chunk::<8>() {
        Some((l, body)) => (Lsn(u64::from_le_bytes(*l)), body),
        None => (Lsn(0), rest),
    };

    // The bytes as a record frame.
    let _ = record::decode_frame(body, lsn);
    if let Ok((header, payload)) = record::decode(body, lsn) {
        let meta = RecordMeta {
            kind: header.kind,
            txn: header.txn,
            prev_lsn: header.prev_lsn,
            relation: header.relation,
            page: header.page,
        };
        let mut again = vec![0u8; record::encoded_len(payload.len())];
        record::encode_unsealed(&mut again, &meta, lsn, payload);
        record::seal(&mut again, header.batch_start);
        assert_eq!(again, body[..again.len()], "frame re-encodes differently");
        if let Ok(p) = Payload::decode_record(&header, payload) {
            check_payload(&p, header.kind, payload);
        }
    }

    // The bytes as a payload of the chosen type, bare and inside a frame.
    if let Ok(p) = Payload::decode(kind, body, lsn) {
        check_payload(&p, kind, body);
        let framed = record::encode(&RecordMeta::new(kind), lsn, body);
        let (header, payload) = record::decode(&framed, lsn).expect("a fresh frame decodes");
        assert_eq!(Payload::decode_record(&header, payload).ok(), Some(p));
    }
}

fn check_payload(
    p: &crate::wal::payload::Payload,
    kind: crate::wal::record::RecordType,
    bytes: &[u8],
) {
    assert_eq!(p.kind(), kind, "payload decoded as another type");
    assert_eq!(p.encoded_len(), bytes.len(), "encoded_len disagrees");
    let again = p.to_bytes().expect("a decoded payload re-encodes");
    assert_eq!(again, bytes, "{kind:?} payload re-encodes differently");
    let _ = p.summary();
    let _ = (p.page_changing(), p.needs_undo(), p.undo_next());
}

/// Most pages of one input that [`tree_page`] walks as a tree.
const TREE_FUZZ_PAGES: usize = 8;

/// Tree pages over arbitrary bytes. The first four bytes choose the page id
/// the first page is read as; the rest is cut into pages (the last padded
/// with zeros), each decoded as a node (the first at the chosen id, page
/// `i` at id `i`), and all of them (at most [`TREE_FUZZ_PAGES`]) walked by
/// the tree checker as a tree file. Nothing panics (invariant 9), the walk
/// reaches each page at most once, a page never differs from itself, and a
/// valid node takes an insert and a remove and stays valid.
pub fn tree_page(data: &[u8]) {
    use crate::page::tree::check::check_tree;
    let (id, rest) = match data.split_first_chunk::<4>() {
        Some((id, rest)) => (PageId(u32::from_le_bytes(*id)), rest),
        None => (PageId(0), data),
    };
    let pages: Vec<Vec<u8>> = rest
        .chunks(PAGE_SIZE)
        .take(TREE_FUZZ_PAGES)
        .map(|c| {
            let mut p = c.to_vec();
            p.resize(PAGE_SIZE, 0);
            p
        })
        .collect();
    tree_node(rest.get(..PAGE_SIZE).unwrap_or(rest), id);
    for (i, p) in pages.iter().enumerate().skip(1) {
        tree_node(p, PageId(i as u32));
    }
    let report = check_tree(pages.len() as u32, &mut |p| {
        pages
            .get(p.0 as usize)
            .cloned()
            .ok_or(crate::page::PageError::Corrupted {
                page_id: p,
                offset: 0,
                reason: "past the input".to_owned(),
            })
    });
    let _ = (report.height(), report.leaf_fill(), report.has_errors());
    let reached: usize = report.pages_per_level.iter().map(|&n| n as usize).sum();
    assert!(
        reached < pages.len().max(1),
        "the walk reached {reached} nodes in {} pages",
        pages.len()
    );
}

/// One page of [`tree_page`], as page `id`.
fn tree_node(bytes: &[u8], id: PageId) {
    use crate::page::first_difference;
    use crate::page::tree::{self, TreePage};
    let _ = verify(bytes, id);
    let _ = tree::read_meta(bytes, id);
    let _ = dump_page(bytes, id, &DumpOptions::default());
    if let Ok(image) = <&[u8; PAGE_SIZE]>::try_from(bytes) {
        assert_eq!(
            first_difference(bytes, id, image),
            None,
            "a page differs from itself"
        );
    }
    let Ok(p) = TreePage::open(bytes, id) else {
        return;
    };
    let _ = (
        p.level(),
        p.flags(),
        p.high_key(),
        p.right_link(),
        p.fits(100),
    );
    let _ = (p.search(b"m"), p.total_free(), p.items());
    for i in 0..p.len() {
        let _ = (p.item(i), p.child(i));
    }
    if !p.is_leaf() {
        let _ = p.child_for(b"m");
    }
    if p.validate().is_ok() {
        tree_node_changes(bytes, id);
    }
}

/// A valid node takes an item just after its first key (when it fits and
/// the node covers it) and stays valid; removing it restores the items.
fn tree_node_changes(bytes: &[u8], id: PageId) {
    use crate::page::tree::{self, TreePage};
    let mut copy = bytes.to_vec();
    let mut p = TreePage::open(&mut copy[..], id).expect("reopened a valid node");
    let before = p.items().expect("a valid node's items read");
    let key: Vec<u8> = before
        .first()
        .map_or_else(Vec::new, |(k, _)| [&k[..], &[0]].concat());
    let rest = if p.is_leaf() {
        tree::inline_value(b"fuzz")
    } else {
        tree::child_rest(PageId(if id.0 == 1 { 2 } else { 1 })).to_vec()
    };
    let fits = key.len() <= tree::MAX_KEY_LEN && p.fits(tree::item_len(&key, &rest));
    let Ok(Err(i)) = p.search(&key) else {
        return;
    };
    if !fits || !p.covers(&key) {
        return;
    }
    p.insert(i, &key, &rest)
        .expect("insert after fits said yes");
    p.validate()
        .expect("a valid node stays valid after an insert");
    p.remove(i).expect("the inserted item is removed");
    p.validate()
        .expect("a valid node stays valid after a remove");
    assert_eq!(
        p.items().expect("items read"),
        before,
        "insert then remove changed the items"
    );
}

/// Most FSM pages of one input that [`fsm_page`] loads as a map's file.
const FSM_FUZZ_PAGES: usize = 8;

/// FSM pages over arbitrary bytes. The first four bytes choose the FSM page
/// id the first page is read as; the rest is cut into pages (at most
/// [`FSM_FUZZ_PAGES`], the last one possibly short), page `i > 0` read as
/// FSM page id `i`, and all of them loaded as a map's file (page `i` as id
/// `i`, as [`FreeSpaceMap::from_pages`] reads a file). The input is tried
/// as given and with every whole page re-sealed (so the body checks and
/// the checks across pages are reached, not only the checksums).
///
/// Every page, and the relation between pages (each one's covered count,
/// entry count and first heap page, the number of pages), is untrusted:
/// nothing panics (invariant 9), a page that decodes re-encodes to exactly
/// its bytes, and the file loads exactly when every page decodes at its
/// position, all agree with page 0 on the pages covered and together hold
/// that many entries; otherwise the error names the first page at fault.
/// A loaded map keeps its invariants, re-encodes to exactly the file,
/// covers what its pages say, answers lookups with pages whose record
/// covers the request, and refuses the file cut by its last page or with
/// a page appended.
pub fn fsm_page(data: &[u8]) {
    let (id, rest) = match data.split_first_chunk::<4>() {
        Some((id, rest)) => (PageId(u32::from_le_bytes(*id)), rest),
        None => (PageId(0), data),
    };
    let given: Vec<&[u8]> = rest.chunks(PAGE_SIZE).take(FSM_FUZZ_PAGES).collect();
    let resealed: Vec<Vec<u8>> = given
        .iter()
        .map(|p| {
            let mut p = p.to_vec();
            // A short page stays as it is: sealing refuses it.
            let _ = seal(&mut p);
            p
        })
        .collect();
    let resealed: Vec<&[u8]> = resealed.iter().map(Vec::as_slice).collect();
    fsm_file(&given, id);
    if resealed != given {
        fsm_file(&resealed, id);
    }
}

/// One candidate file of [`fsm_page`]: `pages[0]` is also read as `id`.
fn fsm_file(pages: &[&[u8]], id: PageId) {
    use crate::fsm::{FitKind, FreeSpaceMap, FsmPage};
    let ids = (0..pages.len()).map(|i| if i == 0 { id } else { PageId(i as u32) });
    for (&bytes, id) in pages.iter().zip(ids) {
        if let Ok(p) = FsmPage::decode(bytes, id) {
            assert_eq!(p.encode(), bytes, "FSM page {id} re-encodes differently");
        }
    }
    // What loading the file must give: the pages covered, or the first
    // page at fault.
    let mut expect: Result<u32, PageId> = Ok(0);
    let mut entries = 0usize;
    for (i, &bytes) in pages.iter().enumerate() {
        let at = PageId(i as u32);
        match FsmPage::decode(bytes, at) {
            Ok(p) if i == 0 || Ok(p.covered_pages()) == expect => {
                expect = Ok(p.covered_pages());
                entries += p.entries().len();
            }
            _ => {
                expect = Err(at);
                break;
            }
        }
    }
    if let Ok(covered) = expect
        && entries != covered as usize
    {
        expect = Err(PageId(pages.len() as u32));
    }
    let map = match (FreeSpaceMap::from_pages(pages), expect) {
        (Ok(map), Ok(covered)) => {
            assert_eq!(map.covered_pages(), covered, "the map covers its pages");
            map
        }
        (Err(e), Err(at)) => {
            let named = match e {
                PageError::ChecksumMismatch { page_id, .. }
                | PageError::Corrupted { page_id, .. }
                | PageError::WrongPageType { page_id, .. } => Some(page_id),
                _ => None,
            };
            assert_eq!(
                named,
                Some(at),
                "the load error names the page at fault: {e}"
            );
            return;
        }
        (Ok(_), Err(at)) => panic!("an FSM file loads though page {at} is at fault"),
        (Err(e), Ok(_)) => panic!("a consistent FSM file fails to load: {e}"),
    };
    map.check_invariants()
        .expect("a loaded map keeps its invariants");
    assert_eq!(map.to_pages(), pages, "map re-encodes differently");
    for n in [0, 10, 104, 1000, 8152] {
        let Some((found, kind)) = map.find(n) else {
            continue;
        };
        let (contiguous, total) = map.recorded(found).expect("found page is tracked");
        match kind {
            FitKind::Now => assert!(contiguous >= n, "page {found} cannot fit {n} now"),
            FitKind::AfterCompaction => assert!(total >= n, "page {found} cannot fit {n}"),
        }
    }
    if let Some((&last, head)) = pages.split_last() {
        if !head.is_empty() {
            assert!(
                FreeSpaceMap::from_pages(head).is_err(),
                "an FSM file without its last page loads"
            );
        }
        let longer = [pages, &[last]].concat();
        assert!(
            FreeSpaceMap::from_pages(&longer).is_err(),
            "an FSM file with a page appended loads"
        );
    }
}

/// Size of the segments the WAL fuzz targets build.
const SEGMENT: usize = 64 * 1024;

/// Segment 0 of database 7 as the WAL fuzz targets build it: a valid header
/// (the crate's own encoder), then `data`, cut to fit the segment.
fn fuzz_segment(data: &[u8]) -> Vec<u8> {
    use crate::wal::segment::{SEGMENT_HEADER_SIZE, SegmentHeader};
    let header = SegmentHeader {
        segment_no: 0,
        segment_size: SEGMENT as u32,
        database_id: 7,
        max_batch_bytes: 16 * 1024,
    };
    let mut bytes = header.encode();
    bytes.extend_from_slice(&data[..data.len().min(SEGMENT - SEGMENT_HEADER_SIZE)]);
    bytes
}

/// A whole WAL segment of arbitrary bytes (after a valid segment header)
/// through the reader in every recovery mode and through `Wal::open`, which
/// finds the end of the log and clears what follows it. Records the reader
/// returns must be in order, contiguous or skipping only to a segment's next
/// record, and inside the segment.
pub fn wal_segment(data: &[u8]) {
    use std::path::Path;
    use std::sync::Arc;

    use keel_io::AsyncIo;
    use keel_io::sim::{SimConfig, SimDisk, SimIo};

    use crate::types::Lsn;
    use crate::wal::segment::{SEGMENT_HEADER_SIZE, segment_file_name};
    use crate::wal::{RecoveryMode, Wal, WalConfig, WalReader};

    let mut bytes = fuzz_segment(data);
    bytes.resize(SEGMENT, 0);
    let dir = Path::new("/w");
    let disk = SimDisk::new().with_file(&dir.join(segment_file_name(0)), &bytes);
    let io: Arc<dyn AsyncIo> = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(1)));
    for mode in [
        RecoveryMode::TolerateTornTail,
        RecoveryMode::AbsoluteConsistency,
        RecoveryMode::SalvageToFirstError,
    ] {
        let Ok(reader) = WalReader::open_read_only(io.clone(), dir, Lsn::ZERO, mode) else {
            continue;
        };
        let mut last_end = Lsn(SEGMENT_HEADER_SIZE as u64);
        for record in reader {
            let Ok(r) = record else { break };
            assert!(r.header.lsn >= last_end, "records out of order");
            assert!(r.end().0 <= SEGMENT as u64, "record past the segment");
            last_end = r.end();
        }
    }
    let config = WalConfig {
        segment_size_bytes: SEGMENT as u32,
        max_batch_bytes: 16 * 1024,
        buffer_capacity_bytes: 64 * 1024,
        ..WalConfig::default()
    };
    if let Ok((wal, report)) = Wal::open(io, dir, config) {
        assert!(report.end.0 >= SEGMENT_HEADER_SIZE as u64);
        // What it appends after the end it found reads back.
        let meta = crate::wal::RecordMeta::new(crate::wal::RecordType::Abort);
        if let Ok(a) = wal.append(&meta, &[])
            && wal.flush(a.lsn).is_ok()
        {
            let reader = wal.reader(report.end, RecoveryMode::TolerateTornTail);
            let first = reader.ok().and_then(|mut r| r.next()).and_then(Result::ok);
            assert_eq!(
                first.map(|r| r.header.lsn),
                Some(a.lsn),
                "appended record lost"
            );
        }
    }
}

/// Recovery over arbitrary log bytes: a simulated disk whose only file is
/// WAL segment 0 (a valid segment header, then the input), opened as a
/// database, which runs analysis, redo and undo over whatever records it
/// finds; then every relation is scanned and a checkpoint taken. Any error
/// is fine, a panic is not (invariant 9).
///
/// The first input byte picks a mode: bit 0 re-seals every record frame the
/// bytes chain into (a plausible total length each, CRC recomputed; bit 1
/// also stamps each frame's LSN with its position), so mutations reach
/// payload decoding, redo and undo instead of stopping at the checksum.
pub fn recovery(data: &[u8]) {
    let _ = recovery_run(data);
}

/// The body of [`recovery`]: what recovery reported and how many tuples the
/// scans found (so tests can check that a valid log really recovers).
pub fn recovery_run(data: &[u8]) -> crate::Result<(crate::RecoveryReport, usize)> {
    use std::path::Path;
    use std::sync::Arc;

    use keel_io::AsyncIo;
    use keel_io::sim::{SimConfig, SimDisk, SimIo};

    use crate::wal::record::{RECORD_HEADER_SIZE, offsets};
    use crate::wal::segment::{SEGMENT_HEADER_SIZE, segment_file_name};

    let Some((&mode, data)) = data.split_first() else {
        return Ok((crate::RecoveryReport::default(), 0));
    };
    let mut bytes = fuzz_segment(data);
    if mode & 1 == 1 {
        let mut p = SEGMENT_HEADER_SIZE;
        while p + RECORD_HEADER_SIZE <= bytes.len() {
            let mut len = [0u8; 4];
            len.copy_from_slice(&bytes[p + offsets::TOTAL_LEN..p + offsets::TOTAL_LEN + 4]);
            let len = u32::from_le_bytes(len) as usize;
            if len < RECORD_HEADER_SIZE || len > bytes.len() - p {
                break;
            }
            if mode & 2 == 2 {
                bytes[p + offsets::LSN..p + offsets::LSN + 8]
                    .copy_from_slice(&(p as u64).to_le_bytes());
            }
            let crc = crate::checksum::crc32c(&bytes[p + offsets::TOTAL_LEN..p + len]);
            bytes[p + offsets::CRC..p + offsets::CRC + 4].copy_from_slice(&crc.to_le_bytes());
            p += len;
        }
    }
    bytes.resize(SEGMENT, 0);
    let dir = Path::new("/db");
    let disk = SimDisk::new().with_file(
        &crate::datadir::layout::wal_dir(dir).join(segment_file_name(0)),
        &bytes,
    );
    let io: Arc<dyn AsyncIo> = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(1)));
    let db = crate::Database::open_with_io(dir, fuzz_db_config(), io)?;
    let report = db.recovery_report().clone();
    let mut rows = 0;
    for rel in db.relations() {
        let tx = db.begin()?;
        for row in tx.scan(rel.id)? {
            row?;
            rows += 1;
        }
    }
    db.checkpoint()?;
    db.close()?;
    Ok((report, rows))
}

/// Mode bit of [`datadir_open`]: rewrite the control file's CRC.
pub const RESEAL_CONTROL: u8 = 1;
/// Mode bit of [`datadir_open`]: rewrite segment 0's header CRC.
pub const RESEAL_SEGMENT_HEADER: u8 = 2;

/// The data directory [`datadir_open`] starts from, built once: a
/// relation of committed rows, a checkpoint, more commits and a loser,
/// then a power cut (so opening it runs analysis, redo and undo). It
/// opens with 10 - 1 + 1 rows and 10 - 1 keys.
pub fn fuzz_datadir() -> &'static keel_io::sim::SimDisk {
    use std::sync::{Arc, OnceLock};

    use keel_io::sim::{SimConfig, SimDisk, SimIo};

    static DISK: OnceLock<SimDisk> = OnceLock::new();
    DISK.get_or_init(|| {
        let sim = Arc::new(SimIo::new(SimConfig::seeded(31)));
        let io: Arc<dyn keel_io::AsyncIo> = sim.clone();
        let db = crate::Database::open_with_io(DATADIR, fuzz_db_config(), io)
            .expect("a new database opens");
        let rel = db.create_relation("t").expect("create");
        let tree = db.create_tree("k").expect("create tree");
        let mut tx = db.begin().expect("begin");
        let mut tids = Vec::new();
        for i in 0..10u8 {
            tids.push(tx.insert(rel, &[i; 40]).expect("insert"));
            tx.put(tree, &[i], &[i; 8]).expect("put");
        }
        tx.commit().expect("commit");
        db.checkpoint().expect("checkpoint");
        let mut tx = db.begin().expect("begin");
        tx.update(rel, tids[1], &[7u8; 900]).expect("update");
        tx.delete(rel, tids[2]).expect("delete");
        tx.delete_key(tree, &[3]).expect("delete key");
        tx.commit().expect("commit");
        let mut loser = db.begin().expect("begin");
        loser.update(rel, tids[4], &[9u8; 300]).expect("update");
        loser.put(tree, &[20], b"loser").expect("put");
        let mut tx = db.begin().expect("begin");
        tx.insert(rel, b"last").expect("insert");
        tx.commit().expect("commit");
        let disk = sim.crash();
        drop(loser);
        drop(db);
        disk
    })
}

/// Where [`datadir_open`]'s directory lives on the simulated disk.
pub const DATADIR: &str = "/db";

/// The configuration [`recovery`] and [`datadir_open`] open their
/// directory with.
fn fuzz_db_config() -> crate::Config {
    let mut config = crate::Config {
        buffer: crate::buffer::BufferConfig::with_frames(16),
        checkpoint_interval: None,
        checkpoint_wal_bytes: 0,
        recovery_checkpoint: crate::RecoveryCheckpoint::BeforeOpenReturns,
        ..crate::Config::default()
    };
    config.wal.segment_size_bytes = SEGMENT as u32;
    config.wal.max_batch_bytes = 16 * 1024;
    config.wal.buffer_capacity_bytes = 64 * 1024;
    config
}

/// Opening a data directory whose control file and first WAL segment
/// header are arbitrary bytes. The first byte is the mode
/// ([`RESEAL_CONTROL`], [`RESEAL_SEGMENT_HEADER`]); the next 64 bytes (or
/// fewer) are the control file; what follows is written over the start of
/// segment 0 (its header, up to its 4 KiB). The rest of the directory is
/// a crashed database with a checkpoint ([`fuzz_datadir`]). Decoding the
/// control file gives a value or an error, and a decoded one re-encodes to
/// the same bytes; the open (analysis, redo, undo), a scan of every
/// relation and a checkpoint give results or errors, never a panic
/// (invariant 9).
pub fn datadir_open(data: &[u8]) {
    let _ = datadir_open_run(data);
}

/// The body of [`datadir_open`]: what recovery reported and how many
/// tuples and keys the scans found (so tests can check that the seed
/// directory really opens).
pub fn datadir_open_run(data: &[u8]) -> crate::Result<(crate::RecoveryReport, usize)> {
    use std::path::Path;
    use std::sync::Arc;

    use keel_io::sim::{SimConfig, SimIo};

    use crate::datadir::layout::{control_path, wal_dir};
    use crate::recovery::control::{CONTROL_SIZE, Control, offsets as control_offsets};
    use crate::wal::segment::{SEGMENT_HEADER_SIZE, offsets as segment_offsets, segment_file_name};

    let Some((&mode, rest)) = data.split_first() else {
        return Ok((crate::RecoveryReport::default(), 0));
    };
    let (control, header) = rest.split_at(rest.len().min(CONTROL_SIZE));
    let mut control = control.to_vec();
    if mode & RESEAL_CONTROL != 0 && control.len() == CONTROL_SIZE {
        let crc = control_offsets::CRC..control_offsets::CRC + 4;
        control[crc.clone()].fill(0);
        let sum = crate::checksum::crc32c(&control);
        control[crc].copy_from_slice(&sum.to_le_bytes());
    }
    let dir = Path::new(DATADIR);
    if let Ok(c) = Control::decode(&control, &control_path(dir)) {
        assert_eq!(
            c.encode()[..],
            control[..],
            "a control file re-encodes differently"
        );
    }
    let base = fuzz_datadir();
    let segment_path = wal_dir(dir).join(segment_file_name(0));
    let mut segment = base.file(&segment_path).expect("segment 0 exists").to_vec();
    let header = &header[..header.len().min(SEGMENT_HEADER_SIZE)];
    segment[..header.len()].copy_from_slice(header);
    if mode & RESEAL_SEGMENT_HEADER != 0 {
        let crc = crate::checksum::crc32c(&segment[..segment_offsets::CRC]);
        segment[segment_offsets::CRC..segment_offsets::CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }
    let disk = base
        .clone()
        .with_file(&control_path(dir), &control)
        .with_file(&segment_path, &segment);
    let io: Arc<dyn keel_io::AsyncIo> = Arc::new(SimIo::from_disk(disk, SimConfig::seeded(1)));
    let db = crate::Database::open_with_io(dir, fuzz_db_config(), io)?;
    let report = db.recovery_report().clone();
    let mut found = 0;
    let tx = db.begin()?;
    for rel in db.relations() {
        match rel.kind {
            crate::RelationKind::Heap => {
                for row in tx.scan(rel.id)? {
                    row?;
                    found += 1;
                }
            }
            crate::RelationKind::Tree => {
                for kv in tx.range(rel.id, ..)? {
                    kv?;
                    found += 1;
                }
            }
        }
    }
    tx.commit()?;
    db.checkpoint()?;
    db.close()?;
    Ok((report, found))
}
