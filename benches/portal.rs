//! What a holder's app costs the host: allowances (one policy evaluation per offer and
//! action, in-process) and pages of a card's statement on a long journal.
//!
//! ```text
//! cargo bench --bench portal -- [--seconds N] [--events N] [--cards N] [--postgres URL]
//! ```
//!
//! - `allowances`: for one card of each shipped program with some history, every
//!   allowance over its whole catalogue, on an in-memory ledger; beside it, one dry-run
//!   decision of the same program (the unit an allowance is made of), in the same run.
//! - `history`: a journal of `--events` decisions (default 1 000 000) spread over
//!   `--cards` Bergen cards (default 10 000, so 100 decisions and a registration each) is
//!   generated into a scratch SQLite file (and into a fresh schema of `--postgres URL`, if
//!   given); then pages of 100 entries of random cards, and the same on a journal a
//!   hundredth as long, whose ratio shows whether a page's cost grows with the journal.
//!
//! Numbers from one run on one machine; nothing here asserts a speed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cardrules::allowance::AllowanceQuery;
use cardrules::history::HistoryPage;
use cardrules::{Host, Journal, MemoryLedger, Request, Sandbox, Trust};

#[path = "support/generate.rs"]
mod generate;

struct Options {
    seconds: f64,
    events: u64,
    cards: u64,
    postgres: Option<String>,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 2.0,
        events: 1_000_000,
        cards: 10_000,
        postgres: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("`{name}` needs a value"))
        };
        match arg.as_str() {
            "--seconds" => options.seconds = value("--seconds").parse().expect("`--seconds`"),
            "--events" => options.events = value("--events").parse().expect("`--events`"),
            "--cards" => options.cards = value("--cards").parse().expect("`--cards`"),
            "--postgres" => options.postgres = Some(value("--postgres")),
            "--bench" => {}
            other => panic!("unknown argument `{other}`"),
        }
    }
    assert!(options.cards > 0 && options.events >= options.cards);
    options
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn host_over(journal: Arc<dyn Journal>) -> Host {
    let host =
        Host::new(Arc::new(Sandbox::new().unwrap()), journal).with_trust(Trust::allow_unsigned());
    let refused = cardrules::loader::load_dir(&host, &root().join("policies")).unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    host
}

/// Times `work` for `seconds`; returns the sorted durations.
fn time(seconds: f64, mut work: impl FnMut(u64)) -> Vec<Duration> {
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut all = Vec::new();
    let mut n = 0;
    while start.elapsed() < budget || all.len() < 20 {
        let began = Instant::now();
        work(n);
        all.push(began.elapsed());
        n += 1;
    }
    all.sort();
    all
}

