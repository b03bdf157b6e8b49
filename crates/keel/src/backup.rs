//! Online base backups: a copy of the data files taken while writes
//! continue, which the log from the copy's start repairs into a consistent
//! database.
//!
//! ## Protocol ([`Database::backup`](crate::Database::backup))
//!
//! 1. Under the checkpoint lock: take a checkpoint, read the control file
//!    it wrote, and pin the log ([`Wal::pin_from`](crate::wal::Wal::pin_from))
//!    from that control's scan start (the older of its redo and undo
//!    starts). No later checkpoint can retire that log before the pin is
//!    dropped (pins coexist with an archiver's hold). The scan start is the
//!    backup's **start LSN**.
//! 2. Hand the control file (as written, but marked unclean, so an open of
//!    the copy runs recovery) and every relation heap file in `rel/` to the
//!    caller's sink, each read whole while transactions, the checkpointer
//!    and page writes go on. Each file is read as long as it is when the
//!    read begins, cut to whole pages (a page past that was added after
//!    the checkpoint: the log re-creates it). The sink reads each file
//!    through a [`BackupReader`], in parts of the size it asks for, so a
//!    file is never held in memory whole; the reader computes the file's
//!    CRC32C over exactly the bytes it handed out. A sink must read its
//!    file to the end ([`BackupReader::remaining`] is zero when it
//!    returns): a file handed over in part is an error, never described
//!    with the size it should have had.
//! 3. The **end LSN** is the end of the last record durable after the last
//!    read ([`Wal::last_record_end`](crate::wal::Wal::last_record_end):
//!    when the durable end follows a segment's padding, the end of the
//!    record before the padding, so the end LSN is always a record's end, a
//!    point a restore can stop at). Every page write the copy may have seen
//!    was preceded by its log being durable (the WAL rule, invariant 4),
//!    and padding changes no page, so redo from the start LSN up to the end
//!    LSN covers every change the copy holds, in whole or in part.
//!
//! Why a copy taken this way is repairable: everything changed before the
//! checkpoint's begin record was written by the checkpoint's flush before
//! the copy began, and every page is copied whole: a page read while a
//! write of it was under way fails its checksum and is read again until it
//! verifies (a page that never does is damaged, and the backup fails
//! naming it; an all-zero page, created after the checkpoint and not
//! written yet, is copied as it is). So each page of the copy is one state
//! of that page from the checkpoint on, and redo from the start LSN brings
//! it forward by page LSN (invariant 8); a page created after the
//! checkpoint is formatted by a record after the start LSN. The copy needs
//! no page images. A copy is consistent only once recovery has replayed
//! the log at least to the end LSN (the consistency point).
//!
//! Free space map files are not copied: they are hints, and an open
//! without one rebuilds the map from the heap pages
//! (`recovery::checkpoint::load_fsm`). A relation dropped during the copy
//! is skipped (its file is gone); one created during it is re-created by
//! redo of its creation, which lies after the start LSN.

use keel_io::{FileClass, IoBuf, OpenOptions};

use crate::checksum::{crc32c, crc32c_append};
use crate::datadir::layout::{CONTROL_FILE, REL_DIR, RelFile, rel_dir, rel_file};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::page::PAGE_SIZE;
use crate::recovery::control::{Control, read_control};
use crate::types::Lsn;
use crate::wal::LogPin;

/// One file of a base backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupFile {
    /// Its path relative to the data directory, with `/` separators
    /// (`control`, `rel/7.heap`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// CRC32C of its bytes.
    pub crc32c: u32,
}

/// What [`Database::backup`](crate::Database::backup) copied.
#[derive(Debug)]
pub struct BaseBackup {
    /// Where redo of the copy starts (the checkpoint's scan start).
    pub start: Lsn,
    /// The end of the last record durable after the copy (a record's end,
    /// never a segment's end after padding, so a restore can stop exactly
    /// here): recovery must replay at least to here before the copy is
    /// consistent.
    pub end: Lsn,
    /// The checkpoint's end record.
    pub checkpoint_end: Lsn,
    /// The database's id.
    pub database_id: u64,
    /// The log's segment size (LSNs map to segment files by it).
    pub segment_size: u32,
    /// The log's batch limit (in its segment headers).
    pub max_batch_bytes: u32,
    /// The files handed to the sink, in the order handed.
    pub files: Vec<BackupFile>,
    /// The pin on the log from `start`; dropping it lets checkpoints retire
    /// that log again.
    pub pin: LogPin,
}

