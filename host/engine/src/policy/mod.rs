//! Running policies: one wasmtime engine with an instance pool, components compiled once
//! and bound to the world version they were built against, and a fresh, bounded store and
//! instance for every evaluation.
//!
//! Each world version lives in its own folder (`v0_1/`, `v0_2/`): its bindings, its conversions to
//! and from the engine's own types ([`exchange`]), and its imports, linked to the host
//! calls every version shares ([`calls`]). Adding a version adds a folder and a line to
//! [`Bound`]; nothing outside this module sees a generated type.

mod calls;
mod exchange;
mod fault;
mod limits;
mod store;
mod v0_1;
mod v0_2;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, Store};

pub(crate) use calls::Context;
use calls::Lent;
pub use exchange::PolicyInfo;
pub(crate) use exchange::{Answer, Input, Reported, Witnessed};
pub use fault::{FaultKind, PolicyFault};
pub use limits::{CEILING, Limits, MAX_MEMORY_BYTES};
use store::{EPOCH_TICK, GuestState, WASM_STACK_BYTES};

use crate::calendar::Calendar;
use crate::error::{Error, Result};
use crate::ledger::reads::ReadSet;
use crate::ledger::{Reader, State};

/// Instances that may be alive at once (evaluations, loads, suite runs under hot reload).
const POOL_INSTANCES: u32 = 128;
/// Memory kept mapped (reset with a memset) in a pool slot between instances.
const KEEP_RESIDENT_BYTES: usize = 512 << 10;
/// The only imports a policy may have: its own world. No WASI at all — no clocks,
/// randomness, files, sockets or streams: policies are deterministic, and the host builds
/// no WASI context for them.
const WORLD_PACKAGE: &str = "cardrules:policy/";
/// The world versions this host serves, newest first.
const VERSIONS: &[&str] = &[v0_2::VERSION, v0_1::VERSION];

fn pool(instances: u32) -> wasmtime::PoolingAllocationConfig {
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances * 8)
        .total_memories(instances * 2)
        .total_tables(instances * 4)
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

/// The engine and the linker of every world version, shared by every program.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<GuestState>,
}

/// A component bound to the world version it was built against.
enum Bound {
    V0_1(v0_1::Bound),
    V0_2(v0_2::Bound),
}

impl Bound {
    fn instance_pre(&self) -> &wasmtime::component::InstancePre<GuestState> {
        match self {
            Bound::V0_1(bound) => bound.instance_pre(),
            Bound::V0_2(bound) => bound.instance_pre(),
        }
    }

    fn describe(&self, store: &mut Store<GuestState>) -> wasmtime::Result<PolicyInfo> {
        match self {
            Bound::V0_1(bound) => bound.describe(store),
            Bound::V0_2(bound) => bound.describe(store),
        }
    }

    fn evaluate(
        &self,
        store: &mut Store<GuestState>,
        prepared: Prepared,
    ) -> wasmtime::Result<Answer> {
        match (self, prepared.0) {
            (Bound::V0_1(bound), Converted::V0_1(request)) => bound.evaluate(store, &request),
            (Bound::V0_2(bound), Converted::V0_2(request)) => bound.evaluate(store, &request),
            _ => Err(wasmtime::format_err!(
                "a request was prepared for another world version"
            )),
        }
    }

    fn version(&self) -> &'static str {
        match self {
            Bound::V0_1(_) => v0_1::VERSION,
            Bound::V0_2(_) => v0_2::VERSION,
        }
    }
}

/// A policy component compiled and checked, ready to be instantiated.
pub struct CompiledPolicy {
    bound: Bound,
    /// What the policy said about itself when loaded.
    pub info: PolicyInfo,
    /// `sha256:` and the hex digest of the component's bytes.
    pub digest: String,
    /// The component's size in bytes.
    pub size: usize,
}

/// A request converted to the world of the policy that will decide it.
pub(crate) struct Prepared(Converted);

enum Converted {
    V0_1(v0_1::Request),
    V0_2(v0_2::Request),
}

impl CompiledPolicy {
    /// Converts `input` to the policy's world, before the state it borrows from is lent to
    /// the policy.
    pub(crate) fn prepare(&self, input: &Input<'_>) -> Prepared {
        match self.bound {
            Bound::V0_1(_) => Prepared(Converted::V0_1(v0_1::request(input))),
            Bound::V0_2(_) => Prepared(Converted::V0_2(v0_2::request(input))),
        }
    }

    /// Whether the policy's world lets it report the checks it evaluated (0.2.0 and
    /// later).
    pub fn reports_checks(&self) -> bool {
        !matches!(self.bound, Bound::V0_1(_))
    }

    /// The version of the policy world the component was built against, e.g. `0.1.0`.
    pub fn world(&self) -> &'static str {
        self.bound.version()
    }
}

