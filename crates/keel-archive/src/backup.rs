//! Base backups in the archive, and restoring from them.
//!
//! ## Layout under the prefix
//!
//! ```text
//! <prefix>/backups/<timeline:08X>/<start LSN:016X>-<id:016X>/files/<name>   one per file
//! <prefix>/backups/<timeline:08X>/<start LSN:016X>-<id:016X>/manifest       written last
//! ```
//!
//! `<name>` is the file's path in the data directory (`control`,
//! `rel/7.heap`). `<id>` is random, drawn once per run of [`backup`]: two
//! runs from the same start LSN (a long transaction holds the scan start
//! back across checkpoints, or a run cut short is started again) never
//! share a folder. A folder named by the start LSN alone (no `-<id>`) is
//! read as a backup too.
//!
//! ## The commit point
//!
//! Small files and the manifest are uploaded create-only
//! ([`Remote::put_create`]). Files larger than one part are streamed as
//! multipart uploads ([`Remote::put_streamed`]), which not every store can
//! make create-only; they are safe because (1) their folder is unique to
//! this run, (2) the manifest, written create-only after every file, is
//! the commit point, and (3) restores and `keel archive verify` trust only
//! files a manifest names, checking each one's size and CRC32C. A folder
//! without a manifest is an **incomplete** backup: listed by
//! [`Remote::list_backup_folders`], never restored from.
//!
//! ## Taking a backup ([`backup`])
//!
//! 1. [`keel::Database::backup`] checkpoints, pins the log from the
//!    checkpoint's scan start (the **start LSN**) and hands over the
//!    control file and each heap file, read while writes continue; each is
//!    uploaded as it comes, in parts of [`BackupOptions::part_size_bytes`]
//!    (one part in memory at a time).
//! 2. Wait until the archiver has shipped the log up to the copy's **end
//!    LSN** ([`Archiver::wait_archived`]), then check in the store what a
//!    restore checks before it uses a backup
//!    ([`crate::backup_check::check_log_covers`]): the timeline's log runs
//!    without a gap from the chunk holding the start LSN to the end LSN (a
//!    backup whose log was never archived, or was lost from the store
//!    after the archiver shipped it, could never be restored).
//! 3. Upload the manifest, last. A backup without its manifest (a crash,
//!    a failed upload, a timeout waiting for the archive) is never used:
//!    listings and restores see only backups with a manifest.
//!
//! ## The manifest
//!
//! Text, one field per line, `key value`, in this order; the last line is
//! the CRC32C of every byte before it:
//!
//! ```text
//! keel-backup 2
//! database 0123456789abcdef
//! timeline 1
//! start 0000000000012000
//! end 0000000000034567
//! checkpoint-end 00000000000123a5
//! segment-size 16777216
//! max-batch 1048576
//! started 1767225600000000
//! file 00a1b2c3 8192 rel/1.heap
//! crc32c 1a2b3c4d
//! ```
//!
//! LSNs and the database id are lower-case hexadecimal; `started` is the
//! wall-clock time (µs since the Unix epoch) read once the backup's
//! checkpoint had fixed the start LSN, so every commit record below the
//! start LSN carries a commit time at or before it (commit times are read
//! before the record is logged); a restore to a time uses only backups
//! that started at or before it. `file` lines give CRC32C (hex), size
//! (decimal) and name. Version 1 manifests have no `started` line; they
//! decode with no start time and serve every target but a time. [`Manifest::decode`] treats the bytes as
//! hostile: a wrong CRC, an unknown version, a missing or repeated field,
//! a malformed number, a name that is not a data directory file Keel
//! writes, or a start after the end is an error naming the object and the
//! line.
//!
//! ## Restoring
//!
//! [`mod@crate::restore`] restores a backup and the archive's log, to the end
//! or to a recovery target; a backup is usable once its log is redone to
//! its end LSN (the consistency point).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use keel::Database;
use keel::backup::BackupFile;
use keel::checksum::crc32c;
use keel::types::Lsn;
use object_store::path::Path as ObjectPath;

