//! Small text objects sealed by a checksum line: timeline histories
//! (restore.rs) and fences ([`crate::fence`]).
//!
//! Such an object is UTF-8 text of a fixed number of lines, each ending in
//! `\n` alone: the first `MAGIC VERSION`, then one `key value` per line in
//! a fixed order, and last `crc32c X`, the CRC32C (hex) of every byte before
//! that line. Decoding treats the bytes as hostile (invariant 9): the size
//! is bounded before anything is read, the final `\n`, the line count, the
//! line endings and the CRC are checked before any field, and every error
//! names the object, the line and its byte offset.
//!
//! Line endings are exact. A line is the bytes up to a `\n`; a line that
//! ends in `\r\n` is refused with an error naming it, never read as if the
//! `\r` were not there: the writer's CRC covers its own `\n`-only bytes, so
//! an object converted to `\r\n` endings is no longer the object that was
//! sealed, and accepting it would mean checking a CRC over bytes other than
//! the ones read. The same holds for an object whose last line lacks its
//! `\n` (cut short): it is refused as such before its line count is judged.

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
    /// Each line without its `\n`, and the byte offset where it starts.
    lines: Vec<(usize, &'a str)>,
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
        let bad =
            |line: usize, offset: usize, reason: String| corrupt(object, line, offset, reason);
        if bytes.len() > kind.max_bytes {
            return Err(bad(
                0,
                0,
                format!("{} bytes, more than any {}", bytes.len(), kind.what),
            ));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad(0, 0, "not UTF-8 text".into()))?;
        let Some(body) = text.strip_suffix('\n') else {
            let start = text.rfind('\n').map_or(0, |i| i + 1);
            let line = text.matches('\n').count();
            return Err(bad(
                line,
                start,
                format!(
                    "no `\\n` at the end: cut short (a {} ends in one)",
                    kind.what
                ),
            ));
        };
        let mut start = 0;
        let lines: Vec<(usize, &str)> = body
            .split('\n')
            .map(|line| {
                let at = start;
                start += line.len() + 1;
                (at, line)
            })
            .collect();
        if lines.len() != kind.lines {
            return Err(bad(
                0,
                0,
                format!("{} lines, a {} has {}", lines.len(), kind.what, kind.lines),
            ));
        }
        for (i, &(start, line)) in lines.iter().enumerate() {
            if line.ends_with('\r') {
                return Err(bad(
                    i,
                    start,
                    format!(
                        "ends in `\\r\\n`: a {}'s lines end in `\\n` alone (was it \
                         converted to CRLF line endings?)",
                        kind.what
                    ),
                ));
            }
        }
        let sealed = Sealed { object, lines };
        let last = kind.lines - 1;
        // The checksum line starts right after the last `\n` it covers.
        let body_len = sealed.lines[last].0;
        let crc = u32::from_str_radix(sealed.field(last, "crc32c")?, 16)
            .map_err(|_| sealed.bad(last, "malformed CRC".into()))?;
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
            return Err(sealed.bad(0, format!("unknown version {:?}", sealed.lines[0].1)));
        }
        Ok(sealed)
    }

    /// An error naming the object and line `line` (from 0).
    pub(crate) fn bad(&self, line: usize, reason: String) -> ArchiveError {
        corrupt(self.object, line, self.lines[line].0, reason)
    }

    /// The value of line `i`, which must be `key value`.
    pub(crate) fn field(&self, i: usize, key: &str) -> Result<&'a str> {
        let line = self.lines[i].1;
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

