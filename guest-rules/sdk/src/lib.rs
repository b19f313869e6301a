//! The guest SDK for cardrules policies: the bindings to the `cardrules:policy` world
//! (version 0.2.0) plus the few helpers every policy needs, so that a policy crate reads
//! like its rule book — and explains its decisions with no extra code.
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
//!         decide(&req, match req.action.as_str() {
//!             "redeem" => redeem(&req),
//!             _ => Err(deny(UNKNOWN_ACTION)),
//!         })
//!     }
//! }
//!
//! fn redeem(req: &Request) -> Rule {
//!     let offer = required(&req.offer)?;
//!     // 1. A rule: recorded as the check `card-active`, denied with `card-inactive`.
//!     check("card-active", req.holder.state == CardState::Active, "card-inactive")?;
//!     // 6. A counting rule: visits this local year against the offer's yearly limit.
//!     if let Some(limit) = offer.attr_int("yearly-limit") {
//!         let card = Some(req.holder.card.as_str());
//!         let used = ledger::count_in(card, "visits", Period::Year, req.at);
//!         let until = Until::EndOf(Period::Year, req.at);
//!         within("yearly-limit", "quota-exhausted", used, limit, until)?;
//!     }
//!     Ok(allow().admitted(req.party).price(0).count("visits", 1))
//! }
//!
//! export_policy!(Bergen);
//! ```
//!
//! Rules are checked in the order they are written: [`ensure`], [`check`], [`within`] and
//! the other rule helpers return `Err` with a denied decision, so `?` stops at the first
//! failing rule and it decides, as the municipal rule books say.
//!
//! # Explained decisions
//!
//! Each rule helper also records a *check* (world 0.2.0's `check` record): the rule's
//! name, whether it passed, the reason it denies with and, for a counting rule, the
//! numbers. [`decide`] attaches the recorded checks, in order, to the decision when the
//! request asks to `explain`, and clears the recorder either way. An explained decision
//! of `redeem` above, for a holder with 3 of 3 visits used this year, reads:
//!
//! ```text
//! allow = false, reason = "quota-exhausted", checks = [
//!   { rule = "card-active",  passed = true,  reason = "card-inactive" },
//!   { rule = "yearly-limit", passed = false, reason = "quota-exhausted",
//!     used = 3, limit = 3, until = <next 1 January, local> },
//! ]
//! ```
//!
//! - [`ensure`]`(holds, reason)` is a rule named after its reason; [`check`]`(rule, holds,
//!   reason)` names it. [`present`]`(rule, option, reason)` is a rule that a value exists,
//!   and gives the value.
//! - [`within`]`(rule, reason, used, limit, until)` passes when `used < limit` (room for
//!   one more); [`within_amount`]`(rule, reason, used, amount, limit, until)` when `used +
//!   amount <= limit`; [`at_most`]`(rule, reason, used, limit, until)` when `used <=
//!   limit`; [`check_counted`] takes the condition and the numbers as they are. `used`
//!   must be exactly a number the host answered during the evaluation (a `ledger` read
//!   such as `count-in` or `balance`) or the request's `amount`, and `until` a window end
//!   of the host: [`Until::EndOf`]`(period, at)`, which the SDK asks the host for
//!   (`calendar::period_of`) only when the decision is explained. The host refuses any
//!   other number as a `policy-error`: never compute them in the policy.
//! - [`deny`]`(reason)` and [`refuse`]`(rule, reason)` give a denial for a rule that always
//!   fails (an unknown action, an action that is never allowed), recorded as a failed
//!   check; [`required`] records a failed `bad-request` check when the field is missing.
//! - A denied decision's reason is that of its first failed check, and an allowed decision
//!   has none: the host refuses an explanation that says otherwise. So let a rule's `Err`
//!   end the action (`?`), and use plain `if`s, not rule helpers, for conditions that do
//!   not deny (a price, an optional effect).
//!
//! When the request does not ask to explain, a rule costs a push of a few integers onto a
//! static list: no strings are built and the host is not asked for window ends.
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

mod explain;
#[cfg(target_arch = "wasm32")]
mod runtime;

pub use explain::{
    Outcome, Quantity, Until, at_most, check, check_counted, decide, ensure, present, refuse,
    within, within_amount,
};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit/0.2.0",
        world: "cardrules:policy/policy@0.2.0",
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
    Attribute, CardState, Check, Date, Decision, Effect, Holder, Instant, LocalTime, Lot, Offer,
    Period, PolicyInfo, Request, Tally, Transfer, Units, Value, Window,
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
        AttributesExt, BAD_REQUEST, CardState, Check, Date, Decision, DecisionExt, Effect,
        HolderExt, Instant, LocalTime, Lot, OK, Offer, Period, Policy, PolicyInfo, Request, Rule,
        Tally, Transfer, UNKNOWN_ACTION, Units, Until, Value, Window, age_on, allow, at_most,
        calendar, check, check_counted, config_int, config_text, decide, deny, ensure,
        export_policy, ledger, policy_info, present, refuse, required, within, within_amount,
    };
    pub use alloc::boxed::Box;
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;
}

/// An allowed decision with reason `ok`, nobody admitted, no price, no effects and no
/// checks yet ([`decide`] adds the recorded checks when the request asks to explain).
pub fn allow() -> Decision {
    Decision {
        allow: true,
        reason: OK.to_string(),
        admitted: 0,
        price: None,
        notes: Vec::new(),
        effects: Vec::new(),
        checks: Vec::new(),
    }
}

/// A denied decision with `reason` and no check of its own: for an action that is always
/// refused (an unknown action, a ticket that is never refunded), where there is no rule
/// that could have held. Coverage counts it among the reasons denied. See [`refuse`] to
/// record a failed check.
pub fn deny(reason: &'static str) -> Decision {
    denial(reason)
}

/// A denied decision with `reason`, recording nothing: the `Err` of the rule helpers,
/// which record their own check.
pub(crate) fn denial(reason: &str) -> Decision {
    Decision {
        allow: false,
        reason: reason.to_string(),
        admitted: 0,
        price: None,
        notes: Vec::new(),
        effects: Vec::new(),
        checks: Vec::new(),
    }
}

/// The value of an optional request field, or a `bad-request` denial when it is missing
/// (the request's shape, not a rule: no check is recorded; see [`present`] for a field a
/// rule is about).
pub fn required<T: Clone>(field: &Option<T>) -> Result<T, Decision> {
    field.clone().ok_or_else(|| deny(BAD_REQUEST))
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
