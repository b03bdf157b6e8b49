//! The archive's view of its object store: synchronous calls over
//! `object_store`'s async API, object naming, and create-only uploads.
//!
//! ## Layout under the prefix
//!
//! ```text
//! <prefix>/wal/<timeline:08X>/<start LSN:016X>.chunk
//! <prefix>/wal/<timeline:08X>/<start LSN:016X>-<end LSN:016X>.compacted
//! ```
//!
//! Fixed-width upper-case hex sorts by timeline, then by LSN, so a listing
//! is the log in order. A chunk is named by its start alone, not its end:
//! two writers continuing one history both try the same next start (the
//! end of the newest chunk), so their create-only uploads collide on the
//! same name and the second learns of the first, whatever sizes their
//! chunks have. Named by start and end, two chunks of different sizes from
//! the same start would both be accepted.
//!
//! ## Create-only uploads
//!
//! Every upload is `PutMode::Create` (`If-None-Match: *` on S3). If the
//! name is taken, the stored object is fetched: equal byte for byte, it is
//! this very chunk from an earlier try whose success was never reported (a
//! timeout after the store had it) and the upload has succeeded; different,
//! another writer owns the prefix and the upload fails with
//! [`ArchiveError::SplitBrain`]. Nothing is ever overwritten. Deletes
//! ([`Remote::delete`]) are made by compaction (a chunk, once the
//! compacted object holding its records has been read back and checked)
//! and by `keel archive cleanup` (an incomplete backup's objects), never
//! on a guess.
//!
//! ## The runtime
//!
//! `object_store` is async. The archive keeps its own current-thread tokio
//! runtime and blocks on each call, so embedders see plain functions and
//! the engine stays free of async code. Each call has a time limit; past it
//! the call fails with [`ArchiveError::Timeout`] (transient: retried).

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use keel::types::Lsn;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use crate::config::ArchiveTarget;
use crate::error::{ArchiveError, Result};

/// What a create-only upload found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// The object was created.
    Created,
    /// An identical object was already there (an earlier try landed).
    AlreadyThere,
}

/// A chunk found by listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkObject {
    /// Its path.
    pub path: Path,
    /// Its timeline (from the name).
    pub timeline: u32,
    /// Its start LSN (from the name).
    pub start: Lsn,
    /// Its size in bytes.
    pub size: u64,
    /// For a compacted object, its end LSN (from the name); `None` for a
    /// chunk, whose end only its header says.
    pub end: Option<Lsn>,
}

impl ChunkObject {
    /// Whether it is a compacted object (module essay).
    pub fn is_compacted(&self) -> bool {
        self.end.is_some()
    }
}

/// A timeline's objects as listed, split into the covering set and the
/// leftovers (module essay).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The objects covering the log, in LSN order.
    pub covering: Vec<ChunkObject>,
    /// Chunks whose start lies inside a compacted object's range, each
    /// with the index in `covering` of that object.
    pub leftovers: Vec<(ChunkObject, usize)>,
}

impl Listing {
    /// Sorts `objects` (a timeline's, as listed) into the covering set and
    /// the leftovers; compacted objects that overlap are an error naming
    /// both.
    pub fn resolve(mut objects: Vec<ChunkObject>) -> Result<Listing> {
        // By start; at one start a compacted object before the chunk it
        // covers.
        objects.sort_by_key(|o| (o.start, !o.is_compacted()));
        let mut out = Listing::default();
        let mut open: Option<usize> = None;
        for o in objects {
            let inside = open.and_then(|i| {
                let c = &out.covering[i];
                c.end.filter(|&end| o.start < end).map(|_| i)
            });
            match (inside, o.is_compacted()) {
                (Some(i), true) => {
                    let c = &out.covering[i];
                    return Err(ArchiveError::Overlap {
                        first: c.path.to_string(),
                        second: o.path.to_string(),
                        reason: format!(
                            "compacted ranges {}..{} and {}..{} overlap",
                            c.start,
                            c.end.unwrap_or(c.start),
                            o.start,
                            o.end.unwrap_or(o.start)
                        ),
                    });
                }
                (Some(i), false) => out.leftovers.push((o, i)),
                (None, compacted) => {
                    if compacted {
                        open = Some(out.covering.len());
                    }
                    out.covering.push(o);
                }
            }
        }
        Ok(out)
    }
}

