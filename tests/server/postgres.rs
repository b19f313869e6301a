//! Two real hosts on one PostgreSQL ledger (`CARDRULES_TEST_POSTGRES`): races across
//! hosts, one request id sent to both, and a SIGKILL of one under load; a ledger URL with
//! libpq's TLS settings.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::fixtures::*;
use crate::support::files::{copy_dir, shipped_policies};
use crate::support::postgres::Database;
use crate::support::server::*;

fn host_on(database: &Database) -> Server {
    host_at(&database.url)
}

fn host_at(ledger: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    Server::start_on(Arc::new(dir), ledger, &["--allow-unsigned"])
}

/// `--ledger postgres://…?sslmode=require` serves over TLS to the database (the test
/// server has `ssl = on`); `verify-full` with a CA that did not sign the server's
/// certificate stops `serve` at start, saying why, and never showing the password.
/// (`verify-full` that succeeds, against a server with a certificate of the test's own,
/// is tested in `host/postgres/src/tls/tests.rs`.)
#[test]
fn a_ledger_url_asks_for_tls_as_libpq_does() {
    let Some(database) = Database::fresh() else {
        return;
    };
    let server = host_at(&format!("{}?sslmode=require", database.url));
    let holder = r#"{"birth-date":"2012-01-01","municipality":"bergen"}"#;
    assert_eq!(
        server.put("/v1/programs/bergen/holders/TLS-1", holder).0,
        201
    );
    let admin = std::env::var("CARDRULES_TEST_POSTGRES").unwrap();
    let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    let name = database.url.rsplit('/').next().unwrap().to_string();
    let (encrypted, plain): (i64, i64) = {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1",
                &[&name],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(
        encrypted >= 1 && plain == 0,
        "{encrypted} encrypted, {plain} plain"
    );
    drop(server);

    let files = tempfile::tempdir().unwrap();
    let ca = files.path().join("ca.pem");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
    let (scheme, rest) = database.url.split_once("://").unwrap();
    let (user, place) = rest.split_once('@').unwrap();
    let user = user.split(':').next().unwrap();
    let ledger = format!(
        "{scheme}://{user}:hunter2@{place}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    );
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardrules"))
        .args([
            "serve",
            "--allow-unsigned",
            "--listen",
            "127.0.0.1:0",
            "--policies",
        ])
        .arg(dir.path().join("policies"))
        .args(["--ledger", &ledger])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("(`sslmode=verify-full`): the server's certificate is refused: "),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));
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

/// On PostgreSQL a NUL in an id was stored as U+FFFD in the key columns, so that card
/// `Z\u{0}` and card `Z\u{FFFD}` shared a statement, and an id of 4 000 characters made
/// the index refuse its row: such ids are refused at the door now, before the ledger.
#[test]
fn ids_postgres_could_not_key_are_refused_before_the_ledger() {
    let Some(database) = Database::fresh() else {
        return;
    };
    let server = host_on(&database);
    let holder = r#"{"birth-date":"2012-01-01","municipality":"bergen"}"#;
    let answer = server.put("/v1/programs/bergen/holders/Z%00", holder);
    assert_eq!(answer.0, 400, "{}", answer.1);
    assert!(
        answer.1["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("`card` `Z\\0` holds the control character U+0000"),
        "{}",
        answer.1
    );
    assert_eq!(
        server
            .put("/v1/programs/bergen/holders/Z%EF%BF%BD", holder)
            .0,
        201
    );
    let visit = |card: &str, id: &str| {
        json!({"program": "bergen", "card": card, "action": "redeem",
               "offer": "bergen-kino", "at": "2024-03-01T18:00:00+01:00", "id": id})
        .to_string()
    };
    for (card, id, field) in [
        ("Z\u{0}", "till-1/1", "card"),
        ("Z\u{FFFD}", "till-1/\u{0}", "id"),
        ("Z\u{FFFD}", &"7".repeat(4_000), "id"),
    ] {
        let answer = server.post("/v1/decisions", &visit(card, id));
        assert_eq!(answer.0, 400, "{}", answer.1);
        let error = answer.1["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(&format!("`{field}` ")), "{error}");
    }
    // The card that exists decides and keeps its own statement.
    let decision = server.decide(&serde_json::from_str(&visit("Z\u{FFFD}", "till-1/2")).unwrap());
    assert_eq!(decision["allow"], true, "{decision}");
    let (status, history) = server.get("/v1/programs/bergen/cards/Z%EF%BF%BD/history");
    assert_eq!(status, 200, "{history}");
    assert_eq!(
        history["entries"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    assert_eq!(server.get("/v1/programs/bergen/cards/Z%00").0, 400);
}
