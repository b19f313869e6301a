//! The ledger: an append-only journal of events per program, and each program's state
//! derived from it in memory.
//!
//! Everything that changes the ledger — a holder registered or replaced, a decision with
//! the effects it applied — is a [`Change`] appended to the program's journal. A
//! program's [`State`] (holders, counters, lots, decisions by request id) is the result of
//! applying its journal in order; it is rebuilt that way whenever a ledger is opened, so
//! the journal is the ledger and the state a cache of it.
//!
//! A backend ([`Journal`]) only stores and returns events: memory here, SQLite and
//! PostgreSQL in their own crates, each storing an event as the one row [`EventRow`]
//! (`row.rs`). The semantics — balances, earliest-expiry-first consumption,
//! transfers keeping expiry, card moves carrying the usage history, exact arithmetic —
//! are written once, in [`State`]. Concurrency and group commit are in [`Ledger`]
//! (see `commit.rs` for why the outcome is serializable).

mod commit;
pub mod conformance;
mod memory;
pub(crate) mod reads;
mod row;
pub mod snapshot;
mod start;
mod state;

use serde::{Deserialize, Serialize};

pub(crate) use commit::Reader;
pub use commit::{Commit, CommitObserver, Ledger, Staged, Stats, Tx};
pub use memory::MemoryLedger;
pub use row::{EventRow, decode_decided};
pub use snapshot::{Snapshot, SnapshotInfo};
pub use start::{ProgramSnapshots, ProgramStart, SNAPSHOT_EVERY, catch_up};
pub use state::{Mark, State, View};

use crate::error::Result;
use std::collections::BTreeMap;

use crate::model::{CardState, Holder};

/// The most units of an asset a card may hold, and the most a counter may total: amounts
/// beyond are refused, never wrapped (10^15 øre is ten thousand billion kroner). Any sum
/// of values each within it fits an `i64` many thousand times over.
pub const MAX_UNITS: i64 = 1_000_000_000_000_000;

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

/// An earlier decision found by its request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The request as it was fingerprinted (JSON, defaults applied).
    pub request: String,
    /// The decision as answered (JSON).
    pub decision: String,
}

/// A change to the ledger requested by an allowed decision (see the WIT `effect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "effect")]
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
        #[serde(rename = "to-card")]
        to_card: String,
        asset: String,
        amount: i64,
    },
    Forfeit {
        asset: String,
    },
    SetState {
        state: CardState,
    },
    MoveCard {
        #[serde(rename = "new-card")]
        new_card: String,
    },
}

impl Effect {
    /// The effect's name, as the policy world spells it (`move-card`).
    pub fn name(&self) -> &'static str {
        match self {
            Effect::Count { .. } => "count",
            Effect::Grant { .. } => "grant",
            Effect::Consume { .. } => "consume",
            Effect::Transfer { .. } => "transfer",
            Effect::Forfeit { .. } => "forfeit",
            Effect::SetState { .. } => "set-state",
            Effect::MoveCard { .. } => "move-card",
        }
    }

    /// The asset the effect moves, if it moves one.
    pub fn asset(&self) -> Option<&str> {
        match self {
            Effect::Grant { asset, .. }
            | Effect::Consume { asset, .. }
            | Effect::Transfer { asset, .. }
            | Effect::Forfeit { asset } => Some(asset),
            Effect::Count { .. } | Effect::SetState { .. } | Effect::MoveCard { .. } => None,
        }
    }
}

