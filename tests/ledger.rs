//! The ledger across releases and restarts: a ledger written by the previous release opens
//! with every card as it was, and a host started from snapshots holds the same state as
//! the host that wrote them, on SQLite and PostgreSQL.

use std::sync::Arc;

use cardrules::ledger::snapshot::{self, Verdict};
use cardrules::{Host, Journal, Ledger, Request, Sandbox, Trust};
use cardrules_sqlite::SqliteLedger;

mod support;
use support::files::{root, shipped_policies};
use support::postgres::Database;

/// A host serving the shipped programs over `journal`.
fn host(sandbox: &Arc<Sandbox>, journal: Arc<dyn Journal>) -> Host {
    let host = Host::new(sandbox.clone(), journal).with_trust(Trust::allow_unsigned());
    assert!(
        cardrules::loader::load_dir(&host, &shipped_policies())
            .unwrap()
            .is_empty()
    );
    host
}

/// Every card of the fixture as the previous release showed it.
fn check_cards(host: &Host, expected: &serde_json::Value) {
    let made = expected["made"].as_i64().unwrap();
    let cards = expected["cards"].as_array().unwrap();
    assert!(cards.len() > 40, "the fixture holds the suites' cards");
    for view in cards {
        let program = view["program"].as_str().unwrap();
        let card = view["card"].as_str().unwrap();
        let found = host.card(program, card, made).unwrap();
        let found = serde_json::to_value(found).unwrap();
        // Every field that release showed, as it showed it; fields added since (a card
        // view's `birth-date` and `municipality`) are additions, not differences.
        for (key, value) in view.as_object().unwrap() {
            assert_eq!(
                &found[key], value,
                "`{key}` of card `{card}` of `{program}`"
            );
        }
    }
}

/// The ledger file the release before snapshots wrote (schema 2; see the fixture's
/// `make.py`) opens, migrated in place: every card is as that release showed it, every
/// request id answers the decision that release recorded, and new decisions commit. Then
/// snapshots are written, checked against the journal, and a restart from them finds
/// every card as it was again.
#[test]
fn a_ledger_of_the_previous_release_opens_with_every_card_as_it_was() {
    let fixture = root().join("tests/fixtures/ledger-schema-2");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger.sqlite");
    std::fs::copy(fixture.join("ledger.sqlite"), &file).unwrap();
    let before = cardrules_sqlite::event_counts(&SqliteLedger::open(&file).unwrap()).unwrap();
    let sandbox = Arc::new(Sandbox::new().unwrap());

    let upgraded = host(&sandbox, Arc::new(SqliteLedger::open(&file).unwrap()));
    check_cards(&upgraded, &expected);
    let decisions = expected["decisions"].as_array().unwrap();
    assert!(
        decisions.len() >= 150,
        "the fixture holds the suites' steps"
    );
    for recorded in decisions {
        let request: Request = serde_json::from_value(recorded["request"].clone()).unwrap();
        let mut again = serde_json::to_value(upgraded.decide(&request).unwrap()).unwrap();
        assert_eq!(again["replayed"], true, "{request:?}");
        // The rest is the decision as recorded (the HTTP answer leaves `replayed` out
        // when false).
        let mut recorded = recorded["decision"].clone();
        for decision in [&mut again, &mut recorded] {
            decision.as_object_mut().unwrap().remove("replayed");
        }
        assert_eq!(
            again, recorded,
            "the decision recorded under `{:?}`",
            request.id
        );
    }
    // Retries commit nothing.
    let after = cardrules_sqlite::event_counts(&SqliteLedger::open(&file).unwrap()).unwrap();
    assert_eq!(after, before);

    for program in ["albertslund", "antwerpen", "bergen"] {
        upgraded.ledger().write_snapshot(program).unwrap();
        let journal = SqliteLedger::open(&file).unwrap();
        let verdict = snapshot::verify(&journal, program).unwrap();
        assert!(
            matches!(verdict, Verdict::Same { .. }),
            "{program}: {verdict:?}"
        );
    }
    drop(upgraded);
    let restarted = host(&sandbox, Arc::new(SqliteLedger::open(&file).unwrap()));
    check_cards(&restarted, &expected);
    for (program, info) in restarted.ledger().snapshot_info() {
        let start = info.start.unwrap();
        assert!(
            start.snapshot.is_some(),
            "`{program}` started from its snapshot"
        );
        assert_eq!(start.replayed, 0, "`{program}`: nothing after its snapshot");
    }
}

