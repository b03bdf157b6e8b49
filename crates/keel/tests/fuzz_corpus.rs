//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/<target>/`) and a
//! deterministic set of mutations through the fuzz targets' bodies, so every
//! test run checks the decoders' no-panic contract (invariant 9) without
//! nightly. Write the seed corpus with
//! `KEEL_WRITE_SEED_CORPUS=1 cargo test -p keel --test fuzz_corpus`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::path::PathBuf;

use keel::fuzz_targets::page_decode;
use keel::page::{OverflowHead, OverflowPage, PAGE_SIZE, SlottedPage, TupleFlags, seal, verify};
use keel::{PageId, SlotId, TupleId};

fn corpus_dir(target: &str) -> PathBuf {
    [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "fuzz",
        "corpus",
        target,
    ]
    .iter()
    .collect()
}

/// Replays every input of `target`'s committed corpus through `run`
/// (writing `seeds` there first when `KEEL_WRITE_SEED_CORPUS` is set) and
/// checks that it holds at least `min` inputs.
fn replay_corpus(target: &str, seeds: Vec<(String, Vec<u8>)>, min: usize, run: impl Fn(&[u8])) {
    let dir = corpus_dir(target);
    if std::env::var_os("KEEL_WRITE_SEED_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        run(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= min, "corpus at {} has only {n} inputs", dir.display());
}

/// Fuzz input: page id, then the page.
fn input(id: u32, page: &[u8]) -> Vec<u8> {
    let mut v = id.to_le_bytes().to_vec();
    v.extend_from_slice(page);
    v
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut heap = SlottedPage::init(vec![0u8; PAGE_SIZE], PageId(3)).unwrap();
    for i in 0..30u8 {
        heap.insert(&vec![i; usize::from(i) * 7], TupleFlags::NONE)
            .unwrap();
    }
    for s in [2u16, 5, 9] {
        heap.delete(SlotId(s)).unwrap();
    }
    heap.free_slot(SlotId(5)).unwrap();
    heap.set_forward(SlotId(7), TupleId::new(PageId(8), SlotId(1)))
        .unwrap();
    let head = OverflowHead::for_value(&[1u8; 10_000], PageId(20)).unwrap();
    heap.insert(&head.encode(), TupleFlags::OVERFLOW_HEAD)
        .unwrap();
    let mut heap = heap.into_inner();
    seal(&mut heap).unwrap();
    verify(&heap, PageId(3)).unwrap();

    let mut overflow = vec![0u8; PAGE_SIZE];
    OverflowPage::init(&mut overflow[..], PageId(20), 0, &[1u8; 8000], 21).unwrap();
    seal(&mut overflow).unwrap();

    let mut empty = SlottedPage::init(vec![0u8; PAGE_SIZE], PageId(0))
        .unwrap()
        .into_inner();
    seal(&mut empty).unwrap();
    vec![
        ("heap_page".into(), input(3, &heap)),
        ("overflow_page".into(), input(20, &overflow)),
        ("empty_heap_page".into(), input(0, &empty)),
        ("short".into(), input(1, &heap[..100])),
        ("zeroes".into(), input(0, &[0u8; PAGE_SIZE])),
    ]
}

#[test]
fn committed_corpus_replays_without_panics() {
    replay_corpus("page_decode", seeds(), 5, page_decode);
}

/// Flips each byte of the header and slot directory, and a stride of the
/// tuple area, both with the stale checksum (caught by the CRC) and re-sealed
/// (so the structural checks must catch it or the page must still behave).
#[test]
fn single_byte_mutations_never_panic() {
    for (_, seed) in seeds() {
        let (id, page) = seed.split_at(4);
        let positions = (0..page.len().min(400)).chain((400..page.len()).step_by(61));
        for pos in positions {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut m = page.to_vec();
                m[pos] ^= flip;
                page_decode(&[id, &m].concat());
                if m.len() == PAGE_SIZE {
                    seal(&mut m).unwrap();
                    page_decode(&[id, &m].concat());
                }
            }
        }
    }
}

