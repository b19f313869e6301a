//! Explained decisions and the world versions side by side: components of world 0.1.0
//! built by the previous release load and decide unchanged (and show their reads), the
//! shipped programs are of world 0.2.0 and say which rule decided on which numbers, and
//! nothing of an explanation is kept when nobody asked for one.

use std::path::PathBuf;
use std::sync::Arc;

use cardrules::{Decision, Journal as _, MemoryLedger, Request};

mod support;
use support::files::{root, shipped_policies, shipped_programs};
use support::hosts::serving_all;

/// A bergen program directory whose component was built against world 0.1.0 by the
/// previous release, with that release's suites, kept as it was.
fn world_0_1() -> PathBuf {
    root().join("tests/fixtures/world-0.1")
}

fn kino(card: &str, at: &str, explain: bool) -> Request {
    serde_json::from_value(serde_json::json!({
        "program": "bergen", "card": card, "action": "redeem", "offer": "bergen-kino",
        "at": at, "explain": explain,
    }))
    .unwrap()
}

fn check<'a>(decision: &'a Decision, reason: &str) -> &'a cardrules::Check {
    let checks = decision.checks.as_deref().unwrap_or_default();
    checks
        .iter()
        .find(|c| c.reason == reason)
        .unwrap_or_else(|| panic!("no `{reason}` check in {checks:#?}"))
}

#[test]
fn a_world_0_1_component_of_the_previous_release_loads_passes_its_suites_and_shows_its_reads() {
    let host = serving_all(Arc::new(MemoryLedger::new()), &world_0_1());
    let bergen = host.program("bergen").unwrap();
    assert_eq!(bergen.policy.world(), "0.1.0");
    cardrules::suite::check(host.sandbox(), &bergen, None).unwrap();

    let decision = host
        .decide(&kino("AK-1001", "2024-03-01T18:00:00+01:00", true))
        .unwrap();
    assert!(decision.allow, "{decision:?}");
    // A 0.1.0 policy cannot say which rules it evaluated; the host still says what it read.
    assert_eq!(decision.checks.as_deref(), Some(&[][..]));
    let reads = decision.reads.as_deref().unwrap();
    let count = reads
        .iter()
        .find(|r| r.call == "ledger.count-in")
        .unwrap_or_else(|| panic!("no count-in in {reads:#?}"));
    assert_eq!(count.args["counter"], "visit:bergen-kino");
    assert_eq!(count.answer, 0);
}

#[test]
fn the_shipped_programs_are_served_as_world_0_2() {
    let host = serving_all(Arc::new(MemoryLedger::new()), &shipped_policies());
    for program in shipped_programs() {
        assert_eq!(
            host.program(&program).unwrap().policy.world(),
            "0.2.0",
            "{program}"
        );
    }
}

#[test]
fn the_yearly_limit_is_explained_with_the_hosts_count_and_the_next_first_of_january() {
    let host = serving_all(Arc::new(MemoryLedger::new()), &shipped_policies());
    for day in ["02", "03", "04"] {
        let at = format!("2024-03-{day}T18:00:00+01:00");
        assert!(host.decide(&kino("AK-1001", &at, false)).unwrap().allow);
    }
    let fourth = host
        .decide(&kino("AK-1001", "2024-03-05T18:00:00+01:00", true))
        .unwrap();
    assert!(fourth.allow, "{fourth:?}");
    let quota = check(&fourth, "quota-exhausted");
    assert!(quota.passed);
    assert_eq!((quota.used, quota.limit), (Some(3), Some(4)));
    // The next 1 January, local midnight in Oslo.
    assert_eq!(
        quota.until.map(|t| t.to_string()).as_deref(),
        Some("2024-12-31T23:00:00Z")
    );
    assert!(fourth.checks.as_deref().unwrap().iter().all(|c| c.passed));

    let fifth = host
        .decide(&kino("AK-1001", "2024-03-06T18:00:00+01:00", true))
        .unwrap();
    assert_eq!(fifth.reason, "quota-exhausted");
    let quota = check(&fifth, "quota-exhausted");
    assert!(!quota.passed);
    assert_eq!((quota.used, quota.limit), (Some(4), Some(4)));
    // The denial's reason is that of its first failed check.
    let first_failed = fifth.checks.as_deref().unwrap().iter().find(|c| !c.passed);
    assert_eq!(
        first_failed.map(|c| c.reason.as_str()),
        Some("quota-exhausted")
    );
}

#[test]
fn without_explain_a_decision_and_its_record_carry_no_explanation() {
    let journal = Arc::new(MemoryLedger::new());
    let host = serving_all(journal.clone(), &shipped_policies());
    let mut request = kino("AK-1002", "2024-03-01T18:00:00+01:00", false);
    let plain = serde_json::to_value(host.decide(&request).unwrap()).unwrap();
    assert!(
        plain.get("checks").is_none() && plain.get("reads").is_none(),
        "{plain}"
    );

    request.at = "2024-03-02T18:00:00+01:00".parse().unwrap();
    request.explain = true;
    let explained = host.decide(&request).unwrap();
    assert!(explained.checks.as_ref().is_some_and(|c| !c.is_empty()));
    // The journal keeps the decision as answered, not its explanation.
    for event in journal.read("bergen", 0).unwrap() {
        let row = format!("{:?}", event.change);
        assert!(
            !row.contains("\\\"checks\\\"") && !row.contains("\\\"reads\\\""),
            "{row}"
        );
    }
}

#[test]
fn a_world_0_1_and_a_world_0_2_build_of_bergen_pass_the_same_suites_in_one_engine() {
    let host = serving_all(Arc::new(MemoryLedger::new()), &shipped_policies());
    let current = host.program("bergen").unwrap();
    let old = cardrules::Program::load(
        host.sandbox(),
        &cardrules::Trust::allow_unsigned(),
        &world_0_1().join("bergen"),
    )
    .unwrap();
    assert_eq!(
        (old.policy.world(), current.policy.world()),
        ("0.1.0", "0.2.0")
    );
    // The previous release's suites, on both builds, in one sandbox.
    let suites = cardrules::suite::discover(&world_0_1(), &[]).unwrap();
    assert!(suites.len() >= 3, "{suites:?}");
    for path in suites {
        let loaded = cardrules::suite::load(&path).unwrap();
        for program in [&old, &*current] {
            let report = cardrules::suite::run_against(host.sandbox(), program, &loaded).unwrap();
            let failed: Vec<String> = report
                .steps
                .iter()
                .filter(|s| !s.passed())
                .map(ToString::to_string)
                .collect();
            assert!(
                failed.is_empty(),
                "world {}, {}: {failed:#?}",
                program.policy.world(),
                path.display()
            );
        }
    }
}

#[test]
fn a_read_trace_lists_the_counter_sums_the_policy_asked_for() {
    let host = serving_all(Arc::new(MemoryLedger::new()), &shipped_policies());
    for day in ["02", "03"] {
        let at = format!("2024-03-{day}T18:00:00+01:00");
        assert!(host.decide(&kino("AK-1001", &at, false)).unwrap().allow);
    }
    let decision = host
        .decide(&kino("AK-1001", "2024-03-04T18:00:00+01:00", true))
        .unwrap();
    let reads = decision.reads.unwrap();
    let count = reads
        .iter()
        .find(|r| r.call == "ledger.count-in")
        .unwrap_or_else(|| panic!("{reads:#?}"));
    assert_eq!(count.args["card"], "AK-1001");
    assert_eq!(count.args["counter"], "visit:bergen-kino");
    assert_eq!(count.args["period"], "year");
    assert_eq!(count.answer, 2);
}
