//! A standby's redo: applying log shipped from a primary to a restored
//! copy of its database, without ever opening it for work.
//!
//! A standby directory is a restored base backup whose log grows as the
//! primary's archived log is laid into it (crate `keel-archive`). Each
//! [`apply_log`] is the open sequence cut after redo:
//!
//! 1. Like `Database::open`: the directory's lock, the control file (it
//!    must exist), the sync of an unclean directory (invariant 14), the
//!    log and the relation files.
//! 2. Analysis and redo of the whole log from the control file's
//!    checkpoint (`recovery`, idempotent by page LSN). **No undo**: a
//!    transaction without a commit record may still commit in log not yet
//!    shipped. Redo removes no file (invariant 13), no FSM is written and
//!    **nothing is logged**: the standby's log stays byte for byte the
//!    primary's.
//! 3. Every page redo changed is written and synced
//!    (`BufferPool::flush_all`). Then the files of the drops known
//!    committed and of the creates known aborted (an abort record) in the
//!    applied log are removed and `rel/` synced: outcomes the log decides,
//!    as the primary removed those files too. Redo re-created such a file
//!    when it met the relation's `relation-create`; left in place, it would
//!    be an orphan once step 4 moves the scan start past the records that
//!    explain it. Creates of transactions still open are left alone (they
//!    may commit in log not yet shipped; a checkpoint's undo start keeps
//!    their records in every later scan).
//! 4. The **restartpoint**: when the log holds a complete checkpoint newer
//!    than the one the control file names, the control file is replaced
//!    (atomically, as a checkpoint replaces it) to name that checkpoint:
//!    its redo and undo starts, its end record, the next transaction and
//!    relation ids. It stays marked unclean. The next apply, or the open
//!    that promotes the standby, starts there instead of at the backup.
//!
//! Why the restartpoint is safe: step 3 put on disk every change of every
//! record up to the log's end, which is past the checkpoint's end record,
//! so the pages are at least as new as the primary's were when that
//! checkpoint completed; recovery from a checkpoint asks no more (module
//! docs of [`crate::recovery`]). A crash during step 3 (a torn page
//! included) leaves the old control file in charge, whose redo start is
//! older: every page the standby may have written was changed by a record
//! after it, and redo kept its image as of that redo start before the
//! change (`storage::images`), so it is repaired exactly as the primary's
//! own pages would be after a crash (invariant 5). Before step 4 moves the
//! control file, the image of every page redo saw that holds a record at
//! or after the new redo start is kept and synced: a page changed again by a later apply
//! (no first change of its own after that start) is then repaired from it.
//!
//! A standby directory holds the marker file
//! [`STANDBY_FILE`](crate::datadir::layout::STANDBY_FILE), which this
//! apply accepts and `Database::open` refuses, naming `keel promote`
//! (module docs of [`crate::datadir::layout`]). Promotion (crate
//! `keel-archive`, module `standby`) starts a new timeline, removes the
//! marker and then is an ordinary `Database::open` of the directory: redo
//! from the restartpoint, undo of the losers, the end-of-recovery
//! checkpoint.

use std::path::Path;

use crate::db::Config;
use crate::error::Result;
use crate::recovery::RecoveryReport;
use crate::types::Lsn;

/// What one [`apply_log`] did.
#[derive(Clone, Debug)]
pub struct ApplyReport {
    /// The redo pass (no transaction is undone).
    pub recovery: RecoveryReport,
    /// The end record of the checkpoint the control file now names, when
    /// this apply moved it (module essay, step 4).
    pub restartpoint: Option<Lsn>,
}

/// [`apply_log`] on a given I/O backend (the simulator in tests).
pub fn apply_log_with_io(
    dir: impl AsRef<Path>,
    config: Config,
    io: std::sync::Arc<dyn keel_io::AsyncIo>,
) -> Result<ApplyReport> {
    config.validate()?;
    crate::datadir::apply_redo_only(dir.as_ref(), &config, io)
}

/// Applies the log in the standby directory `dir` to its pages, and moves
/// its control file to the newest complete checkpoint (module essay). The
/// directory must not be open elsewhere.
pub fn apply_log(dir: impl AsRef<Path>, config: Config) -> Result<ApplyReport> {
    config.validate()?;
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(crate::error::DbError::Config(format!(
            "{} is not a directory: a standby applies log to a restored database",
            dir.display()
        ))
        .into());
    }
    let io = keel_io::open_backend(&config.io)?;
    crate::datadir::apply_redo_only(dir, &config, io)
}
