//! The shared ledger of cardrules: every program's journal in one PostgreSQL database, so
//! that several hosts can decide for the same programs (see the engine's `commit.rs` for why
//! their outcomes stay serializable).
//!
//! One table, `cardrules_events`, keyed by (program, seq), and `cardrules_schema` recording
//! the schema version; both are created on first use. An append is one transaction — one
//! durable commit (`synchronous_commit = on`, PostgreSQL's default) for a whole group of
//! batches — and inside it each batch is inserted only if its program's journal still ends
//! where the batch was decided (`after`). The check and the insert are one statement; a
//! host that inserts the same positions at the same time makes ours fail on the primary key
//! once its transaction commits, and that batch alone is rolled back to its savepoint and
//! reported as [`Appended::Conflict`]. So no lock is taken beyond the rows written, and
//! nothing depends on the isolation level: the primary key is the arbiter.
//!
//! **Connecting.** [`PostgresLedger::open`] takes a `postgres://` URL; what it leaves out is
//! taken from the standard `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD` and `PGDATABASE`
//! variables, as libpq would (then `localhost`, 5432, the login name, and the user's
//! database). To keep the ledger in a schema of its own, name it in the URL with the
//! standard `options` parameter: `postgres://host/db?options=-csearch_path%3Dcardrules`
//! (the schema must exist). Connections are not encrypted: this build has no TLS, so
//! `sslmode=require` is refused; use a local socket, a private network or a TLS proxy.
//!
//! **Creating the schema** needs no lock, so that it also works where advisory locks do
//! not (CockroachDB, YugabyteDB): a host first reads the recorded version, and only if
//! there is none runs `CREATE … IF NOT EXISTS` and an `INSERT … ON CONFLICT DO NOTHING`
//! of the version in one transaction. When two hosts do that at once, the loser fails on a
//! catalog unique index (or a serialization failure) and simply tries again, finding the
//! tables then. A role that may not create tables can use a ledger created by another.
//!
//! **Errors.** A server that cannot be reached, has gone away, is starting, shutting down
//! or read-only (a failover), or keeps aborting our transactions is [`Error::Unavailable`]
//! (the HTTP server answers 503); anything else is [`Error::Ledger`]. The cause is kept as
//! the source. The password never appears in messages nor in [`Journal::describe`].

use std::borrow::Cow;
use std::time::{Duration, Instant};

use cardrules::ledger::{Appended, Batch, Change, Event, Journal};
use cardrules::{Error, Result};
use parking_lot::{Condvar, Mutex};
use postgres::config::Host;
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls, Statement};

/// The schema this build writes and reads (the one row of `cardrules_schema`).
const SCHEMA_VERSION: i32 = 1;

