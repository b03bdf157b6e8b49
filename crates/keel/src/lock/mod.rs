//! The lock manager: shared/exclusive tuple locks under intention locks on
//! relations, held until commit or rollback (strict two-phase locking).
//!
//! A transaction locks its relation in an intention mode (IS to read, IX to
//! write) and then each tuple it reads (S) or writes (X). Locks are
//! released all at once when the transaction ends. A request that conflicts
//! waits on a condition variable (the thread blocks); [`LockManager::lock`]
//! with `wait == false` never blocks and fails with `WouldBlock` instead, so
//! a cooperative scheduler can yield and retry.
//!
//! **Lifecycle.** A transaction is registered with [`LockManager::begin`]
//! and ends with [`LockManager::release_all`]. A request of a transaction
//! that is not registered (it ended, or never began) fails with
//! `TxnFinished`, and so does a request that was waiting when its
//! transaction ended: a lock is never granted to a finished transaction,
//! whatever thread asks for it, so no lock outlives its transaction.
//!
//! **Deadlocks.** Before a request waits, the manager records what it
//! waits for: the target and the mode it wants there. The waits-for graph
//! is never stored: an edge from a waiter leads to every transaction that
//! holds a lock on its target conflicting with its mode *now*, computed as
//! the search runs. Requests are granted whenever compatible (no FIFO
//! queue), so a holder can join a target after a waiter on it began
//! waiting (a second reader beside the reader a writer waits for): the
//! waiter then waits for it too, and a cycle closed through it is found
//! like any other. Before each wait the manager searches the graph from the
//! requester: if the requester can reach itself, waiting would never end,
//! and the *requester* is the victim: it gets `Deadlock` and its
//! transaction is rolled back by the caller. Every cycle is found by the
//! request that closes it: a cycle's edges all run from waiters, and each
//! of them runs this search when it starts waiting, seeing every edge
//! present then. A wait longer than the configured timeout fails with
//! `LockTimeout`.
//!
//! **Threads.** A waiting request blocks its thread, so it also stops every
//! other transaction that thread runs. The manager records, for each live
//! transaction, the thread of its latest request (or of `begin`): its
//! *home*. While a thread waits on behalf of transaction W, every other
//! transaction homed on that thread waits for what W waits for (an edge in
//! the graph). A request whose search reaches a transaction homed on the
//! requesting thread itself is a deadlock: one thread that runs two
//! transactions, the second waiting for the first, gets `Deadlock` instead
//! of hanging. The home is a belief, not a proof: a transaction moved to
//! another thread is re-homed by its next request there, and a thread that
//! waits for a transaction it handed away before that transaction's next
//! request (any lock-taking call: a read, a write, a scan) gets `Deadlock`
//! — a spurious but safe outcome (the victim is rolled back and may
//! retry), where waiting could hang forever. The manager publishes each
//! transaction's home to it (an atomic [`LockManager::begin`] returns,
//! stored at every change), so a transaction whose tree lock covers a key
//! lock may skip that request only on its home thread, where the request
//! would change nothing.
//!
//! **Escalation.** A transaction that takes [`ESCALATE_AT`] tuple locks in
//! one relation tries (without waiting) to lock the whole relation, shared
//! or exclusive; from then on its tuple requests there are covered and
//! add nothing to the table, so a long scan or a long run of reads does
//! not grow it without bound. A bulk insert that will reach that count
//! tries it before its first tuple lock
//! ([`LockManager::expect_tuple_locks`]). A relation-level S lock keeps
//! writers of that relation waiting until the transaction ends.
//!
//! **Latches.** A lock is never waited for while a page latch is held
//! (invariant 11); the only lock taken under a latch is the one on a tuple
//! being inserted, and that request never waits.
//!
//! One mutex guards the whole table; waiters are woken with `notify_all`
//! when any transaction releases. A request for a target nobody holds (a
//! key read for the first time, the common case) is granted with one probe
//! of the table under that mutex. Requests are granted whenever compatible,
//! so a stream of readers can delay a writer (no FIFO queue yet).
//!
//! **Model checking.** The table runs on [`Primitives`] (a monitor for the
//! table and its waits, the calling thread's identity): Keel runs it on
//! [`Os`], and `model.rs` checks the wait and deadlock path under the
//! `shuttle` model checker: two- and three-way deadlocks, lock upgrades,
//! a cycle closed through a holder granted after its waiter began
//! waiting, a transaction ended on another thread while its request
//! waits, one thread running two transactions, and timeouts. It asserts that no two
//! incompatible locks are ever held at once, that every cycle is broken
//! by exactly one victim, that every waiter wakes, and that no lock is
//! granted to a finished transaction.

#[cfg(test)]
mod model;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap as HashMap;
use std::time::{Duration, Instant};

use crate::error::{DbError, Result};
use crate::sync::{Monitor, Os, Primitives};
use crate::types::{RelationId, TupleId, TxnId};

/// A lock mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockMode {
    /// Intention to read tuples of a relation.
    IntentShared,
    /// Intention to write tuples of a relation.
    IntentExclusive,
    /// Read.
    Shared,
    /// Write.
    Exclusive,
}

