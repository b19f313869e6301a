//! The embedded ledger: one SQLite file (WAL, `synchronous = FULL`), created on first use.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RawMutex, lock_api::ArcMutexGuard};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Ledger, LotRow, Record, Recorded, Txn};
use crate::error::{Error, Result};
use crate::model::Holder;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS holders (
    program TEXT NOT NULL,
    card    TEXT NOT NULL,
    facts   TEXT NOT NULL,          -- the holder as JSON, without balances
    PRIMARY KEY (program, card)
);
CREATE TABLE IF NOT EXISTS tallies (
    program TEXT NOT NULL,
    card    TEXT NOT NULL,
    counter TEXT NOT NULL,
    at      INTEGER NOT NULL,
    amount  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tallies_by_card ON tallies (program, card, counter, at);
CREATE INDEX IF NOT EXISTS tallies_by_counter ON tallies (program, counter, at);
CREATE TABLE IF NOT EXISTS lots (
    id      INTEGER PRIMARY KEY,
    program TEXT NOT NULL,
    card    TEXT NOT NULL,
    asset   TEXT NOT NULL,
    amount  INTEGER NOT NULL CHECK (amount > 0),
    expires INTEGER
);
CREATE INDEX IF NOT EXISTS lots_by_card ON lots (program, card);
CREATE TABLE IF NOT EXISTS decisions (
    seq        INTEGER PRIMARY KEY,
    program    TEXT NOT NULL,
    request_id TEXT,
    card       TEXT NOT NULL,
    at         INTEGER NOT NULL,
    request    TEXT NOT NULL,
    decision   TEXT NOT NULL,
    digest     TEXT NOT NULL,
    fuel       INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS decisions_by_id ON decisions (program, request_id)
    WHERE request_id IS NOT NULL;
";

/// How long a writer waits for another process holding the file's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite ledger. Every transaction is `BEGIN IMMEDIATE`, so decisions are serialized
/// across threads of this process and across processes sharing the file.
pub struct SqliteLedger {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteLedger {
    /// Opens the ledger file at `path`, creating it (and its tables) if needed.
    pub fn open(path: &Path) -> Result<SqliteLedger> {
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(None, "journal_mode", "wal")?;
            // Durable on power loss too: an answered decision is on disk.
            conn.pragma_update(None, "synchronous", "full")?;
            Ok(conn)
        };
        let conn =
            open().map_err(|e| Error::Ledger(format!("cannot open `{}`: {e}", path.display())))?;
        SqliteLedger::with(conn)
    }

    /// A ledger in memory, for tests.
    pub fn in_memory() -> Result<SqliteLedger> {
        SqliteLedger::with(Connection::open_in_memory()?)
    }

    fn with(conn: Connection) -> Result<SqliteLedger> {
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteLedger {
            conn: Arc::new(Mutex::new(conn)),
        })
    }
}

impl Ledger for SqliteLedger {
    fn begin(&self, program: &str) -> Result<Box<dyn Txn>> {
        let conn = self.conn.lock_arc();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Box::new(SqliteTxn {
            conn,
            program: program.to_string(),
            open: true,
        }))
    }
}

struct SqliteTxn {
    conn: ArcMutexGuard<RawMutex, Connection>,
    program: String,
    open: bool,
}

