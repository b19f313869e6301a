//! The `guardian` role (a parent's portal): for its own cards only, it reads them, asks
//! for the decisions its `actions` allow, and changes the attributes the schema marks
//! `guardian = true` with `PATCH …/holders/{card}`; everything else is a 403, and nothing
//! refused is journaled.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::fixtures::*;
use crate::support::files::{copy_dir, shipped_policies};
use crate::support::server::*;

/// The server's `cardrules_ledger_changes_total`, scraped with an admin token: changes
/// appended to the journal so far.
fn changes_journaled(server: &Server, admin: &str) -> f64 {
    let mut response = agent()
        .get(server.url("/metrics"))
        .header("Authorization", format!("Bearer {admin}"))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.body_mut().read_to_string().unwrap();
    Metrics::parse(&text).value("cardrules_ledger_changes_total", &[])
}

/// A purchase of `amount` øre at Storagergård by BK-2002, committed.
fn purchase_by_bk_2002(amount: i64, id: &str) -> String {
    json!({"program": "albertslund", "card": "BK-2002", "action": "purchase",
           "offer": "sg-perler", "amount": amount, "at": "2024-05-07T16:00:00+02:00",
           "id": id})
    .to_string()
}

/// A money action (`top-up`, …) of 10.00 by `card`, committed unless `dry_run`.
fn portal_action(card: &str, action: &str) -> String {
    json!({"program": "albertslund", "card": card, "action": action, "amount": 1000,
           "at": "2024-05-07T12:00:00+02:00", "dry-run": true})
    .to_string()
}

