//! `cardrules new`: a new program, a project of the municipality's own under
//! `policies/PROGRAM/` that `cardrules build` builds and `cardrules test` passes with no
//! other edit: in Rust a crate depending on `cardrules-sdk` by version, in Python a
//! `pyproject.toml` depending on `cardrules-sdk`, in JavaScript a `package.json`
//! depending on `@cardrules/sdk`. Inside a cardrules checkout (a `guest-rules/programs/`
//! here, or `--guests`), a Rust program's crate goes there instead, beside the shipped
//! programs, and builds with the checkout's `cargo build --release`.
//! The starter rule book has one action, `visit`, with one rule, proved both ways.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::builder::Language;

/// What to scaffold.
pub struct Scaffold {
    pub program: String,
    pub time_zone: String,
    pub languages: Vec<String>,
    /// Where the program's directory goes (`policies/`).
    pub policies: PathBuf,
    /// Where the guest crate goes for Rust inside a cardrules checkout
    /// (`guest-rules/programs/`); `None`: there if it exists, else the program directory
    /// is the crate.
    pub guests: Option<PathBuf>,
    /// The policy's language.
    pub lang: Language,
}

/// A starter message per language for each starter reason; English for languages it
/// does not know, for the municipality to translate.
fn message(reason: &str, language: &str) -> &'static str {
    match (reason, language) {
        ("ok", "nb") => "Velkommen!",
        ("ok", "da") => "Velkommen!",
        ("ok", "nl") => "Welkom!",
        ("ok", _) => "Welcome!",
        ("card-inactive", "nb") => "Kortet er ikke aktivt.",
        ("card-inactive", "da") => "Kortet er ikke aktivt.",
        ("card-inactive", "nl") => "De kaart is niet actief.",
        ("card-inactive", _) => "The card is not active.",
        ("unknown-action", _) => "This action is not part of the program.",
        (_, _) => "The request is incomplete.",
    }
}

const REASONS: &[&str] = &["ok", "card-inactive", "unknown-action", "bad-request"];

/// Checks the names, then writes both directories; refuses to touch existing ones.
pub fn create(s: &Scaffold) -> anyhow::Result<Vec<PathBuf>> {
    let valid = !s.program.is_empty()
        && s.program.len() <= 40
        && s.program.starts_with(|c: char| c.is_ascii_lowercase())
        && s.program
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.program.ends_with('-');
    if !valid {
        bail!(
            "invalid program name `{}`: use lowercase letters, digits and hyphens, starting with a letter",
            s.program
        );
    }
    if ["sdk", "floor", "hostile"].contains(&s.program.as_str()) {
        bail!("invalid program name `{}`: the name is taken", s.program);
    }
    jiff::tz::TimeZone::get(&s.time_zone)
        .with_context(|| format!("unknown time zone `{}`", s.time_zone))?;
    if s.languages.is_empty() {
        bail!("`--languages` needs at least one language");
    }
    for language in &s.languages {
        let valid =
            (2..=3).contains(&language.len()) && language.chars().all(|c| c.is_ascii_lowercase());
        if !valid {
            bail!("invalid language `{language}`: use a two- or three-letter code such as `nb`");
        }
    }
    let program_dir = s.policies.join(&s.program);
    if program_dir.exists() {
        bail!("`{}` exists already", program_dir.display());
    }
    let checkout_guests = PathBuf::from("guest-rules/programs");
    let guests = s
        .guests
        .clone()
        .or_else(|| checkout_guests.is_dir().then_some(checkout_guests));
    let mut files: Vec<(PathBuf, String)> = match (s.lang, guests) {
        (Language::Rust, Some(guests)) => {
            let crate_dir = guests.join(&s.program);
            if crate_dir.exists() {
                bail!("`{}` exists already", crate_dir.display());
            }
            if !guests.is_dir() {
                bail!(
                    "`{}` is not a directory: give `--guests` the `guest-rules/programs` of a cardrules checkout, or leave it out",
                    guests.display()
                );
            }
            vec![
                (crate_dir.join("Cargo.toml"), cargo_toml(&s.program)),
                (crate_dir.join("src/lib.rs"), lib_rs(&s.program)),
            ]
        }
        (Language::Rust, None) => vec![
            (
                program_dir.join("Cargo.toml"),
                project_cargo_toml(&s.program),
            ),
            (program_dir.join("src/lib.rs"), lib_rs(&s.program)),
        ],
        (Language::Js, _) => vec![
            (program_dir.join("policy.js"), policy_js(&s.program)),
            (program_dir.join("package.json"), package_json(&s.program)),
        ],
        (Language::Python, _) => vec![
            (program_dir.join("policy.py"), policy_py(&s.program)),
            (
                program_dir.join("pyproject.toml"),
                pyproject_toml(&s.program),
            ),
        ],
    };
    files.extend([
        (program_dir.join("policy.toml"), policy_toml(s)),
        (program_dir.join("catalogue.toml"), CATALOGUE.to_string()),
        (program_dir.join("holders.toml"), HOLDERS.to_string()),
        (program_dir.join("suites/visits.toml"), suite(&s.program)),
    ]);
    for (path, text) in &files {
        write_new(path, text)?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))
}

