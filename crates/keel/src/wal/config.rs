//! WAL configuration: segment size, flush policy, recovery strictness.

use std::path::PathBuf;

use crate::wal::WalError;
use crate::wal::record::MAX_RECORD_SIZE;
use crate::wal::segment::{MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, SEGMENT_HEADER_SIZE};

/// When `commit` returns relative to the commit record's flush (invariant 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitMode {
    /// `commit` returns once its record is on stable storage (the default).
    /// One flush serves every committer waiting at the time (group commit).
    Sync,
    /// `commit` returns at once; a background flush makes the record durable
    /// within `max_delay_us`. A crash can lose commits acknowledged in the
    /// last `max_delay_us`, never corrupt the database. Only for users who
    /// ask for it.
    Async {
        /// Longest a commit may stay unflushed, in microseconds.
        max_delay_us: u64,
    },
}

/// How strictly the reader treats invalid bytes (invariant 10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// The default after a crash: invalid bytes at the end of the log are a
    /// torn tail and are cut off, as long as no valid record follows further
    /// than one unsynced write batch away. A valid record beyond that means
    /// the log is corrupt in the middle: an error naming the LSN.
    #[default]
    TolerateTornTail,
    /// The log must end cleanly (zeroes or a segment end): any invalid record
    /// is an error. For checking a log after a clean shutdown.
    AbsoluteConsistency,
    /// Stop at the first invalid record whatever follows, and report the cut:
    /// for salvaging what precedes a corruption, knowingly losing the rest.
    SalvageToFirstError,
}

/// What happens to segments no longer needed for recovery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RetentionPolicy {
    /// Keep them as spares and rename them to future segment numbers when
    /// the log needs new ones (no file creation, no zero-fill), as many as
    /// [`WalConfig::min_wal_size_bytes`] and the last checkpoint cycle ask
    /// for; delete the rest.
    #[default]
    Recycle,
    /// Delete them.
    Delete,
    /// Copy them, zstd-compressed, into this directory, then delete them.
    Archive(PathBuf),
}

/// WAL configuration.
#[derive(Clone, Debug)]
pub struct WalConfig {
    /// Size of each segment file, in bytes (64 KiB – 1 GiB, a multiple of
    /// 4096).
    pub segment_size_bytes: u32,
    /// When `commit` returns.
    pub commit: CommitMode,
    /// Also flush every this many microseconds when there is unflushed log.
    pub flush_interval_us: Option<u64>,
    /// Also flush when this many bytes are unflushed: the log's
    /// background thread then writes and syncs them (in batches of
    /// `max_batch_bytes`) while appenders go on. The default, 1 MiB (one
    /// batch), lets a large transaction's log reach the disk while it is
    /// still running, on another core, so that its commit waits only for
    /// the last batch or two instead of writing all of it; the records
    /// written free their memory for the next ones. Small commits never
    /// reach it: each commit's flush writes everything before it. `None`
    /// leaves all writing to commits, page writes and a full buffer.
    pub flush_size_bytes: Option<u64>,
    /// Most bytes one flush writes before syncing (the unsynced batch bound
    /// recorded in each segment header). Larger batches amortize a sync over
    /// more commits; smaller ones bound how much a torn tail can hold.
    pub max_batch_bytes: u32,
    /// Most appended but unflushed bytes before appenders wait for a flush
    /// (memory bound of the log buffer).
    pub buffer_capacity_bytes: usize,
    /// Write segments with O_DIRECT where the file system supports it
    /// (the default): a batch goes from the log's buffer to the device
    /// with no copy into the page cache, and the durable write that makes
    /// it durable has no dirty pages to write back first. Where O_DIRECT is refused (a file system
    /// without it), the log is written through the page cache instead and
    /// [`Wal::direct_io`](crate::wal::Wal::direct_io) says so. `false`
    /// always writes through the page cache.
    pub direct_io: bool,
    /// Times a committer waiting for another's flush yields its core,
    /// checking whether its record is durable, before it sleeps. Alone on
    /// its core a yield returns at once, so this is a few microseconds of
    /// spinning; with more committers than cores each yield runs the
    /// others, and a committer whose record became durable meanwhile goes
    /// on without a sleep and a wake-up (see BENCHMARKS.md). Also the most
    /// times a flush leader yields before its next flush, for the
    /// committers its last flush woke to come back and share it. 0 sleeps
    /// at once and never waits.
    pub commit_spin_yields: u32,
    /// What to do with segments wholly before the last checkpoint.
    pub retention: RetentionPolicy,
    /// Under [`RetentionPolicy::Recycle`], retired segments are kept as
    /// spares up to this many bytes of log, or up to as many segments as a
    /// checkpoint cycle enters (estimated from the recent cycles) when that
    /// is more: PostgreSQL's `min_wal_size` and its estimate of the log the
    /// next cycle needs. So a steady load creates no segment (and writes no
    /// zero-fill) once its first cycle is done, and the spares take no
    /// more room than the longest recent cycle's log did.
    pub min_wal_size_bytes: u64,
    /// How opening the log treats invalid bytes where it ends.
    pub recovery_mode: RecoveryMode,
    /// Open with the log held from its oldest segment
    /// ([`Wal::hold_from`](super::Wal::hold_from)): no retirement, not
    /// even the checkpoint that ends recovery, removes or recycles a
    /// segment until the hold is moved (`Database::hold_log_from`). For an
    /// archiver, which must see every record before it leaves the
    /// directory, and which moves the hold as it ships the log.
    /// `Database::open` holds the log whatever this says when the data
    /// directory has an `archive-status` file (an archiver publishes it;
    /// `keel::datadir::layout::ARCHIVE_STATUS_FILE`); an archiver started
    /// with its status file turned off needs this set on every open.
    pub hold_at_open: bool,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_size_bytes: 16 << 20,
            commit: CommitMode::Sync,
            flush_interval_us: None,
            flush_size_bytes: Some(1 << 20),
            max_batch_bytes: 1 << 20,
            buffer_capacity_bytes: 32 << 20,
            direct_io: true,
            commit_spin_yields: 16,
            retention: RetentionPolicy::Recycle,
            min_wal_size_bytes: 80 << 20,
            recovery_mode: RecoveryMode::TolerateTornTail,
            hold_at_open: false,
        }
    }
}

