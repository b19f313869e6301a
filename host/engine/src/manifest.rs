//! A program's files: the manifest (`policy.toml`), the catalogue (`catalogue.toml`) and
//! the demo holders (`holders.toml`), read and checked before anything runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::model::{AttributeValue, Holder, Offer};
use crate::schema::Schema;

/// Default fuel per evaluation: about ten million wasm instructions. The shipped policies
/// need a few thousand; the margin is for honest policies with large catalogues.
pub const DEFAULT_FUEL: u64 = 10_000_000;
/// Default wall-clock deadline per evaluation, including ledger reads.
pub const DEFAULT_DEADLINE_MS: u64 = 500;
/// Default cap on a policy's linear memory; a policy needs a few pages.
pub const DEFAULT_MEMORY_BYTES: usize = 16 << 20;
/// Default cap on table elements (function references).
pub const DEFAULT_TABLE_ELEMENTS: usize = 10_000;
/// Default cap on the effects of one decision.
pub const DEFAULT_MAX_EFFECTS: usize = 256;
/// Default cap on the size of one decision's strings (reason, notes, effects).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 << 10;

/// The most a manifest may ask for, whatever it says: a policy's limits bound what one
/// decision costs the host, so the host bounds the limits. A manifest above a ceiling is
/// refused at load.
pub const CEILING: Limits = Limits {
    // About a second of wasm on a slow core.
    fuel: 1_000_000_000,
    // A till waits no longer than this for one decision.
    deadline_ms: 2_000,
    // The sandbox's own maximum (the instance pool reserves this much per slot).
    memory_bytes: crate::sandbox::MAX_MEMORY_BYTES,
    table_elements: 100_000,
    max_effects: 4_096,
    max_output_bytes: 1 << 20,
};

/// The limits every evaluation of a program runs under (`[limits]` in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Limits {
    pub fuel: u64,
    pub deadline_ms: u64,
    pub memory_bytes: usize,
    pub table_elements: usize,
    pub max_effects: usize,
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            fuel: DEFAULT_FUEL,
            deadline_ms: DEFAULT_DEADLINE_MS,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            table_elements: DEFAULT_TABLE_ELEMENTS,
            max_effects: DEFAULT_MAX_EFFECTS,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// `policy.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// The program id; equals the directory's name.
    pub program: String,
    pub name: String,
    /// IANA time zone, e.g. `Europe/Oslo`.
    pub time_zone: String,
    /// Message languages; the first is the default.
    pub languages: Vec<String>,
    /// The component's path, relative to the program directory.
    pub component: PathBuf,
    /// The assets the policy's effects may name (e.g. `DKK`); an effect naming any other
    /// asset is refused and the decision becomes a `policy-error`.
    #[serde(default)]
    pub assets: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    /// Values the policy reads with `config`; each must be declared in `[schema.config]`.
    #[serde(default)]
    pub config: BTreeMap<String, AttributeValue>,
    /// The offer attributes, holder attributes and config keys the policy reads, typed.
    #[serde(default)]
    pub schema: Schema,
    /// reason code → language → message.
    #[serde(default)]
    pub messages: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalogue {
    #[serde(default)]
    offers: Vec<Offer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Holders {
    #[serde(default)]
    holders: Vec<Holder>,
}

/// Everything in a program's directory except the compiled component, parsed from the
/// bytes of [`ProgramBytes`].
#[derive(Debug, Clone)]
pub struct ProgramFiles {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub catalogue: HashMap<String, Offer>,
    pub holders: Vec<Holder>,
    pub component_path: PathBuf,
    /// The suites that gate a reload (`suites/**/*.toml`), as read with the other files:
    /// the suites run are the suites a signature covers.
    pub suites: Arc<Vec<(PathBuf, String)>>,
}

/// The manifest file of a program directory.
pub const MANIFEST_FILE: &str = "policy.toml";
/// The catalogue file of a program directory.
pub const CATALOGUE_FILE: &str = "catalogue.toml";
/// The demo holders file of a program directory (optional).
pub const HOLDERS_FILE: &str = "holders.toml";
/// The directory of a program's own suites, which gate a reload.
pub const SUITES_DIR: &str = "suites";

/// Every file of a program directory that the host reads — the manifest, the component it
/// names, the catalogue, the demo holders and the suites that gate a reload — each read
/// once, keyed by its path relative to the directory (`/`-separated). A signature covers
/// exactly these bytes, and these bytes are what is parsed and compiled.
#[derive(Debug)]
pub struct ProgramBytes {
    pub dir: PathBuf,
    /// The directory's name, which must be the program id.
    pub name: String,
    /// The key of the component in `files` (the manifest's `component`).
    pub component: String,
    pub files: BTreeMap<String, Vec<u8>>,
    /// `policy.sig`, if there is one (it covers `files`, not itself).
    pub signature: Option<Vec<u8>>,
}

impl ProgramBytes {
    /// The bytes of the component.
    pub fn component_bytes(&self) -> &[u8] {
        self.files
            .get(&self.component)
            .map_or(&[][..], Vec::as_slice)
    }
}

/// Reads a TOML file into `T`, naming the file in every error.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    parse_toml(&read_text(path)?, path)
}

