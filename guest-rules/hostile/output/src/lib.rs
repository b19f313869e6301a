#![no_std]
//! Hostile-guest corpus, program `hostile-output`. Answers with far too much: a 4 MiB note (`notes`) or 5 000 effects (`effects`).
//! Built in CI with the real policies; `tests/hostile.rs` shows the host surviving it.

use cardrules_sdk::prelude::*;

struct Hostile;

impl Policy for Hostile {
    fn describe() -> PolicyInfo {
        policy_info(
            "hostile-output",
            "0.0.1",
            &["attack"],
            &[OK, BAD_REQUEST, UNKNOWN_ACTION],
        )
    }

    fn evaluate(req: Request) -> Decision {
        evaluate(req)
    }
}

fn evaluate(req: Request) -> Decision {
    match req.action.as_str() {
        "notes" => allow().note(&"x".repeat(4 << 20)),
        _ => {
            let mut decision = allow();
            for _ in 0..5_000 {
                decision = decision.count("spam", 1);
            }
            decision
        }
    }
}

export_policy!(Hostile);
