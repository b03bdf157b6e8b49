//! Compaction: the chunks of a completed segment become one object, so a
//! restore fetches one object per segment instead of one per chunk.
//!
//! ## The compacted object
//!
//! It has the chunk format ([`crate::chunk`]): the header says the range
//! `first.start..last.end` of the chunks it replaces, the body holds their
//! records, byte for byte, in order. It is named
//! `wal/<timeline:08X>/<start:016X>-<end:016X>.compacted`
//! ([`Remote::compacted_path`]): never a chunk's name, and its range is
//! known from a listing ([`crate::store`], "The covering set").
//!
//! A compacted object never spans a segment, like a chunk: its records are
//! byte-contiguous, so a restore writes them as one run. A segment holds
//! at most [`MAX_RAW_BYTES`] (64 MiB) of records when segments are that
//! size or smaller (the default is 16 MiB), so its chunks become one
//! object. Segments may be up to 1 GiB: their chunks become consecutive
//! compacted objects of at most 64 MiB of records each, the next starting
//! where the previous ended.
//!
//! ## When a segment is complete
//!
//! Records are contiguous within a segment, so a chunk whose first record
//! is not at its start ([`Chunk::continues_segment`] false) is the first
//! archived chunk of a new segment: every chunk before it belongs to
//! completed segments. A run of chunks is compacted only once such a
//! chunk follows it (or once it reaches 64 MiB): never a segment still
//! being written, so a compacted object is never extended, and compacted
//! objects never overlap. The archiver's segment's last chunks, and a
//! timeline's last segment, stay chunks until the log moves on.
//!
//! ## Steps ([`compact_timeline`]), each safe to interrupt
//!
//! 1. List the timeline. Finish what an interrupted compaction left: for
//!    each leftover chunk (a chunk inside a compacted object's range),
//!    read the compacted object and the chunk and check that the chunk's
//!    records are the same bytes at the same LSNs ([`check_leftovers`]);
//!    then delete the chunk. A leftover that differs is an
//!    [`ArchiveError::Overlap`] naming both, and nothing is deleted.
//! 2. Read, verified and chained, the chunks after the last compacted
//!    object, grouping them by segment (above).
//! 3. For each completed group: build the compacted object, upload it
//!    create-only (found already there with the same bytes: an earlier
//!    try landed), read it back and check it is exactly those bytes and a
//!    valid chunk of that range, then delete the group's chunks in order.
//!
//! Nothing is deleted on a guess (as invariant 13 asks of redo): a chunk
//! goes only once an object holding the same records at the same LSNs has
//! been read back from the store and checked. A crash before step 3's
//! upload leaves the chunks; between the upload
//! and the last delete, a compacted object and some of its chunks, which
//! the covering set resolves and the next pass (or `keel archive verify`)
//! checks and tidies. Readers that listed before a delete read on from the
//! compacted object ([`crate::read`]).
//!
//! Compaction runs off the commit path: in the archiver's own compactor
//! thread when a new segment's first chunk has landed
//! ([`crate::archiver`]), or from `keel archive compact` for an archive
//! whose archiver was not running. Two compactors of the same chunks build
//! the same bytes, so they do not conflict.

use keel::types::Lsn;

use crate::chunk::{self, Chunk, ChunkBuilder, Expect, MAX_RAW_BYTES};
use crate::error::{ArchiveError, Result};
use crate::read;
use crate::store::{ChunkObject, Listing, Remote};

/// What one compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Compacted objects written (or found already there).
    pub objects: u64,
    /// Chunks they replaced, deleted.
    pub chunks_deleted: u64,
    /// Leftover chunks of earlier interrupted compactions, checked and
    /// deleted.
    pub leftovers_deleted: u64,
    /// Chunks left as they are: their segment is not complete yet.
    pub chunks_pending: u64,
}

/// One pass over `timeline` (module essay, "Steps"). `database_id`: the
/// database the chunks must belong to (`None`: whichever the first one
/// read names). `stop` is asked between steps; true ends the pass early,
/// leaving a state the next pass finishes.
pub fn compact_timeline(
    remote: &Remote,
    timeline: u32,
    database_id: Option<u64>,
    stop: &dyn Fn() -> bool,
) -> Result<CompactReport> {
    let mut report = CompactReport::default();
    let listing = remote.list_timeline(timeline)?;
    for leftover in check_leftovers(remote, &listing, database_id)? {
        if stop() {
            return Ok(report);
        }
        remote.delete(&leftover.path)?;
        report.leftovers_deleted += 1;
    }
    let from = listing
        .covering
        .iter()
        .rposition(ChunkObject::is_compacted)
        .map_or(0, |i| i + 1);
    let mut database_id = database_id;
    let mut group: Option<(ChunkBuilder, Vec<ChunkObject>)> = None;
    let mut reached: Option<Lsn> = None;
    for object in &listing.covering[from..] {
        if stop() {
            return Ok(report);
        }
        let expect = Expect {
            database_id,
            timeline: Some(timeline),
            start: reached,
        };
        let (c, source) = read::read_listed(remote, object, &expect)?;
        if source.is_compacted() {
            // Another compactor replaced these chunks since the listing.
            return Ok(report);
        }
        database_id = Some(c.header.database_id);
        reached = Some(c.header.end);
        let complete = match &mut group {
            Some(_) if !c.continues_segment() => Some(group.take()),
            Some((b, members)) => match b.append_chunk(&c) {
                true => {
                    members.push(object.clone());
                    None
                }
                false => Some(group.take()),
            },
            None => Some(None),
        };
        if let Some(done) = complete {
            if let Some((b, members)) = done {
                emit(remote, b, &members, stop, &mut report)?;
            }
            group = Some(start_group(object, &c)?);
        }
    }
    report.chunks_pending = group.map_or(0, |(_, m)| m.len() as u64);
    Ok(report)
}

