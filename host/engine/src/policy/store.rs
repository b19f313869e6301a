//! A fresh, bounded store for every call into a policy: its fuel, deadline, memory and
//! table budget, the host calls it may make, and — when the call fails — which limit or
//! fault stopped it ([`failure`]).

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter, Store, Trap};

use super::calls::{self, Calls, Context, Lent};
use super::fault::{FaultKind, PolicyFault};
use crate::ledger::reads::ReadSet;

/// How often the engine's epoch advances; deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);
/// The wasm stack of an evaluation; deeper recursion traps.
pub(crate) const WASM_STACK_BYTES: usize = 512 * 1024;

/// What a store holds while a policy runs: the host calls it may make, and its budget.
pub(crate) struct GuestState {
    pub(crate) calls: Calls,
    budget: Budget,
}

impl GuestState {
    /// The host calls, as each world version's imports are linked to them.
    pub(crate) fn calls(&mut self) -> &mut Calls {
        &mut self.calls
    }
}

/// A store for one call into a policy of `context`'s program, with `state` lent to it (none
/// during `describe`), keeping what it reads if it is to `explain`, and the keys it reads
/// under in `keys` if given.
pub(crate) fn new(
    engine: &Engine,
    state: Option<Lent>,
    context: Arc<Context>,
    explain: bool,
    keys: Option<ReadSet>,
) -> Store<GuestState> {
    let limits = context.limits;
    let mut store = Store::new(
        engine,
        GuestState {
            calls: Calls::new(state, context, explain, keys),
            budget: Budget {
                memory_bytes: limits.memory_bytes,
                table_elements: limits.table_elements,
                peak_memory: 0,
                exceeded: None,
            },
        },
    );
    store.limiter(|state| &mut state.budget);
    // Neither can fail with fuel and epochs enabled in the engine's config.
    let _ = store.set_fuel(limits.fuel);
    store.set_epoch_deadline(limits.deadline_ms.div_ceil(EPOCH_TICK.as_millis() as u64) + 1);
    store.epoch_deadline_trap();
    store
}

/// The fuel a store's guest has burnt so far.
pub(crate) fn fuel_used(store: &Store<GuestState>) -> u64 {
    store
        .data()
        .calls
        .context
        .limits
        .fuel
        .saturating_sub(store.get_fuel().unwrap_or(0))
}

/// Explains why a call into the guest failed, naming the limit it hit, with the fuel it
/// used and the memory it reached.
pub(crate) fn failure(error: &wasmtime::Error, state: &GuestState, fuel_used: u64) -> PolicyFault {
    let limits = &state.calls.context.limits;
    let (kind, mut why) = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => (
            FaultKind::Fuel,
            format!("fuel limit of {} instructions exhausted", limits.fuel),
        ),
        Some(Trap::Interrupt) => (
            FaultKind::Deadline,
            format!("deadline of {} ms exceeded", limits.deadline_ms),
        ),
        Some(Trap::StackOverflow) => (
            FaultKind::Stack,
            format!(
                "stack overflow: recursion deeper than the {} KiB wasm stack",
                WASM_STACK_BYTES / 1024
            ),
        ),
        Some(trap) => (FaultKind::Trap, format!("trap: {trap}")),
        None => match &state.budget.exceeded {
            Some((kind, limit)) => (*kind, limit.clone()),
            // A failed host call names its real cause, not only a wasm backtrace.
            None => match calls::host_call_failure(error) {
                Some(failed) => (FaultKind::HostCall, failed),
                None => (FaultKind::Trap, format!("{error}")),
            },
        },
    };
    // An interrupted guest has not written back the fuel it burnt since its last call,
    // so only the memory figure is exact then.
    let fuel = match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => String::new(),
        _ => format!("fuel used {fuel_used} of {}; ", limits.fuel),
    };
    why.push_str(&format!(
        " ({fuel}memory reached {} of {} bytes)",
        state.budget.peak_memory, limits.memory_bytes
    ));
    if let Some(said) = &state.calls.said {
        why.push_str(&format!("; guest said: {said}"));
    }
    PolicyFault::new(kind, why)
}

/// Caps a store's memory and tables, and remembers which cap was hit.
struct Budget {
    memory_bytes: usize,
    table_elements: usize,
    peak_memory: usize,
    exceeded: Option<(FaultKind, String)>,
}

impl ResourceLimiter for Budget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let why = format!(
                "memory limit of {} bytes exceeded: the policy asked to grow from {current} to {desired} bytes",
                self.memory_bytes
            );
            self.exceeded = Some((FaultKind::Memory, why.clone()));
            return Err(wasmtime::format_err!(why));
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            let why = format!(
                "table limit of {} elements exceeded: the policy asked to grow from {current} to {desired}",
                self.table_elements
            );
            self.exceeded = Some((FaultKind::Table, why.clone()));
            return Err(wasmtime::format_err!(why));
        }
        Ok(true)
    }
}
