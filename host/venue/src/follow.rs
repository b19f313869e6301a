//! Following the city's journal of each program the venue serves, into the venue's own
//! ledger: a page of events after the last one held (long-polled when there is none), each
//! appended at the same position it has at the city. The venue's ledger is thus a prefix
//! of the city's journal: it knows every card and its state as of its last contact.
//! Events that do not follow on from what is held are refused (logged) and asked for
//! again; nothing the city did not write goes in.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use cardrules::Host;
use cardrules::Journal as _;
use cardrules::ledger::{Appended, Batch, Change, Snapshot};
use cardrules_server::upstream::{BaseBody, JournalPage};

use crate::city::City;
use crate::report::Report;

/// Events asked for at a time.
const PAGE: usize = 5_000;
/// How long the city may hold a poll with no new event.
const WAIT_SECONDS: u64 = 20;

/// The followers started, one thread per program.
pub(crate) struct Followers {
    host: Arc<Host>,
    city: Arc<City>,
    report: Arc<Report>,
    started: Mutex<BTreeSet<String>>,
}

impl Followers {
    pub(crate) fn new(host: Arc<Host>, city: Arc<City>, report: Arc<Report>) -> Followers {
        Followers {
            host,
            city,
            report,
            started: Mutex::new(BTreeSet::new()),
        }
    }

    /// Follows `program`'s journal, unless it is followed already.
    pub(crate) fn ensure(&self, program: &str) {
        if !self.started.lock().insert(program.to_string()) {
            return;
        }
        let (host, city, report) = (self.host.clone(), self.city.clone(), self.report.clone());
        let name = program.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("venue-follow-{program}"))
            .spawn(move || follow(&host, &city, &report, &name));
        if let Err(e) = spawned {
            tracing::error!("cannot follow the journal of `{program}`: {e}");
            self.started.lock().remove(program);
        }
    }
}

/// The last position of `program` in the venue's ledger.
fn held(host: &Host, program: &str) -> cardrules::Result<u64> {
    Ok(host
        .ledger()
        .journal()
        .stats()?
        .programs
        .into_iter()
        .find(|p| p.program == program)
        .map_or(0, |p| p.last))
}

fn follow(host: &Host, city: &City, report: &Report, program: &str) {
    // The cause last logged: a streak of the same failure is logged once.
    let mut failing: Option<String> = None;
    let mut last = loop {
        match held(host, program) {
            Ok(last) => break last,
            Err(e) => {
                tracing::error!("cannot read the venue's ledger of `{program}`: {e}");
                std::thread::sleep(Duration::from_secs(5));
            }
        }
    };
    report.position(program, last);
    loop {
        let path = format!(
            "/v1/venue/programs/{program}/journal?after={last}&limit={PAGE}&wait={WAIT_SECONDS}"
        );
        let page = city
            .get(&path, None)
            .map_err(|e| format!("cannot reach it: {e}"))
            .and_then(|fetched| match fetched.status {
                200 => serde_json::from_slice::<JournalPage>(&fetched.body)
                    .map_err(|e| format!("its page of the journal is not one: {e}")),
                status => Err(format!("it answered {status}: {}", fetched.error())),
            });
        let page = match page {
            Ok(page) => page,
            Err(why) => {
                if failing.as_deref() != Some(why.as_str()) {
                    tracing::warn!(
                        "cannot follow the journal of `{program}` at the city host `{}`: {why}; holding it up to position {last}",
                        city.url()
                    );
                    failing = Some(why);
                }
                std::thread::sleep(Duration::from_secs(3));
                continue;
            }
        };
        if failing.take().is_some() {
            tracing::info!("following the journal of `{program}` again from position {last}");
        }
        if page.events.is_empty() {
            continue;
        }
        // A venue holding nothing of a journal its city compacted begins at the city's
        // base snapshot, bound to the page's first event.
        if last == 0 && page.program == program && page.events[0].seq > 1 {
            match begin_at_base(host, city, program, page) {
                Ok(now) => {
                    tracing::info!(
                        "began the journal of `{program}` at the city's base snapshot: holding it up to position {now}"
                    );
                    last = now;
                    report.position(program, last);
                }
                Err(why) => {
                    if failing.as_deref() != Some(why.as_str()) {
                        tracing::error!(
                            "cannot begin the journal of `{program}` at the city host `{}`'s base snapshot: {why}",
                            city.url()
                        );
                        failing = Some(why);
                    }
                    std::thread::sleep(Duration::from_secs(3));
                }
            }
            continue;
        }
        let follows_on = page.program == program
            && page
                .events
                .iter()
                .enumerate()
                .all(|(i, event)| event.seq == last + 1 + i as u64);
        if !follows_on {
            tracing::error!(
                "the city host `{}` sent events of `{program}` that do not follow on from position {last}: not appended, asking again",
                city.url()
            );
            std::thread::sleep(Duration::from_secs(3));
            continue;
        }
        let changes: Vec<Change> = page.events.into_iter().map(|e| e.change).collect();
        let batch = Batch {
            program,
            after: last,
            changes: &changes,
        };
        match host.ledger().journal().append(&[batch]) {
            Ok(outcome) if outcome.first() == Some(&Appended::Done) => {
                last += changes.len() as u64;
                report.position(program, last);
            }
            Ok(_) => {
                // Something else wrote to the venue's ledger: read where it stands.
                tracing::error!(
                    "the venue's ledger of `{program}` moved past position {last} by another writer; reading it again"
                );
                if let Ok(now) = held(host, program) {
                    last = now;
                }
            }
            Err(e) => {
                tracing::error!(
                    "cannot append the city's events of `{program}` to the venue's ledger: {e}"
                );
                std::thread::sleep(Duration::from_secs(3));
            }
        }
    }
}

