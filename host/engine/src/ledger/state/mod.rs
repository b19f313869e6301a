//! One program's ledger state, held in memory and derived from its journal: holders,
//! counters and asset lots, and the request ids committed lately (older ones are looked
//! up in the journal: see `ids.rs`).
//!
//! Every change goes through the functions here — the effects of a decision, a holder's
//! registration, a change read back from the journal — so a state rebuilt from the
//! journal is the state that was built live. Each change leaves an undo entry, so that a
//! refused decision, a dry run, or a batch whose commit failed is taken back exactly.

use std::collections::HashMap;
use std::sync::Arc;

mod effects;
mod ids;
mod image;
mod touched;

use super::{Change, Effect, Journal, LotRow, MAX_UNITS, Recorded, Refused};
use crate::error::{Error, Result};
use crate::model::{CardState, Holder};
pub(crate) use image::Image;

/// What the policy may read of its program's ledger, and nothing that writes.
pub trait View: Send {
    /// The holder of `card`, without balances.
    fn holder(&self, card: &str) -> Option<&Holder>;
    /// Sum of `counter` over `[from, to)`, for one card or (`None`) all cards.
    fn count(&self, card: Option<&str>, counter: &str, from: i64, to: i64) -> u64;
    /// The latest time `counter` was recorded for `card` (late entries included).
    fn last_use(&self, card: &str, counter: &str) -> Option<i64>;
    /// Unexpired units of `asset` held by `card` at `at`.
    fn balance(&self, card: &str, asset: &str, at: i64) -> i64;
    /// How many entries [`View::count`] sums for these arguments: the work it does, for
    /// charging the policy fuel.
    fn count_entries(&self, card: Option<&str>, counter: &str, from: i64, to: i64) -> u64;
    /// How many lots [`View::balance`] goes through for `card`.
    fn lot_entries(&self, card: &str) -> u64;
}

/// The entries of one counter, kept sorted by time, and their total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tally {
    entries: Vec<(i64, u64)>,
    total: u64,
}

impl Tally {
    fn sum(&self, from: i64, to: i64) -> u64 {
        let start = self.entries.partition_point(|&(at, _)| at < from);
        let end = self.entries.partition_point(|&(at, _)| at < to);
        // Cannot overflow: `total`, the sum of every entry, is kept within `MAX_UNITS`.
        self.entries[start..end.max(start)]
            .iter()
            .map(|&(_, n)| n)
            .sum()
    }

    /// How many entries [`Tally::sum`] adds up.
    fn entries_within(&self, from: i64, to: i64) -> u64 {
        let start = self.entries.partition_point(|&(at, _)| at < from);
        let end = self.entries.partition_point(|&(at, _)| at < to);
        end.saturating_sub(start) as u64
    }

    fn insert(&mut self, at: i64, amount: u64) {
        // Requests may arrive late: insert in time order, after entries of the same time.
        let index = self.entries.partition_point(|&(t, _)| t <= at);
        self.entries.insert(index, (at, amount));
        self.total += amount;
    }

    fn remove(&mut self, at: i64, amount: u64) {
        if let Some(index) = self.entries.iter().rposition(|&e| e == (at, amount)) {
            self.entries.remove(index);
            self.total -= amount;
        }
    }
}

/// A change to undo, newest last.
#[derive(Debug)]
enum Undo {
    Holder(String, Option<Holder>),
    TallyAdded {
        card: String,
        counter: String,
        at: i64,
        amount: u64,
    },
    CardTallies(String, Option<HashMap<String, Tally>>),
    Lots(String, Option<Vec<LotRow>>),
    NextLot(i64),
    /// A decision recorded by a job, not committed yet.
    Recorded(String),
    /// A card's latest entry in `previous`.
    Previous(String),
    Seq(u64),
    Erased(String, Option<CardState>),
    Restricted(String, bool),
    /// A venue's lease and what it spent, before a change.
    Tenure(String, Option<crate::offline::Tenure>),
}

/// A point to roll back to (see [`State::mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(usize);

/// Where a state looks up request ids it no longer remembers: its program's journal.
#[derive(Clone)]
struct Recall {
    journal: Arc<dyn Journal>,
    program: String,
}

