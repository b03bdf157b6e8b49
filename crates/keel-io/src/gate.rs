//! The admission gate: a counting semaphore sized by the queue depth.
//!
//! Every request takes a permit when it is submitted and gives it back when
//! it completes. `acquire` waits for a permit (backpressure: requests are
//! never dropped), `try_acquire` fails with `WouldBlock`. `close` refuses new
//! requests (`ShutDown`) and wakes waiting submitters; `wait_idle` then waits
//! until every admitted request has completed, which is how shutdown drains.

use parking_lot::{Condvar, Mutex};

use crate::error::IoError;
use crate::request::OpKind;

struct State {
    in_flight: usize,
    waiting: usize,
    closed: bool,
}

pub(crate) struct Gate {
    state: Mutex<State>,
    cond: Condvar,
    capacity: usize,
}

impl Gate {
    pub(crate) fn new(capacity: usize) -> Gate {
        Gate {
            state: Mutex::new(State {
                in_flight: 0,
                waiting: 0,
                closed: false,
            }),
            cond: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Takes a permit, waiting while the queue is full.
    pub(crate) fn acquire(&self, op: OpKind) -> Result<(), IoError> {
        let mut s = self.state.lock();
        loop {
            if s.closed {
                return Err(IoError::ShutDown { op });
            }
            if s.in_flight < self.capacity {
                s.in_flight += 1;
                return Ok(());
            }
            s.waiting += 1;
            self.cond.wait(&mut s);
            s.waiting -= 1;
        }
    }

    /// Takes a permit if one is free.
    pub(crate) fn try_acquire(&self, op: OpKind) -> Result<(), IoError> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(IoError::ShutDown { op });
        }
        if s.in_flight >= self.capacity {
            return Err(IoError::WouldBlock { op });
        }
        s.in_flight += 1;
        Ok(())
    }

    /// Gives a permit back.
    pub(crate) fn release(&self) {
        let mut s = self.state.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.closed && s.in_flight == 0 {
            self.cond.notify_all();
        } else if s.waiting > 0 {
            self.cond.notify_one();
        }
    }

    /// Refuses new requests from now on.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.cond.notify_all();
    }

    /// Waits until every admitted request has released its permit.
    pub(crate) fn wait_idle(&self) {
        let mut s = self.state.lock();
        while s.in_flight > 0 {
            self.cond.wait(&mut s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_gate_would_block_and_closed_gate_refuses() {
        let g = Gate::new(2);
        g.try_acquire(OpKind::Read).unwrap();
        g.acquire(OpKind::Read).unwrap();
        assert!(matches!(
            g.try_acquire(OpKind::Write),
            Err(IoError::WouldBlock { op: OpKind::Write })
        ));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| g.acquire(OpKind::Fsync));
            g.release(); // lets the waiter in
            waiter.join().unwrap().unwrap();
        });
        g.close();
        assert!(matches!(
            g.acquire(OpKind::Read),
            Err(IoError::ShutDown { .. })
        ));
        g.release();
        g.release();
        g.wait_idle();
    }
}
