//! Deciding and committing: one lane per program, one group commit for all of them.
//!
//! **Lanes.** Work on a program's ledger (a decision, a registration) is a job queued on
//! the program's lane. Whoever leads the lane runs every job queued so far, one after the
//! other, each on the state the previous one left — a *batch* — and then commits the
//! batch's changes. Callers that queued meanwhile find their answer ready when they get
//! the lead in turn, or run the next batch themselves. Programs have separate lanes: a
//! policy that burns its whole fuel delays its own program's decisions only, never
//! another program's.
//!
//! **Proposals.** Running a policy is most of a decision's cost, and jobs run one at a
//! time. So a decision's caller first evaluates the policy itself, on its own thread, on
//! the lane's state as it stands ([`Reader`]: callers of one program evaluate in
//! parallel), keeping the keys of everything the evaluation read (`reads.rs`: the holder
//! of a card, the lots of a card, a counter of a card or over all cards) and where the
//! state stood when it began ([`Seen`]). Each of its reads takes the state for reading
//! for that one host call only, so the leader never waits for a policy to finish. Its
//! job, when the lane runs it, asks [`Tx::unchanged`]: the lane numbers every job's
//! changes and remembers the keys each touched (read off the state's undo entries, so no
//! way of changing the state is missed); if none of the changes since the proposal began
//! touched a key it read, the evaluation stands; otherwise the job evaluates again, there
//! and then, as it always did. A proposal whose policy faulted is not offered at all (its
//! deadline runs on the wall clock, which waiting for reads spent): the job evaluates. Everything after the evaluation — the request id looked
//! up again (two proposals may carry the same id), the effects applied (and refused if
//! they no longer fit), the balances answered — runs in the lane on the current state.
//!
//! The leader holds the state for writing only while it runs a batch's jobs, not while
//! the batch is on its way to disk: proposals meanwhile read the state the batch left,
//! uncommitted. That is safe because no proposal's answer is given before its own job is
//! committed, its job commits only after that batch (a batch is appended after the
//! program's previous event), and if that batch is not committed the lane takes it back
//! and forgets every number before ([`Versions::invalidate`]): no proposal that may have
//! read it stands. The same happens when the lane reads events other writers appended.
//! Readers that must see the committed state ([`Ledger::read`], [`Ledger::examine`]) wait
//! for the lead instead.
//!
//! **Group commit.** A batch is handed to the committer, which appends every batch handed
//! to it while the previous append was on disk in one atomic, durable write (SQLite: one
//! transaction, one fsync). A job's answer is returned only after the append that holds
//! its changes has returned.
//!
//! **Why outcomes are serializable.** Within a lane, jobs run one at a time on the state
//! left by all earlier jobs — committed, or in the same batch and committed with it or
//! not at all. A job that keeps a proposal's evaluation keeps what the policy would
//! answer on that very state: the policy is deterministic and sees the ledger only
//! through the host's calls, each answering (and charging fuel) from what is stored under
//! its key. None of the keys it read changed from the moment the proposal began to the
//! moment its job runs (else the job evaluates again, and a change taken back or not
//! described by keys makes every earlier proposal stale): so each read, whenever it ran
//! in between, answered what the state held at the beginning and still holds now — the
//! reads make one consistent view of the state the job runs on — and the policy answers
//! the same, with the same fuel. Between processes or hosts sharing a journal, a
//! batch records the program's last event it was decided on (`after`); the journal
//! appends it only if that is still the last event, atomically with the check. Otherwise
//! nothing is written, the lane takes the batch back ([`State::rollback`]), reads the
//! events it missed, and decides the batch again (no proposal stands then). So every
//! committed batch was decided on exactly the state its predecessors in the journal left:
//! the journal's order is a serial order of all decisions, and two terminals can never
//! both take the last place or the last øre.

//!
//! **Start.** A lane's state starts from its program's latest usable snapshot and the
//! events after it (see `start.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, RwLock};

use super::reads::{ReadSet, Seen, Versions};
use super::start::{Snapshots, catch_up};
use super::{Appended, Batch, Change, Journal, State};
use crate::error::{Error, Result};

/// How often a batch is decided again after losing a race to another writer before the
/// caller is told to try later.
const MAX_ATTEMPTS: usize = 64;

/// The changes a job wants committed, and what to answer once they are.
pub struct Staged<T> {
    pub changes: Vec<Change>,
    pub answer: T,
}

impl<T> Staged<T> {
    /// An answer that commits nothing (a dry run, a replayed decision, a read).
    pub fn nothing(answer: T) -> Staged<T> {
        Staged {
            changes: Vec::new(),
            answer,
        }
    }
}

/// A job's access to its program's state while it runs.
pub struct Tx<'a> {
    pub(crate) state: &'a mut State,
    versions: &'a Versions,
    counts: &'a Proposals,
}

