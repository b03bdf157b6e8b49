//! `keel archive list` and `keel archive verify`: what a WAL archive holds,
//! and whether all of it can be trusted.
//!
//! The archive is named by a URL: `s3://BUCKET/PREFIX` (with `--endpoint`
//! for an S3-compatible server such as SeaweedFS or MinIO, and `--region`),
//! or `file:///DIR` for a local directory. Credentials are never arguments
//! (a command line is visible to every user of the machine): they come
//! from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`) or from the file `--credentials-file` names, which
//! only its owner may read or write (keel-archive's `config` module has the
//! format). Nothing here prints a secret.
//!
//! - `list` reads only each chunk's 72-byte header (one ranged read per
//!   chunk) and shows, per timeline, the chunks, the LSN range, the commit
//!   time range and the stored size, and how many places a chunk does not
//!   start where the previous one ended. It checks no body.
//! - `verify` downloads every chunk of every timeline and checks what a
//!   restore would: header and body CRC32C, every record's frame and CRC,
//!   the database id (the same in every chunk of every timeline), and
//!   continuity (each chunk starts exactly where the previous one ended).
//!   It stops at the first bad object and exits 1 with an error naming it
//!   and the place in it. Then it checks every timeline's history object
//!   against the chunks (its database, a parent that exists and whose log
//!   reaches the switch LSN, its own chunks starting exactly there, and no
//!   timeline but 1 with chunks and no history), and every backup: each complete one
//!   (with a manifest) must have all its files with the manifest's sizes
//!   and CRC32C and the log from its start to its end LSN in the archive;
//!   each damaged one is named with the file or log at fault, and the
//!   command exits 1. A backup without a manifest is reported as
//!   incomplete (a backup killed or cut off; restores never use it), not
//!   an error.
//!
//! - `list` also shows the complete base backups (those with a manifest;
//!   keel-archive's `backup` module has the layout): start and end LSN,
//!   files and size.
//! - `keel backup --dir D --archive URL` opens the database (it must not be
//!   open elsewhere), starts an archiver on its timeline (1, or the one a
//!   restore recorded in the directory), takes a base
//!   backup into the archive (waiting until the log up to its end LSN is
//!   archived; the manifest is written last), stops the archiver and
//!   closes the database.
//! - `keel restore --archive URL --dir D [--time T | --lsn L | --txn X]
//!   [--timeline N]` restores into `D` (absent or empty) the newest backup
//!   whose end LSN is at or before the target's stop and the archive's log
//!   up to the stop, and opens it once so recovery redoes to the stop and
//!   undoes the rest. A stop before the timeline's head starts a new
//!   timeline (keel-archive's `restore` module). `--time` is RFC 3339 or
//!   Unix seconds (fractions allowed), `--lsn` as Keel prints LSNs
//!   (`HI/LO`) or `0x…`.
//!   The newest usable backup is chosen: a newer complete backup that is
//!   damaged is passed over, and the command says so and names the older
//!   backup it fell back to.
//!
//! - `compact` replaces, on every timeline, each completed segment's
//!   chunks with one compacted object (keel-archive's `compact` module),
//!   for an archive whose archiver was not running or did not compact;
//!   an archiver compacts as it goes. It first checks and deletes the
//!   leftovers of an interrupted compaction. `list` shows how many of the
//!   objects covering each timeline are compacted, and `verify` reads
//!   compacted objects like chunks and checks every leftover chunk
//!   against the compacted object covering it.
//! - `cleanup [--older-than DURATION] [--apply]` lists the backup folders
//!   without a manifest (a killed `keel backup`) whose newest object is
//!   older than DURATION (default 24h), and deletes them only with
//!   `--apply`; a folder with a manifest is never touched (keel-archive's
//!   `cleanup` module has the rules). With `--retain-backups N` it also
//!   keeps only the N newest complete backups usable on each timeline's
//!   path, deleting the others (manifest first) and timeline 1's log
//!   before the oldest kept backup's start, a running backup's start and
//!   every branch point from timeline 1; the log of other timelines is
//!   kept whole.
//!
//! A `file://` directory that does not exist is an error, never created:
//! a mistyped path must not look like an empty archive.

