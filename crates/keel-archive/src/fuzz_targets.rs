//! The bodies of the cargo-fuzz targets `chunk_decode`, `manifest_decode`
//! and `archive_text` in `fuzz/`, kept in the library so the normal test
//! suite replays the committed corpus through exactly the same code
//! (`tests/fuzz_corpus.rs`). Each asserts its decoder's contract
//! (invariant 9): any bytes give a value or an error, never a panic, and
//! whatever decodes is something the archive could have written.
//!
//! Built only with the `fuzz-targets` feature (the fuzz crate and this
//! crate's own tests turn it on). It is the one module allowed to
//! `expect`: an oracle's broken expectation is the finding, reported as a
//! panic.

#![allow(clippy::expect_used)]

use keel::checksum::crc32c;
use keel::wal::Payload;
use keel::wal::record::RecordType;

use crate::chunk::{self, CHUNK_HEADER_SIZE, ChunkBuilder, Expect, offsets};
use crate::error::ArchiveError;

/// Mode bit: rewrite the body CRC (and, with [`FIX_BODY_LEN`], the body
/// length) and then the header CRC, so mutated inputs get past the
/// checksums into decompression and the record walk.
pub const RESEAL: u8 = 1;
/// Mode bit: set the header's body length to the object's.
pub const FIX_BODY_LEN: u8 = 2;

/// Chunk decoding over arbitrary bytes: the first byte is the mode
/// ([`RESEAL`], [`FIX_BODY_LEN`]), the rest the object. Whatever decodes
/// must: decode again with its own database id, timeline and start
/// expected; be refused as another database's with any other id; and
/// rebuild, record by record through [`ChunkBuilder`], into a chunk with
/// the same header (but for the compressed body's length and CRC) and the
/// same record bytes.
pub fn chunk_decode(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & RESEAL != 0 && bytes.len() >= CHUNK_HEADER_SIZE {
        reseal(&mut bytes, mode & FIX_BODY_LEN != 0);
    }
    let _ = chunk::decode_header("fuzz", &bytes, bytes.len() as u64);
    let Ok(c) = chunk::decode("fuzz", &bytes, &Expect::default()) else {
        return;
    };
    let h = c.header;
    let own = Expect {
        database_id: Some(h.database_id),
        timeline: Some(h.timeline),
        start: Some(h.start),
    };
    chunk::decode("fuzz", &bytes, &own).expect("a chunk decodes as what it says it is");
    let foreign = Expect {
        database_id: Some(h.database_id ^ 1),
        ..Expect::default()
    };
    let e = chunk::decode("fuzz", &bytes, &foreign).expect_err("another database's chunk");
    assert!(matches!(e, ArchiveError::WrongDatabase { .. }), "{e}");

    let mut b = ChunkBuilder::new(h.database_id, h.timeline, h.start);
    for (rh, payload) in c.records() {
        assert!(
            b.accepts(rh.lsn),
            "a decoded chunk's records are contiguous"
        );
        let commit = match (rh.kind, Payload::decode(rh.kind, payload, rh.lsn)) {
            (RecordType::Commit, Ok(Payload::Commit { commit_time_us })) => Some(commit_time_us),
            (RecordType::Commit, _) => panic!("a decoded chunk's commit record decodes"),
            _ => None,
        };
        b.push(rh, payload, commit);
    }
    let (again, rebuilt) = b.finish().expect("a decoded chunk rebuilds");
    // The compressed body may differ (zstd has many encodings of one
    // input); everything else is the same.
    let same = chunk::ChunkHeader {
        body_len: again.body_len,
        body_crc: again.body_crc,
        ..h
    };
    assert_eq!(again, same, "a decoded chunk rebuilds with the same header");
    let back = chunk::decode("rebuilt", &rebuilt, &own).expect("a rebuilt chunk decodes");
    assert_eq!(back.raw(), c.raw(), "records rebuild byte for byte");
}

/// Rewrites the body CRC (and length) and then the header CRC.
fn reseal(bytes: &mut [u8], fix_len: bool) {
    let body_len = (bytes.len() - CHUNK_HEADER_SIZE) as u32;
    if fix_len {
        bytes[offsets::BODY_LEN..offsets::BODY_LEN + 4].copy_from_slice(&body_len.to_le_bytes());
    }
    let body_crc = crc32c(&bytes[CHUNK_HEADER_SIZE..]);
    bytes[offsets::BODY_CRC..offsets::BODY_CRC + 4].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32c(&bytes[..offsets::HEADER_CRC]);
    bytes[offsets::HEADER_CRC..offsets::HEADER_CRC + 4].copy_from_slice(&header_crc.to_le_bytes());
}

