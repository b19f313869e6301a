//! The command line: every subcommand and flag of docs/contract.md, as clap parses them.

use std::path::{Path, PathBuf};

use cardrules::Trust;
use clap::builder::TypedValueParser as _;
use clap::{Parser, Subcommand};

use crate::ledger::LedgerSpec;

/// The ledger file used when `--ledger` is not given.
pub const DEFAULT_LEDGER: &str = "cardrules.sqlite";

#[derive(Parser)]
#[command(
    name = "cardrules",
    version,
    about = "WebAssembly rules engine for municipal benefit-card programs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Which policies to accept.
#[derive(clap::Args)]
pub struct TrustArgs {
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
    pub fn resolve(&self, unsigned_by_default: bool) -> anyhow::Result<Trust> {
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

/// Whether a request's `at` is bounded by its program's `max-lateness` and `max-skew`.
#[derive(clap::Args)]
pub struct LatenessArgs {
    /// `none`: decide requests at any `at`, however late or early (for recorded traffic
    /// only) [default: each program's `max-lateness` and `max-skew`].
    #[arg(long, value_name = "none", value_parser = ["none"])]
    max_lateness: Option<String>,
}

impl LatenessArgs {
    /// Whether requests' times are bounded (the server and `decide` log when they are not).
    pub fn bounded(&self) -> bool {
        self.max_lateness.is_none()
    }
}

/// How `serve` talks to the network: TLS and the bounds that keep it answering.
#[derive(clap::Args)]
pub struct NetArgs {
    /// Serve HTTPS: the server's certificate chain, PEM, its own certificate first.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert`, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The most decisions, registrations and card reads in flight; past it the answer is
    /// 503 with `Retry-After`, at once.
    #[arg(long, value_name = "N", default_value_t = cardrules_server::limits::DEFAULT_MAX_IN_FLIGHT,
          value_parser = clap::value_parser!(u32).range(1..=65_536).map(|n| n as usize))]
    pub max_in_flight: usize,
    /// Seconds a connection may take to send a request's head (new, idle between
    /// requests, or half-sent) or a request its body, before it is closed (408 for a body).
    #[arg(long, value_name = "SECONDS", default_value_t = cardrules_server::limits::DEFAULT_IDLE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout: u64,
    /// The most open connections [default: the open-file limit (`ulimit -n`) less 128];
    /// past it new connections wait until others close.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// The most open connections from one peer address (an IPv6 peer's /64 counts as one);
    /// past it a new one is answered 503 and closed. Behind a reverse proxy every connection
    /// comes from the proxy: raise it to `--max-connections`.
    #[arg(long, value_name = "N", default_value_t = cardrules_server::limits::DEFAULT_MAX_CONNECTIONS_PER_PEER,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_connections_per_peer: usize,
    /// Seconds a request may have been in flight (deciding, or waiting for its program's
    /// lane) before `/readyz` says decisions are queueing (503).
    #[arg(long, value_name = "SECONDS", default_value_t = cardrules_server::limits::DEFAULT_QUEUE_ALARM.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub queue_alarm: u64,
    /// The largest request head (request line and headers), in bytes; larger is a 431.
    #[arg(long, value_name = "BYTES", default_value_t = cardrules_server::limits::DEFAULT_MAX_HEADER_BYTES,
          value_parser = clap::value_parser!(u32).range(1024..=1_048_576).map(|n| n as usize))]
    pub max_header_bytes: usize,
    /// Write a program's snapshot (its state, kept in the ledger, to start from) every
    /// EVENTS events appended to it, in the background; 0: never.
    #[arg(long, value_name = "EVENTS", default_value_t = cardrules::ledger::SNAPSHOT_EVERY)]
    pub snapshot_every: u64,
    /// Apply each program's `[retention]` (remove old events, erase ended holders, forget
    /// old access-log entries) every SECONDS, in the background; 0: never.
    #[arg(long, value_name = "SECONDS", default_value_t = cardrules_server::DEFAULT_COMPACT_EVERY.as_secs())]
    pub compact_every: u64,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run policy suites; with no PATH, every `suites/` under the policies directory.
    Test {
        /// The policies directory [default: `policies`, or the parent of the program
        /// directories given as PATH].
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Also write a JUnit XML report to FILE, for CI systems.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Print, per program, which checks the steps saw both passing and failing, and
        /// which reasons they saw as a denial.
        #[arg(long)]
        coverage: bool,
        /// Write the coverage as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        coverage_json: Option<PathBuf>,
        /// Exit 1 when a program's share of checks seen both ways is below PCT.
        #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(f64))]
        min_coverage: Option<f64>,
        /// Suite files, directories searched for `*.toml`, or program directories (with a
        /// `policy.toml`), whose `suites/` are run.
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
        /// Also print why: the checks the policy evaluated and what it read from the host.
        #[arg(long)]
        explain: bool,
        /// The request as JSON; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        #[command(flatten)]
        lateness: LatenessArgs,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Serve the point-of-sale HTTP API; programs reload when their files change.
    Serve(ServeArgs),
    /// Make an API token for `serve --auth`: prints the token once, and the `[[tokens]]`
    /// entry (its SHA-256, not the token) to append to the auth file.
    Token {
        /// The token's name, shown in the server's logs.
        #[arg(long)]
        name: String,
        /// What the token may do (`guardian`: a parent's portal, for its `--card`s only).
        #[arg(long, value_parser = ["terminal", "registrar", "admin", "guardian", "venue"])]
        role: String,
        /// A program the token may act for; `*` for every program. Repeat for more.
        #[arg(long = "program", value_name = "PROGRAM", required = true)]
        programs: Vec<String>,
        /// An action a terminal may ask for (every action if none is given), or a guardian
        /// (required). Repeat for more.
        #[arg(long = "action", value_name = "ACTION")]
        actions: Vec<String>,
        /// A card a guardian may act for (role `guardian` only, and required for it). Repeat
        /// for more.
        #[arg(long = "card", value_name = "CARD")]
        cards: Vec<String>,
        /// A catalogue location a venue host is (role `venue` only, and required for it).
        /// Repeat for more.
        #[arg(long = "location", value_name = "LOCATION")]
        locations: Vec<String>,
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
        /// Also time the programs found in this other policies directory (another build
        /// of the same programs, e.g. against an earlier world version), in the same run.
        #[arg(long, value_name = "DIR")]
        baseline: Option<PathBuf>,
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
    /// Scaffold a program: a project of its own under the policies directory (in Rust,
    /// Python or JavaScript), with a starter rule proved both ways by a suite; builds with
    /// `cardrules build` as it is, in any directory.
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
        /// Inside a cardrules checkout: where its program crates live [default:
        /// `guest-rules/programs` when it exists; elsewhere a Rust program directory is
        /// a crate of its own].
        #[arg(long)]
        guests: Option<PathBuf>,
        /// The policy's language: `rust` (a guest crate), `python` (`policy.py`) or `js`
        /// (`policy.js`).
        #[arg(long, default_value = "rust")]
        lang: String,
    },
    /// Build programs from their source, whatever its language, into the component each
    /// manifest names: Python and JavaScript with the repository's pinned toolchains
    /// (installed on first use), Rust with cargo.
    Build {
        /// The policies directory.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// Only these programs [default: every program under the policies directory].
        programs: Vec<String>,
    },
    /// Send a built, signed program directory to a running host, which verifies it, runs
    /// its suites and serves it, or refuses it and keeps the running version: exit 0 when
    /// active, 1 when refused (the reason on stderr), 2 on bad input.
    Publish {
        /// The host's base URL, e.g. `https://city.example:8443`.
        #[arg(long, value_name = "URL")]
        to: String,
        /// A file holding a registrar or admin token of that host.
        #[arg(long, value_name = "FILE")]
        token: std::path::PathBuf,
        /// The program directory (its `policy.toml`, component, catalogue, suites, `policy.sig`).
        dir: std::path::PathBuf,
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
    /// What a card may still do: for each offer and action its program's allowances ask
    /// about, the policy's answer and what remains of each counting rule. Commits nothing.
    Allowances {
        /// The program id.
        #[arg(long)]
        program: String,
        /// The card.
        #[arg(long)]
        card: String,
        /// The moment (RFC 3339 with an offset) [default: now].
        #[arg(long)]
        at: Option<String>,
        /// Only this action.
        #[arg(long)]
        action: Option<String>,
        /// Only this offer.
        #[arg(long)]
        offer: Option<String>,
        /// The language of the messages [default: the program's first].
        #[arg(long)]
        language: Option<String>,
        #[command(flatten)]
        ledger: ReadArgs,
    },
    /// A card's statement, oldest first: its decisions, registrations and replacements, and
    /// those of the cards its holder had before it. Commits nothing.
    History {
        /// The program id.
        #[arg(long)]
        program: String,
        /// The card.
        #[arg(long)]
        card: String,
        /// Only entries at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only entries before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Entries per page, 1 to 1000 [default: 100].
        #[arg(long)]
        limit: Option<String>,
        /// The `next` cursor of the previous page.
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        ledger: ReadArgs,
    },
    /// Look after a ledger: what it holds, and whether its snapshots are true to its journal.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
}

/// `cardrules ledger …`
#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Events, programs, cards, each program's snapshot position, and the ledger's size.
    Stats {
        /// The ledger: a file path or `sqlite:PATH`, or a `postgres://user@host:port/db` URL.
        #[arg(long, default_value = DEFAULT_LEDGER)]
        ledger: LedgerSpec,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild every program's state from its first event and compare it with its latest
    /// snapshot; exit 1 on a difference. Writes nothing.
    Verify {
        /// The ledger: a file path or `sqlite:PATH`, or a `postgres://user@host:port/db` URL.
        #[arg(long, default_value = DEFAULT_LEDGER)]
        ledger: LedgerSpec,
        /// Only this program (repeat for more) [default: every program].
        #[arg(long = "program", value_name = "PROGRAM")]
        programs: Vec<String>,
    },
    /// Erase the personal data of a card's holder: every registration of its facts, on
    /// any of its cards, is rewritten without them in the journal (the SQLite file and its
    /// write-ahead log, or the PostgreSQL rows), snapshots are rewritten; amounts, times,
    /// offers and outcomes stay. Exit 2 with the reason when it cannot be erased (money
    /// left on the card, a program that archives its holders).
    Erase {
        #[command(flatten)]
        read: ReadArgs,
        #[arg(long)]
        program: String,
        #[arg(long)]
        card: String,
    },
    /// Restrict a card's holder (its data kept, nothing decided on the card), or with
    /// `--lift` lift the restriction.
    Restrict {
        #[command(flatten)]
        read: ReadArgs,
        #[arg(long)]
        program: String,
        #[arg(long)]
        card: String,
        /// Lift the restriction instead.
        #[arg(long)]
        lift: bool,
    },
    /// Apply each program's `[retention]` now: fold the events older than it into a base
    /// snapshot and remove them, erase the holders of cards stopped longer than it, and
    /// forget old access-log entries; says what it removed. Safe while a server serves.
    Compact {
        #[command(flatten)]
        read: ReadArgs,
        /// Compact as of this time (RFC 3339) [default: now].
        #[arg(long, value_parser = parse_time)]
        at: Option<i64>,
        /// Then give the space back to the file system (SQLite `VACUUM`, which waits for
        /// and holds off writers; PostgreSQL `VACUUM`).
        #[arg(long)]
        vacuum: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print everything the ledger holds about a card's holder as one JSON document (as
    /// `GET …/cards/{card}/export` answers it); recorded in the card's access log.
    Export {
        #[command(flatten)]
        read: ReadArgs,
        #[arg(long)]
        program: String,
        #[arg(long)]
        card: String,
    },
}

/// Where a command that reads a card finds its programs and ledger.
#[derive(clap::Args)]
pub struct ReadArgs {
    /// The policies directory.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// The ledger: a file path or `sqlite:PATH`, or a `postgres://user@host:port/db` URL.
    #[arg(long, default_value = DEFAULT_LEDGER)]
    pub ledger: LedgerSpec,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// What `cardrules serve` is given (docs/contract.md); made into a
/// [`cardrules_server::Config`] by `serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The policies directory, watched for changes.
    #[arg(long, default_value = "policies")]
    pub policies: PathBuf,
    /// The ledger: a file path or `sqlite:PATH` (created on first use), or a
    /// `postgres://user@host:port/db` URL shared with other hosts. Demo holders are
    /// registered.
    #[arg(long, default_value = DEFAULT_LEDGER)]
    pub ledger: LedgerSpec,
    /// The address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The largest request body accepted, in bytes.
    #[arg(long, default_value_t = cardrules_server::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// Do not watch the policies directory (no hot reload).
    #[arg(long)]
    pub no_watch: bool,
    /// The auth file: the `[[tokens]]` callers may use (see `cardrules token`). Without
    /// it every caller may do everything, so only loopback addresses are served.
    #[arg(long, value_name = "FILE")]
    pub auth: Option<PathBuf>,
    /// Serve a non-loopback address without `--auth`: anyone who can reach it may
    /// decide, register holders and read cards.
    #[arg(long, conflicts_with = "auth")]
    pub insecure_no_auth: bool,
    /// Candidate versions of the programs: each decision is also evaluated against its
    /// program's candidate here (a dry run on the same ledger state, off the answer's
    /// path); agreements and differences show under `shadow` in `GET /v1/programs`.
    #[arg(long, value_name = "DIR")]
    pub shadow: Option<PathBuf>,
    /// Serve as a venue host of the city host at this URL: programs are pulled from it
    /// (into `--policies`, verified against `--trust`, gated on their suites), decisions
    /// and card reads are forwarded to it, and `--ledger` follows its journal.
    #[arg(long, value_name = "URL", requires = "upstream_token")]
    pub upstream: Option<String>,
    /// The file holding the venue's token at the city host (role `venue`).
    #[arg(long, value_name = "FILE", requires = "upstream")]
    pub upstream_token: Option<PathBuf>,
    /// The CA certificate (PEM) that signed the city host's certificate, when a private
    /// CA did.
    #[arg(long, value_name = "FILE", requires = "upstream")]
    pub upstream_ca: Option<PathBuf>,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub lateness: LatenessArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
}

fn parse_time(text: &str) -> Result<i64, String> {
    cardrules::parse_instant(text).map(|t| t.as_second())
}
