#![no_std]
//! Det Digitale Betalingskort, Albertslund Kommune: a prepaid card children use to buy
//! food and materials at the youth clubs (rule book: docs/programs.md, `albertslund`).
//! Money is the asset `DKK`, in øre; parents top it up and may restrict purchases; the
//! cashier checks the photo. Every rule is a check of the SDK, so an explained decision
//! lists them in the rule book's order.

use cardrules_sdk::prelude::*;

const PROGRAM: &str = "albertslund";
const VERSION: &str = "2024.1.0";

/// The money asset, in øre.
const DKK: &str = "DKK";
/// Counts øre spent, for the daily limit of rule 6.
const SPENT: &str = "spent";
/// Recorded on the old card when it is replaced, after the card has moved: usage history
/// moves to the new card with the holder, and this marker must stay behind on the old one.
const REPLACED: &str = "replaced";

const CARD_BLOCKED: &str = "card-blocked";
const CARD_REPLACED: &str = "card-replaced";
const CARD_NOT_BLOCKED: &str = "card-not-blocked";
const INSUFFICIENT_FUNDS: &str = "insufficient-funds";
/// A replacement card number that already belongs to a holder.
const CARD_IN_USE: &str = "card-in-use";

struct Albertslund;

impl Policy for Albertslund {
    fn describe() -> PolicyInfo {
        policy_info(
            PROGRAM,
            VERSION,
            &[
                "purchase",
                "top-up",
                "enable-auto-top-up",
                "replace-card",
                "block-card",
                "unblock-card",
                "close-account",
            ],
            &[
                OK,
                CARD_BLOCKED,
                "not-a-member",
                "offer-not-participating",
                "category-blocked",
                "purchase-limit",
                "daily-limit",
                INSUFFICIENT_FUNDS,
                "minimum-balance",
                CARD_IN_USE,
                CARD_REPLACED,
                CARD_NOT_BLOCKED,
                UNKNOWN_ACTION,
                BAD_REQUEST,
            ],
        )
    }

    fn evaluate(req: Request) -> Decision {
        let outcome = match req.action.as_str() {
            "purchase" => purchase(&req),
            "top-up" => top_up(&req),
            "enable-auto-top-up" => enable_auto_top_up(&req),
            "replace-card" => replace_card(&req),
            "block-card" => Ok(allow().effect(Effect::SetState(CardState::Blocked))),
            "unblock-card" => unblock_card(&req),
            "close-account" => close_account(&req),
            _ => Err(deny(UNKNOWN_ACTION)),
        };
        decide(&req, outcome)
    }
}

/// The participating clubs (*config* `clubs`, comma-separated).
fn clubs() -> Vec<String> {
    config_text("clubs", "bakkens-hjerte,storagergard")
        .split(',')
        .map(|club| club.trim().to_string())
        .filter(|club| !club.is_empty())
        .collect()
}

fn balance(req: &Request) -> i64 {
    ledger::balance(&req.holder.card, DKK, req.at)
}

/// A positive `amount`, or a `bad-request` denial.
fn positive_amount(req: &Request) -> Result<i64, Decision> {
    // At least 1: the host refuses any other amount before a policy sees it.
    required(&req.amount)
}

/// Every action but `block-card` needs a card that is not blocked.
fn not_blocked(req: &Request) -> Result<(), Decision> {
    check(
        "not-blocked",
        req.holder.state != CardState::Blocked,
        CARD_BLOCKED,
    )
}

