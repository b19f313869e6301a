#![no_std]
//! Hostile-guest corpus, program `hostile-trap`. Panics (a trap, with a message on stderr) on every evaluation.
//! Built in CI with the real policies; `tests/hostile.rs` shows the host surviving it.

use cardrules_sdk::prelude::*;

struct Hostile;

impl Policy for Hostile {
    fn describe() -> PolicyInfo {
        policy_info(
            "hostile-trap",
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
    panic!("hostile policy gave up on action `{}`", req.action)
}

export_policy!(Hostile);
