#![no_std]
//! Hostile-guest corpus, program `hostile-counter`. Keeps a static counter, trying to remember earlier calls: every instance is fresh.
//! Built in CI with the real policies; `tests/hostile.rs` shows the host surviving it.

use cardrules_sdk::prelude::*;

struct Hostile;

impl Policy for Hostile {
    fn describe() -> PolicyInfo {
        policy_info(
            "hostile-counter",
            "0.0.1",
            &["attack"],
            &[OK, BAD_REQUEST, UNKNOWN_ACTION],
        )
    }

    fn evaluate(req: Request) -> Decision {
        evaluate(req)
    }
}

static CALLS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

fn evaluate(_req: Request) -> Decision {
    let calls = CALLS.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1;
    allow().note(&format!("call-{calls}"))
}

export_policy!(Hostile);
