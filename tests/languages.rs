//! Policies in Python and JavaScript, end to end through the command: `cardrules build`
//! builds the shipped examples with the repository's pinned toolchains, and they pass the
//! very suites of the Rust programs at 100 % coverage; `cardrules new --lang` makes a
//! program that builds and passes its starter suite; hostile policies in each language
//! are stopped with a `policy-error` that names what they tried.
//!
//! The toolchains come from the package registries (PyPI, npm) on first use. Without an
//! interpreter (`python3.11`, `node` and `npm`), or when the toolchain cannot be installed
//! (no registry), a test says it skipped and passes — unless
//! `CARDRULES_TEST_LANGUAGES=require` (CI), where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;
use support::files::{copy_dir, root};
use support::toolchains::{runs, skip};

/// Runs `cardrules ARGS` from the repository root; its status, stdout and stderr.
fn cardrules(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cardrules"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Builds the programs of `policies` (the toolchain is installed on first use); false,
/// after saying why, when the toolchain cannot be had here.
fn build(policies: &Path, programs: &[&str]) -> bool {
    let dir = policies.to_str().unwrap();
    let (ok, _, err) = cardrules(&[&["build", "--policies", dir], programs].concat());
    if !ok && (err.contains("installing the") || err.contains("not found")) {
        skip(&format!("the toolchain could not be installed: {err}"));
        return false;
    }
    assert!(ok, "cardrules build --policies {dir}: {err}");
    true
}

/// A scratch copy of `from` (relative to the repository root).
fn scratch(from: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(&root().join(from), &policies);
    (dir, policies)
}

/// The examples of `language` pass every shipped suite of Bergen and Albertslund, with
/// every check seen passing and failing.
fn examples_pass_the_shipped_suites(language: &str) {
    let (_dir, policies) = scratch(&format!("examples/{language}/policies"));
    if !build(&policies, &[]) {
        return;
    }
    let (ok, out, err) = cardrules(&[
        "test",
        "--allow-unsigned",
        "--policies",
        policies.to_str().unwrap(),
        "--coverage",
        "--min-coverage",
        "100",
    ]);
    assert!(ok, "{out}\n{err}");
    // The very suites of the Rust programs, step for step.
    for program in ["bergen", "albertslund"] {
        let shipped = root().join("policies").join(program).join("suites");
        for suite in std::fs::read_dir(&shipped).unwrap() {
            let name = suite.unwrap().file_name();
            let copy = policies.join(program).join("suites").join(&name);
            assert_eq!(
                std::fs::read(shipped.join(&name)).unwrap(),
                std::fs::read(&copy).unwrap(),
                "{language}: suite {name:?} of `{program}` differs from the Rust program's"
            );
        }
    }
    assert!(out.contains("coverage `bergen`: 8 of 8 checks"), "{out}");
    assert!(
        out.contains("coverage `albertslund`: 11 of 11 checks"),
        "{out}"
    );
    assert!(out.trim_end().ends_with(" passed, 0 failed"), "{out}");
}

/// `cardrules new --lang` makes a program that builds and passes its starter suite.
fn a_new_program_builds_and_passes(language: &str) {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    let (ok, out, err) = cardrules(&[
        "new",
        "starter",
        "--lang",
        language,
        "--policies",
        policies.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("cardrules build"), "{out}");
    if !build(&policies, &["starter"]) {
        return;
    }
    let program = policies.join("starter");
    let (ok, out, err) = cardrules(&["test", "--allow-unsigned", program.to_str().unwrap()]);
    assert!(ok, "{out}\n{err}");
    assert!(out.trim_end().ends_with("2 passed, 0 failed"), "{out}");
}

/// Hostile policies of the language (their suites expect each misbehaviour to end in a
/// `policy-error`), built and run like any other.
fn hostile_policies_are_stopped(fixtures: &str, programs: &[&str]) {
    let (_dir, policies) = scratch(fixtures);
    if !build(&policies, programs) {
        return;
    }
    for program in programs {
        let dir = policies.join(program);
        let (ok, out, err) = cardrules(&["test", "--allow-unsigned", dir.to_str().unwrap()]);
        assert!(ok, "{program}: {out}\n{err}");
    }
}

#[test]
fn python_policies_build_pass_the_shipped_suites_and_misbehave_safely() {
    if !runs("python3.11", &["--version"]) {
        return skip("python3.11 is not installed");
    }
    examples_pass_the_shipped_suites("python");
    // Python's hash seed and set order are the likeliest to differ between builds.
    two_builds_decide_the_same("python");
    a_new_program_builds_and_passes("python");
    // Each Python component carries the interpreter (18 MB, seconds to build and
    // compile): the misbehaviours that reach the host differently, not all nine.
    hostile_policies_are_stopped(
        "tests/fixtures/python/hostile",
        &[
            "hostile-python-clock",
            "hostile-python-exception",
            "hostile-python-loop",
        ],
    );
}

/// Two builds of the same source are not the same bytes (each carries the interpreter's
/// heap snapshot), but they decide the same: the same explained decisions — checks and
/// reads included — digest and fuel aside.
fn two_builds_decide_the_same(language: &str) {
    let requests = [
        r#"{"program":"bergen","card":"AK-1001","action":"redeem","offer":"bergen-kino","party":2,"at":"2024-03-01T18:00:00+01:00","explain":true}"#,
        r#"{"program":"bergen","card":"AK-1001","action":"redeem","offer":"bergen-kino","party":3,"at":"2024-03-01T18:00:00+01:00","explain":true}"#,
        r#"{"program":"albertslund","card":"BK-2001","action":"purchase","offer":"bh-toast","amount":1500,"at":"2024-03-01T15:00:00+01:00","explain":true}"#,
        r#"{"program":"albertslund","card":"BK-2001","action":"purchase","offer":"bh-slik","amount":500,"at":"2024-03-01T15:00:00+01:00","explain":true}"#,
    ];
    let mut answers = Vec::new();
    for _ in 0..2 {
        let (dir, policies) = scratch(&format!("examples/{language}/policies"));
        if !build(&policies, &[]) {
            return;
        }
        let mut decided = Vec::new();
        for (n, request) in requests.iter().enumerate() {
            let file = dir.path().join(format!("request-{n}.json"));
            std::fs::write(&file, request).unwrap();
            let ledger = dir.path().join(format!("ledger-{n}.sqlite"));
            let (ok, out, err) = cardrules(&[
                "decide",
                "--allow-unsigned",
                "--policies",
                policies.to_str().unwrap(),
                "--ledger",
                ledger.to_str().unwrap(),
                "--request",
                file.to_str().unwrap(),
                // The same recorded requests on two builds, whenever the test runs.
                "--max-lateness",
                "none",
            ]);
            assert!(ok, "{request}: {err}");
            let mut decision: serde_json::Value = serde_json::from_str(&out).unwrap();
            // The digest differs by construction; so does the fuel, slightly, for Python
            // (another heap snapshot, other instruction counts): neither is the decision.
            decision["policy"]["digest"] = serde_json::Value::Null;
            decision["fuel"] = serde_json::Value::Null;
            decided.push(decision);
        }
        answers.push(decided);
    }
    assert_eq!(
        answers[0], answers[1],
        "{language}: two builds decided differently"
    );
    assert!(answers[0].iter().any(|d| d["allow"] == true));
    assert!(answers[0].iter().any(|d| d["allow"] == false));
}

#[test]
fn javascript_policies_build_pass_the_shipped_suites_and_misbehave_safely() {
    if !runs("node", &["--version"]) || !runs("npm", &["--version"]) {
        return skip("node and npm are not installed");
    }
    examples_pass_the_shipped_suites("js");
    two_builds_decide_the_same("js");
    a_new_program_builds_and_passes("js");
    hostile_policies_are_stopped("tests/fixtures/js/hostile", &["js-hostile"]);
}

#[test]
fn the_javascript_sdk_refuses_a_price_or_amount_that_is_not_an_integer_naming_it() {
    if !runs("node", &["--version"]) || !runs("npm", &["--version"]) {
        return skip("node and npm are not installed");
    }
    let (dir, policies) = scratch("tests/fixtures/js/hostile");
    if !build(&policies, &["js-hostile"]) {
        return;
    }
    for (action, error) in [
        // Once an allowed free decision.
        (
            "nan-price",
            "TypeError: `price` must be an integer, not NaN",
        ),
        // Once rounded to 1.
        (
            "fractional-price",
            "TypeError: `price` must be an integer, not 1.5",
        ),
        (
            "fractional-amount",
            "TypeError: the amount of effect `count` must be an integer, not 0.5",
        ),
        // An integer is the host's to bound, like every amount.
        (
            "negative-price",
            "the policy returned price -1, outside 0..=1000000000000000",
        ),
    ] {
        let file = dir.path().join(format!("{action}.json"));
        let request = serde_json::json!({
            "program": "js-hostile", "card": "H-1", "action": action,
            "at": jiff::Timestamp::now().to_string(), "dry-run": true,
        });
        std::fs::write(&file, request.to_string()).unwrap();
        let (ok, out, err) = cardrules(&[
            "decide",
            "--allow-unsigned",
            "--policies",
            policies.to_str().unwrap(),
            "--ledger",
            dir.path().join("ledger.sqlite").to_str().unwrap(),
            "--request",
            file.to_str().unwrap(),
        ]);
        assert!(ok, "{action}: {err}");
        let decision: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(decision["reason"], "policy-error", "{action}: {decision}");
        let said = decision["error"].as_str().unwrap_or_default();
        assert!(said.contains(error), "{action}: {said}");
    }
}

#[test]
fn a_program_without_source_or_in_two_languages_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    copy_dir(
        &root().join("examples/js/policies/bergen"),
        &policies.join("bergen"),
    );
    std::fs::write(policies.join("bergen/policy.py"), "").unwrap();
    let (ok, _, err) = cardrules(&["build", "--policies", policies.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("several languages"), "{err}");
    std::fs::remove_file(policies.join("bergen/policy.py")).unwrap();
    std::fs::remove_file(policies.join("bergen/policy.js")).unwrap();
    std::fs::rename(policies.join("bergen"), policies.join("nameless")).unwrap();
    let (ok, _, err) = cardrules(&["build", "--policies", policies.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("program `nameless` has no source"), "{err}");
}
