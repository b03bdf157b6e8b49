//! `keel crashtest`: the SIGKILL crash loop as a command.
//!
//! One data directory serves every cycle, so each cycle also recovers what
//! the earlier crashes left. A cycle:
//!
//! 1. starts `keel demo-child` on the directory (it recovers, then runs the
//!    demo's concurrent workload, reporting every transaction through a pipe
//!    before and after its commit);
//! 2. kills it with SIGKILL a random 50–300 ms (seeded) after it is ready;
//! 3. reopens the database (recovery) with the same I/O backend, and checks
//!    that every commit acknowledged in any cycle so far is there, that no
//!    unacknowledged or rolled-back change is, and that each in-flight commit
//!    is there wholly or not at all (the demo's verifier).
//!
//! The reopen after odd cycles' kills syncs the data directory with syncfs,
//! after even ones with an fsync of every file (invariant 14; on Linux), and
//! each cycle checks that the open did.
//!
//! Unless `--no-ddl`, the child also creates, fills and drops side
//! relations and side trees on a thread of its own, and each cycle checks
//! them after recovery (`check_side_relations`): a create that returned
//! is there (with all its rows or keys once they committed), an
//! acknowledged drop (this cycle's or any earlier one's) is gone, one in
//! progress is either, and recovery left no relation file it could not
//! place. A failed cycle leaves the directory as recovery left it.
//!
//! `--dir` names a directory that is absent, empty, or an earlier
//! crashtest's (it holds `keel-crashtest.marker`). The last is wiped, but
//! only while this process holds its `LOCK` the way every open takes it
//! ([`keel::datadir::lock_dir`]): a directory that another process has
//! open (another crashtest, say) is refused and nothing in it is deleted.
//!
//! A run in which no commit was ever acknowledged proved nothing (there
//! was nothing to lose), so it fails (`check_acknowledged`).
//!
//! Exit 0 when every cycle verified, 1 on a lost or phantom commit (the loop
//! stops there and keeps the directory), a run that acknowledged no commit,
//! or an error, 2 on bad usage.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use keel::datadir::RecoveryInitSync;
use keel::{Config, Database};
use keel_io::sim::Rng;

use crate::Failure;
use crate::demo::child::{DdlStep, SIDE_TREE_PREFIX};
use crate::demo::crash::{ChildSpec, CrashRun, crash_child};
use crate::demo::verify::{Verdict, verify};
use crate::demo::workload::TxnRecord;
use crate::demo::{clock_seed, engine_config, relation_ids};

/// A file crashtest leaves in its directory, so a later run may wipe it.
const MARKER: &str = "keel-crashtest.marker";
/// Transaction sequence numbers per cycle: tags stay unique across cycles.
const SEQ_PER_CYCLE: u64 = 1 << 24;
/// The shortest kill delay.
const MIN_DELAY_MS: u64 = 50;

/// The I/O backend to crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// io_uring where available, else the thread pool.
    Auto,
    /// The portable thread-pool backend.
    ThreadPool,
    /// The Linux io_uring backend.
    IoUring,
}

impl BackendArg {
    fn backend(self) -> keel_io::Backend {
        match self {
            BackendArg::Auto => keel_io::Backend::Auto,
            BackendArg::ThreadPool => keel_io::Backend::ThreadPool,
            BackendArg::IoUring => keel_io::Backend::IoUring,
        }
    }
}