use crate::archiver::Archiver;
use crate::config::ArchiveTarget;
use crate::error::{ArchiveError, Place, Result};
use crate::store::Remote;

/// The control file's name in a restore's target until its files and log
/// are complete: not a name a data directory holds, so an open of a
/// restore cut short is refused, never taken for a database.
pub const RESTORING_CONTROL: &str = keel::datadir::layout::RESTORING_CONTROL_FILE;
/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 2;
/// The oldest manifest version still read (it has no `started` line).
pub const MANIFEST_VERSION_V1: u32 = 1;
/// The first word of a manifest.
pub const MANIFEST_MAGIC: &str = "keel-backup";
/// Largest manifest accepted (a manifest lists a few lines per relation).
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;

/// A backup's manifest (module essay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The database backed up.
    pub database_id: u64,
    /// The timeline whose log restores it.
    pub timeline: u32,
    /// Where redo starts.
    pub start: Lsn,
    /// The consistency point: redo must reach it.
    pub end: Lsn,
    /// The checkpoint's end record.
    pub checkpoint_end: Lsn,
    /// The log's segment size.
    pub segment_size: u32,
    /// The log's batch limit.
    pub max_batch_bytes: u32,
    /// When the backup started (µs since the Unix epoch; module essay);
    /// `None` in a version 1 manifest.
    pub started_us: Option<u64>,
    /// The files, in upload order.
    pub files: Vec<BackupFile>,
}

impl Manifest {
    /// The manifest's bytes.
    pub fn encode(&self) -> Vec<u8> {
        // A manifest without a start time is written as version 1, so it
        // decodes to the same manifest.
        let version = match self.started_us {
            Some(_) => MANIFEST_VERSION,
            None => MANIFEST_VERSION_V1,
        };
        let mut s = format!(
            "{MANIFEST_MAGIC} {version}\ndatabase {:016x}\ntimeline {}\nstart {:016x}\n\
             end {:016x}\ncheckpoint-end {:016x}\nsegment-size {}\nmax-batch {}\n",
            self.database_id,
            self.timeline,
            self.start.0,
            self.end.0,
            self.checkpoint_end.0,
            self.segment_size,
            self.max_batch_bytes
        );
        if let Some(t) = self.started_us {
            s.push_str(&format!("started {t}\n"));
        }
        for f in &self.files {
            s.push_str(&format!("file {:08x} {} {}\n", f.crc32c, f.size, f.name));
        }
        let crc = crc32c(s.as_bytes());
        s.push_str(&format!("crc32c {crc:08x}\n"));
        s.into_bytes()
    }