#[test]
fn a_guardian_sets_its_childs_daily_limit_the_next_purchase_obeys_it_and_nothing_else_is_its_to_touch()
 {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&shipped_policies(), &policies);
    // In this copy, `blocked-categories` is the registrar's alone: declared, not marked.
    let manifest = policies.join("albertslund/policy.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let marked = "[schema.holder.blocked-categories]\ntype = \"text\"\nguardian = true\n";
    assert!(text.contains(marked), "{text}");
    let text = text.replace(
        marked,
        "[schema.holder.blocked-categories]\ntype = \"text\"\n",
    );
    std::fs::write(&manifest, text).unwrap();

    let (parent, parent_entry) = make_token(&[
        "--name",
        "parent-of-bk-2002",
        "--role",
        "guardian",
        "--program",
        "albertslund",
        "--card",
        "BK-2002",
        "--action",
        "top-up",
        "--action",
        "enable-auto-top-up",
        "--action",
        "block-card",
    ]);
    assert!(
        parent_entry.contains("cards = [\"BK-2002\"]"),
        "{parent_entry}"
    );
    let (till, till_entry) = make_token(&[
        "--name",
        "storagergard-till",
        "--role",
        "terminal",
        "--program",
        "albertslund",
        "--action",
        "purchase",
    ]);
    let (ops, ops_entry) = make_token(&["--name", "ops", "--role", "admin", "--program", "*"]);
    let (parent, till, ops) = (parent.as_str(), till.as_str(), ops.as_str());
    let auth = dir.path().join("auth.toml");
    std::fs::write(&auth, format!("{parent_entry}\n{till_entry}\n{ops_entry}")).unwrap();
    let server = Server::start_with(
        Arc::new(dir),
        &["--allow-unsigned", "--auth", auth.to_str().unwrap()],
    );
    let card = "/v1/programs/albertslund/cards/BK-2002";
    let holder = "/v1/programs/albertslund/holders/BK-2002";

    // The guardian reads its child's card, with the attributes it may set.
    let (status, view) = call(&server, Some(parent), "GET", card, "");
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["balances"]["DKK"], 7500);
    assert_eq!(
        view["attributes"],
        json!({"auto-top-up-below": 2000, "auto-top-up-amount": 10000})
    );

    // It sets a daily limit of 10 kr: the answer is the card as it is now…
    let journaled = changes_journaled(&server, ops);
    let (status, view) = call(
        &server,
        Some(parent),
        "PATCH",
        holder,
        r#"{"attributes": {"daily-limit": 1000}}"#,
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["attributes"]["daily-limit"], 1000);
    assert_eq!(view["attributes"]["auto-top-up-below"], 2000, "others kept");
    assert_eq!(view["statuses"], json!(["member:storagergard"]));
    assert_eq!(view["balances"]["DKK"], 7500);
    assert_eq!(changes_journaled(&server, ops), journaled + 1.0);
    let (_, read) = call(&server, Some(ops), "GET", card, "");
    assert_eq!(read, view);

    // …and the till's next purchase is judged by it: 15 kr is over, 8 kr within, and 3 kr
    // more the same day over again.
    let (status, decision) = call(
        &server,
        Some(till),
        "POST",
        "/v1/decisions",
        &purchase_by_bk_2002(1500, "sg-1"),
    );
    assert_eq!(status, 200, "{decision}");
    assert_eq!(
        (&decision["allow"], &decision["reason"]),
        (&json!(false), &json!("daily-limit")),
        "{decision}"
    );
    let (_, decision) = call(
        &server,
        Some(till),
        "POST",
        "/v1/decisions",
        &purchase_by_bk_2002(800, "sg-2"),
    );
    assert_eq!(decision["allow"], true, "{decision}");
    assert_eq!(decision["balances"]["DKK"], 6700);
    let (_, decision) = call(
        &server,
        Some(till),
        "POST",
        "/v1/decisions",
        &purchase_by_bk_2002(300, "sg-3"),
    );
    assert_eq!(decision["reason"], "daily-limit", "{decision}");

    // The portal shows what is left of today's limit, and the day's statement: the
    // parent's change (a registration) and the three purchases.
    let (status, allowances) = call(
        &server,
        Some(parent),
        "GET",
        "/v1/programs/albertslund/cards/BK-2002/allowances?offer=sg-perler&at=2024-05-07T18:00:00%2B02:00",
        "",
    );
    assert_eq!(status, 200, "{allowances}");
    let daily = allowances["allowances"][0]["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["reason"] == "daily-limit")
        .cloned()
        .unwrap();
    assert_eq!(
        (&daily["used"], &daily["limit"], &daily["remaining"]),
        (&json!(800), &json!(1000), &json!(200))
    );
    let (status, statement) = call(
        &server,
        Some(parent),
        "GET",
        "/v1/programs/albertslund/cards/BK-2002/history",
        "",
    );
    assert_eq!(status, 200, "{statement}");
    let kinds: Vec<&str> = statement["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["registered", "registered", "decided", "decided", "decided"]
    );
    for other in ["allowances", "history"] {
        let path = format!("/v1/programs/albertslund/cards/BK-2001/{other}");
        let (status, error) = call(&server, Some(parent), "GET", &path, "");
        assert_eq!(status, 403, "{path}: {error}");
    }

    // Refused, each with nothing journaled and the card as it was.
    let (_, before) = call(&server, Some(ops), "GET", card, "");
    let (_, other_before) = call(
        &server,
        Some(ops),
        "GET",
        "/v1/programs/albertslund/cards/BK-2001",
        "",
    );
    let journaled = changes_journaled(&server, ops);
    let other_card =
        "this token may not act for card `BK-2001`: a guardian acts for its own cards only";
    let only_marked = "a guardian may change only attributes the schema marks `guardian = true`";
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        // Another card: read, changed or decided for.
        (
            "GET",
            "/v1/programs/albertslund/cards/BK-2001",
            String::new(),
            403,
            other_card,
        ),
        (
            "PATCH",
            "/v1/programs/albertslund/holders/BK-2001",
            r#"{"attributes": {"daily-limit": 99999}}"#.into(),
            403,
            other_card,
        ),
        (
            "POST",
            "/v1/decisions",
            portal_action("BK-2001", "top-up"),
            403,
            other_card,
        ),
        (
            "POST",
            "/v1/decisions",
            portal_action("BK-2001", "block-card"),
            403,
            other_card,
        ),
        // Another program.
        (
            "GET",
            "/v1/programs/bergen/cards/BK-2002",
            String::new(),
            403,
            "this token may not act for program `bergen`",
        ),
        // Its statuses or state, or any field beside `attributes`.
        (
            "PATCH",
            holder,
            r#"{"statuses": ["member:bakkens-hjerte"]}"#.into(),
            403,
            "a guardian may change only attributes the schema marks `guardian = true`, not `statuses`",
        ),
        (
            "PATCH",
            holder,
            r#"{"attributes": {"daily-limit": 5000}, "state": "active"}"#.into(),
            403,
            "not `state`",
        ),
        // An attribute the schema does not mark, declared or not.
        (
            "PATCH",
            holder,
            r#"{"attributes": {"blocked-categories": "sweets"}}"#.into(),
            403,
            "a guardian may change only attributes the schema marks `guardian = true`, not \
             `blocked-categories` (it may change `auto-top-up-amount`, `auto-top-up-below`, \
             `daily-limit`, `purchase-limit`)",
        ),
        (
            "PATCH",
            holder,
            r#"{"attributes": {"daily-limit": 5000, "member-of": "storagergard"}}"#.into(),
            403,
            only_marked,
        ),
        (
            "PATCH",
            holder,
            r#"{"attributes": {"blocked-categories": 1.5}}"#.into(),
            403,
            only_marked,
        ),
        // A value the schema refuses: the caller's mistake, a 400.
        (
            "PATCH",
            holder,
            r#"{"attributes": {"daily-limit": -500}}"#.into(),
            400,
            "holder `BK-2002`: `daily-limit` must be an integer of at least 0, not the integer -500",
        ),
        (
            "PATCH",
            holder,
            r#"{"attributes": {"daily-limit": "500"}}"#.into(),
            400,
            "holder `BK-2002`: `daily-limit` must be an integer of at least 0, not the text \"500\"",
        ),
        (
            "PATCH",
            holder,
            r#"{"attributes": {"purchase-limit": 2000, "daily-limit": 1.5}}"#.into(),
            400,
            "holder `BK-2002`: `daily-limit` must be text, an integer or a boolean (or `null`, to remove it), not `1.5`",
        ),
        (
            "PATCH",
            holder,
            r#"{"attributes": {}}"#.into(),
            400,
            "`attributes` names nothing to change",
        ),
        (
            "PATCH",
            holder,
            r#"{"attributes": [1]}"#.into(),
            400,
            "`attributes` must be an object",
        ),
        ("PATCH", holder, "[]".into(), 400, "expected a JSON object"),
        ("PATCH", holder, "{".into(), 400, "cannot parse holder change"),
        // Actions it was not given: a guardian may not buy with its child's card.
        (
            "POST",
            "/v1/decisions",
            portal_action("BK-2002", "purchase"),
            403,
            "this token may not ask for action `purchase` (it may ask for `block-card`, `enable-auto-top-up`, `top-up`)",
        ),
        (
            "POST",
            "/v1/decisions",
            portal_action("BK-2002", "close-account"),
            403,
            "may not ask for action `close-account`",
        ),
        // Every other route.
        (
            "PUT",
            holder,
            r#"{"birth-date":"2010-03-02","municipality":"albertslund","statuses":["member:storagergard"]}"#.into(),
            403,
            "role `guardian` may not call `PUT /v1/programs/{program}/holders/{card}`",
        ),
        (
            "GET",
            "/v1/programs",
            String::new(),
            403,
            "role `guardian` may not call `GET /v1/programs`",
        ),
        (
            "GET",
            "/metrics",
            String::new(),
            403,
            "role `guardian` may not call `GET /metrics`",
        ),
    ];
    for (method, path, body, expected, message) in &cases {
        let (status, answer) = call(&server, Some(parent), method, path, body);
        assert_eq!(status, *expected, "{method} {path} {body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(message),
            "{method} {path} {body}: {error}\n  expected: {message}"
        );
        assert!(!error.contains(parent), "a token in an answer");
    }
    // Nor may a till change attributes, and another caller's unknown field is a 400.
    let (status, answer) = call(
        &server,
        Some(till),
        "PATCH",
        holder,
        r#"{"attributes": {"daily-limit": 0}}"#,
    );
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("role `terminal` may not call `PATCH /v1/programs/{program}/holders/{card}`"),
        "{answer}"
    );
    let (status, answer) = call(
        &server,
        Some(ops),
        "PATCH",
        holder,
        r#"{"attributes": {"daily-limit": 0}, "statuses": []}"#,
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `statuses`"),
        "{answer}"
    );
    let (status, answer) = call(
        &server,
        Some(ops),
        "PATCH",
        "/v1/programs/albertslund/holders/NOBODY",
        r#"{"attributes": {"daily-limit": 0}}"#,
    );
    assert_eq!(status, 404, "{answer}");
    assert_eq!(
        answer["error"],
        "card `NOBODY` is not known to program `albertslund`"
    );
    assert_eq!(
        changes_journaled(&server, ops),
        journaled,
        "nothing journaled"
    );
    assert_eq!(call(&server, Some(ops), "GET", card, "").1, before);
    assert_eq!(
        call(
            &server,
            Some(ops),
            "GET",
            "/v1/programs/albertslund/cards/BK-2001",
            ""
        )
        .1,
        other_before
    );

    // What the portal does: a top-up, and lifting the limit (`null` removes it)…
    let (status, decision) = call(
        &server,
        Some(parent),
        "POST",
        "/v1/decisions",
        &portal_action("BK-2002", "top-up"),
    );
    assert_eq!(
        (status, &decision["allow"]),
        (200, &json!(true)),
        "{decision}"
    );
    let (status, view) = call(
        &server,
        Some(parent),
        "PATCH",
        holder,
        r#"{"attributes": {"daily-limit": null, "purchase-limit": 2000}}"#,
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        view["attributes"],
        json!({"auto-top-up-below": 2000, "auto-top-up-amount": 10000, "purchase-limit": 2000})
    );
    let (_, decision) = call(
        &server,
        Some(till),
        "POST",
        "/v1/decisions",
        &purchase_by_bk_2002(300, "sg-4"),
    );
    assert_eq!(decision["allow"], true, "{decision}");
    // …while a registrar-level caller may still change what the guardian may not.
    let (status, view) = call(
        &server,
        Some(ops),
        "PATCH",
        holder,
        r#"{"attributes": {"blocked-categories": "sweets"}}"#,
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["attributes"]["blocked-categories"], "sweets");
    assert_eq!(view["attributes"]["purchase-limit"], 2000);

    // The log names the guardian with what it was refused.
    let log = server.log();
    assert!(log.contains("parent-of-bk-2002"), "{log}");
    assert!(!log.contains(parent), "a token in the log");
}