use std::path::PathBuf;
use std::time::Duration;

use keel_archive::{
    ArchiveError, ArchiveReader, ArchiveTarget, Archiver, ArchiverOptions, BackupOptions,
    Credentials, Remote, RestoreTarget, S3Config, StoreConfig, TimelineSummary,
};
use serde_json::json;

use crate::Failure;

/// `keel archive` commands.
#[derive(Debug, clap::Subcommand)]
pub enum ArchiveCommand {
    /// Show the archive's timelines: chunks, LSN range, commit time range
    /// and stored size (from the chunk headers; no body is read).
    List(ListArgs),
    /// Download every chunk and check its CRCs, its records, the database
    /// id and LSN continuity per timeline; exit 1 naming the first bad
    /// object.
    Verify(Location),
    /// Replace each completed segment's chunks with one compacted object,
    /// on every timeline (for an archive whose archiver did not: a running
    /// archiver compacts as it goes).
    Compact(Location),
    /// List backup folders without a manifest (a killed `keel backup`)
    /// older than --older-than; delete them only with --apply. A folder
    /// with a manifest is never touched.
    Cleanup(CleanupArgs),
}

/// Arguments of `keel archive cleanup`.
#[derive(Debug, clap::Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub location: Location,
    /// Only folders whose newest object is at least this old (`24h`,
    /// `90m`, `30s`): a running backup writes more often than that.
    #[arg(long, default_value = "24h", value_name = "DURATION",
          value_parser = crate::archive_policy::parse_duration)]
    pub older_than: Duration,
    /// Delete them; without it, only list them.
    #[arg(long)]
    pub apply: bool,
    /// Also keep only the N newest complete backups of each timeline's
    /// path: the others are deleted (manifest first), and timeline 1's log
    /// before the oldest kept backup's start (keel-archive's `cleanup`
    /// module, rules 5-7). N is at least 1.
    #[arg(long, value_name = "N", value_parser = parse_retain_backups)]
    pub retain_backups: Option<usize>,
}

/// `--retain-backups N`: a count of at least 1, refused by the argument
/// parser (exit 2) before a cleanup deletes anything.
fn parse_retain_backups(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("--retain-backups must keep at least 1 backup".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?} is not a count of backups: {e}")),
    }
}

/// The longest `--timeout` a request to the store may be given: a day. A
/// zero timeout would fail every request; one near `u64::MAX` seconds
/// cannot be added to a clock reading.
pub const MAX_REQUEST_SECS: u64 = 86_400;
/// The longest `--archive-timeout` a backup waits for its log: a week.
pub const MAX_ARCHIVE_WAIT_SECS: u64 = 604_800;

/// Where the archive is, and how to reach it.
#[derive(Debug, clap::Args)]
pub struct Location {
    /// The archive: `s3://BUCKET/PREFIX` or `file:///DIR`.
    #[arg(long = "archive", value_name = "URL")]
    pub url: String,
    /// The endpoint of an S3-compatible server (`http://127.0.0.1:8333`);
    /// unset for AWS S3 itself.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// The S3 region (default: AWS_REGION, else us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// A file of `key = value` credentials (access_key_id,
    /// secret_access_key, session_token) that only its owner may read or
    /// write. Default: the AWS_* environment variables.
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,
    /// Seconds one request to the store may take (1 to 86400).
    #[arg(long, default_value_t = 60, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_REQUEST_SECS))]
    pub timeout: u64,
}

/// Arguments of `keel archive list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub location: Location,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `keel backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Data directory of the database to back up (must exist and not be
    /// open elsewhere).
    #[arg(long)]
    pub dir: PathBuf,
    #[command(flatten)]
    pub location: Location,
    /// Seconds to wait for the log up to the backup's end to be archived
    /// (1 to 604800).
    #[arg(long, default_value_t = 300, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_ARCHIVE_WAIT_SECS))]
    pub archive_timeout: u64,
    /// Files larger than this are uploaded in parts of this many bytes,
    /// one part in memory at a time (S3 needs at least 5 MiB).
    #[arg(
        long,
        default_value_t = keel_archive::stream::DEFAULT_PART_SIZE_BYTES,
        value_name = "BYTES",
        value_parser = parse_part_size
    )]
    pub part_size: usize,
    /// What commits do while the archive is down during the backup
    /// (`crate::archive_policy`).
    #[command(flatten)]
    pub policy: crate::archive_policy::PolicyArgs,
}

