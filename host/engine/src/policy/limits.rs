//! What one evaluation of a policy may cost: the limits a manifest sets (`[limits]`), their
//! defaults, and the ceilings the host holds every manifest to.

use serde::Deserialize;

/// The most linear memory any policy may have, whatever its manifest says (the instance
/// pool reserves this much address space per slot).
pub const MAX_MEMORY_BYTES: usize = 256 << 20;

/// Default fuel per evaluation: about ten million wasm instructions. The shipped policies
/// need a few thousand; the margin is for honest policies with large catalogues.
pub const DEFAULT_FUEL: u64 = 10_000_000;
/// Default wall-clock deadline per evaluation, including ledger reads.
pub const DEFAULT_DEADLINE_MS: u64 = 500;
/// Default cap on a policy's linear memory; a policy needs a few pages.
pub const DEFAULT_MEMORY_BYTES: usize = 16 << 20;
/// Default cap on table elements (function references).
pub const DEFAULT_TABLE_ELEMENTS: usize = 10_000;
/// Default cap on the effects of one decision.
pub const DEFAULT_MAX_EFFECTS: usize = 256;
/// Default cap on the checks one explained decision may report: a rule book has a few
/// dozen rules at most, and each check is copied into the answer.
pub const DEFAULT_MAX_CHECKS: usize = 64;
/// Default cap on the size of one decision's strings (reason, notes, effects).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 << 10;

/// The most a manifest may ask for, whatever it says: a policy's limits bound what one
/// decision costs the host, so the host bounds the limits. A manifest above a ceiling is
/// refused at load.
pub const CEILING: Limits = Limits {
    // About a second of wasm on a slow core.
    fuel: 1_000_000_000,
    // A till waits no longer than this for one decision.
    deadline_ms: 2_000,
    // The sandbox's own maximum (the instance pool reserves this much per slot).
    memory_bytes: MAX_MEMORY_BYTES,
    table_elements: 100_000,
    max_effects: 4_096,
    max_checks: 1_024,
    max_output_bytes: 1 << 20,
};

/// The limits every evaluation of a program runs under (`[limits]` in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Limits {
    pub fuel: u64,
    pub deadline_ms: u64,
    pub memory_bytes: usize,
    pub table_elements: usize,
    pub max_effects: usize,
    pub max_checks: usize,
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            fuel: DEFAULT_FUEL,
            deadline_ms: DEFAULT_DEADLINE_MS,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            table_elements: DEFAULT_TABLE_ELEMENTS,
            max_effects: DEFAULT_MAX_EFFECTS,
            max_checks: DEFAULT_MAX_CHECKS,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}
