#![no_std]
//! Hostile-guest corpus, program `hostile-liar` (world 0.2.0). Explains decisions with
//! checks it did not evaluate: a check that held as the reason of its denial, an allowed
//! decision with a failed check, a `used` the host never answered, an `until` from its own
//! clock, more checks than the cap, a rule name too long. `tests/hostile.rs` shows each
//! turned into a `policy-error`, and the honest answer (`honest`) accepted.

use cardrules_sdk::prelude::*;

struct Hostile;

impl Policy for Hostile {
    fn describe() -> PolicyInfo {
        policy_info(
            "hostile-liar",
            "0.0.1",
            &["attack"],
            &[OK, BAD_REQUEST, UNKNOWN_ACTION],
        )
    }

    fn evaluate(req: Request) -> Decision {
        evaluate(req)
    }
}

fn lie(rule: &str, passed: bool, reason: &str) -> Check {
    Check {
        rule: rule.to_string(),
        passed,
        reason: reason.to_string(),
        used: None,
        limit: None,
        until: None,
    }
}

fn with(mut decision: Decision, checks: Vec<Check>) -> Decision {
    decision.checks = checks;
    decision
}

fn evaluate(req: Request) -> Decision {
    let counted = ledger::count_in(Some(&req.holder.card), "visits", Period::Year, req.at);
    let year = calendar::period_of(Period::Year, req.at);
    let counting = |used: u64, until: Instant| Check {
        used: Some(used as i64),
        limit: Some(4),
        until: Some(until),
        ..lie("yearly-limit", true, BAD_REQUEST)
    };
    match req.action.as_str() {
        // A check that held, given as the reason of the denial.
        "passed-for-its-denial" => with(
            deny(BAD_REQUEST),
            vec![lie("well-formed", true, BAD_REQUEST)],
        ),
        // Allowed, though one of its own checks failed.
        "allowed-but-failed" => with(allow(), vec![lie("well-formed", false, BAD_REQUEST)]),
        // A count the host never answered.
        "made-up-count" => with(allow(), vec![counting(counted + 7, year.end)]),
        // A window end of its own.
        "own-clock" => with(allow(), vec![counting(counted, year.end + 3_600)]),
        // Far more checks than the manifest allows.
        "too-many" => with(
            allow(),
            (0..100).map(|_| lie("again", true, BAD_REQUEST)).collect(),
        ),
        // A rule name far longer than any rule's.
        "long-rule" => with(allow(), vec![lie(&"r".repeat(1_000), true, BAD_REQUEST)]),
        // The truth: the host's count and window, a failed check as the denial's reason.
        "honest" => with(
            deny(BAD_REQUEST),
            vec![
                counting(counted, year.end),
                lie("well-formed", false, BAD_REQUEST),
            ],
        ),
        _ => deny(UNKNOWN_ACTION),
    }
}

export_policy!(Hostile);
