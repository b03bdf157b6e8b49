//! `keel demo`: Keel end to end on a fresh data directory.
//!
//! 1. Creates the database and its relations (`accounts`, `blobs`), and a
//!    tree (`by_version`) that indexes every live value: each transaction
//!    changes a tuple and its index key together ([`workload`](mod@workload)).
//! 2. Runs a concurrent workload in process (worker threads, each owning its
//!    tuples): inserts, updates that grow and move tuples or shrink them,
//!    deletes, values of a few MiB in overflow chains, and aborts; then a
//!    checkpoint and a clean close.
//! 3. Starts `keel demo-child` (this same executable, hidden subcommand) on
//!    the directory: it recovers, goes on with the workload and reports
//!    each commit through a pipe before and after it ([`child`]); the
//!    parent kills it with SIGKILL after a random delay.
//! 4. Reopens the database (recovery) and checks that every acknowledged
//!    commit is there and nothing else, and that the tree indexes exactly
//!    the tuples found ([`verify`]).
//! 5. Prints a summary table; exits 0 when verification passed, 1 when it
//!    found a lost or phantom commit.
//! 6. With `--archive`: archives the log to a local directory, takes a base
//!    backup, runs more transactions, loses the data directory, restores
//!    it from the archive and verifies it ([`archive`]).

mod archive;
pub(crate) mod child;
pub(crate) mod crash;
mod report;
pub(crate) mod verify;
pub(crate) mod workload;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use keel::{Config, Database};
use keel_io::sim::Rng;

pub use child::{ChildArgs, engine_config, main as child_main};
use workload::{Counts, INDEX, RELATIONS, Rels, Sink, Sizes, TxnRecord, Worker};

use crate::Failure;

/// A file the demo leaves in its directory, so a later run may wipe it.
const MARKER: &str = "keel-demo.marker";

/// Arguments of `keel demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Data directory to create. An existing one is used only if it is
    /// empty or holds an earlier demo (which is wiped).
    #[arg(long, default_value = "keel-demo")]
    pub dir: PathBuf,
    /// A smaller run of a few seconds (as the tests use).
    #[arg(long)]
    pub quick: bool,
    /// Worker threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Seed of the workload and of the kill time (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Then archive the log and a base backup, lose the data directory,
    /// restore it from the archive and verify it. The archive: a local
    /// directory `DIR.archive` (made and wiped by the demo), or the URL
    /// given (`s3://BUCKET/PREFIX` under a prefix no other database uses,
    /// credentials from the AWS_* environment; or `file:///DIR`).
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub archive: Option<String>,
    /// The endpoint of the S3-compatible server `--archive s3://…` names
    /// (`http://127.0.0.1:8333`); unset for AWS S3 itself.
    #[arg(long, value_name = "URL", requires = "archive")]
    pub endpoint: Option<String>,
    /// What commits do while the archive is down (with --archive;
    /// `crate::archive_policy`).
    #[command(flatten)]
    pub policy: crate::archive_policy::PolicyArgs,
}

