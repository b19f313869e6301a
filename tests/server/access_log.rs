//! Who looked: every read of a card's personal data and every change to it is in the
//! card's access log (token name, route, time), apart from the journal; only an admin
//! reads it, and logs never carry a holder's birth date.

use std::sync::Arc;

use crate::fixtures::*;
use crate::support::files::{copy_dir, shipped_policies};
use crate::support::server::*;

#[test]
fn every_read_and_change_of_a_card_is_in_its_access_log_for_admins_only_and_its_holder_can_export_it()
 {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let (ops, e1) = make_token(&["--name", "ops", "--role", "admin", "--program", "*"]);
    let (till, e2) = make_token(&[
        "--name",
        "till-7",
        "--role",
        "terminal",
        "--program",
        "bergen",
    ]);
    let (desk, e3) = make_token(&[
        "--name",
        "nav-desk",
        "--role",
        "registrar",
        "--program",
        "bergen",
    ]);
    let guardian = |card: &str, name: &str| {
        make_token(&[
            "--name",
            name,
            "--role",
            "guardian",
            "--program",
            "bergen",
            "--action",
            "redeem",
            "--card",
            card,
        ])
    };
    let (parent, e4) = guardian("AK-1001", "parent-of-ak-1001");
    let (other_parent, e5) = guardian("AK-1002", "parent-of-ak-1002");
    std::fs::write(
        dir.path().join("auth.toml"),
        format!("{e1}\n{e2}\n{e3}\n{e4}\n{e5}\n"),
    )
    .unwrap();
    let auth = dir.path().join("auth.toml");
    let server = Server::start_with(
        Arc::new(dir),
        &["--allow-unsigned", "--auth", auth.to_str().unwrap()],
    );
    let card = "/v1/programs/bergen/cards/AK-1001";
    for (token, path) in [
        (&till, card.to_string()),
        (&till, format!("{card}/allowances")),
        (&desk, format!("{card}/history")),
    ] {
        let (status, body) = call(&server, Some(token), "GET", &path, "");
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = call(
        &server,
        Some(&desk),
        "PUT",
        "/v1/programs/bergen/holders/AK-1001",
        r#"{"birth-date":"2013-04-12","municipality":"bergen","statuses":["low-income"]}"#,
    );
    assert_eq!(status, 200, "{body}");
    // Another card's reads are not this card's.
    call(
        &server,
        Some(&till),
        "GET",
        "/v1/programs/bergen/cards/AK-1002",
        "",
    );

    let (status, log) = call(
        &server,
        Some(&ops),
        "GET",
        &format!("{card}/access-log"),
        "",
    );
    assert_eq!(status, 200, "{log}");
    let seen: Vec<(String, String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["at"].as_str().unwrap().ends_with('Z'), "{e}");
            (
                e["token"].as_str().unwrap().to_string(),
                e["method"].as_str().unwrap().to_string(),
                e["route"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("till-7", "GET", "/v1/programs/{program}/cards/{card}"),
        (
            "till-7",
            "GET",
            "/v1/programs/{program}/cards/{card}/allowances",
        ),
        (
            "nav-desk",
            "GET",
            "/v1/programs/{program}/cards/{card}/history",
        ),
        ("nav-desk", "PUT", "/v1/programs/{program}/holders/{card}"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(t, m, r)| (t.to_string(), m.to_string(), r.to_string()))
        .collect();
    assert_eq!(seen, expected, "{log}");
    // Pages follow `next`.
    let (_, first) = call(
        &server,
        Some(&ops),
        "GET",
        &format!("{card}/access-log?limit=3"),
        "",
    );
    let next = first["next"].as_str().expect("a next page").to_string();
    let (_, rest) = call(
        &server,
        Some(&ops),
        "GET",
        &format!("{card}/access-log?after={next}"),
        "",
    );
    assert_eq!(rest["entries"].as_array().unwrap().len(), 1, "{rest}");
    assert!(rest["next"].is_null(), "{rest}");
    // Only an admin reads it.
    for token in [&till, &desk] {
        let (status, _) = call(
            &server,
            Some(token),
            "GET",
            &format!("{card}/access-log"),
            "",
        );
        assert_eq!(status, 403);
    }
    let (status, _) = call(
        &server,
        Some(&ops),
        "GET",
        &format!("{card}/access-log?limit=0"),
        "",
    );
    assert_eq!(status, 400);
    // Export: everything the ledger holds about the holder, for its guardian, the desk and
    // admins; not for a till or another card's guardian; and each export is logged.
    // A year of history: a visit to a museum every week of 2024, and the cinema once.
    let redeem = r#"{"program":"bergen","card":"AK-1001","action":"redeem","offer":"bergen-kino","at":"2024-03-02T12:00:00+01:00","id":"export-1"}"#;
    let (status, _) = call(&server, Some(&till), "POST", "/v1/decisions", redeem);
    assert_eq!(status, 200);
    for week in 0..52 {
        let at = 1_704_283_200 + week * 7 * 86_400; // 2024-01-03T12:00:00Z, weekly
        let at = jiff::Timestamp::from_second(at).unwrap();
        let body = format!(
            r#"{{"program":"bergen","card":"AK-1001","action":"redeem","offer":"kode-museum","at":"{at}","id":"week-{week}"}}"#
        );
        let (status, decision) = call(&server, Some(&till), "POST", "/v1/decisions", &body);
        assert_eq!(status, 200, "{decision}");
    }
    for token in [&parent, &desk, &ops] {
        let (status, export) = call(&server, Some(token), "GET", &format!("{card}/export"), "");
        assert_eq!(status, 200, "{export}");
        assert_eq!(export["holder"]["birth-date"], "2013-04-12", "{export}");
        let registrations = export["registrations"].as_array().unwrap();
        assert_eq!(
            registrations.len(),
            2,
            "the demo registration and the desk's: {export}"
        );
        assert_eq!(
            registrations[1]["holder"]["statuses"][0], "low-income",
            "{export}"
        );
        let statement = export["statement"].as_array().unwrap();
        assert!(statement.iter().any(|e| e["id"] == "export-1"), "{export}");
        assert_eq!(
            statement.iter().filter(|e| e["kind"] == "decided").count(),
            53,
            "the whole year: {export}"
        );
    }
    for token in [&till, &other_parent] {
        let (status, body) = call(&server, Some(token), "GET", &format!("{card}/export"), "");
        assert_eq!(status, 403, "{body}");
    }
    let (_, log) = call(
        &server,
        Some(&ops),
        "GET",
        &format!("{card}/access-log"),
        "",
    );
    let exporters: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["route"] == "/v1/programs/{program}/cards/{card}/export")
        .map(|e| e["token"].as_str().unwrap())
        .collect();
    assert_eq!(exporters, ["parent-of-ak-1001", "nav-desk", "ops"], "{log}");
    // The server's log names tokens and routes, never who the child is.
    assert!(!server.log().contains("2013-04-12"), "{}", server.log());
}
