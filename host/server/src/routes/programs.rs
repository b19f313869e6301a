//! `GET /v1/programs`: the programs served, the updates refused, and the shadow's tallies;
//! `GET /v1/programs/{program}`: what a till, desk or portal needs to know of one program
//! (its catalogue, schema, actions and languages); `GET /v1/programs/{program}/coverage`:
//! its own suites, run now, and the coverage of its rules.

use std::collections::BTreeMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::{Extension, Json};
use serde::Serialize;

use cardrules::AttributeValue;
use cardrules::coverage::OwnSuites;

use crate::access::Access;
use crate::auth::Route;
use crate::error::{ApiResult, ErrorBody, HostFailed, Refused};
use crate::routes::{blocking, path_error};
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
    /// (Addition.) The policy world the component was built against, e.g. `0.2.0`.
    world: String,
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
                world: p.policy.world().to_string(),
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

/// An offer of a program's catalogue, as `GET /v1/programs/{program}` lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct OfferView {
    id: String,
    name: String,
    provider: String,
    category: String,
    location: String,
    starts_at: Option<jiff::Timestamp>,
    ends_at: Option<jiff::Timestamp>,
    /// The offer's other keys, as declared in `schema.offer`.
    attributes: BTreeMap<String, AttributeValue>,
}

/// The actions a card's allowances ask about (the manifest's `[allowances]`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct AllowanceActionsView {
    per_offer: Vec<String>,
    per_card: Vec<String>,
}

/// One program, as a till, a desk or a portal needs to know it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct ProgramDetail {
    program: String,
    name: String,
    version: String,
    digest: String,
    /// The policy world the component was built against.
    world: String,
    loaded_at: jiff::Timestamp,
    /// IANA time zone: where the program's days, weeks and years begin.
    time_zone: String,
    /// The languages of its messages; the first is the default.
    languages: Vec<String>,
    /// The assets its effects may name (`DKK`, `saving`, …); amounts are in minor units.
    assets: Vec<String>,
    /// The actions its policy describes.
    actions: Vec<String>,
    /// The reasons its policy may give (besides the host's).
    reasons: Vec<String>,
    allowances: AllowanceActionsView,
    /// The catalogue, by offer id.
    offers: Vec<OfferView>,
    /// `[schema]` of `policy.toml`: `offer`, `holder` and `config`, each key → `type`
    /// (`text`, `integer`, `boolean`), `required`, `min`, `max`, `one-of`, `doc`, and for
    /// holders `guardian` (a guardian may change it).
    #[schema(value_type = Object)]
    schema: cardrules::Schema,
}

/// One program: its catalogue, the schema of its holders, offers and config, the actions
/// its policy describes and its languages; what a till, a registration desk or a parents'
/// portal needs to build its forms. Any token acting for the program may read it.
#[utoipa::path(get, path = "/v1/programs/{program}", tag = "programs",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id")),
    responses(
        (status = 200, description = "The program", body = ProgramDetail),
        Refused,
        (status = 404, description = "Unknown program", body = ErrorBody),
        (status = 503, description = "The program exists but none of its versions could be loaded", body = ErrorBody),
    ))]
pub(crate) async fn program(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<String>, PathRejection>,
) -> ApiResult<Json<ProgramDetail>> {
    let UrlPath(program) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Program))?;
    access.check(|c| c.may_act_for(&program))?;
    let p = state.host.program(&program)?;
    let policy = p.policy_ref();
    let manifest = &p.files.manifest;
    let mut offers: Vec<OfferView> = p
        .files
        .catalogue
        .values()
        .map(|o| OfferView {
            id: o.id.clone(),
            name: o.name.clone(),
            provider: o.provider.clone(),
            category: o.category.clone(),
            location: o.location.clone(),
            starts_at: o.starts_at,
            ends_at: o.ends_at,
            attributes: o.attributes.clone(),
        })
        .collect();
    offers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(ProgramDetail {
        program: policy.program,
        name: manifest.name.clone(),
        version: policy.version,
        digest: policy.digest,
        world: p.policy.world().to_string(),
        loaded_at: p.loaded_at,
        time_zone: manifest.time_zone.clone(),
        languages: manifest.languages.clone(),
        assets: manifest.assets.clone(),
        actions: p.policy.info.actions.clone(),
        reasons: p.policy.info.reasons.clone(),
        allowances: AllowanceActionsView {
            per_offer: manifest.allowances.per_offer.clone(),
            per_card: manifest.allowances.per_card.clone(),
        },
        offers,
        schema: manifest.schema.clone(),
    }))
}

/// The program's own suites, run now against the served version (each on a fresh
/// in-memory ledger; nothing of the real ledger is read or written): how many steps pass,
/// and which of its rules they saw both holding and failing, and which reasons as denials.
#[utoipa::path(get, path = "/v1/programs/{program}/coverage", tag = "programs",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id")),
    responses(
        (status = 200, description = "The suites' steps and the coverage of the program's rules", body = cardrules::coverage::OwnSuites),
        Refused,
        (status = 404, description = "Unknown program", body = ErrorBody),
        HostFailed,
    ))]
pub(crate) async fn coverage(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<String>, PathRejection>,
) -> ApiResult<Json<OwnSuites>> {
    let UrlPath(program) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Coverage))?;
    access.check(|c| c.may_act_for(&program))?;
    let p = state.host.program(&program)?;
    let sandbox = state.host.sandbox().clone();
    let own = blocking(&state, move || {
        cardrules::coverage::of_program(&sandbox, &p)
    })
    .await?;
    Ok(Json(own))
}
