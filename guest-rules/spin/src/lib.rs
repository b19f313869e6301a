#![no_std]
//! A slow policy, program `spin`: each decision spins `[config] spins` rounds of a loop
//! (a fixed amount of fuel, so a fixed time), reads the acting card's own use, and allows
//! with one more use counted. `cardrules bench` times it at about 1 ms per evaluation,
//! from several tills on different cards: what a program whose rules are costly gets
//! from evaluating its decisions in parallel.

use cardrules_sdk::prelude::*;

struct Spin;

impl Policy for Spin {
    fn describe() -> PolicyInfo {
        policy_info(
            "spin",
            "0.1.0",
            &["spin"],
            &[OK, BAD_REQUEST, UNKNOWN_ACTION],
        )
    }

    fn evaluate(req: Request) -> Decision {
        let rounds = config_int("spins", 0).max(0) as u64;
        let mut spun: u64 = 0;
        for _ in 0..rounds {
            spun = core::hint::black_box(spun.wrapping_add(1));
        }
        // One read of the ledger, by the acting card's key only.
        let _used = ledger::count_in(
            Some(req.holder.card.as_str()),
            "spins",
            Period::Year,
            req.at,
        );
        allow().count("spins", 1)
    }
}

export_policy!(Spin);
