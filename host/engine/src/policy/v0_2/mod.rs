//! World `cardrules:policy@0.2.0` (`wit/0.2.0/policy.wit`): explained decisions. Its
//! `ledger`, `calendar` and `diagnostics` interfaces and most of its types are those of
//! 0.1.0, so this folder reuses 0.1.0's generated types and conversions for them and
//! declares only what changed — the request (`explain`), the decision (`checks`) and the
//! check — as records the component model checks field by field against the component's
//! own types when it is bound.

use wasmtime::Store;
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentType, InstancePre, Lift, Linker, Lower, TypedFunc,
};

use super::exchange::{Answer, Input, PolicyInfo, Reported};
use super::store::GuestState;
use super::v0_1::{self, wit};

/// The world's version, as it appears in its interfaces' names.
pub(super) const VERSION: &str = "0.2.0";

/// Links the world's imports (0.1.0's, under 0.2.0's names) to the host calls.
pub(super) fn link(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    v0_1::link_as(linker, VERSION)
}

/// `request` of 0.2.0: 0.1.0's and `explain`.
#[derive(ComponentType, Lower)]
#[component(record)]
pub(super) struct Request {
    action: String,
    at: i64,
    local: wit::LocalTime,
    holder: wit::Holder,
    offer: Option<wit::Offer>,
    party: u32,
    amount: Option<i64>,
    asset: Option<String>,
    #[component(name = "to-card")]
    to_card: Option<String>,
    #[component(name = "new-card")]
    new_card: Option<String>,
    explain: bool,
}

/// `check` of 0.2.0.
#[derive(ComponentType, Lift)]
#[component(record)]
struct Check {
    rule: String,
    passed: bool,
    reason: String,
    used: Option<i64>,
    limit: Option<i64>,
    until: Option<i64>,
}

/// `decision` of 0.2.0: 0.1.0's and `checks`.
#[derive(ComponentType, Lift)]
#[component(record)]
struct Decision {
    allow: bool,
    reason: String,
    admitted: u32,
    price: Option<i64>,
    notes: Vec<String>,
    effects: Vec<wit::Effect>,
    checks: Vec<Check>,
}

/// A component of this world, checked against it and ready to instantiate.
pub(super) struct Bound {
    pre: InstancePre<GuestState>,
    evaluate: ComponentExportIndex,
    describe: ComponentExportIndex,
}

impl Bound {
    /// Checks that `component` implements this world with the imports `linker` provides:
    /// its `evaluate` takes a request with `explain` and answers a decision with `checks`
    /// (the types themselves are checked field by field on first call).
    pub(super) fn new(linker: &Linker<GuestState>, component: &Component) -> Result<Bound, String> {
        let not =
            |why: &str| format!("component does not implement the policy world {VERSION}: {why}");
        let engine = linker.engine();
        let evaluate_type = component
            .component_type()
            .exports(engine)
            .find(|(name, _)| *name == "evaluate")
            .map(|(_, item)| item.ty);
        let Some(ComponentItem::ComponentFunc(func)) = evaluate_type else {
            return Err(not("no `evaluate` function"));
        };
        let has = |ty: Option<Type>, field: &str| matches!(ty, Some(Type::Record(record)) if record.fields().any(|f| f.name == field));
        if !has(func.params().next().map(|(_, ty)| ty), "explain")
            || !has(func.results().next(), "checks")
        {
            return Err(not(
                "`evaluate` does not take `explain` and answer `checks`",
            ));
        }
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| not(&format!("{e:#}")))?;
        let evaluate = component
            .get_export_index(None, "evaluate")
            .ok_or("component does not export `evaluate`")?;
        let describe = component
            .get_export_index(None, "describe")
            .ok_or("component does not export `describe`")?;
        Ok(Bound {
            pre,
            evaluate,
            describe,
        })
    }

    pub(super) fn instance_pre(&self) -> &InstancePre<GuestState> {
        &self.pre
    }

    /// Instantiates the component, checks both exports' types (once, at load), and asks it
    /// to describe itself.
    pub(super) fn describe(&self, store: &mut Store<GuestState>) -> wasmtime::Result<PolicyInfo> {
        let instance = self.pre.instantiate(&mut *store)?;
        instance.get_typed_func::<(&Request,), (Decision,)>(&mut *store, self.evaluate)?;
        let describe =
            instance.get_typed_func::<(), (wit::PolicyInfo,)>(&mut *store, self.describe)?;
        let (info,) = describe.call(&mut *store, ())?;
        Ok(info.into())
    }

    /// Instantiates the component and asks it to decide `request`.
    pub(super) fn evaluate(
        &self,
        store: &mut Store<GuestState>,
        request: &Request,
    ) -> wasmtime::Result<Answer> {
        let instance = self.pre.instantiate(&mut *store)?;
        let func = instance
            .get_func(&mut *store, self.evaluate)
            .ok_or_else(|| wasmtime::format_err!("the instance has no `evaluate`"))?;
        // SAFETY: `describe`, which every policy runs once when it is loaded, checked this
        // export's type against exactly these records with `get_typed_func`; the instance
        // is of that component. Checking again on every decision cost more than its call.
        let evaluate = unsafe { TypedFunc::<(&Request,), (Decision,)>::new_unchecked(func) };
        let (decision,) = evaluate.call(&mut *store, (request,))?;
        Ok(Answer {
            allow: decision.allow,
            reason: decision.reason,
            admitted: decision.admitted,
            price: decision.price,
            notes: decision.notes,
            effects: decision.effects.into_iter().map(v0_1::effect).collect(),
            checks: decision
                .checks
                .into_iter()
                .map(|c| Reported {
                    rule: c.rule,
                    passed: c.passed,
                    reason: c.reason,
                    used: c.used,
                    limit: c.limit,
                    until: c.until,
                })
                .collect(),
        })
    }
}

/// The request as this world gives it to a policy.
pub(super) fn request(input: &Input<'_>) -> Request {
    Request {
        action: input.action.to_string(),
        at: input.at,
        local: v0_1::local_time(input.local),
        holder: v0_1::holder(input.holder),
        offer: input.offer.map(v0_1::offer),
        party: input.party,
        amount: input.amount,
        asset: input.asset.map(str::to_string),
        to_card: input.to_card.map(str::to_string),
        new_card: input.new_card.map(str::to_string),
        explain: input.explain,
    }
}
