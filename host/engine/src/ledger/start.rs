//! Starting a program's state, and keeping the snapshots it starts from: a lane's state
//! starts from its program's latest usable snapshot (see `snapshot.rs`) and the events
//! after it, read a page at a time. Snapshots are written by a thread of the ledger's own,
//! which builds the state from the previous snapshot and the journal: never a lane's work,
//! never on the answer path.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::commit::{Lane, Ledger};
use super::snapshot::{self, Snapshot, SnapshotInfo};
use super::{Journal, State};
use crate::error::{Error, Result};

/// How a program's state was started, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramStart {
    /// The snapshot it started from, if any.
    pub snapshot: Option<SnapshotInfo>,
    /// Events read from the journal after it (after nothing: all of them).
    pub replayed: u64,
    /// How long the start took.
    pub took: Duration,
}

/// Where a program's snapshots stand, for metrics: how it started and its latest snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgramSnapshots {
    pub start: Option<ProgramStart>,
    pub latest: Option<SnapshotInfo>,
}

/// When a lane asks for a snapshot by default: once this many events were appended since
/// the last one (or since start), and at once after a start that read a tenth of it from
/// the journal (see [`Ledger::snapshot_every`]).
pub const SNAPSHOT_EVERY: u64 = 100_000;
/// How many events a catch-up reads at a time: memory for them, not for the journal.
const PAGE: usize = 10_000;
/// A catch-up longer than this many events says in the log how far it has come.
const PROGRESS_EVERY: u64 = 500_000;

/// A ledger's snapshots: when they are due, the thread that writes them (started on first
/// use), and where each program's stand.
pub(super) struct Snapshots {
    pub(super) sender: Mutex<Option<std::sync::mpsc::Sender<String>>>,
    /// Appended events after which a lane asks for a snapshot (0: never).
    pub(super) every: AtomicU64,
    /// By program: how it started and its latest snapshot.
    pub(super) info: Arc<Mutex<HashMap<String, ProgramSnapshots>>>,
}

impl Default for Snapshots {
    fn default() -> Snapshots {
        Snapshots {
            sender: Mutex::new(None),
            every: AtomicU64::new(SNAPSHOT_EVERY),
            info: Arc::default(),
        }
    }
}

impl Ledger {
    /// Asks for a snapshot of a program every `events` appended events, and right after a
    /// start that read `events / 10` or more from the journal (0: never; tools that must
    /// not write to the ledger).
    pub fn snapshot_every(&self, events: u64) {
        self.snapshots.every.store(events, Ordering::Relaxed);
    }

    /// By program: how each state started and its latest snapshot written or read.
    pub fn snapshot_info(&self) -> Vec<(String, ProgramSnapshots)> {
        let mut info: Vec<_> = self
            .snapshots
            .info
            .lock()
            .iter()
            .map(|(program, info)| (program.clone(), *info))
            .collect();
        info.sort_by(|a, b| a.0.cmp(&b.0));
        info
    }

    /// Builds `program`'s state from its latest snapshot and the journal, and keeps it as
    /// the program's new snapshot: the snapshot thread's work, here for tools and tests.
    /// Takes no lane: decisions go on meanwhile.
    pub fn write_snapshot(&self, program: &str) -> Result<SnapshotInfo> {
        let info = write_snapshot(self.journal.as_ref(), program)?;
        self.snapshots
            .info
            .lock()
            .entry(program.to_string())
            .or_default()
            .latest = Some(info);
        Ok(info)
    }

