//! The external data model of docs/contract.md: holders, offers, requests and decisions, as
//! they appear in JSON and TOML.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use jiff::civil::Date;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// The value of a holder's or an offer's attribute: a string, an integer or a boolean.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AttributeValue {
    Text(String),
    Integer(i64),
    Boolean(bool),
}

impl<'de> Deserialize<'de> for AttributeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl Visitor<'_> for ValueVisitor {
            type Value = AttributeValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, an integer or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AttributeValue::Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(AttributeValue::Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(AttributeValue::Integer)
                    .map_err(|_| E::custom(format!("integer {v} is too large")))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(AttributeValue::Boolean(v))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// The lifecycle of a card.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CardState {
    #[default]
    Active,
    Blocked,
    Stopped,
}

impl CardState {
    /// The name used in JSON, TOML and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            CardState::Active => "active",
            CardState::Blocked => "blocked",
            CardState::Stopped => "stopped",
        }
    }

    /// The state named `name`, if any.
    pub fn parse(name: &str) -> Option<CardState> {
        match name {
            "active" => Some(CardState::Active),
            "blocked" => Some(CardState::Blocked),
            "stopped" => Some(CardState::Stopped),
            _ => None,
        }
    }
}

/// The person a card belongs to: a suite's `[[holders]]` entry, a `holders.toml` entry or
/// the body of `PUT /v1/programs/{program}/holders/{card}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Holder {
    /// In `PUT …/holders/{card}`, taken from the path when left out.
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub card: String,
    pub birth_date: Date,
    pub municipality: String,
    #[serde(default)]
    pub statuses: Vec<String>,
    #[serde(default)]
    pub state: CardState,
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeValue>,
    /// Starting balances (asset → units), granted without expiry when registered.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub balances: BTreeMap<String, i64>,
}

/// An entry of a program's catalogue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Offer {
    pub id: String,
    pub name: String,
    pub provider: String,
    pub category: String,
    pub location: String,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub attributes: BTreeMap<String, AttributeValue>,
}

/// A catalogue entry as written: the named keys plus any other key as an attribute.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawOffer {
    id: String,
    name: Option<String>,
    #[serde(default)]
    provider: String,
    category: String,
    location: String,
    starts_at: Option<Moment>,
    ends_at: Option<Moment>,
    #[serde(flatten)]
    attributes: BTreeMap<String, AttributeValue>,
}

impl<'de> Deserialize<'de> for Offer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawOffer::deserialize(deserializer)?;
        Ok(Offer {
            name: raw.name.unwrap_or_else(|| raw.id.clone()),
            id: raw.id,
            provider: raw.provider,
            category: raw.category,
            location: raw.location,
            starts_at: raw.starts_at.map(|m| m.0),
            ends_at: raw.ends_at.map(|m| m.0),
            attributes: raw.attributes,
        })
    }
}

/// A moment written either as an RFC 3339 string or as a TOML offset date-time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Moment(pub(crate) Timestamp);

impl<'de> Deserialize<'de> for Moment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Toml(toml::value::Datetime),
        }
        let text = match Written::deserialize(deserializer)
            .map_err(|_| de::Error::custom("expected an RFC 3339 time with an offset"))?
        {
            Written::Text(text) => text,
            Written::Toml(datetime) => datetime.to_string(),
        };
        parse_instant(&text).map(Moment).map_err(de::Error::custom)
    }
}

/// The instants the host accepts in any input (a request's `at`, a query's `since` or
/// `until`, a suite's or a catalogue's times), in seconds since the epoch: years 1000 to
/// 8999 (UTC), a thousand years inside what the calendar computes either way, so that no
/// day, week, year or months later a policy derives from an accepted time overflows a
/// host call.
pub const INSTANTS: std::ops::RangeInclusive<i64> = -30_610_224_000..=221_845_391_999;

/// The largest offset from UTC a time may be written with (±18:00, as RFC 3339's
/// offsets and every zone in use stay within it), in seconds.
pub const MAX_OFFSET_SECONDS: i32 = 18 * 3600;

