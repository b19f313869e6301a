//! A few connections to the database, opened when needed and kept for reuse, each with
//! the statements it has prepared.
//!
//! **Why not a pool crate.** `r2d2` (with a `ManageConnection` of our own, so that a
//! session keeps its prepared statements) was weighed and not taken, for what the rest of
//! the crate relies on:
//! - r2d2 opens connections on a background thread and retries failed ones until the
//!   checkout times out, so a server that refuses us — unreachable, a wrong password, a
//!   certificate `verify-full` rejects — would make every caller wait the whole acquire
//!   timeout (10 s) instead of failing at once (`cardrules serve` at start-up, a 503);
//! - its timeout error keeps the last connection error as a string only, so the cause
//!   chain is lost and an unreachable server (503, [`Error::Unavailable`]) could no longer
//!   be told from a refusal ([`Error::Ledger`]);
//! - each pool brings a thread pool of its own, and it opens connections up to its
//!   maximum ahead of need unless told otherwise.
//!
//! The async pools (deadpool, bb8) need the async client and a runtime of our own. What
//! is here is small: a counter of open connections under a mutex, a condition variable
//! to wait on with a deadline, and connections dropped rather than returned when broken.
//!
//! [`Error::Unavailable`]: cardrules::Error::Unavailable
//! [`Error::Ledger`]: cardrules::Error::Ledger

use std::time::{Duration, Instant};

use cardrules::{Error, Result};
use parking_lot::{Condvar, Mutex};
use postgres::{Client, Config, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::Target;
use crate::error::{fail, is_connection_error};
use crate::journal::{HISTORY, INSERT, LAST, READ, RECORDED};
use crate::tls::SslMode;

/// Connections one ledger keeps at most: one appends at a time (the engine's group commit),
/// the others catch lanes up.
const MAX_CONNECTIONS: usize = 8;
/// How long a caller waits for a connection when all are in use.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A lease without its connection: cannot happen (it is only taken when the lease drops).
pub(crate) fn lost(context: &str) -> Error {
    Error::ledger(context.to_string(), "a pooled connection went missing")
}

/// The statements a session prepares once.
#[derive(Clone, Copy)]
pub(crate) enum Query {
    Read,
    Last,
    Insert,
    History,
    Recorded,
}

/// A connection and its prepared statements.
pub(crate) struct Session {
    pub(crate) client: Client,
    prepared: [Option<Statement>; 5],
}

impl Session {
    pub(crate) fn prepared(&mut self, query: Query) -> Result<Statement, postgres::Error> {
        let (slot, text) = match query {
            Query::Read => (0, READ),
            Query::Last => (1, LAST),
            Query::Insert => (2, INSERT),
            Query::History => (3, HISTORY),
            Query::Recorded => (4, RECORDED),
        };
        if let Some(statement) = &self.prepared[slot] {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(text)?;
        self.prepared[slot] = Some(statement.clone());
        Ok(statement)
    }
}

/// A few connections, opened when needed and kept for reuse.
pub(crate) struct Pool {
    config: Config,
    tls: MakeRustlsConnect,
    /// Where connections go, for errors: the place without its password, and the
    /// `sslmode` unless it is the default.
    shown: String,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Session>,
    /// Connections open, idle or lent.
    open: usize,
}

/// A connection lent by the pool; returned when dropped (or closed, if it failed).
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    /// Always there until the lease drops.
    pub(crate) session: Option<Session>,
    /// Whether it was in the pool before (and so may have died there).
    pub(crate) reused: bool,
    /// Whether it failed in a way that leaves it unusable.
    broken: bool,
}

impl Pool {
    pub(crate) fn new(target: Target, shown: &str) -> Pool {
        let shown = match target.tls.mode {
            SslMode::Prefer => format!("`{shown}`"),
            mode => format!("`{shown}` (`sslmode={}`)", mode.name()),
        };
        Pool {
            config: target.config,
            tls: target.tls.connector,
            shown,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    pub(crate) fn get(&self, context: &str) -> Result<Lease<'_>> {
        let deadline = Instant::now() + ACQUIRE_TIMEOUT;
        let mut state = self.state.lock();
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(Lease {
                    pool: self,
                    session: Some(session),
                    reused: true,
                    broken: false,
                });
            }
            if state.open < MAX_CONNECTIONS {
                state.open += 1;
                break;
            }
            if self.freed.wait_until(&mut state, deadline).timed_out() {
                return Err(Error::unavailable(
                    context.to_string(),
                    format!("all {MAX_CONNECTIONS} connections to the ledger are in use"),
                ));
            }
        }
        drop(state);
        match self.config.connect(self.tls.clone()) {
            Ok(client) => Ok(Lease {
                pool: self,
                session: Some(Session {
                    client,
                    prepared: [None, None, None, None, None],
                }),
                reused: false,
                broken: false,
            }),
            Err(e) => {
                self.state.lock().open -= 1;
                self.freed.notify_one();
                Err(fail(&format!("cannot connect to {}", self.shown), e))
            }
        }
    }

    /// Closes the idle connections: one was found dead, so the others likely are too.
    pub(crate) fn forget_idle(&self) {
        let stale = {
            let mut state = self.state.lock();
            let stale = std::mem::take(&mut state.idle);
            state.open -= stale.len();
            stale
        };
        self.freed.notify_all();
        drop(stale);
    }
}

impl Lease<'_> {
    /// Marks the connection for closing unless `e` is an ordinary error of a statement,
    /// after which PostgreSQL carries on.
    pub(crate) fn note(&mut self, e: &postgres::Error) {
        if e.as_db_error().is_none() || is_connection_error(e) {
            self.broken = true;
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        if self.broken || session.client.is_closed() {
            self.pool.state.lock().open -= 1;
            self.pool.freed.notify_one();
            drop(session); // closing may wait for the server: outside the lock
        } else {
            self.pool.state.lock().idle.push(session);
            self.pool.freed.notify_one();
        }
    }
}
