//! The ledger: holders, counters, asset lots and the decision log, behind a storage trait.
//!
//! A backend provides a few primitive reads and writes inside a transaction scoped to one
//! program ([`Txn`]); everything with meaning — balances, earliest-expiry-first
//! consumption, transfers that keep expiry, moving a holder to a new card — is written
//! once here, on top of those primitives, so every backend behaves the same.
//!
//! A transaction serializes every decision of its program from the first read to the
//! commit (SQLite: `BEGIN IMMEDIATE`; memory: one lock). Per-card locking would not be
//! enough: capacities are counted over all cards of a program. A PostgreSQL backend would
//! take a per-program advisory lock (`pg_advisory_xact_lock`) at `begin` and otherwise map
//! the primitives to the same tables.

mod memory;
mod sqlite;

use std::collections::BTreeMap;

pub use memory::MemoryLedger;
pub use sqlite::SqliteLedger;

use crate::error::{Error, Result};
use crate::model::{CardState, Holder};

/// A store of holders, counters, lots and decisions for any number of programs.
pub trait Ledger: Send + Sync {
    /// Starts a transaction over `program`'s data. It holds the program's write lock until
    /// it is committed or dropped; dropping it without commit rolls everything back.
    fn begin(&self, program: &str) -> Result<Box<dyn Txn>>;
}

/// One lot of an asset: units granted together, with the same expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotRow {
    pub id: i64,
    pub asset: String,
    pub amount: i64,
    pub expires: Option<i64>,
}

impl LotRow {
    /// Whether the lot's units still count at `at`.
    pub fn counts_at(&self, at: i64) -> bool {
        self.expires.is_none_or(|expires| at < expires)
    }
}

/// A decision as written to the log.
#[derive(Debug, Clone)]
pub struct Record {
    pub request_id: Option<String>,
    pub card: String,
    pub at: i64,
    pub request: String,
    pub decision: String,
    pub digest: String,
    pub fuel: u64,
}

/// An earlier decision found by its request id.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub request: String,
    pub decision: String,
}

/// The primitive operations of a transaction over one program's data.
pub trait Txn: Send {
    /// The holder of `card`, with empty `balances`.
    fn holder(&mut self, card: &str) -> Result<Option<Holder>>;
    /// Inserts or replaces a holder (its `balances` are ignored).
    fn put_holder(&mut self, holder: &Holder) -> Result<()>;
    /// Sum of `counter` over `[from, to)`, for one card or (`None`) all cards.
    fn tally_sum(&mut self, card: Option<&str>, counter: &str, from: i64, to: i64) -> Result<u64>;
    /// The latest time `counter` was recorded for `card`.
    fn last_tally(&mut self, card: &str, counter: &str) -> Result<Option<i64>>;
    /// Records `amount` under `counter` for `card` at `at`.
    fn add_tally(&mut self, card: &str, counter: &str, at: i64, amount: u64) -> Result<()>;
    /// Every lot `card` holds, expired or not, in the order they were granted.
    fn lots(&mut self, card: &str) -> Result<Vec<LotRow>>;
    /// Adds a lot to `card`.
    fn add_lot(&mut self, card: &str, asset: &str, amount: i64, expires: Option<i64>)
    -> Result<()>;
    /// Changes a lot's amount; 0 removes it.
    fn set_lot_amount(&mut self, id: i64, amount: i64) -> Result<()>;
    /// Gives every lot of `from` to `to`.
    fn move_lots(&mut self, from: &str, to: &str) -> Result<()>;
    /// The decision recorded under `request_id`, if any.
    fn recorded(&mut self, request_id: &str) -> Result<Option<Recorded>>;
    /// Appends a decision to the log.
    fn record(&mut self, record: &Record) -> Result<()>;
    /// Makes every write of the transaction durable, atomically.
    fn commit(self: Box<Self>) -> Result<()>;
}