/// The largest TOML file read (manifest, catalogue, holders, suite).
pub const MAX_TEXT_BYTES: u64 = 8 << 20;
/// The largest policy component read.
pub const MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// Reads a text file, naming it in the error (see [`read_file`]).
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = read_file(path, MAX_TEXT_BYTES)?;
    String::from_utf8(bytes)
        .map_err(|_| Error::invalid(format!("cannot read `{}`: not UTF-8 text", path.display())))
}

/// Reads a program's file: only a regular file (a link to one is fine), of at most
/// `limit` bytes — never a FIFO that would block, a device that never ends, or a file
/// that would exhaust memory.
pub(crate) fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let fail = |why: String| Error::invalid(format!("cannot read `{}`: {why}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > limit {
        return Err(fail(format!(
            "{} bytes, more than the limit of {limit}",
            meta.len()
        )));
    }
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    // The length can change between the check and the read: read one byte past the limit.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > limit {
        return Err(fail(format!("more than the limit of {limit} bytes")));
    }
    Ok(bytes)
}

/// Parses TOML `text` into `T`, naming `source` (and the line, when known) in every error.
pub(crate) fn parse_toml<T: DeserializeOwned>(text: &str, source: &Path) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let location = e
            .span()
            .map(|span| {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!(" at line {line}")
            })
            .unwrap_or_default();
        let message = e.message().trim().trim_end_matches('.').to_string();
        Error::invalid(format!(
            "cannot parse `{}`{location}: {message}",
            source.display()
        ))
    })
}

/// Builds the catalogue index, refusing duplicate ids.
pub fn index_offers(offers: Vec<Offer>, source: &Path) -> Result<HashMap<String, Offer>> {
    let mut index = HashMap::new();
    for offer in offers {
        if offer.id.is_empty() {
            return Err(Error::invalid(format!(
                "`{}`: an offer has an empty id",
                source.display()
            )));
        }
        if let Some(old) = index.insert(offer.id.clone(), offer) {
            return Err(Error::invalid(format!(
                "`{}`: offer `{}` is listed twice",
                source.display(),
                old.id
            )));
        }
    }
    Ok(index)
}

