//! A program's state as data: what a snapshot stores, and how a state is made from it.
//!
//! The image holds what decisions read — holders, counter entries, lots, the cards each
//! card replaced — and the journal position it includes. It holds no request ids: those
//! are looked up in the journal (see `ids.rs`), so a state made from an image remembers
//! none before its position. Everything is sorted, so that one state always gives the
//! same bytes.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::ids::Recent;
use super::{State, Tally};
use crate::ledger::{LotRow, MAX_UNITS};
use crate::model::{CardState, Holder};

/// One card's part of the state.
#[derive(Debug, Serialize, Deserialize)]
struct Card {
    card: String,
    /// None for a card that holds lots or counters but has no holder (none today: kept
    /// general, so that no state is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    holder: Option<Holder>,
    /// counter → entries `[at, amount]`, in time order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    counters: Vec<(String, Vec<(i64, u64)>)>,
    /// Lots in the order they were granted: `[id, asset, amount, expires]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    lots: Vec<(i64, String, i64, Option<i64>)>,
    /// The cards it replaced, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    previous: Vec<String>,
    /// The card's state, for a card whose holder was erased (then it has no holder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    erased: Option<CardState>,
    /// Whether its holder is restricted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    restricted: bool,
}

/// The whole state of a program at a journal position.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Image {
    /// The journal position the state includes.
    seq: u64,
    /// The last lot id given.
    next_lot: i64,
    cards: Vec<Card>,
    /// venue → its lease and what it spent of it (see `crate::offline`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    tenures: std::collections::BTreeMap<String, crate::offline::Tenure>,
}

impl Image {
    /// The image with the holders of `cards` erased (see [`State`]'s erasure): each keeps
    /// its card, state, lots, counters and earlier cards, and loses its facts.
    pub(crate) fn erase(&mut self, cards: &[String]) {
        for name in cards {
            if let Ok(index) = self.cards.binary_search_by(|c| c.card.as_str().cmp(name)) {
                let card = &mut self.cards[index];
                if let Some(holder) = card.holder.take() {
                    card.erased = Some(holder.state);
                }
            }
        }
    }
}