/// A change to the ledger requested by an allowed decision (see the WIT `effect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Count {
        counter: String,
        amount: u64,
    },
    Grant {
        asset: String,
        amount: i64,
        expires: Option<i64>,
    },
    Consume {
        asset: String,
        amount: i64,
    },
    Transfer {
        to_card: String,
        asset: String,
        amount: i64,
    },
    Forfeit {
        asset: String,
    },
    SetState(CardState),
    MoveCard {
        new_card: String,
    },
}

impl Effect {
    /// The asset the effect moves, if it moves one.
    pub fn asset(&self) -> Option<&str> {
        match self {
            Effect::Grant { asset, .. }
            | Effect::Consume { asset, .. }
            | Effect::Transfer { asset, .. }
            | Effect::Forfeit { asset } => Some(asset),
            Effect::Count { .. } | Effect::SetState(_) | Effect::MoveCard { .. } => None,
        }
    }
}

/// Unexpired units of `asset` held by `card` at `at`.
pub fn balance(txn: &mut dyn Txn, card: &str, asset: &str, at: i64) -> Result<i64> {
    Ok(txn
        .lots(card)?
        .iter()
        .filter(|lot| lot.asset == asset && lot.counts_at(at))
        .map(|lot| lot.amount)
        .sum())
}

/// Every asset `card` holds unexpired units of at `at` (assets it holds none of are left out).
pub fn balances(txn: &mut dyn Txn, card: &str, at: i64) -> Result<BTreeMap<String, i64>> {
    let mut sums = BTreeMap::new();
    for lot in txn.lots(card)?.into_iter().filter(|lot| lot.counts_at(at)) {
        *sums.entry(lot.asset).or_insert(0) += lot.amount;
    }
    sums.retain(|_, units| *units != 0);
    Ok(sums)
}

/// Registers a holder, granting its starting balances without expiry.
pub fn register(txn: &mut dyn Txn, holder: &Holder) -> Result<()> {
    txn.put_holder(holder)?;
    for (asset, &amount) in &holder.balances {
        if amount < 0 {
            return Err(Error::invalid(format!(
                "holder `{}`: starting balance of `{asset}` is negative",
                holder.card
            )));
        }
        if amount > 0 {
            txn.add_lot(&holder.card, asset, amount, None)?;
        }
    }
    Ok(())
}

/// Why an effect could not be applied: the policy asked for something impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Applies `effects` of a decision by `card` at `at`, in order.
///
/// `Ok(Err(refused))` means the policy asked for something impossible; the caller must
/// then drop the transaction so that none of the effects are committed.
pub fn apply(
    txn: &mut dyn Txn,
    card: &str,
    at: i64,
    effects: &[Effect],
) -> Result<Result<(), Refused>> {
    for (index, effect) in effects.iter().enumerate() {
        if let Err(Refused(why)) = apply_one(txn, card, at, effect)? {
            return Ok(Err(Refused(format!("effect {}: {why}", index + 1))));
        }
    }
    Ok(Ok(()))
}

