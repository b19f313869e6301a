//! The server's shared parts: what `serve` was given ([`Options`]), the state the routes
//! share, and the router that ties routes, authentication and request logs together.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post, put};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use cardrules::Host;

use crate::access::authenticate;
use crate::auth::Tokens;
use crate::limits::{Gate, Limits};
use crate::listen::{self, Connections, Requests, Tls};
use crate::metrics::Metrics;
use crate::routes::{
    access_log, caller, cards, decisions, operations, portal, programs, publish, venues,
};
use crate::routes::{method_not_allowed, not_found};
use crate::signals::shutdown_signal;
use crate::upstream::Upstream;
use crate::venues::Venues;

/// The default limit on a request body.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// What `serve` was given beside the host.
#[derive(Clone, Default)]
pub struct Options {
    /// The largest request body, in bytes.
    pub body_limit: usize,
    /// The known tokens; `None`: every caller may do everything.
    pub tokens: Option<Arc<Tokens>>,
    /// Candidate versions following the live decisions (`serve --shadow`).
    pub shadow: Option<Arc<cardrules::shadow::Shadow>>,
    /// TLS (`--tls-cert`, `--tls-key`); `None`: plain HTTP.
    pub tls: Option<Tls>,
    pub limits: Limits,
    /// Bound each request's `at` by its program's `max-lateness` and `max-skew`.
    pub bound_times: bool,
    /// Where published programs are written (`--policies`); `None`: uploads are refused.
    pub policies: Option<PathBuf>,
    /// A venue host's city (`--upstream`): decisions and card reads are forwarded to it.
    pub upstream: Option<Arc<dyn Upstream>>,
}

/// What the routes share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) host: Arc<Host>,
    pub(crate) body_limit: usize,
    /// The known tokens; `None`: every caller may do everything.
    pub(crate) tokens: Option<Arc<Tokens>>,
    /// Candidate versions following the live decisions (`serve --shadow`).
    pub(crate) shadow: Option<Arc<cardrules::shadow::Shadow>>,
    /// The bound on host work in flight.
    pub(crate) gate: Arc<Gate>,
    pub(crate) limits: Limits,
    /// Bound each request's `at` by its program's `max-lateness` and `max-skew`.
    pub(crate) bound_times: bool,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) requests: Arc<Requests>,
    /// Set once the server is stopping.
    pub(crate) stopping: Arc<AtomicBool>,
    /// Where published programs are written.
    pub(crate) policies: Option<PathBuf>,
    /// Held while a published version is checked and written: one at a time.
    pub(crate) publishing: Arc<parking_lot::Mutex<()>>,
    /// A venue host's city: decisions and card reads are forwarded to it.
    pub(crate) upstream: Option<Arc<dyn Upstream>>,
    /// The venue hosts that call this host.
    pub(crate) venues: Arc<Venues>,
    /// A venue host's offline state: its outbox, what it sent, whether it decides alone.
    pub(crate) alone: Option<Arc<crate::alone::Alone>>,
}

/// The server's shared parts, made once by [`Server::new`] (or [`Server::run`], from a
/// [`Config`](crate::Config)) and used by [`Server::router`] and [`Server::serve`].
#[derive(Clone)]
pub struct Server {
    state: AppState,
    tls: Option<Tls>,
    connections: Arc<Connections>,
}

impl Server {
    /// The server of `host` with `options`; its metrics observe the host's ledger.
    pub fn new(host: Arc<Host>, options: Options) -> Server {
        let gate = Gate::new(options.limits.max_in_flight);
        let connections = Arc::new(Connections::default());
        let metrics = Arc::new(Metrics::new(
            gate.clone(),
            connections.clone(),
            options.shadow.clone(),
            host.ledger().clone(),
        ));
        if !host.ledger().observe(metrics.clone()) {
            tracing::warn!("the ledger is already observed: commits are not in `/metrics`");
        }
        let venues = Arc::new(
            Venues::load(host.ledger().journal().clone()).unwrap_or_else(|e| {
                tracing::warn!("cannot read the venues kept in the ledger: {e}");
                Venues::empty(host.ledger().journal().clone())
            }),
        );
        metrics.watch_venues(venues.clone());
        let alone = options
            .upstream
            .as_ref()
            .map(|city| Arc::new(crate::alone::Alone::new(host.clone(), city.clone())));
        Server {
            state: AppState {
                host,
                body_limit: options.body_limit,
                tokens: options.tokens,
                shadow: options.shadow,
                gate,
                limits: options.limits,
                bound_times: options.bound_times,
                metrics,
                requests: Arc::new(Requests::default()),
                stopping: Arc::new(AtomicBool::new(false)),
                policies: options.policies,
                publishing: Arc::default(),
                upstream: options.upstream,
                venues,
                alone,
            },
            tls: options.tls,
            connections,
        }
    }

