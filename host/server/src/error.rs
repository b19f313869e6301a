//! Error answers: [`ApiError`] (a status and `{"error": "…"}`), how an engine error maps
//! to a status, and the error answers the OpenAPI description shares between routes.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use cardrules::Error;

/// An error answer: a status and `{"error": "…"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds for `Retry-After` (a 503).
    retry_after: Option<u32>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 503 asking the caller to come back in `seconds`.
    pub(crate) fn busy(message: impl Into<String>, seconds: u32) -> ApiError {
        ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match &e {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::UnknownProgram(_) | Error::UnknownCard { .. } => StatusCode::NOT_FOUND,
            Error::Forbidden(_) => {
                tracing::warn!("refused: {e}");
                StatusCode::FORBIDDEN
            }
            Error::IdReused(_)
            | Error::Replaced { .. }
            | Error::Kept(_)
            | Error::Held { .. }
            | Error::Refused(_) => StatusCode::CONFLICT,
            Error::Load { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Unavailable { .. } => {
                tracing::error!("{e}");
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => {
                tracing::error!("{e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// Every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, in lowercase, naming the input in backticks.
    error: String,
}

// The error answers routes share, described once: a route lists the sets that apply to
// it (`responses(…, Refused, HostFailed)`) beside the answers that are its own (its 200,
// a 404 naming what is unknown, …), so that a wording or a header cannot differ from one
// route to the next. The variants only describe answers (`ApiError` builds them), hence
// `dead_code`.

/// The answers of a route that needs a bearer token with `--auth`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum Refused {
    #[response(status = 401, description = "No known bearer token (with `--auth`)")]
    Unauthorized(ErrorBody),
    #[response(
        status = 403,
        description = "Outside the token's rights: its role, programs, actions or (a guardian's) cards"
    )]
    Forbidden(ErrorBody),
}

/// The answers of a route that reads a JSON body.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum BadBody {
    #[response(
        status = 400,
        description = "The body cannot be used (malformed, wrong field types, unknown fields), \
            or it is larger than `--body-limit`"
    )]
    BadRequest(ErrorBody),
    #[response(
        status = 408,
        description = "The body did not arrive within `--idle-timeout`"
    )]
    Timeout(ErrorBody),
}

/// The answers of a route whose work runs on the host and its ledger.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(crate) enum HostFailed {
    #[response(status = 503,
        description = "Busy: `--max-in-flight` requests are in flight (with `Retry-After`), \
            or the ledger is unreachable for now",
        headers(("Retry-After" = u32, description = "Seconds to wait before trying again")))]
    Unavailable(ErrorBody),
    #[response(
        status = 500,
        description = "The host or its ledger failed; nothing was committed"
    )]
    Failed(ErrorBody),
}