/// An error naming `object`, line `line` (from 0) and the byte `offset`
/// where that line starts.
fn corrupt(object: &str, line: usize, offset: usize, reason: String) -> ArchiveError {
    ArchiveError::Corrupt {
        object: object.to_string(),
        place: Place::Object(offset as u64),
        reason: format!("line {}: {reason}", line + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: Kind = Kind {
        what: "test object",
        magic: "keel-test",
        version: 1,
        lines: 3,
        max_bytes: 256,
    };

    fn sample() -> Vec<u8> {
        seal("keel-test 1\nkey 2a\n".to_string())
    }

    /// The error opening `bytes` as "obj" gives.
    fn refused(bytes: &[u8]) -> ArchiveError {
        match Sealed::open("obj", bytes, &KIND) {
            Ok(_) => panic!("{:?} opened", String::from_utf8_lossy(bytes)),
            Err(e) => e,
        }
    }

    /// `place` and `reason` of a `Corrupt` error about "obj".
    fn corrupt_at(err: ArchiveError) -> (Place, String) {
        match err {
            ArchiveError::Corrupt {
                object,
                place,
                reason,
            } => {
                assert_eq!(object, "obj", "the error names the object");
                (place, reason)
            }
            other => panic!("expected Corrupt, got {other}"),
        }
    }

    #[test]
    fn a_newline_object_opens_and_its_crc_covers_exactly_the_lines_before_it() {
        let bytes = sample();
        let s = Sealed::open("obj", &bytes, &KIND).unwrap();
        assert_eq!(s.hex(1, "key").unwrap(), 0x2a);
        // Every byte before the checksum line is covered, and none after.
        let text = String::from_utf8(bytes.clone()).unwrap();
        let crc_at = text.rfind("crc32c").unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let r = Sealed::open("obj", &b, &KIND);
            if i < crc_at {
                assert!(r.is_err(), "a change at byte {i} of the body is caught");
            }
        }
    }

    #[test]
    fn a_crlf_object_is_refused_naming_the_first_crlf_line() {
        // Converted whole: the stored CRC covers the `\n` form.
        let crlf = String::from_utf8(sample()).unwrap().replace('\n', "\r\n");
        let err = refused(crlf.as_bytes());
        let (place, reason) = corrupt_at(err);
        assert_eq!(place, Place::Object(0));
        assert!(reason.starts_with("line 1: ends in `\\r\\n`"), "{reason}");

        // Resealed over its own `\r\n` body: still not the format.
        let mut resealed = b"keel-test 1\r\nkey 2a\r\n".to_vec();
        let crc = crc32c(&resealed);
        resealed.extend_from_slice(format!("crc32c {crc:08x}\r\n").as_bytes());
        let (place, reason) = corrupt_at(refused(&resealed));
        assert_eq!(place, Place::Object(0));
        assert!(reason.starts_with("line 1: ends in `\\r\\n`"), "{reason}");
    }

    #[test]
    fn a_crlf_checksum_line_is_refused_as_such_not_as_a_checksum_mismatch() {
        let mut bytes = sample();
        bytes.pop();
        bytes.extend_from_slice(b"\r\n");
        let err = refused(&bytes);
        let text = String::from_utf8(bytes).unwrap();
        let crc_at = text.rfind("crc32c").unwrap() as u64;
        let (place, reason) = corrupt_at(err);
        assert_eq!(place, Place::Object(crc_at), "the checksum line's offset");
        assert!(reason.starts_with("line 3: ends in `\\r\\n`"), "{reason}");
        assert!(reason.contains("test object"), "{reason}");
    }

    #[test]
    fn an_object_without_its_final_newline_is_refused_as_cut_short() {
        let mut bytes = sample();
        bytes.pop();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let crc_at = text.rfind("crc32c").unwrap() as u64;
        let (place, reason) = corrupt_at(refused(&bytes));
        assert_eq!(place, Place::Object(crc_at));
        assert!(
            reason.starts_with("line 3: no `\\n` at the end"),
            "{reason}"
        );

        for bytes in [&b""[..], b"keel-test 1"] {
            let (place, reason) = corrupt_at(refused(bytes));
            assert_eq!(place, Place::Object(0));
            assert!(
                reason.starts_with("line 1: no `\\n` at the end"),
                "{reason}"
            );
        }
    }

    #[test]
    fn a_field_error_names_its_line_and_offset() {
        let bytes = seal("keel-test 1\nkey zz\n".to_string());
        let s = Sealed::open("obj", &bytes, &KIND).unwrap();
        let (place, reason) = corrupt_at(s.hex(1, "key").unwrap_err());
        assert_eq!(place, Place::Object("keel-test 1\n".len() as u64));
        assert_eq!(reason, "line 2: malformed key");
    }
}
