//! `keel demo --archive`: the database's history kept off the machine.
//!
//! After the crash step has been verified, the demo:
//!
//! 1. opens the database again and starts an archiver shipping its log to
//!    the archive (by default a local directory next to the data directory,
//!    `DIR.archive`; `--archive s3://…` sends it to an S3-compatible server
//!    through the same code), and takes an online base backup into it
//!    while nothing else runs;
//! 2. runs two batches of transactions, waiting after each until the log
//!    is archived, and reads the clock between them (the point);
//! 3. loses the data directory (deletes it, as a lost machine would);
//! 4. restores the backup and the archived log into the same path to the
//!    point (a new timeline starts there), runs `keel check` on it, and
//!    verifies every tuple: the first batch is there and nothing of the
//!    second;
//! 5. loses the directory again and restores it to the archive's end,
//!    checks and verifies it: every acknowledged commit is there, and
//!    nothing else. This restore is timed, and its rate
//!    (log bytes from the backup's start to the archive's head, per second
//!    of the whole restore: download, log import and recovery) is printed
//!    beside the rate of the crash step's local recovery.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel::{Config, Database, RecoveryReport};
use keel_archive::{
    ArchiveTarget, Archiver, ArchiverOptions, BackupOptions, RestoreTarget, StoreConfig,
};

use super::relation_ids;
use super::verify::{self, Verdict};
use super::workload::{Sizes, TxnRecord};
use crate::Failure;

/// How long one archive request, or the wait for the log to be archived,
/// may take.
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the archive step keeps its archive.
pub struct Place {
    /// The archive.
    pub target: ArchiveTarget,
    /// How it is shown.
    pub shown: String,
    /// What commits do while it is down (`--on-archive-failure`).
    pub policy: keel_archive::ArchivePolicy,
}

/// The archive `--archive URL` names; an empty URL: the local directory
/// `DIR.archive`, made afresh ([`prepare`]).
pub fn place(args: &super::DemoArgs, url: &str) -> Result<Place, Failure> {
    let policy = args.policy.policy()?;
    if url.is_empty() {
        if args.endpoint.is_some() {
            return Err(Failure(
                "--endpoint is for --archive s3://BUCKET/PREFIX".into(),
            ));
        }
        let store = prepare(&args.dir)?;
        return Ok(Place {
            target: ArchiveTarget::new(StoreConfig::Local(store.clone()), ""),
            shown: store.display().to_string(),
            policy,
        });
    }
    let location = crate::archive::Location {
        url: url.to_string(),
        endpoint: args.endpoint.clone(),
        region: None,
        credentials_file: None,
        timeout: ARCHIVE_TIMEOUT.as_secs(),
    };
    Ok(Place {
        target: crate::archive::parse_location(&location)?,
        shown: url.to_string(),
        policy,
    })
}

/// The settings of one archive step.
pub struct Run<'a> {
    /// The demo's data directory (closed).
    pub dir: &'a Path,
    /// The archive.
    pub place: &'a Place,
    /// Worker threads.
    pub threads: u16,
    /// Seed of the workload.
    pub seed: u64,
    /// The short run.
    pub quick: bool,
}

/// What the archive step did.
pub struct Outcome {
    /// Transactions acknowledged after the backup.
    pub after_backup: usize,
    /// Of those, the ones before the point-in-time restore's target.
    pub at_point: usize,
    /// Problems `keel check` found in the restored directories.
    pub check_errors: Vec<String>,
    /// Verification of the database restored to the point, then to the end.
    pub verdicts: [Verdict; 2],
}

impl Outcome {
    /// Whether each restored database is exactly the history up to its
    /// target.
    pub fn passed(&self) -> bool {
        self.check_errors.is_empty() && self.verdicts.iter().all(Verdict::passed)
    }
}

