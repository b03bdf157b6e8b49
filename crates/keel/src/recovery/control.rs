//! The control file: where recovery starts.
//!
//! `control` in the data directory, 64 bytes, little-endian (invariant 1;
//! layout in docs/storage.md, "Control file"):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `KCTL` |
//! | 4 | 2 | format version (1) |
//! | 6 | 2 | flags (bit 0: clean shutdown) |
//! | 8 | 4 | CRC32C of bytes 0..64 with this field zero |
//! | 12 | 4 | next relation id |
//! | 16 | 8 | database id (matches the WAL segments') |
//! | 24 | 8 | redo start: LSN of the last complete checkpoint's begin record (or its oldest recLSN, if older) |
//! | 32 | 8 | LSN of that checkpoint's end record |
//! | 40 | 8 | undo start: first LSN of the oldest transaction active then |
//! | 48 | 8 | next transaction id |
//! | 56 | 8 | reserved (zero) |
//!
//! It is replaced atomically: written to `control.tmp`, fdatasynced,
//! renamed over `control`, and the directory synced. A torn or bit-flipped
//! control file fails its CRC and is an error naming it; it is never
//! guessed at. Its starts repeat those of the checkpoint end record it
//! names, and recovery reads that record on its way: a control file whose
//! CRC holds but which disagrees with the log (no record starts at its
//! checkpoint's end LSN, the record there is no checkpoint end, or its
//! starts differ) is an error too ([`CheckpointAnchor`]), rather than a
//! redo or undo that starts somewhere else than the checkpoint said.

use std::path::Path;
use std::sync::Arc;

use keel_io::{AsyncIo, FileClass, IoBuf, OpenOptions};

use crate::checksum::crc32c;
use crate::datadir::layout::{CONTROL_FILE, control_path, control_tmp_path};
use crate::error::{DbError, Error, Result};
use crate::types::{Lsn, TxnId};
use crate::wal::Wal;
use crate::wal::segment::{MAX_LSN, segment_file_name};

/// Size of the control file.
pub const CONTROL_SIZE: usize = 64;
/// Magic of the control file.
pub const CONTROL_MAGIC: u32 = u32::from_le_bytes(*b"KCTL");
/// Format version.
pub const CONTROL_VERSION: u16 = 1;
/// Flag: the database was closed cleanly.
pub const FLAG_CLEAN: u16 = 1;

/// Byte offsets of the control file's fields (docs/storage.md).
pub mod offsets {
    /// u32 magic.
    pub const MAGIC: usize = 0;
    /// u16 version.
    pub const VERSION: usize = 4;
    /// u16 flags.
    pub const FLAGS: usize = 6;
    /// u32 CRC32C.
    pub const CRC: usize = 8;
    /// u32 next relation id.
    pub const NEXT_RELATION: usize = 12;
    /// u64 database id.
    pub const DATABASE_ID: usize = 16;
    /// u64 redo start.
    pub const REDO_START: usize = 24;
    /// u64 checkpoint end.
    pub const CHECKPOINT_END: usize = 32;
    /// u64 undo start.
    pub const UNDO_START: usize = 40;
    /// u64 next transaction id.
    pub const NEXT_TXN: usize = 48;
    /// u64 reserved.
    pub const RESERVED: usize = 56;
}

/// The decoded control file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    /// Closed cleanly (no recovery work expected).
    pub clean: bool,
    /// Next relation id to hand out.
    pub next_relation: u32,
    /// The database id, as in the WAL segment headers.
    pub database_id: u64,
    /// Where redo starts: the last complete checkpoint's begin record, or
    /// the oldest recLSN of its dirty page table if that is older (it never
    /// is; see `recovery::checkpoint`).
    pub redo_start: Lsn,
    /// LSN of that checkpoint's end record.
    pub checkpoint_end: Lsn,
    /// First LSN of the oldest transaction active at that checkpoint (equal
    /// to `redo_start` when none was).
    pub undo_start: Lsn,
    /// Next transaction id to hand out.
    pub next_txn: TxnId,
}