impl std::fmt::Debug for Recall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recall({}, {})", self.journal.describe(), self.program)
    }
}

/// One program's holders, counters and lots, with what it needs to answer retried
/// request ids.
#[derive(Debug, Default)]
pub struct State {
    holders: HashMap<String, Holder>,
    /// card → counter → entries.
    tallies: HashMap<String, HashMap<String, Tally>>,
    /// counter → entries over every card, for the counters a policy counts over all cards
    /// (capacities): built the first time one is counted so (see [`State::widen`]), kept
    /// from then on. Other counters' entries are kept once, by card.
    counters: HashMap<String, Tally>,
    /// counter → its total over every card: what a count must keep within `MAX_UNITS`.
    totals: HashMap<String, u64>,
    /// Counters counted over all cards before their tally over all cards was built.
    wanted: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// card → lots, in the order they were granted.
    lots: HashMap<String, Vec<LotRow>>,
    next_lot: i64,
    /// request id → the decision recorded under it by a job whose changes are not
    /// committed yet (the journal cannot answer for those).
    pending: HashMap<String, Recorded>,
    /// The ids of the latest committed decisions.
    recent: ids::Recent,
    /// The journal older ids are looked up in; none for a state that is not a lane's.
    recall: Option<Recall>,
    /// card → the cards it replaced (moved to it), in order: its holder's earlier cards.
    previous: HashMap<String, Vec<String>>,
    /// card → the cards it was moved to, in order (the reverse of `previous`): a replaced
    /// card is never registered again.
    replaced_by: HashMap<String, Vec<String>>,
    /// card → its state, for the cards whose holder was erased: known (their balances,
    /// counters and earlier cards stay), with no holder and no facts.
    erased: HashMap<String, CardState>,
    /// The cards whose holder is restricted: data kept, nothing decided.
    restricted: std::collections::HashSet<String>,
    /// venue → its lease and what it spent of it (see `crate::offline`): shared, so that
    /// a decision's lens takes it without copying; changed copy-on-write.
    tenures: Arc<std::collections::BTreeMap<String, crate::offline::Tenure>>,
    /// The journal position this state includes: the program's last event applied.
    seq: u64,
    undo: Vec<Undo>,
}

impl View for State {
    fn holder(&self, card: &str) -> Option<&Holder> {
        self.holders.get(card)
    }

    fn count(&self, card: Option<&str>, counter: &str, from: i64, to: i64) -> u64 {
        match card {
            Some(card) => self
                .tallies
                .get(card)
                .and_then(|t| t.get(counter))
                .map_or(0, |t| t.sum(from, to)),
            None => self.over_all_cards(counter, |t| t.sum(from, to)),
        }
    }

    fn last_use(&self, card: &str, counter: &str) -> Option<i64> {
        let tally = self.tallies.get(card)?.get(counter)?;
        tally.entries.last().map(|&(at, _)| at)
    }

    fn count_entries(&self, card: Option<&str>, counter: &str, from: i64, to: i64) -> u64 {
        match card {
            Some(card) => self
                .tallies
                .get(card)
                .and_then(|t| t.get(counter))
                .map_or(0, |t| t.entries_within(from, to)),
            None => self.over_all_cards(counter, |t| t.entries_within(from, to)),
        }
    }

    fn lot_entries(&self, card: &str) -> u64 {
        self.lots(card).len() as u64
    }

    fn balance(&self, card: &str, asset: &str, at: i64) -> i64 {
        self.lots(card)
            .iter()
            .filter(|lot| lot.asset == asset && lot.counts_at(at))
            .map(|lot| lot.amount)
            .sum()
    }
}

impl State {
    /// The journal position this state includes.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Every lot `card` holds, expired or not, in the order they were granted.
    pub fn lots(&self, card: &str) -> &[LotRow] {
        self.lots.get(card).map_or(&[], Vec::as_slice)
    }

