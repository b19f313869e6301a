//! Snapshots: a program's state at a journal position, kept in the ledger itself, so that
//! a host starts from the latest one and the events after it instead of the whole journal.
//!
//! A snapshot is written in the background ([`super::Ledger`] hands the work to its own
//! thread, which builds the state from the previous snapshot and the journal, never
//! touching a lane), and is never trusted blindly: its format version and a SHA-256 of
//! its bytes are checked before it is used, and a state that breaks the rules every
//! state keeps is refused. It belongs to one program and one journal: its checksummed
//! body names the program and the identity of the event at its position (a digest of
//! that event), and a start uses it only if the program's journal holds that very event
//! there — not a journal restored from an older backup that ends before it, nor one that
//! took another course since, nor another program's. A snapshot that fails any check is
//! skipped with a warning and the state is rebuilt from the journal (or an older
//! snapshot): slower, never wrong. `cardrules ledger verify` rebuilds each program from
//! its first event to its last and compares.

use serde::{Deserialize, Serialize};

use super::state::Image;
use super::{Event, Journal, State};
use crate::error::{Error, Result};

/// The snapshot format this build writes and reads. A snapshot of another format (an
/// older release's, which named neither its program nor its event, or a newer one's) is
/// skipped. Format 2 binds the body to its program and to the event at its position.
pub const FORMAT: u32 = 2;

/// How many snapshots of a program a ledger keeps: the latest and the one before it, so
/// that a damaged latest one still leaves a recent start.
pub const KEPT: usize = 2;

/// A program's state at a journal position, as a backend stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub program: String,
    /// The journal position whose state it holds: every event up to it, none after.
    pub seq: u64,
    /// The format of `body` ([`FORMAT`] when written by this build).
    pub format: u32,
    /// `sha256:` and the hex SHA-256 of `body`.
    pub checksum: String,
    /// The state (JSON).
    pub body: Vec<u8>,
    /// When it was written (seconds since the epoch, the writing host's clock).
    pub written: i64,
}

/// Where a program's snapshot stands, without its body: for stats and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    pub seq: u64,
    pub written: i64,
    pub bytes: u64,
}

impl Snapshot {
    /// The snapshot of `state` (which must be settled, and built from `journal`) for
    /// `program`, bound to the event of `journal` at its position.
    pub fn of(journal: &dyn Journal, program: &str, state: &State) -> Result<Snapshot> {
        let event = match event_at(journal, program, state.seq())? {
            Some(event) => Some(identity(&event)?),
            None if state.seq() == 0 => None,
            None => {
                return Err(Error::ledger(
                    format!("cannot write a snapshot of `{program}`"),
                    format!("its journal has no event {}", state.seq()),
                ));
            }
        };
        let body = Body {
            state: state.image(),
            program: program.to_string(),
            event,
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| Error::ledger(format!("cannot encode a snapshot of `{program}`"), e))?;
        Ok(Snapshot {
            program: program.to_string(),
            seq: state.seq(),
            format: FORMAT,
            checksum: checksum(&body),
            body,
            written: jiff::Timestamp::now().as_second(),
        })
    }

    /// The state the snapshot holds and the identity of the event it was taken at, or why
    /// it cannot be used (its format, bytes, program or contents); whether the journal
    /// still holds that event is [`Snapshot::bound`]'s to say.
    fn open(&self) -> std::result::Result<(State, Option<String>), String> {
        if self.format != FORMAT {
            return Err(format!(
                "it has format {}, this cardrules reads format {FORMAT}",
                self.format
            ));
        }
        if checksum(&self.body) != self.checksum {
            return Err("its checksum does not match its bytes".to_string());
        }
        let body: Body =
            serde_json::from_slice(&self.body).map_err(|e| format!("it cannot be decoded: {e}"))?;
        if body.program != self.program {
            return Err(format!(
                "it is a snapshot of `{}`, not of `{}`",
                body.program, self.program
            ));
        }
        let state = State::from_image(body.state)?;
        if state.seq() != self.seq {
            return Err(format!(
                "it holds the state at event {}, not {}",
                state.seq(),
                self.seq
            ));
        }
        if body.event.is_none() != (state.seq() == 0) {
            return Err(format!(
                "it names no event at its position {}, or one at position 0",
                state.seq()
            ));
        }
        Ok((state, body.event))
    }