/// Entry point of `keel demo`: exit 0 when verification passed, 1 when it
/// failed or something broke, 2 when the directory cannot be used.
pub fn run(args: DemoArgs) -> ExitCode {
    let checked = args.policy.policy_with(args.archive.is_some());
    if let Err(Failure(msg)) = checked.and_then(|_| prepare_dir(&args.dir)) {
        eprintln!("keel: error: {msg}");
        return ExitCode::from(2);
    }
    let store = match args
        .archive
        .as_ref()
        .map(|url| archive::place(&args, url))
        .transpose()
    {
        Ok(store) => store,
        Err(Failure(msg)) => {
            eprintln!("keel: error: {msg}");
            return ExitCode::from(2);
        }
    };
    match demo(&args, store.as_ref()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!(
                "keel: error: verification failed: a commit was lost, a phantom found or a page \
                 corrupt (the problems are listed above)"
            );
            ExitCode::from(1)
        }
        Err(Failure(msg)) => {
            eprintln!("keel: error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Makes sure `dir` is absent or empty, wiping it if an earlier demo made it.
fn prepare_dir(dir: &Path) -> Result<(), Failure> {
    let shown = dir.display();
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) if dir.exists() => {
            return Err(Failure(format!("{shown} exists and is not a directory")));
        }
        Err(e) => return Err(Failure(format!("cannot read {shown}: {e}"))),
    };
    if entries.next().is_none() {
        return Ok(());
    }
    if !dir.join(MARKER).is_file() {
        return Err(Failure(format!(
            "{shown} is not empty and was not made by keel demo; remove it or pass another --dir"
        )));
    }
    std::fs::remove_dir_all(dir)
        .map_err(|e| Failure(format!("cannot remove the earlier demo in {shown}: {e}")))
}

/// Marks `dir` as the demo's, so a later run may wipe it.
fn write_marker(dir: &Path) -> Result<(), Failure> {
    let marker = dir.join(MARKER);
    std::fs::write(&marker, "made by keel demo; wiped by the next run\n")
        .map_err(|e| Failure(format!("cannot write {}: {e}", marker.display())))
}

/// The ids of the demo's relations and index tree.
pub(crate) fn relation_ids(db: &Database) -> Result<Rels, Failure> {
    let id = |name: &str| {
        db.relation(name)?
            .ok_or_else(|| Failure(format!("relation {name} is missing")))
    };
    let index = db
        .tree(INDEX)?
        .ok_or_else(|| Failure(format!("tree {INDEX} is missing")))?;
    Ok(Rels {
        heap: [id(RELATIONS[0])?, id(RELATIONS[1])?],
        index,
    })
}

/// Creates the demo's relations and index tree.
pub(crate) fn create_relations(db: &Database) -> Result<Rels, Failure> {
    Ok(Rels {
        heap: [
            db.create_relation(RELATIONS[0])?,
            db.create_relation(RELATIONS[1])?,
        ],
        index: db.create_tree(INDEX)?,
    })
}

/// What the in-process phase did.
struct Phase1 {
    acked: Vec<TxnRecord>,
    counts: Counts,
    elapsed: Duration,
    syncs: u64,
    checkpoint: keel::CheckpointReport,
}

fn demo(args: &DemoArgs, store: Option<&archive::Place>) -> Result<bool, Failure> {
    let seed = args.seed.unwrap_or_else(clock_seed);
    let dir = &args.dir;
    outln!(
        "keel demo: data directory {}, {} threads, seed {seed}",
        dir.display(),
        args.threads
    )?;
    let phase1 = in_process(args, seed)?;
    let mut rng = Rng::new(seed ^ 0xC0FFEE);
    let delay_ms = if args.quick {
        300 + rng.below(500)
    } else {
        2000 + rng.below(3000)
    };
    outln!("  child process: recovers, runs the workload, SIGKILL after {delay_ms} ms")?;
    let crash = crash::crash_child(&crash::ChildSpec {
        quick: args.quick,
        ..crash::ChildSpec::new(
            dir,
            args.threads,
            seed ^ 0x5EED,
            Duration::from_millis(delay_ms),
        )
    })?;
    outln!(
        "  child {} killed: {} commits acknowledged, {} in flight",
        crash.pid,
        crash.acked.len(),
        crash.in_flight.len()
    )?;
    let db = Database::open(dir, Config::default())?;
    let recovery = db.recovery_report();
    let local_recovery = recovery.clone();
    outln!(
        "  reopened: recovery took {:.1} ms; verifying every tuple",
        recovery.duration.as_secs_f64() * 1e3
    )?;
    let mut all = phase1.acked;
    all.extend(crash.acked.iter().cloned());
    let verdict = verify::verify(&db, relation_ids(&db)?, &all, &crash.in_flight)?;
    all.extend(
        crash
            .in_flight
            .iter()
            .filter(|t| verdict.applied.contains(&t.tag))
            .cloned(),
    );
    for p in &verdict.problems {
        outln!("  problem: {p}")?;
    }
    let storage = crate::space::relations(&db)?;
    report::print(&report::Summary {
        threads: args.threads,
        counts: phase1.counts,
        phase1: phase1.elapsed,
        syncs: phase1.syncs,
        checkpoint: &phase1.checkpoint,
        crash: &crash,
        recovery,
        verdict: &verdict,
        wal_bytes: db.wal_end().0,
        wal_files: crate::space::wal_files(dir),
        storage: &storage,
    })?;
    db.close()?;
    let unsound = unsound_storage(&storage);
    for p in &unsound {
        outln!("  problem: {p}")?;
    }
    let mut passed = verdict.passed() && unsound.is_empty();
    if let Some(store) = store.filter(|_| passed) {
        outln!("archive step: back up, lose the data directory, restore from the archive")?;
        let seed = seed ^ 0xA2C4;
        let run = archive::Run {
            dir,
            place: store,
            threads: args.threads,
            seed,
            quick: args.quick,
        };
        let outcome = archive::run(&run, all, &local_recovery)?;
        passed = outcome.passed();
        if passed {
            outln!(
                "restore verified: to the point, the {} commits before it and nothing after; to \
                 the end, every commit acknowledged before the loss ({} after the backup), and \
                 nothing else",
                outcome.at_point,
                outcome.after_backup
            )?;
        }
    }
    if passed {
        outln!("verification passed: every acknowledged commit is there, and nothing else")?;
        let d = dir.display();
        outln!("look inside: keel inspect page --dir {d} --rel accounts --page 0")?;
        outln!("             keel inspect fsm --dir {d} --rel accounts")?;
    }
    Ok(passed)
}

/// Creates the database and relations, runs the workload in process,
/// checkpoints and closes.
fn in_process(args: &DemoArgs, seed: u64) -> Result<Phase1, Failure> {
    let dir = &args.dir;
    let db = Database::open(dir, Config::default())?;
    write_marker(dir)?;
    let rels = create_relations(&db)?;
    outln!(
        "  created relations {} and {}, and tree {INDEX} (an index: version -> TupleId)",
        RELATIONS[0],
        RELATIONS[1]
    )?;
    let sizes = Sizes::new(args.quick);
    let (acked, counts, elapsed) = workload(&db, rels, args.threads, (1, seed), sizes)?;
    outln!(
        "  ran {} transactions ({} committed, {} rolled back) in {:.2} s",
        counts.commits + counts.aborts,
        counts.commits,
        counts.aborts,
        elapsed.as_secs_f64()
    )?;
    let syncs = db.wal_stats().flushes;
    let checkpoint = db.checkpoint()?;
    outln!("  checkpoint at {}; closed", checkpoint.begin)?;
    db.close()?;
    Ok(Phase1 {
        acked,
        counts,
        elapsed,
        syncs,
        checkpoint,
    })
}

pub(crate) fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x6B65_656C, |d| d.as_nanos() as u64)
}

