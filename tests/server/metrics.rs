//! `GET /metrics`: decisions, replays, policy errors, commits and reloads, counted.

use std::sync::Arc;

use serde_json::json;

use crate::fixtures::*;
use crate::support::files::{copy_dir, replace, shipped_policies};
use crate::support::hostile::hostile_program;
use crate::support::server::*;

#[test]
fn metrics_count_decisions_policy_errors_commits_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&shipped_policies(), &policies);
    hostile_program(&policies, "loop", "[limits]\nfuel = 100_000");
    let server = Server::start_in(Arc::new(dir));
    let before = metrics_of(&server);
    let kino_allowed = [
        ("program", "bergen"),
        ("action", "redeem"),
        ("allow", "true"),
        ("reason", "ok"),
    ];
    assert_eq!(
        before.value("cardrules_decisions_total", &kino_allowed),
        0.0
    );

    for n in 0..3 {
        server.decide(&kino("AK-1001", Some(&format!("m-{n}"))));
    }
    // A replay is not a new decision.
    assert_eq!(
        server.decide(&kino("AK-1001", Some("m-0")))["replayed"],
        true
    );
    let unknown_card = server.decide(&kino("NOBODY", None));
    assert_eq!(unknown_card["reason"], "unknown-card");
    let mut made_up = kino("AK-1001", None);
    made_up["action"] = json!("made-up-action");
    server.decide(&made_up);
    let (_, error) = server.post("/v1/decisions", &loop_request());
    assert_eq!(error["reason"], "policy-error", "{error}");

    let after = metrics_of(&server);
    let served = after.value("cardrules_decisions_total", &kino_allowed);
    assert_eq!(served, 3.0, "{:?}", after.0);
    assert_eq!(
        after.value(
            "cardrules_decisions_replayed_total",
            &[("program", "bergen")]
        ),
        1.0
    );
    assert_eq!(
        after.value(
            "cardrules_decisions_total",
            &[
                ("program", "bergen"),
                ("allow", "false"),
                ("reason", "unknown-card")
            ]
        ),
        1.0
    );
    // What the caller made up is not a label.
    assert_eq!(
        after.value(
            "cardrules_decisions_total",
            &[("program", "bergen"), ("action", "other")]
        ),
        1.0
    );
    assert!(
        !after
            .0
            .iter()
            .any(|(_, l, _)| l.values().any(|v| v == "made-up-action"))
    );
    assert_eq!(
        after.value(
            "cardrules_policy_errors_total",
            &[("program", "hostile-loop"), ("kind", "fuel")]
        ),
        1.0
    );
    assert_eq!(
        after.value("cardrules_decision_seconds_count", &[("program", "bergen")]),
        5.0
    );
    assert!(after.value("cardrules_decision_seconds_sum", &[("program", "bergen")]) > 0.0);
    assert!(after.value("cardrules_decision_fuel_count", &[("program", "bergen")]) >= 3.0);
    assert!(after.value("cardrules_decision_fuel_sum", &[("program", "bergen")]) > 0.0);
    assert_eq!(
        after.value(
            "cardrules_decision_fuel_count",
            &[("program", "hostile-loop")]
        ),
        1.0
    );
    // Every committed decision went through the group commit (demo holders too).
    let commits = |m: &Metrics| m.value("cardrules_ledger_commit_seconds_count", &[]);
    assert!(commits(&after) >= commits(&before) + 1.0);
    assert!(after.value("cardrules_ledger_commit_batches_count", &[]) >= commits(&after));
    assert!(
        after.value("cardrules_ledger_changes_total", &[])
            >= before.value("cardrules_ledger_changes_total", &[]) + 5.0
    );
    assert_eq!(
        after.value("cardrules_ledger_commit_failures_total", &[]),
        0.0
    );
    assert_eq!(after.value("cardrules_in_flight", &[]), 0.0);
    assert!(after.value("cardrules_max_connections", &[]) >= 1.0);

    // Hot reloads: a good update is accepted, a broken one refused.
    let manifest = server.policies().join("bergen/policy.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    replace(&manifest, format!("{text}\n# touched\n").as_bytes());
    eventually("the reload is counted", &server, || {
        metrics_of(&server).value(
            "cardrules_reloads_total",
            &[("program", "bergen"), ("outcome", "accepted")],
        ) == 1.0
    });
    replace(
        &server.policies().join("antwerpen/policy.toml"),
        b"not = [toml",
    );
    eventually("the refusal is counted", &server, || {
        metrics_of(&server).value(
            "cardrules_reloads_total",
            &[("program", "antwerpen"), ("outcome", "refused")],
        ) == 1.0
    });
}

#[test]
fn every_help_text_ends_in_one_period() {
    // The metrics library ends a registered help text with a period of its own: texts that
    // had one too read "…in flight..".
    let server = Server::start();
    server.decide(&kino("AK-1001", None));
    let text = agent()
        .get(server.url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let helps: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP ")).collect();
    // Registered metrics (with a value) and those read when scraped alike.
    for name in [
        "cardrules_decisions ",
        "cardrules_ledger_changes ",
        "cardrules_in_flight ",
    ] {
        assert!(
            helps
                .iter()
                .any(|h| h.starts_with(&format!("# HELP {name}"))),
            "{name}: {text}"
        );
    }
    for help in helps {
        assert!(
            help.ends_with('.') && !help.ends_with(".."),
            "not one final period: {help}"
        );
    }
}
