//! The point-of-sale HTTP API (`cardrules serve`, docs/contract.md): the routes over a
//! [`Host`](cardrules::Host), and the watcher that hot-reloads a program when its files
//! change. [`Server::run`] starts it all from a [`Config`], validated before any work
//! starts; [`Server::new`] and [`Server::router`] give an embedder the routes alone.
//!
//! Decisions run on tokio's blocking pool (a policy evaluation and a durable SQLite commit
//! are blocking work); the answer is sent only after the commit returned, so an answered
//! decision is on disk. Bad input is a 400 with `{"error": "…"}`, never a 500.
//!
//! With [`auth::Tokens`], every route but [`OPEN_ROUTES`] needs a bearer token (401
//! without a known one) and each handler checks the caller's rights before acting (403
//! outside them); the token's name is recorded on the request's log span.
//!
//! Host work in flight is bounded ([`limits`]): past the bound the answer is a 503 with
//! `Retry-After`, at once. Connections are accepted, bounded per peer, timed out and
//! stopped by [`listen`] (whose errors of the HTTP layer get JSON bodies in `head_errors`);
//! `/readyz` says whether the server can decide now, `/metrics` what it has done
//! ([`metrics`]), and `/v1/openapi.json` describes every route ([`openapi`]).
//!
//! Where things are: `config` and `start` (from flags to a running server), `server`
//! (shared state and the router), `access` (bearer tokens), `routes` (one module per
//! resource), `body` and `error` (what requests bring and errors answer), `reload`
//! (loading and hot reload), `signals` and `shadow`; `console` the web console (`/console`),
//! plain files compiled in, built on the public routes alone.

pub mod alone;
pub mod auth;
pub mod console;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod openapi;

mod access;
mod body;
mod config;
mod error;
mod head_errors;
mod reload;
mod routes;
mod server;
mod shadow;
mod signals;
mod start;
pub mod upstream;
pub mod venues;

pub use access::OPEN_ROUTES;
pub use config::{Config, LedgerSource, MOST_IN_FLIGHT, Validated};
pub use error::ApiError;
pub use reload::{load_programs, watch};
pub use server::{DEFAULT_BODY_LIMIT, Options, Server};

/// How often a server applies its programs' `[retention]` by default (`--compact-every`).
pub const DEFAULT_COMPACT_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
pub use shadow::follow;
pub use start::StartError;
