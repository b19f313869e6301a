//! The guest SDK for cardrules policies: the bindings to the `cardrules:policy` world plus
//! the few helpers every policy needs, so that a policy crate reads like its rule book.
//!
//! A policy implements [`Policy`] and exports it with [`export_policy!`]:
//!
//! ```ignore
//! use cardrules_sdk::prelude::*;
//!
//! struct Bergen;
//!
//! impl Policy for Bergen {
//!     fn describe() -> PolicyInfo { /* program, version, actions, reasons */ }
//!     fn evaluate(req: Request) -> Decision {
//!         match req.action.as_str() {
//!             "redeem" => decide(redeem(&req)),
//!             _ => deny(UNKNOWN_ACTION),
//!         }
//!     }
//! }
//!
//! fn redeem(req: &Request) -> Rule {
//!     ensure(req.holder.state == CardState::Active, "card-inactive")?;
//!     Ok(allow().admitted(req.party).price(0))
//! }
//!
//! export_policy!(Bergen);
//! ```
//!
//! Rules are checked in the order they are written: [`ensure`] returns early with a denied
//! decision, so the first failing rule decides, as the municipal rule books say.
//!
//! Policies are `#![no_std]`: a policy imports its world and nothing else — no WASI, so
//! no clock, randomness, files or streams, and the host gives it no WASI context. The SDK
//! supplies what `std` would have: an allocator, a panic handler whose message reaches the
//! host (through the world's `diagnostics` import) and is shown in the `policy-error`, and
//! `String`, `Vec`, `Box`, `format!` and `vec!` in the [`prelude`]. A crate that links
//! `std` gets WASI imports and is refused at load.

#![no_std]

extern crate alloc;
// The generated bindings name their runtime by this crate's path, so that policy crates
// need no dependency on wit-bindgen of their own.
extern crate self as cardrules_sdk;

use alloc::string::{String, ToString};
use alloc::vec::Vec;

#[cfg(target_arch = "wasm32")]
mod runtime;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "cardrules:policy/policy@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_policy",
        default_bindings_module: "cardrules_sdk::bindings",
        runtime_path: "cardrules_sdk::bindings::__rt",
    });

    #[doc(hidden)]
    pub use wit_bindgen::rt as __rt;
}

pub use bindings::Guest as Policy;
pub use bindings::cardrules::policy::calendar;
pub use bindings::cardrules::policy::ledger;
pub use bindings::cardrules::policy::types::{
    Attribute, CardState, Date, Decision, Effect, Holder, Instant, LocalTime, Lot, Offer, Period,
    PolicyInfo, Request, Tally, Transfer, Units, Value, Window,
};
pub use bindings::export_policy;

/// The reason a policy gives for an action it does not know.
pub const UNKNOWN_ACTION: &str = "unknown-action";
/// The reason a policy gives when a field the action needs is missing or out of range.
pub const BAD_REQUEST: &str = "bad-request";
/// The reason of every allowed decision that has no more specific one.
pub const OK: &str = "ok";

/// The outcome of checking an action's rules: `Err` carries the denial of the first rule
/// that failed, so that `?` stops at it.
pub type Rule = Result<Decision, Decision>;

/// Everything a policy crate usually needs, in one `use`.
pub mod prelude {
    pub use crate::{
        AttributesExt, BAD_REQUEST, CardState, Date, Decision, DecisionExt, Effect, HolderExt,
        Instant, LocalTime, Lot, OK, Offer, Period, Policy, PolicyInfo, Request, Rule, Tally,
        Transfer, UNKNOWN_ACTION, Units, Value, Window, age_on, allow, calendar, config_int,
        config_text, decide, deny, ensure, export_policy, ledger, policy_info, required,
    };
    pub use alloc::boxed::Box;
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;
}

/// An allowed decision with reason `ok`, nobody admitted, no price and no effects yet.
pub fn allow() -> Decision {
    Decision {
        allow: true,
        reason: OK.to_string(),
        admitted: 0,
        price: None,
        notes: Vec::new(),
        effects: Vec::new(),
    }
}

/// A denied decision with `reason`.
pub fn deny(reason: &str) -> Decision {
    Decision {
        allow: false,
        reason: reason.to_string(),
        admitted: 0,
        price: None,
        notes: Vec::new(),
        effects: Vec::new(),
    }
}

/// Passes when `rule_holds`, else stops the action with a denial for `reason`.
pub fn ensure(rule_holds: bool, reason: &str) -> Result<(), Decision> {
    if rule_holds {
        Ok(())
    } else {
        Err(deny(reason))
    }
}

/// The value of an optional request field, or a `bad-request` denial when it is missing.
pub fn required<T: Clone>(field: &Option<T>) -> Result<T, Decision> {
    field.clone().ok_or_else(|| deny(BAD_REQUEST))
}

/// The decision of a checked action, allowed or denied.
pub fn decide(rule: Rule) -> Decision {
    rule.unwrap_or_else(|denied| denied)
}

/// Builds the answer of `describe`.
pub fn policy_info(program: &str, version: &str, actions: &[&str], reasons: &[&str]) -> PolicyInfo {
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    PolicyInfo {
        program: program.to_string(),
        version: version.to_string(),
        actions: strings(actions),
        reasons: strings(reasons),
    }
}

