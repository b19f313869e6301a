//! The point-of-sale HTTP API (`cardrules serve`, docs/contract.md): the routes over a [`Host`],
//! and the watcher that hot-reloads a program when its files change.
//!
//! Decisions run on tokio's blocking pool (a policy evaluation and a durable SQLite commit
//! are blocking work); the answer is sent only after the commit returned, so an answered
//! decision is on disk. Bad input is a 400 with `{"error": "…"}`, never a 500.
//!
//! With [`auth::Tokens`], every route but `/healthz` needs a bearer token (401 without a
//! known one) and each handler checks the caller's rights before acting (403 outside them);
//! the token's name is recorded on the request's log span.
//!
//! Host work in flight is bounded ([`limits`]): past the bound the answer is a 503 with
//! `Retry-After`, at once. Connections are accepted, timed out and stopped by [`listen`];
//! `/readyz` says whether the server can decide now, `/metrics` what it has done
//! ([`metrics`]), and `/v1/openapi.json` describes every route ([`openapi`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, Request as HttpRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Serialize;
use serde_json::json;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use cardrules::{CardView, Error, Holder, Host, Request};

pub mod auth;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod openapi;

use auth::{Caller, Route, Tokens};
use limits::{Gate, Limits};
use listen::{Connections, Requests, Tls};
use metrics::Metrics;

/// The default limit on a request body.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// How long the watcher waits for a burst of file changes to settle before reloading.
const SETTLE: Duration = Duration::from_millis(300);

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
}

/// What the routes share.
#[derive(Clone)]
struct AppState {
    host: Arc<Host>,
    body_limit: usize,
    /// The known tokens; `None`: every caller may do everything.
    tokens: Option<Arc<Tokens>>,
    /// Candidate versions following the live decisions (`serve --shadow`).
    shadow: Option<Arc<cardrules::shadow::Shadow>>,
    /// The bound on host work in flight.
    gate: Arc<Gate>,
    limits: Limits,
    metrics: Arc<Metrics>,
    requests: Arc<Requests>,
    /// Set once the server is stopping.
    stopping: Arc<AtomicBool>,
}

/// The server's shared parts, made once by [`Server::new`] and used by [`router`] and
/// [`serve`].
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
        ));
        if !host.ledger().observe(metrics.clone()) {
            tracing::warn!("the ledger is already observed: commits are not in `/metrics`");
        }
        Server {
            state: AppState {
                host,
                body_limit: options.body_limit,
                tokens: options.tokens,
                shadow: options.shadow,
                gate,
                limits: options.limits,
                metrics,
                requests: Arc::new(Requests::default()),
                stopping: Arc::new(AtomicBool::new(false)),
            },
            tls: options.tls,
            connections,
        }
    }

    /// The server's metrics (hot reloads are counted by [`watch`]).
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
        let stop = async move {
            shutdown_signal().await;
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
        .route("/v1/decisions", post(decide))
        .route("/v1/programs", get(programs))
        .route("/v1/programs/{program}/holders/{card}", put(register))
        .route("/v1/programs/{program}/cards/{card}", get(card))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
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

/// Who is calling, as the handlers see it.
#[derive(Clone)]
enum Access {
    /// No `--auth`: everything is allowed.
    Open,
    /// A known token.
    Caller(Arc<Caller>),
}

impl Access {
    /// Applies `rule` to a known caller; outside its rights is a 403 naming what was refused.
    fn check(&self, rule: impl FnOnce(&Caller) -> Result<(), auth::Refusal>) -> ApiResult<()> {
        match self {
            Access::Open => Ok(()),
            Access::Caller(caller) => rule(caller).map_err(|refusal| {
                tracing::warn!("refused: {refusal}");
                ApiError::new(StatusCode::FORBIDDEN, refusal.to_string())
            }),
        }
    }
}

/// The routes anyone may call: liveness and readiness (asked by load balancers and
/// orchestrators, which hold no token) and the API's description (the same for every
/// deployment, and needed to write a client before holding a token).
pub const OPEN_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/v1/openapi.json"];

/// Identifies the caller by its bearer token (401 if none or unknown), except on
/// [`OPEN_ROUTES`], and hands the handlers its [`Access`].
async fn authenticate(
    State(state): State<AppState>,
    mut request: HttpRequest,
    next: Next,
) -> Response {
    // Counted until answered (or its connection gone): a stopping server waits for it.
    let _request = state.requests.enter();
    let access = match &state.tokens {
        None => Access::Open,
        Some(_) if OPEN_ROUTES.contains(&request.uri().path()) => Access::Open,
        Some(tokens) => match identify(tokens, &request) {
            Ok(caller) => {
                tracing::Span::current().record("caller", caller.name());
                Access::Caller(caller)
            }
            Err(message) => {
                let message = format!("`{} {}`: {message}", request.method(), request.uri().path());
                tracing::warn!("refused: {message}");
                let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
        },
    };
    request.extensions_mut().insert(access);
    next.run(request).await
}

/// The caller a request's `Authorization: Bearer <token>` names, or why there is none.
fn identify(tokens: &Tokens, request: &HttpRequest) -> Result<Arc<Caller>, &'static str> {
    const NEEDED: &str = "a bearer token is needed: send `Authorization: Bearer <token>`";
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Err(NEEDED);
    };
    let value = value
        .to_str()
        .map_err(|_| "the `Authorization` header is not readable text")?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("the `Authorization` header must be `Bearer <token>`");
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(NEEDED);
    }
    tokens.identify(token).ok_or("unknown bearer token")
}

