//! One conformance suite for every journal backend: each backend's tests call
//! [`run_all`] with a way to open a fresh, empty journal and a way to open a second
//! handle on the same one (as a second host would), so that every backend behaves the
//! same — the semantics are written once in [`State`], but storing, ordering and
//! refusing conflicting appends are each backend's own.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed check panics with its cause

use std::sync::Arc;

use super::*;

/// Opens a fresh, empty journal of the backend under test.
pub type Fresh<'a> = dyn Fn() -> Arc<dyn Journal> + 'a;
/// Opens another handle on the same journal, as another process or host would.
pub type Twin<'a> = dyn Fn(&Arc<dyn Journal>) -> Arc<dyn Journal> + 'a;

/// Runs every check; panics on the first failure.
pub fn run_all(fresh: &Fresh<'_>, twin: &Twin<'_>) {
    consumption_takes_the_earliest_expiry_first_and_skips_expired_units(fresh);
    transfers_keep_each_lots_expiry(fresh);
    overspending_is_refused_and_commits_nothing(fresh);
    moving_a_card_carries_holder_balances_and_counters_and_blocks_the_old_card(fresh);
    programs_do_not_see_each_others_data(fresh);
    amounts_at_the_edges_are_refused_never_wrapped(fresh);
    every_change_reads_back_as_written(fresh);
    a_stale_append_is_refused_and_writes_nothing(fresh);
    history_pages_by_card_position_and_time(fresh);
    the_state_rebuilt_from_the_journal_equals_the_live_state(fresh, twin);
    two_hosts_racing_for_the_last_units_cannot_both_win(fresh, twin);
    request_ids_are_found_in_the_journal_however_old(fresh, twin);
    a_host_starts_from_the_latest_snapshot_and_skips_damaged_ones(fresh, twin);
    counts_over_all_cards_are_every_cards_entries(fresh, twin);
    a_snapshot_starts_only_its_own_programs_journal(fresh, twin);
    a_journal_event_that_cannot_be_applied_changes_nothing(fresh);
    an_erasure_rewrites_the_holders_events_everywhere_and_changes_no_amount(fresh, twin);
    a_compacted_journal_starts_from_its_base_snapshot_and_keeps_the_state(fresh, twin);
    an_empty_journal_begins_at_another_journals_base_snapshot(fresh);
}

fn holder(card: &str) -> Holder {
    Holder {
        card: card.into(),
        birth_date: jiff::civil::date(2010, 1, 1),
        municipality: "antwerpen".into(),
        statuses: vec![],
        state: CardState::Active,
        attributes: Default::default(),
        balances: Default::default(),
    }
}

fn funded(card: &str, asset: &str, units: i64) -> Holder {
    let mut h = holder(card);
    h.balances.insert(asset.into(), units);
    h
}

fn register(ledger: &Ledger, program: &str, h: Holder) {
    ledger
        .submit(program, move |tx: &mut Tx<'_>| {
            let change = Change::Registered {
                holder: h.clone(),
                at: None,
            };
            tx.state()
                .apply_change(&change)
                .map_err(|r| crate::Error::Invalid(r.0))?;
            Ok(Staged {
                changes: vec![change],
                answer: (),
            })
        })
        .unwrap();
}

/// Applies `effects` as an allowed decision would, committing them unless refused.
fn decide(
    ledger: &Ledger,
    program: &str,
    card: &str,
    at: i64,
    effects: Vec<Effect>,
) -> Result<(), Refused> {
    let card = card.to_string();
    ledger
        .submit(program, move |tx: &mut Tx<'_>| {
            let mark = tx.state().mark();
            if let Err(refused) = tx.state().apply(&card, at, &effects) {
                tx.state().rollback(mark);
                return Ok(Staged::nothing(Err(refused)));
            }
            Ok(Staged {
                changes: vec![Change::Decided {
                    card: card.clone(),
                    at,
                    request_id: None,
                    request: "{}".into(),
                    decision: "{}".into(),
                    effects: effects.clone(),
                    digest: "sha256:test".into(),
                    fuel: 0,
                }],
                answer: Ok(()),
            })
        })
        .unwrap()
}

fn balance(ledger: &Ledger, program: &str, card: &str, asset: &str, at: i64) -> i64 {
    ledger
        .read(program, |s| s.balance(card, asset, at))
        .unwrap()
}

fn consume(asset: &str, amount: i64) -> Effect {
    Effect::Consume {
        asset: asset.into(),
        amount,
    }
}

fn grant(asset: &str, amount: i64, expires: Option<i64>) -> Effect {
    Effect::Grant {
        asset: asset.into(),
        amount,
        expires,
    }
}

fn count(counter: &str, amount: u64) -> Effect {
    Effect::Count {
        counter: counter.into(),
        amount,
    }
}

fn consumption_takes_the_earliest_expiry_first_and_skips_expired_units(fresh: &Fresh<'_>) {
    let ledger = Ledger::new(fresh());
    register(&ledger, "p", holder("A"));
    let grants = vec![
        grant("benefit", 1, Some(300)),
        grant("benefit", 1, Some(100)),
        grant("benefit", 1, Some(50)), // expired at 60
    ];
    decide(&ledger, "p", "A", 10, grants).unwrap();
    assert_eq!(balance(&ledger, "p", "A", "benefit", 60), 2);
    decide(&ledger, "p", "A", 60, vec![consume("benefit", 1)]).unwrap();
    let left: Vec<_> = ledger
        .read("p", |s| s.lots("A").iter().map(|l| l.expires).collect())
        .unwrap();
    assert_eq!(left, vec![Some(300), Some(50)]);
}

