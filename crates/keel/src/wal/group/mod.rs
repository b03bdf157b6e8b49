//! Group commit: one committer writes and syncs a batch while the others
//! whose records it carries wait for it (invariant 6). [`GroupCommit`] owns
//! the whole protocol state — who leads, the poison, the generations of
//! parked committers and the durable end — and changes it only through
//! the transitions named below. It does no I/O itself: the leader writes
//! through a closure (`write_batch`, in Keel `BatchWriter::write_batch`),
//! so the protocol is tested alone under a model checker (`model.rs`).
//!
//! ## Waiting for durability
//!
//! [`GroupCommit::wait_durable`] returns once every byte up to the end of
//! the record at `lsn` is on stable storage. Committers elect a leader: the
//! first one to find no batch running leads, has *everything* contiguous
//! that is pending (up to one batch) written and fdatasynced on its own
//! thread, then publishes the durable end.
//!
//! Committers that arrive meanwhile park in the *open generation*. A
//! leader closes the open generation before its batch is taken, so every
//! committer parked in it has its record pending by then, and writes
//! through the highest LSN parked there. After the sync it rings the
//! generation's bell: one futex word per generation parity, bumped under
//! the lock and woken with one `FUTEX_WAKE` for all its sleepers. Two words
//! are enough: `g + 2` (the same word) opens only when the batch of `g + 1`
//! starts, after `g`'s bell was rung (under the lock), so a committer of
//! `g + 2` reads the word after that ring and waits for the next one; a
//! wake-up for `g` arriving late only makes it look again. Before sleeping,
//! a committer yields its core a few times (`WalConfig::commit_spin_yields`):
//! with more committers than cores, the batch often completes while the
//! others run, and the committer goes on without a sleep and a wake-up,
//! which on two cores cost more CPU than the rest of a commit
//! (BENCHMARKS.md).
//!
//! - If committers parked in the generation opened meanwhile, the leader
//!   writes another batch for them: by then it holds everything that
//!   arrived during the sync. First it yields a few times (the same
//!   setting) until as many committers have parked as its last batch woke,
//!   so that they share this sync instead of waiting for the next one.
//!   After its own record is durable it does this at most
//!   [`CONTINUE_LIMIT`] times, then *hands the lead over*: the first
//!   committer to see that takes it, even one whose own record is durable
//!   by now (one sleeper is woken for it; the bell is rung so the ones not
//!   yet asleep look too). The leader itself, looking again before it
//!   returns, may be that committer.
//! - When nobody waits, the lead is freed.
//!
//! So a batch starts the moment the device is free (no timer), one sync
//! serves every committer waiting at the time, and there is one write and
//! one sync in flight at most: the next batch is written only after the
//! previous sync returned, which the reader's torn-tail rule relies on (at
//! most one unsynced batch).
//!
//! ## Failure (invariants 7 and 16)
//!
//! A failed write or sync poisons the log: the error is stored, every
//! bell is rung and every sleeper woken with it, later appends and waits
//! fail, and nothing is retried. The cause is the *first* failure: a batch
//! that fails because a segment preparation already poisoned the log does
//! not replace that cause with its own. Reopening the database runs
//! recovery.
//!
//! ## States
//!
//! [`Lead`], the function behind each edge (all in this file, each run
//! under the lock):
//!
//! ```text
//!                      arrive: claim
//!        ┌──────┐ ─────────────────────────▶ ┌─────────┐ ──┐ finish_batch: Continue
//!        │ Free │                            │ Running │   │ (own record not durable,
//!        └──────┘ ◀───────────────────────── └─────────┘ ◀─┘  or committers parked)
//!           │       finish_batch: release     │      ▲
//!           │                                 │      │ arrive: take_over
//!           │             finish_batch:       │      │
//!           │             hand_over           ▼      │
//!           │                               ┌────────────┐
//!           │                               │ HandedOver │
//!           │                               └────────────┘
//!           │ poison          poison, finish_batch: fail │ poison
//!           ▼                        (from Running)      ▼
//!        ┌────────────────────────────────────────────────────┐
//!        │ Poisoned(first cause): no edge leaves it            │
//!        └────────────────────────────────────────────────────┘
//! ```
//!
//! Beside the lead: the open [`Generation`] (`arrive` parks a committer in
//! it while a leader runs, `close_generation` closes it for a batch), and
//! the durable end (`finish_batch` raises it). Two words are read without
//! the lock, and neither mirrors state that could disagree with it:
//!
//! - `durable` is the durable end itself (no other copy), raised only by
//!   `finish_batch`, under the lock, after a successful sync:
//!   `durable <= written <= reserved` (`written` is the batch writer's
//!   cursor);
//! - `flags` is a cache of `lead` (is it `Poisoned`, is it `HandedOver`),
//!   written only by `set_lead`, the one assignment of `lead`, under the
//!   lock: whenever the lock is free it equals `lead.flags()`.
//!
//! ## Model checking
//!
//! The protocol is generic over [`Primitives`] (lock, atomic word, futex
//! bell, yield): Keel runs it on [`Os`], and `model.rs` checks it under
//! the `shuttle` model checker (why shuttle and not loom is said there):
//! three committers, a handed-over lead, a sync failing mid-batch, a
//! poison from outside.