/// Created in one transaction when no version is recorded; every statement is idempotent,
/// so hosts racing to create it converge.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cardrules_schema (
    id      integer PRIMARY KEY CHECK (id = 1),
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS cardrules_events (
    program     text NOT NULL,
    seq         bigint NOT NULL,        -- position in the program's journal, from 1
    kind        text NOT NULL,          -- `registered` or `decided`
    card        text NOT NULL,
    at          bigint,                 -- the request's time (decisions)
    request_id  text,                   -- the idempotency key it is recorded under
    body        text NOT NULL,          -- the change as JSON
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cardrules_events_pkey PRIMARY KEY (program, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS cardrules_events_by_request
    ON cardrules_events (program, request_id) WHERE request_id IS NOT NULL;
INSERT INTO cardrules_schema (id, version) VALUES (1, 1) ON CONFLICT (id) DO NOTHING;
";

/// The primary key: a violation of it means another host appended first.
const POSITION_KEY: &str = "cardrules_events_pkey";

const READ: &str =
    "SELECT seq, body FROM cardrules_events WHERE program = $1 AND seq > $2 ORDER BY seq";

const LAST: &str = "SELECT COALESCE(MAX(seq), 0) FROM cardrules_events WHERE program = $1";

/// Inserts a batch's changes at the given positions if the program's journal still ends at
/// `$2`; inserts nothing otherwise.
const INSERT: &str = "
INSERT INTO cardrules_events (program, seq, kind, card, at, request_id, body)
SELECT $1::text, u.seq, u.kind, u.card, u.at, u.request_id, u.body
FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[])
    AS u (seq, kind, card, at, request_id, body)
WHERE (SELECT COALESCE(MAX(seq), 0) FROM cardrules_events WHERE program = $1) = $2::bigint
";

/// How long a TCP connection to the server may take, unless the URL says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sent data may stay unacknowledged before the connection is given up (Linux).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Keepalive probes on idle connections, so that a vanished server is noticed in about a
/// minute rather than the system's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// Connections one ledger keeps at most: one appends at a time (the engine's group commit),
/// the others catch lanes up.
const MAX_CONNECTIONS: usize = 8;
/// How long a caller waits for a connection when all are in use.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an append (or the schema's creation) is tried when the server aborts it for a
/// serialization failure or deadlock.
const MAX_TRIES: u32 = 5;

/// Whether `s` is a PostgreSQL URL (`postgres://` or `postgresql://`).
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// The PostgreSQL journal: a small pool of connections to one database.
pub struct PostgresLedger {
    shown: String,
    pool: Pool,
}

impl PostgresLedger {
    /// Connects to the database at `url` (parts left out are taken from the `PG*`
    /// variables) and creates the schema if needed; refuses a newer schema.
    pub fn open(url: &str) -> Result<PostgresLedger> {
        let config = configure(url, &|name| std::env::var(name).ok())?;
        let shown = describe(&config);
        let ledger = PostgresLedger {
            pool: Pool::new(config, shown.clone()),
            shown,
        };
        ledger.migrate()?;
        Ok(ledger)
    }

    /// Where the events are kept, without the password: `postgres://user@host:port/db`.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Checks the recorded schema version, creating the schema if there is none.
    fn migrate(&self) -> Result<()> {
        let context = format!("cannot open `{}`", self.shown);
        let mut tries = 0;
        loop {
            tries += 1;
            let mut lease = self.pool.get(&context)?;
            let Some(session) = lease.session.as_mut() else {
                return Err(lost(&context));
            };
            match migrate_once(session) {
                Ok(version) => return check_version(&context, version),
                Err(e) => {
                    lease.note(&e);
                    let racing = matches!(
                        e.code(),
                        Some(
                            &SqlState::UNIQUE_VIOLATION
                                | &SqlState::DUPLICATE_TABLE
                                | &SqlState::DUPLICATE_OBJECT
                                | &SqlState::T_R_SERIALIZATION_FAILURE
                                | &SqlState::T_R_DEADLOCK_DETECTED
                        )
                    );
                    let stale = lease.reused && is_connection_error(&e);
                    if tries < MAX_TRIES && (racing || stale) {
                        drop(lease);
                        if stale {
                            self.pool.forget_idle();
                        }
                        std::thread::sleep(backoff(tries));
                        continue;
                    }
                    return Err(fail(&context, e));
                }
            }
        }
    }

    /// Runs `work` on a pooled connection: once more on a fresh one when a connection that
    /// sat in the pool turns out to be dead (the server restarted, say), and again, a few
    /// times, when the server aborts it for a serialization failure or a deadlock. For work
    /// that changes nothing, or nothing until it commits.
    fn with_session<T>(
        &self,
        context: &str,
        mut work: impl FnMut(&mut Session) -> Result<T, Failure>,
    ) -> Result<T> {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut lease = self.pool.get(context)?;
            let Some(session) = lease.session.as_mut() else {
                return Err(lost(context));
            };
            match work(session) {
                Ok(value) => return Ok(value),
                Err(Failure::Db(e, stage)) => {
                    lease.note(&e);
                    let busy = matches!(
                        e.code(),
                        Some(
                            &SqlState::T_R_SERIALIZATION_FAILURE | &SqlState::T_R_DEADLOCK_DETECTED
                        )
                    );
                    let stale = lease.reused
                        && stage == Stage::Working
                        && is_connection_error(&e)
                        && tries == 1;
                    if tries < MAX_TRIES && (busy || stale) {
                        drop(lease);
                        if stale {
                            self.pool.forget_idle();
                        }
                        std::thread::sleep(backoff(tries));
                        continue;
                    }
                    return Err(match stage {
                        Stage::Committing if is_connection_error(&e) => Error::unavailable(
                            context.to_string(),
                            Cause::noted(
                                "the connection failed while committing, so the append may or may not have been written",
                                e,
                            ),
                        ),
                        _ => fail(context, e),
                    });
                }
                Err(Failure::Other(e)) => return Err(e),
            }
        }
    }
}

