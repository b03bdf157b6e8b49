//! Replays the committed cargo-fuzz corpora of `chunk_decode`,
//! `manifest_decode` and `archive_text` (`fuzz/corpus/<target>/`) and
//! every single-byte change of their seeds through the fuzz targets'
//! bodies, so every test run checks the archive decoders' contract
//! (invariant 9) without nightly. Write the seed corpora with
//! `KEEL_WRITE_SEED_CORPUS=1 cargo test -p keel-archive --test fuzz_corpus`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

use std::path::PathBuf;

use keel::Lsn;
use keel::backup::BackupFile;
use keel::wal::RecordMeta;
use keel::wal::record::{self, RecordType};
use keel::wal::segment::SEGMENT_HEADER_SIZE;
use keel_archive::Manifest;
use keel_archive::chunk::{self, ChunkBuilder, Expect};
use keel_archive::fuzz_targets::{
    FIX_BODY_LEN, RESEAL, RESEAL_MANIFEST, RESEAL_TEXT, archive_text, chunk_decode,
    manifest_decode, reseal_manifest,
};

fn corpus_dir() -> PathBuf {
    [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "fuzz",
        "corpus",
        "chunk_decode",
    ]
    .iter()
    .collect()
}

/// A chunk from `start` whose first record is at `first`, of `n` records:
/// page changes, with every third a commit at a distinct time.
fn chunk_bytes(start: Lsn, first: Lsn, n: usize) -> Vec<u8> {
    let mut b = ChunkBuilder::new(0x5EED_0000_0000_00DB, 1, start);
    let mut lsn = first;
    for i in 0..n {
        let time = 1_700_000_000_000_000 + i as u64;
        let (kind, payload) = match i % 3 {
            2 => (RecordType::Commit, time.to_le_bytes().to_vec()),
            // The chunk decoder reads only commit payloads.
            _ => (RecordType::PageDelta, vec![i as u8; 10 + i]),
        };
        let raw = record::encode(&RecordMeta::new(kind), lsn, &payload);
        let h = record::decode_frame(&raw, lsn).unwrap();
        assert!(b.accepts(lsn));
        b.push(&h, &payload, (kind == RecordType::Commit).then_some(time));
        lsn = Lsn(h.lsn.0 + u64::from(h.total_len));
    }
    b.finish().unwrap().1
}

/// Seed inputs: a mode byte, then a valid chunk.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let seg = 64u64 << 10;
    let at = Lsn(3 * seg + SEGMENT_HEADER_SIZE as u64);
    let after_gap = Lsn(4 * seg + SEGMENT_HEADER_SIZE as u64);
    let chunks = [
        ("seed-one-record", chunk_bytes(at, at, 1)),
        ("seed-commits", chunk_bytes(at, at, 12)),
        (
            "seed-after-segment-gap",
            chunk_bytes(Lsn(4 * seg - 40), after_gap, 4),
        ),
    ];
    let mut out = Vec::new();
    for (name, bytes) in chunks {
        // Each seed really is a valid chunk.
        chunk::decode(name, &bytes, &Expect::default()).unwrap();
        out.push((name, [&[0u8][..], &bytes].concat()));
    }
    let resealed = [&[RESEAL | FIX_BODY_LEN][..], &out[1].1[1..]].concat();
    out.push(("seed-commits-resealed", resealed));
    out
}

#[test]
fn committed_corpus_replays_without_panics() {
    replay(&corpus_dir(), seeds(), chunk_decode, 4);
}

