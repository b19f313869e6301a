//! The real `cardrules serve` on a loopback port, for the test files: starting it over a
//! copy of the shipped policies (or a directory a test prepared) and waiting until it
//! listens, stopping it, and calling it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::files::{copy_dir, shipped_policies};

/// A running server over its own copy of the shipped policies and its own ledger.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, as the server said.
    pub base: String,
    pub dir: Arc<tempfile::TempDir>,
}

impl Server {
    /// Copies the shipped policies into a fresh directory and starts a server over them.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&shipped_policies(), &dir.path().join("policies"));
        Server::start_in(Arc::new(dir))
    }

    /// Starts a server over `dir/policies` and `dir/ledger.sqlite`, accepting unsigned
    /// policies.
    pub fn start_in(dir: Arc<tempfile::TempDir>) -> Server {
        Server::start_with(dir, &["--allow-unsigned"])
    }

    /// Starts a server over `dir/policies` and `dir/ledger.sqlite` with `extra` flags.
    pub fn start_with(dir: Arc<tempfile::TempDir>, extra: &[&str]) -> Server {
        let ledger = dir.path().join("ledger.sqlite").display().to_string();
        Server::start_on(dir, &ledger, extra)
    }

    /// Starts a server over `dir/policies` and `ledger` with `extra` flags.
    pub fn start_on(dir: Arc<tempfile::TempDir>, ledger: &str, extra: &[&str]) -> Server {
        Server::start_listening(dir, ledger, "127.0.0.1:0", extra)
    }

    /// Starts a server over `dir/policies` and `ledger` on `listen` with `extra` flags.
    /// The tests send traffic recorded once, at fixed times of 2024 (the demo holders'
    /// ages, quotas and limits depend on them), so the server decides them as recorded:
    /// `--max-lateness none`. [`Server::start_bounded`] serves with each program's bounds.
    pub fn start_listening(
        dir: Arc<tempfile::TempDir>,
        ledger: &str,
        listen: &str,
        extra: &[&str],
    ) -> Server {
        let recorded = [&["--max-lateness", "none"], extra].concat();
        Server::start_bounded(dir, ledger, listen, &recorded)
    }

    /// Starts a server over `dir/policies` and `ledger` on `listen` with `extra` flags,
    /// bounding each request's `at` as in production (its program's `max-lateness` and
    /// `max-skew`).
    pub fn start_bounded(
        dir: Arc<tempfile::TempDir>,
        ledger: &str,
        listen: &str,
        extra: &[&str],
    ) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cardrules"));
        command
            .arg("serve")
            .arg("--policies")
            .arg(dir.path().join("policies"))
            .args(["--ledger", ledger])
            .args(["--listen", listen])
            .args(extra);
        Server::spawn(dir, command)
    }

    /// Starts `command` (a `cardrules serve …`, or a shell that runs one) with its log in
    /// `dir/server.log`, and waits for the address it listens on.
    pub fn spawn(dir: Arc<tempfile::TempDir>, mut command: Command) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("server.log"))
            .unwrap();
        let mut child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("server did not start: {line:?}, log: {}", log_of(&dir)))
            .to_string();
        Server { child, base, dir }
    }

    pub fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    pub fn log(&self) -> String {
        log_of(&self.dir)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        answer(agent().post(self.url(path)).send(body))
    }

    pub fn put(&self, path: &str, body: &str) -> (u16, Value) {
        answer(agent().put(self.url(path)).send(body))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        answer(agent().get(self.url(path)).call())
    }

    pub fn decide(&self, request: &Value) -> Value {
        let (status, decision) = self.post("/v1/decisions", &request.to_string());
        assert_eq!(status, 200, "{request} → {decision}");
        decision
    }

    /// The digest of `program` as `GET /v1/programs` shows it.
    pub fn digest(&self, program: &str) -> String {
        let (_, all) = self.get("/v1/programs");
        all["programs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["program"] == program)
            .map(|p| p["digest"].as_str().unwrap().to_string())
            .unwrap()
    }

    /// Waits for the server to exit and returns its exit status.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Sends the server SIGTERM, and leaves it stopping.
    pub fn signal_term(&self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Stops the server with SIGTERM and returns its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal_term();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The log of the server that ran in `dir`, so far.
pub fn log_of(dir: &tempfile::TempDir) -> String {
    // Lossy: a log line may quote bytes a caller sent that are not UTF-8.
    std::fs::read(dir.path().join("server.log"))
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// An HTTP client that hands back error statuses as answers, and gives up after a minute.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// The status and the JSON body of a response (the text, if the body is not JSON).
pub fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Polls `condition` until it holds, for at most 60 seconds.
pub fn eventually(what: &str, server: &Server, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting until {what}; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A request as the caller holding `token` (none: no `Authorization` header) sends it.
pub fn call(
    server: &Server,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Value) {
    let url = server.url(path);
    let bearer = token.map(|t| format!("Bearer {t}"));
    let agent = agent();
    match method {
        "GET" => {
            let mut request = agent.get(&url);
            if let Some(bearer) = &bearer {
                request = request.header("Authorization", bearer);
            }
            answer(request.call())
        }
        "DELETE" => {
            let mut request = agent.delete(&url);
            if let Some(bearer) = &bearer {
                request = request.header("Authorization", bearer);
            }
            answer(request.call())
        }
        "POST" | "PUT" | "PATCH" => {
            let mut request = match method {
                "POST" => agent.post(&url),
                "PUT" => agent.put(&url),
                _ => agent.patch(&url),
            };
            if let Some(bearer) = &bearer {
                request = request.header("Authorization", bearer);
            }
            answer(request.send(body))
        }
        _ => unreachable!("{method}"),
    }
}

/// Runs the `cardrules` command and expects success; returns its stdout.
pub fn cardrules(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cardrules"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An answer read off the wire: its status, headers (lowercase names) and body.
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Raw {
    /// The values of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Sends `head` (a request's head, without its final blank line) and `body` as written,
/// bytes a client library would refuse to send included, with `Connection: close`, and
/// reads the answer until the server closes.
pub fn raw(server: &Server, head: &str, body: &[u8]) -> Raw {
    use std::io::{Read, Write};
    let address = server.base.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!("{head}\r\nConnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).unwrap();
    let mut answer = Vec::new();
    // A server that answers and closes before reading everything may reset instead.
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer head in {answer:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_string(),
    }
}