impl Journal for PostgresLedger {
    fn read(&self, program: &str, after: u64) -> Result<Vec<Event>> {
        let context = format!("cannot read the journal of `{program}`");
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = self.with_session(&context, |session| {
            let read = session.prepared(Query::Read)?;
            Ok(session.client.query(&read, &[&program, &after])?)
        })?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get(0).map_err(|e| fail(&context, e))?;
            let body: &str = row.try_get(1).map_err(|e| fail(&context, e))?;
            let change: Change = serde_json::from_str(body)
                .map_err(|e| Error::ledger(format!("event {seq} of `{program}` is corrupt"), e))?;
            events.push(Event {
                seq: u64::try_from(seq).unwrap_or(0),
                change,
            });
        }
        Ok(events)
    }

    fn append(&self, batches: &[Batch<'_>]) -> Result<Vec<Appended>> {
        let context = format!("cannot append to `{}`", self.shown);
        let rows = batches
            .iter()
            .map(|batch| Rows::of(batch))
            .collect::<Result<Vec<_>>>()?;
        // Batches go in program order, so that two hosts appending to the same programs
        // take their rows' locks in the same order and do not deadlock.
        let mut order: Vec<usize> = (0..batches.len()).collect();
        order.sort_by_key(|&i| batches[i].program);
        self.with_session(&context, |session| {
            append_once(session, batches, &rows, &order)
        })
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

/// Counts the events of the ledger, per program (for tests and tools).
pub fn event_counts(ledger: &PostgresLedger) -> Result<Vec<(String, u64)>> {
    let rows = ledger.with_session("cannot count events", |session| {
        Ok(session.client.query(
            "SELECT program, COUNT(*) FROM cardrules_events GROUP BY program ORDER BY program",
            &[],
        )?)
    })?;
    rows.iter()
        .map(|row| {
            let program: String = row.try_get(0)?;
            let count: i64 = row.try_get(1)?;
            Ok((program, u64::try_from(count).unwrap_or(0)))
        })
        .collect::<Result<_, postgres::Error>>()
        .map_err(|e| fail("cannot count events", e))
}

/// The decision recorded under `request_id` in `program`, read straight from the database.
pub fn recorded_decision(
    ledger: &PostgresLedger,
    program: &str,
    request_id: &str,
) -> Result<Option<String>> {
    let row = ledger.with_session("cannot read a decision", |session| {
        Ok(session.client.query_opt(
            "SELECT body FROM cardrules_events WHERE program = $1 AND request_id = $2",
            &[&program, &storable(request_id)],
        )?)
    })?;
    row.map(|row| row.try_get(0))
        .transpose()
        .map_err(|e| fail("cannot read a decision", e))
}

/// What an attempt failed with, and when.
enum Failure {
    Db(postgres::Error, Stage),
    Other(Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing is committed: the work may be tried again.
    Working,
    /// The commit was sent: if the connection failed now, the outcome is unknown.
    Committing,
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Failure {
        Failure::Db(e, Stage::Working)
    }
}

/// The columns of one batch's rows, as the arrays `INSERT` unnests.
struct Rows {
    seq: Vec<i64>,
    kind: Vec<&'static str>,
    card: Vec<String>,
    at: Vec<Option<i64>>,
    request_id: Vec<Option<String>>,
    body: Vec<String>,
}

impl Rows {
    fn of(batch: &Batch<'_>) -> Result<Rows> {
        let n = batch.changes.len();
        let mut rows = Rows {
            seq: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            card: Vec::with_capacity(n),
            at: Vec::with_capacity(n),
            request_id: Vec::with_capacity(n),
            body: Vec::with_capacity(n),
        };
        for (offset, change) in batch.changes.iter().enumerate() {
            let seq = i64::try_from(batch.after)
                .ok()
                .and_then(|after| {
                    after
                        .checked_add(1)?
                        .checked_add(i64::try_from(offset).ok()?)
                })
                .ok_or_else(|| {
                    Error::ledger(
                        format!("cannot append to the journal of `{}`", batch.program),
                        format!("position {} is out of range", batch.after),
                    )
                })?;
            let body = serde_json::to_string(change)
                .map_err(|e| Error::ledger("cannot encode an event", e))?;
            let (kind, card, at, request_id) = match change {
                Change::Registered { holder } => ("registered", holder.card.as_str(), None, None),
                Change::Decided {
                    card,
                    at,
                    request_id,
                    ..
                } => ("decided", card.as_str(), Some(*at), request_id.as_deref()),
            };
            rows.seq.push(seq);
            rows.kind.push(kind);
            rows.card.push(storable(card));
            rows.at.push(at);
            rows.request_id.push(request_id.map(storable));
            rows.body.push(body);
        }
        Ok(rows)
    }
}

/// Text for an indexed column: PostgreSQL cannot store NUL characters, so they become
/// U+FFFD there (the body, which is what is read back, keeps them, escaped by JSON). Left
/// as is, one such card number would fail every batch committed with it.
fn storable(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// One try at appending `batches` (in `order`) in one transaction.
fn append_once(
    session: &mut Session,
    batches: &[Batch<'_>],
    rows: &[Rows],
    order: &[usize],
) -> Result<Vec<Appended>, Failure> {
    let insert = session.prepared(Query::Insert)?;
    let last = session.prepared(Query::Last)?;
    let mut outcomes = vec![Appended::Conflict; batches.len()];
    let mut txn = session.client.transaction()?;
    for &i in order {
        let (batch, rows) = (&batches[i], &rows[i]);
        let after = i64::try_from(batch.after).unwrap_or(i64::MAX);
        if batch.changes.is_empty() {
            let row = txn.query_one(&last, &[&batch.program])?;
            let end: i64 = row.try_get(0)?;
            outcomes[i] = if end == after {
                Appended::Done
            } else {
                Appended::Conflict
            };
            continue;
        }
        let mut savepoint = txn.savepoint("cardrules_batch")?;
        let inserted = savepoint.execute(
            &insert,
            &[
                &batch.program,
                &after,
                &rows.seq,
                &rows.kind,
                &rows.card,
                &rows.at,
                &rows.request_id,
                &rows.body,
            ],
        );
        match inserted {
            Ok(n) if n == rows.seq.len() as u64 => {
                savepoint.commit()?;
                outcomes[i] = Appended::Done;
            }
            Ok(0) => {
                savepoint.commit()?;
                outcomes[i] = Appended::Conflict;
            }
            Ok(n) => {
                return Err(Failure::Other(Error::ledger(
                    format!("cannot append to the journal of `{}`", batch.program),
                    format!("{n} of {} events were inserted", rows.seq.len()),
                )));
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                // Another host inserted the same positions (or, were it only the request
                // id, recorded the same request first) and committed while we waited.
                savepoint.rollback()?;
                let position = e
                    .as_db_error()
                    .and_then(|db| db.constraint())
                    .is_some_and(|c| c == POSITION_KEY);
                if !position {
                    let end: i64 = txn.query_one(&last, &[&batch.program])?.try_get(0)?;
                    if end == after {
                        return Err(Failure::Other(Error::ledger(
                            format!("cannot append to the journal of `{}`", batch.program),
                            Cause::noted("a request id of the batch is already recorded", e),
                        )));
                    }
                }
                outcomes[i] = Appended::Conflict;
            }
            Err(e) => return Err(e.into()),
        }
    }
    txn.commit()
        .map_err(|e| Failure::Db(e, Stage::Committing))?;
    Ok(outcomes)
}

/// Reads the recorded schema version; when there is none, creates the schema (see the
/// module docs) and reads it again.
fn migrate_once(session: &mut Session) -> Result<i32, postgres::Error> {
    match session
        .client
        .query_opt("SELECT version FROM cardrules_schema WHERE id = 1", &[])
    {
        Ok(Some(row)) => return row.try_get(0),
        Ok(None) => {}
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => {}
        Err(e) => return Err(e),
    }
    let mut txn = session.client.transaction()?;
    txn.batch_execute(SCHEMA)?;
    let version: i32 = txn
        .query_one("SELECT version FROM cardrules_schema WHERE id = 1", &[])?
        .try_get(0)?;
    if version == SCHEMA_VERSION {
        txn.commit()?;
    }
    Ok(version)
}

fn check_version(context: &str, version: i32) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(Error::ledger(
            context.to_string(),
            format!(
                "the ledger has schema version {version}, newer than this cardrules reads ({SCHEMA_VERSION}); upgrade cardrules"
            ),
        ));
    }
    if version < SCHEMA_VERSION {
        return Err(Error::ledger(
            context.to_string(),
            format!("the ledger has schema version {version}, which no cardrules wrote"),
        ));
    }
    Ok(())
}

/// A lease without its connection: cannot happen (it is only taken when the lease drops).
fn lost(context: &str) -> Error {
    Error::ledger(context.to_string(), "a pooled connection went missing")
}

fn backoff(tries: u32) -> Duration {
    // A little jitter, so that hosts that collided do not collide again in step.
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros() % 5_000);
    Duration::from_micros(u64::from(tries) * 10_000 + u64::from(jitter))
}

/// The statements a session prepares once.
#[derive(Clone, Copy)]
enum Query {
    Read,
    Last,
    Insert,
}

/// A connection and its prepared statements.
struct Session {
    client: Client,
    prepared: [Option<Statement>; 3],
}

impl Session {
    fn prepared(&mut self, query: Query) -> Result<Statement, postgres::Error> {
        let (slot, text) = match query {
            Query::Read => (0, READ),
            Query::Last => (1, LAST),
            Query::Insert => (2, INSERT),
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
struct Pool {
    config: Config,
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
struct Lease<'a> {
    pool: &'a Pool,
    /// Always there until the lease drops.
    session: Option<Session>,
    /// Whether it was in the pool before (and so may have died there).
    reused: bool,
    /// Whether it failed in a way that leaves it unusable.
    broken: bool,
}

impl Pool {
    fn new(config: Config, shown: String) -> Pool {
        Pool {
            config,
            shown,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn get(&self, context: &str) -> Result<Lease<'_>> {
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
        match self.config.connect(NoTls) {
            Ok(client) => Ok(Lease {
                pool: self,
                session: Some(Session {
                    client,
                    prepared: [None, None, None],
                }),
                reused: false,
                broken: false,
            }),
            Err(e) => {
                self.state.lock().open -= 1;
                self.freed.notify_one();
                Err(fail(&format!("cannot connect to `{}`", self.shown), e))
            }
        }
    }

    /// Closes the idle connections: one was found dead, so the others likely are too.
    fn forget_idle(&self) {
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
    fn note(&mut self, e: &postgres::Error) {
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

/// The connection settings of `url`, with what it leaves out taken from `env` (the `PG*`
/// variables) and this crate's timeouts where it sets none.
fn configure(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
    let context = "cannot open a postgres ledger";
    let env = |name: &str| env(name).filter(|value| !value.is_empty());
    // `PGPORT` is read (and must be valid) only where the URL leaves the port out.
    let env_ports = || -> Result<Option<Vec<u16>>> {
        let Some(value) = env("PGPORT") else {
            return Ok(None);
        };
        value
            .split(',')
            .map(|port| {
                port.trim().parse::<u16>().map_err(|_| {
                    Error::ledger(context, format!("`PGPORT` is not a port number: `{value}`"))
                })
            })
            .collect::<Result<Vec<u16>>>()
            .map(Some)
    };
    let url = with_ports(url, env_ports)?;
    // The input is never shown: it may hold a password.
    let mut config: Config = url
        .parse()
        .map_err(|e: postgres::Error| Error::ledger(context, Cause::of(e)))?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        match env("PGHOST") {
            Some(hosts) => hosts.split(',').for_each(|host| {
                config.host(host.trim());
            }),
            None => {
                config.host("localhost");
            }
        }
    }
    if config.get_ports().is_empty() {
        for port in env_ports()?.into_iter().flatten() {
            config.port(port);
        }
    }
    if config.get_user().is_none()
        && let Some(user) = env("PGUSER")
    {
        config.user(&user);
    }
    if config.get_password().is_none()
        && let Some(password) = env("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_dbname().is_none()
        && let Some(dbname) = env("PGDATABASE")
    {
        config.dbname(&dbname);
    }
    if config.get_application_name().is_none() {
        config.application_name("cardrules");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if config.get_keepalives_idle() == Config::new().get_keepalives_idle() {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVE_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVE_RETRIES);
    }
    Ok(config)
}

/// `url` with `ports` given to its hosts when it names hosts but no port: the URL parser
/// would otherwise fill in 5432, where libpq takes `PGPORT`. Other URLs are returned as
/// they are. The split follows the parser's: credentials up to the first `@`, hosts up to
/// the next `/` or `?`.
fn with_ports<'a>(
    url: &'a str,
    ports: impl FnOnce() -> Result<Option<Vec<u16>>>,
) -> Result<Cow<'a, str>> {
    let Some((scheme, rest)) = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme).map(|rest| (*scheme, rest)))
    else {
        return Ok(Cow::Borrowed(url));
    };
    let (credentials, rest) = match rest.find('@') {
        Some(at) => rest.split_at(at + 1),
        None => ("", rest),
    };
    let (hosts, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let names_port = |host: &str| match host.strip_prefix('[') {
        Some(bracketed) => bracketed
            .find(']')
            .is_some_and(|end| bracketed[end + 1..].starts_with(':')),
        None => host.contains(':'),
    };
    let query_names_port = tail
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("port=")));
    if hosts.is_empty() || hosts.split(',').any(names_port) || query_names_port {
        return Ok(Cow::Borrowed(url));
    }
    let Some(ports) = ports()? else {
        return Ok(Cow::Borrowed(url));
    };
    let Some(&first) = ports.first() else {
        return Ok(Cow::Borrowed(url));
    };
    let hosts: Vec<String> = hosts
        .split(',')
        .enumerate()
        .map(|(i, host)| format!("{host}:{}", ports.get(i).copied().unwrap_or(first)))
        .collect();
    Ok(Cow::Owned(format!(
        "{scheme}{credentials}{}{tail}",
        hosts.join(",")
    )))
}

/// `postgres://user@host:port/db` (and `?options=…` if any): where the ledger is, for
/// logs; never the password.
fn describe(config: &Config) -> String {
    let mut shown = String::from("postgres://");
    if let Some(user) = config.get_user() {
        shown.push_str(user);
        shown.push('@');
    }
    let hosts: Vec<String> = if config.get_hosts().is_empty() {
        config
            .get_hostaddrs()
            .iter()
            .map(|addr| match addr {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                std::net::IpAddr::V4(v4) => v4.to_string(),
            })
            .collect()
    } else {
        config
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]"),
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string().replace('/', "%2F"),
            })
            .collect()
    };
    let ports = config.get_ports();
    for (i, host) in hosts.iter().enumerate() {
        if i > 0 {
            shown.push(',');
        }
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        shown.push_str(&format!("{host}:{port}"));
    }
    if let Some(dbname) = config.get_dbname() {
        shown.push('/');
        shown.push_str(dbname);
    }
    // The server options (a `search_path`, say) tell ledgers in one database apart.
    if let Some(options) = config.get_options() {
        shown.push_str("?options=");
        for c in options.chars() {
            match c {
                '%' => shown.push_str("%25"),
                ' ' => shown.push_str("%20"),
                '=' => shown.push_str("%3D"),
                '&' => shown.push_str("%26"),
                c => shown.push(c),
            }
        }
    }
    shown
}

/// Whether `e` means the server is out of reach or going away (or in recovery, or
/// read-only after a failover) rather than refusing what we asked: worth trying later.
fn is_connection_error(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || matches!(
                    code,
                    "57P01" // admin_shutdown
                        | "57P02" // crash_shutdown
                        | "57P03" // cannot_connect_now
                        | "53300" // too_many_connections
                        | "25006" // read_only_sql_transaction
                        | "40003" // statement_completion_unknown
                )
        }
        None => {
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                if cause.is::<std::io::Error>() {
                    return true;
                }
                source = cause.source();
            }
            false
        }
    }
}

