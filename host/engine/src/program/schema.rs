//! A program's schema (`[schema]` in `policy.toml`): the offer attributes, holder attributes
//! and `[config]` keys its policy reads, each with a type and whether it is required.
//!
//! The guest SDK's typed readers (`attr_int`, `config_int`, …) give `None` or their default
//! for a value of another type, so a municipality's typing mistake (`"nei"` for `false`,
//! `"500"` for `500`) would silently change a rule. The host refuses it instead: `[config]`
//! and the catalogue are checked when the program is loaded, the offers a suite adds when
//! the suite runs, and holders when they are registered. A key the schema does not
//! declare is refused too, so a misspelt key is not silently ignored.
//!
//! ```toml
//! [schema.offer.yearly-limit]
//! type = "integer"         # "text", "integer" or "boolean"
//! min = 1                  # integers: optional `min` and `max` (inclusive)
//! required = false         # the default: the policy has a fallback when it is absent
//! doc = "rule 6: activations per card per local calendar year"
//!
//! [schema.holder.blocked-categories]
//! type = "text"            # text: optional `one-of = ["word", …]`
//! guardian = true          # holders only: a guardian token may change it (default false)
//!
//! [schema.config.max-age]
//! type = "integer"
//! min = 0
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{AttributeValue, Holder, Offer};

/// The keys of a catalogue entry that are fields of every offer, never attributes.
pub const OFFER_FIELDS: &[&str] = &[
    "id",
    "name",
    "provider",
    "category",
    "location",
    "starts-at",
    "ends-at",
];

/// `[schema]`: what the policy reads, by where it reads it from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Schema {
    /// `[schema.offer.<key>]`: attributes of catalogue offers.
    #[serde(default)]
    pub offer: BTreeMap<String, Declaration>,
    /// `[schema.holder.<key>]`: attributes of holders.
    #[serde(default)]
    pub holder: BTreeMap<String, Declaration>,
    /// `[schema.config.<key>]`: keys of the manifest's `[config]`.
    #[serde(default)]
    pub config: BTreeMap<String, Declaration>,
}

/// The type of a declared value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    Text,
    Integer,
    Boolean,
}

/// One declared key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Declaration {
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// Whether every offer, every holder or `[config]` must have it (default: no, the
    /// policy has a default).
    #[serde(default)]
    pub required: bool,
    /// Integers: the least allowed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// Integers: the greatest allowed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// Text: the allowed words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    /// Holder attributes only: whether a guardian (a parent's portal, role `guardian`) may
    /// change it for its cards (`PATCH …/holders/{card}`). Default: no.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guardian: bool,
    /// What the value means to the rules, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
}

/// Where declared values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Offer,
    Holder,
    Config,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Offer => "offer",
            Section::Holder => "holder",
            Section::Config => "config",
        }
    }

    /// What a key of this section is called, with its article.
    fn noun(self) -> &'static str {
        match self {
            Section::Offer => "an offer attribute",
            Section::Holder => "a holder attribute",
            Section::Config => "a config key",
        }
    }
}

impl Schema {
    /// Checks the schema itself: `min`/`max` only on integers and in order, `one-of` only
    /// on text and not empty, and no offer attribute named like an offer's field.
    pub fn check(&self) -> Result<(), String> {
        for (section, declared) in self.sections() {
            for (key, declaration) in declared {
                let table = format!("[schema.{}.{key}]", section.name());
                if key.is_empty() {
                    return Err(format!(
                        "`[schema.{}]` declares an empty key",
                        section.name()
                    ));
                }
                if section == Section::Offer && OFFER_FIELDS.contains(&key.as_str()) {
                    return Err(format!(
                        "`{table}`: `{key}` is a field of every offer, not an attribute"
                    ));
                }
                if declaration.guardian && section != Section::Holder {
                    return Err(format!(
                        "`{table}`: `guardian` is for holder attributes (`[schema.holder.<key>]`) \
                         only: a guardian changes holders' attributes, never {}",
                        section.noun()
                    ));
                }
                declaration
                    .check_itself()
                    .map_err(|why| format!("`{table}`: {why}"))?;
            }
        }
        Ok(())
    }

