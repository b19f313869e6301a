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
use cardrules::ledger::{Appended, Batch, Change};
use cardrules_server::upstream::JournalPage;

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
