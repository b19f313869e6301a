//! `PUT /v1/programs/{program}/holders/{card}`, `PATCH /v1/programs/{program}/holders/{card}`
//! and `GET /v1/programs/{program}/cards/{card}`: register a holder, change its attributes
//! (a registrar, or a guardian for its own cards), and read a card's state and balances.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use cardrules::{AttributeValue, CardView, Holder, Setter};

use crate::access::Access;
use crate::auth::Route;
use crate::body::json_body;
use crate::error::{ApiError, ApiResult, BadBody, ErrorBody, HostFailed, Refused};
use crate::routes::portal::unknown_card;
use crate::routes::{access_log, blocking, path_and_query, path_error, upstream};
use crate::server::AppState;

/// Registers a holder (a new card: 201), or replaces an existing card's holder (200).
#[utoipa::path(put, path = "/v1/programs/{program}/holders/{card}", tag = "cards",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id"),
           ("card" = String, Path, description = "The card id")),
    request_body(content = cardrules::Holder, description = "The holder; non-zero `balances` need role `admin`", content_type = "application/json"),
    responses(
        (status = 200, description = "The holder of an existing card was replaced", body = cardrules::CardView),
        (status = 201, description = "A new card was registered", body = cardrules::CardView),
        BadBody,
        Refused,
        (status = 404, description = "Unknown program", body = ErrorBody),
        HostFailed,
    ))]
pub(crate) async fn register(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
    body: Body,
) -> ApiResult<Response> {
    let UrlPath((program, card)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Register))?;
    access.check(|c| c.may_act_for(&program))?;
    if state.upstream.is_some() {
        return Err(upstream::at_the_city(&state, "register holders"));
    }
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
    // A date that is no date is named with its field, so that a form can show the
    // message beside it (the JSON parser's own message names neither).
    if let Some(serde_json::Value::String(text)) = object.get("birth-date")
        && let Err(e) = text.parse::<jiff::civil::Date>()
    {
        return Err(ApiError::bad_request(format!(
            "cannot parse holder: `birth-date` `{text}` is not a date (YYYY-MM-DD): {e}"
        )));
    }
    let holder: Holder = serde_json::from_value(fields)
        .map_err(|e| ApiError::bad_request(format!("cannot parse holder: {e}")))?;
    // Starting balances count only for a new card; whether the card is new is known only
    // inside the commit, so any non-zero balance in the body needs the right to give one.
    access.check(|c| c.may_grant(&holder.balances))?;
    let host = state.host.clone();
    let logged = program.clone();
    let view = blocking(&state, move || {
        let created = host.register(&program, &holder)?;
        let view = host.card(&program, &holder.card, jiff::Timestamp::now().as_second())?;
        Ok((created, view))
    })
    .await?;
    access_log::record(&state, &access, &logged, &card, Route::Register).await?;
    let status = if view.0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view.1)).into_response())
}

/// The body of `PATCH …/holders/{card}`: the attributes to change, and nothing else.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read as JSON by the handler; described here for the OpenAPI document
pub(crate) struct HolderChange {
    /// Attribute → its new value (text, integer or boolean), or `null` to remove it; the
    /// holder's other attributes are kept.
    #[schema(value_type = BTreeMap<String, AttributeValue>)]
    attributes: BTreeMap<String, Option<AttributeValue>>,
}

/// Changes a holder's attributes: a registrar any the schema declares, a guardian (for its
/// own cards) only those the schema marks `guardian = true`. Journaled like a registration.
#[utoipa::path(patch, path = "/v1/programs/{program}/holders/{card}", tag = "cards",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id"),
           ("card" = String, Path, description = "The card id")),
    request_body(content = HolderChange, description = "`{\"attributes\": {…}}`; a guardian may name only attributes the schema marks `guardian = true`", content_type = "application/json"),
    responses(
        (status = 200, description = "The attributes were changed; the card as it is now", body = cardrules::CardView),
        BadBody,
        Refused,
        (status = 404, description = "Unknown program or card", body = ErrorBody),
        HostFailed,
    ))]