/// Arguments of `keel restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Where to restore: a directory that does not exist or is empty.
    #[arg(long)]
    pub dir: PathBuf,
    /// Keep every commit at or before this time, nothing after: RFC 3339
    /// (`2026-12-05T17:00:00Z`, an offset or fractions allowed) or Unix
    /// seconds (`1767225600.25`).
    #[arg(long, value_name = "TIME", conflicts_with_all = ["lsn", "txn"])]
    pub time: Option<String>,
    /// Keep every record that ends at or before this LSN, which must be a
    /// record's end: `HI/LO` as Keel prints LSNs, or hexadecimal (`0x…`).
    #[arg(long, value_name = "LSN", conflicts_with_all = ["time", "txn"])]
    pub lsn: Option<String>,
    /// Keep up to and including this transaction's commit (decimal id).
    #[arg(long, value_name = "TXN", conflicts_with_all = ["time", "lsn"])]
    pub txn: Option<u64>,
    /// The timeline whose history to restore (`keel archive list` shows
    /// them).
    #[arg(long, default_value_t = 1)]
    pub timeline: u32,
    #[command(flatten)]
    pub location: Location,
}

/// The recovery target the flags of `keel restore` name.
pub fn restore_target(args: &RestoreArgs) -> Result<RestoreTarget, Failure> {
    if let Some(t) = &args.time {
        let bad = || {
            Failure(format!(
                "--time {t:?}: expected RFC 3339 (2026-12-05T17:00:00Z, 2026-12-05T18:00:00.25+01:00) \
                 or Unix seconds (1767225600, 1767225600.25)"
            ))
        };
        if t.contains('-') || t.contains('T') {
            let at = chrono::DateTime::parse_from_rfc3339(t).map_err(|_| bad())?;
            let us = u64::try_from(at.timestamp_micros()).map_err(|_| bad())?;
            return Ok(RestoreTarget::Time(us));
        }
        let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
        if secs.is_empty()
            || !secs.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > 6
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let secs: u64 = secs.parse().map_err(|_| bad())?;
        let micros: u64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
        let us = secs
            .checked_mul(1_000_000)
            .and_then(|s| s.checked_add(micros))
            .ok_or_else(bad)?;
        return Ok(RestoreTarget::Time(us));
    }
    if let Some(l) = &args.lsn {
        let bad = || {
            Failure(format!(
                "--lsn {l:?}: expected HI/LO hexadecimal (as Keel prints LSNs) or 0x…"
            ))
        };
        let value = match (l.split_once('/'), l.strip_prefix("0x")) {
            (Some((hi, lo)), _) => {
                let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
                let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
                if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
                    return Err(bad());
                }
                (hi << 32) | lo
            }
            (None, Some(hex)) => u64::from_str_radix(hex, 16).map_err(|_| bad())?,
            (None, None) => return Err(bad()),
        };
        return Ok(RestoreTarget::Lsn(keel::types::Lsn(value)));
    }
    if let Some(x) = args.txn {
        return Ok(RestoreTarget::Txn(keel::types::TxnId(x)));
    }
    Ok(RestoreTarget::End)
}

/// `--part-size`: a number of bytes, at least a page (checked before the
/// data directory is touched).
fn parse_part_size(s: &str) -> Result<usize, String> {
    let bytes: usize = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of bytes: {e}"))?;
    let page = keel::page::PAGE_SIZE;
    if bytes < page {
        return Err(format!("{bytes} bytes is less than a page ({page} bytes)"));
    }
    Ok(bytes)
}

