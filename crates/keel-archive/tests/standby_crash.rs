//! A warm standby cut by a power cut at each of its local I/O operations
//! in turn, on the simulated disk (`Standby::open_with_io`,
//! `finish_promotion_with_io`), in two runs:
//!
//! (a) setting a standby up from an archive and polling it, then polling
//!     it again once the primary archived more (chunks appended, applied,
//!     a restartpoint, old segments removed);
//! (b) promoting a standby that is caught up;
//! (c) a poll that follows a newer timeline (another standby promoted at
//!     this one's log end, and the new primary's commits archived): the
//!     marker replaced to name it, and its log.
//!
//! After each cut and a reboot, the directory is one of:
//!
//! - nothing of the standby (absent, empty, or only the marker being
//!   written): the command run again sets it up;
//! - a standby: `Database::open` refuses it (naming `keel promote`), and
//!   the command run again (the same setup or poll, or the same promotion)
//!   finishes it; for (c) its marker names the old timeline or the new
//!   one, whole;
//! - for (b), a promoted database whose marker is gone: its timeline file
//!   names the timeline the fence names, and `finish_promotion` finishes
//!   it (or finds its first log already archived).
//!
//! Never a directory that opens for work while it still holds log or
//! files of a standby that was not promoted (invariant 14's rule that
//! nothing unsynced is trusted: each step is durable before the next one
//! relies on it). Once finished and promoted, the database holds every row
//! the primary committed up to the last archived chunk.
//!
//! The archive is a local store on the real file system (its requests are
//! not cut). The promoted database's archiver writes its advisory status
//! file with `std::fs`, which finds no directory at the simulated path and
//! is skipped (the archiver records the failure as its last error).
//!
//! Default: cuts at 40 operations spread over each run and at its last
//! four; `KEEL_STANDBY_CUT_EVERY_OP=1` cuts at every one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use keel::Database;
use keel::types::Lsn;
use keel_archive::local::Local;
use keel_archive::standby::{self, PollReport, Standby};
use keel_archive::{ArchiveTarget, Archiver, Remote, StoreConfig};
use keel_io::AsyncIo;
use keel_io::sim::{Fault, FaultRule, SimConfig, SimDisk, SimIo};

/// The standby's directory on the simulated disk.
const DIR: &str = "/keel-sim-standby";

fn target(root: &Path) -> ArchiveTarget {
    ArchiveTarget::new(StoreConfig::Local(root.to_path_buf()), "db")
}

/// Two states of one archive (`early`: a backup and log after it; `late`:
/// more log, with checkpoints), the rows committed up to the late one's
/// head, and the heads.
struct Archives {
    _tmp: tempfile::TempDir,
    early: std::path::PathBuf,
    late: std::path::PathBuf,
    rows: Vec<Vec<u8>>,
    early_head: Lsn,
    late_head: Lsn,
}

impl Archives {
    /// A fresh copy of the late archive (a promotion writes to it).
    fn late_copy(&self, name: &str) -> ArchiveTarget {
        let to = self._tmp.path().join(name);
        assert!(!to.exists(), "{} is taken", to.display());
        copy_dir(&self.late, &to);
        target(&to)
    }
}

fn archives() -> Archives {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("archive");
    std::fs::create_dir_all(&live).unwrap();
    let t = target(&live);
    let db = open(&tmp.path().join("primary"));
    let rel = db.create_relation("r").unwrap();
    let archiver = Archiver::start(db.clone(), &t, fast()).unwrap();
    workload(&db, rel, 4, 10, 0);
    let options = keel_archive::BackupOptions {
        archive_timeout: Duration::from_secs(30),
        ..keel_archive::BackupOptions::default()
    };
    keel_archive::backup(&db, &archiver, &t, &options).unwrap();
    let early_head = archived_workload(&db, archiver, rel, 4, 10, 0);
    let early = tmp.path().join("early");
    copy_dir(&live, &early);
    let archiver = Archiver::start(db.clone(), &t, fast()).unwrap();
    let late_head = archived_workload(&db, archiver, rel, 8, 60, 2);
    let rows = sorted_rows(&db, "r");
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    Archives {
        _tmp: tmp,
        early: early.clone(),
        late: live,
        rows,
        early_head,
        late_head,
    }
}