fn p(sorted: &[Duration], q: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

fn request(value: serde_json::Value) -> Request {
    serde_json::from_value(value).unwrap()
}

fn allowances(options: &Options) {
    let host = host_over(Arc::new(MemoryLedger::new()));
    // (program, card, a decision that gives it history, a dry run of the same kind)
    let cases = [
        (
            "bergen",
            "AK-1001",
            serde_json::json!({"program": "bergen", "card": "AK-1001", "action": "redeem",
                "offer": "bergen-kino", "at": "2024-03-01T18:00:00+01:00"}),
        ),
        (
            "antwerpen",
            "A-3002",
            serde_json::json!({"program": "antwerpen", "card": "A-3002", "action": "check-in",
                "offer": "mas", "at": "2024-03-01T10:00:00+01:00"}),
        ),
        (
            "albertslund",
            "BK-2001",
            serde_json::json!({"program": "albertslund", "card": "BK-2001",
                "action": "purchase", "offer": "bh-toast", "amount": 1500,
                "at": "2024-03-01T15:00:00+01:00"}),
        ),
    ];
    println!("allowances (in-process, memory ledger), µs:");
    for (program, card, history) in cases {
        host.register_demo_holders(program).unwrap();
        host.decide(&request(history.clone())).unwrap();
        let query = AllowanceQuery {
            at: Some("2024-03-02T12:00:00+01:00".parse().unwrap()),
            ..AllowanceQuery::default()
        };
        let asked = host
            .allowances(program, card, &query)
            .unwrap()
            .unwrap()
            .allowances
            .len();
        let all = time(options.seconds, |_| {
            host.allowances(program, card, &query).unwrap().unwrap();
        });
        let mut dry = history;
        dry["dry-run"] = true.into();
        let dry = request(dry);
        let one = time(options.seconds, |_| {
            host.decide(&dry).unwrap();
        });
        println!(
            "  {program:<12} {asked:>2} asked  p50 {:>7.1}  p99 {:>7.1}   one dry-run decision p50 {:>5.1}  ratio {:.1}",
            p(&all, 0.5),
            p(&all, 0.99),
            p(&one, 0.5),
            p(&all, 0.5) / p(&one, 0.5)
        );
    }
}

/// A time-ordered Bergen journal of `events` decisions over one year for `cards` cards
/// (see `support/generate.rs`).
fn generate(journal: &dyn Journal, events: u64, cards: u64) -> Vec<String> {
    generate::generate(
        journal,
        generate::Shape {
            cards,
            events,
            years: 1,
        },
    )
}

/// p50 of a page of 100 entries of random cards on `journal`.
fn pages(journal: Arc<dyn Journal>, cards: &[String], seconds: f64) -> (f64, f64) {
    let host = host_over(journal);
    let page = HistoryPage {
        limit: 100,
        ..HistoryPage::default()
    };
    // The first read catches the program's state up with the journal: not a page's cost.
    let started = Instant::now();
    host.history("bergen", &cards[0], &page).unwrap().unwrap();
    println!(
        "  first read (the state caught up with the journal): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut next = 0x2545_f491_4f6c_dd1d_u64;
    let all = time(seconds, |_| {
        next ^= next << 13;
        next ^= next >> 7;
        next ^= next << 17;
        let card = &cards[(next % cards.len() as u64) as usize];
        let history = host.history("bergen", card, &page).unwrap().unwrap();
        assert_eq!(history.entries.len(), 100.min(history.entries.len()));
    });
    (p(&all, 0.5), p(&all, 0.99))
}

fn history_on(name: &str, open: &dyn Fn() -> Arc<dyn Journal>, options: &Options) {
    println!("history on {name}, page of 100 entries, µs:");
    let small = open();
    let small_cards = generate(&*small, options.events / 100, (options.cards / 100).max(1));
    let (small_p50, small_p99) = pages(small, &small_cards, options.seconds);
    let large = open();
    let large_cards = generate(&*large, options.events, options.cards);
    let (large_p50, large_p99) = pages(large, &large_cards, options.seconds);
    println!(
        "  {:>9} events: p50 {small_p50:>7.1}  p99 {small_p99:>7.1}",
        options.events / 100
    );
    println!(
        "  {:>9} events: p50 {large_p50:>7.1}  p99 {large_p99:>7.1}   ratio to the short journal {:.2}",
        options.events,
        large_p50 / small_p50
    );
}

fn main() {
    let options = options();
    allowances(&options);
    let scratch = tempfile::tempdir().unwrap();
    let next = std::cell::Cell::new(0);
    let sqlite = || -> Arc<dyn Journal> {
        next.set(next.get() + 1);
        let path = scratch.path().join(format!("ledger-{}.sqlite", next.get()));
        Arc::new(cardrules_sqlite::SqliteLedger::open(&path).unwrap())
    };
    history_on("SQLite", &sqlite, &options);
    if let Some(url) = &options.postgres {
        let admin =
            std::cell::RefCell::new(postgres::Client::connect(url, postgres::NoTls).unwrap());
        let schemas = std::cell::RefCell::new(Vec::new());
        let postgres = || -> Arc<dyn Journal> {
            next.set(next.get() + 1);
            let schema = format!(
                "cardrules_portal_bench_{}_{}",
                std::process::id(),
                next.get()
            );
            schemas.borrow_mut().push(schema.clone());
            admin
                .borrow_mut()
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
                ))
                .unwrap();
            let separator = if url.contains('?') { '&' } else { '?' };
            let with_schema = format!("{url}{separator}options=-csearch_path%3D{schema}");
            Arc::new(cardrules_postgres::PostgresLedger::open(&with_schema).unwrap())
        };
        history_on("PostgreSQL", &postgres, &options);
        for schema in schemas.borrow().iter() {
            admin
                .borrow_mut()
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .unwrap();
        }
    }
}
