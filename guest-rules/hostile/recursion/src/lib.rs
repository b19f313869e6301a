#![no_std]
//! Hostile-guest corpus, program `hostile-recursion`. Recursion without end: stopped by the wasm stack limit.
//! Built in CI with the real policies; `tests/hostile.rs` shows the host surviving it.

use cardrules_sdk::prelude::*;

struct Hostile;

impl Policy for Hostile {
    fn describe() -> PolicyInfo {
        policy_info(
            "hostile-recursion",
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
    let depth = dive(0);
    allow().note(&depth.to_string())
}

fn dive(depth: u64) -> u64 {
    if core::hint::black_box(depth) == u64::MAX {
        return depth;
    }
    dive(depth + 1).wrapping_add(core::hint::black_box(depth))
}

export_policy!(Hostile);
