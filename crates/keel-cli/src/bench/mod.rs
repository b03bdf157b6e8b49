//! `keel bench SUITE`: Keel against SQLite, PostgreSQL and the disk's own
//! ceiling, side by side in one run, with a table on stdout, a JSON file of
//! every figure and setting, and SVG charts.
//!
//! Layout:
//! - [`args`]: the command line and the resolved settings;
//! - [`engine`]: the `Engine`/`Session` traits and setup; one module per
//!   engine: [`disk`], [`sqlite`], [`postgres`] (+ [`pg_cluster`] and
//!   [`pg_wire`], its binary COPY and tid formats) and [`keel_engine`]
//!   (Keel through its public `Database` API); [`reference`](mod@reference) (the
//!   group-commit reference loop, with the disk's loops);
//! - one module per suite: [`commit`], [`insert`], [`read`], [`recovery`]
//!   (+ [`child`], the crashing and recovering processes), [`kv`] (ordered
//!   keys against SQLite and redb, with its own stores), [`micro`] (wal,
//!   crc, fsm, io);
//! - [`measure`] (timed loops), [`settle`] (waiting for a quiet disk between
//!   windows), [`blockdev`] (bytes moved at the block device), [`pagecache`]
//!   (emptying the kernel's cache of an engine's files), [`report`]
//!   (figures, JSON), [`plot`] (SVG), [`progress`]
//!   (table lines and the progress bar).
//!
//! Each measurement is repeated (`--repeat`) and reported as the median and
//! the spread min..max. Ratios are taken pair by pair: the value of one
//! engine in repeat *i* over the other's in the same repeat *i* (measured
//! back to back), then the median of those ratios.

mod args;
mod blockdev;
mod child;
mod commit;
mod disk;
mod engine;
mod insert;
mod keel_engine;
mod kv;
mod measure;
mod micro;
mod pagecache;
mod pg_cluster;
mod pg_wire;
mod plot;
mod postgres;
mod progress;
mod read;
mod recovery;
mod reference;
mod report;
mod settle;
mod sqlite;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use args::BenchArgs;
use args::{Settings, Suite};
pub use child::{ChildArgs, child_main};
use engine::{EngineKind, Setup};
use progress::Progress;
use report::Report;

use crate::Failure;

/// One run's shared state.
pub struct Ctx {
    /// The resolved settings.
    pub settings: Settings,
    /// Root of this run's data directories.
    pub root: PathBuf,
    /// Everything measured so far.
    pub report: Report,
    /// Table output and progress bar.
    pub out: Progress,
}

impl Ctx {
    /// Sets up every selected engine for `suite` in `root/<suite>-<engine>`,
    /// recording and printing the skipped ones.
    fn engines(
        &mut self,
        suite: Suite,
        max_sessions: usize,
    ) -> Result<Vec<Box<dyn engine::Engine>>, Failure> {
        let mut ready = Vec::new();
        for kind in self.settings.engines.clone() {
            let dir = self.engine_dir(suite, kind);
            self.out
                .step(&format!("{}: setting up {}", suite.name(), kind.name()));
            match engine::setup(kind, suite, &dir, self.settings.cache_bytes, max_sessions)? {
                Setup::Ready(e) => {
                    self.settings_line(suite, kind.name(), e.settings());
                    ready.push(e);
                }
                Setup::Skip(why) => self.skip(suite, kind, &why),
            }
        }
        Ok(ready)
    }

    /// Prints and records the settings of `name` (an engine, or a loop
    /// measured beside the engines).
    fn settings_line(&mut self, suite: Suite, name: &str, kv: report::KeyValues) {
        let line = kv
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>();
        self.out
            .line(&format!("  {name} settings: {}", line.join(", ")));
        self.report
            .engine_settings
            .push((suite.name().into(), name.into(), kv));
    }

