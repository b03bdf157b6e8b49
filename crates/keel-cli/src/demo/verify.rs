//! Checks the recovered database against what was acknowledged.
//!
//! The expected contents are every version added and not removed by the
//! acknowledged transactions (applied as set operations on (tuple, version)
//! pairs, so the order in which concurrent workers reported does not
//! matter). A transaction *in flight* at the kill (announced just before its
//! `commit` call, never acknowledged; at most one per worker thread) may
//! have become durable or not: each is judged applied when the tuples it
//! touched show its effects, and then counts as committed. Everything must
//! then match exactly:
//!
//! - **lost**: an acknowledged (or applied in-flight) transaction whose
//!   version is missing, or whose delete or update left the old version;
//! - **phantom**: a version written by a transaction never acknowledged (an
//!   aborted one, one that never reached commit, or a part of an in-flight
//!   one judged not applied: commits are all or nothing);
//! - **corrupt**: a value whose bytes differ from what its header promises.

use std::collections::{BTreeSet, HashMap, HashSet};

use keel::{Database, RelationId};

use super::workload::{
    Effect, Key, Rels, TxnRecord, Version, decode, index_key, parse_index_value,
};
use crate::Failure;

/// What verification found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Tuples read back.
    pub tuples: usize,
    /// Bytes read back.
    pub bytes: u64,
    /// In-flight transactions found durable.
    pub in_flight_applied: usize,
    /// Their tags.
    pub applied: Vec<u64>,
    /// Transactions with a lost effect.
    pub lost: BTreeSet<u64>,
    /// Transactions never acknowledged whose effects were found.
    pub phantom: BTreeSet<u64>,
    /// Tuples whose bytes are damaged.
    pub corrupt: usize,
    /// Keys of the index tree read back.
    pub index_keys: usize,
    /// Index entries that disagree with the tuples found: a missing, extra
    /// or wrong key.
    pub index_wrong: usize,
    /// The first few problems, described.
    pub problems: Vec<String>,
}

impl Verdict {
    /// Whether everything matched.
    pub fn passed(&self) -> bool {
        self.lost.is_empty()
            && self.phantom.is_empty()
            && self.corrupt == 0
            && self.index_wrong == 0
    }

    fn problem(&mut self, what: String) {
        if self.problems.len() < 5 {
            self.problems.push(what);
        }
    }
}

/// The expected contents: versions per tuple, and who removed each
/// removed version.
#[derive(Default)]
struct Model {
    live: HashMap<Key, Vec<Version>>,
    removed_by: HashMap<(Key, Version), u64>,
}

impl Model {
    fn apply(&mut self, rec: &TxnRecord) -> Result<(), Failure> {
        for e in &rec.effects {
            match *e {
                Effect::Add(k, v) => self.live.entry(k).or_default().push(v),
                Effect::Remove(k, v) => {
                    let versions = self.live.entry(k).or_default();
                    let Some(i) = versions.iter().position(|&x| x == v) else {
                        return Err(Failure(format!(
                            "demo bookkeeping: txn {:#x} removes a version of {} never added",
                            rec.tag, k.1
                        )));
                    };
                    versions.swap_remove(i);
                    self.removed_by.insert((k, v), rec.tag);
                }
            }
        }
        Ok(())
    }
}

type Found = HashMap<Key, Result<Version, String>>;

/// Reads every tuple of the demo's relations.
fn read_all(db: &Database, rels: Rels, verdict: &mut Verdict) -> Result<Found, Failure> {
    let mut found = HashMap::new();
    let tx = db.begin()?;
    for (r, rel) in rels.heap.iter().enumerate() {
        for row in tx.scan(*rel)? {
            let (tid, bytes) = row?;
            note_row(&mut found, (r as u8, tid), &bytes, verdict);
        }
    }
    Ok(found)
}

/// Records one row a scan returned. A tuple a scan returns twice (a moved
/// tuple seen at both places, an old version beside the new) is corrupt:
/// keeping either row would hide the other from the comparison.
fn note_row(found: &mut Found, key: Key, bytes: &[u8], verdict: &mut Verdict) {
    verdict.tuples += 1;
    verdict.bytes += bytes.len() as u64;
    let got = decode(bytes);
    match found.entry(key) {
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(got);
        }
        std::collections::hash_map::Entry::Occupied(e) => {
            verdict.corrupt += 1;
            verdict.problem(format!(
                "tuple {} returned twice by one scan: {:?}, then {got:?}",
                key.1,
                e.get()
            ));
        }
    }
}

/// Whether an in-flight transaction's effects show: the vote of each
/// effect, applied winning only on a strict majority.
fn looks_applied(rec: &TxnRecord, found: &Found) -> bool {
    let has = |k: &Key, v: &Version| matches!(found.get(k), Some(Ok(x)) if x == v);
    let votes: i64 = rec
        .effects
        .iter()
        .map(|e| match e {
            Effect::Add(k, v) if has(k, v) => 1,
            Effect::Remove(k, v) if !has(k, v) => 1,
            _ => -1,
        })
        .sum();
    votes > 0
}

