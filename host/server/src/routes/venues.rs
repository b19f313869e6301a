//! A city host's routes for its venue hosts (docs/venues.md): the programs it rolls out
//! (`GET /v1/venue/programs`, long-polled with `If-None-Match`), each version's files
//! (`…/{program}/bundle`), each program's journal (`…/{program}/journal`), the venue's
//! report (`PUT /v1/venue/status`), and for admins the venues (`GET /v1/venues`).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::access::Access;
use crate::auth::Route;
use crate::body::json_body;
use crate::error::{ApiError, ApiResult, BadBody, ErrorBody, Refused};
use crate::routes::portal::Params;
use crate::routes::{blocking, path_error};
use crate::server::AppState;
use crate::upstream::{BundleBody, JournalEvent, JournalPage, RolledOut, Rollout, VenueReport};
use crate::venues::VenueStatus;

/// The longest a long poll waits for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting long poll looks again.
const LOOK_EVERY: Duration = Duration::from_millis(200);
/// The most journal events one page carries.
pub const MAX_PAGE: usize = 10_000;

/// `?wait=SECONDS`, 0 to 60.
fn wait_of(params: &Params) -> ApiResult<Duration> {
    let Some(text) = params.get("wait") else {
        return Ok(Duration::ZERO);
    };
    let seconds: u64 = text
        .parse()
        .ok()
        .filter(|s| Duration::from_secs(*s) <= MAX_WAIT)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "`wait` `{text}` is not a whole number of seconds from 0 to {}",
                MAX_WAIT.as_secs()
            ))
        })?;
    Ok(Duration::from_secs(seconds))
}

/// Notes that a venue called (its last contact), off the async threads.
async fn seen(state: &AppState, access: &Access) {
    if let Some(venue) = access.venue() {
        let (venues, venue) = (state.venues.clone(), venue.to_string());
        let _ = tokio::task::spawn_blocking(move || venues.contact(&venue)).await;
    }
}

/// The programs the caller is rolled out: those served here that it may act for.
fn rollout(state: &AppState, access: &Access) -> Rollout {
    let programs = state
        .host
        .programs()
        .into_iter()
        .filter(|program| {
            access
                .caller()
                .is_none_or(|caller| caller.may_act_for(program.id()).is_ok())
        })
        .map(|program| RolledOut {
            program: program.id().to_string(),
            version: program.policy.info.version.clone(),
            digest: program.policy.digest.clone(),
            bundle: program.sources.digest.clone(),
        })
        .collect();
    Rollout { programs }
}

/// The entity tag of a rollout: a digest of every program and bundle it names.
fn etag_of(rollout: &Rollout) -> String {
    let mut hash = Sha256::new();
    for program in &rollout.programs {
        hash.update(program.program.as_bytes());
        hash.update([0]);
        hash.update(program.bundle.as_bytes());
        hash.update([0]);
    }
    format!("\"{:x}\"", hash.finalize())
}

/// Whether `If-None-Match` names `etag`.
fn matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*")
}

/// The programs this city rolls out to the calling venue: each one's version, component
/// digest and bundle digest. With `If-None-Match` naming the current `ETag` and
/// `?wait=SECONDS`, answers only once something changed (or 304 when the wait is over).
#[utoipa::path(get, path = "/v1/venue/programs", tag = "venues",
    security(("bearer" = [])),
    params(("wait" = Option<u32>, Query, description = "With `If-None-Match`: wait up to this many seconds (0 to 60) for a change")),
    responses(
        (status = 200, description = "The programs rolled out to the caller, with an `ETag`", body = Rollout),
        (status = 304, description = "Nothing changed (the `If-None-Match` tag is current)"),
        BadBody,
        Refused,
    ))]
