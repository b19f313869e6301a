//! Deciding and committing: one lane per program, one group commit for all of them.
//!
//! **Lanes.** Work on a program's ledger (a decision, a registration) is a job queued on
//! the program's lane. Whoever holds the lane's state runs every job queued so far, one
//! after the other, each on the state the previous one left — a *batch* — and then
//! commits the batch's changes. Callers that queued meanwhile find their answer ready
//! when they get the state in turn, or run the next batch themselves. Programs have
//! separate lanes: a policy that burns its whole fuel delays its own program's decisions
//! only, never another program's.
//!
//! **Group commit.** A batch is handed to the committer, which appends every batch handed
//! to it while the previous append was on disk in one atomic, durable write (SQLite: one
//! transaction, one fsync). A job's answer is returned only after the append that holds
//! its changes has returned.
//!
//! **Why outcomes are serializable.** Within a lane, jobs run one at a time on the state
//! left by all earlier jobs — committed, or in the same batch and committed with it or
//! not at all. Between processes or hosts sharing a journal, a batch records the
//! program's last event it was decided on (`after`); the journal appends it only if that
//! is still the last event, atomically with the check. Otherwise nothing is written, the
//! lane takes the batch back ([`State::rollback`]), reads the events it missed, and
//! decides the batch again. So every committed batch was decided on exactly the state
//! its predecessors in the journal left: the journal's order is a serial order of all
//! decisions, and two terminals can never both take the last place or the last øre.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

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
}

impl Tx<'_> {
    /// The program's state, as left by every earlier job.
    pub fn state(&mut self) -> &mut State {
        self.state
    }
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
struct Lane {
    program: String,
    /// Held by the lane's leader while it runs and commits a batch.
    state: Mutex<State>,
    queue: Mutex<Vec<Box<dyn Job>>>,
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
    journal: Arc<dyn Journal>,
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    waiting: Mutex<Vec<Arc<Pending>>>,
    /// Held by whoever is appending; the others queue their batches meanwhile.
    appending: Mutex<()>,
    stats: Mutex<Stats>,
    /// Told of every append (metrics); set at most once.
    observer: std::sync::OnceLock<Arc<dyn CommitObserver>>,
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
        }
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
        *self.stats.lock()
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
                    state: Mutex::new(State::default()),
                    queue: Mutex::new(Vec::new()),
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
            let mut state = lane.state.lock();
            self.catch_up(&lane.program, &mut state).map(|()| {
                let mark = state.mark();
                let answer = examine(&mut state);
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
        while let Some(mut state) = lane.state.try_lock() {
            loop {
                let mut batch = std::mem::take(&mut *lane.queue.lock());
                if batch.is_empty() {
                    break;
                }
                self.run(lane, &mut state, &mut batch);
            }
            drop(state);
            if lane.queue.lock().is_empty() {
                break;
            }
        }
    }

    /// Applies the events of the program's journal that `state` has not seen yet.
    fn catch_up(&self, program: &str, state: &mut State) -> Result<()> {
        let events = self.journal.read(program, state.seq())?;
        for event in events {
            let expected = state.seq() + 1;
            if event.seq != expected {
                return Err(Error::ledger(
                    format!("journal of `{program}`"),
                    format!("event {} follows {}", event.seq, state.seq()),
                ));
            }
            let mark = state.mark();
            state.apply_change(&event.change).map_err(|refused| {
                Error::ledger(
                    format!("journal of `{program}`, event {}", event.seq),
                    format!("cannot be applied: {refused}"),
                )
            })?;
            state.advance(1);
            state.settle(mark);
        }
        Ok(())
    }

    /// Runs a batch of jobs and commits what they staged; answers every slot.
    fn run(&self, lane: &Lane, state: &mut State, jobs: &mut [Box<dyn Job>]) {
        let mut attempt = 0;
        // Per job, `Ok` when it staged an answer (kept in the job), or why it failed.
        let outcomes: Vec<Result<()>> = loop {
            attempt += 1;
            if let Err(e) = self.catch_up(&lane.program, state) {
                break jobs.iter().map(|_| Err(copy(&e))).collect();
            }
            let start = state.mark();
            let after = state.seq();
            let mut changes = Vec::new();
            let mut outcomes = Vec::with_capacity(jobs.len());
            for job in jobs.iter_mut() {
                let mark = state.mark();
                let mut tx = Tx { state: &mut *state };
                match job.stage(&mut tx) {
                    Ok(staged) => {
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
            match self.commit(&lane.program, after, changes) {
                Ok(Appended::Done) => {
                    state.advance(count);
                    state.settle(start);
                    break outcomes;
                }
                Ok(Appended::Conflict) if attempt < MAX_ATTEMPTS => {
                    self.stats.lock().conflicts += 1;
                    state.rollback(start);
                    // The host that won is already deciding its next batch on a fresh state;
                    // without a random pause this one would arrive second every time.
                    std::thread::sleep(backoff(attempt));
                }
                Ok(Appended::Conflict) => {
                    state.rollback(start);
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
                Err(e) => {
                    state.rollback(start);
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
        let batches: Vec<Batch<'_>> = group
            .iter()
            .map(|p| Batch {
                program: &p.program,
                after: p.after,
                changes: &p.changes,
            })
            .collect();
        let began = std::time::Instant::now();
        let result = self.journal.append(&batches);
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
                Ok(outcomes) if outcomes.len() == group.len() => done(outcomes),
                _ => (0, 0),
            };
            observer.committed(&Commit {
                batches: group.len(),
                appended,
                changes,
                took: elapsed,
                failed: !matches!(&result, Ok(outcomes) if outcomes.len() == group.len()),
            });
        }
        match &result {
            Ok(outcomes) if outcomes.len() == group.len() => {
                let mut stats = self.stats.lock();
                stats.commits += 1;
                stats.append_us = stats.append_us.saturating_add(took);
                for (p, outcome) in group.iter().zip(outcomes) {
                    if *outcome == Appended::Done {
                        stats.batches += 1;
                        stats.changes += p.changes.len() as u64;
                    }
                    *p.outcome.lock() = Some(Ok(*outcome));
                }
            }
            Ok(_) => {
                let e = Error::host(
                    "ledger",
                    "the journal answered for the wrong number of batches",
                );
                for p in &group {
                    *p.outcome.lock() = Some(Err(copy(&e)));
                }
            }
            Err(e) => {
                for p in &group {
                    *p.outcome.lock() = Some(Err(copy(e)));
                }
            }
        }
        drop(appending);
        let outcome = pending.outcome.lock().take();
        outcome.unwrap_or_else(|| Err(Error::host("ledger", "a batch was not appended")))
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
mod tests {
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
                    let registered = ledger.submit("bergen", |tx| {
                        let change = Change::Registered {
                            holder: holder("B-1"),
                            at: None,
                        };
                        tx.state()
                            .apply_change(&change)
                            .map_err(|refused| Error::invalid(refused.0))?;
                        Ok(Staged {
                            changes: vec![change],
                            answer: (),
                        })
                    });
                    let _ = done.send(registered.is_ok());
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