/// Arguments of `keel crashtest`.
#[derive(Debug, clap::Args)]
pub struct CrashtestArgs {
    /// Crash cycles to run.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub cycles: u32,
    /// Seed of the workloads and kill times (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The I/O backend, for the child and for recovery.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Data directory (absent, empty, or an earlier crashtest's, which is
    /// wiped); default: a temporary one, removed unless a cycle fails.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print one JSON object at the end instead of text.
    #[arg(long)]
    pub json: bool,
    /// Worker threads in the child.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// The longest a child runs before the kill, in milliseconds (the kill
    /// falls at random between 50 ms, or this if smaller, and this).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub max_kill_ms: u64,
    /// Redo consistency checking: the child logs a page image after every
    /// change and each recovery compares every page it redoes with it (a
    /// mismatch fails the cycle). Slower; for testing the engine.
    #[arg(long)]
    pub consistency_check: bool,
    /// Leave out the side relations the child otherwise creates and drops
    /// under the kill.
    #[arg(long)]
    pub no_ddl: bool,
    /// A shell command run after each kill, before recovery, with the data
    /// directory in `KEEL_CRASHTEST_DIR`: damage it there to see the
    /// verifier report the damage (for testing crashtest itself).
    #[arg(long, hide = true, value_name = "CMD")]
    pub after_kill: Option<String>,
    /// The child runs no workers, only its DDL thread, so no commit is
    /// ever acknowledged and the run must fail (for testing crashtest
    /// itself).
    #[arg(long, hide = true, conflicts_with = "no_ddl")]
    pub idle_child: bool,
}

/// Totals over the cycles run.
#[derive(Debug, Default)]
struct Totals {
    cycles: u32,
    acked: u64,
    in_flight: u64,
    in_flight_durable: u64,
    lost: usize,
    phantom: usize,
    corrupt: usize,
    recovery_max: Duration,
    recovery_sum: Duration,
    txns_undone: u64,
    pages_compared: u64,
    tuples: usize,
    /// Side relations whose create the child began / whose drop returned.
    side_created: u64,
    side_dropped: u64,
    /// Side relations caught mid-create or mid-drop by a kill.
    side_in_progress: u64,
    /// The same for side trees.
    trees_created: u64,
    trees_dropped: u64,
    trees_in_progress: u64,
}

/// What the loop carries from cycle to cycle.
struct Run<'a> {
    args: &'a CrashtestArgs,
    dir: &'a Path,
    seed: u64,
    rng: Rng,
    /// Every commit acknowledged so far (and in-flight ones found durable),
    /// in the order each worker made them.
    history: Vec<TxnRecord>,
    totals: Totals,
    problems: Vec<String>,
}