mod primitives;

#[cfg(test)]
mod model;

use std::sync::Arc;

use crate::error::WalError;
use crate::types::Lsn;

use primitives::{Bell, Lock, Word};
pub(crate) use primitives::{Os, Primitives};

/// Most batches a leader writes for others after its own record is
/// durable before it hands the lead over (bounds its commit latency).
pub(crate) const CONTINUE_LIMIT: u32 = 4;

/// Who writes the next batch (the diagram is in the module essay).
#[derive(Clone, Debug)]
enum Lead {
    /// Nobody: the next committer whose record is not durable leads.
    Free,
    /// A leader is writing batches; committers park.
    Running,
    /// The leader left with committers parked: the first committer to see
    /// this leads, even one whose own record is durable by now.
    HandedOver,
    /// A write or sync failed; the first failure is the cause.
    Poisoned(Arc<WalError>),
}

/// Bit of [`GroupCommit::flags`]: `lead` is `Poisoned`.
const POISONED: u64 = 1;
/// Bit of [`GroupCommit::flags`]: `lead` is `HandedOver`.
const HANDED_OVER: u64 = 2;

impl Lead {
    /// The bits of [`GroupCommit::flags`] that cache this lead.
    fn flags(&self) -> u64 {
        match self {
            Lead::Poisoned(_) => POISONED,
            Lead::HandedOver => HANDED_OVER,
            Lead::Free | Lead::Running => 0,
        }
    }
}

/// Committers parked for one batch.
#[derive(Clone, Copy, Debug, Default)]
struct Generation {
    /// Its number; its bell is `bells[number % 2]`.
    number: u64,
    /// Committers parked in it.
    parked: usize,
    /// Highest LSN parked in it (0 while nobody is).
    max_lsn: u64,
}

/// What only the lock's holder reads or writes.
struct GroupState {
    lead: Lead,
    /// The generation a committer that parks now joins: the next batch to
    /// start covers it.
    open: Generation,
    /// Batches a leader wrote for others after its own record was durable.
    continued: u64,
    /// Times a leader handed the lead over.
    handoffs: u64,
}

/// The group-commit state machine (see the module essay).
pub(crate) struct GroupCommit<P: Primitives = Os> {
    state: P::Lock<GroupState>,
    /// Position up to which the log is durable: the only copy, raised only
    /// by `finish_batch` under the lock (read without it).
    durable: P::Word,
    /// A cache of `state.lead` ([`POISONED`], [`HANDED_OVER`]) for the
    /// committer's lock-free check, written only by `set_lead`.
    flags: P::Word,
    bells: [P::Bell; 2],
    spin_yields: u32,
    continue_limit: u32,
}

