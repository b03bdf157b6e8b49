//! A transaction's life, from [`begin`] to the one end path, [`end`].
//!
//! ```text
//!                 commit() ─ end(Commit) ──► Committing ──► Committed
//!                                                │  commit record not
//!   begin() ──► Active                           │  logged or not durable
//!                 │                              ▼
//!                 │                            Failed ◄── undo failed ──┐
//!                 │                                                     │
//!                 └─ abort(), drop, a deadlock ─ end(Rollback) ──► Aborting
//!                    or lock timeout (fail());                          │
//!                    commit() not admitted by the                       ▼
//!                    archive gate in time (admit())                 Aborted
//! ```
//!
//! - **Active**: reads and writes take locks ([`crate::lock`]) and the
//!   changes go through the heap, which pushes what undoing each needs on
//!   the transaction's [`TxnLog`].
//! - **Committing** ([`end`] with [`End::Commit`]): the commit record is
//!   appended and waited for under the commit policy ([`CommitWait`]).
//!   Durable: **Committed**, and the space the transaction freed is
//!   released (`Deferred`) while it is still in the transaction table, so
//!   a checkpoint meanwhile keeps its records in the log it reads (the
//!   open re-runs the tree reclaims a crash cut off, btree module docs).
//!   Any failure here: **Failed** — the record may
//!   be durable or not, so the database is poisoned (invariant 16) and
//!   recovery decides. Before the record is appended, a user commit waits
//!   for admission under the archiver's limit on unarchived log
//!   ([`crate::wal::gate`]), still Active and keeping its locks; not
//!   admitted within the limit's timeout, it is rolled back instead (the
//!   edge to Aborting) and fails with `CommitStalled`. System transactions
//!   (`CommitWait::Durable`) are never gated.
//! - **Aborting** ([`end`] with [`End::Rollback`]): the undo stack is
//!   rolled back with compensation records (invariant 8). A failed undo
//!   poisons: **Failed**, its changes left to recovery, unreadable.
//!
//! Every edge out of `Active` goes through [`end`], which releases the
//! locks and leaves the transaction table last — after the poison, if any,
//! is set (invariant 16: a poisoned transaction's changes are never read).
//! A system transaction ([`system_txn`]: relation create and drop) runs the
//! same path, committing durably whatever the commit policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::btree::routes::RoutesCache;
use crate::engine::Engine;
use crate::error::{DbError, Error, Result};
use crate::heap::Relation;
use crate::heap::RelationKind;
use crate::heap::read::HeapScan;
use crate::lock::{LockMode, LockTarget};
use crate::storage::Storage;
use crate::txn::TxnSlot;
use crate::txn::undo::TxnLog;
use crate::types::{Lsn, RelationId, TupleId, TxnId};
use crate::wal::Payload;

/// Where a transaction is in its life (module docs, the diagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxnState {
    Active,
    Committing,
    Committed,
    Aborting,
    Aborted,
    /// A commit or rollback failed: the database is poisoned.
    Failed,
}

/// How a transaction ends.
#[derive(Clone, Copy, Debug)]
pub(crate) enum End {
    Commit(CommitWait),
    Rollback,
}

/// What a commit waits for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CommitWait {
    /// The configured commit policy (`WalConfig::commit`).
    Policy,
    /// The commit record on stable storage, whatever the policy.
    Durable,
}

/// A transaction's own part: its log and its state.
#[derive(Debug)]
pub(crate) struct TxnCore {
    pub id: TxnId,
    pub log: TxnLog,
    pub state: TxnState,
}

impl TxnCore {
    fn new(id: TxnId) -> TxnCore {
        TxnCore {
            id,
            log: TxnLog::new(id),
            state: TxnState::Active,
        }
    }
}

/// Registers a new transaction in the table and the lock manager.
/// Returns its home thread as the lock manager keeps it.
fn begin(engine: &Engine) -> (TxnCore, Arc<TxnSlot>, Arc<AtomicU64>) {
    let (id, slot) = engine.txns.begin();
    let home = engine.store.locks.begin(id);
    (TxnCore::new(id), slot, home)
}

