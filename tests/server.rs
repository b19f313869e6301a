//! The real `cardrules serve` on a loopback port: every route, bad input, hot reload under
//! live traffic, racing terminals, graceful shutdown and a SIGKILL in the middle of a load.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/postgres.rs"]
mod postgres_support;
use postgres_support::Database;

#[path = "support/files.rs"]
mod files;
use files::copy_dir;

/// A running server over its own copy of the shipped policies and its own ledger.
struct Server {
    child: Child,
    base: String,
    dir: Arc<tempfile::TempDir>,
}

impl Server {
    /// Copies the shipped policies into a fresh directory and starts a server over them.
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&shipped_policies(), &dir.path().join("policies"));
        Server::start_in(Arc::new(dir))
    }

    /// Starts a server over `dir/policies` and `dir/ledger.sqlite`, accepting unsigned
    /// policies.
    fn start_in(dir: Arc<tempfile::TempDir>) -> Server {
        Server::start_with(dir, &["--allow-unsigned"])
    }

    /// Starts a server over `dir/policies` and `dir/ledger.sqlite` with `extra` flags.
    fn start_with(dir: Arc<tempfile::TempDir>, extra: &[&str]) -> Server {
        let ledger = dir.path().join("ledger.sqlite").display().to_string();
        Server::start_on(dir, &ledger, extra)
    }

    /// Starts a server over `dir/policies` and `ledger` with `extra` flags.
    fn start_on(dir: Arc<tempfile::TempDir>, ledger: &str, extra: &[&str]) -> Server {
        Server::start_listening(dir, ledger, "127.0.0.1:0", extra)
    }

    /// Starts a server over `dir/policies` and `ledger` on `listen` with `extra` flags.
    fn start_listening(
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
    fn spawn(dir: Arc<tempfile::TempDir>, mut command: Command) -> Server {
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

    fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    fn log(&self) -> String {
        log_of(&self.dir)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        answer(agent().post(self.url(path)).send(body))
    }

    fn put(&self, path: &str, body: &str) -> (u16, Value) {
        answer(agent().put(self.url(path)).send(body))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        answer(agent().get(self.url(path)).call())
    }

    fn decide(&self, request: &Value) -> Value {
        let (status, decision) = self.post("/v1/decisions", &request.to_string());
        assert_eq!(status, 200, "{request} → {decision}");
        decision
    }

    /// The digest of `program` as `GET /v1/programs` shows it.
    fn digest(&self, program: &str) -> String {
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
    fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Stops the server with SIGTERM and returns its exit status.
    #[allow(dead_code)]
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_of(dir: &tempfile::TempDir) -> String {
    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
}

fn shipped_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// Replaces `path` at once (write aside, rename), as a deployment should.
fn replace(path: &Path, contents: &[u8]) {
    let aside = path.with_extension("incoming");
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Polls `condition` until it holds, for at most 60 seconds.
fn eventually(what: &str, server: &Server, mut condition: impl FnMut() -> bool) {
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

fn kino(card: &str, id: Option<&str>) -> Value {
    let mut request = json!({
        "program": "bergen", "card": card, "action": "redeem", "offer": "bergen-kino",
        "party": 2, "at": "2024-03-01T18:00:00+01:00",
    });
    if let Some(id) = id {
        request["id"] = id.into();
    }
    request
}

#[test]
fn every_route_answers_as_the_contract_says() {
    let server = Server::start();

    let (status, health) = server.get("/healthz");
    assert_eq!((status, &health["programs"]), (200, &json!(3)));

    let (status, all) = server.get("/v1/programs");
    assert_eq!(status, 200);
    let programs = all["programs"].as_array().unwrap();
    let ids: Vec<&str> = programs
        .iter()
        .map(|p| p["program"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["albertslund", "antwerpen", "bergen"]);
    for program in programs {
        assert_eq!(program["version"], "2024.1.0");
        assert!(program["digest"].as_str().unwrap().starts_with("sha256:"));
    }

    // A decision, its replay, and a different request under the same id.
    let first = server.decide(&kino("AK-1001", Some("till-1/0001")));
    assert_eq!(
        (&first["allow"], &first["admitted"], &first["reason"]),
        (&json!(true), &json!(2), &json!("ok"))
    );
    assert_eq!(first["policy"]["program"], "bergen");
    let again = server.decide(&kino("AK-1001", Some("till-1/0001")));
    assert_eq!(again["replayed"], true);
    assert_eq!(again["allow"], true);
    let mut other = kino("AK-1001", Some("till-1/0001"));
    other["party"] = 1.into();
    let (status, error) = server.post("/v1/decisions", &other.to_string());
    assert_eq!(status, 409, "{error}");
    assert!(error["error"].as_str().unwrap().contains("`till-1/0001`"));

    // A dry run commits nothing: the yearly limit of 4 is untouched by it.
    let mut dry = kino("AK-1001", None);
    dry["dry-run"] = true.into();
    let answer = server.decide(&dry);
    assert_eq!(
        (&answer["dry-run"], &answer["allow"]),
        (&json!(true), &json!(true))
    );
    // 1 of 4 visits used: had the dry run counted, the last of these 3 would be refused.
    for n in 2..=4 {
        let visit = server.decide(&kino("AK-1001", Some(&format!("till-1/000{n}"))));
        assert_eq!(visit["allow"], true, "visit {n}: {visit}");
    }
    assert_eq!(server.decide(&dry)["reason"], "quota-exhausted");

    // Unknown cards and offers are decisions, not errors.
    let unknown = server.decide(&kino("NO-SUCH-CARD", None));
    assert_eq!(
        (&unknown["allow"], &unknown["reason"]),
        (&json!(false), &json!("unknown-card"))
    );
    let mut no_offer = kino("AK-1001", None);
    no_offer["offer"] = "no-such-offer".into();
    assert_eq!(server.decide(&no_offer)["reason"], "unknown-offer");

    // Holders: created, then replaced; shown with state, statuses and balances.
    let holder = json!({"birth-date": "2012-01-01", "municipality": "albertslund",
                        "statuses": ["member:storagergard"], "balances": {"DKK": 5000}});
    let (status, card) = server.put(
        "/v1/programs/albertslund/holders/NEW-1",
        &holder.to_string(),
    );
    assert_eq!(status, 201, "{card}");
    assert_eq!(card["balances"]["DKK"], 5000);
    let blocked = json!({"card": "NEW-1", "birth-date": "2012-01-01",
                         "municipality": "albertslund", "state": "blocked",
                         "statuses": ["member:storagergard"]});
    let (status, card) = server.put(
        "/v1/programs/albertslund/holders/NEW-1",
        &blocked.to_string(),
    );
    assert_eq!(status, 200, "{card}");
    let (status, card) = server.get("/v1/programs/albertslund/cards/NEW-1");
    assert_eq!(status, 200);
    assert_eq!(card["state"], "blocked");
    assert_eq!(card["statuses"], json!(["member:storagergard"]));
    assert_eq!(card["balances"], json!({"DKK": 5000}));

    let (status, error) = server.get("/v1/programs/albertslund/cards/NOPE");
    assert_eq!(status, 404);
    assert_eq!(
        error["error"],
        "card `NOPE` is not known to program `albertslund`"
    );
    let (status, _) = server.get("/v1/programs/gotham/cards/NOPE");
    assert_eq!(status, 404);
    let (status, _) = server.put("/v1/programs/gotham/holders/X", &holder.to_string());
    assert_eq!(status, 404);
    let mut elsewhere = kino("AK-1001", None);
    elsewhere["program"] = "gotham".into();
    let (status, error) = server.post("/v1/decisions", &elsewhere.to_string());
    assert_eq!(
        (status, &error["error"]),
        (404, &json!("unknown program `gotham`"))
    );
    let (status, _) = server.get("/v2/nothing");
    assert_eq!(status, 404);

    // The decision's own log line (not the request path `/v1/decisions`).
    let log = server.log();
    assert!(
        log.lines().any(|line| line.contains(": decision ")
            && line.contains("AK-1001")
            && line.contains("allow=true")
            && line.contains("reason=\"ok\"")),
        "no decision line in the log:\n{log}"
    );
}

#[test]
fn bad_input_gets_a_400_with_a_readable_error_and_changes_nothing() {
    let server = Server::start();
    let before = server.get("/v1/programs/albertslund/cards/BK-2002").1;
    let huge = format!(r#"{{"program":"{}"}}"#, "x".repeat(200_000));
    let cases: &[(&str, &str, &str)] = &[
        ("/v1/decisions", "", "cannot parse request: EOF"),
        ("/v1/decisions", "{\"program\":", "cannot parse request"),
        ("/v1/decisions", "[1, 2]", "cannot parse request"),
        (
            "/v1/decisions",
            r#"{"program":"albertslund"}"#,
            "missing field",
        ),
        (
            "/v1/decisions",
            r#"{"program":"albertslund","card":"BK-2002","action":"top-up","amount":"lots","at":"2024-05-07T16:00:00+02:00"}"#,
            "invalid type",
        ),
        (
            "/v1/decisions",
            r#"{"program":"albertslund","card":"BK-2002","action":"top-up","amount":100,"at":"yesterday"}"#,
            "cannot parse request",
        ),
        (
            "/v1/decisions",
            r#"{"program":"albertslund","card":"BK-2002","action":"top-up","amount":100,"at":"2024-05-07T16:00:00+02:00","tip":5}"#,
            "unknown field `tip`",
        ),
        (
            "/v1/decisions",
            r#"{"program":"albertslund","card":"BK-2002","action":"top-up","amount":100,"party":0,"at":"2024-05-07T16:00:00+02:00"}"#,
            "`party` must be at least 1",
        ),
        ("/v1/decisions", &huge, "larger than 65536 bytes"),
    ];
    for (path, body, expected) in cases {
        let (status, error) = server.post(path, body);
        assert_eq!(status, 400, "{body:.80} → {error}");
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
    let holders: &[(&str, &str)] = &[
        ("[]", "expected a JSON object"),
        (
            r#"{"birth-date":"someday","municipality":"x"}"#,
            "cannot parse holder",
        ),
        (
            r#"{"birth-date":"2012-01-01"}"#,
            "missing field `municipality`",
        ),
        (
            r#"{"card":"OTHER","birth-date":"2012-01-01","municipality":"x"}"#,
            "the path names `BK-2002`",
        ),
        (
            r#"{"birth-date":"2012-01-01","municipality":"albertslund","balances":{"DKK":1}}"#,
            "starting balances are only for new cards",
        ),
    ];
    for (body, expected) in holders {
        let (status, error) = server.put("/v1/programs/albertslund/holders/BK-2002", body);
        assert_eq!(status, 400, "{body} → {error}");
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
    // A path that is not UTF-8 is the caller's error too, in JSON like every other.
    for path in [
        "/v1/programs/albertslund/cards/%FF%FE",
        "/v1/programs/%C3/cards/BK-2002",
    ] {
        let (status, error) = server.get(path);
        assert_eq!(status, 400, "{path} → {error}");
        let message = error["error"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("cannot parse the path: "),
            "{path} → {error}"
        );
    }
    let (status, error) = server.put(
        "/v1/programs/albertslund/holders/%FF",
        r#"{"birth-date":"2012-01-01","municipality":"x"}"#,
    );
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap_or_default()
            .contains("UTF-8"),
        "{error}"
    );
    assert_eq!(
        server.get("/v1/programs/albertslund/cards/BK-2002").1,
        before
    );
    assert_eq!(server.get("/healthz").0, 200);
}

#[test]
fn holders_persist_and_sigterm_stops_the_server_gracefully() {
    let server = Server::start();
    let holder = r#"{"birth-date":"2011-06-01","municipality":"bergen","statuses":["low-income"]}"#;
    assert_eq!(
        server.put("/v1/programs/bergen/holders/KEEP-1", holder).0,
        201
    );
    assert_eq!(
        server.decide(&kino("KEEP-1", Some("keep-1")))["allow"],
        true
    );
    // A request in flight when SIGTERM arrives: its body is half sent.
    let body = kino("KEEP-1", Some("keep-2")).to_string();
    let address = server.base.trim_start_matches("http://").to_string();
    let mut till = std::net::TcpStream::connect(&address).unwrap();
    let (head, tail) = body.split_at(body.len() / 2);
    write!(
        till,
        "POST /v1/decisions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    till.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let dir = server.dir.clone();
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    // The rest of the body after the signal: the request still gets its decision.
    till.write_all(tail.as_bytes()).unwrap();
    let mut answer = String::new();
    till.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"allow\":true"), "{answer}");
    let status = server.wait();
    assert!(status.success(), "{status}");
    assert!(log_of(&dir).contains("shut down"));

    let server = Server::start_in(dir);
    let (status, card) = server.get("/v1/programs/bergen/cards/KEEP-1");
    assert_eq!(status, 200);
    assert_eq!(card["statuses"], json!(["low-income"]));
    assert_eq!(
        server.decide(&kino("KEEP-1", Some("keep-1")))["replayed"],
        true
    );
    // The decision answered during the shutdown was committed.
    assert_eq!(
        server.decide(&kino("KEEP-1", Some("keep-2")))["replayed"],
        true
    );
}

/// Appends a custom section to a component: the same code, a different digest — what a
/// rebuilt policy looks like to the host.
fn rebuilt(component: &[u8], tag: &str) -> Vec<u8> {
    let name = b"cardrules-test";
    let mut content = vec![name.len() as u8];
    content.extend_from_slice(name);
    content.extend_from_slice(tag.as_bytes());
    assert!(content.len() < 128, "one-byte LEB128 size");
    let mut out = component.to_vec();
    out.push(0); // custom section
    out.push(content.len() as u8);
    out.extend_from_slice(&content);
    out
}

#[test]
fn hot_reload_swaps_good_updates_and_refuses_broken_ones_under_live_traffic() {
    let server = Arc::new(Server::start());
    let bergen = server.policies().join("bergen");
    let original_component = std::fs::read(bergen.join("bergen.wasm")).unwrap();
    let original_manifest = std::fs::read_to_string(bergen.join("policy.toml")).unwrap();
    let original_catalogue = std::fs::read_to_string(bergen.join("catalogue.toml")).unwrap();
    let first_digest = server.digest("bergen");

    // Live traffic on all three programs while the files change underneath. Each answer
    // must be what the good versions decide — not merely a 200: a wrong denial from a
    // briefly served bad version would be caught.
    let request_for = |t: usize, n: usize| match n % 3 {
        0 => json!({"program": "bergen", "card": "AK-1001", "action": "redeem",
                    "offer": "bergen-kino", "at": "2024-03-01T18:00:00+01:00",
                    "dry-run": true}),
        1 => json!({"program": "albertslund", "card": "BK-2002",
                    "action": "top-up", "amount": 1,
                    "at": "2024-05-07T16:00:00+02:00", "id": format!("t{t}-{n}")}),
        _ => json!({"program": "antwerpen", "card": "A-3001", "action": "price",
                    "offer": "mas", "at": "2024-05-07T16:00:00+02:00"}),
    };
    let content = |d: &Value| {
        json!([
            d["allow"],
            d["reason"],
            d["admitted"],
            d["price"],
            d["message"],
            d["notes"]
        ])
    };
    let expected: Arc<Vec<Value>> = Arc::new(
        (0..3)
            .map(|n| content(&server.decide(&request_for(9, n))))
            .collect(),
    );
    for answer in expected.iter() {
        assert_eq!(answer[0], true, "{answer}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let traffic: Vec<_> = (0..3)
        .map(|t| {
            let (server, stop, served, failures, expected) = (
                server.clone(),
                stop.clone(),
                served.clone(),
                failures.clone(),
                expected.clone(),
            );
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let request = request_for(t, n);
                    let (status, decision) = server.post("/v1/decisions", &request.to_string());
                    if status != 200 || content(&decision) != expected[n % 3] {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{request} → {status} {decision}"));
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // A good update: a rebuilt component and a catalogue with a new offer.
    let new_offer = "\n[[offers]]\nid = \"bergen-kino-reload\"\nname = \"Bergen Kino (ny sal)\"\nprovider = \"Bergen Kino AS\"\ncategory = \"public-event\"\nlocation = \"bergen-kino\"\nyearly-limit = 4\n";
    let mut probe = kino("AK-1002", None);
    probe["offer"] = "bergen-kino-reload".into();
    probe["dry-run"] = true.into();
    assert_eq!(server.decide(&probe)["reason"], "unknown-offer");
    replace(
        &bergen.join("catalogue.toml"),
        format!("{original_catalogue}{new_offer}").as_bytes(),
    );
    let good = rebuilt(&original_component, "v2");
    replace(&bergen.join("bergen.wasm"), &good);
    let good_digest = format!("sha256:{}", sha256_hex(&good));
    assert_ne!(good_digest, first_digest);
    eventually("the rebuilt bergen serves", &server, || {
        server.digest("bergen") == good_digest && server.decide(&probe)["reason"] != "unknown-offer"
    });
    assert_eq!(server.decide(&probe)["allow"], true);
    let loaded_at = |server: &Server| {
        let (_, all) = server.get("/v1/programs");
        all["programs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["program"] == "bergen")
            .map(|p| p["loaded-at"].clone())
            .unwrap()
    };

    // Broken updates: each refused with a log line, the good version keeps serving.
    let broken_manifest = original_manifest.replace("max-age = 17", "max-age = 5");
    assert_ne!(broken_manifest, original_manifest);
    let broken: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bergen.wasm",
            b"\0asm not really a component".to_vec(),
            "not a valid component",
        ),
        (
            "bergen.wasm",
            std::fs::read(server.policies().join("antwerpen/antwerpen.wasm")).unwrap(),
            "describes itself as program `antwerpen`",
        ),
        (
            "catalogue.toml",
            b"[[offers]\nid = ".to_vec(),
            "catalogue.toml",
        ),
        (
            "policy.toml",
            broken_manifest.into_bytes(),
            "its own suites fail",
        ),
    ];
    for (file, contents, expected) in broken {
        // Once the last reload has settled, the version serving now must still serve
        // after the refusal.
        std::thread::sleep(Duration::from_secs(1));
        let good_loaded_at = loaded_at(&server);
        assert!(good_loaded_at.is_string(), "{good_loaded_at}");
        replace(&bergen.join(file), &contents);
        eventually(
            &format!("a broken `{file}` is refused ({expected})"),
            &server,
            || {
                let (_, all) = server.get("/v1/programs");
                all["refused"].as_array().unwrap().iter().any(|r| {
                    r["program"] == "bergen" && r["error"].as_str().unwrap().contains(expected)
                })
            },
        );
        assert_eq!(server.digest("bergen"), good_digest);
        // The digest is the component's: a refused `policy.toml` leaves it as it was
        // anyway, so check that the served version is the very one loaded before.
        assert_eq!(loaded_at(&server), good_loaded_at, "{file} was served");
        assert_eq!(
            server.decide(&probe)["allow"],
            true,
            "the good version still serves"
        );
        // Put the good file back; the refusal clears.
        let restore = match file {
            "bergen.wasm" => good.clone(),
            "catalogue.toml" => format!("{original_catalogue}{new_offer}").into_bytes(),
            _ => original_manifest.clone().into_bytes(),
        };
        replace(&bergen.join(file), &restore);
        eventually("the refusal clears", &server, || {
            let (_, all) = server.get("/v1/programs");
            all["refused"].as_array().unwrap().is_empty()
        });
    }
    assert!(
        server
            .log()
            .contains("update refused, previous version kept")
    );

    stop.store(true, Ordering::Relaxed);
    for thread in traffic {
        thread.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "failed requests during reloads: {failures:#?}"
    );
    assert!(
        served.load(Ordering::Relaxed) > 30,
        "traffic ran throughout"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fires the requests at the same moment, one thread each, and returns the decisions.
fn race(server: &Arc<Server>, requests: Vec<Value>) -> Vec<Value> {
    race_on(std::slice::from_ref(server), requests)
}

/// Fires the requests at the same moment, one thread each, spread over `servers` in turn.
fn race_on(servers: &[Arc<Server>], requests: Vec<Value>) -> Vec<Value> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let threads: Vec<_> = requests
        .into_iter()
        .enumerate()
        .map(|(i, request)| {
            let (server, barrier) = (servers[i % servers.len()].clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                server.decide(&request)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn simultaneous_requests_for_the_last_places_and_the_last_ore_cannot_all_win() {
    let server = Arc::new(Server::start());
    const TILLS: usize = 16;
    for i in 0..TILLS {
        let holder = r#"{"birth-date":"2012-01-01","municipality":"bergen"}"#;
        assert_eq!(
            server
                .put(&format!("/v1/programs/bergen/holders/KID-{i}"), holder)
                .0,
            201
        );
    }
    // `klatring-bratte-rom` has 2 places per semester.
    let decisions = race(
        &server,
        (0..TILLS)
            .map(|i| {
                json!({"program": "bergen", "card": format!("KID-{i}"), "action": "redeem",
                       "offer": "klatring-bratte-rom", "at": "2024-08-01T09:00:00+02:00"})
            })
            .collect(),
    );
    let won = decisions.iter().filter(|d| d["allow"] == true).count();
    assert_eq!(won, 2, "{decisions:#?}");
    assert!(
        decisions
            .iter()
            .filter(|d| d["allow"] == false)
            .all(|d| d["reason"] == "fully-booked")
    );

    let holder = r#"{"birth-date":"2012-01-01","municipality":"albertslund",
                     "statuses":["member:storagergard"],"balances":{"DKK":1000}}"#;
    assert_eq!(
        server
            .put("/v1/programs/albertslund/holders/RACE-1", holder)
            .0,
        201
    );
    let decisions = race(
        &server,
        (0..TILLS)
            .map(|i| {
                json!({"program": "albertslund", "card": "RACE-1", "action": "purchase",
                       "offer": "sg-perler", "amount": 600, "id": format!("till-{i}"),
                       "at": "2024-05-07T16:00:00+02:00"})
            })
            .collect(),
    );
    let won = decisions.iter().filter(|d| d["allow"] == true).count();
    assert_eq!(won, 1, "{decisions:#?}");
    let (_, card) = server.get("/v1/programs/albertslund/cards/RACE-1");
    assert_eq!(card["balances"]["DKK"], 400);
}

#[test]
fn a_server_killed_under_load_keeps_every_answered_decision_and_nothing_half_applied() {
    const START: i64 = 10_000_000;
    const PRICE: i64 = 100;
    let mut server = Server::start();
    let holder = json!({"birth-date": "2012-01-01", "municipality": "albertslund",
                        "statuses": ["member:storagergard"], "balances": {"DKK": START}});
    assert_eq!(
        server
            .put(
                "/v1/programs/albertslund/holders/LOAD-1",
                &holder.to_string()
            )
            .0,
        201
    );
    let purchase = |id: &str| {
        json!({"program": "albertslund", "card": "LOAD-1", "action": "purchase",
               "offer": "sg-perler", "amount": PRICE, "id": id,
               "at": "2024-05-07T16:00:00+02:00"})
    };

    // Four tills buy as fast as they can; each remembers what it sent and what it was told.
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let answered = Arc::new(Mutex::new(BTreeMap::<String, Value>::new()));
    let tills: Vec<_> = (0..4)
        .map(|till| {
            let (url, sent, answered) =
                (server.url("/v1/decisions"), sent.clone(), answered.clone());
            std::thread::spawn(move || {
                for n in 0.. {
                    let id = format!("till-{till}/{n}");
                    sent.lock().unwrap().push(id.clone());
                    let body = purchase(&id).to_string();
                    let Ok(mut response) = agent().post(&url).send(&body) else {
                        return; // the server is gone
                    };
                    let Ok(text) = response.body_mut().read_to_string() else {
                        return;
                    };
                    let decision: Value = serde_json::from_str(&text).unwrap();
                    answered.lock().unwrap().insert(id, decision);
                }
            })
        })
        .collect();
    eventually("some decisions are answered", &server, || {
        answered.lock().unwrap().len() >= 200
    });
    let dir = server.dir.clone();
    server.child.kill().unwrap(); // SIGKILL, mid-load
    server.child.wait().unwrap();
    for till in tills {
        till.join().unwrap();
    }
    drop(server);

    let server = Server::start_in(dir);
    let answered = answered.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert!(answered.len() >= 200);
    // The kill caught requests in flight: sent, never answered.
    let in_flight = sent.iter().filter(|id| !answered.contains_key(*id)).count();
    assert!(in_flight >= 1, "nothing was in flight at the kill");
    // Every answered decision is in the ledger: its retry is a replay of the same answer.
    let mut allowed = 0;
    for id in &sent {
        let decision = server.decide(&purchase(id));
        // A request in flight when the server died was committed entirely or not at all;
        // one that was answered must come back as a replay of the same answer.
        if let Some(first) = answered.get(id) {
            assert_eq!(decision["replayed"], true, "answered `{id}` was lost");
            assert_eq!(decision["balances"], first["balances"]);
            assert_eq!(decision["allow"], first["allow"]);
        }
        assert_eq!(decision["allow"], true, "{decision}");
        allowed += 1;
    }
    // Nothing half-applied: the balance is exactly the start less every recorded purchase.
    let (_, card) = server.get("/v1/programs/albertslund/cards/LOAD-1");
    assert_eq!(card["balances"]["DKK"], START - allowed * PRICE);
}

/// Runs the `cardrules` command and expects success; returns its stdout.
fn cardrules(args: &[&str]) -> String {
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

#[test]
fn with_a_trust_file_only_signed_policies_serve_and_unsigned_updates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&shipped_policies(), &policies);
    let key = dir.path().join("bergen-kommune");
    cardrules(&["keygen", "--out", key.to_str().unwrap()]);
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let trust = dir.path().join("trust.toml");
    std::fs::write(
        &trust,
        format!("[programs]\nbergen = [\"{}\"]\n", public.trim()),
    )
    .unwrap();
    let secret = key.with_extension("key");
    cardrules(&[
        "sign",
        "--key",
        secret.to_str().unwrap(),
        policies.join("bergen").to_str().unwrap(),
    ]);

    let dir = Arc::new(dir);
    let server = Server::start_with(dir.clone(), &["--trust", trust.to_str().unwrap()]);
    // Only bergen is signed by a trusted key; the others are refused, saying why.
    let (_, all) = server.get("/v1/programs");
    let serving: Vec<&str> = all["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["program"].as_str().unwrap())
        .collect();
    assert_eq!(serving, ["bergen"]);
    let refused = all["refused"].to_string();
    assert!(refused.contains("unsigned: no `policy.sig`"), "{refused}");
    let mut elsewhere = kino("A-3001", None);
    elsewhere["program"] = "antwerpen".into();
    let (status, error) = server.post("/v1/decisions", &elsewhere.to_string());
    assert_eq!(status, 503, "{error}");
    assert!(server.decide(&kino("AK-1001", None))["allow"] == true);

    // A rebuilt component without a new signature is refused; signed, it serves.
    let bergen = policies.join("bergen");
    let signed_digest = server.digest("bergen");
    let rebuilt = rebuilt(
        &std::fs::read(bergen.join("bergen.wasm")).unwrap(),
        "unsigned",
    );
    replace(&bergen.join("bergen.wasm"), &rebuilt);
    eventually("the unsigned update is refused", &server, || {
        server.get("/v1/programs").1["refused"]
            .to_string()
            .contains("the component was changed after signing")
    });
    assert_eq!(server.digest("bergen"), signed_digest);
    cardrules(&[
        "sign",
        "--key",
        secret.to_str().unwrap(),
        bergen.to_str().unwrap(),
    ]);
    let new_digest = format!("sha256:{}", sha256_hex(&rebuilt));
    eventually("the signed update serves", &server, || {
        server.digest("bergen") == new_digest
    });
}

fn host_on(database: &Database) -> Server {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    Server::start_on(Arc::new(dir), &database.url, &["--allow-unsigned"])
}

#[test]
fn two_hosts_on_one_postgres_ledger_cannot_both_win_and_lose_nothing_to_a_sigkill() {
    let Some(database) = Database::fresh() else {
        return;
    };
    let hosts = [Arc::new(host_on(&database)), Arc::new(host_on(&database))];
    const TILLS: usize = 16;
    for i in 0..TILLS {
        let holder = r#"{"birth-date":"2012-01-01","municipality":"bergen"}"#;
        let (status, _) = hosts[i % 2].put(&format!("/v1/programs/bergen/holders/KID-{i}"), holder);
        assert_eq!(status, 201);
    }
    // The last 2 places of `klatring-bratte-rom`, from both hosts at once.
    let decisions = race_on(
        &hosts,
        (0..TILLS)
            .map(|i| {
                json!({"program": "bergen", "card": format!("KID-{i}"), "action": "redeem",
                       "offer": "klatring-bratte-rom", "at": "2024-08-01T09:00:00+02:00"})
            })
            .collect(),
    );
    assert_eq!(
        decisions.iter().filter(|d| d["allow"] == true).count(),
        2,
        "{decisions:#?}"
    );

    // The last øre, from both hosts at once; each host then sees the same balance.
    let holder = r#"{"birth-date":"2012-01-01","municipality":"albertslund",
                     "statuses":["member:storagergard"],"balances":{"DKK":1000}}"#;
    assert_eq!(
        hosts[0]
            .put("/v1/programs/albertslund/holders/RACE-1", holder)
            .0,
        201
    );
    let decisions = race_on(
        &hosts,
        (0..TILLS)
            .map(|i| {
                json!({"program": "albertslund", "card": "RACE-1", "action": "purchase",
                       "offer": "sg-perler", "amount": 600, "id": format!("till-{i}"),
                       "at": "2024-05-07T16:00:00+02:00"})
            })
            .collect(),
    );
    assert_eq!(
        decisions.iter().filter(|d| d["allow"] == true).count(),
        1,
        "{decisions:#?}"
    );
    for host in &hosts {
        assert_eq!(
            host.get("/v1/programs/albertslund/cards/RACE-1").1["balances"]["DKK"],
            400
        );
    }

    // The same request id sent to both hosts at once commits once.
    let holder = r#"{"birth-date":"2012-01-01","municipality":"albertslund",
                     "statuses":["member:storagergard"],"balances":{"DKK":1000}}"#;
    assert_eq!(
        hosts[1]
            .put("/v1/programs/albertslund/holders/TWICE-1", holder)
            .0,
        201
    );
    let twice = json!({"program": "albertslund", "card": "TWICE-1", "action": "purchase",
                       "offer": "sg-perler", "amount": 100, "id": "same-id",
                       "at": "2024-05-07T16:00:00+02:00"});
    let decisions = race_on(&hosts, vec![twice.clone(), twice]);
    assert!(
        decisions.iter().all(|d| d["allow"] == true),
        "{decisions:#?}"
    );
    assert_eq!(
        decisions.iter().filter(|d| d["replayed"] == true).count(),
        1,
        "{decisions:#?}"
    );
    assert_eq!(
        hosts[0].get("/v1/programs/albertslund/cards/TWICE-1").1["balances"]["DKK"],
        900
    );

    // Tills on both hosts buy as fast as they can; one host is killed mid-load.
    const START: i64 = 10_000_000;
    const PRICE: i64 = 100;
    let holder = json!({"birth-date": "2012-01-01", "municipality": "albertslund",
                        "statuses": ["member:storagergard"], "balances": {"DKK": START}});
    assert_eq!(
        hosts[0]
            .put(
                "/v1/programs/albertslund/holders/LOAD-1",
                &holder.to_string()
            )
            .0,
        201
    );
    let purchase = |id: &str| {
        json!({"program": "albertslund", "card": "LOAD-1", "action": "purchase",
               "offer": "sg-perler", "amount": PRICE, "id": id,
               "at": "2024-05-07T16:00:00+02:00"})
    };
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let answered = Arc::new(Mutex::new(BTreeMap::<String, Value>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let tills: Vec<_> = (0..4)
        .map(|till| {
            let url = hosts[till % 2].url("/v1/decisions");
            let (sent, answered, stop) = (sent.clone(), answered.clone(), stop.clone());
            std::thread::spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let id = format!("till-{till}/{n}");
                    sent.lock().unwrap().push(id.clone());
                    let body = purchase(&id).to_string();
                    let Ok(mut response) = agent().post(&url).send(&body) else {
                        if till % 2 == 0 {
                            return; // the killed host is gone
                        }
                        continue;
                    };
                    let Ok(text) = response.body_mut().read_to_string() else {
                        continue;
                    };
                    let decision: Value = serde_json::from_str(&text).unwrap();
                    answered.lock().unwrap().insert(id, decision);
                }
            })
        })
        .collect();
    let [killed, survivor] = hosts;
    eventually("both hosts answer under load", &survivor, || {
        let answered = answered.lock().unwrap();
        let by = |till: &str| answered.keys().filter(|id| id.starts_with(till)).count();
        by("till-0/") >= 50 && by("till-1/") >= 50
    });
    let mut killed = Arc::try_unwrap(killed)
        .ok()
        .expect("no other handle on the host");
    killed.child.kill().unwrap(); // SIGKILL, mid-load
    killed.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for till in tills {
        till.join().unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    // The kill caught requests in flight on the killed host: sent, never answered.
    let in_flight = sent
        .iter()
        .filter(|id| id.starts_with("till-0/") || id.starts_with("till-2/"))
        .filter(|id| !answered.contains_key(*id))
        .count();
    assert!(in_flight >= 1, "nothing was in flight at the kill");
    let mut allowed = 0;
    for id in &sent {
        let decision = survivor.decide(&purchase(id));
        if let Some(first) = answered.get(id) {
            assert_eq!(decision["replayed"], true, "answered `{id}` was lost");
            assert_eq!(decision["balances"], first["balances"]);
        }
        assert_eq!(decision["allow"], true, "{decision}");
        allowed += 1;
    }
    let (_, card) = survivor.get("/v1/programs/albertslund/cards/LOAD-1");
    assert_eq!(card["balances"]["DKK"], START - allowed * PRICE);
}

/// A new token made by `cardrules token ARGS`: the token and its `[[tokens]]` entry.
fn make_token(args: &[&str]) -> (String, String) {
    let out = cardrules(&[&["token"], args].concat());
    let token = out
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("token: "))
        .unwrap_or_else(|| panic!("no token in {out:?}"))
        .to_string();
    let entry = out[out.find("[[tokens]]").expect("an entry")..].to_string();
    assert!(
        !entry.contains(&token),
        "the entry holds the hash, not the token"
    );
    (token, entry)
}

/// A request as the caller holding `token` (none: no `Authorization` header) sends it.
fn call(
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
        "POST" | "PUT" => {
            let mut request = if method == "POST" {
                agent.post(&url)
            } else {
                agent.put(&url)
            };
            if let Some(bearer) = &bearer {
                request = request.header("Authorization", bearer);
            }
            answer(request.send(body))
        }
        _ => unreachable!("{method}"),
    }
}

fn purchase(program: &str, action: &str) -> String {
    json!({"program": program, "card": "BK-2002", "action": action, "offer": "sg-perler",
           "amount": 1500, "at": "2024-05-07T16:00:00+02:00", "dry-run": true})
    .to_string()
}

#[test]
fn with_auth_each_role_gets_its_routes_programs_and_actions_and_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let (till_token, till_entry) = make_token(&[
        "--name",
        "bakkens-hjerte-till-1",
        "--role",
        "terminal",
        "--program",
        "albertslund",
        "--action",
        "purchase",
    ]);
    let (desk_token, desk_entry) = make_token(&[
        "--name",
        "borgerservice-desk",
        "--role",
        "registrar",
        "--program",
        "albertslund",
        "--program",
        "bergen",
    ]);
    let (ops_token, ops_entry) =
        make_token(&["--name", "ops", "--role", "admin", "--program", "*"]);
    let (till, desk, ops) = (till_token.as_str(), desk_token.as_str(), ops_token.as_str());
    let auth = dir.path().join("auth.toml");
    std::fs::write(&auth, format!("{till_entry}\n{desk_entry}\n{ops_entry}")).unwrap();
    let server = Server::start_with(
        Arc::new(dir),
        &["--allow-unsigned", "--auth", auth.to_str().unwrap()],
    );
    let log = server.log();
    assert!(
        log.contains("callers need a bearer token: 3 known"),
        "{log}"
    );

    // Liveness, readiness and the API's description need nothing, whoever calls.
    for path in ["/healthz", "/readyz", "/v1/openapi.json"] {
        for token in [None, Some("not-a-token"), Some(till), Some(desk), Some(ops)] {
            let (status, body) = call(&server, token, "GET", path, "");
            assert_eq!(status, 200, "{path} with {token:?}: {body}");
        }
    }

    let holder = r#"{"birth-date":"2012-01-01","municipality":"albertslund"}"#;
    let decision = purchase("albertslund", "purchase");
    let routes: [(&str, &str, &str, &str); 5] = [
        ("POST", "/v1/decisions", &decision, "POST /v1/decisions"),
        (
            "GET",
            "/v1/programs/albertslund/cards/BK-2002",
            "",
            "GET /v1/programs/{program}/cards/{card}",
        ),
        (
            "PUT",
            "/v1/programs/albertslund/holders/NEW-1",
            holder,
            "PUT /v1/programs/{program}/holders/{card}",
        ),
        ("GET", "/v1/programs", "", "GET /v1/programs"),
        ("GET", "/metrics", "", "GET /metrics"),
    ];
    // Without a known token: 401 on every route, naming it, never the token.
    for (method, path, body, _) in routes {
        for token in [
            None,
            Some("not-a-token"),
            Some(sha256_hex(ops.as_bytes()).as_str()),
        ] {
            let (status, error) = call(&server, token, method, path, body);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {error}");
            let message = error["error"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("`{method} {path}`: ")),
                "{message}"
            );
            let expected = if token.is_some() {
                "unknown bearer token"
            } else {
                "Authorization: Bearer <token>"
            };
            assert!(message.contains(expected), "{message}");
        }
    }
    let mut basic = agent().get(server.url("/v1/programs"));
    basic = basic.header("Authorization", format!("Basic {ops}"));
    let response = basic.call().unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    // Each role × route: allowed, or 403 naming the route and the role it needs.
    let rights = [
        (till, [true, true, false, false, false]),
        (desk, [true, true, true, false, false]),
        (ops, [true, true, true, true, true]),
    ];
    for (token, allowed) in rights {
        for ((method, path, body, route), allowed) in routes.into_iter().zip(allowed) {
            let (status, answer) = call(&server, Some(token), method, path, body);
            if allowed {
                assert!(
                    [200, 201].contains(&status),
                    "{method} {path}: {status} {answer}"
                );
            } else {
                assert_eq!(status, 403, "{method} {path}: {answer}");
                let message = answer["error"].as_str().unwrap();
                assert!(
                    message.contains(&format!("may not call `{route}`")),
                    "{message}"
                );
                assert!(!message.contains(token));
            }
        }
    }

    // Programs: a token acts for its programs only, known or not.
    for (token, method, path, body) in [
        (
            till,
            "POST",
            "/v1/decisions",
            purchase("bergen", "purchase"),
        ),
        (
            till,
            "POST",
            "/v1/decisions",
            purchase("gotham", "purchase"),
        ),
        (
            till,
            "GET",
            "/v1/programs/bergen/cards/AK-1001",
            String::new(),
        ),
        (
            desk,
            "GET",
            "/v1/programs/antwerpen/cards/A-3001",
            String::new(),
        ),
        (
            desk,
            "PUT",
            "/v1/programs/antwerpen/holders/X-1",
            holder.to_string(),
        ),
        (
            desk,
            "POST",
            "/v1/decisions",
            purchase("antwerpen", "purchase"),
        ),
    ] {
        let (status, error) = call(&server, Some(token), method, path, &body);
        assert_eq!(status, 403, "{method} {path} {body}: {error}");
        let message = error["error"].as_str().unwrap();
        assert!(
            message.starts_with("this token may not act for program `"),
            "{message}"
        );
    }
    assert_eq!(
        call(
            &server,
            Some(desk),
            "GET",
            "/v1/programs/bergen/cards/AK-1001",
            ""
        )
        .0,
        200
    );
    assert_eq!(
        call(
            &server,
            Some(ops),
            "POST",
            "/v1/decisions",
            &purchase("gotham", "purchase")
        )
        .0,
        404
    );

    // Actions: the terminal's list restricts it; the registrar may ask for any.
    let (status, error) = call(
        &server,
        Some(till),
        "POST",
        "/v1/decisions",
        &purchase("albertslund", "top-up"),
    );
    assert_eq!(status, 403, "{error}");
    assert_eq!(
        error["error"],
        "this token may not ask for action `top-up` (it may ask for `purchase`)"
    );
    let (status, _) = call(
        &server,
        Some(desk),
        "POST",
        "/v1/decisions",
        &purchase("albertslund", "top-up"),
    );
    assert_eq!(status, 200);

    // Starting balances: a registrar may not create a card with one; an admin may.
    let funded =
        r#"{"birth-date":"2012-01-01","municipality":"albertslund","balances":{"DKK":5000}}"#;
    let (status, error) = call(
        &server,
        Some(desk),
        "PUT",
        "/v1/programs/albertslund/holders/RICH-1",
        funded,
    );
    assert_eq!(status, 403, "{error}");
    assert_eq!(
        error["error"],
        "role `registrar` may not give a card starting balances (`DKK`): that needs role `admin`"
    );
    assert_eq!(
        call(
            &server,
            Some(ops),
            "GET",
            "/v1/programs/albertslund/cards/RICH-1",
            ""
        )
        .0,
        404
    );
    let (status, card) = call(
        &server,
        Some(ops),
        "PUT",
        "/v1/programs/albertslund/holders/RICH-1",
        funded,
    );
    assert_eq!(status, 201, "{card}");
    assert_eq!(card["balances"]["DKK"], 5000);
    let zero = r#"{"birth-date":"2012-01-01","municipality":"albertslund","balances":{"DKK":0}}"#;
    assert_eq!(
        call(
            &server,
            Some(desk),
            "PUT",
            "/v1/programs/albertslund/holders/POOR-1",
            zero
        )
        .0,
        201
    );

    // Unknown routes need a token too; with one they are a 404.
    assert_eq!(call(&server, None, "GET", "/v2/nothing", "").0, 401);
    assert_eq!(call(&server, Some(ops), "GET", "/v2/nothing", "").0, 404);

    // Logs name the caller with each decision, and never hold a token.
    let log = server.log();
    let decision_line = log
        .lines()
        .find(|line| line.contains("decision") && line.contains("bakkens-hjerte-till-1"))
        .unwrap_or_else(|| panic!("no decision logged with the till's name:\n{log}"));
    assert!(decision_line.contains("albertslund"), "{decision_line}");
    assert!(log.contains("borgerservice-desk"));
    for secret in [till, desk, ops] {
        assert!(!log.contains(secret), "a token is in the log");
    }
}

#[test]
fn without_auth_only_loopback_addresses_are_served_unless_insecure_no_auth() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let policies = dir.path().join("policies");
    let ledger = dir.path().join("ledger.sqlite");
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8080"] {
        let out = Command::new(env!("CARGO_BIN_EXE_cardrules"))
            .arg("serve")
            .arg("--policies")
            .arg(&policies)
            .arg("--ledger")
            .arg(&ledger)
            .args(["--listen", listen, "--allow-unsigned"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "error: refusing to listen on `{listen}` without `--auth`: it is not a loopback address"
            )),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    assert!(!ledger.exists(), "refused before the ledger is opened");

    let dir = Arc::new(dir);
    let open = Server::start_listening(
        dir.clone(),
        ledger.to_str().unwrap(),
        "0.0.0.0:0",
        &["--allow-unsigned", "--insecure-no-auth"],
    );
    assert!(
        open.log()
            .contains("WITHOUT ACCESS CONTROL (`--insecure-no-auth`)"),
        "{}",
        open.log()
    );
    let port = open.base.rsplit_once(':').unwrap().1;
    let (status, _) = answer(
        agent()
            .get(format!("http://127.0.0.1:{port}/v1/programs"))
            .call(),
    );
    assert_eq!(status, 200);
    drop(open);

    let local = Server::start_with(dir, &["--allow-unsigned"]);
    assert!(
        local.log().contains(
            "no `--auth`: every caller may do everything, so only loopback addresses are served"
        ),
        "{}",
        local.log()
    );
    assert_eq!(local.get("/v1/programs").0, 200);
}

#[test]
fn an_unknown_method_is_a_405_with_a_json_error() {
    let server = Server::start();
    let (status, body) = answer(agent().delete(server.url("/v1/decisions")).call());
    assert_eq!(status, 405, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("`DELETE /v1/decisions` is not a route"),
        "{body}"
    );
}

#[test]
fn a_shadow_candidate_is_compared_on_the_same_state_without_touching_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    // The candidate: Bergen kino's yearly limit lowered from 4 to 2.
    let candidate = dir.path().join("candidate");
    copy_dir(&shipped_policies(), &candidate);
    let catalogue = candidate.join("bergen/catalogue.toml");
    let text = std::fs::read_to_string(&catalogue).unwrap();
    let lowered = text.replacen(
        "location = \"bergen-kino\"\nyearly-limit = 4",
        "location = \"bergen-kino\"\nyearly-limit = 2",
        1,
    );
    assert_ne!(text, lowered);
    std::fs::write(&catalogue, lowered).unwrap();
    let shadow = candidate.display().to_string();
    let server = Server::start_with(Arc::new(dir), &["--allow-unsigned", "--shadow", &shadow]);

    for month in 1..=4 {
        let request = json!({"program": "bergen", "card": "AK-1001", "action": "redeem",
                             "offer": "bergen-kino", "id": format!("kino-{month}"),
                             "at": format!("2024-0{month}-10T17:00:00+01:00")});
        // The answers are the serving version's: all four visits allowed.
        assert_eq!(server.decide(&request)["allow"], true);
    }
    eventually("the shadow has compared the four visits", &server, || {
        let (_, all) = server.get("/v1/programs");
        let bergen = &all["shadow"]["bergen"];
        bergen["agreed"].as_u64().unwrap_or(0) + bergen["differed"].as_u64().unwrap_or(0) >= 4
    });
    let (_, all) = server.get("/v1/programs");
    let bergen = &all["shadow"]["bergen"];
    assert_eq!(bergen["agreed"], 2, "{all:#}");
    assert_eq!(bergen["differed"], 2, "{all:#}");
    assert_eq!(
        bergen["transitions"],
        json!([{"from": "allow", "to": "quota-exhausted", "count": 2}])
    );
    assert!(server.log().contains("shadow differs"), "{}", server.log());
    // The same tallies as metrics.
    let metrics = metrics_of(&server);
    let compared = |outcome| {
        metrics.value(
            "cardrules_shadow_comparisons_total",
            &[("program", "bergen"), ("outcome", outcome)],
        )
    };
    assert_eq!((compared("same"), compared("changed")), (2.0, 2.0));
    // Nothing of the candidate was committed: the card's visits are the served ones.
    let fifth = json!({"program": "bergen", "card": "AK-1001", "action": "redeem",
                       "offer": "bergen-kino", "at": "2024-05-10T17:00:00+02:00"});
    assert_eq!(server.decide(&fifth)["reason"], "quota-exhausted");
}

/// Writes program `name` into `policies`: the hostile guest that loops until a limit stops
/// it, with `limits` as its manifest's `[limits]`, and one demo holder, `H-1`.
fn looping_program(policies: &Path, name: &str, limits: &str) {
    let dir = policies.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let guests = Path::new(env!("CARDRULES_GUESTS_DIR"));
    std::fs::copy(guests.join("hostile_loop.wasm"), dir.join("policy.wasm")).unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"program = "hostile-loop"
name = "A policy that loops"
time-zone = "Europe/Oslo"
languages = ["en"]
component = "policy.wasm"
assets = ["DKK"]

[limits]
{limits}

[messages]
ok = {{ en = "Allowed." }}
bad-request = {{ en = "Bad request." }}
unknown-action = {{ en = "Unknown action." }}
"#
        ),
    )
    .unwrap();
    std::fs::write(dir.join("catalogue.toml"), "# no offers\n").unwrap();
    std::fs::write(
        dir.join("holders.toml"),
        "[[holders]]\ncard = \"H-1\"\nbirth-date = \"2010-01-01\"\nmunicipality = \"nowhere\"\n",
    )
    .unwrap();
}

fn loop_request() -> String {
    json!({"program": "hostile-loop", "card": "H-1", "action": "attack",
           "at": "2024-03-01T18:00:00+01:00"})
    .to_string()
}

/// A server over the shipped policies and `hostile-loop` (each decision runs until the
/// fuel limit or the 2 s deadline stops it), with `extra` flags.
fn server_with_a_slow_program(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&shipped_policies(), &policies);
    looping_program(
        &policies,
        "hostile-loop",
        "fuel = 1_000_000_000\ndeadline-ms = 2_000",
    );
    Server::start_with(Arc::new(dir), &[&["--allow-unsigned"], extra].concat())
}

#[test]
fn past_max_in_flight_the_answer_is_503_at_once_with_retry_after_and_readyz_says_why() {
    let server = Arc::new(server_with_a_slow_program(&["--max-in-flight", "1"]));
    let (status, ready) = server.get("/readyz");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["max-in-flight"], 1);

    // A till keeps the one place busy with slow decisions until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let slow = {
        let (server, stop) = (server.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut answered = 0;
            while !stop.load(Ordering::SeqCst) {
                let (status, decision) = server.post("/v1/decisions", &loop_request());
                if status == 200 {
                    assert_eq!(decision["reason"], "policy-error", "{decision}");
                    answered += 1;
                }
            }
            answered
        })
    };
    // Readiness says so while the place is taken…
    let mut not_ready = Value::Null;
    eventually("/readyz reports the bound reached", &server, || {
        let (status, ready) = server.get("/readyz");
        let full = status == 503
            && ready["reasons"].as_array().unwrap().iter().any(|r| {
                r.as_str()
                    .unwrap()
                    .contains("every place for work in flight is taken")
            });
        if full {
            not_ready = ready;
        }
        full
    });
    assert_eq!(not_ready["ready"], false);
    assert!(
        not_ready["error"]
            .as_str()
            .unwrap()
            .starts_with("not ready: "),
        "{not_ready}"
    );
    conforms(
        &server.get("/v1/openapi.json").1,
        "GET",
        "/readyz",
        503,
        &not_ready,
    );
    // …and a decision that finds it taken is refused at once, not queued.
    let mut refused = None;
    eventually("a decision is refused with a 503", &server, || {
        let started = Instant::now();
        let response = agent()
            .post(server.url("/v1/decisions"))
            .send(kino("AK-1001", None).to_string())
            .unwrap();
        if response.status() == 503 {
            refused = Some((started.elapsed(), response));
            true
        } else {
            false
        }
    });
    let (took, mut response) = refused.unwrap();
    // The slow decision takes up to 2 s; a queued answer would have waited for it.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(response.headers()["retry-after"], "1");
    let error: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    let spec = server.get("/v1/openapi.json").1;
    conforms(&spec, "POST", "/v1/decisions", 503, &error);
    let message = error["error"].as_str().unwrap();
    assert!(
        message.starts_with("the server is busy: 1 requests are in flight"),
        "{message}"
    );
    assert!(message.contains("`--max-in-flight`"), "{message}");

    stop.store(true, Ordering::SeqCst);
    assert!(
        slow.join().unwrap() >= 1,
        "the slow decisions were answered"
    );
    // Once the place is free, decisions are answered again and the server is ready.
    assert_eq!(server.decide(&kino("AK-1001", None))["allow"], true);
    assert_eq!(server.get("/readyz").0, 200);
    let metrics = metrics_of(&server);
    assert!(metrics.value("cardrules_overload_rejections_total", &[]) >= 1.0);
    assert_eq!(metrics.value("cardrules_max_in_flight", &[]), 1.0);
}

#[test]
fn request_heads_and_bodies_are_bounded_in_size_and_time() {
    let server = Server::start_with(
        Arc::new({
            let dir = tempfile::tempdir().unwrap();
            copy_dir(&shipped_policies(), &dir.path().join("policies"));
            dir
        }),
        &[
            "--allow-unsigned",
            "--max-header-bytes",
            "4096",
            "--idle-timeout",
            "2",
        ],
    );
    let big = "x".repeat(8_000);
    let response = agent()
        .get(server.url("/healthz"))
        .header("X-Padding", &big)
        .call();
    // hyper answers 431 and closes; a client may also see the close first.
    if let Ok(response) = response {
        assert_eq!(response.status(), 431);
    }
    let small = "x".repeat(1_000);
    let (status, _) = answer(
        agent()
            .get(server.url("/healthz"))
            .header("X-Padding", &small)
            .call(),
    );
    assert_eq!(status, 200);

    // A body that stops half-way is answered 408 once the idle timeout has passed…
    use std::io::{Read, Write};
    let address = server.base.strip_prefix("http://").unwrap().to_string();
    let mut stalled = std::net::TcpStream::connect(&address).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stalled
        .write_all(
            b"POST /v1/decisions HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{\"pro",
        )
        .unwrap();
    let mut answer = String::new();
    stalled.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"cannot read request: the body did not arrive within 2 s"}"#),
        "{answer}"
    );
    // …and a connection that sends nothing, or half a head, is closed by the server.
    for sent in [&b""[..], b"GET /healthz HTTP/1.1\r\nHo"] {
        let mut silent = std::net::TcpStream::connect(&address).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        silent.write_all(sent).unwrap();
        let mut rest = Vec::new();
        // EOF (or a reset) from the server, well before the read timeout.
        let closed = silent.read_to_end(&mut rest);
        assert!(
            closed.is_ok()
                || closed
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{closed:?}"
        );
        assert!(
            rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// Sets this process's soft limit on open files to at least `files` (within the hard
/// limit), for tests that hold many connections.
fn allow_open_files(files: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < files {
            assert!(
                limit.rlim_max == libc::RLIM_INFINITY || limit.rlim_max >= files,
                "the hard limit on open files ({}) is below {files}",
                limit.rlim_max
            );
            limit.rlim_cur = files;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

#[test]
fn under_ulimit_1024_eleven_hundred_idle_connections_do_not_stop_decisions() {
    allow_open_files(4096);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_cardrules"))
        .arg("serve")
        .arg("--policies")
        .arg(dir.path().join("policies"))
        .arg("--ledger")
        .arg(dir.path().join("ledger.sqlite"))
        .args(["--listen", "127.0.0.1:0", "--allow-unsigned"])
        .args(["--idle-timeout", "3"]);
    let server = Server::spawn(Arc::new(dir), command);
    let address = server.base.strip_prefix("http://").unwrap().to_string();

    let idle: Vec<std::net::TcpStream> = (0..1_100)
        .map(|i| {
            std::net::TcpStream::connect(&address)
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect();
    // With 1 024 files, the server takes 896 connections; the rest wait in the backlog
    // until idle ones time out. Decisions are answered all the same.
    let started = Instant::now();
    for n in 0..3 {
        let (status, decision) = server.post(
            "/v1/decisions",
            &kino("AK-1001", Some(&format!("idle-{n}"))).to_string(),
        );
        assert_eq!(status, 200, "{decision}");
        assert_eq!(decision["allow"], true);
    }
    assert_eq!(server.get("/healthz").0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    let log = server.log();
    assert!(
        log.contains("896 connections open, the most allowed (`--max-connections`)"),
        "{log}"
    );
    assert!(!log.contains("Too many open files"), "{log}");
    drop(idle);
}

#[test]
fn sigterm_stops_promptly_with_a_half_sent_request_open() {
    use std::io::{Read, Write};
    let server = Server::start();
    let address = server.base.strip_prefix("http://").unwrap().to_string();
    // A connection the server has surely accepted (it answered on it), then left with
    // half a request's head; and one idle between requests.
    let mut half = std::net::TcpStream::connect(&address).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut answered = [0u8; 12];
    half.read_exact(&mut answered).unwrap();
    assert_eq!(&answered, b"HTTP/1.1 200");
    half.write_all(b"POST /v1/decisions HTTP/1.1\r\nHost: test\r\nContent-Le")
        .unwrap();
    let mut idle = std::net::TcpStream::connect(&address).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    idle.read_exact(&mut answered).unwrap();

    let dir = server.dir.clone();
    let started = Instant::now();
    let status = server.terminate();
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    // The idle timeout is 30 s and the grace for requests in flight 10 s: a stop held up
    // by either would take longer than this.
    assert!(took < Duration::from_secs(8), "SIGTERM took {took:?}");
    assert!(log_of(&dir).contains("shut down"), "{}", log_of(&dir));
}

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM,
/// certificate DER).
fn self_signed() -> (String, String, Vec<u8>) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    (
        made.cert.pem(),
        made.signing_key.serialize_pem(),
        made.cert.der().to_vec(),
    )
}

fn agent_trusting(der: &[u8]) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let roots = RootCerts::Specific(Arc::new(vec![Certificate::from_der(der).to_owned()]));
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build()
        .into()
}

#[test]
fn with_tls_the_api_is_served_over_https_only_and_auth_still_applies() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let (cert, key, der) = self_signed();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let (ops, entry) = make_token(&["--name", "ops", "--role", "admin", "--program", "*"]);
    let auth = dir.path().join("auth.toml");
    std::fs::write(&auth, entry).unwrap();
    let server = Server::start_with(
        Arc::new(dir),
        &[
            "--allow-unsigned",
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
            "--auth",
            auth.to_str().unwrap(),
        ],
    );
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let tls = agent_trusting(&der);

    let (status, _) = answer(tls.get(server.url("/healthz")).call());
    assert_eq!(status, 200);
    // Auth applies over TLS as over plain HTTP.
    let (status, _) = answer(tls.get(server.url("/v1/programs")).call());
    assert_eq!(status, 401);
    let (status, decision) = answer(
        tls.post(server.url("/v1/decisions"))
            .header("Authorization", format!("Bearer {ops}"))
            .send(kino("AK-1001", None).to_string()),
    );
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["allow"], true);

    // Plain HTTP on the TLS port gets no answer, and a client that does not trust the
    // certificate gets none either.
    let plain = server.base.replacen("https://", "http://", 1);
    assert!(agent().get(format!("{plain}/healthz")).call().is_err());
    assert!(agent().get(server.url("/healthz")).call().is_err());
    // And the server still serves after both.
    assert_eq!(answer(tls.get(server.url("/healthz")).call()).0, 200);
}

#[test]
fn missing_or_unusable_tls_files_stop_serve_at_once_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let (cert, key, _) = self_signed();
    let (_, other_key, _) = self_signed();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert, key) = (write("cert.pem", &cert), write("key.pem", &key));
    let other_key = write("other-key.pem", &other_key);
    let garbage = write("garbage.pem", "not pem at all\n");
    let missing = dir.path().join("missing.pem").display().to_string();
    let cases = [
        (
            &missing,
            &key,
            format!("cannot read TLS certificate `{missing}`: "),
        ),
        (
            &cert,
            &missing,
            format!("cannot read TLS key `{missing}`: "),
        ),
        (
            &garbage,
            &key,
            format!("cannot use TLS certificate `{garbage}`: it holds no PEM `CERTIFICATE` block"),
        ),
        (
            &cert,
            &garbage,
            format!("cannot use TLS key `{garbage}`: it holds no PEM private key"),
        ),
        (
            &cert,
            &other_key,
            format!("cannot use TLS key `{other_key}` with certificate `{cert}`: "),
        ),
    ];
    for (cert, key, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_cardrules"))
            .arg("serve")
            .arg("--policies")
            .arg(dir.path().join("policies"))
            .arg("--ledger")
            .arg(dir.path().join("ledger.sqlite"))
            .args(["--listen", "127.0.0.1:0", "--allow-unsigned"])
            .args(["--tls-cert", cert, "--tls-key", key])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("error: {expected}")),
            "{expected}\n{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    assert!(
        !dir.path().join("ledger.sqlite").exists(),
        "refused before the ledger is opened"
    );
}