pub(crate) async fn programs(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    access.check(|c| c.may_call(Route::Rollout))?;
    let params = Params::of(query, &["wait"])?;
    let wait = wait_of(&params)?;
    seen(&state, &access).await;
    let until = Instant::now() + wait;
    loop {
        let current = rollout(&state, &access);
        let etag = etag_of(&current);
        if !matches(&headers, &etag) {
            let mut response = Json(current).into_response();
            if let Ok(value) = HeaderValue::from_str(&etag) {
                response.headers_mut().insert(header::ETAG, value);
            }
            return Ok(response);
        }
        if Instant::now() >= until || state.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(value) = HeaderValue::from_str(&etag) {
                response.headers_mut().insert(header::ETAG, value);
            }
            return Ok(response);
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// The files of the version of `program` served now, as `cardrules publish` sends them,
/// with the version's digests: what a venue verifies (against its own trust file), tests
/// (its suites) and only then serves.
#[utoipa::path(get, path = "/v1/venue/programs/{program}/bundle", tag = "venues",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id")),
    responses(
        (status = 200, description = "The version's files, with an `ETag` (its bundle digest)", body = BundleBody),
        (status = 304, description = "The `If-None-Match` tag is this version's"),
        Refused,
        (status = 404, description = "Unknown program", body = ErrorBody),
    ))]
pub(crate) async fn bundle(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let UrlPath(program) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Rollout))?;
    access.check(|c| c.may_act_for(&program))?;
    seen(&state, &access).await;
    let served = state.host.program(&program)?;
    let etag = format!("\"{}\"", served.sources.digest);
    if matches(&headers, &etag) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let body = BundleBody {
        program: served.id().to_string(),
        version: served.policy.info.version.clone(),
        digest: served.policy.digest.clone(),
        bundle: served.sources.digest.clone(),
        files: served
            .sources
            .files
            .iter()
            .map(|(path, bytes)| (path.clone(), encode(bytes)))
            .collect(),
    };
    let mut response = Json(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

/// The events of `program`'s journal after position `after` (at most `limit`, up to
/// 10 000): how a venue follows the city's journal for the programs it serves. With
/// `?wait=SECONDS`, waits up to that long for an event when there is none yet.
#[utoipa::path(get, path = "/v1/venue/programs/{program}/journal", tag = "venues",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id"),
           ("after" = Option<u64>, Query, description = "Only events after this position (default 0)"),
           ("limit" = Option<u32>, Query, description = "At most this many events, 1 to 10000 (default 1000)"),
           ("wait" = Option<u32>, Query, description = "Wait up to this many seconds (0 to 60) for an event")),
    responses(
        (status = 200, description = "The events, oldest first", body = JournalPage),
        BadBody,
        Refused,
        (status = 404, description = "Unknown program", body = ErrorBody),
    ))]
pub(crate) async fn journal(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Json<JournalPage>> {
    let UrlPath(program) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Rollout))?;
    access.check(|c| c.may_act_for(&program))?;
    let params = Params::of(query, &["after", "limit", "wait"])?;
    let after: u64 = match params.get("after") {
        None => 0,
        Some(text) => text.parse().map_err(|_| {
            ApiError::bad_request(format!("`after` `{text}` is not a journal position"))
        })?,
    };
    let limit: usize = match params.get("limit") {
        None => 1000,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("`limit` `{text}` is not in 1..={MAX_PAGE}"))
            })?,
    };
    let wait = wait_of(&params)?;
    // Only a program served here has a journal to follow.
    state.host.program(&program)?;
    seen(&state, &access).await;
    let until = Instant::now() + wait;
    loop {
        let journal = state.host.ledger().journal().clone();
        let p = program.clone();
        let events = blocking(&state, move || journal.read_page(&p, after, limit)).await?;
        let done = !events.is_empty()
            || Instant::now() >= until
            || state.stopping.load(std::sync::atomic::Ordering::Relaxed);
        if done {
            return Ok(Json(JournalPage {
                program,
                events: events
                    .into_iter()
                    .map(|event| JournalEvent {
                        seq: event.seq,
                        change: event.change,
                    })
                    .collect(),
            }));
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// A venue host reports what it serves, what it refused and how far it follows each
/// journal; `GET /v1/venues` shows it.
#[utoipa::path(put, path = "/v1/venue/status", tag = "venues",
    security(("bearer" = [])),
    request_body(content = VenueReport, description = "The venue's report", content_type = "application/json"),
    responses(
        (status = 204, description = "Taken"),
        BadBody,
        Refused,
    ))]
