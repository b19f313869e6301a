//! Replay: what a new rule book would have decided on a ledger's real history.
//!
//! Every change to a ledger is an event in its journal and policies are deterministic, so
//! a program's history can be run again, in its original order, against other versions of
//! the programs on a scratch ledger. State evolves under the *new* rules — a visit refused
//! in March frees a quota for April — and each decision is compared with the one
//! recorded. The original journal is only read.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::host::Host;
use crate::ledger::{Change, Journal, MemoryLedger, decode_decided};
use crate::model::{Check, Decision};
use crate::policy::Sandbox;
use crate::program::Program;

/// How many request ids a transition keeps as examples.
const EXAMPLES: usize = 3;

/// Which part of the history is compared (decisions outside are still replayed before
/// `since`, so that state evolves, and not at all after `until`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// Seconds since the epoch, inclusive.
    pub since: Option<i64>,
    /// Seconds since the epoch, inclusive.
    pub until: Option<i64>,
}

/// Decisions that went one way when recorded and another when replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub program: String,
    /// `allow` or the recorded denial reason.
    pub from: String,
    /// `allow` or the replayed denial reason.
    pub to: String,
    pub count: u64,
    /// A few request ids (or `card@time` for requests without one).
    pub examples: Vec<String>,
    /// For each example, the check whose outcome changed, as the new rules report it: the
    /// failed check that now denies, or the check of the recorded denial's reason that
    /// now holds (none for a policy that reports no checks).
    pub why: Vec<Why>,
}

/// What decided an example of a transition differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Why {
    pub example: String,
    pub check: Option<Check>,
}

/// The check of `replayed` that differs from what was recorded (`from`): its first failed
/// check when it is now denied, else its check of the recorded denial's reason.
fn differing(from: &str, replayed: &Decision) -> Option<Check> {
    let checks = replayed.checks.as_deref().unwrap_or_default();
    let found = if replayed.allow {
        checks.iter().find(|c| c.reason == from)
    } else {
        checks.iter().find(|c| !c.passed)
    };
    found.cloned()
}

/// Net units of an asset (granted minus consumed, over every card, expired units
/// included) at the end of the recorded and of the replayed history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Units {
    pub recorded: i64,
    pub replayed: i64,
}

/// The report of a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Decisions compared.
    pub replayed: u64,
    pub unchanged: u64,
    pub changed: u64,
    /// Decisions on cards whose holder was erased: not decided again (the facts they were
    /// decided on are gone), their recorded effects kept as they were.
    pub erased: u64,
    /// Only the changes, most frequent first.
    pub transitions: Vec<Transition>,
    /// program → asset → units.
    pub assets: BTreeMap<String, BTreeMap<String, Units>>,
}

/// `allow`, or the reason of a denial.
fn outcome(decision: &Decision) -> String {
    if decision.allow {
        "allow".to_string()
    } else {
        decision.reason.clone()
    }
}

/// Applies a recorded change to the scratch ledger as it was recorded, not decided again.
fn recorded_as_is(scratch: &Host, program: &str, seq: u64, change: Change) -> Result<()> {
    let id = program.to_string();
    scratch.ledger().submit(program, move |tx| {
        let program = &id;
        tx.state().apply_change(&change).map_err(|refused| {
            Error::invalid(format!(
                "cannot replay event {seq} of `{program}`: {refused}"
            ))
        })?;
        Ok(crate::ledger::Staged {
            changes: vec![change.clone()],
            answer: (),
        })
    })
}