/// What a committer does after looking at the state under the lock.
enum Arrival {
    /// Return this.
    Settled(Result<(), WalError>),
    /// Lead (the lead is `Running` for this committer now).
    Lead,
    /// Sleep on generation `generation`'s bell while it reads `rung`.
    Park { generation: u64, rung: u32 },
}

/// What the leader does after a batch.
#[derive(Clone, Copy, Debug)]
enum Next {
    /// Write another batch (`own_done`: its own record is durable already).
    Continue { own_done: bool },
    /// Leave; wake one sleeper of generation `open` to take the lead.
    HandOver { open: u64 },
    /// Leave; nobody waits.
    Release,
    /// Leave; wake every sleeper of generation `open` with the poison.
    Poisoned { open: u64 },
}

/// Counters of the protocol, for [`crate::wal::WriterStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupStats {
    /// Batches a leader wrote for others after its own record was durable.
    pub(crate) continued: u64,
    /// Times a leader handed the lead over.
    pub(crate) handoffs: u64,
}

impl<P: Primitives> GroupCommit<P> {
    /// A protocol whose log is durable up to `durable`, nobody leading.
    /// `spin_yields`: [`crate::wal::WalConfig::commit_spin_yields`];
    /// `continue_limit`: [`CONTINUE_LIMIT`] in Keel.
    pub(crate) fn new(durable: Lsn, spin_yields: u32, continue_limit: u32) -> Self {
        GroupCommit {
            state: P::Lock::new(GroupState {
                lead: Lead::Free,
                open: Generation::default(),
                continued: 0,
                handoffs: 0,
            }),
            durable: P::Word::new(durable.0),
            flags: P::Word::new(0),
            bells: [P::Bell::new(), P::Bell::new()],
            spin_yields,
            continue_limit,
        }
    }

    /// Position up to which the log is durable.
    pub(crate) fn durable_end(&self) -> Lsn {
        Lsn(self.durable.load())
    }

