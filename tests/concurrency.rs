//! Real concurrency against the SQLite ledger: terminals with their own connections to one
//! ledger file race for the last øre of a balance and the last places of an activity.

use std::path::Path;
use std::sync::{Arc, Barrier};

use cardrules::{Decision, Holder, Host, Request, Sandbox, Trust};
use cardrules_sqlite::SqliteLedger;

mod support;
use support::files::shipped_policies;
use support::postgres::Database;

const TERMINALS: usize = 8;

/// One host per terminal, each with its own connection to `ledger`, sharing compiled programs.
fn terminals(ledger: &Path) -> Vec<Arc<Host>> {
    let policies = shipped_policies();
    let sandbox = Arc::new(Sandbox::new().unwrap());
    let first = Host::new(
        sandbox.clone(),
        Arc::new(SqliteLedger::open(ledger).unwrap()),
    )
    .with_trust(Trust::allow_unsigned());
    assert!(
        cardrules::loader::load_dir(&first, &policies)
            .unwrap()
            .is_empty()
    );
    let programs = first.programs();
    let mut hosts = vec![Arc::new(first)];
    for _ in 1..TERMINALS {
        let host = Host::new(
            sandbox.clone(),
            Arc::new(SqliteLedger::open(ledger).unwrap()),
        );
        for program in &programs {
            host.insert(program.clone());
        }
        hosts.push(Arc::new(host));
    }
    hosts
}

fn holder(json: &str) -> Holder {
    serde_json::from_str(json).unwrap()
}

fn request(json: &str) -> Request {
    serde_json::from_str(json).unwrap()
}

/// Fires one request per terminal at the same moment and returns the decisions.
fn race(hosts: &[Arc<Host>], request_for: impl Fn(usize) -> Request) -> Vec<Decision> {
    let barrier = Arc::new(Barrier::new(hosts.len()));
    let handles: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let (host, barrier, request) = (host.clone(), barrier.clone(), request_for(i));
            std::thread::spawn(move || {
                barrier.wait();
                host.decide(&request).unwrap()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn terminals_racing_for_the_last_ore_cannot_both_win() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = terminals(&dir.path().join("ledger.sqlite"));
    let card = r#"{"card":"RACE-1","birth-date":"2012-01-01","municipality":"albertslund",
                  "statuses":["member:storagergard"],"balances":{"DKK":1000}}"#;
    hosts[0].register("albertslund", &holder(card)).unwrap();
    let decisions = race(&hosts, |i| {
        request(&format!(
            r#"{{"program":"albertslund","card":"RACE-1","action":"purchase","offer":"sg-perler",
                 "amount":600,"at":"2024-05-07T16:00:00+02:00","id":"terminal-{i}"}}"#
        ))
    });
    let won = decisions.iter().filter(|d| d.allow).count();
    assert_eq!(won, 1, "{decisions:#?}");
    assert!(
        decisions
            .iter()
            .filter(|d| !d.allow)
            .all(|d| d.reason == "insufficient-funds")
    );
    let card = hosts[0]
        .card("albertslund", "RACE-1", 1_800_000_000)
        .unwrap()
        .unwrap();
    assert_eq!(card.balances.get("DKK"), Some(&400));
}

#[test]
fn cards_racing_for_the_last_places_of_an_activity_get_exactly_the_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = terminals(&dir.path().join("ledger.sqlite"));
    for i in 0..TERMINALS {
        let card =
            format!(r#"{{"card":"KID-{i}","birth-date":"2012-01-01","municipality":"bergen"}}"#);
        hosts[0].register("bergen", &holder(&card)).unwrap();
    }
    // `klatring-bratte-rom` has a capacity of 2 per semester.
    let decisions = race(&hosts, |i| {
        request(&format!(
            r#"{{"program":"bergen","card":"KID-{i}","action":"redeem","offer":"klatring-bratte-rom",
                 "at":"2024-08-01T09:00:00+02:00"}}"#
        ))
    });
    assert_eq!(
        decisions.iter().filter(|d| d.allow).count(),
        2,
        "{decisions:#?}"
    );
    assert!(
        decisions
            .iter()
            .filter(|d| !d.allow)
            .all(|d| d.reason == "fully-booked")
    );
}