/// The samples of a scrape of `/metrics`, by name and labels.
struct Metrics(Vec<(String, BTreeMap<String, String>, f64)>);

impl Metrics {
    /// Parses the text format: `name{label="value",…} number` lines, `#` comments.
    fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                    let labels = rest
                        .split("\",")
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (key, value) = pair.split_once("=\"").unwrap();
                            (key.to_string(), value.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name, labels)
                }
            };
            samples.push((name.to_string(), labels, value));
        }
        Metrics(samples)
    }

    /// The sum of the samples named `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

fn metrics_of(server: &Server) -> Metrics {
    let mut response = agent().get(server.url("/metrics")).call().unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let text = response.body_mut().read_to_string().unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    Metrics::parse(&text)
}

#[test]
fn metrics_count_decisions_policy_errors_commits_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&shipped_policies(), &policies);
    looping_program(&policies, "hostile-loop", "fuel = 100_000");
    let server = Server::start_in(Arc::new(dir));
    let before = metrics_of(&server);
    let kino_allowed = [
        ("program", "bergen"),
        ("action", "redeem"),
        ("allow", "true"),
        ("reason", "ok"),
    ];
    assert_eq!(
        before.value("cardrules_decisions_total", &kino_allowed),
        0.0
    );

    for n in 0..3 {
        server.decide(&kino("AK-1001", Some(&format!("m-{n}"))));
    }
    // A replay is not a new decision.
    assert_eq!(
        server.decide(&kino("AK-1001", Some("m-0")))["replayed"],
        true
    );
    let unknown_card = server.decide(&kino("NOBODY", None));
    assert_eq!(unknown_card["reason"], "unknown-card");
    let mut made_up = kino("AK-1001", None);
    made_up["action"] = json!("made-up-action");
    server.decide(&made_up);
    let (_, error) = server.post("/v1/decisions", &loop_request());
    assert_eq!(error["reason"], "policy-error", "{error}");

    let after = metrics_of(&server);
    let served = after.value("cardrules_decisions_total", &kino_allowed);
    assert_eq!(served, 3.0, "{:?}", after.0);
    assert_eq!(
        after.value(
            "cardrules_decisions_replayed_total",
            &[("program", "bergen")]
        ),
        1.0
    );
    assert_eq!(
        after.value(
            "cardrules_decisions_total",
            &[
                ("program", "bergen"),
                ("allow", "false"),
                ("reason", "unknown-card")
            ]
        ),
        1.0
    );
    // What the caller made up is not a label.
    assert_eq!(
        after.value(
            "cardrules_decisions_total",
            &[("program", "bergen"), ("action", "other")]
        ),
        1.0
    );
    assert!(
        !after
            .0
            .iter()
            .any(|(_, l, _)| l.values().any(|v| v == "made-up-action"))
    );
    assert_eq!(
        after.value(
            "cardrules_policy_errors_total",
            &[("program", "hostile-loop"), ("kind", "fuel")]
        ),
        1.0
    );
    assert_eq!(
        after.value("cardrules_decision_seconds_count", &[("program", "bergen")]),
        5.0
    );
    assert!(after.value("cardrules_decision_seconds_sum", &[("program", "bergen")]) > 0.0);
    assert!(after.value("cardrules_decision_fuel_count", &[("program", "bergen")]) >= 3.0);
    assert!(after.value("cardrules_decision_fuel_sum", &[("program", "bergen")]) > 0.0);
    assert_eq!(
        after.value(
            "cardrules_decision_fuel_count",
            &[("program", "hostile-loop")]
        ),
        1.0
    );
    // Every committed decision went through the group commit (demo holders too).
    let commits = |m: &Metrics| m.value("cardrules_ledger_commit_seconds_count", &[]);
    assert!(commits(&after) >= commits(&before) + 1.0);
    assert!(after.value("cardrules_ledger_commit_batches_count", &[]) >= commits(&after));
    assert!(
        after.value("cardrules_ledger_changes_total", &[])
            >= before.value("cardrules_ledger_changes_total", &[]) + 5.0
    );
    assert_eq!(
        after.value("cardrules_ledger_commit_failures_total", &[]),
        0.0
    );
    assert_eq!(after.value("cardrules_in_flight", &[]), 0.0);
    assert!(after.value("cardrules_max_connections", &[]) >= 1.0);

    // Hot reloads: a good update is accepted, a broken one refused.
    let manifest = server.policies().join("bergen/policy.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    replace(&manifest, format!("{text}\n# touched\n").as_bytes());
    eventually("the reload is counted", &server, || {
        metrics_of(&server).value(
            "cardrules_reloads_total",
            &[("program", "bergen"), ("outcome", "accepted")],
        ) == 1.0
    });
    replace(
        &server.policies().join("antwerpen/policy.toml"),
        b"not = [toml",
    );
    eventually("the refusal is counted", &server, || {
        metrics_of(&server).value(
            "cardrules_reloads_total",
            &[("program", "antwerpen"), ("outcome", "refused")],
        ) == 1.0
    });
}

