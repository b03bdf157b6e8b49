//! `keel bench` arguments: parsed and checked by clap (bad values exit with
//! code 2 and a one-line message), then resolved into [`Settings`] with the
//! defaults and `--quick` applied.

use std::path::{Path, PathBuf};

use clap::ValueEnum;

use super::engine::EngineKind;

/// What `keel bench` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// Single-row durable commits at each committer count, beside the
    /// disk's loops and the group-commit reference loop.
    Commit,
    /// Bulk insert of --rows rows in transactions of 10,000, until durable
    /// and checkpointed.
    Insert,
    /// Random point reads by address: working set inside the cache, at 4x
    /// it, and cold (the kernel's cache and the engine's emptied first).
    Read,
    /// Time from a SIGKILL after --wal-mib of log to the first commit of a
    /// new process.
    Recovery,
    /// Ordered keys, shaped like redb's published comparison: 24-byte
    /// random keys, 150-byte values; Keel's trees against SQLite and redb.
    Kv,
    /// Keel's WAL micro benchmarks (criterion-free `cargo bench`).
    Wal,
    /// CRC32C micro benchmarks.
    Crc,
    /// Free space map micro benchmarks.
    Fsm,
    /// The AsyncIo backends (run in-process, shortened).
    Io,
    /// Every suite above, in that order.
    All,
}

impl Suite {
    /// The suites `self` stands for, in running order.
    pub fn expand(self) -> Vec<Suite> {
        use Suite::*;
        match self {
            All => vec![Commit, Insert, Read, Recovery, Kv, Wal, Crc, Fsm, Io],
            s => vec![s],
        }
    }

    /// The suite's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Commit => "commit",
            Suite::Insert => "insert",
            Suite::Read => "read",
            Suite::Recovery => "recovery",
            Suite::Kv => "kv",
            Suite::Wal => "wal",
            Suite::Crc => "crc",
            Suite::Fsm => "fsm",
            Suite::Io => "io",
            Suite::All => "all",
        }
    }
}

/// Committer counts, as given to --committers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committers(pub Vec<usize>);

/// Engines, as given to --engines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engines(pub Vec<EngineKind>);

/// `keel bench SUITE [options]`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Suite to run.
    #[arg(value_enum)]
    pub suite: Suite,
    /// Directory under which the engines' data directories are created (and
    /// removed afterwards). Default: a temporary directory inside the current
    /// directory, so on its file system.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Measurements per case; the median and the spread min..max are reported.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = parse_repeat)]
    pub repeat: u32,
    /// Seconds per timed measurement [default: 2, 0.5 with --quick; 0.5 in
    /// the kv suite, also when `all` runs it].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub secs: Option<f64>,
    /// Concurrent committers for the commit suite, comma-separated
    /// [default: 1,4,16,64].
    #[arg(long, value_name = "LIST", value_parser = parse_committers)]
    pub committers: Option<Committers>,
    /// Rows for the insert suite [default: 1000000, 100000 with --quick].
    #[arg(long, value_name = "N", value_parser = parse_rows)]
    pub rows: Option<u64>,
    /// Engines to run, comma-separated, from keel,sqlite,postgres,redb,disk,
    /// keel-archived
    /// [default: disk,keel,sqlite,postgres; disk,keel,sqlite,redb in the kv
    /// suite, also when `all` runs it]. `disk` is the disk's own ceilings (in the commit suite: its
    /// single-committer loops and the group-commit reference; in the kv
    /// suite: the fdatasync loop, taking turns with Keel's one-writer phase
    /// in slices when Keel runs). redb runs only in the kv suite.
    #[arg(long, value_name = "LIST", value_parser = parse_engines)]
    pub engines: Option<Engines>,
    /// Keys loaded by the kv suite (and written again by its batch writes)
    /// [default: 50000, 10000 with --quick].
    #[arg(long, value_name = "N", value_parser = parse_keys)]
    pub keys: Option<u64>,
    /// Cache budget given to every engine, in MiB [default: 64, 8 with --quick].
    #[arg(long, value_name = "MIB", value_parser = parse_cache_mib)]
    pub cache_mib: Option<u64>,
    /// Log generated before the crash in the recovery suite, in MiB
    /// [default: 256, 32 with --quick].
    #[arg(long, value_name = "MIB", value_parser = parse_wal_mib)]
    pub wal_mib: Option<u64>,
    /// Write every figure and every setting to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write SVG charts into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Short measurements and small sizes: `keel bench all --quick` finishes
    /// within a few minutes.
    #[arg(long)]
    pub quick: bool,
}

