//! The kv suite: ordered keys, shaped like redb's published comparison —
//! 24-byte random keys, 150-byte values ([`store`]) — Keel's trees against
//! SQLite ([`sqlite_kv`]: a `WITHOUT ROWID` table, WAL, `synchronous=FULL`)
//! and redb (the crate, default durability), with the disk's fdatasync
//! loop beside them.
//!
//! Each repeat gives every engine a fresh store and runs these phases on
//! it, in this order ([`Phase::RUN`]); "durable" means the commit returned
//! under the engine's durable setting:
//!
//! 1. **bulk load**: `--keys` puts in one transaction. The clock stops once
//!    the keys are durable *and in the data files* (as in the insert
//!    suite): Keel's and SQLite's checkpoint run inside the time; redb's
//!    commit writes its tree into its file itself.
//! 2. **batch writes**: durable transactions of 1,000 puts each of new
//!    keys, 100 of them (redb's shape) from `--keys 100000` up,
//!    `--keys`/1,000 below ([`batch_txns`]).
//! 3. **random reads**, one thread: `--keys` gets of loaded keys in random
//!    order, in read transactions of [`READS_PER_TXN`].
//! 4. **range reads**: `--keys`/10 ranges of 10 entries from a random
//!    loaded key, [`RANGES_PER_TXN`] per read transaction.
//! 5. **random reads, 4 threads** and 6. **8 threads**: `--keys` gets
//!    split among the threads, each on its own read transactions.
//! 7. **individual writes**: one put of a new key per durable commit, one
//!    writer, for `--secs` (the commit loop of the commit suite,
//!    [`measure::commits`]).
//! 8. **individual writes, 64 writers**: the same with 64 threads (Keel
//!    commits as a group; redb has one write transaction at a time; SQLite
//!    one connection behind a mutex).
//! 9. **removals**: every key written, deleted in durable transactions of
//!    [`DELETES_PER_TXN`].
//!
//! The reads come before the two phases that write for a fixed time: those
//! leave each engine with as many more keys as it committed (Keel's group
//! commit adds several times redb's), so reads after them would compare
//! stores of different sizes, and at small cache budgets one that no longer
//! fits its cache with one that does. Read first, every engine holds the
//! same keys. The tables print the phases in redb's order
//! ([`Phase::STORE`]).
//!
//! Reads are *in cache*: each read phase runs twice with the same keys,
//! the first pass untimed, so every engine's cache holds what the timed
//! pass reads (the suite prints a note when the data may exceed the cache
//! budget). Every read checks the value against the one written, and
//! removals check that every key was there: a wrong answer fails the run.
//!
//! The disk's fdatasync loop ([`CommitLoop`]) is the reference of Keel's
//! one-writer target. A disk's sync rate drifts by ±15 % within a second
//! and more over tens of seconds, so with Keel in the run the loop takes
//! no turn of its own: Keel's one-writer phase is cut into slices of about
//! [`SLICE_SECS`] (`--secs` in all), and the loop runs a slice as long
//! right before each of Keel's slices and once more after the last, so
//! every Keel slice sits between two loop slices. Before every slice,
//! Keel's or the loop's, Keel's store is checkpointed and the disk
//! settled, so neither runs beside the other's leftover writes (and each
//! Keel slice starts, as the phase would, with every page clean: its first
//! change to each page logs the page's image). Keel's figure is the mean
//! of its slices' rates, the loop's the mean of its slices' rates with the
//! first and the last weighed by half: so a drift that is linear over the
//! phase falls on both alike. Without Keel the loop takes a turn in the
//! rotation like an engine, for `--secs`.
//!
//! Clocks: a phase's clock starts when its threads are ready and stops
//! when the last operation returned (durable for writes) — the same point
//! for every engine. Before the first phase (after the store and its tree
//! or table are created) and between phases, untimed, the engine is
//! checkpointed and the suite waits for a quiet disk ([`Settle`]). The engines take
//! turns by repeat ([`rotation`]), so none always runs first.
//!
//! Figures are operations per second (median and spread over the repeats);
//! the targets of issue #20 are ratios taken repeat by repeat and then the
//! median ([`pairwise`](super::commit::pairwise)), printed with their goal ([`targets::TARGETS`]).