/// Runs [`workload`] and waits until the archive holds all of it, then
/// stops `archiver`; the durable end the archive reached.
fn archived_workload(
    db: &Arc<Database>,
    archiver: Archiver,
    rel: keel::RelationId,
    txns: usize,
    rows: usize,
    checkpoint_every: usize,
) -> Lsn {
    workload(db, rel, txns, rows, checkpoint_every);
    let head = db.durable_lsn();
    archiver
        .wait_archived(head, Duration::from_secs(30))
        .unwrap();
    archiver.stop().unwrap();
    head
}

fn local(sim: &Arc<SimIo>) -> Local {
    Local::new(Arc::clone(sim) as Arc<dyn AsyncIo>)
}

/// Opens (setting up when new) the standby on `sim` and polls it.
fn follow(t: &ArchiveTarget, sim: &Arc<SimIo>) -> keel_archive::Result<PollReport> {
    let (mut s, _) = Standby::open_with_io(
        t,
        Path::new(DIR),
        None,
        config(),
        Duration::from_secs(5),
        &local(sim),
    )?;
    s.poll()
}

fn promote(t: &ArchiveTarget, sim: &Arc<SimIo>) -> keel_archive::Result<()> {
    let (s, _) = Standby::open_with_io(
        t,
        Path::new(DIR),
        None,
        config(),
        Duration::from_secs(5),
        &local(sim),
    )?;
    s.promote().map(|_| ())
}

fn open_sim(sim: &Arc<SimIo>) -> keel::Result<Database> {
    Database::open_with_io(DIR, config(), Arc::clone(sim) as Arc<dyn AsyncIo>)
}

/// What is in the directory: nothing of a standby, a standby, or a
/// database whose marker is gone.
fn state(sim: &Arc<SimIo>) -> &'static str {
    let names = local(sim).list(Path::new(DIR)).unwrap().unwrap_or_default();
    let staged = format!("{}.new", keel::datadir::layout::STANDBY_FILE);
    if names.iter().all(|n| *n == staged) {
        "nothing"
    } else if names
        .iter()
        .any(|n| n == keel::datadir::layout::STANDBY_FILE)
    {
        "standby"
    } else {
        "promoted"
    }
}

/// A standby is refused for work, by name.
fn assert_refused(sim: &Arc<SimIo>, at: u64) {
    let e = open_sim(sim).map(|_| ()).unwrap_err().to_string();
    assert!(
        e.contains("keel promote"),
        "cut at {at}: a standby opened for work, or refused without naming `keel promote`: {e}"
    );
}

/// Promotes the standby on `sim` (a fresh copy of the late archive), then
/// checks the promoted database's rows and timeline.
fn promote_and_check(a: &Archives, sim: &Arc<SimIo>, name: &str, at: u64) {
    let t = a.late_copy(name);
    promote(&t, sim).unwrap_or_else(|e| panic!("cut at {at}: promote: {e}"));
    check_promoted(&a.rows, 1, &t, sim, at);
}

/// The promoted database on `sim` holds `rows`, and its timeline file
/// names the timeline the fence of timeline `parent` names.
fn check_promoted(rows: &[Vec<u8>], parent: u32, t: &ArchiveTarget, sim: &Arc<SimIo>, at: u64) {
    let db = open_sim(sim).unwrap_or_else(|e| panic!("cut at {at}: open the promoted one: {e}"));
    assert_eq!(sorted_rows(&db, "r"), rows, "cut at {at}: the rows");
    db.close().unwrap();
    let fence = Remote::open(t, Duration::from_secs(5))
        .unwrap()
        .read_fence(parent)
        .unwrap()
        .unwrap_or_else(|| panic!("cut at {at}: no fence of timeline {parent}"));
    let file = Path::new(DIR).join(keel_archive::restore::TIMELINE_FILE);
    let text = local(sim).read_small(&file, 4096).unwrap().unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.starts_with(&format!("timeline {}\n", fence.successor)),
        "cut at {at}: {text:?}, the fence names timeline {}",
        fence.successor
    );
}

fn cut_points(total: u64) -> Vec<u64> {
    match std::env::var("KEEL_STANDBY_CUT_EVERY_OP").is_ok_and(|v| v == "1") {
        true => (0..total).collect(),
        // Spread over the run, and its last operations: a cut after the
        // command returned must find its work whole.
        false => {
            let mut cuts: Vec<u64> = (0..40)
                .map(|i| i * total / 40)
                .chain(total.saturating_sub(4)..total)
                .collect();
            // Each cut once: a cut's archive copy is named after it.
            cuts.sort_unstable();
            cuts.dedup();
            cuts
        }
    }
}

