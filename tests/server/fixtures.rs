//! What several of the server's test modules use: the requests they send, tokens, races
//! of tills, the slow program, scrapes of `/metrics` and checks against the OpenAPI
//! description.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use serde_json::{Value, json};

use crate::support::files::{copy_dir, shipped_policies};
use crate::support::hostile::hostile_program;
use crate::support::server::{Server, agent, cardrules};

/// A Bergen cinema visit for two by `card`, under request id `id` if any.
pub fn kino(card: &str, id: Option<&str>) -> Value {
    let mut request = json!({
        "program": "bergen", "card": card, "action": "redeem", "offer": "bergen-kino",
        "party": 2, "at": "2024-03-01T18:00:00+01:00",
    });
    if let Some(id) = id {
        request["id"] = id.into();
    }
    request
}

/// A dry-run purchase (or other money `action`) of 15.00 by `BK-2002` in `program`.
pub fn purchase(program: &str, action: &str) -> String {
    json!({"program": program, "card": "BK-2002", "action": action, "offer": "sg-perler",
           "amount": 1500, "at": "2024-05-07T16:00:00+02:00", "dry-run": true})
    .to_string()
}

/// A new token made by `cardrules token ARGS`: the token and its `[[tokens]]` entry.
pub fn make_token(args: &[&str]) -> (String, String) {
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

/// Fires the requests at the same moment, one thread each, and returns the decisions.
pub fn race(server: &Arc<Server>, requests: Vec<Value>) -> Vec<Value> {
    race_on(std::slice::from_ref(server), requests)
}

/// Fires the requests at the same moment, one thread each, spread over `servers` in turn.
pub fn race_on(servers: &[Arc<Server>], requests: Vec<Value>) -> Vec<Value> {
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

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn loop_request() -> String {
    json!({"program": "hostile-loop", "card": "H-1", "action": "attack",
           "at": "2024-03-01T18:00:00+01:00"})
    .to_string()
}

/// A server over the shipped policies and `hostile-loop` (each decision runs until the
/// fuel limit or the 2 s deadline stops it), with `extra` flags.
pub fn server_with_a_slow_program(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&shipped_policies(), &policies);
    hostile_program(
        &policies,
        "loop",
        "[limits]\nfuel = 1_000_000_000\ndeadline-ms = 2_000",
    );
    Server::start_with(Arc::new(dir), &[&["--allow-unsigned"], extra].concat())
}

/// The samples of a scrape of `/metrics`, by name and labels.
pub struct Metrics(pub Vec<(String, BTreeMap<String, String>, f64)>);

impl Metrics {
    /// Parses the text format: `name{label="value",…} number` lines, `#` comments.
    pub fn parse(text: &str) -> Metrics {
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
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
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

pub fn metrics_of(server: &Server) -> Metrics {
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

/// Checks a real answer of `method path` (the path as the description writes it) against
/// the description: the status must be documented, and a JSON body must match its schema
/// and use no property the schema does not declare.
pub fn conforms(spec: &Value, method: &str, path: &str, status: u16, body: &Value) {
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