/// The archive directory kept next to the data directory `dir`: its
/// sibling named `<name>.archive`, however `dir` is spelled (a trailing
/// slash or `.` never puts the archive inside the data directory).
pub fn archive_dir(dir: &Path) -> PathBuf {
    let dir: PathBuf = std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .components()
        .collect();
    match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => {
            let mut name = name.to_owned();
            name.push(".archive");
            parent.join(name)
        }
        // `/` or a path ending in `..`: no name to put beside.
        _ => {
            let mut name = dir.into_os_string();
            name.push(".archive");
            PathBuf::from(name)
        }
    }
}

/// Makes the archive directory afresh: absent, empty, or made by an
/// earlier demo (then wiped); anything else is refused.
pub fn prepare(dir: &Path) -> Result<PathBuf, Failure> {
    let root = archive_dir(dir);
    super::prepare_dir(&root)?;
    let store = root.join("store");
    std::fs::create_dir_all(&store)
        .map_err(|e| Failure(format!("cannot create {}: {e}", store.display())))?;
    super::write_marker(&root)?;
    Ok(store)
}

/// Runs the archive step on the closed demo database, whose verified
/// history so far is `history`; `local` is the crash step's recovery, for
/// comparison.
pub fn run(
    run: &Run<'_>,
    history: Vec<TxnRecord>,
    local: &RecoveryReport,
) -> Result<Outcome, Failure> {
    let (dir, target, threads, seed) = (run.dir, &run.place.target, run.threads, run.seed);
    let db = Arc::new(Database::open(dir, Config::default())?);
    let rels = relation_ids(&db)?;
    let options = ArchiverOptions {
        on_archive_down: run.place.policy,
        ..ArchiverOptions::default()
    };
    let archiver = Archiver::start(db.clone(), target, options).map_err(fail)?;
    let options = BackupOptions {
        archive_timeout: ARCHIVE_TIMEOUT,
        ..BackupOptions::default()
    };
    let manifest = keel_archive::backup(&db, &archiver, target, &options).map_err(fail)?;
    outln!(
        "  archive {}: base backup LSN {}..{} ({} files)",
        run.place.shown,
        manifest.start,
        manifest.end,
        manifest.files.len()
    )?;
    let sizes = Sizes {
        txns_per_thread: if run.quick { 40 } else { 400 },
        ..Sizes::small()
    };
    let started = Instant::now();
    let (first, _, _) = super::workload(&db, rels, threads, (3, seed ^ 0xA5), sizes)?;
    archiver
        .wait_archived(db.durable_lsn(), ARCHIVE_TIMEOUT)
        .map_err(fail)?;
    // The point: every commit of the first batch was acknowledged before
    // this reading, and every one of the second is logged after it.
    let point = keel_archive::restore::now_us();
    let (second, _, _) = super::workload(&db, rels, threads, (4, seed ^ 0x5A), sizes)?;
    let head = archiver
        .wait_archived(db.durable_lsn(), ARCHIVE_TIMEOUT)
        .map_err(fail)?;
    archiver.stop().map_err(fail)?;
    match Arc::try_unwrap(db) {
        Ok(db) => db.close()?,
        Err(_) => {
            return Err(Failure(
                "the database is still in use by the archiver".into(),
            ));
        }
    }
    outln!(
        "  {} + {} commits after the backup, archived to LSN {head} in {:.2} s",
        first.len(),
        second.len(),
        started.elapsed().as_secs_f64()
    )?;
    lose(dir)?;
    // To the point between the batches: the first batch and nothing of the
    // second.
    let mut expected = history;
    expected.extend(first.iter().cloned());
    let at_point = restore_and_verify(
        run,
        RestoreTarget::Time(point),
        &format!("{}, between the two batches", crate::archive::utc(point)),
        &expected,
    )?;
    if let Some(h) = &at_point.report.history {
        outln!(
            "  the archive runs on to LSN {}: the restore started timeline {} (branched from {} \
             at LSN {}); timeline 1 is untouched",
            at_point.report.head,
            h.timeline,
            h.parent,
            h.switch
        )?;
    }
    lose(dir)?;
    // To the archive's end: every acknowledged commit.
    expected.extend(second.iter().cloned());
    let at_end = restore_and_verify(run, RestoreTarget::End, "the end of the archive", &expected)?;
    let (report, restore_secs) = (&at_end.report, at_end.secs);
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let log = mib(report
        .log_end
        .get()
        .saturating_sub(report.backup.start.get()));
    let files = mib(report.file_bytes);
    let rate = |mib: f64, d: Duration| mib / d.as_secs_f64().max(1e-9);
    outln!(
        "  restore took {restore_secs:.2} s for {files:.1} MiB of files and {log:.1} MiB of \
         log ({:.1} MiB/s in all); its recovery read {:.1} MiB of log in {:.2} s ({:.1} MiB/s), \
         the crash step's local recovery {:.1} MiB in {:.2} s ({:.1} MiB/s)",
        (files + log) / restore_secs.max(1e-9),
        mib(report.recovery.bytes_scanned),
        report.recovery.duration.as_secs_f64(),
        rate(mib(report.recovery.bytes_scanned), report.recovery.duration),
        mib(local.bytes_scanned),
        local.duration.as_secs_f64(),
        rate(mib(local.bytes_scanned), local.duration)
    )?;
    Ok(Outcome {
        after_backup: first.len() + second.len(),
        at_point: first.len(),
        check_errors: [at_point.check_errors, at_end.check_errors].concat(),
        verdicts: [at_point.verdict, at_end.verdict],
    })
}

