//! Who may call what: `--auth` tokens and their roles, loopback-only without it, and the
//! API over TLS.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::fixtures::*;
use crate::support::files::{copy_dir, shipped_policies};
use crate::support::server::*;

#[test]
fn with_auth_each_role_gets_its_routes_programs_and_actions_and_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let (till_token, till_entry) = make_token(&[
        "--name",
        "bakkens-hjerte-till-1",
        "--role",
        "terminal",
        "--program",
        "albertslund",
        "--action",
        "purchase",
    ]);
    let (desk_token, desk_entry) = make_token(&[
        "--name",
        "borgerservice-desk",
        "--role",
        "registrar",
        "--program",
        "albertslund",
        "--program",
        "bergen",
    ]);
    let (ops_token, ops_entry) =
        make_token(&["--name", "ops", "--role", "admin", "--program", "*"]);
    let (till, desk, ops) = (till_token.as_str(), desk_token.as_str(), ops_token.as_str());
    let auth = dir.path().join("auth.toml");
    std::fs::write(&auth, format!("{till_entry}\n{desk_entry}\n{ops_entry}")).unwrap();
    let server = Server::start_with(
        Arc::new(dir),
        &["--allow-unsigned", "--auth", auth.to_str().unwrap()],
    );
    let log = server.log();
    assert!(
        log.contains("callers need a bearer token: 3 known"),
        "{log}"
    );

    // Liveness, readiness and the API's description need nothing, whoever calls.
    for path in ["/healthz", "/readyz", "/v1/openapi.json"] {
        for token in [None, Some("not-a-token"), Some(till), Some(desk), Some(ops)] {
            let (status, body) = call(&server, token, "GET", path, "");
            assert_eq!(status, 200, "{path} with {token:?}: {body}");
        }
    }

    let holder = r#"{"birth-date":"2012-01-01","municipality":"albertslund"}"#;
    let decision = purchase("albertslund", "purchase");
    let routes: [(&str, &str, &str, &str); 5] = [
        ("POST", "/v1/decisions", &decision, "POST /v1/decisions"),
        (
            "GET",
            "/v1/programs/albertslund/cards/BK-2002",
            "",
            "GET /v1/programs/{program}/cards/{card}",
        ),
        (
            "PUT",
            "/v1/programs/albertslund/holders/NEW-1",
            holder,
            "PUT /v1/programs/{program}/holders/{card}",
        ),
        ("GET", "/v1/programs", "", "GET /v1/programs"),
        ("GET", "/metrics", "", "GET /metrics"),
    ];
    // Without a known token: 401 on every route, naming it, never the token.
    for (method, path, body, _) in routes {
        for token in [
            None,
            Some("not-a-token"),
            Some(sha256_hex(ops.as_bytes()).as_str()),
        ] {
            let (status, error) = call(&server, token, method, path, body);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {error}");
            let message = error["error"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("`{method} {path}`: ")),
                "{message}"
            );
            let expected = if token.is_some() {
                "unknown bearer token"
            } else {
                "Authorization: Bearer <token>"
            };
            assert!(message.contains(expected), "{message}");
        }
    }
    let mut basic = agent().get(server.url("/v1/programs"));
    basic = basic.header("Authorization", format!("Basic {ops}"));
    let response = basic.call().unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    // Each role × route: allowed, or 403 naming the route and the role it needs.
    let rights = [
        (till, [true, true, false, false, false]),
        (desk, [true, true, true, false, false]),
        (ops, [true, true, true, true, true]),
    ];
    for (token, allowed) in rights {
        for ((method, path, body, route), allowed) in routes.into_iter().zip(allowed) {
            let (status, answer) = call(&server, Some(token), method, path, body);
            if allowed {
                assert!(
                    [200, 201].contains(&status),
                    "{method} {path}: {status} {answer}"
                );
            } else {
                assert_eq!(status, 403, "{method} {path}: {answer}");
                let message = answer["error"].as_str().unwrap();
                assert!(
                    message.contains(&format!("may not call `{route}`")),
                    "{message}"
                );
                assert!(!message.contains(token));
            }
        }
    }

    // Programs: a token acts for its programs only, known or not.
    for (token, method, path, body) in [
        (
            till,
            "POST",
            "/v1/decisions",
            purchase("bergen", "purchase"),
        ),
        (
            till,
            "POST",
            "/v1/decisions",
            purchase("gotham", "purchase"),
        ),
        (
            till,
            "GET",
            "/v1/programs/bergen/cards/AK-1001",
            String::new(),
        ),
        (
            desk,
            "GET",
            "/v1/programs/antwerpen/cards/A-3001",
            String::new(),
        ),
        (
            desk,
            "PUT",
            "/v1/programs/antwerpen/holders/X-1",
            holder.to_string(),
        ),
        (
            desk,
            "POST",
            "/v1/decisions",
            purchase("antwerpen", "purchase"),
        ),
    ] {
        let (status, error) = call(&server, Some(token), method, path, &body);
        assert_eq!(status, 403, "{method} {path} {body}: {error}");
        let message = error["error"].as_str().unwrap();
        assert!(
            message.starts_with("this token may not act for program `"),
            "{message}"
        );
    }
    assert_eq!(
        call(
            &server,
            Some(desk),
            "GET",
            "/v1/programs/bergen/cards/AK-1001",
            ""
        )
        .0,
        200
    );
    assert_eq!(
        call(
            &server,
            Some(ops),
            "POST",
            "/v1/decisions",
            &purchase("gotham", "purchase")
        )
        .0,
        404
    );

    // Actions: the terminal's list restricts it; the registrar may ask for any.
    let (status, error) = call(
        &server,
        Some(till),
        "POST",
        "/v1/decisions",
        &purchase("albertslund", "top-up"),
    );
    assert_eq!(status, 403, "{error}");
    assert_eq!(
        error["error"],
        "this token may not ask for action `top-up` (it may ask for `purchase`)"
    );
    let (status, _) = call(
        &server,
        Some(desk),
        "POST",
        "/v1/decisions",
        &purchase("albertslund", "top-up"),
    );
    assert_eq!(status, 200);

    // Starting balances: a registrar may not create a card with one; an admin may.
    let funded =
        r#"{"birth-date":"2012-01-01","municipality":"albertslund","balances":{"DKK":5000}}"#;
    let (status, error) = call(
        &server,
        Some(desk),
        "PUT",
        "/v1/programs/albertslund/holders/RICH-1",
        funded,
    );
    assert_eq!(status, 403, "{error}");
    assert_eq!(
        error["error"],
        "role `registrar` may not give a card starting balances (`DKK`): that needs role `admin`"
    );
    assert_eq!(
        call(
            &server,
            Some(ops),
            "GET",
            "/v1/programs/albertslund/cards/RICH-1",
            ""
        )
        .0,
        404
    );
    let (status, card) = call(
        &server,
        Some(ops),
        "PUT",
        "/v1/programs/albertslund/holders/RICH-1",
        funded,
    );
    assert_eq!(status, 201, "{card}");
    assert_eq!(card["balances"]["DKK"], 5000);
    let zero = r#"{"birth-date":"2012-01-01","municipality":"albertslund","balances":{"DKK":0}}"#;
    assert_eq!(
        call(
            &server,
            Some(desk),
            "PUT",
            "/v1/programs/albertslund/holders/POOR-1",
            zero
        )
        .0,
        201
    );

    // Unknown routes need a token too; with one they are a 404.
    assert_eq!(call(&server, None, "GET", "/v2/nothing", "").0, 401);
    assert_eq!(call(&server, Some(ops), "GET", "/v2/nothing", "").0, 404);

    // Logs name the caller with each decision, and never hold a token.
    let log = server.log();
    let decision_line = log
        .lines()
        .find(|line| line.contains("decision") && line.contains("bakkens-hjerte-till-1"))
        .unwrap_or_else(|| panic!("no decision logged with the till's name:\n{log}"));
    assert!(decision_line.contains("albertslund"), "{decision_line}");
    assert!(log.contains("borgerservice-desk"));
    for secret in [till, desk, ops] {
        assert!(!log.contains(secret), "a token is in the log");
    }
}

