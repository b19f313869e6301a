//! Deciding at a venue that has lost its city, exactly (docs/offline.md).
//!
//! While it can reach its city, a venue host obtains a [`Lease`] per program: what it may
//! decide alone for a while — counters only it writes ([`Lease::counters`]), the holders
//! of the cards it covers as the city last sent them ([`Lease::cards`]), and part of
//! each covered card's balance lent to it ([`Lease::escrow`]). The city journals the
//! lease ([`crate::ledger::Change::Leased`]) and from then on decides beside it through a
//! [`Lens`]: it does not spend what is lent, does not read a counter a venue holds, and
//! writes no holder a venue reads until the venue hands its lease back
//! ([`crate::ledger::Change::Returned`]) — such a request is [`Error::Held`].
//!
//! Cut off, the venue decides through its own lens: a decision is allowed only if every
//! key it read and every effect it makes is covered by the lease — balances read as what
//! is left of the escrow, counters it holds as they are — else it is denied `offline`
//! (or kept, for the actions the program defers). Policies are deterministic and read the
//! ledger only through the host, so a decision that read only what the lease covers is
//! decided the same on every state that agrees on those keys; the city holds those keys
//! still until the venue's decisions are uploaded and appended in the venue's order, and
//! re-decides each on the same lens ([`crate::Host::upload`]): an upload the policy would
//! not have decided so is refused whole.

mod lens;
mod upload;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ledger::Effect;
use crate::program::Program;

pub(crate) use lens::Lens;
pub use lens::Uncovered;
pub use upload::{Kept, Upload, Uploaded};

/// What a city lends one venue for one program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Lease {
    /// The catalogue locations the venue is.
    pub locations: Vec<String>,
    /// When the city granted it, and until when the venue may decide under it (seconds
    /// since the epoch, the city's clock). A venue stops deciding alone `max-skew` before
    /// `expires` on its own clock.
    pub granted: i64,
    pub expires: i64,
    /// The counters only the venue writes while the lease runs, of every covered card
    /// (and, when it covers every card, over all cards).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub counters: BTreeSet<String>,
    /// The cards whose holders the venue may read as it holds them: none means every card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cards: Option<BTreeSet<String>>,
    /// The asset escrowed, and how much of each covered card's balance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub escrow: BTreeMap<String, i64>,
}

impl Lease {
    /// Whether the lease covers `card`'s holder.
    pub fn covers(&self, card: &str) -> bool {
        self.cards.as_ref().is_none_or(|cards| cards.contains(card))
    }

    /// Whether the venue holds `counter` of `card` (`None`: over all cards) alone.
    pub fn holds(&self, card: Option<&str>, counter: &str) -> bool {
        self.counters.contains(counter)
            && match card {
                Some(card) => self.covers(card),
                None => self.cards.is_none(),
            }
    }
}

/// A venue's lease as the ledger keeps it: the lease, what of its escrow was spent, and
/// the last of the venue's own sequence numbers the city appended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Tenure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// card → units of the escrowed asset spent through the venue.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spent: BTreeMap<String, i64>,
    /// The city asked for the lease back: the venue decides nothing more under it and
    /// hands it back; it still holds what it held until then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recalled: bool,
    /// Requests the city keeps waiting for this venue's lease (its program's `wait`
    /// actions), in order: request id → the request (JSON, as fingerprinted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<(String, String)>,
}

impl Tenure {
    pub(crate) fn new(lease: Lease) -> Tenure {
        Tenure {
            lease: Some(lease),
            spent: BTreeMap::new(),
            recalled: false,
            waiting: Vec::new(),
        }
    }

    /// What is left of the escrow of `asset` on `card`.
    pub fn remaining(&self, card: &str, asset: &str) -> i64 {
        let Some(lease) = &self.lease else { return 0 };
        if lease.asset.as_deref() != Some(asset) {
            return 0;
        }
        let escrowed = lease.escrow.get(card).copied().unwrap_or(0);
        escrowed - self.spent.get(card).copied().unwrap_or(0)
    }

    /// How much of the escrowed asset `effects` take from `card` and count against this
    /// escrow (at most what is left of it), if any.
    pub(crate) fn spending(&self, card: &str, effects: &[Effect]) -> Option<i64> {
        let asset = self.lease.as_ref()?.asset.as_deref()?;
        let left = self.remaining(card, asset);
        if left <= 0 {
            return None;
        }
        let taken: i64 = effects
            .iter()
            .map(|effect| match effect {
                Effect::Consume { asset: a, amount }
                | Effect::Transfer {
                    asset: a, amount, ..
                } if a == asset => *amount,
                _ => 0,
            })
            .fold(0i64, i64::saturating_add);
        (taken > 0).then_some(taken.min(left))
    }

    pub(crate) fn spend(&mut self, card: &str, units: i64) {
        *self.spent.entry(card.to_string()).or_insert(0) += units;
    }
}

/// Units of `asset` on `card` lent to venues and not spent: what the card must keep.
pub(crate) fn lent(tenures: &BTreeMap<String, Tenure>, card: &str, asset: &str) -> i64 {
    tenures
        .values()
        .map(|tenure| tenure.remaining(card, asset))
        .fold(0i64, i64::saturating_add)
}

/// The venue a recorded decision came through (its answer's `venue`), if any.
pub(crate) fn venue_of(decision: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Through {
        #[serde(default)]
        venue: Option<String>,
    }
    serde_json::from_str::<Through>(decision).ok()?.venue
}

/// What a venue may do with a request while it cannot reach its city.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offline {
    /// Decide it alone, under the lease.
    Decide,
    /// Keep it; the city decides it when the venue is back.
    Defer,
    /// Deny it `offline`.
    Deny,
}

