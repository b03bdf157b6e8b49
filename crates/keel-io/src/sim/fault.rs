//! Fault injection rules for the simulator.
//!
//! A [`FaultRule`] says *when* (a [`Trigger`]: at one operation number, on
//! every matching operation, or with a probability), *on what* (optionally
//! one operation kind and/or one file class) and *which* [`Fault`]. Rules are
//! checked in order before an operation runs; the first that matches and
//! whose fault makes sense for the operation fires. Operation numbers count
//! every request submitted to the backend, from 0 ([`super::SimIo::op_count`]
//! is the number the next request will get).

use crate::request::{FileClass, OpKind};

/// A failure to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with EIO. Applies to reads, writes, allocate,
    /// set_len and sync_dir, where it has no effect, and to every file
    /// sync (fsync, fdatasync, the start of writeback, syncfs), where it is
    /// a [`Fault::SyncFailure`] that reports EIO: Linux marks the pages it
    /// could not write clean, so the unsynced writes it covered are
    /// resolved as in a crash and a later sync succeeds without them. A
    /// durable write fails either at its write (no effect) or at its sync
    /// (as a sync failure), drawn from the seed.
    Eio,
    /// The operation fails with ENOSPC. Applies to writes, allocate,
    /// set_len, open/create_dir that would create an entry and sync_dir,
    /// where it has no effect, and to every file sync as [`Fault::Eio`]
    /// does, reporting ENOSPC: a file system that allocates blocks only at
    /// writeback (delayed allocation, thin provisioning) meets a full disk
    /// in fsync, and drops the pages it could not place.
    NoSpace,
    /// A write transfers at most `max_bytes` in its first system call; the
    /// backend resubmits the rest as real backends do. With `max_bytes: 0`
    /// no progress is made and the write fails with `ShortWrite`.
    ShortWrite {
        /// Bytes the first attempt accepts.
        max_bytes: usize,
    },
    /// An fsync / fdatasync / durable write / start of writeback / sync_dir /
    /// syncfs fails with EIO *after* the kernel dropped the dirty state
    /// (a durable write's bytes always reached the kernel first): each
    /// unsynced write of the file (of every file, for syncfs) is resolved
    /// as in a crash (kept, dropped or torn) and is no longer pending, so a
    /// retried fsync would succeed without making it durable — the
    /// "fsyncgate" behaviour invariant 7 guards against. Reads still see
    /// the new data. A failed sync_dir makes nothing durable.
    SyncFailure,
    /// A read succeeds but returns its bytes with one bit flipped (the
    /// lowest bit of the byte in the middle of what it read): nothing on
    /// disk changes, so a read of the same bytes again returns them whole.
    /// What a checksum must catch (a bad cable, controller or memory).
    FlipBit,
    /// Power is cut before this operation: it and every later one fail with
    /// `ShutDown`; [`super::SimIo::crash`] then yields the disk.
    PowerCut,
    /// The process is killed before this operation: it and every later one
    /// fail with `ShutDown`, as for a power cut, but what the process wrote
    /// stays in the kernel: [`super::SimIo::kill`] then yields the kernel
    /// (unsynced writes still pending) to boot the next process from.
    Kill,
}

impl Fault {
    /// Whether the fault can happen to an operation of this kind.
    pub fn applies_to(self, op: OpKind) -> bool {
        use OpKind::*;
        match self {
            Fault::Eio => matches!(
                op,
                Read | Write
                    | WriteV
                    | DurableWrite
                    | Fsync
                    | Fdatasync
                    | Writeback
                    | Allocate
                    | SetLen
                    | SyncDir
                    | SyncFs
            ),
            Fault::NoSpace => matches!(
                op,
                Write
                    | WriteV
                    | DurableWrite
                    | Fsync
                    | Fdatasync
                    | Writeback
                    | Allocate
                    | SetLen
                    | Open
                    | CreateDir
                    | SyncDir
                    | SyncFs
            ),
            Fault::ShortWrite { .. } => matches!(op, Write | WriteV | DurableWrite),
            Fault::SyncFailure => matches!(
                op,
                Fsync | Fdatasync | DurableWrite | Writeback | SyncDir | SyncFs
            ),
            Fault::FlipBit => matches!(op, Read),
            Fault::PowerCut | Fault::Kill => true,
        }
    }
}

/// When a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// On the operation with this number only.
    AtOp(u64),
    /// On every matching operation.
    Always,
    /// On each matching operation with this probability, in millionths,
    /// drawn from the simulator's seeded generator.
    PerMillion(u32),
}

/// One fault injection rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRule {
    /// When.
    pub trigger: Trigger,
    /// What.
    pub fault: Fault,
    /// Only on this kind of operation.
    pub op: Option<OpKind>,
    /// Only on files of this class.
    pub class: Option<FileClass>,
}

impl FaultRule {
    /// Fires on operation number `n`.
    pub const fn at_op(n: u64, fault: Fault) -> FaultRule {
        FaultRule {
            trigger: Trigger::AtOp(n),
            fault,
            op: None,
            class: None,
        }
    }

    /// Fires on every matching operation.
    pub const fn always(fault: Fault) -> FaultRule {
        FaultRule {
            trigger: Trigger::Always,
            fault,
            op: None,
            class: None,
        }
    }

    /// Fires with probability `p` (clamped to 0..=1) on matching operations.
    pub fn with_probability(p: f64, fault: Fault) -> FaultRule {
        let per_million = (p.clamp(0.0, 1.0) * 1_000_000.0) as u32;
        FaultRule {
            trigger: Trigger::PerMillion(per_million),
            fault,
            op: None,
            class: None,
        }
    }

    /// Restricts the rule to one kind of operation.
    pub const fn on_op(mut self, op: OpKind) -> FaultRule {
        self.op = Some(op);
        self
    }

    /// Restricts the rule to one file class.
    pub const fn on_class(mut self, class: FileClass) -> FaultRule {
        self.class = Some(class);
        self
    }

    pub(crate) fn matches(&self, op: OpKind, class: FileClass) -> bool {
        self.op.is_none_or(|k| k == op)
            && self.class.is_none_or(|c| c == class)
            && self.fault.applies_to(op)
    }
}
