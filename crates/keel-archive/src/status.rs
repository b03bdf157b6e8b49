//! The archiver's published progress: a small text file in the data
//! directory, so that `keel stats` (a separate process that opens the
//! directory after the server has closed it, or looks at it beside a
//! running one) reports how far the archive got without contacting the
//! store.
//!
//! Why a file and not the archive itself: `keel stats` must work with no
//! credentials and no network, and must say *why* the archive lags (the
//! last error), which only the archiver knows. The archive remains the
//! truth: the file is advisory, and a restore never reads it.
//!
//! ## Format (`archive-status`, version 1)
//!
//! UTF-8 lines `key value`, the first line `keel-archive-status 1`:
//!
//! | key | value |
//! |-----|-------|
//! | `state` | `ok`, `broken` (uploads failing, retrying), `failed` (stopped on an error), `stopped` |
//! | `policy` | `keep-going`, or `stall <max_unarchived_bytes> <timeout_ms>` |
//! | `archived_lsn` | every durable record below it is archived |
//! | `durable_lsn` | the log's durable end when written |
//! | `oldest_unarchived_commit_us` | commit time (µs since the epoch) of the oldest commit read from the log and not yet archived; `0`: none |
//! | `updated_us` | when the file was written (µs since the epoch) |
//! | `chunks`, `retries` | counters |
//! | `compacted_objects`, `chunks_compacted` | the compactor's counters: objects written, chunks they replaced (absent in files of archivers before compaction: 0) |
//! | `last_error` | the most recent error on one line (absent: none) |
//! | `compaction_error` | the compactor's most recent error on one line (absent: none); archiving goes on regardless |
//!
//! Unknown keys are ignored (a newer archiver may add some); a missing
//! key (but the optional ones above), a bad number or another first line
//! is an error naming the line.
//!
//! ## Rules
//!
//! - Its presence marks a data directory whose log an archive follows:
//!   `Database::open` then holds its log from the oldest segment
//!   (`WalConfig::hold_at_open`), so that its
//!   checkpoints retire nothing the archive may lack; the next archiver
//!   moves the hold. Removing the file ends that (the archive is then no
//!   longer followed, and a later archiver may meet a gap, which it
//!   reports, never skips).
//! - A restore writes it in the restored directory (`stopped`,
//!   `archived_lsn` and `durable_lsn` the stop), synced, before the
//!   control file is put in place ([`mod@crate::restore`], step 7): the
//!   restored database's log is held from its first open until an
//!   archiver continues it.
//! - The archive's end is the truth: `archived_lsn` is advisory and may be
//!   behind it (the file is written after the upload), never ahead.
//! - Written through the database's own I/O backend (`Database::io`, so
//!   the simulator's disk in crash tests) to `archive-status.tmp`, then
//!   its data synced (`fdatasync`), then renamed over `archive-status`: a
//!   reader sees the old or the new file whole, never a mix, and a power
//!   cut never leaves the name over bytes that were not written (a rename
//!   may reach the disk before unsynced data does).
//! - Synced with its directory once, when an archiver starts (before
//!   anything ships): from then on a crash may leave an older file, never
//!   none, so every open holds the log. Later renames are not synced:
//!   after a power cut the file may be older than the archive (never newer
//!   than what the archiver saw). It is rewritten when the state changes
//!   and at most about once a second while progress is made (one
//!   `fdatasync` of a small file each time).
//! - `last_error` never carries credentials: `ArchiveError` never formats
//!   them, and the line is passed through [`redact`] (the user and
//!   password of a URL, and its query, are cut) before it is written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel::types::Lsn;
use keel_io::{AsyncIo, FileClass, IoBuf, OpenOptions};

use crate::error::{ArchiveError, Result};

/// The status file's name in the data directory (spelled by the data
/// directory's layout: an open holds the log while it is there).
pub const STATUS_FILE: &str = keel::datadir::layout::ARCHIVE_STATUS_FILE;
const MAGIC: &str = "keel-archive-status 1";

/// The archiver's state as published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveState {
    /// The last upload landed.
    Ok,
    /// Uploads fail and are being retried; the archive lags.
    Broken,
    /// The archiver stopped on an error.
    Failed,
    /// The archiver was stopped.
    Stopped,
}