impl Drop for SqliteTxn {
    fn drop(&mut self) {
        if self.open {
            // Nothing to report to: the transaction is abandoned either way.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

fn holder_from_json(facts: &str) -> Result<Holder> {
    serde_json::from_str(facts).map_err(|e| Error::Ledger(format!("corrupt holder row: {e}")))
}

impl Txn for SqliteTxn {
    fn holder(&mut self, card: &str) -> Result<Option<Holder>> {
        let facts: Option<String> = self
            .conn
            .prepare_cached("SELECT facts FROM holders WHERE program = ?1 AND card = ?2")?
            .query_row(params![self.program, card], |row| row.get(0))
            .optional()?;
        facts.as_deref().map(holder_from_json).transpose()
    }

    fn put_holder(&mut self, holder: &Holder) -> Result<()> {
        let mut facts = holder.clone();
        facts.balances.clear();
        let json = serde_json::to_string(&facts).map_err(|e| Error::Ledger(e.to_string()))?;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO holders (program, card, facts) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![self.program, holder.card, json])?;
        Ok(())
    }

    fn tally_sum(&mut self, card: Option<&str>, counter: &str, from: i64, to: i64) -> Result<u64> {
        let sum: i64 = match card {
            Some(card) => self
                .conn
                .prepare_cached(
                    "SELECT COALESCE(SUM(amount), 0) FROM tallies
                     WHERE program = ?1 AND card = ?2 AND counter = ?3 AND at >= ?4 AND at < ?5",
                )?
                .query_row(params![self.program, card, counter, from, to], |row| {
                    row.get(0)
                })?,
            None => self
                .conn
                .prepare_cached(
                    "SELECT COALESCE(SUM(amount), 0) FROM tallies
                     WHERE program = ?1 AND counter = ?2 AND at >= ?3 AND at < ?4",
                )?
                .query_row(params![self.program, counter, from, to], |row| row.get(0))?,
        };
        Ok(u64::try_from(sum).unwrap_or(0))
    }

    fn last_tally(&mut self, card: &str, counter: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT MAX(at) FROM tallies WHERE program = ?1 AND card = ?2 AND counter = ?3",
            )?
            .query_row(params![self.program, card, counter], |row| row.get(0))?)
    }

    fn add_tally(&mut self, card: &str, counter: &str, at: i64, amount: u64) -> Result<()> {
        let amount = i64::try_from(amount).map_err(|_| Error::invalid("tally amount too large"))?;
        self.conn
            .prepare_cached(
                "INSERT INTO tallies (program, card, counter, at, amount) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![self.program, card, counter, at, amount])?;
        Ok(())
    }

    fn lots(&mut self, card: &str) -> Result<Vec<LotRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, asset, amount, expires FROM lots WHERE program = ?1 AND card = ?2 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![self.program, card], |row| {
            Ok(LotRow {
                id: row.get(0)?,
                asset: row.get(1)?,
                amount: row.get(2)?,
                expires: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn add_lot(
        &mut self,
        card: &str,
        asset: &str,
        amount: i64,
        expires: Option<i64>,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO lots (program, card, asset, amount, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![self.program, card, asset, amount, expires])?;
        Ok(())
    }

    fn set_lot_amount(&mut self, id: i64, amount: i64) -> Result<()> {
        if amount == 0 {
            self.conn
                .prepare_cached("DELETE FROM lots WHERE id = ?1 AND program = ?2")?
                .execute(params![id, self.program])?;
        } else {
            self.conn
                .prepare_cached("UPDATE lots SET amount = ?3 WHERE id = ?1 AND program = ?2")?
                .execute(params![id, self.program, amount])?;
        }
        Ok(())
    }

    fn move_lots(&mut self, from: &str, to: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE lots SET card = ?3 WHERE program = ?1 AND card = ?2")?
            .execute(params![self.program, from, to])?;
        Ok(())
    }

    fn recorded(&mut self, request_id: &str) -> Result<Option<Recorded>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT request, decision FROM decisions WHERE program = ?1 AND request_id = ?2",
            )?
            .query_row(params![self.program, request_id], |row| {
                Ok(Recorded {
                    request: row.get(0)?,
                    decision: row.get(1)?,
                })
            })
            .optional()?)
    }

    fn record(&mut self, r: &Record) -> Result<()> {
        let fuel = i64::try_from(r.fuel).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(
                "INSERT INTO decisions (program, request_id, card, at, request, decision, digest, fuel)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                self.program,
                r.request_id,
                r.card,
                r.at,
                r.request,
                r.decision,
                r.digest,
                fuel
            ])?;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }
}
