//! The city host as a venue host reaches it: HTTP(S) with the venue's own token, and
//! nothing else — never the city's database.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cardrules_server::upstream::{Answer, Unreachable, Upstream};
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// How long a forwarded request may take: a decision's commit at the city, with room.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to the city may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a long poll or a transfer may take: the poll's own wait (25 s) and more.
const POLL_TIMEOUT: Duration = Duration::from_secs(90);
/// The largest answer taken from the city: a bundle (a component of at most 64 MiB in
/// base64, and its text files).
const MAX_ANSWER: u64 = 100 << 20;

/// A city host: its URL, the venue's token, and the connections kept to it.
pub struct City {
    base: String,
    token: String,
    /// For forwarded requests: short timeouts, a till is waiting.
    forward: ureq::Agent,
    /// For long polls and transfers.
    poll: ureq::Agent,
    /// Why the last request could not reach the city, if it could not.
    unreachable: parking_lot::Mutex<Option<String>>,
}

/// What went wrong asking the city, in words for a log line.
#[derive(Debug, Clone)]
pub struct Failed(pub String);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl City {
    /// The city at `url` (`http://` or `https://`), called with the token in `token_file`;
    /// `ca_file` (PEM) replaces the public roots for a city whose certificate a private
    /// CA signed.
    pub fn new(url: &str, token_file: &Path, ca_file: Option<&Path>) -> Result<City, String> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "`--upstream` must be an `http://` or `https://` URL, not `{url}`"
            ));
        }
        let token = std::fs::read_to_string(token_file).map_err(|e| {
            format!(
                "cannot read `--upstream-token` file `{}`: {e}",
                token_file.display()
            )
        })?;
        let token = token.trim().to_string();
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err(format!(
                "`--upstream-token` file `{}` does not hold one token (as `cardrules token` prints it)",
                token_file.display()
            ));
        }
        let roots = match ca_file {
            None => RootCerts::WebPki,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    format!("cannot read `--upstream-ca` file `{}`: {e}", path.display())
                })?;
                let certificate = Certificate::from_pem(&pem).map_err(|e| {
                    format!(
                        "`--upstream-ca` file `{}` holds no PEM certificate: {e}",
                        path.display()
                    )
                })?;
                RootCerts::Specific(Arc::new(vec![certificate]))
            }
        };
        let agent = |timeout: Duration| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .timeout_global(Some(timeout))
                .tls_config(TlsConfig::builder().root_certs(roots.clone()).build())
                .build()
                .into()
        };
        Ok(City {
            base,
            token,
            forward: agent(FORWARD_TIMEOUT),
            poll: agent(POLL_TIMEOUT),
            unreachable: parking_lot::Mutex::new(None),
        })
    }

    /// The city's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Notes whether a request reached the city (any HTTP answer does), for `/readyz`.
    fn reached<T>(&self, outcome: Result<T, ureq::Error>) -> Result<T, ureq::Error> {
        *self.unreachable.lock() = outcome.as_ref().err().map(ToString::to_string);
        outcome
    }

    /// `GET path_and_query` for the venue's own work (long polls, bundles, journals), with
    /// `If-None-Match` if given: the status and the body.
    pub fn get(&self, path_and_query: &str, etag: Option<&str>) -> Result<Fetched, Failed> {
        let mut request = self
            .poll
            .get(format!("{}{path_and_query}", self.base))
            .header("Authorization", &format!("Bearer {}", self.token));
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        let mut response = self
            .reached(request.call())
            .map_err(|e| Failed(e.to_string()))?;
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(|e| Failed(format!("the answer broke off: {e}")))?;
        Ok(Fetched { status, etag, body })
    }

    /// `PUT path` with a JSON body, for the venue's report.
    pub fn put(&self, path: &str, body: &str) -> Result<u16, Failed> {
        let response = self
            .forward
            .put(format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body);
        let response = self.reached(response).map_err(|e| Failed(e.to_string()))?;
        Ok(response.status().as_u16())
    }
}

/// An answer of the city to the venue's own requests.
pub struct Fetched {
    pub status: u16,
    pub etag: Option<String>,
    pub body: Vec<u8>,
}

impl Fetched {
    /// The city's error message, if the body is `{"error": …}`; else the body's start.
    pub fn error(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&self.body[..self.body.len().min(200)]).into_owned()
            })
    }
}

impl Upstream for City {
    fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&str>,
    ) -> Result<Answer, Unreachable> {
        let url = format!("{}{path_and_query}", self.base);
        let auth = format!("Bearer {}", self.token);
        let sent = match (method, body) {
            ("POST", Some(body)) => self
                .forward
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body),
            ("GET", _) => self.forward.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self
                .forward
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            _ => return Err(Unreachable(format!("`{method}` is not forwarded"))),
        };
        let mut response = self.reached(sent).map_err(|e| Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let position = response
            .headers()
            .get("cardrules-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(|e| Unreachable(format!("the answer broke off: {e}")))?;
        // An answer that is not the city's JSON (a proxy's error page) is no answer.
        if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
            return Err(Unreachable(format!(
                "it answered {status} with a body that is not JSON"
            )));
        }
        Ok(Answer {
            status,
            body,
            position,
        })
    }

    fn describe(&self) -> String {
        self.base.clone()
    }

    fn unreachable(&self) -> Option<String> {
        self.unreachable.lock().clone()
    }
}
