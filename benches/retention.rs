//! Personal data at city scale: erasing one holder, and compacting a year-old ledger under
//! a one-year retention.
//!
//! ```text
//! cargo bench --bench retention -- [--cards N] [--events N] [--years N] [--sample N]
//!                                  [--postgres URL]
//! ```
//!
//! For each backend (SQLite, and PostgreSQL with `--postgres URL`, in a fresh schema) the
//! generator (`benches/support/generate.rs`) writes a Bergen journal of `--events`
//! decisions (default 1 000 000) over `--years` years (default 2) for `--cards` cards
//! (default 50 000), and the shipped Bergen policy is served on it with
//! `[retention] decisions = "365d"`; then, one after the other:
//! - **erasure**: a snapshot is written, then one holder with a year of history is erased
//!   (its registration and decisions rewritten, the snapshot rewritten): the time of
//!   `Host::erase`;
//! - **decisions before**: a dry run of a redemption for `--sample` cards (default 200);
//! - **compaction** as of the end of the generated period: the events older than a year
//!   folded into a base snapshot and removed; the time, the events removed, the cost per
//!   million events, and the ledger's size before and after (SQLite: after `VACUUM`);
//! - **decisions after**, on the same host, and **after a restart** on the compacted
//!   ledger: each must equal the one before (the bench panics otherwise), and the state
//!   after the restart must equal the state before compaction.
//!
//! Numbers from one run on one machine; nothing here asserts a speed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cardrules::{Host, Journal, Request, Sandbox, Trust};

#[path = "support/generate.rs"]
mod generate;
use generate::{START, Shape};

struct Options {
    cards: u64,
    events: u64,
    years: u64,
    sample: usize,
    postgres: Option<String>,
}

fn options() -> Options {
    let mut options = Options {
        cards: 50_000,
        events: 1_000_000,
        years: 2,
        sample: 200,
        postgres: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("`{name}` needs a value"))
        };
        match arg.as_str() {
            "--cards" => options.cards = value("--cards").parse().expect("`--cards`"),
            "--events" => options.events = value("--events").parse().expect("`--events`"),
            "--years" => options.years = value("--years").parse().expect("`--years`"),
            "--sample" => options.sample = value("--sample").parse().expect("`--sample`"),
            "--postgres" => options.postgres = Some(value("--postgres")),
            "--bench" => {}
            other => panic!("unknown argument `{other}`"),
        }
    }
    assert!(options.cards > 0 && options.years > 1 && options.events >= options.cards);
    options
}

/// The shipped Bergen program, copied, with a one-year retention of its events.
fn policies(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/bergen");
    let to = dir.join("policies/bergen");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&root).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    let manifest = to.join("policy.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let shipped = "decisions = \"400d\"";
    assert!(
        text.contains(shipped),
        "the shipped Bergen manifest sets a retention"
    );
    std::fs::write(&manifest, text.replace(shipped, "decisions = \"365d\"")).unwrap();
    dir.join("policies")
}

fn host_over(journal: Arc<dyn Journal>, policies: &Path) -> Host {
    let host =
        Host::new(Arc::new(Sandbox::new().unwrap()), journal).with_trust(Trust::allow_unsigned());
    let refused = cardrules::loader::load_dir(&host, policies).unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    host.ledger().snapshot_every(0);
    host
}

/// A dry-run redemption of each of `cards` at `at`: allow or the reason, and the counts.
fn decisions(host: &Host, cards: &[String], at: i64) -> Vec<String> {
    cards
        .iter()
        .enumerate()
        .map(|(n, card)| {
            let offer = ["bergen-kino", "akvariet"][n % 2];
            let request: Request = serde_json::from_value(serde_json::json!({
                "program": "bergen", "card": card, "action": "redeem",
                "offer": offer,
                "at": jiff::Timestamp::from_second(at).unwrap().to_string(),
                "dry-run": true, "explain": true,
            }))
            .unwrap();
            let decision = host.decide(&request).unwrap();
            format!(
                "{card} {} {} {:?}",
                decision.allow,
                decision.reason,
                decision
                    .checks
                    .map(|checks| checks.iter().map(|c| (c.used, c.limit)).collect::<Vec<_>>())
            )
        })
        .collect()
}