// --- wal_record ---

mod wal {
    use super::replay_corpus;
    use keel::fuzz_targets::wal_record;
    use keel::page::{
        CHUNK_CAPACITY, MAX_TUPLE_LEN, NO_PAGE, PAGE_SIZE, PageType, Relocation, SlottedPage,
        TupleFlags,
    };
    use keel::wal::payload::{Payload, SlotImage, TupleBatch};
    use keel::wal::record::{self, RECORD_HEADER_SIZE, RecordMeta, RecordType};
    use keel::{Lsn, PageId, RelationId, SlotId, TupleId, TxnId};

    const LSN: Lsn = Lsn(0x0001_0000_2000);

    fn heap_image() -> Box<[u8; PAGE_SIZE]> {
        let mut page = SlottedPage::init(vec![0u8; PAGE_SIZE], PageId(9)).unwrap();
        for i in 0..4u8 {
            page.insert(&[i; 50], TupleFlags::NONE).unwrap();
        }
        Box::new(page.into_inner().try_into().unwrap())
    }

    fn page_actions() -> Vec<Payload> {
        let old = SlotImage::Tuple {
            flags: TupleFlags::NONE,
            bytes: b"old tuple".to_vec(),
        };
        let fwd = SlotImage::Forward(TupleId::new(PageId(7), SlotId(2)));
        vec![
            Payload::PageImage {
                image: heap_image(),
            },
            Payload::PageDelta {
                ranges: vec![(24, vec![1, 2]), (8000, vec![3; 20])],
            },
            Payload::PageInit {
                page_type: PageType::Overflow,
            },
            Payload::HeapInsert {
                slot: SlotId(3),
                flags: TupleFlags::MOVED_IN,
                tuple: b"a tuple".to_vec(),
            },
            Payload::HeapDelete {
                slot: SlotId(4),
                old: old.clone(),
            },
            Payload::HeapDelete {
                slot: SlotId(4),
                old: fwd.clone(),
            },
            Payload::HeapUpdate {
                slot: SlotId(5),
                old: old.clone(),
                new_flags: TupleFlags::OVERFLOW_HEAD,
                new: vec![6; 24],
            },
            Payload::HeapForward {
                slot: SlotId(6),
                target: TupleId::new(PageId(8), SlotId(1)),
                old: fwd,
            },
            Payload::HeapFreeSlot { slot: SlotId(7) },
            Payload::HeapMultiInsert {
                first: SlotId(2),
                flags: TupleFlags::NONE,
                tuples: {
                    let mut t = TupleBatch::with_capacity(3, 0);
                    for v in [&b"first"[..], b"", &[4; 108]] {
                        t.push(v);
                    }
                    t
                },
            },
            Payload::HeapMultiRemove {
                first: SlotId(2),
                count: 3,
            },
            Payload::PageCompaction {
                relocations: vec![Relocation {
                    slot: SlotId(1),
                    old_offset: 7000,
                    new_offset: 8092,
                    len: 100,
                }],
            },
            Payload::OverflowWrite {
                index: 1,
                next: NO_PAGE,
                chunk: vec![9; 100],
            },
            Payload::OverflowFree,
        ]
    }

