//! `keel standby` and `keel promote`: a warm standby that follows a WAL
//! archive, and its promotion to a primary (keel-archive's `standby`
//! module has the protocol; this file only parses and prints).
//!
//! - `keel standby --archive URL --dir D [--timeline N] [--poll 5s]
//!   [--once]`: on an absent or empty `D`, lays down the newest backup and
//!   the archive's log (no recovery open; `D` is marked a standby, which
//!   `Database::open` refuses), then every `--poll` interval fetches the
//!   chunks past the local log's end, appends them and applies them redo
//!   only, printing one line per poll; it moves onto a newer timeline
//!   branched from the one it follows at or after its log end (a standby
//!   promoted, the primary restored), and names one branched before,
//!   which it cannot follow. `--once` does one catch-up and
//!   exits. A poll that fails on a transient store error (unreachable,
//!   timed out) is reported and retried at the next interval; any other
//!   error stops the command with exit status 1.
//! - `keel promote --dir D --archive URL`: a final catch-up, a new
//!   timeline, the fence that stops the old primary's archiver, the marker
//!   removed, and an open that undoes the transactions left open; the new
//!   timeline's first log is archived before it returns. One process uses
//!   a standby at a time (a lock on its marker file): stop `keel standby`
//!   before promoting. Run again after a failure, it goes on where the
//!   failed one stopped.

use std::path::PathBuf;
use std::time::Duration;

use keel_archive::standby::{PromoteReport, Standby, finish_promotion, read_marker};

use crate::Failure;
use crate::archive::{Location, parse_location};

/// Arguments of `keel standby`.
#[derive(Debug, clap::Args)]
pub struct StandbyArgs {
    /// The standby's data directory: absent or empty to set one up, or a
    /// standby to follow on.
    #[arg(long)]
    pub dir: PathBuf,
    /// The timeline to follow (a new standby: default 1; an existing one
    /// follows its own, and then the newest timeline branched from it at
    /// or after its log end).
    #[arg(long)]
    pub timeline: Option<u32>,
    /// How long to wait between polls: `5s`, `500ms`, `2m`, or seconds.
    #[arg(long, default_value = "5s", value_parser = parse_interval)]
    pub poll: Duration,
    /// One catch-up, then exit.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub location: Location,
}

/// Arguments of `keel promote`.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// The standby's data directory.
    #[arg(long)]
    pub dir: PathBuf,
    #[command(flatten)]
    pub location: Location,
}

/// Parses `5s`, `500ms`, `2m` or a number of seconds.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not an interval (`5s`, `500ms`, `2m`)"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{s:?}: the unit must be ms, s or m")),
    };
    if !(secs > 0.0 && secs < 86_400.0) {
        return Err(format!(
            "{s:?}: an interval is more than zero and under a day"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn config() -> Result<keel::Config, Failure> {
    Ok(keel::Config {
        io: keel_io::IoConfig::from_env()?,
        ..keel::Config::default()
    })
}

/// `keel standby`.
pub fn standby(args: StandbyArgs) -> Result<(), Failure> {
    let target = parse_location(&args.location)?;
    let timeout = Duration::from_secs(args.location.timeout);
    let (mut standby, setup) = Standby::open(&target, &args.dir, args.timeline, config()?, timeout)
        .map_err(|e| Failure(e.to_string()))?;
    if let Some(s) = setup {
        if s.cleared_unfinished {
            outln!(
                "cleared an unfinished standby setup in {}",
                args.dir.display()
            )?;
        }
        for (folder, why) in &s.passed_over {
            outln!("passed over the damaged backup {folder}: {why}")?;
        }
        outln!(
            "set up a standby of timeline {:08X} in {}: the backup from LSN {} (consistent at {}), \
             {} bytes of files, {} chunks of log to LSN {}",
            standby.timeline(),
            args.dir.display(),
            s.backup.start,
            s.backup.end,
            s.file_bytes,
            s.chunks,
            s.log_end
        )?;
    }
    loop {
        match standby.poll() {
            Ok(r) => outln!("poll: {r}")?,
            Err(e) if e.is_transient() && !args.once => outln!("poll failed, retrying: {e}")?,
            Err(e) => return Err(Failure(e.to_string())),
        }
        if args.once {
            return Ok(());
        }
        std::thread::sleep(args.poll);
    }
}

/// `keel promote`.
pub fn promote(args: PromoteArgs) -> Result<(), Failure> {
    let target = parse_location(&args.location)?;
    let timeout = Duration::from_secs(args.location.timeout);
    let fail = |e: keel_archive::ArchiveError| Failure(e.to_string());
    let r: PromoteReport = match read_marker(&args.dir).map_err(fail)? {
        Some(_) => Standby::open(&target, &args.dir, None, config()?, timeout)
            .and_then(|(s, _)| s.promote())
            .map_err(fail)?,
        None => finish_promotion(&target, &args.dir, config()?, timeout).map_err(fail)?,
    };
    if let Some(p) = &r.last_poll {
        outln!("final poll: {p}")?;
    }
    outln!(
        "promoted {}: timeline {:08X} from timeline {:08X} at LSN {}; {} records redone, {} \
         transactions undone; the old primary's archiver is fenced; archived to LSN {}",
        args.dir.display(),
        r.timeline,
        r.parent,
        r.switch,
        r.recovery.records_redone,
        r.recovery.txns_undone,
        r.archived
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_with_their_units_and_bad_ones_are_refused() {
        assert_eq!(parse_interval("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_interval("3"), Ok(Duration::from_secs(3)));
        for bad in ["", "s", "0s", "5h", "-1s", "1e9"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
