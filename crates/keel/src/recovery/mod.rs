//! Checkpoints and crash recovery (ARIES: analysis, redo, undo).
//!
//! ## Checkpoints ([`checkpoint`])
//!
//! A checkpoint appends a `CheckpointBegin` record and, under the redo
//! gate, makes its LSN the new redo point (so every page changed after it
//! logs a full image first, invariant 5). It then writes every dirty page
//! (`BufferPool::flush_all`, which flushes the log first, invariant 4, and
//! fdatasyncs the files), appends a `CheckpointEnd` record (fixed-size: the
//! redo and undo starts and the sizes of the tables, invariant 15; recovery
//! rebuilds the transaction table from the log), makes the log durable, and
//! only then points the control file at the begin record. A crash anywhere
//! before the control file is replaced leaves the previous checkpoint in
//! charge, whose redo point is older, so nothing is lost.
//!
//! Because the pages dirty at the begin record are all on disk when the
//! checkpoint completes, redo starts at the begin record; undo may need
//! older records of transactions that were running then, so the control
//! file also keeps the first LSN of the oldest of them, and log segments
//! are retired only before the older of the two.
//!
//! ## Recovery (`recover`)
//!
//! One pass over the log from the control file's scan start does analysis
//! and redo together:
//!
//! - **Analysis.** The position of each transaction's records that need
//!   undo is kept on a stack; a CLR pops everything after its `undo_next`
//!   (those records are already undone); commit and abort records end the
//!   transaction. What is left at the end of the log are the *losers*; their
//!   records are read back from the log (one forward scan from the oldest)
//!   when undo starts, so a payload lives only as long as redo needs it.
//! - **Redo** (records at or after the redo start). A page-changing record
//!   is applied when the page's LSN is below the record's, through the same
//!   [`apply`](crate::storage::apply::apply) the running engine uses. A record
//!   that formats a whole page (image, init, overflow write, overflow free)
//!   does not need the old page: a torn or missing page is recreated from
//!   it. Any other record finding a page that fails verification is a
//!   recovery error naming the LSN: the image that should precede it is
//!   missing. Redo never removes a relation file (invariant 13); a
//!   `RelationCreate` makes a missing one (empty: later records format
//!   every page). Records of a relation whose file is gone are skipped, and once
//!   the log is read that must be explained by a committed drop of it (or
//!   an uncommitted create); otherwise recovery fails naming the relation
//!   and the LSN. After undo, drops known committed are completed
//!   ([`ddl`], which states the create and drop protocols).
//! - **Consistency checks.** A `PageCheck` record (consistency-check mode)
//!   is never applied: when its page's LSN equals the record's `of` (redo
//!   left the page exactly as the change at `of` did), the page is compared
//!   with the record's image, ignoring the checksum field and a heap page's
//!   free space (only its header, slot directory and tuples count); a
//!   difference is a recovery error naming the page, the LSN and
//!   the first differing byte. Any other page LSN (the page on disk was
//!   newer, so redo skipped the change) means nothing to compare.
//! - **Read-ahead.** Records are decoded a window at a time (16 Ki records
//!   or 4 MiB of payload); before the window is run, the pages its redo
//!   records will read (inside their file, including pages an image or
//!   init record of the window rebuilds: the disk may already hold them,
//!   and their later records are then skipped) are handed to
//!   `BufferPool::prefetch` in one batch, at most a quarter of the pool.
//!   Prefetch is only a hint: a page that does not load is fetched by its
//!   record as before, and its error reported there. Payloads are decoded
//!   straight from the reader's segment buffer, and freed on the reader's
//!   thread too: redo hands each window back to be refilled. Free space
//!   and "touched" are recorded once per run of records on one page, when
//!   redo lets go of it.
//! - **Undo.** Each loser is rolled back newest first with CLRs and an
//!   abort record, exactly as a running rollback does, so a crash during
//!   recovery and a second recovery never undo anything twice (invariant 8).
//!
//! Recovery then checkpoints, so the next crash starts from here. By
//! default that checkpoint runs in the background once `Database::open` has
//! returned ([`RecoveryCheckpoint`](crate::RecoveryCheckpoint)): until it
//! completes, the control file still names the checkpoint from before the
//! crash and the log from there is kept, so a crash meanwhile recovers from
//! that point again (redo is idempotent, undo compensated). The redo gate
//! stays at that older point too, so no page changed after recovery skips
//! the full image invariant 5 asks for.

pub mod checkpoint;
pub mod control;
pub(crate) mod ddl;
mod redo;

pub use checkpoint::CheckpointReport;
pub use control::Control;
pub(crate) use redo::{PageSpace, Recovered, recover};

use std::path::PathBuf;
use std::time::Duration;

use crate::types::{Lsn, RelationId};

/// What recovery did when the database was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Whether the control file said the database was closed cleanly.
    pub clean_shutdown: bool,
    /// Where the log was read from.
    pub scan_start: Lsn,
    /// Where redo started (the last checkpoint's begin record).
    pub redo_start: Lsn,
    /// The end of the log found.
    pub log_end: Lsn,
    /// Records read.
    pub records_scanned: u64,
    /// Log bytes read.
    pub bytes_scanned: u64,
    /// Page-changing records applied to a page.
    pub records_redone: u64,
    /// Page-changing records skipped because the page already had them.
    pub records_skipped: u64,
    /// Distinct pages redo changed.
    pub pages_redone: u64,
    /// Transactions rolled back (losers).
    pub txns_undone: u64,
    /// Records those rollbacks undid.
    pub records_undone: u64,
    /// Pages compared with a `page-check` image logged at run time
    /// (consistency-check mode, `Config::consistency_check`), all equal.
    pub consistency_checks: u64,
    /// Time from the start of recovery to ready.
    pub duration: Duration,
    /// The sync of the data directory that precedes recovery after an
    /// unclean shutdown (invariant 14); `None` after a clean one.
    pub data_dir_sync: Option<crate::datadir::SyncReport>,
    /// Relation files (`rel/<n>.heap`, `rel/<n>.fsm`) that no catalog row
    /// names and that recovery could not place: neither their create is
    /// known uncommitted nor their drop known committed. They are kept,
    /// never removed on a guess (invariant 13); `keel check` names them.
    pub orphan_files: Vec<PathBuf>,
    /// Relations whose drop the log shows committed and whose files
    /// recovery removed (the crash came between the commit and the
    /// removal, or after it).
    pub drops_completed: Vec<RelationId>,
    /// Relations whose create the log shows uncommitted and whose files
    /// recovery removed.
    pub creates_removed: Vec<RelationId>,
}