fn cargo_toml(program: &str) -> String {
    format!(
        r#"[package]
name = "{program}"
description = "The cardrules policy of program `{program}`"
edition.workspace = true
version.workspace = true
license.workspace = true

[lib]
crate-type = ["cdylib"]

[dependencies]
cardrules-sdk.workspace = true
"#
    )
}

/// A Rust program of the municipality's own: a crate of its own workspace (also inside
/// another repository's), the `cardrules-sdk` crate by version, and the release profile
/// that makes small components.
fn project_cargo_toml(program: &str) -> String {
    format!(
        r#"[package]
name = "{program}"
description = "The cardrules policy of program `{program}`"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
cardrules-sdk = "{sdk}"

# Small, fast components: the host instantiates a policy afresh for every decision.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true

# A workspace of its own, wherever the program directory lies.
[workspace]
"#,
        sdk = crate::kit::RUST_SDK_VERSION,
    )
}

/// A Python program's project: the SDK it is written against, for editors and type
/// checkers (`cardrules build` bundles the SDK the binary carries).
fn pyproject_toml(program: &str) -> String {
    format!(
        r#"[project]
name = "{program}"
description = "The cardrules policy of program `{program}`"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["cardrules-sdk=={sdk}"]

# Built by `cardrules build` (componentize-py), not by a Python build backend: this file
# names the SDK for editors and type checkers.
[tool.cardrules]
module = "policy"
"#,
        sdk = crate::kit::PYTHON_SDK_VERSION,
    )
}

/// A JavaScript program's project: the SDK it is written against, for editors (the SDK's
/// JSDoc); `cardrules build` bundles the SDK the binary carries.
fn package_json(program: &str) -> String {
    format!(
        r#"{{
  "name": "{program}",
  "description": "The cardrules policy of program `{program}`",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "main": "policy.js",
  "dependencies": {{
    "@cardrules/sdk": "{sdk}"
  }}
}}
"#,
        sdk = crate::kit::JS_SDK_VERSION,
    )
}

fn lib_rs(program: &str) -> String {
    let name = program.replace('-', "_");
    let kind = name
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<String>();
    format!(
        r#"//! Program `{program}`: the starter rule book made by `cardrules new`. Each action is a
//! function returning a `Rule`; its rules are checked in order and the first that fails
//! gives the reason. Write your municipality's rules here, one `check` per rule (or
//! `within` for a rule that counts against a limit).
//!
//! Every rule is recorded as it is checked, so a decision explains itself: when a request
//! asks to `explain`, `decide` gives it the checks that ran, in order, e.g.
//! `{{ rule = "card-active", passed = false, reason = "card-inactive" }}`.
//!
//! Policies are `no_std`: they import nothing but the policy world (no clock, files or
//! randomness). The SDK's prelude brings `String`, `Vec`, `format!` and the rest of
//! `alloc`, an allocator and a panic handler.

#![no_std]

use cardrules_sdk::prelude::*;

const PROGRAM: &str = "{program}";
const VERSION: &str = "0.1.0";
/// Counts a card's visits (a counter of the ledger).
const VISITS: &str = "visits";

struct {kind};

impl Policy for {kind} {{
    fn describe() -> PolicyInfo {{
        policy_info(
            PROGRAM,
            VERSION,
            &["visit"],
            &[OK, "card-inactive", UNKNOWN_ACTION, BAD_REQUEST],
        )
    }}

    fn evaluate(req: Request) -> Decision {{
        let outcome = match req.action.as_str() {{
            "visit" => visit(&req),
            _ => Err(deny(UNKNOWN_ACTION)),
        }};
        // Attaches the checks when the request asks to explain.
        decide(&req, outcome)
    }}
}}

/// A visit to an offer of the catalogue.
fn visit(req: &Request) -> Rule {{
    // A visit is to an offer (the host has checked that it is in the catalogue).
    required(&req.offer)?;
    // 1. The card is active: the check `card-active`, denied with `card-inactive`.
    let active = req.holder.state == CardState::Active;
    check("card-active", active, "card-inactive")?;
    // Allowed: one person, free of charge; the visit is counted.
    Ok(allow().admitted(1).price(0).count(VISITS, 1))
}}

export_policy!({kind});
"#
    )
}

