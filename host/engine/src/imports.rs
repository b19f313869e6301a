//! The host side of the policy world's imports: what a policy may ask while it runs —
//! its program's ledger, read through a read-only view, its config, and the calendar —
//! kept apart from the sandbox that owns the engine, the limits and the store.
//!
//! Every import costs the host far more than the few wasm instructions that call it, so
//! each charges fuel in proportion to its real cost ([`cost`]): a constant per call, plus
//! per byte of the text it copies and per entry it sums. The charge is taken from the
//! store's fuel before the call returns to the guest ([`settle`]), so a policy looping on
//! host calls runs out of fuel long before its deadline.
//!
//! The imports are linked by hand ([`add_to_linker`]) rather than through the generated
//! `add_to_linker`: a function linked by hand is given the store, so it can take its fuel
//! there and then. The alternative, a store call hook, runs on every transition between
//! host and guest (each string of a request handed to the guest is one), and newer
//! wasmtime releases no longer let a hook change the fuel. The generated `Host` traits are
//! still what each import calls, so the signatures stay the generated ones, and the linker
//! checks them against every component's imports when it is compiled.

use wasmtime::component::Linker;
use wasmtime::{StoreContextMut, Trap};

use crate::calendar::Calendar;
use crate::error::Result;
use crate::ledger::View;
use crate::sandbox::{GuestState, MAX_SAID_CHARS};
use crate::world::{self, cardrules, wit};

/// The fuel each import is charged, from measurements (see `tests/hostile.rs`,
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

/// Fuel owed for host calls, taken from the store when the call returns.
#[derive(Debug, Default)]
pub(crate) struct HostFuel {
    due: u64,
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

/// The host call failure behind `error`, if a host call is what failed.
pub(crate) fn host_call_failure(error: &wasmtime::Error) -> Option<String> {
    error
        .downcast_ref::<HostCallFailed>()
        .map(ToString::to_string)
}

/// Takes the fuel the host call under way owes from the store, as it returns to the
/// guest; a guest that cannot pay runs out of fuel there.
fn settle(store: &mut StoreContextMut<'_, GuestState>) -> wasmtime::Result<()> {
    let due = std::mem::take(&mut store.data_mut().host_fuel.due);
    if due == 0 {
        return Ok(());
    }
    let left = store.get_fuel()?;
    if left < due {
        store.set_fuel(0)?;
        return Err(Trap::OutOfFuel.into());
    }
    store.set_fuel(left - due)?;
    Ok(())
}

/// Runs one import on the store's state, then takes the fuel it owes (also when it failed).
fn charged<R>(
    mut store: StoreContextMut<'_, GuestState>,
    call: impl FnOnce(&mut GuestState) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let result = call(store.data_mut());
    settle(&mut store)?;
    result
}

/// Links the policy world's imports — `ledger`, `calendar` and `diagnostics`, each calling
/// its generated `Host` trait method on the store's [`GuestState`] — and charges each
/// call's fuel as it returns.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    use cardrules::policy::{
        calendar::Host as Calendar, diagnostics::Host as _, ledger::Host as _,
    };
    type Store<'a> = StoreContextMut<'a, GuestState>;

    let mut ledger = linker.instance("cardrules:policy/ledger@0.1.0")?;
    ledger.func_wrap(
        "count-in",
        |store: Store<'_>,
         (card, counter, period, at): (Option<String>, String, wit::Period, wit::Instant)| {
            charged(store, |s| s.count_in(card, counter, period, at)).map(|n| (n,))
        },
    )?;
    ledger.func_wrap(
        "count-within",
        |store: Store<'_>, (card, counter, span): (Option<String>, String, wit::Window)| {
            charged(store, |s| s.count_within(card, counter, span)).map(|n| (n,))
        },
    )?;
    ledger.func_wrap(
        "last-use",
        |store: Store<'_>, (card, counter): (String, String)| {
            charged(store, |s| s.last_use(card, counter)).map(|at| (at,))
        },
    )?;
    ledger.func_wrap(
        "balance",
        |store: Store<'_>, (card, asset, at): (String, String, wit::Instant)| {
            charged(store, |s| s.balance(card, asset, at)).map(|units| (units,))
        },
    )?;
    ledger.func_wrap("find-holder", |store: Store<'_>, (card,): (String,)| {
        charged(store, |s| s.find_holder(card)).map(|holder| (holder,))
    })?;
    ledger.func_wrap("config", |store: Store<'_>, (key,): (String,)| {
        charged(store, |s| s.config(key)).map(|value| (value,))
    })?;

    let mut calendar = linker.instance("cardrules:policy/calendar@0.1.0")?;
    calendar.func_wrap("local", |store: Store<'_>, (at,): (wit::Instant,)| {
        charged(store, |s| s.local(at)).map(|local| (local,))
    })?;
    calendar.func_wrap(
        "period-of",
        |store: Store<'_>, (period, at): (wit::Period, wit::Instant)| {
            charged(store, |s| Calendar::period_of(s, period, at)).map(|window| (window,))
        },
    )?;
    calendar.func_wrap(
        "add-months",
        |store: Store<'_>, (at, months): (wit::Instant, i32)| {
            charged(store, |s| s.add_months(at, months)).map(|at| (at,))
        },
    )?;

    let mut diagnostics = linker.instance("cardrules:policy/diagnostics@0.1.0")?;
    diagnostics.func_wrap("panicked", |store: Store<'_>, (message,): (String,)| {
        charged(store, |s| s.panicked(message))
    })?;
    Ok(())
}

fn bytes(texts: &[&str]) -> u64 {
    texts.iter().map(|t| t.len() as u64).sum::<u64>() * cost::PER_BYTE
}