mod sqlite_kv;
mod store;
mod targets;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use keel_io::sim::Rng;

use super::Ctx;
use super::args::Suite;
use super::commit::rotation;
use super::disk::{CommitLoop, SyncVariant};
use super::engine::EngineKind;
use super::measure::{self, TimedOp};
use super::settle::Settle;
use crate::Failure;
use store::{KEY_BYTES, KvStore, VALUE_BYTES};
use targets::{Phase, Results};

/// Gets per read transaction.
pub const READS_PER_TXN: usize = 1_000;
/// Ranges per read transaction (about 1,000 entries).
pub const RANGES_PER_TXN: usize = 100;
/// Entries per range read.
pub const RANGE_LEN: usize = 10;
/// Transactions of the batch writes phase, at most.
pub const BATCH_TXNS: u64 = 100;
/// Puts per transaction of the batch writes phase.
pub const BATCH_PUTS: u64 = 1_000;
/// Deletes per transaction of the removals phase.
pub const DELETES_PER_TXN: u64 = 1_000;
/// Writers in the concurrent individual writes phase.
pub const WRITERS: usize = 64;
/// Longest slice of Keel's one-writer phase when it takes turns with the
/// disk's loop (module docs).
pub const SLICE_SECS: f64 = 0.1;

/// How Keel's one-writer phase of `secs` is cut: the number of its slices
/// and each one's length.
pub fn slices(secs: f64) -> (usize, f64) {
    let n = (secs / SLICE_SECS).ceil().max(1.0) as usize;
    (n, secs / n as f64)
}

/// The loop's figure from its slices' rates around Keel's slices: the
/// mean, the first and the last weighed by half (one slice: its rate).
pub fn around(loops: &[f64]) -> f64 {
    match loops {
        [] => f64::NAN,
        [one] => *one,
        [first, inner @ .., last] => {
            (first / 2.0 + inner.iter().sum::<f64>() + last / 2.0) / (inner.len() + 1) as f64
        }
    }
}

/// Transactions of the batch writes phase for `keys` keys: [`BATCH_TXNS`],
/// fewer for small runs (at least one).
pub fn batch_txns(keys: u64) -> u64 {
    (keys / BATCH_PUTS).clamp(1, BATCH_TXNS)
}

/// One contestant of a repeat.
enum Member {
    Store(EngineKind),
    Disk(Arc<CommitLoop>),
}

/// Runs the kv suite.
pub fn run(ctx: &mut Ctx) -> Result<(), Failure> {
    let members = members(ctx)?;
    let settle = Settle::for_dir(&ctx.root);
    let notes = [
        format!("kv: settle {}", settle.describe()),
        format!(
            "kv: {} keys of {KEY_BYTES} B with {VALUE_BYTES} B values; batch writes \
             {} x {BATCH_PUTS}; reads in transactions of {READS_PER_TXN}, ranges of \
             {RANGE_LEN} in transactions of {RANGES_PER_TXN}, deletes in transactions \
             of {DELETES_PER_TXN}",
            ctx.settings.keys,
            batch_txns(ctx.settings.keys)
        ),
    ];
    for n in notes.into_iter().chain(cache_note(ctx)) {
        ctx.out.line(&format!("  {n}"));
        ctx.report.notes.push(n);
    }
    let per_repeat: u64 = members
        .iter()
        .map(|m| match m {
            Member::Store(_) => Phase::STORE.len() as u64,
            Member::Disk(_) => 1,
        })
        .sum();
    ctx.out.plan(per_repeat * u64::from(ctx.settings.repeat));
    let mut results = Results::default();
    let mut unsettled = 0;
    // With Keel in the run, the disk's loop takes turns with Keel's
    // one-writer phase instead of taking a turn of its own (module docs).
    let keel_runs = members
        .iter()
        .any(|m| matches!(m, Member::Store(EngineKind::Keel)));
    let turns = members.iter().find_map(|m| match m {
        Member::Disk(l) if keel_runs => Some(Arc::clone(l)),
        _ => None,
    });
    let members: Vec<Member> = members
        .into_iter()
        .filter(|m| turns.is_none() || !matches!(m, Member::Disk(_)))
        .collect();
    if turns.is_some() {
        let (n, each) = slices(ctx.settings.kv_secs);
        let n = format!(
            "kv: keel's one-writer phase takes turns with the disk's fdatasync loop in \
             slices of {each:.3} s ({n} of keel's, each between two of the loop's); \
             keel's store checkpointed and the disk settled before every slice; the \
             loop's figure weighs its first and last slice by half"
        );
        ctx.out.line(&format!("  {n}"));
        ctx.report.notes.push(n);
    }
    for rep in 0..ctx.settings.repeat {
        for i in rotation(rep as usize, members.len()) {
            let mut run = Run {
                ctx,
                settle: &settle,
                unsettled: &mut unsettled,
                results: &mut results,
                rep,
                turns: turns.as_ref(),
            };
            run.member(&members[i])?;
        }
    }
    targets::report(ctx, &results);
    if unsettled > 0 {
        let n = format!(
            "kv: {unsettled} settles ended at their limit with I/O still in flight \
             (the device's counters include other processes' I/O)"
        );
        ctx.out.line(&n);
        ctx.report.notes.push(n);
    }
    Ok(())
}

