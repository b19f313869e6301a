#![no_std]
//! The empty policy, program `floor`: every request is allowed at once, without reading the
//! ledger. `cardrules bench` runs it beside the real programs, so that the cost of the
//! sandbox itself (fresh instance, call, lifting the answer) is visible apart from the
//! cost of the rules.

use cardrules_sdk::prelude::*;

struct Floor;

impl Policy for Floor {
    fn describe() -> PolicyInfo {
        policy_info(
            "floor",
            "0.1.0",
            &["noop"],
            &[OK, BAD_REQUEST, UNKNOWN_ACTION],
        )
    }

    fn evaluate(_req: Request) -> Decision {
        allow()
    }
}

export_policy!(Floor);