/// A connection to the archive's store.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    rt: tokio::runtime::Runtime,
    op_timeout: Duration,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("store", &format_args!("{}", self.store))
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// Connects to `target`; each request may take up to `op_timeout`.
    pub fn open(target: &ArchiveTarget, op_timeout: Duration) -> Result<Remote> {
        let prefix = target.prefix.trim_matches('/').to_string();
        if Path::parse(&prefix).is_err() {
            return Err(ArchiveError::Config(format!(
                "prefix {prefix:?} is not a valid object path"
            )));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ArchiveError::Config(format!("cannot start the I/O runtime: {e}")))?;
        Ok(Remote {
            store: target.build_store()?,
            prefix,
            rt,
            op_timeout,
        })
    }

    /// The prefix, for messages.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn under(&self, rest: &str) -> Path {
        match self.prefix.is_empty() {
            true => Path::from(rest),
            false => Path::from(format!("{}/{rest}", self.prefix)),
        }
    }

    /// The folder of a timeline's chunks.
    pub fn timeline_dir(&self, timeline: u32) -> Path {
        self.under(&format!("wal/{timeline:08X}"))
    }

    /// The name of the chunk of `timeline` starting at `start`.
    pub fn chunk_path(&self, timeline: u32, start: Lsn) -> Path {
        self.under(&format!("wal/{timeline:08X}/{:016X}.chunk", start.0))
    }

    /// The name of the compacted object of `timeline` covering
    /// `start..end` (module essay).
    pub fn compacted_path(&self, timeline: u32, start: Lsn, end: Lsn) -> Path {
        self.under(&format!(
            "wal/{timeline:08X}/{:016X}-{:016X}.compacted",
            start.0, end.0
        ))
    }

    /// The store itself, for the streaming calls (`stream` module).
    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Runs `f` on the archive's runtime within the time limit of one
    /// request; `op` and `object` name it in errors.
    pub(crate) fn block<T>(
        &self,
        op: &'static str,
        object: &Path,
        f: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<T> {
        let limit = self.op_timeout;
        match self
            .rt
            .block_on(async { tokio::time::timeout(limit, f).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(ArchiveError::Store {
                op,
                object: object.to_string(),
                source,
            }),
            Err(_) => Err(ArchiveError::Timeout {
                op,
                object: object.to_string(),
                after: limit,
            }),
        }
    }

    /// Uploads `bytes` to `path` only if nothing is there (module essay).
    pub fn put_create(&self, path: &Path, bytes: &[u8]) -> Result<Put> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(bytes.to_vec());
        let put = self.store.put_opts(path, payload, opts);
        match self.block("put", path, put) {
            Ok(_) => Ok(Put::Created),
            Err(ArchiveError::Store {
                source: object_store::Error::AlreadyExists { .. },
                ..
            }) => match self.get(path)? == bytes {
                true => Ok(Put::AlreadyThere),
                false => Err(ArchiveError::SplitBrain {
                    object: path.to_string(),
                }),
            },
            Err(e) => Err(e),
        }
    }

    /// Deletes the object at `path`; one already gone is not an error
    /// (a retried delete whose first try landed).
    pub fn delete(&self, path: &Path) -> Result<()> {
        match self.block("delete", path, self.store.delete(path)) {
            Err(ArchiveError::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(()),
            r => r,
        }
    }

    /// The whole object at `path`.
    pub fn get(&self, path: &Path) -> Result<Vec<u8>> {
        let get = async {
            let r = self.store.get(path).await?;
            r.bytes().await
        };
        Ok(self.block("get", path, get)?.to_vec())
    }

    /// The first `len` bytes of the object at `path` (fewer if it is
    /// shorter).
    pub fn get_prefix(&self, path: &Path, len: u64) -> Result<Vec<u8>> {
        let get = async {
            let opts = object_store::GetOptions {
                range: Some((0..len).into()),
                ..Default::default()
            };
            let r = self.store.get_opts(path, opts).await?;
            r.bytes().await
        };
        Ok(self.block("get", path, get)?.to_vec())
    }

    /// The timelines that have a folder under `wal/`, in order. A folder
    /// whose name is not a timeline's (eight hex digits, not zero) is an
    /// error naming it, as in [`list_chunks`](Self::list_chunks).
    pub fn list_timelines(&self) -> Result<Vec<u32>> {
        let dir = self.under("wal");
        let listing = self.block("list", &dir, self.store.list_with_delimiter(Some(&dir)))?;
        let mut timelines = Vec::with_capacity(listing.common_prefixes.len());
        for folder in listing.common_prefixes {
            let timeline = folder
                .filename()
                .filter(|hex| hex.len() == 8)
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .filter(|&t| t != 0)
                .ok_or_else(|| {
                    ArchiveError::Config(format!(
                        "{folder} is not a timeline folder; the archive prefix must hold only the archive"
                    ))
                })?;
            timelines.push(timeline);
        }
        timelines.sort_unstable();
        Ok(timelines)
    }

    /// Every object under `dir`, recursively, as listed.
    pub fn list_recursive(&self, dir: &Path) -> Result<Vec<object_store::ObjectMeta>> {
        let list = self.store.list(Some(dir)).try_collect::<Vec<_>>();
        self.block("list", dir, list)
    }

    /// The objects covering the log of `timeline`, in LSN order (the
    /// covering set, module essay): chunks and compacted objects; a chunk
    /// a compacted object replaces is left out. An object under the
    /// timeline's folder whose name is neither is an error naming it: the
    /// prefix belongs to the archive alone.
    pub fn list_chunks(&self, timeline: u32) -> Result<Vec<ChunkObject>> {
        Ok(self.list_timeline(timeline)?.covering)
    }

    /// Every object of `timeline`, as the covering set and the leftovers
    /// (module essay).
    pub fn list_timeline(&self, timeline: u32) -> Result<Listing> {
        let dir = self.timeline_dir(timeline);
        let list = self.store.list(Some(&dir)).try_collect::<Vec<_>>();
        let metas = self.block("list", &dir, list)?;
        let mut objects = Vec::with_capacity(metas.len());
        for m in metas {
            let (start, end) = m
                .location
                .filename()
                .and_then(parse_object_name)
                .ok_or_else(|| {
                    ArchiveError::Config(format!(
                        "{} is not a chunk name; the archive prefix must hold only the archive",
                        m.location
                    ))
                })?;
            objects.push(ChunkObject {
                path: m.location,
                timeline,
                start,
                size: m.size,
                end,
            });
        }
        Listing::resolve(objects)
    }
}

fn hex16(hex: &str) -> Option<u64> {
    (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// `<start>.chunk` or `<start>-<end>.compacted` (start before end).
fn parse_object_name(name: &str) -> Option<(Lsn, Option<Lsn>)> {
    if let Some(start) = name.strip_suffix(".chunk") {
        return Some((Lsn(hex16(start)?), None));
    }
    let (start, end) = name.strip_suffix(".compacted")?.split_once('-')?;
    let (start, end) = (hex16(start)?, hex16(end)?);
    (start < end).then_some((Lsn(start), Some(Lsn(end))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failure by design

    use super::*;

    fn object(name: &str) -> ChunkObject {
        let (start, end) = parse_object_name(name).unwrap();
        ChunkObject {
            path: Path::from(format!("wal/00000001/{name}")),
            timeline: 1,
            start,
            size: 1,
            end,
        }
    }

    const C1: &str = "0000000000001000.chunk";
    const C2: &str = "0000000000002000.chunk";
    const C3: &str = "0000000000003000.chunk";
    const C4: &str = "0000000000004000.chunk";
    const K13: &str = "0000000000001000-0000000000003000.compacted";

    #[test]
    fn names_parse_and_others_do_not() {
        assert_eq!(parse_object_name(C1), Some((Lsn(0x1000), None)));
        assert_eq!(
            parse_object_name(K13),
            Some((Lsn(0x1000), Some(Lsn(0x3000))))
        );
        for bad in [
            "0000000000003000-0000000000001000.compacted",
            "0000000000001000-0000000000001000.compacted",
            "000000000000100.chunk",
            "000000000000100G.chunk",
            "0000000000001000.compacted",
            "+000000000001000.chunk",
        ] {
            assert_eq!(parse_object_name(bad), None, "{bad}");
        }
    }

    /// A compacted object replaces the chunks whose start lies in its
    /// range, whatever the listing order; the chunk at its end stays.
    #[test]
    fn the_covering_set_leaves_out_the_chunks_a_compacted_object_holds() {
        let l = Listing::resolve(vec![
            object(C4),
            object(C2),
            object(K13),
            object(C3),
            object(C1),
        ])
        .unwrap();
        let names: Vec<&str> = l
            .covering
            .iter()
            .map(|o| o.path.filename().unwrap())
            .collect();
        assert_eq!(names, [K13, C3, C4]);
        let left: Vec<(&str, usize)> = l
            .leftovers
            .iter()
            .map(|(o, i)| (o.path.filename().unwrap(), *i))
            .collect();
        assert_eq!(left, [(C1, 0), (C2, 0)]);
        let clean = Listing::resolve(vec![object(C1), object(C2)]).unwrap();
        assert_eq!(clean.covering.len(), 2);
        assert!(clean.leftovers.is_empty());
    }

    #[test]
    fn overlapping_compacted_objects_are_named_both() {
        let other = "0000000000002000-0000000000004000.compacted";
        let e = Listing::resolve(vec![object(K13), object(other)]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(K13) && text.contains(other), "{text}");
        // Adjacent ranges do not overlap.
        let next = "0000000000003000-0000000000004000.compacted";
        assert_eq!(
            Listing::resolve(vec![object(next), object(K13)])
                .unwrap()
                .covering
                .len(),
            2
        );
    }
}