/// The result of one evaluation.
pub(crate) struct Evaluated {
    /// The policy's answer, or its fault; an error is the host's own (the instance pool
    /// was full, the state was lost), and nothing of it is the policy's doing.
    pub answer: Result<std::result::Result<Answer, PolicyFault>>,
    /// Fuel the policy burnt.
    pub fuel: u64,
    /// What the policy read, when asked to explain.
    pub witnessed: Option<Witnessed>,
    /// The keys of the ledger it read, when evaluated as a proposal.
    pub keys: Option<ReadSet>,
    /// Through a lens (something lent to venues): the first read it did not cover.
    pub uncovered: Option<crate::offline::Uncovered>,
}

/// How an evaluation reads the ledger besides answering: keeping the keys it read (a
/// proposal), and through a lens (something is lent to venues: see `crate::offline`).
struct Reading {
    keys: Option<ReadSet>,
    lens: Option<Arc<crate::offline::Lens>>,
}

impl Sandbox {
    /// An engine with fuel metering and epoch deadlines, and a linker for the world;
    /// compiled components are cached on disk (wasmtime's cache, `~/.cache/wasmtime`).
    pub fn new() -> Result<Sandbox> {
        Sandbox::with_disk_cache(true)
    }

    /// As [`Sandbox::new`], with or without the on-disk cache of compiled components.
    pub fn with_disk_cache(cache: bool) -> Result<Sandbox> {
        Sandbox::build(cache, POOL_INSTANCES)
    }

    /// As [`Sandbox::with_disk_cache`] without the cache, with room for only `instances`
    /// policies running at once: for tests of what happens when the pool is full.
    pub fn with_pool_size(instances: u32) -> Result<Sandbox> {
        Sandbox::build(false, instances.max(1))
    }

