//! Which PostgreSQL failures are the server being out of reach or busy (worth trying
//! again, [`Error::Unavailable`]) and which are not ([`Error::Ledger`]), how each is
//! shown, and how often and how soon a try is repeated.

use std::time::Duration;

use cardrules::Error;
use postgres::error::SqlState;

use crate::tls::is_certificate_error;

/// How often an append (or the schema's creation) is tried when the server aborts it for a
/// serialization failure or deadlock.
pub(crate) const MAX_TRIES: u32 = 5;

/// How long to wait before try number `tries + 1`.
pub(crate) fn backoff(tries: u32) -> Duration {
    // A little jitter, so that hosts that collided do not collide again in step.
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros() % 5_000);
    Duration::from_micros(u64::from(tries) * 10_000 + u64::from(jitter))
}

/// Whether `e` means the server is out of reach or going away (or in recovery, or
/// read-only after a failover) rather than refusing what we asked: worth trying later.
pub(crate) fn is_connection_error(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if is_certificate_error(e) {
        // Not the server out of reach: a configuration to fix (or someone in between).
        return false;
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
pub(crate) fn fail(context: &str, e: postgres::Error) -> Error {
    if is_certificate_error(&e) {
        return Error::ledger(
            context.to_string(),
            Cause::noted("the server's certificate is refused", e),
        );
    }
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
pub(crate) struct Cause {
    note: Option<&'static str>,
    error: postgres::Error,
}

impl Cause {
    pub(crate) fn of(error: postgres::Error) -> Cause {
        Cause { note: None, error }
    }

    pub(crate) fn noted(note: &'static str, error: postgres::Error) -> Cause {
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