impl Tx<'_> {
    /// The program's state, as left by every earlier job.
    pub fn state(&mut self) -> &mut State {
        self.state
    }

    /// Whether nothing a proposal read (`reads`, on the state as it was at `seen`) has
    /// changed since: then the proposal's evaluation is the one the policy would make
    /// now, on the state every earlier job left.
    pub(crate) fn unchanged(&self, seen: Seen, reads: &ReadSet) -> bool {
        let unchanged = self.versions.unchanged(seen, reads);
        let count = match unchanged {
            true => &self.counts.stood,
            false => &self.counts.stale,
        };
        count.fetch_add(1, Ordering::Relaxed);
        unchanged
    }
}

/// A program's state as the lane's jobs leave it, with the count of changes made to it.
#[derive(Default)]
struct Shared {
    state: State,
    versions: Versions,
    /// Whether the state has read the journal at least once: before, it is empty, and a
    /// proposal on it would be wasted.
    loaded: bool,
}

/// A program's state to read outside the lane: what a decision is proposed on (see the
/// module docs). Each read takes the state for reading only while it runs (one host call
/// of a policy, not the whole evaluation), so the lane's leader never waits for a policy
/// to finish.
#[derive(Clone)]
pub struct Reader {
    shared: Arc<RwLock<Shared>>,
}

impl Reader {
    /// Runs `read` on the state as it stands, with where it stands.
    pub(crate) fn read<T>(&self, read: impl FnOnce(&State, Seen) -> T) -> T {
        let shared = self.shared.read();
        read(&shared.state, shared.versions.seen())
    }
}

/// How many proposals stood, and how many were evaluated again.
#[derive(Default)]
struct Proposals {
    stood: AtomicU64,
    stale: AtomicU64,
}

/// A queued job with its own typed answer slot: the lane runs it (perhaps more than once,
/// when another host appended first) and then settles it, without knowing its answer's type.
trait Job: Send {
    /// Runs the job on the state; on success it keeps its answer and returns the changes
    /// to commit.
    fn stage(&mut self, tx: &mut Tx<'_>) -> Result<Vec<Change>>;
    /// Hands the answer of the last successful [`Job::stage`] to the waiting caller.
    fn answer(&mut self);
    /// Tells the waiting caller that the job failed.
    fn fail(&mut self, error: Error);
}

/// Where a job's answer waits for its caller.
struct Slot<T> {
    answer: Mutex<Option<Result<T>>>,
    answered: Condvar,
}

impl<T> Slot<T> {
    fn set(&self, answer: Result<T>) {
        *self.answer.lock() = Some(answer);
        self.answered.notify_all();
    }

