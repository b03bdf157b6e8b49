//! The write-ahead log.

pub mod payload;
pub mod record;
