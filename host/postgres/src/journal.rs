//! The journal on PostgreSQL: reading a program's events, and appending groups of
//! batches in one transaction, each batch only if its program's journal still ends where
//! it was decided.

use cardrules::ledger::{
    Appended, Batch, Change, Event, HistoryQuery, Journal, JournalStats, ProgramStats, Recorded,
    Snapshot, SnapshotInfo, snapshot,
};
use cardrules::{Error, Result};
use postgres::error::SqlState;

use crate::config::{configure, describe};
use crate::error::{Cause, MAX_TRIES, backoff, fail, is_connection_error};
use crate::pool::{Pool, Query, Session, lost};

/// The primary key: a violation of it means another host appended first.
const POSITION_KEY: &str = "cardrules_events_pkey";

pub(crate) const READ: &str =
    "SELECT seq, body FROM cardrules_events WHERE program = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// The decision recorded under a request id, by the unique index on (program, request_id).
pub(crate) const RECORDED: &str =
    "SELECT seq, body FROM cardrules_events WHERE program = $1 AND request_id = $2";

/// A page of a holder's statement: the events of its cards after a position, within a
/// time range, by the index on (program, card, seq).
pub(crate) const HISTORY: &str = "
SELECT seq, body FROM cardrules_events
WHERE program = $1 AND card = ANY($2::text[]) AND seq > $3
  AND ($4::bigint IS NULL OR at >= $4) AND ($5::bigint IS NULL OR at < $5)
ORDER BY seq LIMIT $6
";

pub(crate) const LAST: &str =
    "SELECT COALESCE(MAX(seq), 0) FROM cardrules_events WHERE program = $1";

/// Inserts a batch's changes at the given positions if the program's journal still ends at
/// `$2`; inserts nothing otherwise.
pub(crate) const INSERT: &str = "
INSERT INTO cardrules_events (program, seq, kind, card, at, request_id, body)
SELECT $1::text, u.seq, u.kind, u.card, u.at, u.request_id, u.body
FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[])
    AS u (seq, kind, card, at, request_id, body)
WHERE (SELECT COALESCE(MAX(seq), 0) FROM cardrules_events WHERE program = $1) = $2::bigint
";

/// The PostgreSQL journal: a small pool of connections to one database.
pub struct PostgresLedger {
    pub(crate) shown: String,
    pub(crate) pool: Pool,
}

impl PostgresLedger {
    /// Connects to the database at `url` (parts left out are taken from the `PG*`
    /// variables) and creates the schema if needed; refuses a newer schema.
    pub fn open(url: &str) -> Result<PostgresLedger> {
        let target = configure(url, &|name| std::env::var(name).ok())?;
        let shown = describe(&target.config);
        let ledger = PostgresLedger {
            pool: Pool::new(target, &shown),
            shown,
        };
        ledger.migrate()?;
        Ok(ledger)
    }

    /// Where the events are kept, without the password: `postgres://user@host:port/db`.
    pub fn url(&self) -> &str {
        &self.shown
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
        self.read_page(program, after, usize::MAX)
    }

