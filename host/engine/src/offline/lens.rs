//! How a policy sees a program's ledger while something of it is lent to venues: each
//! read and each effect is held to what the deciding side may use (see `mod.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{Lease, Tenure};
use crate::ledger::Effect;

/// Why a decision cannot be made on this side of a lease: the first read or effect that
/// is not covered, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncovered(pub String);

impl std::fmt::Display for Uncovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
enum Side {
    /// A venue deciding alone under its lease, at `now` on its clock. `tainted`: cards
    /// of requests it sent the city whose outcome its copy does not hold yet.
    Venue {
        venue: String,
        now: i64,
        tainted: Arc<BTreeSet<String>>,
        /// The venue itself (a recall stops it), or the city verifying its upload (a
        /// recalled lease holds until it is handed back).
        at_venue: bool,
    },
    /// The city, or a venue deciding through it (`except`, whose own lease is not in
    /// its way), beside every other lease.
    City { except: Option<String> },
}

/// The deciding side and every venue's lease as the ledger holds them.
#[derive(Debug, Clone)]
pub(crate) struct Lens {
    side: Side,
    tenures: Arc<BTreeMap<String, Tenure>>,
}

impl Lens {
    /// `venue` deciding alone at `now`, under its lease as `tenures` hold it.
    pub(crate) fn venue(
        tenures: &Arc<BTreeMap<String, Tenure>>,
        venue: &str,
        now: i64,
        tainted: Arc<BTreeSet<String>>,
        at_venue: bool,
    ) -> Lens {
        Lens {
            side: Side::Venue {
                venue: venue.to_string(),
                now,
                tainted,
                at_venue,
            },
            tenures: tenures.clone(),
        }
    }

    /// The city deciding beside the leases `tenures` hold, for `except` (a venue whose
    /// own lease is its to use); none when nothing is lent to anyone else.
    pub(crate) fn city(
        tenures: &Arc<BTreeMap<String, Tenure>>,
        except: Option<&str>,
    ) -> Option<Lens> {
        let lent = tenures
            .iter()
            .any(|(venue, t)| t.lease.is_some() && Some(venue.as_str()) != except);
        lent.then(|| Lens {
            side: Side::City {
                except: except.map(str::to_string),
            },
            tenures: tenures.clone(),
        })
    }

    /// The leases of others than the deciding side.
    fn others(&self) -> impl Iterator<Item = (&str, &Lease)> {
        let except = match &self.side {
            Side::City { except } => except.as_deref(),
            Side::Venue { venue, .. } => Some(venue.as_str()),
        };
        self.tenures
            .iter()
            .filter(move |(venue, _)| Some(venue.as_str()) != except)
            .filter_map(|(venue, t)| t.lease.as_ref().map(|lease| (venue.as_str(), lease)))
    }

    /// The deciding venue's own tenure and lease, still running.
    fn own(&self) -> Result<(&Tenure, &Lease), Uncovered> {
        let Side::Venue {
            venue,
            now,
            at_venue,
            ..
        } = &self.side
        else {
            unreachable!("only a venue has its own lease")
        };
        let tenure = self.tenures.get(venue);
        let Some((tenure, lease)) = tenure.and_then(|t| t.lease.as_ref().map(|l| (t, l))) else {
            return Err(Uncovered(format!("venue `{venue}` holds no lease")));
        };
        if tenure.recalled && *at_venue {
            return Err(Uncovered(format!(
                "the city recalled the lease of venue `{venue}`: it hands it back"
            )));
        }
        if *now >= lease.expires {
            return Err(Uncovered(format!(
                "the lease of venue `{venue}` ran out at {}",
                crate::timing::instant_text(lease.expires)
            )));
        }
        Ok((tenure, lease))
    }

    /// On a venue's side: whether `card` (`None`: any card, for a total) was the subject
    /// of a request sent to the city whose outcome the venue's copy does not hold yet.
    fn tainted(&self, card: Option<&str>) -> Result<(), Uncovered> {
        if let Side::Venue { tainted, .. } = &self.side {
            let hit = match card {
                Some(card) => tainted.contains(card),
                None => !tainted.is_empty(),
            };
            if hit {
                return Err(Uncovered(match card {
                    Some(card) => format!(
                        "a request for card `{card}` went to the city and its outcome has not reached this venue"
                    ),
                    None => "requests went to the city whose outcome has not reached this venue"
                        .to_string(),
                }));
            }
        }
        Ok(())
    }

    /// Whether the deciding side may read `card`'s holder (`found`: it exists here).
    pub(crate) fn holder(&self, card: &str, found: bool) -> Result<(), Uncovered> {
        self.tainted(Some(card))?;
        match &self.side {
            // A holder a venue reads is not changed at the city meanwhile: reading it is
            // free there.
            Side::City { .. } => Ok(()),
            Side::Venue { .. } => {
                let (_, lease) = self.own()?;
                if !found {
                    return Err(Uncovered(format!(
                        "card `{card}` is not known here (registered at the city since?)"
                    )));
                }
                if !lease.covers(card) {
                    return Err(Uncovered(format!(
                        "card `{card}` is not covered by this venue's lease"
                    )));
                }
                Ok(())
            }
        }
    }

