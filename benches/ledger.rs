//! The ledger at city scale: how long a host takes to start on a long journal, the memory
//! it then holds, and what a decision costs on it, against an empty ledger.
//!
//! ```text
//! cargo bench --bench ledger -- [--cards N] [--journals EVENTS:YEARS,...] [--decisions N]
//!                                [--postgres URL] [--keep DIR]
//! ```
//!
//! For each journal shape (default `1000000:1,3000000:3`: a million decisions in one
//! year and three million over three years, for `--cards` cards, default 50 000) and
//! each backend (SQLite, and PostgreSQL with `--postgres URL`, each journal in a fresh
//! schema), the generator (`benches/support/generate.rs`) writes the journal; then the
//! real server (`cardrules serve`) is started on it twice:
//! - *first start*: from the journal alone (no snapshot yet): time to `/healthz`, and the
//!   time until its background snapshot is written (watched on `/metrics`);
//! - *second start*: from that snapshot: time to `/healthz`, resident memory (`VmRSS`),
//!   and the p50 of `--decisions` durable decisions (default 2 000), one after the other,
//!   over HTTP, for random cards, each under a new request id.
//!
//! The same decisions run on an *empty* ledger (the same cards, no decisions) for the
//! ratio the issue's target is about.
//!
//! Numbers from one run on one machine; nothing here asserts a speed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardrules::Journal;

#[path = "support/generate.rs"]
mod generate;
use generate::Shape;

struct Options {
    cards: u64,
    journals: Vec<(u64, u64)>,
    decisions: usize,
    postgres: Option<String>,
    keep: Option<PathBuf>,
}