/// An error answer: a status and `{"error": "…"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds for `Retry-After` (a 503).
    retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 503 asking the caller to come back in `seconds`.
    fn busy(message: impl Into<String>, seconds: u32) -> ApiError {
        ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match &e {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::UnknownProgram(_) => StatusCode::NOT_FOUND,
            Error::IdReused(_) => StatusCode::CONFLICT,
            Error::Load { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Unavailable { .. } => {
                tracing::error!("{e}");
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => {
                tracing::error!("{e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Reads a body of at most `limit` bytes as text, within `timeout` (a sender that stalls
/// half-way is answered 408 rather than holding the connection).
async fn body_text(body: Body, limit: usize, timeout: Duration, what: &str) -> ApiResult<String> {
    let read = tokio::time::timeout(timeout, read_body(body, limit)).await;
    let bytes: Vec<u8> = match read {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "cannot read {what}: the body did not arrive within {} s",
                    timeout.as_secs()
                ),
            ));
        }
        // A 400, not a 413: docs/contract.md fixed it so before 413 was considered.
        Ok(Err(Oversized::Yes)) => {
            return Err(ApiError::bad_request(format!(
                "cannot read {what}: the body is larger than {limit} bytes"
            )));
        }
        Ok(Err(Oversized::Broken(e))) => {
            return Err(ApiError::bad_request(format!("cannot read {what}: {e}")));
        }
        Ok(Ok(bytes)) => bytes,
    };
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request(format!("cannot parse {what}: the body is not UTF-8")))
}

/// How many bytes past the limit are read and thrown away before an oversized body is
/// answered: a client still sending when the answer comes would otherwise have its
/// connection reset and never see the 400 (the answer lost with the unread bytes).
const DRAIN_FACTOR: usize = 8;

enum Oversized {
    Yes,
    Broken(axum::Error),
}

/// Reads at most `limit` bytes of `body`; past that, reads on (discarding, up to
/// `DRAIN_FACTOR` × `limit`) so that the client reads its answer, then refuses it.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, Oversized> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut bytes: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Oversized::Broken)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            bytes.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(DRAIN_FACTOR) {
            return Err(Oversized::Yes);
        }
    }
    if seen > limit {
        return Err(Oversized::Yes);
    }
    Ok(bytes)
}

