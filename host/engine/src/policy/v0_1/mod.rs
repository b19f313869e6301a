//! World `cardrules:policy@0.1.0`, as released (`wit/policy.wit`): its one `bindgen!`, the
//! conversions between its types and the engine's, how a component of this world is
//! bound, described and asked to evaluate, and its imports (`imports.rs`). Generated code
//! is never edited, and none of its types leave this folder.

mod imports;

use std::collections::BTreeMap;

use jiff::civil::Date;
use wasmtime::Store;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker, TypedFunc};

use super::exchange::{Answer, Input, PolicyInfo};
use super::store::GuestState;
use crate::calendar::{self, LocalTime};
use crate::ledger::Effect;
use crate::model::{self, AttributeValue, CardState};

/// The generated bindings, in a module of their own so that the world's type names do not
/// meet the engine's.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/0.1.0",
        world: "cardrules:policy/policy@0.1.0",
        imports: { default: trappable },
    });
}

use bindings::PolicyPre;
pub(super) use bindings::cardrules::policy::types as wit;
pub(super) use wit::Request;

/// The world's version, as it appears in its interfaces' names.
pub(super) const VERSION: &str = "0.1.0";

/// Links the world's imports to the host calls.
pub(super) fn link(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    imports::add_to_linker(linker, GuestState::calls, VERSION)
}

/// Links the imports of a later world version whose `ledger`, `calendar` and
/// `diagnostics` interfaces are those of this one, under that version's names.
pub(super) fn link_as(linker: &mut Linker<GuestState>, version: &str) -> wasmtime::Result<()> {
    imports::add_to_linker(linker, GuestState::calls, version)
}

/// A component of this world, checked against it and ready to instantiate.
pub(super) struct Bound {
    pre: PolicyPre<GuestState>,
    /// Where `evaluate` is among the component's exports, found once at load: a decision
    /// calls it without looking it up or checking its type again.
    evaluate: ComponentExportIndex,
}

impl Bound {
    /// Checks that `component` implements this world with the imports `linker` provides.
    pub(super) fn new(linker: &Linker<GuestState>, component: &Component) -> Result<Bound, String> {
        let pre = linker
            .instantiate_pre(component)
            .and_then(PolicyPre::new)
            .map_err(|e| format!("component does not implement the policy world: {e:#}"))?;
        let evaluate = component
            .get_export_index(None, "evaluate")
            .ok_or("component does not export `evaluate`")?;
        Ok(Bound { pre, evaluate })
    }

    pub(super) fn instance_pre(&self) -> &InstancePre<GuestState> {
        self.pre.instance_pre()
    }

    /// Instantiates the component and asks it to describe itself.
    pub(super) fn describe(&self, store: &mut Store<GuestState>) -> wasmtime::Result<PolicyInfo> {
        let policy = self.pre.instantiate(&mut *store)?;
        policy.call_describe(&mut *store).map(PolicyInfo::from)
    }

    /// Instantiates the component and asks it to decide `request`.
    pub(super) fn evaluate(
        &self,
        store: &mut Store<GuestState>,
        request: &wit::Request,
    ) -> wasmtime::Result<Answer> {
        let instance = self.pre.instance_pre().instantiate(&mut *store)?;
        let func = instance
            .get_func(&mut *store, self.evaluate)
            .ok_or_else(|| wasmtime::format_err!("the instance has no `evaluate`"))?;
        // SAFETY: `PolicyPre::new` checked, when the policy was bound, that this
        // component's `evaluate` export has exactly this type (as the generated bindings
        // do before their own `new_unchecked`); the instance is of that component.
        // Checking again on every decision cost more than its call.
        let evaluate =
            unsafe { TypedFunc::<(&wit::Request,), (wit::Decision,)>::new_unchecked(func) };
        let (decision,) = evaluate.call(&mut *store, (request,))?;
        Ok(answer(decision))
    }
}

pub(super) fn date(d: Date) -> wit::Date {
    wit::Date {
        year: i32::from(d.year()),
        month: d.month() as u8,
        day: d.day() as u8,
    }
}

pub(super) fn local_time(t: LocalTime) -> wit::LocalTime {
    wit::LocalTime {
        date: date(t.date),
        hour: t.hour as u8,
        minute: t.minute as u8,
        second: t.second as u8,
        weekday: t.weekday as u8,
    }
}

