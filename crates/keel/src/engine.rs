//! The open engine: what the facade, transactions and background threads
//! share once [`crate::datadir::open`] has run the open sequence.
//!
//! [`Engine`] holds the storage context ([`Storage`]: I/O backend, buffer
//! pool, log, locks, redo gate), the catalog, the transaction table and the
//! poison. It decides three things, each in one place:
//!
//! - **Poison** (invariants 7 and 16): [`Engine::poison`] sets it, once;
//!   [`Engine::note`] passes an error on, poisoning first when it is fatal;
//!   [`Engine::check_usable`] refuses every call once it is set, adopting a
//!   poison the log or the buffer pool set on a background thread.
//! - **Checkpoints**: [`Engine::checkpoint`] runs one at a time; the
//!   background checkpointer ([`start_checkpointer`]) and the end-of-recovery
//!   checkpoint ([`start_recovery_checkpoint`]) keep their last error for
//!   `Database::background_error`.
//! - **Which relations a transaction may use**: [`Engine::user_relation`]
//!   (never the catalog) and [`Engine::named`].

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::Mutex;

use crate::Config;
use crate::error::{BufferError, DbError, Error, ErrorCause, ErrorClass, Result};
use crate::heap::Relation;
use crate::heap::catalog::Catalog;
use crate::recovery::checkpoint::{CheckpointTarget, checkpoint};
use crate::recovery::{CheckpointReport, RecoveryReport};
use crate::storage::Storage;
use crate::txn::TxnTable;
use crate::txn::undo::TxnLog;
use crate::types::{Lsn, RelationId};

/// An open database's shared state (module docs).
pub(crate) struct Engine {
    pub dir: PathBuf,
    pub store: Storage,
    pub catalog: Catalog,
    pub txns: TxnTable,
    /// Held by a checkpoint, and by a drop from its commit to the removal
    /// of its files (`crate::ddl`).
    pub checkpoint_lock: Mutex<()>,
    pub last_checkpoint: Mutex<(Lsn, Instant)>,
    pub recovery: RecoveryReport,
    /// The first fatal error; set once, by [`Engine::poison`] only.
    pub poison: OnceLock<ErrorCause>,
    /// The last failure of a background checkpoint, until one succeeds.
    pub background_error: Mutex<Option<Arc<Error>>>,
    /// Post-commit cleanups that failed (each leaks space, never data).
    pub cleanup_failures: AtomicU64,
    /// `LOCK`, held while the database is open (`crate::datadir`).
    pub _dir_lock: Option<std::fs::File>,
}

impl Engine {
    /// Fails with [`DbError::Poisoned`] once the database is poisoned.
    pub(crate) fn check_usable(&self) -> Result<()> {
        match self.poisoned() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// The first fatal error and the refusal naming it, once poisoned. A
    /// log or buffer pool that poisoned itself (a background flush, an
    /// eviction's sync) poisons the database here, with its own cause.
    pub(crate) fn poisoned(&self) -> Option<(ErrorCause, Error)> {
        if self.poison.get().is_none() {
            if let Some(e) = self.store.wal.poison_error() {
                self.poison(e.into());
            } else if let Some(cause) = self.store.pool.poison_cause() {
                self.poison(BufferError::Poisoned { cause }.into());
            }
        }
        let cause = self.poison.get()?.clone();
        let refusal = DbError::Poisoned {
            cause: cause.clone(),
        };
        Some((cause, refusal.into()))
    }

    /// Poisons the database (invariants 7 and 16); the one place that
    /// decides it. The first cause is kept: later ones are consequences.
    /// Returns the refusal every call gets from now on, naming it.
    ///
    /// Rule: poison is set *before* the failing transaction's locks are
    /// released, and every read checks it after taking its locks. So a
    /// poisoned transaction's changes, left in memory (no undo runs on a
    /// poisoned database; recovery rolls them back), can never be read.
    pub(crate) fn poison(&self, cause: Error) -> Error {
        let cause = self.poison.get_or_init(|| ErrorCause::new(cause)).clone();
        DbError::Poisoned { cause }.into()
    }

    /// Passes `e` on; a fatal one poisons the database first and becomes
    /// the refusal naming the first fatal error.
    pub(crate) fn note(&self, e: Error) -> Error {
        if e.class() == ErrorClass::Fatal {
            self.poison(e)
        } else {
            e
        }
    }

    /// Undoes a transaction's changes. On a poisoned database nothing is
    /// undone in memory (undo writes the log; recovery will do it): the
    /// poison refusal is returned. A failed undo poisons.
    pub(crate) fn undo(&self, log: &mut TxnLog) -> Result<()> {
        self.check_usable()?;
        if log.last_lsn == Lsn::ZERO {
            return Ok(());
        }
        self.store
            .rollback(log, &self.lookup())
            .map_err(|e| self.poison(e))
    }

    /// A checkpoint on a background thread: its error is kept for
    /// `Database::background_error`; returns whether it succeeded.
    pub(crate) fn background_checkpoint(&self) -> bool {
        let result = self.checkpoint(false);
        let mut last = self.background_error.lock();
        match result {
            Ok(_) => {
                *last = None;
                true
            }
            Err(e) => {
                *last = Some(Arc::new(e));
                false
            }
        }
    }

    /// Finds a relation by id (rollback and after-commit work).
    pub(crate) fn lookup(&self) -> impl Fn(RelationId) -> Option<Arc<Relation>> + '_ {
        |id| self.catalog.get(id)
    }

