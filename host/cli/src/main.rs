//! The `cardrules` command: parse, dispatch, map the result to a documented exit code.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use cardrules::suite::{self, SuiteReport};
use cardrules::{Host, MemoryLedger, Request, Sandbox, Trust};
use clap::builder::TypedValueParser as _;
use clap::{Parser, Subcommand};

mod bench;
mod ledger;
mod replay;
mod scaffold;

use ledger::LedgerSpec;

/// mimalloc, not the C library's allocator: a decision allocates a few dozen small blocks
/// (the request handed to the policy, the decision, the store), and glibc's `malloc` and
/// `free` were a third of its instructions (callgrind; see the README's profile table).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The exit codes of docs/contract.md.
mod exit {
    /// Everything passed, or a decision was made.
    pub const OK: u8 = 0;
    /// A suite step failed.
    pub const STEP_FAILED: u8 = 1;
    /// Bad input: a suite, policy, request or flag could not be used.
    pub const BAD_INPUT: u8 = 2;
}

/// The ledger file used when `--ledger` is not given.
const DEFAULT_LEDGER: &str = "cardrules.sqlite";

#[derive(Parser)]
#[command(
    name = "cardrules",
    version,
    about = "WebAssembly rules engine for municipal benefit-card programs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which policies to accept.
#[derive(clap::Args)]
struct TrustArgs {
    /// The trust file: the public keys trusted for each program [default: `trust.toml`,
    /// if present].
    #[arg(long, value_name = "FILE")]
    trust: Option<PathBuf>,
    /// Accept unsigned policies: for development only. Not with `--trust`: a command
    /// either checks signatures or does not.
    #[arg(long, conflicts_with = "trust")]
    allow_unsigned: bool,
}

impl TrustArgs {
    /// The trust to load programs with; `unsigned_by_default` for development commands.
    fn resolve(&self, unsigned_by_default: bool) -> anyhow::Result<Trust> {
        const DEFAULT_TRUST: &str = "trust.toml";
        if self.allow_unsigned {
            tracing::warn!("unsigned policies are accepted (`--allow-unsigned`): development only");
            return Ok(Trust::allow_unsigned());
        }
        let path = match &self.trust {
            Some(path) => path.clone(),
            None if Path::new(DEFAULT_TRUST).is_file() => PathBuf::from(DEFAULT_TRUST),
            None if unsigned_by_default => return Ok(Trust::allow_unsigned()),
            None => return Ok(Trust::nobody()),
        };
        Ok(Trust::from_file(&path)?)
    }
}

