//! `--ledger`: which journal backend a command uses, chosen by configuration — a path or
//! `sqlite:PATH` for the embedded SQLite file, a `postgres://` URL for a ledger shared by
//! many hosts — so that no command has a code path per backend.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
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

/// `url` without the password it may carry, before the host or as a `password=`
/// parameter.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (place, query) = match rest.split_once('?') {
        Some((place, query)) => (place, Some(query)),
        None => (rest, None),
    };
    let mut shown = match place.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        None => format!("{scheme}://{place}"),
    };
    if let Some(query) = query {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|parameter| !parameter.starts_with("password="))
            .collect();
        if !kept.is_empty() {
            shown.push('?');
            shown.push_str(&kept.join("&"));
        }
    }
    shown
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

/// Opens an existing ledger for a tool that only reads it: a missing file is an error, not
/// a new ledger.
fn open_existing(spec: &LedgerSpec) -> anyhow::Result<Arc<dyn Journal>> {
    if let LedgerSpec::Sqlite(path) = spec
        && !path.exists()
    {
        anyhow::bail!("ledger `{}` does not exist", path.display());
    }
    spec.open()
        .with_context(|| format!("cannot open ledger `{spec}`"))
}

/// One program's line of `cardrules ledger stats`.
#[derive(serde::Serialize)]
struct ProgramLine {
    #[serde(flatten)]
    stats: cardrules::ledger::ProgramStats,
    /// Cards with a holder, in the state built from the snapshot and the journal.
    cards: usize,
}

/// `cardrules ledger stats`: what the ledger holds, by program.
pub fn stats(spec: &LedgerSpec, json: bool) -> anyhow::Result<u8> {
    let journal = open_existing(spec)?;
    let stats = journal
        .stats()
        .with_context(|| format!("cannot read ledger `{spec}`"))?;
    let ledger = cardrules::Ledger::new(journal.clone());
    // A tool reads; it never writes a snapshot.
    ledger.snapshot_every(0);
    let mut lines = Vec::with_capacity(stats.programs.len());
    for program in stats.programs {
        let cards = ledger
            .read(&program.program, |state| state.cards().len())
            .with_context(|| format!("cannot read the state of `{}`", program.program))?;
        lines.push(ProgramLine {
            stats: program,
            cards,
        });
    }
    if json {
        let out = serde_json::json!({
            "ledger": spec.to_string(),
            "bytes": stats.bytes,
            "events": lines.iter().map(|l| l.stats.events).sum::<u64>(),
            "programs": lines,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(crate::exit::OK);
    }
    let now = jiff::Timestamp::now().as_second();
    let size = stats.bytes.map_or_else(
        || "size unknown".to_string(),
        |b| format!("{:.1} MB", b as f64 / 1e6),
    );
    let events: u64 = lines.iter().map(|l| l.stats.events).sum();
    println!(
        "ledger {spec}: {events} events, {} programs, {size}",
        lines.len()
    );
    println!(
        "{:<16} {:>12} {:>12} {:>10}  snapshot",
        "program", "events", "last", "cards"
    );
    for line in &lines {
        let snapshot = match &line.stats.snapshot {
            None => "none".to_string(),
            Some(s) => format!(
                "at event {} ({} behind), written {} ({} s ago), {:.1} MB",
                s.seq,
                line.stats.last.saturating_sub(s.seq),
                jiff::Timestamp::from_second(s.written)
                    .map_or_else(|_| s.written.to_string(), |t| t.to_string()),
                now.saturating_sub(s.written),
                s.bytes as f64 / 1e6
            ),
        };
        println!(
            "{:<16} {:>12} {:>12} {:>10}  {snapshot}",
            line.stats.program, line.stats.events, line.stats.last, line.cards
        );
    }
    Ok(crate::exit::OK)
}

/// `cardrules ledger verify`: each program's journal rebuilt from its first event to its
/// last, and its latest snapshot against it. Exit 1 for any difference (a snapshot that
/// differs or cannot be used, an event missing, unreadable or refused), 2 when the ledger
/// cannot be read at all.
pub fn verify(spec: &LedgerSpec, only: &[String]) -> anyhow::Result<u8> {
    use cardrules::ledger::snapshot::{self, Verdict};
    let journal = open_existing(spec)?;
    let stats = journal
        .stats()
        .with_context(|| format!("cannot read ledger `{spec}`"))?;
    let programs: Vec<String> = stats.programs.into_iter().map(|p| p.program).collect();
    if let Some(unknown) = only.iter().find(|p| !programs.contains(p)) {
        anyhow::bail!("ledger `{spec}` has no events of program `{unknown}`");
    }
    let mut failed = false;
    for program in programs
        .iter()
        .filter(|p| only.is_empty() || only.contains(p))
    {
        let began = std::time::Instant::now();
        let verdict = snapshot::verify(journal.as_ref(), program)
            .with_context(|| format!("cannot verify `{program}`"))?;
        let took = began.elapsed();
        failed |= verdict.differs();
        match verdict {
            Verdict::NoSnapshot => println!(
                "{program}: no snapshot; the journal applies from its first event to its last ({took:.1?})"
            ),
            Verdict::Same { seq } => println!(
                "{program}: the snapshot at event {seq} equals the state rebuilt from the journal, \
                 which applies to its last event ({took:.1?})"
            ),
            Verdict::Differs { seq, difference } => {
                println!(
                    "{program}: the snapshot at event {seq} differs from the state rebuilt from the journal; first difference:"
                );
                for line in difference.lines() {
                    println!("  {line}");
                }
            }
            Verdict::Unusable { seq, why } => {
                println!("{program}: the snapshot at event {seq} cannot be used: {why}");
            }
            Verdict::Broken { why } => {
                println!("{program}: the journal cannot be rebuilt: {why}");
            }
        }
    }
    Ok(if failed {
        crate::exit::STEP_FAILED
    } else {
        crate::exit::OK
    })
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
        assert_eq!(
            parse(
                "postgres://u:secret@h/db?sslmode=verify-full&password=secret&sslrootcert=ca.pem"
            )
            .map(|s| s.to_string()),
            Ok("postgres://u@h/db?sslmode=verify-full&sslrootcert=ca.pem".to_string())
        );
        assert_eq!(
            parse("postgres://h/db?password=secret").map(|s| s.to_string()),
            Ok("postgres://h/db".to_string())
        );
    }
}
