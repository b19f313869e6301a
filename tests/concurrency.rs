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
