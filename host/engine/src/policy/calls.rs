//! What a policy may ask the host while it runs — its program's ledger, read through a
//! read-only view, its config, and the calendar — in the engine's own types, whatever
//! world version the policy was built against. Each version's `imports.rs` links its
//! generated signatures to these calls, converting its types on the way in and out.
//!
//! Every call costs the host far more than the few wasm instructions that make it, so
//! each charges fuel in proportion to its real cost ([`cost`]): a constant per call, plus
//! per byte of the text it copies and per entry it sums. The charge is taken from the
//! store's fuel before the call returns to the guest ([`charged`]), so a policy looping on
//! host calls runs out of fuel long before its deadline.
//!
//! The imports are linked by hand (`func_wrap`) rather than through generated
//! `add_to_linker` functions: a function linked by hand is given the store, so it can take
//! its fuel there and then. The alternative, a store call hook, runs on every transition
//! between host and guest, and newer wasmtime releases no longer let a hook change fuel.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::{StoreContextMut, Trap};

use serde_json::{Value, json};

use super::exchange::Witnessed;
use super::limits::Limits;
use crate::calendar::{Calendar, LocalTime, Period};
use crate::error::Result;
use crate::ledger::reads::ReadSet;
use crate::ledger::{Reader, State, View};
use crate::model::{AttributeValue, Holder};
use crate::offline::{Lens, Uncovered};

/// The fuel each call is charged, from measurements (see `tests/hostile.rs`,
/// `host_calls_cost_fuel_in_proportion_to_their_time`, and the README): on the reference
/// machine wasm runs about 1 000 fuel (instructions) per microsecond, and a `count-in`
/// call takes about 1 µs beyond the guest's own instructions, so a call is charged about
/// what the guest could have done in the time it took.
pub(crate) mod cost {
    /// Any import: the transition into the host and back, lifting and lowering.
    pub const CALL: u64 = 1_000;
    /// An import that reads the ledger (a lookup by card and counter or asset).
    pub const LEDGER: u64 = 500;
    /// An import that does calendar arithmetic in the program's time zone.
    pub const CALENDAR: u64 = 1_000;
    /// Per byte of text copied into or out of the host.
    pub const PER_BYTE: u64 = 2;
    /// Per ledger entry summed or scanned (a counter entry, a lot).
    pub const PER_ENTRY: u64 = 20;
}

/// The most of a guest's panic message kept for the `policy-error` that follows.
pub(crate) const MAX_SAID_CHARS: usize = 400;

/// What an evaluation needs besides the request: one per program, built when it loads.
pub(crate) struct Context {
    pub calendar: Calendar,
    pub config: Arc<BTreeMap<String, String>>,
    pub limits: Limits,
}

/// The program's state as lent to a policy for one evaluation.
#[allow(clippy::large_enum_variant)] // moved in and out once per evaluation: no box to allocate
pub(crate) enum Lent {
    /// Moved in by the lane's leader, which holds the state, and handed back whole.
    Owned(State),
    /// The lane's state, read for each call as it stands then (a proposal: see
    /// `ledger/commit.rs`; `ledger/reads.rs` says why reads at different moments make one
    /// consistent view when the proposal stands).
    Shared(Reader),
}

impl Lent {
    /// Runs `read` on the state.
    fn read<T>(&self, read: impl FnOnce(&dyn View) -> T) -> T {
        match self {
            Lent::Owned(state) => read(state),
            Lent::Shared(reader) => reader.read(|state, _| read(state)),
        }
    }
}

/// The host's side of a running policy: the program's state lent to it (none during
/// `describe`), its context, what it said before trapping, and the fuel its host call
/// under way owes.
pub(crate) struct Calls {
    /// Lent for the call and handed back whole; read only through [`View`] here.
    state: Option<Lent>,
    pub(crate) context: Arc<Context>,
    /// The guest's panic message, if it panicked (the `diagnostics` import), cut short.
    pub(crate) said: Option<String>,
    due: u64,
    /// What the policy read, kept only when the caller asked to explain.
    witnessed: Option<Witnessed>,
    /// The keys of the ledger the policy read, kept for a proposal (see `ledger/reads.rs`).
    keys: Option<ReadSet>,
    /// What the deciding side may use of what is lent to venues, if anything is (see
    /// `crate::offline`), and the first read it did not cover.
    pub(crate) lens: Option<Arc<Lens>>,
    pub(crate) uncovered: Option<Uncovered>,
}

