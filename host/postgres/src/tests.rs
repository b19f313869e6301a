//! The PostgreSQL ledger against a real server (`CARDRULES_TEST_POSTGRES`): the
//! conformance suite, schema creation, races for a position, and lost connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cardrules::Error;
use cardrules::ledger::{Appended, Batch, Change, Journal};
use parking_lot::Mutex;
use postgres::Client;

use crate::config::configure;
use crate::schema::SCHEMA_VERSION;
use crate::{PostgresLedger, event_counts, recorded_decision};

/// The server the tests use, or `None` (and a note) when none is configured.
pub(crate) fn server() -> Option<String> {
    match std::env::var("CARDRULES_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to stderr: the test harness captures `eprintln!` of passing tests.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: set CARDRULES_TEST_POSTGRES=postgres://… to run the PostgreSQL tests"
            );
            None
        }
    }
}

static NEXT_SCHEMA: AtomicU64 = AtomicU64::new(0);

/// A schema of its own on the test server, dropped with everything in it at the end:
/// tests running at once, and leftovers of earlier runs, never meet.
pub(crate) struct Scratch {
    server: String,
    schema: String,
    /// The server's URL with the schema as `search_path` (and an application name
    /// of its own, to find its connections).
    pub(crate) url: String,
}

impl Scratch {
    pub(crate) fn new(server: &str) -> Scratch {
        let schema = format!(
            "cardrules_test_{}_{}",
            std::process::id(),
            NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = connect(server);
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
            ))
            .expect("a scratch schema is created");
        let separator = if server.contains('?') { '&' } else { '?' };
        let url = format!(
            "{server}{separator}options=-csearch_path%3D{schema}&application_name={schema}"
        );
        Scratch {
            server: server.to_string(),
            schema,
            url,
        }
    }

    /// A connection of the test itself, in the scratch schema.
    fn admin(&self) -> Client {
        let mut client = connect(&self.server);
        client
            .batch_execute(&format!("SET search_path = {}", self.schema))
            .expect("search_path is set");
        client
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = connect(&self.server)
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
    }
}

fn connect(url: &str) -> Client {
    let target = configure(url, &|name| std::env::var(name).ok()).expect("the test URL parses");
    target
        .config
        .connect(target.tls.connector)
        .expect("the test server is reachable")
}

fn decided(card: &str, request_id: Option<&str>) -> Change {
    Change::Decided {
        card: card.into(),
        at: 42,
        request_id: request_id.map(str::to_string),
        request: "{}".into(),
        decision: "{}".into(),
        effects: vec![],
        digest: "sha256:test".into(),
        fuel: 7,
    }
}

fn batch<'a>(program: &'a str, after: u64, changes: &'a [Change]) -> Batch<'a> {
    Batch {
        program,
        after,
        changes,
    }
}

#[test]
fn the_postgres_ledger_conforms() {
    let Some(server) = server() else { return };
    // Each journal's URL and schema, by the journal's address.
    let opened: Mutex<HashMap<usize, Scratch>> = Mutex::new(HashMap::new());
    let address = |journal: &Arc<dyn Journal>| Arc::as_ptr(journal).cast::<()>() as usize;
    let fresh = || -> Arc<dyn Journal> {
        let scratch = Scratch::new(&server);
        let journal: Arc<dyn Journal> =
            Arc::new(PostgresLedger::open(&scratch.url).expect("a fresh ledger opens"));
        opened.lock().insert(address(&journal), scratch);
        journal
    };
    let twin = |journal: &Arc<dyn Journal>| -> Arc<dyn Journal> {
        let url = opened.lock()[&address(journal)].url.clone();
        Arc::new(PostgresLedger::open(&url).expect("a second handle opens"))
    };
    cardrules::ledger::conformance::run_all(&fresh, &twin);
}

#[test]
fn a_ledger_of_a_newer_schema_is_refused() {
    let Some(server) = server() else { return };
    let scratch = Scratch::new(&server);
    drop(PostgresLedger::open(&scratch.url).expect("a fresh ledger opens"));
    scratch
        .admin()
        .batch_execute("UPDATE cardrules_schema SET version = 99")
        .expect("the version is changed");
    let Err(error) = PostgresLedger::open(&scratch.url) else {
        panic!("a newer schema must be refused");
    };
    assert!(matches!(error, Error::Ledger { .. }), "{error:?}");
    assert!(
        error.to_string().contains(
            "the ledger has schema version 99, newer than this cardrules reads (2); upgrade cardrules"
        ),
        "{error}"
    );
}

