//! Every route answers as the contract says: decisions, replays and reused ids, dry runs,
//! holders and cards, unknown programs and routes, bad input and unknown methods.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::fixtures::*;
use crate::support::files::{copy_dir, shipped_policies, shipped_programs};
use crate::support::server::*;

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
    assert_eq!(ids, shipped_programs());
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
fn an_unknown_method_is_a_405_naming_the_methods_the_route_takes() {
    let server = Server::start();
    for (method, path, takes, allow) in [
        ("DELETE", "/v1/decisions", "`POST`", "POST"),
        ("GET", "/v1/decisions", "`POST`", "POST"),
        (
            "POST",
            "/v1/programs/bergen/holders/AK-1001",
            "`PUT`, `PATCH`, `DELETE`",
            "PUT, PATCH, DELETE",
        ),
        ("PUT", "/healthz", "`GET`, `HEAD`", "GET, HEAD"),
    ] {
        let answer = raw(
            &server,
            &format!("{method} {path} HTTP/1.1\r\nHost: test"),
            b"",
        );
        assert_eq!(answer.status, 405, "{method} {path}: {}", answer.body);
        let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(
            body["error"],
            format!("`{method} {path}`: this route takes {takes} only"),
        );
        assert_eq!(answer.header("allow"), [allow], "{method} {path}");
    }
}

#[test]
fn requests_the_http_layer_cannot_read_are_answered_with_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let server = Server::start_with(
        Arc::new(dir),
        &["--allow-unsigned", "--max-header-bytes", "1024"],
    );
    let malformed = "cannot read request: its head is malformed: HTTP/1.1 does not allow its \
                     method, path, version or a header";
    let padding = "x".repeat(1_500);
    for (what, head, status, message) in [
        (
            "a NUL in a header",
            "GET /healthz HTTP/1.1\r\nHost: test\r\nX-Note: a\0b".to_string(),
            400,
            malformed.to_string(),
        ),
        (
            "a header folded onto the next line",
            "GET /healthz HTTP/1.1\r\nHost: test\r\nX-Note: a\r\n b".to_string(),
            400,
            malformed.to_string(),
        ),
        (
            "two different Content-Lengths",
            "POST /v1/decisions HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\nContent-Length: 2"
                .to_string(),
            400,
            malformed.to_string(),
        ),
        (
            "a head past --max-header-bytes",
            format!("GET /healthz HTTP/1.1\r\nHost: test\r\nX-Padding: {padding}"),
            431,
            "cannot read request: its head (request line and headers) is larger than 1024 bytes \
             (`--max-header-bytes`)"
                .to_string(),
        ),
    ] {
        let answer = raw(&server, &head, b"");
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        assert_eq!(
            answer.header("content-type"),
            ["application/json"],
            "{what}"
        );
        assert_eq!(answer.header("connection"), ["close"], "{what}");
        assert_eq!(
            answer.header("content-length"),
            [answer.body.len().to_string().as_str()],
            "{what}"
        );
        let body: serde_json::Value = serde_json::from_str(&answer.body)
            .unwrap_or_else(|e| panic!("{what}: {e}: {:?}", answer.body));
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with(&message), "{what}: {error}");
    }
    // The server's own answers pass unchanged, a 400 of the routes included.
    let answer = raw(
        &server,
        "POST /v1/decisions HTTP/1.1\r\nHost: test\r\nContent-Length: 2",
        b"{}",
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        !answer.body.contains("cannot read request: its head"),
        "{}",
        answer.body
    );
    assert_eq!(
        raw(&server, "GET /healthz HTTP/1.1\r\nHost: test", b"").status,
        200
    );
}

#[test]
fn allowances_and_history_answer_over_http_and_refuse_bad_parameters() {
    let server = Server::start();
    for n in 1..=3 {
        let mut visit = kino("AK-1001", Some(&format!("portal-{n}")));
        visit["at"] = format!("2024-03-0{n}T18:00:00+01:00").into();
        assert_eq!(server.decide(&visit)["allow"], true);
    }
    let cards = "/v1/programs/bergen/cards/AK-1001";
    let (status, all) = server.get(&format!(
        "{cards}/allowances?at=2024-04-01T12:00:00%2B02:00&action=redeem&offer=bergen-kino&language=en"
    ));
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["at"], "2024-04-01T10:00:00Z");
    let kino_allowance = &all["allowances"][0];
    assert_eq!(kino_allowance["offer"], "bergen-kino");
    assert_eq!(kino_allowance["allow"], true);
    assert_eq!(kino_allowance["message"], "The ticket is activated. Enjoy!");
    let quota = kino_allowance["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["reason"] == "quota-exhausted")
        .unwrap();
    assert_eq!(
        (&quota["used"], &quota["limit"], &quota["remaining"]),
        (&json!(3), &json!(4), &json!(1))
    );
    assert_eq!(quota["until"], "2024-12-31T23:00:00Z");

    // The statement, two entries a page: the registration and three visits.
    let (status, first) = server.get(&format!("{cards}/history?limit=2"));
    assert_eq!(status, 200, "{first}");
    let entries = first["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["kind"], "registered");
    assert_eq!(entries[1]["kind"], "decided");
    assert_eq!(entries[1]["id"], "portal-1");
    assert_eq!(entries[1]["action"], "redeem");
    assert_eq!(entries[1]["allow"], true);
    let next = first["next"].as_str().unwrap();
    let (status, second) = server.get(&format!("{cards}/history?limit=2&after={next}"));
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["entries"][1]["id"], "portal-3");
    assert_eq!(second["next"], Value::Null);
    let (_, march_2) = server.get(&format!(
        "{cards}/history?since=2024-03-02T00:00:00%2B01:00&until=2024-03-03T00:00:00%2B01:00"
    ));
    assert_eq!(march_2["entries"].as_array().unwrap().len(), 1, "{march_2}");
    assert_eq!(march_2["entries"][0]["id"], "portal-2");

    // Bad parameters are refused, naming the parameter; unknown cards are 404.
    for (query, named) in [
        ("allowances?at=soon", "`at`"),
        ("allowances?action=fly", "`action`"),
        ("allowances?offer=moon", "`offer`"),
        ("allowances?language=fr", "`language`"),
        ("allowances?colour=red", "`colour`"),
        ("history?limit=0", "`limit`"),
        ("history?limit=-3", "`limit`"),
        ("history?limit=1001", "`limit`"),
        ("history?after=not-ours", "`after`"),
        ("history?limit=1&limit=2", "`limit`"),
        (
            "history?since=2024-03-02T00:00:00Z&until=2024-03-01T00:00:00Z",
            "`since`",
        ),
        ("history?until=yesterday", "`until`"),
    ] {
        let (status, error) = server.get(&format!("{cards}/{query}"));
        assert_eq!(status, 400, "{query}: {error}");
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(named), "{query}: {message}");
    }
    for path in [
        "/v1/programs/bergen/cards/NOBODY/allowances",
        "/v1/programs/bergen/cards/NOBODY/history",
        "/v1/programs/gotham/cards/AK-1001/history",
    ] {
        assert_eq!(server.get(path).0, 404, "{path}");
    }

    let metrics = metrics_of(&server);
    let bergen = [("program", "bergen")];
    assert_eq!(
        metrics.value("cardrules_allowance_queries_total", &bergen),
        1.0
    );
    assert_eq!(metrics.value("cardrules_history_reads_total", &bergen), 3.0);
}