pub(crate) async fn update_holder(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
    body: Body,
) -> ApiResult<Json<CardView>> {
    let UrlPath((program, card)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::UpdateHolder))?;
    access.check(|c| c.may_act_for_card(&program, &card))?;
    if state.upstream.is_some() {
        return Err(upstream::at_the_city(&state, "change holders"));
    }
    let guardian = access.is_guardian();
    let body: serde_json::Value = json_body(
        body,
        state.body_limit,
        state.limits.idle_timeout,
        "holder change",
    )
    .await?;
    let serde_json::Value::Object(mut fields) = body else {
        return Err(ApiError::bad_request(
            "cannot parse holder change: expected a JSON object `{\"attributes\": {…}}`",
        ));
    };
    if let Some(other) = fields.keys().find(|key| *key != "attributes") {
        // `statuses`, `state`, `balances`, …: a guardian's standing, not its typing, is at
        // fault; another caller named a field that is not there.
        return Err(if guardian {
            tracing::warn!("refused: a guardian asked to change `{other}`");
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "a guardian may change only attributes the schema marks `guardian = true`, \
                     not `{other}`"
                ),
            )
        } else {
            ApiError::bad_request(format!(
                "cannot parse holder change: unknown field `{other}`, expected `attributes` \
                 (replace a whole holder with `PUT`)"
            ))
        });
    }
    let changes: BTreeMap<String, serde_json::Value> = match fields.remove("attributes") {
        Some(serde_json::Value::Object(changes)) => changes.into_iter().collect(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "cannot parse holder change: `attributes` must be an object of attribute → \
                 value, not `{other}`"
            )));
        }
        None => {
            return Err(ApiError::bad_request(
                "cannot parse holder change: missing field `attributes`",
            ));
        }
    };
    let setter = match guardian {
        true => Setter::Guardian,
        false => Setter::Registrar,
    };
    let host = state.host.clone();
    let (p, c) = (program.clone(), card.clone());
    let view = blocking(&state, move || {
        host.set_attributes(&p, &c, &changes, setter, jiff::Timestamp::now().as_second())
    })
    .await?;
    access_log::record(&state, &access, &program, &card, Route::UpdateHolder).await?;
    Ok(Json(view))
}

/// A card's state, statuses and balances now.
#[utoipa::path(get, path = "/v1/programs/{program}/cards/{card}", tag = "cards",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id"),
           ("card" = String, Path, description = "The card id")),
    responses(
        (status = 200, description = "The card", body = cardrules::CardView),
        Refused,
        (status = 404, description = "Unknown program or card", body = ErrorBody),
        HostFailed,
    ))]
pub(crate) async fn card(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
    uri: Uri,
) -> ApiResult<Response> {
    let UrlPath((program, card)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Card))?;
    access.check(|c| c.may_act_for_card(&program, &card))?;
    if let Some(city) = &state.upstream {
        return upstream::forward(&state, city.clone(), "GET", path_and_query(&uri), None)
            .await
            .map(|(response, _)| response);
    }
    let host = state.host.clone();
    let (p, c) = (program.clone(), card.clone());
    let view = blocking(&state, move || {
        host.card(&p, &c, jiff::Timestamp::now().as_second())
    })
    .await?;
    if view.is_some() {
        access_log::record(&state, &access, &program, &card, Route::Card).await?;
    }
    // A till or a venue serves the card; who the child is stays with the desk, the
    // child's guardian and the city's admins.
    let needs_person = access.caller().is_none_or(|caller| {
        !matches!(
            caller.role(),
            crate::auth::Role::Terminal | crate::auth::Role::Venue
        )
    });
    view.map(|view| match needs_person {
        true => Json(view).into_response(),
        false => Json(view.without_personal_data()).into_response(),
    })
    .ok_or_else(|| unknown_card(&program, &card))
}

/// Everything the ledger holds about the card's holder, as one JSON document: the card as
/// it stands, each registration of the holder's facts, and its whole statement — for the
/// holder's guardian, the registrar and admins (GDPR Art. 15 and 20). Recorded in the
/// card's access log.
#[utoipa::path(get, path = "/v1/programs/{program}/cards/{card}/export", tag = "cards",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id"),
           ("card" = String, Path, description = "The card id")),
    responses(
        (status = 200, description = "All the ledger holds about the holder", body = cardrules::Export),
        Refused,
        (status = 404, description = "Unknown program or card", body = ErrorBody),
        HostFailed,
    ))]