/// Checks a real answer of `method path` (the path as the description writes it) against
/// the description: the status must be documented, and a JSON body must match its schema
/// and use no property the schema does not declare.
fn conforms(spec: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let operation = &spec["paths"][path][method.to_lowercase()];
    assert!(operation.is_object(), "`{method} {path}` is not described");
    let response = &operation["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "`{method} {path}` answered {status}, which is not described: {body}"
    );
    let Some(schema) = response["content"]["application/json"]["schema"].as_object() else {
        return;
    };
    let mut root = schema.clone();
    root.insert("components".into(), spec["components"].clone());
    let root = Value::Object(root);
    let validator = jsonschema::validator_for(&root)
        .unwrap_or_else(|e| panic!("the schema of `{method} {path}` {status}: {e}"));
    let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "`{method} {path}` {status}: {body}\ndoes not match its schema: {errors:?}"
    );
    // Undeclared properties would pass the schema (it allows more); the description
    // must name every property answered.
    if let (Some(reference), Some(object)) = (schema.get("$ref"), body.as_object()) {
        let name = reference.as_str().unwrap().rsplit('/').next().unwrap();
        let declared = &spec["components"]["schemas"][name]["properties"];
        for key in object.keys() {
            assert!(
                declared.get(key).is_some(),
                "`{method} {path}` {status} answers `{key}`, which schema `{name}` does not declare"
            );
        }
    }
}

