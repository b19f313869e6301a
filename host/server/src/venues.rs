//! What a city host knows of its venue hosts (`GET /v1/venues`, `/metrics`): when each
//! last called, what it serves, what it refused and how far it follows the journal. Kept
//! in memory and, beside the journal, in the ledger (`Journal::save_venue`), so that it
//! survives the city's restarts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use cardrules::Journal;

use crate::upstream::{RefusedVersion, ServedVersion, VenueReport};

/// A venue that called within this long is online: a connected venue asks the city at
/// least every long poll (25 s).
pub const ONLINE_WITHIN: Duration = Duration::from_secs(45);
/// How often a venue's last contact alone is written to the ledger (a report that changes
/// anything is written at once).
const CONTACT_EVERY: Duration = Duration::from_secs(60);

/// One venue as `GET /v1/venues` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub struct VenueStatus {
    /// The venue's name: its token's, in the city's auth file.
    pub venue: String,
    /// When it last called the city (RFC 3339).
    pub last_contact: String,
    /// Whether it called within the last 45 s.
    pub online: bool,
    /// The programs it serves.
    pub programs: Vec<ServedVersion>,
    /// The versions it refused, with why.
    pub refused: Vec<RefusedVersion>,
    /// By program, the last position of the city's journal it holds.
    pub position: BTreeMap<String, u64>,
    /// Decisions it holds that the city has not yet appended.
    pub backlog: u64,
    /// What it may decide alone (none yet: a venue host decides through its city).
    pub leases: Vec<serde_json::Value>,
    /// The venue host's release, as it reported it.
    #[serde(default)]
    pub release: String,
}

struct Known {
    status: VenueStatus,
    /// When it last called, on this host's monotonic clock (none: only known from the
    /// ledger, since before this host started).
    seen: Option<Instant>,
    /// When its status was last written to the ledger.
    written: Option<Instant>,
}

/// The venues a city host knows.
pub struct Venues {
    journal: Arc<dyn Journal>,
    known: Mutex<BTreeMap<String, Known>>,
}

fn now_text() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(
            |_| jiff::Timestamp::now().to_string(),
            |now| now.to_string(),
        )
}

impl Venues {
    /// The venues kept in `journal`'s ledger (a status that cannot be read is skipped,
    /// with a warning naming it).
    pub fn load(journal: Arc<dyn Journal>) -> cardrules::Result<Venues> {
        let mut known = BTreeMap::new();
        for (name, text) in journal.venues()? {
            match serde_json::from_str::<VenueStatus>(&text) {
                Ok(mut status) => {
                    status.online = false;
                    known.insert(
                        name,
                        Known {
                            status,
                            seen: None,
                            written: None,
                        },
                    );
                }
                Err(e) => tracing::warn!("the kept status of venue `{name}` is unreadable: {e}"),
            }
        }
        Ok(Venues {
            journal,
            known: Mutex::new(known),
        })
    }

    /// No venues yet, kept in `journal`'s ledger.
    pub fn empty(journal: Arc<dyn Journal>) -> Venues {
        Venues {
            journal,
            known: Mutex::new(BTreeMap::new()),
        }
    }

    /// Notes that `venue` called now; its status is written if it was not for a while.
    /// Blocking (it may write to the ledger).
    pub fn contact(&self, venue: &str) {
        self.update(venue, None);
    }

    /// Takes `venue`'s report; written to the ledger at once if it changed anything.
    /// Blocking.
    pub fn report(&self, venue: &str, report: VenueReport) {
        self.update(venue, Some(report));
    }

    fn update(&self, venue: &str, report: Option<VenueReport>) {
        let now = Instant::now();
        let write = {
            let mut known = self.known.lock();
            let entry = known.entry(venue.to_string()).or_insert_with(|| Known {
                status: VenueStatus {
                    venue: venue.to_string(),
                    last_contact: String::new(),
                    online: true,
                    programs: Vec::new(),
                    refused: Vec::new(),
                    position: BTreeMap::new(),
                    backlog: 0,
                    leases: Vec::new(),
                    release: String::new(),
                },
                seen: None,
                written: None,
            });
            let before = entry.status.clone();
            entry.seen = Some(now);
            entry.status.last_contact = now_text();
            if let Some(report) = report {
                entry.status.programs = report.programs;
                entry.status.refused = report.refused;
                entry.status.position = report.position;
                entry.status.backlog = report.backlog;
                entry.status.release = report.release;
            }
            let changed = before.programs != entry.status.programs
                || before.refused != entry.status.refused
                || before.position != entry.status.position
                || before.backlog != entry.status.backlog;
            let due = entry
                .written
                .is_none_or(|written| now.duration_since(written) >= CONTACT_EVERY);
            if changed || due {
                entry.written = Some(now);
                serde_json::to_string(&entry.status).ok()
            } else {
                None
            }
        };
        if let Some(text) = write
            && let Err(e) = self.journal.save_venue(venue, &text)
        {
            tracing::warn!("cannot keep the status of venue `{venue}`: {e}");
        }
    }

    /// Every venue known, by name, with whether it is online now.
    pub fn list(&self) -> Vec<VenueStatus> {
        let now = Instant::now();
        self.known
            .lock()
            .values()
            .map(|known| {
                let mut status = known.status.clone();
                status.online = known
                    .seen
                    .is_some_and(|seen| now.duration_since(seen) < ONLINE_WITHIN);
                status
            })
            .collect()
    }

    /// Seconds since each venue last called this host (none for venues known only from
    /// the ledger), for metrics.
    pub fn ages(&self) -> Vec<(String, Option<f64>)> {
        let now = Instant::now();
        self.known
            .lock()
            .iter()
            .map(|(name, known)| {
                (
                    name.clone(),
                    known
                        .seen
                        .map(|seen| now.duration_since(seen).as_secs_f64()),
                )
            })
            .collect()
    }
}
