//! A city and its venues (docs/venues.md): what a city host tells its venue hosts, and the
//! seam through which a venue host reaches its city. The server names the seam
//! ([`Upstream`], [`VenueRole`]) but holds no HTTP client: crate `cardrules-venue`
//! implements it, and `cardrules serve --upstream URL` plugs it in.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use cardrules::Host;

use crate::start::StartError;

/// What the city host answered a forwarded request: its status and JSON body, passed to
/// the till as they are (a till cannot tell a venue host from its city).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// For a decision: the city's journal position once it was answered
    /// (`Cardrules-Position`), so that the venue knows when its copy holds it.
    pub position: Option<u64>,
}

/// Why the city host could not be asked: it is unreachable, timed out, or answered
/// something that is not HTTP. Nothing was decided at the venue.
#[derive(Debug, Clone)]
pub struct Unreachable(pub String);

/// The city host of a venue host, as the routes see it.
pub trait Upstream: Send + Sync + 'static {
    /// Sends `method path_and_query` (and `body`, JSON) to the city host with the venue's
    /// token and waits for its answer; blocking.
    fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&str>,
    ) -> Result<Answer, Unreachable>;

    /// The city host's URL, for messages (never the token).
    fn describe(&self) -> String;

    /// Why the city could not be reached the last time it was asked, if it could not:
    /// `/readyz` says so (a venue host answers decisions 503 meanwhile).
    fn unreachable(&self) -> Option<String> {
        None
    }
}

/// What makes a server a venue host (`serve --upstream`): the city it forwards to, and
/// the work that follows the city — pulling the programs it rolls out, following their
/// journals, reporting the venue's status.
pub trait VenueRole: Send + Sync {
    /// The city host the routes forward to.
    fn upstream(&self) -> Arc<dyn Upstream>;

    /// Starts following the city for `host`, whose programs are kept in `policies`, on
    /// threads of its own that run until the process ends.
    fn start(&self, host: Arc<Host>, policies: PathBuf) -> Result<(), StartError>;

    /// The venue's offline state, whose backlog it reports to its city.
    fn watch(&self, alone: Arc<crate::alone::Alone>) {
        let _ = alone;
    }
}

/// A program as a venue host serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServedVersion {
    pub program: String,
    pub version: String,
    /// The component's digest (`sha256:…`).
    pub digest: String,
    /// The digest of the version's files together (`sha256:…`).
    pub bundle: String,
}

/// A version a venue host refused to serve, and why (its previous version kept serving).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefusedVersion {
    pub program: String,
    pub version: String,
    /// The component's digest (`sha256:…`), as the city rolled it out.
    pub digest: String,
    /// Why: a signature its trust file does not accept, a failing suite, a bundle whose
    /// digest is not the one announced…
    pub error: String,
    /// When it was refused (RFC 3339).
    pub at: String,
}

/// What a venue host reports to its city (`PUT /v1/venue/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VenueReport {
    /// The programs it serves.
    pub programs: Vec<ServedVersion>,
    /// The versions it refused.
    pub refused: Vec<RefusedVersion>,
    /// By program, the last position of the city's journal it holds.
    pub position: BTreeMap<String, u64>,
    /// Decisions it holds that the city has not yet appended (none while decisions are
    /// forwarded).
    pub backlog: u64,
    /// The venue host's release.
    pub release: String,
}

/// One program of a city's rollout to a venue (`GET /v1/venue/programs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RolledOut {
    pub program: String,
    pub version: String,
    /// The component's digest (`sha256:…`).
    pub digest: String,
    /// The digest of the version's files together (`sha256:…`): its bundle's, checked by
    /// the venue before it looks at the files.
    pub bundle: String,
}

/// The programs a city rolls out to the venue asking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub programs: Vec<RolledOut>,
}

/// A version's files (`GET /v1/venue/programs/{program}/bundle`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BundleBody {
    pub program: String,
    pub version: String,
    pub digest: String,
    pub bundle: String,
    /// Each file by its path in the program's directory (`/`-separated), in standard
    /// base64: what `cardrules publish` sends.
    pub files: BTreeMap<String, String>,
}

/// The base snapshot of a city's compacted journal
/// (`GET /v1/venue/programs/{program}/base`): where a venue joining it begins.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BaseBody {
    pub program: String,
    /// The position of the journal's first event, which the snapshot is bound to.
    pub seq: u64,
    pub format: u32,
    pub checksum: String,
    pub written: i64,
    /// The snapshot's bytes, in standard base64.
    pub body: String,
}

/// One event of a program's journal, as a venue follows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JournalEvent {
    pub seq: u64,
    /// The change, as the journal stores it.
    #[schema(value_type = Object)]
    pub change: cardrules::ledger::Change,
}

/// A page of a program's journal (`GET /v1/venue/programs/{program}/journal`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JournalPage {
    pub program: String,
    pub events: Vec<JournalEvent>,
}

/// What a city answers a venue that takes or hands back its lease of a program
/// (`POST`/`DELETE /v1/venue/programs/{program}/lease`): the lease it holds now (none
/// after a hand-back, or where the program lends nothing) and the journal position that
/// records it — the venue decides under it once its copy reaches that position.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LeaseBody {
    pub program: String,
    /// The venue's name, as its city knows it (its token's).
    pub venue: String,
    #[schema(value_type = Option<Object>)]
    pub lease: Option<cardrules::offline::Lease>,
    pub position: u64,
}

/// What a venue uploads of a program (`POST /v1/venue/programs/{program}/upload`): the
/// requests it took while it could not reach its city, in its order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UploadBody {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<cardrules::offline::Uploaded>,
}

/// What the city made of an upload: how many decisions it appended, how many kept
/// requests it decided, how many it held already; and its journal position after it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UploadedBody {
    pub appended: usize,
    pub decided: usize,
    pub already: usize,
    pub position: u64,
}
