//! cardrules: a WebAssembly rules engine for municipal benefit-card programs.
//!
//! Each program (a city's scheme) ships its rules as a policy — a Wasm component plus a
//! TOML manifest and catalogue. A [`Host`] loads the programs under a policies directory
//! ([`loader`], [`Program::load`]), decides [`Request`]s by running the program's policy
//! in a fresh, bounded [`Sandbox`] with a read-only view of the [`Ledger`], and commits
//! the allowed decision's effects atomically. [`suite`] runs the TOML policy suites that
//! prove a program's rules; [`replay`] and [`shadow`] run other versions of the rules
//! against real history.
//!
//! The modules, from the bottom up: `model` (the contract's data), `calendar`, `program`
//! (files, manifest, schema, signing, loading), `policy` (wasmtime, limits, faults, one
//! folder per world version), `ledger` (journal, state, group commit), `decide` (the
//! pipeline), `host`, and the tools built on deciding.

pub mod allowance;
mod attributes;
mod calendar;
pub mod coverage;
mod decide;
mod error;
pub mod history;
mod host;
pub mod ids;
pub mod inputs;
pub mod ledger;
pub mod loader;
mod model;
pub mod observe;
pub mod offline;
mod policy;
mod program;
pub mod replay;
pub mod retention;
pub mod sample;
pub mod shadow;
pub mod suite;
pub mod timing;
pub mod why;

pub use attributes::Setter;
pub use calendar::{Calendar, Period};
pub use error::{Error, Result, Source};
pub use host::{CardView, Erasure, Export, Held, Host, Registration};
pub use ledger::{Journal, Ledger, MemoryLedger};
pub use model::{
    AttributeValue, CardState, Check, Decision, Holder, INSTANTS, MAX_OFFSET_SECONDS, Offer,
    PolicyRef, Read, Request, parse_instant,
};
pub use policy::{
    CompiledPolicy, FaultKind, Limits, MAX_MEMORY_BYTES, PolicyFault, PolicyInfo, Sandbox,
};
pub use program::files::program_dirs;
pub use program::manifest::{Manifest, ProgramBytes, SIGNATURE_FILE, read_program_bytes};
pub use program::schema::{Declaration, OFFER_FIELDS, Schema, ValueType};
pub use program::signing::{self, Trust};
pub use program::{
    ERASED, POLICY_ERROR, Program, RESTRICTED, Sources, UNKNOWN_CARD, UNKNOWN_OFFER, bundle_digest,
};
pub use timing::{Clock, FixedClock, Reporter, SystemClock, TimeBounds};