#[test]
fn the_openapi_description_covers_every_route_and_matches_real_answers() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let (ops, ops_entry) = make_token(&["--name", "ops", "--role", "admin", "--program", "*"]);
    let (till, till_entry) = make_token(&[
        "--name",
        "till",
        "--role",
        "terminal",
        "--program",
        "bergen",
    ]);
    let auth = dir.path().join("auth.toml");
    std::fs::write(&auth, format!("{ops_entry}\n{till_entry}")).unwrap();
    let server = Server::start_with(
        Arc::new(dir),
        &["--allow-unsigned", "--auth", auth.to_str().unwrap()],
    );
    let (status, spec) = call(&server, None, "GET", "/v1/openapi.json", "");
    assert_eq!(status, 200);
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3."),
        "{spec}"
    );

    // Every served route is described, and every described route is served.
    let served = [
        ("POST", "/v1/decisions"),
        ("GET", "/v1/programs"),
        ("PUT", "/v1/programs/{program}/holders/{card}"),
        ("GET", "/v1/programs/{program}/cards/{card}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/v1/openapi.json"),
    ];
    let mut described = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            described.push((method.to_uppercase(), path.clone()));
        }
    }
    described.sort();
    let mut expected: Vec<(String, String)> = served
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(described, expected);
    for (method, path) in &described {
        let concrete = path
            .replace("{program}", "bergen")
            .replace("{card}", "AK-1001");
        let (status, _) = call(&server, Some(&ops), method, &concrete, "{}");
        assert!(![404, 405].contains(&status), "{method} {path}: {status}");
    }
    // Protected routes name the bearer scheme; open ones do not.
    for (method, path) in served {
        let security = &spec["paths"][path][method.to_lowercase()]["security"];
        let open = ["/healthz", "/readyz", "/v1/openapi.json"].contains(&path);
        assert_eq!(security.is_null(), open, "{method} {path}: {security}");
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // Real answers of every route, good and bad, against the description.
    let huge = format!(r#"{{"program":"{}"}}"#, "x".repeat(100_000));
    let kino_once = kino("AK-1001", Some("openapi-1")).to_string();
    let mut reused = kino("AK-1001", Some("openapi-1"));
    reused["party"] = json!(1);
    let holder = r#"{"birth-date":"2012-01-01","municipality":"bergen"}"#;
    let decisions = "/v1/decisions";
    let holders = "/v1/programs/{program}/holders/{card}";
    let cards = "/v1/programs/{program}/cards/{card}";
    // (token, method, path as described, path called, body, status expected)
    type Case<'a> = (Option<&'a str>, &'a str, &'a str, &'a str, String, u16);
    let cases: Vec<Case<'_>> = vec![
        (
            Some(&ops),
            "POST",
            decisions,
            decisions,
            kino_once.clone(),
            200,
        ),
        (Some(&ops), "POST", decisions, decisions, "{".into(), 400),
        (None, "POST", decisions, decisions, kino_once.clone(), 401),
        (
            Some(&till),
            "POST",
            decisions,
            decisions,
            purchase("albertslund", "purchase"),
            403,
        ),
        (
            Some(&ops),
            "POST",
            decisions,
            decisions,
            purchase("gotham", "purchase"),
            404,
        ),
        (
            Some(&ops),
            "POST",
            decisions,
            decisions,
            reused.to_string(),
            409,
        ),
        (Some(&ops), "POST", decisions, decisions, huge.clone(), 400),
        (
            Some(&ops),
            "GET",
            "/v1/programs",
            "/v1/programs",
            String::new(),
            200,
        ),
        (
            None,
            "GET",
            "/v1/programs",
            "/v1/programs",
            String::new(),
            401,
        ),
        (
            Some(&till),
            "GET",
            "/v1/programs",
            "/v1/programs",
            String::new(),
            403,
        ),
        (
            Some(&ops),
            "PUT",
            holders,
            "/v1/programs/bergen/holders/OA-1",
            holder.into(),
            201,
        ),
        (
            Some(&ops),
            "PUT",
            holders,
            "/v1/programs/bergen/holders/OA-1",
            holder.into(),
            200,
        ),
        (
            Some(&ops),
            "PUT",
            holders,
            "/v1/programs/bergen/holders/OA-1",
            "[]".into(),
            400,
        ),
        (
            None,
            "PUT",
            holders,
            "/v1/programs/bergen/holders/OA-1",
            holder.into(),
            401,
        ),
        (
            Some(&till),
            "PUT",
            holders,
            "/v1/programs/bergen/holders/OA-1",
            holder.into(),
            403,
        ),
        (
            Some(&ops),
            "PUT",
            holders,
            "/v1/programs/gotham/holders/OA-1",
            holder.into(),
            404,
        ),
        (
            Some(&ops),
            "PUT",
            holders,
            "/v1/programs/bergen/holders/OA-1",
            huge.clone(),
            400,
        ),
        (
            Some(&ops),
            "GET",
            cards,
            "/v1/programs/bergen/cards/AK-1001",
            String::new(),
            200,
        ),
        (
            None,
            "GET",
            cards,
            "/v1/programs/bergen/cards/AK-1001",
            String::new(),
            401,
        ),
        (
            Some(&till),
            "GET",
            cards,
            "/v1/programs/albertslund/cards/BK-2002",
            String::new(),
            403,
        ),
        (
            Some(&ops),
            "GET",
            cards,
            "/v1/programs/bergen/cards/NOBODY",
            String::new(),
            404,
        ),
        (None, "GET", "/healthz", "/healthz", String::new(), 200),
        (None, "GET", "/readyz", "/readyz", String::new(), 200),
        (
            Some(&ops),
            "GET",
            "/metrics",
            "/metrics",
            String::new(),
            200,
        ),
        (None, "GET", "/metrics", "/metrics", String::new(), 401),
        (
            Some(&till),
            "GET",
            "/metrics",
            "/metrics",
            String::new(),
            403,
        ),
        (
            None,
            "GET",
            "/v1/openapi.json",
            "/v1/openapi.json",
            String::new(),
            200,
        ),
    ];
    for (token, method, path, concrete, body, expected) in cases {
        let (status, answer) = call(&server, token, method, concrete, &body);
        assert_eq!(status, expected, "{method} {concrete}: {answer}");
        conforms(&spec, method, path, status, &answer);
    }
    // 404 and 405 answers are the same error body.
    let (status, error) = call(&server, Some(&ops), "GET", "/v2/nothing", "");
    assert_eq!(status, 404);
    let (status, wrong_method) = call(&server, Some(&ops), "PUT", "/v1/decisions", "{}");
    assert_eq!(status, 405);
    conforms(&spec, "POST", decisions, 400, &error);
    conforms(&spec, "POST", decisions, 400, &wrong_method);
}