pub(crate) async fn export(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
) -> ApiResult<Response> {
    let UrlPath((program, card)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Export))?;
    access.check(|c| c.may_act_for_card(&program, &card))?;
    if state.upstream.is_some() {
        return Err(upstream::at_the_city(&state, "export a holder's data"));
    }
    let host = state.host.clone();
    let (p, c) = (program.clone(), card.clone());
    let export = blocking(&state, move || {
        host.export(&p, &c, jiff::Timestamp::now().as_second())
    })
    .await?
    .ok_or_else(|| unknown_card(&program, &card))?;
    access_log::record(&state, &access, &program, &card, Route::Export).await?;
    Ok(Json(export).into_response())
}

/// Erases the personal data of the card's holder (GDPR Art. 17): admins only. From then
/// on no copy the ledger writes holds the holder's facts; amounts, times, offers and
/// outcomes stay, pseudonymous, so that balances and totals are unchanged. The card
/// answers `"state": "erased"` and decisions on it are denied `erased`. Refused (409)
/// while money is left on the card, and in a program whose archive duty keeps its holders'
/// data (restrict the holder instead). Recorded in the card's access log.
#[utoipa::path(delete, path = "/v1/programs/{program}/holders/{card}", tag = "cards",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id"),
           ("card" = String, Path, description = "The card id")),
    responses(
        (status = 200, description = "The holder's personal data is erased (or was already)", body = cardrules::Erasure),
        Refused,
        (status = 404, description = "Unknown program or card", body = ErrorBody),
        (status = 409, description = "Not erased: money left on the card, a replaced card, or a program that keeps its holders' data", body = ErrorBody),
        HostFailed,
    ))]
pub(crate) async fn erase(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
) -> ApiResult<Json<cardrules::Erasure>> {
    let UrlPath((program, card)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Erase))?;
    access.check(|c| c.may_act_for(&program))?;
    if state.upstream.is_some() {
        return Err(upstream::at_the_city(&state, "erase holders"));
    }
    let host = state.host.clone();
    let by = access.name();
    let (p, c) = (program.clone(), card.clone());
    let erased = blocking(&state, move || host.erase(&p, &c, &by)).await?;
    access_log::record(&state, &access, &program, &card, Route::Erase).await?;
    tracing::info!(program, card, "holder erased");
    Ok(Json(erased))
}

/// The body of `PUT …/holders/{card}/restriction`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Restriction {
    /// True restricts the holder (its data kept, nothing decided: decisions are denied
    /// `restricted`); false lifts the restriction.
    restricted: bool,
}

/// Restricts the card's holder, or lifts the restriction (GDPR Art. 18): admins only. A
/// restricted holder's data is kept and shown, and nothing is decided on the card.
/// Journaled, and recorded in the card's access log.
#[utoipa::path(put, path = "/v1/programs/{program}/holders/{card}/restriction", tag = "cards",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id"),
           ("card" = String, Path, description = "The card id")),
    request_body(content = Restriction, description = "`{\"restricted\": true}` or `false`", content_type = "application/json"),
    responses(
        (status = 200, description = "The card as it is now", body = cardrules::CardView),
        BadBody,
        Refused,
        (status = 404, description = "Unknown program or card", body = ErrorBody),
        HostFailed,
    ))]
pub(crate) async fn restrict(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<(String, String)>, PathRejection>,
    body: Body,
) -> ApiResult<Json<CardView>> {
    let UrlPath((program, card)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Restrict))?;
    access.check(|c| c.may_act_for(&program))?;
    if state.upstream.is_some() {
        return Err(upstream::at_the_city(&state, "restrict holders"));
    }
    let body: serde_json::Value = json_body(
        body,
        state.body_limit,
        state.limits.idle_timeout,
        "restriction",
    )
    .await?;
    let restriction: Restriction = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("cannot parse restriction: {e}")))?;
    let host = state.host.clone();
    let by = access.name();
    let (p, c) = (program.clone(), card.clone());
    let view = blocking(&state, move || {
        host.restrict(&p, &c, restriction.restricted, &by)
    })
    .await?;
    access_log::record(&state, &access, &program, &card, Route::Restrict).await?;
    Ok(Json(view))
}
