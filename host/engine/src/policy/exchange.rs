//! What crosses the seam between the host and a policy, in the engine's own types: the
//! request as a policy sees it ([`Input`]), its answer ([`Answer`]) and what it says about
//! itself ([`PolicyInfo`]). Each world version converts these to and from its own
//! generated types, and nothing outside its folder sees those.

use crate::calendar::LocalTime;
use crate::ledger::Effect;
use crate::model::{Holder, Offer};

/// A request, enriched by the host, as a policy is given it.
#[derive(Debug)]
pub(crate) struct Input<'a> {
    pub action: &'a str,
    pub at: i64,
    pub local: LocalTime,
    pub holder: &'a Holder,
    pub offer: Option<&'a Offer>,
    pub party: u32,
    pub amount: Option<i64>,
    pub asset: Option<&'a str>,
    pub to_card: Option<&'a str>,
    pub new_card: Option<&'a str>,
    /// Whether the caller asked why.
    pub explain: bool,
}

/// A policy's answer, before the host checks it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub allow: bool,
    pub reason: String,
    pub admitted: u32,
    pub price: Option<i64>,
    pub notes: Vec<String>,
    pub effects: Vec<Effect>,
    /// The checks the policy reported (world 0.2.0 and later, when asked to explain).
    pub checks: Vec<Reported>,
}

/// A check as a policy reported it, before the host holds it to what happened.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reported {
    pub rule: String,
    pub passed: bool,
    pub reason: String,
    pub used: Option<i64>,
    pub limit: Option<i64>,
    pub until: Option<i64>,
}

/// What the host saw a policy do while it explained a decision: its reads, and the
/// numbers and window ends it answered, which a check's `used` and `until` must be.
#[derive(Debug, Clone, Default)]
pub(crate) struct Witnessed {
    pub reads: Vec<crate::model::Read>,
    /// Numbers the host answered (counts, balances).
    pub numbers: Vec<i64>,
    /// Ends of the windows the host computed (`period-of`, `count-in`).
    pub ends: Vec<i64>,
}

impl Answer {
    /// A rough size of what the answer carries, in bytes, to hold it to the output cap.
    pub fn size(&self) -> usize {
        let effects: usize = self
            .effects
            .iter()
            .map(|e| {
                let text = match e {
                    Effect::Count { counter, .. } => counter.len(),
                    Effect::Grant { asset, .. } | Effect::Consume { asset, .. } => asset.len(),
                    Effect::Transfer { to_card, asset, .. } => to_card.len() + asset.len(),
                    Effect::Forfeit { asset } => asset.len(),
                    Effect::MoveCard { new_card } => new_card.len(),
                    Effect::SetState { .. } => 0,
                };
                text + 16
            })
            .sum();
        let checks: usize = self
            .checks
            .iter()
            .map(|c| c.rule.len() + c.reason.len() + 32)
            .sum();
        self.reason.len() + self.notes.iter().map(|n| n.len() + 8).sum::<usize>() + effects + checks
    }
}

/// What a policy says about itself (`describe`).
#[derive(Debug, Clone)]
pub struct PolicyInfo {
    pub program: String,
    pub version: String,
    pub actions: Vec<String>,
    pub reasons: Vec<String>,
}