/// Collects a worker's committed transactions.
#[derive(Default)]
struct VecSink(Vec<TxnRecord>);

impl Sink for VecSink {
    fn announce(&mut self, _: &TxnRecord) -> Result<(), Failure> {
        Ok(())
    }

    fn acknowledge(&mut self, rec: TxnRecord) -> Result<(), Failure> {
        self.0.push(rec);
        Ok(())
    }
}

/// The in-process workload of `phase` (which numbers its transactions'
/// tags), with a progress bar on a terminal.
fn workload(
    db: &Database,
    rels: Rels,
    threads: u16,
    (phase, seed): (u8, u64),
    sizes: Sizes,
) -> Result<(Vec<TxnRecord>, Counts, Duration), Failure> {
    let bar = progress(u64::from(threads) * sizes.txns_per_thread);
    let started = Instant::now();
    let results: Vec<Result<(Vec<TxnRecord>, Counts), Failure>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let bar = bar.clone();
                s.spawn(move || {
                    let mut worker =
                        Worker::new(db, rels, (phase, w), seed, sizes, Default::default());
                    let mut sink = VecSink::default();
                    for _ in 0..sizes.txns_per_thread {
                        worker.run_txn(&mut sink)?;
                        bar.inc(1);
                    }
                    Ok((sink.0, worker.counts))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Failure("a demo worker panicked".into())))
            })
            .collect()
    });
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let (mut acked, mut counts) = (Vec::new(), Counts::default());
    for r in results {
        let (recs, c) = r?;
        acked.extend(recs);
        counts += c;
    }
    Ok((acked, counts, elapsed))
}

/// What the storage table shows wrong: a relation with a page that failed
/// validation or a slot that failed to decode (either fails the demo).
fn unsound_storage(storage: &[crate::space::RelSpace]) -> Vec<String> {
    storage
        .iter()
        .filter(|r| r.invalid > 0 || r.heap.corrupt_slots > 0)
        .map(|r| {
            format!(
                "relation {}: {} pages failed validation, {} slots failed to decode",
                r.name, r.invalid, r.heap.corrupt_slots
            )
        })
        .collect()
}

fn progress(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("  {bar:40} {pos}/{len} transactions, {per_sec}, eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// A spinner with a message, on a terminal only.
fn spinner() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::RelSpace;

    #[test]
    fn a_corrupt_slot_or_an_invalid_page_fails_the_demo() {
        let sound = RelSpace {
            name: "accounts".into(),
            ..RelSpace::default()
        };
        assert!(unsound_storage(std::slice::from_ref(&sound)).is_empty());
        let mut slots = RelSpace {
            name: "blobs".into(),
            ..RelSpace::default()
        };
        slots.heap.corrupt_slots = 1;
        let pages = RelSpace {
            invalid: 2,
            ..RelSpace::default()
        };
        let found = unsound_storage(&[sound, slots, pages]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].contains("blobs") && found[0].contains("1 slots"),
            "{found:?}"
        );
        assert!(found[1].contains("2 pages"), "{found:?}");
    }
}