/// A host call that failed: the import and why, kept as the error's source so that the
/// `policy-error` names the real cause rather than only a wasm backtrace.
#[derive(Debug)]
pub(crate) struct HostCallFailed {
    import: &'static str,
    why: String,
}

impl std::fmt::Display for HostCallFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host call `{}` failed: {}", self.import, self.why)
    }
}

impl std::error::Error for HostCallFailed {}

fn failed(import: &'static str, why: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::new(HostCallFailed {
        import,
        why: why.into(),
    })
}

/// Runs one call on the state `project` picks out of the store, then takes the fuel the
/// call owes from the store (also when it failed): a guest that cannot pay runs out of
/// fuel there.
pub(crate) fn charged<T, R>(
    mut store: StoreContextMut<'_, T>,
    project: fn(&mut T) -> &mut Calls,
    call: impl FnOnce(&mut Calls) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let calls = project(store.data_mut());
    let result = call(calls);
    let due = std::mem::take(&mut calls.due);
    if due > 0 {
        let left = store.get_fuel()?;
        if left < due {
            store.set_fuel(0)?;
            return Err(Trap::OutOfFuel.into());
        }
        store.set_fuel(left - due)?;
    }
    result
}

/// The cost of copying `texts` across the boundary.
pub(crate) fn bytes(texts: &[&str]) -> u64 {
    texts.iter().map(|t| t.len() as u64).sum::<u64>() * cost::PER_BYTE
}

impl Calls {
    pub(crate) fn new(
        state: Option<Lent>,
        context: Arc<Context>,
        explain: bool,
        keys: Option<ReadSet>,
    ) -> Calls {
        Calls {
            state,
            context,
            said: None,
            due: 0,
            witnessed: explain.then(Witnessed::default),
            keys,
            lens: None,
            uncovered: None,
        }
    }

    /// Holds a read to the lens, if there is one; keeps the first it does not cover.
    fn cover(&mut self, check: impl FnOnce(&Lens) -> Result<(), Uncovered>) {
        if let Some(lens) = &self.lens
            && self.uncovered.is_none()
            && let Err(why) = check(lens)
        {
            self.uncovered = Some(why);
        }
    }

    /// Hands the lent state back, once the policy is done, with what it read if asked:
    /// the reads as explained, and the keys read.
    pub(crate) fn into_parts(
        self,
    ) -> (
        Option<Lent>,
        Option<Witnessed>,
        Option<ReadSet>,
        Option<Uncovered>,
    ) {
        (self.state, self.witnessed, self.keys, self.uncovered)
    }

