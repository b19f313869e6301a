//! Every outside input, parsed from text and checked exactly as the engine does when it
//! reads the file or the body: the entry points of the fuzz targets (`fuzz/`), and a way to
//! validate an input without a policies directory.
//!
//! The TOML inputs have no file name here, so their errors name the input by its usual
//! file name (`policy.toml`, `catalogue.toml`, `holders.toml`, `suite.toml`).

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::model::{Holder, Offer, Request};
use crate::program::files::parse_toml;
use crate::program::manifest::{self, Manifest};
use crate::suite::{self, Suite};

/// Any TOML input of ours (the server's auth file too): parsed into `T` with errors that
/// name `source` and the line, as every file the engine reads.
pub fn toml<T: serde::de::DeserializeOwned>(text: &str, source: &Path) -> Result<T> {
    parse_toml(text, source)
}

/// A request, as the body of `POST /v1/decisions` or the file of `cardrules decide`.
pub fn request(json: &str) -> Result<Request> {
    serde_json::from_str(json).map_err(|e| Error::invalid(format!("cannot parse request: {e}")))
}

/// A holder, as the body of `PUT /v1/programs/{program}/holders/{card}` (with its card).
pub fn holder(json: &str) -> Result<Holder> {
    self::json(json, "holder")
}

/// A JSON body read into `T`, refusing an object that names a key twice, at any depth,
/// as a request's fields are (``duplicate field `card` ``, serde's own words): a repeated
/// key is never resolved silently by keeping the last. `what` names the input in the
/// error (``cannot parse holder change: …``).
pub fn json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    let invalid = |e: serde_json::Error| Error::invalid(format!("cannot parse {what}: {e}"));
    let Unique(value) = serde_json::from_str(text).map_err(invalid)?;
    T::deserialize(value).map_err(invalid)
}

/// A JSON value whose objects name each key once.
struct Unique(serde_json::Value);

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // JSON has no NaN or infinity: every number it parses is one.
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(items.into())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate field `{key}`"
                )));
            }
            let Unique(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(object.into())
    }
}

/// A suite file: parsed, its offers indexed (no empty or repeated ids), at least one step.
pub fn suite(toml: &str) -> Result<Suite> {
    suite::parse(toml, Path::new("suite.toml"))
}

/// A program's `policy.toml`: parsed, at least one language, limits under the host's
/// ceilings, a well-formed `[schema]` and `[config]` matching `[schema.config]`. (That it
/// names its directory is checked when the program is read from one.)
pub fn manifest(toml: &str) -> Result<Manifest> {
    let manifest: Manifest = parse_toml(toml, Path::new("policy.toml"))?;
    manifest::check_manifest(&manifest, None)?;
    Ok(manifest)
}

/// A program's `catalogue.toml`: its offers by id (no empty or repeated ids). Their
/// attributes are checked against the manifest's `[schema.offer]` when a program is read.
pub fn catalogue(toml: &str) -> Result<HashMap<String, Offer>> {
    manifest::parse_catalogue(toml, Path::new("catalogue.toml"))
}