impl WalConfig {
    /// Checks the values, naming the first bad one.
    pub fn validate(&self) -> Result<(), WalError> {
        let bad = |m: String| Err(WalError::Config(m));
        let s = self.segment_size_bytes;
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&s) || !s.is_multiple_of(4096) {
            return bad(format!(
                "segment_size_bytes {s} must be a multiple of 4096 in {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}"
            ));
        }
        let data = s as usize - SEGMENT_HEADER_SIZE;
        // Invariant 15: every record fits in one segment's data area.
        if MAX_RECORD_SIZE > data {
            return bad(format!(
                "segment_size_bytes {s} leaves {data} bytes for records, less than the \
                 largest record ({MAX_RECORD_SIZE} bytes)"
            ));
        }
        if self.max_batch_bytes < 4096 || self.max_batch_bytes as usize > data {
            return bad(format!(
                "max_batch_bytes {} must be at least 4096 and at most a segment's data ({data})",
                self.max_batch_bytes
            ));
        }
        if self.buffer_capacity_bytes < self.max_batch_bytes as usize {
            return bad("buffer_capacity_bytes must be at least max_batch_bytes".into());
        }
        if let CommitMode::Async { max_delay_us: 0 } = self.commit {
            return bad("async commit needs max_delay_us > 0".into());
        }
        if self.flush_interval_us == Some(0) || self.flush_size_bytes == Some(0) {
            return bad("flush_interval_us and flush_size_bytes must be positive".into());
        }
        Ok(())
    }

    /// The background flush period, if any policy needs one.
    pub(crate) fn background_period_us(&self) -> Option<u64> {
        let from_async = match self.commit {
            CommitMode::Async { max_delay_us } => Some(max_delay_us),
            CommitMode::Sync => None,
        };
        match (from_async, self.flush_interval_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        WalConfig::default().validate().unwrap();
        let c = WalConfig {
            segment_size_bytes: 1000,
            ..WalConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("segment_size_bytes 1000")
        );
        let c = WalConfig {
            commit: CommitMode::Async { max_delay_us: 0 },
            ..WalConfig::default()
        };
        assert!(c.validate().is_err());
        let c = WalConfig {
            commit: CommitMode::Async { max_delay_us: 500 },
            flush_interval_us: Some(200),
            ..WalConfig::default()
        };
        assert_eq!(c.background_period_us(), Some(200));
    }
}