/// Reads a JSON body of at most `limit` bytes into `T`.
async fn json_body<T: serde::de::DeserializeOwned>(
    body: Body,
    limit: usize,
    timeout: Duration,
    what: &str,
) -> ApiResult<T> {
    let text = body_text(body, limit, timeout, what).await?;
    serde_json::from_str(&text)
        .map_err(|e| ApiError::bad_request(format!("cannot parse {what}: {e}")))
}

/// Runs blocking host work on the blocking pool, if a place is free within the bound on
/// work in flight; otherwise a 503 with `Retry-After`, at once. The place is held until
/// the work returns, even if the caller has gone.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> cardrules::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let Some(pass) = state.gate.try_enter() else {
        state.metrics.overloaded();
        let max = state.gate.max();
        tracing::warn!("busy: {max} requests in flight, the most allowed (`--max-in-flight`)");
        return Err(ApiError::busy(
            format!(
                "the server is busy: {max} requests are in flight, the most it takes \
                 (`--max-in-flight`); nothing was done, try again shortly"
            ),
            limits::RETRY_AFTER_SECS,
        ));
    };
    let work = move || {
        let _pass = pass;
        work()
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => {
            tracing::error!("request task failed: {e}");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request could not be completed; nothing was committed",
            ))
        }
    }
}

/// Decides a request and, unless it is a dry run, commits it; answers once it is durable.
#[utoipa::path(post, path = "/v1/decisions", tag = "decisions",
    security(("bearer" = [])),
    request_body(content = cardrules::Request, description = "The request", content_type = "application/json"),
    responses(
        (status = 200, description = "The decision (allowed or denied), durable unless `dry-run`", body = cardrules::Decision),
        (status = 400, description = "The request cannot be used, or its body is larger than `--body-limit`", body = ErrorBody),
        (status = 401, description = "No known bearer token (with `--auth`)", body = ErrorBody),
        (status = 403, description = "Outside the token's rights: its role, programs or actions", body = ErrorBody),
        (status = 404, description = "Unknown program", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `--idle-timeout`", body = ErrorBody),
        (status = 409, description = "The request id was already used for a different request", body = ErrorBody),
        (status = 503, description = "Busy: `--max-in-flight` requests are in flight (with `Retry-After`), or the ledger is unreachable for now", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
        (status = 500, description = "The host or its ledger failed; nothing was committed", body = ErrorBody),
    ))]
async fn decide(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    body: Body,
) -> ApiResult<Response> {
    access.check(|c| c.may_call(Route::Decide))?;
    // The one parse path of requests, shared with the command and the fuzz targets.
    let text = body_text(body, state.body_limit, state.limits.idle_timeout, "request").await?;
    let request: Request = cardrules::inputs::request(&text)?;
    access.check(|c| c.may_decide(&request.program, &request.action))?;
    let host = state.host.clone();
    let (program, card, action) = (
        request.program.clone(),
        request.card.clone(),
        request.action.clone(),
    );
    let started = Instant::now();
    let decision = blocking(&state, move || {
        let program = host.program(&request.program)?;
        host.decide(&request).map(|decision| (program, decision))
    })
    .await;
    let (served, decision) = decision?;
    state
        .metrics
        .decided(&served, &action, &decision, started.elapsed());
    tracing::info!(
        program,
        card,
        action,
        allow = decision.allow,
        reason = decision.reason,
        replayed = decision.replayed,
        "decision"
    );
    Ok(Json(decision).into_response())
}

/// A path that cannot be read (say, a card number that is not UTF-8) is answered in JSON,
/// as every error is.
fn path_error(rejection: PathRejection) -> ApiError {
    ApiError::new(
        rejection.status(),
        format!("cannot parse the path: {}", rejection.body_text()),
    )
}

