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
//! (the schema must exist).
//!
//! **TLS.** As libpq: `sslmode` in the URL or `PGSSLMODE` — `disable`, `prefer` (the
//! default: TLS if the server offers it), `require` (TLS, any certificate), `verify-ca`
//! and `verify-full` (the certificate must come from a CA of the PEM file named by
//! `sslrootcert` or `PGSSLROOTCERT`, and with `verify-full` be for the host name) — through
//! rustls with the ring provider. `require` given a root file checks the chain as
//! `verify-ca` does (libpq does the same). No file is read unless named. See `tls.rs`.
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
//! (the HTTP server answers 503); anything else is [`Error::Ledger`], a server certificate
//! that `sslmode` refuses among them. The cause is kept as
//! the source. The password never appears in messages nor in [`Journal::describe`].
//!
//! **Where things are.** `journal.rs` reads and appends events; `schema.rs` creates and
//! checks the tables; `pool.rs` keeps the connections (and says why no pool crate does);
//! `config.rs` turns a URL into connection settings; `tls.rs` checks the server's
//! certificate as `sslmode` asks; `error.rs` tells an unreachable server from a refusal.
//!
//! [`Appended::Conflict`]: cardrules::ledger::Appended::Conflict
//! [`Error::Unavailable`]: cardrules::Error::Unavailable
//! [`Error::Ledger`]: cardrules::Error::Ledger
//! [`Journal::describe`]: cardrules::ledger::Journal::describe

mod config;
mod error;
mod journal;
mod pool;
mod schema;
#[cfg(test)]
mod tests;
mod tls;

pub use config::is_postgres_url;
pub use journal::{PostgresLedger, event_counts, recorded_decision};