    /// A venue host's offline state (none at a city host): its thread brings back what
    /// it decided alone ([`crate::alone::Alone::run`]).
    pub fn alone(&self) -> Option<Arc<crate::alone::Alone>> {
        self.state.alone.clone()
    }

    /// The server's metrics (hot reloads are counted by [`watch`](crate::watch)).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// The routes of docs/contract.md, with request logs.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serves the API on `listener` until SIGTERM or Ctrl-C (see [`listen`]).
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        let stopping = self.state.stopping.clone();
        // Installed now, before the first connection is accepted.
        let signal = shutdown_signal();
        let stop = async move {
            signal.await;
            stopping.store(true, Ordering::SeqCst);
        };
        listen::serve(
            listener,
            self.router(),
            self.tls.clone(),
            &self.state.limits,
            self.state.requests.clone(),
            self.connections.clone(),
            stop,
        )
        .await;
    }
}

/// The routes of docs/contract.md over `state`, with request logs.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/decisions", post(decisions::decide))
        .route("/v1/programs", get(programs::programs))
        .route("/v1/caller", get(caller::caller))
        .route("/v1/programs/{program}", get(programs::program))
        .route("/v1/programs/{program}/coverage", get(programs::coverage))
        .route(
            "/v1/programs/{program}/holders/{card}",
            put(cards::register)
                .patch(cards::update_holder)
                .delete(cards::erase),
        )
        .route(
            "/v1/programs/{program}/holders/{card}/restriction",
            put(cards::restrict),
        )
        .route("/v1/programs/{program}/policy", put(publish::publish))
        .route("/v1/programs/{program}/cards/{card}", get(cards::card))
        .route(
            "/v1/programs/{program}/cards/{card}/allowances",
            get(portal::allowances),
        )
        .route(
            "/v1/programs/{program}/cards/{card}/history",
            get(portal::history),
        )
        .route(
            "/v1/programs/{program}/cards/{card}/access-log",
            get(access_log::access_log),
        )
        .route(
            "/v1/programs/{program}/cards/{card}/export",
            get(cards::export),
        )
        .route("/v1/venue/programs", get(venues::programs))
        .route("/v1/venue/programs/{program}/bundle", get(venues::bundle))
        .route("/v1/venue/programs/{program}/journal", get(venues::journal))
        .route("/v1/venue/programs/{program}/base", get(venues::base))
        .route(
            "/v1/venue/programs/{program}/lease",
            post(venues::lease).delete(venues::end_lease),
        )
        .route("/v1/venue/programs/{program}/upload", post(venues::upload))
        .route("/v1/venue/status", put(venues::status))
        .route("/v1/venues", get(venues::venues))
        .route(
            "/v1/programs/{program}/cards/{card}/history/{seq}/why",
            get(portal::why),
        )
        .route("/v1/openapi.json", get(operations::openapi_json))
        .route("/console", get(crate::console::index))
        .route("/console/", get(crate::console::index))
        .route("/console/{file}", get(crate::console::asset))
        .route("/healthz", get(operations::healthz))
        .route("/readyz", get(operations::readyz))
        .route("/metrics", get(operations::metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
}

/// A request's log span: method, URI and version (never headers, which carry the token),
/// and the caller's token name once it is known.
fn request_span(request: &axum::http::Request<Body>) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %request.uri(),
        version = ?request.version(),
        caller = tracing::field::Empty,
    )
}