/// Every shipped suite on a SQLite ledger (so the counters meet real day, week and year
/// boundaries in the journal's backend, not only in memory), and then the proof that the
/// ledger is its journal: a second handle rebuilds every card's holder, lots and counters
/// from the file alone and finds them equal to what the suite left.
#[test]
fn the_shipped_suites_pass_on_sqlite_and_their_ledgers_rebuild_from_the_journal() {
    let policies = shipped_policies();
    let sandbox = Arc::new(Sandbox::new().unwrap());
    let loader = Host::new(sandbox.clone(), Arc::new(cardrules::MemoryLedger::new()))
        .with_trust(Trust::allow_unsigned());
    assert!(
        cardrules::loader::load_dir(&loader, &policies)
            .unwrap()
            .is_empty()
    );
    let files = cardrules::suite::discover(&policies, &[]).unwrap();
    assert!(files.len() >= 10, "{files:?}");
    let mut steps = 0;
    for file in files {
        let loaded = cardrules::suite::load(&file).unwrap();
        let program = loader.program(&loaded.suite.program).unwrap();
        let (ledger, guard) = SqliteLedger::temporary().unwrap();
        let (report, host) =
            cardrules::suite::run_on(&sandbox, &program, &loaded, Arc::new(ledger)).unwrap();
        for step in &report.steps {
            assert!(step.passed(), "{} on SQLite: {step}", file.display());
        }
        steps += report.steps.len();
        let live = host.ledger().read(program.id(), |s| s.canonical()).unwrap();
        let reopened = cardrules::Ledger::new(Arc::new(SqliteLedger::open(&guard.file()).unwrap()));
        let rebuilt = reopened.read(program.id(), |s| s.canonical()).unwrap();
        assert_eq!(rebuilt, live, "{} rebuilt from its journal", file.display());
        assert!(
            live.contains("card "),
            "{}: the suite left no cards",
            file.display()
        );
        // Replayed against the very program that wrote it, nothing changes.
        let journal: Arc<dyn cardrules::Journal> =
            Arc::new(SqliteLedger::open(&guard.file()).unwrap());
        let suite_program = Arc::new(program.with_offers(&loaded.suite.offers).unwrap());
        let replayed = cardrules::replay::replay(
            &sandbox,
            &journal,
            &[suite_program],
            cardrules::replay::Window::default(),
        )
        .unwrap();
        // Every committed step is a recorded decision (dry runs are not recorded).
        assert!(
            replayed.replayed > 0 && replayed.replayed <= report.steps.len() as u64,
            "{}: {replayed:?}",
            file.display()
        );
        assert_eq!(replayed.changed, 0, "{}: {replayed:?}", file.display());
    }
    assert!(steps > 150, "{steps}");
}

/// Every shipped suite on PostgreSQL too, each on a fresh database, and the same rebuild.
#[test]
fn the_shipped_suites_pass_on_postgres_and_their_ledgers_rebuild_from_the_journal() {
    if Database::fresh().is_none() {
        return;
    }
    let policies = shipped_policies();
    let sandbox = Arc::new(Sandbox::new().unwrap());
    let loader = Host::new(sandbox.clone(), Arc::new(cardrules::MemoryLedger::new()))
        .with_trust(Trust::allow_unsigned());
    assert!(
        cardrules::loader::load_dir(&loader, &policies)
            .unwrap()
            .is_empty()
    );
    for file in cardrules::suite::discover(&policies, &[]).unwrap() {
        let database = Database::fresh().unwrap();
        let loaded = cardrules::suite::load(&file).unwrap();
        let program = loader.program(&loaded.suite.program).unwrap();
        let journal = Arc::new(cardrules_postgres::PostgresLedger::open(&database.url).unwrap());
        let (report, host) =
            cardrules::suite::run_on(&sandbox, &program, &loaded, journal).unwrap();
        for step in &report.steps {
            assert!(step.passed(), "{} on PostgreSQL: {step}", file.display());
        }
        let live = host.ledger().read(program.id(), |s| s.canonical()).unwrap();
        let other_host = cardrules::Ledger::new(Arc::new(
            cardrules_postgres::PostgresLedger::open(&database.url).unwrap(),
        ));
        let rebuilt = other_host.read(program.id(), |s| s.canonical()).unwrap();
        assert_eq!(rebuilt, live, "{} rebuilt from its journal", file.display());
    }
}

