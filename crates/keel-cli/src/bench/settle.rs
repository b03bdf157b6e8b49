//! Letting one engine's background work settle before the next engine's
//! window, so no engine's timed window pays for another's writeback.
//!
//! After each window the suite checkpoints the engine that just ran (its
//! data files synced, its log trimmed), then waits until the block device
//! under the bench directory is quiet: the in-flight count of
//! `/sys/dev/block/MAJ:MIN/stat` (the ninth field, I/Os issued to the device
//! and not yet completed) reads 0 in [`QUIET_POLLS`] polls in a row,
//! [`POLL`] apart, for at most [`MAX_WAIT`]. Where the directory is on no
//! block device with such a file (tmpfs, overlay), it waits a fixed
//! [`FIXED`] instead. Either way is printed at the start of the suite.
//!
//! The device's counters include other processes' I/O: on a shared machine
//! the wait may end at [`MAX_WAIT`] with I/O still in flight; the suite
//! counts those and prints how many.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Time between polls of the device's in-flight count.
pub const POLL: Duration = Duration::from_millis(10);
/// Polls in a row that must find nothing in flight.
pub const QUIET_POLLS: u32 = 3;
/// The longest wait for a quiet device.
pub const MAX_WAIT: Duration = Duration::from_secs(2);
/// The wait where no device counters are found.
pub const FIXED: Duration = Duration::from_millis(250);

/// How the suite waits for the disk after a window.
pub struct Settle {
    /// The device's `stat` file, if found.
    stat: Option<PathBuf>,
    /// The device's name (`vda`, `nvme0n1p2`), if found.
    name: String,
}

/// (major, minor) of a Linux `dev_t` (glibc's encoding).
pub fn major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    (major, minor)
}

/// The in-flight count in the text of a block device's `stat` file.
pub fn in_flight(stat: &str) -> Option<u64> {
    stat.split_whitespace().nth(8)?.parse().ok()
}

impl Settle {
    /// Finds the block device holding `dir`.
    pub fn for_dir(dir: &Path) -> Settle {
        let dev = std::fs::metadata(dir).ok().map(|m| major_minor(m.dev()));
        let sys =
            dev.map(|(major, minor)| PathBuf::from(format!("/sys/dev/block/{major}:{minor}")));
        let stat = sys.as_ref().map(|d| d.join("stat")).filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            dev.is_some_and(|(major, _)| major != 0) && in_flight(&text).is_some()
        });
        let name = sys
            .and_then(|d| std::fs::canonicalize(d).ok())
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        Settle { stat, name }
    }

    /// What the wait is, in words.
    pub fn describe(&self) -> String {
        match &self.stat {
            Some(p) => format!(
                "after each window, the engine's checkpoint, then until {} ({}) shows no \
                 I/O in flight in {QUIET_POLLS} polls {} ms apart (at most {} s)",
                p.display(),
                self.name,
                POLL.as_millis(),
                MAX_WAIT.as_secs_f64()
            ),
            None => format!(
                "after each window, the engine's checkpoint, then a fixed {} ms \
                 (no block device counters for the bench directory)",
                FIXED.as_millis()
            ),
        }
    }

    /// Waits for the device to be quiet; false when [`MAX_WAIT`] passed
    /// with I/O still in flight.
    pub fn wait(&self) -> bool {
        let Some(stat) = &self.stat else {
            std::thread::sleep(FIXED);
            return true;
        };
        let start = Instant::now();
        let mut quiet = 0;
        while start.elapsed() < MAX_WAIT {
            let now = std::fs::read_to_string(stat).ok();
            match now.as_deref().and_then(in_flight) {
                Some(0) => quiet += 1,
                Some(_) => quiet = 0,
                None => return true,
            }
            if quiet >= QUIET_POLLS {
                return true;
            }
            std::thread::sleep(POLL);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_and_in_flight_counts() {
        // glibc's makedev(3).
        let makedev = |major: u64, minor: u64| {
            ((major & 0xfff) << 8)
                | ((major & 0xffff_f000) << 32)
                | (minor & 0xff)
                | ((minor & 0xffff_ff00) << 12)
        };
        assert_eq!(major_minor(0x801), (8, 1));
        assert_eq!(major_minor(0x1001_0300), (259, 65536));
        for (major, minor) in [(0, 0), (253, 1), (4099, 65541), (0xf_ffff, 0xffff_ffff)] {
            assert_eq!(major_minor(makedev(major, minor)), (major, minor));
        }
        let stat = "  1114   200  80304   511     7433  5207  402208  10880   \
                    3    10152  11391  0 0 0 0";
        assert_eq!(in_flight(stat), Some(3));
        assert_eq!(in_flight("1 2 3"), None);
        assert_eq!(in_flight("1 2 3 4 5 6 7 8 x 10"), None);
    }
}
