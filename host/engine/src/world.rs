//! The host side of the `cardrules:policy` world: the one `bindgen!` of the crate.
//! Generated code is never edited; conversions to and from the crate's own types live here.

use std::collections::BTreeMap;

use jiff::civil::Date;

use crate::calendar::{self, LocalTime};
use crate::ledger::Effect;
use crate::model::{self, AttributeValue, CardState};

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "cardrules:policy/policy@0.1.0",
    imports: { default: trappable },
});

pub(crate) use self::cardrules::policy::types as wit;

pub(crate) fn date(d: Date) -> wit::Date {
    wit::Date {
        year: i32::from(d.year()),
        month: d.month() as u8,
        day: d.day() as u8,
    }
}

pub(crate) fn local_time(t: LocalTime) -> wit::LocalTime {
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

pub(crate) fn card_state(state: CardState) -> wit::CardState {
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

pub(crate) fn holder(h: &model::Holder) -> wit::Holder {
    wit::Holder {
        card: h.card.clone(),
        birth_date: date(h.birth_date),
        municipality: h.municipality.clone(),
        statuses: h.statuses.clone(),
        state: card_state(h.state),
        attributes: attributes(&h.attributes),
    }
}

pub(crate) fn offer(o: &model::Offer) -> wit::Offer {
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

pub(crate) fn period(p: wit::Period) -> calendar::Period {
    match p {
        wit::Period::Day => calendar::Period::Day,
        wit::Period::IsoWeek => calendar::Period::IsoWeek,
        wit::Period::Month => calendar::Period::Month,
        wit::Period::Semester => calendar::Period::Semester,
        wit::Period::Year => calendar::Period::Year,
    }
}

pub(crate) fn effect(e: wit::Effect) -> Effect {
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

/// A rough size of what a decision carries, in bytes, to hold it to the output cap.
pub(crate) fn decision_size(d: &wit::Decision) -> usize {
    let effects: usize = d
        .effects
        .iter()
        .map(|e| match e {
            wit::Effect::Count(t) => t.counter.len(),
            wit::Effect::Grant(l) => l.asset.len(),
            wit::Effect::Consume(u) => u.asset.len(),
            wit::Effect::Transfer(t) => t.to_card.len() + t.asset.len(),
            wit::Effect::Forfeit(a) | wit::Effect::MoveCard(a) => a.len(),
            wit::Effect::SetState(_) => 0,
        } + 16)
        .sum();
    d.reason.len() + d.notes.iter().map(|n| n.len() + 8).sum::<usize>() + effects
}