    /// Valid payloads of every record type, edge sizes included.
    fn payloads() -> Vec<Payload> {
        let mut v = vec![Payload::Padding { len: 16 }];
        v.extend(page_actions());
        v.extend([
            Payload::HeapInsert {
                slot: SlotId(0),
                flags: TupleFlags::NONE,
                tuple: vec![],
            },
            Payload::HeapInsert {
                slot: SlotId(0),
                flags: TupleFlags::NONE,
                tuple: vec![1; MAX_TUPLE_LEN],
            },
            Payload::OverflowWrite {
                index: 0,
                next: 3,
                chunk: vec![2; CHUNK_CAPACITY],
            },
            Payload::Begin,
            Payload::Commit {
                commit_time_us: 1_700_000_000_000_000,
            },
            Payload::Abort,
            Payload::CheckpointBegin,
            Payload::CheckpointEnd {
                begin_lsn: Lsn(4096),
                next_txn: TxnId(9),
                redo_start: Lsn(4096),
                undo_start: Lsn(3000),
                dirty_pages: 1,
                active_txns: 1,
            },
            Payload::RelationCreate {
                relation: RelationId(3),
                name: "orders".into(),
            },
            Payload::RelationDrop {
                relation: RelationId(3),
            },
        ]);
        for action in page_actions() {
            v.push(Payload::Compensation {
                undo_next: Lsn(4096),
                action: Box::new(action),
            });
        }
        v.push(Payload::PageCheck {
            of: Lsn(4096),
            image: heap_image(),
        });
        v
    }

    fn pick(kind: RecordType) -> u8 {
        RecordType::ALL.iter().position(|&k| k == kind).unwrap() as u8
    }

    /// Fuzz input: type pick, LSN, body.
    fn input(kind: RecordType, body: &[u8]) -> Vec<u8> {
        let mut v = vec![pick(kind)];
        v.extend_from_slice(&LSN.0.to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    /// Each payload bare, and inside a whole record frame.
    pub(super) fn seeds() -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for (i, p) in payloads().iter().enumerate() {
            let kind = p.kind();
            let body = p.to_bytes().unwrap();
            out.push((
                format!("payload_{i:02}_{}", kind.name()),
                input(kind, &body),
            ));
            let meta = RecordMeta::new(kind)
                .in_txn(TxnId(5), Lsn(100))
                .on_page(RelationId(1), PageId(9));
            let frame = record::encode(&meta, LSN, &body);
            out.push((format!("frame_{i:02}_{}", kind.name()), input(kind, &frame)));
        }
        out
    }

    #[test]
    fn committed_corpus_replays_without_panics() {
        replay_corpus("wal_record", seeds(), 40, wal_record);
        for (_, seed) in seeds() {
            wal_record(&seed);
        }
    }

    /// Flips bytes of every seed: of the bare payloads (the payload decoder
    /// must reject or accept them consistently), and of the framed payloads
    /// both as they are (the CRC catches them) and re-sealed, so the
    /// mutated payload reaches the payload decoder through a valid frame.
    #[test]
    fn single_byte_mutations_never_panic() {
        for (name, seed) in seeds() {
            let framed = name.starts_with("frame");
            let positions = (0..seed.len().min(300)).chain((300..seed.len()).step_by(37));
            for pos in positions {
                for flip in [0x01u8, 0x80, 0xFF] {
                    let mut m = seed.clone();
                    m[pos] ^= flip;
                    wal_record(&m);
                    if framed && pos >= 9 + RECORD_HEADER_SIZE {
                        record::seal(&mut m[9..], LSN);
                        wal_record(&m);
                    }
                }
            }
        }
    }
}

mod fsm {
    use super::{input, replay_corpus};
    use keel::PageId;
    use keel::fsm::{ENTRIES_PER_PAGE, FreeSpaceMap};
    use keel::fuzz_targets::fsm_page;
    use keel::page::{PAGE_SIZE, seal};

    fn map(pages: u32, tracked: impl Fn(u32) -> bool) -> FreeSpaceMap {
        let fsm = FreeSpaceMap::new();
        for p in 0..pages {
            let free = (p as usize * 97) % 8200;
            if tracked(p) {
                fsm.update(PageId(p), free / 3, free);
            }
        }
        fsm
    }

