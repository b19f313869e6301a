//! What a change did to the state, as the keys policies read it by (see `ledger/reads.rs`):
//! read off the undo entries it left, so that every way of changing the state — effects,
//! registrations, card moves — is covered by the same code that takes it back.

use super::{Mark, State, Undo};
use crate::ledger::reads::{self, Key};

impl State {
    /// The keys of everything changed since `mark` (not yet settled or rolled back).
    pub(crate) fn touched_since(&self, mark: Mark) -> Vec<Key> {
        let mut keys = Vec::new();
        for undo in self.undo.get(mark.0..).unwrap_or_default() {
            match undo {
                Undo::Holder(card, _) => keys.push(reads::holder(card)),
                Undo::TallyAdded { card, counter, .. } => {
                    keys.push(reads::count(Some(card), counter));
                    keys.push(reads::count(None, counter));
                }
                Undo::CardTallies(card, _) => keys.push(reads::counts_of(card)),
                Undo::Lots(card, _) => keys.push(reads::lots(card)),
                // A card erased or restricted is decided on no more: what read its holder
                // (a decision on it, a transfer to it) is decided again.
                Undo::Erased(card, _) | Undo::Restricted(card, _) => keys.push(reads::holder(card)),
                // Not readable by a policy: lot ids, request ids (the lane looks those up
                // again itself), a card's earlier cards, the journal position.
                Undo::NextLot(_) | Undo::Recorded(_) | Undo::Previous(_) | Undo::Seq(_) => {}
                // Leases change what a lens shows, not the state's keys: a lane does not
                // keep proposals while anything is lent (see `decide::decide_on`).
                Undo::Tenure(..) => {}
            }
        }
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}