/// What `program` lets a venue do with `action` while offline.
pub fn offline_rule(program: &Program, action: &str) -> Offline {
    let terms = &program.files.manifest.offline;
    if terms.decide.iter().any(|a| a == action) {
        Offline::Decide
    } else if terms.defer.iter().any(|a| a == action) {
        Offline::Defer
    } else {
        Offline::Deny
    }
}

/// The lease `program`'s terms give a venue at `locations` on `state`, granted at `now`;
/// none if the program lends nothing. Cards another venue holds counters of alone are
/// left out, and an escrow is at most what the city itself could spend of the card.
pub(crate) fn lease_for(
    program: &Program,
    state: &crate::ledger::State,
    venue: &str,
    locations: &[String],
    now: i64,
) -> Option<Lease> {
    let terms = &program.files.manifest.offline;
    let length = terms.lease?;
    if terms.decide.is_empty() {
        return None;
    }
    let offers: Vec<&str> = program
        .files
        .catalogue
        .values()
        .filter(|offer| locations.contains(&offer.location))
        .map(|offer| offer.id.as_str())
        .collect();
    let mut counters = BTreeSet::new();
    for pattern in &terms.counters {
        if pattern.contains("{offer}") {
            counters.extend(offers.iter().map(|offer| pattern.replace("{offer}", offer)));
        } else if pattern.contains("{location}") {
            counters.extend(locations.iter().map(|l| pattern.replace("{location}", l)));
        } else {
            counters.insert(pattern.clone());
        }
    }
    let others: Vec<&Lease> = state
        .tenures()
        .iter()
        .filter(|(name, _)| name.as_str() != venue)
        .filter_map(|(_, tenure)| tenure.lease.as_ref())
        .collect();
    let cards = match terms.cards.as_deref() {
        None | Some("all") => None,
        Some(rule) => {
            let status = rule.strip_prefix("status:").unwrap_or(rule);
            let wanted: Vec<String> = locations
                .iter()
                .map(|l| status.replace("{location}", l))
                .collect();
            let mut cards = BTreeSet::new();
            for card in state.cards() {
                let Some(holder) = crate::ledger::View::holder(state, card) else {
                    continue;
                };
                let member = holder.statuses.iter().any(|s| wanted.contains(s));
                // A counter of a card is held by one venue at most.
                let taken = others
                    .iter()
                    .any(|other| counters.iter().any(|c| other.holds(Some(card), c)));
                if member && !taken {
                    cards.insert(card.to_string());
                }
            }
            Some(cards)
        }
    };
    // A counter another venue holds over every card is not lent twice.
    counters.retain(|counter| {
        !others
            .iter()
            .any(|other| other.counters.contains(counter) && other.cards.is_none())
    });
    let mut escrow = BTreeMap::new();
    let asset = terms.escrow.as_ref().map(|e| e.asset.clone());
    if let (Some(terms), Some(cards)) = (&terms.escrow, &cards) {
        for card in cards {
            let balance = crate::ledger::View::balance(state, card, &terms.asset, now);
            // What this venue held before is the city's again: the new lease replaces it.
            let lent_to_others: i64 = state
                .tenures()
                .iter()
                .filter(|(name, _)| name.as_str() != venue)
                .map(|(_, tenure)| tenure.remaining(card, &terms.asset))
                .fold(0, i64::saturating_add);
            let free = balance - lent_to_others;
            let units = free.min(terms.amount);
            if units > 0 {
                escrow.insert(card.clone(), units);
            }
        }
    }
    Some(Lease {
        locations: locations.to_vec(),
        granted: now,
        expires: now.saturating_add(length.as_secs()),
        counters,
        cards,
        asset,
        escrow,
    })
}

/// What is answered for a request kept for later: by a venue alone for its city, or by
/// the city for a venue's lease (`pending`, nothing decided yet).
pub fn pending(program: &Program, request: &crate::model::Request) -> crate::model::Decision {
    crate::model::Decision {
        allow: false,
        reason: PENDING.to_string(),
        message: program.message(PENDING, request.language.as_deref()),
        admitted: 0,
        price: None,
        notes: Vec::new(),
        balances: BTreeMap::new(),
        state: None,
        policy: program.policy_ref(),
        id: request.id.clone(),
        dry_run: false,
        replayed: false,
        error: None,
        fault: None,
        fuel: 0,
        checks: None,
        reads: None,
        venue: request.venue.clone(),
        // Kept by a venue alone, or waiting at the city for a venue's lease.
        offline: request.venue.is_some(),
        pending: true,
    }
}

/// The reason a kept request carries until the city decides it.
pub const PENDING: &str = "pending";

/// Bugs planted on purpose, to show that the offline simulation's checker catches them.
#[doc(hidden)]
pub mod planted {
    use std::sync::atomic::{AtomicBool, Ordering};

    static ESCROW_NOT_HELD: AtomicBool = AtomicBool::new(false);

    /// While planted, the city spends money escrowed to venues as if it were its own.
    pub struct EscrowNotHeld(());

    impl EscrowNotHeld {
        pub fn plant() -> EscrowNotHeld {
            ESCROW_NOT_HELD.store(true, Ordering::SeqCst);
            EscrowNotHeld(())
        }

        pub(crate) fn planted() -> bool {
            ESCROW_NOT_HELD.load(Ordering::Relaxed)
        }
    }

    impl Drop for EscrowNotHeld {
        fn drop(&mut self) {
            ESCROW_NOT_HELD.store(false, Ordering::SeqCst);
        }
    }
}