    /// FSM page id, then the page or pages.
    pub(super) fn seeds() -> Vec<(String, Vec<u8>)> {
        let small = map(300, |p| p % 13 != 7).to_pages();
        let big = map(ENTRIES_PER_PAGE as u32 + 500, |p| p % 5 != 0).to_pages();
        let three = map(2 * ENTRIES_PER_PAGE as u32 + 77, |p| p % 11 != 4).to_pages();
        let full = map(2 * ENTRIES_PER_PAGE as u32, |p| p % 3 != 1).to_pages();
        let half = map(20, |_| true);
        for p in 0..10 {
            half.remove(PageId(p));
        }
        let untracked = half.to_pages();
        assert_eq!((big.len(), three.len(), full.len()), (2, 3, 2));
        vec![
            ("one_page_map".into(), input(0, &small[0])),
            ("first_of_two".into(), input(0, &big[0])),
            ("second_of_two".into(), input(1, &big[1])),
            ("half_untracked".into(), input(0, &untracked[0])),
            ("wrong_id".into(), input(1, &small[0])),
            ("short".into(), input(0, &small[0][..60])),
            ("zeroes".into(), input(0, &[0u8; PAGE_SIZE])),
            // Multi-page files: whole, and wrong in how their pages relate.
            ("two_page_map".into(), input(0, &big.concat())),
            ("three_page_map".into(), input(0, &three.concat())),
            ("two_full_pages".into(), input(0, &full.concat())),
            ("last_page_missing".into(), input(0, &three[..2].concat())),
            (
                "page_appended".into(),
                input(0, &[&big[..], &big[1..]].concat().concat()),
            ),
            (
                "pages_swapped".into(),
                input(0, &[&big[1][..], &big[0]].concat()),
            ),
            (
                "coverage_disagrees".into(),
                input(0, &[&big[0][..], &three[1]].concat()),
            ),
            (
                "second_page_short".into(),
                input(0, &[&big[0], &big[1][..100]].concat()),
            ),
        ]
    }

    #[test]
    fn committed_corpus_replays_without_panics() {
        replay_corpus("fsm_page", seeds(), 15, fsm_page);
        for (_, seed) in seeds() {
            fsm_page(&seed);
        }
    }

    /// The multi-page seeds reach the loader's checks across pages: the
    /// whole files load, and each broken one is refused naming the page
    /// at fault.
    #[test]
    fn multi_page_seeds_load_or_name_the_page_at_fault() {
        let seeds: std::collections::HashMap<String, Vec<u8>> = seeds().into_iter().collect();
        let load = |name: &str| {
            let pages: Vec<&[u8]> = seeds[name][4..].chunks(PAGE_SIZE).collect();
            FreeSpaceMap::from_pages(pages).map(|m| m.covered_pages())
        };
        let n = ENTRIES_PER_PAGE as u32;
        assert_eq!(load("two_page_map"), Ok(n + 500));
        assert_eq!(load("three_page_map"), Ok(2 * n + 77));
        assert_eq!(load("two_full_pages"), Ok(2 * n));
        for (name, page, needle) in [
            ("last_page_missing", 2, "FSM file ends after 2 pages"),
            ("page_appended", 2, "claims to be page 1"),
            ("pages_swapped", 0, "claims to be page 1"),
            ("coverage_disagrees", 1, "but FSM page 0 says"),
            ("second_page_short", 1, "100 bytes"),
        ] {
            let msg = load(name).unwrap_err().to_string();
            assert!(msg.starts_with(&format!("page {page}:")), "{name}: {msg}");
            assert!(msg.contains(needle), "{name}: {msg}");
        }
    }