    /// Whether the deciding side may read `counter` of `card` (`None`: over all cards).
    pub(crate) fn count(&self, card: Option<&str>, counter: &str) -> Result<(), Uncovered> {
        self.tainted(card)?;
        let whose = || match card {
            Some(card) => format!("counter `{counter}` of card `{card}`"),
            None => format!("counter `{counter}` over all cards"),
        };
        match &self.side {
            Side::City { .. } => {
                for (venue, lease) in self.others() {
                    let held = match card {
                        Some(card) => lease.holds(Some(card), counter),
                        // A total includes every card's entries, a held card's too.
                        None => lease.counters.contains(counter),
                    };
                    if held {
                        return Err(Uncovered(format!("{} is held by venue `{venue}`", whose())));
                    }
                }
                Ok(())
            }
            Side::Venue { .. } => {
                let (_, lease) = self.own()?;
                if lease.holds(card, counter) {
                    Ok(())
                } else {
                    Err(Uncovered(format!("{} is not held by this venue", whose())))
                }
            }
        }
    }

    /// What the deciding side may spend of `card`'s `real` balance of `asset`.
    pub(crate) fn balance(&self, card: &str, asset: &str, real: i64) -> Result<i64, Uncovered> {
        self.tainted(Some(card))?;
        match &self.side {
            Side::City { .. } if super::planted::EscrowNotHeld::planted() => Ok(real),
            Side::City { .. } => {
                let lent: i64 = self
                    .others()
                    .map(|(venue, _)| self.tenures[venue].remaining(card, asset))
                    .fold(0, i64::saturating_add);
                Ok(real.saturating_sub(lent).max(0))
            }
            Side::Venue { .. } => {
                let (tenure, lease) = self.own()?;
                if lease.asset.as_deref() == Some(asset) && lease.escrow.contains_key(card) {
                    Ok(tenure.remaining(card, asset).min(real).max(0))
                } else {
                    Err(Uncovered(format!(
                        "no `{asset}` of card `{card}` is escrowed to this venue"
                    )))
                }
            }
        }
    }

    /// Whether the deciding side may apply `effects` to `card`.
    pub(crate) fn effects(&self, card: &str, effects: &[Effect]) -> Result<(), Uncovered> {
        match &self.side {
            Side::City { .. } => {
                for effect in effects {
                    let (held, what) = match effect {
                        Effect::SetState { .. } | Effect::MoveCard { .. } => (
                            self.holder_held(card),
                            format!("the holder of card `{card}`"),
                        ),
                        Effect::Count { counter, .. } => (
                            self.others()
                                .find(|(_, lease)| {
                                    lease.holds(Some(card), counter)
                                        || (lease.cards.is_none()
                                            && lease.counters.contains(counter))
                                })
                                .map(|(venue, _)| venue.to_string()),
                            format!("counter `{counter}` of card `{card}`"),
                        ),
                        _ => (None, String::new()),
                    };
                    if let Some(venue) = held {
                        return Err(Uncovered(format!("{what} is held by venue `{venue}`")));
                    }
                }
                Ok(())
            }
            Side::Venue { .. } => {
                let (tenure, lease) = self.own()?;
                let mut spending = 0i64;
                for effect in effects {
                    match effect {
                        Effect::Count { counter, .. } if lease.holds(Some(card), counter) => {}
                        Effect::Consume { asset, amount }
                            if lease.asset.as_deref() == Some(asset.as_str())
                                && lease.escrow.contains_key(card) =>
                        {
                            spending = spending.saturating_add(*amount);
                        }
                        other => {
                            return Err(Uncovered(format!(
                                "effect `{}` on card `{card}` is not covered by this venue's lease",
                                other.name()
                            )));
                        }
                    }
                }
                if let Some(asset) = &lease.asset {
                    let left = tenure.remaining(card, asset);
                    if spending > left {
                        return Err(Uncovered(format!(
                            "spending {spending} `{asset}` of card `{card}`, of which {left} is escrowed to this venue"
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// The venues (other than the deciding side) whose leases cover `card`.
    pub(crate) fn venues_on(&self, card: &str) -> Vec<String> {
        self.others()
            .filter(|(_, lease)| lease.covers(card))
            .map(|(venue, _)| venue.to_string())
            .collect()
    }

    /// The venue (other than the deciding side) whose lease reads `card`'s holder, if any.
    pub(crate) fn holder_held(&self, card: &str) -> Option<String> {
        self.others()
            .find(|(_, lease)| lease.covers(card))
            .map(|(venue, _)| venue.to_string())
    }
}
