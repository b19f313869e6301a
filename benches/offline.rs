//! What a venue cut off from its city for a whole day still decides (docs/offline.md):
//! `cargo bench --bench offline [-- --cards N --requests N --upload N]`.
//!
//! For each program, a city with generated holders lends a venue its lease in the
//! morning; then the link drops for the day. A day of generated till traffic is decided
//! twice: by the venue alone, under its lease, and by a twin of the city that never lost
//! anyone (what the city would have decided, in the same order). The figure is the share
//! of the decisions the city would have allowed that the venue allowed alone. In the
//! evening the venue uploads what it decided; the city verifies and appends it, and the
//! final order is asked again decision by decision (no violation may be found). Then
//! `--upload` decisions made alone are uploaded in chunks of 500, as a venue does, and
//! timed. Nothing is asserted about speed: the figures are printed (README, "Offline").

use std::sync::Arc;

#[path = "../tests/support/final_order.rs"]
mod final_order;
use std::time::Instant;

use cardrules::ledger::{Batch, Change};
use cardrules::offline::Uploaded;
use cardrules::{Decision, Holder, Host, Journal, MemoryLedger, Program, Request, Sandbox, Trust};

fn main() {
    let mut cards = 2_000usize;
    let mut requests = 4_000usize;
    let mut upload = 10_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .and_then(|v| v.parse().ok())
                .expect("a number after the flag")
        };
        match arg.as_str() {
            "--cards" => cards = value(),
            "--requests" => requests = value(),
            "--upload" => upload = value(),
            _ => {} // `--bench`, from cargo
        }
    }
    let sandbox = Arc::new(Sandbox::new().expect("sandbox"));
    let loader = Host::new(sandbox.clone(), Arc::new(MemoryLedger::new()))
        .with_trust(Trust::allow_unsigned());
    let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let refused = cardrules::loader::load_dir(&loader, &policies).expect("loads");
    assert!(refused.is_empty(), "{refused:?}");
    let programs = loader.programs();
    println!("a venue offline all day: {cards} cards, {requests} requests a day each");
    println!(
        "| program, venue, rule | the city would allow | the venue allowed alone | share | kept for the city (allowed when back) | violations |"
    );
    println!("|---|---|---|---|---|---|");
    for day in days() {
        let outcome = run_day(&sandbox, &programs, &day, cards, requests);
        println!(
            "| {} | {} | {} | {:.1} % | {} ({}) | {} |",
            day.title,
            outcome.city_allowed,
            outcome.both_allowed,
            100.0 * outcome.both_allowed as f64 / outcome.city_allowed.max(1) as f64,
            outcome.kept,
            outcome.kept_allowed,
            outcome.violations
        );
        if outcome.within_escrow > 0 {
            println!(
                "| … of which purchases within the escrow | {} | {} | {:.1} % | | |",
                outcome.within_escrow,
                outcome.within_escrow_allowed,
                100.0 * outcome.within_escrow_allowed as f64 / outcome.within_escrow as f64
            );
        }
    }
    // The evening upload, timed.
    let day = &days()[0];
    let (city, venue_host, items) =
        alone_decisions(&sandbox, &programs, day, upload.max(1) / 2 + 1, upload);
    let started = Instant::now();
    let mut appended = 0;
    for chunk in items.chunks(500) {
        let (done, _) = city
            .upload(day.program, day.venue, chunk.to_vec())
            .expect("uploads");
        appended += done.appended;
    }
    let took = started.elapsed();
    drop(venue_host);
    println!(
        "upload: {appended} decisions made alone, verified and appended at the city in {:.2} s ({:.0} µs each)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / appended.max(1) as f64
    );
}

/// One program's day at one venue.
struct Day {
    title: &'static str,
    program: &'static str,
    venue: &'static str,
    location: &'static str,
    holder: fn(usize, &mut fastrand::Rng) -> serde_json::Value,
    request: fn(&str, &str, &mut fastrand::Rng) -> serde_json::Value,
}

