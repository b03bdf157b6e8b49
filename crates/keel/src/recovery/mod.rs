//! Checkpoints and crash recovery (ARIES: analysis, redo, undo).
//!
//! Files and what each owns:
//!
//! - [`checkpoint`]: fuzzy checkpoints and the free space map files they
//!   write; [`control`]: the control file, where recovery starts;
//! - this file: `recover`, which runs the passes below in order, and the
//!   [`RecoveryReport`];
//! - `analysis.rs`: the analysis pass (transaction table, undo stacks);
//! - `redo.rs`: the redo pass, with its consistency checks;
//! - `readahead.rs`: reading the log a window ahead of redo, on a thread of
//!   its own or inline, and prefetching the window's pages;
//! - `undo.rs`: the undo pass (losers read back from the log, rolled back
//!   with CLRs);
//! - `ddl.rs`: what recovery does about relation files (the create and drop
//!   protocols). Which directories `Database::open` adopts is
//!   [`crate::datadir::layout`]'s.
//!
//! ## Checkpoints ([`checkpoint`])
//!
//! A checkpoint appends a `CheckpointBegin` record and, under the redo
//! gate, makes its LSN the new redo point (so every page changed after it
//! keeps its image first, invariant 5, `storage::images`). It then writes every dirty page
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
//! ## Recovery (`recover`, this file)
//!
//! One pass over the log from the control file's scan start does analysis
//! and redo together, record by record; undo follows once the log is read.
//! Each pass has a file of its own:
//!
//! - **Analysis** (`analysis.rs`). The position of each transaction's
//!   records that need undo is kept on a stack; a CLR pops everything after
//!   its `undo_next` (those records are already undone); commit and abort
//!   records end the transaction. What is left at the end of the log are
//!   the *losers*; their records are read back from the log (one forward
//!   scan from the oldest) when undo starts, so a payload lives only as
//!   long as redo needs it.
//! - **Redo** (`redo.rs`; records at or after the redo start). A
//!   page-changing record is applied when the page's LSN is below the
//!   record's, through the same [`apply`](crate::storage::apply::apply) the
//!   running engine uses. A record that formats a whole page (image, init,
//!   overflow write, overflow free) does not need the old page: a torn or
//!   missing page is recreated from it. Any other record finding a page
//!   that fails verification (or past its file's end) rebuilds it from its
//!   page image (`storage::images`: an image of an epoch at or after the
//!   redo start); a page with none is a recovery error naming the LSN. Redo
//!   keeps images by the running engine's rule, so a page it writes and a
//!   second crash tears is repaired the same way. Redo never removes a relation file
//!   (invariant 13); a `RelationCreate` makes a missing one (empty: later
//!   records format every page). Records of a relation whose file is gone
//!   are skipped, and once the log is read that must be explained by a
//!   committed drop of it (or an uncommitted create); otherwise recovery
//!   fails naming the relation and the LSN. After undo, drops known
//!   committed are completed (`ddl.rs`, which states the create and drop
//!   protocols).
//! - **Consistency checks** (in `redo.rs`). A `PageCheck` record
//!   (consistency-check mode) is never applied: when its page's LSN equals
//!   the record's `of` (redo left the page exactly as the change at `of`
//!   did), the page is compared with the record's image by
//!   [`page::compare`](crate::page::compare), which ignores the checksum
//!   field and a heap page's free space (only its header, slot directory
//!   and tuples count); a difference is a recovery error naming the page,
//!   the LSN and the first differing byte. Any other page LSN (the page on
//!   disk was newer, so redo skipped the change) means nothing to compare.
//! - **Read-ahead** (`readahead.rs`). Records are decoded a window at a
//!   time (16 Ki records or 4 MiB of payload), on a reader thread of its
//!   own a window ahead of redo when the I/O backend is not deterministic
//!   ([`AsyncIo::deterministic`](keel_io::AsyncIo::deterministic)) and
//!   the machine has more than one core, else inline. Before the window is
//!   run, the pages its redo records will read (inside their file,
//!   including pages an image or init record of the window rebuilds: the
//!   disk may already hold them, and their later records are then
//!   skipped) are handed to `BufferPool::prefetch` in one batch, at most a
//!   quarter of the pool. Prefetch is only a hint: a page that does not
//!   load is fetched by its record as before, and its error reported
//!   there. Payloads are decoded straight from the reader's segment
//!   buffer, and freed on the reader's thread too: redo hands each window
//!   back to be refilled. Free space and "touched" are recorded once per
//!   run of records on one page, when redo lets go of it.
//! - **Undo** (`undo.rs`). Each loser is rolled back newest first with CLRs
//!   and an abort record, exactly as a running rollback does, so a crash
//!   during recovery and a second recovery never undo anything twice
//!   (invariant 8).
//!
//! A failure names where: the record's LSN and, where it has one, its page
//! and relation. A failure of an operation below recovery (a read, a
//! write, a page that does not verify) is kept as the error's `source()`
//! and decides its class ([`DbError::RecoveryStep`]): an I/O error during
//! redo stays an I/O error.
//!
//! Recovery then checkpoints, so the next crash starts from here. By
//! default that checkpoint runs in the background once `Database::open` has
//! returned ([`RecoveryCheckpoint`](crate::RecoveryCheckpoint)): until it
//! completes, the control file still names the checkpoint from before the
//! crash and the log from there is kept, so a crash meanwhile recovers from
//! that point again (redo is idempotent, undo compensated). The redo gate
//! stays at that older point too, so no page changed after recovery skips
//! the image invariant 5 asks for.