    fn wait(&self) -> Result<T> {
        let mut answer = self.answer.lock();
        loop {
            if let Some(answer) = answer.take() {
                return answer;
            }
            self.answered.wait(&mut answer);
        }
    }
}

/// A caller's job, the answer it staged, and the slot its caller waits on.
struct Queued<T, F> {
    job: F,
    staged: Option<T>,
    slot: Arc<Slot<T>>,
}

impl<T, F> Job for Queued<T, F>
where
    T: Send,
    F: FnMut(&mut Tx<'_>) -> Result<Staged<T>> + Send,
{
    fn stage(&mut self, tx: &mut Tx<'_>) -> Result<Vec<Change>> {
        self.staged = None;
        let staged = (self.job)(tx)?;
        self.staged = Some(staged.answer);
        Ok(staged.changes)
    }

    fn answer(&mut self) {
        let answer = self
            .staged
            .take()
            .ok_or_else(|| Error::host("ledger", "a job was answered without being staged"));
        self.slot.set(answer);
    }

    fn fail(&mut self, error: Error) {
        self.staged = None;
        self.slot.set(Err(error));
    }
}

/// One program's state and queue.
pub(super) struct Lane {
    pub(super) program: String,
    /// Written only by whoever holds `leading`, while it runs a batch (not while the batch
    /// is on its way to disk); read meanwhile by proposals.
    shared: Arc<RwLock<Shared>>,
    /// Held by the lane's leader while it runs and commits batches, and by readers that
    /// must see the state as committed.
    leading: Mutex<()>,
    queue: Mutex<Vec<Box<dyn Job>>>,
    /// Whether the state was started (from a snapshot, or the journal's beginning).
    pub(super) started: AtomicBool,
    /// A position the state has committed or read: every event up to it is in the journal.
    pub(super) settled: AtomicU64,
    /// The position from which a new snapshot is asked for.
    pub(super) snapshot_due: AtomicU64,
    /// Why the last catch-up with the journal failed, if it did: the program decides
    /// nothing until one succeeds (see [`Ledger::cannot_decide`]).
    pub(super) failed: Mutex<Option<String>>,
}

/// A batch waiting for the committer.
struct Pending {
    program: String,
    after: u64,
    changes: Vec<Change>,
    outcome: Mutex<Option<Result<Appended>>>,
}

/// Programs' states over one journal, with lanes and group commit (see the module docs).
pub struct Ledger {
    pub(super) journal: Arc<dyn Journal>,
    pub(super) lanes: Mutex<HashMap<String, Arc<Lane>>>,
    waiting: Mutex<Vec<Arc<Pending>>>,
    /// Held by whoever is appending; the others queue their batches meanwhile.
    appending: Mutex<()>,
    stats: Mutex<Stats>,
    /// Told of every append (metrics); set at most once.
    observer: std::sync::OnceLock<Arc<dyn CommitObserver>>,
    /// Snapshots: when they are due, the thread that writes them, where they stand.
    pub(super) snapshots: Snapshots,
    proposals: Proposals,
}

/// One append of the group commit, as a [`CommitObserver`] is told of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// Batches the append held (of one or more programs).
    pub batches: usize,
    /// Of those, batches appended (the others lost a race to another writer).
    pub appended: usize,
    /// Changes appended.
    pub changes: usize,
    /// How long the journal's append took.
    pub took: std::time::Duration,
    /// Whether the journal failed (nothing was appended).
    pub failed: bool,
}

/// Told of each append as it returns, on the appending thread, while the next appends
/// wait: it must be quick (count, not write).
pub trait CommitObserver: Send + Sync {
    fn committed(&self, commit: &Commit);
}

/// Counts of the group commit, for benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Appends (durable commits) made.
    pub commits: u64,
    /// Batches appended (a commit holds one or more, of one or more programs).
    pub batches: u64,
    /// Changes appended.
    pub changes: u64,
    /// Batches decided again after another writer appended first.
    pub conflicts: u64,
    /// Time spent in the journal's appends, in microseconds.
    pub append_us: u64,
    /// Proposals (decisions evaluated outside the lane) whose reads had not changed when
    /// the lane came to them: their evaluation stood.
    pub proposals_stood: u64,
    /// Proposals whose reads had changed: evaluated again in the lane.
    pub proposals_stale: u64,
}

impl Ledger {
    /// A ledger over `journal`; each program's state is read from it on first use.
    pub fn new(journal: Arc<dyn Journal>) -> Ledger {
        Ledger {
            journal,
            lanes: Mutex::new(HashMap::new()),
            waiting: Mutex::new(Vec::new()),
            appending: Mutex::new(()),
            stats: Mutex::new(Stats::default()),
            observer: std::sync::OnceLock::new(),
            snapshots: Snapshots::default(),
            proposals: Proposals::default(),
        }
    }

    /// A position up to which `program`'s journal is known to hold every event its state
    /// has seen (0 before the program's state was started).
    pub fn position(&self, program: &str) -> u64 {
        self.lanes
            .lock()
            .get(program)
            .map_or(0, |lane| lane.settled.load(Ordering::SeqCst))
    }

    /// Tells `observer` of every append from now on. Only one observer may be set: false
    /// if there already is one.
    pub fn observe(&self, observer: Arc<dyn CommitObserver>) -> bool {
        self.observer.set(observer).is_ok()
    }

    /// The journal underneath.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// Counts of commits, batches and conflicts so far.
    pub fn stats(&self) -> Stats {
        Stats {
            proposals_stood: self.proposals.stood.load(Ordering::Relaxed),
            proposals_stale: self.proposals.stale.load(Ordering::Relaxed),
            ..*self.stats.lock()
        }
    }

