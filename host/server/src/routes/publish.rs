//! `PUT /v1/programs/{program}/policy`: a municipality publishes a new version of its
//! program (`cardrules publish`) to a running host that it has no disk access to. The
//! version is served exactly as hot reload serves one — verified against the host's trust
//! file, gated on its own suites — and only then written to the policies directory; a
//! refused version changes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::access::Access;
use crate::auth::Route;
use crate::body::json_body;
use crate::error::{ApiError, ApiResult, BadBody, ErrorBody, HostFailed, Refused};
use crate::routes::path_error;
use crate::server::AppState;

/// The largest upload: a component of the engine's largest (64 MiB) in base64, with room
/// for the text files beside it.
pub const MAX_BUNDLE_BYTES: usize = 96 << 20;

/// How long an upload may take to arrive: a large component over a slow link.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// A program's files, as `cardrules publish` sends them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Bundle {
    /// Each file the host reads from the program's directory (manifest, component,
    /// catalogue, demo holders, suites) and `policy.sig`, by its path relative to the
    /// directory (`/`-separated), its bytes in standard base64.
    files: BTreeMap<String, String>,
}

/// The version now served.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Published {
    program: String,
    version: String,
    /// The component's digest (`sha256:…`).
    digest: String,
    /// Always true: a version that is not served is answered with an error.
    active: bool,
}

/// Serves a new version of a program from its uploaded files.
#[utoipa::path(put, path = "/v1/programs/{program}/policy", tag = "programs",
    security(("bearer" = [])),
    params(("program" = String, Path, description = "The program id")),
    request_body(content = Bundle, description = "The program's files (`cardrules publish`)", content_type = "application/json"),
    responses(
        (status = 200, description = "The version is verified, passed its suites and is served", body = Published),
        BadBody,
        Refused,
        (status = 422, description = "The version was refused (signature, trust, suites, or it does not load); the running version keeps serving", body = ErrorBody),
        HostFailed,
    ))]
pub(crate) async fn publish(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    path: Result<UrlPath<String>, PathRejection>,
    body: Body,
) -> ApiResult<Json<Published>> {
    let UrlPath(program) = path.map_err(path_error)?;
    access.check(|c| c.may_call(Route::Publish))?;
    access.check(|c| c.may_act_for(&program))?;
    if state.upstream.is_some() {
        return Err(crate::routes::upstream::at_the_city(
            &state,
            "take published programs (its programs come from its city)",
        ));
    }
    let Some(policies) = state.policies.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this server publishes no programs: it was started without a policies directory",
        ));
    };
    let bundle: Bundle = json_body(body, MAX_BUNDLE_BYTES, UPLOAD_TIMEOUT, "bundle").await?;
    let mut files = cardrules::loader::Bundle::new();
    for (path, encoded) in bundle.files {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "cannot parse bundle: file `{path}` is not base64: {e}"
                ))
            })?;
        files.insert(path, bytes);
    }
    let host = state.host.clone();
    let publishing = state.publishing.clone();
    let metrics = state.metrics.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        // One upload at a time: two versions racing would be written over each other.
        let _one = publishing.lock();
        let outcome = cardrules::loader::publish(&host, &policies, &program, &files);
        metrics.reloaded(&program, outcome.is_ok());
        outcome
    })
    .await
    .map_err(|e| {
        tracing::error!("publish task failed: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the publish task failed")
    })?;
    match outcome {
        Ok(served) => {
            tracing::info!(
                program = served.id(),
                version = served.policy.info.version,
                digest = served.policy.digest,
                "published"
            );
            Ok(Json(Published {
                program: served.id().to_string(),
                version: served.policy.info.version.clone(),
                digest: served.policy.digest.clone(),
                active: true,
            }))
        }
        Err(e @ cardrules::Error::Load { .. }) => {
            tracing::warn!("publish refused, previous version kept: {e}");
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                e.to_string(),
            ))
        }
        Err(e) => Err(ApiError::from(e)),
    }
}
