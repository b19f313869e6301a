#![no_std]
//! A-kaart, stad Antwerpen: a city card that is also a savings card (rule book:
//! docs/programs.md, `antwerpen`).
//! Each participation is a `saving`; every 10 savings become a `benefit` that must be used
//! within six months. Prices depend on the holder's statuses. Every rule is a check of the
//! SDK, so an explained decision lists them in the rule book's order.

use cardrules_sdk::prelude::*;

const PROGRAM: &str = "antwerpen";
const VERSION: &str = "2024.1.0";

const SAVING: &str = "saving";
const BENEFIT: &str = "benefit";
/// Counts every saving of a card: the 60-minute rule 7, and when the 10th saving happened.
const SAVINGS: &str = "savings";
/// Counts savings at one location: rules 5 and 6.
fn savings_at(location: &str) -> String {
    format!("savings@{location}")
}

const CARD_INACTIVE: &str = "card-inactive";
const NOT_PARTICIPATING: &str = "not-participating";
const UNKNOWN_CARD: &str = "unknown-card";
/// A replacement card number that already belongs to a holder.
const CARD_IN_USE: &str = "card-in-use";
/// `rejoin` by a card that never stopped.
const ALREADY_PARTICIPATING: &str = "already-participating";

/// The statuses that ground the reduced rate (kansentarief).
const KANSENTARIEF_GROUNDS: &[&str] = &[
    "increased-allowance",
    "debt-counselling",
    "social-centre-guidance",
    "poverty-referral",
];

struct Antwerpen;

impl Policy for Antwerpen {
    fn describe() -> PolicyInfo {
        policy_info(
            PROGRAM,
            VERSION,
            &[
                "check-in",
                "redeem-benefit",
                "transfer",
                "stop-participation",
                "rejoin",
                "replace-card",
                "price",
                "assess-kansentarief",
            ],
            &[
                OK,
                CARD_INACTIVE,
                NOT_PARTICIPATING,
                "consent-required",
                "outside-checkin-window",
                "already-saved-today",
                "library-weekly-limit",
                "too-soon",
                "no-benefit",
                UNKNOWN_CARD,
                "insufficient-balance",
                "no-qualifying-ground",
                CARD_IN_USE,
                ALREADY_PARTICIPATING,
                UNKNOWN_ACTION,
                BAD_REQUEST,
            ],
        )
    }

    fn evaluate(req: Request) -> Decision {
        let outcome = match req.action.as_str() {
            "check-in" => check_in(&req),
            "redeem-benefit" => redeem_benefit(&req),
            "transfer" => transfer(&req),
            "stop-participation" => stop_participation(&req),
            "rejoin" => rejoin(&req),
            "replace-card" => replace_card(&req),
            "price" => price(&req),
            "assess-kansentarief" => assess_kansentarief(&req),
            _ => Err(deny(UNKNOWN_ACTION)),
        };
        decide(&req, outcome)
    }
}

/// A blocked card can do nothing; a stopped one does not save.
fn participating(holder: &cardrules_sdk::Holder) -> Result<(), Decision> {
    not_blocked(holder)?;
    check(
        "participating",
        holder.state != CardState::Stopped,
        NOT_PARTICIPATING,
    )
}

/// A blocked card can do nothing.
fn not_blocked(holder: &cardrules_sdk::Holder) -> Result<(), Decision> {
    check(
        "not-blocked",
        holder.state != CardState::Blocked,
        CARD_INACTIVE,
    )
}

/// Saves at an activity or location.
fn check_in(req: &Request) -> Rule {
    let holder = &req.holder;
    let offer = required(&req.offer)?;
    let card = Some(holder.card.as_str());

    // 1–2. Not blocked, and still saving.
    participating(holder)?;
    // 3. Under 13 needs parental consent.
    let consent_age = config_int("consent-age", 13);
    let age = i64::from(holder.age_on(&req.local.date));
    check(
        "consent",
        age >= consent_age || holder.has_status("parental-consent"),
        "consent-required",
    )?;
    // 4. Cultural centres: from 60 minutes before the show until 60 minutes after it.
    if offer.category == "cultural-centre" {
        let window = config_int("checkin-window-minutes", 60) * 60;
        let starts = required(&offer.starts_at)?;
        let ends = offer.ends_at.unwrap_or(starts);
        check(
            "checkin-window",
            (starts - window..=ends + window).contains(&req.at),
            "outside-checkin-window",
        )?;
    }
    // 5. One saving per location per local day, until the next local midnight.
    let here = savings_at(&offer.location);
    let today = ledger::count_in(card, &here, Period::Day, req.at);
    let midnight = Until::EndOf(Period::Day, req.at);
    within("once-a-day", "already-saved-today", today, 1, midnight)?;
    // 6. Libraries: one saving per library per ISO week, until the next Monday.
    if offer.category == "library" {
        let this_week = ledger::count_in(card, &here, Period::IsoWeek, req.at);
        let monday = Until::EndOf(Period::IsoWeek, req.at);
        within(
            "library-weekly",
            "library-weekly-limit",
            this_week,
            1,
            monday,
        )?;
    }
    // 7. Savings on the same day at different locations at least 60 minutes apart,
    // whichever was recorded first: a till that was offline sends its check-ins late,
    // stamped with the time they happened, so a saving recorded for a later time counts
    // as much as one recorded for an earlier time. The window is (at - gap, at + gap),
    // cut to the local day of `at`.
    let gap = config_int("saving-gap-minutes", 60) * 60;
    let day = calendar::period_of(Period::Day, req.at);
    let near = Window {
        start: day.start.max(req.at - gap + 1),
        end: day.end.min(req.at + gap),
    };
    let close = ledger::count_within(card, SAVINGS, near);
    check("saving-gap", close == 0, "too-soon")?;

    let bonus = offer.attr_int("bonus-savings").unwrap_or(0).max(0);
    let granted = 1 + bonus;
    let mut decision = allow()
        .count(SAVINGS, 1)
        .count(&here, 1)
        .grant(SAVING, granted, None);

    // Every 10 savings become a benefit that expires six calendar months after the moment
    // it was granted: the moment the 10th saving happened. A late check-in that completes
    // the 10 happened before savings already recorded for later times, so the 10th saving
    // is the latest of them, not this one: a late till must not shorten the benefit.
    let per_benefit = config_int("savings-per-benefit", 10);
    let savings = ledger::balance(&holder.card, SAVING, req.at) + granted;
    let benefits = savings / per_benefit;
    if benefits > 0 {
        let months = config_int("benefit-valid-months", 6) as i32;
        let granted_at =
            ledger::last_use(&holder.card, SAVINGS).map_or(req.at, |last| last.max(req.at));
        let expires = calendar::add_months(granted_at, months);
        decision = decision.consume(SAVING, benefits * per_benefit).grant(
            BENEFIT,
            benefits,
            Some(expires),
        );
    }
    Ok(decision)
}

