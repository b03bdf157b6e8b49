//! The archiver against a real, separately running S3-compatible server
//! (SeaweedFS in CI: `scripts/seaweedfs.sh start`), the same checks as
//! against the in-process server: a workload archived equals the log,
//! continuity across a restart, a second writer stopped with nothing
//! overwritten, and create-only puts.
//!
//! Runs when `KEEL_TEST_S3` names the server and bucket as
//! `http://HOST:PORT/BUCKET`; the credentials are `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY` from the environment, as for any S3 client.
//! Unset, each test returns at once (the in-process server's tests in
//! s3.rs cover the protocol without anything installed). Each test writes
//! under a prefix of its own, unique to the run, so reruns against one
//! server never meet an earlier run's objects.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure by design

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use keel_archive::{ArchiveTarget, Credentials, S3Config, StoreConfig};

/// The target `KEEL_TEST_S3` names, under a prefix unique to this run and
/// `test`; `None` when it is unset.
fn target(test: &str) -> Option<ArchiveTarget> {
    let spec = std::env::var("KEEL_TEST_S3").ok()?;
    let (endpoint, bucket) = spec
        .trim_end_matches('/')
        .rsplit_once('/')
        .filter(|(e, b)| e.contains("://") && !b.is_empty())
        .unwrap_or_else(|| panic!("KEEL_TEST_S3={spec:?}: expected http://HOST:PORT/BUCKET"));
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(
            std::env::var_os(var).is_some(),
            "KEEL_TEST_S3 is set but {var} is not"
        );
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let s3 = S3Config {
        bucket: bucket.into(),
        endpoint: Some(endpoint.into()),
        region: None,
        allow_http: endpoint.starts_with("http://"),
        credentials: Credentials::Environment,
    };
    let prefix = format!("keel-test-{}-{nanos}/{test}", std::process::id());
    Some(ArchiveTarget::new(StoreConfig::S3(s3), prefix))
}

macro_rules! against_the_server {
    ($name:ident, $check:expr) => {
        #[test]
        fn $name() {
            match target(stringify!($name)) {
                Some(t) => $check(&t),
                None => eprintln!("KEEL_TEST_S3 is not set: {} not run", stringify!($name)),
            }
        }
    };
}

against_the_server!(a_workload_archived_equals_the_log, |t| {
    archive_and_compare(t, fast())
});
against_the_server!(
    archiving_continues_after_a_restart,
    continues_after_a_restart
);
against_the_server!(
    a_second_writer_is_stopped_and_nothing_is_overwritten,
    second_writer_is_stopped
);
against_the_server!(
    create_only_puts_tell_a_retry_from_another_writer,
    create_only_puts
);
against_the_server!(a_backup_restores_every_row, backup_and_restore);
against_the_server!(
    a_large_file_goes_up_in_parts_and_restores,
    streamed_backup_and_restore
);
against_the_server!(
    a_point_in_time_restore_starts_and_follows_a_timeline,
    restore_to_a_point_and_follow_the_timeline
);
against_the_server!(
    completed_segments_are_compacted_while_archiving,
    the_archiver_compacts_completed_segments
);
against_the_server!(an_archive_is_compacted_afterwards, catch_up_compaction);
against_the_server!(
    cleanup_removes_only_folders_without_a_manifest,
    cleanup_removes_only_incomplete_backups
);
against_the_server!(
    a_standby_follows_promotes_and_fences_the_old_primary,
    common::standby::standby_follows_and_promotes
);
