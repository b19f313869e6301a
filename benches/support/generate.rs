//! Generated Bergen journals for the benchmarks: `cards` holders registered on 1 January
//! 2024, then `events` redemptions over `years` years in time order, the cards
//! interleaved as tills interleave them (so that a card's events are spread over the
//! whole journal, as in a real one), each under its own request id and counting a visit
//! of one of the catalogue's offers, as the Bergen policy does.

use std::time::Instant;

use cardrules::Journal;
use cardrules::ledger::{Appended, Batch, Change, Effect};

/// 2024-01-01T00:00:00Z
pub const START: i64 = 1_704_067_200;

const OFFERS: [&str; 4] = ["bergen-kino", "akvariet", "kode-museum", "bymuseet-bryggen"];

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub cards: u64,
    /// Decisions (the registrations come on top).
    pub events: u64,
    pub years: u64,
}

/// The card ids [`generate`] registers.
pub fn card_ids(cards: u64) -> Vec<String> {
    (0..cards).map(|n| format!("GEN-{n:07}")).collect()
}

/// Appends the journal of `shape` to `journal` (which must hold nothing of `bergen`);
/// returns the card ids.
pub fn generate(journal: &dyn Journal, shape: Shape) -> Vec<String> {
    let ids = card_ids(shape.cards);
    let started = Instant::now();
    let mut seq = 0u64;
    let mut batch = Vec::with_capacity(20_000);
    let flush = |batch: &mut Vec<Change>, seq: &mut u64| {
        let appended = journal
            .append(&[Batch {
                program: "bergen",
                after: *seq,
                changes: batch,
            }])
            .unwrap();
        assert_eq!(appended, [Appended::Done]);
        *seq += batch.len() as u64;
        batch.clear();
    };
    for card in &ids {
        let holder = serde_json::from_value(serde_json::json!({
            "card": card, "birth-date": "2012-05-01", "municipality": "bergen"
        }))
        .unwrap();
        batch.push(Change::Registered {
            holder,
            at: Some(START),
        });
    }
    let span = (shape.years * 365 * 86_400) as f64;
    let decision = r#"{"allow":true,"reason":"ok","message":"Billetten er aktivert. God fornøyelse!","admitted":1,"price":0,"notes":[],"balances":{},"state":"active","policy":{"program":"bergen","version":"2024.1.0","digest":"sha256:00"}}"#;
    let cards = shape.cards.max(1);
    for n in 0..shape.events {
        let card = &ids[(n % cards) as usize];
        let at = START + (n as f64 * span / shape.events.max(1) as f64) as i64;
        let offer = OFFERS[((n / cards) % OFFERS.len() as u64) as usize];
        let id = format!("{card}-{}", n / cards);
        let request = format!(
            r#"{{"program":"bergen","card":"{card}","action":"redeem","at":"{}","offer":"{offer}","party":1,"id":"{id}"}}"#,
            jiff::Timestamp::from_second(at).unwrap()
        );
        batch.push(Change::Decided {
            card: card.clone(),
            at,
            request_id: Some(id),
            request,
            decision: decision.to_string(),
            effects: vec![Effect::Count {
                counter: format!("visit:{offer}"),
                amount: 1,
            }],
            digest: "sha256:00".into(),
            fuel: 1000,
        });
        if batch.len() >= 20_000 {
            flush(&mut batch, &mut seq);
        }
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut seq);
    }
    println!(
        "  generated {seq} events ({} cards, {} decisions over {} years) in {:.1} s",
        shape.cards,
        shape.events,
        shape.years,
        started.elapsed().as_secs_f64()
    );
    ids
}
