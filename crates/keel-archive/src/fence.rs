//! Fencing the old primary when a standby is promoted: one object per
//! promoted timeline, created once, that every archiver of that timeline
//! reads before it uploads.
//!
//! ## The rule
//!
//! A promotion of a standby that followed timeline `T` creates, create-only,
//! the **fence** `<prefix>/fences/<T:08X>.fence` naming the successor
//! timeline `L` it starts. From then on:
//!
//! 1. An archiver on `T` reads the fence before each upload
//!    ([`Remote::check_fence`], in the archiver's upload loop, protocol
//!    step 4) and at its start; finding it, it stops with
//!    [`ArchiveError::Fenced`] naming `L` and the switch LSN. Nothing is
//!    overwritten: every upload is create-only anyway.
//! 2. A second promotion from `T` (another standby of the same primary)
//!    finds the name taken and fails before it changes its directory: two
//!    standbys of one primary cannot both become primaries.
//! 3. A point-in-time restore also starts a timeline from `T` but writes no
//!    fence: a restored copy is not a takeover, and the primary it was
//!    restored from goes on archiving.
//!
//! What a fence cannot stop: an upload the old primary began before the
//! fence existed lands on `T` after the switch. Those records are past
//! `L`'s switch, where `L`'s path never reads `T` (restore.rs, "Timelines"),
//! so they are kept but never replayed into `L`. Fencing stops the old
//! primary's *archiving*; its clients are stopped by running its archiver
//! with the `Stall` policy (commits wait once the archive stops taking
//! log) or by the operator.
//!
//! ## Why create-only objects and not a lease updated with `If-Match`
//!
//! A single lease object replaced with `PutMode::Update` (`If-Match` on
//! S3) would do the same, but not on every store Keel archives to:
//! `object_store` 0.12's `LocalFileSystem` (`file://` targets) answers
//! `PutMode::Update` with `NotImplemented`, and the in-process `s3s-fs`
//! server of the default tests checks `If-Match` and then writes, not as
//! one step. SeaweedFS (4.48, the tests' real server) does answer a wrong
//! `If-Match` with 412, so only the local directory lacks it outright, but
//! one rule must hold on every target. Create-only puts (`If-None-Match: *`, or a no-replace link on
//! a local directory) are what every backend already honours for chunks,
//! and a fence per promoted timeline needs nothing else: a timeline is
//! promoted at most once, so its fence is written once and never updated.
//!
//! ## Format
//!
//! Text, one field per line, in this order; the last line is the CRC32C of
//! every byte before it (as a timeline history, restore.rs):
//!
//! ```text
//! keel-fence 1
//! database 0123456789abcdef
//! timeline 1
//! successor 2
//! switch 0000000000034567
//! standby 89abcdef01234567
//! created 1767225900000000
//! crc32c 1a2b3c4d
//! ```
//!
//! `standby` is the promoted standby's id (its marker file, crate module
//! `standby`), so a promotion that crashed after writing its fence
//! recognises its own fence when run again.

use keel::types::Lsn;
use object_store::path::Path as ObjectPath;

use crate::error::{ArchiveError, Place, Result};
use crate::store::{Put, Remote};

/// The first word of a fence object.
pub const FENCE_MAGIC: &str = "keel-fence";
/// Fence object format version.
pub const FENCE_VERSION: u32 = 1;
/// Largest fence object accepted.
pub const MAX_FENCE_BYTES: usize = 4096;

/// A fence: timeline `timeline` was promoted to `successor` (module essay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The database.
    pub database_id: u64,
    /// The timeline fenced off.
    pub timeline: u32,
    /// The promoted standby's new timeline.
    pub successor: u32,
    /// Where the successor branched.
    pub switch: Lsn,
    /// The promoted standby's id.
    pub standby_id: u64,
    /// When (µs since the Unix epoch).
    pub created_us: u64,
}

