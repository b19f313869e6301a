//! Who looked: every read of a card's personal data and every change to it is in the
//! card's access log (token name, route, time), apart from the journal; only an admin
//! reads it, and logs never carry a holder's birth date.

use std::sync::Arc;

use crate::fixtures::*;
use crate::support::files::{copy_dir, shipped_policies};
use crate::support::server::*;

#[test]
fn every_read_and_change_of_a_card_is_in_its_access_log_for_admins_only() {
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
    std::fs::write(dir.path().join("auth.toml"), format!("{e1}\n{e2}\n{e3}\n")).unwrap();
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
    // The server's log names tokens and routes, never who the child is.
    assert!(!server.log().contains("2013-04-12"), "{}", server.log());
}
