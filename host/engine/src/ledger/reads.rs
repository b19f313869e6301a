//! What a decision read, and what changed since: how a lane tells whether a decision
//! evaluated on an earlier state (a *proposal*, see `commit.rs`) would be answered the same
//! on the state it is about to be committed on.
//!
//! A policy sees its program's ledger only through the host's calls (`policy/calls.rs`),
//! each a lookup by one of a few kinds of key: the holder of a card, the lots of a card
//! (balances), one counter of one card (sums, last use), one counter over all cards
//! (capacities). The host itself reads one more before the policy runs: the holder of the
//! acting card. The answer of each call is a function of what is stored under its key,
//! and the policy is deterministic; so if nothing stored under any key a decision read has
//! changed, every call answers the same, the policy answers the same and burns the same
//! fuel (the fuel of a call depends only on the entries under its key).
//!
//! A proposal reads each key at its own moment (the lane's state is taken for reading one
//! call at a time), all after the point it began at ([`Seen`]). If no change after that
//! point touched any key it read, each read answered what was stored under its key at
//! that point: together, the reads are one consistent view of the state as it was then,
//! and as it still is when the lane checks them.
//!
//! Keys are kept as 64-bit hashes: a read set is a handful of integers, and a change's
//! keys cost no allocation of text. Two keys that collide can only make an unchanged read
//! look changed (the decision is evaluated again, at worst), never the reverse: equal keys
//! always hash equal.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

/// A key under which the state stores something a policy can read (hashed).
pub(crate) type Key = u64;

/// How many changes a lane remembers the keys of. A proposal that read before the oldest
/// of them cannot be checked any more and is evaluated again.
const REMEMBERED: usize = 4096;

fn key(kind: u8, first: &str, second: &str) -> Key {
    // `DefaultHasher::new` has fixed keys: a key hashes the same in every thread.
    let mut hasher = std::hash::DefaultHasher::new();
    kind.hash(&mut hasher);
    // `str`'s hash ends each string with a marker, so ("ab", "c") and ("a", "bc") differ.
    first.hash(&mut hasher);
    second.hash(&mut hasher);
    hasher.finish()
}

/// The holder of `card` (its facts and state; whether it exists).
pub(crate) fn holder(card: &str) -> Key {
    key(0, card, "")
}

/// The lots of `card`: every balance it holds.
pub(crate) fn lots(card: &str) -> Key {
    key(1, card, "")
}

/// `counter` of one card, or (`None`) over all cards.
pub(crate) fn count(card: Option<&str>, counter: &str) -> Key {
    match card {
        Some(card) => key(2, card, counter),
        None => key(3, "", counter),
    }
}

/// Every counter of `card` at once: a card move carries the whole usage history.
pub(crate) fn counts_of(card: &str) -> Key {
    key(4, card, "")
}

/// The keys one evaluation read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadSet {
    keys: Vec<Key>,
}

impl ReadSet {
    fn add(&mut self, key: Key) {
        // A decision reads a handful of keys: a scan beats a hash set.
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// The holder of `card` was read (found or not).
    pub(crate) fn holder(&mut self, card: &str) {
        self.add(holder(card));
    }

    /// A balance of `card` was read.
    pub(crate) fn lots(&mut self, card: &str) {
        self.add(lots(card));
    }

    /// `counter` was read, of one card or over all cards. A card's counter changes also
    /// when another card moves onto it, so its read is also a read of the card's counters
    /// as a whole.
    pub(crate) fn count(&mut self, card: Option<&str>, counter: &str) {
        self.add(count(card, counter));
        if let Some(card) = card {
            self.add(counts_of(card));
        }
    }

    fn meets(&self, touched: &[Key]) -> bool {
        touched.iter().any(|key| self.keys.contains(key))
    }
}

/// Where a state stood when a proposal read it: compare with [`Versions::unchanged`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen(u64);

/// A lane's count of the changes applied to its state, with the keys each touched (the
/// latest [`REMEMBERED`]), and the point before which nothing can be checked.
///
/// Invariant: `log` holds exactly the changes numbered `floor + 1 ..= now`, in order.
#[derive(Debug, Default)]
pub struct Versions {
    now: u64,
    floor: u64,
    log: VecDeque<Vec<Key>>,
}

impl Versions {
    /// The state as it stands now.
    pub(crate) fn seen(&self) -> Seen {
        Seen(self.now)
    }