/// Verifies the database against the acknowledged and in-flight
/// transactions.
pub fn verify(
    db: &Database,
    rels: Rels,
    acked: &[TxnRecord],
    in_flight: &[TxnRecord],
) -> Result<Verdict, Failure> {
    let mut verdict = Verdict::default();
    let found = read_all(db, rels, &mut verdict)?;
    judge(acked, in_flight, &found, &mut verdict)?;
    let index = read_index(db, rels.index)?;
    check_index(&found, &index, &mut verdict);
    Ok(verdict)
}

/// Keys and values of a tree, in key order.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every key and value of the index tree.
fn read_index(db: &Database, tree: RelationId) -> Result<Entries, Failure> {
    let tx = db.begin_read()?;
    let entries = tx.range(tree, ..)?.collect::<keel::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(entries)
}

/// The index must name exactly the tuples found (whose versions the heap
/// check already judged): one key per intact tuple, pointing at it.
fn check_index(found: &Found, index: &[(Vec<u8>, Vec<u8>)], verdict: &mut Verdict) {
    let mut expected: HashMap<[u8; 10], Key> = found
        .iter()
        .filter_map(|(k, v)| v.as_ref().ok().map(|v| (index_key(*v), *k)))
        .collect();
    verdict.index_keys = index.len();
    for (key, value) in index {
        let want = <[u8; 10]>::try_from(key.as_slice())
            .ok()
            .and_then(|k| expected.remove(&k));
        let got = parse_index_value(value);
        if want.is_none() || got != want {
            verdict.index_wrong += 1;
            verdict.problem(format!(
                "index key {} points at {}, but the tuple found there is {}",
                hex(key),
                String::from_utf8_lossy(value),
                want.map_or("none".into(), |(r, t)| format!("{r}/{t}"))
            ));
        }
    }
    for (key, (r, t)) in expected {
        verdict.index_wrong += 1;
        verdict.problem(format!("tuple {r}/{t} has no index key {}", hex(&key)));
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Builds the expected contents and compares `found` with them.
fn judge(
    acked: &[TxnRecord],
    in_flight: &[TxnRecord],
    found: &Found,
    verdict: &mut Verdict,
) -> Result<(), Failure> {
    let mut model = Model::default();
    let mut committed: HashSet<u64> = HashSet::new();
    for rec in acked {
        model.apply(rec)?;
        committed.insert(rec.tag);
    }
    for rec in in_flight.iter().filter(|r| looks_applied(r, found)) {
        model.apply(rec)?;
        committed.insert(rec.tag);
        verdict.in_flight_applied += 1;
        verdict.applied.push(rec.tag);
    }
    compare(&model, found, &committed, verdict);
    Ok(())
}

fn compare(model: &Model, found: &Found, committed: &HashSet<u64>, verdict: &mut Verdict) {
    let keys: BTreeSet<Key> = model
        .live
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| *k)
        .chain(found.keys().copied())
        .collect();
    for k in keys {
        let expected = model.live.get(&k).map_or(&[][..], |v| &v[..]);
        let got = match found.get(&k) {
            Some(Ok(v)) => Some(*v),
            Some(Err(e)) => {
                verdict.corrupt += 1;
                verdict.problem(format!("tuple {} corrupt: {e}", k.1));
                None
            }
            None => None,
        };
        for e in expected.iter().filter(|&&e| Some(e) != got) {
            verdict.lost.insert(e.tag);
            verdict.problem(format!(
                "tuple {}: version of txn {:#x} missing",
                k.1, e.tag
            ));
        }
        let Some(g) = got.filter(|g| !expected.contains(g)) else {
            continue;
        };
        if !committed.contains(&g.tag) {
            verdict.phantom.insert(g.tag);
            verdict.problem(format!(
                "tuple {}: txn {:#x} was never acknowledged",
                k.1, g.tag
            ));
        } else if let Some(by) = model.removed_by.get(&(k, g)) {
            verdict.lost.insert(*by);
            verdict.problem(format!("tuple {}: txn {by:#x}'s change is missing", k.1));
        } else {
            verdict.phantom.insert(g.tag);
            verdict.problem(format!("tuple {}: txn {:#x} never wrote it", k.1, g.tag));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel::{PageId, SlotId, TupleId};

    fn key(slot: u16) -> Key {
        (0, TupleId::new(PageId(1), SlotId(slot)))
    }

    fn ver(tag: u64) -> Version {
        Version {
            tag,
            op: 0,
            len: 50,
        }
    }

    fn rec(tag: u64, effects: Vec<Effect>) -> TxnRecord {
        TxnRecord { tag, effects }
    }

    /// Checks `found` against acknowledged `acked` and in-flight `flying`.
    fn check(acked: &[TxnRecord], flying: &[TxnRecord], found: &[(Key, Version)]) -> Verdict {
        let found: Found = found.iter().map(|&(k, v)| (k, Ok(v))).collect();
        let mut verdict = Verdict::default();
        judge(acked, flying, &found, &mut verdict).unwrap();
        verdict
    }

    #[test]
    fn the_index_must_name_exactly_the_tuples_found() {
        let found: Found = [(key(1), Ok(ver(1))), (key(2), Ok(ver(2)))]
            .into_iter()
            .chain([(key(3), Err("damaged".to_string()))])
            .collect();
        let entry = |k: Key, v: Version| {
            (
                index_key(v).to_vec(),
                super::super::workload::index_value(k),
            )
        };
        let wrong = |index: &[(Vec<u8>, Vec<u8>)]| {
            let mut v = Verdict::default();
            check_index(&found, index, &mut v);
            assert_eq!(v.index_keys, index.len());
            (v.index_wrong, v.passed())
        };
        let exact = [entry(key(1), ver(1)), entry(key(2), ver(2))];
        assert_eq!(wrong(&exact), (0, true));
        // A missing key, a key pointing elsewhere, an extra key, garbage.
        assert_eq!(wrong(&exact[..1]), (1, false));
        assert_eq!(
            wrong(&[entry(key(1), ver(1)), entry(key(9), ver(2))]),
            (1, false)
        );
        let mut extra = exact.to_vec();
        extra.push(entry(key(4), ver(4)));
        assert_eq!(wrong(&extra), (1, false));
        assert_eq!(
            wrong(&[exact[0].clone(), (b"short".to_vec(), b"x".to_vec())]),
            (2, false)
        );
    }

    #[test]
    fn a_tuple_a_scan_returns_twice_fails_verification() {
        use super::super::workload::value;
        let acked = [rec(1, vec![Effect::Add(key(1), ver(1))])];
        let judged = |rows: &[(Key, Version)]| {
            let (mut found, mut v) = (Found::new(), Verdict::default());
            for &(k, ver) in rows {
                note_row(&mut found, k, &value(ver), &mut v);
            }
            judge(&acked, &[], &found, &mut v).unwrap();
            v
        };
        assert!(judged(&[(key(1), ver(1))]).passed());
        // A rolled-back version beside the committed one, and the committed
        // one twice: either way one scan saw two rows of one tuple.
        for rows in [
            [(key(1), ver(9)), (key(1), ver(1))],
            [(key(1), ver(1)), (key(1), ver(1))],
        ] {
            let v = judged(&rows);
            assert!(!v.passed() && v.corrupt == 1, "{rows:?}: {v:?}");
            assert_eq!(v.tuples, 2);
        }
    }

    #[test]
    fn exact_match_passes_whatever_the_report_order() {
        // Worker 2 reused slot 1 after worker 1's delete, but reported first.
        let acked = [
            rec(1, vec![Effect::Add(key(1), ver(1))]),
            rec(3, vec![Effect::Add(key(1), ver(3))]),
            rec(2, vec![Effect::Remove(key(1), ver(1))]),
        ];
        let v = check(&acked, &[], &[(key(1), ver(3))]);
        assert!(v.passed(), "{v:?}");
    }

    #[test]
    fn lost_and_phantom_commits_are_named() {
        let acked = [
            rec(
                1,
                vec![Effect::Add(key(1), ver(1)), Effect::Add(key(2), ver(1))],
            ),
            rec(2, vec![Effect::Remove(key(2), ver(1))]),
        ];
        // Txn 1's slot 1 is missing, txn 2's delete did not happen, and
        // txn 9 (never acknowledged) left a tuple.
        let v = check(&acked, &[], &[(key(2), ver(1)), (key(3), ver(9))]);
        assert_eq!(v.lost, BTreeSet::from([1, 2]));
        assert_eq!(v.phantom, BTreeSet::from([9]));
        assert!(!v.passed());
    }

    #[test]
    fn in_flight_commits_are_all_or_nothing() {
        let acked = [rec(1, vec![Effect::Add(key(1), ver(1))])];
        let flying = [rec(
            5,
            vec![
                Effect::Remove(key(1), ver(1)),
                Effect::Add(key(1), ver(5)),
                Effect::Add(key(2), ver(5)),
            ],
        )];
        let applied = check(&acked, &flying, &[(key(1), ver(5)), (key(2), ver(5))]);
        assert!(
            applied.passed() && applied.in_flight_applied == 1,
            "{applied:?}"
        );
        let absent = check(&acked, &flying, &[(key(1), ver(1))]);
        assert!(
            absent.passed() && absent.in_flight_applied == 0,
            "{absent:?}"
        );
        // Half of it: an unacknowledged effect without the rest.
        let torn = check(&acked, &flying, &[(key(1), ver(1)), (key(2), ver(5))]);
        assert!(!torn.passed(), "{torn:?}");
    }
}