fn days() -> Vec<Day> {
    vec![
        Day {
            title: "bergen, Bergen kino: redeem (its own visits)",
            program: "bergen",
            venue: "bergen-kino",
            location: "bergen-kino",
            holder: |n, _| serde_json::json!({"card": format!("C{n}"), "birth-date": "2012-05-01", "municipality": if n % 10 == 0 { "askoy" } else { "bergen" }}),
            request: |card, id, rng| serde_json::json!({"program": "bergen", "card": card, "action": "redeem", "offer": "bergen-kino", "party": rng.u32(1..=2), "id": id}),
        },
        Day {
            title: "bergen, Brann fotballskole: redeem (leisure: the semester rule spans venues)",
            program: "bergen",
            venue: "brann",
            location: "brann-stadion",
            holder: |n, _| serde_json::json!({"card": format!("C{n}"), "birth-date": "2012-05-01", "municipality": "bergen"}),
            request: |card, id, _| serde_json::json!({"program": "bergen", "card": card, "action": "redeem", "offer": "brann-fotballskole", "id": id}),
        },
        Day {
            title: "albertslund, Bakkens Hjerte: purchase (escrow 100 kr a card)",
            program: "albertslund",
            venue: "bakkens-hjerte",
            location: "bakkens-hjerte",
            holder: |n, rng| {
                serde_json::json!({"card": format!("C{n}"), "birth-date": "2011-02-03", "municipality": "albertslund",
                "statuses": ["member:bakkens-hjerte"], "balances": {"DKK": rng.i64(0..40_000)},
                "attributes": if n % 4 == 0 { serde_json::json!({"daily-limit": 6000}) } else { serde_json::json!({}) }})
            },
            request: |card, id, rng| serde_json::json!({"program": "albertslund", "card": card, "action": "purchase", "offer": "bh-toast", "amount": rng.i64(1..30) * 100, "id": id}),
        },
        Day {
            title: "antwerpen, Permeke library: check-in (deferred: the 60 minutes span locations)",
            program: "antwerpen",
            venue: "permeke",
            location: "permeke",
            holder: |n, _| serde_json::json!({"card": format!("C{n}"), "birth-date": "2008-01-01", "municipality": "antwerpen", "statuses": ["antwerpenaar"]}),
            request: |card, id, _| serde_json::json!({"program": "antwerpen", "card": card, "action": "check-in", "offer": "bib-permeke", "id": id}),
        },
    ]
}

#[derive(Default)]
struct Outcome {
    city_allowed: usize,
    both_allowed: usize,
    kept: usize,
    violations: usize,
    /// Of those, the purchases that fit within what was escrowed to the venue (the
    /// card's spending that day, this one included, at most its escrow).
    within_escrow: usize,
    within_escrow_allowed: usize,
    /// Kept requests the city allowed once the venue was back.
    kept_allowed: usize,
}

fn host(sandbox: &Arc<Sandbox>, programs: &[Arc<Program>], journal: Arc<MemoryLedger>) -> Host {
    let host = Host::new(sandbox.clone(), journal).with_proposals(false);
    for program in programs {
        host.insert(program.clone());
    }
    host
}

/// A city with `cards` holders and a venue whose copy holds the city's journal, with its
/// lease.
fn city_and_venue(
    sandbox: &Arc<Sandbox>,
    programs: &[Arc<Program>],
    day: &Day,
    cards: usize,
    rng: &mut fastrand::Rng,
) -> (
    Host,
    Arc<MemoryLedger>,
    Host,
    Arc<MemoryLedger>,
    Vec<Holder>,
) {
    let city_journal = Arc::new(MemoryLedger::new());
    let city = host(sandbox, programs, city_journal.clone());
    let mut holders = Vec::new();
    for n in 0..cards {
        let holder: Holder = serde_json::from_value((day.holder)(n, rng)).expect("a holder");
        city.register(day.program, &holder).expect("registers");
        holders.push(holder);
    }
    city.lease(day.program, day.venue, &[day.location.to_string()])
        .expect("leases");
    let copy = Arc::new(MemoryLedger::new());
    let changes: Vec<Change> = city_journal
        .read(day.program, 0)
        .expect("reads")
        .into_iter()
        .map(|e| e.change)
        .collect();
    copy.append(&[Batch {
        program: day.program,
        after: 0,
        changes: &changes,
    }])
    .expect("copies");
    let venue = host(sandbox, programs, copy.clone());
    (city, city_journal, venue, copy, holders)
}

/// Decides `request` at the venue alone; keeps its change in the venue's own view (its
/// journal here stands for the copy and the outbox together).
fn alone(
    venue: &Host,
    copy: &MemoryLedger,
    day: &Day,
    request: &Request,
    at: i64,
) -> (Decision, Uploaded) {
    let program = venue.program(day.program).expect("served");
    let mut request = request.clone();
    request.venue = Some(day.venue.to_string());
    if cardrules::offline::offline_rule(&program, &request.action)
        == cardrules::offline::Offline::Defer
    {
        let pending = cardrules::offline::pending(&program, &request);
        return (
            pending,
            Uploaded {
                request,
                decision: None,
            },
        );
    }
    let none = Arc::new(Vec::new());
    let tainted = Arc::new(Default::default());
    let (decision, change) = venue
        .decide_alone(day.venue, &request, at, &none, &tainted)
        .expect("decides alone");
    let after = copy.read(day.program, 0).expect("reads").len() as u64;
    copy.append(&[Batch {
        program: day.program,
        after,
        changes: &[change],
    }])
    .expect("keeps");
    (
        decision.clone(),
        Uploaded {
            request,
            decision: Some(decision),
        },
    )
}