#[test]
fn two_authorization_headers_are_refused_with_400() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let (ops, entry) = make_token(&["--name", "ops", "--role", "admin", "--program", "*"]);
    let auth = dir.path().join("auth.toml");
    std::fs::write(&auth, entry).unwrap();
    let server = Server::start_with(
        Arc::new(dir),
        &["--allow-unsigned", "--auth", auth.to_str().unwrap()],
    );
    let one = format!("GET /v1/programs HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ops}");
    assert_eq!(raw(&server, &one, b"").status, 200);
    // The admin's token first and garbage second was served as the admin; either order, or
    // the same token twice, is now refused: which one counts would be a guess.
    for (first, second) in [
        (format!("Bearer {ops}"), "Bearer garbage".to_string()),
        ("Bearer garbage".to_string(), format!("Bearer {ops}")),
        (format!("Bearer {ops}"), format!("Bearer {ops}")),
    ] {
        let head = format!(
            "GET /v1/programs HTTP/1.1\r\nHost: test\r\nAuthorization: {first}\r\nAuthorization: {second}"
        );
        let answer = raw(&server, &head, b"");
        assert_eq!(answer.status, 400, "{}", answer.body);
        let error: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(
            error["error"],
            "`GET /v1/programs`: the `Authorization` header is sent more than once: send one"
        );
        assert!(!answer.body.contains(&ops));
    }
}

