//! Keel: a crash-safe page, log and transaction layer for building databases.
//!
//! Keel stores tuples in slotted heap pages, reaches them through a buffer
//! pool, and makes every change durable through a write-ahead log before the
//! page that holds it may reach the disk. The layers, from the bottom up, and
//! the numbered invariants each one enforces are described in
//! `ARCHITECTURE.md`; the on-disk formats in `docs/storage.md`.
//!
//! This crate contains no `unsafe` code: everything that needs it (io_uring,
//! aligned buffers) lives in `keel-io`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Module essays link the private items whose rules they state; the links
// resolve in `cargo doc --document-private-items`, the documentation for
// whoever works on Keel itself.
#![allow(rustdoc::private_intra_doc_links)]

pub mod backup;
pub mod btree;
pub mod buffer;
pub mod checksum;
pub mod datadir;
mod db;
mod ddl;
mod dir_mode;
pub mod docs;
mod engine;
pub mod error;
pub mod fsm;
#[cfg(feature = "fuzz-targets")]
#[doc(hidden)]
pub mod fuzz_targets;
pub mod heap;
pub mod lock;
pub mod page;
pub mod recovery;
pub mod standby;
mod storage;
pub use storage::images as page_images;
mod sync;
pub mod txn;
pub mod types;
pub mod wal;

pub use db::{Config, Database, MIN_FRAMES, RecoveryCheckpoint, RelationInfo};
pub use error::{
    DbError, Error, ErrorCause, ErrorClass, PageError, ParseIdError, Result, WalError,
};
pub use heap::RelationKind;
pub use recovery::{CheckpointReport, RecoveryReport};
pub use txn::{Range, Scan, TREE_READ_ESCALATE_AT, Transaction};
pub use types::{Lsn, PageId, RelationId, SlotId, TupleId, TxnId};

/// The README's embedding example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeExample;
