//! What a card did: its statement (docs/contract.md "History"), read from the journal of
//! any backend by its index on (program, card, position), page by page.
//!
//! Usage history belongs to the holder: a card's statement holds the events of every card
//! its holder had before it (see [`crate::ledger::State::lineage`]), so a replaced card's
//! history continues on the new card. An entry shows a decision as it was answered and
//! recorded — its message in the language asked then, and the acting card's balances
//! right after it. Incoming transfers are the giver's events, not the receiver's.
//!
//! A cursor is opaque to callers: the position of the last entry given, bound to the
//! program and card it was given for, so that a cursor of one card's statement is refused
//! for another.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ledger::{Change, Effect, Event, decode_decided};
use crate::model::parse_instant;

/// Entries per page when the caller names no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The most entries a page may ask for.
pub const MAX_LIMIT: usize = 1_000;

/// A page of a card's statement.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct History {
    pub program: String,
    pub card: String,
    /// Oldest first.
    pub entries: Vec<Entry>,
    /// The cursor of the next page (`?after=`), or none after the last.
    pub next: Option<String>,
}

/// What kind of event an entry is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A decision, allowed or denied.
    Decided,
    /// The holder was registered, or its facts changed.
    Registered,
    /// An allowed decision that moved the holder to a new card.
    Replaced,
    /// The holder's personal data was erased.
    Erased,
    /// The holder was restricted (`allow` false) or the restriction lifted (`allow` true).
    Restricted,
    /// A venue was lent what it may decide alone (`card` empty).
    Leased,
    /// A venue's lease ended (`card` empty).
    Returned,
    /// A request the city keeps waiting for a venue's lease; decided later (its own
    /// entry).
    Pending,
}

/// One entry of a statement.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Entry {
    /// The event's position in the program's journal.
    pub seq: u64,
    pub kind: EntryKind,
    /// The card the event happened on (one of the holder's cards).
    pub card: String,
    /// When: the request's time for a decision, the host's time for a registration (none
    /// for registrations recorded before they were timed).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub at: Option<Timestamp>,
    /// The request's idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_card: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_card: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
    /// The acting card's balances right after the decision, as recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balances: Option<BTreeMap<String, i64>>,
    /// The venue host the decision came through, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venue: Option<String>,
    /// Decided by that venue alone while it could not reach the city.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,
}

/// Which page of a statement a caller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Entries per page, 1 to [`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]).
    pub limit: usize,
    /// The cursor the previous page answered as `next`.
    pub after: Option<String>,
}

impl Default for HistoryPage {
    /// The first page, of [`DEFAULT_LIMIT`] entries, over all time.
    fn default() -> HistoryPage {
        HistoryPage {
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

impl HistoryPage {
    /// A page from a caller's text parameters (`since`, `until`, `limit`, `after`),
    /// checked: errors name the parameter.
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        limit: Option<&str>,
        after: Option<&str>,
    ) -> Result<HistoryPage> {
        let time = |name: &str, text: Option<&str>| -> Result<Option<Timestamp>> {
            text.map(|t| parse_instant(t).map_err(|e| Error::invalid(format!("`{name}`: {e}"))))
                .transpose()
        };
        let since = time("since", since)?;
        let until = time("until", until)?;
        if let (Some(since), Some(until)) = (since, until)
            && since > until
        {
            return Err(Error::invalid(format!(
                "`since` ({since}) is after `until` ({until})"
            )));
        }
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "`limit` must be a whole number from 1 to {MAX_LIMIT}, not `{text}`"
                    ))
                })?,
        };
        Ok(HistoryPage {
            since,
            until,
            limit,
            after: after.map(str::to_string),
        })
    }
}

/// The cursor after position `seq` of `card`'s statement in `program`: the position and
/// a check of the program and card, in hex.
pub(crate) fn cursor(program: &str, card: &str, seq: u64) -> String {
    format!("{seq:016x}{:08x}", check(program, card))
}

/// The position a cursor stands for, if it is one of ours for this program and card.
pub(crate) fn position(program: &str, card: &str, cursor: &str) -> Result<u64> {
    let refused = || {
        Error::invalid(format!(
            "`after`: `{cursor}` is not a cursor of the history of card `{card}` (pass the `next` of the previous page)"
        ))
    };
    if cursor.len() != 24 || !cursor.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused());
    }
    let (seq, checked) = cursor.split_at(16);
    let seq = u64::from_str_radix(seq, 16).map_err(|_| refused())?;
    let checked = u32::from_str_radix(checked, 16).map_err(|_| refused())?;
    if checked != check(program, card) {
        return Err(refused());
    }
    Ok(seq)
}