fn options() -> Options {
    let mut options = Options {
        cards: 50_000,
        journals: vec![(1_000_000, 1), (3_000_000, 3)],
        decisions: 2_000,
        postgres: None,
        keep: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("`{name}` needs a value"))
        };
        match arg.as_str() {
            "--cards" => options.cards = value("--cards").parse().expect("`--cards`"),
            "--journals" => {
                options.journals = value("--journals")
                    .split(',')
                    .map(|shape| {
                        let (events, years) = shape
                            .split_once(':')
                            .expect("`--journals` takes EVENTS:YEARS,...");
                        (
                            events.parse().expect("events"),
                            years.parse().expect("years"),
                        )
                    })
                    .collect()
            }
            "--decisions" => {
                options.decisions = value("--decisions").parse().expect("`--decisions`")
            }
            "--postgres" => options.postgres = Some(value("--postgres")),
            "--keep" => options.keep = Some(PathBuf::from(value("--keep"))),
            "--bench" => {}
            other => panic!("unknown argument `{other}`"),
        }
    }
    assert!(options.cards > 0);
    options
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `cardrules serve`, stopped (SIGTERM) when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    /// Starts the server on `ledger`; returns it once `/healthz` answers, and how long that took.
    fn start(ledger: &str, snapshot_every: u64) -> (Server, Duration) {
        let began = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cardrules"))
            .args(["serve", "--policies"])
            .arg(root().join("policies"))
            .args(["--ledger", ledger, "--listen", "127.0.0.1:0"])
            .args(["--insecure-no-auth", "--no-watch", "--allow-unsigned"])
            .args(["--snapshot-every", &snapshot_every.to_string()])
            // The generated journal and its requests are recorded traffic, at fixed times.
            .args(["--max-lateness", "none"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the server prints where it listens");
        let address = line
            .trim()
            .rsplit("://")
            .next()
            .expect("listening on http://ADDRESS")
            .to_string();
        let server = Server { child, address };
        while server.get("/healthz").is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        (server, began.elapsed())
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn get(&self, path: &str) -> Option<String> {
        ureq::get(&self.url(path))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
    }

    /// Resident memory now, in MB.
    fn resident_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/PID/status");
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kb / 1024.0
    }

    /// The value of `metric{program="bergen"}` on `/metrics`, if shown.
    fn metric(&self, metric: &str) -> Option<f64> {
        let text = self.get("/metrics")?;
        let prefix = format!("{metric}{{program=\"bergen\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Waits (up to ten minutes) until bergen's snapshot is at `position` or later; how
    /// long it took.
    fn await_snapshot(&self, position: u64) -> Duration {
        let began = Instant::now();
        while self
            .metric("cardrules_snapshot_position")
            .is_none_or(|at| at < position as f64)
        {
            assert!(
                began.elapsed() < Duration::from_secs(600),
                "no snapshot at {position}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        began.elapsed()
    }

    /// p50 and p99 of `n` durable decisions, in ms.
    fn decide(&self, cards: &[String], n: usize, round: &str) -> (f64, f64) {
        let mut next = 0x2545_f491_4f6c_dd1d_u64;
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
            next ^= next << 13;
            next ^= next >> 7;
            next ^= next << 17;
            let card = &cards[(next % cards.len() as u64) as usize];
            let body = serde_json::json!({
                "program": "bergen", "card": card, "action": "redeem",
                "at": "2026-12-04T18:00:00+01:00", "offer": "akvariet",
                "id": format!("bench-{round}-{i}"),
            });
            let began = Instant::now();
            let answer = ureq::post(&self.url("/v1/decisions"))
                .send_json(&body)
                .expect("a decision");
            assert_eq!(answer.status(), 200);
            times.push(began.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        (ms(times[n / 2]), ms(times[n * 99 / 100]))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM: the server finishes what is in flight and stops.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// A fresh ledger of one backend: its `--ledger` text, and a journal on it.
type Fresh<'a> = dyn Fn(&str) -> (String, Arc<dyn Journal>) + 'a;

/// One line of the report.
fn run(backend: &str, fresh: &Fresh<'_>, options: &Options) {
    let empty = Shape {
        cards: options.cards,
        events: 0,
        years: 1,
    };
    let shapes =
        std::iter::once(empty).chain(options.journals.iter().map(|&(events, years)| Shape {
            cards: options.cards,
            events,
            years,
        }));
    let mut baseline = None;
    // A start that read a tenth of this asks for a snapshot: small (CI) journals too.
    let snapshot_every = (options.cards * 10).clamp(100, 100_000);
    for shape in shapes {
        let name = format!("{}-{}", shape.events, shape.years);
        let (ledger, journal) = fresh(&name);
        let cards = generate::generate(journal.as_ref(), shape);
        drop(journal);
        let (first, first_start) = Server::start(&ledger, snapshot_every);
        // The first start asks for a snapshot of what it read (the demo holders it then
        // registers may come after it).
        let snapshot_took = first.await_snapshot(shape.cards + shape.events);
        drop(first);
        let (second, second_start) = Server::start(&ledger, snapshot_every);
        std::thread::sleep(Duration::from_millis(200));
        let memory = second.resident_mb();
        let replayed = second
            .metric("cardrules_events_replayed_at_start")
            .unwrap_or(f64::NAN);
        let (p50, p99) = second.decide(&cards, options.decisions, "a");
        drop(second);
        let base = *baseline.get_or_insert(p50);
        let journal = match shape.events {
            0 => "empty (cards only)".to_string(),
            n => format!("{n} decisions/{} y", shape.years),
        };
        println!(
            "{backend:<9} {journal:>20}: first start {:>6.2} s, snapshot after {:>6.2} s; second start {:>5.2} s ({replayed} events replayed), {memory:>6.0} MB resident; decision p50 {p50:.2} ms ({:.2}x the empty ledger's), p99 {p99:.2} ms",
            first_start.as_secs_f64(),
            snapshot_took.as_secs_f64(),
            second_start.as_secs_f64(),
            p50 / base,
        );
    }
}

fn main() {
    let options = options();
    let dir = match &options.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).unwrap();
            dir.clone()
        }
        None => std::env::temp_dir().join(format!("cardrules-ledger-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "ledger benchmark: {} cards; journals {:?} (decisions:years); {} decisions timed",
        options.cards, options.journals, options.decisions
    );
    let sqlite = |name: &str| -> (String, Arc<dyn Journal>) {
        let file = dir.join(format!("{name}.sqlite"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
        let journal = Arc::new(cardrules_sqlite::SqliteLedger::open(&file).unwrap());
        (file.display().to_string(), journal)
    };
    run("sqlite", &sqlite, &options);
    if let Some(url) = &options.postgres {
        let schemas = std::cell::RefCell::new(Vec::new());
        let admin = || postgres::Client::connect(url, postgres::NoTls).unwrap();
        let postgres = |name: &str| -> (String, Arc<dyn Journal>) {
            let schema = format!(
                "cardrules_bench_{}_{}",
                std::process::id(),
                name.replace('-', "_")
            );
            admin()
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
                ))
                .unwrap();
            schemas.borrow_mut().push(schema.clone());
            let separator = if url.contains('?') { '&' } else { '?' };
            let with_schema = format!("{url}{separator}options=-csearch_path%3D{schema}");
            let journal = Arc::new(cardrules_postgres::PostgresLedger::open(&with_schema).unwrap());
            (with_schema, journal)
        };
        run("postgres", &postgres, &options);
        for schema in schemas.borrow().iter() {
            let _ = admin().batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
    if options.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
