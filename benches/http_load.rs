//! HTTP load test: starts the real `cardrules serve` on a loopback port over a copy of the
//! shipped policies and a fresh ledger, and drives it from keep-alive client threads with a
//! mix of real requests (Bergen redemptions, Albertslund purchases and top-ups, Antwerp
//! check-ins and prices). Reports decisions per second and p50/p99/max latency, for durable
//! decisions and for dry runs (no commit).
//!
//! ```text
//! cargo bench --bench http_load -- [--seconds N] [--connections N] [--only dry-runs|durable]
//! cargo bench --bench http_load -- --wrk [--seconds N] [--connections N]
//! ```
//!
//! With `--wrk`, the dry-run mix is sent by `wrk` (which must be installed: Debian's `wrk`
//! package) instead of this program's threads: one event-loop thread that costs the shared
//! cores far less per request than a blocking client, so the server's own capacity shows.
//!
//! The server logs at `warn` (no line per request); `CARDRULES_LOAD_LOG=info` measures it
//! with its default request log instead (two lines per request).
//!
//! Request bodies are formatted as text, not built as JSON trees: the client shares the
//! machine's cores with the server, and what it spends per request is not the server's.
//!
//! Numbers from one run on one machine; nothing here asserts a speed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Options {
    seconds: f64,
    connections: usize,
    /// `dry-runs` or `durable` to run one mix only.
    only: Option<String>,
    /// Send the dry-run mix with `wrk` instead.
    wrk: bool,
}