/// Mode bit of [`manifest_decode`]: replace the last line with the CRC of
/// the lines before it, so mutated inputs get past the checksum into the
/// field parsers.
pub const RESEAL_MANIFEST: u8 = 1;

/// Manifest decoding over arbitrary bytes: the first byte is the mode
/// ([`RESEAL_MANIFEST`]), the rest the manifest object. Any bytes give a
/// manifest or an error, never a panic (invariant 9). Whatever decodes
/// must name only files a restore may write (the control file and heap
/// files under `rel/`, no path that leaves the target directory), keep
/// its LSNs in order, and encode into a manifest that decodes to itself.
pub fn manifest_decode(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & RESEAL_MANIFEST != 0 {
        reseal_manifest(&mut bytes);
    }
    let Ok(m) = crate::backup::Manifest::decode("fuzz", &bytes) else {
        return;
    };
    assert!(m.start <= m.checkpoint_end && m.checkpoint_end <= m.end);
    assert!(m.timeline != 0);
    for f in &m.files {
        let inside = f.name == keel::datadir::layout::CONTROL_FILE
            || (f.name.starts_with("rel/")
                && f.name.split('/').count() == 2
                && !f.name.contains(".."));
        assert!(inside, "a restore would write {:?}", f.name);
    }
    let again =
        crate::backup::Manifest::decode("fuzz", &m.encode()).expect("an encoded manifest decodes");
    assert_eq!(again, m, "a manifest round-trips");
}

/// Replaces everything after the last line break before the final line
/// with `crc32c <crc of what precedes>`.
pub fn reseal_manifest(bytes: &mut Vec<u8>) {
    let trimmed = bytes.iter().rposition(|&b| b != b'\n').map_or(0, |i| i + 1);
    let body = bytes[..trimmed]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    bytes.truncate(body);
    let crc = crc32c(bytes);
    bytes.extend_from_slice(format!("crc32c {crc:08x}\n").as_bytes());
}

/// Mode bit of [`archive_text`]: for a sealed object (a timeline history
/// or a fence), replace the last line with the CRC of the lines before it,
/// as [`RESEAL_MANIFEST`] does for manifests.
pub const RESEAL_TEXT: u8 = 0x80;

/// The small text files and objects of the archive over arbitrary bytes.
/// The first byte's low bits pick what the rest is read as (its value
/// modulo 5): a timeline history object, a fence object, a data
/// directory's archiver status file, a standby marker, or a data
/// directory's timeline file; its top bit ([`RESEAL_TEXT`]) reseals a
/// history or fence. Any bytes give a value or an error, never a panic
/// (invariant 9), and whatever decodes encodes into text that decodes to
/// the same value.
pub fn archive_text(data: &[u8]) {
    use std::path::Path;

    use crate::fence::Fence;
    use crate::restore::{History, Recorded};
    use crate::standby::Marker;
    use crate::status::PublishedStatus;

    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    let pick = (mode & !RESEAL_TEXT) % 5;
    if mode & RESEAL_TEXT != 0 && pick < 2 {
        reseal_manifest(&mut bytes);
    }
    let text = String::from_utf8_lossy(&bytes);
    let path = Path::new("/fuzz/file");
    match pick {
        0 => {
            if let Ok(h) = History::decode("fuzz", &bytes) {
                let again =
                    History::decode("fuzz", &h.encode()).expect("an encoded history decodes");
                assert_eq!(again, h, "a history round-trips");
            }
        }
        1 => {
            if let Ok(f) = Fence::decode("fuzz", &bytes) {
                let again = Fence::decode("fuzz", &f.encode()).expect("an encoded fence decodes");
                assert_eq!(again, f, "a fence round-trips");
            }
        }
        2 => {
            if let Ok(s) = PublishedStatus::decode(path, &text) {
                let _ = s.lag_bytes();
                let again =
                    PublishedStatus::decode(path, &s.encode()).expect("an encoded status decodes");
                // Error texts are written on one line with URLs redacted.
                let same = PublishedStatus {
                    last_error: again.last_error.clone(),
                    compaction_error: again.compaction_error.clone(),
                    ..s
                };
                assert_eq!(again, same, "a status round-trips");
            }
        }
        3 => {
            if let Ok(m) = Marker::decode(path, &text) {
                let again = Marker::decode(path, &m.encode()).expect("an encoded marker decodes");
                assert_eq!(again, m, "a standby marker round-trips");
            }
        }
        _ => {
            if let Ok(r) = Recorded::decode(path, &text) {
                let again =
                    Recorded::decode(path, &r.encode()).expect("an encoded timeline file decodes");
                assert_eq!(again, r, "a timeline file round-trips");
            }
        }
    }
}