/// Registers a holder (a new card: 201), or replaces an existing card's holder (200).
#[utoipa::path(put, path = "/v1/programs/{program}/holders/{card}", tag = "cards",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id"),
           ("card" = String, Path, description = "The card id")),
    request_body(content = cardrules::Holder, description = "The holder; non-zero `balances` need role `admin`", content_type = "application/json"),
    responses(
        (status = 200, description = "The holder of an existing card was replaced", body = cardrules::CardView),
        (status = 201, description = "A new card was registered", body = cardrules::CardView),
        (status = 400, description = "The holder cannot be used, or its body is larger than `--body-limit`", body = ErrorBody),
        (status = 401, description = "No known bearer token (with `--auth`)", body = ErrorBody),
        (status = 403, description = "Outside the token's rights: its role, programs or actions", body = ErrorBody),
        (status = 404, description = "Unknown program", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `--idle-timeout`", body = ErrorBody),
        (status = 503, description = "Busy: `--max-in-flight` requests are in flight (with `Retry-After`), or the ledger is unreachable for now", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
        (status = 500, description = "The host or its ledger failed; nothing was committed", body = ErrorBody),
    ))]
async fn register(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
    body: Body,
) -> ApiResult<Response> {
    let UrlPath((program, card)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Register))?;
    access.check(|c| c.may_act_for(&program))?;
    let mut fields: serde_json::Value =
        json_body(body, state.body_limit, state.limits.idle_timeout, "holder").await?;
    let object = fields
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("cannot parse holder: expected a JSON object"))?;
    match object.get("card") {
        None => {
            object.insert("card".into(), card.clone().into());
        }
        Some(serde_json::Value::String(named)) if *named == card => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "holder names card `{}`, but the path names `{card}`",
                other.as_str().unwrap_or("(not a string)")
            )));
        }
    }
    let holder: Holder = serde_json::from_value(fields)
        .map_err(|e| ApiError::bad_request(format!("cannot parse holder: {e}")))?;
    // Starting balances count only for a new card; whether the card is new is known only
    // inside the commit, so any non-zero balance in the body needs the right to give one.
    access.check(|c| c.may_grant(&holder.balances))?;
    let host = state.host.clone();
    let view = blocking(&state, move || {
        let created = host.register(&program, &holder)?;
        let view = host.card(&program, &holder.card, jiff::Timestamp::now().as_second())?;
        Ok((created, view))
    })
    .await?;
    let status = if view.0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view.1)).into_response())
}

/// A card's state, statuses and balances now.
#[utoipa::path(get, path = "/v1/programs/{program}/cards/{card}", tag = "cards",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id"),
           ("card" = String, Path, description = "The card id")),
    responses(
        (status = 200, description = "The card", body = cardrules::CardView),
        (status = 401, description = "No known bearer token (with `--auth`)", body = ErrorBody),
        (status = 403, description = "Outside the token's rights: its role, programs or actions", body = ErrorBody),
        (status = 404, description = "Unknown program or card", body = ErrorBody),
        (status = 503, description = "Busy: `--max-in-flight` requests are in flight (with `Retry-After`), or the ledger is unreachable for now", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
        (status = 500, description = "The host or its ledger failed; nothing was committed", body = ErrorBody),
    ))]
async fn card(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
) -> ApiResult<Json<CardView>> {
    let UrlPath((program, card)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Card))?;
    access.check(|c| c.may_act_for(&program))?;
    let host = state.host.clone();
    let (p, c) = (program.clone(), card.clone());
    let view = blocking(&state, move || {
        host.card(&p, &c, jiff::Timestamp::now().as_second())
    })
    .await?;
    view.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("card `{card}` is not known to program `{program}`"),
        )
    })
}

/// A program as `GET /v1/programs` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct ProgramView {
    program: String,
    name: String,
    version: String,
    digest: String,
    languages: Vec<String>,
    offers: usize,
    loaded_at: jiff::Timestamp,
}

/// A program whose latest files were refused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RefusedView {
    program: String,
    error: String,
}

/// The answer of `GET /v1/programs`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ProgramsView {
    programs: Vec<ProgramView>,
    refused: Vec<RefusedView>,
    /// With `--shadow`: per program, how often its candidate agreed and differed.
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow: Option<std::collections::BTreeMap<String, cardrules::shadow::Tally>>,
}