    /// The data directory of `kind` in `suite`: `root/<suite>-<engine>`.
    fn engine_dir(&self, suite: Suite, kind: EngineKind) -> PathBuf {
        self.root.join(format!("{}-{}", suite.name(), kind.name()))
    }

    fn skip(&mut self, suite: Suite, kind: EngineKind, why: &str) {
        self.skip_named(suite, kind.name(), why);
    }

    /// Prints and records that `name` is left out of `suite`, and why.
    fn skip_named(&mut self, suite: Suite, name: &str, why: &str) {
        self.out.line(&format!("  {name}: {why}"));
        self.report
            .skipped
            .push((suite.name().into(), name.into(), why.into()));
    }
}

/// Runs `keel bench`.
pub fn run(args: BenchArgs) -> Result<(), Failure> {
    if let Some(problem) = args.path_problem().or_else(|| args.space_problem()) {
        crate::exit_usage("bench", &problem);
    }
    let settings = args.settings();
    let (root_guard, root) = data_root(args.dir.as_deref())?;
    let env = environment(&root);
    print_settings(&settings, &env)?;
    let mut ctx = Ctx {
        settings: settings.clone(),
        root: root.clone(),
        report: Report::default(),
        out: Progress::new(),
    };
    let mut result = Ok(());
    for suite in settings.suite.expand() {
        ctx.out.line(&format!("\n## {}", suite.name()));
        result = run_suite(&mut ctx, suite);
        if result.is_err() {
            break;
        }
    }
    ctx.out.finish();
    if result.is_ok() {
        result = ctx.out.written();
    }
    if let Some(path) = &settings.json {
        report::write_json(path, &settings, &env, &ctx.report)?;
        outln!("\nJSON: {}", path.display())?;
    }
    if let Some(dir) = &settings.plot {
        for f in plot::write_all(dir, &ctx.report)? {
            outln!("chart: {}", f.display())?;
        }
    }
    drop(root_guard);
    result
}

fn run_suite(ctx: &mut Ctx, suite: Suite) -> Result<(), Failure> {
    match suite {
        Suite::Commit => commit::run(ctx),
        Suite::Insert => insert::run(ctx),
        Suite::Read => read::run(ctx),
        Suite::Recovery => recovery::run(ctx),
        Suite::Kv => kv::run(ctx),
        Suite::Wal | Suite::Crc | Suite::Fsm => {
            micro::print_command(ctx, suite);
            Ok(())
        }
        Suite::Io => micro::io(ctx),
        Suite::All => Ok(()),
    }
}

/// The run's root directory: a new temporary directory inside `dir`, or
/// inside the current directory (so on its file system, whatever /tmp is).
fn data_root(dir: Option<&Path>) -> Result<(tempfile::TempDir, PathBuf), Failure> {
    let parent = match dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| Failure(format!("cannot create --dir {}: {e}", d.display())))?;
            d.to_path_buf()
        }
        None => {
            std::env::current_dir().map_err(|e| Failure(format!("no current directory: {e}")))?
        }
    };
    let t = tempfile::Builder::new()
        .prefix(".keel-bench-")
        .tempdir_in(&parent)
        .map_err(|e| {
            Failure(format!(
                "cannot create a directory in {}: {e}",
                parent.display()
            ))
        })?;
    let path = t.path().to_path_buf();
    Ok((t, path))
}

