//! Who is calling: the middleware that identifies the caller by its bearer token (401
//! without a known one) and the [`Access`] each handler checks before acting (403 outside
//! its rights).

use std::sync::Arc;

use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{self, Caller, Tokens};
use crate::error::{ApiError, ApiResult};
use crate::server::AppState;

/// Who is calling, as the handlers see it.
#[derive(Clone)]
pub(crate) enum Access {
    /// No `--auth`: everything is allowed.
    Open,
    /// A known token.
    Caller(Arc<Caller>),
}

impl Access {
    /// Applies `rule` to a known caller; outside its rights is a 403 naming what was refused.
    pub(crate) fn check(
        &self,
        rule: impl FnOnce(&Caller) -> Result<(), auth::Refusal>,
    ) -> ApiResult<()> {
        match self {
            Access::Open => Ok(()),
            Access::Caller(caller) => rule(caller).map_err(|refusal| {
                tracing::warn!("refused: {refusal}");
                ApiError::new(StatusCode::FORBIDDEN, refusal.to_string())
            }),
        }
    }
}

impl Access {
    /// The venue host calling, if the caller is one (its token's name).
    pub(crate) fn venue(&self) -> Option<&str> {
        match self {
            Access::Open => None,
            Access::Caller(caller) => caller.venue(),
        }
    }

    /// The caller's token name, as logs, the journal and the access log name it (`-`
    /// without an auth file).
    pub(crate) fn name(&self) -> String {
        self.caller()
            .map_or_else(|| "-".to_string(), |caller| caller.name().to_string())
    }

    /// The known caller, if there is an auth file.
    pub(crate) fn caller(&self) -> Option<&Arc<Caller>> {
        match self {
            Access::Open => None,
            Access::Caller(caller) => Some(caller),
        }
    }

    /// Whether the caller is a guardian (a parent's portal): its changes to a holder are
    /// bound to the attributes the schema marks `guardian = true`.
    pub(crate) fn is_guardian(&self) -> bool {
        match self {
            Access::Open => false,
            Access::Caller(caller) => caller.is_guardian(),
        }
    }
}

/// The routes anyone may call: liveness and readiness (asked by load balancers and
/// orchestrators, which hold no token) and the API's description (the same for every
/// deployment, and needed to write a client before holding a token).
pub const OPEN_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/v1/openapi.json"];

/// Identifies the caller by its bearer token (401 if none or unknown, 400 if more than one
/// `Authorization` header), except on [`OPEN_ROUTES`] and the console's page and files
/// (`/console`, `/console/…`), and hands the handlers its [`Access`].
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: HttpRequest,
    next: Next,
) -> Response {
    // Counted until answered (or its connection gone): a stopping server waits for it.
    let _request = state.requests.enter();
    let access = match &state.tokens {
        None => Access::Open,
        Some(_) if OPEN_ROUTES.contains(&request.uri().path()) => Access::Open,
        // The console's page and files hold no data: its token is typed in the page.
        Some(_) if crate::console::is_console_path(request.uri().path()) => Access::Open,
        Some(tokens) => match identify(tokens, &request) {
            Ok(caller) => {
                tracing::Span::current().record("caller", caller.name());
                Access::Caller(caller)
            }
            Err((status, message)) => {
                let message = format!("`{} {}`: {message}", request.method(), request.uri().path());
                tracing::warn!("refused: {message}");
                let mut response = ApiError::new(status, message).into_response();
                if status == StatusCode::UNAUTHORIZED {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                return response;
            }
        },
    };
    request.extensions_mut().insert(access);
    next.run(request).await
}

/// The caller a request's `Authorization: Bearer <token>` names, or why there is none: a
/// 401, or a 400 for a request that sends the header more than once (which one counts would
/// be a guess, and a proxy in front may pick another than the server).
fn identify(
    tokens: &Tokens,
    request: &HttpRequest,
) -> Result<Arc<Caller>, (StatusCode, &'static str)> {
    const NEEDED: &str = "a bearer token is needed: send `Authorization: Bearer <token>`";
    let unauthorized = |message| (StatusCode::UNAUTHORIZED, message);
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(unauthorized(NEEDED));
    };
    if values.next().is_some() {
        return Err((
            StatusCode::BAD_REQUEST,
            "the `Authorization` header is sent more than once: send one",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| unauthorized("the `Authorization` header is not readable text"))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized(
            "the `Authorization` header must be `Bearer <token>`",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(unauthorized(NEEDED));
    }
    let caller = tokens
        .identify(token)
        .ok_or_else(|| unauthorized("unknown bearer token"))?;
    if caller
        .expired_at(jiff::Timestamp::now().as_second())
        .is_some()
    {
        return Err(unauthorized(
            "the bearer token has expired (its `expires` in the auth file has passed)",
        ));
    }
    Ok(caller)
}