/// The one end path (module docs). `on_commit` runs once the commit is
/// durable, before the locks are released; an error of it comes after the
/// commit (nothing to roll back) and is returned as is.
pub(crate) fn end(
    engine: &Engine,
    core: &mut TxnCore,
    how: End,
    on_commit: impl FnOnce() -> Result<()>,
) -> Result<()> {
    if core.state != TxnState::Active {
        return Err(DbError::TxnFinished(core.id).into());
    }
    let stalled = match how {
        End::Commit(CommitWait::Policy) => admit(engine, core).err(),
        _ => None,
    };
    let how = if stalled.is_some() {
        End::Rollback
    } else {
        how
    };
    let result = match how {
        End::Commit(wait) => {
            core.state = TxnState::Committing;
            match log_commit(engine, &mut core.log, wait) {
                Ok(()) => {
                    core.state = TxnState::Committed;
                    on_commit()
                        .map(|()| release_freed(engine, &mut core.log))
                        .map_err(|e| engine.note(e))
                }
                // Neither committed nor rolled back: poisoned, before the
                // locks go (invariant 16).
                Err(e) => {
                    core.state = TxnState::Failed;
                    Err(engine.poison(e))
                }
            }
        }
        End::Rollback => {
            core.state = TxnState::Aborting;
            let undone = engine.undo(&mut core.log);
            core.state = match undone {
                Ok(()) => TxnState::Aborted,
                Err(_) => TxnState::Failed,
            };
            match stalled {
                Some(e) => undone.and(Err(e)),
                None => undone,
            }
        }
    };
    engine.store.locks.release_all(core.id);
    engine.txns.end(core.id);
    result
}

/// Waits until the commit may be appended under the archiver's limit on
/// unarchived log (`wal::gate`); a transaction that wrote nothing appends
/// no commit record and is admitted at once. A poisoned database stops the
/// wait so that `log_commit` reports the poison.
fn admit(engine: &Engine, core: &TxnCore) -> Result<()> {
    if core.log.last_lsn == Lsn::ZERO {
        return Ok(());
    }
    engine
        .store
        .wal
        .admit_commit(|| engine.check_usable().is_ok())
        .map_err(|s| {
            DbError::CommitStalled {
                txn: core.id,
                unarchived: s.unarchived,
                held_from: s.held_from,
                max_bytes: s.limit.max_bytes,
                waited: s.waited,
            }
            .into()
        })
}

/// Appends the commit record (none for a transaction that wrote nothing)
/// and waits for it as `wait` says.
fn log_commit(engine: &Engine, log: &mut TxnLog, wait: CommitWait) -> Result<()> {
    engine.check_usable()?;
    if log.last_lsn == Lsn::ZERO {
        return Ok(());
    }
    let rec = engine.store.log_txn(log, &commit_payload())?;
    match wait {
        CommitWait::Policy => engine.store.wal.commit_wait(rec)?,
        CommitWait::Durable => engine.store.wal.flush(rec.lsn)?,
    }
    Ok(())
}