impl ArchiveState {
    /// The word in the file and in `keel stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveState::Ok => "ok",
            ArchiveState::Broken => "broken",
            ArchiveState::Failed => "failed",
            ArchiveState::Stopped => "stopped",
        }
    }

    fn parse(s: &str) -> Option<ArchiveState> {
        Some(match s {
            "ok" => ArchiveState::Ok,
            "broken" => ArchiveState::Broken,
            "failed" => ArchiveState::Failed,
            "stopped" => ArchiveState::Stopped,
            _ => return None,
        })
    }
}

/// One published status (module table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedStatus {
    /// The archiver's state.
    pub state: ArchiveState,
    /// The policy, as written (`keep-going` or `stall BYTES MS`).
    pub policy: String,
    /// Every durable record below it is archived.
    pub archived_lsn: Lsn,
    /// The durable end when written.
    pub durable_lsn: Lsn,
    /// Commit time of the oldest unarchived commit the archiver has read.
    pub oldest_unarchived_commit_us: Option<u64>,
    /// When it was written.
    pub updated_us: u64,
    /// Chunks uploaded.
    pub chunks: u64,
    /// Uploads retried.
    pub retries: u64,
    /// The most recent error.
    pub last_error: Option<String>,
    /// Compacted objects its compactor wrote.
    pub compacted_objects: u64,
    /// Chunks they replaced, deleted.
    pub chunks_compacted: u64,
    /// The compactor's most recent error.
    pub compaction_error: Option<String>,
}

impl PublishedStatus {
    /// Durable log bytes not archived when it was written.
    pub fn lag_bytes(&self) -> u64 {
        self.durable_lsn.0.saturating_sub(self.archived_lsn.0)
    }

    /// The file's text.
    pub fn encode(&self) -> String {
        let mut s = format!(
            "{MAGIC}\nstate {}\npolicy {}\narchived_lsn {}\ndurable_lsn {}\n\
             oldest_unarchived_commit_us {}\nupdated_us {}\nchunks {}\nretries {}\n\
             compacted_objects {}\nchunks_compacted {}\n",
            self.state.as_str(),
            self.policy,
            self.archived_lsn.0,
            self.durable_lsn.0,
            self.oldest_unarchived_commit_us.unwrap_or(0),
            self.updated_us,
            self.chunks,
            self.retries,
            self.compacted_objects,
            self.chunks_compacted,
        );
        for (key, e) in [
            ("last_error", &self.last_error),
            ("compaction_error", &self.compaction_error),
        ] {
            if let Some(e) = e {
                s.push_str(key);
                s.push(' ');
                s.push_str(&one_line(e));
                s.push('\n');
            }
        }
        s
    }

    /// Parses the file's text; `path` names it in errors.
    pub fn decode(path: &Path, text: &str) -> Result<PublishedStatus> {
        let bad = |line: usize, reason: String| ArchiveError::StatusFormat {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad(1, format!("the first line is not {MAGIC:?}")));
        }
        let mut fields = std::collections::HashMap::new();
        for (i, l) in lines.enumerate() {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            fields.insert(k, (i + 2, v));
        }
        let get = |k: &str| {
            fields
                .get(k)
                .copied()
                .ok_or_else(|| bad(0, format!("no {k:?} line")))
        };
        let num = |k: &str| -> Result<u64> {
            let (line, v) = get(k)?;
            v.parse()
                .map_err(|_| bad(line, format!("{k} {v:?} is not a number")))
        };
        let optional = |k: &str| -> Result<u64> {
            match fields.contains_key(k) {
                true => num(k),
                false => Ok(0),
            }
        };
        let (line, state) = get("state")?;
        let state = ArchiveState::parse(state)
            .ok_or_else(|| bad(line, format!("unknown state {state:?}")))?;
        let oldest = num("oldest_unarchived_commit_us")?;
        Ok(PublishedStatus {
            state,
            policy: get("policy")?.1.to_string(),
            archived_lsn: Lsn(num("archived_lsn")?),
            durable_lsn: Lsn(num("durable_lsn")?),
            oldest_unarchived_commit_us: (oldest != 0).then_some(oldest),
            updated_us: num("updated_us")?,
            chunks: num("chunks")?,
            retries: num("retries")?,
            last_error: fields.get("last_error").map(|(_, v)| v.to_string()),
            compacted_objects: optional("compacted_objects")?,
            chunks_compacted: optional("chunks_compacted")?,
            compaction_error: fields.get("compaction_error").map(|(_, v)| v.to_string()),
        })
    }
}