impl Fence {
    /// The object's bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::sealed::seal(format!(
            "{FENCE_MAGIC} {FENCE_VERSION}\ndatabase {:016x}\ntimeline {}\nsuccessor {}\n\
             switch {:016x}\nstandby {:016x}\ncreated {}\n",
            self.database_id,
            self.timeline,
            self.successor,
            self.switch.0,
            self.standby_id,
            self.created_us
        ))
    }

    /// Decodes a fence read from `object` (hostile input).
    pub fn decode(object: &str, bytes: &[u8]) -> Result<Fence> {
        let f = crate::sealed::Sealed::open(
            object,
            bytes,
            &crate::sealed::Kind {
                what: "fence",
                magic: FENCE_MAGIC,
                version: FENCE_VERSION,
                lines: 8,
                max_bytes: MAX_FENCE_BYTES,
            },
        )?;
        let timeline = f.small(2, "timeline")?;
        let successor = f.small(3, "successor")?;
        if timeline == 0 || successor <= timeline {
            return Err(f.bad(3, format!("successor {successor} of timeline {timeline}")));
        }
        Ok(Fence {
            database_id: f.hex(1, "database")?,
            timeline,
            successor,
            switch: Lsn(f.hex(4, "switch")?),
            standby_id: f.hex(5, "standby")?,
            created_us: f.dec(6, "created")?,
        })
    }
}

impl Remote {
    /// The fence of `timeline` (module essay).
    pub fn fence_path(&self, timeline: u32) -> ObjectPath {
        match self.prefix().is_empty() {
            true => ObjectPath::from(format!("fences/{timeline:08X}.fence")),
            false => ObjectPath::from(format!("{}/fences/{timeline:08X}.fence", self.prefix())),
        }
    }

    /// The fence of `timeline`, if it was promoted away. A fence that
    /// names another timeline than its name is corrupt.
    pub fn read_fence(&self, timeline: u32) -> Result<Option<Fence>> {
        let path = self.fence_path(timeline);
        let bytes = match self.get(&path) {
            Ok(b) => b,
            Err(ArchiveError::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let f = Fence::decode(path.as_ref(), &bytes)?;
        if f.timeline != timeline {
            return Err(ArchiveError::Corrupt {
                object: path.to_string(),
                place: Place::Object(0),
                reason: format!("it fences timeline {}", f.timeline),
            });
        }
        Ok(Some(f))
    }

    /// Fails with [`ArchiveError::Fenced`] when `timeline` of database
    /// `database_id` was promoted away (rule 1). A fence of another
    /// database is [`ArchiveError::WrongDatabase`].
    pub fn check_fence(&self, timeline: u32, database_id: u64) -> Result<()> {
        let Some(f) = self.read_fence(timeline)? else {
            return Ok(());
        };
        let object = self.fence_path(timeline).to_string();
        if f.database_id != database_id {
            return Err(ArchiveError::WrongDatabase {
                object,
                expected: database_id,
                found: f.database_id,
            });
        }
        Err(ArchiveError::Fenced {
            object,
            timeline,
            successor: f.successor,
            switch: f.switch,
        })
    }

    /// Creates `fence` (rule 2). `Ok(None)`: created (or these very bytes
    /// were already there); `Ok(Some(f))`: the name was taken by `f`,
    /// which the caller compares with its own (the same standby's fence
    /// from an earlier try, or another standby's promotion).
    pub fn put_fence(&self, fence: &Fence) -> Result<Option<Fence>> {
        let path = self.fence_path(fence.timeline);
        let existing = match self.put_create(&path, &fence.encode()) {
            Ok(Put::Created | Put::AlreadyThere) => return Ok(None),
            Err(ArchiveError::SplitBrain { .. }) => self.read_fence(fence.timeline)?,
            Err(e) => return Err(e),
        };
        Ok(existing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Fence {
        Fence {
            database_id: 0x0123_4567_89ab_cdef,
            timeline: 1,
            successor: 2,
            switch: Lsn(0x34567),
            standby_id: 0x89ab_cdef_0123_4567,
            created_us: 1_767_225_900_000_000,
        }
    }

    #[test]
    fn a_fence_round_trips_and_matches_the_documented_layout() {
        let f = sample();
        let bytes = f.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let keys: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "keel-fence",
                "database",
                "timeline",
                "successor",
                "switch",
                "standby",
                "created",
                "crc32c"
            ]
        );
        assert_eq!(Fence::decode("f", &bytes).unwrap(), f);
    }

    #[test]
    fn a_damaged_fence_is_refused_naming_what() {
        let bytes = sample().encode();
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert!(matches!(
            Fence::decode("f", &flipped),
            Err(ArchiveError::ChecksumMismatch { .. })
        ));
        for cut in [0, 10, bytes.len() - 1] {
            assert!(Fence::decode("f", &bytes[..cut]).is_err(), "cut {cut}");
        }
        let backwards = Fence {
            successor: 1,
            ..sample()
        };
        let e = Fence::decode("f", &backwards.encode()).unwrap_err();
        assert!(e.to_string().contains("successor 1"), "{e}");
    }
}
