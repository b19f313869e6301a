//! The decision pipeline's checks of what callers send, on the shipped programs over an
//! in-memory ledger: amounts out of range, retries that spell out defaults, starting
//! balances in assets a program does not have, holder attributes its schema does not
//! declare or types differently, and manifests above the host's ceilings.

use std::sync::Arc;

use cardrules::{Error, Host, MemoryLedger, Request};

mod support;
use support::files::shipped_policies;
use support::hosts::serving_all;

fn host() -> Host {
    serving_all(Arc::new(MemoryLedger::new()), &shipped_policies())
}

fn request(json: serde_json::Value) -> Request {
    serde_json::from_value(json).unwrap()
}

#[test]
fn amounts_outside_the_sane_range_are_the_callers_error_for_every_money_action() {
    let host = host();
    let actions = [
        ("albertslund", "BK-2002", "top-up", Some("sg-perler")),
        ("albertslund", "BK-2002", "purchase", Some("sg-perler")),
        ("antwerpen", "A-3001", "transfer", None),
    ];
    for (program, card, action, offer) in actions {
        for amount in [i64::MAX, -1, 0, i64::MIN, 1_000_000_000_000_001] {
            let mut json = serde_json::json!({
                "program": program, "card": card, "action": action,
                "at": "2024-05-07T16:00:00+02:00", "amount": amount,
                "asset": "saving", "to-card": "A-3002",
            });
            if let Some(offer) = offer {
                json["offer"] = offer.into();
            }
            let refused = host.decide(&request(json)).unwrap_err();
            assert!(refused.is_bad_input(), "{refused}");
            assert!(
                refused
                    .to_string()
                    .contains("`amount` must be between 1 and"),
                "{refused}"
            );
        }
    }
    // u64::MAX does not even parse as an amount.
    let json = r#"{"program":"albertslund","card":"BK-2002","action":"top-up","at":"2024-05-07T16:00:00+02:00","amount":18446744073709551615}"#;
    assert!(cardrules::inputs::request(json).is_err());
}

#[test]
fn a_retry_that_spells_out_the_default_party_is_the_same_request() {
    let host = host();
    let first = request(serde_json::json!({
        "program": "bergen", "card": "AK-1001", "action": "redeem", "offer": "bergen-kino",
        "at": "2024-03-01T18:00:00+01:00", "id": "till-7/0001",
    }));
    let decided = host.decide(&first).unwrap();
    assert!(decided.allow, "{decided:?}");
    let mut spelled = first.clone();
    spelled.party = Some(1);
    let again = host.decide(&spelled).unwrap();
    assert!(again.replayed, "{again:?}");
    let mut other = first;
    other.party = Some(2);
    assert!(matches!(host.decide(&other), Err(Error::IdReused(_))));
}

#[test]
fn starting_balances_must_be_in_the_programs_assets_and_in_range() {
    let host = host();
    let holder = |balances: serde_json::Value| -> cardrules::Holder {
        serde_json::from_value(serde_json::json!({
            "card": "NEW-1", "birth-date": "2012-01-01", "municipality": "albertslund",
            "balances": balances,
        }))
        .unwrap()
    };
    let gold = host.register("albertslund", &holder(serde_json::json!({"GOLD": 5})));
    let gold = gold.unwrap_err();
    assert!(gold.is_bad_input());
    assert!(gold.to_string().contains("has no asset `GOLD`"), "{gold}");
    let huge = host
        .register("albertslund", &holder(serde_json::json!({"DKK": i64::MAX})))
        .unwrap_err();
    assert!(huge.to_string().contains("must be between 0 and"), "{huge}");
    assert!(
        host.register("albertslund", &holder(serde_json::json!({"DKK": 500})))
            .unwrap()
    );
}

#[test]
fn a_manifest_asking_for_more_than_the_hosts_ceilings_is_refused() {
    let shipped = std::fs::read_to_string(shipped_policies().join("bergen/policy.toml")).unwrap();
    for (line, name) in [
        ("deadline-ms = 15000", "deadline-ms"),
        ("fuel = 100_000_000_000", "fuel"),
        ("max-effects = 100000", "max-effects"),
    ] {
        let asked = shipped.replace("[limits]\n", &format!("[limits]\n{line}\n"));
        let asked = asked
            .lines()
            .filter(|l| !(l.starts_with(name) && *l != line))
            .collect::<Vec<_>>()
            .join("\n");
        let refused = cardrules::inputs::manifest(&asked).unwrap_err();
        assert!(
            refused.to_string().contains(&format!("`{name}`"))
                && refused.to_string().contains("ceiling"),
            "{refused}"
        );
    }
}