fn transfers_keep_each_lots_expiry(fresh: &Fresh<'_>) {
    let ledger = Ledger::new(fresh());
    register(&ledger, "p", holder("A"));
    register(&ledger, "p", holder("B"));
    decide(
        &ledger,
        "p",
        "A",
        1,
        vec![
            grant("benefit", 2, Some(100)),
            grant("benefit", 1, Some(200)),
        ],
    )
    .unwrap();
    let transfer = Effect::Transfer {
        to_card: "B".into(),
        asset: "benefit".into(),
        amount: 3,
    };
    decide(&ledger, "p", "A", 10, vec![transfer]).unwrap();
    let mut got: Vec<_> = ledger
        .read("p", |s| {
            s.lots("B")
                .iter()
                .map(|l| (l.amount, l.expires))
                .collect::<Vec<_>>()
        })
        .unwrap();
    got.sort();
    assert_eq!(got, vec![(1, Some(200)), (2, Some(100))]);
    assert_eq!(balance(&ledger, "p", "A", "benefit", 10), 0);
}

fn overspending_is_refused_and_commits_nothing(fresh: &Fresh<'_>) {
    let journal = fresh();
    let ledger = Ledger::new(journal.clone());
    register(&ledger, "p", funded("A", "DKK", 1000));
    let effects = vec![
        count("spend", 600),
        consume("DKK", 600),
        consume("DKK", 600),
    ];
    let refused = decide(&ledger, "p", "A", 5, effects).unwrap_err();
    assert_eq!(
        refused.0,
        "effect 3: card `A` holds 400 `DKK`, fewer than 600"
    );
    assert_eq!(balance(&ledger, "p", "A", "DKK", 5), 1000);
    assert_eq!(
        ledger
            .read("p", |s| s.count(Some("A"), "spend", 0, 100))
            .unwrap(),
        0
    );
    // Nor did anything reach the journal: a fresh reader sees the same.
    let reread = Ledger::new(journal);
    assert_eq!(balance(&reread, "p", "A", "DKK", 5), 1000);
}

fn moving_a_card_carries_holder_balances_and_counters_and_blocks_the_old_card(fresh: &Fresh<'_>) {
    let ledger = Ledger::new(fresh());
    let mut old = holder("A");
    old.statuses = vec!["kansentarief".into()];
    register(&ledger, "p", old);
    decide(
        &ledger,
        "p",
        "A",
        1,
        vec![grant("saving", 7, None), count("visits", 1)],
    )
    .unwrap();
    let moved = vec![
        Effect::MoveCard {
            new_card: "N".into(),
        },
        count("replaced", 1),
    ];
    decide(&ledger, "p", "A", 2, moved).unwrap();
    ledger
        .read("p", |s| {
            assert_eq!(
                s.holder("N").unwrap().statuses,
                vec!["kansentarief".to_string()]
            );
            assert_eq!(s.holder("A").unwrap().state, CardState::Blocked);
            assert_eq!(s.balance("N", "saving", 2), 7);
            assert_eq!(s.balance("A", "saving", 2), 0);
            // Usage history belongs to the holder; what came after the move stays behind.
            assert_eq!(s.count(Some("N"), "visits", 0, 10), 1);
            assert_eq!(s.count(Some("A"), "visits", 0, 10), 0);
            assert_eq!(s.count(Some("A"), "replaced", 0, 10), 1);
            assert_eq!(s.count(None, "visits", 0, 10), 1);
        })
        .unwrap();
}

fn programs_do_not_see_each_others_data(fresh: &Fresh<'_>) {
    let ledger = Ledger::new(fresh());
    register(&ledger, "one", holder("A"));
    decide(&ledger, "one", "A", 1, vec![count("visit", 1)]).unwrap();
    ledger
        .read("two", |s| {
            assert!(s.holder("A").is_none());
            assert_eq!(s.count(None, "visit", 0, 10), 0);
        })
        .unwrap();
}

fn amounts_at_the_edges_are_refused_never_wrapped(fresh: &Fresh<'_>) {
    let ledger = Ledger::new(fresh());
    register(&ledger, "p", funded("A", "DKK", 100));
    register(&ledger, "p", holder("B"));
    let refused = |effects: Vec<Effect>| decide(&ledger, "p", "A", 5, effects).is_err();
    assert!(refused(vec![grant("DKK", i64::MAX, None)]));
    assert!(refused(vec![grant("DKK", MAX_UNITS, None)]));
    assert!(refused(vec![grant("DKK", 0, None)]));
    assert!(refused(vec![grant("DKK", -5, None)]));
    assert!(refused(vec![consume("DKK", -5)]));
    assert!(refused(vec![consume("DKK", 0)]));
    assert!(refused(vec![consume("DKK", i64::MAX)]));
    assert!(refused(vec![count("visits", u64::MAX)]));
    assert!(refused(vec![count("visits", 0)]));
    assert!(refused(vec![Effect::Transfer {
        to_card: "B".into(),
        asset: "DKK".into(),
        amount: -1,
    }]));
    assert!(refused(vec![Effect::Transfer {
        to_card: "A".into(),
        asset: "DKK".into(),
        amount: 1,
    }]));
    assert!(refused(vec![Effect::Transfer {
        to_card: "nobody".into(),
        asset: "DKK".into(),
        amount: 1,
    }]));
    assert!(refused(vec![Effect::MoveCard {
        new_card: "B".into(),
    }]));
    // Up to the ceiling is fine; one more is refused, and nothing is poisoned for later reads.
    decide(
        &ledger,
        "p",
        "A",
        5,
        vec![grant("DKK", MAX_UNITS - 100, None)],
    )
    .unwrap();
    assert!(refused(vec![grant("DKK", 1, None)]));
    decide(
        &ledger,
        "p",
        "A",
        5,
        vec![count("visits", MAX_UNITS as u64)],
    )
    .unwrap();
    assert!(refused(vec![count("visits", 1)]));
    assert!(decide(&ledger, "p", "B", 5, vec![count("visits", 1)]).is_err()); // over all cards
    ledger
        .read("p", |s| {
            assert_eq!(s.balance("A", "DKK", 5), MAX_UNITS);
            assert_eq!(s.count(Some("A"), "visits", 0, 10), MAX_UNITS as u64);
        })
        .unwrap();
}