    /// Decodes and checks a manifest read from `object` (module essay).
    pub fn decode(object: &str, bytes: &[u8]) -> Result<Manifest> {
        // The place is the byte offset where the line starts.
        let bad_at = |offset: usize, line: usize, reason: String| ArchiveError::Corrupt {
            object: object.to_string(),
            place: Place::Object(offset as u64),
            reason: format!("manifest line {}: {reason}", line + 1),
        };
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(bad_at(
                0,
                0,
                format!("{} bytes, more than any manifest", bytes.len()),
            ));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            bad_at(e.valid_up_to(), line, format!("not UTF-8 text ({e})"))
        })?;
        let starts: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let bad = |line: usize, reason: String| {
            bad_at(
                starts.get(line).copied().unwrap_or(bytes.len()),
                line,
                reason,
            )
        };
        let body_len = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|i| i + 1)
            .ok_or_else(|| bad(0, "too short to be a manifest".into()))?;
        let lines: Vec<&str> = text.lines().collect();
        let last = lines.len() - 1;
        let stored = lines[last]
            .strip_prefix("crc32c ")
            .and_then(parse_hex32)
            .ok_or_else(|| bad(last, "the last line must be `crc32c <8 hex digits>`".into()))?;
        let computed = crc32c(&bytes[..body_len]);
        if stored != computed {
            return Err(ArchiveError::ChecksumMismatch {
                object: object.to_string(),
                what: "manifest",
                stored,
                computed,
            });
        }
        let field = |i: usize, key: &str| -> Result<&str> {
            let line = lines.get(i).copied().unwrap_or("");
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(' '))
                .ok_or_else(|| bad(i, format!("expected `{key} …`, found {line:?}")))
        };
        let version = field(0, MANIFEST_MAGIC)?;
        let first_file = match version {
            v if v == MANIFEST_VERSION.to_string() => 9,
            v if v == MANIFEST_VERSION_V1.to_string() => 8,
            _ => return Err(bad(0, format!("unknown manifest version {version:?}"))),
        };
        let hex64 = |i: usize, key: &str| -> Result<u64> {
            let v = field(i, key)?;
            parse_hex64(v, false).ok_or_else(|| bad(i, format!("{key} {v:?} is not 16 hex digits")))
        };
        let dec32 = |i: usize, key: &str| -> Result<u32> {
            let v = field(i, key)?;
            v.parse::<u32>()
                .map_err(|_| bad(i, format!("{key} {v:?} is not a decimal number")))
        };
        let m =
            Manifest {
                database_id: hex64(1, "database")?,
                timeline: dec32(2, "timeline")?,
                start: Lsn(hex64(3, "start")?),
                end: Lsn(hex64(4, "end")?),
                checkpoint_end: Lsn(hex64(5, "checkpoint-end")?),
                segment_size: dec32(6, "segment-size")?,
                max_batch_bytes: dec32(7, "max-batch")?,
                started_us: match first_file {
                    9 => {
                        let v = field(8, "started")?;
                        Some(v.parse::<u64>().map_err(|_| {
                            bad(8, format!("started {v:?} is not a decimal number"))
                        })?)
                    }
                    _ => None,
                },
                files: Vec::new(),
            };
        if m.timeline == 0 {
            return Err(bad(2, "timeline 0 is reserved".into()));
        }
        if m.start > m.checkpoint_end || m.checkpoint_end > m.end {
            return Err(bad(
                4,
                format!(
                    "LSNs out of order: start {} checkpoint end {} end {}",
                    m.start, m.checkpoint_end, m.end
                ),
            ));
        }
        let mut files = Vec::new();
        let mut names = BTreeSet::new();
        for (i, line) in lines.iter().enumerate().take(last).skip(first_file) {
            let rest = field(i, "file")?;
            let mut parts = rest.splitn(3, ' ');
            let (Some(crc), Some(size), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad(
                    i,
                    format!("expected `file <crc> <size> <name>`: {line:?}"),
                ));
            };
            let crc = parse_hex32(crc)
                .ok_or_else(|| bad(i, format!("CRC {crc:?} is not 8 hex digits")))?;
            let size = size
                .parse::<u64>()
                .map_err(|_| bad(i, format!("size {size:?} is not a decimal number")))?;
            if !is_backup_file_name(name) {
                return Err(bad(i, format!("{name:?} is not a file a backup holds")));
            }
            if !names.insert(name.to_string()) {
                return Err(bad(i, format!("{name:?} is listed twice")));
            }
            files.push(BackupFile {
                name: name.to_string(),
                size,
                crc32c: crc,
            });
        }
        if !names.contains(keel::datadir::layout::CONTROL_FILE) {
            return Err(bad(last, "the manifest lists no control file".into()));
        }
        Ok(Manifest { files, ..m })
    }
}

/// Whether `s` is `len` hex digits in the one case Keel writes (so that
/// no changed byte of a manifest or a name still reads as the same value).
fn hex_digits(s: &str, len: usize, upper: bool) -> bool {
    s.len() == len
        && s.bytes().all(|b| {
            b.is_ascii_digit()
                || match upper {
                    true => (b'A'..=b'F').contains(&b),
                    false => (b'a'..=b'f').contains(&b),
                }
        })
}