fn apply_one(
    txn: &mut dyn Txn,
    card: &str,
    at: i64,
    effect: &Effect,
) -> Result<Result<(), Refused>> {
    let refuse = |why: String| Ok(Err(Refused(why)));
    match effect {
        Effect::Count { counter, amount } => txn.add_tally(card, counter, at, *amount)?,
        Effect::Grant {
            asset,
            amount,
            expires,
        } => {
            if *amount <= 0 {
                return refuse(format!("grant of {amount} `{asset}` is not positive"));
            }
            txn.add_lot(card, asset, *amount, *expires)?;
        }
        Effect::Consume { asset, amount } => {
            if let Err(why) = take(txn, card, asset, *amount, at)? {
                return Ok(Err(why));
            }
        }
        Effect::Transfer {
            to_card,
            asset,
            amount,
        } => {
            if to_card == card {
                return refuse(format!("transfer to the acting card `{card}` itself"));
            }
            if txn.holder(to_card)?.is_none() {
                return refuse(format!("transfer to unknown card `{to_card}`"));
            }
            match take(txn, card, asset, *amount, at)? {
                Err(why) => return Ok(Err(why)),
                Ok(taken) => {
                    for (units, expires) in taken {
                        txn.add_lot(to_card, asset, units, expires)?;
                    }
                }
            }
        }
        Effect::Forfeit { asset } => {
            for lot in txn
                .lots(card)?
                .into_iter()
                .filter(|lot| &lot.asset == asset)
            {
                txn.set_lot_amount(lot.id, 0)?;
            }
        }
        Effect::SetState(state) => {
            let Some(mut holder) = txn.holder(card)? else {
                return refuse(format!("card `{card}` has no holder"));
            };
            holder.state = *state;
            txn.put_holder(&holder)?;
        }
        Effect::MoveCard { new_card } => {
            if new_card == card {
                return refuse(format!("card `{card}` cannot move to itself"));
            }
            if txn.holder(new_card)?.is_some() {
                return refuse(format!("new card `{new_card}` already belongs to a holder"));
            }
            let Some(mut holder) = txn.holder(card)? else {
                return refuse(format!("card `{card}` has no holder"));
            };
            let mut moved = holder.clone();
            moved.card = new_card.clone();
            txn.put_holder(&moved)?;
            txn.move_lots(card, new_card)?;
            holder.state = CardState::Blocked;
            txn.put_holder(&holder)?;
        }
    }
    Ok(Ok(()))
}

/// Units taken from one lot, with that lot's expiry.
type Taken = (i64, Option<i64>);

