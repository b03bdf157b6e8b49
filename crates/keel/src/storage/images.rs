//! Page images: the copy of each page as it was at the redo point, kept
//! beside the log so that a page torn by a write can be repaired
//! (invariant 5), without its bytes riding on any commit.
//!
//! ## The rule
//!
//! The first change to a page after a checkpoint began (its page LSN is
//! below the redo point, the *epoch*) first appends the page as it is, its
//! image *as of the epoch*, to the current images file (`Storage::change`,
//! under the redo gate and the page's exclusive latch). Appending copies
//! the image into memory; nothing waits for a disk. The images become
//! durable before any page is written: the buffer pool syncs them
//! ([`PageImages::sync`], through `WalFlusher::sync_page_images`) after
//! making the log durable and before it submits a write (invariant 4's
//! rule, for the images). So every page write that could tear a page is
//! preceded, on disk, by an image of that page a recovery can use:
//!
//! - a page written is dirty, so it changed since it was last written. A
//!   page that changed in the epoch recovery starts from (the control
//!   file's) has an image of that epoch. One that did not was on disk,
//!   synced, at that epoch's start (the checkpoint that began it wrote
//!   every page dirty before it), so what makes it dirty is a change in a
//!   later epoch, one a checkpoint began that has not completed, and that
//!   change appended an image of the later epoch (below, "Two files");
//! - a write decided before a checkpoint's begin record is still marked
//!   `writing` when that checkpoint's `flush_all` looks, which waits for
//!   it, so the checkpoint's sync covers it before its control file moves.
//!
//! Recovery (`recovery::redo`) reads a page for the first record at or
//! after the redo start that needs it; when that page fails verification
//! (torn) it is rebuilt from its image and redo goes on from there by page
//! LSN. Redo itself follows the rule too: before it changes a page whose
//! LSN is below the redo start and that has no image yet, it appends one,
//! so a write of recovery's (an eviction, the checkpoint after it) torn by
//! a second crash is repaired the same way. An image is any whole,
//! consistent state of its page from its epoch on, holding every record
//! of the page before that epoch: redo applies the records after it by
//! page LSN (invariant 8), so one taken later than the redo start (a later
//! epoch's, a standby's restartpoint's, below) serves too.
//!
//! ## Two files
//!
//! Each entry names its epoch. Recovery from a redo start may use any
//! image of an epoch at or after it (the oldest it finds), and needs those
//! of a later epoch a checkpoint began and never completed: a page torn
//! by a write in that epoch may have no older image. So images are kept until no recovery can start before
//! their epoch: `images.0` and `images.1` in the data directory alternate,
//! and a checkpoint's begin record moves the appends to the other file
//! only when all that file holds is older than the control file's epoch
//! (the file is truncated when its first new image is written); otherwise
//! they go on after the current file's last entry. Once the control file
//! names a newer epoch than all the other file holds, that file is
//! truncated at once, so a closed database keeps only its last epoch's.
//!
//! A standby's restartpoint (`crate::standby`) moves its control file to a
//! newer checkpoint after its pages are synced: it starts that epoch and
//! appends the image of every page redo saw whose LSN is at or after its
//! redo start (synced pages, so each a whole state from the epoch on), and syncs them
//! before the control file moves.
//!
//! ## Format (docs/storage.md, "Page images")
//!
//! A 32-byte header — magic `KEELPGIM`, format version (u32), CRC32C of
//! the other header fields (u32), the database id (u64), the epoch the
//! file was started for (u64) — then entries: length (u32, of what follows
//! the CRC), CRC32C (u32, of what follows), epoch (u64), relation id
//! (u32), page number (u32), and the page as a `page-image` record's
//! payload holds it (the heap's hole elided). Reading stops at the first
//! entry that does not check (a torn tail: its page was never written, as
//! the write waits for the sync).
//! Every length is checked against the file before it is used
//! (invariant 9).
//!
//! ## Failures
//!
//! A failed write or sync of an images file is never retried (invariant
//! 7): the store refuses every later append and sync, and the pool, which
//! asked for the sync, is poisoned, so no page is written again and the
//! database refuses commits (invariant 16).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use keel_io::{AsyncIo, FileClass, FileHandle, IoBuf, OpenOptions};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::buffer::{WalFlushError, WalFlusher};
use crate::checksum::{crc32c, crc32c_append};
use crate::datadir::layout::IMAGES_FILES;
use crate::error::{DbError, Error, ErrorCause, Result};
use crate::page::PAGE_SIZE;
use crate::types::{Lsn, PageId, RelationId};
use crate::wal::payload::{encode_page_image, page_image_len};
use crate::wal::{Payload, RecordType, Wal};