/// 16 hex digits: upper case in object names, lower case in manifests.
fn parse_hex64(s: &str, upper: bool) -> Option<u64> {
    hex_digits(s, 16, upper)
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

/// 8 lower-case hex digits.
fn parse_hex32(s: &str) -> Option<u32> {
    hex_digits(s, 8, false)
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

/// Whether `name` is a file a backup may hold: `control`, or `rel/<n>.heap`
/// spelled as Keel spells it (so a restore writes nothing outside the
/// target directory and nothing Keel would not).
fn is_backup_file_name(name: &str) -> bool {
    use keel::datadir::layout::{CONTROL_FILE, REL_DIR, RelFile, rel_file};
    if name == CONTROL_FILE {
        return true;
    }
    name.strip_prefix(REL_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .and_then(|f| match rel_file(f) {
            Some((id, RelFile::Heap)) => Some(RelFile::Heap.name(id) == f),
            _ => None,
        })
        .unwrap_or(false)
}

/// A complete backup found in the archive (one with a manifest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupEntry {
    /// Its timeline (from its path).
    pub timeline: u32,
    /// Its start LSN (from its path).
    pub start: Lsn,
    /// Its manifest object.
    pub manifest: ObjectPath,
}

/// A backup folder, complete (with a manifest) or not
/// ([`Remote::list_backup_folders`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupFolder {
    /// The folder's path.
    pub folder: String,
    /// Its timeline (from its path).
    pub timeline: u32,
    /// Its start LSN (from its path).
    pub start: Lsn,
    /// Whether its manifest is there (the backup is complete).
    pub manifest: bool,
    /// Objects in it.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// When the newest of them was written.
    pub last_modified: std::time::SystemTime,
}

/// The timeline and start LSN of backup folder `name` under timeline
/// folder `timeline` (`<start:016X>` or `<start:016X>-<id:016X>`).
fn parse_folder(timeline: &str, name: &str) -> Option<(u32, Lsn)> {
    let timeline = hex_digits(timeline, 8, true)
        .then(|| u32::from_str_radix(timeline, 16).ok())
        .flatten()?;
    let start = match name.split_once('-') {
        Some((start, id)) => {
            parse_hex64(id, true)?;
            start
        }
        None => name,
    };
    Some((timeline, Lsn(parse_hex64(start, true)?)))
}

impl Remote {
    /// The folder of the run `id` of a backup of `timeline` starting at
    /// `start` (module essay, "Layout").
    pub fn backup_dir(&self, timeline: u32, start: Lsn, id: u64) -> String {
        let rest = format!("backups/{timeline:08X}/{:016X}-{id:016X}", start.0);
        match self.prefix().is_empty() {
            true => rest,
            false => format!("{}/{rest}", self.prefix()),
        }
    }

    /// Every backup with a manifest, oldest first (by timeline, then start
    /// LSN). Objects of backups without a manifest are passed over; an
    /// object under `backups/` whose path is not a backup's is an error
    /// naming it.
    pub fn list_backups(&self) -> Result<Vec<BackupEntry>> {
        let dir = ObjectPath::from(self.backup_root());
        let metas = self.list_all(&dir)?;
        let mut found = Vec::new();
        for location in metas {
            let parts: Vec<&str> = location.as_ref().rsplitn(4, '/').collect();
            // manifest | start | timeline | rest; or deeper (files/…).
            let manifest = parts.first() == Some(&"manifest");
            let parsed = (parts.len() == 4 && manifest)
                .then(|| parse_folder(parts[2], parts[1]))
                .flatten();
            match (manifest, parsed) {
                (true, Some((timeline, start))) => found.push(BackupEntry {
                    timeline,
                    start,
                    manifest: location,
                }),
                (true, None) => {
                    return Err(ArchiveError::Config(format!(
                        "{location} is not a backup manifest's name; the archive prefix must hold only the archive"
                    )));
                }
                (false, _) => {}
            }
        }
        found.sort_by_key(|b| (b.timeline, b.start));
        Ok(found)
    }

    /// Every backup folder under `backups/`, complete or not, oldest
    /// first: the folder, its timeline and start LSN, and whether it has
    /// a manifest. A folder whose name is not a backup's is an error
    /// naming it.
    pub fn list_backup_folders(&self) -> Result<Vec<BackupFolder>> {
        let root = self.backup_root();
        let dir = ObjectPath::from(root.clone());
        let mut folders: std::collections::BTreeMap<String, BackupFolder> = Default::default();
        for meta in self.list_recursive(&dir)? {
            let location = meta.location.as_ref();
            let rest = location
                .strip_prefix(root.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(location);
            let mut parts = rest.splitn(3, '/');
            let (Some(tl), Some(name), Some(inner)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(ArchiveError::Config(format!(
                    "{location} is not an object of a backup; the archive prefix must hold only the archive"
                )));
            };
            let (timeline, start) = parse_folder(tl, name).ok_or_else(|| {
                ArchiveError::Config(format!(
                    "{location} is not in a backup folder; the archive prefix must hold only the archive"
                ))
            })?;
            let folder = format!("{root}/{tl}/{name}");
            let entry = folders.entry(folder.clone()).or_insert(BackupFolder {
                folder,
                timeline,
                start,
                manifest: false,
                objects: 0,
                bytes: 0,
                last_modified: std::time::SystemTime::UNIX_EPOCH,
            });
            entry.manifest |= inner == "manifest";
            entry.objects += 1;
            entry.bytes += meta.size;
            entry.last_modified = entry
                .last_modified
                .max(std::time::SystemTime::from(meta.last_modified));
        }
        let mut out: Vec<_> = folders.into_values().collect();
        out.sort_by(|a, b| (a.timeline, a.start, &a.folder).cmp(&(b.timeline, b.start, &b.folder)));
        Ok(out)
    }

    fn backup_root(&self) -> String {
        match self.prefix().is_empty() {
            true => "backups".into(),
            false => format!("{}/backups", self.prefix()),
        }
    }

    /// Reads and decodes a backup's manifest.
    pub fn read_manifest(&self, entry: &BackupEntry) -> Result<Manifest> {
        let bytes = self.get(&entry.manifest)?;
        let m = Manifest::decode(entry.manifest.as_ref(), &bytes)?;
        if m.timeline != entry.timeline || m.start != entry.start {
            return Err(ArchiveError::Corrupt {
                object: entry.manifest.to_string(),
                place: Place::Object(0),
                reason: format!(
                    "the manifest says timeline {} from LSN {}, its name timeline {} from LSN {}",
                    m.timeline, m.start, entry.timeline, entry.start
                ),
            });
        }
        Ok(m)
    }
}

/// How [`backup`] runs.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// The timeline the archiver ships (its `ArchiverOptions::timeline`):
    /// 1 means the archiver's, whatever it is (a restored database's
    /// recorded timeline); another number must be the archiver's.
    pub timeline: u32,
    /// Time limit of each request to the store.
    pub op_timeout: Duration,
    /// How long to wait for the archiver to reach the end LSN.
    pub archive_timeout: Duration,
    /// Files larger than this are uploaded in parts of this size, one part
    /// in memory at a time ([`crate::stream`]). At least one page; S3
    /// needs at least 5 MiB.
    pub part_size_bytes: usize,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            timeline: 1,
            op_timeout: Duration::from_secs(30),
            archive_timeout: Duration::from_secs(300),
            part_size_bytes: crate::stream::DEFAULT_PART_SIZE_BYTES,
        }
    }
}

