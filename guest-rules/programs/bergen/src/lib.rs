#![no_std]
//! Aktivitetskortet, Bergen kommune: free activities for children and young people from
//! low-income families (rule book: docs/programs.md, `bergen`). Everything is free; the
//! rules limit who may use the card, how many come along, and how often. Every rule is a
//! check of the SDK, so an explained decision lists them in the rule book's order.

use cardrules_sdk::prelude::*;

const PROGRAM: &str = "bergen";
const VERSION: &str = "2024.1.0";

/// Counts activations of one offer: the yearly limit of rule 6.
fn visits(offer: &str) -> String {
    format!("visit:{offer}")
}
/// Counts a card's leisure activities: the one-per-semester rule 7.
const LEISURE: &str = "leisure";
/// Counts enrolments in one leisure activity over all cards: the capacity of rule 8.
fn enrolments(offer: &str) -> String {
    format!("enrolment:{offer}")
}

const PUBLIC_EVENT: &str = "public-event";
const LEISURE_ACTIVITY: &str = "leisure-activity";

struct Bergen;

impl Policy for Bergen {
    fn describe() -> PolicyInfo {
        policy_info(
            PROGRAM,
            VERSION,
            &["redeem", "void"],
            &[
                OK,
                "card-inactive",
                "not-resident",
                "age-out-of-range",
                "offer-not-participating",
                "party-too-large",
                "quota-exhausted",
                "semester-limit",
                "fully-booked",
                "no-refund",
                UNKNOWN_ACTION,
                BAD_REQUEST,
            ],
        )
    }

    fn evaluate(req: Request) -> Decision {
        let outcome = match req.action.as_str() {
            "redeem" => redeem(&req),
            // An activated ticket is used up whether it is used or not.
            "void" => Ok(deny("no-refund")),
            _ => Err(deny(UNKNOWN_ACTION)),
        };
        decide(&req, outcome)
    }
}

/// Activates tickets for an offer for the holder and their companions.
fn redeem(req: &Request) -> Rule {
    let holder = &req.holder;
    let offer = required(&req.offer)?;
    let leisure = offer.category == LEISURE_ACTIVITY;

    // 1. The card is active.
    check(
        "card-active",
        holder.state == CardState::Active,
        "card-inactive",
    )?;

    // 2. Registered residence is Bergen.
    let residence = config_text("residence", PROGRAM);
    check("resident", holder.municipality == residence, "not-resident")?;

    // 3. Age 0–17 on the day of use (local date).
    let age = holder.age_on(&req.local.date);
    let max_age = config_int("max-age", 17);
    let in_range = (0..=max_age).contains(&i64::from(age));
    check("age", in_range, "age-out-of-range")?;

    // 4. The offer takes part in the scheme.
    check(
        "participating",
        offer.attr_bool("participating").unwrap_or(true),
        "offer-not-participating",
    )?;

    // 5. Two tickets on public events, one on leisure activities and the culture school.
    let max_party = if offer.category == PUBLIC_EVENT {
        config_int("public-event-party", 2)
    } else {
        1
    };
    check(
        "party-size",
        i64::from(req.party) <= max_party,
        "party-too-large",
    )?;

    // 6. Offers with a yearly limit: N activations per card per local calendar year,
    // until the next 1 January.
    if let Some(limit) = offer.attr_int("yearly-limit") {
        let used = ledger::count_in(Some(&holder.card), &visits(&offer.id), Period::Year, req.at);
        let until = Until::EndOf(Period::Year, req.at);
        within("yearly-limit", "quota-exhausted", used, limit, until)?;
    }

    if leisure {
        // Both count until the next 1 January or 1 July.
        let semester = Until::EndOf(Period::Semester, req.at);

        // 7. At most one leisure activity per card per semester.
        let taken = ledger::count_in(Some(&holder.card), LEISURE, Period::Semester, req.at);
        let per_semester = config_int("leisure-per-semester", 1);
        within(
            "semester-limit",
            "semester-limit",
            taken,
            per_semester,
            semester,
        )?;

        // 8. Capacity per semester over all cards, first come first served.
        if let Some(capacity) = offer.attr_int("capacity") {
            let enrolled = ledger::count_in(None, &enrolments(&offer.id), Period::Semester, req.at);
            within("capacity", "fully-booked", enrolled, capacity, semester)?;
        }
    }

    // One activation counts once, whether or not a companion comes along.
    let mut decision = allow()
        .admitted(req.party)
        .price(0)
        .count(&visits(&offer.id), 1);
    if leisure {
        decision = decision.count(LEISURE, 1).count(&enrolments(&offer.id), 1);
    }
    Ok(decision)
}

export_policy!(Bergen);