fn every_change_reads_back_as_written(fresh: &Fresh<'_>) {
    let journal = fresh();
    let mut h = funded("A", "DKK", 10);
    h.attributes
        .insert("daily-limit".into(), crate::AttributeValue::Integer(500));
    h.attributes.insert(
        "note".into(),
        crate::AttributeValue::Text("æøå \"x\"".into()),
    );
    let changes = vec![
        Change::Registered {
            holder: h,
            at: Some(1_709_312_400),
        },
        Change::Decided {
            card: "A".into(),
            at: -5,
            request_id: Some("till/1".into()),
            request: r#"{"x":1}"#.into(),
            decision: r#"{"allow":true}"#.into(),
            effects: vec![
                count("c", u64::MAX),
                grant("DKK", i64::MAX, Some(i64::MIN)),
                consume("DKK", 1),
                Effect::Transfer {
                    to_card: "B".into(),
                    asset: "DKK".into(),
                    amount: 1,
                },
                Effect::Forfeit {
                    asset: "saving".into(),
                },
                Effect::SetState {
                    state: CardState::Stopped,
                },
                Effect::MoveCard {
                    new_card: "N".into(),
                },
            ],
            digest: "sha256:ab".into(),
            fuel: u64::MAX,
        },
    ];
    let outcome = journal
        .append(&[Batch {
            program: "p",
            after: 0,
            changes: &changes,
        }])
        .unwrap();
    assert_eq!(outcome, vec![Appended::Done]);
    let events = journal.read("p", 0).unwrap();
    let read: Vec<_> = events.iter().map(|e| e.change.clone()).collect();
    assert_eq!(read, changes);
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(journal.read("p", 1).unwrap().len(), 1);
    assert!(journal.read("other", 0).unwrap().is_empty());
}

fn a_stale_append_is_refused_and_writes_nothing(fresh: &Fresh<'_>) {
    let journal = fresh();
    let one = [Change::Registered {
        holder: holder("A"),
        at: None,
    }];
    let two = [Change::Registered {
        holder: holder("B"),
        at: None,
    }];
    let batch = |program, after, changes| Batch {
        program,
        after,
        changes,
    };
    assert_eq!(
        journal.append(&[batch("p", 0, &one)]).unwrap(),
        vec![Appended::Done]
    );
    // Two batches in one append: the stale one is refused, the other program's written.
    assert_eq!(
        journal
            .append(&[batch("p", 0, &two), batch("q", 0, &two)])
            .unwrap(),
        vec![Appended::Conflict, Appended::Done]
    );
    assert_eq!(journal.read("p", 0).unwrap().len(), 1);
    assert_eq!(journal.read("q", 0).unwrap().len(), 1);
}

fn history_pages_by_card_position_and_time(fresh: &Fresh<'_>) {
    let journal = fresh();
    let decided = |card: &str, at: i64| Change::Decided {
        card: card.into(),
        at,
        request_id: None,
        request: "{}".into(),
        decision: "{}".into(),
        effects: vec![],
        digest: "sha256:00".into(),
        fuel: 0,
    };
    let changes = [
        Change::Registered {
            holder: holder("A"),
            at: None,
        },
        Change::Registered {
            holder: holder("B"),
            at: Some(100),
        },
        decided("A", 200),
        decided("B", 300),
        decided("A", 400),
        decided("C", 500),
    ];
    let appended = journal
        .append(&[Batch {
            program: "p",
            after: 0,
            changes: &changes,
        }])
        .unwrap();
    assert_eq!(appended, vec![Appended::Done]);
    // Another program's events for the same card are not this program's history.
    let other = [decided("A", 250)];
    journal
        .append(&[Batch {
            program: "q",
            after: 0,
            changes: &other,
        }])
        .unwrap();
    let cards = |names: &[&str]| names.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    let seqs = |cards: &[String], after, since, until, limit| {
        let query = HistoryQuery {
            cards,
            after,
            since,
            until,
            limit,
        };
        let events = journal.history("p", &query).unwrap();
        assert!(events.iter().all(|e| query.matches(&e.change)));
        events.iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    let a = cards(&["A"]);
    let ab = cards(&["B", "A"]);
    assert_eq!(seqs(&a, 0, None, None, 10), [1, 3, 5]);
    assert_eq!(seqs(&ab, 0, None, None, 10), [1, 2, 3, 4, 5]);
    // Pages: after a position, at most `limit`.
    assert_eq!(seqs(&ab, 0, None, None, 2), [1, 2]);
    assert_eq!(seqs(&ab, 2, None, None, 2), [3, 4]);
    assert_eq!(seqs(&ab, 4, None, None, 2), [5]);
    assert_eq!(seqs(&ab, 5, None, None, 2), Vec::<u64>::new());
    // Times: `since` included, `until` excluded, untimed events left out.
    assert_eq!(seqs(&ab, 0, Some(100), None, 10), [2, 3, 4, 5]);
    assert_eq!(seqs(&ab, 0, Some(200), Some(400), 10), [3, 4]);
    assert_eq!(seqs(&ab, 0, None, Some(200), 10), [2]);
    assert_eq!(seqs(&cards(&["Z"]), 0, None, None, 10), Vec::<u64>::new());
}

fn the_state_rebuilt_from_the_journal_equals_the_live_state(fresh: &Fresh<'_>, twin: &Twin<'_>) {
    let journal = fresh();
    let live = Ledger::new(journal.clone());
    register(&live, "p", funded("A", "DKK", 5000));
    register(&live, "p", holder("B"));
    for day in 0..20 {
        let at = day * 86_400;
        let _ = decide(
            &live,
            "p",
            "A",
            at,
            vec![count("spend", 100), consume("DKK", 100)],
        );
        let _ = decide(
            &live,
            "p",
            "B",
            at,
            vec![grant("benefit", 1, Some(at + 30 * 86_400))],
        );
        if day == 10 {
            decide(
                &live,
                "p",
                "A",
                at,
                vec![Effect::MoveCard {
                    new_card: "A2".into(),
                }],
            )
            .unwrap();
        }
    }
    let expected = live.read("p", |s| s.canonical()).unwrap();
    let rebuilt = Ledger::new(twin(&journal));
    assert_eq!(rebuilt.read("p", |s| s.canonical()).unwrap(), expected);
}

fn two_hosts_racing_for_the_last_units_cannot_both_win(fresh: &Fresh<'_>, twin: &Twin<'_>) {
    let journal = fresh();
    let first = Arc::new(Ledger::new(journal.clone()));
    let second = Arc::new(Ledger::new(twin(&journal)));
    register(&first, "p", funded("A", "DKK", 10));
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let ledger = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            std::thread::spawn(move || {
                decide(&ledger, "p", "A", 1, vec![consume("DKK", 3)]).is_ok()
            })
        })
        .collect();
    let won = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|&won| won)
        .count();
    assert_eq!(won, 3, "10 units, 3 each: exactly three can win");
    assert_eq!(balance(&first, "p", "A", "DKK", 1), 1);
    assert_eq!(balance(&second, "p", "A", "DKK", 1), 1);
}