/// Buys `offer` for `amount` øre at a club.
fn purchase(req: &Request) -> Rule {
    let holder = &req.holder;
    let offer = required(&req.offer)?;
    let amount = positive_amount(req)?;
    let clubs = clubs();

    // 1. The card is not blocked.
    not_blocked(req)?;
    // 2. The holder is a member of a participating club.
    let member = clubs
        .iter()
        .any(|club| holder.has_status(&format!("member:{club}")));
    check("member", member, "not-a-member")?;
    // 3. The offer is sold at a participating club.
    let at_club = clubs.contains(&offer.location);
    check("participating", at_club, "offer-not-participating")?;
    // 4. The parent has not blocked the offer's category.
    let blocked = holder.attr_text("blocked-categories").unwrap_or("");
    let is_blocked = blocked.split(',').any(|c| c.trim() == offer.category);
    check("category", !is_blocked, "category-blocked")?;
    // 5. At most the parent's limit per purchase: the amount asked against it.
    if let Some(limit) = holder.attr_int("purchase-limit") {
        at_most(
            "purchase-limit",
            "purchase-limit",
            amount,
            limit,
            Until::None,
        )?;
    }
    // 6. At most the parent's limit per local day, this purchase included: spent today,
    // until the next local midnight.
    if let Some(limit) = holder.attr_int("daily-limit") {
        let today = ledger::count_in(Some(&holder.card), SPENT, Period::Day, req.at);
        let midnight = Until::EndOf(Period::Day, req.at);
        within_amount("daily-limit", "daily-limit", today, amount, limit, midnight)?;
    }
    // 7. Enough money on the card: the amount asked against the unexpired balance.
    let balance = balance(req);
    at_most("funds", INSUFFICIENT_FUNDS, amount, balance, Until::None)?;

    let mut decision = allow()
        .price(amount)
        .consume(DKK, amount)
        .count(SPENT, amount as u64)
        .note("verify-photo");
    let below = holder.attr_int("auto-top-up-below");
    let top_up = holder.attr_int("auto-top-up-amount");
    if let (Some(below), Some(top_up)) = (below, top_up)
        && balance - amount < below
        && top_up > 0
    {
        decision = decision.grant(DKK, top_up, None).note("auto-top-up");
    }
    Ok(decision)
}

/// Credits `amount` øre, paid by the parent.
fn top_up(req: &Request) -> Rule {
    let amount = positive_amount(req)?;
    not_blocked(req)?;
    Ok(allow().grant(DKK, amount, None))
}

/// Whether the parent may switch automatic top-up on: only from a minimum balance.
fn enable_auto_top_up(req: &Request) -> Rule {
    not_blocked(req)?;
    let minimum = config_int("auto-top-up-minimum-balance", 5000);
    check(
        "minimum-balance",
        balance(req) >= minimum,
        "minimum-balance",
    )?;
    Ok(allow())
}

/// Replaces a lost, stolen or damaged card for a fee paid from the old card.
fn replace_card(req: &Request) -> Rule {
    let new_card = required(&req.new_card)?;
    not_blocked(req)?;
    // The fee against the unexpired balance (the fee is config, not a number the host
    // counted, so the check reports the balance alone).
    let fee = config_int("replacement-fee", 2500);
    let balance = balance(req);
    check_counted(
        "funds",
        balance >= fee,
        INSUFFICIENT_FUNDS,
        None,
        Some(balance),
        Until::None,
    )?;
    let taken = ledger::find_holder(&new_card).is_some();
    check("new-card-free", !taken, CARD_IN_USE)?;
    let mut decision = allow().price(fee);
    if fee > 0 {
        decision = decision.consume(DKK, fee);
    }
    // Effects apply in order to the acting card: the marker is recorded after the move, so
    // that it stays on the old card while the usage history moves to the new one.
    Ok(decision
        .effect(Effect::MoveCard(new_card))
        .count(REPLACED, 1))
}

/// Unblocks a card the parents' portal blocked, so that a replacement can be ordered and
/// its fee paid from the old card; the replacement blocks the old card again, for good.
fn unblock_card(req: &Request) -> Rule {
    // A replaced card stays blocked: its holder continues on the new card. Whether it was
    // ever replaced, not only before `at`: an unblock stamped before the replacement that
    // arrives after it must not bring the old card back either.
    let replaced = ledger::last_use(&req.holder.card, REPLACED).is_some();
    check("not-replaced", !replaced, CARD_REPLACED)?;
    let blocked = req.holder.state == CardState::Blocked;
    check("blocked", blocked, CARD_NOT_BLOCKED)?;
    Ok(allow().effect(Effect::SetState(CardState::Active)))
}

/// Pays the whole balance out to the registered parent.
fn close_account(req: &Request) -> Rule {
    let balance = balance(req);
    let mut decision = allow().note("payout-to-parent");
    if balance > 0 {
        decision = decision.consume(DKK, balance);
    }
    Ok(decision)
}

export_policy!(Albertslund);
