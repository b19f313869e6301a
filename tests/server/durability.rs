//! What is answered is committed: racing tills cannot all win, holders and decisions
//! survive a restart, SIGTERM finishes what is in flight, and a SIGKILL under load loses
//! no answered decision and leaves nothing half-applied.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixtures::*;
use crate::support::server::*;

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
    server.signal_term();
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

/// A journal event this build cannot apply (a newer host's, an edited row) makes its
/// program decide nothing, and `/readyz` says which program and why; the other programs
/// keep deciding. `open` opens another handle on the server's ledger.
fn a_refused_event_stops_its_program_and_readyz_says_why(
    ledger: &str,
    open: &dyn Fn() -> Arc<dyn cardrules::Journal>,
) {
    use cardrules::ledger::{Appended, Batch, Change, Effect};
    let dir = tempfile::tempdir().unwrap();
    crate::support::files::copy_dir(
        &crate::support::files::shipped_policies(),
        &dir.path().join("policies"),
    );
    let dir = Arc::new(dir);
    let server = Server::start_on(dir.clone(), ledger, &["--allow-unsigned"]);
    let (status, ready) = server.get("/readyz");
    assert_eq!(status, 200, "{ready}");
    server.terminate();

    // Event after bergen's last: a grant, then a consumption beyond what it leaves (a
    // build that applied the grant and kept it would allow it on the 3rd load).
    let journal = open();
    let last = journal.read("bergen", 0).unwrap().len() as u64;
    let refused = Change::Decided {
        card: "BK-2001".into(),
        at: 1_709_312_400,
        request_id: None,
        request: "{}".into(),
        decision: "{}".into(),
        effects: vec![
            Effect::Grant {
                asset: "DKK".into(),
                amount: 100,
                expires: None,
            },
            Effect::Consume {
                asset: "DKK".into(),
                amount: 250,
            },
        ],
        digest: "sha256:newer".into(),
        fuel: 0,
    };
    let appended = journal
        .append(&[Batch {
            program: "bergen",
            after: last,
            changes: std::slice::from_ref(&refused),
        }])
        .unwrap();
    assert_eq!(appended, vec![Appended::Done]);
    drop(journal);

    let server = Server::start_on(dir, ledger, &["--allow-unsigned"]);
    let event = last + 1;
    for _ in 0..4 {
        let (status, answer) = server.post("/v1/decisions", &kino("BK-2001", None).to_string());
        assert_eq!(status, 500, "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains(&format!("event {event}")) && error.contains("cannot be applied"),
            "{answer}"
        );
    }
    let (status, card) = server.get("/v1/programs/bergen/cards/BK-2001");
    assert_eq!(status, 500, "{card}");
    let (status, ready) = server.get("/readyz");
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false);
    let reasons = ready["reasons"].to_string();
    assert!(
        reasons.contains(&format!(
            "program `bergen` cannot decide: ledger: journal of `bergen`, event {event}: cannot be applied: effect 2: "
        )),
        "{ready}"
    );
    let (status, answer) = server.post("/v1/decisions", &purchase("albertslund", "purchase"));
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn a_refused_journal_event_stops_its_program_and_readyz_says_why_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger.sqlite");
    let open = || -> Arc<dyn cardrules::Journal> {
        Arc::new(cardrules_sqlite::SqliteLedger::open(&file).unwrap())
    };
    a_refused_event_stops_its_program_and_readyz_says_why(file.to_str().unwrap(), &open);
}

#[test]
fn a_refused_journal_event_stops_its_program_and_readyz_says_why_on_postgres() {
    let Some(database) = crate::support::postgres::Database::fresh() else {
        return;
    };
    let open = || -> Arc<dyn cardrules::Journal> {
        Arc::new(cardrules_postgres::PostgresLedger::open(&database.url).unwrap())
    };
    a_refused_event_stops_its_program_and_readyz_says_why(&database.url, &open);
}