    /// Every asset `card` holds unexpired units of at `at` (assets it holds none of are left out).
    pub fn balances(&self, card: &str, at: i64) -> std::collections::BTreeMap<String, i64> {
        let mut sums = std::collections::BTreeMap::new();
        for lot in self.lots(card).iter().filter(|lot| lot.counts_at(at)) {
            *sums.entry(lot.asset.clone()).or_insert(0) += lot.amount;
        }
        sums.retain(|_, units| *units != 0);
        sums
    }

    /// Units of each asset over every card, expired ones included: what was granted less
    /// what was consumed or forfeited (summed wide, so no number of cards overflows it).
    pub fn units(&self) -> std::collections::BTreeMap<String, i64> {
        let mut sums: std::collections::BTreeMap<String, i128> = Default::default();
        for lot in self.lots.values().flatten() {
            *sums.entry(lot.asset.clone()).or_insert(0) += i128::from(lot.amount);
        }
        sums.into_iter()
            .map(|(asset, units)| (asset, i64::try_from(units).unwrap_or(i64::MAX)))
            .collect()
    }

    /// Looks request ids this state no longer remembers up in `program`'s `journal`.
    pub(crate) fn recall_from(&mut self, journal: Arc<dyn Journal>, program: &str) {
        self.recall = Some(Recall {
            journal,
            program: program.to_string(),
        });
    }

    /// The decision recorded under `request_id`, if any. `looked_up` is the position up to
    /// which the caller found no such id in the journal itself, if it looked: then only
    /// what was committed since is to be checked, in memory unless it forgot some.
    pub fn recorded(&self, request_id: &str, looked_up: Option<u64>) -> Result<Option<Recorded>> {
        if let Some(pending) = self.pending.get(request_id) {
            return Ok(Some(pending.clone()));
        }
        let known_new = !self.recent.may_hold(request_id)
            && looked_up.is_some_and(|position| self.recent.complete_after(position));
        if known_new {
            return Ok(None);
        }
        match &self.recall {
            Some(recall) => recall.journal.recorded(&recall.program, request_id),
            None => Err(Error::host(
                "ledger",
                format!("cannot look request id `{request_id}` up: the state has no journal"),
            )),
        }
    }

    /// Whether `request_id` may have been recorded lately (staged in a batch, or among
    /// the ids committed lately), from memory alone: no means the journal is to be asked.
    pub fn may_have_recorded(&self, request_id: &str) -> bool {
        self.pending.contains_key(request_id) || self.recent.may_hold(request_id)
    }

    /// Marks every decision recorded so far as committed at the state's position: a later
    /// look-up finds it in the journal.
    pub fn committed(&mut self) {
        let seq = self.seq;
        for (id, _) in self.pending.drain() {
            self.recent.remember(&id, seq);
        }
    }

    /// Every card with a holder, sorted.
    pub fn cards(&self) -> Vec<&str> {
        let mut cards: Vec<&str> = self.holders.keys().map(String::as_str).collect();
        cards.sort_unstable();
        cards
    }

    /// A counter's entries for one card, in time order (for comparisons and reports).
    pub fn entries(&self, card: &str, counter: &str) -> &[(i64, u64)] {
        self.tallies
            .get(card)
            .and_then(|t| t.get(counter))
            .map_or(&[], |t| t.entries.as_slice())
    }