/// One file of a backup as the sink reads it, in parts, while writes
/// continue (module essay, step 2).
pub struct BackupReader<'a> {
    name: String,
    size: u64,
    pos: u64,
    crc: u32,
    source: Source<'a>,
}

enum Source<'a> {
    /// The control file, encoded in memory (a few hundred bytes).
    Memory(Vec<u8>),
    /// A heap file, open.
    File {
        io: &'a std::sync::Arc<dyn keel_io::AsyncIo>,
        file: keel_io::FileHandle,
    },
}

impl BackupReader<'_> {
    /// The file's path relative to the data directory (`control`,
    /// `rel/7.heap`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's size in bytes: what the sink will read in all.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.size - self.pos
    }

    /// The next at most `max_bytes` bytes (`max_bytes` rounded down to
    /// whole pages, at least one page, for a heap file); `None` at the
    /// end.
    pub fn read_part(&mut self, max_bytes: usize) -> Result<Option<Vec<u8>>> {
        if self.pos == self.size {
            return Ok(None);
        }
        // Whole pages from a heap file: its reads stay page-aligned, as a
        // direct-I/O backend needs.
        let max = match &self.source {
            Source::Memory(_) => max_bytes.max(PAGE_SIZE),
            Source::File { .. } => (max_bytes / PAGE_SIZE).max(1) * PAGE_SIZE,
        };
        let want = (self.size - self.pos).min(max as u64) as usize;
        let bytes = match &self.source {
            Source::Memory(b) => b[self.pos as usize..self.pos as usize + want].to_vec(),
            Source::File { io, file } => {
                let mut bytes = io
                    .read_exact_at(*file, self.pos, IoBuf::zeroed(want))
                    .wait()?
                    .into_vec();
                for (i, page) in bytes.chunks_mut(PAGE_SIZE).enumerate() {
                    let offset = self.pos + (i * PAGE_SIZE) as u64;
                    whole_page(io, *file, offset, page, &self.name)?;
                }
                bytes
            }
        };
        self.pos += want as u64;
        self.crc = crc32c_append(self.crc, &bytes);
        Ok(Some(bytes))
    }

    /// The file's description, once the sink has read it all.
    fn described(&self) -> Result<BackupFile> {
        if self.pos != self.size {
            return Err(crate::error::DbError::Config(format!(
                "the backup sink read {} of the {} bytes of {}: a sink must read each file to its end",
                self.pos, self.size, self.name
            ))
            .into());
        }
        Ok(BackupFile {
            name: self.name.clone(),
            size: self.size,
            crc32c: self.crc,
        })
    }
}

impl Drop for BackupReader<'_> {
    fn drop(&mut self) {
        if let Source::File { io, file } = &self.source {
            let _ = io.close(*file).wait();
        }
    }
}

/// Reads of a page that fails its checksum before the backup gives up on
/// it (module essay, "Why a copy taken this way is repairable").
const TORN_READ_TRIES: u32 = 100;

/// Makes `page`, read from `offset` of `file`, a whole page: a page that
/// fails its checksum was read while a write of it was under way, and is
/// read again (a millisecond apart) until it verifies. An all-zero page
/// (one created after the checkpoint, not yet written) is kept as it is. A
/// page that fails every read is damaged on disk: an error naming it.
fn whole_page(
    io: &std::sync::Arc<dyn keel_io::AsyncIo>,
    file: keel_io::FileHandle,
    offset: u64,
    page: &mut [u8],
    name: &str,
) -> Result<()> {
    let pid = crate::types::PageId((offset / PAGE_SIZE as u64) as u32);
    for _ in 0..TORN_READ_TRIES {
        if page.iter().all(|&b| b == 0) || crate::page::verify_checksum(page, pid).is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        let again = io
            .read_exact_at(file, offset, IoBuf::zeroed(PAGE_SIZE))
            .wait()?;
        page.copy_from_slice(&again);
    }
    match crate::page::verify_checksum(page, pid) {
        Ok(()) => Ok(()),
        Err(e) => Err(crate::error::DbError::Corrupt {
            what: format!("{name}, page {pid}"),
            reason: format!(
                "fails its checksum in each of {TORN_READ_TRIES} reads, so it is no write \
                 under way but a damaged page, and a backup never copies one: {e}"
            ),
        }
        .into()),
    }
}