    fn lane(&self, program: &str) -> Arc<Lane> {
        let mut lanes = self.lanes.lock();
        if let Some(lane) = lanes.get(program) {
            return lane.clone();
        }
        lanes
            .entry(program.to_string())
            .or_insert_with(|| {
                Arc::new(Lane {
                    program: program.to_string(),
                    shared: Arc::new(RwLock::new(Shared::default())),
                    leading: Mutex::new(()),
                    queue: Mutex::new(Vec::new()),
                    started: AtomicBool::new(false),
                    settled: AtomicU64::new(0),
                    snapshot_due: AtomicU64::new(u64::MAX),
                    failed: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Reads `program`'s state, caught up with its journal; commits nothing.
    pub fn read<T>(&self, program: &str, read: impl FnOnce(&State) -> T) -> Result<T> {
        self.examine(program, |state| read(state))
    }

    /// Runs `examine` on `program`'s state, caught up with its journal, in turn with the
    /// lane's jobs; commits nothing. `examine` may change the state only to take it back
    /// before it returns (a policy lent the state for a question that commits nothing:
    /// allowances).
    pub(crate) fn examine<T>(
        &self,
        program: &str,
        examine: impl FnOnce(&mut State) -> T,
    ) -> Result<T> {
        let lane = self.lane(program);
        let answer = {
            // Held, no batch is on its way to disk: the state is as committed.
            let _leading = lane.leading.lock();
            let mut shared = lane.shared.write();
            self.load(&lane, &mut shared).map(|()| {
                let state = &mut shared.state;
                let mark = state.mark();
                let answer = examine(state);
                state.rollback(mark);
                answer
            })
        };
        // A job queued while this held the state found it taken and left its running to
        // whoever held it: run it now, or it would wait for the program's next job.
        self.lead(&lane);
        answer
    }

    /// Runs `job` on `program`'s state in turn with every other job of the program, commits
    /// the changes it stages, and returns its answer once they are durable. The job may
    /// run more than once (when another host appended first); only its last run counts.
    pub fn submit<T: Send + 'static>(
        &self,
        program: &str,
        job: impl FnMut(&mut Tx<'_>) -> Result<Staged<T>> + Send + 'static,
    ) -> Result<T> {
        let slot = Arc::new(Slot {
            answer: Mutex::new(None),
            answered: Condvar::new(),
        });
        let queued = Queued {
            job,
            staged: None,
            slot: slot.clone(),
        };
        let lane = self.lane(program);
        lane.queue.lock().push(Box::new(queued));
        self.lead(&lane);
        slot.wait()
    }

    /// Leads the lane if nobody does: runs what is queued, batch after batch, until the
    /// queue is empty. Whoever lets go of the state (a leader, or a reader) looks at the
    /// queue once more after letting go: a job queued while the state was held (its push
    /// came before its failed attempt to take the state, which came before the holder let
    /// go) is seen by that look, so no job is left behind.
    fn lead(&self, lane: &Lane) {
        while let Some(leading) = lane.leading.try_lock() {
            loop {
                let mut batch = std::mem::take(&mut *lane.queue.lock());
                if batch.is_empty() {
                    break;
                }
                self.run(lane, &mut batch);
            }
            drop(leading);
            if lane.queue.lock().is_empty() {
                break;
            }
        }
    }

    /// `program`'s state to propose decisions on, as it stands at each read (perhaps with
    /// a batch on its way to disk: see the module docs), or `None` while the state has not
    /// been read from the journal yet.
    pub(crate) fn reader(&self, program: &str) -> Option<Reader> {
        let lane = self.lane(program);
        let loaded = lane.shared.read().loaded;
        loaded.then(|| Reader {
            shared: lane.shared.clone(),
        })
    }

    /// Catches the state up with the journal. Events of other writers change the state in
    /// ways the proposals made before cannot be checked against: they are all evaluated
    /// again.
    fn load(&self, lane: &Lane, shared: &mut Shared) -> Result<()> {
        let before = shared.state.seq();
        let caught_up = self.catch_up(lane, &mut shared.state);
        if shared.state.seq() != before {
            shared.versions.invalidate();
        }
        *lane.failed.lock() = caught_up.as_ref().err().map(ToString::to_string);
        caught_up?;
        // Tallies over all cards that proposals or jobs asked for since the last load.
        shared.state.widen();
        shared.loaded = true;
        Ok(())
    }

    /// Applies the events of the program's journal that `state` has not seen yet; the
    /// first time, starts the state from the program's latest usable snapshot.
    fn catch_up(&self, lane: &Lane, state: &mut State) -> Result<()> {
        if !lane.started.load(Ordering::Relaxed) {
            return self.start(lane, state);
        }
        catch_up(self.journal.as_ref(), &lane.program, state, None)?;
        lane.settled.store(state.seq(), Ordering::SeqCst);
        Ok(())
    }

    /// Runs a batch of jobs and commits what they staged; answers every slot. Called by
    /// the lane's leader only (it holds `leading`).
    fn run(&self, lane: &Lane, jobs: &mut [Box<dyn Job>]) {
        let mut attempt = 0;
        // Per job, `Ok` when it staged an answer (kept in the job), or why it failed.
        let outcomes: Vec<Result<()>> = loop {
            attempt += 1;
            let mut shared = lane.shared.write();
            if let Err(e) = self.load(lane, &mut shared) {
                break jobs.iter().map(|_| Err(copy(&e))).collect();
            }
            let Shared {
                state, versions, ..
            } = &mut *shared;
            let start = state.mark();
            let after = state.seq();
            let mut changes = Vec::new();
            let mut outcomes = Vec::with_capacity(jobs.len());
            for job in jobs.iter_mut() {
                let mark = state.mark();
                let mut tx = Tx {
                    state: &mut *state,
                    versions,
                    counts: &self.proposals,
                };
                match job.stage(&mut tx) {
                    Ok(staged) => {
                        // The next job's proposal is checked against this job's changes.
                        versions.record(state.touched_since(mark));
                        changes.extend(staged);
                        outcomes.push(Ok(()));
                    }
                    Err(e) => {
                        state.rollback(mark);
                        outcomes.push(Err(e));
                    }
                }
            }
            if changes.is_empty() {
                state.settle(start);
                break outcomes;
            }
            let count = changes.len() as u64;
            // While the batch is on its way to disk, proposals may read the state it left:
            // they are checked against it, and against its being taken back (below), before
            // they count.
            drop(shared);
            let appended = self.commit(&lane.program, after, changes);
            let mut shared = lane.shared.write();
            let Shared {
                state, versions, ..
            } = &mut *shared;
            if !matches!(appended, Ok(Appended::Done)) {
                state.rollback(start);
                // Proposals may have read what is taken back: none of them stands.
                versions.invalidate();
            }
            match appended {
                Ok(Appended::Done) => {
                    state.advance(count);
                    state.settle(start);
                    state.committed();
                    lane.settled.store(state.seq(), Ordering::SeqCst);
                    self.maybe_snapshot(lane);
                    break outcomes;
                }
                Ok(Appended::Conflict) if attempt < MAX_ATTEMPTS => {
                    drop(shared);
                    self.stats.lock().conflicts += 1;
                    // The host that won is already deciding its next batch on a fresh state;
                    // without a random pause this one would arrive second every time.
                    std::thread::sleep(backoff(attempt));
                }
                Ok(Appended::Conflict) => {
                    break jobs
                        .iter()
                        .map(|_| {
                            Err(Error::unavailable(
                                format!("ledger of `{}`", lane.program),
                                format!("other hosts kept writing first ({MAX_ATTEMPTS} attempts)"),
                            ))
                        })
                        .collect();
                }
                // A refusal may be bound to one decision's rows (PostgreSQL refuses a row
                // its index cannot hold, say): decided again one job at a time, each
                // committed alone, only the jobs the journal refuses alone fail. A journal
                // out of reach fails them all at once (nothing is row-specific about it,
                // and trying each alone would multiply the wait).
                Err(e) if jobs.len() > 1 && !matches!(e, Error::Unavailable { .. }) => {
                    drop(shared);
                    tracing::warn!(
                        "the journal refused a batch of {} jobs of `{}`; committing them one at a time: {e}",
                        jobs.len(),
                        lane.program
                    );
                    for job in jobs.iter_mut() {
                        self.run(lane, std::slice::from_mut(job));
                    }
                    return;
                }
                Err(e) => {
                    break jobs.iter().map(|_| Err(copy(&e))).collect();
                }
            }
        };
        for (job, outcome) in jobs.iter_mut().zip(outcomes) {
            match outcome {
                Ok(()) => job.answer(),
                Err(e) => job.fail(e),
            }
        }
    }

    /// Appends a batch together with every other batch waiting, and returns its outcome.
    fn commit(&self, program: &str, after: u64, changes: Vec<Change>) -> Result<Appended> {
        let pending = Arc::new(Pending {
            program: program.to_string(),
            after,
            changes,
            outcome: Mutex::new(None),
        });
        self.waiting.lock().push(pending.clone());
        let appending = self.appending.lock();
        if let Some(outcome) = pending.outcome.lock().take() {
            return outcome;
        }
        let group = std::mem::take(&mut *self.waiting.lock());
        match self.append(&group) {
            Ok(outcomes) => {
                for (p, outcome) in group.iter().zip(outcomes) {
                    *p.outcome.lock() = Some(Ok(outcome));
                }
            }
            // One batch the journal refuses (its rows, not the journal's reach) must not
            // fail the others appended with it: nothing was written, so each is appended
            // alone, and only those refused alone fail (their lanes then find the job).
            Err(e) if group.len() > 1 && !matches!(e, Error::Unavailable { .. }) => {
                tracing::warn!(
                    "the journal refused a group of {} batches; appending them one at a time: {e}",
                    group.len()
                );
                for p in &group {
                    let outcome = self.append(std::slice::from_ref(p)).and_then(|outcomes| {
                        outcomes.into_iter().next().ok_or_else(|| {
                            Error::host("ledger", "the journal answered for no batch")
                        })
                    });
                    *p.outcome.lock() = Some(outcome);
                }
            }
            Err(e) => {
                for p in &group {
                    *p.outcome.lock() = Some(Err(copy(&e)));
                }
            }
        }
        drop(appending);
        let outcome = pending.outcome.lock().take();
        outcome.unwrap_or_else(|| Err(Error::host("ledger", "a batch was not appended")))
    }

    /// Appends `group` in one atomic, durable write of the journal, counting it in the
    /// stats and telling the observer; one outcome per batch, or why nothing was written.
    fn append(&self, group: &[Arc<Pending>]) -> Result<Vec<Appended>> {
        let batches: Vec<Batch<'_>> = group
            .iter()
            .map(|p| Batch {
                program: &p.program,
                after: p.after,
                changes: &p.changes,
            })
            .collect();
        let began = std::time::Instant::now();
        let result = self.journal.append(&batches).and_then(|outcomes| {
            if outcomes.len() == group.len() {
                Ok(outcomes)
            } else {
                Err(Error::host(
                    "ledger",
                    "the journal answered for the wrong number of batches",
                ))
            }
        });
        let elapsed = began.elapsed();
        let took = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(observer) = self.observer.get() {
            let done = |outcomes: &Vec<Appended>| {
                group
                    .iter()
                    .zip(outcomes)
                    .filter(|(_, outcome)| **outcome == Appended::Done)
                    .map(|(p, _)| p.changes.len())
                    .fold((0, 0), |(batches, changes), n| (batches + 1, changes + n))
            };
            let (appended, changes) = match &result {
                Ok(outcomes) => done(outcomes),
                Err(_) => (0, 0),
            };
            observer.committed(&Commit {
                batches: group.len(),
                appended,
                changes,
                took: elapsed,
                failed: result.is_err(),
            });
        }
        if let Ok(outcomes) = &result {
            let mut stats = self.stats.lock();
            stats.commits += 1;
            stats.append_us = stats.append_us.saturating_add(took);
            for (p, outcome) in group.iter().zip(outcomes) {
                if *outcome == Appended::Done {
                    stats.batches += 1;
                    stats.changes += p.changes.len() as u64;
                }
            }
        }
        result
    }
}

/// A random pause before deciding a batch again after losing a race, growing with the
/// attempts (up to about 4 ms), so that racing hosts fall out of step.
fn backoff(attempt: usize) -> std::time::Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_usize(attempt);
    let spread = 250 * attempt.min(16) as u64;
    std::time::Duration::from_micros(hasher.finish() % spread.max(1))
}

/// The same error for another waiter (errors are not `Clone`; their sources are kept as text).
fn copy(e: &Error) -> Error {
    match e {
        Error::Unavailable { context, source } => {
            Error::unavailable(context.clone(), source.to_string())
        }
        Error::Invalid(m) => Error::Invalid(m.clone()),
        other => Error::ledger("commit", other.to_string()),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::ledger::{MemoryLedger, View};
    use crate::model::Holder;

    fn holder(card: &str) -> Holder {
        serde_json::from_value(serde_json::json!({
            "card": card, "birth-date": "2012-05-01", "municipality": "bergen"
        }))
        .expect("a holder")
    }

    fn register(ledger: &Ledger, holder: Holder) {
        register_in(ledger, "bergen", holder).expect("registers");
    }

    /// Registers `holder` in `program` through the lane, as the host does.
    pub(in crate::ledger) fn register_in(
        ledger: &Ledger,
        program: &str,
        holder: Holder,
    ) -> Result<()> {
        ledger.submit(program, move |tx| {
            let change = Change::Registered {
                holder: holder.clone(),
                at: None,
            };
            tx.state()
                .apply_change(&change)
                .map_err(|refused| Error::invalid(refused.0))?;
            Ok(Staged {
                changes: vec![change],
                answer: (),
            })
        })
    }

    /// A stand-in for a decision's evaluation, proposed outside the lane: what it read (the
    /// holder of `card`) and what it concluded from it (the holder's statuses).
    fn propose(ledger: &Ledger, card: &str) -> (Seen, ReadSet, Vec<String>) {
        let reader = ledger.reader("bergen").expect("the state was loaded");
        let mut reads = ReadSet::default();
        reads.holder(card);
        let (statuses, seen) = reader.read(|state, seen| {
            let statuses = state.holder(card).map(|h| h.statuses.clone());
            (statuses.unwrap_or_default(), seen)
        });
        (seen, reads, statuses)
    }

    /// The lane's side of a decision: keeps the proposal if its reads are unchanged,
    /// otherwise decides again on the current state. Answers what it concluded and
    /// whether the proposal stood.
    fn decide(
        ledger: &Ledger,
        card: &str,
        proposal: (Seen, ReadSet, Vec<String>),
    ) -> (Vec<String>, bool) {
        let card = card.to_string();
        let mut proposal = Some(proposal);
        ledger
            .submit("bergen", move |tx| {
                let answer = match proposal.take() {
                    Some((seen, reads, statuses)) if tx.unchanged(seen, &reads) => (statuses, true),
                    _ => {
                        let now = tx.state().holder(&card).map(|h| h.statuses.clone());
                        (now.unwrap_or_default(), false)
                    }
                };
                Ok(Staged::nothing(answer))
            })
            .expect("decides")
    }

    /// A proposal whose read key changed between its beginning and its job is decided
    /// again on the state as it is then; one whose keys did not change stands, however
    /// much else changed.
    #[test]
    fn a_stale_proposal_is_decided_again_and_an_unchanged_one_stands() {
        let ledger = Ledger::new(Arc::new(MemoryLedger::new()));
        register(&ledger, holder("B-1"));
        register(&ledger, holder("B-2"));
        let on_1 = propose(&ledger, "B-1");
        let on_2 = propose(&ledger, "B-2");
        assert!(on_1.2.is_empty() && on_2.2.is_empty());
        // B-1's holder changes after the proposals read it; B-2's does not, though a new
        // card is registered beside it.
        let mut changed = holder("B-1");
        changed.statuses = vec!["member".into()];
        register(&ledger, changed);
        register(&ledger, holder("B-3"));
        let (statuses, stood) = decide(&ledger, "B-1", on_1);
        assert!(
            !stood,
            "the proposal read B-1's holder, which changed since"
        );
        assert_eq!(
            statuses,
            vec!["member".to_string()],
            "decided on the new state"
        );
        let (statuses, stood) = decide(&ledger, "B-2", on_2);
        assert!(stood, "nothing B-2's proposal read has changed");
        assert!(statuses.is_empty());
        let stats = ledger.stats();
        assert_eq!((stats.proposals_stood, stats.proposals_stale), (1, 1));
    }

    /// Events another writer appended change the state in ways no key of this host
    /// describes: a proposal made before they were read is decided again.
    #[test]
    fn a_proposal_made_before_other_writers_events_were_read_does_not_stand() {
        let journal = Arc::new(MemoryLedger::new());
        let here = Ledger::new(journal.clone());
        let there = Ledger::new(journal);
        register(&here, holder("B-1"));
        let proposal = propose(&here, "B-1");
        register(&there, holder("B-9"));
        let (_, stood) = decide(&here, "B-1", proposal);
        assert!(!stood);
        // Once caught up, proposals stand again.
        let proposal = propose(&here, "B-1");
        let (_, stood) = decide(&here, "B-1", proposal);
        assert!(stood);
    }

    /// A journal that refuses, as a database refuses a row its index cannot hold, every
    /// append holding a change of card `REFUSED`; it can hold appends at a door, and it
    /// remembers the size of each append it refused.
    struct Refusing {
        inner: MemoryLedger,
        door: Mutex<()>,
        /// Appends that reached the door.
        arrived: AtomicU64,
        refused: Mutex<Vec<(usize, usize)>>,
    }

    impl Refusing {
        fn new() -> Refusing {
            Refusing {
                inner: MemoryLedger::new(),
                door: Mutex::new(()),
                arrived: AtomicU64::new(0),
                refused: Mutex::new(Vec::new()),
            }
        }
    }

    impl Journal for Refusing {
        fn read(&self, program: &str, after: u64) -> Result<Vec<super::super::Event>> {
            self.inner.read(program, after)
        }
        fn stats(&self) -> Result<super::super::JournalStats> {
            self.inner.stats()
        }
        fn append(&self, batches: &[Batch<'_>]) -> Result<Vec<Appended>> {
            self.arrived.fetch_add(1, Ordering::SeqCst);
            drop(self.door.lock());
            let changes = batches.iter().map(|b| b.changes.len()).sum();
            if batches
                .iter()
                .any(|b| b.changes.iter().any(|c| c.card() == "REFUSED"))
            {
                self.refused.lock().push((batches.len(), changes));
                return Err(Error::ledger(
                    "cannot append",
                    "index row size exceeds the maximum for index",
                ));
            }
            self.inner.append(batches)
        }
        fn describe(&self) -> String {
            "a refusing journal".into()
        }
    }

    fn try_register(ledger: &Ledger, program: &str, card: &str) -> Result<()> {
        register_in(ledger, program, holder(card))
    }

    fn cards_in_journal(journal: &dyn Journal, program: &str) -> Vec<String> {
        let events = journal.read(program, 0).expect("reads");
        events.iter().map(|e| e.change.card().to_string()).collect()
    }

    /// Jobs of one program decided in one batch: the journal refuses the batch for one
    /// job's row, and only that job fails; the others are committed, one at a time.
    #[test]
    fn a_job_the_journal_refuses_fails_alone_and_its_batch_is_committed() {
        let journal = Arc::new(Refusing::new());
        let ledger = Arc::new(Ledger::new(journal.clone()));
        try_register(&ledger, "bergen", "B-0").expect("registers");
        let (done, finished) = mpsc::channel();
        ledger
            .read("bergen", |_| {
                // Queued while the lane is held: the three run as one batch.
                for card in ["B-1", "REFUSED", "B-2"] {
                    let (ledger, done) = (ledger.clone(), done.clone());
                    std::thread::spawn(move || {
                        let _ = done.send((card, try_register(&ledger, "bergen", card)));
                    });
                }
                std::thread::sleep(Duration::from_millis(300));
            })
            .expect("reads");
        let mut outcomes: Vec<(&str, Result<()>)> = (0..3)
            .map(|_| {
                finished
                    .recv_timeout(Duration::from_secs(20))
                    .expect("answered")
            })
            .collect();
        outcomes.sort_by_key(|(card, _)| *card);
        assert_eq!(
            journal.refused.lock().first(),
            Some(&(1, 3)),
            "the three were appended as one batch first"
        );
        for (card, outcome) in &outcomes {
            match *card {
                "REFUSED" => {
                    let e = outcome.as_ref().expect_err("the refused job fails");
                    assert!(e.to_string().contains("index row size"), "{e}");
                }
                _ => assert!(outcome.is_ok(), "{card}: {outcome:?}"),
            }
        }
        let mut cards = cards_in_journal(journal.as_ref(), "bergen");
        cards.sort();
        assert_eq!(cards, ["B-0", "B-1", "B-2"]);
        // The state is the journal's: the refused card is not there, the others are.
        let known = ledger
            .read("bergen", |s| {
                ["B-1", "B-2", "REFUSED"].map(|c| s.holder(c).is_some())
            })
            .expect("reads");
        assert_eq!(known, [true, true, false]);
    }

    /// Batches of several programs in one append: one program's batch refused does not
    /// fail another program's.
    #[test]
    fn a_batch_the_journal_refuses_does_not_fail_the_batches_appended_with_it() {
        let journal = Arc::new(Refusing::new());
        let ledger = Arc::new(Ledger::new(journal.clone()));
        for program in ["a", "b", "c"] {
            try_register(&ledger, program, "X-0").expect("registers");
        }
        let (done, finished) = mpsc::channel();
        let door = journal.door.lock();
        // `a`'s append waits at the door, holding the group commit; `b` and `c` wait for it
        // and are then appended together.
        let spawn = |program: &'static str, card: &'static str| {
            let (ledger, done) = (ledger.clone(), done.clone());
            std::thread::spawn(move || {
                let _ = done.send((program, try_register(&ledger, program, card)));
            });
        };
        let before = journal.arrived.load(Ordering::SeqCst);
        spawn("a", "A-1");
        let waited = std::time::Instant::now();
        while journal.arrived.load(Ordering::SeqCst) == before {
            assert!(waited.elapsed() < Duration::from_secs(20), "a appends");
            std::thread::sleep(Duration::from_millis(10));
        }
        spawn("b", "B-1");
        spawn("c", "REFUSED");
        while ledger.waiting.lock().len() < 2 {
            assert!(waited.elapsed() < Duration::from_secs(20), "b and c wait");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(door);
        let mut outcomes: Vec<(&str, Result<()>)> = (0..3)
            .map(|_| {
                finished
                    .recv_timeout(Duration::from_secs(20))
                    .expect("answered")
            })
            .collect();
        outcomes.sort_by_key(|(program, _)| *program);
        assert_eq!(
            journal.refused.lock().first(),
            Some(&(2, 2)),
            "`b` and `c` were appended together first"
        );
        assert!(outcomes[0].1.is_ok(), "{outcomes:?}");
        assert!(outcomes[1].1.is_ok(), "{outcomes:?}");
        assert!(outcomes[2].1.is_err(), "{outcomes:?}");
        assert_eq!(cards_in_journal(journal.as_ref(), "b"), ["X-0", "B-1"]);
        assert_eq!(cards_in_journal(journal.as_ref(), "c"), ["X-0"]);
    }

    /// A job queued while a reader holds the program's state finds the state taken and
    /// leaves it to the holder: the reader must run it when it lets go, or the job would
    /// wait for the program's next job, which may never come.
    #[test]
    fn a_job_queued_during_a_read_is_run_when_the_read_ends() {
        let ledger = Arc::new(Ledger::new(Arc::new(MemoryLedger::new())));
        let (done, finished) = mpsc::channel();
        ledger
            .read("bergen", |_| {
                let ledger = ledger.clone();
                let done = done.clone();
                std::thread::spawn(move || {
                    register(&ledger, holder("B-1"));
                    let _ = done.send(true);
                });
                // Long enough for the job to be queued and to find the state taken.
                std::thread::sleep(Duration::from_millis(200));
            })
            .expect("reads");
        let committed = finished
            .recv_timeout(Duration::from_secs(20))
            .expect("the job queued during the read was run");
        assert!(committed);
        let known = ledger
            .read("bergen", |state| state.holder("B-1").is_some())
            .expect("reads");
        assert!(known);
    }
}
