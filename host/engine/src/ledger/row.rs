//! One event as a backend stores it: the columns of its row, written and read back the
//! same way by every backend (SQLite, PostgreSQL) and by what re-reads recorded decisions
//! (replay, shadow), so that a ledger written by one is read by all.
//!
//! A row is the program, the position (`seq`) and the change as JSON (`body`), which is
//! all that is read back; `kind`, `card`, `at` and `request_id` repeat fields of the body
//! for the indexes (a request id is unique per program) and for people querying the table.
//! The JSON is serde's encoding of [`Change`]; changing it changes every ledger on disk.

use super::{Batch, Change, Event};
use crate::error::{Error, Result};
use crate::model::{Decision, Request};

/// The columns of one event's row beside its program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow<'a> {
    /// Position in the program's journal, from 1.
    pub seq: i64,
    /// `registered`, `decided`, `redacted`, `erased`, `restricted`, `leased` or `returned`.
    pub kind: &'static str,
    /// The card registered, or the card the decision was for.
    pub card: &'a str,
    /// The request's time (seconds since the epoch), for decisions.
    pub at: Option<i64>,
    /// The idempotency key a decision is recorded under, if any.
    pub request_id: Option<&'a str>,
    /// The change as JSON: what is read back.
    pub body: String,
}

impl Change {
    /// The row of this change at position `seq`.
    pub fn to_row(&self, seq: i64) -> Result<EventRow<'_>> {
        let body =
            serde_json::to_string(self).map_err(|e| Error::ledger("cannot encode an event", e))?;
        let (kind, card, at, request_id) = match self {
            Change::Registered { holder, at } => ("registered", holder.card.as_str(), *at, None),
            Change::Decided {
                card,
                at,
                request_id,
                ..
            } => ("decided", card.as_str(), Some(*at), request_id.as_deref()),
            Change::Redacted { card, at, .. } => ("redacted", card.as_str(), *at, None),
            Change::Erased { card, at, .. } => ("erased", card.as_str(), Some(*at), None),
            Change::Restricted { card, at, .. } => ("restricted", card.as_str(), Some(*at), None),
            Change::Leased { at, .. } => ("leased", "", Some(*at), None),
            Change::Returned { at, .. } => ("returned", "", Some(*at), None),
            Change::Recalled { at, .. } => ("recalled", "", Some(*at), None),
            // Not under its request id: that is the decision's, once it is made.
            Change::Waiting { card, at, .. } => ("waiting", card.as_str(), Some(*at), None),
        };
        Ok(EventRow {
            seq,
            kind,
            card,
            at,
            request_id,
            body,
        })
    }

    /// The change stored as `body` at position `seq` of `program`'s journal.
    pub fn from_row(program: &str, seq: i64, body: &str) -> Result<Change> {
        serde_json::from_str(body).map_err(|e| corrupt(program, seq, e))
    }
}

impl Event {
    /// The event stored as `body` at position `seq` of `program`'s journal.
    pub fn from_row(program: &str, seq: i64, body: &str) -> Result<Event> {
        Ok(Event {
            // Positions are written from 1, so a negative one cannot come from a journal
            // this crate wrote; as 0 it is refused as out of order when a ledger catches up.
            seq: u64::try_from(seq).unwrap_or(0),
            change: Change::from_row(program, seq, body)?,
        })
    }
}

impl<'a> Batch<'a> {
    /// The rows of the batch's changes, at the positions after `after`.
    pub fn rows(&self) -> Result<Vec<EventRow<'a>>> {
        let changes: &'a [Change] = self.changes;
        changes
            .iter()
            .enumerate()
            .map(|(offset, change)| {
                let seq = i64::try_from(self.after)
                    .ok()
                    .and_then(|after| {
                        after
                            .checked_add(1)?
                            .checked_add(i64::try_from(offset).ok()?)
                    })
                    .ok_or_else(|| {
                        Error::ledger(
                            format!("cannot append to the journal of `{}`", self.program),
                            format!("position {} is out of range", self.after),
                        )
                    })?;
                change.to_row(seq)
            })
            .collect()
    }
}

/// The request and the decision a [`Change::Decided`] recorded (`request` and `decision`,
/// as JSON), read back; the error names the event, position `seq` of `program`.
pub fn decode_decided(
    program: &str,
    seq: u64,
    request: &str,
    decision: &str,
) -> Result<(Request, Decision)> {
    let request: Request = match serde_json::from_str(request) {
        Ok(request) => request,
        Err(e) => recorded_out_of_range(request).ok_or_else(|| corrupt(program, seq, e))?,
    };
    let decision: Decision =
        serde_json::from_str(decision).map_err(|e| corrupt(program, seq, e))?;
    Ok((request, decision))
}