    /// Keeps a read, when explaining: `record` builds it only then.
    fn witness(&mut self, record: impl FnOnce(&mut Witnessed) -> (&'static str, Value, Value)) {
        if let Some(witnessed) = &mut self.witnessed {
            let (call, args, answer) = record(witnessed);
            witnessed.reads.push(crate::model::Read {
                call: call.to_string(),
                args,
                answer,
            });
        }
    }

    /// Owes `fuel` for the call under way.
    pub(crate) fn charge(&mut self, fuel: u64) {
        self.due = self.due.saturating_add(fuel);
    }

    /// Reads the program's ledger, charging for the entries the read goes through, and
    /// noting the key it reads under (`key`) when keys are kept. Every read of the ledger
    /// a policy makes comes through here: a proposal's read set is complete.
    fn read<T>(
        &mut self,
        import: &'static str,
        key: impl FnOnce(&mut ReadSet),
        entries: impl FnOnce(&dyn View) -> u64,
        read: impl FnOnce(&dyn View) -> T,
    ) -> wasmtime::Result<T> {
        self.charge(cost::LEDGER);
        let Some(lent) = &self.state else {
            return Err(failed(
                import,
                "the ledger cannot be read during `describe`",
            ));
        };
        if let Some(keys) = &mut self.keys {
            key(keys);
        }
        let (entries, answer) = lent.read(|view| (entries(view), read(view)));
        self.charge(entries.saturating_mul(cost::PER_ENTRY));
        Ok(answer)
    }

    fn calendar<T>(
        &mut self,
        import: &'static str,
        compute: impl FnOnce(&Calendar) -> Result<T>,
    ) -> wasmtime::Result<T> {
        self.charge(cost::CALENDAR);
        compute(&self.context.calendar).map_err(|e| failed(import, e.to_string()))
    }

    /// Keeps the first thing a guest says before it traps (its panic message), cut short:
    /// the `policy-error` that follows shows it.
    pub(crate) fn panicked(&mut self, message: &str) {
        if self.said.is_none() {
            let message = message.trim();
            let mut said: String = message.chars().take(MAX_SAID_CHARS).collect();
            if said.len() < message.len() {
                said.push('…');
            }
            self.said = Some(said);
        }
    }

    /// `ledger.count-in`: the sum of `counter` in the local `period` containing `at`.
    pub(crate) fn count_in(
        &mut self,
        card: Option<&str>,
        counter: &str,
        period: Period,
        at: i64,
    ) -> wasmtime::Result<u64> {
        self.charge(cost::CALL + bytes(&[card.unwrap_or(""), counter]));
        let (from, to) = self.calendar("ledger.count-in", |c| c.period_of(period, at))?;
        let n = self.read(
            "ledger.count-in",
            |keys| keys.count(card, counter),
            |view| view.count_entries(card, counter, from, to),
            |view| view.count(card, counter, from, to),
        )?;
        self.cover(|lens| lens.count(card, counter));
        self.witness(|w| {
            w.numbers.push(n as i64);
            w.ends.push(to);
            let args = json!({"card": card, "counter": counter, "period": period.name(), "at": instant(at), "window": [instant(from), instant(to)]});
            ("ledger.count-in", args, json!(n))
        });
        Ok(n)
    }

    /// `ledger.count-within`: the sum of `counter` within `[start, end)`.
    pub(crate) fn count_within(
        &mut self,
        card: Option<&str>,
        counter: &str,
        start: i64,
        end: i64,
    ) -> wasmtime::Result<u64> {
        self.charge(cost::CALL + bytes(&[card.unwrap_or(""), counter]));
        let n = self.read(
            "ledger.count-within",
            |keys| keys.count(card, counter),
            |view| view.count_entries(card, counter, start, end),
            |view| view.count(card, counter, start, end),
        )?;
        self.cover(|lens| lens.count(card, counter));
        self.witness(|w| {
            w.numbers.push(n as i64);
            let args =
                json!({"card": card, "counter": counter, "window": [instant(start), instant(end)]});
            ("ledger.count-within", args, json!(n))
        });
        Ok(n)
    }

    /// `ledger.last-use`: when `counter` was last recorded for `card`.
    pub(crate) fn last_use(&mut self, card: &str, counter: &str) -> wasmtime::Result<Option<i64>> {
        self.charge(cost::CALL + bytes(&[card, counter]));
        let last = self.read(
            "ledger.last-use",
            |keys| keys.count(Some(card), counter),
            |_| 0,
            |view| view.last_use(card, counter),
        )?;
        self.cover(|lens| lens.count(Some(card), counter));
        self.witness(|_| {
            let args = json!({"card": card, "counter": counter});
            ("ledger.last-use", args, json!(last.map(instant)))
        });
        Ok(last)
    }

    /// `ledger.balance`: unexpired units of `asset` held by `card` at `at`.
    pub(crate) fn balance(&mut self, card: &str, asset: &str, at: i64) -> wasmtime::Result<i64> {
        self.charge(cost::CALL + bytes(&[card, asset]));
        let mut units = self.read(
            "ledger.balance",
            |keys| keys.lots(card),
            |view| view.lot_entries(card),
            |view| view.balance(card, asset, at),
        )?;
        if let Some(lens) = &self.lens {
            match lens.balance(card, asset, units) {
                Ok(usable) => units = usable,
                Err(why) => {
                    self.uncovered.get_or_insert(why);
                }
            }
        }
        self.witness(|w| {
            w.numbers.push(units);
            let args = json!({"card": card, "asset": asset, "at": instant(at)});
            ("ledger.balance", args, json!(units))
        });
        Ok(units)
    }

    /// `ledger.find-holder`: another card's holder, converted by `convert` into the
    /// world's own type (and charged for its size, as it is copied out to the guest).
    pub(crate) fn find_holder<H>(
        &mut self,
        card: &str,
        convert: impl FnOnce(&Holder) -> H,
    ) -> wasmtime::Result<Option<H>> {
        self.charge(cost::CALL + bytes(&[card]));
        let found = self.read(
            "ledger.find-holder",
            |keys| keys.holder(card),
            |_| 0,
            |view| view.holder(card).map(|h| (holder_size(h), convert(h))),
        )?;
        let exists = found.is_some();
        self.cover(|lens| lens.holder(card, exists));
        let found = found.map(|(size, holder)| {
            self.charge(size as u64 * cost::PER_BYTE);
            holder
        });
        let exists = found.is_some();
        self.witness(|_| {
            let args = json!({ "card": card });
            ("ledger.find-holder", args, json!({ "found": exists }))
        });
        Ok(found)
    }

    /// `ledger.config`: a value of the manifest's `[config]`, as text.
    pub(crate) fn config(&mut self, key: &str) -> Option<String> {
        let value = self.context.config.get(key).cloned();
        self.charge(cost::CALL + bytes(&[key, value.as_deref().unwrap_or("")]));
        self.witness(|_| ("ledger.config", json!({ "key": key }), json!(value)));
        value
    }

    /// `calendar.local`: `at` on the program's wall clock.
    pub(crate) fn local(&mut self, at: i64) -> wasmtime::Result<LocalTime> {
        self.charge(cost::CALL);
        let local = self.calendar("calendar.local", |c| c.local(at))?;
        self.witness(|_| {
            let answer = json!({"date": local.date.to_string(), "hour": local.hour, "minute": local.minute, "weekday": local.weekday});
            ("calendar.local", json!({ "at": instant(at) }), answer)
        });
        Ok(local)
    }

    /// `calendar.period-of`: the local `period` containing `at`, as `[start, end)`.
    pub(crate) fn period_of(&mut self, period: Period, at: i64) -> wasmtime::Result<(i64, i64)> {
        self.charge(cost::CALL);
        let (start, end) = self.calendar("calendar.period-of", |c| c.period_of(period, at))?;
        self.witness(|w| {
            w.ends.push(end);
            let args = json!({"period": period.name(), "at": instant(at)});
            (
                "calendar.period-of",
                args,
                json!([instant(start), instant(end)]),
            )
        });
        Ok((start, end))
    }

    /// `calendar.add-months`: the same wall-clock time `months` later.
    pub(crate) fn add_months(&mut self, at: i64, months: i32) -> wasmtime::Result<i64> {
        self.charge(cost::CALL);
        let later = self.calendar("calendar.add-months", |c| c.add_months(at, months))?;
        self.witness(|_| {
            let args = json!({"at": instant(at), "months": months});
            ("calendar.add-months", args, json!(instant(later)))
        });
        Ok(later)
    }
}

/// An instant as an explained read shows it: RFC 3339, or the seconds if out of range.
fn instant(at: i64) -> Value {
    match jiff::Timestamp::from_second(at) {
        Ok(t) => json!(t.to_string()),
        Err(_) => json!(at),
    }
}

/// What copying a holder to the guest moves, in bytes (an integer or boolean counts 8).
fn holder_size(h: &Holder) -> usize {
    let value = |value: &AttributeValue| match value {
        AttributeValue::Text(text) => text.len(),
        _ => 8,
    };
    h.card.len()
        + h.municipality.len()
        + h.statuses.iter().map(String::len).sum::<usize>()
        + h.attributes
            .iter()
            .map(|(key, v)| key.len() + value(v))
            .sum::<usize>()
}

/// The host call failure behind `error`, if a host call is what failed.
pub(crate) fn host_call_failure(error: &wasmtime::Error) -> Option<String> {
    error
        .downcast_ref::<HostCallFailed>()
        .map(ToString::to_string)
}