/// Opens another handle on a journal, as a restarted host would.
type Reopen = Box<dyn Fn() -> Arc<dyn Journal>>;

/// Every shipped suite, run on `journal_for(suite)`: a snapshot of its ledger equals the
/// state rebuilt from the journal, and a ledger started from the snapshot (and the
/// events after it) holds the state the suite left.
fn suites_restart_from_snapshots(journal_for: &dyn Fn() -> (Arc<dyn Journal>, Reopen)) {
    let policies = shipped_policies();
    let sandbox = Arc::new(Sandbox::new().unwrap());
    let loader = host(&sandbox, Arc::new(cardrules::MemoryLedger::new()));
    let files = cardrules::suite::discover(&policies, &[]).unwrap();
    assert!(files.len() >= 10);
    for file in files {
        let loaded = cardrules::suite::load(&file).unwrap();
        let program = loader.program(&loaded.suite.program).unwrap();
        let (journal, reopen) = journal_for();
        let (report, host) =
            cardrules::suite::run_on(&sandbox, &program, &loaded, journal.clone()).unwrap();
        assert!(
            report.steps.iter().all(|s| s.passed()),
            "{}",
            file.display()
        );
        let id = program.id();
        // Half way: a snapshot, then a late change (a registration), so that a restart
        // reads events after the snapshot too.
        host.ledger().write_snapshot(id).unwrap();
        assert!(
            matches!(
                snapshot::verify(journal.as_ref(), id).unwrap(),
                Verdict::Same { .. }
            ),
            "{}",
            file.display()
        );
        // A new card (a suite's card may have been replaced, and a replaced card stays
        // replaced): its registration is an event after the snapshot.
        let mut facts = loaded.suite.holders[0].clone();
        facts.card = format!("{}-LATE", facts.card);
        facts.balances.clear();
        host.register(id, &facts).unwrap();
        let live = host.ledger().read(id, |s| s.canonical()).unwrap();
        let restarted = Ledger::new(reopen());
        let state = restarted.read(id, |s| s.canonical()).unwrap();
        assert_eq!(
            state,
            live,
            "{} restarted from its snapshot",
            file.display()
        );
        let (_, info) = restarted.snapshot_info().remove(0);
        let start = info.start.unwrap();
        assert_eq!(start.replayed, 1, "{}", file.display());
        assert!(start.snapshot.is_some());
    }
}

#[test]
fn the_shipped_suites_restart_from_snapshots_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let path = |n: usize| dir.path().join(format!("ledger-{n}.sqlite"));
    suites_restart_from_snapshots(&|| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = path(n);
        let journal: Arc<dyn Journal> = Arc::new(SqliteLedger::open(&file).unwrap());
        let reopen = move || -> Arc<dyn Journal> { Arc::new(SqliteLedger::open(&file).unwrap()) };
        (journal, Box::new(reopen))
    });
}

#[test]
fn the_shipped_suites_restart_from_snapshots_on_postgres() {
    if Database::fresh().is_none() {
        return;
    }
    let databases = std::sync::Mutex::new(Vec::new());
    suites_restart_from_snapshots(&|| {
        let database = Database::fresh().unwrap();
        let url = database.url.clone();
        databases.lock().unwrap().push(database);
        let journal: Arc<dyn Journal> =
            Arc::new(cardrules_postgres::PostgresLedger::open(&url).unwrap());
        let reopen = move || -> Arc<dyn Journal> {
            Arc::new(cardrules_postgres::PostgresLedger::open(&url).unwrap())
        };
        (journal, Box::new(reopen))
    });
}

