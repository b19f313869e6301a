//! Who looked: every read of a holder's personal data (its card, statement, allowances, a
//! statement entry's "why") and every change to it is recorded — the token's name, the
//! route, the time — in an access log kept beside the journal, never in it, before the
//! data is shown; and an admin reads a card's log with
//! `GET /v1/programs/{program}/cards/{card}/access-log`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::{Extension, Json};
use serde::Serialize;

use cardrules::ledger::Access as Entry;

use crate::access::Access;
use crate::auth::Route;
use crate::error::{ApiError, ApiResult, ErrorBody, Refused};
use crate::routes::portal::Params;
use crate::routes::{blocking, path_error};
use crate::server::AppState;

/// The most entries one page of the log carries.
const MAX_LIMIT: usize = 1000;

/// Records that the caller used `route` on `card` of `program`; durable before it
/// returns. A read that cannot be recorded is not answered (503): nothing is shown that
/// the log would not show was seen.
pub(crate) async fn record(
    state: &AppState,
    access: &Access,
    program: &str,
    card: &str,
    route: Route,
) -> ApiResult<()> {
    let (method, path) = route
        .as_str()
        .split_once(' ')
        .unwrap_or(("GET", route.as_str()));
    let entry = Entry {
        id: 0,
        program: program.to_string(),
        card: card.to_string(),
        at: jiff::Timestamp::now().as_second(),
        token: access.name(),
        route: path.to_string(),
        method: method.to_string(),
    };
    let journal = state.host.ledger().journal().clone();
    blocking(state, move || journal.record_access(&[entry]))
        .await
        .map_err(|e| {
            tracing::error!("cannot record a read of card `{card}` in the access log: {e:?}");
            ApiError::busy(
                format!(
                    "cannot record this use of card `{card}` in the access log, so nothing is shown; try again shortly"
                ),
                crate::limits::RETRY_AFTER_SECS,
            )
        })
}

/// One entry as `GET …/access-log` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct EntryView {
    /// When (RFC 3339).
    at: String,
    /// The token's name (`-` on a server without `--auth`).
    token: String,
    route: String,
    method: String,
}

/// A page of a card's access log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AccessLogView {
    entries: Vec<EntryView>,
    /// Pass as `after` for the next page; null on the last.
    next: Option<String>,
}

/// Who read or changed the card's personal data, oldest first, page by page.
#[utoipa::path(get, path = "/v1/programs/{program}/cards/{card}/access-log", tag = "cards",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id"),
           ("card" = String, Path, description = "The card id"),
           ("limit" = Option<u32>, Query, description = "Entries per page, 1 to 1000 (default 100)"),
           ("after" = Option<String>, Query, description = "The `next` of the previous page")),
    responses(
        (status = 200, description = "A page of the card's access log", body = AccessLogView),
        (status = 400, description = "A parameter cannot be used", body = ErrorBody),
        Refused,
        (status = 404, description = "Unknown program", body = ErrorBody),
    ))]
pub(crate) async fn access_log(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Json<AccessLogView>> {
    let UrlPath((program, card)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::AccessLog))?;
    access.check(|c| c.may_act_for_card(&program, &card))?;
    let params = Params::of(query, &["limit", "after"])?;
    let limit = match params.get("limit") {
        None => 100,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("`limit` `{text}` is not in 1..={MAX_LIMIT}"))
            })?,
    };
    let after: u64 = match params.get("after") {
        None => 0,
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::bad_request(format!("`after` `{text}` is not a cursor")))?,
    };
    state.host.program(&program)?;
    let journal = state.host.ledger().journal().clone();
    let (p, c) = (program.clone(), card.clone());
    let mut entries = blocking(&state, move || journal.accesses(&p, &c, after, limit + 1)).await?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next = more
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(AccessLogView {
        entries: entries
            .into_iter()
            .map(|e| EntryView {
                at: jiff::Timestamp::from_second(e.at)
                    .map_or_else(|_| e.at.to_string(), |t| t.to_string()),
                token: e.token,
                route: e.route,
                method: e.method,
            })
            .collect(),
        next,
    }))
}