    /// Flips every byte of each page's header and body fields and a stride
    /// of the entries, as they are (the checksum catches them) and
    /// re-sealed (the target re-seals whole pages itself).
    #[test]
    fn single_byte_mutations_never_panic() {
        for (_, seed) in seeds() {
            let (id, pages) = seed.split_at(4);
            let positions = (0..pages.len()).filter(|&at| at % PAGE_SIZE < 120 || at % 53 == 0);
            for pos in positions {
                for flip in [0x01u8, 0x80, 0xFF] {
                    let mut m = pages.to_vec();
                    m[pos] ^= flip;
                    let page = pos - pos % PAGE_SIZE;
                    if let Some(p) = m.get_mut(page..page + PAGE_SIZE) {
                        seal(p).unwrap();
                    }
                    fsm_page(&[id, &m].concat());
                }
            }
        }
    }
}

/// Segment bytes (after the header) of a small real log: records of many
/// sizes, some flushed one by one, the rest in one batch.
fn wal_segment_seeds() -> Vec<(String, Vec<u8>)> {
    use keel::types::{Lsn as L, TxnId};
    use keel::wal::{RecordMeta, RecordType, Wal, WalConfig};
    use keel_io::AsyncIo;
    use keel_io::sim::{SimConfig, SimIo};
    let io = std::sync::Arc::new(SimIo::new(SimConfig::seeded(9)));
    io.create_dir(std::path::Path::new("/w")).wait().unwrap();
    io.sync_dir(std::path::Path::new("/")).wait().unwrap();
    let config = WalConfig {
        segment_size_bytes: 64 * 1024,
        max_batch_bytes: 16 * 1024,
        buffer_capacity_bytes: 64 * 1024,
        ..WalConfig::default()
    };
    let (wal, _) = Wal::open(io.clone(), std::path::Path::new("/w"), config).unwrap();
    for i in 0..40u64 {
        let meta = RecordMeta::new(RecordType::HeapInsert).in_txn(TxnId(i), L(i));
        let a = wal
            .append(&meta, &vec![i as u8; (i * 37 % 700) as usize])
            .unwrap();
        if i < 30 {
            wal.flush(a.lsn).unwrap();
        }
    }
    wal.flush_all().unwrap();
    let seg = std::path::Path::new("/w").join(keel::wal::segment::segment_file_name(0));
    let disk = io.crash();
    let bytes = disk.file(&seg).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap_or(0) + 1;
    let body = bytes[keel::wal::segment::SEGMENT_HEADER_SIZE..end].to_vec();
    let mut torn = body.clone();
    let cut = torn.len() * 3 / 4;
    torn[cut..].fill(0x5A);
    vec![
        ("log".into(), body),
        ("torn_tail".into(), torn),
        ("empty".into(), Vec::new()),
    ]
}

#[test]
fn wal_segment_corpus_replays_without_panics() {
    replay_corpus(
        "wal_segment",
        wal_segment_seeds(),
        3,
        keel::fuzz_targets::wal_segment,
    );
    // Bit flips through the seed log, at a stride.
    let (_, log) = wal_segment_seeds().swap_remove(0);
    for pos in (0..log.len()).step_by(97) {
        let mut m = log.clone();
        m[pos] ^= 0x08;
        keel::fuzz_targets::wal_segment(&m);
    }
}

// --- recovery ---

/// The log of a small database on the simulated disk (64 KiB segments, as
/// the `recovery` target uses): a relation created, inserts, updates that
/// move tuples or make them overflow values, deletes, an abort, a
/// checkpoint, and a loser whose records a later commit flushed. Returns
/// segment 0's bytes after its header, up to the end of the log.
fn recovery_log() -> Vec<u8> {
    use keel::buffer::BufferConfig;
    use keel::{Config, Database};
    use keel_io::AsyncIo;
    use keel_io::sim::{SimConfig, SimIo};
    use std::sync::Arc;

    let sim = Arc::new(SimIo::new(SimConfig::seeded(21)));
    let mut config = Config {
        buffer: BufferConfig::with_frames(16),
        checkpoint_interval: None,
        checkpoint_wal_bytes: 0,
        recovery_checkpoint: keel::RecoveryCheckpoint::BeforeOpenReturns,
        ..Config::default()
    };
    config.wal.segment_size_bytes = 64 * 1024;
    config.wal.max_batch_bytes = 16 * 1024;
    config.wal.buffer_capacity_bytes = 64 * 1024;
    let db = Database::open_with_io("/db", config, sim.clone() as Arc<dyn AsyncIo>).unwrap();
    let rel = db.create_relation("t").unwrap();
    let mut tids = Vec::new();
    let mut tx = db.begin().unwrap();
    for i in 0..12u8 {
        tids.push(tx.insert(rel, &vec![i; 20 + usize::from(i) * 9]).unwrap());
    }
    tx.commit().unwrap();
    let mut tx = db.begin().unwrap();
    tx.update(rel, tids[1], &[7u8; 900]).unwrap();
    tx.update(rel, tids[2], &[8u8; 9000]).unwrap();
    tx.delete(rel, tids[3]).unwrap();
    tx.commit().unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(rel, b"aborted").unwrap();
    tx.update(rel, tids[4], b"aborted").unwrap();
    tx.abort().unwrap();
    db.checkpoint().unwrap();
    let mut loser = db.begin().unwrap();
    loser.update(rel, tids[5], &[9u8; 300]).unwrap();
    loser.delete(rel, tids[6]).unwrap();
    loser.insert(rel, &[10u8; 5000]).unwrap();
    let mut tx = db.begin().unwrap();
    tx.insert(rel, b"last").unwrap();
    tx.commit().unwrap();
    let disk = sim.crash();
    drop(loser);
    drop(db);
    let seg = std::path::Path::new("/db/wal").join(keel::wal::segment::segment_file_name(0));
    let bytes = disk.file(&seg).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap_or(0) + 1;
    assert!(end < bytes.len(), "the seed log fills its segment");
    bytes[keel::wal::segment::SEGMENT_HEADER_SIZE..end].to_vec()
}

fn recovery_seeds() -> Vec<(String, Vec<u8>)> {
    let log = recovery_log();
    let with_mode = |mode: u8, body: &[u8]| [&[mode][..], body].concat();
    let mut torn = log.clone();
    let cut = torn.len() * 2 / 3;
    torn[cut..].fill(0xA5);
    vec![
        ("log".into(), with_mode(0, &log)),
        ("log_resealed".into(), with_mode(1, &log)),
        ("log_restamped".into(), with_mode(3, &log)),
        ("torn_tail".into(), with_mode(0, &torn)),
        ("empty".into(), vec![0]),
    ]
}

#[test]
fn recovery_corpus_replays_without_panics() {
    replay_corpus(
        "recovery",
        recovery_seeds(),
        5,
        keel::fuzz_targets::recovery,
    );
    // The seed log is a valid log: it recovers (redo, and undo of the loser)
    // and its relation holds the committed tuples (12 + 1 - 1 deleted).
    let log = recovery_log();
    for mode in [0u8, 1, 3] {
        let (report, rows) =
            keel::fuzz_targets::recovery_run(&[&[mode][..], &log].concat()).unwrap();
        assert!(report.records_redone > 0, "mode {mode}: {report:?}");
        assert_eq!(report.txns_undone, 1, "mode {mode}: {report:?}");
        assert_eq!(rows, 12, "mode {mode}: {report:?}");
    }
    // Bit flips through the seed log at a stride, with the stale checksum
    // (the log ends or is corrupt there) and re-sealed (the flipped record
    // decodes, redo and undo see its contents).
    let stride = (log.len() / 150).max(1);
    for pos in (0..log.len()).step_by(stride) {
        for mode in [0u8, 1] {
            let mut m = [&[mode][..], &log].concat();
            m[1 + pos] ^= 0x10;
            keel::fuzz_targets::recovery(&m);
        }
    }
}

/// Found by `cargo fuzz run recovery` (mode 1: frames re-sealed): a
/// CRC-valid heap record whose tuple is an overflow head with nonsense
/// fields. Redo used to apply it without a structural check, and the
/// checkpoint at the end of recovery tripped the write-back's
/// verification. Now every page redo changes is verified, and recovery
/// fails with a corruption error naming the record's LSN.
#[test]
fn recovery_regression_redo_of_an_invalid_overflow_head() {
    let path = corpus_dir("recovery")
        .join("../../regressions/recovery/crash-66643b7670525ce20b9cb161fe56d1dfa8f67952");
    let e = keel::fuzz_targets::recovery_run(&std::fs::read(path).unwrap()).unwrap_err();
    assert_eq!(e.class(), keel::ErrorClass::Corruption, "{e}");
    let text = e.to_string();
    assert!(text.contains("fails verification after redo"), "{text}");
}

// --- tree_page ---

mod tree {
    use super::{input, replay_corpus};
    use keel::PageId;
    use keel::fuzz_targets::tree_page;
    use keel::page::tree::check::check_tree;
    use keel::page::tree::{
        FLAG_INCOMPLETE_SPLIT, VALUE_OVERFLOW, child_rest, init_meta, inline_value,
    };
    use keel::page::{OverflowHead, PAGE_SIZE, TreePage, seal};