/// The programs served, those whose latest files were refused, and (with `--shadow`) how
/// the candidates compare.
#[utoipa::path(get, path = "/v1/programs", tag = "programs",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The programs", body = ProgramsView),
        (status = 401, description = "No known bearer token (with `--auth`)", body = ErrorBody),
        (status = 403, description = "Outside the token's rights: its role, programs or actions", body = ErrorBody),
    ))]
async fn programs(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
) -> ApiResult<Json<ProgramsView>> {
    access.check(|c| c.may_call(Route::Programs))?;
    let programs: Vec<ProgramView> = state
        .host
        .programs()
        .iter()
        .map(|p| {
            let policy = p.policy_ref();
            ProgramView {
                program: policy.program,
                name: p.files.manifest.name.clone(),
                version: policy.version,
                digest: policy.digest,
                languages: p.files.manifest.languages.clone(),
                offers: p.files.catalogue.len(),
                loaded_at: p.loaded_at,
            }
        })
        .collect();
    let refused: Vec<RefusedView> = state
        .host
        .refused()
        .into_iter()
        .map(|(program, error)| RefusedView { program, error })
        .collect();
    let shadow = state.shadow.as_ref().map(|shadow| shadow.tallies());
    Ok(Json(ProgramsView {
        programs,
        refused,
        shadow,
    }))
}

/// The answer of `GET /healthz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// Always `serving`: the process answers.
    status: String,
    /// Programs loaded.
    programs: usize,
}

/// Liveness: the process answers. Whether it can decide is `/readyz`.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process answers", body = Health)))]
async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "serving".to_string(),
        programs: state.host.programs().len(),
    })
}

/// The answer of `GET /readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Readiness {
    /// Whether a decision asked now would be taken.
    ready: bool,
    /// When not ready: why, in one sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// When not ready: every reason.
    reasons: Vec<String>,
    /// Programs loaded.
    programs: usize,
    /// Host work in flight, and the bound on it (`--max-in-flight`).
    in_flight: usize,
    max_in_flight: usize,
    /// How long the oldest work in flight has been running or waiting, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_ms: Option<u64>,
}

/// Readiness: 200 when a decision asked now would be taken; 503 (with why) when no
/// program is loaded, every place for work in flight is taken, work has been waiting
/// longer than the alarm, or the server is stopping.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to decide", body = Readiness),
        (status = 503, description = "Not ready; `error` and `reasons` say why", body = Readiness),
    ))]
async fn readyz(State(state): State<AppState>) -> Response {
    let programs = state.host.programs().len();
    let (in_flight, max_in_flight) = (state.gate.in_flight(), state.gate.max());
    let oldest = state.gate.oldest();
    let mut reasons = Vec::new();
    if state.stopping.load(Ordering::SeqCst) {
        reasons.push("the server is stopping".to_string());
    }
    if programs == 0 {
        reasons.push("no program is loaded".to_string());
    }
    if in_flight >= max_in_flight {
        reasons.push(format!(
            "every place for work in flight is taken ({in_flight} of {max_in_flight}, \
             `--max-in-flight`): new decisions are refused"
        ));
    }
    let alarm = state.limits.queue_alarm;
    if let Some(oldest) = oldest.filter(|oldest| *oldest > alarm) {
        reasons.push(format!(
            "a request has been in flight for {} ms, longer than {} ms: decisions are queueing",
            oldest.as_millis(),
            alarm.as_millis()
        ));
    }
    let ready = reasons.is_empty();
    let body = Readiness {
        ready,
        error: (!ready).then(|| format!("not ready: {}", reasons.join("; "))),
        reasons,
        programs,
        in_flight,
        max_in_flight,
        oldest_ms: oldest.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// What the server has done, in the OpenMetrics text format (Prometheus scrapes it).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every metric; see the README's HTTP API section",
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 401, description = "No known bearer token (with `--auth`)", body = ErrorBody),
        (status = 403, description = "The token's role is not `admin`", body = ErrorBody),
        (status = 500, description = "The metrics could not be written", body = ErrorBody),
    ))]