impl LockMode {
    /// Whether a lock in `self` can be granted while another transaction
    /// holds `held`.
    pub fn compatible_with(self, held: LockMode) -> bool {
        use LockMode::*;
        match (self, held) {
            (Exclusive, _) | (_, Exclusive) => false,
            (IntentShared, _) | (_, IntentShared) => true,
            (IntentExclusive, IntentExclusive) | (Shared, Shared) => true,
            (IntentExclusive, Shared) | (Shared, IntentExclusive) => false,
        }
    }

    /// Whether holding `self` already gives everything `want` does.
    fn covers(self, want: LockMode) -> bool {
        use LockMode::*;
        match (self, want) {
            (a, b) if a == b => true,
            (Exclusive, _) => true,
            (Shared, IntentShared) | (IntentExclusive, IntentShared) => true,
            _ => false,
        }
    }

    /// The weakest mode covering both (a lock upgrade).
    fn join(self, other: LockMode) -> LockMode {
        use LockMode::*;
        if self.covers(other) {
            self
        } else if other.covers(self) {
            other
        } else {
            // S + IX (SIX) is not modelled: take X.
            Exclusive
        }
    }
}

/// What is locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockTarget {
    /// A whole relation (intention locks).
    Relation(RelationId),
    /// One tuple, by home address.
    Tuple(RelationId, TupleId),
    /// One key of a tree, by its lock name (`btree::key_lock`: a hash of
    /// the key, or the end of the tree).
    Key(RelationId, u64),
}

impl LockTarget {
    /// The relation of a tuple or key lock (what escalation covers).
    fn row_relation(self) -> Option<RelationId> {
        match self {
            LockTarget::Tuple(rel, _) | LockTarget::Key(rel, _) => Some(rel),
            LockTarget::Relation(_) => None,
        }
    }
}

/// Emptied lock lists the manager keeps for reuse: about one per thread
/// that runs transactions.
const SPARE_LISTS: usize = 64;
/// The longest lock list kept for reuse (16 KiB of targets): a transaction
/// that took more gives its list back to the allocator.
const SPARE_LIST_CAPACITY: usize = 1024;

#[derive(Default)]
struct State {
    /// Live transactions: their home thread (module docs, Threads), the
    /// targets they hold and their tuple locks per relation ([`Live`]).
    live: HashMap<TxnId, Live>,
    /// Threads waiting in [`LockManager::lock`] now, and for which
    /// transaction.
    blocked: HashMap<ThreadKey, TxnId>,
    /// Holders per target (almost always one, so no inner allocation then).
    granted: HashMap<LockTarget, Holders>,
    /// Emptied lists of ended transactions (`Live::held` and
    /// `Live::rows`), given to the next ones so that a transaction's first
    /// locks do not grow lists from nothing (at most [`SPARE_LISTS`], each
    /// held list of at most [`SPARE_LIST_CAPACITY`]).
    spare: Vec<(Vec<LockTarget>, RowCounts)>,
    /// Transactions waiting now: the target and the mode they wait to be
    /// granted there. Their edges in the waits-for graph are the current
    /// holders blocking that mode ([`State::deadlocked`]).
    waiting: HashMap<TxnId, (LockTarget, LockMode)>,
    stats: LockStats,
}

/// A live transaction as the manager keeps it: one entry per transaction,
/// so that a grant and the end touch one map for it.
struct Live {
    home: Home,
    /// The targets it holds, each once.
    held: Vec<LockTarget>,
    rows: RowCounts,
}

/// The tuple locks a transaction took per relation (for escalation); a
/// transaction works in few relations, so a list.
type RowCounts = Vec<(RelationId, u32)>;

/// A live transaction's home thread, also published to the transaction
/// ([`LockManager::begin`]): a transaction that finds its home is the
/// calling thread may skip a request its tree lock covers, since that
/// request would change nothing (not even the home).
struct Home {
    thread: ThreadKey,
    shared: Arc<AtomicU64>,
}

impl Home {
    fn set(&mut self, me: ThreadKey) {
        if self.thread != me {
            self.thread = me;
            self.shared.store(me.0, Ordering::Release);
        }
    }
}

/// The transactions holding a lock on one target: almost always one, kept
/// inline so granting it allocates nothing (`Vec::new` does not allocate).
struct Holders {
    first: (TxnId, LockMode),
    rest: Vec<(TxnId, LockMode)>,
}

impl Holders {
    fn iter(&self) -> impl Iterator<Item = &(TxnId, LockMode)> {
        std::iter::once(&self.first).chain(self.rest.iter())
    }

    fn find_mut(&mut self, txn: TxnId) -> Option<&mut (TxnId, LockMode)> {
        if self.first.0 == txn {
            return Some(&mut self.first);
        }
        self.rest.iter_mut().find(|(t, _)| *t == txn)
    }

    /// Removes `txn`; returns whether no holder is left.
    fn remove(&mut self, txn: TxnId) -> bool {
        if self.first.0 == txn {
            match self.rest.pop() {
                Some(last) => self.first = last,
                None => return true,
            }
        } else {
            self.rest.retain(|(t, _)| *t != txn);
        }
        false
    }
}

