//! Undo: each loser (a transaction analysis left open at the end of the
//! log) is rolled back newest first with CLRs and an abort record, exactly
//! as a running rollback does, so a crash during recovery and a second
//! recovery never undo anything twice (invariant 8; module docs of
//! [`crate::recovery`], "Undo").
//!
//! Analysis kept only where each loser's records are; their payloads are
//! read back from the log here, in one forward scan from the oldest.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::analysis::Open;
use super::{Recovered, failed, recovery};
use crate::error::Result;
use crate::heap::Relation;
use crate::storage::Storage;
use crate::txn::undo::{TxnLog, Undo, UndoEntry, push_undo};
use crate::types::{Lsn, RelationId, TxnId};
use crate::wal::{Payload, RecoveryMode};

/// Rolls every loser back with CLRs and an abort record, counting into
/// `rec`'s report; each page an undone record names is touched, and its
/// free space is left to be read again from the page. `mode` is how the
/// log is read back.
pub(super) fn undo_losers(
    store: &Storage,
    mode: RecoveryMode,
    rels: &HashMap<RelationId, Arc<Relation>>,
    losers: BTreeMap<TxnId, Open>,
    rec: &mut Recovered,
) -> Result<()> {
    let ReadBack {
        undo: mut payloads,
        mut keys,
    } = read_back(store, mode, &losers)?;
    let lookup = |id: RelationId| rels.get(&id).cloned();
    for (txn, open) in losers.into_iter().rev() {
        let mut log = TxnLog::new(txn);
        log.last_lsn = open.last_lsn;
        log.keys = keys.remove(&txn).unwrap_or_default();
        // The same stack the running transaction would hold: one entry
        // per overflow chain (`push_undo`), so rollback logs the same CLRs.
        for r in &open.undo {
            let undo = payloads
                .remove(&r.lsn)
                .ok_or_else(|| recovery(r.lsn, "the record to undo is gone from the log".into()))?;
            let entry = UndoEntry {
                relation: r.relation,
                page: r.page,
                lsn: r.lsn,
                prev_lsn: r.prev_lsn,
                undo,
            };
            push_undo(&mut log.undo, entry);
            rec.touched.insert((r.relation, r.page));
            rec.space.remove(&(r.relation, r.page));
        }
        rec.report.records_undone += open.undo.len() as u64;
        store.rollback(&mut log, &lookup).map_err(failed(
            open.last_lsn,
            None,
            format!("rolling back loser transaction {txn}"),
        ))?;
        rec.report.txns_undone += 1;
    }
    Ok(())
}

/// The losers' records read back: what undoing each needs, by LSN, and
/// each loser's key arena ([`TxnLog::keys`]), holding its tree inserts'
/// keys in the order of its undo stack (the log's order).
struct ReadBack {
    undo: FxHashMap<Lsn, Undo>,
    keys: FxHashMap<TxnId, Vec<u8>>,
}

/// What undoing each record the losers' undo stacks name needs, read
/// back from the log in one forward scan from the oldest of them
/// (analysis kept only their positions: most transactions commit, and
/// their payloads are dropped as soon as redo is done with them). Each
/// payload is reduced to its [`Undo`] as it is read, so an overflow
/// chunk is never held.
fn read_back(
    store: &Storage,
    mode: RecoveryMode,
    losers: &BTreeMap<TxnId, Open>,
) -> Result<ReadBack> {
    let wanted: FxHashMap<Lsn, TxnId> = losers
        .iter()
        .flat_map(|(&txn, o)| o.undo.iter().map(move |r| (r.lsn, txn)))
        .collect();
    let mut found = FxHashMap::default();
    let mut keys: FxHashMap<TxnId, Vec<u8>> = FxHashMap::default();
    let Some(&from) = wanted.keys().min() else {
        return Ok(ReadBack { undo: found, keys });
    };
    let reading = "reading the losers' records back from the log";
    let mut reader = store
        .wal
        .reader(from, mode)
        .map_err(failed(from, None, reading))?;
    while found.len() < wanted.len() {
        let record = reader.next_with(|h, payload| {
            wanted
                .contains_key(&h.lsn)
                .then(|| Payload::decode_record(&h, payload).map(|p| (h.lsn, p)))
        });
        match record {
            None => break,
            Some(r) => {
                if let Some(decoded) = r.map_err(failed(from, None, reading))? {
                    let (lsn, payload) = decoded.map_err(failed(from, None, reading))?;
                    if let Some(&txn) = wanted.get(&lsn) {
                        let arena = keys.entry(txn).or_default();
                        found.insert(lsn, Undo::of(Cow::Owned(payload), arena));
                    }
                }
            }
        }
    }
    Ok(ReadBack { undo: found, keys })
}
