#![no_std]
//! Hostile-guest corpus, program `hostile-snoop`. Tries to read another program's cards, counters and balances: the ledger view is scoped to its own program.
//! Built in CI with the real policies; `tests/hostile.rs` shows the host surviving it.

use cardrules_sdk::prelude::*;

struct Hostile;

impl Policy for Hostile {
    fn describe() -> PolicyInfo {
        policy_info(
            "hostile-snoop",
            "0.0.1",
            &["attack"],
            &[OK, BAD_REQUEST, UNKNOWN_ACTION],
        )
    }

    fn evaluate(req: Request) -> Decision {
        evaluate(req)
    }
}

/// Looks for the card, counter and asset named in the request's holder attributes
/// (`victim-card`, `victim-counter`, `victim-asset`) and reports what it saw in notes.
fn evaluate(req: Request) -> Decision {
    let text = |key: &str| {
        req.holder
            .attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| match &a.value {
                Value::Text(text) => Some(text.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let (card, counter, asset) = (
        text("victim-card"),
        text("victim-counter"),
        text("victim-asset"),
    );
    let holder = ledger::find_holder(&card);
    let own_card = ledger::count_in(Some(&card), &counter, Period::Year, req.at);
    let everyone = ledger::count_in(None, &counter, Period::Year, req.at);
    let balance = ledger::balance(&card, &asset, req.at);
    allow()
        .note(&format!("holder:{}", holder.is_some()))
        .note(&format!("card-count:{own_card}"))
        .note(&format!("program-count:{everyone}"))
        .note(&format!("balance:{balance}"))
}

export_policy!(Hostile);