/// Many tills of one program deciding at once, each mostly for its own card (whose
/// evaluations the host runs in parallel and keeps when nothing they read changed), some
/// for a neighbour's card (the same quota), some for the same few places of an activity,
/// and pairs sending the same request id. Then: nothing exceeds a limit, every allowed
/// decision counted exactly once, the ledger rebuilds from its journal, and — the proof
/// that the journal's order is a serial order — deciding the journal's requests again in
/// that order on a fresh ledger answers every one exactly as it was answered.
#[test]
fn many_cards_of_one_program_decided_at_once_stay_serializable() {
    const TILLS: usize = 16;
    const ROUNDS: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger.sqlite");
    let host = terminals(&file).swap_remove(0);
    for i in 0..TILLS {
        let card =
            format!(r#"{{"card":"KID-{i}","birth-date":"2012-01-01","municipality":"bergen"}}"#);
        host.register("bergen", &holder(&card)).unwrap();
    }
    let at = "2024-08-01T09:00:00+02:00";
    let ask = |card: usize, offer: &str, id: &str| {
        request(&format!(
            r#"{{"program":"bergen","card":"KID-{card}","action":"redeem","offer":"{offer}",
                 "at":"{at}","id":"{id}"}}"#
        ))
    };
    let barrier = Arc::new(Barrier::new(TILLS));
    let handles: Vec<_> = (0..TILLS)
        .map(|till| {
            let (host, barrier) = (host.clone(), barrier.clone());
            let requests: Vec<Request> = (0..ROUNDS)
                .map(|round| match round % 4 {
                    // Its own card, a yearly limit of 4 (kino) and of 2 (akvariet).
                    0 => ask(till, "bergen-kino", &format!("t{till}-r{round}")),
                    1 => ask(till, "akvariet", &format!("t{till}-r{round}")),
                    // The neighbour's card: two tills race for one quota.
                    2 => ask(
                        (till + 1) % TILLS,
                        "bergen-kino",
                        &format!("t{till}-r{round}"),
                    ),
                    // Everyone for 2 places (capacity over all cards), or, for half the
                    // tills in the last round, the same id as another till.
                    _ if round == ROUNDS - 1 => ask(
                        till % (TILLS / 2),
                        "akvariet",
                        &format!("same-{}", till % (TILLS / 2)),
                    ),
                    _ => ask(till, "klatring-bratte-rom", &format!("t{till}-r{round}")),
                })
                .collect();
            std::thread::spawn(move || {
                barrier.wait();
                requests
                    .into_iter()
                    .map(|r| (r.clone(), host.decide(&r).unwrap()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let decided: Vec<(Request, Decision)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();

    // Limits held: per card and offer, and the activity's capacity over all cards.
    let allowed = |card: &str, offer: &str| {
        let mut ids: Vec<_> = decided
            .iter()
            .filter(|(r, d)| d.allow && r.card == card && r.offer.as_deref() == Some(offer))
            .map(|(r, _)| r.id.clone())
            .collect();
        ids.sort();
        ids.dedup(); // a replayed id is one decision
        ids.len()
    };
    for i in 0..TILLS {
        let card = format!("KID-{i}");
        assert!(allowed(&card, "bergen-kino") <= 4, "{card}: kino");
        assert!(allowed(&card, "akvariet") <= 2, "{card}: akvariet");
    }
    let places: usize = (0..TILLS)
        .map(|i| allowed(&format!("KID-{i}"), "klatring-bratte-rom"))
        .sum();
    assert_eq!(places, 2, "klatring-bratte-rom has 2 places");
    // The same id answers the same decision, whichever till came first.
    for pair in 0..TILLS / 2 {
        let id = format!("same-{pair}");
        let answers: Vec<&Decision> = decided
            .iter()
            .filter(|(r, _)| r.id.as_deref() == Some(&id))
            .map(|(_, d)| d)
            .collect();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].allow, answers[1].allow, "{id}");
        assert_eq!(answers[0].reason, answers[1].reason, "{id}");
        assert_eq!(
            answers.iter().filter(|d| d.replayed).count(),
            1,
            "{id}: one decided, one replayed"
        );
    }

    // Every allowed decision counted its visit once, and nothing else was counted.
    let distinct_allowed: usize = {
        let mut ids: Vec<_> = decided
            .iter()
            .filter(|(_, d)| d.allow)
            .map(|(r, _)| r.id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    let counted: u64 = host
        .ledger()
        .read("bergen", |state| {
            state
                .cards()
                .iter()
                .flat_map(|card| {
                    state
                        .counters_of(card)
                        .into_iter()
                        .filter(|c| c.starts_with("visit:"))
                        .map(|c| state.entries(card, c).iter().map(|&(_, n)| n).sum::<u64>())
                        .collect::<Vec<_>>()
                })
                .sum()
        })
        .unwrap();
    assert_eq!(counted, distinct_allowed as u64);
    let stats = host.ledger().stats();
    assert!(stats.proposals_stood > 0, "{stats:?}");

    // The ledger is its journal.
    let live = host.ledger().read("bergen", |s| s.canonical()).unwrap();
    let reopened = cardrules::Ledger::new(Arc::new(SqliteLedger::open(&file).unwrap()));
    assert_eq!(reopened.read("bergen", |s| s.canonical()).unwrap(), live);

    // The journal's order is a serial order: decided again one by one in that order, on
    // a fresh ledger, every decision comes out as it was answered, fuel included.
    use cardrules::Journal as _;
    let journal = SqliteLedger::open(&file).unwrap();
    let again = Host::new(
        host.sandbox().clone(),
        Arc::new(cardrules::MemoryLedger::new()),
    );
    again.insert(host.program("bergen").unwrap());
    let mut compared = 0;
    for event in journal.read("bergen", 0).unwrap() {
        match event.change {
            cardrules::ledger::Change::Registered { holder, .. } => {
                again.register("bergen", &holder).unwrap();
            }
            cardrules::ledger::Change::Decided {
                request, decision, ..
            } => {
                let (request, recorded) =
                    cardrules::ledger::decode_decided("bergen", event.seq, &request, &decision)
                        .unwrap();
                let replayed = again.decide(&request).unwrap();
                let outcome = |d: &Decision| {
                    (
                        d.allow,
                        d.reason.clone(),
                        d.admitted,
                        d.price,
                        d.fuel,
                        d.balances.clone(),
                    )
                };
                assert_eq!(
                    outcome(&replayed),
                    outcome(&recorded),
                    "event {} ({:?})",
                    event.seq,
                    request.id
                );
                compared += 1;
            }
            other => panic!("no holder is erased or restricted here: {other:?}"),
        }
    }
    assert_eq!(compared, distinct_decisions(&decided));
    assert_eq!(
        again.ledger().read("bergen", |s| s.canonical()).unwrap(),
        live
    );
}

/// How many decisions were recorded: one per request id.
fn distinct_decisions(decided: &[(Request, Decision)]) -> usize {
    let mut ids: Vec<_> = decided.iter().map(|(r, _)| r.id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids.len()
}
