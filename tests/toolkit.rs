//! A municipality's own repository, with the `cardrules` binary alone: the built binary
//! is copied into an empty directory outside the repository, with `HOME` and the cache
//! there too, and in Rust, Python and JavaScript a new program is scaffolded, given a
//! counting rule and a suite step that denies on it, built, tested at 100 % coverage,
//! signed, and published to a real `serve --auth --trust`, which then decides with the
//! new rule; an unsigned upload and one whose suite fails are refused, and the published
//! version keeps serving.
//!
//! The toolchains come from the package registries on first use (crates.io for the Rust
//! SDK's dependencies, PyPI, npm). Without `python3.11`, `node` and `npm`, a language is
//! skipped with a line saying so — unless `CARDRULES_TEST_LANGUAGES=require` (CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use serde_json::{Value, json};

mod support;
use support::files::root;
use support::server::{Server, call};
use support::toolchains::{runs, skip};

/// An empty place outside the repository holding a copy of the binary, its own `HOME` and
/// cache. The Rust toolchain stays the machine's (`CARGO_HOME`, `RUSTUP_HOME`), as it
/// would be a municipality's.
struct Outside {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Outside {
    fn new() -> Outside {
        let dir = tempfile::Builder::new()
            .prefix("municipality-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        assert!(!dir.path().starts_with(root()));
        let bin = dir.path().join("bin/cardrules");
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_cardrules"), &bin).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::create_dir_all(dir.path().join("repo")).unwrap();
        Outside { dir, bin }
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn command(&self) -> Command {
        let real_home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let mut command = Command::new(&self.bin);
        command
            .current_dir(self.repo())
            .env("HOME", self.dir.path().join("home"))
            .env("CARDRULES_CACHE", self.dir.path().join("cache"))
            .env_remove("XDG_CACHE_HOME")
            .env_remove("CARDRULES_PYTHON_TOOLCHAIN")
            .env_remove("CARGO_TARGET_DIR")
            .env(
                "CARGO_HOME",
                std::env::var_os("CARGO_HOME").unwrap_or_else(|| real_home.join(".cargo").into()),
            )
            .env(
                "RUSTUP_HOME",
                std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| real_home.join(".rustup").into()),
            );
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs and expects exit 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`cardrules {}` failed ({}):\n{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "`{}` has no {from:?}:\n{text}",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn append(path: &Path, more: &str) {
    let mut text = std::fs::read_to_string(path).unwrap();
    text.push_str(more);
    std::fs::write(path, text).unwrap();
}

/// The municipality's edit: at most two visits per card per calendar year, with its
/// reason, its messages and the suite steps that prove it both ways.
fn add_yearly_visit_rule(program: &Path, language: &str) {
    match language {
        "rust" => {
            let lib = program.join("src/lib.rs");
            edit(
                &lib,
                r#"&[OK, "card-inactive", UNKNOWN_ACTION, BAD_REQUEST],"#,
                r#"&[OK, "card-inactive", "visit-limit", UNKNOWN_ACTION, BAD_REQUEST],"#,
            );
            edit(
                &lib,
                r#"    check("card-active", active, "card-inactive")?;"#,
                r#"    check("card-active", active, "card-inactive")?;
    // 2. At most two visits per card per calendar year.
    let used = ledger::count_in(Some(&req.holder.card), VISITS, Period::Year, req.at);
    within("yearly-visits", "visit-limit", used, 2, Until::EndOf(Period::Year, req.at))?;"#,
            );
        }
        "python" => {
            let source = program.join("policy.py");
            edit(
                &source,
                "    Outcome,\n",
                "    Outcome,\n    Period,\n    Until,\n    ledger,\n    within,\n",
            );
            edit(
                &source,
                r#"[OK, "card-inactive", UNKNOWN_ACTION, BAD_REQUEST]"#,
                r#"[OK, "card-inactive", "visit-limit", UNKNOWN_ACTION, BAD_REQUEST]"#,
            );
            edit(
                &source,
                r#"    check("card-active", req.holder.state == CardState.ACTIVE, "card-inactive")
"#,
                r#"    check("card-active", req.holder.state == CardState.ACTIVE, "card-inactive")
    # 2. At most two visits per card per calendar year.
    used = ledger.count_in(req.holder.card, VISITS, Period.YEAR, req.at)
    within("yearly-visits", "visit-limit", used, 2, Until.end_of(Period.YEAR, req.at))
"#,
            );
        }
        "js" => {
            let source = program.join("policy.js");
            edit(
                &source,
                "  required,\n}",
                "  required, Until, ledger, within,\n}",
            );
            edit(
                &source,
                "[OK, 'card-inactive', UNKNOWN_ACTION, BAD_REQUEST]",
                "[OK, 'card-inactive', 'visit-limit', UNKNOWN_ACTION, BAD_REQUEST]",
            );
            edit(
                &source,
                "  check('card-active', req.holder.state === 'active', 'card-inactive');\n",
                "  check('card-active', req.holder.state === 'active', 'card-inactive');
  // 2. At most two visits per card per calendar year.
  const used = ledger.countIn(req.holder.card, VISITS, 'year', req.at);
  within('yearly-visits', 'visit-limit', used, 2, Until.endOf('year', req.at));\n",
            );
        }
        other => panic!("{other}"),
    }
    append(
        &program.join("policy.toml"),
        "\n[messages.visit-limit]\nnb = \"Du har brukt årets to besøk.\"\nen = \"This year's two visits are used.\"\n",
    );
    append(
        &program.join("suites/visits.toml"),
        r#"
[[steps]]
name = "a second visit in the year is allowed"
at = "2024-05-01T12:00:00Z"
card = "S-1"
action = "visit"
offer = "town-museum"
expect = { allow = true, reason = "ok" }

[[steps]]
name = "a third visit in the year is refused"
at = "2024-06-01T12:00:00Z"
card = "S-1"
action = "visit"
offer = "town-museum"
expect = { allow = false, reason = "visit-limit" }
"#,
    );
}

/// A visit by `card` at `at`, through the city host.
fn visit(server: &Server, token: &str, card: &str, id: &str, at: &str) -> Value {
    let request = json!({
        "id": id, "program": "fritid", "card": card, "action": "visit", "offer": "town-museum",
        "at": at,
    });
    let (status, answer) = call(
        server,
        Some(token),
        "POST",
        "/v1/decisions",
        &request.to_string(),
    );
    assert_eq!(status, 200, "{answer}\n{}", server.log());
    answer
}

fn a_municipality_authors_and_publishes(language: &str) {
    let outside = Outside::new();
    let repo = outside.repo();
    let made = outside.ok(&[
        "new",
        "fritid",
        "--lang",
        language,
        "--time-zone",
        "Europe/Oslo",
        "--languages",
        "nb,en",
    ]);
    assert!(made.contains("cardrules build"), "{made}");
    let program = repo.join("policies/fritid");
    // Self-contained: nothing outside the program directory.
    let top: Vec<String> = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, ["policies"], "`new` wrote outside `policies/`");
    add_yearly_visit_rule(&program, language);

    // From a clean cache (the toolchain installed on the way), then again: the README's
    // figures come from these lines (`--nocapture`).
    for which in ["first build, clean cache", "rebuild"] {
        let built = outside.run(&["build", "fritid"]);
        let err = String::from_utf8_lossy(&built.stderr);
        assert!(built.status.success(), "{language}: build failed:\n{err}");
        let line = err
            .lines()
            .rev()
            .find(|l| l.starts_with("built "))
            .unwrap_or("");
        eprintln!("{language}, {which}: {line}");
    }
    let tested = outside.ok(&[
        "test",
        "--allow-unsigned",
        "--coverage",
        "--min-coverage",
        "100",
        "policies/fritid",
    ]);
    assert!(
        tested.trim_end().ends_with("4 passed, 0 failed"),
        "{tested}"
    );

    // Signed by the municipality's key; the city trusts that key for `fritid`.
    outside.ok(&["keygen", "--out", "fritid"]);
    outside.ok(&["sign", "--key", "fritid.key", "policies/fritid"]);
    let public = std::fs::read_to_string(repo.join("fritid.pub")).unwrap();

    // The city host: its own directory, nothing of the program on its disk yet.
    let city = Arc::new(tempfile::tempdir().unwrap());
    std::fs::create_dir_all(city.path().join("policies")).unwrap();
    std::fs::write(
        city.path().join("trust.toml"),
        format!("[programs]\nfritid = [\"{}\"]\n", public.trim()),
    )
    .unwrap();
    let token = support::server::cardrules(&[
        "token",
        "--name",
        "fritid-registrar",
        "--role",
        "registrar",
        "--program",
        "fritid",
    ]);
    let secret = token
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .trim()
        .to_string();
    let entry: String = token
        .lines()
        .skip_while(|l| !l.starts_with("[[tokens]]"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(city.path().join("auth.toml"), entry).unwrap();
    std::fs::write(repo.join("city.token"), &secret).unwrap();
    let trust = city.path().join("trust.toml").display().to_string();
    let auth = city.path().join("auth.toml").display().to_string();
    let server = Server::start_with(city.clone(), &["--trust", &trust, "--auth", &auth]);

    let published = outside.run(&[
        "publish",
        "--to",
        &server.base,
        "--token",
        "city.token",
        "policies/fritid",
    ]);
    assert_eq!(
        published.status.code(),
        Some(0),
        "{language}: publish failed:\n{}\n{}",
        String::from_utf8_lossy(&published.stderr),
        server.log()
    );
    assert!(String::from_utf8_lossy(&published.stdout).contains("active: `fritid`"));
    // Written for the next start too.
    assert!(city.path().join("policies/fritid/policy.sig").is_file());

    // The city decides with the new rule: two visits this year, the third refused (all at
    // one moment of now, so that no year ends between them).
    let now = jiff::Timestamp::now().to_string();
    assert_eq!(visit(&server, &secret, "DEMO-1", "v1", &now)["allow"], true);
    assert_eq!(visit(&server, &secret, "DEMO-1", "v2", &now)["allow"], true);
    let third = visit(&server, &secret, "DEMO-1", "v3", &now);
    assert_eq!(third["allow"], false, "{third}");
    assert_eq!(third["reason"], "visit-limit", "{third}");

    // An unsigned upload is refused; the published version keeps serving.
    let unsigned = outside.dir.path().join("unsigned");
    support::files::copy_dir(&program, &unsigned.join("fritid"));
    std::fs::remove_file(unsigned.join("fritid/policy.sig")).unwrap();
    let refused = outside.run(&[
        "publish",
        "--to",
        &server.base,
        "--token",
        "city.token",
        unsigned.join("fritid").to_str().unwrap(),
    ]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // A signed version whose suite fails is refused too.
    let failing = outside.dir.path().join("failing");
    support::files::copy_dir(&program, &failing.join("fritid"));
    edit(
        &failing.join("fritid/suites/visits.toml"),
        r#"expect = { allow = false, reason = "visit-limit" }"#,
        r#"expect = { allow = true, reason = "ok" }"#,
    );
    outside.ok(&[
        "sign",
        "--key",
        "fritid.key",
        failing.join("fritid").to_str().unwrap(),
    ]);
    let refused = outside.run(&[
        "publish",
        "--to",
        &server.base,
        "--token",
        "city.token",
        failing.join("fritid").to_str().unwrap(),
    ]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let fourth = visit(&server, &secret, "DEMO-1", "v4", &now);
    assert_eq!(fourth["reason"], "visit-limit", "{fourth}");
    assert_eq!(
        fourth["policy"], third["policy"],
        "another version answered"
    );
    // And what is on the city's disk is still the published version.
    let on_disk =
        std::fs::read_to_string(city.path().join("policies/fritid/suites/visits.toml")).unwrap();
    assert!(on_disk.contains(r#"reason = "visit-limit""#));
}

#[test]
fn a_rust_municipality_authors_builds_signs_and_publishes_outside_the_repository() {
    a_municipality_authors_and_publishes("rust");
}

#[test]
fn a_python_municipality_authors_builds_signs_and_publishes_outside_the_repository() {
    if !runs("python3.11", &["--version"]) {
        return skip("python3.11 is not installed");
    }
    a_municipality_authors_and_publishes("python");
}

#[test]
fn a_js_municipality_authors_builds_signs_and_publishes_outside_the_repository() {
    if !runs("node", &["--version"]) || !runs("npm", &["--version"]) {
        return skip("node and npm are not installed");
    }
    a_municipality_authors_and_publishes("js");
}

/// The shipped Python and JavaScript examples, copied outside the repository, build with
/// the binary alone and pass their suites at full coverage.
fn the_examples_build_outside_the_repository(language: &str) {
    let outside = Outside::new();
    support::files::copy_dir(
        &root().join("examples").join(language).join("policies"),
        &outside.repo().join("policies"),
    );
    for program in std::fs::read_dir(outside.repo().join("policies")).unwrap() {
        let program = program.unwrap().path();
        if !program.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&program).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "wasm") {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    outside.ok(&["build"]);
    let tested = outside.ok(&[
        "test",
        "--allow-unsigned",
        "--coverage",
        "--min-coverage",
        "100",
    ]);
    assert!(tested.trim_end().ends_with(" 0 failed"), "{tested}");
}

#[test]
fn the_python_examples_build_outside_the_repository() {
    if !runs("python3.11", &["--version"]) {
        return skip("python3.11 is not installed");
    }
    the_examples_build_outside_the_repository("python");
}

#[test]
fn the_js_examples_build_outside_the_repository() {
    if !runs("node", &["--version"]) || !runs("npm", &["--version"]) {
        return skip("node and npm are not installed");
    }
    the_examples_build_outside_the_repository("js");
}