    /// Whether a failure poisoned the log.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.flags.load() & POISONED != 0
    }

    /// The refusal of a poisoned log, naming its first failure;
    /// [`WalError::Closed`] while the log is healthy.
    pub(crate) fn poison_error(&self) -> WalError {
        self.state.with(|st| match &st.lead {
            Lead::Poisoned(cause) => WalError::Poisoned {
                cause: cause.clone(),
            },
            _ => WalError::Closed,
        })
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> GroupStats {
        self.state.with(|st| GroupStats {
            continued: st.continued,
            handoffs: st.handoffs,
        })
    }

    /// Returns once the record at `lsn` is durable, leading batches
    /// written by `write_batch` when it is this committer's turn;
    /// `write_batch(through)` writes and syncs what is pending (at least
    /// through the record at `through` unless a segment's end or the batch
    /// size stops it first) and returns the new durable end.
    pub(crate) fn wait_durable(
        &self,
        lsn: Lsn,
        write_batch: impl Fn(Lsn) -> Result<Lsn, WalError>,
    ) -> Result<(), WalError> {
        loop {
            let flags = self.flags.load();
            if flags & POISONED != 0 {
                return Err(self.poison_error());
            }
            // A committer whose record is durable still takes a handed-over
            // lead: the one sleeper woken for it may be this committer.
            if flags & HANDED_OVER == 0 && self.durable.load() > lsn.0 {
                return Ok(());
            }
            match self.state.with(|st| self.arrive(st, lsn)) {
                Arrival::Settled(result) => return result,
                Arrival::Lead => self.lead(lsn, &write_batch),
                // Durable, poisoned, handed the lead, or woken spuriously:
                // the next round tells which.
                Arrival::Park { generation, rung } => self.park(generation, rung),
            }
        }
    }

    /// A committer looks at the state: takes a handed-over or free lead
    /// (`take_over`, `claim`), returns what is settled (checked again under
    /// the lock: a leader publishes the durable end or the poison and
    /// rings the bells under it), or parks in the open generation.
    fn arrive(&self, st: &mut GroupState, lsn: Lsn) -> Arrival {
        match &st.lead {
            Lead::HandedOver => {
                self.take_over(st);
                Arrival::Lead
            }
            Lead::Poisoned(cause) => Arrival::Settled(Err(WalError::Poisoned {
                cause: cause.clone(),
            })),
            _ if self.durable.load() > lsn.0 => Arrival::Settled(Ok(())),
            Lead::Running => {
                // The batch that closes this generation covers `lsn`, then
                // rings its bell.
                let generation = st.open.number;
                let rung = self.bell(generation).load();
                st.open.parked += 1;
                st.open.max_lsn = st.open.max_lsn.max(lsn.0);
                Arrival::Park { generation, rung }
            }
            Lead::Free => {
                self.claim(st);
                Arrival::Lead
            }
        }
    }

    /// Sleeps until generation `generation`'s bell moves from `rung`.
    /// Yields first: with more committers than cores the batch often
    /// completes while the others run, sparing this committer a sleep and
    /// the leader a wake-up.
    fn park(&self, generation: u64, rung: u32) {
        let bell = self.bell(generation);
        for _ in 0..self.spin_yields {
            if bell.load() != rung {
                return;
            }
            P::yield_now();
        }
        bell.wait(rung);
    }

    /// Writes batches as the leader (the lead is `Running` for it) until
    /// the record at `own` is durable, then for the committers that parked
    /// meanwhile (at most `continue_limit` more), then hands the lead over
    /// or frees it. Each batch closes the open generation, is written
    /// through the highest LSN parked in it and rings its bell; a failure
    /// rings every bell to the poison (invariant 7).
    fn lead(&self, own: Lsn, write_batch: &impl Fn(Lsn) -> Result<Lsn, WalError>) {
        let mut extra = 0u32;
        // Committers parked in the generation this leader closed last: its
        // batch woke them all.
        let mut woke = 0usize;
        loop {
            self.await_returning(woke);
            let closed = self.state.with(close_generation);
            let target = Lsn(closed.max_lsn.max(own.0));
            let result = write_batch(target);
            let next = self.state.with(|st| {
                let next = self.finish_batch(st, own, target, extra, result);
                // Rung under the lock, so a committer that parks after this
                // reads the new value and cannot sleep through the ring.
                self.bell(closed.number).ring();
                if let Next::HandOver { open } | Next::Poisoned { open } = next {
                    // Everyone parked in the open generation and not yet
                    // asleep sees this and checks for itself.
                    self.bell(open).ring();
                }
                next
            });
            if closed.parked > 0 {
                self.bell(closed.number).wake_all();
            }
            match next {
                Next::Continue { own_done } => extra += u32::from(own_done),
                Next::Poisoned { open } => return self.bell(open).wake_all(),
                // One sleeper of the open generation wakes and takes the
                // lead (a committer arriving first may take it instead).
                // Committers of the closed generation the batch did not
                // reach were woken by its bell and take it the same way.
                Next::HandOver { open } => return self.bell(open).wake_one(),
                Next::Release => return,
            }
            woke = closed.parked;
        }
    }

    /// Before a batch that follows one which woke `woke` committers:
    /// yields (at most `spin_yields` times) until as many have parked
    /// again, so that they share this sync rather than wait through it for
    /// the next one: the "small wait when it helps" of group commit, a few
    /// microseconds, and none after a batch that woke nobody (a lone
    /// committer never waits).
    fn await_returning(&self, woke: usize) {
        if woke == 0 {
            return;
        }
        for _ in 0..self.spin_yields {
            if self.state.with(|st| st.open.parked) >= woke {
                return;
            }
            P::yield_now();
        }
    }

    /// After a batch: publishes its end, or poisons the log with its
    /// failure (`fail`), then decides the leader's next step: another
    /// batch (`Running` stays), `hand_over` or `release`.
    fn finish_batch(
        &self,
        st: &mut GroupState,
        own: Lsn,
        target: Lsn,
        extra: u32,
        result: Result<Lsn, WalError>,
    ) -> Next {
        match result {
            Ok(end) => self.durable.fetch_max(end.0),
            Err(e) => self.fail(st, e),
        }
        let open = st.open.number;
        if matches!(st.lead, Lead::Poisoned(_)) {
            return Next::Poisoned { open };
        }
        let durable = self.durable.load();
        let own_done = durable > own.0;
        // Left to do: the leader's own record or a parked one the batch
        // did not reach (it stops at a segment's end and at one batch), or
        // committers parked in the generation opened meanwhile.
        let more = durable <= target.0 || st.open.parked > 0;
        if more && (!own_done || extra < self.continue_limit) {
            st.continued += u64::from(own_done);
            Next::Continue { own_done }
        } else if more {
            self.hand_over(st);
            Next::HandOver { open }
        } else {
            self.release(st);
            Next::Release
        }
    }

    /// Poisons the log with `error`, a failure outside a batch (a segment
    /// preparation): every sleeper is woken with it and nothing is retried
    /// (invariant 7). A poison already there stays the cause.
    pub(crate) fn poison(&self, error: WalError) {
        self.state.with(|st| {
            self.fail(st, error);
            for bell in &self.bells {
                bell.ring();
            }
        });
        for bell in &self.bells {
            bell.wake_all();
        }
    }

    fn bell(&self, generation: u64) -> &P::Bell {
        &self.bells[(generation % 2) as usize]
    }

    /// Edge `Free → Running`: this committer leads.
    fn claim(&self, st: &mut GroupState) {
        debug_assert!(matches!(st.lead, Lead::Free), "claim from {:?}", st.lead);
        self.set_lead(st, Lead::Running);
    }

    /// Edge `HandedOver → Running`: this committer leads.
    fn take_over(&self, st: &mut GroupState) {
        debug_assert!(
            matches!(st.lead, Lead::HandedOver),
            "take_over from {:?}",
            st.lead
        );
        self.set_lead(st, Lead::Running);
    }

    /// Edge `Running → HandedOver`: the leader leaves with work left.
    fn hand_over(&self, st: &mut GroupState) {
        debug_assert!(
            matches!(st.lead, Lead::Running),
            "hand_over from {:?}",
            st.lead
        );
        st.handoffs += 1;
        self.set_lead(st, Lead::HandedOver);
    }

    /// Edge `Running → Free`: the leader leaves, nobody waits.
    fn release(&self, st: &mut GroupState) {
        debug_assert!(
            matches!(st.lead, Lead::Running),
            "release from {:?}",
            st.lead
        );
        self.set_lead(st, Lead::Free);
    }

    /// Edge `* → Poisoned`: the first failure becomes the cause; a later
    /// one never replaces it (invariant 7).
    fn fail(&self, st: &mut GroupState, error: WalError) {
        if !matches!(st.lead, Lead::Poisoned(_)) {
            self.set_lead(st, Lead::Poisoned(Arc::new(error)));
        }
    }

    /// The one assignment of `lead`; keeps `flags` its cache.
    fn set_lead(&self, st: &mut GroupState, lead: Lead) {
        let flags = lead.flags();
        if flags != st.lead.flags() {
            self.flags.store(flags);
        }
        st.lead = lead;
    }
}

/// Closes the open generation for a batch: every committer parked in it
/// has its record pending by now. The next one opens.
fn close_generation(st: &mut GroupState) -> Generation {
    let closed = st.open;
    st.open = Generation {
        number: closed.number + 1,
        parked: 0,
        max_lsn: 0,
    };
    closed
}
