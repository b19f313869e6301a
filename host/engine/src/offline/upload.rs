//! The city's side of a lease: granting it, taking it back, and taking in what a venue
//! decided alone — verified, in the venue's order, each exactly once.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Lease, Offline, Tenure, lease_for, offline_rule};
use crate::decide::{self, Asked};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::ids;
use crate::ledger::{Change, Staged};
use crate::model::{Decision, Request};
use crate::program::OFFLINE;

/// Why a venue denies an action `offline` that its program keeps for the city.
const NOT_ALONE: &str = "the program does not let a venue decide this action alone";

/// One request a venue took while it could not reach its city, as it uploads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Uploaded {
    /// The request as the till sent it; it must carry an id.
    pub request: Request,
    /// What the venue answered: a decision it made alone, or none for a request it kept
    /// for the city (`pending`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

/// What the city made of an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Upload {
    /// Decisions the venue made alone, verified and appended.
    pub appended: usize,
    /// Requests the venue kept, decided now by the city.
    pub decided: usize,
    /// Requests the city had already taken in (a retried or duplicated upload).
    pub already: usize,
}

/// A request a venue kept and the city decided: its id and the city's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub id: String,
    pub decision: Decision,
}

impl Host {
    /// Lends `venue` (at `locations`) what `program`'s terms let it decide alone, at the
    /// host's clock, replacing the lease it held: journaled, so that the venue — which
    /// follows the journal — uses it once its copy reaches it. Refused while the venue
    /// holds decisions it made alone under its lease that were not uploaded: `through`
    /// is how many requests the venue uploaded in all, as it counts them. None if the
    /// program lends nothing.
    pub fn lease(&self, program: &str, venue: &str, locations: &[String]) -> Result<Option<Lease>> {
        // What the city kept waiting for the venue's old lease is decided first, after
        // everything the venue decided alone (it takes a lease once all is uploaded).
        let waits = self
            .tenure(program, venue)?
            .is_some_and(|t| !t.waiting.is_empty());
        if waits {
            self.end_lease(program, venue, venue)?;
        }
        let program = self.program(program)?;
        ids::check(ids::Kind::Request, "venue", venue)?;
        let now = self.clock.now().as_second();
        let (venue, locations) = (venue.to_string(), locations.to_vec());
        let deciding = program.clone();
        self.ledger.submit(program.id(), move |tx| {
            let state = tx.state();
            let Some(lease) = lease_for(&deciding, state, &venue, &locations, now) else {
                return Ok(Staged::nothing(None));
            };
            let change = Change::Leased {
                venue: venue.clone(),
                at: now,
                lease: lease.clone(),
            };
            state
                .apply_change(&change)
                .map_err(|refused| Error::invalid(refused.0))?;
            Ok(Staged {
                changes: vec![change],
                answer: Some(lease),
            })
        })
    }

    /// Ends `venue`'s lease of `program`, asked by `by` (the venue once it uploaded what
    /// it decided alone, or an operator giving up on a venue that does not come back):
    /// what it held is the city's again. Nothing happens if it holds none.
    pub fn end_lease(&self, program: &str, venue: &str, by: &str) -> Result<bool> {
        let ended = self.end_lease_now(program, venue, by)?;
        self.decide_waiting(program, venue)?;
        Ok(ended)
    }

    fn end_lease_now(&self, program: &str, venue: &str, by: &str) -> Result<bool> {
        let program = self.program(program)?;
        let now = self.clock.now().as_second();
        let (venue, by) = (venue.to_string(), by.to_string());
        self.ledger.submit(program.id(), move |tx| {
            let state = tx.state();
            if state
                .tenures()
                .get(&venue)
                .is_none_or(|t| t.lease.is_none())
            {
                return Ok(Staged::nothing(false));
            }
            let change = Change::Returned {
                venue: venue.clone(),
                at: now,
                by: by.clone(),
            };
            state
                .apply_change(&change)
                .map_err(|refused| Error::invalid(refused.0))?;
            Ok(Staged {
                changes: vec![change],
                answer: true,
            })
        })
    }

    /// `venue`'s lease of `program` and what it spent of it, as the ledger holds them.
    pub fn tenure(&self, program: &str, venue: &str) -> Result<Option<Tenure>> {
        let program = self.program(program)?;
        self.ledger
            .read(program.id(), |state| state.tenures().get(venue).cloned())
    }