fn reboot(disk: SimDisk, at: u64) -> Arc<SimIo> {
    Arc::new(SimIo::from_disk(disk, SimConfig::seeded(1000 + at)))
}

#[test]
fn a_standby_setup_and_poll_cut_by_a_power_cut_is_never_opened_and_finishes_when_run_again() {
    let a = archives();
    let (early, late) = (target(&a.early), target(&a.late));
    // How many operations the setup and first poll take, and both polls.
    let sim = Arc::new(SimIo::new(SimConfig::seeded(1)));
    assert_eq!(follow(&early, &sim).unwrap().to, a.early_head);
    let first = sim.op_count();
    let poll = follow(&late, &sim).unwrap();
    assert_eq!(poll.to, a.late_head);
    assert!(
        poll.apply
            .as_ref()
            .is_some_and(|a| a.restartpoint.is_some())
            && poll.retired > 0,
        "the second poll applies, moves the restartpoint and removes old segments: {poll}"
    );
    let total = sim.op_count();
    assert_refused(&sim, total);
    promote_and_check(&a, &sim, "whole", total);

    let mut seen = BTreeMap::new();
    eprintln!("{total} operations");
    for at in cut_points(total) {
        let sim = Arc::new(SimIo::new(SimConfig::seeded(at)));
        sim.add_fault(FaultRule::at_op(at, Fault::PowerCut));
        let result = follow(&early, &sim).and_then(|_| follow(&late, &sim));
        if !sim.is_halted() {
            result.unwrap();
            continue;
        }
        let sim = reboot(sim.crash(), at);
        let left = state(&sim);
        assert_ne!(left, "promoted", "cut at {at}: the marker is gone");
        if left == "standby" {
            assert_refused(&sim, at);
        }
        // The command that was cut, run again, then the next one.
        if at < first {
            let to = follow(&early, &sim)
                .unwrap_or_else(|e| panic!("cut at {at} ({left}): set up again: {e}"))
                .to;
            assert_eq!(to, a.early_head, "cut at {at}");
            assert_refused(&sim, at);
        }
        let to = follow(&late, &sim)
            .unwrap_or_else(|e| panic!("cut at {at} ({left}): poll: {e}"))
            .to;
        assert_eq!(to, a.late_head, "cut at {at}");
        assert_refused(&sim, at);
        promote_and_check(&a, &sim, &format!("a-{at}"), at);
        *seen
            .entry(format!(
                "{} {left}",
                if at < first { "setup" } else { "poll" }
            ))
            .or_insert(0) += 1;
    }
    eprintln!("the cuts left {seen:?}");
    assert!(
        seen.contains_key("setup nothing")
            && seen.contains_key("setup standby")
            && seen.contains_key("poll standby"),
        "{total} operations; the cuts left {seen:?}"
    );
}

#[test]
fn a_promotion_cut_by_a_power_cut_is_refused_or_finished_and_holds_every_row() {
    let a = archives();
    let late = target(&a.late);
    let sim = Arc::new(SimIo::new(SimConfig::seeded(1)));
    assert_eq!(follow(&late, &sim).unwrap().to, a.late_head);
    // Everything the standby relies on is synced: a crash now loses
    // nothing it needs.
    let base = sim.crash();
    let sim = reboot(base.clone(), 0);
    let t = a.late_copy("whole");
    promote(&t, &sim).unwrap();
    let total = sim.op_count();
    check_promoted(&a.rows, 1, &t, &sim, total);

    let mut seen = BTreeMap::new();
    eprintln!("{total} operations");
    for at in cut_points(total) {
        let sim = Arc::new(SimIo::from_disk(base.clone(), SimConfig::seeded(at)));
        sim.add_fault(FaultRule::at_op(at, Fault::PowerCut));
        let t = a.late_copy(&format!("b-{at}"));
        let result = promote(&t, &sim);
        if !sim.is_halted() {
            result.unwrap();
            continue;
        }
        let sim = reboot(sim.crash(), at);
        let left = state(&sim);
        match left {
            "standby" => {
                assert_refused(&sim, at);
                promote(&t, &sim).unwrap_or_else(|e| panic!("cut at {at}: promote again: {e}"));
            }
            "promoted" => {
                if let Err(e) = standby::finish_promotion_with_io(
                    &t,
                    Path::new(DIR),
                    config(),
                    Duration::from_secs(5),
                    &local(&sim),
                ) {
                    // Its first log was archived before the cut: it is a
                    // promoted database already.
                    assert!(
                        e.to_string().contains("already archived"),
                        "cut at {at}: {e}"
                    );
                }
            }
            _ => panic!("cut at {at}: nothing left of a standby that was set up"),
        }
        check_promoted(&a.rows, 1, &t, &sim, at);
        *seen.entry(left).or_insert(0) += 1;
    }
    eprintln!("the cuts left {seen:?}");
    assert!(
        seen.contains_key("standby") && seen.contains_key("promoted"),
        "{total} operations; the cuts left {seen:?}"
    );
}

