//! What a suite step expects, and how a decision is compared with it: each key named, and
//! the checks an explained decision must report.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::model::{CardState, Decision, Moment};

/// What a step expects; keys left out are not compared.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Expect {
    pub allow: bool,
    pub reason: Option<String>,
    pub admitted: Option<u32>,
    pub price: Option<i64>,
    /// Only the assets named are compared; an asset the card does not hold counts as 0.
    pub balances: Option<BTreeMap<String, i64>>,
    /// Each note listed must be present.
    pub notes: Option<Vec<String>>,
    pub state: Option<CardState>,
    /// The decision's end-user message, exactly (in the step's `language`, or the
    /// program's first).
    pub message: Option<String>,
    /// Checks the decision must report, in order among its checks; of each, only the keys
    /// named are compared (e.g. `{reason = "quota-exhausted", used = 4, limit = 4}`).
    pub checks: Option<Vec<ExpectCheck>>,
}

/// A check a step expects; keys left out are not compared.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ExpectCheck {
    pub rule: Option<String>,
    pub passed: Option<bool>,
    pub reason: Option<String>,
    pub used: Option<i64>,
    pub limit: Option<i64>,
    until: Option<Moment>,
}

impl ExpectCheck {
    /// Whether `check` has every key named here.
    fn matches(&self, check: &crate::model::Check) -> bool {
        self.rule.as_ref().is_none_or(|r| *r == check.rule)
            && self.passed.is_none_or(|p| p == check.passed)
            && self.reason.as_ref().is_none_or(|r| *r == check.reason)
            && self.used.is_none_or(|u| Some(u) == check.used)
            && self.limit.is_none_or(|l| Some(l) == check.limit)
            && self.until.as_ref().is_none_or(|u| Some(u.0) == check.until)
    }
}

impl fmt::Display for ExpectCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys = Vec::new();
        if let Some(rule) = &self.rule {
            keys.push(format!("rule = {}", quoted(rule)));
        }
        if let Some(passed) = self.passed {
            keys.push(format!("passed = {passed}"));
        }
        if let Some(reason) = &self.reason {
            keys.push(format!("reason = {}", quoted(reason)));
        }
        if let Some(used) = self.used {
            keys.push(format!("used = {used}"));
        }
        if let Some(limit) = self.limit {
            keys.push(format!("limit = {limit}"));
        }
        if let Some(until) = &self.until {
            keys.push(format!("until = {}", until.0));
        }
        write!(f, "{{{}}}", keys.join(", "))
    }
}

/// A check as a report shows it, in one line.
pub fn show_check(check: &crate::model::Check) -> String {
    let mut line = format!(
        "{} {} `{}`",
        if check.passed { "✓" } else { "✗" },
        check.rule,
        check.reason
    );
    if let (Some(used), Some(limit)) = (check.used, check.limit) {
        line.push_str(&format!(" used {used} of {limit}"));
    } else if let Some(limit) = check.limit {
        line.push_str(&format!(" limit {limit}"));
    }
    if let Some(until) = check.until {
        line.push_str(&format!(" until {until}"));
    }
    line
}

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub key: String,
    pub expected: String,
    pub actual: String,
}

/// The expectations of `expect` that `decision` does not meet.
pub fn compare(expect: &Expect, decision: &Decision) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut check = |key: &str, expected: String, actual: String| {
        if expected != actual {
            out.push(Mismatch {
                key: key.to_string(),
                expected,
                actual,
            });
        }
    };
    check(
        "allow",
        expect.allow.to_string(),
        decision.allow.to_string(),
    );
    if let Some(reason) = &expect.reason {
        check("reason", quoted(reason), quoted(&decision.reason));
    }
    if let Some(admitted) = expect.admitted {
        check(
            "admitted",
            admitted.to_string(),
            decision.admitted.to_string(),
        );
    }
    if let Some(price) = expect.price {
        check(
            "price",
            price.to_string(),
            decision.price.map_or("none".to_string(), |p| p.to_string()),
        );
    }
    if let Some(balances) = &expect.balances {
        for (asset, units) in balances {
            let held = decision.balances.get(asset).copied().unwrap_or(0);
            check(
                &format!("balances.{asset}"),
                units.to_string(),
                held.to_string(),
            );
        }
    }
    if let Some(notes) = &expect.notes {
        for note in notes {
            if !decision.notes.contains(note) {
                check(
                    "notes",
                    format!("to include {}", quoted(note)),
                    format!("{:?}", decision.notes),
                );
            }
        }
    }
    if let Some(state) = expect.state {
        let actual = decision.state.map_or("none", CardState::as_str);
        check("state", quoted(state.as_str()), quoted(actual));
    }
    if let Some(message) = &expect.message {
        check("message", quoted(message), quoted(&decision.message));
    }
    if let Some(expected) = &expect.checks {
        let checks = decision.checks.as_deref().unwrap_or_default();
        // In order: each expected check is found after the one before it.
        let mut from = 0;
        for want in expected {
            match checks[from..].iter().position(|c| want.matches(c)) {
                Some(at) => from += at + 1,
                None => check(
                    "checks",
                    format!("a check {want}"),
                    if checks.is_empty() {
                        "no checks".to_string()
                    } else {
                        "none such (see the checks below)".to_string()
                    },
                ),
            }
        }
    }
    out
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}