/// The journal keeps a guardian's change as a registration: a restarted server rebuilds
/// the limit from it, and two changes at once both land.
#[test]
fn guardian_changes_survive_a_restart_and_concurrent_changes_lose_nothing() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let server = Arc::new(Server::start_in(dir.clone()));
    let keys = [
        "daily-limit",
        "purchase-limit",
        "auto-top-up-below",
        "auto-top-up-amount",
    ];
    let barrier = Arc::new(std::sync::Barrier::new(keys.len()));
    let threads: Vec<_> = keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| {
            let (server, barrier) = (server.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let body = json!({"attributes": {key: 100 * (i as i64 + 1)}}).to_string();
                call(
                    &server,
                    None,
                    "PATCH",
                    "/v1/programs/albertslund/holders/BK-2001",
                    &body,
                )
            })
        })
        .collect();
    for thread in threads {
        let (status, answer) = thread.join().unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    let expected = json!({"daily-limit": 100, "purchase-limit": 200, "auto-top-up-below": 300,
                          "auto-top-up-amount": 400, "blocked-categories": "sweets"});
    let (_, view) = server.get("/v1/programs/albertslund/cards/BK-2001");
    assert_eq!(view["attributes"], expected, "{view}");
    let server = Arc::try_unwrap(server).unwrap_or_else(|_| panic!("a thread holds the server"));
    assert!(server.terminate().success());
    let server = Server::start_in(dir);
    let (_, view): (u16, Value) = server.get("/v1/programs/albertslund/cards/BK-2001");
    assert_eq!(view["attributes"], expected, "rebuilt from the journal");
}

