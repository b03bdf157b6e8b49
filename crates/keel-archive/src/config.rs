//! Where the archive lives, and the credentials to reach it.
//!
//! An [`ArchiveTarget`] is a store plus a prefix inside it. The store is S3
//! or any S3-compatible server ([`S3Config`]), a local directory, or any
//! `object_store` implementation an embedder or a test hands in (the fault
//! injector wraps one of those). All of them go through the one
//! `ObjectStore` code path.
//!
//! ## Credentials
//!
//! Credentials come from the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, as every S3 tool reads
//! them) or from a file that only its owner can read or write (mode `0600`
//! or stricter; anything else is refused, like ssh refuses a readable key).
//! They are never arguments: a command line is visible to every user of the
//! machine. The file holds `key = value` lines:
//!
//! ```text
//! access_key_id = …
//! secret_access_key = …
//! session_token = …      (optional)
//! ```
//!
//! Secrets live in [`Secret`], whose `Debug` prints `<redacted>`, and no
//! error quotes the file's contents.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::ObjectStore;

use crate::error::{ArchiveError, Result};

/// A secret string: usable, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where S3 credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`
    /// (and the other `AWS_*` variables `object_store` reads).
    Environment,
    /// A `key = value` file readable only by its owner.
    File(PathBuf),
    /// Keys an embedder already holds (its own secret store).
    Keys {
        /// The access key id.
        access_key_id: Secret,
        /// The secret access key.
        secret_access_key: Secret,
        /// A session token, if any.
        session_token: Option<Secret>,
    },
}

/// An S3 or S3-compatible bucket.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// The endpoint of an S3-compatible server (`http://127.0.0.1:8333`);
    /// `None` for AWS itself.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when unset and not in the environment).
    pub region: Option<String>,
    /// Allow plain HTTP (a server on loopback).
    pub allow_http: bool,
    /// Where the credentials come from.
    pub credentials: Credentials,
}

/// The object store.
#[derive(Clone)]
pub enum StoreConfig {
    /// S3 or an S3-compatible server.
    S3(S3Config),
    /// A directory on a local file system (created if missing).
    Local(PathBuf),
    /// Any store (tests: `InMemory`, the fault injector).
    Custom(Arc<dyn ObjectStore>),
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::S3(c) => f.debug_tuple("S3").field(c).finish(),
            StoreConfig::Local(p) => f.debug_tuple("Local").field(p).finish(),
            StoreConfig::Custom(s) => write!(f, "Custom({s})"),
        }
    }
}

/// A store and the prefix inside it that holds one database's archive.
#[derive(Clone, Debug)]
pub struct ArchiveTarget {
    /// The store.
    pub store: StoreConfig,
    /// The prefix (`"db1"`, `"prod/orders"`); empty for the store's root.
    pub prefix: String,
}

impl ArchiveTarget {
    /// A target in `store` under `prefix`.
    pub fn new(store: StoreConfig, prefix: impl Into<String>) -> ArchiveTarget {
        ArchiveTarget {
            store,
            prefix: prefix.into(),
        }
    }

    /// Builds the store.
    pub fn build_store(&self) -> Result<Arc<dyn ObjectStore>> {
        match &self.store {
            StoreConfig::Custom(s) => Ok(s.clone()),
            StoreConfig::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    ArchiveError::Config(format!("archive directory {}: {e}", dir.display()))
                })?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| ArchiveError::Config(format!("{}: {e}", dir.display())))?;
                Ok(Arc::new(fs))
            }
            StoreConfig::S3(c) => build_s3(c),
        }
    }
}

fn build_s3(c: &S3Config) -> Result<Arc<dyn ObjectStore>> {
    use object_store::aws::AmazonS3Builder;
    let mut b = match &c.credentials {
        Credentials::Environment => AmazonS3Builder::from_env(),
        _ => AmazonS3Builder::new(),
    };
    b = b.with_bucket_name(&c.bucket).with_allow_http(c.allow_http);
    if let Some(e) = &c.endpoint {
        b = b.with_endpoint(e);
    }
    match &c.region {
        Some(r) => b = b.with_region(r),
        None if std::env::var_os("AWS_REGION").is_none() => b = b.with_region("us-east-1"),
        None => {}
    }
    let keys = match &c.credentials {
        Credentials::Environment => None,
        Credentials::File(path) => Some(read_credentials_file(path)?),
        Credentials::Keys {
            access_key_id,
            secret_access_key,
            session_token,
        } => Some((
            access_key_id.clone(),
            secret_access_key.clone(),
            session_token.clone(),
        )),
    };
    if let Some((id, secret, token)) = keys {
        b = b
            .with_access_key_id(id.expose())
            .with_secret_access_key(secret.expose());
        if let Some(t) = token {
            b = b.with_token(t.expose());
        }
    }
    // The builder's error names the setting, not its value.
    let s3 = b
        .build()
        .map_err(|e| ArchiveError::Config(format!("S3 bucket {}: {e}", c.bucket)))?;
    Ok(Arc::new(s3))
}

/// Reads a credentials file, refusing one that others may read or write.
pub fn read_credentials_file(path: &Path) -> Result<(Secret, Secret, Option<Secret>)> {
    let fail = |reason: String| ArchiveError::Credentials {
        path: path.to_path_buf(),
        reason,
    };
    check_owner_only(path).map_err(&fail)?;
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let (mut id, mut secret, mut token) = (None, None, None);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(fail(format!("line {}: expected `key = value`", n + 1)));
        };
        let v = Secret::new(v.trim());
        match k.trim() {
            "access_key_id" => id = Some(v),
            "secret_access_key" => secret = Some(v),
            "session_token" => token = Some(v),
            other => return Err(fail(format!("line {}: unknown key {other:?}", n + 1))),
        }
    }
    match (id, secret) {
        (Some(id), Some(secret)) => Ok((id, secret, token)),
        _ => Err(fail(
            "needs both access_key_id and secret_access_key".into(),
        )),
    }
}

#[cfg(unix)]
fn check_owner_only(path: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:03o} lets others read or write it; make it 0600 (chmod 600)"
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path) -> std::result::Result<(), String> {
    Ok(())
}