/// `keel backup`.
pub fn backup(args: BackupArgs) -> Result<(), Failure> {
    let target = parse_location(&args.location)?;
    let on_archive_down = args
        .policy
        .policy()
        .unwrap_or_else(|Failure(msg)| crate::exit_usage("backup", &msg));
    let (db, _io, _control) = crate::stats::open_existing_with(&args.dir, keel::Config::default())?;
    let db = std::sync::Arc::new(db);
    let options = ArchiverOptions {
        op_timeout: Duration::from_secs(args.location.timeout),
        on_archive_down,
        ..ArchiverOptions::default()
    };
    let archiver = Archiver::start(db.clone(), &target, options).map_err(fail)?;
    let backup_options = BackupOptions {
        timeline: keel_archive::restore::recorded_timeline(&args.dir)
            .map_err(fail)?
            .unwrap_or(1),
        op_timeout: Duration::from_secs(args.location.timeout),
        archive_timeout: Duration::from_secs(args.archive_timeout),
        part_size_bytes: args.part_size,
    };
    let taken = keel_archive::backup(&db, &archiver, &target, &backup_options);
    let stopped = archiver.stop();
    let closed = match std::sync::Arc::try_unwrap(db) {
        Ok(db) => crate::stats::close(db, &args.dir),
        Err(_) => Err(Failure(
            "the database is still in use after the backup".into(),
        )),
    };
    let m = taken.map_err(fail)?;
    stopped.map_err(fail)?;
    closed?;
    let bytes: u64 = m.files.iter().map(|f| f.size).sum();
    outln!(
        "backup of database {:#018x} on timeline {:08X}: LSN {}..{}, {} files, {}",
        m.database_id,
        m.timeline,
        m.start,
        m.end,
        m.files.len(),
        size(bytes)
    )?;
    Ok(())
}

/// `keel restore`.
pub fn restore(args: RestoreArgs) -> Result<(), Failure> {
    let target = parse_location(&args.location)?;
    let config = keel::Config {
        io: keel_io::IoConfig::from_env()?,
        ..keel::Config::default()
    };
    let restore_target = restore_target(&args)?;
    let r = keel_archive::restore(
        &target,
        &args.dir,
        args.timeline,
        restore_target,
        config,
        Duration::from_secs(args.location.timeout),
    )
    .map_err(fail)?;
    for (folder, why) in &r.passed_over {
        outln!("passed over the damaged backup {folder}: {why}")?;
    }
    if !r.passed_over.is_empty() {
        outln!("fell back to the older backup from LSN {}", r.backup.start)?;
    }
    outln!(
        "restored the backup from LSN {} (consistent at {}) and {} chunks of log to LSN {} into {}: \
         {} records redone, {} transactions undone",
        r.backup.start,
        r.backup.end,
        r.chunks,
        r.log_end,
        args.dir.display(),
        r.recovery.records_redone,
        r.recovery.txns_undone
    )?;
    match &r.history {
        Some(h) => outln!(
            "the archive ran on to LSN {}: started timeline {:08X} (from timeline {:08X} at LSN {}); \
             an archiver on {} continues on it",
            r.head,
            h.timeline,
            h.parent,
            h.switch,
            args.dir.display()
        )?,
        None => outln!("restored to the head of timeline {:08X}", r.timeline)?,
    }
    Ok(())
}

/// Runs a `keel archive` command.
pub fn run(command: ArchiveCommand) -> Result<(), Failure> {
    match command {
        ArchiveCommand::List(args) => list(&args),
        ArchiveCommand::Verify(location) => verify(&location),
        ArchiveCommand::Compact(location) => compact(&location),
        ArchiveCommand::Cleanup(args) => cleanup(&args),
    }
}

/// The target a URL names.
pub fn parse_location(l: &Location) -> Result<ArchiveTarget, Failure> {
    let bad = |why: &str| Failure(format!("--archive {}: {why}", l.url));
    if let Some(path) = l.url.strip_prefix("file://") {
        if l.endpoint.is_some() || l.region.is_some() || l.credentials_file.is_some() {
            return Err(bad(
                "--endpoint, --region and --credentials-file are for s3:// archives",
            ));
        }
        if !path.starts_with('/') {
            return Err(bad("a file URL needs an absolute path: file:///DIR"));
        }
        let dir = PathBuf::from(path);
        if !dir.is_dir() {
            return Err(bad("no such directory"));
        }
        return Ok(ArchiveTarget::new(StoreConfig::Local(dir), ""));
    }
    let Some(rest) = l.url.strip_prefix("s3://") else {
        return Err(bad("expected s3://BUCKET/PREFIX or file:///DIR"));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("no bucket"));
    }
    let endpoint = l.endpoint.clone();
    let s3 = S3Config {
        bucket: bucket.into(),
        allow_http: endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://")),
        endpoint,
        region: l.region.clone(),
        credentials: match &l.credentials_file {
            Some(f) => Credentials::File(f.clone()),
            None => Credentials::Environment,
        },
    };
    Ok(ArchiveTarget::new(StoreConfig::S3(s3), prefix))
}