impl Control {
    /// Where recovery reads from: the older of the redo and undo starts.
    pub fn scan_start(&self) -> Lsn {
        self.redo_start.min(self.undo_start)
    }

    /// Encodes the file's bytes.
    pub fn encode(&self) -> [u8; CONTROL_SIZE] {
        let mut b = [0u8; CONTROL_SIZE];
        b[offsets::MAGIC..4].copy_from_slice(&CONTROL_MAGIC.to_le_bytes());
        b[offsets::VERSION..6].copy_from_slice(&CONTROL_VERSION.to_le_bytes());
        let flags = if self.clean { FLAG_CLEAN } else { 0 };
        b[offsets::FLAGS..8].copy_from_slice(&flags.to_le_bytes());
        b[offsets::NEXT_RELATION..16].copy_from_slice(&self.next_relation.to_le_bytes());
        b[offsets::DATABASE_ID..24].copy_from_slice(&self.database_id.to_le_bytes());
        b[offsets::REDO_START..32].copy_from_slice(&self.redo_start.0.to_le_bytes());
        b[offsets::CHECKPOINT_END..40].copy_from_slice(&self.checkpoint_end.0.to_le_bytes());
        b[offsets::UNDO_START..48].copy_from_slice(&self.undo_start.0.to_le_bytes());
        b[offsets::NEXT_TXN..56].copy_from_slice(&self.next_txn.0.to_le_bytes());
        let crc = crc32c(&b);
        b[offsets::CRC..12].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks the file's bytes; `path` names it in errors.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Control> {
        let bad = |reason: String| -> Error {
            DbError::Corrupt {
                what: format!("control file {}", path.display()),
                reason,
            }
            .into()
        };
        if bytes.len() != CONTROL_SIZE {
            return Err(bad(format!(
                "{} bytes, expected {CONTROL_SIZE}",
                bytes.len()
            )));
        }
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        let u32_at = |o: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&bytes[o..o + 4]);
            u32::from_le_bytes(a)
        };
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(a)
        };
        if u32_at(offsets::MAGIC) != CONTROL_MAGIC {
            return Err(bad("bad magic".into()));
        }
        let mut zeroed = [0u8; CONTROL_SIZE];
        zeroed.copy_from_slice(bytes);
        zeroed[offsets::CRC..12].fill(0);
        let (stored, computed) = (u32_at(offsets::CRC), crc32c(&zeroed));
        if stored != computed {
            return Err(bad(format!(
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            )));
        }
        if u16_at(offsets::VERSION) != CONTROL_VERSION {
            return Err(bad(format!("unknown version {}", u16_at(offsets::VERSION))));
        }
        let flags = u16_at(offsets::FLAGS);
        if flags & !FLAG_CLEAN != 0 || u64_at(offsets::RESERVED) != 0 {
            return Err(bad("unknown flags or reserved bytes set".into()));
        }
        let c = Control {
            clean: flags & FLAG_CLEAN != 0,
            next_relation: u32_at(offsets::NEXT_RELATION),
            database_id: u64_at(offsets::DATABASE_ID),
            redo_start: Lsn(u64_at(offsets::REDO_START)),
            checkpoint_end: Lsn(u64_at(offsets::CHECKPOINT_END)),
            undo_start: Lsn(u64_at(offsets::UNDO_START)),
            next_txn: TxnId(u64_at(offsets::NEXT_TXN)),
        };
        if c.checkpoint_end < c.redo_start {
            return Err(bad("checkpoint end before its begin".into()));
        }
        if c.next_txn.0 >= crate::txn::table::TXN_ID_LIMIT {
            return Err(bad(format!(
                "next transaction id {} at or past the limit {} no database reaches",
                c.next_txn.0,
                crate::txn::table::TXN_ID_LIMIT
            )));
        }
        if c.checkpoint_end.0 > MAX_LSN || c.undo_start.0 > MAX_LSN {
            return Err(bad(format!(
                "an LSN beyond the largest a log can reach ({MAX_LSN:#X})"
            )));
        }
        Ok(c)
    }

    /// Checks that the log reaches this checkpoint: its end record at
    /// `checkpoint_end` must lie wholly before the log's end, `log_end`.
    /// A log that ends earlier lost its tail (a missing or truncated
    /// segment); recovering from it would silently drop every change after
    /// its end and hand out LSNs again. The error names what is missing.
    pub fn check_log_reaches(&self, log_end: Lsn, wal: &Wal) -> Result<()> {
        if log_end > self.checkpoint_end {
            return Ok(());
        }
        let segment = self.checkpoint_end.0 / wal.segment_size();
        let path = wal.dir().join(segment_file_name(segment));
        Err(DbError::Recovery {
            lsn: log_end,
            reason: format!(
                "the log ends at {log_end} but the checkpoint at {} ends at {} (control file): \
                 segment file {} is missing or lost its tail",
                self.redo_start,
                self.checkpoint_end,
                path.display()
            ),
        }
        .into())
    }
}