/// Replays the history of each of `programs` recorded in `original` against that program
/// (the new version), on a scratch ledger.
pub fn replay(
    sandbox: &Arc<Sandbox>,
    original: &Arc<dyn Journal>,
    programs: &[Arc<Program>],
    window: Window,
) -> Result<Report> {
    let mut report = Report::default();
    let mut transitions: BTreeMap<(String, String, String), Transition> = BTreeMap::new();
    for program in programs {
        let id = program.id();
        let scratch = Host::new(sandbox.clone(), Arc::new(MemoryLedger::new()));
        scratch.insert(program.clone());
        // Cards whose holder was erased (registrations rewritten without facts), and the
        // cards their holders moved to.
        let mut erased: std::collections::HashSet<String> = Default::default();
        for event in original.read(id, 0)? {
            match event.change {
                // The final order is re-decided as it stands, without what was lent:
                // a decision a venue made alone must be allowed here as at the city.
                Change::Leased { .. }
                | Change::Returned { .. }
                | Change::Recalled { .. }
                | Change::Waiting { .. } => {}
                change @ (Change::Redacted { .. }
                | Change::Erased { .. }
                | Change::Restricted { .. }) => {
                    match &change {
                        Change::Redacted { card, .. } => {
                            erased.insert(card.clone());
                        }
                        Change::Erased { cards, .. } => erased.extend(cards.iter().cloned()),
                        _ => {}
                    }
                    recorded_as_is(&scratch, id, event.seq, change)?;
                }
                change @ Change::Decided { .. } if erased.contains(change.card()) => {
                    if let Change::Decided { effects, at, .. } = &change {
                        for effect in effects {
                            if let crate::ledger::Effect::MoveCard { new_card } = effect {
                                erased.insert(new_card.clone());
                            }
                        }
                        let counted = window.since.is_none_or(|since| *at >= since)
                            && window.until.is_none_or(|until| *at <= until);
                        if counted {
                            report.erased += 1;
                        }
                    }
                    recorded_as_is(&scratch, id, event.seq, change)?;
                }
                Change::Registered { holder, .. } => {
                    scratch.register(id, &holder).map_err(|e| {
                        Error::invalid(format!(
                            "cannot replay event {} of `{id}`: the new version refuses holder `{}`: {e}",
                            event.seq, holder.card
                        ))
                    })?;
                }
                Change::Decided {
                    at,
                    request,
                    decision,
                    ..
                } => {
                    if window.until.is_some_and(|until| at > until) {
                        continue;
                    }
                    let (request, recorded) = decode_decided(id, event.seq, &request, &decision)?;
                    // Explained, so that a change names the rule that made it.
                    let mut request = request;
                    request.explain = true;
                    let replayed = scratch.decide(&request)?;
                    if window.since.is_some_and(|since| at < since) {
                        continue;
                    }
                    report.replayed += 1;
                    let (from, to) = (outcome(&recorded), outcome(&replayed));
                    if from == to {
                        report.unchanged += 1;
                        continue;
                    }
                    report.changed += 1;
                    let example = request
                        .id
                        .clone()
                        .unwrap_or_else(|| format!("{}@{}", request.card, request.at));
                    let entry = transitions
                        .entry((id.to_string(), from.clone(), to.clone()))
                        .or_insert_with(|| Transition {
                            program: id.to_string(),
                            from,
                            to,
                            count: 0,
                            examples: Vec::new(),
                            why: Vec::new(),
                        });
                    entry.count += 1;
                    if entry.examples.len() < EXAMPLES {
                        entry.why.push(Why {
                            example: example.clone(),
                            check: differing(&entry.from, &replayed),
                        });
                        entry.examples.push(example);
                    }
                }
            }
        }
        let recorded =
            crate::ledger::Ledger::new(original.clone()).read(id, |state| state.units())?;
        let replayed = scratch.ledger().read(id, |state| state.units())?;
        let mut assets: BTreeMap<String, Units> = BTreeMap::new();
        for (asset, units) in recorded {
            assets.entry(asset).or_default().recorded = units;
        }
        for (asset, units) in replayed {
            assets.entry(asset).or_default().replayed = units;
        }
        if !assets.is_empty() {
            report.assets.insert(id.to_string(), assets);
        }
    }
    let mut transitions: Vec<Transition> = transitions.into_values().collect();
    transitions.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.program.cmp(&b.program))
    });
    report.transitions = transitions;
    Ok(report)
}