#[test]
fn holder_attributes_must_be_declared_and_typed_when_registered() {
    let host = host();
    let holder = |attributes: serde_json::Value| -> cardrules::Holder {
        serde_json::from_value(serde_json::json!({
            "card": "NEW-2", "birth-date": "2012-01-01", "municipality": "albertslund",
            "attributes": attributes,
        }))
        .unwrap()
    };
    // What `PUT …/holders/NEW-2` sends: a bad-input error (400), nothing registered.
    for (attributes, message) in [
        (
            serde_json::json!({"daily-limit": "500"}),
            "holder `NEW-2`: `daily-limit` must be an integer of at least 0, not the text \"500\"",
        ),
        (
            serde_json::json!({"purchase-limit": -1}),
            "holder `NEW-2`: `purchase-limit` must be an integer of at least 0, not the integer -1",
        ),
        (
            serde_json::json!({"blocked-categories": true}),
            "holder `NEW-2`: `blocked-categories` must be text, not the boolean true",
        ),
        (
            serde_json::json!({"dailylimit": 500}),
            "holder `NEW-2`: `dailylimit` is not a holder attribute declared in `[schema.holder]`",
        ),
    ] {
        let refused = host
            .register("albertslund", &holder(attributes))
            .unwrap_err();
        assert!(refused.is_bad_input(), "{refused}");
        assert!(refused.to_string().starts_with(message), "{refused}");
        assert!(host.card("albertslund", "NEW-2", 0).unwrap().is_none());
    }
    // Bergen's policy reads no holder attribute: any is refused.
    let refused = host
        .register("bergen", &holder(serde_json::json!({"school": "x"})))
        .unwrap_err();
    assert!(
        refused.to_string().contains("(it declares none)"),
        "{refused}"
    );
    assert!(
        host.register(
            "albertslund",
            &holder(serde_json::json!({"daily-limit": 500, "blocked-categories": "sweets"}))
        )
        .unwrap()
    );
}

#[test]
fn a_time_the_calendar_cannot_use_is_the_callers_error_before_any_policy_runs() {
    // A check-in in year 9999 was a `policy-error` ("try again later": the calendar could
    // not compute the year's end); it is bad input, naming the range.
    for at in ["9999-12-30T21:59:59Z", "9999-12-30T10:00:00+01:00"] {
        let json = format!(
            r#"{{"program":"antwerpen","card":"A-3001","action":"check-in","offer":"mas","at":"{at}","dry-run":true}}"#
        );
        let refused = cardrules::inputs::request(&json).unwrap_err();
        assert!(refused.is_bad_input(), "{refused}");
        assert!(
            refused.to_string().contains(&format!(
                "`at`: `{at}` is out of range: times must lie from 1000-01-01T00:00:00Z to \
                 8999-12-31T23:59:59Z"
            )),
            "{refused}"
        );
    }
    // The last time in range decides: no host call overflows on it.
    let decision = host()
        .decide(&request(serde_json::json!({
            "program": "antwerpen", "card": "A-3001", "action": "check-in", "offer": "mas",
            "at": "8999-12-31T23:59:59Z", "dry-run": true,
        })))
        .unwrap();
    assert_ne!(decision.reason, "policy-error", "{decision:?}");
}

