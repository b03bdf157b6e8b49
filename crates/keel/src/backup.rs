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
//!    the checkpoint: the log re-creates it). Each file is held in memory
//!    whole while the sink takes it.
//! 3. The **end LSN** is the log's durable end after the last read. Every
//!    page write the copy may have seen was preceded by its log being
//!    durable (the WAL rule, invariant 4), so redo from the start LSN up to
//!    the end LSN covers every change the copy holds, in whole or in part.
//!
//! Why a copy taken this way is repairable: every page changed after the
//! checkpoint's begin record logs a full image of itself first
//! (invariant 5), and everything changed before it was written by the
//! checkpoint's flush before the copy began. So a page read torn, or read
//! from before or after any change, is rewritten whole by redo from the
//! start LSN. A copy is consistent only once recovery has replayed the log
//! at least to the end LSN (the consistency point).
//!
//! Free space map files are not copied: they are hints, and an open
//! without one rebuilds the map from the heap pages
//! (`recovery::checkpoint::load_fsm`). A relation dropped during the copy
//! is skipped (its file is gone); one created during it is re-created by
//! redo of its creation, which lies after the start LSN.

use keel_io::{FileClass, IoBuf, OpenOptions};

use crate::checksum::crc32c;
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
    /// The log's durable end after the copy: recovery must replay at least
    /// to here before the copy is consistent.
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

/// Runs the protocol (module essay) on `engine`, handing each file to
/// `sink`.
pub(crate) fn backup<E: From<Error>>(
    engine: &Engine,
    mut sink: impl FnMut(&BackupFile, &[u8]) -> std::result::Result<(), E>,
) -> std::result::Result<BaseBackup, E> {
    let (control, pin, checkpoint_end) = checkpoint_and_pin(engine)?;
    let wal = &engine.store.wal;
    let mut files = Vec::new();
    let control_bytes = Control {
        clean: false,
        ..control
    }
    .encode();
    let file = described(CONTROL_FILE.to_string(), &control_bytes);
    sink(&file, &control_bytes)?;
    files.push(file);
    for name in heap_files(engine)? {
        let Some(bytes) = read_heap_file(engine, &name)? else {
            continue;
        };
        let file = described(format!("{REL_DIR}/{name}"), &bytes);
        sink(&file, &bytes)?;
        files.push(file);
    }
    Ok(BaseBackup {
        start: pin.lsn(),
        end: wal.durable_lsn(),
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

/// Reads heap file `name` whole, cut to whole pages; `None` when it was
/// removed (a drop) before it could be opened.
fn read_heap_file(engine: &Engine, name: &str) -> Result<Option<Vec<u8>>> {
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
    let read = (|| {
        let size = io.size(f).wait()?;
        let size = size - size % PAGE_SIZE as u64;
        let buf = io
            .read_exact_at(f, 0, IoBuf::zeroed(size as usize))
            .wait()?;
        Ok(buf.into_vec())
    })();
    let _ = io.close(f).wait();
    read.map(Some)
}
