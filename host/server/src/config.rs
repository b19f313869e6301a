//! What a server is started with ([`Config`], the flags of `cardrules serve`), and its
//! validation: every file it names is read and every bound checked before any work starts
//! (no ledger opened, no program compiled), so that a mistake is refused at once.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cardrules::{Journal, Trust};

use crate::auth::{self, Tokens};
use crate::limits::{self, Limits};
use crate::listen::Tls;
use crate::start::StartError;

/// Where the server's ledger is, opened only once the configuration is valid. The server
/// names no backend itself (the command maps `--ledger` to SQLite or PostgreSQL), so it
/// needs no SQL client.
pub trait LedgerSource: fmt::Display + Send + Sync {
    /// Opens the journal, creating its schema on first use. `Display` names it in the log,
    /// without secrets.
    fn open(&self) -> cardrules::Result<Arc<dyn Journal>>;
}

/// Everything `cardrules serve` is given; see docs/contract.md for each flag.
pub struct Config {
    /// The policies directory (`--policies`), watched for changes unless `watch` is off.
    pub policies: PathBuf,
    /// The ledger (`--ledger`); its programs' demo holders are registered.
    pub ledger: Box<dyn LedgerSource>,
    /// Which policies to accept (`--trust`, `--allow-unsigned`).
    pub trust: Trust,
    /// The address to listen on (`--listen`); port 0 picks a free port.
    pub listen: String,
    /// The largest request body, in bytes (`--body-limit`).
    pub body_limit: usize,
    /// Hot reload: reload a program when its files change (off with `--no-watch`).
    pub watch: bool,
    /// The auth file of the tokens callers may use (`--auth`); without it every caller may
    /// do everything, so only loopback addresses are served, unless `insecure_no_auth`.
    pub auth: Option<PathBuf>,
    /// Serve a non-loopback address without `auth` (`--insecure-no-auth`).
    pub insecure_no_auth: bool,
    /// A directory of candidate versions to shadow the live decisions (`--shadow`).
    pub shadow: Option<PathBuf>,
    /// Serve HTTPS: the certificate chain and its private key, PEM (`--tls-cert`,
    /// `--tls-key`); `None`: plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The most host work in flight (`--max-in-flight`), 1 to [`MOST_IN_FLIGHT`].
    pub max_in_flight: usize,
    /// How long a connection may take to send a request's head or body (`--idle-timeout`),
    /// 1 s to an hour.
    pub idle_timeout: Duration,
    /// The most open connections (`--max-connections`); `None`: as many as the open-file
    /// limit allows.
    pub max_connections: Option<usize>,
    /// The most open connections from one peer address, an IPv6 peer's /64 counted as one
    /// (`--max-connections-per-peer`), at least 1.
    pub max_connections_per_peer: usize,
    /// The largest request head (`--max-header-bytes`), 1 KiB to 1 MiB.
    pub max_header_bytes: usize,
    /// How long work may be in flight before `/readyz` says decisions are queueing
    /// (`--queue-alarm`), 1 s to an hour.
    pub queue_alarm: Duration,
    /// Write a program's snapshot every this many events appended to it (`--snapshot-every`;
    /// 0: never), and at start when it read a tenth of that from its journal.
    pub snapshot_every: u64,
    /// Apply each program's `[retention]` this often, in the background
    /// (`--compact-every`; zero: never).
    pub compact_every: Duration,
    /// Bound each request's `at` by its program's `max-lateness` and `max-skew` (off with
    /// `--max-lateness none`, for recorded traffic; logged).
    pub bound_times: bool,
    /// Serve as a venue host of this city (`--upstream`): programs come from the city
    /// (kept in `policies`, not watched), decisions and card reads go to it, and the
    /// ledger follows its journal.
    pub venue: Option<Arc<dyn crate::upstream::VenueRole>>,
}

/// The most `max_in_flight` may be.
pub const MOST_IN_FLIGHT: usize = 65_536;
/// The bounds of `idle_timeout` and `queue_alarm`.
const SECONDS: std::ops::RangeInclusive<u64> = 1..=3600;
/// The bounds of `max_header_bytes`.
const HEADER_BYTES: std::ops::RangeInclusive<usize> = 1024..=1_048_576;

