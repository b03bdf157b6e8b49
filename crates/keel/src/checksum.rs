//! CRC32C (Castagnoli), the checksum of every page and WAL record.
//!
//! Initial software-only implementation; the hardware path and the
//! `KEEL_CRC32C` knob are added on top of this API.

use crc::{Crc, CRC_32_ISCSI, Table};

static SOFTWARE: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// CRC32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    SOFTWARE.checksum(data)
}

/// Extends `crc` (the CRC32C of some prefix) with `data`; equal to the
/// one-shot CRC of the concatenation.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    let mut digest = SOFTWARE.digest_with_initial((crc ^ 0xFFFF_FFFF).reverse_bits());
    digest.update(data);
    digest.finalize()
}
