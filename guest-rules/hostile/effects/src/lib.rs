#![no_std]
//! Hostile-guest corpus, program `hostile-effects`. Effects the ledger must refuse: overspending (`overspend`) or an undeclared asset (`unknown-asset`); and answers in the host's own reasons: an allowed `policy-error` that grants money (`claim-fault`), an undeclared `unknown-card` (`claim-unknown-card`).
//! And one action per guard of the host (each after a `tries` count that must not stay):
//! negative consume and transfer, zero and negative grants, a transfer to an unknown card
//! or to the acting card, a move to an existing card, an undeclared reason, and more
//! persons admitted than asked, and prices outside 0 to 10^15 (beside the bounds, `free`
//! and `dearest`, which are prices).
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
        "negative-consume" => allow().count("tries", 1).consume("DKK", -50),
        "negative-transfer" => allow()
            .count("tries", 1)
            .effect(transfer(req.to_card.as_deref().unwrap_or("H-2"), -50)),
        "zero-grant" => allow().count("tries", 1).grant("DKK", 0, None),
        "negative-grant" => allow().count("tries", 1).grant("DKK", -50, None),
        "transfer-to-unknown" => allow()
            .count("tries", 1)
            .effect(transfer("NO-SUCH-CARD", 10)),
        "transfer-to-self" => allow()
            .count("tries", 1)
            .effect(transfer(&req.holder.card, 10)),
        "move-to-existing" => allow().count("tries", 1).effect(Effect::MoveCard(
            req.new_card.clone().unwrap_or_else(|| "H-2".into()),
        )),
        "undeclared-reason" => allow().count("tries", 1).reason("free-money"),
        "over-admit" => allow().count("tries", 1).admitted(req.party + 1),
        // Prices the host bounds like every amount (0 to 10^15).
        "negative-price" => allow().count("tries", 1).price(-1),
        "lowest-price" => allow().count("tries", 1).price(i64::MIN),
        "huge-price" => allow().count("tries", 1).price(1_000_000_000_000_001),
        // And the bounds themselves, which are prices.
        "free" => allow().price(0),
        "dearest" => allow().price(1_000_000_000_000_000),
        _ => allow().count("tries", 1).grant("GOLD", 1_000, None),
    }
}

fn transfer(to_card: &str, amount: i64) -> Effect {
    Effect::Transfer(Transfer {
        to_card: to_card.into(),
        asset: "DKK".into(),
        amount,
    })
}

export_policy!(Hostile);
