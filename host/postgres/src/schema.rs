//! The tables, created on first use without a lock, and the schema version this build
//! reads; see the crate's docs for how hosts racing to create them converge.

use cardrules::{Error, Result};
use postgres::error::SqlState;

use crate::error::{MAX_TRIES, backoff, fail, is_connection_error};
use crate::journal::PostgresLedger;
use crate::pool::{Session, lost};

/// The schema this build writes and reads (the one row of `cardrules_schema`). Version 1,
/// the release before snapshots, is migrated in place ([`SNAPSHOTS`]); hosts of that
/// release refuse the ledger from then on, as they refuse any newer schema, so that two
/// releases never write one ledger.
pub(crate) const SCHEMA_VERSION: i32 = 2;

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
    kind        text NOT NULL,          -- `registered`, `decided`, `redacted`, `erased`, `restricted`
    card        text NOT NULL,
    at          bigint,                 -- the request's time (decisions)
    request_id  text,                   -- the idempotency key it is recorded under
    body        text NOT NULL,          -- the change as JSON
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cardrules_events_pkey PRIMARY KEY (program, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS cardrules_events_by_request
    ON cardrules_events (program, request_id) WHERE request_id IS NOT NULL;
INSERT INTO cardrules_schema (id, version) VALUES (1, 2) ON CONFLICT (id) DO NOTHING;
";

/// What version 2 added to version 1: the snapshots. Part of a new ledger's schema too;
/// a ledger of version 1 gets it in one transaction that first locks the version row, so
/// that of hosts racing to migrate one does it and the others find it done.
const SNAPSHOTS: &str = "
CREATE TABLE IF NOT EXISTS cardrules_snapshots (
    program  text NOT NULL,
    seq      bigint NOT NULL,           -- the journal position whose state it holds
    format   integer NOT NULL,          -- the format of `body`
    checksum text NOT NULL,             -- `sha256:` and the hex SHA-256 of `body`
    body     bytea NOT NULL,            -- the state
    written  bigint NOT NULL,           -- when (seconds, the writing host's clock)
    PRIMARY KEY (program, seq)
);
";

/// Indexes and tables added since the schema's version was set: created on every open if
/// missing (hosts of older releases keep them up to date without knowing of them).
/// `cardrules_venues` is what a city host knows of its venue hosts, beside the journal
/// and never in it (see `Journal::save_venue`); `cardrules_access_log` who read or
/// changed a holder's personal data (see `Journal::record_access`).
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS cardrules_events_by_card ON cardrules_events (program, card, seq);
CREATE TABLE IF NOT EXISTS cardrules_venues (
    name    text PRIMARY KEY,
    status  text NOT NULL,              -- JSON, as `GET /v1/venues` shows it
    written bigint NOT NULL             -- when (seconds, the writing host's clock)
);
CREATE TABLE IF NOT EXISTS cardrules_access_log (
    id      bigserial PRIMARY KEY,
    program text NOT NULL,
    card    text NOT NULL,
    at      bigint NOT NULL,            -- when (seconds, the host's clock)
    token   text NOT NULL,              -- the token's name, never the token
    route   text NOT NULL,
    method  text NOT NULL
);
CREATE INDEX IF NOT EXISTS cardrules_access_log_by_card
    ON cardrules_access_log (program, card, id);
";

impl PostgresLedger {
    /// Checks the recorded schema version, creating the schema if there is none.
    pub(crate) fn migrate(&self) -> Result<()> {
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
}

/// Reads the recorded schema version; when there is none, creates the schema (see the
/// crate's docs) and reads it again.
fn migrate_once(session: &mut Session) -> Result<i32, postgres::Error> {
    match session
        .client
        .query_opt("SELECT version FROM cardrules_schema WHERE id = 1", &[])
    {
        Ok(Some(row)) => {
            let mut version: i32 = row.try_get(0)?;
            if version == 1 {
                version = migrate_from_1(session)?;
            }
            if version == SCHEMA_VERSION {
                session.client.batch_execute(INDEXES)?;
            }
            return Ok(version);
        }
        Ok(None) => {}
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => {}
        Err(e) => return Err(e),
    }
    let mut txn = session.client.transaction()?;
    txn.batch_execute(SCHEMA)?;
    txn.batch_execute(SNAPSHOTS)?;
    let version: i32 = txn
        .query_one("SELECT version FROM cardrules_schema WHERE id = 1", &[])?
        .try_get(0)?;
    if version == SCHEMA_VERSION {
        txn.commit()?;
        session.client.batch_execute(INDEXES)?;
    }
    Ok(version)
}

/// Migrates a ledger of version 1 (the release before snapshots) in place; returns the
/// version it is at afterwards. Every event stays as it is.
fn migrate_from_1(session: &mut Session) -> Result<i32, postgres::Error> {
    let began = std::time::Instant::now();
    let mut txn = session.client.transaction()?;
    let version: i32 = txn
        .query_one(
            "SELECT version FROM cardrules_schema WHERE id = 1 FOR UPDATE",
            &[],
        )?
        .try_get(0)?;
    if version != 1 {
        // Another host migrated it meanwhile.
        return Ok(version);
    }
    tracing::info!("migrating the ledger from schema 1 to {SCHEMA_VERSION}: adding snapshots");
    txn.batch_execute(SNAPSHOTS)?;
    txn.batch_execute("UPDATE cardrules_schema SET version = 2 WHERE id = 1 AND version = 1")?;
    txn.commit()?;
    tracing::info!(
        "migrated the ledger to schema {SCHEMA_VERSION} in {:.1?}; every event kept",
        began.elapsed()
    );
    Ok(SCHEMA_VERSION)
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