/// A request recorded by a release that took any `at` jiff can hold (before
/// [`crate::model::INSTANTS`] bounded it, e.g. a year-9999 request that ended in a
/// `policy-error`), read back with that time: the journal is read as it was written.
fn recorded_out_of_range(json: &str) -> Option<Request> {
    let mut value: serde_json::Value = serde_json::from_str(json).ok()?;
    let at: jiff::Timestamp = value.get("at")?.as_str()?.parse().ok()?;
    value["at"] = serde_json::Value::from("2000-01-01T00:00:00Z");
    let mut request: Request = serde_json::from_value(value).ok()?;
    request.at = at;
    Some(request)
}

/// An event that cannot be read back.
fn corrupt(program: &str, seq: impl std::fmt::Display, e: serde_json::Error) -> Error {
    Error::ledger(format!("event {seq} of `{program}` is corrupt"), e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Effect;
    use crate::model::Holder;

    fn decided() -> Change {
        Change::Decided {
            card: "AK-1001".into(),
            at: 1_709_312_400,
            request_id: Some("till-1/0001".into()),
            request: r#"{"program":"bergen"}"#.into(),
            decision: r#"{"allow":true}"#.into(),
            effects: vec![Effect::Count {
                counter: "visit:bergen-kino".into(),
                amount: 1,
            }],
            digest: "sha256:ab".into(),
            fuel: 7,
        }
    }

    /// Ledgers on disk hold exactly this JSON: a change here must be a migration.
    #[test]
    fn rows_keep_the_format_of_the_ledgers_on_disk() {
        let change = decided();
        let row = change.to_row(3).expect("encodes");
        assert_eq!(
            (row.seq, row.kind, row.card, row.at, row.request_id),
            (
                3,
                "decided",
                "AK-1001",
                Some(1_709_312_400),
                Some("till-1/0001")
            )
        );
        assert_eq!(
            row.body,
            r#"{"kind":"decided","card":"AK-1001","at":1709312400,"request-id":"till-1/0001","request":"{\"program\":\"bergen\"}","decision":"{\"allow\":true}","effects":[{"effect":"count","counter":"visit:bergen-kino","amount":1}],"digest":"sha256:ab","fuel":7}"#
        );
        assert_eq!(
            Change::from_row("bergen", 3, &row.body).expect("decodes"),
            change
        );

        let holder: Holder = serde_json::from_str(
            r#"{"card":"AK-1002","birth-date":"2012-05-01","municipality":"bergen"}"#,
        )
        .expect("a holder");
        let registered = Change::Registered { holder, at: None };
        let row = registered.to_row(1).expect("encodes");
        assert_eq!(
            (row.kind, row.card, row.at, row.request_id),
            ("registered", "AK-1002", None, None)
        );
        assert!(
            row.body
                .starts_with(r#"{"kind":"registered","holder":{"card":"AK-1002","#),
            "{}",
            row.body
        );
        let event = Event::from_row("bergen", 1, &row.body).expect("decodes");
        assert_eq!((event.seq, event.change), (1, registered));
    }

    #[test]
    fn a_batch_is_numbered_after_its_position_and_a_bad_row_names_its_event() {
        let changes = [decided(), decided()];
        let batch = Batch {
            program: "bergen",
            after: 41,
            changes: &changes,
        };
        let seqs: Vec<i64> = batch
            .rows()
            .expect("encodes")
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, [42, 43]);
        let beyond = Batch {
            after: u64::MAX,
            ..batch
        };
        let error = beyond.rows().expect_err("out of range").to_string();
        assert!(
            error.contains("position 18446744073709551615 is out of range"),
            "{error}"
        );

        let error = Event::from_row("bergen", 9, "{")
            .expect_err("corrupt")
            .to_string();
        assert!(
            error.starts_with("ledger: event 9 of `bergen` is corrupt: "),
            "{error}"
        );
        let error = decode_decided("bergen", 9, "{}", "{}")
            .expect_err("not a request")
            .to_string();
        assert!(
            error.starts_with("ledger: event 9 of `bergen` is corrupt: "),
            "{error}"
        );
    }

    #[test]
    fn a_request_recorded_beyond_todays_range_of_times_is_read_back_as_written() {
        // A release before the bound journaled this one (it ended in a `policy-error`);
        // a statement or a replay still reads it.
        let request = r#"{"program":"antwerpen","card":"A-3001","action":"check-in","at":"9999-12-30T21:59:59Z"}"#;
        let decision = r#"{"allow":false,"reason":"policy-error","message":"try again later","admitted":0,"price":null,"notes":[],"balances":{},"policy":{"program":"antwerpen","version":"1","digest":"sha256:ab"}}"#;
        let (request, _) = decode_decided("antwerpen", 3, request, decision).unwrap();
        assert_eq!(request.at.to_string(), "9999-12-30T21:59:59Z");
        assert_eq!(request.card, "A-3001");
        // Anything else wrong with it is still corrupt.
        let error = decode_decided("antwerpen", 3, r#"{"at":"9999-12-30T21:59:59Z"}"#, decision)
            .expect_err("no program")
            .to_string();
        assert!(
            error.starts_with("ledger: event 3 of `antwerpen` is corrupt: "),
            "{error}"
        );
    }
}
