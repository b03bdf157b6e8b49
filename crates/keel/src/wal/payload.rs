//! Typed payloads of WAL records.
