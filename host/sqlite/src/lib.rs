//! The embedded ledger of cardrules: one SQLite file (WAL, `synchronous = FULL`) holding
//! every program's journal, created on first use.
//!
//! One table, `events`, keyed by (program, seq). An append is one `BEGIN IMMEDIATE …
//! COMMIT` for a whole group of batches — one fsync however many decisions it holds — and
//! inside it each batch is written only if its program's journal still ends where the
//! batch was decided (`after`). `BEGIN IMMEDIATE` serializes appends across threads and
//! processes sharing the file, so that check and the write are atomic; the primary key
//! would refuse a duplicate position anyway.
//!
//! A second table, `snapshots`, keeps each program's latest states (schema 3); a file of
//! schema 2, the release before, gains it in place when opened.

use std::path::Path;
use std::time::Duration;

use cardrules::ledger::{
    Appended, Batch, Change, Event, EventRow, HistoryQuery, Journal, JournalStats, ProgramStats,
    Recorded, Snapshot, snapshot,
};
use cardrules::{Error, Result};
use parking_lot::Mutex;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

/// The schema this build writes and reads (`PRAGMA user_version`). Version 1 was the
/// table-per-kind ledger before the journal; it is refused with an explanation. Version 2
/// had no snapshots; it is migrated in place ([`MIGRATE_2_TO_3`]).
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    program     TEXT NOT NULL,
    seq         INTEGER NOT NULL,       -- position in the program's journal, from 1
    kind        TEXT NOT NULL,          -- `registered`, `decided`, `redacted`, `erased`, `restricted`
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