pub(crate) async fn status(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    body: Body,
) -> ApiResult<StatusCode> {
    access.check(|c| c.may_call(Route::VenueStatus))?;
    let Some(venue) = access.venue().map(str::to_string) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "only a venue's token (role `venue`) reports a venue's status",
        ));
    };
    let report: VenueReport = json_body(
        body,
        state.body_limit,
        state.limits.idle_timeout,
        "venue report",
    )
    .await?;
    let venues = state.venues.clone();
    blocking(&state, move || {
        venues.report(&venue, report);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The answer of `GET /v1/venues`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VenuesView {
    venues: Vec<VenueStatus>,
}

/// Every venue host this city knows: when it last called, what it serves and refused,
/// how far it follows each journal.
#[utoipa::path(get, path = "/v1/venues", tag = "venues",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The venues", body = VenuesView),
        Refused,
    ))]
pub(crate) async fn venues(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
) -> ApiResult<Json<VenuesView>> {
    access.check(|c| c.may_call(Route::Venues))?;
    let mut venues = state.venues.list();
    // What each venue holds, from this city's own ledger (journaled leases).
    let host = state.host.clone();
    let leases = blocking(&state, move || {
        let mut leases: Vec<(String, serde_json::Value)> = Vec::new();
        for program in host.programs() {
            let tenures = host.ledger().read(program.id(), |s| (**s.tenures()).clone())?;
            for (venue, tenure) in tenures {
                if let Some(lease) = &tenure.lease {
                    let escrowed: i64 = lease.escrow.values().sum();
                    let spent: i64 = tenure.spent.values().sum();
                    leases.push((
                        venue,
                        serde_json::json!({
                            "program": program.id(),
                            "granted": cardrules::timing::instant_text(lease.granted),
                            "expires": cardrules::timing::instant_text(lease.expires),
                            "recalled": tenure.recalled,
                            "counters": lease.counters,
                            "cards": lease.cards.as_ref().map_or(serde_json::json!("all"), |c| serde_json::json!(c.len())),
                            "asset": lease.asset,
                            "escrowed": escrowed,
                            "spent": spent,
                        }),
                    ));
                }
            }
        }
        Ok(leases)
    })
    .await?;
    for status in &mut venues {
        status.leases = leases
            .iter()
            .filter(|(venue, _)| *venue == status.venue)
            .map(|(_, lease)| lease.clone())
            .collect();
    }
    Ok(Json(VenuesView { venues }))
}

/// The base snapshot of `program`'s journal, when the city's retention removed its first
/// events: a venue that joins (or fell behind) starts from it and the events after it. 404
/// when the journal still begins at its first event (follow it from there).
#[utoipa::path(get, path = "/v1/venue/programs/{program}/base", tag = "venues",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id")),
    responses(
        (status = 200, description = "The base snapshot, bound to the journal's first event", body = crate::upstream::BaseBody),
        Refused,
        (status = 404, description = "Unknown program, or a journal that was not compacted", body = ErrorBody),
    ))]
pub(crate) async fn base(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<String>, PathRejection>,
) -> ApiResult<Json<crate::upstream::BaseBody>> {
    use base64::Engine as _;
    let UrlPath(program) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Rollout))?;
    access.check(|c| c.may_act_for(&program))?;
    state.host.program(&program)?;
    seen(&state, &access).await;
    let journal = state.host.ledger().journal().clone();
    let p = program.clone();
    let found = blocking(&state, move || {
        cardrules::ledger::snapshot::base_snapshot(journal.as_ref(), &p)
    })
    .await?;
    let not_compacted = || {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("the journal of `{program}` begins at its first event: follow it from there"),
        )
    };
    match found {
        None => Err(not_compacted()),
        Some((None, first)) => Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the journal of `{program}` begins at event {first}, and no base snapshot of it is left"
            ),
        )),
        Some((Some(snapshot), _)) => Ok(Json(crate::upstream::BaseBody {
            program: snapshot.program.clone(),
            seq: snapshot.seq,
            format: snapshot.format,
            checksum: snapshot.checksum.clone(),
            written: snapshot.written,
            body: base64::engine::general_purpose::STANDARD.encode(&snapshot.body),
        })),
    }
}

