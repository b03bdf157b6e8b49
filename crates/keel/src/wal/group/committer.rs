//! The committer's side of group commit: wait until a record is durable,
//! leading when it is this committer's turn (the protocol is in the
//! parent module's essay).

use super::{GroupCommit, GroupState, HANDED_OVER, Lead, POISONED};
use crate::sync::{Bell, Lock, Primitives, Word};
use crate::types::Lsn;
use crate::wal::WalError;

/// What a committer does after looking at the state under the lock.
enum Arrival {
    /// Return this.
    Settled(Result<(), WalError>),
    /// Lead (the lead is `Running` for this committer now).
    Lead,
    /// Sleep on generation `generation`'s bell while it reads `rung`.
    Park { generation: u64, rung: u32 },
}

impl<P: Primitives> GroupCommit<P> {
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
}