/// Commits a decision without effects recorded under `id`.
fn record(ledger: &Ledger, program: &str, card: &str, id: &str) {
    let (card, id) = (card.to_string(), id.to_string());
    ledger
        .submit(program, move |tx: &mut Tx<'_>| {
            let recorded = Recorded {
                request: format!("{{\"id\":\"{id}\"}}"),
                decision: "{\"allow\":false}".into(),
            };
            tx.state().record(&id, recorded.clone());
            Ok(Staged {
                changes: vec![Change::Decided {
                    card: card.clone(),
                    at: 1,
                    request_id: Some(id.clone()),
                    request: recorded.request,
                    decision: recorded.decision,
                    effects: vec![],
                    digest: "sha256:test".into(),
                    fuel: 0,
                }],
                answer: (),
            })
        })
        .unwrap();
}

fn request_ids_are_found_in_the_journal_however_old(fresh: &Fresh<'_>, twin: &Twin<'_>) {
    let journal = fresh();
    let live = Ledger::new(journal.clone());
    register(&live, "p", holder("A"));
    record(&live, "p", "A", "id-1");
    let found = journal.recorded("p", "id-1").unwrap().unwrap();
    assert_eq!(found.request, r#"{"id":"id-1"}"#);
    assert_eq!(journal.recorded("p", "id-2").unwrap(), None);
    assert_eq!(journal.recorded("q", "id-1").unwrap(), None);
    // In the lane: known after its commit whatever the caller looked up, and unknown ids
    // are new only if the caller looked them up in the journal at or after a position
    // the state remembers everything since.
    let position = live.position("p");
    assert_eq!(position, 2);
    let seen = live
        .read("p", |s| {
            (
                s.recorded("id-1", Some(position)).unwrap().is_some(),
                s.recorded("id-1", None).unwrap().is_some(),
                s.recorded("id-2", Some(position)).unwrap().is_some(),
            )
        })
        .unwrap();
    assert_eq!(seen, (true, true, false));
    // Another host, started from a snapshot, remembers no id: it asks the journal.
    live.write_snapshot("p").unwrap();
    let other = Ledger::new(twin(&journal));
    let found = other
        .read("p", |s| s.recorded("id-1", Some(0)).unwrap())
        .unwrap();
    assert_eq!(found.map(|r| r.decision), Some(r#"{"allow":false}"#.into()));
}

fn a_host_starts_from_the_latest_snapshot_and_skips_damaged_ones(
    fresh: &Fresh<'_>,
    twin: &Twin<'_>,
) {
    let journal = fresh();
    let live = Ledger::new(journal.clone());
    register(&live, "p", funded("A", "DKK", 5000));
    register(&live, "p", holder("B"));
    let day = |n: i64| n * 86_400;
    for n in 0..10 {
        decide(
            &live,
            "p",
            "A",
            day(n),
            vec![count("spend", 100), consume("DKK", 100)],
        )
        .unwrap();
        decide(
            &live,
            "p",
            "B",
            day(n),
            vec![grant("benefit", 1, Some(day(n + 30)))],
        )
        .unwrap();
    }
    decide(
        &live,
        "p",
        "A",
        day(10),
        vec![Effect::MoveCard {
            new_card: "A2".into(),
        }],
    )
    .unwrap();
    let first = live.write_snapshot("p").unwrap();
    assert_eq!(first.seq, 23);
    assert_eq!(
        snapshot::verify(journal.as_ref(), "p").unwrap(),
        snapshot::Verdict::Same { seq: 23 }
    );
    // Events after the snapshot.
    decide(&live, "p", "A2", day(11), vec![count("spend", 5)]).unwrap();
    register(&live, "p", holder("C"));
    let expected = live.read("p", |s| s.canonical()).unwrap();

    let started = |journal: &Arc<dyn Journal>| {
        let ledger = Ledger::new(twin(journal));
        let state = ledger.read("p", |s| s.canonical()).unwrap();
        let info = ledger.snapshot_info();
        assert_eq!(info.len(), 1);
        let start = info[0].1.start.unwrap();
        (state, start.snapshot.map(|s| s.seq), start.replayed)
    };
    assert_eq!(started(&journal), (expected.clone(), Some(23), 2));

    // A newer snapshot whose bytes no longer match its checksum is skipped for the one
    // before it; so is one of a newer format.
    let mut damaged = journal.snapshots("p", 1).unwrap().remove(0);
    damaged.seq = 24;
    damaged.body[10] ^= 1;
    journal.save_snapshot(&damaged).unwrap();
    assert_eq!(started(&journal), (expected.clone(), Some(23), 2));
    assert!(matches!(
        snapshot::verify(journal.as_ref(), "p").unwrap(),
        snapshot::Verdict::Unusable { seq: 24, .. }
    ));
    let mut newer = Snapshot::of(journal.as_ref(), "p", &State::default()).unwrap();
    newer.seq = 25;
    newer.format = snapshot::FORMAT + 1;
    journal.save_snapshot(&newer).unwrap();
    // Both kept snapshots are unusable now: the start reads the whole journal.
    assert_eq!(started(&journal), (expected.clone(), None, 25));

    // A snapshot that is well-formed but wrong (its checksum made to fit) starts a wrong
    // state: `verify` is what finds it, naming the first difference.
    live.write_snapshot("p").unwrap();
    let good = journal.snapshots("p", 1).unwrap().remove(0);
    assert_eq!(good.seq, 25);
    let text = String::from_utf8(good.body.clone()).unwrap();
    let forged = text.replacen("\"DKK\",4000", "\"DKK\",4001", 1);
    assert_ne!(forged, text, "the forgery changes a balance");
    let forged = Snapshot {
        body: forged.into_bytes(),
        checksum: String::new(),
        ..good
    };
    let resealed = Snapshot {
        checksum: forged.reseal(),
        ..forged
    };
    journal.save_snapshot(&resealed).unwrap();
    match snapshot::verify(journal.as_ref(), "p").unwrap() {
        snapshot::Verdict::Differs {
            seq: 25,
            difference,
        } => {
            assert!(difference.contains("4001"), "{difference}");
        }
        other => panic!("a forged snapshot must differ: {other:?}"),
    }
}

/// A count over all cards is the sum of every card's entries, whether its tally over all
/// cards is built yet (the first count goes through every card, and asks for it) or not,
/// through refusals taken back, card moves, and a restart from a snapshot.
fn counts_over_all_cards_are_every_cards_entries(fresh: &Fresh<'_>, twin: &Twin<'_>) {
    let journal = fresh();
    let live = Ledger::new(journal.clone());
    register(&live, "p", funded("A", "DKK", 100));
    register(&live, "p", holder("B"));
    let all = |ledger: &Ledger, from: i64, to: i64| {
        ledger
            .read("p", |s| {
                (
                    s.count(None, "seat", from, to),
                    s.count_entries(None, "seat", from, to),
                )
            })
            .unwrap()
    };
    decide(&live, "p", "A", 10, vec![count("seat", 2)]).unwrap();
    decide(&live, "p", "B", 20, vec![count("seat", 3)]).unwrap();
    assert_eq!(all(&live, 0, 100), (5, 2)); // through every card
    assert_eq!(all(&live, 0, 100), (5, 2)); // from the tally built since
    assert_eq!(all(&live, 15, 100), (3, 1));
    // Refused: the count is taken back with the rest.
    decide(
        &live,
        "p",
        "B",
        30,
        vec![count("seat", 1), consume("DKK", 1)],
    )
    .unwrap_err();
    assert_eq!(all(&live, 0, 100), (5, 2));
    decide(
        &live,
        "p",
        "A",
        40,
        vec![Effect::MoveCard {
            new_card: "A2".into(),
        }],
    )
    .unwrap();
    decide(&live, "p", "A2", 50, vec![count("seat", 1)]).unwrap();
    assert_eq!(all(&live, 0, 100), (6, 3));
    assert_eq!(
        live.read("p", |s| s.count(None, "other", 0, 100)).unwrap(),
        0
    );
    live.write_snapshot("p").unwrap();
    let restarted = Ledger::new(twin(&journal));
    assert_eq!(all(&restarted, 0, 100), (6, 3));
    assert_eq!(all(&restarted, 0, 45), (5, 2));
}

/// How a fresh ledger over `journal` starts `program`: its state, the snapshot it started
/// from and how many events it read.
fn start_of(journal: &Arc<dyn Journal>, program: &str) -> (String, Option<u64>, u64) {
    let ledger = Ledger::new(journal.clone());
    ledger.snapshot_every(0);
    let state = ledger.read(program, |s| s.canonical()).unwrap();
    let start = ledger.snapshot_info()[0].1.start.unwrap();
    (state, start.snapshot.map(|s| s.seq), start.replayed)
}

/// A snapshot is used only on the journal it was taken from: not filed under another
/// program (same bytes, same checksum), not on a journal restored from an older backup
/// that ends before it, not on a journal that took another course after such a restore,
/// and not in the format before snapshots named their program and event. Each start
/// rebuilds from the journal instead, as the journal gives it.
fn a_snapshot_starts_only_its_own_programs_journal(fresh: &Fresh<'_>, twin: &Twin<'_>) {
    let journal = fresh();
    let live = Ledger::new(journal.clone());
    live.snapshot_every(0);
    for card in ["A", "B", "C", "D"] {
        register(&live, "p", funded(card, "DKK", 100));
    }
    for card in ["Q1", "Q2", "Q3", "Q4"] {
        register(&live, "q", holder(card));
    }
    let written = live.write_snapshot("p").unwrap();
    assert_eq!(written.seq, 4);
    assert_eq!(start_of(&twin(&journal), "p").1, Some(4), "its own journal");

    // Filed under `q`, at a position `q`'s journal has: refused, `q` is rebuilt from its
    // own events.
    let theirs = journal.snapshots("p", 1).unwrap().remove(0);
    journal
        .save_snapshot(&Snapshot {
            program: "q".into(),
            ..theirs.clone()
        })
        .unwrap();
    let q_alone = live.read("q", |s| s.canonical()).unwrap();
    assert_eq!(start_of(&twin(&journal), "q"), (q_alone, None, 4));
    assert!(matches!(
        snapshot::verify(journal.as_ref(), "q").unwrap(),
        snapshot::Verdict::Unusable { seq: 4, why } if why.contains("not of `q`")
    ));

    // The journal restored from a backup of two events, the snapshot (at event 4) kept.
    let restored = fresh();
    let backup = Ledger::new(restored.clone());
    backup.snapshot_every(0);
    register(&backup, "p", funded("A", "DKK", 100));
    register(&backup, "p", funded("B", "DKK", 100));
    restored.save_snapshot(&theirs).unwrap();
    let two = backup.read("p", |s| s.canonical()).unwrap();
    assert_eq!(start_of(&twin(&restored), "p"), (two, None, 2));
    match snapshot::verify(restored.as_ref(), "p").unwrap() {
        snapshot::Verdict::Unusable { seq: 4, why } => {
            assert!(why.contains("beyond the end of the journal"), "{why}")
        }
        other => panic!("a snapshot beyond the journal's end: {other:?}"),
    }
    // … and going on from there with other events: event 4 is not the snapshot's.
    register(&backup, "p", funded("X", "DKK", 7));
    register(&backup, "p", funded("Y", "DKK", 7));
    register(&backup, "p", funded("Z", "DKK", 7));
    let diverged = backup.read("p", |s| s.canonical()).unwrap();
    assert!(!diverged.contains("card C") && diverged.contains("card Z"));
    assert_eq!(start_of(&twin(&restored), "p"), (diverged, None, 5));
    match snapshot::verify(restored.as_ref(), "p").unwrap() {
        snapshot::Verdict::Unusable { seq: 4, why } => {
            assert!(why.contains("took another course"), "{why}")
        }
        other => panic!("a snapshot of another course: {other:?}"),
    }

    // A snapshot of the format before (its body the bare state) is not read.
    let state = live.read("p", |s| s.image()).unwrap();
    let body = serde_json::to_vec(&state).unwrap();
    let old = Snapshot {
        format: 1,
        checksum: crate::program::signing::digest(&body),
        body,
        ..theirs
    };
    let again = fresh();
    let ledger = Ledger::new(again.clone());
    for card in ["A", "B", "C", "D"] {
        register(&ledger, "p", funded(card, "DKK", 100));
    }
    again.save_snapshot(&old).unwrap();
    let four = ledger.read("p", |s| s.canonical()).unwrap();
    assert_eq!(start_of(&twin(&again), "p"), (four, None, 4));
}

/// An event the host cannot apply (written by a newer host, or edited) is taken back
/// whole when a state catches up: the effects before the refused one do not stay, so that
/// loading again and again never adds them up; the program decides nothing meanwhile, and
/// says why.
fn a_journal_event_that_cannot_be_applied_changes_nothing(fresh: &Fresh<'_>) {
    let journal = fresh();
    let writer = Ledger::new(journal.clone());
    register(&writer, "p", holder("A"));
    // Event 2: a grant of 100, then a consumption of 250 that only 3 loads' phantom
    // grants would allow.
    let refused = Change::Decided {
        card: "A".into(),
        at: 10,
        request_id: None,
        request: "{}".into(),
        decision: "{}".into(),
        effects: vec![grant("DKK", 100, None), consume("DKK", 250)],
        digest: "sha256:newer".into(),
        fuel: 0,
    };
    let appended = journal
        .append(&[Batch {
            program: "p",
            after: 1,
            changes: std::slice::from_ref(&refused),
        }])
        .unwrap();
    assert_eq!(appended, vec![Appended::Done]);

    let ledger = Ledger::new(journal.clone());
    ledger.snapshot_every(0);
    for _ in 0..5 {
        let error = ledger.read("p", |s| s.balance("A", "DKK", 20)).unwrap_err();
        let error = error.to_string();
        assert!(
            error.contains("event 2") && error.contains("cannot be applied"),
            "{error}"
        );
    }
    let decided = ledger.submit("p", |tx: &mut Tx<'_>| {
        let balance = tx.state().balance("A", "DKK", 30);
        Ok(Staged::nothing(balance))
    });
    assert!(decided.is_err(), "decided on {decided:?}");
    let failed = ledger.cannot_decide();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "p");
    assert!(failed[0].1.contains("event 2"), "{}", failed[0].1);

    // The state a catch-up leaves is the journal's up to the event before.
    let mut state = State::default();
    for _ in 0..3 {
        assert!(catch_up(journal.as_ref(), "p", &mut state, None).is_err());
        assert_eq!(state.seq(), 1);
        assert_eq!(state.balance("A", "DKK", 20), 0);
        assert!(state.lots("A").is_empty());
    }
}

/// Erasure: every event of the holder's cards before it is rewritten without the holder's
/// facts (in the journal the erasure is appended to, read back by any other handle), the
/// snapshots taken before it are dropped and none built before it is kept, other holders'
/// events stay as they were, and a state rebuilt from the rewritten journal — holders,
/// erased cards, lots, counters and earlier cards — equals the live one.
fn an_erasure_rewrites_the_holders_events_everywhere_and_changes_no_amount(
    fresh: &Fresh<'_>,
    twin: &Twin<'_>,
) {
    let journal = fresh();
    let live = Ledger::new(journal.clone());
    let mut erased = funded("E", "saving", 40);
    erased.municipality = "qx-erased-town".into();
    erased.statuses = vec!["qx-erased-status".into()];
    register(&live, "p", erased.clone());
    let mut kept = funded("K", "saving", 10);
    kept.statuses = vec!["qx-kept-status".into()];
    register(&live, "p", kept);
    for day in 0..6 {
        let at = day * 86_400;
        let acting = if day > 2 { "E2" } else { "E" };
        decide(
            &live,
            "p",
            acting,
            at,
            vec![count("visit", 1), consume("saving", 1)],
        )
        .unwrap();
        decide(&live, "p", "K", at, vec![count("visit", 1)]).unwrap();
        if day == 2 {
            decide(
                &live,
                "p",
                "E",
                at,
                vec![Effect::MoveCard {
                    new_card: "E2".into(),
                }],
            )
            .unwrap();
            // The holder's facts, changed on its new card: a registration like any other.
            let mut moved = erased.clone();
            moved.card = "E2".into();
            moved.balances.clear();
            moved.statuses.push("qx-erased-later".into());
            register(&live, "p", moved);
        }
    }
    let before = journal.read("p", 0).unwrap();
    let mut built = State::default();
    catch_up(journal.as_ref(), "p", &mut built, None).unwrap();
    let snapshot = Snapshot::of(journal.as_ref(), "p", &built).unwrap();
    journal.save_snapshot(&snapshot).unwrap();
    assert_eq!(journal.snapshots("p", 2).unwrap().len(), 1);
    let cards = live.read("p", |s| s.lineage("E2")).unwrap();
    assert_eq!(cards, vec!["E2".to_string(), "E".to_string()]);
    live.submit("p", move |tx: &mut Tx<'_>| {
        let change = Change::Erased {
            card: "E2".into(),
            at: 7 * 86_400,
            cards: cards.clone(),
            effects: vec![Effect::Forfeit {
                asset: "saving".into(),
            }],
            by: "ops".into(),
        };
        tx.state()
            .apply_change(&change)
            .map_err(|r| crate::Error::Invalid(r.0))?;
        Ok(Staged {
            changes: vec![change],
            answer: (),
        })
    })
    .unwrap();
    // The snapshot taken before the erasure is rewritten without the holder; one built
    // before it and saved after it is not kept.
    journal.save_snapshot(&snapshot).unwrap();
    let kept = journal.snapshots("p", 2).unwrap();
    assert_eq!(kept.len(), 1);
    let body = String::from_utf8_lossy(&kept[0].body).to_string();
    assert!(
        !body.contains("qx-erased") && body.contains("qx-kept-status"),
        "{body}"
    );

    let other = twin(&journal);
    let after = other.read("p", 0).unwrap();
    assert_eq!(after.len(), before.len() + 1);
    let text = |events: &[Event]| -> String {
        events
            .iter()
            .map(|e| e.change.to_row(e.seq as i64).unwrap().body)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (was, is) = (text(&before), text(&after));
    for value in ["qx-erased-town", "qx-erased-status", "qx-erased-later"] {
        assert!(was.contains(value), "{value}");
        assert!(
            !is.contains(value),
            "`{value}` is still in the journal:\n{is}"
        );
    }
    assert!(is.contains("qx-kept-status"));
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old.seq, new.seq);
        if !["E", "E2"].contains(&old.change.card()) {
            assert_eq!(old.change, new.change, "another holder's event changed");
        }
    }
    let expected = live.read("p", |s| s.canonical()).unwrap();
    assert!(expected.contains("card E2: erased"), "{expected}");
    // From the rewritten snapshot, and from the rewritten journal alone.
    let mut from_journal = State::default();
    catch_up(other.as_ref(), "p", &mut from_journal, None).unwrap();
    assert_eq!(from_journal.canonical(), expected);
    let rebuilt = Ledger::new(other);
    assert_eq!(rebuilt.read("p", |s| s.canonical()).unwrap(), expected);
    let started = rebuilt.snapshot_info();
    let start = started
        .iter()
        .find(|(p, _)| p == "p")
        .and_then(|(_, s)| s.start.as_ref())
        .expect("started");
    assert!(
        start.snapshot.is_some(),
        "started from the rewritten snapshot"
    );
    rebuilt
        .read("p", |s| {
            assert!(s.holder("E2").is_none() && s.holder("E").is_none());
            assert_eq!(s.balance("E2", "saving", 0), 0);
            assert_eq!(s.balance("K", "saving", 0), 10);
            assert_eq!(s.count(None, "visit", 0, 10 * 86_400), 12);
        })
        .unwrap();
    // Its number is not given to a holder again.
    let again = live.submit("p", |tx: &mut Tx<'_>| {
        let change = Change::Registered {
            holder: holder("E"),
            at: None,
        };
        tx.state()
            .apply_change(&change)
            .map_err(|r| crate::Error::Invalid(r.0))?;
        Ok(Staged::nothing(()))
    });
    assert!(again.is_err());
}

