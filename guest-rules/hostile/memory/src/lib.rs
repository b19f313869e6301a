#![no_std]
//! Hostile-guest corpus, program `hostile-memory`. Allocates a mebibyte after another and never frees: stopped by the memory limit.
//! Built in CI with the real policies; `tests/hostile.rs` shows the host surviving it.

use cardrules_sdk::prelude::*;

struct Hostile;

impl Policy for Hostile {
    fn describe() -> PolicyInfo {
        policy_info(
            "hostile-memory",
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
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Reserved, not written: growth costs memory, not instructions.
        let mut chunk = Vec::with_capacity(1 << 20);
        chunk.push(1u8);
        hoard.push(core::hint::black_box(chunk));
    }
}

export_policy!(Hostile);
