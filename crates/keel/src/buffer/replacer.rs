//! The clock replacer: which frame gives up its page on a miss.
//!
//! Each frame has a reference bit, set when the frame is pinned (an atomic
//! in the frame, `Frame::touch`, so a hit sets it without the `Meta`
//! mutex; the sweep runs under that mutex). The hand
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
    frames: usize,
    hand: usize,
}

impl Clock {
    pub(crate) fn new(frames: usize) -> Clock {
        Clock { frames, hand: 0 }
    }

    /// The next frame the hand looks at: the frames after it are the
    /// next victims (the background writer cleans them first).
    pub(crate) fn hand(&self) -> usize {
        self.hand
    }

    /// Sweeps for a victim; `classify` says what each frame is, and
    /// `second_chance` clears a frame's reference bit, saying whether it
    /// was set.
    pub(crate) fn pick(
        &mut self,
        classify: impl Fn(usize) -> Candidate,
        mut second_chance: impl FnMut(usize) -> bool,
    ) -> Pick {
        let n = self.frames;
        let mut busy = false;
        for _ in 0..2 * n + 1 {
            let frame = self.hand;
            self.hand = (self.hand + 1) % n;
            match classify(frame) {
                Candidate::Pinned => {}
                Candidate::Busy => busy = true,
                Candidate::Evictable if second_chance(frame) => {}
                Candidate::Evictable => return Pick::Victim(frame),
            }
        }
        if busy { Pick::Busy } else { Pick::AllPinned }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference bits for the tests: `take` is the second chance.
    struct Bits(Vec<bool>);

    impl Bits {
        fn new(n: usize) -> Bits {
            Bits(vec![false; n])
        }

        fn take(&mut self, f: usize) -> bool {
            std::mem::replace(&mut self.0[f], false)
        }
    }

    #[test]
    fn second_chance_then_victim() {
        let mut c = Clock::new(3);
        let mut bits = Bits::new(3);
        bits.0[0] = true;
        bits.0[1] = true;
        // 0 and 1 get a second chance, 2 is taken.
        assert_eq!(
            c.pick(|_| Candidate::Evictable, |f| bits.take(f)),
            Pick::Victim(2)
        );
        // Hand is at 0 whose bit is now clear.
        assert_eq!(
            c.pick(|_| Candidate::Evictable, |f| bits.take(f)),
            Pick::Victim(0)
        );
    }

    #[test]
    fn pinned_and_busy_are_skipped() {
        let mut c = Clock::new(4);
        let mut bits = Bits::new(4);
        assert_eq!(
            c.pick(
                |f| if f == 3 {
                    Candidate::Evictable
                } else {
                    Candidate::Pinned
                },
                |f| bits.take(f)
            ),
            Pick::Victim(3)
        );
        assert_eq!(
            c.pick(|_| Candidate::Pinned, |f| bits.take(f)),
            Pick::AllPinned
        );
        assert_eq!(
            c.pick(
                |f| if f == 1 {
                    Candidate::Busy
                } else {
                    Candidate::Pinned
                },
                |f| bits.take(f)
            ),
            Pick::Busy
        );
    }

    #[test]
    fn all_referenced_still_finds_a_victim() {
        let mut c = Clock::new(5);
        let mut bits = Bits(vec![true; 5]);
        assert!(matches!(
            c.pick(|_| Candidate::Evictable, |f| bits.take(f)),
            Pick::Victim(_)
        ));
    }
}