/// Compaction: the events before a base snapshot are removed in one commit; a host starts
/// from the base snapshot to the same state, appends go on, newer snapshots never rotate
/// the base out, verify rebuilds from it, and a compaction an erasure overtook is refused.
fn a_compacted_journal_starts_from_its_base_snapshot_and_keeps_the_state(
    fresh: &Fresh<'_>,
    twin: &Twin<'_>,
) {
    let journal = fresh();
    let live = Ledger::new(journal.clone());
    live.snapshot_every(0);
    register(&live, "p", funded("A", "DKK", 5000));
    register(&live, "p", holder("B"));
    for day in 0..30 {
        let at = day * 86_400;
        decide(
            &live,
            "p",
            "A",
            at,
            vec![count("visit", 1), consume("DKK", 10)],
        )
        .unwrap();
        decide(&live, "p", "B", at, vec![count("visit", 1)]).unwrap();
    }
    let mut state = snapshot::base_state(journal.as_ref(), "p").unwrap();
    catch_up(journal.as_ref(), "p", &mut state, Some(20)).unwrap();
    let base = Snapshot::of(journal.as_ref(), "p", &state).unwrap();
    let seen = live.read("p", |s| s.seq()).unwrap();
    assert_eq!(journal.compact(&base, seen).unwrap(), 19);
    let first = journal.read_page("p", 0, 1).unwrap();
    assert_eq!(first[0].seq, 20);
    let expected = live.read("p", |s| s.canonical()).unwrap();
    let other = Ledger::new(twin(&journal));
    other.snapshot_every(0);
    assert_eq!(other.read("p", |s| s.canonical()).unwrap(), expected);
    // Appends go on, at the positions after the journal's end.
    decide(&live, "p", "A", 31 * 86_400, vec![consume("DKK", 10)]).unwrap();
    assert_eq!(
        other.read("p", |s| s.balance("A", "DKK", 0)).unwrap(),
        5000 - 31 * 10
    );
    // Newer snapshots keep the base, which a start falls back to.
    for _ in 0..3 {
        decide(&live, "p", "B", 32 * 86_400, vec![count("visit", 1)]).unwrap();
        live.write_snapshot("p").unwrap();
    }
    let kept: Vec<u64> = journal
        .snapshots("p", 10)
        .unwrap()
        .iter()
        .map(|s| s.seq)
        .collect();
    assert!(kept.contains(&20), "{kept:?}");
    assert_eq!(kept.len(), snapshot::KEPT + 1, "{kept:?}");
    assert_eq!(
        snapshot::verify(journal.as_ref(), "p").unwrap(),
        snapshot::Verdict::Same {
            seq: *kept.iter().max().unwrap()
        }
    );
    // A compaction whose base was built before an erasure is refused, and changes nothing.
    let mut state = snapshot::base_state(journal.as_ref(), "p").unwrap();
    catch_up(journal.as_ref(), "p", &mut state, Some(40)).unwrap();
    let overtaken = Snapshot::of(journal.as_ref(), "p", &state).unwrap();
    let seen = live.read("p", |s| s.seq()).unwrap();
    live.submit("p", |tx: &mut Tx<'_>| {
        let change = Change::Erased {
            card: "B".into(),
            at: 33 * 86_400,
            cards: vec!["B".into()],
            effects: vec![],
            by: "ops".into(),
        };
        tx.state()
            .apply_change(&change)
            .map_err(|r| crate::Error::Invalid(r.0))?;
        Ok(Staged {
            changes: vec![change],
            answer: (),
        })
    })
    .unwrap();
    assert!(journal.compact(&overtaken, seen).is_err());
    assert_eq!(journal.read_page("p", 0, 1).unwrap()[0].seq, 20);
}