    /// The relation called `name`.
    pub(crate) fn named(&self, name: &str) -> Result<Arc<Relation>> {
        self.catalog
            .by_name(name)
            .ok_or_else(|| DbError::NoSuchRelation(name.to_string()).into())
    }

    /// A relation a transaction may change (not the catalog).
    pub(crate) fn user_relation(&self, id: RelationId) -> Result<Arc<Relation>> {
        match self.catalog.get(id) {
            Some(r) if id != crate::heap::catalog::CATALOG_ID => Ok(r),
            _ => Err(DbError::NoSuchRelation(id.to_string()).into()),
        }
    }

    /// Any relation by id, the catalog included.
    pub(crate) fn user_or_catalog(&self, id: RelationId) -> Result<Arc<Relation>> {
        self.catalog
            .get(id)
            .ok_or_else(|| DbError::NoSuchRelation(id.to_string()).into())
    }

    /// Takes a checkpoint (one at a time); `clean` marks the shutdown
    /// clean. A fatal failure poisons.
    pub(crate) fn checkpoint(&self, clean: bool) -> Result<CheckpointReport> {
        self.checkpoint_then(clean, |_| Ok(())).map(|(r, ())| r)
    }

    /// Takes a checkpoint and runs `then` before another checkpoint can
    /// start (still under the checkpoint lock): what it reads of the
    /// control file is what this checkpoint wrote.
    pub(crate) fn checkpoint_then<T>(
        &self,
        clean: bool,
        then: impl FnOnce(&CheckpointReport) -> Result<T>,
    ) -> Result<(CheckpointReport, T)> {
        let _one = self.checkpoint_lock.lock();
        let report = checkpoint(&CheckpointTarget {
            store: &self.store,
            dir: &self.dir,
            catalog: &self.catalog,
            txns: &self.txns,
            clean,
            usable: &|| self.check_usable(),
        });
        match report {
            Ok(r) => {
                *self.last_checkpoint.lock() = (r.begin, Instant::now());
                let then = then(&r)?;
                Ok((r, then))
            }
            Err(e) => Err(self.note(e)),
        }
    }
}

/// The longest wait of the checkpointer between failed attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The background checkpointer: by log volume and by time. Dropping the
/// returned sender stops it.
pub(crate) fn start_checkpointer(
    engine: &Arc<Engine>,
    config: &Config,
) -> Result<Option<(Sender<()>, JoinHandle<()>)>> {
    if config.checkpoint_wal_bytes == 0 && config.checkpoint_interval.is_none() {
        return Ok(None);
    }
    let (tx, rx): (Sender<()>, Receiver<()>) = bounded(1);
    let engine = Arc::clone(engine);
    let (bytes, interval) = (config.checkpoint_wal_bytes, config.checkpoint_interval);
    let handle = std::thread::Builder::new()
        .name("keel-checkpointer".into())
        .spawn(move || {
            let tick = Duration::from_millis(200);
            // After a failure: no attempt before `retry_at`, the wait
            // doubling from 1 s to 5 min (a failing checkpoint is not
            // retried in a tight loop; its error stays visible).
            let mut backoff = Duration::ZERO;
            let mut retry_at = Instant::now();
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = rx.recv_timeout(tick) {
                let (lsn, at) = *engine.last_checkpoint.lock();
                let by_volume =
                    bytes > 0 && engine.store.wal.end_lsn().0.saturating_sub(lsn.0) >= bytes;
                let by_time = interval.is_some_and(|d| at.elapsed() >= d);
                let due = (by_volume || by_time) && Instant::now() >= retry_at;
                if due && engine.check_usable().is_ok() {
                    if engine.background_checkpoint() {
                        backoff = Duration::ZERO;
                    } else {
                        backoff = (backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                        retry_at = Instant::now() + backoff;
                    }
                }
            }
        })
        .map_err(|e| DbError::Config(format!("cannot start the checkpointer thread: {e}")))?;
    Ok(Some((tx, handle)))
}

/// Takes the end-of-recovery checkpoint on a thread of its own
/// (`RecoveryCheckpoint::Background`); its error, if any, is kept as
/// `Database::background_error` (a fatal one also poisons the database).
pub(crate) fn start_recovery_checkpoint(engine: &Arc<Engine>) -> Result<JoinHandle<()>> {
    let engine = Arc::clone(engine);
    std::thread::Builder::new()
        .name("keel-recovery-checkpoint".into())
        .spawn(move || {
            if engine.check_usable().is_ok() {
                engine.background_checkpoint();
            }
        })
        .map_err(|e| {
            DbError::Config(format!("cannot start the recovery checkpoint thread: {e}")).into()
        })
}