mod analysis;
pub mod checkpoint;
pub mod control;
pub(crate) mod ddl;
mod readahead;
mod redo;
mod undo;

pub use checkpoint::CheckpointReport;
pub use control::Control;
pub(crate) use redo::PageSpace;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};

use analysis::Analysis;
use ddl::DdlLog;
use redo::Redo;

use crate::datadir::files::highest_file_id;
use crate::error::{DbError, Error, ErrorCause, Result};
use crate::heap::Relation;
use crate::storage::Storage;
use crate::types::{Lsn, PageId, RelationId, TxnId};
use crate::wal::RecoveryMode;

/// What recovery hands back to the database.
pub(crate) struct Recovered {
    pub report: RecoveryReport,
    /// Pages redo or undo changed.
    pub touched: FxHashSet<(RelationId, PageId)>,
    /// Free space of each page redo saw (changed or not), as it was when
    /// redo ended; pages undo changed afterwards are left out (their FSM
    /// entries are read again from the page).
    pub space: FxHashMap<(RelationId, PageId), PageSpace>,
    /// Highest transaction id seen.
    pub max_txn: TxnId,
    /// Creates and drops the log holds ([`ddl`]).
    pub ddl: DdlLog,
    /// The id the next relation gets: past the control file's counter,
    /// every id a `relation-create` record names and every relation file
    /// found on disk below the id limit (ids are never reused, invariant
    /// 13); at most the limit, which means every id is used.
    pub next_relation: u32,
    /// The newest complete checkpoint in the log read.
    pub last_checkpoint: Option<analysis::CheckpointSeen>,
    /// Tree leaves keys were deleted from in the log read, with the last
    /// key deleted on each ([`redo::Redone::deleted_on`]): the open
    /// reclaims those that are empty.
    pub deleted_on: FxHashMap<(RelationId, PageId), Vec<u8>>,
    /// Heap pages a tuple delete in the log named ([`redo::Redone::dead_on`]):
    /// the open frees the dead slots left on them.
    pub dead_on: FxHashSet<(RelationId, PageId)>,
    /// Chains of values (a heap's or a tree's) committed transactions
    /// dropped in the log read ([`redo::Redone::released_chains`]): the
    /// open frees what is left of them.
    pub released_chains: Vec<(RelationId, crate::page::OverflowHead, Lsn)>,
}

/// What recovery does once the log is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Undo the losers and complete committed drops: the database opens.
    Undo,
    /// Nothing: redo only, for a standby ([`crate::standby`]). The losers
    /// stay as they are (their transactions may still commit in log not
    /// yet shipped), no file is removed and nothing is logged. (The
    /// standby's apply then removes the files of the drops and creates the
    /// log decided, from [`Recovered::ddl`].)
    RedoOnly,
}