fn requests_of(
    day: &Day,
    holders: &[Holder],
    count: usize,
    rng: &mut fastrand::Rng,
) -> Vec<Request> {
    // 2024-04-10, 08:00 to 20:00 local: a weekday at the till.
    let opens = 1_712_728_800i64;
    (0..count)
        .map(|n| {
            // A few regulars come often; most come once or twice.
            let card = if rng.u8(..10) < 3 {
                &holders[rng.usize(..holders.len().min(50))]
            } else {
                &holders[rng.usize(..holders.len())]
            };
            let mut json = (day.request)(&card.card, &format!("{}-{n}", day.venue), rng);
            let at = opens + (n as i64 * 43_200) / count as i64;
            json["at"] = serde_json::json!(
                jiff::Timestamp::from_second(at)
                    .expect("in range")
                    .to_string()
            );
            serde_json::from_value(json).expect("a request")
        })
        .collect()
}

fn run_day(
    sandbox: &Arc<Sandbox>,
    programs: &[Arc<Program>],
    day: &Day,
    cards: usize,
    requests: usize,
) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(7);
    let (city, city_journal, venue, copy, holders) =
        city_and_venue(sandbox, programs, day, cards, &mut rng);
    // The twin: the same city, never cut off (its journal, copied before the day).
    let twin_journal = Arc::new(MemoryLedger::new());
    let changes: Vec<Change> = city_journal
        .read(day.program, 0)
        .expect("reads")
        .into_iter()
        .map(|e| e.change)
        .filter(|c| !c.about_leases())
        .collect();
    twin_journal
        .append(&[Batch {
            program: day.program,
            after: 0,
            changes: &changes,
        }])
        .expect("copies");
    let twin = host(sandbox, programs, twin_journal);
    let mut outcome = Outcome::default();
    let mut items = Vec::new();
    let escrow = venue
        .tenure(day.program, day.venue)
        .expect("reads")
        .and_then(|t| t.lease)
        .map(|lease| lease.escrow)
        .unwrap_or_default();
    let mut spent: std::collections::HashMap<String, i64> = Default::default();
    for request in requests_of(day, &holders, requests, &mut rng) {
        let would = twin.decide(&request).expect("the twin decides");
        if would.allow
            && let Some(amount) = request.amount
        {
            let total = spent.entry(request.card.clone()).or_insert(0);
            *total += amount;
            if *total <= escrow.get(&request.card).copied().unwrap_or(0) {
                outcome.within_escrow += 1;
            }
        }
        let at = request.at.as_second();
        let (decision, item) = alone(&venue, &copy, day, &request, at);
        outcome.city_allowed += usize::from(would.allow);
        outcome.both_allowed += usize::from(would.allow && decision.allow);
        if would.allow
            && decision.allow
            && let Some(amount) = request.amount
            && spent
                .get(&request.card)
                .is_some_and(|t| *t <= escrow.get(&request.card).copied().unwrap_or(0))
        {
            let _ = amount;
            outcome.within_escrow_allowed += 1;
        }
        outcome.kept += usize::from(decision.pending);
        // (Allowed alone where the twin denied is no violation: the twin's day differs
        // from the venue's once it allowed what the venue could not, e.g. spending past
        // the escrow. A violation is an allow the city's final order denies: below.)
        items.push(item);
    }
    // The evening: uploaded, verified, appended; kept requests decided by the city.
    for chunk in items.chunks(500) {
        match city.upload(day.program, day.venue, chunk.to_vec()) {
            Ok((_, kept)) => {
                outcome.kept_allowed += kept.iter().filter(|k| k.decision.allow).count()
            }
            Err(e) => {
                eprintln!("{}: the upload was refused: {e}", day.title);
                outcome.violations += chunk.len();
            }
        }
    }
    // A violation: an allow made alone that the city's final order denies at its place.
    let fresh_journal = Arc::new(MemoryLedger::new());
    let fresh = host(sandbox, programs, fresh_journal.clone());
    let denied = final_order::denied_in_final_order(
        city_journal.as_ref(),
        day.program,
        &fresh,
        &fresh_journal,
    )
    .expect("the final order builds");
    outcome.violations += denied.len();
    outcome
}

/// A city and `count` decisions its venue made alone, ready to upload.
fn alone_decisions(
    sandbox: &Arc<Sandbox>,
    programs: &[Arc<Program>],
    day: &Day,
    cards: usize,
    count: usize,
) -> (Host, Host, Vec<Uploaded>) {
    let mut rng = fastrand::Rng::with_seed(11);
    let (city, _, venue, copy, holders) = city_and_venue(sandbox, programs, day, cards, &mut rng);
    let items = requests_of(day, &holders, count, &mut rng)
        .iter()
        .map(|request| alone(&venue, &copy, day, request, request.at.as_second()).1)
        .collect();
    (city, venue, items)
}
