//! Reading the shipped programs' files, and refusing edited ones with messages that name
//! the file, the entry, the key and the value.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::manifest::read_program;
use crate::error::Error;
use crate::program::files::read_text;
use crate::program::schema::ValueType;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The shipped programs: every program directory under `policies/`.
pub(crate) fn shipped_programs() -> Vec<String> {
    let policies = Path::new(ROOT).join("policies");
    let dirs = crate::program::files::program_dirs(&policies).unwrap();
    assert!(dirs.len() >= 3, "{dirs:?}");
    dirs.iter()
        .map(|dir| dir.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

pub(crate) fn shipped(program: &str) -> PathBuf {
    Path::new(ROOT).join("policies").join(program)
}

/// A copy of a shipped program's files with `file` edited by `edit`; returns the
/// error of reading it.
fn refused(program: &str, file: &str, edit: impl Fn(String) -> String) -> String {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join(program);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["policy.toml", "catalogue.toml", "holders.toml"] {
        let mut text = std::fs::read_to_string(shipped(program).join(name)).unwrap();
        if name == file {
            let edited = edit(text.clone());
            assert_ne!(edited, text, "the edit of `{file}` changed nothing");
            text = edited;
        }
        std::fs::write(dir.join(name), text).unwrap();
    }
    let component = format!("{program}.wasm");
    std::fs::copy(shipped(program).join(&component), dir.join(&component)).unwrap();
    let error = read_program(&dir).unwrap_err();
    assert!(matches!(error, Error::Load { .. }), "{error:?}");
    error.to_string()
}

#[test]
fn the_shipped_programs_match_their_schemas() {
    for program in shipped_programs() {
        let files = read_program(&shipped(&program)).unwrap();
        let schema = &files.manifest.schema;
        assert!(
            !schema.config.is_empty(),
            "{program} declares no config keys"
        );
        // Every suite's holders and offers are in the schema too.
        let suites = shipped(&program).join("suites");
        for entry in std::fs::read_dir(suites).unwrap() {
            let path = entry.unwrap().path();
            let suite = crate::suite::parse(&read_text(&path).unwrap(), &path).unwrap();
            for holder in &suite.holders {
                schema.check_holder(holder).unwrap();
            }
            for offer in &suite.offers {
                schema.check_offer(offer).unwrap();
            }
        }
    }
}

/// The keys a guest's source reads with each typed reader of the SDK, and their types.
fn reads(source: &str) -> (BTreeMap<String, ValueType>, BTreeMap<String, ValueType>) {
    let readers = [
        ("attr_int(\"", false, ValueType::Integer),
        ("attr_bool(\"", false, ValueType::Boolean),
        ("attr_text(\"", false, ValueType::Text),
        ("config_int(\"", true, ValueType::Integer),
        ("config_text(\"", true, ValueType::Text),
    ];
    let (mut attributes, mut config) = (BTreeMap::new(), BTreeMap::new());
    for (reader, is_config, value_type) in readers {
        for (start, _) in source.match_indices(reader) {
            let rest = &source[start + reader.len()..];
            let key = &rest[..rest.find('"').unwrap()];
            let into = if is_config {
                &mut config
            } else {
                &mut attributes
            };
            let before = into.insert(key.to_string(), value_type);
            assert!(
                before.is_none_or(|t| t == value_type),
                "{key} read as two types"
            );
        }
    }
    (attributes, config)
}

#[test]
fn each_shipped_schema_declares_exactly_what_its_guest_reads() {
    for program in shipped_programs() {
        let source =
            std::fs::read_to_string(format!("{ROOT}/guest-rules/programs/{program}/src/lib.rs"))
                .unwrap();
        let (attributes, config) = reads(&source);
        let schema = read_program(&shipped(&program)).unwrap().manifest.schema;
        let declared = |map: &BTreeMap<String, crate::program::schema::Declaration>| {
            map.iter()
                .map(|(key, d)| (key.clone(), d.value_type))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(declared(&schema.config), config, "{program}: config");
        let mut both = declared(&schema.offer);
        let holder = declared(&schema.holder);
        let overlap: BTreeSet<_> = both.keys().filter(|k| holder.contains_key(*k)).collect();
        assert!(overlap.is_empty(), "{program}: {overlap:?}");
        both.extend(holder);
        assert_eq!(both, attributes, "{program}: attributes");
    }
}

#[test]
fn a_mistyped_offer_attribute_is_refused_at_load_with_file_offer_key_type_and_value() {
    let error = refused("bergen", "catalogue.toml", |text| {
        text.replace("participating = false", "participating = \"nei\"")
    });
    assert_eq!(
        error,
        "cannot load policy `bergen`: `catalogue.toml`, offer `lagunen-kino`: \
         `participating` must be a boolean, not the text \"nei\""
    );
    let error = refused("bergen", "catalogue.toml", |text| {
        text.replace("yearly-limit = 4", "yearly-limit = 0")
    });
    assert_eq!(
        error,
        "cannot load policy `bergen`: `catalogue.toml`, offer `bergen-kino`: \
         `yearly-limit` must be an integer of at least 1, not the integer 0"
    );
    let error = refused("antwerpen", "catalogue.toml", |text| {
        text.replacen("social-price = 100", "socialprice = 100", 1)
    });
    assert_eq!(
        error,
        "cannot load policy `antwerpen`: `catalogue.toml`, offer `mas`: `socialprice` is \
         not an offer attribute declared in `[schema.offer]` of `policy.toml` (declared: \
         `bonus-savings`, `price`, `resident-price`, `social-price`)"
    );
}

#[test]
fn mistyped_or_undeclared_config_is_refused_at_load() {
    let error = refused("bergen", "policy.toml", |text| {
        text.replace("max-age = 17 ", "max-age = \"17\"")
    });
    assert_eq!(
        error,
        "cannot load policy `bergen`: `policy.toml`, `[config]`: `max-age` must be an \
         integer of at least 0, not the text \"17\""
    );
    let error = refused("bergen", "policy.toml", |text| {
        text.replace("[config]\n", "[config]\nmaxage = 17\n")
    });
    assert!(
        error.starts_with(
            "cannot load policy `bergen`: `policy.toml`, `[config]`: `maxage` is not a \
             config key declared in `[schema.config]`"
        ),
        "{error}"
    );
    // Optional keys may be left out: the policy has a default.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("bergen");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["catalogue.toml", "holders.toml", "bergen.wasm"] {
        std::fs::copy(shipped("bergen").join(name), dir.join(name)).unwrap();
    }
    let manifest = std::fs::read_to_string(shipped("bergen").join("policy.toml")).unwrap();
    let without: String = manifest
        .lines()
        .filter(|line| !line.starts_with("max-age ="))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(dir.join("policy.toml"), &without).unwrap();
    read_program(&dir).unwrap();
    // Unless the schema says it is required.
    let required = without.replace(
        "[schema.config.max-age]\n",
        "[schema.config.max-age]\nrequired = true\n",
    );
    std::fs::write(dir.join("policy.toml"), required).unwrap();
    let error = read_program(&dir).unwrap_err().to_string();
    assert_eq!(
        error,
        "cannot load policy `bergen`: `policy.toml`, `[config]`: `max-age` is missing: \
         `[schema.config]` declares it `required`"
    );
}

#[test]
fn a_malformed_schema_is_refused_at_load() {
    let error = refused("bergen", "policy.toml", |text| {
        text.replace(
            "[schema.offer.capacity]\ntype = \"integer\"",
            "[schema.offer.capacity]\ntype = \"number\"",
        )
    });
    assert!(
        error.starts_with("cannot load policy `bergen`: cannot parse `")
            && error.contains("policy.toml` at line ")
            && error.contains("unknown variant `number`"),
        "{error}"
    );
    let error = refused("bergen", "policy.toml", |text| {
        text.replace(
            "[schema.offer.capacity]\n",
            "[schema.offer.capacity]\nmax = 0\n",
        )
    });
    assert_eq!(
        error,
        "cannot load policy `bergen`: `policy.toml`: `[schema.offer.capacity]`: `min` 1 is \
         above `max` 0"
    );
    // `guardian` is for holder attributes only.
    let error = refused("bergen", "policy.toml", |text| {
        text.replace(
            "[schema.offer.capacity]\n",
            "[schema.offer.capacity]\nguardian = true\n",
        )
    });
    assert_eq!(
        error,
        "cannot load policy `bergen`: `policy.toml`: `[schema.offer.capacity]`: `guardian` is \
         for holder attributes (`[schema.holder.<key>]`) only: a guardian changes holders' \
         attributes, never an offer attribute"
    );
}

#[test]
fn albertslund_lets_parents_set_their_limits_and_nothing_else() {
    let schema = read_program(&shipped("albertslund"))
        .unwrap()
        .manifest
        .schema;
    let marked: Vec<&str> = schema
        .holder
        .iter()
        .filter(|(_, declaration)| declaration.guardian)
        .map(|(key, _)| key.as_str())
        .collect();
    assert_eq!(
        marked,
        [
            "auto-top-up-amount",
            "auto-top-up-below",
            "blocked-categories",
            "daily-limit",
            "purchase-limit"
        ]
    );
}

#[test]
fn a_mistyped_demo_holder_is_refused_at_load() {
    let error = refused("albertslund", "holders.toml", |text| {
        text.replace("daily-limit = 6000", "daily-limit = \"6000\"")
    });
    assert!(
        error.starts_with("cannot load policy `albertslund`: `holders.toml`, holder `"),
        "{error}"
    );
    assert!(
        error.ends_with("`daily-limit` must be an integer of at least 0, not the text \"6000\""),
        "{error}"
    );
}