/// Why an effect could not be applied: the policy (or a registration) asked for something
/// impossible. Nothing of the decision is committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What an event of the journal changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Change {
    /// A holder was registered, or an existing holder's facts replaced (starting
    /// balances only for a new card).
    Registered {
        holder: Holder,
        /// When (seconds since the epoch, the host's clock); none in ledgers written
        /// before registrations were timed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
    },
    /// A decision was made and recorded; an allowed one applied `effects`.
    Decided {
        card: String,
        /// The request's time (seconds since the epoch).
        at: i64,
        /// The idempotency key it is recorded under; none for requests without one and
        /// for faults (`policy-error`), which a retry decides afresh.
        #[serde(
            rename = "request-id",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        request_id: Option<String>,
        /// The request, as fingerprinted (JSON).
        request: String,
        /// The decision, as answered (JSON).
        decision: String,
        /// The effects applied (empty for a denial).
        effects: Vec<Effect>,
        /// The digest of the policy component that decided.
        digest: String,
        /// Fuel the policy used.
        fuel: u64,
    },
    /// A registration whose holder was erased later (at event `erased`): rewritten in
    /// place by the erasure, it keeps what the registration changed that is not personal
    /// — the card, its state, its starting balances — and none of the holder's facts.
    Redacted {
        card: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
        state: CardState,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        balances: BTreeMap<String, i64>,
        /// The position of the erasure that rewrote it.
        erased: u64,
    },
    /// A holder's personal data was erased: every earlier registration of `cards` (the
    /// holder's cards, `card` first) is rewritten as [`Change::Redacted`] and their
    /// decisions keep only what the law keeps. `effects` are what the erasure itself did
    /// to the card (forfeits of what a program lets lapse on erasure).
    Erased {
        card: String,
        at: i64,
        cards: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        effects: Vec<Effect>,
        /// Who asked (`retention` when a program's retention erased it).
        by: String,
    },
    /// A holder was restricted (its data kept, nothing processed) or released.
    Restricted {
        card: String,
        at: i64,
        restricted: bool,
        by: String,
    },
    /// The city lent `venue` what it may decide alone while it cannot reach the city
    /// (see `crate::offline`), replacing any lease it held.
    Leased {
        venue: String,
        at: i64,
        lease: crate::offline::Lease,
    },
    /// `venue`'s lease ended: handed back by the venue once everything it decided alone
    /// was uploaded, or ended by an operator (`by`).
    Returned { venue: String, at: i64, by: String },
    /// The city asked `venue` for its lease back (something it holds is wanted at the
    /// city): the venue stops deciding under it as soon as its copy shows this, and
    /// hands it back.
    Recalled { venue: String, at: i64 },
    /// A request the city keeps waiting (answered `pending`) for `venue`'s lease, which
    /// holds what it changes; decided once the venue hands the lease back.
    Waiting {
        card: String,
        at: i64,
        venue: String,
        #[serde(rename = "request-id")]
        request_id: String,
        /// The request, as fingerprinted (JSON).
        request: String,
    },
}

/// One entry of a program's journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the program's journal, from 1.
    pub seq: u64,
    pub change: Change,
}

/// Changes of one program to append after its event `after`.
#[derive(Debug)]
pub struct Batch<'a> {
    pub program: &'a str,
    /// The program's last event when the batch was decided; the batch is appended only if
    /// it is still the last (otherwise another writer got there first).
    pub after: u64,
    pub changes: &'a [Change],
}

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Durable: on disk before `append` returned.
    Done,
    /// Another writer appended to the program after `after`: nothing was written; the
    /// caller catches up and decides the batch again.
    Conflict,
}

impl Change {
    /// The card the change is about: the card registered, or the acting card of a
    /// decision (the `card` column of its row).
    pub fn card(&self) -> &str {
        match self {
            Change::Registered { holder, .. } => &holder.card,
            Change::Decided { card, .. }
            | Change::Redacted { card, .. }
            | Change::Erased { card, .. }
            | Change::Restricted { card, .. } => card,
            // About a venue, no card.
            Change::Leased { .. } | Change::Returned { .. } | Change::Recalled { .. } => "",
            Change::Waiting { card, .. } => card,
        }
    }

    /// Whether the change is about what the city lends its venues (a lease, its end, its
    /// recall, a request waiting for one) rather than about holders and their cards: what
    /// a re-decision of the final order leaves out (see `crate::offline`).
    pub fn about_leases(&self) -> bool {
        matches!(
            self,
            Change::Leased { .. }
                | Change::Returned { .. }
                | Change::Recalled { .. }
                | Change::Waiting { .. }
        )
    }