fn fail(e: keel_archive::ArchiveError) -> Failure {
    Failure(e.to_string())
}

/// Deletes the data directory, as a lost machine would lose it.
fn lose(dir: &Path) -> Result<(), Failure> {
    std::fs::remove_dir_all(dir)
        .map_err(|e| Failure(format!("cannot remove {}: {e}", dir.display())))?;
    outln!("  lost the data directory {}", dir.display())?;
    Ok(())
}

/// One restore into the demo's directory, checked and verified.
struct Restored {
    report: keel_archive::RestoreReport,
    secs: f64,
    check_errors: Vec<String>,
    verdict: Verdict,
}

/// Restores the archive into the (lost) data directory to `point`, runs
/// `keel check` on it and verifies that it holds exactly `expected`.
fn restore_and_verify(
    run: &Run<'_>,
    point: RestoreTarget,
    shown: &str,
    expected: &[TxnRecord],
) -> Result<Restored, Failure> {
    let dir = run.dir;
    let started = Instant::now();
    let report = keel_archive::restore(
        &run.place.target,
        dir,
        1,
        point,
        Config::default(),
        ARCHIVE_TIMEOUT,
    )
    .map_err(fail)?;
    let secs = started.elapsed().as_secs_f64();
    // The restored directory is the demo's again: the next run may wipe it.
    super::write_marker(dir)?;
    outln!(
        "  restored to {shown}: the backup and {} chunks of log to LSN {}, {} records redone, \
         {} transactions undone",
        report.chunks,
        report.log_end,
        report.recovery.records_redone,
        report.recovery.txns_undone
    )?;
    let check_errors = crate::check::errors(dir)?;
    outln!(
        "  keel check on the restored directory: {}",
        if check_errors.is_empty() {
            "no problem".to_string()
        } else {
            format!("{} errors", check_errors.len())
        }
    )?;
    for e in &check_errors {
        outln!("  check: {e}")?;
    }
    let db = Database::open(dir, Config::default())?;
    let verdict = verify::verify(&db, relation_ids(&db)?, expected, &[])?;
    db.close()?;
    for p in &verdict.problems {
        outln!("  problem: {p}")?;
    }
    outln!(
        "  restored database: {} tuples, {} index keys, {} lost, {} phantom",
        verdict.tuples,
        verdict.index_keys,
        verdict.lost.len(),
        verdict.phantom.len()
    )?;
    Ok(Restored {
        report,
        secs,
        check_errors,
        verdict,
    })
}
