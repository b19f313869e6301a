//! At a venue host, the routes a till calls are answered by the city host: decisions,
//! cards, allowances and statements are forwarded with the venue's token, and the city's
//! answer — status and body — is passed back as it is, so that the city's journal stays
//! the one truth and the answer is exactly the city's. The till's own token was checked
//! here first, against the venue's auth file. A city that cannot be reached is a 503:
//! nothing was decided.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use cardrules::Request;

use crate::error::{ApiError, ApiResult};
use crate::limits;
use crate::server::AppState;
use crate::upstream::{Answer, Upstream};

/// Forwards a decision the till asked for, once its program is known to be served here.
pub(crate) async fn forward_decision(
    state: &AppState,
    upstream: Arc<dyn Upstream>,
    request: &Request,
    text: String,
) -> ApiResult<Response> {
    // A program this venue does not serve is unknown here, as it would be at any host.
    state.host.program(&request.program)?;
    let Some(alone) = state.alone.clone() else {
        return forward(
            state,
            upstream,
            "POST",
            "/v1/decisions".to_string(),
            Some(text),
        )
        .await
        .map(|(response, _)| response);
    };
    if alone.offline() && !request.dry_run {
        // Cut off (or bringing back what it decided alone): decided here, under its lease.
        let (deciding, asked) = (alone.clone(), request.clone());
        let decided = crate::routes::blocking(state, move || deciding.decide(&asked)).await?;
        if let Some(decided) = decided {
            return Ok(axum::Json(decided).into_response());
        }
    }
    alone.sending(request);
    match forward(
        state,
        upstream,
        "POST",
        "/v1/decisions".to_string(),
        Some(text),
    )
    .await
    {
        Ok((response, position)) => {
            alone.answered(request, position);
            Ok(response)
        }
        Err(e) => {
            if let Some(why) = state.upstream.as_ref().and_then(|u| u.unreachable()) {
                alone.lost(&why);
            }
            Err(e)
        }
    }
}

/// Forwards `method path_and_query` (with `body`) to the city host and answers what it
/// answered.
pub(crate) async fn forward(
    state: &AppState,
    upstream: Arc<dyn Upstream>,
    method: &'static str,
    path_and_query: String,
    body: Option<String>,
) -> ApiResult<(Response, Option<u64>)> {
    let pass = crate::routes::enter(state)?;
    let city = upstream.describe();
    let sent = tokio::task::spawn_blocking(move || {
        let _pass = pass;
        upstream.send(method, &path_and_query, body.as_deref())
    })
    .await
    .map_err(|e| {
        tracing::error!("forwarding task failed: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request could not be forwarded to the city host; nothing was committed",
        )
    })?;
    match sent {
        Ok(Answer {
            status,
            body,
            position,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok((response, position))
        }
        Err(why) => {
            tracing::warn!("cannot reach the city host `{city}`: {}", why.0);
            Err(ApiError::busy(
                format!(
                    "cannot reach the city host `{city}`: {}; nothing was decided or read \
                     (a venue host answers through its city), try again shortly",
                    why.0
                ),
                limits::RETRY_AFTER_SECS,
            ))
        }
    }
}

/// A route a venue host does not serve: holders are registered and changed, and
/// programs published, at the city host.
pub(crate) fn at_the_city(state: &AppState, what: &str) -> ApiError {
    let city = state
        .upstream
        .as_ref()
        .map_or_else(String::new, |u| u.describe());
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!("a venue host does not {what}: do it at the city host `{city}`"),
    )
}
