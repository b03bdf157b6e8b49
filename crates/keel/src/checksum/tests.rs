//! Unit tests of the checksum module: known values, hardware == software ==
//! a bit-at-a-time reference, incremental == one-shot, mode selection.
//!
//! Only `mode_switching` changes the process-wide mode; every other test calls
//! [`hardware`] and [`software`] directly or relies on invariant 2 (any mode
//! gives the same value), so tests may run in parallel.

use std::ffi::OsStr;

use proptest::prelude::*;

use super::*;

/// CRC32C one bit at a time, written from the definition: reflected
/// polynomial 0x82F63B78, register preset to !crc, result inverted. Shares no
/// table or code with either implementation under test.
fn reference_append(crc: u32, data: &[u8]) -> u32 {
    let mut register = !crc;
    for &byte in data {
        register ^= u32::from(byte);
        for _ in 0..8 {
            let lsb = register & 1;
            register >>= 1;
            if lsb != 0 {
                register ^= 0x82F6_3B78;
            }
        }
    }
    !register
}

fn reference(data: &[u8]) -> u32 {
    reference_append(0, data)
}

/// Deterministic bytes (SplitMix64), so failures reproduce.
fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

const CHECK_INPUT: &[u8] = b"123456789";
const CHECK_VALUE: u32 = 0xE306_9283;

#[test]
fn check_value_on_every_path() {
    assert_eq!(reference(CHECK_INPUT), CHECK_VALUE);
    assert_eq!(software::crc32c(CHECK_INPUT), CHECK_VALUE);
    assert_eq!(hardware::crc32c(CHECK_INPUT), CHECK_VALUE);
    assert_eq!(crc32c(CHECK_INPUT), CHECK_VALUE);
    assert_eq!(software::crc32c_append(0, CHECK_INPUT), CHECK_VALUE);
    assert_eq!(hardware::crc32c_append(0, CHECK_INPUT), CHECK_VALUE);
    assert_eq!(crc32c_append(0, CHECK_INPUT), CHECK_VALUE);
}

/// RFC 3720 (iSCSI) appendix B.4 test vectors. A table built from the
/// unreflected polynomial, or with the wrong init/xorout, fails these.
#[test]
fn rfc3720_vectors_on_every_path() {
    let ascending: Vec<u8> = (0..32).collect();
    let descending: Vec<u8> = (0..32).rev().collect();
    let vectors: [(&[u8], u32); 5] = [
        (&[0x00; 32], 0x8A91_36AA),
        (&[0xFF; 32], 0x62A8_AB43),
        (&ascending, 0x46DD_794E),
        (&descending, 0x113F_DB5C),
        (b"", 0),
    ];
    for (input, expected) in vectors {
        assert_eq!(reference(input), expected, "reference {input:02x?}");
        assert_eq!(software::crc32c(input), expected, "software {input:02x?}");
        assert_eq!(hardware::crc32c(input), expected, "hardware {input:02x?}");
        assert_eq!(crc32c(input), expected, "active {input:02x?}");
    }
}

#[test]
fn hardware_equals_software_for_every_length_up_to_4096() {
    let data = pseudo_random_bytes(4096, 1);
    for len in 0..=data.len() {
        let input = &data[..len];
        let sw = software::crc32c(input);
        assert_eq!(hardware::crc32c(input), sw, "length {len}");
        // The reference is slow; every length up to 512, then a sample.
        if len <= 512 || len % 61 == 0 {
            assert_eq!(reference(input), sw, "reference, length {len}");
        }
    }
}

/// Each crate behind [`hardware`] on its own, on both sides of the length
/// split, so that moving `SMALL_INPUT_MAX_BYTES` cannot leave a crate untested.
#[test]
fn each_hardware_crate_equals_software() {
    let data = pseudo_random_bytes(1024, 11);
    for len in 0..=data.len() {
        let input = &data[..len];
        let sw = software::crc32c(input);
        assert_eq!(crc32c::crc32c(input), sw, "crc32c crate, length {len}");
        assert_eq!(crc_fast::crc32_iscsi(input), sw, "crc-fast, length {len}");
        assert_eq!(
            crc32c::crc32c_append(0x5EED, input),
            software::crc32c_append(0x5EED, input)
        );
    }
}