    /// The counters recorded for `card`, sorted.
    pub fn counters_of(&self, card: &str) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .tallies
            .get(card)
            .map(|t| t.keys().map(String::as_str).collect())
            .unwrap_or_default();
        names.sort_unstable();
        names
    }

    /// Where to roll back to.
    pub fn mark(&self) -> Mark {
        Mark(self.undo.len())
    }

    /// Takes back every change made since `mark`.
    pub fn rollback(&mut self, mark: Mark) {
        while self.undo.len() > mark.0 {
            let Some(undo) = self.undo.pop() else { break };
            match undo {
                Undo::Holder(card, Some(old)) => {
                    self.holders.insert(card, old);
                }
                Undo::Holder(card, None) => {
                    self.holders.remove(&card);
                }
                Undo::TallyAdded {
                    card,
                    counter,
                    at,
                    amount,
                } => {
                    // Leave no empty entry behind: a rolled-back state equals one that
                    // never saw the change.
                    if let Some(counters) = self.tallies.get_mut(&card) {
                        if let Some(tally) = counters.get_mut(&counter) {
                            tally.remove(at, amount);
                            if tally.entries.is_empty() {
                                counters.remove(&counter);
                            }
                        }
                        if counters.is_empty() {
                            self.tallies.remove(&card);
                        }
                    }
                    if let Some(tally) = self.counters.get_mut(&counter) {
                        tally.remove(at, amount);
                        if tally.entries.is_empty() {
                            self.counters.remove(&counter);
                        }
                    }
                    if let Some(total) = self.totals.get_mut(&counter) {
                        *total -= amount;
                        if *total == 0 {
                            self.totals.remove(&counter);
                        }
                    }
                }
                Undo::CardTallies(card, Some(old)) => {
                    self.tallies.insert(card, old);
                }
                Undo::CardTallies(card, None) => {
                    self.tallies.remove(&card);
                }
                Undo::Lots(card, Some(old)) => {
                    self.lots.insert(card, old);
                }
                Undo::Lots(card, None) => {
                    self.lots.remove(&card);
                }
                Undo::NextLot(next) => self.next_lot = next,
                Undo::Recorded(id) => {
                    self.pending.remove(&id);
                }
                Undo::Previous(card) => {
                    if let Some(cards) = self.previous.get_mut(&card) {
                        if let Some(old) = cards.pop() {
                            // The latest move of `old` is this one: undone first.
                            if let Some(news) = self.replaced_by.get_mut(&old) {
                                news.pop();
                                if news.is_empty() {
                                    self.replaced_by.remove(&old);
                                }
                            }
                        }
                        if cards.is_empty() {
                            self.previous.remove(&card);
                        }
                    }
                }
                Undo::Seq(seq) => self.seq = seq,
                Undo::Erased(card, Some(old)) => {
                    self.erased.insert(card, old);
                }
                Undo::Erased(card, None) => {
                    self.erased.remove(&card);
                }
                Undo::Restricted(card, true) => {
                    self.restricted.insert(card);
                }
                Undo::Restricted(card, false) => {
                    self.restricted.remove(&card);
                }
                Undo::Tenure(venue, Some(old)) => {
                    Arc::make_mut(&mut self.tenures).insert(venue, old);
                }
                Undo::Tenure(venue, None) => {
                    Arc::make_mut(&mut self.tenures).remove(&venue);
                }
            }
        }
    }

    /// Keeps every change since `mark` for good: they are committed.
    pub fn settle(&mut self, mark: Mark) {
        self.undo.truncate(mark.0);
    }

    /// Moves the journal position on by `events`.
    pub fn advance(&mut self, events: u64) {
        self.undo.push(Undo::Seq(self.seq));
        self.seq += events;
    }

    fn put_holder(&mut self, holder: Holder) {
        let old = self.holders.insert(holder.card.clone(), holder.clone());
        self.undo.push(Undo::Holder(holder.card, old));
    }

    fn lots_mut(&mut self, card: &str) -> &mut Vec<LotRow> {
        self.undo
            .push(Undo::Lots(card.to_string(), self.lots.get(card).cloned()));
        self.lots.entry(card.to_string()).or_default()
    }

    /// Units of `asset` on `card`, expired or not: what a grant must keep within `MAX_UNITS`.
    fn held_in_all(&self, card: &str, asset: &str) -> i64 {
        self.lots(card)
            .iter()
            .filter(|lot| lot.asset == asset)
            .map(|lot| lot.amount)
            .sum()
    }

    fn add_lot(
        &mut self,
        card: &str,
        asset: &str,
        amount: i64,
        expires: Option<i64>,
    ) -> Result<(), Refused> {
        let held = self.held_in_all(card, asset);
        if held
            .checked_add(amount)
            .is_none_or(|total| total > MAX_UNITS)
        {
            return Err(Refused(format!(
                "card `{card}` would hold more than {MAX_UNITS} `{asset}` ({held} + {amount})"
            )));
        }
        self.undo.push(Undo::NextLot(self.next_lot));
        self.next_lot += 1;
        let id = self.next_lot;
        self.lots_mut(card).push(LotRow {
            id,
            asset: asset.to_string(),
            amount,
            expires,
        });
        Ok(())
    }

    fn add_tally(
        &mut self,
        card: &str,
        counter: &str,
        at: i64,
        amount: u64,
    ) -> Result<(), Refused> {
        let card_total = self
            .tallies
            .get(card)
            .and_then(|t| t.get(counter))
            .map_or(0, |t| t.total);
        let all_total = self.totals.get(counter).copied().unwrap_or(0);
        let limit = MAX_UNITS as u64;
        let fits = |total: u64| total.checked_add(amount).is_some_and(|sum| sum <= limit);
        if !fits(card_total) || !fits(all_total) {
            return Err(Refused(format!(
                "counter `{counter}` would exceed {MAX_UNITS} (count of {amount})"
            )));
        }
        self.tallies
            .entry(card.to_string())
            .or_default()
            .entry(counter.to_string())
            .or_default()
            .insert(at, amount);
        if let Some(all) = self.counters.get_mut(counter) {
            all.insert(at, amount);
        }
        *self.totals.entry(counter.to_string()).or_default() += amount;
        self.undo.push(Undo::TallyAdded {
            card: card.to_string(),
            counter: counter.to_string(),
            at,
            amount,
        });
        Ok(())
    }

    /// `measure` of `counter`'s entries over every card: from its tally over all cards if
    /// built, else by going through every card's (slower, the same answer), asking for
    /// the tally to be built at the next settled moment.
    fn over_all_cards(&self, counter: &str, measure: impl Fn(&Tally) -> u64) -> u64 {
        if let Some(all) = self.counters.get(counter) {
            return measure(all);
        }
        if !self.totals.contains_key(counter) {
            return 0;
        }
        self.wanted.lock().insert(counter.to_string());
        // Within the counter's total, itself within `MAX_UNITS`: no overflow.
        self.tallies
            .values()
            .filter_map(|counters| counters.get(counter))
            .map(measure)
            .fold(0u64, u64::saturating_add)
    }

    /// Builds the tallies over all cards that counts asked for. Only on a settled state
    /// (nothing to take back): from then on changes keep them up to date, and taking a
    /// change back takes it out of them too.
    pub(crate) fn widen(&mut self) {
        if !self.undo.is_empty() {
            return;
        }
        let wanted: Vec<String> = self.wanted.lock().drain().collect();
        for counter in wanted {
            if self.counters.contains_key(&counter) {
                continue;
            }
            let mut entries: Vec<(i64, u64)> = self
                .tallies
                .values()
                .filter_map(|counters| counters.get(&counter))
                .flat_map(|t| t.entries.iter().copied())
                .collect();
            entries.sort_by_key(|&(at, _)| at);
            let total = self.totals.get(&counter).copied().unwrap_or(0);
            self.counters.insert(counter, Tally { entries, total });
        }
    }

    /// Gives back what the entries' growth left unused (after a start: the state then
    /// only grows slowly).
    pub(crate) fn shrink(&mut self) {
        for counters in self.tallies.values_mut() {
            for tally in counters.values_mut() {
                tally.entries.shrink_to_fit();
            }
        }
        for lots in self.lots.values_mut() {
            lots.shrink_to_fit();
        }
    }

    /// `card` and every card its holder had before it (cards replaced by it, and theirs),
    /// `card` first: the cards whose history is the holder's.
    pub fn lineage(&self, card: &str) -> Vec<String> {
        let mut cards = vec![card.to_string()];
        let mut next = 0;
        // A card moves only to a card no holder has, so the chain has no cycles; the
        // bound is a guard all the same.
        while next < cards.len() && cards.len() <= 10_000 {
            if let Some(earlier) = self.previous.get(&cards[next]) {
                cards.extend(earlier.iter().cloned());
            }
            next += 1;
        }
        cards
    }

    /// Remembers that `old` was replaced by `new`.
    fn replaced(&mut self, old: &str, new: &str) {
        self.previous
            .entry(new.to_string())
            .or_default()
            .push(old.to_string());
        self.replaced_by
            .entry(old.to_string())
            .or_default()
            .push(new.to_string());
        self.undo.push(Undo::Previous(new.to_string()));
    }

    /// The card `card`'s holder has now, if `card` was replaced (moved to a new card,
    /// perhaps replaced in turn): `None` for a card that never moved.
    pub fn replaced_by(&self, card: &str) -> Option<&str> {
        let mut now = self.replaced_by.get(card)?.last()?;
        // A card moves only to a card no holder has, so the chain has no cycles; the
        // bound is a guard all the same, as in `lineage`.
        for _ in 0..10_000 {
            match self.replaced_by.get(now).and_then(|news| news.last()) {
                Some(next) => now = next,
                None => break,
            }
        }
        Some(now)
    }

    /// Records `decision` under `request_id`, so that a retry gets it back before it is
    /// committed (and [`State::committed`]) too.
    pub fn record(&mut self, request_id: &str, recorded: Recorded) {
        if self
            .pending
            .insert(request_id.to_string(), recorded)
            .is_none()
        {
            self.undo.push(Undo::Recorded(request_id.to_string()));
        }
    }

    /// Registers a holder, or replaces the facts of an existing one; a new holder's
    /// starting balances are granted without expiry.
    pub fn register(&mut self, holder: &Holder) -> Result<(), Refused> {
        if self.erased.contains_key(&holder.card) {
            return Err(Refused(format!(
                "card `{}` was erased: its number is not given to a holder again",
                holder.card
            )));
        }
        let existed = self.holders.contains_key(&holder.card);
        if existed && !holder.balances.is_empty() {
            return Err(Refused(format!(
                "holder `{}` exists already: starting balances are only for new cards",
                holder.card
            )));
        }
        let mut facts = holder.clone();
        facts.balances.clear();
        self.put_holder(facts);
        for (asset, &amount) in &holder.balances {
            if amount < 0 {
                return Err(Refused(format!(
                    "holder `{}`: starting balance of `{asset}` is negative",
                    holder.card
                )));
            }
            if amount > 0 {
                self.add_lot(&holder.card, asset, amount, None)?;
            }
        }
        Ok(())
    }

    /// Whether `card` is a card of the program: its holder's, or one whose holder was
    /// erased.
    pub fn known(&self, card: &str) -> bool {
        self.holders.contains_key(card) || self.erased.contains_key(card)
    }

    /// The state of `card` if its holder was erased.
    pub fn erased(&self, card: &str) -> Option<CardState> {
        self.erased.get(card).copied()
    }

    /// Whether the holder of `card` is restricted.
    pub fn restricted(&self, card: &str) -> bool {
        self.restricted.contains(card)
    }

    /// Sets the state of `card`, holder or not; false if the card is unknown.
    fn set_card_state(&mut self, card: &str, state: CardState) -> bool {
        if let Some(holder) = self.holders.get(card) {
            let mut holder = holder.clone();
            holder.state = state;
            self.put_holder(holder);
            return true;
        }
        if let Some(&old) = self.erased.get(card) {
            self.erased.insert(card.to_string(), state);
            self.undo.push(Undo::Erased(card.to_string(), Some(old)));
            return true;
        }
        false
    }

    /// Forgets the facts of `card`'s holder: the card stays known, with its state.
    fn erase(&mut self, card: &str) -> Result<(), Refused> {
        if self.erased.contains_key(card) {
            return Ok(());
        }
        let Some(holder) = self.holders.remove(card) else {
            return Err(Refused(format!("card `{card}` has no holder")));
        };
        let state = holder.state;
        self.undo.push(Undo::Holder(card.to_string(), Some(holder)));
        self.erased.insert(card.to_string(), state);
        self.undo.push(Undo::Erased(card.to_string(), None));
        Ok(())
    }

    /// A registration rewritten by an erasure: the card is known without facts; a new
    /// one gets its starting balances as a registration would.
    fn redacted(
        &mut self,
        card: &str,
        state: CardState,
        balances: &std::collections::BTreeMap<String, i64>,
    ) -> Result<(), Refused> {
        if self.known(card) {
            if self.holders.contains_key(card) {
                self.erase(card)?;
            }
            self.set_card_state(card, state);
            if !balances.is_empty() {
                return Err(Refused(format!(
                    "card `{card}` exists already: starting balances are only for new cards"
                )));
            }
            return Ok(());
        }
        self.erased.insert(card.to_string(), state);
        self.undo.push(Undo::Erased(card.to_string(), None));
        for (asset, &amount) in balances {
            if amount < 0 {
                return Err(Refused(format!(
                    "card `{card}`: starting balance of `{asset}` is negative"
                )));
            }
            if amount > 0 {
                self.add_lot(card, asset, amount, None)?;
            }
        }
        Ok(())
    }

    fn restrict(&mut self, card: &str, restricted: bool) {
        let was = self.restricted.contains(card);
        if was == restricted {
            return;
        }
        if restricted {
            self.restricted.insert(card.to_string());
        } else {
            self.restricted.remove(card);
        }
        self.undo.push(Undo::Restricted(card.to_string(), was));
    }

    /// Applies a change read from the journal (or about to be written to it).
    pub fn apply_change(&mut self, change: &Change) -> Result<(), Refused> {
        match change {
            Change::Registered { holder, .. } => self.register(holder),
            Change::Redacted {
                card,
                state,
                balances,
                ..
            } => self.redacted(card, *state, balances),
            Change::Erased {
                card,
                at,
                cards,
                effects,
                ..
            } => {
                self.apply(card, *at, effects)?;
                for card in cards {
                    self.erase(card)?;
                }
                Ok(())
            }
            Change::Restricted {
                card, restricted, ..
            } => {
                if !self.known(card) {
                    return Err(Refused(format!("card `{card}` has no holder")));
                }
                self.restrict(card, *restricted);
                Ok(())
            }
            Change::Leased { venue, lease, .. } => {
                let mut tenure = crate::offline::Tenure::new(lease.clone());
                // What waits for the venue's lease waits on under the new one.
                tenure.waiting = self
                    .tenures
                    .get(venue)
                    .map(|t| t.waiting.clone())
                    .unwrap_or_default();
                self.put_tenure(venue, Some(tenure));
                Ok(())
            }
            Change::Returned { venue, .. } => {
                // What waits for the lease stays until the city decides it.
                let waiting = self
                    .tenures
                    .get(venue)
                    .map(|t| t.waiting.clone())
                    .unwrap_or_default();
                let tenure = (!waiting.is_empty()).then(|| crate::offline::Tenure {
                    waiting,
                    ..Default::default()
                });
                self.put_tenure(venue, tenure);
                Ok(())
            }
            Change::Waiting {
                venue,
                request_id,
                request,
                ..
            } => {
                let mut tenure = self.tenures.get(venue).cloned().unwrap_or_default();
                tenure.waiting.push((request_id.clone(), request.clone()));
                self.put_tenure(venue, Some(tenure));
                Ok(())
            }
            Change::Recalled { venue, .. } => {
                if let Some(tenure) = self.tenures.get(venue) {
                    let mut tenure = tenure.clone();
                    tenure.recalled = true;
                    self.put_tenure(venue, Some(tenure));
                }
                Ok(())
            }
            Change::Decided {
                card,
                at,
                request_id,
                effects,
                decision,
                ..
            } => {
                self.apply(card, *at, effects)?;
                if let Some(id) = request_id {
                    self.stop_waiting(id);
                }
                if self.lends() {
                    // Only where something is lent: which venue a decision came through is
                    // in its answer, read here rather than carried by every event.
                    let venue = crate::offline::venue_of(decision);
                    self.spend_escrow(venue.as_deref(), card, effects)?;
                }
                // A change read from the journal, at the next position: committed.
                if let Some(id) = request_id {
                    self.recent.remember(id, self.seq + 1);
                }
                Ok(())
            }
        }
    }

    /// The state as comparable data: every card's holder, lots (without ids), counter
    /// entries and earlier cards — what a rebuild from the journal must equal. (Request
    /// ids are the journal's.)
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        for (venue, tenure) in self.tenures.iter() {
            out.push_str(&format!("venue {venue}: {tenure:?}\n"));
        }
        let mut cards: Vec<&str> = self
            .holders
            .keys()
            .chain(self.erased.keys())
            .map(String::as_str)
            .collect();
        cards.sort_unstable();
        for card in cards {
            match self.holders.get(card) {
                Some(holder) => out.push_str(&format!("card {card}: {holder:?}\n")),
                None => out.push_str(&format!("card {card}: erased {:?}\n", self.erased(card))),
            }
            let mut lots: Vec<_> = self
                .lots(card)
                .iter()
                .map(|l| (&l.asset, l.amount, l.expires))
                .collect();
            lots.sort();
            out.push_str(&format!("  lots {lots:?}\n"));
            for counter in self.counters_of(card) {
                out.push_str(&format!("  {counter}: {:?}\n", self.entries(card, counter)));
            }
            if let Some(previous) = self.previous.get(card) {
                out.push_str(&format!("  previous {previous:?}\n"));
            }
            if self.restricted(card) {
                out.push_str("  restricted\n");
            }
        }
        out
    }
}

