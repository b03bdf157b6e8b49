//! [`ErrorClass`]: how a caller should react to an error. A leaf: every
//! layer's error enum classifies itself with it, and it imports nothing,
//! so the layers never import the top-level error module (which imports
//! them).

/// How a caller should react to an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request was invalid (bad argument, tuple too large, no such slot).
    /// Nothing was changed; fix the call.
    Usage,
    /// The request could not be done now but may succeed later (page full).
    Transient,
    /// Bytes read from disk failed validation (invariants 2, 9, 10).
    Corruption,
    /// The engine cannot continue safely (I/O failure, poisoned WAL, inv. 7).
    Fatal,
}