/// Builder methods for allowed decisions.
pub trait DecisionExt {
    /// Sets the reason of an allowed decision (default `ok`).
    fn reason(self, reason: &str) -> Self;
    /// Sets how many persons are admitted.
    fn admitted(self, persons: u32) -> Self;
    /// Sets what the holder pays, in minor units.
    fn price(self, minor_units: i64) -> Self;
    /// Adds a note for the cashier or the caller.
    fn note(self, note: &str) -> Self;
    /// Adds an effect to commit.
    fn effect(self, effect: Effect) -> Self;
    /// Records `amount` under `counter` for the acting card.
    fn count(self, counter: &str, amount: u64) -> Self;
    /// Grants `amount` units of `asset`, optionally expiring.
    fn grant(self, asset: &str, amount: i64, expires: Option<Instant>) -> Self;
    /// Consumes `amount` units of `asset`, earliest expiry first.
    fn consume(self, asset: &str, amount: i64) -> Self;
}

impl DecisionExt for Decision {
    fn reason(mut self, reason: &str) -> Self {
        self.reason = reason.to_string();
        self
    }
    fn admitted(mut self, persons: u32) -> Self {
        self.admitted = persons;
        self
    }
    fn price(mut self, minor_units: i64) -> Self {
        self.price = Some(minor_units);
        self
    }
    fn note(mut self, note: &str) -> Self {
        self.notes.push(note.to_string());
        self
    }
    fn effect(mut self, effect: Effect) -> Self {
        self.effects.push(effect);
        self
    }
    fn count(self, counter: &str, amount: u64) -> Self {
        self.effect(Effect::Count(Tally {
            counter: counter.to_string(),
            amount,
        }))
    }
    fn grant(self, asset: &str, amount: i64, expires: Option<Instant>) -> Self {
        self.effect(Effect::Grant(Lot {
            asset: asset.to_string(),
            amount,
            expires,
        }))
    }
    fn consume(self, asset: &str, amount: i64) -> Self {
        self.effect(Effect::Consume(Units {
            asset: asset.to_string(),
            amount,
        }))
    }
}

/// Typed look-ups in a list of attributes (of an offer or a holder).
///
/// The host checks every attribute against the schema of the program's manifest
/// (`[schema.offer]` and `[schema.holder]` in `policy.toml`): an undeclared key, a value
/// of another type than the one declared, or an integer outside its `min`/`max` or text
/// outside its `one-of` is refused when the catalogue is loaded (offers of a suite: when
/// the suite runs) and when a holder is registered. So a declared attribute arrives with
/// its declared type, and `None` from a typed reader means the attribute is absent — a
/// typo does not turn into the rule's default. Text that parses as an integer or boolean
/// still counts, for holders a ledger kept from before the host checked types.
pub trait AttributesExt {
    /// The attribute's raw value.
    fn attr(&self, key: &str) -> Option<&Value>;
    /// The attribute as an integer; text that parses as one counts too.
    fn attr_int(&self, key: &str) -> Option<i64> {
        match self.attr(key)? {
            Value::Integer(n) => Some(*n),
            Value::Text(s) => s.trim().parse().ok(),
            Value::Boolean(_) => None,
        }
    }
    /// The attribute as a boolean; the text `true`/`false` counts too.
    fn attr_bool(&self, key: &str) -> Option<bool> {
        match self.attr(key)? {
            Value::Boolean(b) => Some(*b),
            Value::Text(s) => s.trim().parse().ok(),
            Value::Integer(_) => None,
        }
    }
    /// The attribute as text.
    fn attr_text(&self, key: &str) -> Option<&str> {
        match self.attr(key)? {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl AttributesExt for [Attribute] {
    fn attr(&self, key: &str) -> Option<&Value> {
        self.iter().find(|a| a.key == key).map(|a| &a.value)
    }
}

impl AttributesExt for Offer {
    fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.attr(key)
    }
}

impl AttributesExt for Holder {
    fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.attr(key)
    }
}

/// Facts about a holder.
pub trait HolderExt {
    /// Whether the holder carries `status`.
    fn has_status(&self, status: &str) -> bool;
    /// Whole years of age on `day`.
    fn age_on(&self, day: &Date) -> i32;
}

impl HolderExt for Holder {
    fn has_status(&self, status: &str) -> bool {
        self.statuses.iter().any(|s| s == status)
    }
    fn age_on(&self, day: &Date) -> i32 {
        age_on(&self.birth_date, day)
    }
}

/// Whole years between `birth` and `day`: the age on `day` of someone born on `birth`.
/// Someone born on 29 February turns a year older on 1 March in common years.
pub fn age_on(birth: &Date, day: &Date) -> i32 {
    let had_birthday = (day.month, day.day) >= (birth.month, birth.day);
    day.year - birth.year - if had_birthday { 0 } else { 1 }
}

/// An integer from the manifest's `[config]`, or `default` when the key is not set.
///
/// The host checks `[config]` when it loads the manifest, against `[schema.config]`: a
/// key that is not declared there, a value that is not of its declared type, an integer
/// outside its `min`/`max`, and a `required` key left out are refused and the program
/// does not load. So for a key declared `type = "integer"` this never falls back to
/// `default` because of a typo; only an absent (optional) key gives `default`.
pub fn config_int(key: &str, default: i64) -> i64 {
    ledger::config(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Text from the manifest's `[config]`, or `default` when the key is not set.
///
/// As for [`config_int`], the host refuses at load a value that is not of the type
/// declared for the key in `[schema.config]` (or not one of its `one-of` words), so for a
/// key declared `type = "text"` only an absent (optional) key gives `default`.
pub fn config_text(key: &str, default: &str) -> String {
    ledger::config(key).unwrap_or_else(|| default.to_string())
}