/// A PostgreSQL failure as a ledger error, keeping its cause: `Unavailable` when the server
/// is out of reach or too busy, `Ledger` otherwise.
fn fail(context: &str, e: postgres::Error) -> Error {
    let busy = matches!(
        e.code(),
        Some(
            &SqlState::T_R_SERIALIZATION_FAILURE
                | &SqlState::T_R_DEADLOCK_DETECTED
                | &SqlState::QUERY_CANCELED
                | &SqlState::LOCK_NOT_AVAILABLE
        )
    );
    if busy || is_connection_error(&e) {
        Error::unavailable(context.to_string(), Cause::of(e))
    } else {
        Error::ledger(context.to_string(), Cause::of(e))
    }
}

/// A PostgreSQL error shown whole on one line — the client's own message is only its kind
/// ("db error") — and kept as the source.
#[derive(Debug)]
struct Cause {
    note: Option<&'static str>,
    error: postgres::Error,
}

impl Cause {
    fn of(error: postgres::Error) -> Cause {
        Cause { note: None, error }
    }

    fn noted(note: &'static str, error: postgres::Error) -> Cause {
        Cause {
            note: Some(note),
            error,
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(note) = self.note {
            write!(f, "{note}: ")?;
        }
        if let Some(db) = self.error.as_db_error() {
            write!(f, "{} (SQLSTATE {})", db.message(), db.code().code())?;
            if let Some(detail) = db.detail() {
                write!(f, "; {detail}")?;
            }
            return Ok(());
        }
        write!(f, "{}", self.error)?;
        let mut source = std::error::Error::source(&self.error);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// The server the tests use, or `None` (and a note) when none is configured.
    fn server() -> Option<String> {
        match std::env::var("CARDRULES_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                // Straight to stderr: the test harness captures `eprintln!` of passing tests.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: set CARDRULES_TEST_POSTGRES=postgres://… to run the PostgreSQL tests"
                );
                None
            }
        }
    }