    fn sections(&self) -> [(Section, &BTreeMap<String, Declaration>); 3] {
        [
            (Section::Offer, &self.offer),
            (Section::Holder, &self.holder),
            (Section::Config, &self.config),
        ]
    }

    /// Checks the manifest's `[config]` values against `[schema.config]`.
    pub fn check_config(&self, config: &BTreeMap<String, AttributeValue>) -> Result<(), String> {
        check_values(Section::Config, &self.config, config)
    }

    /// Checks an offer's attributes against `[schema.offer]`; the error names the offer.
    pub fn check_offer(&self, offer: &Offer) -> Result<(), String> {
        check_values(Section::Offer, &self.offer, &offer.attributes)
            .map_err(|why| format!("offer `{}`: {why}", offer.id))
    }

    /// Checks a holder's attributes against `[schema.holder]`; the error names the card.
    pub fn check_holder(&self, holder: &Holder) -> Result<(), String> {
        check_values(Section::Holder, &self.holder, &holder.attributes)
            .map_err(|why| format!("holder `{}`: {why}", holder.card))
    }
}

/// Checks `values` against what `section` declares: every key declared, every value of
/// its declared type and range, every required key present.
fn check_values(
    section: Section,
    declared: &BTreeMap<String, Declaration>,
    values: &BTreeMap<String, AttributeValue>,
) -> Result<(), String> {
    for (key, value) in values {
        let Some(declaration) = declared.get(key) else {
            let known = if declared.is_empty() {
                "it declares none".to_string()
            } else {
                let keys: Vec<String> = declared.keys().map(|k| format!("`{k}`")).collect();
                format!("declared: {}", keys.join(", "))
            };
            return Err(format!(
                "`{key}` is not {} declared in `[schema.{}]` of `policy.toml` ({known})",
                section.noun(),
                section.name()
            ));
        };
        declaration.check(key, value)?;
    }
    for (key, declaration) in declared {
        if declaration.required && !values.contains_key(key) {
            return Err(format!(
                "`{key}` is missing: `[schema.{}]` declares it `required`",
                section.name()
            ));
        }
    }
    Ok(())
}

impl Declaration {
    fn check_itself(&self) -> Result<(), String> {
        if self.value_type != ValueType::Integer && (self.min.is_some() || self.max.is_some()) {
            return Err(format!(
                "`min` and `max` are for integers, not {}",
                self.value_type.plural()
            ));
        }
        if let (Some(min), Some(max)) = (self.min, self.max)
            && min > max
        {
            return Err(format!("`min` {min} is above `max` {max}"));
        }
        if let Some(words) = &self.one_of {
            if self.value_type != ValueType::Text {
                return Err(format!(
                    "`one-of` is for text, not {}",
                    self.value_type.plural()
                ));
            }
            if words.is_empty() {
                return Err("`one-of` lists no words".to_string());
            }
        }
        Ok(())
    }

    /// Checks one value of `key`.
    pub fn check(&self, key: &str, value: &AttributeValue) -> Result<(), String> {
        let fits = match (self.value_type, value) {
            (ValueType::Integer, AttributeValue::Integer(n)) => {
                self.min.is_none_or(|min| *n >= min) && self.max.is_none_or(|max| *n <= max)
            }
            (ValueType::Text, AttributeValue::Text(s)) => {
                self.one_of.as_ref().is_none_or(|words| words.contains(s))
            }
            (ValueType::Boolean, AttributeValue::Boolean(_)) => true,
            _ => false,
        };
        if fits {
            Ok(())
        } else {
            Err(format!(
                "`{key}` must be {}, not {}",
                self.expected(),
                describe(value)
            ))
        }
    }