#[test]
fn a_till_reports_late_within_its_programs_bound_and_a_guardian_only_at_now() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let (parent, parent_entry) = make_token(&[
        "--name",
        "parent-of-bk-2002",
        "--role",
        "guardian",
        "--program",
        "albertslund",
        "--card",
        "BK-2002",
        "--action",
        "top-up",
    ]);
    let (till, till_entry) = make_token(&[
        "--name",
        "storagergard-till",
        "--role",
        "terminal",
        "--program",
        "albertslund",
    ]);
    let auth = dir.path().join("auth.toml");
    std::fs::write(&auth, format!("{parent_entry}\n{till_entry}")).unwrap();
    let ledger = dir.path().join("ledger.sqlite").display().to_string();
    // As in production: each program's `max-lateness` (72h) and `max-skew` (5m).
    let server = Server::start_bounded(
        Arc::new(dir),
        &ledger,
        "127.0.0.1:0",
        &["--allow-unsigned", "--auth", auth.to_str().unwrap()],
    );
    let top_up = |minutes_ago: i64| {
        let at = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes_ago);
        json!({"program": "albertslund", "card": "BK-2002", "action": "top-up",
               "amount": 1000, "at": at.to_string(), "dry-run": true})
        .to_string()
    };
    let decide = |token: &str, minutes_ago: i64| {
        call(
            &server,
            Some(token),
            "POST",
            "/v1/decisions",
            &top_up(minutes_ago),
        )
    };
    // Now: both.
    for token in [&till, &parent] {
        let (status, decision) = decide(token, 0);
        assert_eq!(status, 200, "{decision}");
        assert_eq!(decision["allow"], true, "{decision}");
    }
    // Two days late: a till that was offline, taken; a guardian's, refused.
    let (status, decision) = decide(&till, 48 * 60);
    assert_eq!(status, 200, "{decision}");
    let (status, refused) = decide(&parent, 48 * 60);
    assert_eq!(status, 400, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.starts_with("`at` `")
            && error.contains("is 48h")
            && error.contains(
                "before now: a guardian's request is taken at now, within 5m \
                 (program `albertslund`'s `max-skew`)"
            ),
        "{error}"
    );
    // An hour late is still not now, for a guardian.
    assert_eq!(decide(&parent, 60).0, 400);
    // A year late (the card's limits dated away): refused for the till too.
    let (status, refused) = decide(&till, 365 * 24 * 60);
    assert_eq!(status, 400, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains(
            "late: program `albertslund` takes requests at most 72h late (its `max-lateness`)"
        ),
        "{error}"
    );
    // An hour ahead of the clock: refused for both, naming the skew.
    for token in [&till, &parent] {
        let (status, refused) = decide(token, -60);
        assert_eq!(status, 400, "{refused}");
        let error = refused["error"].as_str().unwrap();
        assert!(
            error.contains("ahead of the host's clock: program `albertslund` takes requests at most 5m ahead (its `max-skew`)"),
            "{error}"
        );
    }
}

#[test]
fn a_server_for_recorded_traffic_turns_the_bound_off_and_says_so_in_its_log() {
    // The harness serves the tests' recorded traffic of 2024 with `--max-lateness none`.
    let server = Server::start();
    let (status, decision) = server.post("/v1/decisions", &purchase("albertslund", "purchase"));
    assert_eq!(status, 200, "{decision}");
    assert!(
        server
            .log()
            .contains("`--max-lateness none`: requests are decided at any `at`"),
        "{}",
        server.log()
    );
}