/// An archive error as one message: its text, then each error below it
/// whose text it does not already include (most archive errors include
/// their source's; an engine error's I/O failure is only its source).
fn fail(e: ArchiveError) -> Failure {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    Failure(msg)
}

fn open(l: &Location) -> Result<ArchiveReader, Failure> {
    let target = parse_location(l)?;
    ArchiveReader::open(&target, Duration::from_secs(l.timeout)).map_err(fail)
}

fn list(args: &ListArgs) -> Result<(), Failure> {
    let reader = open(&args.location)?;
    let remote = Remote::open(
        &parse_location(&args.location)?,
        Duration::from_secs(args.location.timeout),
    )
    .map_err(fail)?;
    let mut backups = Vec::new();
    for entry in remote.list_backups().map_err(fail)? {
        backups.push(remote.read_manifest(&entry).map_err(fail)?);
    }
    let summaries = reader
        .timelines()
        .map_err(fail)?
        .into_iter()
        .map(|t| reader.summarize(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    if args.json {
        let timelines: Vec<_> = summaries.iter().map(summary_json).collect();
        let backups: Vec<_> = backups
            .iter()
            .map(|m| {
                json!({
                    "timeline": m.timeline,
                    "start_lsn": m.start.0,
                    "end_lsn": m.end.0,
                    "files": m.files.len(),
                    "bytes": m.files.iter().map(|f| f.size).sum::<u64>(),
                })
            })
            .collect();
        outln!(
            "{}",
            json!({ "archive": args.location.url, "timelines": timelines, "backups": backups })
        )?;
        return Ok(());
    }
    outln!("archive {}", args.location.url)?;
    if summaries.is_empty() {
        outln!("no timelines: the archive holds no chunks")?;
        print_backups(&backups)?;
        return Ok(());
    }
    outln!(
        "{:<9} {:>7} {:>9} {:>17} {:>17} {:<27} {:<27} {:>12} gaps",
        "timeline",
        "objects",
        "compacted",
        "start LSN",
        "end LSN",
        "first commit",
        "last commit",
        "size"
    )?;
    for s in &summaries {
        outln!(
            "{:08X}  {:>7} {:>9} {:>17} {:>17} {:<27} {:<27} {:>12} {}",
            s.timeline,
            s.chunks,
            s.compacted,
            s.start.to_string(),
            s.end.to_string(),
            utc(s.times.min_us),
            utc(s.times.max_us),
            size(s.stored_bytes),
            s.gaps
        )?;
    }
    for s in summaries.iter().filter(|s| s.leftovers > 0) {
        outln!(
            "timeline {:08X}: {} chunks left by an interrupted compaction (covered by compacted \
             objects; `keel archive compact` checks and deletes them)",
            s.timeline,
            s.leftovers
        )?;
    }
    if let Some(s) = summaries.first() {
        outln!("database id {:#018x}", s.database_id)?;
    }
    for h in remote.list_histories().map_err(fail)? {
        outln!(
            "timeline {:08X} branched from {:08X} at LSN {} (restore to {}, {})",
            h.timeline,
            h.parent,
            h.switch,
            h.target,
            utc(h.created_us)
        )?;
    }
    for s in &summaries {
        match restorable(&remote, &backups, s).map_err(fail)? {
            Some(from) => outln!(
                "timeline {:08X} restorable from LSN {from} (oldest usable backup's end) to LSN {} ({})",
                s.timeline,
                s.end,
                utc(s.times.max_us)
            )?,
            None => outln!(
                "timeline {:08X}: no usable backup, nothing restorable",
                s.timeline
            )?,
        }
    }
    print_backups(&backups)?;
    Ok(())
}

/// The oldest LSN a restore on `s`'s timeline can stop at: the smallest
/// end LSN of a backup on its path (before the next timeline's switch).
fn restorable(
    remote: &Remote,
    backups: &[keel_archive::Manifest],
    s: &TimelineSummary,
) -> Result<Option<keel::types::Lsn>, ArchiveError> {
    let path = remote.timeline_path(s.timeline)?;
    Ok(backups
        .iter()
        .filter(|m| {
            path.iter()
                .any(|&(t, _, to)| t == m.timeline && to.is_none_or(|to| m.end <= to))
        })
        .map(|m| m.end)
        .filter(|&end| end <= s.end)
        .min())
}

fn print_backups(backups: &[keel_archive::Manifest]) -> Result<(), Failure> {
    if backups.is_empty() {
        outln!("no complete backups")?;
        return Ok(());
    }
    outln!(
        "{:<9} {:>17} {:>17} {:>6} {:>12}",
        "backup",
        "start LSN",
        "end LSN",
        "files",
        "size"
    )?;
    for m in backups {
        outln!(
            "{:08X}  {:>17} {:>17} {:>6} {:>12}",
            m.timeline,
            m.start.to_string(),
            m.end.to_string(),
            m.files.len(),
            size(m.files.iter().map(|f| f.size).sum())
        )?;
    }
    Ok(())
}

fn summary_json(s: &TimelineSummary) -> serde_json::Value {
    json!({
        "timeline": s.timeline,
        "database_id": s.database_id,
        "chunks": s.chunks,
        "compacted": s.compacted,
        "leftovers": s.leftovers,
        "gaps": s.gaps,
        "start_lsn": s.start.0,
        "end_lsn": s.end.0,
        "min_commit_time_us": s.times.min_us,
        "max_commit_time_us": s.times.max_us,
        "stored_bytes": s.stored_bytes,
    })
}

fn verify(l: &Location) -> Result<(), Failure> {
    let reader = open(l)?;
    let timelines = reader.timelines().map_err(fail)?;
    if timelines.is_empty() {
        return Err(Failure(format!(
            "{}: no chunks to verify (is the URL right?)",
            l.url
        )));
    }
    let mut database_id = None;
    let (mut chunks, mut records) = (0, 0);
    let mut spans = std::collections::BTreeMap::new();
    for t in timelines {
        let r = reader
            .verify(t, database_id)
            .map_err(|e| Failure(format!("timeline {t:08X}: {e}")))?;
        database_id = Some(r.database_id);
        spans.insert(t, (r.start, r.end));
        outln!(
            "timeline {t:08X}: {} objects ({} compacted; {} leftover chunks agree), {} records, \
             LSN {}..{}, commits {} .. {}, {} stored ({} of log): ok",
            r.chunks,
            r.compacted,
            r.leftovers,
            r.records,
            r.start,
            r.end,
            utc(r.min_commit_time_us),
            utc(r.max_commit_time_us),
            size(r.stored_bytes),
            size(r.raw_bytes)
        )?;
        chunks += r.chunks;
        records += r.records;
    }
    let histories = verify_histories(l, database_id, &spans)?;
    let backups = verify_backups(l)?;
    outln!(
        "archive {} verified: {chunks} chunks, {records} records, {histories} timeline \
         histories, {backups} complete backups",
        l.url
    )?;
    Ok(())
}

/// Checks every timeline's history object against the chunks (keel-archive's
/// `restore` module, "Timelines"): it belongs to the archive's database,
/// its parent is timeline 1 or has a history, the parent's chunks reach its
/// switch LSN, and its own first chunk starts exactly there; a timeline
/// other than 1 with chunks must have a history. Returns how many were
/// checked.
fn verify_histories(
    l: &Location,
    database_id: Option<u64>,
    spans: &std::collections::BTreeMap<u32, (keel::types::Lsn, keel::types::Lsn)>,
) -> Result<usize, Failure> {
    let remote = Remote::open(&parse_location(l)?, Duration::from_secs(l.timeout)).map_err(fail)?;
    let histories = remote.list_histories().map_err(fail)?;
    let known = |t: u32| t == 1 || histories.iter().any(|h| h.timeline == t);
    let mut problems = Vec::new();
    for h in &histories {
        let name = remote.history_path(h.timeline);
        let mut bad = |why: String| problems.push(format!("{name}: {why}"));
        if database_id.is_some_and(|id| id != h.database_id) {
            bad(format!(
                "it names database {:#018x}, the archive's chunks another",
                h.database_id
            ));
        }
        if !known(h.parent) {
            bad(format!(
                "its parent timeline {:08X} has no history",
                h.parent
            ));
        }
        match spans.get(&h.parent) {
            Some(&(start, end)) if start <= h.switch && h.switch <= end => {}
            Some(&(start, end)) => bad(format!(
                "it branches at LSN {}, outside its parent's archived log {start}..{end}",
                h.switch
            )),
            None => bad(format!(
                "its parent timeline {:08X} has no chunks to branch from",
                h.parent
            )),
        }
        if let Some(&(start, _)) = spans.get(&h.timeline)
            && start != h.switch
        {
            bad(format!(
                "its chunks start at LSN {start}, not at its switch LSN {}",
                h.switch
            ));
        }
        outln!(
            "timeline {:08X} history: branched from {:08X} at LSN {}",
            h.timeline,
            h.parent,
            h.switch
        )?;
    }
    for &t in spans.keys().filter(|&&t| !known(t)) {
        problems.push(format!("timeline {t:08X} has chunks but no history object"));
    }
    match problems.is_empty() {
        true => Ok(histories.len()),
        false => Err(Failure(format!(
            "{}: timeline histories disagree with the chunks: {}",
            l.url,
            problems.join("; ")
        ))),
    }
}

/// Checks every backup folder (keel-archive's `backup_check` module):
/// each complete one's files and log, each incomplete one reported. Every
/// damaged backup is named before the error; returns the complete ones.
fn verify_backups(l: &Location) -> Result<u64, Failure> {
    let remote = Remote::open(&parse_location(l)?, Duration::from_secs(l.timeout)).map_err(fail)?;
    let mut damaged = Vec::new();
    let mut complete = 0;
    for folder in remote.list_backup_folders().map_err(fail)? {
        if !folder.manifest {
            outln!(
                "backup {}: incomplete (no manifest: {} objects, {}); never restored from",
                folder.folder,
                folder.objects,
                size(folder.bytes)
            )?;
            continue;
        }
        let entry = keel_archive::BackupEntry {
            timeline: folder.timeline,
            start: folder.start,
            manifest: format!("{}/manifest", folder.folder).into(),
        };
        match keel_archive::backup_check::check_backup(&remote, &entry) {
            Ok(m) => {
                complete += 1;
                outln!(
                    "backup {}: LSN {}..{}, {} files, {}: ok",
                    folder.folder,
                    m.start,
                    m.end,
                    m.files.len(),
                    size(m.files.iter().map(|f| f.size).sum())
                )?;
            }
            Err(e) => {
                outln!("backup {}: damaged: {e}", folder.folder)?;
                damaged.push(folder.folder);
            }
        }
    }
    match damaged.is_empty() {
        true => Ok(complete),
        false => Err(Failure(format!(
            "{}: damaged backups: {}",
            l.url,
            damaged.join(", ")
        ))),
    }
}

/// `keel archive compact`: one compaction pass over each timeline.
fn compact(l: &Location) -> Result<(), Failure> {
    let remote = Remote::open(&parse_location(l)?, Duration::from_secs(l.timeout)).map_err(fail)?;
    let timelines = remote.list_timelines().map_err(fail)?;
    let mut total = keel_archive::CompactReport::default();
    for t in timelines {
        let r = keel_archive::compact_timeline(&remote, t, None, &|| false)
            .map_err(|e| Failure(format!("timeline {t:08X}: {e}")))?;
        outln!(
            "timeline {t:08X}: {} compacted objects written, replacing {} chunks; {} leftover \
             chunks of an interrupted compaction checked and deleted; {} chunks of the \
             unfinished last segment kept",
            r.objects,
            r.chunks_deleted,
            r.leftovers_deleted,
            r.chunks_pending
        )?;
        total.objects += r.objects;
        total.chunks_deleted += r.chunks_deleted + r.leftovers_deleted;
    }
    outln!(
        "archive {} compacted: {} objects written, {} chunks deleted",
        l.url,
        total.objects,
        total.chunks_deleted
    )?;
    Ok(())
}

/// `keel archive cleanup` (keel-archive's `cleanup` module has the rules).
fn cleanup(args: &CleanupArgs) -> Result<(), Failure> {
    use keel_archive::cleanup::{Removed, incomplete_backups, remove_incomplete};
    let l = &args.location;
    let remote = Remote::open(&parse_location(l)?, Duration::from_secs(l.timeout)).map_err(fail)?;
    let found = incomplete_backups(&remote, args.older_than).map_err(fail)?;
    if found.is_empty() {
        outln!(
            "no backup folder without a manifest older than {:?}",
            args.older_than
        )?;
    }
    let (mut deleted, mut bytes) = (0, 0);
    for f in &found {
        let what = format!(
            "{}: no manifest, {} objects, {}, last written {}",
            f.folder,
            f.objects,
            size(f.bytes),
            utc(f
                .last_modified
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0)))
        );
        if !args.apply {
            outln!("would delete {what}")?;
            continue;
        }
        match remove_incomplete(&remote, f, args.older_than).map_err(fail)? {
            Removed::Deleted(n) => {
                outln!("deleted {what} ({n} objects)")?;
                deleted += 1;
                bytes += f.bytes;
            }
            Removed::Spared(why) => outln!("kept {}: {why}", f.folder)?,
        }
    }
    match (args.apply, found.is_empty()) {
        (_, true) => {}
        (true, false) => outln!("deleted {deleted} incomplete backups ({})", size(bytes))?,
        (false, false) => outln!(
            "{} incomplete backups; run again with --apply to delete them",
            found.len()
        )?,
    }
    match args.retain_backups {
        Some(n) => retain(&remote, n, args.apply),
        None => Ok(()),
    }
}