/// The resolved settings of one run (every one is printed and written to the
/// JSON file).
///
/// The kv suite has defaults of its own for `--secs` and `--engines`
/// (`kv_secs`, `kv_engines`), which hold whether it runs alone or within
/// `all`; with `keel bench kv`, `secs` and `engines` are the same values.
#[derive(Clone, Debug)]
pub struct Settings {
    pub suite: Suite,
    pub repeat: u32,
    /// Seconds per timed measurement, in every suite but kv.
    pub secs: f64,
    /// Seconds per timed measurement in the kv suite.
    pub kv_secs: f64,
    pub committers: Vec<usize>,
    pub rows: u64,
    pub keys: u64,
    /// Engines of every suite but kv.
    pub engines: Vec<EngineKind>,
    /// Engines of the kv suite.
    pub kv_engines: Vec<EngineKind>,
    pub cache_bytes: u64,
    pub wal_bytes: u64,
    pub quick: bool,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
}

impl BenchArgs {
    /// What is wrong with the paths given, found before anything is
    /// created or measured: a `--dir` or `--plot` that exists and is no
    /// directory, a `--json` that is a directory or whose directory does
    /// not exist (else the whole run would be measured, then not written).
    pub fn path_problem(&self) -> Option<String> {
        let not_dir = |flag: &str, p: &Path| {
            (p.exists() && !p.is_dir())
                .then(|| format!("{flag} {} exists and is not a directory", p.display()))
        };
        if let Some(p) = self.dir.as_deref().and_then(|d| not_dir("--dir", d)) {
            return Some(p);
        }
        if let Some(p) = self.plot.as_deref().and_then(|d| not_dir("--plot", d)) {
            return Some(p);
        }
        let json = self.json.as_deref()?;
        if json.is_dir() {
            return Some(format!("--json {} is a directory", json.display()));
        }
        let parent = json.parent().filter(|p| !p.as_os_str().is_empty());
        match parent {
            Some(p) if !p.is_dir() => Some(format!(
                "--json {}: the directory {} does not exist",
                json.display(),
                p.display()
            )),
            _ => None,
        }
    }

    /// Whether the file system the run writes on lacks room for the
    /// recovery suite's log (`--wal-mib`; it runs when the suite is
    /// `recovery` or `all`): each engine writes that much log and the data
    /// pages it changes, so twice the log must be free, or the run would
    /// stop on a full disk after the suites before it. The space is that
    /// of `--dir` (or the nearest directory above it that exists; the
    /// current directory without `--dir`).
    pub fn space_problem(&self) -> Option<String> {
        if !self.suite.expand().contains(&Suite::Recovery) {
            return None;
        }
        let wal = self.settings().wal_bytes;
        let mut at = self.dir.clone().unwrap_or_else(|| PathBuf::from("."));
        while !at.exists() {
            at = match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
        }
        let free = free_bytes(&at)?;
        let need = wal.saturating_mul(2);
        (free < need).then(|| {
            format!(
                "--wal-mib {}: the recovery suite needs about {} MiB free (its log and the \
                 pages the log changes) on the file system of {}, which has {} MiB",
                wal >> 20,
                need >> 20,
                at.display(),
                free >> 20
            )
        })
    }

    /// Applies the defaults (and `--quick`'s).
    pub fn settings(&self) -> Settings {
        let q = self.quick;
        let kv = self.suite == Suite::Kv;
        let kv_secs = self.secs.unwrap_or(0.5);
        let kv_engines = self.engines.clone().map_or_else(
            || {
                vec![
                    EngineKind::Disk,
                    EngineKind::Keel,
                    EngineKind::Sqlite,
                    EngineKind::Redb,
                ]
            },
            |e| e.0,
        );
        Settings {
            suite: self.suite,
            repeat: self.repeat,
            secs: match kv {
                true => kv_secs,
                false => self.secs.unwrap_or(if q { 0.5 } else { 2.0 }),
            },
            kv_secs,
            committers: self
                .committers
                .clone()
                .map_or_else(|| vec![1, 4, 16, 64], |c| c.0),
            rows: self.rows.unwrap_or(if q { 100_000 } else { 1_000_000 }),
            keys: self.keys.unwrap_or(if q { 10_000 } else { 50_000 }),
            engines: match kv {
                true => kv_engines.clone(),
                false => self
                    .engines
                    .clone()
                    .map_or_else(|| EngineKind::ALL.to_vec(), |e| e.0),
            },
            kv_engines,
            cache_bytes: self.cache_mib.unwrap_or(if q { 8 } else { 64 }) << 20,
            wal_bytes: self.wal_mib.unwrap_or(if q { 32 } else { 256 }) << 20,
            quick: q,
            json: self.json.clone(),
            plot: self.plot.clone(),
        }
    }
}