impl GuestState {
    /// Owes `fuel` for the host call under way.
    fn charge(&mut self, fuel: u64) {
        self.host_fuel.due = self.host_fuel.due.saturating_add(fuel);
    }

    /// Reads the program's ledger, charging for the entries the read goes through.
    fn read<T>(
        &mut self,
        import: &'static str,
        entries: impl FnOnce(&dyn View) -> u64,
        read: impl FnOnce(&dyn View) -> T,
    ) -> wasmtime::Result<T> {
        self.charge(cost::LEDGER);
        match self.view.as_deref() {
            Some(view) => {
                let work = entries(view).saturating_mul(cost::PER_ENTRY);
                let answer = read(view);
                self.charge(work);
                Ok(answer)
            }
            None => Err(wasmtime::Error::new(HostCallFailed {
                import,
                why: "the ledger cannot be read during `describe`".into(),
            })),
        }
    }

    fn calendar<T>(
        &mut self,
        import: &'static str,
        compute: impl FnOnce(&Calendar) -> Result<T>,
    ) -> wasmtime::Result<T> {
        self.charge(cost::CALENDAR);
        compute(&self.context.calendar).map_err(|e| {
            wasmtime::Error::new(HostCallFailed {
                import,
                why: e.to_string(),
            })
        })
    }
}

impl cardrules::policy::types::Host for GuestState {}

impl cardrules::policy::diagnostics::Host for GuestState {
    /// Keeps the first thing a guest says before it traps (its panic message), cut short:
    /// the `policy-error` that follows shows it.
    fn panicked(&mut self, message: String) -> wasmtime::Result<()> {
        if self.said.is_none() {
            let message = message.trim();
            let mut said: String = message.chars().take(MAX_SAID_CHARS).collect();
            if said.len() < message.len() {
                said.push('…');
            }
            self.said = Some(said);
        }
        Ok(())
    }
}

impl cardrules::policy::ledger::Host for GuestState {
    fn count_in(
        &mut self,
        card: Option<String>,
        counter: String,
        period: wit::Period,
        at: wit::Instant,
    ) -> wasmtime::Result<u64> {
        self.charge(cost::CALL + bytes(&[card.as_deref().unwrap_or(""), &counter]));
        let (from, to) = self.calendar("ledger.count-in", |c| {
            c.period_of(world::period(period), at)
        })?;
        let card = card.as_deref();
        self.read(
            "ledger.count-in",
            |view| view.count_entries(card, &counter, from, to),
            |view| view.count(card, &counter, from, to),
        )
    }

    fn count_within(
        &mut self,
        card: Option<String>,
        counter: String,
        span: wit::Window,
    ) -> wasmtime::Result<u64> {
        self.charge(cost::CALL + bytes(&[card.as_deref().unwrap_or(""), &counter]));
        let card = card.as_deref();
        self.read(
            "ledger.count-within",
            |view| view.count_entries(card, &counter, span.start, span.end),
            |view| view.count(card, &counter, span.start, span.end),
        )
    }

    fn last_use(
        &mut self,
        card: String,
        counter: String,
    ) -> wasmtime::Result<Option<wit::Instant>> {
        self.charge(cost::CALL + bytes(&[&card, &counter]));
        self.read(
            "ledger.last-use",
            |_| 0,
            |view| view.last_use(&card, &counter),
        )
    }

    fn balance(&mut self, card: String, asset: String, at: wit::Instant) -> wasmtime::Result<i64> {
        self.charge(cost::CALL + bytes(&[&card, &asset]));
        self.read(
            "ledger.balance",
            |view| view.lot_entries(&card),
            |view| view.balance(&card, &asset, at),
        )
    }

    fn find_holder(&mut self, card: String) -> wasmtime::Result<Option<wit::Holder>> {
        self.charge(cost::CALL + bytes(&[&card]));
        let holder = self.read(
            "ledger.find-holder",
            |_| 0,
            |view| view.holder(&card).map(world::holder),
        )?;
        if let Some(holder) = &holder {
            // The holder is copied out to the guest: charge for its size.
            let text = |value: &wit::Value| match value {
                wit::Value::Text(text) => text.len(),
                _ => 8,
            };
            let size = holder.card.len()
                + holder.municipality.len()
                + holder.statuses.iter().map(String::len).sum::<usize>()
                + holder
                    .attributes
                    .iter()
                    .map(|a| a.key.len() + text(&a.value))
                    .sum::<usize>();
            self.charge(size as u64 * cost::PER_BYTE);
        }
        Ok(holder)
    }

    fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        let value = self.context.config.get(&key).cloned();
        self.charge(cost::CALL + bytes(&[&key, value.as_deref().unwrap_or("")]));
        Ok(value)
    }
}

impl cardrules::policy::calendar::Host for GuestState {
    fn local(&mut self, at: wit::Instant) -> wasmtime::Result<wit::LocalTime> {
        self.charge(cost::CALL);
        self.calendar("calendar.local", |c| c.local(at))
            .map(world::local_time)
    }

    fn period_of(
        &mut self,
        period: wit::Period,
        at: wit::Instant,
    ) -> wasmtime::Result<wit::Window> {
        self.charge(cost::CALL);
        let (start, end) = self.calendar("calendar.period-of", |c| {
            c.period_of(world::period(period), at)
        })?;
        Ok(wit::Window { start, end })
    }

    fn add_months(&mut self, at: wit::Instant, months: i32) -> wasmtime::Result<wit::Instant> {
        self.charge(cost::CALL);
        self.calendar("calendar.add-months", |c| c.add_months(at, months))
    }
}
