//! The in-memory ledger: for suites and benchmarks, where nothing needs to outlive the
//! process. A transaction writes in place and keeps an undo log for rollback.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RawMutex, lock_api::ArcMutexGuard};

use super::{Ledger, LotRow, Record, Recorded, Txn};
use crate::error::Result;
use crate::model::Holder;

/// A ledger held in memory; every transaction takes one lock.
#[derive(Default)]
pub struct MemoryLedger {
    state: Arc<Mutex<State>>,
}

impl MemoryLedger {
    pub fn new() -> MemoryLedger {
        MemoryLedger::default()
    }
}

#[derive(Default)]
struct State {
    programs: HashMap<String, Program>,
    next_lot: i64,
}

#[derive(Default)]
struct Program {
    holders: HashMap<String, Holder>,
    /// (card, counter) → (at, amount), in insertion order.
    tallies: HashMap<(String, String), Vec<(i64, u64)>>,
    /// lot id → (card, lot)
    lots: BTreeMap<i64, (String, LotRow)>,
    decisions: HashMap<String, Recorded>,
}

enum Undo {
    Holder(String, Option<Holder>),
    Tally(String, String),
    LotAdded(i64),
    LotChanged(i64, String, LotRow),
    Recorded(String),
}

impl Ledger for MemoryLedger {
    fn begin(&self, program: &str) -> Result<Box<dyn Txn>> {
        let mut state = self.state.lock_arc();
        state.programs.entry(program.to_string()).or_default();
        Ok(Box::new(MemoryTxn {
            state,
            program: program.to_string(),
            undo: Vec::new(),
        }))
    }
}

struct MemoryTxn {
    state: ArcMutexGuard<RawMutex, State>,
    program: String,
    undo: Vec<Undo>,
}

impl MemoryTxn {
    fn data(&mut self) -> &mut Program {
        self.state.programs.entry(self.program.clone()).or_default()
    }
}

impl Drop for MemoryTxn {
    fn drop(&mut self) {
        while let Some(undo) = self.undo.pop() {
            let data = self.data();
            match undo {
                Undo::Holder(card, Some(old)) => {
                    data.holders.insert(card, old);
                }
                Undo::Holder(card, None) => {
                    data.holders.remove(&card);
                }
                Undo::Tally(card, counter) => {
                    if let Some(list) = data.tallies.get_mut(&(card, counter)) {
                        list.pop();
                    }
                }
                Undo::LotAdded(id) => {
                    data.lots.remove(&id);
                }
                Undo::LotChanged(id, card, lot) => {
                    data.lots.insert(id, (card, lot));
                }
                Undo::Recorded(id) => {
                    data.decisions.remove(&id);
                }
            }
        }
    }
}

impl Txn for MemoryTxn {
    fn holder(&mut self, card: &str) -> Result<Option<Holder>> {
        Ok(self.data().holders.get(card).cloned())
    }

    fn put_holder(&mut self, holder: &Holder) -> Result<()> {
        let mut facts = holder.clone();
        facts.balances.clear();
        let old = self.data().holders.insert(holder.card.clone(), facts);
        self.undo.push(Undo::Holder(holder.card.clone(), old));
        Ok(())
    }

    fn tally_sum(&mut self, card: Option<&str>, counter: &str, from: i64, to: i64) -> Result<u64> {
        let in_window = |list: &Vec<(i64, u64)>| -> u64 {
            list.iter()
                .filter(|(at, _)| (from..to).contains(at))
                .map(|(_, amount)| amount)
                .sum()
        };
        let data = self.data();
        Ok(match card {
            Some(card) => data
                .tallies
                .get(&(card.to_string(), counter.to_string()))
                .map_or(0, in_window),
            None => data
                .tallies
                .iter()
                .filter(|((_, c), _)| c == counter)
                .map(|(_, list)| in_window(list))
                .sum(),
        })
    }

    fn last_tally(&mut self, card: &str, counter: &str) -> Result<Option<i64>> {
        Ok(self
            .data()
            .tallies
            .get(&(card.to_string(), counter.to_string()))
            .and_then(|list| list.iter().map(|(at, _)| *at).max()))
    }

    fn add_tally(&mut self, card: &str, counter: &str, at: i64, amount: u64) -> Result<()> {
        let key = (card.to_string(), counter.to_string());
        self.data()
            .tallies
            .entry(key)
            .or_default()
            .push((at, amount));
        self.undo
            .push(Undo::Tally(card.to_string(), counter.to_string()));
        Ok(())
    }

    fn lots(&mut self, card: &str) -> Result<Vec<LotRow>> {
        Ok(self
            .data()
            .lots
            .values()
            .filter(|(owner, _)| owner == card)
            .map(|(_, lot)| lot.clone())
            .collect())
    }

    fn add_lot(
        &mut self,
        card: &str,
        asset: &str,
        amount: i64,
        expires: Option<i64>,
    ) -> Result<()> {
        self.state.next_lot += 1;
        let id = self.state.next_lot;
        let lot = LotRow {
            id,
            asset: asset.to_string(),
            amount,
            expires,
        };
        self.data().lots.insert(id, (card.to_string(), lot));
        self.undo.push(Undo::LotAdded(id));
        Ok(())
    }

    fn set_lot_amount(&mut self, id: i64, amount: i64) -> Result<()> {
        let data = self.data();
        let Some((card, lot)) = data.lots.get(&id).cloned() else {
            return Ok(());
        };
        if amount == 0 {
            data.lots.remove(&id);
        } else if let Some((_, row)) = data.lots.get_mut(&id) {
            row.amount = amount;
        }
        self.undo.push(Undo::LotChanged(id, card, lot));
        Ok(())
    }

    fn move_lots(&mut self, from: &str, to: &str) -> Result<()> {
        let data = self.data();
        let mut undo = Vec::new();
        for (id, (card, lot)) in data.lots.iter_mut() {
            if card == from {
                undo.push(Undo::LotChanged(*id, card.clone(), lot.clone()));
                *card = to.to_string();
            }
        }
        self.undo.extend(undo);
        Ok(())
    }

    fn recorded(&mut self, request_id: &str) -> Result<Option<Recorded>> {
        Ok(self.data().decisions.get(request_id).cloned())
    }

    fn record(&mut self, record: &Record) -> Result<()> {
        // Only keyed decisions are kept: memory ledgers serve suites, not audits.
        if let Some(id) = &record.request_id {
            let recorded = Recorded {
                request: record.request.clone(),
                decision: record.decision.clone(),
            };
            self.data().decisions.insert(id.clone(), recorded);
            self.undo.push(Undo::Recorded(id.clone()));
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.undo.clear();
        Ok(())
    }
}
