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

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
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

use auth::{Caller, Route, Tokens};

/// The default limit on a request body.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// How long the watcher waits for a burst of file changes to settle before reloading.
const SETTLE: Duration = Duration::from_millis(300);

/// What the routes share.
#[derive(Clone)]
struct AppState {
    host: Arc<Host>,
    body_limit: usize,
    /// The known tokens; `None`: every caller may do everything.
    tokens: Option<Arc<Tokens>>,
    /// Candidate versions following the live decisions (`serve --shadow`).
    shadow: Option<Arc<cardrules::shadow::Shadow>>,
}

/// The routes of docs/contract.md over `host`, with request logs; bodies larger than
/// `body_limit` bytes are refused with a 400. With `tokens`, callers need a known bearer
/// token and act within its rights; without, every caller may do everything.
pub fn router(
    host: Arc<Host>,
    body_limit: usize,
    tokens: Option<Arc<Tokens>>,
    shadow: Option<Arc<cardrules::shadow::Shadow>>,
) -> Router {
    let state = AppState {
        host,
        body_limit,
        tokens,
        shadow,
    };
    Router::new()
        .route("/v1/decisions", post(decide))
        .route("/v1/programs", get(programs))
        .route("/v1/programs/{program}/holders/{card}", put(register))
        .route("/v1/programs/{program}/cards/{card}", get(card))
        .route("/healthz", get(healthz))
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

/// Identifies the caller by its bearer token (401 if none or unknown), except on
/// `/healthz`, and hands the handlers its [`Access`].
async fn authenticate(
    State(state): State<AppState>,
    mut request: HttpRequest,
    next: Next,
) -> Response {
    let access = match &state.tokens {
        None => Access::Open,
        Some(_) if request.uri().path() == "/healthz" => Access::Open,
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
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
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
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Reads a body of at most `limit` bytes as text.
async fn body_text(body: Body, limit: usize, what: &str) -> ApiResult<String> {
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::bad_request(format!(
                "cannot read {what}: the body is larger than {limit} bytes"
            ))
        } else {
            ApiError::bad_request(format!("cannot read {what}: {e}"))
        }
    })?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::bad_request(format!("cannot parse {what}: the body is not UTF-8")))
}

/// Reads a JSON body of at most `limit` bytes into `T`.
async fn json_body<T: serde::de::DeserializeOwned>(
    body: Body,
    limit: usize,
    what: &str,
) -> ApiResult<T> {
    let text = body_text(body, limit, what).await?;
    serde_json::from_str(&text)
        .map_err(|e| ApiError::bad_request(format!("cannot parse {what}: {e}")))
}

/// Runs blocking host work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> cardrules::Result<T> + Send + 'static,
) -> ApiResult<T> {
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

async fn decide(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    body: Body,
) -> ApiResult<Response> {
    access.check(|c| c.may_call(Route::Decide))?;
    // The one parse path of requests, shared with the command and the fuzz targets.
    let text = body_text(body, state.body_limit, "request").await?;
    let request: Request = cardrules::inputs::request(&text)?;
    access.check(|c| c.may_decide(&request.program, &request.action))?;
    let host = state.host.clone();
    let (program, card, action) = (
        request.program.clone(),
        request.card.clone(),
        request.action.clone(),
    );
    let decision = blocking(move || host.decide(&request)).await?;
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

async fn register(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
    body: Body,
) -> ApiResult<Response> {
    let UrlPath((program, card)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Register))?;
    access.check(|c| c.may_act_for(&program))?;
    let mut fields: serde_json::Value = json_body(body, state.body_limit, "holder").await?;
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
    let view = blocking(move || {
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
    let view = blocking(move || host.card(&p, &c, jiff::Timestamp::now().as_second())).await?;
    view.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("card `{card}` is not known to program `{program}`"),
        )
    })
}

/// A program as `GET /v1/programs` lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct ProgramView {
    program: String,
    name: String,
    version: String,
    digest: String,
    languages: Vec<String>,
    offers: usize,
    loaded_at: jiff::Timestamp,
}

/// A program whose latest files were refused.
#[derive(Debug, Serialize)]
struct RefusedView {
    program: String,
    error: String,
}

/// The answer of `GET /v1/programs`.
#[derive(Debug, Serialize)]
struct ProgramsView {
    programs: Vec<ProgramView>,
    refused: Vec<RefusedView>,
    /// With `--shadow`: per program, how often its candidate agreed and differed.
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow: Option<std::collections::BTreeMap<String, cardrules::shadow::Tally>>,
}

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

async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "status": "serving", "programs": state.host.programs().len() }))
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
/// [`cardrules::loader::update`]). The watch ends when the returned watcher is dropped.
pub fn watch(host: Arc<Host>, policies: &Path) -> cardrules::Result<notify::RecommendedWatcher> {
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
                let outcome =
                    tokio::task::spawn_blocking(move || cardrules::loader::update(&host, &dir))
                        .await;
                match outcome {
                    Ok(Ok(program)) => tracing::info!(
                        program = program.id(),
                        version = program.policy.info.version,
                        digest = program.policy.digest,
                        "reloaded `{shown}`"
                    ),
                    Ok(Err(e)) => tracing::error!("update refused, previous version kept: {e}"),
                    Err(e) => tracing::error!("reload of `{shown}` failed: {e}"),
                }
            }
        }
    });
    Ok(watcher)
}

/// Serves the API on `listener` until SIGTERM or Ctrl-C; requests in flight then finish.
/// With `tokens`, callers need a known bearer token (see [`router`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    host: Arc<Host>,
    body_limit: usize,
    tokens: Option<Arc<Tokens>>,
    shadow: Option<Arc<cardrules::shadow::Shadow>>,
) -> std::io::Result<()> {
    axum::serve(listener, router(host, body_limit, tokens, shadow))
        .with_graceful_shutdown(shutdown_signal())
        .await
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
