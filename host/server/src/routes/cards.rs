//! `PUT /v1/programs/{program}/holders/{card}` and `GET /v1/programs/{program}/cards/{card}`:
//! register a holder, and read a card's state and balances.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use cardrules::{CardView, Holder};

use crate::access::Access;
use crate::auth::Route;
use crate::body::json_body;
use crate::error::{ApiError, ApiResult, BadBody, ErrorBody, HostFailed, Refused};
use crate::routes::{blocking, path_error};
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
    let holder: Holder = serde_json::from_value(fields)
        .map_err(|e| ApiError::bad_request(format!("cannot parse holder: {e}")))?;
    // Starting balances count only for a new card; whether the card is new is known only
    // inside the commit, so any non-zero balance in the body needs the right to give one.
    access.check(|c| c.may_grant(&holder.balances))?;
    let host = state.host.clone();
    let view = blocking(&state, move || {
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
) -> ApiResult<Json<CardView>> {
    let UrlPath((program, card)) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Card))?;
    access.check(|c| c.may_act_for(&program))?;
    let host = state.host.clone();
    let (p, c) = (program.clone(), card.clone());
    let view = blocking(&state, move || {
        host.card(&p, &c, jiff::Timestamp::now().as_second())
    })
    .await?;
    view.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("card `{card}` is not known to program `{program}`"),
        )
    })
}