    /// The state the snapshot holds, if it may start `program`'s state over `journal`:
    /// its format, bytes and contents are sound, it is `program`'s, and the journal holds
    /// the very event it was taken at. `Ok(Err(why))` when it may not; `Err` when the
    /// journal cannot be read.
    pub fn bound(
        &self,
        journal: &dyn Journal,
        program: &str,
    ) -> Result<std::result::Result<State, String>> {
        if self.program != program {
            return Ok(Err(format!(
                "it is a snapshot of `{}`, not of `{program}`",
                self.program
            )));
        }
        let (state, event) = match self.open() {
            Ok(opened) => opened,
            Err(why) => return Ok(Err(why)),
        };
        let Some(event) = event else {
            return Ok(Ok(state));
        };
        let found = match event_at(journal, program, state.seq())? {
            Some(found) => identity(&found)?,
            None => {
                return Ok(Err(format!(
                    "it is at event {}, beyond the end of the journal (restored from an older \
                     backup?)",
                    state.seq()
                )));
            }
        };
        if found != event {
            return Ok(Err(format!(
                "event {} of the journal is not the one it was taken at: the journal took \
                 another course since",
                state.seq()
            )));
        }
        Ok(Ok(state))
    }

    /// This snapshot as an erasure of `cards` leaves it: their holders' facts taken out of
    /// the state (each card stays known, erased, with its lots and counters), bound to
    /// `event`, the row body of the journal's event at its position as the erasure
    /// rewrote it. The state is then exactly what the rewritten journal builds up to its
    /// position. `None` for a snapshot that cannot be opened (dropped rather than kept
    /// with the facts in it).
    pub fn erased(&self, cards: &[String], event: Option<&str>) -> Result<Option<Snapshot>> {
        // Checked as a start checks it before it is sealed again: an erasure never makes
        // a damaged snapshot look sound. (Its contents are checked when a start opens it.)
        if self.format != FORMAT || checksum(&self.body) != self.checksum {
            return Ok(None);
        }
        let Ok(mut body) = serde_json::from_slice::<Body>(&self.body) else {
            return Ok(None);
        };
        if body.program != self.program {
            return Ok(None);
        }
        // The image is changed in place, card by card: a city's state is tens of
        // megabytes, and an erasure is to take well under a second.
        body.state.erase(cards);
        let event = match event {
            Some(body) => Some(identity(&Event::from_row(
                &self.program,
                i64::try_from(self.seq).unwrap_or(i64::MAX),
                body,
            )?)?),
            None => None,
        };
        body.event = event;
        let body = serde_json::to_vec(&body).map_err(|e| {
            Error::ledger(format!("cannot encode a snapshot of `{}`", self.program), e)
        })?;
        Ok(Some(Snapshot {
            checksum: checksum(&body),
            body,
            ..self.clone()
        }))
    }

    /// The checksum `body` should carry (for tools that repair, and tests that forge).
    pub fn reseal(&self) -> String {
        checksum(&self.body)
    }

    /// The snapshot without its body.
    pub fn info(&self) -> SnapshotInfo {
        SnapshotInfo {
            seq: self.seq,
            written: self.written,
            bytes: self.body.len() as u64,
        }
    }
}

/// A snapshot's body (JSON), all of it under the checksum: the state, then what it is
/// bound to.
#[derive(Serialize, Deserialize)]
struct Body {
    state: Image,
    /// The program whose journal the state was built from.
    program: String,
    /// The identity of the journal's event at the state's position ([`identity`]); none
    /// at position 0.
    event: Option<String>,
}

/// `sha256:` and the hex digest, as every digest of the project is shown.
fn checksum(body: &[u8]) -> String {
    crate::program::signing::digest(body)
}

/// What tells an event from any other that could stand at its position: the digest of its
/// position and its row's body, as this build writes it.
fn identity(event: &Event) -> Result<String> {
    let seq = i64::try_from(event.seq).unwrap_or(i64::MAX);
    let row = event.change.to_row(seq)?;
    Ok(checksum(format!("{seq}\n{}", row.body).as_bytes()))
}

/// The event at position `seq` of `program`'s journal, if it has one (none at 0).
fn event_at(journal: &dyn Journal, program: &str, seq: u64) -> Result<Option<Event>> {
    if seq == 0 {
        return Ok(None);
    }
    let event = journal.read_page(program, seq - 1, 1)?.into_iter().next();
    Ok(event.filter(|event| event.seq == seq))
}

/// Where `program`'s journal begins: the empty state for a journal that holds its first
/// event (or none), else — a compacted journal — the state its base snapshot holds at its
/// first event, which must be usable: the events before it are gone.
pub fn base_state(journal: &dyn Journal, program: &str) -> Result<State> {
    match base_snapshot(journal, program)? {
        None => Ok(State::default()),
        Some((snapshot, first)) => match snapshot {
            Some(snapshot) => match snapshot.bound(journal, program)? {
                Ok(state) => Ok(state),
                Err(why) => Err(Error::ledger(
                    format!("journal of `{program}`"),
                    format!(
                        "it was compacted to begin at event {first}, and its base snapshot there cannot be used: {why}"
                    ),
                )),
            },
            None => Err(Error::ledger(
                format!("journal of `{program}`"),
                format!(
                    "event {first} follows 0: the events before it are gone (compacted, or removed by hand), and no base snapshot at it is left to start from"
                ),
            )),
        },
    }
}