/// For the lease routes: the program of the path, checked against the caller's rights,
/// and the calling venue's name (a 403 for any other caller: a lease is a venue's).
async fn leasing(
    state: &AppState,
    access: &Access,
    path: Result<UrlPath<String>, PathRejection>,
) -> ApiResult<(String, String)> {
    let UrlPath(program) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Lease))?;
    access.check(|c| c.may_act_for(&program))?;
    let venue = access.venue().map(str::to_string).ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "only a venue host's token takes, hands back or uploads under a lease",
        )
    })?;
    seen(state, access).await;
    Ok((program, venue))
}

/// Lends the calling venue what `program` lets it decide alone while it cannot reach
/// this city (docs/offline.md), for its token's locations, replacing the lease it held.
/// The venue uploads what it decided alone under its old lease first.
#[utoipa::path(post, path = "/v1/venue/programs/{program}/lease", tag = "venues",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id")),
    responses(
        (status = 200, description = "The lease (none if the program lends nothing) and the position recording it", body = crate::upstream::LeaseBody),
        Refused,
        (status = 404, description = "Unknown program", body = ErrorBody),
        (status = 409, description = "The venue holds decisions it made alone that were not uploaded", body = ErrorBody),
    ))]
pub(crate) async fn lease(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<String>, PathRejection>,
) -> ApiResult<Json<crate::upstream::LeaseBody>> {
    let (program, venue) = leasing(&state, &access, path).await?;
    let locations = access.caller().map(|c| c.locations()).unwrap_or_default();
    let host = state.host.clone();
    let p = program.clone();
    let name = venue.clone();
    let (lease, position) = blocking(&state, move || {
        let lease = host.lease(&p, &venue, &locations)?;
        Ok((lease, host.ledger().position(&p)))
    })
    .await?;
    Ok(Json(crate::upstream::LeaseBody {
        program,
        venue: name,
        lease,
        position,
    }))
}

/// The calling venue hands its lease of `program` back: what it held is the city's
/// again. It uploads what it decided alone first.
#[utoipa::path(delete, path = "/v1/venue/programs/{program}/lease", tag = "venues",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id")),
    responses(
        (status = 200, description = "No lease held any more, and the position recording it", body = crate::upstream::LeaseBody),
        Refused,
        (status = 404, description = "Unknown program", body = ErrorBody),
    ))]
pub(crate) async fn end_lease(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<String>, PathRejection>,
) -> ApiResult<Json<crate::upstream::LeaseBody>> {
    let (program, venue) = leasing(&state, &access, path).await?;
    let host = state.host.clone();
    let p = program.clone();
    let name = venue.clone();
    let position = blocking(&state, move || {
        host.end_lease(&p, &venue, &venue)?;
        Ok(host.ledger().position(&p))
    })
    .await?;
    Ok(Json(crate::upstream::LeaseBody {
        program,
        venue: name,
        lease: None,
        position,
    }))
}

/// Takes in what the calling venue decided alone, or kept, while it could not reach
/// this city: verified against its lease and appended in its order, each request once
/// (a retried or duplicated upload appends nothing twice). Refused whole (409) when
/// anything in it is not what the policy decides on the venue's lease.
#[utoipa::path(post, path = "/v1/venue/programs/{program}/upload", tag = "venues",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id")),
    request_body(content = crate::upstream::UploadBody, description = "The requests, in the venue's order", content_type = "application/json"),
    responses(
        (status = 200, description = "What was appended and decided", body = crate::upstream::UploadedBody),
        BadBody,
        Refused,
        (status = 404, description = "Unknown program", body = ErrorBody),
        (status = 409, description = "The upload is refused whole: nothing was appended", body = ErrorBody),
    ))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<String>, PathRejection>,
    body: Body,
) -> ApiResult<Json<crate::upstream::UploadedBody>> {
    let (program, venue) = leasing(&state, &access, path).await?;
    let sent: crate::upstream::UploadBody =
        json_body(body, state.body_limit, state.limits.idle_timeout, "upload").await?;
    let host = state.host.clone();
    let p = program.clone();
    let (done, position) = blocking(&state, move || {
        let (done, _) = host.upload(&p, &venue, sent.items)?;
        Ok((done, host.ledger().position(&p)))
    })
    .await?;
    Ok(Json(crate::upstream::UploadedBody {
        appended: done.appended,
        decided: done.decided,
        already: done.already,
        position,
    }))
}