    /// The decision a retry of its request id is answered with, if it is a decision
    /// recorded under an id.
    pub fn recorded(&self) -> Option<(&str, Recorded)> {
        match self {
            Change::Decided {
                request_id: Some(id),
                request,
                decision,
                ..
            } => Some((
                id,
                Recorded {
                    request: request.clone(),
                    decision: decision.clone(),
                },
            )),
            _ => None,
        }
    }

    /// When it happened (seconds since the epoch), if known: a decision's request time, a
    /// registration's time on the host's clock (the `at` column of its row).
    pub fn at(&self) -> Option<i64> {
        match self {
            Change::Registered { at, .. } | Change::Redacted { at, .. } => *at,
            Change::Decided { at, .. }
            | Change::Erased { at, .. }
            | Change::Restricted { at, .. }
            | Change::Leased { at, .. }
            | Change::Returned { at, .. }
            | Change::Recalled { at, .. }
            | Change::Waiting { at, .. } => Some(*at),
        }
    }

    /// This change as the erasure at position `erasure` leaves it, if it is one the
    /// erasure rewrites: a registration keeps its card, state and starting balances; a
    /// decision keeps its request (card, action, offer, amounts, time, id: no facts of
    /// the holder) and its outcome, without the notes, checks and reads a policy or an
    /// explanation added. Other changes hold nothing personal and stay as they are.
    pub fn redacted(&self, erasure: u64) -> Option<Change> {
        match self {
            Change::Registered { holder, at } => Some(Change::Redacted {
                card: holder.card.clone(),
                at: *at,
                state: holder.state,
                balances: holder.balances.clone(),
                erased: erasure,
            }),
            Change::Decided {
                card,
                at,
                request_id,
                request,
                decision,
                effects,
                digest,
                fuel,
            } => {
                let mut kept: serde_json::Value = serde_json::from_str(decision).ok()?;
                let object = kept.as_object_mut()?;
                let stripped = ["checks", "reads", "error"]
                    .iter()
                    .any(|key| object.remove(*key).is_some());
                let noted = object
                    .get("notes")
                    .and_then(|n| n.as_array())
                    .is_some_and(|n| !n.is_empty());
                if !stripped && !noted {
                    return None;
                }
                object.insert("notes".into(), serde_json::Value::Array(Vec::new()));
                Some(Change::Decided {
                    card: card.clone(),
                    at: *at,
                    request_id: request_id.clone(),
                    request: request.clone(),
                    decision: kept.to_string(),
                    effects: effects.clone(),
                    digest: digest.clone(),
                    fuel: *fuel,
                })
            }
            Change::Redacted { .. }
            | Change::Erased { .. }
            | Change::Restricted { .. }
            | Change::Leased { .. }
            | Change::Returned { .. }
            | Change::Recalled { .. }
            | Change::Waiting { .. } => None,
        }
    }

    /// The cards an erasure erases and its position's changes to rewrite: for
    /// backends, which rewrite every earlier event of `cards` with [`Change::redacted`]
    /// in the transaction that appends the erasure.
    pub fn erases(&self) -> Option<&[String]> {
        match self {
            Change::Erased { cards, .. } => Some(cards),
            _ => None,
        }
    }
}

/// Whether an erasure stands in `changes` (a program's journal, from position 1) after
/// position `seq`: then a snapshot at `seq` may hold what it erased, and is not kept.
fn erased_after(changes: &[Change], seq: u64) -> bool {
    changes
        .iter()
        .skip(usize::try_from(seq).unwrap_or(usize::MAX))
        .any(|change| change.erases().is_some())
}

/// The refusal of a compaction that an erasure overtook.
pub fn erased_meanwhile(program: &str) -> crate::Error {
    crate::Error::invalid(format!(
        "cannot compact the journal of `{program}` now: a holder was erased while its base snapshot was built; the next run compacts it"
    ))
}

/// Which events of a program [`Journal::history`] returns: a card statement's page.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery<'a> {
    /// The cards whose events are wanted (a holder's cards: see [`State::lineage`]).
    pub cards: &'a [String],
    /// Only events after this position.
    pub after: u64,
    /// Only events at or after this time; with `since` or `until`, events without a
    /// time are left out.
    pub since: Option<i64>,
    /// Only events before this time.
    pub until: Option<i64>,
    /// At most this many events.
    pub limit: usize,
}