    /// Decides `request` as `venue` alone, at `now` on its clock, on this host's copy of
    /// the city's journal with `outbox` — what it decided alone since, not yet in the
    /// copy — applied first: what its lease covers is decided, the rest denied `offline`.
    /// Nothing is committed here: the caller keeps the answer and the returned change in
    /// its outbox, durably, before it answers.
    pub fn decide_alone(
        &self,
        venue: &str,
        request: &Request,
        now: i64,
        outbox: &Arc<Vec<Change>>,
        tainted: &Arc<BTreeSet<String>>,
    ) -> Result<(Decision, Change)> {
        let program = self.program(&request.program)?;
        let party = decide::check_request(&program, request)?;
        let fingerprint = decide::fingerprint(request)?;
        let mut request = request.clone();
        request.venue = Some(venue.to_string());
        let (venue, outbox, tainted) = (venue.to_string(), outbox.clone(), tainted.clone());
        let sandbox = self.sandbox.clone();
        let lane = program.id().to_string();
        self.ledger.submit(&lane, move |tx| {
            let state = tx.state();
            let mark = state.mark();
            for change in outbox.iter() {
                if let Err(refused) = state.apply_change(change) {
                    state.rollback(mark);
                    return Err(Error::host(
                        "offline decision",
                        format!("the venue's own decisions do not apply on its copy: {refused}"),
                    ));
                }
            }
            let asked = Asked {
                request: &request,
                party,
                dry_run: false,
                id: None,
                fingerprint: Some(&fingerprint),
                looked_up: None,
                alone: Some((&venue, now, &tainted, true)),
            };
            let staged = match offline_rule(&program, &request.action) {
                Offline::Decide => decide::decide_on(&sandbox, &program, &asked, state, None),
                _ => decide::denied_with(
                    &sandbox,
                    &program,
                    &asked,
                    state,
                    OFFLINE,
                    vec![NOT_ALONE.to_string()],
                ),
            };
            state.rollback(mark);
            let mut staged = staged?;
            let change = staged.changes.pop().ok_or_else(|| {
                Error::host("offline decision", "the decision staged nothing to keep")
            })?;
            Ok(Staged::nothing((staged.answer, change)))
        })
    }