    fn read_page(&self, program: &str, after: u64, limit: usize) -> Result<Vec<Event>> {
        let context = format!("cannot read the journal of `{program}`");
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with_session(&context, |session| {
            let read = session.prepared(Query::Read)?;
            Ok(session.client.query(&read, &[&program, &after, &limit])?)
        })?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get(0).map_err(|e| fail(&context, e))?;
            let body: &str = row.try_get(1).map_err(|e| fail(&context, e))?;
            events.push(Event::from_row(program, seq, body)?);
        }
        Ok(events)
    }

    fn history(&self, program: &str, query: &HistoryQuery<'_>) -> Result<Vec<Event>> {
        let context = format!("cannot read the history of `{program}`");
        let after = i64::try_from(query.after).unwrap_or(i64::MAX);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let rows = self.with_session(&context, |session| {
            let history = session.prepared(Query::History)?;
            Ok(session.client.query(
                &history,
                &[
                    &program,
                    &query.cards,
                    &after,
                    &query.since,
                    &query.until,
                    &limit,
                ],
            )?)
        })?;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get(0).map_err(|e| fail(&context, e))?;
            let body: &str = row.try_get(1).map_err(|e| fail(&context, e))?;
            events.push(Event::from_row(program, seq, body)?);
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

    fn recorded(&self, program: &str, request_id: &str) -> Result<Option<Recorded>> {
        let context = format!("cannot look request id `{request_id}` up in `{program}`");
        let id = storable(request_id);
        let row = self.with_session(&context, |session| {
            let recorded = session.prepared(Query::Recorded)?;
            Ok(session.client.query_opt(&recorded, &[&program, &id])?)
        })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let seq: i64 = row.try_get(0).map_err(|e| fail(&context, e))?;
        let body: &str = row.try_get(1).map_err(|e| fail(&context, e))?;
        let change = Change::from_row(program, seq, body)?;
        // The column keeps NUL as U+FFFD: the body's own id must be the one asked for.
        Ok(change
            .recorded()
            .filter(|(id, _)| *id == request_id)
            .map(|(_, recorded)| recorded))
    }

    fn snapshots(&self, program: &str, limit: usize) -> Result<Vec<Snapshot>> {
        let context = format!("cannot read the snapshots of `{program}`");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with_session(&context, |session| {
            Ok(session.client.query(
                "SELECT seq, format, checksum, body, written FROM cardrules_snapshots
                 WHERE program = $1 ORDER BY seq DESC LIMIT $2",
                &[&program, &limit],
            )?)
        })?;
        rows.iter()
            .map(|row| {
                Ok(Snapshot {
                    program: program.to_string(),
                    seq: u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0),
                    // A format this build cannot name is not this build's: skipped.
                    format: u32::try_from(row.try_get::<_, i32>(1)?).unwrap_or(u32::MAX),
                    checksum: row.try_get(2)?,
                    body: row.try_get(3)?,
                    written: row.try_get(4)?,
                })
            })
            .collect::<Result<_, postgres::Error>>()
            .map_err(|e| fail(&context, e))
    }

    fn compact(&self, base: &Snapshot, seen: u64) -> Result<u64> {
        let seen = i64::try_from(seen).unwrap_or(i64::MAX);
        let context = format!("cannot compact the journal of `{}`", base.program);
        let seq = i64::try_from(base.seq).unwrap_or(i64::MAX);
        self.with_session(&context, |session| {
            let mut txn = session.client.transaction()?;
            // Appends to the program wait for this (they lock its last row too).
            let held = txn
                .query_opt(
                    "SELECT 1 FROM cardrules_events WHERE program = $1 AND seq = $2 FOR UPDATE",
                    &[&base.program, &seq],
                )?
                .is_some();
            if !held {
                return Err(Failure::Other(Error::Invalid(format!(
                    "cannot compact the journal of `{}` through event {}: it does not hold that event",
                    base.program, base.seq
                ))));
            }
            let erased: bool = txn
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM cardrules_events
                     WHERE program = $1 AND seq > $2 AND kind = 'erased')",
                    &[&base.program, &seen],
                )?
                .try_get(0)?;
            if erased {
                return Err(Failure::Other(cardrules::ledger::erased_meanwhile(
                    &base.program,
                )));
            }
            put_snapshot(&mut txn, base)?;
            let removed = txn.execute(
                "DELETE FROM cardrules_events WHERE program = $1 AND seq < $2",
                &[&base.program, &seq],
            )?;
            txn.execute(
                "DELETE FROM cardrules_snapshots WHERE program = $1 AND seq < $2",
                &[&base.program, &seq],
            )?;
            txn.commit()
                .map_err(|e| Failure::Db(e, Stage::Committing))?;
            Ok(removed)
        })
    }

    fn reclaim(&self) -> Result<()> {
        self.with_session("cannot vacuum the journal", |session| {
            // One statement each: several in one string run as one transaction, which
            // VACUUM refuses.
            for table in [
                "cardrules_events",
                "cardrules_snapshots",
                "cardrules_access_log",
            ] {
                session.client.batch_execute(&format!("VACUUM {table}"))?;
            }
            Ok(())
        })
    }

    fn adopt(&self, base: &Snapshot, changes: &[cardrules::ledger::Change]) -> Result<()> {
        let context = format!("cannot begin the journal of `{}`", base.program);
        if base.seq == 0 {
            return Err(Error::Invalid(format!("{context} at event 0")));
        }
        let rows = Rows::of(&Batch {
            program: &base.program,
            after: base.seq - 1,
            changes,
        })?;
        self.with_session(&context, |session| {
            let insert = session.prepared(Query::Insert)?;
            let mut txn = session.client.transaction()?;
            put_snapshot(&mut txn, base)?;
            // Inserted only into an empty journal (its last position 0).
            let inserted = txn.execute(
                &insert,
                &[
                    &base.program,
                    &0i64,
                    &rows.seq,
                    &rows.kind,
                    &rows.card,
                    &rows.at,
                    &rows.request_id,
                    &rows.body,
                ],
            )?;
            if inserted != rows.seq.len() as u64 {
                return Err(Failure::Other(Error::Invalid(format!(
                    "{context} at event {}: it holds events",
                    base.seq
                ))));
            }
            txn.commit().map_err(|e| Failure::Db(e, Stage::Committing))
        })
    }

    fn forget_accesses(&self, program: &str, before: i64) -> Result<u64> {
        let context = format!("cannot forget old entries of the access log of `{program}`");
        self.with_session(&context, |session| {
            Ok(session.client.execute(
                "DELETE FROM cardrules_access_log WHERE program = $1 AND at < $2",
                &[&program, &before],
            )?)
        })
    }

    fn record_access(&self, entries: &[cardrules::ledger::Access]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let context = "cannot write the access log";
        self.with_session(context, |session| {
            let mut txn = session.client.transaction()?;
            for e in entries {
                txn.execute(
                    "INSERT INTO cardrules_access_log (program, card, at, token, route, method)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&e.program, &e.card, &e.at, &e.token, &e.route, &e.method],
                )?;
            }
            txn.commit().map_err(|e| Failure::Db(e, Stage::Committing))
        })
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
        let rows = self.with_session(&context, |session| {
            Ok(session.client.query(
                "SELECT id, at, token, route, method FROM cardrules_access_log
                 WHERE program = $1 AND card = $2 AND id > $3 ORDER BY id LIMIT $4",
                &[&program, &card, &after, &limit],
            )?)
        })?;
        rows.iter()
            .map(|row| {
                Ok(cardrules::ledger::Access {
                    id: u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0),
                    program: program.to_string(),
                    card: card.to_string(),
                    at: row.try_get(1)?,
                    token: row.try_get(2)?,
                    route: row.try_get(3)?,
                    method: row.try_get(4)?,
                })
            })
            .collect::<Result<_, postgres::Error>>()
            .map_err(|e| fail(&context, e))
    }

    fn save_venue(&self, venue: &str, status: &str) -> Result<()> {
        let context = format!("cannot keep the status of venue `{venue}`");
        let written = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.with_session(&context, |session| {
            session.client.execute(
                "INSERT INTO cardrules_venues (name, status, written) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET status = EXCLUDED.status,
                     written = EXCLUDED.written",
                &[&venue, &status, &written],
            )?;
            Ok(())
        })
    }

    fn venues(&self) -> Result<Vec<(String, String)>> {
        let context = "cannot read the venues' status";
        let rows = self.with_session(context, |session| {
            Ok(session.client.query(
                "SELECT name, status FROM cardrules_venues ORDER BY name",
                &[],
            )?)
        })?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, postgres::Error>>()
            .map_err(|e| fail(context, e))
    }

    fn save_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let context = format!("cannot write a snapshot of `{}`", snapshot.program);
        let seq = i64::try_from(snapshot.seq).unwrap_or(i64::MAX);
        let kept = snapshot::KEPT as i64;
        self.with_session(&context, |session| {
            let mut txn = session.client.transaction()?;
            // A snapshot built before an erasure may hold what it erased: not kept.
            let erased: bool = txn
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM cardrules_events
                     WHERE program = $1 AND seq > $2 AND kind = 'erased')",
                    &[&snapshot.program, &seq],
                )?
                .try_get(0)?;
            if erased {
                return Ok(());
            }
            put_snapshot(&mut txn, snapshot)?;
            // Keep the newest few: the one before the latest is the fallback if the latest
            // turns out damaged.
            // And a compacted journal's base snapshot, at its first event.
            txn.execute(
                "DELETE FROM cardrules_snapshots WHERE program = $1 AND seq NOT IN
                     (SELECT seq FROM cardrules_snapshots WHERE program = $1
                      ORDER BY seq DESC LIMIT $2)
                     AND seq IS DISTINCT FROM (SELECT MIN(seq) FROM cardrules_events
                      WHERE program = $1 HAVING MIN(seq) > 1)",
                &[&snapshot.program, &kept],
            )?;
            txn.commit().map_err(|e| Failure::Db(e, Stage::Committing))
        })
    }

    fn stats(&self) -> Result<JournalStats> {
        let context = format!("cannot read the stats of `{}`", self.shown);
        let (events, snapshots, bytes) = self.with_session(&context, |session| {
            let events = session.client.query(
                "SELECT program, COUNT(*), MAX(seq) FROM cardrules_events
                 GROUP BY program ORDER BY program",
                &[],
            )?;
            let snapshots = session.client.query(
                "SELECT DISTINCT ON (program) program, seq, written, length(body)
                 FROM cardrules_snapshots ORDER BY program, seq DESC",
                &[],
            )?;
            let bytes = session.client.query_one(
                "SELECT pg_total_relation_size('cardrules_events')
                      + pg_total_relation_size('cardrules_snapshots')",
                &[],
            )?;
            Ok((events, snapshots, bytes))
        })?;
        let read = || -> Result<JournalStats, postgres::Error> {
            let mut programs = Vec::with_capacity(events.len());
            for row in &events {
                let program: String = row.try_get(0)?;
                let snapshot = snapshots
                    .iter()
                    .find(|s| s.try_get::<_, &str>(0).is_ok_and(|p| p == program))
                    .map(|s| -> Result<SnapshotInfo, postgres::Error> {
                        Ok(SnapshotInfo {
                            seq: u64::try_from(s.try_get::<_, i64>(1)?).unwrap_or(0),
                            written: s.try_get(2)?,
                            bytes: u64::try_from(s.try_get::<_, i32>(3)?).unwrap_or(0),
                        })
                    })
                    .transpose()?;
                programs.push(ProgramStats {
                    program,
                    events: u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0),
                    last: u64::try_from(row.try_get::<_, i64>(2)?).unwrap_or(0),
                    snapshot,
                });
            }
            Ok(JournalStats {
                programs,
                bytes: u64::try_from(bytes.try_get::<_, i64>(0)?).ok(),
            })
        };
        read().map_err(|e| fail(&context, e))
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
        let encoded = batch.rows()?;
        let n = encoded.len();
        let mut rows = Rows {
            seq: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            card: Vec::with_capacity(n),
            at: Vec::with_capacity(n),
            request_id: Vec::with_capacity(n),
            body: Vec::with_capacity(n),
        };
        for row in encoded {
            rows.seq.push(row.seq);
            rows.kind.push(row.kind);
            rows.card.push(storable(row.card));
            rows.at.push(row.at);
            rows.request_id.push(row.request_id.map(storable));
            rows.body.push(row.body);
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

/// Rewrites every event of `cards` in `program` before position `erasure` as the erasure
/// leaves it ([`Change::redacted`]), and each of the program's snapshots without the
/// erased facts ([`Snapshot::erased`]). The rows' old versions are
/// dead tuples from the commit on: no dump or replica reads them, and vacuum reclaims
/// their space.
fn redact(
    txn: &mut postgres::Transaction<'_>,
    program: &str,
    erasure: i64,
    cards: &[String],
) -> Result<(), Failure> {
    let position = u64::try_from(erasure).unwrap_or(0);
    for card in cards {
        let card = storable(card);
        let rows = txn.query(
            "SELECT seq, body FROM cardrules_events WHERE program = $1 AND card = $2 AND seq < $3",
            &[&program, &card, &erasure],
        )?;
        for row in rows {
            let seq: i64 = row.try_get(0)?;
            let body: &str = row.try_get(1)?;
            let change = Change::from_row(program, seq, body).map_err(Failure::Other)?;
            let Some(kept) = change.redacted(position) else {
                continue;
            };
            let kept = kept.to_row(seq).map_err(Failure::Other)?;
            txn.execute(
                "UPDATE cardrules_events SET kind = $3, at = $4, body = $5 WHERE program = $1 AND seq = $2",
                &[&program, &seq, &kept.kind, &kept.at, &kept.body],
            )?;
        }
    }
    // Each snapshot is rewritten as the erasure leaves it (one that cannot be is dropped).
    let snapshots = txn.query(
        "SELECT seq, format, checksum, body, written FROM cardrules_snapshots WHERE program = $1",
        &[&program],
    )?;
    for row in snapshots {
        let seq: i64 = row.try_get(0)?;
        let event = txn.query_opt(
            "SELECT body FROM cardrules_events WHERE program = $1 AND seq = $2",
            &[&program, &seq],
        )?;
        let event: Option<String> = match event {
            Some(event) => Some(event.try_get(0)?),
            None => None,
        };
        let snapshot = Snapshot {
            program: program.to_string(),
            seq: u64::try_from(seq).unwrap_or(0),
            format: u32::try_from(row.try_get::<_, i32>(1)?).unwrap_or(u32::MAX),
            checksum: row.try_get(2)?,
            body: row.try_get(3)?,
            written: row.try_get(4)?,
        };
        match snapshot
            .erased(cards, event.as_deref())
            .map_err(Failure::Other)?
        {
            Some(erased) => txn.execute(
                "UPDATE cardrules_snapshots SET checksum = $3, body = $4 WHERE program = $1 AND seq = $2",
                &[&program, &seq, &erased.checksum, &erased.body],
            )?,
            None => txn.execute(
                "DELETE FROM cardrules_snapshots WHERE program = $1 AND seq = $2",
                &[&program, &seq],
            )?,
        };
    }
    Ok(())
}

/// Keeps `snapshot` (in place of one at the same position).
fn put_snapshot(txn: &mut postgres::Transaction<'_>, snapshot: &Snapshot) -> Result<u64, Failure> {
    let seq = i64::try_from(snapshot.seq).unwrap_or(i64::MAX);
    let format = i32::try_from(snapshot.format).unwrap_or(i32::MAX);
    Ok(txn.execute(
        "INSERT INTO cardrules_snapshots (program, seq, format, checksum, body, written)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (program, seq) DO UPDATE SET format = EXCLUDED.format,
             checksum = EXCLUDED.checksum, body = EXCLUDED.body, written = EXCLUDED.written",
        &[
            &snapshot.program,
            &seq,
            &format,
            &snapshot.checksum,
            &snapshot.body,
            &snapshot.written,
        ],
    )?)
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
                for (change, &seq) in batch.changes.iter().zip(&rows.seq) {
                    if let Some(cards) = change.erases() {
                        redact(&mut savepoint, batch.program, seq, cards)?;
                    }
                }
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
