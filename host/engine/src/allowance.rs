//! What a card may still do: its allowances (docs/contract.md "Allowances"). For each
//! action the manifest's `[allowances]` names — once per offer of the catalogue, or once
//! for the card — the host asks the program's own policy, as a real request at `at` would
//! be asked, with `explain`, and reports the answer and its counting checks as limits
//! with what remains. Nothing is applied, committed or journaled, and request ids are
//! not involved: an allowance is a question, never a decision.
//!
//! The question is the same for every action: party 1 and `amount` 0 (no amount is known
//! yet: the answer says what is left, not whether a given amount fits; no caller can send
//! 0, so a policy sees it only here). A policy of world 0.1.0 answers allow and reason,
//! but reports no checks, so its allowances have no `limits`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::decide::{ask_on, shown};
use crate::error::{Error, Result};
use crate::ledger::{Effect, State, View};
use crate::model::Request;
use crate::policy::Sandbox;
use crate::program::{POLICY_ERROR, Program};

/// A card's allowances, as `GET …/allowances` and `cardrules allowances` answer them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Allowances {
    pub program: String,
    pub card: String,
    /// The moment the allowances are for.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    pub allowances: Vec<Allowance>,
}

/// What the policy answers for one action (and offer).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Allowance {
    pub action: String,
    /// The offer asked about; none for an action asked once for the card.
    pub offer: Option<String>,
    /// Whether the action would be allowed now.
    pub allow: bool,
    /// `ok` (or the program's code for an allowed answer), or why it would be denied.
    pub reason: String,
    /// The end-user message for `reason`.
    pub message: String,
    /// The price the policy would ask, if it names one.
    pub price: Option<i64>,
    /// The policy's counting checks, in its order, with what remains of each; absent for
    /// a policy whose world reports no checks (0.1.0). A denied answer lists the checks
    /// up to the one that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Vec<Limit>>,
    /// The units an allowed action would take from the card, lot by lot, earliest expiry
    /// first, with when each expires (e.g. the benefit a redemption would use).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<Use>,
}

/// A rule that counts against a bound, and what is left of it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Limit {
    /// The policy's name for the rule.
    pub rule: String,
    /// The reason the rule denies with.
    pub reason: String,
    /// What already counts (0 when the policy reports nothing).
    pub used: i64,
    pub limit: i64,
    /// `limit - used`, never below 0.
    pub remaining: i64,
    /// When the count's window ends, if it has one.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub until: Option<Timestamp>,
}

/// Units an allowed action would take from the card.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Use {
    pub asset: String,
    pub amount: i64,
    /// When these units expire; none for units that never do.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires: Option<Timestamp>,
}

/// What a caller asks: the moment, and optionally one action or one offer.
#[derive(Debug, Clone, Default)]
pub struct AllowanceQuery {
    /// Default: now.
    pub at: Option<Timestamp>,
    pub action: Option<String>,
    pub offer: Option<String>,
    /// The language of the messages (default: the program's first).
    pub language: Option<String>,
}

/// The questions `query` asks of `program`: (action, offer) pairs, checked against the
/// manifest and the catalogue (an unknown action, offer or language is the caller's
/// mistake).
fn questions(program: &Program, query: &AllowanceQuery) -> Result<Vec<(String, Option<String>)>> {
    let manifest = &program.files.manifest;
    let asked = &manifest.allowances;
    if let Some(language) = &query.language
        && !manifest.languages.contains(language)
    {
        return Err(Error::invalid(format!(
            "`language`: program `{}` has no messages in language `{language}`",
            program.id()
        )));
    }
    if let Some(action) = &query.action
        && !asked.per_offer.contains(action)
        && !asked.per_card.contains(action)
    {
        let named: Vec<String> = asked
            .per_offer
            .iter()
            .chain(&asked.per_card)
            .map(|a| format!("`{a}`"))
            .collect();
        return Err(Error::invalid(format!(
            "`action`: the allowances of program `{}` do not ask about action `{action}` ({})",
            program.id(),
            if named.is_empty() {
                "its manifest names no actions in `[allowances]`".to_string()
            } else {
                format!("they ask about {}", named.join(", "))
            }
        )));
    }
    if let Some(offer) = &query.offer {
        crate::ids::check(crate::ids::Kind::Offer, "offer", offer)?;
    }
    if let Some(offer) = &query.offer
        && !program.files.catalogue.contains_key(offer)
    {
        return Err(Error::invalid(format!(
            "`offer`: offer `{offer}` is not in the catalogue of program `{}`",
            program.id()
        )));
    }
    let wanted = |action: &String| query.action.as_ref().is_none_or(|a| a == action);
    let mut offers: Vec<&String> = program
        .files
        .catalogue
        .keys()
        .filter(|id| query.offer.as_ref().is_none_or(|o| o == *id))
        .collect();
    offers.sort();
    let mut questions = Vec::new();
    for action in asked.per_offer.iter().filter(|a| wanted(a)) {
        questions.extend(offers.iter().map(|o| (action.clone(), Some((*o).clone()))));
    }
    // An action asked for the card takes no offer: narrowing to an offer leaves it out.
    if query.offer.is_none() {
        for action in asked.per_card.iter().filter(|a| wanted(a)) {
            questions.push((action.clone(), None));
        }
    }
    Ok(questions)
}

