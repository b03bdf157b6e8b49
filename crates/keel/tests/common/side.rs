//! Side relations created and dropped while a crash workload runs, so DDL
//! runs under every crash shape the workload is put through. Every other
//! one is a tree (`create_tree` / `drop_tree`, with an overflow value).

use std::collections::BTreeMap;

use keel::Database;
use keel_io::sim::Rng;

/// Side relations created and dropped by the workload (DDL under every
/// crash shape): what each one's existence must be after recovery.
#[derive(Default)]
pub struct Side {
    /// The number of the next side relation: how many were created.
    pub next: u32,
    /// `Some(exists)` once `create_relation` or `drop_relation` returned;
    /// `None` while the call the crash cut may or may not have committed.
    known: BTreeMap<String, Option<bool>>,
}

impl Side {
    /// Creates the next side relation, or drops an existing one (with a
    /// committed row, so the drop removes a file with data). Returns false
    /// when the call failed: the crash.
    pub fn step(&mut self, db: &Database, rng: &mut Rng) -> bool {
        let existing: Vec<String> = self
            .known
            .iter()
            .filter(|(_, s)| **s == Some(true))
            .map(|(n, _)| n.clone())
            .collect();
        if existing.len() >= 3 || (!existing.is_empty() && rng.coin()) {
            let name = existing[rng.below(existing.len() as u64) as usize].clone();
            let dropped = if is_tree(&name) {
                db.drop_tree(&name).is_ok()
            } else {
                db.drop_relation(&name).is_ok()
            };
            self.known.insert(name, dropped.then_some(false));
            return dropped;
        }
        let name = format!("side{}", self.next);
        self.next += 1;
        let tree = is_tree(&name);
        let created = if tree {
            db.create_tree(&name)
        } else {
            db.create_relation(&name)
        };
        // Durable once the create returned, whatever its row's fate.
        self.known.insert(name, created.as_ref().ok().map(|_| true));
        created
            .and_then(|rel| {
                let mut tx = db.begin()?;
                if tree {
                    tx.put(rel, b"side", &[7u8; 3000])?;
                } else {
                    tx.insert(rel, &[7u8; 3000])?;
                }
                tx.commit()
            })
            .is_ok()
    }

    /// Checks every side relation after recovery, then takes what
    /// recovery settled as known. No file is left that recovery could not
    /// place (invariant 13). Returns how many DDL calls the crash cut.
    pub fn settle(&mut self, seed: u64, stage: &str, db: &Database) -> u64 {
        let cut = self.known.values().filter(|s| s.is_none()).count() as u64;
        for (name, state) in self.known.iter_mut() {
            let present = db.relation(name).unwrap().is_some();
            if present && is_tree(name) {
                assert!(
                    db.tree(name).unwrap().is_some(),
                    "seed {seed} ({stage}): side tree {name} is not a tree"
                );
            }
            if let Some(want) = *state {
                assert_eq!(
                    present, want,
                    "seed {seed} ({stage}): side relation {name} exists: {present}"
                );
            }
            *state = Some(present);
        }
        assert!(
            db.recovery_report().orphan_files.is_empty(),
            "seed {seed} ({stage}): orphan files {:?}",
            db.recovery_report().orphan_files
        );
        cut
    }
}

/// Whether side relation `name` is a tree (every other one).
fn is_tree(name: &str) -> bool {
    name.strip_prefix("side")
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n % 2 == 1)
}
