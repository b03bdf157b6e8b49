//! Reading listed chunks while compaction deletes them: the one place
//! that knows a listing can go stale.
//!
//! A reader (a restore, `keel archive verify`, a backup check, a standby)
//! lists a timeline, then fetches the objects one by one. Meanwhile the
//! archiver, or `keel archive compact`, may replace a completed segment's
//! chunks with one compacted object and delete the chunks
//! ([`crate::compact`]). A chunk the reader listed is then gone
//! (`NotFound`). That is never an error of the archive, so:
//!
//! 1. [`read_listed`] (readers that walk the records): on `NotFound`,
//!    list the timeline again, fetch the object whose range holds the
//!    listed chunk's start (the compacted object), verify it whole, and
//!    hand back its part from that same LSN on, as a chunk starting there.
//!    The reader continues from the same LSN; the objects it listed after
//!    the vanished one start before the returned chunk's end, and
//!    [`covered`] tells it to pass over them. A few tries, for a chunk
//!    deleted again between the new listing and the fetch; a compacted
//!    object is never deleted, so the second try normally succeeds.
//! 2. [`relisting`] (passes that read headers only: `keel archive list`,
//!    a backup's log check, the archiver's resume point): on `NotFound`
//!    of a chunk, the whole pass runs again from a new listing; it costs
//!    one small read per object.
//!
//! Whatever is read is verified as before (CRCs, database, timeline,
//! continuity, the name against the header); only the vanishing is
//! forgiven, never a damaged or missing range (invariant 10: corruption is
//! not skipped). A chunk that is gone and held by no compacted object is
//! the `NotFound` error it was.

use keel::types::Lsn;

use crate::chunk::{self, Chunk, ChunkHeader, Expect};
use crate::error::{ArchiveError, Place, Result};
use crate::store::{ChunkObject, Remote};

/// How often a reader lists again before a chunk that keeps vanishing is
/// reported.
pub const RELIST_TRIES: usize = 4;

/// Whether `e` says that a listed chunk is gone (compacted away).
pub fn is_vanished_chunk(e: &ArchiveError) -> bool {
    matches!(
        e,
        ArchiveError::Store {
            source: object_store::Error::NotFound { .. },
            object,
            ..
        } if object.ends_with(".chunk")
    )
}

/// A chunk's header must agree with its name: timeline, start and, for a
/// compacted object, end.
pub fn check_name(object: &ChunkObject, h: &ChunkHeader) -> Result<()> {
    if h.start == object.start
        && h.timeline == object.timeline
        && object.end.is_none_or(|end| end == h.end)
    {
        return Ok(());
    }
    let end = object.end.map_or(String::new(), |e| format!(" to LSN {e}"));
    Err(ArchiveError::Corrupt {
        object: object.path.to_string(),
        place: Place::Object(chunk::offsets::TIMELINE as u64),
        reason: format!(
            "header says timeline {} from LSN {} to LSN {}, the name says timeline {} from LSN {}{end}",
            h.timeline, h.start, h.end, object.timeline, object.start
        ),
    })
}

/// Fetches and verifies `object` against its name and `expect` (whose
/// `timeline` is the object's).
fn fetch(remote: &Remote, object: &ChunkObject, expect: &Expect) -> Result<Chunk> {
    let bytes = remote.get(&object.path)?;
    let c = chunk::decode(object.path.as_ref(), &bytes, expect)?;
    check_name(object, &c.header)?;
    Ok(c)
}

/// Reads the listed `object`, or, if compaction deleted it since the
/// listing, the part of the object now holding its log from its start on
/// (module essay, rule 1). `expect.start` is checked against the listed
/// start. Returns the chunk and the object it came from.
pub fn read_listed(
    remote: &Remote,
    object: &ChunkObject,
    expect: &Expect,
) -> Result<(Chunk, ChunkObject)> {
    let at = object.start;
    let whole = Expect {
        timeline: Some(object.timeline),
        start: None,
        ..*expect
    };
    let mut candidate = object.clone();
    for _ in 0..RELIST_TRIES {
        match fetch(remote, &candidate, &whole) {
            Ok(c) => {
                let c = c.from_lsn(candidate.path.as_ref(), at)?;
                if let Some(s) = expect.start.filter(|&s| s != c.header.start) {
                    return Err(ArchiveError::Discontinuity {
                        object: candidate.path.to_string(),
                        expected: s,
                        found: c.header.start,
                    });
                }
                return Ok((c, candidate));
            }
            Err(e) if is_vanished_chunk(&e) => {
                let covering = remote.list_chunks(object.timeline)?;
                candidate = covering
                    .iter()
                    .rev()
                    .find(|o| o.start <= at)
                    // Only a compacted object holding `at`, or an object
                    // listed again at `at`: a chunk that is simply gone
                    // is the error it was.
                    .filter(|o| o.end.is_some_and(|end| at < end) || o.start == at)
                    .cloned()
                    .ok_or(e)?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ArchiveError::Restore(format!(
        "{}: deleted again each of {RELIST_TRIES} times the timeline was listed",
        object.path
    )))
}

/// Whether a listed object starting at `start` is already read, when the
/// reader has the log up to `reached` (module essay, rule 1).
pub fn covered(start: Lsn, reached: Option<Lsn>) -> bool {
    reached.is_some_and(|r| start < r)
}

/// Runs `pass` (which lists and reads headers) again while it fails
/// because a listed chunk vanished (module essay, rule 2).
pub fn relisting<T>(mut pass: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 1;
    loop {
        match pass() {
            Err(e) if is_vanished_chunk(&e) && tries < RELIST_TRIES => tries += 1,
            r => return r,
        }
    }
}