/// A program's `holders.toml`: its demo holders. Their attributes are checked against the
/// manifest's `[schema.holder]` when a program is read and when they are registered.
pub fn holders(toml: &str) -> Result<Vec<Holder>> {
    manifest::parse_holders(toml, Path::new("holders.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_instant;

    const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

    fn shipped(path: &str) -> String {
        std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap()
    }

    fn message<T: std::fmt::Debug>(result: Result<T>) -> String {
        let error = result.unwrap_err();
        assert!(error.is_bad_input(), "{error:?}");
        error.to_string()
    }

    #[test]
    fn the_example_request_parses_and_round_trips() {
        let request = request(&shipped("examples/redeem.json")).unwrap();
        assert_eq!(request.program, "bergen");
        assert_eq!(request.party, Some(2));
        let again = super::request(&serde_json::to_string(&request).unwrap()).unwrap();
        assert_eq!(again, request);
    }

    #[test]
    fn malformed_requests_are_refused_with_the_input_named() {
        let e = message(request("{\"program\": \"bergen\""));
        assert!(e.starts_with("cannot parse request: "), "{e}");
        let e = message(request(
            r#"{"program":"bergen","card":"AK-1","action":"redeem","at":"2024-03-01"}"#,
        ));
        assert!(e.starts_with("cannot parse request: "), "{e}");
        let e = message(request(
            r#"{"program":"bergen","card":"AK-1","action":"redeem","at":"2024-03-01T18:00:00Z","colour":1}"#,
        ));
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn times_outside_the_hosts_range_or_offsets_are_refused_as_such() {
        let at = |at: &str| {
            message(request(&format!(
                r#"{{"program":"antwerpen","card":"A-3001","action":"check-in","at":"{at}"}}"#
            )))
        };
        // In jiff's range but too close to its end for the calendar: out of range, named.
        for far in [
            "9999-12-30T21:59:59Z",
            "9000-01-01T00:00:00Z",
            "0999-12-31T23:59:59Z",
            "-009999-01-02T01:59:59Z",
        ] {
            let e = at(far);
            assert!(
                e.contains(&format!(
                    "`at`: `{far}` is out of range: times must lie from \
                     1000-01-01T00:00:00Z to 8999-12-31T23:59:59Z"
                )),
                "{e}"
            );
        }
        // Beyond what jiff holds at all: still a time, out of range.
        let e = parse_instant("9999-12-31T00:00:00Z").unwrap_err();
        assert!(e.contains("is out of range"), "{e}");
        assert!(!e.contains("not an RFC 3339"), "{e}");
        // Offsets beyond ±18:00.
        for offset in ["+18:01", "-19:00", "+25:59"] {
            let e = at(&format!("2024-03-01T18:00:00{offset}"));
            assert!(
                e.contains("beyond the ±18:00 a time may be written with"),
                "{e}"
            );
        }
        // The edges are times.
        for edge in [
            "1000-01-01T00:00:00Z",
            "8999-12-31T23:59:59Z",
            "2024-03-01T18:00:00+18:00",
            "2024-03-01T18:00:00-18:00",
        ] {
            assert!(parse_instant(edge).is_ok(), "{edge}");
        }
        assert_eq!(
            parse_instant("2024-03-01T18:00:00+01:00").unwrap(),
            "2024-03-01T17:00:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        // What is not a time says so.
        for text in ["2024-03-01", "2024-03-01T18:00:00", "yesterday"] {
            let e = parse_instant(text).unwrap_err();
            assert!(e.contains("is not an RFC 3339 time with an offset"), "{e}");
        }
    }

    #[test]
    fn a_holder_parses_and_round_trips() {
        let holder = holder(
            r#"{"card":"AK-1","birth-date":"2013-04-12","municipality":"bergen",
                "attributes":{"school":"x","grade":7,"club":true},"balances":{"NOK":5}}"#,
        )
        .unwrap();
        assert_eq!(holder.card, "AK-1");
        let again = super::holder(&serde_json::to_string(&holder).unwrap()).unwrap();
        assert_eq!(again, holder);
    }

    #[test]
    fn a_key_named_twice_is_refused_at_any_depth_as_in_a_request() {
        let e = message(request(
            r#"{"program":"bergen","card":"AK-1","card":"AK-2","action":"redeem","at":"2024-03-01T18:00:00Z"}"#,
        ));
        assert!(
            e.starts_with("cannot parse request: duplicate field `card`"),
            "{e}"
        );
        let e = message(holder(
            r#"{"card":"AK-1","birth-date":"2013-04-12","municipality":"bergen","municipality":"oslo"}"#,
        ));
        assert!(
            e.starts_with("cannot parse holder: duplicate field `municipality`"),
            "{e}"
        );
        let e = message(holder(
            r#"{"card":"AK-1","birth-date":"2013-04-12","municipality":"bergen","balances":{"NOK":5,"NOK":9}}"#,
        ));
        assert!(
            e.starts_with("cannot parse holder: duplicate field `NOK`"),
            "{e}"
        );
        let e = message(json::<serde_json::Value>(
            r#"{"attributes":{"daily-limit":1},"attributes":{"daily-limit":2}}"#,
            "holder change",
        ));
        assert!(
            e.starts_with("cannot parse holder change: duplicate field `attributes` at line 1"),
            "{e}"
        );
        let e = message(json::<serde_json::Value>(
            r#"{"attributes":{"a":[{"x":1,"x":1}]}}"#,
            "holder change",
        ));
        assert!(e.contains("duplicate field `x`"), "{e}");
        let value: serde_json::Value =
            json(r#"{"a":[1,-2,3.5,"x",true,null,{"b":{}}]}"#, "x").unwrap();
        assert_eq!(
            value,
            serde_json::json!({"a":[1,-2,3.5,"x",true,null,{"b":{}}]})
        );
    }

    #[test]
    fn malformed_holders_are_refused_with_the_input_named() {
        let e = message(holder(
            r#"{"card":"AK-1","birth-date":"2013-02-30","municipality":"bergen"}"#,
        ));
        assert!(e.starts_with("cannot parse holder: "), "{e}");
        let e = message(holder(
            r#"{"card":"AK-1","birth-date":"2013-02-03","municipality":"bergen","attributes":{"n":18446744073709551615}}"#,
        ));
        assert!(
            e.contains("integer 18446744073709551615 is too large"),
            "{e}"
        );
        let e = message(holder("[]"));
        assert!(e.starts_with("cannot parse holder: "), "{e}");
    }

    #[test]
    fn the_shipped_suites_parse() {
        for program in crate::program::tests::shipped_programs() {
            let dir = format!("{ROOT}/policies/{program}/suites");
            for entry in std::fs::read_dir(dir).unwrap() {
                let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
                let suite = suite(&text).unwrap();
                assert_eq!(suite.program, program);
                assert!(!suite.steps.is_empty());
            }
        }
    }

    #[test]
    fn malformed_suites_are_refused_with_the_line() {
        let e = message(suite("program = \"bergen\"\n[[steps]]\ncard = 7\n"));
        assert!(
            e.starts_with("cannot load suite: cannot parse `suite.toml` at line 3: "),
            "{e}"
        );
        let e = message(suite("program = \"bergen\"\n"));
        assert_eq!(e, "cannot load suite `suite.toml`: it has no steps");
        let e = message(suite(
            "program = \"b\"\n[[offers]]\nid = \"x\"\ncategory = \"c\"\nlocation = \"l\"\n\
             [[offers]]\nid = \"x\"\ncategory = \"c\"\nlocation = \"l\"\n",
        ));
        assert_eq!(e, "`suite.toml`: offer `x` is listed twice");
    }

    #[test]
    fn the_shipped_manifests_parse() {
        for program in crate::program::tests::shipped_programs() {
            let manifest = manifest(&shipped(&format!("policies/{program}/policy.toml"))).unwrap();
            assert_eq!(manifest.program, program);
            assert!(!manifest.languages.is_empty());
        }
    }

    #[test]
    fn malformed_manifests_are_refused() {
        let e = message(manifest("program = \"x\"\nname = 3\n"));
        assert!(
            e.starts_with("cannot parse `policy.toml` at line 2: "),
            "{e}"
        );
        let e = message(manifest(
            "program = \"x\"\nname = \"X\"\ntime-zone = \"UTC\"\nlanguages = []\ncomponent = \"x.wasm\"\n",
        ));
        assert_eq!(e, "`policy.toml` lists no languages");
        let typed = "program = \"x\"\nname = \"X\"\ntime-zone = \"UTC\"\nlanguages = [\"en\"]\n\
                     component = \"x.wasm\"\n[config]\nlimit = \"5\"\n";
        let e = message(manifest(typed));
        assert_eq!(
            e,
            "`policy.toml`, `[config]`: `limit` is not a config key declared in \
             `[schema.config]` of `policy.toml` (it declares none)"
        );
        let e = message(manifest(&format!(
            "{typed}[schema.config.limit]\ntype = \"integer\"\n"
        )));
        assert_eq!(
            e,
            "`policy.toml`, `[config]`: `limit` must be an integer, not the text \"5\""
        );
        manifest(&format!("{typed}[schema.config.limit]\ntype = \"text\"\n")).unwrap();
    }

    #[test]
    fn the_shipped_catalogues_and_holders_parse() {
        for program in crate::program::tests::shipped_programs() {
            let offers =
                catalogue(&shipped(&format!("policies/{program}/catalogue.toml"))).unwrap();
            assert!(!offers.is_empty());
            for (id, offer) in &offers {
                assert_eq!(id, &offer.id);
            }
            let holders = holders(&shipped(&format!("policies/{program}/holders.toml"))).unwrap();
            assert!(!holders.is_empty());
        }
    }

    #[test]
    fn malformed_catalogues_and_holders_are_refused() {
        let e = message(catalogue(
            "[[offers]]\nid = \"\"\ncategory = \"c\"\nlocation = \"l\"\n",
        ));
        assert_eq!(e, "`catalogue.toml`: an offer has an empty id");
        let e = message(catalogue(
            "[[offers]]\nid = \"x\"\ncategory = \"c\"\nlocation = \"l\"\nstarts-at = 2024-01-01\n",
        ));
        assert!(
            e.starts_with("cannot parse `catalogue.toml` at line "),
            "{e}"
        );
        assert!(e.contains("RFC 3339"), "{e}");
        let e = message(holders("[[holders]]\ncard = \"A\"\n"));
        assert!(
            e.starts_with("cannot parse `holders.toml` at line 1: missing field"),
            "{e}"
        );
    }
}