/// `keel archive cleanup --retain-backups N`.
fn retain(remote: &Remote, n: usize, apply: bool) -> Result<(), Failure> {
    use keel_archive::cleanup::{apply_retention, retention_plan};
    let plan = retention_plan(remote, n).map_err(fail)?;
    for f in &plan.kept {
        outln!("keep backup {} (LSN {})", f.folder, f.start)?;
    }
    if plan.backups.is_empty() {
        outln!(
            "{} complete backups, each among the --retain-backups {n} newest of a \
             timeline: nothing to delete",
            plan.kept.len()
        )?;
        return Ok(());
    }
    let verb = if apply { "deleting" } else { "would delete" };
    for f in &plan.backups {
        outln!(
            "{verb} backup {} ({} objects, {})",
            f.folder,
            f.objects,
            size(f.bytes)
        )?;
    }
    let log_bytes: u64 = plan.log.iter().map(|o| o.size).sum();
    match plan.keep_from {
        Some(from) => outln!(
            "{verb} timeline 00000001's log before LSN {from}: {} objects, {} (the log of \
             other timelines is kept)",
            plan.log.len(),
            size(log_bytes)
        )?,
        None => outln!("the log is kept whole")?,
    }
    if !apply {
        outln!("run again with --apply to delete them")?;
        return Ok(());
    }
    let deleted = apply_retention(remote, &plan).map_err(fail)?;
    outln!("retention: {deleted} objects deleted")?;
    Ok(())
}

/// A commit time (µs since the epoch) in RFC 3339, UTC; `-` for none.
pub(crate) fn utc(us: u64) -> String {
    let t = i64::try_from(us)
        .ok()
        .filter(|&t| t != 0)
        .and_then(chrono::DateTime::from_timestamp_micros);
    match t {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        None if us == 0 => "-".into(),
        None => format!("{us} us (out of range)"),
    }
}

fn size(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1_048_576 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1_048_576.0),
    }
}
