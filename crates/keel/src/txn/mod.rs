//! Transactions: their life ([`transaction`]: a state enum with one end
//! path, the public [`Transaction`], system transactions for DDL), their
//! operations on trees ([`keys`]), their undo log ([`undo`]) and the
//! transaction table ([`table`]: ids and the log positions checkpoints
//! record).
//!
//! A transaction drives the heap and the trees: each change goes through
//! the heap ([`crate::heap`]) or a tree ([`crate::btree`]), which applies
//! it to a page under the storage context's change path and describes its
//! undo; the transaction keeps that description on its undo log until it
//! ends. Its locks are the lock manager's ([`crate::lock`]).

pub mod keys;
pub(crate) mod table;
pub(crate) mod transaction;
pub(crate) mod undo;

pub use keys::Range;
pub(crate) use table::{TxnSlot, TxnTable};
pub use transaction::{Scan, TREE_READ_ESCALATE_AT, Transaction};