/// FNV-1a of the program and card: not a secret, only a guard against a cursor of one
/// statement used for another.
fn check(program: &str, card: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in program.bytes().chain([0]).chain(card.bytes()) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The entry of a journal event of `program`.
pub(crate) fn entry(program: &str, event: Event) -> Result<Entry> {
    let at = |seconds: Option<i64>| seconds.and_then(|s| Timestamp::from_second(s).ok());
    let seq = event.seq;
    Ok(match event.change {
        Change::Registered { holder, at: when } => Entry {
            seq,
            kind: EntryKind::Registered,
            card: holder.card,
            at: at(when),
            ..Entry::empty()
        },
        Change::Redacted { card, at: when, .. } => Entry {
            seq,
            kind: EntryKind::Registered,
            card,
            at: at(when),
            ..Entry::empty()
        },
        Change::Erased { card, at: when, .. } => Entry {
            seq,
            kind: EntryKind::Erased,
            card,
            at: at(Some(when)),
            ..Entry::empty()
        },
        Change::Leased { at: when, .. } => Entry {
            seq,
            kind: EntryKind::Leased,
            at: at(Some(when)),
            ..Entry::empty()
        },
        Change::Waiting {
            card,
            at: when,
            request_id,
            request,
            ..
        } => {
            let action = serde_json::from_str::<serde_json::Value>(&request)
                .ok()
                .and_then(|r| r.get("action").and_then(|a| a.as_str()).map(str::to_string));
            Entry {
                seq,
                kind: EntryKind::Pending,
                card,
                at: at(Some(when)),
                id: Some(request_id),
                action,
                ..Entry::empty()
            }
        }
        Change::Returned { at: when, .. } | Change::Recalled { at: when, .. } => Entry {
            seq,
            kind: EntryKind::Returned,
            at: at(Some(when)),
            ..Entry::empty()
        },
        Change::Restricted {
            card,
            at: when,
            restricted,
            ..
        } => Entry {
            seq,
            kind: EntryKind::Restricted,
            card,
            at: at(Some(when)),
            allow: Some(!restricted),
            ..Entry::empty()
        },
        Change::Decided {
            card,
            at: when,
            request,
            decision,
            effects,
            ..
        } => {
            let (request, decision) = decode_decided(program, seq, &request, &decision)?;
            let replaced = effects.iter().any(|e| matches!(e, Effect::MoveCard { .. }));
            Entry {
                seq,
                kind: if replaced {
                    EntryKind::Replaced
                } else {
                    EntryKind::Decided
                },
                card,
                at: at(Some(when)),
                id: request.id,
                action: Some(request.action),
                offer: request.offer,
                amount: request.amount,
                asset: request.asset,
                to_card: request.to_card,
                new_card: request.new_card,
                allow: Some(decision.allow),
                reason: Some(decision.reason),
                message: Some(decision.message),
                price: decision.price,
                balances: Some(decision.balances),
                venue: decision.venue,
                offline: decision.offline,
            }
        }
    })
}

impl Entry {
    fn empty() -> Entry {
        Entry {
            seq: 0,
            kind: EntryKind::Decided,
            card: String::new(),
            at: None,
            id: None,
            action: None,
            offer: None,
            amount: None,
            asset: None,
            to_card: None,
            new_card: None,
            allow: None,
            reason: None,
            message: None,
            price: None,
            balances: None,
            venue: None,
            offline: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_only_for_their_own_statement() {
        let c = cursor("bergen", "B-1", 42);
        assert_eq!(position("bergen", "B-1", &c).unwrap(), 42);
        for (program, card, text) in [
            ("bergen", "B-2", c.as_str()),
            ("albertslund", "B-1", c.as_str()),
            ("bergen", "B-1", "42"),
            ("bergen", "B-1", "zzzzzzzzzzzzzzzzzzzzzzzz"),
            ("bergen", "B-1", ""),
        ] {
            let e = position(program, card, text).unwrap_err().to_string();
            assert!(e.contains("`after`"), "{e}");
        }
    }

    #[test]
    fn pages_are_checked_naming_the_parameter() {
        let page = HistoryPage::parse(None, None, None, None).unwrap();
        assert_eq!(page.limit, DEFAULT_LIMIT);
        for (since, until, limit, named) in [
            (Some("yesterday"), None, None, "`since`"),
            (None, Some("2024-13-01T00:00:00Z"), None, "`until`"),
            (
                Some("2024-03-02T00:00:00Z"),
                Some("2024-03-01T00:00:00Z"),
                None,
                "`since`",
            ),
            (None, None, Some("0"), "`limit`"),
            (None, None, Some("-1"), "`limit`"),
            (None, None, Some("1001"), "`limit`"),
            (None, None, Some("ten"), "`limit`"),
        ] {
            let e = HistoryPage::parse(since, until, limit, None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(named), "{e}");
        }
        let page = HistoryPage::parse(None, None, Some("1000"), Some("x")).unwrap();
        assert_eq!((page.limit, page.after.as_deref()), (1000, Some("x")));
    }
}
