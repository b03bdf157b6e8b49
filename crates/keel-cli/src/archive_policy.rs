//! The flags that choose what commits do while the WAL archive is down
//! (keel-archive's `ArchivePolicy`), for the commands that run an archiver
//! beside a workload (`keel shell --archive URL`, `keel backup`, `keel demo
//! --archive`):
//!
//! - `--on-archive-failure keep-going` (the default): commits go on; the
//!   log is kept (no unarchived segment is retired) and grows until the
//!   archive is back or the disk is full; `keel stats` says `broken` with
//!   the last error.
//! - `--on-archive-failure stall --max-unarchived SIZE [--stall-timeout
//!   DURATION]`: once more than SIZE of durable log is not archived, each
//!   commit waits (keeping its locks) for the archive; one that waits
//!   DURATION (default 30s) is rolled back and answered with a transient
//!   error.
//!
//! SIZE is a number of bytes with an optional unit: `B`, `KiB`, `MiB`,
//! `GiB`, `TiB` (powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of
//! 1000), as in `64MiB` or `64 MiB`. DURATION is a number with a unit:
//! `ms`, `s`, `m` or `h`, as in `30s` or `500ms`; zero is refused. A bad
//! value is refused by the argument parser (exit code 2) with a message
//! naming the flag; `--max-unarchived` or `--stall-timeout` without
//! `stall`, `stall` without `--max-unarchived`, or any of them without an
//! archive, is refused too before anything is opened, also with exit
//! code 2 (a usage error, in the argument parser's format from `keel
//! shell` and `keel backup`; `keel demo` checks them with its directory).

use std::time::Duration;

use keel_archive::ArchivePolicy;

use crate::Failure;

/// The flags (module essay).
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// What commits do while the archive is down: keep-going (commits go
    /// on, the log is kept and grows, `keel stats` reports the archive
    /// broken) or stall (commits wait once --max-unarchived of log is not
    /// archived, and fail after --stall-timeout).
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_archive_failure: Option<OnFailure>,
    /// With stall: the durable log not yet archived at which commits wait
    /// (`64MiB`, `1GiB`, `500MB`, bytes).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_unarchived: Option<u64>,
    /// With stall: how long one commit waits before it is rolled back
    /// (`30s`, `500ms`, `2m`; default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stall_timeout: Option<Duration>,
}

/// `--on-archive-failure` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnFailure {
    /// Commits go on; the archive is reported broken.
    KeepGoing,
    /// Commits wait at --max-unarchived and fail after --stall-timeout.
    Stall,
}

/// How long a stalled commit waits when `--stall-timeout` is not given.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

impl PolicyArgs {
    /// Whether any of the flags was given.
    pub fn given(&self) -> bool {
        self.on_archive_failure.is_some()
            || self.max_unarchived.is_some()
            || self.stall_timeout.is_some()
    }

    /// The policy for a command whose archive is optional: the flags
    /// without one (`archive` false) are refused, naming them.
    pub fn policy_with(&self, archive: bool) -> Result<ArchivePolicy, Failure> {
        if !archive && self.given() {
            return Err(Failure(
                "--on-archive-failure, --max-unarchived and --stall-timeout need --archive URL"
                    .into(),
            ));
        }
        self.policy()
    }

    /// The policy the flags choose (module essay), or an error naming the
    /// flag that does not fit.
    pub fn policy(&self) -> Result<ArchivePolicy, Failure> {
        match self.on_archive_failure.unwrap_or(OnFailure::KeepGoing) {
            OnFailure::KeepGoing => {
                if self.max_unarchived.is_some() || self.stall_timeout.is_some() {
                    return Err(Failure(
                        "--max-unarchived and --stall-timeout apply only with \
                         --on-archive-failure stall"
                            .into(),
                    ));
                }
                Ok(ArchivePolicy::KeepGoing)
            }
            OnFailure::Stall => {
                let Some(max_unarchived_bytes) = self.max_unarchived else {
                    return Err(Failure(
                        "--on-archive-failure stall needs --max-unarchived SIZE \
                         (the unarchived log at which commits wait, e.g. 64MiB)"
                            .into(),
                    ));
                };
                Ok(ArchivePolicy::Stall {
                    max_unarchived_bytes,
                    timeout: self.stall_timeout.unwrap_or(DEFAULT_STALL_TIMEOUT),
                })
            }
        }
    }
}

/// Splits `s` into its number and its unit (spaces between allowed).
fn split_unit(s: &str) -> (&str, &str) {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (&s[..digits], s[digits..].trim_start())
}

/// A size (module essay).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (number, unit) = split_unit(s);
    if number.is_empty() {
        return Err(format!(
            "{s:?} is not a size: expected a whole number of bytes with an optional unit \
             (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), e.g. 64MiB"
        ));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: {number} is too large"))?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A positive duration (module essay).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = split_unit(s);
    if number.is_empty() {
        return Err(format!(
            "{s:?} is not a duration: expected a whole number with a unit (ms, s, m, h), e.g. 30s"
        ));
    }
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: {number} is too large"))?;
    let d = match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        "" => return Err(format!("{s:?} needs a unit: ms, s, m or h (e.g. {n}s)")),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    match d {
        None => Err(format!("{s:?} is too large")),
        Some(d) if d.is_zero() => Err(format!("{s:?}: the timeout must be positive")),
        Some(d) => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sizes_and_durations_parse_and_bad_ones_say_why() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("64 MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
        assert!(parse_size("MiB").unwrap_err().contains("not a size"));
        assert!(parse_size("-1MiB").unwrap_err().contains("not a size"));
        assert!(
            parse_size("12XB")
                .unwrap_err()
                .contains("unknown unit \"XB\"")
        );
        assert!(parse_size("1.5GiB").unwrap_err().contains("unknown unit"));
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("30").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("0s").unwrap_err().contains("positive"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
    }

    #[test]
    fn the_flags_choose_a_policy_or_name_what_does_not_fit() {
        let args = |on, max, timeout| PolicyArgs {
            on_archive_failure: on,
            max_unarchived: max,
            stall_timeout: timeout,
        };
        assert_eq!(
            args(None, None, None).policy().unwrap(),
            ArchivePolicy::KeepGoing
        );
        assert!(!args(None, None, None).given());
        assert_eq!(
            args(Some(OnFailure::Stall), Some(1 << 20), None)
                .policy()
                .unwrap(),
            ArchivePolicy::Stall {
                max_unarchived_bytes: 1 << 20,
                timeout: DEFAULT_STALL_TIMEOUT
            }
        );
        let e = args(Some(OnFailure::Stall), None, None)
            .policy()
            .unwrap_err();
        assert!(e.0.contains("needs --max-unarchived"), "{}", e.0);
        let e = args(Some(OnFailure::KeepGoing), Some(1), None)
            .policy()
            .unwrap_err();
        assert!(
            e.0.contains("only with --on-archive-failure stall"),
            "{}",
            e.0
        );
        let e = args(None, None, Some(Duration::from_secs(1)))
            .policy()
            .unwrap_err();
        assert!(e.0.contains("only with"), "{}", e.0);
    }
}
