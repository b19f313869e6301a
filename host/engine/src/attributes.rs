//! Changing a card's holder attributes (`PATCH /v1/programs/{program}/holders/{card}`): by
//! a registrar, or by a guardian (a parent's portal), who may change only the attributes
//! the program's schema marks `guardian = true`.
//!
//! A change is checked like a registration — the whole updated holder against the schema,
//! by [`Program::check_holder`] — and journaled as one: a [`Change::Registered`] of the
//! whole updated holder. It runs in the program's ledger lane and reads the holder from the
//! lane's state, so two changes at once cannot lose one another's. Nothing is journaled
//! when any part of it is refused.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::host::{CardView, Host};
use crate::ledger::{Change, Staged, View};
use crate::model::AttributeValue;
use crate::program::Program;

/// Who changes a card's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setter {
    /// Anyone who may register holders (or any caller of a server without `--auth`): every
    /// attribute the schema declares.
    Registrar,
    /// A parent's portal: only the attributes the schema marks `guardian = true`.
    Guardian,
}

impl Host {
    /// Changes attributes of `card`'s holder in `program`: each entry of `changes` sets an
    /// attribute to a value (text, integer or boolean), or, `null`, removes it; the others
    /// are kept. Answers the card as it is afterwards (balances at `at`), once durable.
    ///
    /// Refused, with nothing journaled: by a guardian, an attribute the schema does not mark
    /// `guardian = true` ([`Error::Forbidden`]); an unknown card ([`Error::UnknownCard`]);
    /// no change at all, or a holder the schema refuses afterwards (an undeclared key, a
    /// value of another type or out of range: [`Error::Invalid`], with the message of a
    /// registration).
    pub fn set_attributes(
        &self,
        program: &str,
        card: &str,
        changes: &BTreeMap<String, serde_json::Value>,
        who: Setter,
        at: i64,
    ) -> Result<CardView> {
        let program = self.program(program)?;
        crate::ids::check(crate::ids::Kind::Card, "card", card)?;
        if who == Setter::Guardian {
            guardian_may_change(&program, changes.keys())?;
        }
        if changes.is_empty() {
            return Err(Error::invalid(format!(
                "holder `{card}`: `attributes` names nothing to change: give each attribute \
                 to change with its new value, or `null` to remove it"
            )));
        }
        let mut typed: Vec<(String, Option<AttributeValue>)> = Vec::with_capacity(changes.len());
        for (key, value) in changes {
            let value = match value {
                serde_json::Value::Null => None,
                value => Some(
                    serde_json::from_value::<AttributeValue>(value.clone()).map_err(|_| {
                        Error::invalid(format!(
                            "holder `{card}`: `{key}` must be text, an integer or a boolean \
                             (or `null`, to remove it), not `{value}`"
                        ))
                    })?,
                ),
            };
            typed.push((key.clone(), value));
        }
        let card = card.to_string();
        let changing = program.clone();
        self.ledger().submit(program.id(), move |tx| {
            let state = tx.state();
            let Some(current) = state.holder(&card) else {
                return Err(Error::UnknownCard {
                    program: changing.id().to_string(),
                    card: card.clone(),
                });
            };
            let mut holder = current.clone();
            // Starting balances are for new cards; the state keeps none in a holder.
            holder.balances.clear();
            for (key, value) in &typed {
                match value {
                    Some(value) => {
                        holder.attributes.insert(key.clone(), value.clone());
                    }
                    None => {
                        holder.attributes.remove(key);
                    }
                }
            }
            changing.check_holder(&holder)?;
            let change = Change::Registered {
                holder: holder.clone(),
                at: Some(at),
            };
            state
                .apply_change(&change)
                .map_err(|refused| Error::invalid(refused.0))?;
            let view =
                crate::host::card_view(changing.id(), state, &card, at).ok_or_else(|| {
                    Error::UnknownCard {
                        program: changing.id().to_string(),
                        card: card.clone(),
                    }
                })?;
            Ok(Staged {
                changes: vec![change],
                answer: view,
            })
        })
    }
}

/// Whether a guardian may change every one of `keys`: each must be a holder attribute the
/// program's schema marks `guardian = true`.
fn guardian_may_change<'a>(
    program: &Program,
    keys: impl IntoIterator<Item = &'a String>,
) -> Result<()> {
    let declared = &program.files.manifest.schema.holder;
    for key in keys {
        if declared.get(key).is_some_and(|d| d.guardian) {
            continue;
        }
        let marked: Vec<String> = declared
            .iter()
            .filter(|(_, d)| d.guardian)
            .map(|(k, _)| format!("`{k}`"))
            .collect();
        let marked = match marked.is_empty() {
            true => format!("program `{}` marks none", program.id()),
            false => format!("it may change {}", marked.join(", ")),
        };
        return Err(Error::Forbidden(format!(
            "a guardian may change only attributes the schema marks `guardian = true`, \
             not `{key}` ({marked})"
        )));
    }
    Ok(())
}
