//! Shadow evaluation: a candidate version of a program decides every request the serving
//! version decided, on the very same ledger state, and the two are compared — without
//! committing anything and off the answer's path.
//!
//! The shadow follows the program's journal: before it applies a recorded decision to its
//! own copy of the state, it asks the candidate what it would have decided on that state
//! (the state the serving version decided on), as a dry run. Serving never waits for it;
//! it runs on its own thread, a moment behind.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::decide::dry_run_on;
use crate::error::{Error, Result};
use crate::ledger::{Change, Journal, State, decode_decided};
use crate::model::Decision;
use crate::policy::Sandbox;
use crate::program::Program;

/// Agreements and differences of one program's candidate so far.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// The candidate's version.
    pub version: String,
    pub agreed: u64,
    pub differed: u64,
    /// Decisions on cards whose holder was erased: not compared (the facts they were
    /// decided on are gone).
    pub erased: u64,
    /// `(from, to)` → count, where `from` is what was served and `to` what the candidate
    /// would have decided (`allow` or the denial reason).
    pub transitions: Vec<ShadowTransition>,
}

/// One kind of difference.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowTransition {
    pub from: String,
    pub to: String,
    pub count: u64,
}

struct Follower {
    candidate: Arc<Program>,
    state: State,
    agreed: u64,
    erased: u64,
    differed: BTreeMap<(String, String), u64>,
}

/// Candidates following their programs' journals.
pub struct Shadow {
    sandbox: Arc<Sandbox>,
    journal: Arc<dyn Journal>,
    followers: Mutex<BTreeMap<String, Follower>>,
}

fn outcome(decision: &Decision) -> String {
    if decision.allow {
        "allow".to_string()
    } else {
        decision.reason.clone()
    }
}

impl Shadow {
    /// Candidates for their programs, following `journal`.
    pub fn new(
        sandbox: Arc<Sandbox>,
        journal: Arc<dyn Journal>,
        candidates: Vec<Arc<Program>>,
    ) -> Shadow {
        let followers = candidates
            .into_iter()
            .map(|candidate| {
                let follower = Follower {
                    candidate: candidate.clone(),
                    state: State::default(),
                    agreed: 0,
                    erased: 0,
                    differed: BTreeMap::new(),
                };
                (candidate.id().to_string(), follower)
            })
            .collect();
        Shadow {
            sandbox,
            journal,
            followers: Mutex::new(followers),
        }
    }

    /// Follows every program's journal to its end, comparing each decision recorded since
    /// the last call; returns how many were compared.
    pub fn follow(&self) -> Result<u64> {
        let mut followers = self.followers.lock();
        let mut compared = 0;
        for (program, follower) in followers.iter_mut() {
            for event in self.journal.read(program, follower.state.seq())? {
                if let Change::Decided {
                    card,
                    request,
                    decision,
                    ..
                } = &event.change
                {
                    if follower.state.erased(card).is_some() {
                        follower.erased += 1;
                    } else {
                        compared += 1;
                        let recorded = decode_decided(program, event.seq, request, decision);
                        follower.compare(&self.sandbox, program, recorded);
                    }
                }
                let mark = follower.state.mark();
                follower
                    .state
                    .apply_change(&event.change)
                    .map_err(|refused| {
                        Error::ledger(
                            format!("journal of `{program}`, event {}", event.seq),
                            format!("cannot be applied: {refused}"),
                        )
                    })?;
                follower.state.advance(1);
                follower.state.settle(mark);
            }
        }
        Ok(compared)
    }

    /// The tallies so far, by program.
    pub fn tallies(&self) -> BTreeMap<String, Tally> {
        self.followers
            .lock()
            .iter()
            .map(|(program, f)| {
                let mut transitions: Vec<ShadowTransition> = f
                    .differed
                    .iter()
                    .map(|((from, to), &count)| ShadowTransition {
                        from: from.clone(),
                        to: to.clone(),
                        count,
                    })
                    .collect();
                transitions.sort_by_key(|t| std::cmp::Reverse(t.count));
                let tally = Tally {
                    version: f.candidate.policy.info.version.clone(),
                    agreed: f.agreed,
                    erased: f.erased,
                    differed: f.differed.values().sum(),
                    transitions,
                };
                (program.clone(), tally)
            })
            .collect()
    }
}

impl Follower {
    fn compare(
        &mut self,
        sandbox: &Sandbox,
        program: &str,
        recorded: Result<(crate::Request, Decision)>,
    ) {
        let Ok((request, served)) = recorded else {
            tracing::warn!(program, "shadow: a recorded decision cannot be read back");
            return;
        };
        let candidate = match dry_run_on(sandbox, &self.candidate, &request, &mut self.state) {
            Ok(decision) => outcome(&decision),
            Err(e) => format!("error: {e}"),
        };
        let served = outcome(&served);
        if candidate == served {
            self.agreed += 1;
        } else {
            tracing::info!(
                program,
                card = request.card,
                action = request.action,
                id = request.id.as_deref().unwrap_or(""),
                "shadow differs: served `{served}`, candidate `{candidate}`"
            );
            *self.differed.entry((served, candidate)).or_insert(0) += 1;
        }
    }
}
