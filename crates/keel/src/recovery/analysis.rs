//! Analysis: the transaction table and each transaction's undo stack,
//! built from every record of the log as recovery reads it (module docs
//! of [`crate::recovery`], "Analysis").
//!
//! Analysis keeps positions, not payloads: a record that rollback would
//! undo is kept as where it is ([`UndoRef`]), and only a loser's records
//! are read back from the log ([`super::undo`]). It reads no page and
//! writes nothing; redo runs beside it on the same records.

use std::collections::BTreeMap;

use super::ddl::DdlLog;
use crate::types::{Lsn, PageId, RelationId, TxnId};
use crate::wal::{Payload, RecordHeader};

/// A transaction seen by analysis and not (yet) ended.
#[derive(Default)]
pub(super) struct Open {
    pub last_lsn: Lsn,
    /// Its records that rollback would undo, oldest first: where they are,
    /// not their payloads (read back from the log only for a loser).
    pub undo: Vec<UndoRef>,
}

/// A record on an undo stack, by position.
#[derive(Clone, Copy)]
pub(super) struct UndoRef {
    pub relation: RelationId,
    pub page: PageId,
    pub lsn: Lsn,
    pub prev_lsn: Lsn,
}

/// What analysis has built from the records read so far.
pub(super) struct Analysis {
    /// Transactions not ended: at the end of the log, the losers.
    pub open: BTreeMap<TxnId, Open>,
    /// Highest transaction id seen (or the control file's, if higher).
    pub max_txn: TxnId,
    /// Creates and drops the log holds.
    pub ddl: DdlLog,
    /// The newest complete checkpoint read: its end record's LSN and what
    /// that record says (a standby's restartpoint, [`crate::standby`]).
    pub last_checkpoint: Option<CheckpointSeen>,
}

/// A checkpoint end record read by analysis.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CheckpointSeen {
    /// The end record's LSN.
    pub end: Lsn,
    pub redo_start: Lsn,
    pub undo_start: Lsn,
    pub next_txn: TxnId,
}

impl Analysis {
    /// Analysis starting with no transaction open and `max_txn` as the
    /// highest id handed out.
    pub(super) fn new(max_txn: TxnId) -> Analysis {
        Analysis {
            open: BTreeMap::new(),
            max_txn,
            ddl: DdlLog::default(),
            last_checkpoint: None,
        }
    }

    /// Analysis of one record: a commit or abort ends its transaction; a
    /// CLR pops everything after its `undo_next` from the undo stack
    /// (those records are already undone, invariant 8); a record that
    /// needs undo is pushed.
    pub(super) fn record(&mut self, h: &RecordHeader, payload: &Payload) {
        if let Payload::CheckpointEnd {
            next_txn,
            redo_start,
            undo_start,
            ..
        } = *payload
        {
            self.last_checkpoint = Some(CheckpointSeen {
                end: h.lsn,
                redo_start,
                undo_start,
                next_txn,
            });
        }
        if h.txn.0 == 0 {
            return;
        }
        self.max_txn = self.max_txn.max(h.txn);
        self.ddl.analyse(h.txn, payload);
        if matches!(payload, Payload::Commit { .. } | Payload::Abort) {
            self.open.remove(&h.txn);
            return;
        }
        let t = self.open.entry(h.txn).or_default();
        t.last_lsn = h.lsn;
        if let Some(undo_next) = payload.undo_next() {
            while t.undo.last().is_some_and(|e| e.lsn > undo_next) {
                t.undo.pop();
            }
        } else if payload.needs_undo()
            && let (Some(relation), Some(page)) = (h.relation, h.page)
        {
            t.undo.push(UndoRef {
                relation,
                page,
                lsn: h.lsn,
                prev_lsn: h.prev_lsn,
            });
        }
    }
}