fn policy_js(program: &str) -> String {
    format!(
        r#"// Program `{program}`: the starter rule book made by `cardrules new --lang js`. Each
// action is a function; its rules are checked in order and the first that fails gives
// the reason. Write your municipality's rules here, one `check` per rule (or `within` for
// a rule that counts against a limit). The SDK is documented in sdk/js/README.md.
//
// Every rule is recorded as it is checked, so a decision explains itself: when a request
// asks to `explain`, `decide` gives it the checks that ran, in order, e.g.
// {{ rule: 'card-active', passed: false, reason: 'card-inactive' }}.
//
// A policy imports nothing but the policy world: no clock (use `req.at`, `req.local` and
// the SDK's `calendar`), no randomness, files or console.
//
// Build: `cardrules build --policies <this directory's parent> {program}`.

import {{
  BAD_REQUEST, OK, UNKNOWN_ACTION, allow, check, count, decide, deny, describing, policyInfo,
  required,
}} from '@cardrules/sdk';

const PROGRAM = '{program}';
const VERSION = '0.1.0';
/** Counts a card's visits (a counter of the ledger). */
const VISITS = 'visits';

export const describe = describing(() =>
  policyInfo(PROGRAM, VERSION, ['visit'], [OK, 'card-inactive', UNKNOWN_ACTION, BAD_REQUEST]),
);

export const evaluate = (req) =>
  decide(req, () => {{
    switch (req.action) {{
      case 'visit':
        return visit(req);
      default:
        return deny(UNKNOWN_ACTION);
    }}
  }});

/** A visit to an offer of the catalogue. */
function visit(req) {{
  // A visit is to an offer (the host has checked that it is in the catalogue).
  required(req.offer);
  // 1. The card is active: the check `card-active`, denied with `card-inactive`.
  check('card-active', req.holder.state === 'active', 'card-inactive');
  // Allowed: one person, free of charge; the visit is counted.
  return allow({{ admitted: 1, price: 0, effects: [count(VISITS, 1)] }});
}}
"#
    )
}