/// The allowances of `card`, asked of `program` on `state` (which is left as found), or
/// `None` if the card is unknown.
pub(crate) fn allowances_on(
    sandbox: &Sandbox,
    program: &Program,
    card: &str,
    query: &AllowanceQuery,
    state: &mut State,
) -> Result<Option<Allowances>> {
    let questions = questions(program, query)?;
    if state.holder(card).is_none() {
        return Ok(None);
    }
    let at = query.at.unwrap_or_else(Timestamp::now);
    let language = query.language.as_deref();
    let mut allowances = Vec::with_capacity(questions.len());
    for (action, offer) in questions {
        let request = Request {
            program: program.id().to_string(),
            card: card.to_string(),
            action,
            at,
            offer,
            party: Some(1),
            amount: Some(0),
            asset: None,
            to_card: None,
            new_card: None,
            id: None,
            dry_run: true,
            language: query.language.clone(),
            explain: true,
            venue: None,
        };
        let allowance = match ask_on(sandbox, program, &request, state)? {
            Ok(answer) => Allowance {
                message: program.message(&answer.reason, language),
                limits: program.policy.reports_checks().then(|| {
                    answer
                        .checks
                        .into_iter()
                        .map(shown)
                        .filter_map(|check| {
                            let limit = check.limit?;
                            let used = check.used.unwrap_or(0);
                            Some(Limit {
                                rule: check.rule,
                                reason: check.reason,
                                used,
                                limit,
                                remaining: limit.saturating_sub(used).max(0),
                                until: check.until,
                            })
                        })
                        .collect()
                }),
                uses: if answer.allow {
                    uses(state, card, at.as_second(), &answer.effects)
                } else {
                    Vec::new()
                },
                allow: answer.allow,
                reason: answer.reason,
                price: answer.price,
                action: request.action,
                offer: request.offer,
            },
            Err(fault) => {
                tracing::warn!(
                    program = program.id(),
                    card,
                    action = request.action,
                    fault = fault.kind().as_str(),
                    "policy error in an allowance: {fault}"
                );
                Allowance {
                    allow: false,
                    reason: POLICY_ERROR.to_string(),
                    message: program.message(POLICY_ERROR, language),
                    price: None,
                    limits: None,
                    uses: Vec::new(),
                    action: request.action,
                    offer: request.offer,
                }
            }
        };
        allowances.push(allowance);
    }
    Ok(Some(Allowances {
        program: program.id().to_string(),
        card: card.to_string(),
        at,
        allowances,
    }))
}

/// The units `effects` would consume from `card` at `at`: unexpired lots of each asset,
/// earliest expiry first (units without expiry last), as consumption takes them.
fn uses(state: &State, card: &str, at: i64, effects: &[Effect]) -> Vec<Use> {
    let mut taken: BTreeMap<i64, i64> = BTreeMap::new(); // lot id → units taken so far
    let mut uses = Vec::new();
    for effect in effects {
        let Effect::Consume { asset, amount } = effect else {
            continue;
        };
        let mut left = *amount;
        for lot in state.consumption_order(card, asset, at) {
            if left <= 0 {
                break;
            }
            let already = taken.get(&lot.id).copied().unwrap_or(0);
            let units = (lot.amount - already).min(left);
            if units <= 0 {
                continue;
            }
            taken.insert(lot.id, already + units);
            left -= units;
            let expires = lot.expires.and_then(|at| Timestamp::from_second(at).ok());
            match uses
                .iter_mut()
                .find(|u: &&mut Use| u.asset == *asset && u.expires == expires)
            {
                Some(same) => same.amount += units,
                None => uses.push(Use {
                    asset: asset.clone(),
                    amount: units,
                    expires,
                }),
            }
        }
    }
    uses
}