/// Parses an RFC 3339 time with an offset, e.g. `2024-03-01T18:00:00+01:00`: the one
/// place times are read from text, bounded to [`INSTANTS`] and offsets within
/// ±18:00 ([`MAX_OFFSET_SECONDS`]).
pub fn parse_instant(text: &str) -> Result<Timestamp, String> {
    use jiff::fmt::temporal::Pieces;
    let not_a_time =
        |e: jiff::Error| format!("`{text}` is not an RFC 3339 time with an offset: {e}");
    let pieces = Pieces::parse(text).map_err(not_a_time)?;
    let (Some(time), Some(offset)) = (pieces.time(), pieces.offset()) else {
        // Without a time or an offset it names no instant: jiff's own words say which.
        return Err(match text.parse::<Timestamp>() {
            Err(e) => not_a_time(e),
            Ok(_) => format!("`{text}` is not an RFC 3339 time with an offset"),
        });
    };
    let offset = offset.to_numeric_offset();
    if offset.seconds().abs() > MAX_OFFSET_SECONDS {
        return Err(format!(
            "`{text}` has an offset beyond the ±18:00 a time may be written with"
        ));
    }
    offset
        .to_timestamp(jiff::civil::DateTime::from_parts(pieces.date(), time))
        .ok()
        .filter(|instant| INSTANTS.contains(&instant.as_second()))
        .ok_or_else(|| {
            format!(
                "`{text}` is out of range: times must lie from {} to {}",
                instant_text(*INSTANTS.start()),
                instant_text(*INSTANTS.end())
            )
        })
}

/// An instant of [`INSTANTS`] as RFC 3339 text.
fn instant_text(second: i64) -> String {
    Timestamp::from_second(second)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| second.to_string())
}

/// A request's `at`, read by [`parse_instant`] and named in its error.
fn request_at<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
    struct At;
    impl Visitor<'_> for At {
        type Value = Timestamp;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an RFC 3339 time with an offset")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
            parse_instant(text).map_err(|e| E::custom(format!("`at`: {e}")))
        }
    }
    deserializer.deserialize_str(At)
}

/// What a point of sale asks: one request of docs/contract.md.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Request {
    pub program: String,
    pub card: String,
    pub action: String,
    #[serde(deserialize_with = "request_at")]
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_card: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_card: Option<String>,
    /// Idempotency key: the same id again returns the first decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Evaluate, but commit nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The language of `message` (default: the program's first language).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Also answer why: the checks the policy evaluated and what it read from the host.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub explain: bool,
    /// The venue host that forwarded the request, set by the city host from the venue's
    /// token (never read from the request's JSON: a till cannot claim a venue). The
    /// decision carries it, and so does its record in the journal.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub venue: Option<String>,
}

/// Which policy made a decision.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    pub program: String,
    pub version: String,
    pub digest: String,
}

/// The answer to a request.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Decision {
    pub allow: bool,
    pub reason: String,
    pub message: String,
    pub admitted: u32,
    pub price: Option<i64>,
    pub notes: Vec<String>,
    /// The acting card's balances after the decision (asset → unexpired units).
    pub balances: BTreeMap<String, i64>,
    /// The acting card's state after the decision (absent for unknown cards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CardState>,
    pub policy: PolicyRef,
    /// Echo of the request's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// True when nothing was committed because the request was a dry run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// True when this is the recorded answer to an earlier request with the same id.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    /// Why the policy failed, for `policy-error` decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The kind of a `policy-error` (the metric label and log field); not part of the
    /// answer's JSON, and absent from a replayed answer (faults are never recorded).
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub fault: Option<crate::policy::FaultKind>,
    /// Wasm instructions the policy used for this decision (0 when the host decided alone).
    #[serde(default)]
    pub fuel: u64,
    /// With `explain`: the rules the policy evaluated, in order (none for a policy of world
    /// 0.1.0, which cannot say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<Check>>,
    /// With `explain`: what the policy read from the host, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<Vec<Read>>,
    /// The venue host the request came through, if it came through one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue: Option<String>,
    /// Decided by the venue alone, under its lease, while it could not reach its city
    /// (see docs/offline.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,
    /// Not decided yet: kept by the venue, decided by the city when the venue is back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

/// One rule a policy evaluated, in an explained decision.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Check {
    /// The policy's own name for the rule.
    pub rule: String,
    /// Whether the rule held.
    pub passed: bool,
    /// The reason code the rule denies with.
    pub reason: String,
    /// For a rule that counts against a bound: what already counts, before this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<i64>,
    /// For a rule that counts against a bound: the bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// When the count's window ends, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

/// One call a policy made to the host while deciding, in an explained decision.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Read {
    /// The import, e.g. `ledger.count-in`.
    pub call: String,
    /// Its arguments by name; instants as RFC 3339 times.
    pub args: serde_json::Value,
    /// What the host answered: a number, text, a list or an object, by call.
    pub answer: serde_json::Value,
}
