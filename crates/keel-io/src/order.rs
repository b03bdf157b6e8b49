//! Sync ordering: an fsync must not complete before the writes submitted
//! before it to the same file.
//!
//! Neither backend executes requests in order (the thread pool runs them on
//! several workers; io_uring completes them in any order), so each open file
//! carries a [`SyncOrder`]. Every write-like request (write, writev, allocate,
//! set_len) takes a sequence number when it is admitted and is "in flight"
//! until it completes. A sync request records a barrier — the next sequence
//! number at its admission — and may start only when no write with a smaller
//! number is still in flight; until then it is held here, and the completion
//! of the last blocking write releases it.
//!
//! This is per file and does not stall unrelated files or reads (unlike
//! IOSQE_IO_DRAIN, which stalls the whole ring). Writes admitted after a sync
//! need not wait for it: they may be covered by it or not, which is harmless.
//!
//! The writes in flight are a queue sorted by sequence number: numbers are
//! handed out in increasing order, so a new one goes at the back, and writes
//! mostly complete in order, so the one that leaves is nearly always at the
//! front (found by binary search otherwise; the queue is bounded by the
//! queue depth). The queue keeps its allocation when it empties, so the
//! steady single-writer path (one write, then its sync) allocates nothing.

use std::collections::VecDeque;

pub(crate) struct SyncOrder<H> {
    next_seq: u64,
    /// Sequence numbers of the writes in flight, ascending.
    in_flight: VecDeque<u64>,
    held: VecDeque<(u64, H)>,
}

impl<H> Default for SyncOrder<H> {
    fn default() -> Self {
        SyncOrder {
            next_seq: 0,
            in_flight: VecDeque::new(),
            held: VecDeque::new(),
        }
    }
}

impl<H> SyncOrder<H> {
    /// Registers a write at admission; returns its sequence number.
    pub(crate) fn begin_write(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push_back(seq);
        seq
    }

    /// The barrier a sync admitted now must wait for.
    pub(crate) fn barrier(&self) -> u64 {
        self.next_seq
    }

    /// Whether no write is in flight: a sync admitted now may start at once.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    fn clear(&self, barrier: u64) -> bool {
        self.in_flight.front().is_none_or(|&min| min >= barrier)
    }

    /// Returns the sync if it may start now, or holds it.
    pub(crate) fn start_sync(&mut self, barrier: u64, item: H) -> Option<H> {
        if self.clear(barrier) {
            Some(item)
        } else {
            self.held.push_back((barrier, item));
            None
        }
    }

    /// Marks a write complete; returns the syncs it released, in order.
    pub(crate) fn end_write(&mut self, seq: u64) -> Vec<H> {
        if self.in_flight.front() == Some(&seq) {
            self.in_flight.pop_front();
        } else if let Ok(at) = self.in_flight.binary_search(&seq) {
            self.in_flight.remove(at);
        }
        let mut released = Vec::new();
        // Barriers are admitted in increasing order, so the front is the
        // first that can become clear.
        while let Some((barrier, _)) = self.held.front() {
            if !self.clear(*barrier) {
                break;
            }
            if let Some((_, item)) = self.held.pop_front() {
                released.push(item);
            }
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_waits_for_earlier_writes_only() {
        let mut o = SyncOrder::default();
        let w0 = o.begin_write();
        let w1 = o.begin_write();
        let b = o.barrier();
        assert!(o.start_sync(b, "sync").is_none());
        let w2 = o.begin_write(); // later write: does not block the sync
        assert!(o.end_write(w1).is_empty());
        assert_eq!(o.end_write(w0), vec!["sync"]);
        assert!(o.end_write(w2).is_empty());
        let b2 = o.barrier();
        assert_eq!(o.start_sync(b2, "sync2"), Some("sync2"));
    }

    #[test]
    fn writes_completing_out_of_order_hold_the_sync_until_the_last() {
        let mut o = SyncOrder::default();
        let w: Vec<u64> = (0..5).map(|_| o.begin_write()).collect();
        let b = o.barrier();
        assert!(o.start_sync(b, "sync").is_none());
        // The middle, the back, then the front: still one earlier write.
        for &seq in &[w[2], w[4], w[0], w[3]] {
            assert!(o.end_write(seq).is_empty(), "released before write 1");
            assert!(!o.is_idle());
        }
        assert_eq!(o.end_write(w[1]), vec!["sync"]);
        assert!(o.is_idle());
        // A sequence number that is not in flight changes nothing.
        let w5 = o.begin_write();
        assert!(o.end_write(w[1]).is_empty());
        assert!(!o.is_idle());
        assert!(o.end_write(w5).is_empty());
        assert!(o.is_idle());
    }
}