    /// A tree file: meta page, root 1 over leaf 2 (split at "k" into 2 and
    /// 4, the downlink to 4 pending) and leaf 3 (from "p", an overflow
    /// value); every page sealed.
    fn tree_file() -> Vec<Vec<u8>> {
        let mut pages = vec![vec![0u8; PAGE_SIZE]; 5];
        init_meta(&mut pages[0], PageId(0), PageId(1), 1).unwrap();
        let (c2, c3) = (child_rest(PageId(2)), child_rest(PageId(3)));
        let root: [(&[u8], &[u8]); 2] = [(b"", &c2), (b"p", &c3)];
        TreePage::build(&mut pages[1][..], PageId(1), 1, 0, &root, None).unwrap();
        let v = inline_value(&[5u8; 300]);
        let left: Vec<(&[u8], &[u8])> = [b"a", b"c", b"e"]
            .iter()
            .map(|k| (&k[..], &v[..]))
            .collect();
        let high = Some((&b"k"[..], PageId(4)));
        TreePage::build(
            &mut pages[2][..],
            PageId(2),
            0,
            FLAG_INCOMPLETE_SPLIT,
            &left,
            high,
        )
        .unwrap();
        let mut overflow = vec![VALUE_OVERFLOW];
        let head = OverflowHead::for_value(&[1u8; 20_000], PageId(9)).unwrap();
        overflow.extend_from_slice(&head.encode());
        let right: [(&[u8], &[u8]); 2] = [(b"p", &overflow), (b"q", &v)];
        TreePage::build(&mut pages[3][..], PageId(3), 0, 0, &right, None).unwrap();
        let mid: [(&[u8], &[u8]); 1] = [(b"k", &v)];
        let high = Some((&b"p"[..], PageId(3)));
        TreePage::build(&mut pages[4][..], PageId(4), 0, 0, &mid, high).unwrap();
        for p in &mut pages {
            seal(p).unwrap();
        }
        pages
    }