/// How `serve` talks to the network: TLS and the bounds that keep it answering.
#[derive(clap::Args)]
struct NetArgs {
    /// Serve HTTPS: the server's certificate chain, PEM, its own certificate first.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert`, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The most decisions, registrations and card reads in flight; past it the answer is
    /// 503 with `Retry-After`, at once.
    #[arg(long, value_name = "N", default_value_t = cardrules_server::limits::DEFAULT_MAX_IN_FLIGHT,
          value_parser = clap::value_parser!(u32).range(1..=65_536).map(|n| n as usize))]
    max_in_flight: usize,
    /// Seconds a connection may take to send a request's head (new, idle between
    /// requests, or half-sent) or a request its body, before it is closed (408 for a body).
    #[arg(long, value_name = "SECONDS", default_value_t = cardrules_server::limits::DEFAULT_IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    idle_timeout: u64,
    /// The most open connections [default: the open-file limit (`ulimit -n`) less 128];
    /// past it new connections wait until others close.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Seconds a request may have been in flight (deciding, or waiting for its program's
    /// lane) before `/readyz` says decisions are queueing (503).
    #[arg(long, value_name = "SECONDS", default_value_t = cardrules_server::limits::DEFAULT_QUEUE_ALARM.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    queue_alarm: u64,
    /// The largest request head (request line and headers), in bytes; larger is a 431.
    #[arg(long, value_name = "BYTES", default_value_t = cardrules_server::limits::DEFAULT_MAX_HEADER_BYTES,
          value_parser = clap::value_parser!(u32).range(1024..=1_048_576).map(|n| n as usize))]
    max_header_bytes: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Run policy suites; with no PATH, every `suites/` under the policies directory.
    Test {
        /// The policies directory.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// Also write a JUnit XML report to FILE, for CI systems.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Suite files, or directories searched for `*.toml`.
        paths: Vec<PathBuf>,
        /// Unsigned policies are accepted here unless a trust file is given or present.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Decide one request, commit it to the ledger and print the decision as JSON.
    Decide {
        /// The policies directory.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// The ledger: a file path or `sqlite:PATH` (created on first use), or a
        /// `postgres://user@host:port/db` URL (`PG*` variables fill in the rest).
        #[arg(long, default_value = DEFAULT_LEDGER)]
        ledger: LedgerSpec,
        /// Evaluate, but commit nothing.
        #[arg(long)]
        dry_run: bool,
        /// The request as JSON; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Serve the point-of-sale HTTP API; programs reload when their files change.
    Serve {
        /// The policies directory, watched for changes.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// The ledger: a file path or `sqlite:PATH` (created on first use), or a
        /// `postgres://user@host:port/db` URL shared with other hosts. Demo holders are
        /// registered.
        #[arg(long, default_value = DEFAULT_LEDGER)]
        ledger: LedgerSpec,
        /// The address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The largest request body accepted, in bytes.
        #[arg(long, default_value_t = cardrules_server::DEFAULT_BODY_LIMIT)]
        body_limit: usize,
        /// Do not watch the policies directory (no hot reload).
        #[arg(long)]
        no_watch: bool,
        /// The auth file: the `[[tokens]]` callers may use (see `cardrules token`). Without
        /// it every caller may do everything, so only loopback addresses are served.
        #[arg(long, value_name = "FILE")]
        auth: Option<PathBuf>,
        /// Serve a non-loopback address without `--auth`: anyone who can reach it may
        /// decide, register holders and read cards.
        #[arg(long, conflicts_with = "auth")]
        insecure_no_auth: bool,
        /// Candidate versions of the programs: each decision is also evaluated against its
        /// program's candidate here (a dry run on the same ledger state, off the answer's
        /// path); agreements and differences show under `shadow` in `GET /v1/programs`.
        #[arg(long, value_name = "DIR")]
        shadow: Option<PathBuf>,
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Make an API token for `serve --auth`: prints the token once, and the `[[tokens]]`
    /// entry (its SHA-256, not the token) to append to the auth file.
    Token {
        /// The token's name, shown in the server's logs.
        #[arg(long)]
        name: String,
        /// What the token may do.
        #[arg(long, value_parser = ["terminal", "registrar", "admin"])]
        role: String,
        /// A program the token may act for; `*` for every program. Repeat for more.
        #[arg(long = "program", value_name = "PROGRAM", required = true)]
        programs: Vec<String>,
        /// An action a terminal may ask for (every action if none is given). Repeat for
        /// more.
        #[arg(long = "action", value_name = "ACTION")]
        actions: Vec<String>,
    },
    /// Measure decision latency and throughput per program, beside the empty policy.
    Bench {
        /// The policies directory.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// Only this program (the empty policy runs too).
        #[arg(long)]
        program: Option<String>,
        /// Seconds per measurement (three per program).
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Run the durable measurements on this ledger instead of a scratch SQLite file
        /// (e.g. a `postgres://` URL; its data is kept).
        #[arg(long)]
        ledger: Option<LedgerSpec>,
        /// Print one JSON object (keys documented in the README).
        #[arg(long)]
        json: bool,
        /// Unsigned policies are accepted here unless a trust file is given or present.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Re-run a ledger's history against the programs in DIR on a scratch ledger and report
    /// what would have been decided differently; the ledger is only read.
    Replay {
        /// The ledger whose history is replayed (never written).
        #[arg(long)]
        ledger: LedgerSpec,
        /// The programs to replay against (the candidate versions).
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// Only this program.
        #[arg(long)]
        program: Option<String>,
        /// Compare decisions from this time on (RFC 3339); earlier ones still shape the state.
        #[arg(long, value_parser = parse_time)]
        since: Option<i64>,
        /// Replay decisions up to this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        until: Option<i64>,
        /// Print one JSON object (keys documented in the README).
        #[arg(long)]
        json: bool,
        /// Also write the report as one self-contained HTML page.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Scaffold a program: its guest crate and its policies directory, with a starter rule
    /// proved both ways by a suite; builds with `cargo build --release` as it is.
    New {
        /// The program id: lowercase letters, digits and hyphens.
        program: String,
        /// The program's time zone (IANA name).
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// The languages of its messages, the first the default.
        #[arg(long, value_delimiter = ',', default_value = "en")]
        languages: Vec<String>,
        /// The policies directory.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// Where program crates live.
        #[arg(long, default_value = "guest-rules/programs")]
        guests: PathBuf,
    },
    /// Make a signing key pair: NAME.key (secret) and NAME.pub (for operators' trust files).
    Keygen {
        /// The files' name, without extension.
        #[arg(long, value_name = "NAME")]
        out: PathBuf,
    },
    /// Sign program directories: writes `policy.sig` over every file the host reads from
    /// each (manifest, component, catalogue, demo holders, suites).
    Sign {
        /// The secret key file written by `cardrules keygen`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Program directories (each with a `policy.toml`).
        #[arg(required = true)]
        programs: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs each request; the one-shot commands only what goes wrong.
    let default_filter = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match cli.command {
        Command::Test {
            policies,
            junit,
            paths,
            trust,
        } => trust
            .resolve(true)
            .and_then(|trust| test(&policies, junit.as_deref(), &paths, trust)),
        Command::Decide {
            policies,
            ledger,
            dry_run,
            request,
            trust,
        } => trust
            .resolve(false)
            .and_then(|trust| decide(&policies, &ledger, dry_run, &request, trust)),
        Command::Serve {
            policies,
            ledger,
            listen,
            body_limit,
            no_watch,
            auth,
            insecure_no_auth,
            shadow,
            net,
            trust,
        } => trust.resolve(false).and_then(|trust| {
            serve(
                ServeOptions {
                    policies: &policies,
                    ledger: &ledger,
                    listen: &listen,
                    body_limit,
                    watch: !no_watch,
                    auth: auth.as_deref(),
                    insecure_no_auth,
                    shadow: shadow.as_deref(),
                    net,
                },
                trust,
            )
        }),
        Command::Token {
            name,
            role,
            programs,
            actions,
        } => token(&name, &role, &programs, &actions),
        Command::Bench {
            policies,
            program,
            seconds,
            ledger,
            json,
            trust,
        } => trust.resolve(true).and_then(|trust| {
            bench(
                bench::Options {
                    policies,
                    program,
                    seconds,
                    ledger,
                    trust,
                },
                json,
            )
        }),
        Command::Replay {
            ledger,
            policies,
            program,
            since,
            until,
            json,
            html,
            trust,
        } => trust.resolve(true).and_then(|trust| {
            replay_ledger(
                &ledger,
                &policies,
                program.as_deref(),
                cardrules::replay::Window { since, until },
                json,
                html.as_deref(),
                trust,
            )
        }),
        Command::New {
            program,
            time_zone,
            languages,
            policies,
            guests,
        } => new_program(scaffold::Scaffold {
            program,
            time_zone,
            languages,
            policies,
            guests,
        }),
        Command::Keygen { out } => keygen(&out),
        Command::Sign { key, programs } => sign(&key, &programs),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::from(exit::BAD_INPUT)
        }
    }
}

/// The error and its causes, joined with `: `, leaving out a cause whose text the message
/// already carries (the library's messages name their causes themselves).
fn chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn test(
    policies: &Path,
    junit: Option<&Path>,
    paths: &[PathBuf],
    trust: Trust,
) -> anyhow::Result<u8> {
    let files = suite::discover(policies, paths)?;
    if files.is_empty() {
        return Err(anyhow!("no suites found under `{}`", policies.display()));
    }
    let mut suites = Vec::new();
    let mut load_errors = Vec::new();
    for file in &files {
        match suite::load(file) {
            Ok(loaded) => suites.push(loaded),
            Err(e) => load_errors.push(e.to_string()),
        }
    }
    let host =
        Host::new(Arc::new(Sandbox::new()?), Arc::new(MemoryLedger::new())).with_trust(trust);
    let program_errors = cardrules::loader::load_dir(&host, policies)?;
    for error in &program_errors {
        // Only the programs a suite needs are fatal; the rest are reported as warnings.
        let needed = suites.iter().any(|s| matches!(error, cardrules::Error::Load { program, .. } if *program == s.suite.program));
        if !needed {
            eprintln!("warning: {error}");
        }
    }
    let mut reports = Vec::new();
    for loaded in &suites {
        match suite::run(&host, loaded) {
            Ok(report) => reports.push(report),
            Err(e) => load_errors.push(e.to_string()),
        }
    }

    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed) = (0, 0);
    for report in &reports {
        let ok = report.steps.iter().filter(|s| s.passed()).count();
        let status = if ok == report.steps.len() {
            "ok  "
        } else {
            "FAIL"
        };
        writeln!(
            out,
            "{status} {} ({}: {ok}/{} steps)",
            report.path.display(),
            report.program,
            report.steps.len()
        )?;
        for step in report.steps.iter().filter(|s| !s.passed()) {
            write!(out, "{step}")?;
        }
        passed += ok;
        failed += report.steps.len() - ok;
    }
    for error in &load_errors {
        writeln!(out, "error: {error}")?;
    }
    if let Some(path) = junit {
        write_junit(path, &reports, &load_errors)
            .with_context(|| format!("cannot write junit report `{}`", path.display()))?;
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if !load_errors.is_empty() {
        exit::BAD_INPUT
    } else if failed > 0 {
        exit::STEP_FAILED
    } else {
        exit::OK
    })
}

/// Writes the JUnit report: one test suite per suite file, one test case per step, and
/// one erroring test case per suite that could not be loaded or run (CI must see those
/// too, not only the steps that ran).
fn write_junit(path: &Path, reports: &[SuiteReport], load_errors: &[String]) -> anyhow::Result<()> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("cardrules");
    if !load_errors.is_empty() {
        let mut test_suite = TestSuite::new("suites that could not be loaded");
        for (index, error) in load_errors.iter().enumerate() {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(error.clone());
            status.set_description(error.clone());
            let mut case = TestCase::new(format!("load error {}", index + 1), status);
            case.set_classname("cardrules");
            test_suite.add_test_case(case);
        }
        report.add_test_suite(test_suite);
    }
    for suite_report in reports {
        let mut test_suite = TestSuite::new(suite_report.path.display().to_string());
        for step in &suite_report.steps {
            let name = if step.name.is_empty() {
                format!("step {}: {}", step.number, step.summary)
            } else {
                format!("step {}: {}", step.number, step.name)
            };
            let status = if step.passed() {
                TestCaseStatus::success()
            } else {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_description(step.to_string());
                status
            };
            let mut case = TestCase::new(name, status);
            case.set_classname(suite_report.program.clone());
            test_suite.add_test_case(case);
        }
        report.add_test_suite(test_suite);
    }
    let file = std::fs::File::create(path)?;
    report.serialize(file)?;
    Ok(())
}

fn decide(
    policies: &Path,
    ledger: &LedgerSpec,
    dry_run: bool,
    request_path: &Path,
    trust: Trust,
) -> anyhow::Result<u8> {
    let text = if request_path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the request from standard input")?;
        text
    } else {
        std::fs::read_to_string(request_path)
            .with_context(|| format!("cannot read request `{}`", request_path.display()))?
    };
    let mut request: Request = cardrules::inputs::request(&text)
        .with_context(|| format!("cannot use request `{}`", request_path.display()))?;
    request.dry_run |= dry_run;

    let host = Host::new(Arc::new(Sandbox::new()?), ledger.open()?).with_trust(trust);
    for error in cardrules::loader::load_dir(&host, policies)? {
        eprintln!("warning: {error}");
    }
    host.register_demo_holders(&request.program)?;
    let decision = host.decide(&request)?;
    println!("{}", serde_json::to_string_pretty(&decision)?);
    Ok(exit::OK)
}

/// What `cardrules serve` was asked for.
struct ServeOptions<'a> {
    policies: &'a Path,
    ledger: &'a LedgerSpec,
    listen: &'a str,
    body_limit: usize,
    watch: bool,
    auth: Option<&'a Path>,
    insecure_no_auth: bool,
    shadow: Option<&'a Path>,
    net: NetArgs,
}