/// The selected engines that take part, with their settings printed; the
/// others skipped with a line.
fn members(ctx: &mut Ctx) -> Result<Vec<Member>, Failure> {
    let mut out = Vec::new();
    for kind in ctx.settings.kv_engines.clone() {
        match kind {
            EngineKind::Disk => {
                let dir = ctx.root.join("kv-disk");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
                let l = CommitLoop::open(&dir, SyncVariant::Fdatasync)?;
                ctx.settings_line(Suite::Kv, "disk", l.settings());
                out.push(Member::Disk(Arc::new(l)));
            }
            EngineKind::Postgres => ctx.skip_named(
                Suite::Kv,
                "postgres",
                "not in the kv suite (it compares embedded stores, as redb's comparison does)",
            ),
            EngineKind::KeelArchived => ctx.skip_named(
                Suite::Kv,
                "keel-archived",
                "takes part in the commit suite only",
            ),
            k => {
                let dir = ctx.root.join(format!("kv-{}-settings", k.name()));
                let s = open_store(k, &dir, ctx.settings.cache_bytes)?;
                ctx.settings_line(Suite::Kv, k.name(), s.settings());
                drop(s);
                remove_dir(&dir)?;
                out.push(Member::Store(k));
            }
        }
    }
    Ok(out)
}

/// A note when the suite's data may not fit the cache budget.
fn cache_note(ctx: &Ctx) -> Option<String> {
    let entries = ctx.settings.keys + batch_txns(ctx.settings.keys) * BATCH_PUTS;
    let bytes = entries * (KEY_BYTES + VALUE_BYTES) as u64;
    (bytes * 2 > ctx.settings.cache_bytes).then(|| {
        format!(
            "kv: up to {} MiB of keys and values against a cache of {} MiB: reads may \
             miss the engines' caches (raise --cache-mib)",
            bytes >> 20,
            ctx.settings.cache_bytes >> 20
        )
    })
}

fn open_store(
    kind: EngineKind,
    dir: &std::path::Path,
    cache_bytes: u64,
) -> Result<Arc<dyn KvStore>, Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
    Ok(match kind {
        EngineKind::Keel => Arc::new(store::KeelKv::open(dir, cache_bytes)?),
        EngineKind::Sqlite => Arc::new(sqlite_kv::SqliteKv::open(dir, cache_bytes)?),
        EngineKind::Redb => Arc::new(store::RedbKv::open(dir, cache_bytes)?),
        other => return Err(Failure(format!("{} is no key-value store", other.name()))),
    })
}

fn remove_dir(dir: &std::path::Path) -> Result<(), Failure> {
    std::fs::remove_dir_all(dir)
        .map_err(|e| Failure(format!("cannot remove {}: {e}", dir.display())))
}

/// One repeat of one member.
struct Run<'a> {
    ctx: &'a mut Ctx,
    settle: &'a Settle,
    unsettled: &'a mut u32,
    results: &'a mut Results,
    rep: u32,
    /// The disk's loop, taking turns with Keel's one-writer phase (module
    /// docs); `None` when it takes its own turn.
    turns: Option<&'a Arc<CommitLoop>>,
}