impl State {
    /// The state as an image; the state must be settled (nothing to take back).
    pub(crate) fn image(&self) -> Image {
        let mut names: Vec<&String> = self
            .holders
            .keys()
            .chain(self.tallies.keys())
            .chain(self.lots.keys())
            .chain(self.previous.keys())
            .chain(self.erased.keys())
            .collect();
        names.sort_unstable();
        names.dedup();
        let cards = names
            .into_iter()
            .map(|card| {
                let mut counters: Vec<(String, Vec<(i64, u64)>)> = self
                    .tallies
                    .get(card)
                    .map(|t| {
                        t.iter()
                            .map(|(name, tally)| (name.clone(), tally.entries.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                counters.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                Card {
                    card: card.clone(),
                    holder: self.holders.get(card).cloned(),
                    counters,
                    lots: self
                        .lots(card)
                        .iter()
                        .map(|l| (l.id, l.asset.clone(), l.amount, l.expires))
                        .collect(),
                    previous: self.previous.get(card).cloned().unwrap_or_default(),
                    erased: self.erased(card),
                    restricted: self.restricted(card),
                }
            })
            .collect();
        Image {
            seq: self.seq,
            next_lot: self.next_lot,
            cards,
            tenures: (*self.tenures).clone(),
        }
    }

    /// The state an image holds; `Err` says why the image cannot be a state. A state read
    /// from an image passes the rules a state built from events keeps — every lot holds
    /// 1 to `MAX_UNITS` units under an id given once, a card holds at most `MAX_UNITS` of
    /// an asset (so no balance is negative and no sum wraps), counters total at most
    /// `MAX_UNITS`, each card appears once — so that a damaged or forged snapshot is
    /// refused as corrupt, never taken for a state.
    pub(crate) fn from_image(image: Image) -> Result<State, String> {
        if image.next_lot < 0 {
            return Err(format!("its last lot id {} is negative", image.next_lot));
        }
        let mut state = State {
            seq: image.seq,
            next_lot: image.next_lot,
            recent: Recent::after(image.seq),
            tenures: std::sync::Arc::new(image.tenures),
            ..State::default()
        };
        // counter → its total over every card (tallies over all cards are built when a
        // count asks for one: see `State::widen`).
        let mut totals: HashMap<String, u64> = HashMap::new();
        let mut lot_ids = HashSet::new();
        let mut last_card: Option<String> = None;
        for card in image.cards {
            let name = card.card;
            // Written sorted, each card once: a card out of order or repeated would replace
            // what came before it.
            if last_card.as_ref().is_some_and(|last| *last >= name) {
                return Err(format!("card `{name}` is repeated or out of order"));
            }
            if let Some(holder) = card.holder {
                if holder.card != name || !holder.balances.is_empty() {
                    return Err(format!("the holder of card `{name}` does not fit it"));
                }
                state.holders.insert(name.clone(), holder);
            }
            if let Some(erased) = card.erased {
                if state.holders.contains_key(&name) {
                    return Err(format!("card `{name}` has a holder and was erased"));
                }
                state.erased.insert(name.clone(), erased);
            }
            if card.restricted {
                if !state.known(&name) {
                    return Err(format!("card `{name}` is restricted but has no holder"));
                }
                state.restricted.insert(name.clone());
            }
            let mut counters = HashMap::new();
            for (counter, entries) in card.counters {
                if entries.is_empty() || !entries.is_sorted_by_key(|&(at, _)| at) {
                    return Err(format!(
                        "counter `{counter}` of card `{name}` is empty or out of order"
                    ));
                }
                if counters.contains_key(&counter) {
                    return Err(format!("counter `{counter}` of card `{name}` is repeated"));
                }
                let mut tally = Tally::default();
                for &(_, amount) in &entries {
                    if amount == 0 {
                        return Err(format!("counter `{counter}` of card `{name}` counts 0"));
                    }
                    tally.total = checked_total(tally.total, amount)
                        .ok_or_else(|| format!("counter `{counter}` of card `{name}` overflows"))?;
                }
                let all = totals.entry(counter.clone()).or_default();
                *all = checked_total(*all, tally.total)
                    .ok_or_else(|| format!("counter `{counter}` overflows"))?;
                tally.entries = entries;
                tally.entries.shrink_to_fit();
                counters.insert(counter, tally);
            }
            if !counters.is_empty() {
                state.tallies.insert(name.clone(), counters);
            }
            if !card.lots.is_empty() {
                // asset → units of the card, expired or not: what a grant keeps within
                // `MAX_UNITS` (each lot is, so the sum cannot wrap before it is checked).
                let mut held: HashMap<&str, i64> = HashMap::new();
                for (id, asset, amount, _) in &card.lots {
                    if *id > state.next_lot || *id <= 0 || !lot_ids.insert(*id) {
                        return Err(format!(
                            "lot {id} of card `{name}` has an id never given, or given twice"
                        ));
                    }
                    if !(1..=MAX_UNITS).contains(amount) {
                        return Err(format!(
                            "lot {id} of card `{name}` holds {amount} `{asset}`, not 1 to {MAX_UNITS}"
                        ));
                    }
                    let sum = held.entry(asset).or_default();
                    *sum += amount;
                    if *sum > MAX_UNITS {
                        return Err(format!(
                            "card `{name}` holds more than {MAX_UNITS} `{asset}`"
                        ));
                    }
                }
                let lots = card
                    .lots
                    .into_iter()
                    .map(|(id, asset, amount, expires)| LotRow {
                        id,
                        asset,
                        amount,
                        expires,
                    })
                    .collect::<Vec<_>>();
                state.lots.insert(name.clone(), lots);
            }
            if !card.previous.is_empty() {
                let unique: HashSet<&String> = card.previous.iter().collect();
                if unique.len() != card.previous.len() || unique.contains(&name) {
                    return Err(format!("the earlier cards of `{name}` repeat a card"));
                }
                for old in &card.previous {
                    let news = state.replaced_by.entry(old.clone()).or_default();
                    news.push(name.clone());
                }
                state.previous.insert(name.clone(), card.previous);
            }
            last_card = Some(name);
        }
        for (counter, total) in totals {
            state.totals.insert(counter, total);
        }
        Ok(state)
    }
}

/// `total + amount`, if it stays within what a counter may total.
fn checked_total(total: u64, amount: u64) -> Option<u64> {
    total
        .checked_add(amount)
        .filter(|&sum| sum <= MAX_UNITS as u64)
}
