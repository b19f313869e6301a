//! End-to-end tests of the `cardrules` command: the shipped suites, the exit codes of
//! docs/contract.md, readable failures, and bad input that never panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::io::Write;

mod support;
use support::files::{copy_dir, root, shipped_programs};

fn cardrules(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cardrules"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run cardrules")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A copy of the shipped policies directory that a test may break.
fn policies_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(&root().join("policies"), &dir.path().join("policies"));
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

const FAILING_SUITE: &str = r#"
program = "bergen"

[[holders]]
card = "X-1"
birth-date = "2012-05-01"
municipality = "bergen"

[[steps]]
name = "cinema with two friends"
at = "2024-03-01T18:00:00+01:00"
card = "X-1"
action = "redeem"
offer = "bergen-kino"
party = 3
expect = { allow = true, admitted = 3 }
"#;

#[test]
fn every_shipped_suite_passes() {
    let out = cardrules(&["test", "--policies", "policies"], &root());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let last = text.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed"), "last line: {last}");
    for program in shipped_programs() {
        assert!(
            text.contains(&format!("policies/{program}/suites/")),
            "{program} suites did not run:\n{text}"
        );
    }
}

#[test]
fn a_failing_step_exits_1_and_shows_expected_beside_actual() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("fail.toml");
    write(&suite, FAILING_SUITE);
    let policies = root().join("policies");
    let junit = dir.path().join("junit.xml");
    let out = cardrules(
        &[
            "test",
            "--policies",
            policies.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            suite.to_str().unwrap(),
        ],
        dir.path(),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL step 1 `cinema with two friends`"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("✗ allow") && l.contains("true") && l.contains("false")),
        "{text}"
    );
    assert!(text.contains("party-too-large"), "{text}");
    assert_eq!(text.lines().last(), Some("0 passed, 1 failed"));
    let report = junit_cases(&junit);
    assert_eq!(
        report,
        [(
            "step 1: cinema with two friends".to_string(),
            "bergen".to_string(),
            Some("failure".to_string())
        )]
    );

    // A suite that cannot be loaded is in the report too, as an error.
    let broken = dir.path().join("broken.toml");
    write(&broken, "program = \"bergen\"\n[[steps]\n");
    let out = cardrules(
        &[
            "test",
            "--policies",
            policies.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            suite.to_str().unwrap(),
            broken.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let report = junit_cases(&junit);
    assert_eq!(report.len(), 2, "{report:?}");
    assert_eq!(report[0].2.as_deref(), Some("error"), "{report:?}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("broken.toml"), "{xml}");
    assert_eq!(report[1].2.as_deref(), Some("failure"), "{report:?}");
}

/// The test cases of a JUnit report, parsed: (name, classname, `failure` or `error` if
/// the case did not pass). Panics on XML that does not parse.
fn junit_cases(path: &Path) -> Vec<(String, String, Option<String>)> {
    use quick_xml::events::Event;
    let xml = std::fs::read_to_string(path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut cases: Vec<(String, String, Option<String>)> = Vec::new();
    let attribute = |e: &quick_xml::events::BytesStart<'_>, key: &[u8]| {
        e.attributes()
            .map(|a| a.unwrap())
            .find(|a| a.key.as_ref() == key)
            .map(|a| a.unescape_value().unwrap().into_owned())
            .unwrap_or_default()
    };
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("{e}: {xml}")) {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"testcase" => {
                    cases.push((attribute(&e, b"name"), attribute(&e, b"classname"), None))
                }
                kind @ (b"failure" | b"error") => {
                    let case = cases.last_mut().expect("a failure inside a test case");
                    case.2 = Some(String::from_utf8_lossy(kind).into_owned());
                }
                _ => {}
            },
            _ => {}
        }
    }
    cases
}