/// What schema 3 added to schema 2: the snapshots. A file of schema 2 gains it in place.
const MIGRATE_2_TO_3: &str = "
CREATE TABLE IF NOT EXISTS snapshots (
    program  TEXT NOT NULL,
    seq      INTEGER NOT NULL,          -- the journal position whose state it holds
    format   INTEGER NOT NULL,          -- the format of `body`
    checksum TEXT NOT NULL,             -- `sha256:` and the hex SHA-256 of `body`
    body     BLOB NOT NULL,             -- the state
    written  INTEGER NOT NULL,          -- when (seconds, the writing host's clock)
    PRIMARY KEY (program, seq)
) WITHOUT ROWID;
";

/// Indexes added since the schema's version was set: created on every open if missing
/// (older releases keep them up to date without knowing of them).
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS events_by_card ON events (program, card, seq);
";

/// Tables added since the schema's version was set, beside the journal and never part of
/// it: created on every open if missing (older releases leave them alone). `venues` is
/// what a city host knows of each venue host (see `Journal::save_venue`); `access_log`
/// who read or changed a holder's personal data (see `Journal::record_access`).
const TABLES: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    program TEXT NOT NULL,
    seq     INTEGER NOT NULL,           -- the venue's own order
    entry   TEXT NOT NULL,              -- JSON: the request, its answer, its change
    PRIMARY KEY (program, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS venues (
    name    TEXT PRIMARY KEY,
    status  TEXT NOT NULL,              -- JSON, as `GET /v1/venues` shows it
    written INTEGER NOT NULL            -- when (seconds, the writing host's clock)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS access_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    program TEXT NOT NULL,
    card    TEXT NOT NULL,
    at      INTEGER NOT NULL,           -- when (seconds, the host's clock)
    token   TEXT NOT NULL,              -- the token's name, never the token
    route   TEXT NOT NULL,
    method  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS access_log_by_card ON access_log (program, card, id);
";

/// Writes one event's row of `program`.
fn insert_row(
    txn: &rusqlite::Transaction<'_>,
    program: &str,
    row: &EventRow<'_>,
    recorded_at: i64,
) -> rusqlite::Result<usize> {
    txn.prepare_cached(
        "INSERT INTO events (program, seq, kind, card, at, request_id, body, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        program,
        row.seq,
        row.kind,
        row.card,
        row.at,
        row.request_id,
        row.body,
        recorded_at
    ])
}

/// Keeps `snapshot` (in place of one at the same position).
fn put_snapshot(txn: &rusqlite::Transaction<'_>, snapshot: &Snapshot) -> rusqlite::Result<usize> {
    txn.execute(
        "INSERT OR REPLACE INTO snapshots (program, seq, format, checksum, body, written)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            snapshot.program,
            i64::try_from(snapshot.seq).unwrap_or(i64::MAX),
            snapshot.format,
            snapshot.checksum,
            snapshot.body,
            snapshot.written
        ],
    )
}

/// Rewrites every event of `cards` in `program` before position `erasure` as the erasure
/// leaves it ([`cardrules::ledger::Change::redacted`]), and each of the program's snapshots
/// without the erased facts ([`Snapshot::erased`]).
fn redact(
    txn: &rusqlite::Transaction<'_>,
    program: &str,
    erasure: i64,
    cards: &[String],
) -> rusqlite::Result<()> {
    let position = u64::try_from(erasure).unwrap_or(0);
    let mut select = txn.prepare_cached(
        "SELECT seq, body FROM events WHERE program = ?1 AND card = ?2 AND seq < ?3",
    )?;
    let mut update = txn.prepare_cached(
        "UPDATE events SET kind = ?3, at = ?4, body = ?5 WHERE program = ?1 AND seq = ?2",
    )?;
    for card in cards {
        let rows: Vec<(i64, String)> = select
            .query_map(params![program, card, erasure], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (seq, body) in rows {
            let change = Change::from_row(program, seq, &body)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            let Some(kept) = change.redacted(position) else {
                continue;
            };
            let row = kept
                .to_row(seq)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            update.execute(params![program, seq, row.kind, row.at, row.body])?;
        }
    }
    // Each snapshot is rewritten as the erasure leaves it (one that cannot be is dropped).
    let snapshots: Vec<(i64, i64, String, Vec<u8>, i64)> = txn
        .prepare("SELECT seq, format, checksum, body, written FROM snapshots WHERE program = ?1")?
        .query_map(params![program], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let convert = |e: Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    for (seq, format, checksum, body, written) in snapshots {
        let event: Option<String> = txn
            .query_row(
                "SELECT body FROM events WHERE program = ?1 AND seq = ?2",
                params![program, seq],
                |row| row.get(0),
            )
            .optional()?;
        let snapshot = Snapshot {
            program: program.to_string(),
            seq: u64::try_from(seq).unwrap_or(0),
            format: u32::try_from(format).unwrap_or(u32::MAX),
            checksum,
            body,
            written,
        };
        match snapshot.erased(cards, event.as_deref()).map_err(convert)? {
            Some(erased) => txn.execute(
                "UPDATE snapshots SET checksum = ?3, body = ?4 WHERE program = ?1 AND seq = ?2",
                params![program, seq, erased.checksum, erased.body],
            )?,
            None => txn.execute(
                "DELETE FROM snapshots WHERE program = ?1 AND seq = ?2",
                params![program, seq],
            )?,
        };
    }
    Ok(())
}

/// Copies the write-ahead log into the file and empties it, so that no page as it was
/// before an erasure stays in it; a reader that keeps it busy is waited for (the busy
/// timeout), then reported.
fn checkpoint(conn: &Connection, path: &str) {
    let done = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i64>(0)
    });
    match done {
        Ok(0) => {}
        Ok(_) => tracing::warn!(
            "the write-ahead log of `{path}` could not be emptied after removing data (a reader kept it busy): it is emptied at the next checkpoint"
        ),
        Err(e) => tracing::warn!(
            "cannot checkpoint the write-ahead log of `{path}` after removing data: {e}"
        ),
    }
}

/// A page of a program's journal: what every batch of its lane reads first.
const READ_PAGE: &str =
    "SELECT seq, body FROM events WHERE program = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";

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
            // What is deleted or rewritten (an erased holder's facts, old snapshots) is
            // overwritten with zeros, not left in free pages.
            conn.pragma_update(None, "secure_delete", "on")?;
            // Reads map the file instead of copying pages in, one call each: a card's
            // statement touches a page per entry, spread over the whole journal.
            conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
            // One plan per statement, whatever its parameters: otherwise binding a
            // `LIMIT ?` (a page of the journal, read by every batch of every lane) expires
            // the cached statement, and each run parses and plans it again.
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
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
    if version == 2 {
        // The release before snapshots: the events stay as they are, the snapshots'
        // table is added; the first start then builds every program from its journal and
        // writes its first snapshot in the background (the log says how far it has come).
        tracing::info!("migrating `{shown}` from schema 2 to {SCHEMA_VERSION}: adding snapshots");
        let began = std::time::Instant::now();
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {MIGRATE_2_TO_3} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(|e| fail(&context, e))?;
        tracing::info!(
            "migrated `{shown}` to schema {SCHEMA_VERSION} in {:.1?}; every event kept",
            began.elapsed()
        );
    } else if version < SCHEMA_VERSION {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} {MIGRATE_2_TO_3} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))
        .map_err(|e| fail(&context, e))?;
    }
    conn.execute_batch(INDEXES).map_err(|e| fail(&context, e))?;
    conn.execute_batch(TABLES).map_err(|e| fail(&context, e))?;
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
        self.read_page(program, after, usize::MAX)
    }

    fn read_page(&self, program: &str, after: u64, limit: usize) -> Result<Vec<Event>> {
        let context = format!("cannot read the journal of `{program}`");
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_reader(|conn| {
            let mut statement = conn
                .prepare_cached(READ_PAGE)
                .map_err(|e| fail(&context, e))?;
            let rows = statement
                .query_map(params![program, after, limit], |row| {
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
        let mut erased = false;
        for batch in batches {
            let last: i64 = txn
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events WHERE program = ?1")
                .and_then(|mut s| s.query_row(params![batch.program], |row| row.get(0)))
                .map_err(|e| fail(&context, e))?;
            if u64::try_from(last).ok() != Some(batch.after) {
                outcomes.push(Appended::Conflict);
                continue;
            }
            // `last` is the batch's `after` here, so the rows' positions follow it.
            for (row, change) in batch.rows()?.into_iter().zip(batch.changes) {
                if let Some(cards) = change.erases() {
                    redact(&txn, batch.program, row.seq, cards).map_err(|e| fail(&context, e))?;
                    erased = true;
                }
                insert_row(&txn, batch.program, &row, recorded_at)
                    .map_err(|e| fail(&context, e))?;
            }
            outcomes.push(Appended::Done);
        }
        txn.commit().map_err(|e| fail(&context, e))?;
        if erased {
            // The erased values are gone from the tables, and `secure_delete` zeroed the
            // space they took; the write-ahead log still holds the pages as they were
            // until it is checkpointed and emptied.
            checkpoint(&conn, &self.path);
        }
        Ok(outcomes)
    }

    fn recorded(&self, program: &str, request_id: &str) -> Result<Option<Recorded>> {
        let context = format!("cannot look request id `{request_id}` up in `{program}`");
        let found = self.with_reader(|conn| {
            conn.prepare_cached(
                "SELECT seq, body FROM events WHERE program = ?1 AND request_id = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![program, request_id], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })
                .optional()
            })
            .map_err(|e| fail(&context, e))
        })?;
        let Some((seq, body)) = found else {
            return Ok(None);
        };
        let change = cardrules::ledger::Change::from_row(program, seq, &body)?;
        Ok(change.recorded().map(|(_, recorded)| recorded))
    }

    fn snapshots(&self, program: &str, limit: usize) -> Result<Vec<Snapshot>> {
        let context = format!("cannot read the snapshots of `{program}`");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_reader(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT seq, format, checksum, body, written FROM snapshots
                     WHERE program = ?1 ORDER BY seq DESC LIMIT ?2",
                )
                .map_err(|e| fail(&context, e))?;
            let rows = statement
                .query_map(params![program, limit], |row| {
                    Ok(Snapshot {
                        program: program.to_string(),
                        seq: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                        // A format this build cannot name is not this build's: skipped.
                        format: u32::try_from(row.get::<_, i64>(1)?).unwrap_or(u32::MAX),
                        checksum: row.get(2)?,
                        body: row.get(3)?,
                        written: row.get(4)?,
                    })
                })
                .map_err(|e| fail(&context, e))?;
            rows.map(|row| row.map_err(|e| fail(&context, e))).collect()
        })
    }

    fn record_access(&self, entries: &[cardrules::ledger::Access]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let context = "cannot write the access log";
        let mut conn = self.writer.lock();
        let txn = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| fail(context, e))?;
        {
            let mut insert = txn
                .prepare_cached(
                    "INSERT INTO access_log (program, card, at, token, route, method)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|e| fail(context, e))?;
            for e in entries {
                insert
                    .execute(params![e.program, e.card, e.at, e.token, e.route, e.method])
                    .map_err(|e| fail(context, e))?;
            }
        }
        txn.commit().map_err(|e| fail(context, e))
    }

    fn accesses(
        &self,
        program: &str,
        card: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<cardrules::ledger::Access>> {
        let context = format!("cannot read the access log of card `{card}` of `{program}`");
        let (after, limit) = (
            i64::try_from(after).unwrap_or(i64::MAX),
            i64::try_from(limit).unwrap_or(i64::MAX),
        );
        self.with_reader(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT id, at, token, route, method FROM access_log
                     WHERE program = ?1 AND card = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
                )
                .map_err(|e| fail(&context, e))?;
            let rows = statement
                .query_map(params![program, card, after, limit], |row| {
                    Ok(cardrules::ledger::Access {
                        id: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                        program: program.to_string(),
                        card: card.to_string(),
                        at: row.get(1)?,
                        token: row.get(2)?,
                        route: row.get(3)?,
                        method: row.get(4)?,
                    })
                })
                .map_err(|e| fail(&context, e))?;
            rows.map(|row| row.map_err(|e| fail(&context, e))).collect()
        })
    }

    fn save_venue(&self, venue: &str, status: &str) -> Result<()> {
        let context = format!("cannot keep the status of venue `{venue}`");
        let written = now();
        let conn = self.writer.lock();
        conn.execute(
            "INSERT OR REPLACE INTO venues (name, status, written) VALUES (?1, ?2, ?3)",
            params![venue, status, written],
        )
        .map(|_| ())
        .map_err(|e| fail(&context, e))
    }

    fn keep_outbox(&self, program: &str, seq: u64, entry: &str) -> Result<()> {
        let context = format!("cannot keep what the venue decided alone in `{program}`");
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let conn = self.writer.lock();
        conn.execute(
            "INSERT INTO outbox (program, seq, entry) VALUES (?1, ?2, ?3)",
            params![program, seq, entry],
        )
        .map(|_| ())
        .map_err(|e| fail(&context, e))
    }

    fn outbox(&self, program: &str) -> Result<Vec<(u64, String)>> {
        let context = format!("cannot read the outbox of `{program}`");
        self.with_reader(|conn| {
            let mut statement = conn
                .prepare_cached("SELECT seq, entry FROM outbox WHERE program = ?1 ORDER BY seq")
                .map_err(|e| fail(&context, e))?;
            let rows = statement
                .query_map(params![program], |row| {
                    Ok((
                        u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                        row.get(1)?,
                    ))
                })
                .map_err(|e| fail(&context, e))?;
            rows.map(|row| row.map_err(|e| fail(&context, e))).collect()
        })
    }

    fn drop_outbox(&self, program: &str, seqs: &[u64]) -> Result<()> {
        let context = format!("cannot clear the outbox of `{program}`");
        let mut conn = self.writer.lock();
        let txn = conn.transaction().map_err(|e| fail(&context, e))?;
        for seq in seqs {
            let seq = i64::try_from(*seq).unwrap_or(i64::MAX);
            txn.execute(
                "DELETE FROM outbox WHERE program = ?1 AND seq = ?2",
                params![program, seq],
            )
            .map_err(|e| fail(&context, e))?;
        }
        txn.commit().map_err(|e| fail(&context, e))
    }

    fn venues(&self) -> Result<Vec<(String, String)>> {
        let context = "cannot read the venues' status";
        self.with_reader(|conn| {
            let mut statement = conn
                .prepare_cached("SELECT name, status FROM venues ORDER BY name")
                .map_err(|e| fail(context, e))?;
            let rows = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(|e| fail(context, e))?;
            rows.map(|row| row.map_err(|e| fail(context, e))).collect()
        })
    }

    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let context = format!("cannot write a snapshot of `{}`", snapshot.program);
        let seq = i64::try_from(snapshot.seq).unwrap_or(i64::MAX);
        let mut conn = self.writer.lock();
        let txn = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| fail(&context, e))?;
        // A snapshot built before an erasure may hold what it erased: not kept.
        let erased: bool = txn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM events WHERE program = ?1 AND seq > ?2 AND kind = 'erased')",
                params![snapshot.program, seq],
                |row| row.get(0),
            )
            .map_err(|e| fail(&context, e))?;
        if erased {
            return Ok(());
        }
        put_snapshot(&txn, snapshot).map_err(|e| fail(&context, e))?;
        // Keep the newest few: the one before the latest is the fallback if the latest
        // turns out damaged; and a compacted journal's base snapshot, at its first event.
        txn.execute(
            "DELETE FROM snapshots WHERE program = ?1 AND seq NOT IN
                 (SELECT seq FROM snapshots WHERE program = ?1 ORDER BY seq DESC LIMIT ?2)
                 AND seq IS NOT (SELECT MIN(seq) FROM events WHERE program = ?1 HAVING MIN(seq) > 1)",
            params![snapshot.program, snapshot::KEPT as i64],
        )
        .map_err(|e| fail(&context, e))?;
        txn.commit().map_err(|e| fail(&context, e))
    }

    fn compact(&self, base: &Snapshot, seen: u64) -> Result<u64> {
        let context = format!("cannot compact the journal of `{}`", base.program);
        let seq = i64::try_from(base.seq).unwrap_or(i64::MAX);
        let mut conn = self.writer.lock();
        let txn = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| fail(&context, e))?;
        let held: bool = txn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM events WHERE program = ?1 AND seq = ?2)",
                params![base.program, seq],
                |row| row.get(0),
            )
            .map_err(|e| fail(&context, e))?;
        if !held {
            return Err(Error::Invalid(format!(
                "{context} through event {}: its journal does not hold that event",
                base.seq
            )));
        }
        let erased: bool = txn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM events WHERE program = ?1 AND seq > ?2 AND kind = 'erased')",
                params![base.program, i64::try_from(seen).unwrap_or(i64::MAX)],
                |row| row.get(0),
            )
            .map_err(|e| fail(&context, e))?;
        if erased {
            return Err(cardrules::ledger::erased_meanwhile(&base.program));
        }
        put_snapshot(&txn, base).map_err(|e| fail(&context, e))?;
        let removed = txn
            .execute(
                "DELETE FROM events WHERE program = ?1 AND seq < ?2",
                params![base.program, seq],
            )
            .map_err(|e| fail(&context, e))?;
        txn.execute(
            "DELETE FROM snapshots WHERE program = ?1 AND seq < ?2",
            params![base.program, seq],
        )
        .map_err(|e| fail(&context, e))?;
        txn.commit().map_err(|e| fail(&context, e))?;
        checkpoint(&conn, &self.path);
        Ok(removed as u64)
    }

    fn reclaim(&self) -> Result<()> {
        let conn = self.writer.lock();
        conn.execute_batch("VACUUM")
            .map_err(|e| fail(&format!("cannot vacuum `{}`", self.path), e))?;
        checkpoint(&conn, &self.path);
        Ok(())
    }

    fn adopt(&self, base: &Snapshot, changes: &[Change]) -> Result<()> {
        let context = format!("cannot begin the journal of `{}`", base.program);
        let mut conn = self.writer.lock();
        let txn = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| fail(&context, e))?;
        let held: bool = txn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM events WHERE program = ?1)",
                params![base.program],
                |row| row.get(0),
            )
            .map_err(|e| fail(&context, e))?;
        if held || base.seq == 0 {
            return Err(Error::Invalid(format!(
                "{context} at event {}: it holds events, or that is no position",
                base.seq
            )));
        }
        put_snapshot(&txn, base).map_err(|e| fail(&context, e))?;
        let batch = Batch {
            program: &base.program,
            after: base.seq - 1,
            changes,
        };
        let recorded_at = now();
        for row in batch.rows()? {
            insert_row(&txn, &base.program, &row, recorded_at).map_err(|e| fail(&context, e))?;
        }
        txn.commit().map_err(|e| fail(&context, e))
    }

    fn forget_accesses(&self, program: &str, before: i64) -> Result<u64> {
        let context = format!("cannot forget old entries of the access log of `{program}`");
        let conn = self.writer.lock();
        let removed = conn
            .execute(
                "DELETE FROM access_log WHERE program = ?1 AND at < ?2",
                params![program, before],
            )
            .map_err(|e| fail(&context, e))?;
        Ok(removed as u64)
    }

    fn stats(&self) -> Result<JournalStats> {
        let context = format!("cannot read the stats of `{}`", self.path);
        self.with_reader(|conn| {
            let query = |conn: &Connection| -> rusqlite::Result<JournalStats> {
                let mut programs: Vec<ProgramStats> = conn
                    .prepare(
                        "SELECT program, COUNT(*), MAX(seq) FROM events GROUP BY program ORDER BY program",
                    )?
                    .query_map([], |row| {
                        Ok(ProgramStats {
                            program: row.get(0)?,
                            events: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                            last: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                            snapshot: None,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let mut latest = conn.prepare(
                    "SELECT seq, written, length(body) FROM snapshots WHERE program = ?1
                     ORDER BY seq DESC LIMIT 1",
                )?;
                for program in &mut programs {
                    program.snapshot = latest
                        .query_row([&program.program], |row| {
                            Ok(snapshot::SnapshotInfo {
                                seq: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                                written: row.get(1)?,
                                bytes: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                            })
                        })
                        .optional()?;
                }
                let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
                let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
                Ok(JournalStats {
                    programs,
                    bytes: u64::try_from(pages.saturating_mul(size)).ok(),
                })
            };
            query(conn).map_err(|e| fail(&context, e))
        })
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

    /// A lane reads a page of its journal before every batch: its statement is planned
    /// once per connection, not again on every run (a `LIMIT ?` bound to a value used to
    /// expire it, and parsing it again took a third of an HTTP dry run's instructions).
    #[test]
    fn reading_a_page_of_the_journal_does_not_prepare_its_statement_again() {
        let (ledger, _guard) = SqliteLedger::temporary().expect("a temporary ledger opens");
        for limit in [10, 10, 3] {
            ledger
                .read_page("bergen", 0, limit)
                .expect("a page is read");
        }
        let prepared_again = ledger
            .with_reader(|conn| {
                let statement = conn
                    .prepare_cached(READ_PAGE)
                    .map_err(|e| fail("cannot prepare", e))?;
                Ok(statement.get_status(rusqlite::StatementStatus::RePrepare))
            })
            .expect("the statement is cached");
        assert_eq!(prepared_again, 0);
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
