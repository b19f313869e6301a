//! What a holder's app or a parents' portal reads of a card: `GET …/cards/{card}/allowances`
//! (what the card may still do, asked of the program's own policy) and
//! `GET …/cards/{card}/history` (its statement, page by page). Both commit nothing.

use std::time::Instant;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use cardrules::allowance::AllowanceQuery;
use cardrules::history::HistoryPage;
use cardrules::parse_instant;

use crate::access::Access;
use crate::auth::Route;
use crate::error::{ApiError, ApiResult, ErrorBody, HostFailed, Refused};
use crate::metrics::CardRead;
use crate::routes::{access_log, blocking, path_and_query, path_error, upstream};
use crate::server::AppState;

/// A route's query parameters by name, each given at most once and each one the route
/// knows: a misspelt parameter is refused rather than silently ignored.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn of(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        known: &[&str],
    ) -> ApiResult<Params> {
        let Query(pairs) = query.map_err(|rejection| {
            ApiError::bad_request(format!(
                "cannot parse the query string: {}",
                rejection.body_text()
            ))
        })?;
        for (index, (name, _)) in pairs.iter().enumerate() {
            if !known.contains(&name.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter `{name}`: expected {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if pairs[..index].iter().any(|(earlier, _)| earlier == name) {
                return Err(ApiError::bad_request(format!(
                    "parameter `{name}` is given more than once"
                )));
            }
        }
        Ok(Params(pairs))
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

pub(crate) fn unknown_card(program: &str, card: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("card `{card}` is not known to program `{program}`"),
    )
}

/// What a card may still do: for each offer and each action the program's allowances ask
/// about, the answer of the program's own policy to a request at `at`, and its counting
/// rules with what remains. Nothing is committed or journaled.
#[utoipa::path(get, path = "/v1/programs/{program}/cards/{card}/allowances", tag = "cards",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id"),
           ("card" = String, Path, description = "The card id"),
           ("at" = Option<String>, Query, description = "RFC 3339 time with an offset (default: now)"),
           ("action" = Option<String>, Query, description = "Only this action"),
           ("offer" = Option<String>, Query, description = "Only this offer (actions asked for the card are left out)"),
           ("language" = Option<String>, Query, description = "The language of the messages (default: the program's first)")),
    responses(
        (status = 200, description = "The card's allowances", body = cardrules::allowance::Allowances),
        (status = 400, description = "A parameter cannot be used: a bad `at`, an action the allowances do not ask about, an offer not in the catalogue, a language without messages, an unknown parameter", body = ErrorBody),
        Refused,
        (status = 404, description = "Unknown program or card", body = ErrorBody),
        HostFailed,
    ))]
pub(crate) async fn allowances(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    uri: Uri,
) -> ApiResult<Response> {
    let UrlPath((program, card)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Allowances))?;
    access.check(|c| c.may_act_for_card(&program, &card))?;
    if let Some(city) = &state.upstream {
        return upstream::forward(&state, city.clone(), "GET", path_and_query(&uri), None)
            .await
            .map(|(response, _)| response);
    }
    let params = Params::of(query, &["at", "action", "offer", "language"])?;
    let at = params
        .get("at")
        .map(|text| parse_instant(text).map_err(|e| ApiError::bad_request(format!("`at`: {e}"))))
        .transpose()?;
    let asked = AllowanceQuery {
        at,
        action: params.get("action").map(str::to_string),
        offer: params.get("offer").map(str::to_string),
        language: params.get("language").map(str::to_string),
    };
    let host = state.host.clone();
    let started = Instant::now();
    let (p, c) = (program.clone(), card.clone());
    let answer = blocking(&state, move || host.allowances(&p, &c, &asked)).await?;
    let allowances = answer.ok_or_else(|| unknown_card(&program, &card))?;
    access_log::record(&state, &access, &program, &card, Route::Allowances).await?;
    state
        .metrics
        .read_card(CardRead::Allowances, &program, started.elapsed());
    Ok(Json(allowances).into_response())
}

