//! The archiver over the S3 protocol: an in-process S3 server (`s3s` with
//! the file-system backend `s3s-fs`) on a loopback port, with signature
//! checking on, so requests are signed and verified as a real server
//! does, and `If-None-Match: *` is honoured. Needs nothing installed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;

use std::time::Duration;

use common::*;
use keel_archive::{
    ArchiveError, ArchiveTarget, Archiver, Credentials, Remote, S3Config, Secret, StoreConfig,
};

const ACCESS_KEY: &str = "keel-test-access";
const SECRET_KEY: &str = "keel-test-secret-0123456789";
const BUCKET: &str = "archive";

/// An S3 server on a loopback port, serving a temporary directory; stops
/// when dropped.
struct Server {
    endpoint: String,
    _root: tempfile::TempDir,
    rt: Option<tokio::runtime::Runtime>,
}

impl Server {
    fn start() -> Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        rt.spawn(async move {
            let http =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let conn = http
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(conn);
            }
        });
        Server {
            endpoint,
            _root: root,
            rt: Some(rt),
        }
    }

    fn target(&self, secret: &str, prefix: &str) -> ArchiveTarget {
        let s3 = S3Config {
            bucket: BUCKET.into(),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            allow_http: true,
            credentials: Credentials::Keys {
                access_key_id: Secret::new(ACCESS_KEY),
                secret_access_key: Secret::new(secret),
                session_token: None,
            },
        };
        ArchiveTarget::new(StoreConfig::S3(s3), prefix)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[test]
fn a_workload_archived_over_s3_equals_the_log() {
    let server = Server::start();
    archive_and_compare(&server.target(SECRET_KEY, "db1"), fast());
}

#[test]
fn a_backup_over_s3_restores_every_row() {
    let server = Server::start();
    backup_and_restore(&server.target(SECRET_KEY, "backup"));
}

#[test]
fn a_large_file_goes_up_over_s3_in_parts_and_restores() {
    let server = Server::start();
    streamed_backup_and_restore(&server.target(SECRET_KEY, "streamed"));
}

#[test]
fn a_point_in_time_restore_over_s3_starts_and_follows_a_timeline() {
    let server = Server::start();
    restore_to_a_point_and_follow_the_timeline(&server.target(SECRET_KEY, "pitr"));
}

/// Create-only puts over the wire: a retried upload, and another writer.
#[test]
fn create_only_puts_tell_a_retry_from_another_writer() {
    let server = Server::start();
    create_only_puts(&server.target(SECRET_KEY, "p"));
}

#[test]
fn archiving_over_s3_continues_after_a_restart() {
    let server = Server::start();
    continues_after_a_restart(&server.target(SECRET_KEY, "restart"));
}

#[test]
fn a_second_writer_over_s3_is_stopped_and_nothing_is_overwritten() {
    let server = Server::start();
    second_writer_is_stopped(&server.target(SECRET_KEY, "split"));
}

/// A wrong secret is refused by the server's signature check; the error
/// names the request and never the secret.
#[test]
fn a_bad_signature_is_refused_and_the_secret_never_printed() {
    let server = Server::start();
    let wrong = "wrong-secret-do-not-print";
    let target = server.target(wrong, "db");
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let e = Archiver::start(db, &target, fast()).unwrap_err();
    let text = format!("{e} {e:?} {target:?}");
    assert!(!text.contains(wrong), "secret printed: {text}");
    assert!(!text.contains(SECRET_KEY), "secret printed: {text}");
    assert!(matches!(e, ArchiveError::Store { op: "list", .. }), "{e}");
}

/// Credentials from a file: refused unless only its owner may read it.
#[cfg(unix)]
#[test]
fn a_credentials_file_must_be_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!("# keel archive\naccess_key_id = {ACCESS_KEY}\nsecret_access_key = {SECRET_KEY}\n"),
    )
    .unwrap();
    let mut target = server.target(SECRET_KEY, "f");
    if let StoreConfig::S3(c) = &mut target.store {
        c.credentials = Credentials::File(file.clone());
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Remote::open(&target, Duration::from_secs(5)).unwrap_err();
    assert!(matches!(e, ArchiveError::Credentials { .. }), "{e}");
    assert!(e.to_string().contains("chmod 600") && !e.to_string().contains(SECRET_KEY));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let remote = Remote::open(&target, Duration::from_secs(5)).unwrap();
    assert!(remote.list_chunks(1).unwrap().is_empty());
}

#[test]
fn the_archiver_over_s3_compacts_completed_segments() {
    let server = Server::start();
    the_archiver_compacts_completed_segments(&server.target(SECRET_KEY, "compact"));
}

#[test]
fn catch_up_compaction_over_s3() {
    let server = Server::start();
    catch_up_compaction(&server.target(SECRET_KEY, "catch-up"));
}

#[test]
fn cleanup_over_s3_removes_only_incomplete_backups() {
    let server = Server::start();
    cleanup_removes_only_incomplete_backups(&server.target(SECRET_KEY, "cleanup"));
}

#[test]
fn a_standby_over_s3_follows_promotes_and_fences_the_old_primary() {
    let server = Server::start();
    common::standby::standby_follows_and_promotes(&server.target(SECRET_KEY, "standby"));
}
