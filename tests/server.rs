//! The real `cardrules serve` on a loopback port, one module per concern: every route
//! (`routes`), what an answer guarantees across races, restarts, SIGTERM and SIGKILL
//! (`durability`), two hosts on one PostgreSQL ledger (`postgres`), hot reload, signed
//! updates and shadows (`reload`), tokens and TLS (`auth`), who looked at a card (`access_log`), a parent's portal (`guardian`), overload (`limits`),
//! ids, replaced cards and repeated keys at the door (`ids`), `/metrics` (`metrics`) and the OpenAPI description (`openapi`).
//!
//! One test crate (the modules are in `tests/server/`), so the tests run side by side as
//! they always have; the harness that starts and calls the server is `tests/support/`.

mod support;

#[path = "server/fixtures.rs"]
mod fixtures;

#[path = "server/access_log.rs"]
mod access_log;
#[path = "server/auth.rs"]
mod auth;
#[path = "server/durability.rs"]
mod durability;
#[path = "server/erasure.rs"]
mod erasure;
#[path = "server/guardian.rs"]
mod guardian;
#[path = "server/ids.rs"]
mod ids;
#[path = "server/limits.rs"]
mod limits;
#[path = "server/metrics.rs"]
mod metrics;
#[path = "server/openapi.rs"]
mod openapi;
#[path = "server/postgres.rs"]
mod postgres;
#[path = "server/reload.rs"]
mod reload;
#[path = "server/routes.rs"]
mod routes;