/// Tuple locks a transaction takes in one relation before the manager tries
/// to lock the whole relation instead (lock escalation).
pub const ESCALATE_AT: u32 = 4096;

impl State {
    /// The mode `txn` holds on `target`, if any.
    fn held_mode(&self, txn: TxnId, target: LockTarget) -> Option<LockMode> {
        self.granted
            .get(&target)
            .and_then(|h| h.iter().find(|(t, _)| *t == txn).map(|(_, m)| *m))
    }

    /// Whether `txn` already has what `mode` on `target` gives: a lock on it
    /// that covers the mode, or a relation lock that covers every tuple.
    fn covered(&self, txn: TxnId, target: LockTarget, mode: LockMode) -> bool {
        self.held_mode(txn, target).is_some_and(|h| h.covers(mode))
            || self.relation_covers(txn, target, mode)
    }

    /// The mode to grant `txn` on `target` when it asks for `mode`: `mode`
    /// joined with what it holds there (an upgrade).
    fn wanted(&self, txn: TxnId, target: LockTarget, mode: LockMode) -> LockMode {
        self.held_mode(txn, target).map_or(mode, |h| h.join(mode))
    }

    /// Whether `txn`'s lock on the tuple's relation already gives `mode` on
    /// every tuple of it (after an escalation).
    fn relation_covers(&self, txn: TxnId, target: LockTarget, mode: LockMode) -> bool {
        let Some(rel) = target.row_relation() else {
            return false;
        };
        match self.held_mode(txn, LockTarget::Relation(rel)) {
            Some(LockMode::Exclusive) => true,
            Some(LockMode::Shared) => mode == LockMode::Shared,
            _ => false,
        }
    }

    /// Counts a granted tuple lock; every [`ESCALATE_AT`] of them, tries
    /// (never waiting) to lock the whole relation in a mode that covers
    /// them, so a long transaction stops growing the table.
    fn count_row_lock(&mut self, txn: TxnId, target: LockTarget, mode: LockMode) {
        let Some(rel) = target.row_relation() else {
            return;
        };
        let Some(live) = self.live.get_mut(&txn) else {
            return;
        };
        let n = match live.rows.iter_mut().find(|(r, _)| *r == rel) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                live.rows.push((rel, 1));
                1
            }
        };
        if n.is_multiple_of(ESCALATE_AT) {
            self.escalate(txn, rel, mode);
        }
    }

    /// Tries (never waiting) to lock relation `rel` for `txn` in a mode
    /// that covers tuple locks in `mode`: shared for reads, exclusive for
    /// writes (module docs, Escalation).
    fn escalate(&mut self, txn: TxnId, rel: RelationId, mode: LockMode) {
        let whole = LockTarget::Relation(rel);
        let want = match mode {
            LockMode::Exclusive => LockMode::Exclusive,
            _ => LockMode::Shared,
        };
        let want = self.held_mode(txn, whole).map_or(want, |h| h.join(want));
        if !self.conflicts(txn, whole, want) {
            self.grant(txn, whole, want);
        }
    }

    /// Whether another transaction's lock on `target` blocks `txn` from
    /// `mode`.
    fn conflicts(&self, txn: TxnId, target: LockTarget, mode: LockMode) -> bool {
        self.granted.get(&target).is_some_and(|h| {
            h.iter()
                .any(|(t, m)| *t != txn && !mode.compatible_with(*m))
        })
    }

    fn grant(&mut self, txn: TxnId, target: LockTarget, mode: LockMode) {
        let Some(live) = self.live.get_mut(&txn) else {
            // Every caller checked that `txn` is live under this lock.
            debug_assert!(false, "a grant to {txn:?}, which is not live");
            return;
        };
        match self.granted.get_mut(&target) {
            Some(h) => match h.find_mut(txn) {
                Some(entry) => {
                    entry.1 = entry.1.join(mode);
                    return;
                }
                None => h.rest.push((txn, mode)),
            },
            None => {
                self.granted.insert(
                    target,
                    Holders {
                        first: (txn, mode),
                        rest: Vec::new(),
                    },
                );
            }
        }
        live.held.push(target);
    }

    /// Whether `from`, which waits on thread `me`, can never be granted:
    /// the waits-for graph, with the edges the blocked threads add (module
    /// docs, Threads), leads from it to a transaction homed on `me` (which
    /// includes `from` itself: a cycle). A waiter's edges are the holders
    /// blocking it now ([`waits_for`](Self::waits_for)), so a holder
    /// granted after the waiter began waiting is one of them.
    fn deadlocked(&self, from: TxnId, me: ThreadKey) -> bool {
        let mut seen = HashSet::new();
        let mut stack: Vec<TxnId> = self.waits_for(from).collect();
        while let Some(t) = stack.pop() {
            if !seen.insert(t) {
                continue;
            }
            let home = self.live.get(&t).map(|l| l.home.thread);
            if home == Some(me) {
                return true;
            }
            stack.extend(self.waits_for(t));
            // Its thread waits for another of its transactions.
            if let Some(w) = home.and_then(|h| self.blocked.get(&h))
                && *w != t
            {
                stack.push(*w);
            }
        }
        false
    }

    /// The transactions `txn` waits for now: those whose locks on the
    /// target it waits on block the mode it wants there (none when it does
    /// not wait).
    fn waits_for(&self, txn: TxnId) -> impl Iterator<Item = TxnId> + '_ {
        let wait = self.waiting.get(&txn).copied();
        wait.into_iter().flat_map(move |(target, mode)| {
            self.granted
                .get(&target)
                .into_iter()
                .flat_map(Holders::iter)
                .filter(move |(t, m)| *t != txn && !mode.compatible_with(*m))
                .map(|(t, _)| *t)
        })
    }

    /// Forgets the wait of `txn` on thread `me`.
    fn stop_waiting(&mut self, txn: TxnId, me: ThreadKey) {
        self.waiting.remove(&txn);
        self.blocked.remove(&me);
    }
}

