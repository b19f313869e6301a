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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("server.log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cardrules"))
            .arg("serve")
            .arg("--policies")
            .arg(dir.path().join("policies"))
            .args(["--ledger", ledger])
            .args(["--listen", listen])
            .args(extra)
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

    // Liveness needs nothing.
    assert_eq!(call(&server, None, "GET", "/healthz", "").0, 200);

    let holder = r#"{"birth-date":"2012-01-01","municipality":"albertslund"}"#;
    let decision = purchase("albertslund", "purchase");
    let routes: [(&str, &str, &str, &str); 4] = [
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
        (till, [true, true, false, false]),
        (desk, [true, true, true, false]),
        (ops, [true, true, true, true]),
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
    // Nothing of the candidate was committed: the card's visits are the served ones.
    let fifth = json!({"program": "bergen", "card": "AK-1001", "action": "redeem",
                       "offer": "bergen-kino", "at": "2024-05-10T17:00:00+02:00"});
    assert_eq!(server.decide(&fifth)["reason"], "quota-exhausted");
}