/// `cardrules ledger stats` and `verify` on a ledger with a snapshot, and `verify` failing
/// (exit 1) once the snapshot is forged.
#[test]
fn the_ledger_command_shows_stats_and_verifies_snapshots() {
    let fixture = root().join("tests/fixtures/ledger-schema-2/ledger.sqlite");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger.sqlite");
    std::fs::copy(fixture, &file).unwrap();
    let sandbox = Arc::new(Sandbox::new().unwrap());
    let host = host(&sandbox, Arc::new(SqliteLedger::open(&file).unwrap()));
    host.ledger().write_snapshot("bergen").unwrap();
    drop(host);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardrules"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ledger = file.to_str().unwrap();
    let (code, out, err) = run(&["ledger", "stats", "--ledger", ledger, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    let programs = stats["programs"].as_array().unwrap();
    assert_eq!(programs.len(), 3);
    let bergen = programs.iter().find(|p| p["program"] == "bergen").unwrap();
    assert_eq!(bergen["snapshot"]["seq"], bergen["last"]);
    assert!(bergen["cards"].as_u64().unwrap() >= 15, "{bergen}");
    assert!(
        programs
            .iter()
            .find(|p| p["program"] == "antwerpen")
            .unwrap()["snapshot"]
            .is_null()
    );
    assert!(stats["bytes"].as_u64().unwrap() > 0);
    let (code, out, _) = run(&["ledger", "stats", "--ledger", ledger]);
    assert_eq!(code, Some(0));
    assert!(out.contains("bergen") && out.contains("snapshot"), "{out}");

    let (code, out, err) = run(&["ledger", "verify", "--ledger", ledger]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("bergen: the snapshot at event"), "{out}");
    assert!(out.contains("antwerpen: no snapshot"), "{out}");

    let verify_bergen = || {
        run(&[
            "ledger",
            "verify",
            "--ledger",
            ledger,
            "--program",
            "bergen",
        ])
    };
    // Forge the snapshot (its checksum made to fit): verify names the difference, exits 1.
    let journal = SqliteLedger::open(&file).unwrap();
    let mut forged = journal.snapshots("bergen", 1).unwrap().remove(0);
    let body = String::from_utf8(forged.body.clone()).unwrap();
    let changed = body.replacen("\"bergen\"", "\"bergenx\"", 1);
    assert_ne!(changed, body);
    forged.body = changed.into_bytes();
    forged.checksum = forged.reseal();
    journal.save_snapshot(&forged).unwrap();
    let (code, out, _) = verify_bergen();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("differs") && out.contains("bergenx"), "{out}");
    // Damaged bytes: unusable, also exit 1.
    forged.body[5] ^= 0x20;
    journal.save_snapshot(&forged).unwrap();
    let (code, out, _) = verify_bergen();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("checksum"), "{out}");

    let (code, _, err) = run(&["ledger", "verify", "--ledger", ledger, "--program", "oslo"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no events of program `oslo`"), "{err}");
    let (code, _, err) = run(&["ledger", "stats", "--ledger", "/nonexistent/ledger.sqlite"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("does not exist"), "{err}");
}

/// Runs `cardrules` with `args`: exit code, stdout, stderr.
fn cardrules(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardrules"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A holder of `program` with card `card`, as a registrar would send it.
fn holder(program: &str, card: &str) -> cardrules::Holder {
    serde_json::from_value(serde_json::json!({
        "card": card, "birth-date": "2012-05-01", "municipality": program
    }))
    .unwrap()
}

/// `cardrules ledger verify` on a ledger whose journal is damaged after it was written:
/// an event that cannot be read and an event missing after the latest snapshot (a start
/// of that program fails on it) are differences, exit 1, each named — never exit 0, never
/// a tool error. `sql` runs a statement on the ledger's own tables (`events`, or
/// `cardrules_events` on PostgreSQL).
fn verify_names_a_damaged_journal(ledger: &str, journal: Arc<dyn Journal>, sql: &dyn Fn(&str)) {
    let sandbox = Arc::new(Sandbox::new().unwrap());
    let host = host(&sandbox, journal);
    host.ledger().snapshot_every(0);
    let info = host.ledger().write_snapshot("bergen").unwrap();
    for card in ["BK-9001", "BK-9002", "BK-9003"] {
        host.register("bergen", &holder("bergen", card)).unwrap();
    }
    host.register("albertslund", &holder("albertslund", "AK-9001"))
        .unwrap();
    drop(host);
    let (code, out, err) = cardrules(&["ledger", "verify", "--ledger", ledger]);
    assert_eq!(code, Some(0), "{out}{err}");

    // An event of albertslund's that no longer reads (edited by hand, or a newer host's).
    sql(
        "UPDATE {events} SET body = '{\"kind\":\"edited' WHERE program = 'albertslund' AND seq = 1",
    );
    let (code, out, err) = cardrules(&["ledger", "verify", "--ledger", ledger]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("albertslund: the journal cannot be rebuilt: ")
            && out.contains("event 1 of `albertslund` is corrupt"),
        "{out}"
    );
    assert!(out.contains("bergen: the snapshot at event"), "{out}");

    // An event of bergen's missing just after its snapshot.
    let gone = info.seq + 1;
    sql(&format!(
        "DELETE FROM {{events}} WHERE program = 'bergen' AND seq = {gone}"
    ));
    let (code, out, err) = cardrules(&[
        "ledger",
        "verify",
        "--ledger",
        ledger,
        "--program",
        "bergen",
    ]);
    assert_eq!(code, Some(1), "{out}{err}");
    let expected = format!(
        "bergen: the journal cannot be rebuilt: ledger: journal of `bergen`: event {} follows {}",
        gone + 1,
        info.seq
    );
    assert!(out.contains(&expected), "{out}");
}

#[test]
fn verify_names_a_damaged_journal_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ledger.sqlite");
    let journal: Arc<dyn Journal> = Arc::new(SqliteLedger::open(&file).unwrap());
    let sql = |statement: &str| {
        let connection = rusqlite::Connection::open(&file).unwrap();
        connection
            .execute(&statement.replace("{events}", "events"), [])
            .unwrap();
    };
    verify_names_a_damaged_journal(file.to_str().unwrap(), journal, &sql);
}

#[test]
fn verify_names_a_damaged_journal_on_postgres() {
    let Some(database) = Database::fresh() else {
        return;
    };
    let journal: Arc<dyn Journal> =
        Arc::new(cardrules_postgres::PostgresLedger::open(&database.url).unwrap());
    let sql = |statement: &str| {
        let mut client = postgres::Client::connect(&database.url, postgres::NoTls).unwrap();
        client
            .batch_execute(&statement.replace("{events}", "cardrules_events"))
            .unwrap();
    };
    verify_names_a_damaged_journal(&database.url, journal, &sql);
}

/// Demo holders are registered into an empty journal only: a program whose journal has
/// events already (from the registrar, from an older version) gets none of them written
/// again on a start, whatever state the start found; an empty one gets them all.
#[test]
fn demo_holders_are_registered_only_into_an_empty_journal() {
    use cardrules::ledger::{Appended, Batch, Change};
    let journal: Arc<dyn Journal> = Arc::new(cardrules::MemoryLedger::new());
    let registered = Change::Registered {
        holder: holder("bergen", "BK-7777"),
        at: None,
    };
    let appended = journal
        .append(&[Batch {
            program: "bergen",
            after: 0,
            changes: std::slice::from_ref(&registered),
        }])
        .unwrap();
    assert_eq!(appended, vec![Appended::Done]);
    let sandbox = Arc::new(Sandbox::new().unwrap());
    let host = host(&sandbox, journal.clone());
    assert_eq!(host.register_demo_holders("bergen").unwrap(), 0);
    assert!(host.register_demo_holders("albertslund").unwrap() > 0);
    assert_eq!(journal.read("bergen", 0).unwrap().len(), 1);
    assert!(host.card("bergen", "BK-2001", 0).unwrap().is_none());
    assert!(host.card("bergen", "BK-7777", 0).unwrap().is_some());
    assert!(host.card("albertslund", "BK-2001", 0).unwrap().is_some());
}
