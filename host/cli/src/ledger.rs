//! `--ledger`: which journal backend a command uses, chosen by configuration — a path or
//! `sqlite:PATH` for the embedded SQLite file, a `postgres://` URL for a ledger shared by
//! many hosts — so that no command has a code path per backend.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use cardrules::Journal;

/// Where a ledger is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerSpec {
    Sqlite(PathBuf),
    /// The URL as given; `PG*` environment variables fill in what it leaves out.
    Postgres(String),
}

impl FromStr for LedgerSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<LedgerSpec, String> {
        if cardrules_postgres::is_postgres_url(text) {
            return Ok(LedgerSpec::Postgres(text.to_string()));
        }
        let path = text.strip_prefix("sqlite:").unwrap_or(text);
        if path.is_empty() {
            return Err(format!("`{text}` names no ledger file"));
        }
        if path.contains("://") {
            return Err(format!(
                "`{text}` is not a ledger: give a file path, `sqlite:PATH` or `postgres://user@host:port/db`"
            ));
        }
        Ok(LedgerSpec::Sqlite(PathBuf::from(path)))
    }
}

impl fmt::Display for LedgerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerSpec::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            // Never a password in a log line.
            LedgerSpec::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// `url` without the password it may carry.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_string(),
    }
}

impl LedgerSpec {
    /// Opens the journal, creating its schema on first use.
    pub fn open(&self) -> cardrules::Result<Arc<dyn Journal>> {
        Ok(match self {
            LedgerSpec::Sqlite(path) => Arc::new(cardrules_sqlite::SqliteLedger::open(path)?),
            LedgerSpec::Postgres(url) => Arc::new(cardrules_postgres::PostgresLedger::open(url)?),
        })
    }
}

/// `serve` hands the server its ledger unopened: the server opens it only once the rest of
/// its configuration is known to be good.
impl cardrules_server::LedgerSource for LedgerSpec {
    fn open(&self) -> cardrules::Result<Arc<dyn Journal>> {
        LedgerSpec::open(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_sqlite_and_postgres_urls_name_their_backends() {
        let parse = |s: &str| s.parse::<LedgerSpec>();
        assert_eq!(parse("l.sqlite"), Ok(LedgerSpec::Sqlite("l.sqlite".into())));
        assert_eq!(
            parse("sqlite:/x/l.db"),
            Ok(LedgerSpec::Sqlite("/x/l.db".into()))
        );
        assert_eq!(
            parse("postgres://u@h:5432/db"),
            Ok(LedgerSpec::Postgres("postgres://u@h:5432/db".into()))
        );
        assert!(parse("mysql://h/db").is_err());
        assert!(parse("sqlite:").is_err());
        assert_eq!(
            parse("postgresql://u:secret@h/db").map(|s| s.to_string()),
            Ok("postgresql://u@h/db".to_string())
        );
    }
}