#[test]
fn malformed_suites_exit_2_with_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let policies = root().join("policies");
    let cases = [
        (
            "not-toml.toml",
            "program = \"bergen\"\n[[steps]\n",
            "cannot parse",
        ),
        (
            "bad-time.toml",
            "program = \"bergen\"\n[[steps]]\nat = \"yesterday\"\ncard = \"x\"\naction = \"redeem\"\nexpect = { allow = true }\n",
            "`yesterday` is not an RFC 3339 time",
        ),
        (
            "unknown-key.toml",
            "program = \"bergen\"\n[[steps]]\nat = \"2024-01-01T00:00:00Z\"\ncard = \"x\"\naction = \"redeem\"\nexpect = { allow = true, reasn = \"ok\" }\n",
            "unknown field `reasn`",
        ),
        (
            "no-program.toml",
            "program = \"oslo\"\n[[steps]]\nat = \"2024-01-01T00:00:00Z\"\ncard = \"x\"\naction = \"redeem\"\nexpect = { allow = true }\n",
            "unknown program `oslo`",
        ),
        ("no-steps.toml", "program = \"bergen\"\n", "has no steps"),
    ];
    for (name, text, message) in cases {
        let path = dir.path().join(name);
        write(&path, text);
        let out = cardrules(
            &[
                "test",
                "--policies",
                policies.to_str().unwrap(),
                path.to_str().unwrap(),
            ],
            dir.path(),
        );
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {text}");
        let error = text
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("{name}: no error line in {text}"));
        assert!(error.contains(message), "{name}: {error}");
        assert!(
            !stderr(&out).contains("panicked"),
            "{name}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_broken_manifest_or_component_is_refused_with_the_programs_name() {
    let cases: [(&str, &str, &str); 3] = [
        (
            "policy.toml",
            "program = \"bergen\"\nname = 1\n",
            "cannot load policy `bergen`: cannot parse",
        ),
        (
            "bergen.wasm",
            "this is not wasm",
            "cannot load policy `bergen`: not a valid component",
        ),
        (
            "catalogue.toml",
            "[[offers]]\nid = \"a\"\ncategory = \"x\"\nlocation = \"y\"\nsize = 1.5\n",
            "cannot load policy `bergen`",
        ),
    ];
    for (file, text, message) in cases {
        let dir = policies_copy();
        write(&dir.path().join("policies/bergen").join(file), text);
        let suite = root().join("policies/bergen/suites/eligibility.toml");
        let out = cardrules(
            &["test", "--policies", "policies", suite.to_str().unwrap()],
            dir.path(),
        );
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(2), "{file}: {text}");
        assert!(text.contains(message), "{file}: {text}");
        assert!(
            !stderr(&out).contains("panicked"),
            "{file}: {}",
            stderr(&out)
        );
    }
}

/// Runs `cardrules decide --allow-unsigned` on the shipped policies with `request` on
/// standard input and `extra` arguments.
fn decide(dir: &Path, request: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--allow-unsigned"];
    args.extend_from_slice(extra);
    decide_in(dir, &root().join("policies"), request, &args)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(out), stderr(out)))
}

#[test]
fn decide_commits_to_the_default_ledger_and_a_retried_id_commits_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let request = |id: &str| {
        format!(
            r#"{{"program":"bergen","card":"AK-1001","action":"redeem","offer":"akvariet","at":"2024-05-01T12:00:00+02:00","id":"{id}"}}"#
        )
    };
    let first = decide(dir.path(), &request("t1"), &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let first = json(&first);
    assert_eq!(first["allow"], true);
    assert_eq!(first["policy"]["program"], "bergen");
    assert!(
        first["policy"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        dir.path().join("cardrules.sqlite").is_file(),
        "the default ledger is a file in the working directory"
    );

    let retry = json(&decide(dir.path(), &request("t1"), &[]));
    assert_eq!(retry["replayed"], true);
    // A dry run that would be allowed: it says so, and commits nothing.
    let dry = json(&decide(dir.path(), &request("d1"), &["--dry-run"]));
    assert_eq!(
        (dry["allow"].clone(), dry["dry-run"].clone()),
        (true.into(), true.into()),
        "{dry}"
    );
    // The yearly limit is 2: had the retry or the dry run counted, this would be refused.
    let second = json(&decide(dir.path(), &request("t2"), &[]));
    assert_eq!(second["allow"], true, "{second}");
    let dry = json(&decide(dir.path(), &request("t3"), &["--dry-run"]));
    assert_eq!(
        (dry["allow"].clone(), dry["reason"].clone()),
        (false.into(), "quota-exhausted".into())
    );

    let reused = decide(
        dir.path(),
        &request("t1").replace("akvariet", "kode-museum"),
        &[],
    );
    assert_eq!(reused.status.code(), Some(2));
    assert!(
        stderr(&reused).contains("request id `t1` was already used for a different request"),
        "{}",
        stderr(&reused)
    );
}

/// The command checks ids as the server does (one rule, in the engine): a bad one exits 2
/// naming the field, for `decide` and for a card read by `history`.
#[test]
fn ids_no_ledger_can_key_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        (serde_json::json!(""), "error: `new-card` is empty"),
        (
            serde_json::json!("../A-3002"),
            "error: `new-card` `../A-3002` holds `/`",
        ),
        (
            serde_json::json!("A-9\u{0}"),
            "error: `new-card` `A-9\\0` holds the control character U+0000",
        ),
        (
            serde_json::json!(" A-9"),
            "error: `new-card` ` A-9` begins or ends with whitespace",
        ),
    ];
    for (new_card, message) in bad {
        let request = serde_json::json!({"program": "antwerpen", "card": "A-3001",
            "action": "replace-card", "at": "2025-04-03T09:00:00+02:00",
            "new-card": new_card})
        .to_string();
        let out = decide(dir.path(), &request, &[]);
        assert_eq!(out.status.code(), Some(2), "{request}: {}", stdout(&out));
        assert!(
            stderr(&out).lines().any(|line| line.starts_with(message)),
            "{request}: {}",
            stderr(&out)
        );
    }
    let long = "A".repeat(129);
    let policies = root().join("policies");
    let args = [
        "history",
        "--program",
        "antwerpen",
        "--card",
        &long,
        "--policies",
        policies.to_str().unwrap(),
        "--allow-unsigned",
    ];
    let out = cardrules(&args, dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("`card` `AAAA"), "{}", stderr(&out));
}