/// Takes a base backup of `db` into the archive at `target`, which
/// `archiver` (running on `db`) ships the log to (module essay). Returns
/// the manifest written.
pub fn backup(
    db: &Database,
    archiver: &Archiver,
    target: &ArchiveTarget,
    options: &BackupOptions,
) -> Result<Manifest> {
    if options.part_size_bytes < keel::page::PAGE_SIZE {
        return Err(ArchiveError::Config(format!(
            "backup part size {} bytes is less than a page ({} bytes)",
            options.part_size_bytes,
            keel::page::PAGE_SIZE
        )));
    }
    let timeline = backup_timeline(db, archiver, options.timeline)?;
    let remote = Remote::open(target, options.op_timeout)?;
    let id = keel::types::random_id();
    let mut uploaded: Option<String> = None;
    let mut started_us = 0;
    let engine_err = |e: keel::Error| ArchiveError::Backup(Box::new(e));
    // The folder is named by the start LSN, known only once the engine has
    // checkpointed: the first file handed over is the control file, whose
    // scan start is that LSN.
    let base = db.backup_streaming(|file: &mut keel::backup::BackupReader<'_>| -> Result<()> {
        let dir = match &uploaded {
            Some(d) => d.clone(),
            None => {
                let mut bytes = Vec::new();
                while let Some(part) = file.read_part(usize::MAX).map_err(engine_err)? {
                    bytes.extend_from_slice(&part);
                }
                let control = keel::recovery::Control::decode(&bytes, Path::new(file.name()))
                    .map_err(engine_err)?;
                let d = remote.backup_dir(timeline, control.scan_start(), id);
                uploaded = Some(d.clone());
                started_us = crate::restore::now_us();
                let path = ObjectPath::from(format!("{d}/files/{}", file.name()));
                remote.put_create(&path, &bytes)?;
                return Ok(());
            }
        };
        let path = ObjectPath::from(format!("{dir}/files/{}", file.name()));
        let size = file.size();
        remote.put_streamed(&path, size, options.part_size_bytes, |max| {
            file.read_part(max).map_err(engine_err)
        })?;
        Ok(())
    });
    let base = base?;
    archiver.wait_archived(base.end, options.archive_timeout)?;
    let folder = remote.backup_dir(timeline, base.start, id);
    let chunks = remote.list_chunks(timeline)?;
    match chunks.first() {
        Some(first) if first.start <= base.start => {}
        _ => {
            return Err(ArchiveError::Config(format!(
                "the archive of timeline {timeline} under {} does not reach back to the backup's \
                 start LSN {} (it begins at {}): start archiving before taking a backup",
                remote.prefix(),
                base.start,
                chunks
                    .first()
                    .map_or_else(|| "no chunk yet".to_string(), |c| c.start.to_string())
            )));
        }
    }
    // The archiver's own account of what it shipped is not the store's:
    // the manifest, which makes the backup one a restore may choose, is
    // written only once the store shows the whole log it needs.
    crate::backup_check::check_log_covers(&remote, &folder, timeline, base.start, base.end)?;
    let manifest = Manifest {
        database_id: base.database_id,
        timeline,
        start: base.start,
        end: base.end,
        checkpoint_end: base.checkpoint_end,
        segment_size: base.segment_size,
        max_batch_bytes: base.max_batch_bytes,
        started_us: Some(started_us),
        files: base.files.clone(),
    };
    let path = ObjectPath::from(format!("{folder}/manifest"));
    remote.put_create(&path, &manifest.encode())?;
    drop(base);
    Ok(manifest)
}