/// The bytes an unprivileged process may still write on the file system
/// of `path`; `None` when it cannot be asked (the run then goes on).
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` a buffer of the type
    // statvfs writes.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::useless_conversion)] // the fields' types differ by platform
    Some(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

fn parse_int(s: &str, lo: u64, hi: u64) -> Result<u64, String> {
    let clean = s.replace('_', "");
    let n: u64 = clean
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number"))?;
    if !(lo..=hi).contains(&n) {
        return Err(format!("must be between {lo} and {hi}"));
    }
    Ok(n)
}

fn parse_repeat(s: &str) -> Result<u32, String> {
    parse_int(s, 1, 1000).map(|n| n as u32)
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || !(0.01..=3600.0).contains(&v) {
        return Err("must be between 0.01 and 3600 seconds".into());
    }
    Ok(v)
}

fn parse_rows(s: &str) -> Result<u64, String> {
    parse_int(s, 1, 1_000_000_000)
}

/// At least 1,000 keys: the batch writes write them in transactions of
/// 1,000.
fn parse_keys(s: &str) -> Result<u64, String> {
    parse_int(s, 1_000, 100_000_000)
}

/// At most this machine's memory: Keel's buffer pool refuses more
/// (`keel::buffer::max_pool_bytes`), and a cache the machine cannot hold
/// measures its swap, not an engine.
fn parse_cache_mib(s: &str) -> Result<u64, String> {
    let max_mib = (keel::buffer::max_pool_bytes() >> 20).max(1) as u64;
    parse_int(s, 1, max_mib).map_err(|e| format!("{e} (this machine's memory, in MiB)"))
}

fn parse_wal_mib(s: &str) -> Result<u64, String> {
    parse_int(s, 1, 1 << 20)
}

fn parse_committers(s: &str) -> Result<Committers, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let n = parse_int(part.trim(), 1, 1024).map_err(|e| format!("committer count {e}"))?;
        let n = n as usize;
        if out.contains(&n) {
            return Err(format!("committer count {n} is given twice"));
        }
        out.push(n);
    }
    Ok(Committers(out))
}

fn parse_engines(s: &str) -> Result<Engines, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let e = EngineKind::NAMED
            .into_iter()
            .find(|e| e.name() == part)
            .ok_or_else(|| {
                let names: Vec<&str> = EngineKind::NAMED.iter().map(|e| e.name()).collect();
                format!("unknown engine '{part}' (choose from {})", names.join(", "))
            })?;
        if out.contains(&e) {
            return Err(format!("engine '{part}' is given twice"));
        }
        out.push(e);
    }
    Ok(Engines(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lists_parse_and_reject() {
        assert_eq!(parse_committers("1, 4,64").unwrap().0, vec![1, 4, 64]);
        assert!(parse_committers("1,0").is_err());
        assert!(parse_committers("1,1").is_err());
        assert!(parse_committers("").is_err());
        assert_eq!(
            parse_engines("disk,keel").unwrap().0,
            vec![EngineKind::Disk, EngineKind::Keel]
        );
        assert!(parse_engines("mysql").is_err());
        assert!(parse_secs("nan").is_err());
        assert!(parse_secs("0").is_err());
        assert_eq!(parse_rows("1_000").unwrap(), 1000);
        assert_eq!(parse_engines("redb").unwrap().0, vec![EngineKind::Redb]);
        assert_eq!(
            parse_engines("keel,keel-archived").unwrap().0,
            vec![EngineKind::Keel, EngineKind::KeelArchived]
        );
        assert!(parse_keys("999").is_err());
        assert_eq!(parse_keys("2_000").unwrap(), 2000);
    }

    #[test]
    fn an_unknown_engine_lists_every_engine_there_is() {
        let e = parse_engines("mysql").unwrap_err();
        for k in EngineKind::NAMED {
            assert!(e.contains(&format!(" {}", k.name())), "{} in {e}", k.name());
        }
        assert!(e.contains("keel-archived"), "{e}");
    }

    #[test]
    fn the_cache_is_at_most_this_machines_memory() {
        let max_mib = (keel::buffer::max_pool_bytes() >> 20) as u64;
        assert_eq!(parse_cache_mib(&max_mib.to_string()).unwrap(), max_mib);
        let e = parse_cache_mib(&(max_mib + 1).to_string()).unwrap_err();
        assert!(e.contains("memory"), "{e}");
        assert!(parse_cache_mib("0").is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn settings(args: &[&str]) -> Settings {
        use clap::Parser;
        let argv = std::iter::once("bench").chain(args.iter().copied());
        Cli::try_parse_from(argv).unwrap().bench.settings()
    }

    #[test]
    fn the_kv_suite_keeps_its_defaults_within_all() {
        use EngineKind::*;
        let kv_default = vec![Disk, Keel, Sqlite, Redb];
        let all = settings(&["all"]);
        assert_eq!(all.kv_engines, kv_default);
        assert_eq!(all.kv_secs, 0.5);
        assert_eq!(all.engines, EngineKind::ALL.to_vec());
        assert_eq!(all.secs, 2.0);
        let kv = settings(&["kv"]);
        assert_eq!((kv.secs, kv.kv_secs), (0.5, 0.5));
        assert_eq!(kv.engines, kv_default);
        assert_eq!(kv.kv_engines, kv_default);
        assert_eq!(settings(&["all", "--quick"]).secs, 0.5);
        // Given values hold in every suite.
        let given = settings(&["all", "--secs", "1", "--engines", "keel,redb"]);
        assert_eq!((given.secs, given.kv_secs), (1.0, 1.0));
        assert_eq!(given.engines, vec![Keel, Redb]);
        assert_eq!(given.kv_engines, vec![Keel, Redb]);
    }

    #[test]
    fn a_recovery_log_larger_than_the_free_space_is_refused_before_the_run() {
        use clap::Parser;
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().to_str().unwrap();
        let problem = |suite: &str, mib: &str| {
            let argv = ["bench", suite, "--dir", t, "--wal-mib", mib];
            Cli::try_parse_from(argv).unwrap().bench.space_problem()
        };
        // Half the free space and a MiB: twice that is more than is free.
        let half = (free_bytes(tmp.path()).unwrap() >> 21) + 1;
        if half > 1 << 20 {
            return; // over the flag's own limit (1 TiB): nothing to refuse
        }
        let too_much = half.to_string();
        for suite in ["recovery", "all"] {
            let p = problem(suite, &too_much).unwrap_or_else(|| panic!("{suite} accepted"));
            assert!(p.contains("--wal-mib") && p.contains(t), "{p}");
        }
        assert_eq!(
            problem("commit", &too_much),
            None,
            "only the recovery suite needs it"
        );
        assert_eq!(problem("recovery", "1"), None);
        let deeper = format!("{t}/not/yet");
        let argv = [
            "bench",
            "recovery",
            "--dir",
            &deeper,
            "--wal-mib",
            &too_much,
        ];
        let p = Cli::try_parse_from(argv).unwrap().bench.space_problem();
        assert!(
            p.is_some_and(|p| p.contains(t)),
            "the nearest existing directory is asked"
        );
    }

    #[test]
    fn paths_that_cannot_serve_are_refused_before_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"user data").unwrap();
        let t = tmp.path().to_str().unwrap();
        let f = file.to_str().unwrap();
        let missing = format!("{t}/missing/out.json");
        let problem = |args: &[&str]| {
            use clap::Parser;
            let argv = ["bench", "commit"].into_iter().chain(args.iter().copied());
            Cli::try_parse_from(argv).unwrap().bench.path_problem()
        };
        let refused = [
            (vec!["--dir", f], "--dir"),
            (vec!["--plot", f], "--plot"),
            (vec!["--json", t], "is a directory"),
            (vec!["--json", &missing], "does not exist"),
        ];
        for (args, want) in refused {
            let p = problem(&args).unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(p.contains(want), "{args:?}: {p}");
        }
        let fresh = format!("{t}/new/deeper");
        let json = format!("{t}/out.json");
        assert_eq!(
            problem(&["--dir", t, "--plot", &fresh, "--json", &json]),
            None
        );
        assert_eq!(problem(&["--dir", &fresh, "--json", "out.json"]), None);
        assert_eq!(problem(&[]), None);
        assert_eq!(std::fs::read(&file).unwrap(), b"user data");
    }
}