/// The late archive after a standby of it was promoted at its head to
/// timeline 2 and the new primary archived more commits there: its
/// folder, the rows, timeline 2's head.
fn branched(a: &Archives) -> (std::path::PathBuf, Vec<Vec<u8>>, Lsn) {
    let root = a._tmp.path().join("branched");
    copy_dir(&a.late, &root);
    let t = target(&root);
    let dir = a._tmp.path().join("promoted");
    let (s, _) = Standby::open(&t, &dir, None, config(), Duration::from_secs(5)).unwrap();
    let report = s.promote().unwrap();
    assert_eq!((report.timeline, report.switch), (2, a.late_head));
    let db = open(&dir);
    let rel = db.relation("r").unwrap().unwrap();
    let archiver = Archiver::start(db.clone(), &t, fast()).unwrap();
    let head = archived_workload(&db, archiver, rel, 3, 20, 2);
    let rows = sorted_rows(&db, "r");
    Arc::try_unwrap(db).ok().unwrap().close().unwrap();
    (root, rows, head)
}

#[test]
fn a_poll_that_follows_a_newer_timeline_cut_by_a_power_cut_finishes_when_run_again() {
    let a = archives();
    let (root, rows, head) = branched(&a);
    let copy = |name: &str| {
        let to = a._tmp.path().join(name);
        assert!(!to.exists(), "{} is taken", to.display());
        copy_dir(&root, &to);
        target(&to)
    };
    let late = target(&a.late);
    let sim = Arc::new(SimIo::new(SimConfig::seeded(1)));
    assert_eq!(follow(&late, &sim).unwrap().to, a.late_head);
    let base = sim.crash();
    let sim = reboot(base.clone(), 0);
    let t = copy("c-whole");
    let r = follow(&t, &sim).unwrap();
    assert_eq!((r.switched_to, r.to), (Some((2, a.late_head)), head), "{r}");
    let total = sim.op_count();
    promote(&t, &sim).unwrap();
    check_promoted(&rows, 2, &t, &sim, total);

    let mut seen = BTreeMap::new();
    eprintln!("{total} operations");
    for at in cut_points(total) {
        let sim = Arc::new(SimIo::from_disk(base.clone(), SimConfig::seeded(at)));
        sim.add_fault(FaultRule::at_op(at, Fault::PowerCut));
        let t = copy(&format!("c-{at}"));
        let result = follow(&t, &sim);
        if !sim.is_halted() {
            result.unwrap();
            continue;
        }
        let sim = reboot(sim.crash(), at);
        assert_eq!(state(&sim), "standby", "cut at {at}");
        assert_refused(&sim, at);
        let marker = local(&sim)
            .read_small(
                &Path::new(DIR).join(keel::datadir::layout::STANDBY_FILE),
                4096,
            )
            .unwrap()
            .unwrap();
        let marker = String::from_utf8(marker).unwrap();
        let on = match (
            marker.contains("timeline 1\n"),
            marker.contains("timeline 2\n"),
        ) {
            (true, false) => "timeline 1",
            (false, true) => "timeline 2",
            _ => panic!("cut at {at}: the marker reads {marker:?}"),
        };
        let r = follow(&t, &sim).unwrap_or_else(|e| panic!("cut at {at} ({on}): poll: {e}"));
        assert_eq!(r.to, head, "cut at {at} ({on}): {r}");
        assert_refused(&sim, at);
        promote(&t, &sim).unwrap_or_else(|e| panic!("cut at {at}: promote: {e}"));
        check_promoted(&rows, 2, &t, &sim, at);
        *seen.entry(on).or_insert(0) += 1;
    }
    eprintln!("the cuts left {seen:?}");
    assert!(
        seen.contains_key("timeline 1") && seen.contains_key("timeline 2"),
        "{total} operations; the cuts left {seen:?}"
    );
}