/// Runs the protocol (module essay) on `engine`, handing each file whole
/// to `sink` (for small databases and tests; [`backup_streaming`] bounds
/// memory).
pub(crate) fn backup<E: From<Error>>(
    engine: &Engine,
    mut sink: impl FnMut(&BackupFile, &[u8]) -> std::result::Result<(), E>,
) -> std::result::Result<BaseBackup, E> {
    backup_streaming(engine, |reader: &mut BackupReader<'_>| {
        let mut bytes = Vec::with_capacity(reader.size() as usize);
        while let Some(part) = reader.read_part(usize::MAX)? {
            bytes.extend_from_slice(&part);
        }
        let file = described(reader.name().to_string(), &bytes);
        sink(&file, &bytes)
    })
}

/// Runs the protocol (module essay) on `engine`, handing each file to
/// `sink` as a [`BackupReader`] it reads in parts.
pub(crate) fn backup_streaming<E: From<Error>>(
    engine: &Engine,
    mut sink: impl FnMut(&mut BackupReader<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<BaseBackup, E> {
    let (control, pin, checkpoint_end) = checkpoint_and_pin(engine)?;
    let wal = &engine.store.wal;
    let mut files = Vec::new();
    let control_bytes = Control {
        clean: false,
        ..control
    }
    .encode();
    let mut reader = BackupReader {
        name: CONTROL_FILE.to_string(),
        size: control_bytes.len() as u64,
        pos: 0,
        crc: 0,
        source: Source::Memory(control_bytes.to_vec()),
    };
    sink(&mut reader)?;
    files.push(reader.described()?);
    for name in heap_files(engine)? {
        let Some(mut reader) = open_heap_file(engine, &name)? else {
            continue;
        };
        sink(&mut reader)?;
        files.push(reader.described()?);
    }
    let start = pin.lsn();
    let end = wal
        .last_record_end(wal.durable_lsn(), start)
        .map_err(Error::from)?;
    Ok(BaseBackup {
        start,
        end,
        checkpoint_end,
        database_id: wal.database_id(),
        segment_size: wal.segment_size() as u32,
        max_batch_bytes: wal.max_batch_bytes(),
        files,
        pin,
    })
}

fn described(name: String, bytes: &[u8]) -> BackupFile {
    BackupFile {
        name,
        size: bytes.len() as u64,
        crc32c: crc32c(bytes),
    }
}

/// Protocol step 1.
fn checkpoint_and_pin(engine: &Engine) -> Result<(Control, LogPin, Lsn)> {
    let (report, (control, pin)) = engine.checkpoint_then(false, |_| {
        let control = read_control(&engine.store.io, &engine.dir)?.ok_or_else(|| {
            Error::from(crate::error::DbError::Corrupt {
                what: format!("data directory {}", engine.dir.display()),
                reason: "no control file right after a checkpoint wrote one".into(),
            })
        })?;
        let pin = engine.store.wal.pin_from(control.scan_start());
        Ok((control, pin))
    })?;
    Ok((control, pin, report.end))
}

/// The heap files in `rel/`, by name, in relation order.
fn heap_files(engine: &Engine) -> Result<Vec<String>> {
    let entries = engine.store.io.read_dir(&rel_dir(&engine.dir)).wait()?;
    let mut heaps: Vec<_> = entries
        .iter()
        .filter(|e| !e.is_dir)
        .filter_map(|e| {
            let name = e.name.to_str()?;
            match rel_file(name) {
                Some((id, RelFile::Heap)) if RelFile::Heap.name(id) == name => {
                    Some((id, name.to_string()))
                }
                _ => None,
            }
        })
        .collect();
    heaps.sort_unstable_by_key(|(id, _)| id.0);
    Ok(heaps.into_iter().map(|(_, n)| n).collect())
}

/// Opens heap file `name` for reading, as long as it is now, cut to
/// whole pages; `None` when it was removed (a drop) before it could be
/// opened.
fn open_heap_file<'a>(engine: &'a Engine, name: &str) -> Result<Option<BackupReader<'a>>> {
    let io = &engine.store.io;
    let dir = rel_dir(&engine.dir);
    let path = dir.join(name);
    let f = match io.open(&path, OpenOptions::new(FileClass::Data)).wait() {
        Ok(f) => f,
        Err(e) => {
            let still_there = io
                .read_dir(&dir)
                .wait()?
                .iter()
                .any(|entry| entry.name.to_str() == Some(name));
            return match still_there {
                true => Err(e.into()),
                false => Ok(None),
            };
        }
    };
    let mut reader = BackupReader {
        name: format!("{REL_DIR}/{name}"),
        size: 0,
        pos: 0,
        crc: 0,
        source: Source::File { io, file: f },
    };
    let size = io.size(f).wait()?;
    reader.size = size - size % PAGE_SIZE as u64;
    Ok(Some(reader))
}
