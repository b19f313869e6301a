//! A program's files: the manifest (`policy.toml`), the catalogue (`catalogue.toml`) and
//! the demo holders (`holders.toml`), read and checked before anything runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::model::{AttributeValue, Holder, Offer};

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
    /// Values the policy reads with `config`.
    #[serde(default)]
    pub config: BTreeMap<String, AttributeValue>,
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

/// Everything in a program's directory except the compiled component.
#[derive(Debug, Clone)]
pub struct ProgramFiles {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub catalogue: HashMap<String, Offer>,
    pub holders: Vec<Holder>,
    pub component_path: PathBuf,
}

/// Reads a TOML file into `T`, naming the file in every error.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    parse_toml(&read_text(path)?, path)
}

/// Reads a text file, naming it in the error.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("cannot read `{}`: {e}", path.display())))
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

/// Reads a program directory: manifest, catalogue and demo holders.
pub fn read_program(dir: &Path) -> Result<ProgramFiles> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |e: Error| Error::load(&name, e);
    let manifest: Manifest = read_toml(&dir.join("policy.toml")).map_err(fail)?;
    check_manifest(&manifest, Some(&name)).map_err(fail)?;
    let catalogue_path = dir.join("catalogue.toml");
    let catalogue = parse_catalogue(&read_text(&catalogue_path).map_err(fail)?, &catalogue_path)
        .map_err(fail)?;
    let holders_path = dir.join("holders.toml");
    let holders = if holders_path.exists() {
        parse_holders(&read_text(&holders_path).map_err(fail)?, &holders_path).map_err(fail)?
    } else {
        Vec::new()
    };
    let component_path = dir.join(&manifest.component);
    Ok(ProgramFiles {
        dir: dir.to_path_buf(),
        manifest,
        catalogue,
        holders,
        component_path,
    })
}

/// The checks on a parsed `policy.toml`: it names the program of its directory (when
/// `directory` is known) and lists at least one language.
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
    Ok(())
}

/// Parses a `catalogue.toml` read from `source` into its index of offers by id.
pub(crate) fn parse_catalogue(text: &str, source: &Path) -> Result<HashMap<String, Offer>> {
    let catalogue: Catalogue = parse_toml(text, source)?;
    index_offers(catalogue.offers, source)
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