fn start_group(object: &ChunkObject, c: &Chunk) -> Result<(ChunkBuilder, Vec<ChunkObject>)> {
    let mut b = ChunkBuilder::new(c.header.database_id, c.header.timeline, c.header.start);
    if !b.append_chunk(c) {
        return Err(ArchiveError::Corrupt {
            object: object.path.to_string(),
            place: crate::error::Place::Object(0),
            reason: format!("holds more than {MAX_RAW_BYTES} bytes of records"),
        });
    }
    Ok((b, vec![object.clone()]))
}

/// Step 3: upload, read back, check, then delete the members.
/// `stop` is asked before each request after the upload: what an early
/// end leaves (the object and some of its chunks) is a state the next pass
/// finishes.
fn emit(
    remote: &Remote,
    mut b: ChunkBuilder,
    members: &[ChunkObject],
    stop: &dyn Fn() -> bool,
    report: &mut CompactReport,
) -> Result<()> {
    let (header, bytes) = b.finish()?;
    let path = remote.compacted_path(header.timeline, header.start, header.end);
    remote.put_create(&path, &bytes)?;
    if stop() {
        return Ok(());
    }
    let back = remote.get(&path)?;
    if back != bytes {
        return Err(ArchiveError::Corrupt {
            object: path.to_string(),
            place: crate::error::Place::Object(0),
            reason: "read back, it differs from what was uploaded; its chunks are kept".into(),
        });
    }
    let expect = Expect {
        database_id: Some(header.database_id),
        timeline: Some(header.timeline),
        start: Some(header.start),
    };
    let c = chunk::decode(path.as_ref(), &back, &expect)?;
    if c.header != header {
        return Err(ArchiveError::Corrupt {
            object: path.to_string(),
            place: crate::error::Place::Object(0),
            reason: "read back, its header differs from the one built".into(),
        });
    }
    report.objects += 1;
    for m in members {
        if stop() {
            return Ok(());
        }
        remote.delete(&m.path)?;
        report.chunks_deleted += 1;
    }
    Ok(())
}

/// Checks every leftover chunk of `listing` against the compacted object
/// covering it (module essay, step 1): same database and timeline, inside
/// its range, and the same record bytes at the same LSNs. Returns the
/// leftovers found and checked (one deleted meanwhile is passed over).
pub fn check_leftovers(
    remote: &Remote,
    listing: &Listing,
    database_id: Option<u64>,
) -> Result<Vec<ChunkObject>> {
    let mut checked = Vec::new();
    let mut current: Option<(usize, Chunk)> = None;
    for (leftover, i) in &listing.leftovers {
        let compacted = &listing.covering[*i];
        if current.as_ref().is_none_or(|(j, _)| j != i) {
            let expect = Expect {
                database_id,
                timeline: Some(compacted.timeline),
                start: None,
            };
            let (c, _) = read::read_listed(remote, compacted, &expect)?;
            current = Some((*i, c));
        }
        let Some((_, whole)) = &current else {
            continue;
        };
        let bytes = match remote.get(&leftover.path) {
            Ok(b) => b,
            Err(e) if read::is_vanished_chunk(&e) => continue,
            Err(e) => return Err(e),
        };
        let expect = Expect {
            database_id: Some(whole.header.database_id),
            timeline: Some(leftover.timeline),
            start: None,
        };
        let part = chunk::decode(leftover.path.as_ref(), &bytes, &expect)?;
        read::check_name(leftover, &part.header)?;
        agree(compacted, whole, leftover, &part)?;
        checked.push(leftover.clone());
    }
    Ok(checked)
}

/// A leftover chunk must hold exactly the compacted object's records over
/// its range.
fn agree(
    compacted: &ChunkObject,
    whole: &Chunk,
    leftover: &ChunkObject,
    part: &Chunk,
) -> Result<()> {
    let disagree = |reason: String| ArchiveError::Overlap {
        first: compacted.path.to_string(),
        second: leftover.path.to_string(),
        reason,
    };
    let (w, p) = (&whole.header, &part.header);
    if p.start < w.start || p.end > w.end {
        return Err(disagree(format!(
            "the chunk's range {}..{} is not inside the compacted range {}..{}",
            p.start, p.end, w.start, w.end
        )));
    }
    let off = part.first_lsn().0.checked_sub(whole.first_lsn().0);
    let slice = off.and_then(|o| {
        let o = usize::try_from(o).ok()?;
        whole.raw().get(o..o + part.raw().len())
    });
    match slice == Some(part.raw()) {
        true => Ok(()),
        false => Err(disagree(format!(
            "the chunk's records from LSN {} differ from the compacted object's",
            part.first_lsn()
        ))),
    }
}