fn megabytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "?".into(), |b| format!("{:.1} MB", b as f64 / 1e6))
}

fn run(backend: &str, open: &dyn Fn() -> Arc<dyn Journal>, options: &Options, dir: &Path) {
    println!("{backend}:");
    let policies = policies(dir);
    let journal = open();
    let ids = generate::generate(
        journal.as_ref(),
        Shape {
            cards: options.cards,
            events: options.events,
            years: options.years,
        },
    );
    let host = host_over(journal.clone(), &policies);
    let started = Instant::now();
    let cards = host
        .ledger()
        .read("bergen", |state| state.cards().len())
        .unwrap();
    println!(
        "  started on {} cards in {:.2} s",
        cards,
        started.elapsed().as_secs_f64()
    );
    host.ledger().write_snapshot("bergen").unwrap();

    let erased = &ids[ids.len() / 2];
    let began = Instant::now();
    let erasure = host.erase("bergen", erased, "bench").unwrap();
    let erase_ms = began.elapsed().as_secs_f64() * 1e3;
    assert!(erasure.done);
    let events = journal.stats().unwrap().programs[0].events;
    println!(
        "  erasure of one holder on {events} events (its snapshot rewritten): {erase_ms:.0} ms"
    );

    let now = START + (options.years * 365 * 86_400) as i64;
    let step = (ids.len() / options.sample.max(1)).max(1);
    let sample: Vec<String> = ids
        .iter()
        .step_by(step)
        .filter(|card| *card != erased)
        .take(options.sample)
        .cloned()
        .collect();
    let before = decisions(&host, &sample, now);
    let state_before = host.ledger().read("bergen", |s| s.canonical()).unwrap();
    let stats_before = journal.stats().unwrap();

    let began = Instant::now();
    let done = host.compact(now).unwrap();
    let compact_s = began.elapsed().as_secs_f64();
    let report = &done[0];
    journal.reclaim().unwrap();
    let stats_after = journal.stats().unwrap();
    println!(
        "  compaction under a one-year retention: {} of {} events removed (base snapshot at event {:?}) in {compact_s:.2} s = {:.2} s per million events removed",
        report.events_removed,
        stats_before.programs[0].events,
        report.base,
        compact_s / (report.events_removed.max(1) as f64 / 1e6)
    );
    println!(
        "  ledger size: {} before, {} after (reclaimed)",
        megabytes(stats_before.bytes),
        megabytes(stats_after.bytes)
    );
    let after = decisions(&host, &sample, now);
    assert_eq!(before, after, "a decision differs after compaction");
    drop(host);
    drop(journal);
    let restarted = host_over(open(), &policies);
    let began = Instant::now();
    let state_after = restarted
        .ledger()
        .read("bergen", |s| s.canonical())
        .unwrap();
    let restart_s = began.elapsed().as_secs_f64();
    assert!(
        state_after == state_before,
        "the state differs after a restart"
    );
    assert_eq!(
        decisions(&restarted, &sample, now),
        before,
        "a decision differs after a restart"
    );
    println!(
        "  {} sampled decisions the same before and after compaction and after a restart (started in {restart_s:.2} s)",
        sample.len()
    );
}

fn main() {
    let options = options();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("retention.sqlite");
    let sqlite = {
        let file = file.clone();
        move || -> Arc<dyn Journal> {
            Arc::new(cardrules_sqlite::SqliteLedger::open(&file).unwrap())
        }
    };
    run("SQLite", &sqlite, &options, dir.path());
    if let Some(url) = &options.postgres {
        let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
        let schema = format!("cardrules_retention_bench_{}", std::process::id());
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
            ))
            .unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        let with_schema = format!("{url}{separator}options=-csearch_path%3D{schema}");
        let postgres = move || -> Arc<dyn Journal> {
            Arc::new(cardrules_postgres::PostgresLedger::open(&with_schema).unwrap())
        };
        let pg_dir = tempfile::tempdir().unwrap();
        run("PostgreSQL", &postgres, &options, pg_dir.path());
        admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .unwrap();
    }
}
