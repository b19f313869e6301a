//! A city and its venues, with real processes: a city host (on PostgreSQL when
//! `CARDRULES_TEST_POSTGRES` names a server, else SQLite) and two venue hosts on their own
//! SQLite files, each with its own trust file and auth file, speaking to the city only
//! over HTTP. And a venue facing a city that misbehaves (a fake one, in this process).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::files::{copy_dir, shipped_policies};
use support::postgres::Database;
use support::server::{Server, call};

/// Runs `cardrules` in `dir` and expects success; its stdout.
fn run_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cardrules"))
        .current_dir(dir)
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

/// A new token: the secret, and the auth file entry.
fn token(dir: &Path, args: &[&str]) -> (String, String) {
    let out = run_in(dir, &[&["token"], args].concat());
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_string();
    let entry = out
        .lines()
        .filter(|l| !l.starts_with("token: ") && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    (secret, entry)
}

/// A key pair `name` in `dir`: its public key.
fn keygen(dir: &Path, name: &str) -> String {
    run_in(dir, &["keygen", "--out", name]);
    std::fs::read_to_string(dir.join(format!("{name}.pub")))
        .unwrap()
        .trim()
        .to_string()
}

/// A copy of the shipped `bergen` in `to`, its manifest's text `from` replaced by `into`,
/// signed with `key` (a key file in `keys`).
fn bergen_version(keys: &Path, key: &str, to: &Path, edit: Option<(&str, &str)>) -> PathBuf {
    let program = to.join("bergen");
    copy_dir(&shipped_policies().join("bergen"), &program);
    if let Some((from, into)) = edit {
        let manifest = program.join("policy.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(&manifest, text.replacen(from, into, 1)).unwrap();
    }
    run_in(
        keys,
        &[
            "sign",
            "--key",
            &format!("{key}.key"),
            program.to_str().unwrap(),
        ],
    );
    program
}

/// A free loopback port (bound, then let go).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The bundle digest `server` serves `program` with, if it serves it.
fn bundle_at(server: &Server, admin: &str, program: &str) -> Option<String> {
    let (status, body) = call(server, Some(admin), "GET", "/v1/programs", "");
    assert_eq!(status, 200, "{body}");
    body["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["program"] == program)
        .map(|p| p["bundle"].as_str().unwrap().to_string())
}

/// Polls `condition` every 50 ms for at most `seconds`; how long it took.
fn within(
    seconds: u64,
    what: &str,
    logs: &[&Server],
    mut condition: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    while !condition() {
        if start.elapsed() > Duration::from_secs(seconds) {
            let logs: Vec<String> = logs.iter().map(|s| s.log()).collect();
            panic!(
                "timed out after {seconds} s waiting until {what}; logs:\n{}",
                logs.join("\n-----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

fn redeem(offer: &str, card: &str, id: &str) -> String {
    json!({
        "program": "bergen", "card": card, "action": "redeem", "offer": offer,
        "at": "2024-03-02T12:00:00+01:00", "id": id,
    })
    .to_string()
}

/// The venue named `name` in the city's `GET /v1/venues`.
fn venue_status(city: &Server, admin: &str, name: &str) -> Option<Value> {
    let (status, body) = call(city, Some(admin), "GET", "/v1/venues", "");
    assert_eq!(status, 200, "{body}");
    body["venues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["venue"] == name)
        .cloned()
}

struct City {
    keys: PathBuf,
    admin: String,
    registrar: String,
    kino_token: String,
    kode_token: String,
    expired_token: String,
    auth: PathBuf,
    trust: PathBuf,
}

/// Keys, trust files, the city's auth file and its policies (bergen signed with key A).
fn city_files(dir: &Path) -> City {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let a = keygen(&keys, "a");
    let b = keygen(&keys, "b");
    // The city trusts both keys; the venues trust A alone (their own trust files).
    let trust = dir.join("city-trust.toml");
    std::fs::write(&trust, format!("[programs]\nbergen = [\"{a}\", \"{b}\"]\n")).unwrap();
    std::fs::write(
        dir.join("venue-trust.toml"),
        format!("[programs]\nbergen = [\"{a}\"]\n"),
    )
    .unwrap();
    bergen_version(&keys, "a", &dir.join("city").join("policies"), None);
    let (admin, e1) = token(dir, &["--name", "ops", "--role", "admin", "--program", "*"]);
    let (registrar, e2) = token(
        dir,
        &[
            "--name",
            "desk",
            "--role",
            "registrar",
            "--program",
            "bergen",
        ],
    );
    let (kino_token, e3) = token(
        dir,
        &[
            "--name",
            "bergen-kino",
            "--role",
            "venue",
            "--program",
            "bergen",
            "--location",
            "bergen-kino",
        ],
    );
    let (kode_token, e4) = token(
        dir,
        &[
            "--name",
            "kode",
            "--role",
            "venue",
            "--program",
            "bergen",
            "--location",
            "kode",
        ],
    );
    let (expired_token, e5) = token(
        dir,
        &[
            "--name",
            "old-venue",
            "--role",
            "venue",
            "--program",
            "bergen",
            "--location",
            "akvariet",
        ],
    );
    let e5 = format!("{e5}\nexpires = \"2020-01-01T00:00:00Z\"");
    let auth = dir.join("city-auth.toml");
    std::fs::write(&auth, [e1, e2, e3, e4, e5].join("\n\n") + "\n").unwrap();
    City {
        keys,
        admin,
        registrar,
        kino_token,
        kode_token,
        expired_token,
        auth,
        trust,
    }
}

/// Starts the city host over `dir/city` on `port`.
fn start_city(dir: &Arc<tempfile::TempDir>, files: &City, ledger: &str, port: u16) -> Server {
    start_city_with(dir, files, ledger, port, &[])
}

/// [`start_city`] with `extra` flags.
fn start_city_with(
    dir: &Arc<tempfile::TempDir>,
    files: &City,
    ledger: &str,
    port: u16,
    extra: &[&str],
) -> Server {
    // Its log goes in a directory of its own; its policies stay where `publish` writes.
    let city_dir = Arc::new(tempfile::tempdir_in(dir.path()).unwrap());
    let mut command = Command::new(env!("CARGO_BIN_EXE_cardrules"));
    command
        .arg("serve")
        .arg("--policies")
        .arg(dir.path().join("city").join("policies"))
        .args(["--ledger", ledger])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--auth")
        .arg(&files.auth)
        .arg("--trust")
        .arg(&files.trust)
        .args(["--max-lateness", "none"])
        .args(extra);
    Server::spawn(city_dir, command)
}

/// A venue host's own place: its token for the city, its tills' auth file.
struct VenueFiles {
    dir: Arc<tempfile::TempDir>,
    till: String,
    admin: String,
}

fn venue_files(dir: &Path, city_token: &str) -> VenueFiles {
    let venue = Arc::new(tempfile::tempdir_in(dir).unwrap());
    std::fs::create_dir_all(venue.path().join("policies")).unwrap();
    std::fs::write(venue.path().join("city.token"), city_token).unwrap();
    let (till, e1) = token(
        venue.path(),
        &[
            "--name",
            "till-1",
            "--role",
            "terminal",
            "--program",
            "bergen",
        ],
    );
    let (admin, e2) = token(
        venue.path(),
        &["--name", "manager", "--role", "admin", "--program", "*"],
    );
    std::fs::write(venue.path().join("auth.toml"), format!("{e1}\n\n{e2}\n")).unwrap();
    VenueFiles {
        dir: venue,
        till,
        admin,
    }
}

fn start_venue(venue: &VenueFiles, city: &str, trust: &Path) -> Server {
    start_venue_with(venue, city, trust, &[])
}

/// [`start_venue`] with `extra` flags.
fn start_venue_with(venue: &VenueFiles, city: &str, trust: &Path, extra: &[&str]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cardrules"));
    command
        .arg("serve")
        .arg("--policies")
        .arg(venue.dir.path().join("policies"))
        .arg("--ledger")
        .arg(venue.dir.path().join("venue.sqlite"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--auth")
        .arg(venue.dir.path().join("auth.toml"))
        .arg("--trust")
        .arg(trust)
        .args(["--upstream", city])
        .arg("--upstream-token")
        .arg(venue.dir.path().join("city.token"))
        .args(extra);
    Server::spawn(venue.dir.clone(), command)
}

#[test]
fn a_city_rolls_out_to_two_venues_which_decide_through_it() {
    let database = Database::fresh();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let files = city_files(dir.path());
    let ledger = match &database {
        Some(db) => db.url.clone(),
        None => {
            eprintln!("the city runs on SQLite: CARDRULES_TEST_POSTGRES is unset");
            dir.path().join("city.sqlite").display().to_string()
        }
    };
    let port = free_port();
    let city_url = format!("http://127.0.0.1:{port}");
    let city = start_city(&dir, &files, &ledger, port);
    let kino = venue_files(dir.path(), &files.kino_token);
    let kode = venue_files(dir.path(), &files.kode_token);
    let venue_trust = dir.path().join("venue-trust.toml");
    let kino_host = start_venue(&kino, &city_url, &venue_trust);
    let kode_host = start_venue(&kode, &city_url, &venue_trust);
    let first = bundle_at(&city, &files.admin, "bergen").unwrap();
    let took = within(
        30,
        "both venues serve bergen",
        &[&city, &kino_host, &kode_host],
        || {
            bundle_at(&kino_host, &kino.admin, "bergen").as_deref() == Some(first.as_str())
                && bundle_at(&kode_host, &kode.admin, "bergen").as_deref() == Some(first.as_str())
        },
    );
    eprintln!("figure: first rollout to two venues in {took:.2?}");

    // Tills decide at both venues; the city decides, and says which venue asked.
    let (status, kino_answer) = call(
        &kino_host,
        Some(&kino.till),
        "POST",
        "/v1/decisions",
        &redeem("bergen-kino", "AK-1001", "kino-1"),
    );
    assert_eq!(status, 200, "{kino_answer}");
    assert_eq!(kino_answer["allow"], true, "{kino_answer}");
    assert_eq!(kino_answer["venue"], "bergen-kino", "{kino_answer}");
    let (status, kode_answer) = call(
        &kode_host,
        Some(&kode.till),
        "POST",
        "/v1/decisions",
        &redeem("kode-museum", "AK-1002", "kode-1"),
    );
    assert_eq!(
        (status, &kode_answer["allow"], &kode_answer["venue"]),
        (200, &json!(true), &json!("kode")),
        "{kode_answer}"
    );
    // A till's retry is answered the first decision, and nothing is decided twice.
    let (_, again) = call(
        &kino_host,
        Some(&kino.till),
        "POST",
        "/v1/decisions",
        &redeem("bergen-kino", "AK-1001", "kino-1"),
    );
    assert_eq!(again["replayed"], true, "{again}");
    // A venue decides for the offers at its own locations only.
    let (status, body) = call(
        &kode_host,
        Some(&kode.till),
        "POST",
        "/v1/decisions",
        &redeem("bergen-kino", "AK-1004", "kode-2"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("location `bergen-kino`"),
        "{body}"
    );
    // Card reads and statements work at the venue, and show the venue.
    let (status, card) = call(
        &kino_host,
        Some(&kino.till),
        "GET",
        "/v1/programs/bergen/cards/AK-1001",
        "",
    );
    assert_eq!(status, 200, "{card}");
    let (status, history) = call(
        &kino_host,
        Some(&kino.till),
        "GET",
        "/v1/programs/bergen/cards/AK-1001/history",
        "",
    );
    assert_eq!(status, 200, "{history}");
    assert!(
        history["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["venue"] == "bergen-kino"),
        "{history}"
    );
    let (status, _) = call(
        &kino_host,
        Some(&kino.till),
        "GET",
        "/v1/programs/bergen/cards/AK-1001/allowances",
        "",
    );
    assert_eq!(status, 200);
    // Holders are registered at the city, never at a venue.
    let (status, body) = call(
        &kino_host,
        Some(&kino.admin),
        "PUT",
        "/v1/programs/bergen/holders/AK-9",
        r#"{"birth-date":"2015-01-01","municipality":"bergen"}"#,
    );
    assert_eq!(status, 403, "{body}");

    // The city's journal holds each decision once; the venues follow it to its end.
    let (status, page) = call(
        &city,
        Some(&files.admin),
        "GET",
        "/v1/venue/programs/bergen/journal?limit=10000",
        "",
    );
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    for id in ["kino-1", "kode-1"] {
        let count = events
            .iter()
            .filter(|e| e["change"]["request-id"] == id)
            .count();
        assert_eq!(count, 1, "{id} in {page}");
    }
    assert!(!events.iter().any(|e| e["change"]["request-id"] == "kode-2"));
    let last = events.last().unwrap()["seq"].as_u64().unwrap();
    within(30, "both venues hold the city's journal", &[&city], || {
        ["bergen-kino", "kode"].iter().all(|name| {
            venue_status(&city, &files.admin, name).is_some_and(|v| {
                v["position"]["bergen"].as_u64() == Some(last) && v["online"] == true
            })
        })
    });

    // An erasure at the city reaches the venues' copies of its journal: once they follow
    // past it, no byte of a venue's SQLite file (or its log) holds the erased values.
    let (status, body) = call(
        &city,
        Some(&files.admin),
        "PUT",
        "/v1/programs/bergen/holders/AK-77",
        r#"{"birth-date":"2013-10-29","municipality":"bergen","statuses":["qx-venue-status"]}"#,
    );
    assert_eq!(status, 201, "{body}");
    let venue_bytes = |venue: &VenueFiles| -> Vec<u8> {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let file = format!(
                "{}{suffix}",
                venue.dir.path().join("venue.sqlite").display()
            );
            bytes.extend(std::fs::read(file).unwrap_or_default());
        }
        bytes
    };
    let holds =
        |bytes: &[u8], value: &str| bytes.windows(value.len()).any(|w| w == value.as_bytes());
    within(30, "the venues copy the registration", &[&city], || {
        holds(&venue_bytes(&kino), "qx-venue-status")
            && holds(&venue_bytes(&kode), "qx-venue-status")
    });
    let (status, body) = call(
        &city,
        Some(&files.admin),
        "DELETE",
        "/v1/programs/bergen/holders/AK-77",
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (_, page) = call(
        &city,
        Some(&files.admin),
        "GET",
        "/v1/venue/programs/bergen/journal?limit=10000",
        "",
    );
    let last = page["events"].as_array().unwrap().last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    within(30, "both venues follow past the erasure", &[&city], || {
        ["bergen-kino", "kode"].iter().all(|name| {
            venue_status(&city, &files.admin, name)
                .is_some_and(|v| v["position"]["bergen"].as_u64() >= Some(last))
        })
    });
    for venue in [&kino, &kode] {
        let bytes = venue_bytes(venue);
        for value in ["2013-10-29", "qx-venue-status"] {
            assert!(
                !holds(&bytes, value),
                "`{value}` is still in a venue's ledger"
            );
        }
    }

    // A new version signed with a key both trust: active at both venues within seconds.
    let staged = tempfile::tempdir_in(dir.path()).unwrap();
    let second = bergen_version(
        &files.keys,
        "a",
        staged.path(),
        Some(("max-skew = \"5m\"", "max-skew = \"4m\"")),
    );
    std::fs::write(dir.path().join("registrar.token"), &files.registrar).unwrap();
    let published = Instant::now();
    run_in(
        dir.path(),
        &[
            "publish",
            "--to",
            &city_url,
            "--token",
            "registrar.token",
            second.to_str().unwrap(),
        ],
    );
    let second_bundle = bundle_at(&city, &files.admin, "bergen").unwrap();
    assert_ne!(second_bundle, first);
    within(
        30,
        "both venues serve the second version",
        &[&city, &kino_host, &kode_host],
        || {
            bundle_at(&kino_host, &kino.admin, "bergen").as_deref() == Some(second_bundle.as_str())
                && bundle_at(&kode_host, &kode.admin, "bergen").as_deref()
                    == Some(second_bundle.as_str())
        },
    );
    eprintln!(
        "figure: a published version active at both venues {:.2?} after publish began",
        published.elapsed()
    );
    within(
        30,
        "the city lists the second version at both venues",
        &[&city],
        || {
            ["bergen-kino", "kode"].iter().all(|name| {
                venue_status(&city, &files.admin, name)
                    .is_some_and(|v| v["programs"][0]["bundle"] == second_bundle)
            })
        },
    );

    // A version signed with a key the venues do not trust: the city serves it, the
    // venues refuse it, keep the second, keep deciding, and the city shows why.
    let staged = tempfile::tempdir_in(dir.path()).unwrap();
    let untrusted = bergen_version(
        &files.keys,
        "b",
        staged.path(),
        Some(("max-skew = \"5m\"", "max-skew = \"3m\"")),
    );
    run_in(
        dir.path(),
        &[
            "publish",
            "--to",
            &city_url,
            "--token",
            "registrar.token",
            untrusted.to_str().unwrap(),
        ],
    );
    within(
        30,
        "both venues refused the untrusted version",
        &[&city, &kino_host, &kode_host],
        || {
            ["bergen-kino", "kode"].iter().all(|name| {
                venue_status(&city, &files.admin, name).is_some_and(|v| {
                    v["refused"].as_array().unwrap().iter().any(|r| {
                        r["program"] == "bergen"
                            && r["error"].as_str().unwrap().contains("does not trust")
                    })
                })
            })
        },
    );
    assert_eq!(
        bundle_at(&kino_host, &kino.admin, "bergen"),
        Some(second_bundle.clone())
    );
    assert!(
        kino_host.log().contains("refused version"),
        "{}",
        kino_host.log()
    );
    let (status, answer) = call(
        &kino_host,
        Some(&kino.till),
        "POST",
        "/v1/decisions",
        &redeem("bergen-kino", "AK-1002", "kino-2"),
    );
    assert_eq!((status, &answer["allow"]), (200, &json!(true)), "{answer}");

    // What a venue's token may not do at the city: each route tried.
    let venue = Some(files.kino_token.as_str());
    for (method, path, body) in [
        (
            "PUT",
            "/v1/programs/bergen/holders/AK-9",
            r#"{"birth-date":"2015-01-01","municipality":"bergen"}"#,
        ),
        (
            "PATCH",
            "/v1/programs/bergen/holders/AK-1001",
            r#"{"attributes":{}}"#,
        ),
        ("GET", "/v1/programs", ""),
        ("GET", "/metrics", ""),
        ("PUT", "/v1/programs/bergen/policy", r#"{"files":{}}"#),
        ("GET", "/v1/venues", ""),
        ("GET", "/v1/venue/programs/albertslund/bundle", ""),
        ("GET", "/v1/venue/programs/albertslund/journal", ""),
        (
            "POST",
            "/v1/decisions",
            &redeem("kode-museum", "AK-1001", "kino-3"),
        ),
        (
            "POST",
            "/v1/decisions",
            r#"{"program":"albertslund","card":"AK-1","action":"purchase","at":"2024-03-02T12:00:00+01:00"}"#,
        ),
    ] {
        let (status, answer) = call(&city, venue, method, path, body);
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let (status, answer) = call(
        &city,
        Some(&files.expired_token),
        "GET",
        "/v1/venue/programs",
        "",
    );
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("expired"),
        "{answer}"
    );
    let (status, _) = call(&city, Some("not-a-token"), "GET", "/v1/venue/programs", "");
    assert_eq!(status, 401);
    // A till's token is the venue's own: the city does not know it.
    let (status, _) = call(
        &city,
        Some(&kino.till),
        "GET",
        "/v1/programs/bergen/cards/AK-1001",
        "",
    );
    assert_eq!(status, 401);
    // Another venue's report cannot be sent with an admin token.
    let (status, _) = call(
        &city,
        Some(&files.admin),
        "PUT",
        "/v1/venue/status",
        r#"{"programs":[],"refused":[],"position":{},"backlog":0,"release":"x"}"#,
    );
    assert_eq!(status, 403);

    // The city goes away: the venues answer 503; a venue restarted meanwhile starts with
    // the programs it kept.
    city.terminate();
    let (status, answer) = call(
        &kode_host,
        Some(&kode.till),
        "POST",
        "/v1/decisions",
        &redeem("kode-museum", "AK-1004", "kode-3"),
    );
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the city host"),
        "{answer}"
    );
    let (status, ready) = call(&kode_host, None, "GET", "/readyz", "");
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["error"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{ready}"
    );
    kino_host.terminate();
    let kino_host = start_venue(&kino, &city_url, &venue_trust);
    assert_eq!(
        bundle_at(&kino_host, &kino.admin, "bergen"),
        Some(second_bundle.clone())
    );
    // The city is back, on the same address: it still knows its venues, which reconnect.
    let city = start_city(&dir, &files, &ledger, port);
    let known = venue_status(&city, &files.admin, "kode").expect("the city remembers venue `kode`");
    assert_eq!(known["programs"][0]["bundle"], second_bundle, "{known}");
    within(30, "the venue decides again", &[&city, &kino_host], || {
        let (status, _) = call(
            &kino_host,
            Some(&kino.till),
            "POST",
            "/v1/decisions",
            &redeem("bergen-kino", "AK-1003", "kino-4"),
        );
        status == 200
    });
    let (status, ready) = call(&kino_host, None, "GET", "/readyz", "");
    assert_eq!(status, 200, "{ready}");
    drop(kode_host);
}

#[test]
fn a_venue_speaks_to_its_city_over_tls_trusting_the_city_s_ca_only() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let files = city_files(dir.path());
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let (cert, key) = (dir.path().join("city.pem"), dir.path().join("city-key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let ledger = dir.path().join("city.sqlite").display().to_string();
    let city = start_city_with(
        &dir,
        &files,
        &ledger,
        free_port(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(city.base.starts_with("https://"), "{}", city.base);
    let trust = dir.path().join("venue-trust.toml");
    // Trusting the city's CA: programs pulled, decisions forwarded, all over TLS.
    let kino = venue_files(dir.path(), &files.kino_token);
    let kino_host = start_venue_with(
        &kino,
        &city.base,
        &trust,
        &["--upstream-ca", cert.to_str().unwrap()],
    );
    within(
        30,
        "the venue serves bergen over TLS",
        &[&kino_host],
        || bundle_at(&kino_host, &kino.admin, "bergen").is_some(),
    );
    let (status, answer) = call(
        &kino_host,
        Some(&kino.till),
        "POST",
        "/v1/decisions",
        &redeem("bergen-kino", "AK-1001", "tls-1"),
    );
    assert_eq!(
        (status, &answer["venue"]),
        (200, &json!("bergen-kino")),
        "{answer}"
    );
    // Not trusting it (the public roots only): nothing is pulled or decided, and the log
    // says why.
    let kode = venue_files(dir.path(), &files.kode_token);
    let kode_host = start_venue(&kode, &city.base, &trust);
    within(
        30,
        "the venue says it cannot trust the city",
        &[&kode_host],
        || {
            kode_host
                .log()
                .contains("cannot pull programs from the city host")
                && kode_host.log().to_lowercase().contains("certificate")
        },
    );
    assert_eq!(bundle_at(&kode_host, &kode.admin, "bergen"), None);
    // `--upstream-ca` that holds no certificate stops the venue at once, naming the file.
    let out = Command::new(env!("CARGO_BIN_EXE_cardrules"))
        .args(["serve", "--upstream", &city.base, "--upstream-token"])
        .arg(kode.dir.path().join("city.token"))
        .arg("--upstream-ca")
        .arg(kode.dir.path().join("auth.toml"))
        .args(["--policies", "policies", "--allow-unsigned"])
        .current_dir(kode.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`--upstream-ca` file"), "{stderr}");
}

/// A fake city host: answers each path with what the test sets, and keeps the reports.
struct FakeCity {
    url: String,
    answers: Arc<Mutex<Vec<(String, Answer)>>>,
    reports: Arc<Mutex<Vec<Value>>>,
}

#[derive(Clone)]
enum Answer {
    Json(u16, Vec<u8>),
    /// Promises `len` bytes, sends `sent`, and hangs up.
    BrokenOff {
        len: usize,
        sent: Vec<u8>,
    },
}

impl FakeCity {
    fn start() -> FakeCity {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answers: Arc<Mutex<Vec<(String, Answer)>>> = Arc::default();
        let reports: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (a, r) = (answers.clone(), reports.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (a, r) = (a.clone(), r.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                            break;
                        }
                        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    if path.starts_with("/v1/decisions") {
                        // A city that hangs up: nothing was decided.
                        return;
                    }
                    if path.starts_with("/v1/venue/status") {
                        if let Ok(report) = serde_json::from_slice(&body) {
                            r.lock().unwrap().push(report);
                        }
                        let _ = stream
                            .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
                        return;
                    }
                    let answer = a
                        .lock()
                        .unwrap()
                        .iter()
                        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
                        .map(|(_, answer)| answer.clone());
                    match answer {
                        Some(Answer::Json(status, body)) => {
                            let head = format!(
                                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            );
                            let _ = stream.write_all(head.as_bytes());
                            let _ = stream.write_all(&body);
                        }
                        Some(Answer::BrokenOff { len, sent }) => {
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                            );
                            let _ = stream.write_all(head.as_bytes());
                            let _ = stream.write_all(&sent);
                        }
                        None => {
                            // Nothing new: as the city says when a long poll ends.
                            std::thread::sleep(Duration::from_millis(200));
                            let body = if path.contains("/journal") {
                                r#"{"program":"bergen","events":[]}"#
                            } else {
                                "{}"
                            };
                            let head = format!(
                                "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                if path.contains("/journal") { 200 } else { 404 },
                                body.len()
                            );
                            let _ = stream.write_all(head.as_bytes());
                            let _ = stream.write_all(body.as_bytes());
                        }
                    }
                });
            }
        });
        FakeCity {
            url,
            answers,
            reports,
        }
    }

    /// Answers paths starting with `prefix` with `answer` from now on.
    fn answer(&self, prefix: &str, answer: Answer) {
        let mut answers = self.answers.lock().unwrap();
        answers.retain(|(p, _)| p != prefix);
        answers.push((prefix.to_string(), answer));
    }
}

/// A program directory's files as a bundle (`path` → bytes), and its digest, as the
/// engine computes it.
fn bundle_of(dir: &Path) -> (Vec<(String, Vec<u8>)>, String) {
    let read = cardrules::read_program_bytes(dir).unwrap();
    let mut files: cardrules::loader::Bundle = read.files;
    if let Some(signature) = read.signature {
        files.insert(cardrules::SIGNATURE_FILE.to_string(), signature);
    }
    let digest = cardrules::bundle_digest(&files);
    (files.into_iter().collect(), digest)
}

fn bundle_json(files: &[(String, Vec<u8>)], digest: &str, component: &str) -> Vec<u8> {
    use base64::Engine as _;
    let encoded: serde_json::Map<String, Value> = files
        .iter()
        .map(|(p, b)| {
            (
                p.clone(),
                base64::engine::general_purpose::STANDARD.encode(b).into(),
            )
        })
        .collect();
    serde_json::to_vec(&json!({
        "program": "bergen", "version": "x", "digest": component, "bundle": digest, "files": encoded,
    }))
    .unwrap()
}

fn rollout_json(digest: &str, component: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"programs": [{"program": "bergen", "version": "x", "digest": component, "bundle": digest}]})).unwrap()
}

#[test]
fn a_venue_keeps_its_last_good_programs_whatever_its_city_sends() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let a = keygen(&keys, "a");
    let trust = dir.path().join("trust.toml");
    std::fs::write(&trust, format!("[programs]\nbergen = [\"{a}\"]\n")).unwrap();
    let fake = FakeCity::start();
    let venue = venue_files(dir.path(), "a-venue-token");
    // The venue kept a good version from an earlier run.
    let good = bergen_version(&keys, "a", &venue.dir.path().join("policies"), None);
    let (_, good_digest) = bundle_of(&good);
    let host = start_venue(&venue, &fake.url, &trust);
    assert_eq!(
        bundle_at(&host, &venue.admin, "bergen"),
        Some(good_digest.clone())
    );
    let still_good = |host: &Server| {
        assert_eq!(
            bundle_at(host, &venue.admin, "bergen"),
            Some(good_digest.clone()),
            "{}",
            host.log()
        )
    };
    let logged = |host: &Server, what: &str| {
        within(20, what, &[host], || host.log().contains(what));
    };

    // Garbage for a rollout.
    fake.answer(
        "/v1/venue/programs?",
        Answer::Json(200, b"<html>it works!</html>".to_vec()),
    );
    logged(&host, "its rollout is not one");
    still_good(&host);

    // A bundle whose files are not those announced.
    let staged = tempfile::tempdir_in(dir.path()).unwrap();
    let other = bergen_version(
        &keys,
        "a",
        staged.path(),
        Some(("max-skew = \"5m\"", "max-skew = \"4m\"")),
    );
    let (files, digest) = bundle_of(&other);
    let announced = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    fake.answer(
        "/v1/venue/programs/bergen/bundle",
        Answer::Json(200, bundle_json(&files, announced, "sha256:c")),
    );
    fake.answer(
        "/v1/venue/programs?",
        Answer::Json(200, rollout_json(announced, "sha256:c")),
    );
    logged(&host, "the bundle was altered or damaged");
    still_good(&host);

    // A city that goes away mid-transfer.
    let whole = bundle_json(&files, &digest, "sha256:c");
    fake.answer(
        "/v1/venue/programs/bergen/bundle",
        Answer::BrokenOff {
            len: whole.len(),
            sent: whole[..whole.len() / 3].to_vec(),
        },
    );
    fake.answer(
        "/v1/venue/programs?",
        Answer::Json(200, rollout_json(&digest, "sha256:c")),
    );
    logged(&host, "the transfer failed");
    still_good(&host);

    // A truncated component, its digests made to match: the signature no longer does.
    let mut truncated = files.clone();
    for (path, bytes) in &mut truncated {
        if path.ends_with(".wasm") {
            bytes.truncate(bytes.len() / 2);
        }
    }
    let truncated_digest = {
        let map: cardrules::loader::Bundle = truncated.iter().cloned().collect();
        cardrules::bundle_digest(&map)
    };
    fake.answer(
        "/v1/venue/programs/bergen/bundle",
        Answer::Json(200, bundle_json(&truncated, &truncated_digest, "sha256:c")),
    );
    fake.answer(
        "/v1/venue/programs?",
        Answer::Json(200, rollout_json(&truncated_digest, "sha256:c")),
    );
    logged(&host, "refused version x of `bergen`");
    still_good(&host);
    within(20, "the refusal is reported", &[&host], || {
        fake.reports.lock().unwrap().iter().any(|r| {
            r["refused"]
                .as_array()
                .is_some_and(|all| all.iter().any(|x| x["digest"] == "sha256:c"))
        })
    });

    // A version signed with the trusted key whose own suite fails.
    let staged = tempfile::tempdir_in(dir.path()).unwrap();
    let program = staged.path().join("bergen");
    copy_dir(&shipped_policies().join("bergen"), &program);
    let suite = program.join("suites").join("party-and-quota.toml");
    let text = std::fs::read_to_string(&suite).unwrap();
    let broken = text.replacen("allow = true", "allow = false", 1);
    assert_ne!(broken, text);
    std::fs::write(&suite, broken).unwrap();
    run_in(
        &keys,
        &["sign", "--key", "a.key", program.to_str().unwrap()],
    );
    let (files, digest) = bundle_of(&program);
    fake.answer(
        "/v1/venue/programs/bergen/bundle",
        Answer::Json(200, bundle_json(&files, &digest, "sha256:d")),
    );
    fake.answer(
        "/v1/venue/programs?",
        Answer::Json(200, rollout_json(&digest, "sha256:d")),
    );
    within(20, "the failing suite is refused", &[&host], || {
        host.log().matches("refused version x of `bergen`").count() >= 2
    });
    assert!(host.log().contains("party-and-quota"), "{}", host.log());
    still_good(&host);

    // And the venue still answers its tills (503: its city cannot decide).
    let (status, answer) = call(
        &host,
        Some(&venue.till),
        "POST",
        "/v1/decisions",
        &redeem("bergen-kino", "AK-1001", "t-1"),
    );
    assert_eq!(status, 503, "{answer}");
}

/// A city whose retention removed its first events: a venue that joins afterwards begins
/// its copy at the city's base snapshot and follows on from there, and its ledger verifies.
#[test]
fn a_venue_joins_a_city_whose_retention_removed_old_events() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let files = city_files(dir.path());
    bergen_version(
        &files.keys,
        "a",
        &dir.path().join("city").join("policies"),
        Some(("decisions = \"400d\"", "decisions = \"90d\"")),
    );
    let ledger = dir.path().join("city.sqlite").display().to_string();
    let port = free_port();
    let city_url = format!("http://127.0.0.1:{port}");
    let city = start_city(&dir, &files, &ledger, port);
    // Recorded traffic of 2027, after the demo holders were registered (host's clock).
    for month in 1..=10 {
        let body = json!({"program": "bergen", "card": "AK-1001", "action": "redeem",
                          "offer": "kode-museum", "party": 1, "id": format!("m-{month}"),
                          "at": format!("2027-{month:02}-05T12:00:00+01:00")});
        let (status, decision) = call(
            &city,
            Some(&files.admin),
            "POST",
            "/v1/decisions",
            &body.to_string(),
        );
        assert_eq!(status, 200, "{decision}");
    }
    let out = run_in(
        dir.path(),
        &[
            "ledger",
            "compact",
            "--ledger",
            &ledger,
            "--policies",
            dir.path().join("city").join("policies").to_str().unwrap(),
            "--trust",
            files.trust.to_str().unwrap(),
            "--at",
            "2027-12-15T00:00:00Z",
        ],
    );
    assert!(
        out.contains("bergen: ") && !out.contains("bergen: 0 events removed"),
        "{out}"
    );
    let (_, page) = call(
        &city,
        Some(&files.admin),
        "GET",
        "/v1/venue/programs/bergen/journal?limit=10000",
        "",
    );
    let events = page["events"].as_array().unwrap();
    let (first, last) = (
        events[0]["seq"].as_u64().unwrap(),
        events.last().unwrap()["seq"].as_u64().unwrap(),
    );
    assert!(first > 1, "compacted: {page}");

    let kino = venue_files(dir.path(), &files.kino_token);
    let kino_host = start_venue(&kino, &city_url, &dir.path().join("venue-trust.toml"));
    within(
        30,
        "the new venue holds the city's journal",
        &[&city, &kino_host],
        || {
            venue_status(&city, &files.admin, "bergen-kino")
                .is_some_and(|v| v["position"]["bergen"].as_u64() == Some(last))
        },
    );
    assert!(
        kino_host
            .log()
            .contains("began the journal of `bergen` at the city's base snapshot"),
        "{}",
        kino_host.log()
    );
    drop(kino_host);
    let venue_ledger = kino.dir.path().join("venue.sqlite");
    let verified = run_in(
        dir.path(),
        &[
            "ledger",
            "verify",
            "--ledger",
            venue_ledger.to_str().unwrap(),
        ],
    );
    assert!(verified.contains("bergen"), "{verified}");
    drop(city);
}

/// A venue host of `program` at `location`: its files, with a till of the program.
fn offline_venue(dir: &Path, city_token: &str, program: &str) -> VenueFiles {
    let venue = Arc::new(tempfile::tempdir_in(dir).unwrap());
    std::fs::create_dir_all(venue.path().join("policies")).unwrap();
    std::fs::write(venue.path().join("city.token"), city_token).unwrap();
    let (till, e1) = token(
        venue.path(),
        &["--name", "till", "--role", "terminal", "--program", program],
    );
    let (admin, e2) = token(
        venue.path(),
        &["--name", "manager", "--role", "admin", "--program", "*"],
    );
    std::fs::write(venue.path().join("auth.toml"), format!("{e1}\n\n{e2}\n")).unwrap();
    VenueFiles {
        dir: venue,
        till,
        admin,
    }
}

fn start_offline_venue(venue: &VenueFiles, city: &str) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cardrules"));
    command
        .arg("serve")
        .arg("--policies")
        .arg(venue.dir.path().join("policies"))
        .arg("--ledger")
        .arg(venue.dir.path().join("venue.sqlite"))
        .args(["--listen", "127.0.0.1:0", "--allow-unsigned"])
        .arg("--auth")
        .arg(venue.dir.path().join("auth.toml"))
        .args(["--upstream", city])
        .arg("--upstream-token")
        .arg(venue.dir.path().join("city.token"));
    Server::spawn(venue.dir.clone(), command)
}

/// Whether `server`'s copy of `program`'s journal holds a lease of `venue`.
fn holds_lease(server: &Server, admin: &str, program: &str, venue: &str) -> bool {
    let (status, page) = call(
        server,
        Some(admin),
        "GET",
        &format!("/v1/venue/programs/{program}/journal?after=0&limit=10000"),
        "",
    );
    status == 200
        && page["events"].as_array().is_some_and(|events| {
            events
                .iter()
                .rev()
                .find(|e| {
                    ["leased", "returned"].contains(&e["change"]["kind"].as_str().unwrap_or(""))
                        && e["change"]["venue"] == venue
                })
                .is_some_and(|e| e["change"]["kind"] == "leased")
        })
}

/// The city's statement of `card`: its decided entries by id.
fn decided_at_city(city: &Server, admin: &str, program: &str, card: &str) -> Vec<Value> {
    let (status, statement) = call(
        city,
        Some(admin),
        "GET",
        &format!("/v1/programs/{program}/cards/{card}/history?limit=500"),
        "",
    );
    assert_eq!(status, 200, "{statement}");
    statement["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "decided")
        .cloned()
        .collect()
}

#[test]
fn a_venue_cut_off_from_its_city_decides_alone_and_its_city_takes_it_back_exactly_once() {
    let database = Database::fresh();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    copy_dir(
        &shipped_policies(),
        &dir.path().join("city").join("policies"),
    );
    let ledger = match &database {
        Some(db) => db.url.clone(),
        None => {
            eprintln!("the city runs on SQLite: CARDRULES_TEST_POSTGRES is unset");
            dir.path().join("city.sqlite").display().to_string()
        }
    };
    let (admin, e1) = token(
        dir.path(),
        &["--name", "ops", "--role", "admin", "--program", "*"],
    );
    let (kino_token, e2) = token(
        dir.path(),
        &[
            "--name",
            "bergen-kino",
            "--role",
            "venue",
            "--program",
            "bergen",
            "--location",
            "bergen-kino",
        ],
    );
    let (club_token, e3) = token(
        dir.path(),
        &[
            "--name",
            "bakkens-hjerte",
            "--role",
            "venue",
            "--program",
            "albertslund",
            "--location",
            "bakkens-hjerte",
        ],
    );
    let (kode_token, e4) = token(
        dir.path(),
        &[
            "--name",
            "kode",
            "--role",
            "venue",
            "--program",
            "bergen",
            "--location",
            "kode",
        ],
    );
    let auth = dir.path().join("city-auth.toml");
    std::fs::write(&auth, [e1, e2, e3, e4].join("\n\n") + "\n").unwrap();
    let port = free_port();
    let city_url = format!("http://127.0.0.1:{port}");
    let start_city = || {
        let city_dir = Arc::new(tempfile::tempdir_in(dir.path()).unwrap());
        let mut command = Command::new(env!("CARGO_BIN_EXE_cardrules"));
        command
            .arg("serve")
            .arg("--policies")
            .arg(dir.path().join("city").join("policies"))
            .args([
                "--ledger",
                &ledger,
                "--allow-unsigned",
                "--max-lateness",
                "none",
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--auth")
            .arg(&auth);
        Server::spawn(city_dir, command)
    };
    let city = start_city();
    let kino = offline_venue(dir.path(), &kino_token, "bergen");
    let club = offline_venue(dir.path(), &club_token, "albertslund");
    let kino_host = start_offline_venue(&kino, &city_url);
    let club_host = start_offline_venue(&club, &city_url);
    within(
        60,
        "both venues hold a lease",
        &[&city, &kino_host, &club_host],
        || {
            holds_lease(&kino_host, &kino.admin, "bergen", "bergen-kino")
                && holds_lease(&club_host, &club.admin, "albertslund", "bakkens-hjerte")
        },
    );
    // The city shows what each venue holds.
    let kino_status = venue_status(&city, &admin, "bergen-kino").expect("known");
    let lease = &kino_status["leases"][0];
    assert_eq!(
        (&lease["program"], &lease["cards"]),
        (&json!("bergen"), &json!("all")),
        "{kino_status}"
    );
    assert!(
        lease["counters"].to_string().contains("visit:bergen-kino"),
        "{kino_status}"
    );
    let club_status = venue_status(&city, &admin, "bakkens-hjerte").expect("known");
    assert_eq!(club_status["leases"][0]["escrowed"], 10000, "{club_status}");
    // The card shows what of its balance the club holds.
    let (_, card) = call(
        &city,
        Some(&admin),
        "GET",
        "/v1/programs/albertslund/cards/BK-2001",
        "",
    );
    assert_eq!(
        card["held"],
        json!([{"venue": "bakkens-hjerte", "asset": "DKK", "units": 10000}]),
        "{card}"
    );
    let decide = |host: &Server, till: &str, body: Value| {
        call(host, Some(till), "POST", "/v1/decisions", &body.to_string())
    };
    let kino_at = |card: &str, id: &str| {
        json!({"program": "bergen", "card": card, "action": "redeem", "offer": "bergen-kino",
               "at": "2024-03-02T12:00:00+01:00", "id": id})
    };
    let buy = |card: &str, amount: i64, id: &str| {
        json!({"program": "albertslund", "card": card, "action": "purchase", "offer": "bh-toast",
               "amount": amount, "at": "2024-03-02T12:00:00+01:00", "id": id})
    };
    // Online: the city decides.
    let (status, online) = decide(&kino_host, &kino.till, kino_at("AK-1001", "k-1"));
    assert_eq!((status, &online["allow"]), (200, &json!(true)), "{online}");
    assert!(online.get("offline").is_none(), "{online}");
    // The venue's copy of the journal holds it (as it soon does, following its city).
    within(30, "the cinema's copy holds `k-1`", &[&kino_host], || {
        let (_, page) = call(
            &kino_host,
            Some(&kino.admin),
            "GET",
            "/v1/venue/programs/bergen/journal?after=0&limit=10000",
            "",
        );
        page.to_string().contains("\"request-id\":\"k-1\"")
    });
    std::thread::sleep(Duration::from_millis(1200));

    // The city goes away. The request that finds it gone is a 503 (its fate unknown);
    // the venues decide alone from then on, under their leases.
    city.terminate();
    let (status, lost) = decide(&kino_host, &kino.till, kino_at("AK-1002", "k-2"));
    assert_eq!(status, 503, "{lost}");
    let mut answers: Vec<(String, Value)> = Vec::new();
    for (card, id) in [
        ("AK-1001", "k-3"),
        ("AK-1001", "k-4"),
        ("AK-1001", "k-5"),
        ("AK-1001", "k-6"),
        ("AK-1003", "k-7"),
        ("AK-1002", "k-8"),
    ] {
        let (status, answer) = decide(&kino_host, &kino.till, kino_at(card, id));
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["offline"], true, "{answer}");
        answers.push((id.to_string(), answer));
    }
    let reasons: Vec<&str> = answers
        .iter()
        .map(|(_, a)| a["reason"].as_str().unwrap())
        .collect();
    // Four visits a year at the cinema (one online, three alone), then the quota; a card
    // not registered in Bergen is refused as anywhere; the card whose request was lost
    // with the link is not decided alone.
    assert_eq!(
        reasons,
        [
            "ok",
            "ok",
            "ok",
            "quota-exhausted",
            "not-resident",
            "offline"
        ],
        "{answers:?}"
    );
    // A retry is answered what was answered.
    let (_, again) = decide(&kino_host, &kino.till, kino_at("AK-1001", "k-3"));
    assert_eq!(
        (&again["reason"], &again["replayed"]),
        (&json!("ok"), &json!(true)),
        "{again}"
    );
    // The club sells within what is escrowed to it (100 kr of BK-2001's 200 kr), under
    // the card's daily limit (60 kr).
    let (status, _) = decide(&club_host, &club.till, buy("BK-2002", 100, "c-0"));
    assert_eq!(status, 503);
    for (amount, id, reason) in [
        (3000, "c-1", "ok"),
        (2500, "c-2", "ok"),
        (1000, "c-3", "daily-limit"),
    ] {
        let (status, answer) = decide(&club_host, &club.till, buy("BK-2001", amount, id));
        assert_eq!(
            (status, answer["reason"].as_str()),
            (200, Some(reason)),
            "{answer}"
        );
        assert_eq!(answer["offline"], true, "{answer}");
        answers.push((id.to_string(), answer));
    }

    // The city comes back; the cinema's host is killed as it brings its decisions back,
    // and starts again from its outbox.
    let city = start_city();
    std::thread::sleep(Duration::from_millis(300));
    drop(kino_host);
    let kino_host = start_offline_venue(&kino, &city_url);
    within(
        60,
        "the city holds every decision made alone",
        &[&city, &kino_host, &club_host],
        || {
            decided_at_city(&city, &admin, "bergen", "AK-1001").len() >= 5
                && decided_at_city(&city, &admin, "albertslund", "BK-2001").len() >= 3
        },
    );
    // Each once, as answered, marked as decided alone at the venue.
    for (program, card) in [
        ("bergen", "AK-1001"),
        ("bergen", "AK-1003"),
        ("bergen", "AK-1002"),
        ("albertslund", "BK-2001"),
    ] {
        let entries = decided_at_city(&city, &admin, program, card);
        for (id, answer) in answers.iter().filter(|(_, a)| a["offline"] == true) {
            let matching: Vec<&Value> = entries.iter().filter(|e| e["id"] == id.as_str()).collect();
            if answers.iter().any(|(i, _)| i == id) && matching.is_empty() {
                continue; // another card's
            }
            assert_eq!(matching.len(), 1, "`{id}` at the city: {entries:?}");
            assert_eq!(
                matching[0]["reason"], answer["reason"],
                "{id}: {:?}",
                matching[0]
            );
            assert_eq!(matching[0]["offline"], true, "{id}: {:?}", matching[0]);
        }
    }
    let (_, card) = call(
        &city,
        Some(&admin),
        "GET",
        "/v1/programs/albertslund/cards/BK-2001",
        "",
    );
    assert_eq!(card["balances"]["DKK"], 20000 - 3000 - 2500, "{card}");

    if std::env::var("CARDRULES_DEBUG_OFFLINE").is_ok() {
        std::thread::sleep(Duration::from_secs(3));
        let (_, page) = call(
            &city,
            Some(&admin),
            "GET",
            "/v1/venue/programs/bergen/journal?after=0&limit=10000",
            "",
        );
        for e in page["events"].as_array().unwrap() {
            eprintln!(
                "city {} {} {} {}",
                e["seq"], e["change"]["kind"], e["change"]["request-id"], e["change"]["card"]
            );
        }
    }
    // Back online: decisions are the city's again.
    within(
        60,
        "the cinema forwards again",
        &[&city, &kino_host],
        || {
            let (status, answer) = decide(
                &kino_host,
                &kino.till,
                kino_at("AK-1004", &format!("k-9-{}", rand_suffix())),
            );
            status == 200 && answer.get("offline").is_none()
        },
    );

    // What a venue cannot do with an upload: forge, replay, reach past its lease, or act
    // for another program.
    let upload = |token: &str, program: &str, items: Value| {
        call(
            &city,
            Some(token),
            "POST",
            &format!("/v1/venue/programs/{program}/upload"),
            &json!({"items": items}).to_string(),
        )
    };
    let forged = json!([{"request": kino_at("AK-1003", "forged-1"),
        "decision": {"allow": true, "reason": "ok", "message": "", "admitted": 1, "price": 0, "notes": [], "balances": {},
                     "policy": online["policy"].clone(), "offline": true}}]);
    let (status, refused) = upload(&kino_token, "bergen", forged);
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("forged-1"),
        "{refused}"
    );
    let elsewhere = json!([{"request": {"program": "bergen", "card": "AK-1002", "action": "redeem", "offer": "akvariet",
        "at": "2024-03-02T12:00:00+01:00", "id": "elsewhere-1"},
        "decision": {"allow": true, "reason": "ok", "message": "", "admitted": 1, "price": 0, "notes": [], "balances": {},
                     "policy": online["policy"].clone(), "offline": true}}]);
    let (status, refused) = upload(&kino_token, "bergen", elsewhere);
    assert_eq!(status, 409, "{refused}");
    let (status, _) = upload(&club_token, "bergen", json!([]));
    assert_eq!(status, 403);
    // Another Bergen venue cannot upload the cinema's decisions as its own: its lease
    // holds none of the cinema's counters.
    let theirs = json!([{"request": kino_at("AK-1002", "theirs-1"),
        "decision": {"allow": true, "reason": "ok", "message": "", "admitted": 1, "price": 0, "notes": [], "balances": {},
                     "policy": online["policy"].clone(), "offline": true}}]);
    let (status, refused) = upload(&kode_token, "bergen", theirs);
    assert_eq!(status, 409, "{refused}");
    let (status, _) = upload(&admin, "bergen", json!([]));
    assert_eq!(status, 403);
    for id in ["forged-1", "elsewhere-1", "theirs-1"] {
        for card in ["AK-1002", "AK-1003"] {
            assert!(
                decided_at_city(&city, &admin, "bergen", card)
                    .iter()
                    .all(|e| e["id"] != id)
            );
        }
    }
    // A replayed upload appends nothing.
    let replayed =
        json!([{"request": kino_at("AK-1001", "k-3"), "decision": answers[0].1.clone()}]);
    let (status, done) = upload(&kino_token, "bergen", replayed);
    assert_eq!(
        (status, &done["already"], &done["appended"]),
        (200, &json!(1), &json!(0)),
        "{done}"
    );
    assert_eq!(
        decided_at_city(&city, &admin, "bergen", "AK-1001")
            .iter()
            .filter(|e| e["id"] == "k-3")
            .count(),
        1
    );
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