impl State {
    /// The venues' leases and what each spent (see `crate::offline`).
    pub fn tenures(&self) -> &Arc<std::collections::BTreeMap<String, crate::offline::Tenure>> {
        &self.tenures
    }

    /// A request decided at last no longer waits for a venue's lease.
    pub(crate) fn stop_waiting(&mut self, request_id: &str) {
        let found = self
            .tenures
            .iter()
            .find(|(_, t)| t.waiting.iter().any(|(id, _)| id == request_id))
            .map(|(venue, t)| (venue.clone(), t.clone()));
        if let Some((venue, mut tenure)) = found {
            tenure.waiting.retain(|(id, _)| id != request_id);
            let keep = tenure.lease.is_some() || !tenure.waiting.is_empty();
            self.put_tenure(&venue, keep.then_some(tenure));
        }
    }

    /// The venue whose lease `request_id` waits for, if it waits.
    pub fn waiting_for(&self, request_id: &str) -> Option<&str> {
        self.tenures
            .iter()
            .find(|(_, t)| t.waiting.iter().any(|(id, _)| id == request_id))
            .map(|(venue, _)| venue.as_str())
    }

    /// Whether any venue holds a lease on this program.
    pub fn lends(&self) -> bool {
        self.tenures.values().any(|t| t.lease.is_some())
    }