/// A venue joining a compacted city: an empty journal begins at the city's base snapshot
/// and the events from it, starts to the city's state, takes appends after them, and
/// refuses to begin again.
fn an_empty_journal_begins_at_another_journals_base_snapshot(fresh: &Fresh<'_>) {
    let city = fresh();
    let live = Ledger::new(city.clone());
    live.snapshot_every(0);
    register(&live, "p", funded("A", "DKK", 500));
    for day in 0..10 {
        decide(
            &live,
            "p",
            "A",
            day * 86_400,
            vec![consume("DKK", 1), count("visit", 1)],
        )
        .unwrap();
    }
    let mut state = snapshot::base_state(city.as_ref(), "p").unwrap();
    catch_up(city.as_ref(), "p", &mut state, Some(6)).unwrap();
    let base = Snapshot::of(city.as_ref(), "p", &state).unwrap();
    city.compact(&base, live.read("p", |s| s.seq()).unwrap())
        .unwrap();
    let (found, first) = snapshot::base_snapshot(city.as_ref(), "p")
        .unwrap()
        .unwrap();
    assert_eq!(first, 6);
    let found = found.expect("a base snapshot");
    let events: Vec<Change> = city
        .read("p", 0)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect();
    let venue = fresh();
    venue.adopt(&found, &events).unwrap();
    assert!(venue.adopt(&found, &events).is_err(), "begins once");
    let copy = Ledger::new(venue.clone());
    copy.snapshot_every(0);
    assert_eq!(
        copy.read("p", |s| s.canonical()).unwrap(),
        live.read("p", |s| s.canonical()).unwrap()
    );
    decide(&copy, "p", "A", 20 * 86_400, vec![consume("DKK", 1)]).unwrap();
    assert_eq!(venue.read("p", 0).unwrap().last().unwrap().seq, 12);
    assert_eq!(copy.read("p", |s| s.balance("A", "DKK", 0)).unwrap(), 489);
}
