//! Retention: what a program's `[retention]` says the ledger keeps no longer, removed.
//!
//! - **Ended holders** (`holders`): the holder of a stopped card whose holder's cards have
//!   had no event for the period is erased, as an admin would erase it (see
//!   [`Host::erase`], by `retention`); one with money left on the card is kept and
//!   reported.
//! - **Old events** (`decisions`): the events from the journal's start up to the first one
//!   still within the period are folded into a **base snapshot** — the program's state at
//!   that position, written without the facts of any holder erased since — and removed
//!   from the journal ([`crate::ledger::Journal::compact`]). The state, and so every
//!   answer, is the same as before: only the journal is shorter, and with it statements
//!   and exports. A start, a verify and a replica begin at the base snapshot.
//! - **The access log** (`access-log`): entries older than the period.
//!
//! Compaction runs beside the lanes: it reads the journal and appends nothing but what an
//! erasure appends, and its removal is one transaction that keeps the event the base
//! snapshot is bound to. Lanes keep deciding meanwhile.

use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::host::Host;
use crate::ledger::snapshot::{Snapshot, base_state};
use crate::ledger::{HistoryQuery, View, catch_up};
use crate::model::CardState;
use crate::program::Program;

/// Who an erasure by retention is recorded as.
pub const RETENTION: &str = "retention";

/// How many events a search for the compaction's end reads at a time.
const PAGE: usize = 10_000;

/// What a compaction may do.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Remove old events (`decisions`): only where request times are bounded.
    pub remove_events: bool,
    /// Erase ended holders (`holders`): only on a host whose journal is its own (a city),
    /// not on a venue's copy, which receives the city's erasures.
    pub erase_ended: bool,
    /// Remove old events only when at least this many are due: each removal writes a
    /// new base snapshot (the program's whole state), which a server running it every
    /// hour need not do for an hour's worth of events.
    pub min_events: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            remove_events: true,
            erase_ended: true,
            min_events: 1,
        }
    }
}

/// What a server removes at least, when it applies retention in the background.
pub const MIN_EVENTS_WHILE_SERVING: u64 = 10_000;

/// What compaction did to one program.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Compaction {
    pub program: String,
    /// The position of its new base snapshot, if events were removed.
    pub base: Option<u64>,
    /// Events removed from the journal.
    pub events_removed: u64,
    /// Events the journal holds now.
    pub events_kept: u64,
    /// Holders of ended cards erased (their current cards).
    pub holders_erased: Vec<String>,
    /// Holders of ended cards kept because money is left on them, with why.
    pub holders_kept: Vec<String>,
    /// Access-log entries removed.
    pub accesses_removed: u64,
    /// How long it took, in milliseconds.
    pub millis: u64,
}

impl Host {
    /// Applies every served program's `[retention]` at `now` (seconds since the epoch);
    /// one report per program that has one.
    pub fn compact(&self, now: i64) -> Result<Vec<Compaction>> {
        self.compact_with(now, Options::default())
    }

    /// [`Host::compact`], doing only what `options` allow.
    pub fn compact_with(&self, now: i64, options: Options) -> Result<Vec<Compaction>> {
        let mut done = Vec::new();
        for program in self.programs() {
            if program.files.manifest.retention.any() {
                done.push(self.compact_program(&program, now, options)?);
            }
        }
        if !done.is_empty() {
            // One count of the whole journal, not one per program.
            let stats = self.ledger().journal().stats()?;
            for report in &mut done {
                report.events_kept = stats
                    .programs
                    .iter()
                    .find(|p| p.program == report.program)
                    .map_or(0, |p| p.events);
            }
        }
        Ok(done)
    }

    fn compact_program(&self, program: &Program, now: i64, options: Options) -> Result<Compaction> {
        let began = Instant::now();
        let id = program.id();
        let retention = &program.files.manifest.retention;
        let journal = self.ledger().journal().clone();
        let mut report = Compaction {
            program: id.to_string(),
            ..Compaction::default()
        };
        if let Some(period) = retention.holders.filter(|_| options.erase_ended) {
            let horizon = now.saturating_sub(period.as_secs());
            let ended: Vec<(String, Vec<String>)> = self.ledger().read(id, |state| {
                state
                    .cards()
                    .into_iter()
                    .filter(|card| {
                        state
                            .holder(card)
                            .is_some_and(|h| h.state == CardState::Stopped)
                            && state.replaced_by(card).is_none()
                            && !state.restricted(card)
                    })
                    .map(|card| (card.to_string(), state.lineage(card)))
                    .collect()
            })?;
            for (card, cards) in ended {
                let recent = journal.history(
                    id,
                    &HistoryQuery {
                        cards: &cards,
                        after: 0,
                        since: Some(horizon),
                        until: None,
                        limit: 1,
                    },
                )?;
                if !recent.is_empty() {
                    continue;
                }
                match self.erase(id, &card, RETENTION) {
                    Ok(_) => report.holders_erased.push(card),
                    Err(Error::Kept(why)) => report.holders_kept.push(why),
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some(period) = retention.decisions.filter(|_| options.remove_events) {
            let horizon = now.saturating_sub(period.as_secs());
            // What the journal held before the state was built: an erasure after it is
            // not in the state, and refuses the compaction (see `Journal::compact`).
            let seen = self.ledger().read(id, |state| state.seq())?;
            if let Some(base) = end_of_old(journal.as_ref(), id, horizon, options.min_events)? {
                let mut state = base_state(journal.as_ref(), id)?;
                catch_up(journal.as_ref(), id, &mut state, Some(base))?;
                let snapshot = Snapshot::of(journal.as_ref(), id, &state)?;
                report.events_removed = journal.compact(&snapshot, seen)?;
                report.base = Some(base);
            }
        }
        if let Some(period) = retention.access_log {
            report.accesses_removed =
                journal.forget_accesses(id, now.saturating_sub(period.as_secs()))?;
        }
        report.millis = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        if report.events_removed > 0 || !report.holders_erased.is_empty() {
            tracing::info!(
                program = id,
                "retention of `{id}`: {} events removed (base snapshot at {:?}), {} holders erased, {} access-log entries removed, in {} ms",
                report.events_removed,
                report.base,
                report.holders_erased.len(),
                report.accesses_removed,
                report.millis
            );
        }
        Ok(report)
    }
}

/// The position of the last event of `program`'s journal such that it and every event
/// before it happened before `horizon` (events without a time count as old): the base of
/// the next compaction, if that removes anything (it is after the journal's first event).
fn end_of_old(
    journal: &dyn crate::ledger::Journal,
    program: &str,
    horizon: i64,
    min_events: u64,
) -> Result<Option<u64>> {
    let mut after = 0;
    let mut first = None;
    let mut last_old = None;
    'pages: loop {
        let events = journal.read_page(program, after, PAGE)?;
        let Some(end) = events.last().map(|e| e.seq) else {
            break;
        };
        for event in events {
            first.get_or_insert(event.seq);
            if event.change.at().is_some_and(|at| at >= horizon) {
                break 'pages;
            }
            last_old = Some(event.seq);
        }
        after = end;
    }
    Ok(match (first, last_old) {
        (Some(first), Some(last)) if last > first && last - first >= min_events => Some(last),
        _ => None,
    })
}
