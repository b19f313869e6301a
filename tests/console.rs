//! The web console (`/console`): its files served without a token under a strict
//! Content-Security-Policy, the public routes it is built on (`GET /v1/caller`,
//! `GET /v1/programs/{program}`, `…/coverage`, `…/history/{seq}/why`), and, in a real
//! headless browser against a real `serve`, each view doing its job: the till, the desk,
//! the parents' portal and the programs. Screenshots of each page are saved (the path is
//! printed); docs/console/ holds copies for the README.

mod support;

use std::sync::Arc;

use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use support::browser::{self, Driver, screenshot, wait_for, wait_text};
use support::files::{copy_dir, shipped_policies};
use support::server::{Server, call, cardrules, raw};

/// An offer name that would run script if the console ever wrote data as HTML.
const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>";

/// A token and its auth file entry, from `cardrules token`.
fn token(args: &[&str]) -> (String, String) {
    let out = cardrules(&[&["token"], args].concat());
    let token = out
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("token: "))
        .unwrap()
        .to_string();
    let entry = out[out.find("[[tokens]]").unwrap()..].to_string();
    (token, entry)
}

struct Tokens {
    till: String,
    desk: String,
    ops: String,
    parent: String,
}

/// A server over the shipped programs, bergen's `kode-museum` renamed to
/// [`HOSTILE_NAME`], with a till (bergen and albertslund), a desk (bergen), an admin and
/// a parent of albertslund's `BK-2002`.
fn console_server() -> (Server, Tokens) {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&shipped_policies(), &policies);
    let catalogue = policies.join("bergen/catalogue.toml");
    let text = std::fs::read_to_string(&catalogue).unwrap();
    let renamed = text.replacen(
        "name = \"KODE kunstmuseer\"",
        &format!("name = \"{HOSTILE_NAME}\""),
        1,
    );
    assert_ne!(text, renamed, "bergen's catalogue names `KODE kunstmuseer`");
    std::fs::write(&catalogue, renamed).unwrap();
    let (till, till_entry) = token(&[
        "--name",
        "till-1",
        "--role",
        "terminal",
        "--program",
        "bergen",
        "--program",
        "albertslund",
    ]);
    let (desk, desk_entry) = token(&[
        "--name",
        "nav-desk",
        "--role",
        "registrar",
        "--program",
        "bergen",
    ]);
    let (ops, ops_entry) = token(&["--name", "ops", "--role", "admin", "--program", "*"]);
    let (parent, parent_entry) = token(&[
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
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!("{till_entry}\n{desk_entry}\n{ops_entry}\n{parent_entry}"),
    )
    .unwrap();
    let server = Server::start_with(
        Arc::new(dir),
        &["--allow-unsigned", "--auth", auth.to_str().unwrap()],
    );
    (
        server,
        Tokens {
            till,
            desk,
            ops,
            parent,
        },
    )
}

