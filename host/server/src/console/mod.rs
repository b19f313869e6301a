//! The web console (`GET /console`): a page for the people around a card program — the
//! till, the registration desk, the parents' portal and the program's analysts — built on
//! the public HTTP API alone (see docs/console.md).
//!
//! Its files are plain HTML, CSS and ES modules in `assets/`, compiled into the binary
//! with `include_str!`: nothing is built or fetched on the user's machine, and the page
//! holds no data, so it is served without a token. The token is typed on the sign-in
//! screen, kept in the tab's `sessionStorage` and sent by `fetch` as
//! `Authorization: Bearer`; it never appears in a URL. Every answer carries a
//! Content-Security-Policy that forbids inline script and any other origin.

use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// What every console answer carries: no script but the console's own modules, no inline
/// script or style, no other origin, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// The console's files: name under `/console/`, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/dom.js"),
    ),
    (
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/i18n.js"),
    ),
    (
        "till.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/till.js"),
    ),
    (
        "desk.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/desk.js"),
    ),
    (
        "parents.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/parents.js"),
    ),
    (
        "programs.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/programs.js"),
    ),
    (
        "forms.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/forms.js"),
    ),
    (
        "statement.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/statement.js"),
    ),
];

/// Whether `path` is the console's: served without a token.
pub fn is_console_path(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// `GET /console` (and `/console/`): the page.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    file_response("index.html", &headers)
}

/// `GET /console/{file}`: one of the console's files.
pub(crate) async fn asset(UrlPath(name): UrlPath<String>, headers: HeaderMap) -> Response {
    file_response(&name, &headers)
}

/// A file with its content type, security headers and an ETag (a hash of its bytes); a
/// request whose `If-None-Match` names it gets a 304. `no-cache`: the browser asks again
/// each time, so a new release's console is never mixed with the last one's modules.
fn file_response(name: &str, headers: &HeaderMap) -> Response {
    let Some((_, content_type, content)) = FILES.iter().find(|(file, _, _)| *file == name) else {
        return with_security_headers(
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("the console has no file `{name}`"),
            )
            .into_response(),
        );
    };
    let etag = format!("\"{}\"", hex16(content));
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            *content,
        )
            .into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_security_headers(response)
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The first 16 hex digits of the SHA-256 of `content`.
fn hex16(content: &str) -> String {
    Sha256::digest(content.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