/// A thread, as the lock manager tells them apart (never reused, unlike
/// the OS's thread ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ThreadKey(u64);

/// Counters of the lock manager.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockStats {
    /// Requests that had to wait.
    pub waits: u64,
    /// Requests refused as deadlock victims.
    pub deadlocks: u64,
    /// Requests that timed out.
    pub timeouts: u64,
}

/// One request's progress through [`LockManager::lock`]'s wait loop.
struct Request {
    txn: TxnId,
    target: LockTarget,
    /// The mode asked for.
    mode: LockMode,
    /// The mode to grant (`mode` joined with what `txn` holds there), once
    /// the request was admitted.
    want: Option<LockMode>,
    wait: bool,
    me: ThreadKey,
    waited: bool,
    /// Granted but not kept ([`LockManager::lock_instant`]).
    instant: bool,
}

impl State {
    /// One step of `req` under the table's lock: `Some` when it settled
    /// (granted, refused, or failed), `None` when it must sleep until a
    /// release or its deadline (`timed_out`: the sleep before this step
    /// ended at the deadline).
    fn step(&mut self, req: &mut Request, timed_out: bool) -> Option<Result<()>> {
        let (txn, me) = (req.txn, req.me);
        if req.want.is_none()
            && let Some(settled) = self.grant_unheld(req)
        {
            return Some(settled);
        }
        let want = match req.want {
            Some(want) => want,
            None => match self.admit(req) {
                Ok(want) => want,
                Err(settled) => return Some(settled),
            },
        };
        if !self.live.contains_key(&txn) {
            // It ended (on another thread) while this request waited.
            self.stop_waiting(txn, me);
            return Some(Err(DbError::TxnFinished(txn).into()));
        }
        if !self.conflicts(txn, req.target, want) {
            self.stop_waiting(txn, me);
            if req.instant {
                return Some(Ok(()));
            }
            self.grant(txn, req.target, want);
            self.count_row_lock(txn, req.target, want);
            return Some(Ok(()));
        }
        if timed_out {
            self.stop_waiting(txn, me);
            self.stats.timeouts += 1;
            return Some(Err(DbError::LockTimeout { txn }.into()));
        }
        if !req.wait {
            return Some(Err(DbError::WouldBlock { txn }.into()));
        }
        self.waiting.insert(txn, (req.target, want));
        if self.deadlocked(txn, me) {
            self.stop_waiting(txn, me);
            self.stats.deadlocks += 1;
            return Some(Err(DbError::Deadlock { txn }.into()));
        }
        self.blocked.insert(me, txn);
        if !req.waited {
            req.waited = true;
            self.stats.waits += 1;
        }
        None
    }

    /// The request's first step when nobody holds its target (the common
    /// case: a key lock no one else took): settled with one probe of the
    /// table, as the general path would settle it (re-homed, covered by a
    /// relation lock, or granted in the mode asked for, since no holder
    /// means no conflict and nothing to upgrade). `None`: someone holds the
    /// target; the general path decides.
    fn grant_unheld(&mut self, req: &Request) -> Option<Result<()>> {
        let (txn, target, mode) = (req.txn, req.target, req.mode);
        match self.live.get_mut(&txn) {
            Some(live) => live.home.set(req.me),
            None => return Some(Err(DbError::TxnFinished(txn).into())),
        }
        if self.relation_covers(txn, target, mode) {
            return Some(Ok(()));
        }
        let std::collections::hash_map::Entry::Vacant(slot) = self.granted.entry(target) else {
            return None;
        };
        // stop_waiting, on fields apart from the table entry held here.
        self.waiting.remove(&txn);
        self.blocked.remove(&req.me);
        if req.instant {
            return Some(Ok(()));
        }
        slot.insert(Holders {
            first: (txn, mode),
            rest: Vec::new(),
        });
        if let Some(live) = self.live.get_mut(&txn) {
            live.held.push(target);
        }
        self.count_row_lock(txn, target, mode);
        Some(Ok(()))
    }

    /// The request's first step: re-homes its transaction on the calling
    /// thread (module docs, Threads) and decides the mode to grant. `Err`
    /// settles it at once: the transaction is not live, or what it holds
    /// already covers the request.
    fn admit(&mut self, req: &mut Request) -> std::result::Result<LockMode, Result<()>> {
        let (txn, target, mode) = (req.txn, req.target, req.mode);
        match self.live.get_mut(&txn) {
            Some(live) => live.home.set(req.me),
            None => return Err(Err(DbError::TxnFinished(txn).into())),
        }
        if self.covered(txn, target, mode) {
            return Err(Ok(()));
        }
        let want = self.wanted(txn, target, mode);
        req.want = Some(want);
        Ok(want)
    }