#[test]
fn the_console_is_served_without_a_token_under_a_strict_content_security_policy() {
    let (server, tokens) = console_server();
    for path in [
        "/console",
        "/console/",
        "/console/app.js",
        "/console/console.css",
    ] {
        let answer = raw(&server, &format!("GET {path} HTTP/1.1\r\nHost: x"), b"");
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let csp = answer.header("content-security-policy");
        assert_eq!(
            csp,
            [cardrules_server::console::CONTENT_SECURITY_POLICY],
            "{path}"
        );
        assert!(csp[0].contains("script-src 'self';"), "no inline script");
        assert_eq!(answer.header("x-content-type-options"), ["nosniff"]);
        assert_eq!(answer.header("cache-control"), ["no-cache"]);
        let etag = answer.header("etag")[0].to_string();
        let again = raw(
            &server,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}"),
            b"",
        );
        assert_eq!(again.status, 304, "{path}: unchanged");
        let kind = answer.header("content-type")[0].to_string();
        let expected = if path.ends_with(".js") {
            "text/javascript"
        } else if path.ends_with(".css") {
            "text/css"
        } else {
            "text/html"
        };
        assert!(kind.starts_with(expected), "{path}: {kind}");
    }
    // The page holds no script of its own: every script is a module file.
    let page = raw(&server, "GET /console HTTP/1.1\r\nHost: x", b"").body;
    assert!(page.contains(r#"<script type="module" src="/console/app.js"></script>"#));
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    let handlers = page
        .split(" on")
        .skip(1)
        .filter(|rest| rest.chars().take_while(char::is_ascii_alphabetic).count() > 0)
        .filter(|rest| {
            rest.trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .starts_with('=')
        })
        .count();
    assert_eq!(handlers, 0, "no inline handlers: {page}");
    // Unknown files are JSON 404s; the API stays behind its tokens.
    let (status, error) = call(&server, None, "GET", "/console/secrets.txt", "");
    assert_eq!(status, 404);
    assert_eq!(error["error"], "the console has no file `secrets.txt`");
    assert_eq!(call(&server, None, "GET", "/v1/caller", "").0, 401);
    let (status, _) = call(&server, None, "GET", "/console/../v1/programs", "");
    assert_ne!(
        status, 200,
        "a path through `/console/` reaches no route unauthenticated"
    );
    // Tokens are never logged (the requests above and below carried them in headers).
    call(&server, Some(&tokens.ops), "GET", "/v1/caller", "");
    let log = server.log();
    for secret in [&tokens.till, &tokens.desk, &tokens.ops, &tokens.parent] {
        assert!(!log.contains(secret.as_str()), "a token in the log");
    }
}

#[test]
fn the_routes_the_console_is_built_on_answer_each_role_what_it_may_know() {
    let (server, tokens) = console_server();
    // Who am I: name, role, programs, actions, cards, and the programs served for it.
    let (status, me) = call(&server, Some(&tokens.parent), "GET", "/v1/caller", "");
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({"auth": true, "name": "parent-of-bk-2002", "role": "guardian",
               "programs": ["albertslund"], "actions": ["block-card", "enable-auto-top-up", "top-up"],
               "cards": ["BK-2002"], "served": ["albertslund"]})
    );
    let (_, me) = call(&server, Some(&tokens.ops), "GET", "/v1/caller", "");
    assert_eq!(me["programs"], json!(["*"]));
    assert_eq!(me["served"], json!(["albertslund", "antwerpen", "bergen"]));
    // A program: catalogue (sorted by id, names as written), schema, actions, languages.
    let (status, bergen) = call(
        &server,
        Some(&tokens.till),
        "GET",
        "/v1/programs/bergen",
        "",
    );
    assert_eq!(status, 200, "{bergen}");
    assert_eq!(bergen["languages"], json!(["nb", "en"]));
    assert_eq!(bergen["time-zone"], "Europe/Oslo");
    assert_eq!(bergen["allowances"]["per-offer"], json!(["redeem"]));
    assert!(
        bergen["actions"]
            .as_array()
            .unwrap()
            .contains(&json!("redeem"))
    );
    let offers = bergen["offers"].as_array().unwrap();
    let ids: Vec<&str> = offers.iter().map(|o| o["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let kode = offers.iter().find(|o| o["id"] == "kode-museum").unwrap();
    assert_eq!(kode["name"], HOSTILE_NAME);
    let kino = offers.iter().find(|o| o["id"] == "bergen-kino").unwrap();
    assert_eq!(kino["attributes"]["yearly-limit"], 4);
    assert_eq!(
        call(
            &server,
            Some(&tokens.till),
            "GET",
            "/v1/programs/antwerpen",
            ""
        )
        .0,
        403,
        "not its program"
    );
    assert_eq!(
        call(&server, Some(&tokens.ops), "GET", "/v1/programs/gotham", "").0,
        404
    );
    let (_, albertslund) = call(
        &server,
        Some(&tokens.parent),
        "GET",
        "/v1/programs/albertslund",
        "",
    );
    let daily = &albertslund["schema"]["holder"]["daily-limit"];
    assert_eq!(daily["type"], "integer");
    assert_eq!(daily["min"], 0);
    assert_eq!(daily["guardian"], true);
    // Coverage of a program's own suites: admin only.
    let (status, coverage) = call(
        &server,
        Some(&tokens.ops),
        "GET",
        "/v1/programs/bergen/coverage",
        "",
    );
    assert_eq!(status, 200, "{coverage}");
    assert!(coverage["steps"].as_u64().unwrap() > 0);
    assert_eq!(
        coverage["passed"], coverage["steps"],
        "the shipped suites pass"
    );
    assert!(
        coverage["coverage"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["rule"] == "yearly-limit"
                && c["passed"].as_u64() > Some(0)
                && c["failed"].as_u64() > Some(0))
    );
    assert_eq!(
        call(
            &server,
            Some(&tokens.desk),
            "GET",
            "/v1/programs/bergen/coverage",
            ""
        )
        .0,
        403
    );
    // Why: the fifth cinema visit of a year, explained on the state just before it.
    let at = "2024-03-01T18:00:00+01:00";
    let mut last = Value::Null;
    for n in 0..5 {
        let request = json!({"program": "bergen", "card": "AK-1001", "action": "redeem",
            "offer": "bergen-kino", "at": at, "id": format!("why-{n}")});
        let (status, decision) = call(
            &server,
            Some(&tokens.till),
            "POST",
            "/v1/decisions",
            &request.to_string(),
        );
        assert_eq!(status, 200, "{decision}");
        last = decision;
    }
    assert_eq!(last["reason"], "quota-exhausted");
    let (_, history) = call(
        &server,
        Some(&tokens.desk),
        "GET",
        "/v1/programs/bergen/cards/AK-1001/history",
        "",
    );
    let entries = history["entries"].as_array().unwrap();
    let refused = entries.last().unwrap();
    assert_eq!(refused["reason"], "quota-exhausted");
    let seq = refused["seq"].as_u64().unwrap();
    let why = format!("/v1/programs/bergen/cards/AK-1001/history/{seq}/why?language=en");
    let (status, explained) = call(&server, Some(&tokens.desk), "GET", &why, "");
    assert_eq!(status, 200, "{explained}");
    assert_eq!(explained["recorded"]["reason"], "quota-exhausted");
    assert_eq!(explained["explained"]["reason"], "quota-exhausted");
    assert_eq!(
        explained["explained"]["message"],
        "You have used all your visits to this offer this year."
    );
    assert_eq!(explained["same-version"], true);
    let failed = explained["explained"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["passed"] == false)
        .unwrap();
    assert_eq!(failed["rule"], "yearly-limit");
    assert_eq!(failed["used"], 4);
    assert_eq!(failed["limit"], 4);
    assert!(
        !explained["explained"]["reads"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The first visit was allowed: explained on the state before it, nothing was used.
    let first = entries.iter().find(|e| e["kind"] == "decided").unwrap();
    let path = format!(
        "/v1/programs/bergen/cards/AK-1001/history/{}/why",
        first["seq"]
    );
    let (_, explained) = call(&server, Some(&tokens.desk), "GET", &path, "");
    assert_eq!(explained["explained"]["allow"], true, "{explained}");
    let count = explained["explained"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rule"] == "yearly-limit")
        .unwrap();
    assert_eq!(count["used"], 0, "{explained}");
    // Not an entry of this card's statement: 404; a registration is no decision either.
    let other = format!("/v1/programs/bergen/cards/AK-1002/history/{seq}/why");
    let (status, error) = call(&server, Some(&tokens.desk), "GET", &other, "");
    assert_eq!(status, 404);
    assert_eq!(
        error["error"],
        format!("the statement of card `AK-1002` has no decision at `seq` {seq}")
    );
    let registered = entries.iter().find(|e| e["kind"] == "registered").unwrap();
    let path = format!(
        "/v1/programs/bergen/cards/AK-1001/history/{}/why",
        registered["seq"]
    );
    assert_eq!(call(&server, Some(&tokens.desk), "GET", &path, "").0, 404);
    // A guardian explains its own cards only.
    let (status, _) = call(
        &server,
        Some(&tokens.parent),
        "GET",
        "/v1/programs/albertslund/cards/BK-2001/history/1/why",
        "",
    );
    assert_eq!(status, 403);
}

/// Signs in with `token` on a fresh page and waits for the view `tab` to be offered.
async fn sign_in(client: &Client, server: &Server, token: &str, tab: &str) {
    client.goto(&server.url("/console")).await.unwrap();
    client
        .execute("sessionStorage.clear();", vec![])
        .await
        .unwrap();
    client.goto(&server.url("/console")).await.unwrap();
    let input = wait_for(client, "#token").await;
    input.send_keys(token).await.unwrap();
    client
        .find(Locator::Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(client, &format!("#tab-{tab}")).await;
}

/// Chooses `value` in the select `css` (and lets the console redraw).
async fn choose(client: &Client, css: &str, value: &str) {
    let select = wait_for(client, css).await;
    select.select_by_value(value).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

/// The till asks for `card` at `offer` (amount optional), submitting with Enter as a
/// barcode scanner does; returns the answer's text.
async fn till_ask(
    client: &Client,
    card: &str,
    offer: &str,
    amount: Option<u32>,
    wanted: &str,
) -> String {
    choose(client, "#till-offer", offer).await;
    if let Some(amount) = amount {
        let field = wait_for(client, "#till-amount").await;
        field.clear().await.unwrap();
        field.send_keys(&amount.to_string()).await.unwrap();
    }
    // A previous answer is cleared by the next question, so waiting for the new one
    // cannot find the old.
    client
        .execute(
            "document.getElementById('till-answer').replaceChildren()",
            vec![],
        )
        .await
        .unwrap();
    let field = wait_for(client, "#till-card").await;
    field.clear().await.unwrap();
    field.send_keys(&format!("{card}\u{E007}")).await.unwrap();
    wait_text(client, "#answer", wanted).await
}

/// Whether the page has an alert open (script ran that should not have).
async fn alert_open(client: &Client) -> bool {
    client.get_alert_text().await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    if !browser::available() {
        return;
    }
    let (server, tokens) = console_server();
    let driver = Driver::start();
    let client = driver.browser().await;

    // Signing in.
    client.goto(&server.url("/console")).await.unwrap();
    wait_for(&client, "#token").await;
    screenshot(&client, "sign-in").await;

    // The till: an offer whose name is markup shows as text and runs nothing.
    sign_in(&client, &server, &tokens.till, "till").await;
    choose(&client, "#program", "bergen").await;
    // In the program's first language until another of its languages is chosen.
    wait_text(&client, "#tab-till", "Kasse").await;
    wait_text(&client, "#till-form", "Kortnummer").await;
    choose(&client, "#language", "en").await;
    wait_text(&client, "#tab-till", "Till").await;
    let option = wait_for(&client, "#till-offer option[value='kode-museum']").await;
    assert!(option.text().await.unwrap().starts_with(HOSTILE_NAME));
    let answer = till_ask(&client, "AK-1001", "kode-museum", None, "ALLOWED").await;
    assert!(answer.contains(HOSTILE_NAME), "{answer}");
    let images = client
        .execute("return document.querySelectorAll('img').length", vec![])
        .await
        .unwrap();
    assert_eq!(images, json!(0), "markup in data became an element");
    assert!(!alert_open(&client).await, "the offer's name ran as script");

    // Four cinema visits a year, then the fifth is refused with what is left.
    for visit in 1..=4 {
        let answer = till_ask(&client, "AK-1001", "bergen-kino", None, "ALLOWED").await;
        let left = 4 - visit;
        assert!(answer.contains(&format!("{left} of 4 left")), "{answer}");
        assert!(answer.contains("renews 1 January"), "{answer}");
    }
    let answer = till_ask(&client, "AK-1001", "bergen-kino", None, "DENIED").await;
    assert!(
        answer.contains("You have used all your visits to this offer this year."),
        "{answer}"
    );
    assert!(answer.contains("0 of 4 left"), "{answer}");
    // The card field is ready for the next scan.
    let focused = client
        .execute("return document.activeElement.id", vec![])
        .await
        .unwrap();
    assert_eq!(focused, json!("till-card"));
    screenshot(&client, "till").await;

    // The desk: a child registered through the schema's form; a bad birth date is shown
    // beside its field with the host's message.
    sign_in(&client, &server, &tokens.desk, "desk").await;
    choose(&client, "#language", "en").await;
    client
        .find(Locator::Css("#tab-desk"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&client, "#holder-form").await;
    for (css, text) in [
        ("#holder-card", "AK-7001"),
        ("#holder-birth-date", "2014-02-30"),
        ("#holder-municipality", "bergen"),
        ("#holder-statuses", "low-income"),
    ] {
        wait_for(&client, css).await.send_keys(text).await.unwrap();
    }
    client
        .find(Locator::Css("#holder-save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = wait_text(&client, "#error-birth-date", "birth-date").await;
    assert!(error.contains("2014-02-30"), "{error}");
    let invalid = wait_for(&client, "#holder-birth-date").await;
    assert_eq!(
        invalid.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    screenshot(&client, "desk-refused").await;
    invalid.clear().await.unwrap();
    invalid.send_keys("2014-02-28").await.unwrap();
    client
        .find(Locator::Css("#holder-save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "#holder-saved", "Saved").await;
    let view = wait_text(&client, "#desk-card-view", "AK-7001").await;
    assert!(
        view.contains("2014-02-28") && view.contains("low-income"),
        "{view}"
    );
    assert_eq!(
        call(
            &server,
            Some(&tokens.desk),
            "GET",
            "/v1/programs/bergen/cards/AK-7001",
            ""
        )
        .1["birth-date"],
        "2014-02-28"
    );

    // Blocked at the desk (Bergen has no block action: the holder is registered again,
    // blocked), and the till refuses the card.
    client
        .find(Locator::Css("#desk-block"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "#desk-card-view", "blocked").await;
    wait_for(&client, "#desk-unblock").await;
    let (_, card) = call(
        &server,
        Some(&tokens.desk),
        "GET",
        "/v1/programs/bergen/cards/AK-7001",
        "",
    );
    assert_eq!(card["state"], "blocked", "{card}");
    assert_eq!(card["statuses"], json!(["low-income"]), "kept: {card}");

    // Why the fifth visit was refused: its checks, with used and limit.
    let search = wait_for(&client, "#desk-card").await;
    search.clear().await.unwrap();
    search.send_keys("AK-1001\u{E007}").await.unwrap();
    wait_text(&client, "#statement", "quota-exhausted").await;
    let buttons = client
        .find_all(Locator::Css("#statement button.why"))
        .await
        .unwrap();
    buttons.last().unwrap().click().await.unwrap();
    let why = wait_text(&client, "#why-panel", "quota-exhausted").await;
    assert!(why.contains("yearly-limit"), "{why}");
    let failed = client
        .execute(
            "return [...document.querySelectorAll('#why-checks tbody tr')]
               .map(r => [...r.cells].map(c => c.textContent))
               .find(cells => cells[0] === 'yearly-limit')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(failed[2], "quota-exhausted", "{failed}");
    assert_eq!(failed[3], "4", "{failed}");
    assert_eq!(failed[4], "4", "{failed}");
    screenshot(&client, "desk").await;

    // The parents: their card only; the daily limit lowered, and the till's next
    // purchase is refused for it.
    sign_in(&client, &server, &tokens.parent, "parents").await;
    choose(&client, "#language", "en").await;
    wait_for(&client, "#card-BK-2002").await;
    let page = client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for other in ["BK-2001", "BK-2003", "BK-2101"] {
        assert!(
            !page.contains(other),
            "a guardian sees card {other}: {page}"
        );
    }
    let seen = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/v1/programs/albertslund/cards/BK-2001', {headers: {Authorization:
               'Bearer ' + sessionStorage.getItem('cardrules.token')}})
               .then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(seen, json!(403), "another card, with the guardian's token");
    let limit = wait_for(&client, "#card-BK-2002 #attr-daily-limit").await;
    limit.clear().await.unwrap();
    limit.send_keys("1000").await.unwrap();
    client
        .find(Locator::Css("#settings-save-BK-2002"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "#card-BK-2002 .parents-result", "Saved").await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    wait_for(&client, "#card-BK-2002").await;
    screenshot(&client, "parents").await;
    let (_, card) = call(
        &server,
        Some(&tokens.ops),
        "GET",
        "/v1/programs/albertslund/cards/BK-2002",
        "",
    );
    assert_eq!(card["attributes"]["daily-limit"], 1000, "{card}");

    sign_in(&client, &server, &tokens.till, "till").await;
    choose(&client, "#program", "albertslund").await;
    choose(&client, "#language", "en").await;
    let answer = till_ask(&client, "BK-2002", "sg-perler", Some(1500), "DENIED").await;
    assert!(answer.contains("daily-limit"), "{answer}");
    assert!(
        answer.contains("The purchase exceeds the daily limit your parents set."),
        "{answer}"
    );
    screenshot(&client, "till-daily-limit").await;

    // The programs: versions, digests, worlds, coverage; no venues section without the
    // route.
    sign_in(&client, &server, &tokens.ops, "programs").await;
    // Albertslund's Danish, Antwerp's Dutch.
    choose(&client, "#program", "albertslund").await;
    wait_text(&client, "#tab-programs", "Ordninger").await;
    choose(&client, "#program", "antwerpen").await;
    wait_text(&client, "#tab-programs", "Programma").await;
    wait_text(&client, "#tab-desk", "Balie").await;
    client
        .find(Locator::Css("#tab-programs"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let table = wait_text(&client, "#programs-table", "bergen").await;
    assert!(table.contains("0.2.0"), "the world: {table}");
    wait_text(&client, "#coverage [data-program='bergen']", "%").await;
    wait_text(&client, "#coverage [data-program='albertslund']", "%").await;
    // The city's venues (none call this server): the panel and its empty table.
    wait_text(&client, "#venues-panel", "Locaties").await;
    screenshot(&client, "programs").await;
    assert!(!alert_open(&client).await);
    client.close().await.unwrap();
}