#[test]
fn readyz_says_when_decisions_have_been_queueing_too_long() {
    let server = Arc::new(server_with_a_slow_program(&["--queue-alarm", "1"]));
    assert_eq!(server.get("/readyz").0, 200);
    // Slow decisions on one program's lane (each burns 10⁹ fuel), enough of them that the
    // last waits for those before it well past the 1 s alarm however fast this machine
    // burns fuel: one decision is timed first. (Under the default 64 in flight.)
    let started = std::time::Instant::now();
    assert_eq!(server.post("/v1/decisions", &loop_request()).0, 200);
    let one = started.elapsed().as_secs_f64();
    let count = ((2.5 / one).ceil() as usize).clamp(4, 60);
    let tills: Vec<_> = (0..count)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || server.post("/v1/decisions", &loop_request()).0)
        })
        .collect();
    let mut reasons = Value::Null;
    eventually("/readyz reports queueing", &server, || {
        let (status, ready) = server.get("/readyz");
        let queueing = status == 503
            && ready["error"]
                .as_str()
                .is_some_and(|e| e.contains("decisions are queueing"));
        if queueing {
            reasons = ready;
        }
        queueing
    });
    assert!(reasons["oldest-ms"].as_u64().unwrap() > 1_000, "{reasons}");
    for till in tills {
        assert_eq!(till.join().unwrap(), 200);
    }
    assert_eq!(server.get("/readyz").0, 200);
}