fn one_line(s: &str) -> String {
    redact(&s.replace(['\n', '\r'], " "))
}

/// `s` with what a URL may carry that is not for every reader removed:
/// the user and password before an `@` in its authority, and its query
/// (where presigned requests carry signatures and credential scopes).
/// `ArchiveError` never formats credentials; this covers text from below
/// it (an HTTP client's error naming the request URL).
pub fn redact(s: &str) -> String {
    s.split(' ')
        .map(|word| {
            let Some(scheme_end) = word.find("://") else {
                return word.to_string();
            };
            let (scheme, rest) = word.split_at(scheme_end + 3);
            let rest = match rest.find('?') {
                Some(q) => format!("{}?<redacted>", &rest[..q]),
                None => rest.to_string(),
            };
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}<redacted>{}", &rest[at..]),
                None => format!("{scheme}{rest}"),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The status file of data directory `dir`.
pub fn status_path(dir: &Path) -> PathBuf {
    dir.join(STATUS_FILE)
}

/// Writes `status` to `dir`'s status file through `io`, the database's own
/// backend (module rules: temporary file, synced, renamed). `durable`: the
/// directory is synced after the rename too (the archiver's first write,
/// which marks the directory as followed).
pub fn write_status(
    io: &Arc<dyn AsyncIo>,
    dir: &Path,
    status: &PublishedStatus,
    durable: bool,
) -> Result<()> {
    let path = status_path(dir);
    let tmp = dir.join(format!("{STATUS_FILE}.tmp"));
    let fail = |op| {
        let path = path.clone();
        move |source: keel_io::IoError| ArchiveError::StatusIo {
            path,
            op,
            source: Box::new(source),
        }
    };
    let opts = OpenOptions::new(FileClass::Other)
        .write(true)
        .create(true)
        .truncate(true);
    let fh = io.open(&tmp, opts).wait().map_err(fail("create"))?;
    let written = io
        .write_at(fh, 0, IoBuf::from(status.encode().into_bytes()))
        .wait()
        .map(|_| ())
        .map_err(fail("write"))
        .and_then(|()| {
            match durable {
                true => io.fsync(fh),
                false => io.fdatasync(fh),
            }
            .wait()
            .map_err(fail("sync"))
        });
    let closed = io.close(fh).wait().map_err(fail("close"));
    written?;
    closed?;
    io.rename(&tmp, &path).wait().map_err(fail("rename"))?;
    if durable {
        io.sync_dir(dir)
            .wait()
            .map_err(fail("sync its directory"))?;
    }
    Ok(())
}

/// The largest status file read: far more than any archiver writes.
const MAX_STATUS_BYTES: u64 = 1 << 20;

/// Reads `dir`'s status file; `None` when no archiver ever published one.
/// Anything but a regular file (or a symbolic link to one) of at most
/// 1 MiB is refused before it is opened, naming what it is (a FIFO would
/// hold the read until a writer came; [`keel::datadir::non_regular_kind`]).
pub fn read_status(dir: &Path) -> Result<Option<PublishedStatus>> {
    let path = status_path(dir);
    let refuse = |reason: String| ArchiveError::StatusIo {
        path: path.clone(),
        op: "read",
        source: reason.into(),
    };
    if let Ok(Some(kind)) = keel::datadir::non_regular_kind(&path) {
        return Err(refuse(format!("{kind}, not a regular file")));
    }
    match std::fs::metadata(&path) {
        Ok(m) if m.len() > MAX_STATUS_BYTES => {
            return Err(refuse(format!(
                "{} bytes, more than any status file ({MAX_STATUS_BYTES})",
                m.len()
            )));
        }
        _ => {}
    }
    match std::fs::read_to_string(&path) {
        Ok(text) => PublishedStatus::decode(&path, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ArchiveError::StatusIo {
            path,
            op: "read",
            source: Box::new(source),
        }),
    }
}

/// Microseconds since the Unix epoch now.
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// docs/storage.md's example status file decodes, and it shows exactly
    /// the keys `encode` writes, in the same order.
    #[test]
    fn the_documented_example_is_the_format() {
        let doc = include_str!("../../../docs/storage.md");
        let section = &doc[doc.find("### Retention and archive status").unwrap()..];
        let start = section.find(MAGIC).unwrap();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let st = PublishedStatus::decode(Path::new("docs"), example).unwrap();
        assert_eq!(st.state, ArchiveState::Broken);
        assert!(st.lag_bytes() > 0 && st.last_error.is_some());
        let keys = |text: &str| -> Vec<String> {
            text.lines()
                .skip(1)
                .map(|l| l.split(' ').next().unwrap().to_string())
                .collect()
        };
        assert_eq!(keys(example), keys(&st.encode()));
    }

    #[test]
    fn a_status_round_trips_and_bad_files_name_the_line() {
        let st = PublishedStatus {
            state: ArchiveState::Broken,
            policy: "stall 1048576 5000".into(),
            archived_lsn: Lsn(4096),
            durable_lsn: Lsn(9000),
            oldest_unarchived_commit_us: Some(17),
            updated_us: 99,
            chunks: 3,
            retries: 4,
            last_error: Some("object store: put\nx".into()),
            compacted_objects: 2,
            chunks_compacted: 9,
            compaction_error: None,
        };
        let p = Path::new("d/archive-status");
        let back = PublishedStatus::decode(p, &st.encode()).unwrap();
        assert_eq!(back.last_error.as_deref(), Some("object store: put x"));
        assert_eq!(back.lag_bytes(), 4904);
        assert_eq!(
            PublishedStatus {
                last_error: st.last_error.clone(),
                ..back
            },
            st
        );
        let older: String = st
            .encode()
            .lines()
            .filter(|l| !l.starts_with("compacted_objects") && !l.starts_with("chunks_compacted"))
            .map(|l| format!("{l}\n"))
            .collect();
        let back = PublishedStatus::decode(p, &older).unwrap();
        assert_eq!((back.compacted_objects, back.chunks_compacted), (0, 0));
        let text = st
            .encode()
            .replace("chunks_compacted 9", "chunks_compacted x");
        let err = PublishedStatus::decode(p, &text).unwrap_err().to_string();
        assert!(err.contains("chunks_compacted"), "{err}");
        let text = st.encode().replace("chunks 3", "chunks three");
        let err = PublishedStatus::decode(p, &text).unwrap_err().to_string();
        assert!(err.contains("line 8") && err.contains("chunks"), "{err}");
        let leaky = PublishedStatus {
            last_error: Some(
                "Error performing PUT http://AKIA:s3cr3t@host:8333/b/k?X-Amz-Signature=ab12 \
                 in 1s, to s3://bucket/p"
                    .into(),
            ),
            ..st.clone()
        };
        let text = leaky.encode();
        assert!(!text.contains("s3cr3t") && !text.contains("AKIA"), "{text}");
        assert!(!text.contains("ab12"), "{text}");
        assert!(
            text.contains("http://<redacted>@host:8333/b/k?<redacted> in 1s, to s3://bucket/p"),
            "{text}"
        );
        let err = PublishedStatus::decode(p, "hello\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    /// A FIFO or a directory where the status file belongs is refused at
    /// once, naming it, never opened (a FIFO's open would wait).
    #[test]
    fn a_status_file_that_is_not_a_regular_file_is_refused_without_waiting() {
        let tmp = tempfile::tempdir().unwrap();
        let path = status_path(tmp.path());
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = tmp.path().to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(read_status(&dir).map(|s| s.is_some()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("read_status waits on a FIFO");
        let e = got.unwrap_err().to_string();
        assert!(e.contains("a FIFO, not a regular file"), "{e}");
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let e = read_status(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("a directory, not a regular file"), "{e}");
        std::fs::remove_dir(&path).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("gone"), &path).unwrap();
        let e = read_status(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("a symbolic link to nothing"), "{e}");
    }
}
