//! The in-memory journal: for suites, benchmarks and tests, where nothing needs to
//! outlive the process.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::snapshot::{KEPT, Snapshot};
use super::{Appended, Batch, Change, Event, Journal, JournalStats, ProgramStats, Recorded};
use crate::error::Result;

/// A journal held in memory.
#[derive(Default)]
pub struct MemoryLedger {
    programs: Mutex<HashMap<String, Program>>,
    venues: Mutex<std::collections::BTreeMap<String, String>>,
    accesses: Mutex<Vec<super::Access>>,
}

/// One program's events, the positions of its request ids, and its snapshots.
#[derive(Default)]
struct Program {
    changes: Vec<Change>,
    /// request id → index in `changes` (the index a journal keeps unique).
    ids: HashMap<String, usize>,
    /// Newest last.
    snapshots: Vec<Snapshot>,
}

impl MemoryLedger {
    pub fn new() -> MemoryLedger {
        MemoryLedger::default()
    }
}

impl Journal for MemoryLedger {
    fn record_access(&self, entries: &[super::Access]) -> Result<()> {
        let mut log = self.accesses.lock();
        for entry in entries {
            let id = log.len() as u64 + 1;
            log.push(super::Access {
                id,
                ..entry.clone()
            });
        }
        Ok(())
    }

    fn accesses(
        &self,
        program: &str,
        card: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<super::Access>> {
        Ok(self
            .accesses
            .lock()
            .iter()
            .filter(|a| a.id > after && a.program == program && a.card == card)
            .take(limit)
            .cloned()
            .collect())
    }

    fn save_venue(&self, venue: &str, status: &str) -> Result<()> {
        self.venues
            .lock()
            .insert(venue.to_string(), status.to_string());
        Ok(())
    }

    fn venues(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .venues
            .lock()
            .iter()
            .map(|(name, status)| (name.clone(), status.clone()))
            .collect())
    }

    fn read(&self, program: &str, after: u64) -> Result<Vec<Event>> {
        self.read_page(program, after, usize::MAX)
    }

    fn read_page(&self, program: &str, after: u64, limit: usize) -> Result<Vec<Event>> {
        let programs = self.programs.lock();
        let Some(program) = programs.get(program) else {
            return Ok(Vec::new());
        };
        Ok(program
            .changes
            .iter()
            .enumerate()
            .skip(usize::try_from(after).unwrap_or(usize::MAX))
            .take(limit)
            .map(|(index, change)| Event {
                seq: index as u64 + 1,
                change: change.clone(),
            })
            .collect())
    }

    fn recorded(&self, program: &str, request_id: &str) -> Result<Option<Recorded>> {
        let programs = self.programs.lock();
        Ok(programs.get(program).and_then(|p| {
            let index = *p.ids.get(request_id)?;
            p.changes[index].recorded().map(|(_, recorded)| recorded)
        }))
    }

    fn append(&self, batches: &[Batch<'_>]) -> Result<Vec<Appended>> {
        let mut programs = self.programs.lock();
        Ok(batches
            .iter()
            .map(|batch| {
                let program = programs.entry(batch.program.to_string()).or_default();
                if program.changes.len() as u64 != batch.after {
                    return Appended::Conflict;
                }
                for change in batch.changes {
                    if let Some((id, _)) = change.recorded() {
                        program.ids.insert(id.to_string(), program.changes.len());
                    }
                    program.changes.push(change.clone());
                }
                Appended::Done
            })
            .collect())
    }

    fn snapshots(&self, program: &str, limit: usize) -> Result<Vec<Snapshot>> {
        let programs = self.programs.lock();
        Ok(programs
            .get(program)
            .map(|p| p.snapshots.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let mut programs = self.programs.lock();
        let program = programs.entry(snapshot.program.clone()).or_default();
        program.snapshots.retain(|s| s.seq != snapshot.seq);
        program.snapshots.push(snapshot.clone());
        program.snapshots.sort_by_key(|s| s.seq);
        let extra = program.snapshots.len().saturating_sub(KEPT);
        program.snapshots.drain(..extra);
        Ok(())
    }

    fn stats(&self) -> Result<JournalStats> {
        let programs = self.programs.lock();
        let mut stats: Vec<ProgramStats> = programs
            .iter()
            .map(|(name, p)| ProgramStats {
                program: name.clone(),
                events: p.changes.len() as u64,
                last: p.changes.len() as u64,
                snapshot: p.snapshots.last().map(Snapshot::info),
            })
            .collect();
        stats.sort_by(|a, b| a.program.cmp(&b.program));
        Ok(JournalStats {
            programs: stats,
            bytes: None,
        })
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}