fn options() -> Options {
    let mut options = Options {
        seconds: 5.0,
        connections: 8,
        only: None,
        wrk: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("`{name}` needs a value"))
        };
        match arg.as_str() {
            "--seconds" => options.seconds = value("--seconds").parse().expect("`--seconds`"),
            "--connections" => {
                options.connections = value("--connections").parse().expect("`--connections`")
            }
            "--wrk" => options.wrk = true,
            "--only" => {
                let only = value("--only");
                assert!(
                    only == "dry-runs" || only == "durable",
                    "`--only` is `dry-runs` or `durable`, not `{only}`"
                );
                options.only = Some(only);
            }
            _ => {} // `--bench` and the like, from cargo
        }
    }
    options
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Server {
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies"),
        &dir.join("policies"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardrules"))
        .arg("serve")
        .arg("--policies")
        .arg(dir.join("policies"))
        .arg("--ledger")
        .arg(dir.join("ledger.sqlite"))
        .args(["--listen", "127.0.0.1:0", "--no-watch", "--allow-unsigned"])
        // The mix is recorded traffic of 2024 (ages, quotas and limits depend on it).
        .args(["--max-lateness", "none"])
        .env(
            "RUST_LOG",
            std::env::var("CARDRULES_LOAD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start `cardrules serve`");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("server output");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("server did not start: {line:?}"))
        .to_string();
    Server { child, base }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

const CARDS: usize = 200;

/// Registers the cards the mix uses.
fn register(agent: &ureq::Agent, base: &str) {
    for i in 0..CARDS {
        let holders = [
            (
                "bergen",
                json!({"birth-date": "2012-01-01", "municipality": "bergen"}),
            ),
            (
                "albertslund",
                json!({"birth-date": "2012-01-01", "municipality": "albertslund",
                       "statuses": ["member:storagergard"], "balances": {"DKK": 1_000_000_000}}),
            ),
            (
                "antwerpen",
                json!({"birth-date": "1990-01-01", "municipality": "antwerpen",
                       "statuses": ["antwerpenaar"]}),
            ),
        ];
        for (program, holder) in holders {
            let url = format!("{base}/v1/programs/{program}/holders/LOAD-{i}");
            agent
                .put(&url)
                .send(&holder.to_string())
                .expect("register a holder");
        }
    }
}

/// The `n`th request of client `client`: a realistic mix across the three programs, as
/// the JSON text a till would send.
fn request(client: usize, n: usize, dry_run: bool) -> String {
    let card = format!("LOAD-{}", (client * 7919 + n) % CARDS);
    let day = 1 + n % 28;
    let fields = match n % 5 {
        0 => format!(
            r#""program":"bergen","card":"{card}","action":"redeem","offer":"{}","party":{},"at":"2024-03-{day:02}T18:00:00+01:00""#,
            ["bergen-kino", "lagunen-kino"][n % 2],
            1 + n % 2
        ),
        1 | 2 => format!(
            r#""program":"albertslund","card":"{card}","action":"purchase","offer":"sg-perler","amount":{},"at":"2024-05-{day:02}T16:00:00+02:00""#,
            100 + n % 400
        ),
        3 => format!(
            r#""program":"albertslund","card":"{card}","action":"top-up","amount":500,"at":"2024-05-{day:02}T16:00:00+02:00""#
        ),
        _ => format!(
            r#""program":"antwerpen","card":"{card}","action":"price","offer":"mas","at":"2024-05-{day:02}T11:00:00+02:00""#
        ),
    };
    let dry = if dry_run { r#","dry-run":true"# } else { "" };
    format!(r#"{{{fields},"id":"load/{client}/{n}/{dry_run}"{dry}}}"#)
}

struct Outcome {
    decisions: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn run(base: &str, options: &Options, dry_run: bool) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let clients: Vec<_> = (0..options.connections)
        .map(|client| {
            let (url, stop) = (format!("{base}/v1/decisions"), stop.clone());
            std::thread::spawn(move || {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .new_agent();
                let (mut latencies, mut errors) = (Vec::new(), 0);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = request(client, n, dry_run);
                    let sent = Instant::now();
                    let ok = agent
                        .post(&url)
                        .send(&body)
                        .ok()
                        .and_then(|mut r| {
                            let status = r.status().as_u16();
                            r.body_mut().read_to_string().ok().map(|_| status == 200)
                        })
                        .unwrap_or(false);
                    latencies.push(sent.elapsed());
                    if !ok {
                        errors += 1;
                    }
                    n += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(options.seconds));
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for client in clients {
        let (l, e) = client.join().expect("client thread");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Outcome {
        decisions: latencies.len() - errors,
        errors,
        elapsed,
        latencies,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn report(label: &str, outcome: &Outcome) {
    let l = &outcome.latencies;
    println!(
        "{label:<22} {:>9.0} decisions/s   p50 {:>8.1?}   p99 {:>8.1?}   max {:>8.1?}   ({} decisions, {} errors)",
        outcome.decisions as f64 / outcome.elapsed.as_secs_f64(),
        percentile(l, 0.50),
        percentile(l, 0.99),
        l.last().copied().unwrap_or_default(),
        outcome.decisions,
        outcome.errors,
    );
}

fn main() {
    let options = options();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    register(&agent, &server.base);
    for n in 0..10 {
        for dry_run in [false, true] {
            let body = request(0, n, dry_run);
            serde_json::from_str::<Value>(&body)
                .unwrap_or_else(|e| panic!("request body {body} is not JSON: {e}"));
        }
    }
    println!(
        "http load on {} — {} connections, {} s per mix",
        server.base, options.connections, options.seconds
    );
    if options.wrk {
        run_wrk(&server.base, &options, dir.path());
        return;
    }
    if options.only.as_deref() != Some("durable") {
        report("dry runs (no commit)", &run(&server.base, &options, true));
    }
    if options.only.as_deref() != Some("dry-runs") {
        report("durable decisions", &run(&server.base, &options, false));
    }
}

/// Sends the dry-run mix with `wrk` for `--seconds` over `--connections`, and prints its
/// report (throughput and latency percentiles).
fn run_wrk(base: &str, options: &Options, scratch: &Path) {
    // The same requests as the threads send, round robin, from a table in the script.
    let bodies: Vec<String> = (0..1_000)
        .map(|n| format!("[[{}]]", request(0, n, true)))
        .collect();
    let script = scratch.join("dry-runs.lua");
    std::fs::write(
        &script,
        format!(
            "local bodies = {{ {} }}\nlocal n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(\"POST\", \"/v1/decisions\", {{ [\"Content-Type\"] = \"application/json\" }}, bodies[(n % #bodies) + 1])\nend\n",
            bodies.join(", ")
        ),
    )
    .expect("write the wrk script");
    println!(
        "dry runs (no commit), sent by wrk — {} connections, {} s",
        options.connections, options.seconds
    );
    let status = Command::new("wrk")
        .args(["-t1", "--latency"])
        .arg(format!("-c{}", options.connections))
        .arg(format!("-d{}s", options.seconds.ceil() as u64))
        .arg("-s")
        .arg(&script)
        .arg(format!("{base}/v1/decisions"))
        .status()
        .expect("cannot run `wrk` (install Debian's `wrk` package)");
    assert!(status.success(), "wrk failed: {status}");
}