    /// [`LockManager::lock_new_tuples`] under the table's lock.
    fn lock_new_tuples(
        &mut self,
        txn: TxnId,
        me: ThreadKey,
        rel: RelationId,
        tids: &[TupleId],
    ) -> Result<usize> {
        match self.live.get_mut(&txn) {
            Some(live) => live.home.set(me),
            None => return Err(DbError::TxnFinished(txn).into()),
        }
        let mode = LockMode::Exclusive;
        for (i, &tid) in tids.iter().enumerate() {
            let target = LockTarget::Tuple(rel, tid);
            if self.relation_covers(txn, target, mode) {
                // An escalation covers every tuple of the relation.
                return Ok(tids.len());
            }
            if self.covered(txn, target, mode) {
                continue;
            }
            let want = self.wanted(txn, target, mode);
            if self.conflicts(txn, target, want) {
                return Ok(i);
            }
            self.grant(txn, target, want);
            self.count_row_lock(txn, target, want);
        }
        Ok(tids.len())
    }

    /// Ends `txn`: forgets it and releases its locks; returns whether a
    /// waiter may have something new to see (a release, or a request of
    /// `txn` itself that must now fail).
    fn end(&mut self, txn: TxnId) -> bool {
        self.waiting.remove(&txn);
        let Some(Live {
            mut held, mut rows, ..
        }) = self.live.remove(&txn)
        else {
            return false;
        };
        for target in held.drain(..) {
            if self.granted.get_mut(&target).is_some_and(|h| h.remove(txn)) {
                self.granted.remove(&target);
            }
        }
        if self.spare.len() < SPARE_LISTS && held.capacity() <= SPARE_LIST_CAPACITY {
            rows.clear();
            self.spare.push((held, rows));
        }
        true
    }
}

/// The lock table, on the operating system's primitives ([`Os`]) in Keel
/// and on the model checker's in `model.rs`.
pub(crate) struct LockManager<P: Primitives = Os> {
    state: P::Monitor<State>,
    timeout: Option<Duration>,
}

impl<P: Primitives> LockManager<P> {
    /// A lock manager whose waits fail after `timeout` (`None`: wait until
    /// granted or a deadlock is found).
    pub(crate) fn new(timeout: Option<Duration>) -> Self {
        LockManager {
            state: P::Monitor::new(State::default()),
            timeout,
        }
    }

    /// Registers a new transaction, homed on the calling thread (module
    /// docs, Lifecycle).
    ///
    /// Returns the transaction's home as the manager keeps it, updated
    /// whenever a request re-homes it: the thread key of the latest
    /// request's thread (module docs, Threads).
    pub(crate) fn begin(&self, txn: TxnId) -> Arc<AtomicU64> {
        let me = ThreadKey(P::thread_key());
        let shared = Arc::new(AtomicU64::new(me.0));
        let home = Home {
            thread: me,
            shared: Arc::clone(&shared),
        };
        self.state.with(|st| {
            let (held, rows) = st.spare.pop().unwrap_or_default();
            st.live.insert(txn, Live { home, held, rows })
        });
        shared
    }

    /// Locks `target` in `mode` for `txn`, waiting if `wait` (module docs).
    /// A transaction that is not live gets `TxnFinished`.
    pub(crate) fn lock(
        &self,
        txn: TxnId,
        target: LockTarget,
        mode: LockMode,
        wait: bool,
    ) -> Result<()> {
        self.settle(txn, target, mode, wait, false)
    }

    /// Waits (if `wait`) until `target` could be locked in `mode` for
    /// `txn`, and returns without keeping the lock: an *instant-duration*
    /// request, as a tree insert makes on the key after the one it inserts
    /// (ARIES/KVL), so it waits for a scan that read that gap but does not
    /// hold others back. Deadlocks and timeouts as for [`lock`](Self::lock).
    pub(crate) fn lock_instant(
        &self,
        txn: TxnId,
        target: LockTarget,
        mode: LockMode,
        wait: bool,
    ) -> Result<()> {
        self.settle(txn, target, mode, wait, true)
    }

    /// Runs one request through the wait loop: kept once granted, or only
    /// checked grantable when `instant`.
    fn settle(
        &self,
        txn: TxnId,
        target: LockTarget,
        mode: LockMode,
        wait: bool,
        instant: bool,
    ) -> Result<()> {
        let mut req = Request {
            txn,
            target,
            mode,
            want: None,
            wait,
            me: ThreadKey(P::thread_key()),
            waited: false,
            instant,
        };
        // A timeout too long to represent is no deadline.
        let deadline = self.timeout.and_then(|d| Instant::now().checked_add(d));
        self.state
            .wait_until(deadline, |st, timed_out| st.step(&mut req, timed_out))
    }