    static NEXT_SCHEMA: AtomicU64 = AtomicU64::new(0);

    /// A schema of its own on the test server, dropped with everything in it at the end:
    /// tests running at once, and leftovers of earlier runs, never meet.
    struct Scratch {
        server: String,
        schema: String,
        /// The server's URL with the schema as `search_path` (and an application name
        /// of its own, to find its connections).
        url: String,
    }

    impl Scratch {
        fn new(server: &str) -> Scratch {
            let schema = format!(
                "cardrules_test_{}_{}",
                std::process::id(),
                NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed)
            );
            let mut admin = connect(server);
            admin
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
                ))
                .expect("a scratch schema is created");
            let separator = if server.contains('?') { '&' } else { '?' };
            let url = format!(
                "{server}{separator}options=-csearch_path%3D{schema}&application_name={schema}"
            );
            Scratch {
                server: server.to_string(),
                schema,
                url,
            }
        }

        /// A connection of the test itself, in the scratch schema.
        fn admin(&self) -> Client {
            let mut client = connect(&self.server);
            client
                .batch_execute(&format!("SET search_path = {}", self.schema))
                .expect("search_path is set");
            client
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = connect(&self.server)
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }

    fn connect(url: &str) -> Client {
        configure(url, &|name| std::env::var(name).ok())
            .expect("the test URL parses")
            .connect(NoTls)
            .expect("the test server is reachable")
    }

    fn decided(card: &str, request_id: Option<&str>) -> Change {
        Change::Decided {
            card: card.into(),
            at: 42,
            request_id: request_id.map(str::to_string),
            request: "{}".into(),
            decision: "{}".into(),
            effects: vec![],
            digest: "sha256:test".into(),
            fuel: 7,
        }
    }

    fn batch<'a>(program: &'a str, after: u64, changes: &'a [Change]) -> Batch<'a> {
        Batch {
            program,
            after,
            changes,
        }
    }

    #[test]
    fn the_postgres_ledger_conforms() {
        let Some(server) = server() else { return };
        // Each journal's URL and schema, by the journal's address.
        let opened: Mutex<HashMap<usize, Scratch>> = Mutex::new(HashMap::new());
        let address = |journal: &Arc<dyn Journal>| Arc::as_ptr(journal).cast::<()>() as usize;
        let fresh = || -> Arc<dyn Journal> {
            let scratch = Scratch::new(&server);
            let journal: Arc<dyn Journal> =
                Arc::new(PostgresLedger::open(&scratch.url).expect("a fresh ledger opens"));
            opened.lock().insert(address(&journal), scratch);
            journal
        };
        let twin = |journal: &Arc<dyn Journal>| -> Arc<dyn Journal> {
            let url = opened.lock()[&address(journal)].url.clone();
            Arc::new(PostgresLedger::open(&url).expect("a second handle opens"))
        };
        cardrules::ledger::conformance::run_all(&fresh, &twin);
    }

    #[test]
    fn a_ledger_of_a_newer_schema_is_refused() {
        let Some(server) = server() else { return };
        let scratch = Scratch::new(&server);
        drop(PostgresLedger::open(&scratch.url).expect("a fresh ledger opens"));
        scratch
            .admin()
            .batch_execute("UPDATE cardrules_schema SET version = 99")
            .expect("the version is changed");
        let Err(error) = PostgresLedger::open(&scratch.url) else {
            panic!("a newer schema must be refused");
        };
        assert!(matches!(error, Error::Ledger { .. }), "{error:?}");
        assert!(
            error.to_string().contains(
                "the ledger has schema version 99, newer than this cardrules reads (1); upgrade cardrules"
            ),
            "{error}"
        );
    }

    #[test]
    fn hosts_creating_the_schema_at_once_all_succeed() {
        let Some(server) = server() else { return };
        let scratch = Scratch::new(&server);
        let start = std::sync::Barrier::new(6);
        std::thread::scope(|s| {
            let hosts: Vec<_> = (0..6)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        PostgresLedger::open(&scratch.url).map(drop)
                    })
                })
                .collect();
            for host in hosts {
                host.join().expect("no panic").expect("every host opens");
            }
        });
        let rows = scratch
            .admin()
            .query("SELECT version FROM cardrules_schema", &[])
            .expect("the version reads");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<_, i32>(0), SCHEMA_VERSION);
    }

    #[test]
    fn a_batch_losing_a_race_for_its_position_is_refused_alone() {
        let Some(server) = server() else { return };
        let scratch = Scratch::new(&server);
        let ledger = PostgresLedger::open(&scratch.url).expect("a fresh ledger opens");
        // Another host has written `p`'s first event and not yet committed.
        let mut other = scratch.admin();
        let mut theirs = other.transaction().expect("a transaction begins");
        let body = serde_json::to_string(&decided("X", None)).expect("encodes");
        theirs
            .execute(
                "INSERT INTO cardrules_events (program, seq, kind, card, body) VALUES ('p', 1, 'decided', 'X', $1)",
                &[&body],
            )
            .expect("their event is inserted");
        let ours = [decided("A", None)];
        let outcome = std::thread::scope(|s| {
            let append = s.spawn(|| ledger.append(&[batch("q", 0, &ours), batch("p", 0, &ours)]));
            // Wait until our insert into `p` waits for theirs, then let theirs commit.
            let mut watcher = scratch.admin();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let waiting: i64 = watcher
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                        &[&scratch.schema],
                    )
                    .expect("activity reads")
                    .get(0);
                if waiting > 0 {
                    break;
                }
                assert!(Instant::now() < deadline, "our append never waited");
                std::thread::sleep(Duration::from_millis(20));
            }
            theirs.commit().expect("theirs commits");
            append.join().expect("no panic")
        });
        assert_eq!(
            outcome.expect("the append succeeds"),
            vec![Appended::Done, Appended::Conflict]
        );
        let p = ledger.read("p", 0).expect("p reads");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].change, decided("X", None));
        assert_eq!(ledger.read("q", 0).expect("q reads").len(), 1);
    }

    #[test]
    fn the_columns_beside_the_body_are_filled() {
        let Some(server) = server() else { return };
        let scratch = Scratch::new(&server);
        let ledger = PostgresLedger::open(&scratch.url).expect("a fresh ledger opens");
        let changes = [decided("A", Some("till/1")), decided("B\0", None)];
        assert_eq!(
            ledger.append(&[batch("p", 0, &changes)]).expect("appends"),
            vec![Appended::Done]
        );
        let rows = scratch
            .admin()
            .query(
                "SELECT program, seq, kind, card, at, request_id, recorded_at > now() - interval '1 minute'
                 FROM cardrules_events ORDER BY seq",
                &[],
            )
            .expect("the events read");
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {:?} {:?} {:?} {}",
                    r.get::<_, String>(0),
                    r.get::<_, i64>(1),
                    r.get::<_, String>(2),
                    r.get::<_, String>(3),
                    r.get::<_, Option<i64>>(4),
                    r.get::<_, Option<String>>(5),
                    r.get::<_, bool>(6),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                r#"p 1 decided "A" Some(42) Some("till/1") true"#,
                "p 2 decided \"B\u{FFFD}\" Some(42) None true",
            ]
        );
        assert_eq!(
            event_counts(&ledger).expect("counts"),
            vec![("p".to_string(), 2)]
        );
        let recorded = recorded_decision(&ledger, "p", "till/1").expect("reads");
        assert_eq!(
            recorded.map(|body| serde_json::from_str::<Change>(&body).expect("decodes")),
            Some(decided("A", Some("till/1")))
        );
        assert_eq!(
            recorded_decision(&ledger, "p", "till/2").expect("reads"),
            None
        );
        // The body keeps the card as it was.
        let read: Vec<_> = ledger
            .read("p", 0)
            .expect("reads")
            .into_iter()
            .map(|e| e.change)
            .collect();
        assert_eq!(read, changes);
    }

    #[test]
    fn a_request_id_recorded_twice_is_an_error_not_a_conflict() {
        let Some(server) = server() else { return };
        let scratch = Scratch::new(&server);
        let ledger = PostgresLedger::open(&scratch.url).expect("a fresh ledger opens");
        let first = [decided("A", Some("till/1"))];
        ledger.append(&[batch("p", 0, &first)]).expect("appends");
        let Err(error) = ledger.append(&[batch("p", 1, &first)]) else {
            panic!("a duplicate request id must fail");
        };
        assert!(matches!(error, Error::Ledger { .. }), "{error:?}");
        assert!(error.to_string().contains("already recorded"), "{error}");
        assert_eq!(ledger.read("p", 0).expect("reads").len(), 1);
    }

    #[test]
    fn connections_the_server_closed_are_replaced() {
        let Some(server) = server() else { return };
        let scratch = Scratch::new(&server);
        let ledger = PostgresLedger::open(&scratch.url).expect("a fresh ledger opens");
        let one = [decided("A", None)];
        ledger.append(&[batch("p", 0, &one)]).expect("appends");
        let killed: i64 = scratch
            .admin()
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                &[&scratch.schema],
            )
            .expect("backends are terminated")
            .get(0);
        assert!(killed >= 1);
        assert_eq!(ledger.read("p", 0).expect("reads again").len(), 1);
        scratch
            .admin()
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                &[&scratch.schema],
            )
            .expect("backends are terminated");
        assert_eq!(
            ledger
                .append(&[batch("p", 1, &one)])
                .expect("appends again"),
            vec![Appended::Done]
        );
    }

    #[test]
    fn an_unreachable_server_is_unavailable_quickly() {
        let start = Instant::now();
        let Err(error) = PostgresLedger::open("postgres://cardrules:hunter2@127.0.0.1:1/ledger")
        else {
            panic!("nothing listens on port 1");
        };
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("cannot connect to `postgres://cardrules@127.0.0.1:1/ledger`"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn what_the_url_leaves_out_comes_from_the_pg_variables() {
        let env: HashMap<&str, &str> = [
            ("PGHOST", "db.example"),
            ("PGPORT", "6432"),
            ("PGUSER", "cards"),
            ("PGPASSWORD", "s3cret"),
            ("PGDATABASE", "ledger"),
        ]
        .into();
        let env = |name: &str| env.get(name).map(|v| v.to_string());
        let config = configure("postgres://", &env).expect("parses");
        assert_eq!(describe(&config), "postgres://cards@db.example:6432/ledger");
        assert_eq!(config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));

        // What the URL names wins; a host without a port takes `PGPORT`, as with libpq.
        let config = configure("postgresql://me:pw@[::1],other/mine", &env).expect("parses");
        assert_eq!(
            describe(&config),
            "postgres://me@[::1]:6432,other:6432/mine"
        );
        assert_eq!(config.get_password(), Some(&b"pw"[..]));
        let config = configure("postgres://me@here:5433", &env).expect("parses");
        assert_eq!(describe(&config), "postgres://me@here:5433/ledger");
        let config = configure("postgres:///mine?host=here&port=5434", &env).expect("parses");
        assert_eq!(describe(&config), "postgres://cards@here:5434/mine");
        let config =
            configure("postgres:///mine?host=%2Fvar%2Frun%2Fpostgresql", &env).expect("parses");
        assert_eq!(
            describe(&config),
            "postgres://cards@%2Fvar%2Frun%2Fpostgresql:6432/mine"
        );

        // Without variables: localhost and 5432.
        let config = configure("postgres://", &|_| None).expect("parses");
        assert_eq!(describe(&config), "postgres://localhost:5432");

        // Server options show (they tell schemas apart); a password never does.
        let config = configure(
            "postgres://u:hunter2@h/db?options=-c%20search_path%3Dx",
            &|_| None,
        )
        .expect("parses");
        assert_eq!(
            describe(&config),
            "postgres://u@h:5432/db?options=-c%20search_path%3Dx"
        );

        // A bad `PGPORT` matters only where it is used.
        let bad_port = |name: &str| (name == "PGPORT").then(|| "x".to_string());
        assert!(configure("postgres://h:5432/db", &bad_port).is_ok());
        let error = configure("postgres://h/db", &bad_port).expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("`PGPORT` is not a port number: `x`"),
            "{error}"
        );
        let error = configure("postgres://", &bad_port).expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("`PGPORT` is not a port number: `x`"),
            "{error}"
        );
        let error =
            configure("postgres://u:hunter2@h:notaport/db", &|_| None).expect_err("refused");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error
                .to_string()
                .contains("invalid value for option `port`"),
            "{error}"
        );
    }

    #[test]
    fn postgres_urls_are_recognised() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://"));
        assert!(!is_postgres_url("sqlite:ledger.sqlite"));
        assert!(!is_postgres_url("ledger.sqlite"));
        assert!(!is_postgres_url("host=localhost user=postgres"));
    }
}
