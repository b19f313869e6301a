#![no_std]
//! Hostile-guest corpus, program `hostile-effects`. Effects the ledger must refuse: overspending (`overspend`) or an undeclared asset (`unknown-asset`); and answers in the host's own reasons: an allowed `policy-error` that grants money (`claim-fault`), an undeclared `unknown-card` (`claim-unknown-card`).
//! And one action per guard of the host (each after a `tries` count that must not stay):
//! negative consume and transfer, zero and negative grants, a transfer to an unknown card
//! or to the acting card, a move to an existing card, an undeclared reason, and more
//! persons admitted than asked, prices outside 0 to 10^15 (beside the bounds, `free`
//! and `dearest`, which are prices), effects after a move that would touch the replaced
//! card, and card numbers no caller could send (`move-to-path`, `transfer-to-empty`).
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
        // After a move the old card is the replaced one: these bring it back to life.
        "move-then-activate" => allow()
            .count("tries", 1)
            .effect(Effect::MoveCard("H-NEW".into()))
            .effect(Effect::SetState(CardState::Active)),
        "move-then-grant" => allow()
            .count("tries", 1)
            .effect(Effect::MoveCard("H-NEW".into()))
            .grant("DKK", 1_000, None),
        "move-then-move" => allow()
            .count("tries", 1)
            .effect(Effect::MoveCard("H-NEW".into()))
            .effect(Effect::MoveCard("H-OTHER".into())),
        // A marker after the move stays on the old card (Albertslund's `replaced`).
        "move-then-count" => allow()
            .effect(Effect::MoveCard("H-NEW".into()))
            .count("replaced", 1),
        // Card numbers no caller could send.
        "move-to-path" => allow()
            .count("tries", 1)
            .effect(Effect::MoveCard("../H-2".into())),
        "transfer-to-empty" => allow().count("tries", 1).effect(transfer("", 10)),
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