impl Run<'_> {
    fn member(&mut self, m: &Member) -> Result<(), Failure> {
        match m {
            Member::Disk(l) => {
                self.step("disk", Phase::DiskSync);
                let per_sec = self.disk_loop(l, self.ctx.settings.kv_secs)?;
                self.settled();
                self.record("disk", Phase::DiskSync, per_sec);
                Ok(())
            }
            Member::Store(kind) => {
                let dir = self.ctx.root.join(format!("kv-{}", kind.name()));
                let s = open_store(*kind, &dir, self.ctx.settings.cache_bytes)?;
                let turns = self.turns.filter(|_| *kind == EngineKind::Keel).cloned();
                let out = self.phases(s.clone(), turns);
                drop(s);
                out.map_err(|f| Failure(format!("kv suite, {}: {}", kind.name(), f.0)))?;
                remove_dir(&dir)
            }
        }
    }

    /// One run of the disk's loop for `secs`: its rate.
    fn disk_loop(&mut self, l: &Arc<CommitLoop>, secs: f64) -> Result<f64, Failure> {
        let l = Arc::clone(l);
        let open = move || Ok(Box::new(l.op()) as Box<dyn TimedOp>);
        let ids = AtomicU64::new(0);
        let payload = [0u8; 8];
        Ok(measure::commits(&open, 1, secs, &ids, &payload)?.per_sec)
    }

    /// Keel's one-writer phase taking turns with the disk's loop `l`
    /// (module docs): Keel's rate and the loop's.
    fn interleaved(
        &mut self,
        s: &Arc<dyn KvStore>,
        l: &Arc<CommitLoop>,
        next: &AtomicU64,
    ) -> Result<(f64, f64), Failure> {
        let (n, each) = slices(self.ctx.settings.kv_secs);
        let mut loops = Vec::with_capacity(n + 1);
        let mut keel = 0.0;
        for i in 0..=n {
            s.checkpoint()?;
            self.settled();
            loops.push(self.disk_loop(l, each)?);
            if i == n {
                break;
            }
            s.checkpoint()?;
            self.settled();
            let open = || Ok(Box::new(Put(s.clone())) as Box<dyn TimedOp>);
            keel += measure::commits(&open, 1, each, next, &[])?.per_sec;
        }
        Ok((keel / n as f64, around(&loops)))
    }

    /// Waits for a quiet disk, counting a settle that ended at its limit.
    fn settled(&mut self) {
        if !self.settle.wait() {
            *self.unsettled += 1;
        }
    }

    fn step(&self, name: &str, p: Phase) {
        self.ctx.out.step(&format!(
            "kv: {name} {} (repeat {}/{})",
            p.name(),
            self.rep + 1,
            self.ctx.settings.repeat
        ));
    }

    fn record(&mut self, name: &str, p: Phase, per_sec: f64) {
        self.results.push(name, p, per_sec);
        self.ctx.out.done();
    }

    /// Runs every phase of the module essay on a fresh store; `turns`:
    /// the disk's loop to take turns with its one-writer phase (Keel's).
    fn phases(
        &mut self,
        s: Arc<dyn KvStore>,
        turns: Option<Arc<CommitLoop>>,
    ) -> Result<(), Failure> {
        let keys = self.ctx.settings.keys;
        let secs = self.ctx.settings.kv_secs;
        let seed = 1 + u64::from(self.rep);
        let next = AtomicU64::new(keys);
        // The store's creation (its tree or table, made by `open_store`) is
        // set-up: checkpointed and settled before the first phase, as each
        // phase is after the one before it.
        s.checkpoint()?;
        self.settled();
        for p in Phase::RUN {
            self.step(s.name(), p);
            if let (Some(l), Phase::Individual) = (&turns, p) {
                let (mine, disk) = self.interleaved(&s, l, &next)?;
                self.record(s.name(), p, mine);
                self.record("disk", Phase::DiskSync, disk);
                s.checkpoint()?;
                self.settled();
                continue;
            }
            let per_sec = match p {
                Phase::BulkLoad => rate(keys, timed(|| s.put(0..keys).and(s.checkpoint()))?),
                Phase::Individual | Phase::Writers64 => {
                    let threads = if p == Phase::Individual { 1 } else { WRITERS };
                    let open = || Ok(Box::new(Put(s.clone())) as Box<dyn TimedOp>);
                    measure::commits(&open, threads, secs, &next, &[])?.per_sec
                }
                Phase::Batch => {
                    let txns = batch_txns(keys);
                    let first = next.fetch_add(txns * BATCH_PUTS, Ordering::Relaxed);
                    let secs = timed(|| {
                        (0..txns).try_for_each(|b| {
                            let lo = first + b * BATCH_PUTS;
                            s.put(lo..lo + BATCH_PUTS)
                        })
                    })?;
                    rate(txns * BATCH_PUTS, secs)
                }
                Phase::Removals => removals(s.as_ref(), next.load(Ordering::Relaxed))?,
                read => reads(s.as_ref(), read, keys, seed)?,
            };
            self.record(s.name(), p, per_sec);
            s.checkpoint()?;
            self.settled();
        }
        Ok(())
    }
}

