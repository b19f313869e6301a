//! The embedded ledger of cardrules: one SQLite file (WAL, `synchronous = FULL`) holding
//! every program's journal, created on first use.
//!
//! One table, `events`, keyed by (program, seq). An append is one `BEGIN IMMEDIATE …
//! COMMIT` for a whole group of batches — one fsync however many decisions it holds — and
//! inside it each batch is written only if its program's journal still ends where the
//! batch was decided (`after`). `BEGIN IMMEDIATE` serializes appends across threads and
//! processes sharing the file, so that check and the write are atomic; the primary key
//! would refuse a duplicate position anyway.

use std::path::Path;
use std::time::Duration;

use cardrules::ledger::{Appended, Batch, Event, HistoryQuery, Journal};
use cardrules::{Error, Result};
use parking_lot::Mutex;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

/// The schema this build writes and reads (`PRAGMA user_version`). Version 1 was the
/// table-per-kind ledger before the journal; it is refused with an explanation.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    program     TEXT NOT NULL,
    seq         INTEGER NOT NULL,       -- position in the program's journal, from 1
    kind        TEXT NOT NULL,          -- `registered` or `decided`
    card        TEXT NOT NULL,
    at          INTEGER,                -- the request's time (decisions)
    request_id  TEXT,                   -- the idempotency key it is recorded under
    body        TEXT NOT NULL,          -- the change as JSON
    recorded_at INTEGER NOT NULL,       -- when it was appended (seconds, host clock)
    PRIMARY KEY (program, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_by_request ON events (program, request_id)
    WHERE request_id IS NOT NULL;
";

/// Indexes added since the schema's version was set: created on every open if missing
/// (older releases keep them up to date without knowing of them).
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS events_by_card ON events (program, card, seq);
";

/// How much of the file reads may map (SQLite's `mmap_size`; the OS pages it in and out).
const MMAP_BYTES: i64 = 1 << 30;

/// How long a writer waits for another process holding the file's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite journal: a writer connection for appends and reader connections for
/// catching up (WAL lets them read while the writer commits).
pub struct SqliteLedger {
    path: String,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    open_reader: Box<dyn Fn() -> rusqlite::Result<Connection> + Send + Sync>,
}

impl SqliteLedger {
    /// Opens the ledger file at `path`, creating it (and its schema) if needed.
    pub fn open(path: &Path) -> Result<SqliteLedger> {
        let shown = path.display().to_string();
        let owned = path.to_path_buf();
        let connect = move || -> rusqlite::Result<Connection> {
            let conn = Connection::open(&owned)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(None, "journal_mode", "wal")?;
            // Durable on power loss too: an answered decision is on disk.
            conn.pragma_update(None, "synchronous", "full")?;
            // Reads map the file instead of copying pages in, one call each: a card's
            // statement touches a page per entry, spread over the whole journal.
            conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
            Ok(conn)
        };
        let writer = connect().map_err(|e| fail(&format!("cannot open `{shown}`"), e))?;
        migrate(&writer, &shown)?;
        Ok(SqliteLedger {
            path: shown,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            open_reader: Box::new(connect),
        })
    }

    /// A ledger in a temporary file that is removed when the returned guard drops: for
    /// tests that need real SQLite behaviour (several connections, WAL, fsync).
    pub fn temporary() -> Result<(SqliteLedger, TempLedger)> {
        let dir = std::env::temp_dir().join(format!(
            "cardrules-ledger-{}-{}",
            std::process::id(),
            NEXT_TEMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::ledger(format!("cannot create `{}`", dir.display()), e))?;
        let ledger = SqliteLedger::open(&dir.join("ledger.sqlite"))?;
        Ok((ledger, TempLedger(dir)))
    }

    /// Where the file is.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn with_reader<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.readers.lock().pop() {
            Some(conn) => conn,
            None => (self.open_reader)()
                .map_err(|e| fail(&format!("cannot open `{}`", self.path), e))?,
        };
        let result = read(&conn);
        self.readers.lock().push(conn);
        result
    }
}

static NEXT_TEMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Removes a temporary ledger's directory when dropped.
pub struct TempLedger(std::path::PathBuf);

impl TempLedger {
    /// The ledger file.
    pub fn file(&self) -> std::path::PathBuf {
        self.0.join("ledger.sqlite")
    }
}