#[test]
fn a_reported_request_is_bounded_by_its_programs_lateness_and_skew_on_the_hosts_clock() {
    // The clock is set, not waited for.
    let now: jiff::Timestamp = "2024-05-07T14:00:00Z".parse().unwrap();
    let host = serving_all(Arc::new(MemoryLedger::new()), &shipped_policies())
        .with_clock(Arc::new(cardrules::FixedClock(now)));
    let kino = |at: &str, id: &str| {
        request(serde_json::json!({
            "program": "bergen", "card": "AK-1001", "action": "redeem", "offer": "bergen-kino",
            "at": at, "id": id,
        }))
    };
    let till = cardrules::Reporter::Till;
    let refused = |host: &cardrules::Host, request: &Request, reporter| {
        host.decide_as(request, reporter)
            .map(|(_, decision)| decision)
            .unwrap_err()
    };
    // 72 hours late, to the second: taken; a second more: refused, naming the bound.
    let (_, first) = host
        .decide_as(&kino("2024-05-04T14:00:00Z", "t/1"), till)
        .unwrap();
    assert!(first.allow, "{first:?}");
    let late = refused(&host, &kino("2024-05-04T13:59:59Z", "t/2"), till);
    assert!(late.is_bad_input(), "{late}");
    assert_eq!(
        late.to_string(),
        "`at` `2024-05-04T13:59:59Z` is 72h 1s late: program `bergen` takes requests at most \
         72h late (its `max-lateness`)"
    );
    // The year before, as the attack dated it: refused, nothing decided.
    let old = refused(&host, &kino("2023-05-07T14:00:00Z", "t/3"), till);
    assert_eq!(
        old.to_string(),
        "`at` `2023-05-07T14:00:00Z` is 8784h late: program `bergen` takes requests at most \
         72h late (its `max-lateness`)"
    );
    // A guardian asks at now, within 5 minutes.
    let person = cardrules::Reporter::Person;
    host.decide_as(&kino("2024-05-07T13:56:00Z", "p/1"), person)
        .unwrap();
    let earlier = refused(&host, &kino("2024-05-07T13:00:00Z", "p/2"), person);
    assert!(earlier.to_string().contains("`max-skew`"), "{earlier}");
    // A retry of a recorded id is answered its decision, however late it comes.
    let later =
        serving_all(host.ledger().journal().clone(), &shipped_policies()).with_clock(Arc::new(
            cardrules::FixedClock(now + jiff::SignedDuration::from_hours(24 * 30)),
        ));
    let (_, again) = later
        .decide_as(&kino("2024-05-04T14:00:00Z", "t/1"), till)
        .unwrap();
    assert!(again.replayed && again.allow, "{again:?}");
    // Suites and replay decide recorded times: `decide` has no bound.
    assert!(
        host.decide(&kino("2023-05-07T14:00:00Z", "t/4"))
            .unwrap()
            .allow
    );
}

#[test]
fn a_dry_run_with_a_recorded_id_replays_that_decision_or_refuses_the_id() {
    let host = host();
    let redeem = |id: &str, offer: &str, dry_run: bool| {
        request(serde_json::json!({
            "program": "bergen", "card": "AK-1001", "action": "redeem", "offer": offer,
            "at": "2024-03-01T18:00:00+01:00", "id": id, "dry-run": dry_run,
        }))
    };
    // A dry run with a new id records nothing: the same id still decides afresh later.
    let dry = host
        .decide(&redeem("till-1/1", "bergen-kino", true))
        .unwrap();
    assert!(dry.allow && dry.dry_run && !dry.replayed, "{dry:?}");
    let first = host
        .decide(&redeem("till-1/1", "bergen-kino", false))
        .unwrap();
    assert!(
        first.allow && !first.dry_run && !first.replayed,
        "{first:?}"
    );
    // Once the id is recorded, a dry run of the same request replays the decision …
    let again = host
        .decide(&redeem("till-1/1", "bergen-kino", true))
        .unwrap();
    assert!(again.replayed, "{again:?}");
    assert_eq!((again.allow, &again.reason), (first.allow, &first.reason));
    // … and a dry run of another request under that id is refused, as a real one is.
    let reused = host
        .decide(&redeem("till-1/1", "lagunen-kino", true))
        .unwrap_err();
    assert!(matches!(reused, Error::IdReused(_)), "{reused}");
}