impl HistoryQuery<'_> {
    /// Whether `event` is one the query asks for (its position and limit aside).
    pub fn matches(&self, change: &Change) -> bool {
        let card = change.card();
        if !self.cards.iter().any(|c| c == card) {
            return false;
        }
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        change.at().is_some_and(|at| {
            self.since.is_none_or(|since| at >= since) && self.until.is_none_or(|until| at < until)
        })
    }
}

/// One read or change of a holder's personal data (the access log, kept apart from the
/// journal: see [`Journal::record_access`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// Its position in the log (0 for an entry not yet recorded).
    #[serde(skip)]
    pub id: u64,
    pub program: String,
    pub card: String,
    /// When (seconds since the epoch, the host's clock).
    pub at: i64,
    /// The token's name (`-` on a server without `--auth`).
    pub token: String,
    /// The route, as the contract writes it (`GET /v1/programs/{program}/cards/{card}`).
    pub route: String,
    pub method: String,
}

/// What a journal holds (see [`Journal::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JournalStats {
    /// By program, sorted.
    pub programs: Vec<ProgramStats>,
    /// The space the ledger takes (file or tables, indexes included), if known.
    pub bytes: Option<u64>,
}

/// One program's part of [`JournalStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProgramStats {
    pub program: String,
    /// Events in its journal.
    pub events: u64,
    /// Its last position.
    pub last: u64,
    /// Its latest snapshot's position, time and size, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotInfo>,
}

/// Where a ledger's events are kept: a backend.
pub trait Journal: Send + Sync {
    /// The events of `program` after position `after`, in order.
    fn read(&self, program: &str, after: u64) -> Result<Vec<Event>>;

    /// At most `limit` events of `program` after position `after`, in order: how a state
    /// catches up with a long journal without holding all of it at once. This default
    /// reads every event after `after` and is for journals kept in memory.
    fn read_page(&self, program: &str, after: u64, limit: usize) -> Result<Vec<Event>> {
        let mut events = self.read(program, after)?;
        events.truncate(limit);
        Ok(events)
    }

    /// The decision recorded under `request_id` in `program`'s journal, if any: what a
    /// retry is answered with, however old. Backends answer from their unique index on
    /// the id; this default reads the whole journal.
    fn recorded(&self, program: &str, request_id: &str) -> Result<Option<Recorded>> {
        Ok(self
            .read(program, 0)?
            .iter()
            .filter_map(|event| event.change.recorded())
            .find(|(id, _)| *id == request_id)
            .map(|(_, recorded)| recorded))
    }

    /// The latest `limit` snapshots of `program`, newest first. A journal that keeps no
    /// snapshots has none.
    fn snapshots(&self, program: &str, limit: usize) -> Result<Vec<Snapshot>> {
        let _ = (program, limit);
        Ok(Vec::new())
    }