/// The environment the figures were measured in.
fn environment(root: &Path) -> Vec<(String, String)> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    let root_dev = dev(root);
    let tmp_same = match (root_dev, dev(&std::env::temp_dir())) {
        (Some(a), Some(b)) if a == b => "yes",
        (Some(_), Some(_)) => "no (data stays off /tmp)",
        _ => "unknown",
    };
    let uid = std::fs::metadata(root).map(|m| m.uid()).unwrap_or(u32::MAX);
    let loadavg: Vec<String> = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .map(String::from)
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    vec![
        ("date".into(), utc_date(now)),
        ("unix_time".into(), now.to_string()),
        (
            "build".into(),
            if cfg!(debug_assertions) {
                "debug (figures not representative)"
            } else {
                "release"
            }
            .into(),
        ),
        (
            "cpus".into(),
            std::thread::available_parallelism()
                .map_or(0, |n| n.get())
                .to_string(),
        ),
        ("load_average".into(), loadavg.join(" ")),
        ("kernel".into(), read("/proc/sys/kernel/osrelease")),
        ("data_dir".into(), root.display().to_string()),
        (
            "data_dir_device".into(),
            root_dev.map_or("?".into(), |d| format!("{d:#x}")),
        ),
        ("same_fs_as_tmp".into(), tmp_same.into()),
        ("uid".into(), uid.to_string()),
    ]
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the epoch.
fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn print_settings(s: &Settings, env: &[(String, String)]) -> Result<(), Failure> {
    let list = |v: &[usize]| {
        v.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let names = |v: &[EngineKind]| v.iter().map(|e| e.name()).collect::<Vec<_>>().join(",");
    // `all` runs the kv suite with its own defaults (Settings).
    let kv_apart = |main: String, kv: String| match s.suite == Suite::All && main != kv {
        true => format!("{main} (kv suite: {kv})"),
        false => main,
    };
    outln!(
        "keel bench {}{}",
        s.suite.name(),
        if s.quick { " --quick" } else { "" }
    )?;
    let rows = [
        (
            "repeat",
            format!("{} (median and spread min..max)", s.repeat),
        ),
        (
            "secs",
            format!(
                "{} per timed measurement",
                kv_apart(s.secs.to_string(), s.kv_secs.to_string())
            ),
        ),
        ("committers", list(&s.committers)),
        (
            "rows",
            format!(
                "{} (insert suite), {} per transaction",
                s.rows,
                engine::BATCH_ROWS
            ),
        ),
        ("keys", format!("{} (kv suite)", s.keys)),
        ("engines", kv_apart(names(&s.engines), names(&s.kv_engines))),
        (
            "row",
            format!("8 B id + {} B payload", engine::PAYLOAD_BYTES),
        ),
        ("cache", format!("{} MiB per engine", s.cache_bytes >> 20)),
        ("recovery log", format!("{} MiB", s.wal_bytes >> 20)),
        (
            "durability",
            "every commit returns once durable (fsync/fdatasync)".into(),
        ),
    ];
    for (k, v) in rows
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .chain(env.iter().cloned())
    {
        outln!("  {k:<16} {v}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// The bench works in a directory of its own inside `--dir` and removes
    /// only that: whatever was in `--dir` before stays.
    #[test]
    fn the_run_removes_only_the_directory_it_made() {
        let tmp = tempfile::tempdir().unwrap();
        let user = tmp.path().join("user");
        std::fs::create_dir(&user).unwrap();
        std::fs::write(user.join("notes.txt"), b"mine").unwrap();
        std::fs::create_dir(user.join(".keel-bench-old")).unwrap();
        let (guard, root) = super::data_root(Some(&user)).unwrap();
        assert_eq!(root.parent(), Some(user.as_path()));
        std::fs::create_dir_all(root.join("kv-keel")).unwrap();
        std::fs::write(root.join("kv-keel/db"), b"bench").unwrap();
        drop(guard);
        assert!(!root.exists());
        let mut left: Vec<String> = std::fs::read_dir(&user)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".keel-bench-old", "notes.txt"]);
        assert_eq!(std::fs::read(user.join("notes.txt")).unwrap(), b"mine");
        // A --dir that does not exist yet is made, and stays.
        let fresh = tmp.path().join("a/b");
        let (guard, _) = super::data_root(Some(&fresh)).unwrap();
        drop(guard);
        assert!(fresh.is_dir());
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc_date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc_date(1_795_478_400), "2026-11-24 00:00:00 UTC");
    }
}
