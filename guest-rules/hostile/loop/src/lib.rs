#![no_std]
//! Hostile-guest corpus, program `hostile-loop`. An endless loop in `evaluate`: stopped by the fuel limit (or the deadline).
//! Built in CI with the real policies; `tests/hostile.rs` shows the host surviving it.

use cardrules_sdk::prelude::*;

struct Hostile;

impl Policy for Hostile {
    fn describe() -> PolicyInfo {
        policy_info(
            "hostile-loop",
            "0.0.1",
            &["attack"],
            &[OK, BAD_REQUEST, UNKNOWN_ACTION],
        )
    }

    fn evaluate(req: Request) -> Decision {
        evaluate(req)
    }
}

fn evaluate(_req: Request) -> Decision {
    let mut spins: u64 = 0;
    loop {
        spins = core::hint::black_box(spins.wrapping_add(1));
    }
}

export_policy!(Hostile);
