//! What the venue tells its city (`PUT /v1/venue/status`): the programs it serves, the
//! versions it refused and why, how far it follows each journal. Sent when it changes,
//! and every few seconds besides, so that the city sees the venue online.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use cardrules::Host;
use cardrules_server::upstream::{RefusedVersion, ServedVersion, VenueReport};

use crate::city::City;

/// How often the report is sent when nothing changed.
const EVERY: Duration = Duration::from_secs(10);
/// Changes within this long are sent together.
const SETTLE: Duration = Duration::from_millis(200);
/// The most refusals remembered per program (the newest).
const REFUSALS_KEPT: usize = 5;

/// The venue's report, as it stands, and whether it changed since it was last sent.
#[derive(Default)]
pub(crate) struct Report {
    state: Mutex<(VenueReport, bool)>,
    changed: Condvar,
    /// The venue's offline state: its backlog is reported.
    pub(crate) alone: Mutex<Option<std::sync::Arc<cardrules_server::alone::Alone>>>,
}

impl Report {
    fn change(&self, change: impl FnOnce(&mut VenueReport)) {
        let mut state = self.state.lock();
        let before = state.0.clone();
        change(&mut state.0);
        if state.0 != before {
            state.1 = true;
            self.changed.notify_all();
        }
    }

    /// The programs `host` serves now.
    pub(crate) fn served(&self, host: &Host) {
        let programs = host
            .programs()
            .iter()
            .map(|p| ServedVersion {
                program: p.id().to_string(),
                version: p.policy.info.version.clone(),
                digest: p.policy.digest.clone(),
                bundle: p.sources.digest.clone(),
            })
            .collect();
        self.change(|report| report.programs = programs);
    }

    /// A version refused, with why.
    pub(crate) fn refused(&self, refused: RefusedVersion) {
        self.change(|report| {
            report
                .refused
                .retain(|r| !(r.program == refused.program && r.digest == refused.digest));
            report.refused.push(refused);
            let program = report.refused.last().map(|r| r.program.clone());
            if let Some(program) = program {
                let mine = report
                    .refused
                    .iter()
                    .filter(|r| r.program == program)
                    .count();
                if mine > REFUSALS_KEPT
                    && let Some(oldest) = report.refused.iter().position(|r| r.program == program)
                {
                    report.refused.remove(oldest);
                }
            }
        });
    }

    /// How far the venue holds `program`'s journal.
    pub(crate) fn position(&self, program: &str, position: u64) {
        self.change(|report| {
            report.position.insert(program.to_string(), position);
        });
    }

    /// The report to send, waiting up to `wait` for a change.
    fn next(&self, wait: Duration) -> VenueReport {
        let mut state = self.state.lock();
        if !state.1 {
            let _ = self.changed.wait_for(&mut state, wait);
        }
        state.1 = false;
        state.0.clone()
    }

    /// Marks the report as not sent (the city could not take it).
    fn unsent(&self) {
        self.state.lock().1 = true;
    }
}

/// Sends the report when it changes, and every [`EVERY`] besides.
pub(crate) fn run(city: &City, report: &Report) {
    let mut failing_since: Option<Instant> = None;
    loop {
        let mut sent = report.next(EVERY);
        std::thread::sleep(SETTLE);
        if let Some(alone) = report.alone.lock().as_ref() {
            sent.backlog = alone.backlog();
        }
        sent.release = env!("CARGO_PKG_VERSION").to_string();
        let body = match serde_json::to_string(&sent) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!("cannot encode the venue's report: {e}");
                continue;
            }
        };
        match city.put("/v1/venue/status", &body) {
            Ok(204) => {
                if failing_since.take().is_some() {
                    tracing::info!("reporting to the city host `{}` again", city.url());
                }
            }
            outcome => {
                report.unsent();
                let why = match outcome {
                    Ok(status) => format!("it answered {status}"),
                    Err(e) => e.0,
                };
                if failing_since.is_none() {
                    tracing::warn!(
                        "cannot report the venue's status to the city host `{}`: {why}",
                        city.url()
                    );
                    failing_since = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    }
}