/// The header's magic.
pub const IMAGES_MAGIC: [u8; 8] = *b"KEELPGIM";
/// The format version.
pub const IMAGES_VERSION: u32 = 1;
/// Header bytes.
pub const IMAGES_HEADER_LEN: usize = 32;
/// Bytes of an entry before its page image.
pub const IMAGE_ENTRY_HEADER_LEN: usize = 24;
/// Longest body of an entry (what its CRC covers): its epoch, relation and
/// page, and a page image payload with no hole (the hole's two fields and
/// the page).
const MAX_BODY: usize = 16 + 4 + PAGE_SIZE;
/// Unwritten images the background writer writes out (without a sync) in
/// each of its rounds ([`PageImages::write_behind`]).
const WRITE_BEHIND_BYTES: usize = 8 << 20;
/// Unwritten images an append lets build up before it writes them out
/// itself: only when nothing wrote them behind (a pool without its
/// background writer, or one that cannot keep up), so memory stays bounded.
const APPEND_CAP_BYTES: usize = 64 << 20;

/// The images files of one data directory (module docs).
pub(crate) struct PageImages {
    io: Arc<dyn AsyncIo>,
    paths: [PathBuf; 2],
    dir: PathBuf,
    database_id: u64,
    pending: Mutex<Pending>,
    disk: Mutex<Disk>,
    /// The first failure; every later append and sync refuses.
    failed: OnceLock<ErrorCause>,
}

/// The appending side.
struct Pending {
    /// The file taking new images.
    current: usize,
    /// The epoch new images are of (the redo gate's).
    epoch: Lsn,
    /// The newest epoch each file holds an image of (or its header names).
    newest: [Option<Lsn>; 2],
    /// The epoch of the control file: a file holding images of it or
    /// later is never truncated.
    durable: Lsn,
    /// Entries appended, not yet written, per file.
    bufs: [Vec<u8>; 2],
    /// Buffers written out, kept for the next appends: a buffer that fills
    /// again grows (a copy) and touches fresh memory only once.
    spare: Vec<Vec<u8>>,
    /// Whether the file is to be truncated and given its header before its
    /// next bytes.
    restart: [bool; 2],
    /// Images a recovery from `indexed` can use, by page: where in which
    /// file (read at open), or `None` for one appended since.
    index: FxHashMap<(RelationId, PageId), Option<(usize, u64)>>,
    /// The redo start `index` is for.
    indexed: Option<Lsn>,
}

/// The writing side.
struct Disk {
    handles: [Option<FileHandle>; 2],
    /// Bytes of each file written so far.
    ends: [u64; 2],
    /// Whether each file has writes no sync covered yet.
    unsynced: [bool; 2],
}

/// What an images file's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImagesHeader {
    /// The database the file belongs to.
    pub database_id: u64,
    /// The epoch the file was started for.
    pub epoch: Lsn,
}