/// One durable put per operation (the individual writes phases).
struct Put(Arc<dyn KvStore>);

impl TimedOp for Put {
    fn run(&mut self, id: u64, _payload: &[u8]) -> Result<(), Failure> {
        self.0.put(id..id + 1)
    }
}

fn timed(f: impl FnOnce() -> Result<(), Failure>) -> Result<f64, Failure> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed().as_secs_f64())
}

fn rate(ops: u64, secs: f64) -> f64 {
    ops as f64 / secs.max(1e-9)
}

/// Deletes keys `0..written` in transactions of [`DELETES_PER_TXN`]; an
/// error unless every one was there.
fn removals(s: &dyn KvStore, written: u64) -> Result<f64, Failure> {
    let mut found = 0;
    let secs = timed(|| {
        let mut lo = 0;
        while lo < written {
            let hi = (lo + DELETES_PER_TXN).min(written);
            found += s.delete(lo..hi)?;
            lo = hi;
        }
        Ok(())
    })?;
    if found != written {
        return Err(Failure(format!(
            "removals found {found} of the {written} keys written"
        )));
    }
    Ok(rate(written, secs))
}

/// A read phase: a warm-up pass, then the timed pass over the same keys.
fn reads(s: &dyn KvStore, p: Phase, keys: u64, seed: u64) -> Result<f64, Failure> {
    let threads = p.threads();
    let ops = if p == Phase::Ranges {
        keys / RANGE_LEN as u64
    } else {
        keys
    };
    let lists = random_lists(keys, ops, threads, seed);
    let pass = |lists: &[Vec<u64>]| -> Result<f64, Failure> {
        if p == Phase::Ranges {
            parallel(lists, RANGES_PER_TXN, |chunk| {
                let n = s.ranges(chunk, RANGE_LEN)?;
                // Every start key exists, so a range returns at least it.
                if n < chunk.len() as u64 {
                    return Err(Failure(format!(
                        "{} ranges from loaded keys returned {n} entries",
                        chunk.len()
                    )));
                }
                Ok(())
            })
        } else {
            parallel(lists, READS_PER_TXN, |chunk| s.get(chunk))
        }
    };
    pass(&lists)?;
    Ok(rate(ops, pass(&lists)?))
}

/// `ops` random indices below `keys`, split into `threads` lists.
pub fn random_lists(keys: u64, ops: u64, threads: usize, seed: u64) -> Vec<Vec<u64>> {
    let threads = threads.max(1) as u64;
    (0..threads)
        .map(|t| {
            let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(t));
            let n = ops / threads + u64::from(t < ops % threads);
            (0..n).map(|_| rng.below(keys.max(1))).collect()
        })
        .collect()
}