/// Runs analysis, redo and undo over the log of the open `store`, starting
/// from `control`'s checkpoint (the whole log when there is none).
/// `rels` holds the relation files found on disk; redo adds and removes
/// entries as relations are created and dropped.
pub(crate) fn recover(
    store: &Storage,
    dir: &Path,
    rels: &mut HashMap<RelationId, Arc<Relation>>,
    control: Option<&Control>,
    mode: RecoveryMode,
    finish: Finish,
) -> Result<Recovered> {
    let started = Instant::now();
    let (scan_start, redo_start) =
        control.map_or((Lsn::ZERO, Lsn::ZERO), |c| (c.scan_start(), c.redo_start));
    let report = RecoveryReport {
        clean_shutdown: control.is_some_and(|c| c.clean),
        scan_start,
        redo_start,
        ..RecoveryReport::default()
    };
    let highest_file = highest_file_id(store, dir)?;
    if let Some(c) = control {
        c.check_log_reaches(store.wal.open_end(), &store.wal)?;
    }
    let mut analysis =
        Analysis::new(control.map_or(TxnId(0), |c| TxnId(c.next_txn.0.saturating_sub(1))));
    let mut redo = Redo::new(store, dir, rels, redo_start, report);
    let mut anchor = control.map(Control::anchor);
    let reader = store.wal.recovery_reader(scan_start, mode)?;
    let threaded = readahead::threaded(&*store.io);
    readahead::run(reader, threaded, scan_start, |window| {
        redo.prefetch(window)?;
        for (h, payload) in window {
            if let Some(a) = &mut anchor {
                a.record(h, payload)?;
            }
            redo.record(h, payload)?;
            analysis.record(h, payload);
        }
        Ok(())
    })?;
    if let Some(a) = &anchor {
        a.finish()?;
    }
    let mut redone = redo.finish()?;
    redone.report.pages_rewritten = redone.rewritten.difference(&redone.touched).count() as u64;
    let mut ddl = analysis.ddl;
    for (&rel, &lsn) in &redone.missing {
        ddl.missing(rel, lsn);
    }
    let mut rec = Recovered {
        report: redone.report,
        touched: redone.touched,
        space: redone.space,
        max_txn: analysis.max_txn,
        ddl,
        next_relation: 1,
        last_checkpoint: analysis.last_checkpoint,
        deleted_on: redone.deleted_on,
        dead_on: redone.dead_on,
        released_chains: redone.released_chains,
    };
    rec.report.log_end = store.wal.end_lsn();
    if finish == Finish::Undo {
        undo::undo_losers(store, mode, rels, analysis.open, &mut rec)?;
        rec.report.drops_completed = rec.ddl.finish(store, dir, rels)?;
    }
    let after = |id: Option<RelationId>| id.map_or(1, |r| r.0.saturating_add(1));
    rec.next_relation = control
        .map_or(1, |c| c.next_relation)
        .max(after(rec.ddl.max_created))
        .max(after(highest_file))
        .max(1);
    rec.report.pages_redone = rec.touched.len() as u64;
    rec.report.duration = started.elapsed();
    Ok(rec)
}

/// A recovery error at the record `lsn` that recovery itself found (the
/// log and the pages disagree): corruption, with `reason`.
fn recovery(lsn: Lsn, reason: String) -> Error {
    DbError::Recovery { lsn, reason }.into()
}

/// For `map_err`: a failure of an operation recovery needed while doing
/// `doing` for the record at `lsn` (on page `at.1` of relation `at.0`),
/// kept as the `source()` of a [`DbError::RecoveryStep`].
fn failed<E: Into<Error>>(
    lsn: Lsn,
    at: Option<(RelationId, PageId)>,
    doing: impl Into<String>,
) -> impl FnOnce(E) -> Error {
    move |e| {
        DbError::RecoveryStep {
            lsn,
            relation: at.map(|a| a.0),
            page: at.map(|a| a.1),
            doing: doing.into(),
            source: ErrorCause::new(e.into()),
        }
        .into()
    }
}

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
    /// Distinct pages redo found already holding a record (read from
    /// their file, which after a kill may mean from the kernel's page
    /// cache only) and left dirty all the same, so that the checkpoint
    /// ending recovery writes and syncs them before the redo point moves
    /// past their records (invariant 14).
    pub pages_rewritten: u64,
    /// Log bytes an unclean open wrote again and synced before recovery
    /// read them ([`crate::wal::Wal::rewrite_tail`], invariant 14); 0
    /// after a clean shutdown.
    pub log_bytes_rewritten: u64,
    /// Pages that failed verification (torn) or lay past their file's end
    /// and were rebuilt from their page image (`storage::images`).
    pub pages_from_images: u64,
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
