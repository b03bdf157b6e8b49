//! Checking a tree against a model: the one walk every tree test uses
//! after a crash, a reopen or a concurrent run.
//!
//! [`check_tree`] reads the whole tree forward (the leaf chain, through
//! `range(..)`), checks its keys strictly increase and equal the model's,
//! reads it backward and checks that is the same walk reversed, checks
//! `first`, `last` and `len`, and gets every model key by descent.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use keel::btree::MAX_KEY_LEN;
use keel::{Database, RelationId, Transaction};
use keel_io::sim::Rng;

/// A tree's keys and values.
pub type TreeModel = BTreeMap<Vec<u8>, Vec<u8>>;

/// A short description of a key for failure messages.
pub fn show(key: &[u8]) -> String {
    if key.len() <= 16 {
        format!("{key:02x?}")
    } else {
        format!("{:02x?}.. ({} bytes)", &key[..16], key.len())
    }
}

/// Every item of `tree` within `(lo, hi)`, forward or backward.
pub fn read_range(
    tx: &Transaction<'_>,
    tree: RelationId,
    lo: Bound<&[u8]>,
    hi: Bound<&[u8]>,
    backward: bool,
) -> keel::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let range = tx.range(tree, (lo, hi))?;
    if backward {
        range.rev().collect()
    } else {
        range.collect()
    }
}

/// The model's items within `(lo, hi)`, in order (empty for an inverted
/// range, as a tree's range is).
pub fn model_range(
    model: &TreeModel,
    lo: Bound<&[u8]>,
    hi: Bound<&[u8]>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .filter(|(k, _)| (lo, hi).contains(&k[..]))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The largest key under `prefix`: the prefix padded with 0xff to the
/// longest key.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    [prefix, &[0xff; MAX_KEY_LEN][prefix.len()..]].concat()
}

/// The bounds of a range of the keys under `prefix` (up to `end`, from
/// [`prefix_end`]): from `key` to the end, or (`backward`) from the
/// prefix's first key up to `key`.
fn bounds_at<'a>(
    prefix: &'a [u8],
    key: &'a [u8],
    end: &'a [u8],
    backward: bool,
) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    if backward {
        (Bound::Included(prefix), Bound::Included(key))
    } else {
        (Bound::Included(key), Bound::Included(end))
    }
}

/// The first `n` entries of `model` within `lo..hi`, from the low end or
/// (`backward`) from the high end.
fn model_ends(
    model: &TreeModel,
    lo: Bound<&[u8]>,
    hi: Bound<&[u8]>,
    backward: bool,
    n: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut want = model_range(model, lo, hi);
    if backward {
        want.reverse();
    }
    want.truncate(n);
    want
}

/// Checks in `tx` that `tree` is a consistent tree holding exactly `model`
/// (module docs); the error says what differs.
pub fn check_in(tx: &Transaction<'_>, tree: RelationId, model: &TreeModel) -> Result<(), String> {
    let err = |what: &str, e: keel::Error| format!("{what}: {e}");
    let all = Bound::Unbounded;
    let forward = read_range(tx, tree, all, all, false).map_err(|e| err("forward walk", e))?;
    for pair in forward.windows(2) {
        if pair[0].0 >= pair[1].0 {
            return Err(format!(
                "the leaf chain is out of order: {} then {}",
                show(&pair[0].0),
                show(&pair[1].0)
            ));
        }
    }
    if forward.len() != model.len() || forward.iter().zip(model).any(|(a, b)| a.0 != *b.0) {
        let got: Vec<&Vec<u8>> = forward.iter().map(|(k, _)| k).collect();
        let missing: Vec<String> = model
            .keys()
            .filter(|k| !got.contains(k))
            .map(|k| show(k))
            .collect();
        let extra: Vec<String> = got
            .iter()
            .filter(|k| !model.contains_key(**k))
            .map(|k| show(k))
            .collect();
        return Err(format!(
            "{} keys where the model has {}: missing {missing:?}, extra {extra:?}",
            forward.len(),
            model.len()
        ));
    }
    if let Some((k, _)) = forward.iter().zip(model).find(|(a, b)| a.1 != *b.1) {
        return Err(format!("the value of {} differs", show(&k.0)));
    }
    let mut backward = read_range(tx, tree, all, all, true).map_err(|e| err("backward walk", e))?;
    backward.reverse();
    if backward != forward {
        return Err("the backward walk is not the forward walk reversed".into());
    }
    let first = tx.first(tree).map_err(|e| err("first", e))?;
    let last = tx.last(tree).map_err(|e| err("last", e))?;
    if first.as_ref() != forward.first() || last.as_ref() != forward.last() {
        return Err("first or last is not the walk's".into());
    }
    let len = tx.len(tree).map_err(|e| err("len", e))?;
    if len != model.len() {
        return Err(format!("len {len}, model {}", model.len()));
    }
    for (k, v) in model {
        let got = tx.get_key(tree, k).map_err(|e| err("get", e))?;
        if got.as_ref() != Some(v) {
            return Err(format!(
                "get of {} found {:?} bytes",
                show(k),
                got.map(|g| g.len())
            ));
        }
    }
    Ok(())
}