/// Runs `op` on chunks of `chunk` indices, one thread per list; the time
/// from every thread ready to the last one done.
fn parallel(
    lists: &[Vec<u64>],
    chunk: usize,
    op: impl Fn(&[u64]) -> Result<(), Failure> + Sync,
) -> Result<f64, Failure> {
    let gate = measure::StartGate::new(lists.len());
    std::thread::scope(|sc| {
        let handles: Vec<_> = lists
            .iter()
            .map(|list| {
                let (gate, op) = (&gate, &op);
                sc.spawn(move || {
                    gate.wait();
                    list.chunks(chunk).try_for_each(op)
                })
            })
            .collect();
        let start = gate.start();
        let mut first_error = None;
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(Failure("a reading thread panicked".into())));
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        first_error.map_or(Ok(secs), Err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_writes_take_redbs_shape_from_100000_keys() {
        assert_eq!(batch_txns(100_000), 100);
        assert_eq!(batch_txns(5_000_000), 100);
        assert_eq!(batch_txns(50_000), 50);
        assert_eq!(batch_txns(1_000), 1);
        assert_eq!(batch_txns(10), 1);
    }

    #[test]
    fn keels_one_writer_phase_is_cut_into_slices_of_at_most_a_tenth_of_a_second() {
        assert_eq!(slices(0.5), (5, 0.1));
        assert_eq!(slices(0.05), (1, 0.05));
        let (n, each) = slices(0.25);
        assert_eq!(n, 3);
        assert!((each * 3.0 - 0.25).abs() < 1e-12 && each <= SLICE_SECS);
    }

    #[test]
    fn the_loop_figure_weighs_its_first_and_last_slice_by_half() {
        assert_eq!(around(&[100.0]), 100.0);
        // Around one Keel slice: the mean of the two.
        assert_eq!(around(&[100.0, 200.0]), 150.0);
        // A linear drift gives its midpoint; the plain mean would too, but
        // not for 100, 100, 400, whose midpoints are 100 and 250.
        assert_eq!(around(&[100.0, 200.0, 300.0]), 200.0);
        assert_eq!(around(&[100.0, 100.0, 400.0]), 175.0);
        assert!(around(&[]).is_nan());
    }

    #[test]
    fn read_lists_split_the_operations_and_stay_in_range() {
        let lists = random_lists(1_000, 10_003, 4, 7);
        assert_eq!(lists.len(), 4);
        let lens: Vec<usize> = lists.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![2501, 2501, 2501, 2500]);
        assert!(lists.iter().flatten().all(|&i| i < 1_000));
        // Threads read different keys; the same seed gives the same keys.
        assert_ne!(lists[0], lists[1]);
        assert_eq!(random_lists(1_000, 10_003, 4, 7), lists);
        assert_ne!(random_lists(1_000, 10_003, 4, 8), lists);
    }

    #[test]
    fn parallel_reports_the_first_error_and_times_the_rest() {
        let lists = vec![vec![1, 2, 3], vec![4, 5]];
        let seen = AtomicU64::new(0);
        let secs = parallel(&lists, 2, |c| {
            seen.fetch_add(c.iter().sum::<u64>(), Ordering::Relaxed);
            Ok(())
        });
        assert!(secs.is_ok_and(|s| s >= 0.0));
        assert_eq!(seen.load(Ordering::Relaxed), 15);
        let r = parallel(&lists, 2, |c| {
            if c.contains(&5) {
                Err(Failure("five".into()))
            } else {
                Ok(())
            }
        });
        assert!(r.is_err_and(|e| e.0 == "five"));
    }

    /// Every phase on every store, small: the stores answer as the suite
    /// expects (values checked, every removal found, ranges of 10).
    #[test]
    fn every_store_runs_every_phase() {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(tmp) = tmp else {
            panic!("no temporary directory");
        };
        for kind in [EngineKind::Keel, EngineKind::Sqlite, EngineKind::Redb] {
            let dir = tmp.path().join(kind.name());
            let s = open_store(kind, &dir, 8 << 20).map_err(|f| f.0);
            let s = s.unwrap_or_else(|e| panic!("{e}"));
            let go = || -> Result<(), Failure> {
                s.put(0..2_000)?;
                s.put(2_000..2_001)?;
                reads(s.as_ref(), Phase::Reads4, 2_000, 1)?;
                reads(s.as_ref(), Phase::Ranges, 2_000, 1)?;
                // From the smallest key, a range has all 10 entries.
                let Some(first) = (0..2_000).min_by_key(|&i| store::key(i)) else {
                    unreachable!("2,000 keys")
                };
                assert_eq!(s.ranges(&[first], RANGE_LEN)?, RANGE_LEN as u64);
                assert!(s.get(&[2_001]).is_err(), "{}: a missing key", kind.name());
                removals(s.as_ref(), 2_001)?;
                assert!(removals(s.as_ref(), 1).is_err());
                Ok(())
            };
            go().unwrap_or_else(|e| panic!("{}: {}", kind.name(), e.0));
        }
    }
}