/// Copies every file under `from` that `to` lacks (the objects an
/// archiver uploaded meanwhile).
fn copy_new_files(from: &Path, to: &Path) -> usize {
    let mut copied = 0;
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copied += copy_new_files(&e.path(), &target);
        } else if !target.exists() {
            std::fs::copy(e.path(), target).unwrap();
            copied += 1;
        }
    }
    copied
}

/// A promotion cut by a power cut after its fence was written, while the
/// old primary's upload begun before the fence lands on the followed
/// timeline past the fence's switch (the one upload a fence cannot stop,
/// `crate::fence`): the promotion run again switches where its fence
/// says, with the rows up to there, and never reads the late records.
#[test]
fn a_promotion_run_again_after_its_fence_stops_at_the_fences_switch() {
    let a = archives();
    let early = target(&a.early);
    let sim = Arc::new(SimIo::new(SimConfig::seeded(1)));
    assert_eq!(follow(&early, &sim).unwrap().to, a.early_head);
    let base = sim.crash();
    let copy = |name: &str| {
        let to = a._tmp.path().join(name);
        copy_dir(&a.early, &to);
        (to.clone(), target(&to))
    };
    // The promotion uncut: the rows at the early head, and how many
    // operations it takes.
    let sim = reboot(base.clone(), 0);
    let (_, t) = copy("f-whole");
    promote(&t, &sim).unwrap();
    let total = sim.op_count();
    let db = open_sim(&sim).unwrap();
    let rows = sorted_rows(&db, "r");
    db.close().unwrap();
    assert!(
        rows.len() < a.rows.len(),
        "the late archive holds more rows"
    );

    // About the first cut after which the fence exists (a store request is no
    // simulated operation, so the cut falls on the next local one).
    let tries = std::cell::Cell::new(0);
    let fenced = |at: u64| {
        tries.set(tries.get() + 1);
        let sim = Arc::new(SimIo::from_disk(base.clone(), SimConfig::seeded(at)));
        sim.add_fault(FaultRule::at_op(at, Fault::PowerCut));
        let (root, t) = copy(&format!("f-{at}-{}", tries.get()));
        let _ = promote(&t, &sim);
        let fence = Remote::open(&t, Duration::from_secs(5))
            .unwrap()
            .read_fence(1)
            .unwrap();
        (fence, sim, root, t)
    };
    let (mut lo, mut hi) = (0, total);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match fenced(mid).0 {
            Some(_) => hi = mid,
            None => lo = mid + 1,
        }
    }
    // Every cut near there that leaves a fenced standby (its marker not
    // yet removed; the operations of the engine's background threads
    // move the count a little from run to run): the late upload lands,
    // and the promotion run again finishes at the fence's switch.
    let mut cut = 0;
    for at in lo.saturating_sub(40)..(lo + 40).min(total) {
        let (fence, sim, root, t) = fenced(at);
        let Some(fence) = fence else { continue };
        if !sim.is_halted() {
            continue;
        }
        assert_eq!(fence.switch, a.early_head);
        let sim = reboot(sim.crash(), at);
        if state(&sim) != "standby" {
            continue;
        }
        cut += 1;
        assert!(copy_new_files(&a.late, &root) > 0);
        promote(&t, &sim).unwrap_or_else(|e| panic!("cut at {at}: promote again: {e}"));
        let db = open_sim(&sim).unwrap();
        assert_eq!(
            sorted_rows(&db, "r"),
            rows,
            "cut at {at}: the rows at the switch"
        );
        db.close().unwrap();
        let text = local(&sim)
            .read_small(
                &Path::new(DIR).join(keel_archive::restore::TIMELINE_FILE),
                4096,
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            format!(
                "timeline {}\nfrom {:016x}\n",
                fence.successor, fence.switch.0
            ),
            "cut at {at}"
        );
    }
    assert!(cut > 0, "no cut left a fenced standby");
}
