//! The in-memory journal: for suites, benchmarks and tests, where nothing needs to
//! outlive the process.

use std::collections::HashMap;

use parking_lot::Mutex;

use super::{Appended, Batch, Change, Event, Journal};
use crate::error::Result;

/// A journal held in memory.
#[derive(Default)]
pub struct MemoryLedger {
    programs: Mutex<HashMap<String, Vec<Change>>>,
}

impl MemoryLedger {
    pub fn new() -> MemoryLedger {
        MemoryLedger::default()
    }
}

impl Journal for MemoryLedger {
    fn read(&self, program: &str, after: u64) -> Result<Vec<Event>> {
        let programs = self.programs.lock();
        let Some(changes) = programs.get(program) else {
            return Ok(Vec::new());
        };
        Ok(changes
            .iter()
            .enumerate()
            .skip(usize::try_from(after).unwrap_or(usize::MAX))
            .map(|(index, change)| Event {
                seq: index as u64 + 1,
                change: change.clone(),
            })
            .collect())
    }

    fn append(&self, batches: &[Batch<'_>]) -> Result<Vec<Appended>> {
        let mut programs = self.programs.lock();
        Ok(batches
            .iter()
            .map(|batch| {
                let changes = programs.entry(batch.program.to_string()).or_default();
                if changes.len() as u64 != batch.after {
                    return Appended::Conflict;
                }
                changes.extend(batch.changes.iter().cloned());
                Appended::Done
            })
            .collect())
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}