    /// Says that `txn` is about to take `n` more tuple locks in `rel` in
    /// `mode` (a bulk insert's): when they would reach [`ESCALATE_AT`] tuple
    /// locks in the relation, the escalation the one reaching it would try
    /// is tried now, never waiting, so a bulk operation does not fill the
    /// table first. A transaction that is not live gets `TxnFinished`.
    pub(crate) fn expect_tuple_locks(
        &self,
        txn: TxnId,
        rel: RelationId,
        n: usize,
        mode: LockMode,
    ) -> Result<()> {
        self.state.with(|st| {
            if !st.live.contains_key(&txn) {
                return Err(DbError::TxnFinished(txn).into());
            }
            let taken = st.live.get(&txn).map_or(0, |l| {
                l.rows
                    .iter()
                    .find(|(r, _)| *r == rel)
                    .map_or(0, |&(_, n)| n as usize)
            });
            if taken.saturating_add(n) >= ESCALATE_AT as usize {
                st.escalate(txn, rel, mode);
            }
            Ok(())
        })
    }

    /// Locks the tuples `tids` of `rel` exclusively for `txn`, in order and
    /// never waiting: the new tuples of a bulk insert, locked under their
    /// page's latch (module docs, Latches). Each is granted as
    /// [`lock`](Self::lock) with `wait == false` grants it (escalation
    /// included), all under one acquisition of the table's mutex. Returns
    /// how many were granted: the first refused (a reader locked that
    /// address while it held nothing) ends the run. A transaction that is
    /// not live gets `TxnFinished`.
    pub(crate) fn lock_new_tuples(
        &self,
        txn: TxnId,
        rel: RelationId,
        tids: &[TupleId],
    ) -> Result<usize> {
        let me = ThreadKey(P::thread_key());
        self.state.with(|st| st.lock_new_tuples(txn, me, rel, tids))
    }

    /// The mode `txn` holds on `target`, if any (a tree operation learns
    /// so of an escalation the manager made).
    pub(crate) fn mode_held(&self, txn: TxnId, target: LockTarget) -> Option<LockMode> {
        self.state.with(|st| st.held_mode(txn, target))
    }

    /// Ends `txn`: releases every lock it holds and forgets it, so a
    /// request of it still waiting, or made later, fails with
    /// `TxnFinished` (module docs, Lifecycle).
    pub(crate) fn release_all(&self, txn: TxnId) {
        if self.state.with(|st| st.end(txn)) {
            self.state.notify_all();
        }
    }

    /// Number of locks `txn` holds.
    #[cfg(test)]
    pub(crate) fn held_by(&self, txn: TxnId) -> usize {
        self.state
            .with(|st| st.live.get(&txn).map_or(0, |l| l.held.len()))
    }