/// A card's statement, oldest first, page by page: its decisions (as answered, with its
/// balances right after each), registrations and replacements, and those of the cards its
/// holder had before it.
#[utoipa::path(get, path = "/v1/programs/{program}/cards/{card}/history", tag = "cards",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id"),
           ("card" = String, Path, description = "The card id"),
           ("since" = Option<String>, Query, description = "Only entries at or after this RFC 3339 time"),
           ("until" = Option<String>, Query, description = "Only entries before this RFC 3339 time"),
           ("limit" = Option<u32>, Query, description = "Entries per page, 1 to 1000 (default 100)"),
           ("after" = Option<String>, Query, description = "The `next` cursor of the previous page")),
    responses(
        (status = 200, description = "A page of the card's statement", body = cardrules::history::History),
        (status = 400, description = "A parameter cannot be used: a bad time, `since` after `until`, a `limit` outside 1 to 1000, a cursor that is not this card's, an unknown parameter", body = ErrorBody),
        Refused,
        (status = 404, description = "Unknown program or card", body = ErrorBody),
        HostFailed,
    ))]
pub(crate) async fn history(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    uri: Uri,
) -> ApiResult<Response> {
    let UrlPath((program, card)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::History))?;
    access.check(|c| c.may_act_for_card(&program, &card))?;
    if let Some(city) = &state.upstream {
        return upstream::forward(&state, city.clone(), "GET", path_and_query(&uri), None)
            .await
            .map(|(response, _)| response);
    }
    let params = Params::of(query, &["since", "until", "limit", "after"])?;
    let page = HistoryPage::parse(
        params.get("since"),
        params.get("until"),
        params.get("limit"),
        params.get("after"),
    )?;
    let host = state.host.clone();
    let started = Instant::now();
    let (p, c) = (program.clone(), card.clone());
    let answer = blocking(&state, move || host.history(&p, &c, &page)).await?;
    let history = answer.ok_or_else(|| unknown_card(&program, &card))?;
    access_log::record(&state, &access, &program, &card, Route::History).await?;
    state
        .metrics
        .read_card(CardRead::History, &program, started.elapsed());
    Ok(Json(history).into_response())
}

/// Why an entry of a card's statement was decided as it was: the recorded request decided
/// again, with `explain`, on the program's state just before the entry (nothing is
/// committed), beside the decision as recorded. The entry must be a decision of the card's
/// statement (its own, or of an earlier card of its holder). Reading the journal up to the
/// entry costs time in proportion to its position.
#[utoipa::path(get, path = "/v1/programs/{program}/cards/{card}/history/{seq}/why", tag = "cards",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id"),
           ("card" = String, Path, description = "The card id"),
           ("seq" = u64, Path, description = "The entry's `seq` in the card's statement"),
           ("language" = Option<String>, Query, description = "The language of the messages (default: the program's first)")),
    responses(
        (status = 200, description = "The decision as recorded and explained", body = cardrules::why::Why),
        (status = 400, description = "A parameter cannot be used: a language without messages, an unknown parameter", body = ErrorBody),
        Refused,
        (status = 404, description = "Unknown program or card, or no decision at `seq` in the card's statement", body = ErrorBody),
        HostFailed,
    ))]
pub(crate) async fn why(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<(String, String, u64)>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    uri: Uri,
) -> ApiResult<Response> {
    use cardrules::why::{Found, explain_entry};
    let UrlPath((program, card, seq)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Why))?;
    access.check(|c| c.may_act_for_card(&program, &card))?;
    if let Some(city) = &state.upstream {
        return upstream::forward(&state, city.clone(), "GET", path_and_query(&uri), None)
            .await
            .map(|(response, _)| response);
    }
    let params = Params::of(query, &["language"])?;
    let language = params.get("language").map(str::to_string);
    let host = state.host.clone();
    let (p, c) = (program.clone(), card.clone());
    let found = blocking(&state, move || {
        explain_entry(&host, &p, &c, seq, language.as_deref())
    })
    .await?;
    match found {
        Found::Entry(why) => {
            access_log::record(&state, &access, &program, &card, Route::Why).await?;
            Ok(Json(*why).into_response())
        }
        Found::UnknownCard => Err(unknown_card(&program, &card)),
        Found::NoSuchEntry => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("the statement of card `{card}` has no decision at `seq` {seq}"),
        )),
    }
}
