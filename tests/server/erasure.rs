//! Erasure and restriction (GDPR Art. 17 and 18), on SQLite and PostgreSQL: a holder with
//! distinctive values decides, is erased, and no byte of the SQLite file, its write-ahead
//! log, or a `pg_dump` taken afterwards holds any of them — while every other card's
//! balance, statement and allowances, and the program's totals, are what they were; replay
//! runs over the ledger and reports the erased decisions; money on a card and an archive
//! duty each refuse erasure with the reason; a restricted holder is kept and not decided.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::fixtures::*;
use crate::support::files::{copy_dir, shipped_policies};
use crate::support::postgres::Database;
use crate::support::server::*;

/// What only the erased holder's registration carries: none of it may be found afterwards.
const ERASED_VALUES: [&str; 4] = [
    "2011-02-27",
    "zyxwerslev",
    "qxstatus-7001",
    "qxcategory-7001",
];

/// The other holder's distinctive values: still there afterwards (the scan can see them).
const KEPT_VALUES: [&str; 2] = ["qxstatus-7002", "qxcategory-7002"];

fn holder(card: &str, birth: &str, municipality: &str, n: &str) -> String {
    json!({
        "birth-date": birth,
        "municipality": municipality,
        "statuses": ["member:bakkens-hjerte", format!("qxstatus-{n}")],
        "attributes": {"blocked-categories": format!("qxcategory-{n}"), "daily-limit": 9000},
        "balances": {"DKK": 5000},
        "card": card,
    })
    .to_string()
}

fn purchase(card: &str, id: &str, minute: u32, amount: i64, explain: bool) -> String {
    json!({
        "program": "albertslund", "card": card, "action": "purchase", "offer": "bh-toast",
        "amount": amount, "at": format!("2024-09-02T15:{minute:02}:00+02:00"), "id": id,
        "explain": explain,
    })
    .to_string()
}

