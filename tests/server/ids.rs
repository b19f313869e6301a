//! What enters by a route is checked at the door: ids in bodies and paths (empty, huge,
//! with control characters, whitespace around, or a `/` in a card number), a replaced
//! card registered again, and a body naming a key twice.

use serde_json::json;

use crate::support::server::*;

fn error_of(answer: &(u16, serde_json::Value)) -> &str {
    answer.1["error"].as_str().unwrap_or_default()
}

#[test]
fn ids_are_checked_at_the_door_of_every_route() {
    let server = Server::start();
    let replace = |new_card: serde_json::Value| {
        json!({"program": "antwerpen", "card": "A-3001", "action": "replace-card",
               "at": "2025-04-03T09:00:00+02:00", "new-card": new_card})
        .to_string()
    };
    let cases = [
        (json!(""), "`new-card` is empty"),
        (json!(" "), "`new-card` ` ` begins or ends with whitespace"),
        (json!("../BK-2001"), "`new-card` `../BK-2001` holds `/`"),
        (
            json!("9".repeat(60_000)),
            "has 60000 bytes: an id has at most 128",
        ),
    ];
    for (new_card, expected) in cases {
        let answer = server.post("/v1/decisions", &replace(new_card));
        assert_eq!(answer.0, 400, "{}", answer.1);
        assert!(error_of(&answer).contains(expected), "{}", answer.1);
        assert!(error_of(&answer).len() < 200, "{}", answer.1);
    }
    let card = server.get("/v1/programs/antwerpen/cards/A-3001");
    assert_eq!((card.0, &card.1["state"]), (200, &json!("active")));

    let holder = r#"{"birth-date":"2012-01-01","municipality":"bergen"}"#;
    let paths = [
        (
            "PUT",
            "/v1/programs/bergen/holders/%20AK-9",
            "`card` ` AK-9` begins or ends",
        ),
        (
            "PUT",
            "/v1/programs/bergen/holders/..%2FAK-1001",
            "`card` `../AK-1001` holds `/`",
        ),
        (
            "PUT",
            "/v1/programs/bergen/holders/Z%00",
            "`card` `Z\\0` holds the control",
        ),
        (
            "GET",
            "/v1/programs/bergen/cards/Z%00",
            "`card` `Z\\0` holds the control",
        ),
        (
            "GET",
            "/v1/programs/bergen%00/cards/AK-1001",
            "`program` `bergen\\0`",
        ),
        (
            "PATCH",
            "/v1/programs/albertslund/holders/BK-2002%0A",
            "`card` `BK-2002\\n`",
        ),
    ];
    let long = format!("/v1/programs/bergen/cards/{}", "A".repeat(200));
    let history = format!("{long}/history");
    let allowances = format!("{long}/allowances");
    let paths = paths
        .iter()
        .map(|(m, p, e)| (*m, p.to_string(), *e))
        .chain([
            ("GET", long.clone(), "`card` `AAAA"),
            ("GET", history, "has 200 bytes"),
            ("GET", allowances, "has 200 bytes"),
        ]);
    for (method, path, expected) in paths {
        let body = match method {
            "PATCH" => r#"{"attributes":{"daily-limit":1000}}"#,
            _ => holder,
        };
        let answer = call(&server, None, method, &path, body);
        assert_eq!(answer.0, 400, "{method} {path:.80} → {}", answer.1);
        // The field is named first, then what is wrong: `card` `AAAA…` has 200 bytes.
        assert!(
            error_of(&answer).contains(expected),
            "{path:.80} → {}",
            answer.1
        );
    }
    assert_eq!(server.get("/v1/programs/bergen/cards/AK-9").0, 404);
}

#[test]
fn a_replaced_card_registered_again_is_a_409_naming_its_new_card() {
    let server = Server::start();
    let moved = server.decide(&json!({
        "program": "antwerpen", "card": "A-3001", "action": "replace-card",
        "at": "2025-04-03T09:00:00+02:00", "new-card": "A-3001-NEW"}));
    assert_eq!(moved["allow"], true, "{moved}");
    let holder =
        r#"{"birth-date":"1988-02-17","municipality":"antwerpen","statuses":["antwerpenaar"]}"#;
    let answer = server.put("/v1/programs/antwerpen/holders/A-3001", holder);
    assert_eq!(answer.0, 409, "{}", answer.1);
    assert!(
        error_of(&answer).contains("was replaced by card `A-3001-NEW`"),
        "{}",
        answer.1
    );
    let old = server.get("/v1/programs/antwerpen/cards/A-3001");
    assert_eq!(old.1["state"], "blocked", "{}", old.1);
    assert_eq!(
        server
            .put("/v1/programs/antwerpen/holders/A-3001-NEW", holder)
            .0,
        200
    );
}

#[test]
fn a_key_named_twice_in_any_body_is_a_400_naming_it() {
    let server = Server::start();
    let before = server.get("/v1/programs/albertslund/cards/BK-2002").1;
    let path = "/v1/programs/albertslund/holders/BK-2002";
    let patches = [
        (
            r#"{"attributes":{"daily-limit":1000},"attributes":{"daily-limit":9000}}"#,
            "cannot parse holder change: duplicate field `attributes`",
        ),
        (
            r#"{"attributes":{"daily-limit":1000,"daily-limit":9000}}"#,
            "cannot parse holder change: duplicate field `daily-limit`",
        ),
    ];
    for (body, expected) in patches {
        let answer = call(&server, None, "PATCH", path, body);
        assert_eq!(answer.0, 400, "{body} → {}", answer.1);
        assert!(error_of(&answer).starts_with(expected), "{}", answer.1);
    }
    let answer = server.put(
        path,
        r#"{"birth-date":"2012-01-01","municipality":"albertslund","state":"active","state":"blocked"}"#,
    );
    assert_eq!(answer.0, 400, "{}", answer.1);
    assert!(
        error_of(&answer).starts_with("cannot parse holder: duplicate field `state`"),
        "{}",
        answer.1
    );
    // The same words a decision's repeated field gets.
    let answer = server.post(
        "/v1/decisions",
        r#"{"program":"albertslund","card":"BK-2002","card":"BK-2001","action":"purchase","at":"2024-05-07T16:00:00+02:00"}"#,
    );
    assert_eq!(answer.0, 400, "{}", answer.1);
    assert!(
        error_of(&answer).starts_with("cannot parse request: duplicate field `card`"),
        "{}",
        answer.1
    );
    assert_eq!(
        server.get("/v1/programs/albertslund/cards/BK-2002").1,
        before
    );
}