/// The timeline a backup of `db` is filed under: the one `archiver`
/// ships `db`'s log on, where the backup's log must be. `requested` is
/// [`BackupOptions::timeline`]: 1 (the default) means the archiver's, as
/// for [`crate::ArchiverOptions::timeline`]; any other number must be the
/// archiver's. A backup filed under another timeline than its log's would
/// be restored with that timeline's log: a copy of one history replayed
/// with another's.
fn backup_timeline(db: &Database, archiver: &Archiver, requested: u32) -> Result<u32> {
    if !archiver.archives(db) {
        return Err(ArchiveError::Config(format!(
            "the archiver given to the backup of {} archives another database: a backup \
             needs its own database's log archived",
            db.dir().display()
        )));
    }
    let timeline = archiver.timeline();
    match requested == timeline || requested == 1 {
        true => Ok(timeline),
        false => Err(ArchiveError::Config(format!(
            "a backup of {} on timeline {requested}, but its archiver ships its log on \
             timeline {timeline}: a backup is filed under the timeline of its log",
            db.dir().display()
        ))),
    }
}

impl Remote {
    /// Every object under `dir` (recursively).
    fn list_all(&self, dir: &ObjectPath) -> Result<Vec<ObjectPath>> {
        Ok(self
            .list_recursive(dir)?
            .into_iter()
            .map(|m| m.location)
            .collect())
    }
}
