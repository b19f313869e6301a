//! The sandbox policies run in: one wasmtime engine, components compiled once, and a
//! fresh, bounded store and instance for every evaluation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{
    Component, ComponentExportIndex, Linker, TypedFunc, types::ComponentItem,
};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};

use crate::calendar::Calendar;
use crate::error::{Error, Result};
use crate::ledger::View;
use crate::manifest::Limits;
use crate::world::{self, PolicyPre, wit};

/// How often the engine's epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Instances that may be alive at once (evaluations, loads, suite runs under hot reload).
const POOL_INSTANCES: u32 = 128;
/// The most linear memory any policy may have, whatever its manifest says.
pub const MAX_MEMORY_BYTES: usize = 256 << 20;

fn pool() -> wasmtime::PoolingAllocationConfig {
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 8)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 4)
        .max_memory_size(MAX_MEMORY_BYTES)
        // A policy touches little memory per decision (its stack, the request, a few
        // allocations): resetting that much with a memset when its instance is dropped is
        // cheaper than giving the pages back to the kernel and faulting them in again on
        // the next decision (page faults, TLB shootdowns across cores).
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES / 16)
        // Where the kernel can tell which pages an instance wrote (Linux 6.7 and later,
        // `PAGEMAP_SCAN`), reset only those, not the whole resident part of the slot.
        .pagemap_scan(wasmtime::Enabled::Auto);
    pool
}

/// Memory kept mapped (reset with a memset) in a pool slot between instances.
const KEEP_RESIDENT_BYTES: usize = 512 << 10;

/// The wasm stack of an evaluation; deeper recursion traps.
const WASM_STACK_BYTES: usize = 512 * 1024;
/// The most of a guest's panic message kept for the `policy-error` that follows.
pub(crate) const MAX_SAID_CHARS: usize = 400;
/// The only imports a policy may have: its own world. No WASI at all — no clocks,
/// randomness, files, sockets or streams: policies are deterministic, and the host builds
/// no WASI context for them.
const ALLOWED_IMPORTS: &[&str] = &["cardrules:policy/"];

/// The engine and linker shared by every program.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<GuestState>,
}

/// A policy component compiled and checked, ready to be instantiated.
pub struct CompiledPolicy {
    pre: PolicyPre<GuestState>,
    /// Where `evaluate` is among the component's exports, found once at load: a decision
    /// calls it without looking it up or checking its type again.
    evaluate: ComponentExportIndex,
    /// What the policy said about itself when loaded.
    pub info: PolicyInfo,
    /// `sha256:` and the hex digest of the component's bytes.
    pub digest: String,
    /// The component's size in bytes.
    pub size: usize,
}

/// What a policy says about itself (`describe`).
#[derive(Debug, Clone)]
pub struct PolicyInfo {
    pub program: String,
    pub version: String,
    pub actions: Vec<String>,
    pub reasons: Vec<String>,
}

/// What an evaluation needs besides the request: one per program, built when it loads.
pub(crate) struct Context {
    pub calendar: Calendar,
    pub config: Arc<BTreeMap<String, String>>,
    pub limits: Limits,
}

/// The result of one evaluation; the ledger view comes back whatever happened.
pub(crate) struct Evaluated {
    pub decision: std::result::Result<wit::Decision, String>,
    pub fuel: u64,
    pub view: Box<dyn View>,
}

impl Sandbox {
    /// An engine with fuel metering and epoch deadlines, and a linker for the world;
    /// compiled components are cached on disk (wasmtime's cache, `~/.cache/wasmtime`).
    pub fn new() -> Result<Sandbox> {
        Sandbox::with_disk_cache(true)
    }

