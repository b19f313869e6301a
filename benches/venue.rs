//! A venue host beside its city host, on one machine over loopback: what a decision costs
//! at the venue against the same decision at the city, and what a venue pulls to start.
//!
//! ```text
//! cargo bench --bench venue -- [--cards N] [--decisions N] [--requests N]
//! ```
//!
//! The generator (`benches/support/generate.rs`) writes a Bergen journal of `--cards`
//! holders (default 50 000) and `--decisions` redemptions (default 20 000: a busy day of
//! a city's cinemas, museums and pools) into the city's SQLite file. The real city host
//! starts on it, then a venue host with an empty ledger and no programs:
//! - *start*: time until the venue serves the program (pulled, verified, its suites run)
//!   and until it holds the whole journal, and the bytes it pulled (the bundle, the
//!   registrations, the day's decisions: each page of the journal fetched again here and
//!   measured);
//! - *latency*: `--requests` dry-run decisions (default 500), one after the other, at the
//!   city and at the venue (which forwards them), alternating; medians, p99 and the ratio.
//!
//! Numbers from one run on one machine; nothing here asserts a speed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/generate.rs"]
mod generate;
use generate::Shape;

struct Options {
    cards: u64,
    decisions: u64,
    requests: usize,
}

fn options() -> Options {
    let mut options = Options {
        cards: 50_000,
        decisions: 20_000,
        requests: 500,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match arg.as_str() {
            "--cards" => options.cards = value("--cards"),
            "--decisions" => options.decisions = value("--decisions"),
            "--requests" => options.requests = value("--requests") as usize,
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => panic!("unknown argument `{other}`"),
        }
    }
    options
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `cardrules serve`, stopped when dropped.
struct Host {
    child: Child,
    base: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Host {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardrules"))
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--max-lateness", "none"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the server prints where it listens");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening on URL")
        .to_string();
    Host { child, base }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str, token: &str) -> (u16, Vec<u8>) {
    let mut response = agent
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .expect("the host answers");
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("a body");
    (status, body)
}

/// Runs `cardrules token` with `args`: the secret and the auth file entry.
fn token(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cardrules"))
        .arg("token")
        .args(args)
        .output()
        .expect("cardrules token");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("a token")
        .to_string();
    let entry = text
        .lines()
        .filter(|l| !l.starts_with("token: ") && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    (secret, entry)
}

fn median(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

fn main() {
    let options = options();
    let dir = tempfile::tempdir().expect("a scratch directory");
    let policies = dir.path().join("city-policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    copy(
        &root().join("policies").join("bergen"),
        &policies.join("bergen"),
    );
    let ledger = dir.path().join("city.sqlite");
    {
        let journal = cardrules_sqlite::SqliteLedger::open(&ledger).expect("a ledger file");
        let began = Instant::now();
        generate::generate(
            &journal,
            Shape {
                cards: options.cards,
                events: options.decisions,
                years: 1,
            },
        );
        eprintln!(
            "generated {} cards and {} decisions in {:.1?}",
            options.cards,
            options.decisions,
            began.elapsed()
        );
    }
    let (admin, e1) = token(&["--name", "ops", "--role", "admin", "--program", "*"]);
    let (venue_token, e2) = token(&[
        "--name",
        "bergen-kino",
        "--role",
        "venue",
        "--program",
        "bergen",
        "--location",
        "bergen-kino",
    ]);
    let auth = dir.path().join("city-auth.toml");
    std::fs::write(&auth, format!("{e1}\n\n{e2}\n")).expect("auth file");
    let city = start(&[
        "--policies",
        policies.to_str().expect("utf-8"),
        "--ledger",
        ledger.to_str().expect("utf-8"),
        "--auth",
        auth.to_str().expect("utf-8"),
        "--allow-unsigned",
        "--no-watch",
    ]);
    let agent = agent();

    // What a venue pulls: the bundle, then every page of the journal.
    let (_, bundle) = get(
        &agent,
        &format!("{}/v1/venue/programs/bergen/bundle", city.base),
        &venue_token,
    );
    let (mut registrations, mut decisions, mut after) = (0usize, 0usize, 0u64);
    loop {
        let (_, page) = get(
            &agent,
            &format!(
                "{}/v1/venue/programs/bergen/journal?after={after}&limit=5000",
                city.base
            ),
            &venue_token,
        );
        let parsed: Value = serde_json::from_slice(&page).expect("a page");
        let events = parsed["events"].as_array().expect("events");
        let Some(last) = events.last() else { break };
        for event in events {
            let size = serde_json::to_vec(event).map_or(0, |v| v.len());
            if event["change"]["kind"] == "registered" {
                registrations += size;
            } else {
                decisions += size;
            }
        }
        after = last["seq"].as_u64().expect("seq");
    }
    let total_events = after;

    let venue_dir = dir.path().join("venue");
    std::fs::create_dir_all(venue_dir.join("policies")).expect("mkdir");
    std::fs::write(venue_dir.join("city.token"), &venue_token).expect("token file");
    let (till, e3) = token(&[
        "--name",
        "till",
        "--role",
        "terminal",
        "--program",
        "bergen",
    ]);
    std::fs::write(venue_dir.join("auth.toml"), format!("{e3}\n")).expect("auth file");
    let began = Instant::now();
    let venue = start(&[
        "--policies",
        venue_dir.join("policies").to_str().expect("utf-8"),
        "--ledger",
        venue_dir.join("venue.sqlite").to_str().expect("utf-8"),
        "--auth",
        venue_dir.join("auth.toml").to_str().expect("utf-8"),
        "--allow-unsigned",
        "--upstream",
        &city.base,
        "--upstream-token",
        venue_dir.join("city.token").to_str().expect("utf-8"),
    ]);
    let (mut serving, mut holding) = (None, None);
    while holding.is_none() {
        let (_, body) = get(&agent, &format!("{}/v1/venues", city.base), &admin);
        let status: Value = serde_json::from_slice(&body).expect("venues");
        let venue = &status["venues"][0];
        if serving.is_none() && venue["programs"][0]["program"] == "bergen" {
            serving = Some(began.elapsed());
        }
        if venue["position"]["bergen"].as_u64() == Some(total_events) {
            holding = Some(began.elapsed());
        }
        assert!(
            began.elapsed() < Duration::from_secs(600),
            "the venue did not catch up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mb = |bytes: usize| bytes as f64 / 1e6;
    println!(
        "start: the venue serves bergen after {:.2?} (bundle {:.2} MB) and holds the city's {} events after {:.2?}",
        serving.unwrap_or_default(),
        mb(bundle.len()),
        total_events,
        holding.unwrap_or_default()
    );
    println!(
        "pulled: {:.1} MB of registrations ({} cards, {:.0} bytes each) and {:.1} MB of decisions ({} decisions, {:.0} bytes each)",
        mb(registrations),
        options.cards,
        registrations as f64 / options.cards.max(1) as f64,
        mb(decisions),
        options.decisions,
        decisions as f64 / options.decisions.max(1) as f64
    );

    // The same dry run at the city and at the venue, alternating.
    let request = serde_json::json!({
        "program": "bergen", "card": "GEN-0000001", "action": "redeem",
        "offer": "bergen-kino", "at": "2024-06-01T12:00:00+02:00", "dry-run": true,
    })
    .to_string();
    let decide = |base: &str, token: &str| -> f64 {
        let started = Instant::now();
        let response = agent
            .post(format!("{base}/v1/decisions"))
            .header("Authorization", &format!("Bearer {token}"))
            .send(&request)
            .expect("an answer");
        assert_eq!(response.status().as_u16(), 200);
        started.elapsed().as_secs_f64() * 1e3
    };
    for _ in 0..50 {
        decide(&city.base, &admin);
        decide(&venue.base, &till);
    }
    let (mut at_city, mut at_venue) = (Vec::new(), Vec::new());
    for _ in 0..options.requests {
        at_city.push(decide(&city.base, &admin));
        at_venue.push(decide(&venue.base, &till));
    }
    let (city_p50, city_p99) = median(at_city);
    let (venue_p50, venue_p99) = median(at_venue);
    println!(
        "latency of a dry run over loopback, {} each: city p50 {city_p50:.3} ms p99 {city_p99:.3} ms; venue p50 {venue_p50:.3} ms p99 {venue_p99:.3} ms; ratio venue/city p50 {:.2}",
        options.requests,
        venue_p50 / city_p50
    );
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