/// Everything a holder's guardian sees of a card: its view, statement and allowances.
fn seen(server: &Server, token: &str, card: &str) -> (Value, Value, Value) {
    let base = format!("/v1/programs/albertslund/cards/{card}");
    let get = |path: String| {
        let (status, body) = call(server, Some(token), "GET", &path, "");
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    (
        get(base.clone()),
        get(format!("{base}/history")),
        get(format!("{base}/allowances?at=2024-09-03T10:00:00%2B02:00")),
    )
}

fn total_dkk(server: &Server, token: &str, cards: &[&str]) -> i64 {
    cards
        .iter()
        .map(|card| {
            let (_, view) = call(
                server,
                Some(token),
                "GET",
                &format!("/v1/programs/albertslund/cards/{card}"),
                "",
            );
            view["balances"]["DKK"].as_i64().unwrap_or(0)
        })
        .sum()
}

fn holds(bytes: &[u8], value: &str) -> bool {
    bytes
        .windows(value.len())
        .any(|window| window == value.as_bytes())
}

/// Runs the whole story on a server over `ledger`; `scan` gives the bytes of every copy of
/// the ledger as it stands (the files, or a dump).
fn erase_on(ledger: &str, scan: &dyn Fn() -> Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    // Bergen archives its holders in this test: erasure is refused there, naming
    // restriction.
    let bergen = dir.path().join("policies/bergen/policy.toml");
    let manifest = std::fs::read_to_string(&bergen).unwrap();
    assert!(manifest.contains("\nerasure = \"erase\"\n"));
    std::fs::write(
        &bergen,
        manifest.replace(
            "\nerasure = \"erase\"\n",
            "\nerasure = \"restrict\"\narchive = \"the Archives Act (arkivlova)\"\n",
        ),
    )
    .unwrap();
    let (ops, e1) = make_token(&["--name", "ops", "--role", "admin", "--program", "*"]);
    let (desk, e2) = make_token(&[
        "--name",
        "desk",
        "--role",
        "registrar",
        "--program",
        "albertslund",
    ]);
    std::fs::write(dir.path().join("auth.toml"), format!("{e1}\n{e2}\n")).unwrap();
    let auth = dir.path().join("auth.toml");
    let dir = Arc::new(dir);
    let server = Server::start_on(
        dir.clone(),
        ledger,
        &[
            "--allow-unsigned",
            "--auth",
            auth.to_str().unwrap(),
            "--snapshot-every",
            "3",
        ],
    );
    let put = |card: &str, body: String| {
        let (status, answer) = call(
            &server,
            Some(&ops),
            "PUT",
            &format!("/v1/programs/albertslund/holders/{card}"),
            &body,
        );
        assert_eq!(status, 201, "{answer}");
    };
    put(
        "BK-7001",
        holder("BK-7001", "2011-02-27", "zyxwerslev", "7001"),
    );
    put(
        "BK-7002",
        holder("BK-7002", "2012-03-01", "albertslund", "7002"),
    );
    let decide = |body: String| {
        let (status, decision) = call(&server, Some(&ops), "POST", "/v1/decisions", &body);
        assert_eq!(status, 200, "{decision}");
        decision
    };
    for (n, card) in ["BK-7001", "BK-7002"].iter().enumerate() {
        let minute = n as u32 * 10;
        assert_eq!(
            decide(purchase(card, &format!("{card}/1"), minute, 1500, true))["allow"],
            true
        );
        assert_eq!(
            decide(purchase(card, &format!("{card}/2"), minute + 1, 500, false))["allow"],
            true
        );
    }
    // A guardian's change of a limit is a registration like any other.
    let (status, body) = call(
        &server,
        Some(&desk),
        "PATCH",
        "/v1/programs/albertslund/holders/BK-7001",
        r#"{"attributes":{"purchase-limit":3000}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let cards = ["BK-2001", "BK-2002", "BK-7002"];
    let before: Vec<_> = cards.iter().map(|c| seen(&server, &ops, c)).collect();
    let total_before = total_dkk(&server, &ops, &cards);

    // Erasure is for admins; money on the card refuses it, naming the payout.
    let erase = |token: &str, card: &str| {
        call(
            &server,
            Some(token),
            "DELETE",
            &format!("/v1/programs/albertslund/holders/{card}"),
            "",
        )
    };
    let (status, body) = erase(&desk, "BK-7001");
    assert_eq!(status, 403, "{body}");
    let (status, body) = erase(&ops, "BK-7001");
    assert_eq!(status, 409, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("3000 `DKK`") && error.contains("`close-account`"),
        "{error}"
    );
    let closed = decide(
        json!({"program": "albertslund", "card": "BK-7001", "action": "close-account",
               "at": "2024-09-02T16:00:00+02:00", "id": "BK-7001/close"})
        .to_string(),
    );
    assert_eq!(closed["allow"], true, "{closed}");
    // Before: the values are in the ledger (the scan can find them).
    let bytes = scan();
    for value in ERASED_VALUES.iter().chain(&KEPT_VALUES) {
        assert!(
            holds(&bytes, value),
            "`{value}` is not in the ledger before"
        );
    }
    let (status, erased) = erase(&ops, "BK-7001");
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["state"], "erased", "{erased}");
    assert_eq!(erased["cards"], json!(["BK-7001"]), "{erased}");
    // Again: nothing more to do.
    let (status, again) = erase(&ops, "BK-7001");
    assert_eq!((status, &again["done"]), (200, &json!(false)), "{again}");

    // The card: erased, no facts; decisions on it denied `erased`; not registered again.
    let (status, view) = call(
        &server,
        Some(&ops),
        "GET",
        "/v1/programs/albertslund/cards/BK-7001",
        "",
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["state"], "erased", "{view}");
    assert!(
        view.get("birth-date").is_none() && view["statuses"] == json!([]),
        "{view}"
    );
    let denied = decide(purchase("BK-7001", "BK-7001/3", 30, 100, false));
    assert_eq!(
        (&denied["allow"], &denied["reason"]),
        (&json!(false), &json!("erased")),
        "{denied}"
    );
    let (status, body) = call(
        &server,
        Some(&ops),
        "PUT",
        "/v1/programs/albertslund/holders/BK-7001",
        &holder("BK-7001", "2011-02-27", "zyxwerslev", "7001"),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("was erased"),
        "{body}"
    );
    // Its export: the card, erased, and its statement without facts.
    let (status, export) = call(
        &server,
        Some(&ops),
        "GET",
        "/v1/programs/albertslund/cards/BK-7001/export",
        "",
    );
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["registrations"], json!([]), "{export}");
    assert!(
        export["statement"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "erased"),
        "{export}"
    );
    // A retried request id of the erased card is answered as recorded, not decided again.
    let retried = decide(purchase("BK-7001", "BK-7001/2", 1, 500, false));
    assert_eq!(
        (&retried["allow"], &retried["replayed"]),
        (&json!(true), &json!(true)),
        "{retried}"
    );

    // Every other card is as it was, to the øre.
    let after: Vec<_> = cards.iter().map(|c| seen(&server, &ops, c)).collect();
    assert_eq!(before, after);
    assert_eq!(total_dkk(&server, &ops, &cards), total_before);
    // More decisions: the next snapshot is written after the erasure.
    for n in 3..7 {
        decide(purchase(
            "BK-7002",
            &format!("BK-7002/{n}"),
            20 + n,
            100,
            false,
        ));
    }
    // (A snapshot taken before the erasure is dropped with it, and one built before it
    // but saved after is not kept: any snapshot now is one without the holder.)
    eventually("a snapshot after the erasure", &server, || {
        let stats: Value = serde_json::from_str(&cardrules(&[
            "ledger", "stats", "--ledger", ledger, "--json",
        ]))
        .unwrap();
        stats["programs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["program"] == "albertslund" && p["snapshot"].is_object())
    });

    // No copy of the ledger holds a value of the erased holder; the others' are there.
    let bytes = scan();
    for value in ERASED_VALUES {
        assert!(!holds(&bytes, value), "`{value}` is still in the ledger");
    }
    for value in KEPT_VALUES {
        assert!(holds(&bytes, value), "`{value}` is gone from the ledger");
    }
    // Nor do the logs or the metrics, of either holder.
    let (_, metrics) = call(&server, Some(&ops), "GET", "/metrics", "");
    let shown = format!("{}\n{metrics}", server.log());
    for value in ERASED_VALUES.iter().chain(&KEPT_VALUES) {
        assert!(
            !shown.contains(value),
            "`{value}` is in the logs or metrics"
        );
    }

    // Replay runs over the ledger and reports the erased decisions as erased.
    let report = cardrules(&[
        "replay",
        "--ledger",
        ledger,
        "--policies",
        server.policies().to_str().unwrap(),
        "--allow-unsigned",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["changed"], 0, "{report}");
    assert!(report["erased"].as_u64().unwrap() >= 3, "{report}");

    // An archive duty keeps the holder: erasure is refused, naming restriction.
    let (status, body) = call(
        &server,
        Some(&ops),
        "DELETE",
        "/v1/programs/bergen/holders/AK-1001",
        "",
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("arkivlova")
            && body["error"].as_str().unwrap().contains("restriction"),
        "{body}"
    );
    // Restriction: data kept and shown, nothing decided, until lifted.
    let restrict = |restricted: bool| {
        call(
            &server,
            Some(&ops),
            "PUT",
            "/v1/programs/bergen/holders/AK-1001/restriction",
            &json!({ "restricted": restricted }).to_string(),
        )
    };
    let (status, view) = restrict(true);
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["restricted"], true, "{view}");
    assert!(view["birth-date"].is_string(), "{view}");
    let redeem = |id: &str| {
        decide(
            json!({"program": "bergen", "card": "AK-1001", "action": "redeem",
                   "offer": "bergen-kino", "at": "2024-03-02T12:00:00+01:00", "id": id})
            .to_string(),
        )
    };
    let denied = redeem("restricted-1");
    assert_eq!(denied["reason"], "restricted", "{denied}");
    let (status, _) = restrict(false);
    assert_eq!(status, 200);
    assert_eq!(redeem("restricted-2")["allow"], true);
    let (status, body) = call(
        &server,
        Some(&desk),
        "PUT",
        "/v1/programs/albertslund/holders/BK-7002/restriction",
        r#"{"restricted":true}"#,
    );
    assert_eq!(status, 403, "{body}");
    let (_, log) = call(
        &server,
        Some(&ops),
        "GET",
        "/v1/programs/albertslund/cards/BK-7001/access-log",
        "",
    );
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["method"] == "DELETE" && e["token"] == "ops"),
        "{log}"
    );
    drop(server);
    // Stopped (the log checkpointed into the file): still none of them.
    let bytes = scan();
    for value in ERASED_VALUES {
        assert!(
            !holds(&bytes, value),
            "`{value}` is in the ledger after a stop"
        );
    }
    // The operator's commands: an export, and an erasure refused while money is left.
    let tool = |command: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cardrules"))
            .args(["ledger", command, "--ledger", ledger])
            .args(["--policies", policies.to_str().unwrap(), "--allow-unsigned"])
            .args(["--program", "albertslund", "--card", "BK-7002"])
            .output()
            .unwrap()
    };
    let out = tool("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let export: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(export["holder"]["statuses"][1], "qxstatus-7002", "{export}");
    let out = tool("erase");
    assert_eq!(out.status.code(), Some(2));
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("error: cannot erase the holder of card `BK-7002`")
            && error.contains("`close-account`"),
        "{error}"
    );
}