    /// Sets (or, with `None`, ends) `venue`'s tenure.
    pub(crate) fn put_tenure(&mut self, venue: &str, tenure: Option<crate::offline::Tenure>) {
        let tenures = Arc::make_mut(&mut self.tenures);
        let old = match tenure {
            Some(tenure) => tenures.insert(venue.to_string(), tenure),
            None => tenures.remove(venue),
        };
        self.undo.push(Undo::Tenure(venue.to_string(), old));
    }

    /// Counts what a decision that came through `venue` spent on `card` against that
    /// venue's escrow (what it spends is escrowed to it first), then holds the card to
    /// every escrow on it: its balance never falls below what is still lent. A decision
    /// that would spend money lent to a venue is refused.
    pub(crate) fn spend_escrow(
        &mut self,
        venue: Option<&str>,
        card: &str,
        effects: &[Effect],
    ) -> Result<(), Refused> {
        if let Some(venue) = venue
            && let Some(tenure) = self.tenures.get(venue)
            && let Some(spent) = tenure.spending(card, effects)
        {
            let mut tenure = tenure.clone();
            tenure.spend(card, spent);
            self.put_tenure(venue, Some(tenure));
        }
        if crate::offline::planted::EscrowNotHeld::planted() {
            return Ok(());
        }
        for effect in effects {
            let Some(asset) = effect.asset() else {
                continue;
            };
            let lent = crate::offline::lent(&self.tenures, card, asset);
            if lent > 0 {
                let balance: i64 = self
                    .lots(card)
                    .iter()
                    .filter(|lot| lot.asset == asset)
                    .map(|lot| lot.amount)
                    .sum();
                if balance < lent {
                    return Err(Refused(format!(
                        "card `{card}` would hold {balance} `{asset}`, less than the {lent} lent to venues"
                    )));
                }
            }
        }
        Ok(())
    }
}
