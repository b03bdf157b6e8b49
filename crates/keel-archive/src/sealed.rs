//! Small text objects sealed by a checksum line: timeline histories
//! (restore.rs) and fences ([`crate::fence`]).
//!
//! Such an object is UTF-8 text of a fixed number of lines, each ending in
//! `\n`: the first `MAGIC VERSION`, then one `key value` per line in a
//! fixed order, and last `crc32c X`, the CRC32C (hex) of every byte before
//! that line. Decoding treats the bytes as hostile (invariant 9): the size
//! is bounded before anything is read, the line count and the CRC are
//! checked before any field, and every error names the object and the
//! line.

use keel::checksum::crc32c;

use crate::error::{ArchiveError, Place, Result};

/// Appends the checksum line to `body` (the lines before it, each ending
/// in `\n`) and returns the object's bytes.
pub(crate) fn seal(mut body: String) -> Vec<u8> {
    let crc = crc32c(body.as_bytes());
    body.push_str(&format!("crc32c {crc:08x}\n"));
    body.into_bytes()
}

/// The checked lines of a sealed object, and its fields.
pub(crate) struct Sealed<'a> {
    object: &'a str,
    lines: Vec<&'a str>,
}

/// What a sealed object of one kind is.
pub(crate) struct Kind {
    /// Its name in errors ("fence", "timeline history").
    pub what: &'static str,
    /// The first word of its first line.
    pub magic: &'static str,
    /// The format version on its first line.
    pub version: u32,
    /// Its lines, the checksum line included.
    pub lines: usize,
    /// The most bytes one may have.
    pub max_bytes: usize,
}

impl<'a> Sealed<'a> {
    /// Checks `bytes`, read from `object`, as an object of `kind`: size,
    /// text, line count, checksum, magic and version.
    pub(crate) fn open(object: &'a str, bytes: &'a [u8], kind: &Kind) -> Result<Sealed<'a>> {
        let bad = |line: usize, reason: String| corrupt(object, line, reason);
        if bytes.len() > kind.max_bytes {
            return Err(bad(
                0,
                format!("{} bytes, more than any {}", bytes.len(), kind.what),
            ));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad(0, "not UTF-8 text".into()))?;
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() != kind.lines || !text.ends_with('\n') {
            return Err(bad(
                0,
                format!("{} lines, a {} has {}", lines.len(), kind.what, kind.lines),
            ));
        }
        let sealed = Sealed { object, lines };
        let last = kind.lines - 1;
        let body_len = text.len() - sealed.lines[last].len() - 1;
        let crc = u32::from_str_radix(sealed.field(last, "crc32c")?, 16)
            .map_err(|_| bad(last, "malformed CRC".into()))?;
        let computed = crc32c(&bytes[..body_len]);
        if crc != computed {
            return Err(ArchiveError::ChecksumMismatch {
                object: object.to_string(),
                what: kind.what,
                stored: crc,
                computed,
            });
        }
        if sealed.field(0, kind.magic)? != kind.version.to_string() {
            return Err(bad(0, format!("unknown version {:?}", sealed.lines[0])));
        }
        Ok(sealed)
    }

    /// An error naming the object and line `line` (from 0).
    pub(crate) fn bad(&self, line: usize, reason: String) -> ArchiveError {
        corrupt(self.object, line, reason)
    }

    /// The value of line `i`, which must be `key value`.
    pub(crate) fn field(&self, i: usize, key: &str) -> Result<&'a str> {
        let line = self.lines[i];
        line.strip_prefix(key)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or_else(|| self.bad(i, format!("expected `{key} …`, found {line:?}")))
    }

    /// Line `i`'s value as a hex `u64`.
    pub(crate) fn hex(&self, i: usize, key: &str) -> Result<u64> {
        u64::from_str_radix(self.field(i, key)?, 16)
            .map_err(|_| self.bad(i, format!("malformed {key}")))
    }

    /// Line `i`'s value as a decimal `u64`.
    pub(crate) fn dec(&self, i: usize, key: &str) -> Result<u64> {
        self.field(i, key)?
            .parse()
            .map_err(|_| self.bad(i, format!("malformed {key}")))
    }

    /// Line `i`'s value as a decimal `u32`.
    pub(crate) fn small(&self, i: usize, key: &str) -> Result<u32> {
        self.field(i, key)?
            .parse()
            .map_err(|_| self.bad(i, format!("malformed {key}")))
    }
}

fn corrupt(object: &str, line: usize, reason: String) -> ArchiveError {
    ArchiveError::Corrupt {
        object: object.to_string(),
        place: Place::Object(line as u64),
        reason: format!("line {}: {reason}", line + 1),
    }
}