async fn metrics_text(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
) -> ApiResult<Response> {
    access.check(|c| c.may_call(Route::Metrics))?;
    let text = state.metrics.render().map_err(|e| {
        tracing::error!("cannot write the metrics: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot write the metrics",
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI description of every route", body = serde_json::Value)))]
async fn openapi_json() -> Response {
    match openapi::json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => {
            tracing::error!("cannot write the OpenAPI description: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot write the OpenAPI description",
            )
            .into_response()
        }
    }
}

/// Every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, in lowercase, naming the input in backticks.
    error: String,
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("`{method} {}` is not a route: see the HTTP API", uri.path()),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// Loads (through [`cardrules::loader::update`], so each program passes its own suites) every program
/// under `policies`; returns how many are served. Refusals are logged.
pub fn load_programs(host: &Host, policies: &Path) -> cardrules::Result<usize> {
    let served = cardrules::loader::serve_dir(host, policies)?;
    for program in &served {
        tracing::info!(
            program = program.id(),
            version = program.policy.info.version,
            digest = program.policy.digest,
            "serving"
        );
    }
    Ok(served.len())
}

/// Watches `policies` and hot-reloads each program whose files change (see
/// [`cardrules::loader::update`]), counting each reload in `metrics`. The watch ends when
/// the returned watcher is dropped.
pub fn watch(
    host: Arc<Host>,
    policies: &Path,
    metrics: Arc<Metrics>,
) -> cardrules::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let root = policies
        .canonicalize()
        .map_err(|e| Error::host(format!("cannot watch `{}`", policies.display()), e))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if !event.kind.is_access() => {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("watching policies: {e}"),
        })
        .map_err(|e| Error::host(format!("cannot watch `{}`", root.display()), e))?;
    watcher
        .watch(&root, notify::RecursiveMode::Recursive)
        .map_err(|e| Error::host(format!("cannot watch `{}`", root.display()), e))?;

    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // Let a burst of writes (a copied directory, an editor's save) settle.
            let mut changed = BTreeSet::from([first]);
            loop {
                match tokio::time::timeout(SETTLE, rx.recv()).await {
                    Ok(Some(path)) => {
                        changed.insert(path);
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let dirs: BTreeSet<PathBuf> = changed
                .iter()
                .filter_map(|path| path.strip_prefix(&root).ok())
                .filter_map(|rel| rel.components().next())
                .map(|first| root.join(first))
                .filter(|dir| dir.join("policy.toml").is_file())
                .collect();
            for dir in dirs {
                let host = host.clone();
                let shown = dir.display().to_string();
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let outcome =
                    tokio::task::spawn_blocking(move || cardrules::loader::update(&host, &dir))
                        .await;
                match outcome {
                    Ok(Ok(program)) => {
                        metrics.reloaded(program.id(), true);
                        tracing::info!(
                            program = program.id(),
                            version = program.policy.info.version,
                            digest = program.policy.digest,
                            "reloaded `{shown}`"
                        );
                    }
                    Ok(Err(e)) => {
                        metrics.reloaded(&name, false);
                        tracing::error!("update refused, previous version kept: {e}");
                    }
                    Err(e) => {
                        metrics.reloaded(&name, false);
                        tracing::error!("reload of `{shown}` failed: {e}");
                    }
                }
            }
        }
    });
    Ok(watcher)
}

/// Resolves on SIGTERM or Ctrl-C; requests in flight then finish before the server stops.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Keeps `shadow` following the live journal, a moment behind, on its own thread; logs and
/// carries on when the journal cannot be read.
pub fn follow(shadow: Arc<cardrules::shadow::Shadow>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cardrules-shadow".into())
        .spawn(move || {
            loop {
                if let Err(e) = shadow.follow() {
                    tracing::warn!("shadow: {e}");
                }
                std::thread::sleep(SHADOW_PERIOD);
            }
        })
        .map(drop)
}

/// How often the shadow reads the journal's new decisions.
const SHADOW_PERIOD: Duration = Duration::from_millis(200);
