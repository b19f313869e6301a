//! A venue host (`cardrules serve --upstream URL --upstream-token FILE`, docs/venues.md):
//! the host at a venue's tills, which reaches its city host only over HTTP(S) with its own
//! token. It
//!
//! - **pulls its programs** ([`rollout`]): long-polls the city's rollout
//!   (`GET /v1/venue/programs`, `If-None-Match`), fetches a changed version's files,
//!   checks them against the digests announced, then serves them exactly as a published
//!   version is served — verified against the venue's own trust file, gated on the
//!   program's own suites — and keeps them on disk, so that it starts with them while the
//!   city is unreachable. A refused version leaves the previous one serving and is
//!   reported;
//! - **follows the journals** ([`follow`]) of the programs it serves into its own SQLite
//!   ledger, so that it knows every card and its state as of its last contact;
//! - **forwards its tills' decisions and card reads** to the city (the server's
//!   `Upstream`, implemented by [`City`]), so that the city's journal stays the one truth
//!   and every answer is the city's; with the city unreachable it answers 503;
//! - **reports** ([`report`]) what it serves, refused and holds to the city, which lists it
//!   in `GET /v1/venues`.
//!
//! The engine has no HTTP client and the server names only the seam; this crate is where
//! the venue's HTTP client lives.

mod city;
mod follow;
mod report;
mod rollout;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cardrules::Host;
use cardrules_server::StartError;
use cardrules_server::upstream::{Upstream, VenueRole};

pub use city::City;

use report::Report;

/// A venue host's tie to its city.
pub struct Venue {
    city: Arc<City>,
    report: Arc<Report>,
}

impl Venue {
    /// The venue of the city at `url`, reached with the token in `token_file` (and, for a
    /// city whose certificate a private CA signed, that CA's PEM certificate).
    pub fn new(url: &str, token_file: &Path, ca_file: Option<&Path>) -> Result<Venue, String> {
        Ok(Venue {
            city: Arc::new(City::new(url, token_file, ca_file)?),
            report: Arc::new(Report::default()),
        })
    }
}

impl VenueRole for Venue {
    fn upstream(&self) -> Arc<dyn Upstream> {
        self.city.clone()
    }

    fn watch(&self, alone: Arc<cardrules_server::alone::Alone>) {
        *self.report.alone.lock() = Some(alone);
    }

    fn start(&self, host: Arc<Host>, policies: PathBuf) -> Result<(), StartError> {
        tracing::info!(
            "venue host of the city host `{}`: programs, journals and decisions come from it",
            self.city.url()
        );
        self.report.served(&host);
        let followers =
            follow::Followers::new(host.clone(), self.city.clone(), self.report.clone());
        // Programs already kept from an earlier run are followed at once.
        for program in host.programs() {
            followers.ensure(program.id());
        }
        let spawn = |name: &str, work: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(work)
                .map(|_| ())
                .map_err(StartError::from)
        };
        let (city, report) = (self.city.clone(), self.report.clone());
        spawn(
            "venue-rollout",
            Box::new(move || rollout::run(&host, &policies, &city, &report, &followers)),
        )?;
        let (city, report) = (self.city.clone(), self.report.clone());
        spawn(
            "venue-report",
            Box::new(move || report::run(&city, &report)),
        )?;
        Ok(())
    }
}