#[test]
fn decide_takes_a_till_s_late_request_within_its_programs_bound_and_says_which_it_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let policies = root().join("policies");
    let at = |hours_ago: i64| {
        let at = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(hours_ago);
        format!(
            r#"{{"program":"bergen","card":"AK-1001","action":"redeem","offer":"akvariet","at":"{at}","dry-run":true}}"#
        )
    };
    // An hour late (a till that was offline): decided.
    let out = decide_bounded(dir.path(), &policies, &at(1), &["--allow-unsigned"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["allow"], true);
    // A week late, or a day ahead: bad input, naming the bound.
    for (hours_ago, bound) in [(24 * 7, "`max-lateness`"), (-24, "`max-skew`")] {
        let out = decide_bounded(dir.path(), &policies, &at(hours_ago), &["--allow-unsigned"]);
        assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
        let said = stderr(&out);
        assert!(
            said.contains("error: `at` `") && said.contains(bound) && said.contains("`bergen`"),
            "{said}"
        );
    }
    // A year ago, as recorded traffic: decided, and the log says the bound is off.
    let out = decide_bounded(
        dir.path(),
        &policies,
        &at(24 * 365),
        &["--allow-unsigned", "--max-lateness", "none"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`--max-lateness none`: requests are decided at any `at`"),
        "{}",
        stderr(&out)
    );
    // `none` is the only value: the bounds are the programs'.
    let out = decide_bounded(dir.path(), &policies, &at(1), &["--max-lateness", "24h"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn malformed_requests_exit_2_and_unknown_cards_get_a_decision() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        ("{\"program\":", "cannot parse request"),
        (
            r#"{"program":"bergen","card":"AK-1001","action":"redeem","at":"2024-05-01 12:00"}"#,
            "cannot parse request",
        ),
        (
            r#"{"program":"oslo","card":"AK-1001","action":"redeem","at":"2024-05-01T12:00:00Z"}"#,
            "unknown program `oslo`",
        ),
        (
            r#"{"program":"bergen","card":"AK-1001","action":"redeem","at":"2024-05-01T12:00:00Z","party":0}"#,
            "`party` must be at least 1",
        ),
        (
            r#"{"program":"bergen","card":"AK-1001","action":"redeem","at":"2024-05-01T12:00:00Z","colour":"red"}"#,
            "unknown field `colour`",
        ),
    ];
    for (request, message) in bad {
        let out = decide(dir.path(), request, &[]);
        assert_eq!(out.status.code(), Some(2), "{request}");
        assert!(
            stderr(&out).contains(message),
            "{request}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"));
    }
    let out = decide(
        dir.path(),
        r#"{"program":"bergen","card":"NOBODY","action":"redeem","offer":"akvariet","at":"2024-05-01T12:00:00Z"}"#,
        &[],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["reason"], "unknown-card");
}

/// Every file below `dir` (relative path → contents), leaving out build output and git.
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap_or_default();
            if name == "target" || name == ".git" {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn a_new_program_touches_only_its_two_directories_builds_and_passes_its_suite() {
    // A copy of the repository, without build output.
    let copy = tempfile::tempdir().unwrap();
    let repo = copy.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    for part in ["Cargo.toml", "wit", "guest-rules", "policies", "host"] {
        let from = root().join(part);
        if from.is_dir() {
            copy_dir(&from, &repo.join(part));
        } else {
            std::fs::copy(&from, repo.join(part)).unwrap();
        }
    }
    let _ = std::fs::remove_dir_all(repo.join("guest-rules/target"));
    let before = tree(&repo);

    let made = cardrules(
        &[
            "new",
            "demo-city",
            "--time-zone",
            "Europe/Copenhagen",
            "--languages",
            "da,en",
        ],
        &repo,
    );
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    let after = tree(&repo);
    for (path, bytes) in &before {
        assert_eq!(
            after.get(path),
            Some(bytes),
            "`new` changed `{}`",
            path.display()
        );
    }
    let added: Vec<&PathBuf> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    assert!(!added.is_empty());
    for path in &added {
        assert!(
            path.starts_with("guest-rules/programs/demo-city")
                || path.starts_with("policies/demo-city"),
            "`new` wrote `{}` outside its two directories",
            path.display()
        );
    }

    // Scaffolding the same program again is refused, and so is a bad name.
    let again = cardrules(&["new", "demo-city"], &repo);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("exists already"),
        "{}",
        stderr(&again)
    );
    let bad = cardrules(&["new", "Demo City"], &repo);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("invalid program name `Demo City`"),
        "{}",
        stderr(&bad)
    );

    // Build the guest workspace as `host/cli/build.rs` does (sharing its compiled
    // dependencies), place the component, and run the new program's suite.
    let guests = Path::new(env!("CARDRULES_GUESTS_DIR"));
    let target_dir = guests.ancestors().nth(2).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(repo.join("guest-rules"))
        .args([
            "build",
            "--release",
            "--offline",
            "--target",
            "wasm32-wasip2",
            "-p",
            "demo-city",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    std::fs::copy(
        guests.join("demo_city.wasm"),
        repo.join("policies/demo-city/demo-city.wasm"),
    )
    .unwrap();
    let tested = cardrules(&["test", "policies/demo-city/suites"], &repo);
    assert_eq!(
        tested.status.code(),
        Some(0),
        "{}{}",
        stdout(&tested),
        stderr(&tested)
    );
    assert!(
        stdout(&tested).ends_with("2 passed, 0 failed\n"),
        "{}",
        stdout(&tested)
    );
}

#[test]
fn an_unreachable_postgres_ledger_is_a_clear_error_and_decides_nothing() {
    let out = cardrules(
        &[
            "decide",
            "--allow-unsigned",
            "--ledger",
            "postgres://cardrules:secret@127.0.0.1:1/none",
            "--request",
            "examples/redeem.json",
        ],
        &root(),
    );
    assert_eq!(out.status.code(), Some(2));
    let error = stderr(&out);
    assert!(
        error.contains(
            "error: ledger unavailable: cannot connect to `postgres://cardrules@127.0.0.1:1/none`"
        ),
        "{error}"
    );
    assert!(!error.contains("secret"), "{error}");
    assert!(stdout(&out).is_empty());
}

/// Runs `cardrules test` on the copied policies with one suite; returns the exit code and
/// the `error: ` line it printed.
fn test_with_suite(dir: &Path, suite: &Path) -> (Option<i32>, String) {
    let out = cardrules(
        &["test", "--policies", "policies", suite.to_str().unwrap()],
        dir,
    );
    let text = stdout(&out);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let error = text
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {text}"))
        .to_string();
    (out.status.code(), error)
}

/// Edits one file of the copied `program`; the edit must change it.
fn edit(dir: &Path, program: &str, file: &str, from: &str, to: &str) {
    let path = dir.join("policies").join(program).join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "`{from}` is not in {program}/{file}");
    write(&path, &text.replacen(from, to, 1));
}

#[test]
fn a_mistyped_catalogue_attribute_is_a_load_error_naming_file_offer_key_type_and_value() {
    let cases = [
        (
            "yearly-limit = 4\n",
            "yearly-limit = 4\nparticipating = \"nei\"\n",
            "cannot load policy `bergen`: `catalogue.toml`, offer `bergen-kino`: \
             `participating` must be a boolean, not the text \"nei\"",
        ),
        (
            "yearly-limit = 4\n",
            "yearly-limit = true\n",
            "cannot load policy `bergen`: `catalogue.toml`, offer `bergen-kino`: \
             `yearly-limit` must be an integer of at least 1, not the boolean true",
        ),
        (
            "yearly-limit = 4\n",
            "yearly-limt = 4\n",
            "cannot load policy `bergen`: `catalogue.toml`, offer `bergen-kino`: \
             `yearly-limt` is not an offer attribute declared in `[schema.offer]`",
        ),
    ];
    for (from, to, message) in cases {
        let dir = policies_copy();
        edit(dir.path(), "bergen", "catalogue.toml", from, to);
        let suite = root().join("policies/bergen/suites/eligibility.toml");
        let (code, error) = test_with_suite(dir.path(), &suite);
        assert_eq!(code, Some(2), "{to}: {error}");
        assert!(error.contains(message), "{to}: {error}");
    }
}

#[test]
fn a_mistyped_or_undeclared_config_key_is_a_load_error() {
    let cases = [
        (
            "max-age = 17",
            "max-age = \"17\"",
            "cannot load policy `bergen`: `policy.toml`, `[config]`: `max-age` must be an \
             integer of at least 0, not the text \"17\"",
        ),
        (
            "[config]\n",
            "[config]\nmax-agee = 17\n",
            "cannot load policy `bergen`: `policy.toml`, `[config]`: `max-agee` is not a \
             config key declared in `[schema.config]` of `policy.toml` (declared: \
             `leisure-per-semester`, `max-age`, `public-event-party`, `residence`)",
        ),
    ];
    for (from, to, message) in cases {
        let dir = policies_copy();
        edit(dir.path(), "bergen", "policy.toml", from, to);
        let suite = root().join("policies/bergen/suites/eligibility.toml");
        let (code, error) = test_with_suite(dir.path(), &suite);
        assert_eq!(code, Some(2), "{to}: {error}");
        assert!(error.contains(message), "{to}: {error}");
    }
}

#[test]
fn a_mistyped_suite_holder_or_offer_exits_2_naming_the_card_or_offer_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let holder = dir.path().join("holder.toml");
    write(
        &holder,
        r#"program = "albertslund"

[[holders]]
card = "TYPO-1"
birth-date = "2012-09-14"
municipality = "albertslund"
statuses = ["member:bakkens-hjerte"]
balances = { DKK = 20000 }
attributes = { daily-limit = "500" }

[[steps]]
at = "2024-05-07T16:00:00+02:00"
card = "TYPO-1"
action = "purchase"
offer = "bh-toast"
amount = 1000
expect = { allow = false, reason = "daily-limit" }
"#,
    );
    let offer = dir.path().join("offer.toml");
    write(
        &offer,
        r#"program = "bergen"

[[holders]]
card = "TYPO-2"
birth-date = "2012-05-01"
municipality = "bergen"

[[offers]]
id = "test-cinema"
category = "public-event"
location = "test-cinema"
yearly-limit = "1"

[[steps]]
at = "2024-03-01T18:00:00+01:00"
card = "TYPO-2"
action = "redeem"
offer = "test-cinema"
expect = { allow = true }
"#,
    );
    let cases = [
        (
            &holder,
            "holder `TYPO-1`: `daily-limit` must be an integer of at least 0, not the text \"500\"",
        ),
        (
            &offer,
            "offer `test-cinema`: `yearly-limit` must be an integer of at least 1, not the text \"1\"",
        ),
    ];
    for (suite, message) in cases {
        let (code, error) = test_with_suite(&root(), suite);
        assert_eq!(code, Some(2), "{error}");
        assert!(
            error.starts_with(&format!("error: cannot run suite `{}`: ", suite.display())),
            "{error}"
        );
        assert!(error.ends_with(message), "{error}");
    }
}

