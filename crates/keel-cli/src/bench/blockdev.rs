//! Bytes moved at the block device that holds the bench's data: the
//! kernel's own per-device counters, so every write an engine causes is
//! counted once it reaches the device (its log, its data files, the file
//! system's journal), whichever process issued it.
//!
//! The device is found from the data directory's `st_dev` (major:minor) →
//! `/sys/dev/block/MAJOR:MINOR`; a partition is replaced by its parent disk,
//! whose counters are `/sys/block/<disk>/stat`. Of that file's fields (see
//! the kernel's Documentation/block/stat.rst) the bench reads field 3,
//! sectors read, and field 7, sectors written; a sector there is always 512
//! bytes, whatever the device's own sector size.
//!
//! The counters are device-wide: anything else writing to the same disk
//! meanwhile counts too, so the suites measure with only the measured
//! engine running. A directory on a file system without a block device
//! (overlay, tmpfs, btrfs's anonymous devices) has no counters: [`find`]
//! says why, and the suites fall back to the processes' `/proc/PID/io`,
//! labelled as such.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A whole disk and its counters file.
#[derive(Clone, Debug)]
pub struct BlockDev {
    /// The disk's kernel name, e.g. `vda`, `nvme0n1`, `dm-0`.
    pub name: String,
    /// Its `stat` file.
    stat: PathBuf,
}

/// Bytes a device has transferred since boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    /// Bytes read (sectors read × 512).
    pub read_bytes: u64,
    /// Bytes written (sectors written × 512).
    pub written_bytes: u64,
}

/// Bytes per sector in `/sys/block/*/stat`, fixed by the kernel.
const STAT_SECTOR_BYTES: u64 = 512;

/// Splits a `st_dev` into (major, minor), in Linux's encoding (glibc's
/// `gnu_dev_major`/`gnu_dev_minor`): the minor's low 8 bits in bits 0..8
/// and its high bits in 20..44; the major's low 12 bits in 8..20 and its
/// high bits in 44..64.
pub fn major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev & 0x0000_0000_000f_ff00) >> 8) | ((dev & 0xffff_f000_0000_0000) >> 32);
    let minor = (dev & 0x0000_0000_0000_00ff) | ((dev & 0x0000_0fff_fff0_0000) >> 12);
    (major, minor)
}

/// The counters in the text of a `stat` file: fields 3 and 7 (1-based).
pub fn parse_stat(text: &str) -> Option<Counters> {
    let f: Vec<u64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if f.len() < 7 {
        return None;
    }
    Some(Counters {
        read_bytes: f[2].checked_mul(STAT_SECTOR_BYTES)?,
        written_bytes: f[6].checked_mul(STAT_SECTOR_BYTES)?,
    })
}

/// The disk holding `path`, or one line saying why there is none.
pub fn find(path: &Path) -> Result<BlockDev, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    let (major, minor) = major_minor(meta.dev());
    if major == 0 {
        return Err(format!(
            "{} is on a file system without a block device (device {major}:{minor})",
            path.display()
        ));
    }
    let link = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let mut dir = std::fs::canonicalize(&link)
        .map_err(|e| format!("device {major}:{minor}: {}: {e}", link.display()))?;
    if dir.join("partition").exists() {
        dir = dir
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| format!("partition {} has no parent disk", dir.display()))?;
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("device {major}:{minor}: no name in {}", dir.display()))?;
    let dev = BlockDev {
        stat: dir.join("stat"),
        name,
    };
    dev.counters()?;
    Ok(dev)
}

impl BlockDev {
    /// The counters now.
    pub fn counters(&self) -> Result<Counters, String> {
        let text = std::fs::read_to_string(&self.stat)
            .map_err(|e| format!("cannot read {}: {e}", self.stat.display()))?;
        parse_stat(&text)
            .ok_or_else(|| format!("{} is not a block device stat file", self.stat.display()))
    }

    /// How the figures are taken, for the printed settings.
    pub fn describe(&self) -> String {
        format!(
            "block device {} ({}: sectors read/written × 512, device-wide)",
            self.name,
            self.stat.display()
        )
    }
}

impl Counters {
    /// What moved from `self` (taken before) to `after`; a counter that
    /// went backwards (a device reset) gives 0.
    pub fn delta(self, after: Counters) -> Counters {
        Counters {
            read_bytes: after.read_bytes.saturating_sub(self.read_bytes),
            written_bytes: after.written_bytes.saturating_sub(self.written_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dev_numbers_split_like_glibc() {
        // 254:0 (a virtio disk), 259:3 (an NVMe partition), and a minor
        // above 255 (sd's 8:272 is sdr).
        assert_eq!(major_minor(0xfe00), (254, 0));
        assert_eq!(major_minor(0x10303), (259, 3));
        assert_eq!(major_minor(0x10_0810), (8, 272));
        // A major above 4095 and a minor above 2^20 use the high bits.
        let dev = (0x1234u64 & 0xfff) << 8
            | (0x1234u64 & !0xfff) << 32
            | (0x123456u64 & 0xff)
            | (0x123456u64 & !0xff) << 12;
        assert_eq!(major_minor(dev), (0x1234, 0x123456));
    }

    #[test]
    fn stat_fields_three_and_seven_in_bytes() {
        let line = " 1578266    51498 93597898  2800248  8568451   496212 914237960  5171818 \
                    11   991240  8437791   492548      112 549819840   136252  2951942   329472\n";
        let c = parse_stat(line).unwrap();
        assert_eq!(c.read_bytes, 93_597_898 * 512);
        assert_eq!(c.written_bytes, 914_237_960 * 512);
        // Old kernels print 11 fields; fewer than 7 or a non-number is refused.
        assert!(parse_stat("1 2 3 4 5 6 7 8 9 10 11").is_some());
        assert!(parse_stat("1 2 3 4 5 6").is_none());
        assert!(parse_stat("1 2 x 4 5 6 7").is_none());
        assert!(parse_stat(&format!("0 0 {} 0 0 0 0", u64::MAX)).is_none());
    }

    #[test]
    fn deltas_never_go_negative() {
        let a = Counters {
            read_bytes: 1000,
            written_bytes: 5000,
        };
        let b = Counters {
            read_bytes: 1512,
            written_bytes: 4000,
        };
        assert_eq!(
            a.delta(b),
            Counters {
                read_bytes: 512,
                written_bytes: 0
            }
        );
    }

    #[test]
    fn finds_a_disk_or_says_why() {
        let dir = tempfile::tempdir().unwrap();
        match find(dir.path()) {
            Ok(dev) => {
                assert!(!dev.name.is_empty());
                let c = dev.counters().unwrap();
                assert!(c.written_bytes > 0 || c.read_bytes > 0);
            }
            Err(why) => assert!(!why.is_empty()),
        }
        assert!(
            find(Path::new("/no/such/path"))
                .unwrap_err()
                .contains("cannot stat")
        );
    }
}