    /// Keeps `snapshot`, and of its program's older ones only the newest
    /// [`snapshot::KEPT`] - 1. A journal that keeps no snapshots forgets it.
    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let _ = snapshot;
        Ok(())
    }

    /// Keeps what a city host knows of the venue host `venue` (`status`: JSON, as
    /// `GET /v1/venues` shows it) in place of what it kept before, beside the journal and
    /// never in it: a city's venues survive its restarts. A journal that keeps none
    /// forgets it.
    fn save_venue(&self, venue: &str, status: &str) -> Result<()> {
        let _ = (venue, status);
        Ok(())
    }

    /// Keeps `entry` (JSON) as number `seq` of `program`'s outbox: what a venue host
    /// decided alone or kept for its city, durable before it answers (see
    /// `crate::offline`), beside the journal and never in it. A journal that keeps none
    /// refuses: a venue deciding alone needs one.
    fn keep_outbox(&self, program: &str, seq: u64, entry: &str) -> Result<()> {
        let _ = (seq, entry);
        Err(crate::Error::host(
            format!("cannot keep what the venue decided alone in `{program}`"),
            format!("{} keeps no outbox", self.describe()),
        ))
    }

    /// `program`'s outbox, in order.
    fn outbox(&self, program: &str) -> Result<Vec<(u64, String)>> {
        let _ = program;
        Ok(Vec::new())
    }

    /// Removes entries `seqs` of `program`'s outbox (the city's journal holds them now).
    fn drop_outbox(&self, program: &str, seqs: &[u64]) -> Result<()> {
        let _ = (program, seqs);
        Ok(())
    }

    /// Each venue's status kept by [`Journal::save_venue`], by name.
    fn venues(&self) -> Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }

    /// Records who read or changed a holder's personal data, beside the journal and never
    /// in it, durably before it returns. A journal that keeps no access log forgets it.
    fn record_access(&self, entries: &[Access]) -> Result<()> {
        let _ = entries;
        Ok(())
    }

    /// At most `limit` entries of the access log of `card` of `program` after position
    /// `after`, oldest first.
    fn accesses(&self, program: &str, card: &str, after: u64, limit: usize) -> Result<Vec<Access>> {
        let _ = (program, card, after, limit);
        Ok(Vec::new())
    }

    /// Removes every event of `base.program` before position `base.seq` and keeps `base`
    /// as the program's **base snapshot** (the state at that position, which the events
    /// after it build on), in one atomic commit; returns how many events were removed. The
    /// event at `base.seq` stays, so that the snapshot is bound to its journal as any is,
    /// and the base snapshot is never rotated out by newer ones. Refused, with nothing
    /// done, if an erasure was appended after position `seen` (the journal's end when the
    /// snapshot was built, which may hold what it erased). A journal that cannot remove
    /// events refuses.
    fn compact(&self, base: &Snapshot, seen: u64) -> Result<u64> {
        let _ = seen;
        Err(crate::Error::invalid(format!(
            "the journal `{}` cannot remove events (program `{}`)",
            self.describe(),
            base.program
        )))
    }

    /// Begins `base.program`'s empty journal at the base snapshot `base`: keeps it as the
    /// program's base snapshot and appends `changes` at the positions from `base.seq` on
    /// (the first is the event the snapshot is bound to), in one commit. How a venue
    /// host starts to follow a city whose journal was compacted. Refused if the program's
    /// journal holds any event; a journal that cannot begin past position 1 refuses.
    fn adopt(&self, base: &Snapshot, changes: &[Change]) -> Result<()> {
        let _ = changes;
        Err(crate::Error::invalid(format!(
            "the journal `{}` cannot begin `{}` at a base snapshot",
            self.describe(),
            base.program
        )))
    }

    /// Gives the space of removed rows back (SQLite `VACUUM`, PostgreSQL `VACUUM`); a
    /// journal with nothing to give back does nothing.
    fn reclaim(&self) -> Result<()> {
        Ok(())
    }

    /// Removes the access-log entries of `program` from before `before` (seconds since
    /// the epoch); returns how many.
    fn forget_accesses(&self, program: &str, before: i64) -> Result<u64> {
        let _ = (program, before);
        Ok(0)
    }

    /// Every program with events, its event count and last position, and what its
    /// snapshots and the whole ledger take: for `cardrules ledger stats`.
    fn stats(&self) -> Result<JournalStats>;

    /// The events of `program` that `query` asks for, in order. Backends answer from an
    /// index by card, so that a page costs the same however long the journal; this
    /// default reads the whole journal and is for journals kept in memory.
    fn history(&self, program: &str, query: &HistoryQuery<'_>) -> Result<Vec<Event>> {
        let mut events = self.read(program, query.after)?;
        events.retain(|event| query.matches(&event.change));
        events.truncate(query.limit);
        Ok(events)
    }

    /// Appends each batch whose program's journal still ends at its `after`, all in one
    /// atomic, durable commit; returns one outcome per batch, in order. An error means
    /// nothing was written.
    fn append(&self, batches: &[Batch<'_>]) -> Result<Vec<Appended>>;

    /// Where the events are kept, for logs (never a secret).
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_ledger_conforms() {
        conformance::run_all(&|| std::sync::Arc::new(MemoryLedger::new()), &|journal| {
            journal.clone()
        });
    }
}
