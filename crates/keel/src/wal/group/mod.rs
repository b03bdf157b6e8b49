//! Group commit: one committer writes and syncs a batch while the others
//! whose records it carries wait for it (invariant 6). [`GroupCommit`] owns
//! the whole protocol state — who leads, the poison, the generations of
//! parked committers and the durable end — and changes it only through
//! the transitions named below. It does no I/O itself: the leader writes
//! through a closure (`write_batch`, in Keel `BatchWriter::write_batch`),
//! so the protocol is tested alone under a model checker (`model.rs`).
//! The state and its transitions are here; `committer.rs` is what a
//! committer does, `leader.rs` what the leader does; the
//! synchronisation both run on is `crate::sync`.
//!
//! ## Waiting for durability
//!
//! [`GroupCommit::wait_durable`] returns once every byte up to the end of
//! the record at `lsn` is on stable storage. Committers elect a leader: the
//! first one to find no batch running leads, has *everything* contiguous
//! that is pending (up to one batch) written durably on its own thread (one
//! `RWF_DSYNC` write, `batch.rs`), then publishes the durable end.
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
//! not replace that cause with its own. A leader that panics in its batch
//! poisons the log the same way as it unwinds (`WalError::LeaderPanicked`):
//! the lead would otherwise stay `Running` for a leader that is gone, and
//! every committer parked for it, and every later one, would wait forever.
//! Reopening the database runs recovery.
//!
//! ## States
//!
//! [`Lead`], the function behind each edge: the transitions (`claim`,
//! `take_over`, `hand_over`, `release`, `fail`) are in this file, called
//! under the lock by `arrive` (a committer, `committer.rs`),
//! `finish_batch` (the leader, `leader.rs`) and [`GroupCommit::poison`]:
//!
//! ```text
//!                     arrive: claim
//!     ┌──────┐ ────────────────────────▶ ┌─────────┐ ──┐ finish_batch: continue
//!     │ Free │                           │ Running │   │ (own record not durable,
//!     └──────┘ ◀──────────────────────── └─────────┘ ◀─┘  or committers parked)
//!        │       finish_batch: release     │    │   ▲
//!        │                                 │    │   │
//!        │           finish_batch: hand_over    ▼   │ arrive: take_over
//!        │                                 │  ┌────────────┐
//!        │                                 │  │ HandedOver │
//!        │                                 │  └────────────┘
//!        │ poison           finish_batch:  │        │ poison
//!        │                  fail, poison   │        │
//!        ▼                                 ▼        ▼
//!     ┌─────────────────────────────────────────────────┐
//!     │ Poisoned(first cause): no edge leaves it         │
//!     └─────────────────────────────────────────────────┘
//! ```
//!
//! | edge                  | caller (under the lock) | transition  |
//! |-----------------------|-------------------------|-------------|
//! | Free → Running        | `arrive`                | `claim`     |
//! | HandedOver → Running  | `arrive`                | `take_over` |
//! | Running → Running     | `finish_batch`          | (none)      |
//! | Running → HandedOver  | `finish_batch`          | `hand_over` |
//! | Running → Free        | `finish_batch`          | `release`   |
//! | Running → Poisoned    | `finish_batch`          | `fail`      |
//! | any → Poisoned        | [`GroupCommit::poison`] | `fail`      |
//!
//! `fail` on a poisoned log keeps the cause it has.
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
//! the `shuttle` model checker (`sync/model.rs` says why shuttle and not
//! loom):
//! three committers, a handed-over lead, a sync failing mid-batch, a
//! poison from outside.

mod committer;
mod leader;

#[cfg(test)]
mod model;

use std::sync::Arc;

use crate::types::Lsn;
use crate::wal::WalError;

use crate::sync::{Bell, Lock, Word};
pub(crate) use crate::sync::{Os, Primitives};

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
