//! The transaction table: ids, and for each running transaction its first
//! and last LSN (what checkpoints record and log retention must keep).
//!
//! A transaction registers at `begin` and leaves at commit or rollback.
//! Before its first record it stores a lower bound of that record's LSN
//! (the log's end at the time), so a checkpoint that runs concurrently can
//! never miss a record it would have to keep for undo.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rustc_hash::FxHashMap as HashMap;

use crate::types::{Lsn, TxnId};

/// Transaction ids are below this (2^63). At a million transactions a
/// second that is 290,000 years of ids, so the counter never wraps (a
/// wrapped id 0 would read as "no transaction" in a record), and a next id
/// at or past it, read from a control file or the log, is corruption: the
/// open refuses it.
pub(crate) const TXN_ID_LIMIT: u64 = 1 << 63;

/// The id after the largest of `candidates` (each already one past an id
/// in use: the control file's next id, the log's largest id + 1, a
/// checkpoint's next id), refused at or past [`TXN_ID_LIMIT`] as
/// corruption of the data directory `dir`.
pub(crate) fn next_txn_id(
    dir: &std::path::Path,
    candidates: &[u64],
) -> crate::error::Result<TxnId> {
    let next = candidates.iter().copied().max().unwrap_or(1).max(1);
    if next >= TXN_ID_LIMIT {
        return Err(crate::error::DbError::Corrupt {
            what: format!("data directory {}", dir.display()),
            reason: format!(
                "its control file or log puts the next transaction id at {next}, at or past \
                 the limit {TXN_ID_LIMIT} no database reaches"
            ),
        }
        .into());
    }
    Ok(TxnId(next))
}

/// A running transaction's log positions, shared with the table.
#[derive(Debug, Default)]
pub(crate) struct TxnSlot {
    /// Lower bound of its first record's LSN (0: no record yet).
    first: AtomicU64,
    /// Its last record's LSN.
    last: AtomicU64,
}

impl TxnSlot {
    /// Called before appending a record, with what reads the log's current
    /// end (read only before the transaction's first record: each read
    /// takes the log's append lock).
    pub(crate) fn before_write(&self, log_end: impl FnOnce() -> Lsn) {
        if self.first.load(Ordering::Acquire) == 0 {
            self.first.store(log_end().0.max(1), Ordering::Release);
        }
    }

    /// Called after appending records, with the last one's LSN.
    pub(crate) fn wrote(&self, last: Lsn) {
        self.last.store(last.0, Ordering::Release);
    }
}

/// One running transaction as a checkpoint sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ActiveTxn {
    pub id: TxnId,
    pub first: Lsn,
    pub last: Lsn,
}

/// Transaction ids and the running transactions.
#[derive(Debug)]
pub(crate) struct TxnTable {
    next: AtomicU64,
    active: Mutex<HashMap<TxnId, Arc<TxnSlot>>>,
}

impl TxnTable {
    /// A table handing out ids from `next` (at least 1).
    pub(crate) fn new(next: TxnId) -> TxnTable {
        TxnTable {
            next: AtomicU64::new(next.0.max(1)),
            active: Mutex::new(HashMap::default()),
        }
    }

    /// Registers a new transaction.
    pub(crate) fn begin(&self) -> (TxnId, Arc<TxnSlot>) {
        let id = TxnId(self.next.fetch_add(1, Ordering::AcqRel));
        let slot = Arc::new(TxnSlot::default());
        self.active.lock().insert(id, Arc::clone(&slot));
        (id, slot)
    }

    /// Removes a finished transaction.
    pub(crate) fn end(&self, id: TxnId) {
        self.active.lock().remove(&id);
    }

    /// The id the next transaction gets.
    pub(crate) fn next_id(&self) -> TxnId {
        TxnId(self.next.load(Ordering::Acquire))
    }

    /// Number of running transactions.
    pub(crate) fn active_count(&self) -> usize {
        self.active.lock().len()
    }

    /// The running transactions that have written, by id.
    pub(crate) fn snapshot(&self) -> Vec<ActiveTxn> {
        let mut v: Vec<ActiveTxn> = self
            .active
            .lock()
            .iter()
            .filter_map(|(id, s)| {
                let first = s.first.load(Ordering::Acquire);
                (first != 0).then(|| ActiveTxn {
                    id: *id,
                    first: Lsn(first),
                    last: Lsn(s.last.load(Ordering::Acquire)),
                })
            })
            .collect();
        v.sort_by_key(|t| t.id);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_lists_writers_with_their_first_lsn() {
        let t = TxnTable::new(TxnId(5));
        let (a, sa) = t.begin();
        let (b, _sb) = t.begin();
        assert_eq!((a, b), (TxnId(5), TxnId(6)));
        assert!(t.snapshot().is_empty(), "readers are not listed");
        sa.before_write(|| Lsn(4096));
        sa.wrote(Lsn(5000));
        sa.before_write(|| Lsn(9999));
        assert_eq!(
            t.snapshot(),
            vec![ActiveTxn {
                id: a,
                first: Lsn(4096),
                last: Lsn(5000)
            }]
        );
        t.end(a);
        assert!(t.snapshot().is_empty());
        assert_eq!(t.active_count(), 1);
        assert_eq!(t.next_id(), TxnId(7));
    }
}