    /// As [`Sandbox::new`], with or without the on-disk cache of compiled components.
    pub fn with_disk_cache(cache: bool) -> Result<Sandbox> {
        let mut config = Config::new();
        if cache {
            match wasmtime::Cache::new(wasmtime::CacheConfig::new()) {
                Ok(cache) => {
                    config.cache(Some(cache));
                }
                Err(e) => tracing::warn!("compiled components are not cached on disk: {e:#}"),
            }
        }
        config.consume_fuel(true);
        config.epoch_interruption(true);
        // Deep recursion traps instead of exhausting the host's stack.
        config.max_wasm_stack(WASM_STACK_BYTES);
        // A pool of pre-reserved instance slots: a fresh instance per decision without an
        // mmap/munmap per decision. If the machine refuses the reservation, allocate on demand.
        let mut pooled = config.clone();
        pooled.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool()));
        let engine = match Engine::new(&pooled) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!("instance pool unavailable, allocating on demand: {e:#}");
                Engine::new(&config)
                    .map_err(|e| Error::host("cannot start wasmtime", e.into_boxed_dyn_error()))?
            }
        };

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("cardrules-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| Error::host("cannot start the epoch ticker", e))?;

        let mut linker = Linker::new(&engine);
        let link = |e: wasmtime::Error| {
            Error::host("cannot link the policy world", e.into_boxed_dyn_error())
        };
        crate::imports::add_to_linker(&mut linker).map_err(link)?;
        Ok(Sandbox { engine, linker })
    }

    /// Compiles a component, checks its imports and asks it to describe itself.
    pub(crate) fn compile(
        &self,
        bytes: &[u8],
        context: Arc<Context>,
    ) -> std::result::Result<CompiledPolicy, String> {
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| format!("not a valid component: {e}"))?;
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
            .map(|(name, _)| name.to_string())
            .collect();
        for needed in ["evaluate", "describe"] {
            if !exports.iter().any(|name| name == needed) {
                return Err(format!("component does not export `{needed}`"));
            }
        }
        let foreign: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name)
            .filter(|name| !ALLOWED_IMPORTS.iter().any(|p| name.starts_with(p)))
            .map(|name| format!("`{name}`"))
            .collect();
        if !foreign.is_empty() {
            return Err(format!(
                "component imports {}, which policies may not use (no clock, randomness, files or network; a policy imports its world only — build it `no_std` with the SDK)",
                foreign.join(", ")
            ));
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(PolicyPre::new)
            .map_err(|e| format!("component does not implement the policy world: {e:#}"))?;
        let evaluate = component
            .get_export_index(None, "evaluate")
            .ok_or("component does not export `evaluate`")?;

        let mut store = self.store(None, context);
        let info = pre
            .instantiate(&mut store)
            .and_then(|policy| policy.call_describe(&mut store))
            .map_err(|e| {
                let used = fuel_used(&store);
                format!("`describe` failed: {}", failure(&e, store.data(), used))
            })?;
        check_info(&info)?;
        Ok(CompiledPolicy {
            pre,
            evaluate,
            info: PolicyInfo {
                program: info.program,
                version: info.version,
                actions: info.actions,
                reasons: info.reasons,
            },
            digest: format!("sha256:{:x}", Sha256::digest(bytes)),
            size: bytes.len(),
        })
    }

    /// Instantiates `policy` in a fresh store, as every evaluation does, and drops it: the
    /// sandbox's fixed cost per decision, for benchmarks.
    pub fn instantiate(&self, policy: &CompiledPolicy, limits: Limits) -> Result<()> {
        let context = Arc::new(Context {
            calendar: Calendar::new("UTC").map_err(|e| Error::invalid(e.to_string()))?,
            config: Arc::default(),
            limits,
        });
        let mut store = self.store(None, context);
        policy
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .map(drop)
            .map_err(|e| Error::invalid(format!("cannot instantiate: {e}")))
    }

    fn store(&self, view: Option<Box<dyn View>>, context: Arc<Context>) -> Store<GuestState> {
        let limits = context.limits;
        let mut store = Store::new(
            &self.engine,
            GuestState {
                view,
                context,
                budget: Budget {
                    memory_bytes: limits.memory_bytes,
                    table_elements: limits.table_elements,
                    peak_memory: 0,
                    exceeded: None,
                },
                said: None,
                host_fuel: Default::default(),
            },
        );
        store.limiter(|state| &mut state.budget);
        // Neither can fail with fuel and epochs enabled in the engine's config.
        let _ = store.set_fuel(limits.fuel);
        store.set_epoch_deadline(limits.deadline_ms.div_ceil(EPOCH_TICK.as_millis() as u64) + 1);
        store.epoch_deadline_trap();
        store
    }

    /// Evaluates `request` on a fresh instance of `policy`, reading the ledger through
    /// `view` (which has no way to write), and hands the view back.
    pub(crate) fn evaluate(
        &self,
        policy: &CompiledPolicy,
        context: &Arc<Context>,
        view: Box<dyn View>,
        request: &wit::Request,
    ) -> Result<Evaluated> {
        let limits = context.limits;
        let mut store = self.store(Some(view), context.clone());
        let result = policy
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .and_then(|instance| {
                let func = instance
                    .get_func(&mut store, policy.evaluate)
                    .ok_or_else(|| wasmtime::format_err!("the instance has no `evaluate`"))?;
                // SAFETY: `PolicyPre::new` checked, when the policy was compiled, that this
                // component's `evaluate` export has exactly this type (as the generated
                // bindings do before their own `new_unchecked`); the instance is of that
                // component. Checking again on every decision cost more than its call.
                let evaluate =
                    unsafe { TypedFunc::<(&wit::Request,), (wit::Decision,)>::new_unchecked(func) };
                evaluate
                    .call(&mut store, (request,))
                    .map(|(decision,)| decision)
            });
        let fuel = fuel_used(&store);
        let decision = match result {
            Ok(decision) => check_output(decision, &limits),
            Err(e) => Err(failure(&e, store.data(), fuel)),
        };
        let view = store
            .into_data()
            .view
            .ok_or_else(|| Error::host("evaluation", "the ledger view was lost"))?;
        Ok(Evaluated {
            decision,
            fuel,
            view,
        })
    }
}

