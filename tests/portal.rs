//! What a holder's app and a parents' portal read: allowances (what a card may still do,
//! asked of the program's own rules, committing nothing) and history (a card's statement,
//! from the journal of every backend, continuing across a card replacement).

use std::sync::Arc;

use cardrules::allowance::{Allowance, AllowanceQuery, Allowances};
use cardrules::history::{EntryKind, History, HistoryPage};
use cardrules::{Host, Journal, MemoryLedger, Request};

mod support;
use support::files::{root, shipped_policies};
use support::hosts::serving_all;
use support::postgres::Database;

fn request(value: serde_json::Value) -> Request {
    serde_json::from_value(value).unwrap()
}

fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

fn allowances(host: &Host, program: &str, card: &str, when: &str) -> Allowances {
    host.allowances(
        program,
        card,
        &AllowanceQuery {
            at: Some(at(when)),
            ..AllowanceQuery::default()
        },
    )
    .unwrap()
    .unwrap_or_else(|| panic!("card `{card}` is known to `{program}`"))
}

fn find<'a>(all: &'a Allowances, action: &str, offer: Option<&str>) -> &'a Allowance {
    all.allowances
        .iter()
        .find(|a| a.action == action && a.offer.as_deref() == offer)
        .unwrap_or_else(|| panic!("no allowance for `{action}` at {offer:?} in {all:#?}"))
}

fn events(host: &Host, program: &str) -> usize {
    host.ledger().journal().read(program, 0).unwrap().len()
}

