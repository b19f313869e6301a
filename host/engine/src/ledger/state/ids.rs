//! Which request ids a program committed lately: the memory in front of the journal's
//! unique index on `(program, request_id)`.
//!
//! A retried request must get the decision recorded under its id, however long ago. The
//! journal answers that from its index; what memory must add is only what the index cannot
//! know yet when a caller looks: ids committed between the caller's look-up and its turn
//! in the lane. So the state keeps the ids of the last [`RECENT_IDS`] decisions (a hash and
//! a position each, not the decision) and the position up to which that list is complete.
//! A decision looked up in the journal at position `L` (and not found there) is new if its
//! id is not in the list and the list is complete after `L`; in every other case the
//! journal is asked again. Memory stays the same however long the journal.

use std::collections::{HashMap, VecDeque};

/// How many committed ids are remembered.
pub const RECENT_IDS: usize = 1 << 16;

/// The ids of the latest committed decisions, by hash, with the position they were
/// committed at (or a later one).
#[derive(Debug, Clone, Default)]
pub struct Recent {
    /// id hash → the newest position recorded for it.
    ids: HashMap<u64, u64>,
    /// (position, id hash), oldest first.
    order: VecDeque<(u64, u64)>,
    /// Every id committed after this position is in `ids`.
    complete_after: u64,
}

impl Recent {
    /// A list that knows nothing before `position` (a state loaded from a snapshot there).
    pub fn after(position: u64) -> Recent {
        Recent {
            complete_after: position,
            ..Recent::default()
        }
    }

    /// Remembers that `id` was committed at `position` (or earlier).
    pub fn remember(&mut self, id: &str, position: u64) {
        let hash = hash(id);
        let newest = self.ids.entry(hash).or_insert(position);
        *newest = (*newest).max(position);
        self.order.push_back((position, hash));
        while self.order.len() > RECENT_IDS {
            let Some((gone, hash)) = self.order.pop_front() else {
                break;
            };
            // Another id of the same hash, or the same id again, may be newer: keep it.
            if self.ids.get(&hash) == Some(&gone) {
                self.ids.remove(&hash);
            }
            self.complete_after = self.complete_after.max(gone);
        }
    }

    /// Whether `id` may have been committed lately (a hash may match another id).
    pub fn may_hold(&self, id: &str) -> bool {
        self.ids.contains_key(&hash(id))
    }

    /// Whether every id committed after `position` is remembered.
    pub fn complete_after(&self, position: u64) -> bool {
        position >= self.complete_after
    }
}

/// FNV-1a: the ids are the caller's, a collision only costs a look-up in the journal.
fn hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_complete_only_after_what_it_forgot() {
        let mut recent = Recent::after(10);
        assert!(recent.complete_after(10));
        assert!(!recent.complete_after(9));
        for n in 0..RECENT_IDS as u64 + 5 {
            recent.remember(&format!("id-{n}"), 11 + n);
        }
        // The five oldest were forgotten: the list is complete only after the fifth.
        assert!(!recent.may_hold("id-0"));
        assert!(!recent.may_hold("id-4"));
        assert!(recent.may_hold("id-5"));
        assert!(!recent.complete_after(14));
        assert!(recent.complete_after(15));
        assert_eq!(recent.ids.len(), RECENT_IDS);
    }

    #[test]
    fn an_id_remembered_twice_stays_until_its_newest_position_is_forgotten() {
        let mut recent = Recent::default();
        recent.remember("a", 1);
        for n in 0..RECENT_IDS as u64 - 1 {
            recent.remember(&format!("x-{n}"), 2 + n);
        }
        recent.remember("a", RECENT_IDS as u64 + 1);
        // The first entry of `a` is forgotten now, its second is not.
        assert!(recent.may_hold("a"));
    }
}
