//! What keeps the server answering under load (`serve --max-in-flight`, `--idle-timeout`,
//! `--max-connections`, `--max-connections-per-peer`, …): a bound on host work in flight
//! that answers 503 at once past it, and the ceilings and timeouts of connections.
//!
//! Host work (a decision, a registration, a card read) runs on tokio's blocking pool, which
//! would otherwise grow and queue without limit. Each piece of it needs a [`Pass`] from the
//! [`Gate`], taken without waiting and held until the work has returned — also when the
//! caller has gone — so the pool never holds more than the bound.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The default bound on host work in flight (decisions, registrations, card reads).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// The default time a connection may take to send a request's head (new, idle between
/// requests, or half-sent), and a request its body.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default ceiling on a request's head (request line and headers), in bytes.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long host work may have been in flight before `/readyz` says the server is behind.
pub const DEFAULT_QUEUE_ALARM: Duration = Duration::from_secs(5);
/// The default bound on connections open from one peer address (an IPv6 peer's /64): one
/// client — a script gone wrong, or an attacker — holding idle connections must leave the
/// server's other places to everyone else. A venue's tills behind one NAT use a few dozen;
/// a reverse proxy in front is one peer for everybody, and needs the flag raised.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 256;
/// How long a stopping server waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The seconds a 503 asks the caller to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 1;
/// Open files kept for everything but connections: the ledger, policies being read, the
/// compiled-component cache, the watcher, logs.
pub const RESERVED_FILES: u64 = 128;
/// The connection cap when the open-file limit is unlimited.
const MOST_CONNECTIONS: u64 = 1 << 16;

/// The server's bounds, as `serve` was given them.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Host work in flight; past it, 503 at once.
    pub max_in_flight: usize,
    /// Open connections; past it, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Open connections from one peer; past it, a new one is answered 503 and closed.
    pub max_connections_per_peer: usize,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`DEFAULT_MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// See [`DEFAULT_QUEUE_ALARM`].
    pub queue_alarm: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_connections: connection_cap(None).unwrap_or(512),
            max_connections_per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            queue_alarm: DEFAULT_QUEUE_ALARM,
        }
    }
}

/// The process's soft limit on open files (`ulimit -n`); `None` when unlimited.
pub fn open_file_limit() -> std::io::Result<Option<u64>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes the limit into the struct it is given, nothing else.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if status != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur))
}

/// Raises the process's soft limit on open files to its hard limit, which an unprivileged
/// process may do: distributions start services at a soft 1 024 while allowing far more,
/// and every connection costs a file. Returns the limit before and after when it was
/// raised, `None` when it already was the hard one.
pub fn raise_open_file_limit() -> std::io::Result<Option<(u64, Option<u64>)>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes the limit into the struct it is given, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur == limit.rlim_max {
        return Ok(None);
    }
    let before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `setrlimit` reads the struct it is given; a soft limit up to the hard one is
    // always allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Some((
        before,
        (limit.rlim_max != libc::RLIM_INFINITY).then_some(limit.rlim_max),
    )))
}

/// The most connections the open-file limit allows with [`RESERVED_FILES`] kept back (so
/// that accepting never fails for want of a file), or `asked` if it is within that.
pub fn connection_cap(asked: Option<usize>) -> Result<usize, String> {
    let limit = open_file_limit().map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    let most = match limit {
        None => MOST_CONNECTIONS,
        Some(files) if files > 2 * RESERVED_FILES => files - RESERVED_FILES,
        Some(files) => files / 2,
    };
    let most = usize::try_from(most).unwrap_or(usize::MAX).max(1);
    match asked {
        None => Ok(most),
        Some(0) => Err("`--max-connections` must be at least 1".to_string()),
        Some(asked) if asked <= most => Ok(asked),
        Some(asked) => Err(format!(
            "`--max-connections` {asked} is more than the open-file limit allows: {} files \
             (`ulimit -n`), of which {RESERVED_FILES} are kept for the ledger, policies and \
             logs, leaves {most}; raise `ulimit -n` or ask for fewer",
            limit.map_or("unlimited".to_string(), |files| files.to_string()),
        )),
    }
}

/// The bound on host work in flight.
#[derive(Debug)]
pub struct Gate {
    permits: Arc<Semaphore>,
    max: usize,
    /// When each piece of work in flight started, by ticket.
    started: Mutex<BTreeMap<u64, Instant>>,
    next: AtomicU64,
}

/// Leave to run one piece of host work; dropping it frees the place.
#[derive(Debug)]
pub struct Pass {
    _permit: OwnedSemaphorePermit,
    gate: Arc<Gate>,
    ticket: u64,
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gate.started.lock().remove(&self.ticket);
    }
}

impl Gate {
    pub fn new(max: usize) -> Arc<Gate> {
        Arc::new(Gate {
            permits: Arc::new(Semaphore::new(max)),
            max,
            started: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
        })
    }

    /// A pass if a place is free now; never waits.
    pub fn try_enter(self: &Arc<Gate>) -> Option<Pass> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        self.started.lock().insert(ticket, Instant::now());
        Some(Pass {
            _permit: permit,
            gate: self.clone(),
            ticket,
        })
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Host work in flight now.
    pub fn in_flight(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// How long the oldest work in flight has been running or waiting for its lane.
    pub fn oldest(&self) -> Option<Duration> {
        let started = self.started.lock();
        // Tickets grow with time, so the first is the oldest.
        started.values().next().map(Instant::elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_refuses_past_its_bound_and_frees_places_on_drop() {
        let gate = Gate::new(2);
        let a = gate.try_enter().unwrap();
        let _b = gate.try_enter().unwrap();
        assert!(gate.try_enter().is_none());
        assert_eq!(gate.in_flight(), 2);
        assert!(gate.oldest().is_some());
        drop(a);
        assert_eq!(gate.in_flight(), 1);
        assert!(gate.try_enter().is_some());
    }

    #[test]
    fn a_connection_cap_beyond_the_open_file_limit_is_refused() {
        let most = connection_cap(None).unwrap();
        assert_eq!(connection_cap(Some(most)).unwrap(), most);
        if most < usize::MAX {
            let error = connection_cap(Some(most + 1)).unwrap_err();
            assert!(
                error.contains("more than the open-file limit allows"),
                "{error}"
            );
        }
        assert!(connection_cap(Some(0)).is_err());
    }
}