impl ImagesHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; IMAGES_HEADER_LEN] {
        let mut out = [0u8; IMAGES_HEADER_LEN];
        out[0..8].copy_from_slice(&IMAGES_MAGIC);
        out[8..12].copy_from_slice(&IMAGES_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.database_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.epoch.0.to_le_bytes());
        let crc = header_crc(&out);
        out[12..16].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a header; an error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> std::result::Result<ImagesHeader, String> {
        if bytes.len() < IMAGES_HEADER_LEN {
            return Err(format!(
                "{} bytes, shorter than the {IMAGES_HEADER_LEN}-byte header",
                bytes.len()
            ));
        }
        if bytes[0..8] != IMAGES_MAGIC {
            return Err("bad magic".into());
        }
        let version = u32_at(bytes, 8);
        if version != IMAGES_VERSION {
            return Err(format!("format version {version}, not {IMAGES_VERSION}"));
        }
        if u32_at(bytes, 12) != header_crc(bytes) {
            return Err("header checksum mismatch".into());
        }
        Ok(ImagesHeader {
            database_id: u64_at(bytes, 16),
            epoch: Lsn(u64_at(bytes, 24)),
        })
    }
}

fn header_crc(bytes: &[u8]) -> u32 {
    crc32c_append(crc32c(&bytes[0..12]), &bytes[16..IMAGES_HEADER_LEN])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// One entry as [`decode_entries`] read it.
#[derive(Debug)]
pub struct ImageEntry {
    /// Where it starts in its file.
    pub offset: u64,
    /// The epoch it is an image as of.
    pub epoch: Lsn,
    /// Its relation.
    pub relation: RelationId,
    /// Its page.
    pub page: PageId,
    /// The page.
    pub image: Box<[u8; PAGE_SIZE]>,
}

/// Appends one entry of `image` to `out`.
fn encode_entry(
    epoch: Lsn,
    rel: RelationId,
    pid: PageId,
    image: &[u8; PAGE_SIZE],
    out: &mut Vec<u8>,
) {
    let start = out.len();
    let body = 16 + page_image_len(image);
    out.extend_from_slice(&(body as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&epoch.0.to_le_bytes());
    out.extend_from_slice(&rel.0.to_le_bytes());
    out.extend_from_slice(&pid.0.to_le_bytes());
    encode_page_image(image, out);
    let crc = crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the entries of an images file from `bytes` (the whole file,
/// header included), in order, up to the first that does not check.
/// Returns them and where the valid part ends.
pub fn decode_entries(bytes: &[u8]) -> (Vec<ImageEntry>, u64) {
    let mut at = IMAGES_HEADER_LEN.min(bytes.len());
    let mut out = Vec::new();
    while let Some((mut entry, len)) = decode_entry(&bytes[at..]) {
        entry.offset = at as u64;
        out.push(entry);
        at += len;
    }
    (out, at as u64)
}

/// The entry at the start of `bytes`, if it is whole and checks, with its
/// length (its offset left 0).
fn decode_entry(bytes: &[u8]) -> Option<(ImageEntry, usize)> {
    let head = bytes.get(..IMAGE_ENTRY_HEADER_LEN)?;
    let body_len = u32_at(head, 0) as usize;
    if !(16..=MAX_BODY).contains(&body_len) {
        return None;
    }
    let body = bytes.get(8..8 + body_len)?;
    if crc32c(body) != u32_at(head, 4) {
        return None;
    }
    match Payload::decode(RecordType::PageImage, &body[16..], Lsn::ZERO) {
        Ok(Payload::PageImage { image }) => Some((
            ImageEntry {
                offset: 0,
                epoch: Lsn(u64_at(body, 0)),
                relation: RelationId(u32_at(body, 8)),
                page: PageId(u32_at(body, 12)),
                image,
            },
            8 + body_len,
        )),
        _ => None,
    }
}

/// One images file as the open found it.
struct Found {
    handle: FileHandle,
    /// Where its last whole entry ends.
    end: u64,
    /// The newest epoch it holds an image of (or its header names).
    newest: Lsn,
}

impl PageImages {
    /// The images of `dir` for a database whose control file names
    /// `durable` as its redo start (`None`: a new database). Both files are
    /// read and the images of an epoch at or after `durable` indexed by
    /// page (the oldest epoch's of each); the store then appends images of
    /// `durable` to the file holding the newest of them, after its last
    /// whole entry, or starts a file afresh when neither holds any.
    ///
    /// After an `unclean` stop, the part of each file a recovery could use
    /// is written again and synced before anything relies on it
    /// (invariant 14): a sync that failed in the dead process leaves its
    /// images in the page cache, clean, readable here and never made
    /// durable by a later sync, and a recovery after the next crash would
    /// lose them and stop reading the file where they are, short of every
    /// image appended after them.
    pub(crate) fn open(
        io: Arc<dyn AsyncIo>,
        dir: &Path,
        database_id: u64,
        durable: Option<Lsn>,
        unclean: bool,
    ) -> Result<PageImages> {
        let paths = IMAGES_FILES.map(|name| dir.join(name));
        // Anything but a regular file in an images file's place (a FIFO
        // would block the first write for good) is refused by its kind,
        // as the lock file is, where the directory is on the real file
        // system.
        if dir.is_dir() {
            for path in &paths {
                if let Ok(Some(kind)) = crate::datadir::non_regular_kind(path) {
                    return Err(Error::NotARegularFile {
                        path: path.clone(),
                        kind,
                    });
                }
            }
        }
        let from = durable.unwrap_or(Lsn::ZERO);
        let mut found: [Option<Found>; 2] = [None, None];
        let mut best: FxHashMap<(RelationId, PageId), (Lsn, usize, u64)> = FxHashMap::default();
        for (i, path) in paths.iter().enumerate() {
            let Some((header, bytes, handle)) = read_file(&io, path)? else {
                continue;
            };
            let Some(header) = header.filter(|h| h.database_id == database_id) else {
                let _ = io.close(handle).wait();
                continue;
            };
            let (entries, end) = decode_entries(&bytes);
            if unclean {
                let whole = bytes[..end as usize].to_vec();
                io.write_at(handle, 0, IoBuf::from(whole))
                    .wait()
                    .and_then(|_| io.fdatasync(handle).wait())
                    .inspect_err(|_| {
                        let _ = io.close(handle).wait();
                    })?;
            }
            let mut newest = header.epoch;
            for e in entries {
                newest = newest.max(e.epoch);
                if durable.is_none() || e.epoch < from {
                    continue;
                }
                let slot = best
                    .entry((e.relation, e.page))
                    .or_insert((e.epoch, i, e.offset));
                if e.epoch < slot.0 {
                    *slot = (e.epoch, i, e.offset);
                }
            }
            found[i] = Some(Found {
                handle,
                end,
                newest,
            });
        }
        let needed = |f: &Option<Found>| f.as_ref().is_some_and(|f| f.newest >= from);
        let current = match (needed(&found[0]), needed(&found[1])) {
            (true, true) => usize::from(
                found[1].as_ref().map(|f| f.newest) > found[0].as_ref().map(|f| f.newest),
            ),
            (true, false) => 0,
            (false, true) => 1,
            (false, false) => 0,
        };
        let restart_current = !needed(&found[current]);
        let mut handles = [None, None];
        let mut ends = [0u64; 2];
        let mut newest = [None, None];
        for (i, f) in found.into_iter().enumerate() {
            if let Some(f) = f {
                handles[i] = Some(f.handle);
                ends[i] = f.end;
                newest[i] = Some(f.newest);
            }
        }
        let mut restart = [false, false];
        if restart_current {
            restart[current] = true;
            newest[current] = Some(from);
        }
        let images = PageImages {
            io,
            paths,
            dir: dir.to_path_buf(),
            database_id,
            pending: Mutex::new(Pending {
                current,
                epoch: from,
                newest,
                durable: from,
                bufs: [Vec::new(), Vec::new()],
                spare: Vec::new(),
                restart,
                index: best
                    .into_iter()
                    .map(|(k, (_, file, offset))| (k, Some((file, offset))))
                    .collect(),
                indexed: Some(from),
            }),
            disk: Mutex::new(Disk {
                handles,
                ends,
                unsynced: [false, false],
            }),
            failed: OnceLock::new(),
        };
        // Whatever follows the last whole entry of the file appended to is
        // cut off now, so a later append never leaves old bytes after its
        // own.
        if !restart_current {
            let (handle, end) = {
                let disk = images.disk.lock();
                (disk.handles[current], disk.ends[current])
            };
            if let Some(h) = handle {
                images
                    .io
                    .set_len(h, end)
                    .wait()
                    .and_then(|_| images.io.fdatasync(h).wait())
                    .map_err(|e| images.fail(Error::from(e)))?;
            }
        }
        Ok(images)
    }

    /// Appends the image of page `pid` of `rel`, as of `epoch` (the redo
    /// point its caller checked under the redo gate). Nothing waits for a
    /// disk: the background writer writes the images behind, and only
    /// when 64 MiB of them are waiting does an append write them out.
    pub(crate) fn append(
        &self,
        epoch: Lsn,
        rel: RelationId,
        pid: PageId,
        image: &[u8; PAGE_SIZE],
    ) -> Result<()> {
        self.usable()?;
        let spill = {
            let mut p = self.pending.lock();
            if p.epoch != epoch {
                return Err(DbError::Corrupt {
                    what: "page images".into(),
                    reason: format!(
                        "an image as of {epoch} while the images taken are as of {}",
                        p.epoch
                    ),
                }
                .into());
            }
            let cur = p.current;
            if p.bufs[cur].capacity() == 0
                && let Some(spare) = p.spare.pop()
            {
                p.bufs[cur] = spare;
            }
            encode_entry(epoch, rel, pid, image, &mut p.bufs[cur]);
            p.newest[cur] = p.newest[cur].max(Some(epoch));
            if p.indexed == Some(epoch) {
                p.index.entry((rel, pid)).or_insert(None);
            }
            p.bufs[cur].len() >= APPEND_CAP_BYTES
        };
        if spill {
            self.write_out(false)?;
        }
        Ok(())
    }

    /// Whether page `pid` of `rel` has an image a recovery from `epoch` can
    /// use (read at open, or appended since); `false` for an epoch not
    /// indexed.
    pub(crate) fn has_image(&self, epoch: Lsn, rel: RelationId, pid: PageId) -> bool {
        let p = self.pending.lock();
        p.indexed == Some(epoch) && p.index.contains_key(&(rel, pid))
    }

    /// The image of page `pid` of `rel` a recovery from `epoch` uses, read
    /// from the file the open found it in; `None` when there is none.
    pub(crate) fn image(
        &self,
        epoch: Lsn,
        rel: RelationId,
        pid: PageId,
    ) -> Result<Option<Box<[u8; PAGE_SIZE]>>> {
        let (file, offset) = {
            let p = self.pending.lock();
            match (p.indexed == Some(epoch), p.index.get(&(rel, pid))) {
                (true, Some(Some(at))) => *at,
                _ => return Ok(None),
            }
        };
        let handle = self.disk.lock().handles[file];
        let Some(handle) = handle else {
            return Ok(None);
        };
        let size = self.io.size(handle).wait()?;
        let want = ((8 + MAX_BODY) as u64).min(size.saturating_sub(offset)) as usize;
        let buf = self
            .io
            .read_exact_at(handle, offset, IoBuf::zeroed(want))
            .wait()?;
        // Checked again as it is read, as the scan at open checked it.
        Ok(decode_entry(&buf)
            .map(|(e, _)| e)
            .filter(|e| e.relation == rel && e.page == pid && e.epoch >= epoch)
            .map(|e| e.image))
    }

    /// Starts the epoch of a checkpoint's begin record `epoch`. Called
    /// under the redo gate's exclusive side, so no append is between
    /// epochs; it does no I/O. The appends move to the other file when all
    /// it holds is older than the control file's epoch (it is truncated by
    /// the write that first puts an image of `epoch` in it), and otherwise
    /// stay where they are (module docs, "Two files").
    pub(crate) fn start_epoch(&self, epoch: Lsn) {
        let mut p = self.pending.lock();
        let other = 1 - p.current;
        if p.newest[other].is_none_or(|n| n < p.durable) {
            p.current = other;
            p.bufs[other].clear();
            p.restart[other] = true;
            p.newest[other] = Some(epoch);
        }
        p.epoch = epoch;
    }

    /// The control file now names `epoch` (a checkpoint or a restartpoint
    /// completed): images older than it are no longer needed (the file that
    /// holds only such is truncated), and the index of an older recovery is
    /// dropped.
    pub(crate) fn epoch_durable(&self, epoch: Lsn) {
        // The disk side first, as `write_out` takes them: no write can
        // consume a restart between the decision and the cut.
        let mut disk = self.disk.lock();
        let stale = {
            let mut p = self.pending.lock();
            p.durable = epoch;
            if p.indexed != Some(epoch) {
                p.index = FxHashMap::default();
                p.indexed = None;
            }
            let mut stale = Vec::new();
            let other = 1 - p.current;
            if p.newest[other].is_some_and(|n| n < epoch) {
                p.newest[other] = None;
                p.restart[other] = true;
                p.bufs[other].clear();
                stale.push(other);
            }
            // The current file, restarted by the epoch's start and not
            // written since, still holds an older epoch's images.
            if p.restart[p.current] {
                stale.push(p.current);
            }
            stale
        };
        // No recovery can use those images any more: they are cut now
        // rather than when a later write restarts the file, so a closed
        // database keeps only the images of its last epoch. A failed cut
        // leaves bytes no recovery reads (the file is restarted before it
        // takes images again).
        for i in stale {
            if let Some(h) = disk.handles[i]
                && self.io.set_len(h, 0).wait().is_ok()
            {
                disk.ends[i] = 0;
            }
        }
    }

    /// Writes out the images waiting in memory when there are 8 MiB of
    /// them, without a sync: the background writer's part, once a
    /// round, so that appends never write. A failure is kept (module docs,
    /// "Failures"): the next sync, before a page write, refuses.
    pub(crate) fn write_behind(&self) {
        let waiting = {
            let p = self.pending.lock();
            p.bufs.iter().map(Vec::len).sum::<usize>()
        };
        if waiting >= WRITE_BEHIND_BYTES {
            let _ = self.write_out(false);
        }
    }

    /// Whether an image is appended and not yet synced.
    pub(crate) fn pending(&self) -> bool {
        let unwritten = {
            let p = self.pending.lock();
            p.bufs.iter().any(|b| !b.is_empty())
        };
        unwritten || self.disk.lock().unsynced.iter().any(|&u| u)
    }

    /// Makes every image appended so far durable: writes what is waiting
    /// (a restarted file truncated and given its header first) and
    /// fdatasyncs each file written since its last sync. Once a write or
    /// sync fails, this and every append refuse (module docs).
    pub(crate) fn sync(&self) -> Result<()> {
        self.write_out(true)
    }

    /// Writes out what is waiting; with `sync`, then syncs.
    fn write_out(&self, sync: bool) -> Result<()> {
        let mut disk = self.disk.lock();
        self.usable()?;
        let mut work: Vec<(usize, Lsn, bool, Vec<u8>)> = Vec::new();
        {
            let mut p = self.pending.lock();
            for i in 0..2 {
                if !p.bufs[i].is_empty() {
                    let restart = std::mem::take(&mut p.restart[i]);
                    let epoch = p.newest[i].unwrap_or(p.epoch);
                    work.push((i, epoch, restart, std::mem::take(&mut p.bufs[i])));
                }
            }
        }
        let done = (|| -> Result<()> {
            for (i, epoch, restart, bytes) in work {
                let created = disk.handles[i].is_none();
                let h = match disk.handles[i] {
                    Some(h) => h,
                    None => {
                        let h = self
                            .io
                            .open(
                                &self.paths[i],
                                OpenOptions::new(FileClass::Images).write(true).create(true),
                            )
                            .wait()?;
                        disk.handles[i] = Some(h);
                        disk.ends[i] = self.io.size(h).wait()?;
                        h
                    }
                };
                if restart || disk.ends[i] < IMAGES_HEADER_LEN as u64 {
                    self.io.set_len(h, 0).wait()?;
                    let header = ImagesHeader {
                        database_id: self.database_id,
                        epoch,
                    };
                    self.io
                        .write_at(h, 0, IoBuf::from(header.encode().to_vec()))
                        .wait()?;
                    disk.ends[i] = IMAGES_HEADER_LEN as u64;
                }
                let len = bytes.len() as u64;
                let at = disk.ends[i];
                let mut written = self
                    .io
                    .write_at(h, at, IoBuf::from(bytes))
                    .wait()?
                    .into_vec();
                disk.ends[i] = at + len;
                written.clear();
                let mut p = self.pending.lock();
                if p.spare.len() < 2 {
                    p.spare.push(written);
                }
                drop(p);
                disk.unsynced[i] = true;
                if created {
                    // The file's name is durable before any page write
                    // relies on what it holds.
                    self.io.fdatasync(h).wait()?;
                    self.io.sync_dir(&self.dir).wait()?;
                    disk.unsynced[i] = false;
                }
            }
            if sync {
                for i in 0..2 {
                    if let (true, Some(h)) = (disk.unsynced[i], disk.handles[i]) {
                        self.io.fdatasync(h).wait()?;
                        disk.unsynced[i] = false;
                    }
                }
            }
            Ok(())
        })();
        done.map_err(|e| self.fail(e))
    }

    /// Records the first failure and returns the error naming it.
    fn fail(&self, e: Error) -> Error {
        let cause = self.failed.get_or_init(|| ErrorCause::new(e)).clone();
        DbError::Poisoned { cause }.into()
    }

    fn usable(&self) -> Result<()> {
        match self.failed.get() {
            Some(cause) => Err(DbError::Poisoned {
                cause: cause.clone(),
            }
            .into()),
            None => Ok(()),
        }
    }

    /// Closes the files (their handles); what is unwritten is dropped.
    pub(crate) fn close(&self) {
        let mut disk = self.disk.lock();
        for h in disk.handles.iter_mut().filter_map(Option::take) {
            let _ = self.io.close(h).wait();
        }
    }
}

impl Drop for PageImages {
    fn drop(&mut self) {
        self.close();
    }
}

/// An images file read whole: its header (if it decodes), its bytes and
/// its handle.
type ReadFile = (Option<ImagesHeader>, Vec<u8>, FileHandle);

/// Reads an images file whole, or `None` when it does not exist.
fn read_file(io: &Arc<dyn AsyncIo>, path: &Path) -> Result<Option<ReadFile>> {
    let h = match io
        .open(path, OpenOptions::new(FileClass::Images).write(true))
        .wait()
    {
        Ok(h) => h,
        Err(keel_io::IoError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let read = (|| -> Result<Vec<u8>> {
        let size = io.size(h).wait()?;
        if size == 0 {
            return Ok(Vec::new());
        }
        Ok(io
            .read_exact_at(h, 0, IoBuf::zeroed(size as usize))
            .wait()?
            .to_vec())
    })();
    let bytes = match read {
        Ok(b) => b,
        Err(e) => {
            let _ = io.close(h).wait();
            return Err(e);
        }
    };
    let header = ImagesHeader::decode(&bytes).ok();
    Ok(Some((header, bytes, h)))
}

/// The buffer pool's flusher in a database: the log through a page's LSN
/// (invariant 4), and the page images before any page write (invariant 5).
pub(crate) struct PoolFlusher {
    pub(crate) wal: Arc<Wal>,
    pub(crate) images: Arc<PageImages>,
}

impl WalFlusher for PoolFlusher {
    fn flush_through(&self, lsn: Lsn) -> std::result::Result<(), WalFlushError> {
        self.wal.flush_through(lsn)
    }

    fn sync_page_images(&self) -> std::result::Result<(), WalFlushError> {
        self.images.sync().map_err(|e| Box::new(e) as WalFlushError)
    }

    fn page_images_pending(&self) -> bool {
        self.images.pending()
    }

    fn write_page_images_behind(&self) {
        self.images.write_behind();
    }
}

#[cfg(test)]
mod tests;