/// Reads every file of the program directory `dir` that the host uses, once (see
/// [`ProgramBytes`]); `policy.toml` is parsed here only to find the component.
pub fn read_program_bytes(dir: &Path) -> Result<ProgramBytes> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |e: Error| Error::load(&name, e);
    let mut files = BTreeMap::new();
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_bytes = read_file(&manifest_path, MAX_TEXT_BYTES).map_err(fail)?;
    let manifest: Manifest = parse_toml(
        utf8(&manifest_bytes, &manifest_path).map_err(fail)?,
        &manifest_path,
    )
    .map_err(fail)?;
    files.insert(MANIFEST_FILE.to_string(), manifest_bytes);
    let component = manifest.component.to_string_lossy().replace('\\', "/");
    let component_path = dir.join(&manifest.component);
    let component_bytes = read_file(&component_path, MAX_COMPONENT_BYTES).map_err(|e| {
        Error::load(
            &name,
            format!("{e} (build the policies with `cargo build --release`)"),
        )
    })?;
    files.insert(component.clone(), component_bytes);
    files.insert(
        CATALOGUE_FILE.to_string(),
        read_file(&dir.join(CATALOGUE_FILE), MAX_TEXT_BYTES).map_err(fail)?,
    );
    let holders_path = dir.join(HOLDERS_FILE);
    if std::fs::symlink_metadata(&holders_path).is_ok() {
        files.insert(
            HOLDERS_FILE.to_string(),
            read_file(&holders_path, MAX_TEXT_BYTES).map_err(fail)?,
        );
    }
    let suites = dir.join(SUITES_DIR);
    if suites.is_dir() {
        let mut found = Vec::new();
        crate::suite::collect_toml(&suites, &mut found).map_err(fail)?;
        for path in found {
            let relative = path
                .strip_prefix(dir)
                .ok()
                .and_then(Path::to_str)
                .ok_or_else(|| {
                    fail(Error::invalid(format!(
                        "cannot read `{}`: its name is not UTF-8",
                        path.display()
                    )))
                })?
                .replace('\\', "/");
            files.insert(relative, read_file(&path, MAX_TEXT_BYTES).map_err(fail)?);
        }
    }
    let signature_path = dir.join(crate::signing::SIGNATURE_FILE);
    let signature = match std::fs::symlink_metadata(&signature_path) {
        Err(_) => None,
        Ok(_) => Some(read_file(&signature_path, MAX_TEXT_BYTES).map_err(fail)?),
    };
    Ok(ProgramBytes {
        dir: dir.to_path_buf(),
        name,
        component,
        files,
        signature,
    })
}

fn utf8<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str> {
    std::str::from_utf8(bytes)
        .map_err(|_| Error::invalid(format!("cannot read `{}`: not UTF-8 text", path.display())))
}

/// Reads a program directory: manifest, catalogue, demo holders and suites.
#[cfg(test)]
pub(crate) fn read_program(dir: &Path) -> Result<ProgramFiles> {
    parse_program(&read_program_bytes(dir)?)
}