#[test]
fn a_mistyped_demo_holder_is_a_load_error() {
    let dir = policies_copy();
    edit(
        dir.path(),
        "albertslund",
        "holders.toml",
        "daily-limit = 6000",
        "daily-limit = \"6000\"",
    );
    let suite = root().join("policies/albertslund/suites/purchases.toml");
    let (code, error) = test_with_suite(dir.path(), &suite);
    assert_eq!(code, Some(2), "{error}");
    assert!(
        error.contains("cannot load policy `albertslund`: `holders.toml`, holder `")
            && error
                .ends_with("`daily-limit` must be an integer of at least 0, not the text \"6000\""),
        "{error}"
    );
}

#[cfg(unix)]
#[test]
fn a_program_directory_with_link_loops_fifos_or_devices_is_refused_clearly_and_never_hangs() {
    let dir = policies_copy();
    let suites = dir.path().join("policies/bergen/suites");
    // Two directories linking to each other: 2^40 paths if links were followed.
    std::fs::create_dir_all(suites.join("a")).unwrap();
    std::os::unix::fs::symlink(suites.join("a"), suites.join("a/loop")).unwrap();
    std::os::unix::fs::symlink(&suites, suites.join("a/up")).unwrap();
    let started = std::time::Instant::now();
    let out = cardrules(&["test", "--policies", "policies"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(60));

    // A suite that is a link to a device that never ends.
    std::os::unix::fs::symlink("/dev/zero", suites.join("zero.toml")).unwrap();
    let out = cardrules(&["test", "--policies", "policies"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let said = stdout(&out) + &stderr(&out);
    assert!(said.contains("zero.toml`: not a regular file"), "{said}");
    std::fs::remove_file(suites.join("zero.toml")).unwrap();

    // A FIFO named like a suite would block a reader for ever.
    let fifo = suites.join("x.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let out = cardrules(&["test", "--policies", "policies"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let said = stdout(&out) + &stderr(&out);
    assert!(said.contains("x.toml`: not a regular file"), "{said}");
}

#[cfg(unix)]
#[test]
fn links_among_the_suites_that_are_not_followed_are_named_in_a_warning() {
    let dir = policies_copy();
    let suites = dir.path().join("policies/bergen/suites");
    std::fs::create_dir_all(suites.join("a")).unwrap();
    std::os::unix::fs::symlink(suites.join("a"), suites.join("a/loop")).unwrap();
    std::os::unix::fs::symlink(suites.join("itself"), suites.join("itself")).unwrap();
    std::os::unix::fs::symlink(suites.join("gone"), suites.join("dangling")).unwrap();
    let out = cardrules(&["test", "--policies", "policies"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stderr(&out);
    for (link, why) in [
        (
            "a/loop",
            "a link to a directory; suites are not looked for through links",
        ),
        (
            "itself",
            "a link that leads to no file (a loop, or a missing target)",
        ),
        (
            "dangling",
            "a link that leads to no file (a loop, or a missing target)",
        ),
    ] {
        assert!(
            said.contains(&format!("skipping `policies/bergen/suites/{link}`: {why}")),
            "{link}: {said}"
        );
    }
}

/// Runs `cardrules decide` on `policies` with `request` on standard input and `args`
/// (no `--allow-unsigned` unless given). The requests are recorded ones, at fixed times
/// of 2024: decided as recorded (`--max-lateness none`).
fn decide_in(dir: &Path, policies: &Path, request: &str, args: &[&str]) -> Output {
    decide_bounded(
        dir,
        policies,
        request,
        &[&["--max-lateness", "none"], args].concat(),
    )
}

/// [`decide_in`] with each program's bounds on `at`, as a till's request is decided.
fn decide_bounded(dir: &Path, policies: &Path, request: &str, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardrules"))
        .args([
            "decide",
            "--policies",
            policies.to_str().unwrap(),
            "--request",
            "-",
        ])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses to start (a bad trust file, say) exits without reading its
    // request: the pipe it leaves broken is its answer, which its output then shows.
    if let Err(e) = child.stdin.take().unwrap().write_all(request.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

const KINO: &str = r#"{"program":"bergen","card":"AK-1001","action":"redeem","offer":"bergen-kino","at":"2024-03-01T18:00:00+01:00","dry-run":true}"#;

#[test]
fn decide_and_serve_refuse_unsigned_policies_given_neither_flag_nor_trust_file() {
    let dir = tempfile::tempdir().unwrap();
    let policies = root().join("policies");
    assert!(!dir.path().join("trust.toml").exists());
    let out = decide_in(dir.path(), &policies, KINO, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).is_empty(), "no decision: {}", stdout(&out));
    assert!(
        stderr(&out).contains("cannot load policy `bergen`: unsigned: no `policy.sig`"),
        "{}",
        stderr(&out)
    );
    // The same request with `--allow-unsigned` is decided: the refusal was the signature's.
    let out = decide_in(dir.path(), &policies, KINO, &["--allow-unsigned"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = cardrules(
        &[
            "serve",
            "--policies",
            policies.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--no-watch",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(!stdout(&out).contains("listening"), "{}", stdout(&out));
    let said = stderr(&out);
    assert!(
        said.contains("unsigned: no `policy.sig`") && said.contains("could be loaded"),
        "{said}"
    );
}

#[test]
fn trust_files_must_exist_and_trust_a_key_and_allow_unsigned_does_not_mix_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let policies = root().join("policies");
    let out = decide_in(dir.path(), &policies, KINO, &["--trust", "missing.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read trust file: cannot read `missing.toml`"),
        "{}",
        stderr(&out)
    );
    write(&dir.path().join("empty.toml"), "");
    let out = decide_in(dir.path(), &policies, KINO, &["--trust", "empty.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`empty.toml` trusts no key"),
        "{}",
        stderr(&out)
    );
    // Given both, a command would silently check nothing: refused.
    write(
        &dir.path().join("trust.toml"),
        "[programs]\nbergen = [\"ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]\n",
    );
    let out = decide_in(
        dir.path(),
        &policies,
        KINO,
        &["--trust", "trust.toml", "--allow-unsigned"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("cannot be used with") && stderr(&out).contains("--allow-unsigned"),
        "{}",
        stderr(&out)
    );
}

#[cfg(unix)]
#[test]
fn token_makes_a_guardian_for_its_cards_and_refuses_cards_for_other_roles() {
    let dir = tempfile::tempdir().unwrap();
    let out = cardrules(
        &[
            "token",
            "--name",
            "parent-of-bk-2002",
            "--role",
            "guardian",
            "--program",
            "albertslund",
            "--card",
            "BK-2002",
            "--card",
            "BK-2003",
            "--action",
            "top-up",
            "--action",
            "block-card",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let token = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("token: "))
        .unwrap_or_else(|| panic!("no token in {text:?}"));
    let entry = &text[text.find("[[tokens]]").expect("an entry")..];
    assert!(entry.contains("role = \"guardian\""), "{entry}");
    assert!(
        entry.contains("cards = [\"BK-2002\", \"BK-2003\"]"),
        "{entry}"
    );
    assert!(
        !entry.contains(token),
        "the entry holds the hash, not the token"
    );
    // The entry parses back as the guardian of those cards, for those actions.
    let tokens = cardrules_server::auth::Tokens::parse(entry, Path::new("auth.toml")).unwrap();
    let parent = tokens.identify(token).expect("the token is known");
    assert!(parent.is_guardian());
    assert!(
        parent
            .may_decide("albertslund", "BK-2003", "top-up")
            .is_ok()
    );
    assert!(
        parent
            .may_decide("albertslund", "BK-2001", "top-up")
            .is_err()
    );
    assert!(
        parent
            .may_decide("albertslund", "BK-2002", "purchase")
            .is_err()
    );

    // `--card` for another role, or a guardian without cards or actions: exit 2, one line.
    for (args, expected) in [
        (
            vec!["--role", "terminal", "--card", "BK-2002"],
            "`--card` is for role `guardian` only",
        ),
        (
            vec!["--role", "admin", "--card", "BK-2002"],
            "`--card` is for role `guardian` only",
        ),
        (
            vec!["--role", "guardian", "--action", "top-up"],
            "role `guardian` needs `--card`",
        ),
        (
            vec!["--role", "guardian", "--card", "BK-2002"],
            "role `guardian` needs `--action`: with every action a guardian could `purchase`",
        ),
        (
            vec![
                "--role", "guardian", "--action", "top-up", "--card", "BK-2002", "--card",
                "BK-2002",
            ],
            "`cards` lists card `BK-2002` twice",
        ),
    ] {
        let out = cardrules(
            &[
                &["token", "--name", "x", "--program", "albertslund"][..],
                &args,
            ]
            .concat(),
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        let error = stderr(&out);
        assert!(error.starts_with("error: "), "{error}");
        assert!(error.contains(expected), "{args:?}: {error}");
        assert_eq!(error.trim_end().lines().count(), 1, "{error}");
        assert!(stdout(&out).is_empty(), "no token made: {}", stdout(&out));
    }
}

#[test]
fn token_refuses_a_guardian_for_every_program() {
    // `--program '*'` made a parent's token that read and redeemed Bergen's `BK-2002` (another
    // child) beside Albertslund's.
    let dir = tempfile::tempdir().unwrap();
    for programs in [&["*"][..], &["albertslund", "bergen"]] {
        let mut args = vec!["token", "--name", "parent", "--role", "guardian"];
        for program in programs {
            args.extend(["--program", program]);
        }
        args.extend(["--card", "BK-2002", "--action", "top-up"]);
        let out = cardrules(&args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{programs:?}: {}", stdout(&out));
        let error = stderr(&out);
        assert!(
            error.starts_with("error: token `parent`: role `guardian` must name one program"),
            "{error}"
        );
        assert_eq!(error.trim_end().lines().count(), 1, "{error}");
        assert!(stdout(&out).is_empty(), "no token made: {}", stdout(&out));
    }
}

#[test]
fn keygen_writes_a_secret_only_its_owner_can_read_and_never_overwrites_a_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = cardrules(&["keygen", "--out", "bergen"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let secret = dir.path().join("bergen.key");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let key = std::fs::read_to_string(&secret).unwrap();
    assert!(key.starts_with("ed25519-secret:"));
    let public = std::fs::read_to_string(dir.path().join("bergen.pub")).unwrap();
    for existing in ["bergen.key", "bergen.pub"] {
        if existing == "bergen.pub" {
            std::fs::remove_file(&secret).unwrap();
            write(&secret, &key);
        }
        let out = cardrules(&["keygen", "--out", "bergen"], dir.path());
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("exists already; not overwriting a key"),
            "{}",
            stderr(&out)
        );
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), key);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("bergen.pub")).unwrap(),
            public
        );
    }
    // Only the public key there: the secret is not written beside it either.
    std::fs::remove_file(&secret).unwrap();
    let out = cardrules(&["keygen", "--out", "bergen"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(!secret.exists());
}

#[test]
fn a_signed_program_refuses_any_edit_to_its_files_and_demo_holders_never_mint_money() {
    let dir = policies_copy();
    let policies = dir.path().join("policies");
    let program = policies.join("albertslund");
    let out = cardrules(&["keygen", "--out", "kommune"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let public = std::fs::read_to_string(dir.path().join("kommune.pub")).unwrap();
    write(
        &dir.path().join("trust.toml"),
        &format!("[programs]\nalbertslund = [\"{}\"]\n", public.trim()),
    );
    let sign = || {
        let out = cardrules(
            &["sign", "--key", "kommune.key", program.to_str().unwrap()],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    let top_up = |card: &str| {
        let request = format!(
            r#"{{"program":"albertslund","card":"{card}","action":"top-up","amount":1000,"at":"2024-05-07T16:00:00+02:00","dry-run":true}}"#
        );
        // `trust.toml` in the working directory is read by default.
        decide_in(dir.path(), &policies, &request, &[])
    };
    let signed = sign();
    for file in [
        "albertslund.wasm",
        "catalogue.toml",
        "holders.toml",
        "policy.toml",
        "suites/account.toml",
        "suites/lost-card.toml",
    ] {
        assert!(signed.contains(file), "{file} is not signed: {signed}");
    }
    // The shipped demo holders start with money: not where signatures are required.
    let out = top_up("BK-2002");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "`holders.toml` gives demo card `BK-2001` a starting balance of `DKK`: demo holders \
             never create balances where signatures are required"
        ),
        "{}",
        stderr(&out)
    );
    // Without the balances, signed again, it serves.
    let holders_path = program.join("holders.toml");
    let holders: String = std::fs::read_to_string(&holders_path)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("balances"))
        .map(|line| format!("{line}\n"))
        .collect();
    write(&holders_path, &holders);
    sign();
    let out = top_up("BK-2002");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["allow"], true);

    // The attack of issue 17: a card with 9×10¹⁴ øre added to the signed holders.
    let rich = format!(
        "{holders}\n[[holders]]\ncard = \"RICH\"\nbirth-date = \"2010-01-01\"\nmunicipality = \"albertslund\"\nbalances = {{ DKK = 900000000000000 }}\n"
    );
    let edits: Vec<(&str, Option<String>, &str)> = vec![
        (
            "holders.toml",
            Some(rich),
            "`holders.toml` was changed after signing",
        ),
        (
            "catalogue.toml",
            Some(
                std::fs::read_to_string(program.join("catalogue.toml")).unwrap()
                    + "\n# a price edited\n",
            ),
            "`catalogue.toml` was changed after signing",
        ),
        (
            "suites/account.toml",
            None,
            "`suites/account.toml` was removed after signing",
        ),
        (
            "suites/weaker.toml",
            Some("program = \"albertslund\"\n".into()),
            "`suites/weaker.toml` was added after signing",
        ),
    ];
    for (file, contents, expected) in edits {
        let path = program.join(file);
        let original = std::fs::read(&path).ok();
        match &contents {
            Some(text) => write(&path, text),
            None => std::fs::remove_file(&path).unwrap(),
        }
        let out = top_up("RICH");
        assert_eq!(out.status.code(), Some(2), "{file}: {}", stdout(&out));
        assert!(
            stderr(&out).contains(&format!("cannot load policy `albertslund`: {expected}")),
            "{file}: {}",
            stderr(&out)
        );
        match original {
            Some(bytes) => std::fs::write(&path, bytes).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
        assert_eq!(top_up("BK-2002").status.code(), Some(0), "{file} restored");
    }
    // Signing the rich holder does not help: demo holders never create balances.
    write(
        &holders_path,
        &format!(
            "{holders}\n[[holders]]\ncard = \"RICH\"\nbirth-date = \"2010-01-01\"\nmunicipality = \"albertslund\"\nbalances = {{ DKK = 900000000000000 }}\n"
        ),
    );
    sign();
    let out = top_up("RICH");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("gives demo card `RICH` a starting balance of `DKK`"),
        "{}",
        stderr(&out)
    );
    // A signature of the older format asks to be made again.
    write(
        &program.join("policy.sig"),
        "program = \"albertslund\"\ncomponent = \"sha256:00\"\nmanifest = \"sha256:00\"\nkey = \"ed25519:AAAA\"\nsignature = \"AA==\"\n",
    );
    let out = top_up("BK-2002");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("signed by an older `cardrules sign`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_program_directory_runs_its_suites_with_its_parent_as_the_policies_directory() {
    let last_line = |out: &Output| stdout(out).lines().last().unwrap_or_default().to_string();
    // Bergen's suites named as suites: the total a program directory must match.
    let by_suites = cardrules(
        &["test", "--policies", "policies", "policies/bergen/suites"],
        &root(),
    );
    assert_eq!(by_suites.status.code(), Some(0), "{}", stdout(&by_suites));
    let total = last_line(&by_suites);
    assert!(total.ends_with(" passed, 0 failed"), "{total}");

    // The program directory: its suites, not its manifest and catalogue read as suites.
    let out = cardrules(&["test", "policies/bergen"], &root());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert_eq!(last_line(&out), total, "{text}");
    assert!(text.contains("policies/bergen/suites/"), "{text}");

    // Elsewhere, with no `./policies`: the program's parent is the policies directory.
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("elsewhere").join("bergen");
    copy_dir(&root().join("policies").join("bergen"), &program);
    let out = cardrules(&["test", "elsewhere/bergen"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(last_line(&out), total);
    // And from inside it.
    let out = cardrules(&["test", "."], &program);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(last_line(&out), total);

    // A program directory without suites says so.
    std::fs::remove_dir_all(program.join("suites")).unwrap();
    let out = cardrules(&["test", "elsewhere/bergen"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("program directory `elsewhere/bergen` has no `suites/`"),
        "{}",
        stderr(&out)
    );
}

/// Coverage finds the rule a reduced suite never sees failing, lists it, and
/// `--min-coverage` fails the run for it; the whole shipped suites reach 100 %.
#[test]
fn coverage_finds_a_rule_a_reduced_suite_never_fails_and_min_coverage_fails_it() {
    let temp = tempfile::tempdir().unwrap();
    let policies = temp.path().join("policies");
    copy_dir(&root().join("policies/bergen"), &policies.join("bergen"));
    let complete = cardrules(
        &[
            "test",
            "--coverage",
            "--min-coverage",
            "100",
            "policies/bergen",
        ],
        temp.path(),
    );
    let out = String::from_utf8_lossy(&complete.stdout);
    assert_eq!(complete.status.code(), Some(0), "{out}");
    assert!(
        out.contains("coverage `bergen`: 8 of 8 checks seen both passing and failing"),
        "{out}"
    );

    // The quota suite without its steps that run out of visits.
    let suite = policies.join("bergen/suites/party-and-quota.toml");
    let text = std::fs::read_to_string(&suite).unwrap();
    let reduced: Vec<&str> = text
        .split("\n[[steps]]")
        .filter(|step| !step.contains("reason = \"quota-exhausted\""))
        .collect();
    assert!(reduced.len() < text.split("\n[[steps]]").count());
    std::fs::write(&suite, reduced.join("\n[[steps]]")).unwrap();
    let json = temp.path().join("coverage.json");
    let reduced = cardrules(
        &[
            "test",
            "--coverage",
            "--coverage-json",
            json.to_str().unwrap(),
            "--min-coverage",
            "100",
            "policies/bergen",
        ],
        temp.path(),
    );
    let out = String::from_utf8_lossy(&reduced.stdout);
    assert_eq!(reduced.status.code(), Some(1), "{out}");
    assert!(
        out.contains("never seen failing: `yearly-limit` (`quota-exhausted`)"),
        "{out}"
    );
    assert!(out.contains("below the minimum of 100 %"), "{out}");
    // Every step passed: only the coverage failed the run.
    assert!(out.trim_end().ends_with(" passed, 0 failed"), "{out}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let checks = written["programs"][0]["checks"].as_array().unwrap();
    let yearly = checks.iter().find(|c| c["rule"] == "yearly-limit").unwrap();
    assert_eq!(yearly["failed"], 0);
    assert!(yearly["passed"].as_u64().unwrap() > 0);
}