/// The base snapshot of a compacted journal: `None` for a journal that holds its first
/// event (or none); else the snapshot at its first event, if it has one, and that
/// event's position.
pub fn base_snapshot(
    journal: &dyn Journal,
    program: &str,
) -> Result<Option<(Option<Snapshot>, u64)>> {
    let Some(first) = journal.read_page(program, 0, 1)?.into_iter().next() else {
        return Ok(None);
    };
    if first.seq <= 1 {
        return Ok(None);
    }
    let base = journal
        .snapshots(program, KEPT + 1)?
        .into_iter()
        .find(|snapshot| snapshot.seq == first.seq);
    Ok(Some((base, first.seq)))
}

/// The newest usable snapshot of `program`, as a state, or `None` (start from the
/// journal's first event). Unusable ones — unsound, another program's, or taken on a
/// journal other than this one (see [`Snapshot::bound`]) — are skipped with a warning.
pub fn latest_state(journal: &dyn Journal, program: &str) -> Option<(State, SnapshotInfo)> {
    // One at a time, newest first: a snapshot is as large as the state, and the older
    // ones are read only if the newer fail.
    // The newest few, and a compacted journal's base snapshot (see `Journal::compact`).
    for nth in 0..=KEPT {
        let snapshot = match journal.snapshots(program, nth + 1) {
            Ok(mut snapshots) if snapshots.len() > nth => snapshots.swap_remove(nth),
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(
                    program,
                    "cannot read the snapshots of `{program}`: {e}; rebuilding from the journal"
                );
                return None;
            }
        };
        match snapshot.bound(journal, program) {
            Ok(Ok(state)) => return Some((state, snapshot.info())),
            Ok(Err(why)) => tracing::warn!(
                program,
                seq = snapshot.seq,
                "ignoring the snapshot of `{program}` at event {}: {why}; starting from the \
                 journal instead",
                snapshot.seq
            ),
            Err(e) => {
                tracing::warn!(
                    program,
                    "cannot check the snapshot of `{program}` at event {} against the journal: \
                     {e}; rebuilding from the journal",
                    snapshot.seq
                );
                return None;
            }
        }
    }
    None
}

/// What [`verify`] found for one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The program has no snapshot, and its journal applies from its first event to its
    /// last.
    NoSnapshot,
    /// The latest snapshot equals the state rebuilt from the journal up to its position,
    /// and the journal applies on to its last event.
    Same { seq: u64 },
    /// It does not: the first difference, as `snapshot: …` and `journal: …` lines.
    Differs { seq: u64, difference: String },
    /// The latest snapshot cannot be used at all (format, checksum, program, contents, or
    /// a journal that does not hold the event it was taken at).
    Unusable { seq: u64, why: String },
    /// The journal itself cannot be rebuilt: an event is missing, cannot be read or cannot
    /// be applied (`why` names it). A host cannot start this program's state.
    Broken { why: String },
}

impl Verdict {
    /// Whether it is a difference to report (everything but a clean journal).
    pub fn differs(&self) -> bool {
        !matches!(self, Verdict::NoSnapshot | Verdict::Same { .. })
    }
}