    /// What a value must be, as the end of "must be …".
    pub fn expected(&self) -> String {
        match self.value_type {
            ValueType::Boolean => "a boolean".to_string(),
            ValueType::Integer => match (self.min, self.max) {
                (Some(min), Some(max)) => format!("an integer between {min} and {max}"),
                (Some(min), None) => format!("an integer of at least {min}"),
                (None, Some(max)) => format!("an integer of at most {max}"),
                (None, None) => "an integer".to_string(),
            },
            ValueType::Text => match &self.one_of {
                None => "text".to_string(),
                Some(words) => {
                    let words: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
                    format!("one of the words {}", words.join(", "))
                }
            },
        }
    }
}

impl ValueType {
    fn plural(self) -> &'static str {
        match self {
            ValueType::Text => "text",
            ValueType::Integer => "integers",
            ValueType::Boolean => "booleans",
        }
    }
}

/// A value as an error message shows it: `the text "nei"`, `the integer 5`.
fn describe(value: &AttributeValue) -> String {
    match value {
        AttributeValue::Text(s) => format!("the text {s:?}"),
        AttributeValue::Integer(n) => format!("the integer {n}"),
        AttributeValue::Boolean(b) => format!("the boolean {b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(toml: &str) -> Result<Schema, String> {
        let schema: Schema = toml::from_str(toml).map_err(|e| e.message().to_string())?;
        schema.check()?;
        Ok(schema)
    }

    fn values(toml: &str) -> BTreeMap<String, AttributeValue> {
        toml::from_str(toml).unwrap()
    }

    const BERGEN: &str = r#"
[offer.participating]
type = "boolean"
doc = "rule 4"
[offer.yearly-limit]
type = "integer"
min = 1
[config.residence]
type = "text"
required = true
[config.max-age]
type = "integer"
min = 0
max = 120
[config.kind]
type = "text"
one-of = ["city", "region"]
"#;

    fn offer(attributes: &str) -> Offer {
        Offer {
            id: "bergen-kino".into(),
            name: "Bergen Kino".into(),
            provider: String::new(),
            category: "public-event".into(),
            location: "kino".into(),
            starts_at: None,
            ends_at: None,
            attributes: values(attributes),
        }
    }

    #[test]
    fn a_schema_parses_with_types_ranges_words_and_docs() {
        let schema = schema(BERGEN).unwrap();
        assert_eq!(schema.offer["participating"].value_type, ValueType::Boolean);
        assert_eq!(schema.offer["participating"].doc.as_deref(), Some("rule 4"));
        assert_eq!(schema.offer["yearly-limit"].min, Some(1));
        assert!(schema.config["residence"].required);
        assert!(!schema.config["max-age"].required);
        assert!(schema.holder.is_empty());
        assert_eq!(Schema::default(), self::schema("").unwrap());
        let marked = self::schema(
            "[holder.daily-limit]\ntype = \"integer\"\nguardian = true\n[holder.club]\ntype = \"text\"\n",
        )
        .unwrap();
        assert!(marked.holder["daily-limit"].guardian);
        assert!(!marked.holder["club"].guardian, "default: not a guardian's");
        assert!(!schema.offer["participating"].guardian);
    }

    #[test]
    fn a_malformed_schema_is_refused() {
        let cases = [
            ("[offer.x]\ntype = \"int\"\n", "unknown variant `int`"),
            ("[offer.x]\nmin = 1\n", "missing field `type`"),
            (
                "[offer.x]\ntype = \"text\"\nreqired = true\n",
                "unknown field `reqired`",
            ),
            ("[offers.x]\ntype = \"text\"\n", "unknown field `offers`"),
            (
                "[offer.x]\ntype = \"text\"\nmin = 1\n",
                "`[schema.offer.x]`: `min` and `max` are for integers, not text",
            ),
            (
                "[config.x]\ntype = \"integer\"\nmin = 5\nmax = 3\n",
                "`[schema.config.x]`: `min` 5 is above `max` 3",
            ),
            (
                "[holder.x]\ntype = \"boolean\"\none-of = [\"a\"]\n",
                "`one-of` is for text, not booleans",
            ),
            (
                "[holder.x]\ntype = \"text\"\none-of = []\n",
                "`one-of` lists no words",
            ),
            (
                "[offer.name]\ntype = \"text\"\n",
                "`name` is a field of every offer, not an attribute",
            ),
            (
                "[offer.x]\ntype = \"integer\"\nguardian = true\n",
                "`[schema.offer.x]`: `guardian` is for holder attributes (`[schema.holder.<key>]`) only: a guardian changes holders' attributes, never an offer attribute",
            ),
            (
                "[config.x]\ntype = \"text\"\nguardian = true\n",
                "`[schema.config.x]`: `guardian` is for holder attributes",
            ),
            (
                "[holder.x]\ntype = \"text\"\nguardian = \"yes\"\n",
                "invalid type: string \"yes\", expected a boolean",
            ),
        ];
        for (toml, expected) in cases {
            let error = schema(toml).unwrap_err();
            assert!(error.contains(expected), "{toml}: {error}");
        }
    }

    #[test]
    fn config_values_are_checked_for_declaration_type_range_words_and_presence() {
        let schema = schema(BERGEN).unwrap();
        let ok = "residence = \"bergen\"\nmax-age = 17\nkind = \"city\"\n";
        assert_eq!(schema.check_config(&values(ok)), Ok(()));
        assert_eq!(schema.check_config(&values("residence = \"x\"")), Ok(()));
        let cases = [
            (
                "residence = \"bergen\"\nmax-age = \"17\"",
                "`max-age` must be an integer between 0 and 120, not the text \"17\"",
            ),
            (
                "residence = \"bergen\"\nmax-age = -1",
                "`max-age` must be an integer between 0 and 120, not the integer -1",
            ),
            (
                "residence = 5",
                "`residence` must be text, not the integer 5",
            ),
            (
                "residence = \"bergen\"\nkind = \"county\"",
                "`kind` must be one of the words \"city\", \"region\", not the text \"county\"",
            ),
            (
                "residence = \"bergen\"\nmax-agee = 17",
                "`max-agee` is not a config key declared in `[schema.config]` of `policy.toml` (declared: `kind`, `max-age`, `residence`)",
            ),
            (
                "max-age = 17",
                "`residence` is missing: `[schema.config]` declares it `required`",
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(
                schema.check_config(&values(config)),
                Err(expected.to_string()),
                "{config}"
            );
        }
    }

    #[test]
    fn offer_and_holder_attributes_are_checked_and_named() {
        let schema = schema(BERGEN).unwrap();
        assert_eq!(schema.check_offer(&offer("participating = false")), Ok(()));
        assert_eq!(
            schema.check_offer(&offer("participating = \"nei\"")),
            Err(
                "offer `bergen-kino`: `participating` must be a boolean, not the text \"nei\""
                    .into()
            )
        );
        assert_eq!(
            schema.check_offer(&offer("yearly-limit = true")),
            Err("offer `bergen-kino`: `yearly-limit` must be an integer of at least 1, not the boolean true".into())
        );
        assert_eq!(
            schema.check_offer(&offer("yearly-limit = 0")),
            Err("offer `bergen-kino`: `yearly-limit` must be an integer of at least 1, not the integer 0".into())
        );
        let holder = Holder {
            card: "AK-1".into(),
            birth_date: jiff::civil::date(2012, 5, 1),
            municipality: "bergen".into(),
            statuses: Vec::new(),
            state: Default::default(),
            attributes: values("daily-limit = 500"),
            balances: BTreeMap::new(),
        };
        assert_eq!(
            schema.check_holder(&holder),
            Err("holder `AK-1`: `daily-limit` is not a holder attribute declared in `[schema.holder]` of `policy.toml` (it declares none)".into())
        );
        let albertslund =
            self::schema("[holder.daily-limit]\ntype = \"integer\"\nmin = 0\n").unwrap();
        assert_eq!(albertslund.check_holder(&holder), Ok(()));
        let typo = Holder {
            attributes: values("daily-limit = \"500\""),
            ..holder
        };
        assert_eq!(
            albertslund.check_holder(&typo),
            Err("holder `AK-1`: `daily-limit` must be an integer of at least 0, not the text \"500\"".into())
        );
    }
}