/// A backend by name, its journal, and what keeps it alive (a temporary file, a database).
type Backend = (&'static str, Arc<dyn Journal>, Box<dyn std::any::Any>);

/// The journals every test runs on: memory, SQLite, and PostgreSQL when there is one.
fn journals() -> Vec<Backend> {
    let mut all: Vec<Backend> = vec![("memory", Arc::new(MemoryLedger::new()), Box::new(()))];
    let (sqlite, guard) = cardrules_sqlite::SqliteLedger::temporary().unwrap();
    all.push(("sqlite", Arc::new(sqlite), Box::new(guard)));
    if let Some(database) = Database::fresh() {
        let ledger = cardrules_postgres::PostgresLedger::open(&database.url).unwrap();
        all.push(("postgres", Arc::new(ledger), Box::new(database)));
    }
    all
}

#[test]
fn bergen_cinema_allowance_counts_the_years_visits_and_ends_on_new_year() {
    let host = serving_all(Arc::new(MemoryLedger::new()), &shipped_policies());
    for day in ["2024-02-01", "2024-03-01", "2024-04-01"] {
        let decision = host
            .decide(&request(serde_json::json!({
                "program": "bergen", "card": "AK-1001", "action": "redeem",
                "offer": "bergen-kino", "at": format!("{day}T18:00:00+01:00"),
            })))
            .unwrap();
        assert!(decision.allow, "{decision:?}");
    }
    let before = events(&host, "bergen");
    let all = allowances(&host, "bergen", "AK-1001", "2024-05-01T12:00:00+02:00");
    assert_eq!(
        events(&host, "bergen"),
        before,
        "an allowance commits nothing"
    );

    let kino = find(&all, "redeem", Some("bergen-kino"));
    assert!(kino.allow, "{kino:#?}");
    let limits = kino.limits.as_deref().unwrap();
    let quota = limits
        .iter()
        .find(|l| l.reason == "quota-exhausted")
        .unwrap_or_else(|| panic!("no quota in {limits:#?}"));
    assert_eq!((quota.used, quota.limit, quota.remaining), (3, 4, 1));
    // The next 1 January, at local midnight in Bergen.
    assert_eq!(quota.until, Some(at("2025-01-01T00:00:00+01:00")));
    // Every offer of the catalogue is asked about, in order of its id.
    let offers: Vec<_> = all.allowances.iter().map(|a| a.offer.clone()).collect();
    let mut sorted = offers.clone();
    sorted.sort();
    assert_eq!(offers, sorted);
    assert_eq!(offers.len(), 10);

    // One visit later, none is left: the allowance says so with the rule's own reason.
    host.decide(&request(serde_json::json!({
        "program": "bergen", "card": "AK-1001", "action": "redeem",
        "offer": "bergen-kino", "at": "2024-05-02T18:00:00+02:00",
    })))
    .unwrap();
    let all = allowances(&host, "bergen", "AK-1001", "2024-05-03T12:00:00+02:00");
    let kino = find(&all, "redeem", Some("bergen-kino"));
    assert_eq!(
        (kino.allow, kino.reason.as_str()),
        (false, "quota-exhausted")
    );
    let quota = kino.limits.as_deref().unwrap();
    let quota = quota
        .iter()
        .find(|l| l.reason == "quota-exhausted")
        .unwrap();
    assert_eq!((quota.used, quota.remaining), (4, 0));
    // A new year: four visits again.
    let all = allowances(&host, "bergen", "AK-1001", "2025-01-02T12:00:00+01:00");
    let kino = find(&all, "redeem", Some("bergen-kino"));
    let quota = kino.limits.as_deref().unwrap();
    let quota = quota
        .iter()
        .find(|l| l.reason == "quota-exhausted")
        .unwrap();
    assert_eq!((kino.allow, quota.used, quota.remaining), (true, 0, 4));
}

#[test]
fn an_allowance_is_never_journaled_and_leaves_request_ids_alone() {
    let host = serving_all(Arc::new(MemoryLedger::new()), &shipped_policies());
    let before = events(&host, "bergen");
    let query = AllowanceQuery {
        at: Some(at("2024-03-01T18:00:00+01:00")),
        action: Some("redeem".into()),
        offer: Some("bergen-kino".into()),
        language: Some("en".into()),
    };
    let all = host
        .allowances("bergen", "AK-1001", &query)
        .unwrap()
        .unwrap();
    assert_eq!(all.allowances.len(), 1);
    assert_eq!(all.allowances[0].message, "The ticket is activated. Enjoy!");
    assert_eq!(events(&host, "bergen"), before);
    // A real request with an id afterwards is decided afresh, and counts from zero.
    let decision = host
        .decide(&request(serde_json::json!({
            "program": "bergen", "card": "AK-1001", "action": "redeem", "id": "r-1",
            "offer": "bergen-kino", "at": "2024-03-01T18:00:00+01:00", "explain": true,
        })))
        .unwrap();
    assert!(decision.allow && !decision.replayed, "{decision:?}");
    let quota = decision.checks.unwrap();
    let quota = quota
        .iter()
        .find(|c| c.reason == "quota-exhausted")
        .unwrap();
    assert_eq!(quota.used, Some(0));

    // Unknown cards are `None` (a 404); unknown actions, offers and languages the caller's.
    assert!(
        host.allowances("bergen", "NO-SUCH", &query)
            .unwrap()
            .is_none()
    );
    for (query, named) in [
        (
            AllowanceQuery {
                action: Some("void".into()),
                ..AllowanceQuery::default()
            },
            "`action`",
        ),
        (
            AllowanceQuery {
                offer: Some("no-such-offer".into()),
                ..AllowanceQuery::default()
            },
            "`offer`",
        ),
        (
            AllowanceQuery {
                language: Some("fr".into()),
                ..AllowanceQuery::default()
            },
            "`language`",
        ),
    ] {
        let e = host.allowances("bergen", "AK-1001", &query).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(e.to_string().contains(named), "{e}");
    }
}

#[test]
fn an_antwerp_benefit_allowance_names_the_benefit_and_its_expiry() {
    let host = serving_all(Arc::new(MemoryLedger::new()), &shipped_policies());
    // A-3002 holds 8 savings: two check-ins make the 10th, a benefit for six months.
    for day in ["2024-03-14", "2024-03-15"] {
        let decision = host
            .decide(&request(serde_json::json!({
                "program": "antwerpen", "card": "A-3002", "action": "check-in",
                "offer": "mas", "at": format!("{day}T10:00:00+01:00"),
            })))
            .unwrap();
        assert!(decision.allow, "{decision:?}");
    }
    let all = allowances(&host, "antwerpen", "A-3002", "2024-04-01T12:00:00+02:00");
    let benefit = find(&all, "redeem-benefit", Some("mas"));
    assert!(benefit.allow, "{benefit:#?}");
    let limit = benefit.limits.as_deref().unwrap();
    let limit = limit.iter().find(|l| l.reason == "no-benefit").unwrap();
    assert_eq!((limit.limit, limit.remaining), (1, 1));
    assert_eq!(benefit.uses.len(), 1, "{benefit:#?}");
    assert_eq!(benefit.uses[0].asset, "benefit");
    assert_eq!(benefit.uses[0].amount, 1);
    assert_eq!(
        benefit.uses[0].expires,
        Some(at("2024-09-15T10:00:00+02:00")),
        "six calendar months after it was granted"
    );
    // The price each offer costs this holder is there too.
    assert!(find(&all, "price", Some("mas")).price.is_some());
    // After it expires, nothing is left to use.
    let all = allowances(&host, "antwerpen", "A-3002", "2024-09-16T12:00:00+02:00");
    let benefit = find(&all, "redeem-benefit", Some("mas"));
    assert_eq!(
        (benefit.allow, benefit.reason.as_str()),
        (false, "no-benefit")
    );
    assert!(benefit.uses.is_empty());
}

#[test]
fn albertslund_daily_limit_remaining_after_a_purchase() {
    let host = serving_all(Arc::new(MemoryLedger::new()), &shipped_policies());
    // BK-2001: 200 kr, a daily limit of 60 kr and a purchase limit of 40 kr.
    let decision = host
        .decide(&request(serde_json::json!({
            "program": "albertslund", "card": "BK-2001", "action": "purchase",
            "offer": "bh-toast", "amount": 2500, "at": "2024-03-01T15:00:00+01:00",
        })))
        .unwrap();
    assert!(decision.allow, "{decision:?}");
    let all = allowances(&host, "albertslund", "BK-2001", "2024-03-01T16:00:00+01:00");
    let toast = find(&all, "purchase", Some("bh-toast"));
    assert!(toast.allow, "{toast:#?}");
    let limits = toast.limits.as_deref().unwrap();
    let daily = limits.iter().find(|l| l.reason == "daily-limit").unwrap();
    assert_eq!(
        (daily.used, daily.limit, daily.remaining),
        (2500, 6000, 3500)
    );
    assert_eq!(daily.until, Some(at("2024-03-02T00:00:00+01:00")));
    let per_purchase = limits
        .iter()
        .find(|l| l.reason == "purchase-limit")
        .unwrap();
    assert_eq!((per_purchase.used, per_purchase.remaining), (0, 4000));
    let funds = limits
        .iter()
        .find(|l| l.reason == "insufficient-funds")
        .unwrap();
    assert_eq!(funds.remaining, 20000 - 2500);
    // The parents blocked sweets: the allowance says so, by the rule's reason.
    let sweets = find(&all, "purchase", Some("bh-slik"));
    assert_eq!(
        (sweets.allow, sweets.reason.as_str()),
        (false, "category-blocked")
    );
    // Actions asked for the card, without an offer.
    assert!(find(&all, "top-up", None).allow);
    assert!(find(&all, "enable-auto-top-up", None).allow);
    // The next day, the whole daily limit again.
    let all = allowances(&host, "albertslund", "BK-2001", "2024-03-02T09:00:00+01:00");
    let toast = find(&all, "purchase", Some("bh-toast"));
    let daily = toast.limits.as_deref().unwrap();
    let daily = daily.iter().find(|l| l.reason == "daily-limit").unwrap();
    assert_eq!((daily.used, daily.remaining), (0, 6000));
}

#[test]
fn a_world_0_1_policy_answers_allowances_without_limits() {
    let host = serving_all(
        Arc::new(MemoryLedger::new()),
        &root().join("tests/fixtures/world-0.1"),
    );
    let all = allowances(&host, "bergen", "AK-1001", "2024-03-01T18:00:00+01:00");
    let kino = find(&all, "redeem", Some("bergen-kino"));
    assert!(kino.allow);
    assert!(kino.limits.is_none(), "{kino:#?}");
}

/// Albertslund's card replacement on every backend: the new card's statement holds the
/// old card's decisions, in order, and the old card's ends with its replacement.
#[test]
fn a_replaced_cards_statement_continues_on_the_new_card_on_every_backend() {
    for (name, journal, _guard) in journals() {
        let host = serving_all(journal, &shipped_policies());
        let decide = |value: serde_json::Value| {
            let decision = host.decide(&request(value)).unwrap();
            assert!(decision.allow, "{name}: {decision:?}");
        };
        decide(serde_json::json!({
            "program": "albertslund", "card": "BK-2002", "action": "purchase",
            "offer": "sg-aftensmad", "amount": 1500, "at": "2024-03-01T17:00:00+01:00",
        }));
        decide(serde_json::json!({
            "program": "albertslund", "card": "BK-2002", "action": "replace-card",
            "new-card": "BK-2102", "at": "2024-03-02T10:00:00+01:00",
        }));
        decide(serde_json::json!({
            "program": "albertslund", "card": "BK-2102", "action": "purchase",
            "offer": "sg-aftensmad", "amount": 1000, "at": "2024-03-03T17:00:00+01:00",
        }));
        // Another card's decision in between is not on this statement.
        decide(serde_json::json!({
            "program": "albertslund", "card": "BK-2001", "action": "top-up",
            "amount": 100, "at": "2024-03-03T18:00:00+01:00",
        }));

        let page = |card: &str, page: HistoryPage| -> History {
            host.history("albertslund", card, &page).unwrap().unwrap()
        };
        let all = HistoryPage::parse(None, None, None, None).unwrap();
        let new = page("BK-2102", all.clone());
        let kinds: Vec<_> = new
            .entries
            .iter()
            .map(|e| (e.kind, e.card.as_str(), e.action.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [
                (EntryKind::Registered, "BK-2002", None),
                (EntryKind::Decided, "BK-2002", Some("purchase")),
                (EntryKind::Replaced, "BK-2002", Some("replace-card")),
                (EntryKind::Decided, "BK-2102", Some("purchase")),
            ],
            "{name}"
        );
        assert!(new.entries.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(new.next, None);
        // Balances after each decision, as recorded: 75 kr, less 15, less the 25 kr fee
        // (the rest moved to the new card), less 10.
        let purchase = &new.entries[1];
        assert_eq!(purchase.balances.as_ref().unwrap()["DKK"], 6000, "{name}");
        assert_eq!(purchase.amount, Some(1500));
        assert_eq!(purchase.price, Some(1500));
        assert_eq!(purchase.message.as_deref(), Some("Godkendt."));
        assert_eq!(new.entries[2].new_card.as_deref(), Some("BK-2102"));
        assert_eq!(new.entries[3].balances.as_ref().unwrap()["DKK"], 2500);
        // The old card's statement stops at its replacement.
        let old = page("BK-2002", all);
        assert_eq!(old.entries.len(), 3, "{name}: {old:#?}");

        // Pages of one entry, by cursor, give the same entries.
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let one = page(
                "BK-2102",
                HistoryPage::parse(None, None, Some("1"), after.as_deref()).unwrap(),
            );
            paged.extend(one.entries);
            match one.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(paged, new.entries, "{name}");
        // A cursor of one card's statement is refused for another's.
        let first = page(
            "BK-2102",
            HistoryPage::parse(None, None, Some("1"), None).unwrap(),
        );
        let cursor = first.next.unwrap();
        let e = host
            .history(
                "albertslund",
                "BK-2001",
                &HistoryPage::parse(None, None, None, Some(&cursor)).unwrap(),
            )
            .unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("`after`"), "{e}");
        // A period: the purchases of 3 March only.
        let march_3 = page(
            "BK-2102",
            HistoryPage::parse(
                Some("2024-03-03T00:00:00+01:00"),
                Some("2024-03-04T00:00:00+01:00"),
                None,
                None,
            )
            .unwrap(),
        );
        assert_eq!(march_3.entries.len(), 1, "{name}: {march_3:#?}");
        assert_eq!(march_3.entries[0].card, "BK-2102");
        // An unknown card has no statement.
        assert!(
            host.history("albertslund", "NO-SUCH", &HistoryPage::default())
                .unwrap()
                .is_none()
        );
    }
}
