//! Snapshots: a program's state at a journal position, kept in the ledger itself, so that
//! a host starts from the latest one and the events after it instead of the whole journal.
//!
//! A snapshot is written in the background ([`super::Ledger`] hands the work to its own
//! thread, which builds the state from the previous snapshot and the journal, never
//! touching a lane), and is never trusted blindly: its format version and a SHA-256 of
//! its bytes are checked before it is used, and a state that breaks the rules every
//! state keeps is refused. A snapshot that fails any check is skipped with a warning and
//! the state is rebuilt from the journal (or an older snapshot): slower, never wrong.
//! `cardrules ledger verify` rebuilds each program from its first event and compares.

use super::{Journal, State};
use crate::error::{Error, Result};

/// The snapshot format this build writes and reads. A snapshot of another format (a newer
/// release's) is skipped.
pub const FORMAT: u32 = 1;

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
    /// The snapshot of `state` (which must be settled) for `program`.
    pub fn of(program: &str, state: &State) -> Result<Snapshot> {
        let body = serde_json::to_vec(&state.image())
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

    /// The state the snapshot holds, or why it cannot be used.
    pub fn state(&self) -> std::result::Result<State, String> {
        if self.format != FORMAT {
            return Err(format!(
                "it has format {}, this cardrules reads format {FORMAT}",
                self.format
            ));
        }
        if checksum(&self.body) != self.checksum {
            return Err("its checksum does not match its bytes".to_string());
        }
        let image =
            serde_json::from_slice(&self.body).map_err(|e| format!("it cannot be decoded: {e}"))?;
        let state = State::from_image(image)?;
        if state.seq() != self.seq {
            return Err(format!(
                "it holds the state at event {}, not {}",
                state.seq(),
                self.seq
            ));
        }
        Ok(state)
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

/// `sha256:` and the hex digest, as every digest of the project is shown.
fn checksum(body: &[u8]) -> String {
    crate::program::signing::digest(body)
}

/// The newest usable snapshot of `program`, as a state, or `None` (start from the
/// journal's first event). Unusable ones are skipped with a warning.
pub fn latest_state(journal: &dyn Journal, program: &str) -> Option<(State, SnapshotInfo)> {
    // One at a time, newest first: a snapshot is as large as the state, and the older
    // ones are read only if the newer fail.
    for nth in 0..KEPT {
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
        match snapshot.state() {
            Ok(state) => return Some((state, snapshot.info())),
            Err(why) => tracing::warn!(
                program,
                seq = snapshot.seq,
                "ignoring the snapshot of `{program}` at event {}: {why}",
                snapshot.seq
            ),
        }
    }
    None
}

/// What [`verify`] found for one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The program has no snapshot: nothing to compare.
    NoSnapshot,
    /// The latest snapshot equals the state rebuilt from the journal up to its position.
    Same { seq: u64 },
    /// It does not: the first difference, as `snapshot: …` and `journal: …` lines.
    Differs { seq: u64, difference: String },
    /// The latest snapshot cannot be used at all (format, checksum, contents).
    Unusable { seq: u64, why: String },
}

/// Rebuilds `program`'s state from its first event up to its latest snapshot's position
/// and compares the two.
pub fn verify(journal: &dyn Journal, program: &str) -> Result<Verdict> {
    let Some(snapshot) = journal.snapshots(program, 1)?.into_iter().next() else {
        return Ok(Verdict::NoSnapshot);
    };
    let seq = snapshot.seq;
    let kept = match snapshot.state() {
        Ok(state) => state,
        Err(why) => return Ok(Verdict::Unusable { seq, why }),
    };
    let mut rebuilt = State::default();
    super::catch_up(journal, program, &mut rebuilt, Some(seq))?;
    if rebuilt.seq() != seq {
        return Ok(Verdict::Differs {
            seq,
            difference: format!(
                "the snapshot is at event {seq}, the journal ends at event {}",
                rebuilt.seq()
            ),
        });
    }
    let (kept, rebuilt) = (kept.canonical(), rebuilt.canonical());
    if kept == rebuilt {
        return Ok(Verdict::Same { seq });
    }
    let mut kept_lines = kept.lines();
    let mut rebuilt_lines = rebuilt.lines();
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
    Ok(Verdict::Differs { seq, difference })
}