/// Removes `amount` unexpired units of `asset` from `card`, earliest expiry first (units
/// without expiry last), and returns what was taken as (units, expiry) pairs.
fn take(
    txn: &mut dyn Txn,
    card: &str,
    asset: &str,
    amount: i64,
    at: i64,
) -> Result<Result<Vec<Taken>, Refused>> {
    if amount <= 0 {
        return Ok(Err(Refused(format!(
            "amount {amount} of `{asset}` is not positive"
        ))));
    }
    let mut lots: Vec<LotRow> = txn
        .lots(card)?
        .into_iter()
        .filter(|lot| lot.asset == asset && lot.counts_at(at))
        .collect();
    let held: i64 = lots.iter().map(|lot| lot.amount).sum();
    if held < amount {
        return Ok(Err(Refused(format!(
            "card `{card}` holds {held} `{asset}`, fewer than {amount}"
        ))));
    }
    lots.sort_by_key(|lot| (lot.expires.is_none(), lot.expires, lot.id));
    let mut left = amount;
    let mut taken = Vec::new();
    for lot in lots {
        if left == 0 {
            break;
        }
        let units = left.min(lot.amount);
        txn.set_lot_amount(lot.id, lot.amount - units)?;
        taken.push((units, lot.expires));
        left -= units;
    }
    Ok(Ok(taken))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn holder(card: &str) -> Holder {
        Holder {
            card: card.into(),
            birth_date: jiff::civil::date(2010, 1, 1),
            municipality: "antwerpen".into(),
            statuses: vec![],
            state: CardState::Active,
            attributes: Default::default(),
            balances: Default::default(),
        }
    }

    fn backends() -> Vec<Arc<dyn Ledger>> {
        vec![
            Arc::new(MemoryLedger::new()),
            Arc::new(SqliteLedger::in_memory().unwrap()),
        ]
    }

    #[test]
    fn consumption_takes_the_earliest_expiry_first_and_skips_expired_units() {
        for ledger in backends() {
            let mut txn = ledger.begin("p").unwrap();
            txn.put_holder(&holder("A")).unwrap();
            txn.add_lot("A", "benefit", 1, Some(300)).unwrap();
            txn.add_lot("A", "benefit", 1, Some(100)).unwrap();
            txn.add_lot("A", "benefit", 1, Some(50)).unwrap(); // expired at 60
            assert_eq!(balance(&mut *txn, "A", "benefit", 60).unwrap(), 2);
            apply(
                &mut *txn,
                "A",
                60,
                &[Effect::Consume {
                    asset: "benefit".into(),
                    amount: 1,
                }],
            )
            .unwrap()
            .unwrap();
            let left: Vec<_> = txn.lots("A").unwrap().iter().map(|l| l.expires).collect();
            assert_eq!(left, vec![Some(300), Some(50)]);
        }
    }

    #[test]
    fn transfers_keep_each_lots_expiry() {
        for ledger in backends() {
            let mut txn = ledger.begin("p").unwrap();
            txn.put_holder(&holder("A")).unwrap();
            txn.put_holder(&holder("B")).unwrap();
            txn.add_lot("A", "benefit", 2, Some(100)).unwrap();
            txn.add_lot("A", "benefit", 1, Some(200)).unwrap();
            let transfer = Effect::Transfer {
                to_card: "B".into(),
                asset: "benefit".into(),
                amount: 3,
            };
            apply(&mut *txn, "A", 10, &[transfer]).unwrap().unwrap();
            let mut got: Vec<_> = txn
                .lots("B")
                .unwrap()
                .iter()
                .map(|l| (l.amount, l.expires))
                .collect();
            got.sort();
            assert_eq!(got, vec![(1, Some(200)), (2, Some(100))]);
            assert_eq!(balance(&mut *txn, "A", "benefit", 10).unwrap(), 0);
        }
    }

    #[test]
    fn overspending_is_refused_and_a_dropped_transaction_commits_nothing() {
        for ledger in backends() {
            let mut txn = ledger.begin("p").unwrap();
            txn.put_holder(&holder("A")).unwrap();
            txn.add_lot("A", "DKK", 1000, None).unwrap();
            txn.commit().unwrap();

            let mut txn = ledger.begin("p").unwrap();
            let effects = [
                Effect::Count {
                    counter: "spend".into(),
                    amount: 600,
                },
                Effect::Consume {
                    asset: "DKK".into(),
                    amount: 600,
                },
                Effect::Consume {
                    asset: "DKK".into(),
                    amount: 600,
                },
            ];
            let refused = apply(&mut *txn, "A", 5, &effects).unwrap().unwrap_err();
            assert_eq!(
                refused.0,
                "effect 3: card `A` holds 400 `DKK`, fewer than 600"
            );
            drop(txn);

            let mut txn = ledger.begin("p").unwrap();
            assert_eq!(balance(&mut *txn, "A", "DKK", 5).unwrap(), 1000);
            assert_eq!(txn.tally_sum(Some("A"), "spend", 0, 100).unwrap(), 0);
        }
    }

    #[test]
    fn moving_a_card_carries_the_holder_and_blocks_the_old_card() {
        for ledger in backends() {
            let mut txn = ledger.begin("p").unwrap();
            let mut old = holder("A");
            old.statuses = vec!["kansentarief".into()];
            txn.put_holder(&old).unwrap();
            txn.add_lot("A", "saving", 7, None).unwrap();
            apply(
                &mut *txn,
                "A",
                1,
                &[Effect::MoveCard {
                    new_card: "N".into(),
                }],
            )
            .unwrap()
            .unwrap();
            let moved = txn.holder("N").unwrap().unwrap();
            assert_eq!(moved.statuses, vec!["kansentarief".to_string()]);
            assert_eq!(txn.holder("A").unwrap().unwrap().state, CardState::Blocked);
            assert_eq!(balance(&mut *txn, "N", "saving", 1).unwrap(), 7);
            assert_eq!(balance(&mut *txn, "A", "saving", 1).unwrap(), 0);
        }
    }

    #[test]
    fn programs_do_not_see_each_others_data() {
        for ledger in backends() {
            let mut txn = ledger.begin("one").unwrap();
            txn.put_holder(&holder("A")).unwrap();
            txn.add_tally("A", "visit", 1, 1).unwrap();
            txn.commit().unwrap();
            let mut txn = ledger.begin("two").unwrap();
            assert!(txn.holder("A").unwrap().is_none());
            assert_eq!(txn.tally_sum(None, "visit", 0, 10).unwrap(), 0);
        }
    }
}