fn attributes(map: &BTreeMap<String, AttributeValue>) -> Vec<wit::Attribute> {
    map.iter()
        .map(|(key, value)| wit::Attribute {
            key: key.clone(),
            value: match value {
                AttributeValue::Text(s) => wit::Value::Text(s.clone()),
                AttributeValue::Integer(n) => wit::Value::Integer(*n),
                AttributeValue::Boolean(b) => wit::Value::Boolean(*b),
            },
        })
        .collect()
}

fn card_state(state: CardState) -> wit::CardState {
    match state {
        CardState::Active => wit::CardState::Active,
        CardState::Blocked => wit::CardState::Blocked,
        CardState::Stopped => wit::CardState::Stopped,
    }
}

fn from_card_state(state: wit::CardState) -> CardState {
    match state {
        wit::CardState::Active => CardState::Active,
        wit::CardState::Blocked => CardState::Blocked,
        wit::CardState::Stopped => CardState::Stopped,
    }
}

pub(super) fn holder(h: &model::Holder) -> wit::Holder {
    wit::Holder {
        card: h.card.clone(),
        birth_date: date(h.birth_date),
        municipality: h.municipality.clone(),
        statuses: h.statuses.clone(),
        state: card_state(h.state),
        attributes: attributes(&h.attributes),
    }
}

pub(super) fn offer(o: &model::Offer) -> wit::Offer {
    wit::Offer {
        id: o.id.clone(),
        name: o.name.clone(),
        provider: o.provider.clone(),
        category: o.category.clone(),
        location: o.location.clone(),
        starts_at: o.starts_at.map(|t| t.as_second()),
        ends_at: o.ends_at.map(|t| t.as_second()),
        attributes: attributes(&o.attributes),
    }
}

/// What a policy says about itself, in the engine's type (0.2.0's is the same record).
impl From<wit::PolicyInfo> for PolicyInfo {
    fn from(info: wit::PolicyInfo) -> PolicyInfo {
        PolicyInfo {
            program: info.program,
            version: info.version,
            actions: info.actions,
            reasons: info.reasons,
        }
    }
}

/// The request as this world gives it to a policy.
pub(super) fn request(input: &Input<'_>) -> wit::Request {
    wit::Request {
        action: input.action.to_string(),
        at: input.at,
        local: local_time(input.local),
        holder: holder(input.holder),
        offer: input.offer.map(offer),
        party: input.party,
        amount: input.amount,
        asset: input.asset.map(str::to_string),
        to_card: input.to_card.map(str::to_string),
        new_card: input.new_card.map(str::to_string),
    }
}

pub(super) fn period(p: wit::Period) -> calendar::Period {
    match p {
        wit::Period::Day => calendar::Period::Day,
        wit::Period::IsoWeek => calendar::Period::IsoWeek,
        wit::Period::Month => calendar::Period::Month,
        wit::Period::Semester => calendar::Period::Semester,
        wit::Period::Year => calendar::Period::Year,
    }
}

pub(super) fn effect(e: wit::Effect) -> Effect {
    match e {
        wit::Effect::Count(t) => Effect::Count {
            counter: t.counter,
            amount: t.amount,
        },
        wit::Effect::Grant(l) => Effect::Grant {
            asset: l.asset,
            amount: l.amount,
            expires: l.expires,
        },
        wit::Effect::Consume(u) => Effect::Consume {
            asset: u.asset,
            amount: u.amount,
        },
        wit::Effect::Transfer(t) => Effect::Transfer {
            to_card: t.to_card,
            asset: t.asset,
            amount: t.amount,
        },
        wit::Effect::Forfeit(asset) => Effect::Forfeit { asset },
        wit::Effect::SetState(s) => Effect::SetState {
            state: from_card_state(s),
        },
        wit::Effect::MoveCard(new_card) => Effect::MoveCard { new_card },
    }
}

fn answer(d: wit::Decision) -> Answer {
    Answer {
        allow: d.allow,
        reason: d.reason,
        admitted: d.admitted,
        price: d.price,
        notes: d.notes,
        effects: d.effects.into_iter().map(effect).collect(),
        // World 0.1.0 cannot say why.
        checks: Vec::new(),
    }
}