/// Uses the benefit that expires first.
fn redeem_benefit(req: &Request) -> Rule {
    participating(&req.holder)?;
    let benefits = ledger::balance(&req.holder.card, BENEFIT, req.at);
    check_counted(
        "benefit",
        benefits >= 1,
        "no-benefit",
        None,
        Some(benefits),
        Until::None,
    )?;
    Ok(allow().admitted(1).consume(BENEFIT, 1))
}

/// Gives savings or benefits to another card of the program; benefits keep their expiry.
fn transfer(req: &Request) -> Rule {
    let to_card = required(&req.to_card)?;
    let asset = required(&req.asset)?;
    let amount = required(&req.amount)?;
    check("asset", asset == SAVING || asset == BENEFIT, BAD_REQUEST)?;
    // `amount` is at least 1: the host refuses any other before a policy sees it.
    check("to-card", to_card != req.holder.card, BAD_REQUEST)?;

    not_blocked(&req.holder)?;
    let receiver = present("receiver", ledger::find_holder(&to_card), UNKNOWN_CARD)?;
    let stopped = |state: CardState| state == CardState::Stopped;
    check(
        "participating",
        !stopped(req.holder.state) && !stopped(receiver.state),
        NOT_PARTICIPATING,
    )?;
    check(
        "receiver-not-blocked",
        receiver.state != CardState::Blocked,
        CARD_INACTIVE,
    )?;
    // What the giver holds, expired benefits left out, against the amount asked.
    let held = ledger::balance(&req.holder.card, &asset, req.at);
    at_most("balance", "insufficient-balance", amount, held, Until::None)?;
    Ok(allow().effect(Effect::Transfer(Transfer {
        to_card,
        asset,
        amount,
    })))
}

/// Stops saving: every saving and benefit is forfeited.
fn stop_participation(req: &Request) -> Rule {
    participating(&req.holder)?;
    Ok(allow()
        .effect(Effect::Forfeit(SAVING.to_string()))
        .effect(Effect::Forfeit(BENEFIT.to_string()))
        .effect(Effect::SetState(CardState::Stopped)))
}

/// Starts saving again, from nothing.
fn rejoin(req: &Request) -> Rule {
    not_blocked(&req.holder)?;
    check(
        "stopped",
        req.holder.state == CardState::Stopped,
        ALREADY_PARTICIPATING,
    )?;
    Ok(allow()
        .effect(Effect::Forfeit(SAVING.to_string()))
        .effect(Effect::Forfeit(BENEFIT.to_string()))
        .effect(Effect::SetState(CardState::Active)))
}

/// Moves the holder, savings and benefits to a new card and blocks the old one. The desk
/// collects the administrative contribution for the new card (*config* `replacement-fee`,
/// set by the city's fee regulation); there is no money on the card, so it is only a price.
fn replace_card(req: &Request) -> Rule {
    let new_card = required(&req.new_card)?;
    not_blocked(&req.holder)?;
    let taken = ledger::find_holder(&new_card).is_some();
    check("new-card-free", !taken, CARD_IN_USE)?;
    let fee = config_int("replacement-fee", 500);
    Ok(allow().price(fee).effect(Effect::MoveCard(new_card)))
}

/// What the holder pays: the social price with kansentarief, else the resident price for
/// residents, else the regular price; a missing reduced price falls back to the next.
fn price(req: &Request) -> Rule {
    let offer = required(&req.offer)?;
    let holder = &req.holder;
    let regular = offer.attr_int("price").unwrap_or(0);
    let resident = offer
        .attr_int("resident-price")
        .filter(|_| holder.has_status("antwerpenaar"));
    let social = offer
        .attr_int("social-price")
        .filter(|_| holder.has_status("kansentarief"));
    Ok(allow().price(social.or(resident).unwrap_or(regular)))
}

/// Whether the reduced-rate status may be activated: it needs at least one ground.
fn assess_kansentarief(req: &Request) -> Rule {
    let grounded = KANSENTARIEF_GROUNDS
        .iter()
        .any(|g| req.holder.has_status(g));
    check("qualifying-ground", grounded, "no-qualifying-ground")?;
    Ok(allow())
}

export_policy!(Antwerpen);