    /// Remembers a change that touched `keys` (nothing, if it touched none).
    pub(crate) fn record(&mut self, keys: Vec<Key>) {
        if keys.is_empty() {
            return;
        }
        self.now += 1;
        self.log.push_back(keys);
        if self.log.len() > REMEMBERED {
            self.log.pop_front();
            self.floor += 1;
        }
    }

    /// Forgets everything: no proposal read before now can be checked. For what the keys
    /// do not describe — changes taken back after proposals may have read them (a batch
    /// whose commit failed), events of other writers read from the journal.
    pub(crate) fn invalidate(&mut self) {
        self.now += 1;
        self.floor = self.now;
        self.log.clear();
    }

    /// Whether nothing a proposal that read `reads` at `seen` has changed since.
    pub(crate) fn unchanged(&self, seen: Seen, reads: &ReadSet) -> bool {
        let Seen(seen) = seen;
        if seen < self.floor || seen > self.now {
            return false;
        }
        // The changes after `seen` are the last `now - seen` of the log (all remembered,
        // since `seen >= floor`).
        let newer = usize::try_from(self.now - seen).unwrap_or(usize::MAX);
        !self
            .log
            .iter()
            .rev()
            .take(newer)
            .any(|touched| reads.meets(touched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(card: &str, counter: &str) -> ReadSet {
        let mut reads = ReadSet::default();
        reads.holder(card);
        reads.count(Some(card), counter);
        reads
    }

    #[test]
    fn a_change_to_another_key_leaves_a_proposal_standing_and_one_to_its_keys_does_not() {
        let mut versions = Versions::default();
        let seen = versions.seen();
        let reads = read("A", "visits");
        versions.record(vec![count(Some("B"), "visits"), count(None, "visits")]);
        versions.record(vec![lots("A")]);
        assert!(versions.unchanged(seen, &reads));
        versions.record(vec![count(Some("A"), "visits")]);
        assert!(!versions.unchanged(seen, &reads));
        // Read after that change, it stands.
        let later = Seen(versions.now);
        assert!(versions.unchanged(later, &reads));
    }

    #[test]
    fn a_card_move_touches_every_counter_of_the_card() {
        let mut versions = Versions::default();
        let seen = versions.seen();
        versions.record(vec![counts_of("A")]);
        assert!(!versions.unchanged(seen, &read("A", "anything")));
        assert!(versions.unchanged(seen, &read("B", "anything")));
    }

    #[test]
    fn nothing_read_before_an_invalidation_or_beyond_the_memory_can_be_checked() {
        let mut versions = Versions::default();
        let seen = versions.seen();
        let reads = read("A", "visits");
        versions.invalidate();
        assert!(!versions.unchanged(seen, &reads));
        let seen = versions.seen();
        assert!(versions.unchanged(seen, &reads));
        for _ in 0..REMEMBERED {
            versions.record(vec![lots("B")]);
        }
        assert!(versions.unchanged(seen, &reads));
        versions.record(vec![lots("B")]);
        assert!(
            !versions.unchanged(seen, &reads),
            "forgotten, so not checkable"
        );
        assert_eq!(versions.log.len() as u64, versions.now - versions.floor);
    }

    #[test]
    fn keys_of_different_kinds_and_splits_differ() {
        assert_ne!(count(Some("ab"), "c"), count(Some("a"), "bc"));
        assert_ne!(holder("A"), lots("A"));
        assert_ne!(count(None, "x"), count(Some(""), "x"));
        assert_eq!(count(Some("A"), "x"), count(Some("A"), "x"));
    }
}