    /// Page id, then the pages.
    pub(super) fn seeds() -> Vec<(String, Vec<u8>)> {
        let pages = tree_file();
        vec![
            ("tree_file".into(), input(0, &pages.concat())),
            ("meta_page".into(), input(0, &pages[0])),
            ("internal_page".into(), input(1, &pages[1])),
            ("leaf_split".into(), input(2, &pages[2])),
            ("leaf_overflow".into(), input(3, &pages[3])),
            ("wrong_id".into(), input(7, &pages[2])),
            ("short".into(), input(2, &pages[2][..100])),
            ("zeroes".into(), input(0, &[0u8; 2 * PAGE_SIZE])),
        ]
    }

    /// The seed tree is valid, so the fuzzer starts from the deep paths.
    #[test]
    fn the_seed_tree_is_valid() {
        let pages = tree_file();
        let r = check_tree(pages.len() as u32, &mut |p| Ok(pages[p.0 as usize].clone()));
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.pages_per_level, [3, 1]);
        assert_eq!(r.incomplete_splits, 1);
    }

    #[test]
    fn committed_corpus_replays_without_panics() {
        replay_corpus("tree_page", seeds(), 8, tree_page);
        for (_, seed) in seeds() {
            tree_page(&seed);
        }
    }

    /// Flips every byte of each page's header, slot array and first items,
    /// and a stride of the rest, in every seed.
    #[test]
    fn single_byte_mutations_never_panic() {
        for (_, seed) in seeds() {
            let (id, pages) = seed.split_at(4);
            let positions = (0..pages.len()).filter(|&at| at % PAGE_SIZE < 120 || at % 37 == 0);
            for pos in positions {
                for flip in [0x01u8, 0x80, 0xFF] {
                    let mut m = pages.to_vec();
                    m[pos] ^= flip;
                    tree_page(&[id, &m].concat());
                }
            }
        }
    }
}

