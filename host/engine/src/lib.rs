//! cardrules: a WebAssembly rules engine for municipal benefit-card programs.
//!
//! Each program (a city's scheme) ships its rules as a policy — a Wasm component plus a
//! TOML manifest and catalogue. A [`Host`] loads the programs under a policies directory,
//! decides [`Request`]s by running the program's policy in a fresh, bounded sandbox with a
//! read-only view of the [`Ledger`], and commits the allowed decision's effects atomically.
//! [`suite`] runs the TOML policy suites that prove a program's rules.

mod calendar;
mod error;
mod host;
mod imports;
pub mod inputs;
pub mod ledger;
pub mod loader;
mod manifest;
mod model;
pub mod observe;
pub mod replay;
pub mod sample;
mod sandbox;
mod schema;
pub mod shadow;
pub mod signing;
pub mod suite;
mod world;

pub use calendar::{Calendar, Period};
pub use error::{Error, Result, Source};
pub use host::{CardView, Host, POLICY_ERROR, Program, UNKNOWN_CARD, UNKNOWN_OFFER};
pub use ledger::{Journal, Ledger, MemoryLedger};
pub use manifest::{Limits, Manifest, program_dirs};
pub use model::{
    AttributeValue, CardState, Decision, Holder, Offer, PolicyRef, Request, parse_instant,
};
pub use sandbox::{CompiledPolicy, PolicyInfo, Sandbox};
pub use schema::{Declaration, OFFER_FIELDS, Schema, ValueType};
pub use signing::Trust;
