//! `POST /v1/decisions`: decide a request and, unless it is a dry run, commit it.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use cardrules::{Reporter, Request};

use crate::access::Access;
use crate::auth::Route;
use crate::body::body_text;
use crate::error::{ApiResult, BadBody, ErrorBody, HostFailed, Refused};
use crate::routes::{blocking, upstream};
use crate::server::AppState;

/// Decides a request and, unless it is a dry run, commits it; answers once it is durable.
#[utoipa::path(post, path = "/v1/decisions", tag = "decisions",
    security(("bearer" = [])),
    request_body(content = cardrules::Request, description = "The request", content_type = "application/json"),
    responses(
        (status = 200, description = "The decision (allowed or denied), durable unless `dry-run`", body = cardrules::Decision),
        BadBody,
        Refused,
        (status = 404, description = "Unknown program", body = ErrorBody),
        (status = 409, description = "The request id was already used for a different request", body = ErrorBody),
        HostFailed,
    ))]
pub(crate) async fn decide(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    body: Body,
) -> ApiResult<Response> {
    access.check(|c| c.may_call(Route::Decide))?;
    // The one parse path of requests, shared with the command and the fuzz targets.
    let text = body_text(body, state.body_limit, state.limits.idle_timeout, "request").await?;
    let mut request: Request = cardrules::inputs::request(&text)?;
    // The acting card is the caller's to act for (a guardian's own cards); a transfer's
    // `to-card` is not.
    access.check(|c| c.may_decide(&request.program, &request.card, &request.action))?;
    if let Some(upstream) = &state.upstream {
        // A venue host: the city decides, so that its journal stays the one truth.
        return upstream::forward_decision(&state, upstream.clone(), &request, text).await;
    }
    if let Some(venue) = access.venue() {
        // A venue decides for the offers at its locations only (or for requests that
        // name no offer: a top-up at its desk).
        if let Some(offer) = &request.offer
            && let Some(location) = state.host.program(&request.program).ok().and_then(|p| {
                p.files
                    .catalogue
                    .get(offer)
                    .map(|offer| offer.location.clone())
            })
        {
            access.check(|c| c.may_decide_at(offer, &location))?;
        }
        request.venue = Some(venue.to_string());
    }
    let host = state.host.clone();
    let (program, card, action) = (
        request.program.clone(),
        request.card.clone(),
        request.action.clone(),
    );
    let started = Instant::now();
    // The version that decided is the one metrics and the log name, even if a reload
    // serves another by now.
    // A guardian (a parent's portal) asks now; every other caller reports what a till or
    // a desk saw, perhaps late.
    let reporter = match access.is_guardian() {
        true => Reporter::Person,
        false => Reporter::Till,
    };
    let bound = state.bound_times;
    let through_venue = access.venue().is_some();
    let decision = blocking(&state, move || {
        let decided = match bound {
            true => host.decide_as(&request, reporter),
            false => host.decide_by(&request),
        }?;
        let position = through_venue.then(|| host.ledger().position(&request.program));
        Ok((decided, position))
    })
    .await;
    let ((served, decision), position) = decision?;
    state
        .metrics
        .decided(&served, &action, &decision, started.elapsed());
    tracing::info!(
        program,
        card,
        action,
        version = served.policy.info.version,
        allow = decision.allow,
        reason = decision.reason,
        fault = decision.fault.map(|kind| kind.as_str()),
        replayed = decision.replayed,
        "decision"
    );
    let mut response = Json(decision).into_response();
    if let Some(position) = position {
        // A venue learns when its copy of the journal holds this decision.
        response.headers_mut().insert(
            "cardrules-position",
            axum::http::HeaderValue::from(position),
        );
    }
    Ok(response)
}