/// Rebuilds `program`'s state from its first event to its last and compares it with its
/// latest snapshot at the snapshot's position. `Err` only when the journal cannot be
/// reached; what it holds, however damaged, is a [`Verdict`].
pub fn verify(journal: &dyn Journal, program: &str) -> Result<Verdict> {
    let snapshot = journal.snapshots(program, 1)?.into_iter().next();
    let broken = |e: Error| match e {
        Error::Unavailable { .. } => Err(e),
        other => Ok(Verdict::Broken {
            why: other.to_string(),
        }),
    };
    // A compacted journal is rebuilt from its base snapshot, as a start does.
    let mut rebuilt = match base_state(journal, program) {
        Ok(state) => state,
        Err(e) => return broken(e),
    };
    let Some(snapshot) = snapshot else {
        return match super::catch_up(journal, program, &mut rebuilt, None) {
            Ok(_) => Ok(Verdict::NoSnapshot),
            Err(e) => broken(e),
        };
    };
    let seq = snapshot.seq;
    if let Err(e) = super::catch_up(journal, program, &mut rebuilt, Some(seq)) {
        return broken(e);
    }
    let kept = match snapshot.bound(journal, program)? {
        Ok(state) => state,
        Err(why) => return Ok(Verdict::Unusable { seq, why }),
    };
    if rebuilt.seq() != seq {
        return Ok(Verdict::Differs {
            seq,
            difference: format!(
                "the snapshot is at event {seq}, the journal ends at event {}",
                rebuilt.seq()
            ),
        });
    }
    let (kept, rebuilt_text) = (kept.canonical(), rebuilt.canonical());
    if kept != rebuilt_text {
        let mut kept_lines = kept.lines();
        let mut rebuilt_lines = rebuilt_text.lines();
        let difference = loop {
            match (kept_lines.next(), rebuilt_lines.next()) {
                (Some(a), Some(b)) if a == b => continue,
                (a, b) => {
                    break format!(
                        "snapshot: {}\njournal:  {}",
                        a.unwrap_or("(nothing more)"),
                        b.unwrap_or("(nothing more)")
                    );
                }
            }
        };
        return Ok(Verdict::Differs { seq, difference });
    }
    // The events after it: what a start reads on top of it.
    if let Err(e) = super::catch_up(journal, program, &mut rebuilt, None) {
        return broken(e);
    }
    Ok(Verdict::Same { seq })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ledger::{Ledger, MAX_UNITS, MemoryLedger};
    use crate::model::Holder;

    fn register(ledger: &Ledger, card: &str, units: i64) {
        let holder: Holder = serde_json::from_value(serde_json::json!({
            "card": card, "birth-date": "2012-05-01", "municipality": "bergen",
            "balances": {"DKK": units}
        }))
        .expect("a holder");
        crate::ledger::commit::tests::register_in(ledger, "bergen", holder).expect("registers");
    }

    /// A state read from a snapshot passes the rules a state built from events keeps: a
    /// snapshot whose checksum was made to fit but whose state breaks one is refused as
    /// corrupt, and the start rebuilds from the journal.
    #[test]
    fn a_snapshot_whose_state_breaks_the_rules_of_every_state_is_refused() {
        let journal: Arc<dyn Journal> = Arc::new(MemoryLedger::new());
        let live = Ledger::new(journal.clone());
        live.snapshot_every(0);
        register(&live, "A", 100);
        register(&live, "B", 50);
        live.write_snapshot("bergen").expect("a snapshot");
        let good = journal.snapshots("bergen", 1).expect("read").remove(0);
        let text = String::from_utf8(good.body.clone()).expect("JSON");
        assert!(text.contains(r#""lots":[[1,"DKK",100,null]]"#), "{text}");
        let lot = r#"[1,"DKK",100,null]"#;
        let max = i64::MAX;
        // Two lots each within the bound, together beyond it.
        let half = MAX_UNITS / 2 + 1;
        let forgeries = [
            // A lot of i64::MAX: a balance printed as -9.2e18 once another was added.
            (
                text.replace(lot, &format!(r#"[1,"DKK",{max},null]"#)),
                "not 1 to 1000000000000000",
            ),
            (text.replace(lot, r#"[1,"DKK",-5,null]"#), "holds -5 `DKK`"),
            (
                text.replace(r#""next_lot":2"#, r#""next_lot":3"#).replace(
                    lot,
                    &format!(r#"[1,"DKK",{half},null],[3,"DKK",{half},null]"#),
                ),
                "holds more than 1000000000000000 `DKK`",
            ),
            (
                text.replace(lot, r#"[1,"DKK",100,null],[2,"DKK",1,null]"#),
                "given twice",
            ),
            (
                text.replace(r#""card":"B""#, r#""card":"A""#),
                "card `A` is repeated",
            ),
        ];
        let expected = live.read("bergen", |s| s.canonical()).expect("reads");
        for (forged, why) in forgeries {
            assert_ne!(forged, text, "{why}");
            let mut snapshot = Snapshot {
                body: forged.into_bytes(),
                ..good.clone()
            };
            snapshot.checksum = snapshot.reseal();
            journal.save_snapshot(&snapshot).expect("saved");
            match verify(journal.as_ref(), "bergen").expect("verifies") {
                Verdict::Unusable { why: found, .. } => {
                    assert!(found.contains(why), "{why}: {found}")
                }
                other => panic!("{why}: {other:?}"),
            }
            let started = Ledger::new(journal.clone());
            started.snapshot_every(0);
            let state = started.read("bergen", |s| s.canonical()).expect("reads");
            assert_eq!(state, expected, "{why}");
            let start = started.snapshot_info()[0].1.start.expect("started");
            assert_eq!((start.snapshot, start.replayed), (None, 2), "{why}");
        }
    }
}