/// Why a server without `--auth` refuses a non-loopback address.
fn not_loopback(listen: &str) -> anyhow::Error {
    anyhow!(
        "refusing to listen on `{listen}` without `--auth`: it is not a loopback address \
         (127.0.0.0/8, ::1, localhost), and without tokens anyone who can reach it could \
         decide, register holders and read cards; give `--auth FILE` (make tokens with \
         `cardrules token`), or `--insecure-no-auth` to serve it open anyway"
    )
}

fn serve(options: ServeOptions<'_>, trust: Trust) -> anyhow::Result<u8> {
    use cardrules_server as server;
    let ServeOptions {
        policies,
        ledger,
        listen,
        body_limit,
        watch,
        auth,
        insecure_no_auth,
        shadow,
        net,
    } = options;
    // Who may call, TLS and the bounds are settled before anything is loaded, so a
    // refusal is immediate.
    let tokens = match auth {
        Some(path) => Some(Arc::new(server::auth::Tokens::load(path)?)),
        None => None,
    };
    let tls = match (&net.tls_cert, &net.tls_key) {
        (Some(cert), Some(key)) => {
            Some(server::listen::Tls::load(cert, key).map_err(|e| anyhow!(e))?)
        }
        _ => None,
    };
    let limits = server::limits::Limits {
        max_in_flight: net.max_in_flight,
        max_connections: server::limits::connection_cap(net.max_connections)
            .map_err(|e| anyhow!(e))?,
        idle_timeout: std::time::Duration::from_secs(net.idle_timeout),
        max_header_bytes: net.max_header_bytes,
        queue_alarm: std::time::Duration::from_secs(net.queue_alarm),
    };
    let loopback_only = tokens.is_none() && !insecure_no_auth;
    if loopback_only && !server::auth::is_loopback_listen(listen) {
        return Err(not_loopback(listen));
    }
    tracing::info!("ledger: {ledger}");
    let host = Arc::new(Host::new(Arc::new(Sandbox::new()?), ledger.open()?).with_trust(trust));
    let served = server::load_programs(&host, policies)?;
    if served == 0 {
        return Err(anyhow!(
            "no program under `{}` could be loaded",
            policies.display()
        ));
    }
    let shadow = match shadow {
        None => None,
        Some(dir) => {
            let candidates = Host::new(host.sandbox().clone(), Arc::new(MemoryLedger::new()))
                .with_trust(host.trust_for_candidates());
            if let Some(e) = cardrules::loader::load_dir(&candidates, dir)?
                .into_iter()
                .next()
            {
                return Err(
                    anyhow::Error::new(e).context(format!("cannot shadow `{}`", dir.display()))
                );
            }
            let shadow = Arc::new(cardrules::shadow::Shadow::new(
                host.sandbox().clone(),
                host.ledger().journal().clone(),
                candidates.programs(),
            ));
            server::follow(shadow.clone()).context("cannot start the shadow")?;
            tracing::info!("shadow: candidates from `{}`", dir.display());
            Some(shadow)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Host work is bounded by `--max-in-flight`; a few more for hot reloads.
        .max_blocking_threads(limits.max_in_flight + 8)
        .build()
        .context("cannot start the async runtime")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (max_in_flight, max_connections, idle) = (
        limits.max_in_flight,
        limits.max_connections,
        limits.idle_timeout.as_secs(),
    );
    let api = server::Server::new(
        host.clone(),
        server::Options {
            body_limit,
            tokens: tokens.clone(),
            shadow,
            tls,
            limits,
        },
    );
    runtime.block_on(async {
        let _watcher = if watch {
            Some(server::watch(host.clone(), policies, api.metrics())?)
        } else {
            None
        };
        let listener = server::listen::bind(listen)
            .await
            .with_context(|| format!("cannot listen on `{listen}`"))?;
        let address = listener.local_addr()?;
        // `localhost` is resolved by the system: check what was actually bound.
        if loopback_only && !address.ip().to_canonical().is_loopback() {
            return Err(not_loopback(&address.to_string()));
        }
        match (&tokens, auth) {
            (Some(tokens), Some(path)) => tracing::info!(
                programs = served,
                "listening on {scheme}://{address}; callers need a bearer token: {} known, from `{}`",
                tokens.len(),
                path.display()
            ),
            _ if insecure_no_auth => tracing::warn!(
                programs = served,
                "listening on {scheme}://{address} WITHOUT ACCESS CONTROL (`--insecure-no-auth`): \
                 anyone who can reach it may decide, register holders and read cards"
            ),
            _ => tracing::info!(
                programs = served,
                "listening on {scheme}://{address}; no `--auth`: every caller may do everything, \
                 so only loopback addresses are served"
            ),
        }
        // Tests and scripts read the bound address (useful with port 0) from stdout.
        tracing::info!(
            "limits: {max_in_flight} requests in flight (`--max-in-flight`), \
             {max_connections} connections (`--max-connections`), {idle} s to send a request \
             (`--idle-timeout`), {body_limit} bytes of body (`--body-limit`)"
        );
        println!("listening on {scheme}://{address}");
        std::io::stdout().flush()?;
        api.serve(listener).await;
        tracing::info!("shut down");
        anyhow::Ok(())
    })?;
    Ok(exit::OK)
}

fn token(name: &str, role: &str, programs: &[String], actions: &[String]) -> anyhow::Result<u8> {
    use cardrules_server::auth::{self, Role};
    let role: Role = role.parse()?;
    if !actions.is_empty() && role != Role::Terminal {
        return Err(anyhow!(
            "`--action` is for role `terminal` only; role `{role}` may ask for every action"
        ));
    }
    let made = auth::new_token(name, role, programs, actions)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "token: {}", made.token)?;
    writeln!(
        out,
        "# The token above is shown once and stored nowhere: give it to the caller, who sends\n\
         # `Authorization: Bearer <token>`. Append this entry (the token's SHA-256) to the\n\
         # auth file of `cardrules serve --auth FILE`, then restart the server:"
    )?;
    write!(out, "{}", made.entry)?;
    Ok(exit::OK)
}

fn parse_time(text: &str) -> Result<i64, String> {
    cardrules::parse_instant(text).map(|t| t.as_second())
}

fn replay_ledger(
    ledger: &LedgerSpec,
    policies: &Path,
    only: Option<&str>,
    window: cardrules::replay::Window,
    json: bool,
    html: Option<&Path>,
    trust: Trust,
) -> anyhow::Result<u8> {
    if let LedgerSpec::Sqlite(path) = ledger
        && !path.is_file()
    {
        return Err(anyhow!("no ledger at `{}`", path.display()));
    }
    let original = ledger.open()?;
    let sandbox = Arc::new(Sandbox::new()?);
    let loader = Host::new(sandbox.clone(), Arc::new(MemoryLedger::new())).with_trust(trust);
    if let Some(e) = cardrules::loader::load_dir(&loader, policies)?
        .into_iter()
        .next()
    {
        return Err(e.into());
    }
    let mut programs = loader.programs();
    if let Some(only) = only {
        programs.retain(|p| p.id() == only);
        if programs.is_empty() {
            return Err(anyhow!(
                "no program `{only}` under `{}`",
                policies.display()
            ));
        }
    }
    let report = cardrules::replay::replay(&sandbox, &original, &programs, window)?;
    if let Some(path) = html {
        let page = replay::html(
            &report,
            &format!("Replay of {ledger} against {}", policies.display()),
        );
        std::fs::write(path, page).with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", replay::table(&report));
    }
    Ok(exit::OK)
}

fn new_program(s: scaffold::Scaffold) -> anyhow::Result<u8> {
    let written =
        scaffold::create(&s).with_context(|| format!("cannot scaffold program `{}`", s.program))?;
    for path in written {
        println!("created {}", path.display());
    }
    println!(
        "build with `cargo build --release`, then run its suite: `cardrules test {}`",
        s.policies.join(&s.program).join("suites").display()
    );
    Ok(exit::OK)
}

fn keygen(out: &Path) -> anyhow::Result<u8> {
    let keys = cardrules::signing::keygen()?;
    let secret = out.with_extension("key");
    let public = out.with_extension("pub");
    for path in [&secret, &public] {
        if path.exists() {
            return Err(anyhow!(
                "`{}` exists already; not overwriting a key",
                path.display()
            ));
        }
    }
    write_secret(&secret, &format!("{}\n", keys.secret))
        .with_context(|| format!("cannot write `{}`", secret.display()))?;
    std::fs::write(&public, format!("{}\n", keys.public))
        .with_context(|| format!("cannot write `{}`", public.display()))?;
    println!(
        "secret key: {} (keep it secret; sign with `cardrules sign --key {}`)",
        secret.display(),
        secret.display()
    );
    println!("public key: {}", keys.public);
    println!("operators trust it for a program with, in their trust file:");
    println!("  [programs]\n  <program> = [\"{}\"]", keys.public);
    Ok(exit::OK)
}

/// Writes a secret key readable by its owner only.
fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

fn sign(key: &Path, programs: &[PathBuf]) -> anyhow::Result<u8> {
    let secret = std::fs::read_to_string(key)
        .with_context(|| format!("cannot read key `{}`", key.display()))?;
    for dir in programs {
        let signed = cardrules::signing::sign(&secret, dir)?;
        let files: Vec<&str> = signed.files.keys().map(String::as_str).collect();
        println!(
            "signed `{}`: program `{}`, {} files: {}",
            dir.join(cardrules::signing::SIGNATURE_FILE).display(),
            signed.program,
            files.len(),
            files.join(", ")
        );
    }
    Ok(exit::OK)
}

fn bench(options: bench::Options, json: bool) -> anyhow::Result<u8> {
    if !(options.seconds > 0.0 && options.seconds <= 600.0) {
        return Err(anyhow!("`--seconds` must be between 0 and 600"));
    }
    let report = bench::run(&options)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(exit::OK);
    }
    let m = &report.machine;
    println!(
        "{} cpus, {} {}; {} s per measurement; loading all programs (cached): {:.1} ms",
        m.cpus, m.os, m.arch, report.seconds_per_measurement, report.load_all_ms
    );
    let rows = report.floor.iter().chain(&report.programs);
    for p in rows {
        println!(
            "\n{} {} — component {} KiB, compile {:.0} ms, load {:.1} ms, instantiate {:.1} µs, fuel mean {:.0} max {}, mix of {}",
            p.program,
            p.version,
            p.component_bytes / 1024,
            p.compile_ms,
            p.load_ms,
            p.instantiate_us,
            p.fuel.mean,
            p.fuel.max,
            p.mix
        );
        for (label, t) in [
            ("evaluation", &p.evaluation),
            ("durable, 1 thread", &p.durable_1_thread),
            ("durable, 2 threads", &p.durable_2_threads),
        ] {
            println!(
                "  {label:<20} {:>9.0}/s  p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>9.1} µs",
                t.per_second, t.p50_us, t.p99_us, t.max_us
            );
        }
        if let Some(ratio) = p.evaluation_p50_over_floor {
            println!("  evaluation p50 is {ratio:.1}× the empty policy's");
        }
    }
    Ok(exit::OK)
}
