//! Hostile-guest corpus, program `hostile-clock`. Reads the wall clock and seeds a hash map randomly: refused at load (no clock, no randomness).
//! Built in CI with the real policies; `tests/hostile.rs` shows the host surviving it.

use cardrules_sdk::prelude::*;

struct Hostile;

impl Policy for Hostile {
    fn describe() -> PolicyInfo {
        policy_info(
            "hostile-clock",
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut seen = std::collections::HashMap::new();
    seen.insert(now, 1);
    allow().note(&format!("{now}:{}", seen.len()))
}

export_policy!(Hostile);
