//! `GET /v1/caller`: who the presented token is and what it may do, so that a client (the
//! console, a portal) can show its user what their role allows before asking for anything.

use axum::extract::State;
use axum::{Extension, Json};

use crate::access::Access;
use crate::auth::{CallerView, Route};
use crate::error::{ApiResult, Refused};
use crate::server::AppState;

/// The caller: its token's name, role, programs, actions and (a guardian's) cards — never
/// the token — and the programs served now that it may act for. Without `--auth` every
/// caller may do everything: `auth` is false, the role `admin` and the programs `["*"]`.
#[utoipa::path(get, path = "/v1/caller", tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = CallerView),
        Refused,
    ))]
pub(crate) async fn caller(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
) -> ApiResult<Json<CallerView>> {
    access.check(|c| c.may_call(Route::Caller))?;
    let mut view = match &access {
        Access::Open => CallerView::open(),
        Access::Caller(caller) => caller.view(),
    };
    view.served = state
        .host
        .programs()
        .iter()
        .map(|p| p.id().to_string())
        .filter(|id| match &access {
            Access::Open => true,
            Access::Caller(caller) => caller.may_act_for(id).is_ok(),
        })
        .collect();
    Ok(Json(view))
}