#[test]
fn hardware_equals_software_on_unaligned_slices() {
    let buffer = pseudo_random_bytes(8192 + 16, 2);
    for offset in 1..16 {
        for len in (0..=300).chain([511, 512, 513, 1000, 4095, 4096, 4097, 8192]) {
            let input = &buffer[offset..offset + len];
            let sw = software::crc32c(input);
            assert_eq!(hardware::crc32c(input), sw, "offset {offset}, length {len}");
            assert_eq!(
                reference(input),
                sw,
                "reference, offset {offset}, length {len}"
            );
        }
    }
}

#[test]
fn append_at_every_split_point_equals_one_shot() {
    for (seed, len) in [(3, 0), (4, 1), (5, 37), (6, 256), (7, 1031), (8, 8192)] {
        let data = pseudo_random_bytes(len, seed);
        let whole = reference(&data);
        for split in 0..=len {
            let (head, tail) = data.split_at(split);
            let hw = hardware::crc32c_append(hardware::crc32c(head), tail);
            let sw = software::crc32c_append(software::crc32c(head), tail);
            assert_eq!(hw, whole, "hardware, length {len} split at {split}");
            assert_eq!(sw, whole, "software, length {len} split at {split}");
            assert_eq!(crc32c_append(crc32c(head), tail), whole);
        }
    }
}

#[test]
fn append_in_many_small_pieces_equals_one_shot() {
    let data = pseudo_random_bytes(5000, 9);
    let whole = software::crc32c(&data);
    for piece_len in [1, 3, 8, 13, 64, 255] {
        let (mut hw, mut sw) = (0, 0);
        for piece in data.chunks(piece_len) {
            hw = hardware::crc32c_append(hw, piece);
            sw = software::crc32c_append(sw, piece);
        }
        assert_eq!(hw, whole, "hardware, pieces of {piece_len}");
        assert_eq!(sw, whole, "software, pieces of {piece_len}");
    }
}

#[test]
fn appending_nothing_keeps_the_crc() {
    for crc in [0, 1, CHECK_VALUE, u32::MAX] {
        assert_eq!(hardware::crc32c_append(crc, b""), crc);
        assert_eq!(software::crc32c_append(crc, b""), crc);
    }
}

proptest! {
    #[test]
    fn paths_agree_and_append_composes(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        split in any::<prop::sample::Index>(),
    ) {
        let whole = software::crc32c(&data);
        prop_assert_eq!(hardware::crc32c(&data), whole);
        prop_assert_eq!(reference(&data), whole);
        let (head, tail) = data.split_at(split.index(data.len() + 1));
        prop_assert_eq!(hardware::crc32c_append(hardware::crc32c(head), tail), whole);
        prop_assert_eq!(software::crc32c_append(software::crc32c(head), tail), whole);
    }
}

/// The only test that changes the process-wide mode (see the module doc).
#[test]
fn mode_switching() {
    let data = pseudo_random_bytes(1000, 10);
    let expected = reference(&data);

    assert_eq!(set_mode(Crc32cMode::Software), Ok(Crc32cImpl::Software));
    assert_eq!(active_impl(), Crc32cImpl::Software);
    assert_eq!(crc32c(&data), expected);
    assert_eq!(crc32c_append(crc32c(&data[..10]), &data[10..]), expected);

    let hardware_result = set_mode(Crc32cMode::Hardware);
    if hardware::is_available() {
        assert_eq!(hardware_result, Ok(Crc32cImpl::Hardware));
        assert_eq!(active_impl(), Crc32cImpl::Hardware);
    } else {
        assert_eq!(
            hardware_result,
            Err(ChecksumError::HardwareUnavailable {
                required: hardware::REQUIRED_FEATURE
            })
        );
        assert_eq!(active_impl(), Crc32cImpl::Software, "left unchanged");
    }
    assert_eq!(crc32c(&data), expected);

    let auto = set_mode(Crc32cMode::Auto).expect("auto never fails");
    assert_eq!(auto == Crc32cImpl::Hardware, hardware::is_available());
    assert_eq!(active_impl(), auto);
    assert_eq!(crc32c(&data), expected);
}

