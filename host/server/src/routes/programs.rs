//! `GET /v1/programs`: the programs served, the updates refused, and the shadow's tallies.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;

use crate::access::Access;
use crate::auth::Route;
use crate::error::{ApiResult, Refused};
use crate::server::AppState;

/// A program as `GET /v1/programs` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct ProgramView {
    program: String,
    name: String,
    version: String,
    digest: String,
    /// The digest of the version's files together (`sha256:…`): two hosts serving the
    /// same bundle serve the same version, manifest and suites included.
    bundle: String,
    languages: Vec<String>,
    offers: usize,
    loaded_at: jiff::Timestamp,
}

/// A program whose latest files were refused.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RefusedView {
    program: String,
    error: String,
}

/// The answer of `GET /v1/programs`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ProgramsView {
    programs: Vec<ProgramView>,
    refused: Vec<RefusedView>,
    /// With `--shadow`: per program, how often its candidate agreed and differed.
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow: Option<std::collections::BTreeMap<String, cardrules::shadow::Tally>>,
}

/// The programs served, those whose latest files were refused, and (with `--shadow`) how
/// the candidates compare.
#[utoipa::path(get, path = "/v1/programs", tag = "programs",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The programs", body = ProgramsView),
        Refused,
    ))]
pub(crate) async fn programs(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
) -> ApiResult<Json<ProgramsView>> {
    access.check(|c| c.may_call(Route::Programs))?;
    let programs: Vec<ProgramView> = state
        .host
        .programs()
        .iter()
        .map(|p| {
            let policy = p.policy_ref();
            ProgramView {
                program: policy.program,
                name: p.files.manifest.name.clone(),
                version: policy.version,
                digest: policy.digest,
                bundle: p.sources.digest.clone(),
                languages: p.files.manifest.languages.clone(),
                offers: p.files.catalogue.len(),
                loaded_at: p.loaded_at,
            }
        })
        .collect();
    let refused: Vec<RefusedView> = state
        .host
        .refused()
        .into_iter()
        .map(|(program, error)| RefusedView { program, error })
        .collect();
    let shadow = state.shadow.as_ref().map(|shadow| shadow.tallies());
    Ok(Json(ProgramsView {
        programs,
        refused,
        shadow,
    }))
}
