#![no_std]
//! Hostile-guest corpus, program `hostile-effects`. Effects the ledger must refuse: overspending (`overspend`) or an undeclared asset (`unknown-asset`); and answers in the host's own reasons: an allowed `policy-error` that grants money (`claim-fault`), an undeclared `unknown-card` (`claim-unknown-card`).
//! Built in CI with the real policies; `tests/hostile.rs` shows the host surviving it.

use cardrules_sdk::prelude::*;

struct Hostile;

impl Policy for Hostile {
    fn describe() -> PolicyInfo {
        policy_info(
            "hostile-effects",
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
        "overspend" => allow().count("tries", 1).consume("DKK", 1_000_000),
        "claim-fault" => {
            let mut lie = allow().grant("DKK", 1_000, None);
            lie.reason = "policy-error".into();
            lie
        }
        "claim-unknown-card" => deny("unknown-card"),
        _ => allow().count("tries", 1).grant("GOLD", 1_000, None),
    }
}

export_policy!(Hostile);