/// [`check_in`] in a transaction of its own.
pub fn check_tree(db: &Database, tree: RelationId, model: &TreeModel) -> Result<(), String> {
    let tx = db.begin().map_err(|e| format!("begin: {e}"))?;
    check_in(&tx, tree, model)?;
    tx.commit().map_err(|e| format!("commit: {e}"))
}

/// A key for the crash workloads: `prefix`, then one of 600 names, now
/// and then cut to nothing (the prefix alone, the empty key for an empty
/// prefix), padded to a few hundred bytes or to `MAX_KEY_LEN`.
pub fn random_key(prefix: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(format!("key{:04}", rng.below(600)).as_bytes());
    match rng.below(40) {
        0 => k.truncate(prefix.len()),
        1..=2 => k.resize(MAX_KEY_LEN, b'~'),
        3..=6 => k.resize(k.len() + 50 + rng.below(400) as usize, b'.'),
        _ => {}
    }
    k
}

/// One random operation on `tree` in `tx` — a put (a replace of a key
/// that is there), a delete, or a range read of a few keys from a random
/// key forward or backward — checked against `model`, which a change
/// updates. Keys from [`random_key`] with `prefix`; ranges stay within the
/// prefix. Values from `value`.
pub fn random_tree_op(
    tx: &mut Transaction<'_>,
    tree: RelationId,
    model: &mut TreeModel,
    prefix: &[u8],
    rng: &mut Rng,
    value: impl FnOnce(&mut Rng) -> Vec<u8>,
) -> keel::Result<()> {
    let key = random_key(prefix, rng);
    match rng.below(6) {
        0 | 1 => {
            let old = tx.delete_key(tree, &key)?;
            assert!(old == model.remove(&key), "delete of {}", show(&key));
        }
        2 => {
            let end = prefix_end(prefix);
            let backward = rng.coin();
            let (lo, hi) = bounds_at(prefix, &key, &end, backward);
            let range = tx.range(tree, (lo, hi))?;
            let got: Vec<_> = if backward {
                range.rev().take(4).collect::<keel::Result<_>>()?
            } else {
                range.take(4).collect::<keel::Result<_>>()?
            };
            let want = model_ends(model, lo, hi, backward, 4);
            assert!(
                got == want,
                "range at {} (backward: {backward})",
                show(&key)
            );
        }
        _ => {
            let v = value(rng);
            let old = tx.replace(tree, &key, &v)?;
            assert!(old == model.insert(key.clone(), v), "put of {}", show(&key));
        }
    }
    Ok(())
}

/// Every key and value of `tree`.
pub fn read_tree(tx: &Transaction<'_>, tree: RelationId) -> keel::Result<TreeModel> {
    tx.range(tree, ..)?.collect()
}

/// A read-only run of reads of the keys under `prefix` in `tx` (begun with
/// `begin_read`), more than
/// [`keel::TREE_READ_ESCALATE_AT`] of them — gets, and ranges of a few
/// items read with `next_into`/`next_back_into` from a random key forward
/// or backward — each checked against `model`. So the transaction tries
/// to lock the whole tree shared, and when it gets the lock, its last
/// ranges read with no key locks: the crash workloads run that path under
/// their power cuts, kills and failing disks.
pub fn long_tree_read(
    tx: &Transaction<'_>,
    tree: RelationId,
    model: &TreeModel,
    prefix: &[u8],
    rng: &mut Rng,
) -> keel::Result<()> {
    let end = prefix_end(prefix);
    let (mut k, mut v) = (Vec::new(), Vec::new());
    for _ in 0..keel::TREE_READ_ESCALATE_AT + 16 {
        let key = random_key(prefix, rng);
        if rng.coin() {
            let got = tx.get_key(tree, &key)?;
            assert!(got.as_ref() == model.get(&key), "get of {}", show(&key));
            continue;
        }
        let backward = rng.coin();
        let (lo, hi) = bounds_at(prefix, &key, &end, backward);
        let mut range = tx.range(tree, (lo, hi))?;
        let mut got = Vec::new();
        while got.len() < 4 {
            let more = if backward {
                range.next_back_into(&mut k, &mut v)?
            } else {
                range.next_into(&mut k, &mut v)?
            };
            if !more {
                break;
            }
            got.push((k.clone(), v.clone()));
        }
        let want = model_ends(model, lo, hi, backward, 4);
        assert!(
            got == want,
            "long read: range at {} (backward: {backward})",
            show(&key)
        );
    }
    Ok(())
}
