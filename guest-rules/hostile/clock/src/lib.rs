//! Hostile-guest corpus, program `hostile-clock`. Reads the wall clock and seeds a hash map
//! randomly: refused at load (no clock, no randomness). It links Rust's standard library
//! (which brings the WASI imports) and so uses wit-bindgen directly rather than the SDK,
//! whose policies are `no_std`.
//! Built in CI with the real policies; `tests/hostile.rs` shows the host surviving it.

wit_bindgen::generate!({
    path: "../../../wit/0.1.0",
    world: "cardrules:policy/policy@0.1.0",
});

struct Hostile;

impl Guest for Hostile {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            program: "hostile-clock".into(),
            version: "0.0.1".into(),
            actions: vec!["attack".into()],
            reasons: vec!["ok".into(), "bad-request".into(), "unknown-action".into()],
        }
    }

    fn evaluate(_req: Request) -> Decision {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut seen = std::collections::HashMap::new();
        seen.insert(now, 1);
        Decision {
            allow: true,
            reason: "ok".into(),
            admitted: 0,
            price: None,
            notes: vec![format!("{now}:{}", seen.len())],
            effects: Vec::new(),
        }
    }
}

export!(Hostile);