    /// The counters.
    pub(crate) fn stats(&self) -> LockStats {
        self.state.with(|st| st.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::sync::Monitor;
    use crate::types::{PageId, SlotId};
    use std::sync::Arc;

    const R: RelationId = RelationId(1);

    fn tuple(n: u16) -> LockTarget {
        LockTarget::Tuple(R, TupleId::new(PageId(0), SlotId(n)))
    }

    /// A lock manager with transactions 1..=n begun.
    fn manager(timeout: Option<Duration>, n: u64) -> Arc<LockManager> {
        let lm = Arc::new(LockManager::new(timeout));
        (1..=n).for_each(|t| {
            lm.begin(TxnId(t));
        });
        lm
    }

    #[test]
    fn compatibility_matrix() {
        use LockMode::*;
        let modes = [IntentShared, IntentExclusive, Shared, Exclusive];
        let expect = [
            [true, true, true, false],
            [true, true, false, false],
            [true, false, true, false],
            [false, false, false, false],
        ];
        for (i, a) in modes.iter().enumerate() {
            for (j, b) in modes.iter().enumerate() {
                assert_eq!(a.compatible_with(*b), expect[i][j], "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn shared_locks_share_and_exclusive_waits_until_release() {
        let lm = manager(Some(Duration::from_secs(10)), 3);
        let (a, b, c) = (TxnId(1), TxnId(2), TxnId(3));
        lm.lock(a, tuple(0), LockMode::Shared, true).unwrap();
        lm.lock(b, tuple(0), LockMode::Shared, true).unwrap();
        let e = lm
            .lock(c, tuple(0), LockMode::Exclusive, false)
            .unwrap_err();
        assert!(matches!(e, Error::Db(DbError::WouldBlock { .. })), "{e}");
        let lm2 = Arc::clone(&lm);
        let waiter = std::thread::spawn(move || lm2.lock(c, tuple(0), LockMode::Exclusive, true));
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "X was granted while S locks were held"
        );
        lm.release_all(a);
        lm.release_all(b);
        waiter.join().unwrap().unwrap();
        assert_eq!(lm.held_by(c), 1);
        assert_eq!(lm.stats().waits, 1);
    }

    #[test]
    fn a_deadlock_makes_the_requester_the_victim() {
        let lm = manager(None, 2);
        let (a, b) = (TxnId(1), TxnId(2));
        lm.lock(a, tuple(1), LockMode::Exclusive, true).unwrap();
        lm.lock(b, tuple(2), LockMode::Exclusive, true).unwrap();
        let lm2 = Arc::clone(&lm);
        let first = std::thread::spawn(move || lm2.lock(a, tuple(2), LockMode::Exclusive, true));
        while !lm.state.with(|st| st.waiting.contains_key(&a)) {
            std::thread::yield_now();
        }
        let e = lm.lock(b, tuple(1), LockMode::Exclusive, true).unwrap_err();
        assert!(
            matches!(e, Error::Db(DbError::Deadlock { txn }) if txn == b),
            "{e}"
        );
        lm.release_all(b);
        first.join().unwrap().unwrap();
        assert_eq!(lm.stats().deadlocks, 1);
    }

    #[test]
    fn many_tuple_locks_escalate_to_the_relation() {
        let lm = manager(None, 2);
        let (a, b) = (TxnId(1), TxnId(2));
        let rel = LockTarget::Relation(R);
        lm.lock(a, rel, LockMode::IntentShared, true).unwrap();
        for n in 0..ESCALATE_AT as u16 + 100 {
            lm.lock(a, tuple(n), LockMode::Shared, true).unwrap();
        }
        assert_eq!(
            lm.held_by(a),
            ESCALATE_AT as usize + 1,
            "after escalation, tuple locks are covered by the relation lock"
        );
        // Other readers go on; a writer must wait for the escalated lock.
        lm.lock(b, rel, LockMode::IntentShared, false).unwrap();
        lm.lock(b, tuple(9), LockMode::Shared, false).unwrap();
        assert!(lm.lock(b, rel, LockMode::IntentExclusive, false).is_err());
        lm.release_all(a);
        lm.lock(b, rel, LockMode::IntentExclusive, false).unwrap();
    }

    #[test]
    fn new_tuples_are_locked_in_one_pass_until_one_is_refused() {
        let lm = manager(None, 3);
        let (a, b, c) = (TxnId(1), TxnId(2), TxnId(3));
        let tid = |n: u16| TupleId::new(PageId(0), SlotId(n));
        lm.lock(a, LockTarget::Relation(R), LockMode::IntentExclusive, true)
            .unwrap();
        // A reader locked an address no tuple has yet.
        lm.lock(b, tuple(3), LockMode::Shared, true).unwrap();
        let tids: Vec<TupleId> = (0..6).map(tid).collect();
        assert_eq!(lm.lock_new_tuples(a, R, &tids).unwrap(), 3);
        assert!(lm.lock(c, tuple(2), LockMode::Shared, false).is_err());
        lm.lock(c, tuple(4), LockMode::Shared, false).unwrap();
        // Locks it holds already are granted again at once.
        assert_eq!(lm.lock_new_tuples(a, R, &tids[..3]).unwrap(), 3);
        assert_eq!(lm.held_by(a), 4);
        // Escalation as for single requests: the relation lock covers the
        // rest of the run, which adds nothing to the table.
        lm.release_all(b);
        lm.release_all(c);
        let many: Vec<TupleId> = (10..10 + ESCALATE_AT as u16 + 100).map(tid).collect();
        assert_eq!(lm.lock_new_tuples(a, R, &many).unwrap(), many.len());
        assert_eq!(lm.held_by(a), ESCALATE_AT as usize + 1);
        lm.release_all(a);
        let e = lm.lock_new_tuples(a, R, &tids).unwrap_err();
        assert!(matches!(e, Error::Db(DbError::TxnFinished(_))), "{e}");
    }

    #[test]
    fn a_bulk_insert_reaching_the_threshold_escalates_before_its_first_lock() {
        let lm = manager(None, 2);
        let (a, b) = (TxnId(1), TxnId(2));
        let x = LockMode::Exclusive;
        let rel = LockTarget::Relation(R);
        lm.lock(a, rel, LockMode::IntentExclusive, true).unwrap();
        lm.lock(a, tuple(0), x, true).unwrap();
        // Short of the threshold: nothing changes.
        lm.expect_tuple_locks(a, R, ESCALATE_AT as usize - 2, x)
            .unwrap();
        assert_eq!(lm.held_by(a), 2);
        lm.lock(b, rel, LockMode::IntentShared, false).unwrap();
        // Reaching it while another transaction holds an intention lock:
        // the escalation is refused without waiting.
        lm.expect_tuple_locks(a, R, ESCALATE_AT as usize - 1, x)
            .unwrap();
        assert!(lm.lock(b, tuple(7), LockMode::Shared, false).is_ok());
        lm.release_all(b);
        lm.expect_tuple_locks(a, R, ESCALATE_AT as usize - 1, x)
            .unwrap();
        let tids: Vec<TupleId> = (1..100)
            .map(|n| TupleId::new(PageId(0), SlotId(n)))
            .collect();
        assert_eq!(lm.lock_new_tuples(a, R, &tids).unwrap(), tids.len());
        assert_eq!(lm.held_by(a), 2, "the relation lock covers the run");
        lm.begin(b);
        assert!(lm.lock(b, rel, LockMode::IntentShared, false).is_err());
        lm.release_all(a);
        assert!(lm.expect_tuple_locks(a, R, 1, x).is_err());
    }

    #[test]
    fn a_request_pending_when_its_transaction_ends_is_never_granted() {
        let lm = manager(None, 2);
        let (a, b) = (TxnId(1), TxnId(2));
        lm.lock(b, tuple(4), LockMode::Exclusive, true).unwrap();
        let lm2 = Arc::clone(&lm);
        let pending = std::thread::spawn(move || lm2.lock(a, tuple(4), LockMode::Exclusive, true));
        while !lm.state.with(|st| st.waiting.contains_key(&a)) {
            std::thread::yield_now();
        }
        // `a` ends (rolled back on another thread) while its request waits.
        lm.release_all(a);
        lm.release_all(b);
        let e = pending.join().unwrap().unwrap_err();
        assert!(
            matches!(e, Error::Db(DbError::TxnFinished(t)) if t == a),
            "{e}"
        );
        assert_eq!(
            lm.held_by(a),
            0,
            "a lock was granted to a finished transaction"
        );
        let e = lm.lock(a, tuple(5), LockMode::Shared, true).unwrap_err();
        assert!(
            matches!(e, Error::Db(DbError::TxnFinished(t)) if t == a),
            "{e}"
        );
    }

    #[test]
    fn a_thread_waiting_for_a_transaction_it_runs_is_deadlocked() {
        let lm = manager(None, 3);
        let (a, b, c) = (TxnId(1), TxnId(2), TxnId(3));
        lm.lock(a, tuple(6), LockMode::Exclusive, true).unwrap();
        let e = lm.lock(b, tuple(6), LockMode::Shared, true).unwrap_err();
        assert!(
            matches!(e, Error::Db(DbError::Deadlock { txn }) if txn == b),
            "{e}"
        );
        // `c`, on another thread, waits for `a` holding tuple 7; this
        // thread (running `a`) then asks for tuple 7 for `b`.
        lm.lock(c, tuple(7), LockMode::Exclusive, true).unwrap();
        let lm2 = Arc::clone(&lm);
        let waiter = std::thread::spawn(move || lm2.lock(c, tuple(6), LockMode::Shared, true));
        while !lm.state.with(|st| st.waiting.contains_key(&c)) {
            std::thread::yield_now();
        }
        let e = lm.lock(b, tuple(7), LockMode::Shared, true).unwrap_err();
        assert!(
            matches!(e, Error::Db(DbError::Deadlock { txn }) if txn == b),
            "{e}"
        );
        lm.release_all(a);
        waiter.join().unwrap().unwrap();
        assert_eq!(lm.stats().deadlocks, 2);
        assert!(
            lm.state.with(|st| st.blocked.is_empty()),
            "no thread is left waiting"
        );
    }

    #[test]
    fn a_timeout_too_long_to_represent_is_no_deadline() {
        let lm = manager(Some(Duration::MAX), 2);
        let (a, b) = (TxnId(1), TxnId(2));
        lm.lock(a, tuple(8), LockMode::Exclusive, true).unwrap();
        let lm2 = Arc::clone(&lm);
        let waiter = std::thread::spawn(move || lm2.lock(b, tuple(8), LockMode::Shared, true));
        while !lm.state.with(|st| st.waiting.contains_key(&b)) {
            std::thread::yield_now();
        }
        lm.release_all(a);
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn upgrades_and_timeouts() {
        let lm = manager(Some(Duration::from_millis(30)), 2);
        let (a, b) = (TxnId(1), TxnId(2));
        lm.lock(a, tuple(3), LockMode::Shared, true).unwrap();
        lm.lock(a, tuple(3), LockMode::Exclusive, true).unwrap();
        assert_eq!(lm.held_by(a), 1, "an upgrade keeps one entry");
        // On another thread: on this one, waiting for `a` is a deadlock.
        let lm2 = Arc::clone(&lm);
        let e = std::thread::spawn(move || lm2.lock(b, tuple(3), LockMode::Shared, true))
            .join()
            .unwrap()
            .unwrap_err();
        assert!(matches!(e, Error::Db(DbError::LockTimeout { .. })), "{e}");
        lm.lock(a, LockTarget::Relation(R), LockMode::IntentExclusive, true)
            .unwrap();
        lm.lock(b, LockTarget::Relation(R), LockMode::IntentShared, true)
            .unwrap();
        assert!(
            lm.lock(b, LockTarget::Relation(R), LockMode::Shared, false)
                .is_err()
        );
    }

    /// A transaction reusing the lock list an ended one left holds only
    /// its own locks, and what the ended one held is free.
    #[test]
    fn a_reused_lock_list_starts_empty() {
        let lm = manager(Some(Duration::from_millis(30)), 3);
        let (a, b, c) = (TxnId(1), TxnId(2), TxnId(3));
        for n in 0..5 {
            lm.lock(a, tuple(n), LockMode::Exclusive, true).unwrap();
        }
        lm.release_all(a);
        lm.lock(b, tuple(9), LockMode::Shared, true).unwrap();
        assert_eq!(lm.held_by(b), 1);
        for n in 0..5 {
            lm.lock(c, tuple(n), LockMode::Exclusive, false).unwrap();
        }
        assert_eq!(lm.held_by(c), 5);
        lm.release_all(b);
        lm.release_all(c);
        assert_eq!((lm.held_by(b), lm.held_by(c)), (0, 0));
    }
}