/// Ids are checked at the door, whatever field they come in: empty, over 128 bytes, with
/// a control character, with whitespace around, or (card numbers and program ids, which
/// are path segments) with a `/`: the caller's error naming the field, nothing decided.
#[test]
fn ids_no_ledger_can_key_are_refused_naming_the_field() {
    let host = host();
    let replace = serde_json::json!({
        "program": "antwerpen", "card": "A-3001", "action": "replace-card",
        "at": "2025-04-03T09:00:00+02:00", "new-card": "A-3001-NEW",
    });
    let long = "9".repeat(60_000);
    let refused = [
        ("new-card", serde_json::json!("")),
        ("new-card", serde_json::json!(" ")),
        ("new-card", serde_json::json!("../BK-2001")),
        ("new-card", serde_json::json!(long)),
        ("new-card", serde_json::json!("A-3001-NEW\n")),
        ("card", serde_json::json!("A-3001\u{0}")),
        ("to-card", serde_json::json!("x".repeat(129))),
        ("offer", serde_json::json!(" mas")),
        ("id", serde_json::json!("till-7/\u{0}")),
        ("program", serde_json::json!("antwerpen\u{0}")),
    ];
    for (field, value) in refused {
        let mut json = replace.clone();
        json[field] = value;
        let e = host.decide(&request(json)).unwrap_err();
        assert!(e.is_bad_input(), "{field}: {e}");
        assert!(e.to_string().starts_with(&format!("`{field}` ")), "{e}");
        assert!(e.to_string().len() < 200, "{e}");
    }
    // Nothing was decided: the card was not moved anywhere.
    let card = host.card("antwerpen", "A-3001", 0).unwrap().unwrap();
    assert_eq!(card.state, cardrules::CardState::Active.as_str());
    // The same rule for a holder's card, a card read and a program named in a path.
    let mut holder: cardrules::Holder = serde_json::from_value(serde_json::json!({
        "card": "A/1", "birth-date": "2015-06-01", "municipality": "antwerpen",
    }))
    .unwrap();
    for card in ["A/1", "", " A-1", "A-\u{7f}1", &"A".repeat(200)] {
        holder.card = card.to_string();
        let e = host.register("antwerpen", &holder).unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().starts_with("`card` "),
            "{e}"
        );
    }
    let e = host.card("antwerpen", "A-3001\u{0}", 0).unwrap_err();
    assert!(
        e.is_bad_input() && e.to_string().starts_with("`card` "),
        "{e}"
    );
    let Err(e) = host.program("..") else {
        panic!("`..` is no program id");
    };
    assert!(
        e.is_bad_input() && e.to_string().starts_with("`program` "),
        "{e}"
    );
    // Ordinary ids still work, up to 128 bytes.
    let mut json = replace.clone();
    json["new-card"] = "N".repeat(128).into();
    json["id"] = "till-7/0001".into();
    let moved = host.decide(&request(json)).unwrap();
    assert!(moved.allow, "{moved:?}");
}

/// A card moved to a new card stays replaced: registering it again (a nightly sync of the
/// population register would) is refused naming the card its holder has now, and
/// changes nothing.
#[test]
fn a_replaced_card_cannot_be_registered_again() {
    let host = host();
    let replace = |card: &str, new_card: &str| {
        request(serde_json::json!({
            "program": "antwerpen", "card": card, "action": "replace-card",
            "at": "2025-04-03T09:00:00+02:00", "new-card": new_card,
        }))
    };
    assert!(host.decide(&replace("A-3001", "A-3001-NEW")).unwrap().allow);
    assert!(
        host.decide(&replace("A-3001-NEW", "A-3001-NEWER"))
            .unwrap()
            .allow
    );
    let holder: cardrules::Holder = serde_json::from_value(serde_json::json!({
        "card": "A-3001", "birth-date": "1988-02-17", "municipality": "antwerpen",
        "statuses": ["antwerpenaar"],
    }))
    .unwrap();
    for old in ["A-3001", "A-3001-NEW"] {
        let mut again = holder.clone();
        again.card = old.to_string();
        let e = host.register("antwerpen", &again).unwrap_err();
        assert!(matches!(e, Error::Replaced { .. }), "{e:?}");
        assert!(e.is_bad_input());
        assert_eq!(
            e.to_string(),
            format!(
                "card `{old}` of program `antwerpen` was replaced by card `A-3001-NEWER`: a \
                 replaced card stays replaced; register the holder on `A-3001-NEWER`"
            )
        );
        let card = host.card("antwerpen", old, 0).unwrap().unwrap();
        assert_eq!(card.state, cardrules::CardState::Blocked.as_str());
    }
    // The holder's card now may be registered (its facts replaced) as before.
    let mut now = holder.clone();
    now.card = "A-3001-NEWER".into();
    assert!(!host.register("antwerpen", &now).unwrap());
}
