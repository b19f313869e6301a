//! Starting and running a server from a validated [`Config`]: open the ledger, load the
//! programs (each passing its own suites), start the shadow and the watcher, bind, say
//! where it listens, and serve until SIGTERM or Ctrl-C.

use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use cardrules::{Host, MemoryLedger, Sandbox};

use crate::config::{Config, Validated, not_loopback};
use crate::listen;
use crate::reload::{load_programs, watch};
use crate::server::{Options, Server};
use crate::shadow::follow;

/// Why a server could not start, or stopped on an error: a message, and the error that
/// caused it if any (so that a caller can print the chain).
#[derive(Debug)]
pub struct StartError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StartError {
    /// An error that is its message only.
    pub(crate) fn msg(message: impl Into<String>) -> StartError {
        StartError {
            message: message.into(),
            source: None,
        }
    }

    /// `error` as it is: its message, and itself as the cause (whose own causes follow).
    pub(crate) fn from_error(error: impl std::error::Error + Send + Sync + 'static) -> StartError {
        StartError {
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }

    /// `error`, caused while doing what `message` says.
    pub(crate) fn context(
        message: impl Into<String>,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> StartError {
        StartError {
            message: message.into(),
            source: Some(Box::new(error)),
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<cardrules::Error> for StartError {
    fn from(e: cardrules::Error) -> StartError {
        StartError::from_error(e)
    }
}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> StartError {
        StartError::from_error(e)
    }
}

impl Server {
    /// Validates `config`, then runs the server it describes until SIGTERM or Ctrl-C (see
    /// [`Validated::run`]).
    pub fn run(config: Config) -> Result<(), StartError> {
        config.validate()?.run()
    }
}

impl Validated {
    /// Opens the ledger, loads the programs, starts the shadow (`--shadow`) and the watcher
    /// (unless `watch` is off), binds, prints `listening on <scheme>://<address>` on stdout
    /// (scripts and tests read the port from it) and serves until SIGTERM or Ctrl-C, on a
    /// tokio runtime of its own. Returns once requests in flight have finished.
    pub fn run(self) -> Result<(), StartError> {
        let Validated {
            config,
            tokens,
            tls,
            limits,
            loopback_only,
        } = self;
        let Config {
            policies,
            ledger,
            trust,
            listen,
            body_limit,
            watch: watching,
            auth,
            insecure_no_auth,
            shadow,
            snapshot_every,
            compact_every,
            bound_times,
            venue,
            ..
        } = config;
        tracing::info!("ledger: {ledger}");
        // A venue's ledger follows its city's journal: nothing of its own goes in.
        let host = Arc::new(
            Host::new(Arc::new(Sandbox::new()?), ledger.open()?)
                .with_trust(trust)
                .with_demo_holders(venue.is_none())
                // A city waits a moment for a connected venue to hand back a lease that
                // holds a change back (docs/offline.md).
                .with_patience(match venue.is_none() {
                    true => std::time::Duration::from_secs(5),
                    false => std::time::Duration::ZERO,
                }),
        );
        host.ledger().snapshot_every(snapshot_every);
        let served = load_programs(&host, &policies)?;
        // An empty policies directory is a city host waiting for its first `publish` (or a
        // program copied in, with hot reload); programs that are there but all refused are
        // a mistake to stop at.
        let present = cardrules::program_dirs(&policies)?.len();
        if served == 0 && present > 0 && venue.is_none() {
            return Err(StartError::msg(format!(
                "no program under `{}` could be loaded",
                policies.display()
            )));
        }
        if present == 0 && venue.is_none() {
            tracing::warn!(
                "no programs under `{}` yet: publish one (`cardrules publish`) or add one there",
                policies.display()
            );
        }
        let shadow = match shadow {
            None => None,
            Some(dir) => {
                let candidates = Host::new(host.sandbox().clone(), Arc::new(MemoryLedger::new()))
                    .with_trust(host.trust_for_candidates());
                if let Some(e) = cardrules::loader::load_dir(&candidates, &dir)?
                    .into_iter()
                    .next()
                {
                    return Err(StartError::context(
                        format!("cannot shadow `{}`", dir.display()),
                        e,
                    ));
                }
                let shadow = Arc::new(cardrules::shadow::Shadow::new(
                    host.sandbox().clone(),
                    host.ledger().journal().clone(),
                    candidates.programs(),
                ));
                follow(shadow.clone())
                    .map_err(|e| StartError::context("cannot start the shadow", e))?;
                tracing::info!("shadow: candidates from `{}`", dir.display());
                Some(shadow)
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            // Host work is bounded by `--max-in-flight`; a few more for hot reloads.
            .max_blocking_threads(limits.max_in_flight + 8)
            .build()
            .map_err(|e| StartError::context("cannot start the async runtime", e))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (max_in_flight, max_connections, per_peer, idle) = (
            limits.max_in_flight,
            limits.max_connections,
            limits.max_connections_per_peer,
            limits.idle_timeout.as_secs(),
        );
        let api = Server::new(
            host.clone(),
            Options {
                body_limit,
                tokens: tokens.clone(),
                shadow,
                tls,
                limits,
                bound_times,
                policies: Some(policies.clone()),
                upstream: venue.as_ref().map(|venue| venue.upstream()),
            },
        );
        // A venue's programs come from its city, not from files changed under it.
        let watching = watching && venue.is_none();
        runtime.block_on(async {
            let _watcher = if watching {
                Some(watch(host.clone(), &policies, api.metrics())?)
            } else {
                None
            };
            if let Some(venue) = &venue {
                if let Some(alone) = api.alone() {
                    venue.watch(alone);
                }
                venue.start(host.clone(), policies.clone())?;
                if let Some(alone) = api.alone() {
                    std::thread::Builder::new()
                        .name("venue-alone".to_string())
                        .spawn(move || alone.run())
                        .map_err(StartError::from)?;
                }
            }
            if !compact_every.is_zero() {
                compact_in_background(host.clone(), compact_every, bound_times, venue.is_none());
            }
            let listener = listen::bind(&listen)
                .await
                .map_err(|e| StartError::context(format!("cannot listen on `{listen}`"), e))?;
            let address = listener.local_addr()?;
            // `localhost` is resolved by the system: check what was actually bound.
            if loopback_only && !address.ip().to_canonical().is_loopback() {
                return Err(not_loopback(&address.to_string()));
            }
            match (&tokens, &auth) {
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
            tracing::info!(
                "limits: {max_in_flight} requests in flight (`--max-in-flight`), \
                 {max_connections} connections (`--max-connections`), {per_peer} from one peer \
                 (`--max-connections-per-peer`), {idle} s to send a request \
                 (`--idle-timeout`), {body_limit} bytes of body (`--body-limit`)"
            );
            if !bound_times {
                tracing::warn!("{}", cardrules::timing::UNBOUNDED);
            }
            // Tests and scripts read the bound address (useful with port 0) from stdout.
            println!("listening on {scheme}://{address}");
            std::io::stdout().flush()?;
            api.serve(listener).await;
            tracing::info!("shut down");
            Ok(())
        })
    }
}

/// Applies each program's `[retention]` every `every`, on the blocking pool, while the
/// server serves (see `cardrules::retention`). Events are removed only where request
/// times are bounded (`bound_times`): with `--max-lateness none`, a retry of a request
/// older than the retention would no longer be found. A venue host (not `city`) removes
/// old events from its copy of the journal but erases nobody itself: its city's erasures
/// reach it in the journal.
fn compact_in_background(host: Arc<Host>, every: Duration, bound_times: bool, city: bool) {
    if !bound_times {
        tracing::warn!(
            "retention: events are not removed while request times are unbounded (`--max-lateness none`)"
        );
    }
    tokio::spawn(async move {
        // The first run after one period: a start has enough to read already.
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let host = host.clone();
            let done = tokio::task::spawn_blocking(move || {
                let options = cardrules::retention::Options {
                    remove_events: bound_times,
                    erase_ended: city,
                    min_events: cardrules::retention::MIN_EVENTS_WHILE_SERVING,
                };
                host.compact_with(jiff::Timestamp::now().as_second(), options)
            })
            .await;
            match done {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("retention: {e}"),
                Err(e) => tracing::error!("retention: the compaction task failed: {e}"),
            }
        }
    });
}