fn policy_py(program: &str) -> String {
    format!(
        r#""""Program `{program}`: the starter rule book made by `cardrules new --lang python`.

Each action is a function; its rules are checked in order and the first that fails gives
the reason. Write your municipality's rules here, one `check` per rule (or `within` for a
rule that counts against a limit). The SDK is documented in sdk/python/README.md.

Every rule is recorded as it is checked, so a decision explains itself: when a request
asks to `explain`, `decide` gives it the checks that ran, in order, e.g.
`Check(rule="card-active", passed=False, reason="card-inactive")`.

A policy imports nothing but the policy world: no clock (use `req.at`, `req.local` and the
SDK's `calendar`), no randomness, files or printing.

Build: `cardrules build --policies <this directory's parent> {program}`.
"""

from cardrules_sdk import (
    BAD_REQUEST,
    OK,
    UNKNOWN_ACTION,
    CardState,
    Decision,
    Outcome,
    Policy,
    PolicyInfo,
    Request,
    allow,
    check,
    decide,
    deny,
    policy_info,
    required,
)

PROGRAM = "{program}"
VERSION = "0.1.0"
#: Counts a card's visits (a counter of the ledger).
VISITS = "visits"


def visit(req: Request) -> Outcome:
    """A visit to an offer of the catalogue."""
    # A visit is to an offer (the host has checked that it is in the catalogue).
    required(req.offer)
    # 1. The card is active: the check `card-active`, denied with `card-inactive`.
    check("card-active", req.holder.state == CardState.ACTIVE, "card-inactive")
    # Allowed: one person, free of charge; the visit is counted.
    return allow().admitted(1).price(0).count(VISITS, 1)


def unknown_action(req: Request) -> Outcome:
    return deny(UNKNOWN_ACTION)


ACTIONS = {{"visit": visit}}


class WitWorld(Policy):
    """The exports componentize-py binds to the world `policy`."""

    def describe(self) -> PolicyInfo:
        return policy_info(
            PROGRAM, VERSION, ACTIONS.keys(), [OK, "card-inactive", UNKNOWN_ACTION, BAD_REQUEST]
        )

    def evaluate(self, req: Request) -> Decision:
        return decide(req, ACTIONS.get(req.action, unknown_action))
"#
    )
}

fn policy_toml(s: &Scaffold) -> String {
    let languages = s
        .languages
        .iter()
        .map(|l| format!("\"{l}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        r#"# Program `{program}`, made by `cardrules new`: the manifest the host loads.
program = "{program}"
name = "{program}"
time-zone = "{zone}"
languages = [{languages}]
component = "{program}.wasm"
# The assets effects may name; an effect naming another is refused (policy-error).
assets = []
# How late a till may report a request (its `at` before the host's clock: a till that
# was offline sends its backlog), and how far ahead of it a clock may run; a guardian asks
# at now, within the skew. Outside them a request is a 400. Suites decide their own times.
max-lateness = "72h"
max-skew = "5m"

# What a card's allowances ask (`GET …/cards/{{card}}/allowances`): `visit` for every
# offer of the catalogue; `per-card = [...]` names actions asked once, without an offer.
[allowances]
per-offer = ["visit"]

[limits]
fuel = 10_000_000
deadline-ms = 500

[config]

# What the policy reads from offers, holders and `[config]`, typed. The host refuses an
# undeclared key, or a value of another type, when it loads the program or registers a
# holder. Declare each key the policy reads, for example:
#   [schema.offer.yearly-limit]    # an offer attribute, read with `attr_int`
#   type = "integer"               # "text", "integer" or "boolean"
#   min = 1                        # integers: optional `min` and `max`
#   required = false               # the default: the policy has a default when absent
#   doc = "visits per card per calendar year"
#   [schema.holder.school]         # a holder attribute, read with `attr_text`
#   type = "text"
#   one-of = ["north", "south"]    # text: optional allowed words
#   [schema.config.max-age]        # a `[config]` key, read with `config_int`
#   type = "integer"
[schema.offer]

[schema.holder]

[schema.config]
"#,
        program = s.program,
        zone = s.time_zone,
    );
    for reason in REASONS {
        out.push_str(&format!("\n[messages.{reason}]\n"));
        for language in &s.languages {
            out.push_str(&format!("{language} = \"{}\"\n", message(reason, language)));
        }
    }
    out
}

const CATALOGUE: &str = r#"# The program's offers; any key beyond the named ones is an attribute.
[[offers]]
id = "town-museum"
name = "The town museum"
provider = "The town"
category = "museum"
location = "town-museum"
"#;

const HOLDERS: &str = r#"# Demo holders: registered on first use of an empty ledger (`decide`, `serve`).
[[holders]]
card = "DEMO-1"
birth-date = "2014-05-01"
municipality = "town"
"#;

fn suite(program: &str) -> String {
    format!(
        r#"# The starter rule, both ways.
program = "{program}"

[[holders]]
card = "S-1"
birth-date = "2014-05-01"
municipality = "town"

[[holders]]
card = "S-2"
birth-date = "2014-05-01"
municipality = "town"
state = "blocked"

[[steps]]
name = "an active card may visit"
at = "2024-03-01T12:00:00Z"
card = "S-1"
action = "visit"
offer = "town-museum"
expect = {{ allow = true, reason = "ok", admitted = 1, price = 0 }}

[[steps]]
name = "a blocked card may not"
at = "2024-03-01T12:00:00Z"
card = "S-2"
action = "visit"
offer = "town-museum"
expect = {{ allow = false, reason = "card-inactive" }}
"#
    )
}
