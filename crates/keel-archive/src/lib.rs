//! Keel's WAL archive: the log, shipped continuously to object storage (S3,
//! any S3-compatible server, or a local directory) so that a database's
//! history survives the loss of its machine.
//!
//! The engine crate stays synchronous and knows nothing of object stores.
//! It offers these hooks, and this crate builds on them alone:
//! [`keel::Database::durable_lsn`] (how far the log is durable),
//! [`keel::Database::log_reader`] (its validated records from an LSN),
//! [`keel::Database::hold_log_from`] (no checkpoint retires log at or above
//! the hold), [`keel::Database::backup`] (an online copy of the data files)
//! and [`keel::wal::import`] (a log written from archived records). This
//! crate runs `object_store` on a private tokio runtime and offers only
//! blocking functions.
//!
//! - [`chunk`]: the archive object format (header, compressed records)
//!   and its hostile-input decoder.
//! - [`store`]: object naming, create-only uploads, and the covering set
//!   a listing resolves (chunks and compacted objects).
//! - [`cleanup`]: removing backup folders a killed backup left without a
//!   manifest, and retention (keeping the N newest backups and the log
//!   they need).
//! - [`compact`]: a completed segment's chunks replaced by one object.
//! - [`read`]: reading listed chunks that compaction may have deleted
//!   since the listing.
//! - [`archiver`]: the background thread that follows the durable log.
//! - [`backup`](mod@backup): base backups (files and a manifest written last).
//! - [`backup_check`]: whether a backup in the archive is usable (its files
//!   and its log), and choosing the one a restore starts from.
//! - [`restore`](mod@restore): restoring a backup and the archive's log to
//!   the end or to a recovery target (time, LSN, transaction), and the
//!   timelines (history objects) such restores start.
//! - [`stream`]: backup files uploaded in parts and read back with
//!   their CRC32C, in bounded memory.
//! - [`verify`]: reading a timeline back, chunk by chunk, checking
//!   continuity.
//! - [`standby`](mod@standby): a warm standby that follows the archive
//!   (redo only, restartpoints) and its promotion to a primary.
//! - [`fence`]: the object a promotion writes so the old primary's
//!   archiver stops.
//! - [`status`]: the archiver's status file in the data directory (what
//!   `keel stats` reports; its presence holds the log at open).
//! - [`local`]: a restore's and a standby's writes to the data directory,
//!   through the engine's I/O layer.
//! - `sealed`: small text objects sealed by a checksum line (timeline
//!   histories, fences).
//! - [`fault`]: an `ObjectStore` wrapper that injects failures, for tests.
//! - `fuzz_targets` (feature `fuzz-targets`): the archive decoders' fuzz
//!   target bodies (chunks, manifests, histories, fences, status files,
//!   standby markers, timeline files), for `fuzz/` and the corpus replay
//!   tests.
//! - [`config`]: targets and credentials (never from arguments, never
//!   printed); [`error`]: the one error type, naming the object.
//!
//! Layout and formats (chunks, backups, manifests, timeline histories) are
//! in docs/storage.md, "WAL archive".

pub mod archiver;
pub mod backup;
pub mod backup_check;
pub mod chunk;
pub mod cleanup;
pub mod compact;
pub mod config;
pub mod error;
pub mod fault;
pub mod fence;
#[cfg(feature = "fuzz-targets")]
pub mod fuzz_targets;
pub mod local;
pub mod read;
pub mod restore;
mod sealed;
pub mod standby;
pub mod status;
pub mod store;
pub mod stream;
pub mod verify;

pub use archiver::{ArchivePolicy, Archiver, ArchiverOptions, ArchiverStatus};
pub use backup::{BackupEntry, BackupFolder, BackupOptions, Manifest, backup};
pub use compact::{CompactReport, compact_timeline};
pub use config::{ArchiveTarget, Credentials, S3Config, Secret, StoreConfig};
pub use error::{ArchiveError, Place, Result};
pub use restore::{History, RestoreReport, RestoreTarget, restore, restore_with_io};
pub use status::{ArchiveState, PublishedStatus, read_status};
pub use store::{ChunkObject, Listing, Put, Remote};
pub use verify::{ArchiveReader, CommitTimes, TimelineReport, TimelineSummary};