/// A ledger of schema 1 (the release before snapshots: no snapshot table) is migrated in
/// place, by one of the hosts opening it at once, with every event kept; from then on a
/// host of that release refuses it (it refuses every newer version: see the test above).
#[test]
fn a_ledger_of_the_release_before_is_migrated_in_place() {
    let Some(server) = server() else { return };
    let scratch = Scratch::new(&server);
    let ledger = PostgresLedger::open(&scratch.url).expect("a fresh ledger opens");
    let change = decided("B-1", Some("r-1"));
    let batch = batch("bergen", 0, std::slice::from_ref(&change));
    ledger.append(&[batch]).expect("appends");
    drop(ledger);
    scratch
        .admin()
        .batch_execute("DROP TABLE cardrules_snapshots; UPDATE cardrules_schema SET version = 1")
        .expect("the ledger is made one of schema 1");
    let hosts: Vec<_> = (0..4)
        .map(|_| {
            let url = scratch.url.clone();
            std::thread::spawn(move || PostgresLedger::open(&url).map(drop))
        })
        .collect();
    for host in hosts {
        host.join()
            .expect("joins")
            .expect("a host opens the ledger of schema 1");
    }
    let version: i32 = scratch
        .admin()
        .query_one("SELECT version FROM cardrules_schema", &[])
        .expect("reads")
        .get(0);
    assert_eq!(version, 2);
    let ledger = PostgresLedger::open(&scratch.url).expect("opens");
    let events = ledger.read("bergen", 0).expect("reads");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].change, change);
}

#[test]
fn hosts_creating_the_schema_at_once_all_succeed() {
    let Some(server) = server() else { return };
    let scratch = Scratch::new(&server);
    let start = std::sync::Barrier::new(6);
    std::thread::scope(|s| {
        let hosts: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    PostgresLedger::open(&scratch.url).map(drop)
                })
            })
            .collect();
        for host in hosts {
            host.join().expect("no panic").expect("every host opens");
        }
    });
    let rows = scratch
        .admin()
        .query("SELECT version FROM cardrules_schema", &[])
        .expect("the version reads");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), SCHEMA_VERSION);
}

#[test]
fn a_batch_losing_a_race_for_its_position_is_refused_alone() {
    let Some(server) = server() else { return };
    let scratch = Scratch::new(&server);
    let ledger = PostgresLedger::open(&scratch.url).expect("a fresh ledger opens");
    // Another host has written `p`'s first event and not yet committed.
    let mut other = scratch.admin();
    let mut theirs = other.transaction().expect("a transaction begins");
    let body = decided("X", None).to_row(1).expect("encodes").body;
    theirs
        .execute(
            "INSERT INTO cardrules_events (program, seq, kind, card, body) VALUES ('p', 1, 'decided', 'X', $1)",
            &[&body],
        )
        .expect("their event is inserted");
    let ours = [decided("A", None)];
    let outcome = std::thread::scope(|s| {
        let append = s.spawn(|| ledger.append(&[batch("q", 0, &ours), batch("p", 0, &ours)]));
        // Wait until our insert into `p` waits for theirs, then let theirs commit.
        let mut watcher = scratch.admin();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    &[&scratch.schema],
                )
                .expect("activity reads")
                .get(0);
            if waiting > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "our append never waited");
            std::thread::sleep(Duration::from_millis(20));
        }
        theirs.commit().expect("theirs commits");
        append.join().expect("no panic")
    });
    assert_eq!(
        outcome.expect("the append succeeds"),
        vec![Appended::Done, Appended::Conflict]
    );
    let p = ledger.read("p", 0).expect("p reads");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].change, decided("X", None));
    assert_eq!(ledger.read("q", 0).expect("q reads").len(), 1);
}

#[test]
fn the_columns_beside_the_body_are_filled() {
    let Some(server) = server() else { return };
    let scratch = Scratch::new(&server);
    let ledger = PostgresLedger::open(&scratch.url).expect("a fresh ledger opens");
    let changes = [decided("A", Some("till/1")), decided("B\0", None)];
    assert_eq!(
        ledger.append(&[batch("p", 0, &changes)]).expect("appends"),
        vec![Appended::Done]
    );
    let rows = scratch
        .admin()
        .query(
            "SELECT program, seq, kind, card, at, request_id, recorded_at > now() - interval '1 minute'
             FROM cardrules_events ORDER BY seq",
            &[],
        )
        .expect("the events read");
    let got: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {:?} {:?} {:?} {}",
                r.get::<_, String>(0),
                r.get::<_, i64>(1),
                r.get::<_, String>(2),
                r.get::<_, String>(3),
                r.get::<_, Option<i64>>(4),
                r.get::<_, Option<String>>(5),
                r.get::<_, bool>(6),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            r#"p 1 decided "A" Some(42) Some("till/1") true"#,
            "p 2 decided \"B\u{FFFD}\" Some(42) None true",
        ]
    );
    assert_eq!(
        event_counts(&ledger).expect("counts"),
        vec![("p".to_string(), 2)]
    );
    let recorded = recorded_decision(&ledger, "p", "till/1").expect("reads");
    assert_eq!(
        recorded.map(|body| Change::from_row("p", 1, &body).expect("decodes")),
        Some(decided("A", Some("till/1")))
    );
    assert_eq!(
        recorded_decision(&ledger, "p", "till/2").expect("reads"),
        None
    );
    // The body keeps the card as it was.
    let read: Vec<_> = ledger
        .read("p", 0)
        .expect("reads")
        .into_iter()
        .map(|e| e.change)
        .collect();
    assert_eq!(read, changes);
}