    fn build(cache: bool, instances: u32) -> Result<Sandbox> {
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
        pooled.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool(
            instances,
        )));
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
        v0_1::link(&mut linker)
            .and_then(|()| v0_2::link(&mut linker))
            .map_err(|e| Error::host("cannot link the policy world", e.into_boxed_dyn_error()))?;
        Ok(Sandbox { engine, linker })
    }

    /// Compiles a component, checks its imports, binds it to its world version and asks it
    /// to describe itself.
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
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let foreign: Vec<String> = imports
            .iter()
            .filter(|name| !name.starts_with(WORLD_PACKAGE))
            .map(|name| format!("`{name}`"))
            .collect();
        if !foreign.is_empty() {
            return Err(format!(
                "component imports {}, which policies may not use (no clock, randomness, files or network; a policy imports its world only — build it `no_std` with the SDK)",
                foreign.join(", ")
            ));
        }
        let bound = self.bind(&component, &imports)?;

        let mut store = store::new(&self.engine, None, context, false, None);
        let info = bound.describe(&mut store).map_err(|e| {
            let used = store::fuel_used(&store);
            format!(
                "`describe` failed: {}",
                store::failure(&e, store.data(), used)
            )
        })?;
        check_info(&info)?;
        Ok(CompiledPolicy {
            bound,
            info,
            digest: format!("sha256:{:x}", Sha256::digest(bytes)),
            size: bytes.len(),
        })
    }

    /// Binds `component` to the world version its imports name (`…@0.1.0`); a component
    /// that imports nothing is bound to the newest version it implements.
    fn bind(
        &self,
        component: &Component,
        imports: &[String],
    ) -> std::result::Result<Bound, String> {
        let mut named: Vec<&str> = imports
            .iter()
            .filter_map(|name| name.rsplit_once('@').map(|(_, version)| version))
            .collect();
        named.sort_unstable();
        named.dedup();
        if let [one, two, ..] = named[..] {
            return Err(format!(
                "component imports two versions of the policy world, `{one}` and `{two}`"
            ));
        }
        let candidates: Vec<&str> = match named.first() {
            Some(version) if VERSIONS.contains(version) => vec![version],
            Some(version) => {
                return Err(format!(
                    "component is built for policy world `{version}`, which this host does not serve (it serves {})",
                    VERSIONS.join(", ")
                ));
            }
            None => VERSIONS.to_vec(),
        };
        let mut last = String::new();
        for version in candidates {
            let bound = match version {
                v0_1::VERSION => v0_1::Bound::new(&self.linker, component).map(Bound::V0_1),
                v0_2::VERSION => v0_2::Bound::new(&self.linker, component).map(Bound::V0_2),
                other => Err(format!("no binding for policy world `{other}`")),
            };
            match bound {
                Ok(bound) => return Ok(bound),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Instantiates `policy` in a fresh store, as every evaluation does, and drops it: the
    /// sandbox's fixed cost per decision, for benchmarks.
    pub fn instantiate(&self, policy: &CompiledPolicy, limits: Limits) -> Result<()> {
        let context = Arc::new(Context {
            calendar: Calendar::new("UTC").map_err(|e| Error::invalid(e.to_string()))?,
            config: Arc::default(),
            limits,
        });
        let mut store = store::new(&self.engine, None, context, false, None);
        policy
            .bound
            .instance_pre()
            .instantiate(&mut store)
            .map(drop)
            .map_err(|e| Error::invalid(format!("cannot instantiate: {e}")))
    }

    /// Evaluates a request prepared for `policy` on a fresh instance of it, lending it the
    /// program's `state` to read (it has no way to write) for the call: moved into the
    /// store and back (the lane's leader holds the state and may lend it so).
    pub(crate) fn evaluate(
        &self,
        policy: &CompiledPolicy,
        context: &Arc<Context>,
        state: &mut State,
        prepared: Prepared,
        explain: bool,
        lens: Option<Arc<crate::offline::Lens>>,
    ) -> Evaluated {
        let lent = Lent::Owned(std::mem::take(state));
        let reading = Reading { keys: None, lens };
        let (mut evaluated, lent) = self.run(policy, context, lent, prepared, explain, reading);
        match lent {
            Some(Lent::Owned(lent)) => *state = lent,
            _ => {
                evaluated.answer = Err(Error::host("evaluation", "the program's state was lost"));
                evaluated.witnessed = None;
            }
        }
        evaluated
    }

    /// As [`Sandbox::evaluate`], on the lane's state read as it stands at each host call,
    /// adding the keys of every ledger read to `keys` ([`Evaluated::keys`]): a proposal,
    /// checked later against what changed since.
    pub(crate) fn evaluate_shared(
        &self,
        policy: &CompiledPolicy,
        context: &Arc<Context>,
        reader: Reader,
        prepared: Prepared,
        explain: bool,
        keys: ReadSet,
    ) -> Evaluated {
        let lent = Lent::Shared(reader);
        let reading = Reading {
            keys: Some(keys),
            lens: None,
        };
        self.run(policy, context, lent, prepared, explain, reading)
            .0
    }

    fn run(
        &self,
        policy: &CompiledPolicy,
        context: &Arc<Context>,
        lent: Lent,
        prepared: Prepared,
        explain: bool,
        reading: Reading,
    ) -> (Evaluated, Option<Lent>) {
        let mut store = store::new(
            &self.engine,
            Some(lent),
            context.clone(),
            explain,
            reading.keys,
        );
        store.data_mut().calls.lens = reading.lens;
        let result = policy.bound.evaluate(&mut store, prepared);
        let fuel = store::fuel_used(&store);
        let answer = match result {
            Ok(answer) => Ok(check_output(answer, &context.limits)),
            Err(e) if e.is::<wasmtime::PoolConcurrencyLimitError>() => Err(Error::unavailable(
                format!("policy `{}`", policy.info.program),
                format!("no instance slot is free ({e}); try again shortly"),
            )),
            Err(e) => Ok(Err(store::failure(&e, store.data(), fuel))),
        };
        let (lent, witnessed, keys, uncovered) = store.into_data().calls.into_parts();
        let evaluated = Evaluated {
            answer,
            fuel,
            witnessed,
            keys,
            uncovered,
        };
        (evaluated, lent)
    }
}

/// The longest name `describe` may give (program, version, action, reason): each is copied
/// into decisions and the ledger, so none may be large.
const MAX_NAME_BYTES: usize = 64;
/// The most actions or reasons `describe` may list.
const MAX_NAMES: usize = 256;

/// Bounds what `describe` answered.
fn check_info(info: &PolicyInfo) -> std::result::Result<(), String> {
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

/// Holds an answer to the manifest's caps on effects and size.
fn check_output(answer: Answer, limits: &Limits) -> std::result::Result<Answer, PolicyFault> {
    if answer.effects.len() > limits.max_effects {
        return Err(PolicyFault::new(
            FaultKind::Output,
            format!(
                "decision has {} effects, more than the limit of {}",
                answer.effects.len(),
                limits.max_effects
            ),
        ));
    }
    if answer.checks.len() > limits.max_checks {
        return Err(PolicyFault::new(
            FaultKind::Output,
            format!(
                "decision reports {} checks, more than the limit of {}",
                answer.checks.len(),
                limits.max_checks
            ),
        ));
    }
    let size = answer.size();
    if size > limits.max_output_bytes {
        return Err(PolicyFault::new(
            FaultKind::Output,
            format!(
                "decision is {size} bytes, more than the limit of {} bytes",
                limits.max_output_bytes
            ),
        ));
    }
    Ok(answer)
}