    /// Hands `program` to the snapshot thread (starting it if need be).
    pub(super) fn ask_for_snapshot(&self, lane: &Lane) {
        let every = self.snapshots.every.load(Ordering::Relaxed);
        // Not again until this one is written (or has failed), and `every` later.
        lane.snapshot_due.store(u64::MAX, Ordering::Relaxed);
        let mut sender = self.snapshots.sender.lock();
        let sender = sender.get_or_insert_with(|| {
            let (send, receive) = std::sync::mpsc::channel::<String>();
            let journal = self.journal.clone();
            let info = self.snapshots.info.clone();
            let spawned = std::thread::Builder::new()
                .name("cardrules-snapshots".into())
                .spawn(move || {
                    for program in receive {
                        match write_snapshot(journal.as_ref(), &program) {
                            Ok(written) => {
                                info.lock().entry(program).or_default().latest = Some(written);
                            }
                            Err(e) => tracing::warn!(
                                program,
                                "cannot write a snapshot of `{program}`: {e}"
                            ),
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("cannot start the snapshot thread: {e}");
            }
            send
        });
        let _ = sender.send(lane.program.clone());
        let next = lane.settled.load(Ordering::Relaxed).saturating_add(every);
        lane.snapshot_due.store(next, Ordering::Relaxed);
    }

    /// Asks for a snapshot if `lane` appended enough since the last one.
    pub(super) fn maybe_snapshot(&self, lane: &Lane) {
        let every = self.snapshots.every.load(Ordering::Relaxed);
        if every > 0
            && lane.settled.load(Ordering::Relaxed) >= lane.snapshot_due.load(Ordering::Relaxed)
        {
            self.ask_for_snapshot(lane);
        }
    }

    /// The programs whose state cannot be caught up with the journal, and why: an event
    /// this build cannot read or apply, a gap, an unreachable journal. They decide nothing
    /// (every job fails at its catch-up) until the journal can be read again; each is
    /// tried once more here, so that one that recovered is not reported.
    pub fn cannot_decide(&self) -> Vec<(String, String)> {
        let failing: Vec<String> = self
            .lanes
            .lock()
            .values()
            .filter(|lane| lane.failed.lock().is_some())
            .map(|lane| lane.program.clone())
            .collect();
        let mut failed: Vec<(String, String)> = failing
            .into_iter()
            .filter_map(|program| {
                let why = self.read(&program, |_| ()).err()?;
                Some((program, why.to_string()))
            })
            .collect();
        failed.sort();
        failed
    }

    /// Starts `lane`'s state: from the program's latest usable snapshot and the events
    /// after it; asks for a snapshot when the start read many events.
    pub(super) fn start(&self, lane: &Lane, state: &mut State) -> Result<()> {
        let program = &lane.program;
        let began = Instant::now();
        let (mut fresh, from) = match snapshot::latest_state(self.journal.as_ref(), program) {
            Some((state, info)) => (state, Some(info)),
            None => (State::default(), None),
        };
        fresh.recall_from(self.journal.clone(), program);
        let replayed = catch_up(self.journal.as_ref(), program, &mut fresh, None)?;
        fresh.shrink();
        let start = ProgramStart {
            snapshot: from,
            replayed,
            took: began.elapsed(),
        };
        match start.snapshot {
            Some(info) => tracing::info!(
                program = program.as_str(),
                "`{program}` started from its snapshot at event {} and {replayed} events after it, in {:.2?}",
                info.seq,
                start.took
            ),
            None => tracing::info!(
                program = program.as_str(),
                "`{program}` started from its journal's {replayed} events, in {:.2?}",
                start.took
            ),
        }
        *state = fresh;
        lane.started.store(true, Ordering::Relaxed);
        lane.settled.store(state.seq(), Ordering::SeqCst);
        {
            let mut info = self.snapshots.info.lock();
            let info = info.entry(program.clone()).or_default();
            info.start = Some(start);
            info.latest = start.snapshot;
        }
        let every = self.snapshots.every.load(Ordering::Relaxed);
        if every > 0 {
            let base = start.snapshot.map_or(0, |s| s.seq);
            lane.snapshot_due
                .store(base.saturating_add(every), Ordering::Relaxed);
            if replayed >= (every / 10).max(1) {
                self.ask_for_snapshot(lane);
            }
        }
        Ok(())
    }
}

/// Applies the events of `program`'s journal after `state`'s position to it, a page at a
/// time, up to position `until` if given; returns how many were applied. Every event must
/// follow the one before and apply cleanly: a journal that does not is reported, never
/// skipped, and the event that does not apply leaves nothing behind (the state stays at
/// the event before it, as the journal gives it).
pub fn catch_up(
    journal: &dyn Journal,
    program: &str,
    state: &mut State,
    until: Option<u64>,
) -> Result<u64> {
    let began = Instant::now();
    let mut applied = 0u64;
    loop {
        let room = until.map_or(usize::MAX, |until| {
            usize::try_from(until.saturating_sub(state.seq())).unwrap_or(usize::MAX)
        });
        if room == 0 {
            break;
        }
        let events = journal.read_page(program, state.seq(), PAGE.min(room))?;
        let Some(last) = events.last().map(|e| e.seq) else {
            break;
        };
        for event in events {
            let expected = state.seq() + 1;
            if event.seq != expected {
                let why = if state.seq() == 0 {
                    format!(
                        "event {} follows 0: the events before it are gone (compacted, or removed by hand), and no snapshot at it could be used to start from",
                        event.seq
                    )
                } else {
                    format!("event {} follows {}", event.seq, state.seq())
                };
                return Err(Error::ledger(format!("journal of `{program}`"), why));
            }
            let mark = state.mark();
            if let Err(refused) = state.apply_change(&event.change) {
                // Taken back whole: effects before the refused one must not stay, or every
                // later catch-up would apply them again on top.
                state.rollback(mark);
                return Err(Error::ledger(
                    format!("journal of `{program}`, event {}", event.seq),
                    format!("cannot be applied: {refused}"),
                ));
            }
            state.advance(1);
            state.settle(mark);
            applied += 1;
            if applied.is_multiple_of(PROGRESS_EVERY) {
                tracing::info!(
                    program,
                    "`{program}`: {applied} events of its journal read, up to event {}, in {:.1?}",
                    state.seq(),
                    began.elapsed()
                );
            }
        }
        if state.seq() != last {
            break;
        }
    }
    Ok(applied)
}

/// Builds `program`'s state from its latest usable snapshot and the journal after it, and
/// saves it as a new snapshot unless the journal has nothing new.
pub(super) fn write_snapshot(journal: &dyn Journal, program: &str) -> Result<SnapshotInfo> {
    let began = Instant::now();
    let (mut state, base) = match snapshot::latest_state(journal, program) {
        Some((state, info)) => (state, Some(info)),
        None => (State::default(), None),
    };
    let read = catch_up(journal, program, &mut state, None)?;
    if let Some(base) = base
        && read == 0
    {
        return Ok(base);
    }
    let snapshot = Snapshot::of(journal, program, &state)?;
    journal.save_snapshot(&snapshot)?;
    tracing::info!(
        program,
        "snapshot of `{program}` at event {} written ({} bytes, {read} events read) in {:.2?}",
        snapshot.seq,
        snapshot.body.len(),
        began.elapsed()
    );
    Ok(snapshot.info())
}