/// Parses and checks the files read by [`read_program_bytes`]: manifest, catalogue, demo
/// holders and the suites' text (the suites are parsed when they run).
pub fn parse_program(bytes: &ProgramBytes) -> Result<ProgramFiles> {
    let (dir, name) = (&bytes.dir, &bytes.name);
    let fail = |e: Error| Error::load(name, e);
    let refuse = |why: String| Error::load(name, why);
    let text = |file: &str| -> Result<Option<&str>> {
        match bytes.files.get(file) {
            None => Ok(None),
            Some(b) => utf8(b, &dir.join(file)).map(Some).map_err(fail),
        }
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest: Manifest =
        parse_toml(text(MANIFEST_FILE)?.unwrap_or_default(), &manifest_path).map_err(fail)?;
    check_manifest(&manifest, Some(name)).map_err(fail)?;
    let schema = &manifest.schema;
    let catalogue_path = dir.join(CATALOGUE_FILE);
    let offers =
        parse_offers(text(CATALOGUE_FILE)?.unwrap_or_default(), &catalogue_path).map_err(fail)?;
    for offer in &offers {
        schema
            .check_offer(offer)
            .map_err(|why| refuse(format!("`catalogue.toml`, {why}")))?;
    }
    let catalogue = index_offers(offers, &catalogue_path).map_err(fail)?;
    let holders = match text(HOLDERS_FILE)? {
        Some(holders) => parse_holders(holders, &dir.join(HOLDERS_FILE)).map_err(fail)?,
        None => Vec::new(),
    };
    for holder in &holders {
        schema
            .check_holder(holder)
            .map_err(|why| refuse(format!("`holders.toml`, {why}")))?;
    }
    let prefix = format!("{SUITES_DIR}/");
    let mut suites = Vec::new();
    for (file, _) in bytes.files.range(prefix.clone()..) {
        if !file.starts_with(&prefix) {
            break;
        }
        if *file == bytes.component {
            continue;
        }
        suites.push((dir.join(file), text(file)?.unwrap_or_default().to_string()));
    }
    let component_path = dir.join(&manifest.component);
    Ok(ProgramFiles {
        dir: dir.to_path_buf(),
        manifest,
        catalogue,
        holders,
        component_path,
        suites: Arc::new(suites),
    })
}

/// The checks on a parsed `policy.toml`: it names the program of its directory (when
/// `directory` is known), lists at least one language, stays under the host's ceilings,
/// has a well-formed `[schema]`, and its `[config]` matches `[schema.config]`.
pub(crate) fn check_manifest(manifest: &Manifest, directory: Option<&str>) -> Result<()> {
    if let Some(name) = directory
        && manifest.program != name
    {
        return Err(Error::invalid(format!(
            "`policy.toml` names program `{}`, but its directory is `{name}`",
            manifest.program
        )));
    }
    if manifest.languages.is_empty() {
        return Err(Error::invalid("`policy.toml` lists no languages"));
    }
    let (asked, most) = (&manifest.limits, &CEILING);
    let over = [
        ("fuel", asked.fuel, most.fuel),
        ("deadline-ms", asked.deadline_ms, most.deadline_ms),
        (
            "memory-bytes",
            asked.memory_bytes as u64,
            most.memory_bytes as u64,
        ),
        (
            "table-elements",
            asked.table_elements as u64,
            most.table_elements as u64,
        ),
        (
            "max-effects",
            asked.max_effects as u64,
            most.max_effects as u64,
        ),
        (
            "max-output-bytes",
            asked.max_output_bytes as u64,
            most.max_output_bytes as u64,
        ),
    ];
    for (name, asked, most) in over {
        if asked > most {
            return Err(Error::invalid(format!(
                "`policy.toml` asks for `{name}` = {asked}, above the host's ceiling of {most}"
            )));
        }
    }
    manifest
        .schema
        .check()
        .map_err(|why| Error::invalid(format!("`policy.toml`: {why}")))?;
    manifest
        .schema
        .check_config(&manifest.config)
        .map_err(|why| Error::invalid(format!("`policy.toml`, `[config]`: {why}")))?;
    Ok(())
}

/// Parses a `catalogue.toml` read from `source` into its index of offers by id. (Its
/// attributes are checked against a manifest's schema when a program is read.)
pub(crate) fn parse_catalogue(text: &str, source: &Path) -> Result<HashMap<String, Offer>> {
    index_offers(parse_offers(text, source)?, source)
}

/// Parses a `catalogue.toml` read from `source` into its offers, in the file's order.
fn parse_offers(text: &str, source: &Path) -> Result<Vec<Offer>> {
    Ok(parse_toml::<Catalogue>(text, source)?.offers)
}

/// Parses a `holders.toml` read from `source`.
pub(crate) fn parse_holders(text: &str, source: &Path) -> Result<Vec<Holder>> {
    Ok(parse_toml::<Holders>(text, source)?.holders)
}

/// The program directories under `policies`: those that hold a `policy.toml`.
pub fn program_dirs(policies: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(policies).map_err(|e| {
        Error::invalid(format!(
            "cannot read policies directory `{}`: {e}",
            policies.display()
        ))
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join("policy.toml").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::schema::ValueType;

    const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    const SHIPPED: [&str; 3] = ["bergen", "antwerpen", "albertslund"];

    fn shipped(program: &str) -> PathBuf {
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
        for program in SHIPPED {
            let files = read_program(&shipped(program)).unwrap();
            let schema = &files.manifest.schema;
            assert!(
                !schema.config.is_empty(),
                "{program} declares no config keys"
            );
            // Every suite's holders and offers are in the schema too.
            let suites = shipped(program).join("suites");
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
        for program in SHIPPED {
            let source = std::fs::read_to_string(format!(
                "{ROOT}/guest-rules/programs/{program}/src/lib.rs"
            ))
            .unwrap();
            let (attributes, config) = reads(&source);
            let schema = read_program(&shipped(program)).unwrap().manifest.schema;
            let declared = |map: &BTreeMap<String, crate::schema::Declaration>| {
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
            error
                .ends_with("`daily-limit` must be an integer of at least 0, not the text \"6000\""),
            "{error}"
        );
    }
}
