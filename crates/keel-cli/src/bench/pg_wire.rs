//! The two PostgreSQL binary formats the bench speaks itself: rows for
//! `COPY … FROM STDIN (FORMAT binary)` and the `tid` type (a row's ctid).
//!
//! COPY binary (PostgreSQL's documentation, "COPY", "Binary Format"), every
//! integer big-endian:
//!
//! ```text
//! header   11 B  signature  "PGCOPY\n\xff\r\n\0"
//!           4 B  flags      0 (no OIDs)
//!           4 B  extension  0 (no header extension)
//! tuple     2 B  field count (2 here)
//!           per field: 4 B length (-1 = NULL), then that many bytes:
//!             bigint  8 B, two's complement
//!             bytea   the bytes as they are
//! trailer   2 B  -1
//! ```
//!
//! A `tid` in binary is 6 bytes: the block number (4 B) and the line
//! pointer's offset within the block (2 B); its text form is `(block,offset)`.

use std::error::Error;

use postgres::types::{FromSql, Type};

/// The signature, flags and header extension length.
pub const COPY_HEADER: [u8; 19] = *b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The end of the tuples.
pub const COPY_TRAILER: [u8; 2] = (-1i16).to_be_bytes();

/// Appends one `(id bigint, payload bytea)` tuple to `out`.
pub fn copy_row(out: &mut Vec<u8>, id: i64, payload: &[u8]) -> Result<(), String> {
    let len = i32::try_from(payload.len())
        .map_err(|_| format!("a payload of {} bytes does not fit COPY", payload.len()))?;
    out.extend_from_slice(&2i16.to_be_bytes());
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// A whole COPY stream of rows `first..first + rows`, all with `payload`.
pub fn copy_stream(first: i64, rows: i64, payload: &[u8]) -> Result<Vec<u8>, String> {
    let per_row = 2 + 4 + 8 + 4 + payload.len();
    let mut out = Vec::with_capacity(COPY_HEADER.len() + per_row * rows.max(0) as usize + 2);
    out.extend_from_slice(&COPY_HEADER);
    for id in first..first + rows {
        copy_row(&mut out, id, payload)?;
    }
    out.extend_from_slice(&COPY_TRAILER);
    Ok(out)
}

/// A row's physical address in a PostgreSQL table (its `ctid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tid {
    /// The block (page) number.
    pub block: u32,
    /// The line pointer within the block (1-based).
    pub offset: u16,
}

impl Tid {
    /// The text form, `(block,offset)`, as `tid`'s input function reads it.
    pub fn text(self) -> String {
        format!("({},{})", self.block, self.offset)
    }

    /// Decodes the 6-byte binary form.
    pub fn decode(raw: &[u8]) -> Result<Tid, String> {
        let b: [u8; 6] = raw
            .try_into()
            .map_err(|_| format!("a tid is 6 bytes, not {}", raw.len()))?;
        Ok(Tid {
            block: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            offset: u16::from_be_bytes([b[4], b[5]]),
        })
    }
}

impl<'a> FromSql<'a> for Tid {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Tid, Box<dyn Error + Sync + Send>> {
        Tid::decode(raw).map_err(Into::into)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TID
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_row_byte_by_byte() {
        let mut out = Vec::new();
        copy_row(&mut out, 0x0102_0304_0506_0708, &[0xaa, 0xbb, 0xcc]).unwrap();
        assert_eq!(
            out,
            [
                0, 2, // two fields
                0, 0, 0, 8, // bigint: 8 bytes
                1, 2, 3, 4, 5, 6, 7, 8, // the id, big-endian
                0, 0, 0, 3, // bytea: 3 bytes
                0xaa, 0xbb, 0xcc,
            ]
        );
        let mut neg = Vec::new();
        copy_row(&mut neg, -2, &[]).unwrap();
        assert_eq!(
            &neg[6..14],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
        );
        assert_eq!(&neg[14..], &[0, 0, 0, 0]);
    }

    #[test]
    fn stream_has_header_rows_and_trailer() {
        let s = copy_stream(7, 2, &[1, 2]).unwrap();
        assert_eq!(&s[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&s[11..19], &[0; 8]);
        let row = 2 + 4 + 8 + 4 + 2;
        assert_eq!(s.len(), 19 + 2 * row + 2);
        assert_eq!(&s[19 + 6..19 + 14], &7i64.to_be_bytes());
        assert_eq!(&s[19 + row + 6..19 + row + 14], &8i64.to_be_bytes());
        assert_eq!(&s[s.len() - 2..], &[0xff, 0xff]);
        assert_eq!(copy_stream(0, 0, &[]).unwrap().len(), 21);
    }

    #[test]
    fn tid_binary_and_text() {
        let t = Tid::decode(&[0, 1, 0, 2, 0, 7]).unwrap();
        assert_eq!(
            t,
            Tid {
                block: 65_538,
                offset: 7
            }
        );
        assert_eq!(t.text(), "(65538,7)");
        assert!(Tid::decode(&[0; 5]).is_err());
        assert!(Tid::decode(&[0; 7]).is_err());
        assert!(<Tid as FromSql>::accepts(&Type::TID));
        assert!(!<Tid as FromSql>::accepts(&Type::INT8));
    }
}
