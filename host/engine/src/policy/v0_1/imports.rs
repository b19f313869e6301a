//! The imports of world 0.1.0 — `ledger`, `calendar` and `diagnostics` — linked by hand to
//! the host calls (`policy::calls`), on whatever store state `project` picks them out of,
//! as wasmtime's component example links a host type by a projecting closure. Each
//! function converts the world's types to the engine's and back; the linker checks these
//! signatures against every component's imports when it is bound.

use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

use super::{holder, local_time, period, wit};
use crate::policy::calls::{Calls, charged};

/// Links every import of the world into `linker`, each running on `project(state)`, under
/// the interface names of world `version` (0.1.0, or a later version whose imports are
/// these).
pub(super) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut Calls,
    version: &str,
) -> wasmtime::Result<()> {
    let mut ledger = linker.instance(&format!("cardrules:policy/ledger@{version}"))?;
    ledger.func_wrap(
        "count-in",
        move |store: StoreContextMut<'_, T>,
              (card, counter, p, at): (Option<String>, String, wit::Period, wit::Instant)| {
            charged(store, project, |c| {
                c.count_in(card.as_deref(), &counter, period(p), at)
            })
            .map(|n| (n,))
        },
    )?;
    ledger.func_wrap(
        "count-within",
        move |store: StoreContextMut<'_, T>,
              (card, counter, span): (Option<String>, String, wit::Window)| {
            charged(store, project, |c| {
                c.count_within(card.as_deref(), &counter, span.start, span.end)
            })
            .map(|n| (n,))
        },
    )?;
    ledger.func_wrap(
        "last-use",
        move |store: StoreContextMut<'_, T>, (card, counter): (String, String)| {
            charged(store, project, |c| c.last_use(&card, &counter)).map(|at| (at,))
        },
    )?;
    ledger.func_wrap(
        "balance",
        move |store: StoreContextMut<'_, T>, (card, asset, at): (String, String, wit::Instant)| {
            charged(store, project, |c| c.balance(&card, &asset, at)).map(|units| (units,))
        },
    )?;
    ledger.func_wrap(
        "find-holder",
        move |store: StoreContextMut<'_, T>, (card,): (String,)| {
            charged(store, project, |c| c.find_holder(&card, holder)).map(|h| (h,))
        },
    )?;
    ledger.func_wrap(
        "config",
        move |store: StoreContextMut<'_, T>, (key,): (String,)| {
            charged(store, project, |c| Ok(c.config(&key))).map(|value| (value,))
        },
    )?;

    let mut calendar = linker.instance(&format!("cardrules:policy/calendar@{version}"))?;
    calendar.func_wrap(
        "local",
        move |store: StoreContextMut<'_, T>, (at,): (wit::Instant,)| {
            charged(store, project, |c| c.local(at)).map(|t| (local_time(t),))
        },
    )?;
    calendar.func_wrap(
        "period-of",
        move |store: StoreContextMut<'_, T>, (p, at): (wit::Period, wit::Instant)| {
            charged(store, project, |c| c.period_of(period(p), at))
                .map(|(start, end)| (wit::Window { start, end },))
        },
    )?;
    calendar.func_wrap(
        "add-months",
        move |store: StoreContextMut<'_, T>, (at, months): (wit::Instant, i32)| {
            charged(store, project, |c| c.add_months(at, months)).map(|at| (at,))
        },
    )?;

    let mut diagnostics = linker.instance(&format!("cardrules:policy/diagnostics@{version}"))?;
    diagnostics.func_wrap(
        "panicked",
        move |store: StoreContextMut<'_, T>, (message,): (String,)| {
            charged(store, project, |c| {
                c.panicked(&message);
                Ok(())
            })
        },
    )?;
    Ok(())
}