// --- datadir_open ---

mod datadir {
    use super::replay_corpus;
    use keel::datadir::layout::{control_path, wal_dir};
    use keel::fuzz_targets::{
        DATADIR, RESEAL_CONTROL, RESEAL_SEGMENT_HEADER, datadir_open, datadir_open_run,
        fuzz_datadir,
    };
    use keel::recovery::control::{CONTROL_SIZE, offsets};
    use keel::wal::segment::{SEGMENT_HEADER_USED, segment_file_name};
    use std::path::Path;

    /// The seed directory's control file and segment 0's header.
    fn control_and_header() -> (Vec<u8>, Vec<u8>) {
        let disk = fuzz_datadir();
        let dir = Path::new(DATADIR);
        let control = disk.file(&control_path(dir)).unwrap().to_vec();
        let segment = disk.file(&wal_dir(dir).join(segment_file_name(0))).unwrap();
        assert_eq!(control.len(), CONTROL_SIZE);
        (control, segment[..SEGMENT_HEADER_USED].to_vec())
    }

    /// Mode byte, control file, then (optionally) the segment header.
    pub(super) fn seeds() -> Vec<(String, Vec<u8>)> {
        let (control, header) = control_and_header();
        let input =
            |mode: u8, control: &[u8], header: &[u8]| [&[mode][..], control, header].concat();
        let mut far = control.clone();
        far[offsets::NEXT_TXN..offsets::NEXT_TXN + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        vec![
            ("control".into(), input(0, &control, &[])),
            ("control_and_header".into(), input(0, &control, &header)),
            (
                "resealed".into(),
                input(RESEAL_CONTROL | RESEAL_SEGMENT_HEADER, &control, &header),
            ),
            ("short_control".into(), input(0, &control[..40], &[])),
            ("last_txn_id".into(), input(RESEAL_CONTROL, &far, &header)),
            ("empty".into(), vec![0]),
        ]
    }

    #[test]
    fn committed_corpus_replays_without_panics() {
        replay_corpus("datadir_open", seeds(), 6, datadir_open);
        // The seed directory opens: recovery undoes the loser, and the
        // scans find 10 rows (10 inserted, 1 deleted, 1 more) and 9 keys.
        let (control, header) = control_and_header();
        for mode in [0, RESEAL_CONTROL | RESEAL_SEGMENT_HEADER] {
            let input = [&[mode][..], &control, &header].concat();
            let (report, found) = datadir_open_run(&input).unwrap();
            assert_eq!(report.txns_undone, 1, "mode {mode}: {report:?}");
            assert_eq!(found, 19, "mode {mode}: {report:?}");
        }
    }

    /// Every byte of the control file and of the segment header's used
    /// part changed, resealed or not: never a panic.
    #[test]
    fn single_byte_mutations_never_panic() {
        let (control, header) = control_and_header();
        let base = [control, header].concat();
        for pos in 0..base.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut m = base.clone();
                m[pos] ^= flip;
                for mode in [0, RESEAL_CONTROL | RESEAL_SEGMENT_HEADER] {
                    datadir_open(&[&[mode][..], &m].concat());
                }
            }
        }
    }
}