#[test]
fn an_erased_holder_is_in_no_byte_of_the_sqlite_file_or_its_log_and_every_other_card_is_unchanged()
{
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("erasure.sqlite");
    let path = ledger.clone();
    let scan = move || {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let file = format!("{}{suffix}", path.display());
            if let Ok(more) = std::fs::read(&file) {
                bytes.extend(more);
            }
        }
        bytes
    };
    erase_on(ledger.to_str().unwrap(), &scan);
}

#[test]
fn an_erased_holder_is_in_no_pg_dump_taken_afterwards_and_every_other_card_is_unchanged() {
    let Some(database) = Database::fresh() else {
        return;
    };
    let url = database.url.clone();
    let scan = move || {
        let out = std::process::Command::new("pg_dump")
            .arg(&url)
            .output()
            .expect("pg_dump runs (PostgreSQL's client tools are installed with the server)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    erase_on(&database.url, &scan);
}

/// Two servers over two ledgers given the same traffic; one ledger is compacted while its
/// server serves. Every answer after it is the same on both (counts over the year and the
/// semester, capacities, balances, allowances), after a restart too; the ended holder is
/// erased there and only there; `ledger verify` passes on the compacted ledger.
fn retention_on(compacted: &str, twin: &str) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let bergen = dir.path().join("policies/bergen/policy.toml");
    let manifest = std::fs::read_to_string(&bergen).unwrap();
    let shipped = "decisions = \"400d\"\nholders = \"730d\"\naccess-log = \"730d\"\n";
    assert!(manifest.contains(shipped));
    std::fs::write(
        &bergen,
        manifest.replace(
            shipped,
            "decisions = \"90d\"\nholders = \"120d\"\naccess-log = \"100d\"\n",
        ),
    )
    .unwrap();
    let dir = Arc::new(dir);
    let policies = dir.path().join("policies");
    // Recorded traffic of 2027, after the holders are registered (on the host's clock).
    let a = Server::start_on(dir.clone(), compacted, &["--allow-unsigned"]);
    let b = Server::start_on(dir.clone(), twin, &["--allow-unsigned"]);
    let cards: Vec<String> = (1..=6).map(|n| format!("RT-{n:02}")).collect();
    let both = |method: &str, path: &str, body: &str| -> Value {
        let (sa, va) = call(&a, None, method, path, body);
        let (sb, vb) = call(&b, None, method, path, body);
        assert_eq!((sa, &va), (sb, &vb), "{method} {path} {body}");
        va
    };
    for card in cards.iter().chain([&"RT-STOP".to_string()]) {
        let (status, _) = call(
            &a,
            None,
            "PUT",
            &format!("/v1/programs/bergen/holders/{card}"),
            r#"{"birth-date":"2014-01-01","municipality":"bergen"}"#,
        );
        assert_eq!(status, 201);
        let (status, _) = call(
            &b,
            None,
            "PUT",
            &format!("/v1/programs/bergen/holders/{card}"),
            r#"{"birth-date":"2014-01-01","municipality":"bergen"}"#,
        );
        assert_eq!(status, 201);
    }
    let redeem = |card: &str, offer: &str, at: &str, id: &str| {
        json!({"program": "bergen", "card": card, "action": "redeem", "offer": offer,
               "party": 1, "at": at, "id": id, "explain": true})
        .to_string()
    };
    let mut allowed = 0;
    for month in 1..=9 {
        for (n, card) in cards.iter().enumerate() {
            let at = format!("2027-{month:02}-{:02}T12:00:00+02:00", 1 + n);
            for offer in ["bergen-kino", "akvariet"] {
                let decision = both(
                    "POST",
                    "/v1/decisions",
                    &redeem(card, offer, &at, &format!("{card}/{offer}/{month}")),
                );
                allowed += usize::from(decision["allow"] == true);
            }
        }
    }
    // Autumn enrolments: two places at the climbing club, one football school per card.
    for (n, card) in cards.iter().take(3).enumerate() {
        let at = format!("2027-08-{:02}T12:00:00+02:00", 10 + n);
        for offer in ["klatring-bratte-rom", "brann-fotballskole"] {
            both(
                "POST",
                "/v1/decisions",
                &redeem(card, offer, &at, &format!("{card}/{offer}")),
            );
        }
    }
    // A card used in February, then stopped: its holder's data is kept 120 days.
    both(
        "POST",
        "/v1/decisions",
        &redeem(
            "RT-STOP",
            "bergen-kino",
            "2027-02-01T12:00:00+01:00",
            "stop/1",
        ),
    );
    both(
        "PUT",
        "/v1/programs/bergen/holders/RT-STOP",
        r#"{"birth-date":"2014-01-01","municipality":"bergen","state":"stopped"}"#,
    );
    assert!(allowed > 30, "the traffic is mostly allowed: {allowed}");
    let history = |server: &Server, card: &str| -> usize {
        let (_, page) = call(
            server,
            None,
            "GET",
            &format!("/v1/programs/bergen/cards/{card}/history?limit=500"),
            "",
        );
        page["entries"].as_array().unwrap().len()
    };
    let long = history(&a, "RT-01");

    // Compacted as of mid-December 2027, while its server serves.
    let report = cardrules(&[
        "ledger",
        "compact",
        "--ledger",
        compacted,
        "--policies",
        policies.to_str().unwrap(),
        "--allow-unsigned",
        "--at",
        "2027-12-15T00:00:00Z",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&report).unwrap();
    let bergen = report["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["program"] == "bergen")
        .unwrap();
    assert!(bergen["events-removed"].as_u64().unwrap() > 100, "{report}");
    assert_eq!(bergen["holders-erased"], json!(["RT-STOP"]), "{report}");
    assert!(bergen["accesses-removed"].as_u64().unwrap() > 0, "{report}");
    assert!(history(&a, "RT-01") < long);

    // The same answers on both, now and after a restart of the compacted ledger's server.
    let compare = |a: &Server, b: &Server, day: u32| {
        for card in &cards {
            let at = format!("2027-12-{day:02}T12:00:00+01:00");
            for offer in [
                "bergen-kino",
                "akvariet",
                "klatring-bratte-rom",
                "brann-fotballskole",
            ] {
                let body = redeem(card, offer, &at, &format!("{card}/{offer}/dec-{day}"));
                let (_, da) = call(a, None, "POST", "/v1/decisions", &body);
                let (_, db) = call(b, None, "POST", "/v1/decisions", &body);
                assert_eq!(da, db, "{body}");
            }
            for path in [
                format!("/v1/programs/bergen/cards/{card}"),
                format!(
                    "/v1/programs/bergen/cards/{card}/allowances?at=2027-12-{day:02}T13:00:00%2B01:00"
                ),
            ] {
                let (_, va) = call(a, None, "GET", &path, "");
                let (_, vb) = call(b, None, "GET", &path, "");
                assert_eq!(va, vb, "{path}");
            }
        }
    };
    compare(&a, &b, 16);
    let (_, stopped) = call(&a, None, "GET", "/v1/programs/bergen/cards/RT-STOP", "");
    assert_eq!(stopped["state"], "erased", "{stopped}");
    let (_, stopped) = call(&b, None, "GET", "/v1/programs/bergen/cards/RT-STOP", "");
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    drop(a);
    let a = Server::start_on(dir.clone(), compacted, &["--allow-unsigned"]);
    compare(&a, &b, 17);
    drop(a);
    let out = cardrules(&["ledger", "verify", "--ledger", compacted]);
    assert!(out.contains("bergen"), "{out}");
}

#[test]
fn retention_compacts_a_served_sqlite_ledger_and_every_answer_stays_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let compacted = dir.path().join("compacted.sqlite");
    let twin = dir.path().join("twin.sqlite");
    retention_on(compacted.to_str().unwrap(), twin.to_str().unwrap());
}

#[test]
fn retention_compacts_a_served_postgres_ledger_and_every_answer_stays_the_same() {
    let (Some(compacted), Some(twin)) = (Database::fresh(), Database::fresh()) else {
        return;
    };
    retention_on(&compacted.url, &twin.url);
}