#[test]
fn resolve_covers_every_mode_with_and_without_hardware() {
    use Crc32cImpl::{Hardware, Software};
    assert_eq!(resolve(Crc32cMode::Auto, true), Ok(Hardware));
    assert_eq!(resolve(Crc32cMode::Auto, false), Ok(Software));
    assert_eq!(resolve(Crc32cMode::Hardware, true), Ok(Hardware));
    assert_eq!(resolve(Crc32cMode::Software, true), Ok(Software));
    assert_eq!(resolve(Crc32cMode::Software, false), Ok(Software));
    let err = resolve(Crc32cMode::Hardware, false).expect_err("no hardware");
    assert!(matches!(err, ChecksumError::HardwareUnavailable { .. }));
    assert_eq!(err.class(), ErrorClass::Usage);
}

#[test]
fn mode_names_parse() {
    for (text, mode) in [
        ("auto", Crc32cMode::Auto),
        ("hardware", Crc32cMode::Hardware),
        ("software", Crc32cMode::Software),
        ("Software", Crc32cMode::Software),
        ("HARDWARE", Crc32cMode::Hardware),
        (" auto\n", Crc32cMode::Auto),
    ] {
        assert_eq!(text.parse::<Crc32cMode>(), Ok(mode), "{text:?}");
    }
    for mode in [Crc32cMode::Auto, Crc32cMode::Hardware, Crc32cMode::Software] {
        assert_eq!(mode.to_string().parse::<Crc32cMode>(), Ok(mode));
    }
    for bad in ["", " ", "sw", "hw", "soft ware", "hardware,software", "0"] {
        assert_eq!(
            bad.parse::<Crc32cMode>(),
            Err(ChecksumError::InvalidMode {
                value: bad.to_owned()
            }),
            "{bad:?}"
        );
    }
}

#[test]
fn env_value_to_mode() {
    assert_eq!(mode_from_env(None), Ok(Crc32cMode::Auto));
    assert_eq!(
        mode_from_env(Some(OsStr::new("software"))),
        Ok(Crc32cMode::Software)
    );
    assert_eq!(
        mode_from_env(Some(OsStr::new("hardware"))),
        Ok(Crc32cMode::Hardware)
    );
    assert_eq!(
        mode_from_env(Some(OsStr::new("auto"))),
        Ok(Crc32cMode::Auto)
    );
    let err = mode_from_env(Some(OsStr::new("fast"))).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "invalid CRC32C mode \"fast\": expected auto, hardware or software"
    );
}

#[cfg(unix)]
#[test]
fn env_value_that_is_not_unicode_is_invalid() {
    use std::os::unix::ffi::OsStrExt;
    let value = OsStr::from_bytes(b"soft\xFFware");
    assert!(matches!(
        mode_from_env(Some(value)),
        Err(ChecksumError::InvalidMode { .. })
    ));
}

#[test]
fn impl_names() {
    assert_eq!(Crc32cImpl::Hardware.to_string(), "hardware");
    assert_eq!(Crc32cImpl::Software.as_str(), "software");
    assert!(Crc32cImpl::Software.describe().starts_with("software"));
    assert!(Crc32cImpl::Hardware.describe().starts_with("hardware"));
}

/// This machine (and CI, which runs on the same kind) has SSE4.2; if the
/// detection silently broke, every "hardware == software" test above would
/// still pass while Keel ran the slow path.
#[cfg(target_arch = "x86_64")]
#[test]
fn detection_agrees_with_std() {
    assert_eq!(
        hardware::is_available(),
        std::arch::is_x86_feature_detected!("sse4.2")
    );
}