/// The checkpoint end record a control file names, as recovery checks it
/// while reading the log ([`Control::anchor`]): the record at
/// `checkpoint_end` must be a checkpoint end with the control file's redo
/// and undo starts and a next transaction id no larger than its own (a
/// standby's restartpoint raises it past every id it has seen).
pub struct CheckpointAnchor {
    control: Control,
    seen: bool,
}

impl Control {
    /// What recovery (and `keel check`) checks of the checkpoint this
    /// control file names.
    pub fn anchor(&self) -> CheckpointAnchor {
        CheckpointAnchor {
            control: *self,
            seen: false,
        }
    }
}

impl CheckpointAnchor {
    /// Where the checkpoint end record must start (the control file's
    /// `checkpoint_end`): only a record that starts there or runs over it
    /// can fail [`record`](Self::record).
    pub fn at(&self) -> Lsn {
        self.control.checkpoint_end
    }

    /// Checks record `h` (with `payload`) against the control file, when it
    /// is or straddles the checkpoint end record's place.
    pub fn record(
        &mut self,
        h: &crate::wal::RecordHeader,
        payload: &crate::wal::payload::Payload,
    ) -> Result<()> {
        let c = &self.control;
        let at = c.checkpoint_end;
        if h.lsn < at && h.lsn.0.saturating_add(u64::from(h.total_len)) > at.0 {
            return Err(disagree(
                c,
                format!("a {} record at {} runs over that LSN", h.kind.name(), h.lsn),
            ));
        }
        if h.lsn != at {
            return Ok(());
        }
        let crate::wal::payload::Payload::CheckpointEnd {
            redo_start,
            undo_start,
            next_txn,
            ..
        } = *payload
        else {
            return Err(disagree(
                c,
                format!("the record there is a {}", h.kind.name()),
            ));
        };
        if redo_start != c.redo_start || undo_start != c.undo_start || next_txn > c.next_txn {
            return Err(disagree(
                c,
                format!(
                    "the record there gives redo start {redo_start}, undo start {undo_start}, \
                     next transaction {}; the control file redo start {}, undo start {}, next \
                     transaction {}",
                    next_txn.0, c.redo_start, c.undo_start, c.next_txn.0
                ),
            ));
        }
        self.seen = true;
        Ok(())
    }

    /// Checks that the log read held the record (called once recovery has
    /// read past it: the log reaches it, [`Control::check_log_reaches`]).
    pub fn finish(&self) -> Result<()> {
        match self.seen {
            true => Ok(()),
            false => Err(disagree(
                &self.control,
                "recovery read no record there".into(),
            )),
        }
    }
}