/// Runs every file of the corpus in `dir` through `target` (writing
/// `seeds` there first when `KEEL_WRITE_SEED_CORPUS` is set); at least
/// `min` files must be there (the committed seeds).
fn replay(dir: &std::path::Path, seeds: Vec<(&str, Vec<u8>)>, target: fn(&[u8]), min: usize) {
    if std::env::var_os("KEEL_WRITE_SEED_CORPUS").is_some() {
        std::fs::create_dir_all(dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        target(&std::fs::read(e.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(
        n >= min,
        "the seed corpus is committed under {}",
        dir.display()
    );
}

/// Every byte of each seed changed (two flips), with and without
/// resealing the checksums, plus every truncation: never a panic, and the
/// target's oracles hold for whatever still decodes.
#[test]
fn single_byte_mutations_never_panic() {
    let mut decoded_after_change = 0;
    for (_, seed) in seeds() {
        let object = &seed[1..];
        for pos in 0..object.len() {
            for flip in [0x01u8, 0x80] {
                let mut m = object.to_vec();
                m[pos] ^= flip;
                for mode in [0, RESEAL, RESEAL | FIX_BODY_LEN] {
                    chunk_decode(&[&[mode][..], &m].concat());
                }
                if chunk::decode("m", &m, &Expect::default()).is_ok() {
                    decoded_after_change += 1;
                }
            }
        }
        for len in 0..object.len() {
            chunk_decode(&[&[0u8][..], &object[..len]].concat());
            chunk_decode(&[&[RESEAL | FIX_BODY_LEN][..], &object[..len]].concat());
        }
    }
    // Both CRCs cover every byte: no unresealed change decodes.
    assert_eq!(decoded_after_change, 0);
}

fn manifest_corpus_dir() -> PathBuf {
    corpus_dir().with_file_name("manifest_decode")
}

/// Seed inputs of `manifest_decode`: a mode byte, then a valid manifest.
fn manifest_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let file = |name: &str, size: u64, crc32c: u32| BackupFile {
        name: name.into(),
        size,
        crc32c,
    };
    let m = Manifest {
        database_id: 0x5EED_0000_0000_00DB,
        timeline: 1,
        start: Lsn(0x0200_0040),
        end: Lsn(0x0200_1000),
        checkpoint_end: Lsn(0x0200_0080),
        segment_size: 16 << 20,
        max_batch_bytes: 1 << 20,
        started_us: Some(1_767_225_600_000_000),
        files: vec![
            file("control", 512, 0x1234_5678),
            file("rel/1.heap", 8192 * 3, 0x0bad_cafe),
            file("rel/7.heap", 8192, 0xdead_beef),
        ],
    };
    let bytes = m.encode();
    assert_eq!(Manifest::decode("seed", &bytes).unwrap(), m);
    vec![
        ("seed-three-files", [&[0u8][..], &bytes].concat()),
        ("seed-resealed", [&[RESEAL_MANIFEST][..], &bytes].concat()),
    ]
}

#[test]
fn committed_manifest_corpus_replays_without_panics() {
    replay(&manifest_corpus_dir(), manifest_seeds(), manifest_decode, 2);
}

/// Every byte of the seed manifest changed (three ways), resealed or not,
/// and every truncation: never a panic, the oracles hold for whatever
/// still decodes, and without resealing nothing changed decodes.
#[test]
fn manifest_mutations_never_panic_and_the_crc_covers_every_byte() {
    let (_, seed) = manifest_seeds().remove(0);
    let object = &seed[1..];
    let mut decoded_unsealed = 0;
    let mut decoded_resealed = 0;
    for pos in 0..object.len() {
        for b in [object[pos] ^ 0x01, b'\n', b'/'] {
            let mut m = object.to_vec();
            m[pos] = b;
            if m == object {
                continue;
            }
            manifest_decode(&[&[0u8][..], &m].concat());
            manifest_decode(&[&[RESEAL_MANIFEST][..], &m].concat());
            if Manifest::decode("m", &m).is_ok() {
                decoded_unsealed += 1;
            }
            let mut sealed = m.clone();
            reseal_manifest(&mut sealed);
            if Manifest::decode("m", &sealed).is_ok() {
                decoded_resealed += 1;
            }
        }
    }
    for len in 0..object.len() {
        manifest_decode(&[&[0u8][..], &object[..len]].concat());
        manifest_decode(&[&[RESEAL_MANIFEST][..], &object[..len]].concat());
    }
    assert_eq!(decoded_unsealed, 0);
    // Resealed, some changes still parse (a different CRC or size digit):
    // the mutations reach the field parsers.
    assert!(decoded_resealed > 0);
}

fn text_corpus_dir() -> PathBuf {
    corpus_dir().with_file_name("archive_text")
}

/// Seed inputs of `archive_text`: a pick byte, then a valid file of that
/// kind (history, fence, status, standby marker, timeline file).
fn text_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use keel::types::TxnId;
    use keel_archive::fence::Fence;
    use keel_archive::{ArchiveState, History, PublishedStatus, RestoreTarget};

    let history = |target| History {
        database_id: 0x5EED_0000_0000_00DB,
        timeline: 3,
        parent: 2,
        switch: Lsn(0x0200_1000),
        target,
        created_us: 1_767_225_600_000_000,
    };
    let fence = Fence {
        database_id: 0x5EED_0000_0000_00DB,
        timeline: 2,
        successor: 3,
        switch: Lsn(0x0200_1000),
        standby_id: 0xABCD,
        created_us: 1_767_225_600_000_000,
    };
    let status = PublishedStatus {
        state: ArchiveState::Broken,
        policy: "stall 1048576 5000".into(),
        archived_lsn: Lsn(4096),
        durable_lsn: Lsn(9000),
        oldest_unarchived_commit_us: Some(17),
        updated_us: 99,
        chunks: 3,
        retries: 4,
        last_error: Some("object store: put s3://bucket/x?sig=1".into()),
        compacted_objects: 2,
        chunks_compacted: 9,
        compaction_error: None,
    };
    let with = |pick: u8, bytes: &[u8]| [&[pick][..], bytes].concat();
    let out = vec![
        (
            "history-end",
            with(0, &history(RestoreTarget::End).encode()),
        ),
        (
            "history-time",
            with(0, &history(RestoreTarget::Time(1_767_225_600)).encode()),
        ),
        (
            "history-lsn",
            with(0, &history(RestoreTarget::Lsn(Lsn(0x0200_0fe0))).encode()),
        ),
        (
            "history-txn-resealed",
            with(
                RESEAL_TEXT,
                &history(RestoreTarget::Txn(TxnId(77))).encode(),
            ),
        ),
        ("fence", with(1, &fence.encode())),
        ("fence-resealed", with(1 | RESEAL_TEXT, &fence.encode())),
        ("status", with(2, status.encode().as_bytes())),
        (
            "standby-marker",
            with(3, b"keel-standby 1\ntimeline 3\nid 000000000000abcd\n"),
        ),
        (
            "timeline-file",
            with(4, b"timeline 2\nfrom 0000000002001000\n"),
        ),
    ];
    // Each seed really is a valid file of its kind.
    assert!(History::decode("seed", &out[0].1[1..]).is_ok());
    assert!(Fence::decode("seed", &out[4].1[1..]).is_ok());
    out
}

#[test]
fn committed_text_corpus_replays_without_panics() {
    replay(&text_corpus_dir(), text_seeds(), archive_text, 9);
}

/// Every byte of each seed changed (three ways), with and without
/// resealing, and every truncation, read as every kind: never a panic,
/// and the round-trip oracles hold for whatever still decodes.
#[test]
fn text_mutations_never_panic() {
    for (_, seed) in text_seeds() {
        let file = &seed[1..];
        for pos in 0..file.len() {
            for b in [file[pos] ^ 0x01, b'\n', b' ', 0xFF] {
                let mut m = file.to_vec();
                m[pos] = b;
                for pick in 0..5u8 {
                    archive_text(&[&[pick][..], &m].concat());
                    archive_text(&[&[pick | RESEAL_TEXT][..], &m].concat());
                }
            }
        }
        for len in 0..file.len() {
            for pick in 0..5u8 {
                archive_text(&[&[pick | RESEAL_TEXT][..], &file[..len]].concat());
            }
        }
    }
}
