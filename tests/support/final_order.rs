//! The checker of docs/offline.md, shared by the offline simulation and the offline
//! benchmark: a city's journal rebuilt in its final order on a fresh ledger with nothing
//! lent — each event as recorded (a state built from them refuses any balance below
//! zero) and, before each allowed decision, that decision asked again at its place.

use cardrules::ledger::{Batch, Change};
use cardrules::{Decision, Host, Journal, MemoryLedger, Request};

/// The allowed decisions of `program` in `recorded` that the final order denies, each
/// described; `fresh` is a host over the empty `fresh_journal`. An error: the journal
/// cannot be read, or the recorded effects cannot build a state.
pub fn denied_in_final_order(
    recorded: &dyn Journal,
    program: &str,
    fresh: &Host,
    fresh_journal: &MemoryLedger,
) -> Result<Vec<String>, String> {
    let mut denied = Vec::new();
    let mut position = fresh_journal
        .read(program, 0)
        .map_err(|e| e.to_string())?
        .len() as u64;
    for event in recorded.read(program, 0).map_err(|e| e.to_string())? {
        if let Change::Decided {
            request, decision, ..
        } = &event.change
        {
            let decision: Decision = serde_json::from_str(decision).map_err(|e| e.to_string())?;
            if decision.allow {
                let mut request: Request =
                    serde_json::from_str(request).map_err(|e| e.to_string())?;
                request.id = None;
                request.dry_run = true;
                let again = fresh.decide(&request).map_err(|e| e.to_string())?;
                if !again.allow {
                    denied.push(format!(
                        "event {} of `{program}` ({} of card `{}`{}): allowed as recorded, denied `{}` in the final order",
                        event.seq,
                        request.action,
                        request.card,
                        if decision.offline { ", decided offline" } else { "" },
                        again.reason
                    ));
                }
            }
        }
        // Nothing is lent in the final order.
        if event.change.about_leases() {
            continue;
        }
        let changes = [event.change];
        let batch = Batch {
            program,
            after: position,
            changes: &changes,
        };
        fresh_journal.append(&[batch]).map_err(|e| e.to_string())?;
        position += 1;
    }
    // Read whole: a state the recorded effects cannot make is refused here.
    fresh
        .ledger()
        .read(program, |s| s.units())
        .map_err(|e| format!("the final order of `{program}` cannot be built: {e}"))?;
    Ok(denied)
}