#[test]
fn without_auth_only_loopback_addresses_are_served_unless_insecure_no_auth() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let policies = dir.path().join("policies");
    let ledger = dir.path().join("ledger.sqlite");
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8080"] {
        let out = Command::new(env!("CARGO_BIN_EXE_cardrules"))
            .arg("serve")
            .arg("--policies")
            .arg(&policies)
            .arg("--ledger")
            .arg(&ledger)
            .args(["--listen", listen, "--allow-unsigned"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "error: refusing to listen on `{listen}` without `--auth`: it is not a loopback address"
            )),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    assert!(!ledger.exists(), "refused before the ledger is opened");

    let dir = Arc::new(dir);
    let open = Server::start_listening(
        dir.clone(),
        ledger.to_str().unwrap(),
        "0.0.0.0:0",
        &["--allow-unsigned", "--insecure-no-auth"],
    );
    assert!(
        open.log()
            .contains("WITHOUT ACCESS CONTROL (`--insecure-no-auth`)"),
        "{}",
        open.log()
    );
    let port = open.base.rsplit_once(':').unwrap().1;
    let (status, _) = answer(
        agent()
            .get(format!("http://127.0.0.1:{port}/v1/programs"))
            .call(),
    );
    assert_eq!(status, 200);
    drop(open);

    let local = Server::start_with(dir, &["--allow-unsigned"]);
    assert!(
        local.log().contains(
            "no `--auth`: every caller may do everything, so only loopback addresses are served"
        ),
        "{}",
        local.log()
    );
    assert_eq!(local.get("/v1/programs").0, 200);
}

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM,
/// certificate DER).
fn self_signed() -> (String, String, Vec<u8>) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    (
        made.cert.pem(),
        made.signing_key.serialize_pem(),
        made.cert.der().to_vec(),
    )
}

fn agent_trusting(der: &[u8]) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let roots = RootCerts::Specific(Arc::new(vec![Certificate::from_der(der).to_owned()]));
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build()
        .into()
}

#[test]
fn with_tls_the_api_is_served_over_https_only_and_auth_still_applies() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let (cert, key, der) = self_signed();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let (ops, entry) = make_token(&["--name", "ops", "--role", "admin", "--program", "*"]);
    let auth = dir.path().join("auth.toml");
    std::fs::write(&auth, entry).unwrap();
    let server = Server::start_with(
        Arc::new(dir),
        &[
            "--allow-unsigned",
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
            "--auth",
            auth.to_str().unwrap(),
        ],
    );
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let tls = agent_trusting(&der);

    let (status, _) = answer(tls.get(server.url("/healthz")).call());
    assert_eq!(status, 200);
    // Auth applies over TLS as over plain HTTP.
    let (status, _) = answer(tls.get(server.url("/v1/programs")).call());
    assert_eq!(status, 401);
    let (status, decision) = answer(
        tls.post(server.url("/v1/decisions"))
            .header("Authorization", format!("Bearer {ops}"))
            .send(kino("AK-1001", None).to_string()),
    );
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["allow"], true);

    // Plain HTTP on the TLS port gets no answer, and a client that does not trust the
    // certificate gets none either.
    let plain = server.base.replacen("https://", "http://", 1);
    assert!(agent().get(format!("{plain}/healthz")).call().is_err());
    assert!(agent().get(server.url("/healthz")).call().is_err());
    // And the server still serves after both.
    assert_eq!(answer(tls.get(server.url("/healthz")).call()).0, 200);
}

#[test]
fn missing_or_unusable_tls_files_stop_serve_at_once_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&shipped_policies(), &dir.path().join("policies"));
    let (cert, key, _) = self_signed();
    let (_, other_key, _) = self_signed();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert, key) = (write("cert.pem", &cert), write("key.pem", &key));
    let other_key = write("other-key.pem", &other_key);
    let garbage = write("garbage.pem", "not pem at all\n");
    let missing = dir.path().join("missing.pem").display().to_string();
    let cases = [
        (
            &missing,
            &key,
            format!("cannot read TLS certificate `{missing}`: "),
        ),
        (
            &cert,
            &missing,
            format!("cannot read TLS key `{missing}`: "),
        ),
        (
            &garbage,
            &key,
            format!("cannot use TLS certificate `{garbage}`: it holds no PEM `CERTIFICATE` block"),
        ),
        (
            &cert,
            &garbage,
            format!("cannot use TLS key `{garbage}`: it holds no PEM private key"),
        ),
        (
            &cert,
            &other_key,
            format!("cannot use TLS key `{other_key}` with certificate `{cert}`: "),
        ),
    ];
    for (cert, key, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_cardrules"))
            .arg("serve")
            .arg("--policies")
            .arg(dir.path().join("policies"))
            .arg("--ledger")
            .arg(dir.path().join("ledger.sqlite"))
            .args(["--listen", "127.0.0.1:0", "--allow-unsigned"])
            .args(["--tls-cert", cert, "--tls-key", key])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("error: {expected}")),
            "{expected}\n{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    assert!(
        !dir.path().join("ledger.sqlite").exists(),
        "refused before the ledger is opened"
    );
}
