//! The decoder's reading cursor: every read is bounds-checked and a short
//! read is a [`WalError::BadPayload`] naming the record and the byte offset
//! (invariant 9).

use crate::types::Lsn;
use crate::wal::WalError;

/// Reads little-endian fields from a payload, front to back.
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    lsn: Lsn,
    kind: &'static str,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of the payload of the record at `lsn`, of the
    /// type named `kind` (for error messages).
    pub(super) fn new(bytes: &'a [u8], lsn: Lsn, kind: &'static str) -> Cursor<'a> {
        Cursor {
            bytes,
            pos: 0,
            lsn,
            kind,
        }
    }

    /// Offset of the next byte to read.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// A `BadPayload` error at `offset`.
    pub(super) fn error_at(&self, offset: usize, reason: impl Into<String>) -> WalError {
        WalError::BadPayload {
            lsn: self.lsn,
            kind: self.kind,
            offset,
            reason: reason.into(),
        }
    }

    /// Takes the next `n` bytes of a field named `what`.
    pub(super) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], WalError> {
        let left = self.remaining();
        if n > left {
            return Err(self.error_at(
                self.pos,
                format!("truncated: {what} needs {n} bytes, {left} left"),
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], WalError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    /// Reads a u8.
    pub(super) fn u8(&mut self, what: &str) -> Result<u8, WalError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Reads a little-endian u16.
    pub(super) fn u16(&mut self, what: &str) -> Result<u16, WalError> {
        self.array(what).map(u16::from_le_bytes)
    }

    /// Reads a little-endian u32.
    pub(super) fn u32(&mut self, what: &str) -> Result<u32, WalError> {
        self.array(what).map(u32::from_le_bytes)
    }

    /// Reads a little-endian u64.
    pub(super) fn u64(&mut self, what: &str) -> Result<u64, WalError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Checks a count just read at `at` against the remaining bytes, each
    /// entry needing at least `min_entry_bytes`, before the caller allocates
    /// room for `count` entries (invariant 9).
    pub(super) fn check_count(
        &self,
        at: usize,
        count: usize,
        min_entry_bytes: usize,
        what: &str,
    ) -> Result<usize, WalError> {
        let left = self.remaining();
        match count.checked_mul(min_entry_bytes) {
            Some(need) if need <= left => Ok(count),
            _ => Err(self.error_at(
                at,
                format!(
                    "{count} {what} claimed, but {left} bytes left hold at most {}",
                    left / min_entry_bytes.max(1)
                ),
            )),
        }
    }

    /// Reads a u16 count of entries of at least `min_entry_bytes` each.
    pub(super) fn count16(
        &mut self,
        min_entry_bytes: usize,
        what: &str,
    ) -> Result<usize, WalError> {
        let at = self.pos;
        let n = self.u16(what)?;
        self.check_count(at, usize::from(n), min_entry_bytes, what)
    }

    /// Ends decoding: any byte left over is an error.
    pub(super) fn finish(self) -> Result<(), WalError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error_at(self.pos, format!("{n} trailing bytes after the payload"))),
        }
    }
}