impl Config {
    /// The configuration of `cardrules serve` with no flag but these: plain HTTP on
    /// `127.0.0.1:8080`, no auth (loopback only), hot reload, the default limits.
    pub fn new(policies: PathBuf, ledger: Box<dyn LedgerSource>, trust: Trust) -> Config {
        Config {
            policies,
            ledger,
            trust,
            listen: "127.0.0.1:8080".to_string(),
            body_limit: crate::DEFAULT_BODY_LIMIT,
            watch: true,
            auth: None,
            insecure_no_auth: false,
            shadow: None,
            tls: None,
            max_in_flight: limits::DEFAULT_MAX_IN_FLIGHT,
            idle_timeout: limits::DEFAULT_IDLE_TIMEOUT,
            max_connections: None,
            max_connections_per_peer: limits::DEFAULT_MAX_CONNECTIONS_PER_PEER,
            max_header_bytes: limits::DEFAULT_MAX_HEADER_BYTES,
            queue_alarm: limits::DEFAULT_QUEUE_ALARM,
            snapshot_every: cardrules::ledger::SNAPSHOT_EVERY,
            compact_every: crate::DEFAULT_COMPACT_EVERY,
            bound_times: true,
            venue: None,
        }
    }

    /// Checks the configuration whole and reads what it names — the auth file, the TLS
    /// certificate and key, the open-file limit (first raised to the hard limit) — without
    /// opening the ledger or loading a program.
    pub fn validate(self) -> Result<Validated, StartError> {
        if self.auth.is_some() && self.insecure_no_auth {
            return Err(StartError::msg(
                "`--auth` and `--insecure-no-auth` do not mix: with an auth file the server \
                 is not open",
            ));
        }
        if !(1..=MOST_IN_FLIGHT).contains(&self.max_in_flight) {
            return Err(StartError::msg(format!(
                "`--max-in-flight` {} is not in 1..={MOST_IN_FLIGHT}",
                self.max_in_flight
            )));
        }
        for (flag, value) in [
            ("--idle-timeout", self.idle_timeout),
            ("--queue-alarm", self.queue_alarm),
        ] {
            // Whole seconds, as the flags give them.
            if !SECONDS.contains(&value.as_secs()) || value.subsec_nanos() != 0 {
                return Err(StartError::msg(format!(
                    "`{flag}` {} s is not a whole number of seconds in 1..=3600",
                    value.as_secs_f64()
                )));
            }
        }
        if !HEADER_BYTES.contains(&self.max_header_bytes) {
            return Err(StartError::msg(format!(
                "`--max-header-bytes` {} is not in 1024..=1048576",
                self.max_header_bytes
            )));
        }
        let tokens = match &self.auth {
            Some(path) => Some(Arc::new(
                Tokens::load(path).map_err(StartError::from_error)?,
            )),
            None => None,
        };
        let tls = match &self.tls {
            Some((cert, key)) => Some(Tls::load(cert, key).map_err(StartError::msg)?),
            None => None,
        };
        if self.max_connections_per_peer == 0 {
            return Err(StartError::msg(
                "`--max-connections-per-peer` must be at least 1",
            ));
        }
        match limits::raise_open_file_limit() {
            Ok(None) => {}
            Ok(Some((before, after))) => tracing::info!(
                "raised the open-file limit (`ulimit -n`) from {before} to the hard limit, {}",
                after.map_or("unlimited".to_string(), |files| files.to_string())
            ),
            // The server still runs within the soft limit; the connection cap follows it.
            Err(e) => tracing::warn!("cannot raise the open-file limit (`ulimit -n`): {e}"),
        }
        let limits = Limits {
            max_in_flight: self.max_in_flight,
            max_connections: limits::connection_cap(self.max_connections)
                .map_err(StartError::msg)?,
            max_connections_per_peer: self.max_connections_per_peer,
            idle_timeout: self.idle_timeout,
            max_header_bytes: self.max_header_bytes,
            queue_alarm: self.queue_alarm,
        };
        let loopback_only = tokens.is_none() && !self.insecure_no_auth;
        if loopback_only && !auth::is_loopback_listen(&self.listen) {
            return Err(not_loopback(&self.listen));
        }
        Ok(Validated {
            config: self,
            tokens,
            tls,
            limits,
            loopback_only,
        })
    }
}

/// A [`Config`] that passed [`Config::validate`], with what it named read; start it with
/// [`Validated::run`].
pub struct Validated {
    pub(crate) config: Config,
    pub(crate) tokens: Option<Arc<Tokens>>,
    pub(crate) tls: Option<Tls>,
    pub(crate) limits: Limits,
    /// No auth file and no `--insecure-no-auth`: only loopback addresses are served.
    pub(crate) loopback_only: bool,
}

/// Why a server without `--auth` refuses a non-loopback address.
pub(crate) fn not_loopback(listen: &str) -> StartError {
    StartError::msg(format!(
        "refusing to listen on `{listen}` without `--auth`: it is not a loopback address \
         (127.0.0.0/8, ::1, localhost), and without tokens anyone who can reach it could \
         decide, register holders and read cards; give `--auth FILE` (make tokens with \
         `cardrules token`), or `--insecure-no-auth` to serve it open anyway"
    ))
}
