//! Why an entry of a card's statement was decided as it was: the recorded request decided
//! again, explained, on the program's state just before that entry (its journal read up to
//! the event before it), committing nothing.
//!
//! The journal keeps a decision as it was answered, never its explanation (see
//! docs/contract.md, "Explained decisions"); policies are deterministic, so the same
//! version on the same state gives the same answer and its checks and reads say why. When
//! the program has been updated since, the explanation is the served version's, and
//! `same-version` is false: the answer shows both decisions side by side.

use serde::Serialize;

use crate::decide;
use crate::error::{Error, Result};
use crate::host::Host;
use crate::ids;
use crate::ledger::{Change, State, View, catch_up, decode_decided};
use crate::model::Decision;

/// An entry of a statement and its explanation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Why {
    pub program: String,
    /// The card whose statement holds the entry.
    pub card: String,
    /// The entry's position in the program's journal (its `seq` in the statement).
    pub seq: u64,
    /// The card the decision was asked for (an earlier card of the holder, or `card`).
    pub acting_card: String,
    /// The decision as it was answered and recorded.
    pub recorded: Decision,
    /// The same request decided again on the state just before it, with `checks` and
    /// `reads`, by the version served now.
    pub explained: Decision,
    /// Whether the version served now is the one that decided it (same component digest).
    pub same_version: bool,
}

/// What [`explain_entry`] found.
pub enum Found {
    /// The card is not known to the program.
    UnknownCard,
    /// The card's statement has no decision at that position.
    NoSuchEntry,
    Entry(Box<Why>),
}

/// Why the decision at `seq` of `card`'s statement (its own or an earlier card of its
/// holder's) was decided as it was. Reads the program's journal up to `seq`: its cost
/// grows with the journal's length before the entry.
pub fn explain_entry(
    host: &Host,
    program: &str,
    card: &str,
    seq: u64,
    language: Option<&str>,
) -> Result<Found> {
    let program = host.program(program)?;
    ids::check(ids::Kind::Card, "card", card)?;
    if let Some(language) = language
        && !program
            .files
            .manifest
            .languages
            .iter()
            .any(|l| l == language)
    {
        return Err(Error::invalid(format!(
            "`language`: program `{}` has no messages in language `{language}`",
            program.id()
        )));
    }
    let id = program.id();
    let Some(cards) = host
        .ledger()
        .read(id, |state| state.holder(card).map(|_| state.lineage(card)))?
    else {
        return Ok(Found::UnknownCard);
    };
    if seq == 0 {
        return Ok(Found::NoSuchEntry);
    }
    let journal = host.ledger().journal();
    let Some(event) = journal
        .read_page(id, seq - 1, 1)?
        .into_iter()
        .find(|e| e.seq == seq)
    else {
        return Ok(Found::NoSuchEntry);
    };
    let Change::Decided {
        card: acting,
        request,
        decision,
        ..
    } = &event.change
    else {
        return Ok(Found::NoSuchEntry);
    };
    if !cards.contains(acting) {
        return Ok(Found::NoSuchEntry);
    }
    let (mut request, recorded) = decode_decided(id, seq, request, decision)?;
    let mut state = State::default();
    catch_up(journal.as_ref(), id, &mut state, Some(seq - 1))?;
    request.explain = true;
    request.dry_run = true;
    request.id = None;
    request.language = language.map(str::to_string);
    let explained = decide::dry_run_on(host.sandbox(), &program, &request, &mut state)?;
    Ok(Found::Entry(Box::new(Why {
        program: id.to_string(),
        card: card.to_string(),
        seq,
        acting_card: acting.clone(),
        same_version: recorded.policy.digest == explained.policy.digest,
        recorded,
        explained,
    })))
}