/// The longest name `describe` may give (program, version, action, reason): each is copied
/// into decisions and the ledger, so none may be large.
const MAX_NAME_BYTES: usize = 64;
/// The most actions or reasons `describe` may list.
const MAX_NAMES: usize = 256;

/// Bounds what `describe` answered.
fn check_info(info: &world::wit::PolicyInfo) -> std::result::Result<(), String> {
    let names = [("program", &info.program), ("version", &info.version)];
    for (what, name) in names {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(format!(
                "`describe` gave a {what} of {} bytes (1 to {MAX_NAME_BYTES} allowed)",
                name.len()
            ));
        }
    }
    for (what, list) in [("actions", &info.actions), ("reasons", &info.reasons)] {
        if list.len() > MAX_NAMES {
            return Err(format!(
                "`describe` listed {} {what} (at most {MAX_NAMES})",
                list.len()
            ));
        }
        if let Some(long) = list
            .iter()
            .find(|n| n.is_empty() || n.len() > MAX_NAME_BYTES)
        {
            return Err(format!(
                "`describe` listed one of its {what} with {} bytes (1 to {MAX_NAME_BYTES} allowed)",
                long.len()
            ));
        }
    }
    Ok(())
}

fn check_output(
    decision: wit::Decision,
    limits: &Limits,
) -> std::result::Result<wit::Decision, String> {
    if decision.effects.len() > limits.max_effects {
        return Err(format!(
            "decision has {} effects, more than the limit of {}",
            decision.effects.len(),
            limits.max_effects
        ));
    }
    let size = world::decision_size(&decision);
    if size > limits.max_output_bytes {
        return Err(format!(
            "decision is {size} bytes, more than the limit of {} bytes",
            limits.max_output_bytes
        ));
    }
    Ok(decision)
}

/// The fuel a store's guest has burnt so far.
fn fuel_used(store: &Store<GuestState>) -> u64 {
    store
        .data()
        .context
        .limits
        .fuel
        .saturating_sub(store.get_fuel().unwrap_or(0))
}

/// Explains why a call into the guest failed, naming the limit it hit, with the fuel it
/// used and the memory it reached.
fn failure(error: &wasmtime::Error, state: &GuestState, fuel_used: u64) -> String {
    let limits = &state.context.limits;
    let mut why = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => format!("fuel limit of {} instructions exhausted", limits.fuel),
        Some(Trap::Interrupt) => format!("deadline of {} ms exceeded", limits.deadline_ms),
        Some(Trap::StackOverflow) => format!(
            "stack overflow: recursion deeper than the {} KiB wasm stack",
            WASM_STACK_BYTES / 1024
        ),
        Some(trap) => format!("trap: {trap}"),
        None => match &state.budget.exceeded {
            Some(limit) => limit.clone(),
            // A failed host call names its real cause, not only a wasm backtrace.
            None => crate::imports::host_call_failure(error).unwrap_or_else(|| format!("{error}")),
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
    if let Some(said) = &state.said {
        why.push_str(&format!("; guest said: {said}"));
    }
    why
}

/// Caps a store's memory and tables, and remembers which cap was hit.
struct Budget {
    memory_bytes: usize,
    table_elements: usize,
    peak_memory: usize,
    exceeded: Option<String>,
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
            self.exceeded = Some(why.clone());
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
            self.exceeded = Some(why.clone());
            return Err(wasmtime::format_err!(why));
        }
        Ok(true)
    }
}

/// What a store holds while a policy runs: a read-only view of its program's ledger
/// (none during `describe`), its program's context, and its budget.
pub(crate) struct GuestState {
    pub(crate) view: Option<Box<dyn View>>,
    pub(crate) context: Arc<Context>,
    budget: Budget,
    /// The guest's panic message, if it panicked (the `diagnostics` import), cut short.
    pub(crate) said: Option<String>,
    /// Fuel owed for the host call under way (see `imports.rs`).
    pub(crate) host_fuel: crate::imports::HostFuel,
}