#[test]
fn a_request_id_recorded_twice_is_an_error_not_a_conflict() {
    let Some(server) = server() else { return };
    let scratch = Scratch::new(&server);
    let ledger = PostgresLedger::open(&scratch.url).expect("a fresh ledger opens");
    let first = [decided("A", Some("till/1"))];
    ledger.append(&[batch("p", 0, &first)]).expect("appends");
    let Err(error) = ledger.append(&[batch("p", 1, &first)]) else {
        panic!("a duplicate request id must fail");
    };
    assert!(matches!(error, Error::Ledger { .. }), "{error:?}");
    assert!(error.to_string().contains("already recorded"), "{error}");
    assert_eq!(ledger.read("p", 0).expect("reads").len(), 1);
}

#[test]
fn connections_the_server_closed_are_replaced() {
    let Some(server) = server() else { return };
    let scratch = Scratch::new(&server);
    let ledger = PostgresLedger::open(&scratch.url).expect("a fresh ledger opens");
    let one = [decided("A", None)];
    ledger.append(&[batch("p", 0, &one)]).expect("appends");
    let killed: i64 = scratch
        .admin()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&scratch.schema],
        )
        .expect("backends are terminated")
        .get(0);
    assert!(killed >= 1);
    assert_eq!(ledger.read("p", 0).expect("reads again").len(), 1);
    scratch
        .admin()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&scratch.schema],
        )
        .expect("backends are terminated");
    assert_eq!(
        ledger
            .append(&[batch("p", 1, &one)])
            .expect("appends again"),
        vec![Appended::Done]
    );
}

#[test]
fn an_unreachable_server_is_unavailable_quickly() {
    let start = Instant::now();
    let Err(error) = PostgresLedger::open("postgres://cardrules:hunter2@127.0.0.1:1/ledger") else {
        panic!("nothing listens on port 1");
    };
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("cannot connect to `postgres://cardrules@127.0.0.1:1/ledger`"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

/// Registers `card` in program `p` through the ledger's lanes and group commit.
fn register(ledger: &cardrules::Ledger, card: &str) -> cardrules::Result<()> {
    let holder = cardrules::inputs::holder(&format!(
        r#"{{"card":"{card}","birth-date":"2012-05-01","municipality":"bergen"}}"#
    ))
    .expect("a holder");
    ledger.submit("p", move |tx| {
        let change = Change::Registered {
            holder: holder.clone(),
            at: None,
        };
        tx.state()
            .apply_change(&change)
            .map_err(|refused| Error::Invalid(refused.0))?;
        Ok(cardrules::ledger::Staged {
            changes: vec![change],
            answer: (),
        })
    })
}

/// A row the server refuses (here by a check constraint; before ids were bounded, a row
/// too large for an index) fails only the job it belongs to: the others decided in the
/// same batch are committed.
#[test]
fn a_row_the_server_refuses_fails_only_its_own_job() {
    let Some(server) = server() else { return };
    let scratch = Scratch::new(&server);
    let journal = Arc::new(PostgresLedger::open(&scratch.url).expect("opens"));
    scratch
        .admin()
        .batch_execute(
            "ALTER TABLE cardrules_events ADD CONSTRAINT refuse_one CHECK (card <> 'REFUSED')",
        )
        .expect("the constraint is added");
    let ledger = Arc::new(cardrules::Ledger::new(journal.clone()));
    register(&ledger, "B-0").expect("registers");
    let (done, finished) = std::sync::mpsc::channel();
    ledger
        .read("p", |_| {
            // Queued while the lane is held: the three are decided as one batch.
            for card in ["B-1", "REFUSED", "B-2"] {
                let (ledger, done) = (ledger.clone(), done.clone());
                std::thread::spawn(move || {
                    let _ = done.send((card, register(&ledger, card)));
                });
            }
            std::thread::sleep(Duration::from_millis(300));
        })
        .expect("reads");
    for _ in 0..3 {
        let (card, outcome) = finished
            .recv_timeout(Duration::from_secs(30))
            .expect("answered");
        match card {
            "REFUSED" => {
                let e = outcome.expect_err("the refused row fails");
                assert!(e.to_string().contains("refuse_one"), "{e}");
            }
            _ => assert!(outcome.is_ok(), "{card}: {outcome:?}"),
        }
    }
    let mut cards: Vec<String> = journal
        .read("p", 0)
        .expect("reads")
        .iter()
        .map(|e| e.change.card().to_string())
        .collect();
    cards.sort();
    assert_eq!(cards, ["B-0", "B-1", "B-2"]);
}