/// Releases what a committed transaction freed (`Deferred`); each
/// failure leaks that release's space, never data, and is counted. A
/// fatal one (a failed page write or log write) poisons the database, as
/// under any other call (invariant 16); the commit stands (it is durable),
/// and the open after the crash frees what the releases did not.
fn release_freed(engine: &Engine, log: &mut TxnLog) {
    let (failed, fatal) = engine.store.after_commit(log, &engine.lookup());
    if failed > 0 {
        engine
            .cleanup_failures
            .fetch_add(failed, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(e) = fatal {
        engine.note(e);
    }
}

fn commit_payload() -> Payload {
    let commit_time_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    Payload::Commit { commit_time_us }
}

/// Runs `f` as a system transaction that commits durably whatever the
/// commit policy; rolls it back if `f` fails. `on_commit` runs once the
/// commit is durable, before the transaction's locks are released.
pub(crate) fn system_txn<T>(
    engine: &Engine,
    f: impl FnOnce(TxnId, &mut TxnLog) -> Result<T>,
    on_commit: impl FnOnce(&mut T) -> Result<()>,
) -> Result<T> {
    let (mut core, slot, _) = begin(engine);
    slot.before_write(|| engine.store.wal.end_lsn());
    match f(core.id, &mut core.log) {
        Ok(mut v) => {
            let how = End::Commit(CommitWait::Durable);
            end(engine, &mut core, how, || on_commit(&mut v))?;
            Ok(v)
        }
        Err(e) => {
            let e = engine.note(e);
            end(engine, &mut core, End::Rollback, || Ok(()))?;
            Err(e)
        }
    }
}

/// Reads (gets and range scans, one each) a read-only transaction
/// ([`Database::begin_read`](crate::Database::begin_read)) makes in one
/// tree before it tries (never waiting) to lock the whole tree shared,
/// after which its gets and the range scans it starts there take no key
/// locks; tried again at each doubling of the count while a writer's
/// intention lock refuses it. A tree-level S lock gives every key lock a
/// get or a scan would take (no other transaction can hold IX on the tree,
/// so none can insert, delete or change a key until this one ends:
/// serializable as the key locks are), at the price of keeping the tree's
/// writers waiting until this transaction ends, as the lock manager's own
/// escalation after `ESCALATE_AT` row locks does. A transaction begun with
/// [`Database::begin`](crate::Database::begin) keeps to key locks at this
/// count: were it to hold the tree S and then write there, it would ask
/// for X (S and IX join to X), and two such transactions would deadlock.
/// Only the lock manager's own escalation, which bounds the lock table,
/// still locks the tree shared for it, once it holds
/// [`ESCALATE_AT`](crate::lock::ESCALATE_AT) key locks there: a
/// transaction that reads that many keys of a tree and then writes it can
/// still be rolled back for a deadlock (read in a `begin_read`
/// transaction, or write first). A scan counts once here however many
/// keys it locks. Sixty-four
/// reads mark a reader that would otherwise spend more on its key locks,
/// and their release at commit, than on anything else but its descents.
pub const TREE_READ_ESCALATE_AT: u32 = 64;

/// A tree this transaction has locked: the tree as the catalog gave it
/// when the lock was granted (it stays in the catalog until this
/// transaction ends: a drop waits for the lock), the mode held, the gets
/// and writes made there (what decides when to escalate, or to look for
/// the manager's escalation).
///
/// A tree operation asks the lock manager again only for a stronger mode.
/// Every tree operation takes a key lock, which keeps the transaction's
/// home thread current (`lock` module docs, Threads), except a get or a
/// range scan covered by a tree-level S or X lock, or a put covered by an
/// X lock (the manager's escalation after `ESCALATE_AT` key locks, or a
/// bulk load's): such an operation skips its key locks only when the
/// manager's home for the transaction is the calling thread (it publishes
/// the home at each change), and elsewhere asks for them (requests the
/// manager finds covered, which re-home the transaction), so a transaction
/// moved to another thread, by any operation, is re-homed before a lock
/// wait could miss it.
struct TreeHold {
    rel: Arc<Relation>,
    mode: LockMode,
    ops: u32,
    /// The tree's routes as this transaction's gets last loaded them.
    routes: RoutesCache,
}

impl TreeHold {
    /// Whether the tree lock held gives every key lock an operation in
    /// `mode` (the tree's intention mode it asks for) takes: S or X for a
    /// get, X for a write.
    fn covers(&self, mode: LockMode) -> bool {
        match mode {
            LockMode::IntentShared => {
                matches!(self.mode, LockMode::Shared | LockMode::Exclusive)
            }
            _ => self.mode == LockMode::Exclusive,
        }
    }
}

/// The calling thread's identity, as the lock manager records homes.
fn thread_key() -> u64 {
    <crate::sync::Os as crate::sync::Primitives>::thread_key()
}

/// A transaction: changes to tuples that become durable together at
/// [`commit`](Self::commit), or are rolled back by
/// [`abort`](Self::abort) or by dropping it.
///
/// Reads lock tuples shared and writes lock them exclusive until the
/// transaction ends (strict two-phase locking; see docs/storage.md,
/// "Isolation"). When a lock request would deadlock or times out, the
/// transaction is rolled back at once and the call returns
/// [`DbError::Deadlock`] or [`DbError::LockTimeout`]; later calls return
/// [`DbError::TxnFinished`], as does the next item of a
/// [`Range`](crate::Range) or [`Scan`] still open over it (which then
/// ends). The `try_` forms never wait for a lock: they
/// return [`DbError::WouldBlock`] and the transaction goes on. A
/// transaction from [`Database::begin_read`](crate::Database::begin_read)
/// refuses every write with [`DbError::ReadOnly`] and goes on.
///
/// **Threads.** A transaction is `Send` but not `Sync`: one thread at a
/// time runs it (move it to another thread, never share it). A lock wait
/// blocks the calling thread, so a thread must not wait for a transaction
/// it runs itself: when the transaction a request would wait for made its
/// latest lock request on the waiting thread, the request fails at once
/// with [`DbError::Deadlock`] (and its transaction is rolled back) instead
/// of hanging ([`crate::lock`], "Threads"). Hand a transaction to
/// another thread by moving it there and using it there.
///
/// ```compile_fail,E0277
/// # let tmp = std::env::temp_dir().join(format!("keel-doc-sync-{}", std::process::id()));
/// let db = keel::Database::open(&tmp, keel::Config::default()).unwrap();
/// let tx = db.begin().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| tx.id()); // a transaction cannot be shared between threads
/// });
/// ```
///
/// ```
/// # fn main() -> keel::Result<()> {
/// # let tmp = std::env::temp_dir().join(format!("keel-doc-tx-{}", std::process::id()));
/// use keel::{Config, Database, DbError, Error};
///
/// let db = Database::open(&tmp, Config::default())?;
/// let rel = db.create_relation("accounts")?;
/// let mut tx = db.begin()?;
/// let alice = tx.insert(rel, b"alice: 100")?;
/// tx.commit()?;
///
/// let mut writer = db.begin()?;
/// writer.update(rel, alice, b"alice: 90")?; // holds alice's lock
/// let reader = db.begin()?;
/// match reader.try_get(rel, alice) {
///     Err(Error::Db(DbError::WouldBlock { .. })) => {} // would wait: yield instead
///     other => panic!("expected WouldBlock, got {other:?}"),
/// }
/// drop(reader);
/// writer.abort()?; // rolled back with compensation records
/// assert_eq!(db.begin()?.get(rel, alice)?.as_deref(), Some(&b"alice: 100"[..]));
/// # db.close()?;
/// # std::fs::remove_dir_all(&tmp).ok();
/// # Ok(())
/// # }
/// ```
pub struct Transaction<'db> {
    db: &'db Engine,
    id: TxnId,
    core: Mutex<TxnCore>,
    slot: Arc<TxnSlot>,
    /// Trees this transaction has locked, and how ([`TreeHold`]).
    tree_locks: std::cell::RefCell<Vec<TreeHold>>,
    /// The home thread the lock manager keeps for this transaction
    /// ([`TreeHold`]).
    home: Arc<AtomicU64>,
    /// Begun with `Database::begin_read`: writes are refused, and only
    /// such a transaction escalates its reads in a tree
    /// ([`TREE_READ_ESCALATE_AT`]).
    read_only: bool,
    /// Rolled back by a failure (a deadlock or a lock timeout) of a call
    /// through a shared borrow: the iterators borrowing the transaction
    /// ([`Range`](crate::Range), [`Scan`]) check it before each
    /// item, so none returns a row its rolled-back transaction no longer
    /// holds a lock on. Set under the core's mutex, read without it (the
    /// transaction is `!Sync`).
    rolled_back: std::cell::Cell<bool>,
    /// Makes the type `!Sync` (it stays `Send`): see "Threads" above.
    _one_thread: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<'db> Transaction<'db> {
    /// Starts a transaction (`Database::begin`, or `begin_read` when
    /// `read_only`).
    pub(crate) fn begin(db: &'db Engine, read_only: bool) -> Result<Transaction<'db>> {
        db.check_usable()?;
        let (core, slot, home) = begin(db);
        Ok(Transaction {
            db,
            id: core.id,
            core: Mutex::new(core),
            slot,
            tree_locks: std::cell::RefCell::new(Vec::new()),
            home,
            read_only,
            rolled_back: std::cell::Cell::new(false),
            _one_thread: std::marker::PhantomData,
        })
    }

    /// This transaction's id.
    pub fn id(&self) -> TxnId {
        self.id
    }

    /// Whether this transaction was begun with
    /// [`Database::begin_read`](crate::Database::begin_read), and so
    /// refuses writes.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Refuses a write in a read-only transaction (before any lock or
    /// change: the transaction goes on as it was).
    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(DbError::ReadOnly { txn: self.id }.into());
        }
        Ok(())
    }

    /// Bytes of memory the transaction holds for its rollback and commit
    /// until it ends (undo stack, deferred releases, reservations); for
    /// tests and diagnostics.
    #[doc(hidden)]
    pub fn undo_bytes(&self) -> usize {
        self.core.lock().log.held_bytes()
    }

    fn live(&self) -> Result<()> {
        if self.core.lock().state != TxnState::Active {
            return Err(DbError::TxnFinished(self.id).into());
        }
        Ok(())
    }

    /// Whether `rel`, looked up before its relation lock was granted, is
    /// still in the catalog: a drop holds the relation exclusively until it
    /// has removed it, so once a lock on it is held, a relation found here
    /// stays until this transaction ends.
    fn still_there(&self, rel: &Arc<Relation>) -> Result<()> {
        match self.db.catalog.get(rel.id) {
            Some(r) if Arc::ptr_eq(&r, rel) => Ok(()),
            _ => Err(DbError::NoSuchRelation(rel.id.to_string()).into()),
        }
    }

    /// Locks `target`; a deadlock or timeout rolls the transaction back.
    fn lock(&self, target: LockTarget, mode: LockMode, wait: bool) -> Result<()> {
        match self.db.store.locks.lock(self.id, target, mode, wait) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Handles an error of an operation: a deadlock or lock timeout rolls
    /// the transaction back; a fatal error poisons the database.
    fn fail(&self, e: Error) -> Error {
        let e = self.db.note(e);
        if matches!(
            e,
            Error::Db(DbError::Deadlock { .. } | DbError::LockTimeout { .. })
        ) {
            let mut core = self.core.lock();
            if core.state == TxnState::Active {
                self.rolled_back.set(true);
                // A failure here poisons the database (`Engine::undo`).
                let _ = end(self.db, &mut core, End::Rollback, || Ok(()));
            }
        }
        e
    }

    /// Fails with [`DbError::TxnFinished`] once a failure rolled this
    /// transaction back: what an iterator over it asks before each item
    /// (a lock-free check; see `rolled_back`).
    pub(super) fn not_rolled_back(&self) -> Result<()> {
        if self.rolled_back.get() {
            return Err(DbError::TxnFinished(self.id).into());
        }
        Ok(())
    }

    fn write<T>(
        &mut self,
        rel: RelationId,
        tid: Option<(TupleId, bool)>,
        f: impl FnOnce(&Storage, &mut TxnLog, &Relation) -> Result<T>,
    ) -> Result<T> {
        self.live()?;
        self.writable()?;
        self.db.check_usable()?;
        let rel = self.db.user_relation(rel)?;
        rel.expect(RelationKind::Heap)?;
        // A `try_` form never waits, for the relation's lock either (an
        // escalated lock of another transaction may block it).
        let wait = tid.is_none_or(|(_, wait)| wait);
        self.lock(
            LockTarget::Relation(rel.id),
            LockMode::IntentExclusive,
            wait,
        )?;
        self.still_there(&rel)?;
        if let Some((tid, wait)) = tid {
            self.lock(LockTarget::Tuple(rel.id, tid), LockMode::Exclusive, wait)?;
        }
        // Poisoned while waiting for a lock: change nothing (invariant 16).
        self.db.check_usable()?;
        self.slot.before_write(|| self.db.store.wal.end_lsn());
        let mut core = self.core.lock();
        let result = f(&self.db.store, &mut core.log, &rel);
        self.slot.wrote(core.log.last_lsn);
        drop(core);
        result.map_err(|e| self.fail(e))
    }

    /// Runs a tree operation on tree `rel`: the tree's intention lock in
    /// `mode` (IS to read, IX to write, X for a bulk load), then `f` with
    /// the storage, this transaction's log, the tree, whether the tree
    /// lock held covers the key locks of a read ([`TreeHold`]) and this
    /// transaction's cache of the tree's routes. An error rolls back as
    /// [`fail`](Self::fail) says.
    pub(super) fn tree_op<T>(
        &self,
        rel: RelationId,
        mode: LockMode,
        f: impl FnOnce(&Storage, &mut TxnLog, &Relation, bool, &mut RoutesCache) -> Result<T>,
    ) -> Result<T> {
        if mode != LockMode::IntentShared {
            self.writable()?;
        }
        let at = self.tree_hold(rel, mode)?;
        if mode == LockMode::IntentShared {
            self.count_read(at)?;
        } else if mode == LockMode::IntentExclusive {
            self.count_write(at);
        }
        let writing = mode != LockMode::IntentShared;
        if writing {
            // Poisoned while waiting for a lock: change nothing (invariant
            // 16). A read changes nothing; the check after it refuses its
            // answer.
            self.db.check_usable()?;
            self.slot.before_write(|| self.db.store.wal.end_lsn());
        }
        let covered = self.covered(at, mode);
        let mut holds = self.tree_locks.borrow_mut();
        let hold = &mut holds[at];
        let mut core = self.core.lock();
        if core.state != TxnState::Active {
            return Err(DbError::TxnFinished(self.id).into());
        }
        let result = f(
            &self.db.store,
            &mut core.log,
            &hold.rel,
            covered,
            &mut hold.routes,
        );
        if writing {
            self.slot.wrote(core.log.last_lsn);
        }
        drop(core);
        drop(holds);
        let value = result.map_err(|e| self.fail(e))?;
        // Invariant 16: checked after the locks were granted.
        self.db.check_usable()?;
        Ok(value)
    }

    /// The index in `tree_locks` of tree `rel`, locked in a mode that gives
    /// `mode`: a tree already held so asks nothing more; otherwise the
    /// tree is looked up, checked to be one, locked (waiting) and checked
    /// to be still there.
    #[inline]
    fn tree_hold(&self, rel: RelationId, mode: LockMode) -> Result<usize> {
        let found = {
            let holds = self.tree_locks.borrow();
            let found = holds.iter().position(|h| h.rel.id == rel);
            if let Some(at) = found {
                let held = holds[at].mode;
                if held == mode || held == LockMode::Exclusive || mode == LockMode::IntentShared {
                    return Ok(at);
                }
            }
            found
        };
        self.lock_tree(rel, mode, found)
    }

    /// [`tree_hold`](Self::tree_hold) for a tree not yet held in a mode
    /// that gives `mode`; `found`, its index in `tree_locks` if it is held
    /// at all.
    #[inline(never)]
    fn lock_tree(&self, rel: RelationId, mode: LockMode, found: Option<usize>) -> Result<usize> {
        self.live()?;
        self.db.check_usable()?;
        let r = self.db.user_relation(rel)?;
        r.expect(RelationKind::Tree)?;
        self.lock(LockTarget::Relation(rel), mode, true)?;
        self.still_there(&r)?;
        let mut holds = self.tree_locks.borrow_mut();
        Ok(match found {
            Some(at) => {
                let h = &mut holds[at];
                // The manager granted the join of both modes (an upgrade).
                h.mode = if mode == LockMode::IntentExclusive && h.mode == LockMode::IntentShared {
                    mode
                } else {
                    LockMode::Exclusive
                };
                at
            }
            None => {
                holds.push(TreeHold {
                    routes: RoutesCache::new(r.clone()),
                    rel: r,
                    mode,
                    ops: 0,
                });
                holds.len() - 1
            }
        })
    }

    /// Whether the lock held on the tree at `at` gives every key lock an
    /// operation in `mode` would take, on the transaction's home thread
    /// ([`TreeHold`]): then the operation asks for none.
    #[inline]
    fn covered(&self, at: usize, mode: LockMode) -> bool {
        self.tree_locks.borrow()[at].covers(mode)
            && self.home.load(Ordering::Acquire) == thread_key()
    }

    /// Counts a read (a get, or a range scan's start) in the tree at `at`
    /// and, in a read-only transaction, at [`TREE_READ_ESCALATE_AT`] reads
    /// and each doubling after, tries (never waiting) to lock the tree
    /// shared when this transaction holds it only in IS.
    #[inline]
    fn count_read(&self, at: usize) -> Result<()> {
        let due = {
            let mut holds = self.tree_locks.borrow_mut();
            let h = &mut holds[at];
            h.ops = h.ops.saturating_add(1);
            self.read_only
                && h.mode == LockMode::IntentShared
                && h.ops >= TREE_READ_ESCALATE_AT
                && h.ops.is_power_of_two()
        };
        match due {
            true => self.escalate_read(at),
            false => Ok(()),
        }
    }

    /// [`count_read`](Self::count_read)'s try, never waiting, to lock the
    /// tree at `at` shared.
    #[cold]
    #[inline(never)]
    fn escalate_read(&self, at: usize) -> Result<()> {
        let mut holds = self.tree_locks.borrow_mut();
        let h = &mut holds[at];
        let target = LockTarget::Relation(h.rel.id);
        match self
            .db
            .store
            .locks
            .lock(self.id, target, LockMode::Shared, false)
        {
            Ok(()) => {
                h.mode = LockMode::Shared;
                Ok(())
            }
            Err(Error::Db(DbError::WouldBlock { .. })) => Ok(()),
            Err(e) => {
                drop(holds);
                Err(self.fail(e))
            }
        }
    }

    /// Counts a write in the tree at `at` and, at `ESCALATE_AT` writes and
    /// each doubling after, asks the lock manager whether its escalation
    /// gave this transaction the whole tree exclusively: from then on its
    /// writes there take no key locks (no other transaction can hold any
    /// lock in the tree, [`TreeHold`]).
    #[inline]
    fn count_write(&self, at: usize) {
        let due = {
            let mut holds = self.tree_locks.borrow_mut();
            let h = &mut holds[at];
            h.ops = h.ops.saturating_add(1);
            h.mode != LockMode::Exclusive
                && h.ops >= crate::lock::ESCALATE_AT
                && h.ops.is_power_of_two()
        };
        if due {
            self.adopt_escalation(at);
        }
    }

    /// [`count_write`](Self::count_write)'s look at whether the lock
    /// manager's escalation gave the tree at `at` exclusively.
    #[cold]
    #[inline(never)]
    fn adopt_escalation(&self, at: usize) {
        let mut holds = self.tree_locks.borrow_mut();
        let h = &mut holds[at];
        let target = LockTarget::Relation(h.rel.id);
        if self.db.store.locks.mode_held(self.id, target) == Some(LockMode::Exclusive) {
            h.mode = LockMode::Exclusive;
        }
    }

    /// The tree `rel`, checked to be one and locked in intention mode
    /// IS, for a range scan that starts: one read toward the tree's read
    /// escalation, as a get. Returns the tree and whether the tree lock
    /// held covers the scan's key locks.
    pub(super) fn tree_for_scan(&self, rel: RelationId) -> Result<(Arc<Relation>, bool)> {
        let at = self.tree_hold(rel, LockMode::IntentShared)?;
        self.count_read(at)?;
        self.db.check_usable()?;
        let tree = self.tree_locks.borrow()[at].rel.clone();
        Ok((tree, self.covered(at, LockMode::IntentShared)))
    }

    /// The storage context.
    pub(super) fn store(&self) -> &Storage {
        &self.db.store
    }

    /// Checks the database is usable (invariant 16) and turns an error into
    /// the transaction's failure.
    pub(super) fn settle<T>(&self, r: Result<T>) -> Result<T> {
        let value = r.map_err(|e| self.fail(e))?;
        self.db.check_usable()?;
        Ok(value)
    }

    /// Inserts a tuple and returns its address.
    pub fn insert(&mut self, rel: RelationId, value: &[u8]) -> Result<TupleId> {
        self.write(rel, None, |s, log, r| s.insert(log, r, value))
    }

    /// Inserts every value of `values`, in order, and returns their
    /// addresses in the same order: what a loop of [`insert`](Self::insert)
    /// does, with the same locks (each new tuple locked exclusively; a call
    /// that will take 4096 tuple locks in the relation tries the escalation
    /// to a relation lock before the first, not at the 4096th), but a page
    /// at a time. The values that go to one page are one
    /// heap-multi-insert record (one record header per page instead of one
    /// per tuple) under one page latch, one free-space update and one undo
    /// entry; a value too large to stay inline is inserted on its own
    /// (its overflow chain first). Rollback removes them all.
    ///
    /// Fails before inserting anything when a value is larger than
    /// [`MAX_VALUE_LEN`](crate::heap::MAX_VALUE_LEN). A failure after that
    /// (an I/O error, which poisons the database) leaves the transaction
    /// holding the values inserted before it, as a loop of `insert` would.
    ///
    /// ```
    /// # fn main() -> keel::Result<()> {
    /// # let tmp = std::env::temp_dir().join(format!("keel-doc-many-{}", std::process::id()));
    /// # let db = keel::Database::open(&tmp, keel::Config::default())?;
    /// let rel = db.create_relation("events")?;
    /// let rows: Vec<Vec<u8>> = (0u32..1000).map(|i| i.to_le_bytes().to_vec()).collect();
    /// let mut tx = db.begin()?;
    /// let tids = tx.insert_many(rel, &rows)?;
    /// tx.commit()?;
    /// assert_eq!(db.begin()?.get(rel, tids[7])?, Some(7u32.to_le_bytes().to_vec()));
    /// # db.close()?;
    /// # std::fs::remove_dir_all(&tmp).ok();
    /// # Ok(())
    /// # }
    /// ```
    pub fn insert_many<I>(&mut self, rel: RelationId, values: I) -> Result<Vec<TupleId>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let values: Vec<I::Item> = values.into_iter().collect();
        let values: Vec<&[u8]> = values.iter().map(AsRef::as_ref).collect();
        self.write(rel, None, |s, log, r| s.insert_many(log, r, &values))
    }

    /// The tuple at `tid`, or `None` if there is none (locks it shared).
    pub fn get(&self, rel: RelationId, tid: TupleId) -> Result<Option<Vec<u8>>> {
        self.read(rel, tid, true)
    }

    /// [`get`](Self::get) that never waits for a lock.
    pub fn try_get(&self, rel: RelationId, tid: TupleId) -> Result<Option<Vec<u8>>> {
        self.read(rel, tid, false)
    }

    fn read(&self, rel: RelationId, tid: TupleId, wait: bool) -> Result<Option<Vec<u8>>> {
        self.live()?;
        self.db.check_usable()?;
        let rel = self.db.user_relation(rel)?;
        rel.expect(RelationKind::Heap)?;
        if tid.page.0 >= rel.page_count() {
            return Ok(None);
        }
        self.lock(LockTarget::Relation(rel.id), LockMode::IntentShared, wait)?;
        self.still_there(&rel)?;
        self.lock(LockTarget::Tuple(rel.id, tid), LockMode::Shared, wait)?;
        let value = self.db.store.get(&rel, tid).map_err(|e| self.fail(e))?;
        // Invariant 16: checked after the lock was granted, so a poisoned
        // transaction's changes (its locks released after the poison was
        // set) are never returned.
        self.db.check_usable()?;
        Ok(value)
    }

    /// Replaces the tuple at `tid` (its address stays valid, invariant 12).
    pub fn update(&mut self, rel: RelationId, tid: TupleId, value: &[u8]) -> Result<()> {
        self.write(rel, Some((tid, true)), |s, log, r| {
            s.update(log, r, tid, value)
        })
    }

    /// [`update`](Self::update) that never waits for a lock.
    pub fn try_update(&mut self, rel: RelationId, tid: TupleId, value: &[u8]) -> Result<()> {
        self.write(rel, Some((tid, false)), |s, log, r| {
            s.update(log, r, tid, value)
        })
    }

    /// Deletes the tuple at `tid`.
    pub fn delete(&mut self, rel: RelationId, tid: TupleId) -> Result<()> {
        self.write(rel, Some((tid, true)), |s, log, r| s.delete(log, r, tid))
    }

    /// [`delete`](Self::delete) that never waits for a lock.
    pub fn try_delete(&mut self, rel: RelationId, tid: TupleId) -> Result<()> {
        self.write(rel, Some((tid, false)), |s, log, r| s.delete(log, r, tid))
    }

    /// Every tuple of `rel` in TupleId order, each locked shared as it is
    /// returned.
    pub fn scan(&self, rel: RelationId) -> Result<Scan<'_>> {
        self.live()?;
        self.db.check_usable()?;
        let rel = self.db.user_relation(rel)?;
        rel.expect(RelationKind::Heap)?;
        self.lock(LockTarget::Relation(rel.id), LockMode::IntentShared, true)?;
        self.still_there(&rel)?;
        Ok(Scan {
            tx: self,
            inner: HeapScan::new(&self.db.store, rel, Some(self.id)),
            failed: false,
        })
    }

    /// Commits: returns once the commit record is durable (under the
    /// default commit policy). A commit that fails leaves the transaction
    /// neither committed nor rolled back (its record may be durable or
    /// not): the database is poisoned and recovery decides.
    pub fn commit(self) -> Result<()> {
        let mut core = self.core.lock();
        end(self.db, &mut core, End::Commit(CommitWait::Policy), || {
            Ok(())
        })
    }

    /// Rolls back every change of this transaction.
    pub fn abort(self) -> Result<()> {
        let mut core = self.core.lock();
        end(self.db, &mut core, End::Rollback, || Ok(()))
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        let core = self.core.get_mut();
        if core.state == TxnState::Active {
            let _ = end(self.db, core, End::Rollback, || Ok(()));
        }
    }
}

/// The tuples of a relation, from [`Transaction::scan`]. It ends after the
/// first error it yields (a lock wait that deadlocked or timed out rolls
/// the transaction back, and no later row could be read): a loop that
/// skips errors ends instead of spinning on them.
pub struct Scan<'tx> {
    tx: &'tx Transaction<'tx>,
    inner: HeapScan<'tx>,
    /// Whether it yielded an error (it yields nothing after one).
    failed: bool,
}

impl Iterator for Scan<'_> {
    type Item = Result<(TupleId, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        // Rows read (and locked) before a rollback are not returned after it.
        let item = match self.tx.not_rolled_back() {
            Err(e) => Err(e),
            Ok(()) => match self.inner.next()? {
                // Invariant 16: checked after the tuple's lock was granted.
                Ok(row) => self.tx.db.check_usable().map(|()| row),
                Err(e) => Err(self.tx.fail(e)),
            },
        };
        self.failed = item.is_err();
        Some(item)
    }
}

impl std::iter::FusedIterator for Scan<'_> {}
