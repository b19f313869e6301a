//! The routes' handlers, one module per resource of docs/contract.md, and what they share:
//! running host work within the bound on work in flight, and the answers to paths that
//! are no route.

use axum::extract::rejection::PathRejection;
use axum::http::StatusCode;

use crate::error::{ApiError, ApiResult};
use crate::limits;
use crate::server::AppState;

pub(crate) mod access_log;
pub(crate) mod caller;
pub(crate) mod cards;
pub(crate) mod decisions;
pub(crate) mod operations;
pub(crate) mod portal;
pub(crate) mod programs;
pub(crate) mod publish;
pub(crate) mod upstream;
pub(crate) mod venues;

/// A place within the bound on work in flight, if one is free; otherwise a 503 with
/// `Retry-After`, at once.
pub(crate) fn enter(state: &AppState) -> ApiResult<limits::Pass> {
    state.gate.try_enter().ok_or_else(|| {
        state.metrics.overloaded();
        let max = state.gate.max();
        tracing::warn!("busy: {max} requests in flight, the most allowed (`--max-in-flight`)");
        ApiError::busy(
            format!(
                "the server is busy: {max} requests are in flight, the most it takes \
                 (`--max-in-flight`); nothing was done, try again shortly"
            ),
            limits::RETRY_AFTER_SECS,
        )
    })
}

/// Runs blocking host work on the blocking pool, if a place is free within the bound on
/// work in flight ([`enter`]). The place is held until the work returns, even if the
/// caller has gone.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> cardrules::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let pass = enter(state)?;
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

/// A request's path and query, as a venue host forwards it to its city.
pub(crate) fn path_and_query(uri: &axum::http::Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string())
}

/// A path that cannot be read (say, a card number that is not UTF-8) is answered in JSON,
/// as every error is.
pub(crate) fn path_error(rejection: PathRejection) -> ApiError {
    ApiError::new(
        rejection.status(),
        format!("cannot parse the path: {}", rejection.body_text()),
    )
}

/// A known route asked with another method: a 405 naming the methods it takes (from the
/// API's description) in its JSON error and in `Allow`.
pub(crate) async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
    route: Option<axum::extract::MatchedPath>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let methods = route.map_or(&[][..], |route| crate::openapi::methods(route.as_str()));
    let takes = methods
        .iter()
        .map(|m| format!("`{m}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let message = if takes.is_empty() {
        // Every route is described (tests/server/openapi.rs checks it); should one not be,
        // `Allow` from the router still names its methods.
        format!("`{method} {}`: this route takes other methods", uri.path())
    } else {
        format!("`{method} {}`: this route takes {takes} only", uri.path())
    };
    let mut response = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message).into_response();
    if let Ok(allow) = axum::http::HeaderValue::from_str(&methods.join(", ")) {
        response
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow);
    }
    response
}

/// An unknown route: a 404, in JSON as every error is.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}