/// Begins the venue's empty journal of `program` at its city's base snapshot and the
/// `page` of events from the base's position on; returns the last position held. The
/// snapshot must be bound to the page's first event (checked once adopted, as any start
/// checks it), or nothing is kept.
fn begin_at_base(
    host: &Host,
    city: &City,
    program: &str,
    page: JournalPage,
) -> Result<u64, String> {
    use base64::Engine as _;
    let fetched = city
        .get(&format!("/v1/venue/programs/{program}/base"), None)
        .map_err(|e| format!("cannot reach it: {e}"))?;
    if fetched.status != 200 {
        return Err(format!(
            "it answered {}: {}",
            fetched.status,
            fetched.error()
        ));
    }
    let base: BaseBody = serde_json::from_slice(&fetched.body)
        .map_err(|e| format!("its base snapshot is not one: {e}"))?;
    let first = page.events[0].seq;
    if base.program != program || base.seq != first {
        return Err(format!(
            "its base snapshot is at event {} of `{}`, its journal begins at event {first}",
            base.seq, base.program
        ));
    }
    let follows_on = page
        .events
        .iter()
        .enumerate()
        .all(|(i, event)| event.seq == first + i as u64);
    if !follows_on {
        return Err("its page of the journal does not follow on".to_string());
    }
    let snapshot = Snapshot {
        program: base.program,
        seq: base.seq,
        format: base.format,
        checksum: base.checksum,
        body: base64::engine::general_purpose::STANDARD
            .decode(&base.body)
            .map_err(|e| format!("its base snapshot is not base64: {e}"))?,
        written: base.written,
    };
    // The snapshot is checked whole before anything is kept: sound, this program's, and
    // bound to the first event the city sent.
    let scratch = cardrules::MemoryLedger::new();
    let changes: Vec<Change> = page.events.into_iter().map(|e| e.change).collect();
    scratch
        .adopt(&snapshot, &changes)
        .map_err(|e| e.to_string())?;
    match snapshot.bound(&scratch, program) {
        Ok(Ok(_)) => {}
        Ok(Err(why)) => return Err(format!("its base snapshot cannot be used: {why}")),
        Err(e) => return Err(e.to_string()),
    }
    host.ledger()
        .journal()
        .adopt(&snapshot, &changes)
        .map_err(|e| e.to_string())?;
    Ok(first + changes.len() as u64 - 1)
}
