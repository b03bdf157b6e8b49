//! The clock replacer: which frame gives up its page on a miss.
//!
//! Each frame has a reference bit, set when the frame is pinned. The hand
//! sweeps the frames: a frame that cannot be evicted now (pinned, loading,
//! being written) is passed over untouched; an evictable frame with its bit
//! set gets a second chance (the bit is cleared); the first evictable frame
//! with a clear bit is the victim. Two full turns clear every evictable
//! bit, so a sweep longer than that finds a victim if there is one.
//!
//! The answer distinguishes *every frame is pinned* (an error for the caller:
//! waiting could hang if the caller itself holds the pins) from *frames are
//! only busy with I/O* (wait, they will come free).

/// What a frame is to the replacer right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Candidate {
    /// Unpinned and idle: may be taken.
    Evictable,
    /// Unpinned but loading or being written: free soon.
    Busy,
    /// Held by a guard.
    Pinned,
}

/// The outcome of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    Victim(usize),
    /// No frame is evictable, but some are only busy.
    Busy,
    /// Every frame is pinned.
    AllPinned,
}

pub(crate) struct Clock {
    referenced: Vec<bool>,
    hand: usize,
}

impl Clock {
    pub(crate) fn new(frames: usize) -> Clock {
        Clock {
            referenced: vec![false; frames],
            hand: 0,
        }
    }

    /// The next frame the hand looks at: the frames after it are the
    /// next victims (the background writer cleans them first).
    pub(crate) fn hand(&self) -> usize {
        self.hand
    }

    /// Marks the frame recently used.
    pub(crate) fn touch(&mut self, frame: usize) {
        self.referenced[frame] = true;
    }

    /// Sweeps for a victim; `classify` says what each frame is.
    pub(crate) fn pick(&mut self, classify: impl Fn(usize) -> Candidate) -> Pick {
        let n = self.referenced.len();
        let mut busy = false;
        for _ in 0..2 * n + 1 {
            let frame = self.hand;
            self.hand = (self.hand + 1) % n;
            match classify(frame) {
                Candidate::Pinned => {}
                Candidate::Busy => busy = true,
                Candidate::Evictable if self.referenced[frame] => self.referenced[frame] = false,
                Candidate::Evictable => return Pick::Victim(frame),
            }
        }
        if busy { Pick::Busy } else { Pick::AllPinned }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_chance_then_victim() {
        let mut c = Clock::new(3);
        c.touch(0);
        c.touch(1);
        // 0 and 1 get a second chance, 2 is taken.
        assert_eq!(c.pick(|_| Candidate::Evictable), Pick::Victim(2));
        // Hand is at 0 whose bit is now clear.
        assert_eq!(c.pick(|_| Candidate::Evictable), Pick::Victim(0));
    }

    #[test]
    fn pinned_and_busy_are_skipped() {
        let mut c = Clock::new(4);
        assert_eq!(
            c.pick(|f| if f == 3 {
                Candidate::Evictable
            } else {
                Candidate::Pinned
            }),
            Pick::Victim(3)
        );
        assert_eq!(c.pick(|_| Candidate::Pinned), Pick::AllPinned);
        assert_eq!(
            c.pick(|f| if f == 1 {
                Candidate::Busy
            } else {
                Candidate::Pinned
            }),
            Pick::Busy
        );
    }

    #[test]
    fn all_referenced_still_finds_a_victim() {
        let mut c = Clock::new(5);
        for f in 0..5 {
            c.touch(f);
        }
        assert!(matches!(c.pick(|_| Candidate::Evictable), Pick::Victim(_)));
    }
}
