//! What a path of the data directory is when it must be a regular file.
//!
//! Keel's own files (`LOCK`, the archiver's status file) are regular
//! files. Something else in their place is refused by name and kind, looked
//! at before it is opened: opening a FIFO for reading blocks until a writer
//! comes, and a directory, a socket or a device holds nothing Keel wrote. A
//! symbolic link to a regular file counts as one (what the engine counts as
//! a file when it lists a directory); a link to anything else, or to
//! nothing (opening it to create the file would create its target
//! wherever it points), is refused like what it points at.
//!
//! This is the one place that names the kinds, for the engine's refusals,
//! the archive's and the command-line tool's.

use std::fs::FileType;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// What `path` is when it is not a regular file or a symbolic link to
/// one, looked at without opening it: "a FIFO", "a directory", "a
/// socket", "a device", "a symbolic link to nothing", ...; `None` for a
/// regular file. The error of the look itself is returned as it is:
/// `NotFound` for a missing path, and the error of following a link whose
/// target cannot be looked at (`NotADirectory` for one through a file).
pub fn non_regular_kind(path: &Path) -> std::io::Result<Option<&'static str>> {
    let kind = std::fs::symlink_metadata(path)?.file_type();
    if !kind.is_symlink() {
        return Ok((!kind.is_file()).then(|| kind_name(kind)));
    }
    Ok(match std::fs::metadata(path) {
        Ok(target) if target.is_file() => None,
        Ok(_) => Some("a symbolic link to something other than a regular file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("a symbolic link to nothing"),
        Err(e) => return Err(e),
    })
}

/// The kind of file `t` is, with its article, as errors name it.
pub fn kind_name(t: FileType) -> &'static str {
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Each kind is named; a regular file and a link to one are not.
    #[test]
    fn kinds_are_named_without_opening() {
        let tmp = tempfile::tempdir().unwrap();
        let at = |name: &str| tmp.path().join(name);
        std::fs::write(at("file"), b"x").unwrap();
        std::fs::create_dir(at("dir")).unwrap();
        std::os::unix::fs::symlink(at("file"), at("to-file")).unwrap();
        std::os::unix::fs::symlink(at("dir"), at("to-dir")).unwrap();
        std::os::unix::fs::symlink(at("gone"), at("to-nothing")).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(at("socket")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(at("fifo"))
            .status()
            .unwrap();
        assert!(made.success());
        for (name, kind) in [
            ("file", None),
            ("fifo", Some("a FIFO")),
            ("to-file", None),
            ("dir", Some("a directory")),
            ("socket", Some("a socket")),
            (
                "to-dir",
                Some("a symbolic link to something other than a regular file"),
            ),
            ("to-nothing", Some("a symbolic link to nothing")),
        ] {
            assert_eq!(non_regular_kind(&at(name)).unwrap(), kind, "{name}");
        }
        assert_eq!(
            non_regular_kind(&at("gone")).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        std::os::unix::fs::symlink(at("file/under"), at("through-a-file")).unwrap();
        assert_eq!(
            non_regular_kind(&at("through-a-file")).unwrap_err().kind(),
            std::io::ErrorKind::NotADirectory
        );
        assert_eq!(
            non_regular_kind(Path::new("/dev/null")).unwrap(),
            Some("a device")
        );
    }
}