/// The control file `c` and the log disagree about its checkpoint, as
/// `reason` says.
fn disagree(c: &Control, reason: String) -> Error {
    DbError::Recovery {
        lsn: c.checkpoint_end,
        reason: format!(
            "the control file names a checkpoint whose end record is at {}, but {reason}: \
             the control file does not belong to this log",
            c.checkpoint_end
        ),
    }
    .into()
}

/// Reads the control file; `None` when the directory has none (a new
/// database).
pub fn read_control(io: &Arc<dyn AsyncIo>, dir: &Path) -> Result<Option<Control>> {
    let path = control_path(dir);
    let entries = io.read_dir(dir).wait()?;
    let Some(entry) = entries.iter().find(|e| e.name == CONTROL_FILE) else {
        return Ok(None);
    };
    if entry.is_dir {
        return Err(DbError::Corrupt {
            what: format!("control file {}", path.display()),
            reason: "it is a directory, not a file".into(),
        }
        .into());
    }
    let f = io
        .open(&path, OpenOptions::new(FileClass::Control))
        .wait()?;
    let size = io.size(f).wait()?;
    let result = if size as usize != CONTROL_SIZE {
        Err(Error::from(DbError::Corrupt {
            what: format!("control file {}", path.display()),
            reason: format!("{size} bytes, expected {CONTROL_SIZE}"),
        }))
    } else {
        let buf = io.read_exact_at(f, 0, IoBuf::zeroed(CONTROL_SIZE)).wait()?;
        Control::decode(&buf, &path)
    };
    io.close(f).wait()?;
    result.map(Some)
}

/// Replaces the control file atomically (module docs).
pub fn write_control(io: &Arc<dyn AsyncIo>, dir: &Path, control: &Control) -> Result<()> {
    let tmp = control_tmp_path(dir);
    let opts = OpenOptions::new(FileClass::Control)
        .write(true)
        .create(true);
    let f = io.open(&tmp, opts).wait()?;
    let mut buf = IoBuf::zeroed(CONTROL_SIZE);
    buf.copy_from_slice(&control.encode());
    let written = io
        .write_at(f, 0, buf)
        .wait()
        .and_then(|_| io.set_len(f, CONTROL_SIZE as u64).wait())
        .and_then(|_| io.fdatasync(f).wait());
    io.close(f).wait()?;
    written?;
    io.rename(&tmp, &control_path(dir)).wait()?;
    io.sync_dir(dir).wait()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Control {
        Control {
            clean: true,
            next_relation: 9,
            database_id: 0xdead_beef,
            redo_start: Lsn(8192),
            checkpoint_end: Lsn(9000),
            undo_start: Lsn(4096),
            next_txn: TxnId(77),
        }
    }

    #[test]
    fn round_trip_and_every_bit_flip_is_caught() {
        let c = sample();
        let b = c.encode();
        let p = Path::new("/db/control");
        assert_eq!(Control::decode(&b, p).unwrap(), c);
        assert_eq!(c.scan_start(), Lsn(4096));
        for i in 0..CONTROL_SIZE * 8 {
            let mut bad = b;
            bad[i / 8] ^= 1 << (i % 8);
            let e = Control::decode(&bad, p).unwrap_err().to_string();
            assert!(e.contains("/db/control"), "{e}");
        }
        assert!(Control::decode(&b[..63], p).is_err());
    }

    /// Invariant 9: LSNs no log can reach (CRC-valid all the same) are an
    /// error, so no position arithmetic on them can overflow.
    #[test]
    fn lsns_beyond_any_log_are_refused() {
        let p = Path::new("/db/control");
        for c in [
            Control {
                checkpoint_end: Lsn(u64::MAX),
                ..sample()
            },
            Control {
                undo_start: Lsn(MAX_LSN + 1),
                ..sample()
            },
        ] {
            let e = Control::decode(&c.encode(), p).unwrap_err().to_string();
            assert!(e.contains("beyond the largest"), "{e}");
        }
    }
}