impl Drop for TempLedger {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates the schema in a new file; refuses a file of another schema.
fn migrate(conn: &Connection, shown: &str) -> Result<()> {
    let context = format!("cannot open `{shown}`");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| fail(&context, e))?;
    let legacy: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'decisions')",
            [],
            |row| row.get(0),
        )
        .map_err(|e| fail(&context, e))?;
    if version > SCHEMA_VERSION {
        return Err(Error::ledger(
            context,
            format!(
                "the ledger has schema version {version}, newer than this cardrules reads ({SCHEMA_VERSION}); upgrade cardrules"
            ),
        ));
    }
    if version < SCHEMA_VERSION && legacy {
        return Err(Error::ledger(
            context,
            "the ledger was written by a cardrules before the journal (schema version 1) and cannot be read; move it aside and start a new one",
        ));
    }
    if version < SCHEMA_VERSION {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(|e| fail(&context, e))?;
    }
    conn.execute_batch(INDEXES).map_err(|e| fail(&context, e))?;
    Ok(())
}

/// A SQLite failure as a ledger error, keeping its cause; a busy file is `Unavailable`.
fn fail(context: &str, e: rusqlite::Error) -> Error {
    let busy = matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    );
    if busy {
        Error::unavailable(context.to_string(), e)
    } else {
        Error::ledger(context.to_string(), e)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Journal for SqliteLedger {
    fn read(&self, program: &str, after: u64) -> Result<Vec<Event>> {
        let context = format!("cannot read the journal of `{program}`");
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.with_reader(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT seq, body FROM events WHERE program = ?1 AND seq > ?2 ORDER BY seq",
                )
                .map_err(|e| fail(&context, e))?;
            let rows = statement
                .query_map(params![program, after], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(|e| fail(&context, e))?;
            let mut events = Vec::new();
            for row in rows {
                let (seq, body) = row.map_err(|e| fail(&context, e))?;
                events.push(Event::from_row(program, seq, &body)?);
            }
            Ok(events)
        })
    }

    fn history(&self, program: &str, query: &HistoryQuery<'_>) -> Result<Vec<Event>> {
        let context = format!("cannot read the history of `{program}`");
        if query.cards.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        // One placeholder per card: a holder has a card or a few (one per replacement).
        let cards = vec!["?"; query.cards.len()].join(", ");
        let sql = format!(
            "SELECT seq, body FROM events INDEXED BY events_by_card
             WHERE program = ? AND card IN ({cards}) AND seq > ?
               AND (? IS NULL OR at >= ?) AND (? IS NULL OR at < ?)
             ORDER BY seq LIMIT ?"
        );
        let after = i64::try_from(query.after).unwrap_or(i64::MAX);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let mut values: Vec<rusqlite::types::Value> = vec![program.to_string().into()];
        values.extend(query.cards.iter().map(|c| c.clone().into()));
        values.push(after.into());
        for bound in [query.since, query.since, query.until, query.until] {
            values.push(bound.map_or(rusqlite::types::Value::Null, Into::into));
        }
        values.push(limit.into());
        self.with_reader(|conn| {
            let mut statement = conn.prepare_cached(&sql).map_err(|e| fail(&context, e))?;
            let rows = statement
                .query_map(rusqlite::params_from_iter(values), |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(|e| fail(&context, e))?;
            let mut events = Vec::new();
            for row in rows {
                let (seq, body) = row.map_err(|e| fail(&context, e))?;
                events.push(Event::from_row(program, seq, &body)?);
            }
            Ok(events)
        })
    }

    fn append(&self, batches: &[Batch<'_>]) -> Result<Vec<Appended>> {
        let context = format!("cannot append to `{}`", self.path);
        let mut conn = self.writer.lock();
        let txn = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| fail(&context, e))?;
        let recorded_at = now();
        let mut outcomes = Vec::with_capacity(batches.len());
        for batch in batches {
            let last: i64 = txn
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events WHERE program = ?1")
                .and_then(|mut s| s.query_row(params![batch.program], |row| row.get(0)))
                .map_err(|e| fail(&context, e))?;
            if u64::try_from(last).ok() != Some(batch.after) {
                outcomes.push(Appended::Conflict);
                continue;
            }
            let mut insert = txn
                .prepare_cached(
                    "INSERT INTO events (program, seq, kind, card, at, request_id, body, recorded_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| fail(&context, e))?;
            // `last` is the batch's `after` here, so the rows' positions follow it.
            for row in batch.rows()? {
                insert
                    .execute(params![
                        batch.program,
                        row.seq,
                        row.kind,
                        row.card,
                        row.at,
                        row.request_id,
                        row.body,
                        recorded_at
                    ])
                    .map_err(|e| fail(&context, e))?;
            }
            outcomes.push(Appended::Done);
        }
        txn.commit().map_err(|e| fail(&context, e))?;
        Ok(outcomes)
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path)
    }
}

/// Counts the events of the file, per program (for tests and tools).
pub fn event_counts(ledger: &SqliteLedger) -> Result<Vec<(String, u64)>> {
    ledger.with_reader(|conn| {
        let mut statement = conn
            .prepare("SELECT program, COUNT(*) FROM events GROUP BY program ORDER BY program")
            .map_err(|e| fail("cannot count events", e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(|e| fail("cannot count events", e))?;
        rows.map(|row| {
            row.map(|(p, n)| (p, u64::try_from(n).unwrap_or(0)))
                .map_err(|e| fail("cannot count events", e))
        })
        .collect()
    })
}

/// The decision recorded under `request_id` in `program`, read straight from the file.
pub fn recorded_decision(
    ledger: &SqliteLedger,
    program: &str,
    request_id: &str,
) -> Result<Option<String>> {
    ledger.with_reader(|conn| {
        conn.query_row(
            "SELECT body FROM events WHERE program = ?1 AND request_id = ?2",
            params![program, request_id],
            |row| row.get::<_, String>(0),
        )
        .optional()
        .map_err(|e| fail("cannot read a decision", e))
    })
}

/// Commits per second of an empty durable transaction in a SQLite file at `path` (WAL,
/// `synchronous = FULL`), measured for `seconds`: the disk's ceiling for designs that commit
/// once per decision. The file is removed afterwards.
pub fn bare_commits_per_second(path: &Path, seconds: f64) -> Result<f64> {
    let context = format!("cannot measure commits in `{}`", path.display());
    let conn = Connection::open(path).map_err(|e| fail(&context, e))?;
    conn.pragma_update(None, "journal_mode", "wal")
        .and_then(|()| conn.pragma_update(None, "synchronous", "full"))
        .and_then(|()| conn.execute_batch("CREATE TABLE IF NOT EXISTS t (n INTEGER)"))
        .map_err(|e| fail(&context, e))?;
    let budget = Duration::from_secs_f64(seconds.max(0.05));
    let start = std::time::Instant::now();
    let mut commits = 0u64;
    while start.elapsed() < budget {
        conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1); COMMIT;")
            .map_err(|e| fail(&context, e))?;
        commits += 1;
    }
    let rate = commits as f64 / start.elapsed().as_secs_f64();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_sqlite_ledger_conforms() {
        let guards = Mutex::new(Vec::new());
        let fresh = || -> Arc<dyn Journal> {
            let (ledger, guard) = SqliteLedger::temporary().expect("a temporary ledger opens");
            guards.lock().push(guard);
            Arc::new(ledger)
        };
        let twin = |journal: &Arc<dyn Journal>| -> Arc<dyn Journal> {
            let path = journal.describe();
            let path = path.trim_start_matches("sqlite:");
            Arc::new(SqliteLedger::open(Path::new(path)).expect("a second handle opens"))
        };
        cardrules::ledger::conformance::run_all(&fresh, &twin);
    }

    #[test]
    fn a_ledger_of_a_newer_schema_is_refused() {
        let (ledger, guard) = SqliteLedger::temporary().expect("a temporary ledger opens");
        drop(ledger);
        let conn = Connection::open(guard.file()).expect("the file opens");
        conn.pragma_update(None, "user_version", 99).expect("set");
        drop(conn);
        let Err(error) = SqliteLedger::open(&guard.file()) else {
            panic!("a newer schema must be refused");
        };
        assert!(
            error.to_string().contains("schema version 99, newer"),
            "{error}"
        );
    }
}
