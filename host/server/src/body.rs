//! Request bodies: read within a size limit and a timeout, as text or as JSON, with the
//! 400 or 408 that says what was wrong.

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;

use crate::error::{ApiError, ApiResult};

/// Reads a body of at most `limit` bytes as text, within `timeout` (a sender that stalls
/// half-way is answered 408 rather than holding the connection).
pub(crate) async fn body_text(
    body: Body,
    limit: usize,
    timeout: Duration,
    what: &str,
) -> ApiResult<String> {
    let read = tokio::time::timeout(timeout, read_body(body, limit)).await;
    let bytes: Vec<u8> = match read {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "cannot read {what}: the body did not arrive within {} s",
                    timeout.as_secs()
                ),
            ));
        }
        // A 400, not a 413: docs/contract.md fixed it so before 413 was considered.
        Ok(Err(Oversized::Yes)) => {
            return Err(ApiError::bad_request(format!(
                "cannot read {what}: the body is larger than {limit} bytes"
            )));
        }
        Ok(Err(Oversized::Broken(e))) => {
            return Err(ApiError::bad_request(format!("cannot read {what}: {e}")));
        }
        Ok(Ok(bytes)) => bytes,
    };
    String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request(format!("cannot parse {what}: the body is not UTF-8")))
}

/// How many bytes past the limit are read and thrown away before an oversized body is
/// answered: a client still sending when the answer comes would otherwise have its
/// connection reset and never see the 400 (the answer lost with the unread bytes).
const DRAIN_FACTOR: usize = 8;

enum Oversized {
    Yes,
    Broken(axum::Error),
}

/// Reads at most `limit` bytes of `body`; past that, reads on (discarding, up to
/// `DRAIN_FACTOR` × `limit`) so that the client reads its answer, then refuses it.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, Oversized> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut bytes: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Oversized::Broken)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            bytes.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(DRAIN_FACTOR) {
            return Err(Oversized::Yes);
        }
    }
    if seen > limit {
        return Err(Oversized::Yes);
    }
    Ok(bytes)
}

/// Reads a JSON body of at most `limit` bytes into `T`, refusing a key named twice as a
/// request's are (the engine's one JSON reader for bodies).
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(
    body: Body,
    limit: usize,
    timeout: Duration,
    what: &str,
) -> ApiResult<T> {
    let text = body_text(body, limit, timeout, what).await?;
    Ok(cardrules::inputs::json(&text, what)?)
}