/// Entry point of `keel crashtest`.
pub fn run(args: CrashtestArgs) -> ExitCode {
    let (dir, temp) = match prepare(&args) {
        Ok(d) => d,
        Err(Failure(msg)) => {
            eprintln!("keel: error: {msg}");
            return ExitCode::from(2);
        }
    };
    let seed = args.seed.unwrap_or_else(clock_seed);
    let mut run = Run {
        args: &args,
        dir: &dir,
        seed,
        rng: Rng::new(seed),
        history: Vec::new(),
        totals: Totals::default(),
        problems: Vec::new(),
    };
    let started = Instant::now();
    let outcome = check_acknowledged(run.all_cycles(), run.totals.acked, run.totals.cycles);
    let elapsed = started.elapsed();
    let passed = matches!(outcome, Ok(true));
    if let Err(Failure(msg)) = &outcome {
        run.problems.push(msg.clone());
    }
    let written = run.summary(elapsed, passed);
    match (temp, passed) {
        (Some(t), true) => drop(t),
        (Some(t), false) => eprintln!("keel: data directory kept: {}", t.keep().display()),
        (None, _) => {}
    }
    if let Err(Failure(msg)) = written {
        eprintln!("keel: error: {msg}");
        return ExitCode::from(1);
    }
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!(
                "keel: error: crashtest failed: a commit was lost or a phantom found (seed {seed}, backend {})",
                args.backend.backend().name()
            );
            ExitCode::from(1)
        }
        Err(Failure(msg)) => {
            eprintln!("keel: error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// The data directory to use, and the temporary one to remove after.
fn prepare(args: &CrashtestArgs) -> Result<(PathBuf, Option<tempfile::TempDir>), Failure> {
    let Some(dir) = &args.dir else {
        let temp = tempfile::Builder::new()
            .prefix("keel-crashtest-")
            .tempdir()
            .map_err(|e| Failure(format!("cannot make a temporary directory: {e}")))?;
        return Ok((temp.path().join("data"), Some(temp)));
    };
    let shown = dir.display();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            if entries.into_iter().next().is_none() {
                return Ok((dir.clone(), None));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((dir.clone(), None)),
        Err(_) if dir.exists() => {
            return Err(Failure(format!("{shown} exists and is not a directory")));
        }
        Err(e) => return Err(Failure(format!("cannot read {shown}: {e}"))),
    }
    if !dir.join(MARKER).is_file() {
        return Err(Failure(format!(
            "{shown} is not empty and was not made by keel crashtest; remove it or pass another --dir"
        )));
    }
    // Held until the directory is gone: no open can begin meanwhile.
    let _lock = keel::datadir::lock_dir(dir).map_err(|e| {
        Failure(format!(
            "will not wipe the earlier crashtest in {shown}: {e}; nothing was deleted"
        ))
    })?;
    std::fs::remove_dir_all(dir).map_err(|e| {
        Failure(format!(
            "cannot remove the earlier crashtest in {shown}: {e}"
        ))
    })?;
    Ok((dir.clone(), None))
}

/// The run's outcome once its acknowledged commits are counted: a run
/// whose cycles all passed but that acknowledged no commit checked
/// nothing, and fails.
fn check_acknowledged(
    outcome: Result<bool, Failure>,
    acked: u64,
    cycles: u32,
) -> Result<bool, Failure> {
    match outcome {
        Ok(true) if acked == 0 => Err(Failure(format!(
            "no commit was acknowledged in {cycles} cycles, so none could be checked; \
             give the child more time before the kill (--max-kill-ms)"
        ))),
        other => other,
    }
}

/// How the open after cycle `i`'s kill syncs the data directory
/// (invariant 14): fsync of every file and syncfs take turns on Linux, so
/// the kill runs over both.
fn unclean_sync_method(i: u32) -> RecoveryInitSync {
    if cfg!(target_os = "linux") && i % 2 == 1 {
        RecoveryInitSync::SyncFs
    } else {
        RecoveryInitSync::Fsync
    }
}

fn config(args: &CrashtestArgs) -> Config {
    Config {
        consistency_check: args.consistency_check,
        ..engine_config(args.backend.backend(), true)
    }
}

impl Run<'_> {
    /// Creates the database, then runs the cycles; `Ok(false)` at the first
    /// cycle that finds a lost or phantom commit.
    fn all_cycles(&mut self) -> Result<bool, Failure> {
        let db = Database::open(self.dir, config(self.args))?;
        let marker = self.dir.join(MARKER);
        std::fs::write(&marker, "made by keel crashtest; wiped by the next run\n")
            .map_err(|e| Failure(format!("cannot write {}: {e}", marker.display())))?;
        crate::demo::create_relations(&db)?;
        db.close()?;
        if !self.args.json {
            outln!(
                "keel crashtest: {} cycles, backend {}, {} threads, seed {}, data directory {}",
                self.args.cycles,
                self.args.backend.backend().name(),
                self.args.threads,
                self.seed,
                self.dir.display()
            )?;
        }
        let bar = progress(u64::from(self.args.cycles), self.args.json);
        for i in 0..self.args.cycles {
            let ok = self.cycle(i, &bar)?;
            bar.inc(1);
            if !ok {
                bar.finish_and_clear();
                return Ok(false);
            }
        }
        bar.finish_and_clear();
        Ok(true)
    }

    /// One crash, recovery and verification (side relations: see
    /// [`check_side_relations`]).
    fn cycle(&mut self, i: u32, bar: &ProgressBar) -> Result<bool, Failure> {
        let child_seed = self.rng.next_u64();
        let max = self.args.max_kill_ms;
        let min = MIN_DELAY_MS.min(max);
        let delay = Duration::from_millis(min + self.rng.below(max - min + 1));
        let backend = self.args.backend.backend().name();
        let threads = if self.args.idle_child {
            0
        } else {
            self.args.threads
        };
        let spec = ChildSpec {
            quick: true,
            min_acks: 0,
            backend,
            first_seq: u64::from(i) * SEQ_PER_CYCLE,
            checkpoint_every: Duration::from_millis(100),
            spinner: false,
            small: true,
            consistency_check: self.args.consistency_check,
            ddl: !self.args.no_ddl,
            ..ChildSpec::new(self.dir, threads, child_seed, delay)
        };
        let crash = crash_child(&spec).map_err(|Failure(m)| {
            Failure(format!("cycle {} (child seed {child_seed}): {m}", i + 1))
        })?;
        if let Some(cmd) = &self.args.after_kill {
            after_kill(cmd, self.dir)
                .map_err(|Failure(m)| Failure(format!("cycle {}: {m}", i + 1)))?;
        }
        let method = unclean_sync_method(i);
        let reopen = Config {
            recovery_init_sync: method,
            ..config(self.args)
        };
        let db = Database::open(self.dir, reopen).map_err(|e| {
            let Failure(m) = Failure::from(e);
            Failure(format!("cycle {}: reopening after the crash: {m}", i + 1))
        })?;
        let recovery = db.recovery_report().clone();
        let synced = recovery.data_dir_sync.as_ref().map(|r| r.method) == Some(method);
        self.history.extend(crash.acked.iter().cloned());
        let mut verdict = verify(&db, relation_ids(&db)?, &self.history, &crash.in_flight)?;
        let side = check_side_relations(&db, &crash)?;
        let side_ok = side.is_empty();
        verdict.problems.extend(side);
        if !synced {
            verdict.problems.push(format!(
                "the open after the kill did not sync the data directory with {method:?} \
                 (invariant 14): {:?}",
                recovery.data_dir_sync
            ));
        }
        // A failed cycle keeps the directory as recovery left it.
        if verdict.passed() && side_ok && synced {
            drop_side_relations(&db)?;
        }
        db.close()?;
        self.history.extend(
            crash
                .in_flight
                .iter()
                .filter(|r| verdict.applied.contains(&r.tag))
                .cloned(),
        );
        self.account(&crash, &verdict, &recovery);
        if !self.args.json {
            let line = cycle_line(
                i + 1,
                self.args.cycles,
                (child_seed, delay),
                &crash,
                &verdict,
                &recovery,
            );
            bar.suspend(|| outln!("{line}"))?;
        }
        for p in &verdict.problems {
            self.problems
                .push(format!("cycle {} (child seed {child_seed}): {p}", i + 1));
        }
        Ok(verdict.passed() && side_ok && synced)
    }

    fn account(&mut self, crash: &CrashRun, verdict: &Verdict, recovery: &keel::RecoveryReport) {
        let t = &mut self.totals;
        t.cycles += 1;
        t.acked += crash.acked.len() as u64;
        t.in_flight += crash.in_flight.len() as u64;
        t.in_flight_durable += verdict.in_flight_applied as u64;
        t.lost += verdict.lost.len();
        t.phantom += verdict.phantom.len();
        t.corrupt += verdict.corrupt;
        t.recovery_max = t.recovery_max.max(recovery.duration);
        t.recovery_sum += recovery.duration;
        t.txns_undone += recovery.txns_undone;
        t.pages_compared += recovery.consistency_checks;
        t.tuples = verdict.tuples;
        let cut = |step: &DdlStep| {
            u64::from(matches!(
                step,
                DdlStep::Create | DdlStep::Made | DdlStep::Drop
            ))
        };
        for step in crash.ddl.values() {
            t.side_created += 1;
            t.side_dropped += u64::from(*step == DdlStep::Dropped);
            t.side_in_progress += cut(step);
        }
        for step in crash.trees.values() {
            t.trees_created += 1;
            t.trees_dropped += u64::from(*step == DdlStep::Dropped);
            t.trees_in_progress += cut(step);
        }
    }

    fn summary(&self, elapsed: Duration, passed: bool) -> Result<(), Failure> {
        let t = &self.totals;
        let mean_ms = if t.cycles == 0 {
            0.0
        } else {
            t.recovery_sum.as_secs_f64() * 1e3 / f64::from(t.cycles)
        };
        if self.args.json {
            self.summary_json(elapsed, passed, mean_ms)
        } else {
            self.summary_text(elapsed, passed, mean_ms)
        }
    }

    fn summary_json(&self, elapsed: Duration, passed: bool, mean_ms: f64) -> Result<(), Failure> {
        let t = &self.totals;
        let out = serde_json::json!({
                "passed": passed,
                "cycles": t.cycles,
                "cycles_requested": self.args.cycles,
                "seed": self.seed,
                "backend": self.args.backend.backend().name(),
                "threads": self.args.threads,
                "commits_verified": t.acked + t.in_flight_durable,
                "acknowledged": t.acked,
                "in_flight": t.in_flight,
                "in_flight_durable": t.in_flight_durable,
                "lost": t.lost,
                "phantom": t.phantom,
                "corrupt": t.corrupt,
                "transactions_undone": t.txns_undone,
                "consistency_check": self.args.consistency_check,
                "pages_compared": t.pages_compared,
                "tuples_at_end": t.tuples,
                "side_relations_created": t.side_created,
                "side_relations_dropped": t.side_dropped,
                "side_relations_cut_by_a_kill": t.side_in_progress,
                "side_trees_created": t.trees_created,
                "side_trees_dropped": t.trees_dropped,
                "side_trees_cut_by_a_kill": t.trees_in_progress,
                "recovery_ms_mean": mean_ms,
                "recovery_ms_max": t.recovery_max.as_secs_f64() * 1e3,
                "elapsed_s": elapsed.as_secs_f64(),
                "problems": self.problems,
        });
        outln!("{out}")?;
        Ok(())
    }

    fn summary_text(&self, elapsed: Duration, passed: bool, mean_ms: f64) -> Result<(), Failure> {
        let t = &self.totals;
        for p in &self.problems {
            outln!("  problem: {p}")?;
        }
        outln!("cycles            {} of {}", t.cycles, self.args.cycles)?;
        outln!(
            "commits verified  {} ({} acknowledged, {} of {} in flight at a kill found durable)",
            t.acked + t.in_flight_durable,
            t.acked,
            t.in_flight_durable,
            t.in_flight
        )?;
        outln!("lost              {} (must be 0)", t.lost)?;
        outln!("phantom           {} (must be 0)", t.phantom)?;
        outln!("corrupt           {} (must be 0)", t.corrupt)?;
        if !self.args.no_ddl {
            outln!(
                "side relations    {} created, {} dropped by the child, {} caught mid-create or mid-drop by a kill",
                t.side_created,
                t.side_dropped,
                t.side_in_progress
            )?;
            outln!(
                "side trees        {} created, {} dropped by the child, {} caught mid-create or mid-drop by a kill",
                t.trees_created,
                t.trees_dropped,
                t.trees_in_progress
            )?;
        }
        outln!(
            "recovery          {mean_ms:.1} ms mean, {:.1} ms max; {} transactions rolled back",
            t.recovery_max.as_secs_f64() * 1e3,
            t.txns_undone
        )?;
        if self.args.consistency_check {
            outln!(
                "consistency check {} redone pages compared with their run-time images",
                t.pages_compared
            )?;
        }
        outln!(
            "elapsed           {:.1} s; {} tuples at the end",
            elapsed.as_secs_f64(),
            t.tuples
        )?;
        outln!(
            "{}",
            if passed {
                "crashtest passed"
            } else {
                "crashtest FAILED"
            }
        )?;
        Ok(())
    }
}

/// Runs the `--after-kill` command on the killed child's directory.
fn after_kill(cmd: &str, dir: &Path) -> Result<(), Failure> {
    let status = std::process::Command::new("sh")
        .args(["-c", cmd])
        .env("KEEL_CRASHTEST_DIR", dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| Failure(format!("cannot run the --after-kill command: {e}")))?;
    if !status.success() {
        return Err(Failure(format!(
            "the --after-kill command ended with {status}"
        )));
    }
    Ok(())
}

/// After recovery, each side relation and side tree the child reported
/// must be as its last step allows ([`side_state_allowed`]): created (its
/// rows or keys committed) — there with exactly its rows or keys; dropped
/// — gone; a create or drop in progress — either. One the child did not
/// report must be gone: every earlier one was dropped, by its child or by
/// [`drop_side_relations`], and those drops were acknowledged. No
/// relation file may be left that recovery could not place.
fn check_side_relations(db: &Database, crash: &CrashRun) -> Result<Vec<String>, Failure> {
    use crate::demo::child::{SIDE_KEYS, SIDE_ROWS, side_entry, side_row};
    let mut problems = Vec::new();
    for f in &db.recovery_report().orphan_files {
        problems.push(format!("orphan relation file left: {}", f.display()));
    }
    let (relations, trees) = side_names(db);
    for name in relations {
        if !crash.ddl.contains_key(&name) {
            problems.push(format!(
                "side relation {name} is there, but an earlier cycle's acknowledged drop removed it"
            ));
        }
    }
    for name in trees {
        if !crash.trees.contains_key(&name) {
            problems.push(format!(
                "side tree {name} is there, but an earlier cycle's acknowledged drop removed it"
            ));
        }
    }
    for (name, step) in &crash.ddl {
        let rows = side_rows(db, name)?;
        let all = (0..SIDE_ROWS).map(|i| side_row(name, i)).collect();
        problems.extend(side_problem("side relation", name, *step, rows, all));
    }
    for (name, step) in &crash.trees {
        let rows = side_tree_rows(db, name)?;
        let all = (0..SIDE_KEYS)
            .map(|i| tree_row(side_entry(name, i)))
            .collect();
        problems.extend(side_problem("side tree", name, *step, rows, all));
    }
    Ok(problems)
}

/// What is wrong with side relation or tree `name` (`what`) holding
/// `rows` (`None`: gone), `all` being its rows, after its last step
/// `step`; `None` when nothing is.
fn side_problem(
    what: &str,
    name: &str,
    step: DdlStep,
    rows: Option<Vec<Vec<u8>>>,
    mut all: Vec<Vec<u8>>,
) -> Option<String> {
    all.sort();
    if side_state_allowed(step, rows.as_deref(), &all) {
        return None;
    }
    Some(format!(
        "{what} {name} (last step {step:?}): {}",
        match &rows {
            None => "gone".to_owned(),
            Some(r) => format!("{} rows, not its {}", r.len(), all.len()),
        }
    ))
}

/// The rows of heap relation `name`, sorted; `None` when it is gone.
fn side_rows(db: &Database, name: &str) -> Result<Option<Vec<Vec<u8>>>, Failure> {
    let Some(rel) = db.relation(name)? else {
        return Ok(None);
    };
    let tx = db.begin()?;
    let mut rows = Vec::new();
    for row in tx.scan(rel)? {
        rows.push(row?.1);
    }
    rows.sort();
    Ok(Some(rows))
}

/// The entries of tree `name` as rows ([`tree_row`]), sorted; `None`
/// when it is gone.
fn side_tree_rows(db: &Database, name: &str) -> Result<Option<Vec<Vec<u8>>>, Failure> {
    let Some(tree) = db.tree(name)? else {
        return Ok(None);
    };
    let tx = db.begin()?;
    let mut rows = Vec::new();
    for kv in tx.range(tree, ..)? {
        rows.push(tree_row(kv?));
    }
    rows.sort();
    Ok(Some(rows))
}

/// A tree entry as one row: its key's length (4 bytes, little-endian),
/// its key, its value.
fn tree_row((key, value): (Vec<u8>, Vec<u8>)) -> Vec<u8> {
    let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    let mut row = len.to_le_bytes().to_vec();
    row.extend_from_slice(&key);
    row.extend_from_slice(&value);
    row
}

/// Whether a side relation (or tree) whose last reported step is `step` may hold
/// `rows` (`None`: it is gone) after recovery, `all` being its rows: one
/// whose create is in progress is gone or empty; one whose create returned
/// is there, empty or whole (its rows' commit is in progress); one whose
/// rows committed is whole; one whose drop is in progress is whole or gone;
/// one dropped is gone.
fn side_state_allowed(step: DdlStep, rows: Option<&[Vec<u8>]>, all: &[Vec<u8>]) -> bool {
    let whole = rows == Some(all);
    let empty = rows.is_some_and(<[_]>::is_empty);
    match step {
        DdlStep::Create => rows.is_none() || empty,
        DdlStep::Made => empty || whole,
        DdlStep::Created => whole,
        DdlStep::Drop => rows.is_none() || whole,
        DdlStep::Dropped => rows.is_none(),
    }
}

/// The side relations and the side trees in the catalog.
fn side_names(db: &Database) -> (Vec<String>, Vec<String>) {
    let (mut relations, mut trees) = (Vec::new(), Vec::new());
    for r in db.relations() {
        if r.name.starts_with("side_") {
            relations.push(r.name);
        } else if r.name.starts_with(SIDE_TREE_PREFIX) {
            trees.push(r.name);
        }
    }
    (relations, trees)
}

/// Drops every side relation and side tree left, so the next cycle
/// starts without them.
fn drop_side_relations(db: &Database) -> Result<(), Failure> {
    let (relations, trees) = side_names(db);
    for name in relations {
        db.drop_relation(&name)?;
    }
    for name in trees {
        db.drop_tree(&name)?;
    }
    Ok(())
}

fn cycle_line(
    n: u32,
    of: u32,
    (seed, delay): (u64, Duration),
    crash: &CrashRun,
    verdict: &Verdict,
    recovery: &keel::RecoveryReport,
) -> String {
    format!(
        "cycle {n}/{of}: seed {seed:#018x}, killed {} ms after ready: {} acked, {} in flight ({} durable); recovery {:.1} ms, {} records redone, {} txns undone; {} tuples: {}",
        delay.as_millis(),
        crash.acked.len(),
        crash.in_flight.len(),
        verdict.in_flight_applied,
        recovery.duration.as_secs_f64() * 1e3,
        recovery.records_redone,
        recovery.txns_undone,
        verdict.tuples,
        if verdict.passed() {
            "ok".to_string()
        } else {
            format!(
                "{} lost, {} phantom, {} corrupt",
                verdict.lost.len(),
                verdict.phantom.len(),
                verdict.corrupt
            )
        }
    )
}

/// A bar of cycles on a terminal (stderr), nothing otherwise.
fn progress(total: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("  {bar:40} {pos}/{len} cycles, eta {eta}") {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_side_relation_must_be_as_its_last_step_allows() {
        let all = vec![b"a".to_vec(), b"b".to_vec()];
        let some = vec![b"a".to_vec()];
        let states: [Option<&[Vec<u8>]>; 4] = [None, Some(&[]), Some(&some), Some(&all)];
        let allowed = |step| states.map(|rows| side_state_allowed(step, rows, &all));
        // Gone, empty, some rows, whole.
        assert_eq!(allowed(DdlStep::Create), [true, true, false, false]);
        // An acknowledged create is never gone.
        assert_eq!(allowed(DdlStep::Made), [false, true, false, true]);
        assert_eq!(allowed(DdlStep::Created), [false, false, false, true]);
        assert_eq!(allowed(DdlStep::Drop), [true, false, false, true]);
        assert_eq!(allowed(DdlStep::Dropped), [true, false, false, false]);
    }

    #[test]
    fn a_run_that_acknowledged_no_commit_fails() {
        let failed = |r: Result<bool, Failure>| r.err().map(|Failure(m)| m);
        let none = failed(check_acknowledged(Ok(true), 0, 3)).unwrap_or_default();
        assert!(
            none.contains("no commit was acknowledged in 3 cycles"),
            "{none}"
        );
        assert!(matches!(check_acknowledged(Ok(true), 1, 3), Ok(true)));
        // A cycle that failed or an error is reported as it is.
        assert!(matches!(check_acknowledged(Ok(false), 0, 3), Ok(false)));
        let error = check_acknowledged(Err(Failure("boom".into())), 0, 3);
        assert_eq!(failed(error).as_deref(), Some("boom"));
    }

    #[test]
    fn tree_rows_keep_key_and_value_apart() {
        let a = tree_row((b"ab".to_vec(), b"c".to_vec()));
        let b = tree_row((b"a".to_vec(), b"bc".to_vec()));
        assert_ne!(a, b);
        assert_eq!(a, [2, 0, 0, 0, b'a', b'b', b'c']);
    }
}
