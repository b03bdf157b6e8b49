//! Relations and the heap: tuples in slotted pages, reached through the
//! buffer pool, every change logged before it is applied.
//!
//! - [`apply`]: applying page-changing records to pages, the single code
//!   path for doing, redoing and compensating a change.

pub mod apply;
