//! What operators and tools ask: liveness (`/healthz`), readiness (`/readyz`), the metrics
//! (`/metrics`) and the API's description (`/v1/openapi.json`).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

use crate::access::Access;
use crate::auth::Route;
use crate::error::{ApiError, ApiResult, ErrorBody, Refused};
use crate::openapi;
use crate::server::AppState;

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
pub(crate) async fn healthz(State(state): State<AppState>) -> Json<Health> {
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
/// program is loaded, a program's state cannot be caught up with its journal (it decides
/// nothing then), every place for work in flight is taken, work has been waiting longer
/// than the alarm, or the server is stopping.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to decide", body = Readiness),
        (status = 503, description = "Not ready; `error` and `reasons` say why", body = Readiness),
    ))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
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
    // Outside the bound on work in flight: readiness is asked when the server is full too.
    let ledger = state.host.clone();
    match tokio::task::spawn_blocking(move || ledger.ledger().cannot_decide()).await {
        Ok(failed) => reasons.extend(
            failed
                .into_iter()
                .map(|(program, why)| format!("program `{program}` cannot decide: {why}")),
        ),
        Err(e) => reasons.push(format!("cannot tell whether every program can decide: {e}")),
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
    if let Some(city) = &state.upstream
        && let Some(why) = city.unreachable()
    {
        reasons.push(format!(
            "the city host `{}` cannot be reached ({why}): decisions are answered 503",
            city.describe()
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
        Refused,
        (status = 500, description = "The metrics could not be written", body = ErrorBody),
    ))]
pub(crate) async fn metrics_text(
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
pub(crate) async fn openapi_json() -> Response {
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