    /// Takes in what `venue` uploaded of `program`, in its order: each decision it made
    /// alone is decided again on the venue's lease as the city holds it — the same
    /// policy on the same keys — and appended if the city decides it the same, with its
    /// effects as the city computes them; each request it kept is decided now, as a late
    /// till's. A request whose id the city already holds is not taken twice. Anything
    /// else — a decision the policy would not have made so, effects outside the lease, a
    /// request without an id — refuses the whole upload ([`Error::Refused`]): nothing of
    /// it is appended.
    pub fn upload(
        &self,
        program: &str,
        venue: &str,
        items: Vec<Uploaded>,
    ) -> Result<(Upload, Vec<Kept>)> {
        let program = self.program(program)?;
        for (n, item) in items.iter().enumerate() {
            if item.request.program != program.id() {
                return Err(Error::Refused(format!(
                    "upload item {} is for program `{}`, not `{}`",
                    n + 1,
                    item.request.program,
                    program.id()
                )));
            }
            if item.request.id.is_none() {
                return Err(Error::Refused(format!(
                    "upload item {} has no request id: a venue gives every request it keeps one",
                    n + 1
                )));
            }
            decide::check_request(&program, &item.request)?;
        }
        let venue = venue.to_string();
        let sandbox = self.sandbox.clone();
        let journal = self.ledger.journal().clone();
        let program_id = program.id().to_string();
        let nothing_tainted = Arc::new(BTreeSet::new());
        self.ledger.submit(&program_id.clone(), move |tx| {
            let state = tx.state();
            let mark = state.mark();
            let mut report = Upload::default();
            let mut kept = Vec::new();
            let mut changes = Vec::new();
            let result = (|| -> Result<()> {
                for (n, item) in items.iter().enumerate() {
                    let mut request = item.request.clone();
                    request.venue = Some(venue.clone());
                    request.dry_run = false;
                    request.explain = false;
                    let fingerprint = decide::fingerprint(&request)?;
                    let id = request.id.clone().unwrap_or_default();
                    if let Some(earlier) = match state.recorded(&id, None) {
                        Ok(found) => found,
                        Err(_) => journal.recorded(&program_id, &id)?,
                    } {
                        let recorded = decide::replayed(&id, &earlier, Some(&fingerprint), &request)
                            .map_err(|e| Error::Refused(format!("upload item {}: {e}", n + 1)))?;
                        if let Some(said) = &item.decision
                            && !same(said, &recorded)
                        {
                            return Err(Error::Refused(format!(
                                "upload item {} (request `{id}`): the venue answered `{}`, the city recorded `{}`",
                                n + 1,
                                said.reason,
                                recorded.reason
                            )));
                        }
                        report.already += 1;
                        continue;
                    }
                    let party = decide::check_request(&program, &request)?;
                    let at = request.at.as_second();
                    let asked = Asked {
                        request: &request,
                        party,
                        dry_run: false,
                        id: Some(&id),
                        fingerprint: Some(&fingerprint),
                        looked_up: None,
                        alone: None,
                    };
                    let staged = match &item.decision {
                        None => {
                            let staged = decide::decide_on(&sandbox, &program, &asked, state, None)?;
                            kept.push(Kept {
                                id: id.clone(),
                                decision: staged.answer.clone(),
                            });
                            report.decided += 1;
                            staged
                        }
                        // A denial changes nothing: taken in as the venue answered it.
                        Some(said) if !said.allow => {
                            if !program.knows_reason(&said.reason) {
                                return Err(Error::Refused(format!(
                                    "upload item {} (request `{id}`): the venue denied it with `{}`, which program `{}` does not know",
                                    n + 1,
                                    said.reason,
                                    program.id()
                                )));
                            }
                            let mut asked = asked;
                            asked.alone = Some((&venue, at, &nothing_tainted, false));
                            report.appended += 1;
                            decide::denied_with(&sandbox, &program, &asked, state, &said.reason, said.notes.clone())?
                        }
                        Some(said) => {
                            let alone = Asked {
                                alone: Some((&venue, at, &nothing_tainted, false)),
                                ..asked
                            };
                            if offline_rule(&program, &request.action) != Offline::Decide {
                                return Err(Error::Refused(format!(
                                    "upload item {} (request `{id}`): program `{}` does not let a venue decide `{}` alone",
                                    n + 1,
                                    program.id(),
                                    request.action
                                )));
                            }
                            let staged = decide::decide_on(&sandbox, &program, &alone, state, None)?;
                            if !same(said, &staged.answer) {
                                return Err(Error::Refused(format!(
                                    "upload item {} (request `{id}`): the venue answered {} `{}`, but the policy decides {} `{}` on what the venue's lease covered",
                                    n + 1,
                                    if said.allow { "allowed" } else { "denied" },
                                    said.reason,
                                    if staged.answer.allow { "allowed" } else { "denied" },
                                    staged.answer.reason
                                )));
                            }
                            report.appended += 1;
                            staged
                        }
                    };
                    changes.extend(staged.changes);
                }
                Ok(())
            })();
            match result {
                Ok(()) => Ok(Staged {
                    changes: std::mem::take(&mut changes),
                    answer: (report, std::mem::take(&mut kept)),
                }),
                Err(e) => {
                    state.rollback(mark);
                    Err(e)
                }
            }
        })
    }
}

/// Whether two answers to the same request say the same: allowed or denied, why, and
/// what was admitted and charged (balances differ: each side shows what it held).
fn same(a: &Decision, b: &Decision) -> bool {
    a.allow == b.allow && a.reason == b.reason && a.admitted == b.admitted && a.price == b.price
}

impl Host {
    /// Asks `venues` for their leases of `program` back (journaled: each stops deciding
    /// under its lease once its copy shows it, and hands it back). Venues already asked,
    /// or holding none, are left as they are.
    pub fn recall(&self, program: &str, venues: &[String]) -> Result<()> {
        let program = self.program(program)?;
        let now = self.clock.now().as_second();
        let venues = venues.to_vec();
        self.ledger.submit(program.id(), move |tx| {
            let state = tx.state();
            let mut changes = Vec::new();
            for venue in &venues {
                let held = state
                    .tenures()
                    .get(venue)
                    .is_some_and(|t| t.lease.is_some() && !t.recalled);
                if held {
                    let change = Change::Recalled {
                        venue: venue.clone(),
                        at: now,
                    };
                    state
                        .apply_change(&change)
                        .map_err(|refused| Error::invalid(refused.0))?;
                    changes.push(change);
                }
            }
            Ok(Staged {
                changes,
                answer: (),
            })
        })
    }
}
