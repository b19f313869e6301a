//! The effects of an allowed decision applied to a program's state, one after the other:
//! counts, grants, consumption earliest expiry first, transfers that keep expiry, forfeits,
//! state changes and card moves that carry the usage history — all exact, refused rather
//! than wrapped.

use super::{Effect, LotRow, Refused, State, Undo, View};
use crate::model::CardState;

impl State {
    /// Applies the `effects` of a decision by `card` at `at`, in order. On a refusal some
    /// effects may have been applied: the caller rolls back to its mark.
    pub fn apply(&mut self, card: &str, at: i64, effects: &[Effect]) -> Result<(), Refused> {
        for (index, effect) in effects.iter().enumerate() {
            self.apply_one(card, at, effect)
                .map_err(|Refused(why)| Refused(format!("effect {}: {why}", index + 1)))?;
        }
        Ok(())
    }

    fn apply_one(&mut self, card: &str, at: i64, effect: &Effect) -> Result<(), Refused> {
        let refuse = |why: String| Err(Refused(why));
        match effect {
            Effect::Count { counter, amount } => {
                if *amount == 0 {
                    return refuse(format!("count of 0 `{counter}`"));
                }
                self.add_tally(card, counter, at, *amount)
            }
            Effect::Grant {
                asset,
                amount,
                expires,
            } => {
                if *amount <= 0 {
                    return refuse(format!("grant of {amount} `{asset}` is not positive"));
                }
                self.add_lot(card, asset, *amount, *expires)
            }
            Effect::Consume { asset, amount } => self.take(card, asset, *amount, at).map(drop),
            Effect::Transfer {
                to_card,
                asset,
                amount,
            } => {
                if to_card == card {
                    return refuse(format!("transfer to the acting card `{card}` itself"));
                }
                if !self.known(to_card) {
                    return refuse(format!("transfer to unknown card `{to_card}`"));
                }
                for (units, expires) in self.take(card, asset, *amount, at)? {
                    self.add_lot(to_card, asset, units, expires)?;
                }
                Ok(())
            }
            Effect::Forfeit { asset } => {
                if self.lots(card).iter().any(|lot| &lot.asset == asset) {
                    self.lots_mut(card).retain(|lot| &lot.asset != asset);
                }
                Ok(())
            }
            Effect::SetState { state } => {
                if !self.set_card_state(card, *state) {
                    return refuse(format!("card `{card}` has no holder"));
                }
                Ok(())
            }
            Effect::MoveCard { new_card } => self.move_card(card, new_card),
        }
    }

    /// Gives the holder of `card` the card `new_card`: its facts, balances and usage
    /// history (every counter) move, and `card` stays behind, blocked.
    fn move_card(&mut self, card: &str, new_card: &str) -> Result<(), Refused> {
        if new_card == card {
            return Err(Refused(format!("card `{card}` cannot move to itself")));
        }
        if self.known(new_card) {
            return Err(Refused(format!(
                "new card `{new_card}` already belongs to a holder"
            )));
        }
        match self.holders.get(card).cloned() {
            Some(holder) => {
                let mut moved = holder.clone();
                moved.card = new_card.to_string();
                self.put_holder(moved);
                let mut old = holder;
                old.state = CardState::Blocked;
                self.put_holder(old);
            }
            // A card whose holder was erased later, read back from the journal: the new
            // card was the same holder's, and its facts are gone too.
            None => {
                let Some(state) = self.erased(card) else {
                    return Err(Refused(format!("card `{card}` has no holder")));
                };
                self.erased.insert(new_card.to_string(), state);
                self.undo.push(Undo::Erased(new_card.to_string(), None));
                self.set_card_state(card, CardState::Blocked);
            }
        }
        self.replaced(card, new_card);

        let lots = self.lots.get(card).cloned().unwrap_or_default();
        if !lots.is_empty() {
            self.lots_mut(card).clear();
            self.lots_mut(new_card).extend(lots);
        }
        // Usage history belongs to the holder: a lost card never resets a limit.
        if let Some(history) = self.tallies.get(card).cloned() {
            self.undo
                .push(Undo::CardTallies(card.to_string(), Some(history.clone())));
            self.tallies.remove(card);
            let previous = self.tallies.get(new_card).cloned();
            self.undo
                .push(Undo::CardTallies(new_card.to_string(), previous.clone()));
            let target = self.tallies.entry(new_card.to_string()).or_default();
            for (counter, tally) in history {
                let merged = target.entry(counter).or_default();
                for (at, amount) in tally.entries {
                    merged.insert(at, amount);
                }
            }
        }
        Ok(())
    }

    /// The unexpired lots of `asset` on `card` at `at`, in the order consumption takes
    /// them: earliest expiry first, units without expiry last, then as granted.
    pub fn consumption_order(&self, card: &str, asset: &str, at: i64) -> Vec<&LotRow> {
        let mut lots: Vec<&LotRow> = self
            .lots(card)
            .iter()
            .filter(|lot| lot.asset == asset && lot.counts_at(at))
            .collect();
        lots.sort_unstable_by_key(|lot| (lot.expires.is_none(), lot.expires, lot.id));
        lots
    }

    /// Removes `amount` unexpired units of `asset` from `card`, earliest expiry first (units
    /// without expiry last), and returns what was taken as (units, expiry) pairs.
    fn take(
        &mut self,
        card: &str,
        asset: &str,
        amount: i64,
        at: i64,
    ) -> Result<Vec<(i64, Option<i64>)>, Refused> {
        if amount <= 0 {
            return Err(Refused(format!(
                "amount {amount} of `{asset}` is not positive"
            )));
        }
        let held = self.balance(card, asset, at);
        if held < amount {
            return Err(Refused(format!(
                "card `{card}` holds {held} `{asset}`, fewer than {amount}"
            )));
        }
        let order: Vec<(Option<i64>, i64)> = self
            .consumption_order(card, asset, at)
            .iter()
            .map(|lot| (lot.expires, lot.id))
            .collect();
        let lots = self.lots_mut(card);
        let mut left = amount;
        let mut taken = Vec::new();
        for (expires, id) in order {
            if left == 0 {
                break;
            }
            if let Some(lot) = lots.iter_mut().find(|lot| lot.id == id) {
                let units = left.min(lot.amount);
                lot.amount -= units;
                taken.push((units, expires));
                left -= units;
            }
        }
        lots.retain(|lot| lot.amount > 0);
        Ok(taken)
    }
}
