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
    /// program → seq → entry: a venue's outbox.
    outbox: Mutex<std::collections::BTreeMap<String, std::collections::BTreeMap<u64, String>>>,
    accesses: Mutex<Vec<super::Access>>,
}

/// One program's events, the positions of its request ids, and its snapshots.
#[derive(Default)]
struct Program {
    /// Its events from position `removed + 1` on.
    changes: Vec<Change>,
    /// How many events compaction removed from its start.
    removed: u64,
    /// request id → position (the index a journal keeps unique).
    ids: HashMap<String, u64>,
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

    fn keep_outbox(&self, program: &str, seq: u64, entry: &str) -> Result<()> {
        self.outbox
            .lock()
            .entry(program.to_string())
            .or_default()
            .insert(seq, entry.to_string());
        Ok(())
    }

    fn outbox(&self, program: &str) -> Result<Vec<(u64, String)>> {
        Ok(self
            .outbox
            .lock()
            .get(program)
            .map(|kept| kept.iter().map(|(seq, e)| (*seq, e.clone())).collect())
            .unwrap_or_default())
    }

    fn drop_outbox(&self, program: &str, seqs: &[u64]) -> Result<()> {
        if let Some(kept) = self.outbox.lock().get_mut(program) {
            for seq in seqs {
                kept.remove(seq);
            }
        }
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
        let skip = after.saturating_sub(program.removed);
        Ok(program
            .changes
            .iter()
            .enumerate()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .take(limit)
            .map(|(index, change)| Event {
                seq: program.removed + index as u64 + 1,
                change: change.clone(),
            })
            .collect())
    }

    fn recorded(&self, program: &str, request_id: &str) -> Result<Option<Recorded>> {
        let programs = self.programs.lock();
        Ok(programs.get(program).and_then(|p| {
            let seq = *p.ids.get(request_id)?;
            let index = usize::try_from(seq.checked_sub(p.removed + 1)?).ok()?;
            p.changes
                .get(index)?
                .recorded()
                .map(|(_, recorded)| recorded)
        }))
    }

    fn append(&self, batches: &[Batch<'_>]) -> Result<Vec<Appended>> {
        let mut programs = self.programs.lock();
        batches
            .iter()
            .map(|batch| {
                let program = programs.entry(batch.program.to_string()).or_default();
                if program.removed + program.changes.len() as u64 != batch.after {
                    return Ok(Appended::Conflict);
                }
                for change in batch.changes {
                    let seq = program.removed + program.changes.len() as u64 + 1;
                    if let Some((id, _)) = change.recorded() {
                        program.ids.insert(id.to_string(), seq);
                    }
                    if let Some(cards) = change.erases() {
                        let erasure = seq;
                        for earlier in &mut program.changes {
                            if cards.iter().any(|c| c == earlier.card())
                                && let Some(kept) = earlier.redacted(erasure)
                            {
                                *earlier = kept;
                            }
                        }
                        let mut kept = Vec::new();
                        for snapshot in program.snapshots.drain(..) {
                            let at = snapshot.seq.saturating_sub(program.removed);
                            let at = usize::try_from(at).unwrap_or(usize::MAX);
                            let event = match at.checked_sub(1).and_then(|i| program.changes.get(i))
                            {
                                Some(change) => Some(change.to_row(snapshot.seq as i64)?.body),
                                None => None,
                            };
                            if let Some(erased) = snapshot.erased(cards, event.as_deref())? {
                                kept.push(erased);
                            }
                        }
                        program.snapshots = kept;
                    }
                    program.changes.push(change.clone());
                }
                Ok(Appended::Done)
            })
            .collect()
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
        let after = snapshot.seq.saturating_sub(program.removed);
        if super::erased_after(&program.changes, after) {
            return Ok(());
        }
        program.snapshots.retain(|s| s.seq != snapshot.seq);
        program.snapshots.push(snapshot.clone());
        program.snapshots.sort_by_key(|s| s.seq);
        // The newest few, and the base snapshot of a compacted journal.
        let base = (program.removed > 0).then_some(program.removed + 1);
        let newest: Vec<u64> = program
            .snapshots
            .iter()
            .rev()
            .take(KEPT)
            .map(|s| s.seq)
            .collect();
        program
            .snapshots
            .retain(|s| newest.contains(&s.seq) || Some(s.seq) == base);
        Ok(())
    }

    fn compact(&self, base: &Snapshot, seen: u64) -> Result<u64> {
        let mut programs = self.programs.lock();
        let Some(program) = programs.get_mut(&base.program) else {
            return Ok(0);
        };
        if super::erased_after(&program.changes, seen.saturating_sub(program.removed)) {
            return Err(super::erased_meanwhile(&base.program));
        }
        let last = program.removed + program.changes.len() as u64;
        if base.seq <= program.removed || base.seq > last {
            return Err(crate::Error::invalid(format!(
                "cannot compact `{}` through event {}: its journal holds events {} to {last}",
                base.program,
                base.seq,
                program.removed + 1
            )));
        }
        let removed = base.seq - 1 - program.removed;
        program
            .changes
            .drain(..usize::try_from(removed).unwrap_or(usize::MAX));
        program.removed = base.seq - 1;
        let first = base.seq;
        program.ids.retain(|_, seq| *seq >= first);
        program.snapshots.retain(|s| s.seq > base.seq);
        program.snapshots.push(base.clone());
        program.snapshots.sort_by_key(|s| s.seq);
        Ok(removed)
    }

    fn adopt(&self, base: &Snapshot, changes: &[Change]) -> Result<()> {
        let mut programs = self.programs.lock();
        let program = programs.entry(base.program.clone()).or_default();
        if program.removed + program.changes.len() as u64 > 0 || base.seq == 0 {
            return Err(crate::Error::invalid(format!(
                "cannot begin the journal of `{}` at event {}: it holds events, or that is no position",
                base.program, base.seq
            )));
        }
        program.removed = base.seq - 1;
        for (offset, change) in changes.iter().enumerate() {
            if let Some((id, _)) = change.recorded() {
                program.ids.insert(id.to_string(), base.seq + offset as u64);
            }
            program.changes.push(change.clone());
        }
        program.snapshots = vec![base.clone()];
        Ok(())
    }

    fn forget_accesses(&self, program: &str, before: i64) -> Result<u64> {
        let mut log = self.accesses.lock();
        let had = log.len();
        log.retain(|a| a.program != program || a.at >= before);
        Ok((had - log.len()) as u64)
    }

    fn stats(&self) -> Result<JournalStats> {
        let programs = self.programs.lock();
        let mut stats: Vec<ProgramStats> = programs
            .iter()
            .map(|(name, p)| ProgramStats {
                program: name.clone(),
                events: p.changes.len() as u64,
                last: p.removed + p.changes.len() as u64,
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
